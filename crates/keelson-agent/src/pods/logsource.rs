//! Where a container's log file is, for the agent's log endpoint: the pod by name, its
//! container's newest (or previous) instance, and a signal that ends `follow` when it exits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::PodManager;
use super::observe::State;
use crate::server::{LogError, LogFile, LogSource};

/// The log endpoint's view of the pods.
pub struct Logs(pub Arc<PodManager>);

#[async_trait]
impl LogSource for Logs {
    async fn log_file(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogFile, LogError> {
        let m = &self.0;
        let found = m.pods.state().into_iter().find(|p| {
            p.metadata.name.as_deref() == Some(pod)
                && p.metadata.namespace.as_deref() == Some(namespace)
        });
        let Some(p) = found else {
            return Err(LogError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            });
        };
        let in_spec = p.spec.as_ref().is_some_and(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .any(|c| c.name == container)
        });
        if !in_spec {
            return Err(LogError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            });
        }
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let rt = m.observe(&uid).await;
        let instances = rt.of(container);
        if previous {
            return match instances.get(1) {
                Some(i) if !i.log_path.is_empty() => {
                    Ok(LogFile::exited(PathBuf::from(&i.log_path)))
                }
                _ => Err(LogError::PreviousNotFound {
                    pod: pod.into(),
                    container: container.into(),
                }),
            };
        }
        let Some(i) = instances.first().filter(|i| !i.log_path.is_empty()) else {
            let reason = m
                .state
                .lock()
                .ok()
                .and_then(|st| st.errors.get(&uid)?.get(container).map(|e| e.0.clone()))
                .unwrap_or_else(|| "ContainerCreating".into());
            return Err(LogError::waiting(pod, container, &reason));
        };
        if i.state != State::Running {
            return Ok(LogFile::exited(PathBuf::from(&i.log_path)));
        }
        let (tx, running) = watch::channel(true);
        let runtime = m.runtime.clone();
        let id = i.id.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                let exited = match runtime.container_status(&id).await {
                    Ok(s) => super::observe::state_of(s.state) != State::Running,
                    Err(_) => true,
                };
                if exited {
                    let _ = tx.send(false);
                    return;
                }
            }
        });
        Ok(LogFile {
            path: PathBuf::from(&i.log_path),
            running,
        })
    }
}
