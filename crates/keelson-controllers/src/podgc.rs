//! The pod garbage collector, as upstream's PodGC: every period it deletes the terminated pods
//! beyond a threshold (oldest first), pods bound to nodes that no longer exist, terminating
//! pods that were never scheduled, and terminating pods on out-of-service nodes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::informer::Informer;

/// The taint an administrator puts on a node that is shut down for good (upstream's
/// `node.kubernetes.io/out-of-service`).
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";
/// The condition PodGC adds to an orphaned pod before deleting it.
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
/// Its reason and message, as upstream writes them.
pub const DELETION_BY_POD_GC: &str = "DeletionByPodGC";
pub const NODE_GONE_MESSAGE: &str = "PodGC: node no longer exists";
/// How many deletions run at once.
const PARALLEL: usize = 16;

/// Errors of one deletion or node check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("marking pod {pod} failed: {source}")]
    MarkFailed { pod: String, source: kube::Error },
    #[error("deleting pod {pod}: {source}")]
    Delete { pod: String, source: kube::Error },
    #[error("getting node {node}: {source}")]
    GetNode { node: String, source: kube::Error },
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// How the collector runs (kube-controller-manager's `--terminated-pod-gc-threshold`, and
/// PodGC's fixed 20 s period and 40 s quarantine).
#[derive(Clone, Debug)]
pub struct Settings {
    /// How many terminated pods may exist before the oldest are deleted; 0 keeps them all.
    pub terminated_threshold: usize,
    /// How often pods are checked.
    pub period: Duration,
    /// How long a node must stay missing before its pods count as orphaned.
    pub quarantine: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            terminated_threshold: 12_500,
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

/// Why a pod is collected (upstream's metric reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// One of the oldest terminated pods beyond the threshold.
    Terminated,
    /// Terminating on a NotReady node tainted out-of-service.
    TerminatingOutOfService,
    /// Bound to a node that no longer exists.
    Orphaned,
    /// Terminating and never scheduled.
    TerminatingUnscheduled,
}

/// One pod to force-delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub reason: Reason,
    /// The pod is not terminal yet: its phase becomes Failed before it is deleted.
    pub mark_failed: bool,
}

impl Deletion {
    fn of(pod: &Pod, reason: Reason) -> Deletion {
        Deletion {
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            uid: pod.metadata.uid.clone(),
            reason,
            mark_failed: !is_terminated(pod),
        }
    }

    /// Whether the pod gets the DisruptionTarget condition (orphans only, as upstream).
    pub fn with_condition(&self) -> bool {
        self.reason == Reason::Orphaned
    }
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

/// Succeeded or Failed.
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

fn is_evicted(pod: &Pod) -> bool {
    phase(pod) == Some("Failed")
        && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| !n.is_empty())
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn out_of_service(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == OUT_OF_SERVICE))
}

/// Evicted pods first, then oldest creation, then name (upstream's order).
fn deletion_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    is_evicted(b)
        .cmp(&is_evicted(a))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a).cmp(&created(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The nodes pods are bound to that the node cache does not hold.
pub fn missing_nodes(pods: &[Arc<Pod>], nodes: &[Arc<Node>]) -> BTreeSet<String> {
    let known: HashSet<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    pods.iter()
        .filter_map(|p| node_name(p))
        .filter(|n| !known.contains(n))
        .map(str::to_string)
        .collect()
}

/// The pods to delete now, each once: given the caches, the nodes confirmed deleted (after
/// their quarantine), and the terminated-pod threshold (0: no limit).
pub fn decide(
    pods: &[Arc<Pod>],
    nodes: &[Arc<Node>],
    deleted_nodes: &BTreeSet<String>,
    threshold: usize,
) -> Vec<Deletion> {
    let mut out: Vec<Deletion> = Vec::new();
    if threshold > 0 {
        let mut terminated: Vec<&Pod> = pods
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| is_terminated(p))
            .collect();
        if terminated.len() > threshold {
            terminated.sort_by(|a, b| deletion_order(a, b));
            let excess = terminated.len() - threshold;
            out.extend(
                terminated[..excess]
                    .iter()
                    .map(|p| Deletion::of(p, Reason::Terminated)),
            );
        }
    }
    let by_name: BTreeMap<&str, &Node> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n.as_ref())))
        .collect();
    let mut stranded: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter(|p| {
            node_name(p)
                .and_then(|n| by_name.get(n))
                .is_some_and(|n| !is_ready(n) && out_of_service(n))
        })
        .collect();
    stranded.sort_by(|a, b| deletion_order(a, b));
    out.extend(
        stranded
            .into_iter()
            .map(|p| Deletion::of(p, Reason::TerminatingOutOfService)),
    );
    out.extend(
        pods.iter()
            .filter(|p| node_name(p).is_some_and(|n| deleted_nodes.contains(n)))
            .map(|p| Deletion::of(p, Reason::Orphaned)),
    );
    out.extend(
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_none())
            .map(|p| Deletion::of(p, Reason::TerminatingUnscheduled)),
    );
    let mut seen = HashSet::new();
    out.retain(|d| seen.insert((d.namespace.clone(), d.name.clone())));
    out
}

/// Missing nodes waiting out their quarantine before the API is asked whether they are gone.
#[derive(Debug, Default)]
pub struct Quarantine {
    since: BTreeMap<String, Instant>,
}

impl Quarantine {
    /// Records the nodes missing at `now` (forgetting those back), and returns the ones missing
    /// for at least `wait`; those leave the quarantine, and come back if still missing later.
    pub fn due(&mut self, missing: &BTreeSet<String>, now: Instant, wait: Duration) -> Vec<String> {
        self.since.retain(|n, _| missing.contains(n));
        for n in missing {
            self.since.entry(n.clone()).or_insert(now);
        }
        let due: Vec<String> = self
            .since
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= wait)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &due {
            self.since.remove(n);
        }
        due
    }
}

/// The collector: one pass every period until the process ends.
pub fn run(
    client: Client,
    pods: &Informer<Pod>,
    nodes: &Informer<Node>,
    settings: Settings,
) -> impl Future<Output = ()> + Send + 'static {
    let (pods, nodes) = (pods.store(), nodes.store());
    async move {
        let mut quarantine = Quarantine::default();
        let mut tick = tokio::time::interval(settings.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            pass(&client, &pods, &nodes, &settings, &mut quarantine).await;
        }
    }
}

async fn pass(
    client: &Client,
    pods: &Store<Pod>,
    nodes: &Store<Node>,
    settings: &Settings,
    quarantine: &mut Quarantine,
) {
    let (pod_list, node_list) = (pods.state(), nodes.state());
    let missing = missing_nodes(&pod_list, &node_list);
    let mut deleted = BTreeSet::new();
    for node in quarantine.due(&missing, Instant::now(), settings.quarantine) {
        match node_exists(client, &node).await {
            Ok(false) => {
                deleted.insert(node);
            }
            Ok(true) => {}
            Err(e) => tracing::warn!(error = %e, "checking a missing node"),
        }
    }
    let deletions = decide(
        &pod_list,
        &node_list,
        &deleted,
        settings.terminated_threshold,
    );
    if deletions.is_empty() {
        return;
    }
    tracing::info!(pods = deletions.len(), "garbage collecting pods");
    futures::stream::iter(deletions)
        .for_each_concurrent(PARALLEL, |d| async move {
            match force_delete(client, &d).await {
                Ok(()) => tracing::info!(pod = %d.name, namespace = %d.namespace,
                    reason = ?d.reason, "forced deletion of pod succeeded"),
                Err(e) => tracing::warn!(error = %e, reason = ?d.reason, "pod gc"),
            }
        })
        .await;
}

async fn node_exists(client: &Client, name: &str) -> Result<bool> {
    match Api::<Node>::all(client.clone()).get_opt(name).await {
        Ok(found) => Ok(found.is_some()),
        Err(source) => Err(Error::GetNode {
            node: name.to_string(),
            source,
        }),
    }
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The status patch that makes a pod Failed (with the DisruptionTarget condition for orphans),
/// bound to the pod's UID.
pub fn failed_patch(d: &Deletion, now: jiff::Timestamp) -> serde_json::Value {
    let mut patch = json!({"metadata": {"uid": d.uid}, "status": {"phase": "Failed"}});
    if d.with_condition() {
        patch["status"]["conditions"] = json!([{
            "type": DISRUPTION_TARGET, "status": "True", "reason": DELETION_BY_POD_GC,
            "message": NODE_GONE_MESSAGE, "lastTransitionTime": Time(now),
        }]);
    }
    patch
}

/// Marks the pod Failed if it is not terminal yet, then deletes it with grace period 0.
async fn force_delete(client: &Client, d: &Deletion) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &d.namespace);
    let pod = format!("{}/{}", d.namespace, d.name);
    if d.mark_failed {
        let patch = failed_patch(d, jiff::Timestamp::now());
        match api
            .patch_status(&d.name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if not_found(&e) => return Ok(()),
            Err(source) => return Err(Error::MarkFailed { pod, source }),
        }
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: d.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&d.name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if not_found(&e) => Ok(()),
        Err(source) => Err(Error::Delete { pod, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn pod(name: &str, node: Option<&str>, phase: &str, created: i64, deleting: bool) -> Arc<Pod> {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z")},
            "spec": {"containers": []},
            "status": {"phase": phase},
        });
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
        }
        Arc::new(serde_json::from_value(p).unwrap())
    }

    fn node(name: &str, ready: bool, taints: Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"taints": taints},
                "status": {"conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    fn names(ds: &[Deletion]) -> Vec<(&str, Reason, bool)> {
        ds.iter()
            .map(|d| (d.name.as_str(), d.reason, d.mark_failed))
            .collect()
    }

    #[test]
    fn deletes_only_the_oldest_terminated_pods_beyond_the_threshold() {
        let nodes = [node("n", true, json!([]))];
        let pods = [
            pod("e", Some("n"), "Succeeded", 5, false),
            pod("a", Some("n"), "Failed", 1, false),
            pod("c", Some("n"), "Succeeded", 3, false),
            pod("b", Some("n"), "Succeeded", 3, false),
            pod("d", Some("n"), "Failed", 4, false),
            pod("run", Some("n"), "Running", 0, false),
            pod("wait", None, "Pending", 0, false),
        ];
        let none = BTreeSet::new();
        let got = decide(&pods, &nodes, &none, 2);
        assert_eq!(
            names(&got),
            [
                ("a", Reason::Terminated, false),
                ("b", Reason::Terminated, false),
                ("c", Reason::Terminated, false)
            ]
        );
        assert!(decide(&pods, &nodes, &none, 5).is_empty());
        assert!(decide(&pods, &nodes, &none, 0).is_empty(), "0 disables");
    }

    #[test]
    fn evicted_pods_go_first() {
        let mut evicted = (*pod("late", Some("n"), "Failed", 9, false)).clone();
        evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
        let pods = [
            pod("early", Some("n"), "Succeeded", 1, false),
            Arc::new(evicted),
        ];
        let got = decide(&pods, &[], &BTreeSet::new(), 1);
        assert_eq!(names(&got), [("late", Reason::Terminated, false)]);
    }

    #[test]
    fn orphans_are_marked_failed_and_deleted_once_their_node_is_confirmed_gone() {
        let nodes = [node("here", true, json!([]))];
        let pods = [
            pod("home", Some("here"), "Running", 1, false),
            pod("lost", Some("gone"), "Running", 1, false),
            pod("lost-done", Some("gone"), "Succeeded", 1, false),
            pod("limbo", Some("later"), "Running", 1, false),
        ];
        assert_eq!(
            missing_nodes(&pods, &nodes),
            BTreeSet::from(["gone".to_string(), "later".to_string()])
        );
        let gone = BTreeSet::from(["gone".to_string()]);
        let got = decide(&pods, &nodes, &gone, 0);
        assert_eq!(
            names(&got),
            [
                ("lost", Reason::Orphaned, true),
                ("lost-done", Reason::Orphaned, false)
            ]
        );
        assert!(got[0].with_condition());
        let patch = failed_patch(&got[0], jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(patch["metadata"]["uid"], "uid-lost");
        assert_eq!(patch["status"]["phase"], "Failed");
        let c = &patch["status"]["conditions"][0];
        assert_eq!(
            (&c["type"], &c["status"], &c["reason"], &c["message"]),
            (
                &json!("DisruptionTarget"),
                &json!("True"),
                &json!("DeletionByPodGC"),
                &json!("PodGC: node no longer exists")
            )
        );
    }

    #[test]
    fn terminating_pods_go_when_unscheduled_or_on_an_out_of_service_node() {
        let oos = json!([{"key": OUT_OF_SERVICE, "effect": "NoExecute"}]);
        let nodes = [
            node("down", false, oos.clone()),
            node("up", true, oos),
            node("sick", false, json!([])),
        ];
        let pods = [
            pod("unscheduled", None, "Pending", 1, true),
            pod("pending", None, "Pending", 1, false),
            pod("stuck", Some("down"), "Running", 1, true),
            pod("alive", Some("down"), "Running", 1, false),
            pod("ready-node", Some("up"), "Running", 1, true),
            pod("no-taint", Some("sick"), "Running", 1, true),
        ];
        let got = decide(&pods, &nodes, &BTreeSet::new(), 0);
        assert_eq!(
            names(&got),
            [
                ("stuck", Reason::TerminatingOutOfService, true),
                ("unscheduled", Reason::TerminatingUnscheduled, true)
            ]
        );
        assert!(!got[0].with_condition());
        let patch = failed_patch(&got[0], jiff::Timestamp::UNIX_EPOCH);
        assert!(patch["status"].get("conditions").is_none());
    }

    #[test]
    fn a_pod_is_deleted_once_whatever_the_reasons() {
        let pods = [
            pod("old", Some("gone"), "Failed", 1, false),
            pod("new", Some("n"), "Failed", 2, false),
        ];
        let gone = BTreeSet::from(["gone".to_string()]);
        let got = decide(&pods, &[node("n", true, json!([]))], &gone, 1);
        assert_eq!(names(&got), [("old", Reason::Terminated, false)]);
    }

    #[test]
    fn quarantine_waits_then_releases_and_forgets_nodes_that_return() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(40);
        let mut q = Quarantine::default();
        let both = BTreeSet::from(["a".to_string(), "b".to_string()]);
        assert!(q.due(&both, t0, wait).is_empty());
        let only_a = BTreeSet::from(["a".to_string()]);
        assert!(
            q.due(&only_a, t0 + Duration::from_secs(20), wait)
                .is_empty()
        );
        // b came back; a is due after 40 s.
        assert_eq!(q.due(&both, t0 + wait, wait), ["a"]);
        // b starts its quarantine again from when it went missing again.
        assert!(
            q.due(&both, t0 + wait + Duration::from_secs(1), wait)
                .is_empty()
        );
        assert_eq!(q.due(&both, t0 + Duration::from_secs(80), wait), ["b"]);
        assert_eq!(q.due(&both, t0 + Duration::from_secs(81), wait), ["a"]);
    }
}
