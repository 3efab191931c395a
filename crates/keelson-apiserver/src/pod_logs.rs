//! `GET pods/{name}/log`: resolves the pod, its container and its node, then streams the
//! container's log from the node's agent over HTTPS (`/containerLogs/...`, client certificate
//! `kube-apiserver-kubelet-client`), as upstream's `LogLocation` and `LocationStreamer` do.
//! The agent's error `Status` is handed on to the client with its code.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use keelson_apimachinery::{ApiError, FieldError};
use serde_json::Value;

use crate::Api;
use crate::keys;
use crate::request::{ResourcePath, query_pairs};
use crate::respond::{self, Body};

/// How long connecting to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The kubelet port used when a node does not publish its own.
const DEFAULT_AGENT_PORT: u16 = 10250;
/// How much of an agent's error body is read.
const MAX_ERROR_BODY: usize = 64 * 1024;

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The parameters of a log request (upstream's `PodLogOptions`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogParams {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

impl LogParams {
    /// Parses and validates the query of a log request; `pod` names the pod in messages.
    pub fn parse(query: Option<&str>, pod: &str) -> Result<LogParams> {
        let mut p = LogParams::default();
        for (k, v) in query_pairs(query) {
            match k.as_str() {
                "container" => p.container = Some(v).filter(|s| !s.is_empty()),
                "follow" => p.follow = boolean(&k, &v)?,
                "previous" => p.previous = boolean(&k, &v)?,
                "timestamps" => p.timestamps = boolean(&k, &v)?,
                "sinceSeconds" => p.since_seconds = Some(integer(&k, &v)?),
                "sinceTime" => {
                    let t: jiff::Timestamp = v.parse().map_err(|_| {
                        ApiError::bad_request(format!(
                            "sinceTime: invalid value {v:?}: not an RFC3339 time"
                        ))
                    })?;
                    p.since_time = Some(t.to_string());
                }
                "tailLines" => p.tail_lines = Some(integer(&k, &v)?),
                "limitBytes" => p.limit_bytes = Some(integer(&k, &v)?),
                _ => {}
            }
        }
        let mut errors = Vec::new();
        if let Some(n) = p.tail_lines.filter(|n| *n < 0) {
            errors.push(FieldError::invalid(
                "tailLines",
                n,
                "must be greater than or equal to 0",
            ));
        }
        if let Some(n) = p.limit_bytes.filter(|n| *n < 1) {
            errors.push(FieldError::invalid(
                "limitBytes",
                n,
                "must be greater than 0",
            ));
        }
        match (p.since_seconds, &p.since_time) {
            (Some(_), Some(_)) => errors.push(FieldError::forbidden(
                "",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            )),
            (Some(n), None) if n < 1 => errors.push(FieldError::invalid(
                "sinceSeconds",
                n,
                "must be greater than 0",
            )),
            _ => {}
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid("PodLogOptions", pod, &errors));
        }
        Ok(p)
    }

    /// The query of the agent's `containerLogs` request.
    fn agent_query(&self) -> String {
        let mut q: Vec<String> = Vec::new();
        for (name, on) in [
            ("follow", self.follow),
            ("previous", self.previous),
            ("timestamps", self.timestamps),
        ] {
            if on {
                q.push(format!("{name}=true"));
            }
        }
        for (name, value) in [
            ("sinceSeconds", self.since_seconds),
            ("tailLines", self.tail_lines),
            ("limitBytes", self.limit_bytes),
        ] {
            if let Some(v) = value {
                q.push(format!("{name}={v}"));
            }
        }
        if let Some(t) = &self.since_time {
            q.push(format!("sinceTime={}", t.replace('+', "%2B")));
        }
        q.join("&")
    }
}

fn boolean(name: &str, v: &str) -> Result<bool> {
    match v {
        "" | "true" | "1" | "t" | "T" | "True" | "TRUE" => Ok(true),
        "false" | "0" | "f" | "F" | "False" | "FALSE" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{name}: invalid value {v:?}: not a boolean"
        ))),
    }
}

fn integer(name: &str, v: &str) -> Result<i64> {
    v.parse()
        .map_err(|_| ApiError::bad_request(format!("{name}: invalid value {v:?}: not an integer")))
}

/// The container a log request reads: the one named, or the only one (upstream's
/// `validateContainer`).
pub fn pick_container(pod: &Value, pod_name: &str, wanted: Option<&str>) -> Result<String> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name")?.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    match wanted {
        None => match containers.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod_name}"
            ))),
            _ => {
                let mut all = names("initContainers");
                all.extend(containers);
                all.extend(names("ephemeralContainers"));
                Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                    all.join(" ")
                )))
            }
        },
        Some(name) => {
            let known = ["containers", "initContainers", "ephemeralContainers"]
                .iter()
                .any(|f| names(f).iter().any(|n| n == name));
            if known {
                Ok(name.to_owned())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {name} is not valid for pod {pod_name}"
                )))
            }
        }
    }
}

/// Where a node's agent listens: its InternalIP (else Hostname, else ExternalIP) and the
/// kubelet endpoint port it publishes.
pub fn agent_address(node: &Value, node_name: &str) -> Result<(String, u16)> {
    let addresses: Vec<(&str, &str)> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| Some((x.get("type")?.as_str()?, x.get("address")?.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let host = ["InternalIP", "Hostname", "ExternalIP"]
        .iter()
        .find_map(|want| {
            addresses
                .iter()
                .find(|(t, a)| t == want && !a.is_empty())
                .map(|(_, a)| a.to_string())
        })
        .ok_or_else(|| {
            ApiError::internal(format!(
                "no preferred addresses found for node {node_name}; known addresses: {addresses:?}"
            ))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_AGENT_PORT);
    Ok((host, port))
}

/// Serves `GET /api/v1/namespaces/{ns}/pods/{name}/log`.
pub async fn serve(api: &Api, path: &ResourcePath, req: Request<Incoming>) -> Response<Body> {
    match logs(api, path, req).await {
        Ok(resp) => resp,
        Err(e) => respond::error(&e),
    }
}

async fn logs(api: &Api, path: &ResourcePath, req: Request<Incoming>) -> Result<Response<Body>> {
    let namespace = path
        .namespace
        .as_deref()
        .ok_or_else(ApiError::not_found_path)?;
    let name = path.name.as_deref().ok_or_else(ApiError::not_found_path)?;
    let params = LogParams::parse(req.uri().query(), name)?;
    api.cache.wait_fresh().await?;
    let pod = object(api, "pods", Some(namespace), name)?;
    let container = pick_container(&pod, name, params.container.as_deref())?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node_name.is_empty() {
        // As upstream: a pod not yet on a node has no logs.
        return Ok(respond::bytes_response(200, "text/plain", Bytes::new()));
    }
    let node = object(api, "nodes", None, node_name)?;
    let (host, port) = agent_address(&node, node_name)?;
    let Some(tls) = api.config.kubelet_client.clone() else {
        return Err(ApiError::service_unavailable(format!(
            "no client certificate for node agents is configured; cannot reach the agent of node {node_name}"
        )));
    };
    let query = params.agent_query();
    let agent_path = format!(
        "/containerLogs/{namespace}/{name}/{container}{}{query}",
        if query.is_empty() { "" } else { "?" }
    );
    let url = format!("https://{}{agent_path}", join_host_port(&host, port));
    // As upstream, a transport error is a 500 of unknown reason (`Error from server: ...`).
    let resp = fetch(tls, &host, port, &agent_path)
        .await
        .map_err(|e| ApiError {
            code: 500,
            reason: "",
            message: format!("Get {url:?}: {e}"),
            details: None,
        })?;
    if resp.status() != StatusCode::OK {
        return Err(agent_error(resp).await);
    }
    Ok(respond::stream(
        "text/plain",
        pump(resp.into_body(), "agent log stream"),
    ))
}

pub(crate) fn object(
    api: &Api,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value> {
    let kind = keelson_kinds::lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))?;
    let cache = api
        .cache
        .resource(kind)
        .ok_or_else(|| ApiError::internal("no cache for resource"))?;
    cache
        .get(&keys::object_key(kind, namespace, name))
        .map(|o| o.value.clone())
        .ok_or_else(|| ApiError::not_found(plural, name))
}

pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Sends `GET path` to the agent over HTTPS (HTTP/1.1) and returns its response head.
async fn fetch(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    path: &str,
) -> std::result::Result<Response<Incoming>, String> {
    let stream = connect_agent(tls, host, port).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(%err, "agent connection ended with an error");
        }
    });
    let req = Request::get(path)
        .header(http::header::HOST, join_host_port(host, port))
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// Opens a TLS connection (ALPN `http/1.1`, the kubelet client certificate) to an agent; the
/// error is worded as Go's dialer words it.
pub(crate) async fn connect_agent(
    tls: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
) -> std::result::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let server_name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("invalid agent address {host:?}: {e}"))?;
    let mut config = (*tls).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| {
                format!(
                    "dial tcp {}: {}",
                    join_host_port(host, port),
                    dial_error(&e)
                )
            })?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("dial tcp {}: i/o timeout", join_host_port(host, port)))?
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

/// The agent's error as the client's: its `Status` when it sent one, else its text.
async fn agent_error(resp: Response<Incoming>) -> ApiError {
    let code = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_ERROR_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let status: Option<Value> = serde_json::from_slice(&body).ok();
    let message = match status
        .as_ref()
        .filter(|s| s.get("kind").and_then(Value::as_str) == Some("Status"))
        .and_then(|s| s.get("message")?.as_str())
    {
        Some(m) => m.to_owned(),
        None => String::from_utf8_lossy(&body).trim().to_owned(),
    };
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    ApiError {
        code,
        reason,
        message,
        details: None,
    }
}

/// Copies a backend's body (the agent's, a pod's) into a channel the response streams from;
/// stops when either side goes away. `what` names the stream in the debug log.
pub(crate) fn pump(mut body: Incoming, what: &'static str) -> tokio::sync::mpsc::Receiver<Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = tx.closed() => return,
            };
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && tx.send(data).await.is_err()
                    {
                        return;
                    }
                }
                Some(Err(err)) => {
                    tracing::debug!(%err, "{what} broke off");
                    return;
                }
                None => return,
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a"}, {"name": "b"}],
        }})
    }

    #[test]
    fn containers() {
        let one = json!({"spec": {"containers": [{"name": "only"}]}});
        let none = json!({"spec": {}});
        let cases: [(&Value, Option<&str>, Result<&str, &str>); 6] = [
            (&one, None, Ok("only")),
            (&pod(), Some("b"), Ok("b")),
            (&pod(), Some("init"), Ok("init")),
            (
                &pod(),
                None,
                Err("a container name must be specified for pod p, choose one of: [init a b]"),
            ),
            (&pod(), Some("z"), Err("container z is not valid for pod p")),
            (
                &none,
                None,
                Err("a container name must be specified for pod p"),
            ),
        ];
        for (pod, wanted, want) in cases {
            let got = pick_container(pod, "p", wanted);
            match want {
                Ok(name) => assert_eq!(got.unwrap(), name),
                Err(msg) => {
                    let e = got.unwrap_err();
                    assert_eq!((e.code, e.message.as_str()), (400, msg));
                }
            }
        }
    }

    #[test]
    fn params() {
        let p = LogParams::parse(
            Some("container=a&follow=true&tailLines=2&sinceTime=2024-05-01T12%3A00%3A00%2B02%3A00&timestamps=1"),
            "p",
        )
        .unwrap();
        assert_eq!(p.container.as_deref(), Some("a"));
        assert_eq!(
            p.agent_query(),
            "follow=true&timestamps=true&tailLines=2&sinceTime=2024-05-01T10:00:00Z"
        );
        let e = LogParams::parse(Some("tailLines=-1&sinceSeconds=0"), "p").unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PodLogOptions \"p\" is invalid: [tailLines: Invalid value: -1: must be greater than or equal to 0, sinceSeconds: Invalid value: 0: must be greater than 0]"
        );
        let e = LogParams::parse(Some("sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z"), "p")
            .unwrap_err();
        assert_eq!(
            e.message,
            "PodLogOptions \"p\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
        );
        assert_eq!(
            LogParams::parse(Some("follow=x"), "p").unwrap_err().code,
            400
        );
    }

    #[test]
    fn addresses() {
        let node = |addresses: Value, port: Value| json!({"status": {"addresses": addresses, "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
        let cases = [
            (
                node(
                    json!([{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}]),
                    json!(11250),
                ),
                Ok(("10.0.0.5", 11250)),
            ),
            (
                node(json!([{"type": "Hostname", "address": "n1"}]), json!(0)),
                Ok(("n1", 10250)),
            ),
            (node(json!([]), json!(1)), Err(500)),
        ];
        for (n, want) in cases {
            let got = agent_address(&n, "n1");
            match want {
                Ok((h, p)) => assert_eq!(got.unwrap(), (h.to_owned(), p)),
                Err(code) => assert_eq!(got.unwrap_err().code, code),
            }
        }
    }
}
