//! Container lifecycle hooks (postStart, preStop): exec in the container or an HTTP GET, with
//! the kubelet's failure messages.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_cri::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `handler` for container `c` (instance `id`) of a pod at `pod_ip`; `Err` carries the
/// kubelet's message.
pub async fn run(
    runtime: &dyn Runtime,
    handler: &LifecycleHandler,
    c: &Container,
    id: &str,
    pod_ip: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &handler.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let r = runtime
            .exec_sync(id, cmd.clone(), timeout.as_secs().max(1) as i64)
            .await
            .map_err(|e| e.to_string())?;
        if r.exit_code != 0 {
            let out = String::from_utf8_lossy(&r.stdout).into_owned()
                + &String::from_utf8_lossy(&r.stderr);
            return Err(format!(
                "command '{}' exited with {}: {}",
                cmd.join(" "),
                r.exit_code,
                out.trim_end()
            ));
        }
        return Ok(());
    }
    if let Some(get) = &handler.http_get {
        let host = get
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .or(pod_ip.map(str::to_string))
            .unwrap_or_else(|| "127.0.0.1".into());
        let port = match &get.port {
            IntOrString::Int(p) => *p,
            IntOrString::String(name) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("unknown port {name:?}"))?,
        };
        let path = get.path.clone().unwrap_or_else(|| "/".into());
        let code = tokio::time::timeout(timeout, http_status(&host, port, &path))
            .await
            .map_err(|_| {
                format!("Get \"http://{host}:{port}{path}\": context deadline exceeded")
            })??;
        if !(200..400).contains(&code) {
            return Err(format!(
                "HTTP lifecycle hook ({path}) for Container \"{}\" failed - error: status {code}",
                c.name
            ));
        }
        return Ok(());
    }
    if let Some(sleep) = &handler.sleep {
        tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
    }
    Ok(())
}

async fn http_status(host: &str, port: i32, path: &str) -> Result<u16, String> {
    let url = format!("http://{host}:{port}{path}");
    let mut s = tokio::net::TcpStream::connect((host, port as u16))
        .await
        .map_err(|e| format!("Get \"{url}\": dial tcp {host}:{port}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-lifecycle/1.33\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut buf = vec![0u8; 64];
    let n = s
        .read(&mut buf)
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))
}
