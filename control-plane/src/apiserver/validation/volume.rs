//! Pod volumes and their sources.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::container::{object_field_selector, resource_field_selector, VOLUME_FIELD_PATHS};
use super::meta;
use super::quantity;
use super::{arr, at, dns1123_label_errors, dns1123_subdomain_errors, has, int, opt_s, s, Errs, P};

const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// Volume source fields in upstream's checking order, with the name upstream uses in the
/// "more than 1 volume type" path.
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

/// Upstream's `ValidateVolumes`: returns the valid volumes by name, for mount checks.
pub(super) fn volumes(list: &[Value], p: &P, e: &mut Errs) -> BTreeMap<String, Value> {
    let mut vols = BTreeMap::new();
    for (i, vol) in list.iter().enumerate() {
        let ip = p.index(i);
        let mut el = Errs::default();
        volume_source(vol, &ip, &mut el);
        let name = s(vol, "name");
        if name.is_empty() {
            el.required(&ip.child("name"), "");
        } else {
            el.invalid_each(&ip.child("name"), name, dns1123_label_errors(name));
        }
        if vols.contains_key(name) {
            el.duplicate(&ip.child("name"), name);
        }
        if el.0.is_empty() {
            vols.insert(name.to_string(), vol.clone());
        } else {
            e.0.extend(el.0);
        }
    }
    vols
}

fn volume_source(vol: &Value, p: &P, e: &mut Errs) {
    let mut n = 0;
    for (field, forbidden_name) in VOLUME_SOURCES {
        let Some(src) = vol.get(*field).filter(|v| v.is_object()) else {
            continue;
        };
        if n > 0 {
            e.forbidden(
                &p.child(forbidden_name),
                "may not specify more than 1 volume type",
            );
            continue;
        }
        n += 1;
        source(field, src, &p.child(field), e);
    }
    if n == 0 {
        e.required(p, "must specify a volume type");
    }
}

fn source(field: &str, src: &Value, sp: &P, e: &mut Errs) {
    match field {
        "emptyDir" => {
            if let Some(Ok(q)) = src.get("sizeLimit").and_then(quantity::from_json) {
                if q.is_negative() {
                    e.forbidden(
                        &sp.child("sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    );
                }
            }
        }
        "hostPath" => host_path(src, sp, e),
        "gitRepo" => {
            if s(src, "repository").is_empty() {
                e.required(&sp.child("repository"), "");
            }
            local_descending_path(s(src, "directory"), &sp.child("directory"), e);
        }
        "secret" => {
            if s(src, "secretName").is_empty() {
                e.required(&sp.child("secretName"), "");
            }
            file_mode(src, "defaultMode", sp, e);
            key_to_paths(src, sp, e);
        }
        "configMap" => {
            if s(src, "name").is_empty() {
                e.required(&sp.child("name"), "");
            }
            file_mode(src, "defaultMode", sp, e);
            key_to_paths(src, sp, e);
        }
        "nfs" => nfs(src, sp, e),
        "persistentVolumeClaim" if s(src, "claimName").is_empty() => {
            e.required(&sp.child("claimName"), "");
        }
        "downwardAPI" => {
            file_mode(src, "defaultMode", sp, e);
            for file in arr(src, "items") {
                downward_api_file(file, sp, e);
            }
        }
        "projected" => projected(src, sp, e),
        "csi" => {
            csi_driver_name(s(src, "driver"), &sp.child("driver"), e);
            let secret = at(src, "nodePublishSecretRef");
            if secret.is_object() {
                let name = s(secret, "name");
                if name.is_empty() {
                    e.required(&sp.child("nodePublishSecretRef").child("name"), "");
                } else {
                    e.invalid_each(&sp.child("name"), name, dns1123_subdomain_errors(name));
                }
            }
        }
        "ephemeral" => {
            let t = at(src, "volumeClaimTemplate");
            if !t.is_object() {
                e.required(&sp.child("volumeClaimTemplate"), "");
            } else {
                let tp = sp.child("volumeClaimTemplate");
                meta::template_object_meta(at(t, "metadata"), &tp.child("metadata"), e);
                super::storage::pvc_spec(at(t, "spec"), &tp.child("spec"), e);
            }
        }
        _ => {}
    }
}

/// An NFS source (also used by PersistentVolumes).
pub(super) fn nfs(src: &Value, sp: &P, e: &mut Errs) {
    if s(src, "server").is_empty() {
        e.required(&sp.child("server"), "");
    }
    let path = s(src, "path");
    if path.is_empty() {
        e.required(&sp.child("path"), "");
    }
    if !path.starts_with('/') {
        e.invalid(&sp.child("path"), path, "must be an absolute path");
    }
}

/// A hostPath source (also used by PersistentVolumes).
pub(super) fn host_path(src: &Value, p: &P, e: &mut Errs) {
    let path = s(src, "path");
    if path.is_empty() {
        e.required(&p.child("path"), "");
        return;
    }
    no_backsteps(path, &p.child("path"), e);
    if let Some(t) = opt_s(src, "type") {
        const TYPES: &[&str] = &[
            "",
            "BlockDevice",
            "CharDevice",
            "Directory",
            "DirectoryOrCreate",
            "File",
            "FileOrCreate",
            "Socket",
        ];
        if !TYPES.contains(&t) {
            e.not_supported(&p.child("type"), t, TYPES);
        }
    }
}

/// CSI driver names: DNS subdomain (case-insensitively), at most 63 characters.
pub(super) fn csi_driver_name(driver: &str, p: &P, e: &mut Errs) {
    if driver.is_empty() {
        e.required(p, "");
    }
    if driver.len() > 63 {
        e.too_long(p, 63);
    }
    e.invalid_each(p, driver, dns1123_subdomain_errors(&driver.to_lowercase()));
}

fn file_mode(obj: &Value, field: &str, p: &P, e: &mut Errs) {
    if let Some(m) = int(obj, field) {
        if !(0..=0o777).contains(&m) {
            e.invalid(&p.child(field), m, FILE_MODE_MSG);
        }
    }
}

fn key_to_paths(src: &Value, p: &P, e: &mut Errs) {
    for (i, kp) in arr(src, "items").iter().enumerate() {
        key_to_path(kp, &p.child("items").index(i), e);
    }
}

fn key_to_path(kp: &Value, p: &P, e: &mut Errs) {
    if s(kp, "key").is_empty() {
        e.required(&p.child("key"), "");
    }
    let path = s(kp, "path");
    if path.is_empty() {
        e.required(&p.child("path"), "");
    }
    local_non_reserved_path(path, &p.child("path"), e);
    file_mode(kp, "mode", p, e);
}

fn downward_api_file(file: &Value, p: &P, e: &mut Errs) {
    let path = s(file, "path");
    if path.is_empty() {
        e.required(&p.child("path"), "");
    }
    local_non_reserved_path(path, &p.child("path"), e);
    if let Some(f) = file.get("fieldRef").filter(|v| v.is_object()) {
        object_field_selector(f, VOLUME_FIELD_PATHS, &p.child("fieldRef"), e);
        if has(file, "resourceFieldRef") {
            e.invalid(
                p,
                "resource",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            );
        }
    } else if let Some(r) = file.get("resourceFieldRef").filter(|v| v.is_object()) {
        resource_field_selector(r, true, &p.child("resourceFieldRef"), e);
    } else {
        e.required(p, "one of fieldRef and resourceFieldRef is required");
    }
    file_mode(file, "mode", p, e);
}

fn projected(src: &Value, p: &P, e: &mut Errs) {
    file_mode(src, "defaultMode", p, e);
    let mut paths = BTreeSet::new();
    for (i, source) in arr(src, "sources").iter().enumerate() {
        let sp = p.child("sources").index(i);
        let mut n = 0;
        for kind in ["secret", "configMap"] {
            let Some(x) = source.get(kind).filter(|v| v.is_object()) else {
                continue;
            };
            n += 1;
            let kp = sp.child(kind);
            if s(x, "name").is_empty() {
                e.required(&kp.child("name"), "");
            }
            for (j, item) in arr(x, "items").iter().enumerate() {
                key_to_path(item, &kp.child("items").index(j), e);
                let path = s(item, "path");
                if !path.is_empty() && !paths.insert(path.to_string()) {
                    e.invalid(p, s(x, "name"), "conflicting duplicate paths");
                }
            }
        }
        if let Some(x) = source.get("downwardAPI").filter(|v| v.is_object()) {
            n += 1;
            for item in arr(x, "items") {
                downward_api_file(item, &sp.child("downwardAPI"), e);
                let path = s(item, "path");
                if !path.is_empty() && !paths.insert(path.to_string()) {
                    e.invalid(p, path, "conflicting duplicate paths");
                }
            }
        }
        if let Some(x) = source.get("serviceAccountToken").filter(|v| v.is_object()) {
            n += 1;
            token_projection(x, &sp.child("serviceAccountToken"), p, e);
        }
        if let Some(x) = source.get("clusterTrustBundle").filter(|v| v.is_object()) {
            n += 1;
            let cp = sp.child("clusterTrustBundle");
            match (has(x, "name"), has(x, "signerName")) {
                (true, true) => e.invalid(
                    &cp,
                    x.clone(),
                    "only one of name and signerName may be used",
                ),
                (false, false) => e.required(&cp, "either name or signerName must be specified"),
                _ => {}
            }
            let path = s(x, "path");
            if path.is_empty() {
                e.required(&cp.child("path"), "");
            }
            local_non_reserved_path(path, &cp.child("path"), e);
            if !paths.insert(path.to_string()) {
                e.invalid(p, path, "conflicting duplicate paths");
            }
        }
        if n > 1 {
            e.forbidden(&sp, "may not specify more than 1 volume type per source");
        }
    }
}

fn token_projection(x: &Value, tp: &P, p: &P, e: &mut Errs) {
    let exp = int(x, "expirationSeconds").unwrap_or(0);
    if exp < 600 {
        e.invalid(
            &tp.child("expirationSeconds"),
            exp,
            "may not specify a duration less than 10 minutes",
        );
    }
    if exp > 1 << 32 {
        e.invalid(
            &tp.child("expirationSeconds"),
            exp,
            "may not specify a duration larger than 2^32 seconds",
        );
    }
    let path = s(x, "path");
    if path.is_empty() {
        e.required(&p.child("path"), "");
    } else {
        local_non_reserved_path(path, &p.child("path"), e);
    }
}

fn no_backsteps(path: &str, p: &P, e: &mut Errs) {
    if path.split('/').any(|x| x == "..") {
        e.invalid(p, path, "must not contain '..'");
    }
}

/// A relative path without `..` elements (subPaths, gitRepo directories).
pub(super) fn local_descending_path(path: &str, p: &P, e: &mut Errs) {
    if path.starts_with('/') {
        e.invalid(p, path, "must be a relative path");
    }
    no_backsteps(path, p, e);
}

fn local_non_reserved_path(path: &str, p: &P, e: &mut Errs) {
    local_descending_path(path, p, e);
    if path.starts_with("..") && !path.starts_with("../") {
        e.invalid(p, path, "must not start with '..'");
    }
}
