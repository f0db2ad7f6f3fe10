//! WhatsApp Cloud API webhooks (`CHANNELS.md` §1).
//!
//! Signed with `X-Hub-Signature-256`; one POST carries any number of `entry[].changes[]`,
//! each with `messages[]` and/or `statuses[]`. Only `field: "messages"` and
//! `field: "user_preferences"` are read.
//!
//! `user_preferences` reports a customer stopping (`value` `stop`) or resuming (`resume`)
//! marketing messages (`category` `marketing_messages`): [`Inbound::Consent`], scope
//! `Marketing`, for the `wa_id` (else the user id, as for messages). It is read
//! leniently: a preference of another category, value or shape is ignored, never refused.
//!
//! A tapped button (`interactive` `button_reply`/`list_reply`, or a template's `button`)
//! is the customer's text by `inbound::choice_text`: the id when it is a rating digit,
//! else the title.

use helpline_domain::notify::Scope;
use helpline_domain::{Channel, MediaKind, Personal};
use serde::{Deserialize, Serialize};

pub use crate::meta::verify_handshake;
pub use outbound::WhatsAppOutbound;

use crate::adapter::{InboundAdapter, WebhookRequest};
use crate::error::{ConfigError, WebhookError};
use crate::inbound::{
    Inbound, InboundContent, Parts, ProviderConsent, Receipt, ReceiptStatus, choice_text,
};
use crate::json::{self, type_label};
use crate::meta;
use crate::secret::{Secret, require_secrets};

mod outbound;

const OBJECT: &str = "whatsapp_business_account";

/// `[channels.whatsapp]`: the Meta app's secret (signs every POST) and the token the GET
/// handshake must present.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppConfig {
    pub app_secret: Secret,
    pub verify_token: Secret,
    /// Bearer token of the system user that sends messages.
    #[serde(default)]
    pub access_token: Secret,
    /// The business phone number that sends (`/{phone_number_id}/messages`). Digits,
    /// so a `HELPLINE_CHANNELS__WHATSAPP__PHONE_NUMBER_ID` arrives as a number: taken as
    /// its digits.
    #[serde(default, deserialize_with = "digits_or_text")]
    pub phone_number_id: String,
    /// The Graph API, with its version; tests and the simulator point it at localhost.
    #[serde(default = "default_graph_api")]
    pub api_base_url: String,
}

/// An id that is all digits, whether the configuration gave it as text or as a number.
fn digits_or_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(match Id::deserialize(deserializer)? {
        Id::Text(text) => text,
        Id::Number(number) => number.to_string(),
    })
}

/// Empty secrets (refused by the adapter) and the provider's real API.
impl Default for WhatsAppConfig {
    fn default() -> Self {
        Self {
            app_secret: Secret::default(),
            verify_token: Secret::default(),
            access_token: Secret::default(),
            phone_number_id: String::new(),
            api_base_url: default_graph_api(),
        }
    }
}

pub(crate) fn default_graph_api() -> String {
    "https://graph.facebook.com/v21.0".to_owned()
}

/// An approved WhatsApp message template without parameters, e.g. "We have an update on
/// your case — reply to continue". The customer's reply reopens the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsAppTemplate {
    pub name: String,
    /// The template's language code, e.g. `de` or `en_US`.
    pub language: String,
}

/// Whether the provider reports on a message after accepting it (receipts). WhatsApp sends `statuses` (sent, delivered, read, failed) naming the message's `wamid`.
pub const RECEIPTS: bool = true;

/// Where attachments come from unless `ingress.media_hosts.whatsapp` says otherwise. The host WhatsApp's media lookup answers with (Meta's lookaside).
pub const MEDIA_HOSTS: &[&str] = &["fbsbx.com", "whatsapp.net"];

/// This channel's `[channels.whatsapp]` section (the registry's name for it).
pub type Config = WhatsAppConfig;

/// The section's secrets, by their configuration keys.
pub fn secrets(config: &Config) -> Vec<(&'static str, &Secret)> {
    vec![
        ("channels.whatsapp.app_secret", &config.app_secret),
        ("channels.whatsapp.verify_token", &config.verify_token),
        ("channels.whatsapp.access_token", &config.access_token),
    ]
}

/// The webhook side, for the registry.
pub fn inbound(config: &Config) -> Result<Box<dyn InboundAdapter>, ConfigError> {
    Ok(Box::new(WhatsAppAdapter::new(config.clone())?))
}

/// The sending side, for the registry.
pub fn outbound(
    config: &Config,
    settings: &crate::OutboundSettings,
) -> Result<Box<dyn crate::OutboundAdapter>, ConfigError> {
    Ok(Box::new(WhatsAppOutbound::new(
        config.clone(),
        settings.whatsapp_template.clone(),
        settings.whatsapp_rating_template.clone(),
    )?))
}

#[derive(Debug)]
pub struct WhatsAppAdapter {
    config: WhatsAppConfig,
}

impl WhatsAppAdapter {
    pub fn new(config: WhatsAppConfig) -> Result<Self, ConfigError> {
        require_secrets(
            Channel::WhatsApp,
            &[
                ("app_secret", &config.app_secret),
                ("verify_token", &config.verify_token),
            ],
        )?;
        Ok(Self { config })
    }
}

impl InboundAdapter for WhatsAppAdapter {
    fn channel(&self) -> Channel {
        Channel::WhatsApp
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
                "whatsapp object `{}`",
                type_label(&envelope.object)
            ))]);
        }
        let entries: Vec<Entry> =
            json::from_raw(json::required(envelope.entry.as_ref(), "entry")?)?;
        let mut inbound = Vec::new();
        for change in entries.into_iter().flat_map(|entry| entry.changes) {
            if change.field == "user_preferences" {
                // Rare, and read shape by shape: as a tree.
                let value = change
                    .value
                    .as_ref()
                    .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).ok());
                read_user_preferences(value.as_ref(), &mut inbound);
                continue;
            }
            if change.field != "messages" {
                inbound.push(Inbound::ignored(format!(
                    "whatsapp field `{}`",
                    type_label(&change.field)
                )));
                continue;
            }
            let value: Value =
                json::from_raw(json::required(change.value.as_ref(), "changes[].value")?)?;
            read_value(value, &mut inbound)?;
        }
        Ok(inbound)
    }
}

fn read_value(value: Value, inbound: &mut Vec<Inbound>) -> Result<(), WebhookError> {
    let account = value.metadata.map(|metadata| metadata.phone_number_id);
    let nothing_to_read =
        value.messages.is_empty() && value.statuses.is_empty() && value.errors.is_empty();
    if nothing_to_read {
        inbound.push(Inbound::ignored(
            "whatsapp change without messages or statuses",
        ));
    }
    for message in value.messages {
        let display_name = value
            .contacts
            .iter()
            .find(|contact| contact.is_sender_of(&message))
            .and_then(|contact| contact.profile.as_ref()?.name.as_deref());
        inbound.extend(read_message(&message, display_name, account.as_deref())?);
    }
    for status in value.statuses {
        inbound.push(read_status(status)?);
    }
    if !value.errors.is_empty() {
        let codes: Vec<String> = value.errors.iter().map(ApiError::code).collect();
        inbound.push(Inbound::ignored(format!(
            "whatsapp error notification, codes {}",
            codes.join(", ")
        )));
    }
    Ok(())
}

/// Each of `value.user_preferences[]` (a single object is taken too) as one consent or
/// one ignored value.
fn read_user_preferences(value: Option<&serde_json::Value>, inbound: &mut Vec<Inbound>) {
    let preferences: Vec<&serde_json::Value> =
        match value.and_then(|value| value.get("user_preferences")) {
            Some(serde_json::Value::Array(items)) => items.iter().collect(),
            Some(item @ serde_json::Value::Object(_)) => vec![item],
            _ => Vec::new(),
        };
    if preferences.is_empty() {
        inbound.push(Inbound::ignored(
            "whatsapp user_preferences without preferences",
        ));
        return;
    }
    // A preference without its own ids belongs to the change's one contact, if it has one.
    let contacts: Vec<Contact> = value
        .and_then(|value| value.get("contacts"))
        .and_then(|contacts| serde_json::from_value(contacts.clone()).ok())
        .unwrap_or_default();
    let only_contact = match contacts.as_slice() {
        [contact] => Some(contact),
        _ => None,
    };
    for preference in preferences {
        inbound.push(read_preference(preference, only_contact));
    }
}

/// `{"wa_id","detail","category":"marketing_messages","value":"stop"|"resume","timestamp"}`,
/// keyed `whatsapp:user_preferences:<contact>:<timestamp>:<value>`.
fn read_preference(preference: &serde_json::Value, only_contact: Option<&Contact>) -> Inbound {
    let Ok(preference) = serde_json::from_value::<UserPreference>(preference.clone()) else {
        return Inbound::ignored("whatsapp user preference of an unknown shape");
    };
    let category = preference.category.as_deref().unwrap_or("none");
    if category != "marketing_messages" {
        return Inbound::ignored(format!(
            "whatsapp user preference category `{}`",
            type_label(category)
        ));
    }
    let value = preference.value.as_deref().unwrap_or("none");
    let granted = match value {
        "stop" => false,
        "resume" => true,
        other => {
            return Inbound::ignored(format!(
                "whatsapp user preference value `{}`",
                type_label(other)
            ));
        }
    };
    // The phone number while Meta sends one, else the user id, as for messages.
    let own = [&preference.wa_id, &preference.user_id];
    let contact_ids =
        only_contact.map_or([&None, &None], |contact| [&contact.wa_id, &contact.user_id]);
    let Some(contact) = own
        .into_iter()
        .chain(contact_ids)
        .filter_map(|id| id.as_deref())
        .find(|id| !id.is_empty())
    else {
        return Inbound::ignored("whatsapp user preference without a user");
    };
    let at = preference
        .timestamp
        .map_or_else(|| "unknown".to_owned(), |at| at.to_string());
    Inbound::Consent(ProviderConsent {
        provider_event_id: format!("whatsapp:user_preferences:{contact}:{at}:{value}"),
        contact: Personal::new(contact.to_owned()),
        scope: Scope::Marketing,
        granted,
    })
}

fn read_message(
    message: &Message,
    display_name: Option<&str>,
    account: Option<&str>,
) -> Result<Vec<Inbound>, WebhookError> {
    // A group's message is many people's conversation: helpline serves one customer at a
    // time, and its replies would reach every member.
    if message.group_id.is_some() {
        return Ok(vec![Inbound::ignored("whatsapp group message")]);
    }
    let content = match message.kind.as_str() {
        "text" => {
            let text = json::required(message.text.as_ref(), "messages[].text")?;
            InboundContent::Text(Personal::new(text.body.clone()))
        }
        // The customer's tap on a template's quick-reply button: its payload is the id.
        "button" => {
            let button = json::required(message.button.as_ref(), "messages[].button")?;
            let payload = button.payload.as_deref().unwrap_or("");
            tapped(payload, &button.text, "messages[].button")?
        }
        // The customer's tap on a reply button or a list row of ours.
        "interactive" => {
            let interactive =
                json::required(message.interactive.as_ref(), "messages[].interactive")?;
            let (reply, what) = match interactive.kind.as_str() {
                "button_reply" => (&interactive.button_reply, "interactive.button_reply"),
                "list_reply" => (&interactive.list_reply, "interactive.list_reply"),
                // Flows (`nfm_reply`) and whatever Meta adds.
                other => {
                    return Ok(vec![Inbound::ignored(format!(
                        "whatsapp interactive reply `{}`",
                        type_label(other)
                    ))]);
                }
            };
            let reply = json::required(reply.as_ref(), what)?;
            tapped(&reply.id, &reply.title, what)?
        }
        "image" => media(MediaKind::Image, &message.image, "messages[].image")?,
        "video" => media(MediaKind::Video, &message.video, "messages[].video")?,
        "audio" => media(MediaKind::Audio, &message.audio, "messages[].audio")?,
        "document" => media(
            MediaKind::Document,
            &message.document,
            "messages[].document",
        )?,
        "location" => {
            let location = json::required(message.location.as_ref(), "messages[].location")?;
            InboundContent::Location(Personal::new(json::coordinates(
                location.latitude,
                location.longitude,
                "messages[].location",
            )?))
        }
        other => {
            return Ok(vec![Inbound::ignored(format!(
                "whatsapp message type `{}`",
                type_label(other)
            ))]);
        }
    };
    let provider_message_id = json::non_empty(&message.id, "messages[].id")?;
    let contact = json::non_empty(
        message.sender().unwrap_or(""),
        "messages[].from and messages[].from_user_id",
    )?;
    let sent_at_unix = message.timestamp;
    let parts = Parts {
        provider_message_id,
        contact,
        display_name,
        sent_at_unix,
        account,
    };
    Ok(parts.into_messages(vec![content]))
}

/// A tap as the customer's text, by `choice_text`; both parts empty is malformed.
fn tapped(id: &str, title: &str, what: &str) -> Result<InboundContent, WebhookError> {
    choice_text(id, title)
        .map(|text| InboundContent::Text(Personal::new(text)))
        .ok_or_else(|| WebhookError::malformed(format!("{what} has neither id nor title")))
}

fn media(
    kind: MediaKind,
    object: &Option<MediaObject>,
    what: &str,
) -> Result<InboundContent, WebhookError> {
    let object = json::required(object.as_ref(), what)?;
    Ok(InboundContent::Media {
        kind,
        provider_media: json::non_empty(&object.id, what)?.to_owned(),
        mime_type: object.mime_type.clone(),
        caption: object.caption.clone().map(Personal::new),
        file_name: object.filename.clone().map(Personal::new),
    })
}

fn read_status(status: Status) -> Result<Inbound, WebhookError> {
    let status_kind = match status.status.as_str() {
        "sent" => ReceiptStatus::Sent,
        "delivered" => ReceiptStatus::Delivered,
        "read" => ReceiptStatus::Read,
        "failed" => ReceiptStatus::Failed {
            reason: status
                .errors
                .first()
                .map(ApiError::describe)
                .unwrap_or_else(|| "no error given".to_owned()),
        },
        other => {
            return Ok(Inbound::ignored(format!(
                "whatsapp status `{}`",
                type_label(other)
            )));
        }
    };
    json::non_empty(&status.id, "statuses[].id")?;
    Ok(Inbound::Receipt(Receipt {
        provider_message_id: status.id,
        status: status_kind,
        // A message sent to a username-only customer's user id is reported for that id.
        contact: status
            .recipient_id
            .or(status.recipient_user_id)
            .map(Personal::new),
        at_unix: status.timestamp,
    }))
}

#[derive(Deserialize)]
struct Envelope {
    object: String,
    /// Read only once `object` says this is WhatsApp.
    entry: Option<json::Raw>,
}

#[derive(Deserialize)]
struct Entry {
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    field: String,
    /// Its shape depends on `field`; read only for `messages` and `user_preferences`.
    value: Option<json::Raw>,
}

/// One of `user_preferences[]`; `detail` (a sentence for people) is not read.
#[derive(Deserialize)]
struct UserPreference {
    wa_id: Option<String>,
    /// The business-scoped user id, sent with or instead of `wa_id`.
    user_id: Option<String>,
    category: Option<String>,
    value: Option<String>,
    /// Unix seconds, a number (read from a string too).
    #[serde(default, deserialize_with = "json::lenient_integer")]
    timestamp: Option<i64>,
}

#[derive(Deserialize)]
struct Value {
    metadata: Option<Metadata>,
    #[serde(default)]
    contacts: Vec<Contact>,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    statuses: Vec<Status>,
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Deserialize)]
struct Metadata {
    phone_number_id: String,
}

#[derive(Deserialize)]
struct Contact {
    wa_id: Option<String>,
    /// The business-scoped user id, sent for every customer since 2026.
    user_id: Option<String>,
    profile: Option<Profile>,
}

impl Contact {
    fn is_sender_of(&self, message: &Message) -> bool {
        let same = |ours: &Option<String>, theirs: &Option<String>| {
            ours.is_some() && ours.as_deref() == theirs.as_deref()
        };
        same(&self.wa_id, &message.from) || same(&self.user_id, &message.from_user_id)
    }
}

#[derive(Deserialize)]
struct Profile {
    name: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    /// The customer's phone number, absent for a customer with a username who hides it.
    from: Option<String>,
    /// The customer's business-scoped user id (`DE.1502576394655843`), sent with or
    /// instead of `from`.
    from_user_id: Option<String>,
    /// Set on a message to a group the business is in.
    group_id: Option<String>,
    id: String,
    /// Unix seconds, as a string (read from a number too).
    #[serde(default, deserialize_with = "json::lenient_integer")]
    timestamp: Option<i64>,
    #[serde(rename = "type")]
    kind: String,
    text: Option<Text>,
    button: Option<Button>,
    interactive: Option<Interactive>,
    image: Option<MediaObject>,
    video: Option<MediaObject>,
    audio: Option<MediaObject>,
    document: Option<MediaObject>,
    location: Option<Location>,
}

impl Message {
    /// Where replies go: the phone number while Meta sends one (the contact every
    /// earlier message of the customer had), else the user id.
    fn sender(&self) -> Option<&str> {
        [&self.from, &self.from_user_id]
            .into_iter()
            .filter_map(|id| id.as_deref())
            .find(|id| !id.is_empty())
    }
}

#[derive(Deserialize)]
struct Text {
    body: String,
}

#[derive(Deserialize)]
struct Button {
    text: String,
    payload: Option<String>,
}

/// `{"type":"button_reply","button_reply":{"id","title"}}` or
/// `{"type":"list_reply","list_reply":{"id","title","description"}}`.
#[derive(Deserialize)]
struct Interactive {
    #[serde(rename = "type")]
    kind: String,
    button_reply: Option<Reply>,
    list_reply: Option<Reply>,
}

#[derive(Deserialize)]
struct Reply {
    id: String,
    title: String,
}

#[derive(Deserialize)]
struct MediaObject {
    id: String,
    mime_type: Option<String>,
    caption: Option<String>,
    filename: Option<String>,
}

#[derive(Deserialize)]
struct Location {
    latitude: f64,
    longitude: f64,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
    /// Unix seconds, as a string (read from a number too).
    #[serde(default, deserialize_with = "json::lenient_integer")]
    timestamp: Option<i64>,
    recipient_id: Option<String>,
    /// The user id of a customer messaged by it.
    recipient_user_id: Option<String>,
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    code: Option<i64>,
    title: Option<String>,
}

impl ApiError {
    fn code(&self) -> String {
        self.code
            .map_or_else(|| "unknown".to_owned(), |code| code.to_string())
    }

    /// Meta's code and title (e.g. `131047 Re-engagement message`); the free-text
    /// `message` and `error_data.details` are left out.
    fn describe(&self) -> String {
        match &self.title {
            Some(title) => format!("{} {title}", self.code()),
            None => self.code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_number_id_given_as_a_number_is_its_digits() {
        for given in [
            serde_json::json!(106_540_352_242_922u64),
            serde_json::json!("106540352242922"),
        ] {
            let config: WhatsAppConfig = serde_json::from_value(serde_json::json!({
                "app_secret": "s", "verify_token": "v", "phone_number_id": given
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(config.phone_number_id, "106540352242922");
        }
    }
}
