//! Appending a command's events to a ticket.
//!
//! A command's events are one message, one publish: one `EventEnvelope`, holding the
//! further events of a command that produced several in `more_events`, so they are
//! stored all together or not at all. Every append carries `Nats-Expected-Last-Subject-Sequence`
//! (optimistic concurrency per ticket) and `Nats-Msg-Id` derived from the command id
//! (dedupe within the stream's duplicate window).
//!
//! A retry after a lost acknowledgement is answered differently by R1 and R3 streams: R3
//! says `duplicate`, R1 says "wrong last sequence" because the sequence check runs first.
//! So on a wrong last sequence we read the ticket's events after the expected version and
//! look for our own command id before reporting a conflict.

use std::time::SystemTime;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use helpline_domain::{Event, TicketId};
use serde::Deserialize;
use uuid::Uuid;

use crate::EventStore;
use crate::codec::{self, EnvelopeMeta, SCHEMA_VERSION, Sealer};
use crate::direct::header_str;
use crate::error::StoreError;

/// Header naming the event's type, so consumers can filter without decoding.
pub const EVENT_TYPE_HEADER: &str = "Helpline-Event-Type";
/// Header naming the command that produced the event, on messages written before
/// 7 December 2026; later ones name it once, in `Nats-Msg-Id` (see [`command_of`]).
pub const COMMAND_ID_HEADER: &str = "Helpline-Command-Id";
/// Header on `TicketOpened` naming the customer's pseudonym, so that finding a customer's
/// tickets (erasure, export, retention) reads headers only.
pub const CUSTOMER_HEADER: &str = "Helpline-Customer";

/// JetStream's dedupe header: `<command id>:<n>` on every message a command wrote (`:1` on
/// its first, the only one since commands are one message).
const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// The command that wrote a stored ticket message: its `Helpline-Command-Id` header where
/// it has one (messages written before that header was dropped), else the command id
/// before the last `:` of its `Nats-Msg-Id`.
pub(crate) fn command_of(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, COMMAND_ID_HEADER).or_else(|| {
        header_str(headers, MSG_ID_HEADER)
            .and_then(|id| id.rsplit_once(':'))
            .map(|(command, _)| command)
    })
}

/// "wrong last sequence: N": the subject has moved past the expected sequence (a lost
/// race, or our own earlier try that landed).
const WRONG_LAST_SEQUENCE: u64 = 10071;
/// The same, from a clustered stream's leader, which answers it without a sequence also
/// while another append to the subject is still being replicated (ours or not).
const WRONG_LAST_SEQUENCE_CLUSTERED: u64 = 10164;
/// A clustered stream holds a proposal with this message id that is not committed yet:
/// our own earlier try, still in flight. It may yet land, so this is no refusal.
const DUPLICATE_IN_PROCESS: u64 = 10158;
/// A clustered stream cannot check the expected sequence right now (a new leader
/// catching up).
const EXPECTED_SEQUENCE_NOT_READY: u64 = 10163;

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
    /// An empty reply, which JetStream never gives to a plain publish.
    Accepted,
    /// Wrong last sequence: the ticket moved past the expected version, by this
    /// command's earlier try or by another command.
    AlreadyMoved,
}

impl EventStore {
    /// Appends `events`, produced by one command from the ticket at `expected_version`
    /// (0 for a new ticket), and returns the new version.
    ///
    /// `Err(Conflict)` means another command changed the ticket first: reload, decide
    /// again, append again. Calling again with the same command after any error is safe.
    #[tracing::instrument(level = "debug", skip_all, fields(ticket = %ticket, expected_version, command = %command.command_id, events = events.len()))]
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
        let seal_with = self.sealer_for(ticket, expected_version, events).await?;
        let sealer = seal_with.as_ref().map(|with| Sealer {
            customer: &with.customer,
            key: with.key.as_ref(),
            key_ref: with.key_ref,
        });
        let metas: Vec<EnvelopeMeta> = events
            .iter()
            .map(|_| EnvelopeMeta {
                event_id: Uuid::now_v7(),
                ticket,
                region: self.layout.region().to_owned(),
                occurred_at: command.occurred_at,
                command_id: command.command_id,
                causation_id: command.causation_id.clone(),
                correlation_id: command.correlation_id.clone(),
                schema_version: SCHEMA_VERSION,
                customer: None,
            })
            .collect();
        // All the command's events in one message: one publish, stored together or not at
        // all, with no atomic batch (which the server commits one at a time per stream).
        let payload = codec::encode_command(&metas, events, sealer)
            .map_err(|e| StoreError::Rejected(format!("{}: {e}", event_names(events))))?;
        let limit = usize::try_from(self.config.max_message_size).unwrap_or(usize::MAX);
        if payload.len() > limit {
            return Err(StoreError::Rejected(format!(
                "{} ({} events) is {} bytes, over the stream's limit of {limit}",
                event_names(events),
                events.len(),
                payload.len()
            )));
        }
        let mut headers = HeaderMap::new();
        headers.insert(EVENT_TYPE_HEADER, event_names(events).as_str());
        if let Some(sealer) = sealer
            && events
                .iter()
                .any(|e| matches!(e, Event::TicketOpened { .. }))
        {
            headers.insert(CUSTOMER_HEADER, sealer.customer.as_str());
        }
        helpline_telemetry::inject(&trace, &mut headers);
        // `:1` as every earlier form of a command's first message had, so that a retry
        // dedupes against it whatever wrote the first try. It is also where a reader
        // finds the command ([`command_of`]): no header of its own, as every header costs
        // every reader of the message (async-nats parses each into a map, about 0.5 µs).
        headers.insert(MSG_ID_HEADER, format!("{}:1", command.command_id).as_str());
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            expected_version.to_string().as_str(),
        );
        match self
            .request(&subject, headers, Bytes::from(payload))
            .await?
        {
            Outcome::Stored(appended) => {
                // A claim stored now binds its key; a duplicate was stored by an earlier
                // try, maybe under another slot, which a reader learns from the event.
                if !appended.duplicate
                    && let Some(with) = &seal_with
                    && with.claim
                    && let Some(at) = with.key_ref
                {
                    self.bind_customer_key(&with.customer, at);
                }
                if !appended.duplicate {
                    let folded: Vec<&Event> = events.iter().collect();
                    self.hot.fold(
                        ticket,
                        expected_version,
                        appended.version,
                        sealer.map(|sealer| sealer.customer),
                        &folded,
                    );
                }
                Ok(appended)
            }
            Outcome::Accepted => Err(StoreError::Rejected(
                "the server took the append without acknowledging it".to_owned(),
            )),
            Outcome::AlreadyMoved => {
                self.settle_already_moved(&subject, expected_version, command.command_id)
                    .await
            }
        }
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
                if matches!(
                    error.err_code,
                    WRONG_LAST_SEQUENCE | WRONG_LAST_SEQUENCE_CLUSTERED
                ) =>
            {
                Ok(Outcome::AlreadyMoved)
            }
            Some(error)
                if matches!(
                    error.err_code,
                    DUPLICATE_IN_PROCESS | EXPECTED_SEQUENCE_NOT_READY
                ) =>
            {
                Err(StoreError::unavailable(format!(
                    "append to {subject}: {} (error {}); it may yet land, try again",
                    error.description, error.err_code
                )))
            }
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

    /// After "wrong last sequence": either our own earlier try already stored the events
    /// (success), or another command did (conflict).
    async fn settle_already_moved(
        &self,
        subject: &str,
        expected_version: u64,
        command_id: Uuid,
    ) -> Result<Appended, StoreError> {
        let ours = command_id.to_string();
        let tail = self
            .direct
            .messages_after(subject, expected_version, self.config.request_timeout)
            .await?;
        if let Some(mine) = tail
            .iter()
            .rfind(|m| command_of(&m.headers) == Some(ours.as_str()))
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
        if actual <= expected_version {
            // The server saw the subject move, but what moved it is not readable yet: an
            // append still being replicated (a clustered stream's leader says so before it
            // commits), or a replica behind the leader answered the read. Neither is a
            // decision to take again; the same append may go through in a moment.
            return Err(StoreError::unavailable(format!(
                "append to {subject}: another append is in process after version {expected_version}"
            )));
        }
        tracing::debug!(actual, "append conflict");
        Err(StoreError::Conflict {
            expected: expected_version,
            actual,
        })
    }

    /// The sequence of the subject's last message, 0 when it has none.
    async fn last_sequence(&self, subject: &str) -> Result<u64, StoreError> {
        Ok(self
            .last_on_subject(subject)
            .await?
            .map_or(0, |message| message.sequence))
    }

    /// Appends `payload` (an `event_type`) to a ledger subject (a customer's consent, a
    /// contact's links) only if the subject's last message is still `expected` (0: none):
    /// `true` when stored, `false` when someone changed the ledger since, so the caller
    /// reads it again and decides again (at most [`LEDGER_TRIES`] times).
    pub(crate) async fn append_to_ledger(
        &self,
        subject: &str,
        event_type: &str,
        payload: Vec<u8>,
        expected: u64,
    ) -> Result<bool, StoreError> {
        let publish = PublishMessage::build()
            .payload(payload.into())
            .header(EVENT_TYPE_HEADER, event_type)
            .expected_last_subject_sequence(expected);
        let ack = self
            .js
            .send_publish(subject.to_owned(), publish)
            .await
            .map_err(StoreError::unavailable)?
            .await;
        match ack {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(false),
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }

    /// The last message of an event-stream subject (one Direct Get); `None` when the
    /// subject has none: a ledger's latest state, or a ticket's version.
    pub(crate) async fn last_on_subject(
        &self,
        subject: &str,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, StoreError> {
        let stream = self
            .js
            .get_stream_no_info(self.layout.event_stream())
            .await
            .map_err(StoreError::unavailable)?;
        match stream.direct_get_last_for_subject(subject).await {
            Ok(message) => Ok(Some(message)),
            Err(e) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(StoreError::unavailable(e)),
        }
    }
}

/// Tries of a ledger change that meets other changes of the same ledger.
pub(crate) const LEDGER_TRIES: usize = 8;

/// The error of a ledger change that met another change at every one of its tries.
pub(crate) fn ledger_kept_changing(subject: &str) -> StoreError {
    StoreError::unavailable(format!(
        "{subject} kept changing; gave up after {LEDGER_TRIES} tries"
    ))
}

/// The events' names, comma-separated: the event type header of their message.
fn event_names(events: &[Event]) -> String {
    events.iter().map(Event::name).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use async_nats::HeaderMap;

    use super::{COMMAND_ID_HEADER, MSG_ID_HEADER, command_of};

    const COMMAND: &str = "de1673fa-678e-554d-8407-94bd2c5f9f5f";

    #[test]
    fn a_message_names_its_command_in_its_msg_id() {
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID_HEADER, format!("{COMMAND}:1").as_str());

        assert_eq!(command_of(&headers), Some(COMMAND));
    }

    #[test]
    fn an_older_message_of_an_atomic_batch_names_its_command_too() {
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID_HEADER, format!("{COMMAND}:3").as_str());

        assert_eq!(command_of(&headers), Some(COMMAND));
    }

    #[test]
    fn an_older_message_s_command_header_is_read_first() {
        let mut headers = HeaderMap::new();
        headers.insert(COMMAND_ID_HEADER, COMMAND);
        headers.insert(MSG_ID_HEADER, "written-by-something-else");

        assert_eq!(command_of(&headers), Some(COMMAND));
    }

    #[test]
    fn a_message_without_either_names_no_command() {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");

        assert_eq!(command_of(&headers), None);
    }
}
