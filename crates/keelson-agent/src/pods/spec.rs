//! The CRI sandbox and container configs for a pod, built from its spec without IO.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
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
pub fn sandbox_config(pod: &Pod, attempt: u32, logs: &Path) -> cri::PodSandboxConfig {
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
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(pod)),
                ..Default::default()
            }),
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
    let sc = c.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or(psc.and_then(|s| s.run_as_user))
        .map(|v| cri::Int64Value { value: v });
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or(psc.and_then(|s| s.run_as_group))
        .map(|v| cri::Int64Value { value: v });
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
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces(pod)),
                privileged: sc.and_then(|s| s.privileged) == Some(true),
                run_as_user,
                run_as_group,
                readonly_rootfs: sc.and_then(|s| s.read_only_root_filesystem) == Some(true),
                ..Default::default()
            }),
        }),
        ..Default::default()
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
        let s = sandbox_config(&pod(), 2, Path::new("logs"));
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
}
