//! The default [`Store`]: one SQLite file (bundled SQLite, WAL mode) with group commit.
//!
//! # Schema
//!
//! * `current (key PRIMARY KEY, value, create_rev, mod_rev)`: the live keys; a list at the
//!   current revision is one range scan of its key index.
//! * `history (rev PRIMARY KEY, key, value, create_rev, prev_rev, deleted)`: one row per
//!   write (a delete is a row with `deleted = 1` and no value), indexed on `(key, rev)`.
//!   `prev_rev` names the row a write replaced, so a watch event's previous value is a join
//!   on the primary key. A list at a past revision takes, per key, the newest row at or
//!   before that revision.
//! * `meta (name PRIMARY KEY, value)`: the current and the compacted revision.
//!
//! Keys are stored as blobs, so SQLite compares them byte by byte, as etcd does.
//!
//! # Writes and durability
//!
//! One writer thread owns the only writing connection. Callers queue their write with a
//! oneshot reply; the thread drains the queue (up to `MAX_BATCH` writes), applies them in
//! one `BEGIN IMMEDIATE` transaction, assigning revisions in queue order, commits, publishes
//! the events to watchers and only then replies. A write is acknowledged only once its
//! transaction has committed. The database runs in WAL mode with `synchronous = NORMAL`: a
//! committed transaction is in the WAL file (in the OS page cache at least), so killing the
//! process, even with `kill -9`, loses no acknowledged write; a power loss or kernel crash
//! may lose the last few acknowledged transactions but never corrupts the database.
//!
//! # Reads and watches
//!
//! Reads run on tokio's blocking pool, each in one read transaction (a consistent WAL
//! snapshot) on a pooled read connection, so they never wait for the writer. Watchers get
//! live events from a broadcast of committed batches and read anything they missed from the
//! `history` table (see the watch module).
//!
//! # Compaction and file size
//!
//! The writer compacts on its own, keeping the last [`SqliteOptions::retain_revisions`]
//! revisions: after any batch that leaves a tenth of that many surplus revisions, and at
//! every [`SqliteOptions::compact_interval`]. Compaction deletes, for the revisions it drops,
//! tombstones and every row a later row (at or before the compaction revision) replaced, so
//! the newest version of each key at the compaction revision survives. The database uses
//! `auto_vacuum = INCREMENTAL` (set before the first table is created) and runs
//! `incremental_vacuum` when compaction leaves many free pages; the WAL is checkpointed every
//! `WAL_AUTOCHECKPOINT_PAGES` pages and truncated to `JOURNAL_SIZE_LIMIT` bytes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::types::{ToSql, Type};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use crate::memory::guard;
use crate::read::{lower_bound, page_limit, prefix_end_bytes, served_revision};
use crate::watch::{self, BROADCAST_CAPACITY, Batch, History};
use crate::{
    Error, Event, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchStream,
};

/// The most writes committed in one transaction.
const MAX_BATCH: usize = 1024;

/// WAL pages after which SQLite checkpoints the WAL into the database on its own.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 256;

/// The size (bytes) the WAL file is truncated to after a checkpoint resets it.
const JOURNAL_SIZE_LIMIT: i64 = 1 << 20;

/// Free pages above which compaction returns space to the file system.
const VACUUM_FREE_PAGES: i64 = 256;

/// How many idle read connections are kept open.
const MAX_IDLE_READERS: usize = 8;

/// How long a connection waits for a lock before reporting the database busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Tuning of a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How often the writer compacts down to the last `retain_revisions` revisions even if
    /// fewer than a tenth of that many surplus revisions accumulated. Zero: never by time.
    pub compact_interval: Duration,
    /// How many of the most recent revisions stay readable (list at a revision, watch from a
    /// revision). Older history is compacted automatically. Zero or less: no automatic
    /// compaction at all (only [`Store::compact`]).
    pub retain_revisions: i64,
}

impl Default for SqliteOptions {
    /// Compact every 5 minutes, keeping the last 10,000 revisions.
    fn default() -> SqliteOptions {
        SqliteOptions {
            compact_interval: Duration::from_secs(300),
            retain_revisions: 10_000,
        }
    }
}

/// A [`Store`] in one SQLite database file (WAL mode), the default backend.
///
/// * Writes go through one writer thread that commits concurrent writes together (group
///   commit) and acknowledges a write only after its transaction committed.
/// * Durability: `synchronous = NORMAL` in WAL mode. Killing the process (even `kill -9`)
///   loses no acknowledged write; a power loss or OS crash may lose the last acknowledged
///   transactions, never the database's consistency.
/// * Reads run on tokio's blocking pool against a consistent snapshot and never wait for
///   the writer. Watches get live events from the writer and older ones from the history
///   table.
/// * History is compacted automatically per [`SqliteOptions`]; the file stays small
///   (incremental auto-vacuum, bounded WAL).
/// * Reopening the file keeps every current value, the revision counter and the history
///   since the compacted revision.
pub struct SqliteStore {
    writer: mpsc::Sender<Command>,
    /// Kept to subscribe watchers (`None` once closed); the writer thread holds the other
    /// sender, so the broadcast closes (and watchers end with [`Error::Closed`]) once both
    /// are gone.
    events: Mutex<Option<broadcast::Sender<Batch>>>,
    shared: Arc<Shared>,
}

/// What readers, watchers and the writer share.
struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// Revisions as of the last commit of the writer.
    revision: AtomicI64,
    compacted: AtomicI64,
    closed: AtomicBool,
}

/// Why a database operation failed: SQLite itself, or a store-level answer.
#[derive(Debug, thiserror::Error)]
enum Fail {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] Error),
}

impl Fail {
    /// The store error, naming the database file for SQLite failures.
    fn at(self, path: &Path) -> Error {
        match self {
            Fail::Sql(err) => Error::Backend(format!("sqlite database {}: {err}", path.display())),
            Fail::Store(err) => err,
        }
    }
}

/// A request to the writer thread.
enum Command {
    Write(Write, oneshot::Sender<Result<Event>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
    Close(oneshot::Sender<()>),
}

/// One mutation, applied by the writer thread.
enum Write {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl Write {
    fn key(&self) -> &str {
        match self {
            Write::Create { key, .. } | Write::Update { key, .. } | Write::Delete { key, .. } => {
                key
            }
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread.
    ///
    /// This blocks the calling thread for as long as SQLite needs to open the file and check
    /// the schema (milliseconds); it may be called inside a tokio runtime.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteStore> {
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            revision: AtomicI64::new(0),
            compacted: AtomicI64::new(0),
            closed: AtomicBool::new(false),
        });
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (writer, commands) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread_events = events.clone();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("keelson-store-writer".to_string())
            .spawn(
                move || match Writer::open(thread_shared, opts, thread_events) {
                    Ok(writer) => {
                        let _ = ready_tx.send(Ok(()));
                        writer.run(commands);
                    }
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                    }
                },
            )
            .map_err(|e| {
                Error::Backend(format!(
                    "starting the writer thread of {}: {e}",
                    path.display()
                ))
            })?;
        ready_rx.recv().map_err(|_| {
            Error::Backend(format!(
                "writer thread of {} exited while opening",
                path.display()
            ))
        })??;
        Ok(SqliteStore {
            writer,
            events: Mutex::new(Some(events)),
            shared,
        })
    }

    /// Finishes the queued writes, closes the database and stops the writer thread. Every
    /// later call fails with [`Error::Closed`] and open watches end with it. Dropping the
    /// store stops the writer thread too, without waiting for it.
    pub async fn close(&self) -> Result<()> {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.lock_readers().clear();
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let (reply, done) = oneshot::channel();
        if self.writer.send(Command::Close(reply)).is_ok() {
            let _ = done.await;
        }
        Ok(())
    }

    async fn write(&self, write: Write) -> Result<Event> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Command::Write(write, reply))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

impl Shared {
    /// [`Error::Closed`] once [`SqliteStore::close`] was called.
    fn open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn lock_readers(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// Runs `f` on a pooled read connection, on the blocking thread pool.
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Fail> + Send + 'static,
    {
        self.open()?;
        let shared = self.clone();
        let task = tokio::task::spawn_blocking(move || {
            let pooled = shared.lock_readers().pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => shared
                    .open_reader()
                    .map_err(|e| Fail::from(e).at(&shared.path))?,
            };
            let result = f(&mut conn).map_err(|e| e.at(&shared.path));
            let mut idle = shared.lock_readers();
            if idle.len() < MAX_IDLE_READERS && !shared.closed.load(Ordering::SeqCst) {
                idle.push(conn);
            }
            result
        });
        task.await
            .map_err(|e| Error::Backend(format!("read task on {}: {e}", self.path.display())))?
    }
}

/// Reads `(current revision, compacted revision)` inside the caller's transaction.
fn read_meta(conn: &Connection) -> rusqlite::Result<(Revision, Revision)> {
    let mut stmt = conn
        .prepare_cached("SELECT name, value FROM meta WHERE name IN ('revision', 'compacted')")?;
    let mut rows = stmt.query([])?;
    let (mut revision, mut compacted) = (0, 0);
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let value: Revision = row.get(1)?;
        match name.as_str() {
            "revision" => revision = value,
            _ => compacted = value,
        }
    }
    Ok((revision, compacted))
}

/// A key column (stored as a blob) as a string.
fn key_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<String> {
    let bytes: Vec<u8> = row.get(idx)?;
    String::from_utf8(bytes)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Blob, Box::new(e)))
}

/// A value column as bytes (`NULL`, a tombstone's value, reads as empty).
fn value_at(row: &Row<'_>, idx: usize) -> rusqlite::Result<Bytes> {
    let bytes: Option<Vec<u8>> = row.get(idx)?;
    Ok(bytes.map(Bytes::from).unwrap_or_default())
}

/// A row of `key, value, create_rev, mod_rev`.
fn kv_from_row(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_at(row, 0)?,
        value: value_at(row, 1)?,
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

fn get_current(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    let mut stmt =
        conn.prepare_cached("SELECT key, value, create_rev, mod_rev FROM current WHERE key = ?1")?;
    stmt.query_row([key.as_bytes()], kv_from_row).optional()
}

/// The SQL of one page of a list and of the count of what follows it.
struct ListSql {
    page: String,
    count: String,
}

/// Builds the list statements: from the `current` table, or (for a past revision) from the
/// newest `history` row of each key at or before `:rev`.
fn list_sql(past: bool, exclusive: bool, bounded: bool) -> ListSql {
    let (table, columns, newest) = if past {
        (
            "history h",
            "h.key, h.value, h.create_rev, h.rev",
            " AND h.deleted = 0 AND h.rev = (SELECT MAX(x.rev) FROM history x WHERE x.key = h.key AND x.rev <= :rev)",
        )
    } else {
        ("current h", "h.key, h.value, h.create_rev, h.mod_rev", "")
    };
    let end = if bounded { " AND h.key < :end" } else { "" };
    let from = if exclusive { ">" } else { ">=" };
    ListSql {
        page: format!(
            "SELECT {columns} FROM {table} WHERE h.key {from} :from{end}{newest} ORDER BY h.key LIMIT :limit"
        ),
        count: format!("SELECT COUNT(*) FROM {table} WHERE h.key > :from{end}{newest}"),
    }
}

/// A list, inside one read transaction.
fn list_in(conn: &mut Connection, prefix: &str, opts: &ListOptions) -> Result<ListResult, Fail> {
    let tx = conn.transaction()?;
    let (current, compacted) = read_meta(&tx)?;
    let revision = served_revision(opts.revision, current, compacted)?;
    let past = revision != current;
    let (from, exclusive) = lower_bound(prefix, opts.start_after.as_deref());
    let end = prefix_end_bytes(prefix);
    let limit = page_limit(opts.limit);
    let sql = list_sql(past, exclusive, end.is_some());

    let limit_param = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let from = from.as_bytes();
    let mut params: Vec<(&str, &dyn ToSql)> = vec![(":from", &from), (":limit", &limit_param)];
    if let Some(end) = &end {
        params.push((":end", end));
    }
    if past {
        params.push((":rev", &revision));
    }
    let kvs = {
        let mut stmt = tx.prepare_cached(&sql.page)?;
        stmt.query_map(params.as_slice(), kv_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };

    let remaining = match (limit, kvs.last()) {
        (Some(n), Some(last)) if kvs.len() == n => {
            let last_key = last.key.as_bytes();
            params.retain(|(name, _)| *name != ":limit" && *name != ":from");
            params.push((":from", &last_key));
            let mut stmt = tx.prepare_cached(&sql.count)?;
            let count: i64 = stmt.query_row(params.as_slice(), |row| row.get(0))?;
            usize::try_from(count).unwrap_or(0)
        }
        _ => 0,
    };
    Ok(ListResult {
        kvs,
        revision,
        remaining,
    })
}

/// Events under `prefix` after `after`, with their previous values, inside one read
/// transaction.
fn events_in(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> Result<Vec<Event>, Fail> {
    let tx = conn.transaction()?;
    let (_, compacted) = read_meta(&tx)?;
    if after < compacted {
        return Err(Error::Compacted {
            requested: after,
            compacted,
        }
        .into());
    }
    let end = prefix_end_bytes(prefix);
    let range = match (prefix.is_empty(), end.is_some()) {
        (true, _) => "",
        (false, true) => " AND h.key >= :prefix AND h.key < :end",
        (false, false) => " AND h.key >= :prefix",
    };
    let sql = format!(
        "SELECT h.rev, h.key, h.value, h.create_rev, h.prev_rev, h.deleted, p.value, p.create_rev \
         FROM history h LEFT JOIN history p ON p.rev = h.prev_rev \
         WHERE h.rev > :after{range} ORDER BY h.rev LIMIT :limit"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let prefix_bytes = prefix.as_bytes();
    let mut params: Vec<(&str, &dyn ToSql)> = vec![(":after", &after), (":limit", &limit)];
    if !prefix.is_empty() {
        params.push((":prefix", &prefix_bytes));
    }
    if let (false, Some(end)) = (prefix.is_empty(), &end) {
        params.push((":end", end));
    }
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map(params.as_slice(), event_from_row)?;
    let mut events = Vec::new();
    for row in rows {
        events.push(row??);
    }
    Ok(events)
}

/// One history row joined with the row it replaced, as an event. The outer error is
/// SQLite's; the inner one reports a history row whose predecessor is missing.
fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Event, Fail>> {
    let revision: Revision = row.get(0)?;
    let key = key_at(row, 1)?;
    let create_revision: Revision = row.get(3)?;
    let prev_rev: Revision = row.get(4)?;
    let deleted: bool = row.get(5)?;
    let prev_create: Option<Revision> = row.get(7)?;
    let prev = match (prev_rev, prev_create) {
        (0, _) => None,
        (_, Some(prev_create)) => Some(KeyValue {
            key: key.clone(),
            value: value_at(row, 6)?,
            create_revision: prev_create,
            mod_revision: prev_rev,
        }),
        (_, None) => {
            return Ok(Err(Error::Backend(format!(
                "history of key {key}: revision {prev_rev}, replaced at revision {revision}, is missing"
            ))
            .into()));
        }
    };
    let event = match (deleted, prev) {
        (true, Some(prev)) => Event::Delete { revision, prev },
        (true, None) => {
            return Ok(Err(Error::Backend(format!(
                "history of key {key}: delete at revision {revision} has no value"
            ))
            .into()));
        }
        (false, prev) => Event::Put {
            kv: KeyValue {
                key,
                value: value_at(row, 2)?,
                create_revision,
                mod_revision: revision,
            },
            prev,
        },
    };
    Ok(Ok(event))
}

#[async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.shared.open()?;
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.shared.open()?;
        Ok(self.shared.compacted.load(Ordering::SeqCst))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.shared
            .read(move |conn| Ok(get_current(conn, &key)?))
            .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_string();
        self.shared
            .read(move |conn| list_in(conn, &prefix, &opts))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        match self
            .write(Write::Create {
                key: key.to_string(),
                value,
            })
            .await?
        {
            Event::Put { kv, .. } => Ok(kv),
            Event::Delete { .. } => Err(Error::Backend(format!(
                "create of key {key} recorded a delete"
            ))),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        match self
            .write(Write::Update {
                key: key.to_string(),
                value,
                expected: expected_mod_revision,
            })
            .await?
        {
            Event::Put { kv, .. } => Ok(kv),
            Event::Delete { .. } => Err(Error::Backend(format!(
                "update of key {key} recorded a delete"
            ))),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<(KeyValue, Revision)> {
        match self
            .write(Write::Delete {
                key: key.to_string(),
                expected: expected_mod_revision,
            })
            .await?
        {
            Event::Delete { revision, prev } => Ok((prev, revision)),
            Event::Put { .. } => Err(Error::Backend(format!(
                "delete of key {key} recorded a put"
            ))),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let live = match self
            .events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
        {
            Some(events) => events.subscribe(),
            None => return Err(Error::Closed),
        };
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if after_revision < compacted {
            return Err(Error::Compacted {
                requested: after_revision,
                compacted,
            });
        }
        let history: Arc<dyn History> = Arc::new(SqliteHistory(self.shared.clone()));
        Ok(watch::start(history, live, prefix, after_revision))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Command::Compact(revision, reply))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

/// The watch history of a [`SqliteStore`]: the `history` table, read on the blocking pool.
struct SqliteHistory(Arc<Shared>);

#[async_trait]
impl History for SqliteHistory {
    async fn events_after(
        &self,
        prefix: &str,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let prefix = prefix.to_string();
        self.0
            .read(move |conn| events_in(conn, &prefix, after, limit))
            .await
    }
}

/// The writer thread's state: the writing connection and the revisions it assigned.
struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    opts: SqliteOptions,
    events: broadcast::Sender<Batch>,
    /// The revision of the last committed write.
    revision: Revision,
    compacted: Revision,
    /// When the next time-based compaction is due (`None`: never).
    next_tick: Option<Instant>,
}

/// The schema; `auto_vacuum` must be set before the first table exists to take effect.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE IF NOT EXISTS current (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    rev INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    value BLOB,
    create_rev INTEGER NOT NULL,
    prev_rev INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_key_rev ON history (key, rev);
";

/// What the writer waits for next.
enum Next {
    Command(Command),
    Tick,
    Disconnected,
}

impl Writer {
    fn open(
        shared: Arc<Shared>,
        opts: SqliteOptions,
        events: broadcast::Sender<Batch>,
    ) -> Result<Writer> {
        let conn = Self::connect(&shared.path).map_err(|e| e.at(&shared.path))?;
        let (revision, compacted) = read_meta(&conn).map_err(|e| Fail::from(e).at(&shared.path))?;
        shared.revision.store(revision, Ordering::SeqCst);
        shared.compacted.store(compacted, Ordering::SeqCst);
        let next_tick = Self::tick_after(&opts, Instant::now());
        Ok(Writer {
            conn,
            shared,
            opts,
            events,
            revision,
            compacted,
            next_tick,
        })
    }

    fn connect(path: &Path) -> Result<Connection, Fail> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            let path = path.display();
            return Err(Error::Backend(format!(
                "sqlite database {path}: journal mode is {mode}, not wal"
            ))
            .into());
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        conn.set_prepared_statement_cache_capacity(64);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.commit()?;
        Ok(conn)
    }

    fn tick_after(opts: &SqliteOptions, now: Instant) -> Option<Instant> {
        if opts.compact_interval.is_zero() {
            None
        } else {
            now.checked_add(opts.compact_interval)
        }
    }

    /// Serves commands until every store handle is gone or one asks to close.
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        let closed = loop {
            let first = match self.next(&commands) {
                Next::Command(command) => command,
                Next::Tick => {
                    self.tick();
                    continue;
                }
                Next::Disconnected => break None,
            };
            let mut writes = Vec::new();
            let mut others = Vec::new();
            for command in std::iter::once(first)
                .chain(std::iter::from_fn(|| commands.try_recv().ok()).take(MAX_BATCH - 1))
            {
                match command {
                    Command::Write(write, reply) => writes.push((write, reply)),
                    other => others.push(other),
                }
            }
            self.commit(writes);
            let mut close = None;
            for command in others {
                match command {
                    Command::Compact(revision, reply) => {
                        let _ = reply.send(self.compact(revision));
                    }
                    Command::Close(reply) => close = Some(reply),
                    Command::Write(..) => {}
                }
            }
            if close.is_some() {
                break close;
            }
            self.auto_compact(false);
            if self.next_tick.is_some_and(|due| Instant::now() >= due) {
                self.tick();
            }
        };
        drop(self);
        if let Some(reply) = closed {
            let _ = reply.send(());
        }
    }

    fn next(&self, commands: &mpsc::Receiver<Command>) -> Next {
        let Some(due) = self.next_tick else {
            return commands.recv().map_or(Next::Disconnected, Next::Command);
        };
        match commands.recv_timeout(due.saturating_duration_since(Instant::now())) {
            Ok(command) => Next::Command(command),
            Err(mpsc::RecvTimeoutError::Timeout) => Next::Tick,
            Err(mpsc::RecvTimeoutError::Disconnected) => Next::Disconnected,
        }
    }

    /// The periodic work: time-based compaction and a passive WAL checkpoint.
    fn tick(&mut self) {
        self.next_tick = Self::tick_after(&self.opts, Instant::now());
        self.auto_compact(true);
        if let Err(err) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(path = %self.shared.path.display(), %err, "sqlite store: wal checkpoint failed");
        }
    }

    /// Applies `writes` in one transaction, then publishes and acknowledges them.
    fn commit(&mut self, writes: Vec<(Write, oneshot::Sender<Result<Event>>)>) {
        if writes.is_empty() {
            return;
        }
        match self.apply(writes.iter().map(|(write, _)| write)) {
            Ok(results) => {
                let events: Vec<Event> = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok().cloned())
                    .collect();
                self.shared.revision.store(self.revision, Ordering::SeqCst);
                if !events.is_empty() {
                    // No subscribers is fine: nobody is watching.
                    let _ = self.events.send(Arc::new(events));
                }
                for ((_, reply), result) in writes.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                let message = Fail::from(err).at(&self.shared.path).to_string();
                tracing::error!(%message, "sqlite store: write transaction failed");
                for (write, reply) in writes {
                    let _ = reply.send(Err(Error::Backend(format!(
                        "writing key {}: {message}",
                        write.key()
                    ))));
                }
            }
        }
    }

    /// Runs every write in one transaction. A write whose guard fails gets its error and
    /// changes nothing; a SQLite failure rolls the whole batch back.
    fn apply<'a>(
        &mut self,
        writes: impl Iterator<Item = &'a Write>,
    ) -> rusqlite::Result<Vec<Result<Event>>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut revision = self.revision;
        let results = writes
            .map(|write| apply_one(&tx, write, &mut revision))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if revision != self.revision {
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'revision'",
                [revision],
            )?;
        }
        tx.commit()?;
        self.revision = revision;
        Ok(results)
    }

    /// Compacts down to the last `retain_revisions` revisions when enough history piled up
    /// (or on the periodic tick, whenever there is any).
    fn auto_compact(&mut self, timed: bool) {
        let retain = self.opts.retain_revisions;
        if retain <= 0 {
            return;
        }
        let target = self.revision - retain;
        let surplus = target - self.compacted;
        if surplus > 0
            && (timed || surplus >= (retain / 10).max(1))
            && let Err(err) = self.compact(target)
        {
            tracing::warn!(path = %self.shared.path.display(), %err, "sqlite store: automatic compaction failed");
        }
    }

    /// Drops history before `target` (see the module documentation).
    fn compact(&mut self, target: Revision) -> Result<()> {
        if target > self.revision {
            return Err(Error::FutureRevision {
                requested: target,
                current: self.revision,
            });
        }
        if target <= self.compacted {
            return Ok(());
        }
        self.compact_rows(target)
            .map_err(|e| Fail::from(e).at(&self.shared.path))?;
        self.compacted = target;
        self.shared.compacted.store(target, Ordering::SeqCst);
        if let Err(err) = self.reclaim() {
            tracing::warn!(path = %self.shared.path.display(), %err, "sqlite store: reclaiming free pages failed");
        }
        Ok(())
    }

    fn compact_rows(&mut self, target: Revision) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let window = [self.compacted, target];
        // Rows replaced by a write in (compacted, target]: a newer version exists at target.
        tx.execute(
            "DELETE FROM history WHERE rev IN \
             (SELECT prev_rev FROM history WHERE rev > ?1 AND rev <= ?2 AND prev_rev > 0)",
            window,
        )?;
        // Tombstones in the window: the key does not exist at target.
        tx.execute(
            "DELETE FROM history WHERE rev > ?1 AND rev <= ?2 AND deleted = 1",
            window,
        )?;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
            [target],
        )?;
        tx.commit()
    }

    /// Returns free pages to the file system once there are many.
    fn reclaim(&self) -> rusqlite::Result<()> {
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
        if free > VACUUM_FREE_PAGES {
            self.conn.execute_batch("PRAGMA incremental_vacuum")?;
        }
        Ok(())
    }
}

/// Applies one write inside the writer's transaction, advancing `revision` if it changes
/// anything. The inner error is the write's own answer (exists, not found, conflict).
fn apply_one(
    tx: &Transaction<'_>,
    write: &Write,
    revision: &mut Revision,
) -> rusqlite::Result<Result<Event>> {
    let current = get_current(tx, write.key())?;
    let event = match write {
        Write::Create { key, value } => {
            if current.is_some() {
                return Ok(Err(Error::AlreadyExists(key.clone())));
            }
            let rev = *revision + 1;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: rev,
                mod_revision: rev,
            };
            tx.prepare_cached(
                "INSERT INTO current (key, value, create_rev, mod_rev) VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute((key.as_bytes(), &value[..], rev))?;
            Event::Put { kv, prev: None }
        }
        Write::Update {
            key,
            value,
            expected,
        } => {
            let prev = match guard(current.as_ref(), key, Some(*expected)) {
                Ok(prev) => prev,
                Err(err) => return Ok(Err(err)),
            };
            let rev = *revision + 1;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: rev,
            };
            tx.prepare_cached("UPDATE current SET value = ?2, mod_rev = ?3 WHERE key = ?1")?
                .execute((key.as_bytes(), &value[..], rev))?;
            Event::Put {
                kv,
                prev: Some(prev),
            }
        }
        Write::Delete { key, expected } => {
            let prev = match guard(current.as_ref(), key, *expected) {
                Ok(prev) => prev,
                Err(err) => return Ok(Err(err)),
            };
            let rev = *revision + 1;
            tx.prepare_cached("DELETE FROM current WHERE key = ?1")?
                .execute([key.as_bytes()])?;
            Event::Delete {
                revision: rev,
                prev,
            }
        }
    };
    record(tx, &event)?;
    *revision = event.revision();
    Ok(Ok(event))
}

/// Appends the history row of `event`.
fn record(tx: &Transaction<'_>, event: &Event) -> rusqlite::Result<()> {
    let (kv, value, prev_rev, deleted) = match event {
        Event::Put { kv, prev } => (
            kv,
            Some(&kv.value[..]),
            prev.as_ref().map_or(0, |p| p.mod_revision),
            false,
        ),
        Event::Delete { prev, .. } => (prev, None, prev.mod_revision, true),
    };
    tx.prepare_cached(
        "INSERT INTO history (rev, key, value, create_rev, prev_rev, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute((event.revision(), kv.key.as_bytes(), value, kv.create_revision, prev_rev, deleted))?;
    Ok(())
}
