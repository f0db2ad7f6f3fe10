//! Sending on the Telegram Bot API (`CHANNELS.md` §3.4).
//!
//! `POST {api_base_url}/bot<token>/sendMessage`: the token is in the path, so the URL is
//! a secret. Flood control answers `429` with `parameters.retry_after`. No 24-hour window.
//!
//! Choices go out as an inline keyboard, one button per row (so long titles are not cut
//! on a phone), the id as `callback_data` (1–64 bytes); ids beyond that, or more than
//! 100 buttons, as text with the options appended. A tap comes back as a
//! `callback_query` update, read by the webhook as the customer's message.

use std::time::Duration;

use helpline_domain::Channel;
use serde::Deserialize;
use serde_json::{Value, json};

use super::TelegramConfig;
use crate::choices::{label, text_with_options};
use crate::error::ConfigError;
use crate::outbound::{Form, OutboundMessage, SendOutcome};
use crate::outbound::{
    OutboundAdapter, ProviderRequest, ProviderResponse, Reason, Unsendable, by_code, join,
    json_post, require_url, to_json, unreadable_success,
};
use crate::secret::require_secrets;

/// The Bot API's limits: `callback_data` of 1–64 bytes, 100 buttons per keyboard.
const MAX_CALLBACK_DATA_BYTES: usize = 64;
const MAX_BUTTONS: usize = 100;

#[derive(Debug)]
pub struct TelegramOutbound {
    config: TelegramConfig,
}

impl TelegramOutbound {
    pub fn new(config: TelegramConfig) -> Result<Self, ConfigError> {
        require_secrets(Channel::Telegram, &[("bot_token", &config.bot_token)])?;
        require_url(Channel::Telegram, "api_base_url", &config.api_base_url)?;
        Ok(Self { config })
    }
}

impl OutboundAdapter for TelegramOutbound {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    fn build(&self, message: &OutboundMessage, _form: Form) -> Result<ProviderRequest, Unsendable> {
        // A private chat's id is an integer (beyond 32 bits); the Bot API also takes
        // `@username` strings, so anything else goes as a string.
        let chat_id = message
            .contact
            .parse::<i64>()
            .map_or_else(|_| Value::from(message.contact.as_str()), Value::from);
        let body = content(chat_id, message);
        let url = join(
            &self.config.api_base_url,
            &format!("bot{}/sendMessage", self.config.bot_token.expose()),
        );
        json_post(url, message, to_json(&body)?, &[])
    }

    fn classify(&self, _message: &OutboundMessage, response: &ProviderResponse) -> SendOutcome {
        let answer = serde_json::from_slice::<Answer>(&response.body);
        if response.is_success() {
            return match answer {
                Ok(Answer {
                    ok: true,
                    result: Some(Sent { message_id }),
                    ..
                }) => SendOutcome::Accepted {
                    provider_message_id: message_id.to_string(),
                },
                Ok(answer) if !answer.ok && answer.error_code.is_some() => {
                    failure(response, &answer)
                }
                _ => unreadable_success(self.channel(), response),
            };
        }
        match answer {
            Ok(answer) => failure(response, &answer),
            Err(_) => by_code(
                response.status,
                response.retry_after(),
                response.body_reason(format!("telegram answered {}", response.status)),
            ),
        }
    }
}

/// `sendMessage`'s parameters: the text, with an inline keyboard where the choices fit.
fn content(chat_id: Value, message: &OutboundMessage) -> Value {
    let choices = &message.choices;
    if choices.is_empty() {
        return json!({"chat_id": chat_id, "text": message.text});
    }
    let fits = choices.len() <= MAX_BUTTONS
        && choices
            .iter()
            .all(|c| (1..=MAX_CALLBACK_DATA_BYTES).contains(&c.id.len()));
    if !fits {
        return json!({"chat_id": chat_id, "text": text_with_options(&message.text, choices)});
    }
    let rows: Vec<Value> = choices
        .iter()
        .map(|choice| json!([{"text": label(choice), "callback_data": choice.id}]))
        .collect();
    json!({
        "chat_id": chat_id,
        "text": message.text,
        "reply_markup": {"inline_keyboard": rows},
    })
}

/// `{"ok":false,"error_code":429,"description":"…","parameters":{"retry_after":15}}`:
/// `retry_after` wins over everything, then the error code (the body's, else the
/// status line's) decides as for any provider.
fn failure(response: &ProviderResponse, answer: &Answer) -> SendOutcome {
    let code = answer
        .error_code
        .and_then(|code| u16::try_from(code).ok())
        .unwrap_or(response.status);
    let reason = match answer.description.as_deref() {
        Some(description) => Reason::provider(format!("telegram answered {code}"), description),
        None => Reason::ours(format!("telegram answered {code}: no description")),
    };
    let retry_after = answer
        .parameters
        .as_ref()
        .and_then(|parameters| parameters.retry_after)
        .map(Duration::from_secs);
    match retry_after {
        Some(after) => SendOutcome::Retry {
            after: Some(after),
            reason,
        },
        None => by_code(code, response.retry_after(), reason),
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    ok: bool,
    result: Option<Sent>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Sent {
    message_id: i64,
}

#[derive(Deserialize)]
struct Parameters {
    retry_after: Option<u64>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use helpline_domain::QuickReply;

    use super::*;
    use crate::secret::Secret;
    use crate::test_support::{answer, outbound};

    fn adapter() -> TelegramOutbound {
        TelegramOutbound::new(TelegramConfig {
            bot_token: Secret::new("123:ABC-def"),
            api_base_url: "http://127.0.0.1:9".to_owned(),
            ..TelegramConfig::default()
        })
        .unwrap()
    }

    fn message(contact: &str) -> OutboundMessage {
        outbound(Channel::Telegram, contact, "שלום")
    }

    #[test]
    fn request_puts_the_token_in_the_path_and_a_numeric_chat_id() {
        let request = adapter()
            .build(&message("5872361050123"), Form::Text)
            .unwrap();
        assert_eq!(request.url, "http://127.0.0.1:9/bot123:ABC-def/sendMessage");
        assert!(!request.headers.contains_key("authorization"));
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body, json!({"chat_id": 5872361050123_i64, "text": "שלום"}));
        let named = adapter().build(&message("@someone"), Form::Text).unwrap();
        let body: Value = serde_json::from_slice(&named.body).unwrap();
        assert_eq!(body["chat_id"], "@someone");
    }

    #[test]
    fn choices_are_an_inline_keyboard_with_the_id_as_callback_data() {
        let choices: Vec<QuickReply> = (1..=5)
            .map(|n| QuickReply {
                id: n.to_string(),
                title: "⭐".repeat(n),
            })
            .collect();
        let rating = OutboundMessage {
            prompt: "rating".to_owned(),
            choices,
            ..message("587236105")
        };
        let request = adapter().build(&rating, Form::Text).unwrap();
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let rows: Vec<Value> = (1..=5)
            .map(|n| json!([{"text": "⭐".repeat(n), "callback_data": n.to_string()}]))
            .collect();
        assert_eq!(
            body,
            json!({
                "chat_id": 587236105_i64,
                "text": "שלום",
                "reply_markup": {"inline_keyboard": rows},
            })
        );

        let too_long = OutboundMessage {
            choices: vec![QuickReply {
                id: "x".repeat(65),
                title: "Weiter".to_owned(),
            }],
            ..rating
        };
        let body: Value =
            serde_json::from_slice(&adapter().build(&too_long, Form::Text).unwrap().body).unwrap();
        assert!(body.get("reply_markup").is_none());
        assert_eq!(body["text"], format!("שלום\n\n{} – Weiter", "x".repeat(65)));
    }

    #[test]
    fn classifies_as_channels_md_says() {
        let a = adapter();
        let m = message("1");
        assert_eq!(
            a.classify(
                &m,
                &answer(
                    200,
                    r#"{"ok":true,"result":{"message_id":1043,"chat":{"id":1}}}"#
                )
            ),
            SendOutcome::Accepted {
                provider_message_id: "1043".to_owned()
            }
        );
        assert_eq!(
            a.classify(
                &m,
                &answer(
                    429,
                    r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 15","parameters":{"retry_after":15}}"#
                )
            ),
            SendOutcome::Retry {
                after: Some(Duration::from_secs(15)),
                reason: Reason::provider(
                    "telegram answered 429",
                    "Too Many Requests: retry after 15"
                )
            }
        );
        assert_eq!(
            a.classify(
                &m,
                &answer(
                    403,
                    r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was blocked by the user"}"#
                )
            ),
            SendOutcome::Permanent {
                reason: Reason::provider(
                    "telegram answered 403",
                    "Forbidden: bot was blocked by the user"
                )
            }
        );
        assert!(matches!(
            a.classify(&m, &answer(502, "Bad Gateway")),
            SendOutcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            a.classify(
                &m,
                &answer(
                    400,
                    r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#
                )
            ),
            SendOutcome::Permanent { .. }
        ));
        assert!(matches!(
            a.classify(&m, &answer(200, r#"{"ok":true}"#)),
            SendOutcome::Permanent { .. }
        ));
    }
}
