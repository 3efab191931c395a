//! The streaming endpoints' view of the pods: the running instance of a container (exec,
//! attach) and a pod's sandbox (port-forward), found as the log endpoint finds log files.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use keelson_cri::Runtime;

use super::PodManager;
use super::observe::State;
use crate::exec::{PodSandbox, StreamSource};

/// The streaming endpoints' view of the pods.
pub struct Streams(pub Arc<PodManager>);

impl Streams {
    fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.0
            .pods
            .state()
            .into_iter()
            .find(|p| {
                p.metadata.name.as_deref() == Some(name)
                    && p.metadata.namespace.as_deref() == Some(namespace)
            })
            .map(|p| (*p).clone())
    }
}

#[async_trait]
impl StreamSource for Streams {
    async fn running_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Option<String> {
        let p = self.pod(namespace, pod)?;
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let rt = self.0.observe(&uid).await;
        rt.latest(container)
            .filter(|i| i.state == State::Running)
            .map(|i| i.id.clone())
    }

    async fn sandbox(&self, namespace: &str, pod: &str) -> Option<PodSandbox> {
        let p = self.pod(namespace, pod)?;
        let uid = p.metadata.uid.clone().unwrap_or_default();
        let rt = self.0.observe(&uid).await;
        let sandbox = rt.sandbox()?;
        Some(PodSandbox {
            namespace: namespace.to_owned(),
            name: pod.to_owned(),
            uid,
            sandbox_id: sandbox.id.clone(),
            ip: rt.ip.clone(),
            runtime: self.0.runtime.clone(),
        })
    }

    fn runtime(&self) -> Arc<dyn Runtime> {
        self.0.runtime.clone()
    }
}
