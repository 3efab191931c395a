//! Discovery documents built from the table of kinds: `/api`, `/apis`, `/api/v1`,
//! `/apis/<group>/<version>`, and aggregated discovery (apidiscovery.k8s.io/v2) on `/api` and
//! `/apis` when the client's `Accept` asks for it.

use std::collections::BTreeMap;

use bytes::Bytes;
use keelson_kinds::{Kind, Subresource};
use serde_json::{Value, json};

/// The media type of aggregated discovery, echoed back as the response's Content-Type.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Every discovery document, rendered once.
pub struct Discovery {
    pub api_versions: Bytes,
    pub groups: Bytes,
    /// `"" -> {"v1": doc}`, `"apps" -> {"v1": doc}`.
    pub resource_lists: BTreeMap<String, BTreeMap<String, Bytes>>,
    /// `/apis/<group>` documents.
    pub group_docs: BTreeMap<String, Bytes>,
    pub aggregated_core: Value,
    pub aggregated_groups: Value,
}

fn sub_info(kind: &Kind, sub: Subresource) -> (Value, Vec<&'static str>) {
    let gvk = |g: &str, v: &str, k: &str| json!({"group": g, "version": v, "kind": k});
    match sub {
        Subresource::Status => (
            gvk(kind.group, kind.version, kind.kind),
            vec!["get", "patch", "update"],
        ),
        Subresource::Scale => (
            gvk("autoscaling", "v1", "Scale"),
            vec!["get", "patch", "update"],
        ),
        Subresource::Binding => (gvk("", "v1", "Binding"), vec!["create"]),
        Subresource::Eviction => (gvk("policy", "v1", "Eviction"), vec!["create"]),
        Subresource::Log => (gvk("", "v1", "Pod"), vec!["get"]),
        Subresource::Exec => (gvk("", "v1", "PodExecOptions"), vec!["create", "get"]),
        Subresource::Attach => (gvk("", "v1", "PodAttachOptions"), vec!["create", "get"]),
        Subresource::PortForward => (
            gvk("", "v1", "PodPortForwardOptions"),
            vec!["create", "get"],
        ),
        Subresource::Proxy => {
            let k = match kind.kind {
                "Pod" => "PodProxyOptions",
                "Service" => "ServiceProxyOptions",
                _ => "NodeProxyOptions",
            };
            (
                gvk("", "v1", k),
                vec!["create", "delete", "get", "patch", "update"],
            )
        }
        Subresource::Finalize => (gvk("", "v1", "Namespace"), vec!["update"]),
    }
}

/// The API groups in the order upstream's API server lists them (`/apis`); groups not named
/// here follow in table order.
const GROUP_ORDER: &[&str] = &[
    "",
    "apiregistration.k8s.io",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "networking.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "resource.k8s.io",
    "metrics.k8s.io",
];

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

impl Discovery {
    pub fn new(kinds: &'static [Kind], server_address: &str) -> Discovery {
        // Groups in table order, versions in table order (the preferred one first).
        let mut order: Vec<(&str, Vec<&str>)> = Vec::new();
        for k in kinds {
            match order.iter_mut().find(|(g, _)| *g == k.group) {
                Some((_, vs)) => {
                    if !vs.contains(&k.version) {
                        vs.push(k.version);
                    }
                }
                None => order.push((k.group, vec![k.version])),
            }
        }
        for (g, vs) in &mut order {
            let pref = keelson_kinds::preferred_version(g);
            vs.sort_by_key(|v| (*v != pref, version_rank(v)));
        }
        // Groups in upstream's order (its API group priorities), which is also the order
        // `kubectl get all` prints the kinds of the "all" category in.
        order.sort_by_key(|(g, _)| {
            GROUP_ORDER
                .iter()
                .position(|x| x == g)
                .unwrap_or(GROUP_ORDER.len())
        });
        let mut resource_lists: BTreeMap<String, BTreeMap<String, Bytes>> = BTreeMap::new();
        let mut legacy_groups = Vec::new();
        let mut group_docs = BTreeMap::new();
        let mut agg_groups = Vec::new();
        let mut agg_core = Value::Null;
        for (g, vs) in &order {
            let mut agg_versions = Vec::new();
            for v in vs {
                let mut resources = Vec::new();
                let mut agg_resources = Vec::new();
                // Resources by name, each followed by its subresources by name, as upstream
                // lists them.
                let mut in_version: Vec<&Kind> = kinds
                    .iter()
                    .filter(|k| k.group == *g && k.version == *v)
                    .collect();
                in_version.sort_by_key(|k| k.plural);
                for k in in_version {
                    let scope = if k.namespaced {
                        "Namespaced"
                    } else {
                        "Cluster"
                    };
                    let mut r = json!({
                        "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
                        "kind": k.kind, "verbs": k.verbs,
                    });
                    if !k.short_names.is_empty() {
                        r["shortNames"] = json!(k.short_names);
                    }
                    if !k.categories.is_empty() {
                        r["categories"] = json!(k.categories);
                    }
                    resources.push(r);
                    let mut agg_subs = Vec::new();
                    let mut subresources = k.subresources.to_vec();
                    subresources.sort_by_key(|s| s.name());
                    for s in subresources {
                        let (gvk, verbs) = sub_info(k, s);
                        let mut sr = json!({"name": format!("{}/{}", k.plural, s.name()), "singularName": "", "namespaced": k.namespaced, "kind": gvk["kind"], "verbs": verbs});
                        if gvk["group"] != json!(k.group) || gvk["version"] != json!(k.version) {
                            sr["group"] = gvk["group"].clone();
                            sr["version"] = gvk["version"].clone();
                        }
                        resources.push(sr);
                        agg_subs.push(
                            json!({"subresource": s.name(), "responseKind": gvk, "verbs": verbs}),
                        );
                    }
                    let mut ar = json!({
                        "resource": k.plural,
                        "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
                        "scope": scope, "singularResource": k.singular, "verbs": k.verbs,
                    });
                    if !k.short_names.is_empty() {
                        ar["shortNames"] = json!(k.short_names);
                    }
                    if !k.categories.is_empty() {
                        ar["categories"] = json!(k.categories);
                    }
                    if !agg_subs.is_empty() {
                        ar["subresources"] = json!(agg_subs);
                    }
                    agg_resources.push(ar);
                }
                let doc = json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(g, v), "resources": resources});
                resource_lists
                    .entry(g.to_string())
                    .or_default()
                    .insert(v.to_string(), Bytes::from(doc.to_string()));
                agg_versions.push(
                    json!({"version": v, "resources": agg_resources, "freshness": "Current"}),
                );
            }
            if g.is_empty() {
                agg_core =
                    json!({"metadata": {"creationTimestamp": null}, "versions": agg_versions});
                continue;
            }
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| json!({"groupVersion": group_version(g, v), "version": v}))
                .collect();
            let group = json!({"name": g, "versions": versions, "preferredVersion": versions[0]});
            group_docs.insert(g.to_string(), Bytes::from(json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": versions, "preferredVersion": versions[0]}).to_string()));
            legacy_groups.push(group);
            agg_groups.push(json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": agg_versions}));
        }
        let api_versions = json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        });
        Discovery {
            api_versions: Bytes::from(api_versions.to_string()),
            groups: Bytes::from(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": legacy_groups})
                    .to_string(),
            ),
            resource_lists,
            group_docs,
            aggregated_core: json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": [agg_core]}),
            aggregated_groups: json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": agg_groups}),
        }
    }

    /// The aggregated document in the version the client asked for, with its content type.
    pub fn aggregated(&self, core: bool, accept: &str) -> Option<(Bytes, &'static str)> {
        let wants = |v: &str| {
            accept.split(',').any(|c| {
                let c: String = c.chars().filter(|ch| !ch.is_whitespace()).collect();
                c.contains("as=APIGroupDiscoveryList")
                    && c.contains("g=apidiscovery.k8s.io")
                    && c.contains(&format!("v={v}"))
            })
        };
        let (ct, version) = if wants("v2") {
            (AGGREGATED_V2, "apidiscovery.k8s.io/v2")
        } else if wants("v2beta1") {
            (AGGREGATED_V2BETA1, "apidiscovery.k8s.io/v2beta1")
        } else {
            return None;
        };
        let mut doc = if core {
            self.aggregated_core.clone()
        } else {
            self.aggregated_groups.clone()
        };
        doc["apiVersion"] = json!(version);
        Some((Bytes::from(doc.to_string()), ct))
    }
}

/// Kubernetes version ordering: GA before beta before alpha, higher numbers first.
fn version_rank(v: &str) -> (u8, i64, i64) {
    let rest = v.trim_start_matches('v');
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let major: i64 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, minor) = if let Some(b) = tail.strip_prefix("beta") {
        (1, b.parse().unwrap_or(0))
    } else if let Some(a) = tail.strip_prefix("alpha") {
        (2, a.parse().unwrap_or(0))
    } else {
        (0, 0)
    };
    (stage, -major, -minor)
}
