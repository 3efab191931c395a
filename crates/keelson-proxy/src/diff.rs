//! The difference between the ruleset in force and the one wanted, as a value: chains added,
//! rewritten (flushed and refilled) or deleted, sets added or deleted, and map/set elements
//! added or deleted; [`Diff::render`] writes it as one `nft -f` transaction that touches only
//! what changed, so unrelated chains and sets (ClientIP affinity entries among them) stay as
//! they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use crate::ruleset::{Chain, Ruleset, Set};

/// What to change in the table to go from one ruleset to the next.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub table: String,
    /// New sets and maps (created before any rule may name them).
    pub sets_added: Vec<Set>,
    /// New regular chains, with their rules.
    pub chains_added: Vec<Chain>,
    /// Chains whose rules changed: flushed, then given the new rules.
    pub chains_changed: Vec<Chain>,
    /// Elements to remove, per set (whole elements; a map's key is the part before ` : `).
    pub elements_deleted: BTreeMap<String, Vec<String>>,
    /// Elements to add, per set.
    pub elements_added: BTreeMap<String, Vec<String>>,
    /// Chains that are gone (flushed first, so chains they jump to can go too).
    pub chains_deleted: Vec<String>,
    /// Sets that are gone (after every rule naming them).
    pub sets_deleted: Vec<String>,
}

impl Diff {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.sets_added.is_empty()
            && self.chains_added.is_empty()
            && self.chains_changed.is_empty()
            && self.elements_deleted.is_empty()
            && self.elements_added.is_empty()
            && self.chains_deleted.is_empty()
            && self.sets_deleted.is_empty()
    }

    /// The `nft -f` text applying the change in one transaction. It starts by adding the
    /// table, so a table deleted behind the proxy's back makes the transaction fail (an
    /// object it names is missing) rather than half-apply, and the caller rebuilds.
    pub fn render(&self) -> String {
        let t = &self.table;
        let mut s = format!("add table ip {t}\n");
        for set in &self.sets_added {
            let _ = writeln!(
                s,
                "add {} ip {t} {} {{ {} }}",
                set.kind(),
                set.name,
                set.spec.join(" ")
            );
            if !set.elements.is_empty() {
                let _ = writeln!(
                    s,
                    "add element ip {t} {} {{ {} }}",
                    set.name,
                    set.elements.join(", ")
                );
            }
        }
        for c in &self.chains_added {
            let _ = writeln!(s, "add chain ip {t} {}", c.name);
        }
        for name in &self.chains_deleted {
            let _ = writeln!(s, "flush chain ip {t} {name}");
        }
        for c in &self.chains_changed {
            let _ = writeln!(s, "flush chain ip {t} {}", c.name);
        }
        for c in self.chains_added.iter().chain(&self.chains_changed) {
            for r in &c.rules {
                let _ = writeln!(s, "add rule ip {t} {} {r}", c.name);
            }
        }
        for (set, elements) in &self.elements_deleted {
            let keys: Vec<&str> = elements.iter().map(|e| element_key(e)).collect();
            let _ = writeln!(s, "delete element ip {t} {set} {{ {} }}", keys.join(", "));
        }
        for (set, elements) in &self.elements_added {
            let _ = writeln!(s, "add element ip {t} {set} {{ {} }}", elements.join(", "));
        }
        for name in &self.chains_deleted {
            let _ = writeln!(s, "delete chain ip {t} {name}");
        }
        for name in &self.sets_deleted {
            let _ = writeln!(s, "delete set ip {t} {name}");
        }
        s
    }
}

/// The key of a set or map element: `10.43.0.1 . tcp . 80` of
/// `10.43.0.1 . tcp . 80 : goto service-...`.
fn element_key(element: &str) -> &str {
    element.split(" : ").next().unwrap_or(element)
}

/// The change from `old` to `new`; `None` when it cannot be made in place (another table,
/// a base chain or a set's type changed) and the table must be rebuilt whole.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Option<Diff> {
    if old.table != new.table {
        return None;
    }
    let mut d = Diff {
        table: new.table.clone(),
        ..Diff::default()
    };
    let old_sets: HashMap<&str, &Set> = old.sets.iter().map(|s| (s.name.as_str(), s)).collect();
    let new_names: BTreeSet<&str> = new.sets.iter().map(|s| s.name.as_str()).collect();
    for set in &new.sets {
        match old_sets.get(set.name.as_str()) {
            None => d.sets_added.push(set.clone()),
            Some(was) if was.spec != set.spec => return None,
            Some(was) => {
                let before: BTreeSet<&String> = was.elements.iter().collect();
                let after: BTreeSet<&String> = set.elements.iter().collect();
                let gone: Vec<String> = before.difference(&after).map(|e| (*e).clone()).collect();
                let came: Vec<String> = after.difference(&before).map(|e| (*e).clone()).collect();
                if !gone.is_empty() {
                    d.elements_deleted.insert(set.name.clone(), gone);
                }
                if !came.is_empty() {
                    d.elements_added.insert(set.name.clone(), came);
                }
            }
        }
    }
    d.sets_deleted = old
        .sets
        .iter()
        .filter(|s| !new_names.contains(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();

    let old_chains: HashMap<&str, &Chain> =
        old.chains.iter().map(|c| (c.name.as_str(), c)).collect();
    let new_names: BTreeSet<&str> = new.chains.iter().map(|c| c.name.as_str()).collect();
    for chain in &new.chains {
        match old_chains.get(chain.name.as_str()) {
            None if chain.hook.is_some() => return None,
            None => d.chains_added.push(chain.clone()),
            Some(was) if was.hook != chain.hook => return None,
            Some(was) if was.rules != chain.rules => d.chains_changed.push(chain.clone()),
            Some(_) => {}
        }
    }
    for chain in &old.chains {
        if !new_names.contains(chain.name.as_str()) {
            if chain.hook.is_some() {
                return None;
            }
            d.chains_deleted.push(chain.name.clone());
        }
    }
    Some(d)
}
