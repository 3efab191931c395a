//! NodeName: a pod that names its node fits only there.

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, Status};

pub const REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(want) if !want.is_empty() && want != node.name() => Status::unresolvable(REASON),
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plugins::test_util::{node, pod};

    fn check(node_name: Option<&str>, fits: bool) {
        let p = pod(json!({"spec": {"nodeName": node_name}}));
        let n = node(json!({"metadata": {"name": "a"}}));
        assert_eq!(NodeName.filter(&p, &n).is_success(), fits, "{node_name:?}");
    }

    #[test]
    fn matches_named_node_only() {
        check(None, true);
        check(Some("a"), true);
        check(Some("b"), false);
    }
}
