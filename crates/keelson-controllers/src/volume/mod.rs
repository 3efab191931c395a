//! The PersistentVolume controllers: the binder (claims to the volumes that fit, phases,
//! reclaim), in-use protection of claims and volumes, and the built-in local-path
//! provisioner. Decisions are pure ([`binder`], [`protection`], [`provision`]); this module
//! reads the caches and writes what they decide.

pub mod binder;
pub mod protection;
pub mod provision;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::json;

use self::binder::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER,
    ANN_STORAGE_PROVISIONER, ClaimStep, ClaimView, Note, VolumeStep,
};
use self::protection::{Finalizer, PV_FINALIZER, PVC_FINALIZER};
use crate::backoff::Backoff;
use crate::events::{EventType, Recorder};
use crate::informer::Informer;

/// How often a claim that waits is looked at again (upstream's resync period).
const RESYNC: Duration = Duration::from_secs(15);

/// Errors of one pass over a claim or a volume; each sends it back to the rate-limited queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action} persistentvolume {name}: {source}")]
    Volume {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action} persistentvolumeclaim {key}: {source}")]
    Claim {
        action: &'static str,
        key: String,
        #[source]
        source: kube::Error,
    },
    #[error("node {0} of claim's selected-node annotation is not known")]
    UnknownNode(String),
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// How the storage controllers run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the local-path provisioner puts volumes on nodes (a class's `nodePath`
    /// parameter overrides it).
    pub local_path_dir: PathBuf,
    /// Whether to create the default `local-path` StorageClass when it is missing.
    pub default_class: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            local_path_dir: PathBuf::from(provision::DEFAULT_DIR),
            default_class: true,
        }
    }
}

struct Context {
    client: Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    recorder: Recorder,
    provisioner: Recorder,
    settings: Settings,
    backoff: Backoff,
}

/// The informers the storage controllers read.
pub struct Informers<'a> {
    pub claims: &'a Informer<PersistentVolumeClaim>,
    pub volumes: &'a Informer<PersistentVolume>,
    pub classes: &'a Informer<StorageClass>,
    pub pods: &'a Informer<Pod>,
    pub nodes: &'a Informer<Node>,
}

/// The claim and volume controllers; they subscribe now, so build them before the informers
/// start.
pub fn run(
    client: Client,
    inf: Informers<'_>,
    settings: Settings,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), "persistentvolume-controller"),
        provisioner: Recorder::new(client.clone(), provision::PROVISIONER),
        client: client.clone(),
        claims: inf.claims.store(),
        volumes: inf.volumes.store(),
        classes: inf.classes.store(),
        pods: inf.pods.store(),
        nodes: inf.nodes.store(),
        settings,
        backoff: Backoff::default(),
    });
    let (c1, c2, c3) = (ctx.clone(), ctx.clone(), ctx.clone());
    let claims = Controller::for_shared_stream(inf.claims.subscribe(), inf.claims.store())
        .watches_shared_stream(inf.volumes.subscribe(), move |pv: Arc<PersistentVolume>| {
            claims_for_volume(&c1, &pv)
        })
        .watches_shared_stream(inf.classes.subscribe(), move |_: Arc<StorageClass>| {
            unbound_claims(&c2)
        })
        .watches_shared_stream(inf.pods.subscribe(), |pod: Arc<Pod>| {
            let ns = pod.namespace().unwrap_or_default();
            protection::claims_of(&pod)
                .into_iter()
                .map(move |c| ObjectRef::<PersistentVolumeClaim>::new(&c).within(&ns))
                .collect::<Vec<_>>()
        })
        .run(reconcile_claim, claim_error, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let volumes = Controller::for_shared_stream(inf.volumes.subscribe(), inf.volumes.store())
        .watches_shared_stream(
            inf.claims.subscribe(),
            move |claim: Arc<PersistentVolumeClaim>| volumes_for_claim(&c3, &claim),
        )
        .run(reconcile_volume, volume_error, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let setup = ensure_default_class(client, ctx.settings.default_class);
    async move {
        tokio::spawn(setup);
        futures::future::join(claims, volumes).await;
    }
}

/// Creates the default `local-path` StorageClass if it does not exist, retrying until the
/// apiserver answers.
async fn ensure_default_class(client: Client, enabled: bool) {
    if !enabled {
        return;
    }
    let api: Api<StorageClass> = Api::all(client);
    let mut delay = Duration::from_millis(100);
    loop {
        let result = match api.get_opt(provision::CLASS).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => match api
                .create(&PostParams::default(), &provision::default_class())
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return,
            Err(e) => tracing::debug!(error = %e, "creating the local-path storage class"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The claims a volume change concerns: the one it names, and every unbound claim when the
/// volume is free (it may fit one of them now).
fn claims_for_volume(
    ctx: &Context,
    pv: &PersistentVolume,
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let named = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    match named {
        Some(r) => vec![
            ObjectRef::new(r.name.as_deref().unwrap_or(""))
                .within(r.namespace.as_deref().unwrap_or("")),
        ],
        None => unbound_claims(ctx),
    }
}

fn unbound_claims(ctx: &Context) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    ctx.claims
        .state()
        .iter()
        .filter(|c| binder::volume_name(c).is_empty() && c.metadata.deletion_timestamp.is_none())
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// The volumes a claim change concerns: the one it names and those whose claimRef names it.
fn volumes_for_claim(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
) -> Vec<ObjectRef<PersistentVolume>> {
    let key = binder::claim_key(claim);
    let mut out: Vec<ObjectRef<PersistentVolume>> = ctx
        .volumes
        .state()
        .iter()
        .filter(|v| binder::claim_ref_key(v).as_deref() == Some(key.as_str()))
        .map(|v| ObjectRef::from_obj(v.as_ref()))
        .collect();
    let name = binder::volume_name(claim);
    if !name.is_empty() {
        out.push(ObjectRef::new(name));
    }
    out
}

fn claim_error(claim: Arc<PersistentVolumeClaim>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::debug!(error = %err, "persistentvolume controller (claims)");
    Action::requeue(
        ctx.backoff
            .next(&format!("pvc/{}", binder::claim_key(&claim))),
    )
}

fn volume_error(pv: Arc<PersistentVolume>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::debug!(error = %err, "persistentvolume controller (volumes)");
    Action::requeue(ctx.backoff.next(&format!("pv/{}", pv.name_any())))
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The finalizer list with `f` added or removed.
fn finalizers_with(meta: &kube::api::ObjectMeta, f: &str, add: bool) -> Vec<String> {
    let mut list: Vec<String> = meta
        .finalizers
        .iter()
        .flatten()
        .filter(|x| x.as_str() != f)
        .cloned()
        .collect();
    if add {
        list.push(f.to_string());
    }
    list
}

async fn reconcile_claim(claim: Arc<PersistentVolumeClaim>, ctx: Arc<Context>) -> Result<Action> {
    let key = binder::claim_key(&claim);
    let ns = claim.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let claim_err = |action: &'static str| {
        let key = key.clone();
        move |source| Error::Claim {
            action,
            key,
            source,
        }
    };
    let pods = ctx.pods.state();
    match protection::claim_finalizer(&claim, pods.iter().map(|p| p.as_ref())) {
        Finalizer::Keep => {}
        f => {
            let list = finalizers_with(&claim.metadata, PVC_FINALIZER, f == Finalizer::Add);
            let patch = json!({"metadata": {"finalizers": list,
                "resourceVersion": claim.metadata.resource_version}});
            api.patch(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(claim_err("updating the finalizers of"))?;
            return Ok(Action::await_change());
        }
    }
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let volumes = ctx.volumes.state();
    let volume_refs: Vec<&PersistentVolume> = volumes.iter().map(|v| v.as_ref()).collect();
    let classes = ctx.classes.state();
    let class_map: BTreeMap<String, &StorageClass> =
        classes.iter().map(|c| (c.name_any(), c.as_ref())).collect();
    let nodes: BTreeMap<String, BTreeMap<String, String>> = ctx
        .nodes
        .state()
        .iter()
        .map(|n| (n.name_any(), n.metadata.labels.clone().unwrap_or_default()))
        .collect();
    let step = binder::decide_claim(
        &claim,
        &ClaimView {
            volumes: &volume_refs,
            classes: &class_map,
            nodes: &nodes,
            provisioner: provision::PROVISIONER,
        },
    );
    match step {
        ClaimStep::Wait(note) => {
            if let Some(n) = note {
                ctx.recorder
                    .publish(claim.as_ref(), n.kind, n.reason, &n.message)
                    .await;
            }
            Ok(Action::requeue(RESYNC))
        }
        ClaimStep::Bind(name) => {
            let Some(pv) = volumes.iter().find(|v| v.name_any() == name) else {
                return Ok(Action::requeue(RESYNC));
            };
            bind(&ctx, &claim, pv).await?;
            ctx.backoff.reset(&format!("pvc/{key}"));
            Ok(Action::await_change())
        }
        ClaimStep::Provision { node, class } => {
            let Some(class) = class_map.get(&class).copied() else {
                return Ok(Action::requeue(RESYNC));
            };
            provision(&ctx, &claim, class, &node, &nodes).await?;
            Ok(Action::requeue(RESYNC))
        }
        ClaimStep::Lost(note) => {
            let patch = json!({"status": {"phase": "Lost"}});
            if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Lost") {
                api.patch_status(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(claim_err("marking lost"))?;
                ctx.recorder
                    .publish(claim.as_ref(), note.kind, note.reason, &note.message)
                    .await;
            }
            Ok(Action::await_change())
        }
    }
}

/// Writes both sides of a binding, each only where it differs: the volume's claimRef and
/// phase, then the claim's volumeName, annotations and status.
async fn bind(ctx: &Context, claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> Result<()> {
    let pv_name = pv.name_any();
    let pv_api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv_err = |action: &'static str| {
        let name = pv_name.clone();
        move |source| Error::Volume {
            action,
            name,
            source,
        }
    };
    let has_uid = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref())
        .is_some_and(|u| Some(u) == claim.metadata.uid.as_deref());
    if !has_uid {
        let mut next = pv.clone();
        let by_us = pv.spec.as_ref().is_none_or(|s| s.claim_ref.is_none());
        next.metadata.managed_fields = None;
        if by_us {
            next.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        let spec = next.spec.get_or_insert_with(Default::default);
        spec.claim_ref = Some(k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("PersistentVolumeClaim".into()),
            api_version: Some("v1".into()),
            namespace: claim.metadata.namespace.clone(),
            name: claim.metadata.name.clone(),
            uid: claim.metadata.uid.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            field_path: None,
        });
        pv_api
            .replace(&pv_name, &PostParams::default(), &next)
            .await
            .map_err(pv_err("binding"))?;
    }
    if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
        set_volume_phase(ctx, &pv_name, "Bound", None).await?;
    }
    let ns = claim.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let key = binder::claim_key(claim);
    let claim_err = |action: &'static str| {
        let key = key.clone();
        move |source| Error::Claim {
            action,
            key,
            source,
        }
    };
    let anns = claim.metadata.annotations.clone().unwrap_or_default();
    let named = binder::volume_name(claim) == pv_name;
    if !named || !anns.contains_key(ANN_BIND_COMPLETED) {
        let mut next = claim.clone();
        next.metadata.managed_fields = None;
        let a = next
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        a.insert(ANN_BIND_COMPLETED.into(), "yes".into());
        if !named {
            a.insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        next.spec.get_or_insert_with(Default::default).volume_name = Some(pv_name.clone());
        api.replace(&claim.name_any(), &PostParams::default(), &next)
            .await
            .map_err(claim_err("binding"))?;
    }
    let spec = pv.spec.clone().unwrap_or_default();
    let status = claim.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Bound")
        || status.capacity != spec.capacity
        || status.access_modes != spec.access_modes
    {
        let patch = json!({"status": {"phase": "Bound", "capacity": spec.capacity,
            "accessModes": spec.access_modes}});
        api.patch_status(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(claim_err("updating the status of"))?;
    }
    Ok(())
}

async fn set_volume_phase(
    ctx: &Context,
    name: &str,
    phase: &str,
    message: Option<&str>,
) -> Result<()> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let patch = json!({"status": {"phase": phase, "message": message,
        "lastPhaseTransitionTime": now()}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::Volume {
            action: "updating the phase of",
            name: name.to_string(),
            source,
        })
}

/// Makes the local-path volume of a claim on `node`, pre-bound to it.
async fn provision(
    ctx: &Context,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    nodes: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<()> {
    let labels = nodes
        .get(node)
        .ok_or_else(|| Error::UnknownNode(node.to_string()))?;
    let hostname = labels
        .get(provision::HOSTNAME_LABEL)
        .map_or(node, String::as_str);
    let key = binder::claim_key(claim);
    let anns = claim.metadata.annotations.clone().unwrap_or_default();
    if anns.get(ANN_STORAGE_PROVISIONER).map(String::as_str) != Some(provision::PROVISIONER) {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
        let patch = json!({"metadata": {"annotations": {
            ANN_STORAGE_PROVISIONER: provision::PROVISIONER,
            ANN_BETA_STORAGE_PROVISIONER: provision::PROVISIONER}}});
        api.patch(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| Error::Claim {
            action: "annotating",
            key: key.clone(),
            source,
        })?;
    }
    ctx.provisioner
        .publish(
            claim,
            EventType::Normal,
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim \"{key}\""),
        )
        .await;
    let pv = provision::volume_for(claim, class, hostname, &ctx.settings.local_path_dir);
    let name = pv.name_any();
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
        Err(source) => {
            ctx.provisioner
                .publish(
                    claim,
                    EventType::Warning,
                    "ProvisioningFailed",
                    &format!(
                        "failed to provision volume with StorageClass \"{}\": {source}",
                        class.name_any()
                    ),
                )
                .await;
            return Err(Error::Volume {
                action: "creating",
                name,
                source,
            });
        }
    }
    ctx.provisioner
        .publish(
            claim,
            EventType::Normal,
            "ProvisioningSucceeded",
            &format!("Successfully provisioned volume {name}"),
        )
        .await;
    Ok(())
}

async fn reconcile_volume(pv: Arc<PersistentVolume>, ctx: Arc<Context>) -> Result<Action> {
    let name = pv.name_any();
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv_err = |action: &'static str| {
        let name = name.clone();
        move |source| Error::Volume {
            action,
            name,
            source,
        }
    };
    match protection::volume_finalizer(&pv) {
        Finalizer::Keep => {}
        f => {
            let list = finalizers_with(&pv.metadata, PV_FINALIZER, f == Finalizer::Add);
            let patch = json!({"metadata": {"finalizers": list,
                "resourceVersion": pv.metadata.resource_version}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(pv_err("updating the finalizers of"))?;
            return Ok(Action::await_change());
        }
    }
    if pv.metadata.deletion_timestamp.is_some() {
        return release_orphaned_cleanup(&ctx, &pv).await;
    }
    let claim = binder::claim_ref_key(&pv).and_then(|key| {
        let (ns, n) = key.split_once('/')?;
        ctx.claims.get(&ObjectRef::new(n).within(ns))
    });
    match binder::decide_volume(&pv, claim.as_deref(), provision::PROVISIONER) {
        VolumeStep::Nothing => {}
        VolumeStep::Phase(p) => set_volume_phase(&ctx, &name, p, None).await?,
        VolumeStep::Unbind => {
            let mut next = pv.as_ref().clone();
            next.metadata.managed_fields = None;
            if let Some(a) = next.metadata.annotations.as_mut() {
                a.remove(ANN_BOUND_BY_CONTROLLER);
            }
            if let Some(s) = next.spec.as_mut() {
                s.claim_ref = None;
            }
            api.replace(&name, &PostParams::default(), &next)
                .await
                .map_err(pv_err("unbinding"))?;
            set_volume_phase(&ctx, &name, "Available", None).await?;
        }
        VolumeStep::Release => {
            // The cache may lag: make sure the claim is really gone before releasing.
            if claim_still_there(&ctx, &pv).await? {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            set_volume_phase(&ctx, &name, "Released", None).await?;
        }
        VolumeStep::Delete => match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                return Err(Error::Volume {
                    action: "deleting",
                    name,
                    source,
                });
            }
        },
        VolumeStep::Fail(note) => {
            set_volume_phase(&ctx, &name, "Failed", Some(&note.message)).await?;
            record_volume(&ctx, &pv, &note).await;
        }
    }
    ctx.backoff.reset(&format!("pv/{name}"));
    Ok(Action::await_change())
}

async fn record_volume(ctx: &Context, pv: &PersistentVolume, note: &Note) {
    ctx.recorder
        .publish(pv, note.kind, note.reason, &note.message)
        .await;
}

/// Whether the claim a volume's claimRef names still exists with the same UID (asked of the
/// apiserver, not the cache).
async fn claim_still_there(ctx: &Context, pv: &PersistentVolume) -> Result<bool> {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return Ok(false);
    };
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), r.namespace.as_deref().unwrap_or(""));
    let found = api
        .get_opt(r.name.as_deref().unwrap_or(""))
        .await
        .map_err(|source| Error::Claim {
            action: "reading",
            key: format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or("")
            ),
            source,
        })?;
    Ok(found.is_some_and(|c| c.metadata.uid == r.uid))
}

/// A provisioned volume being deleted whose node no longer exists has nobody to remove its
/// data: its cleanup finalizer is dropped so the object can go.
async fn release_orphaned_cleanup(ctx: &Context, pv: &PersistentVolume) -> Result<Action> {
    let holds = pv
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == provision::CLEANUP_FINALIZER);
    let Some(node) = provision::node_of(pv).filter(|_| holds) else {
        return Ok(Action::await_change());
    };
    let known = ctx.nodes.state().iter().any(|n| {
        n.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(provision::HOSTNAME_LABEL))
            .map_or(n.name_any() == node, |h| *h == node)
    });
    if known {
        return Ok(Action::requeue(Duration::from_secs(60)));
    }
    let name = pv.name_any();
    let list = finalizers_with(&pv.metadata, provision::CLEANUP_FINALIZER, false);
    let patch = json!({"metadata": {"finalizers": list,
        "resourceVersion": pv.metadata.resource_version}});
    Api::<PersistentVolume>::all(ctx.client.clone())
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Volume {
            action: "releasing the cleanup finalizer of",
            name,
            source,
        })?;
    Ok(Action::await_change())
}
