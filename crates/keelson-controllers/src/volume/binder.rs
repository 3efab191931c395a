//! The binding decisions of the PersistentVolume controller, computed without IO: which
//! volume a claim gets (the smallest that fits), what one pass over a claim or a volume must
//! do, and the messages upstream's controller records.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use keelson_apimachinery::quantity;
use keelson_kinds::placement::term_matches;

use crate::events::EventType;
use crate::selector::label_selector_matches;

/// Set on a claim once both sides of its binding are written.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on the side of a binding the controller (not the user) wrote.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node the scheduler chose for a claim whose class waits for the first consumer.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner asked to make a volume for a claim.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The deprecated form of [`ANN_STORAGE_PROVISIONER`], still written by upstream.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The provisioner that made a volume.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The deprecated storage class annotation, which wins over `storageClassName`.
pub const ANN_BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// The class that marks volumes no provisioner makes.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// An event to record about the object a decision is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub kind: EventType,
    pub reason: &'static str,
    pub message: String,
}

fn note(kind: EventType, reason: &'static str, message: impl Into<String>) -> Option<Note> {
    Some(Note {
        kind,
        reason,
        message: message.into(),
    })
}

/// What one pass over a claim does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimStep {
    /// The claim waits (Pending), with perhaps an event saying why.
    Wait(Option<Note>),
    /// Bind the claim and the named volume (both sides, idempotently).
    Bind(String),
    /// Make a volume for the claim with the built-in provisioner on this node.
    Provision { node: String, class: String },
    /// The claim lost its volume: phase Lost, with the event.
    Lost(Note),
}

/// What one pass over a volume does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeStep {
    /// Nothing to write.
    Nothing,
    /// Set the phase (Available or Bound).
    Phase(&'static str),
    /// The claim of a controller-made binding went to another volume: clear the claimRef.
    Unbind,
    /// The claim is gone: the volume is Released, then reclaimed as its policy says.
    Release,
    /// Delete the volume object (a Released volume under the Delete policy whose data its
    /// provisioner removes).
    Delete,
    /// The volume cannot be reclaimed: phase Failed with this message (and event).
    Fail(Note),
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The storage class a claim asks for: the beta annotation, then `spec.storageClassName`;
/// "" for none.
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    annotation(&claim.metadata, ANN_BETA_CLASS)
        .map(String::from)
        .or_else(|| claim.spec.as_ref()?.storage_class_name.clone())
        .unwrap_or_default()
}

/// The storage class a volume belongs to: the beta annotation, then `spec.storageClassName`.
pub fn volume_class(pv: &PersistentVolume) -> String {
    annotation(&pv.metadata, ANN_BETA_CLASS)
        .map(String::from)
        .or_else(|| pv.spec.as_ref()?.storage_class_name.clone())
        .unwrap_or_default()
}

/// The storage a claim requests, in milli-units (0 when it says nothing).
pub fn requested(claim: &PersistentVolumeClaim) -> i128 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage"))
        .and_then(|q| quantity::parse(&q.0))
        .map_or(0, i128::from)
}

/// The capacity of a volume, in milli-units.
pub fn capacity(pv: &PersistentVolume) -> i128 {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref()?.get("storage"))
        .and_then(|q| quantity::parse(&q.0))
        .map_or(0, i128::from)
}

fn claim_modes(claim: &PersistentVolumeClaim) -> &[String] {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
}

fn volume_modes(pv: &PersistentVolume) -> &[String] {
    pv.spec
        .as_ref()
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default()
}

fn claim_volume_mode(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

fn volume_volume_mode(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem")
}

/// The name of the volume a claim is bound (or being bound) to; "" for none.
pub fn volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

/// `namespace/name` of a claim.
pub fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or(""),
        claim.metadata.name.as_deref().unwrap_or("")
    )
}

/// `namespace/name` of the claim a volume's claimRef names, if any.
pub fn claim_ref_key(pv: &PersistentVolume) -> Option<String> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some(format!(
        "{}/{}",
        r.namespace.as_deref().unwrap_or(""),
        r.name.as_deref().unwrap_or("")
    ))
}

fn claim_ref_uid(pv: &PersistentVolume) -> Option<&str> {
    pv.spec
        .as_ref()?
        .claim_ref
        .as_ref()?
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
}

/// Whether the volume's claimRef names this claim (and, if it records a UID, this very one).
pub fn bound_to_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    if claim_ref_key(pv).as_deref() != Some(claim_key(claim).as_str()) {
        return false;
    }
    claim_ref_uid(pv).is_none_or(|u| Some(u) == claim.metadata.uid.as_deref())
}

/// Whether a volume may be used on the node (no affinity, or one of its terms matches).
pub fn affinity_allows(
    pv: &PersistentVolume,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, labels, node))
}

/// Why a volume cannot satisfy a claim that asks for it by name (upstream's
/// checkVolumeSatisfyClaim), or `None` when it can.
pub fn unsatisfied(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<&'static str> {
    if capacity(pv) < requested(claim) {
        return Some("requested PV is too small");
    }
    if volume_class(pv) != claim_class(claim) {
        return Some("storageClassName does not match");
    }
    if claim_volume_mode(claim) != volume_volume_mode(pv) {
        return Some("incompatible volumeMode");
    }
    let modes = volume_modes(pv);
    if !claim_modes(claim).iter().all(|m| modes.contains(m)) {
        return Some("incompatible accessMode");
    }
    None
}

/// The node a claim may be bound for: name and labels.
pub type NodeRef<'a> = (&'a str, &'a BTreeMap<String, String>);

/// The volume for a claim: one pre-bound to it (if big enough), else the smallest unclaimed
/// volume of the claim's class, volume mode, access modes and selector that holds the
/// request. `node` is set for claims waiting for their first consumer: then only volumes
/// usable there count, and only pre-bound volumes are taken without it.
pub fn best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: Option<NodeRef<'_>>,
    delayed: bool,
) -> Option<&'a PersistentVolume> {
    let want = requested(claim);
    let class = claim_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let mut best: Option<&PersistentVolume> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some()
            || volume_volume_mode(pv) != claim_volume_mode(claim)
        {
            continue;
        }
        let cap = capacity(pv);
        let fits_node = node.is_none_or(|(n, l)| affinity_allows(pv, n, l));
        if bound_to_claim(pv, claim) {
            if cap < want || !fits_node {
                continue;
            }
            return Some(pv);
        }
        if delayed && node.is_none() {
            continue;
        }
        if pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_some()) {
            continue;
        }
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Released" | "Failed")) {
            continue;
        }
        let empty = BTreeMap::new();
        let labels = pv.metadata.labels.as_ref().unwrap_or(&empty);
        if selector.is_some_and(|s| !label_selector_matches(s, labels)) {
            continue;
        }
        if volume_class(pv) != class || !fits_node {
            continue;
        }
        let modes = volume_modes(pv);
        if !claim_modes(claim).iter().all(|m| modes.contains(m)) {
            continue;
        }
        if cap < want {
            continue;
        }
        if best.is_none_or(|b| cap < capacity(b)) {
            best = Some(pv);
        }
    }
    best
}

/// Whether a class binds only once a pod uses the claim.
pub fn waits_for_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
}

/// What the controller sees around one claim.
pub struct ClaimView<'a> {
    pub volumes: &'a [&'a PersistentVolume],
    pub classes: &'a BTreeMap<String, &'a StorageClass>,
    /// Labels of nodes by name (for the selected node of delayed claims).
    pub nodes: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The provisioner built into this controller manager.
    pub provisioner: &'a str,
}

/// One pass over a claim (upstream's syncUnboundClaim and syncBoundClaim).
pub fn decide_claim(claim: &PersistentVolumeClaim, view: &ClaimView<'_>) -> ClaimStep {
    let completed = annotation(&claim.metadata, ANN_BIND_COMPLETED).is_some();
    let name = volume_name(claim);
    let find = |n: &str| {
        view.volumes
            .iter()
            .copied()
            .find(|v| v.metadata.name.as_deref() == Some(n))
    };
    if completed {
        if name.is_empty() {
            return ClaimStep::Lost(Note {
                kind: EventType::Warning,
                reason: "ClaimLost",
                message: "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!".into(),
            });
        }
        let Some(pv) = find(name) else {
            return ClaimStep::Lost(Note {
                kind: EventType::Warning,
                reason: "ClaimLost",
                message: "Bound claim has lost its PersistentVolume. Data on the volume is lost!"
                    .into(),
            });
        };
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claim_ref.is_none() || claim_ref_uid(pv) == claim.metadata.uid.as_deref() {
            return ClaimStep::Bind(name.to_string());
        }
        return ClaimStep::Lost(Note {
            kind: EventType::Warning,
            reason: "ClaimMisbound",
            message: "Two claims are bound to the same volume, this one is bound incorrectly"
                .into(),
        });
    }
    if !name.is_empty() {
        let Some(pv) = find(name) else {
            return ClaimStep::Wait(None);
        };
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claim_ref.is_some() && !bound_to_claim(pv, claim) {
            return ClaimStep::Wait(note(
                EventType::Warning,
                "FailedBinding",
                format!("volume \"{name}\" already bound to a different claim."),
            ));
        }
        if let Some(why) = unsatisfied(pv, claim) {
            return ClaimStep::Wait(note(
                EventType::Warning,
                "FailedBinding",
                format!("Cannot bind to requested volume \"{name}\": {why}"),
            ));
        }
        return ClaimStep::Bind(name.to_string());
    }
    let class_name = claim_class(claim);
    let class = view.classes.get(&class_name).copied();
    let delayed = class.is_some_and(waits_for_consumer);
    let selected = annotation(&claim.metadata, ANN_SELECTED_NODE);
    let empty = BTreeMap::new();
    let node = selected.map(|n| (n, view.nodes.get(n).unwrap_or(&empty)));
    if let Some(pv) = best_match(claim, view.volumes.iter().copied(), node, delayed) {
        return ClaimStep::Bind(pv.metadata.name.clone().unwrap_or_default());
    }
    if delayed && selected.is_none() {
        return ClaimStep::Wait(note(
            EventType::Normal,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        ));
    }
    if class_name.is_empty() {
        return ClaimStep::Wait(note(
            EventType::Normal,
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
        ));
    }
    let Some(class) = class else {
        return ClaimStep::Wait(note(
            EventType::Warning,
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io \"{class_name}\" not found"),
        ));
    };
    if class.provisioner == NO_PROVISIONER {
        return ClaimStep::Wait(None);
    }
    if class.provisioner != view.provisioner {
        return ClaimStep::Wait(note(
            EventType::Normal,
            "ExternalProvisioning",
            format!(
                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                class.provisioner
            ),
        ));
    }
    match selected {
        Some(node) => ClaimStep::Provision {
            node: node.to_string(),
            class: class_name,
        },
        None => ClaimStep::Wait(note(
            EventType::Warning,
            "ProvisioningFailed",
            "configuration error, no node was specified",
        )),
    }
}

/// One pass over a volume (upstream's syncVolume). `claim` is the claim its claimRef names,
/// if that exists.
pub fn decide_volume(
    pv: &PersistentVolume,
    claim: Option<&PersistentVolumeClaim>,
    provisioner: &str,
) -> VolumeStep {
    let phase = pv
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("");
    let set = |p: &'static str| {
        if phase == p {
            VolumeStep::Nothing
        } else {
            VolumeStep::Phase(p)
        }
    };
    if pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_none()
    {
        return set("Available");
    }
    let Some(uid) = claim_ref_uid(pv) else {
        // Pre-bound by the user to a claim that may not exist yet.
        return set("Available");
    };
    let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid));
    let Some(claim) = claim else {
        return match phase {
            "Failed" => VolumeStep::Nothing,
            "Released" => reclaim(pv, provisioner),
            _ => VolumeStep::Release,
        };
    };
    let name = pv.metadata.name.as_deref().unwrap_or("");
    let claim_volume = volume_name(claim);
    if claim_volume.is_empty() {
        // The claim has not taken its side yet: a volume the user pre-bound is offered.
        if annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER).is_some() {
            return VolumeStep::Nothing;
        }
        return set("Available");
    }
    if claim_volume == name {
        return set("Bound");
    }
    if annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER).is_some() {
        VolumeStep::Unbind
    } else {
        VolumeStep::Nothing
    }
}

/// What a Released volume's reclaim policy asks.
fn reclaim(pv: &PersistentVolume, provisioner: &str) -> VolumeStep {
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    let name = pv.metadata.name.as_deref().unwrap_or("");
    match policy {
        "Delete" if annotation(&pv.metadata, ANN_PROVISIONED_BY) == Some(provisioner) => {
            VolumeStep::Delete
        }
        "Delete" => VolumeStep::Fail(Note {
            kind: EventType::Warning,
            reason: "VolumeFailedDelete",
            message: format!(
                "error getting deleter volume plugin for volume \"{name}\": no deletable volume plugin matched"
            ),
        }),
        "Recycle" => VolumeStep::Fail(Note {
            kind: EventType::Warning,
            reason: "VolumeFailedRecycle",
            message: format!(
                "No recycler plugin found for the volume \"{name}\": the Recycle reclaim policy is deprecated"
            ),
        }),
        _ => VolumeStep::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pv(name: &str, extra: Value) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": name}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/tmp/x"}, "persistentVolumeReclaimPolicy": "Retain"},
            "status": {"phase": "Available"}});
        merge(&mut v, extra);
        serde_json::from_value(v).expect("pv")
    }

    fn pvc(extra: Value) -> PersistentVolumeClaim {
        let mut v = json!({"metadata": {"name": "c", "namespace": "ns", "uid": "u1"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        merge(&mut v, extra);
        serde_json::from_value(v).expect("pvc")
    }

    fn merge(base: &mut Value, extra: Value) {
        match (base, extra) {
            (Value::Object(b), Value::Object(e)) => {
                for (k, v) in e {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
            (b, e) => *b = e,
        }
    }

    fn class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "provisioner": provisioner,
            "volumeBindingMode": mode}),
        )
        .expect("class")
    }

    fn decide(
        claim: &PersistentVolumeClaim,
        volumes: &[PersistentVolume],
        classes: &[StorageClass],
    ) -> ClaimStep {
        let vols: Vec<&PersistentVolume> = volumes.iter().collect();
        let classes: BTreeMap<String, &StorageClass> = classes
            .iter()
            .map(|c| (c.metadata.name.clone().unwrap_or_default(), c))
            .collect();
        let nodes = BTreeMap::from([(
            "n1".to_string(),
            BTreeMap::from([("kubernetes.io/hostname".to_string(), "n1".to_string())]),
        )]);
        decide_claim(
            claim,
            &ClaimView {
                volumes: &vols,
                classes: &classes,
                nodes: &nodes,
                provisioner: "keelson.io/local-path",
            },
        )
    }

    fn wait(kind: EventType, reason: &'static str, message: &str) -> ClaimStep {
        ClaimStep::Wait(Some(Note {
            kind,
            reason,
            message: message.into(),
        }))
    }

    #[test]
    fn the_smallest_volume_that_fits_is_chosen() {
        let volumes = [
            pv("big", json!({"spec": {"capacity": {"storage": "10Gi"}}})),
            pv("small", json!({"spec": {"capacity": {"storage": "500Mi"}}})),
            pv("right", json!({"spec": {"capacity": {"storage": "2Gi"}}})),
            pv(
                "rox",
                json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"]}}),
            ),
            pv(
                "classy",
                json!({"spec": {"capacity": {"storage": "1Gi"}, "storageClassName": "fast"}}),
            ),
            pv(
                "taken",
                json!({"spec": {"capacity": {"storage": "1Gi"},
                "claimRef": {"namespace": "ns", "name": "other", "uid": "u9"}}}),
            ),
            pv(
                "block",
                json!({"spec": {"capacity": {"storage": "1Gi"}, "volumeMode": "Block"}}),
            ),
            pv(
                "released",
                json!({"spec": {"capacity": {"storage": "1Gi"}}, "status": {"phase": "Released"}}),
            ),
        ];
        let cases: Vec<(&str, Value, ClaimStep)> = vec![
            (
                "smallest that fits",
                json!({}),
                ClaimStep::Bind("right".into()),
            ),
            (
                "class",
                json!({"spec": {"storageClassName": "fast"}}),
                ClaimStep::Bind("classy".into()),
            ),
            (
                "beta class annotation wins",
                json!({"metadata": {"annotations":
                {"volume.beta.kubernetes.io/storage-class": "fast"}}, "spec": {"storageClassName": "x"}}),
                ClaimStep::Bind("classy".into()),
            ),
            (
                "access modes",
                json!({"spec": {"accessModes": ["ReadOnlyMany"]}}),
                ClaimStep::Bind("rox".into()),
            ),
            (
                "too big",
                json!({"spec": {"resources": {"requests": {"storage": "20Gi"}}}}),
                wait(
                    EventType::Normal,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                ),
            ),
            (
                "block mode",
                json!({"spec": {"volumeMode": "Block"}}),
                ClaimStep::Bind("block".into()),
            ),
            (
                "selector",
                json!({"spec": {"selector": {"matchLabels": {"tier": "gold"}}}}),
                wait(
                    EventType::Normal,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                ),
            ),
            (
                "pre-bound by the volume",
                json!({"metadata": {"name": "other", "uid": "u9"}}),
                ClaimStep::Bind("taken".into()),
            ),
            (
                "pre-bound by the claim",
                json!({"spec": {"volumeName": "big"}}),
                ClaimStep::Bind("big".into()),
            ),
            (
                "pre-bound to a small one",
                json!({"spec": {"volumeName": "small"}}),
                wait(
                    EventType::Warning,
                    "FailedBinding",
                    "Cannot bind to requested volume \"small\": requested PV is too small",
                ),
            ),
            (
                "pre-bound to a taken one",
                json!({"spec": {"volumeName": "taken"}}),
                wait(
                    EventType::Warning,
                    "FailedBinding",
                    "volume \"taken\" already bound to a different claim.",
                ),
            ),
            (
                "pre-bound to a missing one",
                json!({"spec": {"volumeName": "gone"}}),
                ClaimStep::Wait(None),
            ),
        ];
        for (what, extra, want) in cases {
            assert_eq!(decide(&pvc(extra), &volumes, &[]), want, "{what}");
        }
    }

    #[test]
    fn labelled_volumes_and_selectors() {
        let volumes = [
            pv(
                "gold",
                json!({"metadata": {"labels": {"tier": "gold"}}, "spec": {"capacity": {"storage": "5Gi"}}}),
            ),
            pv("plain", json!({})),
        ];
        let claim = pvc(json!({"spec": {"selector": {"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["gold"]}]}}}));
        assert_eq!(
            decide(&claim, &volumes, &[]),
            ClaimStep::Bind("gold".into())
        );
    }

    #[test]
    fn classes_provisioning_and_first_consumer() {
        let local = class(
            "local-path",
            "keelson.io/local-path",
            "WaitForFirstConsumer",
        );
        let ext = class("ext", "ebs.csi.aws.com", "Immediate");
        let none = class("manual", NO_PROVISIONER, "WaitForFirstConsumer");
        let classes = [local, ext, none];
        let node_pv = pv(
            "on-n2",
            json!({"spec": {"storageClassName": "manual", "nodeAffinity": {"required":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname",
            "operator": "In", "values": ["n2"]}]}]}}}}),
        );
        let n1_pv = pv(
            "on-n1",
            json!({"spec": {"storageClassName": "manual", "nodeAffinity": {"required":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname",
            "operator": "In", "values": ["n1"]}]}]}}}}),
        );
        let volumes = [node_pv, n1_pv];
        let selected = |class: &str| {
            pvc(
                json!({"metadata": {"annotations": {ANN_SELECTED_NODE: "n1"}},
                "spec": {"storageClassName": class}}),
            )
        };
        let cases: Vec<(&str, PersistentVolumeClaim, ClaimStep)> = vec![
            (
                "delayed, no consumer",
                pvc(json!({"spec": {"storageClassName": "local-path"}})),
                wait(
                    EventType::Normal,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                ),
            ),
            (
                "delayed, consumer chosen",
                selected("local-path"),
                ClaimStep::Provision {
                    node: "n1".into(),
                    class: "local-path".into(),
                },
            ),
            (
                "delayed, static volume on the node",
                selected("manual"),
                ClaimStep::Bind("on-n1".into()),
            ),
            (
                "delayed, no static volume yet",
                pvc(json!({"spec": {"storageClassName": "manual"}})),
                wait(
                    EventType::Normal,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                ),
            ),
            (
                "external",
                pvc(json!({"spec": {"storageClassName": "ext"}})),
                wait(
                    EventType::Normal,
                    "ExternalProvisioning",
                    "Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                ),
            ),
            (
                "missing class",
                pvc(json!({"spec": {"storageClassName": "nope"}})),
                wait(
                    EventType::Warning,
                    "ProvisioningFailed",
                    "storageclass.storage.k8s.io \"nope\" not found",
                ),
            ),
        ];
        for (what, claim, want) in cases {
            assert_eq!(decide(&claim, &volumes, &classes), want, "{what}");
        }
    }

    #[test]
    fn bound_claims_keep_or_lose_their_volume() {
        let done = |vol: &str| {
            pvc(
                json!({"metadata": {"annotations": {ANN_BIND_COMPLETED: "yes"}},
                "spec": {"volumeName": vol}}),
            )
        };
        let volumes = [
            pv(
                "mine",
                json!({"spec": {"claimRef": {"namespace": "ns", "name": "c", "uid": "u1"}},
                "status": {"phase": "Bound"}}),
            ),
            pv(
                "theirs",
                json!({"spec": {"claimRef": {"namespace": "ns", "name": "d", "uid": "u2"}}}),
            ),
        ];
        assert_eq!(
            decide(&done("mine"), &volumes, &[]),
            ClaimStep::Bind("mine".into())
        );
        let lost = decide(&done("gone"), &volumes, &[]);
        assert!(
            matches!(&lost, ClaimStep::Lost(n) if n.reason == "ClaimLost"),
            "{lost:?}"
        );
        let misbound = decide(&done("theirs"), &volumes, &[]);
        assert!(
            matches!(&misbound, ClaimStep::Lost(n) if n.reason == "ClaimMisbound"),
            "{misbound:?}"
        );
    }

    #[test]
    fn volume_phases_and_reclaim() {
        let claim = pvc(json!({"spec": {"volumeName": "v"}}));
        let waiting = pvc(json!({}));
        let bound_ref =
            json!({"spec": {"claimRef": {"namespace": "ns", "name": "c", "uid": "u1"}}});
        let with = |extra: Value| pv("v", extra);
        let released = |policy: &str, ann: Value| {
            let mut extra = bound_ref.clone();
            merge(
                &mut extra,
                json!({"metadata": {"annotations": ann},
                "spec": {"persistentVolumeReclaimPolicy": policy}, "status": {"phase": "Released"}}),
            );
            pv("v", extra)
        };
        let p = "keelson.io/local-path";
        let cases: Vec<(
            &str,
            PersistentVolume,
            Option<&PersistentVolumeClaim>,
            VolumeStep,
        )> = vec![
            (
                "new volume",
                with(json!({"status": {"phase": "Pending"}})),
                None,
                VolumeStep::Phase("Available"),
            ),
            (
                "available stays",
                with(json!({})),
                None,
                VolumeStep::Nothing,
            ),
            (
                "pre-bound without uid",
                with(
                    json!({"spec": {"claimRef": {"namespace": "ns", "name": "c"}},
                "status": {"phase": "Pending"}}),
                ),
                None,
                VolumeStep::Phase("Available"),
            ),
            (
                "bound",
                with(bound_ref.clone()),
                Some(&claim),
                VolumeStep::Phase("Bound"),
            ),
            (
                "claim not yet on its side",
                with(bound_ref.clone()),
                Some(&waiting),
                VolumeStep::Nothing,
            ),
            (
                "claim gone",
                with(bound_ref.clone()),
                None,
                VolumeStep::Release,
            ),
            (
                "retain keeps it",
                released("Retain", json!({})),
                None,
                VolumeStep::Nothing,
            ),
            (
                "delete what we made",
                released("Delete", json!({ANN_PROVISIONED_BY: p})),
                None,
                VolumeStep::Delete,
            ),
        ];
        for (what, v, c, want) in cases {
            assert_eq!(decide_volume(&v, c, p), want, "{what}");
        }
        let failed = decide_volume(&released("Delete", json!({})), None, p);
        assert!(
            matches!(&failed, VolumeStep::Fail(n) if n.reason == "VolumeFailedDelete"),
            "{failed:?}"
        );
        let mut other = claim.clone();
        other.spec.as_mut().unwrap().volume_name = Some("w".into());
        let mut by_us = with(bound_ref.clone());
        by_us.metadata.annotations = Some(BTreeMap::from([(
            ANN_BOUND_BY_CONTROLLER.into(),
            "yes".into(),
        )]));
        assert_eq!(decide_volume(&by_us, Some(&other), p), VolumeStep::Unbind);
    }
}
