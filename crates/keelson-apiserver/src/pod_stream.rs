//! `pods/{name}/exec`, `pods/{name}/attach` and `pods/{name}/portforward`: resolves the pod,
//! its container and its node as upstream's `ExecLocation`, `AttachLocation` and
//! `PortForwardLocation` do, then relays the client's upgrade request (WebSocket or SPDY) to the
//! node agent's kubelet-style path (`/exec/{ns}/{pod}/{container}?command=..&input=1..`,
//! `/attach/...`, `/portForward/{ns}/{pod}`) over HTTPS with the kubelet client certificate.
//! The agent's `101 Switching Protocols` goes back to the client and the two upgraded
//! connections are spliced; any other answer is handed on as it is.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use keelson_apimachinery::ApiError;
use serde_json::Value;

use crate::Api;
use crate::pod_logs::{self, agent_address, connect_agent, join_host_port, pick_container};
use crate::request::{ResourcePath, query_pairs};
use crate::respond::{self, Body};

/// How much of an agent's non-101 answer is read.
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// The request headers an upgrade needs, handed on to the agent.
const UPGRADE_HEADERS: [&str; 6] = [
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Which streaming subresource a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    Exec,
    Attach,
    PortForward,
}

impl Subresource {
    /// The subresource named in a path, if it is a streaming one.
    pub fn parse(name: &str) -> Option<Subresource> {
        match name {
            "exec" => Some(Subresource::Exec),
            "attach" => Some(Subresource::Attach),
            "portforward" => Some(Subresource::PortForward),
            _ => None,
        }
    }
}

/// The options of an exec or attach request (upstream's `PodExecOptions`,
/// `PodAttachOptions`): `stdout` and `stderr` default to true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamParams {
    pub container: Option<String>,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamParams {
    /// Reads the query of an exec or attach request.
    pub fn parse(query: Option<&str>) -> Result<StreamParams> {
        let mut p = StreamParams {
            container: None,
            command: Vec::new(),
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
        };
        for (k, v) in query_pairs(query) {
            match k.as_str() {
                "container" => p.container = Some(v).filter(|s| !s.is_empty()),
                "command" => p.command.push(v),
                "stdin" => p.stdin = boolean(&k, &v)?,
                "stdout" => p.stdout = boolean(&k, &v)?,
                "stderr" => p.stderr = boolean(&k, &v)?,
                "tty" => p.tty = boolean(&k, &v)?,
                _ => {}
            }
        }
        Ok(p)
    }

    /// The kubelet's query: `command` repeated, then `input`, `output`, `error`, `tty` as `1`.
    pub fn agent_query(&self, sub: Subresource) -> String {
        let mut q: Vec<String> = Vec::new();
        if sub == Subresource::Exec {
            q.extend(
                self.command
                    .iter()
                    .map(|c| format!("command={}", encode_component(c))),
            );
        }
        for (name, on) in [
            ("input", self.stdin),
            ("output", self.stdout),
            ("error", self.stderr),
            ("tty", self.tty),
        ] {
            if on {
                q.push(format!("{name}=1"));
            }
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

/// Percent-encodes a query component (everything but RFC 3986's unreserved characters).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Serves a streaming subresource of a pod.
pub async fn serve(
    api: &Api,
    path: &ResourcePath,
    sub: Subresource,
    req: Request<Incoming>,
) -> Response<Body> {
    match relay(api, path, sub, req).await {
        Ok(resp) => resp,
        Err(e) => respond::error(&e),
    }
}

/// The agent path a request goes to, from the pod it names.
fn agent_path(
    pod: &Value,
    namespace: &str,
    name: &str,
    sub: Subresource,
    query: Option<&str>,
) -> Result<String> {
    if sub == Subresource::PortForward {
        let q = query.filter(|q| !q.is_empty());
        return Ok(format!(
            "/portForward/{}/{}{}{}",
            encode_component(namespace),
            encode_component(name),
            if q.is_some() { "?" } else { "" },
            q.unwrap_or("")
        ));
    }
    let params = StreamParams::parse(query)?;
    let container = pick_container(pod, name, params.container.as_deref())?;
    let route = match sub {
        Subresource::Exec => "exec",
        _ => "attach",
    };
    let q = params.agent_query(sub);
    Ok(format!(
        "/{route}/{}/{}/{}{}{q}",
        encode_component(namespace),
        encode_component(name),
        encode_component(&container),
        if q.is_empty() { "" } else { "?" }
    ))
}

async fn relay(
    api: &Api,
    path: &ResourcePath,
    sub: Subresource,
    mut req: Request<Incoming>,
) -> Result<Response<Body>> {
    let namespace = path
        .namespace
        .as_deref()
        .ok_or_else(ApiError::not_found_path)?;
    let name = path.name.as_deref().ok_or_else(ApiError::not_found_path)?;
    if !matches!(*req.method(), http::Method::GET | http::Method::POST) {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {}",
            req.method()
        )));
    }
    api.cache.wait_fresh().await?;
    let pod = pod_logs::object(api, "pods", Some(namespace), name)?;
    let agent_path = agent_path(&pod, namespace, name, sub, req.uri().query())?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let node = pod_logs::object(api, "nodes", None, node_name)?;
    let (host, port) = agent_address(&node, node_name)?;
    let Some(tls) = api.config.kubelet_client.clone() else {
        return Err(ApiError::service_unavailable(format!(
            "no client certificate for node agents is configured; cannot reach the agent of node {node_name}"
        )));
    };
    let url = format!("https://{}{agent_path}", join_host_port(&host, port));
    let transport = |e: String| ApiError {
        code: 500,
        reason: "",
        message: format!("error dialing backend: {e}"),
        details: None,
    };
    let stream = connect_agent(tls, &host, port).await.map_err(transport)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transport(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(%err, "agent stream connection ended with an error");
        }
    });
    let mut forward = Request::builder()
        .method(req.method().clone())
        .uri(&agent_path)
        .header(header::HOST, join_host_port(&host, port));
    for name in UPGRADE_HEADERS {
        for v in req.headers().get_all(name) {
            forward = forward.header(name, v.clone());
        }
    }
    let forward = forward
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut answer = sender
        .send_request(forward)
        .await
        .map_err(|e| transport(format!("{} {url:?}: {e}", req.method())))?;
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(hand_on(answer).await);
    }
    let client_side = hyper::upgrade::on(&mut req);
    let agent_side = hyper::upgrade::on(&mut answer);
    tokio::spawn(async move {
        let (client, agent) = match tokio::try_join!(client_side, agent_side) {
            Ok(both) => both,
            Err(err) => {
                tracing::debug!(%err, "stream upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut agent = TokioIo::new(agent);
        if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut agent).await {
            tracing::debug!(%err, "stream relay ended with an error");
        }
    });
    let mut resp = Response::new(respond::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (k, v) in answer.headers() {
        if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
            resp.headers_mut().append(k.clone(), v.clone());
        }
    }
    Ok(resp)
}

/// The agent's non-101 answer, as it is: code, content type and (bounded) body.
async fn hand_on(answer: Response<Incoming>) -> Response<Body> {
    let code = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let body = Limited::new(answer.into_body(), MAX_ANSWER_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut resp = Response::new(respond::full(body));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("text/plain; charset=utf-8")),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params() {
        let p = StreamParams::parse(Some(
            "command=sh&command=-c&command=echo+a%26b&container=c&stdin=true&stdout=true&tty=true",
        ))
        .unwrap();
        assert_eq!(p.command, ["sh", "-c", "echo a&b"]);
        assert_eq!(
            p.agent_query(Subresource::Exec),
            "command=sh&command=-c&command=echo%20a%26b&input=1&output=1&error=1&tty=1"
        );
        let p = StreamParams::parse(Some("stderr=false&container=x")).unwrap();
        assert_eq!(p.agent_query(Subresource::Attach), "output=1");
        assert_eq!(
            StreamParams::parse(Some("tty=maybe")).unwrap_err().code,
            400
        );
    }

    #[test]
    fn paths() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let cases: [(Subresource, Option<&str>, Result<&str, &str>); 5] = [
            (
                Subresource::Exec,
                Some("container=b&command=hostname&stdout=true&stderr=true"),
                Ok("/exec/ns/p/b?command=hostname&output=1&error=1"),
            ),
            (
                Subresource::Attach,
                Some("container=a&stdin=true&stdout=true&stderr=false"),
                Ok("/attach/ns/p/a?input=1&output=1"),
            ),
            (
                Subresource::Exec,
                Some("container=z&command=ls"),
                Err("container z is not valid for pod p"),
            ),
            (
                Subresource::Exec,
                Some("command=ls"),
                Err("a container name must be specified for pod p, choose one of: [a b]"),
            ),
            (
                Subresource::PortForward,
                Some("ports=8080"),
                Ok("/portForward/ns/p?ports=8080"),
            ),
        ];
        for (sub, query, want) in cases {
            let got = agent_path(&pod, "ns", "p", sub, query);
            match want {
                Ok(p) => assert_eq!(got.unwrap(), p),
                Err(m) => {
                    let e = got.unwrap_err();
                    assert_eq!((e.code, e.message.as_str()), (400, m));
                }
            }
        }
    }

    #[test]
    fn subresources() {
        assert_eq!(Subresource::parse("exec"), Some(Subresource::Exec));
        assert_eq!(
            Subresource::parse("portforward"),
            Some(Subresource::PortForward)
        );
        assert_eq!(Subresource::parse("log"), None);
    }
}
