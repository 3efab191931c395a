//! Deleting everything in a namespace: every namespaced resource the API lists (found
//! through discovery), by delete-collection where served, one by one otherwise.

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PartialObjectMeta};
use kube::discovery::{Discovery, Scope, verbs};

use super::Error;

/// Deletes what is left in `ns`; returns `"<count> <resource>"` for every resource that still
/// has objects (being deleted, or held by finalizers).
pub(super) async fn delete_all(client: &Client, ns: &str) -> Result<Vec<String>, Error> {
    let d = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|source| Error::Discovery {
            ns: ns.to_string(),
            source,
        })?;
    let mut remaining = Vec::new();
    for group in d.groups() {
        for (ar, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || !caps.supports_operation(verbs::DELETE)
                || ar.plural.contains('/')
            {
                continue;
            }
            let api: Api<PartialObjectMeta<DynamicObject>> =
                Api::namespaced_with(client.clone(), ns, &ar);
            let err = |source| Error::Content {
                ns: ns.to_string(),
                resource: ar.plural.clone(),
                source,
            };
            let list = api
                .list_metadata(&ListParams::default())
                .await
                .map_err(err)?;
            if list.items.is_empty() {
                continue;
            }
            let objects: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let dp = DeleteParams::background();
            for item in list
                .items
                .iter()
                .filter(|i| i.metadata.deletion_timestamp.is_none())
            {
                let Some(name) = item.metadata.name.as_deref() else {
                    continue;
                };
                match objects.delete(name, &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(source) => return Err(err(source)),
                }
            }
            let left = api
                .list_metadata(&ListParams::default())
                .await
                .map_err(err)?;
            if !left.items.is_empty() {
                remaining.push(format!("{} {}", ar.plural, left.items.len()));
            }
        }
    }
    Ok(remaining)
}
