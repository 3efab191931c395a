//! The ownerReferences graph: every object's owners and the reverse index of dependents,
//! and the pure decision of what to do with an object given the state of its owners.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The finalizer the apiserver adds for `propagationPolicy: Orphan`.
pub const ORPHAN: &str = "orphan";
/// The finalizer the apiserver adds for `propagationPolicy: Foreground`.
pub const FOREGROUND: &str = "foregroundDeletion";

/// One object as the collector sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Index of its resource in the collector's table.
    pub resource: usize,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: waits for its blocking dependents.
    pub fn waiting_for_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }
}

/// All objects by uid, and who depends on whom.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The uids of objects that name `uid` as an owner.
    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
            .collect()
    }

    /// Inserts or replaces `node`; returns the owner uids it had before.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let old = self.remove(&node.uid);
        for o in &node.owners {
            self.dependents
                .entry(o.uid.clone())
                .or_default()
                .insert(node.uid.clone());
        }
        self.nodes.insert(node.uid.clone(), node);
        old.map(|n| n.owners.into_iter().map(|o| o.uid).collect())
            .unwrap_or_default()
    }

    /// Removes the object `uid`; its dependents stay (now dangling).
    pub fn remove(&mut self, uid: &str) -> Option<Node> {
        let node = self.nodes.remove(uid)?;
        for o in &node.owners {
            if let Some(set) = self.dependents.get_mut(&o.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        Some(node)
    }

    /// The uids of every object of `resource`.
    pub fn uids_of(&self, resource: usize) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.resource == resource)
            .map(|n| n.uid.clone())
            .collect()
    }
}

/// The state of one owner of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists and is not being deleted in the foreground.
    Solid,
    /// Exists and waits, in foreground deletion, for its dependents to go.
    WaitingForDependents,
    /// Gone (or replaced by another object with the same name).
    Dangling,
}

/// What to do with an object that has owners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: it has a solid owner and no stale reference.
    Keep,
    /// Remove the references to these owner uids; a solid owner remains.
    RemoveRefs(Vec<String>),
    /// Delete it, in the foreground when it must first delete its own dependents.
    Delete { foreground: bool },
}

/// Decides from the states of `owners` (in the order of the object's references) and whether
/// the object itself has dependents.
pub fn decide(owners: &[(String, OwnerState)], has_dependents: bool) -> Verdict {
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    let waiting = owners
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    if owners.is_empty() {
        return Verdict::Keep;
    }
    if solid {
        let stale: Vec<String> = owners
            .iter()
            .filter(|(_, s)| *s != OwnerState::Solid)
            .map(|(u, _)| u.clone())
            .collect();
        return if stale.is_empty() {
            Verdict::Keep
        } else {
            Verdict::RemoveRefs(stale)
        };
    }
    Verdict::Delete {
        foreground: waiting && has_dependents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OwnerState::*;

    fn check(owners: &[OwnerState], has_dependents: bool, want: Verdict) {
        let owners: Vec<(String, OwnerState)> = owners
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("o{i}"), *s))
            .collect();
        assert_eq!(decide(&owners, has_dependents), want, "{owners:?}");
    }

    #[test]
    fn verdicts() {
        check(&[], false, Verdict::Keep);
        check(&[Solid], false, Verdict::Keep);
        check(
            &[Solid, Dangling],
            false,
            Verdict::RemoveRefs(vec!["o1".into()]),
        );
        check(
            &[WaitingForDependents, Solid],
            true,
            Verdict::RemoveRefs(vec!["o0".into()]),
        );
        check(&[Dangling], true, Verdict::Delete { foreground: false });
        check(
            &[WaitingForDependents],
            false,
            Verdict::Delete { foreground: false },
        );
        check(
            &[WaitingForDependents, Dangling],
            true,
            Verdict::Delete { foreground: true },
        );
    }

    fn node(uid: &str, owners: &[&str]) -> Node {
        Node {
            resource: 0,
            namespace: Some("ns".into()),
            name: uid.into(),
            uid: uid.into(),
            owners: owners
                .iter()
                .map(|o| OwnerReference {
                    uid: o.to_string(),
                    ..Default::default()
                })
                .collect(),
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    #[test]
    fn dependents_follow_owner_references() {
        let mut g = Graph::default();
        g.upsert(node("rs", &["deploy"]));
        g.upsert(node("p1", &["rs"]));
        g.upsert(node("p2", &["rs"]));
        let names = |g: &Graph, uid: &str| {
            let mut v: Vec<String> = g.dependents(uid).iter().map(|n| n.uid.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&g, "rs"), ["p1", "p2"]);
        assert_eq!(names(&g, "deploy"), ["rs"]);
        // Re-pointing p2 and removing p1 update the index.
        assert_eq!(g.upsert(node("p2", &["other"])), ["rs"]);
        g.remove("p1");
        assert!(names(&g, "rs").is_empty());
        assert_eq!(names(&g, "other"), ["p2"]);
    }
}
