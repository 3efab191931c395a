//! The Pod kind (v1): defaults, initial status, field selectors and the `kubectl get pods` table.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::Column;
use crate::core::{pod_defaults, pod_validation};
use crate::typed::Typed;
use crate::util::{
    AGE, NAME, age, age_cell, arr_at, at, col, field_string, int_at, name_cell, s, str_at, wide,
};
use keelson_apimachinery::quantity::{self, Milli};

pub static STRATEGY: Typed<Pod> = Typed::new("Pod", "v1")
    .defaults(defaults)
    .prepare(prepare)
    .validate(pod_validation::validate_pod)
    .fields(field)
    .table(COLUMNS, row)
    .status(false);

fn defaults(p: &mut Pod) {
    pod_defaults::pod(p.spec.get_or_insert_with(Default::default));
}

/// A new pod starts Pending with its QoS class.
fn prepare(obj: &mut Value) {
    let qos = qos_class(obj);
    obj["status"] = json!({"phase": "Pending", "qosClass": qos});
}

/// upstream's GetPodQOS over cpu and memory of the containers and init containers.
pub fn qos_class(pod: &Value) -> &'static str {
    let mut requests: Vec<(&str, Milli)> = Vec::new();
    let mut limits: Vec<(&str, Milli)> = Vec::new();
    let mut guaranteed = true;
    let containers = arr_at(pod, &["spec", "containers"])
        .iter()
        .chain(arr_at(pod, &["spec", "initContainers"]));
    for c in containers {
        add_nonzero(&mut requests, at(c, &["resources", "requests"]));
        let found = add_nonzero(&mut limits, at(c, &["resources", "limits"]));
        if !(found.contains(&"cpu") && found.contains(&"memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let same = requests
        .iter()
        .all(|(k, v)| limits.iter().any(|(lk, lv)| lk == k && lv == v));
    if guaranteed && same && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Adds the nonzero cpu and memory quantities of a resource list; returns the names found.
fn add_nonzero<'a>(sum: &mut Vec<(&'a str, Milli)>, list: Option<&'a Value>) -> Vec<&'a str> {
    let mut found = Vec::new();
    for (k, v) in list.and_then(Value::as_object).into_iter().flatten() {
        if k != "cpu" && k != "memory" {
            continue;
        }
        let n = v.as_str().and_then(quantity::parse).unwrap_or(0);
        if n == 0 {
            continue;
        }
        found.push(k.as_str());
        match sum.iter_mut().find(|(name, _)| name == k) {
            Some((_, total)) => *total += n,
            None => sum.push((k.as_str(), n)),
        }
    }
    found
}

/// The fields a pod field selector may name.
fn field(obj: &Value, path: &str) -> Option<String> {
    let v = match path {
        "spec.nodeName" => at(obj, &["spec", "nodeName"]),
        "spec.restartPolicy" => at(obj, &["spec", "restartPolicy"]),
        "spec.schedulerName" => at(obj, &["spec", "schedulerName"]),
        "spec.serviceAccountName" => at(obj, &["spec", "serviceAccountName"]),
        "spec.hostNetwork" => {
            return Some(
                at(obj, &["spec", "hostNetwork"])
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            );
        }
        "status.phase" => at(obj, &["status", "phase"]),
        "status.podIP" => arr_at(obj, &["status", "podIPs"])
            .first()
            .and_then(|p| p.get("ip"))
            .or_else(|| at(obj, &["status", "podIP"])),
        "status.podIPs" => at(obj, &["status", "podIP"]),
        "status.nominatedNodeName" => at(obj, &["status", "nominatedNodeName"]),
        _ => return None,
    };
    Some(field_string(v))
}

static COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName.",
    ),
    wide(
        "Nominated Node",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
    ),
    wide(
        "Readiness Gates",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\"",
    ),
];

/// Restarts and the latest restart time of a set of container statuses.
#[derive(Default)]
struct Restarts<'a> {
    count: i64,
    last: Option<&'a str>,
}

impl<'a> Restarts<'a> {
    fn add(&mut self, status: &'a Value) {
        self.count += int_at(status, &["restartCount"]).unwrap_or(0);
        if let Some(at) = str_at(status, &["lastState", "terminated", "finishedAt"]) {
            let later = self.last.is_none_or(|l| parse_ts(at) > parse_ts(l));
            if later {
                self.last = Some(at);
            }
        }
    }
}

fn parse_ts(t: &str) -> Option<Timestamp> {
    t.parse().ok()
}

fn is_restartable(init: Option<&Value>) -> bool {
    init.and_then(|c| str_at(c, &["restartPolicy"])) == Some("Always")
}

/// The reason an init container gives when it has not completed, or `None` if it has.
fn init_reason(c: &Value, i: usize, total: usize, restartable: bool) -> Option<String> {
    let terminated = at(c, &["state", "terminated"]);
    if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == Some(0)) {
        return None;
    }
    if restartable && at(c, &["started"]).and_then(Value::as_bool) == Some(true) {
        return None;
    }
    if let Some(t) = terminated {
        return Some(match str_at(t, &["reason"]).filter(|r| !r.is_empty()) {
            Some(r) => format!("Init:{r}"),
            None => match int_at(t, &["signal"]).filter(|s| *s != 0) {
                Some(sig) => format!("Init:Signal:{sig}"),
                None => format!("Init:ExitCode:{}", int_at(t, &["exitCode"]).unwrap_or(0)),
            },
        });
    }
    match str_at(c, &["state", "waiting", "reason"])
        .filter(|r| !r.is_empty() && *r != "PodInitializing")
    {
        Some(r) => Some(format!("Init:{r}")),
        None => Some(format!("Init:{i}/{total}")),
    }
}

fn condition_true(obj: &Value, kind: &str) -> bool {
    arr_at(obj, &["status", "conditions"])
        .iter()
        .any(|c| str_at(c, &["type"]) == Some(kind) && str_at(c, &["status"]) == Some("True"))
}

/// upstream's printPod.
fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let inits = arr_at(obj, &["spec", "initContainers"]);
    let find_init = |name: Option<&str>| inits.iter().find(|c| str_at(c, &["name"]) == name);
    let total = arr_at(obj, &["spec", "containers"]).len()
        + inits.iter().filter(|c| is_restartable(Some(c))).count();
    let mut ready = 0;
    let phase = str_at(obj, &["status", "phase"]).unwrap_or("");
    let status_reason = str_at(obj, &["status", "reason"]).unwrap_or("");
    let mut reason = if status_reason.is_empty() {
        phase.to_string()
    } else {
        status_reason.to_string()
    };
    let gated = arr_at(obj, &["status", "conditions"]).iter().any(|c| {
        str_at(c, &["type"]) == Some("PodScheduled")
            && str_at(c, &["reason"]) == Some("SchedulingGated")
    });
    if gated {
        reason = "SchedulingGated".to_string();
    }

    let mut all = Restarts::default();
    let mut sidecars = Restarts::default();
    let mut initializing = false;
    for (i, c) in arr_at(obj, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        all.add(c);
        let restartable = is_restartable(find_init(str_at(c, &["name"])));
        if restartable {
            sidecars.add(c);
        }
        match init_reason(c, i, inits.len(), restartable) {
            None => {
                if restartable && at(c, &["ready"]).and_then(Value::as_bool) == Some(true) {
                    ready += 1;
                }
            }
            Some(r) => {
                reason = r;
                initializing = true;
                break;
            }
        }
    }

    let mut restarts = all;
    if !initializing || condition_true(obj, "Initialized") {
        restarts = sidecars;
        let mut has_running = false;
        for c in arr_at(obj, &["status", "containerStatuses"]).iter().rev() {
            restarts.add(c);
            let waiting = str_at(c, &["state", "waiting", "reason"]).filter(|r| !r.is_empty());
            let terminated = at(c, &["state", "terminated"]);
            if let Some(w) = waiting {
                reason = w.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, &["reason"]).filter(|r| !r.is_empty()) {
                    Some(r) => r.to_string(),
                    None => match int_at(t, &["signal"]).filter(|s| *s != 0) {
                        Some(sig) => format!("Signal:{sig}"),
                        None => format!("ExitCode:{}", int_at(t, &["exitCode"]).unwrap_or(0)),
                    },
                };
            } else if at(c, &["ready"]).and_then(Value::as_bool) == Some(true)
                && at(c, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(obj, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    let deleting = at(obj, &["metadata", "deletionTimestamp"]).is_some_and(|d| !d.is_null());
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!("{} ({} ago)", restarts.count, age(Some(last), now))
        }
        _ => restarts.count.to_string(),
    };

    let ip = arr_at(obj, &["status", "podIPs"])
        .first()
        .and_then(|p| str_at(p, &["ip"]))
        .unwrap_or("");
    vec![
        name_cell(obj),
        s(format!("{ready}/{total}")),
        s(reason),
        s(restarts_cell),
        age_cell(obj, now),
        none_if_empty(ip),
        none_if_empty(str_at(obj, &["spec", "nodeName"]).unwrap_or("")),
        none_if_empty(str_at(obj, &["status", "nominatedNodeName"]).unwrap_or("")),
        readiness_gates(obj),
    ]
}

fn none_if_empty(v: &str) -> Value {
    s(if v.is_empty() { "<none>" } else { v })
}

fn readiness_gates(obj: &Value) -> Value {
    let gates = arr_at(obj, &["spec", "readinessGates"]);
    if gates.is_empty() {
        return s("<none>");
    }
    let conditions = arr_at(obj, &["status", "conditions"]);
    let ok = gates
        .iter()
        .filter(|g| {
            let kind = str_at(g, &["conditionType"]);
            conditions
                .iter()
                .find(|c| str_at(c, &["type"]) == kind)
                .is_some_and(|c| str_at(c, &["status"]) == Some("True"))
        })
        .count();
    s(format!("{ok}/{}", gates.len()))
}
