//! The scheduler's writes to the API: bindings, the PodScheduled condition, and Events.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

/// Errors of the scheduler's writes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding pod {pod} to node {node}: {source}")]
    Bind {
        pod: String,
        node: String,
        source: kube::Error,
    },
    #[error("selecting the node of the volume claims of pod {pod}: {source}")]
    PreBind { pod: String, source: kube::Error },
    #[error("updating the status of pod {pod}: {source}")]
    Status { pod: String, source: kube::Error },
    #[error("deleting preemption victim {pod}: {source}")]
    Evict { pod: String, source: kube::Error },
    #[error("recording event {reason} for pod {pod}: {source}")]
    Event {
        pod: String,
        reason: String,
        source: kube::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn ns_name(pod: &Pod) -> (String, String) {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// POSTs a Binding of `pod` to `node`.
pub async fn bind(client: kube::Client, pod: &Pod, node: &str) -> Result<()> {
    let (ns, name) = ns_name(pod);
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    api.create_subresource::<_, serde_json::Value>(
        "binding",
        &name,
        &PostParams::default(),
        &binding,
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Bind {
        pod: format!("{ns}/{name}"),
        node: node.to_string(),
        source,
    })
}

/// Sets PodScheduled=False (reason Unschedulable) with `message`, unless the pod already
/// says exactly that.
pub async fn mark_unschedulable(client: kube::Client, pod: &Pod, message: &str) -> Result<()> {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    if current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    }) {
        return Ok(());
    }
    let since = current
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(now);
    let (ns, name) = ns_name(pod);
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": since,
    }]}});
    Api::<Pod>::namespaced(client, &ns)
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::Status {
            pod: format!("{ns}/{name}"),
            source,
        })
}

/// Sets `status.nominatedNodeName` of a pod that preempted others on `node`.
pub async fn nominate(client: kube::Client, pod: &Pod, node: &str) -> Result<()> {
    let (ns, name) = ns_name(pod);
    let patch = json!({"status": {"nominatedNodeName": node}});
    Api::<Pod>::namespaced(client, &ns)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::Status {
            pod: format!("{ns}/{name}"),
            source,
        })
}

/// Evicts a preemption victim as upstream does: the DisruptionTarget condition, a
/// `Preempted` event, then a graceful delete.
pub async fn evict(
    client: kube::Client,
    victim: Arc<Pod>,
    preemptor: &Pod,
    node: &str,
    reporter: &str,
) -> Result<()> {
    let (ns, name) = ns_name(&victim);
    let api = Api::<Pod>::namespaced(client.clone(), &ns);
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": format!("{reporter}: preempting to accommodate a higher priority pod"),
        "lastTransitionTime": now(),
    }]}});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(condition))
        .await
    {
        tracing::debug!(error = %e, pod = %name, "setting DisruptionTarget");
    }
    let message = format!(
        "Preempted by pod {} on node {node}",
        preemptor.metadata.uid.as_deref().unwrap_or("")
    );
    event(
        client,
        victim,
        reporter,
        "Normal",
        "Preempted",
        "Preempting",
        message,
    )
    .await?;
    match api.delete(&name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(Error::Evict {
            pod: format!("{ns}/{name}"),
            source,
        }),
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// The instance upstream's event recorder names: the component and the host it runs on
/// (`default-scheduler-<hostname>`), which `kubectl get events -o wide` shows as the source;
/// `component` is the profile's schedulerName.
fn reporting_instance(component: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match host.trim() {
        "" => component.to_string(),
        h => format!("{component}-{h}"),
    }
}

/// Records a core/v1 Event about `pod` from the scheduler profile `reporter` (its
/// schedulerName, the event's source), as `kubectl describe pod` shows it.
pub async fn event(
    client: kube::Client,
    pod: Arc<Pod>,
    reporter: &str,
    type_: &str,
    reason: &str,
    action: &str,
    message: String,
) -> Result<()> {
    let (ns, name) = ns_name(&pod);
    let stamp = Timestamp::now();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", stamp.as_nanosecond())),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        action: Some(action.into()),
        source: Some(EventSource {
            component: Some(reporter.into()),
            host: None,
        }),
        reporting_component: Some(reporter.into()),
        reporting_instance: Some(reporting_instance(reporter)),
        first_timestamp: Some(Time(stamp)),
        last_timestamp: Some(Time(stamp)),
        count: Some(1),
        ..Event::default()
    };
    Api::<Event>::namespaced(client, &ns)
        .create(&PostParams::default(), &event)
        .await
        .map(|_| ())
        .map_err(|source| Error::Event {
            pod: format!("{ns}/{name}"),
            reason: reason.into(),
            source,
        })
}
