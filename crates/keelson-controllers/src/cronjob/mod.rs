//! The CronJob controller: Jobs on a cron schedule (five fields, macros, timeZone), with
//! concurrency policies, a starting deadline, history limits and suspend, on a clock tests
//! can drive.

pub mod decide;
pub mod schedule;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::events::{EventType, Recorder};
use crate::informer::Informer;
use crate::pod::controller_of;
use crate::replicaset::{key_of, owner_ref};

/// The annotation on a Job with the time it was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Errors of one reconcile; each sends the CronJob back to the rate-limited queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} job for cronjob {cronjob}: {source}")]
    Job {
        action: &'static str,
        cronjob: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating status of cronjob {cronjob}: {source}")]
    Status {
        cronjob: String,
        #[source]
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    cronjobs: Store<CronJob>,
    jobs: Store<Job>,
    recorder: Recorder,
    backoff: Backoff,
    clock: Clock,
}

/// The controller; subscribes now, so build it before the informers start.
pub fn run(
    client: Client,
    cronjobs: &Informer<CronJob>,
    jobs: &Informer<Job>,
    clock: Clock,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "cronjob-controller"),
        client,
        cronjobs: cronjobs.store(),
        jobs: jobs.store(),
        backoff: Backoff::default(),
        clock,
    });
    Controller::for_shared_stream(cronjobs.subscribe(), cronjobs.store())
        .watches_shared_stream(jobs.subscribe(), |job: Arc<Job>| {
            let owner = controller_of(&job.metadata)?;
            (owner.kind == "CronJob")
                .then(|| ObjectRef::new(&owner.name).within(&job.namespace().unwrap_or_default()))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(cj: Arc<CronJob>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "cronjob controller");
    Action::requeue(ctx.backoff.next(&key_of(cj.as_ref())))
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(cj.as_ref());
    if ctx
        .cronjobs
        .get(&ObjectRef::from_obj(cj.as_ref()))
        .is_none()
    {
        return Ok(Action::await_change());
    }
    let spec = cj.spec.clone().unwrap_or_default();
    let parsed = schedule::Schedule::parse(&spec.schedule)
        .map_err(|e| {
            (
                "UnparseableSchedule",
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            )
        })
        .and_then(|s| {
            let tz = schedule::time_zone(spec.time_zone.as_deref())
                .map_err(|e| ("UnknownTimeZone", e.to_string()))?;
            Ok((s, tz))
        });
    let (sched, tz) = match parsed {
        Ok(p) => p,
        Err((reason, message)) => {
            ctx.recorder
                .publish(cj.as_ref(), EventType::Warning, reason, &message)
                .await;
            return Ok(Action::await_change());
        }
    };
    let ns = cj.namespace().unwrap_or_default();
    let uid = cj.uid().unwrap_or_default();
    let all = ctx.jobs.state();
    let owned: Vec<&Job> = all
        .iter()
        .map(|j| j.as_ref())
        .filter(|j| j.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|j| controller_of(&j.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let now = ctx.clock.now();
    let plan = decide::decide(&cj, &owned, &sched, &tz, now);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let err = |action| {
        let key = key.clone();
        move |source| Error::Job {
            action,
            cronjob: key,
            source,
        }
    };
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    for name in &plan.delete {
        match jobs.delete(name, &background).await {
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => return Err(err("deleting")(source)),
            Ok(_) => {
                let msg = format!("Deleted job {name}");
                ctx.recorder
                    .publish(cj.as_ref(), EventType::Normal, "SuccessfulDelete", &msg)
                    .await;
            }
        }
    }
    let mut status = plan.status.clone();
    if let Some((name, at)) = &plan.create {
        let job = job_for(&cj, name, at.to_zoned(tz.clone()).timestamp());
        match jobs.create(&PostParams::default(), &job).await {
            Ok(created) => {
                let msg = format!("Created job {name}");
                ctx.recorder
                    .publish(cj.as_ref(), EventType::Normal, "SuccessfulCreate", &msg)
                    .await;
                let reference = k8s_openapi::api::core::v1::ObjectReference {
                    api_version: Some("batch/v1".into()),
                    kind: Some("Job".into()),
                    name: created.metadata.name.clone(),
                    namespace: created.metadata.namespace.clone(),
                    uid: created.metadata.uid.clone(),
                    ..Default::default()
                };
                status.active.get_or_insert_default().push(reference);
            }
            // Created before; the cache has not caught up.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(source) => return Err(err("creating")(source)),
        }
    }
    for (warning, reason, message) in &plan.events {
        let kind = if *warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.recorder
            .publish(cj.as_ref(), kind, reason, message)
            .await;
    }
    let old = serde_json::to_value(cj.status.clone().unwrap_or_default()).unwrap_or_default();
    let new = serde_json::to_value(&status).unwrap_or_default();
    if old != new {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
        // `active` may shrink to nothing: send it as null so the merge patch removes it.
        let mut patch = new;
        if status.active.is_none() {
            patch["active"] = serde_json::Value::Null;
        }
        api.patch_status(
            &cj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": patch})),
        )
        .await
        .map_err(|source| Error::Status {
            cronjob: key.clone(),
            source,
        })?;
    }
    ctx.backoff.reset(&key);
    Ok(plan
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

/// A Job from the CronJob's template, named for its scheduled time.
pub fn job_for(cj: &CronJob, name: &str, scheduled: jiff::Timestamp) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    meta.name = Some(name.into());
    meta.namespace = cj.namespace();
    meta.owner_references = Some(vec![owner_ref(cj)]);
    meta.annotations
        .get_or_insert_default()
        .insert(SCHEDULED_TIMESTAMP.into(), scheduled.to_string());
    Job {
        metadata: meta,
        spec: template.spec,
        status: None,
    }
}
