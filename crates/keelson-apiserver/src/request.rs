//! Parses a request path into what it addresses, as upstream's `RequestInfoFactory` does.

use http::Method;

/// What a resource request addresses.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// Path segments after the subresource (`pods/x/proxy/some/path`).
    pub rest: Vec<String>,
}

/// A request path, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/api/v1`, `/apis/apps/v1`
    GroupVersion {
        group: String,
        version: String,
    },
    /// `/apis/apps`
    Group {
        group: String,
    },
    Resource(ResourcePath),
    Version,
    Health(&'static str),
    Metrics,
    OpenApiV3Index,
    OpenApiV3Doc(String),
    OpenApiV2,
    NotFound,
}

/// The verb of a resource request, as authorization and audit name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// Classifies `path` (without the query).
pub fn route(path: &str) -> Route {
    let trimmed = path.trim_matches('/');
    let parts: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    match parts.as_slice() {
        ["version"] => Route::Version,
        ["healthz"] | ["healthz", ..] => Route::Health("healthz"),
        ["livez"] | ["livez", ..] => Route::Health("livez"),
        ["readyz"] | ["readyz", ..] => Route::Health("readyz"),
        ["metrics"] => Route::Metrics,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3Doc(rest.join("/")),
        ["openapi", "v2"] => Route::OpenApiV2,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["api", version] => Route::GroupVersion {
            group: String::new(),
            version: version.to_string(),
        },
        ["apis", group] => Route::Group {
            group: group.to_string(),
        },
        ["apis", group, version] => Route::GroupVersion {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let mut p = ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    let rest = match rest {
        // `/namespaces/{ns}/{resource}...` addresses a namespaced resource; `/namespaces/{ns}`
        // and `/namespaces/{ns}/{status|finalize}` address the namespace itself.
        ["namespaces", ns, resource, tail @ ..] if !matches!(*resource, "status" | "finalize") => {
            p.namespace = Some(decode(ns));
            p.resource = resource.to_string();
            tail
        }
        [resource, tail @ ..] => {
            p.resource = resource.to_string();
            tail
        }
        [] => return Route::NotFound,
    };
    match rest {
        [] => {}
        [name, tail @ ..] => {
            p.name = Some(decode(name));
            if let [sub, more @ ..] = tail {
                p.subresource = Some(sub.to_string());
                p.rest = more.iter().map(|s| decode(s)).collect();
            }
        }
    }
    Route::Resource(p)
}

/// The verb of a resource request.
pub fn verb(method: &Method, path: &ResourcePath, watch_param: bool) -> Option<Verb> {
    let has_name = path.name.is_some();
    Some(match *method {
        Method::GET | Method::HEAD if watch_param => Verb::Watch,
        Method::GET | Method::HEAD if has_name => Verb::Get,
        Method::GET | Method::HEAD => Verb::List,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH => Verb::Patch,
        Method::DELETE if has_name => Verb::Delete,
        Method::DELETE => Verb::DeleteCollection,
        _ => return None,
    })
}

/// Percent-decodes one path segment.
pub fn decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Parses a query string into decoded key-value pairs (`+` is a space).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(
        group: &str,
        ns: Option<&str>,
        resource: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Route {
        Route::Resource(ResourcePath {
            group: group.into(),
            version: "v1".into(),
            namespace: ns.map(Into::into),
            resource: resource.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
            rest: vec![],
        })
    }

    #[test]
    fn routes() {
        let cases = [
            ("/api", Route::CoreVersions),
            ("/apis", Route::Groups),
            (
                "/api/v1",
                Route::GroupVersion {
                    group: "".into(),
                    version: "v1".into(),
                },
            ),
            ("/api/v1/pods", res("", None, "pods", None, None)),
            (
                "/api/v1/namespaces",
                res("", None, "namespaces", None, None),
            ),
            (
                "/api/v1/namespaces/default",
                res("", None, "namespaces", Some("default"), None),
            ),
            (
                "/api/v1/namespaces/ns1/finalize",
                res("", None, "namespaces", Some("ns1"), Some("finalize")),
            ),
            (
                "/api/v1/namespaces/ns1/status",
                res("", None, "namespaces", Some("ns1"), Some("status")),
            ),
            (
                "/api/v1/namespaces/ns1/pods",
                res("", Some("ns1"), "pods", None, None),
            ),
            (
                "/api/v1/namespaces/ns1/pods/p",
                res("", Some("ns1"), "pods", Some("p"), None),
            ),
            (
                "/api/v1/namespaces/ns1/pods/p/status",
                res("", Some("ns1"), "pods", Some("p"), Some("status")),
            ),
            (
                "/apis/apps/v1/namespaces/a/deployments/d/scale",
                res("apps", Some("a"), "deployments", Some("d"), Some("scale")),
            ),
            ("/api/v1/nodes/n1", res("", None, "nodes", Some("n1"), None)),
            ("/version", Route::Version),
            (
                "/openapi/v3/apis/apps/v1",
                Route::OpenApiV3Doc("apis/apps/v1".into()),
            ),
            ("/nope", Route::NotFound),
        ];
        for (path, want) in cases {
            let got = route(path);
            let want = match want {
                Route::Resource(mut p) if path.starts_with("/apis/apps") => {
                    p.version = "v1".into();
                    Route::Resource(p)
                }
                w => w,
            };
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn query_decoding() {
        let q = query_pairs(Some("labelSelector=a%3Db%2Cc+in+%28x%29&watch=1&limit=500"));
        assert_eq!(q[0], ("labelSelector".into(), "a=b,c in (x)".into()));
        assert_eq!(q[1], ("watch".into(), "1".into()));
    }
}
