//! Viber REST bot webhooks (`CHANNELS.md` §4).
//!
//! Signed with `X-Viber-Content-Signature` (or `?sig=`): hex HMAC-SHA256 keyed with the
//! bot's auth token, no prefix. One POST is one callback, told apart by `event`.
//! `message_token` is a 64-bit integer beyond 2^53 and is never read as a float.
//!
//! `unsubscribed` (the customer unsubscribed: nothing may be sent until they write or
//! subscribe again) and `subscribed` are the customer's wish about every notification:
//! [`Inbound::Consent`], scope `All`. One of them without a user is ignored, never
//! refused.

use helpline_domain::notify::Scope;
use helpline_domain::{Channel, MediaKind, Personal};
use serde::Deserialize;
use serde_json::Value;

use crate::adapter::{InboundAdapter, WebhookRequest};
use crate::error::{ConfigError, WebhookError};
use crate::inbound::{Inbound, InboundContent, Parts, ProviderConsent, Receipt, ReceiptStatus};
use crate::json::{self, type_label};
use crate::secret::{Secret, require_secrets};
use crate::signature::{single_header, single_query_param, verify_hmac_sha256};

mod outbound;

pub use outbound::ViberOutbound;

const SIGNATURE_HEADER: &str = "x-viber-content-signature";
const SIGNATURE_PARAM: &str = "sig";

/// `[channels.viber]`: the bot's auth token, which also keys the callback signature.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViberConfig {
    /// Signs webhooks and authenticates sends (`X-Viber-Auth-Token`).
    pub auth_token: Secret,
    /// The REST API; tests and the simulator point it at localhost.
    #[serde(default = "default_viber_api")]
    pub api_base_url: String,
}

/// Empty secrets (refused by the adapter) and the provider's real API.
impl Default for ViberConfig {
    fn default() -> Self {
        Self {
            auth_token: Secret::default(),
            api_base_url: default_viber_api(),
        }
    }
}

fn default_viber_api() -> String {
    "https://chatapi.viber.com/pa".to_owned()
}

/// Whether the provider reports on a message after accepting it (receipts). Viber sends `delivered`, `seen` and `failed` callbacks naming the `message_token`.
pub const RECEIPTS: bool = true;

/// Where attachments come from unless `ingress.media_hosts.viber` says otherwise. Viber's media URLs.
pub const MEDIA_HOSTS: &[&str] = &["viber.com"];

/// This channel's `[channels.viber]` section (the registry's name for it).
pub type Config = ViberConfig;

/// The section's secrets, by their configuration keys.
pub fn secrets(config: &Config) -> Vec<(&'static str, &Secret)> {
    vec![("channels.viber.auth_token", &config.auth_token)]
}

/// The webhook side, for the registry.
pub fn inbound(config: &Config) -> Result<Box<dyn InboundAdapter>, ConfigError> {
    Ok(Box::new(ViberAdapter::new(config.clone())?))
}

/// The sending side, for the registry.
pub fn outbound(
    config: &Config,
    settings: &crate::OutboundSettings,
) -> Result<Box<dyn crate::OutboundAdapter>, ConfigError> {
    Ok(Box::new(ViberOutbound::new(
        config.clone(),
        settings.viber_sender_name.clone(),
    )?))
}

#[derive(Debug)]
pub struct ViberAdapter {
    config: ViberConfig,
}

impl ViberAdapter {
    pub fn new(config: ViberConfig) -> Result<Self, ConfigError> {
        require_secrets(Channel::Viber, &[("auth_token", &config.auth_token)])?;
        Ok(Self { config })
    }
}

impl InboundAdapter for ViberAdapter {
    fn channel(&self) -> Channel {
        Channel::Viber
    }

    /// The header wins when present; `?sig=` is read only without it, as Viber's SDK does.
    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        crate::adapter::check_body_size(request.body)?;
        let signature = match single_header(request.headers, SIGNATURE_HEADER)? {
            Some(header) => header,
            None => single_query_param(request.query, SIGNATURE_PARAM)?
                .map(str::as_bytes)
                .ok_or_else(|| {
                    WebhookError::unauthorized("X-Viber-Content-Signature and ?sig= are missing")
                })?,
        };
        verify_hmac_sha256(
            self.config.auth_token.expose().as_bytes(),
            request.body,
            signature,
        )
    }

    /// Reads the callback's `event` first, then the whole body again into the type that
    /// event names: two passes over a flat callback of a few hundred bytes, no tree of
    /// `serde_json::Value`s built and read again (subscriptions, rare and read leniently,
    /// still are).
    fn parse(&self, body: &[u8]) -> Result<Vec<Inbound>, WebhookError> {
        let kind: CallbackKind = json::from_body(body)?;
        let event: String = json::from_raw(&json::required(kind.event, "event")?)
            .map_err(|_| WebhookError::malformed("event is not a string"))?;
        match event.as_str() {
            "message" => read_message(json::from_checked(body)?),
            "delivered" | "seen" | "failed" => {
                let receipt: ReceiptCallback = json::from_checked(body)?;
                let status = match event.as_str() {
                    "delivered" => ReceiptStatus::Delivered,
                    "seen" => ReceiptStatus::Read,
                    _ => ReceiptStatus::Failed {
                        reason: receipt
                            .desc
                            .clone()
                            .unwrap_or_else(|| "no description given".to_owned()),
                    },
                };
                Ok(vec![read_receipt(status, receipt)])
            }
            "subscribed" | "unsubscribed" => {
                Ok(vec![read_subscription(&event, &json::from_checked(body)?)])
            }
            // `webhook` (the check during set_webhook), `conversation_started` (the
            // customer opened the chat, which subscribes no one), and whatever Viber adds.
            other => Ok(vec![Inbound::ignored(format!(
                "viber event `{}`",
                type_label(other)
            ))]),
        }
    }
}

fn read_message(callback: MessageCallback) -> Result<Vec<Inbound>, WebhookError> {
    let message = callback.message;
    let content = match message.kind.as_str() {
        "text" => {
            let text = json::required(message.text, "message.text")?;
            InboundContent::Text(Personal::new(text))
        }
        "picture" => media(MediaKind::Image, message)?,
        "video" => media(MediaKind::Video, message)?,
        "file" => media(MediaKind::Document, message)?,
        "location" => {
            let location = json::required(message.location, "message.location")?;
            let coordinates = json::coordinates(location.lat, location.lon, "message.location")?;
            InboundContent::Location(Personal::new(coordinates))
        }
        // sticker, contact, url, rich_media, …
        other => {
            return Ok(vec![Inbound::ignored(format!(
                "viber message type `{}`",
                type_label(other)
            ))]);
        }
    };
    let parts = Parts {
        provider_message_id: &callback.message_token,
        contact: json::non_empty(&callback.sender.id, "sender.id")?,
        display_name: callback.sender.name.as_deref(),
        sent_at_unix: callback.timestamp.map(json::millis_to_seconds),
        account: None,
    };
    Ok(parts.into_messages(vec![content]))
}

/// `subscribed` (`user.id`) grants, `unsubscribed` (`user_id`) withdraws, every
/// notification. The id is the callback's `message_token`, else
/// `viber:<event>:<user>:<timestamp in ms>`. Without a user it is ignored: a callback Viber
/// really sent is never refused.
fn read_subscription(event: &str, callback: &Value) -> Inbound {
    let granted = event == "subscribed";
    let user = if granted {
        callback.get("user").and_then(|user| user.get("id"))
    } else {
        callback.get("user_id")
    };
    let Some(user) = user.and_then(Value::as_str).filter(|user| !user.is_empty()) else {
        return Inbound::ignored(format!("viber event `{event}` without a user"));
    };
    let token = callback.get("message_token").and_then(|token| {
        token
            .as_u64()
            .map(|token| token.to_string())
            .or_else(|| token.as_i64().map(|token| token.to_string()))
    });
    let provider_event_id = token.unwrap_or_else(|| {
        let at = callback
            .get("timestamp")
            .and_then(|at| json::lenient_integer(at).ok().flatten())
            .map_or_else(|| "unknown".to_owned(), |at| at.to_string());
        format!("viber:{event}:{user}:{at}")
    });
    Inbound::Consent(ProviderConsent {
        provider_event_id,
        contact: Personal::new(user.to_owned()),
        scope: Scope::All,
        granted,
    })
}

fn media(kind: MediaKind, message: ViberMessage) -> Result<InboundContent, WebhookError> {
    let url = json::required(message.media, "message.media")?;
    json::non_empty(&url, "message.media")?;
    Ok(InboundContent::Media {
        kind,
        provider_media: url,
        mime_type: None,
        // Viber sends the caption as `text`, empty when there is none.
        caption: message
            .text
            .filter(|text| !text.is_empty())
            .map(Personal::new),
        file_name: message.file_name.map(Personal::new),
    })
}

fn read_receipt(status: ReceiptStatus, callback: ReceiptCallback) -> Inbound {
    Inbound::Receipt(Receipt {
        provider_message_id: callback.message_token,
        status,
        contact: callback.user_id.map(Personal::new),
        at_unix: callback.timestamp.map(json::millis_to_seconds),
    })
}

/// Every callback's kind, `event`; its other fields depend on it.
#[derive(Deserialize)]
struct CallbackKind {
    #[serde(default)]
    event: Option<json::Raw>,
}

#[derive(Deserialize)]
struct MessageCallback {
    /// Unix milliseconds.
    #[serde(default, deserialize_with = "json::lenient_integer")]
    timestamp: Option<i64>,
    #[serde(deserialize_with = "json::integer_id")]
    message_token: String,
    sender: Sender,
    message: ViberMessage,
}

#[derive(Deserialize)]
struct Sender {
    id: String,
    name: Option<String>,
}

#[derive(Deserialize)]
struct ViberMessage {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    media: Option<String>,
    file_name: Option<String>,
    location: Option<Location>,
}

#[derive(Deserialize)]
struct Location {
    lat: f64,
    lon: f64,
}

#[derive(Deserialize)]
struct ReceiptCallback {
    /// Unix milliseconds.
    #[serde(default, deserialize_with = "json::lenient_integer")]
    timestamp: Option<i64>,
    /// The token Viber returned for our outbound message.
    #[serde(deserialize_with = "json::integer_id")]
    message_token: String,
    user_id: Option<String>,
    desc: Option<String>,
}
