//! The node agent: runs pods' containers on this host and routes service traffic.

pub mod runtime;
