//! Printers for the groups with one printed kind each: `coordination.k8s.io` Lease,
//! `discovery.k8s.io` EndpointSlice, `networking.k8s.io` NetworkPolicy,
//! `policy` PodDisruptionBudget, `scheduling.k8s.io` PriorityClass and `storage.k8s.io`
//! StorageClass.

use super::cells::{arr, flag, format_selector, int, list_with_more, name, s, s_or};
use super::{Col, Ctx, Printer, Row, AGE, NAME};
use serde_json::{json, Value};

/// Lease: NAME, HOLDER, AGE.
pub(super) const LEASE: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Holder", "string", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."),
        AGE,
    ],
    row: lease,
};

fn lease(o: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(o).into(),
        s(&o["spec"]["holderIdentity"]).into(),
        ctx.age(o).into(),
    ])
}

/// EndpointSlice: NAME, ADDRESSTYPE, PORTS, ENDPOINTS, AGE.
pub(super) const ENDPOINT_SLICE: Printer = Printer {
    columns: &[
        NAME,
        Col::new("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name."),
        Col::new("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. When ports is empty, it indicates that there are no defined ports. When a port is defined with a nil port value, it indicates \"all ports\". Each slice may include a maximum of 100 ports."),
        Col::new("Endpoints", "string", "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints."),
        AGE,
    ],
    row: endpoint_slice,
};

fn endpoint_slice(o: &Value, ctx: &Ctx) -> Row {
    // A port without a number means all ports: its name stands in, or "*".
    let ports = arr(&o["ports"])
        .iter()
        .map(|p| match (&p["port"], &p["name"]) {
            (Value::Null, Value::String(n)) => n.clone(),
            (Value::Null, _) => "*".to_string(),
            (port, _) => int(port).to_string(),
        });
    let addresses = arr(&o["endpoints"])
        .iter()
        .flat_map(|e| arr(&e["addresses"]))
        .map(|a| s(a).to_string());
    Row::new(vec![
        name(o).into(),
        s(&o["addressType"]).into(),
        list_with_more(ports).into(),
        list_with_more(addresses).into(),
        ctx.age(o).into(),
    ])
}

/// NetworkPolicy: NAME, POD-SELECTOR, AGE.
pub(super) const NETWORK_POLICY: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Pod-Selector", "string", "Selects the pods to which this NetworkPolicy object applies.  The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods.  In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace."),
        AGE,
    ],
    row: network_policy,
};

fn network_policy(o: &Value, ctx: &Ctx) -> Row {
    // The pod selector is a struct upstream, never nil: unset selects everything.
    let selector = match &o["spec"]["podSelector"] {
        Value::Null => format_selector(&json!({})),
        sel => format_selector(sel),
    };
    Row::new(vec![name(o).into(), selector.into(), ctx.age(o).into()])
}

/// PriorityClass: NAME, VALUE, GLOBAL-DEFAULT, AGE, PREEMPTIONPOLICY (upstream marks none wide).
pub(super) const PRIORITY_CLASS: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Value", "integer", "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
        Col::new("Global-Default", "boolean", "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority."),
        AGE,
        Col::new("PreemptionPolicy", "string", "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."),
    ],
    row: priority_class,
};

fn priority_class(o: &Value, ctx: &Ctx) -> Row {
    Row::new(vec![
        name(o).into(),
        int(&o["value"]).into(),
        flag(&o["globalDefault"]).into(),
        ctx.age(o).into(),
        s_or(&o["preemptionPolicy"], "PreemptLowerPriority").into(),
    ])
}

/// StorageClass: NAME (marked `(default)`), PROVISIONER, RECLAIMPOLICY, VOLUMEBINDINGMODE,
/// ALLOWVOLUMEEXPANSION, AGE.
pub(super) const STORAGE_CLASS: Printer = Printer {
    columns: &[
        NAME,
        Col::new(
            "Provisioner",
            "string",
            "Indicates the type of the provisioner.",
        ),
        Col::new(
            "ReclaimPolicy",
            "string",
            "Indicates the type of the reclaim policy.",
        ),
        Col::new(
            "VolumeBindingMode",
            "string",
            "Indicates the mode of the volume binding.",
        ),
        Col::new(
            "AllowVolumeExpansion",
            "string",
            "Indicates whether the storage class allow volume expand.",
        ),
        AGE,
    ],
    row: storage_class,
};

/// The annotations that make a StorageClass the default one.
const DEFAULT_CLASS_ANNOTATIONS: &[&str] = &[
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
];

fn storage_class(o: &Value, ctx: &Ctx) -> Row {
    let annotations = &o["metadata"]["annotations"];
    let default = DEFAULT_CLASS_ANNOTATIONS
        .iter()
        .any(|a| annotations[*a].as_str() == Some("true"));
    let mut shown = name(o).to_string();
    if default {
        shown.push_str(" (default)");
    }
    Row::new(vec![
        shown.into(),
        s(&o["provisioner"]).into(),
        s_or(&o["reclaimPolicy"], "Delete").into(),
        s_or(&o["volumeBindingMode"], "Immediate").into(),
        json!(o["allowVolumeExpansion"].as_bool().unwrap_or(false)),
        ctx.age(o).into(),
    ])
}

/// PodDisruptionBudget: NAME, MIN AVAILABLE, MAX UNAVAILABLE, ALLOWED DISRUPTIONS, AGE.
pub(super) const POD_DISRUPTION_BUDGET: Printer = Printer {
    columns: &[
        NAME,
        Col::new(
            "Min Available",
            "string",
            "The minimum number of pods that must be available.",
        ),
        Col::new(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable.",
        ),
        Col::new(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        AGE,
    ],
    row: pod_disruption_budget,
};

fn pod_disruption_budget(o: &Value, ctx: &Ctx) -> Row {
    // An int-or-string as upstream's `IntOrString.String()`; unset is "N/A".
    let shown = |v: &Value| match v {
        Value::Null => "N/A".to_string(),
        Value::String(text) => text.clone(),
        other => int(other).to_string(),
    };
    Row::new(vec![
        name(o).into(),
        shown(&o["spec"]["minAvailable"]).into(),
        shown(&o["spec"]["maxUnavailable"]).into(),
        json!(int(&o["status"]["disruptionsAllowed"])),
        ctx.age(o).into(),
    ])
}
