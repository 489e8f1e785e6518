//! Leader election on a `coordination.k8s.io/v1` Lease in `kube-system`, as client-go's
//! `leaderelection` does it: a candidate takes the Lease when nobody holds it or when its
//! record has not changed for a whole lease duration *as this candidate observed it* (its own
//! clock, never the holder's timestamps), and the leader renews it every retry period. A
//! leader that cannot renew within the renew deadline stops its work before the Lease can
//! expire for anyone else, so two instances never act at once.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// Namespace of the control plane's Leases.
pub const NAMESPACE: &str = "kube-system";

/// Timings, upstream's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a Lease stays valid after its last change, as others observe it.
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renewal.
    pub renew_deadline: Duration,
    /// How often candidates try and leaders renew.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate last saw of the Lease, and when it saw it change.
struct Observed {
    record: Option<(Option<String>, Option<MicroTime>)>,
    at: Instant,
}

/// Runs `work` whenever this instance (`identity`) holds the Lease `name`, for as long as it
/// holds it; campaigns again after losing it. Never returns unless `work` does while leading.
pub async fn run_while_leader<F, Fut>(
    client: kube::Client,
    name: &str,
    identity: String,
    timing: Timing,
    work: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let mut observed = Observed {
        record: None,
        at: Instant::now(),
    };
    loop {
        // Campaign.
        loop {
            match try_acquire_or_renew(&api, name, &identity, timing, &mut observed).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::debug!(lease = name, "leader election: {e}"),
            }
            tokio::time::sleep(timing.retry_period).await;
        }
        tracing::info!(lease = name, identity = %identity, "became leader");
        let lead = async {
            let mut last_renewal = Instant::now();
            loop {
                tokio::time::sleep(timing.retry_period).await;
                match try_acquire_or_renew(&api, name, &identity, timing, &mut observed).await {
                    Ok(true) => last_renewal = Instant::now(),
                    Ok(false) => return,
                    Err(e) => tracing::warn!(lease = name, "renewing the lease: {e}"),
                }
                if last_renewal.elapsed() >= timing.renew_deadline {
                    return;
                }
            }
        };
        tokio::select! {
            _ = lead => tracing::warn!(lease = name, identity = %identity, "lost the lease; stopping"),
            _ = work() => return,
        }
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One attempt: true when this instance holds the Lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    timing: Timing,
    observed: &mut Observed,
) -> Result<bool, kube::Error> {
    let seconds = timing.lease_duration.as_secs() as i32;
    let Some(mut lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NAMESPACE.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.into()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let record = (spec.holder_identity.clone(), spec.renew_time.clone());
    if observed.record.as_ref() != Some(&record) {
        observed.record = Some(record);
        observed.at = Instant::now();
    }
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let mine = holder.as_deref() == Some(identity);
    let duration = spec
        .lease_duration_seconds
        .map_or(timing.lease_duration, |s| {
            Duration::from_secs(s.max(1) as u64)
        });
    if !mine && holder.is_some() && observed.at.elapsed() < duration {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(identity.into());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(now());
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(written) => {
            let spec = written.spec.unwrap_or_default();
            observed.record = Some((spec.holder_identity, spec.renew_time));
            observed.at = Instant::now();
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
