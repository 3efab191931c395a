//! Behaviour only the SQLite backend has: persistence, crash safety, file layout and size.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use keelson_store::{Error, Event, KeyValue, ListOptions, SqliteOptions, SqliteStore, Store};

fn val(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

fn kv(key: &str, value: &str, create_revision: i64, mod_revision: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: val(value),
        create_revision,
        mod_revision,
    }
}

/// Size of the database file plus its WAL.
fn disk_size(db: &Path) -> u64 {
    let wal = db.with_file_name(format!("{}-wal", db.file_name().unwrap().to_string_lossy()));
    [db, wal.as_path()]
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_values_revision_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.create("/r/a", val("a1")).await.unwrap(); // 1
        store.create("/r/b", val("b1")).await.unwrap(); // 2
        store.update("/r/a", val("a2"), 1).await.unwrap(); // 3
        store.compact(3).await.unwrap();
        store.delete("/r/b", Some(2)).await.unwrap(); // 4
        store.create("/r/c", val("c1")).await.unwrap(); // 5
        store.close().await.unwrap();
        let err = store.create("/r/d", val("d")).await.unwrap_err();
        assert!(matches!(err, Error::Closed), "writes after close: {err:?}");
        let err = store.current_revision().await.unwrap_err();
        assert!(matches!(err, Error::Closed), "reads after close: {err:?}");
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), 5);
    assert_eq!(store.compacted_revision().await.unwrap(), 3);
    let now = store.list("/r/", ListOptions::default()).await.unwrap();
    assert_eq!(now.kvs, [kv("/r/a", "a2", 1, 3), kv("/r/c", "c1", 5, 5)]);
    let at3 = store
        .list(
            "/r/",
            ListOptions {
                revision: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at3.kvs, [kv("/r/a", "a2", 1, 3), kv("/r/b", "b1", 2, 2)]);
    let err = store
        .list(
            "/r/",
            ListOptions {
                revision: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Compacted {
                requested: 2,
                compacted: 3
            }
        ),
        "{err:?}"
    );

    let mut stream = store.watch("/r/", 3).await.unwrap();
    assert_eq!(
        stream.recv().await.unwrap().unwrap(),
        Event::Delete {
            revision: 4,
            prev: kv("/r/b", "b1", 2, 2)
        }
    );
    assert_eq!(
        stream.recv().await.unwrap().unwrap(),
        Event::Put {
            kv: kv("/r/c", "c1", 5, 5),
            prev: None
        }
    );
    assert_eq!(
        store.create("/r/d", val("d1")).await.unwrap(),
        kv("/r/d", "d1", 6, 6),
        "revisions continue"
    );
    assert_eq!(stream.recv().await.unwrap().unwrap().revision(), 6);

    // Closing ends open watches.
    store.close().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), stream.recv())
        .await
        .unwrap();
    assert!(
        matches!(end, Some(Err(Error::Closed))),
        "watch after close: {end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_uses_wal_and_incremental_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pragmas.db");
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    store.create("/k", val("v")).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let vacuum: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        (journal.as_str(), vacuum),
        ("wal", 2),
        "wal journal and incremental auto-vacuum"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_reports_unusable_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("x.db");
    let err = SqliteStore::open(&path, SqliteOptions::default())
        .err()
        .expect("opening fails");
    let message = err.to_string();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert!(
        message.contains("x.db"),
        "the error names the file: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_updates_keep_the_file_small() {
    const KEYS: usize = 10;
    const UPDATES: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.db");
    let opts = SqliteOptions::default();
    let retain = opts.retain_revisions;
    let store = Arc::new(SqliteStore::open(&path, opts).unwrap());
    let payload = "x".repeat(200);
    let started = Instant::now();
    let tasks: Vec<_> = (0..KEYS)
        .map(|k| {
            let store = store.clone();
            let payload = payload.clone();
            tokio::spawn(async move {
                let key = format!("/registry/things/k{k}");
                let mut rev = store
                    .create(&key, val(&payload))
                    .await
                    .unwrap()
                    .mod_revision;
                for n in 1..UPDATES / KEYS {
                    let value = Bytes::from(format!("{n:08}{payload}"));
                    rev = store.update(&key, value, rev).await.unwrap().mod_revision;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let current = store.current_revision().await.unwrap();
    assert_eq!(current, i64::try_from(UPDATES).unwrap());
    let compacted = store.compacted_revision().await.unwrap();
    assert!(
        compacted >= current - retain - retain / 5,
        "automatic compaction kept up: compacted {compacted}"
    );
    // The retained window is still readable.
    let old = store.list(
        "/registry/things/",
        ListOptions {
            revision: Some(current - retain),
            ..Default::default()
        },
    );
    assert_eq!(old.await.unwrap().kvs.len(), KEYS);

    let size = disk_size(&path);
    eprintln!("{UPDATES} writes in {elapsed:?}; database + wal = {size} bytes");
    assert!(size < 8 << 20, "database + wal is {size} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_runs_on_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        compact_interval: Duration::from_millis(200),
        retain_revisions: 100,
    };
    let store = SqliteStore::open(&dir.path().join("timed.db"), opts).unwrap();
    let mut rev = store.create("/t", val("0")).await.unwrap().mod_revision;
    // 105 revisions: 5 surplus, fewer than the 10 that trigger compaction by count.
    for n in 0..104 {
        rev = store
            .update("/t", val(&n.to_string()), rev)
            .await
            .unwrap()
            .mod_revision;
    }
    assert_eq!(
        store.compacted_revision().await.unwrap(),
        0,
        "not compacted by count"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.compacted_revision().await.unwrap() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        store.compacted_revision().await.unwrap(),
        rev - 100,
        "compacted by time, keeping 100 revisions"
    );
}

/// Environment variable naming the database the crash-test child writes to.
const CHILD_DB: &str = "KEELSON_STORE_CRASH_CHILD_DB";

/// Not a test on its own: the child process of [`kill_9_loses_no_acknowledged_write`]. It
/// creates keys forever, printing each acknowledged key, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_9_loses_no_acknowledged_write"]
async fn crash_child_writes_until_killed() {
    let Ok(path) = std::env::var(CHILD_DB) else {
        return;
    };
    let store = Arc::new(SqliteStore::open(Path::new(&path), SqliteOptions::default()).unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for t in 0..8 {
        let (store, tx) = (store.clone(), tx.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/crash/{t}/{i}");
                let kv = store.create(&key, val("payload")).await.unwrap();
                if tx.send(format!("{key} {}", kv.mod_revision)).is_err() {
                    return;
                }
            }
        });
    }
    while let Some(line) = rx.recv().await {
        println!("acked {line}");
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writes_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut acked = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("acked ") {
            let (key, rev) = rest.split_once(' ').unwrap();
            acked.push((key.to_string(), rev.parse::<i64>().unwrap()));
            if acked.len() == 3000 {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(
        acked.len(),
        3000,
        "the child acknowledged writes before it was killed"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let last = acked.iter().map(|(_, rev)| *rev).max().unwrap();
        assert!(store.current_revision().await.unwrap() >= last);
        for (key, rev) in &acked {
            let got = store.get(key).await.unwrap();
            assert_eq!(
                got.map(|kv| kv.mod_revision),
                Some(*rev),
                "acknowledged {key} survives kill -9"
            );
        }
    });
}
