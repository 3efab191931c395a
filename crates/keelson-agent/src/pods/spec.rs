//! The CRI sandbox and container configs for a pod, built from its spec without IO.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, Pod, PodSecurityContext, SeccompProfile, SecurityContext,
};
use keelson_apimachinery::quantity;
use keelson_cri::cri;

/// The label keelson puts on every sandbox it creates (so it never touches others').
pub const MANAGED_LABEL: &str = "io.keelson.managed";

/// CRI's namespace modes.
const POD: i32 = cri::NamespaceMode::Pod as i32;
const CONTAINER: i32 = cri::NamespaceMode::Container as i32;
const NODE: i32 = cri::NamespaceMode::Node as i32;

/// The directory of a pod's container logs: `<logs>/<namespace>_<name>_<uid>`.
pub fn log_dir(logs: &Path, pod: &Pod) -> PathBuf {
    let m = &pod.metadata;
    logs.join(format!(
        "{}_{}_{}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or(""),
        m.uid.as_deref().unwrap_or("")
    ))
}

/// The log file of one container instance, relative to the pod's log directory.
pub fn log_path(container: &str, attempt: u32) -> String {
    format!("{container}/{attempt}.log")
}

fn namespaces(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.as_ref();
    let host = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f) == Some(true)
    };
    cri::NamespaceOption {
        network: if host(|s| s.host_network) { NODE } else { POD },
        pid: if host(|s| s.host_pid) {
            NODE
        } else if host(|s| s.share_process_namespace) {
            POD
        } else {
            CONTAINER
        },
        ipc: if host(|s| s.host_ipc) { NODE } else { POD },
        ..Default::default()
    }
}

/// The sandbox config of a pod (attempt `attempt`), its logs under `logs`.
/// `dns` gives its /etc/resolv.conf per `dnsPolicy`.
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    logs: &Path,
    dns: &super::dns::Settings,
) -> cri::PodSandboxConfig {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let name = m.name.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> =
        m.labels.clone().unwrap_or_default().into_iter().collect();
    labels.insert("io.kubernetes.pod.name".into(), name.clone());
    labels.insert(
        "io.kubernetes.pod.namespace".into(),
        m.namespace.clone().unwrap_or_default(),
    );
    labels.insert(
        "io.kubernetes.pod.uid".into(),
        m.uid.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_LABEL.into(), "true".into());
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| cri::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => cri::Protocol::Udp as i32,
                Some("SCTP") => cri::Protocol::Sctp as i32,
                _ => cri::Protocol::Tcp as i32,
            },
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
    cri::PodSandboxConfig {
        dns_config: Some(super::dns::config(pod, dns)),
        metadata: Some(cri::PodSandboxMetadata {
            name,
            uid: m.uid.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: if spec.host_network == Some(true) {
            String::new()
        } else {
            hostname
        },
        log_directory: log_dir(logs, pod).to_string_lossy().into_owned(),
        port_mappings,
        labels,
        annotations: m
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(sandbox_security(pod)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The resources of a container for the runtime: CPU shares from requests, quota from limits,
/// the memory limit.
pub fn resources(c: &Container) -> cri::LinuxContainerResources {
    let get = |list: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
               name: &str| {
        list.and_then(|l| l.get(name))
            .and_then(|q| quantity::parse(&q.0))
    };
    let r = c.resources.as_ref();
    let requests = r.and_then(|r| r.requests.as_ref());
    let limits = r.and_then(|r| r.limits.as_ref());
    let period = 100_000i64;
    // Shares: 1024 per CPU requested, at least 2 (upstream's MilliCPUToShares).
    let cpu_req = get(requests, "cpu").or(get(limits, "cpu"));
    let shares = cpu_req.map_or(2, |m| ((m * 1024 / 1000) as i64).max(2));
    let quota = get(limits, "cpu").map_or(0, |m| ((m * period as i128 / 1000) as i64).max(1000));
    let memory = get(limits, "memory").map_or(0, |m| (m / 1000) as i64);
    cri::LinuxContainerResources {
        cpu_period: if quota > 0 { period } else { 0 },
        cpu_quota: quota,
        cpu_shares: shares,
        memory_limit_in_bytes: memory,
        ..Default::default()
    }
}

/// The config of one container instance. `env` holds the resolved environment.
pub fn container_config(
    pod: &Pod,
    c: &Container,
    image: &str,
    attempt: u32,
    env: Vec<(String, String)>,
) -> cri::ContainerConfig {
    let m = &pod.metadata;
    let mut labels = HashMap::new();
    labels.insert("io.kubernetes.container.name".into(), c.name.clone());
    labels.insert(
        "io.kubernetes.pod.name".into(),
        m.name.clone().unwrap_or_default(),
    );
    labels.insert(
        "io.kubernetes.pod.namespace".into(),
        m.namespace.clone().unwrap_or_default(),
    );
    labels.insert(
        "io.kubernetes.pod.uid".into(),
        m.uid.clone().unwrap_or_default(),
    );
    // `$(VAR)` in command and args expands from the container's environment, as upstream.
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let expand_all = |l: &Option<Vec<String>>| -> Vec<String> {
        l.iter().flatten().map(|s| expand(s, &vars)).collect()
    };
    let command = expand_all(&c.command);
    let args = expand_all(&c.args);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| cri::KeyValue { key, value })
            .collect(),
        labels,
        annotations: HashMap::from([(
            "io.kubernetes.container.restartCount".to_string(),
            attempt.to_string(),
        )]),
        log_path: log_path(&c.name, attempt),
        stdin: c.stdin == Some(true),
        stdin_once: c.stdin_once == Some(true),
        tty: c.tty == Some(true),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(c)),
            security_context: Some(container_security(pod, c)),
        }),
        ..Default::default()
    }
}

/// A seccomp profile as CRI takes it: the runtime's default, a profile file on the node, or
/// none (upstream's kubelet default when nothing is asked).
fn seccomp(profile: Option<&SeccompProfile>) -> cri::SecurityProfile {
    use cri::security_profile::ProfileType;
    match profile.map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") => cri::SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        Some("Localhost") => cri::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: profile
                .and_then(|p| p.localhost_profile.clone())
                .unwrap_or_default(),
        },
        _ => cri::SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
    }
}

/// The pod's supplemental groups: `supplementalGroups`, then `fsGroup`, as upstream's kubelet
/// gives them to every container.
fn supplemental_groups(psc: Option<&PodSecurityContext>) -> Vec<i64> {
    let mut groups: Vec<i64> = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(g) = psc.and_then(|s| s.fs_group)
        && !groups.contains(&g)
    {
        groups.push(g);
    }
    groups
}

/// Whether any container of the pod is privileged (the sandbox must then be too).
fn has_privileged(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let privileged = |sc: Option<&SecurityContext>| sc.and_then(|s| s.privileged) == Some(true);
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| privileged(c.security_context.as_ref()))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| privileged(c.security_context.as_ref()))
}

/// The sandbox's security settings: its namespaces, the pod's user, group and supplemental
/// groups, privileged when a container is.
fn sandbox_security(pod: &Pod) -> cri::LinuxSandboxSecurityContext {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let int = |v: Option<i64>| v.map(|value| cri::Int64Value { value });
    cri::LinuxSandboxSecurityContext {
        namespace_options: Some(namespaces(pod)),
        run_as_user: int(psc.and_then(|s| s.run_as_user)),
        run_as_group: int(psc.and_then(|s| s.run_as_group)),
        supplemental_groups: supplemental_groups(psc),
        privileged: has_privileged(pod),
        seccomp: Some(seccomp(psc.and_then(|s| s.seccomp_profile.as_ref()))),
        ..Default::default()
    }
}

/// A container's security settings: its own `securityContext` over the pod's (upstream's
/// `DetermineEffectiveSecurityContext`), as CRI takes them.
pub fn container_security(pod: &Pod, c: &Container) -> cri::LinuxContainerSecurityContext {
    let sc = c.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let int = |v: Option<i64>| v.map(|value| cri::Int64Value { value });
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let names = |l: Option<&Vec<String>>| -> Vec<String> { l.cloned().unwrap_or_default() };
    cri::LinuxContainerSecurityContext {
        capabilities: caps.map(|k| cri::Capability {
            add_capabilities: names(k.add.as_ref()),
            drop_capabilities: names(k.drop.as_ref()),
            add_ambient_capabilities: Vec::new(),
        }),
        namespace_options: Some(namespaces(pod)),
        privileged: sc.and_then(|s| s.privileged) == Some(true),
        run_as_user: int(sc
            .and_then(|s| s.run_as_user)
            .or(psc.and_then(|s| s.run_as_user))),
        run_as_group: int(sc
            .and_then(|s| s.run_as_group)
            .or(psc.and_then(|s| s.run_as_group))),
        readonly_rootfs: sc.and_then(|s| s.read_only_root_filesystem) == Some(true),
        supplemental_groups: supplemental_groups(psc),
        // Upstream sets no_new_privs only when allowPrivilegeEscalation is false.
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        seccomp: Some(seccomp(
            sc.and_then(|s| s.seccomp_profile.as_ref())
                .or(psc.and_then(|s| s.seccomp_profile.as_ref())),
        )),
        ..Default::default()
    }
}

/// `pod_name_namespace(uid)`, as upstream's `format.Pod` names a pod in messages.
fn pod_ref(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or(""),
        m.namespace.as_deref().unwrap_or(""),
        m.uid.as_deref().unwrap_or("")
    )
}

/// Upstream's `verifyRunAsNonRoot`: with `runAsNonRoot`, a container must not run as uid 0,
/// whether asked (`runAsUser: 0`) or by its image (`image` as the runtime reports it; an
/// image without a user runs as root). The error is the container's
/// CreateContainerConfigError message.
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    image: Option<&cri::Image>,
) -> Result<(), String> {
    let sc = c.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(psc.and_then(|s| s.run_as_non_root));
    if non_root != Some(true) {
        return Ok(());
    }
    let pod = pod_ref(pod);
    let name = &c.name;
    if let Some(uid) = sc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user))
    {
        return if uid == 0 {
            Err(format!(
                "container's runAsUser breaks non-root policy (pod: \"{pod}\", container: {name})"
            ))
        } else {
            Ok(())
        };
    }
    let uid = image.and_then(|i| i.uid.as_ref()).map(|u| u.value);
    let username = image.map_or("", |i| i.username.as_str());
    match uid {
        Some(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {name})"
        )),
        None if !username.is_empty() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({username}), cannot verify user is non-root (pod: \"{pod}\", container: {name})"
        )),
        None => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {name})"
        )),
        Some(_) => Ok(()),
    }
}

/// The plain `value` environment of a container, with `$(VAR)` references to earlier
/// variables expanded as upstream does (`$$` escapes).
pub fn plain_env(c: &Container) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for e in c.env.iter().flatten() {
        let Some(v) = e.value.as_deref() else {
            continue;
        };
        let lookup: HashMap<&str, &str> =
            out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let expanded = expand(v, &lookup);
        out.push((e.name.clone(), expanded));
    }
    out
}

/// Expands `$(NAME)` from `vars`; unknown references stay as written, `$$` becomes `$`.
pub fn expand(s: &str, vars: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "w"}},
            "spec": {"containers": [{
                "name": "c", "image": "nginx", "args": ["$(A)-x"],
                "ports": [{"containerPort": 80, "hostPort": 8080}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)/$$(A)/$(C)"}],
                "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}},
            }]},
        }))
        .unwrap()
    }

    #[test]
    fn sandbox_carries_identity_ports_and_logs() {
        let s = sandbox_config(&pod(), 2, Path::new("logs"), &Default::default());
        let m = s.metadata.unwrap();
        assert_eq!(
            (m.name.as_str(), m.uid.as_str(), m.attempt),
            ("web", "u1", 2)
        );
        assert_eq!(s.hostname, "web");
        assert_eq!(s.log_directory, "logs/default_web_u1");
        assert_eq!(s.port_mappings[0].host_port, 8080);
        assert_eq!(s.labels["app"], "w");
        assert_eq!(s.labels[MANAGED_LABEL], "true");
    }

    #[test]
    fn container_resources_and_env() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&p, c, "docker.io/library/nginx:latest", 3, plain_env(c));
        assert_eq!(cfg.log_path, "c/3.log");
        let r = cfg.linux.unwrap().resources.unwrap();
        assert_eq!(r.cpu_shares, 256);
        assert_eq!((r.cpu_quota, r.cpu_period), (50_000, 100_000));
        assert_eq!(r.memory_limit_in_bytes, 64 * 1024 * 1024);
        let env: Vec<(String, String)> =
            cfg.envs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        assert_eq!(env[1], ("B".to_string(), "1/$(A)/$(C)".to_string()));
    }

    #[test]
    fn command_and_args_expand_from_env() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{
                "name": "c", "image": "busybox",
                "command": ["sh", "-c", "echo $(A) $$(A) $(NOPE) $HOME"], "args": ["$(B)"],
            }]},
        }))
        .unwrap();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let env = vec![
            ("A".to_string(), "x".to_string()),
            ("B".to_string(), "y z".to_string()),
        ];
        let cfg = container_config(&p, c, "busybox", 0, env);
        assert_eq!(cfg.command, ["sh", "-c", "echo x $(A) $(NOPE) $HOME"]);
        assert_eq!(cfg.args, ["y z"]);
    }

    #[test]
    fn security_contexts() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "sec", "namespace": "ns", "uid": "u9"},
            "spec": {
                "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000,
                                    "supplementalGroups": [4000, 2000]},
                "containers": [
                    {"name": "a", "image": "busybox", "securityContext": {
                        "runAsUser": 1001, "readOnlyRootFilesystem": true,
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"}}},
                    {"name": "b", "image": "busybox", "securityContext": {"privileged": true}},
                ],
            },
        }))
        .unwrap();
        let cs = &p.spec.as_ref().unwrap().containers;
        let a = container_security(&p, &cs[0]);
        assert_eq!(a.run_as_user.map(|v| v.value), Some(1001));
        assert_eq!(a.run_as_group.map(|v| v.value), Some(3000));
        assert_eq!(a.supplemental_groups, [4000, 2000]);
        assert!(a.readonly_rootfs && a.no_new_privs && !a.privileged);
        let caps = a.capabilities.unwrap();
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert_eq!(
            a.seccomp.unwrap().profile_type,
            cri::security_profile::ProfileType::RuntimeDefault as i32
        );
        let b = container_security(&p, &cs[1]);
        assert!(b.privileged && !b.no_new_privs && b.capabilities.is_none());
        assert_eq!(b.run_as_user.map(|v| v.value), Some(1000));
        assert_eq!(
            b.seccomp.unwrap().profile_type,
            cri::security_profile::ProfileType::Unconfined as i32
        );
        let sandbox = sandbox_security(&p);
        assert!(sandbox.privileged);
        assert_eq!(sandbox.supplemental_groups, [4000, 2000]);
        assert_eq!(sandbox.run_as_user.map(|v| v.value), Some(1000));
        let plain = sandbox_security(&pod());
        assert!(!plain.privileged && plain.supplemental_groups.is_empty());
    }

    #[test]
    fn run_as_non_root() {
        let pod_with = |psc: serde_json::Value, sc: serde_json::Value| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "nr", "namespace": "default", "uid": "u1"},
                "spec": {"securityContext": psc,
                         "containers": [{"name": "c", "image": "busybox", "securityContext": sc}]},
            }))
            .unwrap()
        };
        let image = |uid: Option<i64>, user: &str| cri::Image {
            uid: uid.map(|value| cri::Int64Value { value }),
            username: user.into(),
            ..Default::default()
        };
        let check = |p: &Pod, img: Option<&cri::Image>| {
            verify_run_as_non_root(p, &p.spec.as_ref().unwrap().containers[0], img)
        };
        let root = "container has runAsNonRoot and image will run as root (pod: \"nr_default(u1)\", container: c)";
        let p = pod_with(json!({"runAsNonRoot": true}), json!({}));
        assert_eq!(check(&p, Some(&image(Some(0), ""))).unwrap_err(), root);
        assert_eq!(check(&p, Some(&image(None, ""))).unwrap_err(), root);
        assert_eq!(check(&p, None).unwrap_err(), root);
        assert!(check(&p, Some(&image(Some(65534), ""))).is_ok());
        assert_eq!(
            check(&p, Some(&image(None, "nobody"))).unwrap_err(),
            "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: \"nr_default(u1)\", container: c)"
        );
        let p = pod_with(json!({"runAsNonRoot": true}), json!({"runAsUser": 0}));
        assert_eq!(
            check(&p, Some(&image(Some(1), ""))).unwrap_err(),
            "container's runAsUser breaks non-root policy (pod: \"nr_default(u1)\", container: c)"
        );
        let p = pod_with(json!({"runAsUser": 1000}), json!({"runAsNonRoot": true}));
        assert!(check(&p, Some(&image(Some(0), ""))).is_ok());
        let p = pod_with(
            json!({"runAsNonRoot": true}),
            json!({"runAsNonRoot": false}),
        );
        assert!(check(&p, Some(&image(Some(0), ""))).is_ok());
    }
}
