//! Request load against pods: open-loop creates and updates at a fixed rate, closed-loop gets,
//! topping the namespace up to a pod count, and timed LISTs.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::client::{self, Api, ClientError};
use crate::stats::Phase;

/// Where every pod of the bench lives.
pub const PODS: &str = "/api/v1/namespaces/default/pods";
/// The label (and its values) telling the bench's pods apart.
pub const LABEL: &str = "keelson-bench";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("listing {path}: {source}")]
    List {
        path: String,
        source: Box<ClientError>,
    },
    #[error("a pod listed by {path} has no metadata.name")]
    Unnamed { path: String },
    #[error("LIST {path} returned {got} items, expected {want}")]
    Count {
        path: String,
        got: usize,
        want: usize,
    },
}

/// The JSON body of a small pod: one nginx container, labelled with the bench `role`.
pub fn pod_body(name: &str, role: &str) -> Bytes {
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {LABEL: role}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
    });
    Bytes::from(pod.to_string())
}

/// The path of the pod `name`.
pub fn pod_path(name: &str) -> String {
    format!("{PODS}/{name}")
}

/// Sends `total` requests at `rate` per second, each started at its due time whatever the
/// earlier ones are doing (open loop), and times each from its due time, so a stalled server
/// shows in the latencies instead of lowering the request rate.
pub async fn open_loop<F, Fut>(rate: f64, total: usize, mut request: F) -> Phase
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = client::Result<()>> + Send + 'static,
{
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let fut = request(i);
        tasks.push(tokio::spawn(
            async move { fut.await.map(|()| due.elapsed()) },
        ));
    }
    let mut phase = Phase::default();
    for task in tasks {
        match task.await {
            Ok(outcome) => phase.record(outcome),
            Err(e) => phase.record(Err(e)),
        }
    }
    phase.elapsed = start.elapsed();
    phase
}

/// When a closed loop stops.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// After this many requests in all.
    Count(usize),
    /// Once this much time has passed (requests under way finish).
    Elapsed(Duration),
}

/// Runs `workers` loops that each send a request and wait for its answer before the next;
/// `request` gets the number of the request (0, 1, 2, ... across all workers).
pub async fn closed_loop<F, Fut>(workers: usize, until: Until, request: F) -> Phase
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = client::Result<()>> + Send + 'static,
{
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (next, request) = (next.clone(), request.clone());
            tokio::spawn(async move {
                let mut phase = Phase::default();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let done = match until {
                        Until::Count(total) => n >= total,
                        Until::Elapsed(d) => start.elapsed() >= d,
                    };
                    if done {
                        break;
                    }
                    let sent = Instant::now();
                    phase.record(request(n).await.map(|()| sent.elapsed()));
                }
                phase
            })
        })
        .collect();
    let mut phase = Phase::default();
    for task in tasks {
        match task.await {
            Ok(worker) => phase.merge(worker),
            Err(e) => phase.record(Err(e)),
        }
    }
    phase.elapsed = start.elapsed();
    phase
}

/// Creates the pods named `names` (labelled `role`), open loop at `rate` per second.
pub async fn create_open(api: &Api, rate: f64, names: &[String], role: &str) -> Phase {
    open_loop(rate, names.len(), |i| {
        let api = api.clone();
        let body = pod_body(&names[i], role);
        async move { api.fetch(Method::POST, PODS, Some(body)).await.map(drop) }
    })
    .await
}

/// Fetches the pods labelled `role` and returns, for each, its path and the body of a PUT that
/// changes one label.
pub async fn prepare_updates(api: &Api, role: &str) -> Result<Vec<(String, Bytes)>, LoadError> {
    #[derive(Deserialize)]
    struct List {
        items: Vec<Value>,
    }
    let path = format!("{PODS}?labelSelector={LABEL}%3D{role}");
    let list: List =
        api.json(Method::GET, &path, None)
            .await
            .map_err(|source| LoadError::List {
                path: path.clone(),
                source: Box::new(source),
            })?;
    list.items
        .into_iter()
        .map(|pod| changed_label(pod).ok_or_else(|| LoadError::Unnamed { path: path.clone() }))
        .collect()
}

/// A listed pod made into the path and body of an update: kind and apiVersion set (items of a
/// list carry neither) and the label `keelson-bench-rev` changed.
fn changed_label(mut pod: Value) -> Option<(String, Bytes)> {
    let name = pod.pointer("/metadata/name")?.as_str()?.to_string();
    let obj = pod.as_object_mut()?;
    obj.insert("apiVersion".into(), json!("v1"));
    obj.insert("kind".into(), json!("Pod"));
    let meta = obj.get_mut("metadata")?.as_object_mut()?;
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    let rev = labels
        .get("keelson-bench-rev")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    labels
        .as_object_mut()?
        .insert("keelson-bench-rev".into(), json!((rev + 1).to_string()));
    Some((pod_path(&name), Bytes::from(pod.to_string())))
}

/// PUTs each prepared update once, open loop at `rate` per second.
pub async fn update_open(api: &Api, rate: f64, updates: &[(String, Bytes)]) -> Phase {
    open_loop(rate, updates.len(), |i| {
        let api = api.clone();
        let (path, body) = updates[i].clone();
        async move { api.fetch(Method::PUT, &path, Some(body)).await.map(drop) }
    })
    .await
}

/// GETs the given pods round-robin from `workers` closed loops for `duration`.
pub async fn get_closed(
    api: &Api,
    workers: usize,
    duration: Duration,
    paths: Arc<Vec<String>>,
) -> Phase {
    if paths.is_empty() {
        return Phase::default();
    }
    let api = api.clone();
    closed_loop(workers, Until::Elapsed(duration), move |n| {
        let api = api.clone();
        let path = paths[n % paths.len()].clone();
        async move { api.fetch(Method::GET, &path, None).await.map(drop) }
    })
    .await
}

/// The number of items a LIST at `path` returns.
pub async fn count(api: &Api, path: &str) -> Result<usize, LoadError> {
    let bytes = api
        .fetch(Method::GET, path, None)
        .await
        .map_err(|source| LoadError::List {
            path: path.to_string(),
            source: Box::new(source),
        })?;
    items_in(&bytes).map_err(|source| LoadError::List {
        path: path.to_string(),
        source: Box::new(json_error(path, source)),
    })
}

fn json_error(path: &str, source: serde_json::Error) -> ClientError {
    ClientError::Json {
        method: Method::GET,
        path: path.to_string(),
        source,
    }
}

/// The number of items of a JSON list, without building them.
pub fn items_in(list: &[u8]) -> Result<usize, serde_json::Error> {
    #[derive(Deserialize)]
    struct Items {
        items: Vec<IgnoredAny>,
    }
    Ok(serde_json::from_slice::<Items>(list)?.items.len())
}

/// Creates pods `<prefix>-<n>` (n from 0) until the namespace holds `target` pods, with
/// `workers` closed loops; returns how many it tried and the phase.
pub async fn top_up(
    api: &Api,
    target: usize,
    prefix: &str,
    workers: usize,
) -> Result<(usize, Phase), LoadError> {
    let have = count(api, PODS).await?;
    let missing = target.saturating_sub(have);
    let api = api.clone();
    let prefix = prefix.to_string();
    let phase = closed_loop(workers, Until::Count(missing), move |n| {
        let api = api.clone();
        let body = pod_body(&format!("{prefix}-{n}"), "list");
        async move { api.fetch(Method::POST, PODS, Some(body)).await.map(drop) }
    })
    .await;
    Ok((missing, phase))
}

/// LISTs all pods `times` times in a row, timing each to the last byte, and checks each list
/// holds `want` items.
pub async fn list_timed(api: &Api, times: usize, want: usize) -> Result<Phase, LoadError> {
    let mut phase = Phase::default();
    let start = Instant::now();
    for _ in 0..times {
        let sent = Instant::now();
        let bytes = api
            .fetch(Method::GET, PODS, None)
            .await
            .map_err(|source| LoadError::List {
                path: PODS.to_string(),
                source: Box::new(source),
            })?;
        let took = sent.elapsed();
        let got = items_in(&bytes).map_err(|source| LoadError::List {
            path: PODS.to_string(),
            source: Box::new(json_error(PODS, source)),
        })?;
        if got != want {
            return Err(LoadError::Count {
                path: PODS.to_string(),
                got,
                want,
            });
        }
        phase.latencies.push(took);
    }
    phase.elapsed = start.elapsed();
    Ok(phase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_bodies_are_small_nginx_pods() {
        let pod: Value = serde_json::from_slice(&pod_body("bench-w-7", "write")).expect("json");
        assert_eq!(pod["kind"], "Pod");
        assert_eq!(pod["apiVersion"], "v1");
        assert_eq!(pod["metadata"]["name"], "bench-w-7");
        assert_eq!(pod["metadata"]["namespace"], "default");
        assert_eq!(pod["metadata"]["labels"][LABEL], "write");
        assert_eq!(pod["spec"]["containers"][0]["image"], "nginx");
        assert_eq!(pod["spec"]["containers"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn updates_change_a_label_and_keep_the_rest() {
        fn check(listed: Value, want_path: Option<&str>, want_rev: &str) {
            let Some((path, body)) = changed_label(listed.clone()) else {
                assert_eq!(want_path, None, "listed {listed}");
                return;
            };
            assert_eq!(Some(path.as_str()), want_path);
            let put: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(put["kind"], "Pod");
            assert_eq!(put["apiVersion"], "v1");
            assert_eq!(put["metadata"]["labels"]["keelson-bench-rev"], want_rev);
            assert_eq!(
                put["metadata"]["resourceVersion"],
                listed["metadata"]["resourceVersion"]
            );
            assert_eq!(put["spec"], listed["spec"]);
        }
        let spec = json!({"containers": [{"name": "nginx", "image": "nginx"}]});
        check(
            json!({"metadata": {"name": "a", "resourceVersion": "12", "labels": {LABEL: "write"}}, "spec": spec}),
            Some("/api/v1/namespaces/default/pods/a"),
            "1",
        );
        check(
            json!({"metadata": {"name": "b", "resourceVersion": "3", "labels": {"keelson-bench-rev": "4"}}, "spec": spec}),
            Some("/api/v1/namespaces/default/pods/b"),
            "5",
        );
        check(
            json!({"metadata": {"name": "c", "resourceVersion": "9"}, "spec": spec}),
            Some("/api/v1/namespaces/default/pods/c"),
            "1",
        );
        check(json!({"metadata": {"resourceVersion": "9"}}), None, "");
        check(
            json!({"metadata": {"name": "d", "labels": "oops"}}),
            None,
            "",
        );
    }

    #[test]
    fn item_counts() {
        fn check(list: &str, want: Option<usize>) {
            assert_eq!(items_in(list.as_bytes()).ok(), want, "list {list}");
        }
        check(r#"{"kind":"PodList","items":[]}"#, Some(0));
        check(
            r#"{"items":[{"metadata":{"name":"a"}},{"x":[1,2]},3],"metadata":{}}"#,
            Some(3),
        );
        check(r#"{"kind":"Status"}"#, None);
        check(r#"{"items":[1,"#, None);
    }

    #[tokio::test]
    async fn open_loop_keeps_its_schedule_when_requests_are_slow() {
        // Each request takes 100 ms; at 100/s, 20 requests still all start within ~200 ms,
        // and every latency counts from its due time.
        let start = Instant::now();
        let phase = open_loop(100.0, 20, |_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        })
        .await;
        assert_eq!(phase.latencies.len(), 20);
        assert_eq!(phase.errors, 0);
        assert!(
            start.elapsed() < Duration::from_millis(1000),
            "took {:?}",
            start.elapsed()
        );
        assert!(
            phase
                .latencies
                .iter()
                .all(|d| *d >= Duration::from_millis(100))
        );
    }

    #[tokio::test]
    async fn open_loop_counts_failures() {
        let phase = open_loop(1000.0, 10, |i| async move {
            if i % 5 == 0 {
                Err(ClientError::Timeout {
                    method: Method::GET,
                    path: format!("/{i}"),
                })
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(phase.latencies.len(), 8);
        assert_eq!(phase.errors, 2);
        assert_eq!(
            phase.first_error.as_deref(),
            Some("GET /0: no answer within 30 s")
        );
    }

    #[tokio::test]
    async fn closed_loops_stop_at_their_count_or_time() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let phase = closed_loop(3, Until::Count(10), move |n| {
            let s = s.clone();
            async move {
                s.lock()
                    .map_err(|_| ClientError::Timeout {
                        method: Method::GET,
                        path: "/".into(),
                    })?
                    .push(n);
                Ok(())
            }
        })
        .await;
        assert_eq!(phase.latencies.len(), 10);
        let mut seen = seen.lock().expect("lock").clone();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());

        let phase = closed_loop(2, Until::Elapsed(Duration::from_millis(100)), |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        })
        .await;
        // Two workers, 10 ms a request, for 100 ms: about 20 requests.
        assert!(
            (10..=22).contains(&phase.latencies.len()),
            "{} requests",
            phase.latencies.len()
        );
        assert!(phase.elapsed >= Duration::from_millis(100));
    }
}
