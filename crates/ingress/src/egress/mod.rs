//! Egress: messages to customers, from the ticket's outbound events to the providers.
//!
//! - [`adapter`]: the [`OutboundAdapter`] trait, the provider request and response, and
//!   the shared reading of an answer; one module per channel ([`whatsapp`], [`messenger`],
//!   [`telegram`], [`viber`], [`web`]) builds its send request and classifies the answer
//!   into a [`SendOutcome`] as `CHANNELS.md` §6 says.
//! - [`sender`]: one HTTP client, a token bucket per channel, and the retry loop
//!   (exponential backoff with jitter, the provider's `Retry-After` honoured, bounded by
//!   attempts and elapsed time), ending in a [`Delivery`]. Time comes from a [`Clock`], so
//!   the loop and the limiter are tested without a wall clock.
//! - [`service`]: [`run`], the durable consumer `egress` over every ticket, which sends
//!   each `BotMessageSent` / `AgentMessageSent` and appends `MessageDelivered` or
//!   `MessageDeliveryFailed`.
//! - `choices` (what the channels share in rendering buttons), [`config`], [`error`].
//!
//! **The 24-hour window (WhatsApp).** The domain's ticket has no "last customer message"
//! time (events carry theirs in the envelope), so egress remembers one per ticket as it
//! follows the log: the consumer sees every ticket event in stream order, so by the time
//! it handles a reply it has seen the customer messages before it. A ticket it has not
//! seen one of (after a restart or a partition handover) is read from the log once.
//! Outside the window the configured template is sent instead of the text (for the
//! rating prompts, the rating template if one is configured); without a template the
//! message fails permanently. A `131047` answer switches to the template once.
//!
//! **Choices.** A bot message's buttons go out as the channel's own: WhatsApp reply
//! buttons (up to 3) or a list (up to 10), Messenger quick replies, a Telegram inline
//! keyboard, a Viber keyboard; the web chat gets them as `quick_replies`. Where a channel
//! has no buttons, or the choices do not fit its limits, they are appended to the text
//! one per line, so the customer can type the answer.
//!
//! **Exactly once towards the customer.** Before sending, egress reads the ticket: an
//! outcome listed for the message (`MessageDelivered`, or `MessageDeliveryFailed` for
//! good) means the provider already answered, so nothing is sent again. After the
//! provider's answer the outcome event is appended at once (one write: the whole window
//! in which a crash sends the message twice; its command id is a UUIDv5 of the message id
//! and the outcome, so a retried append dedupes, and the ticket takes a recorded outcome
//! only once), and for an accepted message the reverse entry
//! `provider.<channel>.<keyed pseudonym of the provider id>` → ticket and message is
//! written at the same time (so that a receipt finds its message; a redelivery that finds the outcome
//! writes it again), then the consumer acknowledges. Both writes are tried until they
//! succeed: a store outage holds the ticket back, it never makes a second send. A
//! ticket's events are handled one at a time in log order (the event store's consumer
//! keeps one lane per ticket and many tickets in flight), so replies to one customer leave
//! in order, and a slow or failing send holds back only its own ticket. A message whose
//! retries ran out is tried again with backoff and holds back the later messages of its
//! ticket until then. On its last try (`max_deliver`) it gets `MessageDeliveryFailed {
//! permanent: false }` and goes to the dead letters, from where an operator can replay
//! it.
//!
//! **What is not covered.** A crash between the provider's acceptance and the append loses
//! the record: the redelivered event is sent a second time. Likewise a timeout after the
//! provider took a message makes the retry a second send. Providers other than the web
//! chat ignore idempotency keys (the `X-Idempotency-Key` header is sent anyway), so
//! neither window can be closed from our side.
//!
//! **Invariants.** Message text and contacts are never logged ([`OutboundMessage`]'s
//! `Debug` prints `***`, requests print neither URL nor body: a Telegram URL holds the bot
//! token). A provider's own words on a failure are never logged or dead-lettered either
//! ([`Reason`]: logs get the channel, status and error code; the words go, sealed, into
//! the failure event), nor is a provider's message id. No message is sent while its
//! ticket lists an outcome for it. Nothing here panics on a provider's answer.

pub mod adapter;
mod choices;
pub mod config;
pub mod error;
pub mod messenger;
pub mod sender;
pub mod service;
pub mod telegram;
pub mod viber;
pub mod web;
pub mod whatsapp;

mod graph;
#[cfg(test)]
mod test_support;

use std::fmt;
use std::time::{Duration, SystemTime};

use helpline_domain::{Channel, MessageId, QuickReply, TicketId};

pub use adapter::{OutboundAdapter, ProviderRequest, ProviderResponse, Reason, Unsendable};
pub use config::{EgressConfig, RateLimit, RetryPolicy, WhatsAppTemplate};
pub use error::EgressError;
pub use sender::{Clock, Delivery, Sender, TokioClock};
pub use service::{OUTBOUND_CONSUMER, ProviderEntry, outbound_bucket, provider_key, run};

/// One message to send to a customer, as the outbound event and the ticket say.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub ticket: TicketId,
    /// helpline's id for the message; every request's idempotency key derives from it.
    pub message: MessageId,
    pub channel: Channel,
    /// The customer's address on the channel (personal data).
    pub contact: String,
    /// The text to send (personal data).
    pub text: String,
    /// The bot's step that wrote the message (`rating`, `ask_language`, …); empty for an
    /// agent's message. WhatsApp picks its template by it.
    pub prompt: String,
    /// Buttons the customer can tap instead of typing, rendered as each channel allows.
    /// The bot's own words, not personal data.
    pub choices: Vec<QuickReply>,
    /// The ticket's language (BCP 47), for the few words egress adds itself.
    pub language: String,
    /// When the customer last wrote, for WhatsApp's 24-hour window; `None` if unknown.
    pub customer_last_message_at: Option<SystemTime>,
}

impl OutboundMessage {
    /// The idempotency key of every request for this message: the message id. The web
    /// chat backend dedupes on it (`event_id`); other providers ignore it.
    pub fn idempotency_key(&self) -> String {
        self.message.0.to_string()
    }
}

/// Prints the ids and the channel only: contact and text are personal data.
impl fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("ticket", &self.ticket)
            .field("message", &self.message)
            .field("channel", &self.channel)
            .field("contact", &"***")
            .field("text", &"***")
            .field("prompt", &self.prompt)
            .field("choices", &self.choices.len())
            .field("language", &self.language)
            .field("customer_last_message_at", &self.customer_last_message_at)
            .finish()
    }
}

/// What a provider's answer to one send attempt means (`CHANNELS.md` §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The provider took the message; its id matches later receipts.
    Accepted { provider_message_id: String },
    /// Worth another attempt: rate limits, 5xx, timeouts. `after` is the provider's own
    /// wait (`Retry-After`, Telegram's `retry_after`); without it the sender backs off.
    Retry {
        after: Option<Duration>,
        reason: Reason,
    },
    /// Another attempt cannot help.
    Permanent { reason: Reason },
    /// The customer's messaging window is closed (WhatsApp `131047`/`470`, Messenger
    /// `2018278`): free text is refused, a template may still go out.
    WindowClosed { reason: Reason },
}

/// What a request carries: the message's text (with its choices), or the channel's
/// re-engagement template in its place (WhatsApp outside the 24-hour window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Text,
    Template,
}
