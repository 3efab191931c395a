//! The decision of one CronJob sync, with no IO: whether a Job is due (at most the latest
//! missed time, within startingDeadlineSeconds), what the concurrency policy allows, which
//! finished Jobs the history limits drop, and the status.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::schedule::Schedule;

/// What one sync should do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// A Job to create: its name and scheduled time.
    pub create: Option<(String, Timestamp)>,
    /// Jobs to delete (replaced, or beyond the history limits).
    pub delete: Vec<String>,
    pub status: CronJobStatus,
    /// Look again after this long (the next scheduled time).
    pub requeue: Option<Duration>,
    /// Events to record: (warning, reason, message).
    pub events: Vec<(bool, &'static str, String)>,
}

/// `Complete` or `Failed`, when the Job has finished.
pub fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// The name of the Job scheduled at `t`: the CronJob's name and the time in minutes.
pub fn job_name(cj: &str, t: Timestamp) -> String {
    format!("{cj}-{}", t.as_second().div_euclid(60))
}

fn started(job: &Job) -> Option<Timestamp> {
    let start = job.status.as_ref().and_then(|s| s.start_time.as_ref());
    start
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        ..Default::default()
    }
}

/// Finished Jobs beyond `limit` of one outcome, oldest first.
fn beyond_limit(jobs: &[&Job], outcome: &str, limit: i32) -> Vec<String> {
    let mut done: Vec<&&Job> = jobs
        .iter()
        .filter(|j| finished(j) == Some(outcome))
        .collect();
    done.sort_by_key(|j| (started(j), j.metadata.name.clone()));
    let excess = done.len().saturating_sub(limit.max(0) as usize);
    done.into_iter()
        .take(excess)
        .filter_map(|j| j.metadata.name.clone())
        .collect()
}

/// Decides one sync of `cj`, whose Jobs (those it controls) are `jobs`, at `now`.
pub fn decide(
    cj: &CronJob,
    jobs: &[&Job],
    sched: &Schedule,
    tz: &TimeZone,
    now: Timestamp,
) -> Plan {
    let spec = cj.spec.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let mut plan = Plan {
        status: cj.status.clone().unwrap_or_default(),
        ..Default::default()
    };
    let live: Vec<&Job> = jobs
        .iter()
        .copied()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .collect();
    let mut active: Vec<&Job> = live
        .iter()
        .copied()
        .filter(|j| finished(j).is_none())
        .collect();
    active.sort_by_key(|j| j.metadata.name.clone());
    let last_success = live
        .iter()
        .filter(|j| finished(j) == Some("Complete"))
        .filter_map(|j| j.status.as_ref()?.completion_time.as_ref().map(|t| t.0))
        .max();
    let old_success = plan.status.last_successful_time.as_ref().map(|t| t.0);
    plan.status.last_successful_time = old_success.max(last_success).map(Time);
    plan.delete.extend(beyond_limit(
        &live,
        "Complete",
        spec.successful_jobs_history_limit.unwrap_or(3),
    ));
    plan.delete.extend(beyond_limit(
        &live,
        "Failed",
        spec.failed_jobs_history_limit.unwrap_or(1),
    ));
    let set_active = |plan: &mut Plan, active: &[&Job]| {
        plan.status.active =
            (!active.is_empty()).then(|| active.iter().map(|j| reference(j)).collect());
    };
    set_active(&mut plan, &active);
    if cj.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
        return plan;
    }
    plan.requeue = sched.next(now, tz).map(|next| {
        Duration::from_millis(next.duration_since(now).as_millis().max(0) as u64 + 100)
    });
    let mut earliest = plan
        .status
        .last_schedule_time
        .as_ref()
        .or(cj.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    if let Some(sds) = spec.starting_deadline_seconds {
        earliest = earliest.max(now - jiff::SignedDuration::from_secs(sds));
    }
    let (Some(t), missed) = sched.most_recent(earliest, now, tz) else {
        return plan;
    };
    if missed > 100 {
        plan.events.push((
            true,
            "TooManyMissedTimes",
            format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
        ));
    }
    if let Some(sds) = spec.starting_deadline_seconds
        && t + jiff::SignedDuration::from_secs(sds) < now
    {
        plan.events.push((
            true,
            "MissSchedule",
            format!("Missed scheduled time to start a job: {t}"),
        ));
        return plan;
    }
    let job = job_name(&name, t);
    if live
        .iter()
        .any(|j| j.metadata.name.as_deref() == Some(job.as_str()))
    {
        plan.status.last_schedule_time = Some(Time(t));
        return plan;
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            plan.events.push((
                false,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            ));
            return plan;
        }
        Some("Replace") => {
            plan.delete
                .extend(active.iter().filter_map(|j| j.metadata.name.clone()));
            active.clear();
            set_active(&mut plan, &active);
        }
        _ => {}
    }
    plan.create = Some((job, t));
    plan.status.last_schedule_time = Some(Time(t));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn cronjob(spec: serde_json::Value, last: Option<&str>) -> CronJob {
        let mut spec = spec;
        spec["schedule"] = json!("*/10 * * * *");
        spec["jobTemplate"] = json!({"spec": {"template": {"spec": {"containers": []}}}});
        serde_json::from_value(json!({
            "metadata": {"name": "cj", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec,
            "status": {"lastScheduleTime": last},
        }))
        .expect("cronjob")
    }

    /// Jobs from `name:state` words; state a (active), c (complete), f (failed).
    fn jobs(words: &str) -> Vec<Job> {
        words
            .split_whitespace()
            .enumerate()
            .map(|(i, w)| {
                let (name, state) = w.split_once(':').unwrap_or((w, "a"));
                let cond = match state {
                    "c" => json!([{"type": "Complete", "status": "True"}]),
                    "f" => json!([{"type": "Failed", "status": "True"}]),
                    _ => json!([]),
                };
                serde_json::from_value(json!({
                    "metadata": {"name": name, "creationTimestamp": format!("2026-01-01T00:00:{i:02}Z")},
                    "status": {"conditions": cond, "completionTime": if state == "c" { json!("2026-01-01T00:05:00Z") } else { json!(null) }},
                }))
                .expect("job")
            })
            .collect()
    }

    /// (job created at, deleted, active count, lastScheduleTime, first event reason)
    fn check(
        spec: serde_json::Value,
        last: Option<&str>,
        words: &str,
        now: &str,
        want: (Option<&str>, &str, usize, Option<&str>, &str),
    ) {
        let cj = cronjob(spec.clone(), last);
        let js = jobs(words);
        let refs: Vec<&Job> = js.iter().collect();
        let sched = Schedule::parse("*/10 * * * *").expect("schedule");
        let plan = decide(&cj, &refs, &sched, &TimeZone::UTC, ts(now));
        let got = (
            plan.create.as_ref().map(|(_, t)| t.to_string()),
            plan.delete.join(" "),
            plan.status.active.as_ref().map_or(0, Vec::len),
            plan.status
                .last_schedule_time
                .as_ref()
                .map(|t| t.0.to_string()),
            plan.events.first().map(|e| e.1).unwrap_or(""),
        );
        let want = (
            want.0.map(String::from),
            want.1.to_string(),
            want.2,
            want.3.map(String::from),
            want.4,
        );
        assert_eq!(got, want, "{spec} last={last:?} jobs={words} now={now}");
    }

    #[test]
    fn cronjob_decisions() {
        let t10 = Some("2026-01-01T00:10:00Z");
        let t20 = Some("2026-01-01T00:20:00Z");
        // Not yet due, then due.
        check(
            json!({}),
            None,
            "",
            "2026-01-01T00:09:59Z",
            (None, "", 0, None, ""),
        );
        check(
            json!({}),
            None,
            "",
            "2026-01-01T00:10:05Z",
            (t10, "", 0, t10, ""),
        );
        // Missed several: only the latest runs.
        check(
            json!({}),
            None,
            "",
            "2026-01-01T00:25:00Z",
            (t20, "", 0, t20, ""),
        );
        // Already ran this time.
        check(
            json!({}),
            t10,
            "",
            "2026-01-01T00:15:00Z",
            (None, "", 0, t10, ""),
        );
        // Allow runs alongside; Forbid waits; Replace deletes the running one.
        check(
            json!({"concurrencyPolicy": "Allow"}),
            t10,
            "cj-1:a",
            "2026-01-01T00:20:01Z",
            (t20, "", 1, t20, ""),
        );
        check(
            json!({"concurrencyPolicy": "Forbid"}),
            t10,
            "cj-1:a",
            "2026-01-01T00:20:01Z",
            (None, "", 1, t10, "JobAlreadyActive"),
        );
        check(
            json!({"concurrencyPolicy": "Forbid"}),
            t10,
            "cj-1:c",
            "2026-01-01T00:20:01Z",
            (t20, "", 0, t20, ""),
        );
        check(
            json!({"concurrencyPolicy": "Replace"}),
            t10,
            "cj-1:a",
            "2026-01-01T00:20:01Z",
            (t20, "cj-1", 0, t20, ""),
        );
        // startingDeadlineSeconds: too late to start.
        check(
            json!({"startingDeadlineSeconds": 30}),
            t10,
            "",
            "2026-01-01T00:20:45Z",
            (None, "", 0, t10, ""),
        );
        check(
            json!({"startingDeadlineSeconds": 60}),
            t10,
            "",
            "2026-01-01T00:20:45Z",
            (t20, "", 0, t20, ""),
        );
        // Suspended: nothing starts.
        check(
            json!({"suspend": true}),
            t10,
            "",
            "2026-01-01T00:25:00Z",
            (None, "", 0, t10, ""),
        );
        // History limits: oldest finished Jobs go.
        check(
            json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}),
            t10,
            "a:c b:c c:f d:f e:a",
            "2026-01-01T00:15:00Z",
            (None, "a c", 1, t10, ""),
        );
        check(
            json!({}),
            t10,
            "a:c b:c c:c d:c",
            "2026-01-01T00:15:00Z",
            (None, "a", 0, t10, ""),
        );
    }

    #[test]
    fn job_names_count_minutes() {
        assert_eq!(
            job_name("hello", ts("2026-01-01T00:10:00Z")),
            "hello-29453770"
        );
    }
}
