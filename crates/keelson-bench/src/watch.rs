//! Watch fan-out: many watchers of one namespace's ConfigMaps over a few HTTP/2 connections,
//! then timed updates of one ConfigMap, each watcher timing every event it is delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{Api, ClientError};

/// The namespace the watched ConfigMap lives in.
pub const NAMESPACE: &str = "bench-watch";
/// The ConfigMap that is updated.
const TARGET: &str = "target";
/// At most this many watches share one HTTP/2 connection.
pub const STREAMS_PER_CONNECTION: usize = 100;
/// How long watchers may take to be established, and events to arrive after the last update.
const SETTLE: Duration = Duration::from_secs(30);
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("setting up the watched configmap {NAMESPACE}/{TARGET}: {0}")]
    Setup(#[source] Box<ClientError>),
    #[error("the list of configmaps in {NAMESPACE} has no metadata.resourceVersion")]
    NoResourceVersion,
}

/// What the watch phase measured.
#[derive(Clone, Debug, Default)]
pub struct FanOut {
    pub watchers: usize,
    /// Watchers whose watch was established (200 and headers received).
    pub established: usize,
    pub connections: usize,
    /// Updates sent (successful PUTs).
    pub updates: usize,
    pub update_errors: usize,
    /// How long each update (PUT) took; watch latencies include it.
    pub put_latencies: Vec<Duration>,
    /// Events delivered across all watchers, and how many were due (watchers × updates sent).
    pub delivered: usize,
    pub expected: usize,
    /// From each update's send time to each watcher's receipt.
    pub latencies: Vec<Duration>,
    /// Watchers that failed (error answer, ERROR event, stream ended early).
    pub watcher_errors: usize,
    pub first_error: Option<String>,
}

/// The parts of a watch event the bench reads.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: EventObject,
}

#[derive(Deserialize)]
struct EventObject {
    #[serde(default)]
    data: HashMap<String, String>,
    #[serde(default)]
    message: Option<String>,
}

/// What one line of a watch stream means to the bench.
#[derive(Debug, PartialEq)]
enum Line {
    /// A MODIFIED event carrying the send time (ns since the bench's clock base).
    Sent(u64),
    /// An ERROR event, with its message.
    Error(String),
    /// Anything else (other event types, bookmarks).
    Other,
}

fn parse_line(line: &[u8]) -> Result<Line, serde_json::Error> {
    let event: Event = serde_json::from_slice(line)?;
    Ok(match event.kind.as_str() {
        "MODIFIED" => match event.object.data.get("sent").and_then(|s| s.parse().ok()) {
            Some(ns) => Line::Sent(ns),
            None => Line::Other,
        },
        "ERROR" => Line::Error(event.object.message.unwrap_or_default()),
        _ => Line::Other,
    })
}

/// Splits complete newline-terminated lines off the front of `buf`, leaving a partial line.
fn take_lines(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let Some(last) = buf.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    let rest = buf.split_off(last + 1);
    let done = std::mem::replace(buf, rest);
    done.split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect()
}

/// Shared between the watchers and the driver of the phase.
struct Shared {
    /// The clock send times count from.
    base: Instant,
    established: AtomicUsize,
    delivered: AtomicUsize,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// What one watcher saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    error: Option<String>,
}

/// Watches ConfigMaps in [`NAMESPACE`] from `resource_version` until told to stop.
async fn watcher(api: Api, resource_version: String, shared: Arc<Shared>) -> Seen {
    let mut seen = Seen::default();
    let path = format!(
        "/api/v1/namespaces/{NAMESPACE}/configmaps?watch=1&resourceVersion={resource_version}"
    );
    let resp = match tokio::time::timeout(SETTLE, api.send(Method::GET, &path, None)).await {
        Ok(Ok(resp)) if resp.status() == StatusCode::OK => resp,
        Ok(Ok(resp)) => {
            seen.error = Some(format!("GET {path}: the server answered {}", resp.status()));
            return seen;
        }
        Ok(Err(e)) => {
            seen.error = Some(e.to_string());
            return seen;
        }
        Err(_) => {
            seen.error = Some(format!(
                "GET {path}: no answer within {} s",
                SETTLE.as_secs()
            ));
            return seen;
        }
    };
    shared.established.fetch_add(1, Ordering::Relaxed);
    let mut body = resp.into_body();
    let mut stop = shared.stop.clone();
    let mut buf = Vec::new();
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = stop.wait_for(|s| *s) => return seen,
        };
        let received = shared.base.elapsed();
        let data = match frame {
            Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
            Some(Err(e)) => {
                seen.error = Some(format!("reading the watch {path}: {e}"));
                return seen;
            }
            None => {
                seen.error = Some(format!("the watch {path} ended before the bench did"));
                return seen;
            }
        };
        buf.extend_from_slice(&data);
        for line in take_lines(&mut buf) {
            match parse_line(&line) {
                Ok(Line::Sent(ns)) => {
                    seen.latencies
                        .push(received.saturating_sub(Duration::from_nanos(ns)));
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Line::Error(message)) => {
                    seen.error = Some(format!("the watch {path} sent an ERROR event: {message}"));
                    return seen;
                }
                Ok(Line::Other) => {}
                Err(e) => {
                    seen.error = Some(format!(
                        "the watch {path} sent a line that is not an event: {e}"
                    ));
                    return seen;
                }
            }
        }
    }
}

/// Creates the namespace and the ConfigMap, returning the ConfigMap and the resourceVersion of
/// a list of the namespace's ConfigMaps.
async fn setup(api: &Api) -> Result<(Value, String), WatchError> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    match api
        .fetch(
            Method::POST,
            "/api/v1/namespaces",
            Some(Bytes::from(ns.to_string())),
        )
        .await
    {
        Ok(_) => {}
        Err(ClientError::Status {
            status: StatusCode::CONFLICT,
            ..
        }) => {}
        Err(e) => return Err(WatchError::Setup(Box::new(e))),
    }
    let configmaps = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": TARGET}, "data": {"sent": "0"}});
    let cm: Value = api
        .json(Method::POST, &configmaps, Some(Bytes::from(cm.to_string())))
        .await
        .map_err(|e| WatchError::Setup(Box::new(e)))?;
    let list: Value = api
        .json(Method::GET, &configmaps, None)
        .await
        .map_err(|e| WatchError::Setup(Box::new(e)))?;
    let rv = list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .ok_or(WatchError::NoResourceVersion)?;
    Ok((cm, rv.to_string()))
}

/// Runs the fan-out: `watchers` watches over `connections` (one client each, from `connect`),
/// then `updates` updates at `per_second`, and collects every delivery.
pub async fn fan_out(
    api: &Api,
    connect: impl Fn() -> Api,
    watchers: usize,
    updates: usize,
    per_second: f64,
) -> Result<FanOut, WatchError> {
    let (mut cm, rv) = setup(api).await?;
    let connections = watchers.div_ceil(STREAMS_PER_CONNECTION).max(1);
    let clients: Vec<Api> = (0..connections).map(|_| connect()).collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        base: Instant::now(),
        established: AtomicUsize::new(0),
        delivered: AtomicUsize::new(0),
        stop: stop_rx,
    });
    let tasks: Vec<_> = (0..watchers)
        .map(|i| {
            tokio::spawn(watcher(
                clients[i % connections].clone(),
                rv.clone(),
                shared.clone(),
            ))
        })
        .collect();
    let finished = || tasks.iter().filter(|t| t.is_finished()).count();
    wait_until(SETTLE, || {
        shared.established.load(Ordering::Relaxed) + finished() >= watchers
    })
    .await;

    let mut out = FanOut {
        watchers,
        connections,
        established: shared.established.load(Ordering::Relaxed),
        ..FanOut::default()
    };
    let path = format!("/api/v1/namespaces/{NAMESPACE}/configmaps/{TARGET}");
    let start = Instant::now();
    for k in 0..updates {
        tokio::time::sleep_until((start + Duration::from_secs_f64(k as f64 / per_second)).into())
            .await;
        let sent = shared.base.elapsed();
        cm["data"] = json!({"sent": sent.as_nanos().to_string(), "seq": k.to_string()});
        match api
            .json::<Value>(Method::PUT, &path, Some(Bytes::from(cm.to_string())))
            .await
        {
            Ok(updated) => {
                out.put_latencies
                    .push(shared.base.elapsed().saturating_sub(sent));
                cm = updated;
                out.updates += 1;
            }
            Err(e) => {
                out.update_errors += 1;
                out.first_error
                    .get_or_insert_with(|| format!("updating the configmap: {e}"));
                if let Ok(fresh) = api.json::<Value>(Method::GET, &path, None).await {
                    cm = fresh;
                }
            }
        }
    }
    out.expected = out.updates * watchers;
    wait_until(DRAIN, || {
        shared.delivered.load(Ordering::Relaxed) >= out.expected || finished() == watchers
    })
    .await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let seen = match task.await {
            Ok(seen) => seen,
            Err(e) => Seen {
                error: Some(e.to_string()),
                ..Seen::default()
            },
        };
        out.delivered += seen.latencies.len();
        out.latencies.extend(seen.latencies);
        if let Some(e) = seen.error {
            out.watcher_errors += 1;
            out.first_error.get_or_insert(e);
        }
    }
    Ok(out)
}

/// Polls `done` every few milliseconds until it holds or `limit` has passed.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_a_stream() {
        fn check(chunks: &[&str], want: &[&str], rest: &str) {
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for chunk in chunks {
                buf.extend_from_slice(chunk.as_bytes());
                got.extend(
                    take_lines(&mut buf)
                        .into_iter()
                        .map(|l| String::from_utf8(l).expect("utf-8")),
                );
            }
            assert_eq!(got, want, "chunks {chunks:?}");
            assert_eq!(
                String::from_utf8(buf).expect("utf-8"),
                rest,
                "chunks {chunks:?}"
            );
        }
        check(&[], &[], "");
        check(&["{\"a\":1}\n"], &["{\"a\":1}"], "");
        check(
            &["{\"a\"", ":1}\n{\"b\":2}\n{\"c"],
            &["{\"a\":1}", "{\"b\":2}"],
            "{\"c",
        );
        check(
            &["{\"a\":1}\n\n", "\n{\"b\":2}\n"],
            &["{\"a\":1}", "{\"b\":2}"],
            "",
        );
        check(&["no newline yet"], &[], "no newline yet");
    }

    #[test]
    fn event_lines() {
        fn check(line: &str, want: Option<Line>) {
            assert_eq!(parse_line(line.as_bytes()).ok(), want, "line {line}");
        }
        check(
            r#"{"type":"MODIFIED","object":{"kind":"ConfigMap","data":{"sent":"12345","seq":"3"}}}"#,
            Some(Line::Sent(12345)),
        );
        check(
            r#"{"type":"ADDED","object":{"kind":"ConfigMap","data":{"sent":"12345"}}}"#,
            Some(Line::Other),
        );
        check(
            r#"{"type":"MODIFIED","object":{"kind":"ConfigMap"}}"#,
            Some(Line::Other),
        );
        check(
            r#"{"type":"MODIFIED","object":{"data":{"sent":"soon"}}}"#,
            Some(Line::Other),
        );
        check(
            r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#,
            Some(Line::Other),
        );
        check(
            r#"{"type":"ERROR","object":{"kind":"Status","message":"too old resource version: 1 (5)","code":410}}"#,
            Some(Line::Error("too old resource version: 1 (5)".into())),
        );
        check(r#"{"type":"MODIFIED"}"#, None);
        check("not json", None);
    }
}
