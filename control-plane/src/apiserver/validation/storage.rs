//! PersistentVolumes, PersistentVolumeClaims and StorageClasses.

use serde_json::Value;

use super::meta::{self, object_meta};
use super::pod::spec_diff;
use super::quantity::{self, Quantity};
use super::volume::{csi_driver_name, host_path, nfs};
use super::{arr, at, dns1123_subdomain_errors, has, map, opt_s, s, same, Errs, NameRule, P};

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

fn access_modes(spec: &Value, p: &P, e: &mut Errs) {
    let (mut rwop, mut other) = (false, false);
    for m in arr(spec, "accessModes") {
        let m = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&m) {
            e.not_supported(&p.child("accessModes"), m, ACCESS_MODES);
        }
        if m == "ReadWriteOncePod" {
            rwop = true;
        } else if ACCESS_MODES.contains(&m) {
            other = true;
        }
    }
    if rwop && other {
        e.forbidden(
            &p.child("accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        );
    }
}

const PV_SOURCES: &[&str] = &[
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cinder",
    "cephfs",
    "iscsi",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
];

/// PersistentVolume: access modes, capacity, exactly one source; the source is fixed after creation.
pub(super) fn validate_pv(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, false, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    let p = P::root("spec");
    if arr(spec, "accessModes").is_empty() {
        e.required(&p.child("accessModes"), "");
    }
    access_modes(spec, &p, e);
    let cap = map(spec, "capacity");
    if cap.is_none_or(|m| m.is_empty()) {
        e.required(&p.child("capacity"), "");
    }
    if !cap.is_some_and(|c| c.contains_key("storage") && c.len() == 1) {
        e.not_supported(
            &p.child("capacity"),
            at(spec, "capacity").clone(),
            &["storage"],
        );
    }
    if let Some(c) = cap {
        for (k, v) in c {
            let kp = p.child("capacity").key(k);
            match quantity::from_json(v) {
                Some(Ok(q)) => {
                    if q.is_negative() {
                        e.invalid(&kp, q.canonical(), "must be a valid resource quantity");
                    }
                    if q.is_negative() || q.is_zero() {
                        e.invalid(&kp, q.canonical(), "must be greater than zero");
                    }
                }
                _ => e.invalid(&kp, v.clone(), quantity::FORMAT_ERROR),
            }
        }
    }
    let policy = s(spec, "persistentVolumeReclaimPolicy");
    if !policy.is_empty() && !matches!(policy, "Delete" | "Recycle" | "Retain") {
        e.not_supported(
            &p.child("persistentVolumeReclaimPolicy"),
            policy,
            &["Delete", "Recycle", "Retain"],
        );
    }
    let affinity = at(spec, "nodeAffinity");
    let mut affinity_set = false;
    if affinity.is_object() {
        let req = at(affinity, "required");
        if req.is_object() {
            affinity_set = true;
            let tp = p
                .child("nodeAffinity")
                .child("required")
                .child("nodeSelectorTerms");
            if arr(req, "nodeSelectorTerms").is_empty() {
                e.required(&tp, "must have at least one node selector term");
            }
        } else {
            e.required(
                &p.child("nodeAffinity").child("required"),
                "must specify required node constraints",
            );
        }
    }
    let mut n = 0;
    for src in PV_SOURCES {
        let Some(x) = spec.get(*src).filter(|v| v.is_object()) else {
            continue;
        };
        let sp = p.child(src);
        if n > 0 {
            e.forbidden(&sp, "may not specify more than 1 volume type");
            continue;
        }
        n += 1;
        match *src {
            "hostPath" => host_path(x, &sp, e),
            "nfs" => nfs(x, &sp, e),
            "local" => {
                if s(x, "path").is_empty() {
                    e.required(&sp.child("path"), "");
                }
                if !affinity_set {
                    e.required(
                        &p.child("nodeAffinity"),
                        "Local volume requires node affinity",
                    );
                }
            }
            "csi" => {
                csi_driver_name(s(x, "driver"), &sp.child("driver"), e);
                if s(x, "volumeHandle").is_empty() {
                    e.required(&sp.child("volumeHandle"), "");
                }
            }
            _ => {}
        }
    }
    if n == 0 {
        e.required(&p, "must specify a volume type");
    }
    if has(spec, "hostPath")
        && s(at(spec, "hostPath"), "path")
            .trim_end_matches('/')
            .is_empty()
        && policy == "Recycle"
    {
        e.forbidden(
            &p.child("persistentVolumeReclaimPolicy"),
            "may not be 'recycle' for a hostPath mount of '/'",
        );
    }
    class_and_volume_mode(spec, &p, e);
    if let Some(old) = old {
        let ospec = at(old, "spec");
        let changed: Vec<&str> = PV_SOURCES
            .iter()
            .copied()
            .filter(|k| !same(at(spec, k), at(ospec, k)))
            .collect();
        let csi_expand_only = changed.len() == 1 && changed[0] == "csi" && {
            let mut a = at(spec, "csi").clone();
            if let Some(m) = a.as_object_mut() {
                if !has(at(ospec, "csi"), "controllerExpandSecretRef") {
                    m.remove("controllerExpandSecretRef");
                }
            }
            same(&a, at(ospec, "csi"))
        };
        if !changed.is_empty() && !csi_expand_only {
            let mut diff = String::new();
            for k in changed {
                diff.push_str(&format!(
                    "- \t{k}: {},\n+ \t{k}: {},\n",
                    at(ospec, k),
                    at(spec, k)
                ));
            }
            e.forbidden(
                &p.child("persistentvolumesource"),
                &format!(
                    "spec.persistentvolumesource is immutable after creation\n  core.PersistentVolumeSource{{\n{diff}  }}\n"
                ),
            );
        }
        let (nm, om) = (at(spec, "volumeMode"), at(ospec, "volumeMode"));
        if nm != om {
            e.invalid(&P::root("volumeMode"), nm.clone(), "field is immutable");
        }
        if has(ospec, "nodeAffinity") && !same(at(spec, "nodeAffinity"), at(ospec, "nodeAffinity"))
        {
            e.invalid(
                &P::root("nodeAffinity"),
                at(spec, "nodeAffinity").clone(),
                "field is immutable",
            );
        }
    }
}

/// `storageClassName` (a DNS subdomain when set) and `volumeMode`, alike on volumes and claims.
fn class_and_volume_mode(spec: &Value, p: &P, e: &mut Errs) {
    let class = s(spec, "storageClassName");
    if !class.is_empty() {
        e.invalid_each(
            &p.child("storageClassName"),
            class,
            dns1123_subdomain_errors(class),
        );
    }
    if let Some(mode) = opt_s(spec, "volumeMode") {
        if mode != "Block" && mode != "Filesystem" {
            e.not_supported(&p.child("volumeMode"), mode, &["Block", "Filesystem"]);
        }
    }
}

/// Upstream's `ValidatePersistentVolumeClaimSpec` (also used by ephemeral volumes and
/// StatefulSet claim templates).
pub(super) fn pvc_spec(spec: &Value, p: &P, e: &mut Errs) {
    if arr(spec, "accessModes").is_empty() {
        e.required(
            &p.child("accessModes"),
            "at least 1 access mode is required",
        );
    }
    meta::label_selector(spec.get("selector"), &p.child("selector"), e);
    access_modes(spec, p, e);
    let sp = p.child("resources").key("storage");
    match at(at(spec, "resources"), "requests").get("storage") {
        None => e.required(&sp, ""),
        Some(v) => match quantity::from_json(v) {
            Some(Ok(q)) if q.is_negative() || q.is_zero() => {
                e.invalid(&sp, q.canonical(), "must be greater than zero")
            }
            Some(Ok(_)) => {}
            _ => e.invalid(&sp, v.clone(), quantity::FORMAT_ERROR),
        },
    }
    class_and_volume_mode(spec, p, e);
    for field in ["dataSource", "dataSourceRef"] {
        let ds = at(spec, field);
        if !ds.is_object() {
            continue;
        }
        let dp = p.child(field);
        if s(ds, "name").is_empty() {
            e.required(&dp.child("name"), "");
        }
        let kind = s(ds, "kind");
        if kind.is_empty() {
            e.required(&dp.child("kind"), "");
        }
        let group = s(ds, "apiGroup");
        if group.is_empty() && kind != "PersistentVolumeClaim" {
            e.invalid(
                &dp,
                kind,
                "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
            );
        }
        if !group.is_empty() {
            e.invalid_each(
                &dp.child("apiGroup"),
                group,
                dns1123_subdomain_errors(group),
            );
        }
    }
    if let Some(vac) = opt_s(spec, "volumeAttributesClassName").filter(|c| !c.is_empty()) {
        e.invalid_each(
            &p.child("volumeAttributesClassName"),
            vac,
            dns1123_subdomain_errors(vac),
        );
    }
}

/// PersistentVolumeClaim: the spec, which is immutable after creation except for resizing.
pub(super) fn validate_pvc(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, true, NameRule::Subdomain, e);
    let spec = at(obj, "spec");
    pvc_spec(spec, &P::root("spec"), e);
    let Some(old) = old else { return };
    let ospec = at(old, "spec");
    let mut new_c = spec.clone();
    let mut old_c = ospec.clone();
    if s(ospec, "volumeName").is_empty() {
        if let Some(m) = old_c.as_object_mut() {
            m.insert("volumeName".into(), at(spec, "volumeName").clone());
        }
    }
    if !has(ospec, "storageClassName") && has(spec, "storageClassName") {
        let ann = s(
            at(at(old, "metadata"), "annotations"),
            "volume.beta.kubernetes.io/storage-class",
        );
        if ann.is_empty() || ann == s(spec, "storageClassName") {
            if let Some(m) = new_c.as_object_mut() {
                m.remove("storageClassName");
            }
        }
    }
    let bound = s(at(obj, "status"), "phase") == "Bound";
    if let Some(m) = new_c.as_object_mut() {
        if bound {
            if let Some(req) = m
                .get_mut("resources")
                .and_then(|r| r.get_mut("requests"))
                .and_then(Value::as_object_mut)
            {
                match at(at(ospec, "resources"), "requests").get("storage") {
                    Some(v) => {
                        req.insert("storage".into(), v.clone());
                    }
                    None => {
                        req.remove("storage");
                    }
                }
            }
            if has(spec, "volumeAttributesClassName") {
                m.insert(
                    "volumeAttributesClassName".into(),
                    at(ospec, "volumeAttributesClassName").clone(),
                );
            }
        }
    }
    if !same(&new_c, &old_c) {
        e.forbidden(
            &P::root("spec"),
            &format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                spec_diff("core.PersistentVolumeClaimSpec", &old_c, &new_c)
            ),
        );
    }
    let q = |v: &Value| {
        v.get("storage")
            .and_then(quantity::from_json)
            .and_then(Result::ok)
            .unwrap_or_else(Quantity::zero)
    };
    let new_size = q(at(at(spec, "resources"), "requests"));
    let old_size = q(at(at(ospec, "resources"), "requests"));
    let status_size = q(at(at(old, "status"), "capacity"));
    if new_size.cmp(&old_size) == std::cmp::Ordering::Less
        && new_size.cmp(&status_size) != std::cmp::Ordering::Greater
    {
        e.forbidden(
            &P::root("spec")
                .child("resources")
                .child("requests")
                .child("storage"),
            "field can not be less than status.capacity",
        );
    }
    if at(spec, "volumeMode") != at(ospec, "volumeMode") {
        e.invalid(
            &P::root("volumeMode"),
            at(spec, "volumeMode").clone(),
            "field is immutable",
        );
    }
    if has(ospec, "volumeAttributesClassName") {
        match opt_s(spec, "volumeAttributesClassName") {
            None => e.forbidden(
                &P::root("spec").child("volumeAttributesClassName"),
                "update from non-nil value to nil is forbidden",
            ),
            Some("") => e.forbidden(
                &P::root("spec").child("volumeAttributesClassName"),
                "update from non-nil value to an empty string is forbidden",
            ),
            _ => {}
        }
    }
}

/// Most provisioner parameters a StorageClass may carry, and their total size in bytes.
const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETER_BYTES: usize = 256 << 10;

/// StorageClass: a qualified provisioner name, bounded parameters, known reclaim policy and
/// binding mode, topology terms with keys and values; everything but metadata,
/// mountOptions and allowVolumeExpansion is fixed once created, as upstream.
pub(super) fn validate_storage_class(obj: &Value, old: Option<&Value>, e: &mut Errs) {
    object_meta(obj, old, false, NameRule::Subdomain, e);
    let provisioner = s(obj, "provisioner");
    let p = P::root("provisioner");
    if provisioner.is_empty() {
        e.required(&p, "");
    } else {
        e.invalid_each(
            &p,
            provisioner,
            super::qualified_name_errors(&provisioner.to_lowercase()),
        );
    }
    if let Some(params) = map(obj, "parameters") {
        let p = P::root("parameters");
        if params.len() > MAX_PARAMETERS {
            e.push(
                &p,
                super::FieldErrorKind::TooLong,
                Value::from("Provisioner Parameters exceeded max allowed"),
                format!("may not be more than {MAX_PARAMETERS} bytes"),
            );
        } else {
            let mut size = 0;
            for (k, v) in params {
                if k.is_empty() {
                    e.invalid(&p, k.as_str(), "field can not be empty.");
                }
                size += k.len() + v.as_str().map_or(0, str::len);
            }
            if size > MAX_PARAMETER_BYTES {
                e.too_long(&p, MAX_PARAMETER_BYTES);
            }
        }
    }
    if let Some(policy) = opt_s(obj, "reclaimPolicy").filter(|p| !p.is_empty()) {
        if !["Delete", "Retain"].contains(&policy) {
            e.not_supported(&P::root("reclaimPolicy"), policy, &["Delete", "Retain"]);
        }
    }
    super::enum_field(
        obj,
        "volumeBindingMode",
        &P::root(""),
        &["Immediate", "WaitForFirstConsumer"],
        e,
    );
    let topologies = P::root("allowedTopologies");
    for (i, term) in arr(obj, "allowedTopologies").iter().enumerate() {
        let tp = topologies.index(i);
        let exprs = arr(term, "matchLabelExpressions");
        if exprs.is_empty() {
            e.required(
                &tp.child("matchLabelExpressions"),
                "must have at least one label match expression",
            );
        }
        for (j, expr) in exprs.iter().enumerate() {
            let ep = tp.child("matchLabelExpressions").index(j);
            let key = s(expr, "key");
            e.invalid_each(&ep.child("key"), key, super::qualified_name_errors(key));
            if arr(expr, "values").is_empty() {
                e.required(&ep.child("values"), "must specify as least one value");
            }
        }
    }
    let Some(old) = old else {
        return;
    };
    if !same(at(obj, "parameters"), at(old, "parameters")) {
        e.forbidden(
            &P::root("parameters"),
            "updates to parameters are forbidden.",
        );
    }
    if provisioner != s(old, "provisioner") {
        e.forbidden(
            &P::root("provisioner"),
            "updates to provisioner are forbidden.",
        );
    }
    if s(obj, "reclaimPolicy") != s(old, "reclaimPolicy") {
        e.forbidden(
            &P::root("reclaimPolicy"),
            "updates to reclaimPolicy are forbidden.",
        );
    }
    e.immutable(
        &P::root("volumeBindingMode"),
        at(obj, "volumeBindingMode"),
        at(old, "volumeBindingMode"),
        at(obj, "volumeBindingMode").clone(),
    );
}
