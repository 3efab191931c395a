//! The objects every cluster has from its first start: the system namespaces and the
//! `kubernetes` Service with the endpoints of the apiserver.

use keelson_apimachinery::ApiError;
use serde_json::json;

use crate::Api;
use crate::registry::ensure;

const NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

pub async fn run(api: &Api) -> Result<(), ApiError> {
    let kind = |plural: &str, group: &str| {
        keelson_kinds::lookup(group, "v1", plural)
            .ok_or_else(|| ApiError::internal(format!("no kind {plural}")))
    };
    for ns in NAMESPACES {
        ensure(
            api,
            kind("namespaces", "")?,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    let ip = api.services.first_ip().to_string();
    let port = api.config.advertise.port();
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}], "sessionAffinity": "None", "type": "ClusterIP"},
    });
    ensure(api, kind("services", "")?, svc).await?;
    let addr = api.config.advertise.ip().to_string();
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": addr}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    ensure(api, kind("endpoints", "")?, ep).await?;
    if let Ok(slice_kind) =
        keelson_kinds::lookup("discovery.k8s.io", "v1", "endpointslices").ok_or(())
    {
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        });
        ensure(api, slice_kind, slice).await?;
    }
    Ok(())
}
