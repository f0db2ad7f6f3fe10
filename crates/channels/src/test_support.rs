//! Shared by the channels' unit tests.

use bytes::Bytes;
use helpline_domain::{Channel, MessageId, TicketId};
use http::HeaderMap;
use uuid::Uuid;

use crate::outbound::{OutboundMessage, ProviderResponse};

/// A provider's answer with `status` and `body` and no headers.
pub(crate) fn answer(status: u16, body: &str) -> ProviderResponse {
    ProviderResponse {
        status,
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_owned()),
    }
}

/// A message to `contact` on `channel` saying `text`, as egress hands it to an adapter:
/// ticket 1, message 2, in German, no prompt, no choices, not a notification.
pub(crate) fn outbound(channel: Channel, contact: &str, text: &str) -> OutboundMessage {
    OutboundMessage {
        ticket: TicketId(Uuid::from_u128(1)),
        message: MessageId(Uuid::from_u128(2)),
        channel,
        contact: contact.to_owned(),
        text: text.to_owned(),
        prompt: String::new(),
        choices: Vec::new(),
        language: "de".to_owned(),
        customer_last_message_at: None,
        notification: None,
    }
}
