//! The channel gateway's pure core: verifying and reading inbound webhooks of the
//! messaging channels (WhatsApp, Messenger, Telegram, Viber, helpline's web chat) into
//! normalized [`Inbound`] values.
//!
//! The HTTP routes and the event-store wiring sit on top of this crate: a route builds a
//! [`WebhookRequest`] from what it received, calls [`InboundAdapter::receive`] (or
//! `verify` and `parse` in turn), answers [`WebhookError::status_code`] on error, and
//! appends the results, deduplicated on the provider ids, before answering `200`.
//!
//! Modules: [`channels`] (one module per channel: its config, its adapter, the provider's
//! shapes), [`adapter`] (the [`InboundAdapter`] trait and the request), [`inbound`] (the
//! normalized values), [`error`], [`secret`] (a `Debug`-safe wrapper for secrets).
//!
//! [`egress`] is the other direction and, unlike the rest, does I/O: the durable
//! consumer `egress` sends each bot or agent message through the channel's outbound
//! adapter (HTTP to the provider, retries, rate limits, WhatsApp's 24-hour window and
//! templates), records the provider's answer in the `helpline-<region>-outbound` KV bucket
//! before appending `MessageDelivered` / `MessageDeliveryFailed`, and so sends each
//! message at most once (its module doc names what remains uncovered). [`receipts`]
//! records the providers' read and failure receipts on those messages, finding their
//! tickets by the reverse entries egress writes. [`intake`] appends each customer message
//! (an attachment as the provider's reference) before the webhook's `200`, and nothing
//! else: [`media`] runs the durable consumer `media`, which fetches attachments from the
//! log afterwards and records `AttachmentStored` or `AttachmentNotFetched`, so an
//! unreachable media server never costs the customer's words. The invariants below are
//! the inbound core's.
//!
//! **Invariants.**
//! - No I/O, no clock, no randomness: every function is a pure function of its input.
//!   The one check that needs the time, the web chat's `sent_at` window, takes it as an
//!   argument (`WebAdapter::verify_at`); the adapter's `verify` passes it what the clock
//!   it was built with says (the system clock in service, a fixed time in tests).
//! - Bodies over [`MAX_BODY_BYTES`] are refused before anything else is done with them.
//! - Verification runs on the raw body before any parsing, and compares signatures and
//!   secrets in constant time over their full length.
//! - Never panics on input: any bytes give `Ok` or a [`WebhookError`]. Invalid UTF-8 and
//!   JSON nested 128 levels or deeper are malformed, checked before serde_json runs, so
//!   deep nesting cannot overflow the stack.
//! - Valid events helpline does not act on are [`Inbound::Ignored`], never errors: an
//!   error makes the provider retry the same delivery.
//! - Text is kept exactly as sent, byte for byte (including `\u0000` inside JSON strings).
//! - Errors and `Ignored` reasons never carry secrets or personal data; personal values
//!   are [`Personal`](helpline_domain::Personal), whose `Debug` prints `***`.

#![forbid(unsafe_code)]

pub mod adapter;
pub mod channels;
pub mod egress;
pub mod error;
pub mod front_door;
pub mod inbound;
pub mod intake;
mod json;
pub mod media;
pub mod media_policy;
pub mod receipts;
pub mod secret;
pub mod server;
mod signature;

pub use adapter::{InboundAdapter, MAX_BODY_BYTES, WebhookRequest};
pub use error::{ConfigError, WebhookError};
pub use inbound::{Inbound, InboundContent, InboundMessage, Receipt, ReceiptStatus, Watermark};
pub use secret::Secret;
pub use server::{ChannelsConfig, Ingress, IngressConfig, IngressError};
