//! helpline's own web chat webhook (`CHANNELS.md` §5).
//!
//! Signed with `X-Helpline-Signature: sha256=<hex HMAC-SHA256(shared_secret, raw body)>`,
//! sent as `application/json`. Our schema, so it is strict: unknown fields, unknown
//! `type`s and duplicate keys are malformed, not ignored.
//!
//! A signature alone would let whoever recorded a webhook send it again days later, so an
//! event's `sent_at` must also lie within `sent_at_tolerance_secs` of helpline's clock,
//! before or after (a day unless configured: a retry of the original bytes after an
//! outage must still be taken); dedupe on `message.id` keeps a retry one message.

use std::time::SystemTime;

use helpline_domain::{Channel, MediaKind, Personal};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::adapter::{InboundAdapter, WebhookRequest};
use crate::error::{ConfigError, WebhookError};
use crate::inbound::{Inbound, InboundContent, Parts, Receipt, ReceiptStatus};
use crate::json;
use crate::secret::{Secret, require_secrets};
use crate::signature::{single_header, verify_hmac_sha256};

mod outbound;

pub use outbound::WebOutbound;

const SIGNATURE_HEADER: &str = "x-helpline-signature";
const SIGNATURE_PREFIX: &[u8] = b"sha256=";
const VERSION: u64 = 1;

/// How far `sent_at` may lie from helpline's clock unless configured: a day. The site's
/// backend retries a refused or unanswered event with backoff, possibly with the bytes it
/// first signed (CHANNELS.md §5), and such a retry must still be taken after an outage
/// of hours — dedupe on `message.id` keeps it one message; a webhook recorded and sent
/// again days later is refused.
pub const DEFAULT_SENT_AT_TOLERANCE_SECS: u64 = 24 * 60 * 60;

/// Where the adapter reads the time that `sent_at` is held against.
pub type Clock = fn() -> SystemTime;

/// `[channels.web]`: the secret shared with the site's chat backend.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Signs webhooks in both directions (`X-Helpline-Signature`).
    pub shared_secret: Secret,
    /// The site's chat backend, which takes helpline's replies.
    #[serde(default)]
    pub callback_url: String,
    /// How far an event's `sent_at` may lie from helpline's clock, in seconds, before or
    /// after; an event outside is refused (401) as a replay.
    #[serde(default = "default_sent_at_tolerance_secs")]
    pub sent_at_tolerance_secs: u64,
}

fn default_sent_at_tolerance_secs() -> u64 {
    DEFAULT_SENT_AT_TOLERANCE_SECS
}

/// Empty secrets (refused by the adapter) and the provider's real API.
impl Default for WebConfig {
    fn default() -> Self {
        Self {
            shared_secret: Secret::default(),
            callback_url: String::new(),
            sent_at_tolerance_secs: DEFAULT_SENT_AT_TOLERANCE_SECS,
        }
    }
}

/// Whether the provider reports on a message after accepting it (receipts). The web chat page reports each message delivered and read.
pub const RECEIPTS: bool = true;

/// Where attachments come from unless `ingress.media_hosts.web` says otherwise. None until configured: the site's own upload host.
pub const MEDIA_HOSTS: &[&str] = &[];

/// This channel's `[channels.web]` section (the registry's name for it).
pub type Config = WebConfig;

/// The section's secrets, by their configuration keys.
pub fn secrets(config: &Config) -> Vec<(&'static str, &Secret)> {
    vec![("channels.web.shared_secret", &config.shared_secret)]
}

/// The webhook side, for the registry.
pub fn inbound(config: &Config) -> Result<Box<dyn InboundAdapter>, ConfigError> {
    Ok(Box::new(WebAdapter::new(config.clone())?))
}

/// The sending side, for the registry.
pub fn outbound(
    config: &Config,
    _settings: &crate::OutboundSettings,
) -> Result<Box<dyn crate::OutboundAdapter>, ConfigError> {
    Ok(Box::new(WebOutbound::new(config.clone())?))
}

#[derive(Debug)]
pub struct WebAdapter {
    config: WebConfig,
    clock: Clock,
}

impl WebAdapter {
    /// An adapter that holds `sent_at` against the system clock.
    pub fn new(config: WebConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, SystemTime::now)
    }

    /// An adapter that holds `sent_at` against `clock` (a fixed time in tests).
    pub fn with_clock(config: WebConfig, clock: Clock) -> Result<Self, ConfigError> {
        require_secrets(
            Channel::WebChat,
            &[("shared_secret", &config.shared_secret)],
        )?;
        if config.sent_at_tolerance_secs == 0 {
            return Err(ConfigError::NoSentAtTolerance);
        }
        Ok(Self { config, clock })
    }

    /// [`InboundAdapter::verify`] as of `now`, a pure function of its arguments: the
    /// signature, then the content type, then `sent_at` within the tolerance of `now`.
    pub fn verify_at(
        &self,
        request: &WebhookRequest<'_>,
        now: SystemTime,
    ) -> Result<(), WebhookError> {
        crate::adapter::check_body_size(request.body)?;
        let header = single_header(request.headers, SIGNATURE_HEADER)?
            .ok_or_else(|| WebhookError::unauthorized("X-Helpline-Signature is missing"))?;
        let signature = header.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
            WebhookError::unauthorized("X-Helpline-Signature does not start with sha256=")
        })?;
        verify_hmac_sha256(
            self.config.shared_secret.expose().as_bytes(),
            request.body,
            signature,
        )?;
        check_content_type(request.headers)?;
        self.check_sent_at(request.body, now)
    }

    /// Read only after the signature held, so nothing unauthenticated is parsed. The
    /// value is not quoted back: the answer says which way it is off, not by how much.
    fn check_sent_at(&self, body: &[u8], now: SystemTime) -> Result<(), WebhookError> {
        let stamp: Stamp = json::from_body(body)?;
        let sent_at = rfc3339_to_unix(&stamp.sent_at, "sent_at")?;
        let now = json::unix_seconds(now);
        let tolerance = i64::try_from(self.config.sent_at_tolerance_secs).unwrap_or(i64::MAX);
        if sent_at < now.saturating_sub(tolerance) {
            return Err(WebhookError::unauthorized(format!(
                "sent_at is more than {tolerance} s in the past (a replay?)"
            )));
        }
        if sent_at > now.saturating_add(tolerance) {
            return Err(WebhookError::unauthorized(format!(
                "sent_at is more than {tolerance} s in the future (is a clock off?)"
            )));
        }
        Ok(())
    }
}

impl InboundAdapter for WebAdapter {
    fn channel(&self) -> Channel {
        Channel::WebChat
    }

    /// The signature, then the content type (`application/json`, UTF-8 if a charset is
    /// named): an unauthenticated caller learns nothing about what we accept. Then
    /// `sent_at`, against the time the adapter's clock gives once per request
    /// ([`WebAdapter::verify_at`]).
    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        self.verify_at(request, (self.clock)())
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<Inbound>, WebhookError> {
        let event: Event = json::from_body(body)?;
        if event.version != VERSION {
            return Err(WebhookError::malformed(format!(
                "version must be {VERSION}"
            )));
        }
        json::non_empty(&event.event_id, "event_id")?;
        let session = json::non_empty(&event.session_id, "session_id")?;
        let sent_at_unix = rfc3339_to_unix(&event.sent_at, "sent_at")?;
        match (event.kind, event.message, event.status) {
            (EventType::Message, Some(message), None) => {
                read_message(message, session, event.customer, sent_at_unix)
            }
            (EventType::Status, None, Some(status)) => Ok(vec![read_status(status, session)?]),
            (EventType::Message, ..) => Err(WebhookError::malformed(
                "a message event needs `message` and no `status`",
            )),
            (EventType::Status, ..) => Err(WebhookError::malformed(
                "a status event needs `status` and no `message`",
            )),
        }
    }
}

fn read_message(
    message: Message,
    session: &str,
    customer: Option<Customer>,
    sent_at_unix: i64,
) -> Result<Vec<Inbound>, WebhookError> {
    let id = json::non_empty(&message.id, "message.id")?;
    if let Some(customer) = &customer {
        json::non_empty(&customer.id, "customer.id")?;
    }
    let mut contents = Vec::new();
    if let Some(text) = message.text.filter(|text| !text.is_empty()) {
        contents.push(InboundContent::Text(Personal::new(text)));
    }
    for attachment in message.attachments {
        contents.push(InboundContent::Media {
            kind: attachment.kind.into(),
            provider_media: json::non_empty(&attachment.url, "message.attachments[].url")?
                .to_owned(),
            mime_type: attachment.mime_type,
            caption: None,
            file_name: attachment.file_name.map(Personal::new),
        });
    }
    if contents.is_empty() {
        return Err(WebhookError::malformed("message needs text or attachments"));
    }
    let parts = Parts {
        provider_message_id: id,
        // Replies are addressed to the session (see the egress shape).
        contact: session,
        display_name: customer
            .as_ref()
            .and_then(|customer| customer.name.as_deref()),
        sent_at_unix: Some(sent_at_unix),
        account: None,
    };
    Ok(parts.into_messages(contents))
}

fn read_status(status: Status, session: &str) -> Result<Inbound, WebhookError> {
    Ok(Inbound::Receipt(Receipt {
        provider_message_id: json::non_empty(&status.message_id, "status.message_id")?.to_owned(),
        status: match status.state {
            State::Delivered => ReceiptStatus::Delivered,
            State::Read => ReceiptStatus::Read,
        },
        contact: Some(Personal::new(session.to_owned())),
        at_unix: Some(rfc3339_to_unix(&status.at, "status.at")?),
    }))
}

fn rfc3339_to_unix(value: &str, what: &str) -> Result<i64, WebhookError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| WebhookError::malformed(format!("{what} is not an RFC 3339 time")))
}

fn check_content_type(headers: &http::HeaderMap) -> Result<(), WebhookError> {
    let unsupported =
        || WebhookError::UnsupportedMediaType("expected application/json in UTF-8".to_owned());
    let value = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(unsupported)?;
    let mut pieces = value.split(';');
    let essence = pieces.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(unsupported());
    }
    for parameter in pieces {
        let (name, charset) = parameter.split_once('=').unwrap_or((parameter, ""));
        let charset = charset.trim().trim_matches('"');
        if name.trim().eq_ignore_ascii_case("charset") && !charset.eq_ignore_ascii_case("utf-8") {
            return Err(unsupported());
        }
    }
    Ok(())
}

/// The one field [`WebAdapter::verify_at`] reads; the strict schema is [`Event`]'s.
#[derive(Deserialize)]
struct Stamp {
    sent_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    version: u64,
    /// The sender's idempotency key for the event; dedupe is on `message.id`.
    event_id: String,
    #[serde(rename = "type")]
    kind: EventType,
    sent_at: String,
    session_id: String,
    customer: Option<Customer>,
    message: Option<Message>,
    status: Option<Status>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum EventType {
    Message,
    Status,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Customer {
    id: String,
    name: Option<String>,
    #[serde(rename = "locale")]
    _locale: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    id: String,
    text: Option<String>,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Attachment {
    #[serde(rename = "type")]
    kind: AttachmentType,
    url: String,
    mime_type: Option<String>,
    file_name: Option<String>,
    #[serde(rename = "size_bytes")]
    _size_bytes: Option<u64>,
    #[serde(rename = "sha256")]
    _sha256: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum AttachmentType {
    Image,
    Video,
    Audio,
    Document,
}

impl From<AttachmentType> for MediaKind {
    fn from(kind: AttachmentType) -> Self {
        match kind {
            AttachmentType::Image => MediaKind::Image,
            AttachmentType::Video => MediaKind::Video,
            AttachmentType::Audio => MediaKind::Audio,
            AttachmentType::Document => MediaKind::Document,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Status {
    message_id: String,
    state: State,
    at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum State {
    Delivered,
    Read,
}
