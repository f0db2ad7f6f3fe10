//! Turning a verified inbound message into ticket events, exactly once, in as few round
//! trips as the log allows: one append per message. A new customer's first is sealed
//! under a key the event store made ahead, and that append, the claim of their first
//! ticket, binds the key to them: no write of a key of its own.
//!
//! 1. **Derived tickets.** A customer's tickets form a chain of derived ids: the first
//!    from the customer's pseudonym, each next one from the one before. A message from a
//!    contact this process does not know is appended to the first ticket at expected
//!    version 0, opening it: of two racing first messages exactly one opens it (the
//!    append is the claim), and the other finds it there (a conflict) and joins it.
//! 2. **The way to the current ticket.** When a ticket is over (closed, abandoned or
//!    erased) the next one in the chain takes the message, and the
//!    `helpline-<region>-contacts` bucket is pointed at it, a shortcut so that a
//!    returning customer's ticket is found without walking the chain; a lost or stale
//!    pointer only costs reads. This process remembers each contact's current ticket.
//! 3. **Dedupe.** The append's command id is derived from channel and provider id (its
//!    keyed pseudonym, [`EventStore::provider_ref`]), so the stream's duplicate window
//!    drops a redelivery within it; a ticket also remembers the messages it received, so
//!    a later redelivery decides to nothing.
//! 4. **Append.** The domain decides on the ticket as this process last saw it (its hot
//!    state, no read) and the append's expected version checks it; a conflict reads the
//!    ticket and decides again. A new ticket's `TicketOpened` and the first
//!    `CustomerMessageReceived` are one message.
//!
//! Nothing but the log stands between a message and the webhook's `200`: an attachment is
//! appended as the provider's reference (sealed, like the text) and fetched afterwards by
//! the media consumer ([`crate::media`]).
//!
//! The contact is taken in its one stored form ([`helpline_domain::contact::normalize`]):
//! every spelling of a customer's number is one customer, the one erasure and export find;
//! an address the channel could not have sent is refused.
//!
//! Nothing personal sits in a key or an id: the contacts bucket's keys, the ticket ids and
//! the command, message and causation ids are derived from keyed pseudonyms of the
//! contact and of the provider's id (a WhatsApp `wamid` carries the customer's number),
//! which cannot be reversed or checked against a guess without the region's master key.
//! The provider's id itself is sealed in the event.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv;
use helpline_domain::{
    Channel, Command, Customer, DomainError, Event, Media, MessageBody, MessageId, Personal, Phase,
    Ticket, TicketId, contact, decide, evolve,
};
use helpline_eventstore::chain::{first_ticket, next_ticket, ticket_is_over};
use helpline_eventstore::{CommandMeta, EventStore, ExecuteError, LoadedTicket, StoreError, chain};
use uuid::Uuid;

use helpline_channels::inbound::{
    ConversationClosed, InboundContent, InboundMessage, ProviderConsent,
};
use helpline_domain::notify::ConsentSource;
use helpline_eventstore::consent::ConsentSignal;

/// How long a receipt's provider id is remembered for dedupe (customer messages dedupe on
/// their ticket instead).
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Tries at finding the contact's ticket and appending before giving up.
const MAX_ATTEMPTS: u32 = 16;
/// Namespace of the UUIDv5 ids derived from provider ids (command and message ids).
const NAMESPACE: Uuid = Uuid::from_u128(0x6865_6c70_6c69_6e65_2d69_6e67_7265_7373);

/// What became of one inbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    /// Appended to the ticket.
    Appended { ticket: TicketId, version: u64 },
    /// Seen before (a redelivery), or already so: nothing appended.
    Duplicate,
    /// Recorded outside any ticket (the customer's consent).
    Recorded,
    /// Refused by the ticket's rules, or from an address the channel could not have sent;
    /// logged, answered 200 so the provider stops retrying.
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
    /// The languages the region serves: a customer's own (`InboundMessage::language`)
    /// opens their ticket in it if it is one of these.
    languages: Vec<String>,
    /// Contact key → the ticket this process last found or made for it. A cache: the
    /// ticket's state says whether it is still open, and the append checks that state.
    tickets: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, TicketId>>>,
}

/// Contacts one process remembers; beyond this it starts over.
const CONTACTS_REMEMBERED: usize = 100_000;

/// How far intake trusts what it knows of the ticket it appends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Knowledge {
    /// Nothing read: the ticket is taken to be new (expected version 0).
    Guess,
    /// This process's hot state, if it has one; unread.
    Cached,
    /// Read from the log just now.
    Read,
}

impl Intake {
    /// Opens the contacts bucket and creates (or updates) the dedupe bucket delivery
    /// receipts use.
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
            languages: Vec::new(),
            // At its full size from the start: a map that grows rehashes every contact
            // under the lock, stalling every webhook of the process meanwhile.
            tickets: std::sync::Arc::new(std::sync::Mutex::new(
                std::collections::HashMap::with_capacity(CONTACTS_REMEMBERED),
            )),
        })
    }

    /// Opens new tickets in the customer's own language when the provider names one of
    /// `languages` (the region's).
    pub fn serving(mut self, languages: Vec<String>) -> Self {
        self.languages = languages;
        self
    }

    /// The dedupe bucket `helpline-<region>-inbound` of delivery receipts.
    pub(crate) fn seen(&self) -> kv::Store {
        self.inbound.clone()
    }

    /// Appends one customer message to the customer's open ticket, opening one if needed.
    #[tracing::instrument(skip_all, fields(channel = channel.as_str()))]
    pub async fn take(
        &self,
        channel: Channel,
        mut message: InboundMessage,
    ) -> Result<Taken, IntakeError> {
        // The contact in its one stored form, before anything is derived from it: a
        // provider writing the number with `+` would otherwise open a second ticket chain,
        // under a pseudonym no erasure by the usual spelling finds.
        match contact::normalize(channel, message.contact.expose()) {
            Ok(contact) => message.contact = Personal::new(contact),
            Err(refusal) => {
                tracing::warn!(%refusal, "customer message refused: no address of the channel's");
                return Ok(Taken::Refused);
            }
        }
        // A web chat's message ids are the site's own, unique within a session only:
        // another session's `msg_1` is another customer's message, not a redelivery.
        let scoped = match channel {
            Channel::WebChat => format!(
                "{}\u{1f}{}",
                message.contact.expose(),
                message.provider_message_id
            ),
            _ => message.provider_message_id.clone(),
        };
        let provider = self.store.provider_ref(channel, &scoped);
        let derived = format!("{}:{provider}", channel.as_str());
        let command_id = Uuid::new_v5(&NAMESPACE, derived.as_bytes());
        let message_id = MessageId(Uuid::new_v5(
            &NAMESPACE,
            format!("message:{derived}").as_bytes(),
        ));
        // Messages taken before the ids were keyed got theirs from the provider's id
        // itself; a provider redelivering one of them (for days, after a failed answer)
        // must still find it taken.
        let earlier_id = MessageId(Uuid::new_v5(
            &NAMESPACE,
            format!(
                "message:{}:{}",
                channel.as_str(),
                message.provider_message_id
            )
            .as_bytes(),
        ));
        let taken_before = |ticket: &Ticket| {
            ticket.received.contains(&message_id) || ticket.received.contains(&earlier_id)
        };
        let meta = CommandMeta::new(command_id, SystemTime::now()).caused_by(derived.clone());
        // The customer's pseudonym, keyed by the region's master key: an unkeyed hash of a
        // phone number is reversed by trying every number.
        let customer = self.store.customer_id(channel, message.contact.expose());
        let contact_key = self.store.layout().contact_key(channel, &customer);
        let body = body_of(&message.content);

        let (mut ticket, mut knowledge) = match self.remembered(&contact_key) {
            Some(ticket) => (ticket, Knowledge::Cached),
            None => (first_ticket(&customer), Knowledge::Guess),
        };
        // Whether the contact's pointer was read yet: once is enough.
        let mut pointer_read = false;
        for _ in 0..MAX_ATTEMPTS {
            let loaded = match knowledge {
                Knowledge::Guess => LoadedTicket::default(),
                Knowledge::Cached => match self.store.cached(ticket) {
                    Some(hot) => hot,
                    None => {
                        knowledge = Knowledge::Read;
                        self.store.load(ticket).await?
                    }
                },
                Knowledge::Read => self.store.load(ticket).await?,
            };
            // Over is final, so a cached state that says so is right.
            if ticket_is_over(&loaded.ticket) {
                if taken_before(&loaded.ticket) {
                    tracing::debug!(ticket = %ticket, "redelivered message ignored");
                    return Ok(Taken::Duplicate);
                }
                ticket = next_ticket(ticket);
                knowledge = Knowledge::Guess;
                self.point_contact(&contact_key, ticket).await?;
                continue;
            }
            // A new customer's first message opens the ticket in the same append: one
            // message holding TicketOpened and CustomerMessageReceived, stored together
            // or not at all, under the message's command id (so a retried webhook
            // dedupes against it).
            // A ticket's received messages only grow, so even a cached state that has
            // this one is right.
            if taken_before(&loaded.ticket) {
                tracing::debug!(ticket = %ticket, "redelivered message ignored");
                self.remember(&contact_key, ticket);
                return Ok(Taken::Duplicate);
            }
            let receive = Command::ReceiveCustomerMessage {
                message: message_id,
                provider_message_id: message.provider_message_id.clone().into(),
                body: body.clone(),
            };
            let decided = if loaded.ticket.phase == Phase::New {
                self.open(ticket, channel, &message).and_then(|mut opened| {
                    // How the customer came in goes with the opening, before the words.
                    if let Some(point) = &message.entry_point {
                        let state = opened.iter().fold(Ticket::default(), evolve);
                        opened.extend(decide(
                            &state,
                            Command::NoteEntryPoint {
                                intent: point.intent.clone(),
                                group: point.group.clone(),
                            },
                        )?);
                    }
                    let state = opened.iter().fold(Ticket::default(), evolve);
                    let received = decide(&state, receive)?;
                    Ok(opened.into_iter().chain(received).collect())
                })
            } else {
                decide(&loaded.ticket, receive)
            };
            let events: Vec<Event> = match decided {
                // A ticket's received messages only grow, so even a cached state that
                // has this one is right.
                Ok(events) if events.is_empty() => {
                    tracing::debug!(ticket = %ticket, "redelivered message ignored");
                    self.remember(&contact_key, ticket);
                    return Ok(Taken::Duplicate);
                }
                Ok(events) => events,
                Err(_) if knowledge == Knowledge::Cached => {
                    knowledge = Knowledge::Read;
                    continue;
                }
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
                    self.remember(&contact_key, ticket);
                    // One line per message is debug: the log holds every message, and
                    // info is kept for what an operator acts on.
                    tracing::debug!(ticket = %ticket, version = appended.version, duplicate = appended.duplicate, "customer message appended");
                    return Ok(Taken::Appended {
                        ticket,
                        version: appended.version,
                    });
                }
                Err(StoreError::Conflict { .. }) => {
                    // The guessed ticket exists: a known customer. Their pointer names
                    // their latest ticket, if they went past the first.
                    if knowledge == Knowledge::Guess && !pointer_read {
                        pointer_read = true;
                        if let Some(latest) = self.pointed_ticket(&contact_key).await? {
                            ticket = latest;
                        }
                    }
                    knowledge = Knowledge::Read;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(IntakeError::Contended)
    }

    /// Records on the customer's current ticket that they closed the conversation, so
    /// that nothing is sent to them until they write again. A customer without a ticket
    /// (or an erased one) has nothing to record it on: [`Taken::Refused`], answered 200.
    pub async fn close(
        &self,
        channel: Channel,
        closed: &ConversationClosed,
    ) -> Result<Taken, IntakeError> {
        let Ok(contact) = contact::normalize(channel, closed.contact.expose()) else {
            tracing::warn!("conversation closing refused: no address of the channel's");
            return Ok(Taken::Refused);
        };
        let customer = self.store.customer_id(channel, &contact);
        let contact_key = self.store.layout().contact_key(channel, &customer);
        let provider = self.store.provider_ref(channel, &closed.provider_event_id);
        let derived = format!("{}:close:{provider}", channel.as_str());
        let command_id = Uuid::new_v5(&NAMESPACE, derived.as_bytes());
        // The customer's latest ticket: the one this process knows, or their pointer, or
        // their first; then along the chain while a later one exists.
        let latest = self
            .store
            .latest_ticket(
                &self.contacts,
                &contact_key,
                &customer,
                self.remembered(&contact_key),
            )
            .await?;
        let Some((ticket, _)) = latest else {
            tracing::debug!("conversation closed by a customer without a ticket");
            return Ok(Taken::Refused);
        };
        let meta = CommandMeta::new(command_id, SystemTime::now())
            .caused_by(derived)
            .correlated_with(ticket.0.to_string());
        let closing = |_: &LoadedTicket| {
            Ok::<_, std::convert::Infallible>(vec![Command::RecordConversationClosed])
        };
        match self
            .store
            .execute(ticket, &meta, MAX_ATTEMPTS, closing)
            .await
        {
            Ok(executed) if executed.events == 0 => Ok(Taken::Duplicate),
            Ok(executed) => {
                tracing::info!(ticket = %ticket, "conversation closed by the customer");
                Ok(Taken::Appended {
                    ticket,
                    version: executed.appended.version,
                })
            }
            Err(ExecuteError::Domain(refusal)) => {
                tracing::info!(ticket = %ticket, reason = %refusal, "conversation closing not recorded");
                Ok(Taken::Refused)
            }
            Err(ExecuteError::Refused(never)) => match never {},
            Err(ExecuteError::Store(StoreError::Conflict { .. })) => Err(IntakeError::Contended),
            Err(ExecuteError::Store(e)) => Err(e.into()),
        }
    }

    /// Records a provider's report of the customer's wish about notifications (a block,
    /// an unsubscribe, a marketing stop) in the customer's consent. Again is nothing.
    pub async fn consent(
        &self,
        channel: Channel,
        consent: &ProviderConsent,
    ) -> Result<Taken, IntakeError> {
        let Ok(contact) = contact::normalize(channel, consent.contact.expose()) else {
            tracing::warn!("consent report refused: no address of the channel's");
            return Ok(Taken::Refused);
        };
        let customer = self.store.customer_id(channel, &contact);
        let provider = self.store.provider_ref(channel, &consent.provider_event_id);
        let signal = ConsentSignal {
            scope: consent.scope,
            granted: consent.granted,
            source: ConsentSource::Provider,
        };
        let (_, changed) = self
            .store
            .change_consent(
                channel,
                &customer,
                signal,
                &format!("{}:consent:{provider}", channel.as_str()),
            )
            .await?;
        Ok(if changed {
            Taken::Recorded
        } else {
            Taken::Duplicate
        })
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
                language: message
                    .language
                    .as_ref()
                    .filter(|language| self.languages.contains(language))
                    .unwrap_or(&self.language)
                    .clone(),
            },
        )
    }

    /// The ticket the contacts bucket names for the contact, if any.
    async fn pointed_ticket(&self, contact_key: &str) -> Result<Option<TicketId>, IntakeError> {
        Ok(chain::pointed_ticket(&self.contacts, contact_key).await?)
    }

    /// Points the contact at `ticket`, the next of their chain.
    async fn point_contact(&self, contact_key: &str, ticket: TicketId) -> Result<(), IntakeError> {
        self.forget_contact(contact_key);
        Ok(chain::point_contact(&self.contacts, contact_key, ticket).await?)
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
