//! The OpenAPI schemas of the served kinds, from k8s-openapi's `schemars` impls, built once and
//! shared: strict decoding walks request bodies against them, and defaulting uses them to find
//! every quantity and timestamp to canonicalise.

use std::collections::HashMap;
use std::sync::OnceLock;

use schemars::SchemaGenerator;
use serde_json::{Map, Value};

/// Deepest nesting any walker descends to; real objects are far shallower.
pub(crate) const MAX_DEPTH: usize = 64;

macro_rules! kind_table {
    ($(($g:literal, $k:literal, $t:ty)),* $(,)?) => {
        fn register(gen: &mut SchemaGenerator, roots: &mut HashMap<String, String>) {
            $(
                let root = gen.subschema_for::<$t>();
                if let Some(name) = root.get("$ref").and_then(Value::as_str).and_then(def_name) {
                    roots.insert(format!("{}/{}", $g, $k), name.to_string());
                }
            )*
        }

        /// Decodes `obj` into the kind's k8s-openapi type: Err with serde's message when a value
        /// has the wrong type. None for kinds not in the table.
        pub(crate) fn typed_decode(group: &str, kind: &str, obj: &Value) -> Option<Result<(), String>> {
            match (group, kind) {
                $( ($g, $k) => Some(serde_json::from_value::<$t>(obj.clone()).map(|_| ()).map_err(|e| e.to_string())), )*
                _ => None,
            }
        }
    };
}

kind_table! {
    ("", "Namespace", k8s_openapi::api::core::v1::Namespace),
    ("", "Node", k8s_openapi::api::core::v1::Node),
    ("", "Pod", k8s_openapi::api::core::v1::Pod),
    ("", "Service", k8s_openapi::api::core::v1::Service),
    ("", "Endpoints", k8s_openapi::api::core::v1::Endpoints),
    ("", "ConfigMap", k8s_openapi::api::core::v1::ConfigMap),
    ("", "Secret", k8s_openapi::api::core::v1::Secret),
    ("", "ServiceAccount", k8s_openapi::api::core::v1::ServiceAccount),
    ("", "Event", k8s_openapi::api::core::v1::Event),
    ("", "PersistentVolume", k8s_openapi::api::core::v1::PersistentVolume),
    ("", "PersistentVolumeClaim", k8s_openapi::api::core::v1::PersistentVolumeClaim),
    ("", "ResourceQuota", k8s_openapi::api::core::v1::ResourceQuota),
    ("", "LimitRange", k8s_openapi::api::core::v1::LimitRange),
    ("", "PodTemplate", k8s_openapi::api::core::v1::PodTemplate),
    ("apps", "Deployment", k8s_openapi::api::apps::v1::Deployment),
    ("apps", "ReplicaSet", k8s_openapi::api::apps::v1::ReplicaSet),
    ("apps", "DaemonSet", k8s_openapi::api::apps::v1::DaemonSet),
    ("apps", "StatefulSet", k8s_openapi::api::apps::v1::StatefulSet),
    ("apps", "ControllerRevision", k8s_openapi::api::apps::v1::ControllerRevision),
    ("batch", "Job", k8s_openapi::api::batch::v1::Job),
    ("batch", "CronJob", k8s_openapi::api::batch::v1::CronJob),
    ("coordination.k8s.io", "Lease", k8s_openapi::api::coordination::v1::Lease),
    ("discovery.k8s.io", "EndpointSlice", k8s_openapi::api::discovery::v1::EndpointSlice),
    ("rbac.authorization.k8s.io", "Role", k8s_openapi::api::rbac::v1::Role),
    ("rbac.authorization.k8s.io", "ClusterRole", k8s_openapi::api::rbac::v1::ClusterRole),
    ("rbac.authorization.k8s.io", "RoleBinding", k8s_openapi::api::rbac::v1::RoleBinding),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", k8s_openapi::api::rbac::v1::ClusterRoleBinding),
    ("networking.k8s.io", "NetworkPolicy", k8s_openapi::api::networking::v1::NetworkPolicy),
    ("scheduling.k8s.io", "PriorityClass", k8s_openapi::api::scheduling::v1::PriorityClass),
    ("policy", "PodDisruptionBudget", k8s_openapi::api::policy::v1::PodDisruptionBudget),
    ("storage.k8s.io", "StorageClass", k8s_openapi::api::storage::v1::StorageClass),
    ("events.k8s.io", "Event", k8s_openapi::api::events::v1::Event),
}

fn def_name(reference: &str) -> Option<&str> {
    reference
        .strip_prefix("#/$defs/")
        .or_else(|| reference.strip_prefix("#/definitions/"))
}

/// All definitions, and the definition name of each kind's root type.
pub(crate) struct Schemas {
    defs: Map<String, Value>,
    roots: HashMap<String, String>,
}

/// The shared schemas, generated on first use.
pub(crate) fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut gen = SchemaGenerator::default();
        let mut roots = HashMap::new();
        register(&mut gen, &mut roots);
        let mut defs = gen.take_definitions(false);
        // Descriptions are large and unused here.
        for def in defs.values_mut() {
            strip_descriptions(def, 0);
        }
        Schemas { defs, roots }
    })
}

fn strip_descriptions(v: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            m.remove("description");
            for x in m.values_mut() {
                strip_descriptions(x, depth + 1);
            }
        }
        Value::Array(a) => {
            for x in a {
                strip_descriptions(x, depth + 1);
            }
        }
        _ => {}
    }
}

/// What a schema says a value must be.
#[derive(Clone, Copy)]
pub(crate) enum Shape<'a> {
    /// A struct: its definition name (e.g. `io.k8s.api.apps.v1.DeploymentSpec`) and fields.
    Struct(&'a str, &'a Map<String, Value>),
    /// A map with string keys; the schema of its values.
    Map(&'a Value),
    /// A list; the schema of its items.
    List(&'a Value),
    Str,
    /// A base64-encoded byte string (`format: byte`).
    Bytes,
    /// An integer of the given format (`int32`, `int64`, or empty).
    Int(&'a str),
    Float,
    Bool,
    IntOrString,
    Quantity,
    Time,
    MicroTime,
    /// Anything goes (RawExtension, FieldsV1, unknown schemas).
    Free,
}

impl Schemas {
    /// The root schema of a kind, if served.
    pub(crate) fn root(&self, group: &str, kind: &str) -> Option<Shape<'_>> {
        let name = self.roots.get(&format!("{group}/{kind}"))?;
        Some(self.shape_of_def(name))
    }

    fn shape_of_def<'a>(&'a self, name: &'a str) -> Shape<'a> {
        match name {
            "io.k8s.apimachinery.pkg.api.resource.Quantity" => return Shape::Quantity,
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => return Shape::IntOrString,
            "io.k8s.apimachinery.pkg.apis.meta.v1.Time" => return Shape::Time,
            "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime" => return Shape::MicroTime,
            _ => {}
        }
        match self.defs.get(name) {
            Some(def) => match def.get("properties").and_then(Value::as_object) {
                Some(props) => Shape::Struct(name, props),
                None => self.shape(def),
            },
            None => Shape::Free,
        }
    }

    /// The shape of a (sub)schema.
    pub(crate) fn shape<'a>(&'a self, schema: &'a Value) -> Shape<'a> {
        if let Some(name) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(def_name)
        {
            return self.shape_of_def(name);
        }
        if schema.get("x-kubernetes-int-or-string").is_some() {
            return Shape::IntOrString;
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("string") => match schema.get("format").and_then(Value::as_str) {
                Some("byte") => Shape::Bytes,
                _ => Shape::Str,
            },
            Some("integer") => {
                Shape::Int(schema.get("format").and_then(Value::as_str).unwrap_or(""))
            }
            Some("number") => Shape::Float,
            Some("boolean") => Shape::Bool,
            Some("array") => match schema.get("items") {
                Some(items) => Shape::List(items),
                None => Shape::Free,
            },
            Some("object") => match schema.get("additionalProperties") {
                Some(v) if v.is_object() => Shape::Map(v),
                _ => Shape::Free,
            },
            _ => Shape::Free,
        }
    }

    /// Go's name for the type a shape decodes into, as `encoding/json` prints it.
    pub(crate) fn go_type(&self, shape: Shape<'_>, depth: usize) -> String {
        if depth > 8 {
            return "interface {}".to_string();
        }
        match shape {
            Shape::Struct(name, _) => go_struct_type(name),
            Shape::Map(v) => format!("map[string]{}", self.go_type(self.shape(v), depth + 1)),
            Shape::List(v) => format!("[]{}", self.go_type(self.shape(v), depth + 1)),
            Shape::Str => "string".to_string(),
            Shape::Bytes => "[]uint8".to_string(),
            Shape::Int(f) => match f {
                "int32" => "int32".to_string(),
                _ => "int64".to_string(),
            },
            Shape::Float => "float64".to_string(),
            Shape::Bool => "bool".to_string(),
            Shape::IntOrString => "intstr.IntOrString".to_string(),
            Shape::Quantity => "resource.Quantity".to_string(),
            Shape::Time => "v1.Time".to_string(),
            Shape::MicroTime => "v1.MicroTime".to_string(),
            Shape::Free => "runtime.RawExtension".to_string(),
        }
    }
}

/// `io.k8s.api.apps.v1.DeploymentSpec` → `v1.DeploymentSpec`.
pub(crate) fn go_struct_type(def: &str) -> String {
    let mut parts = def.rsplit('.');
    let ty = parts.next().unwrap_or(def);
    match parts.next() {
        Some(pkg) => format!("{pkg}.{ty}"),
        None => ty.to_string(),
    }
}

/// `io.k8s.api.apps.v1.DeploymentSpec` → `DeploymentSpec`.
pub(crate) fn short_name(def: &str) -> &str {
    def.rsplit('.').next().unwrap_or(def)
}
