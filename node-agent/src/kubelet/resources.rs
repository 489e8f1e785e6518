//! Kubernetes resources → cgroup settings: the pod's QoS class and cgroup path, and each
//! container's CPU, memory, pids, cpuset and block I/O limits, including skiff's annotations
//! for what Docker has and Kubernetes lacks.
//!
//! Annotations on the pod, per container name `<c>`:
//! - `blkio.skiff.dev/<c>`: comma-separated `device-read-bps|device-write-bps|device-read-iops|
//!   device-write-iops=<device path>:<rate>`, as `docker run --device-write-bps /dev/vda:1mb`
//!   (rates take `kb`, `mb`, `gb` suffixes for bps);
//! - `memory-swap.skiff.dev/<c>`: memory plus swap, as `docker run --memory-swap` (`-1`:
//!   unlimited swap);
//! - `cpuset.skiff.dev/<c>`: the CPUs to pin to, as `docker run --cpuset-cpus`;
//! - `pids-limit.skiff.dev/<c>`: the task limit, as `docker run --pids-limit`.

use std::os::unix::fs::MetadataExt;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::downward::{quantity_bytes, quantity_millis};
use crate::runtime::cgroup::CgroupLayout;
use crate::runtime::cgroup_driver::CgroupLimits;
use crate::runtime::spec::{BlkioThrottle, Resources, DEFAULT_CPU_PERIOD};

/// A pod's QoS class, as upstream computes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has equal CPU and memory requests and limits.
    Guaranteed,
    /// Something is requested or limited, but not Guaranteed.
    Burstable,
    /// Nothing is requested or limited.
    BestEffort,
}

impl QosClass {
    /// The name in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// Why a container's resources cannot be turned into limits.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResourceError(pub String);

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.into_iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
    })
}

/// The pod's QoS class: upstream's rules over CPU and memory of every container.
pub fn qos_class(pod: &Pod) -> QosClass {
    let mut any = false;
    let mut guaranteed = true;
    for c in all_containers(pod) {
        let r = c.resources.clone().unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        let limits = r.limits.unwrap_or_default();
        for res in ["cpu", "memory"] {
            let req = requests.get(res).filter(|q| !is_zero(q));
            let lim = limits.get(res).filter(|q| !is_zero(q));
            if req.is_some() || lim.is_some() {
                any = true;
            }
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if !same(r, l) => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

fn is_zero(q: &Quantity) -> bool {
    quantity_millis(q).map(|m| m == 0).unwrap_or(false)
}

fn same(a: &Quantity, b: &Quantity) -> bool {
    match (quantity_millis(a), quantity_millis(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.0 == b.0,
    }
}

/// The pod's cgroup, as upstream lays them out: `<root>/kubepods/pod<uid>` for Guaranteed,
/// `<root>/kubepods/burstable/pod<uid>`, `<root>/kubepods/besteffort/pod<uid>`.
pub fn pod_cgroup(root: &str, qos: QosClass, uid: &str) -> String {
    let root = root.trim_end_matches('/');
    match qos {
        QosClass::Guaranteed => format!("{root}/kubepods/pod{uid}"),
        QosClass::Burstable => format!("{root}/kubepods/burstable/pod{uid}"),
        QosClass::BestEffort => format!("{root}/kubepods/besteffort/pod{uid}"),
    }
}

/// The pod cgroup's limits, as upstream's `ResourceConfigForPod` computes them: shares from
/// the pod's CPU request (the larger of the app containers' sum and the largest init
/// container's), CFS quota and memory limit from the same sums of limits, applied only when
/// every container declares that limit (always for Guaranteed); BestEffort gets the minimum
/// shares. A container's limits then act inside the pod's, so the pod as a whole never exceeds
/// what its spec allows.
pub fn pod_limits(pod: &Pod) -> CgroupLimits {
    let mut cpu_limits_declared = true;
    let mut memory_limits_declared = true;
    let sum_and_max = |containers: &[Container], f: &dyn Fn(&Container) -> i64| {
        containers.iter().fold((0i64, 0i64), |(sum, max), c| {
            let v = f(c);
            (sum.saturating_add(v), max.max(v))
        })
    };
    let (apps, inits) = match pod.spec.as_ref() {
        Some(s) => (
            s.containers.as_slice(),
            s.init_containers.as_deref().unwrap_or_default(),
        ),
        None => (&[][..], &[][..]),
    };
    for c in apps.iter().chain(inits) {
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        let declared = |name| {
            limits
                .and_then(|l| l.get(name))
                .is_some_and(|q: &Quantity| !is_zero(q))
        };
        cpu_limits_declared &= declared("cpu");
        memory_limits_declared &= declared("memory");
    }
    let amount = |c: &Container, limit: bool, name: &str| -> i64 {
        let r = c.resources.clone().unwrap_or_default();
        let limit_q = quantity(&r, |r| r.limits.as_ref(), name);
        let q = if limit {
            limit_q
        } else {
            // An unset request defaults to the limit, as API defaulting does.
            quantity(&r, |r| r.requests.as_ref(), name).or(limit_q)
        };
        let parse = if name == "cpu" {
            quantity_millis
        } else {
            quantity_bytes
        };
        q.and_then(|q| parse(q).ok()).unwrap_or(0).max(0)
    };
    let effective = |limit: bool, name: &str| {
        let (sum, _) = sum_and_max(apps, &|c| amount(c, limit, name));
        let (_, max_init) = sum_and_max(inits, &|c| amount(c, limit, name));
        sum.max(max_init)
    };
    let cpu_request = effective(false, "cpu");
    let cpu_limit = effective(true, "cpu");
    let memory_limit = effective(true, "memory");
    let quota = (cpu_limit.saturating_mul(DEFAULT_CPU_PERIOD as i64) / 1000).max(1000);
    let shares = Resources::shares_from_millicpu(cpu_request as u64).min(262_144);
    let mut out = CgroupLimits {
        cpu_shares: shares,
        cpu_quota: None,
        cpu_period: DEFAULT_CPU_PERIOD,
        memory_limit: None,
    };
    match qos_class(pod) {
        QosClass::Guaranteed => {
            out.cpu_quota = Some(quota);
            out.memory_limit = Some(memory_limit);
        }
        QosClass::Burstable => {
            if cpu_limits_declared {
                out.cpu_quota = Some(quota);
            }
            if memory_limits_declared {
                out.memory_limit = Some(memory_limit);
            }
        }
        QosClass::BestEffort => out.cpu_shares = 2,
    }
    out
}

/// Creates the pod's cgroup under its QoS class and writes [`pod_limits`]; BestEffort's parent
/// gets the minimum CPU weight, as upstream's QoS manager gives it.
pub fn ensure_pod_cgroup(
    layout: &CgroupLayout,
    root: &str,
    pod: &Pod,
    uid: &str,
) -> std::io::Result<()> {
    let qos = qos_class(pod);
    let path = pod_cgroup(root, qos, uid);
    let driver = layout.driver();
    if qos == QosClass::BestEffort {
        if let Some(parent) = path.rsplit_once('/').map(|(p, _)| p) {
            driver.create(parent)?;
            let limits = CgroupLimits {
                cpu_shares: 2,
                cpu_period: DEFAULT_CPU_PERIOD,
                ..Default::default()
            };
            driver.set_limits(parent, &limits)?;
        }
    }
    driver.create(&path)?;
    driver.set_limits(&path, &pod_limits(pod))
}

fn quantity<'a>(
    r: &'a ResourceRequirements,
    which: fn(&ResourceRequirements) -> Option<&std::collections::BTreeMap<String, Quantity>>,
    name: &str,
) -> Option<&'a Quantity> {
    which(r).and_then(|m| m.get(name))
}

/// The cgroup limits of one container: requests → CPU shares, CPU limit → CFS quota,
/// memory limit (no swap unless annotated), and the annotations above.
pub fn container_resources(pod: &Pod, c: &Container) -> Result<Resources, ResourceError> {
    let r = c.resources.clone().unwrap_or_default();
    let bad =
        |what: &str, q: &Quantity| ResourceError(format!("invalid {what} quantity {:?}", q.0));
    let mut out = Resources::default();
    let cpu_request = quantity(&r, |r| r.requests.as_ref(), "cpu");
    let cpu_limit = quantity(&r, |r| r.limits.as_ref(), "cpu");
    let request_milli = match cpu_request.or(cpu_limit) {
        Some(q) => quantity_millis(q).map_err(|_| bad("cpu", q))?,
        None => 0,
    };
    out.cpu_shares = Some(Resources::shares_from_millicpu(request_milli.max(0) as u64));
    if let Some(q) = cpu_limit {
        let milli = quantity_millis(q).map_err(|_| bad("cpu", q))?;
        if milli > 0 {
            out = out.with_cpus(milli as f64 / 1000.0);
        }
    }
    if let Some(q) = quantity(&r, |r| r.limits.as_ref(), "memory") {
        let bytes = quantity_bytes(q).map_err(|_| bad("memory", q))?;
        if bytes > 0 {
            out.memory_limit = Some(bytes);
        }
    }
    let annotation = |kind: &str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(&format!("{kind}.skiff.dev/{}", c.name)))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    if let Some(swap) = annotation("memory-swap") {
        let Some(limit) = out.memory_limit else {
            return Err(ResourceError(format!(
                "annotation memory-swap.skiff.dev/{} needs a memory limit on the container",
                c.name
            )));
        };
        let total = if swap == "-1" {
            -1
        } else {
            let q = Quantity(swap.clone());
            quantity_bytes(&q).map_err(|_| bad("memory-swap", &q))?
        };
        if total != -1 && total < limit {
            return Err(ResourceError(format!(
                "memory-swap.skiff.dev/{}: {swap} is less than the memory limit ({limit} bytes)",
                c.name
            )));
        }
        out.memory_swap = Some(total);
    }
    if let Some(cpus) = annotation("cpuset") {
        if !valid_cpu_list(&cpus) {
            return Err(ResourceError(format!(
                "cpuset.skiff.dev/{}: {cpus:?} is not a CPU list such as 0-1,3",
                c.name
            )));
        }
        out.cpuset_cpus = Some(cpus);
    }
    if let Some(pids) = annotation("pids-limit") {
        let n: i64 = pids.parse().map_err(|_| {
            ResourceError(format!(
                "pids-limit.skiff.dev/{}: {pids:?} is not a number",
                c.name
            ))
        })?;
        out.pids_limit = Some(n);
    }
    if let Some(spec) = annotation("blkio") {
        out.blkio = parse_blkio(&spec)
            .map_err(|e| ResourceError(format!("blkio.skiff.dev/{}: {e}", c.name)))?;
    }
    Ok(out)
}

/// `0-3,5` style lists.
fn valid_cpu_list(s: &str) -> bool {
    s.split(',').all(|part| {
        let mut ends = part.splitn(2, '-');
        let ok = |x: Option<&str>| x.is_some_and(|x| !x.is_empty() && x.parse::<u32>().is_ok());
        match (ends.next(), ends.next()) {
            (a, None) => ok(a),
            (a, b) => ok(a) && ok(b),
        }
    })
}

/// Parses `device-write-bps=/dev/vda:1mb,...` into per-device throttles.
pub fn parse_blkio(spec: &str) -> Result<Vec<BlkioThrottle>, String> {
    let mut out: Vec<BlkioThrottle> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not <limit>=<device>:<rate>"))?;
        let (device, rate) = value
            .rsplit_once(':')
            .ok_or_else(|| format!("{value:?} is not <device>:<rate>"))?;
        let bytes = key.ends_with("-bps");
        let rate =
            parse_rate(rate, bytes).ok_or_else(|| format!("bad rate {rate:?} in {item:?}"))?;
        let meta = std::fs::metadata(device).map_err(|e| format!("device {device}: {e}"))?;
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
        if !std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()) {
            return Err(format!("{device} is not a block device"));
        }
        let entry = match out
            .iter_mut()
            .position(|t| t.major == major && t.minor == minor)
        {
            Some(i) => &mut out[i],
            None => {
                out.push(BlkioThrottle {
                    major,
                    minor,
                    ..Default::default()
                });
                out.last_mut().expect("just pushed")
            }
        };
        match key {
            "device-read-bps" => entry.read_bps = Some(rate),
            "device-write-bps" => entry.write_bps = Some(rate),
            "device-read-iops" => entry.read_iops = Some(rate),
            "device-write-iops" => entry.write_iops = Some(rate),
            other => {
                return Err(format!(
                    "unknown limit {other:?}; use device-read-bps, device-write-bps, \
                     device-read-iops or device-write-iops"
                ))
            }
        }
    }
    Ok(out)
}

fn parse_rate(s: &str, bytes: bool) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    if !bytes {
        return s.parse().ok().filter(|n| *n > 0);
    }
    let (num, mult) = match s.find(|c: char| !c.is_ascii_digit()) {
        None => (s.as_str(), 1u64),
        Some(i) => {
            let mult = match s[i..].trim_end_matches('b') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                _ => return None,
            };
            (&s[..i], mult)
        }
    };
    num.parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_cpu_lists() {
        assert_eq!(parse_rate("1mb", true), Some(1 << 20));
        assert_eq!(parse_rate("512k", true), Some(512 << 10));
        assert_eq!(parse_rate("100", false), Some(100));
        assert_eq!(parse_rate("1xb", true), None);
        assert!(valid_cpu_list("0-1,3"));
        assert!(!valid_cpu_list("0-"));
        assert!(!valid_cpu_list("a"));
    }

    #[test]
    fn blkio_needs_a_known_limit_and_a_block_device() {
        assert!(parse_blkio("device-write-bps=/dev/null:1mb").is_err());
        assert!(parse_blkio("device-write-bps=/nonexistent:1mb").is_err());
        assert!(parse_blkio("speed=/dev/null:1mb").is_err());
        assert!(parse_blkio("device-write-bps=/etc/hostname:1mb").is_err());
    }

    #[test]
    fn pod_cgroups_follow_qos() {
        assert_eq!(
            pod_cgroup("/skiff/n1", QosClass::Burstable, "u"),
            "/skiff/n1/kubepods/burstable/podu"
        );
        assert_eq!(
            pod_cgroup("/skiff/", QosClass::Guaranteed, "u"),
            "/skiff/kubepods/podu"
        );
    }
    /// A test container: name, requests, limits.
    type Spec<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)]);

    fn pod(containers: &[Spec], inits: usize) -> Pod {
        let mk = |(name, req, lim): &Spec| {
            let map = |kv: &[(&str, &str)]| {
                (!kv.is_empty()).then(|| {
                    kv.iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect()
                })
            };
            Container {
                name: name.to_string(),
                resources: Some(ResourceRequirements {
                    requests: map(req),
                    limits: map(lim),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let all: Vec<Container> = containers.iter().map(mk).collect();
        let (init, apps) = all.split_at(inits);
        Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                init_containers: Some(init.to_vec()),
                containers: apps.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_limits_follow_upstream() {
        // Guaranteed: sums of both containers' limits.
        let g = pod(
            &[
                ("a", &[], &[("cpu", "500m"), ("memory", "64Mi")]),
                ("b", &[], &[("cpu", "1"), ("memory", "64Mi")]),
            ],
            0,
        );
        let l = pod_limits(&g);
        assert_eq!(l.cpu_shares, 1536);
        assert_eq!(l.cpu_quota, Some(150_000));
        assert_eq!(l.memory_limit, Some(128 << 20));
        // Burstable: a container without a CPU limit leaves the pod's quota unlimited; a large
        // init container sets the memory limit.
        let b = pod(
            &[
                ("init", &[], &[("cpu", "2"), ("memory", "256Mi")]),
                ("a", &[("cpu", "100m")], &[("memory", "32Mi")]),
            ],
            1,
        );
        let l = pod_limits(&b);
        assert_eq!(l.cpu_shares, 2048);
        assert_eq!(l.cpu_quota, None);
        assert_eq!(l.memory_limit, Some(256 << 20));
        // BestEffort.
        let e = pod(&[("a", &[], &[])], 0);
        assert_eq!(pod_limits(&e).cpu_shares, 2);
        assert_eq!(pod_limits(&e).memory_limit, None);
    }
}
