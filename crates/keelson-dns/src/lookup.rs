//! The answers of the cluster domain, computed from the cache without IO, following the
//! Kubernetes DNS specification (and CoreDNS's `kubernetes` plugin where it is silent):
//! `<svc>.<ns>.svc.<domain>`, `<endpoint>.<svc>.<ns>.svc.<domain>` of headless Services,
//! `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV, `<a-b-c-d>.<ns>.pod.<domain>`, ExternalName
//! as a CNAME; names outside the domain are to be forwarded.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use crate::cache::Cache;

/// Errors describing the zone.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cluster domain {domain:?} is not a valid DNS name: {reason}")]
    Domain { domain: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cluster domain this server answers for.
#[derive(Clone, Debug)]
pub struct Zone {
    /// `cluster.local`, lower case, without the trailing dot.
    pub domain: String,
    /// The same as a fully qualified name.
    pub name: Name,
    /// The TTL of every answer (CoreDNS's default: 5 seconds).
    pub ttl: u32,
}

impl Zone {
    /// The zone of `domain` (`cluster.local`).
    pub fn new(domain: &str) -> Result<Zone> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let err = |reason: String| Error::Domain {
            domain: domain.clone(),
            reason,
        };
        if domain.is_empty() {
            return Err(err("it is empty".into()));
        }
        let name = Name::from_ascii(format!("{domain}.")).map_err(|e| err(e.to_string()))?;
        Ok(Zone {
            domain,
            name,
            ttl: 5,
        })
    }

    fn fqdn(&self, prefix: &str) -> Option<Name> {
        Name::from_ascii(format!("{prefix}.{}.", self.domain)).ok()
    }

    /// The zone's SOA record, sent with negative answers.
    pub fn soa(&self) -> Record {
        let n = |s: &str| self.fqdn(s).unwrap_or_else(|| self.name.clone());
        Record::from_rdata(
            self.name.clone(),
            self.ttl,
            RData::SOA(SOA::new(
                n("ns.dns"),
                n("hostmaster"),
                1,
                7200,
                1800,
                86400,
                self.ttl,
            )),
        )
    }
}

/// What to do with a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The name is outside the cluster domain: ask the upstream resolvers.
    Forward,
    /// The cluster domain's answer.
    Answer(Answer),
}

/// An answer from the cluster domain.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// NoError (with or without records) or NXDomain.
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Answer {
    fn records(answers: Vec<Record>, additionals: Vec<Record>) -> Outcome {
        Outcome::Answer(Answer {
            code: ResponseCode::NoError,
            answers,
            additionals,
        })
    }

    fn nodata() -> Outcome {
        Self::records(Vec::new(), Vec::new())
    }

    fn nxdomain() -> Outcome {
        Outcome::Answer(Answer {
            code: ResponseCode::NXDomain,
            answers: Vec::new(),
            additionals: Vec::new(),
        })
    }

    /// The CNAME this answer ends on, when it has no address records for it (ExternalName).
    pub fn cname_target(&self) -> Option<&Name> {
        match self.answers.last().map(|r| &r.data) {
            Some(RData::CNAME(CNAME(target))) => Some(target),
            _ => None,
        }
    }
}

/// Answers `name`/`qtype` from `cache`.
pub fn lookup(cache: &Cache, zone: &Zone, name: &Name, qtype: RecordType) -> Outcome {
    let name = name.to_lowercase();
    if !zone.name.zone_of(&name) {
        return Outcome::Forward;
    }
    let extra = name.num_labels().saturating_sub(zone.name.num_labels()) as usize;
    let labels: Vec<String> = name
        .iter()
        .take(extra)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let l = Lookup {
        cache,
        zone,
        name: &name,
        qtype,
    };
    match labels.as_slice() {
        [] => {
            if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                Answer::records(vec![zone.soa()], Vec::new())
            } else {
                Answer::nodata()
            }
        }
        ["svc"] | ["pod"] => Answer::nodata(),
        [ns, "svc"] => {
            if cache.has_namespace(ns) {
                Answer::nodata()
            } else {
                Answer::nxdomain()
            }
        }
        [svc, ns, "svc"] => l.service(ns, svc),
        [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
            l.srv(ns, svc, Some((&port[1..], &proto[1..])))
        }
        [proto, svc, ns, "svc"] if proto.starts_with('_') => match cache.service(ns, svc) {
            Some(_) => Answer::nodata(),
            None => Answer::nxdomain(),
        },
        [endpoint, svc, ns, "svc"] => l.endpoint(ns, svc, endpoint),
        [_ns, "pod"] => Answer::nodata(),
        [ip, _ns, "pod"] => l.pod(ip),
        _ => Answer::nxdomain(),
    }
}

struct Lookup<'a> {
    cache: &'a Cache,
    zone: &'a Zone,
    name: &'a Name,
    qtype: RecordType,
}

/// `spec.clusterIP: None`.
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn is_external_name(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName")
}

/// Whether an endpoint is published: ready (unset counts as ready), or any endpoint when the
/// Service publishes not-ready addresses.
fn published(svc: &Service, e: &Endpoint) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
        || e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
}

/// `10.1.2.3` → `10-1-2-3`, `fd00::1` → `fd00--1`.
pub fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// `10-1-2-3` → `10.1.2.3`; `fd00--1` → `fd00::1`.
pub fn undashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

impl Lookup<'_> {
    fn address(&self, name: &Name, ip: IpAddr) -> Option<Record> {
        let data = match (ip, self.qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
            _ => return None,
        };
        Some(Record::from_rdata(name.clone(), self.zone.ttl, data))
    }

    /// The addresses of `ips` this query asks for.
    fn addresses(&self, name: &Name, ips: impl IntoIterator<Item = IpAddr>) -> Vec<Record> {
        let ips: BTreeSet<IpAddr> = ips.into_iter().collect();
        ips.into_iter()
            .filter_map(|ip| self.address(name, ip))
            .collect()
    }

    fn cname(&self, svc: &Service) -> Outcome {
        let target = svc
            .spec
            .as_ref()
            .and_then(|s| s.external_name.as_deref())
            .unwrap_or("");
        match Name::from_ascii(format!("{}.", target.trim_end_matches('.'))) {
            Ok(t) if !target.is_empty() => Answer::records(
                vec![Record::from_rdata(
                    self.name.clone(),
                    self.zone.ttl,
                    RData::CNAME(CNAME(t)),
                )],
                Vec::new(),
            ),
            _ => Answer::nodata(),
        }
    }

    /// The published endpoints of a Service with the slice each is in.
    fn endpoints(&self, svc: &Service, ns: &str, name: &str) -> Vec<(&EndpointSlice, &Endpoint)> {
        self.cache
            .slices(ns, name)
            .flat_map(|s| s.endpoints.iter().map(move |e| (s, e)))
            .filter(|(_, e)| published(svc, e))
            .collect()
    }

    fn service(&self, ns: &str, name: &str) -> Outcome {
        let Some(svc) = self.cache.service(ns, name) else {
            return Answer::nxdomain();
        };
        if is_external_name(svc) {
            return self.cname(svc);
        }
        if self.qtype == RecordType::SRV {
            return self.srv(ns, name, None);
        }
        let ips: Vec<IpAddr> = if is_headless(svc) {
            self.endpoints(svc, ns, name)
                .into_iter()
                .flat_map(|(_, e)| e.addresses.iter())
                .filter_map(|a| a.parse().ok())
                .collect()
        } else {
            let spec = svc.spec.as_ref();
            let ips = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
            let ips = if ips.is_empty() {
                spec.and_then(|s| s.cluster_ip.clone())
                    .into_iter()
                    .collect()
            } else {
                ips
            };
            ips.iter().filter_map(|a| a.parse().ok()).collect()
        };
        Answer::records(self.addresses(self.name, ips), Vec::new())
    }

    /// SRV records of a Service: every named port, or the one `(port, proto)` names.
    fn srv(&self, ns: &str, name: &str, want: Option<(&str, &str)>) -> Outcome {
        let Some(svc) = self.cache.service(ns, name) else {
            return Answer::nxdomain();
        };
        if is_external_name(svc) {
            return self.cname(svc);
        }
        if !matches!(self.qtype, RecordType::SRV | RecordType::ANY) {
            return match want {
                Some((port, proto)) if !self.has_port(svc, port, proto) => Answer::nxdomain(),
                _ => Answer::nodata(),
            };
        }
        let Some(svc_name) = self.zone.fqdn(&format!("{name}.{ns}.svc")) else {
            return Answer::nxdomain();
        };
        let ports: Vec<(String, String, u16)> = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let pname = p.name.clone().filter(|n| !n.is_empty())?;
                let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                let matches = want.is_none_or(|(w, wp)| w == pname && wp == proto);
                matches.then_some((pname, proto, p.port as u16))
            })
            .collect();
        if ports.is_empty() {
            return if want.is_some() {
                Answer::nxdomain()
            } else {
                Answer::nodata()
            };
        }
        let (mut answers, mut additionals) = (Vec::new(), Vec::new());
        for (pname, proto, port) in ports {
            let owner = match want {
                Some(_) => self.name.clone(),
                None => match self
                    .zone
                    .fqdn(&format!("_{pname}._{proto}.{name}.{ns}.svc"))
                {
                    Some(n) => n,
                    None => continue,
                },
            };
            if is_headless(svc) {
                let eps = self.endpoints(svc, ns, name);
                let mut targets = Vec::new();
                for (slice, e) in eps {
                    let Some(eport) = slice
                        .ports
                        .iter()
                        .flatten()
                        .find(|p| p.name.as_deref() == Some(pname.as_str()))
                        .and_then(|p| p.port)
                    else {
                        continue;
                    };
                    for addr in &e.addresses {
                        let Ok(ip) = addr.parse::<IpAddr>() else {
                            continue;
                        };
                        let label = e.hostname.clone().unwrap_or_else(|| dashed(&ip));
                        if let Some(t) = self.zone.fqdn(&format!("{label}.{name}.{ns}.svc")) {
                            targets.push((t, eport as u16, ip));
                        }
                    }
                }
                let weight = (100 / targets.len().max(1)) as u16;
                for (t, p, ip) in targets {
                    answers.push(self.srv_record(&owner, weight, p, &t));
                    additionals.extend(self.glue(&t, ip));
                }
            } else {
                answers.push(self.srv_record(&owner, 100, port, &svc_name));
                let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
                if let Some(ip) = ip.and_then(|i| i.parse().ok()) {
                    additionals.extend(self.glue(&svc_name, ip));
                }
            }
        }
        additionals.dedup();
        Answer::records(answers, additionals)
    }

    fn has_port(&self, svc: &Service, port: &str, proto: &str) -> bool {
        svc.spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .any(|p| {
                p.name.as_deref() == Some(port)
                    && p.protocol
                        .as_deref()
                        .unwrap_or("TCP")
                        .eq_ignore_ascii_case(proto)
            })
    }

    fn srv_record(&self, owner: &Name, weight: u16, port: u16, target: &Name) -> Record {
        Record::from_rdata(
            owner.clone(),
            self.zone.ttl,
            RData::SRV(SRV::new(0, weight, port, target.clone())),
        )
    }

    /// The address record of an SRV target, for the additional section.
    fn glue(&self, target: &Name, ip: IpAddr) -> Option<Record> {
        let data = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Some(Record::from_rdata(target.clone(), self.zone.ttl, data))
    }

    /// `<hostname>.<svc>.<ns>.svc` (or the endpoint's dashed address) of a headless Service.
    fn endpoint(&self, ns: &str, name: &str, label: &str) -> Outcome {
        let Some(svc) = self.cache.service(ns, name) else {
            return Answer::nxdomain();
        };
        if !is_headless(svc) {
            return Answer::nxdomain();
        }
        let ips: Vec<IpAddr> = self
            .endpoints(svc, ns, name)
            .into_iter()
            .flat_map(|(_, e)| {
                e.addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .filter(move |ip| match e.hostname.as_deref() {
                        Some(h) => h == label,
                        None => dashed(ip) == label,
                    })
            })
            .collect();
        if ips.is_empty() {
            return Answer::nxdomain();
        }
        Answer::records(self.addresses(self.name, ips), Vec::new())
    }

    /// `<a-b-c-d>.<ns>.pod`: the address the name spells (as CoreDNS's `pods insecure`).
    fn pod(&self, label: &str) -> Outcome {
        match undashed(label) {
            Some(ip) => Answer::records(self.addresses(self.name, [ip]), Vec::new()),
            None => Answer::nxdomain(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cache() -> Cache {
        let mut c = Cache::default();
        let services = [
            json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                   {"port": 9000}]}}),
            json!({"metadata": {"name": "db", "namespace": "prod"},
                "spec": {"clusterIP": "None", "ports": [{"name": "sql", "port": 3306}]}}),
            json!({"metadata": {"name": "ext", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "www.example.com"}}),
            json!({"metadata": {"name": "dual", "namespace": "default"},
                "spec": {"clusterIP": "10.43.0.21", "clusterIPs": ["10.43.0.21", "fd00::21"]}}),
            json!({"metadata": {"name": "empty", "namespace": "default"},
                "spec": {"clusterIP": "None"}}),
        ];
        for s in services {
            c.put_service(serde_json::from_value(s).unwrap());
        }
        let slices = [json!({"metadata": {"name": "db-x", "namespace": "prod",
                "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "sql", "port": 3307, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.6"], "conditions": {}},
                {"addresses": ["10.42.0.7"], "conditions": {"ready": false}}]})];
        for s in slices {
            c.put_slice(serde_json::from_value(s).unwrap());
        }
        c
    }

    /// Renders an outcome as `CODE; answers; additionals` with records in zone-file form.
    fn render(o: &Outcome) -> String {
        let Outcome::Answer(a) = o else {
            return "FORWARD".into();
        };
        let rs = |rs: &[Record]| {
            rs.iter()
                .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let code = match a.code {
            ResponseCode::NoError => "NOERROR",
            ResponseCode::NXDomain => "NXDOMAIN",
            _ => "OTHER",
        };
        let mut s = format!("{code}; {}", rs(&a.answers));
        if !a.additionals.is_empty() {
            s += &format!("; {}", rs(&a.additionals));
        }
        s
    }

    #[test]
    fn cluster_domain_answers() {
        let c = cache();
        let zone = Zone::new("cluster.local").unwrap();
        let cases: &[(&str, RecordType, &str)] = &[
            ("example.com.", RecordType::A, "FORWARD"),
            ("cluster.local.example.com.", RecordType::A, "FORWARD"),
            (
                "web.default.svc.cluster.local.",
                RecordType::A,
                "NOERROR; web.default.svc.cluster.local. A 10.43.0.20",
            ),
            (
                "WEB.Default.svc.Cluster.Local.",
                RecordType::A,
                "NOERROR; web.default.svc.cluster.local. A 10.43.0.20",
            ),
            (
                "web.default.svc.cluster.local.",
                RecordType::AAAA,
                "NOERROR; ",
            ),
            (
                "web.default.svc.cluster.local.",
                RecordType::TXT,
                "NOERROR; ",
            ),
            (
                "nope.default.svc.cluster.local.",
                RecordType::A,
                "NXDOMAIN; ",
            ),
            ("web.other.svc.cluster.local.", RecordType::A, "NXDOMAIN; "),
            (
                "dual.default.svc.cluster.local.",
                RecordType::AAAA,
                "NOERROR; dual.default.svc.cluster.local. AAAA fd00::21",
            ),
            (
                "db.prod.svc.cluster.local.",
                RecordType::A,
                "NOERROR; db.prod.svc.cluster.local. A 10.42.0.5, db.prod.svc.cluster.local. A 10.42.0.6",
            ),
            (
                "empty.default.svc.cluster.local.",
                RecordType::A,
                "NOERROR; ",
            ),
            (
                "db-0.db.prod.svc.cluster.local.",
                RecordType::A,
                "NOERROR; db-0.db.prod.svc.cluster.local. A 10.42.0.5",
            ),
            (
                "10-42-0-6.db.prod.svc.cluster.local.",
                RecordType::A,
                "NOERROR; 10-42-0-6.db.prod.svc.cluster.local. A 10.42.0.6",
            ),
            (
                "10-42-0-7.db.prod.svc.cluster.local.",
                RecordType::A,
                "NXDOMAIN; ",
            ),
            (
                "db-1.db.prod.svc.cluster.local.",
                RecordType::A,
                "NXDOMAIN; ",
            ),
            (
                "x.web.default.svc.cluster.local.",
                RecordType::A,
                "NXDOMAIN; ",
            ),
            (
                "ext.default.svc.cluster.local.",
                RecordType::A,
                "NOERROR; ext.default.svc.cluster.local. CNAME www.example.com.",
            ),
            (
                "_http._tcp.web.default.svc.cluster.local.",
                RecordType::SRV,
                "NOERROR; _http._tcp.web.default.svc.cluster.local. SRV 0 100 8080 web.default.svc.cluster.local.; web.default.svc.cluster.local. A 10.43.0.20",
            ),
            (
                "_http._udp.web.default.svc.cluster.local.",
                RecordType::SRV,
                "NXDOMAIN; ",
            ),
            (
                "_http._tcp.web.default.svc.cluster.local.",
                RecordType::A,
                "NOERROR; ",
            ),
            (
                "_tcp.web.default.svc.cluster.local.",
                RecordType::SRV,
                "NOERROR; ",
            ),
            (
                "web.default.svc.cluster.local.",
                RecordType::SRV,
                "NOERROR; _http._tcp.web.default.svc.cluster.local. SRV 0 100 8080 web.default.svc.cluster.local.; web.default.svc.cluster.local. A 10.43.0.20",
            ),
            (
                "_sql._tcp.db.prod.svc.cluster.local.",
                RecordType::SRV,
                "NOERROR; _sql._tcp.db.prod.svc.cluster.local. SRV 0 50 3307 db-0.db.prod.svc.cluster.local., _sql._tcp.db.prod.svc.cluster.local. SRV 0 50 3307 10-42-0-6.db.prod.svc.cluster.local.; db-0.db.prod.svc.cluster.local. A 10.42.0.5, 10-42-0-6.db.prod.svc.cluster.local. A 10.42.0.6",
            ),
            (
                "10-42-1-9.default.pod.cluster.local.",
                RecordType::A,
                "NOERROR; 10-42-1-9.default.pod.cluster.local. A 10.42.1.9",
            ),
            (
                "fd00--9.default.pod.cluster.local.",
                RecordType::AAAA,
                "NOERROR; fd00--9.default.pod.cluster.local. AAAA fd00::9",
            ),
            (
                "10-42-1-9.default.pod.cluster.local.",
                RecordType::AAAA,
                "NOERROR; ",
            ),
            (
                "not-an-ip.default.pod.cluster.local.",
                RecordType::A,
                "NXDOMAIN; ",
            ),
            ("default.svc.cluster.local.", RecordType::A, "NOERROR; "),
            ("nons.svc.cluster.local.", RecordType::A, "NXDOMAIN; "),
            ("svc.cluster.local.", RecordType::A, "NOERROR; "),
            ("cluster.local.", RecordType::A, "NOERROR; "),
            (
                "cluster.local.",
                RecordType::SOA,
                "NOERROR; cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5",
            ),
            ("foo.cluster.local.", RecordType::A, "NXDOMAIN; "),
            (
                "web.default.svc.cluster.local.default.svc.cluster.local.",
                RecordType::A,
                "NXDOMAIN; ",
            ),
        ];
        let mut failures = Vec::new();
        for (name, qtype, want) in cases {
            let got = render(&lookup(&c, &zone, &Name::from_ascii(name).unwrap(), *qtype));
            if got != *want {
                failures.push(format!("{name} {qtype}:\n  want {want}\n  got  {got}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn publish_not_ready_addresses() {
        let mut c = cache();
        let mut db = c.service("prod", "db").unwrap().clone();
        db.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        c.put_service(db);
        let zone = Zone::new("cluster.local").unwrap();
        let name = Name::from_ascii("db.prod.svc.cluster.local.").unwrap();
        let Outcome::Answer(a) = lookup(&c, &zone, &name, RecordType::A) else {
            panic!("forwarded")
        };
        assert_eq!(a.answers.len(), 3);
    }

    #[test]
    fn other_domain_and_bad_domain() {
        let zone = Zone::new("Corp.Example.").unwrap();
        assert_eq!(zone.domain, "corp.example");
        let c = cache();
        let name = Name::from_ascii("web.default.svc.corp.example.").unwrap();
        assert!(render(&lookup(&c, &zone, &name, RecordType::A)).contains("10.43.0.20"));
        let name = Name::from_ascii("web.default.svc.cluster.local.").unwrap();
        assert_eq!(lookup(&c, &zone, &name, RecordType::A), Outcome::Forward);
        assert!(Zone::new("").is_err());
        assert!(Zone::new("a..b").unwrap_err().to_string().contains("a..b"));
    }

    #[test]
    fn dashes() {
        assert_eq!(dashed(&"10.1.2.3".parse().unwrap()), "10-1-2-3");
        assert_eq!(dashed(&"fd00::1".parse().unwrap()), "fd00--1");
        assert_eq!(undashed("10-1-2-3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(undashed("fd00--1"), Some("fd00::1".parse().unwrap()));
        assert_eq!(undashed("10-1-2"), None);
        assert_eq!(undashed("x"), None);
    }
}
