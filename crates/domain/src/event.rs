//! Events: the facts about a ticket, in the past tense. One variant per event of
//! `proto/helpline/v1/events.proto`; the event store converts between the two.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, MessageId, QueueId, StoreId, TicketId};
use crate::personal::Personal;

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

/// What the bot collects before a handoff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    pub product: String,
    pub serial_number: Personal<String>,
    pub problem: Personal<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MediaKind {
    Image,
    Document,
    Audio,
    Video,
}

/// An attachment, stored in the object store; events carry only the reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    pub kind: MediaKind,
    /// Name of the object in the region's media bucket; empty when the attachment was
    /// over the region's size cap and not kept.
    pub object: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub caption: Option<Personal<String>>,
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
        /// The provider's id for the message; redeliveries carry the same one.
        provider_message_id: String,
        body: MessageBody,
    },
    BotMessageSent {
        message: MessageId,
        body: MessageBody,
    },
    DetailsCaptured(Details),
    HandoffRequested {
        reason: HandoffReason,
    },
    TicketRouted {
        /// The routing rule that matched, for audits.
        rule: String,
        destination: RouteDestination,
    },
    ReferredToStore {
        store: StoreId,
    },
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
    RatingRequested {
        message: MessageId,
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
        provider_message_id: String,
    },
    MessageDeliveryFailed {
        message: MessageId,
        reason: String,
        permanent: bool,
    },
    /// The provider reports that the customer read an outbound message.
    MessageRead {
        message: MessageId,
        provider_message_id: String,
    },
    CustomerErased,
}

impl Event {
    /// The event's name as in the proto contract and the `Helpline-Event-Type` header.
    pub fn name(&self) -> &'static str {
        match self {
            Event::TicketOpened { .. } => "TicketOpened",
            Event::CustomerMessageReceived { .. } => "CustomerMessageReceived",
            Event::BotMessageSent { .. } => "BotMessageSent",
            Event::DetailsCaptured(_) => "DetailsCaptured",
            Event::HandoffRequested { .. } => "HandoffRequested",
            Event::TicketRouted { .. } => "TicketRouted",
            Event::ReferredToStore { .. } => "ReferredToStore",
            Event::TicketQueued { .. } => "TicketQueued",
            Event::AgentAssigned { .. } => "AgentAssigned",
            Event::AgentAccepted { .. } => "AgentAccepted",
            Event::AgentMessageSent { .. } => "AgentMessageSent",
            Event::TicketReleased { .. } => "TicketReleased",
            Event::TicketResolved { .. } => "TicketResolved",
            Event::RatingRequested { .. } => "RatingRequested",
            Event::RatingReceived { .. } => "RatingReceived",
            Event::TicketClosed { .. } => "TicketClosed",
            Event::TicketAbandoned => "TicketAbandoned",
            Event::MessageDelivered { .. } => "MessageDelivered",
            Event::MessageDeliveryFailed { .. } => "MessageDeliveryFailed",
            Event::MessageRead { .. } => "MessageRead",
            Event::CustomerErased => "CustomerErased",
        }
    }
}
