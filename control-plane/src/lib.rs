//! The skiff control plane.
//!
//! It holds the replicated store ([`store`]), the cluster certificates ([`pki`]) and the
//! Kubernetes API server ([`apiserver`]) in front of them. The scheduler and controllers are API
//! clients and live in `skiff-controllers`.

pub mod apiserver;
pub mod pki;
pub mod store;
