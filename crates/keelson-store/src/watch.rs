//! Watch fan-out shared by both backends: history catch-up, then live events from a broadcast.
//!
//! Every backend publishes each committed batch of events, in revision order, on a
//! `tokio::sync::broadcast` channel. A watcher is one task that subscribes to that channel
//! *before* it reads history, sends the history after its start revision, then forwards live
//! events, skipping any revision it has already sent. The task writes into a bounded channel
//! and may wait on a slow client; writers never wait on it. If the task falls so far behind
//! that the broadcast channel overwrites events it has not seen (`Lagged`), it reads the gap
//! back from history, so no event is ever skipped; if that history has been compacted in the
//! meantime, the stream ends with [`Error::Compacted`] and the client relists.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};

use crate::{Error, Event, Result, Revision, WatchStream};

/// The events of one commit, in revision order, as published to watchers.
pub(crate) type Batch = Arc<Vec<Event>>;

/// How many undelivered events a watch stream buffers before its task waits for the client.
pub(crate) const STREAM_BUFFER: usize = 1024;

/// How many batches the live broadcast keeps for watchers that are behind.
pub(crate) const BROADCAST_CAPACITY: usize = 1024;

/// How many historical events one catch-up read returns at most.
const HISTORY_PAGE: usize = 1000;

/// Where a watcher reads the events it has not seen live.
#[async_trait]
pub(crate) trait History: Send + Sync + 'static {
    /// Events under `prefix` with a revision greater than `after`, ascending, at most `limit`.
    /// Fails with [`Error::Compacted`] when `after` is older than the compacted revision.
    async fn events_after(&self, prefix: &str, after: Revision, limit: usize)
    -> Result<Vec<Event>>;
}

/// Starts a watcher task for changes under `prefix` after revision `after`. `live` must be
/// subscribed before the task reads history (any time before this call returns is fine),
/// so that every event committed after that read reaches it live.
pub(crate) fn start(
    history: Arc<dyn History>,
    live: broadcast::Receiver<Batch>,
    prefix: &str,
    after: Revision,
) -> WatchStream {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let watcher = Watcher {
        history,
        prefix: prefix.to_string(),
        last: after,
        tx,
    };
    tokio::spawn(watcher.run(live));
    rx
}

/// Why a watcher stops forwarding.
enum Stop {
    /// The client dropped its receiver.
    Gone,
    /// The stream ends with this error.
    Fail(Error),
}

/// The state of one watch task.
struct Watcher {
    history: Arc<dyn History>,
    prefix: String,
    /// The highest revision known to be delivered (or not under the prefix).
    last: Revision,
    tx: mpsc::Sender<Result<Event>>,
}

impl Watcher {
    async fn run(mut self, mut live: broadcast::Receiver<Batch>) {
        if let Err(Stop::Fail(err)) = self.follow(&mut live).await {
            let _ = self.tx.send(Err(err)).await;
        }
    }

    async fn follow(&mut self, live: &mut broadcast::Receiver<Batch>) -> Result<(), Stop> {
        self.catch_up().await?;
        loop {
            let received = tokio::select! {
                _ = self.tx.closed() => return Err(Stop::Gone),
                received = live.recv() => received,
            };
            match received {
                Ok(batch) => self.forward(&batch).await?,
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await?,
                Err(broadcast::error::RecvError::Closed) => return Err(Stop::Fail(Error::Closed)),
            }
        }
    }

    /// Sends every event after `last` that history holds now.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let events = self
                .history
                .events_after(&self.prefix, self.last, HISTORY_PAGE)
                .await
                .map_err(Stop::Fail)?;
            let complete = events.len() < HISTORY_PAGE;
            for event in events {
                self.send(event).await?;
            }
            if complete {
                return Ok(());
            }
        }
    }

    /// Sends the events of a live batch that are new and under the prefix.
    async fn forward(&mut self, batch: &[Event]) -> Result<(), Stop> {
        for event in batch {
            if event.revision() > self.last && event.key().starts_with(&self.prefix) {
                self.send(event.clone()).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, event: Event) -> Result<(), Stop> {
        let revision = event.revision();
        self.tx.send(Ok(event)).await.map_err(|_| Stop::Gone)?;
        self.last = revision;
        Ok(())
    }
}
