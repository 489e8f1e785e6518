//! The CronJob controller, as upstream's (cronjob_controllerv2): at each time its schedule
//! fires (see [`super::cron`] for the schedule syntax and time zones) a CronJob gets a Job
//! `<cronjob>-<scheduled time in minutes since the epoch>` from its `jobTemplate`, annotated
//! with `batch.kubernetes.io/cronjob-scheduled-timestamp`. `concurrencyPolicy` Allow runs
//! Jobs side by side, Forbid skips a time while one runs, Replace deletes the running ones
//! first; a time missed by more than `startingDeadlineSeconds` is skipped; `suspend` stops new
//! Jobs. Finished Jobs beyond `successfulJobsHistoryLimit`/`failedJobsHistoryLimit` are
//! deleted, oldest first. Status: `active`, `lastScheduleTime`, `lastSuccessfulTime`.
//!
//! Each CronJob is queued again for its next time, so nothing polls.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::json;
use tracing::Instrument;

use super::claim::{controller_of, Owner};
use super::cron::{self, Schedule};
use super::informer::Change;
use super::queue::Queue;
use super::store::ObjectKey;
use super::{Context, Error};
use crate::events::{reference, Kind, Recorder};

/// The annotation naming the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
const QUEUE_CAPACITY: usize = 50_000;
const WORKERS: usize = 2;
const RESYNC: Duration = Duration::from_secs(300);

/// The controller's state.
pub struct CronJobController {
    ctx: Arc<Context>,
    queue: Queue<ObjectKey>,
    recorder: Recorder,
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let cc = Arc::new(CronJobController {
        ctx: ctx.clone(),
        queue: Queue::new("cronjob", QUEUE_CAPACITY),
        recorder: Recorder::start(ctx.client.clone(), "cronjob-controller", None),
    });
    let weak = Arc::downgrade(&cc);
    ctx.cronjobs.on_change(move |c| {
        let Some(cc) = weak.upgrade() else { return };
        if let Change::Added(cj) | Change::Updated { new: cj, .. } = c {
            if let Some(k) = ObjectKey::of(cj.as_ref()) {
                cc.queue.add(k);
            }
        }
    });
    let weak = Arc::downgrade(&cc);
    ctx.jobs.on_change(move |c| {
        let Some(cc) = weak.upgrade() else { return };
        let job = match c {
            Change::Added(j) | Change::Deleted(j) => *j,
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                *new
            }
        };
        let ns = job.metadata.namespace.as_deref().unwrap_or_default();
        if let Some(r) = controller_of(&job.metadata).filter(|r| r.kind == "CronJob") {
            cc.queue.add(ObjectKey::new(ns, &r.name));
        }
    });
    let store = ctx.cronjobs.store().clone();
    let mut all = super::workers("cronjob", cc.queue.clone(), WORKERS, {
        let cc = cc.clone();
        move |key| {
            let cc = cc.clone();
            async move { cc.sync(key).await }
        }
    });
    all.push(super::resync(cc.queue.clone(), RESYNC, move || {
        store.keys()
    }));
    all
}

/// Whether a Job finished, and whether it succeeded.
fn finished(job: &Job) -> Option<bool> {
    for c in job.status.as_ref()?.conditions.iter().flatten() {
        if c.status == "True" {
            match c.type_.as_str() {
                "Complete" => return Some(true),
                "Failed" => return Some(false),
                _ => {}
            }
        }
    }
    None
}

/// The name of the Job for `scheduled`: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// When the CronJob next needs looking at: just after `next`.
fn requeue_after(next: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    let next = next?;
    let ms = next
        .as_millisecond()
        .saturating_sub(now.as_millisecond())
        .max(0) as u64;
    Some(Duration::from_millis(ms + 100))
}

impl CronJobController {
    async fn sync(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.cronjobs.wait_synced().await;
        self.ctx.jobs.wait_synced().await;
        let Some(cj) = self.ctx.cronjobs.store().get(&key) else {
            return Ok(());
        };
        let span = tracing::debug_span!("cronjob", namespace = %key.namespace, name = %key.name);
        self.sync_one(&key, cj).instrument(span).await
    }

    async fn sync_one(&self, key: &ObjectKey, cj: Arc<CronJob>) -> Result<(), Error> {
        let Some(spec) = cj.spec.as_ref() else {
            return Ok(());
        };
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let cj_api: Api<CronJob> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let jobs_api: Api<Job> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let mut jobs: Vec<Arc<Job>> = self
            .ctx
            .jobs
            .store()
            .list_namespace(&key.namespace)
            .into_iter()
            .filter(|j| controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let mut status = cj.status.clone().unwrap_or_default();
        let before = status.clone();

        // Active Jobs: those running; finished ones leave the list with an event.
        let mut active: Vec<ObjectReference> = Vec::new();
        for j in &jobs {
            let name = j.metadata.name.clone().unwrap_or_default();
            let was_active = status
                .active
                .iter()
                .flatten()
                .any(|r| r.uid == j.metadata.uid);
            match finished(j) {
                None if j.metadata.deletion_timestamp.is_none() => {
                    active.push(reference(j.as_ref()))
                }
                None => {}
                Some(ok) => {
                    if was_active {
                        self.recorder.object(
                            cj.as_ref(),
                            Kind::Normal,
                            "SawCompletedJob",
                            format!(
                                "Saw completed job: {name}, condition: {}",
                                if ok { "Complete" } else { "Failed" }
                            ),
                        );
                    }
                    if ok {
                        let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                        if done.as_ref().is_some_and(|d| {
                            status
                                .last_successful_time
                                .as_ref()
                                .is_none_or(|l| l.0 < d.0)
                        }) {
                            status.last_successful_time = done;
                        }
                    }
                }
            }
        }
        // A Job just created by this controller may not be cached yet: keep it listed.
        for r in status.active.iter().flatten() {
            let cached = jobs.iter().any(|j| j.metadata.uid == r.uid);
            if !cached && !active.iter().any(|a| a.uid == r.uid) {
                if let Some(name) = r.name.as_deref() {
                    if jobs_api
                        .get_opt(name)
                        .await?
                        .is_some_and(|j| j.metadata.uid == r.uid && finished(&j).is_none())
                    {
                        active.push(r.clone());
                    }
                }
            }
        }
        active.sort_by(|a, b| a.name.cmp(&b.name));
        status.active = (!active.is_empty()).then_some(active);

        let now = Timestamp::now();
        let mut next = None;
        let deleting = cj.metadata.deletion_timestamp.is_some();
        if !deleting && !spec.suspend.unwrap_or(false) {
            match (
                Schedule::parse(&spec.schedule),
                cron::time_zone(spec.time_zone.as_deref()),
            ) {
                (Ok(schedule), Ok(tz)) => {
                    next = self
                        .schedule(key, &cj, &schedule, &tz, &mut status, &jobs_api, now)
                        .await?;
                }
                (Err(e), _) | (_, Err(e)) => {
                    self.recorder.object(
                        cj.as_ref(),
                        Kind::Warning,
                        "UnparseableSchedule",
                        format!("unparseable schedule: {:?} : {e}", spec.schedule),
                    );
                }
            }
        }

        // History limits.
        jobs.retain(|j| j.metadata.deletion_timestamp.is_none());
        let by_start = |j: &Arc<Job>| {
            j.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref().map(|t| t.0))
                .or(j.metadata.creation_timestamp.as_ref().map(|t| t.0))
        };
        for (ok, limit) in [
            (true, spec.successful_jobs_history_limit.unwrap_or(3)),
            (false, spec.failed_jobs_history_limit.unwrap_or(1)),
        ] {
            let mut done: Vec<&Arc<Job>> =
                jobs.iter().filter(|j| finished(j) == Some(ok)).collect();
            done.sort_by_key(|j| by_start(j));
            let surplus = done.len().saturating_sub(limit.max(0) as usize);
            for j in done.into_iter().take(surplus) {
                self.delete_job(
                    &cj,
                    &jobs_api,
                    j.metadata.name.as_deref().unwrap_or_default(),
                )
                .await?;
            }
        }

        if status != before {
            let patch = json!({"status": {
                "active": status.active,
                "lastScheduleTime": status.last_schedule_time,
                "lastSuccessfulTime": status.last_successful_time,
            }});
            match cj_api
                .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if super::not_found(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(d) = requeue_after(next, Timestamp::now()) {
            self.queue.add_after(key.clone(), d);
        }
        Ok(())
    }

    /// Starts the Job of the most recent missed time, if one is due; returns the next time.
    #[allow(clippy::too_many_arguments)]
    async fn schedule(
        &self,
        key: &ObjectKey,
        cj: &CronJob,
        schedule: &Schedule,
        tz: &TimeZone,
        status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
        jobs_api: &Api<Job>,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, Error> {
        let Some(spec) = cj.spec.as_ref() else {
            return Ok(None);
        };
        let created = cj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(now);
        let mut earliest = status
            .last_schedule_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(created);
        if let Some(d) = spec.starting_deadline_seconds {
            let floor =
                Timestamp::from_second(now.as_second().saturating_sub(d)).unwrap_or(Timestamp::MIN);
            earliest = earliest.max(floor);
        }
        let next = schedule.next_after(now, tz);
        let (most_recent, too_many) = cron::most_recent(schedule, tz, earliest, now);
        let Some(scheduled) = most_recent else {
            return Ok(next);
        };
        if too_many {
            self.recorder.object(cj, Kind::Warning, "TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into());
        }
        if let Some(d) = spec.starting_deadline_seconds {
            if scheduled.as_second().saturating_add(d) < now.as_second() {
                self.recorder.object(
                    cj,
                    Kind::Warning,
                    "MissSchedule",
                    format!("Missed scheduled time to start a job: {scheduled}"),
                );
                return Ok(next);
            }
        }
        let active = status.active.clone().unwrap_or_default();
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active.is_empty() => {
                tracing::debug!("a job is still running: this run is skipped");
                return Ok(next);
            }
            Some("Replace") => {
                for r in &active {
                    if let Some(name) = r.name.as_deref() {
                        self.delete_job(cj, jobs_api, name).await?;
                    }
                }
                status.active = None;
            }
            _ => {}
        }
        let job = job_for(cj, scheduled, tz);
        let name = job.metadata.name.clone().unwrap_or_default();
        let created = match jobs_api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                self.recorder.object(
                    cj,
                    Kind::Normal,
                    "SuccessfulCreate",
                    format!("Created job {name}"),
                );
                j
            }
            Err(e) if super::conflict(&e) => {
                // Already made for this time (a lagging cache): ours, or someone else's name.
                match jobs_api.get_opt(&name).await? {
                    Some(j)
                        if controller_of(&j.metadata)
                            .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref()) =>
                    {
                        j
                    }
                    _ => return Ok(next),
                }
            }
            Err(e) => {
                let text = match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                };
                self.recorder.object(
                    cj,
                    Kind::Warning,
                    "FailedCreate",
                    format!("Error creating job: {text}"),
                );
                return Err(e.into());
            }
        };
        tracing::debug!(job = %name, %key, "created");
        let mut list = status.active.clone().unwrap_or_default();
        if !list.iter().any(|r| r.uid == created.metadata.uid) && finished(&created).is_none() {
            list.push(reference(&created));
        }
        status.active = (!list.is_empty()).then_some(list);
        status.last_schedule_time = Some(Time(scheduled));
        Ok(next)
    }

    async fn delete_job(&self, cj: &CronJob, api: &Api<Job>, name: &str) -> Result<(), Error> {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => {
                self.recorder.object(
                    cj,
                    Kind::Normal,
                    "SuccessfulDelete",
                    format!("Deleted job {name}"),
                );
                Ok(())
            }
            Err(e) if super::not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The Job for `scheduled`: the template's labels, annotations and spec, the scheduled-time
/// annotation (RFC 3339 in the CronJob's zone), and the CronJob as controller.
pub fn job_for(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let name = cj.metadata.name.clone().unwrap_or_default();
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let offset = tz.to_offset(scheduled);
    let local = tz.to_datetime(scheduled);
    let secs = offset.seconds();
    let zone = if secs == 0 {
        "Z".to_string()
    } else {
        let sign = if secs < 0 { '-' } else { '+' };
        let a = secs.unsigned_abs();
        format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
    };
    annotations.insert(
        SCHEDULED_TIMESTAMP.into(),
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
            local.year(),
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            local.second()
        ),
    );
    let owner: OwnerReference = Owner::of(cj).controller_ref();
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_named_by_minute_and_annotated() {
        let t: Timestamp = "2024-01-01T00:05:00Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(job_name("hello", t), "hello-28401125");
        let mut cj = CronJob::default();
        cj.metadata.name = Some("hello".into());
        cj.metadata.uid = Some("u".into());
        let j = job_for(&cj, t, &TimeZone::UTC);
        assert_eq!(j.metadata.name.as_deref(), Some("hello-28401125"));
        let a = j.metadata.annotations.unwrap_or_default();
        assert_eq!(
            a.get(SCHEDULED_TIMESTAMP).map(String::as_str),
            Some("2024-01-01T00:05:00Z")
        );
        let fixed = TimeZone::fixed(k8s_openapi::jiff::tz::offset(2));
        let a = job_for(&cj, t, &fixed)
            .metadata
            .annotations
            .unwrap_or_default();
        assert_eq!(
            a.get(SCHEDULED_TIMESTAMP).map(String::as_str),
            Some("2024-01-01T02:05:00+02:00")
        );
        assert_eq!(requeue_after(Some(t), t), Some(Duration::from_millis(100)));
    }
}
