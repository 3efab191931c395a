//! The Job controller: runs a Job's pods to completion (NonIndexed or Indexed), retrying
//! failures with exponential back-off up to backoffLimit, within activeDeadlineSeconds, and
//! deletes finished Jobs after ttlSecondsAfterFinished.

pub mod decide;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::backoff::Backoff;
use crate::events::{EventType, Recorder};
use crate::expectations::Expectations;
use crate::informer::Informer;
use crate::pod::controller_of;
use crate::replicaset::{key_of, owner_ref};
use decide::{COMPLETION_INDEX, Inputs, Plan};

/// Errors of one reconcile; each sends the Job back to the rate-limited queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} pod for job {job}: {source}")]
    Pod {
        action: &'static str,
        job: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} job {job}: {source}")]
    Job {
        action: &'static str,
        job: String,
        #[source]
        source: kube::Error,
    },
}

struct Context {
    client: Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Expectations,
    backoff: Backoff,
    backoff_base: Duration,
    /// Per Job uid: the failed-pod count last seen and when it last grew.
    failures: Mutex<HashMap<String, (i32, jiff::Timestamp)>>,
}

/// The controller; subscribes now, so build it before the informers start. `backoff_base`
/// is the delay before the first retry of a failed pod (upstream: 10 s).
pub fn run(
    client: Client,
    jobs: &Informer<Job>,
    pods: &Informer<Pod>,
    backoff_base: Duration,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "job-controller"),
        client,
        jobs: jobs.store(),
        pods: pods.store(),
        expectations: Expectations::default(),
        backoff: Backoff::default(),
        backoff_base,
        failures: Mutex::default(),
    });
    Controller::for_shared_stream(jobs.subscribe(), jobs.store())
        .watches_shared_stream(pods.subscribe(), |pod: Arc<Pod>| {
            let owner = controller_of(&pod.metadata)?;
            (owner.kind == "Job")
                .then(|| ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default()))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(job: Arc<Job>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "job controller");
    Action::requeue(ctx.backoff.next(&key_of(job.as_ref())))
}

/// When the failed count of `job` last grew, remembering `failed` as seen now.
fn last_failure(
    ctx: &Context,
    uid: &str,
    failed: i32,
    now: jiff::Timestamp,
) -> Option<jiff::Timestamp> {
    let mut map = ctx.failures.lock().ok()?;
    if failed == 0 {
        map.remove(uid);
        return None;
    }
    let entry = map.entry(uid.to_string()).or_insert((0, now));
    if failed > entry.0 {
        *entry = (failed, now);
    }
    Some(entry.1)
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(job.as_ref());
    if ctx.jobs.get(&ObjectRef::from_obj(job.as_ref())).is_none()
        || job.metadata.deletion_timestamp.is_some()
    {
        ctx.expectations.forget(&key);
        return Ok(Action::await_change());
    }
    let ns = job.namespace().unwrap_or_default();
    let uid = job.uid().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let satisfied = ctx.expectations.satisfied(
        &key,
        |name| ctx.pods.get(&ObjectRef::new(name).within(&ns)).is_some(),
        |name, _| ctx.pods.get(&ObjectRef::new(name).within(&ns)).is_none(),
    );
    if !satisfied {
        return Ok(Action::requeue(Duration::from_millis(500)));
    }
    let all = ctx.pods.state();
    let owned: Vec<&Pod> = all
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
        .collect();
    let now = jiff::Timestamp::now();
    let failed_now = owned
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .count() as i32;
    let inputs = Inputs {
        now,
        last_failure: last_failure(&ctx, &uid, failed_now, now),
        backoff_base: ctx.backoff_base,
    };
    let plan = decide::decide(&job, &owned, inputs);
    apply(&job, &ctx, &pods_api, &key, &plan).await?;
    ctx.backoff.reset(&key);
    Ok(plan
        .requeue
        .map_or_else(Action::await_change, Action::requeue))
}

async fn apply(
    job: &Job,
    ctx: &Context,
    pods_api: &Api<Pod>,
    key: &str,
    plan: &Plan,
) -> Result<(), Error> {
    let pod_err = |action| {
        move |source| Error::Pod {
            action,
            job: key.to_string(),
            source,
        }
    };
    for index in &plan.create {
        let pod = pod_for(job, *index);
        let created = pods_api
            .create(&PostParams::default(), &pod)
            .await
            .map_err(pod_err("creating"))?;
        ctx.expectations.created(key, created.name_any());
        let msg = format!("Created pod: {}", created.name_any());
        ctx.recorder
            .publish(job, EventType::Normal, "SuccessfulCreate", &msg)
            .await;
    }
    for name in &plan.delete {
        match pods_api.delete(name, &DeleteParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => return Err(pod_err("deleting")(source)),
            Ok(_) => {
                ctx.expectations.deleted(key, name.clone(), String::new());
                let msg = format!("Deleted pod: {name}");
                ctx.recorder
                    .publish(job, EventType::Normal, "SuccessfulDelete", &msg)
                    .await;
            }
        }
    }
    let job_api: Api<Job> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let job_err = |action| {
        move |source| Error::Job {
            action,
            job: key.to_string(),
            source,
        }
    };
    let old = serde_json::to_value(&job.status).unwrap_or_default();
    let new = serde_json::to_value(&plan.status).unwrap_or_default();
    if old != new {
        job_api
            .patch_status(
                &job.name_any(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": new})),
            )
            .await
            .map_err(job_err("updating status of"))?;
        for (warning, reason, message) in &plan.events {
            let kind = if *warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            ctx.recorder.publish(job, kind, reason, message).await;
        }
    }
    if plan.delete_job {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match job_api.delete(&job.name_any(), &dp).await {
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            other => {
                other.map_err(job_err("deleting"))?;
            }
        }
    }
    Ok(())
}

/// A pod from the Job's template: its labels, a controller reference, and for an Indexed
/// Job the completion index (annotation, label, hostname, `JOB_COMPLETION_INDEX`).
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let name = job.name_any();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    meta.name = None;
    meta.namespace = job.namespace();
    meta.owner_references = Some(vec![owner_ref(job)]);
    let mut spec = template.spec.unwrap_or_default();
    meta.generate_name = Some(format!("{name}-"));
    if let Some(i) = index {
        meta.generate_name = Some(format!("{name}-{i}-"));
        meta.annotations
            .get_or_insert_default()
            .insert(COMPLETION_INDEX.into(), i.to_string());
        meta.labels
            .get_or_insert_default()
            .insert(COMPLETION_INDEX.into(), i.to_string());
        if spec.hostname.as_deref().is_none_or(str::is_empty) {
            spec.hostname = Some(format!("{name}-{i}"));
        }
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    api_version: None,
                }),
                ..Default::default()
            }),
            value: None,
        };
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for c in containers {
            c.env.get_or_insert_default().push(env.clone());
        }
    }
    Pod {
        metadata: meta,
        spec: Some(spec),
        status: None,
    }
}
