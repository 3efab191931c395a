//! `pods/{name}/proxy` and `services/{name}/proxy`: HTTP (and upgraded connections) relayed
//! from the client to a pod, as upstream's `ProxyREST` and `UpgradeAwareHandler` do. A pod is
//! reached at its IP on the port the path names (else its first declared container port); a
//! Service at one ready endpoint of its EndpointSlices on the Service port the path names.
//! Redirects and links in HTML answers are rewritten to stay under the proxy path.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use keelson_apimachinery::ApiError;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Api;
use crate::keys;
use crate::request::ResourcePath;
use crate::respond::{self, Body};

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// How long connecting to a pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest HTML answer whose links are rewritten; bigger ones pass unchanged.
const MAX_REWRITE: usize = 16 * 1024 * 1024;

/// `[scheme:]name[:port]` of a proxy request, as upstream's `SplitSchemeNamePort`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetId {
    /// `http` or `https`.
    pub scheme: &'static str,
    pub name: String,
    /// The port as written (a number or a name); empty when absent.
    pub port: String,
}

/// Splits `id`; `None` for an empty name, too many parts or a scheme other than http(s).
pub fn split_id(id: &str) -> Option<TargetId> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    let scheme = match scheme {
        "" | "http" => "http",
        "https" => "https",
        _ => return None,
    };
    (!name.is_empty()).then(|| TargetId {
        scheme,
        name: name.to_owned(),
        port: port.to_owned(),
    })
}

/// Where a proxied request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub scheme: &'static str,
    pub ip: IpAddr,
    /// `None`: the scheme's default port.
    pub port: Option<u16>,
}

impl Location {
    fn port_or_default(&self) -> u16 {
        self.port
            .unwrap_or(if self.scheme == "https" { 443 } else { 80 })
    }

    /// `ip:port` as a URL authority (IPv6 in brackets).
    pub fn authority(&self) -> String {
        let ip = match self.ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        match self.port {
            Some(p) => format!("{ip}:{p}"),
            None => ip,
        }
    }

    fn dial_address(&self) -> String {
        let ip = match self.ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        format!("{ip}:{}", self.port_or_default())
    }
}

/// Whether upstream's proxy may send traffic to `ip` (Go's `IsGlobalUnicast`).
fn allowed(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// The container ports of a pod: (name, number), in spec order.
fn container_ports(pod: &Value) -> Vec<(String, u16)> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|p| {
            let number = u16::try_from(p.get("containerPort")?.as_u64()?).ok()?;
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            Some((name.to_owned(), number))
        })
        .collect()
}

/// Where `pods/{id}/proxy` goes: the pod's IP, on `port` (a number, or the name of one of
/// its container ports), else on its first declared container port, else the scheme's
/// default port.
pub fn pod_location(pod: &Value, id: &TargetId) -> Result<Location> {
    let ports = container_ports(pod);
    let port = if id.port.is_empty() {
        ports.first().map(|(_, n)| *n)
    } else if let Ok(n) = id.port.parse::<u16>() {
        Some(n)
    } else {
        let found = ports.iter().find(|(name, _)| *name == id.port);
        Some(found.map(|(_, n)| *n).ok_or_else(|| {
            ApiError::service_unavailable(format!(
                "error trying to reach service: dial tcp: lookup port {}: unknown port",
                id.port
            ))
        })?)
    };
    let ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<IpAddr>().ok())
        .filter(|ip| allowed(*ip))
        .ok_or_else(|| ApiError::bad_request("address not allowed"))?;
    Ok(Location {
        scheme: id.scheme,
        ip,
        port,
    })
}

/// One address a Service's endpoint slices offer for the wanted port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub ip: IpAddr,
    pub port: u16,
    /// The pod behind the address (`targetRef`), if it names one: (namespace, name).
    pub pod: Option<(String, String)>,
}

/// The name of the Service port `port` addresses: a number is looked up among the Service's
/// ports (503 when none has it); a name (or nothing) is taken as written.
pub fn service_port_name(svc: &Value, port: &str) -> Result<String> {
    let Ok(number) = port.parse::<i64>() else {
        return Ok(port.to_owned());
    };
    let name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("port").and_then(Value::as_i64) == Some(number))
        .map(|p| {
            p.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        })
        .ok_or_else(|| {
            ApiError::service_unavailable(format!(
                "no service port {number} found for service \"{name}\""
            ))
        })
}

/// The ready addresses the slices offer on the port named `port_name`, in slice order.
pub fn candidates(slices: &[&Value], port_name: &str) -> Vec<Candidate> {
    let mut out = Vec::new();
    for slice in slices {
        let Some(port) = slice
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| u16::try_from(p.get("port")?.as_u64()?).ok())
        else {
            continue;
        };
        for ep in slice
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            // A missing `ready` means ready, as EndpointSlice consumers read it.
            if ep.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let pod = ep.get("targetRef").and_then(|r| {
                (r.get("kind")?.as_str()? == "Pod").then(|| {
                    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    (s("namespace"), s("name"))
                })
            });
            for addr in ep
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if let Ok(ip) = addr.parse() {
                    out.push(Candidate {
                        ip,
                        port,
                        pod: pod.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Picks the endpoint for `services/{id}/proxy`: starting at `start` (random in the
/// server), the first candidate that is a pod of the Service's namespace whose IP it is
/// (`pod_has_ip(name, ip)`), as upstream's `isValidAddress` checks.
pub fn choose_endpoint(
    svc: &Value,
    slices: &[&Value],
    id: &TargetId,
    start: usize,
    pod_has_ip: impl Fn(&str, IpAddr) -> bool,
) -> Result<Location> {
    let svc_name = svc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(&id.name);
    let namespace = svc
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let port_name = service_port_name(svc, &id.port)?;
    let any_endpoints = slices.iter().any(|s| {
        s.get("endpoints")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty())
    });
    if !any_endpoints {
        return Err(ApiError::service_unavailable(format!(
            "no endpoints available for service \"{svc_name}\""
        )));
    }
    let all = candidates(slices, &port_name);
    let n = all.len();
    (0..n)
        .map(|i| &all[(start + i) % n])
        .find(|c| {
            c.pod
                .as_ref()
                .is_some_and(|(ns, name)| ns == namespace && pod_has_ip(name, c.ip))
        })
        .map(|c| Location {
            scheme: id.scheme,
            ip: c.ip,
            port: Some(c.port),
        })
        .ok_or_else(|| {
            let full = match (id.scheme, id.port.is_empty()) {
                ("https", _) => format!("https:{}:{}", id.name, id.port),
                (_, true) => id.name.clone(),
                (_, false) => format!("{}:{}", id.name, id.port),
            };
            ApiError::service_unavailable(format!("no endpoints available for service \"{full}\""))
        })
}

/// Splits a raw request path at its proxy subresource:
/// (`/api/v1/namespaces/ns/pods/name/proxy`, the rest, still percent-encoded).
pub fn split_proxy_path(raw: &str) -> Option<(&str, &str)> {
    let mut ends = raw.match_indices('/').map(|(i, _)| i).collect::<Vec<_>>();
    ends.push(raw.len());
    // Segments: "" api v1 namespaces ns resource name proxy | "" apis g v namespaces ...
    let core = raw.starts_with("/api/");
    let proxy_segment = if core { 7 } else { 8 };
    let end = *ends.get(proxy_segment)?;
    let start = ends[proxy_segment - 1] + 1;
    (raw.get(start..end) == Some("proxy")).then(|| (&raw[..end], &raw[end..]))
}

/// The backend path for `rest` (what followed `/proxy`): `.` and `..` segments resolved as
/// Go's `path.Join` does, a trailing slash kept, empty when nothing followed.
pub fn backend_path(rest: &str) -> String {
    if rest.is_empty() {
        return String::new();
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in rest.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut p = format!("/{}", out.join("/"));
    if rest.ends_with('/') && !p.ends_with('/') {
        p.push('/');
    }
    p
}

/// A URL the backend sent (a redirect, a link in HTML) made to point under the proxy path
/// `prefix`, as upstream's `Transport.rewriteURL`: relative URLs and URLs on other hosts stay
/// as they are; `backend` is the backend's authority, `request_host` the client's Host.
pub fn rewrite_url(target: &str, prefix: &str, backend: &str, request_host: &str) -> String {
    let (scheme, rest) = match target.split_once("://") {
        Some((s, r)) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()) => {
            (Some(s), r)
        }
        _ => (None, target),
    };
    let (host, path_etc) = if scheme.is_some() {
        match rest.find(['/', '?', '#']) {
            Some(i) => (Some(&rest[..i]), &rest[i..]),
            None => (Some(rest), ""),
        }
    } else if let Some(r) = target.strip_prefix("//") {
        match r.find(['/', '?', '#']) {
            Some(i) => (Some(&r[..i]), &r[i..]),
            None => (Some(r), ""),
        }
    } else {
        (None, target)
    };
    let host = host.unwrap_or("");
    let different_host = !host.is_empty() && host != backend && host != request_host;
    if different_host || !path_etc.starts_with('/') {
        return target.to_owned();
    }
    let split = path_etc.find(['?', '#']).unwrap_or(path_etc.len());
    let (path, tail) = path_etc.split_at(split);
    // Upstream keeps the scheme and host only when the URL already names the client's host.
    let keep = !host.is_empty() && host == request_host;
    let head = if keep {
        match scheme {
            Some(s) => format!("{s}://{host}"),
            None => format!("//{host}"),
        }
    } else {
        String::new()
    };
    if path.starts_with(prefix) {
        return format!("{head}{path}{tail}");
    }
    let joined = backend_path(&format!("{prefix}{path}"));
    format!("{head}{joined}{tail}")
}

/// The URL-valued attributes of HTML tags upstream rewrites.
fn url_attributes(tag: &str) -> &'static [&'static str] {
    match tag {
        "a" | "area" | "base" | "link" => &["href"],
        "applet" => &["codebase"],
        "audio" | "embed" | "script" | "source" => &["src"],
        "blockquote" | "del" | "ins" | "q" => &["cite"],
        "body" => &["background"],
        "button" => &["formaction"],
        "command" => &["icon"],
        "form" => &["action"],
        "frame" | "iframe" => &["longdesc", "src"],
        "head" => &["profile"],
        "html" => &["manifest"],
        "img" => &["longdesc", "src", "usemap"],
        "input" => &["src", "usemap", "formaction"],
        "object" => &["classid", "codebase", "data", "usemap"],
        "video" => &["poster", "src"],
        _ => &[],
    }
}

/// Rewrites the URL-valued attributes of the tags in `html` with `rewrite`; everything else
/// is copied as it is.
pub fn rewrite_html(html: &str, rewrite: impl Fn(&str) -> String) -> String {
    let b = html.as_bytes();
    let mut out = String::with_capacity(html.len() + 256);
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        if html[i..].starts_with("<!--") {
            i = html[i..].find("-->").map_or(b.len(), |e| i + e + 3);
            continue;
        }
        let name_start = i + 1;
        let mut j = name_start;
        while j < b.len() && b[j].is_ascii_alphanumeric() {
            j += 1;
        }
        let tag = html[name_start..j].to_ascii_lowercase();
        let attrs = url_attributes(&tag);
        // Walk the attributes up to '>'.
        while j < b.len() && b[j] != b'>' {
            if b[j].is_ascii_whitespace() || b[j] == b'/' {
                j += 1;
                continue;
            }
            let key_start = j;
            while j < b.len() && !matches!(b[j], b'=' | b'>' | b'/') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            let key = html[key_start..j].to_ascii_lowercase();
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= b.len() || b[j] != b'=' {
                continue;
            }
            j += 1;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let (value_start, value_end) = match b.get(j) {
                Some(q @ (b'"' | b'\'')) => {
                    let close = html[j + 1..]
                        .find(*q as char)
                        .map_or(b.len(), |e| j + 1 + e);
                    let span = (j + 1, close);
                    j = (close + 1).min(b.len());
                    span
                }
                _ => {
                    let s = j;
                    while j < b.len() && b[j] != b'>' && !b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    (s, j)
                }
            };
            if attrs.contains(&key.as_str()) {
                out.push_str(&html[copied..value_start]);
                out.push_str(&rewrite(&html[value_start..value_end]));
                copied = value_end;
            }
        }
        i = j;
    }
    out.push_str(&html[copied..]);
    out
}

/// Serves a `pods/{id}/proxy[/...]` or `services/{id}/proxy[/...]` request.
pub async fn serve(api: &Api, path: &ResourcePath, req: Request<Incoming>) -> Response<Body> {
    match proxy(api, path, req).await {
        Ok(resp) => resp,
        Err(e) => respond::error(&e),
    }
}

async fn proxy(api: &Api, path: &ResourcePath, req: Request<Incoming>) -> Result<Response<Body>> {
    if !matches!(
        *req.method(),
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS
    ) {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {}",
            req.method()
        )));
    }
    let namespace = path
        .namespace
        .as_deref()
        .ok_or_else(ApiError::not_found_path)?;
    let id_text = path.name.as_deref().ok_or_else(ApiError::not_found_path)?;
    let service = path.resource == "services";
    let what = if service { "service" } else { "pod" };
    let id = split_id(id_text)
        .ok_or_else(|| ApiError::bad_request(format!("invalid {what} request \"{id_text}\"")))?;
    api.cache.wait_fresh().await?;
    let location = if service {
        let svc = object(api, "", "services", namespace, &id.name)?;
        let slices = slices_of(api, namespace, &id.name)?;
        let refs: Vec<&Value> = slices.iter().map(|s| s.as_ref()).collect();
        let start = rand::random_range(0..usize::MAX / 2);
        choose_endpoint(&svc, &refs, &id, start, |pod, ip| {
            object(api, "", "pods", namespace, pod).is_ok_and(|p| pod_ips(&p).contains(&ip))
        })?
    } else {
        let pod = object(api, "", "pods", namespace, &id.name)?;
        pod_location(&pod, &id)?
    };
    let raw = req.uri().path().to_owned();
    let (prefix, rest) = split_proxy_path(&raw).ok_or_else(ApiError::not_found_path)?;
    let backend = backend_path(rest);
    let query = req.uri().query().map(str::to_owned);
    if backend.is_empty() && matches!(*req.method(), Method::GET | Method::HEAD) {
        // As upstream (issue 4958): the root of a proxy is `.../proxy/`.
        let to = match &query {
            Some(q) => format!("{raw}/?{q}"),
            None => format!("{raw}/"),
        };
        let mut resp = Response::new(respond::full(Bytes::new()));
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(v) = HeaderValue::from_str(&to) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(resp);
    }
    forward(location, prefix.to_owned(), backend, query, req).await
}

fn object(api: &Api, group: &str, plural: &str, namespace: &str, name: &str) -> Result<Value> {
    let kind = keelson_kinds::lookup(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))?;
    let cache = api
        .cache
        .resource(kind)
        .ok_or_else(|| ApiError::internal("no cache for resource"))?;
    cache
        .get(&keys::object_key(kind, Some(namespace), name))
        .map(|o| o.value.clone())
        .ok_or_else(|| ApiError::not_found(plural, name))
}

/// The EndpointSlices of Service `name` (label `kubernetes.io/service-name`).
fn slices_of(api: &Api, namespace: &str, name: &str) -> Result<Vec<Arc<Value>>> {
    let kind = keelson_kinds::lookup("discovery.k8s.io", "v1", "endpointslices")
        .ok_or_else(|| ApiError::internal("endpointslices are not served"))?;
    let cache = api
        .cache
        .resource(kind)
        .ok_or_else(|| ApiError::internal("no cache for resource"))?;
    Ok(cache
        .list(&keys::list_prefix(kind, Some(namespace)))
        .into_iter()
        .filter(|o| {
            o.labels()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .and_then(Value::as_str)
                == Some(name)
        })
        .map(|o| Arc::new(o.value.clone()))
        .collect())
}

fn pod_ips(pod: &Value) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("ip")?.as_str()?.parse().ok())
        .collect();
    if let Some(ip) = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
    {
        ips.push(ip);
    }
    ips
}

/// Headers that belong to one hop and are never relayed.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Copies `from` without hop-by-hop headers (and those `Connection` names); an upgrade keeps
/// its `Connection` and `Upgrade` headers.
fn relay_headers(from: &HeaderMap, upgrade: bool) -> HeaderMap {
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !(upgrade && t == "upgrade"))
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in from {
        let n = name.as_str();
        let hop = HOP_BY_HOP.contains(&n) || n == "upgrade" || named.iter().any(|t| t == n);
        let keep_for_upgrade = upgrade && (n == "connection" || n == "upgrade");
        if !hop || keep_for_upgrade {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// An error reaching the backend, as upstream's proxy transport words it.
fn unreachable(detail: impl std::fmt::Display) -> ApiError {
    ApiError::service_unavailable(format!("error trying to reach service: {detail}"))
}

/// A connection to a backend, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connect(loc: &Location) -> Result<Box<dyn Io>> {
    let addr = loc.dial_address();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| unreachable(format!("dial tcp {addr}: i/o timeout")))?
        .map_err(|e| unreachable(format!("dial tcp {addr}: {}", dial_error(&e))))?;
    let _ = tcp.set_nodelay(true);
    if loc.scheme != "https" {
        return Ok(Box::new(tcp));
    }
    let name = rustls::pki_types::ServerName::IpAddress(loc.ip.into());
    let tls = tokio_rustls::TlsConnector::from(insecure_tls()?)
        .connect(name, tcp)
        .await
        .map_err(|e| unreachable(format!("tls: {e}")))?;
    Ok(Box::new(tls))
}

/// A connect error worded as Go's dialer words the common ones.
fn dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        std::io::ErrorKind::HostUnreachable => "connect: no route to host".into(),
        std::io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".into(),
        _ => e.to_string(),
    }
}

async fn forward(
    loc: Location,
    prefix: String,
    backend: String,
    query: Option<String>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>> {
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let request_host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path = if backend.is_empty() { "/" } else { &backend };
    let target = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut headers = relay_headers(req.headers(), upgrade);
    // The apiserver authenticated the client; its credentials go no further.
    headers.remove(header::AUTHORIZATION);
    if !request_host.is_empty()
        && let Ok(v) = HeaderValue::from_str(&request_host)
    {
        headers.insert(header::HOST, v);
    } else if let Ok(v) = HeaderValue::from_str(&loc.authority()) {
        headers.insert(header::HOST, v);
    }
    let forwarded_uri = format!("{prefix}{backend}");
    if let Ok(v) = HeaderValue::from_str(&forwarded_uri) {
        headers.insert(HeaderName::from_static("x-forwarded-uri"), v);
    }
    let method = req.method().clone();
    let mut out = Request::builder()
        .method(method.clone())
        .uri(&target)
        .body(req.into_body())
        .map_err(|e| ApiError::bad_request(format!("invalid proxy request: {e}")))?;
    *out.headers_mut() = headers;

    let io = connect(&loc).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(unreachable)?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(%err, "proxied connection ended with an error");
        }
    });
    let mut resp = sender.send_request(out).await.map_err(unreachable)?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
                (Ok(c), Ok(b)) => (c, b),
                (Err(err), _) | (_, Err(err)) => {
                    tracing::debug!(%err, "proxied upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut backend = TokioIo::new(backend);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        });
        let mut up = Response::new(respond::full(Bytes::new()));
        *up.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *up.headers_mut() = relay_headers(resp.headers(), true);
        return Ok(up);
    }

    let status = resp.status();
    let mut headers = relay_headers(resp.headers(), false);
    headers.remove(header::UPGRADE);
    // As upstream's corsRemovingTransport: the backend's CORS answers do not reach the client.
    let cors: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for k in cors {
        headers.remove(k);
    }
    let backend_host = loc.authority();
    let rewrite = |u: &str| rewrite_url(u, &prefix, &backend_host, &request_host);
    if let Some(to) = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(&rewrite)
    {
        if let Ok(v) = HeaderValue::from_str(&to) {
            headers.insert(header::LOCATION, v);
        }
    } else if is_plain_html(&headers) && method != Method::HEAD {
        let body = Limited::new(resp.into_body(), MAX_REWRITE)
            .collect()
            .await
            .map_err(unreachable)?
            .to_bytes();
        let body = match std::str::from_utf8(&body) {
            Ok(text) => Bytes::from(rewrite_html(text, rewrite)),
            Err(_) => body,
        };
        headers.remove(header::CONTENT_LENGTH);
        let mut r = Response::new(respond::full(body));
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        return Ok(r);
    }
    let mut r = respond::stream("", crate::pod_logs::pump(resp.into_body(), "proxied body"));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    Ok(r)
}

/// Whether a response is HTML without a content encoding (the answers whose links are
/// rewritten).
fn is_plain_html(headers: &HeaderMap) -> bool {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("text/html")
        && headers
            .get(header::CONTENT_ENCODING)
            .is_none_or(|v| v.as_bytes().is_empty() || v.as_bytes() == b"identity")
        && headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .is_none_or(|n| n <= MAX_REWRITE)
}

/// The TLS client config for `https:` targets: like upstream's proxy transport, it does not
/// verify the pod's certificate.
fn insecure_tls() -> Result<Arc<rustls::ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut config = (*keelson_pki::tls::insecure_client_config().ok()?).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(config))
        })
        .clone()
        .ok_or_else(|| ApiError::internal("no TLS client configuration for proxying"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> TargetId {
        split_id(s).unwrap()
    }

    #[test]
    fn ids() {
        assert_eq!(
            split_id("web"),
            Some(TargetId {
                scheme: "http",
                name: "web".into(),
                port: "".into()
            })
        );
        assert_eq!(id("web:8080").port, "8080");
        assert_eq!(id("https:web:443").scheme, "https");
        assert_eq!(id("http:web:").port, "");
        for bad in ["", ":80", "ftp:web:21", "a:b:c:d"] {
            assert_eq!(split_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn pod_targets() {
        let pod = json!({
            "spec": {"containers": [
                {"name": "a"},
                {"name": "b", "ports": [{"name": "http", "containerPort": 8080}, {"containerPort": 9090}]},
            ]},
            "status": {"podIP": "10.42.0.7"},
        });
        let loc = |s: &str| pod_location(&pod, &id(s));
        assert_eq!(loc("p").unwrap().authority(), "10.42.0.7:8080");
        assert_eq!(loc("p:9090").unwrap().authority(), "10.42.0.7:9090");
        assert_eq!(loc("p:http").unwrap().authority(), "10.42.0.7:8080");
        assert_eq!(loc("https:p:8443").unwrap().scheme, "https");
        assert_eq!(loc("p:nope").unwrap_err().code, 503);
        let bare = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"podIP": "fd00::5"}});
        let l = pod_location(&bare, &id("p")).unwrap();
        assert_eq!(
            (l.authority(), l.dial_address()),
            ("[fd00::5]".into(), "[fd00::5]:80".into())
        );
        for status in [
            json!({}),
            json!({"podIP": "127.0.0.1"}),
            json!({"podIP": "169.254.1.1"}),
        ] {
            let p = json!({"spec": {}, "status": status});
            let e = pod_location(&p, &id("p")).unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (400, "address not allowed"));
        }
    }

    fn svc() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "admin", "port": 9000}]},
        })
    }

    fn slice(endpoints: Value) -> Value {
        json!({
            "metadata": {"labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9001}],
            "endpoints": endpoints,
        })
    }

    fn ep(ip: &str, pod: &str, ready: bool) -> Value {
        json!({"addresses": [ip], "conditions": {"ready": ready},
               "targetRef": {"kind": "Pod", "namespace": "ns", "name": pod}})
    }

    #[test]
    fn service_targets() {
        let s = slice(json!([
            ep("10.0.0.1", "a", false),
            ep("10.0.0.2", "b", true),
            ep("10.0.0.3", "c", true),
        ]));
        let all = |_: &str, _: IpAddr| true;
        let pick = |i: &str, start: usize| choose_endpoint(&svc(), &[&s], &id(i), start, all);
        // The port named, or numbered by the Service, maps to the endpoint port of that name;
        // not-ready endpoints are never chosen.
        assert_eq!(pick("web:http", 0).unwrap().authority(), "10.0.0.2:8080");
        assert_eq!(pick("web:80", 1).unwrap().authority(), "10.0.0.3:8080");
        assert_eq!(pick("web:9000", 0).unwrap().authority(), "10.0.0.2:9001");
        assert_eq!(pick("web:admin", 2).unwrap().authority(), "10.0.0.2:9001");
        let e = pick("web:81", 0).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (503, "no service port 81 found for service \"web\"")
        );
        // No port: the unnamed port, which this Service has none of.
        let e = pick("web", 0).unwrap_err();
        assert_eq!(e.message, "no endpoints available for service \"web\"");
        let e = pick("https:web:443", 0).unwrap_err();
        assert_eq!(e.code, 503);
        // Endpoints whose pod does not hold the address are skipped.
        let only_c = |name: &str, _: IpAddr| name == "c";
        let l = choose_endpoint(&svc(), &[&s], &id("web:http"), 0, only_c).unwrap();
        assert_eq!(l.authority(), "10.0.0.3:8080");
        // No endpoints at all.
        let empty = slice(json!([]));
        let e = choose_endpoint(&svc(), &[&empty], &id("web:http"), 0, all).unwrap_err();
        assert_eq!(e.message, "no endpoints available for service \"web\"");
        let e = choose_endpoint(&svc(), &[], &id("web:http"), 0, all).unwrap_err();
        assert_eq!(e.message, "no endpoints available for service \"web\"");
        // All not ready: the request's id in the message, as upstream.
        let down = slice(json!([ep("10.0.0.1", "a", false)]));
        let e = choose_endpoint(&svc(), &[&down], &id("web:http"), 0, all).unwrap_err();
        assert_eq!(e.message, "no endpoints available for service \"web:http\"");
    }

    #[test]
    fn proxy_paths() {
        let cases = [
            (
                "/api/v1/namespaces/default/pods/pod-1:8080/proxy/",
                Some(("/api/v1/namespaces/default/pods/pod-1:8080/proxy", "/")),
            ),
            (
                "/api/v1/namespaces/default/pods/proxy/proxy",
                Some(("/api/v1/namespaces/default/pods/proxy/proxy", "")),
            ),
            (
                "/api/v1/namespaces/d/services/https:web:443/proxy/a/b%20c?x",
                Some((
                    "/api/v1/namespaces/d/services/https:web:443/proxy",
                    "/a/b%20c?x",
                )),
            ),
            ("/api/v1/namespaces/d/pods/p/log", None),
            ("/api/v1/namespaces/d/pods", None),
        ];
        for (raw, want) in cases {
            assert_eq!(split_proxy_path(raw), want, "{raw}");
        }
        assert_eq!(backend_path(""), "");
        assert_eq!(backend_path("/"), "/");
        assert_eq!(backend_path("/a/./b/../c/"), "/a/c/");
        assert_eq!(backend_path("/../../etc//passwd"), "/etc/passwd");
    }

    #[test]
    fn url_rewrites() {
        let p = "/api/v1/namespaces/d/pods/p:80/proxy";
        let r = |u: &str| rewrite_url(u, p, "10.0.0.5:80", "localhost:8001");
        assert_eq!(r("/login?next=/"), format!("{p}/login?next=/"));
        assert_eq!(r("/"), format!("{p}/"));
        assert_eq!(r("http://10.0.0.5:80/x/"), format!("{p}/x/"));
        assert_eq!(
            r("http://localhost:8001/x"),
            format!("http://localhost:8001{p}/x")
        );
        assert_eq!(r(&format!("{p}/already")), format!("{p}/already"));
        assert_eq!(r("http://example.com/x"), "http://example.com/x");
        assert_eq!(r("relative/path"), "relative/path");
        assert_eq!(r("#top"), "#top");
    }

    #[test]
    fn html_rewrites() {
        let html = r#"<html><head><link rel="stylesheet" href="/s.css"></head>
<body><!-- <a href="/not"> --><a class=x href='/a/b'>a</a> <img src=/i.png alt="/no">
<p title="/keep">x < y</p><form action="/post" method=post></form></body></html>"#;
        let out = rewrite_html(html, |u| format!("/P{u}"));
        assert_eq!(
            out,
            r#"<html><head><link rel="stylesheet" href="/P/s.css"></head>
<body><!-- <a href="/not"> --><a class=x href='/P/a/b'>a</a> <img src=/P/i.png alt="/no">
<p title="/keep">x < y</p><form action="/P/post" method=post></form></body></html>"#
        );
    }

    #[test]
    fn relayed_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Drop"),
        );
        h.insert("x-drop", HeaderValue::from_static("1"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let out = relay_headers(&h, false);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep"]);
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        assert!(is_upgrade(&h));
        let out = relay_headers(&h, true);
        assert!(out.contains_key(header::UPGRADE) && out.contains_key(header::CONNECTION));
    }
}
