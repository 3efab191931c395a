//! The node lifecycle controller: a node whose agent stopped renewing its Lease turns
//! Ready=Unknown and is tainted unreachable; a node reporting Ready=False is tainted not-ready;
//! pods that do not tolerate a node's NoExecute taints are evicted (deleted), at once or after
//! their tolerationSeconds — upstream's taint-based eviction.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keelson_kinds::placement::tolerates;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::clock::Clock;
use crate::events::{EventType, Recorder};
use crate::informer::Informer;

/// The taint keys this controller manages.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// How the controller judges nodes.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A Lease older than this makes the node Unknown (upstream's node-monitor-grace-period).
    pub grace: Duration,
    /// How often nodes are checked.
    pub period: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            grace: Duration::from_secs(40),
            period: Duration::from_secs(5),
        }
    }
}

/// What a node should look like now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The node's conditions must turn Unknown (its agent went quiet).
    pub mark_unknown: bool,
    /// The managed taint keys the node should carry (each with NoSchedule and NoExecute).
    pub taint: Option<&'static str>,
}

fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// How long a node that never reported may stay quiet after it was created (upstream's
/// node-startup-grace-period).
pub const STARTUP_GRACE: Duration = Duration::from_secs(60);

/// Judges `node` whose Lease was last renewed at `renewed` (None: no Lease yet).
pub fn judge(node: &Node, renewed: Option<Timestamp>, now: Timestamp, grace: Duration) -> Verdict {
    let heartbeat = renewed.or_else(|| {
        node.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")?
            .last_heartbeat_time
            .as_ref()
            .map(|t| t.0)
    });
    let within = |t: Timestamp, grace: Duration| {
        t > now
            || now
                .duration_since(t)
                .try_into()
                .is_ok_and(|age: Duration| age <= grace)
    };
    // A node that never reported is judged from its creation, with the startup grace.
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let fresh = match heartbeat {
        Some(t) => within(t, grace),
        None => created.is_none_or(|t| within(t, STARTUP_GRACE.max(grace))),
    };
    match (fresh, ready_status(node)) {
        (false, Some("Unknown")) => Verdict {
            mark_unknown: false,
            taint: Some(UNREACHABLE),
        },
        (false, _) => Verdict {
            mark_unknown: heartbeat.is_some() || ready_status(node).is_some(),
            taint: Some(UNREACHABLE),
        },
        (true, Some("True")) => Verdict {
            mark_unknown: false,
            taint: None,
        },
        (true, Some("Unknown")) | (true, None) => Verdict {
            mark_unknown: false,
            taint: None,
        },
        (true, Some(_)) => Verdict {
            mark_unknown: false,
            taint: Some(NOT_READY),
        },
    }
}

/// The node's taints with the managed ones set as `taint` says (others untouched); `None`
/// when nothing changes. New taints carry `timeAdded` = now.
pub fn taints_for(node: &Node, taint: Option<&str>, now: Timestamp) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let managed = |t: &Taint| t.key == UNREACHABLE || t.key == NOT_READY;
    let mut want: Vec<Taint> = current.iter().filter(|t| !managed(t)).cloned().collect();
    if let Some(key) = taint {
        for effect in ["NoSchedule", "NoExecute"] {
            let kept = current
                .iter()
                .find(|t| t.key == key && t.effect == effect)
                .cloned();
            want.push(kept.unwrap_or_else(|| Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                time_added: Some(Time(now)),
                value: None,
            }));
        }
    }
    let same = want.len() == current.len() && want.iter().all(|t| current.contains(t));
    (!same).then_some(want)
}

/// When `pod` must be evicted from a node with `taints`: `Some(ZERO)` now, `Some(d)` after `d`
/// more, `None` never (it tolerates every NoExecute taint indefinitely).
pub fn eviction_in(pod: &Pod, taints: &[Taint], now: Timestamp) -> Option<Duration> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut soonest: Option<Duration> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let Some(tol) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Some(Duration::ZERO);
        };
        let Some(secs) = tol.toleration_seconds else {
            continue;
        };
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let until = added + Duration::from_secs(secs.max(0) as u64);
        let left: Duration = until
            .duration_since(now)
            .try_into()
            .unwrap_or(Duration::ZERO);
        soonest = Some(soonest.map_or(left, |s| s.min(left)));
    }
    soonest
}

/// The controller: checks every node each period until the process ends.
pub fn run(
    client: Client,
    nodes: &Informer<Node>,
    pods: &Informer<Pod>,
    leases: &Informer<Lease>,
    settings: Settings,
    clock: Clock,
) -> impl Future<Output = ()> + Send + 'static {
    let (nodes, pods, leases) = (nodes.store(), pods.store(), leases.store());
    let recorder = Recorder::new(client.clone(), "node-controller");
    async move {
        let mut registered = HashSet::new();
        loop {
            tokio::time::sleep(settings.period).await;
            register(&recorder, &nodes, &mut registered).await;
            pass(&client, &nodes, &pods, &leases, &settings, clock.now()).await;
        }
    }
}

/// Records upstream's `RegisteredNode` event the first time the controller sees a node (node
/// events carry the node's name as its UID, which `kubectl describe node` looks them up by).
async fn register(recorder: &Recorder, nodes: &Store<Node>, registered: &mut HashSet<String>) {
    let names: HashSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
    registered.retain(|n| names.contains(n));
    for name in names {
        if registered.contains(&name) {
            continue;
        }
        let involved = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.clone()),
            uid: Some(name.clone()),
            ..ObjectReference::default()
        };
        let message = format!("Node {name} event: Registered Node {name} in Controller");
        recorder
            .publish_ref(involved, EventType::Normal, "RegisteredNode", &message)
            .await;
        registered.insert(name);
    }
}

async fn pass(
    client: &Client,
    nodes: &Store<Node>,
    pods: &Store<Pod>,
    leases: &Store<Lease>,
    settings: &Settings,
    now: Timestamp,
) {
    let api: Api<Node> = Api::all(client.clone());
    for node in nodes.state() {
        let name = node.name_any();
        let renewed = leases
            .state()
            .iter()
            .find(|l| l.name_any() == name)
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let verdict = judge(&node, renewed, now, settings.grace);
        if verdict.mark_unknown {
            let conditions: Vec<_> = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"]
                .iter()
                .map(|t| {
                    json!({"type": t, "status": "Unknown", "reason": "NodeStatusUnknown",
                        "message": "Kubelet stopped posting node status.",
                        "lastTransitionTime": Time(now)})
                })
                .collect();
            let patch = json!({"status": {"conditions": conditions}});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::warn!(node = %name, error = %e, "marking the node unknown");
            }
        }
        let taints = taints_for(&node, verdict.taint, now);
        if let Some(taints) = &taints {
            let patch = json!({"spec": {"taints": taints}});
            if let Err(e) = api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(node = %name, error = %e, "tainting the node");
            }
        }
        let taints = taints.unwrap_or_else(|| {
            node.spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
        });
        if !taints.iter().any(|t| t.effect == "NoExecute") {
            continue;
        }
        for pod in pods.state().iter().filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str())
                && p.metadata.deletion_timestamp.is_none()
        }) {
            if eviction_in(pod, &taints, now) == Some(Duration::ZERO) {
                let ns = pod.namespace().unwrap_or_default();
                let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                tracing::info!(pod = %pod.name_any(), node = %name, "evicting: NoExecute taint");
                if let Err(e) = pods_api
                    .delete(&pod.name_any(), &DeleteParams::default())
                    .await
                {
                    tracing::debug!(pod = %pod.name_any(), error = %e, "eviction failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: Option<&str>, taints: serde_json::Value) -> Node {
        let mut n = json!({"metadata": {"name": "n"}, "spec": {"taints": taints}, "status": {}});
        if let Some(r) = ready {
            n["status"]["conditions"] = json!([{"type": "Ready", "status": r}]);
        }
        serde_json::from_value(n).unwrap()
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn judges_by_lease_and_ready() {
        let g = Duration::from_secs(40);
        let check = |n: Node, renewed: Option<i64>, want: (bool, Option<&str>)| {
            let v = judge(&n, renewed.map(ts), ts(100), g);
            assert_eq!((v.mark_unknown, v.taint), want);
        };
        check(node(Some("True"), json!([])), Some(90), (false, None));
        check(
            node(Some("True"), json!([])),
            Some(10),
            (true, Some(UNREACHABLE)),
        );
        check(
            node(Some("Unknown"), json!([])),
            Some(10),
            (false, Some(UNREACHABLE)),
        );
        check(
            node(Some("False"), json!([])),
            Some(95),
            (false, Some(NOT_READY)),
        );
        // Never reported: judged from its creation (none here: left alone).
        check(node(None, json!([])), None, (false, None));
    }

    #[test]
    fn taints_change_only_when_needed() {
        let n = node(
            Some("True"),
            json!([{"key": "dedicated", "effect": "NoSchedule"}]),
        );
        assert_eq!(taints_for(&n, None, ts(0)), None);
        let t = taints_for(&n, Some(UNREACHABLE), ts(0)).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].key, "dedicated");
        let tainted = node(Some("Unknown"), serde_json::to_value(&t).unwrap());
        assert_eq!(taints_for(&tainted, Some(UNREACHABLE), ts(50)), None);
        let healed = taints_for(&tainted, None, ts(60)).unwrap();
        assert_eq!(healed.len(), 1);
    }

    #[test]
    fn evicts_by_tolerations() {
        let taints: Vec<Taint> = serde_json::from_value(json!([
            {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2023-11-14T22:13:20Z"}]))
        .unwrap();
        let pod = |tols: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"},
                "spec": {"containers": [], "tolerations": tols}}))
            .unwrap()
        };
        let added = ts(0);
        assert_eq!(
            eviction_in(&pod(json!([])), &taints, added),
            Some(Duration::ZERO)
        );
        let default = pod(json!([{"key": UNREACHABLE, "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 300}]));
        assert_eq!(
            eviction_in(&default, &taints, ts(100)),
            Some(Duration::from_secs(200))
        );
        assert_eq!(
            eviction_in(&default, &taints, ts(400)),
            Some(Duration::ZERO)
        );
        let forever = pod(json!([{"operator": "Exists"}]));
        assert_eq!(eviction_in(&forever, &taints, ts(100)), None);
    }
}
