//! Streaming into containers for `kubectl exec` and `kubectl attach`, as the kubelet's
//! `/exec/{ns}/{pod}/{container}` and `/attach/...`: the request's WebSocket upgrade is accepted
//! with subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io`, the runtime prepares the stream
//! (CRI `Exec`/`Attach` answer a URL on containerd's streaming server), and the agent relays the
//! channels between the client and that URL, which it talks to as the kubelet's clients do: an
//! `Upgrade: SPDY/3.1` with `X-Stream-Protocol-Version: v4.channel.k8s.io` and one SPDY stream
//! per channel (SPDY can half-close stdin; containerd's WebSocket v4 cannot).
//!
//! Channels: 0 stdin, 1 stdout, 2 stderr, 3 error (a `Status`: Success, or Failure with reason
//! `NonZeroExitCode` and a cause `ExitCode`), 4 resize (`{"Width":..,"Height":..}`); v5 adds
//! 255, whose message `[255, 0]` closes the client's stdin.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use keelson_apimachinery::ApiError;
use keelson_cri::{Runtime, cri};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};

use crate::server::{self, Body};

/// The channel protocol with a stdin close signal (kubectl 1.30+).
pub const V5: &str = "v5.channel.k8s.io";
/// The channel protocol with a `Status` on the error channel (kubectl 1.4+, containerd).
pub const V4: &str = "v4.channel.k8s.io";

/// Channel numbers of the `channel.k8s.io` protocols.
pub mod channel {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const ERROR: u8 = 3;
    pub const RESIZE: u8 = 4;
    /// v5 only: `[255, n]` closes channel `n`.
    pub const CLOSE: u8 = 255;
}

/// Errors of relaying a stream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid streaming url {url:?} from the runtime: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot connect to the runtime's streaming server at {url}: {reason}")]
    Connect { url: String, reason: String },
}

/// A pod's sandbox, for port-forwarding (see `portforward.rs`).
#[derive(Clone)]
pub struct PodSandbox {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The runtime's ID of the pod's newest sandbox.
    pub sandbox_id: String,
    /// The pod's IP, when its sandbox has one.
    pub ip: Option<String>,
    /// The CRI runtime (for `PortForward` through containerd).
    pub runtime: Arc<dyn Runtime>,
}

/// What streaming needs from the pods of this node.
#[async_trait]
pub trait StreamSource: Send + Sync + 'static {
    /// The runtime ID of the running instance of `container` in pod `namespace/pod`; `None`
    /// when the pod is not here or the container does not run.
    async fn running_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Option<String>;
    /// The pod's newest sandbox; `None` when the pod is not on this node or has none.
    async fn sandbox(&self, namespace: &str, pod: &str) -> Option<PodSandbox>;
    /// The runtime the containers run on.
    fn runtime(&self) -> Arc<dyn Runtime>;
}

/// Exec (a new process) or attach (the container's own stdio).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
}

/// The kubelet's stream parameters: `command` (repeated), `input`, `output`, `error`, `tty`
/// (`1`/`true`; `stdin`/`stdout`/`stderr` are read as well).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamOptions {
    /// Reads and checks the options of an exec or attach request.
    pub fn from_query(pairs: &[(String, String)], kind: Kind) -> Result<StreamOptions, ApiError> {
        let on = |v: &str| matches!(v, "1" | "true" | "True" | "TRUE" | "t" | "T");
        let mut o = StreamOptions::default();
        for (k, v) in pairs {
            match k.as_str() {
                "command" => o.command.push(v.clone()),
                "input" | "stdin" => o.stdin = on(v),
                "output" | "stdout" => o.stdout = on(v),
                "error" | "stderr" => o.stderr = on(v),
                "tty" => o.tty = on(v),
                _ => {}
            }
        }
        if o.tty {
            // A terminal merges stderr into stdout.
            o.stderr = false;
        }
        if kind == Kind::Exec && o.command.is_empty() {
            return Err(ApiError::bad_request(
                "you must specify at least one command for the container",
            ));
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err(ApiError::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        Ok(o)
    }
}

/// One message of a channel protocol, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Bytes on a channel (possibly none: the streaming server's "connected" signal).
    Data { channel: u8, data: Bytes },
    /// v5: the peer will write no more on this channel.
    Close(u8),
    /// A message with no channel byte, or a close with no channel.
    Invalid,
}

/// Decodes a binary message; `v5` enables the close channel.
pub fn decode(msg: &Bytes, v5: bool) -> Frame {
    match msg.first() {
        None => Frame::Invalid,
        Some(&channel::CLOSE) if v5 => match msg.get(1) {
            Some(&c) => Frame::Close(c),
            None => Frame::Invalid,
        },
        Some(&c) => Frame::Data {
            channel: c,
            data: msg.slice(1..),
        },
    }
}

/// Encodes bytes on a channel.
pub fn encode(channel: u8, data: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Bytes::from(v)
}

/// The `Status` on the error channel when the stream itself failed.
pub fn error_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

/// The subprotocol of a WebSocket upgrade request this endpoint accepts, with the
/// `Sec-WebSocket-Accept` answer; `None` when the request is no WebSocket upgrade.
pub fn negotiate(headers: &HeaderMap) -> Option<Result<(&'static str, String), ApiError>> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::UPGRADE, "websocket") {
        return None;
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| k.to_str().ok())
        .filter(|_| has(header::CONNECTION, "upgrade"));
    let Some(key) = key else {
        return Some(Err(ApiError::bad_request(
            "invalid websocket upgrade: missing Connection: Upgrade or Sec-WebSocket-Key",
        )));
    };
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(',').map(|p| p.trim().to_owned()))
        .collect();
    let chosen = [V5, V4]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p));
    Some(match chosen {
        Some(p) => Ok((p, derive_accept_key(key.as_bytes()))),
        None => Err(ApiError::bad_request(format!(
            "unable to upgrade: no supported subprotocol among [{}] (this node speaks {V5} and {V4})",
            offered.join(", ")
        ))),
    })
}

/// The header a SPDY client lists its stream protocols in, and the server picks one.
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// Whether a request is a SPDY upgrade (kubectl's fallback when the WebSocket upgrade fails),
/// and whether it offers `v4.channel.k8s.io`, the one SPDY protocol served here.
pub fn negotiate_spdy(headers: &HeaderMap) -> Option<Result<(), ApiError>> {
    let spdy = headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.trim().eq_ignore_ascii_case("SPDY/3.1"))
    });
    if !spdy {
        return None;
    }
    let offered: Vec<String> = headers
        .get_all(STREAM_PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(',').map(|p| p.trim().to_owned()))
        .collect();
    Some(if offered.iter().any(|p| p == V4) {
        Ok(())
    } else {
        Err(ApiError {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{V4}\"]"
            ),
            details: None,
        })
    })
}

/// The kubelet's answer when a stream cannot be set up: the message as plain text (kubectl
/// prints `unable to upgrade connection: <message>`).
fn plain_error(code: StatusCode, message: String) -> Response<Body> {
    let mut resp = Response::new(server::full(message));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serves `/exec/{ns}/{pod}/{container}` or `/attach/...`. As the kubelet, a container that
/// does not run is refused before the upgrade is looked at (kubectl's SPDY fallback then
/// prints `unable to upgrade connection: container not found ("c")`).
pub async fn serve<B>(
    kind: Kind,
    source: &dyn StreamSource,
    target: [&str; 3],
    pairs: &[(String, String)],
    mut req: Request<B>,
) -> Response<Body> {
    let [namespace, pod, container] = target;
    let opts = match StreamOptions::from_query(pairs, kind) {
        Ok(o) => o,
        Err(e) => return server::status(&e),
    };
    let Some(id) = source.running_container(namespace, pod, container).await else {
        return plain_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("container not found ({container:?})"),
        );
    };
    let upgrade = match negotiate(req.headers()) {
        None => match negotiate_spdy(req.headers()) {
            Some(Ok(())) => None,
            Some(Err(e)) => return server::status(&e),
            None => {
                return server::status(&ApiError::bad_request(
                    "Upgrade request required".to_owned(),
                ));
            }
        },
        Some(Err(e)) => return server::status(&e),
        Some(Ok(u)) => Some(u),
    };
    let runtime = source.runtime();
    let url = match kind {
        Kind::Exec => {
            runtime
                .exec(cri::ExecRequest {
                    container_id: id,
                    cmd: opts.command.clone(),
                    tty: opts.tty,
                    stdin: opts.stdin,
                    stdout: opts.stdout,
                    stderr: opts.stderr,
                })
                .await
        }
        Kind::Attach => {
            runtime
                .attach(cri::AttachRequest {
                    container_id: id,
                    stdin: opts.stdin,
                    tty: opts.tty,
                    stdout: opts.stdout,
                    stderr: opts.stderr,
                })
                .await
        }
    };
    let url = match url {
        Ok(u) => u,
        Err(keelson_cri::Error::NotFound(_)) => {
            return plain_error(
                StatusCode::NOT_FOUND,
                format!("container not found ({container:?})"),
            );
        }
        Err(e) => return plain_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let backend = match connect_backend(&url, &opts).await {
        Ok(b) => b,
        Err(e) => return plain_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let Some((protocol, accept)) = upgrade else {
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = hyper_util::rt::TokioIo::new(upgraded);
                    relay_spdy(io, backend, &opts).await;
                }
                Err(err) => tracing::debug!(%err, "stream upgrade failed"),
            }
        });
        let mut resp = Response::new(server::full(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert(STREAM_PROTOCOL_HEADER, HeaderValue::from_static(V4));
        return resp;
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = hyper_util::rt::TokioIo::new(upgraded);
                let client = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                relay(client, backend, protocol == V5).await;
            }
            Err(err) => tracing::debug!(%err, "stream upgrade failed"),
        }
    });
    let mut resp = Response::new(server::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    resp
}

/// The runtime's side of a stream: a SPDY/3.1 session with the runtime's streaming server
/// (`v4.channel.k8s.io`) and the streams the options ask for. SPDY, unlike WebSocket v4, can
/// half-close stdin, which `kubectl cp` and piped input need.
struct Backend {
    _session: keelson_spdy::Session,
    error: keelson_spdy::Stream,
    stdin: Option<keelson_spdy::Stream>,
    stdout: Option<keelson_spdy::Stream>,
    stderr: Option<keelson_spdy::Stream>,
    resize: Option<keelson_spdy::Stream>,
}

/// Opens the runtime's stream: an `Upgrade: SPDY/3.1` request to its `http://` URL, then the
/// error, stdin, stdout, stderr and resize streams, in the order the kubelet's client opens them.
async fn connect_backend(url: &str, opts: &StreamOptions) -> Result<Backend, Error> {
    let bad = |reason: String| Error::Url {
        url: url.to_owned(),
        reason,
    };
    let parsed: http::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
    let authority = parsed
        .authority()
        .ok_or_else(|| bad("no host".into()))?
        .clone();
    match parsed.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("TLS streaming is not enabled on this node".into())),
        other => return Err(bad(format!("unknown scheme {other:?}"))),
    }
    let connect_error = |reason: String| Error::Connect {
        url: url.to_owned(),
        reason,
    };
    let tcp = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| connect_error(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(%err, "runtime stream connection ended with an error");
        }
    });
    let request = Request::post(path_and_query(&parsed))
        .header(header::HOST, authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", V4)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| bad(e.to_string()))?;
    let mut resp = sender
        .send_request(request)
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let code = resp.status();
        let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
            resp.into_body(),
            64 * 1024,
        ))
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
        return Err(connect_error(format!(
            "{code}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let upgraded = hyper::upgrade::on(&mut resp)
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    let (session, _incoming) = keelson_spdy::Session::new(
        hyper_util::rt::TokioIo::new(upgraded),
        keelson_spdy::Role::Client,
    );
    let open = |kind: &'static str| {
        let session = session.clone();
        async move {
            session
                .open(keelson_spdy::Headers::new().with("streamType", kind))
                .await
                .map_err(|e| Error::Connect {
                    url: url.to_owned(),
                    reason: format!("cannot open the {kind} stream: {e}"),
                })
        }
    };
    let error = open("error").await?;
    let stdin = if opts.stdin {
        Some(open("stdin").await?)
    } else {
        None
    };
    let stdout = if opts.stdout {
        Some(open("stdout").await?)
    } else {
        None
    };
    let stderr = if opts.stderr && !opts.tty {
        Some(open("stderr").await?)
    } else {
        None
    };
    let resize = if opts.tty {
        Some(open("resize").await?)
    } else {
        None
    };
    Ok(Backend {
        _session: session,
        error,
        stdin,
        stdout,
        stderr,
        resize,
    })
}

fn path_and_query(uri: &http::Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}

/// Serves a SPDY client (kubectl's fallback): accepts the streams it opens (error, stdin, stdout,
/// stderr, resize, as the options say) and copies each to or from the runtime's stream of the
/// same type; an ending stdin half-closes the runtime's.
async fn relay_spdy<T>(io: T, backend: Backend, opts: &StreamOptions)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    use tokio::io::AsyncWriteExt;
    let (session, mut incoming) = keelson_spdy::Session::new(io, keelson_spdy::Role::Server);
    let mut want = 1 + [opts.stdin, opts.stdout, opts.stderr && !opts.tty, opts.tty]
        .iter()
        .filter(|b| **b)
        .count();
    let Backend {
        _session: runtime_session,
        error,
        stdin,
        stdout,
        stderr,
        resize,
    } = backend;
    let mut runtime_side = [Some(error), stdin, stdout, stderr, resize];
    let names = ["error", "stdin", "stdout", "stderr", "resize"];
    let mut outputs = Vec::new();
    let mut inputs = Vec::new();
    let accept_all = async {
        while want > 0 {
            let Some(offer) = incoming.accept().await else {
                return;
            };
            let kind = offer.headers().get("streamType").unwrap_or("").to_owned();
            let Some(i) = names.iter().position(|n| *n == kind) else {
                let _ = offer.reject().await;
                continue;
            };
            let Some(theirs) = runtime_side[i].take() else {
                let _ = offer.reject().await;
                continue;
            };
            let Ok(ours) = offer.accept().await else {
                return;
            };
            want -= 1;
            // stdin and resize flow to the runtime, the others from it.
            let input = kind == "stdin" || kind == "resize";
            let (mut from, mut to) = if input {
                (ours, theirs)
            } else {
                (theirs, ours)
            };
            let copy = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
            });
            if input {
                inputs.push(copy);
            } else {
                outputs.push(copy);
            }
        }
    };
    if tokio::time::timeout(STREAM_CREATION_TIMEOUT, accept_all)
        .await
        .is_err()
    {
        tracing::debug!("spdy client did not open its streams in time");
        return;
    }
    // The output copies end when the runtime ends the command (the error stream last); the
    // input ones may not, as the client may never close them.
    for c in outputs {
        let _ = c.await;
    }
    for c in inputs {
        c.abort();
    }
    drop(runtime_session);
    drop(session);
}

/// How long a SPDY client may take to open its streams (the kubelet's
/// `streamCreationTimeout`).
const STREAM_CREATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Copies one of the runtime's output streams into `tx` as channel messages, until it ends.
fn pump(
    channel: u8,
    mut stream: keelson_spdy::Stream,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(encode(channel, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Copies channels both ways until the runtime's streams end or the client goes away: the
/// client's stdin (and its v5 close) and resize go to the runtime, the runtime's stdout, stderr
/// and error (a `Status`, sent once the command ended) come back; then the client's WebSocket
/// is closed.
async fn relay<C>(client: WebSocketStream<C>, backend: Backend, v5: bool)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    let Backend {
        _session: session,
        error,
        mut stdin,
        stdout,
        stderr,
        mut resize,
    } = backend;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let mut pumps = Vec::new();
    for (c, s) in [(channel::STDOUT, stdout), (channel::STDERR, stderr)] {
        if let Some(s) = s {
            pumps.push(pump(c, s, tx.clone()));
        }
    }
    let pump_aborts: Vec<_> = pumps.iter().map(|p| p.abort_handle()).collect();
    // The error stream's Status, read whole, goes last, after every output byte.
    let finisher = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        for p in pumps.iter_mut() {
            let _ = p.await;
        }
        let mut error = error;
        let mut status = Vec::new();
        let _ = error.read_to_end(&mut status).await;
        if status.is_empty() {
            // The runtime always ends with a Status; without one its session broke off.
            let message = "the runtime's stream ended without a status";
            status = error_status(message).to_string().into_bytes();
        }
        let _ = tx.send(encode(channel::ERROR, &status)).await;
    });
    // The client's input is read on its own task, so a runtime slow to take stdin never holds
    // back the output (the runtime may wait for its output to be read before taking more).
    let (mut sink, mut messages) = client.split();
    let mut input = tokio::spawn(async move {
        while let Some(Ok(msg)) = messages.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            match decode(&data, v5) {
                Frame::Data {
                    channel: channel::STDIN,
                    data,
                } => {
                    if let Some(s) = stdin.as_mut()
                        && s.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Frame::Data {
                    channel: channel::RESIZE,
                    data,
                } => {
                    if let Some(s) = resize.as_mut()
                        && s.write_all(&data).await.is_err()
                    {
                        resize = None;
                    }
                }
                Frame::Close(channel::STDIN) => {
                    if let Some(mut s) = stdin.take() {
                        let _ = s.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    });
    let client_gone = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(msg) => {
                    if sink.send(Message::Binary(msg)).await.is_err() {
                        break true;
                    }
                }
                None => break false,
            },
            _ = &mut input => break true,
        }
    };
    if client_gone {
        // The client went away: drop the runtime's streams so it ends the session.
        finisher.abort();
        for p in pump_aborts {
            p.abort();
        }
    } else {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
        let _ = sink.close().await;
    }
    input.abort();
    drop(session);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options() {
        let o = StreamOptions::from_query(
            &pairs(&[
                ("command", "sh"),
                ("command", "-c"),
                ("command", "exit 3"),
                ("input", "1"),
                ("output", "1"),
                ("error", "1"),
            ]),
            Kind::Exec,
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "exit 3"]);
        assert!(o.stdin && o.stdout && o.stderr && !o.tty);
        let tty = StreamOptions::from_query(
            &pairs(&[
                ("command", "sh"),
                ("stdin", "true"),
                ("stdout", "true"),
                ("stderr", "true"),
                ("tty", "true"),
            ]),
            Kind::Exec,
        )
        .unwrap();
        assert!(tty.tty && !tty.stderr, "a terminal has no separate stderr");
        let attach = StreamOptions::from_query(&pairs(&[("output", "1")]), Kind::Attach).unwrap();
        assert!(attach.command.is_empty() && attach.stdout);
        for (q, kind, want) in [
            (
                vec![("output", "1")],
                Kind::Exec,
                "you must specify at least one command for the container",
            ),
            (
                vec![("command", "ls")],
                Kind::Exec,
                "you must specify at least 1 of stdin, stdout, stderr",
            ),
        ] {
            let e = StreamOptions::from_query(&pairs(&q), kind).unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (400, want));
        }
    }

    #[test]
    fn frames() {
        let b = |s: &[u8]| Bytes::copy_from_slice(s);
        let cases: [(&[u8], bool, Frame); 6] = [
            (
                b"\x00hi",
                true,
                Frame::Data {
                    channel: 0,
                    data: b(b"hi"),
                },
            ),
            (
                b"\x01",
                false,
                Frame::Data {
                    channel: 1,
                    data: Bytes::new(),
                },
            ),
            (b"\xff\x00", true, Frame::Close(0)),
            (
                b"\xff\x00",
                false,
                Frame::Data {
                    channel: 255,
                    data: b(b"\x00"),
                },
            ),
            (b"\xff", true, Frame::Invalid),
            (b"", false, Frame::Invalid),
        ];
        for (msg, v5, want) in cases {
            assert_eq!(decode(&b(msg), v5), want, "{msg:?}");
        }
        assert_eq!(&encode(channel::RESIZE, b"{}")[..], b"\x04{}");
        assert_eq!(
            decode(&encode(channel::STDERR, b"x"), true),
            Frame::Data {
                channel: 2,
                data: b(b"x")
            }
        );
    }

    #[test]
    fn statuses() {
        let e = error_status("boom");
        assert_eq!(
            (e["reason"].as_str(), e["code"].as_i64()),
            (Some("InternalError"), Some(500))
        );
        assert_eq!(e["message"], "Internal error occurred: boom");
    }

    #[test]
    fn upgrades() {
        let headers = |h: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in h {
                m.append(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            m
        };
        let ws = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            // The RFC 6455 example key.
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        let with = |protocols: &str| {
            let mut h = ws.to_vec();
            h.push(("Sec-WebSocket-Protocol", protocols));
            headers(&h)
        };
        assert!(negotiate(&headers(&[("Upgrade", "SPDY/3.1")])).is_none());
        let (p, accept) = negotiate(&with("v4.channel.k8s.io, v5.channel.k8s.io"))
            .unwrap()
            .unwrap();
        assert_eq!((p, accept.as_str()), (V5, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(
            negotiate(&with("channel.k8s.io, v4.channel.k8s.io"))
                .unwrap()
                .unwrap()
                .0,
            V4
        );
        let e = negotiate(&with("base64.channel.k8s.io"))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.code, 400);
        assert!(negotiate(&headers(&ws[..1])).unwrap().is_err());

        // kubectl's SPDY fallback.
        assert!(negotiate_spdy(&with(V5)).is_none());
        let spdy = |versions: &str| {
            headers(&[
                ("Upgrade", "SPDY/3.1"),
                ("Connection", "Upgrade"),
                ("X-Stream-Protocol-Version", versions),
            ])
        };
        assert!(negotiate_spdy(&spdy("v4.channel.k8s.io")).unwrap().is_ok());
        let e = negotiate_spdy(&spdy("channel.k8s.io"))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                403,
                "unable to upgrade: unable to negotiate protocol: client supports [\"channel.k8s.io\"], server supports [\"v4.channel.k8s.io\"]"
            )
        );
    }

    /// A runtime streaming server that upper-cases its stdin onto stdout until stdin ends, then
    /// writes `done` on stderr and a Failure exit 3 on the error stream.
    async fn fake_streaming_server() -> String {
        use std::convert::Infallible;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/exec/token", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(|mut req: Request<hyper::body::Incoming>| {
                let spdy = req
                    .headers()
                    .get(header::UPGRADE)
                    .map(|v| v.as_bytes().to_vec());
                let version = req.headers().get(STREAM_PROTOCOL_HEADER).cloned();
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(on.await.unwrap());
                    let (_session, mut incoming) =
                        keelson_spdy::Session::new(io, keelson_spdy::Role::Server);
                    let mut streams = std::collections::HashMap::new();
                    for _ in 0..4 {
                        let offer = incoming.accept().await.unwrap();
                        let kind = offer.headers().get("streamType").unwrap().to_owned();
                        streams.insert(kind, offer.accept().await.unwrap());
                    }
                    let mut take = |k: &str| streams.remove(k).unwrap();
                    let (mut stdin, mut stdout) = (take("stdin"), take("stdout"));
                    let (mut stderr, mut error) = (take("stderr"), take("error"));
                    let mut input = Vec::new();
                    stdin.read_to_end(&mut input).await.unwrap();
                    stdout.write_all(&input.to_ascii_uppercase()).await.unwrap();
                    stdout.shutdown().await.unwrap();
                    stderr.write_all(b"done").await.unwrap();
                    stderr.shutdown().await.unwrap();
                    let status = json!({"status": "Failure", "reason": "NonZeroExitCode",
                        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}});
                    error
                        .write_all(status.to_string().as_bytes())
                        .await
                        .unwrap();
                    error.shutdown().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                });
                async move {
                    assert_eq!(spdy.as_deref(), Some(&b"SPDY/3.1"[..]));
                    assert_eq!(version.unwrap(), V4);
                    let resp = Response::builder()
                        .status(101)
                        .header(header::UPGRADE, "SPDY/3.1")
                        .header(header::CONNECTION, "Upgrade")
                        .header(STREAM_PROTOCOL_HEADER, V4)
                        .body(http_body_util::Empty::<Bytes>::new())
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .with_upgrades()
                .await;
        });
        url
    }

    #[tokio::test]
    async fn relays_websocket_channels_to_the_runtimes_spdy_streams() {
        let url = fake_streaming_server().await;
        let opts = StreamOptions {
            command: vec!["cat".into()],
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let backend = connect_backend(&url, &opts).await.unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let ours = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let mut kubectl = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let relaying = tokio::spawn(relay(ours, backend, true));
        for msg in [
            encode(channel::STDIN, b"hi "),
            encode(channel::STDIN, b"there"),
        ] {
            kubectl.send(Message::Binary(msg)).await.unwrap();
        }
        // v5: stdin ends, so the command can finish.
        kubectl
            .send(Message::Binary(Bytes::from_static(&[
                channel::CLOSE,
                channel::STDIN,
            ])))
            .await
            .unwrap();
        let mut got: Vec<(u8, String)> = Vec::new();
        let read = async {
            while let Some(Ok(msg)) = kubectl.next().await {
                match msg {
                    Message::Binary(b) => {
                        let (c, d) = b.split_first().unwrap();
                        got.push((*c, String::from_utf8_lossy(d).into_owned()));
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read)
            .await
            .expect("the stream ends once stdin is closed");
        relaying.await.unwrap();
        let (status, output) = got.split_last().expect("messages");
        let mut stdout = String::new();
        let mut stderr = String::new();
        for (c, d) in output {
            match *c {
                channel::STDOUT => stdout.push_str(d),
                channel::STDERR => stderr.push_str(d),
                other => panic!("unexpected channel {other} before the status: {got:?}"),
            }
        }
        assert_eq!((stdout.as_str(), stderr.as_str()), ("HI THERE", "done"));
        assert_eq!(status.0, channel::ERROR, "the status comes last: {got:?}");
        let status: Value = serde_json::from_str(&status.1).unwrap();
        assert_eq!(status["details"]["causes"][0]["message"], "3");
    }
}
