//! Server-side apply (`PATCH` with `application/apply-patch+yaml`) and the
//! `metadata.managedFields` bookkeeping of every other write, as pure
//! functions over objects stored as JSON.
//!
//! This follows sigs.k8s.io/structured-merge-diff v4.6 and the field manager
//! of k8s.io/apimachinery (`pkg/util/managedfields/internal`) as kube-apiserver
//! v1.33 assembles it:
//!
//! * every manager owns a *field set*, stored as a managedFields entry in the
//!   `FieldsV1` encoding; appliers are keyed by (manager, subresource),
//!   updaters also by API version;
//! * an apply merges the configuration into the live object, owns exactly the
//!   fields the configuration names, removes the fields it applied last time
//!   but no longer does (when nobody else owns them), and is refused with
//!   conflicts when it would change a field another manager owns, unless
//!   forced, in which case the other managers lose those fields;
//! * any other write hands the fields whose values it changed to its manager;
//! * fields that are not the client's to own are never tracked: `apiVersion`,
//!   `kind`, the server-populated metadata, and `status` (the main resource's
//!   "reset fields"; kube-apiserver resets status on writes to the main
//!   resource of every built-in kind that has one, and of custom resources
//!   with a status subresource);
//! * kubectl's client-side apply hand-over is honoured: an apply by the
//!   `kubectl` manager may take fields whose values still match the
//!   `kubectl.kubernetes.io/last-applied-configuration` annotation without
//!   conflict, and keeps that annotation in step.
//!
//! Upstream types objects with the OpenAPI schema. Here the list types come
//! from the strategic merge patch table ([`strategic_merge::list_merge`]):
//! lists with a merge key are associative lists keyed by it (with upstream's
//! compound keys where they differ: container ports by `containerPort` and
//! `protocol`, service ports by `port` and `protocol`, topology spread
//! constraints by `topologyKey` and `whenUnsatisfiable`), lists of
//! primitives with the merge strategy are sets, and other lists are atomic.
//! Objects upstream declares atomic (label selectors, object references,
//! `nodeSelector`, ...) are listed in [`ATOMIC_OBJECTS`]. Kinds the table
//! does not know (custom resources) get atomic lists everywhere except in
//! their `metadata`.
//!
//! Differences from upstream, on purpose: objects of other API versions are
//! not converted (managers of another version are compared as if they were
//! of this one); a malformed managedFields list on a stored object is
//! treated as absent instead of failing the write; list items without their
//! key fields make an applied configuration invalid rather than being keyed
//! by the fields' zero values; and `null`s the configuration sets are
//! dropped from the stored object, as decoding into Go types would.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Map, Value};

use super::strategic_merge::{self, ListMerge};
use super::validation::go_quote;

/// Deepest nesting of objects, lists and field sets that is processed;
/// deeper input is refused instead of risking the stack.
const MAX_DEPTH: usize = 100;

/// Most Update entries an object keeps; older ones are merged into
/// `ancient-changes` entries (upstream's `DefaultMaxUpdateManagers`).
const MAX_UPDATE_MANAGERS: usize = 10;

const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
const KUBECTL: &str = "kubectl";
const UNKNOWN_MANAGER: &str = "unknown";
const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const ANCIENT_CHANGES: &str = "ancient-changes";
/// Key of the temporary manager an update is first recorded under; not a
/// JSON identity, so it cannot collide with a real manager.
const CURRENT_OPERATION: &str = "current-operation";

/// Object fields whose values upstream's schema declares atomic
/// (`+structType=atomic` / `+mapType=atomic`) in the built-in kinds: they are
/// owned and replaced as a whole. The names are unambiguous across the
/// built-in types (where one also names a scalar, only objects are atomic).
const ATOMIC_OBJECTS: &[&str] = &[
    "claimRef",
    "configMapKeyRef",
    "controllerExpandSecretRef",
    "controllerPublishSecretRef",
    "dataSource",
    "fieldRef",
    "involvedObject",
    "labelSelector",
    "matchConstraints",
    "matchResources",
    "namespaceSelector",
    "nodeExpandSecretRef",
    "nodePublishSecretRef",
    "nodeSelector",
    "nodeStageSecretRef",
    "nodeTopology",
    "objectSelector",
    "paramKind",
    "paramRef",
    "podSelector",
    "port",
    "regarding",
    "related",
    "required",
    "requiredDuringSchedulingIgnoredDuringExecution",
    "resource",
    "resourceFieldRef",
    "roleRef",
    "scopeSelector",
    "secretKeyRef",
    "secretRef",
    "selector",
];

/// Keyed lists whose items are atomic objects upstream (owner references,
/// pod image pull secrets, service account secrets).
const ATOMIC_ITEM_LISTS: &[&str] = &["ownerReferences", "imagePullSecrets", "secrets"];

// ---------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------

/// One field another manager owns with a different value: an apply that
/// would overwrite it is refused (409) unless forced, and each conflict
/// becomes one `FieldManagerConflict` cause of the response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name.
    pub manager: String,
    /// The API version of the other manager's Update entry. Empty when the
    /// other manager is an applier: upstream identifies appliers without a
    /// version and names none in its messages.
    pub api_version: String,
    /// The contested field in upstream's path notation, e.g. `.spec.replicas`
    /// or `.spec.template.spec.containers[name="web"].image`.
    pub field: String,
}

impl Conflict {
    /// The message of this conflict's status cause, worded as upstream does
    /// (`conflict with "kubectl-client-side-apply" using apps/v1`); the
    /// cause's field is [`Conflict::field`].
    pub fn message(&self) -> String {
        format!("conflict with {}", self.who())
    }

    fn who(&self) -> String {
        let name = go_quote(&self.manager);
        if self.api_version.is_empty() {
            name
        } else {
            format!("{name} using {}", self.api_version)
        }
    }

    /// The manager identity upstream sorts and groups conflicts by.
    fn identity(&self) -> String {
        identity(
            &self.manager,
            self.api_version.is_empty(),
            &self.api_version,
            "",
        )
    }
}

/// Why an apply was refused; Display is the message the API returns.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The apply would change fields other managers own (409 Conflict with
    /// one cause per field); upstream's text, which kubectl prints followed
    /// by its `--force-conflicts` hint.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration (or the stored object) cannot be applied: not an
    /// object, of another kind or version, carrying managedFields, with list
    /// items lacking their keys or duplicated, or nested too deeply
    /// (400/422).
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
impl ApplyError {
    /// HTTP status for the API response: 409 for conflicts (reason
    /// `Conflict`), 400 for an invalid configuration (upstream answers its
    /// version, kind and managedFields checks with 400 Bad Request).
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::Invalid(_) => 400,
        }
    }
}

/// Server-side apply (PATCH application/apply-patch+yaml), so clients can
/// declare the fields they want without reading the object first.
///
/// `applied` is the caller's configuration (JSON, its apiVersion and kind
/// must be `api_version` and `kind`); `live` is the stored object, or `None`
/// when the apply creates it. Returns the object to store: `live` with the
/// applied fields merged in, the fields this manager applied before but no
/// longer applies (and nobody else owns) removed, and `metadata.managedFields`
/// updated: this manager's `Apply` entry owns exactly the applied fields and
/// carries `now` as its time when the object changed; when forced, the other
/// managers lose the conflicting fields; entries left empty are dropped.
/// Conflicts (applied fields another manager owns whose live values differ
/// from the applied ones) refuse the apply unless `force`.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    group: &str,
    kind: &str,
    api_version: &str,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    let schema = Schema::new(group, kind);
    let Value::Object(config) = applied else {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".to_owned(),
        ));
    };
    if !within_depth(applied) {
        return Err(ApplyError::Invalid(format!(
            "the applied configuration is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if let Some(live) = live {
        if !live.is_object() || !within_depth(live) {
            return Err(ApplyError::Invalid(format!(
                "the stored object is not an object nested at most {MAX_DEPTH} levels deep"
            )));
        }
    }
    let config_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let config_kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
    if config_version != api_version || config_kind != kind {
        return Err(ApplyError::Invalid(format!(
            "invalid object type: {}",
            gvk_string(config_version, config_kind)
        )));
    }
    if managed_fields_of(applied).is_some_and(|v| !v.is_null()) {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".to_owned(),
        ));
    }
    let config_set = schema.field_set(applied, true).map_err(|errors| {
        ApplyError::Invalid(format!(
            "failed to create typed patch object ({}): {}",
            object_gvknn(applied),
            join_errors(&errors)
        ))
    })?;

    let manager = if manager.is_empty() {
        UNKNOWN_MANAGER
    } else {
        manager
    };
    let mut live_obj = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let mut managed = decode_managed(managed_fields_of(&live_obj)).unwrap_or_default();
    remove_managed_fields(&mut live_obj);
    if managed.is_empty() && live.is_some() {
        // Objects nobody tracked yet: what is there belongs to a stand-in
        // updater, so the apply neither takes it silently nor prunes it.
        schema.record_update(
            &zero_object(group, kind),
            &live_obj,
            &mut managed,
            &Writer {
                manager: BEFORE_FIRST_APPLY,
                api_version,
                now,
            },
        );
    }

    let applier = Applier {
        schema: &schema,
        id: identity(manager, true, "", ""),
        writer: Writer {
            manager,
            api_version,
            now,
        },
        config: applied,
        config_set,
    };
    let (mut result, managed) = match applier.apply(&live_obj, &managed, force) {
        Ok(done) => done,
        Err(conflicts) => {
            // kubectl taking over from its client-side apply: fields whose
            // values still match the last-applied annotation are its own.
            let allowed = (manager == KUBECTL)
                .then(|| schema.allowed_from_last_applied(&live_obj, api_version))
                .flatten();
            let Some(allowed) = allowed else {
                return Err(into_conflicts(conflicts));
            };
            let remaining: Vec<RawConflict> = conflicts
                .into_iter()
                .filter(|c| !allowed.has(&c.path))
                .collect();
            if !remaining.is_empty() {
                return Err(into_conflicts(remaining));
            }
            applier
                .apply(&live_obj, &managed, true)
                .map_err(into_conflicts)?
        }
    };
    schema.drop_config_nulls(&mut result, applied, false, &mut Vec::new());
    if manager == KUBECTL && last_applied_of(&result).is_some_and(|s| !s.is_empty()) {
        set_last_applied(&mut result, build_last_applied(applied));
    }
    set_managed_fields(&mut result, &managed);
    Ok(result)
}

/// Records a non-apply write (create, update, any non-apply patch) by
/// `manager` in `new`'s metadata.managedFields, so later applies know who
/// set what: the fields whose values changed from `old` (every field when
/// `old` is None) join the manager's `Update` entry for `api_version` and
/// leave other managers' sets; entries left empty are dropped; the manager's
/// entry gets `now` as its time when it changed something.
///
/// As upstream, managedFields sent in `new` replace the stored ones (`[]` or
/// `[{}]` clears them), and an existing object that has none is not tracked
/// until it is applied to.
pub fn track_update(
    group: &str,
    kind: &str,
    api_version: &str,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    now: &str,
) {
    if !new.is_object() || !within_depth(new) {
        return;
    }
    if old.is_some_and(|old| !old.is_object() || !within_depth(old)) {
        return;
    }
    let schema = Schema::new(group, kind);
    let requested = managed_fields_of(new).cloned();
    let mut managed = if is_reset(requested.as_ref()) {
        Managed::new()
    } else {
        match decode_managed(requested.as_ref()) {
            Ok(managed) if !managed.is_empty() => managed,
            _ => old
                .and_then(|old| decode_managed(managed_fields_of(old)).ok())
                .unwrap_or_default(),
        }
    };
    remove_managed_fields(new);
    let is_create = old.is_none_or(|old| uid_of(old).is_empty());
    if managed.is_empty() && !is_create {
        return;
    }
    let old_obj = match old {
        Some(old) => {
            let mut old = old.clone();
            remove_managed_fields(&mut old);
            old
        }
        None => zero_object(group, kind),
    };
    let manager = if manager.is_empty() {
        UNKNOWN_MANAGER
    } else {
        manager
    };
    schema.record_update(
        &old_obj,
        new,
        &mut managed,
        &Writer {
            manager,
            api_version,
            now,
        },
    );
    set_managed_fields(new, &managed);
}

/// Upstream's conflict message: one conflict inline, several grouped by
/// manager (sorted by manager identity), one path per line.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.who(),
            only.field
        );
    }
    let mut grouped: BTreeMap<String, (String, Vec<&str>)> = BTreeMap::new();
    for conflict in conflicts {
        grouped
            .entry(conflict.identity())
            .or_insert_with(|| (conflict.who(), Vec::new()))
            .1
            .push(&conflict.field);
    }
    let mut lines = Vec::new();
    for (who, fields) in grouped.values() {
        lines.push(format!("conflicts with {who}:"));
        lines.extend(fields.iter().map(|field| format!("- {field}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

// ---------------------------------------------------------------------------
// Managers
// ---------------------------------------------------------------------------

/// One managedFields entry, decoded.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    applied: bool,
    api_version: String,
    subresource: String,
    time: Option<String>,
    set: Set,
}

impl Entry {
    fn id(&self) -> String {
        identity(
            &self.manager,
            self.applied,
            &self.api_version,
            &self.subresource,
        )
    }
}

/// The entries of an object by manager identity.
type Managed = BTreeMap<String, Entry>;

/// Upstream's manager identity: the JSON of the entry without its fields and
/// time, and without the API version for appliers (so an applier is one
/// manager whatever version it applies).
fn identity(manager: &str, applied: bool, api_version: &str, subresource: &str) -> String {
    let mut out = String::from("{");
    let mut field = |name: &str, value: &str| {
        if value.is_empty() {
            return;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
        go_json_string(value, &mut out);
    };
    field("manager", manager);
    field("operation", if applied { "Apply" } else { "Update" });
    if !applied {
        field("apiVersion", api_version);
    }
    field("subresource", subresource);
    out.push('}');
    out
}

/// The manager and API version a write is recorded for, and its time.
struct Writer<'a> {
    manager: &'a str,
    api_version: &'a str,
    now: &'a str,
}

fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

fn remove_managed_fields(obj: &mut Value) {
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.remove("managedFields");
    }
}

fn uid_of(obj: &Value) -> &str {
    obj.get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Whether a write's managedFields ask for a reset: an empty list, or a list
/// of one empty entry.
fn is_reset(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Array(list)) => match list.as_slice() {
            [] => true,
            [Value::Object(entry)] => entry
                .values()
                .all(|v| v.is_null() || v.as_str() == Some("")),
            _ => false,
        },
        _ => false,
    }
}

fn decode_managed(value: Option<&Value>) -> Result<Managed, String> {
    let list = match value {
        None | Some(Value::Null) => return Ok(Managed::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("managedFields must be a list".to_owned()),
    };
    let mut managed = Managed::new();
    for (i, item) in list.iter().enumerate() {
        let Value::Object(entry) = item else {
            return Err(format!("managed fields entry {i} is not an object"));
        };
        let text = |key: &str| entry.get(key).and_then(Value::as_str).unwrap_or("");
        let applied = match text("operation") {
            "Apply" => true,
            "Update" => false,
            _ => return Err("operation must be `Apply` or `Update`".to_owned()),
        };
        if text("apiVersion").is_empty() {
            return Err("apiVersion must not be empty".to_owned());
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
            other => {
                return Err(format!(
                    "invalid fieldsType {} in managed fields entry {i}",
                    go_quote(other)
                ))
            }
        }
        let set = match entry.get("fieldsV1") {
            None | Some(Value::Null) => Set::default(),
            Some(fields) => decode_fields(fields, 0)?.0,
        };
        let entry = Entry {
            manager: text("manager").to_owned(),
            applied,
            api_version: text("apiVersion").to_owned(),
            subresource: text("subresource").to_owned(),
            time: entry.get("time").and_then(Value::as_str).map(str::to_owned),
            set,
        };
        managed.insert(entry.id(), entry);
    }
    Ok(managed)
}

/// Encodes the entries in upstream's order: appliers first, then oldest
/// first, then by manager, API version and subresource.
fn encode_managed(managed: &Managed) -> Option<Value> {
    if managed.is_empty() {
        return None;
    }
    let mut entries: Vec<&Entry> = managed.values().collect();
    entries.sort_by(|a, b| {
        b.applied
            .cmp(&a.applied)
            .then_with(|| unix_seconds(a.time.as_deref()).cmp(&unix_seconds(b.time.as_deref())))
            .then_with(|| a.manager.cmp(&b.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a.subresource.cmp(&b.subresource))
    });
    let list = entries
        .into_iter()
        .map(|entry| {
            let mut out = Map::new();
            out.insert("manager".to_owned(), Value::from(entry.manager.as_str()));
            out.insert(
                "operation".to_owned(),
                Value::from(if entry.applied { "Apply" } else { "Update" }),
            );
            out.insert(
                "apiVersion".to_owned(),
                Value::from(entry.api_version.as_str()),
            );
            if let Some(time) = &entry.time {
                out.insert("time".to_owned(), Value::from(time.as_str()));
            }
            out.insert("fieldsType".to_owned(), Value::from("FieldsV1"));
            out.insert("fieldsV1".to_owned(), encode_fields(&entry.set));
            if !entry.subresource.is_empty() {
                out.insert(
                    "subresource".to_owned(),
                    Value::from(entry.subresource.as_str()),
                );
            }
            Value::Object(out)
        })
        .collect();
    Some(Value::Array(list))
}

fn set_managed_fields(obj: &mut Value, managed: &Managed) {
    let Value::Object(root) = obj else {
        return;
    };
    match encode_managed(managed) {
        Some(list) => {
            let meta = root
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                meta.insert("managedFields".to_owned(), list);
            }
        }
        None => {
            if let Some(Value::Object(meta)) = root.get_mut("metadata") {
                meta.remove("managedFields");
            }
        }
    }
}

/// Keeps at most [`MAX_UPDATE_MANAGERS`] Update entries by merging the
/// oldest ones, per API version, into an `ancient-changes` entry.
fn cap_update_managers(managed: &mut Managed) {
    let mut updaters: Vec<(i64, String)> = managed
        .iter()
        .filter(|(_, entry)| !entry.applied)
        .map(|(id, entry)| (unix_seconds(entry.time.as_deref()), id.clone()))
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort();
    let mut first_of_version: BTreeMap<String, String> = BTreeMap::new();
    let mut count = updaters.len();
    for (_, id) in &updaters {
        if count <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(entry) = managed.get(id).cloned() else {
            continue;
        };
        let bucket = identity(ANCIENT_CHANGES, false, &entry.api_version, "");
        if *id == bucket {
            continue;
        }
        let Some(first) = first_of_version.get(&entry.api_version) else {
            first_of_version.insert(entry.api_version.clone(), id.clone());
            continue;
        };
        if !managed.contains_key(&bucket) {
            if let Some(first) = managed.remove(first) {
                managed.insert(
                    bucket.clone(),
                    Entry {
                        manager: ANCIENT_CHANGES.to_owned(),
                        applied: false,
                        api_version: entry.api_version.clone(),
                        subresource: String::new(),
                        time: first.time,
                        set: first.set,
                    },
                );
            }
        }
        if let Some(bucket) = managed.get_mut(&bucket) {
            bucket.set.union_with(&entry.set);
            bucket.time = entry.time.clone();
        }
        managed.remove(id);
        count -= 1;
    }
}

// ---------------------------------------------------------------------------
// Field sets
// ---------------------------------------------------------------------------

/// One step of a field path: a field of an object, an item of an
/// associative list by its key fields, an item of a set by its value, or an
/// item of a list by position (only ever read from other writers' entries).
#[derive(Clone, Debug)]
enum Pe {
    Field(String),
    Key(Vec<(String, Value)>),
    Value(Value),
    Index(usize),
}

impl Pe {
    fn rank(&self) -> u8 {
        match self {
            Pe::Field(_) => 0,
            Pe::Key(_) => 1,
            Pe::Value(_) => 2,
            Pe::Index(_) => 3,
        }
    }

    /// The `FieldsV1` key: `f:name`, `k:{"name":"web"}`, `v:"x"`, `i:0`.
    fn encode(&self) -> String {
        let mut out = String::new();
        match self {
            Pe::Field(name) => {
                out.push_str("f:");
                out.push_str(name);
            }
            Pe::Key(fields) => {
                out.push_str("k:{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    go_json_string(name, &mut out);
                    out.push(':');
                    go_json(value, &mut out);
                }
                out.push('}');
            }
            Pe::Value(value) => {
                out.push_str("v:");
                go_json(value, &mut out);
            }
            Pe::Index(i) => {
                out.push_str("i:");
                out.push_str(&i.to_string());
            }
        }
        out
    }

    /// Parses a `FieldsV1` key; `None` for kinds of keys this version does
    /// not know (skipped, like upstream does).
    fn decode(key: &str) -> Result<Option<Pe>, String> {
        let bytes = key.as_bytes();
        if bytes.len() < 2 {
            return Err(format!("key must be 2 characters long: {key}"));
        }
        if bytes[1] != b':' {
            return Err(format!("missing colon: {key}"));
        }
        let rest = key.get(2..).unwrap_or("");
        Ok(Some(match bytes[0] {
            b'f' => Pe::Field(rest.to_owned()),
            b'v' => {
                Pe::Value(serde_json::from_str(rest).map_err(|e| format!("parsing {key}: {e}"))?)
            }
            b'k' => {
                let Value::Object(map) =
                    serde_json::from_str(rest).map_err(|e| format!("parsing {key}: {e}"))?
                else {
                    return Err(format!("parsing {key}: not an object"));
                };
                Pe::Key(map.into_iter().collect())
            }
            b'i' => Pe::Index(rest.parse().map_err(|e| format!("parsing {key}: {e}"))?),
            _ => return Ok(None),
        }))
    }

    /// Upstream's rendering in paths: `.name`, `[name="web"]`, `[="x"]`, `[0]`.
    fn display(&self) -> String {
        match self {
            Pe::Field(name) => format!(".{name}"),
            Pe::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={}", go_value_string(value)))
                    .collect();
                format!("[{}]", parts.join(","))
            }
            Pe::Value(value) => format!("[={}]", go_value_string(value)),
            Pe::Index(i) => format!("[{i}]"),
        }
    }
}

impl Ord for Pe {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Pe::Field(a), Pe::Field(b)) => a.cmp(b),
            (Pe::Key(a), Pe::Key(b)) => cmp_seq(a.iter(), b.iter(), |(an, av), (bn, bv)| {
                an.cmp(bn).then_with(|| cmp_json(av, bv))
            }),
            (Pe::Value(a), Pe::Value(b)) => cmp_json(a, b),
            (Pe::Index(a), Pe::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Pe {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pe {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pe {}

fn path_string(path: &[Pe]) -> String {
    path.iter().map(Pe::display).collect()
}

/// A set of field paths, as upstream keeps it: the paths ending here
/// (`members`, the `.` of `FieldsV1`) and the sets below each step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Set {
    members: BTreeSet<Pe>,
    children: BTreeMap<Pe, Set>,
}

impl Set {
    fn from_paths(paths: &[&[&str]]) -> Set {
        let mut set = Set::default();
        for path in paths {
            let path: Vec<Pe> = path
                .iter()
                .map(|name| Pe::Field((*name).to_owned()))
                .collect();
            set.insert(&path);
        }
        set
    }

    fn insert(&mut self, path: &[Pe]) {
        match path {
            [] => {}
            [pe] => {
                self.members.insert(pe.clone());
            }
            [pe, rest @ ..] => self.children.entry(pe.clone()).or_default().insert(rest),
        }
    }

    fn has(&self, path: &[Pe]) -> bool {
        match path {
            [] => false,
            [pe] => self.members.contains(pe),
            [pe, rest @ ..] => self.children.get(pe).is_some_and(|child| child.has(rest)),
        }
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.values().all(Set::is_empty)
    }

    fn union_with(&mut self, other: &Set) {
        self.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            self.children
                .entry(pe.clone())
                .or_default()
                .union_with(child);
        }
    }

    fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    fn intersection(&self, other: &Set) -> Set {
        let mut out = Set {
            members: self.members.intersection(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    /// Upstream's `Difference`: removes exactly the paths of `other`, so a
    /// parent minus its child keeps the parent and a child minus its parent
    /// stays.
    fn difference(&self, other: &Set) -> Set {
        self.subtract(other, Set::difference)
    }

    /// Upstream's `RecursiveDifference`: also drops everything below the
    /// paths of `other`.
    fn recursive_difference(&self, other: &Set) -> Set {
        let mut out = self.subtract(other, Set::recursive_difference);
        out.children.retain(|pe, _| !other.members.contains(pe));
        out
    }

    /// The members of `self` not in `other`, and its children with the
    /// matching children of `other` taken away by `below`; children left
    /// empty are dropped.
    fn subtract(&self, other: &Set, below: fn(&Set, &Set) -> Set) -> Set {
        let mut out = Set {
            members: self.members.difference(&other.members).cloned().collect(),
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => below(child, theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(pe.clone(), rest);
            }
        }
        out
    }

    /// Upstream's `EnsureNamedFieldsAreMembers`: object fields with paths
    /// below them are owned themselves too. (Upstream exempts the keys of
    /// maps; the maps of the built-in kinds hold scalars, whose keys are
    /// members anyway.)
    fn ensure_named_fields(&self) -> Set {
        let mut out = Set {
            members: self.members.clone(),
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if matches!(pe, Pe::Field(_)) {
                out.members.insert(pe.clone());
            }
            out.children.insert(pe.clone(), child.ensure_named_fields());
        }
        out
    }

    /// Every path, in upstream's order: this level's members, then each
    /// child's paths.
    fn paths(&self) -> Vec<Vec<Pe>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<Pe>, out: &mut Vec<Vec<Pe>>) {
        for pe in &self.members {
            let mut path = prefix.clone();
            path.push(pe.clone());
            out.push(path);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }
}

/// The `FieldsV1` encoding of a set: one key per step, `{}` for leaves, and
/// `"."` in the object of a step that is owned itself and has children.
fn encode_fields(set: &Set) -> Value {
    let mut map = Map::new();
    for pe in &set.members {
        if !set.children.contains_key(pe) {
            map.insert(pe.encode(), Value::Object(Map::new()));
        }
    }
    for (pe, child) in &set.children {
        let mut inner = match encode_fields(child) {
            Value::Object(inner) => inner,
            _ => Map::new(),
        };
        if set.members.contains(pe) && !inner.is_empty() {
            inner.insert(".".to_owned(), Value::Object(Map::new()));
        }
        map.insert(pe.encode(), Value::Object(inner));
    }
    Value::Object(map)
}

/// Decodes `FieldsV1`: returns the set below the node and whether the node
/// itself is owned (`"."`, or nothing below it).
fn decode_fields(value: &Value, depth: usize) -> Result<(Set, bool), String> {
    if depth > MAX_DEPTH {
        return Err(format!("fieldsV1 is nested deeper than {MAX_DEPTH} levels"));
    }
    let Value::Object(map) = value else {
        return Err("fieldsV1 must be an object".to_owned());
    };
    let mut set = Set::default();
    let mut member = false;
    for (key, child) in map {
        if key == "." {
            member = true;
            continue;
        }
        let Some(pe) = Pe::decode(key)? else {
            continue;
        };
        let (below, child_member) = decode_fields(child, depth + 1)?;
        if child_member {
            set.members.insert(pe.clone());
        }
        if !below.is_empty() {
            set.children.insert(pe, below);
        }
    }
    let member = member || set.is_empty();
    Ok((set, member))
}

/// Fields the main resource never tracks: upstream's reset fields.
fn reset_fields() -> Set {
    Set::from_paths(&[&["status"]])
}

/// Fields no manager owns: type information and server-populated metadata
/// (upstream's strip set, plus the deletion fields, which only the server
/// sets).
fn stripped_fields() -> Set {
    Set::from_paths(&[
        &["apiVersion"],
        &["kind"],
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "creationTimestamp"],
        &["metadata", "selfLink"],
        &["metadata", "uid"],
        &["metadata", "clusterName"],
        &["metadata", "generation"],
        &["metadata", "managedFields"],
        &["metadata", "resourceVersion"],
        &["metadata", "deletionTimestamp"],
        &["metadata", "deletionGracePeriodSeconds"],
    ])
}

// ---------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------

/// How a list is owned and merged.
#[derive(Clone, Debug)]
enum ListType {
    /// Owned and replaced as a whole.
    Atomic,
    /// A set of primitives: each value is owned on its own.
    Set,
    /// Items keyed by these fields, each owned on its own (as a whole when
    /// `atomic_items`).
    Map {
        keys: Vec<&'static str>,
        atomic_items: bool,
    },
}

/// What is known of a kind's structure.
struct Schema<'a> {
    group: &'a str,
    kind: &'a str,
    known: bool,
}

impl<'a> Schema<'a> {
    fn new(group: &'a str, kind: &'a str) -> Schema<'a> {
        Schema {
            group,
            kind,
            known: strategic_merge::list_merge(group, kind, &[]).is_some(),
        }
    }

    /// The type of the list at `names` (field names from the root; list
    /// items add none).
    fn list_type(&self, names: &[String]) -> ListType {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let keyed = |keys: &[&'static str], atomic_items: bool| ListType::Map {
            keys: keys.to_vec(),
            atomic_items,
        };
        let strategy = if self.known {
            strategic_merge::list_merge(self.group, self.kind, &names)
        } else {
            None
        };
        let last = names.last().copied().unwrap_or("");
        match strategy {
            // Custom resources: only their ObjectMeta is typed.
            None => match names.as_slice() {
                ["metadata", "finalizers"] => ListType::Set,
                ["metadata", "ownerReferences"] => keyed(&["uid"], true),
                _ => ListType::Atomic,
            },
            Some(ListMerge::Set) => ListType::Set,
            // Where upstream's list-map keys extend the patch merge key.
            Some(ListMerge::Keyed("containerPort")) => keyed(&["containerPort", "protocol"], false),
            Some(ListMerge::Keyed("port")) => keyed(&["port", "protocol"], false),
            Some(ListMerge::Keyed("topologyKey")) => {
                keyed(&["topologyKey", "whenUnsatisfiable"], false)
            }
            Some(ListMerge::Keyed(key)) => ListType::Map {
                keys: vec![key],
                atomic_items: ATOMIC_ITEM_LISTS.contains(&last),
            },
            // Lists upstream types although strategic merge replaces them.
            Some(ListMerge::Replace) => match names.as_slice() {
                [.., "resources", "claims"] => keyed(&["name"], false),
                [.., "validationActions"] | [.., "volumeLifecycleModes"] => ListType::Set,
                _ => ListType::Atomic,
            },
        }
    }

    /// Whether the object at `names` (not the root) is atomic.
    fn object_atomic(&self, names: &[String]) -> bool {
        self.known
            && names
                .last()
                .is_some_and(|name| ATOMIC_OBJECTS.contains(&name.as_str()))
    }

    /// The path step naming `item` in a list of type `list`.
    fn item_pe(&self, list: &ListType, item: &Value) -> Result<Pe, String> {
        match list {
            ListType::Atomic => Err("invalid indexing of non-associative list".to_owned()),
            ListType::Set => match item {
                Value::Object(_) => {
                    Err("associative list without keys has an element that's a map type".to_owned())
                }
                Value::Array(_) => {
                    Err("not supported: associative list with lists as elements".to_owned())
                }
                Value::Null => Err(
                    "associative list without keys has an element that's an explicit null"
                        .to_owned(),
                ),
                value => Ok(Pe::Value(value.clone())),
            },
            ListType::Map { keys, .. } => {
                let map = match item {
                    Value::Object(map) => map,
                    Value::Null => {
                        return Err(
                            "associative list with keys may not have a null element".to_owned()
                        )
                    }
                    _ => {
                        return Err(
                            "associative list with keys may not have non-map elements".to_owned()
                        )
                    }
                };
                let mut fields = Vec::with_capacity(keys.len());
                for key in keys {
                    let value = match map.get(*key) {
                        Some(value) => value.clone(),
                        None => key_default(key).ok_or_else(|| {
                            format!(
                                "associative list with keys has an element that omits key field {} (and doesn't have default value)",
                                go_quote(key)
                            )
                        })?,
                    };
                    fields.push(((*key).to_owned(), value));
                }
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(Pe::Key(fields))
            }
        }
    }

    /// Path steps for every item, or `None` when some item has none (such a
    /// stored list is then treated as atomic).
    fn item_pes(&self, list: &ListType, items: &[Value]) -> Option<Vec<Pe>> {
        items
            .iter()
            .map(|item| self.item_pe(list, item).ok())
            .collect()
    }

    // -- field sets ---------------------------------------------------------

    /// The fields a value sets (upstream's `ToFieldSet`). With `strict`,
    /// list items without keys and duplicated keys are errors (an applied
    /// configuration); otherwise such lists count as atomic (stored objects).
    fn field_set(&self, value: &Value, strict: bool) -> Result<Set, Vec<String>> {
        let mut walk = FieldSetWalk {
            schema: self,
            strict,
            set: Set::default(),
            errors: Vec::new(),
            names: Vec::new(),
            path: Vec::new(),
        };
        walk.value(value, false);
        if walk.errors.is_empty() {
            Ok(walk.set)
        } else {
            Err(walk.errors)
        }
    }

    // -- comparing ----------------------------------------------------------

    /// Which fields `rhs` adds, changes and removes relative to `lhs`
    /// (upstream's `Compare`).
    fn compare(&self, lhs: &Value, rhs: &Value) -> Comparison {
        let mut walk = CompareWalk {
            schema: self,
            result: Comparison::default(),
            names: Vec::new(),
            path: Vec::new(),
        };
        walk.node(Some(lhs), Some(rhs), false);
        walk.result
    }

    // -- merging ------------------------------------------------------------

    /// `config` merged into `live`: objects merge per field, associative
    /// lists per item (in upstream's order), the rest is replaced.
    fn merge(&self, live: &Value, config: &Value, atomic: bool, names: &mut Vec<String>) -> Value {
        match (live, config) {
            (Value::Object(lm), Value::Object(cm)) => {
                let is_atomic = !names.is_empty() && (atomic || self.object_atomic(names));
                if is_atomic || (lm.is_empty() && cm.is_empty()) {
                    return config.clone();
                }
                let mut out = lm.clone();
                for (key, cv) in cm {
                    let merged = match lm.get(key) {
                        Some(lv) => {
                            names.push(key.clone());
                            let merged = self.merge(lv, cv, false, names);
                            names.pop();
                            merged
                        }
                        None => cv.clone(),
                    };
                    out.insert(key.clone(), merged);
                }
                Value::Object(out)
            }
            (Value::Array(la), Value::Array(ca)) => {
                if la.is_empty() && ca.is_empty() {
                    return config.clone();
                }
                let list = self.list_type(names);
                if matches!(list, ListType::Atomic) {
                    return config.clone();
                }
                self.merge_list(la, ca, &list, names)
                    .unwrap_or_else(|| config.clone())
            }
            _ => config.clone(),
        }
    }

    /// Merges the items of an associative list: live items keep their
    /// places, applied items follow the configuration's order around the
    /// items both have (upstream's `visitListItems` of the merge walker).
    fn merge_list(
        &self,
        live: &[Value],
        config: &[Value],
        list: &ListType,
        names: &mut Vec<String>,
    ) -> Option<Value> {
        let atomic_items = matches!(
            list,
            ListType::Map {
                atomic_items: true,
                ..
            }
        );
        let lpes = self.item_pes(list, live)?;
        let rpes = self.item_pes(list, config)?;
        // Live items by key; duplicated keys merge with nothing.
        let mut observed_l: BTreeMap<&Pe, Option<&Value>> = BTreeMap::new();
        for (pe, item) in lpes.iter().zip(live) {
            observed_l
                .entry(pe)
                .and_modify(|seen| *seen = None)
                .or_insert(Some(item));
        }
        let mut observed_r: BTreeMap<&Pe, &Value> = BTreeMap::new();
        for (pe, item) in rpes.iter().zip(config) {
            observed_r.entry(pe).or_insert(item);
        }
        let mut shared: VecDeque<&Pe> = rpes
            .iter()
            .filter(|pe| observed_l.contains_key(pe))
            .collect();
        let mut next_shared = shared.pop_front();
        let mut merged_r: BTreeSet<&Pe> = BTreeSet::new();
        let mut out = Vec::with_capacity(live.len().max(config.len()));
        let merge_item = |pe: &Pe, names: &mut Vec<String>| -> Value {
            let rv = observed_r.get(pe).copied().unwrap_or(&Value::Null);
            match observed_l.get(pe).copied().flatten() {
                Some(lv) => self.merge(lv, rv, atomic_items, names),
                None => rv.clone(),
            }
        };
        let (mut l, mut r) = (0, 0);
        while l < lpes.len() || r < rpes.len() {
            if l < lpes.len() && r < rpes.len() {
                let pe = &lpes[l];
                if *pe == rpes[r] {
                    merged_r.insert(pe);
                    out.push(merge_item(pe, names));
                    l += 1;
                    r += 1;
                    next_shared = shared.pop_front();
                    continue;
                }
                if observed_r.contains_key(pe) && next_shared.is_some_and(|next| next != pe) {
                    // A shared item, but not the one due now.
                    l += 1;
                    continue;
                }
            }
            if l < lpes.len() {
                let pe = &lpes[l];
                if !observed_r.contains_key(pe) {
                    out.push(live[l].clone());
                    l += 1;
                    continue;
                }
                if merged_r.contains(pe) {
                    l += 1;
                }
            }
            if r < rpes.len() {
                let pe = &rpes[r];
                merged_r.insert(pe);
                out.push(merge_item(pe, names));
                r += 1;
                if next_shared == Some(pe) {
                    next_shared = shared.pop_front();
                }
            }
        }
        Some(Value::Array(out))
    }

    // -- removing -----------------------------------------------------------

    /// `value` without the paths of `set` (upstream's `RemoveItems`). `None`
    /// when nothing is left; a field emptied that way is dropped from its
    /// parent (upstream nulls it, which decoding drops).
    fn remove(
        &self,
        value: &Value,
        set: &Set,
        atomic: bool,
        names: &mut Vec<String>,
    ) -> Option<Value> {
        match value {
            Value::Object(map) => {
                if map.is_empty() || (!names.is_empty() && (atomic || self.object_atomic(names))) {
                    return None;
                }
                let mut out = Map::new();
                let mut kept = false;
                for (key, child) in map {
                    let pe = Pe::Field(key.clone());
                    if set.members.contains(&pe) {
                        continue;
                    }
                    kept = true;
                    match set.children.get(&pe) {
                        Some(below) if !below.is_empty() => {
                            names.push(key.clone());
                            if let Some(rest) = self.remove(child, below, false, names) {
                                out.insert(key.clone(), rest);
                            }
                            names.pop();
                        }
                        _ => {
                            out.insert(key.clone(), child.clone());
                        }
                    }
                }
                kept.then_some(Value::Object(out))
            }
            Value::Array(items) => {
                if items.is_empty() {
                    return None;
                }
                let list = self.list_type(names);
                let atomic_items = match &list {
                    ListType::Atomic => return None,
                    ListType::Set => false,
                    ListType::Map { atomic_items, .. } => *atomic_items,
                };
                let pes = self.item_pes(&list, items)?;
                let mut out = Vec::new();
                for (pe, item) in pes.iter().zip(items) {
                    if set.members.contains(pe) {
                        continue;
                    }
                    match set.children.get(pe) {
                        Some(below) if !below.is_empty() => {
                            if let Some(rest) = self.remove(item, below, atomic_items, names) {
                                out.push(rest);
                            }
                        }
                        _ => out.push(item.clone()),
                    }
                }
                (!out.is_empty()).then_some(Value::Array(out))
            }
            other => Some(other.clone()),
        }
    }

    fn remove_items(&self, value: &Value, set: &Set) -> Value {
        if set.is_empty() {
            return value.clone();
        }
        self.remove(value, set, false, &mut Vec::new())
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// Removes from `merged` what the applier owned last time (`last`) and
    /// nobody owns now (upstream's `prune` with `addBackOwnedItems` and
    /// `addBackDanglingItems`). `managed` holds the new applied set.
    fn prune(&self, merged: &Value, managed: &Managed, last: &Set) -> Value {
        let last = last.ensure_named_fields();
        let pruned = self.remove_items(merged, &last);
        // The server's metadata counts as owned, so a configuration without
        // a name cannot take the object's metadata with it.
        let mut owned = stripped_fields();
        for entry in managed.values() {
            owned.union_with(&entry.set);
        }
        let owned = owned.ensure_named_fields();
        let fields = |value: &Value| {
            self.field_set(value, false)
                .unwrap_or_default()
                .ensure_named_fields()
        };
        let merged_fields = fields(merged);
        let doomed = merged_fields.difference(&fields(&pruned).union(&owned));
        let pruned = self.remove_items(merged, &doomed);
        let doomed = merged_fields
            .difference(&fields(&pruned))
            .intersection(&last);
        self.remove_items(merged, &doomed)
    }

    // -- ownership ----------------------------------------------------------

    /// Compares `old` and `new` and takes the changed fields away from every
    /// manager but `workflow`; without `force`, refuses instead when some
    /// other manager owns a field that is added or changed (upstream's
    /// `Updater.update`).
    fn update(
        &self,
        old: &Value,
        new: &Value,
        managed: &mut Managed,
        workflow: &str,
        force: bool,
    ) -> Result<Comparison, Vec<RawConflict>> {
        let mut comparison = self.compare(old, new);
        let reset = reset_fields();
        comparison.added = comparison.added.recursive_difference(&reset);
        comparison.modified = comparison.modified.recursive_difference(&reset);
        comparison.removed = comparison.removed.recursive_difference(&reset);
        let changed = comparison.modified.union(&comparison.added);
        let mut conflicts: Vec<(String, Set)> = Vec::new();
        for (id, entry) in managed.iter() {
            if id == workflow {
                continue;
            }
            let contested = entry.set.intersection(&changed);
            if !contested.is_empty() {
                conflicts.push((id.clone(), contested));
            }
        }
        if !force && !conflicts.is_empty() {
            let mut raw = Vec::new();
            for (id, contested) in &conflicts {
                let Some(entry) = managed.get(id) else {
                    continue;
                };
                for path in contested.paths() {
                    raw.push(RawConflict {
                        conflict: Conflict {
                            manager: entry.manager.clone(),
                            api_version: if entry.applied {
                                String::new()
                            } else {
                                entry.api_version.clone()
                            },
                            field: path_string(&path),
                        },
                        path,
                    });
                }
            }
            return Err(raw);
        }
        for (id, contested) in &conflicts {
            if let Some(entry) = managed.get_mut(id) {
                entry.set = entry.set.difference(contested);
            }
        }
        if !comparison.removed.is_empty() {
            for (id, entry) in managed.iter_mut() {
                if id != workflow {
                    entry.set = entry.set.difference(&comparison.removed);
                }
            }
        }
        managed.retain(|_, entry| !entry.set.is_empty());
        Ok(comparison)
    }

    /// Records a non-apply write from `old` to `new` by `writer` (upstream's
    /// `Updater.Update` under the managed-fields updater, the strip-meta and
    /// the cap-managers managers).
    fn record_update(&self, old: &Value, new: &Value, managed: &mut Managed, writer: &Writer) {
        let Ok(comparison) = self.update(old, new, managed, CURRENT_OPERATION, true) else {
            return;
        };
        let mut set = comparison
            .modified
            .union(&comparison.added)
            .recursive_difference(&reset_fields())
            .difference(&stripped_fields());
        if !set.is_empty() {
            let id = identity(writer.manager, false, writer.api_version, "");
            if let Some(previous) = managed.remove(&id) {
                set.union_with(&previous.set);
            }
            managed.insert(
                id,
                Entry {
                    manager: writer.manager.to_owned(),
                    applied: false,
                    api_version: writer.api_version.to_owned(),
                    subresource: String::new(),
                    time: Some(writer.now.to_owned()),
                    set,
                },
            );
        }
        cap_update_managers(managed);
    }

    /// The fields kubectl's client-side apply annotation on `live` claims and
    /// that still hold the values it recorded (upstream's
    /// `allowedConflictsFromLastApplied`); `None` without a usable annotation.
    fn allowed_from_last_applied(&self, live: &Value, api_version: &str) -> Option<Set> {
        let text = last_applied_of(live).filter(|text| !text.is_empty())?;
        let last: Value = serde_json::from_str(text).ok()?;
        if !last.is_object()
            || !within_depth(&last)
            || last.get("apiVersion").and_then(Value::as_str) != Some(api_version)
        {
            return None;
        }
        let fields = self.field_set(&last, true).ok()?;
        let comparison = self.compare(&last, live);
        Some(
            fields
                .difference(&comparison.modified)
                .difference(&comparison.added)
                .difference(&comparison.removed),
        )
    }

    /// Drops the `null`s the configuration set from the merged object (Go
    /// decoding drops them upstream).
    fn drop_config_nulls(
        &self,
        out: &mut Value,
        config: &Value,
        atomic: bool,
        names: &mut Vec<String>,
    ) {
        match (out, config) {
            (Value::Object(om), Value::Object(cm)) => {
                if !names.is_empty() && (atomic || self.object_atomic(names)) {
                    strip_nulls(om);
                    return;
                }
                for (key, cv) in cm {
                    if cv.is_null() {
                        if om.get(key).is_some_and(Value::is_null) {
                            om.remove(key);
                        }
                        continue;
                    }
                    if let Some(ov) = om.get_mut(key) {
                        names.push(key.clone());
                        self.drop_config_nulls(ov, cv, false, names);
                        names.pop();
                    }
                }
            }
            (Value::Array(oa), Value::Array(ca)) => {
                let list = self.list_type(names);
                match &list {
                    ListType::Atomic => {
                        for item in oa.iter_mut() {
                            if let Value::Object(map) = item {
                                strip_nulls(map);
                            }
                        }
                    }
                    ListType::Set => {}
                    ListType::Map { atomic_items, .. } => {
                        let mut by_key: BTreeMap<Pe, &Value> = BTreeMap::new();
                        for item in ca {
                            if let Ok(pe) = self.item_pe(&list, item) {
                                by_key.entry(pe).or_insert(item);
                            }
                        }
                        for item in oa.iter_mut() {
                            let Ok(pe) = self.item_pe(&list, item) else {
                                continue;
                            };
                            if let Some(cv) = by_key.get(&pe) {
                                self.drop_config_nulls(item, cv, *atomic_items, names);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// The values key fields take when an item omits them (upstream's schema
/// defaults for list-map keys; only the protocol of ports has one here).
fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::from("TCP"))
}

fn strip_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, value| !value.is_null());
    for value in map.values_mut() {
        match value {
            Value::Object(inner) => strip_nulls(inner),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        strip_nulls(inner);
                    }
                }
            }
            _ => {}
        }
    }
}

struct FieldSetWalk<'s, 'a> {
    schema: &'s Schema<'a>,
    strict: bool,
    set: Set,
    errors: Vec<String>,
    names: Vec<String>,
    path: Vec<Pe>,
}

impl FieldSetWalk<'_, '_> {
    fn value(&mut self, value: &Value, atomic: bool) {
        match value {
            Value::Object(map) => {
                if !self.path.is_empty() && (atomic || self.schema.object_atomic(&self.names)) {
                    self.set.insert(&self.path);
                    return;
                }
                for (key, child) in map {
                    self.names.push(key.clone());
                    self.path.push(Pe::Field(key.clone()));
                    self.value(child, false);
                    if child.is_null() || child.as_object().is_some_and(Map::is_empty) {
                        self.set.insert(&self.path);
                    }
                    self.path.pop();
                    self.names.pop();
                }
            }
            Value::Array(items) => self.list(items),
            _ => self.set.insert(&self.path),
        }
    }

    fn list(&mut self, items: &[Value]) {
        let list = self.schema.list_type(&self.names);
        let atomic_items = match &list {
            ListType::Atomic => {
                self.set.insert(&self.path);
                return;
            }
            ListType::Set => false,
            ListType::Map { atomic_items, .. } => *atomic_items,
        };
        let mut pes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match self.schema.item_pe(&list, item) {
                Ok(pe) => pes.push(pe),
                Err(message) => {
                    if self.strict {
                        self.errors.push(format!(
                            "{}: element {i}: {message}",
                            path_string(&self.path)
                        ));
                    } else {
                        self.set.insert(&self.path);
                    }
                    return;
                }
            }
        }
        let mut seen = BTreeSet::new();
        let mut duplicated = BTreeSet::new();
        for pe in &pes {
            if !seen.insert(pe) {
                if self.strict {
                    self.errors.push(format!(
                        "{}: duplicate entries for key {}",
                        path_string(&self.path),
                        pe.display()
                    ));
                }
                duplicated.insert(pe);
            }
        }
        for (pe, item) in pes.iter().zip(items) {
            self.path.push(pe.clone());
            if !duplicated.contains(pe) {
                self.value(item, atomic_items);
            }
            self.set.insert(&self.path);
            self.path.pop();
        }
    }
}

/// The fields one object adds, changes and removes relative to another.
#[derive(Debug, Default)]
struct Comparison {
    added: Set,
    modified: Set,
    removed: Set,
}

/// The kind of node two values compare as.
enum Shape {
    Object,
    List,
    Leaf,
}

/// A `null` takes the shape of the value it is compared with: upstream
/// reads it as an empty object or list that is there.
fn shape(l: Option<&Value>, r: Option<&Value>) -> Shape {
    let mut shape = None;
    for value in [l, r].into_iter().flatten() {
        let this = match value {
            Value::Null => continue,
            Value::Object(_) => 1,
            Value::Array(_) => 2,
            _ => return Shape::Leaf,
        };
        match shape {
            None => shape = Some(this),
            Some(seen) if seen != this => return Shape::Leaf,
            Some(_) => {}
        }
    }
    match shape {
        Some(1) => Shape::Object,
        Some(2) => Shape::List,
        _ => Shape::Leaf,
    }
}

struct CompareWalk<'s, 'a> {
    schema: &'s Schema<'a>,
    result: Comparison,
    names: Vec<String>,
    path: Vec<Pe>,
}

impl CompareWalk<'_, '_> {
    fn node(&mut self, l: Option<&Value>, r: Option<&Value>, atomic: bool) {
        match shape(l, r) {
            Shape::Leaf => self.leaf(l, r),
            Shape::Object => {
                let lm = l.and_then(Value::as_object);
                let rm = r.and_then(Value::as_object);
                let empty = lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty);
                let is_atomic =
                    !self.path.is_empty() && (atomic || self.schema.object_atomic(&self.names));
                if empty || is_atomic {
                    self.leaf(l, r);
                    return;
                }
                let keys: BTreeSet<&String> = lm
                    .into_iter()
                    .flat_map(Map::keys)
                    .chain(rm.into_iter().flat_map(Map::keys))
                    .collect();
                for key in keys {
                    self.names.push(key.clone());
                    self.path.push(Pe::Field(key.clone()));
                    self.node(
                        lm.and_then(|m| m.get(key)),
                        rm.and_then(|m| m.get(key)),
                        false,
                    );
                    self.path.pop();
                    self.names.pop();
                }
                self.after_children(l, r);
            }
            Shape::List => {
                let la = l.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
                let ra = r.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
                let list = self.schema.list_type(&self.names);
                let atomic_items = match &list {
                    ListType::Atomic => None,
                    ListType::Set => Some(false),
                    ListType::Map { atomic_items, .. } => Some(*atomic_items),
                };
                let indexed = (
                    self.schema.item_pes(&list, la),
                    self.schema.item_pes(&list, ra),
                );
                let (Some(atomic_items), (Some(lpes), Some(rpes))) = (atomic_items, indexed) else {
                    self.leaf(l, r);
                    return;
                };
                if la.is_empty() && ra.is_empty() {
                    self.leaf(l, r);
                    return;
                }
                let mut by_key: BTreeMap<&Pe, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
                for (pe, item) in lpes.iter().zip(la) {
                    by_key.entry(pe).or_default().0.push(item);
                }
                for (pe, item) in rpes.iter().zip(ra) {
                    by_key.entry(pe).or_default().1.push(item);
                }
                for (pe, (lv, rv)) in by_key {
                    self.path.push(pe.clone());
                    match (lv.len(), rv.len()) {
                        (0 | 1, 0 | 1) => {
                            self.node(lv.first().copied(), rv.first().copied(), atomic_items)
                        }
                        (a, b) if a >= 2 && b >= 2 => {
                            let same = a == b && lv.iter().zip(&rv).all(|(x, y)| json_eq(x, y));
                            if !same {
                                self.result.modified.insert(&self.path);
                            }
                        }
                        (a, _) if a >= 2 => {
                            if let Some(first) = rv.first() {
                                self.node(None, Some(first), atomic_items);
                            }
                            self.result.removed.insert(&self.path);
                        }
                        _ => {
                            if let Some(first) = lv.first() {
                                self.node(Some(first), None, atomic_items);
                            }
                            self.result.added.insert(&self.path);
                        }
                    }
                    self.path.pop();
                }
                self.after_children(l, r);
            }
        }
    }

    fn leaf(&mut self, l: Option<&Value>, r: Option<&Value>) {
        match (l, r) {
            (None, _) => self.result.added.insert(&self.path),
            (_, None) => self.result.removed.insert(&self.path),
            (Some(l), Some(r)) if !json_eq(l, r) => self.result.modified.insert(&self.path),
            _ => {}
        }
    }

    /// A non-leaf node that appears or disappears is itself added or removed.
    fn after_children(&mut self, l: Option<&Value>, r: Option<&Value>) {
        if l.is_none() {
            self.result.added.insert(&self.path);
        } else if r.is_none() {
            self.result.removed.insert(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Applying
// ---------------------------------------------------------------------------

/// A conflict with the path it is about.
struct RawConflict {
    conflict: Conflict,
    path: Vec<Pe>,
}

fn into_conflicts(raw: Vec<RawConflict>) -> ApplyError {
    ApplyError::Conflicts(raw.into_iter().map(|c| c.conflict).collect())
}

/// One apply request.
struct Applier<'s, 'a> {
    schema: &'s Schema<'a>,
    id: String,
    writer: Writer<'a>,
    config: &'a Value,
    config_set: Set,
}

impl Applier<'_, '_> {
    /// Applies the configuration to `live` (upstream's `Updater.Apply` under
    /// the managed-fields updater and the strip-meta manager); returns the
    /// object (`live` itself when nothing changed) and the new entries.
    fn apply(
        &self,
        live: &Value,
        managed: &Managed,
        force: bool,
    ) -> Result<(Value, Managed), Vec<RawConflict>> {
        let mut managed = managed.clone();
        let merged = self.schema.merge(live, self.config, false, &mut Vec::new());
        let previous = managed.get(&self.id);
        let last = previous.map(|entry| entry.set.clone());
        let time = previous.and_then(|entry| entry.time.clone());
        managed.insert(
            self.id.clone(),
            Entry {
                manager: self.writer.manager.to_owned(),
                applied: true,
                api_version: self.writer.api_version.to_owned(),
                subresource: String::new(),
                time,
                set: self.config_set.recursive_difference(&reset_fields()),
            },
        );
        let merged = match &last {
            Some(last) if !last.is_empty() => self.schema.prune(&merged, &managed, last),
            _ => merged,
        };
        self.schema
            .update(live, &merged, &mut managed, &self.id, force)?;
        let changed = !json_eq(live, &merged);
        if let Some(entry) = managed.get_mut(&self.id) {
            entry.set = entry.set.difference(&stripped_fields());
            if changed {
                entry.time = Some(self.writer.now.to_owned());
            }
        }
        managed.retain(|_, entry| !entry.set.is_empty());
        Ok((if changed { merged } else { live.clone() }, managed))
    }
}

fn last_applied_of(obj: &Value) -> Option<&str> {
    obj.get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
}

/// The annotation kubectl's client-side apply would now record: the
/// configuration without the annotation itself, as Go encodes it.
fn build_last_applied(config: &Value) -> String {
    let mut config = config.clone();
    if let Some(Value::Object(annotations)) = config
        .get_mut("metadata")
        .and_then(|meta| meta.get_mut("annotations"))
    {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    let mut out = String::new();
    go_json(&config, &mut out);
    out.push('\n');
    out
}

fn set_last_applied(obj: &mut Value, text: String) {
    if let Some(Value::Object(annotations)) = obj
        .get_mut("metadata")
        .and_then(|meta| meta.get_mut("annotations"))
    {
        annotations.insert(LAST_APPLIED_ANNOTATION.to_owned(), Value::String(text));
    }
}

/// The object `Creater.New` gives upstream, as JSON: what the Go zero value
/// of a kind serialises to (non-pointer structs are present, some lists are
/// `null`). Creates are compared against it, so fields that always exist
/// (`spec`, a template's `metadata` and `spec`, ...) are not owned as added
/// nodes. Only the parts that matter for ownership are given.
fn zero_object(group: &str, kind: &str) -> Value {
    let template = || {
        serde_json::json!({
            "metadata": {"creationTimestamp": null},
            "spec": {"containers": null}
        })
    };
    let mut zero = match (group, kind) {
        ("", "Pod") => serde_json::json!({"spec": {"containers": null}}),
        ("", "PodTemplate") => serde_json::json!({"template": template()}),
        ("apps", "Deployment") => serde_json::json!({
            "spec": {"selector": null, "template": template(), "strategy": {}}
        }),
        ("apps", "ReplicaSet") => serde_json::json!({
            "spec": {"selector": null, "template": template()}
        }),
        ("apps", "DaemonSet") | ("apps", "StatefulSet") => serde_json::json!({
            "spec": {"selector": null, "template": template(), "updateStrategy": {}}
        }),
        ("batch", "Job") => serde_json::json!({"spec": {"template": template()}}),
        ("batch", "CronJob") => serde_json::json!({
            "spec": {
                "schedule": "",
                "jobTemplate": {
                    "metadata": {"creationTimestamp": null},
                    "spec": {"template": template()}
                }
            }
        }),
        ("", "PersistentVolumeClaim") => serde_json::json!({"spec": {"resources": {}}}),
        ("", "LimitRange") => serde_json::json!({"spec": {"limits": null}}),
        ("", "Event") => serde_json::json!({"involvedObject": {}, "source": {}}),
        ("", "ReplicationController")
        | ("", "Service")
        | ("", "Namespace")
        | ("", "Node")
        | ("", "PersistentVolume")
        | ("", "ResourceQuota")
        | ("coordination.k8s.io", "Lease")
        | ("policy", "PodDisruptionBudget")
        | ("networking.k8s.io", "Ingress")
        | ("networking.k8s.io", "IngressClass")
        | ("networking.k8s.io", "ServiceCIDR")
        | ("storage.k8s.io", "CSIDriver")
        | ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy")
        | ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            serde_json::json!({"spec": {}})
        }
        ("autoscaling", "HorizontalPodAutoscaler") => serde_json::json!({
            "spec": {"scaleTargetRef": {"kind": "", "name": ""}, "maxReplicas": 0}
        }),
        ("networking.k8s.io", "NetworkPolicy") => serde_json::json!({"spec": {"podSelector": {}}}),
        ("storage.k8s.io", "CSINode") => serde_json::json!({"spec": {"drivers": null}}),
        ("rbac.authorization.k8s.io", "Role") | ("rbac.authorization.k8s.io", "ClusterRole") => {
            serde_json::json!({"rules": null})
        }
        ("rbac.authorization.k8s.io", "RoleBinding")
        | ("rbac.authorization.k8s.io", "ClusterRoleBinding") => serde_json::json!({
            "roleRef": {"apiGroup": "", "kind": "", "name": ""}
        }),
        ("discovery.k8s.io", "EndpointSlice") => {
            serde_json::json!({"addressType": "", "endpoints": null})
        }
        _ => serde_json::json!({}),
    };
    if let Value::Object(map) = &mut zero {
        map.insert(
            "metadata".to_owned(),
            serde_json::json!({"creationTimestamp": null}),
        );
    }
    zero
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn within_depth(value: &Value) -> bool {
    fn walk(value: &Value, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match value {
            Value::Object(map) => map.values().all(|v| walk(v, depth + 1)),
            Value::Array(items) => items.iter().all(|v| walk(v, depth + 1)),
            _ => true,
        }
    }
    walk(value, 0)
}

fn join_errors(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        _ => {
            let mut out = String::from("errors:");
            for error in errors {
                out.push_str("\n  ");
                out.push_str(error);
            }
            out
        }
    }
}

/// Go's rendering of a GroupVersionKind: `apps/v1, Kind=Deployment`.
fn gvk_string(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

/// Upstream's `namespace/name; gvk` naming of an object in errors.
fn object_gvknn(obj: &Value) -> String {
    let meta = |key: &str| {
        obj.get("metadata")
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let text = |key: &str| obj.get(key).and_then(Value::as_str).unwrap_or("");
    format!(
        "{}/{}; {}",
        meta("namespace"),
        meta("name"),
        gvk_string(text("apiVersion"), text("kind"))
    )
}

fn unix_seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| {
        ::time::OffsetDateTime::parse(t, &::time::format_description::well_known::Rfc3339).ok()
    })
    .map_or(0, |t| t.unix_timestamp())
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => cmp_json(a, b) == Ordering::Equal,
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_eq(v, w))
        }
        _ => a == b,
    }
}

/// Upstream's total order of values: numbers, then strings, booleans,
/// lists, maps, and null last.
fn cmp_json(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let int = |n: &serde_json::Number| {
                n.as_i64()
                    .map(i128::from)
                    .or_else(|| n.as_u64().map(i128::from))
            };
            match (int(x), int(y)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => {
                    let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
                }
            }
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => cmp_seq(x.iter(), y.iter(), cmp_json),
        (Value::Object(x), Value::Object(y)) => cmp_seq(x.iter(), y.iter(), |(k, v), (l, w)| {
            k.cmp(l).then_with(|| cmp_json(v, w))
        }),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Lexicographic order of two sequences by `cmp`, the shorter first when
/// one is a prefix of the other.
fn cmp_seq<I: ExactSizeIterator>(
    a: I,
    b: I,
    cmp: impl Fn(I::Item, I::Item) -> Ordering,
) -> Ordering {
    let by_len = a.len().cmp(&b.len());
    for (x, y) in a.zip(b) {
        let order = cmp(x, y);
        if order != Ordering::Equal {
            return order;
        }
    }
    by_len
}

/// Upstream's `value.ToString`, used in paths: strings quoted, numbers and
/// booleans bare.
fn go_value_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::String(s) => go_quote(s),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_value_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", go_value_string(v)))
            .collect(),
    }
}

/// A JSON string as Go's encoder writes it (HTML-sensitive characters
/// escaped).
fn go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Compact JSON as Go's encoder writes it: keys sorted, HTML escaped.
fn go_json(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => go_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_string(key, out);
                out.push(':');
                go_json(item, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: &str = "2024-05-01T10:00:00Z";
    const T1: &str = "2024-05-01T10:05:00Z";
    const T2: &str = "2024-05-01T10:10:00Z";
    const CSA: &str = "kubectl-client-side-apply";

    /// A small Deployment configuration, as `kubectl apply --server-side`
    /// sends it.
    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "web",
                        "image": image,
                        "ports": [{"containerPort": 80}]
                    }]}
                }
            }
        })
    }

    fn apply_deployment(
        live: Option<&Value>,
        config: &Value,
        manager: &str,
        force: bool,
        now: &str,
    ) -> Result<Value, ApplyError> {
        apply(
            "apps",
            "Deployment",
            "apps/v1",
            live,
            config,
            manager,
            force,
            now,
        )
    }

    fn applied_ok(live: Option<&Value>, config: &Value, manager: &str, now: &str) -> Value {
        apply_deployment(live, config, manager, false, now).expect("apply succeeds")
    }

    /// Creates the object as a non-apply writer would.
    fn created_by(manager: &str, obj: Value, now: &str) -> Value {
        let mut obj = obj;
        track_update(
            "apps",
            "Deployment",
            "apps/v1",
            None,
            &mut obj,
            manager,
            now,
        );
        obj
    }

    fn updated_by(manager: &str, old: &Value, change: impl FnOnce(&mut Value), now: &str) -> Value {
        let mut new = old.clone();
        change(&mut new);
        track_update(
            "apps",
            "Deployment",
            "apps/v1",
            Some(old),
            &mut new,
            manager,
            now,
        );
        new
    }

    fn entries(obj: &Value) -> Vec<Value> {
        obj["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn entry(obj: &Value, manager: &str, operation: &str) -> Value {
        entries(obj)
            .into_iter()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
            .unwrap_or_else(|| panic!("no {operation} entry for {manager} in {obj:#}"))
    }

    fn managers(obj: &Value) -> Vec<(String, String)> {
        entries(obj)
            .iter()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap_or("").to_owned(),
                    e["operation"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    fn conflicts(result: Result<Value, ApplyError>) -> (Vec<Conflict>, String) {
        match result {
            Err(err @ ApplyError::Conflicts(_)) => {
                let text = err.to_string();
                let ApplyError::Conflicts(list) = err else {
                    unreachable!()
                };
                (list, text)
            }
            other => panic!("expected conflicts, got {other:?}"),
        }
    }

    fn invalid(result: Result<Value, ApplyError>) -> String {
        match result {
            Err(ApplyError::Invalid(message)) => message,
            other => panic!("expected an invalid configuration, got {other:?}"),
        }
    }

    fn without_managed_fields(obj: &Value) -> Value {
        let mut obj = obj.clone();
        remove_managed_fields(&mut obj);
        obj
    }

    fn container_names(obj: &Value) -> Vec<&str> {
        obj["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("?"))
            .collect()
    }

    #[test]
    fn create_by_apply_records_the_applied_fields() {
        let config = deployment(2, "nginx:1.25");
        let obj = applied_ok(None, &config, "kubectl", T0);
        assert_eq!(without_managed_fields(&obj), config);
        assert_eq!(
            obj["metadata"]["managedFields"],
            json!([{
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "time": T0,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {"f:app": {}}},
                            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                                ".": {},
                                "f:image": {},
                                "f:name": {},
                                "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                    ".": {},
                                    "f:containerPort": {}
                                }}
                            }}}
                        }
                    }
                }
            }])
        );
    }

    #[test]
    fn reapply_changes_replicas_and_the_time() {
        let first = applied_ok(None, &deployment(2, "nginx:1.25"), "kubectl", T0);
        let second = applied_ok(Some(&first), &deployment(5, "nginx:1.25"), "kubectl", T1);
        assert_eq!(second["spec"]["replicas"], 5);
        let before = entry(&first, "kubectl", "Apply");
        let after = entry(&second, "kubectl", "Apply");
        assert_eq!(after["fieldsV1"], before["fieldsV1"]);
        assert_eq!(after["time"], T1);
        assert_eq!(entries(&second).len(), 1);

        // Applying the same again changes nothing, not even the time.
        let third = applied_ok(Some(&second), &deployment(5, "nginx:1.25"), "kubectl", T2);
        assert_eq!(third, second);
    }

    #[test]
    fn conflict_with_an_update_manager() {
        let live = created_by(CSA, deployment(2, "nginx:1.25"), T0);
        assert_eq!(managers(&live), [(CSA.to_owned(), "Update".to_owned())]);

        let result = apply_deployment(
            Some(&live),
            &deployment(3, "nginx:1.25"),
            "kubectl",
            false,
            T1,
        );
        let (list, text) = conflicts(result);
        assert_eq!(
            list,
            [Conflict {
                manager: CSA.to_owned(),
                api_version: "apps/v1".to_owned(),
                field: ".spec.replicas".to_owned(),
            }]
        );
        assert_eq!(
            text,
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        assert_eq!(
            list[0].message(),
            "conflict with \"kubectl-client-side-apply\" using apps/v1"
        );
        assert_eq!(
            apply_deployment(
                Some(&live),
                &deployment(3, "nginx:1.25"),
                "kubectl",
                false,
                T1
            )
            .map(|_| ())
            .map_err(|e| e.status_code()),
            Err(409)
        );

        // The same values are shared, not contested.
        let shared = applied_ok(Some(&live), &deployment(2, "nginx:1.25"), "kubectl", T1);
        assert_eq!(
            without_managed_fields(&shared),
            without_managed_fields(&live)
        );
        assert_eq!(
            entry(&shared, CSA, "Update")["fieldsV1"],
            entry(&live, CSA, "Update")["fieldsV1"]
        );
        assert!(entry(&shared, "kubectl", "Apply")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some());
        // Nothing changed, so the new applier's entry has no time yet.
        assert!(entry(&shared, "kubectl", "Apply").get("time").is_none());
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let live = created_by(CSA, deployment(2, "nginx:1.25"), T0);
        let live = applied_ok(
            Some(&live),
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default", "labels": {"team": "a"}}
            }),
            "labeller",
            T1,
        );
        let mut config = deployment(3, "nginx:1.26");
        config["metadata"]["labels"]["team"] = json!("b");
        let (list, text) = conflicts(apply_deployment(Some(&live), &config, "kubectl", false, T2));
        assert_eq!(list.len(), 3);
        assert_eq!(
            text,
            "Apply failed with 3 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n\
             - .spec.replicas\n\
             - .spec.template.spec.containers[name=\"web\"].image\n\
             conflicts with \"labeller\":\n\
             - .metadata.labels.team"
        );
        // Appliers are named without a version.
        let labeller = list
            .iter()
            .find(|c| c.manager == "labeller")
            .expect("labeller");
        assert_eq!(labeller.api_version, "");
        assert_eq!(labeller.message(), "conflict with \"labeller\"");
    }

    #[test]
    fn force_takes_ownership() {
        let live = created_by(CSA, deployment(2, "nginx:1.25"), T0);
        let obj = apply_deployment(
            Some(&live),
            &deployment(3, "nginx:1.25"),
            "kubectl",
            true,
            T1,
        )
        .expect("forced apply");
        assert_eq!(obj["spec"]["replicas"], 3);
        let csa = entry(&obj, CSA, "Update");
        assert!(csa["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        assert!(csa["fieldsV1"]["f:spec"].get("f:selector").is_some());
        assert_eq!(csa["time"], T0);
        let kubectl = entry(&obj, "kubectl", "Apply");
        assert!(kubectl["fieldsV1"]["f:spec"].get("f:replicas").is_some());
        assert_eq!(kubectl["time"], T1);
        // Appliers come first.
        assert_eq!(
            managers(&obj),
            [
                ("kubectl".to_owned(), "Apply".to_owned()),
                (CSA.to_owned(), "Update".to_owned())
            ]
        );

        // A manager left with nothing is dropped.
        let small = created_by(
            "creator",
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"}, "spec": {"replicas": 1}
            }),
            T0,
        );
        let obj = apply_deployment(
            Some(&small),
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"}, "spec": {"replicas": 4}
            }),
            "kubectl",
            true,
            T1,
        )
        .expect("forced apply");
        assert_eq!(managers(&obj), [("kubectl".to_owned(), "Apply".to_owned())]);
    }

    #[test]
    fn fields_dropped_from_the_configuration_are_removed() {
        let mut config = deployment(2, "nginx:1.25");
        config["metadata"]["labels"]["tier"] = json!("frontend");
        config["spec"]["minReadySeconds"] = json!(5);
        config["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
            .push(json!({"name": "extra", "image": "busybox"}));
        let first = applied_ok(None, &config, "kubectl", T0);

        let second = applied_ok(Some(&first), &deployment(2, "nginx:1.25"), "kubectl", T1);
        assert_eq!(second["metadata"]["labels"], json!({"app": "web"}));
        assert!(second["spec"].get("minReadySeconds").is_none());
        assert_eq!(container_names(&second), ["web"]);
        assert_eq!(
            entry(&second, "kubectl", "Apply")["fieldsV1"],
            entry(
                &applied_ok(None, &deployment(2, "nginx:1.25"), "kubectl", T0),
                "kubectl",
                "Apply"
            )["fieldsV1"]
        );
    }

    #[test]
    fn server_metadata_survives_pruning() {
        let mut live = applied_ok(None, &deployment(2, "nginx:1.25"), "kubectl", T0);
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["resourceVersion"] = json!("7");
        live["status"] = json!({"replicas": 2});
        let bare = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 2}});
        let obj = applied_ok(Some(&live), &bare, "kubectl", T1);
        assert_eq!(obj["metadata"]["uid"], "u-1", "metadata kept: {obj:#}");
        assert_eq!(obj["metadata"]["name"], "web");
        assert_eq!(obj["metadata"]["resourceVersion"], "7");
        assert!(obj["metadata"].get("labels").is_none());
        assert_eq!(obj["status"], json!({"replicas": 2}));
        assert!(obj["spec"].get("template").is_none());
        assert_eq!(obj["spec"]["replicas"], 2);
    }

    #[test]
    fn dropped_fields_another_manager_owns_are_kept() {
        let mut config = deployment(2, "nginx:1.25");
        config["metadata"]["labels"]["tier"] = json!("frontend");
        let first = applied_ok(None, &config, "kubectl", T0);
        // Another applier claims the same label with the same value.
        let shared = applied_ok(
            Some(&first),
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "frontend"}}
            }),
            "other",
            T1,
        );
        let after = applied_ok(Some(&shared), &deployment(2, "nginx:1.25"), "kubectl", T2);
        assert_eq!(after["metadata"]["labels"]["tier"], "frontend");

        // Fields set by an updater are theirs, and stay too.
        let first = applied_ok(None, &deployment(2, "nginx:1.25"), "kubectl", T0);
        let edited = updated_by(
            "kubectl-edit",
            &first,
            |o| {
                o["spec"]["paused"] = json!(true);
            },
            T1,
        );
        let after = applied_ok(Some(&edited), &deployment(2, "nginx:1.25"), "kubectl", T2);
        assert_eq!(after["spec"]["paused"], true);
    }

    #[test]
    fn containers_merge_by_name_keeping_another_managers_env() {
        let first = applied_ok(None, &deployment(2, "nginx:1.25"), "kubectl", T0);
        let injected = updated_by(
            "injector",
            &first,
            |o| {
                let containers = o["spec"]["template"]["spec"]["containers"]
                    .as_array_mut()
                    .expect("containers");
                containers[0]["env"] = json!([{"name": "A", "value": "1"}]);
                containers.push(json!({"name": "sidecar", "image": "proxy:1"}));
            },
            T1,
        );
        let injector = entry(&injected, "injector", "Update");
        assert_eq!(
            injector["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"],
            json!({
                "k:{\"name\":\"web\"}": {"f:env": {
                    ".": {},
                    "k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}
                }},
                "k:{\"name\":\"sidecar\"}": {".": {}, "f:image": {}, "f:name": {}}
            })
        );

        let second = applied_ok(Some(&injected), &deployment(2, "nginx:1.26"), "kubectl", T2);
        assert_eq!(container_names(&second), ["web", "sidecar"]);
        let web = &second["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(web["image"], "nginx:1.26");
        assert_eq!(web["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(
            entry(&second, "injector", "Update")["fieldsV1"],
            injector["fieldsV1"]
        );
        let kubectl = entry(&second, "kubectl", "Apply");
        assert!(
            kubectl["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
                ["k:{\"name\":\"web\"}"]
                .get("f:env")
                .is_none()
        );

        // Env merges by name too.
        let mut config = deployment(2, "nginx:1.26");
        config["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "B", "value": "2"}]);
        let third = applied_ok(Some(&second), &config, "kubectl", T2);
        assert_eq!(
            third["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
    }

    #[test]
    fn labels_are_owned_one_by_one() {
        let first = applied_ok(None, &deployment(2, "nginx:1.25"), "kubectl", T0);
        let label = |name: &str, value: &str| {
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default", "labels": {name: value}}
            })
        };
        let second = applied_ok(Some(&first), &label("team", "payments"), "labeller", T1);
        assert_eq!(
            second["metadata"]["labels"],
            json!({"app": "web", "team": "payments"})
        );
        assert_eq!(
            entry(&second, "labeller", "Apply")["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:team": {}}}})
        );
        // kubectl re-applies without the label: it is not kubectl's to remove.
        let third = applied_ok(Some(&second), &deployment(2, "nginx:1.25"), "kubectl", T2);
        assert_eq!(third["metadata"]["labels"]["team"], "payments");
        // The labeller moves to another label: its old one goes, app stays.
        let fourth = applied_ok(Some(&third), &label("owner", "me"), "labeller", T2);
        assert_eq!(
            fourth["metadata"]["labels"],
            json!({"app": "web", "owner": "me"})
        );
    }

    #[test]
    fn track_update_records_a_create() {
        let obj = created_by(CSA, deployment(2, "nginx:1.25"), T0);
        assert_eq!(
            entries(&obj),
            [json!({
                "manager": CSA,
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": T0,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                                ".": {},
                                "f:image": {},
                                "f:name": {},
                                "f:ports": {
                                    ".": {},
                                    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                        ".": {},
                                        "f:containerPort": {}
                                    }
                                }
                            }}}
                        }
                    }
                }
            })]
        );
    }

    #[test]
    fn track_update_moves_ownership() {
        let created = created_by("creator", deployment(2, "nginx:1.25"), T0);
        let scaled = updated_by("scaler", &created, |o| o["spec"]["replicas"] = json!(4), T1);
        let creator = entry(&scaled, "creator", "Update");
        assert!(creator["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        assert_eq!(creator["time"], T0);
        assert_eq!(
            entry(&scaled, "scaler", "Update"),
            json!({
                "manager": "scaler", "operation": "Update", "apiVersion": "apps/v1",
                "time": T1, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}}
            })
        );
        // Oldest first among updaters.
        assert_eq!(
            managers(&scaled),
            [
                ("creator".to_owned(), "Update".to_owned()),
                ("scaler".to_owned(), "Update".to_owned())
            ]
        );

        // The scaler scales again: same entry, new time.
        let again = updated_by("scaler", &scaled, |o| o["spec"]["replicas"] = json!(6), T2);
        assert_eq!(entry(&again, "scaler", "Update")["time"], T2);
        assert_eq!(entries(&again).len(), 2);

        // A write that changes nothing touches nothing.
        let same = updated_by("scaler", &again, |_| {}, "2030-01-01T00:00:00Z");
        assert_eq!(same, again);

        // The creator takes the field back; the scaler's entry is dropped.
        let back = updated_by("creator", &again, |o| o["spec"]["replicas"] = json!(2), T2);
        assert_eq!(
            managers(&back),
            [("creator".to_owned(), "Update".to_owned())]
        );
        assert_eq!(entry(&back, "creator", "Update")["time"], T2);

        // Removing a field takes it from its owner; a write that only
        // removes gets no entry.
        let removed = updated_by(
            "cleaner",
            &created,
            |o| {
                o["metadata"]["labels"] = json!({});
            },
            T1,
        );
        let creator = entry(&removed, "creator", "Update");
        assert_eq!(creator["fieldsV1"]["f:metadata"], json!({"f:labels": {}}));
        assert_eq!(
            managers(&removed),
            [("creator".to_owned(), "Update".to_owned())]
        );
    }

    #[test]
    fn track_update_honours_the_requests_managed_fields() {
        let update = |old: &Value, new: &mut Value| {
            track_update("apps", "Deployment", "apps/v1", Some(old), new, "x", T1)
        };
        let created = created_by("creator", deployment(2, "nginx:1.25"), T0);
        // An existing object without managedFields stays untracked.
        let mut untracked = without_managed_fields(&created);
        untracked["metadata"]["uid"] = json!("u-1");
        let mut new = untracked.clone();
        new["spec"]["replicas"] = json!(3);
        update(&untracked, &mut new);
        assert!(new["metadata"].get("managedFields").is_none());

        // `[]` clears them.
        let mut tracked = created.clone();
        tracked["metadata"]["uid"] = json!("u-1");
        let mut new = tracked.clone();
        new["metadata"]["managedFields"] = json!([]);
        update(&tracked, &mut new);
        assert!(new["metadata"].get("managedFields").is_none());

        // Entries a client sends replace the stored ones.
        let mut new = tracked.clone();
        new["metadata"]["managedFields"] = json!([{
            "manager": "restored", "operation": "Apply", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}
        }]);
        update(&tracked, &mut new);
        assert_eq!(
            managers(&new),
            [("restored".to_owned(), "Apply".to_owned())]
        );

        // Malformed ones fall back to the stored entries.
        let mut new = tracked.clone();
        new["metadata"]["managedFields"] = json!([{"manager": "bad", "operation": "Delete"}]);
        new["spec"]["paused"] = json!(true);
        update(&tracked, &mut new);
        assert_eq!(
            managers(&new),
            [
                ("creator".to_owned(), "Update".to_owned()),
                ("x".to_owned(), "Update".to_owned())
            ]
        );
    }

    #[test]
    fn status_and_server_fields_are_not_tracked() {
        let mut obj = deployment(2, "nginx:1.25");
        obj["metadata"]["uid"] = json!("u-1");
        obj["metadata"]["resourceVersion"] = json!("7");
        obj["metadata"]["creationTimestamp"] = json!(T0);
        obj["metadata"]["generation"] = json!(1);
        obj["status"] =
            json!({"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]});
        let created = created_by("creator", obj.clone(), T0);
        let fields = &entry(&created, "creator", "Update")["fieldsV1"];
        assert!(fields.get("f:status").is_none());
        assert_eq!(
            fields["f:metadata"],
            json!({"f:labels": {".": {}, "f:app": {}}})
        );

        let updated = updated_by(
            "controller",
            &created,
            |o| {
                o["status"]["replicas"] = json!(3);
                o["metadata"]["generation"] = json!(2);
            },
            T1,
        );
        assert_eq!(
            managers(&updated),
            [("creator".to_owned(), "Update".to_owned())]
        );

        let applied = applied_ok(
            None,
            &{
                let mut c = deployment(2, "nginx:1.25");
                c["status"] = json!({"replicas": 9});
                c
            },
            "kubectl",
            T0,
        );
        assert!(entry(&applied, "kubectl", "Apply")["fieldsV1"]
            .get("f:status")
            .is_none());
    }

    #[test]
    fn ports_are_keyed_with_their_protocol() {
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080}, {"port": 53, "protocol": "UDP"}]
            }
        });
        let obj = apply("", "Service", "v1", None, &service, "kubectl", false, T0).expect("apply");
        assert_eq!(
            entry(&obj, "kubectl", "Apply")["fieldsV1"],
            json!({"f:spec": {
                "f:ports": {
                    "k:{\"port\":53,\"protocol\":\"UDP\"}": {".": {}, "f:port": {}, "f:protocol": {}},
                    "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}
                },
                "f:selector": {}
            }})
        );
        // Same port, other protocol: another item.
        let more = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80, "protocol": "UDP"}]}
        });
        let obj = apply("", "Service", "v1", Some(&obj), &more, "other", false, T1).expect("apply");
        assert_eq!(obj["spec"]["ports"].as_array().map(Vec::len), Some(3));

        // The selector is atomic: replaced, not merged.
        let mut selector = service.clone();
        selector["spec"]["selector"] = json!({"tier": "web"});
        let obj = apply(
            "",
            "Service",
            "v1",
            Some(&obj),
            &selector,
            "kubectl",
            false,
            T2,
        )
        .expect("apply");
        assert_eq!(obj["spec"]["selector"], json!({"tier": "web"}));
    }

    #[test]
    fn merged_lists_keep_upstreams_order() {
        let schema = Schema::new("", "Pod");
        let names = |list: &Value| -> Vec<String> {
            list["spec"]["containers"]
                .as_array()
                .expect("list")
                .iter()
                .map(|c| c["name"].as_str().unwrap_or("?").to_owned())
                .collect()
        };
        let pod = |names: &[&str]| json!({"spec": {"containers": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()}});
        let merged = schema.merge(
            &pod(&["a", "b", "c"]),
            &pod(&["d", "b"]),
            false,
            &mut Vec::new(),
        );
        assert_eq!(names(&merged), ["a", "d", "b", "c"]);
        let merged = schema.merge(&pod(&["a", "b"]), &pod(&["b", "a"]), false, &mut Vec::new());
        assert_eq!(names(&merged), ["b", "a"]);
        let merged = schema.merge(
            &pod(&["a", "b", "c"]),
            &pod(&["b", "d"]),
            false,
            &mut Vec::new(),
        );
        assert_eq!(names(&merged), ["a", "b", "c", "d"]);
    }

    #[test]
    fn sets_and_unknown_kinds() {
        let widget = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "finalizers": ["example.com/cleanup"]},
            "spec": {"sizes": [1, 2], "items": [{"name": "a"}]}
        });
        let obj = apply(
            "example.com",
            "Widget",
            "example.com/v1",
            None,
            &widget,
            "ctl",
            false,
            T0,
        )
        .expect("apply");
        assert_eq!(
            entry(&obj, "ctl", "Apply")["fieldsV1"],
            json!({
                "f:metadata": {"f:finalizers": {"v:\"example.com/cleanup\"": {}}},
                "f:spec": {"f:items": {}, "f:sizes": {}}
            })
        );
        // Another manager adds a finalizer; atomic lists are replaced.
        let other = json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "finalizers": ["other/x"]}
        });
        let obj = apply(
            "example.com",
            "Widget",
            "example.com/v1",
            Some(&obj),
            &other,
            "o",
            false,
            T1,
        )
        .expect("apply");
        assert_eq!(
            obj["metadata"]["finalizers"],
            json!(["example.com/cleanup", "other/x"])
        );
        let mut changed = widget.clone();
        changed["spec"]["items"] = json!([{"name": "b"}]);
        let obj = apply(
            "example.com",
            "Widget",
            "example.com/v1",
            Some(&obj),
            &changed,
            "ctl",
            false,
            T2,
        )
        .expect("apply");
        assert_eq!(obj["spec"]["items"], json!([{"name": "b"}]));
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let config = deployment(2, "nginx:1.25");
        assert_eq!(
            apply_deployment(None, &json!([1]), "kubectl", false, T0)
                .map(|_| ())
                .map_err(|e| e.status_code()),
            Err(400)
        );
        assert_eq!(
            invalid(apply_deployment(None, &json!([1]), "kubectl", false, T0)),
            "the applied configuration must be an object"
        );
        let mut wrong = config.clone();
        wrong["kind"] = json!("ReplicaSet");
        assert_eq!(
            invalid(apply_deployment(None, &wrong, "kubectl", false, T0)),
            "invalid object type: apps/v1, Kind=ReplicaSet"
        );
        let mut wrong = config.clone();
        wrong["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            invalid(apply_deployment(None, &wrong, "kubectl", false, T0)),
            "metadata.managedFields must be nil"
        );
        let mut wrong = config.clone();
        wrong["spec"]["template"]["spec"]["containers"] = json!([{"image": "x"}]);
        assert_eq!(
            invalid(apply_deployment(None, &wrong, "kubectl", false, T0)),
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): \
             .spec.template.spec.containers: element 0: associative list with keys has an \
             element that omits key field \"name\" (and doesn't have default value)"
        );
        let mut wrong = config.clone();
        wrong["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "a"}, {"name": "a", "image": "x"}]);
        assert_eq!(
            invalid(apply_deployment(None, &wrong, "kubectl", false, T0)),
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): \
             .spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
        );
        let mut wrong = config.clone();
        wrong["metadata"]["finalizers"] = json!([{"a": 1}]);
        assert!(invalid(apply_deployment(None, &wrong, "kubectl", false, T0))
            .ends_with(".metadata.finalizers: element 0: associative list without keys has an element that's a map type"));

        let mut deep = json!("leaf");
        for _ in 0..(MAX_DEPTH + 5) {
            deep = json!({ "x": deep });
        }
        let mut wrong = config.clone();
        wrong["spec"]["template"]["metadata"]["annotations"] = deep.clone();
        assert!(invalid(apply_deployment(None, &wrong, "kubectl", false, T0)).contains("deeper"));
        let mut live = config.clone();
        live["spec"]["x"] = deep.clone();
        assert!(
            invalid(apply_deployment(Some(&live), &config, "kubectl", false, T0))
                .contains("stored object")
        );
        // Updates of too-deep objects are left alone rather than failing.
        let mut new = live.clone();
        track_update("apps", "Deployment", "apps/v1", None, &mut new, "x", T0);
        assert_eq!(new, live);
    }

    #[test]
    fn client_side_apply_hands_over_to_kubectl() {
        let config = deployment(2, "nginx:1.25");
        let mut obj = config.clone();
        obj["metadata"]["annotations"] = json!({
            LAST_APPLIED_ANNOTATION: build_last_applied(&config)
        });
        let live = created_by(CSA, obj, T0);
        // kubectl's server-side apply may change what it applied client-side.
        let obj = applied_ok(Some(&live), &deployment(3, "nginx:1.25"), "kubectl", T1);
        assert_eq!(obj["spec"]["replicas"], 3);
        assert!(entry(&obj, CSA, "Update")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none());
        let annotation = obj["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
            .as_str()
            .expect("annotation");
        assert!(annotation.ends_with("}\n"));
        let recorded: Value = serde_json::from_str(annotation).expect("json");
        assert_eq!(recorded, deployment(3, "nginx:1.25"));

        // Another manager gets no such pass.
        let (list, _) = conflicts(apply_deployment(
            Some(&live),
            &deployment(3, "nginx:1.25"),
            "other",
            false,
            T1,
        ));
        assert_eq!(list.len(), 1);
        // Nor does kubectl for fields the annotation does not cover.
        let edited = updated_by(
            "kubectl-edit",
            &live,
            |o| o["spec"]["paused"] = json!(false),
            T1,
        );
        let mut config = deployment(2, "nginx:1.25");
        config["spec"]["paused"] = json!(true);
        let (list, _) = conflicts(apply_deployment(
            Some(&edited),
            &config,
            "kubectl",
            false,
            T2,
        ));
        assert_eq!(list[0].field, ".spec.paused");
    }

    #[test]
    fn untracked_objects_belong_to_before_first_apply() {
        let mut live = deployment(2, "nginx:1.25");
        live["metadata"]["uid"] = json!("u-1");
        let (list, _) = conflicts(apply_deployment(
            Some(&live),
            &deployment(3, "nginx:1.25"),
            "kubectl",
            false,
            T1,
        ));
        assert_eq!(list[0].manager, BEFORE_FIRST_APPLY);
        let obj = applied_ok(Some(&live), &deployment(2, "nginx:1.25"), "kubectl", T1);
        assert_eq!(
            managers(&obj),
            [
                ("kubectl".to_owned(), "Apply".to_owned()),
                (BEFORE_FIRST_APPLY.to_owned(), "Update".to_owned())
            ]
        );
    }

    #[test]
    fn nulls_in_the_configuration_are_owned_but_not_stored() {
        let mut config = deployment(2, "nginx:1.25");
        config["spec"]["paused"] = Value::Null;
        config["spec"]["template"]["spec"]["containers"][0]["command"] = Value::Null;
        let obj = applied_ok(None, &config, "kubectl", T0);
        assert!(obj["spec"].get("paused").is_none());
        assert!(obj["spec"]["template"]["spec"]["containers"][0]
            .get("command")
            .is_none());
        let fields = &entry(&obj, "kubectl", "Apply")["fieldsV1"];
        assert!(fields["f:spec"].get("f:paused").is_some());
    }

    #[test]
    fn fields_v1_round_trips() {
        let fields = json!({
            "f:metadata": {"f:annotations": {".": {}, "f:a": {}}, "f:finalizers": {".": {}, "v:\"x\"": {}}},
            "f:spec": {
                "f:list": {"i:0": {}},
                "f:ports": {".": {}, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
            }
        });
        let (set, _) = decode_fields(&fields, 0).expect("decodes");
        assert_eq!(encode_fields(&set), fields);
        assert!(set.has(&[
            Pe::Field("metadata".into()),
            Pe::Field("annotations".into())
        ]));
        assert!(!set.has(&[Pe::Field("spec".into())]));
        let paths: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(
            paths,
            [
                ".metadata.annotations",
                ".metadata.finalizers",
                ".metadata.annotations.a",
                ".metadata.finalizers[=\"x\"]",
                ".spec.ports",
                ".spec.list[0]",
                ".spec.ports[containerPort=80,protocol=\"TCP\"]",
                ".spec.ports[containerPort=80,protocol=\"TCP\"].containerPort",
            ]
        );
        // Unknown kinds of keys are skipped; malformed ones are errors.
        let (set, _) = decode_fields(&json!({"x:y": {}, "f:a": {}}), 0).expect("decodes");
        assert_eq!(encode_fields(&set), json!({"f:a": {}}));
        assert!(decode_fields(&json!({"k:[1]": {}}), 0).is_err());
        assert!(decode_fields(&json!({"f": {}}), 0).is_err());
        assert!(decode_fields(&json!({"f:a": 1}), 0).is_err());
    }

    #[test]
    fn update_managers_are_capped() {
        let mut obj = created_by(
            "creator",
            deployment(2, "nginx:1.25"),
            "2024-05-01T09:00:00Z",
        );
        for i in 0..10 {
            let old = obj.clone();
            let now = format!("2024-05-01T10:{i:02}:00Z");
            obj = updated_by(
                &format!("m{i}"),
                &old,
                |o| {
                    o["metadata"]["labels"][format!("l{i}")] = json!("x");
                },
                &now,
            );
        }
        let list = managers(&obj);
        assert_eq!(list.len(), 10);
        assert_eq!(list[0], (ANCIENT_CHANGES.to_owned(), "Update".to_owned()));
        let ancient = entry(&obj, ANCIENT_CHANGES, "Update");
        assert_eq!(ancient["time"], "2024-05-01T10:00:00Z");
        assert!(ancient["fieldsV1"]["f:spec"].get("f:replicas").is_some());
        assert!(ancient["fieldsV1"]["f:metadata"]["f:labels"]
            .get("f:l0")
            .is_some());
        assert!(!list.contains(&("creator".to_owned(), "Update".to_owned())));
        assert!(!list.contains(&("m0".to_owned(), "Update".to_owned())));
    }

    #[test]
    fn atomic_objects_are_owned_whole() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {
                "nodeSelector": {"disk": "ssd"},
                "imagePullSecrets": [{"name": "regcred"}],
                "containers": [{"name": "c", "image": "x", "env": [
                    {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ]}]
            }
        });
        let obj = apply("", "Pod", "v1", None, &pod, "kubectl", false, T0).expect("apply");
        assert_eq!(
            entry(&obj, "kubectl", "Apply")["fieldsV1"]["f:spec"],
            json!({
                "f:containers": {"k:{\"name\":\"c\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:valueFrom": {"f:fieldRef": {}}}}
                }},
                "f:imagePullSecrets": {"k:{\"name\":\"regcred\"}": {}},
                "f:nodeSelector": {}
            })
        );
    }

    #[test]
    fn strategic_merge_schema_is_exposed() {
        use strategic_merge::list_merge;
        let containers = ["spec", "template", "spec", "containers"];
        assert_eq!(
            list_merge("apps", "Deployment", &containers),
            Some(ListMerge::Keyed("name"))
        );
        assert_eq!(
            list_merge(
                "apps",
                "Deployment",
                &[&containers[..], &["ports"]].concat()
            ),
            Some(ListMerge::Keyed("containerPort"))
        );
        assert_eq!(
            list_merge("", "Pod", &["metadata", "finalizers"]),
            Some(ListMerge::Set)
        );
        assert_eq!(
            list_merge("", "Pod", &["spec", "tolerations"]),
            Some(ListMerge::Replace)
        );
        assert_eq!(list_merge("example.com", "Widget", &["spec"]), None);
        let schema = Schema::new("", "Pod");
        let names = |path: &[&str]| path.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(matches!(
            schema.list_type(&names(&["spec", "topologySpreadConstraints"])),
            ListType::Map { ref keys, .. } if keys == &["topologyKey", "whenUnsatisfiable"]
        ));
        assert!(matches!(
            schema.list_type(&names(&["spec", "containers", "resources", "claims"])),
            ListType::Map { ref keys, .. } if keys == &["name"]
        ));
    }
}
