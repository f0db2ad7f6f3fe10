//! Reading the log into a projection: a one-off [`replay`] up to the log's end (what
//! `helpline rebuild` runs), and [`LiveProjection`], replayed at start and then following
//! new events (what the query service serves from).
//!
//! Both read with an ordered consumer (ephemeral, unacknowledged, recreated by the client
//! on a gap) over the ticket subjects; nothing is stored but the stream.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use futures::StreamExt;
use helpline_eventstore::{DecodeError, EventStore, StoredEvent};
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
    mut apply: impl FnMut(&StoredEvent),
    mut progress: impl FnMut(Progress),
) -> Result<Replayed, QueryError> {
    let started = Instant::now();
    store.preload_customer_keys().await;
    let end = stream_last_sequence(store).await?;
    let mut reader = LogReader::open(store, 0).await?;
    let total = reader.pending;
    let (mut done, mut undecodable, mut last_sequence) = (0u64, 0u64, 0u64);
    let mut reported = Instant::now();
    progress(Progress { done, total });
    while done < total {
        let Some(read) = reader.next().await else {
            break;
        };
        let read = read?;
        done += 1;
        last_sequence = read.sequence;
        if read.events.is_empty() {
            undecodable += 1;
        }
        for event in &read.events {
            apply(event);
        }
        if reported.elapsed() >= Duration::from_millis(100) {
            reported = Instant::now();
            progress(Progress { done, total });
        }
        if read.pending == 0 || read.sequence >= end {
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
            projection.apply(event);
        },
        progress,
    )
    .await?;
    Ok((projection, replayed))
}

/// Stream sequence of the log's last message, of any ticket or agent.
pub async fn stream_last_sequence(store: &EventStore) -> Result<u64, QueryError> {
    let stream = store
        .jetstream()
        .get_stream(store.layout().event_stream())
        .await
        .map_err(QueryError::unavailable)?;
    Ok(stream.cached_info().state.last_sequence)
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
        // The replay from the start opens every customer's events.
        store.preload_customer_keys().await;
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                outcome = self.read(store) => outcome,
            };
            if let Err(e) = outcome {
                tracing::warn!(error = %e, applied = self.last_sequence(), "query projection lost the log, resuming");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Reads from after the last applied event until the consumer fails.
    async fn read(&self, store: &EventStore) -> Result<(), QueryError> {
        let mut reader = LogReader::open(store, self.last_sequence()).await?;
        if reader.pending == 0 {
            self.mark_replayed();
        }
        while let Some(read) = reader.next().await {
            let read = read?;
            for event in &read.events {
                self.apply(event);
            }
            if read.pending == 0 {
                self.mark_replayed();
            }
        }
        Err(QueryError::Unavailable(
            "the ordered consumer ended".to_owned(),
        ))
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

/// One message read from the log.
struct Read {
    sequence: u64,
    /// Ticket events after this one, as the server counted when it delivered it.
    pending: u64,
    /// The message's events (a command's several share it); none when the bytes are no
    /// event: the services' consumers dead-letter it; a projection can only leave it out.
    events: Vec<StoredEvent>,
}

/// An ordered consumer over the ticket subjects, from after a sequence.
struct LogReader {
    messages: Ordered,
    /// Ticket events after the start when the reader opened.
    pending: u64,
    store: EventStore,
}

impl LogReader {
    async fn open(store: &EventStore, after: u64) -> Result<Self, QueryError> {
        let stream = store
            .jetstream()
            .get_stream_no_info(store.layout().event_stream())
            .await
            .map_err(QueryError::unavailable)?;
        let deliver_policy = match after {
            0 => DeliverPolicy::All,
            last => DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
        };
        let mut consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: store.layout().all_tickets(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(QueryError::unavailable)?;
        let pending = consumer
            .info()
            .await
            .map_err(QueryError::unavailable)?
            .num_pending;
        let messages = consumer.messages().await.map_err(QueryError::unavailable)?;
        Ok(Self {
            messages,
            pending,
            store: store.clone(),
        })
    }

    async fn next(&mut self) -> Option<Result<Read, QueryError>> {
        let message = match self.messages.next().await? {
            Ok(message) => message,
            Err(e) => return Some(Err(QueryError::unavailable(e))),
        };
        let info = match message.info() {
            Ok(info) => info,
            Err(e) => return Some(Err(QueryError::unavailable(e))),
        };
        let (sequence, pending, delivered) = (info.stream_sequence, info.pending, info.delivered);
        let events = match self.store.decode(&message.payload).await {
            // Without the customer's key right now, the event cannot be applied whole: the
            // reader ends here and the projection follows again from its last event.
            Err(DecodeError::Store(e)) => return Some(Err(QueryError::unavailable(e))),
            Ok(events) => events
                .into_iter()
                .map(|(meta, event)| StoredEvent {
                    subject: message.subject.to_string(),
                    sequence,
                    meta,
                    event,
                    delivered,
                    trace: Default::default(),
                })
                .collect(),
            Err(e) => {
                tracing::warn!(sequence, error = %e, "query projection skips an undecodable event");
                Vec::new()
            }
        };
        Some(Ok(Read {
            sequence,
            pending,
            events,
        }))
    }
}
