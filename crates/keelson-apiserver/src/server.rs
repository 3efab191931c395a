//! Serving HTTPS: TLS with client certificates, HTTP/1.1 and HTTP/2, and the top-level routes
//! (discovery, version, health, metrics, OpenAPI, resources).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keelson_apimachinery::ApiError;
use keelson_pki::Identity;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::query::Query;
use crate::registry::{self, Req};
use crate::request::{self, Route};
use crate::respond::{self, Body};
use crate::{Api, body};

/// Accepts connections until the listener fails; each connection is served on its own task.
pub async fn serve(
    api: Arc<Api>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(err) => {
                    tracing::debug!(%err, "tls handshake failed");
                    return;
                }
            };
            let identity = keelson_pki::tls::peer_identity(tls.get_ref().1);
            let identity = Arc::new(identity);
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                let identity = identity.clone();
                async move { Ok::<_, Infallible>(handle(&api, identity.as_ref().as_ref(), req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(err) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    }
}

/// Serves one request.
pub async fn handle(
    api: &Api,
    identity: Option<&Identity>,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let route = request::route(req.uri().path());
    let public = matches!(route, Route::Version | Route::Health(_));
    if identity.is_none() && !public {
        return respond::error(&ApiError::unauthorized());
    }
    let (label, resp) = route_request(api, route, req).await;
    api.metrics.observe(
        method.as_str(),
        &label,
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

async fn route_request(
    api: &Api,
    route: Route,
    req: Request<Incoming>,
) -> (String, Response<Body>) {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let get_only = |resp: Response<Body>| {
        if matches!(*req.method(), Method::GET | Method::HEAD) {
            resp
        } else {
            respond::error(&ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    let resp = match route {
        Route::Version => get_only(respond::json(200, &crate::version_info())),
        Route::Health(_) => get_only(respond::text(200, "ok")),
        Route::Metrics => get_only(respond::bytes_response(
            200,
            "text/plain; version=0.0.4",
            api.metrics.render(api),
        )),
        Route::CoreVersions => get_only(match api.discovery.aggregated(true, &accept) {
            Some((b, ct)) => respond::bytes_response(200, ct, b),
            None => respond::json_bytes(200, api.discovery.api_versions.clone()),
        }),
        Route::Groups => get_only(match api.discovery.aggregated(false, &accept) {
            Some((b, ct)) => respond::bytes_response(200, ct, b),
            None => respond::json_bytes(200, api.discovery.groups.clone()),
        }),
        Route::Group { group } => get_only(match api.discovery.group_docs.get(&group) {
            Some(b) => respond::json_bytes(200, b.clone()),
            None => respond::error(&ApiError::not_found_path()),
        }),
        Route::GroupVersion { group, version } => get_only(
            match api
                .discovery
                .resource_lists
                .get(&group)
                .and_then(|m| m.get(&version))
            {
                Some(b) => respond::json_bytes(200, b.clone()),
                None => respond::error(&ApiError::not_found_path()),
            },
        ),
        Route::OpenApiV3Index => get_only(respond::json_bytes(200, api.openapi.index())),
        Route::OpenApiV3Doc(path) => get_only(match api.openapi.document(&path) {
            Some((b, hash)) => {
                let mut resp = respond::json_bytes(200, b);
                let requested = req
                    .uri()
                    .query()
                    .is_some_and(|q| q.contains(&format!("hash={hash}")));
                let cc = if requested {
                    "public, immutable"
                } else {
                    "no-cache, private"
                };
                resp.headers_mut()
                    .insert(header::CACHE_CONTROL, http::HeaderValue::from_static(cc));
                if let Ok(v) = http::HeaderValue::from_str(&format!("\"{hash}\"")) {
                    resp.headers_mut().insert(header::ETAG, v);
                }
                resp
            }
            None => respond::error(&ApiError::not_found_path()),
        }),
        Route::OpenApiV2 => {
            let if_none_match = req
                .headers()
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok());
            get_only(openapi_v2(api, &accept, if_none_match))
        }
        Route::NotFound => respond::error(&ApiError::not_found_path()),
        Route::Resource(path) => {
            let label = path.resource.clone();
            return (label, resource(api, path, req).await);
        }
    };
    ("".into(), resp)
}

/// `/openapi/v2`: the Swagger 2.0 document of the served kinds (built on first request), as
/// gnostic's protobuf when asked (kubectl does), else JSON; with an `ETag` (`304` on a match).
fn openapi_v2(api: &Api, accept: &str, if_none_match: Option<&str>) -> Response<Body> {
    let v2 = api.openapi.v2();
    let (served, media_type) = if accept.contains("protobuf") {
        (v2.protobuf(), keelson_openapi::PROTOBUF_MEDIA_TYPE)
    } else {
        (v2.json(), "application/json")
    };
    let unchanged =
        if_none_match.is_some_and(|tags| tags.split(',').any(|t| t.trim() == served.etag));
    let mut resp = if unchanged {
        respond::bytes_response(304, media_type, Bytes::new())
    } else {
        respond::bytes_response(200, media_type, served.bytes)
    };
    if let Ok(v) = http::HeaderValue::from_str(&served.etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp.headers_mut()
        .insert(header::VARY, http::HeaderValue::from_static("Accept"));
    resp
}

async fn resource(
    api: &Api,
    path: request::ResourcePath,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(kind) = keelson_kinds::lookup(&path.group, &path.version, &path.resource) else {
        return respond::error(&ApiError::not_found_path());
    };
    if !kind.namespaced && path.namespace.is_some() {
        return respond::error(&ApiError::not_found_path());
    }
    if kind.group.is_empty()
        && kind.plural == "pods"
        && path.subresource.as_deref() == Some("log")
        && matches!(*req.method(), Method::GET | Method::HEAD)
    {
        return crate::pod_logs::serve(api, &path, req).await;
    }
    if kind.group.is_empty()
        && kind.plural == "pods"
        && let Some(sub) = path
            .subresource
            .as_deref()
            .and_then(crate::pod_stream::Subresource::parse)
    {
        return crate::pod_stream::serve(api, &path, sub, req).await;
    }
    if kind.group.is_empty()
        && matches!(kind.plural, "pods" | "services")
        && path.subresource.as_deref() == Some("proxy")
    {
        return crate::proxy::serve(api, &path, req).await;
    }
    let query = match Query::parse(req.uri().query()) {
        Ok(q) => q,
        Err(e) => return respond::error(&e),
    };
    let Some(verb) = request::verb(req.method(), &path, query.watch) else {
        return respond::error(&ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource: {}",
            req.method()
        )));
    };
    let repr = match respond::negotiate(req.headers()) {
        Ok(r) => r,
        Err(e) => return respond::error(&e),
    };
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => return respond::error(&e),
    };
    let r = Req {
        api,
        kind,
        path,
        query,
        repr,
        content_type,
        body,
        warnings: Vec::new(),
        user_agent,
        apply: false,
    };
    registry::serve(r, verb).await
}

async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    match Limited::new(body, body::MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(format!("limit is {}", body::MAX_BODY)))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}
