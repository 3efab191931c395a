//! Admission: namespace lifecycle, and the Service addresses the apiserver allocates
//! (ClusterIPs from the service CIDR, NodePorts from their range).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use keelson_apimachinery::{ApiError, FieldError};
use keelson_kinds::Kind;
use serde_json::{Value, json};

use crate::{Api, keys, meta};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Refuses creating in a namespace that does not exist or is being deleted.
pub async fn namespace_lifecycle(
    api: &Api,
    kind: &Kind,
    namespace: Option<&str>,
    name: &str,
) -> Result<()> {
    let Some(ns) = namespace.filter(|_| kind.namespaced) else {
        return Ok(());
    };
    let Some(ns_kind) = keelson_kinds::lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    let cache = api
        .cache
        .resource(ns_kind)
        .ok_or_else(|| ApiError::internal("no namespace cache"))?;
    let key = keys::object_key(ns_kind, None, ns);
    let found = match cache.get(&key) {
        Some(o) => Some(o),
        None => {
            api.cache.wait_fresh().await?;
            cache.get(&key)
        }
    };
    match found {
        None => Err(ApiError::not_found("namespaces", ns)),
        Some(o)
            if meta::deletion_timestamp(&o.value).is_some()
                && !matches!(kind.plural, "events" | "leases") =>
        {
            Err(ApiError::forbidden(
                &kind.qualified_resource(),
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ))
        }
        Some(_) => Ok(()),
    }
}

/// The address ranges Services draw from.
pub struct ServiceAllocator {
    base: u32,
    size: u32,
    /// The lower band of the range, kept for addresses asked for by value (as upstream does).
    static_band: u32,
    ports: (u16, u16),
    state: Mutex<AllocState>,
}

#[derive(Default)]
struct AllocState {
    ips: HashSet<u32>,
    ports: HashSet<u16>,
}

/// What one write reserved: released if the write fails.
#[must_use]
pub struct Allocation<'a> {
    alloc: Option<&'a ServiceAllocator>,
    ips: Vec<u32>,
    ports: Vec<u16>,
}

impl Allocation<'_> {
    fn none() -> Self {
        Allocation {
            alloc: None,
            ips: Vec::new(),
            ports: Vec::new(),
        }
    }

    /// Keeps what was reserved.
    pub fn commit(self) {}

    /// Gives back what was reserved.
    pub fn release(self) {
        if let Some(a) = self.alloc {
            let mut s = a.state.lock().unwrap_or_else(|e| e.into_inner());
            for ip in &self.ips {
                s.ips.remove(ip);
            }
            for p in &self.ports {
                s.ports.remove(p);
            }
        }
    }
}

impl ServiceAllocator {
    /// `cidr` like `10.43.0.0/16`; `ports` like 30000..=32767.
    pub fn new(cidr: &str, ports: (u16, u16)) -> anyhow::Result<Self> {
        let (ip, bits) = cidr
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("service CIDR {cidr:?} has no prefix length"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|e| anyhow::anyhow!("service CIDR {cidr:?}: {e}"))?;
        let bits: u32 = bits
            .parse()
            .map_err(|e| anyhow::anyhow!("service CIDR {cidr:?}: {e}"))?;
        if !(8..=30).contains(&bits) {
            anyhow::bail!("service CIDR {cidr:?}: prefix length must be between 8 and 30");
        }
        let size = 1u32 << (32 - bits);
        let base = u32::from(ip) & !(size - 1);
        let static_band = (size / 16).clamp(16, 256);
        Ok(ServiceAllocator {
            base,
            size,
            static_band,
            ports,
            state: Mutex::new(AllocState::default()),
        })
    }

    /// The first usable address (the `kubernetes` Service's).
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The address at `offset` in the range (e.g. 10 for cluster DNS).
    pub fn ip_at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + offset)
    }

    /// Marks the addresses of an existing Service as used (at start-up).
    pub fn seed(&self, svc: &Value) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = cluster_ip(svc).and_then(|ip| self.offset(ip)) {
            s.ips.insert(ip);
        }
        for p in node_ports(svc) {
            s.ports.insert(p);
        }
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let v = u32::from(ip);
        (v > self.base && v < self.base + self.size - 1).then_some(v - self.base)
    }

    fn take_ip(&self, want: Option<Ipv4Addr>, field: &str) -> Result<u32> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = want {
            let Some(off) = self.offset(ip) else {
                return Err(invalid_svc(FieldError::invalid(
                    field,
                    ip.to_string(),
                    &format!(
                        "provided IP is not in the valid range. The range of valid IPs is {}/{}",
                        Ipv4Addr::from(self.base),
                        32 - self.size.trailing_zeros()
                    ),
                )));
            };
            if !s.ips.insert(off) {
                return Err(invalid_svc(FieldError::invalid(
                    field,
                    ip.to_string(),
                    "provided IP is already allocated",
                )));
            }
            return Ok(off);
        }
        use rand::Rng;
        let mut rng = rand::rng();
        let usable = self.size - 2;
        // Dynamic allocations come from above the static band first, then anywhere.
        let (lo, hi) = if usable > self.static_band {
            (self.static_band + 1, self.size - 2)
        } else {
            (1, self.size - 2)
        };
        let start = rng.random_range(lo..=hi);
        for i in 0..=(hi - lo) {
            let off = lo + (start - lo + i) % (hi - lo + 1);
            if s.ips.insert(off) {
                return Ok(off);
            }
        }
        for off in 1..lo {
            if s.ips.insert(off) {
                return Ok(off);
            }
        }
        Err(ApiError::internal(
            "failed to allocate a serviceIP: range is full",
        ))
    }

    fn take_port(&self, want: Option<u16>, field: &str) -> Result<u16> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (lo, hi) = self.ports;
        if let Some(p) = want {
            if p < lo || p > hi {
                return Err(invalid_svc(FieldError::invalid(
                    field,
                    p,
                    &format!(
                        "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                    ),
                )));
            }
            if !s.ports.insert(p) {
                return Err(invalid_svc(FieldError::invalid(
                    field,
                    p,
                    "provided port is already allocated",
                )));
            }
            return Ok(p);
        }
        use rand::Rng;
        let span = (hi - lo) as u32 + 1;
        let start = rand::rng().random_range(0..span);
        for i in 0..span {
            let p = lo + ((start + i) % span) as u16;
            if s.ports.insert(p) {
                return Ok(p);
            }
        }
        Err(ApiError::internal(
            "failed to allocate a nodePort: range is full",
        ))
    }

    fn release_ip(&self, ip: Ipv4Addr) {
        if let Some(off) = self.offset(ip) {
            self.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ips
                .remove(&off);
        }
    }

    fn release_port(&self, p: u16) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ports
            .remove(&p);
    }
}

fn invalid_svc(e: FieldError) -> ApiError {
    ApiError::invalid("Service", "", &[e])
}

fn cluster_ip(svc: &Value) -> Option<Ipv4Addr> {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn node_ports(svc: &Value) -> Vec<u16> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
                .map(|p| p as u16)
                .collect()
        })
        .unwrap_or_default()
}

fn svc_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

/// Reserves what a Service needs: its ClusterIP and, for NodePort and LoadBalancer, a node port
/// per port. On update, what the old object had is kept.
pub fn allocate<'a>(
    api: &'a Api,
    kind: &Kind,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Allocation<'a>> {
    if kind.kind != "Service" || !kind.group.is_empty() {
        return Ok(Allocation::none());
    }
    let name = meta::name(obj).unwrap_or("").to_string();
    let alloc = &api.services;
    let mut out = Allocation {
        alloc: Some(alloc),
        ips: Vec::new(),
        ports: Vec::new(),
    };
    let result = allocate_into(alloc, obj, old, &mut out);
    match result {
        Ok(()) => Ok(out),
        Err(mut e) => {
            out.release();
            e.message = e
                .message
                .replacen("Service \"\"", &format!("Service {name:?}"), 1);
            Err(e)
        }
    }
}

fn allocate_into(
    alloc: &ServiceAllocator,
    obj: &mut Value,
    old: Option<&Value>,
    out: &mut Allocation<'_>,
) -> Result<()> {
    let ty = svc_type(obj).to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if ty == "ExternalName" {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
        return Ok(());
    }
    // ClusterIP: kept from the old object; else the one asked for; else a free one.
    let old_ip = old
        .and_then(|o| o.pointer("/spec/clusterIP"))
        .and_then(Value::as_str)
        .map(String::from);
    let asked = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    let ip = match (old_ip, asked) {
        (Some(o), Some(a)) if o != a => {
            return Err(invalid_svc(FieldError::invalid(
                "spec.clusterIPs[0]",
                a.as_str(),
                "may not change once set",
            )));
        }
        (Some(o), _) => o,
        (None, Some(a)) if a == "None" => a,
        (None, Some(a)) => {
            let ip: Ipv4Addr = a.parse().map_err(|_| {
                invalid_svc(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    a.as_str(),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ))
            })?;
            out.ips.push(alloc.take_ip(Some(ip), "spec.clusterIPs[0]")?);
            a
        }
        (None, None) => {
            let off = alloc.take_ip(None, "spec.clusterIPs[0]")?;
            out.ips.push(off);
            Ipv4Addr::from(alloc.base + off).to_string()
        }
    };
    spec.insert("clusterIP".into(), json!(ip));
    spec.insert("clusterIPs".into(), json!([ip]));
    if ip != "None" || spec.get("ipFamilies").is_none() {
        spec.insert("ipFamilies".into(), json!(["IPv4"]));
    }
    spec.entry("ipFamilyPolicy")
        .or_insert_with(|| json!("SingleStack"));
    // Node ports.
    let wants_node_ports = ty == "NodePort"
        || (ty == "LoadBalancer"
            && spec
                .get("allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false));
    let old_ports: Vec<Value> = old
        .and_then(|o| o.pointer("/spec/ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let old_np: HashSet<u16> = old
        .map(node_ports)
        .unwrap_or_default()
        .into_iter()
        .collect();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for (i, p) in ports.iter_mut().enumerate() {
            let Some(pm) = p.as_object_mut() else {
                continue;
            };
            if !wants_node_ports {
                pm.remove("nodePort");
                continue;
            }
            let field = format!("spec.ports[{i}].nodePort");
            let asked = pm.get("nodePort").and_then(Value::as_u64).map(|v| v as u16);
            let kept = old_ports
                .iter()
                .find(|op| {
                    op.get("port") == pm.get("port") && op.get("protocol") == pm.get("protocol")
                })
                .and_then(|op| op.get("nodePort").and_then(Value::as_u64))
                .map(|v| v as u16);
            let port = match (asked, kept) {
                (Some(a), _) if old_np.contains(&a) => a,
                (Some(a), _) => {
                    let p = alloc.take_port(Some(a), &field)?;
                    out.ports.push(p);
                    p
                }
                (None, Some(k)) => k,
                (None, None) => {
                    let p = alloc.take_port(None, &field)?;
                    out.ports.push(p);
                    p
                }
            };
            pm.insert("nodePort".into(), json!(port));
        }
    }
    Ok(())
}

/// Whether a Service of this shape holds node ports (upstream's `needsNodePort`).
fn needs_node_ports(svc: &Value) -> bool {
    match svc_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => {
            svc.pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false)
        }
        _ => false,
    }
}

/// PrepareForUpdate of Services (upstream's `dropTypeDependentFields`): when an update moves a
/// Service to a type that no longer uses a field the old type used (node ports, the health
/// check node port, `allocateLoadBalancerNodePorts`, `loadBalancerClass`,
/// `externalTrafficPolicy`; the ClusterIP for ExternalName), and the update left the field as
/// it was, the field is dropped instead of failing validation; a value the user changed in
/// the same update is kept, so validation still refuses it. Runs before validation.
pub fn drop_type_dependent_fields(kind: &Kind, obj: &mut Value, old: &Value) {
    if kind.kind != "Service" || !kind.group.is_empty() {
        return;
    }
    let new_ty = svc_type(obj).to_string();
    let new_needs_node_ports = needs_node_ports(obj);
    let old_np: HashSet<u16> = node_ports(old).into_iter().collect();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let old_spec = old.get("spec");
    let same = |spec: &serde_json::Map<String, Value>, f: &str| {
        spec.get(f) == old_spec.and_then(|s| s.get(f))
    };
    let load_balancer = new_ty == "LoadBalancer";
    let externally_accessible = matches!(new_ty.as_str(), "NodePort" | "LoadBalancer")
        || (new_ty == "ClusterIP"
            && spec
                .get("externalIPs")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()));
    if new_ty == "ExternalName" && svc_type(old) != "ExternalName" {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if same(spec, f) {
                spec.remove(f);
            }
        }
        if same(spec, "internalTrafficPolicy") {
            spec.remove("internalTrafficPolicy");
        }
    }
    if needs_node_ports(old) && !new_needs_node_ports {
        let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
        let unchanged = ports.as_ref().is_none_or(|ps| {
            ps.iter().all(|p| {
                p.get("nodePort")
                    .and_then(Value::as_u64)
                    .is_none_or(|n| n == 0 || old_np.contains(&(n as u16)))
            })
        });
        if unchanged {
            for p in ports.into_iter().flatten() {
                if let Some(pm) = p.as_object_mut() {
                    pm.remove("nodePort");
                }
            }
        }
    }
    let old_needs_hc = svc_type(old) == "LoadBalancer"
        && old
            .pointer("/spec/externalTrafficPolicy")
            .and_then(Value::as_str)
            == Some("Local");
    let new_needs_hc =
        load_balancer && spec.get("externalTrafficPolicy").and_then(Value::as_str) == Some("Local");
    if old_needs_hc && !new_needs_hc && same(spec, "healthCheckNodePort") {
        spec.remove("healthCheckNodePort");
    }
    if !load_balancer {
        for f in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            if same(spec, f) {
                spec.remove(f);
            }
        }
    }
    if !externally_accessible && same(spec, "externalTrafficPolicy") {
        spec.remove("externalTrafficPolicy");
    }
}

/// Releases what an old object held and the new one (None: deleted) no longer does.
pub fn after_write(api: &Api, kind: &Kind, old: Option<&Value>, new: Option<&Value>) {
    if kind.kind != "Service" || !kind.group.is_empty() {
        return;
    }
    let Some(old) = old else { return };
    let alloc = &api.services;
    let new_ip = new.and_then(cluster_ip);
    if let Some(ip) = cluster_ip(old)
        && new_ip != Some(ip)
    {
        alloc.release_ip(ip);
    }
    let keep: HashSet<u16> = new
        .map(node_ports)
        .unwrap_or_default()
        .into_iter()
        .collect();
    for p in node_ports(old) {
        if !keep.contains(&p) {
            alloc.release_port(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_hands_out_an_address_twice() {
        let a = ServiceAllocator::new("10.43.0.0/24", (30000, 30009)).unwrap();
        let mut seen = HashSet::new();
        for _ in 0..(254 - 1) {
            let off = a.take_ip(None, "f").unwrap();
            assert!(seen.insert(off), "offset {off} handed out twice");
        }
        let mut ports = HashSet::new();
        for _ in 0..10 {
            assert!(ports.insert(a.take_port(None, "f").unwrap()));
        }
        let err = a.take_port(None, "f").unwrap_err();
        assert!(err.message.contains("range is full"), "{}", err.message);
        a.release_port(30003);
        assert_eq!(a.take_port(None, "f").unwrap(), 30003);
    }

    #[test]
    fn asked_for_addresses_are_checked() {
        let a = ServiceAllocator::new("10.43.0.0/16", (30000, 32767)).unwrap();
        assert_eq!(
            a.take_ip(Some("10.43.0.10".parse().unwrap()), "f").unwrap(),
            10
        );
        let e = a
            .take_ip(Some("10.43.0.10".parse().unwrap()), "f")
            .unwrap_err();
        assert!(
            e.message.contains("provided IP is already allocated"),
            "{}",
            e.message
        );
        let e = a
            .take_ip(Some("10.44.0.1".parse().unwrap()), "f")
            .unwrap_err();
        assert!(
            e.message.contains("not in the valid range"),
            "{}",
            e.message
        );
        let e = a.take_port(Some(80), "spec.ports[0].nodePort").unwrap_err();
        assert!(e.message.contains("30000-32767"), "{}", e.message);
    }
}
