//! The agent's HTTPS endpoint, as the kubelet's port 10250: `GET /containerLogs/{ns}/{pod}/
//! {container}`, the streaming upgrades `/exec/{ns}/{pod}/{container}`, `/attach/...` (see
//! [`crate::exec`]) and `/portForward/{ns}/{pod}`, for the API server (client certificates
//! signed by the cluster CA, authorized for `kube-apiserver-kubelet-client` or
//! `system:masters`), and an open `/healthz`. Errors are `Status` objects carrying upstream's
//! messages, which the API server hands on to kubectl.

use std::convert::Infallible;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keelson_apimachinery::ApiError;
use keelson_pki::Identity;
use keelson_pki::tls::{self, ADMIN_GROUP, KUBELET_CLIENT_USER};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::exec::{self, StreamSource};
use crate::logs::{self, LogOptions};

/// Errors of setting up and running the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot issue the serving certificate of node {node}: {source}")]
    Certificate {
        node: String,
        source: keelson_pki::tls::Error,
    },
    #[error("cannot accept connections: {0}")]
    Accept(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the log files of this node's containers are.
#[async_trait]
pub trait LogSource: Send + Sync + 'static {
    /// The log file of a container of a pod on this node; `previous` = the last terminated
    /// instance.
    async fn log_file(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogFile, LogError>;
}

/// A container's log file and whether the container still writes to it.
pub struct LogFile {
    pub path: PathBuf,
    /// `false` once the container exited (a dropped sender counts as exited).
    pub running: watch::Receiver<bool>,
}

impl LogFile {
    /// The log of a container that has exited.
    pub fn exited(path: PathBuf) -> LogFile {
        let (_, running) = watch::channel(false);
        LogFile { path, running }
    }
}

/// Why a container's log cannot be served, with the kubelet's messages.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("pods {pod:?} not found")]
    PodNotFound { namespace: String, pod: String },
    #[error("container {container:?} not found in pod {pod:?}")]
    ContainerNotFound { pod: String, container: String },
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    PreviousNotFound { pod: String, container: String },
    /// `detail` is what the kubelet says about the waiting reason; see [`LogError::waiting`].
    #[error("container {container:?} in pod {pod:?} is waiting to start: {detail}")]
    Waiting {
        pod: String,
        container: String,
        detail: String,
    },
    #[error("container {container:?} in pod {pod:?} is terminated")]
    Terminated { pod: String, container: String },
    #[error("{0}")]
    Internal(String),
}

impl LogError {
    /// A container that has not started, with its waiting reason (`ContainerCreating`,
    /// `ErrImagePull`, ...) worded as the kubelet words it.
    pub fn waiting(pod: &str, container: &str, reason: &str) -> LogError {
        let detail = match reason {
            "ErrImagePull" => "image can't be pulled",
            "ImagePullBackOff" => "trying and failing to pull image",
            other => other,
        };
        LogError::Waiting {
            pod: pod.to_owned(),
            container: container.to_owned(),
            detail: detail.to_owned(),
        }
    }

    /// The `Status` error the endpoint answers with.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            LogError::PodNotFound { pod, .. } => ApiError::not_found("pods", pod),
            LogError::ContainerNotFound { .. } => ApiError {
                code: 404,
                reason: "NotFound",
                message: self.to_string(),
                details: None,
            },
            LogError::Internal(message) => ApiError::internal(message.clone()),
            _ => ApiError::bad_request(self.to_string()),
        }
    }
}

/// A serving configuration for the agent: a certificate for `node_name` and `ips` issued by the
/// cluster CA, ALPN `h2` and `http/1.1`, client certificates verified against the CA.
pub fn agent_tls(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    node_name: &str,
    ips: &[IpAddr],
) -> Result<Arc<ServerConfig>> {
    let error = |source| Error::Certificate {
        node: node_name.to_owned(),
        source,
    };
    let mut sans = vec![node_name.to_owned()];
    sans.extend(ips.iter().map(IpAddr::to_string));
    let (cert, key) = tls::issue_serving_cert(
        ca_cert_pem,
        ca_key_pem,
        &format!("system:node:{node_name}"),
        &sans,
    )
    .map_err(error)?;
    let pki = keelson_pki::tls::Pki {
        ca_cert_pem: ca_cert_pem.to_owned(),
        ca_key_pem: String::new(),
        server_cert_pem: cert,
        server_key_pem: key,
        admin_cert_pem: String::new(),
        admin_key_pem: String::new(),
    };
    tls::server_config(&pki).map_err(error)
}

/// Serves the endpoint on `listener` until accepting fails; each connection on its own task.
/// Without a [`StreamSource`], exec, attach and port-forward are not found.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    source: Arc<dyn LogSource>,
) -> Result<()> {
    serve_with_streams(listener, tls, source, None).await
}

/// [`serve`], with exec, attach and port-forward served from `streams`.
pub async fn serve_with_streams(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    source: Arc<dyn LogSource>,
    streams: Option<Arc<dyn StreamSource>>,
) -> Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = listener.accept().await.map_err(Error::Accept)?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let source = source.clone();
        let streams = streams.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(err) => {
                    tracing::debug!(%err, "agent endpoint: tls handshake failed");
                    return;
                }
            };
            let identity = Arc::new(tls::peer_identity(stream.get_ref().1));
            let service = hyper::service::service_fn(move |req| {
                let source = source.clone();
                let streams = streams.clone();
                let identity = identity.clone();
                async move {
                    Ok::<_, Infallible>(
                        route(
                            source.as_ref(),
                            streams.as_deref(),
                            identity.as_ref().as_ref(),
                            req,
                        )
                        .await,
                    )
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(err) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%err, "agent endpoint: connection ended with an error");
            }
        });
    }
}

/// The body of the endpoint's answers.
pub type Body = BoxBody<Bytes, logs::Error>;

/// Serves one request (logs only).
pub async fn handle<B>(
    source: &dyn LogSource,
    identity: Option<&Identity>,
    req: Request<B>,
) -> Response<Body> {
    route(source, None, identity, req).await
}

/// Serves one request: logs, and streams when `streams` is given.
pub async fn route<B>(
    source: &dyn LogSource,
    streams: Option<&dyn StreamSource>,
    identity: Option<&Identity>,
    req: Request<B>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    let Some(identity) = identity else {
        return status(&ApiError::unauthorized());
    };
    if !authorized(identity) {
        return status(&ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "Forbidden (user={}, verb=get, resource=nodes, subresource=proxy)",
                identity.user
            ),
            details: None,
        });
    }
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let req = match streams {
        Some(streams) => match stream_route(streams, &segments, req).await {
            Ok(resp) => return resp,
            Err(req) => req,
        },
        None => req,
    };
    let [route, namespace, pod, container] = segments.as_slice() else {
        return status(&ApiError::not_found_path());
    };
    if route != "containerLogs" || [namespace, pod, container].iter().any(|s| s.is_empty()) {
        return status(&ApiError::not_found_path());
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return status(&ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {}",
            req.method()
        )));
    }
    let pairs = query_pairs(req.uri().query().unwrap_or(""));
    match container_logs(source, namespace, pod, container, &pairs).await {
        Ok(resp) => resp,
        Err(err) => status(&err),
    }
}

async fn container_logs(
    source: &dyn LogSource,
    namespace: &str,
    pod: &str,
    container: &str,
    pairs: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let bad = |e: logs::Error| ApiError::bad_request(e.to_string());
    let opts = LogOptions::from_query(pairs, jiff::Timestamp::now()).map_err(bad)?;
    let previous = match pairs.iter().rev().find(|(k, _)| k == "previous") {
        Some((_, v)) => match v.as_str() {
            "" | "true" | "1" | "t" | "T" | "True" | "TRUE" => true,
            "false" | "0" | "f" | "F" | "False" | "FALSE" => false,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "invalid value {v:?} for parameter previous: not a boolean"
                )));
            }
        },
        None => false,
    };
    let file = source
        .log_file(namespace, pod, container, previous)
        .await
        .map_err(|e| e.to_api_error())?;
    let lines = logs::stream(&file.path, opts, file.running)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let body = StreamBody::new(lines.map(|chunk| chunk.map(Frame::data)));
    let mut resp = Response::new(BodyExt::boxed(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}

/// Serves `/exec/...`, `/attach/...` and `/portForward/...`; hands the request back when the
/// path is none of them.
async fn stream_route<B>(
    streams: &dyn StreamSource,
    segments: &[String],
    req: Request<B>,
) -> std::result::Result<Response<Body>, Request<B>> {
    let kind = match segments.first().map(String::as_str) {
        Some("exec") => exec::Kind::Exec,
        Some("attach") => exec::Kind::Attach,
        Some("portForward") => {
            let [_, namespace, pod] = segments else {
                return Ok(status(&ApiError::not_found_path()));
            };
            let Some(sandbox) = streams.sandbox(namespace, pod).await else {
                return Ok(status(&ApiError::not_found("pods", pod)));
            };
            return Ok(port_forward(sandbox, req).await);
        }
        _ => return Err(req),
    };
    let [_, namespace, pod, container] = segments else {
        return Ok(status(&ApiError::not_found_path()));
    };
    if [namespace, pod, container].iter().any(|s| s.is_empty()) {
        return Ok(status(&ApiError::not_found_path()));
    }
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return Ok(status(&ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {}",
            req.method()
        ))));
    }
    let pairs = query_pairs(req.uri().query().unwrap_or(""));
    Ok(exec::serve(kind, streams, [namespace, pod, container], &pairs, req).await)
}

/// `/portForward/{ns}/{pod}`: served by `portforward.rs`.
async fn port_forward<B>(sandbox: exec::PodSandbox, req: Request<B>) -> Response<Body> {
    crate::portforward::serve(sandbox, req).await
}

/// The API server's kubelet client, and cluster admins.
fn authorized(identity: &Identity) -> bool {
    identity.user == KUBELET_CLIENT_USER || identity.groups.iter().any(|g| g == ADMIN_GROUP)
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// An error answer: the error's `Status` with its code.
pub(crate) fn status(err: &ApiError) -> Response<Body> {
    let body = serde_json::to_vec(&err.to_status()).unwrap_or_default();
    let mut resp = Response::new(full(body));
    *resp.status_mut() =
        StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Decoded query parameters (`+` is a space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node with one pod `p` in `default`: container `a` running, `b` waiting, `c` exited
    /// once before (its previous log is `a`'s file).
    struct Fake {
        dir: tempfile::TempDir,
    }

    #[async_trait]
    impl LogSource for Fake {
        async fn log_file(
            &self,
            namespace: &str,
            pod: &str,
            container: &str,
            previous: bool,
        ) -> Result<LogFile, LogError> {
            if namespace != "default" || pod != "p" {
                return Err(LogError::PodNotFound {
                    namespace: namespace.into(),
                    pod: pod.into(),
                });
            }
            let path = self.dir.path().join("a.log");
            match (container, previous) {
                ("a", false) => Ok(LogFile::exited(path)),
                ("a", true) => Err(LogError::PreviousNotFound {
                    pod: pod.into(),
                    container: container.into(),
                }),
                ("b", _) => Err(LogError::waiting(pod, container, "ErrImagePull")),
                ("c", true) => Ok(LogFile::exited(path)),
                _ => Err(LogError::ContainerNotFound {
                    pod: pod.into(),
                    container: container.into(),
                }),
            }
        }
    }

    fn apiserver() -> Identity {
        Identity {
            user: KUBELET_CLIENT_USER.into(),
            groups: vec![],
        }
    }

    async fn get(fake: &Fake, identity: Option<Identity>, uri: &str) -> (u16, String) {
        let req = Request::get(uri).body(()).unwrap();
        let resp = handle(fake, identity.as_ref(), req).await;
        let code = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        let body = match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => format!("{} {}", v["reason"].as_str().unwrap_or(""), v["message"]),
            Err(_) => body,
        };
        (code, body)
    }

    #[tokio::test]
    async fn requests() {
        let fake = Fake {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(
            fake.dir.path().join("a.log"),
            "2024-05-01T10:00:00Z stdout F hello\n2024-05-01T10:00:01Z stderr F world\n",
        )
        .unwrap();
        let admin = Identity {
            user: "someone".into(),
            groups: vec!["system:masters".into()],
        };
        let node = Identity {
            user: "system:node:n1".into(),
            groups: vec!["system:nodes".into()],
        };
        let cases: Vec<(Option<Identity>, &str, u16, &str)> = vec![
            (None, "/healthz", 200, "ok"),
            (
                None,
                "/containerLogs/default/p/a",
                401,
                "Unauthorized \"Unauthorized\"",
            ),
            (
                Some(node),
                "/containerLogs/default/p/a",
                403,
                "Forbidden \"Forbidden (user=system:node:n1, verb=get, resource=nodes, subresource=proxy)\"",
            ),
            (
                Some(apiserver()),
                "/containerLogs/default/p/a",
                200,
                "hello\nworld\n",
            ),
            (
                Some(admin),
                "/containerLogs/default/p/a?tailLines=1",
                200,
                "world\n",
            ),
            (
                Some(apiserver()),
                "/containerLogs/default/p/a?timestamps=true&limitBytes=36",
                200,
                "2024-05-01T10:00:00.000000000Z hello",
            ),
            (
                Some(apiserver()),
                "/containerLogs/default/p/c?previous=true&sinceTime=2024-05-01T10%3A00%3A01Z",
                200,
                "world\n",
            ),
            (
                Some(apiserver()),
                "/containerLogs/default/p/a?previous=true",
                400,
                "BadRequest \"previous terminated container \\\"a\\\" in pod \\\"p\\\" not found\"",
            ),
            (
                Some(apiserver()),
                "/containerLogs/default/p/b",
                400,
                "BadRequest \"container \\\"b\\\" in pod \\\"p\\\" is waiting to start: image can't be pulled\"",
            ),
            (
                Some(apiserver()),
                "/containerLogs/default/q/a",
                404,
                "NotFound \"pods \\\"q\\\" not found\"",
            ),
            (
                Some(apiserver()),
                "/containerLogs/default/p/z",
                404,
                "NotFound \"container \\\"z\\\" not found in pod \\\"p\\\"\"",
            ),
            (
                Some(apiserver()),
                "/containerLogs/default/p/a?tailLines=-2",
                400,
                "BadRequest \"invalid value \\\"-2\\\" for parameter tailLines: must be greater than or equal to 0\"",
            ),
            (
                Some(apiserver()),
                "/containerLogs/default/p",
                404,
                "NotFound \"the server could not find the requested resource\"",
            ),
        ];
        for (identity, uri, code, body) in cases {
            let got = get(&fake, identity, uri).await;
            assert_eq!(got, (code, body.to_owned()), "{uri}");
        }
    }

    /// Sends `GET path` over TLS (with the client certificate, if any) and returns the
    /// response's status line.
    async fn status_line(port: u16, client: Arc<rustls::ClientConfig>, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: n1\r\nConnection: close\r\n\r\n");
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        tls.read_to_end(&mut resp).await.unwrap();
        let resp = String::from_utf8_lossy(&resp).into_owned();
        resp.lines().next().unwrap_or("").to_owned()
    }

    #[tokio::test]
    async fn client_certificates_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let pki = tls::load_or_create(&dir.path().join("pki"), &[]).unwrap();
        let fake = Fake { dir };
        std::fs::write(fake.dir.path().join("a.log"), "").unwrap();
        let config = agent_tls(
            &pki.ca_cert_pem,
            &pki.ca_key_pem,
            "n1",
            &[IpAddr::from([127, 0, 0, 1])],
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(listener, config, Arc::new(fake)));
        let client = |user: &str, groups: &[&str]| {
            let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
            let (cert, key) =
                tls::issue_client_cert(&pki.ca_cert_pem, &pki.ca_key_pem, user, &groups).unwrap();
            tls::client_config(&pki.ca_cert_pem, &cert, &key).unwrap()
        };
        let anonymous = tls::anonymous_client_config(&pki.ca_cert_pem).unwrap();
        let logs = "/containerLogs/default/p/a";
        for (config, path, want) in [
            (anonymous.clone(), "/healthz", "HTTP/1.1 200 OK"),
            (anonymous, logs, "HTTP/1.1 401 Unauthorized"),
            (
                client("system:node:n1", &["system:nodes"]),
                logs,
                "HTTP/1.1 403 Forbidden",
            ),
            (client(KUBELET_CLIENT_USER, &[]), logs, "HTTP/1.1 200 OK"),
            (
                client("admin", &["system:masters"]),
                logs,
                "HTTP/1.1 200 OK",
            ),
        ] {
            assert_eq!(status_line(port, config, path).await, want, "{path}");
        }
        server.abort();
    }

    #[test]
    fn waiting_messages() {
        for (reason, want) in [
            (
                "ContainerCreating",
                "container \"c\" in pod \"p\" is waiting to start: ContainerCreating",
            ),
            (
                "ImagePullBackOff",
                "container \"c\" in pod \"p\" is waiting to start: trying and failing to pull image",
            ),
        ] {
            assert_eq!(LogError::waiting("p", "c", reason).to_string(), want);
        }
    }
}
