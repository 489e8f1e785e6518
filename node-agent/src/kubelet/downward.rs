//! Placeholder signatures of the downward API helpers (field and resource values, quantities).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A downward API reference that cannot be resolved.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DownwardError(pub String);

/// The value of a pod field (`metadata.name`, ...).
pub fn field_value(_pod: &Pod, field_path: &str) -> Result<String, DownwardError> {
    Err(DownwardError(format!("unsupported fieldPath {field_path}")))
}

/// The value of a container resource (`limits.cpu`, ...).
pub fn resource_value(
    _pod: &Pod,
    _container: &str,
    resource: &str,
    _divisor: Option<&Quantity>,
    _allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, DownwardError> {
    Err(DownwardError(format!("unsupported resource {resource}")))
}

/// A quantity in thousandths (CPU millicores).
pub fn quantity_millis(q: &Quantity) -> Result<i64, DownwardError> {
    Err(DownwardError(format!("quantity {}", q.0)))
}

/// A quantity in units (bytes).
pub fn quantity_bytes(q: &Quantity) -> Result<i64, DownwardError> {
    Err(DownwardError(format!("quantity {}", q.0)))
}
