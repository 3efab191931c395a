//! Upstream's defaults for pod specs (SetDefaults_PodSpec and friends), shared by pods and
//! every kind that embeds a pod template, plus the pod-only defaults of SetDefaults_Pod and
//! the admission plugins that fill pods in (DefaultTolerationSeconds, Priority, ServiceAccount).

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, Lifecycle, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe,
    Toleration, Volume,
};

/// Sets `*slot` to `v` when it is unset.
pub fn set<T>(slot: &mut Option<T>, v: T) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

/// Sets a string to `v` when it is unset or empty.
pub fn set_str(slot: &mut Option<String>, v: &str) {
    if slot.as_deref().is_none_or(str::is_empty) {
        *slot = Some(v.to_string());
    }
}

/// Defaults of a pod template (the spec inside workloads).
pub fn template(t: &mut PodTemplateSpec) {
    spec(t.spec.get_or_insert_with(Default::default));
}

/// Defaults of every pod spec, in pods and templates alike.
pub fn spec(s: &mut PodSpec) {
    set_str(&mut s.dns_policy, "ClusterFirst");
    set_str(&mut s.restart_policy, "Always");
    set(&mut s.security_context, Default::default());
    set(&mut s.termination_grace_period_seconds, 30);
    set_str(&mut s.scheduler_name, "default-scheduler");
    if s.service_account_name.as_deref().is_none_or(str::is_empty)
        && let Some(sa) = s.service_account.clone().filter(|sa| !sa.is_empty())
    {
        s.service_account_name = Some(sa);
    }
    if let Some(sa) = s.service_account_name.clone().filter(|sa| !sa.is_empty()) {
        s.service_account = Some(sa);
    }
    s.containers.iter_mut().for_each(container);
    s.init_containers.iter_mut().flatten().for_each(container);
    s.volumes.iter_mut().flatten().for_each(volume);
}

/// SetDefaults_Container plus the defaults of its ports, probes, handlers and env.
pub fn container(c: &mut Container) {
    if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
        let policy = if image_tag(c.image.as_deref().unwrap_or("")) == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.image_pull_policy = Some(policy.to_string());
    }
    set_str(&mut c.termination_message_path, "/dev/termination-log");
    set_str(&mut c.termination_message_policy, "File");
    set(&mut c.resources, Default::default());
    for p in c.ports.iter_mut().flatten() {
        set_str(&mut p.protocol, "TCP");
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe(p);
    }
    if let Some(l) = &mut c.lifecycle {
        lifecycle(l);
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            field_ref(f);
        }
    }
}

/// The tag ParseImageName finds: `latest` when there is neither tag nor digest, `None` for a
/// digest without tag.
pub fn image_tag(image: &str) -> Option<&str> {
    let (named, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = named.rsplit('/').next().unwrap_or(named);
    match last.rsplit_once(':') {
        Some((_, tag)) => Some(tag),
        None if digest => None,
        None => Some("latest"),
    }
}

fn probe(p: &mut Probe) {
    set(&mut p.timeout_seconds, 1);
    set(&mut p.period_seconds, 10);
    set(&mut p.success_threshold, 1);
    set(&mut p.failure_threshold, 3);
    if let Some(h) = &mut p.http_get {
        http_get(h);
    }
    if let Some(g) = &mut p.grpc {
        set(&mut g.service, String::new());
    }
}

fn lifecycle(l: &mut Lifecycle) {
    for h in [&mut l.post_start, &mut l.pre_stop].into_iter().flatten() {
        if let Some(g) = &mut h.http_get {
            http_get(g);
        }
    }
}

fn http_get(h: &mut HTTPGetAction) {
    set_str(&mut h.path, "/");
    set_str(&mut h.scheme, "HTTP");
}

fn field_ref(f: &mut ObjectFieldSelector) {
    set_str(&mut f.api_version, "v1");
}

/// SetDefaults_Volume and the volume sources' modes.
fn volume(v: &mut Volume) {
    if !has_source(v) {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = &mut v.secret {
        set(&mut s.default_mode, 0o644);
    }
    if let Some(c) = &mut v.config_map {
        set(&mut c.default_mode, 0o644);
    }
    if let Some(d) = &mut v.downward_api {
        set(&mut d.default_mode, 0o644);
        for item in d.items.iter_mut().flatten() {
            if let Some(f) = &mut item.field_ref {
                field_ref(f);
            }
        }
    }
    if let Some(p) = &mut v.projected {
        set(&mut p.default_mode, 0o644);
        for src in p.sources.iter_mut().flatten() {
            if let Some(t) = &mut src.service_account_token {
                set(&mut t.expiration_seconds, 3600);
            }
            for item in src
                .downward_api
                .iter_mut()
                .flat_map(|d| d.items.iter_mut().flatten())
            {
                if let Some(f) = &mut item.field_ref {
                    field_ref(f);
                }
            }
        }
    }
    if let Some(h) = &mut v.host_path {
        set(&mut h.type_, String::new());
    }
}

/// Whether the volume names any source (a volume with only a name becomes an emptyDir).
fn has_source(v: &Volume) -> bool {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.as_object().map(|o| o.len() > 1))
        .unwrap_or(true)
}

/// The pod-only defaults (SetDefaults_Pod) and the admission plugins that complete a pod.
pub fn pod(s: &mut PodSpec) {
    spec(s);
    for c in s
        .containers
        .iter_mut()
        .chain(s.init_containers.iter_mut().flatten())
    {
        requests_from_limits(c);
        if s.host_network == Some(true) {
            for p in c.ports.iter_mut().flatten() {
                set(&mut p.host_port, p.container_port);
            }
        }
    }
    set(&mut s.enable_service_links, true);
    set_str(&mut s.service_account_name, "default");
    set_str(&mut s.service_account, "default");
    if s.priority_class_name.as_deref().is_none_or(str::is_empty) {
        set(&mut s.priority, 0);
    }
    set_str(&mut s.preemption_policy, "PreemptLowerPriority");
    default_tolerations(s.tolerations.get_or_insert_with(Vec::new));
}

/// Limits without requests become the requests too.
fn requests_from_limits(c: &mut Container) {
    let Some(r) = &mut c.resources else { return };
    let Some(limits) = r.limits.as_ref().filter(|l| !l.is_empty()) else {
        return;
    };
    let requests = r.requests.get_or_insert_with(Default::default);
    for (k, v) in limits {
        requests.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// DefaultTolerationSeconds: tolerate not-ready and unreachable nodes for 300s.
fn default_tolerations(ts: &mut Vec<Toleration>) {
    let tolerates = |key: &str| {
        ts.iter().any(|t| {
            let k = t.key.as_deref().unwrap_or("");
            let e = t.effect.as_deref().unwrap_or("");
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        })
    };
    let missing: Vec<&str> = [NOT_READY, UNREACHABLE]
        .into_iter()
        .filter(|k| !tolerates(k))
        .collect();
    for key in missing {
        ts.push(Toleration {
            key: Some(key.to_string()),
            operator: Some("Exists".to_string()),
            effect: Some("NoExecute".to_string()),
            toleration_seconds: Some(300),
            value: None,
        });
    }
}
