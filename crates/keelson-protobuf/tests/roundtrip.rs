//! Every served kind decodes into JSON its k8s-openapi type accepts.

use k8s_openapi::api as oa;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as OaObjectMeta;
use k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use keelson_protobuf::{decode, supported_kinds};
use prost::Message;
use serde::de::DeserializeOwned;

/// A body holding only `metadata` (field 1 of every top-level kind) with a name.
fn named_body(api_version: &str, kind: &str) -> Vec<u8> {
    let meta = ObjectMeta {
        name: Some("sample".into()),
        namespace: Some(String::new()),
        creation_timestamp: Some(Default::default()),
        ..Default::default()
    };
    let mut raw = vec![0x0a];
    meta.encode_length_delimited(&mut raw).unwrap_or_default();
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: None,
        content_type: None,
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

/// Decodes a named object of `K`'s kind and reads it as `K`; returns the kind it covered.
fn roundtrip<K>() -> (String, String)
where
    K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = OaObjectMeta> + DeserializeOwned,
{
    let body = named_body(K::API_VERSION, K::KIND);
    let json = decode(&body, Some((K::API_VERSION, K::KIND)))
        .unwrap_or_else(|e| panic!("{}: {e}", K::KIND));
    let object: K =
        serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{} {json}: {e}", K::KIND));
    assert_eq!(
        object.metadata().name.as_deref(),
        Some("sample"),
        "{}",
        K::KIND
    );
    (K::API_VERSION.to_string(), K::KIND.to_string())
}

#[test]
fn every_served_kind_round_trips_into_its_k8s_openapi_type() {
    let covered = [
        roundtrip::<oa::core::v1::Namespace>(),
        roundtrip::<oa::core::v1::Pod>(),
        roundtrip::<oa::core::v1::Service>(),
        roundtrip::<oa::core::v1::Endpoints>(),
        roundtrip::<oa::core::v1::ReplicationController>(),
        roundtrip::<oa::core::v1::ConfigMap>(),
        roundtrip::<oa::core::v1::Secret>(),
        roundtrip::<oa::core::v1::ServiceAccount>(),
        roundtrip::<oa::core::v1::Node>(),
        roundtrip::<oa::core::v1::Event>(),
        roundtrip::<oa::core::v1::PersistentVolume>(),
        roundtrip::<oa::core::v1::PersistentVolumeClaim>(),
        roundtrip::<oa::core::v1::ResourceQuota>(),
        roundtrip::<oa::core::v1::LimitRange>(),
        roundtrip::<oa::core::v1::PodTemplate>(),
        roundtrip::<oa::apps::v1::Deployment>(),
        roundtrip::<oa::apps::v1::ReplicaSet>(),
        roundtrip::<oa::apps::v1::StatefulSet>(),
        roundtrip::<oa::apps::v1::DaemonSet>(),
        roundtrip::<oa::apps::v1::ControllerRevision>(),
        roundtrip::<oa::batch::v1::Job>(),
        roundtrip::<oa::batch::v1::CronJob>(),
        roundtrip::<oa::discovery::v1::EndpointSlice>(),
        roundtrip::<oa::coordination::v1::Lease>(),
        roundtrip::<oa::storage::v1::StorageClass>(),
        roundtrip::<oa::scheduling::v1::PriorityClass>(),
        roundtrip::<oa::autoscaling::v2::HorizontalPodAutoscaler>(),
        roundtrip::<oa::autoscaling::v1::HorizontalPodAutoscaler>(),
        roundtrip::<oa::events::v1::Event>(),
        roundtrip::<oa::autoscaling::v1::Scale>(),
        roundtrip::<oa::policy::v1::Eviction>(),
        roundtrip::<oa::core::v1::Binding>(),
    ];
    let supported = supported_kinds();
    for kind in keelson_kinds::ALL {
        let key = (kind.api_version(), kind.kind.to_string());
        assert!(covered.contains(&key), "{key:?} has no round trip");
        assert!(
            supported.contains(&(key.0.as_str(), kind.kind)),
            "{key:?} not supported"
        );
    }
}
