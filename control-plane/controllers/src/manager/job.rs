//! The Job controller, as upstream's: runs pods from each Job's template until `completions`
//! succeed (at most `parallelism` at once), or until the Job fails: more pod failures than
//! `backoffLimit` (restarts of `OnFailure` pods count too), or `activeDeadlineSeconds` passed.
//! A finished Job first gets the interim condition 1.33 sets (`SuccessCriteriaMet` or
//! `FailureTarget`), its remaining pods are deleted, and once none is left running it gets
//! `Complete` or `Failed`. `suspend` deletes the active pods and stops; `ttlSecondsAfterFinished`
//! deletes a finished Job (background propagation), as upstream's TTL-after-finished controller.
//!
//! Counting is upstream's finalizer tracking: every pod carries `batch.kubernetes.io/job-tracking`;
//! a terminated pod's uid is first written to `status.uncountedTerminatedPods`, then its
//! finalizer is removed, then the uid moves into `succeeded`/`failed`. A pod deleted before it is
//! counted therefore cannot vanish uncounted, and a controller crash between the steps repeats a
//! step rather than counting twice. Pods of a deleted Job lose the finalizer so they can go.
//!
//! Both completion modes: `NonIndexed` pods are `<job>-<5 chars>`; `Indexed` pods are
//! `<job>-<index>-<5 chars>` with the `batch.kubernetes.io/job-completion-index` annotation and
//! label, `JOB_COMPLETION_INDEX` in every container's environment, hostname `<job>-<index>`,
//! and `status.completedIndexes`. Not supported: podFailurePolicy, successPolicy,
//! backoffLimitPerIndex (such Jobs run with the plain rules above).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use serde_json::{json, Value};
use tracing::Instrument;

use super::claim::{self, controller_of, Owner};
use super::expectations::Expectations;
use super::informer::Change;
use super::queue::Queue;
use super::store::ObjectKey;
use super::{podutil, Context, Error};
use crate::events::{Kind, Recorder};

/// The finalizer that keeps a pod until its Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation and label naming an Indexed Job pod's completion index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// Most pods created or deleted in one sync.
const BURST: usize = 500;
const QUEUE_CAPACITY: usize = 100_000;
const WORKERS: usize = 4;
const RESYNC: Duration = Duration::from_secs(300);
/// Pod-creation backoff after failures: 10 s doubling, at most 6 minutes (upstream's).
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);
/// Most Jobs with a remembered failure backoff.
const BACKOFF_ENTRIES: usize = 100_000;
/// Most terminated pod uids one Job moves through `uncountedTerminatedPods` per sync.
const MAX_UNCOUNTED: usize = 500;

/// Recent consecutive failures of one Job's pods, for the creation backoff.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    failures: u32,
    counted: i64,
    last: Instant,
}

/// The controller's state.
pub struct JobController {
    ctx: Arc<Context>,
    queue: Queue<ObjectKey>,
    /// Pods whose Job is gone but which still carry the tracking finalizer.
    orphans: Queue<ObjectKey>,
    expectations: Expectations,
    recorder: Recorder,
    backoff: Mutex<HashMap<ObjectKey, Backoff>>,
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let jc = Arc::new(JobController {
        ctx: ctx.clone(),
        queue: Queue::new("job", QUEUE_CAPACITY),
        orphans: Queue::new("job-orphan-pods", QUEUE_CAPACITY),
        expectations: Expectations::default(),
        recorder: Recorder::start(ctx.client.clone(), "job-controller", None),
        backoff: Mutex::new(HashMap::new()),
    });
    let weak = Arc::downgrade(&jc);
    ctx.jobs.on_change(move |c| {
        if let Some(jc) = weak.upgrade() {
            jc.job_changed(c)
        }
    });
    let weak = Arc::downgrade(&jc);
    ctx.pods.on_change(move |c| {
        if let Some(jc) = weak.upgrade() {
            jc.pod_changed(c)
        }
    });
    let store = ctx.jobs.store().clone();
    let mut all = super::workers("job", jc.queue.clone(), WORKERS, {
        let jc = jc.clone();
        move |key| {
            let jc = jc.clone();
            async move { jc.sync(key).await }
        }
    });
    all.extend(super::workers("job-orphan-pods", jc.orphans.clone(), 1, {
        let jc = jc.clone();
        move |key| {
            let jc = jc.clone();
            async move { jc.release_orphan(key).await }
        }
    }));
    all.push(super::resync(jc.queue.clone(), RESYNC, move || {
        store.keys()
    }));
    all
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// How a pod ended, for counting: `Some(true)` succeeded, `Some(false)` failed (a pod deleted
/// before it succeeded counts as failed, as upstream with podReplacementPolicy
/// TerminatingOrFailed), `None` still running.
pub fn outcome(pod: &Pod) -> Option<bool> {
    match phase(pod) {
        "Succeeded" => Some(true),
        "Failed" => Some(false),
        _ if pod.metadata.deletion_timestamp.is_some() => Some(false),
        _ => None,
    }
}

/// A pod's completion index, if it has a valid one below `completions`.
fn index_of(pod: &Pod, completions: i32) -> Option<i32> {
    let v = pod.metadata.annotations.as_ref()?.get(INDEX_KEY)?;
    let i: i32 = v.parse().ok()?;
    (0..completions).contains(&i).then_some(i)
}

/// Parses `status.completedIndexes` (`1,3-5`), ignoring what is malformed or out of range.
pub fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(a), Ok(b)) = (a, b) {
            for i in a.max(0)..=b.min(completions - 1) {
                out.insert(i);
            }
        }
    }
    out
}

/// Formats indexes as upstream's `completedIndexes`: ascending, runs as `a-b`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The creation backoff remaining after `failures` consecutive failures, the last `elapsed`
/// ago.
pub fn backoff_remaining(failures: u32, elapsed: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let delay = BACKOFF_BASE
        .checked_mul(1u32.checked_shl(failures - 1).unwrap_or(u32::MAX))
        .unwrap_or(BACKOFF_MAX)
        .min(BACKOFF_MAX);
    delay.saturating_sub(elapsed)
}

/// How many pods a running Job wants active: upstream's `wantActive`.
pub fn want_active(parallelism: i32, completions: Option<i32>, succeeded: i32, active: i32) -> i32 {
    let parallelism = parallelism.max(0);
    match completions {
        Some(c) => (c - succeeded).clamp(0, parallelism),
        None if succeeded > 0 => active.min(parallelism),
        None => parallelism,
    }
}

/// Why a Job fails, if it does: more failures than its backoff limit, or its deadline passed.
pub fn failure(
    failures: i64,
    backoff_limit: i32,
    start: Option<Timestamp>,
    deadline_seconds: Option<i64>,
    now: Timestamp,
) -> Option<(&'static str, &'static str)> {
    if failures > i64::from(backoff_limit) {
        return Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
    }
    if let (Some(start), Some(d)) = (start, deadline_seconds) {
        if start.as_second().saturating_add(d) <= now.as_second() {
            return Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ));
        }
    }
    None
}

fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job is finished (Complete or Failed).
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| condition(s, "Complete").is_some() || condition(s, "Failed").is_some())
}

/// When a finished Job finished.
fn finish_time(job: &Job) -> Option<Timestamp> {
    let s = job.status.as_ref()?;
    s.completion_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| {
            condition(s, "Failed").and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
        })
        .or_else(|| {
            condition(s, "Complete").and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
        })
}

fn set_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = Some(Time(now));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
        return;
    }
    conds.push(JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

fn resolve_job(ctx: &Context, namespace: &str, r: &OwnerReference) -> Option<Arc<Job>> {
    if r.kind != "Job" || !r.api_version.starts_with("batch/") {
        return None;
    }
    let job = ctx.jobs.store().get_named(namespace, &r.name)?;
    (job.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(job)
}

impl JobController {
    fn job_changed(&self, change: &Change<'_, Job>) {
        match change {
            Change::Added(j) | Change::Updated { new: j, .. } => {
                if let Some(k) = ObjectKey::of(j.as_ref()) {
                    self.queue.add(k);
                }
            }
            Change::Deleted(j) => {
                let Some(k) = ObjectKey::of(j.as_ref()) else {
                    return;
                };
                self.expectations.forget(&k);
                self.lock_backoff().remove(&k);
                // Its pods keep their finalizer until released.
                let uid = j.metadata.uid.clone().unwrap_or_default();
                for p in self.ctx.pods.store().list_namespace(&k.namespace) {
                    if has_finalizer(&p) && controller_of(&p.metadata).is_some_and(|r| r.uid == uid)
                    {
                        if let Some(pk) = ObjectKey::of(p.as_ref()) {
                            self.orphans.add(pk);
                        }
                    }
                }
            }
        }
    }

    fn lock_backoff(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Backoff>> {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pod_changed(&self, change: &Change<'_, Pod>) {
        let (pod, old) = match change {
            Change::Added(p) => (*p, None),
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                (*new, Some(*old))
            }
            Change::Deleted(p) => (*p, None),
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let Some(r) = controller_of(&pod.metadata) else {
            return;
        };
        if r.kind != "Job" {
            return;
        }
        let Some(job) = resolve_job(&self.ctx, ns, r) else {
            if has_finalizer(pod) && self.ctx.jobs.has_synced() {
                if let Some(pk) = ObjectKey::of(pod.as_ref()) {
                    self.orphans.add(pk);
                }
            }
            return;
        };
        let Some(k) = ObjectKey::of(job.as_ref()) else {
            return;
        };
        match change {
            Change::Added(_) => self.expectations.creation_observed(&k),
            Change::Deleted(_) => {
                if let Some(pk) = ObjectKey::of(pod.as_ref()) {
                    self.expectations.deletion_observed(&k, &pk);
                }
            }
            Change::Updated { .. } => {
                let newly_deleting = pod.metadata.deletion_timestamp.is_some()
                    && old.is_some_and(|o| o.metadata.deletion_timestamp.is_none());
                if newly_deleting {
                    if let Some(pk) = ObjectKey::of(pod.as_ref()) {
                        self.expectations.deletion_observed(&k, &pk);
                    }
                }
            }
        }
        self.queue.add(k);
    }

    /// Removes the tracking finalizer from a pod whose Job is gone.
    async fn release_orphan(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.jobs.wait_synced().await;
        let Some(pod) = self.ctx.pods.store().get(&key) else {
            return Ok(());
        };
        if !has_finalizer(&pod) {
            return Ok(());
        }
        if let Some(r) = controller_of(&pod.metadata) {
            if r.kind == "Job" {
                // Ask the API, not the cache: a Job only just created may not be cached yet.
                let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
                if let Some(j) = api.get_opt(&r.name).await? {
                    if j.metadata.uid.as_deref() == Some(r.uid.as_str())
                        && j.metadata.deletion_timestamp.is_none()
                    {
                        return Ok(());
                    }
                }
            }
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        remove_finalizer(&api, &key.name).await
    }

    async fn sync(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.pods.wait_synced().await;
        self.ctx.jobs.wait_synced().await;
        let Some(job) = self.ctx.jobs.store().get(&key) else {
            self.expectations.forget(&key);
            return Ok(());
        };
        let span = tracing::debug_span!("job", namespace = %key.namespace, name = %key.name);
        self.sync_one(&key, job).instrument(span).await
    }

    /// Every pod this Job controls (claiming orphans its selector matches), terminated ones
    /// included.
    async fn pods_of(&self, key: &ObjectKey, job: &Arc<Job>) -> Result<Vec<Arc<Pod>>, Error> {
        let Some(selector) = job.spec.as_ref().and_then(|s| s.selector.clone()) else {
            return Err(Error::Invalid("job has no selector".into()));
        };
        let candidates = self.ctx.pods.store().claimable(
            &key.namespace,
            job.metadata.uid.as_deref().unwrap_or_default(),
        );
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let jobs_api: Api<Job> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let owner = Owner::of(job.as_ref());
        claim::claim(&pods_api, &owner, &selector, candidates, || async {
            match jobs_api.get_opt(&key.name).await? {
                Some(fresh) => Ok(fresh.metadata.uid == job.metadata.uid
                    && fresh.metadata.deletion_timestamp.is_none()),
                None => Ok(false),
            }
        })
        .await
    }

    async fn sync_one(&self, key: &ObjectKey, job: Arc<Job>) -> Result<(), Error> {
        let Some(spec) = job.spec.as_ref() else {
            return Ok(());
        };
        if spec
            .managed_by
            .as_deref()
            .is_some_and(|m| m != "kubernetes.io/job-controller")
        {
            return Ok(());
        }
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let jobs_api: Api<Job> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        if job.metadata.deletion_timestamp.is_some() {
            // Going: let its pods go too.
            let uid = job.metadata.uid.clone().unwrap_or_default();
            for p in self.ctx.pods.store().list_namespace(&key.namespace) {
                if has_finalizer(&p) && controller_of(&p.metadata).is_some_and(|r| r.uid == uid) {
                    remove_finalizer(&pods_api, p.metadata.name.as_deref().unwrap_or_default())
                        .await?;
                }
            }
            return Ok(());
        }
        if is_finished(&job) {
            let uid = job.metadata.uid.clone().unwrap_or_default();
            for p in self.ctx.pods.store().list_namespace(&key.namespace) {
                if has_finalizer(&p) && controller_of(&p.metadata).is_some_and(|r| r.uid == uid) {
                    remove_finalizer(&pods_api, p.metadata.name.as_deref().unwrap_or_default())
                        .await?;
                }
            }
            self.lock_backoff().remove(key);
            return self.expire(key, &job, &jobs_api).await;
        }
        let needs_sync = self.expectations.satisfied(key);
        let pods = self.pods_of(key, &job).await?;
        let now = Timestamp::now();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let completions = spec.completions;
        let parallelism = spec.parallelism.unwrap_or(1);
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let suspended = spec.suspend.unwrap_or(false);
        let mut status = job.status.clone().unwrap_or_default();
        let before = status.clone();

        // 1. Newly terminated pods go into uncountedTerminatedPods before their finalizer goes.
        let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let mut unc_succ: Vec<String> = uncounted.succeeded.clone().unwrap_or_default();
        let mut unc_fail: Vec<String> = uncounted.failed.clone().unwrap_or_default();
        let known: HashSet<String> = unc_succ.iter().chain(unc_fail.iter()).cloned().collect();
        let mut added = 0;
        for p in &pods {
            if added >= MAX_UNCOUNTED || !has_finalizer(p) {
                continue;
            }
            let Some(uid) = p.metadata.uid.clone() else {
                continue;
            };
            if known.contains(&uid) {
                continue;
            }
            match outcome(p) {
                Some(true) => unc_succ.push(uid),
                Some(false) => unc_fail.push(uid),
                None => continue,
            }
            added += 1;
        }
        if added > 0 {
            uncounted.succeeded = Some(unc_succ.clone());
            uncounted.failed = Some(unc_fail.clone());
            let patch = json!({"status": {"uncountedTerminatedPods": {"succeeded": unc_succ, "failed": unc_fail}}});
            patch_status(&jobs_api, &key.name, &patch).await?;
        }
        // 2. Their finalizers go.
        let unc: HashSet<&String> = unc_succ.iter().chain(unc_fail.iter()).collect();
        let mut finalized: HashSet<String> = HashSet::new();
        let by_uid: HashMap<&str, &Arc<Pod>> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p)))
            .collect();
        for uid in &unc {
            match by_uid.get(uid.as_str()) {
                Some(p) if has_finalizer(p) => {
                    let name = p.metadata.name.as_deref().unwrap_or_default();
                    remove_finalizer(&pods_api, name).await?;
                    finalized.insert((*uid).clone());
                }
                _ => {
                    finalized.insert((*uid).clone());
                }
            }
        }
        // 3. Counted: from uncounted into the counters.
        let mut succeeded = status.succeeded.unwrap_or(0);
        let mut failed = status.failed.unwrap_or(0);
        let mut completed = parse_indexes(
            status.completed_indexes.as_deref().unwrap_or_default(),
            completions.unwrap_or(0),
        );
        for uid in unc_succ.iter().filter(|u| finalized.contains(*u)) {
            if indexed {
                if let Some(i) = by_uid
                    .get(uid.as_str())
                    .and_then(|p| index_of(p, completions.unwrap_or(0)))
                {
                    completed.insert(i);
                }
            } else {
                succeeded += 1;
            }
        }
        failed += unc_fail.iter().filter(|u| finalized.contains(*u)).count() as i32;
        if indexed {
            succeeded = completed.len() as i32;
            status.completed_indexes = Some(format_indexes(&completed));
        }
        unc_succ.retain(|u| !finalized.contains(u));
        unc_fail.retain(|u| !finalized.contains(u));
        // Decisions count the succeeded pods not yet moved out of uncounted too.
        let mut done_indexes = completed.clone();
        for uid in &unc_succ {
            if let Some(i) = by_uid
                .get(uid.as_str())
                .and_then(|p| index_of(p, completions.unwrap_or(0)))
            {
                done_indexes.insert(i);
            }
        }
        let succ_total = if indexed {
            done_indexes.len() as i32
        } else {
            succeeded + unc_succ.len() as i32
        };
        status.succeeded = Some(succeeded);
        status.failed = Some(failed);
        status.uncounted_terminated_pods =
            Some(k8s_openapi::api::batch::v1::UncountedTerminatedPods {
                succeeded: Some(unc_succ.clone()),
                failed: Some(unc_fail.clone()),
            });

        let active: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| podutil::is_active(p))
            .cloned()
            .collect();
        let with_finalizer = pods.iter().filter(|p| has_finalizer(p)).count();
        let restarts: i64 = if spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure")
        {
            active
                .iter()
                .flat_map(|p| {
                    p.status
                        .iter()
                        .flat_map(|s| s.container_statuses.iter().flatten())
                })
                .map(|c| i64::from(c.restart_count))
                .sum()
        } else {
            0
        };
        let failures = i64::from(failed) + unc_fail.len() as i64 + restarts;
        self.note_failures(key, i64::from(failed) + unc_fail.len() as i64, succ_total);

        let mut conds = status.conditions.clone().unwrap_or_default();
        let mut manage_error = None;
        let failure_target = conds
            .iter()
            .find(|c| c.type_ == "FailureTarget" && c.status == "True")
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            });
        let success_met = conds
            .iter()
            .any(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True");
        let start = status.start_time.as_ref().map(|t| t.0);
        let newly_failed = if failure_target.is_none() && !success_met {
            failure(
                failures,
                backoff_limit,
                if suspended { None } else { start },
                spec.active_deadline_seconds,
                now,
            )
        } else {
            None
        };
        let reached = match completions {
            Some(c) => succ_total >= c,
            None => succ_total > 0 && active.is_empty(),
        };
        let ending = failure_target.is_some() || success_met || newly_failed.is_some() || reached;
        if let Some((reason, message)) = newly_failed {
            set_condition(&mut conds, "FailureTarget", "True", reason, message, now);
            let event = if reason == "DeadlineExceeded" {
                "DeadlineExceeded"
            } else {
                "BackoffLimitExceeded"
            };
            self.recorder
                .object(job.as_ref(), Kind::Warning, event, message.to_string());
        } else if failure_target.is_none() && !success_met && reached {
            set_condition(
                &mut conds,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            );
        }
        if ending {
            // Whatever still runs goes; the final condition waits until every pod is counted.
            if needs_sync && !active.is_empty() {
                if let Err(e) = self.delete_pods(key, &job, &active, &pods_api).await {
                    manage_error = Some(e);
                }
            }
            let settled = active.is_empty()
                && with_finalizer == 0
                && unc_succ.is_empty()
                && unc_fail.is_empty();
            if settled {
                let failing = conds
                    .iter()
                    .find(|c| c.type_ == "FailureTarget" && c.status == "True")
                    .map(|c| {
                        (
                            c.reason.clone().unwrap_or_default(),
                            c.message.clone().unwrap_or_default(),
                        )
                    });
                match failing {
                    Some((reason, message)) => {
                        set_condition(&mut conds, "Failed", "True", &reason, &message, now);
                    }
                    None => {
                        set_condition(
                            &mut conds,
                            "Complete",
                            "True",
                            "CompletionsReached",
                            "Reached expected number of succeeded pods",
                            now,
                        );
                        status.completion_time = Some(Time(now));
                        self.recorder.object(
                            job.as_ref(),
                            Kind::Normal,
                            "Completed",
                            "Job completed".into(),
                        );
                    }
                }
            }
        } else if suspended {
            if conds
                .iter()
                .all(|c| c.type_ != "Suspended" || c.status != "True")
            {
                set_condition(
                    &mut conds,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                );
                self.recorder.object(
                    job.as_ref(),
                    Kind::Normal,
                    "Suspended",
                    "Job suspended".into(),
                );
            }
            if needs_sync && !active.is_empty() {
                if let Err(e) = self.delete_pods(key, &job, &active, &pods_api).await {
                    manage_error = Some(e);
                }
            }
        } else {
            if conds
                .iter()
                .any(|c| c.type_ == "Suspended" && c.status == "True")
            {
                set_condition(
                    &mut conds,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    now,
                );
                self.recorder
                    .object(job.as_ref(), Kind::Normal, "Resumed", "Job resumed".into());
                // The deadline counts from the resumption.
                status.start_time = Some(Time(now));
            }
            if status.start_time.is_none() {
                status.start_time = Some(Time(now));
            }
            if let Some(d) = spec.active_deadline_seconds {
                let start = status
                    .start_time
                    .as_ref()
                    .map(|t| t.0.as_second())
                    .unwrap_or(now.as_second());
                let left = start
                    .saturating_add(d)
                    .saturating_sub(now.as_second())
                    .max(0) as u64;
                self.queue
                    .add_after(key.clone(), Duration::from_secs(left.saturating_add(1)));
            }
            if needs_sync {
                let result = if indexed {
                    self.manage_indexed(
                        key,
                        &job,
                        &active,
                        &done_indexes,
                        parallelism,
                        completions.unwrap_or(0),
                        &pods_api,
                    )
                    .await
                } else {
                    let want =
                        want_active(parallelism, completions, succ_total, active.len() as i32);
                    self.manage(key, &job, &active, want as usize, &pods_api)
                        .await
                };
                if let Err(e) = result {
                    manage_error = Some(e);
                }
            }
        }
        status.active = Some(active.len() as i32);
        status.ready = Some(active.iter().filter(|p| podutil::is_ready(p)).count() as i32);
        status.terminating = Some(
            pods.iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_some()
                        && !matches!(phase(p), "Succeeded" | "Failed")
                })
                .count() as i32,
        );
        status.conditions = (!conds.is_empty()).then_some(conds);
        if normalized(&status) != normalized(&before) {
            write_status(&jobs_api, &key.name, &status).await?;
        }
        match manage_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Remembers consecutive failures for the creation backoff: a new failure extends it, a
    /// success ends it.
    fn note_failures(&self, key: &ObjectKey, failed_total: i64, succeeded: i32) {
        let mut map = self.lock_backoff();
        if map.len() >= BACKOFF_ENTRIES && !map.contains_key(key) {
            map.clear();
        }
        let e = map.entry(key.clone()).or_insert(Backoff {
            failures: 0,
            counted: failed_total,
            last: Instant::now(),
        });
        if failed_total > e.counted {
            e.failures = e
                .failures
                .saturating_add((failed_total - e.counted).min(32) as u32);
            e.last = Instant::now();
        } else if succeeded > 0
            && failed_total == e.counted
            && e.failures > 0
            && e.last.elapsed() > BACKOFF_MAX
        {
            e.failures = 0;
        }
        e.counted = failed_total;
    }

    fn backoff_left(&self, key: &ObjectKey) -> Duration {
        self.lock_backoff()
            .get(key)
            .map(|b| backoff_remaining(b.failures, b.last.elapsed()))
            .unwrap_or_default()
    }

    /// NonIndexed: creates or deletes pods so `want` are active.
    async fn manage(
        &self,
        key: &ObjectKey,
        job: &Job,
        active: &[Arc<Pod>],
        want: usize,
        api: &Api<Pod>,
    ) -> Result<(), Error> {
        if active.len() > want {
            let mut surplus = active.to_vec();
            podutil::sort_for_deletion(&mut surplus, &[], Timestamp::now());
            surplus.truncate((active.len() - want).min(BURST));
            return self.delete_pods(key, job, &surplus, api).await;
        }
        if active.len() < want {
            let wait = self.backoff_left(key);
            if !wait.is_zero() {
                tracing::debug!(?wait, "pod creation backing off after failures");
                self.queue.add_after(key.clone(), wait);
                return Ok(());
            }
            let n = (want - active.len()).min(BURST);
            let template = pod_template(job)?;
            let pods: Vec<Pod> = (0..n).map(|_| template.clone()).collect();
            return self.create_pods(key, job, pods, api).await;
        }
        Ok(())
    }

    /// Indexed: one active pod per index not yet completed, lowest first, at most
    /// `parallelism`; duplicates of an index go.
    #[allow(clippy::too_many_arguments)]
    async fn manage_indexed(
        &self,
        key: &ObjectKey,
        job: &Job,
        active: &[Arc<Pod>],
        completed: &BTreeSet<i32>,
        parallelism: i32,
        completions: i32,
        api: &Api<Pod>,
    ) -> Result<(), Error> {
        let mut seen = HashSet::new();
        let mut surplus = Vec::new();
        for p in active {
            match index_of(p, completions) {
                Some(i) if !completed.contains(&i) && seen.insert(i) => {}
                _ => surplus.push(p.clone()),
            }
        }
        let kept = active.len() - surplus.len();
        let want = (completions - completed.len() as i32).clamp(0, parallelism.max(0)) as usize;
        if kept > want {
            let mut extra: Vec<Arc<Pod>> = active
                .iter()
                .filter(|p| !surplus.contains(p))
                .cloned()
                .collect();
            extra.sort_by_key(|p| std::cmp::Reverse(index_of(p, completions)));
            surplus.extend(extra.into_iter().take(kept - want));
        }
        if !surplus.is_empty() {
            surplus.truncate(BURST);
            return self.delete_pods(key, job, &surplus, api).await;
        }
        if kept < want {
            let wait = self.backoff_left(key);
            if !wait.is_zero() {
                self.queue.add_after(key.clone(), wait);
                return Ok(());
            }
            let template = pod_template(job)?;
            let job_name = job.metadata.name.clone().unwrap_or_default();
            let pods: Vec<Pod> = (0..completions)
                .filter(|i| !completed.contains(i) && !seen.contains(i))
                .take((want - kept).min(BURST))
                .map(|i| indexed_pod(&template, &job_name, i))
                .collect();
            return self.create_pods(key, job, pods, api).await;
        }
        Ok(())
    }

    async fn create_pods(
        &self,
        key: &ObjectKey,
        job: &Job,
        pods: Vec<Pod>,
        api: &Api<Pod>,
    ) -> Result<(), Error> {
        let n = pods.len();
        self.expectations.expect_creations(key, n);
        tracing::debug!(creating = n, "starting pods");
        let mut created = 0;
        let mut batch = 1;
        let mut result = Ok(());
        let mut pending = pods.into_iter();
        while created < n {
            let chunk: Vec<Pod> = pending.by_ref().take(batch).collect();
            if chunk.is_empty() {
                break;
            }
            let pp = PostParams::default();
            let outcomes = join_all(chunk.iter().map(|p| api.create(&pp, p))).await;
            for o in outcomes {
                match o {
                    Ok(pod) => {
                        created += 1;
                        let name = pod.metadata.name.unwrap_or_default();
                        self.recorder.object(
                            job,
                            Kind::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {name}"),
                        );
                    }
                    Err(e) => {
                        let text = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        self.recorder.object(
                            job,
                            Kind::Warning,
                            "FailedCreate",
                            format!("Error creating: {text}"),
                        );
                        if result.is_ok() {
                            result = Err(Error::from(e));
                        }
                    }
                }
            }
            if result.is_err() {
                break;
            }
            batch *= 2;
        }
        if created < n {
            self.expectations.lower_creations(key, n - created);
        }
        result
    }

    async fn delete_pods(
        &self,
        key: &ObjectKey,
        job: &Job,
        pods: &[Arc<Pod>],
        api: &Api<Pod>,
    ) -> Result<(), Error> {
        let keys: Vec<ObjectKey> = pods
            .iter()
            .filter_map(|p| ObjectKey::of(p.as_ref()))
            .collect();
        self.expectations.expect_deletions(key, keys);
        let outcomes = join_all(pods.iter().map(|p| async move {
            let name = p.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.recorder.object(
                        job,
                        Kind::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    );
                    Ok(())
                }
                Err(e) => {
                    if let Some(pk) = ObjectKey::of(p.as_ref()) {
                        self.expectations.deletion_observed(key, &pk);
                    }
                    if super::not_found(&e) {
                        Ok(())
                    } else {
                        Err(Error::from(e))
                    }
                }
            }
        }))
        .await;
        outcomes.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()))
    }

    /// ttlSecondsAfterFinished: deletes the finished Job once its time is up, or looks again
    /// then.
    async fn expire(&self, key: &ObjectKey, job: &Job, api: &Api<Job>) -> Result<(), Error> {
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
            return Ok(());
        };
        let Some(finished) = finish_time(job) else {
            return Ok(());
        };
        let due = finished.as_second().saturating_add(i64::from(ttl.max(0)));
        let now = Timestamp::now().as_second();
        if due > now {
            self.queue
                .add_after(key.clone(), Duration::from_secs((due - now) as u64));
            return Ok(());
        }
        tracing::debug!("deleting finished job: TTL expired");
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(Preconditions {
                uid: job.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&key.name, &dp).await {
            Ok(_) => Ok(()),
            Err(e) if super::not_found(&e) || super::conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `s` with zero counts and empty lists as absent, so a status read back after a write
/// compares equal to what was written.
fn normalized(s: &JobStatus) -> JobStatus {
    let nz = |v: Option<i32>| v.filter(|n| *n != 0);
    let mut n = s.clone();
    n.active = nz(n.active);
    n.ready = nz(n.ready);
    n.succeeded = nz(n.succeeded);
    n.failed = nz(n.failed);
    n.terminating = nz(n.terminating);
    n.completed_indexes = n.completed_indexes.filter(|c| !c.is_empty());
    n.conditions = n.conditions.filter(|c| !c.is_empty());
    let u = n.uncounted_terminated_pods.take().unwrap_or_default();
    let su = u.succeeded.filter(|v| !v.is_empty());
    let fu = u.failed.filter(|v| !v.is_empty());
    if su.is_some() || fu.is_some() {
        n.uncounted_terminated_pods = Some(k8s_openapi::api::batch::v1::UncountedTerminatedPods {
            succeeded: su,
            failed: fu,
        });
    }
    n
}

async fn patch_status(api: &Api<Job>, name: &str, patch: &Value) -> Result<(), Error> {
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if super::not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_status(api: &Api<Job>, name: &str, s: &JobStatus) -> Result<(), Error> {
    let nz = |v: Option<i32>| v.filter(|n| *n != 0);
    let patch = json!({"status": {
        "active": nz(s.active),
        "ready": s.ready,
        "succeeded": nz(s.succeeded),
        "failed": nz(s.failed),
        "terminating": s.terminating,
        "startTime": s.start_time,
        "completionTime": s.completion_time,
        "completedIndexes": s.completed_indexes,
        "conditions": s.conditions,
        "uncountedTerminatedPods": s.uncounted_terminated_pods,
    }});
    patch_status(api, name, &patch).await
}

/// Removes the tracking finalizer from pod `name` (gone already is fine).
async fn remove_finalizer(api: &Api<Pod>, name: &str) -> Result<(), Error> {
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if super::not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A pod as the Job's template makes it: `<job>-` generateName, the template's labels and
/// annotations, the tracking finalizer, and the Job as its controller.
pub fn pod_template(job: &Job) -> Result<Pod, Error> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .ok_or_else(|| Error::Invalid(format!("job {name} has no spec")))?;
    let tmeta = template.metadata.unwrap_or_default();
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: Some(finalizers),
            owner_references: Some(vec![Owner::of(job).controller_ref()]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    })
}

/// The pod of index `i` of an Indexed Job: `<job>-<i>-` generateName, index annotation and
/// label, `JOB_COMPLETION_INDEX`, hostname `<job>-<i>` unless the template sets one.
pub fn indexed_pod(template: &Pod, job_name: &str, i: i32) -> Pod {
    let mut p = template.clone();
    p.metadata.generate_name = Some(format!("{job_name}-{i}-"));
    p.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), i.to_string());
    p.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), i.to_string());
    if let Some(spec) = p.spec.as_mut() {
        if spec.hostname.is_none() {
            spec.hostname = Some(format!("{job_name}-{i}"));
        }
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            let env = c.env.get_or_insert_with(Vec::new);
            if !env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                env.push(EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: format!("metadata.annotations['{INDEX_KEY}']"),
                        }),
                        ..Default::default()
                    }),
                });
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};

    #[test]
    fn wanted_active_pods() {
        assert_eq!(want_active(2, Some(5), 0, 0), 2);
        assert_eq!(want_active(2, Some(5), 4, 1), 1);
        assert_eq!(want_active(2, Some(5), 5, 0), 0);
        assert_eq!(want_active(3, None, 0, 0), 3);
        // Work queue: once one succeeded no new pods start.
        assert_eq!(want_active(3, None, 1, 2), 2);
        assert_eq!(want_active(-1, Some(2), 0, 0), 0);
    }

    #[test]
    fn failures_beyond_the_backoff_limit_or_deadline_fail_the_job() {
        let now = Timestamp::now();
        assert_eq!(failure(6, 6, None, None, now), None);
        assert_eq!(
            failure(7, 6, None, None, now).map(|f| f.0),
            Some("BackoffLimitExceeded")
        );
        assert_eq!(
            failure(1, 0, None, None, now).map(|f| f.0),
            Some("BackoffLimitExceeded")
        );
        let start = Timestamp::from_second(now.as_second() - 10).unwrap_or(now);
        assert_eq!(
            failure(0, 6, Some(start), Some(5), now).map(|f| f.0),
            Some("DeadlineExceeded")
        );
        assert_eq!(failure(0, 6, Some(start), Some(60), now), None);
    }

    #[test]
    fn creation_backoff_doubles_and_is_capped() {
        assert_eq!(backoff_remaining(0, Duration::ZERO), Duration::ZERO);
        assert_eq!(
            backoff_remaining(1, Duration::ZERO),
            Duration::from_secs(10)
        );
        assert_eq!(
            backoff_remaining(3, Duration::from_secs(5)),
            Duration::from_secs(35)
        );
        assert_eq!(backoff_remaining(40, Duration::ZERO), BACKOFF_MAX);
        assert_eq!(
            backoff_remaining(1, Duration::from_secs(11)),
            Duration::ZERO
        );
    }

    #[test]
    fn pods_count_as_succeeded_failed_or_running() {
        let mut p = Pod::default();
        assert_eq!(outcome(&p), None);
        p.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert_eq!(outcome(&p), Some(true));
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        });
        p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_eq!(outcome(&p), Some(false));
    }

    #[test]
    fn completed_indexes_round_trip() {
        let s = parse_indexes("0,2-4,7,x,9-12", 10);
        assert_eq!(
            s.iter().copied().collect::<Vec<_>>(),
            vec![0, 2, 3, 4, 7, 9]
        );
        assert_eq!(format_indexes(&s), "0,2-4,7,9");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let mut job = Job::default();
        job.metadata.name = Some("pi".into());
        job.spec = Some(k8s_openapi::api::batch::v1::JobSpec {
            template: k8s_openapi::api::core::v1::PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "c".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        });
        let t = pod_template(&job).unwrap_or_default();
        assert_eq!(
            t.metadata.finalizers,
            Some(vec![TRACKING_FINALIZER.to_string()])
        );
        let p = indexed_pod(&t, "pi", 3);
        assert_eq!(p.metadata.generate_name.as_deref(), Some("pi-3-"));
        assert_eq!(index_of(&p, 4), Some(3));
        assert_eq!(index_of(&p, 3), None);
        let spec = p.spec.unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("pi-3"));
        assert!(spec.containers[0]
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "JOB_COMPLETION_INDEX"));
    }
}
