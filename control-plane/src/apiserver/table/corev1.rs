//! Printers for the core (`v1`) group, plus `events.k8s.io` Events, which upstream converts to
//! core Events and prints with the same printer.
//!
//! Upstream prints objects after decoding, so fields the API defaults (a Service's type, a
//! volume's mode, ...) read here as their defaults when a stored object lacks them.

use super::cells::{
    arr, containers, flag, format_labels, int, map_len, name, parse_time, present, s, s_or,
};
use super::quantity::quantity;
use super::{Col, Ctx, Printer, Row, AGE, NAME};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Namespace: NAME, STATUS, AGE.
pub(super) const NAMESPACE: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Status", "string", "The status of the namespace"),
        AGE,
    ],
    row: namespace,
};

fn namespace(o: &Value, ctx: &Ctx) -> Row {
    let phase = s_or(&o["status"]["phase"], "Active");
    Row::new(vec![name(o).into(), phase.into(), ctx.age(o).into()])
}

/// Node: NAME, STATUS, ROLES, AGE, VERSION; wide: addresses, OS, kernel, runtime.
pub(super) const NODE: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Status", "string", "The status of the node"),
        Col::new("Roles", "string", "The roles of the node"),
        AGE,
        Col::new("Version", "string", "Kubelet Version reported by the node."),
        Col::new("Internal-IP", "string", NODE_ADDRESSES_DOC).wide(),
        Col::new("External-IP", "string", NODE_ADDRESSES_DOC).wide(),
        Col::new("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).").wide(),
        Col::new("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).").wide(),
        Col::new("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).").wide(),
    ],
    row: node,
};

const NODE_ADDRESSES_DOC: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";

fn node(o: &Value, ctx: &Ctx) -> Row {
    let status = &o["status"];
    // The last Ready condition wins, as in upstream's condition map.
    let ready = arr(&status["conditions"])
        .iter()
        .rev()
        .find(|c| s(&c["type"]) == "Ready");
    let mut states = vec![match ready {
        Some(c) if s(&c["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if flag(&o["spec"]["unschedulable"]) {
        states.push("SchedulingDisabled");
    }
    let roles = node_roles(&o["metadata"]["labels"]);
    let address = |kind: &str| {
        arr(&status["addresses"])
            .iter()
            .find(|a| s(&a["type"]) == kind)
            .map_or("<none>", |a| s(&a["address"]))
            .to_string()
    };
    let info = &status["nodeInfo"];
    Row::new(vec![
        name(o).into(),
        states.join(",").into(),
        roles.into(),
        ctx.age(o).into(),
        s(&info["kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        s_or(&info["osImage"], "<unknown>").into(),
        s_or(&info["kernelVersion"], "<unknown>").into(),
        s_or(&info["containerRuntimeVersion"], "<unknown>").into(),
    ])
}

/// Roles from `node-role.kubernetes.io/<role>` label keys and `kubernetes.io/role` values,
/// sorted and comma-joined; "<none>" without any.
fn node_roles(labels: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in labels.as_object().into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !s(v).is_empty() {
            roles.insert(s(v).to_string());
        }
    }
    if roles.is_empty() {
        return "<none>".into();
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

/// Pod: NAME, READY, STATUS, RESTARTS, AGE; wide: IP, NODE, NOMINATED NODE, READINESS GATES.
pub(super) const POD: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        Col::new("Status", "string", "The aggregate status of the containers in this pod."),
        Col::new("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        AGE,
        Col::new("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.").wide(),
        Col::new("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename").wide(),
        Col::new("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.").wide(),
        Col::new("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates").wide(),
    ],
    row: pod,
};

/// Restart counts and the latest restart time, over some container statuses.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<time::OffsetDateTime>,
}

impl Restarts {
    /// Adds one container status's restarts.
    fn add(&mut self, status: &Value) {
        self.count += int(&status["restartCount"]);
        if let Some(t) = parse_time(&status["lastState"]["terminated"]["finishedAt"]) {
            match self.last {
                Some(last) if last >= t => {}
                _ => self.last = Some(t),
            }
        }
    }
}

fn pod(o: &Value, ctx: &Ctx) -> Row {
    let (spec, status) = (&o["spec"], &o["status"]);
    let phase = s(&status["phase"]);
    let mut reason = s_or(&status["reason"], phase).to_string();
    let conditions = arr(&status["conditions"]);
    if conditions
        .iter()
        .any(|c| s(&c["type"]) == "PodScheduled" && s(&c["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let init_specs = arr(&spec["initContainers"]);
    // Sidecars: init containers that restart always, and count as regular containers.
    let is_sidecar = |c: &Value| s(&c["restartPolicy"]) == "Always";
    let sidecar_named = |n: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| s(&c["name"]) == n)
            .is_some_and(is_sidecar)
    };
    let total =
        arr(&spec["containers"]).len() + init_specs.iter().filter(|c| is_sidecar(c)).count();
    let mut ready = 0;
    let (mut all, mut sidecars) = (Restarts::default(), Restarts::default());

    let mut initializing = false;
    for (i, c) in arr(&status["initContainerStatuses"]).iter().enumerate() {
        all.add(c);
        let sidecar = sidecar_named(s(&c["name"]));
        if sidecar {
            sidecars.add(c);
        }
        let (terminated, waiting) = (&c["state"]["terminated"], &c["state"]["waiting"]);
        if present(terminated) && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && flag(&c["started"]) {
            if flag(&c["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if present(terminated) {
            match s(&terminated["reason"]) {
                "" if int(&terminated["signal"]) != 0 => {
                    format!("Init:Signal:{}", int(&terminated["signal"]))
                }
                "" => format!("Init:ExitCode:{}", int(&terminated["exitCode"])),
                r => format!("Init:{r}"),
            }
        } else {
            match s(&waiting["reason"]) {
                "" | "PodInitializing" => format!("Init:{i}/{}", init_specs.len()),
                r => format!("Init:{r}"),
            }
        };
        initializing = true;
        break;
    }

    let mut restarts = all;
    let initialized = conditions
        .iter()
        .find(|c| s(&c["type"]) == "Initialized")
        .is_some_and(|c| s(&c["status"]) == "True");
    if !initializing || initialized {
        restarts = sidecars;
        let mut has_running = false;
        for c in arr(&status["containerStatuses"]).iter().rev() {
            restarts.add(c);
            let (state, terminated) = (&c["state"], &c["state"]["terminated"]);
            if !s(&state["waiting"]["reason"]).is_empty() {
                reason = s(&state["waiting"]["reason"]).into();
            } else if present(terminated) {
                reason = match s(&terminated["reason"]) {
                    "" if int(&terminated["signal"]) != 0 => {
                        format!("Signal:{}", int(&terminated["signal"]))
                    }
                    "" => format!("ExitCode:{}", int(&terminated["exitCode"])),
                    r => r.into(),
                };
            } else if flag(&c["ready"]) && present(&state["running"]) {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| s(&c["type"]) == "Ready" && s(&c["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    if present(&o["metadata"]["deletionTimestamp"]) {
        if s(&status["reason"]) == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".into();
        }
    }

    let restarts_cell = match restarts.last {
        Some(t) if restarts.count != 0 => format!(
            "{} ({} ago)",
            restarts.count,
            super::human_age((ctx.now - t).whole_seconds())
        ),
        _ => restarts.count.to_string(),
    };
    // v1's podIP wins over podIPs when both are set, as in upstream's conversion.
    let ip = match s(&status["podIP"]) {
        "" => s_or(&status["podIPs"][0]["ip"], "<none>"),
        ip => ip,
    };
    let gates = arr(&spec["readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let met = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| s(&c["type"]) == s(&g["conditionType"]))
                    .is_some_and(|c| s(&c["status"]) == "True")
            })
            .count();
        format!("{met}/{}", gates.len())
    };
    let mut row = Row::new(vec![
        name(o).into(),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        ctx.age(o).into(),
        ip.into(),
        s_or(&spec["nodeName"], "<none>").into(),
        s_or(&status["nominatedNodeName"], "<none>").into(),
        gates_cell.into(),
    ]);
    row.conditions = match phase {
        "Succeeded" => vec![
            json!({"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}),
        ],
        "Failed" => vec![
            json!({"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}),
        ],
        _ => Vec::new(),
    };
    row
}

/// PodTemplate: NAME, CONTAINERS, IMAGES, POD LABELS (no age).
pub(super) const POD_TEMPLATE: Printer = Printer {
    columns: &[
        NAME,
        Col::new(
            "Containers",
            "string",
            "Names of each container in the template.",
        ),
        Col::new(
            "Images",
            "string",
            "Images referenced by each container in the template.",
        ),
        Col::new("Pod Labels", "string", "The labels for the pod template."),
    ],
    row: pod_template,
};

fn pod_template(o: &Value, _: &Ctx) -> Row {
    let template = &o["template"];
    let (names, images) = containers(&template["spec"]);
    let labels = format_labels(&template["metadata"]["labels"]);
    Row::new(vec![
        name(o).into(),
        names.into(),
        images.into(),
        labels.into(),
    ])
}

/// Service: NAME, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), AGE; wide: SELECTOR.
pub(super) const SERVICE: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types"),
        Col::new("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"),
        Col::new("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system."),
        Col::new("Port(s)", "string", "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"),
        AGE,
        Col::new("Selector", "string", "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/").wide(),
    ],
    row: service,
};

fn service(o: &Value, ctx: &Ctx) -> Row {
    let spec = &o["spec"];
    let ty = s_or(&spec["type"], "ClusterIP");
    // v1's clusterIP wins over clusterIPs when both are set, as in upstream's conversion.
    let cluster_ip = match s(&spec["clusterIP"]) {
        "" => s_or(&spec["clusterIPs"][0], "<none>"),
        ip => ip,
    };
    let ports: Vec<String> = arr(&spec["ports"])
        .iter()
        .map(|p| {
            let protocol = s_or(&p["protocol"], "TCP");
            match int(&p["nodePort"]) {
                n if n > 0 => format!("{}:{n}/{protocol}", int(&p["port"])),
                _ => format!("{}/{protocol}", int(&p["port"])),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    };
    Row::new(vec![
        name(o).into(),
        ty.into(),
        cluster_ip.into(),
        service_external_ip(o, ty).into(),
        ports.into(),
        ctx.age(o).into(),
        format_labels(&spec["selector"]).into(),
    ])
}

/// The EXTERNAL-IP cell: external IPs, load-balancer ingress points (unclipped, as the server
/// prints wide), or the external name, by type.
fn service_external_ip(o: &Value, ty: &str) -> String {
    let external: Vec<&str> = arr(&o["spec"]["externalIPs"]).iter().map(s).collect();
    match ty {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = arr(&o["status"]["loadBalancer"]["ingress"])
                .iter()
                .map(|i| s_or(&i["ip"], s(&i["hostname"])))
                .filter(|a| !a.is_empty())
                .collect();
            let all: Vec<&str> = ingress.into_iter().chain(external).collect();
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(&o["spec"]["externalName"]).into(),
        _ => "<unknown>".into(),
    }
}

/// Endpoints: NAME, ENDPOINTS, AGE.
pub(super) const ENDPOINTS: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Endpoints", "string", "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service."),
        AGE,
    ],
    row: endpoints,
};

fn endpoints(o: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(o).into(),
        format_endpoints(arr(&o["subsets"])).into(),
        ctx.age(o).into(),
    ])
}

/// Up to three ready `ip:port` pairs (bare IPs for port-less subsets) and a "+ N more..." tail.
fn format_endpoints(subsets: &[Value]) -> String {
    const MAX: usize = 3;
    if subsets.is_empty() {
        return "<none>".into();
    }
    let (mut list, mut count, mut more) = (Vec::new(), 0, false);
    for ss in subsets {
        let addresses = arr(&ss["addresses"]);
        let ports = arr(&ss["ports"]);
        // Headless services may have no ports: each address counts once, bare.
        let port_numbers: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.iter().map(|p| Some(int(&p["port"]))).collect()
        };
        for port in port_numbers {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let ip = s(&a["ip"]);
                list.push(match port {
                    None => ip.to_string(),
                    Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
                    Some(p) => format!("{ip}:{p}"),
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// ConfigMap: NAME, DATA, AGE.
pub(super) const CONFIG_MAP: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process."),
        AGE,
    ],
    row: config_map,
};

fn config_map(o: &Value, ctx: &Ctx) -> Row {
    let keys = map_len(&o["data"]) + map_len(&o["binaryData"]);
    Row::new(vec![name(o).into(), keys.into(), ctx.age(o).into()])
}

/// Secret: NAME, TYPE, DATA, AGE.
pub(super) const SECRET: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Type", "string", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
        Col::new("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"),
        AGE,
    ],
    row: secret,
};

fn secret(o: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(o).into(),
        s_or(&o["type"], "Opaque").into(),
        map_len(&o["data"]).into(),
        ctx.age(o).into(),
    ])
}

/// ServiceAccount: NAME, SECRETS, AGE.
pub(super) const SERVICE_ACCOUNT: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret"),
        AGE,
    ],
    row: service_account,
};

fn service_account(o: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(o).into(),
        arr(&o["secrets"]).len().into(),
        ctx.age(o).into(),
    ])
}

/// Event columns: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE; wide: SUBOBJECT, SOURCE,
/// FIRST SEEN, COUNT, NAME (interleaved as upstream orders them).
const EVENT_COLUMNS: &[Col] = &[
    Col::new("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    Col::new("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    Col::new("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    Col::new("Object", "string", "The object that this event is about."),
    Col::new("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.").wide(),
    Col::new("Source", "string", "The component reporting this event. Should be a short machine understandable string.").wide(),
    Col::new("Message", "string", "A human-readable description of the status of this operation."),
    Col::new("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)").wide(),
    Col::new("Count", "string", "The number of times this event has occurred.").wide(),
    super::NAME.wide(),
];

/// Core Event.
pub(super) const EVENT: Printer = Printer {
    columns: EVENT_COLUMNS,
    row: event,
};

/// `events.k8s.io` Event: converted to a core Event, then printed as one.
pub(super) const EVENTS_V1_EVENT: Printer = Printer {
    columns: EVENT_COLUMNS,
    row: events_v1_event,
};

fn event(o: &Value, ctx: &Ctx) -> Row {
    let first = match parse_time(&o["firstTimestamp"]) {
        Some(_) => ctx.since(&o["firstTimestamp"]),
        None => ctx.since(&o["eventTime"]),
    };
    let mut last = match parse_time(&o["lastTimestamp"]) {
        Some(_) => ctx.since(&o["lastTimestamp"]),
        None => first.clone(),
    };
    let series = &o["series"];
    let count = if present(series) {
        last = ctx.since(&series["lastObservedTime"]);
        int(&series["count"])
    } else {
        // Singleton events of the new API carry no count.
        match int(&o["count"]) {
            0 => 1,
            n => n,
        }
    };
    let involved = &o["involvedObject"];
    let kind = s(&involved["kind"]).to_lowercase();
    let target = match s(&involved["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let component = s_or(&o["source"]["component"], s(&o["reportingComponent"]));
    let source = match s_or(&o["source"]["host"], s(&o["reportingInstance"])) {
        "" => component.to_string(),
        instance => format!("{component}, {instance}"),
    };
    Row::new(vec![
        last.into(),
        s(&o["type"]).into(),
        s(&o["reason"]).into(),
        target.into(),
        s(&involved["fieldPath"]).into(),
        source.into(),
        s(&o["message"]).trim().into(),
        first.into(),
        count.into(),
        name(o).into(),
    ])
}

fn events_v1_event(o: &Value, ctx: &Ctx) -> Row {
    let core = json!({
        "metadata": o["metadata"],
        "involvedObject": o["regarding"],
        "message": o["note"],
        "source": o["deprecatedSource"],
        "firstTimestamp": o["deprecatedFirstTimestamp"],
        "lastTimestamp": o["deprecatedLastTimestamp"],
        "count": o["deprecatedCount"],
        "series": o["series"],
        "eventTime": o["eventTime"],
        "reportingComponent": o["reportingController"],
        "reportingInstance": o["reportingInstance"],
        "type": o["type"],
        "reason": o["reason"],
    });
    event(&core, ctx)
}

/// PersistentVolume: NAME, CAPACITY, ACCESS MODES, RECLAIM POLICY, STATUS, CLAIM,
/// STORAGECLASS, VOLUMEATTRIBUTESCLASS, REASON, AGE; wide: VOLUMEMODE.
pub(super) const PERSISTENT_VOLUME: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
        Col::new("Access Modes", "string", "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"),
        Col::new("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
        Col::new("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
        Col::new("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
        Col::new("StorageClass", "string", "StorageClass of the pv"),
        Col::new("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
        Col::new("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
        AGE,
        Col::new("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.").wide(),
    ],
    row: persistent_volume,
};

/// The beta annotation that, when present, names a volume's or claim's storage class.
const STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn persistent_volume(o: &Value, ctx: &Ctx) -> Row {
    let (spec, status) = (&o["spec"], &o["status"]);
    let claim = match &spec["claimRef"] {
        Value::Null => String::new(),
        c => format!("{}/{}", s(&c["namespace"]), s(&c["name"])),
    };
    let class = match &o["metadata"]["annotations"][STORAGE_CLASS_ANNOTATION] {
        Value::String(c) => c.as_str(),
        _ => s(&spec["storageClassName"]),
    };
    Row::new(vec![
        name(o).into(),
        quantity(&spec["capacity"]["storage"]).into(),
        access_modes(&spec["accessModes"]).into(),
        s_or(&spec["persistentVolumeReclaimPolicy"], "Retain").into(),
        volume_phase(o, &status["phase"]).into(),
        claim.into(),
        class.into(),
        s_or(&spec["volumeAttributesClassName"], "<unset>").into(),
        s(&status["reason"]).into(),
        ctx.age(o).into(),
        s_or(&spec["volumeMode"], "Filesystem").into(),
    ])
}

/// A volume's or claim's phase, "Terminating" once deletion has begun.
fn volume_phase<'a>(o: &Value, phase: &'a Value) -> &'a str {
    if present(&o["metadata"]["deletionTimestamp"]) {
        "Terminating"
    } else {
        s_or(phase, "Pending")
    }
}

/// Access modes abbreviated, deduplicated and in upstream's fixed order.
fn access_modes(modes: &Value) -> String {
    let modes: Vec<&str> = arr(modes).iter().map(s).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| modes.contains(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// PersistentVolumeClaim: NAME, STATUS, VOLUME, CAPACITY, ACCESS MODES, STORAGECLASS,
/// VOLUMEATTRIBUTESCLASS, AGE; wide: VOLUMEMODE.
pub(super) const PERSISTENT_VOLUME_CLAIM: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
        Col::new("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
        Col::new("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
        Col::new("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
        Col::new("StorageClass", "string", "StorageClass of the pvc"),
        Col::new("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
        AGE,
        Col::new("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.").wide(),
    ],
    row: persistent_volume_claim,
};

fn persistent_volume_claim(o: &Value, ctx: &Ctx) -> Row {
    let (spec, status) = (&o["spec"], &o["status"]);
    let volume = s(&spec["volumeName"]);
    // Capacity and modes are the bound volume's, so blank until bound.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(&status["capacity"]["storage"]),
            access_modes(&status["accessModes"]),
        )
    };
    let class = match &o["metadata"]["annotations"][STORAGE_CLASS_ANNOTATION] {
        Value::String(c) => c.as_str(),
        _ => s(&spec["storageClassName"]),
    };
    Row::new(vec![
        name(o).into(),
        volume_phase(o, &status["phase"]).into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        class.into(),
        s_or(&spec["volumeAttributesClassName"], "<unset>").into(),
        ctx.age(o).into(),
        s_or(&spec["volumeMode"], "Filesystem").into(),
    ])
}

/// ResourceQuota: NAME, REQUEST, LIMIT, AGE.
pub(super) const RESOURCE_QUOTA: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
        Col::new("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        AGE,
    ],
    row: resource_quota,
};

fn resource_quota(o: &Value, ctx: &Ctx) -> Row {
    let status = &o["status"];
    let mut hard: Vec<(&String, &Value)> =
        status["hard"].as_object().into_iter().flatten().collect();
    hard.sort_by(|a, b| a.0.cmp(b.0));
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (resource, hard_quantity) in hard {
        let used = quantity(&status["used"][resource.as_str()]);
        let entry = format!("{resource}: {used}/{}", quantity(hard_quantity));
        let mut pieces = resource.split('.');
        match (pieces.next(), pieces.next()) {
            (Some("limits"), Some(_)) => limits.push(entry),
            _ => requests.push(entry),
        }
    }
    Row::new(vec![
        name(o).into(),
        requests.join(", ").into(),
        limits.join(", ").into(),
        ctx.age(o).into(),
    ])
}
