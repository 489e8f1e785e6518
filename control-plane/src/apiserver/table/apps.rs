//! Printers for `apps/v1`: Deployment, ReplicaSet, DaemonSet, StatefulSet, ControllerRevision.
//! A missing `spec.replicas` reads as 1, the API's default.

use super::cells::selector_string;
use super::cells::{arr, containers, flag, format_labels, format_selector, int, name, s};
use super::{Col, Ctx, Printer, Row, AGE, CONTAINERS, IMAGES, NAME};
use serde_json::Value;

/// `spec.replicas`, defaulted to 1 when unset.
fn desired_replicas(o: &Value) -> i64 {
    match &o["spec"]["replicas"] {
        Value::Null => 1,
        r => int(r),
    }
}

/// Deployment: NAME, READY, UP-TO-DATE, AVAILABLE, AGE; wide: CONTAINERS, IMAGES, SELECTOR.
pub(super) const DEPLOYMENT: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Ready", "string", "Number of the pod with ready state"),
        Col::new("Up-to-date", "string", "Total number of non-terminating pods targeted by this deployment that have the desired template spec."),
        Col::new("Available", "string", "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment."),
        AGE,
        CONTAINERS,
        IMAGES,
        Col::new("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.").wide(),
    ],
    row: deployment,
};

fn deployment(o: &Value, ctx: &Ctx) -> Row {
    let status = &o["status"];
    let (names, images) = containers(&o["spec"]["template"]["spec"]);
    // Unlike the other workloads, an empty selector prints as "" here, not "<none>".
    let selector = selector_string(&o["spec"]["selector"]).unwrap_or_else(|| "<invalid>".into());
    Row::new(vec![
        name(o).into(),
        format!("{}/{}", int(&status["readyReplicas"]), desired_replicas(o)).into(),
        int(&status["updatedReplicas"]).into(),
        int(&status["availableReplicas"]).into(),
        ctx.age(o).into(),
        names.into(),
        images.into(),
        selector.into(),
    ])
}

/// ReplicaSet: NAME, DESIRED, CURRENT, READY, AGE; wide: CONTAINERS, IMAGES, SELECTOR.
pub(super) const REPLICA_SET: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Desired", "integer", "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
        Col::new("Current", "integer", "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"),
        Col::new("Ready", "integer", "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
        AGE,
        CONTAINERS,
        IMAGES,
        Col::new("Selector", "string", "Selector is a label query over pods that should match the replica count. If the selector is empty, it is defaulted to the labels present on the pod template. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
    ],
    row: replica_set,
};

fn replica_set(o: &Value, ctx: &Ctx) -> Row {
    let status = &o["status"];
    let (names, images) = containers(&o["spec"]["template"]["spec"]);
    Row::new(vec![
        name(o).into(),
        desired_replicas(o).into(),
        int(&status["replicas"]).into(),
        int(&status["readyReplicas"]).into(),
        ctx.age(o).into(),
        names.into(),
        images.into(),
        format_selector(&o["spec"]["selector"]).into(),
    ])
}

/// DaemonSet: NAME, DESIRED, CURRENT, READY, UP-TO-DATE, AVAILABLE, NODE SELECTOR, AGE; wide:
/// CONTAINERS, IMAGES, SELECTOR.
pub(super) const DAEMON_SET: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
        Col::new("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
        Col::new("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
        Col::new("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
        Col::new("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
        Col::new("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
        AGE,
        CONTAINERS,
        IMAGES,
        Col::new("Selector", "string", "A label query over pods that are managed by the daemon set. Must match in order to be controlled. If empty, defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
    ],
    row: daemon_set,
};

fn daemon_set(o: &Value, ctx: &Ctx) -> Row {
    let status = &o["status"];
    let pod_spec = &o["spec"]["template"]["spec"];
    let (names, images) = containers(pod_spec);
    Row::new(vec![
        name(o).into(),
        int(&status["desiredNumberScheduled"]).into(),
        int(&status["currentNumberScheduled"]).into(),
        int(&status["numberReady"]).into(),
        int(&status["updatedNumberScheduled"]).into(),
        int(&status["numberAvailable"]).into(),
        format_labels(&pod_spec["nodeSelector"]).into(),
        ctx.age(o).into(),
        names.into(),
        images.into(),
        format_selector(&o["spec"]["selector"]).into(),
    ])
}

/// StatefulSet: NAME, READY, AGE; wide: CONTAINERS, IMAGES.
pub(super) const STATEFUL_SET: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Ready", "string", "Number of the pod with ready state"),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    row: stateful_set,
};

fn stateful_set(o: &Value, ctx: &Ctx) -> Row {
    let (names, images) = containers(&o["spec"]["template"]["spec"]);
    Row::new(vec![
        name(o).into(),
        format!(
            "{}/{}",
            int(&o["status"]["readyReplicas"]),
            desired_replicas(o)
        )
        .into(),
        ctx.age(o).into(),
        names.into(),
        images.into(),
    ])
}

/// ControllerRevision: NAME, CONTROLLER, REVISION, AGE.
pub(super) const CONTROLLER_REVISION: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Controller", "string", "Controller of the object"),
        Col::new(
            "Revision",
            "string",
            "revision indicates the revision of the state represented by Data.",
        ),
        AGE,
    ],
    row: controller_revision,
};

fn controller_revision(o: &Value, ctx: &Ctx) -> Row {
    let owner = arr(&o["metadata"]["ownerReferences"])
        .iter()
        .find(|r| flag(&r["controller"]));
    let controller = match owner {
        None => "<none>".to_string(),
        Some(r) => {
            // "kind.group/name", lowercased, e.g. "statefulset.apps/web"; core kinds have no group.
            let group = match s(&r["apiVersion"]).split_once('/') {
                Some((group, _)) => group,
                None => "",
            };
            match (s(&r["kind"]), group) {
                ("", "") => s(&r["name"]).to_string(),
                (kind, "") => format!("{}/{}", kind.to_lowercase(), s(&r["name"])),
                (kind, group) => {
                    format!(
                        "{}/{}",
                        format!("{kind}.{group}").to_lowercase(),
                        s(&r["name"])
                    )
                }
            }
        }
    };
    Row::new(vec![
        name(o).into(),
        controller.into(),
        int(&o["revision"]).into(),
        ctx.age(o).into(),
    ])
}
