//! Appending a command's events to a ticket.
//!
//! One event is one publish; several events are one JetStream atomic batch (stored all
//! together or not at all). Every append carries `Nats-Expected-Last-Subject-Sequence`
//! (optimistic concurrency per ticket) and `Nats-Msg-Id` derived from the command id
//! (dedupe within the stream's duplicate window).
//!
//! A retry after a lost acknowledgement is answered differently by R1 and R3 streams: R3
//! says `duplicate`, R1 says "wrong last sequence" because the sequence check runs first.
//! So on a wrong last sequence we read the ticket's events after the expected version and
//! look for our own command id before reporting a conflict.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use bytes::Bytes;
use helpline_domain::{Event, TicketId};
use serde::Deserialize;
use uuid::Uuid;

use crate::EventStore;
use crate::codec::{self, EnvelopeMeta, SCHEMA_VERSION, Sealer};
use crate::direct::{self, header_str};
use crate::error::StoreError;

/// Header naming the event's type, so consumers can filter without decoding.
pub const EVENT_TYPE_HEADER: &str = "Helpline-Event-Type";
/// Header naming the command that produced the event.
pub const COMMAND_ID_HEADER: &str = "Helpline-Command-Id";
/// Header on `TicketOpened` naming the customer's pseudonym, so that finding a customer's
/// tickets (erasure, export, retention) reads headers only.
pub const CUSTOMER_HEADER: &str = "Helpline-Customer";

const WRONG_LAST_SEQUENCE: u64 = 10071;
/// An atomic batch whose `Nats-Msg-Id`s were seen within the duplicate window: the server
/// answers a retried batch with this rather than with `duplicate: true`.
const BATCH_DUPLICATE_MESSAGE_ID: u64 = 10201;
/// The stream has too many atomic batches in flight (the server allows 50): try again.
const TOO_MANY_INFLIGHT_BATCHES: u64 = 10210;
/// "atomic publish batch is incomplete": the batch's messages reached two server lives
/// (a restart in between). Nothing was stored; the whole batch may be sent again, its
/// message ids dedupe what did arrive.
const BATCH_INCOMPLETE: u64 = 10176;
/// Tries of one batch refused for too many in-flight batches before `Unavailable`.
const BATCH_ATTEMPTS: u32 = 10;

/// The command an append belongs to: who asked, why, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandMeta {
    /// Retries of one command carry the same id; it dedupes the append.
    pub command_id: Uuid,
    /// The event or request that caused the command.
    pub causation_id: String,
    /// Shared by everything that follows from one customer message.
    pub correlation_id: String,
    pub occurred_at: SystemTime,
}

impl CommandMeta {
    /// A command with the given id, caused by nothing else, correlated with itself.
    pub fn new(command_id: Uuid, occurred_at: SystemTime) -> Self {
        Self {
            command_id,
            causation_id: command_id.to_string(),
            correlation_id: command_id.to_string(),
            occurred_at,
        }
    }

    pub fn caused_by(mut self, causation_id: impl Into<String>) -> Self {
        self.causation_id = causation_id.into();
        self
    }

    pub fn correlated_with(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = correlation_id.into();
        self
    }
}

/// A successful append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The ticket's version after the append: the sequence of its last event.
    pub version: u64,
    /// True when the events were already stored by an earlier try of the same command.
    pub duplicate: bool,
}

/// The server's answer to a publish, as JSON.
#[derive(Debug, Deserialize)]
struct PubAck {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

enum Outcome {
    Stored(Appended),
    /// An empty reply: the server took a message of an unfinished batch.
    Accepted,
    /// Wrong last sequence, or a batch already seen: the ticket moved past the expected
    /// version, by this command's earlier try or by another command.
    AlreadyMoved,
    /// Too many atomic batches in flight on the stream; nothing was stored.
    Busy,
}

impl EventStore {
    /// Appends `events`, produced by one command from the ticket at `expected_version`
    /// (0 for a new ticket), and returns the new version.
    ///
    /// `Err(Conflict)` means another command changed the ticket first: reload, decide
    /// again, append again. Calling again with the same command after any error is safe.
    #[tracing::instrument(skip_all, fields(ticket = %ticket, expected_version, command = %command.command_id, events = events.len()))]
    pub async fn append(
        &self,
        ticket: TicketId,
        expected_version: u64,
        events: &[Event],
        command: &CommandMeta,
    ) -> Result<Appended, StoreError> {
        if events.is_empty() {
            return Ok(Appended {
                version: expected_version,
                duplicate: false,
            });
        }
        let subject = self.layout.ticket_subject(ticket);
        let trace = helpline_telemetry::current_context();
        let sealer = self.sealer_for(ticket, events).await?;
        let sealer = sealer.as_ref().map(|(customer, key)| Sealer {
            customer,
            key: key.as_ref(),
        });
        let messages: Vec<(HeaderMap, Bytes)> = events
            .iter()
            .map(|event| {
                let meta = EnvelopeMeta {
                    event_id: Uuid::now_v7(),
                    ticket,
                    region: self.layout.region().to_owned(),
                    occurred_at: command.occurred_at,
                    command_id: command.command_id,
                    causation_id: command.causation_id.clone(),
                    correlation_id: command.correlation_id.clone(),
                    schema_version: SCHEMA_VERSION,
                    customer: None,
                };
                let payload = codec::encode(&meta, event, sealer)
                    .map_err(|e| StoreError::Rejected(format!("{}: {e}", event.name())))?;
                let mut headers = HeaderMap::new();
                headers.insert(EVENT_TYPE_HEADER, event.name());
                headers.insert(COMMAND_ID_HEADER, command.command_id.to_string().as_str());
                if let (Event::TicketOpened { .. }, Some(sealer)) = (event, sealer) {
                    headers.insert(CUSTOMER_HEADER, sealer.customer.as_str());
                }
                helpline_telemetry::inject(&trace, &mut headers);
                Ok((headers, Bytes::from(payload)))
            })
            .collect::<Result<_, StoreError>>()?;

        // The server would refuse such an event too, but inside an atomic batch its refusal
        // only shows as an incomplete batch, which is also what a server restart mid-batch
        // gives; refused here, it is plainly permanent.
        let limit = usize::try_from(self.config.max_message_size).unwrap_or(usize::MAX);
        if let Some((index, (_, payload))) = messages
            .iter()
            .enumerate()
            .find(|(_, (_, payload))| payload.len() > limit)
        {
            return Err(StoreError::Rejected(format!(
                "event {} of {} ({}) is {} bytes, over the stream's limit of {limit}",
                index + 1,
                messages.len(),
                events[index].name(),
                payload.len()
            )));
        }
        let outcome = if let [(headers, payload)] = messages.as_slice() {
            let mut headers = headers.clone();
            // The same id as a batch's first event: whether a command's retry is appended
            // alone or as a batch, its first message dedupes against the first try's.
            headers.insert("Nats-Msg-Id", format!("{}:1", command.command_id).as_str());
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                expected_version.to_string().as_str(),
            );
            self.request(&subject, headers, payload.clone()).await?
        } else {
            self.publish_batch_when_free(&subject, expected_version, command.command_id, messages)
                .await?
        };
        match outcome {
            Outcome::Stored(appended) => Ok(appended),
            Outcome::Accepted => Err(StoreError::Rejected(
                "the server took the append without acknowledging it".to_owned(),
            )),
            Outcome::Busy => Err(StoreError::unavailable(
                "too many atomic batches in flight on the stream",
            )),
            Outcome::AlreadyMoved => {
                self.settle_already_moved(&subject, expected_version, command.command_id)
                    .await
            }
        }
    }

    /// Publishes an atomic batch, within this process's share of the server's in-flight
    /// batches, and tries again with a jittered, growing pause while the server says it
    /// has too many (other processes share the stream's limit).
    async fn publish_batch_when_free(
        &self,
        subject: &str,
        expected_version: u64,
        command_id: Uuid,
        messages: Vec<(HeaderMap, Bytes)>,
    ) -> Result<Outcome, StoreError> {
        let _permit = self
            .batches
            .acquire()
            .await
            .map_err(|_| StoreError::unavailable("event store is shutting down"))?;
        let mut outcome = Outcome::Busy;
        for attempt in 0..BATCH_ATTEMPTS {
            outcome = self
                .publish_batch(subject, expected_version, command_id, messages.clone())
                .await?;
            if !matches!(outcome, Outcome::Busy) {
                break;
            }
            let base = Duration::from_millis(5u64 << attempt.min(6));
            let jitter = Duration::from_micros((Uuid::now_v7().as_u128() % 5_000) as u64);
            tracing::debug!(attempt, "too many atomic batches in flight, retrying");
            tokio::time::sleep(base + jitter).await;
        }
        Ok(outcome)
    }

    /// Publishes the messages as one atomic batch: the first with the expected sequence,
    /// the last with the commit marker. The server checks everything at the commit and
    /// stores all or nothing; an uncommitted batch is abandoned after 10 seconds.
    async fn publish_batch(
        &self,
        subject: &str,
        expected_version: u64,
        command_id: Uuid,
        messages: Vec<(HeaderMap, Bytes)>,
    ) -> Result<Outcome, StoreError> {
        // Every publish gets a batch id of its own: two tries of one command may run at
        // once (a webhook delivered twice in parallel), and a batch id shared between
        // publishers interleaves their messages into one broken batch. The message ids
        // stay those of the command, so dedupe still holds.
        let batch_id = Uuid::now_v7().simple().to_string();
        let count = messages.len();
        for (index, (mut headers, payload)) in messages.into_iter().enumerate() {
            let position = index + 1;
            headers.insert("Nats-Batch-Id", batch_id.as_str());
            headers.insert("Nats-Batch-Sequence", position.to_string().as_str());
            headers.insert("Nats-Msg-Id", format!("{command_id}:{position}").as_str());
            if position == 1 {
                headers.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    expected_version.to_string().as_str(),
                );
            }
            if position == count {
                headers.insert("Nats-Batch-Commit", "1");
                return self.request(subject, headers, payload).await;
            }
            if position == 1 {
                // Waiting for the first message's answer surfaces a refused batch (no
                // atomic publish on the stream, too many batches) before sending the rest.
                match self.request(subject, headers, payload).await? {
                    Outcome::AlreadyMoved => return Ok(Outcome::AlreadyMoved),
                    Outcome::Busy => return Ok(Outcome::Busy),
                    Outcome::Stored(_) | Outcome::Accepted => {}
                }
            } else {
                self.client
                    .publish_with_headers(subject.to_owned(), headers, payload)
                    .await
                    .map_err(StoreError::unavailable)?;
            }
        }
        // `count` is at least 2 here, so the loop returned at the commit.
        Err(StoreError::Rejected("empty batch".to_owned()))
    }

    /// Publishes one message as a request and reads the server's JSON answer.
    async fn request(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Outcome, StoreError> {
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(payload)
            .timeout(Some(self.config.request_timeout));
        let reply = self
            .client
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|e| StoreError::unavailable(format!("append to {subject}: {e}")))?;
        if reply.payload.is_empty() {
            return Ok(Outcome::Accepted);
        }
        let ack: PubAck = serde_json::from_slice(&reply.payload)
            .map_err(|e| StoreError::Rejected(format!("unreadable answer from the server: {e}")))?;
        match ack.error {
            Some(error)
                if error.err_code == WRONG_LAST_SEQUENCE
                    || error.err_code == BATCH_DUPLICATE_MESSAGE_ID =>
            {
                Ok(Outcome::AlreadyMoved)
            }
            Some(error) if error.err_code == TOO_MANY_INFLIGHT_BATCHES => Ok(Outcome::Busy),
            Some(error) if error.err_code == BATCH_INCOMPLETE => Err(StoreError::unavailable(
                format!("{} (error {})", error.description, error.err_code),
            )),
            Some(error) => Err(StoreError::Rejected(format!(
                "{} (error {})",
                error.description, error.err_code
            ))),
            None => Ok(Outcome::Stored(Appended {
                version: ack.seq,
                duplicate: ack.duplicate,
            })),
        }
    }

    /// After "wrong last sequence" or a duplicate batch: either our own earlier try already stored the events
    /// (success), or another command did (conflict).
    async fn settle_already_moved(
        &self,
        subject: &str,
        expected_version: u64,
        command_id: Uuid,
    ) -> Result<Appended, StoreError> {
        let ours = command_id.to_string();
        let tail = direct::messages_after(
            &self.client,
            self.layout.event_stream(),
            subject,
            expected_version,
            self.config.request_timeout,
        )
        .await?;
        if let Some(mine) = tail
            .iter()
            .rfind(|m| header_str(&m.headers, COMMAND_ID_HEADER) == Some(ours.as_str()))
        {
            tracing::debug!(
                version = mine.sequence,
                "append was already stored by an earlier try"
            );
            return Ok(Appended {
                version: mine.sequence,
                duplicate: true,
            });
        }
        let actual = match tail.last() {
            Some(last) => last.sequence,
            None => self.last_sequence(subject).await?,
        };
        tracing::debug!(actual, "append conflict");
        Err(StoreError::Conflict {
            expected: expected_version,
            actual,
        })
    }

    /// The sequence of the subject's last message, 0 when it has none.
    async fn last_sequence(&self, subject: &str) -> Result<u64, StoreError> {
        let stream = self
            .js
            .get_stream_no_info(self.layout.event_stream())
            .await
            .map_err(StoreError::unavailable)?;
        match stream.direct_get_last_for_subject(subject).await {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => {
                Ok(0)
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }
}
