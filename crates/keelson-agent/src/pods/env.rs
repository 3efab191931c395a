//! A container's environment as upstream's kubelet builds it: `envFrom`, then `env` (values
//! with `$(VAR)` expansion, ConfigMap and Secret keys, pod fields, resources), resolved
//! without IO from a snapshot of the objects the pod references ([`Objects`]), which
//! [`fetch`] takes through a [`Source`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Node, ObjectFieldSelector, Pod, ResourceFieldSelector, Secret,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use keelson_apimachinery::quantity;
use kube::{Api, Client};

use super::spec::expand;

/// Why a container's environment (or a projected file) cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("{0}")]
    Fetch(String),
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
    #[error("unsupported container resource : {0}")]
    Resource(String),
    #[error("invalid divisor {divisor} for resource {resource}")]
    Divisor { resource: String, divisor: String },
}

/// Where ConfigMaps, Secrets and the node's allocatable resources come from.
#[async_trait]
pub trait Source: Send + Sync {
    /// The ConfigMap `namespace/name`; `Ok(None)` when it does not exist.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String>;
    /// The Secret `namespace/name`; `Ok(None)` when it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String>;
    /// The node's allocatable resources (the limits of a container that sets none).
    async fn allocatable(&self) -> BTreeMap<String, Quantity>;
}

/// [`Source`] through the API server.
pub struct ApiSource {
    pub client: Client,
    pub node: String,
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

#[async_trait]
impl Source for ApiSource {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        match api.get(name).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(format!("failed to get configmap {namespace}/{name}: {e}")),
        }
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match api.get(name).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(format!("failed to get secret {namespace}/{name}: {e}")),
        }
    }

    async fn allocatable(&self) -> BTreeMap<String, Quantity> {
        let api: Api<Node> = Api::all(self.client.clone());
        api.get(&self.node)
            .await
            .ok()
            .and_then(|n| n.status?.allocatable)
            .unwrap_or_default()
    }
}

/// The objects a pod references, as fetched at one moment (all in the pod's namespace).
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub config_maps: HashMap<String, Result<Option<ConfigMap>, String>>,
    pub secrets: HashMap<String, Result<Option<Secret>, String>>,
    pub allocatable: BTreeMap<String, Quantity>,
}

impl Objects {
    /// The ConfigMap `name`: `Ok(None)` if it does not exist (or was not fetched).
    pub fn config_map(&self, name: &str) -> Result<Option<&ConfigMap>, EnvError> {
        match self.config_maps.get(name) {
            Some(Ok(o)) => Ok(o.as_ref()),
            Some(Err(e)) => Err(EnvError::Fetch(e.clone())),
            None => Ok(None),
        }
    }

    /// The Secret `name`: `Ok(None)` if it does not exist (or was not fetched).
    pub fn secret(&self, name: &str) -> Result<Option<&Secret>, EnvError> {
        match self.secrets.get(name) {
            Some(Ok(o)) => Ok(o.as_ref()),
            Some(Err(e)) => Err(EnvError::Fetch(e.clone())),
            None => Ok(None),
        }
    }
}

/// The names of what a pod references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    pub config_maps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    /// Whether some resourceFieldRef may need the node's allocatable resources.
    pub resources: bool,
}

/// What the environment of container `c` references.
pub fn container_refs(c: &Container) -> Refs {
    let mut r = Refs::default();
    for f in c.env_from.iter().flatten() {
        if let Some(cm) = &f.config_map_ref {
            r.config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &f.secret_ref {
            r.secrets.insert(s.name.clone());
        }
    }
    for e in c.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(k) = &from.config_map_key_ref {
            r.config_maps.insert(k.name.clone());
        }
        if let Some(k) = &from.secret_key_ref {
            r.secrets.insert(k.name.clone());
        }
        r.resources |= from.resource_field_ref.is_some();
    }
    r
}

/// Fetches everything in `refs` from the pod's namespace.
pub async fn fetch(source: &dyn Source, namespace: &str, refs: &Refs) -> Objects {
    let mut o = Objects::default();
    for name in &refs.config_maps {
        o.config_maps
            .insert(name.clone(), source.config_map(namespace, name).await);
    }
    for name in &refs.secrets {
        o.secrets
            .insert(name.clone(), source.secret(namespace, name).await);
    }
    if refs.resources {
        o.allocatable = source.allocatable().await;
    }
    o
}

/// What the pod's fields do not say: its IP and its node's.
#[derive(Debug, Clone, Default)]
pub struct PodContext {
    pub pod_ip: Option<String>,
    pub host_ip: String,
}

/// A resolved environment, plus the envFrom keys skipped as invalid names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub env: Vec<(String, String)>,
    /// (`configMap` or `secret`, its name, the keys skipped).
    pub skipped: Vec<(String, String, Vec<String>)>,
}

/// Whether `name` may be an environment variable name (upstream's relaxed rule, on by default
/// since 1.32: printable ASCII without `=`).
pub fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
}

fn set(env: &mut Vec<(String, String)>, key: String, value: String) {
    match env.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key, value)),
    }
}

/// The environment of container `c` of `pod`.
pub fn resolve(
    pod: &Pod,
    c: &Container,
    objects: &Objects,
    ctx: &PodContext,
) -> Result<Resolved, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = Resolved::default();
    for f in c.env_from.iter().flatten() {
        let prefix = f.prefix.clone().unwrap_or_default();
        let mut pairs: Vec<(String, String)> = Vec::new();
        let (kind, name) = if let Some(r) = &f.config_map_ref {
            match objects.config_map(&r.name)? {
                Some(cm) => pairs.extend(cm.data.clone().unwrap_or_default()),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
            }
            ("configMap", r.name.clone())
        } else if let Some(r) = &f.secret_ref {
            match objects.secret(&r.name)? {
                Some(s) => pairs.extend(secret_data(s)),
                None if r.optional == Some(true) => continue,
                None => return Err(EnvError::SecretNotFound(r.name.clone())),
            }
            ("secret", r.name.clone())
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (k, v) in pairs {
            let key = format!("{prefix}{k}");
            if valid_env_name(&key) {
                set(&mut out.env, key, v);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            out.skipped.push((kind.to_string(), name, invalid));
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            let vars: HashMap<&str, &str> = out
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            expand(v, &vars)
        } else if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let Some(cm) = objects.config_map(&r.name)? else {
                    if optional {
                        continue;
                    }
                    return Err(EnvError::ConfigMapNotFound(r.name.clone()));
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => {
                        return Err(EnvError::ConfigMapKey {
                            key: r.key.clone(),
                            namespace: ns,
                            name: r.name.clone(),
                        });
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let Some(s) = objects.secret(&r.name)? else {
                    if optional {
                        continue;
                    }
                    return Err(EnvError::SecretNotFound(r.name.clone()));
                };
                match secret_data(s).remove(&r.key) {
                    Some(v) => v,
                    None if optional => continue,
                    None => {
                        return Err(EnvError::SecretKey {
                            key: r.key.clone(),
                            namespace: ns,
                            name: r.name.clone(),
                        });
                    }
                }
            } else if let Some(f) = &from.field_ref {
                field_value(pod, f, ctx)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(pod, Some(c), r, &objects.allocatable)?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut out.env, e.name.clone(), value);
    }
    Ok(out)
}

/// A Secret's data as text (values decoded, `stringData` folded in).
pub fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// A map as the downward API prints it: `k="v"` lines, sorted by key.
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `name` from a `metadata.labels['name']` style path (`prefix` is `metadata.labels`).
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

/// The value of a pod field, as the downward API gives it.
pub fn field_value(
    pod: &Pod,
    f: &ObjectFieldSelector,
    ctx: &PodContext,
) -> Result<String, EnvError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    let pod_ip = if host_network {
        Some(ctx.host_ip.clone())
    } else {
        ctx.pod_ip.clone().or_else(|| {
            pod.status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .filter(|ip| !ip.is_empty())
        })
    };
    let path = f.field_path.as_str();
    let v = match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(m.labels.as_ref()),
        "metadata.annotations" => format_map(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => pod_ip.unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone(),
        _ => {
            if let Some(k) = subscript(path, "metadata.labels") {
                m.labels
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(k) = subscript(path, "metadata.annotations") {
                m.annotations
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(EnvError::FieldPath(path.to_string()));
            }
        }
    };
    Ok(v)
}

/// The value of a container resource divided by its divisor, rounded up (upstream's rule);
/// limits left unset are the node's allocatable. `current` is the container an env var
/// belongs to (used when the selector names none).
pub fn resource_value(
    pod: &Pod,
    current: Option<&Container>,
    r: &ResourceFieldSelector,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, EnvError> {
    let name = r.container_name.as_deref().filter(|n| !n.is_empty());
    let c = match (name, current) {
        (Some(n), _) => pod.spec.as_ref().and_then(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .find(|c| c.name == n)
        }),
        (None, c) => c,
    };
    let Some(c) = c else {
        return Err(EnvError::Resource(r.resource.clone()));
    };
    let (list, res) = r
        .resource
        .split_once('.')
        .ok_or_else(|| EnvError::Resource(r.resource.clone()))?;
    let res_ = c.resources.as_ref();
    let from = match list {
        "limits" => res_.and_then(|x| x.limits.as_ref()),
        "requests" => res_.and_then(|x| x.requests.as_ref()),
        _ => return Err(EnvError::Resource(r.resource.clone())),
    };
    if !matches!(res, "cpu" | "memory" | "ephemeral-storage") && !res.starts_with("hugepages-") {
        return Err(EnvError::Resource(r.resource.clone()));
    }
    let mut value = from
        .and_then(|l| l.get(res))
        .and_then(|q| quantity::parse(&q.0));
    if value.is_none() && list == "limits" {
        value = allocatable.get(res).and_then(|q| quantity::parse(&q.0));
    }
    let value = value.unwrap_or(0);
    let divisor_text = r.divisor.as_ref().map_or("1", |q| q.0.as_str());
    let divisor = quantity::parse(divisor_text)
        .filter(|d| *d > 0)
        .ok_or_else(|| EnvError::Divisor {
            resource: r.resource.clone(),
            divisor: divisor_text.to_string(),
        })?;
    // Both are in milli-units; the quotient, rounded up, is the value.
    let q = value.div_euclid(divisor) + i128::from(value.rem_euclid(divisor) != 0);
    Ok(q.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn pod(env: serde_json::Value, env_from: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u1",
                "labels": {"app": "w", "tier": "a b"}, "annotations": {"note": "hi"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": [{
                "name": "c", "image": "busybox", "env": env, "envFrom": env_from,
                "resources": {"requests": {"cpu": "250m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
            }]},
        }))
        .unwrap()
    }

    fn objects() -> Objects {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cfg"},
            "data": {"color": "blue", "size": "3", "bad=key": "x"},
        }))
        .unwrap();
        let s = Secret {
            data: Some(BTreeMap::from([(
                "password".to_string(),
                ByteString(b"s3cret".to_vec()),
            )])),
            ..Default::default()
        };
        let mut o = Objects::default();
        o.config_maps.insert("cfg".into(), Ok(Some(cm)));
        o.config_maps.insert("gone".into(), Ok(None));
        o.secrets.insert("sec".into(), Ok(Some(s)));
        o.allocatable = BTreeMap::from([
            ("cpu".to_string(), Quantity("2".into())),
            ("memory".to_string(), Quantity("1Gi".into())),
        ]);
        o
    }

    /// Resolves `env`/`envFrom` for the test pod: the env, or the error's message.
    fn run(
        env: serde_json::Value,
        env_from: serde_json::Value,
    ) -> Result<Vec<(String, String)>, String> {
        let p = pod(env, env_from);
        let c = &p.spec.as_ref().unwrap().containers[0];
        let ctx = PodContext {
            pod_ip: Some("10.0.0.5".into()),
            host_ip: "192.168.1.2".into(),
        };
        resolve(&p, c, &objects(), &ctx)
            .map(|r| r.env)
            .map_err(|e| e.to_string())
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// What is checked, env, envFrom, and the env wanted (or the error's message).
    type Case = (
        &'static str,
        serde_json::Value,
        serde_json::Value,
        Result<Vec<(String, String)>, String>,
    );

    #[test]
    fn resolves_env_as_upstream() {
        let field = |p: &str| json!([{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": p}}}]);
        let res = |r: &str, d: Option<&str>| json!([{"name": "V", "valueFrom": {"resourceFieldRef": {"resource": r, "divisor": d}}}]);
        let ok = |v: &str| Ok(pairs(&[("V", v)]));
        let cases: Vec<Case> = vec![
            (
                "value with expansion",
                json!([{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)-$$(A)-$(Z)"}]),
                json!(null),
                Ok(pairs(&[("A", "1"), ("B", "1-$(A)-$(Z)")])),
            ),
            (
                "configMapKeyRef",
                json!([{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}}]),
                json!(null),
                ok("blue"),
            ),
            (
                "secretKeyRef is decoded",
                json!([{"name": "V", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}}]),
                json!(null),
                ok("s3cret"),
            ),
            (
                "missing configmap",
                json!([{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]),
                json!(null),
                Err("configmap \"gone\" not found".into()),
            ),
            (
                "unfetched configmap counts as missing",
                json!([{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}]),
                json!(null),
                Err("configmap \"x\" not found".into()),
            ),
            (
                "missing key",
                json!([{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]),
                json!(null),
                Err("couldn't find key k in ConfigMap ns1/cfg".into()),
            ),
            (
                "missing secret",
                json!([{"name": "V", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
                json!(null),
                Err("secret \"s\" not found".into()),
            ),
            (
                "missing secret key",
                json!([{"name": "V", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}}]),
                json!(null),
                Err("couldn't find key k in Secret ns1/sec".into()),
            ),
            (
                "optional references are skipped",
                json!([{"name": "V", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                    {"name": "W", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": true}}},
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": true}}}]),
                json!([{"configMapRef": {"name": "gone", "optional": true}}]),
                Ok(vec![]),
            ),
            (
                "envFrom with prefix, invalid keys skipped, env overrides",
                json!([{"name": "C_size", "value": "9"}, {"name": "D", "value": "$(C_color)"}]),
                json!([{"configMapRef": {"name": "cfg"}, "prefix": "C_"}, {"secretRef": {"name": "sec"}}]),
                Ok(pairs(&[
                    ("C_color", "blue"),
                    ("C_size", "9"),
                    ("password", "s3cret"),
                    ("D", "blue"),
                ])),
            ),
            (
                "envFrom missing configmap",
                json!(null),
                json!([{"configMapRef": {"name": "gone"}}]),
                Err("configmap \"gone\" not found".into()),
            ),
            (
                "fieldRef name",
                field("metadata.name"),
                json!(null),
                ok("web"),
            ),
            (
                "fieldRef namespace",
                field("metadata.namespace"),
                json!(null),
                ok("ns1"),
            ),
            ("fieldRef uid", field("metadata.uid"), json!(null), ok("u1")),
            (
                "fieldRef label",
                field("metadata.labels['app']"),
                json!(null),
                ok("w"),
            ),
            (
                "fieldRef missing label",
                field("metadata.labels['nope']"),
                json!(null),
                ok(""),
            ),
            (
                "fieldRef annotation",
                field("metadata.annotations['note']"),
                json!(null),
                ok("hi"),
            ),
            (
                "fieldRef labels",
                field("metadata.labels"),
                json!(null),
                ok("app=\"w\"\ntier=\"a b\""),
            ),
            (
                "fieldRef node",
                field("spec.nodeName"),
                json!(null),
                ok("n1"),
            ),
            (
                "fieldRef service account",
                field("spec.serviceAccountName"),
                json!(null),
                ok("sa"),
            ),
            (
                "fieldRef pod IP",
                field("status.podIP"),
                json!(null),
                ok("10.0.0.5"),
            ),
            (
                "fieldRef pod IPs",
                field("status.podIPs"),
                json!(null),
                ok("10.0.0.5"),
            ),
            (
                "fieldRef host IP",
                field("status.hostIP"),
                json!(null),
                ok("192.168.1.2"),
            ),
            (
                "fieldRef unknown",
                field("spec.bogus"),
                json!(null),
                Err("unsupported fieldPath: spec.bogus".into()),
            ),
            (
                "requests.cpu rounds up to cores",
                res("requests.cpu", None),
                json!(null),
                ok("1"),
            ),
            (
                "requests.cpu in millicores",
                res("requests.cpu", Some("1m")),
                json!(null),
                ok("250"),
            ),
            (
                "limits.memory in Mi",
                res("limits.memory", Some("1Mi")),
                json!(null),
                ok("64"),
            ),
            (
                "requests.memory in bytes",
                res("requests.memory", None),
                json!(null),
                ok("33554432"),
            ),
            (
                "unset limits.cpu is the node's",
                res("limits.cpu", None),
                json!(null),
                ok("2"),
            ),
        ];
        for (what, env, env_from, want) in cases {
            assert_eq!(run(env, env_from), want, "{what}");
        }
    }

    #[test]
    fn reports_skipped_env_from_keys() {
        let p = pod(json!(null), json!([{"configMapRef": {"name": "cfg"}}]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = resolve(&p, c, &objects(), &PodContext::default()).unwrap();
        assert_eq!(
            r.skipped,
            vec![(
                "configMap".to_string(),
                "cfg".to_string(),
                vec!["bad=key".to_string()]
            )]
        );
    }

    #[test]
    fn container_refs_name_what_env_needs() {
        let p = pod(
            json!([{"name": "V", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}},
                   {"name": "W", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]),
            json!([{"configMapRef": {"name": "cfg"}}]),
        );
        let r = container_refs(&p.spec.as_ref().unwrap().containers[0]);
        assert_eq!(r.config_maps, BTreeSet::from(["cfg".to_string()]));
        assert_eq!(r.secrets, BTreeSet::from(["sec".to_string()]));
        assert!(r.resources);
    }
}
