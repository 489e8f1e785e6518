//! The node agent: runs pods' containers on this host and routes service traffic.
//!
//! It is built out in later milestones; the crate exists so the workspace layout is fixed.
