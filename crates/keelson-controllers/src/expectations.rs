//! Expectations: what a controller has just created or deleted and not yet seen in its cache,
//! so a lagging cache never makes it create or delete twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an expectation may stay unmet before it is given up (upstream: 5 minutes).
pub const EXPECTATION_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
struct Pending {
    adds: HashSet<String>,
    deletes: HashSet<(String, String)>,
    since: Option<Instant>,
}

/// Per controller key: names created and uids deleted that the cache has not shown yet.
#[derive(Debug, Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// Records that `name` was created for `key`.
    pub fn created(&self, key: &str, name: String) {
        self.update(key, |p| {
            p.adds.insert(name);
        });
    }

    /// Records that the object `name` with `uid` was deleted for `key`.
    pub fn deleted(&self, key: &str, name: String, uid: String) {
        self.update(key, |p| {
            p.deletes.insert((name, uid));
        });
    }

    fn update(&self, key: &str, f: impl FnOnce(&mut Pending)) {
        if let Ok(mut m) = self.map.lock() {
            let p = m.entry(key.to_string()).or_default();
            p.since.get_or_insert_with(Instant::now);
            f(p);
        }
    }

    /// Whether every expectation of `key` is met: `seen(name)` says a created name is in the
    /// cache, `gone(name, uid)` that a deleted object has left it (or is terminating). Met expectations
    /// are forgotten; expired ones too.
    pub fn satisfied(
        &self,
        key: &str,
        seen: impl Fn(&str) -> bool,
        gone: impl Fn(&str, &str) -> bool,
    ) -> bool {
        let Ok(mut m) = self.map.lock() else {
            return true;
        };
        let Some(p) = m.get_mut(key) else {
            return true;
        };
        p.adds.retain(|n| !seen(n));
        p.deletes.retain(|(n, u)| !gone(n, u));
        let expired = p.since.is_some_and(|s| s.elapsed() > EXPECTATION_TTL);
        if p.adds.is_empty() && p.deletes.is_empty() || expired {
            m.remove(key);
            return true;
        }
        false
    }

    /// Forgets `key` (its owner is gone).
    pub fn forget(&self, key: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn met_once_the_cache_shows_every_change() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs", |_| false, |_, _| false));
        e.created("ns/rs", "rs-abcde".into());
        e.deleted("ns/rs", "rs-fghij".into(), "uid-1".into());
        assert!(!e.satisfied("ns/rs", |_| false, |_, _| false));
        assert!(!e.satisfied("ns/rs", |n| n == "rs-abcde", |_, _| false));
        // The add was seen above and stays met; now the delete is seen too.
        assert!(e.satisfied("ns/rs", |_| false, |_, u| u == "uid-1"));
        // Met expectations are forgotten.
        assert!(e.satisfied("ns/rs", |_| false, |_, _| false));
        assert!(e.satisfied("ns/other", |_| false, |_, _| false));
    }
}
