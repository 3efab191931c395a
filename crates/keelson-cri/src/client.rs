//! The CRI client for containerd: gRPC (tonic) over the runtime's unix socket, implementing
//! [`Runtime`] with per-call timeouts and the error mapping the agent relies on.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::runtime::{Error, Result, Runtime};

/// Largest gRPC message the client accepts (long container lists, big exec output).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Timeout of an image pull.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Timeout of every other call (a stop adds the stop's own grace period to it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// What a stop may take beyond its grace period before the client gives up.
pub const STOP_SLACK: Duration = Duration::from_secs(30);

/// A CRI client over a unix socket. Cheap to clone; a broken connection is re-established on
/// the next call.
#[derive(Clone, Debug)]
pub struct CriClient {
    socket: PathBuf,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// The runtime handler for sandboxes with port mappings (none: the default handler).
    hostport_handler: Option<String>,
}

/// Connects to the CRI runtime listening on `socket`, failing with [`Error::Connect`] when
/// nothing answers there.
pub async fn connect(socket: &Path) -> Result<CriClient> {
    let channel = endpoint()
        .connect_with_connector(connector(socket))
        .await
        .map_err(|e| Error::Connect {
            path: socket.display().to_string(),
            reason: error_chain(&e),
        })?;
    Ok(CriClient::from_channel(socket, channel))
}

/// A client that connects on its first call (and reconnects after failures); calls fail with
/// [`Error::Connect`] while nothing answers on `socket`. Must be called inside a tokio runtime.
pub fn connect_lazy(socket: &Path) -> CriClient {
    let channel = endpoint().connect_with_connector_lazy(connector(socket));
    CriClient::from_channel(socket, channel)
}

fn endpoint() -> Endpoint {
    // The URI is required by tonic but unused: the connector dials the socket.
    Endpoint::from_static("http://localhost").connect_timeout(Duration::from_secs(5))
}

fn connector(
    socket: &Path,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<UnixStream>>> + Send,
> + Clone
+ Send
+ 'static {
    let socket = socket.to_path_buf();
    tower::service_fn(move |_: Uri| {
        let socket = socket.clone();
        async move { Ok(TokioIo::new(UnixStream::connect(&socket).await?)) }
    })
}

/// The message of an error and of each of its sources, joined with ": ".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}

/// The Go name of a gRPC code, as `rpc error: code = ...` messages spell it.
fn code_name(code: tonic::Code) -> String {
    match code {
        tonic::Code::Cancelled => "Canceled".to_string(),
        other => format!("{other:?}"),
    }
}

/// How a failed call is reported.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Missing {
    /// A gRPC NotFound is an [`Error::NotFound`].
    Error,
    /// A gRPC NotFound is success (idempotent removals, stops, image look-ups).
    Ok,
    /// A gRPC NotFound is an ordinary [`Error::Runtime`] (a pull of an image that does not exist).
    Runtime,
}

impl CriClient {
    fn from_channel(socket: &Path, channel: Channel) -> Self {
        CriClient {
            socket: socket.to_path_buf(),
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            images: ImageServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
            hostport_handler: None,
        }
    }

    /// This client, sending the sandboxes that have port mappings to runtime handler
    /// `handler` (the containerd keelson owns has one whose network has portmap; see
    /// [`crate::cni::HOSTPORT_HANDLER`]).
    pub fn with_hostport_handler(mut self, handler: &str) -> Self {
        self.hostport_handler = Some(handler.to_string());
        self
    }

    /// The runtime handler of a sandbox with this config.
    pub fn sandbox_handler(&self, config: &cri::PodSandboxConfig) -> String {
        match &self.hostport_handler {
            Some(h) if !config.port_mappings.is_empty() => h.clone(),
            _ => String::new(),
        }
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Maps a failed status: NotFound as `missing` says, Unavailable (nothing listening, broken
    /// connection) to [`Error::Connect`], anything else to [`Error::Runtime`] with the runtime's
    /// message (for pulls, the whole `rpc error: code = ... desc = ...` text, as kubelet's
    /// events show it).
    fn map_status(
        &self,
        op: &'static str,
        what: &str,
        missing: Missing,
        status: tonic::Status,
    ) -> Error {
        match status.code() {
            tonic::Code::NotFound if missing != Missing::Runtime => {
                Error::NotFound(what.to_string())
            }
            tonic::Code::Unavailable => {
                let mut reason = status.message().to_string();
                if let Some(source) = std::error::Error::source(&status) {
                    let chain = error_chain(source);
                    if !reason.contains(&chain) {
                        reason = format!("{reason}: {chain}");
                    }
                }
                Error::Connect {
                    path: self.socket.display().to_string(),
                    reason,
                }
            }
            code if op == "pull_image" => Error::Runtime {
                op,
                message: format!(
                    "rpc error: code = {} desc = {}",
                    code_name(code),
                    status.message()
                ),
            },
            _ => Error::Runtime {
                op,
                message: status.message().to_string(),
            },
        }
    }

    /// Runs one call with a deadline (sent to the runtime as grpc-timeout too); `Ok(None)` when
    /// the object is missing and `missing` is [`Missing::Ok`].
    async fn call<T, Fut>(
        &self,
        op: &'static str,
        what: &str,
        timeout: Duration,
        missing: Missing,
        call: Fut,
    ) -> Result<Option<T>>
    where
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(Error::Runtime {
                op,
                message: format!("no answer within {}s", timeout.as_secs()),
            }),
            Ok(Ok(response)) => Ok(Some(response.into_inner())),
            Ok(Err(status)) if status.code() == tonic::Code::NotFound && missing == Missing::Ok => {
                Ok(None)
            }
            Ok(Err(status)) => Err(self.map_status(op, what, missing, status)),
        }
    }

    /// Like [`CriClient::call`] for calls whose result must be there.
    async fn must<T, Fut>(
        &self,
        op: &'static str,
        what: &str,
        timeout: Duration,
        call: Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        // A pull of a missing image, or a create naming one, is an ordinary failure whose
        // message the agent reports, not a missing object.
        let missing = if op == "pull_image" || op == "create_container" {
            Missing::Runtime
        } else {
            Missing::Error
        };
        match self.call(op, what, timeout, missing, call).await? {
            Some(value) => Ok(value),
            None => Err(Error::NotFound(what.to_string())),
        }
    }

    /// The runtime's conditions (RuntimeReady, NetworkReady).
    pub async fn status(&self) -> Result<cri::StatusResponse> {
        let mut client = self.runtime.clone();
        let request = request(cri::StatusRequest { verbose: false }, CALL_TIMEOUT);
        self.must("status", "runtime", CALL_TIMEOUT, client.status(request))
            .await
    }

    /// Removes an image. Idempotent.
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let mut client = self.images.clone();
        let request = request(
            cri::RemoveImageRequest {
                image: Some(image_spec(image)),
            },
            CALL_TIMEOUT,
        );
        self.call(
            "remove_image",
            &format!("image {image:?}"),
            CALL_TIMEOUT,
            Missing::Ok,
            client.remove_image(request),
        )
        .await?;
        Ok(())
    }
}

fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

fn sandbox(id: &str) -> String {
    format!("pod sandbox {id:?}")
}

fn container(id: &str) -> String {
    format!("container {id:?}")
}

#[async_trait]
impl Runtime for CriClient {
    async fn version(&self) -> Result<cri::VersionResponse> {
        let mut client = self.runtime.clone();
        let request = request(
            cri::VersionRequest {
                version: "v1".to_string(),
            },
            CALL_TIMEOUT,
        );
        self.must("version", "runtime", CALL_TIMEOUT, client.version(request))
            .await
    }

    async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String> {
        let mut client = self.runtime.clone();
        let what = match &config.metadata {
            Some(m) => format!("pod sandbox {}/{}", m.namespace, m.name),
            None => "pod sandbox".to_string(),
        };
        let runtime_handler = self.sandbox_handler(&config);
        let request = request(
            cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler,
            },
            CALL_TIMEOUT,
        );
        let response = self
            .must(
                "run_pod_sandbox",
                &what,
                CALL_TIMEOUT,
                client.run_pod_sandbox(request),
            )
            .await?;
        Ok(response.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let request = request(
            cri::StopPodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            },
            CALL_TIMEOUT,
        );
        self.call(
            "stop_pod_sandbox",
            &sandbox(id),
            CALL_TIMEOUT,
            Missing::Ok,
            client.stop_pod_sandbox(request),
        )
        .await?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let request = request(
            cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            },
            CALL_TIMEOUT,
        );
        self.call(
            "remove_pod_sandbox",
            &sandbox(id),
            CALL_TIMEOUT,
            Missing::Ok,
            client.remove_pod_sandbox(request),
        )
        .await?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let mut client = self.runtime.clone();
        let request = request(
            cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            },
            CALL_TIMEOUT,
        );
        let response = self
            .must(
                "pod_sandbox_status",
                &sandbox(id),
                CALL_TIMEOUT,
                client.pod_sandbox_status(request),
            )
            .await?;
        response.status.ok_or_else(|| Error::NotFound(sandbox(id)))
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<cri::PodSandbox>> {
        let mut client = self.runtime.clone();
        let request = request(cri::ListPodSandboxRequest { filter: None }, CALL_TIMEOUT);
        let response = self
            .must(
                "list_pod_sandboxes",
                "pod sandboxes",
                CALL_TIMEOUT,
                client.list_pod_sandbox(request),
            )
            .await?;
        Ok(response.items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String> {
        let mut client = self.runtime.clone();
        let request = request(
            cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            },
            CALL_TIMEOUT,
        );
        let response = self
            .must(
                "create_container",
                &sandbox(sandbox_id),
                CALL_TIMEOUT,
                client.create_container(request),
            )
            .await?;
        Ok(response.container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let request = request(
            cri::StartContainerRequest {
                container_id: id.to_string(),
            },
            CALL_TIMEOUT,
        );
        self.must(
            "start_container",
            &container(id),
            CALL_TIMEOUT,
            client.start_container(request),
        )
        .await?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout_s: i64) -> Result<()> {
        let mut client = self.runtime.clone();
        let timeout = Duration::from_secs(timeout_s.max(0) as u64) + STOP_SLACK;
        let request = request(
            cri::StopContainerRequest {
                container_id: id.to_string(),
                timeout: timeout_s,
            },
            timeout,
        );
        self.must(
            "stop_container",
            &container(id),
            timeout,
            client.stop_container(request),
        )
        .await?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut client = self.runtime.clone();
        let request = request(
            cri::RemoveContainerRequest {
                container_id: id.to_string(),
            },
            CALL_TIMEOUT,
        );
        self.call(
            "remove_container",
            &container(id),
            CALL_TIMEOUT,
            Missing::Ok,
            client.remove_container(request),
        )
        .await?;
        Ok(())
    }

    async fn list_containers(&self) -> Result<Vec<cri::Container>> {
        let mut client = self.runtime.clone();
        let request = request(cri::ListContainersRequest { filter: None }, CALL_TIMEOUT);
        let response = self
            .must(
                "list_containers",
                "containers",
                CALL_TIMEOUT,
                client.list_containers(request),
            )
            .await?;
        Ok(response.containers)
    }

    async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let mut client = self.runtime.clone();
        let request = request(
            cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            },
            CALL_TIMEOUT,
        );
        let response = self
            .must(
                "container_status",
                &container(id),
                CALL_TIMEOUT,
                client.container_status(request),
            )
            .await?;
        response
            .status
            .ok_or_else(|| Error::NotFound(container(id)))
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_s: i64,
    ) -> Result<cri::ExecSyncResponse> {
        let mut client = self.runtime.clone();
        let timeout = if timeout_s > 0 {
            Duration::from_secs(timeout_s as u64) + STOP_SLACK
        } else {
            CALL_TIMEOUT
        };
        let request = request(
            cri::ExecSyncRequest {
                container_id: id.to_string(),
                cmd,
                timeout: timeout_s,
            },
            timeout,
        );
        self.must(
            "exec_sync",
            &container(id),
            timeout,
            client.exec_sync(request),
        )
        .await
    }

    async fn exec(&self, request: cri::ExecRequest) -> Result<String> {
        let mut client = self.runtime.clone();
        let what = container(&request.container_id);
        let call = client.exec(self::request(request, CALL_TIMEOUT));
        let response = self.must("exec", &what, CALL_TIMEOUT, call).await?;
        Ok(response.url)
    }

    async fn attach(&self, request: cri::AttachRequest) -> Result<String> {
        let mut client = self.runtime.clone();
        let what = container(&request.container_id);
        let call = client.attach(self::request(request, CALL_TIMEOUT));
        let response = self.must("attach", &what, CALL_TIMEOUT, call).await?;
        Ok(response.url)
    }

    async fn image_status(&self, image: &str) -> Result<Option<cri::Image>> {
        let mut client = self.images.clone();
        let request = request(
            cri::ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            },
            CALL_TIMEOUT,
        );
        let response = self
            .call(
                "image_status",
                &format!("image {image:?}"),
                CALL_TIMEOUT,
                Missing::Ok,
                client.image_status(request),
            )
            .await?;
        Ok(response.and_then(|r| r.image))
    }

    async fn pull_image(&self, image: &str) -> Result<String> {
        let mut client = self.images.clone();
        let request = request(
            cri::PullImageRequest {
                image: Some(image_spec(image)),
                auth: None,
                sandbox_config: None,
            },
            PULL_TIMEOUT,
        );
        let response = self
            .must(
                "pull_image",
                &format!("image {image:?}"),
                PULL_TIMEOUT,
                client.pull_image(request),
            )
            .await?;
        Ok(response.image_ref)
    }

    async fn list_images(&self) -> Result<Vec<cri::Image>> {
        let mut client = self.images.clone();
        let request = request(cri::ListImagesRequest { filter: None }, CALL_TIMEOUT);
        let response = self
            .must(
                "list_images",
                "images",
                CALL_TIMEOUT,
                client.list_images(request),
            )
            .await?;
        Ok(response.images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_to_a_missing_socket_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("nothing.sock");
        let err = connect(&socket).await.expect_err("nothing listens");
        let text = err.to_string();
        assert!(matches!(err, Error::Connect { .. }), "{text}");
        assert!(text.contains("nothing.sock"), "{text}");
    }

    #[tokio::test]
    async fn only_sandboxes_with_port_mappings_get_the_hostport_handler() {
        let plain = connect_lazy(Path::new("/run/x.sock"));
        let owned = plain.clone().with_hostport_handler("runc-hostport");
        let mut config = cri::PodSandboxConfig::default();
        assert_eq!(owned.sandbox_handler(&config), "");
        config.port_mappings.push(cri::PortMapping {
            container_port: 80,
            host_port: 8080,
            ..Default::default()
        });
        assert_eq!(owned.sandbox_handler(&config), "runc-hostport");
        assert_eq!(plain.sandbox_handler(&config), "");
    }

    #[tokio::test]
    async fn a_lazy_client_reports_connect_errors_per_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = connect_lazy(&dir.path().join("nothing.sock"));
        let err = client.version().await.expect_err("nothing listens");
        assert!(matches!(err, Error::Connect { .. }), "{err}");
    }

    #[test]
    fn statuses_map_to_errors() {
        fn check(op: &'static str, missing: Missing, status: tonic::Status, want: &str) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _guard = rt.enter();
            let client = connect_lazy(Path::new("/run/x.sock"));
            let got = client
                .map_status(op, "container \"abc\"", missing, status)
                .to_string();
            assert_eq!(got, want);
        }
        check(
            "start_container",
            Missing::Error,
            tonic::Status::not_found("an error occurred when try to find container"),
            "container \"abc\" not found",
        );
        check(
            "start_container",
            Missing::Error,
            tonic::Status::unknown("failed to create containerd task: boom"),
            "start_container: failed to create containerd task: boom",
        );
        check(
            "pull_image",
            Missing::Runtime,
            tonic::Status::not_found("failed to pull and unpack image \"docker.io/library/x:1\""),
            "pull_image: rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/x:1\"",
        );
        check(
            "version",
            Missing::Error,
            tonic::Status::unavailable("connection refused"),
            "cannot reach the container runtime at /run/x.sock: connection refused",
        );
    }
}
