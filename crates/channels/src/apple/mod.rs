//! Apple Messages for Business, as a Messaging Service Provider (MSP) speaks it
//! (`APPLE-AND-NOTIFY.md` §1).
//!
//! **In.** Apple POSTs every customer event to `/webhooks/apple`, gzip-compressed JSON
//! with `Authorization: Bearer <JWT>`: HS256 keyed by the Base64-decoded Messaging API
//! secret, `aud` our MSP id, `iat` within `max_token_age_secs` of helpline's clock. The
//! `destination-id` header names the business; a business that is not ours is refused.
//! Types: `text` (the customer's words; each attachment stands as U+FFFC in `body` and is
//! listed in `attachments`, encrypted on Apple's MMCS), `interactive` (the customer's
//! answer to a quick reply or list picker we sent: read by `choice_text` like every
//! channel's taps), `close` (the customer deleted the conversation: `Inbound::Closed`,
//! after which nothing is sent until they write again), `typing_start`/`typing_end`
//! (ignored with their reason). `locale` (`de_DE`) is the customer's language; `intent`
//! and `group`, from the "Message us" entry point, are recorded on the message as its
//! entry point.
//!
//! **Out** (`outbound.rs`): `POST {api_base_url}/message` with a JWT of `iss` our MSP
//! id, `id` (the message id: a retry reuses it), `Source-Id` the business,
//! `Destination-Id` the customer. Choices go out as a quick reply (2 to 5 of them) or as
//! lines of the text. Apple answers `200` with no id and sends no receipts.
//!
//! **Attachments** (`attachment.rs`): the reference Apple sends (MMCS URL, owner,
//! signature, key) is kept sealed as the message's media reference; the media consumer
//! asks the gateway's `preDownload` for a download URL, downloads the ciphertext and
//! opens it with AES-256-CTR under the key.

mod attachment;
mod outbound;

use std::io::Read;
use std::time::SystemTime;

use base64::Engine;
use helpline_domain::{Channel, EntryPoint, MediaKind, Personal};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use attachment::{AttachmentRef, open_attachment, seal_attachment};
pub use outbound::AppleOutbound;

use crate::adapter::{InboundAdapter, MAX_BODY_BYTES, WebhookRequest};
use crate::error::{ConfigError, WebhookError};
use crate::inbound::{ConversationClosed, Inbound, InboundContent, Parts, choice_text};
use crate::json::{self, type_label};
use crate::secret::{Secret, require_secrets};
use crate::signature::single_header;

/// U+FFFC, OBJECT REPLACEMENT CHARACTER: where an attachment stands in a text's `body`.
const ATTACHMENT_MARK: char = '\u{fffc}';

/// Where the adapters read the time a token's `iat` is held against (and ours get).
pub type Clock = fn() -> SystemTime;

/// `[channels.apple]`: the MSP's identity and secret, and the brand's business.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppleConfig {
    /// The MSP id Apple issued to this platform: `iss` of our tokens, `aud` of Apple's.
    pub msp_id: String,
    /// The Messaging API secret, Base64 as Apple issues it; its decoded bytes key the
    /// tokens both ways.
    #[serde(skip_serializing)]
    pub secret: Secret,
    /// The brand's business id: `destination-id` of its customers' messages and
    /// `Source-Id` of ours.
    pub business_id: String,
    /// The MSP gateway with its version; tests and the simulator point it at localhost.
    #[serde(default = "default_gateway")]
    pub api_base_url: String,
    /// How far a token's `iat` may lie from helpline's clock, in seconds, either way.
    #[serde(default = "default_token_age")]
    pub max_token_age_secs: u64,
}

fn default_gateway() -> String {
    "https://mspgw.push.apple.com/v1".to_owned()
}

fn default_token_age() -> u64 {
    60 * 60
}

/// Empty secrets (refused by the adapter) and Apple's real gateway.
impl Default for AppleConfig {
    fn default() -> Self {
        Self {
            msp_id: String::new(),
            secret: Secret::default(),
            business_id: String::new(),
            api_base_url: default_gateway(),
            max_token_age_secs: default_token_age(),
        }
    }
}

impl AppleConfig {
    /// The key both directions' tokens are signed with: the secret, Base64-decoded.
    pub fn key(&self) -> Result<Vec<u8>, ConfigError> {
        require_secrets(Channel::AppleMessages, &[("secret", &self.secret)])?;
        base64::engine::general_purpose::STANDARD
            .decode(self.secret.expose().trim())
            .ok()
            .filter(|key| !key.is_empty())
            .ok_or_else(|| ConfigError::invalid(Channel::AppleMessages, "secret", "must be Base64"))
    }

    fn check(&self) -> Result<Vec<u8>, ConfigError> {
        let key = self.key()?;
        for (field, value) in [("msp_id", &self.msp_id), ("business_id", &self.business_id)] {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(
                    Channel::AppleMessages,
                    field,
                    "must not be empty",
                ));
            }
        }
        if self.max_token_age_secs == 0 {
            return Err(ConfigError::invalid(
                Channel::AppleMessages,
                "max_token_age_secs",
                "must be at least 1",
            ));
        }
        Ok(key)
    }
}

/// Whether the provider reports on a message after accepting it (receipts). Apple sends no delivery or read receipts: the `200` of `/message` is the only signal.
pub const RECEIPTS: bool = false;

/// Where attachments come from unless `ingress.media_hosts.apple` says otherwise. Where the download URLs of Apple's `preDownload` point (iCloud's MMCS).
pub const MEDIA_HOSTS: &[&str] = &["icloud-content.com", "icloud.com"];

/// This channel's `[channels.apple]` section (the registry's name for it).
pub type Config = AppleConfig;

/// The section's secrets, by their configuration keys.
pub fn secrets(config: &Config) -> Vec<(&'static str, &Secret)> {
    vec![("channels.apple.secret", &config.secret)]
}

/// The webhook side, for the registry.
pub fn inbound(config: &Config) -> Result<Box<dyn InboundAdapter>, ConfigError> {
    Ok(Box::new(AppleAdapter::new(config.clone())?))
}

/// The sending side, for the registry.
pub fn outbound(
    config: &Config,
    _settings: &crate::OutboundSettings,
) -> Result<Box<dyn crate::OutboundAdapter>, ConfigError> {
    Ok(Box::new(AppleOutbound::new(config.clone())?))
}

/// What a token of Apple's says: who it is for and when it was made.
#[derive(Debug, Deserialize, Serialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    iat: i64,
}

#[derive(Debug)]
pub struct AppleAdapter {
    config: AppleConfig,
    key: Vec<u8>,
    clock: Clock,
}

impl AppleAdapter {
    /// An adapter that holds tokens' `iat` against the system clock.
    pub fn new(config: AppleConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, SystemTime::now)
    }

    /// An adapter that holds tokens' `iat` against `clock` (a fixed time in tests).
    pub fn with_clock(config: AppleConfig, clock: Clock) -> Result<Self, ConfigError> {
        let key = config.check()?;
        Ok(Self { config, key, clock })
    }

    /// [`InboundAdapter::verify`] as of `now`: the token (signature, `aud`, `iat`), then
    /// that the message is for our business.
    pub fn verify_at(
        &self,
        request: &WebhookRequest<'_>,
        now: SystemTime,
    ) -> Result<(), WebhookError> {
        crate::adapter::check_body_size(request.body)?;
        let header = single_header(request.headers, "authorization")?
            .ok_or_else(|| WebhookError::unauthorized("Authorization is missing"))?;
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| WebhookError::unauthorized("Authorization is not a Bearer token"))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_audience(&[self.config.msp_id.as_str()]);
        validation.validate_exp = false;
        validation.required_spec_claims = ["aud".to_owned()].into_iter().collect();
        let claims = jsonwebtoken::decode::<Claims>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(&self.key),
            &validation,
        )
        .map_err(|error| {
            // The kind only: the library's messages never quote the token, but say no
            // more than needed.
            WebhookError::unauthorized(format!("the token was refused ({:?})", error.kind()))
        })?
        .claims;
        let now = json::unix_seconds(now);
        let age = self.config.max_token_age_secs;
        if claims.iat.abs_diff(now) > age {
            return Err(WebhookError::unauthorized(format!(
                "the token's iat is more than {age} s from helpline's clock"
            )));
        }
        let destination = single_header(request.headers, "destination-id")?
            .ok_or_else(|| WebhookError::unauthorized("destination-id is missing"))?;
        if destination != self.config.business_id.as_bytes() {
            return Err(WebhookError::unauthorized(
                "destination-id is not this business",
            ));
        }
        Ok(())
    }
}

impl InboundAdapter for AppleAdapter {
    fn channel(&self) -> Channel {
        Channel::AppleMessages
    }

    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        self.verify_at(request, (self.clock)())
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<Inbound>, WebhookError> {
        let inflated = inflate(body)?;
        let event: Event = json::from_body(&inflated)?;
        match event.kind.as_str() {
            "text" => read_text(&event),
            "interactive" => read_interactive(&event),
            "typing_start" | "typing_end" => Ok(vec![Inbound::ignored("apple typing indicator")]),
            // The customer deleted the conversation: nothing may be sent until they
            // write again (Apple's policy; a new message shows it).
            "close" => Ok(vec![Inbound::Closed(ConversationClosed {
                provider_event_id: json::non_empty(&event.id, "id")?.to_owned(),
                contact: Personal::new(json::non_empty(&event.source_id, "sourceId")?.to_owned()),
            })]),
            other => Ok(vec![Inbound::ignored(format!(
                "apple message type `{}`",
                type_label(other)
            ))]),
        }
    }
}

/// Apple sends its bodies gzip-compressed (and says so in `Content-Encoding`); a body
/// that does not start with gzip's magic is read as it is. Inflating stops past
/// [`MAX_BODY_BYTES`], so a small bomb cannot take the memory.
fn inflate(body: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, WebhookError> {
    if !body.starts_with(&[0x1f, 0x8b]) {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut inflated = Vec::new();
    let limit = u64::try_from(MAX_BODY_BYTES).unwrap_or(u64::MAX) + 1;
    flate2::read::GzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut inflated)
        .map_err(|_| WebhookError::malformed("the body is not valid gzip"))?;
    if inflated.len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(std::borrow::Cow::Owned(inflated))
}

fn read_text(event: &Event) -> Result<Vec<Inbound>, WebhookError> {
    let body = event.body.as_deref().unwrap_or("");
    let words: String = body.chars().filter(|c| *c != ATTACHMENT_MARK).collect();
    let words = words.trim();
    let mut contents = Vec::new();
    if !words.is_empty() {
        contents.push(InboundContent::Text(Personal::new(words.to_owned())));
    }
    for attachment in &event.attachments {
        contents.push(attachment.content()?);
    }
    if contents.is_empty() {
        return Ok(vec![Inbound::ignored(
            "apple text without words or attachments",
        )]);
    }
    event.parts(contents)
}

fn read_interactive(event: &Event) -> Result<Vec<Inbound>, WebhookError> {
    let Some(data) = &event.interactive_data else {
        // A reply over 10 KB comes as `interactiveDataRef`, to be downloaded and
        // decoded by Apple first; helpline's pickers never make one that large.
        return Ok(vec![Inbound::ignored(
            "apple interactive reply by reference",
        )]);
    };
    let Some(text) = chosen(data) else {
        return Ok(vec![Inbound::ignored(
            "apple interactive reply without a choice",
        )]);
    };
    event.parts(vec![InboundContent::Text(Personal::new(text))])
}

/// The customer's choice in an interactive reply, by `choice_text`: a quick reply's
/// selected item, a list picker's (its reply lists the selected items), else the
/// reply message's title.
fn chosen(interactive: &Value) -> Option<String> {
    let data = interactive.get("data").unwrap_or(&Value::Null);
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    if let Some(quick) = data.get("quick-reply") {
        let items = quick.get("items").and_then(Value::as_array);
        let by_identifier = text(quick, "selectedIdentifier");
        let by_index = quick
            .get("selectedIndex")
            .and_then(|index| index.as_u64().or_else(|| index.as_str()?.parse().ok()))
            .and_then(|index| items?.get(usize::try_from(index).ok()?));
        let item = match &by_identifier {
            Some(id) => items.and_then(|items| {
                items
                    .iter()
                    .find(|item| item.get("identifier").and_then(Value::as_str) == Some(id))
            }),
            None => by_index,
        };
        let id = by_identifier.or_else(|| item.and_then(|item| text(item, "identifier")));
        let title = item.and_then(|item| text(item, "title"));
        if let Some(choice) =
            choice_text(id.as_deref().unwrap_or(""), title.as_deref().unwrap_or(""))
        {
            return Some(choice);
        }
    }
    let selected = data
        .get("listPicker")
        .and_then(|picker| picker.get("sections"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|section| section.get("items").and_then(Value::as_array))
        .flatten()
        .next();
    if let Some(item) = selected
        && let Some(choice) = choice_text(
            &text(item, "identifier").unwrap_or_default(),
            &text(item, "title").unwrap_or_default(),
        )
    {
        return Some(choice);
    }
    [data.get("replyMessage"), interactive.get("replyMessage")]
        .into_iter()
        .flatten()
        .find_map(|reply| text(reply, "title"))
        .filter(|title| !title.trim().is_empty())
}

/// An Apple event, as much of it as helpline reads.
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: String,
    #[serde(rename = "sourceId", default)]
    source_id: String,
    #[serde(rename = "destinationId")]
    destination_id: Option<String>,
    locale: Option<String>,
    intent: Option<String>,
    group: Option<String>,
    body: Option<String>,
    #[serde(default)]
    attachments: Vec<Attachment>,
    #[serde(rename = "interactiveData")]
    interactive_data: Option<Value>,
}

impl Event {
    fn parts(&self, contents: Vec<InboundContent>) -> Result<Vec<Inbound>, WebhookError> {
        let parts = Parts {
            provider_message_id: json::non_empty(&self.id, "id")?,
            contact: json::non_empty(&self.source_id, "sourceId")?,
            display_name: None,
            sent_at_unix: None,
            account: self.destination_id.as_deref(),
        };
        let language = self.locale.as_deref().and_then(language_of_locale);
        let entry_point = entry_point(self.intent.as_deref(), self.group.as_deref());
        Ok(parts
            .into_messages(contents)
            .into_iter()
            .map(|inbound| match inbound {
                Inbound::Message(mut message) => {
                    message.language.clone_from(&language);
                    message.entry_point.clone_from(&entry_point);
                    Inbound::Message(message)
                }
                other => other,
            })
            .collect())
    }
}

/// An attachment as Apple lists it: the ciphertext on MMCS and what opens it.
#[derive(Deserialize)]
struct Attachment {
    name: Option<String>,
    #[serde(rename = "mimeType")]
    mime_type: Option<String>,
    /// Bytes of the ciphertext, as a string (read from a number too).
    #[serde(default, deserialize_with = "json::lenient_integer")]
    size: Option<i64>,
    /// `00` and the hex of the AES-256 key.
    #[serde(default)]
    key: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    owner: String,
    /// Hex; some clients send `signature-base64` instead.
    signature: Option<String>,
    #[serde(rename = "signature-base64")]
    signature_base64: Option<String>,
}

impl Attachment {
    fn content(&self) -> Result<InboundContent, WebhookError> {
        let signature = match (&self.signature, &self.signature_base64) {
            (Some(hex), _) => hex.clone(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(hex::encode)
                .map_err(|_| {
                    WebhookError::malformed("attachments[].signature-base64 is not Base64")
                })?,
            (None, None) => String::new(),
        };
        let reference = AttachmentRef {
            url: json::non_empty(&self.url, "attachments[].url")?.to_owned(),
            owner: self.owner.clone(),
            signature,
            key: json::non_empty(&self.key, "attachments[].key")?.to_owned(),
            size: self.size.and_then(|size| u64::try_from(size).ok()),
        };
        let mime_type = self.mime_type.clone();
        let kind = match mime_type.as_deref().and_then(|mime| mime.split('/').next()) {
            Some("image") => MediaKind::Image,
            Some("video") => MediaKind::Video,
            Some("audio") => MediaKind::Audio,
            _ => MediaKind::Document,
        };
        Ok(InboundContent::Media {
            kind,
            provider_media: reference.encode(),
            mime_type,
            caption: None,
            file_name: self.name.clone().map(Personal::new),
        })
    }
}

/// The language of a locale as Apple writes it (`de_DE`, `en-US`, `zh_Hans_CN`): its
/// primary subtag, lower case, if it is one.
fn language_of_locale(locale: &str) -> Option<String> {
    let primary = locale.split(['_', '-']).next()?;
    let valid =
        (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic());
    valid.then(|| primary.to_ascii_lowercase())
}

/// The entry point the customer came in by: `intent` and `group` of Apple's "Message
/// us" URL (either may be absent; neither, no entry point).
fn entry_point(intent: Option<&str>, group: Option<&str>) -> Option<EntryPoint> {
    fn clean(value: Option<&str>) -> String {
        value.map(str::trim).unwrap_or_default().to_owned()
    }
    let (intent, group) = (clean(intent), clean(group));
    (!intent.is_empty() || !group.is_empty()).then_some(EntryPoint { intent, group })
}

/// A call to the gateway: its URL and headers (the first is `Authorization`, a secret).
pub type GatewayCall = (String, Vec<(&'static str, String)>);

/// The gateway's `preDownload` call for an attachment (`APPLE-AND-NOTIFY.md` §1.7): its
/// URL and headers (the first is `Authorization`, a secret). Its answer names the
/// download URL ([`download_url`]).
pub fn pre_download(
    config: &AppleConfig,
    reference: &AttachmentRef,
    now: SystemTime,
) -> Result<GatewayCall, String> {
    let key = config.key().map_err(|error| error.to_string())?;
    let token = gateway_token(config, &key, now)?;
    let signature = reference
        .signature_base64()
        .ok_or_else(|| "the attachment's signature is not hex".to_owned())?;
    let url = format!("{}/preDownload", config.api_base_url.trim_end_matches('/'));
    Ok((
        url,
        vec![
            ("authorization", format!("Bearer {token}")),
            ("source-id", config.business_id.clone()),
            ("mmcs-url", reference.url.clone()),
            ("mmcs-signature", signature),
            ("mmcs-owner", reference.owner.clone()),
        ],
    ))
}

/// The download URL in the gateway's answer to `preDownload`.
pub fn download_url(answer: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct PreDownload {
        #[serde(rename = "download-url")]
        download_url: String,
    }
    serde_json::from_slice::<PreDownload>(answer)
        .ok()
        .map(|answer| answer.download_url)
        .filter(|url| !url.is_empty())
}

/// A token for a call to Apple's gateway: HS256 over `{"iss": <MSP id>, "iat": now}`.
pub(crate) fn gateway_token(
    config: &AppleConfig,
    key: &[u8],
    now: SystemTime,
) -> Result<String, String> {
    let claims = Claims {
        aud: None,
        iss: Some(config.msp_id.clone()),
        iat: json::unix_seconds(now),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .map_err(|error| format!("cannot sign the gateway token ({:?})", error.kind()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_locale_gives_its_language() {
        assert_eq!(language_of_locale("de_DE").as_deref(), Some("de"));
        assert_eq!(language_of_locale("en-US").as_deref(), Some("en"));
        assert_eq!(language_of_locale("zh_Hans_CN").as_deref(), Some("zh"));
        assert_eq!(language_of_locale("FR").as_deref(), Some("fr"));
        assert_eq!(language_of_locale(""), None);
        assert_eq!(language_of_locale("1234"), None);
        assert_eq!(language_of_locale("deutsch"), None);
    }

    #[test]
    fn the_entry_point_names_intent_and_group() {
        let point = |intent: &str, group: &str| EntryPoint {
            intent: intent.to_owned(),
            group: group.to_owned(),
        };
        assert_eq!(
            entry_point(Some("repair_status"), Some("laptops")),
            Some(point("repair_status", "laptops"))
        );
        assert_eq!(
            entry_point(None, Some(" laptops ")),
            Some(point("", "laptops"))
        );
        assert_eq!(entry_point(Some(" "), None), None);
    }

    #[test]
    fn a_choice_is_read_from_every_shape_of_reply() {
        let quick = serde_json::json!({"data": {"quick-reply": {
            "items": [{"identifier": "1", "title": "⭐"}, {"identifier": "5", "title": "⭐⭐⭐⭐⭐"}],
            "selectedIdentifier": "5"}}});
        assert_eq!(chosen(&quick).as_deref(), Some("5"));
        let by_index = serde_json::json!({"data": {"quick-reply": {
            "items": [{"identifier": "de", "title": "Deutsch"}, {"identifier": "en", "title": "English"}],
            "selectedIndex": 1}}});
        assert_eq!(chosen(&by_index).as_deref(), Some("English"));
        let list = serde_json::json!({"data": {"listPicker": {"sections": [{"items": [
            {"identifier": "laptop", "title": "MateBook"}]}]}}});
        assert_eq!(chosen(&list).as_deref(), Some("MateBook"));
        let reply_only = serde_json::json!({"data": {"replyMessage": {"title": "Donnerstag"}}});
        assert_eq!(chosen(&reply_only).as_deref(), Some("Donnerstag"));
        assert_eq!(chosen(&serde_json::json!({"data": {}})), None);
    }
}
