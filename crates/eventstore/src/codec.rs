//! Conversion between domain events and the wire contract (`helpline.v1.EventEnvelope`).
//!
//! The domain knows nothing of protobuf; this module is the one place where the two meet.
//! Decoding is strict: a missing required field or an unknown enum value is an error that
//! names the field, so a poison event is dead-lettered with a reason instead of being
//! folded into a wrong state.

use std::collections::BTreeMap;
use std::time::SystemTime;

use helpline_domain::sla::{SlaClock, SlaLevel};
use helpline_domain::{
    AgentId, Channel, CloseReason, Customer, Details, Erased, Event, HandoffReason, Media,
    MediaKind, MessageBody, MessageId, NotificationKind, Personal, PersonalField, QueueId,
    QuickReply, ReleaseReason, RouteDestination, StoreId, StoreReferral, TicketId,
    WhatsAppTemplateCall,
};
use helpline_proto::v1 as pb;
use helpline_proto::v1::event_envelope::Event as EventProto;
use helpline_proto::v1::message_body::Content;
use helpline_proto::v1::ticket_routed::Destination;
use prost::Message;
use uuid::Uuid;

use crate::seal::{BlockId, CustomerId, DataKey, FieldPlace, KeyRef};

/// The current envelope schema version, written into every new envelope.
pub const SCHEMA_VERSION: u32 = 1;

/// The envelope's fields other than the event itself.
#[derive(Clone, Debug, PartialEq)]
pub struct EnvelopeMeta {
    /// UUIDv7, unique per event.
    pub event_id: Uuid,
    pub ticket: TicketId,
    pub region: String,
    pub occurred_at: SystemTime,
    pub command_id: Uuid,
    pub causation_id: String,
    pub correlation_id: String,
    pub schema_version: u32,
    /// The customer whose key sealed the event's personal fields; `None` when it has none.
    pub customer: Option<CustomerId>,
}

/// Why bytes could not be read as an event.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not a protobuf EventEnvelope: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("envelope field {field} is missing")]
    Missing { field: &'static str },
    #[error("envelope field {field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("personal field {field} has a value but no customer key to seal it")]
    Unsealed { field: &'static str },
}

/// The customer and key that seal an event's personal fields on [`encode`].
#[derive(Clone, Copy, Debug)]
pub struct Sealer<'a> {
    pub customer: &'a CustomerId,
    pub key: &'a DataKey,
    /// Where the key is kept when it was made ahead in a block; `None` for the
    /// customer's own entry in the key bucket.
    pub key_ref: Option<KeyRef>,
}

/// Encodes one event and its envelope as a protobuf `EventEnvelope`, its personal fields
/// sealed by `sealer` into `EventEnvelope.personal` and blanked in the event itself.
///
/// An event with a personal value and no sealer is refused: nothing personal is ever
/// written in plaintext. `TicketOpened.ticket` is not written separately: the envelope's
/// `ticket_id` carries it, so it is taken from `meta.ticket`.
pub fn encode(
    meta: &EnvelopeMeta,
    event: &Event,
    sealer: Option<Sealer<'_>>,
) -> Result<Vec<u8>, CodecError> {
    Ok(sealed_envelope(meta, event, sealer)?.encode_to_vec())
}

/// Encodes a command's events as one message: the first event's envelope, holding the
/// others in `more_events`, each sealed as [`encode`] seals one. One event gives exactly
/// what [`encode`] gives. `metas` and `events` pair up; an empty command is refused.
pub fn encode_command(
    metas: &[EnvelopeMeta],
    events: &[Event],
    sealer: Option<Sealer<'_>>,
) -> Result<Vec<u8>, CodecError> {
    let mut envelopes = metas
        .iter()
        .zip(events)
        .map(|(meta, event)| sealed_envelope(meta, event, sealer));
    let mut first = envelopes
        .next()
        .ok_or(CodecError::Missing { field: "event" })??;
    first.more_events = envelopes.collect::<Result<_, _>>()?;
    Ok(first.encode_to_vec())
}

fn sealed_envelope(
    meta: &EnvelopeMeta,
    event: &Event,
    sealer: Option<Sealer<'_>>,
) -> Result<pb::EventEnvelope, CodecError> {
    let mut blanked = event.clone();
    let mut personal = BTreeMap::new();
    let event_id = uuid_to_proto(meta.event_id);
    let mut unsealed = None;
    blanked.personal_fields_mut(|field, value| {
        let Some(plain) = take_plain(value) else {
            return;
        };
        match sealer {
            Some(sealer) => {
                let place = FieldPlace {
                    record: &event_id,
                    field,
                    customer: sealer.customer,
                };
                personal.insert(field.to_owned(), sealer.key.seal(&place, plain.as_bytes()));
            }
            None => unsealed = unsealed.or(Some(field)),
        }
    });
    if let Some(field) = unsealed {
        return Err(CodecError::Unsealed { field });
    }
    let (customer, key_ref) = match (sealer, personal.is_empty()) {
        (Some(sealer), false) => (Some(sealer.customer), sealer.key_ref),
        _ => (None, None),
    };
    let mut envelope = envelope(meta, customer, personal, &blanked);
    if let Some(at) = key_ref {
        envelope.key_block = at.block.to_string();
        envelope.key_slot = u32::from(at.slot);
    }
    Ok(envelope)
}

fn envelope(
    meta: &EnvelopeMeta,
    customer: Option<&CustomerId>,
    personal: BTreeMap<String, pb::Sealed>,
    event: &Event,
) -> pb::EventEnvelope {
    pb::EventEnvelope {
        event_id: uuid_to_proto(meta.event_id),
        ticket_id: uuid_to_proto(meta.ticket.0),
        region: meta.region.clone(),
        occurred_at: Some(prost_types::Timestamp::from(meta.occurred_at)),
        command_id: uuid_to_proto(meta.command_id),
        causation_id: meta.causation_id.clone(),
        correlation_id: meta.correlation_id.clone(),
        schema_version: meta.schema_version,
        customer_id: customer.map(ToString::to_string).unwrap_or_default(),
        personal,
        more_events: Vec::new(),
        key_block: String::new(),
        key_slot: 0,
        event: Some(event_to_proto(event)),
    }
}

/// The event as the gRPC APIs show it: a plain `EventEnvelope` with its personal fields
/// in place (opened by [`EventStore::decode`](crate::EventStore::decode)), erased ones
/// as `[erased]`. Never stored: only for answers to authorised callers.
pub fn to_api(meta: &EnvelopeMeta, event: &Event) -> pb::EventEnvelope {
    let mut shown = event.clone();
    shown.personal_fields_mut(|_, value| match value {
        PersonalField::Text(text) if text.is_erased() => {
            *text = Personal::new(Erased::SHOWN.to_owned())
        }
        PersonalField::OptionalText(Some(text)) if text.is_erased() => {
            *text = Personal::new(Erased::SHOWN.to_owned())
        }
        _ => {}
    });
    envelope(meta, meta.customer.as_ref(), BTreeMap::new(), &shown)
}

/// Decodes a stored message, one `EventEnvelope` holding one event or a command's
/// several, opening their personal fields with `key` (the key of [`Parsed::customer`]);
/// see [`parse`] and [`Parsed::open`].
pub fn decode(
    bytes: &[u8],
    key: Option<&DataKey>,
) -> Result<Vec<(EnvelopeMeta, Event)>, CodecError> {
    parse(bytes)?.open(key)
}

/// A stored message read from bytes whose personal fields are still sealed.
#[derive(Debug)]
pub struct Parsed {
    envelope: pb::EventEnvelope,
    customer: Option<CustomerId>,
    key_ref: Option<KeyRef>,
}

/// Reads the message; [`Parsed::customer`] then says whose key opens it.
pub fn parse(bytes: &[u8]) -> Result<Parsed, CodecError> {
    checked(pb::EventEnvelope::decode(bytes)?)
}

/// As [`parse`], from a received message's own buffer: its sealed values are read as
/// slices of that buffer instead of copies (two per sealed field, for every event a
/// replay reads).
pub fn parse_shared(bytes: bytes::Bytes) -> Result<Parsed, CodecError> {
    checked(pb::EventEnvelope::decode(bytes)?)
}

fn checked(envelope: pb::EventEnvelope) -> Result<Parsed, CodecError> {
    // Whose key opens the message: any of its events may be the one with personal fields.
    let mut customer = customer_of(&envelope)?;
    let mut key_ref = key_ref_of(&envelope)?;
    for nested in &envelope.more_events {
        if customer.is_some() {
            break;
        }
        customer = customer_of(nested)?;
        key_ref = key_ref_of(nested)?;
    }
    if let Some(nested) = envelope
        .more_events
        .iter()
        .find(|e| !e.more_events.is_empty())
    {
        return Err(CodecError::Invalid {
            field: "more_events",
            reason: format!("event {} holds further events itself", nested.event_id),
        });
    }
    Ok(Parsed {
        envelope,
        customer,
        key_ref,
    })
}

/// The block slot an envelope names for its key, if it names one.
fn key_ref_of(envelope: &pb::EventEnvelope) -> Result<Option<KeyRef>, CodecError> {
    if envelope.key_block.is_empty() {
        return Ok(None);
    }
    let invalid = |field, reason: &str| CodecError::Invalid {
        field,
        reason: reason.to_owned(),
    };
    let block = BlockId::parse(&envelope.key_block)
        .ok_or_else(|| invalid("key_block", "not a block id"))?;
    let slot =
        u16::try_from(envelope.key_slot).map_err(|_| invalid("key_slot", "beyond any block"))?;
    Ok(Some(KeyRef { block, slot }))
}

fn customer_of(envelope: &pb::EventEnvelope) -> Result<Option<CustomerId>, CodecError> {
    match envelope.customer_id.as_str() {
        "" if envelope.personal.is_empty() => Ok(None),
        text => Ok(Some(CustomerId::parse(text).ok_or_else(|| {
            CodecError::Invalid {
                field: "customer_id",
                reason: "not a customer pseudonym".to_owned(),
            }
        })?)),
    }
}

impl Parsed {
    /// The customer whose data key seals this message's personal fields (those of any of
    /// its events), if it has any.
    pub fn customer(&self) -> Option<&CustomerId> {
        self.customer.as_ref()
    }

    /// Where the key that opens the message is kept, when it was made ahead in a block;
    /// `None` when it is the customer's own entry.
    pub fn key_ref(&self) -> Option<KeyRef> {
        self.key_ref
    }

    /// How many events the message holds.
    pub fn events(&self) -> usize {
        1 + self.envelope.more_events.len()
    }

    /// The message's events, in order, with their personal fields opened by `key`.
    /// Without the key (erased), or with a key that does not open them (erased, then a
    /// new key made), each sealed field reads as [`Personal::erased`], so replay never
    /// fails because of an erasure.
    ///
    /// Free-text fields are taken as they are; ids, timestamps, enums and nested messages
    /// are checked, and the error names the first field that is missing or invalid.
    pub fn open(self, key: Option<&DataKey>) -> Result<Vec<(EnvelopeMeta, Event)>, CodecError> {
        let Parsed { mut envelope, .. } = self;
        let more = std::mem::take(&mut envelope.more_events);
        let mut events = Vec::with_capacity(1 + more.len());
        let customer = customer_of(&envelope)?;
        events.push(open_one(envelope, customer, key)?);
        for nested in more {
            let customer = customer_of(&nested)?;
            events.push(open_one(nested, customer, key)?);
        }
        Ok(events)
    }
}

fn open_one(
    mut envelope: pb::EventEnvelope,
    customer: Option<CustomerId>,
    key: Option<&DataKey>,
) -> Result<(EnvelopeMeta, Event), CodecError> {
    let ticket = TicketId(uuid_from_proto(&envelope.ticket_id, "ticket_id")?);
    let personal = std::mem::take(&mut envelope.personal);
    let event_id = uuid_from_proto(&envelope.event_id, "event_id")?;
    let meta = EnvelopeMeta {
        event_id,
        ticket,
        region: envelope.region,
        occurred_at: time_from_proto(envelope.occurred_at)?,
        command_id: uuid_from_proto(&envelope.command_id, "command_id")?,
        causation_id: envelope.causation_id,
        correlation_id: envelope.correlation_id,
        schema_version: envelope.schema_version,
        customer,
    };
    let event = required(envelope.event, "event")?;
    let mut event = event_from_proto(ticket, event)?;
    if let Some(customer) = &meta.customer {
        let record = envelope.event_id;
        let mut malformed = None;
        event.personal_fields_mut(|field, value| {
            let Some(sealed) = personal.get(field) else {
                return;
            };
            let place = FieldPlace {
                record: &record,
                field,
                customer,
            };
            let plain = key.and_then(|key| key.open(&place, sealed).ok());
            if let Err(reason) = put_plain(value, plain) {
                malformed = malformed.or(Some((field, reason)));
            }
        });
        if let Some((field, reason)) = malformed {
            return Err(CodecError::Invalid {
                field,
                reason: reason.to_owned(),
            });
        }
    }
    Ok((meta, event))
}

/// Takes a personal value out for sealing, leaving it blank; `None` when there is nothing
/// personal in it (an empty text, an absent option).
fn take_plain(value: PersonalField<'_>) -> Option<String> {
    match value {
        PersonalField::Text(text) if text.expose().is_empty() => None,
        PersonalField::Text(text) => Some(std::mem::take(text).into_inner()),
        PersonalField::OptionalText(text) => {
            let plain = text.as_ref()?.expose().clone();
            *text = Some(Personal::default());
            Some(plain)
        }
        PersonalField::Coordinates(at) => {
            let (latitude, longitude) = *at.expose();
            *at = Personal::default();
            Some(format!("{latitude},{longitude}"))
        }
    }
}

/// Puts an opened value back into its field, or marks it erased when it did not open.
fn put_plain(value: PersonalField<'_>, plain: Option<Vec<u8>>) -> Result<(), &'static str> {
    let Some(plain) = plain else {
        match value {
            PersonalField::Text(text) => *text = Personal::erased(),
            PersonalField::OptionalText(text) => *text = Some(Personal::erased()),
            PersonalField::Coordinates(at) => *at = Personal::erased(),
        }
        return Ok(());
    };
    let plain = String::from_utf8(plain).map_err(|_| "sealed text is not UTF-8")?;
    match value {
        PersonalField::Text(text) => *text = Personal::new(plain),
        PersonalField::OptionalText(text) => *text = Some(Personal::new(plain)),
        PersonalField::Coordinates(at) => {
            let parsed = plain
                .split_once(',')
                .and_then(|(lat, lon)| Some((lat.parse().ok()?, lon.parse().ok()?)))
                .ok_or("sealed coordinates are not \"latitude,longitude\"")?;
            *at = Personal::new(parsed);
        }
    }
    Ok(())
}

/// The names of a message body's fields inside one event, for errors.
struct BodyFields {
    body: &'static str,
    content: &'static str,
    media_kind: &'static str,
}

macro_rules! body_fields {
    ($event:literal) => {
        BodyFields {
            body: concat!($event, ".body"),
            content: concat!($event, ".body.content"),
            media_kind: concat!($event, ".body.media.kind"),
        }
    };
}

const CUSTOMER_MESSAGE_BODY: BodyFields = body_fields!("customer_message_received");
const BOT_MESSAGE_BODY: BodyFields = body_fields!("bot_message_sent");
const AGENT_MESSAGE_BODY: BodyFields = body_fields!("agent_message_sent");
const NOTIFICATION_BODY: BodyFields = body_fields!("notification_sent");

pub fn notification_kind_to_proto(kind: NotificationKind) -> pb::NotificationKind {
    match kind {
        NotificationKind::Transactional => pb::NotificationKind::Transactional,
        NotificationKind::Marketing => pb::NotificationKind::Marketing,
    }
}

/// `None` for an unspecified or unknown kind.
pub fn notification_kind_from_proto(kind: i32) -> Option<NotificationKind> {
    match pb::NotificationKind::try_from(kind).ok()? {
        pb::NotificationKind::Transactional => Some(NotificationKind::Transactional),
        pb::NotificationKind::Marketing => Some(NotificationKind::Marketing),
        pb::NotificationKind::Unspecified => None,
    }
}

fn event_to_proto(event: &Event) -> EventProto {
    match event {
        // The ticket travels in the envelope's `ticket_id`.
        Event::TicketOpened {
            ticket: _,
            customer,
            language,
        } => EventProto::TicketOpened(pb::TicketOpened {
            customer: Some(customer_to_proto(customer)),
            language: language.clone(),
        }),
        Event::CustomerMessageReceived {
            message,
            provider_message_id,
            body,
        } => EventProto::CustomerMessageReceived(pb::CustomerMessageReceived {
            message_id: uuid_to_proto(message.0),
            provider_message_id: provider_message_id.expose().clone(),
            body: Some(body_to_proto(body)),
        }),
        Event::BotMessageSent {
            message,
            body,
            prompt,
            choices,
        } => EventProto::BotMessageSent(pb::BotMessageSent {
            message_id: uuid_to_proto(message.0),
            body: Some(body_to_proto(body)),
            prompt: prompt.clone(),
            choices: choices
                .iter()
                .map(|choice| pb::QuickReply {
                    id: choice.id.clone(),
                    title: choice.title.clone(),
                })
                .collect(),
        }),
        Event::NotificationSent {
            message,
            template,
            kind,
            body,
            whatsapp_template,
            message_tag,
        } => EventProto::NotificationSent(pb::NotificationSent {
            message_id: uuid_to_proto(message.0),
            template: template.clone(),
            kind: notification_kind_to_proto(*kind).into(),
            body: Some(body_to_proto(body)),
            whatsapp_template: whatsapp_template
                .as_ref()
                .map(|call| pb::WhatsAppTemplateCall {
                    name: call.name.clone(),
                    language: call.language.clone(),
                    parameters: call.parameters.expose().clone(),
                }),
            message_tag: message_tag.clone().unwrap_or_default(),
        }),
        Event::DetailsCaptured(details) => EventProto::DetailsCaptured(pb::DetailsCaptured {
            details: Some(details_to_proto(details)),
        }),
        Event::ConversationClosedByCustomer => {
            EventProto::ConversationClosedByCustomer(pb::ConversationClosedByCustomer {})
        }
        Event::EntryPointNoted { intent, group } => {
            EventProto::EntryPointNoted(pb::EntryPointNoted {
                intent: intent.clone(),
                group: group.clone(),
            })
        }
        Event::LanguageDetected { language } => {
            EventProto::LanguageDetected(pb::LanguageDetected {
                language: language.clone(),
            })
        }
        Event::HandoffRequested { reason, summary } => {
            EventProto::HandoffRequested(pb::HandoffRequested {
                reason: handoff_reason_to_proto(*reason).into(),
                summary: summary.expose().clone(),
            })
        }
        Event::TicketRouted { rule, destination } => EventProto::TicketRouted(pb::TicketRouted {
            rule: rule.clone(),
            destination: Some(destination_to_proto(destination)),
        }),
        Event::ReferredToStore(referral) => EventProto::ReferredToStore(pb::ReferredToStore {
            store: referral.store.as_str().to_owned(),
            name: referral.name.clone(),
            address: referral.address.clone(),
            opening_hours: referral.opening_hours.clone(),
        }),
        Event::TicketQueued { queue } => EventProto::TicketQueued(pb::TicketQueued {
            queue: queue.as_str().to_owned(),
        }),
        Event::AgentAssigned { agent } => EventProto::AgentAssigned(pb::AgentAssigned {
            agent: agent.as_str().to_owned(),
        }),
        Event::AgentAccepted { agent } => EventProto::AgentAccepted(pb::AgentAccepted {
            agent: agent.as_str().to_owned(),
        }),
        Event::AgentMessageSent {
            agent,
            message,
            body,
        } => EventProto::AgentMessageSent(pb::AgentMessageSent {
            agent: agent.as_str().to_owned(),
            message_id: uuid_to_proto(message.0),
            body: Some(body_to_proto(body)),
        }),
        Event::TicketReleased { agent, reason } => EventProto::TicketReleased(pb::TicketReleased {
            agent: agent.as_str().to_owned(),
            reason: release_reason_to_proto(*reason).into(),
        }),
        Event::TicketResolved { agent, summary } => {
            EventProto::TicketResolved(pb::TicketResolved {
                agent: agent.as_str().to_owned(),
                summary: summary.clone(),
            })
        }
        Event::ConversationHandedBack { agent } => {
            EventProto::ConversationHandedBack(pb::ConversationHandedBack {
                agent: agent.as_str().to_owned(),
            })
        }
        Event::SlaAlarm {
            clock,
            level,
            target_secs,
            run_since_ms,
        } => {
            let clock = sla_clock_to_proto(*clock) as i32;
            match level {
                SlaLevel::Warning => EventProto::SlaWarning(pb::SlaWarning {
                    clock,
                    target_seconds: *target_secs,
                    run_since_unix_ms: *run_since_ms,
                }),
                SlaLevel::Breached => EventProto::SlaBreached(pb::SlaBreached {
                    clock,
                    target_seconds: *target_secs,
                    run_since_unix_ms: *run_since_ms,
                }),
            }
        }
        Event::CannedReplyUsed { message, shortcut } => {
            EventProto::CannedReplyUsed(pb::CannedReplyUsed {
                message_id: uuid_to_proto(message.0),
                shortcut: shortcut.clone(),
            })
        }
        Event::AgentNoteAdded { agent, text } => EventProto::AgentNoteAdded(pb::AgentNoteAdded {
            agent: agent.as_str().to_owned(),
            text: text.expose().clone(),
        }),
        Event::RatingRequested { message } => EventProto::RatingRequested(pb::RatingRequested {
            message_id: uuid_to_proto(message.0),
        }),
        Event::RatingReceived { score, comment } => {
            EventProto::RatingReceived(pb::RatingReceived {
                score: u32::from(*score),
                comment: optional_personal_to_proto(comment),
            })
        }
        Event::TicketClosed { reason } => EventProto::TicketClosed(pb::TicketClosed {
            reason: close_reason_to_proto(*reason).into(),
        }),
        Event::TicketAbandoned => EventProto::TicketAbandoned(pb::TicketAbandoned {}),
        Event::MessageDelivered {
            message,
            provider_message_id,
        } => EventProto::MessageDelivered(pb::MessageDelivered {
            message_id: uuid_to_proto(message.0),
            provider_message_id: provider_message_id.expose().clone(),
        }),
        Event::MessageDeliveryFailed {
            message,
            reason,
            permanent,
        } => EventProto::MessageDeliveryFailed(pb::MessageDeliveryFailed {
            message_id: uuid_to_proto(message.0),
            reason: reason.expose().clone(),
            permanent: *permanent,
        }),
        Event::MessageRead {
            message,
            provider_message_id,
        } => EventProto::MessageRead(pb::MessageRead {
            message_id: uuid_to_proto(message.0),
            provider_message_id: provider_message_id.expose().clone(),
        }),
        Event::CustomerErased => EventProto::CustomerErased(pb::CustomerErased {}),
        Event::AttachmentStored {
            message,
            object,
            size_bytes,
            mime_type,
        } => EventProto::AttachmentStored(pb::AttachmentStored {
            message_id: uuid_to_proto(message.0),
            object: object.clone(),
            size_bytes: *size_bytes,
            mime_type: mime_type.clone(),
        }),
        Event::AttachmentNotFetched { message, reason } => {
            EventProto::AttachmentNotFetched(pb::AttachmentNotFetched {
                message_id: uuid_to_proto(message.0),
                reason: reason.clone(),
            })
        }
    }
}

fn event_from_proto(ticket: TicketId, event: EventProto) -> Result<Event, CodecError> {
    Ok(match event {
        EventProto::TicketOpened(e) => Event::TicketOpened {
            ticket,
            customer: customer_from_proto(required(e.customer, "ticket_opened.customer")?)?,
            language: e.language,
        },
        EventProto::CustomerMessageReceived(e) => Event::CustomerMessageReceived {
            message: message_id_from_proto(&e.message_id, "customer_message_received.message_id")?,
            // Sealed since; an event written before holds it here in plaintext, and it
            // reads as it was.
            provider_message_id: Personal::new(e.provider_message_id),
            body: body_from_proto(e.body, &CUSTOMER_MESSAGE_BODY)?,
        },
        EventProto::BotMessageSent(e) => Event::BotMessageSent {
            message: message_id_from_proto(&e.message_id, "bot_message_sent.message_id")?,
            body: body_from_proto(e.body, &BOT_MESSAGE_BODY)?,
            prompt: e.prompt,
            choices: e
                .choices
                .into_iter()
                .map(|choice| QuickReply {
                    id: choice.id,
                    title: choice.title,
                })
                .collect(),
        },
        EventProto::NotificationSent(e) => Event::NotificationSent {
            message: message_id_from_proto(&e.message_id, "notification_sent.message_id")?,
            template: e.template,
            kind: notification_kind_from_proto(e.kind).ok_or_else(|| CodecError::Invalid {
                field: "notification_sent.kind",
                reason: format!("{} is no notification kind", e.kind),
            })?,
            body: body_from_proto(e.body, &NOTIFICATION_BODY)?,
            whatsapp_template: e.whatsapp_template.map(|call| WhatsAppTemplateCall {
                name: call.name,
                language: call.language,
                parameters: Personal::new(call.parameters),
            }),
            message_tag: (!e.message_tag.is_empty()).then_some(e.message_tag),
        },
        EventProto::ConversationClosedByCustomer(_) => Event::ConversationClosedByCustomer,
        EventProto::EntryPointNoted(e) => Event::EntryPointNoted {
            intent: e.intent,
            group: e.group,
        },
        EventProto::LanguageDetected(e) => Event::LanguageDetected {
            language: e.language,
        },
        EventProto::ConversationHandedBack(e) => Event::ConversationHandedBack {
            agent: AgentId::new(e.agent),
        },
        EventProto::SlaWarning(e) => Event::SlaAlarm {
            clock: sla_clock_from_proto(e.clock)?,
            level: SlaLevel::Warning,
            target_secs: e.target_seconds,
            run_since_ms: e.run_since_unix_ms,
        },
        EventProto::SlaBreached(e) => Event::SlaAlarm {
            clock: sla_clock_from_proto(e.clock)?,
            level: SlaLevel::Breached,
            target_secs: e.target_seconds,
            run_since_ms: e.run_since_unix_ms,
        },
        EventProto::CannedReplyUsed(e) => Event::CannedReplyUsed {
            message: message_id_from_proto(&e.message_id, "canned_reply_used.message_id")?,
            shortcut: e.shortcut,
        },
        EventProto::AgentNoteAdded(e) => Event::AgentNoteAdded {
            agent: AgentId::new(e.agent),
            text: Personal::new(e.text),
        },
        EventProto::DetailsCaptured(e) => Event::DetailsCaptured(details_from_proto(required(
            e.details,
            "details_captured.details",
        )?)),
        EventProto::HandoffRequested(e) => Event::HandoffRequested {
            reason: handoff_reason_from_proto(e.reason)?,
            summary: Personal::new(e.summary),
        },
        EventProto::TicketRouted(e) => Event::TicketRouted {
            rule: e.rule,
            destination: destination_from_proto(required(
                e.destination,
                "ticket_routed.destination",
            )?),
        },
        EventProto::ReferredToStore(e) => Event::ReferredToStore(StoreReferral {
            store: StoreId::new(e.store),
            name: e.name,
            address: e.address,
            opening_hours: e.opening_hours,
        }),
        EventProto::TicketQueued(e) => Event::TicketQueued {
            queue: QueueId::new(e.queue),
        },
        EventProto::AgentAssigned(e) => Event::AgentAssigned {
            agent: AgentId::new(e.agent),
        },
        EventProto::AgentAccepted(e) => Event::AgentAccepted {
            agent: AgentId::new(e.agent),
        },
        EventProto::AgentMessageSent(e) => Event::AgentMessageSent {
            agent: AgentId::new(e.agent),
            message: message_id_from_proto(&e.message_id, "agent_message_sent.message_id")?,
            body: body_from_proto(e.body, &AGENT_MESSAGE_BODY)?,
        },
        EventProto::TicketReleased(e) => Event::TicketReleased {
            agent: AgentId::new(e.agent),
            reason: release_reason_from_proto(e.reason)?,
        },
        EventProto::TicketResolved(e) => Event::TicketResolved {
            agent: AgentId::new(e.agent),
            summary: e.summary,
        },
        EventProto::RatingRequested(e) => Event::RatingRequested {
            message: message_id_from_proto(&e.message_id, "rating_requested.message_id")?,
        },
        EventProto::RatingReceived(e) => Event::RatingReceived {
            score: u8::try_from(e.score).map_err(|_| CodecError::Invalid {
                field: "rating_received.score",
                reason: format!("{} does not fit in a u8", e.score),
            })?,
            comment: optional_personal_from_proto(e.comment),
        },
        EventProto::TicketClosed(e) => Event::TicketClosed {
            reason: close_reason_from_proto(e.reason)?,
        },
        EventProto::TicketAbandoned(pb::TicketAbandoned {}) => Event::TicketAbandoned,
        EventProto::MessageDelivered(e) => Event::MessageDelivered {
            message: message_id_from_proto(&e.message_id, "message_delivered.message_id")?,
            provider_message_id: Personal::new(e.provider_message_id),
        },
        EventProto::MessageDeliveryFailed(e) => Event::MessageDeliveryFailed {
            message: message_id_from_proto(&e.message_id, "message_delivery_failed.message_id")?,
            reason: Personal::new(e.reason),
            permanent: e.permanent,
        },
        EventProto::MessageRead(e) => Event::MessageRead {
            message: message_id_from_proto(&e.message_id, "message_read.message_id")?,
            provider_message_id: Personal::new(e.provider_message_id),
        },
        EventProto::CustomerErased(pb::CustomerErased {}) => Event::CustomerErased,
        EventProto::AttachmentStored(e) => Event::AttachmentStored {
            message: message_id_from_proto(&e.message_id, "attachment_stored.message_id")?,
            object: required_text(e.object, "attachment_stored.object")?,
            size_bytes: e.size_bytes,
            mime_type: e.mime_type,
        },
        EventProto::AttachmentNotFetched(e) => Event::AttachmentNotFetched {
            message: message_id_from_proto(&e.message_id, "attachment_not_fetched.message_id")?,
            reason: required_text(e.reason, "attachment_not_fetched.reason")?,
        },
    })
}

fn customer_to_proto(customer: &Customer) -> pb::Customer {
    pb::Customer {
        channel: channel_to_proto(customer.channel).into(),
        contact: customer.contact.expose().clone(),
        display_name: optional_personal_to_proto(&customer.display_name),
    }
}

fn customer_from_proto(customer: pb::Customer) -> Result<Customer, CodecError> {
    Ok(Customer {
        channel: channel_from_proto(customer.channel)?,
        contact: Personal::new(customer.contact),
        display_name: optional_personal_from_proto(customer.display_name),
    })
}

fn details_to_proto(details: &Details) -> pb::Details {
    pb::Details {
        product: details.product.clone(),
        serial_number: details.serial_number.expose().clone(),
        problem: details.problem.expose().clone(),
        serial_verified: details.serial_verified,
        location: details.location.expose().clone(),
        category: details.category.clone(),
    }
}

fn details_from_proto(details: pb::Details) -> Details {
    Details {
        product: details.product,
        serial_number: Personal::new(details.serial_number),
        problem: Personal::new(details.problem),
        serial_verified: details.serial_verified,
        location: Personal::new(details.location),
        category: details.category,
    }
}

fn body_to_proto(body: &MessageBody) -> pb::MessageBody {
    let content = match body {
        MessageBody::Text(text) => Content::Text(text.expose().clone()),
        MessageBody::Media(media) => Content::Media(pb::Media {
            kind: media_kind_to_proto(media.kind).into(),
            object: media.object.expose().clone(),
            mime_type: media.mime_type.clone(),
            size_bytes: media.size_bytes,
            caption: optional_personal_to_proto(&media.caption),
            provider_media: media.provider_media.expose().clone(),
        }),
        MessageBody::Location(location) => {
            let (latitude, longitude) = *location.expose();
            Content::Location(pb::Location {
                latitude,
                longitude,
            })
        }
    };
    pb::MessageBody {
        content: Some(content),
    }
}

fn body_from_proto(
    body: Option<pb::MessageBody>,
    fields: &BodyFields,
) -> Result<MessageBody, CodecError> {
    Ok(
        match required(required(body, fields.body)?.content, fields.content)? {
            Content::Text(text) => MessageBody::Text(Personal::new(text)),
            Content::Media(media) => MessageBody::Media(Media {
                kind: media_kind_from_proto(media.kind, fields.media_kind)?,
                object: Personal::new(media.object),
                mime_type: media.mime_type,
                size_bytes: media.size_bytes,
                caption: optional_personal_from_proto(media.caption),
                provider_media: Personal::new(media.provider_media),
            }),
            Content::Location(location) => {
                MessageBody::Location(Personal::new((location.latitude, location.longitude)))
            }
        },
    )
}

fn destination_to_proto(destination: &RouteDestination) -> Destination {
    match destination {
        RouteDestination::Queue(queue) => Destination::Queue(queue.as_str().to_owned()),
        RouteDestination::Store(store) => Destination::Store(store.as_str().to_owned()),
    }
}

fn destination_from_proto(destination: Destination) -> RouteDestination {
    match destination {
        Destination::Queue(queue) => RouteDestination::Queue(QueueId::new(queue)),
        Destination::Store(store) => RouteDestination::Store(StoreId::new(store)),
    }
}

/// A channel as `helpline.v1.Channel`: the one writing of the enum, for the codec and
/// for every API that answers with a channel.
pub fn channel_to_proto(channel: Channel) -> pb::Channel {
    match channel {
        Channel::WhatsApp => pb::Channel::Whatsapp,
        Channel::Messenger => pb::Channel::Messenger,
        Channel::Telegram => pb::Channel::Telegram,
        Channel::Viber => pb::Channel::Viber,
        Channel::AppleMessages => pb::Channel::AppleMessages,
        Channel::WebChat => pb::Channel::WebChat,
    }
}

/// A `helpline.v1.Channel` value: `Ok(None)` for `CHANNEL_UNSPECIFIED`, `Err` with a
/// reason for a number the contract does not know. The one reading of the enum, for the
/// codec and for every API that takes a channel.
pub fn channel_from_proto_value(value: i32) -> Result<Option<Channel>, String> {
    match pb::Channel::try_from(value) {
        Ok(pb::Channel::Unspecified) => Ok(None),
        Ok(pb::Channel::Whatsapp) => Ok(Some(Channel::WhatsApp)),
        Ok(pb::Channel::Messenger) => Ok(Some(Channel::Messenger)),
        Ok(pb::Channel::Telegram) => Ok(Some(Channel::Telegram)),
        Ok(pb::Channel::Viber) => Ok(Some(Channel::Viber)),
        Ok(pb::Channel::AppleMessages) => Ok(Some(Channel::AppleMessages)),
        Ok(pb::Channel::WebChat) => Ok(Some(Channel::WebChat)),
        Err(_) => Err(format!("unknown channel {value}")),
    }
}

fn channel_from_proto(value: i32) -> Result<Channel, CodecError> {
    const FIELD: &str = "ticket_opened.customer.channel";
    match channel_from_proto_value(value) {
        Ok(Some(channel)) => Ok(channel),
        Ok(None) => Err(CodecError::Missing { field: FIELD }),
        Err(_) => Err(unknown_enum_value(FIELD, value)),
    }
}

fn media_kind_to_proto(kind: MediaKind) -> pb::MediaKind {
    match kind {
        MediaKind::Image => pb::MediaKind::Image,
        MediaKind::Document => pb::MediaKind::Document,
        MediaKind::Audio => pb::MediaKind::Audio,
        MediaKind::Video => pb::MediaKind::Video,
    }
}

fn media_kind_from_proto(value: i32, field: &'static str) -> Result<MediaKind, CodecError> {
    match pb::MediaKind::try_from(value) {
        Ok(pb::MediaKind::Image) => Ok(MediaKind::Image),
        Ok(pb::MediaKind::Document) => Ok(MediaKind::Document),
        Ok(pb::MediaKind::Audio) => Ok(MediaKind::Audio),
        Ok(pb::MediaKind::Video) => Ok(MediaKind::Video),
        Ok(pb::MediaKind::Unspecified) => Err(CodecError::Missing { field }),
        Err(_) => Err(unknown_enum_value(field, value)),
    }
}

fn handoff_reason_to_proto(reason: HandoffReason) -> pb::HandoffReason {
    match reason {
        HandoffReason::DetailsComplete => pb::HandoffReason::DetailsComplete,
        HandoffReason::CustomerAsked => pb::HandoffReason::CustomerAsked,
        HandoffReason::BotGaveUp => pb::HandoffReason::BotGaveUp,
    }
}

fn handoff_reason_from_proto(value: i32) -> Result<HandoffReason, CodecError> {
    const FIELD: &str = "handoff_requested.reason";
    match pb::HandoffReason::try_from(value) {
        Ok(pb::HandoffReason::DetailsComplete) => Ok(HandoffReason::DetailsComplete),
        Ok(pb::HandoffReason::CustomerAsked) => Ok(HandoffReason::CustomerAsked),
        Ok(pb::HandoffReason::BotGaveUp) => Ok(HandoffReason::BotGaveUp),
        Ok(pb::HandoffReason::Unspecified) => Err(CodecError::Missing { field: FIELD }),
        Err(_) => Err(unknown_enum_value(FIELD, value)),
    }
}

fn release_reason_to_proto(reason: ReleaseReason) -> pb::ReleaseReason {
    match reason {
        ReleaseReason::ByAgent => pb::ReleaseReason::ByAgent,
        ReleaseReason::AgentOffline => pb::ReleaseReason::AgentOffline,
        ReleaseReason::AcceptTimeout => pb::ReleaseReason::AcceptTimeout,
        ReleaseReason::Reassigned => pb::ReleaseReason::Reassigned,
        ReleaseReason::Transferred => pb::ReleaseReason::Transferred,
    }
}

fn release_reason_from_proto(value: i32) -> Result<ReleaseReason, CodecError> {
    const FIELD: &str = "ticket_released.reason";
    match pb::ReleaseReason::try_from(value) {
        Ok(pb::ReleaseReason::ByAgent) => Ok(ReleaseReason::ByAgent),
        Ok(pb::ReleaseReason::AgentOffline) => Ok(ReleaseReason::AgentOffline),
        Ok(pb::ReleaseReason::AcceptTimeout) => Ok(ReleaseReason::AcceptTimeout),
        Ok(pb::ReleaseReason::Reassigned) => Ok(ReleaseReason::Reassigned),
        Ok(pb::ReleaseReason::Transferred) => Ok(ReleaseReason::Transferred),
        Ok(pb::ReleaseReason::Unspecified) => Err(CodecError::Missing { field: FIELD }),
        Err(_) => Err(unknown_enum_value(FIELD, value)),
    }
}

fn close_reason_to_proto(reason: CloseReason) -> pb::CloseReason {
    match reason {
        CloseReason::Rated => pb::CloseReason::Rated,
        CloseReason::RatingTimeout => pb::CloseReason::RatingTimeout,
        CloseReason::NoRatingAsked => pb::CloseReason::NoRatingAsked,
        CloseReason::NoRatingGiven => pb::CloseReason::NoRatingGiven,
    }
}

fn close_reason_from_proto(value: i32) -> Result<CloseReason, CodecError> {
    const FIELD: &str = "ticket_closed.reason";
    match pb::CloseReason::try_from(value) {
        Ok(pb::CloseReason::Rated) => Ok(CloseReason::Rated),
        Ok(pb::CloseReason::RatingTimeout) => Ok(CloseReason::RatingTimeout),
        Ok(pb::CloseReason::NoRatingAsked) => Ok(CloseReason::NoRatingAsked),
        Ok(pb::CloseReason::NoRatingGiven) => Ok(CloseReason::NoRatingGiven),
        Ok(pb::CloseReason::Unspecified) => Err(CodecError::Missing { field: FIELD }),
        Err(_) => Err(unknown_enum_value(FIELD, value)),
    }
}

/// Ids are written hyphenated and lowercase, e.g. `0192f0c1-3b1e-7c3a-8f00-5e2d9a6b4c10`.
fn uuid_to_proto(id: Uuid) -> String {
    id.hyphenated().to_string()
}

fn uuid_from_proto(value: &str, field: &'static str) -> Result<Uuid, CodecError> {
    if value.is_empty() {
        return Err(CodecError::Missing { field });
    }
    Uuid::try_parse(value).map_err(|error| CodecError::Invalid {
        field,
        reason: error.to_string(),
    })
}

pub fn sla_clock_to_proto(clock: SlaClock) -> pb::SlaClock {
    match clock {
        SlaClock::FirstResponse => pb::SlaClock::FirstResponse,
        SlaClock::NextResponse => pb::SlaClock::NextResponse,
        SlaClock::Resolution => pb::SlaClock::Resolution,
    }
}

fn sla_clock_from_proto(value: i32) -> Result<SlaClock, CodecError> {
    match pb::SlaClock::try_from(value) {
        Ok(pb::SlaClock::FirstResponse) => Ok(SlaClock::FirstResponse),
        Ok(pb::SlaClock::NextResponse) => Ok(SlaClock::NextResponse),
        Ok(pb::SlaClock::Resolution) => Ok(SlaClock::Resolution),
        Ok(pb::SlaClock::Unspecified) | Err(_) => Err(CodecError::Invalid {
            field: "sla_clock",
            reason: format!("{value} is no SLA clock"),
        }),
    }
}

fn message_id_from_proto(value: &str, field: &'static str) -> Result<MessageId, CodecError> {
    uuid_from_proto(value, field).map(MessageId)
}

fn time_from_proto(timestamp: Option<prost_types::Timestamp>) -> Result<SystemTime, CodecError> {
    const FIELD: &str = "occurred_at";
    let timestamp = required(timestamp, FIELD)?;
    // `encode` writes normalized timestamps only; anything else was not written by us.
    if !(0..1_000_000_000).contains(&timestamp.nanos) {
        return Err(CodecError::Invalid {
            field: FIELD,
            reason: format!("nanos {} outside 0..1e9", timestamp.nanos),
        });
    }
    SystemTime::try_from(timestamp).map_err(|_| CodecError::Invalid {
        field: FIELD,
        reason: format!("{} seconds is out of range", timestamp.seconds),
    })
}

/// Proto3 strings cannot be absent: an empty string stands for `None`.
fn optional_personal_to_proto(value: &Option<Personal<String>>) -> String {
    value
        .as_ref()
        .map(|value| value.expose().clone())
        .unwrap_or_default()
}

fn optional_personal_from_proto(value: String) -> Option<Personal<String>> {
    (!value.is_empty()).then(|| Personal::new(value))
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, CodecError> {
    value.ok_or(CodecError::Missing { field })
}

/// A text the event is meaningless without (proto3 writes an absent string as empty).
fn required_text(value: String, field: &'static str) -> Result<String, CodecError> {
    if value.is_empty() {
        Err(CodecError::Missing { field })
    } else {
        Ok(value)
    }
}

fn unknown_enum_value(field: &'static str, value: i32) -> CodecError {
    CodecError::Invalid {
        field,
        reason: format!("unknown enum value {value}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use proptest::prelude::*;

    use super::*;

    const TICKET: Uuid = Uuid::from_u128(0x0192_f0c1_3b1e_7c3a_8f00_5e2d_9a6b_4c10);
    const MESSAGE: MessageId =
        MessageId(Uuid::from_u128(0x0192_f0c1_3b1f_7000_8000_0000_0000_0001));

    fn meta() -> EnvelopeMeta {
        EnvelopeMeta {
            event_id: Uuid::from_u128(0x0192_f0c1_3b20_7abc_9def_0123_4567_89ab),
            ticket: TicketId(TICKET),
            region: "de".into(),
            // Nanoseconds must survive the round trip.
            occurred_at: UNIX_EPOCH + Duration::new(1_764_000_000, 123_456_789),
            command_id: Uuid::from_u128(0x0192_f0c1_3b21_7000_8000_0000_0000_0002),
            causation_id: "whatsapp:5d41402abc4b2a76b9719d911017c592".into(),
            correlation_id: "0192f0c1-3b1f-7000-8000-000000000001".into(),
            schema_version: SCHEMA_VERSION,
            customer: None,
        }
    }

    /// One customer's key, shared by a test's encode and decode.
    static KEY: std::sync::LazyLock<(CustomerId, DataKey)> = std::sync::LazyLock::new(|| {
        let customer =
            crate::seal::MasterKey::development().customer_id(Channel::WhatsApp, "+4915112345678");
        (customer, DataKey::generate())
    });

    fn sealer() -> Option<Sealer<'static>> {
        Some(Sealer {
            customer: &KEY.0,
            key: &KEY.1,
            key_ref: None,
        })
    }

    fn key() -> Option<&'static DataKey> {
        Some(&KEY.1)
    }

    /// Decodes a message that must hold exactly one event.
    fn decode_one(
        bytes: &[u8],
        key: Option<&DataKey>,
    ) -> Result<(EnvelopeMeta, Event), CodecError> {
        let mut events = decode(bytes, key)?;
        assert_eq!(events.len(), 1, "one event per message here");
        Ok(events.remove(0))
    }

    #[test]
    fn a_command_s_events_are_one_message_and_decode_in_order() {
        let first = meta();
        let second = EnvelopeMeta {
            event_id: Uuid::from_u128(0x0192_f0c1_3b20_7abc_9def_0123_4567_89ac),
            ..meta()
        };
        let said = |text: &str, prompt: &str| Event::BotMessageSent {
            message: MESSAGE,
            body: MessageBody::Text(Personal::new(text.to_owned())),
            prompt: prompt.to_owned(),
            choices: Vec::new(),
        };
        let events = [
            said("Hallo und willkommen", "greeting"),
            said("Welches Produkt?", "ask_product"),
        ];
        let bytes = encode_command(&[first.clone(), second.clone()], &events, sealer()).unwrap();
        for text in ["Hallo und willkommen", "Welches Produkt?"] {
            assert!(
                !bytes.windows(text.len()).any(|w| w == text.as_bytes()),
                "{text} is sealed"
            );
        }
        let decoded = decode(&bytes, key()).unwrap();
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0].0.event_id, first.event_id);
        assert_eq!(decoded[1].0.event_id, second.event_id);
        assert_eq!(decoded[0].1, events[0]);
        assert_eq!(decoded[1].1, events[1]);
        // The key is found when only a later event of the command is personal.
        let routed = Event::TicketRouted {
            rule: "laptops".to_owned(),
            destination: RouteDestination::Queue(QueueId("de-laptops".to_owned())),
        };
        let mixed = encode_command(
            &[first.clone(), second.clone()],
            &[routed.clone(), events[1].clone()],
            sealer(),
        )
        .unwrap();
        let parsed = parse(&mixed).unwrap();
        assert_eq!(parsed.customer(), Some(&KEY.0));
        let opened = parsed.open(key()).unwrap();
        assert_eq!((&opened[0].1, &opened[1].1), (&routed, &events[1]));
        // One event is a plain envelope, as every message before was.
        let single = encode_command(std::slice::from_ref(&first), &events[..1], sealer()).unwrap();
        let envelope = pb::EventEnvelope::decode(single.as_slice()).unwrap();
        assert!(envelope.more_events.is_empty());
        assert_eq!(decode_one(&single, key()).unwrap().1, events[0]);
    }

    fn sealed(meta: &EnvelopeMeta, event: &Event) -> Vec<u8> {
        encode(meta, event, sealer()).expect("encode with a key")
    }

    fn customer(channel: Channel) -> Customer {
        Customer {
            channel,
            contact: "+4915112345678".into(),
            display_name: Some("Erika Mustermann".into()),
        }
    }

    fn media(kind: MediaKind) -> MessageBody {
        MessageBody::Media(Media {
            kind,
            object: "de/0192f0c1/photo.jpg".into(),
            mime_type: "image/jpeg".into(),
            size_bytes: 482_133,
            caption: Some("the crack".into()),
            provider_media: Personal::default(),
        })
    }

    fn bodies() -> Vec<MessageBody> {
        let mut bodies = vec![
            MessageBody::Text("my laptop does not start".into()),
            MessageBody::Location(Personal::new((52.520_008, 13.404_954))),
            MessageBody::Media(Media {
                kind: MediaKind::Document,
                object: "de/0192f0c1/invoice.pdf".into(),
                mime_type: "application/pdf".into(),
                size_bytes: 0,
                caption: None,
                provider_media: Personal::default(),
            }),
            // A customer's attachment as the webhook names it, before it is fetched.
            MessageBody::Media(Media {
                kind: MediaKind::Image,
                object: Personal::default(),
                mime_type: String::new(),
                size_bytes: 0,
                caption: Some("label".into()),
                provider_media: "https://cdn.example.com/u/3f2a/label.jpg".into(),
            }),
        ];
        bodies.extend(
            [
                MediaKind::Image,
                MediaKind::Document,
                MediaKind::Audio,
                MediaKind::Video,
            ]
            .map(media),
        );
        bodies
    }

    /// One example of every event, and of every variant of the types they carry.
    fn every_event() -> Vec<Event> {
        let agent = AgentId::new("anna.schmidt");
        let mut events: Vec<Event> = Channel::ALL
            .into_iter()
            .map(|channel| Event::TicketOpened {
                ticket: TicketId(TICKET),
                customer: customer(channel),
                language: "de".into(),
            })
            .collect();
        events.push(Event::TicketOpened {
            ticket: TicketId(TICKET),
            customer: Customer {
                display_name: None,
                ..customer(Channel::WebChat)
            },
            language: "de".into(),
        });
        for body in bodies() {
            events.push(Event::CustomerMessageReceived {
                message: MESSAGE,
                provider_message_id: "wamid.HBgLNDkxNTE".into(),
                body: body.clone(),
            });
            events.push(Event::BotMessageSent {
                message: MESSAGE,
                body: body.clone(),
                prompt: "rating".into(),
                choices: vec![
                    QuickReply {
                        id: "5".into(),
                        title: "⭐⭐⭐⭐⭐".into(),
                    },
                    QuickReply {
                        id: "1".into(),
                        title: "⭐".into(),
                    },
                ],
            });
            events.push(Event::AgentMessageSent {
                agent: agent.clone(),
                message: MESSAGE,
                body,
            });
        }
        events.push(Event::DetailsCaptured(Details {
            product: "ThinkBook 14".into(),
            serial_number: "PF3XK2LM".into(),
            problem: "does not start".into(),
            serial_verified: true,
            location: "10115 Berlin".into(),
            category: "hardware".into(),
        }));
        events.push(Event::DetailsCaptured(Details {
            product: "MateBook".into(),
            ..Details::default()
        }));
        events.push(Event::LanguageDetected {
            language: "en".into(),
        });
        events.push(Event::EntryPointNoted {
            intent: "repair_status".into(),
            group: "laptops".into(),
        });
        events.push(Event::ConversationClosedByCustomer);
        for (kind, whatsapp_template, message_tag) in [
            (
                NotificationKind::Transactional,
                Some(WhatsAppTemplateCall {
                    name: "repair_ready".into(),
                    language: "de".into(),
                    parameters: Personal::new(r#"["MateBook X Pro","Berlin Mitte"]"#.to_owned()),
                }),
                Some("POST_PURCHASE_UPDATE".to_owned()),
            ),
            (NotificationKind::Marketing, None, None),
        ] {
            events.push(Event::NotificationSent {
                message: MESSAGE,
                template: "repair_ready".into(),
                kind,
                body: MessageBody::Text("Ihr MateBook ist abholbereit".to_owned().into()),
                whatsapp_template,
                message_tag,
            });
        }
        for reason in [
            HandoffReason::DetailsComplete,
            HandoffReason::CustomerAsked,
            HandoffReason::BotGaveUp,
        ] {
            events.push(Event::HandoffRequested {
                reason,
                summary: "ThinkBook 14, PF3XK2LM (verified): does not start".into(),
            });
        }
        for destination in [
            RouteDestination::Queue(QueueId::new("de-laptops-de")),
            RouteDestination::Store(StoreId::new("berlin-mitte")),
        ] {
            events.push(Event::TicketRouted {
                rule: "laptops".into(),
                destination,
            });
        }
        events.extend([
            Event::ReferredToStore(StoreReferral {
                store: StoreId::new("berlin-mitte"),
                name: "Service Store Berlin Mitte".into(),
                address: "Friedrichstraße 100, 10117 Berlin".into(),
                opening_hours: "Mo–Fr 10–19".into(),
            }),
            Event::ConversationHandedBack {
                agent: agent.clone(),
            },
            Event::AgentNoteAdded {
                agent: agent.clone(),
                text: Personal::new("customer prefers a call back".to_owned()),
            },
            Event::TicketQueued {
                queue: QueueId::new("de-laptops-de"),
            },
            Event::AgentAssigned {
                agent: agent.clone(),
            },
            Event::AgentAccepted {
                agent: agent.clone(),
            },
        ]);
        for reason in [
            ReleaseReason::ByAgent,
            ReleaseReason::AgentOffline,
            ReleaseReason::AcceptTimeout,
            ReleaseReason::Reassigned,
            ReleaseReason::Transferred,
        ] {
            events.push(Event::TicketReleased {
                agent: agent.clone(),
                reason,
            });
        }
        events.extend([
            Event::TicketResolved {
                agent,
                summary: "replaced the power supply".into(),
            },
            Event::RatingRequested { message: MESSAGE },
            Event::RatingReceived {
                score: 5,
                comment: Some("quick and friendly".into()),
            },
            Event::RatingReceived {
                score: 1,
                comment: None,
            },
        ]);
        for reason in [
            CloseReason::Rated,
            CloseReason::RatingTimeout,
            CloseReason::NoRatingAsked,
        ] {
            events.push(Event::TicketClosed { reason });
        }
        events.extend([
            Event::TicketAbandoned,
            Event::MessageDelivered {
                message: MESSAGE,
                provider_message_id: "wamid.HBgLNDkxNTE".into(),
            },
            Event::MessageDeliveryFailed {
                message: MESSAGE,
                reason: "131047 re-engagement message".into(),
                permanent: true,
            },
            Event::MessageRead {
                message: MESSAGE,
                provider_message_id: "wamid.HBgLNDkxNTE".into(),
            },
            Event::CustomerErased,
            Event::AttachmentStored {
                message: MESSAGE,
                object: MESSAGE.0.to_string(),
                size_bytes: 482_133,
                mime_type: "image/jpeg".into(),
            },
            Event::AttachmentNotFetched {
                message: MESSAGE,
                reason: "provider answered 404 Not Found".into(),
            },
        ]);
        events
    }

    #[track_caller]
    fn check_round_trip(meta: &EnvelopeMeta, event: &Event) {
        let bytes = sealed(meta, event);
        let personal = !pb::EventEnvelope::decode(&bytes[..])
            .unwrap()
            .personal
            .is_empty();
        let (decoded_meta, decoded) = decode_one(&bytes, key()).expect("decode what encode wrote");
        assert_eq!(&decoded, event, "{}", event.name());
        let expected = EnvelopeMeta {
            customer: personal.then(|| KEY.0.clone()),
            ..meta.clone()
        };
        assert_eq!(decoded_meta, expected, "{}", event.name());
    }

    /// The envelope of an example event, to be broken by a test.
    fn envelope() -> pb::EventEnvelope {
        let event = Event::TicketOpened {
            ticket: TicketId(TICKET),
            customer: customer(Channel::WhatsApp),
            language: "de".into(),
        };
        pb::EventEnvelope::decode(&sealed(&meta(), &event)[..]).unwrap()
    }

    fn with_event(event: EventProto) -> pb::EventEnvelope {
        pb::EventEnvelope {
            event: Some(event),
            ..envelope()
        }
    }

    #[track_caller]
    fn check_missing(envelope: pb::EventEnvelope, expected: &str) {
        match decode_one(&envelope.encode_to_vec(), key()) {
            Err(CodecError::Missing { field }) => assert_eq!(field, expected),
            other => panic!("expected {expected} to be missing, got {other:?}"),
        }
    }

    #[track_caller]
    fn check_invalid(envelope: pb::EventEnvelope, expected: &str) {
        match decode_one(&envelope.encode_to_vec(), key()) {
            Err(CodecError::Invalid { field, .. }) => assert_eq!(field, expected),
            other => panic!("expected {expected} to be invalid, got {other:?}"),
        }
    }

    fn body(content: Option<Content>) -> Option<pb::MessageBody> {
        Some(pb::MessageBody { content })
    }

    #[test]
    fn every_event_round_trips() {
        let events = every_event();
        let names: std::collections::BTreeSet<_> = events.iter().map(Event::name).collect();
        assert_eq!(names.len(), 29, "an example of every event");
        for event in &events {
            check_round_trip(&meta(), event);
        }
    }

    #[test]
    fn times_round_trip_to_the_nanosecond() {
        for occurred_at in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(1_764_000_000, 1),
            UNIX_EPOCH + Duration::new(1_764_000_000, 999_999_999),
            UNIX_EPOCH - Duration::new(5, 1),
        ] {
            let meta = EnvelopeMeta {
                occurred_at,
                ..meta()
            };
            check_round_trip(&meta, &Event::TicketAbandoned);
        }
    }

    #[test]
    fn ids_are_written_hyphenated_and_lowercase() {
        let envelope = envelope();
        assert_eq!(envelope.ticket_id, "0192f0c1-3b1e-7c3a-8f00-5e2d9a6b4c10");
        assert_eq!(envelope.event_id, "0192f0c1-3b20-7abc-9def-0123456789ab");
        assert_eq!(envelope.schema_version, SCHEMA_VERSION);
    }

    #[test]
    fn ticket_opened_takes_its_ticket_from_the_envelope() {
        let event = Event::TicketOpened {
            ticket: TicketId(Uuid::nil()),
            customer: customer(Channel::Telegram),
            language: "de".into(),
        };
        let (_, decoded) = decode_one(&sealed(&meta(), &event), key()).unwrap();
        assert!(matches!(decoded, Event::TicketOpened { ticket, .. } if ticket.0 == TICKET));
    }

    #[test]
    fn empty_optional_text_reads_as_none() {
        let mut envelope = envelope();
        envelope.personal.remove("customer.display_name");
        let (_, event) = decode_one(&envelope.encode_to_vec(), key()).unwrap();
        assert!(
            matches!(event, Event::TicketOpened { customer, .. } if customer.display_name.is_none())
        );
    }

    #[test]
    fn no_personal_value_is_written_in_plaintext() {
        let secrets = [
            "+4915112345678",
            "Erika Mustermann",
            "my laptop does not start",
            "the crack",
            "photo.jpg",
            "52.52",
            "wamid.HBgLNDkxNTE",
            "re-engagement message",
        ];
        for event in every_event() {
            let bytes = sealed(&meta(), &event);
            for secret in secrets {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{} carries {secret:?} in plaintext",
                    event.name()
                );
            }
        }
    }

    #[test]
    fn a_personal_value_without_a_key_is_refused() {
        let event = Event::AgentNoteAdded {
            agent: AgentId("anna".into()),
            text: "call back after 5".into(),
        };
        assert!(matches!(
            encode(&meta(), &event, None),
            Err(CodecError::Unsealed { field: "text" })
        ));
        let nothing_personal = Event::TicketQueued {
            queue: QueueId("de-laptops".into()),
        };
        assert!(encode(&meta(), &nothing_personal, None).is_ok());
    }

    #[test]
    fn without_its_key_every_personal_field_reads_as_erased_and_nothing_else_changes() {
        for event in every_event() {
            let (_, erased) = decode_one(&sealed(&meta(), &event), None).unwrap();
            assert_eq!(erased.name(), event.name());
            let mut expected = event.clone();
            expected.erase_personal();
            assert_eq!(erased, expected, "{}", event.name());
            let other_key = DataKey::generate();
            let (_, with_another_key) =
                decode_one(&sealed(&meta(), &event), Some(&other_key)).unwrap();
            assert_eq!(with_another_key, expected, "{}", event.name());
        }
    }

    #[test]
    fn a_sealed_field_moved_to_another_event_does_not_open() {
        let text = |t: &str| Event::CustomerMessageReceived {
            message: MESSAGE,
            provider_message_id: "wamid.1".into(),
            body: MessageBody::Text(t.into()),
        };
        let original = pb::EventEnvelope::decode(&sealed(&meta(), &text("secret"))[..]).unwrap();
        let other_meta = EnvelopeMeta {
            event_id: Uuid::from_u128(7),
            ..meta()
        };
        let mut forged = pb::EventEnvelope::decode(&sealed(&other_meta, &text("x"))[..]).unwrap();
        forged.personal = original.personal;
        let (_, event) = decode_one(&forged.encode_to_vec(), key()).unwrap();
        assert!(matches!(
            event,
            Event::CustomerMessageReceived { body: MessageBody::Text(t), .. } if t.is_erased()
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            decode_one(b"\xff\xff\xff\xff", key()),
            Err(CodecError::Protobuf(_))
        ));
        let bytes = envelope().encode_to_vec();
        assert!(matches!(
            decode_one(&bytes[..bytes.len() - 1], key()),
            Err(CodecError::Protobuf(_))
        ));
    }

    #[test]
    fn rejects_an_empty_envelope() {
        check_missing(pb::EventEnvelope::default(), "ticket_id");
    }

    #[test]
    fn rejects_a_missing_event() {
        check_missing(
            pb::EventEnvelope {
                event: None,
                ..envelope()
            },
            "event",
        );
    }

    #[test]
    fn rejects_bad_envelope_fields() {
        check_invalid(
            pb::EventEnvelope {
                event_id: "not-a-uuid".into(),
                ..envelope()
            },
            "event_id",
        );
        check_invalid(
            pb::EventEnvelope {
                ticket_id: "0192f0c1-3b1e-7c3a-8f00".into(),
                ..envelope()
            },
            "ticket_id",
        );
        check_missing(
            pb::EventEnvelope {
                command_id: String::new(),
                ..envelope()
            },
            "command_id",
        );
        check_missing(
            pb::EventEnvelope {
                occurred_at: None,
                ..envelope()
            },
            "occurred_at",
        );
        check_invalid(
            pb::EventEnvelope {
                occurred_at: Some(prost_types::Timestamp {
                    seconds: 1_764_000_000,
                    nanos: -1,
                }),
                ..envelope()
            },
            "occurred_at",
        );
    }

    #[test]
    fn rejects_bad_event_ids() {
        check_invalid(
            with_event(EventProto::RatingRequested(pb::RatingRequested {
                message_id: "42".into(),
            })),
            "rating_requested.message_id",
        );
        check_missing(
            with_event(EventProto::MessageDelivered(pb::MessageDelivered::default())),
            "message_delivered.message_id",
        );
        check_invalid(
            with_event(EventProto::MessageRead(pb::MessageRead {
                message_id: "wamid.1".into(),
                provider_message_id: "wamid.1".into(),
            })),
            "message_read.message_id",
        );
    }

    #[test]
    fn rejects_unspecified_and_unknown_enums() {
        check_missing(
            with_event(EventProto::HandoffRequested(pb::HandoffRequested {
                reason: 0,
                summary: String::new(),
            })),
            "handoff_requested.reason",
        );
        check_invalid(
            with_event(EventProto::HandoffRequested(pb::HandoffRequested {
                reason: 99,
                summary: String::new(),
            })),
            "handoff_requested.reason",
        );
        check_missing(
            with_event(EventProto::TicketReleased(pb::TicketReleased {
                agent: "anna.schmidt".into(),
                reason: 0,
            })),
            "ticket_released.reason",
        );
        check_invalid(
            with_event(EventProto::TicketClosed(pb::TicketClosed { reason: -1 })),
            "ticket_closed.reason",
        );
        check_missing(
            with_event(EventProto::TicketOpened(pb::TicketOpened {
                customer: Some(pb::Customer {
                    channel: 0,
                    ..pb::Customer::default()
                }),
                language: "de".into(),
            })),
            "ticket_opened.customer.channel",
        );
        check_invalid(
            with_event(EventProto::BotMessageSent(pb::BotMessageSent {
                message_id: MESSAGE.0.to_string(),
                body: body(Some(Content::Media(pb::Media {
                    kind: 7,
                    ..pb::Media::default()
                }))),
                ..pb::BotMessageSent::default()
            })),
            "bot_message_sent.body.media.kind",
        );
    }

    #[test]
    fn rejects_missing_nested_messages() {
        check_missing(
            with_event(EventProto::TicketOpened(pb::TicketOpened {
                customer: None,
                language: "de".into(),
            })),
            "ticket_opened.customer",
        );
        check_missing(
            with_event(EventProto::DetailsCaptured(pb::DetailsCaptured {
                details: None,
            })),
            "details_captured.details",
        );
        check_missing(
            with_event(EventProto::CustomerMessageReceived(
                pb::CustomerMessageReceived {
                    message_id: MESSAGE.0.to_string(),
                    provider_message_id: "wamid.1".into(),
                    body: None,
                },
            )),
            "customer_message_received.body",
        );
        check_missing(
            with_event(EventProto::AgentMessageSent(pb::AgentMessageSent {
                agent: "anna.schmidt".into(),
                message_id: MESSAGE.0.to_string(),
                body: body(None),
            })),
            "agent_message_sent.body.content",
        );
        check_missing(
            with_event(EventProto::TicketRouted(pb::TicketRouted {
                rule: "laptops".into(),
                destination: None,
            })),
            "ticket_routed.destination",
        );
    }

    #[test]
    fn rejects_an_attachment_outcome_without_its_message_or_content() {
        check_missing(
            with_event(EventProto::AttachmentStored(pb::AttachmentStored {
                object: MESSAGE.0.to_string(),
                ..pb::AttachmentStored::default()
            })),
            "attachment_stored.message_id",
        );
        check_missing(
            with_event(EventProto::AttachmentStored(pb::AttachmentStored {
                message_id: MESSAGE.0.to_string(),
                ..pb::AttachmentStored::default()
            })),
            "attachment_stored.object",
        );
        check_missing(
            with_event(EventProto::AttachmentNotFetched(pb::AttachmentNotFetched {
                message_id: MESSAGE.0.to_string(),
                reason: String::new(),
            })),
            "attachment_not_fetched.reason",
        );
        check_invalid(
            with_event(EventProto::AttachmentNotFetched(pb::AttachmentNotFetched {
                message_id: "wamid.1".into(),
                reason: "provider answered 503".into(),
            })),
            "attachment_not_fetched.message_id",
        );
    }

    #[test]
    fn an_attachment_reference_is_sealed_and_its_object_name_is_not() {
        let reference = "https://cdn.example.com/u/3f2a/label.jpg";
        let received = Event::CustomerMessageReceived {
            message: MESSAGE,
            provider_message_id: "wamid.1".into(),
            body: MessageBody::Media(Media {
                kind: MediaKind::Image,
                object: Personal::default(),
                mime_type: String::new(),
                size_bytes: 0,
                caption: None,
                provider_media: reference.into(),
            }),
        };
        let bytes = sealed(&meta(), &received);
        let envelope = pb::EventEnvelope::decode(&bytes[..]).unwrap();
        assert!(envelope.personal.contains_key("body.provider_media"));
        assert!(
            !bytes
                .windows(reference.len())
                .any(|w| w == reference.as_bytes())
        );
        let (_, without_key) = decode_one(&bytes, None).unwrap();
        let Event::CustomerMessageReceived {
            body: MessageBody::Media(media),
            ..
        } = without_key
        else {
            panic!("not a media message: {without_key:?}");
        };
        assert!(media.provider_media.is_erased());
        assert!(
            media.awaits_fetch(),
            "an erased reference still awaits its outcome"
        );

        let stored = Event::AttachmentStored {
            message: MESSAGE,
            object: MESSAGE.0.to_string(),
            size_bytes: 1,
            mime_type: "image/jpeg".into(),
        };
        assert!(
            encode(&meta(), &stored, None).is_ok(),
            "nothing personal in it"
        );
    }

    /// A message stored before attachments were fetched after the append carries its
    /// object and no reference: it replays as an attachment already kept.
    #[test]
    fn an_old_media_message_replays_as_already_fetched() {
        let old = with_event(EventProto::CustomerMessageReceived(
            pb::CustomerMessageReceived {
                message_id: MESSAGE.0.to_string(),
                provider_message_id: "wamid.1".into(),
                body: body(Some(Content::Media(pb::Media {
                    kind: pb::MediaKind::Image.into(),
                    object: MESSAGE.0.to_string(),
                    mime_type: "image/jpeg".into(),
                    size_bytes: 1234,
                    caption: String::new(),
                    ..pb::Media::default()
                }))),
            },
        ));
        let (_, event) = decode_one(&old.encode_to_vec(), key()).unwrap();
        let Event::CustomerMessageReceived {
            body: MessageBody::Media(media),
            ..
        } = &event
        else {
            panic!("not a media message: {event:?}");
        };
        assert!(!media.awaits_fetch());
        let ticket = helpline_domain::evolve(helpline_domain::Ticket::default(), &event);
        assert!(ticket.attachments.is_empty());
    }

    /// Events written before providers' ids and failure reasons were sealed hold them in
    /// plaintext and name no customer: they replay with the values as they were, with
    /// the customer's key or without it.
    #[test]
    fn provider_ids_and_reasons_written_in_plaintext_before_still_replay() {
        let old = [
            EventProto::CustomerMessageReceived(pb::CustomerMessageReceived {
                message_id: MESSAGE.0.to_string(),
                provider_message_id: "wamid.1".into(),
                body: body(Some(Content::Text("Hallo".into()))),
            }),
            EventProto::MessageDelivered(pb::MessageDelivered {
                message_id: MESSAGE.0.to_string(),
                provider_message_id: "wamid.2".into(),
            }),
            EventProto::MessageDeliveryFailed(pb::MessageDeliveryFailed {
                message_id: MESSAGE.0.to_string(),
                reason: "whatsapp answered 400, error 131026: Message undeliverable".into(),
                permanent: true,
            }),
            EventProto::MessageRead(pb::MessageRead {
                message_id: MESSAGE.0.to_string(),
                provider_message_id: "wamid.2".into(),
            }),
        ];
        let expected = [
            Event::CustomerMessageReceived {
                message: MESSAGE,
                provider_message_id: "wamid.1".into(),
                body: MessageBody::Text("Hallo".into()),
            },
            Event::MessageDelivered {
                message: MESSAGE,
                provider_message_id: "wamid.2".into(),
            },
            Event::MessageDeliveryFailed {
                message: MESSAGE,
                reason: "whatsapp answered 400, error 131026: Message undeliverable".into(),
                permanent: true,
            },
            Event::MessageRead {
                message: MESSAGE,
                provider_message_id: "wamid.2".into(),
            },
        ];
        for (old, expected) in old.into_iter().zip(expected) {
            let mut envelope = with_event(old);
            envelope.customer_id = String::new();
            envelope.personal.clear();
            let bytes = envelope.encode_to_vec();
            for key in [key(), None] {
                let (meta, event) = decode_one(&bytes, key).unwrap();
                assert_eq!(meta.customer, None);
                assert_eq!(event, expected, "{}", expected.name());
            }
        }
    }

    /// Written now, the same events seal the provider's id and words, and name the
    /// customer whose key opens them.
    #[test]
    fn provider_ids_and_reasons_are_sealed_and_erased_with_the_key() {
        let events = [
            Event::MessageDelivered {
                message: MESSAGE,
                provider_message_id: "wamid.HBgLNDkxNTE".into(),
            },
            Event::MessageDeliveryFailed {
                message: MESSAGE,
                reason: "whatsapp answered 400, error 131026: +4915112345678 unknown".into(),
                permanent: true,
            },
        ];
        for event in events {
            let bytes = sealed(&meta(), &event);
            for secret in ["wamid.HBgLNDkxNTE", "+4915112345678"] {
                assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
            }
            let (meta, opened) = decode_one(&bytes, key()).unwrap();
            assert_eq!(meta.customer.as_ref(), Some(&KEY.0));
            assert_eq!(opened, event);
            let (_, erased) = decode_one(&bytes, None).unwrap();
            let mut expected = event.clone();
            expected.erase_personal();
            assert_eq!(erased, expected);
        }
    }

    #[test]
    fn rejects_a_score_beyond_u8() {
        check_invalid(
            with_event(EventProto::RatingReceived(pb::RatingReceived {
                score: 256,
                comment: String::new(),
            })),
            "rating_received.score",
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_one(&bytes, key());
        }

        /// Random bytes rarely get past the first tag; damaging real envelopes reaches the
        /// nested messages.
        #[test]
        fn decode_never_panics_on_damaged_envelopes(
            index in any::<prop::sample::Index>(),
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let events = every_event();
            let mut bytes = sealed(&meta(), index.get(&events));
            for (at, byte) in damage {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            let _ = decode_one(&bytes, key());
        }
    }
}
