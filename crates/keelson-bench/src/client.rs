//! A small HTTPS client for the API server: the admin client certificate, HTTP/2, JSON bodies.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

/// How long one ordinary request (not a watch) may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/2 flow-control windows as client-go (kubectl) sets them: 4 MiB a stream, 1 GiB a connection.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the tls client configuration from {dir}: {source}")]
    Tls {
        dir: PathBuf,
        source: keelson_pki::tls::Error,
    },
    #[error("building the request {method} {path}: {source}")]
    Request {
        method: Method,
        path: String,
        source: http::Error,
    },
    #[error("{method} {path}: {source}")]
    Transport {
        method: Method,
        path: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("{method} {path}: reading the response body: {source}")]
    Body {
        method: Method,
        path: String,
        source: hyper::Error,
    },
    #[error("{method} {path}: no answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout { method: Method, path: String },
    #[error("{method} {path}: the server answered {status}: {body}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("{method} {path}: the response is not the expected json: {source}")]
    Json {
        method: Method,
        path: String,
        source: serde_json::Error,
    },
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Reads `ca.crt`, `admin.crt` and `admin.key` from the server's PKI directory and builds the
/// rustls configuration of an admin client (ALPN is left to the connector).
pub fn admin_tls(pki_dir: &Path) -> Result<rustls::ClientConfig> {
    let read = |name: &str| {
        let path = pki_dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| ClientError::Read { path, source })
    };
    let (ca, cert, key) = (read("ca.crt")?, read("admin.crt")?, read("admin.key")?);
    let config =
        keelson_pki::tls::client_config(&ca, &cert, &key).map_err(|source| ClientError::Tls {
            dir: pki_dir.to_path_buf(),
            source,
        })?;
    Ok(Arc::unwrap_or_clone(config))
}

/// One HTTP/2 connection to the API server (made on first use), shared by all clones.
#[derive(Clone)]
pub struct Api {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: Arc<str>,
}

impl Api {
    /// A client of `base` (e.g. `https://127.0.0.1:6443`) with its own connection.
    pub fn connect(base: &str, tls: &rustls::ClientConfig) -> Api {
        // Without TCP_NODELAY (which Go, and so kubectl, sets), a request body written after
        // its headers waits for the server's delayed ACK: ~40 ms added to every POST and PUT.
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_only()
            .enable_all_versions()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .http2_initial_stream_window_size(STREAM_WINDOW)
            .http2_initial_connection_window_size(CONNECTION_WINDOW)
            .build(connector);
        Api {
            client,
            base: base.into(),
        }
    }

    /// Sends a request and returns the response as soon as its head arrives.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response<Incoming>> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|source| ClientError::Request {
                method: method.clone(),
                path: path.to_string(),
                source,
            })?;
        self.client
            .request(req)
            .await
            .map_err(|source| ClientError::Transport {
                method,
                path: path.to_string(),
                source,
            })
    }

    /// Sends a request and reads the whole body; an answer other than 2xx is an error.
    pub async fn fetch(&self, method: Method, path: &str, body: Option<Bytes>) -> Result<Bytes> {
        let work = async {
            let resp = self.send(method.clone(), path, body).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|source| ClientError::Body {
                    method: method.clone(),
                    path: path.to_string(),
                    source,
                })?;
            let bytes = bytes.to_bytes();
            if !status.is_success() {
                return Err(ClientError::Status {
                    method: method.clone(),
                    path: path.to_string(),
                    status,
                    body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                });
            }
            Ok(bytes)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                method,
                path: path.to_string(),
            }),
        }
    }

    /// Like [`Api::fetch`], decoding the body as `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T> {
        let bytes = self.fetch(method.clone(), path, body).await?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Json {
            method,
            path: path.to_string(),
            source,
        })
    }
}
