//! Turning a verified inbound message into ticket events, exactly once.
//!
//! 1. **Dedupe.** The provider message id is looked up in the `helpline-<region>-inbound`
//!    bucket (entries live 24 hours). Within the stream's two-minute duplicate window the
//!    append itself also dedupes: its command id is derived from channel and provider id.
//! 2. **One open ticket per (channel, customer).** The `helpline-<region>-contacts` bucket
//!    maps a contact to its open ticket. A first message claims the key with a KV
//!    *create*, so of two racing first messages exactly one makes the ticket and the other
//!    joins it. A mapping to a closed, abandoned or erased ticket is replaced (compare and
//!    set) by a new ticket.
//! 3. **Append.** The ticket is loaded and the domain decides; a new ticket's
//!    `TicketOpened` and the first `CustomerMessageReceived` are one append (one message),
//!    a known ticket's message is appended at the loaded version; a conflict reloads and
//!    decides again.
//! 4. The dedupe entry is written last: only an appended message counts as seen.
//!
//! Nothing but the log stands between a message and the webhook's `200`: an attachment is
//! appended as the provider's reference (sealed, like the text) and fetched afterwards by
//! the media consumer ([`crate::media`]).
//!
//! Keys are hashes of the contact and the provider id, so no personal data sits in a key.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv::{self, CreateErrorKind};
use bytes::Bytes;
use helpline_domain::{
    Channel, Command, Customer, DomainError, Event, Media, MessageBody, MessageId, Personal, Phase,
    Ticket, TicketId, decide, evolve,
};
use helpline_eventstore::{CommandMeta, EventStore, LoadedTicket, StoreError};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::inbound::{InboundContent, InboundMessage};

/// How long a provider message id is remembered for dedupe.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Tries at claiming a contact and appending before giving up with `Unavailable`.
const MAX_ATTEMPTS: usize = 16;
/// Namespace of the UUIDv5 ids derived from provider ids (command and message ids).
const NAMESPACE: Uuid = Uuid::from_u128(0x6865_6c70_6c69_6e65_2d69_6e67_7265_7373);

/// What became of one inbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Appended to the ticket.
    Appended { ticket: TicketId, version: u64 },
    /// Seen before (a redelivery): nothing appended.
    Duplicate,
    /// Refused by the ticket's rules; logged, answered 200 so the provider stops retrying.
    Refused,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key-value store: {0}")]
    Kv(String),
    #[error("gave up after {MAX_ATTEMPTS} attempts: the ticket kept changing")]
    Contended,
}

/// The buckets intake uses, opened once.
#[derive(Clone, Debug)]
pub struct Intake {
    store: EventStore,
    contacts: kv::Store,
    inbound: kv::Store,
    language: String,
    /// Contact key → the ticket this process last found or made for it. A cache: the
    /// ticket's load says whether it is still open (an over or erased one is replaced
    /// through the bucket, whoever replaced it first), so it saves the bucket read of
    /// every known customer's message.
    tickets: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, TicketId>>>,
}

/// Contacts one process remembers; beyond this it starts over.
const CONTACTS_REMEMBERED: usize = 100_000;

/// Where a contact's ticket came from.
enum Claimed {
    /// The bucket or this process's memory named an existing ticket.
    Known(TicketId),
    /// This message made the ticket: it has no events yet.
    New(TicketId),
}

impl Intake {
    /// Opens the contacts bucket and creates (or updates) the inbound dedupe bucket.
    pub async fn new(store: EventStore, language: String) -> Result<Self, IntakeError> {
        let js = store.jetstream();
        let layout = store.layout();
        let contacts = js
            .get_key_value(layout.contacts_bucket())
            .await
            .map_err(|e| IntakeError::Kv(e.to_string()))?;
        let inbound = js
            .create_or_update_key_value(kv::Config {
                bucket: format!("helpline-{}-inbound", layout.region()),
                description: "provider message ids seen in the last 24 hours".to_owned(),
                history: 1,
                max_age: DEDUPE_WINDOW,
                storage: async_nats::jetstream::stream::StorageType::File,
                num_replicas: store.config().replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| IntakeError::Kv(e.to_string()))?;
        Ok(Self {
            store,
            contacts,
            inbound,
            language,
            tickets: std::sync::Arc::default(),
        })
    }

    /// The dedupe bucket `helpline-<region>-inbound`, which receipts share.
    pub(crate) fn seen(&self) -> kv::Store {
        self.inbound.clone()
    }

    /// Appends one customer message to the customer's open ticket, opening one if needed.
    #[tracing::instrument(skip_all, fields(channel = channel.as_str()))]
    pub async fn take(
        &self,
        channel: Channel,
        message: InboundMessage,
    ) -> Result<Taken, IntakeError> {
        let seen_key = key(channel, &message.provider_message_id);
        if self
            .inbound
            .get(&seen_key)
            .await
            .map_err(|e| IntakeError::Kv(e.to_string()))?
            .is_some()
        {
            tracing::debug!("redelivered message ignored");
            return Ok(Taken::Duplicate);
        }
        let derived = format!("{}:{}", channel.as_str(), message.provider_message_id);
        let command_id = Uuid::new_v5(&NAMESPACE, derived.as_bytes());
        let message_id = MessageId(Uuid::new_v5(
            &NAMESPACE,
            format!("message:{derived}").as_bytes(),
        ));
        let meta = CommandMeta::new(command_id, SystemTime::now())
            .caused_by(message.provider_message_id.clone());
        // The customer's pseudonym, keyed by the region's master key: an unkeyed hash of a
        // phone number is reversed by trying every number.
        let customer = self.store.customer_id(channel, message.contact.expose());
        let contact_key = self.store.layout().contact_key(channel, &customer);
        let body = body_of(&message.content);

        for _ in 0..MAX_ATTEMPTS {
            let (ticket, loaded) = match self.claim_ticket(&contact_key).await? {
                // Nothing to read: the ticket was made for this message.
                Claimed::New(ticket) => (ticket, LoadedTicket::default()),
                Claimed::Known(ticket) => (ticket, self.store.load(ticket).await?),
            };
            if ticket_is_over(&loaded.ticket) {
                self.forget_contact(&contact_key);
                self.replace_ticket(&contact_key, ticket).await?;
                continue;
            }
            // A new customer's first message opens the ticket in the same append: one
            // message holding TicketOpened and CustomerMessageReceived, stored together
            // or not at all, under the message's command id (so a retried webhook
            // dedupes against it).
            let receive = Command::ReceiveCustomerMessage {
                message: message_id,
                provider_message_id: message.provider_message_id.clone(),
                body: body.clone(),
            };
            let decided = if loaded.ticket.phase == Phase::New {
                self.open(ticket, channel, &message).and_then(|opened| {
                    let state = opened.iter().fold(Ticket::default(), evolve);
                    let received = decide(&state, receive)?;
                    Ok(opened.into_iter().chain(received).collect())
                })
            } else {
                decide(&loaded.ticket, receive)
            };
            let events = match decided {
                Ok(events) => events,
                Err(refusal) => {
                    tracing::warn!(ticket = %ticket, reason = %refusal, "customer message refused");
                    return Ok(Taken::Refused);
                }
            };
            let meta = meta.clone().correlated_with(ticket.0.to_string());
            match self
                .store
                .append(ticket, loaded.version, &events, &meta)
                .await
            {
                Ok(appended) => {
                    self.inbound
                        .put(&seen_key, Bytes::from(ticket.0.to_string()))
                        .await
                        .map_err(|e| IntakeError::Kv(e.to_string()))?;
                    tracing::info!(ticket = %ticket, version = appended.version, duplicate = appended.duplicate, "customer message appended");
                    return Ok(Taken::Appended {
                        ticket,
                        version: appended.version,
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IntakeError::Contended)
    }

    fn open(
        &self,
        ticket: TicketId,
        channel: Channel,
        message: &InboundMessage,
    ) -> Result<Vec<Event>, DomainError> {
        decide(
            &Ticket::default(),
            Command::OpenTicket {
                ticket,
                customer: Customer {
                    channel,
                    contact: message.contact.clone(),
                    display_name: message.display_name.clone(),
                },
                language: self.language.clone(),
            },
        )
    }

    /// The contact's open ticket, or a new one claimed with a KV create.
    async fn claim_ticket(&self, contact_key: &str) -> Result<Claimed, IntakeError> {
        if let Some(ticket) = self.remembered(contact_key) {
            return Ok(Claimed::Known(ticket));
        }
        loop {
            let entry = self
                .contacts
                .entry(contact_key)
                .await
                .map_err(|e| IntakeError::Kv(e.to_string()))?;
            if let Some(entry) = entry
                && entry.operation == kv::Operation::Put
                && let Some(ticket) = parse_ticket(&entry.value)
            {
                self.remember(contact_key, ticket);
                return Ok(Claimed::Known(ticket));
            }
            let ticket = TicketId(Uuid::now_v7());
            match self
                .contacts
                .create(contact_key, Bytes::from(ticket.0.to_string()))
                .await
            {
                Ok(_) => {
                    self.remember(contact_key, ticket);
                    return Ok(Claimed::New(ticket));
                }
                // Another first message won the race: read its ticket.
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(IntakeError::Kv(e.to_string())),
            }
        }
    }

    fn remembered(&self, contact_key: &str) -> Option<TicketId> {
        self.tickets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(contact_key)
            .copied()
    }

    fn remember(&self, contact_key: &str, ticket: TicketId) {
        let mut tickets = self
            .tickets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tickets.len() >= CONTACTS_REMEMBERED {
            tickets.clear();
        }
        tickets.insert(contact_key.to_owned(), ticket);
    }

    fn forget_contact(&self, contact_key: &str) {
        self.tickets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(contact_key);
    }

    /// Points the contact at a new ticket instead of `old`, unless someone already did.
    async fn replace_ticket(&self, contact_key: &str, old: TicketId) -> Result<(), IntakeError> {
        let entry = self
            .contacts
            .entry(contact_key)
            .await
            .map_err(|e| IntakeError::Kv(e.to_string()))?;
        if let Some(entry) = entry
            && parse_ticket(&entry.value) == Some(old)
        {
            let fresh = TicketId(Uuid::now_v7());
            // Losing this compare-and-set means another message replaced it first.
            let _ = self
                .contacts
                .update(
                    contact_key,
                    Bytes::from(fresh.0.to_string()),
                    entry.revision,
                )
                .await;
        }
        Ok(())
    }
}

/// The message body for the event. An attachment is the provider's reference, to be
/// fetched by the media consumer after the append; its object is named then.
fn body_of(content: &InboundContent) -> MessageBody {
    match content {
        InboundContent::Text(text) => MessageBody::Text(text.clone()),
        InboundContent::Location(point) => MessageBody::Location(point.clone()),
        InboundContent::Media {
            kind,
            provider_media,
            mime_type,
            caption,
            ..
        } => MessageBody::Media(Media {
            kind: *kind,
            object: Personal::default(),
            mime_type: mime_type.clone().unwrap_or_default(),
            size_bytes: 0,
            caption: caption.clone(),
            provider_media: Personal::new(provider_media.clone()),
        }),
    }
}

/// A ticket that takes no more customer messages: the customer starts a new one.
fn ticket_is_over(ticket: &Ticket) -> bool {
    ticket.phase.is_terminal() || ticket.erased
}

fn parse_ticket(value: &[u8]) -> Option<TicketId> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| Uuid::parse_str(s).ok())
        .map(TicketId)
}

/// `<channel>.<sha256 hex>`: a valid KV key that carries no personal data.
pub(crate) fn key(channel: Channel, value: &str) -> String {
    format!(
        "{}.{}",
        channel.as_str(),
        hex::encode(Sha256::digest(value.as_bytes()))
    )
}
