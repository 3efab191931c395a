//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, Status};
use crate::plugins::taint_toleration::tolerates;

pub const REASON: &str = "node(s) were unschedulable";
pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Status {
        let cordoned = node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if !cordoned {
            return Status::success();
        }
        let taint = Taint {
            key: TAINT_KEY.into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        let tolerations = pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref());
        if tolerations
            .unwrap_or_default()
            .iter()
            .any(|t| tolerates(t, &taint))
        {
            Status::success()
        } else {
            Status::unresolvable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::test_util::{node, pod};

    fn check(unschedulable: bool, tolerations: serde_json::Value, fits: bool) {
        let p = pod(json!({"spec": {"tolerations": tolerations}}));
        let n = node(json!({"spec": {"unschedulable": unschedulable}}));
        assert_eq!(
            NodeUnschedulable.filter(&p, &n).is_success(),
            fits,
            "{unschedulable} {tolerations}"
        );
    }

    #[test]
    fn cordoned_nodes_need_a_toleration() {
        check(false, json!([]), true);
        check(true, json!([]), false);
        check(
            true,
            json!([{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]),
            true,
        );
        check(true, json!([{"operator": "Exists"}]), true);
        check(
            true,
            json!([{"key": TAINT_KEY, "operator": "Exists", "effect": "NoExecute"}]),
            false,
        );
    }
}
