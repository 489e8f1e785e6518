//! The skiff control plane.
//!
//! Today it holds the replicated store ([`store`]); the API server, scheduler and controllers
//! are built on top of it in later milestones.

pub mod store;
