//! Ingress, the service that takes customers' messages in: the webhook routes behind the
//! front door, intake (each customer message appended before the webhook's `200`),
//! receipts (the providers' reports on our messages) and the media consumer (attachments
//! fetched after the message is in the log).
//!
//! What differs between providers (signatures, webhook shapes, handshakes) is each
//! channel's folder in `helpline-channels`; the routes serve the channels its registry
//! builds from `[channels.*]`. [`server`] holds the routes: a route reads the body within
//! its limits ([`front_door`]), has the channel's adapter verify and parse it, answers
//! [`WebhookError::status_code`] on error, and appends the results, deduplicated on the
//! provider ids, before answering `200`. [`intake`] appends each customer message (an
//! attachment as the provider's reference) and nothing else: [`media`] runs the durable
//! consumer `media`, which fetches attachments from the log afterwards and records
//! `AttachmentStored` or `AttachmentNotFetched`, so an unreachable media server never
//! costs the customer's words. [`receipts`] records the providers' read and failure
//! receipts on our messages, finding their tickets by the outbound index egress writes.
//!
//! **Invariants.**
//! - A webhook is answered `200` only after its messages are appended, and nothing else
//!   stands before it.
//! - No input makes a route panic or answer 5xx (5xx only when the store is down).
//! - Depends on no other service (egress is a service of its own, `helpline-egress`).

#![forbid(unsafe_code)]

pub mod front_door;
pub mod intake;
pub mod media;
pub mod media_policy;
pub mod receipts;
pub mod server;

pub use helpline_channels::{
    ChannelsConfig, ConfigError, ConversationClosed, Inbound, InboundAdapter, InboundContent,
    InboundMessage, MAX_BODY_BYTES, Receipt, ReceiptStatus, Secret, Watermark, WebhookError,
    WebhookRequest,
};
pub use server::{Ingress, IngressConfig, IngressError};
