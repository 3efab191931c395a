//! `kubectl port-forward` on the node, as the kubelet (with containerd's streaming server) does
//! it: `/portForward/{ns}/{pod}` upgrades to SPDY/3.1 (`X-Stream-Protocol-Version:
//! portforward.k8s.io`), or to a WebSocket with subprotocol `SPDY/3.1+portforward.k8s.io` whose
//! binary messages carry the same SPDY byte stream (kubectl 1.31+). Per forwarded connection the
//! client opens an error stream and a data stream (headers `streamType`, `port`, `requestID`);
//! the agent connects to the port on localhost inside the pod's network namespace ([`Dialer`]),
//! copies both ways with half-close, and writes upstream's message to the error stream when the
//! connection cannot be made.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use keelson_spdy::{Headers, IncomingStream, Role, Session, Stream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role as WsRole;

use crate::exec::PodSandbox;
use crate::server::{self, Body};

/// The SPDY subprotocol of port-forward (`X-Stream-Protocol-Version`).
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol that tunnels it (kubectl 1.31+).
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// How long the second stream of a pair may keep the first waiting (the kubelet's
/// `streamCreationTimeout` default).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to the pod's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection to the pod's port could not be made; the message is what the error stream
/// carries after `error forwarding port P to pod S, uid : `.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to find the network namespace of sandbox {sandbox:?}: {detail}")]
    Netns { sandbox: String, detail: String },
    #[error("failed to execute portforward in network namespace {netns:?}: {source}")]
    InNetns {
        netns: String,
        #[source]
        source: Box<Error>,
    },
    #[error(
        "failed to connect to localhost:{port} inside namespace {sandbox:?}, IPv4: {v4} IPv6 {v6} "
    )]
    Connect {
        port: u16,
        sandbox: String,
        v4: String,
        v6: String,
    },
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Connects to a port of a pod, as a process inside the pod would reach it on localhost.
#[async_trait]
pub trait Dialer: Send + Sync + 'static {
    async fn dial(&self, sandbox: &PodSandbox, port: u16) -> Result<TcpStream>;
}

/// Serves `/portForward/{ns}/{pod}` for `sandbox`, connecting through the pod's network
/// namespace ([`NetnsDialer`]).
pub async fn serve<B>(sandbox: PodSandbox, req: Request<B>) -> Response<Body> {
    serve_with(Arc::new(NetnsDialer::default()), sandbox, req).await
}

/// How the client asked to upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// `Upgrade: SPDY/3.1` with `X-Stream-Protocol-Version: portforward.k8s.io`.
    Spdy,
    /// A WebSocket with subprotocol `SPDY/3.1+portforward.k8s.io`; the `Sec-WebSocket-Accept`.
    WebSocket { accept: String },
}

/// A refused upgrade: the status code and the kubelet's plain-text message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: StatusCode,
    pub message: String,
}

fn tokens<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Decides how to upgrade a port-forward request, with upstream's answers when it cannot.
pub fn negotiate(headers: &HeaderMap) -> Result<Upgrade, Refusal> {
    let bad = |code: StatusCode, message: String| Refusal { code, message };
    let upgrades: Vec<String> = tokens(headers, "upgrade").collect();
    let connection_upgrade =
        tokens(headers, "connection").any(|t| t.eq_ignore_ascii_case("upgrade"));
    if upgrades.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .and_then(|k| k.to_str().ok());
        let (true, Some(key)) = (connection_upgrade, key) else {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                "unable to upgrade: missing websocket upgrade headers in request".into(),
            ));
        };
        let offered: Vec<String> = tokens(headers, "sec-websocket-protocol").collect();
        if !offered.iter().any(|p| p == WEBSOCKET_PROTOCOL) {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts [\"{WEBSOCKET_PROTOCOL}\"]"
                ),
            ));
        }
        return Ok(Upgrade::WebSocket {
            accept: derive_accept_key(key.as_bytes()),
        });
    }
    let spdy = upgrades.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1"));
    if !spdy || !connection_upgrade {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request".into(),
        ));
    }
    let versions: Vec<String> = tokens(headers, "x-stream-protocol-version").collect();
    if versions.is_empty() {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required".into(),
        ));
    }
    if !versions.iter().any(|v| v == PROTOCOL) {
        return Err(bad(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {versions:?}, server accepts [\"{PROTOCOL}\"]"
            ),
        ));
    }
    Ok(Upgrade::Spdy)
}

/// [`serve`] with a given dialer.
pub async fn serve_with<B>(
    dialer: Arc<dyn Dialer>,
    sandbox: PodSandbox,
    mut req: Request<B>,
) -> Response<Body> {
    let upgrade = match negotiate(req.headers()) {
        Ok(u) => u,
        Err(refusal) => {
            let mut resp = Response::new(server::full(refusal.message));
            *resp.status_mut() = refusal.code;
            if refusal.code == StatusCode::FORBIDDEN {
                resp.headers_mut().insert(
                    "X-Accepted-Stream-Protocol-Versions",
                    HeaderValue::from_static(PROTOCOL),
                );
            }
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return resp;
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let websocket = matches!(upgrade, Upgrade::WebSocket { .. });
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(err) => {
                tracing::debug!(%err, "port-forward: upgrade failed");
                return;
            }
        };
        if websocket {
            let ws = WebSocketStream::from_raw_socket(upgraded, WsRole::Server, None).await;
            forward_session(WsIo::new(ws), dialer, sandbox).await;
        } else {
            forward_session(upgraded, dialer, sandbox).await;
        }
    });
    let mut resp = Response::new(server::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match upgrade {
        Upgrade::Spdy => {
            h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            h.insert(
                "X-Stream-Protocol-Version",
                HeaderValue::from_static(PROTOCOL),
            );
        }
        Upgrade::WebSocket { accept } => {
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            if let Ok(v) = HeaderValue::from_str(&accept) {
                h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
            }
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(WEBSOCKET_PROTOCOL),
            );
        }
    }
    resp
}

/// A WebSocket as a byte stream: binary messages in and out (kubectl's `TunnelingConnection`
/// does the same on its side); a Close frame or the end of the connection reads as EOF.
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
}

impl<S> WsIo<S> {
    pub fn new(ws: WebSocketStream<S>) -> WsIo<S> {
        WsIo {
            ws,
            pending: Bytes::new(),
        }
    }
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.ws.poll_next_unpin(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Text(text))) => {
                    self.pending = Bytes::from(text.as_str().to_owned())
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Poll::Ready(Ok(())),
                Some(Ok(_)) => {}
            }
        }
        let n = self.pending.len().min(buf.remaining());
        let chunk = self.pending.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.ws.poll_ready_unpin(cx)).map_err(ws_error)?;
        self.ws
            .start_send_unpin(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(ws_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ws.poll_flush_unpin(cx).map_err(ws_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(self.ws.poll_close_unpin(cx)) {
            Ok(()) | Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(ws_error(e))),
        }
    }
}

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
    since: Option<Instant>,
}

/// What a stream's headers ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRequest {
    pub kind: StreamKind,
    pub port: u16,
    pub request_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    Error,
    Data,
}

/// Reads a stream's headers as the kubelet does; the error is the reason the stream is refused.
/// Clients older than `requestID` get one made from the stream id (error: id, data: id − 2).
pub fn stream_request(headers: &Headers, stream_id: u32) -> Result<StreamRequest, String> {
    let kind = match headers.get("streamType") {
        Some("error") => StreamKind::Error,
        Some("data") => StreamKind::Data,
        other => return Err(format!("invalid stream type {:?}", other.unwrap_or(""))),
    };
    let port = match headers.get("port") {
        None | Some("") => return Err("\"port\" header is required".into()),
        Some(p) => match p.parse::<u32>() {
            Ok(0) => return Err(format!("port {p:?} must be > 0")),
            Ok(n) if n <= u16::MAX as u32 => n as u16,
            _ => return Err(format!("unable to parse {p:?} as a port")),
        },
    };
    let request_id = match headers.get("requestID").filter(|r| !r.is_empty()) {
        Some(r) => r.to_owned(),
        None => match kind {
            StreamKind::Error => stream_id.to_string(),
            StreamKind::Data => stream_id.saturating_sub(2).to_string(),
        },
    };
    Ok(StreamRequest {
        kind,
        port,
        request_id,
    })
}

/// Serves one SPDY session of port-forward streams over `io` until the client goes away.
pub async fn forward_session<T>(io: T, dialer: Arc<dyn Dialer>, sandbox: PodSandbox)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (session, mut incoming) = Session::new(io, Role::Server);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let sandbox = Arc::new(sandbox);
    loop {
        let next_expiry = pairs
            .values()
            .filter_map(|p| p.since)
            .min()
            .map(|t| t + PAIR_TIMEOUT);
        let expired = async {
            match next_expiry {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            next = incoming.accept() => {
                let Some(stream) = next else { break };
                if let Some((id, pair)) = add(&mut pairs, stream).await {
                    pairs.remove(&id);
                    tokio::spawn(forward(pair, dialer.clone(), sandbox.clone()));
                }
            }
            _ = expired => {
                let now = Instant::now();
                let old: Vec<String> = pairs
                    .iter()
                    .filter(|(_, p)| p.since.is_some_and(|t| now >= t + PAIR_TIMEOUT))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in old {
                    if let Some(pair) = pairs.remove(&id)
                        && let Some(mut err) = pair.error
                    {
                        let _ = err.write_all(b"timed out waiting for streams").await;
                        let _ = err.shutdown().await;
                    }
                }
            }
        }
    }
    drop(session);
}

/// Files a new stream under its request; returns the pair once both streams are there.
async fn add(
    pairs: &mut HashMap<String, Pair>,
    incoming: IncomingStream,
) -> Option<(String, Pair)> {
    let request = match stream_request(incoming.headers(), incoming.id()) {
        Ok(r) => r,
        Err(reason) => {
            tracing::debug!(%reason, "port-forward: refusing a stream");
            let _ = incoming.reject().await;
            return None;
        }
    };
    let entry = pairs.entry(request.request_id.clone()).or_default();
    let taken = match request.kind {
        StreamKind::Error => entry.error.is_some(),
        StreamKind::Data => entry.data.is_some(),
    };
    if taken {
        tracing::debug!(request = %request.request_id, "port-forward: stream already assigned");
        let _ = incoming.reject().await;
        return None;
    }
    let stream = incoming.accept().await.ok()?;
    entry.since.get_or_insert_with(Instant::now);
    match request.kind {
        StreamKind::Error => entry.error = Some(stream),
        StreamKind::Data => entry.data = Some(stream),
    }
    if entry.error.is_some() && entry.data.is_some() {
        return pairs.remove_entry(&request.request_id);
    }
    None
}

/// One forwarded connection: dial, then copy both ways until both sides are done.
async fn forward(pair: Pair, dialer: Arc<dyn Dialer>, sandbox: Arc<PodSandbox>) {
    let (Some(mut error), Some(mut data)) = (pair.error, pair.data) else {
        return;
    };
    let port = stream_request(data.headers(), data.id())
        .map(|r| r.port)
        .unwrap_or_default();
    match dialer.dial(&sandbox, port).await {
        Ok(mut conn) => {
            let _ = conn.set_nodelay(true);
            if let Err(err) =
                tokio::io::copy_bidirectional_with_sizes(&mut data, &mut conn, 64 * 1024, 64 * 1024)
                    .await
            {
                tracing::debug!(%err, port, "port-forward: copy ended");
            }
        }
        Err(err) => {
            let message = format!(
                "error forwarding port {port} to pod {}, uid : {err}",
                sandbox.sandbox_id
            );
            tracing::debug!(%message, "port-forward");
            let _ = error.write_all(message.as_bytes()).await;
        }
    }
    let _ = error.shutdown().await;
    let _ = data.shutdown().await;
}

/// Connects inside the pod's network namespace: finds a process of the sandbox (its cgroup
/// path names the sandbox, as containerd lays cgroups out), then, on a thread of its own that
/// enters `/proc/PID/ns/net`, connects to 127.0.0.1 and then [::1] as containerd does.
pub struct NetnsDialer {
    /// `/proc`, or a fake one in tests.
    pub proc_root: PathBuf,
}

impl Default for NetnsDialer {
    fn default() -> Self {
        NetnsDialer {
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// The lowest pid whose cgroup path names `sandbox_id` (the sandbox's pause process).
pub fn sandbox_pid(proc_root: &Path, sandbox_id: &str) -> Result<u32> {
    let not_found = |detail: String| Error::Netns {
        sandbox: sandbox_id.to_owned(),
        detail,
    };
    if sandbox_id.len() < 12 {
        return Err(not_found("sandbox id is too short".into()));
    }
    let entries = std::fs::read_dir(proc_root)
        .map_err(|e| not_found(format!("cannot read {}: {e}", proc_root.display())))?;
    let mut best: Option<u32> = None;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if best.is_some_and(|b| b < pid) {
            continue;
        }
        let Ok(cgroups) = std::fs::read_to_string(entry.path().join("cgroup")) else {
            continue;
        };
        let names_sandbox = cgroups.lines().any(|line| {
            let path = line.splitn(3, ':').nth(2).unwrap_or("");
            path.split(['/', '-', '.', ':'])
                .any(|part| part == sandbox_id)
        });
        if names_sandbox {
            best = Some(pid);
        }
    }
    best.ok_or_else(|| not_found("no process of the sandbox is running".into()))
}

/// Go's wording of a connect error: `dial tcp4 127.0.0.1:80: connect: connection refused`.
fn dial_error(network: &str, addr: SocketAddr, err: &io::Error) -> String {
    let text = err.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
    let mut chars = text.chars();
    let text = match chars.next() {
        Some(c) => c.to_lowercase().collect::<String>() + chars.as_str(),
        None => text,
    };
    format!("dial {network} {addr}: connect: {text}")
}

fn connect_in_netns(netns: &Path, port: u16, sandbox: &str) -> Result<std::net::TcpStream> {
    use std::os::fd::AsRawFd;
    let io = |e: io::Error| Error::Io(format!("{}: {e}", netns.display()));
    let file = std::fs::File::open(netns).map_err(io)?;
    // SAFETY: setns on a valid descriptor; it changes only this (short-lived) thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io(io::Error::last_os_error()));
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let err4 = match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => return Ok(s),
        Err(e) => dial_error("tcp4", v4, &e),
    };
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let err6 = match std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT) {
        Ok(s) => return Ok(s),
        Err(e) => dial_error("tcp6", v6, &e),
    };
    Err(Error::Connect {
        port,
        sandbox: sandbox.to_owned(),
        v4: err4,
        v6: err6,
    })
}

#[async_trait]
impl Dialer for NetnsDialer {
    async fn dial(&self, sandbox: &PodSandbox, port: u16) -> Result<TcpStream> {
        let root = self.proc_root.clone();
        let id = sandbox.sandbox_id.clone();
        let pid = tokio::task::spawn_blocking(move || sandbox_pid(&root, &id))
            .await
            .map_err(|e| Error::Io(e.to_string()))??;
        let netns = self.proc_root.join(pid.to_string()).join("ns").join("net");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let path = netns.clone();
        let id = sandbox.sandbox_id.clone();
        // A thread of its own: it leaves the host's namespace and ends after connecting.
        std::thread::Builder::new()
            .name("portforward-dial".into())
            .spawn(move || {
                let _ = tx.send(connect_in_netns(&path, port, &id));
            })
            .map_err(|e| Error::Io(format!("cannot start a thread: {e}")))?;
        let stream = rx
            .await
            .map_err(|_| Error::Io("the connecting thread died".into()))?
            .map_err(|source| Error::InNetns {
                netns: netns.display().to_string(),
                source: Box::new(source),
            })?;
        stream
            .set_nonblocking(true)
            .map_err(|e| Error::Io(e.to_string()))?;
        TcpStream::from_std(stream).map_err(|e| Error::Io(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_cri::fake::FakeRuntime;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    fn sandbox() -> PodSandbox {
        PodSandbox {
            namespace: "default".into(),
            name: "web".into(),
            uid: "uid-1".into(),
            sandbox_id: "0123456789abcdef0123".into(),
            ip: Some("10.0.0.2".into()),
            runtime: Arc::new(FakeRuntime::new()),
        }
    }

    /// Port P of the pod is this test's listener on 127.0.0.1 when it is in the map.
    struct Fake(HashMap<u16, SocketAddr>);

    #[async_trait]
    impl Dialer for Fake {
        async fn dial(&self, sandbox: &PodSandbox, port: u16) -> Result<TcpStream> {
            match self.0.get(&port) {
                Some(addr) => TcpStream::connect(addr)
                    .await
                    .map_err(|e| Error::Io(e.to_string())),
                None => Err(Error::Connect {
                    port,
                    sandbox: sandbox.sandbox_id.clone(),
                    v4: format!("dial tcp4 127.0.0.1:{port}: connect: connection refused"),
                    v6: format!("dial tcp6 [::1]:{port}: connect: connection refused"),
                }),
            }
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn negotiation() {
        let spdy = headers(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "portforward.k8s.io"),
        ]);
        assert_eq!(negotiate(&spdy), Ok(Upgrade::Spdy));
        let ws = headers(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Protocol", "SPDY/3.1+portforward.k8s.io"),
        ]);
        assert_eq!(
            negotiate(&ws),
            Ok(Upgrade::WebSocket {
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            })
        );
        let no_version = headers(&[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")]);
        assert_eq!(
            negotiate(&no_version).unwrap_err().message,
            "unable to upgrade: X-Stream-Protocol-Version is required"
        );
        let wrong = headers(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ]);
        assert_eq!(negotiate(&wrong).unwrap_err().code, StatusCode::FORBIDDEN);
        let ws_exec = headers(&[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", "x"),
            ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
        ]);
        assert!(
            negotiate(&ws_exec)
                .unwrap_err()
                .message
                .contains("unable to negotiate protocol")
        );
        assert_eq!(
            negotiate(&HeaderMap::new()).unwrap_err().message,
            "unable to upgrade: missing upgrade headers in request"
        );
    }

    #[test]
    fn stream_headers() {
        let h = Headers::new()
            .with("streamType", "data")
            .with("port", "8080")
            .with("requestID", "4");
        assert_eq!(
            stream_request(&h, 3),
            Ok(StreamRequest {
                kind: StreamKind::Data,
                port: 8080,
                request_id: "4".into()
            })
        );
        let old = Headers::new().with("streamType", "data").with("port", "80");
        assert_eq!(stream_request(&old, 7).unwrap().request_id, "5");
        let old = Headers::new()
            .with("streamType", "error")
            .with("port", "80");
        assert_eq!(stream_request(&old, 5).unwrap().request_id, "5");
        let check = |h: Headers, want: &str| assert_eq!(stream_request(&h, 1).unwrap_err(), want);
        check(
            Headers::new().with("streamType", "stdin").with("port", "1"),
            "invalid stream type \"stdin\"",
        );
        check(
            Headers::new().with("streamType", "data"),
            "\"port\" header is required",
        );
        check(
            Headers::new().with("streamType", "data").with("port", "0"),
            "port \"0\" must be > 0",
        );
        check(
            Headers::new().with("streamType", "data").with("port", "x"),
            "unable to parse \"x\" as a port",
        );
        check(
            Headers::new()
                .with("streamType", "data")
                .with("port", "70000"),
            "unable to parse \"70000\" as a port",
        );
    }

    /// A server on 127.0.0.1 that answers each connection with what it read, upper-cased,
    /// after the client's FIN.
    async fn upper_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    c.read_to_end(&mut got).await.unwrap();
                    c.write_all(&got.to_ascii_uppercase()).await.unwrap();
                });
            }
        });
        addr
    }

    async fn open_pair(client: &Session, port: u16, id: u32) -> (Stream, Stream) {
        let h = |t: &str| {
            Headers::new()
                .with("streamType", t)
                .with("port", &port.to_string())
                .with("requestID", &id.to_string())
        };
        let mut error = client.open(h("error")).await.unwrap();
        error.shutdown().await.unwrap();
        let data = client.open(h("data")).await.unwrap();
        (error, data)
    }

    #[tokio::test]
    async fn forwards_connections_and_reports_a_closed_port() {
        let addr = upper_server().await;
        let dialer = Arc::new(Fake(HashMap::from([(8080, addr)])));
        let (a, b) = tokio::io::duplex(64 * 1024);
        tokio::spawn(forward_session(b, dialer, sandbox()));
        let (client, _incoming) = Session::new(a, Role::Client);

        let mut tasks = Vec::new();
        for i in 0..6u32 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let (mut error, data) = open_pair(&client, 8080, i).await;
                let (mut r, mut w) = tokio::io::split(data);
                let body: Vec<u8> = (0..(1 << 20) + i as usize)
                    .map(|j| b"abcxyz"[j % 6])
                    .collect();
                let expect = body.to_ascii_uppercase();
                let writer = tokio::spawn(async move {
                    w.write_all(&body).await.unwrap();
                    w.shutdown().await.unwrap();
                });
                let mut back = Vec::new();
                r.read_to_end(&mut back).await.unwrap();
                writer.await.unwrap();
                assert!(back == expect, "connection {i} came back different");
                let mut msg = String::new();
                error.read_to_string(&mut msg).await.unwrap();
                assert_eq!(msg, "");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }

        let (mut error, mut data) = open_pair(&client, 81, 100).await;
        let mut msg = String::new();
        error.read_to_string(&mut msg).await.unwrap();
        assert_eq!(
            msg,
            "error forwarding port 81 to pod 0123456789abcdef0123, uid : failed to connect to \
             localhost:81 inside namespace \"0123456789abcdef0123\", IPv4: dial tcp4 \
             127.0.0.1:81: connect: connection refused IPv6 dial tcp6 [::1]:81: connect: \
             connection refused "
        );
        let mut rest = Vec::new();
        data.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn bad_streams_are_refused() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        tokio::spawn(forward_session(
            b,
            Arc::new(Fake(HashMap::new())),
            sandbox(),
        ));
        let (client, _incoming) = Session::new(a, Role::Client);
        // Refused: the reply carries FIN, so the stream reads EOF at once.
        let mut s = client
            .open(Headers::new().with("streamType", "stdin").with("port", "1"))
            .await
            .unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
    }

    /// kubectl's side of the tunnel: binary WebSocket messages carry SPDY; here the whole
    /// session runs through it, as kubectl 1.31+ drives it.
    #[tokio::test]
    async fn spdy_session_through_the_websocket_tunnel() {
        let addr = upper_server().await;
        let dialer = Arc::new(Fake(HashMap::from([(80, addr)])));
        let (ws_client_io, ws_server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let ws = WebSocketStream::from_raw_socket(ws_server_io, WsRole::Server, None).await;
            forward_session(WsIo::new(ws), dialer, sandbox()).await;
        });
        let ws = WebSocketStream::from_raw_socket(ws_client_io, WsRole::Client, None).await;
        let (client, _incoming) = Session::new(WsIo::new(ws), Role::Client);
        let (mut error, mut data) = open_pair(&client, 80, 1).await;
        data.write_all(b"through the tunnel").await.unwrap();
        data.shutdown().await.unwrap();
        let mut back = String::new();
        data.read_to_string(&mut back).await.unwrap();
        assert_eq!(back, "THROUGH THE TUNNEL");
        let mut msg = String::new();
        error.read_to_string(&mut msg).await.unwrap();
        assert_eq!(msg, "");
    }

    #[test]
    fn finds_the_sandbox_process_by_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let id = "4f1c0ffee0123456789abcdef";
        let put = |pid: &str, cgroup: &str| {
            let dir = root.path().join(pid);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        };
        put("1", "0::/init.scope\n");
        put("40", &format!("12:memory:/k8s.io/{id}0\n"));
        put(
            "77",
            &format!("12:memory:/k8s.io/{id}\n3:cpu:/k8s.io/{id}\n"),
        );
        put("90", &format!("0::/kubepods/cri-containerd-{id}.scope\n"));
        put("self", "0::/\n");
        assert_eq!(sandbox_pid(root.path(), id).unwrap(), 77);
        let err = sandbox_pid(root.path(), "ffffffffffffffff").unwrap_err();
        assert_eq!(
            err.to_string(),
            "failed to find the network namespace of sandbox \"ffffffffffffffff\": no process of \
             the sandbox is running"
        );
    }

    #[test]
    fn connect_errors_read_as_go_prints_them() {
        let err = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(
            dial_error("tcp4", "127.0.0.1:80".parse().unwrap(), &err),
            "dial tcp4 127.0.0.1:80: connect: connection refused"
        );
    }
}
