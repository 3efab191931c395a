//! What a simulated kubelet does with a pod bound to its node, decided without IO: the next
//! status to write, a deletion to finish, or nothing; and the pod IPs it hands out.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// How long a pod that runs to completion (restartPolicy Never or OnFailure) runs.
pub const RUN_TO_COMPLETION: Duration = Duration::from_secs(1);

/// The next thing to do for a pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing: the pod's status is already what it should be.
    Nothing,
    /// Merge-patch the pod's `status` with this.
    Status(Value),
    /// Finish a graceful deletion (delete with grace period 0).
    Delete,
    /// Look again after this long (a pod running to completion).
    Later(Duration),
}

/// Where the pod runs: its node's address and the pod's own.
#[derive(Clone, Debug)]
pub struct Placement {
    pub host_ip: String,
    pub pod_ip: String,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn runs_to_completion(pod: &Pod) -> bool {
    matches!(
        pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()),
        Some("Never" | "OnFailure")
    )
}

/// RFC 3339 with whole seconds, as Kubernetes writes `Time`.
pub fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Decides the next step for `pod` at `now`.
pub fn decide(pod: &Pod, placement: &Placement, now: Timestamp) -> Action {
    if pod.metadata.deletion_timestamp.is_some() {
        return Action::Delete;
    }
    match phase(pod) {
        "Succeeded" | "Failed" => Action::Nothing,
        "Running" if runs_to_completion(pod) => {
            let started = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map_or(now, |t| t.0);
            let elapsed = now.duration_since(started).unsigned_abs();
            match RUN_TO_COMPLETION.checked_sub(elapsed) {
                Some(left) if !left.is_zero() => Action::Later(left),
                _ => Action::Status(succeeded_status(pod, now)),
            }
        }
        "Running" if is_running_as_wanted(pod, placement) => Action::Nothing,
        _ => Action::Status(running_status(pod, placement, now)),
    }
}

/// Whether the status already says Running and Ready with our addresses.
fn is_running_as_wanted(pod: &Pod, placement: &Placement) -> bool {
    let Some(s) = &pod.status else {
        return false;
    };
    let ready = s
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ready
        && s.pod_ip.as_deref() == Some(placement.pod_ip.as_str())
        && s.host_ip.as_deref() == Some(placement.host_ip.as_str())
}

fn scheduled_since(pod: &Pod, now: &str) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map_or_else(|| now.to_string(), |t| time(t.0))
}

fn condition(type_: &str, ok: bool, reason: Option<&str>, since: &str) -> Value {
    let mut c = json!({"type": type_, "status": if ok { "True" } else { "False" },
        "lastProbeTime": null, "lastTransitionTime": since});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    c
}

fn container_id(pod: &Pod, c: &Container) -> String {
    format!(
        "sim://{}/{}",
        pod.metadata.uid.as_deref().unwrap_or("unknown"),
        c.name
    )
}

fn base_status(c: &Container, pod: &Pod) -> Value {
    let image = c.image.clone().unwrap_or_default();
    json!({
        "name": c.name,
        "image": image,
        "imageID": format!("sim://{image}"),
        "containerID": container_id(pod, c),
        "restartCount": 0,
    })
}

fn running(c: &Container, pod: &Pod, since: &str) -> Value {
    let mut s = base_status(c, pod);
    s["ready"] = json!(true);
    s["started"] = json!(true);
    s["state"] = json!({"running": {"startedAt": since}});
    s
}

fn completed(c: &Container, pod: &Pod, started: &str, finished: &str) -> Value {
    let mut s = base_status(c, pod);
    s["ready"] = json!(false);
    s["started"] = json!(false);
    s["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed",
        "startedAt": started, "finishedAt": finished, "containerID": container_id(pod, c)}});
    s
}

fn init_statuses(pod: &Pod, since: &str) -> Vec<Value> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .map(|c| {
            if c.restart_policy.as_deref() == Some("Always") {
                running(c, pod, since)
            } else {
                let mut s = completed(c, pod, since, since);
                s["ready"] = json!(true);
                s
            }
        })
        .collect()
}

fn addresses(placement: &Placement, host_network: bool) -> Value {
    let pod_ip = if host_network {
        &placement.host_ip
    } else {
        &placement.pod_ip
    };
    json!({
        "hostIP": placement.host_ip,
        "hostIPs": [{"ip": placement.host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
    })
}

/// The status of a pod whose containers all run and are ready.
pub fn running_status(pod: &Pod, placement: &Placement, now: Timestamp) -> Value {
    let now = time(now);
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let mut status = json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers", true, None, &now),
            condition("Initialized", true, None, &now),
            condition("Ready", true, None, &now),
            condition("ContainersReady", true, None, &now),
            condition("PodScheduled", true, None, &scheduled_since(pod, &now)),
        ],
        "startTime": now,
        "containerStatuses": containers.iter().map(|c| running(c, pod, &now)).collect::<Vec<_>>(),
    });
    let init = init_statuses(pod, &now);
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init);
    }
    merge(&mut status, addresses(placement, host_network));
    status
}

/// The status of a pod whose containers all exited 0.
pub fn succeeded_status(pod: &Pod, now: Timestamp) -> Value {
    let now = time(now);
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or_else(|| now.clone(), |t| time(t.0));
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    json!({
        "phase": "Succeeded",
        "conditions": [
            condition("PodReadyToStartContainers", false, None, &now),
            condition("Initialized", true, Some("PodCompleted"), &started),
            condition("Ready", false, Some("PodCompleted"), &now),
            condition("ContainersReady", false, Some("PodCompleted"), &now),
            condition("PodScheduled", true, None, &scheduled_since(pod, &started)),
        ],
        "containerStatuses": containers.iter().map(|c| completed(c, pod, &started, &now)).collect::<Vec<_>>(),
    })
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
        a.extend(b);
    }
}

/// Pod addresses per node: the lowest free host number (2..=254) in the node's /24.
#[derive(Default)]
pub struct Ipam {
    used: HashMap<usize, BTreeSet<u8>>,
    /// Pod key → (node index, host number).
    by_pod: HashMap<String, (usize, u8)>,
}

impl Ipam {
    /// The pod's address on node `index`, allocating one if it has none; `existing` is the
    /// address the pod's status already has.
    pub fn address(&mut self, key: &str, index: usize, existing: Option<&str>) -> String {
        if let Some(&(node, host)) = self.by_pod.get(key)
            && node == index
        {
            return crate::node::pod_ip(index, host);
        }
        self.release(key);
        let used = self.used.entry(index).or_default();
        let net = crate::node::pod_ip(index, 0);
        let net = net.rsplit_once('.').map_or("", |(n, _)| n);
        let host = existing
            .and_then(|ip| ip.rsplit_once('.'))
            .filter(|(n, _)| *n == net)
            .and_then(|(_, h)| h.parse::<u8>().ok())
            .filter(|h| (2..=254).contains(h) && !used.contains(h))
            .or_else(|| (2..=254u8).find(|h| !used.contains(h)))
            .unwrap_or(2);
        used.insert(host);
        self.by_pod.insert(key.to_string(), (index, host));
        crate::node::pod_ip(index, host)
    }

    /// Frees the addresses of every pod `keep` rejects.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.by_pod.keys().filter(|k| !keep(k)).cloned().collect();
        for k in gone {
            self.release(&k);
        }
    }

    /// Frees the pod's address.
    pub fn release(&mut self, key: &str) {
        if let Some((node, host)) = self.by_pod.remove(key)
            && let Some(set) = self.used.get_mut(&node)
        {
            set.remove(&host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra: Value) -> Pod {
        let mut v = json!({"metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "image": "img:1"}]}});
        if let (Some(a), Value::Object(b)) = (v.as_object_mut(), extra) {
            for (k, val) in b {
                match (a.get_mut(&k), val) {
                    (Some(Value::Object(dst)), Value::Object(src)) => dst.extend(src),
                    (_, val) => {
                        a.insert(k, val);
                    }
                }
            }
        }
        serde_json::from_value(v).expect("pod")
    }

    fn placement() -> Placement {
        Placement {
            host_ip: "172.16.0.1".into(),
            pod_ip: "10.42.0.2".into(),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn phase_of(a: &Action) -> Option<&str> {
        match a {
            Action::Status(s) => s.get("phase").and_then(Value::as_str),
            _ => None,
        }
    }

    #[test]
    fn pending_pods_start_running_and_ready() {
        let now = at("2026-01-01T00:00:00Z");
        let a = decide(&pod(json!({})), &placement(), now);
        assert_eq!(phase_of(&a), Some("Running"));
        let Action::Status(s) = a else { unreachable!() };
        assert_eq!(s["podIP"], "10.42.0.2");
        assert_eq!(s["hostIP"], "172.16.0.1");
        assert_eq!(s["startTime"], "2026-01-01T00:00:00Z");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert_eq!(s["containerStatuses"][0]["containerID"], "sim://u1/app");
        assert_eq!(
            s["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2026-01-01T00:00:00Z"
        );
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["status"] == "True")
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        // The status it wrote is accepted as a pod status, and seeing it again changes nothing.
        let running = pod(json!({"status": s}));
        assert_eq!(decide(&running, &placement(), now), Action::Nothing);
    }

    #[test]
    fn run_to_completion_pods_succeed_after_a_second() {
        let start = at("2026-01-01T00:00:00Z");
        let p = pod(json!({"spec": {"restartPolicy": "Never"}}));
        let Action::Status(s) = decide(&p, &placement(), start) else {
            panic!("starts")
        };
        let running = pod(json!({"spec": {"restartPolicy": "Never"}, "status": s}));
        assert_eq!(
            decide(&running, &placement(), start),
            Action::Later(RUN_TO_COMPLETION)
        );
        let later = at("2026-01-01T00:00:02Z");
        let done = decide(&running, &placement(), later);
        assert_eq!(phase_of(&done), Some("Succeeded"));
        let Action::Status(s) = done else {
            unreachable!()
        };
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        assert_eq!(
            s["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            0
        );
        let finished = pod(json!({"spec": {"restartPolicy": "Never"}, "status": s}));
        assert_eq!(decide(&finished, &placement(), later), Action::Nothing);
    }

    #[test]
    fn always_pods_keep_running_and_deleting_pods_are_finished() {
        let now = at("2026-01-01T00:00:00Z");
        let Action::Status(s) = decide(&pod(json!({})), &placement(), now) else {
            panic!()
        };
        let running = pod(json!({"status": s}));
        assert_eq!(
            decide(&running, &placement(), at("2026-01-02T00:00:00Z")),
            Action::Nothing
        );
        let deleting = pod(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        assert_eq!(decide(&deleting, &placement(), now), Action::Delete);
    }

    #[test]
    fn host_network_pods_use_the_node_address() {
        let p = pod(json!({"spec": {"hostNetwork": true}}));
        let s = running_status(&p, &placement(), at("2026-01-01T00:00:00Z"));
        assert_eq!(s["podIP"], "172.16.0.1");
    }

    #[test]
    fn ipam_hands_out_distinct_addresses_and_reuses_freed_ones() {
        let mut ipam = Ipam::default();
        assert_eq!(ipam.address("a", 1, None), "10.42.1.2");
        assert_eq!(ipam.address("b", 1, None), "10.42.1.3");
        assert_eq!(
            ipam.address("a", 1, None),
            "10.42.1.2",
            "stable for the same pod"
        );
        assert_eq!(ipam.address("c", 2, None), "10.42.2.2");
        ipam.release("a");
        assert_eq!(ipam.address("d", 1, None), "10.42.1.2");
        assert_eq!(
            ipam.address("e", 1, Some("10.42.1.9")),
            "10.42.1.9",
            "keeps an address it had"
        );
    }
}
