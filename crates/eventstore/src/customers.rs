//! The event store's side of personal data: whose key seals a ticket's events, opening
//! events read from the stream, and erasing a customer's key.

use std::sync::{Arc, MutexGuard};

use async_nats::jetstream::stream::DirectGetErrorKind;
use bytes::Bytes;
use helpline_domain::{Channel, Event, TicketId};

use crate::EventStore;
use crate::codec::{self, CodecError, EnvelopeMeta};
use crate::error::StoreError;
use crate::seal::{CustomerId, DataKey, KeyRef, ProviderRef};

/// Tickets whose customer one process remembers; beyond this it starts over.
pub(crate) const TICKETS_REMEMBERED: usize = 100_000;

/// Whether opening a customer's first event binds their key's slot to them in this process.
#[derive(Clone, Copy)]
pub(crate) enum Binding {
    /// A service that may seal for the customer next (the binding is what sealing looks up).
    Learn,
    /// A reader that only reads (a view, a rebuild): a rebuild of 200 000 customers spent a
    /// tenth of its time making bindings it never used.
    Skip,
}

/// Why stored bytes could not be read as an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not an event: a poison message.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The customer's key could not be fetched right now: try again.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EventStore {
    /// The customer's pseudonym in this region: what envelopes, KV keys and the privacy
    /// API name them by, never their contact.
    pub fn customer_id(&self, channel: Channel, contact: &str) -> CustomerId {
        self.keys.master().customer_id(channel, contact)
    }

    /// A provider's message id as this region's keyed pseudonym: what outbound and
    /// dedupe keys, causation ids and logs name it by, never the id itself.
    pub fn provider_ref(&self, channel: Channel, provider_message_id: &str) -> ProviderRef {
        self.keys
            .master()
            .provider_ref(channel, provider_message_id)
    }

    /// Reads one stored message, opening its personal fields with its customer's key; with
    /// the key erased, they read as erased. A message holds one event, or all the events
    /// of one command, in order.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Vec<(EnvelopeMeta, Event)>, DecodeError> {
        self.open_message(codec::parse(bytes)?, Binding::Learn)
            .await
    }

    /// As [`EventStore::decode`], from a received message's own buffer, which its sealed
    /// values are slices of until opened (two copies fewer per sealed field, for every
    /// event a consumer or a replay reads). `binding` says whether the customer's key slot
    /// is learnt on the way.
    pub(crate) async fn decode_received(
        &self,
        bytes: &Bytes,
        binding: Binding,
    ) -> Result<Vec<(EnvelopeMeta, Event)>, DecodeError> {
        self.open_message(codec::parse_shared(bytes.clone())?, binding)
            .await
    }

    async fn open_message(
        &self,
        parsed: codec::Parsed,
        binding: Binding,
    ) -> Result<Vec<(EnvelopeMeta, Event)>, DecodeError> {
        let key = match (parsed.customer(), parsed.key_ref(), binding) {
            (Some(customer), Some(at), Binding::Learn) => self.keys.get_at(customer, at).await?,
            (Some(_), Some(at), Binding::Skip) => self.keys.key_at(at).await?,
            (Some(customer), None, _) => self.keys.get(customer).await?,
            (None, _, _) => None,
        };
        Ok(parsed.open(key.as_deref())?)
    }

    /// Erases the customer's data keys from the key bucket (their own entry purged with
    /// its history, the slot of a key made ahead for them blanked): from then on every
    /// personal field sealed under them reads as erased, everywhere. True when there was
    /// a key; erasing twice is harmless.
    pub async fn erase_customer_key(&self, customer: &CustomerId) -> Result<bool, StoreError> {
        let had = self.keys.erase(customer).await?;
        tracing::info!(%customer, had_key = had, "customer key erased");
        Ok(had)
    }

    /// A data key to seal the customer's events under, made if they have none, and the
    /// slot to name with it ([`codec::Sealer::key_ref`]) when it was made ahead: for tools
    /// that write events without [`EventStore::append`] (the benchmark's bulk load).
    pub async fn customer_key(
        &self,
        customer: &CustomerId,
    ) -> Result<(Arc<DataKey>, Option<KeyRef>), StoreError> {
        self.keys.get_or_create(customer).await
    }

    /// A key made ahead for a new customer, and its slot: for tools that write a new
    /// customer's first event without [`EventStore::append`]. That event must be the first
    /// of the customer's first ticket ([`crate::chain::first_ticket`], expected sequence
    /// 0), sealed under the key and naming the slot; the slot is never handed out again.
    pub async fn claim_customer_key(&self) -> Result<(Arc<DataKey>, KeyRef), StoreError> {
        self.keys.claim().await
    }

    /// Starts reading every customer's key into this process's cache, on a task of its
    /// own, and returns at once: what a replay of the whole log (a projection's start, a
    /// rebuild) calls before it reads, so that it does not read one key per customer and
    /// does not wait for all keys before its first event. A key the replay needs before
    /// the preload brought it waits for the preload; a failed preload only costs the
    /// reads it would have saved.
    pub fn start_preloading_customer_keys(&self) {
        self.keys.start_preload();
    }

    /// Reads every customer's key into this process's cache at once, so that replaying
    /// the whole log does not read one per customer, and returns how many when done; see
    /// [`EventStore::start_preloading_customer_keys`], which does not wait.
    /// A failure only costs the reads it would have saved.
    pub async fn preload_customer_keys(&self) -> usize {
        match self.keys.preload().await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(error = %e, "customer keys not preloaded");
                0
            }
        }
    }

    /// When the ticket's customer last wrote (the latest `CustomerMessageReceived`'s
    /// time), for the 24-hour windows of WhatsApp and Messenger; `None` if never.
    pub async fn last_customer_message(
        &self,
        ticket: TicketId,
    ) -> Result<Option<std::time::SystemTime>, StoreError> {
        let events = self.ticket_events(ticket).await?;
        Ok(events
            .iter()
            .filter(|(_, _, event)| matches!(event, Event::CustomerMessageReceived { .. }))
            .map(|(_, meta, _)| meta.occurred_at)
            .max())
    }

    /// Every event of the ticket, in order, with its message's stream sequence, opened.
    pub async fn ticket_events(
        &self,
        ticket: TicketId,
    ) -> Result<Vec<(u64, EnvelopeMeta, Event)>, StoreError> {
        let subject = self.layout.ticket_subject(ticket);
        let messages = self
            .direct
            .messages_after(&subject, 0, self.config.request_timeout)
            .await?;
        let mut events = Vec::with_capacity(messages.len());
        for message in messages {
            for (meta, event) in self.decode_stored(&message).await? {
                events.push((message.sequence, meta, event));
            }
        }
        Ok(events)
    }

    /// A message read from a ticket's subject, opened; bytes that are no event are
    /// `Corrupt`, naming where they are.
    pub(crate) async fn decode_stored(
        &self,
        message: &crate::direct::RawMessage,
    ) -> Result<Vec<(EnvelopeMeta, Event)>, StoreError> {
        self.decode(&message.payload).await.map_err(|e| match e {
            DecodeError::Store(e) => e,
            DecodeError::Codec(e) => StoreError::Corrupt {
                subject: message.subject.clone(),
                sequence: message.sequence,
                reason: e.to_string(),
            },
        })
    }

    /// An attachment's bytes sealed under the customer's key (made if they have none),
    /// bound to the object's name: what the media bucket stores, as a protobuf `Sealed`.
    pub async fn seal_attachment(
        &self,
        customer: &CustomerId,
        object: &str,
        bytes: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.seal_kept(Kept::Attachment, customer, object, bytes)
            .await
    }

    /// An attachment's bytes, opened; `None` when the customer's key is gone (erased).
    pub async fn open_attachment(
        &self,
        customer: &CustomerId,
        object: &str,
        stored: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.open_kept(Kept::Attachment, customer, object, stored)
            .await
    }

    /// Personal bytes kept outside the event log (an attachment, a widget's copy of a
    /// message) sealed under the customer's key (made if they have none), bound to what
    /// they are and the name they are kept under: a protobuf `Sealed`. Erasing the
    /// customer's key erases them with the rest.
    pub async fn seal_kept(
        &self,
        kind: Kept,
        customer: &CustomerId,
        name: &str,
        bytes: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let (key, _) = self.keys.get_or_create(customer).await?;
        let place = kept_place(kind, name, customer);
        Ok(prost::Message::encode_to_vec(&key.seal(&place, bytes)))
    }

    /// Bytes [`EventStore::seal_kept`] sealed, opened; `None` when the customer's key is
    /// gone (erased).
    pub async fn open_kept(
        &self,
        kind: Kept,
        customer: &CustomerId,
        name: &str,
        stored: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let sealed: helpline_proto::v1::Sealed = prost::Message::decode(stored)
            .map_err(|e| StoreError::Key(format!("{name} is not sealed: {e}")))?;
        let Some(key) = self.keys.opening_key(customer, sealed.key_id).await? else {
            return Ok(None);
        };
        Ok(key.open(&kept_place(kind, name, customer), &sealed).ok())
    }

    /// Whether the customer has a data key (tests and retention).
    pub async fn customer_has_key(&self, customer: &CustomerId) -> Result<bool, StoreError> {
        Ok(self.keys.sealing_key(customer).await?.is_some())
    }

    /// The customer and key to seal `events` of `ticket` with, made if the customer has
    /// none yet; `None` when the events carry nothing personal. The first events of a
    /// customer's first ticket (`expected_version` 0) are its claim: they are sealed under
    /// a key made ahead, which they bind to the customer.
    pub(crate) async fn sealer_for(
        &self,
        ticket: TicketId,
        expected_version: u64,
        events: &[Event],
    ) -> Result<Option<SealWith>, StoreError> {
        if !events.iter().any(has_personal_value) {
            return Ok(None);
        }
        let opened = events.iter().find_map(|event| match event {
            Event::TicketOpened { customer, .. } => Some(customer),
            _ => None,
        });
        let customer = match opened {
            Some(customer) => self.customer_id(customer.channel, customer.contact.expose()),
            None => self.customer_of(ticket).await?,
        };
        self.remember_customer(ticket, &customer);
        let claim = opened.is_some()
            && expected_version == 0
            && ticket == crate::chain::first_ticket(&customer);
        let (key, key_ref) = if claim {
            let (key, at) = self.keys.claim().await?;
            (key, Some(at))
        } else {
            self.keys.get_or_create(&customer).await?
        };
        Ok(Some(SealWith {
            customer,
            key,
            key_ref,
            claim,
        }))
    }

    /// Remembers that a claim stored under `at` bound it to the customer.
    pub(crate) fn bind_customer_key(&self, customer: &CustomerId, at: KeyRef) {
        self.keys.bind(customer, at);
    }

    /// The customer of a ticket, from its first event (`TicketOpened`).
    async fn customer_of(&self, ticket: TicketId) -> Result<CustomerId, StoreError> {
        if let Some(customer) = self.customers().get(&ticket) {
            return Ok(customer.clone());
        }
        if let Some(customer) = self.hot.customer_of(ticket) {
            return Ok(customer);
        }
        let subject = self.layout.ticket_subject(ticket);
        let stream = self
            .js
            .get_stream_no_info(self.layout.event_stream())
            .await
            .map_err(StoreError::unavailable)?;
        let first = match stream.direct_get_next_for_subject(&subject, None).await {
            Ok(first) => first,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                return Err(StoreError::Rejected(format!(
                    "ticket {ticket} has no TicketOpened, so no customer to seal its personal data for"
                )));
            }
            Err(e) => return Err(StoreError::unavailable(e)),
        };
        let customer = codec::parse(&first.payload)
            .ok()
            .and_then(|parsed| parsed.customer().cloned())
            .ok_or_else(|| {
                StoreError::Rejected(format!(
                    "ticket {ticket}'s first event names no customer to seal its personal data for"
                ))
            })?;
        self.remember_customer(ticket, &customer);
        Ok(customer)
    }

    fn remember_customer(&self, ticket: TicketId, customer: &CustomerId) {
        let mut customers = self.customers();
        if customers.len() >= TICKETS_REMEMBERED {
            customers.clear();
        }
        customers.insert(ticket, customer.clone());
    }

    fn customers(&self) -> MutexGuard<'_, std::collections::HashMap<TicketId, CustomerId>> {
        self.customers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What seals one append's events: whose, under which key, and where that key is kept.
pub(crate) struct SealWith {
    pub customer: CustomerId,
    pub key: Arc<DataKey>,
    pub key_ref: Option<KeyRef>,
    /// Whether the append is the claim of the customer's first ticket, which binds a key
    /// made ahead to them once it is stored.
    pub claim: bool,
}

/// What personal bytes kept outside the event log are: part of what they are sealed to,
/// so one kind never opens as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// An attachment's bytes in the media bucket, named by its object.
    Attachment,
    /// A message as the web-chat widget shows it, named by its id.
    WidgetMessage,
    /// A file a customer attached in the widget, named by its upload.
    WidgetUpload,
    /// The contacts a contact is linked to, in its link ledger, named by the event id.
    ContactLinks,
}

pub(crate) fn kept_place<'a>(
    kind: Kept,
    name: &'a str,
    customer: &'a CustomerId,
) -> crate::seal::FieldPlace<'a> {
    crate::seal::FieldPlace {
        record: name,
        field: match kind {
            Kept::Attachment => "attachment",
            Kept::WidgetMessage => "widget message",
            Kept::WidgetUpload => "widget upload",
            Kept::ContactLinks => "linked contacts",
        },
        customer,
    }
}

/// Whether the event carries a personal value that must be sealed.
fn has_personal_value(event: &Event) -> bool {
    let mut found = false;
    event
        .clone()
        .personal_fields_mut(|_, value| found |= value.holds_known_value());
    found
}
