//! NodeResourcesFit: a pod fits where the node's allocatable CPU, memory, ephemeral storage,
//! pod count and extended resources cover what its pods already request plus what it asks;
//! scoring is LeastAllocated (the emptier node scores higher).

use crate::framework::{
    Code, FilterPlugin, MAX_NODE_SCORE, NodeInfo, PodInfo, ScorePlugin, Status,
};

pub struct NodeResourcesFit;

/// One resource that does not fit, as upstream reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insufficient {
    pub reason: String,
    /// The pod asks for more than the node has at all: preemption cannot help.
    pub unresolvable: bool,
}

/// Every resource of `node` that cannot take `pod`, in upstream's order.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<Insufficient> {
    let mut out = Vec::new();
    let alloc = &node.allocatable;
    let used = &node.requested;
    let want = &pod.requests;
    if node.pods.len() as i64 + 1 > alloc.pods {
        out.push(Insufficient {
            reason: "Too many pods".into(),
            unresolvable: false,
        });
    }
    let mut check = |name: &str, want: i64, used: i64, alloc: i64| {
        if want > 0 && want > alloc - used {
            out.push(Insufficient {
                reason: format!("Insufficient {name}"),
                unresolvable: want > alloc,
            });
        }
    };
    check("cpu", want.milli_cpu, used.milli_cpu, alloc.milli_cpu);
    check("memory", want.memory, used.memory, alloc.memory);
    check(
        "ephemeral-storage",
        want.ephemeral_storage,
        used.ephemeral_storage,
        alloc.ephemeral_storage,
    );
    for (name, &w) in &want.scalar {
        let u = used.scalar.get(name).copied().unwrap_or(0);
        let a = alloc.scalar.get(name).copied().unwrap_or(0);
        check(name, w, u, a);
    }
    out
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Status {
        let missing = insufficient(pod, node);
        if missing.is_empty() {
            return Status::success();
        }
        let code = if missing.iter().any(|m| m.unresolvable) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Status {
            code,
            reasons: missing.into_iter().map(|m| m.reason).collect(),
        }
    }
}

/// LeastAllocated for one resource: the share of the node left free after the pod, 0..=100.
fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

impl ScorePlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    /// LeastAllocated over CPU and memory, weight 1 each, with non-zero default requests.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let used = &node.non_zero_requested;
        let want = &pod.non_zero_requests;
        let alloc = &node.allocatable;
        let cpu = least_allocated(used.milli_cpu + want.milli_cpu, alloc.milli_cpu);
        let mem = least_allocated(used.memory + want.memory, alloc.memory);
        (cpu + mem) / 2
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::plugins::test_util::{node, pod};

    fn requesting(name: &str, requests: Value) -> PodInfo {
        pod(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}]}}))
    }

    fn small_node(existing: &[Value]) -> NodeInfo {
        let mut n = node(json!({"status": {"allocatable": {
            "cpu": "2", "memory": "4Gi", "pods": "3", "example.com/gpu": "1"}}}));
        for (i, r) in existing.iter().enumerate() {
            n.add_pod(requesting(&format!("e{i}"), r.clone()));
        }
        n
    }

    fn check(existing: &[Value], want: Value, reasons: &[&str], code: Code) {
        let n = small_node(existing);
        let s = NodeResourcesFit.filter(&requesting("new", want.clone()), &n);
        assert_eq!(s.reasons, reasons, "{existing:?} + {want}");
        assert_eq!(s.code, code, "{existing:?} + {want}");
    }

    #[test]
    fn filter_by_requests() {
        use Code::*;
        check(&[], json!({"cpu": "1", "memory": "1Gi"}), &[], Success);
        check(
            &[json!({"memory": "3Gi"})],
            json!({"memory": "1Gi"}),
            &[],
            Success,
        );
        check(
            &[json!({"memory": "3Gi"})],
            json!({"memory": "2Gi"}),
            &["Insufficient memory"],
            Unschedulable,
        );
        check(
            &[],
            json!({"memory": "5Gi"}),
            &["Insufficient memory"],
            UnschedulableAndUnresolvable,
        );
        check(
            &[json!({"cpu": "1500m", "memory": "3Gi"})],
            json!({"cpu": "1", "memory": "2Gi"}),
            &["Insufficient cpu", "Insufficient memory"],
            Unschedulable,
        );
        check(
            &[json!({}), json!({}), json!({})],
            json!({}),
            &["Too many pods"],
            Unschedulable,
        );
        check(
            &[],
            json!({"example.com/gpu": "2"}),
            &["Insufficient example.com/gpu"],
            UnschedulableAndUnresolvable,
        );
        check(&[], json!({"example.com/gpu": "1"}), &[], Success);
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let p = requesting("new", json!({"cpu": "500m", "memory": "1Gi"}));
        let empty = small_node(&[]);
        let busy = small_node(&[json!({"cpu": "1", "memory": "2Gi"})]);
        let (a, b) = (
            NodeResourcesFit.score(&p, &empty),
            NodeResourcesFit.score(&p, &busy),
        );
        // empty: cpu (2000-500)/2000 = 75, memory (4-1)/4 = 75; busy: 25 and 25.
        assert_eq!((a, b), (75, 25));
    }
}
