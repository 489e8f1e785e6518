//! Exclusive CPUs for containers of Guaranteed pods that ask for whole CPUs, as upstream's
//! static CPU manager policy gives them: such a container is pinned to CPUs no other container
//! uses, and every other container runs on the shared pool, the CPUs left over. The pool shrinks
//! and grows as exclusive containers come and go, so the shared containers that run are moved
//! with it.
//!
//! Differences from upstream, for small nodes: no CPUs are reserved for the system, but the
//! shared pool always keeps at least one CPU; a container whose CPUs cannot be exclusive without
//! emptying it runs on the shared pool instead of failing admission (the pod gets a Warning
//! event). Containers pinned by the `cpuset.skiff.dev/<c>` annotation are left alone.
//!
//! Assignments are kept in `<root>/cpu_manager_state`, so a restarted agent gives re-adopted
//! containers the CPUs they have.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Serialize};

use super::downward::quantity_millis;
use super::resources::{qos_class, QosClass};
use crate::runtime::cgroup::CgroupLayout;

/// A set of CPU numbers, written as the kernel's lists (`0-2,5`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSet(BTreeSet<u32>);

impl CpuSet {
    /// Parses `0-2,5`; `None` on anything else.
    pub fn parse(s: &str) -> Option<CpuSet> {
        let mut out = BTreeSet::new();
        for part in s.trim().split(',').filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if b < a || b - a > 4096 {
                return None;
            }
            out.extend(a..=b);
        }
        Some(CpuSet(out))
    }

    /// The CPUs this process may run on.
    pub fn of_this_process() -> CpuSet {
        let mut out = BTreeSet::new();
        if let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
            for cpu in 0..nix::sched::CpuSet::count() {
                if set.is_set(cpu).unwrap_or(false) {
                    out.insert(cpu as u32);
                }
            }
        }
        CpuSet(out)
    }

    /// How many CPUs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True with no CPUs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn minus(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.difference(&other.0).copied().collect())
    }

    fn union(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.union(&other.0).copied().collect())
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(start) = iter.next() {
            let mut end = start;
            while iter.peek() == Some(&(end + 1)) {
                end += 1;
                iter.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

/// Where a container runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On CPUs of its own.
    Exclusive(CpuSet),
    /// On the shared pool.
    Shared(CpuSet),
    /// On the shared pool, though it asked for exclusive CPUs that are not free.
    SharedInstead {
        /// The pool.
        pool: CpuSet,
        /// How many it asked for.
        wanted: usize,
    },
    /// Where an annotation pins it; the manager does not move it.
    Pinned,
}

impl Placement {
    /// The CPU list for the container's spec, if the manager sets one.
    pub fn cpus(&self) -> Option<String> {
        match self {
            Placement::Exclusive(c) | Placement::Shared(c) => Some(c.to_string()),
            Placement::SharedInstead { pool, .. } => Some(pool.to_string()),
            Placement::Pinned => None,
        }
    }
}

/// What is kept on disk: exclusive CPUs by pod uid and container name.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    #[serde(rename = "policyName")]
    policy_name: String,
    entries: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Default)]
struct State {
    exclusive: BTreeMap<String, BTreeMap<String, CpuSet>>,
    /// Shared-pool containers by pod uid and container name: their cgroups, to move them.
    shared: BTreeMap<String, BTreeMap<String, String>>,
}

/// The node's CPU assignments.
pub struct CpuManager {
    all: CpuSet,
    file: PathBuf,
    cgroups: CgroupLayout,
    state: Mutex<State>,
}

impl CpuManager {
    /// Loads the assignments kept in `file`, over the CPUs in `all`.
    pub fn load(file: PathBuf, all: CpuSet, cgroups: CgroupLayout) -> CpuManager {
        let mut state = State::default();
        if let Ok(text) = std::fs::read_to_string(&file) {
            match serde_json::from_str::<Checkpoint>(&text) {
                Ok(cp) => {
                    for (uid, ctrs) in cp.entries {
                        for (name, cpus) in ctrs {
                            if let Some(set) = CpuSet::parse(&cpus) {
                                state
                                    .exclusive
                                    .entry(uid.clone())
                                    .or_default()
                                    .insert(name, set);
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!("ignoring {}: {e}", file.display()),
            }
        }
        CpuManager {
            all,
            file,
            cgroups,
            state: Mutex::new(state),
        }
    }

    /// Decides where container `c` of pod `uid` runs; `cgroup` is where it will run, so the
    /// manager can move it when the pool changes. Repeated calls (restarts, re-adoption) give
    /// the same exclusive CPUs.
    pub fn place(
        &self,
        pod: &Pod,
        uid: &str,
        c: &Container,
        init: bool,
        cgroup: &str,
    ) -> Placement {
        let pinned = pod
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(&format!("cpuset.skiff.dev/{}", c.name)));
        if pinned {
            return Placement::Pinned;
        }
        let Ok(mut st) = self.state.lock() else {
            return Placement::Pinned;
        };
        if let Some(cpus) = st.exclusive.get(uid).and_then(|m| m.get(&c.name)) {
            return Placement::Exclusive(cpus.clone());
        }
        let wanted = exclusive_cpus(pod, c);
        if wanted > 0 {
            if !init {
                // Init containers have finished: their CPUs go to the app containers.
                let inits = init_names(pod);
                if let Some(m) = st.exclusive.get_mut(uid) {
                    m.retain(|name, _| !inits.contains(name));
                }
            }
            let free = self.all.minus(&taken(&st));
            if free.len() > wanted {
                let cpus = CpuSet(free.0.iter().rev().take(wanted).copied().collect());
                st.exclusive
                    .entry(uid.to_string())
                    .or_default()
                    .insert(c.name.clone(), cpus.clone());
                self.save(&st);
                self.move_shared(&st);
                return Placement::Exclusive(cpus);
            }
        }
        st.shared
            .entry(uid.to_string())
            .or_default()
            .insert(c.name.clone(), cgroup.to_string());
        let pool = self.all.minus(&taken(&st));
        if wanted > 0 {
            Placement::SharedInstead { pool, wanted }
        } else {
            Placement::Shared(pool)
        }
    }

    /// Called once container `c` runs: moves it to the pool as it is now, in case the pool
    /// changed while it was being created.
    pub fn settle(&self, uid: &str, container: &str) {
        let Ok(st) = self.state.lock() else {
            return;
        };
        if let Some(cgroup) = st.shared.get(uid).and_then(|m| m.get(container)) {
            let pool = self.all.minus(&taken(&st));
            if let Err(e) = self.cgroups.driver().set_cpus(cgroup, &pool.to_string()) {
                tracing::debug!(pod_uid = %uid, %container, "moving to the shared pool: {e}");
            }
        }
    }

    /// Forgets a pod's containers; its exclusive CPUs return to the pool.
    pub fn release(&self, uid: &str) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.shared.remove(uid);
        if st.exclusive.remove(uid).is_some() {
            self.save(&st);
            self.move_shared(&st);
        }
    }

    /// Forgets every pod not in `live` (after the first list, for pods deleted while the agent
    /// was down).
    pub fn retain(&self, live: &dyn Fn(&str) -> bool) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let before = st.exclusive.len();
        st.exclusive.retain(|uid, _| live(uid));
        st.shared.retain(|uid, _| live(uid));
        if st.exclusive.len() != before {
            self.save(&st);
            self.move_shared(&st);
        }
    }

    /// The shared pool now.
    pub fn pool(&self) -> CpuSet {
        match self.state.lock() {
            Ok(st) => self.all.minus(&taken(&st)),
            Err(_) => self.all.clone(),
        }
    }

    fn move_shared(&self, st: &State) {
        let pool = self.all.minus(&taken(st)).to_string();
        let driver = self.cgroups.driver();
        for (uid, ctrs) in &st.shared {
            for (name, cgroup) in ctrs {
                // A container not created yet has no cgroup; `settle` moves it later.
                if let Err(e) = driver.set_cpus(cgroup, &pool) {
                    tracing::debug!(pod_uid = %uid, container = %name, "moving to the shared pool: {e}");
                }
            }
        }
    }

    fn save(&self, st: &State) {
        let cp = Checkpoint {
            policy_name: "static".into(),
            entries: st
                .exclusive
                .iter()
                .map(|(uid, m)| {
                    let m = m.iter().map(|(n, c)| (n.clone(), c.to_string())).collect();
                    (uid.clone(), m)
                })
                .collect(),
        };
        let tmp = self.file.with_extension("tmp");
        let written = serde_json::to_vec(&cp)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = written {
            tracing::warn!("saving {}: {e}", self.file.display());
        }
    }
}

fn taken(st: &State) -> CpuSet {
    st.exclusive
        .values()
        .flat_map(|m| m.values())
        .fold(CpuSet::default(), |acc, c| acc.union(c))
}

fn init_names(pod: &Pod) -> BTreeSet<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| c.name.clone())
        .collect()
}

/// How many exclusive CPUs a container gets: its CPU request when the pod is Guaranteed and
/// the request is a whole number, else none.
pub fn exclusive_cpus(pod: &Pod, c: &Container) -> usize {
    if qos_class(pod) != QosClass::Guaranteed {
        return 0;
    }
    let r = c.resources.as_ref();
    let q = r
        .and_then(|r| r.requests.as_ref())
        .and_then(|m| m.get("cpu"))
        .or_else(|| r.and_then(|r| r.limits.as_ref()).and_then(|m| m.get("cpu")));
    match q.map(quantity_millis) {
        Some(Ok(m)) if m > 0 && m % 1000 == 0 => (m / 1000) as usize,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn ctr(name: &str, cpu: &str) -> Container {
        let q: BTreeMap<String, Quantity> = [
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity("64Mi".into())),
        ]
        .into();
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: Some(q.clone()),
                limits: Some(q),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn manager(dir: &std::path::Path, cpus: &str) -> CpuManager {
        let layout = CgroupLayout::V1 {
            hierarchies: BTreeMap::new(),
        };
        CpuManager::load(dir.join("state"), CpuSet::parse(cpus).unwrap(), layout)
    }

    #[test]
    fn cpu_lists_round_trip() {
        for s in ["0", "0-3", "0-1,4,6-7", ""] {
            assert_eq!(CpuSet::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(CpuSet::parse("3,1,2").unwrap().to_string(), "1-3");
        assert!(CpuSet::parse("2-1").is_none());
        assert!(CpuSet::parse("x").is_none());
    }

    #[test]
    fn whole_cpus_of_guaranteed_pods_are_exclusive() {
        let g = pod(vec![ctr("a", "2")]);
        assert_eq!(
            exclusive_cpus(&g, &g.spec.as_ref().unwrap().containers[0]),
            2
        );
        let frac = pod(vec![ctr("a", "1500m")]);
        assert_eq!(
            exclusive_cpus(&frac, &frac.spec.as_ref().unwrap().containers[0]),
            0
        );
        let mut burst = ctr("a", "1");
        burst.resources.as_mut().unwrap().limits = None;
        let b = pod(vec![burst.clone()]);
        assert_eq!(exclusive_cpus(&b, &burst), 0);
    }

    #[test]
    fn pool_keeps_a_cpu_and_assignments_survive_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manager(tmp.path(), "0-3");
        let g = pod(vec![ctr("a", "2")]);
        let a = &g.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            m.place(&g, "u1", a, false, "/x"),
            Placement::Exclusive(CpuSet::parse("2-3").unwrap())
        );
        assert_eq!(m.pool().to_string(), "0-1");
        // The same container again (a restart) keeps its CPUs.
        assert_eq!(
            m.place(&g, "u1", a, false, "/x").cpus().as_deref(),
            Some("2-3")
        );
        // Two more would leave no shared CPU.
        let g2 = pod(vec![ctr("b", "2")]);
        let b = &g2.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            m.place(&g2, "u2", b, false, "/y"),
            Placement::SharedInstead {
                pool: CpuSet::parse("0-1").unwrap(),
                wanted: 2
            }
        );
        drop(m);
        let m = manager(tmp.path(), "0-3");
        assert_eq!(m.pool().to_string(), "0-1");
        m.retain(&|uid| uid == "u2");
        assert_eq!(m.pool().to_string(), "0-3");
    }

    #[test]
    fn app_containers_reuse_init_cpus_and_release_frees_them() {
        let tmp = tempfile::tempdir().unwrap();
        let m = manager(tmp.path(), "0-1");
        let mut g = pod(vec![ctr("app", "1")]);
        g.spec.as_mut().unwrap().init_containers = Some(vec![ctr("init", "1")]);
        let init = g.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0].clone();
        let app = g.spec.as_ref().unwrap().containers[0].clone();
        assert_eq!(
            m.place(&g, "u", &init, true, "/i").cpus().as_deref(),
            Some("1")
        );
        assert_eq!(
            m.place(&g, "u", &app, false, "/a").cpus().as_deref(),
            Some("1")
        );
        assert_eq!(m.pool().to_string(), "0");
        m.release("u");
        assert_eq!(m.pool().to_string(), "0-1");
    }
}
