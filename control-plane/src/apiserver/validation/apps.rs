//! apps/v1: Deployment, ReplicaSet, DaemonSet, StatefulSet, ControllerRevision.

use serde_json::Value;

use super::meta::{self, object_meta, shown_selector, Selector};
use super::pod::pod_template_spec;
use super::{arr, at, go, go_quote, has, int, percent_errors, s, same, Errs, NameRule, P};

/// Deployment: spec, and on update the immutable selector.
pub(super) fn validate_deployment(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    replica_set_like(spec, &sp, "deployment", "Deployment", e);
    strategy(at(spec, "strategy"), &sp.child("strategy"), e);
    e.nonnegative(&sp.child("minReadySeconds"), int(spec, "minReadySeconds"));
    e.nonnegative(
        &sp.child("revisionHistoryLimit"),
        int(spec, "revisionHistoryLimit"),
    );
    if let Some(pds) = int(spec, "progressDeadlineSeconds") {
        e.nonnegative(&sp.child("progressDeadlineSeconds"), Some(pds));
        if pds <= int(spec, "minReadySeconds").unwrap_or(0) {
            e.invalid(
                &sp.child("progressDeadlineSeconds"),
                pds,
                "must be greater than minReadySeconds",
            );
        }
    }
    immutable_selector(obj, old, e);
}

/// ReplicaSet: replicas, selector and template; on update the immutable selector.
pub(super) fn validate_replica_set(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    e.nonnegative(&sp.child("replicas"), int(spec, "replicas"));
    e.nonnegative(&sp.child("minReadySeconds"), int(spec, "minReadySeconds"));
    selector_and_template(spec, &sp, "deployment", "ReplicaSet", e);
    immutable_selector(obj, old, e);
}

fn replica_set_like(spec: &Value, sp: &P, what: &str, kind: &str, e: &mut Errs) {
    e.nonnegative(&sp.child("replicas"), int(spec, "replicas"));
    selector_and_template(spec, sp, what, kind, e);
}

/// The shared selector/template rules of Deployment and ReplicaSet.
fn selector_and_template(spec: &Value, sp: &P, what: &str, kind: &str, e: &mut Errs) {
    let sel = spec.get("selector").filter(|v| v.is_object());
    required_selector(sel, sp, what, e);
    match Selector::parse(sel) {
        Err(()) => e.invalid(
            &sp.child("selector"),
            shown_selector(sel),
            "invalid label selector",
        ),
        Ok(selector) => template_for_controller(
            at(spec, "template"),
            &selector,
            &sp.child("template"),
            kind,
            e,
        ),
    }
}

fn required_selector(sel: Option<&Value>, sp: &P, what: &str, e: &mut Errs) {
    match sel {
        None => e.required(&sp.child("selector"), ""),
        Some(s_) => {
            meta::label_selector(Some(s_), &sp.child("selector"), e);
            let n = super::map(s_, "matchLabels").map_or(0, |m| m.len())
                + arr(s_, "matchExpressions").len();
            if n == 0 {
                e.invalid(
                    &sp.child("selector"),
                    shown_selector(Some(s_)),
                    &format!("empty selector is invalid for {what}"),
                );
            }
        }
    }
}

/// Upstream's `ValidatePodTemplateSpecForReplicaSet`: labels match, valid template, restart
/// policy Always, no activeDeadlineSeconds.
fn template_for_controller(t: &Value, selector: &Selector, tp: &P, kind: &str, e: &mut Errs) {
    selector.check_template(t, tp, e);
    pod_template_spec(t, tp, e);
    restart_always(t, tp, kind, e);
}

fn restart_always(t: &Value, tp: &P, kind: &str, e: &mut Errs) {
    let tspec = at(t, "spec");
    let rp = s(tspec, "restartPolicy");
    if rp != "Always" {
        e.not_supported(&tp.child("spec").child("restartPolicy"), rp, &["Always"]);
    }
    if has(tspec, "activeDeadlineSeconds") {
        e.forbidden(
            &tp.child("spec").child("activeDeadlineSeconds"),
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        );
    }
}

fn immutable_selector(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    let Some(old) = old else { return };
    let (new_sel, old_sel) = (
        at(at(obj, "spec"), "selector"),
        at(at(old, "spec"), "selector"),
    );
    if !same(new_sel, old_sel) {
        e.invalid(
            &P::root("spec").child("selector"),
            shown_selector(Some(new_sel)),
            "field is immutable",
        );
    }
}

/// An int-or-string as upstream prints it (`intstr.IntOrString{...}`).
pub(super) fn shown_int_or_string(v: &Value) -> Value {
    match v {
        Value::String(text) => go(format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(text)
        )),
        other => go(format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or(0)
        )),
    }
}

pub(super) fn int_or_percent_value(v: &Value) -> i64 {
    match v {
        Value::String(text) => {
            if percent_errors(text).is_empty() {
                text.trim_end_matches('%').parse().unwrap_or(0)
            } else {
                text.parse().unwrap_or(0)
            }
        }
        other => other.as_i64().unwrap_or(0),
    }
}

pub(super) fn positive_int_or_percent(v: &Value, p: &P, e: &mut Errs) {
    match v {
        Value::String(text) => {
            for m in percent_errors(text) {
                e.invalid(p, shown_int_or_string(v), &m);
            }
        }
        Value::Null => {}
        other => e.nonnegative(p, Some(other.as_i64().unwrap_or(0))),
    }
}

pub(super) fn not_more_than_100_percent(v: &Value, p: &P, e: &mut Errs) {
    if let Value::String(text) = v {
        if percent_errors(text).is_empty() && int_or_percent_value(v) > 100 {
            e.invalid(p, shown_int_or_string(v), "must not be greater than 100%");
        }
    }
}

fn strategy(st: &Value, p: &P, e: &mut Errs) {
    let ru = at(st, "rollingUpdate");
    match s(st, "type") {
        "Recreate" => {
            if ru.is_object() {
                e.forbidden(
                    &p.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        "RollingUpdate" => {
            if !ru.is_object() {
                e.required(
                    &p.child("rollingUpdate"),
                    "this should be defaulted and never be nil",
                );
                return;
            }
            let rp = p.child("rollingUpdate");
            let (mu, ms) = (at(ru, "maxUnavailable"), at(ru, "maxSurge"));
            positive_int_or_percent(mu, &rp.child("maxUnavailable"), e);
            positive_int_or_percent(ms, &rp.child("maxSurge"), e);
            if int_or_percent_value(mu) == 0 && int_or_percent_value(ms) == 0 {
                e.invalid(
                    &rp.child("maxUnavailable"),
                    shown_int_or_string(mu),
                    "may not be 0 when `maxSurge` is 0",
                );
            }
            not_more_than_100_percent(mu, &rp.child("maxUnavailable"), e);
        }
        other => e.not_supported(
            p,
            go(format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                go_quote(other)
            )),
            &["Recreate", "RollingUpdate"],
        ),
    }
}

/// DaemonSet: selector (matched even when absent), template, update strategy.
pub(super) fn validate_daemon_set(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    let sel = spec.get("selector").filter(|v| v.is_object());
    meta::label_selector(sel, &sp.child("selector"), e);
    let tp = sp.child("template");
    let t = at(spec, "template");
    if let Ok(selector) = Selector::parse(sel) {
        selector.check_template(t, &tp, e);
    }
    if let Some(s_) = sel {
        let n = super::map(s_, "matchLabels").map_or(0, |m| m.len())
            + arr(s_, "matchExpressions").len();
        if n == 0 {
            e.invalid(
                &sp.child("selector"),
                shown_selector(sel),
                "empty selector is invalid for daemonset",
            );
        }
    }
    pod_template_spec(t, &tp, e);
    restart_always(t, &tp, "DaemonSet", e);
    e.nonnegative(&sp.child("minReadySeconds"), int(spec, "minReadySeconds"));
    let us = at(spec, "updateStrategy");
    let up = sp.child("updateStrategy");
    match s(us, "type") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let ru = at(us, "rollingUpdate");
            if !ru.is_object() {
                e.required(&up.child("rollingUpdate"), "");
            } else {
                let rp = up.child("rollingUpdate");
                let (mu, ms) = (at(ru, "maxUnavailable"), at(ru, "maxSurge"));
                positive_int_or_percent(mu, &rp.child("maxUnavailable"), e);
                positive_int_or_percent(ms, &rp.child("maxSurge"), e);
                not_more_than_100_percent(mu, &rp.child("maxUnavailable"), e);
                not_more_than_100_percent(ms, &rp.child("maxSurge"), e);
                let (has_u, has_s) = (int_or_percent_value(mu) != 0, int_or_percent_value(ms) != 0);
                if has_u && has_s {
                    e.invalid(
                        &rp.child("maxSurge"),
                        shown_int_or_string(ms),
                        "may not be set when maxUnavailable is non-zero",
                    );
                } else if !has_u && !has_s {
                    e.required(&rp.child("maxUnavailable"), "cannot be 0 when maxSurge is 0");
                }
            }
        }
        other => e.not_supported(
            &up,
            go(format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                go_quote(other)
            )),
            &["RollingUpdate", "OnDelete"],
        ),
    }
    e.nonnegative(
        &sp.child("revisionHistoryLimit"),
        int(spec, "revisionHistoryLimit"),
    );
    immutable_selector(obj, old, e);
}

/// StatefulSet: policies, selector, template labels; on update only a few spec fields change.
pub(super) fn validate_stateful_set(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Label, e);
    let spec = at(obj, "spec");
    let sp = P::root("spec");
    match s(spec, "podManagementPolicy") {
        "" => e.required(&sp.child("podManagementPolicy"), ""),
        "OrderedReady" | "Parallel" => {}
        other => e.invalid(
            &sp.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        ),
    }
    let us = at(spec, "updateStrategy");
    let up = sp.child("updateStrategy");
    let ru = at(us, "rollingUpdate");
    match s(us, "type") {
        "" => e.required(&up, ""),
        "OnDelete" => {
            if ru.is_object() {
                e.invalid(
                    &up.child("rollingUpdate"),
                    ru.clone(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                );
            }
        }
        "RollingUpdate" => {
            if ru.is_object() {
                let rp = up.child("rollingUpdate");
                e.nonnegative(&rp.child("partition"), int(ru, "partition"));
                let mu = at(ru, "maxUnavailable");
                if !mu.is_null() {
                    let mp = rp.child("maxUnavailable");
                    positive_int_or_percent(mu, &mp, e);
                    if int_or_percent_value(mu) == 0 {
                        e.invalid(&mp, shown_int_or_string(mu), "cannot be 0");
                    }
                    not_more_than_100_percent(mu, &mp, e);
                }
            }
        }
        _ => e.invalid(&up, us.clone(), "must be 'RollingUpdate' or 'OnDelete'"),
    }
    let pol = at(spec, "persistentVolumeClaimRetentionPolicy");
    if pol.is_object() {
        let pp = sp.child("persistentVolumeClaimRetentionPolicy");
        for f in ["whenDeleted", "whenScaled"] {
            let v = s(pol, f);
            if v != "Retain" && v != "Delete" {
                e.not_supported(&pp.child(f), v, &["Retain", "Delete"]);
            }
        }
    }
    e.nonnegative(&sp.child("replicas"), int(spec, "replicas"));
    e.nonnegative(&sp.child("minReadySeconds"), int(spec, "minReadySeconds"));
    if at(spec, "ordinals").is_object() {
        e.nonnegative(
            &sp.child("ordinals.start"),
            Some(int(at(spec, "ordinals"), "start").unwrap_or(0)),
        );
    }
    let sel = spec.get("selector").filter(|v| v.is_object());
    required_selector(sel, &sp, "statefulset", e);
    let t = at(spec, "template");
    let tp = sp.child("template");
    match Selector::parse(sel) {
        Err(()) => e.invalid(&sp.child("selector"), shown_selector(sel), ""),
        Ok(selector) => {
            selector.check_template(t, &tp, e);
            meta::labels(at(t, "metadata").get("labels"), &tp.child("labels"), e);
            meta::annotations(
                at(t, "metadata").get("annotations"),
                &tp.child("annotations"),
                e,
            );
        }
    }
    restart_always(t, &tp, "StatefulSet", e);
    if let Some(old) = old {
        let mut new_c = spec.clone();
        let ospec = at(old, "spec");
        if let Some(m) = new_c.as_object_mut() {
            for f in [
                "replicas",
                "template",
                "updateStrategy",
                "minReadySeconds",
                "ordinals",
                "persistentVolumeClaimRetentionPolicy",
            ] {
                m.insert(f.into(), at(ospec, f).clone());
            }
        }
        if !same(&new_c, ospec) {
            e.forbidden(
                &sp,
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            );
        }
    }
}

/// ControllerRevision: data is required and immutable.
pub(super) fn validate_controller_revision(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    if !has(obj, "data") {
        e.required(&P::root("data"), "data is mandatory");
    }
    e.nonnegative(&P::root("revision"), int(obj, "revision"));
    if let Some(old) = old {
        if !same(at(obj, "data"), at(old, "data")) {
            e.invalid(
                &P::root("data"),
                at(obj, "data").clone(),
                "field is immutable",
            );
        }
    }
}
