//! batch/v1: Job and CronJob.

use serde_json::Value;

use super::cron;
use super::meta::{self, object_meta, shown_selector, Selector};
use super::pod::pod_template_spec;
use super::{
    arr, at, boolean, dns1123_label_errors, enum_field, go, go_string_map, has, int, opt_s,
    qualified_name_errors, s, same, Errs, NameRule, P,
};

const ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];

/// Job: generated selector and labels, spec, and on update the immutable fields.
pub(super) fn validate_job(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    if old.is_none() {
        generated_selector(obj, true, e);
    } else if let Some(old) = old {
        let prefixed = at(at(at(old, "spec"), "template"), "metadata")
            .get("labels")
            .and_then(|l| l.get("batch.kubernetes.io/controller-uid"))
            .is_some();
        generated_selector(obj, prefixed, e);
    }
    job_spec(spec, &sp, e);
    let sel = spec.get("selector").filter(|v| v.is_object());
    match sel {
        None => e.required(&sp.child("selector"), ""),
        Some(_) => meta::label_selector(sel, &sp.child("selector"), e),
    }
    if let Ok(selector) = Selector::parse(sel) {
        selector.check_template(at(spec, "template"), &sp.child("template"), e);
    }
    if old.is_none() && s(spec, "completionMode") == "Indexed" {
        if let Some(c) = int(spec, "completions").filter(|c| *c > 0) {
            let name = s(at(obj, "metadata"), "name");
            let host = format!("{name}-{}", c - 1);
            if !dns1123_label_errors(&host).is_empty() {
                e.invalid(
                    &P::root("metadata").child("name"),
                    name,
                    &format!("will not able to create pod with invalid DNS label: {host}"),
                );
            }
        }
    }
    if let Some(old) = old {
        job_update(obj, old, &sp, e);
    }
}

/// Upstream's `validateGeneratedSelector`: a non-manual selector must be the generated one.
fn generated_selector(job: &Value, prefixed: bool, e: &mut Errs) {
    let spec = at(job, "spec");
    if boolean(spec, "manualSelector") || !has(spec, "selector") {
        return;
    }
    let meta_ = at(job, "metadata");
    let uid = s(meta_, "uid");
    let name = s(meta_, "name");
    if uid.is_empty() {
        e.required(&P::root("metadata").child("uid"), "");
    }
    let tmeta = at(at(spec, "template"), "metadata");
    let lp = P::root("spec")
        .child("template")
        .child("metadata")
        .child("labels");
    let mut expected = vec![("controller-uid", uid), ("job-name", name)];
    if prefixed {
        expected.push(("batch.kubernetes.io/controller-uid", uid));
        expected.push(("batch.kubernetes.io/job-name", name));
    }
    for (key, want) in &expected {
        match at(tmeta, "labels").get(*key).and_then(Value::as_str) {
            None => e.required(&lp.key(key), &format!("must be '{want}'")),
            Some(got) if got != *want => e.invalid(
                &lp.key(key),
                go(go_string_map(tmeta.get("labels"))),
                &format!("must be '{want}'"),
            ),
            Some(_) => {}
        }
    }
    let mut labels = serde_json::Map::new();
    for (k, v) in expected {
        labels.insert(k.to_string(), Value::from(v));
    }
    if let Ok(selector) = Selector::parse(spec.get("selector")) {
        if !selector.matches(Some(&Value::Object(labels))) {
            e.invalid(
                &P::root("spec").child("selector"),
                shown_selector(spec.get("selector")),
                "`selector` not auto-generated",
            );
        }
    }
}

/// Upstream's `validateJobSpec` (shared with CronJob templates).
fn job_spec(spec: &Value, p: &P, e: &mut Errs) {
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        e.nonnegative(&p.child(f), int(spec, f));
    }
    if has(spec, "maxFailedIndexes") && !has(spec, "backoffLimitPerIndex") {
        e.required(
            &p.child("backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        );
    }
    if let Some(mb) = opt_s(spec, "managedBy") {
        managed_by(mb, &p.child("managedBy"), e);
    }
    let mode = opt_s(spec, "completionMode");
    if let Some(m) = mode {
        if m != "NonIndexed" && m != "Indexed" {
            e.not_supported(&p.child("completionMode"), m, &["NonIndexed", "Indexed"]);
        }
    }
    if mode == Some("Indexed") {
        if !has(spec, "completions") {
            e.required(&p.child("completions"), "when completion mode is Indexed");
        }
        if let Some(par) = int(spec, "parallelism").filter(|x| *x > 100_000) {
            e.invalid(
                &p.child("parallelism"),
                par,
                "must be less than or equal to 100000 when completion mode is Indexed",
            );
        }
        if let (Some(c), Some(m)) = (int(spec, "completions"), int(spec, "maxFailedIndexes")) {
            if m > c {
                e.invalid(
                    &p.child("maxFailedIndexes"),
                    m,
                    "must be less than or equal to completions",
                );
            }
        }
        if let Some(m) = int(spec, "maxFailedIndexes").filter(|m| *m > 100_000) {
            e.invalid(
                &p.child("maxFailedIndexes"),
                m,
                "must be less than or equal to 100000",
            );
        }
    } else {
        for f in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if let Some(v) = int(spec, f) {
                e.invalid(&p.child(f), v, "requires indexed completion mode");
            }
        }
    }
    let pfp = at(spec, "podFailurePolicy");
    if pfp.is_object() {
        pod_failure_policy(spec, pfp, &p.child("podFailurePolicy"), e);
    }
    if at(spec, "successPolicy").is_object() && mode != Some("Indexed") {
        e.invalid(
            &p.child("successPolicy"),
            at(spec, "successPolicy").clone(),
            "requires indexed completion mode",
        );
    } else if at(spec, "successPolicy").is_object() {
        let rules = arr(at(spec, "successPolicy"), "rules");
        let rp = p.child("successPolicy").child("rules");
        if rules.is_empty() {
            e.required(
                &rp,
                "at least one rules must be specified when the successPolicy is specified",
            );
        }
        if rules.len() > 20 {
            e.too_many(&rp, rules.len(), 20);
        }
        for (i, r) in rules.iter().enumerate() {
            if !has(r, "succeededCount") && !has(r, "succeededIndexes") {
                e.required(
                    &rp.index(i),
                    "at least one of succeededCount or succeededIndexes must be specified",
                );
            }
            e.nonnegative(
                &rp.index(i).child("succeededCount"),
                int(r, "succeededCount"),
            );
        }
    }
    if let Some(prp) = opt_s(spec, "podReplacementPolicy") {
        let path = p.child("podReplacementPolicy");
        if pfp.is_object() {
            if prp != "Failed" {
                e.not_supported(&path, prp, &["Failed"]);
            }
        } else if prp != "Failed" && prp != "TerminatingOrFailed" {
            e.not_supported(&path, prp, &["Failed", "TerminatingOrFailed"]);
        }
    }
    let tp = p.child("template");
    pod_template_spec(at(spec, "template"), &tp, e);
    let rp = tp.child("spec").child("restartPolicy");
    match s(at(at(spec, "template"), "spec"), "restartPolicy") {
        "Always" | "" => e.required(&rp, "valid values: \"OnFailure\", \"Never\""),
        "OnFailure" if pfp.is_object() => e.invalid(
            &rp,
            "OnFailure",
            "only \"Never\" is supported when podFailurePolicy is specified",
        ),
        "OnFailure" | "Never" => {}
        other => e.not_supported(&rp, other, &["OnFailure", "Never"]),
    }
}

fn managed_by(mb: &str, p: &P, e: &mut Errs) {
    if mb.len() > 63 {
        e.too_long(p, 63);
    }
    match mb.split_once('/') {
        None => e.invalid(
            p,
            mb,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ),
        Some((host, path)) => {
            e.invalid_each(p, host, super::dns1123_subdomain_errors(host));
            let ok = !path.is_empty()
                && path
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&c));
            if !ok {
                e.invalid(
                    p,
                    path,
                    &super::regex_error(
                        "must be a valid path",
                        "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+",
                        &[],
                    ),
                );
            }
        }
    }
}

fn pod_failure_policy(spec: &Value, pfp: &Value, p: &P, e: &mut Errs) {
    let rules = arr(pfp, "rules");
    let rp = p.child("rules");
    if rules.len() > 20 {
        e.too_many(&rp, rules.len(), 20);
    }
    let tspec = at(at(spec, "template"), "spec");
    let names: Vec<&str> = arr(tspec, "containers")
        .iter()
        .chain(arr(tspec, "initContainers"))
        .map(|c| s(c, "name"))
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let ip = rp.index(i);
        let action = s(rule, "action");
        if action.is_empty() {
            e.required(
                &ip.child("action"),
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            );
        } else if action == "FailIndex" {
            if !has(spec, "backoffLimitPerIndex") {
                e.invalid(
                    &ip.child("action"),
                    action,
                    "requires the backoffLimitPerIndex to be set",
                );
            }
        } else if !ACTIONS.contains(&action) {
            e.not_supported(&ip.child("action"), action, ACTIONS);
        }
        let exit = at(rule, "onExitCodes");
        let conds = arr(rule, "onPodConditions");
        if exit.is_object() {
            on_exit_codes(exit, &names, &ip.child("onExitCodes"), e);
        }
        if conds.len() > 20 {
            e.too_many(&ip.child("onPodConditions"), conds.len(), 20);
        }
        for (j, c) in conds.iter().enumerate() {
            let cp = ip.child("onPodConditions").index(j);
            let ty = s(c, "type");
            e.invalid_each(&cp.child("type"), ty, qualified_name_errors(ty));
            match s(c, "status") {
                "" => e.required(
                    &cp.child("status"),
                    "valid values: [\"False\" \"True\" \"Unknown\"]",
                ),
                "True" | "False" | "Unknown" => {}
                other => e.not_supported(&cp.child("status"), other, &["False", "True", "Unknown"]),
            }
        }
        if exit.is_object() && !conds.is_empty() {
            e.invalid(
                &ip,
                super::omit(),
                "specifying both OnExitCodes and OnPodConditions is not supported",
            );
        }
        if !exit.is_object() && conds.is_empty() {
            e.invalid(
                &ip,
                super::omit(),
                "specifying one of OnExitCodes and OnPodConditions is required",
            );
        }
    }
}

fn on_exit_codes(exit: &Value, names: &[&str], p: &P, e: &mut Errs) {
    let op = s(exit, "operator");
    match op {
        "" => e.required(&p.child("operator"), "valid values: [\"In\" \"NotIn\"]"),
        "In" | "NotIn" => {}
        other => e.not_supported(&p.child("operator"), other, &["In", "NotIn"]),
    }
    if let Some(c) = opt_s(exit, "containerName") {
        if !names.contains(&c) {
            e.invalid(
                &p.child("containerName"),
                c,
                "must be one of the container or initContainer names in the pod template",
            );
        }
    }
    let values: Vec<i64> = arr(exit, "values")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    let vp = p.child("values");
    if values.is_empty() {
        e.invalid(
            &vp,
            at(exit, "values").clone(),
            "at least one value is required",
        );
    } else if values.len() > 255 {
        e.too_many(&vp, values.len(), 255);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (j, v) in values.iter().enumerate() {
        if op == "In" && *v == 0 {
            e.invalid(&vp.index(j), *v, "must not be 0 for the In operator");
        }
        if !seen.insert(*v) {
            e.duplicate(&vp.index(j), *v);
        }
    }
    if values.windows(2).any(|w| w[0] > w[1]) {
        e.invalid(&vp, at(exit, "values").clone(), "must be ordered");
    }
}

fn job_update(obj: &Value, old: &Value, sp: &P, e: &mut Errs) {
    let (spec, ospec) = (at(obj, "spec"), at(old, "spec"));
    let indexed = s(spec, "completionMode") == "Indexed";
    if !same(at(spec, "completions"), at(ospec, "completions")) {
        if !indexed {
            e.invalid(
                &sp.child("completions"),
                at(spec, "completions").clone(),
                "field is immutable",
            );
        } else if has(spec, "completions") && int(spec, "completions") != int(spec, "parallelism") {
            e.invalid(
                &sp.child("completions"),
                at(spec, "completions").clone(),
                "can only be modified in tandem with spec.parallelism",
            );
        }
    }
    if !same(at(spec, "selector"), at(ospec, "selector")) {
        e.invalid(
            &sp.child("selector"),
            shown_selector(spec.get("selector")),
            "field is immutable",
        );
    }
    let mut old_t = at(ospec, "template").clone();
    let new_t = at(spec, "template");
    let mutable_scheduling = boolean(ospec, "suspend") && !has(at(old, "status"), "startTime");
    if mutable_scheduling {
        if let Some(m) = old_t.as_object_mut() {
            if let Some(meta_) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                for f in ["labels", "annotations"] {
                    meta_.insert(f.into(), at(at(new_t, "metadata"), f).clone());
                }
            }
            if let Some(ts) = m.get_mut("spec").and_then(Value::as_object_mut) {
                for f in ["nodeSelector", "tolerations", "schedulingGates"] {
                    ts.insert(f.into(), at(at(new_t, "spec"), f).clone());
                }
                let new_na = at(at(at(new_t, "spec"), "affinity"), "nodeAffinity").clone();
                let aff = ts
                    .entry("affinity")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(a) = aff.as_object_mut() {
                    a.insert("nodeAffinity".into(), new_na);
                }
            }
        }
    }
    if !same(new_t, &old_t) {
        e.invalid(&sp.child("template"), new_t.clone(), "field is immutable");
    }
    for f in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        e.immutable(&sp.child(f), at(spec, f), at(ospec, f), at(spec, f).clone());
    }
}

/// CronJob: schedule, time zone, policies and the job template.
pub(super) fn validate_cron_job(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    let ospec = old.map(|o| at(o, "spec"));
    let schedule = s(spec, "schedule");
    if schedule.is_empty() {
        e.required(&sp.child("schedule"), "");
    } else {
        let allow_tz = ospec.is_some_and(|o| s(o, "schedule").contains("TZ"));
        if let Err(msg) = cron::parse_standard(schedule) {
            e.invalid(&sp.child("schedule"), schedule, &msg);
        }
        if allow_tz && schedule.contains("TZ") && has(spec, "timeZone") {
            e.invalid(
                &sp.child("schedule"),
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            );
        } else if !allow_tz && schedule.contains("TZ") {
            e.invalid(
                &sp.child("schedule"),
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            );
        }
    }
    e.nonnegative(
        &sp.child("startingDeadlineSeconds"),
        int(spec, "startingDeadlineSeconds"),
    );
    if ospec.is_none_or(|o| at(o, "timeZone") != at(spec, "timeZone")) {
        if let Some(tz) = opt_s(spec, "timeZone") {
            time_zone(tz, &sp.child("timeZone"), e);
        }
    }
    enum_field(
        spec,
        "concurrencyPolicy",
        &sp,
        &["Allow", "Forbid", "Replace"],
        e,
    );
    let jt = at(spec, "jobTemplate");
    let jp = sp.child("jobTemplate").child("spec");
    job_spec(at(jt, "spec"), &jp, e);
    if at(at(jt, "spec"), "selector").is_object() {
        e.invalid(
            &jp.child("selector"),
            shown_selector(at(jt, "spec").get("selector")),
            "`selector` will be auto-generated",
        );
    }
    if boolean(at(jt, "spec"), "manualSelector") {
        e.not_supported(&jp.child("manualSelector"), true, &["nil", "false"]);
    }
    for f in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        e.nonnegative(&sp.child(f), int(spec, f));
    }
    if old.is_none() {
        let name = s(at(obj, "metadata"), "name");
        if name.len() > 52 {
            e.invalid(
                &P::root("metadata").child("name"),
                name,
                "must be no more than 52 characters",
            );
        }
    }
}

fn time_zone(tz: &str, p: &P, e: &mut Errs) {
    if tz.is_empty() {
        e.invalid(p, tz, "timeZone must be nil or non-empty string");
        return;
    }
    let part_ok = |part: &str| {
        part != "."
            && part != ".."
            && !part.starts_with('-')
            && (1..=14).contains(&part.len())
            && part
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-_+".contains(&c))
    };
    if !tz.split('/').all(part_ok) {
        e.invalid(p, tz, &format!("unknown time zone {tz}"));
        return;
    }
    if tz.eq_ignore_ascii_case("Local") {
        e.invalid(
            p,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        );
        return;
    }
    if !cron::known_time_zone(tz) {
        e.invalid(p, tz, &format!("unknown time zone {tz}"));
    }
}
