//! The decision of one Job sync, with no IO: from the Job, its pods and the time, which pods
//! to create (and at which completion index), which to delete, and the status to write.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::pod::is_ready;

/// The annotation (and label) carrying a pod's completion index in an Indexed Job.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Upstream's default backoffLimit.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// Upstream's cap on the delay between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(360);

/// What one sync should do.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Plan {
    /// Pods to create: `Some(index)` for an Indexed Job, `None` otherwise.
    pub create: Vec<Option<i32>>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// The status the Job should have.
    pub status: JobStatus,
    /// Look again after this long (back-off, deadline, TTL).
    pub requeue: Option<Duration>,
    /// The Job finished and its TTL ran out: delete it.
    pub delete_job: bool,
    /// Events to record: (warning, reason, message).
    pub events: Vec<(bool, &'static str, String)>,
}

/// Facts the decision needs besides the Job and its pods.
#[derive(Clone, Copy, Debug)]
pub struct Inputs {
    pub now: jiff::Timestamp,
    /// When the failed count last grew (for the back-off), if it ever did.
    pub last_failure: Option<jiff::Timestamp>,
    /// The back-off before the first retry (upstream: 10 s), doubling per failure.
    pub backoff_base: Duration,
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref()?.phase.as_deref()
}

/// The completion index of a pod, from its annotation.
pub fn index_of(p: &Pod) -> Option<i32> {
    p.metadata
        .annotations
        .as_ref()?
        .get(COMPLETION_INDEX)?
        .parse()
        .ok()
}

/// `0-2,4` style ranges of sorted indexes, as `status.completedIndexes`.
pub fn index_ranges(indexes: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// The delay before a retry after `failures` failures.
pub fn backoff_delay(base: Duration, failures: i32) -> Duration {
    let exp = u32::try_from(failures.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    base.saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_BACKOFF)
}

fn finished_condition(job: &Job) -> Option<&JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn condition(type_: &str, reason: &str, message: &str, now: jiff::Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn secs(d: jiff::SignedDuration) -> Duration {
    Duration::from_secs(d.as_secs().max(0) as u64)
}

/// Decides one sync of `job` whose pods (those it controls) are `pods`.
pub fn decide(job: &Job, pods: &[&Pod], inp: Inputs) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut plan = Plan {
        status: old.clone(),
        ..Default::default()
    };
    let now = inp.now;
    let active: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| crate::pod::is_active(p))
        .collect();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let succeeded_pods: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| phase(p) == Some("Succeeded"))
        .collect();
    let failed = pods.iter().filter(|p| phase(p) == Some("Failed")).count() as i32;
    let failed = failed.max(old.failed.unwrap_or(0));
    let done_indexes: BTreeSet<i32> = succeeded_pods.iter().filter_map(|p| index_of(p)).collect();
    let succeeded = if indexed {
        done_indexes.len() as i32
    } else {
        (succeeded_pods.len() as i32).max(old.succeeded.unwrap_or(0))
    };
    let st = &mut plan.status;
    st.succeeded = Some(succeeded);
    st.failed = Some(failed);
    st.ready = Some(active.iter().filter(|p| is_ready(p)).count() as i32);
    st.terminating = Some(
        pods.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .filter(|p| !matches!(phase(p), Some("Succeeded" | "Failed")))
            .count() as i32,
    );
    if indexed {
        st.completed_indexes = Some(index_ranges(&done_indexes));
    }

    // A finished Job only waits for its TTL.
    if let Some(done) = finished_condition(job) {
        st.active = Some(0);
        plan.delete = active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let since = st
                .completion_time
                .as_ref()
                .or(done.last_transition_time.as_ref())
                .map(|t| t.0)
                .unwrap_or(now);
            let expires = since + jiff::SignedDuration::from_secs(i64::from(ttl));
            if expires <= now {
                plan.delete_job = true;
            } else {
                plan.requeue = Some(secs(expires.duration_since(now)));
            }
        }
        return plan;
    }
    let suspended = spec.suspend == Some(true);
    if !suspended && st.start_time.is_none() {
        st.start_time = Some(Time(now));
    }

    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
    let deadline = spec.active_deadline_seconds.and_then(|ads| {
        let start = st.start_time.as_ref()?.0;
        Some(start + jiff::SignedDuration::from_secs(ads))
    });
    let failure = if failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| d <= now) && !suspended {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    let complete = match completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    let mut conditions = st.conditions.clone().unwrap_or_default();
    if let Some((reason, message)) = failure {
        conditions.push(condition("FailureTarget", reason, message, now));
        conditions.push(condition("Failed", reason, message, now));
        plan.delete = active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        plan.events.push((true, reason, message.to_string()));
        st.active = Some(0);
        st.conditions = Some(conditions);
        return plan;
    }
    if complete {
        conditions.push(condition(
            "SuccessCriteriaMet",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        ));
        conditions.push(condition(
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods",
            now,
        ));
        st.completion_time = Some(Time(now));
        plan.delete = active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        plan.events
            .push((false, "Completed", "Job completed".into()));
        st.active = Some(0);
        st.conditions = Some(conditions);
        return plan;
    }

    // Running: bring the active pods to what is still wanted.
    let want = if suspended {
        0
    } else {
        match completions {
            Some(c) => parallelism.min(c - succeeded),
            None if succeeded > 0 => active.len() as i32,
            None => parallelism,
        }
    };
    let have = active.len() as i32;
    st.active = Some(have);
    if have > want {
        let mut extra: Vec<&Pod> = active.clone();
        // Not-ready and newest first.
        extra.sort_by_key(|p| {
            (
                is_ready(p),
                std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)),
            )
        });
        plan.delete = extra
            .iter()
            .take((have - want) as usize)
            .filter_map(|p| p.metadata.name.clone())
            .collect();
    } else if have < want {
        // Retries wait out the back-off after a failure.
        if failed > 0
            && let Some(last) = inp.last_failure
        {
            let ready_at = last
                + jiff::SignedDuration::try_from(backoff_delay(inp.backoff_base, failed))
                    .unwrap_or_default();
            if ready_at > now {
                plan.requeue =
                    Some(secs(ready_at.duration_since(now)).max(Duration::from_millis(100)));
                return plan;
            }
        }
        let n = (want - have) as usize;
        plan.create = if indexed {
            let busy: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
            (0..completions.unwrap_or(0))
                .filter(|i| !done_indexes.contains(i) && !busy.contains(i))
                .take(n)
                .map(Some)
                .collect()
        } else {
            vec![None; n]
        };
    }
    if let Some(d) = deadline
        && !suspended
    {
        let left = secs(d.duration_since(now)).max(Duration::from_millis(100));
        plan.requeue = Some(plan.requeue.map_or(left, |r| r.min(left)));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "pi", "namespace": "ns"},
            "spec": spec, "status": status}))
        .expect("job")
    }

    /// Pods from `phase[:index]` words: `Pending`, `Running`, `Succeeded:2`, `Failed`.
    fn pods(words: &str) -> Vec<Pod> {
        words
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| {
                let (phase, index) = w.split_once(':').unwrap_or((w, ""));
                let mut meta = json!({"name": format!("p{i}")});
                if !index.is_empty() {
                    meta["annotations"] = json!({COMPLETION_INDEX: index});
                }
                serde_json::from_value(json!({"metadata": meta, "status": {"phase": phase}}))
                    .expect("pod")
            })
            .collect()
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:10:00Z".parse().expect("time")
    }

    /// (create, deleted count, "active/succeeded/failed", condition types, requeue secs)
    type Want<'a> = (Vec<Option<i32>>, usize, &'a str, &'a str, Option<u64>);

    fn check(
        spec: serde_json::Value,
        status: serde_json::Value,
        words: &str,
        last_failure_ago: Option<i64>,
        want: Want,
    ) {
        let j = job(spec.clone(), status);
        let ps = pods(words);
        let refs: Vec<&Pod> = ps.iter().collect();
        let plan = decide(
            &j,
            &refs,
            Inputs {
                now: now(),
                last_failure: last_failure_ago.map(|s| now() - jiff::SignedDuration::from_secs(s)),
                backoff_base: Duration::from_secs(10),
            },
        );
        let st = &plan.status;
        let counts = format!(
            "{}/{}/{}",
            st.active.unwrap_or(-1),
            st.succeeded.unwrap_or(-1),
            st.failed.unwrap_or(-1)
        );
        let conds: Vec<String> = st
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.clone())
            .collect();
        let got = (
            plan.create.clone(),
            plan.delete.len(),
            counts.as_str(),
            conds.join(","),
            plan.requeue.map(|d| d.as_secs()),
        );
        let want = (want.0, want.1, want.2, want.3.to_string(), want.4);
        assert_eq!(got, want, "spec {spec} pods {words}");
    }

    #[test]
    fn job_decisions() {
        let none: Option<i32> = None;
        // A fresh Job starts `parallelism` pods, no more than completions need.
        check(
            json!({"completions": 3, "parallelism": 2}),
            json!({}),
            "",
            None,
            (vec![none; 2], 0, "0/0/0", "", None),
        );
        check(
            json!({"completions": 3, "parallelism": 2}),
            json!({}),
            "Succeeded Succeeded Running",
            None,
            (vec![], 0, "1/2/0", "", None),
        );
        check(
            json!({"completions": 3, "parallelism": 5}),
            json!({}),
            "Succeeded",
            None,
            (vec![none; 2], 0, "0/1/0", "", None),
        );
        // Done: Complete plus SuccessCriteriaMet.
        check(
            json!({"completions": 2}),
            json!({}),
            "Succeeded Succeeded",
            None,
            (vec![], 0, "0/2/0", "SuccessCriteriaMet,Complete", None),
        );
        // Without completions, one success ends it once nothing runs.
        check(
            json!({"parallelism": 2}),
            json!({}),
            "Succeeded Running",
            None,
            (vec![], 0, "1/1/0", "", None),
        );
        check(
            json!({"parallelism": 2}),
            json!({}),
            "Succeeded Failed",
            Some(60),
            (vec![], 0, "0/1/1", "SuccessCriteriaMet,Complete", None),
        );
        // A failure is retried after the back-off (10 s, then 20 s, ...).
        check(
            json!({"completions": 1}),
            json!({}),
            "Failed",
            Some(3),
            (vec![], 0, "0/0/1", "", Some(7)),
        );
        check(
            json!({"completions": 1}),
            json!({}),
            "Failed",
            Some(11),
            (vec![none], 0, "0/0/1", "", None),
        );
        check(
            json!({"completions": 1}),
            json!({}),
            "Failed Failed",
            Some(11),
            (vec![], 0, "0/0/2", "", Some(9)),
        );
        // backoffLimit exhausted: Failed, running pods deleted.
        check(
            json!({"completions": 2, "parallelism": 2, "backoffLimit": 1}),
            json!({}),
            "Failed Failed Running",
            Some(60),
            (vec![], 1, "0/0/2", "FailureTarget,Failed", None),
        );
        // activeDeadlineSeconds passed (started 10 minutes ago).
        check(
            json!({"completions": 1, "activeDeadlineSeconds": 60}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
            "Running",
            None,
            (vec![], 1, "0/0/0", "FailureTarget,Failed", None),
        );
        check(
            json!({"completions": 1, "activeDeadlineSeconds": 660}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
            "Running",
            None,
            (vec![], 0, "1/0/0", "", Some(60)),
        );
        // Indexed: missing indexes lowest first; succeeded counts indexes.
        let indexed = json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"});
        check(
            indexed.clone(),
            json!({}),
            "Succeeded:0 Running:2",
            None,
            (vec![Some(1)], 0, "1/1/0", "", None),
        );
        check(
            indexed,
            json!({}),
            "Succeeded:0 Succeeded:1 Succeeded:2 Succeeded:3",
            None,
            (vec![], 0, "0/4/0", "SuccessCriteriaMet,Complete", None),
        );
        // Suspended: nothing runs.
        check(
            json!({"completions": 1, "suspend": true}),
            json!({}),
            "Running",
            None,
            (vec![], 1, "1/0/0", "", None),
        );
        // Finished with a TTL: deleted once it runs out (completed 5 minutes ago).
        let done = json!({"completionTime": "2026-01-01T00:05:00Z", "conditions": [{"type": "Complete", "status": "True"}]});
        check(
            json!({"ttlSecondsAfterFinished": 600}),
            done.clone(),
            "Succeeded",
            None,
            (vec![], 0, "0/1/0", "Complete", Some(300)),
        );
        let j = job(json!({"ttlSecondsAfterFinished": 60}), done);
        let plan = decide(
            &j,
            &[],
            Inputs {
                now: now(),
                last_failure: None,
                backoff_base: Duration::from_secs(10),
            },
        );
        assert!(plan.delete_job);
    }

    #[test]
    fn completed_index_ranges_and_backoff() {
        for (idx, want) in [
            (vec![], ""),
            (vec![0, 1, 2, 4], "0-2,4"),
            (vec![3], "3"),
            (vec![1, 3, 4], "1,3-4"),
        ] {
            assert_eq!(index_ranges(&idx.into_iter().collect()), want);
        }
        let base = Duration::from_secs(10);
        let got: Vec<u64> = [1, 2, 3, 7, 30]
            .iter()
            .map(|f| backoff_delay(base, *f).as_secs())
            .collect();
        assert_eq!(got, [10, 20, 40, 360, 360]);
    }
}
