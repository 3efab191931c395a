//! Resource quantities and the requests of pods: what NodeResourcesFit counts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use keelson_apimachinery::quantity;

/// CPU a container without a CPU request counts as when scoring (upstream's non-zero default).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request counts as when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler tracks, in their base units (millicores for CPU,
/// bytes for memory and ephemeral storage, counts for the rest).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// How many pods (only meaningful for a node's allocatable).
    pub pods: i64,
    /// Extended resources (`example.com/gpu`, `hugepages-2Mi`, ...), by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a resource list (`requests`, `limits`, `allocatable`); unparsable quantities count
    /// as zero.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = milli_value(q).unwrap_or(0),
            "memory" => self.memory = value(q).unwrap_or(0),
            "ephemeral-storage" => self.ephemeral_storage = value(q).unwrap_or(0),
            "pods" => self.pods = value(q).unwrap_or(0),
            other if is_scalar(other) => {
                self.scalar.insert(other.to_string(), value(q).unwrap_or(0));
            }
            _ => {}
        }
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts `other` from `self`.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each resource the larger of `self` and `other`.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// Whether a resource name is an extended (scalar) resource the scheduler counts.
fn is_scalar(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-")
}

/// The requests of one container (its limits where it has no request, as upstream defaults).
fn container_requests(c: &Container) -> Resources {
    let Some(res) = &c.resources else {
        return Resources::default();
    };
    let mut list = res.limits.clone().unwrap_or_default();
    if let Some(req) = &res.requests {
        list.extend(req.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Resources::from_list(&list)
}

/// What a pod requests: its containers (and sidecars) summed, at least as much as any init
/// container needs, plus its overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    pod_requests_with(pod, |r| r)
}

/// Like [`pod_requests`], but a container asking for no CPU or memory counts as asking for
/// upstream's non-zero defaults (100m, 200Mi); this is what scoring uses.
pub fn pod_requests_non_zero(pod: &Pod) -> Resources {
    pod_requests_with(pod, |mut r| {
        if r.milli_cpu == 0 {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if r.memory == 0 {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
        r
    })
}

fn pod_requests_with(pod: &Pod, per_container: impl Fn(Resources) -> Resources) -> Resources {
    let Some(spec) = &pod.spec else {
        return Resources::default();
    };
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&per_container(container_requests(c)));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = per_container(container_requests(c));
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            sum.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut need = sidecars.clone();
            need.add(&r);
            init_max.max_with(&need);
        }
    }
    sum.max_with(&init_max);
    if let Some(overhead) = &spec.overhead {
        sum.add(&Resources::from_list(overhead));
    }
    sum
}

/// A quantity in thousandths of its unit, rounded up (`"100m"` → 100, `"1"` → 1000).
pub fn milli_value(q: &Quantity) -> Option<i64> {
    quantity::parse(&q.0).and_then(|m| i64::try_from(m).ok())
}

/// A quantity in its unit, rounded up (`"1Gi"` → 1073741824, `"1500m"` → 2).
pub fn value(q: &Quantity) -> Option<i64> {
    quantity::parse(&q.0).and_then(|m| i64::try_from((m + 999).div_euclid(1000)).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: &str, milli: Option<i64>, units: Option<i64>) {
        let q = Quantity(q.to_string());
        assert_eq!(milli_value(&q), milli, "milli of {}", q.0);
        assert_eq!(value(&q), units, "value of {}", q.0);
    }

    #[test]
    fn quantities() {
        check("100m", Some(100), Some(1));
        check("1", Some(1000), Some(1));
        check("2.5", Some(2500), Some(3));
        check("1Gi", Some(1_073_741_824_000), Some(1_073_741_824));
        check("8Gi", Some(8_589_934_592_000), Some(8_589_934_592));
        check("128974848", Some(128_974_848_000), Some(128_974_848));
        check("129e6", Some(129_000_000_000), Some(129_000_000));
        check("123Mi", Some(128_974_848_000), Some(128_974_848));
        check("1k", Some(1_000_000), Some(1000));
        check("0.1", Some(100), Some(1));
        check("1u", Some(1), Some(1));
        check("0", Some(0), Some(0));
        check("bogus", None, None);
        check("1Zi", None, None);
        check("", None, None);
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("pod")
    }

    #[test]
    fn pod_requests_sum_containers_and_cover_init_containers() {
        let p = pod(serde_json::json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "200m"}}},
            ],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "2", "memory": "10Mi"}}},
            ],
            "overhead": {"cpu": "10m"},
        }}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 2010);
        assert_eq!(r.memory, 1 << 30);
        let empty = pod(serde_json::json!({"spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(pod_requests(&empty), Resources::default());
        let nz = pod_requests_non_zero(&empty);
        assert_eq!((nz.milli_cpu, nz.memory), (100, 200 << 20));
    }
}
