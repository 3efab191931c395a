//! TaintToleration: a node's NoSchedule and NoExecute taints keep off pods that do not
//! tolerate them; PreferNoSchedule taints lower a node's score.

use k8s_openapi::api::core::v1::{Taint, Toleration};
pub use keelson_kinds::placement::tolerates;

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Status, default_normalize};

pub struct TaintToleration;

fn taints(node: &NodeInfo) -> &[Taint] {
    node.node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Status {
        let tols = tolerations(pod);
        let untolerated = taints(node).iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute")
                && !tols.iter().any(|tol| tolerates(tol, t))
        });
        match untolerated {
            None => Status::success(),
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    /// How many PreferNoSchedule taints the pod does not tolerate.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let tols: Vec<&Toleration> = tolerations(pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .collect();
        let n = taints(node)
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tols.iter().any(|tol| tolerates(tol, t)))
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::test_util::{node, pod};

    fn check(taints: Value, tolerations: Value, want: Result<(), &str>) {
        let p = pod(json!({"spec": {"tolerations": tolerations}}));
        let n = node(json!({"spec": {"taints": taints}}));
        let s = TaintToleration.filter(&p, &n);
        match want {
            Ok(()) => assert!(s.is_success(), "{taints} {tolerations}: {s:?}"),
            Err(reason) => assert_eq!(
                s.reasons,
                vec![reason.to_string()],
                "{taints} {tolerations}"
            ),
        }
    }

    #[test]
    fn filter_by_taints() {
        let gpu = json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]);
        let msg = "node(s) had untolerated taint {gpu: true}";
        check(json!([]), json!([]), Ok(()));
        check(gpu.clone(), json!([]), Err(msg));
        check(
            gpu.clone(),
            json!([{"key": "gpu", "operator": "Equal", "value": "true"}]),
            Ok(()),
        );
        check(
            gpu.clone(),
            json!([{"key": "gpu", "value": "false"}]),
            Err(msg),
        );
        check(
            gpu.clone(),
            json!([{"key": "gpu", "operator": "Exists"}]),
            Ok(()),
        );
        check(gpu.clone(), json!([{"operator": "Exists"}]), Ok(()));
        check(
            gpu.clone(),
            json!([{"key": "gpu", "operator": "Exists", "effect": "NoExecute"}]),
            Err(msg),
        );
        check(
            json!([{"key": "x", "effect": "NoExecute"}]),
            json!([]),
            Err("node(s) had untolerated taint {x: }"),
        );
        check(
            json!([{"key": "x", "effect": "PreferNoSchedule"}]),
            json!([]),
            Ok(()),
        );
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let p = pod(json!({}));
        let clean = node(json!({}));
        let tainted =
            node(json!({"spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}}));
        let mut scores = vec![
            TaintToleration.score(&p, &clean),
            TaintToleration.score(&p, &tainted),
        ];
        TaintToleration.normalize(&mut scores);
        assert_eq!(scores, vec![100, 0]);
    }
}
