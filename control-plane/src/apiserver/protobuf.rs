//! Kubernetes protobuf objects as Kubernetes JSON.
//!
//! client-go's typed clients send built-in kinds as `application/vnd.kubernetes.protobuf`, while
//! the API server stores JSON. [`to_json`] decodes the object from the `runtime.Unknown` envelope
//! with the `k8s-pb` types and writes the JSON Kubernetes itself would write for it.
//!
//! Field names and presence follow the JSON tags of the Go types (k8s.io/api v0.35, the release
//! k8s-pb 0.9 is generated from). Go's protobuf encoder always writes non-pointer fields, so a
//! decoded `Some("")` or `Some(0)` may just mean "unset". Each field is converted with one of the
//! [`Obj`] methods:
//!
//! - `opt`: non-pointer scalar tagged `omitempty`; left out when zero, as Go's JSON does.
//! - `req`: non-pointer scalar without `omitempty`; always written, zero when absent.
//! - `ptr`: pointer scalar; written whenever it was sent, even when zero (`spec.replicas: 0`).
//! - `msg`: nested object or special value; written whenever it was sent. Go always sends
//!   non-pointer structs, and its JSON writes them too (`"resources": {}`).
//! - `list`, `vals`, `map`: left out when empty.
//! - `inline`: a Go struct embedded with `json:",inline"`; its fields are merged in.
//!
//! Where Go's JSON would write `null` (nil slices and maps without `omitempty`, zero timestamps)
//! the field is left out instead: Kubernetes reads `null` and absent alike. `apiVersion` and
//! `kind` are not part of the protobuf object; the caller adds them.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_pb::api::{
    apps::v1 as apps, authorization::v1 as authorization, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    events::v1 as events, networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::RawExtension;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost014::Message;
use serde_json::{Map, Value};

/// Why a protobuf body could not be read; the handler turns it into a Status, and `Display` is
/// its message.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The bytes are not a valid encoding of the kind (400 Bad Request).
    #[error("malformed protobuf body: {0}")]
    Malformed(String),
    /// No converter exists for this kind (415 Unsupported Media Type); the message fits the
    /// "(got …)" of `Status::unsupported_media_type`.
    #[error("application/vnd.kubernetes.protobuf for {0}")]
    UnsupportedKind(String),
}

/// The JSON form of the protobuf-encoded object `raw` (the `raw` of the `runtime.Unknown`
/// envelope, without the `k8s\0` magic) of `kind` in API group `group` (`""` for core), exactly
/// as Kubernetes would write the same object in JSON, minus `apiVersion` and `kind`. Each group
/// is read as its `v1`, the only version client-go sends for these kinds.
pub fn to_json(group: &str, kind: &str, raw: &[u8]) -> Result<Value, ProtobufError> {
    match (group, kind) {
        ("", "Namespace") => decode(raw, namespace),
        ("", "Pod") => decode(raw, pod),
        ("", "Service") => decode(raw, service),
        ("", "ConfigMap") => decode(raw, config_map),
        ("", "Secret") => decode(raw, secret),
        ("", "ServiceAccount") => decode(raw, service_account),
        ("", "ResourceQuota") => decode(raw, resource_quota),
        ("", "Endpoints") => decode(raw, endpoints),
        ("", "Event") => decode(raw, event),
        ("", "Node") => decode(raw, node),
        ("", "PersistentVolumeClaim") => decode(raw, persistent_volume_claim),
        ("", "PersistentVolume") => decode(raw, persistent_volume),
        ("", "LimitRange") => decode(raw, limit_range),
        ("", "ReplicationController") => decode(raw, replication_controller),
        ("", "PodTemplate") => decode(raw, pod_template),
        ("", "Binding") => decode(raw, binding),
        ("apps", "Deployment") => decode(raw, deployment),
        ("apps", "ReplicaSet") => decode(raw, replica_set),
        ("apps", "DaemonSet") => decode(raw, daemon_set),
        ("apps", "StatefulSet") => decode(raw, stateful_set),
        ("apps", "ControllerRevision") => decode(raw, controller_revision),
        ("batch", "Job") => decode(raw, job),
        ("batch", "CronJob") => decode(raw, cron_job),
        ("rbac.authorization.k8s.io", "Role") => decode(raw, role),
        ("rbac.authorization.k8s.io", "ClusterRole") => decode(raw, cluster_role),
        ("rbac.authorization.k8s.io", "RoleBinding") => decode(raw, role_binding),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => decode(raw, cluster_role_binding),
        ("scheduling.k8s.io", "PriorityClass") => decode(raw, priority_class),
        ("storage.k8s.io", "StorageClass") => decode(raw, storage_class),
        ("coordination.k8s.io", "Lease") => decode(raw, lease),
        ("authorization.k8s.io", "SelfSubjectAccessReview") => {
            decode(raw, self_subject_access_review)
        }
        ("networking.k8s.io", "NetworkPolicy") => decode(raw, network_policy),
        ("networking.k8s.io", "Ingress") => decode(raw, ingress),
        ("networking.k8s.io", "IngressClass") => decode(raw, ingress_class),
        ("networking.k8s.io", "IPAddress") => decode(raw, ip_address),
        ("networking.k8s.io", "ServiceCIDR") => decode(raw, service_cidr),
        ("discovery.k8s.io", "EndpointSlice") => decode(raw, endpoint_slice),
        ("policy", "PodDisruptionBudget") => decode(raw, pod_disruption_budget),
        ("policy", "Eviction") => decode(raw, eviction),
        ("events.k8s.io", "Event") => decode(raw, events_event),
        // Every group version accepts DeleteOptions as the body of a DELETE.
        (_, "DeleteOptions") => decode(raw, delete_options),
        ("", _) => Err(ProtobufError::UnsupportedKind(kind.to_string())),
        _ => Err(ProtobufError::UnsupportedKind(format!("{kind}.{group}"))),
    }
}

/// The result of converting one value.
type Res = Result<Value, ProtobufError>;

fn decode<M: Message + Default>(raw: &[u8], convert: fn(M) -> Res) -> Res {
    let message = M::decode(raw).map_err(|e| ProtobufError::Malformed(e.to_string()))?;
    convert(message)
}

/// A JSON object being built field by field; the first conversion error is kept and returned
/// by [`Obj::done`].
struct Obj(Result<Map<String, Value>, ProtobufError>);

impl Obj {
    fn new() -> Self {
        Obj(Ok(Map::new()))
    }

    /// Sets `key` unless the value is `null` (a zero timestamp, an empty embedded object).
    fn put(mut self, key: &str, value: Res) -> Self {
        if let Ok(map) = &mut self.0 {
            match value {
                Ok(Value::Null) => {}
                Ok(value) => {
                    map.insert(key.to_string(), value);
                }
                Err(e) => self.0 = Err(e),
            }
        }
        self
    }

    /// A non-pointer scalar tagged `omitempty`: left out when zero.
    fn opt<T: Into<Value> + Default + PartialEq>(self, key: &str, v: Option<T>) -> Self {
        match v {
            Some(v) if v != T::default() => self.put(key, Ok(v.into())),
            _ => self,
        }
    }

    /// A non-pointer scalar without `omitempty`: always written.
    fn req<T: Into<Value> + Default>(self, key: &str, v: Option<T>) -> Self {
        self.put(key, Ok(v.unwrap_or_default().into()))
    }

    /// A pointer scalar: written when sent.
    fn ptr<T: Into<Value>>(self, key: &str, v: Option<T>) -> Self {
        match v {
            Some(v) => self.put(key, Ok(v.into())),
            None => self,
        }
    }

    /// A list of scalars.
    fn vals<T: Into<Value>>(self, key: &str, v: Vec<T>) -> Self {
        if v.is_empty() {
            return self;
        }
        self.put(
            key,
            Ok(Value::Array(v.into_iter().map(Into::into).collect())),
        )
    }

    /// A nested object or special value: written when sent.
    fn msg<M>(self, key: &str, v: Option<M>, convert: fn(M) -> Res) -> Self {
        match v {
            Some(v) => self.put(key, convert(v)),
            None => self,
        }
    }

    /// A list of objects.
    fn list<M>(self, key: &str, v: Vec<M>, convert: fn(M) -> Res) -> Self {
        if v.is_empty() {
            return self;
        }
        let items = v.into_iter().map(convert).collect::<Result<_, _>>();
        self.put(key, items.map(Value::Array))
    }

    /// A map with string keys.
    fn map<M>(self, key: &str, v: BTreeMap<String, M>, convert: fn(M) -> Res) -> Self {
        if v.is_empty() {
            return self;
        }
        let entries = v
            .into_iter()
            .map(|(k, v)| Ok((k, convert(v)?)))
            .collect::<Result<_, _>>();
        self.put(key, entries.map(Value::Object))
    }

    /// A struct embedded with `json:",inline"`: its fields become this object's.
    fn inline<M>(mut self, v: Option<M>, convert: fn(M) -> Res) -> Self {
        let Some(v) = v else { return self };
        match (&mut self.0, convert(v)) {
            (Ok(map), Ok(Value::Object(fields))) => map.extend(fields),
            (Ok(_), Err(e)) => self.0 = Err(e),
            _ => {}
        }
        self
    }

    fn done(self) -> Res {
        self.0.map(Value::Object)
    }
}

fn text(s: String) -> Res {
    Ok(Value::String(s))
}

/// `[]byte`, which Go's JSON writes as standard base64.
fn b64(bytes: Vec<u8>) -> Res {
    Ok(base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .into())
}

/// `resource.Quantity`: its canonical string, which client-go has already produced.
fn quantity(q: Quantity) -> Res {
    match q.string {
        Some(s) if !s.is_empty() => Ok(Value::String(s)),
        _ => Err(ProtobufError::Malformed("empty quantity".into())),
    }
}

/// `intstr.IntOrString`: type 0 is a number, type 1 a string.
fn int_or_string(v: IntOrString) -> Res {
    match v.r#type.unwrap_or(0) {
        0 => Ok(v.int_val.unwrap_or(0).into()),
        1 => Ok(v.str_val.unwrap_or_default().into()),
        other => Err(ProtobufError::Malformed(format!(
            "IntOrString of type {other}"
        ))),
    }
}

/// `metav1.Time`: RFC 3339 in UTC to the second (Go drops the nanoseconds when decoding).
fn timestamp(t: meta::Time) -> Res {
    rfc3339(t.seconds.unwrap_or(0), 0, false)
}

/// `metav1.MicroTime`: RFC 3339 in UTC with microseconds.
fn micro_timestamp(t: meta::MicroTime) -> Res {
    rfc3339(t.seconds.unwrap_or(0), t.nanos.unwrap_or(0), true)
}

/// Formats a Unix time; the zero time (an empty message) is `null`, as in Go.
fn rfc3339(seconds: i64, nanos: i32, micros: bool) -> Res {
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    // Go truncates towards zero to whole microseconds before building the time.
    let nanos = i128::from(nanos / 1000 * 1000);
    let out_of_range = || ProtobufError::Malformed(format!("time {seconds}s out of range"));
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(seconds) * 1_000_000_000 + nanos,
    )
    .map_err(|_| out_of_range())?;
    if !(0..=9999).contains(&t.year()) {
        return Err(out_of_range());
    }
    Ok(Value::String(super::defaults::format_time(t, micros)))
}

/// `runtime.RawExtension`: the embedded object, which Go's JSON writes verbatim.
fn raw_extension(r: RawExtension) -> Res {
    embedded_json(r.raw.unwrap_or_default())
}

/// `metav1.FieldsV1`: a JSON trie of field paths, written verbatim.
fn fields_v1(f: meta::FieldsV1) -> Res {
    embedded_json(f.raw.unwrap_or_default())
}

fn embedded_json(raw: Vec<u8>) -> Res {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&raw)
        .map_err(|e| ProtobufError::Malformed(format!("embedded object is not JSON: {e}")))
}

/// Declares one conversion function per message type, `name: Type { how "jsonName" field =>
/// convert; … }`: `how` is the [`Obj`] method that fits the Go field (see the module docs) and
/// `convert` converts a nested value. Types whose Go structs have the same fields share one list:
/// `name: Type, other: OtherType { … }`.
macro_rules! convert {
    ($(
        $($name:ident: $ty:ty),+ { $($fields:tt)* }
    )*) => {
        $( convert!(@each [$($name: $ty),+] { $($fields)* }); )*
    };
    (@each [$($name:ident: $ty:ty),+] $fields:tt) => {
        $( convert!(@one $name: $ty $fields); )+
    };
    (@one $name:ident: $ty:ty {
        $($how:ident $($key:literal)? $field:ident $(=> $conv:ident)?;)*
    }) => {
        fn $name(m: $ty) -> Res {
            Obj::new()$(.$how($($key,)? m.$field $(, $conv)?))*.done()
        }
    };
}

// meta/v1: object metadata, selectors, conditions
convert! {
    delete_options: meta::DeleteOptions {
        ptr "gracePeriodSeconds" grace_period_seconds;
        msg "preconditions" preconditions => preconditions;
        ptr "orphanDependents" orphan_dependents;
        ptr "propagationPolicy" propagation_policy;
        vals "dryRun" dry_run;
        ptr "ignoreStoreReadErrorWithClusterBreakingPotential"
            ignore_store_read_error_with_cluster_breaking_potential;
    }
    object_meta: meta::ObjectMeta {
        opt "name" name;
        opt "generateName" generate_name;
        opt "namespace" namespace;
        opt "selfLink" self_link;
        opt "uid" uid;
        opt "resourceVersion" resource_version;
        opt "generation" generation;
        msg "creationTimestamp" creation_timestamp => timestamp;
        msg "deletionTimestamp" deletion_timestamp => timestamp;
        ptr "deletionGracePeriodSeconds" deletion_grace_period_seconds;
        map "labels" labels => text;
        map "annotations" annotations => text;
        list "ownerReferences" owner_references => owner_reference;
        vals "finalizers" finalizers;
        list "managedFields" managed_fields => managed_fields_entry;
    }
    preconditions: meta::Preconditions { ptr "uid" uid; ptr "resourceVersion" resource_version; }
    owner_reference: meta::OwnerReference {
        req "apiVersion" api_version;
        req "kind" kind;
        req "name" name;
        req "uid" uid;
        ptr "controller" controller;
        ptr "blockOwnerDeletion" block_owner_deletion;
    }
    managed_fields_entry: meta::ManagedFieldsEntry {
        opt "manager" manager;
        opt "operation" operation;
        opt "apiVersion" api_version;
        msg "time" time => timestamp;
        opt "fieldsType" fields_type;
        msg "fieldsV1" fields_v1 => fields_v1;
        opt "subresource" subresource;
    }
    condition: meta::Condition {
        req "type" r#type;
        req "status" status;
        opt "observedGeneration" observed_generation;
        msg "lastTransitionTime" last_transition_time => timestamp;
        req "reason" reason;
        req "message" message;
    }
    label_selector: meta::LabelSelector {
        map "matchLabels" match_labels => text;
        list "matchExpressions" match_expressions => label_selector_requirement;
    }
    label_selector_requirement: meta::LabelSelectorRequirement {
        req "key" key;
        req "operator" operator;
        vals "values" values;
    }
}

// core/v1
convert! {
    namespace: core::Namespace {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => namespace_spec;
        msg "status" status => namespace_status;
    }
    pod: core::Pod {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => pod_spec;
        msg "status" status => pod_status;
    }
    service: core::Service {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => service_spec;
        msg "status" status => service_status;
    }
    config_map: core::ConfigMap {
        msg "metadata" metadata => object_meta;
        ptr "immutable" immutable;
        map "data" data => text;
        map "binaryData" binary_data => b64;
    }
    secret: core::Secret {
        msg "metadata" metadata => object_meta;
        ptr "immutable" immutable;
        map "data" data => b64;
        map "stringData" string_data => text;
        opt "type" r#type;
    }
    service_account: core::ServiceAccount {
        msg "metadata" metadata => object_meta;
        list "secrets" secrets => object_reference;
        list "imagePullSecrets" image_pull_secrets => local_object_reference;
        ptr "automountServiceAccountToken" automount_service_account_token;
    }
    resource_quota: core::ResourceQuota {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => resource_quota_spec;
        msg "status" status => resource_quota_status;
    }
    endpoints: core::Endpoints {
        msg "metadata" metadata => object_meta;
        list "subsets" subsets => endpoint_subset;
    }
    event: core::Event {
        msg "metadata" metadata => object_meta;
        msg "involvedObject" involved_object => object_reference;
        opt "reason" reason;
        opt "message" message;
        msg "source" source => event_source;
        msg "firstTimestamp" first_timestamp => timestamp;
        msg "lastTimestamp" last_timestamp => timestamp;
        opt "count" count;
        opt "type" r#type;
        msg "eventTime" event_time => micro_timestamp;
        msg "series" series => event_series;
        opt "action" action;
        msg "related" related => object_reference;
        req "reportingComponent" reporting_component;
        req "reportingInstance" reporting_instance;
    }
    node: core::Node {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => node_spec;
        msg "status" status => node_status;
    }
    persistent_volume_claim: core::PersistentVolumeClaim {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => persistent_volume_claim_spec;
        msg "status" status => persistent_volume_claim_status;
    }
    persistent_volume: core::PersistentVolume {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => persistent_volume_spec;
        msg "status" status => persistent_volume_status;
    }
    limit_range: core::LimitRange {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => limit_range_spec;
    }
    replication_controller: core::ReplicationController {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => replication_controller_spec;
        msg "status" status => replication_controller_status;
    }
    pod_template: core::PodTemplate {
        msg "metadata" metadata => object_meta;
        msg "template" template => pod_template_spec;
    }
    binding: core::Binding {
        msg "metadata" metadata => object_meta;
        msg "target" target => object_reference;
    }
    namespace_spec: core::NamespaceSpec { vals "finalizers" finalizers; }
    namespace_status: core::NamespaceStatus {
        opt "phase" phase;
        list "conditions" conditions => namespace_condition;
    }
    pod_spec: core::PodSpec {
        list "volumes" volumes => volume;
        list "initContainers" init_containers => container;
        list "containers" containers => container;
        list "ephemeralContainers" ephemeral_containers => ephemeral_container;
        opt "restartPolicy" restart_policy;
        ptr "terminationGracePeriodSeconds" termination_grace_period_seconds;
        ptr "activeDeadlineSeconds" active_deadline_seconds;
        opt "dnsPolicy" dns_policy;
        map "nodeSelector" node_selector => text;
        opt "serviceAccountName" service_account_name;
        opt "serviceAccount" service_account;
        ptr "automountServiceAccountToken" automount_service_account_token;
        opt "nodeName" node_name;
        opt "hostNetwork" host_network;
        opt "hostPID" host_pid;
        opt "hostIPC" host_ipc;
        ptr "shareProcessNamespace" share_process_namespace;
        msg "securityContext" security_context => pod_security_context;
        list "imagePullSecrets" image_pull_secrets => local_object_reference;
        opt "hostname" hostname;
        opt "subdomain" subdomain;
        msg "affinity" affinity => affinity;
        opt "schedulerName" scheduler_name;
        list "tolerations" tolerations => toleration;
        list "hostAliases" host_aliases => host_alias;
        opt "priorityClassName" priority_class_name;
        ptr "priority" priority;
        msg "dnsConfig" dns_config => pod_dns_config;
        list "readinessGates" readiness_gates => pod_readiness_gate;
        ptr "runtimeClassName" runtime_class_name;
        ptr "enableServiceLinks" enable_service_links;
        ptr "preemptionPolicy" preemption_policy;
        map "overhead" overhead => quantity;
        list "topologySpreadConstraints" topology_spread_constraints => topology_spread_constraint;
        ptr "setHostnameAsFQDN" set_hostname_as_fqdn;
        msg "os" os => pod_os;
        ptr "hostUsers" host_users;
        list "schedulingGates" scheduling_gates => pod_scheduling_gate;
        list "resourceClaims" resource_claims => pod_resource_claim;
        msg "resources" resources => resource_requirements;
        ptr "hostnameOverride" hostname_override;
        msg "workloadRef" workload_ref => workload_reference;
    }
    pod_status: core::PodStatus {
        opt "observedGeneration" observed_generation;
        opt "phase" phase;
        list "conditions" conditions => pod_condition;
        opt "message" message;
        opt "reason" reason;
        opt "nominatedNodeName" nominated_node_name;
        opt "hostIP" host_ip;
        list "hostIPs" host_ips => host_ip;
        opt "podIP" pod_ip;
        list "podIPs" pod_ips => pod_ip;
        msg "startTime" start_time => timestamp;
        list "initContainerStatuses" init_container_statuses => container_status;
        list "containerStatuses" container_statuses => container_status;
        opt "qosClass" qos_class;
        list "ephemeralContainerStatuses" ephemeral_container_statuses => container_status;
        opt "resize" resize;
        list "resourceClaimStatuses" resource_claim_statuses => pod_resource_claim_status;
        msg "extendedResourceClaimStatus" extended_resource_claim_status
            => pod_extended_resource_claim_status;
        map "allocatedResources" allocated_resources => quantity;
        msg "resources" resources => resource_requirements;
    }
    service_spec: core::ServiceSpec {
        list "ports" ports => service_port;
        map "selector" selector => text;
        opt "clusterIP" cluster_ip;
        vals "clusterIPs" cluster_ips;
        opt "type" r#type;
        vals "externalIPs" external_ips;
        opt "sessionAffinity" session_affinity;
        opt "loadBalancerIP" load_balancer_ip;
        vals "loadBalancerSourceRanges" load_balancer_source_ranges;
        opt "externalName" external_name;
        opt "externalTrafficPolicy" external_traffic_policy;
        opt "healthCheckNodePort" health_check_node_port;
        opt "publishNotReadyAddresses" publish_not_ready_addresses;
        msg "sessionAffinityConfig" session_affinity_config => session_affinity_config;
        vals "ipFamilies" ip_families;
        ptr "ipFamilyPolicy" ip_family_policy;
        ptr "allocateLoadBalancerNodePorts" allocate_load_balancer_node_ports;
        ptr "loadBalancerClass" load_balancer_class;
        ptr "internalTrafficPolicy" internal_traffic_policy;
        ptr "trafficDistribution" traffic_distribution;
    }
    service_status: core::ServiceStatus {
        msg "loadBalancer" load_balancer => load_balancer_status;
        list "conditions" conditions => condition;
    }
    object_reference: core::ObjectReference {
        opt "kind" kind;
        opt "namespace" namespace;
        opt "name" name;
        opt "uid" uid;
        opt "apiVersion" api_version;
        opt "resourceVersion" resource_version;
        opt "fieldPath" field_path;
    }
    local_object_reference: core::LocalObjectReference { opt "name" name; }
    resource_quota_spec: core::ResourceQuotaSpec {
        map "hard" hard => quantity;
        vals "scopes" scopes;
        msg "scopeSelector" scope_selector => scope_selector;
    }
    resource_quota_status: core::ResourceQuotaStatus {
        map "hard" hard => quantity;
        map "used" used => quantity;
    }
    endpoint_subset: core::EndpointSubset {
        list "addresses" addresses => endpoint_address;
        list "notReadyAddresses" not_ready_addresses => endpoint_address;
        list "ports" ports => endpoint_port;
    }
    event_source: core::EventSource { opt "component" component; opt "host" host; }
    event_series: core::EventSeries {
        opt "count" count;
        msg "lastObservedTime" last_observed_time => micro_timestamp;
    }
    node_spec: core::NodeSpec {
        opt "podCIDR" pod_cidr;
        vals "podCIDRs" pod_cid_rs;
        opt "providerID" provider_id;
        opt "unschedulable" unschedulable;
        list "taints" taints => taint;
        msg "configSource" config_source => node_config_source;
        opt "externalID" external_id;
    }
    node_status: core::NodeStatus {
        map "capacity" capacity => quantity;
        map "allocatable" allocatable => quantity;
        opt "phase" phase;
        list "conditions" conditions => node_condition;
        list "addresses" addresses => node_address;
        msg "daemonEndpoints" daemon_endpoints => node_daemon_endpoints;
        msg "nodeInfo" node_info => node_system_info;
        list "images" images => container_image;
        vals "volumesInUse" volumes_in_use;
        list "volumesAttached" volumes_attached => attached_volume;
        msg "config" config => node_config_status;
        list "runtimeHandlers" runtime_handlers => node_runtime_handler;
        msg "features" features => node_features;
        vals "declaredFeatures" declared_features;
    }
    persistent_volume_claim_spec: core::PersistentVolumeClaimSpec {
        vals "accessModes" access_modes;
        msg "selector" selector => label_selector;
        msg "resources" resources => volume_resource_requirements;
        opt "volumeName" volume_name;
        ptr "storageClassName" storage_class_name;
        ptr "volumeMode" volume_mode;
        msg "dataSource" data_source => typed_local_object_reference;
        msg "dataSourceRef" data_source_ref => typed_object_reference;
        ptr "volumeAttributesClassName" volume_attributes_class_name;
    }
    persistent_volume_claim_status: core::PersistentVolumeClaimStatus {
        opt "phase" phase;
        vals "accessModes" access_modes;
        map "capacity" capacity => quantity;
        list "conditions" conditions => persistent_volume_claim_condition;
        map "allocatedResources" allocated_resources => quantity;
        map "allocatedResourceStatuses" allocated_resource_statuses => text;
        ptr "currentVolumeAttributesClassName" current_volume_attributes_class_name;
        msg "modifyVolumeStatus" modify_volume_status => modify_volume_status;
    }
    persistent_volume_spec: core::PersistentVolumeSpec {
        map "capacity" capacity => quantity;
        inline persistent_volume_source => persistent_volume_source;
        vals "accessModes" access_modes;
        msg "claimRef" claim_ref => object_reference;
        opt "persistentVolumeReclaimPolicy" persistent_volume_reclaim_policy;
        opt "storageClassName" storage_class_name;
        vals "mountOptions" mount_options;
        ptr "volumeMode" volume_mode;
        msg "nodeAffinity" node_affinity => volume_node_affinity;
        ptr "volumeAttributesClassName" volume_attributes_class_name;
    }
    persistent_volume_status: core::PersistentVolumeStatus {
        opt "phase" phase;
        opt "message" message;
        opt "reason" reason;
        msg "lastPhaseTransitionTime" last_phase_transition_time => timestamp;
    }
    limit_range_spec: core::LimitRangeSpec { list "limits" limits => limit_range_item; }
    replication_controller_spec: core::ReplicationControllerSpec {
        ptr "replicas" replicas;
        opt "minReadySeconds" min_ready_seconds;
        map "selector" selector => text;
        msg "template" template => pod_template_spec;
    }
    replication_controller_status: core::ReplicationControllerStatus {
        req "replicas" replicas;
        opt "fullyLabeledReplicas" fully_labeled_replicas;
        opt "readyReplicas" ready_replicas;
        opt "availableReplicas" available_replicas;
        opt "observedGeneration" observed_generation;
        list "conditions" conditions => replication_controller_condition;
    }
    pod_template_spec: core::PodTemplateSpec {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => pod_spec;
    }
    // The conditions of core/v1 and apps/v1 kinds that have these fields.
    namespace_condition: core::NamespaceCondition,
    replication_controller_condition: core::ReplicationControllerCondition,
    replica_set_condition: apps::ReplicaSetCondition,
    daemon_set_condition: apps::DaemonSetCondition,
    stateful_set_condition: apps::StatefulSetCondition {
        req "type" r#type;
        req "status" status;
        msg "lastTransitionTime" last_transition_time => timestamp;
        opt "reason" reason;
        opt "message" message;
    }
    volume: core::Volume { req "name" name; inline volume_source => volume_source; }
    container: core::Container,
    ephemeral_container_common: core::EphemeralContainerCommon {
        req "name" name;
        opt "image" image;
        vals "command" command;
        vals "args" args;
        opt "workingDir" working_dir;
        list "ports" ports => container_port;
        list "envFrom" env_from => env_from_source;
        list "env" env => env_var;
        msg "resources" resources => resource_requirements;
        list "resizePolicy" resize_policy => container_resize_policy;
        ptr "restartPolicy" restart_policy;
        list "restartPolicyRules" restart_policy_rules => container_restart_rule;
        list "volumeMounts" volume_mounts => volume_mount;
        list "volumeDevices" volume_devices => volume_device;
        msg "livenessProbe" liveness_probe => probe;
        msg "readinessProbe" readiness_probe => probe;
        msg "startupProbe" startup_probe => probe;
        msg "lifecycle" lifecycle => lifecycle;
        opt "terminationMessagePath" termination_message_path;
        opt "terminationMessagePolicy" termination_message_policy;
        opt "imagePullPolicy" image_pull_policy;
        msg "securityContext" security_context => security_context;
        opt "stdin" stdin;
        opt "stdinOnce" stdin_once;
        opt "tty" tty;
    }
    ephemeral_container: core::EphemeralContainer {
        inline ephemeral_container_common => ephemeral_container_common;
        opt "targetContainerName" target_container_name;
    }
    pod_security_context: core::PodSecurityContext {
        msg "seLinuxOptions" se_linux_options => se_linux_options;
        msg "windowsOptions" windows_options => windows_security_context_options;
        ptr "runAsUser" run_as_user;
        ptr "runAsGroup" run_as_group;
        ptr "runAsNonRoot" run_as_non_root;
        vals "supplementalGroups" supplemental_groups;
        ptr "supplementalGroupsPolicy" supplemental_groups_policy;
        ptr "fsGroup" fs_group;
        list "sysctls" sysctls => sysctl;
        ptr "fsGroupChangePolicy" fs_group_change_policy;
        msg "seccompProfile" seccomp_profile => seccomp_profile;
        msg "appArmorProfile" app_armor_profile => app_armor_profile;
        ptr "seLinuxChangePolicy" se_linux_change_policy;
    }
    affinity: core::Affinity {
        msg "nodeAffinity" node_affinity => node_affinity;
        msg "podAffinity" pod_affinity => pod_affinity;
        msg "podAntiAffinity" pod_anti_affinity => pod_anti_affinity;
    }
    toleration: core::Toleration {
        opt "key" key;
        opt "operator" operator;
        opt "value" value;
        opt "effect" effect;
        ptr "tolerationSeconds" toleration_seconds;
    }
    host_alias: core::HostAlias { req "ip" ip; vals "hostnames" hostnames; }
    pod_dns_config: core::PodDnsConfig {
        vals "nameservers" nameservers;
        vals "searches" searches;
        list "options" options => pod_dns_config_option;
    }
    pod_readiness_gate: core::PodReadinessGate { req "conditionType" condition_type; }
    topology_spread_constraint: core::TopologySpreadConstraint {
        req "maxSkew" max_skew;
        req "topologyKey" topology_key;
        req "whenUnsatisfiable" when_unsatisfiable;
        msg "labelSelector" label_selector => label_selector;
        ptr "minDomains" min_domains;
        ptr "nodeAffinityPolicy" node_affinity_policy;
        ptr "nodeTaintsPolicy" node_taints_policy;
        vals "matchLabelKeys" match_label_keys;
    }
    pod_os: core::PodOs { req "name" name; }
    pod_scheduling_gate: core::PodSchedulingGate { req "name" name; }
    pod_resource_claim: core::PodResourceClaim {
        req "name" name;
        ptr "resourceClaimName" resource_claim_name;
        ptr "resourceClaimTemplateName" resource_claim_template_name;
    }
    resource_requirements: core::ResourceRequirements {
        map "limits" limits => quantity;
        map "requests" requests => quantity;
        list "claims" claims => resource_claim;
    }
    workload_reference: core::WorkloadReference {
        req "name" name;
        req "podGroup" pod_group;
        opt "podGroupReplicaKey" pod_group_replica_key;
    }
    pod_condition: core::PodCondition {
        req "type" r#type;
        opt "observedGeneration" observed_generation;
        req "status" status;
        msg "lastProbeTime" last_probe_time => timestamp;
        msg "lastTransitionTime" last_transition_time => timestamp;
        opt "reason" reason;
        opt "message" message;
    }
    host_ip: core::HostIp,
    pod_ip: core::PodIp { req "ip" ip; }
    container_status: core::ContainerStatus {
        req "name" name;
        msg "state" state => container_state;
        msg "lastState" last_state => container_state;
        req "ready" ready;
        req "restartCount" restart_count;
        req "image" image;
        req "imageID" image_id;
        opt "containerID" container_id;
        ptr "started" started;
        map "allocatedResources" allocated_resources => quantity;
        msg "resources" resources => resource_requirements;
        list "volumeMounts" volume_mounts => volume_mount_status;
        msg "user" user => container_user;
        list "allocatedResourcesStatus" allocated_resources_status => resource_status;
        ptr "stopSignal" stop_signal;
    }
    pod_resource_claim_status: core::PodResourceClaimStatus {
        req "name" name;
        ptr "resourceClaimName" resource_claim_name;
    }
    pod_extended_resource_claim_status: core::PodExtendedResourceClaimStatus {
        list "requestMappings" request_mappings => container_extended_resource_request;
        req "resourceClaimName" resource_claim_name;
    }
    service_port: core::ServicePort {
        opt "name" name;
        opt "protocol" protocol;
        ptr "appProtocol" app_protocol;
        req "port" port;
        msg "targetPort" target_port => int_or_string;
        opt "nodePort" node_port;
    }
    session_affinity_config: core::SessionAffinityConfig {
        msg "clientIP" client_ip => client_ip_config;
    }
    load_balancer_status: core::LoadBalancerStatus {
        list "ingress" ingress => load_balancer_ingress;
    }
    scope_selector: core::ScopeSelector {
        list "matchExpressions" match_expressions => scoped_resource_selector_requirement;
    }
    endpoint_address: core::EndpointAddress {
        req "ip" ip;
        opt "hostname" hostname;
        ptr "nodeName" node_name;
        msg "targetRef" target_ref => object_reference;
    }
    endpoint_port: core::EndpointPort {
        opt "name" name;
        req "port" port;
        opt "protocol" protocol;
        ptr "appProtocol" app_protocol;
    }
    taint: core::Taint {
        req "key" key;
        opt "value" value;
        req "effect" effect;
        msg "timeAdded" time_added => timestamp;
    }
    node_config_source: core::NodeConfigSource {
        msg "configMap" config_map => config_map_node_config_source;
    }
    node_condition: core::NodeCondition {
        req "type" r#type;
        req "status" status;
        msg "lastHeartbeatTime" last_heartbeat_time => timestamp;
        msg "lastTransitionTime" last_transition_time => timestamp;
        opt "reason" reason;
        opt "message" message;
    }
    node_address: core::NodeAddress { req "type" r#type; req "address" address; }
    node_daemon_endpoints: core::NodeDaemonEndpoints {
        msg "kubeletEndpoint" kubelet_endpoint => daemon_endpoint;
    }
    node_system_info: core::NodeSystemInfo {
        req "machineID" machine_id;
        req "systemUUID" system_uuid;
        req "bootID" boot_id;
        req "kernelVersion" kernel_version;
        req "osImage" os_image;
        req "containerRuntimeVersion" container_runtime_version;
        req "kubeletVersion" kubelet_version;
        req "kubeProxyVersion" kube_proxy_version;
        req "operatingSystem" operating_system;
        req "architecture" architecture;
        msg "swap" swap => node_swap_status;
    }
    container_image: core::ContainerImage { vals "names" names; opt "sizeBytes" size_bytes; }
    attached_volume: core::AttachedVolume { req "name" name; req "devicePath" device_path; }
    node_config_status: core::NodeConfigStatus {
        msg "assigned" assigned => node_config_source;
        msg "active" active => node_config_source;
        msg "lastKnownGood" last_known_good => node_config_source;
        opt "error" error;
    }
    node_runtime_handler: core::NodeRuntimeHandler {
        req "name" name;
        msg "features" features => node_runtime_handler_features;
    }
    node_features: core::NodeFeatures { ptr "supplementalGroupsPolicy" supplemental_groups_policy; }
    volume_resource_requirements: core::VolumeResourceRequirements {
        map "limits" limits => quantity;
        map "requests" requests => quantity;
    }
    typed_local_object_reference: core::TypedLocalObjectReference {
        ptr "apiGroup" api_group;
        req "kind" kind;
        req "name" name;
    }
    typed_object_reference: core::TypedObjectReference {
        ptr "apiGroup" api_group;
        req "kind" kind;
        req "name" name;
        ptr "namespace" namespace;
    }
    // Also batch/v1's JobCondition, which has the same fields.
    persistent_volume_claim_condition: core::PersistentVolumeClaimCondition,
    job_condition: batch::JobCondition {
        req "type" r#type;
        req "status" status;
        msg "lastProbeTime" last_probe_time => timestamp;
        msg "lastTransitionTime" last_transition_time => timestamp;
        opt "reason" reason;
        opt "message" message;
    }
    modify_volume_status: core::ModifyVolumeStatus {
        opt "targetVolumeAttributesClassName" target_volume_attributes_class_name;
        req "status" status;
    }
    persistent_volume_source: core::PersistentVolumeSource {
        msg "gcePersistentDisk" gce_persistent_disk => gce_persistent_disk_volume_source;
        msg "awsElasticBlockStore" aws_elastic_block_store => aws_elastic_block_store_volume_source;
        msg "hostPath" host_path => host_path_volume_source;
        msg "glusterfs" glusterfs => glusterfs_persistent_volume_source;
        msg "nfs" nfs => nfs_volume_source;
        msg "rbd" rbd => rbd_persistent_volume_source;
        msg "iscsi" iscsi => iscsi_persistent_volume_source;
        msg "cinder" cinder => cinder_persistent_volume_source;
        msg "cephfs" cephfs => ceph_fs_persistent_volume_source;
        msg "fc" fc => fc_volume_source;
        msg "flocker" flocker => flocker_volume_source;
        msg "flexVolume" flex_volume => flex_persistent_volume_source;
        msg "azureFile" azure_file => azure_file_persistent_volume_source;
        msg "vsphereVolume" vsphere_volume => vsphere_virtual_disk_volume_source;
        msg "quobyte" quobyte => quobyte_volume_source;
        msg "azureDisk" azure_disk => azure_disk_volume_source;
        msg "photonPersistentDisk" photon_persistent_disk => photon_persistent_disk_volume_source;
        msg "portworxVolume" portworx_volume => portworx_volume_source;
        msg "scaleIO" scale_io => scale_io_persistent_volume_source;
        msg "local" local => local_volume_source;
        msg "storageos" storageos => storage_os_persistent_volume_source;
        msg "csi" csi => csi_persistent_volume_source;
    }
    volume_node_affinity: core::VolumeNodeAffinity { msg "required" required => node_selector; }
    limit_range_item: core::LimitRangeItem {
        req "type" r#type;
        map "max" max => quantity;
        map "min" min => quantity;
        map "default" default => quantity;
        map "defaultRequest" default_request => quantity;
        map "maxLimitRequestRatio" max_limit_request_ratio => quantity;
    }
    volume_source: core::VolumeSource {
        msg "hostPath" host_path => host_path_volume_source;
        msg "emptyDir" empty_dir => empty_dir_volume_source;
        msg "gcePersistentDisk" gce_persistent_disk => gce_persistent_disk_volume_source;
        msg "awsElasticBlockStore" aws_elastic_block_store => aws_elastic_block_store_volume_source;
        msg "gitRepo" git_repo => git_repo_volume_source;
        msg "secret" secret => secret_volume_source;
        msg "nfs" nfs => nfs_volume_source;
        msg "iscsi" iscsi => iscsi_volume_source;
        msg "glusterfs" glusterfs => glusterfs_volume_source;
        msg "persistentVolumeClaim" persistent_volume_claim
            => persistent_volume_claim_volume_source;
        msg "rbd" rbd => rbd_volume_source;
        msg "flexVolume" flex_volume => flex_volume_source;
        msg "cinder" cinder => cinder_volume_source;
        msg "cephfs" cephfs => ceph_fs_volume_source;
        msg "flocker" flocker => flocker_volume_source;
        msg "downwardAPI" downward_api => downward_api_volume_source;
        msg "fc" fc => fc_volume_source;
        msg "azureFile" azure_file => azure_file_volume_source;
        msg "configMap" config_map => config_map_volume_source;
        msg "vsphereVolume" vsphere_volume => vsphere_virtual_disk_volume_source;
        msg "quobyte" quobyte => quobyte_volume_source;
        msg "azureDisk" azure_disk => azure_disk_volume_source;
        msg "photonPersistentDisk" photon_persistent_disk => photon_persistent_disk_volume_source;
        msg "projected" projected => projected_volume_source;
        msg "portworxVolume" portworx_volume => portworx_volume_source;
        msg "scaleIO" scale_io => scale_io_volume_source;
        msg "storageos" storageos => storage_os_volume_source;
        msg "csi" csi => csi_volume_source;
        msg "ephemeral" ephemeral => ephemeral_volume_source;
        msg "image" image => image_volume_source;
    }
    container_port: core::ContainerPort {
        opt "name" name;
        opt "hostPort" host_port;
        req "containerPort" container_port;
        opt "protocol" protocol;
        opt "hostIP" host_ip;
    }
    env_from_source: core::EnvFromSource {
        opt "prefix" prefix;
        msg "configMapRef" config_map_ref => config_map_env_source;
        msg "secretRef" secret_ref => secret_env_source;
    }
    env_var: core::EnvVar {
        req "name" name;
        opt "value" value;
        msg "valueFrom" value_from => env_var_source;
    }
    container_resize_policy: core::ContainerResizePolicy {
        req "resourceName" resource_name;
        req "restartPolicy" restart_policy;
    }
    container_restart_rule: core::ContainerRestartRule {
        opt "action" action;
        msg "exitCodes" exit_codes => container_restart_rule_on_exit_codes;
    }
    volume_mount: core::VolumeMount {
        req "name" name;
        opt "readOnly" read_only;
        ptr "recursiveReadOnly" recursive_read_only;
        req "mountPath" mount_path;
        opt "subPath" sub_path;
        ptr "mountPropagation" mount_propagation;
        opt "subPathExpr" sub_path_expr;
    }
    volume_device: core::VolumeDevice { req "name" name; req "devicePath" device_path; }
    probe: core::Probe {
        inline handler => probe_handler;
        opt "initialDelaySeconds" initial_delay_seconds;
        opt "timeoutSeconds" timeout_seconds;
        opt "periodSeconds" period_seconds;
        opt "successThreshold" success_threshold;
        opt "failureThreshold" failure_threshold;
        ptr "terminationGracePeriodSeconds" termination_grace_period_seconds;
    }
    lifecycle: core::Lifecycle {
        msg "postStart" post_start => lifecycle_handler;
        msg "preStop" pre_stop => lifecycle_handler;
        ptr "stopSignal" stop_signal;
    }
    security_context: core::SecurityContext {
        msg "capabilities" capabilities => capabilities;
        ptr "privileged" privileged;
        msg "seLinuxOptions" se_linux_options => se_linux_options;
        msg "windowsOptions" windows_options => windows_security_context_options;
        ptr "runAsUser" run_as_user;
        ptr "runAsGroup" run_as_group;
        ptr "runAsNonRoot" run_as_non_root;
        ptr "readOnlyRootFilesystem" read_only_root_filesystem;
        ptr "allowPrivilegeEscalation" allow_privilege_escalation;
        ptr "procMount" proc_mount;
        msg "seccompProfile" seccomp_profile => seccomp_profile;
        msg "appArmorProfile" app_armor_profile => app_armor_profile;
    }
    se_linux_options: core::SeLinuxOptions {
        opt "user" user;
        opt "role" role;
        opt "type" r#type;
        opt "level" level;
    }
    windows_security_context_options: core::WindowsSecurityContextOptions {
        ptr "gmsaCredentialSpecName" gmsa_credential_spec_name;
        ptr "gmsaCredentialSpec" gmsa_credential_spec;
        ptr "runAsUserName" run_as_user_name;
        ptr "hostProcess" host_process;
    }
    sysctl: core::Sysctl { req "name" name; req "value" value; }
    seccomp_profile: core::SeccompProfile,
    app_armor_profile: core::AppArmorProfile {
        req "type" r#type;
        ptr "localhostProfile" localhost_profile;
    }
    node_affinity: core::NodeAffinity {
        msg "requiredDuringSchedulingIgnoredDuringExecution"
            required_during_scheduling_ignored_during_execution
            => node_selector;
        list "preferredDuringSchedulingIgnoredDuringExecution"
            preferred_during_scheduling_ignored_during_execution
            => preferred_scheduling_term;
    }
    pod_affinity: core::PodAffinity,
    pod_anti_affinity: core::PodAntiAffinity {
        list "requiredDuringSchedulingIgnoredDuringExecution"
            required_during_scheduling_ignored_during_execution
            => pod_affinity_term;
        list "preferredDuringSchedulingIgnoredDuringExecution"
            preferred_during_scheduling_ignored_during_execution
            => weighted_pod_affinity_term;
    }
    pod_dns_config_option: core::PodDnsConfigOption { opt "name" name; ptr "value" value; }
    resource_claim: core::ResourceClaim { req "name" name; opt "request" request; }
    container_state: core::ContainerState {
        msg "waiting" waiting => container_state_waiting;
        msg "running" running => container_state_running;
        msg "terminated" terminated => container_state_terminated;
    }
    volume_mount_status: core::VolumeMountStatus {
        req "name" name;
        req "mountPath" mount_path;
        opt "readOnly" read_only;
        ptr "recursiveReadOnly" recursive_read_only;
    }
    container_user: core::ContainerUser { msg "linux" linux => linux_container_user; }
    resource_status: core::ResourceStatus {
        req "name" name;
        list "resources" resources => resource_health;
    }
    container_extended_resource_request: core::ContainerExtendedResourceRequest {
        req "containerName" container_name;
        req "resourceName" resource_name;
        req "requestName" request_name;
    }
    client_ip_config: core::ClientIpConfig { ptr "timeoutSeconds" timeout_seconds; }
    load_balancer_ingress: core::LoadBalancerIngress {
        opt "ip" ip;
        opt "hostname" hostname;
        ptr "ipMode" ip_mode;
        list "ports" ports => port_status;
    }
    scoped_resource_selector_requirement: core::ScopedResourceSelectorRequirement {
        req "scopeName" scope_name;
        req "operator" operator;
        vals "values" values;
    }
    config_map_node_config_source: core::ConfigMapNodeConfigSource {
        req "namespace" namespace;
        req "name" name;
        opt "uid" uid;
        opt "resourceVersion" resource_version;
        req "kubeletConfigKey" kubelet_config_key;
    }
    daemon_endpoint: core::DaemonEndpoint { req "Port" port; }
    node_swap_status: core::NodeSwapStatus { ptr "capacity" capacity; }
    node_runtime_handler_features: core::NodeRuntimeHandlerFeatures {
        ptr "recursiveReadOnlyMounts" recursive_read_only_mounts;
        ptr "userNamespaces" user_namespaces;
    }
    gce_persistent_disk_volume_source: core::GcePersistentDiskVolumeSource {
        req "pdName" pd_name;
        opt "fsType" fs_type;
        opt "partition" partition;
        opt "readOnly" read_only;
    }
    aws_elastic_block_store_volume_source: core::AwsElasticBlockStoreVolumeSource {
        req "volumeID" volume_id;
        opt "fsType" fs_type;
        opt "partition" partition;
        opt "readOnly" read_only;
    }
    host_path_volume_source: core::HostPathVolumeSource { req "path" path; ptr "type" r#type; }
    glusterfs_persistent_volume_source: core::GlusterfsPersistentVolumeSource {
        req "endpoints" endpoints;
        req "path" path;
        opt "readOnly" read_only;
        ptr "endpointsNamespace" endpoints_namespace;
    }
    nfs_volume_source: core::NfsVolumeSource {
        req "server" server;
        req "path" path;
        opt "readOnly" read_only;
    }
    rbd_persistent_volume_source: core::RbdPersistentVolumeSource {
        vals "monitors" monitors;
        req "image" image;
        opt "fsType" fs_type;
        opt "pool" pool;
        opt "user" user;
        opt "keyring" keyring;
        msg "secretRef" secret_ref => secret_reference;
        opt "readOnly" read_only;
    }
    iscsi_persistent_volume_source: core::IscsiPersistentVolumeSource {
        req "targetPortal" target_portal;
        req "iqn" iqn;
        req "lun" lun;
        opt "iscsiInterface" iscsi_interface;
        opt "fsType" fs_type;
        opt "readOnly" read_only;
        vals "portals" portals;
        opt "chapAuthDiscovery" chap_auth_discovery;
        opt "chapAuthSession" chap_auth_session;
        msg "secretRef" secret_ref => secret_reference;
        ptr "initiatorName" initiator_name;
    }
    cinder_persistent_volume_source: core::CinderPersistentVolumeSource {
        req "volumeID" volume_id;
        opt "fsType" fs_type;
        opt "readOnly" read_only;
        msg "secretRef" secret_ref => secret_reference;
    }
    ceph_fs_persistent_volume_source: core::CephFsPersistentVolumeSource {
        vals "monitors" monitors;
        opt "path" path;
        opt "user" user;
        opt "secretFile" secret_file;
        msg "secretRef" secret_ref => secret_reference;
        opt "readOnly" read_only;
    }
    fc_volume_source: core::FcVolumeSource {
        vals "targetWWNs" target_ww_ns;
        ptr "lun" lun;
        opt "fsType" fs_type;
        opt "readOnly" read_only;
        vals "wwids" wwids;
    }
    flocker_volume_source: core::FlockerVolumeSource {
        opt "datasetName" dataset_name;
        opt "datasetUUID" dataset_uuid;
    }
    flex_persistent_volume_source: core::FlexPersistentVolumeSource {
        req "driver" driver;
        opt "fsType" fs_type;
        msg "secretRef" secret_ref => secret_reference;
        opt "readOnly" read_only;
        map "options" options => text;
    }
    azure_file_persistent_volume_source: core::AzureFilePersistentVolumeSource {
        req "secretName" secret_name;
        req "shareName" share_name;
        opt "readOnly" read_only;
        ptr "secretNamespace" secret_namespace;
    }
    vsphere_virtual_disk_volume_source: core::VsphereVirtualDiskVolumeSource {
        req "volumePath" volume_path;
        opt "fsType" fs_type;
        opt "storagePolicyName" storage_policy_name;
        opt "storagePolicyID" storage_policy_id;
    }
    quobyte_volume_source: core::QuobyteVolumeSource {
        req "registry" registry;
        req "volume" volume;
        opt "readOnly" read_only;
        opt "user" user;
        opt "group" group;
        opt "tenant" tenant;
    }
    azure_disk_volume_source: core::AzureDiskVolumeSource {
        req "diskName" disk_name;
        req "diskURI" disk_uri;
        ptr "cachingMode" caching_mode;
        ptr "fsType" fs_type;
        ptr "readOnly" read_only;
        ptr "kind" kind;
    }
    photon_persistent_disk_volume_source: core::PhotonPersistentDiskVolumeSource {
        req "pdID" pd_id;
        opt "fsType" fs_type;
    }
    portworx_volume_source: core::PortworxVolumeSource {
        req "volumeID" volume_id;
        opt "fsType" fs_type;
        opt "readOnly" read_only;
    }
    scale_io_persistent_volume_source: core::ScaleIoPersistentVolumeSource {
        req "gateway" gateway;
        req "system" system;
        msg "secretRef" secret_ref => secret_reference;
        opt "sslEnabled" ssl_enabled;
        opt "protectionDomain" protection_domain;
        opt "storagePool" storage_pool;
        opt "storageMode" storage_mode;
        opt "volumeName" volume_name;
        opt "fsType" fs_type;
        opt "readOnly" read_only;
    }
    local_volume_source: core::LocalVolumeSource { req "path" path; ptr "fsType" fs_type; }
    storage_os_persistent_volume_source: core::StorageOsPersistentVolumeSource {
        opt "volumeName" volume_name;
        opt "volumeNamespace" volume_namespace;
        opt "fsType" fs_type;
        opt "readOnly" read_only;
        msg "secretRef" secret_ref => object_reference;
    }
    csi_persistent_volume_source: core::CSIPersistentVolumeSource {
        req "driver" driver;
        req "volumeHandle" volume_handle;
        opt "readOnly" read_only;
        opt "fsType" fs_type;
        map "volumeAttributes" volume_attributes => text;
        msg "controllerPublishSecretRef" controller_publish_secret_ref => secret_reference;
        msg "nodeStageSecretRef" node_stage_secret_ref => secret_reference;
        msg "nodePublishSecretRef" node_publish_secret_ref => secret_reference;
        msg "controllerExpandSecretRef" controller_expand_secret_ref => secret_reference;
        msg "nodeExpandSecretRef" node_expand_secret_ref => secret_reference;
    }
    node_selector: core::NodeSelector {
        list "nodeSelectorTerms" node_selector_terms => node_selector_term;
    }
    empty_dir_volume_source: core::EmptyDirVolumeSource {
        opt "medium" medium;
        msg "sizeLimit" size_limit => quantity;
    }
    git_repo_volume_source: core::GitRepoVolumeSource {
        req "repository" repository;
        opt "revision" revision;
        opt "directory" directory;
    }
    secret_volume_source: core::SecretVolumeSource {
        opt "secretName" secret_name;
        list "items" items => key_to_path;
        ptr "defaultMode" default_mode;
        ptr "optional" optional;
    }
    iscsi_volume_source: core::IscsiVolumeSource {
        req "targetPortal" target_portal;
        req "iqn" iqn;
        req "lun" lun;
        opt "iscsiInterface" iscsi_interface;
        opt "fsType" fs_type;
        opt "readOnly" read_only;
        vals "portals" portals;
        opt "chapAuthDiscovery" chap_auth_discovery;
        opt "chapAuthSession" chap_auth_session;
        msg "secretRef" secret_ref => local_object_reference;
        ptr "initiatorName" initiator_name;
    }
    glusterfs_volume_source: core::GlusterfsVolumeSource {
        req "endpoints" endpoints;
        req "path" path;
        opt "readOnly" read_only;
    }
    persistent_volume_claim_volume_source: core::PersistentVolumeClaimVolumeSource {
        req "claimName" claim_name;
        opt "readOnly" read_only;
    }
    rbd_volume_source: core::RbdVolumeSource {
        vals "monitors" monitors;
        req "image" image;
        opt "fsType" fs_type;
        opt "pool" pool;
        opt "user" user;
        opt "keyring" keyring;
        msg "secretRef" secret_ref => local_object_reference;
        opt "readOnly" read_only;
    }
    flex_volume_source: core::FlexVolumeSource {
        req "driver" driver;
        opt "fsType" fs_type;
        msg "secretRef" secret_ref => local_object_reference;
        opt "readOnly" read_only;
        map "options" options => text;
    }
    cinder_volume_source: core::CinderVolumeSource {
        req "volumeID" volume_id;
        opt "fsType" fs_type;
        opt "readOnly" read_only;
        msg "secretRef" secret_ref => local_object_reference;
    }
    ceph_fs_volume_source: core::CephFsVolumeSource {
        vals "monitors" monitors;
        opt "path" path;
        opt "user" user;
        opt "secretFile" secret_file;
        msg "secretRef" secret_ref => local_object_reference;
        opt "readOnly" read_only;
    }
    downward_api_volume_source: core::DownwardAPIVolumeSource {
        list "items" items => downward_api_volume_file;
        ptr "defaultMode" default_mode;
    }
    azure_file_volume_source: core::AzureFileVolumeSource {
        req "secretName" secret_name;
        req "shareName" share_name;
        opt "readOnly" read_only;
    }
    config_map_volume_source: core::ConfigMapVolumeSource {
        inline local_object_reference => local_object_reference;
        list "items" items => key_to_path;
        ptr "defaultMode" default_mode;
        ptr "optional" optional;
    }
    projected_volume_source: core::ProjectedVolumeSource {
        list "sources" sources => volume_projection;
        ptr "defaultMode" default_mode;
    }
    scale_io_volume_source: core::ScaleIoVolumeSource {
        req "gateway" gateway;
        req "system" system;
        msg "secretRef" secret_ref => local_object_reference;
        opt "sslEnabled" ssl_enabled;
        opt "protectionDomain" protection_domain;
        opt "storagePool" storage_pool;
        opt "storageMode" storage_mode;
        opt "volumeName" volume_name;
        opt "fsType" fs_type;
        opt "readOnly" read_only;
    }
    storage_os_volume_source: core::StorageOsVolumeSource {
        opt "volumeName" volume_name;
        opt "volumeNamespace" volume_namespace;
        opt "fsType" fs_type;
        opt "readOnly" read_only;
        msg "secretRef" secret_ref => local_object_reference;
    }
    csi_volume_source: core::CSIVolumeSource {
        req "driver" driver;
        ptr "readOnly" read_only;
        ptr "fsType" fs_type;
        map "volumeAttributes" volume_attributes => text;
        msg "nodePublishSecretRef" node_publish_secret_ref => local_object_reference;
    }
    ephemeral_volume_source: core::EphemeralVolumeSource {
        msg "volumeClaimTemplate" volume_claim_template => persistent_volume_claim_template;
    }
    image_volume_source: core::ImageVolumeSource {
        opt "reference" reference;
        opt "pullPolicy" pull_policy;
    }
    config_map_env_source: core::ConfigMapEnvSource,
    secret_env_source: core::SecretEnvSource {
        inline local_object_reference => local_object_reference;
        ptr "optional" optional;
    }
    env_var_source: core::EnvVarSource {
        msg "fieldRef" field_ref => object_field_selector;
        msg "resourceFieldRef" resource_field_ref => resource_field_selector;
        msg "configMapKeyRef" config_map_key_ref => config_map_key_selector;
        msg "secretKeyRef" secret_key_ref => secret_key_selector;
        msg "fileKeyRef" file_key_ref => file_key_selector;
    }
    container_restart_rule_on_exit_codes: core::ContainerRestartRuleOnExitCodes {
        opt "operator" operator;
        vals "values" values;
    }
    probe_handler: core::ProbeHandler {
        msg "exec" exec => exec_action;
        msg "httpGet" http_get => http_get_action;
        msg "tcpSocket" tcp_socket => tcp_socket_action;
        msg "grpc" grpc => grpc_action;
    }
    lifecycle_handler: core::LifecycleHandler {
        msg "exec" exec => exec_action;
        msg "httpGet" http_get => http_get_action;
        msg "tcpSocket" tcp_socket => tcp_socket_action;
        msg "sleep" sleep => sleep_action;
    }
    capabilities: core::Capabilities { vals "add" add; vals "drop" drop; }
    preferred_scheduling_term: core::PreferredSchedulingTerm {
        req "weight" weight;
        msg "preference" preference => node_selector_term;
    }
    pod_affinity_term: core::PodAffinityTerm {
        msg "labelSelector" label_selector => label_selector;
        vals "namespaces" namespaces;
        req "topologyKey" topology_key;
        msg "namespaceSelector" namespace_selector => label_selector;
        vals "matchLabelKeys" match_label_keys;
        vals "mismatchLabelKeys" mismatch_label_keys;
    }
    weighted_pod_affinity_term: core::WeightedPodAffinityTerm {
        req "weight" weight;
        msg "podAffinityTerm" pod_affinity_term => pod_affinity_term;
    }
    container_state_waiting: core::ContainerStateWaiting {
        opt "reason" reason;
        opt "message" message;
    }
    container_state_running: core::ContainerStateRunning {
        msg "startedAt" started_at => timestamp;
    }
    container_state_terminated: core::ContainerStateTerminated {
        req "exitCode" exit_code;
        opt "signal" signal;
        opt "reason" reason;
        opt "message" message;
        msg "startedAt" started_at => timestamp;
        msg "finishedAt" finished_at => timestamp;
        opt "containerID" container_id;
    }
    linux_container_user: core::LinuxContainerUser {
        req "uid" uid;
        req "gid" gid;
        vals "supplementalGroups" supplemental_groups;
    }
    resource_health: core::ResourceHealth { req "resourceID" resource_id; opt "health" health; }
    port_status: core::PortStatus { req "port" port; req "protocol" protocol; ptr "error" error; }
    secret_reference: core::SecretReference { opt "name" name; opt "namespace" namespace; }
    node_selector_term: core::NodeSelectorTerm {
        list "matchExpressions" match_expressions => node_selector_requirement;
        list "matchFields" match_fields => node_selector_requirement;
    }
    key_to_path: core::KeyToPath { req "key" key; req "path" path; ptr "mode" mode; }
    downward_api_volume_file: core::DownwardAPIVolumeFile {
        req "path" path;
        msg "fieldRef" field_ref => object_field_selector;
        msg "resourceFieldRef" resource_field_ref => resource_field_selector;
        ptr "mode" mode;
    }
    volume_projection: core::VolumeProjection {
        msg "secret" secret => secret_projection;
        msg "downwardAPI" downward_api => downward_api_projection;
        msg "configMap" config_map => config_map_projection;
        msg "serviceAccountToken" service_account_token => service_account_token_projection;
        msg "clusterTrustBundle" cluster_trust_bundle => cluster_trust_bundle_projection;
        msg "podCertificate" pod_certificate => pod_certificate_projection;
    }
    persistent_volume_claim_template: core::PersistentVolumeClaimTemplate {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => persistent_volume_claim_spec;
    }
    object_field_selector: core::ObjectFieldSelector {
        opt "apiVersion" api_version;
        req "fieldPath" field_path;
    }
    resource_field_selector: core::ResourceFieldSelector {
        opt "containerName" container_name;
        req "resource" resource;
        msg "divisor" divisor => quantity;
    }
    config_map_key_selector: core::ConfigMapKeySelector,
    secret_key_selector: core::SecretKeySelector {
        inline local_object_reference => local_object_reference;
        req "key" key;
        ptr "optional" optional;
    }
    file_key_selector: core::FileKeySelector {
        req "volumeName" volume_name;
        req "path" path;
        req "key" key;
        ptr "optional" optional;
    }
    exec_action: core::ExecAction { vals "command" command; }
    http_get_action: core::HttpGetAction {
        opt "path" path;
        msg "port" port => int_or_string;
        opt "host" host;
        opt "scheme" scheme;
        list "httpHeaders" http_headers => http_header;
    }
    tcp_socket_action: core::TcpSocketAction { msg "port" port => int_or_string; opt "host" host; }
    grpc_action: core::GrpcAction { req "port" port; ptr "service" service; }
    sleep_action: core::SleepAction { req "seconds" seconds; }
    node_selector_requirement: core::NodeSelectorRequirement {
        req "key" key;
        req "operator" operator;
        vals "values" values;
    }
    secret_projection: core::SecretProjection,
    config_map_projection: core::ConfigMapProjection {
        inline local_object_reference => local_object_reference;
        list "items" items => key_to_path;
        ptr "optional" optional;
    }
    downward_api_projection: core::DownwardAPIProjection {
        list "items" items => downward_api_volume_file;
    }
    service_account_token_projection: core::ServiceAccountTokenProjection {
        opt "audience" audience;
        ptr "expirationSeconds" expiration_seconds;
        req "path" path;
    }
    cluster_trust_bundle_projection: core::ClusterTrustBundleProjection {
        ptr "name" name;
        ptr "signerName" signer_name;
        msg "labelSelector" label_selector => label_selector;
        ptr "optional" optional;
        req "path" path;
    }
    pod_certificate_projection: core::PodCertificateProjection {
        opt "signerName" signer_name;
        opt "keyType" key_type;
        ptr "maxExpirationSeconds" max_expiration_seconds;
        opt "credentialBundlePath" credential_bundle_path;
        opt "keyPath" key_path;
        opt "certificateChainPath" certificate_chain_path;
        map "userAnnotations" user_annotations => text;
    }
    http_header: core::HttpHeader { req "name" name; req "value" value; }
}

// apps/v1
convert! {
    deployment: apps::Deployment {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => deployment_spec;
        msg "status" status => deployment_status;
    }
    replica_set: apps::ReplicaSet {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => replica_set_spec;
        msg "status" status => replica_set_status;
    }
    daemon_set: apps::DaemonSet {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => daemon_set_spec;
        msg "status" status => daemon_set_status;
    }
    stateful_set: apps::StatefulSet {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => stateful_set_spec;
        msg "status" status => stateful_set_status;
    }
    controller_revision: apps::ControllerRevision {
        msg "metadata" metadata => object_meta;
        msg "data" data => raw_extension;
        req "revision" revision;
    }
    deployment_spec: apps::DeploymentSpec {
        ptr "replicas" replicas;
        msg "selector" selector => label_selector;
        msg "template" template => pod_template_spec;
        msg "strategy" strategy => deployment_strategy;
        opt "minReadySeconds" min_ready_seconds;
        ptr "revisionHistoryLimit" revision_history_limit;
        opt "paused" paused;
        ptr "progressDeadlineSeconds" progress_deadline_seconds;
    }
    deployment_status: apps::DeploymentStatus {
        opt "observedGeneration" observed_generation;
        opt "replicas" replicas;
        opt "updatedReplicas" updated_replicas;
        opt "readyReplicas" ready_replicas;
        opt "availableReplicas" available_replicas;
        opt "unavailableReplicas" unavailable_replicas;
        ptr "terminatingReplicas" terminating_replicas;
        list "conditions" conditions => deployment_condition;
        ptr "collisionCount" collision_count;
    }
    replica_set_spec: apps::ReplicaSetSpec {
        ptr "replicas" replicas;
        opt "minReadySeconds" min_ready_seconds;
        msg "selector" selector => label_selector;
        msg "template" template => pod_template_spec;
    }
    replica_set_status: apps::ReplicaSetStatus {
        req "replicas" replicas;
        opt "fullyLabeledReplicas" fully_labeled_replicas;
        opt "readyReplicas" ready_replicas;
        opt "availableReplicas" available_replicas;
        ptr "terminatingReplicas" terminating_replicas;
        opt "observedGeneration" observed_generation;
        list "conditions" conditions => replica_set_condition;
    }
    daemon_set_spec: apps::DaemonSetSpec {
        msg "selector" selector => label_selector;
        msg "template" template => pod_template_spec;
        msg "updateStrategy" update_strategy => daemon_set_update_strategy;
        opt "minReadySeconds" min_ready_seconds;
        ptr "revisionHistoryLimit" revision_history_limit;
    }
    daemon_set_status: apps::DaemonSetStatus {
        req "currentNumberScheduled" current_number_scheduled;
        req "numberMisscheduled" number_misscheduled;
        req "desiredNumberScheduled" desired_number_scheduled;
        req "numberReady" number_ready;
        opt "observedGeneration" observed_generation;
        opt "updatedNumberScheduled" updated_number_scheduled;
        opt "numberAvailable" number_available;
        opt "numberUnavailable" number_unavailable;
        ptr "collisionCount" collision_count;
        list "conditions" conditions => daemon_set_condition;
    }
    stateful_set_spec: apps::StatefulSetSpec {
        ptr "replicas" replicas;
        msg "selector" selector => label_selector;
        msg "template" template => pod_template_spec;
        list "volumeClaimTemplates" volume_claim_templates => persistent_volume_claim;
        req "serviceName" service_name;
        opt "podManagementPolicy" pod_management_policy;
        msg "updateStrategy" update_strategy => stateful_set_update_strategy;
        ptr "revisionHistoryLimit" revision_history_limit;
        opt "minReadySeconds" min_ready_seconds;
        msg "persistentVolumeClaimRetentionPolicy" persistent_volume_claim_retention_policy
            => stateful_set_persistent_volume_claim_retention_policy;
        msg "ordinals" ordinals => stateful_set_ordinals;
    }
    stateful_set_status: apps::StatefulSetStatus {
        opt "observedGeneration" observed_generation;
        req "replicas" replicas;
        opt "readyReplicas" ready_replicas;
        opt "currentReplicas" current_replicas;
        opt "updatedReplicas" updated_replicas;
        opt "currentRevision" current_revision;
        opt "updateRevision" update_revision;
        ptr "collisionCount" collision_count;
        list "conditions" conditions => stateful_set_condition;
        req "availableReplicas" available_replicas;
    }
    deployment_strategy: apps::DeploymentStrategy {
        opt "type" r#type;
        msg "rollingUpdate" rolling_update => rolling_update_deployment;
    }
    deployment_condition: apps::DeploymentCondition {
        req "type" r#type;
        req "status" status;
        msg "lastUpdateTime" last_update_time => timestamp;
        msg "lastTransitionTime" last_transition_time => timestamp;
        opt "reason" reason;
        opt "message" message;
    }
    daemon_set_update_strategy: apps::DaemonSetUpdateStrategy {
        opt "type" r#type;
        msg "rollingUpdate" rolling_update => rolling_update_daemon_set;
    }
    stateful_set_update_strategy: apps::StatefulSetUpdateStrategy {
        opt "type" r#type;
        msg "rollingUpdate" rolling_update => rolling_update_stateful_set_strategy;
    }
    stateful_set_persistent_volume_claim_retention_policy:
        apps::StatefulSetPersistentVolumeClaimRetentionPolicy {
        opt "whenDeleted" when_deleted;
        opt "whenScaled" when_scaled;
    }
    stateful_set_ordinals: apps::StatefulSetOrdinals { req "start" start; }
    rolling_update_deployment: apps::RollingUpdateDeployment,
    rolling_update_daemon_set: apps::RollingUpdateDaemonSet {
        msg "maxUnavailable" max_unavailable => int_or_string;
        msg "maxSurge" max_surge => int_or_string;
    }
    rolling_update_stateful_set_strategy: apps::RollingUpdateStatefulSetStrategy {
        ptr "partition" partition;
        msg "maxUnavailable" max_unavailable => int_or_string;
    }
}

// batch/v1
convert! {
    job: batch::Job {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => job_spec;
        msg "status" status => job_status;
    }
    cron_job: batch::CronJob {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => cron_job_spec;
        msg "status" status => cron_job_status;
    }
    job_spec: batch::JobSpec {
        ptr "parallelism" parallelism;
        ptr "completions" completions;
        ptr "activeDeadlineSeconds" active_deadline_seconds;
        msg "podFailurePolicy" pod_failure_policy => pod_failure_policy;
        msg "successPolicy" success_policy => success_policy;
        ptr "backoffLimit" backoff_limit;
        ptr "backoffLimitPerIndex" backoff_limit_per_index;
        ptr "maxFailedIndexes" max_failed_indexes;
        msg "selector" selector => label_selector;
        ptr "manualSelector" manual_selector;
        msg "template" template => pod_template_spec;
        ptr "ttlSecondsAfterFinished" ttl_seconds_after_finished;
        ptr "completionMode" completion_mode;
        ptr "suspend" suspend;
        ptr "podReplacementPolicy" pod_replacement_policy;
        ptr "managedBy" managed_by;
    }
    job_status: batch::JobStatus {
        list "conditions" conditions => job_condition;
        msg "startTime" start_time => timestamp;
        msg "completionTime" completion_time => timestamp;
        opt "active" active;
        opt "succeeded" succeeded;
        opt "failed" failed;
        ptr "terminating" terminating;
        opt "completedIndexes" completed_indexes;
        ptr "failedIndexes" failed_indexes;
        msg "uncountedTerminatedPods" uncounted_terminated_pods => uncounted_terminated_pods;
        ptr "ready" ready;
    }
    cron_job_spec: batch::CronJobSpec {
        req "schedule" schedule;
        ptr "timeZone" time_zone;
        ptr "startingDeadlineSeconds" starting_deadline_seconds;
        opt "concurrencyPolicy" concurrency_policy;
        ptr "suspend" suspend;
        msg "jobTemplate" job_template => job_template_spec;
        ptr "successfulJobsHistoryLimit" successful_jobs_history_limit;
        ptr "failedJobsHistoryLimit" failed_jobs_history_limit;
    }
    cron_job_status: batch::CronJobStatus {
        list "active" active => object_reference;
        msg "lastScheduleTime" last_schedule_time => timestamp;
        msg "lastSuccessfulTime" last_successful_time => timestamp;
    }
    pod_failure_policy: batch::PodFailurePolicy { list "rules" rules => pod_failure_policy_rule; }
    success_policy: batch::SuccessPolicy { list "rules" rules => success_policy_rule; }
    uncounted_terminated_pods: batch::UncountedTerminatedPods {
        vals "succeeded" succeeded;
        vals "failed" failed;
    }
    job_template_spec: batch::JobTemplateSpec {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => job_spec;
    }
    pod_failure_policy_rule: batch::PodFailurePolicyRule {
        req "action" action;
        msg "onExitCodes" on_exit_codes => pod_failure_policy_on_exit_codes_requirement;
        list "onPodConditions" on_pod_conditions => pod_failure_policy_on_pod_conditions_pattern;
    }
    success_policy_rule: batch::SuccessPolicyRule {
        ptr "succeededIndexes" succeeded_indexes;
        ptr "succeededCount" succeeded_count;
    }
    pod_failure_policy_on_exit_codes_requirement: batch::PodFailurePolicyOnExitCodesRequirement {
        ptr "containerName" container_name;
        req "operator" operator;
        vals "values" values;
    }
    pod_failure_policy_on_pod_conditions_pattern: batch::PodFailurePolicyOnPodConditionsPattern {
        req "type" r#type;
        req "status" status;
    }
}

// rbac.authorization.k8s.io/v1
convert! {
    role: rbac::Role { msg "metadata" metadata => object_meta; list "rules" rules => policy_rule; }
    cluster_role: rbac::ClusterRole {
        msg "metadata" metadata => object_meta;
        list "rules" rules => policy_rule;
        msg "aggregationRule" aggregation_rule => aggregation_rule;
    }
    role_binding: rbac::RoleBinding,
    cluster_role_binding: rbac::ClusterRoleBinding {
        msg "metadata" metadata => object_meta;
        list "subjects" subjects => subject;
        msg "roleRef" role_ref => role_ref;
    }
    policy_rule: rbac::PolicyRule {
        vals "verbs" verbs;
        vals "apiGroups" api_groups;
        vals "resources" resources;
        vals "resourceNames" resource_names;
        vals "nonResourceURLs" non_resource_ur_ls;
    }
    aggregation_rule: rbac::AggregationRule {
        list "clusterRoleSelectors" cluster_role_selectors => label_selector;
    }
    subject: rbac::Subject {
        req "kind" kind;
        opt "apiGroup" api_group;
        req "name" name;
        opt "namespace" namespace;
    }
    role_ref: rbac::RoleRef { req "apiGroup" api_group; req "kind" kind; req "name" name; }
}

// storage.k8s.io/v1
convert! {
    storage_class: storage::StorageClass {
        msg "metadata" metadata => object_meta;
        req "provisioner" provisioner;
        map "parameters" parameters => text;
        ptr "reclaimPolicy" reclaim_policy;
        vals "mountOptions" mount_options;
        ptr "allowVolumeExpansion" allow_volume_expansion;
        ptr "volumeBindingMode" volume_binding_mode;
        list "allowedTopologies" allowed_topologies => topology_selector_term;
    }
    topology_selector_term: core::TopologySelectorTerm {
        list "matchLabelExpressions" match_label_expressions => topology_selector_label_requirement;
    }
    topology_selector_label_requirement: core::TopologySelectorLabelRequirement {
        req "key" key;
        vals "values" values;
    }
}

// scheduling.k8s.io/v1
convert! {
    priority_class: scheduling::PriorityClass {
        msg "metadata" metadata => object_meta;
        req "value" value;
        opt "globalDefault" global_default;
        opt "description" description;
        ptr "preemptionPolicy" preemption_policy;
    }
}

// coordination.k8s.io/v1
convert! {
    lease: coordination::Lease {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => lease_spec;
    }
    lease_spec: coordination::LeaseSpec {
        ptr "holderIdentity" holder_identity;
        ptr "leaseDurationSeconds" lease_duration_seconds;
        msg "acquireTime" acquire_time => micro_timestamp;
        msg "renewTime" renew_time => micro_timestamp;
        ptr "leaseTransitions" lease_transitions;
        ptr "strategy" strategy;
        ptr "preferredHolder" preferred_holder;
    }
}

// authorization.k8s.io/v1: what `kubectl auth can-i` asks
convert! {
    self_subject_access_review: authorization::SelfSubjectAccessReview {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => self_subject_access_review_spec;
    }
    self_subject_access_review_spec: authorization::SelfSubjectAccessReviewSpec {
        msg "resourceAttributes" resource_attributes => resource_attributes;
        msg "nonResourceAttributes" non_resource_attributes => non_resource_attributes;
    }
    resource_attributes: authorization::ResourceAttributes {
        opt "namespace" namespace;
        opt "verb" verb;
        opt "group" group;
        opt "version" version;
        opt "resource" resource;
        opt "subresource" subresource;
        opt "name" name;
    }
    non_resource_attributes: authorization::NonResourceAttributes {
        opt "path" path;
        opt "verb" verb;
    }
}

// networking.k8s.io/v1
convert! {
    network_policy: networking::NetworkPolicy {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => network_policy_spec;
    }
    ingress: networking::Ingress {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => ingress_spec;
        msg "status" status => ingress_status;
    }
    ingress_class: networking::IngressClass {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => ingress_class_spec;
    }
    ip_address: networking::IPAddress {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => ip_address_spec;
    }
    service_cidr: networking::ServiceCIDR {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => service_cidr_spec;
        msg "status" status => service_cidr_status;
    }
    network_policy_spec: networking::NetworkPolicySpec {
        msg "podSelector" pod_selector => label_selector;
        list "ingress" ingress => network_policy_ingress_rule;
        list "egress" egress => network_policy_egress_rule;
        vals "policyTypes" policy_types;
    }
    ingress_spec: networking::IngressSpec {
        ptr "ingressClassName" ingress_class_name;
        msg "defaultBackend" default_backend => ingress_backend;
        list "tls" tls => ingress_tls;
        list "rules" rules => ingress_rule;
    }
    ingress_status: networking::IngressStatus {
        msg "loadBalancer" load_balancer => ingress_load_balancer_status;
    }
    ingress_class_spec: networking::IngressClassSpec {
        opt "controller" controller;
        msg "parameters" parameters => ingress_class_parameters_reference;
    }
    ip_address_spec: networking::IPAddressSpec { msg "parentRef" parent_ref => parent_reference; }
    service_cidr_spec: networking::ServiceCIDRSpec { vals "cidrs" cidrs; }
    service_cidr_status: networking::ServiceCIDRStatus {
        list "conditions" conditions => condition;
    }
    network_policy_ingress_rule: networking::NetworkPolicyIngressRule {
        list "ports" ports => network_policy_port;
        list "from" from => network_policy_peer;
    }
    network_policy_egress_rule: networking::NetworkPolicyEgressRule {
        list "ports" ports => network_policy_port;
        list "to" to => network_policy_peer;
    }
    ingress_backend: networking::IngressBackend {
        msg "service" service => ingress_service_backend;
        msg "resource" resource => typed_local_object_reference;
    }
    ingress_tls: networking::IngressTls { vals "hosts" hosts; opt "secretName" secret_name; }
    ingress_rule: networking::IngressRule {
        opt "host" host;
        inline ingress_rule_value => ingress_rule_value;
    }
    ingress_load_balancer_status: networking::IngressLoadBalancerStatus {
        list "ingress" ingress => ingress_load_balancer_ingress;
    }
    ingress_class_parameters_reference: networking::IngressClassParametersReference {
        ptr "apiGroup" a_pi_group;
        req "kind" kind;
        req "name" name;
        ptr "scope" scope;
        ptr "namespace" namespace;
    }
    parent_reference: networking::ParentReference {
        opt "group" group;
        opt "resource" resource;
        opt "namespace" namespace;
        opt "name" name;
    }
    network_policy_port: networking::NetworkPolicyPort {
        ptr "protocol" protocol;
        msg "port" port => int_or_string;
        ptr "endPort" end_port;
    }
    network_policy_peer: networking::NetworkPolicyPeer {
        msg "podSelector" pod_selector => label_selector;
        msg "namespaceSelector" namespace_selector => label_selector;
        msg "ipBlock" ip_block => ip_block;
    }
    ingress_service_backend: networking::IngressServiceBackend {
        req "name" name;
        msg "port" port => service_backend_port;
    }
    ingress_rule_value: networking::IngressRuleValue { msg "http" http => http_ingress_rule_value; }
    ingress_load_balancer_ingress: networking::IngressLoadBalancerIngress {
        opt "ip" ip;
        opt "hostname" hostname;
        list "ports" ports => ingress_port_status;
    }
    ip_block: networking::IpBlock { req "cidr" cidr; vals "except" except; }
    service_backend_port: networking::ServiceBackendPort { opt "name" name; opt "number" number; }
    http_ingress_rule_value: networking::HttpIngressRuleValue {
        list "paths" paths => http_ingress_path;
    }
    ingress_port_status: networking::IngressPortStatus {
        req "port" port;
        req "protocol" protocol;
        ptr "error" error;
    }
    http_ingress_path: networking::HttpIngressPath {
        opt "path" path;
        ptr "pathType" path_type;
        msg "backend" backend => ingress_backend;
    }
}

// discovery.k8s.io/v1
convert! {
    endpoint_slice: discovery::EndpointSlice {
        msg "metadata" metadata => object_meta;
        req "addressType" address_type;
        list "endpoints" endpoints => slice_endpoint;
        list "ports" ports => slice_port;
    }
    slice_endpoint: discovery::Endpoint {
        vals "addresses" addresses;
        msg "conditions" conditions => endpoint_conditions;
        ptr "hostname" hostname;
        msg "targetRef" target_ref => object_reference;
        map "deprecatedTopology" deprecated_topology => text;
        ptr "nodeName" node_name;
        ptr "zone" zone;
        msg "hints" hints => endpoint_hints;
    }
    slice_port: discovery::EndpointPort {
        ptr "name" name;
        ptr "protocol" protocol;
        ptr "port" port;
        ptr "appProtocol" app_protocol;
    }
    endpoint_conditions: discovery::EndpointConditions {
        ptr "ready" ready;
        ptr "serving" serving;
        ptr "terminating" terminating;
    }
    endpoint_hints: discovery::EndpointHints {
        list "forZones" for_zones => for_zone;
        list "forNodes" for_nodes => for_node;
    }
    for_zone: discovery::ForZone { req "name" name; }
    for_node: discovery::ForNode { req "name" name; }
}

// policy/v1
convert! {
    pod_disruption_budget: policy::PodDisruptionBudget {
        msg "metadata" metadata => object_meta;
        msg "spec" spec => pod_disruption_budget_spec;
        msg "status" status => pod_disruption_budget_status;
    }
    eviction: policy::Eviction {
        msg "metadata" metadata => object_meta;
        msg "deleteOptions" delete_options => delete_options;
    }
    pod_disruption_budget_spec: policy::PodDisruptionBudgetSpec {
        msg "minAvailable" min_available => int_or_string;
        msg "selector" selector => label_selector;
        msg "maxUnavailable" max_unavailable => int_or_string;
        ptr "unhealthyPodEvictionPolicy" unhealthy_pod_eviction_policy;
    }
    pod_disruption_budget_status: policy::PodDisruptionBudgetStatus {
        opt "observedGeneration" observed_generation;
        map "disruptedPods" disrupted_pods => timestamp;
        req "disruptionsAllowed" disruptions_allowed;
        req "currentHealthy" current_healthy;
        req "desiredHealthy" desired_healthy;
        req "expectedPods" expected_pods;
        list "conditions" conditions => condition;
    }
}

// events.k8s.io/v1
convert! {
    events_event: events::Event {
        msg "metadata" metadata => object_meta;
        msg "eventTime" event_time => micro_timestamp;
        msg "series" series => events_event_series;
        opt "reportingController" reporting_controller;
        opt "reportingInstance" reporting_instance;
        opt "action" action;
        opt "reason" reason;
        msg "regarding" regarding => object_reference;
        msg "related" related => object_reference;
        opt "note" note;
        opt "type" r#type;
        msg "deprecatedSource" deprecated_source => event_source;
        msg "deprecatedFirstTimestamp" deprecated_first_timestamp => timestamp;
        msg "deprecatedLastTimestamp" deprecated_last_timestamp => timestamp;
        opt "deprecatedCount" deprecated_count;
    }
    events_event_series: events::EventSeries {
        req "count" count;
        msg "lastObservedTime" last_observed_time => micro_timestamp;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// ObjectMeta as Go's encoder writes it: every non-pointer field present, mostly empty.
    fn go_meta(name: &str, labels: BTreeMap<String, String>) -> meta::ObjectMeta {
        meta::ObjectMeta {
            name: s(name),
            generate_name: s(""),
            namespace: s(""),
            self_link: s(""),
            uid: s(""),
            resource_version: s(""),
            generation: Some(0),
            creation_timestamp: Some(meta::Time::default()),
            labels,
            ..Default::default()
        }
    }

    /// A Container as Go's encoder writes one with only name, image and command set.
    fn go_container(name: &str, image: &str, command: &[&str]) -> core::Container {
        core::Container {
            name: s(name),
            image: s(image),
            command: command.iter().map(|c| c.to_string()).collect(),
            working_dir: s(""),
            resources: Some(core::ResourceRequirements::default()),
            termination_message_path: s(""),
            termination_message_policy: s(""),
            image_pull_policy: s(""),
            stdin: Some(false),
            stdin_once: Some(false),
            tty: Some(false),
            ..Default::default()
        }
    }

    fn go_pod_spec(containers: Vec<core::Container>, restart_policy: &str) -> core::PodSpec {
        core::PodSpec {
            containers,
            restart_policy: s(restart_policy),
            dns_policy: s(""),
            service_account_name: s(""),
            service_account: s(""),
            node_name: s(""),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            hostname: s(""),
            subdomain: s(""),
            scheduler_name: s(""),
            priority_class_name: s(""),
            ..Default::default()
        }
    }

    fn convert<M: Message>(group: &str, kind: &str, object: &M) -> Value {
        to_json(group, kind, &object.encode_to_vec()).unwrap()
    }

    /// `kubectl create deployment web --image=nginx --replicas=2 --port=80`.
    fn kubectl_deployment() -> apps::Deployment {
        let app = labels(&[("app", "web")]);
        let mut container = go_container("nginx", "nginx", &[]);
        container.ports = vec![core::ContainerPort {
            name: s(""),
            host_port: Some(0),
            container_port: Some(80),
            protocol: s(""),
            host_ip: s(""),
        }];
        apps::Deployment {
            metadata: Some(go_meta("web", app.clone())),
            spec: Some(apps::DeploymentSpec {
                replicas: Some(2),
                selector: Some(meta::LabelSelector {
                    match_labels: app.clone(),
                    ..Default::default()
                }),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(go_meta("", app)),
                    spec: Some(go_pod_spec(vec![container], "")),
                }),
                strategy: Some(apps::DeploymentStrategy {
                    r#type: s(""),
                    rolling_update: None,
                }),
                min_ready_seconds: Some(0),
                paused: Some(false),
                ..Default::default()
            }),
            status: Some(apps::DeploymentStatus {
                observed_generation: Some(0),
                replicas: Some(0),
                updated_replicas: Some(0),
                ready_replicas: Some(0),
                available_replicas: Some(0),
                unavailable_replicas: Some(0),
                ..Default::default()
            }),
        }
    }

    /// What `kubectl create deployment web --image=nginx --replicas=2 --port=80` looks like in
    /// Kubernetes JSON (`--dry-run=client -o json`, less apiVersion, kind and null timestamps).
    fn kubectl_deployment_json() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx",
                        "ports": [{"containerPort": 80}],
                        "resources": {}
                    }]}
                },
                "strategy": {}
            },
            "status": {}
        })
    }

    #[test]
    fn kubectl_create_deployment() {
        let json = convert("apps", "Deployment", &kubectl_deployment());
        assert_eq!(json, kubectl_deployment_json());
    }

    /// The body kubectl v1.32 sent for the same command, captured on the wire.
    const KUBECTL_DEPLOYMENT_BODY: &[u8] = b"k8s\x00\x0a\x15\x0a\x07apps/v1\x12\x0aDeployment\x12\
        \xb8\x01\x0a\x1f\x0a\x03web\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x0a\x0a\x03app\
        \x12\x03web\x12\x86\x01\x08\x02\x12\x0c\x0a\x0a\x0a\x03app\x12\x03web\x1al\x0a\x1c\x0a\x00\
        \x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x0a\x0a\x03app\x12\x03web\x12L\x12.\x0a\x05n\
        ginx\x12\x05nginx*\x002\x0a\x0a\x00\x10\x00\x18P\x22\x00*\x00B\x00j\x00r\x00\x80\x01\x00\
        \x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x002\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\
        \x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x22\x02\x0a\x00(\x008\x00\x1a\x0c\x08\x00\x10\x00\
        \x18\x00\x20\x00(\x008\x00\x1a\x00\x22\x00";

    #[test]
    fn kubectl_create_deployment_from_the_wire() {
        let envelope = KUBECTL_DEPLOYMENT_BODY.strip_prefix(b"k8s\0").unwrap();
        let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(envelope).unwrap();
        let json = to_json("apps", "Deployment", &unknown.raw.unwrap()).unwrap();
        assert_eq!(json, kubectl_deployment_json());
    }

    /// `kubectl create service nodeport web --tcp=80:http --node-port=30080`.
    #[test]
    fn service_with_node_port_and_named_target_port() {
        let app = labels(&[("app", "web")]);
        let service = core::Service {
            metadata: Some(go_meta("web", app.clone())),
            spec: Some(core::ServiceSpec {
                ports: vec![core::ServicePort {
                    name: s("80-http"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("http"),
                    }),
                    node_port: Some(30080),
                    ..Default::default()
                }],
                selector: app,
                cluster_ip: s(""),
                r#type: s("NodePort"),
                session_affinity: s(""),
                load_balancer_ip: s(""),
                external_name: s(""),
                external_traffic_policy: s(""),
                health_check_node_port: Some(0),
                publish_not_ready_addresses: Some(false),
                ..Default::default()
            }),
            status: Some(core::ServiceStatus {
                load_balancer: Some(core::LoadBalancerStatus::default()),
                conditions: vec![],
            }),
        };
        assert_eq!(
            convert("", "Service", &service),
            json!({
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "ports": [{
                        "name": "80-http",
                        "protocol": "TCP",
                        "port": 80,
                        "targetPort": "http",
                        "nodePort": 30080
                    }],
                    "selector": {"app": "web"},
                    "type": "NodePort"
                },
                "status": {"loadBalancer": {}}
            })
        );
    }

    #[test]
    fn secret_data_is_base64() {
        let secret = core::Secret {
            metadata: Some(go_meta("creds", BTreeMap::new())),
            data: [
                ("user".to_string(), b"admin".to_vec()),
                ("blob".to_string(), vec![0, 255]),
            ]
            .into(),
            string_data: BTreeMap::new(),
            r#type: s("Opaque"),
            immutable: None,
        };
        assert_eq!(
            convert("", "Secret", &secret),
            json!({
                "metadata": {"name": "creds"},
                "data": {"user": "YWRtaW4=", "blob": "AP8="},
                "type": "Opaque"
            })
        );
    }

    #[test]
    fn storage_class_with_topologies_and_a_false_pointer() {
        let class = storage::StorageClass {
            metadata: Some(go_meta("local", BTreeMap::new())),
            provisioner: s("kubernetes.io/no-provisioner"),
            parameters: [("tier".to_string(), "gold".to_string())].into(),
            reclaim_policy: s("Retain"),
            mount_options: vec![],
            allow_volume_expansion: Some(false),
            volume_binding_mode: s("WaitForFirstConsumer"),
            allowed_topologies: vec![core::TopologySelectorTerm {
                match_label_expressions: vec![core::TopologySelectorLabelRequirement {
                    key: s("kubernetes.io/hostname"),
                    values: vec!["n1".into()],
                }],
            }],
        };
        assert_eq!(
            convert("storage.k8s.io", "StorageClass", &class),
            json!({
                "metadata": {"name": "local"},
                "provisioner": "kubernetes.io/no-provisioner",
                "parameters": {"tier": "gold"},
                "reclaimPolicy": "Retain",
                "allowVolumeExpansion": false,
                "volumeBindingMode": "WaitForFirstConsumer",
                "allowedTopologies": [{"matchLabelExpressions": [
                    {"key": "kubernetes.io/hostname", "values": ["n1"]}
                ]}]
            })
        );
    }

    /// `kubectl create cronjob tick --image=busybox --schedule='*/5 * * * *' -- date`, with a
    /// status to show timestamps and a zero pointer.
    #[test]
    fn cron_job() {
        let cron_job = batch::CronJob {
            metadata: Some(go_meta("tick", BTreeMap::new())),
            spec: Some(batch::CronJobSpec {
                schedule: s("*/5 * * * *"),
                concurrency_policy: s(""),
                suspend: Some(false),
                job_template: Some(batch::JobTemplateSpec {
                    metadata: Some(go_meta("tick", BTreeMap::new())),
                    spec: Some(batch::JobSpec {
                        template: Some(core::PodTemplateSpec {
                            metadata: Some(go_meta("", BTreeMap::new())),
                            spec: Some(go_pod_spec(
                                vec![go_container("tick", "busybox", &["date"])],
                                "OnFailure",
                            )),
                        }),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            status: Some(batch::CronJobStatus {
                active: vec![],
                last_schedule_time: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(0),
                }),
                last_successful_time: None,
            }),
        };
        assert_eq!(
            convert("batch", "CronJob", &cron_job),
            json!({
                "metadata": {"name": "tick"},
                "spec": {
                    "schedule": "*/5 * * * *",
                    "suspend": false,
                    "jobTemplate": {
                        "metadata": {"name": "tick"},
                        "spec": {"template": {
                            "metadata": {},
                            "spec": {
                                "containers": [{
                                    "name": "tick",
                                    "image": "busybox",
                                    "command": ["date"],
                                    "resources": {}
                                }],
                                "restartPolicy": "OnFailure"
                            }
                        }}
                    }
                },
                "status": {"lastScheduleTime": "2023-11-14T22:13:20Z"}
            })
        );
    }

    /// A Job whose pod uses inline structs (volume sources, secret references), a probe with a
    /// numeric port and resource quantities.
    #[test]
    fn job_with_a_full_container() {
        let mut container = go_container("once", "busybox", &["echo", "hi"]);
        container.env = vec![core::EnvVar {
            name: s("TOKEN"),
            value: s(""),
            value_from: Some(core::EnvVarSource {
                secret_key_ref: Some(core::SecretKeySelector {
                    local_object_reference: Some(core::LocalObjectReference { name: s("creds") }),
                    key: s("token"),
                    optional: None,
                }),
                ..Default::default()
            }),
        }];
        container.resources = Some(core::ResourceRequirements {
            limits: [("cpu".to_string(), quantity_of("500m"))].into(),
            requests: [("memory".to_string(), quantity_of("64Mi"))].into(),
            claims: vec![],
        });
        container.readiness_probe = Some(core::Probe {
            handler: Some(core::ProbeHandler {
                http_get: Some(core::HttpGetAction {
                    path: s("/healthz"),
                    port: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: s(""),
                    }),
                    host: s(""),
                    scheme: s("HTTP"),
                    http_headers: vec![],
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(0),
            timeout_seconds: Some(1),
            period_seconds: Some(10),
            success_threshold: Some(1),
            failure_threshold: Some(3),
            termination_grace_period_seconds: None,
        });
        container.volume_mounts = vec![core::VolumeMount {
            name: s("config"),
            read_only: Some(true),
            mount_path: s("/etc/app"),
            sub_path: s(""),
            mount_propagation: None,
            sub_path_expr: s(""),
            recursive_read_only: None,
        }];
        let mut pod_spec = go_pod_spec(vec![container], "Never");
        pod_spec.volumes = vec![core::Volume {
            name: s("config"),
            volume_source: Some(core::VolumeSource {
                config_map: Some(core::ConfigMapVolumeSource {
                    local_object_reference: Some(core::LocalObjectReference { name: s("app") }),
                    items: vec![],
                    default_mode: Some(0o644),
                    optional: None,
                }),
                ..Default::default()
            }),
        }];
        pod_spec.node_selector = labels(&[("disk", "ssd")]);
        pod_spec.tolerations = vec![core::Toleration {
            key: s("dedicated"),
            operator: s("Exists"),
            value: s(""),
            effect: s("NoSchedule"),
            toleration_seconds: None,
        }];
        let job = batch::Job {
            metadata: Some(go_meta("once", BTreeMap::new())),
            spec: Some(batch::JobSpec {
                backoff_limit: Some(0),
                template: Some(core::PodTemplateSpec {
                    metadata: Some(go_meta("", BTreeMap::new())),
                    spec: Some(pod_spec),
                }),
                ..Default::default()
            }),
            status: Some(batch::JobStatus {
                active: Some(0),
                succeeded: Some(0),
                failed: Some(0),
                completed_indexes: s(""),
                ..Default::default()
            }),
        };
        assert_eq!(
            convert("batch", "Job", &job),
            json!({
                "metadata": {"name": "once"},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "metadata": {},
                        "spec": {
                            "volumes": [{
                                "name": "config",
                                "configMap": {"name": "app", "defaultMode": 420}
                            }],
                            "containers": [{
                                "name": "once",
                                "image": "busybox",
                                "command": ["echo", "hi"],
                                "env": [{
                                    "name": "TOKEN",
                                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}
                                }],
                                "resources": {
                                    "limits": {"cpu": "500m"},
                                    "requests": {"memory": "64Mi"}
                                },
                                "volumeMounts": [{
                                    "name": "config",
                                    "readOnly": true,
                                    "mountPath": "/etc/app"
                                }],
                                "readinessProbe": {
                                    "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                                    "timeoutSeconds": 1,
                                    "periodSeconds": 10,
                                    "successThreshold": 1,
                                    "failureThreshold": 3
                                }
                            }],
                            "restartPolicy": "Never",
                            "nodeSelector": {"disk": "ssd"},
                            "tolerations": [{
                                "key": "dedicated",
                                "operator": "Exists",
                                "effect": "NoSchedule"
                            }]
                        }
                    }
                },
                "status": {}
            })
        );
    }

    fn quantity_of(v: &str) -> Quantity {
        Quantity { string: s(v) }
    }

    #[test]
    fn micro_time_and_embedded_json() {
        let lease = coordination::Lease {
            metadata: Some(go_meta("leader", BTreeMap::new())),
            spec: Some(coordination::LeaseSpec {
                holder_identity: s("node-1"),
                lease_duration_seconds: Some(15),
                renew_time: Some(meta::MicroTime {
                    seconds: Some(1_700_000_000),
                    nanos: Some(123_456_789),
                }),
                ..Default::default()
            }),
        };
        assert_eq!(
            convert("coordination.k8s.io", "Lease", &lease),
            json!({
                "metadata": {"name": "leader"},
                "spec": {
                    "holderIdentity": "node-1",
                    "leaseDurationSeconds": 15,
                    "renewTime": "2023-11-14T22:13:20.123456Z"
                }
            })
        );

        let revision = |raw: &[u8]| apps::ControllerRevision {
            metadata: Some(go_meta("web-1", BTreeMap::new())),
            data: Some(RawExtension {
                raw: Some(raw.to_vec()),
            }),
            revision: Some(1),
        };
        assert_eq!(
            convert(
                "apps",
                "ControllerRevision",
                &revision(br#"{"spec":{"a":1}}"#)
            ),
            json!({"metadata": {"name": "web-1"}, "data": {"spec": {"a": 1}}, "revision": 1})
        );
        let bad = revision(b"\x01\x02").encode_to_vec();
        assert!(matches!(
            to_json("apps", "ControllerRevision", &bad),
            Err(ProtobufError::Malformed(_))
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        for garbage in [&b"junk"[..], b"\xff\xff\xff\xff\xff", b"\x0a\x05ab"] {
            let err = to_json("apps", "Deployment", garbage).unwrap_err();
            assert!(matches!(err, ProtobufError::Malformed(_)), "{err:?}");
            assert!(err.to_string().starts_with("malformed protobuf body: "));
        }
        let bad_port = core::Service {
            spec: Some(core::ServiceSpec {
                ports: vec![core::ServicePort {
                    target_port: Some(IntOrString {
                        r#type: Some(7),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            to_json("", "Service", &bad_port.encode_to_vec()),
            Err(ProtobufError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_kind_is_unsupported() {
        let err = to_json("example.com", "Widget", b"").unwrap_err();
        assert!(matches!(err, ProtobufError::UnsupportedKind(_)));
        assert_eq!(
            err.to_string(),
            "application/vnd.kubernetes.protobuf for Widget.example.com"
        );
        assert!(matches!(
            to_json("", "Deployment", b""),
            Err(ProtobufError::UnsupportedKind(_))
        ));
    }
}
