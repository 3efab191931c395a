//! Storage keys: `/registry/<group>/<plural>/[<namespace>/]<name>` (`core` for the core group).

use keelson_kinds::Kind;

/// The prefix every stored object's key starts with.
pub const ROOT: &str = "/registry/";

/// The prefix of every object of one resource. Kinds served in several versions of one group
/// (autoscaling/v1 and v2) are stored under one prefix.
pub fn resource_prefix(kind: &Kind) -> String {
    let (group, plural) = match kind.strategy.conversion() {
        Some(c) => (c.storage_group, c.storage_plural),
        None => (kind.group, kind.plural),
    };
    let group = if group.is_empty() { "core" } else { group };
    format!("{ROOT}{group}/{plural}/")
}

/// The prefix of a resource's objects in one namespace (or all of them).
pub fn list_prefix(kind: &Kind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced => format!("{}{ns}/", resource_prefix(kind)),
        _ => resource_prefix(kind),
    }
}

/// The key of one object.
pub fn object_key(kind: &Kind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if kind.namespaced => format!("{}{ns}/{name}", resource_prefix(kind)),
        _ => format!("{}{name}", resource_prefix(kind)),
    }
}

/// The resource prefix a key belongs to: `/registry/core/pods/` for `/registry/core/pods/ns/x`.
pub fn prefix_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(ROOT)?;
    let group_end = rest.find('/')?;
    let plural_end = rest[group_end + 1..].find('/')?;
    Some(&key[..ROOT.len() + group_end + 1 + plural_end + 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_of_keys() {
        assert_eq!(
            prefix_of("/registry/core/pods/default/x"),
            Some("/registry/core/pods/")
        );
        assert_eq!(
            prefix_of("/registry/apps/deployments/a/b"),
            Some("/registry/apps/deployments/")
        );
        assert_eq!(
            prefix_of("/registry/core/nodes/n1"),
            Some("/registry/core/nodes/")
        );
        assert_eq!(prefix_of("/other/x"), None);
        assert_eq!(prefix_of("/registry/core"), None);
    }
}
