//! `meta.k8s.io/v1` Table responses, which `kubectl get` asks for and prints as they come, with
//! upstream's columns for each kind.
//!
//! Upstream renders these with the printers in kubernetes `pkg/printers/internalversion`
//! (v1.33), always with the wide columns included (kubectl hides priority-1 columns unless
//! `-o wide`). Kinds without a printer get apiserver's default convertor: NAME and CREATED AT.
//!
//! Layout: this file holds the public API, column plumbing and the default table; the printers
//! live one module per API group (`corev1`, `apps`, `batch`, `rbac`, and `misc` for the groups
//! with a single printer each); `cells` formats values shared between printers and `quantity`
//! spells resource quantities canonically.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

mod apps;
mod batch;
mod cells;
mod corev1;
mod misc;
mod quantity;
mod rbac;
#[cfg(test)]
mod tests;

/// Age the way kubectl shows it (upstream's `duration.HumanDuration`), from whole seconds.
pub fn human_age(secs: i64) -> String {
    // Upstream tolerates up to a second of clock skew before calling a time invalid.
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if h < 192 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ if d < 365 * 2 => format!("{d}d"),
        _ if d < 365 * 8 => match d % 365 {
            0 => format!("{}y", d / 365),
            r => format!("{}y{r}d", d / 365),
        },
        _ => format!("{}y", d / 365),
    }
}

/// The Table kubectl prints for these objects of `kind` in API group `group` ("" = core): the
/// kind's upstream columns (priority 1 = `-o wide` extras), one row per item. Each row carries
/// a PartialObjectMetadata of its item, the whole item when `include_object` is "Object"
/// (`?includeObject=Object`), or nothing when it is "None". `resource_version` and
/// `continue_token` become the Table's list metadata.
pub fn table(
    group: &str,
    kind: &str,
    items: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    include_object: &str,
) -> Value {
    let now = OffsetDateTime::now_utc();
    table_at(
        now,
        group,
        kind,
        items,
        resource_version,
        continue_token,
        include_object,
    )
}

/// [`table`] with the clock passed in, so ages are reproducible in tests.
fn table_at(
    now: OffsetDateTime,
    group: &str,
    kind: &str,
    items: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    include_object: &str,
) -> Value {
    let ctx = Ctx { now };
    let (columns, rows): (&[Col], Vec<Row>) = match printer(group, kind) {
        Some(p) => (p.columns, items.iter().map(|o| (p.row)(o, &ctx)).collect()),
        None => (DEFAULT_COLUMNS, items.iter().map(default_row).collect()),
    };
    let rows: Vec<Value> = rows
        .into_iter()
        .zip(items)
        .map(|(row, item)| row.into_json(item, include_object))
        .collect();
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), resource_version.into());
    if let Some(token) = continue_token.filter(|t| !t.is_empty()) {
        metadata.insert("continue".into(), token.into());
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
        "rows": rows,
    })
}

/// The printer upstream registers for this group and kind, if any.
fn printer(group: &str, kind: &str) -> Option<Printer> {
    let p = match (group, kind) {
        ("", "Namespace") => corev1::NAMESPACE,
        ("", "Node") => corev1::NODE,
        ("", "Pod") => corev1::POD,
        ("", "PodTemplate") => corev1::POD_TEMPLATE,
        ("", "Service") => corev1::SERVICE,
        ("", "Endpoints") => corev1::ENDPOINTS,
        ("", "ConfigMap") => corev1::CONFIG_MAP,
        ("", "Secret") => corev1::SECRET,
        ("", "ServiceAccount") => corev1::SERVICE_ACCOUNT,
        ("", "Event") => corev1::EVENT,
        ("events.k8s.io", "Event") => corev1::EVENTS_V1_EVENT,
        ("", "PersistentVolume") => corev1::PERSISTENT_VOLUME,
        ("", "PersistentVolumeClaim") => corev1::PERSISTENT_VOLUME_CLAIM,
        ("", "ResourceQuota") => corev1::RESOURCE_QUOTA,
        ("apps", "Deployment") => apps::DEPLOYMENT,
        ("apps", "ReplicaSet") => apps::REPLICA_SET,
        ("apps", "DaemonSet") => apps::DAEMON_SET,
        ("apps", "StatefulSet") => apps::STATEFUL_SET,
        ("apps", "ControllerRevision") => apps::CONTROLLER_REVISION,
        ("batch", "Job") => batch::JOB,
        ("batch", "CronJob") => batch::CRON_JOB,
        ("rbac.authorization.k8s.io", "RoleBinding") => rbac::ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => rbac::CLUSTER_ROLE_BINDING,
        ("coordination.k8s.io", "Lease") => misc::LEASE,
        ("discovery.k8s.io", "EndpointSlice") => misc::ENDPOINT_SLICE,
        ("networking.k8s.io", "NetworkPolicy") => misc::NETWORK_POLICY,
        ("scheduling.k8s.io", "PriorityClass") => misc::PRIORITY_CLASS,
        ("policy", "PodDisruptionBudget") => misc::POD_DISRUPTION_BUDGET,
        ("storage.k8s.io", "StorageClass") => misc::STORAGE_CLASS,
        // LimitRange, Role, ClusterRole and everything else: the default table.
        _ => return None,
    };
    Some(p)
}

/// Columns of apiserver's default table convertor, for kinds without a printer.
const DEFAULT_COLUMNS: &[Col] = &[NAME, Col::new("Created At", "date", CREATION_TIMESTAMP_DOC)];

/// A default-table row: the name and the creation time as RFC 3339 in UTC, whole seconds,
/// which is what Go prints for a zero time too.
fn default_row(obj: &Value) -> Row {
    let stamp = match cells::parse_time(&obj["metadata"]["creationTimestamp"]) {
        Some(t) => super::defaults::format_time(t, false),
        None => "0001-01-01T00:00:00Z".into(),
    };
    Row::new(vec![cells::name(obj).into(), stamp.into()])
}

/// `ObjectMeta.name`'s description, which every Name column carries.
const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `ObjectMeta.creationTimestamp`'s description, which every Age column carries.
const CREATION_TIMESTAMP_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The Name column every printer starts with.
const NAME: Col = Col {
    name: "Name",
    ty: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
};

/// The Age column most printers carry.
const AGE: Col = Col::new("Age", "string", CREATION_TIMESTAMP_DOC);

/// The wide Containers column of workload printers.
const CONTAINERS: Col = Col::new(
    "Containers",
    "string",
    "Names of each container in the template.",
)
.wide();

/// The wide Images column of workload printers.
const IMAGES: Col = Col::new(
    "Images",
    "string",
    "Images referenced by each container in the template.",
)
.wide();

/// One column definition, as upstream declares it.
#[derive(Clone, Copy)]
struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

impl Col {
    /// A column shown by default.
    const fn new(name: &'static str, ty: &'static str, description: &'static str) -> Col {
        Col {
            name,
            ty,
            format: "",
            description,
            priority: 0,
        }
    }

    /// The same column, shown only with `-o wide`.
    const fn wide(self) -> Col {
        Col {
            priority: 1,
            ..self
        }
    }

    /// The column's TableColumnDefinition.
    fn to_json(self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// How one kind prints: its columns, and the row of one object.
#[derive(Clone, Copy)]
struct Printer {
    columns: &'static [Col],
    row: fn(&Value, &Ctx) -> Row,
}

/// What every printer needs besides the object: the time ages are measured to.
struct Ctx {
    now: OffsetDateTime,
}

impl Ctx {
    /// Upstream's `translateTimestampSince`: the age of a timestamp, "<unknown>" when unset.
    fn since(&self, stamp: &Value) -> String {
        match cells::parse_time(stamp) {
            Some(t) => human_age((self.now - t).whole_seconds()),
            None => "<unknown>".into(),
        }
    }

    /// The object's age from its creationTimestamp.
    fn age(&self, obj: &Value) -> String {
        self.since(&obj["metadata"]["creationTimestamp"])
    }
}

/// One row's cells, plus the row conditions upstream sets (only pods have any).
struct Row {
    cells: Vec<Value>,
    conditions: Vec<Value>,
}

impl Row {
    /// A row without conditions.
    fn new(cells: Vec<Value>) -> Row {
        Row {
            cells,
            conditions: Vec::new(),
        }
    }

    /// The TableRow, carrying `item` as `include_object` asks.
    fn into_json(self, item: &Value, include_object: &str) -> Value {
        let mut row = Map::new();
        row.insert("cells".into(), Value::Array(self.cells));
        if !self.conditions.is_empty() {
            row.insert("conditions".into(), Value::Array(self.conditions));
        }
        let object = match include_object {
            "None" => None,
            "Object" => Some(item.clone()),
            _ => Some(json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": match &item["metadata"] {
                    Value::Null => json!({}),
                    m => m.clone(),
                },
            })),
        };
        if let Some(object) = object {
            row.insert("object".into(), object);
        }
        Value::Object(row)
    }
}
