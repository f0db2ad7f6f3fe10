//! Reading the log into a projection: a one-off [`replay`] up to the log's end (what
//! `helpline rebuild` runs), and [`LiveProjection`], replayed at start and then following
//! new events (what the query service serves from).
//!
//! Both read the ticket subjects with the event store's one log reader
//! ([`helpline_eventstore::follow`]); nothing is stored but the stream.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use helpline_eventstore::{
    Content, EventStore, Follower, LogEntry, LogReader, StoredEvent, Subjects,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::error::QueryError;
use crate::projection::{Change, Projection};

/// How far a replay has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Ticket events read, undecodable ones included.
    pub done: u64,
    /// Ticket events the log held when the replay began.
    pub total: u64,
}

/// What a finished replay read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Replayed {
    /// Ticket events read.
    pub events: u64,
    /// Events that could not be decoded and were left out.
    pub undecodable: u64,
    /// Stream sequence of the last event read.
    pub last_sequence: u64,
    pub elapsed: Duration,
}

impl Replayed {
    pub fn events_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events as f64 / secs
        } else {
            0.0
        }
    }
}

/// Reads every ticket event the log holds now, from its first, into `apply`; calls
/// `progress` now and then and once at the end. Events appended meanwhile are left out.
pub async fn replay(
    store: &EventStore,
    mut apply: impl FnMut(StoredEvent),
    mut progress: impl FnMut(Progress),
) -> Result<Replayed, QueryError> {
    let started = Instant::now();
    store.start_preloading_customer_keys();
    let end = store
        .log_last_sequence()
        .await
        .map_err(QueryError::unavailable)?;
    let mut reader = LogReader::open(store, Subjects::Tickets, 0)
        .await
        .map_err(QueryError::unavailable)?;
    let total = reader.pending();
    let (mut done, mut undecodable, mut last_sequence) = (0u64, 0u64, 0u64);
    let mut reported = Instant::now();
    progress(Progress { done, total });
    while done < total {
        let Some(read) = reader.next().await else {
            break;
        };
        let read = read.map_err(QueryError::unavailable)?;
        done += 1;
        last_sequence = read.sequence;
        let (sequence, pending) = (read.sequence, read.pending);
        match read.content {
            Content::Ticket(events) => events.into_iter().for_each(&mut apply),
            Content::Undecodable(reason) => {
                tracing::warn!(sequence, error = %reason, "replay skips an undecodable event");
                undecodable += 1;
            }
            Content::Other => {}
        }
        if reported.elapsed() >= Duration::from_millis(100) {
            reported = Instant::now();
            progress(Progress { done, total });
        }
        if pending == 0 || sequence >= end {
            break;
        }
    }
    progress(Progress {
        done,
        total: total.max(done),
    });
    Ok(Replayed {
        events: done,
        undecodable,
        last_sequence,
        elapsed: started.elapsed(),
    })
}

/// A fresh projection of every ticket event the log holds now.
pub async fn rebuild(
    store: &EventStore,
    progress: impl FnMut(Progress),
) -> Result<(Projection, Replayed), QueryError> {
    let mut projection = Projection::default();
    let replayed = replay(
        store,
        |event| {
            projection.fold_owned(event);
        },
        progress,
    )
    .await?;
    Ok((projection, replayed))
}

/// The live projection, shared by the task that follows the log
/// ([`LiveProjection::follow`]), the API that answers from it, and the watchers of its
/// changes.
#[derive(Clone, Debug)]
pub struct LiveProjection {
    state: Arc<RwLock<State>>,
    changes: broadcast::Sender<Arc<Change>>,
}

#[derive(Debug, Default)]
struct State {
    projection: Projection,
    replayed: bool,
}

/// Changes a slow watcher may fall behind by before it is told so.
const WATCH_BUFFER: usize = 4096;

impl Default for LiveProjection {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            changes: broadcast::channel(WATCH_BUFFER).0,
        }
    }
}

impl LiveProjection {
    /// Folds every ticket event of `store` into the projection, from the log's first,
    /// until `shutdown` fires. Lost connections are resumed after the last applied event.
    pub async fn follow(
        &self,
        store: &EventStore,
        shutdown: CancellationToken,
    ) -> Result<(), QueryError> {
        store
            .follow("query", Subjects::Tickets, self, &shutdown)
            .await;
        Ok(())
    }

    fn apply(&self, stored: &StoredEvent) {
        let change = self
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .projection
            .apply(stored);
        // No watcher is not an error: the change is simply not wanted.
        if let Some(change) = change
            && self.changes.receiver_count() > 0
        {
            let _ = self.changes.send(Arc::new(change));
        }
    }

    fn mark_replayed(&self) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !state.replayed {
            state.replayed = true;
            tracing::info!(
                applied = state.projection.last_sequence(),
                tickets = state.projection.ticket_count(),
                "query projection replayed the log"
            );
        }
    }

    /// Runs `read` on the projection as it is now.
    pub fn read_with<T>(&self, read: impl FnOnce(&Projection) -> T) -> T {
        read(
            &self
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .projection,
        )
    }

    /// A copy of the projection as it is now.
    pub fn snapshot(&self) -> Projection {
        self.read_with(Projection::clone)
    }

    /// Stream sequence of the last applied event.
    pub fn last_sequence(&self) -> u64 {
        self.read_with(Projection::last_sequence)
    }

    /// Whether every ticket event the log held at the first start has been applied.
    pub fn is_replayed(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .replayed
    }

    /// Every change applied from now on; a receiver that falls more than a few thousand
    /// changes behind is told it lagged.
    pub fn changes(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }
}

impl Follower for LiveProjection {
    fn position(&self) -> u64 {
        self.last_sequence()
    }

    fn apply(&self, entry: LogEntry) {
        if let Content::Ticket(events) = entry.content {
            for event in &events {
                LiveProjection::apply(self, event);
            }
        }
    }

    fn reached_end(&self) {
        self.mark_replayed();
    }
}
