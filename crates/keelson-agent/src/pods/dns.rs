//! A pod's DNS settings (what the runtime writes to its /etc/resolv.conf), computed per
//! `dnsPolicy` exactly as the kubelet does: ClusterFirst → the cluster DNS with the search list
//! `<ns>.svc.<domain> svc.<domain> <domain>` + the host's and `ndots:5`; Default (and
//! ClusterFirst on the host network) → the host's resolv.conf; None → nothing; then
//! `spec.dnsConfig` merged in, and the kubelet's limits applied.

use k8s_openapi::api::core::v1::{Pod, PodDNSConfigOption};
use keelson_cri::cri;
use keelson_dns::resolvconf::{self, ResolvConf};

/// At most this many name servers (the resolver's limit).
const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains, this many characters on the search line, and this long
/// a domain (upstream's validation limits).
const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_CHARS: usize = 2048;
const MAX_SEARCH_LEN: usize = 253;

/// What the node knows for pods' DNS.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The cluster DNS servers (`--cluster-dns`); empty: ClusterFirst falls back to the host's.
    pub cluster_dns: Vec<String>,
    /// The cluster domain (`--cluster-domain`); empty: no cluster search domains.
    pub cluster_domain: String,
    /// The host's resolver configuration (the file pods can use: not a loopback stub's).
    pub host: ResolvConf,
}

enum Kind {
    Cluster,
    Host,
    None,
}

fn kind(pod: &Pod) -> Kind {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    match spec.and_then(|s| s.dns_policy.as_deref()) {
        Some("None") => Kind::None,
        Some("Default") => Kind::Host,
        Some("ClusterFirstWithHostNet") => Kind::Cluster,
        // ClusterFirst (the default): the host's settings for a pod on the host network.
        _ if host_network => Kind::Host,
        _ => Kind::Cluster,
    }
}

/// Appends `more` to `list`, skipping entries already there.
fn append_unique(list: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    for s in more {
        if !list.contains(&s) {
            list.push(s);
        }
    }
}

/// The sandbox DNS config of `pod`.
pub fn config(pod: &Pod, s: &Settings) -> cri::DnsConfig {
    let mut kind = kind(pod);
    if matches!(kind, Kind::Cluster) && s.cluster_dns.is_empty() {
        kind = Kind::Host;
    }
    let mut c = match kind {
        Kind::None => cri::DnsConfig::default(),
        Kind::Host => cri::DnsConfig {
            servers: s.host.nameservers.clone(),
            searches: s.host.searches.clone(),
            options: s.host.options.clone(),
        },
        Kind::Cluster => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let d = &s.cluster_domain;
            let mut searches = if d.is_empty() {
                Vec::new()
            } else {
                vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()]
            };
            append_unique(&mut searches, s.host.searches.iter().cloned());
            cri::DnsConfig {
                servers: s.cluster_dns.clone(),
                searches,
                options: vec!["ndots:5".into()],
            }
        }
    };
    if let Some(extra) = pod.spec.as_ref().and_then(|s| s.dns_config.as_ref()) {
        append_unique(&mut c.servers, extra.nameservers.iter().flatten().cloned());
        append_unique(&mut c.searches, extra.searches.iter().flatten().cloned());
        for o in extra.options.iter().flatten() {
            resolvconf::merge_option(&mut c.options, &option(o));
        }
    }
    c.servers.truncate(MAX_NAMESERVERS);
    c.searches = fit_searches(c.searches);
    c
}

fn option(o: &PodDNSConfigOption) -> String {
    let name = o.name.as_deref().unwrap_or("");
    match o.value.as_deref() {
        Some(v) if !v.is_empty() => format!("{name}:{v}"),
        _ => name.to_string(),
    }
}

/// The search list within the resolver's limits, cut as the kubelet cuts it: at most 32
/// domains, none longer than 253 characters, the line at most 2048 characters.
fn fit_searches(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCHES);
    searches.retain(|s| s.len() <= MAX_SEARCH_LEN);
    while !searches.is_empty() && searches.join(" ").len() > MAX_SEARCH_CHARS {
        searches.pop();
    }
    searches
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Settings {
        Settings {
            cluster_dns: vec!["10.43.0.10".into()],
            cluster_domain: "cluster.local".into(),
            host: resolvconf::parse(
                "nameserver 192.0.2.53\nsearch lan corp.example\noptions edns0\n",
            ),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "team"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn check(spec: serde_json::Value, s: &Settings, want: (&[&str], &[&str], &[&str])) {
        let got = config(&pod(spec.clone()), s);
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            (got.servers, got.searches, got.options),
            (v(want.0), v(want.1), v(want.2)),
            "{spec}"
        );
    }

    #[test]
    fn per_policy() {
        let s = settings();
        let cluster_search: &[&str] = &[
            "team.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
            "lan",
            "corp.example",
        ];
        let host: (&[&str], &[&str], &[&str]) =
            (&["192.0.2.53"], &["lan", "corp.example"], &["edns0"]);
        let cases = [
            (
                json!({}),
                (&["10.43.0.10"][..], cluster_search, &["ndots:5"][..]),
            ),
            (
                json!({"dnsPolicy": "ClusterFirst"}),
                (&["10.43.0.10"][..], cluster_search, &["ndots:5"][..]),
            ),
            (json!({"dnsPolicy": "Default"}), host),
            (
                json!({"dnsPolicy": "ClusterFirst", "hostNetwork": true}),
                host,
            ),
            (
                json!({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": true}),
                (&["10.43.0.10"][..], cluster_search, &["ndots:5"][..]),
            ),
            (json!({"dnsPolicy": "None"}), (&[][..], &[][..], &[][..])),
            (
                json!({"dnsPolicy": "None", "dnsConfig": {
                    "nameservers": ["1.2.3.4"], "searches": ["ns1.svc.cluster-domain.example"],
                    "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}),
                (
                    &["1.2.3.4"][..],
                    &["ns1.svc.cluster-domain.example"][..],
                    &["ndots:2", "edns0"][..],
                ),
            ),
            (
                json!({"dnsConfig": {
                    "nameservers": ["10.43.0.10", "1.2.3.4"], "searches": ["lan", "extra"],
                    "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}]}}),
                (
                    &["10.43.0.10", "1.2.3.4"][..],
                    &[
                        "team.svc.cluster.local",
                        "svc.cluster.local",
                        "cluster.local",
                        "lan",
                        "corp.example",
                        "extra",
                    ][..],
                    &["ndots:1", "single-request"][..],
                ),
            ),
            (
                json!({"dnsPolicy": "Default", "dnsConfig": {"options": [{"name": "edns0"}, {"name": "timeout", "value": "1"}]}}),
                (
                    &["192.0.2.53"][..],
                    &["lan", "corp.example"][..],
                    &["edns0", "timeout:1"][..],
                ),
            ),
        ];
        for (spec, want) in cases {
            check(spec, &s, want);
        }
    }

    #[test]
    fn without_cluster_dns_cluster_first_uses_the_host() {
        let s = Settings {
            cluster_dns: vec![],
            ..settings()
        };
        check(
            json!({}),
            &s,
            (&["192.0.2.53"], &["lan", "corp.example"], &["edns0"]),
        );
    }

    #[test]
    fn limits() {
        let s = settings();
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        let long = "a".repeat(254);
        let searches: Vec<String> = std::iter::once(long).chain(many).collect();
        let pod = pod(json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"],
            "searches": searches}}));
        let c = config(&pod, &s);
        assert_eq!(c.servers, ["1.1.1.1", "2.2.2.2", "3.3.3.3"]);
        assert_eq!(
            c.searches.len(),
            31,
            "32 kept, then the too-long one dropped"
        );
        assert_eq!(c.searches[0], "d0.example");
        let wide: Vec<String> = (0..20).map(|i| format!("{i:0>200}")).collect();
        assert!(fit_searches(wide).join(" ").len() <= MAX_SEARCH_CHARS);
    }
}
