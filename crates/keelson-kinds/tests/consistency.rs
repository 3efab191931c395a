//! Every row of the table is consistent: lookups round-trip, names are upstream's shape, and
//! each strategy decodes an object of its own apiVersion and kind.

mod common;

use jiff::Timestamp;
use keelson_kinds::{ALL, Subresource, lookup, lookup_kind, preferred_version};
use serde_json::json;

#[test]
fn every_row_round_trips() {
    for k in ALL {
        let by_plural = lookup(k.group, k.version, k.plural).expect("lookup by plural");
        assert!(std::ptr::eq(by_plural, k), "{}", k.plural);
        let by_kind = lookup_kind(k.group, k.version, k.kind).expect("lookup by kind");
        assert!(std::ptr::eq(by_kind, k), "{}", k.kind);
        assert_eq!(k.singular, k.kind.to_lowercase());
        assert!(k.verbs.contains(&"get") && k.verbs.contains(&"create"));
        let obj = json!({"apiVersion": k.api_version(), "kind": k.kind, "metadata": {"name": "x"}});
        let out = k
            .strategy
            .decode_and_default(obj)
            .unwrap_or_else(|e| panic!("{}: {e}", k.kind));
        assert_eq!(out["apiVersion"], json!(k.api_version()));
        assert_eq!(out["kind"], json!(k.kind));
        let cols = k.strategy.columns();
        assert!(!cols.is_empty());
        let row = k.strategy.row(&out, Timestamp::UNIX_EPOCH);
        assert_eq!(row.len(), cols.len(), "{}", k.kind);
        assert_eq!(
            k.has_subresource(Subresource::Status),
            k.strategy.has_status(),
            "{}",
            k.kind
        );
    }
}

#[test]
fn upstream_names() {
    let check = |group: &str,
                 version: &str,
                 plural: &str,
                 kind: &str,
                 short: &[&str],
                 namespaced: bool,
                 all: bool| {
        let k = lookup(group, version, plural).unwrap_or_else(|| panic!("{plural}"));
        assert_eq!(
            (k.kind, k.short_names, k.namespaced),
            (kind, short, namespaced),
            "{plural}"
        );
        assert_eq!(k.categories.contains(&"all"), all, "{plural}");
    };
    check("", "v1", "pods", "Pod", &["po"], true, true);
    check("", "v1", "namespaces", "Namespace", &["ns"], false, false);
    check("", "v1", "services", "Service", &["svc"], true, true);
    check(
        "",
        "v1",
        "persistentvolumes",
        "PersistentVolume",
        &["pv"],
        false,
        false,
    );
    check(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        &["deploy"],
        true,
        true,
    );
    check("batch", "v1", "cronjobs", "CronJob", &["cj"], true, true);
    check(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        &["hpa"],
        true,
        true,
    );
    check(
        "storage.k8s.io",
        "v1",
        "storageclasses",
        "StorageClass",
        &["sc"],
        false,
        false,
    );
    check(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        &["ev"],
        true,
        false,
    );
    assert!(lookup("", "v1", "widgets").is_none());
    assert_eq!(preferred_version("autoscaling"), "v2");
    assert_eq!(preferred_version("apps"), "v1");
    assert!(
        !lookup("", "v1", "namespaces")
            .unwrap()
            .verbs
            .contains(&"deletecollection")
    );
    assert!(
        lookup("apps", "v1", "deployments")
            .unwrap()
            .strategy
            .tracks_generation()
    );
    assert!(
        !lookup("", "v1", "pods")
            .unwrap()
            .strategy
            .tracks_generation()
    );
}
