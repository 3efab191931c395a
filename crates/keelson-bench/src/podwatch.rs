//! One watch on a list of pods for a whole benchmark: when each pod was first seen bound to a
//! node and first seen Running and Ready, timed at the arrival of the event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::client::Api;
use crate::pods::running_and_ready;

/// What the one watch on the bench's pods has seen.
#[derive(Default)]
pub struct Seen {
    /// When each pod was first seen Running and Ready (the arrival of that event).
    pub ready: HashMap<String, Instant>,
    /// When each pod was first seen bound to a node (`spec.nodeName` set by the scheduler).
    pub bound: HashMap<String, Instant>,
    /// The last error of the watch (it reconnects after one).
    pub error: Option<String>,
}

/// One watch on a list of pods (a path with its selectors), for the whole bench; it re-lists and re-watches
/// should the stream end.
pub struct PodWatch {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    /// Lists `path` (e.g. `/api/v1/namespaces/x/pods?labelSelector=a%3Db`) and watches it
    /// from there, until dropped.
    pub async fn start(api: Api, path: String) -> anyhow::Result<PodWatch> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let rv = list_rv(&api, &path, &seen).await?;
        let (established_tx, established_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(watch_loop(api, path, rv, seen.clone(), established_tx));
        established_rx
            .await
            .ok()
            .flatten()
            .map_or(Ok(()), |e| Err(anyhow::anyhow!("watching pods: {e}")))?;
        Ok(PodWatch { seen, task })
    }

    pub fn ready_at(&self, name: &str) -> Option<Instant> {
        self.lock().ready.get(name).copied()
    }

    pub fn bound_at(&self, name: &str) -> Option<Instant> {
        self.lock().bound.get(name).copied()
    }

    pub fn ready_count(&self, names: &[String]) -> usize {
        let seen = self.lock();
        names.iter().filter(|n| seen.ready.contains_key(*n)).count()
    }

    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stop(self) {
        // Dropping stops the watch.
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lists the bench's pods, records those already Running, and returns the list's
/// resourceVersion.
async fn list_rv(api: &Api, path: &str, seen: &Mutex<Seen>) -> anyhow::Result<String> {
    let list: Value = api
        .json(Method::GET, path, None)
        .await
        .context("listing the bench's pods")?;
    let now = Instant::now();
    if let Some(items) = list.get("items").and_then(Value::as_array) {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        for pod in items.iter().filter(|p| running_and_ready(p)) {
            if let Some(name) = pod.pointer("/metadata/name").and_then(Value::as_str) {
                seen.ready.entry(name.to_string()).or_insert(now);
            }
        }
    }
    list.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(String::from)
        .context("the list of pods has no metadata.resourceVersion")
}

/// Watches from `rv`; on the end of a stream or an ERROR event, re-lists and watches again.
async fn watch_loop(
    api: Api,
    path: String,
    mut rv: String,
    seen: Arc<Mutex<Seen>>,
    established: tokio::sync::oneshot::Sender<Option<String>>,
) {
    let mut established = Some(established);
    loop {
        let outcome = watch_once(&api, &path, &rv, &seen, &mut established).await;
        if let Err(e) = outcome {
            seen.lock().unwrap_or_else(|p| p.into_inner()).error = Some(e.clone());
            if let Some(tx) = established.take() {
                let _ = tx.send(Some(e));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        match list_rv(&api, &path, &seen).await {
            Ok(fresh) => rv = fresh,
            Err(e) => seen.lock().unwrap_or_else(|p| p.into_inner()).error = Some(format!("{e:#}")),
        }
    }
}

/// One watch stream, until it ends (Ok) or fails.
async fn watch_once(
    api: &Api,
    list: &str,
    rv: &str,
    seen: &Mutex<Seen>,
    established: &mut Option<tokio::sync::oneshot::Sender<Option<String>>>,
) -> Result<(), String> {
    let sep = if list.contains('?') { '&' } else { '?' };
    let path = format!("{list}{sep}watch=1&allowWatchBookmarks=true&resourceVersion={rv}");
    let resp = api
        .send(Method::GET, &path, None)
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != StatusCode::OK {
        return Err(format!("GET {path}: the server answered {}", resp.status()));
    }
    if let Some(tx) = established.take() {
        let _ = tx.send(None);
    }
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    loop {
        let frame = match body.frame().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(format!("reading the watch of pods: {e}")),
            None => return Ok(()),
        };
        let arrived = Instant::now();
        buf.extend_from_slice(&frame.into_data().unwrap_or_default());
        for line in take_lines(&mut buf) {
            match serde_json::from_slice::<Value>(&line) {
                Ok(event) => match event_ready(&event) {
                    EventMeaning::Pod { name, bound, ready } => {
                        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                        if bound || ready {
                            seen.bound.entry(name.clone()).or_insert(arrived);
                        }
                        if ready {
                            seen.ready.entry(name).or_insert(arrived);
                        }
                    }
                    EventMeaning::Error(message) => {
                        return Err(format!("the watch of pods sent an ERROR event: {message}"));
                    }
                    EventMeaning::Other => {}
                },
                Err(e) => {
                    return Err(format!(
                        "the watch of pods sent a line that is not json: {e}"
                    ));
                }
            }
        }
    }
}

/// What a watch event means to the bench.
#[derive(Debug, PartialEq)]
pub enum EventMeaning {
    /// A pod added or modified: whether it is bound to a node, and Running and Ready.
    Pod {
        name: String,
        bound: bool,
        ready: bool,
    },
    Error(String),
    Other,
}

pub fn event_ready(event: &Value) -> EventMeaning {
    let object = event.get("object").unwrap_or(&Value::Null);
    match event.get("type").and_then(Value::as_str) {
        Some("ADDED" | "MODIFIED") => {
            match object.pointer("/metadata/name").and_then(Value::as_str) {
                Some(name) => EventMeaning::Pod {
                    name: name.to_string(),
                    bound: object
                        .pointer("/spec/nodeName")
                        .and_then(Value::as_str)
                        .is_some_and(|n| !n.is_empty()),
                    ready: running_and_ready(object),
                },
                None => EventMeaning::Other,
            }
        }
        Some("ERROR") => EventMeaning::Error(
            object
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ),
        _ => EventMeaning::Other,
    }
}

/// Splits complete newline-terminated lines off the front of `buf`, leaving a partial line.
pub fn take_lines(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events() {
        fn check(event: Value, want: EventMeaning) {
            assert_eq!(event_ready(&event), want, "{event}");
        }
        let pod = |phase: &str, ready: &str| {
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "vm"}, "status": {"phase": phase,
                "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": ready}]}})
        };
        let seen = |bound: bool, ready: bool| EventMeaning::Pod {
            name: "p".into(),
            bound,
            ready,
        };
        check(
            json!({"type": "MODIFIED", "object": pod("Running", "True")}),
            seen(true, true),
        );
        check(
            json!({"type": "ADDED", "object": pod("Running", "True")}),
            seen(true, true),
        );
        let mut unbound = pod("Pending", "False");
        unbound["spec"]["nodeName"] = json!("");
        check(
            json!({"type": "ADDED", "object": unbound}),
            seen(false, false),
        );
        check(
            json!({"type": "MODIFIED", "object": pod("Running", "False")}),
            seen(true, false),
        );
        check(
            json!({"type": "MODIFIED", "object": pod("Pending", "True")}),
            seen(true, false),
        );
        check(
            json!({"type": "DELETED", "object": pod("Running", "True")}),
            EventMeaning::Other,
        );
        check(
            json!({"type": "MODIFIED", "object": {"status": {"phase": "Running"}}}),
            EventMeaning::Other,
        );
        check(
            json!({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}),
            EventMeaning::Other,
        );
        check(
            json!({"type": "ERROR", "object": {"kind": "Status", "message": "too old resource version", "code": 410}}),
            EventMeaning::Error("too old resource version".into()),
        );
        check(json!({}), EventMeaning::Other);
    }

    #[test]
    fn stream_lines() {
        let mut buf = b"{\"a\":1}\n\n{\"b\"".to_vec();
        assert_eq!(take_lines(&mut buf), vec![b"{\"a\":1}".to_vec()]);
        assert_eq!(buf, b"{\"b\"");
        buf.extend_from_slice(b":2}\n");
        assert_eq!(take_lines(&mut buf), vec![b"{\"b\":2}".to_vec()]);
        assert!(buf.is_empty());
    }
}
