//! Telegram Bot API webhooks (`CHANNELS.md` §3).
//!
//! No body signature: Telegram presents the `secret_token` given to `setWebhook` in
//! `X-Telegram-Bot-Api-Secret-Token`. One POST is one `Update`; only `message` and
//! `callback_query` (a tap on an inline keyboard button of ours) in private chats are
//! read. Bots get no delivery or read receipts.
//!
//! A tap is the customer's text message: its `data` (the id we sent as `callback_data`),
//! from the chat of the message it was on (else from the user who tapped), with the
//! update's `update_id` as its id like any other update, so each tap is its own message
//! and a redelivered one dedupes. The tap is not answered with `answerCallbackQuery`:
//! the client shows a progress indicator on the button until Telegram's own timeout, and
//! the bot's next message is the visible answer; answering would be one more provider
//! call per tap, outside the webhook's append-then-200 path.
//!
//! `my_chat_member` in a private chat is sent only when the customer blocks the bot
//! (`new_chat_member.status` `kicked`) or unblocks it (`member`): their wish about every
//! notification, [`Inbound::Consent`] with scope `All`, from the chat's id and with the
//! `update_id` as its id, as a message would have. In groups and channels it is the bot
//! being added or removed, and ignored, as is any other status or shape.

use std::collections::BTreeMap;

use helpline_domain::notify::Scope;
use helpline_domain::{Channel, MediaKind, Personal};
use serde::Deserialize;

use crate::adapter::{InboundAdapter, WebhookRequest};
use crate::error::{ConfigError, WebhookError};
use crate::inbound::{Inbound, InboundContent, Parts, ProviderConsent};
use crate::json::{self, type_label};
use crate::secret::Secret;
use crate::signature::{secret_matches, single_header};

mod outbound;

pub use outbound::TelegramOutbound;

const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// `[channels.telegram]`: the `secret_token` registered with `setWebhook`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    pub secret_token: Secret,
    /// The bot's token, part of every Bot API path (`/bot<token>/sendMessage`).
    #[serde(default)]
    pub bot_token: Secret,
    /// The Bot API; tests and the simulator point it at localhost.
    #[serde(default = "default_bot_api")]
    pub api_base_url: String,
}

/// Empty secrets (refused by the adapter) and the provider's real API.
impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            secret_token: Secret::default(),
            bot_token: Secret::default(),
            api_base_url: default_bot_api(),
        }
    }
}

fn default_bot_api() -> String {
    "https://api.telegram.org".to_owned()
}

/// Whether the provider reports on a message after accepting it (receipts). The Bot API reports nothing about a message after it accepted it.
pub const RECEIPTS: bool = false;

/// Where attachments come from unless `ingress.media_hosts.telegram` says otherwise. None: Telegram's files come from its API (`api_base_url`).
pub const MEDIA_HOSTS: &[&str] = &[];

/// This channel's `[channels.telegram]` section (the registry's name for it).
pub type Config = TelegramConfig;

/// The section's secrets, by their configuration keys.
pub fn secrets(config: &Config) -> Vec<(&'static str, &Secret)> {
    vec![
        ("channels.telegram.secret_token", &config.secret_token),
        ("channels.telegram.bot_token", &config.bot_token),
    ]
}

/// The webhook side, for the registry.
pub fn inbound(config: &Config) -> Result<Box<dyn InboundAdapter>, ConfigError> {
    Ok(Box::new(TelegramAdapter::new(config.clone())?))
}

/// The sending side, for the registry.
pub fn outbound(
    config: &Config,
    _settings: &crate::OutboundSettings,
) -> Result<Box<dyn crate::OutboundAdapter>, ConfigError> {
    Ok(Box::new(TelegramOutbound::new(config.clone())?))
}

#[derive(Debug)]
pub struct TelegramAdapter {
    config: TelegramConfig,
}

impl TelegramAdapter {
    /// Refuses a `secret_token` Telegram itself would refuse (1–256 of `A-Z a-z 0-9 _ -`).
    pub fn new(config: TelegramConfig) -> Result<Self, ConfigError> {
        let token = config.secret_token.expose();
        let valid = (1..=256).contains(&token.len())
            && token
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-'));
        if !valid {
            return Err(ConfigError::InvalidTelegramSecret);
        }
        Ok(Self { config })
    }
}

impl InboundAdapter for TelegramAdapter {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError> {
        crate::adapter::check_body_size(request.body)?;
        let presented = single_header(request.headers, SECRET_HEADER)?.ok_or_else(|| {
            WebhookError::unauthorized("X-Telegram-Bot-Api-Secret-Token is missing")
        })?;
        if secret_matches(presented, self.config.secret_token.expose().as_bytes()) {
            Ok(())
        } else {
            Err(WebhookError::unauthorized(
                "X-Telegram-Bot-Api-Secret-Token does not match",
            ))
        }
    }

    fn parse(&self, body: &[u8]) -> Result<Vec<Inbound>, WebhookError> {
        // Each kind kept as its text, read into its type once the update's kind is known.
        let mut update: BTreeMap<String, json::Raw> = json::from_body(body)?;
        let update_id = json::required(update.get("update_id"), "update_id")?;
        let update_id = serde_json::from_str::<i64>(update_id.get())
            .map_err(|_| WebhookError::malformed("update_id is not a 64-bit integer"))?;
        if let Some(callback) = update.remove("callback_query") {
            return read_callback(update_id, json::from_raw(&callback)?);
        }
        if let Some(member) = update.remove("my_chat_member") {
            return Ok(vec![read_my_chat_member(update_id, &member)]);
        }
        let Some(message) = update.remove("message") else {
            // An update carries exactly one kind besides `update_id`: `edited_message`,
            // `channel_post`, `message_reaction`, `poll`, …
            let kind = update
                .keys()
                .find(|key| *key != "update_id")
                .map_or("empty", |key| type_label(key));
            return Ok(vec![Inbound::ignored(format!("telegram update `{kind}`"))]);
        };
        read_message(update_id, json::from_raw(&message)?)
    }
}

fn read_message(update_id: i64, message: Message) -> Result<Vec<Inbound>, WebhookError> {
    // A group is many customers in one chat; helpline serves one customer per ticket.
    if message.chat.kind != "private" {
        return Ok(vec![Inbound::ignored(format!(
            "telegram message in a `{}` chat",
            type_label(&message.chat.kind)
        ))]);
    }
    if message.from.as_ref().is_some_and(|from| from.is_bot) {
        return Ok(vec![Inbound::ignored("telegram message from a bot")]);
    }
    let Some(content) = read_content(&message)? else {
        return Ok(vec![Inbound::ignored(
            "telegram message without supported content",
        )]);
    };
    let display_name = display_name(&message);
    let parts = Parts {
        provider_message_id: &update_id.to_string(),
        contact: &message.chat.id.to_string(),
        display_name: display_name.as_deref(),
        sent_at_unix: message.date,
        account: None,
    };
    Ok(parts.into_messages(vec![content]))
}

fn read_callback(update_id: i64, callback: CallbackQuery) -> Result<Vec<Inbound>, WebhookError> {
    json::non_empty(&callback.id, "callback_query.id")?;
    if let Some(chat) = callback.message.as_ref().map(|message| &message.chat)
        && chat.kind != "private"
    {
        return Ok(vec![Inbound::ignored(format!(
            "telegram callback in a `{}` chat",
            type_label(&chat.kind)
        ))]);
    }
    if callback.from.is_bot {
        return Ok(vec![Inbound::ignored("telegram callback from a bot")]);
    }
    // Games' callbacks carry `game_short_name` instead; helpline sends no games.
    let Some(data) = callback.data else {
        return Ok(vec![Inbound::ignored("telegram callback without data")]);
    };
    json::non_empty(&data, "callback_query.data")?;
    let chat = callback
        .message
        .as_ref()
        .map_or(callback.from.id, |message| message.chat.id);
    let display_name = full_name(
        callback.from.first_name.as_deref(),
        callback.from.last_name.as_deref(),
    );
    let parts = Parts {
        provider_message_id: &update_id.to_string(),
        contact: &chat.to_string(),
        display_name: display_name.as_deref(),
        // A callback has no date of its own; the message's is when the bot sent it.
        sent_at_unix: None,
        account: None,
    };
    Ok(parts.into_messages(vec![InboundContent::Text(Personal::new(data))]))
}

/// The customer blocked (`kicked`) or unblocked (`member`) the bot in their private
/// chat. Read leniently: any other chat, status or shape is ignored, never refused.
fn read_my_chat_member(update_id: i64, member: &serde_json::value::RawValue) -> Inbound {
    let Ok(member) = serde_json::from_str::<ChatMemberUpdated>(member.get()) else {
        return Inbound::ignored("telegram my_chat_member without chat or new status");
    };
    if member.chat.kind != "private" {
        return Inbound::ignored(format!(
            "telegram my_chat_member in a `{}` chat",
            type_label(&member.chat.kind)
        ));
    }
    let granted = match member.new_chat_member.status.as_str() {
        "kicked" => false,
        "member" => true,
        other => {
            return Inbound::ignored(format!(
                "telegram my_chat_member status `{}`",
                type_label(other)
            ));
        }
    };
    Inbound::Consent(ProviderConsent {
        provider_event_id: update_id.to_string(),
        contact: Personal::new(member.chat.id.to_string()),
        scope: Scope::All,
        granted,
    })
}

fn read_content(message: &Message) -> Result<Option<InboundContent>, WebhookError> {
    if let Some(text) = &message.text {
        return Ok(Some(InboundContent::Text(Personal::new(text.clone()))));
    }
    if let Some(photo) = &message.photo {
        // Telegram sends several sizes of one photo; the largest is the original.
        let largest = photo
            .iter()
            .max_by_key(|size| {
                (
                    u128::from(size.width) * u128::from(size.height),
                    size.file_size.unwrap_or(0),
                )
            })
            .ok_or_else(|| WebhookError::malformed("message.photo has no sizes"))?;
        let file = File {
            file_id: largest.file_id.clone(),
            mime_type: None,
            file_name: None,
        };
        return media(MediaKind::Image, &file, message, "message.photo[].file_id").map(Some);
    }
    let files = [
        (MediaKind::Document, &message.document, "message.document"),
        (MediaKind::Video, &message.video, "message.video"),
        (MediaKind::Video, &message.video_note, "message.video_note"),
        (MediaKind::Audio, &message.audio, "message.audio"),
        (MediaKind::Audio, &message.voice, "message.voice"),
    ];
    for (kind, file, what) in files {
        if let Some(file) = file {
            return media(kind, file, message, what).map(Some);
        }
    }
    if let Some(location) = &message.location {
        let coordinates =
            json::coordinates(location.latitude, location.longitude, "message.location")?;
        return Ok(Some(InboundContent::Location(Personal::new(coordinates))));
    }
    Ok(None)
}

fn media(
    kind: MediaKind,
    file: &File,
    message: &Message,
    what: &str,
) -> Result<InboundContent, WebhookError> {
    Ok(InboundContent::Media {
        kind,
        provider_media: json::non_empty(&file.file_id, what)?.to_owned(),
        mime_type: file.mime_type.clone(),
        caption: message.caption.clone().map(Personal::new),
        file_name: file.file_name.clone().map(Personal::new),
    })
}

/// "First Last" of the sender, else of the chat.
fn display_name(message: &Message) -> Option<String> {
    let (first, last) = match &message.from {
        Some(from) => (from.first_name.as_deref(), from.last_name.as_deref()),
        None => (
            message.chat.first_name.as_deref(),
            message.chat.last_name.as_deref(),
        ),
    };
    full_name(first, last)
}

fn full_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    match (first, last) {
        (Some(first), Some(last)) => Some(format!("{first} {last}")),
        (Some(name), None) | (None, Some(name)) => Some(name.to_owned()),
        (None, None) => None,
    }
}

#[derive(Deserialize)]
struct Message {
    /// Not used (dedupe is on `update_id`), but a message without one is malformed.
    #[serde(rename = "message_id")]
    _message_id: i64,
    from: Option<User>,
    chat: Chat,
    /// Unix seconds.
    #[serde(default, deserialize_with = "json::lenient_integer")]
    date: Option<i64>,
    text: Option<String>,
    caption: Option<String>,
    photo: Option<Vec<PhotoSize>>,
    document: Option<File>,
    video: Option<File>,
    video_note: Option<File>,
    audio: Option<File>,
    voice: Option<File>,
    location: Option<Location>,
}

/// `{"id","from","message"?,"chat_instance","data"?}`; `message` is absent for messages
/// sent in inline mode and may be an inaccessible message (`date` 0), which still names
/// its chat.
#[derive(Deserialize)]
struct CallbackQuery {
    id: String,
    from: Tapper,
    message: Option<CallbackMessage>,
    data: Option<String>,
}

#[derive(Deserialize)]
struct Tapper {
    /// May exceed 32 bits; in a private chat, the chat's id.
    id: i64,
    #[serde(default)]
    is_bot: bool,
    first_name: Option<String>,
    last_name: Option<String>,
}

#[derive(Deserialize)]
struct CallbackMessage {
    chat: Chat,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    is_bot: bool,
    first_name: Option<String>,
    last_name: Option<String>,
}

#[derive(Deserialize)]
struct Chat {
    /// May exceed 32 bits.
    id: i64,
    #[serde(rename = "type")]
    kind: String,
    first_name: Option<String>,
    last_name: Option<String>,
}

/// `{"chat","from","date","old_chat_member","new_chat_member",…}`: only the chat and
/// the bot's new status are read.
#[derive(Deserialize)]
struct ChatMemberUpdated {
    chat: Chat,
    new_chat_member: ChatMember,
}

#[derive(Deserialize)]
struct ChatMember {
    /// `creator`, `administrator`, `member`, `restricted`, `left` or `kicked`.
    status: String,
}

#[derive(Deserialize)]
struct PhotoSize {
    file_id: String,
    width: u64,
    height: u64,
    file_size: Option<u64>,
}

#[derive(Deserialize)]
struct File {
    file_id: String,
    mime_type: Option<String>,
    file_name: Option<String>,
}

#[derive(Deserialize)]
struct Location {
    latitude: f64,
    longitude: f64,
}
