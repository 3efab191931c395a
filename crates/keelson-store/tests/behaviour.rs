//! The store contract, checked against every backend: revisions, CAS, paging, past reads,
//! watches and compaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use keelson_store::{
    Error, Event, KeyValue, ListOptions, Revision, SharedStore, SqliteOptions, SqliteStore,
    WatchStream,
};
use tempfile::TempDir;

/// Runs each named scenario against a fresh store of each backend.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(keelson_store::MemoryStore::new())).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = super::sqlite();
                    super::$name(store).await;
                }
            )*
        }
    };
}

suite!(
    revisions_increment_per_write,
    create_fails_when_key_exists,
    update_and_delete_are_compare_and_swap,
    list_pages_in_key_order,
    list_at_past_revision,
    watch_delivers_history_then_live_events,
    watch_filters_by_prefix,
    compaction_expires_old_revisions,
    watch_survives_compactions_or_reports_them,
    slow_watcher_gets_every_event,
    slow_watcher_behind_compaction_gets_compacted,
    concurrent_writers_get_distinct_revisions,
);

/// A SQLite store in a fresh directory (kept alive by the returned guard).
fn sqlite() -> (TempDir, SharedStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("store.db"), SqliteOptions::default())
        .expect("open store");
    (dir, Arc::new(store))
}

fn val(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

fn kv(key: &str, value: &str, create_revision: Revision, mod_revision: Revision) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: val(value),
        create_revision,
        mod_revision,
    }
}

fn opts(
    start_after: Option<&str>,
    limit: Option<usize>,
    revision: Option<Revision>,
) -> ListOptions {
    ListOptions {
        start_after: start_after.map(str::to_string),
        limit,
        revision,
    }
}

/// The next watch item, failing the test if none arrives within 10 s.
async fn next(stream: &mut WatchStream) -> Result<Event, Error> {
    tokio::time::timeout(Duration::from_secs(10), stream.recv())
        .await
        .expect("watch event within 10 s")
        .expect("watch stream open")
}

async fn revisions_increment_per_write(store: SharedStore) {
    assert_eq!(store.current_revision().await.unwrap(), 0);
    let a = store.create("/a", val("1")).await.unwrap();
    assert_eq!(a, kv("/a", "1", 1, 1));
    let b = store.create("/b", val("1")).await.unwrap();
    assert_eq!(b, kv("/b", "1", 2, 2));
    let a2 = store.update("/a", val("2"), 1).await.unwrap();
    assert_eq!(
        a2,
        kv("/a", "2", 1, 3),
        "an update keeps the create revision"
    );
    let (deleted, rev) = store.delete("/b", None).await.unwrap();
    assert_eq!((deleted, rev), (kv("/b", "1", 2, 2), 4));
    assert_eq!(store.current_revision().await.unwrap(), 4);
    assert_eq!(store.get("/a").await.unwrap(), Some(kv("/a", "2", 1, 3)));
    assert_eq!(store.get("/b").await.unwrap(), None);
    // Recreating a deleted key starts a new life.
    assert_eq!(
        store.create("/b", val("x")).await.unwrap(),
        kv("/b", "x", 5, 5)
    );
}

async fn create_fails_when_key_exists(store: SharedStore) {
    store.create("/k", val("1")).await.unwrap();
    let err = store.create("/k", val("2")).await.unwrap_err();
    assert!(
        matches!(&err, Error::AlreadyExists(k) if k == "/k"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "key /k already exists");
    assert_eq!(
        store.current_revision().await.unwrap(),
        1,
        "a failed create takes no revision"
    );
    assert_eq!(store.get("/k").await.unwrap().unwrap().value, val("1"));
}

async fn update_and_delete_are_compare_and_swap(store: SharedStore) {
    store.create("/k", val("1")).await.unwrap();
    store.update("/k", val("2"), 1).await.unwrap();

    let err = store.update("/k", val("3"), 1).await.unwrap_err();
    match err {
        Error::Conflict {
            key,
            expected,
            current,
        } => {
            assert_eq!((key.as_str(), expected), ("/k", 1));
            assert_eq!(
                current.as_deref(),
                Some(&kv("/k", "2", 1, 2)),
                "conflict carries the current value"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let err = store.delete("/k", Some(1)).await.unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { expected: 1, current: Some(c), .. } if c.mod_revision == 2),
        "{err:?}"
    );
    assert_eq!(
        store.current_revision().await.unwrap(),
        2,
        "failed guards take no revision"
    );

    let err = store.update("/missing", val("x"), 1).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(k) if k == "/missing"),
        "{err:?}"
    );
    let err = store.delete("/missing", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(k) if k == "/missing"),
        "{err:?}"
    );

    let (deleted, rev) = store.delete("/k", Some(2)).await.unwrap();
    assert_eq!((deleted, rev), (kv("/k", "2", 1, 2), 3));
    let err = store.update("/k", val("4"), 2).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(_)),
        "update of a deleted key: {err:?}"
    );
}

async fn list_pages_in_key_order(store: SharedStore) {
    for key in ["/a/3", "/a/1", "/a/5", "/b/1", "/a", "/a/2", "/a/4", "/a0"] {
        store.create(key, val(key)).await.unwrap();
    }
    let keys = |kvs: &[KeyValue]| kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();

    let all = store.list("/a/", ListOptions::default()).await.unwrap();
    assert_eq!(keys(&all.kvs), ["/a/1", "/a/2", "/a/3", "/a/4", "/a/5"]);
    assert_eq!((all.revision, all.remaining), (8, 0));
    assert_eq!(all.kvs[0], kv("/a/1", "/a/1", 2, 2));

    async fn check(
        store: &SharedStore,
        start_after: Option<&str>,
        limit: Option<usize>,
        want: &[&str],
        remaining: usize,
    ) {
        let page = store
            .list("/a/", opts(start_after, limit, None))
            .await
            .unwrap();
        let keys: Vec<&str> = page.kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, want, "start_after {start_after:?} limit {limit:?}");
        assert_eq!(
            page.remaining, remaining,
            "remaining after {start_after:?} limit {limit:?}"
        );
        assert_eq!(page.revision, 8);
    }
    check(&store, None, Some(2), &["/a/1", "/a/2"], 3).await;
    check(&store, Some("/a/2"), Some(2), &["/a/3", "/a/4"], 1).await;
    check(&store, Some("/a/4"), Some(2), &["/a/5"], 0).await;
    check(&store, Some("/a/5"), Some(2), &[], 0).await;
    check(&store, Some("/a/2"), None, &["/a/3", "/a/4", "/a/5"], 0).await;
    check(&store, Some("/a/2"), Some(0), &["/a/3", "/a/4", "/a/5"], 0).await;
    check(
        &store,
        None,
        Some(5),
        &["/a/1", "/a/2", "/a/3", "/a/4", "/a/5"],
        0,
    )
    .await;
    check(&store, Some("/"), Some(1), &["/a/1"], 4).await;
    check(&store, Some("/a/25"), Some(1), &["/a/3"], 2).await;
    check(&store, Some("/b"), None, &[], 0).await;

    let everything = store.list("", ListOptions::default()).await.unwrap();
    assert_eq!(
        keys(&everything.kvs),
        ["/a", "/a/1", "/a/2", "/a/3", "/a/4", "/a/5", "/a0", "/b/1"]
    );
}

async fn list_at_past_revision(store: SharedStore) {
    store.create("/p/a", val("a1")).await.unwrap(); // 1
    store.create("/p/b", val("b1")).await.unwrap(); // 2
    store.update("/p/a", val("a2"), 1).await.unwrap(); // 3
    store.delete("/p/b", None).await.unwrap(); // 4
    store.create("/p/c", val("c1")).await.unwrap(); // 5
    store.create("/q/x", val("x1")).await.unwrap(); // 6
    store.create("/p/b", val("b2")).await.unwrap(); // 7

    let history: BTreeMap<Revision, Vec<KeyValue>> = BTreeMap::from([
        (0, vec![]),
        (1, vec![kv("/p/a", "a1", 1, 1)]),
        (2, vec![kv("/p/a", "a1", 1, 1), kv("/p/b", "b1", 2, 2)]),
        (3, vec![kv("/p/a", "a2", 1, 3), kv("/p/b", "b1", 2, 2)]),
        (4, vec![kv("/p/a", "a2", 1, 3)]),
        (5, vec![kv("/p/a", "a2", 1, 3), kv("/p/c", "c1", 5, 5)]),
        (6, vec![kv("/p/a", "a2", 1, 3), kv("/p/c", "c1", 5, 5)]),
        (
            7,
            vec![
                kv("/p/a", "a2", 1, 3),
                kv("/p/b", "b2", 7, 7),
                kv("/p/c", "c1", 5, 5),
            ],
        ),
    ]);
    for (rev, want) in &history {
        let got = store
            .list("/p/", opts(None, None, Some(*rev)))
            .await
            .unwrap();
        assert_eq!(&got.kvs, want, "state at revision {rev}");
        assert_eq!(got.revision, *rev);
        // Paging at a past revision: the first key, then the rest after it.
        let first = store
            .list("/p/", opts(None, Some(1), Some(*rev)))
            .await
            .unwrap();
        assert_eq!(
            first.kvs,
            want.iter().take(1).cloned().collect::<Vec<_>>(),
            "first page at {rev}"
        );
        assert_eq!(
            first.remaining,
            want.len().saturating_sub(1),
            "remaining at {rev}"
        );
        if let Some(head) = first.kvs.first() {
            let rest = store
                .list("/p/", opts(Some(&head.key), None, Some(*rev)))
                .await
                .unwrap();
            assert_eq!(rest.kvs, want[1..].to_vec(), "second page at {rev}");
        }
    }
    let err = store
        .list("/p/", opts(None, None, Some(8)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::FutureRevision {
                requested: 8,
                current: 7
            }
        ),
        "{err:?}"
    );
}

async fn watch_delivers_history_then_live_events(store: SharedStore) {
    store.create("/w/a", val("a1")).await.unwrap(); // 1
    store.create("/w/b", val("b1")).await.unwrap(); // 2
    store.update("/w/a", val("a2"), 1).await.unwrap(); // 3

    let mut stream = store.watch("/w/", 1).await.unwrap();
    assert_eq!(
        next(&mut stream).await.unwrap(),
        Event::Put {
            kv: kv("/w/b", "b1", 2, 2),
            prev: None
        }
    );
    assert_eq!(
        next(&mut stream).await.unwrap(),
        Event::Put {
            kv: kv("/w/a", "a2", 1, 3),
            prev: Some(kv("/w/a", "a1", 1, 1))
        }
    );

    store.delete("/w/b", None).await.unwrap(); // 4
    store.update("/w/a", val("a3"), 3).await.unwrap(); // 5
    store.create("/w/b", val("b2")).await.unwrap(); // 6
    let want = [
        Event::Delete {
            revision: 4,
            prev: kv("/w/b", "b1", 2, 2),
        },
        Event::Put {
            kv: kv("/w/a", "a3", 1, 5),
            prev: Some(kv("/w/a", "a2", 1, 3)),
        },
        Event::Put {
            kv: kv("/w/b", "b2", 6, 6),
            prev: None,
        },
    ];
    for want in want {
        assert_eq!(next(&mut stream).await.unwrap(), want);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(100), stream.recv())
            .await
            .is_err(),
        "no event beyond the writes"
    );

    // A watch from the current revision sees only what comes next.
    let mut fresh = store.watch("/w/", 6).await.unwrap();
    store.delete("/w/a", Some(5)).await.unwrap(); // 7
    assert_eq!(
        next(&mut fresh).await.unwrap(),
        Event::Delete {
            revision: 7,
            prev: kv("/w/a", "a3", 1, 5)
        }
    );
}

async fn watch_filters_by_prefix(store: SharedStore) {
    let mut stream = store.watch("/x/", 0).await.unwrap();
    store.create("/y/1", val("y")).await.unwrap();
    store.create("/x/1", val("x")).await.unwrap();
    store.create("/x", val("not under /x/")).await.unwrap();
    store.create("/x/2", val("x")).await.unwrap();
    let keys: Vec<(String, Revision)> = vec![
        next(&mut stream)
            .await
            .map(|e| (e.key().to_string(), e.revision()))
            .unwrap(),
        next(&mut stream)
            .await
            .map(|e| (e.key().to_string(), e.revision()))
            .unwrap(),
    ];
    assert_eq!(keys, [("/x/1".to_string(), 2), ("/x/2".to_string(), 4)]);
}

async fn compaction_expires_old_revisions(store: SharedStore) {
    store.create("/c/a", val("a1")).await.unwrap(); // 1
    store.create("/c/b", val("b1")).await.unwrap(); // 2
    store.update("/c/a", val("a2"), 1).await.unwrap(); // 3
    store.delete("/c/b", None).await.unwrap(); // 4
    store.create("/c/c", val("c1")).await.unwrap(); // 5
    store.update("/c/c", val("c2"), 5).await.unwrap(); // 6

    store.compact(5).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), 5);

    let err = store
        .list("/c/", opts(None, None, Some(4)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Compacted {
                requested: 4,
                compacted: 5
            }
        ),
        "{err:?}"
    );
    let err = store.watch("/c/", 4).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Compacted {
                requested: 4,
                compacted: 5
            }
        ),
        "{err:?}"
    );

    // The compaction revision itself is still readable, and so is every later one.
    let at5 = store.list("/c/", opts(None, None, Some(5))).await.unwrap();
    assert_eq!(at5.kvs, [kv("/c/a", "a2", 1, 3), kv("/c/c", "c1", 5, 5)]);
    let now = store.list("/c/", ListOptions::default()).await.unwrap();
    assert_eq!(now.kvs, [kv("/c/a", "a2", 1, 3), kv("/c/c", "c2", 5, 6)]);
    assert_eq!(
        store.get("/c/a").await.unwrap(),
        Some(kv("/c/a", "a2", 1, 3)),
        "current values survive"
    );

    // A watch from the compaction revision gets the later changes with their prev values,
    // even when the previous value is older than the compaction.
    let mut stream = store.watch("/c/", 5).await.unwrap();
    assert_eq!(
        next(&mut stream).await.unwrap(),
        Event::Put {
            kv: kv("/c/c", "c2", 5, 6),
            prev: Some(kv("/c/c", "c1", 5, 5))
        }
    );
    store.update("/c/a", val("a3"), 3).await.unwrap(); // 7
    assert_eq!(
        next(&mut stream).await.unwrap(),
        Event::Put {
            kv: kv("/c/a", "a3", 1, 7),
            prev: Some(kv("/c/a", "a2", 1, 3))
        }
    );

    // Compacting again to an older revision changes nothing; a future one is refused.
    store.compact(2).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), 5);
    let err = store.compact(8).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::FutureRevision {
                requested: 8,
                current: 7
            }
        ),
        "{err:?}"
    );

    // Compact everything: current state is still all there.
    store.compact(7).await.unwrap();
    let now = store.list("/c/", opts(None, None, Some(7))).await.unwrap();
    assert_eq!(now.kvs, [kv("/c/a", "a3", 1, 7), kv("/c/c", "c2", 5, 6)]);
}

/// Checks that `stream` delivers consecutive revisions from `after + 1` up to `last`,
/// or ends early with [`Error::Compacted`]. Returns how many events arrived.
async fn expect_consecutive(stream: &mut WatchStream, after: Revision, last: Revision) -> Revision {
    let mut expected = after + 1;
    while expected <= last {
        match next(stream).await {
            Ok(event) => {
                assert_eq!(
                    event.revision(),
                    expected,
                    "events arrive in order without gaps"
                );
                expected += 1;
            }
            Err(Error::Compacted { requested, .. }) => {
                assert!(
                    requested < expected,
                    "compacted at {requested} while expecting {expected}"
                );
                assert!(
                    stream.recv().await.is_none(),
                    "the stream ends after the error"
                );
                break;
            }
            Err(other) => panic!("unexpected watch error {other:?}"),
        }
    }
    expected - after - 1
}

/// The values under `prefix` now, and the revision they were read at.
async fn snapshot(store: &SharedStore, prefix: &str) -> (BTreeMap<String, Bytes>, Revision) {
    let list = store.list(prefix, ListOptions::default()).await.unwrap();
    (
        list.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect(),
        list.revision,
    )
}

/// Follows `prefix` like a watch cache: applies events, which must come in consecutive
/// revisions; on [`Error::Compacted`] relists and watches again. Returns the state at
/// `target` and how many times it had to relist.
async fn follow(
    store: &SharedStore,
    prefix: &str,
    target: Revision,
) -> (BTreeMap<String, Bytes>, usize) {
    let (mut state, mut at) = snapshot(store, prefix).await;
    let mut relists = 0;
    let mut stream = None;
    while at < target {
        let Some(live) = stream.as_mut() else {
            match store.watch(prefix, at).await {
                Ok(s) => stream = Some(s),
                Err(Error::Compacted { .. }) => {
                    relists += 1;
                    (state, at) = snapshot(store, prefix).await;
                }
                Err(other) => panic!("watch failed: {other:?}"),
            }
            continue;
        };
        match next(live).await {
            Ok(event) => {
                assert_eq!(
                    event.revision(),
                    at + 1,
                    "events arrive in order without gaps"
                );
                at += 1;
                match event {
                    Event::Put { kv, .. } => state.insert(kv.key, kv.value),
                    Event::Delete { prev, .. } => state.remove(&prev.key),
                };
            }
            Err(Error::Compacted { requested, .. }) => {
                assert_eq!(requested, at, "the watcher reports where it fell behind");
                assert!(
                    live.recv().await.is_none(),
                    "the stream ends after the error"
                );
                relists += 1;
                stream = None;
                (state, at) = snapshot(store, prefix).await;
            }
            Err(other) => panic!("unexpected watch error {other:?}"),
        }
    }
    (state, relists)
}

async fn watch_survives_compactions_or_reports_them(store: SharedStore) {
    const KEYS: usize = 20;
    const WRITES: i64 = 10_000;
    let mut revs = Vec::new();
    for i in 0..KEYS {
        revs.push(
            store
                .create(&format!("/s/{i:02}"), val("0"))
                .await
                .unwrap()
                .mod_revision,
        );
    }
    let start = store.current_revision().await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..WRITES {
                let i = usize::try_from(n).unwrap() % KEYS;
                let key = format!("/s/{i:02}");
                revs[i] = store
                    .update(&key, val(&n.to_string()), revs[i])
                    .await
                    .unwrap()
                    .mod_revision;
                if n % 500 == 499 {
                    let now = store.current_revision().await.unwrap();
                    store.compact(now - 200).await.unwrap();
                }
                if n % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let (followed, relists) = follow(&store, "/s/", start + WRITES).await;
    writer.await.unwrap();
    let (now, revision) = snapshot(&store, "/s/").await;
    assert_eq!(revision, start + WRITES);
    assert_eq!(
        followed, now,
        "the follower ends with the store's state ({relists} relists)"
    );
    assert_eq!(now.get("/s/19").map(|v| v.as_ref()), Some(&b"9999"[..]));
}

async fn slow_watcher_gets_every_event(store: SharedStore) {
    store.create("/slow/k", val("0")).await.unwrap();
    let mut stream = store.watch("/slow/", 1).await.unwrap();
    let mut rev = 1;
    // Far more events than the stream and broadcast buffers hold, none read meanwhile.
    for n in 0..5_000 {
        rev = store
            .update("/slow/k", val(&n.to_string()), rev)
            .await
            .unwrap()
            .mod_revision;
    }
    assert_eq!(
        expect_consecutive(&mut stream, 1, rev).await,
        rev - 1,
        "no compaction, so nothing is missed"
    );
    // And it is live afterwards.
    store.delete("/slow/k", None).await.unwrap();
    assert_eq!(next(&mut stream).await.unwrap().revision(), rev + 1);
}

async fn slow_watcher_behind_compaction_gets_compacted(store: SharedStore) {
    store.create("/lag/k", val("0")).await.unwrap();
    let mut stream = store.watch("/lag/", 1).await.unwrap();
    let mut rev = 1;
    for n in 0..5_000 {
        rev = store
            .update("/lag/k", val(&n.to_string()), rev)
            .await
            .unwrap()
            .mod_revision;
    }
    store.compact(rev).await.unwrap();
    let received = expect_consecutive(&mut stream, 1, rev).await;
    assert!(
        received < rev - 1,
        "a watcher {received} events in cannot have seen all {} events",
        rev - 1
    );
}

async fn concurrent_writers_get_distinct_revisions(store: SharedStore) {
    const TASKS: usize = 20;
    const PER_TASK: usize = 50;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..PER_TASK {
                    revs.push(
                        store
                            .create(&format!("/cw/{t}/{i}"), val("v"))
                            .await
                            .unwrap()
                            .mod_revision,
                    );
                }
                revs
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        let revs = task.await.unwrap();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "one task's writes get increasing revisions: {revs:?}"
        );
        all.extend(revs);
    }
    all.sort_unstable();
    let total = Revision::try_from(TASKS * PER_TASK).unwrap();
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "every write got its own revision, none skipped"
    );
    assert_eq!(store.current_revision().await.unwrap(), total);
    let listed = store.list("/cw/", ListOptions::default()).await.unwrap();
    assert_eq!(listed.kvs.len(), TASKS * PER_TASK);
}
