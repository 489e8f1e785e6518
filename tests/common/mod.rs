//! Shared end-to-end test support. Each integration test file does
//! `mod common;` and uses `common::cluster::*`.
#![allow(dead_code)]

pub mod agent_standin;
pub mod cluster;
pub mod control_plane;
pub mod images;
pub mod linearizability;
pub mod pods;
pub mod runtime;
pub mod sim;
