//! What to do next for one pod, decided from its spec and what the runtime holds, without IO:
//! the kubelet's "compute pod actions", level-triggered.

use k8s_openapi::api::core::v1::Pod;

use super::backoff::Backoff;
use super::observe::{PodRuntime, State};
use super::probes::{self, Results};

/// One step toward the pod's desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a new sandbox (after stopping what is left of the old one).
    RunSandbox { attempt: u32 },
    /// Pull (per policy), create and start a new instance of a container.
    StartContainer {
        name: String,
        init: bool,
        attempt: u32,
        /// When it replaces an exited instance: when that one finished (for back-off).
        after_exit_ns: Option<i64>,
    },
    /// Start an instance that was created but never started.
    StartCreated { id: String },
    /// Stop one running instance (after a failed liveness or startup probe) within `grace_s`;
    /// `message` is what the Killing event says.
    KillContainer {
        id: String,
        name: String,
        grace_s: i64,
        message: String,
    },
    /// Remove an old exited instance (the newest two of each name are kept for logs).
    RemoveContainer { id: String },
    /// Stop every container and the sandbox, gracefully within `grace_s`; with `remove`,
    /// also remove them.
    KillPod { grace_s: i64, remove: bool },
    /// Everything is gone from the runtime: finish the API object's graceful deletion.
    DeleteObject,
}

/// Why a container waits instead of starting now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub name: String,
    pub reason: String,
    pub message: String,
}

/// What to do now, and the containers held back by back-off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub waiting: Vec<Waiting>,
}

/// The grace period of a deletion: the one on the object, else the spec's, else 30 s.
pub fn grace_seconds(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The back-off key of a container of a pod.
pub fn backoff_key(uid: &str, name: &str) -> String {
    format!("{uid}/{name}")
}

/// Whether an exited container should run again under `policy`.
fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Decides the next steps for `pod` (or for a pod that is gone from the API: `None`).
pub fn plan(pod: Option<&Pod>, uid: &str, rt: &PodRuntime, backoff: &Backoff, now_ns: i64) -> Plan {
    plan_with(pod, uid, rt, backoff, &Results::default(), now_ns)
}

/// [`plan`], with the containers' probe results: a running container whose liveness (or
/// startup) probe failed is killed, to be restarted as its restart policy says.
pub fn plan_with(
    pod: Option<&Pod>,
    uid: &str,
    rt: &PodRuntime,
    backoff: &Backoff,
    probed: &Results,
    now_ns: i64,
) -> Plan {
    let mut p = Plan::default();
    let Some(pod) = pod else {
        if !rt.is_empty() {
            p.actions.push(Action::KillPod {
                grace_s: 2,
                remove: true,
            });
        }
        return p;
    };
    if pod.metadata.deletion_timestamp.is_some() {
        p.actions.push(if rt.is_empty() {
            Action::DeleteObject
        } else {
            Action::KillPod {
                grace_s: grace_seconds(pod),
                remove: true,
            }
        });
        return p;
    }
    if is_terminal(pod) {
        if rt.anything_running() {
            p.actions.push(Action::KillPod {
                grace_s: grace_seconds(pod),
                remove: false,
            });
        }
        return p;
    }
    let Some(spec) = pod.spec.as_ref() else {
        return p;
    };
    let sandbox = match rt.sandbox() {
        Some(s) if s.ready => s,
        other => {
            // A pod whose containers all finished for good needs no new sandbox.
            if other.is_some() && all_done(pod, rt) {
                return p;
            }
            p.actions.push(Action::RunSandbox {
                attempt: other.map_or(0, |s| s.attempt + 1),
            });
            return p;
        }
    };
    let policy = restart_policy(pod);
    let in_sandbox = |name: &str| rt.of(name).into_iter().find(|i| i.sandbox_id == sandbox.id);
    let next_attempt = |name: &str| rt.latest(name).map_or(0, |i| i.attempt + 1);

    // Init containers, one at a time, in order.
    for c in spec.init_containers.iter().flatten() {
        match in_sandbox(&c.name) {
            None => {
                // A new sandbox reruns init containers only if they never completed.
                let done_before = rt
                    .latest(&c.name)
                    .is_some_and(|i| i.state == State::Exited && i.exit_code == 0);
                if done_before && !rt.sandboxes.iter().skip(1).any(|s| s.ready) {
                    continue;
                }
                p.actions.push(Action::StartContainer {
                    name: c.name.clone(),
                    init: true,
                    attempt: next_attempt(&c.name),
                    after_exit_ns: None,
                });
                return p;
            }
            Some(i) => match i.state {
                State::Exited if i.exit_code == 0 => continue,
                State::Exited => {
                    if policy != "Never" {
                        restart(&mut p, uid, &c.name, true, i, backoff, now_ns);
                    }
                    return p;
                }
                State::Created => {
                    p.actions.push(Action::StartCreated { id: i.id.clone() });
                    return p;
                }
                State::Running | State::Unknown => return p,
            },
        }
    }

    for c in &spec.containers {
        match in_sandbox(&c.name) {
            None => p.actions.push(Action::StartContainer {
                name: c.name.clone(),
                init: false,
                attempt: next_attempt(&c.name),
                after_exit_ns: None,
            }),
            Some(i) => match i.state {
                State::Exited
                    if should_restart(policy, i.exit_code)
                        || (policy != "Never" && probed.killed(&i.id)) =>
                {
                    restart(&mut p, uid, &c.name, false, i, backoff, now_ns)
                }
                State::Created => p.actions.push(Action::StartCreated { id: i.id.clone() }),
                State::Running => {
                    if let Some(kind) = probed.failed(c, i) {
                        p.actions.push(Action::KillContainer {
                            id: i.id.clone(),
                            name: c.name.clone(),
                            grace_s: probes::kill_grace(pod, c, kind),
                            message: probes::kill_message(kind, &c.name, policy != "Never"),
                        });
                    }
                }
                _ => {}
            },
        }
    }
    // Keep the newest two instances of each name (current and previous, for logs).
    let names = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| c.name.as_str());
    for name in names {
        for old in rt.of(name).into_iter().skip(2) {
            if old.state == State::Exited {
                p.actions
                    .push(Action::RemoveContainer { id: old.id.clone() });
            }
        }
    }
    p
}

fn restart(
    p: &mut Plan,
    uid: &str,
    name: &str,
    init: bool,
    exited: &super::observe::Instance,
    backoff: &Backoff,
    now_ns: i64,
) {
    let key = backoff_key(uid, name);
    if backoff
        .remaining(&key, exited.finished_ns, now_ns)
        .is_some()
    {
        p.waiting.push(Waiting {
            name: name.to_string(),
            reason: "CrashLoopBackOff".into(),
            message: String::new(),
        });
        return;
    }
    p.actions.push(Action::StartContainer {
        name: name.to_string(),
        init,
        attempt: exited.attempt + 1,
        after_exit_ns: Some(exited.finished_ns),
    });
}

/// Whether every container has finished and none will run again.
fn all_done(pod: &Pod, rt: &PodRuntime) -> bool {
    let policy = restart_policy(pod);
    pod.spec.as_ref().is_some_and(|s| {
        s.containers.iter().all(|c| {
            rt.latest(&c.name)
                .is_some_and(|i| i.state == State::Exited && !should_restart(policy, i.exit_code))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::observe::{Instance, Sandbox};
    use super::*;
    use serde_json::json;

    fn pod(extra: serde_json::Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
        });
        merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn sandbox(ready: bool) -> Sandbox {
        Sandbox {
            id: "s1".into(),
            attempt: 0,
            ready,
            created_ns: 1,
        }
    }

    fn inst(name: &str, attempt: u32, state: State, exit: i32, finished: i64) -> Instance {
        Instance {
            id: format!("{name}-{attempt}"),
            name: name.into(),
            attempt,
            sandbox_id: "s1".into(),
            state,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            created_ns: attempt as i64,
            started_ns: 0,
            finished_ns: finished,
            image_ref: String::new(),
            log_path: String::new(),
        }
    }

    fn rt(ready: bool, instances: Vec<Instance>) -> PodRuntime {
        PodRuntime {
            sandboxes: vec![sandbox(ready)],
            instances,
            ip: Some("10.42.0.2".into()),
        }
    }

    fn start(name: &str, init: bool, attempt: u32, after: Option<i64>) -> Action {
        Action::StartContainer {
            name: name.into(),
            init,
            attempt,
            after_exit_ns: after,
        }
    }

    fn check(pod: Option<&Pod>, rt: &PodRuntime, backoff: &Backoff, want: Vec<Action>) {
        let got = plan(pod, "u1", rt, backoff, 100_000_000_000);
        assert_eq!(got.actions, want);
    }

    #[test]
    fn new_pod_gets_a_sandbox_then_its_containers() {
        let p = pod(json!({}));
        let b = Backoff::default();
        check(
            Some(&p),
            &PodRuntime::default(),
            &b,
            vec![Action::RunSandbox { attempt: 0 }],
        );
        check(
            Some(&p),
            &rt(true, vec![]),
            &b,
            vec![start("a", false, 0, None), start("b", false, 0, None)],
        );
        let running = rt(
            true,
            vec![
                inst("a", 0, State::Running, 0, 0),
                inst("b", 0, State::Running, 0, 0),
            ],
        );
        check(Some(&p), &running, &b, vec![]);
    }

    #[test]
    fn init_containers_run_one_at_a_time() {
        let p = pod(json!({"spec": {"initContainers": [
            {"name": "i1", "image": "x"}, {"name": "i2", "image": "x"}]}}));
        let b = Backoff::default();
        check(
            Some(&p),
            &rt(true, vec![]),
            &b,
            vec![start("i1", true, 0, None)],
        );
        check(
            Some(&p),
            &rt(true, vec![inst("i1", 0, State::Running, 0, 0)]),
            &b,
            vec![],
        );
        check(
            Some(&p),
            &rt(true, vec![inst("i1", 0, State::Exited, 0, 5)]),
            &b,
            vec![start("i2", true, 0, None)],
        );
        let done = vec![
            inst("i1", 0, State::Exited, 0, 5),
            inst("i2", 0, State::Exited, 0, 6),
        ];
        check(
            Some(&p),
            &rt(true, done),
            &b,
            vec![start("a", false, 0, None), start("b", false, 0, None)],
        );
        let p_never = pod(json!({"spec": {"restartPolicy": "Never",
            "initContainers": [{"name": "i1", "image": "x"}]}}));
        check(
            Some(&p_never),
            &rt(true, vec![inst("i1", 0, State::Exited, 1, 5)]),
            &b,
            vec![],
        );
    }

    #[test]
    fn restarts_follow_policy_and_back_off() {
        let exited_b = |code| {
            rt(
                true,
                vec![
                    inst("a", 0, State::Running, 0, 0),
                    inst("b", 0, State::Exited, code, 99_000_000_000),
                ],
            )
        };
        let mut b = Backoff::default();
        let always = pod(json!({}));
        check(
            Some(&always),
            &exited_b(1),
            &b,
            vec![start("b", false, 1, Some(99_000_000_000))],
        );
        let on_failure = pod(json!({"spec": {"restartPolicy": "OnFailure"}}));
        check(Some(&on_failure), &exited_b(0), &b, vec![]);
        let never = pod(json!({"spec": {"restartPolicy": "Never"}}));
        check(Some(&never), &exited_b(1), &b, vec![]);
        // Once backed off, the restart waits and says why.
        b.next(&backoff_key("u1", "b"), 50_000_000_000);
        let got = plan(Some(&always), "u1", &exited_b(1), &b, 100_000_000_000);
        assert_eq!(got.actions, vec![]);
        assert_eq!(got.waiting[0].reason, "CrashLoopBackOff");
    }

    #[test]
    fn failed_liveness_kills_the_container() {
        let p = pod(
            json!({"spec": {"terminationGracePeriodSeconds": 5, "containers": [
            {"name": "a", "image": "x", "livenessProbe": {"tcpSocket": {"port": 81}}},
            {"name": "b", "image": "y"}]}}),
        );
        let r = rt(
            true,
            vec![
                inst("a", 0, State::Running, 0, 0),
                inst("b", 0, State::Running, 0, 0),
            ],
        );
        let b = Backoff::default();
        let mut probed = Results::default();
        let run = |probed: &Results| plan_with(Some(&p), "u1", &r, &b, probed, 1).actions;
        assert_eq!(run(&probed), vec![]);
        probed.set("a-0", probes::Kind::Liveness, true);
        probed.set("a-0", probes::Kind::Readiness, false);
        assert_eq!(run(&probed), vec![]);
        probed.set("a-0", probes::Kind::Liveness, false);
        assert_eq!(
            run(&probed),
            vec![Action::KillContainer {
                id: "a-0".into(),
                name: "a".into(),
                grace_s: 5,
                message: "Container a failed liveness probe, will be restarted".into(),
            }]
        );
        // Once it exited, it restarts through the usual path.
        let exited = rt(
            true,
            vec![
                inst("a", 0, State::Exited, 137, 99),
                inst("b", 0, State::Running, 0, 0),
            ],
        );
        let got = plan_with(Some(&p), "u1", &exited, &b, &probed, 100_000_000_000);
        assert_eq!(got.actions, vec![start("a", false, 1, Some(99))]);
        // Under OnFailure, a container killed for its probe restarts even if it exited 0.
        let mut on_failure = p.clone();
        if let Some(s) = on_failure.spec.as_mut() {
            s.restart_policy = Some("OnFailure".into());
        }
        let exited_ok = rt(
            true,
            vec![
                inst("a", 0, State::Exited, 0, 99),
                inst("b", 0, State::Running, 0, 0),
            ],
        );
        let got = plan_with(Some(&on_failure), "u1", &exited_ok, &b, &probed, 1).actions;
        assert_eq!(got, vec![]);
        probed.set_killed("a-0");
        let got = plan_with(Some(&on_failure), "u1", &exited_ok, &b, &probed, 1).actions;
        assert_eq!(got, vec![start("a", false, 1, Some(99))]);
    }

    #[test]
    fn deletion_kills_then_finishes() {
        let p = pod(
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": 5}}),
        );
        let b = Backoff::default();
        check(
            Some(&p),
            &rt(true, vec![inst("a", 0, State::Running, 0, 0)]),
            &b,
            vec![Action::KillPod {
                grace_s: 5,
                remove: true,
            }],
        );
        check(
            Some(&p),
            &PodRuntime::default(),
            &b,
            vec![Action::DeleteObject],
        );
        // Gone from the API: whatever is left is removed.
        check(
            None,
            &rt(true, vec![]),
            &b,
            vec![Action::KillPod {
                grace_s: 2,
                remove: true,
            }],
        );
        check(None, &PodRuntime::default(), &b, vec![]);
    }

    #[test]
    fn old_instances_are_removed() {
        let p = pod(json!({}));
        let r = rt(
            true,
            vec![
                inst("a", 0, State::Exited, 1, 1),
                inst("a", 1, State::Exited, 1, 2),
                inst("a", 2, State::Running, 0, 0),
                inst("b", 0, State::Running, 0, 0),
            ],
        );
        check(
            Some(&p),
            &r,
            &Backoff::default(),
            vec![Action::RemoveContainer { id: "a-0".into() }],
        );
    }
}
