//! The skiff control plane.
//!
//! It holds the replicated store ([`store`]), the cluster certificates ([`pki`]) and the
//! Kubernetes API server ([`apiserver`]) in front of them; the scheduler and controllers come in
//! later milestones.

pub mod apiserver;
pub mod pki;
pub mod store;
