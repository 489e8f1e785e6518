//! Every resource the API server serves, as one static table. URL routing, storage keys,
//! discovery (legacy and aggregated) and the OpenAPI documents are all derived from it, so a
//! kind is added in one place.

/// Verbs of an ordinary stored resource.
const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces cannot be deleted as a collection.
const RW_NO_COLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
const CREATE_ONLY: &[&str] = &["create"];
const READ_ONLY: &[&str] = &["get", "list"];

/// A subresource (`pods/status`, `deployments/scale`) and the kind it speaks.
#[derive(Debug)]
pub struct Subresource {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One resource: how clients name it, where it lives, what may be done to it.
#[derive(Debug)]
pub struct ResourceType {
    /// API group; "" for the legacy core group.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural, lower case: the URL segment and the registry directory.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Whether objects are kept in the store (false for reviews and metrics).
    pub stored: bool,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group: how error messages name the resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The subresource called `name`, if the resource has it.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Whether the resource keeps a status that only the status subresource may change.
    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }

    /// Whether `metadata.generation` tracks spec changes, as upstream's strategies do.
    pub fn tracks_generation(&self) -> bool {
        matches!(
            self.kind,
            "Deployment"
                | "ReplicaSet"
                | "DaemonSet"
                | "StatefulSet"
                | "Job"
                | "CronJob"
                | "NetworkPolicy"
                | "PersistentVolumeClaim"
                | "PodDisruptionBudget"
        )
    }
}

const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}

const fn scale() -> Subresource {
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: STATUS_VERBS,
    }
}

#[allow(clippy::too_many_arguments)]
const fn stored(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        categories,
        verbs: RW,
        subresources,
        stored: true,
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// Every resource served, grouped by API group in discovery order.
pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        verbs: RW_NO_COLLECTION,
        ..stored(
            "",
            "v1",
            "namespaces",
            "namespace",
            "Namespace",
            false,
            &["ns"],
            NONE,
            &[
                status("", "v1", "Namespace"),
                Subresource {
                    name: "finalize",
                    group: "",
                    version: "v1",
                    kind: "Namespace",
                    verbs: &["update"],
                },
            ],
        )
    },
    stored(
        "",
        "v1",
        "nodes",
        "node",
        "Node",
        false,
        &["no"],
        NONE,
        &[status("", "v1", "Node")],
    ),
    stored(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        &["po"],
        ALL,
        &[
            Subresource {
                name: "binding",
                group: "",
                version: "v1",
                kind: "Binding",
                verbs: CREATE_ONLY,
            },
            Subresource {
                name: "eviction",
                group: "policy",
                version: "v1",
                kind: "Eviction",
                verbs: CREATE_ONLY,
            },
            Subresource {
                name: "exec",
                group: "",
                version: "v1",
                kind: "PodExecOptions",
                verbs: &["create", "get"],
            },
            Subresource {
                name: "log",
                group: "",
                version: "v1",
                kind: "Pod",
                verbs: &["get"],
            },
            Subresource {
                name: "portforward",
                group: "",
                version: "v1",
                kind: "PodPortForwardOptions",
                verbs: &["create", "get"],
            },
            status("", "v1", "Pod"),
        ],
    ),
    stored(
        "",
        "v1",
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        ALL,
        &[status("", "v1", "Service")],
    ),
    stored(
        "",
        "v1",
        "endpoints",
        "endpoints",
        "Endpoints",
        true,
        &["ep"],
        NONE,
        &[],
    ),
    stored(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        true,
        &["cm"],
        NONE,
        &[],
    ),
    stored(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        true,
        NONE,
        NONE,
        &[],
    ),
    stored(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        NONE,
        &[Subresource {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: CREATE_ONLY,
        }],
    ),
    stored(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        NONE,
        &[],
    ),
    stored(
        "",
        "v1",
        "persistentvolumes",
        "persistentvolume",
        "PersistentVolume",
        false,
        &["pv"],
        NONE,
        &[status("", "v1", "PersistentVolume")],
    ),
    stored(
        "",
        "v1",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        NONE,
        &[status("", "v1", "PersistentVolumeClaim")],
    ),
    stored(
        "",
        "v1",
        "resourcequotas",
        "resourcequota",
        "ResourceQuota",
        true,
        &["quota"],
        NONE,
        &[status("", "v1", "ResourceQuota")],
    ),
    stored(
        "",
        "v1",
        "limitranges",
        "limitrange",
        "LimitRange",
        true,
        &["limits"],
        NONE,
        &[],
    ),
    stored(
        "",
        "v1",
        "podtemplates",
        "podtemplate",
        "PodTemplate",
        true,
        NONE,
        NONE,
        &[],
    ),
    stored(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        true,
        &["deploy"],
        ALL,
        &[scale(), status("apps", "v1", "Deployment")],
    ),
    stored(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        true,
        &["rs"],
        ALL,
        &[scale(), status("apps", "v1", "ReplicaSet")],
    ),
    stored(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        true,
        &["ds"],
        ALL,
        &[status("apps", "v1", "DaemonSet")],
    ),
    stored(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        true,
        &["sts"],
        ALL,
        &[scale(), status("apps", "v1", "StatefulSet")],
    ),
    stored(
        "apps",
        "v1",
        "controllerrevisions",
        "controllerrevision",
        "ControllerRevision",
        true,
        NONE,
        NONE,
        &[],
    ),
    stored(
        "batch",
        "v1",
        "jobs",
        "job",
        "Job",
        true,
        NONE,
        ALL,
        &[status("batch", "v1", "Job")],
    ),
    stored(
        "batch",
        "v1",
        "cronjobs",
        "cronjob",
        "CronJob",
        true,
        &["cj"],
        ALL,
        &[status("batch", "v1", "CronJob")],
    ),
    stored(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        true,
        NONE,
        NONE,
        &[],
    ),
    stored(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "endpointslice",
        "EndpointSlice",
        true,
        NONE,
        NONE,
        &[],
    ),
    stored(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
        NONE,
        NONE,
        &[],
    ),
    stored(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "clusterrole",
        "ClusterRole",
        false,
        NONE,
        NONE,
        &[],
    ),
    stored(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        true,
        NONE,
        NONE,
        &[],
    ),
    stored(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "role",
        "Role",
        true,
        NONE,
        NONE,
        &[],
    ),
    stored(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        true,
        &["netpol"],
        NONE,
        &[],
    ),
    stored(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        false,
        &["pc"],
        NONE,
        &[],
    ),
    stored(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        NONE,
        &[status("policy", "v1", "PodDisruptionBudget")],
    ),
    stored(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "storageclass",
        "StorageClass",
        false,
        &["sc"],
        NONE,
        &[],
    ),
    stored(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        true,
        &["ev"],
        NONE,
        &[],
    ),
    ResourceType {
        verbs: CREATE_ONLY,
        stored: false,
        ..stored(
            "authentication.k8s.io",
            "v1",
            "selfsubjectreviews",
            "selfsubjectreview",
            "SelfSubjectReview",
            false,
            NONE,
            NONE,
            &[],
        )
    },
    ResourceType {
        verbs: CREATE_ONLY,
        stored: false,
        ..stored(
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            "SelfSubjectAccessReview",
            false,
            NONE,
            NONE,
            &[],
        )
    },
    ResourceType {
        verbs: READ_ONLY,
        stored: false,
        ..stored(
            "metrics.k8s.io",
            "v1beta1",
            "nodes",
            "",
            "NodeMetrics",
            false,
            NONE,
            NONE,
            &[],
        )
    },
    ResourceType {
        verbs: READ_ONLY,
        stored: false,
        ..stored(
            "metrics.k8s.io",
            "v1beta1",
            "pods",
            "",
            "PodMetrics",
            true,
            NONE,
            NONE,
            &[],
        )
    },
];

/// The resource `plural` of `group/version`, if served.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Served group/versions in discovery order, as (group, version).
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Resources of one group/version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceType> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let d = find("apps", "v1", "deployments").unwrap();
        assert_eq!(d.kind, "Deployment");
        assert_eq!(d.qualified(), "deployments.apps");
        assert_eq!(d.api_version(), "apps/v1");
        assert_eq!(d.subresource("scale").unwrap().kind, "Scale");
        assert!(d.has_status() && d.tracks_generation());
        assert_eq!(find("", "v1", "pods").unwrap().qualified(), "pods");
        assert!(find("", "v1", "nope").is_none());
        let gvs = group_versions();
        assert_eq!(gvs[0], ("", "v1"));
        assert!(gvs.contains(&("metrics.k8s.io", "v1beta1")));
        assert_eq!(in_group_version("batch", "v1").count(), 2);
    }
}
