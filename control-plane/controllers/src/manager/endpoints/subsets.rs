//! The Endpoints controller, as upstream's: for every Service with a selector, an Endpoints
//! object of the same name whose subsets group the selected pods' addresses by the ports
//! they offer, ready ones in `addresses` and the others in `notReadyAddresses`; at most 1000
//! addresses, ready ones kept first, with `endpoints.kubernetes.io/over-capacity: truncated`
//! when some are cut. The Endpoints this controller wrote go with their Service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use tracing::Instrument;

use super::super::informer::Change;
use super::super::queue::Queue;
use super::super::store::ObjectKey;
use super::super::{Context, Error};
use super::{
    backends, endpoint_labels, is_headless, target_ref, Backend, ResolvedPort,
    TRIGGER_TIME_ANNOTATION,
};

/// Most addresses one Endpoints object holds, as upstream's `maxCapacity`.
pub const MAX_ADDRESSES: usize = 1000;
/// Set when addresses had to be left out.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// Most Services waiting in the queue.
const QUEUE_CAPACITY: usize = 200_000;
/// Workers syncing Services at once.
const WORKERS: usize = 4;
/// How often every Service is looked at again regardless of events.
const RESYNC: Duration = Duration::from_secs(300);

/// The controller's state: its queue.
pub struct EndpointsController {
    ctx: Arc<Context>,
    queue: Queue<ObjectKey>,
}

/// Registers the controller's handlers and returns its workers.
pub fn start(ctx: &Arc<Context>) -> Vec<BoxFuture<'static, ()>> {
    let c = Arc::new(EndpointsController {
        ctx: ctx.clone(),
        queue: Queue::new("endpoint", QUEUE_CAPACITY),
    });
    super::enqueue_on_changes(ctx, &c.queue);
    // Endpoints someone else changed or deleted are put back.
    let q = c.queue.clone();
    ctx.endpoints.on_change(move |change| {
        if let Change::Updated { new: e, .. } | Change::Deleted(e) = change {
            if let Some(k) = ObjectKey::of(e.as_ref()) {
                q.add(k);
            }
        }
    });
    let store = ctx.services.store().clone();
    let resync = super::super::resync(c.queue.clone(), RESYNC, move || store.keys());
    let mut all = super::super::workers("endpoint", c.queue.clone(), WORKERS, move |key| {
        let c = c.clone();
        async move { c.sync(key).await }
    });
    all.push(resync);
    all
}

/// The subsets of `backends`: addresses grouped by the set of ports they offer, ready and not
/// ready apart, everything sorted; and whether addresses were cut to [`MAX_ADDRESSES`].
pub fn subsets_of(svc: &Service, backends: &[Backend]) -> (Vec<EndpointSubset>, bool) {
    let headless_without_ports = is_headless(svc)
        && svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_none_or(|p| p.is_empty());
    // Port set → (ready, not ready) addresses.
    let mut groups: BTreeMap<Vec<ResolvedPort>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for b in backends {
        if b.ports.is_empty() && !headless_without_ports {
            continue;
        }
        let mut ports = b.ports.clone();
        ports.sort();
        ports.dedup();
        let address = EndpointAddress {
            ip: b.ip.clone(),
            hostname: b.hostname.clone(),
            node_name: b.pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(&b.pod)),
        };
        let entry = groups.entry(ports).or_default();
        if b.ready {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    let total: usize = groups.values().map(|(r, n)| r.len() + n.len()).sum();
    let truncated = total > MAX_ADDRESSES;
    if truncated {
        // Ready addresses first, in subset order, then unready ones with what room is left.
        let mut room = MAX_ADDRESSES;
        for (ready, _) in groups.values_mut() {
            ready.truncate(room);
            room -= ready.len();
        }
        for (_, not_ready) in groups.values_mut() {
            not_ready.truncate(room);
            room -= not_ready.len();
        }
    }
    let subsets = groups
        .into_iter()
        .filter(|(_, (r, n))| !r.is_empty() || !n.is_empty())
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .into_iter()
                    .map(|p| EndpointPort {
                        name: (!p.name.is_empty()).then_some(p.name),
                        port: p.port,
                        protocol: Some(p.protocol),
                        app_protocol: p.app_protocol,
                    })
                    .collect()
            }),
        })
        .collect();
    (subsets, truncated)
}

/// Whether the stored Endpoints already say what `desired` says (the trigger time aside).
fn up_to_date(current: &Endpoints, desired: &Endpoints) -> bool {
    let subsets = |e: &Endpoints| e.subsets.clone().unwrap_or_default();
    let over = |e: &Endpoints| {
        e.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION).cloned())
    };
    subsets(current) == subsets(desired)
        && current.metadata.labels.clone().unwrap_or_default()
            == desired.metadata.labels.clone().unwrap_or_default()
        && over(current) == over(desired)
}

impl EndpointsController {
    async fn sync(&self, key: ObjectKey) -> Result<(), Error> {
        self.ctx.services.wait_synced().await;
        self.ctx.pods.wait_synced().await;
        self.ctx.endpoints.wait_synced().await;
        let span = tracing::debug_span!("endpoints", namespace = %key.namespace, name = %key.name);
        self.sync_one(&key).instrument(span).await
    }

    async fn sync_one(&self, key: &ObjectKey) -> Result<(), Error> {
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), &key.namespace);
        let current = self.ctx.endpoints.store().get(key);
        let Some(svc) = self.ctx.services.store().get(key) else {
            // Only Endpoints this controller wrote (they carry its trigger time) go with the
            // Service; a user's Endpoints without a Service are theirs.
            let ours = current.as_ref().is_some_and(|c| {
                c.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(TRIGGER_TIME_ANNOTATION))
            });
            if ours {
                tracing::debug!("service gone; deleting its endpoints");
                match api.delete(&key.name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if super::super::not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(());
        };
        if super::selector_of(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let pods = self.ctx.pods.store().list_namespace(&key.namespace);
        let (subsets, truncated) = subsets_of(&svc, &backends(&svc, &pods, false));
        let mut meta = current
            .as_ref()
            .map(|c| c.metadata.clone())
            .unwrap_or_else(|| ObjectMeta {
                name: Some(key.name.clone()),
                namespace: Some(key.namespace.clone()),
                ..Default::default()
            });
        meta.labels = Some(endpoint_labels(&svc));
        let annotations = meta.annotations.get_or_insert_with(Default::default);
        if truncated {
            annotations.insert(OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
        } else {
            annotations.remove(OVER_CAPACITY_ANNOTATION);
        }
        let mut desired = Endpoints {
            metadata: meta,
            subsets: (!subsets.is_empty()).then_some(subsets),
        };
        if let Some(cur) = current.as_ref() {
            if up_to_date(cur, &desired) {
                return Ok(());
            }
        }
        if let Some(a) = desired.metadata.annotations.as_mut() {
            a.insert(TRIGGER_TIME_ANNOTATION.into(), super::now_rfc3339());
        }
        let addresses: usize = desired
            .subsets
            .iter()
            .flatten()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        match current {
            None => {
                tracing::debug!(addresses, "creating endpoints");
                api.create(&PostParams::default(), &desired).await?;
            }
            Some(_) => {
                tracing::debug!(addresses, "updating endpoints");
                api.replace(&key.name, &PostParams::default(), &desired)
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{pod, service};
    use super::*;
    use serde_json::json;

    #[test]
    fn ready_and_unready_addresses_share_a_subset_per_port_set() {
        let svc = service(
            json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}),
        );
        let pods = vec![
            pod("a", "10.0.0.1", true, json!({"app": "web"})),
            pod("b", "10.0.0.2", false, json!({"app": "web"})),
        ];
        let (subsets, truncated) = subsets_of(&svc, &backends(&svc, &pods, false));
        assert!(!truncated);
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        let ips = |a: &Option<Vec<EndpointAddress>>| {
            a.iter().flatten().map(|a| a.ip.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ips(&s.addresses), vec!["10.0.0.1"]);
        assert_eq!(ips(&s.not_ready_addresses), vec!["10.0.0.2"]);
        let ports = s.ports.clone().unwrap_or_default();
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("http"), 8080)
        );
        let a = &s
            .addresses
            .as_ref()
            .map(|a| a[0].clone())
            .unwrap_or_default();
        assert_eq!(a.node_name.as_deref(), Some("n1"));
        assert_eq!(
            a.target_ref.as_ref().and_then(|r| r.name.as_deref()),
            Some("a")
        );
    }

    #[test]
    fn pods_without_the_named_port_are_left_out_and_publish_not_ready_makes_all_ready() {
        let svc = service(
            json!({"selector": {"app": "web"}, "publishNotReadyAddresses": true,
            "ports": [{"port": 80, "targetPort": "http"}, {"port": 9, "targetPort": "nope"}]}),
        );
        let pods = vec![pod("b", "10.0.0.2", false, json!({"app": "web"}))];
        let (subsets, _) = subsets_of(&svc, &backends(&svc, &pods, false));
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(1));
        assert_eq!(subsets[0].ports.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn headless_services_without_ports_list_addresses_alone() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let pods = vec![pod("a", "10.0.0.1", true, json!({"app": "web"}))];
        let (subsets, _) = subsets_of(&svc, &backends(&svc, &pods, false));
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_none());
    }

    #[test]
    fn over_capacity_keeps_ready_addresses_first() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let pods: Vec<_> = (0..1100)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.1.{}.{}", i / 250, i % 250),
                    i % 2 == 0,
                    json!({"app": "web"}),
                )
            })
            .collect();
        let (subsets, truncated) = subsets_of(&svc, &backends(&svc, &pods, false));
        assert!(truncated);
        let ready = subsets[0].addresses.as_ref().map_or(0, Vec::len);
        let not_ready = subsets[0].not_ready_addresses.as_ref().map_or(0, Vec::len);
        assert_eq!((ready, not_ready), (550, 450));
    }
}
