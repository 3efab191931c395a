//! Key-value storage with etcd v3 semantics, the only place cluster state is kept.
//!
//! Every write gets the next value of one global revision. Keys keep a create revision and a
//! mod revision; updates and deletes are compare-and-swap on the mod revision; a watch from a
//! revision delivers every later change, in order, with the previous value; history before
//! the compacted revision is gone, and asking for it is [`Error::Compacted`] (HTTP 410).
//! The apiserver is written against [`Store`] alone, so an etcd backend maps onto it one to one.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

mod memory;
mod read;
mod sqlite;
mod watch;

pub use memory::MemoryStore;
pub use sqlite::{SqliteOptions, SqliteStore};

/// A global, strictly increasing revision. Revision 0 means "nothing written yet".
pub type Revision = i64;

/// One stored key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (stays the same across updates).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// One change delivered by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A create (`prev` is `None`) or an update (`prev` is the value it replaced).
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// A delete at `revision`; `prev` is the value that was deleted.
    Delete { revision: Revision, prev: KeyValue },
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key this change is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// Options of a range read.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Only keys strictly greater than this one (the continue token of a paged list).
    pub start_after: Option<String>,
    /// At most this many keys (0 or `None`: all).
    pub limit: Option<usize>,
    /// Read the state as it was at this revision (`None`: the current revision).
    pub revision: Option<Revision>,
}

/// The answer to a range read.
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// The revision the read was served at.
    pub revision: Revision,
    /// How many keys under the prefix follow the last one returned (0: the list is complete).
    pub remaining: usize,
}

/// A stream of watch events, in revision order. An `Err` item ends the stream (for example
/// [`Error::Compacted`] when the watcher fell behind compaction).
pub type WatchStream = tokio::sync::mpsc::Receiver<Result<Event>>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// The CAS guard failed; `current` is the key's value now, if it still exists.
    #[error("key {key} was modified: expected mod revision {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Option<Box<KeyValue>>,
    },
    /// The requested revision is older than the compacted revision.
    #[error("revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the current revision.
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("store is closed")]
    Closed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Storage with etcd v3 semantics. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the last write (0 for an empty store).
    async fn current_revision(&self) -> Result<Revision>;

    /// The revision up to which history has been compacted (0: none).
    async fn compacted_revision(&self) -> Result<Revision>;

    /// The current value of one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in ascending order, paged by `opts`.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces `key` if its mod revision is `expected_mod_revision`; otherwise
    /// [`Error::Conflict`] (or [`Error::NotFound`] if the key is gone).
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue>;

    /// Deletes `key`, guarded by its mod revision when `expected_mod_revision` is given.
    /// Returns the deleted value and the revision of the delete.
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision)>;

    /// Every change to keys under `prefix` with a revision greater than `after_revision`, in
    /// order, then live changes as they happen. Fails with [`Error::Compacted`] if
    /// `after_revision` is older than the compacted revision.
    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream>;

    /// Drops history older than `revision` (etcd's compaction): reads and watches at earlier
    /// revisions fail with [`Error::Compacted`] afterwards. Current values are never lost.
    async fn compact(&self, revision: Revision) -> Result<()>;
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// The smallest key greater than every key with `prefix` (etcd's range end for a prefix).
pub fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    String::new()
}
