//! Containers in a PodSpec: names, images, ports, environment, mounts, probes and lifecycle
//! handlers, security context.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::quantity;
use super::resources::resource_requirements;
use super::{
    arr, at, boolean, config_map_key_errors, dns1123_label_errors, dns1123_subdomain_errors,
    enum_field, env_var_name_errors, has, int, opt_s, port_name_errors, port_num_errors,
    qualified_name_errors, range_error, s, Errs, NameRule, P,
};

/// What container checks need from the surrounding PodSpec.
pub(super) struct Ctx<'a> {
    pub(super) vols: &'a BTreeMap<String, Value>,
    pub(super) claims: &'a BTreeSet<String>,
    pub(super) grace: Option<i64>,
    pub(super) os: &'a str,
}

/// Regular containers: required, unique names, probes and lifecycle, host port conflicts.
pub(super) fn containers(list: &[Value], p: &P, ctx: &Ctx<'_>, e: &mut Errs) {
    if list.is_empty() {
        e.required(p, "");
        return;
    }
    let mut names = BTreeSet::new();
    for (i, c) in list.iter().enumerate() {
        let cp = p.index(i);
        container_common(c, &cp, ctx, e);
        if !names.insert(s(c, "name")) {
            e.duplicate(&cp.child("name"), s(c, "name"));
        }
        if let Some(l) = c.get("lifecycle").filter(|v| v.is_object()) {
            lifecycle(l, ctx, &cp.child("lifecycle"), e);
        }
        probes(c, &cp, ctx.grace, e);
        if has(c, "restartPolicy") {
            e.forbidden(
                &cp.child("restartPolicy"),
                "may not be set for non-init containers",
            );
        }
    }
    host_port_conflicts(list, p, e);
}

fn probes(c: &Value, cp: &P, grace: Option<i64>, e: &mut Errs) {
    for (field, single_success, no_grace) in [
        ("livenessProbe", true, false),
        ("readinessProbe", false, true),
        ("startupProbe", true, false),
    ] {
        let Some(pr) = c.get(field).filter(|v| v.is_object()) else {
            continue;
        };
        let pp = cp.child(field);
        probe(pr, grace, &pp, e);
        if single_success && int(pr, "successThreshold").unwrap_or(0) != 1 {
            e.invalid(
                &pp.child("successThreshold"),
                int(pr, "successThreshold").unwrap_or(0),
                "must be 1",
            );
        }
        if no_grace && has(pr, "terminationGracePeriodSeconds") {
            e.invalid(
                &pp.child("terminationGracePeriodSeconds"),
                at(pr, "terminationGracePeriodSeconds").clone(),
                "must not be set for readinessProbes",
            );
        }
    }
}

/// Init containers: names unique across regular and init containers; probes and lifecycle
/// only for restartable (sidecar) ones.
pub(super) fn init_containers(spec: &Value, p: &P, ctx: &Ctx<'_>, e: &mut Errs) {
    let mut names: BTreeSet<&str> = arr(spec, "containers")
        .iter()
        .map(|c| s(c, "name"))
        .collect();
    for (i, c) in arr(spec, "initContainers").iter().enumerate() {
        let cp = p.index(i);
        container_common(c, &cp, ctx, e);
        let mut restart_always = false;
        if has(c, "restartPolicy") {
            let rp = s(c, "restartPolicy");
            if rp != "Always" {
                e.not_supported(&cp.child("restartPolicy"), rp, &["Always"]);
            }
            restart_always = rp == "Always";
        }
        let name = s(c, "name");
        if names.contains(name) {
            e.duplicate(&cp.child("name"), name);
        } else if !name.is_empty() {
            names.insert(name);
        }
        host_port_conflicts(std::slice::from_ref(c), p, e);
        if restart_always {
            if let Some(l) = c.get("lifecycle").filter(|v| v.is_object()) {
                lifecycle(l, ctx, &cp.child("lifecycle"), e);
            }
            probes(c, &cp, ctx.grace, e);
        } else {
            for field in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if has(c, field) {
                    e.forbidden(
                        &cp.child(field),
                        "may not be set for init containers without restartPolicy=Always",
                    );
                }
            }
        }
    }
}

/// Ephemeral containers: unique names, no subPaths.
pub(super) fn ephemeral_containers(spec: &Value, p: &P, ctx: &Ctx<'_>, e: &mut Errs) {
    let mut names: BTreeSet<&str> = arr(spec, "containers")
        .iter()
        .chain(arr(spec, "initContainers"))
        .map(|c| s(c, "name"))
        .collect();
    for (i, c) in arr(spec, "ephemeralContainers").iter().enumerate() {
        let cp = p.index(i);
        container_common(c, &cp, ctx, e);
        if !names.insert(s(c, "name")) {
            e.duplicate(&cp.child("name"), s(c, "name"));
        }
        for (j, m) in arr(c, "volumeMounts").iter().enumerate() {
            for f in ["subPath", "subPathExpr"] {
                if !s(m, f).is_empty() {
                    e.forbidden(
                        &cp.child("volumeMounts").index(j).child(f),
                        "cannot be set for an Ephemeral Container",
                    );
                }
            }
        }
    }
}

/// Upstream's `validateContainerCommon`.
fn container_common(c: &Value, p: &P, ctx: &Ctx<'_>, e: &mut Errs) {
    let name = s(c, "name");
    if name.is_empty() {
        e.required(&p.child("name"), "");
    } else {
        e.invalid_each(&p.child("name"), name, dns1123_label_errors(name));
    }
    if s(c, "image").is_empty() {
        e.required(&p.child("image"), "");
    }
    enum_field(
        c,
        "terminationMessagePolicy",
        p,
        &["File", "FallbackToLogsOnError"],
        e,
    );
    container_ports(arr(c, "ports"), &p.child("ports"), e);
    env(arr(c, "env"), &p.child("env"), e);
    env_from(arr(c, "envFrom"), &p.child("envFrom"), e);
    let devices: BTreeMap<&str, &str> = arr(c, "volumeDevices")
        .iter()
        .map(|d| (s(d, "name"), s(d, "devicePath")))
        .collect();
    volume_mounts(c, &devices, ctx.vols, &p.child("volumeMounts"), e);
    volume_devices(c, ctx.vols, &p.child("volumeDevices"), e);
    enum_field(
        c,
        "imagePullPolicy",
        p,
        &["Always", "IfNotPresent", "Never"],
        e,
    );
    resource_requirements(at(c, "resources"), ctx.claims, &p.child("resources"), e);
    security_context(at(c, "securityContext"), &p.child("securityContext"), e);
}

fn container_ports(ports: &[Value], p: &P, e: &mut Errs) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let ip = p.index(i);
        let name = s(port, "name");
        if !name.is_empty() {
            let msgs = port_name_errors(name);
            if !msgs.is_empty() {
                e.invalid_each(&ip.child("name"), name, msgs);
            } else if !names.insert(name) {
                e.duplicate(&ip.child("name"), name);
            }
        }
        match int(port, "containerPort").unwrap_or(0) {
            0 => e.required(&ip.child("containerPort"), ""),
            n => {
                for m in port_num_errors(n) {
                    e.invalid(&ip.child("containerPort"), n, &m);
                }
            }
        }
        let hp = int(port, "hostPort").unwrap_or(0);
        if hp != 0 {
            for m in port_num_errors(hp) {
                e.invalid(&ip.child("hostPort"), hp, &m);
            }
        }
        protocol(port, &ip, e);
    }
}

/// `protocol`: required, and one of SCTP, TCP, UDP.
pub(super) fn protocol(port: &Value, p: &P, e: &mut Errs) {
    enum_field(port, "protocol", p, &["SCTP", "TCP", "UDP"], e);
}

fn host_port_conflicts(list: &[Value], p: &P, e: &mut Errs) {
    let mut seen = BTreeSet::new();
    for (ci, c) in list.iter().enumerate() {
        for (pi, port) in arr(c, "ports").iter().enumerate() {
            let hp = int(port, "hostPort").unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!("{}/{}/{hp}", s(port, "protocol"), s(port, "hostIP"));
            if !seen.insert(key.clone()) {
                e.duplicate(&p.index(ci).child("ports").index(pi).child("hostPort"), key);
            }
        }
    }
}

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// The pod fields a downward API volume may expose.
pub(super) const VOLUME_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
];

const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn env(vars: &[Value], p: &P, e: &mut Errs) {
    for (i, ev) in vars.iter().enumerate() {
        let ip = p.index(i);
        let name = s(ev, "name");
        if name.is_empty() {
            e.required(&ip.child("name"), "");
        } else {
            e.invalid_each(&ip.child("name"), name, env_var_name_errors(name));
        }
        let Some(from) = ev.get("valueFrom").filter(|v| v.is_object()) else {
            continue;
        };
        let fp = ip.child("valueFrom");
        let mut n = 0;
        if let Some(f) = from.get("fieldRef").filter(|v| v.is_object()) {
            n += 1;
            object_field_selector(f, ENV_FIELD_PATHS, &fp.child("fieldRef"), e);
        }
        if let Some(r) = from.get("resourceFieldRef").filter(|v| v.is_object()) {
            n += 1;
            resource_field_selector(r, false, &fp.child("resourceFieldRef"), e);
        }
        for key in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = from.get(key).filter(|v| v.is_object()) {
                n += 1;
                let kp = fp.child(key);
                let rn = s(r, "name");
                e.invalid_each(&kp.child("name"), rn, dns1123_subdomain_errors(rn));
                let k = s(r, "key");
                if k.is_empty() {
                    e.required(&kp.child("key"), "");
                } else {
                    e.invalid_each(&kp.child("key"), k, config_map_key_errors(k));
                }
            }
        }
        if n == 0 {
            e.invalid(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            );
        } else if !s(ev, "value").is_empty() {
            e.invalid(&fp, "", "may not be specified when `value` is not empty");
        } else if n > 1 {
            e.invalid(
                &fp,
                "",
                "may not have more than one field specified at a time",
            );
        }
    }
}

/// A downward API `fieldRef`: version v1 and one of the `allowed` paths (or a subscripted
/// label/annotation).
pub(super) fn object_field_selector(f: &Value, allowed: &[&str], p: &P, e: &mut Errs) {
    let version = s(f, "apiVersion");
    if version.is_empty() {
        e.required(&p.child("apiVersion"), "");
        return;
    }
    let path = s(f, "fieldPath");
    if path.is_empty() {
        e.required(&p.child("fieldPath"), "");
        return;
    }
    if version != "v1" {
        e.invalid(
            &p.child("fieldPath"),
            path,
            &format!("error converting fieldPath: unsupported pod version: {version}"),
        );
        return;
    }
    if let Some((base, rest)) = path.split_once('[') {
        let subscript = rest
            .strip_suffix(']')
            .and_then(|x| x.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')));
        match (base, subscript) {
            ("metadata.annotations", Some(k)) => {
                let lower = k.to_lowercase();
                e.invalid_each(p, &lower, qualified_name_errors(&lower))
            }
            ("metadata.labels", Some(k)) => e.invalid_each(p, k, qualified_name_errors(k)),
            _ => e.invalid(
                &p.child("fieldPath"),
                path,
                &format!("error converting fieldPath: field label not supported: {path}"),
            ),
        }
        return;
    }
    const KNOWN: &[&str] = &[
        "metadata.annotations",
        "metadata.labels",
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.serviceAccountName",
        "spec.schedulerName",
        "status.phase",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    ];
    if !KNOWN.contains(&path) {
        e.invalid(
            &p.child("fieldPath"),
            path,
            &format!("error converting fieldPath: field label not supported: {path}"),
        );
    } else if !allowed.contains(&path) {
        e.not_supported(&p.child("fieldPath"), path, allowed);
    }
}

/// A downward API `resourceFieldRef` and its divisor.
pub(super) fn resource_field_selector(r: &Value, volume: bool, p: &P, e: &mut Errs) {
    let res = s(r, "resource");
    if volume && s(r, "containerName").is_empty() {
        e.required(&p.child("containerName"), "");
    } else if res.is_empty() {
        e.required(&p.child("resource"), "");
    } else if !RESOURCE_FIELD_PATHS.contains(&res)
        && !res.starts_with("requests.hugepages-")
        && !res.starts_with("limits.hugepages-")
    {
        e.not_supported(&p.child("resource"), res, RESOURCE_FIELD_PATHS);
    }
    let Some(Ok(div)) = r.get("divisor").and_then(quantity::from_json) else {
        return;
    };
    if div.is_zero() {
        return;
    }
    let d = div.canonical();
    let mem = [
        "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
    ];
    let list = "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei";
    let msg = match res {
        "limits.cpu" | "requests.cpu" if d != "1m" && d != "1" => {
            Some("only divisor's values 1m and 1 are supported with the cpu resource".to_string())
        }
        "limits.memory" | "requests.memory" if !mem.contains(&d.as_str()) => Some(format!(
            "only divisor's values {list} are supported with the memory resource"
        )),
        "limits.ephemeral-storage" | "requests.ephemeral-storage"
            if !mem.contains(&d.as_str()) =>
        {
            Some(format!(
                "only divisor's values {list} are supported with the local ephemeral storage resource"
            ))
        }
        _ => None,
    };
    if let Some(msg) = msg {
        e.invalid(&p.child("divisor"), res, &msg);
    }
}

fn env_from(list: &[Value], p: &P, e: &mut Errs) {
    for (i, ev) in list.iter().enumerate() {
        let ip = p.index(i);
        let prefix = s(ev, "prefix");
        if !prefix.is_empty() {
            e.invalid_each(&ip.child("prefix"), prefix, env_var_name_errors(prefix));
        }
        let mut n = 0;
        for key in ["configMapRef", "secretRef"] {
            if let Some(r) = ev.get(key).filter(|v| v.is_object()) {
                n += 1;
                let name = s(r, "name");
                if name.is_empty() {
                    e.required(&ip.child(key).child("name"), "");
                } else {
                    e.invalid_each(
                        &ip.child(key).child("name"),
                        name,
                        NameRule::Subdomain.check(name, true),
                    );
                }
            }
        }
        if n == 0 {
            e.invalid(p, "", "must specify one of: `configMapRef` or `secretRef`");
        } else if n > 1 {
            e.invalid(
                p,
                "",
                "may not have more than one field specified at a time",
            );
        }
    }
}

fn volume_mounts(
    c: &Value,
    devices: &BTreeMap<&str, &str>,
    vols: &BTreeMap<String, Value>,
    p: &P,
    e: &mut Errs,
) {
    let mut points = BTreeSet::new();
    let privileged = at(at(c, "securityContext"), "privileged").as_bool() == Some(true);
    for (i, m) in arr(c, "volumeMounts").iter().enumerate() {
        let ip = p.index(i);
        let name = s(m, "name");
        if name.is_empty() {
            e.required(&ip.child("name"), "");
        }
        if !vols.contains_key(name) {
            e.not_found(&ip.child("name"), name);
        }
        let mp = s(m, "mountPath");
        if mp.is_empty() {
            e.required(&ip.child("mountPath"), "");
        }
        if !points.insert(mp) {
            e.invalid(&ip.child("mountPath"), mp, "must be unique");
        }
        if devices.contains_key(name) {
            e.invalid(
                &ip.child("name"),
                name,
                "must not already exist in volumeDevices",
            );
        }
        if devices.values().any(|d| *d == mp) {
            e.invalid(
                &ip.child("mountPath"),
                mp,
                "must not already exist as a path in volumeDevices",
            );
        }
        let sub = s(m, "subPath");
        if !sub.is_empty() {
            super::volume::local_descending_path(sub, &p.child("subPath"), e);
        }
        let expr = s(m, "subPathExpr");
        if !expr.is_empty() {
            if !sub.is_empty() {
                e.invalid(
                    &ip.child("subPathExpr"),
                    expr,
                    "subPathExpr and subPath are mutually exclusive",
                );
            }
            super::volume::local_descending_path(expr, &p.child("subPathExpr"), e);
        }
        if let Some(prop) = opt_s(m, "mountPropagation") {
            let pp = p.child("mountPropagation");
            if !matches!(prop, "Bidirectional" | "HostToContainer" | "None") {
                e.not_supported(&pp, prop, &["Bidirectional", "HostToContainer", "None"]);
            }
            if prop == "Bidirectional" && !privileged {
                e.forbidden(
                    &pp,
                    "Bidirectional mount propagation is available only to privileged containers",
                );
            }
        }
        if let Some(rro) = opt_s(m, "recursiveReadOnly") {
            let rp = p.child("recursiveReadOnly");
            match rro {
                "Disabled" => {}
                "Enabled" | "IfPossible" => {
                    if !boolean(m, "readOnly") {
                        e.forbidden(&rp, "may only be specified when readOnly is true");
                    }
                    if opt_s(m, "mountPropagation").is_some_and(|x| x != "None") {
                        e.forbidden(
                            &rp,
                            "may only be specified when mountPropagation is None or not specified",
                        );
                    }
                }
                other => e.not_supported(&rp, other, &["Disabled", "Enabled", "IfPossible"]),
            }
        }
    }
}

fn volume_devices(c: &Value, vols: &BTreeMap<String, Value>, p: &P, e: &mut Errs) {
    let mounts: BTreeMap<&str, &str> = arr(c, "volumeMounts")
        .iter()
        .map(|m| (s(m, "name"), s(m, "mountPath")))
        .collect();
    let mut paths = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, d) in arr(c, "volumeDevices").iter().enumerate() {
        let ip = p.index(i);
        let name = s(d, "name");
        let path = s(d, "devicePath");
        if name.is_empty() {
            e.required(&ip.child("name"), "");
        }
        if !names.insert(name) {
            e.invalid(&ip.child("name"), name, "must be unique");
        }
        match vols.get(name) {
            None => e.not_found(&ip.child("name"), name),
            Some(src) if !has(src, "persistentVolumeClaim") && !has(src, "ephemeral") => e
                .invalid(
                    &ip.child("name"),
                    name,
                    "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
                ),
            Some(_) => {}
        }
        if path.is_empty() {
            e.required(&ip.child("devicePath"), "");
        }
        if !paths.insert(path) {
            e.invalid(&ip.child("devicePath"), path, "must be unique");
        }
        if path.split('/').any(|x| x == "..") {
            e.invalid(
                &ip.child("devicePath"),
                path,
                "can not contain backsteps ('..')",
            );
        }
        if mounts.contains_key(name) {
            e.invalid(
                &ip.child("name"),
                name,
                "must not already exist in volumeMounts",
            );
        }
        if mounts.values().any(|m| *m == path) {
            e.invalid(
                &ip.child("devicePath"),
                path,
                "must not already exist as a path in volumeMounts",
            );
        }
    }
}

fn lifecycle(l: &Value, ctx: &Ctx<'_>, p: &P, e: &mut Errs) {
    for hook in ["postStart", "preStop"] {
        if let Some(h) = l.get(hook).filter(|v| v.is_object()) {
            handler(
                h,
                &["exec", "httpGet", "tcpSocket", "sleep"],
                ctx.grace,
                &p.child(hook),
                e,
            );
        }
    }
    if let Some(sig) = opt_s(l, "stopSignal") {
        let sp = p.child("stopSignal");
        match ctx.os {
            "" => e.forbidden(
                &sp,
                "may not be set for containers with empty `spec.os.name`",
            ),
            "windows" if sig != "SIGKILL" && sig != "SIGTERM" => {
                e.not_supported(&sp, sig, &["SIGKILL", "SIGTERM"])
            }
            "linux" if !sig.starts_with("SIG") => e.not_supported(&sp, sig, &[]),
            _ => {}
        }
    }
}

fn probe(pr: &Value, grace: Option<i64>, p: &P, e: &mut Errs) {
    handler(pr, &["exec", "httpGet", "tcpSocket", "grpc"], grace, p, e);
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        e.nonnegative(&p.child(f), int(pr, f));
    }
    if let Some(g) = int(pr, "terminationGracePeriodSeconds") {
        if g <= 0 {
            e.invalid(
                &p.child("terminationGracePeriodSeconds"),
                g,
                "must be greater than 0",
            );
        }
    }
}

fn handler(h: &Value, kinds: &[&str], grace: Option<i64>, p: &P, e: &mut Errs) {
    let mut n = 0;
    for kind in kinds {
        let Some(x) = h.get(*kind).filter(|v| v.is_object()) else {
            continue;
        };
        let kp = p.child(kind);
        if n > 0 {
            e.forbidden(&kp, "may not specify more than 1 handler type");
            continue;
        }
        n += 1;
        match *kind {
            "exec" => {
                if arr(x, "command").is_empty() {
                    e.required(&kp.child("command"), "");
                }
            }
            "httpGet" => http_get(x, &kp, e),
            "tcpSocket" => port_num_or_name(at(x, "port"), &kp.child("port"), e),
            "grpc" => {
                let port = int(x, "port").unwrap_or(0);
                for m in port_num_errors(port) {
                    e.invalid(&kp.child("port"), port, &m);
                }
            }
            _ => {
                let secs = int(x, "seconds").unwrap_or(0);
                if let Some(g) = grace {
                    if secs < 0 || secs > g {
                        e.invalid(
                            &kp,
                            secs,
                            &format!("must be non-negative and less than terminationGracePeriodSeconds ({g})"),
                        );
                    }
                }
            }
        }
    }
    if n == 0 {
        e.required(p, "must specify a handler type");
    }
}

fn http_get(x: &Value, kp: &P, e: &mut Errs) {
    if s(x, "path").is_empty() {
        e.required(&kp.child("path"), "");
    }
    port_num_or_name(at(x, "port"), &kp.child("port"), e);
    let scheme = s(x, "scheme");
    if scheme != "HTTP" && scheme != "HTTPS" {
        e.not_supported(&kp.child("scheme"), scheme, &["HTTP", "HTTPS"]);
    }
    for hdr in arr(x, "httpHeaders") {
        let name = s(hdr, "name");
        let ok = !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
        if !ok {
            e.invalid(
                &kp.child("httpHeaders"),
                name,
                &super::regex_error(
                    "a valid HTTP header must consist of alphanumeric characters or '-'",
                    "[-A-Za-z0-9]+",
                    &["X-Header-Name"],
                ),
            );
        }
    }
}

/// An int-or-string port: a number in 1..65535 or an IANA service name.
pub(super) fn port_num_or_name(v: &Value, p: &P, e: &mut Errs) {
    match v {
        Value::String(name) => e.invalid_each(p, name, port_name_errors(name)),
        other => {
            let n = other.as_i64().unwrap_or(0);
            for m in port_num_errors(n) {
                e.invalid(p, n, &m);
            }
        }
    }
}

fn security_context(sc: &Value, p: &P, e: &mut Errs) {
    if !sc.is_object() {
        return;
    }
    for f in ["runAsUser", "runAsGroup"] {
        if let Some(u) = int(sc, f) {
            if !(0..=i64::from(i32::MAX)).contains(&u) {
                e.invalid(&p.child(f), u, &range_error(0, i64::from(i32::MAX)));
            }
        }
    }
    if let Some(pm) = opt_s(sc, "procMount") {
        if pm != "Default" && pm != "Unmasked" {
            e.not_supported(&p.child("procMount"), pm, &["Default", "Unmasked"]);
        } else if pm == "Unmasked" {
            e.invalid(
                &p.child("procMount"),
                pm,
                "`hostUsers` must be false to use `Unmasked`",
            );
        }
    }
    super::pod::seccomp(at(sc, "seccompProfile"), &p.child("seccompProfile"), e);
    if at(sc, "allowPrivilegeEscalation").as_bool() == Some(false) {
        if at(sc, "privileged").as_bool() == Some(true) {
            e.invalid(
                p,
                sc.clone(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            );
        }
        if super::str_list(at(sc, "capabilities"), "add")
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN")
        {
            e.invalid(
                p,
                sc.clone(),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            );
        }
    }
}
