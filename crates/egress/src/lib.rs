//! Egress, the service that sends messages to customers: from the ticket's outbound
//! events to the providers.
//!
//! - Each channel's `OutboundAdapter` (in `helpline-channels`, the channel's folder)
//!   builds its send request and classifies the answer into a [`SendOutcome`] as
//!   `CHANNELS.md` §6 says; egress holds one per configured channel, from the registry.
//! - [`sender`]: one HTTP client, a token bucket per channel, and the retry loop
//!   (exponential backoff with jitter, the provider's `Retry-After` honoured, bounded by
//!   attempts and elapsed time), ending in a [`Delivery`]. Time comes from a [`Clock`], so
//!   the loop and the limiter are tested without a wall clock.
//! - [`service`]: [`run`], the durable consumer `egress` over every ticket, which sends
//!   each `BotMessageSent` / `AgentMessageSent` and appends `MessageDelivered` or
//!   `MessageDeliveryFailed`.
//! - [`config`], [`error`].
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
//! neither window can be closed from our side. A process that stood still past the
//! event's ack wait (frozen, starved) has lost the event to a redelivery: before each
//! request egress asks (`StoredEvent::outlived`) and, lost, sends nothing and fails
//! transiently, so only a freeze inside the request itself is a second window.
//!
//! **Invariants.** Message text and contacts are never logged ([`OutboundMessage`]'s
//! `Debug` prints `***`, requests print neither URL nor body: a Telegram URL holds the bot
//! token). A provider's own words on a failure are never logged or dead-lettered either
//! ([`Reason`]: logs get the channel, status and error code; the words go, sealed, into
//! the failure event), nor is a provider's message id. No message is sent while its
//! ticket lists an outcome for it. Nothing here panics on a provider's answer.

pub mod config;
pub mod error;
pub mod sender;
pub mod service;

pub use config::{EgressConfig, RateLimit, RetryPolicy, WhatsAppTemplate};
pub use error::EgressError;
pub use helpline_channels::{OutboundMessage, Reason, SendOutcome};
pub use sender::{Clock, Delivery, Sender, TokioClock};
pub use service::{OUTBOUND_CONSUMER, run};
