//! `/metrics` in the Prometheus text format: request counts and latencies, objects per resource.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::Api;

/// Latency buckets in seconds.
const BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    pub fn observe(&self, verb: &str, resource: &str, code: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let s = m
            .entry((verb.to_string(), resource.to_string(), code))
            .or_default();
        s.count += 1;
        s.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self, api: &Api) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests by verb, resource and HTTP code.\n# TYPE apiserver_request_total counter\n");
        let m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((verb, res, code), s) in m.iter() {
            let _ = writeln!(
                out,
                "apiserver_request_total{{verb=\"{verb}\",resource=\"{res}\",code=\"{code}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency by verb and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        let mut agg: BTreeMap<(&str, &str), Series> = BTreeMap::new();
        for ((verb, res, _), s) in m.iter() {
            let a = agg.entry((verb, res)).or_default();
            a.count += s.count;
            a.sum += s.sum;
            for i in 0..BUCKETS.len() {
                a.buckets[i] += s.buckets[i];
            }
        }
        for ((verb, res), s) in agg {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",resource=\"{res}\",le=\"{b}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{verb=\"{verb}\",resource=\"{res}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_sum{{verb=\"{verb}\",resource=\"{res}\"}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_count{{verb=\"{verb}\",resource=\"{res}\"}} {}",
                s.count
            );
        }
        drop(m);
        out.push_str("# HELP apiserver_storage_objects Number of stored objects per resource.\n# TYPE apiserver_storage_objects gauge\n");
        for kind in keelson_kinds::ALL {
            if let Some(rc) = api.cache.resource(kind) {
                let _ = writeln!(
                    out,
                    "apiserver_storage_objects{{resource=\"{}\"}} {}",
                    kind.qualified_resource(),
                    rc.len()
                );
            }
        }
        let _ = writeln!(
            out,
            "# TYPE etcd_current_revision gauge\netcd_current_revision {}",
            api.cache.revision()
        );
        out
    }
}
