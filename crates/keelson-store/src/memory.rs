//! An in-memory [`Store`] for tests and benchmarks: current values plus an event history.
//!
//! The current state is a `BTreeMap`; every write appends its [`Event`] (which carries the
//! previous value) to a history log. A read at a past revision starts from the current state
//! and undoes the logged events after that revision, newest first. A store from
//! [`MemoryStore::new`] compacts only when [`Store::compact`] is called; one from
//! [`MemoryStore::with_retention`] also compacts on its own, like the SQLite store.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use crate::read::{lower_bound, page_limit, served_revision};
use crate::watch::{self, BROADCAST_CAPACITY, Batch, History};
use crate::{
    Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchStream,
};

/// A [`Store`] that keeps everything in memory. Cheap to create; state dies with it.
pub struct MemoryStore {
    shared: Arc<Shared>,
    /// Revisions kept readable by automatic compaction (`None`: no automatic compaction).
    retain: Option<Revision>,
}

/// The state watchers share with the store.
struct Shared {
    state: Mutex<State>,
    /// Committed events, published while the state lock is held so they stay in order.
    events: broadcast::Sender<Batch>,
}

#[derive(Default)]
struct State {
    current: BTreeMap<String, KeyValue>,
    /// Every event after `compacted`, in revision order.
    history: VecDeque<Event>,
    revision: Revision,
    compacted: Revision,
}

impl MemoryStore {
    /// An empty store at revision 0 that keeps all history until [`Store::compact`].
    pub fn new() -> MemoryStore {
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let state = Mutex::new(State::default());
        MemoryStore {
            shared: Arc::new(Shared { state, events }),
            retain: None,
        }
    }

    /// An empty store that compacts on its own, keeping the last `retain_revisions`
    /// revisions readable (compacting whenever a tenth of that many more piled up), so its
    /// memory stays bounded under a long stream of writes. Zero or less: as [`MemoryStore::new`].
    pub fn with_retention(retain_revisions: i64) -> MemoryStore {
        MemoryStore {
            retain: Some(retain_revisions).filter(|&r| r > 0),
            ..MemoryStore::new()
        }
    }
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across anything that can panic halfway through a change.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a change made at `state.revision`, publishes it and compacts if `retain`
    /// revisions plus a tenth of that many have piled up.
    fn commit(&self, state: &mut State, event: Event, retain: Option<Revision>) {
        state.history.push_back(event.clone());
        // No subscribers is fine: nobody is watching.
        let _ = self.events.send(Arc::new(vec![event]));
        if let Some(retain) = retain {
            let target = state.revision - retain;
            if target - state.compacted >= (retain / 10).max(1) {
                state.compact(target);
            }
        }
    }
}

impl State {
    /// Drops the history up to `revision` (at most the current revision).
    fn compact(&mut self, revision: Revision) {
        while self
            .history
            .front()
            .is_some_and(|e| e.revision() <= revision)
        {
            self.history.pop_front();
        }
        self.compacted = self.compacted.max(revision);
    }

    fn next_revision(&mut self) -> Revision {
        self.revision += 1;
        self.revision
    }

    /// The keys under `prefix` as they were at `revision` (which must not be compacted).
    fn snapshot(&self, prefix: &str, revision: Revision) -> BTreeMap<String, KeyValue> {
        let mut keys: BTreeMap<String, KeyValue> = self
            .current
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for event in self
            .history
            .iter()
            .rev()
            .take_while(|e| e.revision() > revision)
        {
            if !event.key().starts_with(prefix) {
                continue;
            }
            match event {
                Event::Put { kv, prev: None } => {
                    keys.remove(&kv.key);
                }
                Event::Put {
                    prev: Some(prev), ..
                }
                | Event::Delete { prev, .. } => {
                    keys.insert(prev.key.clone(), prev.clone());
                }
            }
        }
        keys
    }
}

/// One page of `keys` (ascending) under `prefix`, starting after `opts.start_after`.
fn page<'a>(
    keys: impl Iterator<Item = &'a KeyValue>,
    prefix: &str,
    opts: &ListOptions,
) -> (Vec<KeyValue>, usize) {
    let (from, exclusive) = lower_bound(prefix, opts.start_after.as_deref());
    let mut matching = keys
        .skip_while(|kv| kv.key.as_str() < from || (exclusive && kv.key == from))
        .take_while(|kv| kv.key.starts_with(prefix));
    let kvs: Vec<KeyValue> = match page_limit(opts.limit) {
        Some(n) => matching.by_ref().take(n).cloned().collect(),
        None => matching.by_ref().cloned().collect(),
    };
    (kvs, matching.count())
}

#[async_trait]
impl History for Shared {
    async fn events_after(
        &self,
        prefix: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let state = self.lock();
        if after < state.compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted: state.compacted,
            });
        }
        let start = state.history.partition_point(|e| e.revision() <= after);
        Ok(state
            .history
            .range(start..)
            .filter(|e| e.key().starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.lock().revision)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.lock().compacted)
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.shared.lock().current.get(key).cloned())
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let state = self.shared.lock();
        let revision = served_revision(opts.revision, state.revision, state.compacted)?;
        let (from, _) = lower_bound(prefix, opts.start_after.as_deref());
        let (kvs, remaining) = if revision == state.revision {
            let keys = state
                .current
                .range::<str, _>((Bound::Included(from), Bound::Unbounded))
                .map(|(_, v)| v);
            page(keys, prefix, &opts)
        } else {
            page(state.snapshot(prefix, revision).values(), prefix, &opts)
        };
        Ok(ListResult {
            kvs,
            revision,
            remaining,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let mut state = self.shared.lock();
        if state.current.contains_key(key) {
            return Err(Error::AlreadyExists(key.to_string()));
        }
        let revision = state.next_revision();
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        };
        state.current.insert(kv.key.clone(), kv.clone());
        self.shared.commit(
            &mut state,
            Event::Put {
                kv: kv.clone(),
                prev: None,
            },
            self.retain,
        );
        Ok(kv)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        let mut state = self.shared.lock();
        let prev = guard(state.current.get(key), key, Some(expected_mod_revision))?;
        let revision = state.next_revision();
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.create_revision,
            mod_revision: revision,
        };
        state.current.insert(kv.key.clone(), kv.clone());
        self.shared.commit(
            &mut state,
            Event::Put {
                kv: kv.clone(),
                prev: Some(prev),
            },
            self.retain,
        );
        Ok(kv)
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision)> {
        let mut state = self.shared.lock();
        let prev = guard(state.current.get(key), key, expected_mod_revision)?;
        let revision = state.next_revision();
        state.current.remove(key);
        self.shared.commit(
            &mut state,
            Event::Delete {
                revision,
                prev: prev.clone(),
            },
            self.retain,
        );
        Ok((prev, revision))
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let live = {
            let state = self.shared.lock();
            if after_revision < state.compacted {
                return Err(Error::Compacted {
                    requested: after_revision,
                    compacted: state.compacted,
                });
            }
            self.shared.events.subscribe()
        };
        Ok(watch::start(
            self.shared.clone(),
            live,
            prefix,
            after_revision,
        ))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut state = self.shared.lock();
        if revision > state.revision {
            return Err(Error::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        if revision <= state.compacted {
            return Ok(());
        }
        while state
            .history
            .front()
            .is_some_and(|e| e.revision() <= revision)
        {
            state.history.pop_front();
        }
        state.compacted = revision;
        Ok(())
    }
}

/// The compare-and-swap guard of an update or delete: the key must exist and, when
/// `expected` is given, have that mod revision. Returns the current value.
pub(crate) fn guard(
    current: Option<&KeyValue>,
    key: &str,
    expected: Option<Revision>,
) -> Result<KeyValue> {
    let Some(kv) = current else {
        return Err(Error::NotFound(key.to_string()));
    };
    match expected {
        Some(expected) if expected != kv.mod_revision => Err(Error::Conflict {
            key: key.to_string(),
            expected,
            current: Some(Box::new(kv.clone())),
        }),
        _ => Ok(kv.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Waits until no watcher task is subscribed to the store's events.
    async fn watchers_gone(store: &MemoryStore) -> bool {
        for _ in 0..500 {
            if store.shared.events.receiver_count() == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn retention_compacts_automatically() {
        let store = MemoryStore::with_retention(100);
        let mut rev = store
            .create("/k", Bytes::from_static(b"0"))
            .await
            .unwrap()
            .mod_revision;
        for n in 0..1_000u32 {
            rev = store
                .update("/k", Bytes::from(n.to_string()), rev)
                .await
                .unwrap()
                .mod_revision;
        }
        let compacted = store.compacted_revision().await.unwrap();
        assert!(
            (rev - 110..=rev - 100).contains(&compacted),
            "compacted {compacted} at revision {rev}"
        );
        assert!(
            store.shared.lock().history.len() <= 110,
            "history stays bounded"
        );
        let old = store.list(
            "/k",
            ListOptions {
                revision: Some(rev - 100),
                ..Default::default()
            },
        );
        assert_eq!(
            old.await.unwrap().kvs[0].mod_revision,
            rev - 100,
            "the retained window is readable"
        );
        assert!(
            MemoryStore::new().retain.is_none() && MemoryStore::with_retention(0).retain.is_none()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_watch_streams_end_their_tasks() {
        let store = MemoryStore::new();
        let idle = store.watch("/elsewhere/", 0).await.unwrap();
        let backed_up = store.watch("/", 0).await.unwrap();
        let mut rev = store
            .create("/k", Bytes::from_static(b"0"))
            .await
            .unwrap()
            .mod_revision;
        for _ in 0..3 * watch::STREAM_BUFFER {
            rev = store
                .update("/k", Bytes::from_static(b"1"), rev)
                .await
                .unwrap()
                .mod_revision;
        }
        assert_eq!(store.shared.events.receiver_count(), 2);
        drop(idle);
        drop(backed_up);
        assert!(
            watchers_gone(&store).await,
            "watch tasks unsubscribe once their streams are dropped"
        );
    }
}
