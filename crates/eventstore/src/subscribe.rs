//! Durable consumers: a handler over a ticket stream, with retries and dead letters.
//!
//! Each service consumes with its own durable pull consumer. An event is acknowledged
//! only after the handler returned `Ok`. A transient failure is retried with exponential
//! backoff (a delayed nak); a permanent failure, a panic, an undecodable message, or an
//! event that has failed `max_deliver` times is published to the dead-letter subject with
//! the reason, and only then terminated — so nothing is lost and nothing blocks the
//! events behind it.
//!
//! The server-side consumer has no `max_deliver` of its own: if the dead-letter publish
//! itself fails, the event is redelivered until it succeeds, rather than silently parked.
//!
//! A dead letter is replayed by publishing it to the consumer's replay subject
//! ([`crate::Layout::replay_subject`], in the dead-letter stream), which every
//! subscription also reads through the durable consumer `<name>-replay`. The handler gets
//! the event with its original subject and sequence, so it is handled as if the log
//! delivered it again — and never appended twice to the ticket. A handled replay is
//! deleted; one that fails again becomes a new dead letter.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{AckKind, Message};
use futures::{FutureExt, StreamExt};
use helpline_domain::Event;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::DecodeError;
use crate::EventStore;
use crate::codec::EnvelopeMeta;
use crate::error::StoreError;

/// Longest delay between two tries of one event.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Headers of the original message that must not be replayed onto the dead letter.
const PUBLISH_CONTROL_HEADERS: [&str; 6] = [
    "Nats-Msg-Id",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Sequence",
    "Nats-Batch-Id",
    "Nats-Batch-Sequence",
    "Nats-Batch-Commit",
];

pub const DEAD_LETTER_REASON_HEADER: &str = "Helpline-Dead-Letter-Reason";
pub const DEAD_LETTER_CONSUMER_HEADER: &str = "Helpline-Dead-Letter-Consumer";
pub const ORIGINAL_SUBJECT_HEADER: &str = "Helpline-Original-Subject";
pub const ORIGINAL_SEQUENCE_HEADER: &str = "Helpline-Original-Sequence";
pub const DELIVERIES_HEADER: &str = "Helpline-Deliveries";
/// On a replay: the stream sequence of the dead letter it replays.
pub const REPLAY_OF_HEADER: &str = "Helpline-Replay-Of";

/// An event as a consumer receives it.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub subject: String,
    /// The event's stream sequence; per ticket, sequences only grow.
    pub sequence: u64,
    pub meta: EnvelopeMeta,
    pub event: Event,
    /// How often this event has been delivered to this consumer, this time included.
    pub delivered: i64,
    /// The producer's trace context, parent of the handler's span.
    pub trace: opentelemetry::Context,
}

/// Why a handler did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying: the network, a conflict, a provider's 5xx.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help: the event goes to the dead-letter subject now.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) | StoreError::Conflict { .. } => {
                HandlerError::Transient(error.to_string())
            }
            _ => HandlerError::Permanent(error.to_string()),
        }
    }
}

/// A running consumer. Stop it with [`Subscription::stop`]; dropping it also stops it.
#[derive(Debug)]
pub struct Subscription {
    name: String,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Subscription {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops taking new events, lets the one in hand finish, and waits.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::error!(consumer = %self.name, error = %e, "consumer task failed");
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

type BoxedHandler = Arc<
    dyn Fn(StoredEvent) -> futures::future::BoxFuture<'static, Result<(), HandlerError>>
        + Send
        + Sync,
>;

impl EventStore {
    /// Runs `handler` for every event on `filter` (e.g. [`crate::Layout::all_tickets`]),
    /// through the durable consumer `name`, which resumes where it left off.
    pub async fn subscribe<H, F>(
        &self,
        name: &str,
        filter: &str,
        handler: H,
    ) -> Result<Subscription, StoreError>
    where
        H: Fn(StoredEvent) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler: BoxedHandler = Arc::new(move |event| handler(event).boxed());
        let consumer = self.consumer(name, filter).await?;
        let replay_consumer = self.replay_consumer(name).await?;
        let cancel = CancellationToken::new();
        let worker = Worker {
            store: self.clone(),
            name: name.to_owned(),
            filter: filter.to_owned(),
            handler,
            replays: false,
        };
        let replays = Worker {
            replays: true,
            handler: worker.handler.clone(),
            ..worker.clone()
        };
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move {
                tokio::join!(
                    worker.run(consumer, cancel.clone()),
                    replays.run(replay_consumer, cancel)
                );
            }
        });
        Ok(Subscription {
            name: name.to_owned(),
            cancel,
            task: Some(task),
        })
    }

    async fn consumer(
        &self,
        name: &str,
        filter: &str,
    ) -> Result<consumer::Consumer<pull::Config>, StoreError> {
        let stream = self
            .js
            .get_stream_no_info(self.layout.event_stream())
            .await
            .map_err(StoreError::unavailable)?;
        stream
            .create_consumer(pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subject: filter.to_owned(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: self.config.ack_wait,
                max_deliver: -1,
                max_ack_pending: self.config.max_ack_pending,
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::setup(format!("consumer {name}"), e))
    }

    /// The durable consumer `<name>-replay` over the consumer's replay subject.
    async fn replay_consumer(
        &self,
        name: &str,
    ) -> Result<consumer::Consumer<pull::Config>, StoreError> {
        let stream = self
            .js
            .get_stream_no_info(self.layout.dead_letter_stream())
            .await
            .map_err(StoreError::unavailable)?;
        let durable = format!("{name}-replay");
        stream
            .create_consumer(pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: self.layout.replay_subject(name),
                ack_policy: AckPolicy::Explicit,
                // Handled replays are deleted, so "all" is only what still waits.
                deliver_policy: DeliverPolicy::All,
                ack_wait: self.config.ack_wait,
                max_deliver: -1,
                max_ack_pending: self.config.max_ack_pending,
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::setup(format!("consumer {durable}"), e))
    }
}

#[derive(Clone)]
struct Worker {
    store: EventStore,
    name: String,
    filter: String,
    handler: BoxedHandler,
    /// Reads the consumer's replay subject rather than the log.
    replays: bool,
}

impl Worker {
    async fn run(self, mut consumer: consumer::Consumer<pull::Config>, cancel: CancellationToken) {
        'consume: loop {
            let mut messages = match consumer.messages().await {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(consumer = %self.name, error = %e, "cannot pull, retrying");
                    if self.pause(&cancel).await {
                        break;
                    }
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => break 'consume,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => self.handle(message).await,
                    Some(Err(e)) => {
                        use async_nats::jetstream::consumer::pull::MessagesErrorKind;
                        tracing::warn!(consumer = %self.name, error = %e, "pull failed");
                        if e.kind() == MessagesErrorKind::ConsumerDeleted {
                            break;
                        }
                    }
                    None => break,
                }
            }
            // The pull stream ended (consumer deleted, connection lost): recreate and
            // resume from the consumer's acknowledged position.
            if self.pause(&cancel).await {
                break;
            }
            let recreated = if self.replays {
                self.store.replay_consumer(&self.name).await
            } else {
                self.store.consumer(&self.name, &self.filter).await
            };
            match recreated {
                Ok(recreated) => consumer = recreated,
                Err(e) => {
                    tracing::warn!(consumer = %self.name, error = %e, "cannot recreate consumer")
                }
            }
        }
        tracing::debug!(consumer = %self.name, "consumer stopped");
    }

    /// Waits a moment before trying again; true when asked to stop meanwhile.
    async fn pause(&self, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tokio::time::sleep(Duration::from_millis(500)) => false,
        }
    }

    async fn handle(&self, message: Message) {
        let (delivered_sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(e) => {
                // Not a JetStream delivery: nothing to acknowledge or redeliver.
                tracing::warn!(consumer = %self.name, error = %e, "message without delivery info");
                return;
            }
        };
        let (subject, sequence) = if self.replays {
            match replayed_position(&message) {
                Some(position) => position,
                None => {
                    tracing::warn!(consumer = %self.name, sequence = delivered_sequence, "replay without its original position, dropped");
                    if let Err(e) = message.ack_with(AckKind::Term).await {
                        tracing::debug!(error = %e, "term of a bad replay not confirmed");
                    }
                    self.finish_replay(delivered_sequence, true).await;
                    return;
                }
            }
        } else {
            (message.subject.to_string(), delivered_sequence)
        };
        let position = Position {
            subject,
            sequence,
            delivered,
            replay: self.replays.then_some(delivered_sequence),
        };
        let max_deliver = self.store.config.max_deliver;
        if delivered > max_deliver {
            let reason = format!("delivered {delivered} times without being handled");
            let parked = self.dead_letter(&message, &position, &reason).await;
            self.finish_replay(delivered_sequence, parked).await;
            return;
        }
        let (meta, event) = match self.store.decode(&message.payload).await {
            Ok(decoded) => decoded,
            Err(DecodeError::Codec(e)) => {
                let reason = format!("undecodable event: {e}");
                let parked = self.dead_letter(&message, &position, &reason).await;
                self.finish_replay(delivered_sequence, parked).await;
                return;
            }
            Err(DecodeError::Store(e)) => {
                let outcome = Err(HandlerError::Transient(format!("customer key: {e}")));
                let finished = self.settle(&message, &position, outcome).await;
                self.finish_replay(delivered_sequence, finished).await;
                return;
            }
        };
        let headers = message.headers.clone().unwrap_or_default();
        let trace = helpline_telemetry::extract(&headers);
        let span = tracing::info_span!(
            "handle event",
            consumer = %self.name,
            ticket = %meta.ticket,
            event = event.name(),
            sequence,
            delivered
        );
        helpline_telemetry::set_parent(&span, trace.clone());
        let stored = StoredEvent {
            subject: position.subject.clone(),
            sequence,
            meta,
            event,
            delivered,
            trace,
        };
        let outcome = AssertUnwindSafe((self.handler)(stored))
            .catch_unwind()
            .instrument(span.clone())
            .await
            .unwrap_or_else(|panic| {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(HandlerError::Permanent(format!("handler panicked: {what}")))
            });
        let finished = self
            .settle(&message, &position, outcome)
            .instrument(span)
            .await;
        self.finish_replay(delivered_sequence, finished).await;
    }

    /// A replay that is done with (acknowledged, or parked again) leaves the replay
    /// subject, so that only waiting replays stay there.
    async fn finish_replay(&self, replay_sequence: u64, finished: bool) {
        if !self.replays || !finished {
            return;
        }
        let deleted = async {
            self.store
                .js
                .get_stream_no_info(self.store.layout.dead_letter_stream())
                .await
                .map_err(StoreError::unavailable)?
                .delete_message(replay_sequence)
                .await
                .map_err(StoreError::unavailable)
        }
        .await;
        if let Err(e) = deleted {
            tracing::warn!(consumer = %self.name, replay_sequence, error = %e, "handled replay not deleted");
        }
    }

    /// Acknowledges, retries or dead-letters the message after its handler's outcome;
    /// true when it is done with (acknowledged or parked).
    async fn settle(
        &self,
        message: &Message,
        position: &Position,
        outcome: Result<(), HandlerError>,
    ) -> bool {
        let delivered = position.delivered;
        let result = match &outcome {
            Ok(()) => "handled",
            Err(HandlerError::Transient(_)) if delivered < self.store.config.max_deliver => {
                "retried"
            }
            Err(_) => "dead_lettered",
        };
        helpline_telemetry::metrics::increment(
            "helpline_events_total",
            "Events a consumer took, by outcome: handled, retried later, dead-lettered.",
            &[("consumer", self.name.as_str()), ("outcome", result)],
        );
        match outcome {
            Ok(()) => {
                if let Err(e) = message.double_ack().await {
                    // Redelivered later; handlers are idempotent on the event.
                    tracing::warn!(error = %e, "ack not confirmed");
                }
                true
            }
            Err(HandlerError::Transient(reason)) if delivered < self.store.config.max_deliver => {
                let delay = retry_delay(self.store.config.retry_backoff, delivered);
                tracing::info!(%reason, ?delay, "handler failed, retrying");
                if let Err(e) = message.ack_with(AckKind::Nak(Some(delay))).await {
                    tracing::warn!(error = %e, "nak failed; the ack wait will redeliver");
                }
                false
            }
            Err(error) => {
                let reason = format!("{error} (after {delivered} deliveries)");
                self.dead_letter(message, position, &reason).await
            }
        }
    }

    /// Parks the message on the dead-letter subject, then terminates its delivery; true
    /// when parked. If the dead letter cannot be written, the message is left to be
    /// redelivered.
    async fn dead_letter(&self, message: &Message, position: &Position, reason: &str) -> bool {
        let (sequence, delivered) = (position.sequence, position.delivered);
        let mut headers = HeaderMap::new();
        if let Some(original) = &message.headers {
            for (name, values) in original.iter() {
                if PUBLISH_CONTROL_HEADERS.contains(&name.as_ref()) {
                    continue;
                }
                for value in values {
                    headers.append(name.as_ref(), value.as_str());
                }
            }
        }
        // A replay that fails again is a new dead letter, not a duplicate of the first.
        let msg_id = match position.replay {
            None => format!("{}:{sequence}", self.name),
            Some(replay) => format!("{}:{sequence}:replay:{replay}", self.name),
        };
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        headers.insert(DEAD_LETTER_REASON_HEADER, reason);
        headers.insert(DEAD_LETTER_CONSUMER_HEADER, self.name.as_str());
        headers.insert(ORIGINAL_SUBJECT_HEADER, position.subject.as_str());
        headers.insert(ORIGINAL_SEQUENCE_HEADER, sequence.to_string().as_str());
        headers.insert(DELIVERIES_HEADER, delivered.to_string().as_str());
        let subject = self.store.layout.dead_letter_subject(&self.name);
        let published = async {
            self.store
                .js
                .publish_with_headers(subject.clone(), headers, message.payload.clone())
                .await?
                .await
        }
        .await;
        match published {
            Ok(_) => {
                tracing::error!(consumer = %self.name, sequence, %reason, dead_letter = %subject, "event dead-lettered");
                helpline_telemetry::metrics::increment(
                    "helpline_dead_letters_total",
                    "Events parked on a consumer's dead-letter subject.",
                    &[("consumer", self.name.as_str())],
                );
                if let Err(e) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %e, "term failed; the dead letter dedupes the redelivery");
                }
                true
            }
            Err(e) => {
                tracing::error!(consumer = %self.name, sequence, error = %e, "dead letter not written, event will be redelivered");
                let _ = message
                    .ack_with(AckKind::Nak(Some(self.store.config.retry_backoff)))
                    .await;
                false
            }
        }
    }
}

/// Where an event sits in the log, and how often this consumer was given it.
struct Position {
    subject: String,
    sequence: u64,
    delivered: i64,
    /// For a replay: its sequence in the dead-letter stream.
    replay: Option<u64>,
}

/// A replay's original subject and sequence, from the dead letter's headers.
fn replayed_position(message: &Message) -> Option<(String, u64)> {
    let headers = message.headers.as_ref()?;
    let subject = headers.get(ORIGINAL_SUBJECT_HEADER)?.as_str().to_owned();
    let sequence = headers
        .get(ORIGINAL_SEQUENCE_HEADER)?
        .as_str()
        .parse()
        .ok()?;
    Some((subject, sequence))
}

/// `base · 2^(delivered-1)`, at most [`MAX_RETRY_DELAY`].
fn retry_delay(base: Duration, delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    base.saturating_mul(1 << exponent).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        let base = Duration::from_millis(200);
        assert_eq!(retry_delay(base, 1), Duration::from_millis(200));
        assert_eq!(retry_delay(base, 2), Duration::from_millis(400));
        assert_eq!(retry_delay(base, 4), Duration::from_millis(1600));
        assert_eq!(retry_delay(base, 60), MAX_RETRY_DELAY);
    }
}
