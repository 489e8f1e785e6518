//! RBAC authorization: a request is allowed when a rule of a role bound to the caller covers
//! it, and `system:masters` may do anything. Roles and bindings are ordinary objects in the
//! store, so `kubectl create rolebinding` takes effect on the next request.

use serde_json::{json, Value};

use super::catalog;
use super::objects;
use super::registry::{self, Claims, ListOptions};
use super::status::Status;
use super::User;
use crate::store::Store;

/// The group whose members bypass RBAC, as in Kubernetes.
pub const SUPERUSER_GROUP: &str = "system:masters";

/// What a request asks to do, in RBAC's terms.
#[derive(Debug, Clone)]
pub enum Attributes {
    /// A verb on a resource (or subresource) of an API group.
    Resource {
        verb: String,
        group: String,
        resource: String,
        subresource: Option<String>,
        namespace: Option<String>,
        name: Option<String>,
    },
    /// A plain HTTP verb on a path outside the resource tree (`/version`, `/openapi/v3`).
    NonResource { verb: String, path: String },
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn covers(list: &[&str], want: &str) -> bool {
    list.iter().any(|x| *x == "*" || *x == want)
}

/// Whether one PolicyRule allows the request.
pub fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    match attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            name,
            ..
        } => {
            if !covers(&strings(&rule["verbs"]), verb)
                || !covers(&strings(&rule["apiGroups"]), group)
            {
                return false;
            }
            let resources = strings(&rule["resources"]);
            let resource_ok = match subresource {
                Some(sub) => {
                    let full = format!("{resource}/{sub}");
                    let any_sub = format!("*/{sub}");
                    resources
                        .iter()
                        .any(|r| *r == "*" || *r == full || *r == any_sub)
                }
                None => covers(&resources, resource),
            };
            let names = strings(&rule["resourceNames"]);
            resource_ok && (names.is_empty() || name.as_deref().is_some_and(|n| names.contains(&n)))
        }
        Attributes::NonResource { verb, path } => {
            covers(&strings(&rule["verbs"]), verb)
                && strings(&rule["nonResourceURLs"]).iter().any(|u| {
                    *u == "*"
                        || *u == path
                        || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
                })
        }
    }
}

/// Whether a binding's subjects include the user.
fn binds(binding: &Value, user: &User) -> bool {
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| {
            let name = s["name"].as_str().unwrap_or("");
            match s["kind"].as_str() {
                Some("User") => name == user.name,
                Some("Group") => user.groups.iter().any(|g| g == name),
                Some("ServiceAccount") => {
                    user.name
                        == format!(
                            "system:serviceaccount:{}:{name}",
                            s["namespace"].as_str().unwrap_or("")
                        )
                }
                _ => false,
            }
        })
}

async fn all(store: &Store, plural: &str, namespace: Option<&str>) -> Result<Vec<Value>, Status> {
    let Some(res) = catalog::find("rbac.authorization.k8s.io", "v1", plural) else {
        return Ok(vec![]);
    };
    let opts = ListOptions {
        serializable: true,
        ..Default::default()
    };
    Ok(
        registry::list(store, &registry::prefix(res, namespace), &opts, |_| true)
            .await?
            .items,
    )
}

async fn role(
    store: &Store,
    binding: &Value,
    namespace: Option<&str>,
) -> Result<Option<Value>, Status> {
    let name = binding["roleRef"]["name"].as_str().unwrap_or("");
    let (plural, ns) = match binding["roleRef"]["kind"].as_str() {
        Some("ClusterRole") => ("clusterroles", None),
        Some("Role") => ("roles", namespace),
        _ => return Ok(None),
    };
    let Some(res) = catalog::find("rbac.authorization.k8s.io", "v1", plural) else {
        return Ok(None);
    };
    registry::get_local(store, &registry::key(res, ns, name))
}

async fn any_rule(
    store: &Store,
    bindings: Vec<Value>,
    user: &User,
    namespace: Option<&str>,
    attrs: &Attributes,
) -> Result<bool, Status> {
    for b in bindings.iter().filter(|b| binds(b, user)) {
        if let Some(role) = role(store, b, namespace).await? {
            if role["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| rule_allows(r, attrs))
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether RBAC allows `user` the request.
pub async fn allowed(store: &Store, user: &User, attrs: &Attributes) -> Result<bool, Status> {
    if user.groups.iter().any(|g| g == SUPERUSER_GROUP) {
        return Ok(true);
    }
    let cluster = all(store, "clusterrolebindings", None).await?;
    if any_rule(store, cluster, user, None, attrs).await? {
        return Ok(true);
    }
    if let Attributes::Resource {
        namespace: Some(ns),
        ..
    } = attrs
    {
        let local = all(store, "rolebindings", Some(ns)).await?;
        return any_rule(store, local, user, Some(ns), attrs).await;
    }
    Ok(false)
}

/// The 403 upstream's RBAC authorizer gives for a denied request.
pub fn denied(user: &User, attrs: &Attributes) -> Status {
    match attrs {
        Attributes::Resource {
            verb,
            group,
            resource,
            subresource,
            namespace,
            name,
        } => {
            let what = match subresource {
                Some(s) => format!("{resource}/{s}"),
                None => resource.clone(),
            };
            let qualified = if group.is_empty() {
                what.clone()
            } else {
                format!("{what}.{group}")
            };
            let subject = match name {
                Some(n) => format!("{qualified} \"{n}\""),
                None => qualified,
            };
            let scope = match namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".into(),
            };
            let mut s = Status::forbidden(format!(
                "{subject} is forbidden: User \"{}\" cannot {verb} resource \"{what}\" in API group \"{group}\" {scope}",
                user.name
            ));
            s.details = Some(json!({"name": name, "group": group, "kind": resource}));
            s
        }
        Attributes::NonResource { verb, path } => Status::forbidden(format!(
            "forbidden: User \"{}\" cannot {verb} path \"{path}\"",
            user.name
        )),
    }
}

/// Roles every cluster starts with, as upstream's bootstrap policy names them.
fn bootstrap_roles() -> Vec<(&'static str, Value)> {
    let read = json!(["get", "list", "watch"]);
    let write = json!(["create", "delete", "deletecollection", "patch", "update"]);
    let everyday = json!([
        "pods",
        "pods/log",
        "pods/status",
        "services",
        "endpoints",
        "configmaps",
        "persistentvolumeclaims",
        "replicationcontrollers",
        "events",
        "serviceaccounts",
        "deployments",
        "deployments/scale",
        "replicasets",
        "replicasets/scale",
        "daemonsets",
        "statefulsets",
        "statefulsets/scale",
        "jobs",
        "cronjobs",
        "leases",
        "endpointslices",
        "networkpolicies",
        "limitranges",
        "resourcequotas",
        "controllerrevisions",
        "podtemplates",
        "poddisruptionbudgets"
    ]);
    let groups = json!([
        "",
        "apps",
        "batch",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "networking.k8s.io",
        "policy",
        "events.k8s.io"
    ]);
    vec![
        (
            "cluster-admin",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ]),
        ),
        (
            "view",
            json!([{"apiGroups": groups, "resources": everyday, "verbs": read}]),
        ),
        (
            "edit",
            json!([
                {"apiGroups": groups, "resources": everyday, "verbs": read},
                {"apiGroups": groups, "resources": everyday, "verbs": write},
                {"apiGroups": [""], "resources": ["secrets", "pods/exec", "pods/portforward", "pods/eviction"], "verbs": ["*"]},
            ]),
        ),
        (
            "admin",
            json!([
                {"apiGroups": groups, "resources": everyday, "verbs": ["*"]},
                {"apiGroups": [""], "resources": ["secrets", "pods/exec", "pods/portforward", "pods/eviction"], "verbs": ["*"]},
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["*"]},
            ]),
        ),
        (
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*",
            "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        (
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        (
            // What a node agent does: register and report its Node, heartbeat its Lease, follow
            // the pods bound to it and what they mount, and report their status and events.
            "system:node",
            json!([
                {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
                {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch", "update"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
                {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]},
                // The built-in local-path provisioner binds claims to volumes on its node.
                {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["create", "delete"]},
                {"apiGroups": [""], "resources": ["persistentvolumes/status", "persistentvolumeclaims", "persistentvolumeclaims/status"], "verbs": ["patch", "update"]},
                {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
                {"apiGroups": [""], "resources": ["configmaps", "secrets", "persistentvolumeclaims", "persistentvolumes", "services", "endpoints"], "verbs": read},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
                {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch"]},
                {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
                {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["create", "get", "list", "watch"]},
            ]),
        ),
        (
            "system:basic-user",
            json!([
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
            ]),
        ),
    ]
}

/// Creates the bootstrap ClusterRoles and their bindings that do not exist yet.
pub async fn ensure_bootstrap(store: &Store) -> Result<(), Status> {
    let (Some(roles), Some(bindings)) = (
        catalog::find("rbac.authorization.k8s.io", "v1", "clusterroles"),
        catalog::find("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
    ) else {
        return Ok(());
    };
    let bootstrap = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    for (name, rules) in bootstrap_roles() {
        let mut obj = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": bootstrap}, "rules": rules});
        objects::prepare_create(roles, &mut obj);
        let key = registry::key(roles, None, name);
        if registry::get(store, &key).await?.is_none() {
            registry::create(store, &key, &obj, &Claims::default()).await?;
        }
    }
    let subjects = [
        ("cluster-admin", "system:masters"),
        ("system:discovery", "system:authenticated"),
        ("system:basic-user", "system:authenticated"),
        ("system:public-info-viewer", "system:authenticated"),
        // Upstream leaves this binding empty and lets its Node authorizer confine each node to
        // its own objects; skiff has no Node authorizer yet, so the group gets the role.
        ("system:node", "system:nodes"),
    ];
    for (role, group) in subjects {
        let mut obj = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": role, "labels": bootstrap},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]});
        objects::prepare_create(bindings, &mut obj);
        let key = registry::key(bindings, None, role);
        if registry::get(store, &key).await?.is_none() {
            registry::create(store, &key, &obj, &Claims::default()).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(
        verb: &str,
        group: &str,
        resource: &str,
        sub: Option<&str>,
        name: Option<&str>,
    ) -> Attributes {
        Attributes::Resource {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.map(Into::into),
            namespace: Some("default".into()),
            name: name.map(Into::into),
        }
    }

    #[test]
    fn rules_match_like_rbac() {
        let rule =
            json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]});
        assert!(rule_allows(&rule, &res("list", "", "pods", None, None)));
        assert!(rule_allows(
            &rule,
            &res("get", "", "pods", Some("log"), Some("x"))
        ));
        assert!(!rule_allows(
            &rule,
            &res("delete", "", "pods", None, Some("x"))
        ));
        assert!(!rule_allows(&rule, &res("get", "apps", "pods", None, None)));
        assert!(!rule_allows(
            &rule,
            &res("get", "", "pods", Some("exec"), None)
        ));
        let named = json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"], "resourceNames": ["only"]});
        assert!(rule_allows(
            &named,
            &res("get", "apps", "deployments", None, Some("only"))
        ));
        assert!(!rule_allows(
            &named,
            &res("list", "apps", "deployments", None, None)
        ));
        let urls = json!({"nonResourceURLs": ["/apis/*", "/version"], "verbs": ["get"]});
        assert!(rule_allows(
            &urls,
            &Attributes::NonResource {
                verb: "get".into(),
                path: "/apis/apps/v1".into()
            }
        ));
        assert!(!rule_allows(
            &urls,
            &Attributes::NonResource {
                verb: "get".into(),
                path: "/metrics".into()
            }
        ));
    }

    #[test]
    fn subjects_and_denials() {
        let alice = User {
            name: "alice".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            ..Default::default()
        };
        assert!(binds(
            &json!({"subjects": [{"kind": "User", "name": "alice"}]}),
            &alice
        ));
        assert!(binds(
            &json!({"subjects": [{"kind": "Group", "name": "dev"}]}),
            &alice
        ));
        assert!(!binds(
            &json!({"subjects": [{"kind": "User", "name": "bob"}]}),
            &alice
        ));
        let s = denied(&alice, &res("list", "", "pods", None, None));
        assert_eq!(s.code, 403);
        assert_eq!(s.message, "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"");
        let s = denied(
            &alice,
            &res("delete", "apps", "deployments", None, Some("web")),
        );
        assert_eq!(s.message, "deployments.apps \"web\" is forbidden: User \"alice\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"default\"");
    }

    #[test]
    fn the_node_role_covers_a_kubelet_and_no_more() {
        let roles = bootstrap_roles();
        let rules = roles
            .iter()
            .find(|(name, _)| *name == "system:node")
            .map(|(_, rules)| rules.as_array().cloned().unwrap_or_default())
            .unwrap_or_default();
        let allows = |a: Attributes| rules.iter().any(|r| rule_allows(r, &a));
        assert!(allows(res("create", "", "nodes", None, None)));
        assert!(allows(res("patch", "", "nodes", Some("status"), Some("n"))));
        assert!(allows(res(
            "update",
            "coordination.k8s.io",
            "leases",
            None,
            Some("n")
        )));
        assert!(allows(res("watch", "", "pods", None, None)));
        assert!(allows(res("patch", "", "pods", Some("status"), Some("p"))));
        assert!(allows(res(
            "create",
            "",
            "serviceaccounts",
            Some("token"),
            Some("sa")
        )));
        assert!(!allows(res("delete", "", "nodes", None, Some("n"))));
        assert!(!allows(res(
            "delete",
            "",
            "namespaces",
            None,
            Some("default")
        )));
        assert!(!allows(res("create", "", "pods", None, None)));
        assert!(!allows(res("get", "", "pods", Some("exec"), Some("p"))));
    }
}
