//! The pod's status as the kubelet reports it (phase, conditions, container statuses, IPs),
//! computed from the spec, what the runtime holds and why containers wait, without IO.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use super::observe::{Instance, PodRuntime, State};
use super::probes::Results;

/// Why a container is waiting, keyed by container name: (reason, message).
pub type WaitingReasons = HashMap<String, (String, String)>;

/// An RFC 3339 time (seconds) from nanoseconds since the epoch.
pub fn time_ns(ns: i64) -> String {
    Timestamp::from_nanosecond(ns as i128)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn terminated(i: &Instance) -> Value {
    let reason = if !i.reason.is_empty() {
        i.reason.clone()
    } else if i.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    let mut t = json!({
        "exitCode": i.exit_code,
        "reason": reason,
        "startedAt": (i.started_ns > 0).then(|| time_ns(i.started_ns)),
        "finishedAt": time_ns(i.finished_ns),
        "containerID": format!("containerd://{}", i.id),
    });
    if !i.message.is_empty() {
        t["message"] = json!(i.message);
    }
    json!({"terminated": t})
}

/// The status of one container: state, lastState, ready, restartCount, IDs.
fn container_status(
    c: &Container,
    rt: &PodRuntime,
    waiting: &WaitingReasons,
    default_wait: &str,
    init: bool,
    probed: &Results,
) -> Value {
    let instances = rt.of(&c.name);
    let latest = instances.first().copied();
    let previous = instances.get(1).copied();
    let wait = |default: &str| {
        let (reason, message) = waiting
            .get(&c.name)
            .cloned()
            .unwrap_or_else(|| (default.to_string(), String::new()));
        let mut w = json!({"reason": reason});
        if !message.is_empty() {
            w["message"] = json!(message);
        }
        json!({"waiting": w})
    };
    let (state, last, ready) = match latest {
        None => (wait(default_wait), json!({}), false),
        Some(i) => match i.state {
            State::Running => (
                json!({"running": {"startedAt": time_ns(i.started_ns.max(i.created_ns))}}),
                previous.map_or(json!({}), terminated),
                !init && probed.ready(c, i),
            ),
            State::Exited if waiting.contains_key(&c.name) => (wait(""), terminated(i), false),
            State::Exited => (
                terminated(i),
                previous.map_or(json!({}), terminated),
                init && i.exit_code == 0,
            ),
            State::Created | State::Unknown => (
                wait(default_wait),
                previous.map_or(json!({}), terminated),
                false,
            ),
        },
    };
    let mut s = json!({
        "name": c.name,
        "image": c.image.clone().unwrap_or_default(),
        "imageID": latest.map(|i| i.image_ref.clone()).unwrap_or_default(),
        "ready": ready,
        "restartCount": latest.map_or(0, |i| i.attempt),
        "state": state,
        "lastState": last,
    });
    if let Some(i) = latest {
        s["containerID"] = json!(format!("containerd://{}", i.id));
    }
    if !init {
        s["started"] = json!(latest.is_some_and(|i| probed.started(c, i)));
    }
    s
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The phase, as upstream's getPhase decides it.
fn phase(
    pod: &Pod,
    rt: &PodRuntime,
    reasons: &WaitingReasons,
    inits_done: bool,
    init_failed: bool,
) -> &'static str {
    let policy = restart_policy(pod);
    if !inits_done {
        return if init_failed && policy == "Never" {
            "Failed"
        } else {
            "Pending"
        };
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        match rt.latest(&c.name).map(|i| (i.state, i.exit_code)) {
            Some((State::Running, _)) => running += 1,
            Some((State::Exited, code)) => {
                stopped += 1;
                // One waiting to restart (back-off) has not succeeded, whatever its exit code.
                if code == 0 && !reasons.contains_key(&c.name) {
                    succeeded += 1;
                }
            }
            _ => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped == 0 {
        "Pending"
    } else {
        match policy {
            "Always" => "Running",
            "OnFailure" if stopped == succeeded => "Succeeded",
            "OnFailure" => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        }
    }
}

/// One condition, keeping the old transition time when its status did not change.
fn condition(pod: &Pod, type_: &str, ok: bool, reason: &str, message: &str, now: &str) -> Value {
    let status = if ok { "True" } else { "False" };
    let old = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let since = match old {
        Some(c) if c.status == status => c
            .last_transition_time
            .as_ref()
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| now.to_string()),
        _ => now.to_string(),
    };
    let mut c = json!({"type": type_, "status": status, "lastTransitionTime": since});
    if !ok && !reason.is_empty() {
        c["reason"] = json!(reason);
        c["message"] = json!(message);
    }
    c
}

/// The status fields the agent owns, for `pod` on a node at `host_ip`, at `now` (with no probe
/// results yet: containers with a readiness or startup probe are not ready).
pub fn compute(
    pod: &Pod,
    rt: &PodRuntime,
    waiting: &WaitingReasons,
    host_ip: &str,
    now: &str,
) -> Value {
    compute_with(pod, rt, waiting, &Results::default(), host_ip, now)
}

/// [`compute`] with the containers' probe results: `ready` and `started` follow readiness and
/// startup probes, and so do the pod's Ready and ContainersReady conditions.
pub fn compute_with(
    pod: &Pod,
    rt: &PodRuntime,
    waiting: &WaitingReasons,
    probed: &Results,
    host_ip: &str,
    now: &str,
) -> Value {
    let Some(spec) = pod.spec.as_ref() else {
        return json!({});
    };
    let host_network = spec.host_network == Some(true);
    let inits: Vec<&Container> = spec.init_containers.iter().flatten().collect();
    let init_done = |c: &Container| {
        rt.latest(&c.name)
            .is_some_and(|i| i.state == State::Exited && i.exit_code == 0)
    };
    let init_failed = inits.iter().any(|c| {
        rt.latest(&c.name)
            .is_some_and(|i| i.state == State::Exited && i.exit_code != 0)
    });
    let pending_inits: Vec<&str> = inits
        .iter()
        .filter(|c| !init_done(c))
        .map(|c| c.name.as_str())
        .collect();
    let inits_done = pending_inits.is_empty();
    let app_wait = if inits_done {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let init_statuses: Vec<Value> = inits
        .iter()
        .map(|c| container_status(c, rt, waiting, "PodInitializing", true, probed))
        .collect();
    let statuses: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| container_status(c, rt, waiting, app_wait, false, probed))
        .collect();
    let phase = phase(pod, rt, waiting, inits_done, init_failed);
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| s["ready"] != json!(true))
        .filter_map(|s| s["name"].as_str())
        .collect();
    let all_ready = unready.is_empty();
    let sandbox_ready = rt.sandbox().is_some_and(|s| s.ready);
    let list = |names: &[&str]| format!("[{}]", names.join(" "));
    let (ready_reason, ready_message) = if matches!(phase, "Succeeded" | "Failed") {
        ("PodCompleted", String::new())
    } else {
        (
            "ContainersNotReady",
            format!("containers with unready status: {}", list(&unready)),
        )
    };
    let completed = matches!(phase, "Succeeded" | "Failed");
    let ready = all_ready && !completed;
    let mut conditions = vec![
        condition(pod, "PodReadyToStartContainers", sandbox_ready, "", "", now),
        condition(
            pod,
            "Initialized",
            inits_done,
            "ContainersNotInitialized",
            &format!(
                "containers with incomplete status: {}",
                list(&pending_inits)
            ),
            now,
        ),
        condition(pod, "Ready", ready, ready_reason, &ready_message, now),
        condition(
            pod,
            "ContainersReady",
            ready,
            ready_reason,
            &ready_message,
            now,
        ),
    ];
    if completed && inits_done {
        // Upstream reports Initialized True with reason PodCompleted on finished pods.
        conditions[1] = condition(pod, "Initialized", true, "", "", now);
    }
    // Conditions others own (PodScheduled, readiness gates) stay as they are.
    let ours = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
    ];
    for c in pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if !ours.contains(&c.type_.as_str()) {
            conditions.push(serde_json::to_value(c).unwrap_or(Value::Null));
        }
    }
    let pod_ip = if host_network {
        Some(host_ip.to_string())
    } else {
        rt.ip.clone()
    };
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| now.to_string());
    let mut s = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": statuses,
    });
    if !init_statuses.is_empty() {
        s["initContainerStatuses"] = json!(init_statuses);
    }
    if let Some(ip) = pod_ip {
        s["podIP"] = json!(ip);
        s["podIPs"] = json!([{"ip": ip}]);
    }
    s
}

/// The fields of `new` that differ from the pod's current status (empty when nothing changed).
pub fn diff(pod: &Pod, new: &Value) -> Option<Value> {
    let old = serde_json::to_value(pod.status.as_ref()?).unwrap_or(Value::Null);
    let mut patch = serde_json::Map::new();
    for (k, v) in new.as_object()? {
        if old.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone());
        }
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

#[cfg(test)]
mod tests {
    use super::super::observe::{Instance, Sandbox};
    use super::*;

    fn pod(restart: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": restart, "containers": [
                {"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True"}]},
        }))
        .unwrap()
    }

    fn inst(name: &str, attempt: u32, state: State, exit: i32) -> Instance {
        Instance {
            id: format!("{name}{attempt}"),
            name: name.into(),
            attempt,
            sandbox_id: "s".into(),
            state,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            created_ns: 1,
            started_ns: 1_000_000_000,
            finished_ns: 2_000_000_000,
            image_ref: "sha256:abc".into(),
            log_path: String::new(),
        }
    }

    fn rt(instances: Vec<Instance>) -> PodRuntime {
        PodRuntime {
            sandboxes: vec![Sandbox {
                id: "s".into(),
                attempt: 0,
                ready: true,
                created_ns: 1,
            }],
            instances,
            ip: Some("10.42.0.7".into()),
        }
    }

    fn check(
        restart: &str,
        instances: Vec<Instance>,
        waiting: &[(&str, &str)],
        want: &[(&str, Value)],
    ) {
        let waiting: WaitingReasons = waiting
            .iter()
            .map(|(n, r)| (n.to_string(), (r.to_string(), String::new())))
            .collect();
        let s = compute(
            &pod(restart),
            &rt(instances),
            &waiting,
            "192.168.0.1",
            "2026-01-01T00:00:00Z",
        );
        for (ptr, v) in want {
            assert_eq!(s.pointer(ptr), Some(v), "{ptr} in {s:#}");
        }
    }

    #[test]
    fn phases_and_states() {
        use State::*;
        check(
            "Always",
            vec![],
            &[],
            &[
                ("/phase", json!("Pending")),
                (
                    "/containerStatuses/0/state/waiting/reason",
                    json!("ContainerCreating"),
                ),
                ("/conditions/2/status", json!("False")),
                (
                    "/conditions/2/message",
                    json!("containers with unready status: [a b]"),
                ),
                ("/conditions/4/type", json!("PodScheduled")),
                ("/podIP", json!("10.42.0.7")),
                ("/hostIP", json!("192.168.0.1")),
            ],
        );
        check(
            "Always",
            vec![inst("a", 0, Running, 0), inst("b", 0, Running, 0)],
            &[],
            &[
                ("/phase", json!("Running")),
                ("/containerStatuses/0/ready", json!(true)),
                ("/containerStatuses/0/started", json!(true)),
                ("/containerStatuses/0/containerID", json!("containerd://a0")),
                ("/conditions/2/type", json!("Ready")),
                ("/conditions/2/status", json!("True")),
            ],
        );
        // A crash-looping container: waiting with the last termination beside it.
        check(
            "Always",
            vec![
                inst("a", 0, Running, 0),
                inst("b", 2, Exited, 1),
                inst("b", 1, Exited, 1),
            ],
            &[("b", "CrashLoopBackOff")],
            &[
                ("/phase", json!("Running")),
                (
                    "/containerStatuses/1/state/waiting/reason",
                    json!("CrashLoopBackOff"),
                ),
                (
                    "/containerStatuses/1/lastState/terminated/reason",
                    json!("Error"),
                ),
                (
                    "/containerStatuses/1/lastState/terminated/exitCode",
                    json!(1),
                ),
                ("/containerStatuses/1/restartCount", json!(2)),
            ],
        );
        check(
            "Never",
            vec![inst("a", 0, Exited, 0), inst("b", 0, Exited, 0)],
            &[],
            &[
                ("/phase", json!("Succeeded")),
                (
                    "/containerStatuses/0/state/terminated/reason",
                    json!("Completed"),
                ),
                ("/conditions/2/reason", json!("PodCompleted")),
            ],
        );
        check(
            "Never",
            vec![inst("a", 0, Exited, 0), inst("b", 0, Exited, 3)],
            &[],
            &[("/phase", json!("Failed"))],
        );
        check(
            "OnFailure",
            vec![inst("a", 0, Exited, 0), inst("b", 0, Exited, 3)],
            &[],
            &[("/phase", json!("Running"))],
        );
        // Killed by its liveness probe with exit code 0, and backing off before its restart.
        check(
            "OnFailure",
            vec![inst("a", 0, Exited, 0), inst("b", 0, Exited, 0)],
            &[("b", "CrashLoopBackOff")],
            &[("/phase", json!("Running"))],
        );
        check(
            "Always",
            vec![],
            &[("a", "ErrImagePull")],
            &[(
                "/containerStatuses/0/state/waiting/reason",
                json!("ErrImagePull"),
            )],
        );
    }

    #[test]
    fn a_written_status_reads_back_unchanged() {
        use State::*;
        let cases = [
            vec![],
            vec![inst("a", 0, Running, 0), inst("b", 0, Running, 0)],
            vec![
                inst("a", 0, Running, 0),
                inst("b", 1, Exited, 1),
                inst("b", 0, Exited, 1),
            ],
        ];
        for instances in cases {
            let mut p = pod("Always");
            let s = compute(
                &p,
                &rt(instances.clone()),
                &WaitingReasons::new(),
                "192.168.0.1",
                "2026-01-01T00:00:00Z",
            );
            p.status = Some(serde_json::from_value(s.clone()).unwrap());
            let again = compute(
                &p,
                &rt(instances),
                &WaitingReasons::new(),
                "192.168.0.1",
                "2026-01-01T00:00:09Z",
            );
            assert_eq!(diff(&p, &again), None, "{s:#}");
        }
    }

    #[test]
    fn readiness_probes_drive_ready() {
        use super::super::probes::Kind;
        let mut p = pod("Always");
        if let Some(spec) = p.spec.as_mut() {
            spec.containers[1].readiness_probe =
                Some(serde_json::from_value(json!({"httpGet": {"port": 8080}})).unwrap());
        }
        let instances = vec![
            inst("a", 0, State::Running, 0),
            inst("b", 0, State::Running, 0),
        ];
        let at = |probed: &Results| {
            compute_with(
                &p,
                &rt(instances.clone()),
                &WaitingReasons::new(),
                probed,
                "192.168.0.1",
                "2026-01-01T00:00:00Z",
            )
        };
        let mut probed = Results::default();
        for (result, want_ready) in [(None, false), (Some(false), false), (Some(true), true)] {
            if let Some(ok) = result {
                probed.set("b0", Kind::Readiness, ok);
            }
            let s = at(&probed);
            assert_eq!(s["phase"], json!("Running"));
            assert_eq!(s["containerStatuses"][0]["ready"], json!(true));
            assert_eq!(
                s["containerStatuses"][1]["ready"],
                json!(want_ready),
                "{s:#}"
            );
            assert_eq!(s["containerStatuses"][1]["started"], json!(true));
            let status = if want_ready { "True" } else { "False" };
            assert_eq!(s["conditions"][2]["type"], json!("Ready"));
            assert_eq!(s["conditions"][2]["status"], json!(status));
            assert_eq!(s["conditions"][3]["status"], json!(status));
            if !want_ready {
                assert_eq!(
                    s["conditions"][2]["message"],
                    json!("containers with unready status: [b]")
                );
            }
        }
    }

    #[test]
    fn diff_reports_only_changes() {
        let p = pod("Always");
        let same = json!({"phase": "Pending"});
        assert_eq!(diff(&p, &same), None);
        let changed = json!({"phase": "Running"});
        assert_eq!(diff(&p, &changed), Some(json!({"phase": "Running"})));
    }
}
