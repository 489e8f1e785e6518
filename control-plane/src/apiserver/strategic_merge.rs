//! Server-side application of Kubernetes strategic merge patches
//! (`application/strategic-merge-patch+json`).
//!
//! This follows `k8s.io/apimachinery/pkg/util/strategicpatch` as of
//! Kubernetes v1.33 (`StrategicMergePatch` with the server-side options: the
//! parallel `$setElementOrder` / `$deleteFromPrimitiveList` lists are applied
//! and `null`s without a counterpart are dropped):
//!
//! * maps merge recursively and a `null` value deletes a field;
//! * lists without a patch strategy are replaced wholesale;
//! * lists with `patchStrategy:"merge"` merge element-wise, by
//!   `patchMergeKey` for lists of objects and as a set union for lists of
//!   primitives;
//! * the directives `$patch` (`replace`, `delete`, `merge`), `$retainKeys`,
//!   `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>` are
//!   honoured and never stored.
//!
//! Upstream reads the patch strategies from the Go struct tags of the API
//! types. Those tags are transcribed here into a small static table
//! ([`TYPES`]) that lists, per type, only the fields that carry a strategy or
//! lead to a type that does; everything else behaves like a field without
//! strategy. Kinds without an entry in [`KINDS`] (custom resources above all)
//! are refused with [`PatchError::UnsupportedKind`], as kube-apiserver answers
//! 415 for strategic merge patches on custom resources.
//!
//! List order follows upstream exactly, including its quirks: without
//! `$setElementOrder`, patch items keep the patch's order and are interleaved
//! with the server-only items by their old positions, so an item new to the
//! list lands *before* the server-only items that follow (what kustomize calls
//! "prepend").
//!
//! Where upstream relies on the Go decoder to clean up after it, this module
//! does the cleaning itself, which makes a few corner cases differ on purpose:
//! values with nothing to merge with are stored without `null` fields and
//! without directives (a map carrying `$patch: replace` is kept, not dropped);
//! `$patch: merge` is accepted as the default it names (upstream errors);
//! fields the table does not know merge like fields without a strategy
//! (upstream errors); numbers are one element type whether integral or not.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

/// Deepest nesting of patch maps and lists that is processed; deeper patches
/// are refused instead of risking the stack.
const MAX_DEPTH: usize = 100;

/// Longest rendering of a JSON value that is quoted in an error message.
const MAX_SHOWN: usize = 512;

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";

const GO_MAP: &str = "map[string]interface {}";
const GO_LIST: &str = "[]interface {}";

/// Why a patch could not be applied; Display is the message the API returns
/// (400 for malformed patches, upstream's texts where practical).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// No patch schema is known for the kind (custom resources, unknown
    /// kinds): the API answers 415 like kube-apiserver does for CRDs.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )]
    UnsupportedKind {
        /// API group of the refused object ("" for core).
        group: String,
        /// Kind of the refused object.
        kind: String,
    },
    /// The original object or the patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A list contains lists, which strategic merge patch cannot merge.
    #[error("lists of lists are not supported")]
    NoListOfLists,
    /// The elements of a merged list (original and patch together) differ in
    /// JSON type.
    #[error("list element types are not identical: {0}")]
    MixedListTypes(String),
    /// A `$deleteFromPrimitiveList` directive is malformed.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    /// A `$retainKeys` directive is not a list, or the patch sets a field the
    /// list does not retain.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    /// A `$setElementOrder` directive key is malformed.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    /// The patch list orders its items differently from its
    /// `$setElementOrder` list, or holds items that list lacks.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch {
        /// The patch list, as JSON.
        patch: String,
        /// The `$setElementOrder` list, as JSON.
        order: String,
    },
    /// An element of a list merged by key lacks the merge key.
    #[error("map: {item} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The offending element, as JSON.
        item: String,
        /// The merge key it lacks.
        key: String,
    },
    /// A `$patch` directive has a value other than replace, delete or merge.
    #[error("unknown patch type: {directive} in map: {item}")]
    UnknownDirective {
        /// The directive's value, as JSON.
        directive: String,
        /// The map that carried it, as JSON.
        item: String,
    },
    /// A list of objects is to be merged but its field declares no merge key.
    #[error("cannot merge lists without merge key for {0}")]
    NoMergeKeyForList(String),
    /// A value has the wrong JSON type for its place in the patch; the types
    /// are named as Go prints them, like upstream's message.
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// The type that was required.
        expected: &'static str,
        /// The type that was found.
        actual: &'static str,
    },
    /// The patch nests maps and lists deeper than [`MAX_DEPTH`] levels.
    #[error("the patch is nested deeper than {0} levels")]
    TooDeep(usize),
}

impl PatchError {
    /// HTTP status for the API response, as kube-apiserver picks it: 415 when
    /// the kind has no schema, 422 for lists of lists, 400 for everything
    /// else (all of which are malformed patches).
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::UnsupportedKind { .. } => 415,
            PatchError::NoListOfLists => 422,
            _ => 400,
        }
    }
}

/// Applies `patch` to `original` (both whole objects) for an object of `kind`
/// in API group `group` ("" for core).
pub fn apply(
    group: &str,
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let root = kind_root(group, kind).ok_or_else(|| PatchError::UnsupportedKind {
        group: group.to_owned(),
        kind: kind.to_owned(),
    })?;
    apply_with_schema(TYPES, root, original, patch)
}

fn apply_with_schema(
    table: &'static TypeTable,
    root: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        return Err(PatchError::BadJsonDoc);
    };
    let merged = merge_map(
        original.clone(),
        patch.clone(),
        Schema::named(table, root),
        0,
    )?;
    Ok(Value::Object(merged))
}

/// How strategic merge patch treats a list field. Server-side apply
/// (`managed_fields`) derives its list types from this, so the API's merge
/// keys are transcribed in one place only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListMerge {
    /// No merge strategy: the list is replaced as a whole.
    Replace,
    /// Merge strategy without a merge key: a set of primitives.
    Set,
    /// Merge strategy with this merge key: items are matched by it.
    Keyed(&'static str),
}

/// The strategy of the list field at `path` (field names from the root of the
/// kind's object; list items add no name, a list's items having the field's
/// type), or `None` when [`apply`] has no schema for the kind. Fields the
/// table does not describe are [`ListMerge::Replace`], as in [`apply`].
pub fn list_merge(group: &str, kind: &str, path: &[&str]) -> Option<ListMerge> {
    let root = kind_root(group, kind)?;
    let mut schema = Schema::named(TYPES, root);
    let mut last = None;
    for name in path {
        let meta = schema.field(name);
        schema = meta.schema;
        last = Some(meta);
    }
    Some(match last {
        Some(meta) if meta.strategy.merges_lists() && meta.key.is_empty() => ListMerge::Set,
        Some(meta) if meta.strategy.merges_lists() => ListMerge::Keyed(meta.key),
        _ => ListMerge::Replace,
    })
}

// ---------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------

/// The `patchStrategy` tag of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    /// No tag: lists are replaced, maps merged.
    None,
    /// `merge`: lists are merged (by key for objects, as a set for primitives).
    Merge,
    /// `replace`: the value is replaced, even for maps.
    Replace,
    /// `retainKeys`: clients send `$retainKeys`; merged otherwise.
    RetainKeys,
    /// `merge,retainKeys`: a merged list whose items carry `$retainKeys`.
    MergeRetainKeys,
}

impl Strategy {
    fn merges_lists(self) -> bool {
        matches!(self, Strategy::Merge | Strategy::MergeRetainKeys)
    }
}

/// One field of a type in the table: its JSON name, the table name of its
/// (element) type if that type has fields of interest ("" otherwise), its
/// strategy and its merge key ("" when none).
#[derive(Debug)]
struct Field {
    name: &'static str,
    ty: &'static str,
    strategy: Strategy,
    key: &'static str,
}

type TypeTable = [(&'static str, &'static [Field])];

/// A field leading to a type of the table, without a strategy of its own.
const fn t(name: &'static str, ty: &'static str) -> Field {
    Field {
        name,
        ty,
        strategy: Strategy::None,
        key: "",
    }
}

/// A field with a strategy but no merge key.
const fn s(name: &'static str, ty: &'static str, strategy: Strategy) -> Field {
    Field {
        name,
        ty,
        strategy,
        key: "",
    }
}

/// A list field with a strategy and a merge key.
const fn m(name: &'static str, ty: &'static str, strategy: Strategy, key: &'static str) -> Field {
    Field {
        name,
        ty,
        strategy,
        key,
    }
}

const MERGE: Strategy = Strategy::Merge;
const REPLACE: Strategy = Strategy::Replace;
const RETAIN: Strategy = Strategy::RetainKeys;
const MERGE_RETAIN: Strategy = Strategy::MergeRetainKeys;

/// The Go struct tags of k8s.io/api and k8s.io/apimachinery v0.33, reduced to
/// the fields that matter for strategic merge patch. Types with the same
/// relevant shape share an entry (their Go names are given in comments).
static TYPES: &TypeTable = &[
    // meta/v1
    (
        "ObjectMeta",
        &[
            m("ownerReferences", "", MERGE, "uid"),
            s("finalizers", "", MERGE),
        ],
    ),
    // Any object whose only merge points are in its ObjectMeta.
    ("MetaOnly", &[t("metadata", "ObjectMeta")]),
    // Status types whose only merge point is `conditions` keyed by type:
    // Deployment/ReplicaSet/DaemonSet/StatefulSet/Job/ReplicationController,
    // Service, Namespace, PersistentVolumeClaim, PodDisruptionBudget,
    // ServiceCIDR, FlowSchema, PriorityLevelConfiguration and
    // HorizontalPodAutoscaler (v2) statuses.
    ("ConditionsStatus", &[m("conditions", "", MERGE, "type")]),
    (
        "MetaAndConditions",
        &[t("metadata", "ObjectMeta"), t("status", "ConditionsStatus")],
    ),
    // core/v1 Pod and everything reachable from a pod template.
    (
        "Pod",
        &[
            t("metadata", "ObjectMeta"),
            t("spec", "PodSpec"),
            t("status", "PodStatus"),
        ],
    ),
    (
        "PodSpec",
        &[
            m("volumes", "Volume", MERGE_RETAIN, "name"),
            m("initContainers", "Container", MERGE, "name"),
            m("containers", "Container", MERGE, "name"),
            m("ephemeralContainers", "Container", MERGE, "name"),
            m("imagePullSecrets", "", MERGE, "name"),
            m("hostAliases", "", MERGE, "ip"),
            m("topologySpreadConstraints", "", MERGE, "topologyKey"),
            m("schedulingGates", "", MERGE, "name"),
            m("resourceClaims", "", MERGE_RETAIN, "name"),
        ],
    ),
    // Volume (VolumeSource inlined) -> EphemeralVolumeSource.
    ("Volume", &[t("ephemeral", "EphemeralVolumeSource")]),
    // PersistentVolumeClaimTemplate has only ObjectMeta of interest.
    (
        "EphemeralVolumeSource",
        &[t("volumeClaimTemplate", "MetaOnly")],
    ),
    // Container and EphemeralContainer (EphemeralContainerCommon inlined).
    // resizePolicy, resources.claims and lifecycle lists are atomic.
    (
        "Container",
        &[
            m("ports", "", MERGE, "containerPort"),
            m("env", "", MERGE, "name"),
            m("volumeMounts", "", MERGE, "mountPath"),
            m("volumeDevices", "", MERGE, "devicePath"),
        ],
    ),
    // Container statuses are atomic lists, so their nested merge points never
    // come into play.
    (
        "PodStatus",
        &[
            m("conditions", "", MERGE, "type"),
            m("hostIPs", "", MERGE, "ip"),
            m("podIPs", "", MERGE, "ip"),
            m("resourceClaimStatuses", "", MERGE_RETAIN, "name"),
        ],
    ),
    (
        "PodTemplate",
        &[
            t("metadata", "ObjectMeta"),
            t("template", "PodTemplateSpec"),
        ],
    ),
    (
        "PodTemplateSpec",
        &[t("metadata", "ObjectMeta"), t("spec", "PodSpec")],
    ),
    // Controllers whose spec holds a pod template under `template`:
    // ReplicationController, apps/v1 ReplicaSet, DaemonSet, StatefulSet
    // (volumeClaimTemplates is atomic) and batch/v1 Job.
    (
        "Workload",
        &[
            t("metadata", "ObjectMeta"),
            t("spec", "WorkloadSpec"),
            t("status", "ConditionsStatus"),
        ],
    ),
    ("WorkloadSpec", &[t("template", "PodTemplateSpec")]),
    // apps/v1 Deployment.
    (
        "Deployment",
        &[
            t("metadata", "ObjectMeta"),
            t("spec", "DeploymentSpec"),
            t("status", "ConditionsStatus"),
        ],
    ),
    (
        "DeploymentSpec",
        &[t("template", "PodTemplateSpec"), s("strategy", "", RETAIN)],
    ),
    // batch/v1 CronJob.
    (
        "CronJob",
        &[t("metadata", "ObjectMeta"), t("spec", "CronJobSpec")],
    ),
    ("CronJobSpec", &[t("jobTemplate", "JobTemplateSpec")]),
    (
        "JobTemplateSpec",
        &[t("metadata", "ObjectMeta"), t("spec", "WorkloadSpec")],
    ),
    // core/v1 Node. spec.taints is atomic (no strategy) upstream.
    (
        "Node",
        &[
            t("metadata", "ObjectMeta"),
            t("spec", "NodeSpec"),
            t("status", "NodeStatus"),
        ],
    ),
    ("NodeSpec", &[s("podCIDRs", "", MERGE)]),
    (
        "NodeStatus",
        &[
            m("conditions", "", MERGE, "type"),
            m("addresses", "", MERGE, "type"),
        ],
    ),
    // core/v1 Service.
    (
        "Service",
        &[
            t("metadata", "ObjectMeta"),
            t("spec", "ServiceSpec"),
            t("status", "ConditionsStatus"),
        ],
    ),
    ("ServiceSpec", &[m("ports", "", MERGE, "port")]),
    // core/v1 ServiceAccount.
    (
        "ServiceAccount",
        &[t("metadata", "ObjectMeta"), m("secrets", "", MERGE, "name")],
    ),
    // core/v1 ComponentStatus.
    (
        "ComponentStatus",
        &[
            t("metadata", "ObjectMeta"),
            m("conditions", "", MERGE, "type"),
        ],
    ),
    // policy/v1 PodDisruptionBudget.
    (
        "PodDisruptionBudget",
        &[
            t("metadata", "ObjectMeta"),
            t("spec", "PodDisruptionBudgetSpec"),
            t("status", "ConditionsStatus"),
        ],
    ),
    ("PodDisruptionBudgetSpec", &[s("selector", "", REPLACE)]),
    // storage.k8s.io/v1 CSINode.
    (
        "CSINode",
        &[t("metadata", "ObjectMeta"), t("spec", "CSINodeSpec")],
    ),
    ("CSINodeSpec", &[m("drivers", "", MERGE, "name")]),
    // admissionregistration.k8s.io/v1 Validating/MutatingWebhookConfiguration.
    (
        "WebhookConfiguration",
        &[
            t("metadata", "ObjectMeta"),
            m("webhooks", "Webhook", MERGE, "name"),
        ],
    ),
    ("Webhook", &[m("matchConditions", "", MERGE, "name")]),
    // admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy.
    (
        "ValidatingAdmissionPolicy",
        &[
            t("metadata", "ObjectMeta"),
            t("spec", "ValidatingAdmissionPolicySpec"),
        ],
    ),
    (
        "ValidatingAdmissionPolicySpec",
        &[
            m("matchConditions", "", MERGE, "name"),
            m("variables", "", MERGE, "name"),
        ],
    ),
];

/// Built-in kinds that accept strategic merge patches: (API group, kind,
/// root type in [`TYPES`]).
static KINDS: &[(&str, &str, &str)] = &[
    ("", "Binding", "MetaOnly"),
    ("", "ComponentStatus", "ComponentStatus"),
    ("", "ConfigMap", "MetaOnly"),
    ("", "Endpoints", "MetaOnly"),
    ("", "Event", "MetaOnly"),
    ("", "LimitRange", "MetaOnly"),
    ("", "Namespace", "MetaAndConditions"),
    ("", "Node", "Node"),
    ("", "PersistentVolume", "MetaOnly"),
    ("", "PersistentVolumeClaim", "MetaAndConditions"),
    ("", "Pod", "Pod"),
    ("", "PodTemplate", "PodTemplate"),
    ("", "ReplicationController", "Workload"),
    ("", "ResourceQuota", "MetaOnly"),
    ("", "Secret", "MetaOnly"),
    ("", "Service", "Service"),
    ("", "ServiceAccount", "ServiceAccount"),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        "WebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicy",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
        "MetaOnly",
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        "WebhookConfiguration",
    ),
    ("apps", "ControllerRevision", "MetaOnly"),
    ("apps", "DaemonSet", "Workload"),
    ("apps", "Deployment", "Deployment"),
    ("apps", "ReplicaSet", "Workload"),
    ("apps", "StatefulSet", "Workload"),
    (
        "autoscaling",
        "HorizontalPodAutoscaler",
        "MetaAndConditions",
    ),
    ("autoscaling", "Scale", "MetaOnly"),
    ("batch", "CronJob", "CronJob"),
    ("batch", "Job", "Workload"),
    (
        "certificates.k8s.io",
        "CertificateSigningRequest",
        "MetaOnly",
    ),
    ("coordination.k8s.io", "Lease", "MetaOnly"),
    ("discovery.k8s.io", "EndpointSlice", "MetaOnly"),
    ("events.k8s.io", "Event", "MetaOnly"),
    (
        "flowcontrol.apiserver.k8s.io",
        "FlowSchema",
        "MetaAndConditions",
    ),
    (
        "flowcontrol.apiserver.k8s.io",
        "PriorityLevelConfiguration",
        "MetaAndConditions",
    ),
    ("networking.k8s.io", "IPAddress", "MetaOnly"),
    ("networking.k8s.io", "Ingress", "MetaOnly"),
    ("networking.k8s.io", "IngressClass", "MetaOnly"),
    ("networking.k8s.io", "NetworkPolicy", "MetaOnly"),
    ("networking.k8s.io", "ServiceCIDR", "MetaAndConditions"),
    ("node.k8s.io", "RuntimeClass", "MetaOnly"),
    ("policy", "PodDisruptionBudget", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io", "ClusterRole", "MetaOnly"),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        "MetaOnly",
    ),
    ("rbac.authorization.k8s.io", "Role", "MetaOnly"),
    ("rbac.authorization.k8s.io", "RoleBinding", "MetaOnly"),
    ("scheduling.k8s.io", "PriorityClass", "MetaOnly"),
    ("storage.k8s.io", "CSIDriver", "MetaOnly"),
    ("storage.k8s.io", "CSINode", "CSINode"),
    ("storage.k8s.io", "CSIStorageCapacity", "MetaOnly"),
    ("storage.k8s.io", "StorageClass", "MetaOnly"),
    ("storage.k8s.io", "VolumeAttachment", "MetaOnly"),
];

fn kind_root(group: &str, kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, root)| *root)
}

/// Where the merge stands in the type table; `fields` is `None` below any
/// field the table does not describe, where nothing has a strategy.
#[derive(Clone, Copy)]
struct Schema {
    table: &'static TypeTable,
    fields: Option<&'static [Field]>,
}

/// What the schema says about one field.
#[derive(Clone, Copy)]
struct FieldMeta {
    schema: Schema,
    strategy: Strategy,
    key: &'static str,
}

impl Schema {
    fn named(table: &'static TypeTable, name: &str) -> Schema {
        let fields = if name.is_empty() {
            None
        } else {
            table.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
        };
        Schema { table, fields }
    }

    fn field(&self, name: &str) -> FieldMeta {
        match self
            .fields
            .and_then(|fields| fields.iter().find(|f| f.name == name))
        {
            Some(f) => FieldMeta {
                schema: Schema::named(self.table, f.ty),
                strategy: f.strategy,
                key: f.key,
            },
            None => FieldMeta {
                schema: Schema {
                    table: self.table,
                    fields: None,
                },
                strategy: Strategy::None,
                key: "",
            },
        }
    }
}

// ---------------------------------------------------------------------------
// Merging
// ---------------------------------------------------------------------------

fn check_depth(depth: usize) -> Result<(), PatchError> {
    if depth > MAX_DEPTH {
        Err(PatchError::TooDeep(MAX_DEPTH))
    } else {
        Ok(())
    }
}

/// Merges a patch map into an original map (upstream's `mergeMap`).
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema,
    depth: usize,
) -> Result<Map<String, Value>, PatchError> {
    check_depth(depth)?;
    if let Some(directive) = patch.remove(PATCH_DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return clean_map(patch, depth + 1),
            Some("delete") => return Ok(Map::new()),
            // Explicitly asking for the default; upstream refuses it.
            Some("merge") => {}
            _ => return Err(unknown_directive(&directive, &patch)),
        }
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS_DIRECTIVE) {
        apply_retain_keys(&mut original, &patch, &retain)?;
    }

    let order_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for directive_key in order_keys {
        if let Some(order) = patch.remove(&directive_key) {
            apply_element_order(
                &mut original,
                &mut patch,
                &directive_key,
                order,
                schema,
                depth,
            )?;
        }
    }

    // Deletions from primitive lists run after the additions to the same
    // lists; upstream leaves the order to Go's map iteration.
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            let field = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?;
            deletions.push((field.to_owned(), value));
        } else {
            merge_field(&mut original, key, value, schema, depth)?;
        }
    }
    for (field, value) in deletions {
        delete_from_list(&mut original, field, value, schema, depth)?;
    }
    Ok(original)
}

/// Merges the patch value of one (non-directive) field into `original`.
fn merge_field(
    original: &mut Map<String, Value>,
    key: String,
    value: Value,
    schema: Schema,
    depth: usize,
) -> Result<(), PatchError> {
    if value.is_null() {
        original.remove(&key);
        return Ok(());
    }
    let Some(current) = original.get_mut(&key) else {
        if let Some(value) = clean(value, depth + 1)? {
            original.insert(key, value);
        }
        return Ok(());
    };
    let replacement = match (current, value) {
        (Value::Object(current), Value::Object(patch)) => {
            let meta = schema.field(&key);
            if meta.strategy == Strategy::Replace {
                clean(Value::Object(patch), depth + 1)?
            } else {
                let taken = std::mem::take(current);
                *current = merge_map(taken, patch, meta.schema, depth + 1)?;
                return Ok(());
            }
        }
        (Value::Array(current), Value::Array(patch)) => {
            let meta = schema.field(&key);
            if meta.strategy.merges_lists() {
                let taken = std::mem::take(current);
                *current = merge_list(taken, patch, &meta, &key, false, depth + 1)?;
                return Ok(());
            }
            Some(Value::Array(clean_list(patch, depth + 1)?))
        }
        // Scalars, and values whose type changes, are replaced.
        (_, value) => clean(value, depth + 1)?,
    };
    match replacement {
        Some(value) => {
            original.insert(key, value);
        }
        None => {
            original.remove(&key);
        }
    }
    Ok(())
}

/// Applies `$retainKeys`: drops the fields of `original` it does not list,
/// after checking that the patch only sets listed fields.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
) -> Result<(), PatchError> {
    let Value::Array(list) = retain else {
        return Err(PatchError::BadRetainKeysFormat);
    };
    let keep: HashSet<&str> = list.iter().filter_map(Value::as_str).collect();
    for (key, value) in patch {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !keep.contains(key.as_str()) {
            return Err(PatchError::BadRetainKeysFormat);
        }
    }
    original.retain(|key, _| keep.contains(key.as_str()));
    Ok(())
}

/// Handles one `$setElementOrder/<field>` directive together with the patch
/// list of that field (which it consumes): merges the list, then orders the
/// items named by the directive as it says, keeping server-only items near
/// their old neighbours (upstream's `mergePatchIntoOriginal`).
fn apply_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    directive_key: &str,
    order: Value,
    schema: Schema,
    depth: usize,
) -> Result<(), PatchError> {
    let Value::Array(order) = order else {
        return Err(bad_arg_type(GO_LIST, &order));
    };
    let field = directive_field(directive_key, SET_ELEMENT_ORDER_PREFIX)?;
    let meta = schema.field(field);
    let incoming = match patch.remove(field) {
        None => None,
        Some(Value::Array(list)) => Some(list),
        Some(other) => return Err(bad_arg_type(GO_LIST, &other)),
    };
    validate_element_order(incoming.as_deref().unwrap_or(&[]), &order, meta.key)?;
    let current = match original.get_mut(field) {
        Some(Value::Array(list)) => Some(std::mem::take(list)),
        _ => None,
    };
    let mut server_ids: Ids = current
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|item| lookup_id(item, meta.key))
        .collect();
    let merged = match (current, incoming) {
        (Some(current), None) => current,
        (None, Some(incoming)) => clean_list(incoming, depth + 1)?,
        (Some(current), Some(incoming)) if meta.strategy.merges_lists() => {
            let (merged, view) =
                merge_list_with_view(current, incoming, &meta, field, false, depth + 1)?;
            if let Some(view) = view {
                server_ids = view;
            }
            merged
        }
        (Some(_), Some(incoming)) => clean_list(incoming, depth + 1)?,
        (None, None) => return Ok(()),
    };
    let order_ids = order
        .iter()
        .map(|item| item_id(item, meta.key))
        .collect::<Result<Vec<_>, _>>()?;
    let ordered = if merged.is_empty() {
        merged
    } else {
        normalize_order(merged, &order_ids, &server_ids, meta.key)?
    };
    original.insert(field.to_owned(), Value::Array(ordered));
    Ok(())
}

/// Checks that the patch list names no item the `$setElementOrder` list
/// lacks and keeps its relative order (upstream's
/// `validatePatchWithSetOrderList`).
fn validate_element_order(patch: &[Value], order: &[Value], key: &str) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut items = Vec::with_capacity(patch.len());
    for item in patch {
        if key.is_empty() {
            items.push(item);
            continue;
        }
        let Value::Object(map) = item else {
            return Err(bad_arg_type(GO_MAP, item));
        };
        if map.get(PATCH_DIRECTIVE).and_then(Value::as_str) != Some("delete") {
            items.push(item);
        }
    }
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        if items[p].get(PATCH_DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        let equal = if key.is_empty() {
            items[p] == &order[o]
        } else {
            merge_key_value(items[p], key)? == merge_key_value(&order[o], key)?
        };
        if equal {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch: show_list(patch),
            order: show_list(order),
        });
    }
    Ok(())
}

/// Applies `$deleteFromPrimitiveList/<field>` to `original`.
fn delete_from_list(
    original: &mut Map<String, Value>,
    field: String,
    value: Value,
    schema: Schema,
    depth: usize,
) -> Result<(), PatchError> {
    if value.is_null() {
        // Upstream treats a null parallel list like a null field.
        original.remove(&field);
        return Ok(());
    }
    let Value::Array(doomed) = value else {
        return Err(PatchError::BadPrimitiveListFormat);
    };
    let meta = schema.field(&field);
    if let Some(Value::Array(current)) = original.get_mut(&field) {
        let taken = std::mem::take(current);
        *current = merge_list(taken, doomed, &meta, &field, true, depth + 1)?;
    }
    Ok(())
}

/// Identities of the items of a stored list, in list order; `None` for an
/// item that lacks the merge key.
type Ids = Vec<Option<String>>;

/// JSON type of a list element, for the "same element type" rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JsonKind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn kind_of(value: &Value) -> JsonKind {
    match value {
        Value::Null => JsonKind::Null,
        Value::Bool(_) => JsonKind::Bool,
        Value::Number(_) => JsonKind::Number,
        Value::String(_) => JsonKind::String,
        Value::Array(_) => JsonKind::Array,
        Value::Object(_) => JsonKind::Object,
    }
}

/// The common element type of two lists (upstream's `sliceElementType`).
fn element_kind(original: &[Value], patch: &[Value]) -> Result<JsonKind, PatchError> {
    let mut kind = None;
    for value in original.iter().chain(patch) {
        let this = kind_of(value);
        match kind {
            None if this == JsonKind::Array => return Err(PatchError::NoListOfLists),
            None => kind = Some(this),
            Some(prev) if prev != this => {
                return Err(PatchError::MixedListTypes(format!(
                    "[{} {}]",
                    show_list(original),
                    show_list(patch)
                )))
            }
            Some(_) => {}
        }
    }
    Ok(kind.unwrap_or(JsonKind::Null))
}

/// Merges a patch list into an original list of a field with merge strategy
/// (or a `$deleteFromPrimitiveList` list when `delete_list`) (upstream's
/// `mergeSlice`).
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta,
    field: &str,
    delete_list: bool,
    depth: usize,
) -> Result<Vec<Value>, PatchError> {
    merge_list_with_view(original, patch, meta, field, delete_list, depth).map(|(list, _)| list)
}

/// [`merge_list`], also returning for lists merged by key how upstream's
/// `$setElementOrder` handling ends up seeing the original list: Go deletes
/// and appends in place in the original's backing array, so the slots freed
/// by deletions hold the first appended items when the final order is
/// computed. The view lists item identities.
fn merge_list_with_view(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta,
    field: &str,
    delete_list: bool,
    depth: usize,
) -> Result<(Vec<Value>, Option<Ids>), PatchError> {
    check_depth(depth)?;
    if original.is_empty() && patch.is_empty() {
        return Ok((original, None));
    }
    if element_kind(&original, &patch)? != JsonKind::Object {
        return Ok((merge_primitive_list(original, &patch, delete_list)?, None));
    }
    let key = meta.key;
    if key.is_empty() {
        return Err(PatchError::NoMergeKeyForList(field.to_owned()));
    }

    // Items carrying `$patch` first: deletions and whole-list replacement.
    let mut plain = Vec::with_capacity(patch.len());
    let mut doomed = HashSet::new();
    let mut replace = false;
    for item in patch {
        let Value::Object(mut map) = item else {
            return Err(bad_arg_type(GO_MAP, &item));
        };
        let Some(directive) = map.get(PATCH_DIRECTIVE) else {
            plain.push(map);
            continue;
        };
        match directive.as_str() {
            Some("delete") => match map.get(key) {
                Some(value) => {
                    doomed.insert(identity(value));
                }
                None => return Err(no_merge_key(&map, key)),
            },
            Some("replace") => replace = true,
            // Explicitly asking for the default; upstream refuses it.
            Some("merge") => {
                map.remove(PATCH_DIRECTIVE);
                plain.push(map);
            }
            _ => return Err(unknown_directive(directive, &map)),
        }
    }
    if replace {
        let list = plain
            .into_iter()
            .map(|map| clean_map(map, depth + 1).map(Value::Object))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((list, None));
    }

    let original_len = original.len();
    let mut merged = original;
    if !doomed.is_empty() {
        merged.retain(|item| match item.get(key) {
            Some(value) => !doomed.contains(&identity(value)),
            None => true,
        });
    }
    let server_ids: Ids = merged.iter().map(|item| lookup_id(item, key)).collect();
    let mut position: HashMap<String, usize> = HashMap::new();
    for (i, id) in server_ids.iter().enumerate() {
        if let Some(id) = id {
            position.entry(id.clone()).or_insert(i);
        }
    }
    let mut patch_ids = Vec::with_capacity(plain.len());
    for item in plain {
        let Some(value) = item.get(key) else {
            return Err(no_merge_key(&item, key));
        };
        let id = identity(value);
        patch_ids.push(id.clone());
        match position.get(&id) {
            Some(&i) => {
                if let Some(Value::Object(current)) = merged.get_mut(i) {
                    let taken = std::mem::take(current);
                    *current = merge_map(taken, item, meta.schema, depth + 1)?;
                }
            }
            None => {
                position.insert(id, merged.len());
                merged.push(Value::Object(clean_map(item, depth + 1)?));
            }
        }
    }
    let freed = original_len - server_ids.len();
    let mut view = server_ids.clone();
    view.extend(
        merged
            .iter()
            .skip(server_ids.len())
            .take(freed)
            .map(|item| lookup_id(item, key)),
    );
    let list = normalize_order(merged, &patch_ids, &server_ids, key)?;
    Ok((list, Some(view)))
}

/// Merges (or, for a deletion list, subtracts) a list of primitives.
fn merge_primitive_list(
    original: Vec<Value>,
    patch: &[Value],
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if delete_list {
        let doomed: HashSet<String> = patch.iter().map(identity).collect();
        return Ok(original
            .into_iter()
            .filter(|value| !doomed.contains(&identity(value)))
            .collect());
    }
    let server_ids: Ids = original.iter().map(|v| Some(identity(v))).collect();
    let patch_ids: Vec<String> = patch.iter().map(identity).collect();
    let mut seen = HashSet::new();
    let merged: Vec<Value> = original
        .into_iter()
        .chain(patch.iter().cloned())
        .filter(|value| seen.insert(identity(value)))
        .collect();
    normalize_order(merged, &patch_ids, &server_ids, "")
}

/// Orders a merged list: items named by `patch_order` follow that order,
/// the others keep their order from `server_order`, and the two runs are
/// interleaved by their positions in `server_order` (upstream's
/// `normalizeElementOrder` and `mergeSortedSlice`).
fn normalize_order(
    merged: Vec<Value>,
    patch_order: &[String],
    server_order: &[Option<String>],
    key: &str,
) -> Result<Vec<Value>, PatchError> {
    let mut patch_pos: HashMap<&str, usize> = HashMap::new();
    for (i, id) in patch_order.iter().enumerate() {
        patch_pos.entry(id.as_str()).or_insert(i);
    }
    let mut server_pos: HashMap<&str, usize> = HashMap::new();
    for (i, id) in server_order.iter().enumerate() {
        if let Some(id) = id {
            server_pos.entry(id.as_str()).or_insert(i);
        }
    }

    // (position in the patch order, position in the server order, item)
    let mut in_patch: Vec<(usize, Option<usize>, Value)> = Vec::new();
    let mut server_only: Vec<(usize, Option<usize>, Value)> = Vec::new();
    for item in merged {
        let id = item_id(&item, key)?;
        let server = server_pos.get(id.as_str()).copied();
        match patch_pos.get(id.as_str()) {
            Some(&p) => in_patch.push((p, server, item)),
            None => server_only.push((server.unwrap_or(usize::MAX), server, item)),
        }
    }
    in_patch.sort_by_key(|(p, _, _)| *p);
    server_only.sort_by_key(|(p, _, _)| *p);

    let mut result = Vec::with_capacity(in_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = in_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((_, l, _)), Some((_, r, _))) => matches!((l, r), (Some(l), Some(r)) if l < r),
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((_, _, item)) = next {
            result.push(item);
        }
    }
    Ok(result)
}

// ---------------------------------------------------------------------------
// Values taken from the patch as they are
// ---------------------------------------------------------------------------

/// Turns a patch value that has nothing to merge with into the value to
/// store: drops `null` fields and directives, honours `$patch`. `None` means
/// the value is not stored at all (`$patch: delete`).
fn clean(value: Value, depth: usize) -> Result<Option<Value>, PatchError> {
    check_depth(depth)?;
    Ok(match value {
        Value::Object(map) => clean_object(map, depth)?.map(Value::Object),
        Value::Array(list) => Some(Value::Array(clean_list(list, depth)?)),
        other => Some(other),
    })
}

fn clean_object(
    mut map: Map<String, Value>,
    depth: usize,
) -> Result<Option<Map<String, Value>>, PatchError> {
    if let Some(directive) = map.remove(PATCH_DIRECTIVE) {
        match directive.as_str() {
            Some("delete") => return Ok(None),
            Some("replace") | Some("merge") => {}
            _ => return Err(unknown_directive(&directive, &map)),
        }
    }
    clean_map(map, depth).map(Some)
}

/// Cleans the fields of a map whose own `$patch` has been dealt with.
fn clean_map(map: Map<String, Value>, depth: usize) -> Result<Map<String, Value>, PatchError> {
    check_depth(depth)?;
    let mut out = Map::new();
    for (key, value) in map {
        if value.is_null() || is_directive_key(&key) {
            continue;
        }
        if let Some(value) = clean(value, depth + 1)? {
            out.insert(key, value);
        }
    }
    Ok(out)
}

/// Cleans a list taken from the patch; items carrying `$patch: delete` or
/// `$patch: replace` are markers, not content, and are dropped.
fn clean_list(list: Vec<Value>, depth: usize) -> Result<Vec<Value>, PatchError> {
    check_depth(depth)?;
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        match item {
            Value::Object(mut map) => match map.remove(PATCH_DIRECTIVE) {
                None => out.push(Value::Object(clean_map(map, depth + 1)?)),
                Some(directive) => match directive.as_str() {
                    Some("delete") | Some("replace") => {}
                    Some("merge") => out.push(Value::Object(clean_map(map, depth + 1)?)),
                    _ => return Err(unknown_directive(&directive, &map)),
                },
            },
            other => {
                if let Some(value) = clean(other, depth + 1)? {
                    out.push(value);
                }
            }
        }
    }
    Ok(out)
}

fn is_directive_key(key: &str) -> bool {
    key == PATCH_DIRECTIVE
        || key == RETAIN_KEYS_DIRECTIVE
        || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The field named by a `<prefix>/<field>` directive key.
fn directive_field<'a>(key: &'a str, prefix: &str) -> Result<&'a str, PatchError> {
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Ok(field),
        _ if prefix == SET_ELEMENT_ORDER_PREFIX => Err(PatchError::BadSetElementOrderFormat),
        _ => Err(PatchError::BadPrimitiveListFormat),
    }
}

/// A hashable rendering of a value; equal for equal values (maps are
/// ordered by key), so it stands in for Go's `==` on decoded JSON.
fn identity(value: &Value) -> String {
    value.to_string()
}

/// The identity of a list item: its merge key's value, or the whole item
/// for lists of primitives; errors when a keyed item has no key.
fn item_id(item: &Value, key: &str) -> Result<String, PatchError> {
    if key.is_empty() {
        return Ok(identity(item));
    }
    merge_key_value(item, key).map(identity)
}

/// Like [`item_id`], for items of the stored object that may lack the key.
fn lookup_id(item: &Value, key: &str) -> Option<String> {
    if key.is_empty() {
        Some(identity(item))
    } else {
        item.get(key).map(identity)
    }
}

fn merge_key_value<'a>(item: &'a Value, key: &str) -> Result<&'a Value, PatchError> {
    let Value::Object(map) = item else {
        return Err(bad_arg_type(GO_MAP, item));
    };
    map.get(key).ok_or_else(|| no_merge_key(map, key))
}

fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => GO_LIST,
        Value::Object(_) => GO_MAP,
    }
}

fn bad_arg_type(expected: &'static str, actual: &Value) -> PatchError {
    PatchError::BadArgType {
        expected,
        actual: go_type(actual),
    }
}

fn no_merge_key(map: &Map<String, Value>, key: &str) -> PatchError {
    PatchError::NoMergeKey {
        item: show_map(map),
        key: key.to_owned(),
    }
}

fn unknown_directive(directive: &Value, map: &Map<String, Value>) -> PatchError {
    PatchError::UnknownDirective {
        directive: match directive.as_str() {
            Some(s) => truncate(s.to_owned()),
            None => show(directive),
        },
        item: show_map(map),
    }
}

fn show(value: &Value) -> String {
    truncate(value.to_string())
}

fn show_map(map: &Map<String, Value>) -> String {
    truncate(Value::Object(map.clone()).to_string())
}

fn show_list(list: &[Value]) -> String {
    truncate(Value::Array(list.to_vec()).to_string())
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_SHOWN {
        let mut cut = MAX_SHOWN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(group: &str, kind: &str, original: Value, patch: Value) -> Value {
        let result = apply(group, kind, &original, &patch).expect("patch applies");
        assert_no_directives(&result);
        result
    }

    fn failure(group: &str, kind: &str, original: Value, patch: Value) -> PatchError {
        apply(group, kind, &original, &patch).expect_err("patch must be refused")
    }

    fn assert_no_directives(value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    assert!(!key.starts_with('$'), "directive {key} stored");
                    assert_no_directives(value);
                }
            }
            Value::Array(list) => list.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .expect("a list")
            .iter()
            .map(|item| item["name"].as_str().unwrap_or("?"))
            .collect()
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}",
                    "deployment.kubernetes.io/revision": "1"
                }
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "app:v1",
                                "args": ["--port=8080", "--verbose"],
                                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "1"}],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                                "terminationMessagePath": "/dev/termination-log"
                            },
                            {"name": "injected", "image": "proxy:v1"},
                            {"name": "sidecar", "image": "sidecar:v1"}
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                        "restartPolicy": "Always"
                    }
                }
            },
            "status": {
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "True"}
                ]
            }
        })
    }

    fn node() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
            "spec": {
                "podCIDR": "10.0.1.0/24",
                "podCIDRs": ["10.0.1.0/24"],
                "taints": [{"key": "a", "effect": "NoSchedule"}]
            },
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "192.168.0.10"},
                    {"type": "Hostname", "address": "n1"}
                ],
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                    {"type": "MemoryPressure", "status": "False"}
                ]
            }
        })
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "app:v1",
                    "env": [
                        {"name": "A", "value": "1"},
                        {"name": "B", "value": "2"},
                        {"name": "C", "value": "3"}
                    ]
                }],
                "imagePullSecrets": [{"name": "regcred"}],
                "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}],
                "nodeSelector": {"disk": "ssd", "zone": "a"}
            },
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}]
            }
        })
    }

    #[test]
    fn kubectl_client_side_apply_with_set_element_order() {
        let patch = json!({
            "metadata": {"annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}"
            }},
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                "containers": [{
                    "name": "app",
                    "image": "app:v2",
                    "$setElementOrder/env": [{"name": "B"}, {"name": "C"}],
                    "env": [
                        {"name": "B", "value": "2"},
                        {"name": "C", "value": "3"},
                        {"$patch": "delete", "name": "A"}
                    ]
                }]
            }}}
        });
        let result = patched("apps", "Deployment", deployment(), patch);
        let annotations = &result["metadata"]["annotations"];
        assert_eq!(
            annotations["kubectl.kubernetes.io/last-applied-configuration"],
            "{\"new\":true}"
        );
        assert_eq!(annotations["deployment.kubernetes.io/revision"], "1");
        let containers = &result["spec"]["template"]["spec"]["containers"];
        // The server-only container keeps its place before its old successor.
        assert_eq!(names(containers), ["injected", "sidecar", "app"]);
        let app = &containers[2];
        assert_eq!(app["image"], "app:v2");
        assert_eq!(app["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(
            app["ports"],
            json!([{"containerPort": 8080, "protocol": "TCP"}])
        );
        assert_eq!(
            app["env"],
            json!([{"name": "B", "value": "2"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(result["spec"]["replicas"], 2);
        assert_eq!(result["spec"]["strategy"]["type"], "RollingUpdate");
    }

    #[test]
    fn kubectl_client_side_apply_removes_a_container() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"$patch": "delete", "name": "sidecar"}]
        }}}});
        let result = patched("apps", "Deployment", deployment(), patch);
        let containers = &result["spec"]["template"]["spec"]["containers"];
        assert_eq!(names(containers), ["app", "injected"]);
    }

    #[test]
    fn set_element_order_alone_reorders() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [
                {"name": "sidecar"}, {"name": "injected"}, {"name": "app"}
            ]
        }}}});
        let result = patched("apps", "Deployment", deployment(), patch);
        let containers = &result["spec"]["template"]["spec"]["containers"];
        assert_eq!(names(containers), ["sidecar", "injected", "app"]);
        assert_eq!(containers[2]["image"], "app:v1");
    }

    #[test]
    fn set_element_order_must_match_patch_list() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "sidecar", "image": "x"}]
        }}}});
        let err = failure("apps", "Deployment", deployment(), patch);
        assert!(matches!(err, PatchError::SetElementOrderMismatch { .. }));
        assert!(err
            .to_string()
            .contains("doesn't match $setElementOrder list"));
        assert_eq!(err.status_code(), 400);

        let bad_key = json!({"spec": {"template": {"spec": {"$setElementOrderX": []}}}});
        let err = failure("apps", "Deployment", deployment(), bad_key);
        assert!(matches!(err, PatchError::BadSetElementOrderFormat));
    }

    #[test]
    fn cordon_and_uncordon() {
        let cordoned = patched("", "Node", node(), json!({"spec": {"unschedulable": true}}));
        assert_eq!(cordoned["spec"]["unschedulable"], true);
        assert_eq!(cordoned["spec"]["podCIDR"], "10.0.1.0/24");
        assert_eq!(cordoned["status"], node()["status"]);

        let uncordoned = patched(
            "",
            "Node",
            cordoned,
            json!({"spec": {"unschedulable": null}}),
        );
        assert_eq!(uncordoned, node());
        // Deleting an absent field is a no-op.
        assert_eq!(
            patched("", "Node", node(), json!({"spec": {"unschedulable": null}})),
            node()
        );
    }

    #[test]
    fn env_merge_and_delete_one_item() {
        let patch = json!({"spec": {"containers": [{
            "name": "app",
            "env": [
                {"name": "B", "value": "changed"},
                {"name": "D", "value": "4"},
                {"name": "A", "$patch": "delete"}
            ]
        }]}});
        let result = patched("", "Pod", pod(), patch);
        let container = &result["spec"]["containers"][0];
        assert_eq!(container["image"], "app:v1");
        // Patch items keep the patch's order; the server-only C stays after
        // B, its predecessor, and yields to the new D (upstream's ordering).
        assert_eq!(
            container["env"],
            json!([
                {"name": "B", "value": "changed"},
                {"name": "D", "value": "4"},
                {"name": "C", "value": "3"}
            ])
        );
    }

    #[test]
    fn new_items_precede_remaining_server_items() {
        // Like upstream (and kustomize's "prepend"): without
        // $setElementOrder a new item lands before the server-only items
        // that follow the last patch item already in the list.
        let env = |patch: Value| {
            let patch = json!({"spec": {"containers": [{"name": "app", "env": patch}]}});
            let result = patched("", "Pod", pod(), patch);
            names(&result["spec"]["containers"][0]["env"])
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            env(json!([{"name": "Z", "value": "0"}])),
            ["Z", "A", "B", "C"]
        );
        assert_eq!(
            env(json!([{"name": "A", "value": "0"}, {"name": "Z", "value": "0"}])),
            ["A", "Z", "B", "C"]
        );
        assert_eq!(
            env(json!([{"name": "C", "value": "0"}, {"name": "Z", "value": "0"}])),
            ["A", "B", "C", "Z"]
        );
        // $setElementOrder puts the new item where the client wants it.
        let patch = json!({"spec": {"containers": [{
            "name": "app",
            "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}, {"name": "Z"}],
            "env": [{"name": "Z", "value": "0"}]
        }]}});
        let result = patched("", "Pod", pod(), patch);
        assert_eq!(
            names(&result["spec"]["containers"][0]["env"]),
            ["A", "B", "C", "Z"]
        );
    }

    #[test]
    fn env_value_from_replaces_value() {
        let patch = json!({"spec": {"containers": [{
            "name": "app",
            "env": [{
                "name": "A",
                "value": null,
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}
            }]
        }]}});
        let result = patched("", "Pod", pod(), patch);
        assert_eq!(
            result["spec"]["containers"][0]["env"][0],
            json!({"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        );
    }

    #[test]
    fn retain_keys_switches_deployment_strategy() {
        let patch = json!({"spec": {"strategy": {
            "$retainKeys": ["type"],
            "type": "Recreate"
        }}});
        let result = patched("apps", "Deployment", deployment(), patch);
        assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));

        // kubectl also nulls the dropped field; that is allowed.
        let patch = json!({"spec": {"strategy": {
            "$retainKeys": ["type"],
            "rollingUpdate": null,
            "type": "Recreate"
        }}});
        let result = patched("apps", "Deployment", deployment(), patch);
        assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));

        // Without the directive the old sub-object stays (plain merge).
        let result = patched(
            "apps",
            "Deployment",
            deployment(),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(
            result["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            "25%"
        );
    }

    #[test]
    fn retain_keys_refuses_fields_it_does_not_list() {
        let patch = json!({"spec": {"strategy": {
            "$retainKeys": ["type"],
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1}
        }}});
        let err = failure("apps", "Deployment", deployment(), patch);
        assert!(matches!(err, PatchError::BadRetainKeysFormat));
        assert_eq!(err.to_string(), "invalid patch format of retainKeys");

        let patch = json!({"spec": {"strategy": {"$retainKeys": "type"}}});
        let err = failure("apps", "Deployment", deployment(), patch);
        assert!(matches!(err, PatchError::BadRetainKeysFormat));
    }

    #[test]
    fn retain_keys_on_volumes_switches_volume_source() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/volumes": [{"name": "data"}],
            "volumes": [{
                "$retainKeys": ["configMap", "name"],
                "name": "data",
                "configMap": {"name": "settings"}
            }],
            "containers": [{"name": "app", "image": "app:v3"}]
        }}}});
        let result = patched("apps", "Deployment", deployment(), patch);
        let spec = &result["spec"]["template"]["spec"];
        assert_eq!(
            spec["volumes"],
            json!([{"name": "data", "configMap": {"name": "settings"}}])
        );
        assert_eq!(spec["containers"][0]["image"], "app:v3");
        assert_eq!(
            spec["containers"][0]["args"],
            json!(["--port=8080", "--verbose"])
        );
        assert_eq!(names(&spec["containers"]), ["app", "injected", "sidecar"]);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(
            result["spec"]["template"]["metadata"]["labels"]["app"],
            "web"
        );
    }

    #[test]
    fn finalizers_delete_from_primitive_list() {
        let original = json!({
            "metadata": {"name": "cm", "finalizers": ["a/x", "b/y", "c/z"]},
            "data": {"k": "v"}
        });
        let result = patched(
            "",
            "ConfigMap",
            original.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b/y"]}}),
        );
        assert_eq!(result["metadata"]["finalizers"], json!(["a/x", "c/z"]));
        assert_eq!(result["data"], json!({"k": "v"}));

        // What kubectl sends: order, additions and deletions together.
        let result = patched(
            "",
            "ConfigMap",
            original.clone(),
            json!({"metadata": {
                "$setElementOrder/finalizers": ["d/w", "a/x"],
                "$deleteFromPrimitiveList/finalizers": ["b/y", "c/z"],
                "finalizers": ["d/w"]
            }}),
        );
        assert_eq!(result["metadata"]["finalizers"], json!(["d/w", "a/x"]));

        // Deleting from an absent list does nothing.
        let result = patched(
            "",
            "ConfigMap",
            json!({"metadata": {"name": "cm"}}),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]}}),
        );
        assert_eq!(result, json!({"metadata": {"name": "cm"}}));

        let err = failure(
            "",
            "ConfigMap",
            original,
            json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a/x"]}}),
        );
        assert!(matches!(err, PatchError::BadPrimitiveListFormat));
    }

    #[test]
    fn finalizers_union() {
        let original = json!({"metadata": {"name": "ns", "finalizers": ["a", "b"]}});
        let result = patched(
            "",
            "Namespace",
            original,
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        );
        assert_eq!(result["metadata"]["finalizers"], json!(["a", "b", "c"]));
    }

    #[test]
    fn non_merge_list_is_replaced() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "args": ["--port=9090"]}
        ]}}}});
        let result = patched("apps", "Deployment", deployment(), patch);
        let app = &result["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(app["args"], json!(["--port=9090"]));
        assert_eq!(app["image"], "app:v1");

        // Node taints carry no strategy upstream either.
        let result = patched(
            "",
            "Node",
            node(),
            json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}}),
        );
        assert_eq!(
            result["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
    }

    #[test]
    fn nested_pod_templates() {
        let job = json!({
            "metadata": {"name": "j"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "main", "image": "busybox", "env": [{"name": "X", "value": "1"}]}
            ]}}}
        });
        let result = patched(
            "batch",
            "Job",
            job.clone(),
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "main", "env": [{"name": "Y", "value": "2"}]}
            ]}}}}),
        );
        assert_eq!(
            result["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}])
        );

        let cron = json!({"metadata": {"name": "c"}, "spec": {"schedule": "* * * * *", "jobTemplate": job}});
        let result = patched(
            "batch",
            "CronJob",
            cron,
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "side", "image": "side"}
            ]}}}}}}),
        );
        let containers = &result["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
        assert_eq!(names(containers), ["side", "main"]);
        assert_eq!(containers[1]["env"], json!([{"name": "X", "value": "1"}]));
        assert_eq!(result["spec"]["schedule"], "* * * * *");

        for (group, kind) in [
            ("apps", "DaemonSet"),
            ("apps", "StatefulSet"),
            ("apps", "ReplicaSet"),
        ] {
            let original = json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a", "image": "a:1"}
            ]}}}});
            let result = patched(
                group,
                kind,
                original,
                json!({"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:1"}]}}}}),
            );
            assert_eq!(
                names(&result["spec"]["template"]["spec"]["containers"]),
                ["b", "a"]
            );
        }
    }

    #[test]
    fn patch_replace_and_delete_directives() {
        // Whole-list replacement from inside the list.
        let patch = json!({"spec": {"containers": [
            {"name": "only", "image": "only:v1"},
            {"$patch": "replace"}
        ]}});
        let result = patched("", "Pod", pod(), patch);
        assert_eq!(
            result["spec"]["containers"],
            json!([{"name": "only", "image": "only:v1"}])
        );

        // Map replacement.
        let patch = json!({"spec": {"nodeSelector": {"$patch": "replace", "gpu": "yes"}}});
        let result = patched("", "Pod", pod(), patch);
        assert_eq!(result["spec"]["nodeSelector"], json!({"gpu": "yes"}));

        // Map deletion leaves an empty map, as upstream does.
        let patch = json!({"spec": {"nodeSelector": {"$patch": "delete"}}});
        let result = patched("", "Pod", pod(), patch);
        assert_eq!(result["spec"]["nodeSelector"], json!({}));

        // Explicit merge is the default behaviour.
        let patch = json!({"spec": {"nodeSelector": {"$patch": "merge", "gpu": "yes"}}});
        let result = patched("", "Pod", pod(), patch);
        assert_eq!(
            result["spec"]["nodeSelector"],
            json!({"disk": "ssd", "zone": "a", "gpu": "yes"})
        );
        let patch =
            json!({"spec": {"containers": [{"$patch": "merge", "name": "app", "image": "v9"}]}});
        let result = patched("", "Pod", pod(), patch);
        assert_eq!(result["spec"]["containers"][0]["image"], "v9");
        assert_eq!(result["spec"]["containers"][0]["env"][0]["name"], "A");

        let err = failure("", "Pod", pod(), json!({"spec": {"$patch": "explode"}}));
        assert!(matches!(err, PatchError::UnknownDirective { .. }));
        assert!(err
            .to_string()
            .starts_with("unknown patch type: explode in map:"));
        let err = failure(
            "",
            "Pod",
            pod(),
            json!({"spec": {"containers": [{"$patch": 1, "name": "app"}]}}),
        );
        assert!(matches!(err, PatchError::UnknownDirective { .. }));
    }

    #[test]
    fn directives_in_new_values_are_not_stored() {
        let original = json!({"metadata": {"name": "p"}, "spec": {}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [
                {"name": "a", "image": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "$patch": "delete"}]},
                {"name": "b", "image": "b", "resources": {"$patch": "replace", "limits": {"cpu": "1"}}, "stdin": null}
            ],
            "volumes": [{"$retainKeys": ["name", "emptyDir"], "name": "v", "emptyDir": {}}],
            "affinity": {"$patch": "delete"},
            "securityContext": {"$retainKeys": ["runAsUser"], "runAsUser": 1000, "fsGroup": null},
            "nodeSelector": {"$patch": "replace", "disk": "ssd"}
        }});
        let result = patched("", "Pod", original, patch);
        assert_eq!(
            result["spec"],
            json!({
                "containers": [
                    {"name": "a", "image": "a", "env": [{"name": "X", "value": "1"}]},
                    {"name": "b", "image": "b", "resources": {"limits": {"cpu": "1"}}}
                ],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "securityContext": {"runAsUser": 1000},
                "nodeSelector": {"disk": "ssd"}
            })
        );
    }

    #[test]
    fn service_ports_merge_by_port() {
        let original = json!({
            "metadata": {"name": "s"},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.10",
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
            }
        });
        let patch = json!({"spec": {"ports": [
            {"port": 80, "targetPort": 9090},
            {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
        ]}});
        let result = patched("", "Service", original, patch);
        assert_eq!(
            result["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
            ])
        );
        assert_eq!(result["spec"]["clusterIP"], "10.96.0.10");
    }

    #[test]
    fn node_status_merges_by_type() {
        let patch = json!({"status": {
            "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}],
            "addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}]
        }, "spec": {"podCIDRs": ["fd00::/64"]}});
        let result = patched("", "Node", node(), patch);
        assert_eq!(
            result["status"]["conditions"],
            json!([
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady"},
                {"type": "MemoryPressure", "status": "False"}
            ])
        );
        assert_eq!(
            result["status"]["addresses"],
            json!([
                {"type": "ExternalIP", "address": "1.2.3.4"},
                {"type": "InternalIP", "address": "192.168.0.10"},
                {"type": "Hostname", "address": "n1"}
            ])
        );
        assert_eq!(
            result["spec"]["podCIDRs"],
            json!(["fd00::/64", "10.0.1.0/24"])
        );
        assert_eq!(result["spec"]["taints"], node()["spec"]["taints"]);
    }

    #[test]
    fn status_conditions_merge_by_type() {
        let result = patched(
            "",
            "Pod",
            pod(),
            json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t"}
            ]}}),
        );
        assert_eq!(result["status"]["phase"], "Running");
        assert_eq!(
            result["status"]["conditions"],
            json!([
                {"type": "Ready", "status": "True"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t"}
            ])
        );

        let result = patched(
            "apps",
            "Deployment",
            deployment(),
            json!({"status": {"conditions": [{"type": "Available", "status": "False"}]}}),
        );
        assert_eq!(
            result["status"]["conditions"],
            json!([
                {"type": "Available", "status": "False"},
                {"type": "Progressing", "status": "True"}
            ])
        );
    }

    #[test]
    fn pod_spec_lists_merge_by_their_keys() {
        let patch = json!({"spec": {
            "imagePullSecrets": [{"name": "other"}],
            "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["b"]}, {"ip": "10.0.0.2", "hostnames": ["c"]}]
        }});
        let result = patched("", "Pod", pod(), patch);
        assert_eq!(
            result["spec"]["imagePullSecrets"],
            json!([{"name": "other"}, {"name": "regcred"}])
        );
        assert_eq!(
            result["spec"]["hostAliases"],
            json!([{"ip": "10.0.0.1", "hostnames": ["b"]}, {"ip": "10.0.0.2", "hostnames": ["c"]}])
        );
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let original = json!({"metadata": {"name": "rs", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u1", "controller": true}
        ]}});
        let patch = json!({"metadata": {"ownerReferences": [
            {"uid": "u1", "blockOwnerDeletion": true},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u2"}
        ]}});
        let result = patched("apps", "ReplicaSet", original, patch);
        assert_eq!(
            result["metadata"]["ownerReferences"],
            json!([
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u1", "controller": true, "blockOwnerDeletion": true},
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "u2"}
            ])
        );
    }

    #[test]
    fn replace_strategy_on_a_map() {
        let original =
            json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
        let result = patched(
            "policy",
            "PodDisruptionBudget",
            original,
            json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}}),
        );
        assert_eq!(
            result["spec"]["selector"],
            json!({"matchLabels": {"b": "2"}})
        );
        assert_eq!(result["spec"]["minAvailable"], 1);
    }

    #[test]
    fn maps_merge_and_types_change() {
        let original =
            json!({"metadata": {"name": "cm", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": {"x": null, "y": "2"}, "binaryData": {"z": "AA=="}});
        let result = patched("", "ConfigMap", original, patch);
        assert_eq!(
            result,
            json!({"metadata": {"name": "cm", "labels": {"b": "2", "c": "3"}}, "data": {"y": "2"}, "binaryData": {"z": "AA=="}})
        );

        // A value changing type is replaced outright.
        let original = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": []}}}});
        let result = patched(
            "apps",
            "Deployment",
            original,
            json!({"spec": {"replicas": "two"}}),
        );
        assert_eq!(result["spec"]["replicas"], "two");
    }

    #[test]
    fn merge_key_is_required() {
        let err = failure(
            "",
            "Pod",
            pod(),
            json!({"spec": {"containers": [{"image": "nameless"}]}}),
        );
        assert!(matches!(err, PatchError::NoMergeKey { .. }));
        assert!(err
            .to_string()
            .ends_with("does not contain declared merge key: name"));

        let err = failure(
            "",
            "Pod",
            pod(),
            json!({"spec": {"containers": [{"$patch": "delete"}]}}),
        );
        assert!(matches!(err, PatchError::NoMergeKey { .. }));
    }

    #[test]
    fn malformed_lists_are_refused() {
        let err = failure("", "Pod", pod(), json!({"spec": {"containers": ["app"]}}));
        assert!(matches!(err, PatchError::MixedListTypes(_)));

        let original = json!({"metadata": {"finalizers": []}});
        let err = failure(
            "",
            "Secret",
            original,
            json!({"metadata": {"finalizers": [["a"]]}}),
        );
        assert!(matches!(err, PatchError::NoListOfLists));
        assert_eq!(err.status_code(), 422);

        let original = json!({"metadata": {"finalizers": ["a"]}});
        let err = failure(
            "",
            "Secret",
            original,
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
        );
        assert!(matches!(err, PatchError::MixedListTypes(_)));

        let err = failure(
            "",
            "Pod",
            pod(),
            json!({"spec": {"$setElementOrder/containers": {"name": "app"}}}),
        );
        assert!(matches!(err, PatchError::BadArgType { .. }));
        assert_eq!(
            err.to_string(),
            "expected a []interface {}, but received a map[string]interface {}"
        );
    }

    #[test]
    fn documents_must_be_objects() {
        assert!(matches!(
            failure("", "Pod", pod(), json!([1, 2])),
            PatchError::BadJsonDoc
        ));
        assert!(matches!(
            failure("", "Pod", json!("x"), json!({})),
            PatchError::BadJsonDoc
        ));
        assert_eq!(patched("", "Pod", pod(), json!({})), pod());
    }

    #[test]
    fn unknown_kinds_are_unsupported() {
        let err = failure("example.com", "Widget", json!({}), json!({}));
        assert!(matches!(err, PatchError::UnsupportedKind { .. }));
        assert_eq!(err.status_code(), 415);
        assert!(err.to_string().contains("application/merge-patch+json"));
        // Kinds are looked up within their group.
        assert!(kind_root("apps", "Pod").is_none());
        assert!(kind_root("", "Pod").is_some());
        assert!(kind_root("rbac.authorization.k8s.io", "ClusterRoleBinding").is_some());
    }

    #[test]
    fn nesting_depth_is_bounded() {
        let mut deep = json!("leaf");
        for _ in 0..(MAX_DEPTH + 5) {
            deep = json!({ "x": deep });
        }
        let err = failure("", "ConfigMap", json!({}), json!({ "data": deep.clone() }));
        assert!(matches!(err, PatchError::TooDeep(_)));

        let mut original = json!("leaf");
        for _ in 0..(MAX_DEPTH + 5) {
            original = json!({ "x": original });
        }
        let err = failure(
            "",
            "ConfigMap",
            json!({ "data": original }),
            json!({ "data": deep }),
        );
        assert!(matches!(err, PatchError::TooDeep(_)));

        let mut list = json!("leaf");
        for _ in 0..(MAX_DEPTH + 5) {
            list = json!([list]);
        }
        let err = failure("", "ConfigMap", json!({}), json!({ "data": list }));
        assert!(matches!(err, PatchError::TooDeep(_)));
    }

    #[test]
    fn schema_table_is_consistent() {
        let mut seen = HashSet::new();
        for (name, fields) in TYPES {
            assert!(seen.insert(*name), "type {name} listed twice");
            let mut field_names = HashSet::new();
            for field in *fields {
                assert!(
                    field_names.insert(field.name),
                    "{name}.{} twice",
                    field.name
                );
                assert!(
                    field.ty.is_empty() || Schema::named(TYPES, field.ty).fields.is_some(),
                    "{name}.{} refers to unknown type {}",
                    field.name,
                    field.ty
                );
                if !field.key.is_empty() {
                    assert!(
                        field.strategy.merges_lists(),
                        "{name}.{} key without merge",
                        field.name
                    );
                }
            }
        }
        let mut kinds = HashSet::new();
        for (group, kind, root) in KINDS {
            assert!(kinds.insert((*group, *kind)), "{group}/{kind} listed twice");
            assert!(
                Schema::named(TYPES, root).fields.is_some(),
                "{kind} root {root} unknown"
            );
        }
        // Every type is reachable from some kind.
        let mut reachable = HashSet::new();
        let mut todo: Vec<&str> = KINDS.iter().map(|(_, _, root)| *root).collect();
        while let Some(name) = todo.pop() {
            if !reachable.insert(name) {
                continue;
            }
            if let Some(fields) = Schema::named(TYPES, name).fields {
                todo.extend(fields.iter().map(|f| f.ty).filter(|ty| !ty.is_empty()));
            }
        }
        for (name, _) in TYPES {
            assert!(reachable.contains(name), "type {name} is unreachable");
        }
    }

    #[test]
    fn lookups_follow_the_table() {
        let spec = Schema::named(TYPES, "Deployment").field("spec").schema;
        let template = spec.field("template").schema.field("spec").schema;
        let containers = template.field("containers");
        assert_eq!(containers.key, "name");
        assert_eq!(containers.strategy, Strategy::Merge);
        assert_eq!(containers.schema.field("ports").key, "containerPort");
        assert_eq!(containers.schema.field("volumeMounts").key, "mountPath");
        assert_eq!(containers.schema.field("volumeDevices").key, "devicePath");
        assert_eq!(
            containers.schema.field("resizePolicy").strategy,
            Strategy::None
        );
        assert_eq!(
            template.field("volumes").strategy,
            Strategy::MergeRetainKeys
        );
        assert_eq!(spec.field("strategy").strategy, Strategy::RetainKeys);
        let unknown = template.field("noSuchField");
        assert_eq!(unknown.strategy, Strategy::None);
        assert!(unknown.schema.fields.is_none());
    }
}
