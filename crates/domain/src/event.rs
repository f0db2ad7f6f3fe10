//! Events: the facts about a ticket, in the past tense. One variant per event of
//! `proto/helpline/v1/events.proto`; the event store converts between the two.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, MessageId, QueueId, StoreId, TicketId};
use crate::notify::NotificationKind;
use crate::personal::{Personal, PersonalField};

/// The messaging channel a customer writes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Channel {
    WhatsApp,
    Messenger,
    Telegram,
    Viber,
    AppleMessages,
    WebChat,
}

impl Channel {
    pub const ALL: [Channel; 6] = [
        Channel::WhatsApp,
        Channel::Messenger,
        Channel::Telegram,
        Channel::Viber,
        Channel::AppleMessages,
        Channel::WebChat,
    ];

    /// The name used in routes, subjects, config keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::WhatsApp => "whatsapp",
            Channel::Messenger => "messenger",
            Channel::Telegram => "telegram",
            Channel::Viber => "viber",
            Channel::AppleMessages => "apple",
            Channel::WebChat => "web",
        }
    }
}

/// Who the ticket is with: the channel and the customer's address on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub channel: Channel,
    /// The customer's address on the channel: a WhatsApp number, a Telegram chat id, …
    pub contact: Personal<String>,
    pub display_name: Option<Personal<String>>,
}

/// What the bot collects before a handoff. Captured piece by piece: each
/// `DetailsCaptured` carries everything known so far, and an empty field is not known yet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    /// The product family, as the region's product list names it, e.g. `MateBook X Pro`.
    pub product: String,
    pub serial_number: Personal<String>,
    /// The problem in the customer's words, one sentence.
    pub problem: Personal<String>,
    /// The serial number matched its product's pattern. False with a serial number
    /// means the bot gave up checking it; the agent is told it is unverified.
    #[serde(default)]
    pub serial_verified: bool,
    /// Postcode or city, asked for a store referral.
    #[serde(default)]
    pub location: Personal<String>,
    /// The problem's category as the bot classified it, e.g. `hardware`, `display`.
    #[serde(default)]
    pub category: String,
}

impl Details {
    /// Nothing is known yet.
    pub fn is_empty(&self) -> bool {
        self.product.is_empty()
            && self.serial_number.expose().is_empty()
            && self.problem.expose().is_empty()
            && self.location.expose().is_empty()
            && self.category.is_empty()
    }
}

/// A button the customer can tap instead of typing: quick replies, inline keyboards,
/// interactive reply buttons, depending on the channel; plain text where there are none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuickReply {
    /// What comes back when the customer taps it (callback data, payload, button id).
    pub id: String,
    /// What the button shows.
    pub title: String,
}

/// A service store a ticket is referred to, as the region's store list describes it.
/// Public business data, not personal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreReferral {
    pub store: StoreId,
    pub name: String,
    pub address: String,
    pub opening_hours: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaKind {
    Image,
    Document,
    Audio,
    Video,
}

/// An attachment, stored in the object store; events carry only the reference.
///
/// A customer's attachment is fetched after its message is appended: the message names
/// [`Media::provider_media`] with an empty `object`, and the outcome follows as
/// [`Event::AttachmentStored`] or [`Event::AttachmentNotFetched`]. Messages stored before
/// that carry the object itself (empty when it was over the region's size cap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    pub kind: MediaKind,
    /// Name of the object in the region's media bucket; empty while (or because) the
    /// attachment is not fetched. Personal as written by older messages, which kept it.
    pub object: Personal<String>,
    pub mime_type: String,
    pub size_bytes: u64,
    pub caption: Option<Personal<String>>,
    /// What the provider gave to fetch the attachment: a WhatsApp media id, a Telegram
    /// `file_id` or a URL; empty when there is nothing left to fetch (an agent's
    /// attachment, a message stored before attachments were fetched afterwards).
    /// Personal: a URL may name the customer.
    #[serde(default)]
    pub provider_media: Personal<String>,
}

impl Media {
    /// The attachment still has to be fetched from the provider: it names what to fetch
    /// and no object yet.
    pub fn awaits_fetch(&self) -> bool {
        self.object.expose().is_empty()
            && (self.provider_media.is_erased() || !self.provider_media.expose().is_empty())
    }
}

/// The content of one message, in either direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MessageBody {
    Text(Personal<String>),
    Media(Media),
    /// A shared location, latitude and longitude in degrees.
    Location(Personal<(f64, f64)>),
}

/// Why the bot hands a ticket over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandoffReason {
    /// The bot has the details it needs.
    DetailsComplete,
    /// The customer asked for a person.
    CustomerAsked,
    /// The bot could not understand the customer.
    BotGaveUp,
}

/// Where routing sends a ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteDestination {
    Queue(QueueId),
    Store(StoreId),
}

/// Why an agent no longer holds a ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseReason {
    /// The agent gave it back.
    ByAgent,
    /// The agent went offline.
    AgentOffline,
    /// The agent did not accept in time.
    AcceptTimeout,
    /// A supervisor gave the ticket to another agent.
    Reassigned,
    /// The agent sent it to another queue or agent.
    Transferred,
}

/// Why a ticket closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// The customer rated the conversation.
    Rated,
    /// The customer did not rate in time.
    RatingTimeout,
    /// Closed without asking for a rating.
    NoRatingAsked,
    /// The customer answered the rating request, twice, with nothing that reads as a
    /// score.
    NoRatingGiven,
}

/// An approved WhatsApp template a notification goes out as outside the 24-hour window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsAppTemplateCall {
    /// The template's name as Meta approved it, e.g. `repair_ready`.
    pub name: String,
    /// Its language code, e.g. `de` or `en_US`.
    pub language: String,
    /// The body's parameters, in the template's order, as a JSON array of strings.
    /// Personal: a name, a ticket number, a store. One sealed field, so that however many
    /// there are they are sealed and erased together.
    pub parameters: Personal<String>,
}

/// A fact about one ticket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    TicketOpened {
        ticket: TicketId,
        customer: Customer,
        /// BCP 47 language tag the customer is served in, e.g. `de`.
        language: String,
    },
    CustomerMessageReceived {
        message: MessageId,
        /// The provider's id for the message; redeliveries carry the same one. Personal:
        /// a WhatsApp `wamid` carries the customer's number.
        provider_message_id: Personal<String>,
        body: MessageBody,
    },
    BotMessageSent {
        message: MessageId,
        body: MessageBody,
        /// The bot's step that wrote it (`greeting`, `ask_serial`, `rating`, …): how the
        /// bot knows, after a restart, what it already asked.
        prompt: String,
        choices: Vec<QuickReply>,
    },
    /// Everything the bot knows so far; replaces the previous `DetailsCaptured`.
    DetailsCaptured(Details),
    /// The customer is served in another language than the ticket opened with.
    LanguageDetected {
        language: String,
    },
    /// The customer closed the conversation on their side (Apple's `close`: they deleted
    /// it). Nothing is sent to them until they write again.
    ConversationClosedByCustomer,
    /// How the customer came in, where the channel says (Apple's "Message us" link): the
    /// brand's intent and group, which routing rules may match. Not personal: the
    /// brand's own words in its link.
    EntryPointNoted {
        intent: String,
        group: String,
    },
    HandoffRequested {
        reason: HandoffReason,
        /// For the agent: product, serial number (and whether it is verified), problem.
        summary: Personal<String>,
    },
    TicketRouted {
        /// The routing rule that matched, for audits.
        rule: String,
        destination: RouteDestination,
    },
    ReferredToStore(StoreReferral),
    TicketQueued {
        queue: QueueId,
    },
    AgentAssigned {
        agent: AgentId,
    },
    AgentAccepted {
        agent: AgentId,
    },
    AgentMessageSent {
        agent: AgentId,
        message: MessageId,
        body: MessageBody,
    },
    TicketReleased {
        agent: AgentId,
        reason: ReleaseReason,
    },
    TicketResolved {
        agent: AgentId,
        summary: String,
    },
    /// The agent gave the conversation back to the bot, which takes up the intake again.
    ConversationHandedBack {
        agent: AgentId,
    },
    /// A running SLA clock of the ticket reached `level` (the warning share of its
    /// target, or the target): `clock`'s run that started at `run_since_ms` (ms since the
    /// Unix epoch; 0 for the clocks that run once per ticket), against a target of
    /// `target_secs` of working time. Recorded once per clock, run and level.
    SlaAlarm {
        clock: crate::sla::SlaClock,
        level: crate::sla::SlaLevel,
        target_secs: u64,
        run_since_ms: u64,
    },
    /// The agent's message `message` was written from the region's canned reply
    /// `shortcut` (for reports on which answers agents use).
    CannedReplyUsed {
        message: MessageId,
        shortcut: String,
    },
    /// An internal note: agents and supervisors read it, the customer never does.
    AgentNoteAdded {
        agent: AgentId,
        text: Personal<String>,
    },
    RatingRequested {
        message: MessageId,
    },
    /// The brand wrote first (`helpline notify`): egress sends it like a bot message, in
    /// the way the channel allows at the time of sending.
    NotificationSent {
        message: MessageId,
        /// The region's template it was written from, e.g. `repair_ready`;
        /// [`crate::notify::APPLE_NOTICE`] for the notice Apple requires first.
        template: String,
        kind: NotificationKind,
        /// The text in the customer's language.
        body: MessageBody,
        /// What goes out on WhatsApp outside the 24-hour window.
        whatsapp_template: Option<WhatsAppTemplateCall>,
        /// The message tag on Messenger outside the 24-hour window.
        message_tag: Option<String>,
    },
    RatingReceived {
        score: u8,
        comment: Option<Personal<String>>,
    },
    TicketClosed {
        reason: CloseReason,
    },
    TicketAbandoned,
    MessageDelivered {
        message: MessageId,
        /// The provider's id for the message, which its receipts name. Personal, as on
        /// `CustomerMessageReceived`.
        provider_message_id: Personal<String>,
    },
    MessageDeliveryFailed {
        message: MessageId,
        /// Why, for the agent: the provider's status and code and its own words, or
        /// helpline's. Personal: a provider's error text can name the customer.
        reason: Personal<String>,
        permanent: bool,
    },
    /// The provider reports that the customer read an outbound message.
    MessageRead {
        message: MessageId,
        provider_message_id: Personal<String>,
    },
    CustomerErased,
    /// The attachment of the customer's message `message` was fetched and stored, sealed
    /// under the customer's key, as `object` in the region's media bucket.
    AttachmentStored {
        message: MessageId,
        /// Derived from the message id: names nothing personal.
        object: String,
        size_bytes: u64,
        mime_type: String,
    },
    /// The attachment of the customer's message `message` could not be fetched; the agent
    /// sees that it is missing and why.
    AttachmentNotFetched {
        message: MessageId,
        /// The provider's status or the size cap; never content or a URL.
        reason: String,
    },
}

impl MessageBody {
    fn personal_fields_mut(&mut self, f: &mut impl FnMut(&'static str, PersonalField<'_>)) {
        match self {
            MessageBody::Text(text) => f("body.text", PersonalField::Text(text)),
            MessageBody::Media(media) => {
                f("body.object", PersonalField::Text(&mut media.object));
                f(
                    "body.caption",
                    PersonalField::OptionalText(&mut media.caption),
                );
                f(
                    "body.provider_media",
                    PersonalField::Text(&mut media.provider_media),
                );
            }
            MessageBody::Location(at) => f("body.location", PersonalField::Coordinates(at)),
        }
    }
}

impl Event {
    /// Calls `f` with every personal field of the event and its path (`body.text`,
    /// `details.serial_number`, ...): the one list of what must be sealed and erased.
    pub fn personal_fields_mut(&mut self, mut f: impl FnMut(&'static str, PersonalField<'_>)) {
        match self {
            Event::TicketOpened { customer, .. } => {
                f(
                    "customer.contact",
                    PersonalField::Text(&mut customer.contact),
                );
                f(
                    "customer.display_name",
                    PersonalField::OptionalText(&mut customer.display_name),
                );
            }
            Event::CustomerMessageReceived {
                provider_message_id,
                body,
                ..
            } => {
                f(
                    "provider_message_id",
                    PersonalField::Text(provider_message_id),
                );
                body.personal_fields_mut(&mut f);
            }
            Event::BotMessageSent { body, .. } | Event::AgentMessageSent { body, .. } => {
                body.personal_fields_mut(&mut f)
            }
            Event::NotificationSent {
                body,
                whatsapp_template,
                ..
            } => {
                body.personal_fields_mut(&mut f);
                if let Some(template) = whatsapp_template {
                    f(
                        "whatsapp_template.parameters",
                        PersonalField::Text(&mut template.parameters),
                    );
                }
            }
            Event::DetailsCaptured(details) => {
                f(
                    "details.serial_number",
                    PersonalField::Text(&mut details.serial_number),
                );
                f("details.problem", PersonalField::Text(&mut details.problem));
                f(
                    "details.location",
                    PersonalField::Text(&mut details.location),
                );
            }
            Event::HandoffRequested { summary, .. } => {
                f("summary", PersonalField::Text(summary));
            }
            Event::AgentNoteAdded { text, .. } => f("text", PersonalField::Text(text)),
            Event::RatingReceived { comment, .. } => {
                f("comment", PersonalField::OptionalText(comment));
            }
            Event::MessageDelivered {
                provider_message_id,
                ..
            }
            | Event::MessageRead {
                provider_message_id,
                ..
            } => f(
                "provider_message_id",
                PersonalField::Text(provider_message_id),
            ),
            Event::MessageDeliveryFailed { reason, .. } => {
                f("reason", PersonalField::Text(reason));
            }
            Event::LanguageDetected { .. }
            | Event::EntryPointNoted { .. }
            | Event::ConversationClosedByCustomer
            | Event::CannedReplyUsed { .. }
            | Event::SlaAlarm { .. }
            | Event::TicketRouted { .. }
            | Event::ReferredToStore(_)
            | Event::TicketQueued { .. }
            | Event::AgentAssigned { .. }
            | Event::AgentAccepted { .. }
            | Event::TicketReleased { .. }
            | Event::TicketResolved { .. }
            | Event::ConversationHandedBack { .. }
            | Event::RatingRequested { .. }
            | Event::TicketClosed { .. }
            | Event::TicketAbandoned
            | Event::CustomerErased
            | Event::AttachmentStored { .. }
            | Event::AttachmentNotFetched { .. } => {}
        }
    }

    /// The event with every personal value erased: what a copy kept in memory becomes
    /// once its customer is erased.
    pub fn erase_personal(&mut self) {
        self.personal_fields_mut(|_, value| value.erase());
    }

    /// The event's name as in the proto contract and the `Helpline-Event-Type` header.
    pub fn name(&self) -> &'static str {
        match self {
            Event::TicketOpened { .. } => "TicketOpened",
            Event::CustomerMessageReceived { .. } => "CustomerMessageReceived",
            Event::BotMessageSent { .. } => "BotMessageSent",
            Event::DetailsCaptured(_) => "DetailsCaptured",
            Event::LanguageDetected { .. } => "LanguageDetected",
            Event::EntryPointNoted { .. } => "EntryPointNoted",
            Event::ConversationClosedByCustomer => "ConversationClosedByCustomer",
            Event::HandoffRequested { .. } => "HandoffRequested",
            Event::TicketRouted { .. } => "TicketRouted",
            Event::ReferredToStore(_) => "ReferredToStore",
            Event::TicketQueued { .. } => "TicketQueued",
            Event::AgentAssigned { .. } => "AgentAssigned",
            Event::AgentAccepted { .. } => "AgentAccepted",
            Event::AgentMessageSent { .. } => "AgentMessageSent",
            Event::TicketReleased { .. } => "TicketReleased",
            Event::TicketResolved { .. } => "TicketResolved",
            Event::ConversationHandedBack { .. } => "ConversationHandedBack",
            Event::AgentNoteAdded { .. } => "AgentNoteAdded",
            Event::CannedReplyUsed { .. } => "CannedReplyUsed",
            Event::SlaAlarm {
                level: crate::sla::SlaLevel::Warning,
                ..
            } => "SlaWarning",
            Event::SlaAlarm {
                level: crate::sla::SlaLevel::Breached,
                ..
            } => "SlaBreached",
            Event::RatingRequested { .. } => "RatingRequested",
            Event::NotificationSent { .. } => "NotificationSent",
            Event::RatingReceived { .. } => "RatingReceived",
            Event::TicketClosed { .. } => "TicketClosed",
            Event::TicketAbandoned => "TicketAbandoned",
            Event::MessageDelivered { .. } => "MessageDelivered",
            Event::MessageDeliveryFailed { .. } => "MessageDeliveryFailed",
            Event::MessageRead { .. } => "MessageRead",
            Event::CustomerErased => "CustomerErased",
            Event::AttachmentStored { .. } => "AttachmentStored",
            Event::AttachmentNotFetched { .. } => "AttachmentNotFetched",
        }
    }
}
