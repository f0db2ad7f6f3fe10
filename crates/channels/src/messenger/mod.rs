//! Facebook Messenger webhooks (`CHANNELS.md` §2).
//!
//! Signed like WhatsApp with `X-Hub-Signature-256`; one POST carries any number of
//! `entry[].messaging[]` events. Timestamps and watermarks are Unix milliseconds. A
//! tapped quick reply is the customer's text: its payload (our id), not its title.
//!
//! A `messaging_optins` event of `type` `notification_messages` whose
//! `notification_messages_status` is `STOP NOTIFICATIONS` or `RESUME NOTIFICATIONS` is the
//! customer's wish about marketing messages: [`Inbound::Consent`], scope `Marketing`, for
//! the sender's PSID. Every other opt-in (the first opt-in with its token, one-time
//! notification requests, the checkbox plugin's `user_ref`) is ignored, never refused.

use helpline_domain::notify::Scope;
use helpline_domain::{Channel, MediaKind, Personal};
use serde::Deserialize;
use serde::de::IgnoredAny;

pub use crate::meta::verify_handshake;

use crate::adapter::{InboundAdapter, WebhookRequest};
use crate::error::{ConfigError, WebhookError};
use crate::inbound::{
    Inbound, InboundContent, Parts, ProviderConsent, Receipt, ReceiptStatus, Watermark, choice_text,
};
use crate::json::{self, type_label};
use crate::meta;
use crate::secret::{Secret, require_secrets};

mod outbound;

pub use outbound::MessengerOutbound;

const OBJECT: &str = "page";

/// `[channels.messenger]`: the Facebook app's secret (signs every POST) and the token the
/// GET handshake must present.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessengerConfig {
    pub app_secret: Secret,
    pub verify_token: Secret,
    /// The Page access token the Send API takes.
    #[serde(default)]
    pub page_access_token: Secret,
    /// The Graph API, with its version; tests and the simulator point it at localhost.
    #[serde(default = "crate::whatsapp::default_graph_api")]
    pub api_base_url: String,
}

/// Empty secrets (refused by the adapter) and the provider's real API.
impl Default for MessengerConfig {
    fn default() -> Self {
        Self {
            app_secret: Secret::default(),
            verify_token: Secret::default(),
            page_access_token: Secret::default(),
            api_base_url: crate::whatsapp::default_graph_api(),
        }
    }
}

/// Whether the provider reports on a message after accepting it (receipts). Messenger sends `delivery` and `read` events for the Page's messages.
pub const RECEIPTS: bool = true;

/// Where attachments come from unless `ingress.media_hosts.messenger` says otherwise. Messenger's attachment URLs (Facebook's CDNs).
pub const MEDIA_HOSTS: &[&str] = &["fbcdn.net", "fbsbx.com"];

/// This channel's `[channels.messenger]` section (the registry's name for it).
pub type Config = MessengerConfig;

/// The section's secrets, by their configuration keys.
pub fn secrets(config: &Config) -> Vec<(&'static str, &Secret)> {
    vec![
        ("channels.messenger.app_secret", &config.app_secret),
        ("channels.messenger.verify_token", &config.verify_token),
        (
            "channels.messenger.page_access_token",
            &config.page_access_token,
        ),
    ]
}

/// The webhook side, for the registry.
pub fn inbound(config: &Config) -> Result<Box<dyn InboundAdapter>, ConfigError> {
    Ok(Box::new(MessengerAdapter::new(config.clone())?))
}

/// The sending side, for the registry.
pub fn outbound(
    config: &Config,
    _settings: &crate::OutboundSettings,
) -> Result<Box<dyn crate::OutboundAdapter>, ConfigError> {
    Ok(Box::new(MessengerOutbound::new(config.clone())?))
}

#[derive(Debug)]
pub struct MessengerAdapter {
    config: MessengerConfig,
}

impl MessengerAdapter {
    pub fn new(config: MessengerConfig) -> Result<Self, ConfigError> {
        require_secrets(
            Channel::Messenger,
            &[
                ("app_secret", &config.app_secret),
                ("verify_token", &config.verify_token),
            ],
        )?;
        Ok(Self { config })
    }
}

impl InboundAdapter for MessengerAdapter {
    fn channel(&self) -> Channel {
        Channel::Messenger
    }

    fn handshake(&self, query: Option<&str>) -> Option<Result<String, WebhookError>> {
        Some(meta::handshake_query(query, &self.config.verify_token))
    }

    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        crate::adapter::check_body_size(request.body)?;
        meta::verify_hub_signature(&self.config.app_secret, request)
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<Inbound>, WebhookError> {
        let envelope: Envelope = json::from_body(body)?;
        if envelope.object != OBJECT {
            return Ok(vec![Inbound::ignored(format!(
                "messenger object `{}`",
                type_label(&envelope.object)
            ))]);
        }
        let entries: Vec<Entry> =
            json::from_raw(json::required(envelope.entry.as_ref(), "entry")?)?;
        let mut inbound = Vec::new();
        for entry in entries {
            // `standby` (handover protocol, we are not the primary receiver) and page
            // `changes` are not customer conversations we own.
            let Some(messaging) = entry.messaging else {
                inbound.push(Inbound::ignored("messenger entry without messaging"));
                continue;
            };
            for event in messaging {
                inbound.extend(read_event(event, entry.id.as_deref())?);
            }
        }
        Ok(inbound)
    }
}

fn read_event(event: Messaging, page: Option<&str>) -> Result<Vec<Inbound>, WebhookError> {
    if let Some(message) = event.message {
        if message.is_echo {
            return Ok(vec![Inbound::ignored("messenger echo of our own message")]);
        }
        return read_message(message, &event.sender, event.timestamp, page);
    }
    if let Some(delivery) = event.delivery {
        let contact = sender_id(&event.sender)?;
        if delivery.mids.is_empty() {
            return Ok(vec![watermark(
                ReceiptStatus::Delivered,
                contact,
                delivery.watermark,
            )]);
        }
        return delivery
            .mids
            .iter()
            .map(|mid| {
                Ok(Inbound::Receipt(Receipt {
                    provider_message_id: json::non_empty(mid, "delivery.mids[]")?.to_owned(),
                    status: ReceiptStatus::Delivered,
                    contact: Some(Personal::new(contact.to_owned())),
                    at_unix: Some(json::millis_to_seconds(delivery.watermark)),
                }))
            })
            .collect();
    }
    if let Some(postback) = event.postback {
        return read_postback(postback, &event.sender, event.timestamp, page);
    }
    if let Some(read) = event.read {
        let contact = sender_id(&event.sender)?;
        return Ok(vec![watermark(
            ReceiptStatus::Read,
            contact,
            read.watermark,
        )]);
    }
    if let Some(optin) = &event.optin {
        return Ok(vec![read_optin(optin, &event.sender, event.timestamp)]);
    }
    Ok(vec![Inbound::ignored(
        "messenger event without message, delivery or read",
    )])
}

/// The customer stopped or resumed marketing messages (`notification_messages_status`),
/// keyed `messenger:optin:<psid>:<timestamp in ms>`. Read leniently: any other opt-in,
/// status or shape, or one without a sender, is ignored.
fn read_optin(
    optin: &serde_json::Value,
    sender: &Option<Party>,
    timestamp: Option<i64>,
) -> Inbound {
    let Ok(optin) = serde_json::from_value::<Optin>(optin.clone()) else {
        return Inbound::ignored("messenger optin of an unknown shape");
    };
    if optin.kind.as_deref() != Some("notification_messages") {
        return Inbound::ignored(format!(
            "messenger optin `{}`",
            type_label(optin.kind.as_deref().unwrap_or("none"))
        ));
    }
    let granted = match optin.notification_messages_status.as_deref() {
        Some("STOP NOTIFICATIONS") => false,
        Some("RESUME NOTIFICATIONS") => true,
        // The first opt-in, which brings the token, has no status.
        status => {
            let what = if status.is_some() { "another" } else { "no" };
            return Inbound::ignored(format!(
                "messenger optin `notification_messages` with {what} status"
            ));
        }
    };
    let Some(psid) = sender
        .as_ref()
        .and_then(|sender| sender.id.as_deref())
        .filter(|id| !id.is_empty())
    else {
        return Inbound::ignored("messenger optin without a sender");
    };
    let at = timestamp.map_or_else(|| "unknown".to_owned(), |at| at.to_string());
    Inbound::Consent(ProviderConsent {
        provider_event_id: format!("messenger:optin:{psid}:{at}"),
        contact: Personal::new(psid.to_owned()),
        scope: Scope::Marketing,
        granted,
    })
}

fn read_message(
    message: MessageObject,
    sender: &Option<Party>,
    timestamp: Option<i64>,
    page: Option<&str>,
) -> Result<Vec<Inbound>, WebhookError> {
    let mid = json::non_empty(&message.mid, "message.mid")?;
    let contact = sender_id(sender)?;
    let mut contents = Vec::new();
    // A tapped quick reply carries its title as `text` and the id as the payload: read
    // as every channel's taps are (`choice_text`: a rating digit by its id, else the
    // title the customer saw).
    let text = match (&message.quick_reply, message.text) {
        (Some(reply), text) => choice_text(&reply.payload, text.as_deref().unwrap_or("")),
        (None, text) => text,
    };
    if let Some(text) = text {
        contents.push(InboundContent::Text(Personal::new(text)));
    }
    for attachment in &message.attachments {
        if let Some(content) = read_attachment(attachment)? {
            contents.push(content);
        }
    }
    if contents.is_empty() {
        return Ok(vec![Inbound::ignored(
            "messenger message without text or supported attachments",
        )]);
    }
    let parts = Parts {
        provider_message_id: mid,
        contact,
        display_name: None,
        sent_at_unix: timestamp.map(json::millis_to_seconds),
        account: page,
    };
    Ok(parts.into_messages(contents))
}

/// A tapped postback button (a structured message's button, the persistent menu, "Get
/// Started"): the customer's answer like a quick reply, by `choice_text`. Its `mid` is the
/// dedupe key; an older postback without one is keyed by its sender and time, which a
/// redelivery repeats.
fn read_postback(
    postback: Postback,
    sender: &Option<Party>,
    timestamp: Option<i64>,
    page: Option<&str>,
) -> Result<Vec<Inbound>, WebhookError> {
    let contact = sender_id(sender)?;
    let Some(text) = choice_text(&postback.payload, &postback.title) else {
        return Ok(vec![Inbound::ignored(
            "messenger postback without title or payload",
        )]);
    };
    let derived;
    let id = match postback.mid.as_deref().filter(|mid| !mid.is_empty()) {
        Some(mid) => mid,
        None => {
            let at = json::required(timestamp, "timestamp of a postback without mid")?;
            derived = format!("postback:{contact}:{at}");
            &derived
        }
    };
    let parts = Parts {
        provider_message_id: id,
        contact,
        display_name: None,
        sent_at_unix: timestamp.map(json::millis_to_seconds),
        account: page,
    };
    Ok(parts.into_messages(vec![InboundContent::Text(Personal::new(text))]))
}

/// One attachment's content, or `None` for kinds helpline does not take (stickers,
/// templates, fallbacks).
fn read_attachment(attachment: &Attachment) -> Result<Option<InboundContent>, WebhookError> {
    let kind = match attachment.kind.as_str() {
        "image" => MediaKind::Image,
        "video" => MediaKind::Video,
        "audio" => MediaKind::Audio,
        "file" => MediaKind::Document,
        "location" => {
            let payload = json::required(attachment.payload.as_ref(), "attachments[].payload")?;
            let coordinates = json::required(
                payload.coordinates.as_ref(),
                "attachments[].payload.coordinates",
            )?;
            return Ok(Some(InboundContent::Location(Personal::new(
                json::coordinates(
                    coordinates.lat,
                    coordinates.long,
                    "attachments[].payload.coordinates",
                )?,
            ))));
        }
        _ => return Ok(None),
    };
    let payload = json::required(attachment.payload.as_ref(), "attachments[].payload")?;
    if payload.sticker_id.is_some() {
        return Ok(None);
    }
    let url = json::required(payload.url.as_deref(), "attachments[].payload.url")?;
    Ok(Some(InboundContent::Media {
        kind,
        provider_media: json::non_empty(url, "attachments[].payload.url")?.to_owned(),
        mime_type: None,
        caption: None,
        file_name: None,
    }))
}

fn sender_id(sender: &Option<Party>) -> Result<&str, WebhookError> {
    let sender = json::required(sender.as_ref(), "sender")?;
    let id = json::required(sender.id.as_deref(), "sender.id")?;
    json::non_empty(id, "sender.id")
}

fn watermark(status: ReceiptStatus, contact: &str, up_to_unix_ms: i64) -> Inbound {
    Inbound::Watermark(Watermark {
        status,
        contact: Personal::new(contact.to_owned()),
        up_to_unix_ms,
    })
}

#[derive(Deserialize)]
struct Envelope {
    object: String,
    /// Read only once `object` says this is a page.
    entry: Option<json::Raw>,
}

#[derive(Deserialize)]
struct Entry {
    /// The page id.
    id: Option<String>,
    messaging: Option<Vec<Messaging>>,
}

#[derive(Deserialize)]
struct Messaging {
    sender: Option<Party>,
    /// Unix milliseconds.
    #[serde(default, deserialize_with = "json::lenient_integer")]
    timestamp: Option<i64>,
    message: Option<MessageObject>,
    delivery: Option<Delivery>,
    read: Option<Read>,
    postback: Option<Postback>,
    /// `messaging_optins`: kept as it came, read by `read_optin`, so that no shape of an
    /// opt-in can make the event malformed.
    optin: Option<serde_json::Value>,
}

/// `{"type":"notification_messages","notification_messages_status"?,"payload",
/// "notification_messages_token",…}`: only the type and the status are read.
#[derive(Deserialize)]
struct Optin {
    #[serde(rename = "type")]
    kind: Option<String>,
    notification_messages_status: Option<String>,
}

/// `{"mid"?,"title","payload","referral"?}`
#[derive(Deserialize)]
struct Postback {
    mid: Option<String>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    payload: String,
}

#[derive(Deserialize)]
struct Party {
    id: Option<String>,
}

#[derive(Deserialize)]
struct MessageObject {
    mid: String,
    text: Option<String>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    #[serde(default)]
    is_echo: bool,
    quick_reply: Option<QuickReply>,
}

/// `{"payload":"<the id we sent>"}`
#[derive(Deserialize)]
struct QuickReply {
    payload: String,
}

#[derive(Deserialize)]
struct Attachment {
    #[serde(rename = "type")]
    kind: String,
    payload: Option<Payload>,
}

#[derive(Deserialize)]
struct Payload {
    url: Option<String>,
    coordinates: Option<Coordinates>,
    sticker_id: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Coordinates {
    lat: f64,
    long: f64,
}

#[derive(Deserialize)]
struct Delivery {
    #[serde(default)]
    mids: Vec<String>,
    /// Unix milliseconds.
    watermark: i64,
}

#[derive(Deserialize)]
struct Read {
    /// Unix milliseconds.
    watermark: i64,
}
