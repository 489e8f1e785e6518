#![warn(missing_docs)]
//! The node agent: runs pods' containers on this host and routes service traffic.
//!
//! | module | job |
//! |---|---|
//! | [`agent`] | the whole agent: starts the kubelet loop, node registration and the service |
//! | [`image`] | the node's image store: pulls, imports, unpacked layers |
//! | [`runtime`] | containers on libcontainer, each under its own shim |
//! | [`kubelet`] | the pods bound to this node, synced with the runtime, status reported |
//! | [`service`] | the gRPC service the API server calls: logs, exec, port-forward, stats |
//! | [`hollow`] | simulated nodes for scale tests: the agent's registration, Lease and pod status on a fake runtime |
//! | [`netns`] | work done inside a pod's network namespace from a dedicated thread |

pub mod agent;
pub mod hollow;
pub mod image;
pub mod kubelet;
pub mod netns;
pub mod runtime;
pub mod service;
