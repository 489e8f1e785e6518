#[path = "common/linearizability.rs"]
mod linearizability;
