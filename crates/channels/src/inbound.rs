//! The normalized values a webhook turns into, the same for every channel.

use helpline_domain::{EntryPoint, MediaKind, Personal};

/// One thing a webhook reported. A single POST may carry several.
#[derive(Clone, Debug, PartialEq)]
// Most of a webhook's parts are messages, and each lives only until it is appended: a box
// per message would cost an allocation to spare a few bytes of the rarer receipts.
#[allow(clippy::large_enum_variant)]
pub enum Inbound {
    /// A customer wrote something.
    Message(InboundMessage),
    /// The provider reports on one of our outbound messages.
    Receipt(Receipt),
    /// The provider reports that everything we sent up to a time was delivered or read,
    /// without naming messages (Messenger's `delivery` without `mids`, and `read`).
    Watermark(Watermark),
    /// The customer closed the conversation on their side (Apple's `close`: they deleted
    /// it): nothing may be sent to them until they write again.
    Closed(ConversationClosed),
    /// The customer's wish about notifications, as the provider reports it: Viber's
    /// `unsubscribed`, Telegram's `my_chat_member` (blocked: `kicked`; unblocked:
    /// `member`), Messenger's `messaging_optins` notification status, WhatsApp's
    /// `user_preferences` (marketing). Recorded in the customer's consent.
    Consent(ProviderConsent),
    /// A valid event helpline does not act on (an unknown type or field, an echo of our
    /// own send, a sticker). The webhook is still answered `200`, or the provider retries.
    Ignored {
        /// Why, for logs: names the event type, never its content.
        reason: String,
    },
}

/// A customer's message, one content part of it.
///
/// A provider message with several parts (text and attachments, or several attachments)
/// becomes one `InboundMessage` per part, in order. The first part keeps the provider's
/// id; part `n > 0` gets `"<id>#<n>"`, so redeliveries yield the same ids again.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundMessage {
    /// The dedupe key: WhatsApp `wamid`, Messenger `mid`, Telegram `update_id`, Viber
    /// `message_token`, web chat `message.id` (with `#<n>` for later parts).
    pub provider_message_id: String,
    /// The customer's address on the channel, where replies go: WhatsApp `wa_id`,
    /// Messenger PSID, Telegram chat id, Viber user id, web chat session id.
    pub contact: Personal<String>,
    pub display_name: Option<Personal<String>>,
    /// When the customer sent it, Unix seconds, as the provider says.
    pub sent_at_unix: Option<i64>,
    pub content: InboundContent,
    /// Our account the message was sent to, where a channel has several: WhatsApp
    /// `metadata.phone_number_id`, Messenger page id.
    pub account: Option<String>,
    /// The customer's language as the provider knows it (ISO 639 primary subtag, from
    /// Apple's `locale`): a new ticket is served in it if the region serves it.
    pub language: Option<String>,
    /// How the customer came in, where the provider says (Apple's "Message us" `intent`
    /// and `group`): a new ticket records it, and routing rules may match it.
    pub entry_point: Option<EntryPoint>,
}

/// A customer's closing of the conversation, as the provider reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConversationClosed {
    /// The provider's id of the event: redeliveries repeat it.
    pub provider_event_id: String,
    /// The customer's address on the channel.
    pub contact: Personal<String>,
}

/// A customer's wish about notifications, as the provider reported it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderConsent {
    /// An id of the report for logs and causation: the provider's event id where it has
    /// one, else derived from the event's own fields (kind, contact, time).
    pub provider_event_id: String,
    /// The customer's address on the channel.
    pub contact: Personal<String>,
    /// Everything (a block, an unsubscribe) or marketing only (WhatsApp's and
    /// Messenger's marketing preferences).
    pub scope: helpline_domain::notify::Scope,
    /// `false`: stop; `true`: start again (unblocked, resumed).
    pub granted: bool,
}

/// The content of one message part.
#[derive(Clone, Debug, PartialEq)]
pub enum InboundContent {
    /// Text exactly as sent, byte for byte.
    Text(Personal<String>),
    Media {
        kind: MediaKind,
        /// What to fetch: the provider's media id (WhatsApp media id, Telegram `file_id`),
        /// a URL (Messenger, Viber, web chat), or Apple's encrypted file
        /// (`apple:{…}`, its `AttachmentRef`).
        provider_media: String,
        mime_type: Option<String>,
        caption: Option<Personal<String>>,
        file_name: Option<Personal<String>>,
    },
    /// A shared location: latitude and longitude in degrees, as in the domain's
    /// `MessageBody::Location`.
    Location(Personal<(f64, f64)>),
}

/// The provider's report on one of our outbound messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's id of our outbound message. Dedupe on `(provider_message_id, status)`:
    /// one message goes through several statuses, in any order.
    pub provider_message_id: String,
    pub status: ReceiptStatus,
    /// The customer the message went to, where the provider says.
    pub contact: Option<Personal<String>>,
    /// When the status was reached, Unix seconds.
    pub at_unix: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiptStatus {
    Sent,
    Delivered,
    Read,
    /// The provider gave up; `reason` is its error code and title, never message content.
    Failed {
        reason: String,
    },
}

/// Everything we sent to `contact` up to `up_to_unix_ms` reached `status`.
///
/// Watermarks are idempotent: keep the highest per contact and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermark {
    /// [`ReceiptStatus::Delivered`] or [`ReceiptStatus::Read`].
    pub status: ReceiptStatus,
    pub contact: Personal<String>,
    /// Unix milliseconds, as precise as the provider's watermark.
    pub up_to_unix_ms: i64,
}

impl Inbound {
    pub(crate) fn ignored(reason: impl Into<String>) -> Self {
        Inbound::Ignored {
            reason: reason.into(),
        }
    }
}

/// The text of a tapped button whose answer names both an id and a title (WhatsApp's
/// interactive and template replies): the id when it is a rating digit `1`–`5`, so the
/// score is read the same whatever the title shows (`⭐⭐⭐⭐⭐`, `sehr gut`); else the
/// title, which is what the customer saw and would have typed; the id when the title is
/// empty. `None` when both are empty.
pub(crate) fn choice_text(id: &str, title: &str) -> Option<String> {
    let rating = matches!(id, "1" | "2" | "3" | "4" | "5");
    [(rating, id), (true, title), (true, id)]
        .into_iter()
        .find(|(usable, text)| *usable && !text.is_empty())
        .map(|(_, text)| text.to_owned())
}

/// Builds the `InboundMessage`s for the parts of one provider message.
pub(crate) struct Parts<'a> {
    pub provider_message_id: &'a str,
    pub contact: &'a str,
    pub display_name: Option<&'a str>,
    pub sent_at_unix: Option<i64>,
    pub account: Option<&'a str>,
}

impl Parts<'_> {
    /// One `Inbound::Message` per content, ids numbered as described on [`InboundMessage`].
    pub(crate) fn into_messages(self, contents: Vec<InboundContent>) -> Vec<Inbound> {
        contents
            .into_iter()
            .enumerate()
            .map(|(index, content)| {
                let provider_message_id = if index == 0 {
                    self.provider_message_id.to_owned()
                } else {
                    format!("{}#{index}", self.provider_message_id)
                };
                Inbound::Message(InboundMessage {
                    provider_message_id,
                    contact: Personal::new(self.contact.to_owned()),
                    display_name: self.display_name.map(|name| Personal::new(name.to_owned())),
                    sent_at_unix: self.sent_at_unix,
                    content,
                    account: self.account.map(str::to_owned),
                    language: None,
                    entry_point: None,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_reads_as_its_rating_digit_else_its_title() {
        assert_eq!(choice_text("5", "⭐⭐⭐⭐⭐").as_deref(), Some("5"));
        assert_eq!(choice_text("1", "schlecht").as_deref(), Some("1"));
        assert_eq!(choice_text("de", "Deutsch").as_deref(), Some("Deutsch"));
        assert_eq!(choice_text("6", "sechs").as_deref(), Some("sechs"));
        assert_eq!(choice_text("lang_de", "").as_deref(), Some("lang_de"));
        assert_eq!(choice_text("", "Ja").as_deref(), Some("Ja"));
        assert_eq!(choice_text("", ""), None);
    }
}
