//! VolumeBinding: a pod's PersistentVolumeClaims decide where it may run. Unbound claims of
//! an Immediate class keep it unschedulable; bound volumes with node affinity pin it to their
//! nodes; claims that wait for their first consumer are given the chosen node
//! (`volume.kubernetes.io/selected-node`) before the pod is bound, so the PersistentVolume
//! controller binds or provisions a volume there.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use keelson_controllers::volume::binder::{
    ANN_SELECTED_NODE, NO_PROVISIONER, affinity_allows, best_match, claim_class, volume_name,
    waits_for_consumer,
};
use keelson_controllers::volume::protection::claims_of;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, PreFilterPlugin, Status};

pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const AFFINITY_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const NO_VOLUME_TO_BIND: &str = "node(s) didn't find available persistent volumes to bind";
pub const MISSING_VOLUME: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// How long the binder waits for the claims it gave a node to be bound before it binds the
/// pod anyway (the node's agent waits for them too).
const BIND_WAIT: Duration = Duration::from_secs(10);

type Writers = (
    Writer<PersistentVolumeClaim>,
    Writer<PersistentVolume>,
    Writer<StorageClass>,
);

/// The claims, volumes and classes the plugin reads, filled by the scheduler's loop.
#[derive(Clone)]
pub struct VolumeListers {
    pub claims: Store<PersistentVolumeClaim>,
    pub volumes: Store<PersistentVolume>,
    pub classes: Store<StorageClass>,
    writers: Arc<Mutex<Option<Writers>>>,
}

impl Default for VolumeListers {
    fn default() -> Self {
        let (claims, cw) = reflector::store();
        let (volumes, vw) = reflector::store();
        let (classes, sw) = reflector::store();
        VolumeListers {
            claims,
            volumes,
            classes,
            writers: Arc::new(Mutex::new(Some((cw, vw, sw)))),
        }
    }
}

impl VolumeListers {
    /// The watches that fill the listers, as one stream yielding after every change (the
    /// scheduler retries unschedulable pods then). Empty on a second call.
    pub fn changes(&self, client: &Client) -> impl Stream<Item = ()> + Send + 'static {
        let writers = self.writers.lock().ok().and_then(|mut w| w.take());
        let Some((cw, vw, sw)) = writers else {
            return futures::stream::empty().boxed();
        };
        fn reflect<K>(api: Api<K>, w: Writer<K>) -> impl Stream<Item = ()> + Send + 'static
        where
            K: kube::Resource<DynamicType = ()>
                + Clone
                + std::fmt::Debug
                + serde::de::DeserializeOwned
                + Send
                + Sync
                + 'static,
        {
            watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(w)
                .filter_map(|ev| async move {
                    match ev {
                        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))
                        | Ok(watcher::Event::InitDone) => Some(()),
                        Ok(_) => None,
                        Err(e) => {
                            tracing::debug!(error = %e, "watching storage objects");
                            None
                        }
                    }
                })
        }
        futures::stream::select(
            reflect(Api::<PersistentVolumeClaim>::all(client.clone()), cw),
            futures::stream::select(
                reflect(Api::<PersistentVolume>::all(client.clone()), vw),
                reflect(Api::<StorageClass>::all(client.clone()), sw),
            ),
        )
        .boxed()
    }

    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectRef::new(name).within(ns))
    }

    fn class_of(&self, claim: &PersistentVolumeClaim) -> Option<Arc<StorageClass>> {
        let name = claim_class(claim);
        if name.is_empty() {
            return None;
        }
        self.classes.get(&ObjectRef::new(&name))
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get(&ObjectRef::new(name))
    }
}

/// The plugin, over the listers.
pub struct VolumeBinding(pub VolumeListers);

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

impl PreFilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn pre_filter(&self, pod: &PodInfo) -> Status {
        let ns = namespace(&pod.pod);
        let mut unbound_immediate = false;
        for name in claims_of(&pod.pod) {
            let Some(claim) = self.0.claim(ns, &name) else {
                return Status::unresolvable(format!("persistentvolumeclaim \"{name}\" not found"));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Status::unresolvable(format!(
                    "persistentvolumeclaim \"{name}\" is being deleted"
                ));
            }
            if !volume_name(&claim).is_empty() {
                continue;
            }
            let delayed = self
                .0
                .class_of(&claim)
                .is_some_and(|c| waits_for_consumer(&c));
            unbound_immediate |= !delayed;
        }
        if unbound_immediate {
            return Status::unresolvable(UNBOUND_IMMEDIATE);
        }
        Status::success()
    }
}

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Status {
        let ns = namespace(&pod.pod);
        let empty = BTreeMap::new();
        let labels = node.node.metadata.labels.as_ref().unwrap_or(&empty);
        let mut reasons: Vec<String> = Vec::new();
        for name in claims_of(&pod.pod) {
            let Some(claim) = self.0.claim(ns, &name) else {
                continue;
            };
            let bound = volume_name(&claim);
            if !bound.is_empty() {
                match self.0.volume(bound) {
                    None => reasons.push(MISSING_VOLUME.into()),
                    Some(pv) if !affinity_allows(&pv, node.name(), labels) => {
                        reasons.push(AFFINITY_CONFLICT.into())
                    }
                    Some(_) => {}
                }
                continue;
            }
            let Some(class) = self.0.class_of(&claim) else {
                continue;
            };
            if class.provisioner != NO_PROVISIONER {
                continue;
            }
            let volumes = self.0.volumes.state();
            let found = best_match(
                &claim,
                volumes.iter().map(|v| v.as_ref()),
                Some((node.name(), labels)),
                true,
            );
            if found.is_none() {
                reasons.push(NO_VOLUME_TO_BIND.into());
            }
        }
        reasons.dedup();
        if reasons.is_empty() {
            Status::success()
        } else {
            Status {
                code: crate::framework::Code::UnschedulableAndUnresolvable,
                reasons,
            }
        }
    }
}

/// The claims of `pod` that wait for their first consumer and are not yet given `node`.
pub fn claims_to_select(listers: &VolumeListers, pod: &Pod, node: &str) -> Vec<String> {
    let ns = namespace(pod);
    claims_of(pod)
        .into_iter()
        .filter(|name| {
            listers.claim(ns, name).is_some_and(|c| {
                volume_name(&c).is_empty()
                    && listers
                        .class_of(&c)
                        .is_some_and(|cl| waits_for_consumer(&cl))
                    && c.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(ANN_SELECTED_NODE))
                        .map(String::as_str)
                        != Some(node)
            })
        })
        .collect()
}

/// PreBind: gives the pod's waiting claims the chosen node, then waits (a while) for the
/// PersistentVolume controller to bind them.
pub async fn pre_bind(
    client: &Client,
    listers: &VolumeListers,
    pod: &Pod,
    node: &str,
) -> Result<(), kube::Error> {
    let names = claims_to_select(listers, pod, node);
    if names.is_empty() {
        return Ok(());
    }
    let ns = namespace(pod);
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
    for name in &names {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let started = Instant::now();
    while started.elapsed() < BIND_WAIT {
        let all_bound = names.iter().all(|n| {
            listers
                .claim(ns, n)
                .is_some_and(|c| !volume_name(&c).is_empty())
        });
        if all_bound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::test_util::{node, pod};

    fn listers(claims: Value, volumes: Value, classes: Value) -> VolumeListers {
        let l = VolumeListers::default();
        let (mut cw, mut vw, mut sw) = l.writers.lock().unwrap().take().unwrap();
        for c in claims.as_array().unwrap() {
            let c: PersistentVolumeClaim = serde_json::from_value(c.clone()).unwrap();
            cw.apply_watcher_event(&watcher::Event::Apply(c));
        }
        for v in volumes.as_array().unwrap() {
            let v: PersistentVolume = serde_json::from_value(v.clone()).unwrap();
            vw.apply_watcher_event(&watcher::Event::Apply(v));
        }
        for s in classes.as_array().unwrap() {
            let s: StorageClass = serde_json::from_value(s.clone()).unwrap();
            sw.apply_watcher_event(&watcher::Event::Apply(s));
        }
        l
    }

    fn claim(name: &str, class: &str, volume: Option<&str>) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "spec": {
            "storageClassName": class, "volumeName": volume, "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}})
    }

    fn local_pv(name: &str, node: &str, class: &str, claim_ref: Value) -> Value {
        json!({"metadata": {"name": name}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "storageClassName": class, "claimRef": claim_ref,
            "local": {"path": "/mnt"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
            "values": [node]}]}]}}}})
    }

    fn using(claims: &[&str]) -> PodInfo {
        let vols: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        pod(json!({"spec": {"volumes": vols}}))
    }

    fn on(name: &str) -> NodeInfo {
        node(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}))
    }

    #[test]
    fn pre_filter_refuses_missing_deleted_and_unbound_immediate_claims() {
        let l = listers(
            json!([
                claim("bound", "", Some("v")),
                claim("pending", "", None),
                claim("late", "wffc", None),
                {"metadata": {"name": "going", "namespace": "default",
                    "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}},
            ]),
            json!([]),
            json!([{"metadata": {"name": "wffc"}, "provisioner": "x",
                "volumeBindingMode": "WaitForFirstConsumer"}]),
        );
        let p = VolumeBinding(l);
        let cases: Vec<(&[&str], Option<&str>)> = vec![
            (&[], None),
            (&["bound"], None),
            (&["late"], None),
            (&["bound", "pending"], Some(UNBOUND_IMMEDIATE)),
            (&["nope"], Some("persistentvolumeclaim \"nope\" not found")),
            (
                &["going"],
                Some("persistentvolumeclaim \"going\" is being deleted"),
            ),
        ];
        for (claims, want) in cases {
            let s = p.pre_filter(&using(claims));
            match want {
                None => assert!(s.is_success(), "{claims:?}: {s:?}"),
                Some(r) => assert_eq!(s.reasons, vec![r.to_string()], "{claims:?}"),
            }
        }
    }

    #[test]
    fn filter_follows_volume_affinity() {
        let l = listers(
            json!([
                claim("on-a", "", Some("pv-a")),
                claim("ghost", "", Some("gone")),
                claim("static", "manual", None),
                claim("dynamic", "wffc", None),
            ]),
            json!([
                local_pv(
                    "pv-a",
                    "a",
                    "",
                    json!({"namespace": "default", "name": "on-a"})
                ),
                local_pv("free-b", "b", "manual", Value::Null),
            ]),
            json!([
                {"metadata": {"name": "wffc"}, "provisioner": "keelson.io/local-path",
                    "volumeBindingMode": "WaitForFirstConsumer"},
                {"metadata": {"name": "manual"}, "provisioner": NO_PROVISIONER,
                    "volumeBindingMode": "WaitForFirstConsumer"},
            ]),
        );
        let p = VolumeBinding(l.clone());
        let cases: Vec<(&[&str], &str, Option<&str>)> = vec![
            (&["on-a"], "a", None),
            (&["on-a"], "b", Some(AFFINITY_CONFLICT)),
            (&["ghost"], "a", Some(MISSING_VOLUME)),
            (&["static"], "b", None),
            (&["static"], "a", Some(NO_VOLUME_TO_BIND)),
            (&["dynamic"], "a", None),
        ];
        for (claims, n, want) in cases {
            let s = p.filter(&using(claims), &on(n));
            match want {
                None => assert!(s.is_success(), "{claims:?} on {n}: {s:?}"),
                Some(r) => assert_eq!(s.reasons, vec![r.to_string()], "{claims:?} on {n}"),
            }
        }
        let pod = using(&["on-a", "static", "dynamic"]);
        assert_eq!(
            claims_to_select(&l, &pod.pod, "b"),
            vec!["static".to_string(), "dynamic".to_string()]
        );
    }

    #[test]
    fn the_cycle_reports_unbound_claims_and_places_pods_by_their_volumes() {
        use crate::cache::Cache;
        use crate::plugins::framework_with;
        use crate::schedule::{TieBreaker, schedule};
        let l = listers(
            json!([claim("pending", "", None), claim("on-b", "", Some("pv-b"))]),
            json!([local_pv(
                "pv-b",
                "b",
                "",
                json!({"namespace": "default", "name": "on-b"})
            )]),
            json!([]),
        );
        let fw = framework_with(l);
        let mut cache = Cache::default();
        for n in ["a", "b", "c"] {
            cache.add_or_update_node(std::sync::Arc::new(
                serde_json::from_value(json!({"metadata": {"name": n, "labels":
                    {"kubernetes.io/hostname": n}}, "status": {"allocatable":
                    {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
                .unwrap(),
            ));
        }
        let mut ties = TieBreaker::default();
        let err = schedule(&fw, &mut cache, &using(&["pending"]), &mut ties).unwrap_err();
        assert_eq!(
            err.message,
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        let node = schedule(&fw, &mut cache, &using(&["on-b"]), &mut ties).unwrap();
        assert_eq!(node, "b");
    }
}
