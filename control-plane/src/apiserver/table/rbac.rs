//! Printers for `rbac.authorization.k8s.io/v1` bindings. Roles and ClusterRoles have no printer
//! upstream and get the default table.

use super::cells::{arr, name, s};
use super::{Col, Ctx, Printer, Row, AGE, NAME};
use serde_json::Value;

/// RoleBinding: NAME, ROLE, AGE; wide: USERS, GROUPS, SERVICEACCOUNTS.
pub(super) const ROLE_BINDING: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error."),
        AGE,
        Col::new("Users", "string", "Users in the roleBinding").wide(),
        Col::new("Groups", "string", "Groups in the roleBinding").wide(),
        Col::new("ServiceAccounts", "string", "ServiceAccounts in the roleBinding").wide(),
    ],
    row: binding,
};

/// ClusterRoleBinding: the same cells as a RoleBinding, with its own descriptions.
pub(super) const CLUSTER_ROLE_BINDING: Printer = Printer {
    columns: &[
        NAME,
        Col::new("Role", "string", "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error."),
        AGE,
        Col::new("Users", "string", "Users in the clusterRoleBinding").wide(),
        Col::new("Groups", "string", "Groups in the clusterRoleBinding").wide(),
        Col::new("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding").wide(),
    ],
    row: binding,
};

fn binding(o: &Value, ctx: &Ctx) -> Row {
    let role = &o["roleRef"];
    let (mut users, mut groups, mut service_accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in arr(&o["subjects"]) {
        match s(&subject["kind"]) {
            "ServiceAccount" => service_accounts.push(format!(
                "{}/{}",
                s(&subject["namespace"]),
                s(&subject["name"])
            )),
            "User" => users.push(s(&subject["name"]).to_string()),
            "Group" => groups.push(s(&subject["name"]).to_string()),
            // Upstream collects other kinds but prints them nowhere.
            _ => {}
        }
    }
    Row::new(vec![
        name(o).into(),
        format!("{}/{}", s(&role["kind"]), s(&role["name"])).into(),
        ctx.age(o).into(),
        users.join(", ").into(),
        groups.join(", ").into(),
        service_accounts.join(", ").into(),
    ])
}
