#![warn(missing_docs)]
//! The node agent: runs pods' containers on this host and routes service traffic.
//!
//! Built out piece by piece; so far the image store (`image`) and the container runtime
//! (`runtime`).

pub mod image;
pub mod runtime;
