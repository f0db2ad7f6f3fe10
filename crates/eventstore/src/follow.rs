//! Following the log into an in-memory view: the one reader behind every live view (the
//! query projection, the CSAT report, the assignment view) and behind a rebuild.
//!
//! A [`LogReader`] is an ordered consumer (ephemeral, unacknowledged, recreated by the
//! client on a gap) from after a given sequence; [`EventStore::follow`] keeps one running
//! for a [`Follower`], resuming after the last applied message whenever it fails.
//!
//! **Invariants.**
//! - A follower is handed each message once per reading, in stream order, from after its
//!   own [`Follower::position`]; after a resume it may be handed a message again, so
//!   followers skip what they applied (see [`crate::Applied`]).
//! - A message whose customer key cannot be read right now is never skipped: the reader
//!   stops there and the follower resumes from it.
//! - A reader that goes quiet while the log holds messages it was not given is taken for
//!   stalled and reopened: a client-side consumer can lose its server-side half across a
//!   server restart without telling anyone, and a view that silently stops is worse than
//!   one that reads again.

use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::stream::Stream;
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::EventStore;
use crate::customers::{Binding, DecodeError};
use crate::error::StoreError;
use crate::subscribe::StoredEvent;

/// How long a reader may be quiet before it checks whether it is stalled.
const QUIET_CHECK: Duration = Duration::from_secs(2);
/// Quiet checks in a row that find a message not given before the reader gives up.
const STALLED_AFTER_CHECKS: u32 = 2;
/// A message with at most this many after it is read live: its trace context is kept.
const LIVE_PENDING: u64 = 64;
/// Pause before a failed follower reads again.
const RESUME_AFTER: Duration = Duration::from_millis(500);

/// Which of the region's subjects a reader reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subjects {
    /// Every ticket's events.
    Tickets,
    /// Everything the event stream holds: tickets, agents and customers' own ledgers.
    Everything,
}

/// One message of the log, as a reader hands it on.
#[derive(Debug)]
pub struct LogEntry {
    pub subject: String,
    pub sequence: u64,
    /// Messages of the reader's subjects after this one, as the server counted when it
    /// delivered this one.
    pub pending: u64,
    pub payload: Bytes,
    pub content: Content,
}

/// What a message holds.
#[derive(Debug)]
pub enum Content {
    /// A ticket's message: its event, or the events of one command, opened.
    Ticket(Vec<StoredEvent>),
    /// Bytes on a ticket subject that are no event (the services' consumers dead-letter
    /// them; a view can only leave them out).
    Undecodable(String),
    /// A message on another subject (an agent's), as stored.
    Other,
}

/// An ordered consumer over some of the region's subjects, from after a sequence.
pub struct LogReader {
    store: EventStore,
    stream: Stream<()>,
    messages: Ordered,
    filter: String,
    ticket_prefix: String,
    /// Messages after the start when the reader opened.
    pending: u64,
    /// Sequence of the last message handed on (or the start).
    last: u64,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("filter", &self.filter)
            .field("pending", &self.pending)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl LogReader {
    /// A reader of `subjects` from the message after sequence `after` (0: the first).
    pub async fn open(
        store: &EventStore,
        subjects: Subjects,
        after: u64,
    ) -> Result<Self, StoreError> {
        let layout = store.layout();
        let stream = store
            .jetstream()
            .get_stream_no_info(layout.event_stream())
            .await
            .map_err(StoreError::unavailable)?;
        let filter = match subjects {
            Subjects::Tickets => layout.all_tickets(),
            Subjects::Everything => format!("helpline.{}.>", layout.region()),
        };
        let deliver_policy = match after {
            0 => DeliverPolicy::All,
            last => DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
        };
        // Everything is the whole stream: no filter, so that the server does not match
        // every subject it holds (one per ticket) against one to count what is pending,
        // which took it some 40 ms per count at 200 000 tickets.
        let filter_subject = match subjects {
            Subjects::Tickets => filter.clone(),
            Subjects::Everything => String::new(),
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(StoreError::unavailable)?;
        // As the server counted when it made the consumer: asking again would count again.
        let pending = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(StoreError::unavailable)?;
        Ok(Self {
            store: store.clone(),
            stream,
            messages,
            filter,
            ticket_prefix: format!("helpline.{}.ticket.", layout.region()),
            pending,
            last: after,
        })
    }

    /// Messages of the reader's subjects after its start, when it opened.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// The next message; `None` when the consumer ended, an error when the reader cannot
    /// go on (the connection, a customer key that cannot be read now, a stall): open a
    /// new one from the last message applied.
    pub async fn next(&mut self) -> Option<Result<LogEntry, StoreError>> {
        let mut stalled_checks = 0;
        let message = loop {
            // A message already received is taken without arming the quiet check's timer:
            // a replay finds one ready nearly every time, and a timer per message was a
            // visible share of it.
            let next = match self.messages.next().now_or_never() {
                Some(next) => Ok(next),
                None => tokio::time::timeout(QUIET_CHECK, self.messages.next()).await,
            };
            match next {
                Ok(Some(Ok(message))) => break message,
                Ok(Some(Err(e))) => return Some(Err(StoreError::unavailable(e))),
                Ok(None) => return None,
                Err(_quiet) => {
                    if missed_a_message(&self.stream, &self.filter, self.last).await {
                        stalled_checks += 1;
                        if stalled_checks >= STALLED_AFTER_CHECKS {
                            return Some(Err(StoreError::Unavailable(format!(
                                "log reader stalled after sequence {}: the log holds later messages it was not given",
                                self.last
                            ))));
                        }
                    } else {
                        stalled_checks = 0;
                    }
                }
            }
        };
        let info = match message.info() {
            Ok(info) => info,
            Err(e) => return Some(Err(StoreError::unavailable(e))),
        };
        let (sequence, pending, delivered) = (info.stream_sequence, info.pending, info.delivered);
        let subject = message.subject.as_str().to_owned();
        // A message read live carries its producer's trace on to the view (assignment's
        // offers join the customer message's trace); a replay reads no trace context,
        // which would cost every message of a rebuild a parse.
        let trace = match &message.headers {
            Some(headers) if pending <= LIVE_PENDING => helpline_telemetry::extract(headers),
            _ => opentelemetry::Context::default(),
        };
        let content = if subject.starts_with(&self.ticket_prefix) {
            match self
                .store
                .decode_received(&message.payload, Binding::Skip)
                .await
            {
                Ok(events) => Content::Ticket(
                    events
                        .into_iter()
                        .map(|(meta, event)| StoredEvent {
                            subject: subject.clone(),
                            sequence,
                            meta,
                            event,
                            delivered,
                            replayed: false,
                            trace: trace.clone(),
                            let_go: None,
                            hold: None,
                        })
                        .collect(),
                ),
                // Without the customer's key right now the message cannot be read whole:
                // the reader ends before it, so that it is read again.
                Err(DecodeError::Store(e)) => return Some(Err(e)),
                Err(DecodeError::Codec(e)) => Content::Undecodable(e.to_string()),
            }
        } else {
            Content::Other
        };
        self.last = sequence;
        Some(Ok(LogEntry {
            subject,
            sequence,
            pending,
            payload: message.payload.clone(),
            content,
        }))
    }
}

/// Whether the log holds a message of `filter` after sequence `last`, the last one a
/// reader handed on. A failed check says no: only a stall seen twice ends the reader.
async fn missed_a_message(stream: &Stream<()>, filter: &str, last: u64) -> bool {
    stream
        .direct_get_next_for_subject(filter, Some(last + 1))
        .await
        .is_ok()
}

/// A view kept live from the log by [`EventStore::follow`]. Its methods take `&self`: the
/// view guards its own state, which the API serving from it reads meanwhile.
pub trait Follower: Send + Sync {
    /// Stream sequence of the last message applied; 0 before the first.
    fn position(&self) -> u64;
    /// Folds in one message. It may be one applied before (after a resume).
    fn apply(&self, entry: LogEntry);
    /// The view has read everything the log held: at the first start, the end of its
    /// replay; later, each time it catches up again.
    fn reached_end(&self);
}

impl EventStore {
    /// Stream sequence of the log's last message, of any ticket, agent or customer: where
    /// a view that starts from now on starts, and what an answer's freshness is told
    /// against.
    pub async fn log_last_sequence(&self) -> Result<u64, StoreError> {
        let stream = self
            .jetstream()
            .get_stream(self.layout().event_stream())
            .await
            .map_err(StoreError::unavailable)?;
        Ok(stream.cached_info().state.last_sequence)
    }

    /// Keeps `follower` live from the log until `shutdown` fires: every message of
    /// `subjects` after its position, in order; a lost connection, an unreadable key or a
    /// stalled reader resumes after the last applied message. `name` names the view in
    /// log lines.
    pub async fn follow(
        &self,
        name: &str,
        subjects: Subjects,
        follower: &impl Follower,
        shutdown: &CancellationToken,
    ) {
        // A replay from the start opens every customer's events, so their keys are read
        // in one go beside it; a follower that starts later (a feed from now on) opens
        // few, each read when first needed.
        if follower.position() == 0 {
            self.start_preloading_customer_keys();
        }
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = self.read_into(name, subjects, follower) => outcome,
            };
            if let Err(e) = outcome {
                tracing::warn!(view = name, error = %e, applied = follower.position(), "view lost the log, resuming");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RESUME_AFTER) => {}
            }
        }
    }

    async fn read_into(
        &self,
        name: &str,
        subjects: Subjects,
        follower: &impl Follower,
    ) -> Result<(), StoreError> {
        let mut reader = LogReader::open(self, subjects, follower.position()).await?;
        if reader.pending() == 0 {
            follower.reached_end();
        }
        while let Some(entry) = reader.next().await {
            let entry = entry?;
            if let Content::Undecodable(reason) = &entry.content {
                tracing::warn!(view = name, sequence = entry.sequence, error = %reason, "view skips an undecodable event");
            }
            let pending = entry.pending;
            follower.apply(entry);
            if pending == 0 {
                follower.reached_end();
            }
        }
        Err(StoreError::Unavailable(
            "the log reader's consumer ended".to_owned(),
        ))
    }
}
