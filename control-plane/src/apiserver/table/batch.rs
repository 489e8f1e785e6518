//! Printers for `batch/v1`: Job and CronJob.

use super::cells::{arr, containers, flag, format_selector, int, name, parse_time, present, s};
use super::{Col, Ctx, Printer, Row, AGE, CONTAINERS, IMAGES, NAME};
use serde_json::Value;

/// `JobSpec.selector`'s description, shared by both printers' Selector column.
const JOB_SELECTOR_DOC: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

/// Job: NAME, STATUS, COMPLETIONS, DURATION, AGE; wide: CONTAINERS, IMAGES, SELECTOR.
pub(super) const JOB: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Status", "string", "Status of the job."),
        Col::new("Completions", "string", "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."),
        Col::new("Duration", "string", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        Col::new("Selector", "string", JOB_SELECTOR_DOC).wide(),
    ],
    row: job,
};

fn job(o: &Value, ctx: &Ctx) -> Row {
    let (spec, status) = (&o["spec"], &o["status"]);
    let succeeded = int(&status["succeeded"]);
    let completions = match &spec["completions"] {
        Value::Null => match int(&spec["parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
        c => format!("{succeeded}/{}", int(c)),
    };
    let duration = match (
        parse_time(&status["startTime"]),
        parse_time(&status["completionTime"]),
    ) {
        (None, _) => String::new(),
        (Some(start), None) => super::human_age((ctx.now - start).whole_seconds()),
        (Some(start), Some(end)) => super::human_age((end - start).whole_seconds()),
    };
    // The first condition of a type decides whether the job has it.
    let has = |ty: &str| {
        arr(&status["conditions"])
            .iter()
            .find(|c| s(&c["type"]) == ty)
            .is_some_and(|c| s(&c["status"]) == "True")
    };
    let state = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if present(&o["metadata"]["deletionTimestamp"]) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers(&spec["template"]["spec"]);
    Row::new(vec![
        name(o).into(),
        state.into(),
        completions.into(),
        duration.into(),
        ctx.age(o).into(),
        names.into(),
        images.into(),
        format_selector(&spec["selector"]).into(),
    ])
}

/// CronJob: NAME, SCHEDULE, TIMEZONE, SUSPEND, ACTIVE, LAST SCHEDULE, AGE; wide: CONTAINERS,
/// IMAGES, SELECTOR.
pub(super) const CRON_JOB: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
        Col::new("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"),
        Col::new("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
        Col::new("Active", "integer", "A list of pointers to currently running jobs."),
        Col::new("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        Col::new("Selector", "string", JOB_SELECTOR_DOC).wide(),
    ],
    row: cron_job,
};

fn cron_job(o: &Value, ctx: &Ctx) -> Row {
    let (spec, status) = (&o["spec"], &o["status"]);
    let last_schedule = match &status["lastScheduleTime"] {
        Value::Null => "<none>".to_string(),
        t => ctx.since(t),
    };
    let time_zone = match &spec["timeZone"] {
        Value::String(tz) => tz.as_str(),
        _ => "<none>",
    };
    // Upstream prints the (defaulted to false) flag as text.
    let suspend = if flag(&spec["suspend"]) {
        "True"
    } else {
        "False"
    };
    let job_spec = &spec["jobTemplate"]["spec"];
    let (names, images) = containers(&job_spec["template"]["spec"]);
    Row::new(vec![
        name(o).into(),
        s(&spec["schedule"]).into(),
        time_zone.into(),
        suspend.into(),
        arr(&status["active"]).len().into(),
        last_schedule.into(),
        ctx.age(o).into(),
        names.into(),
        images.into(),
        format_selector(&job_spec["selector"]).into(),
    ])
}
