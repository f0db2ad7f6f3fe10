//! Sending on the Viber REST bot API (`CHANNELS.md` §4.5).
//!
//! `POST {api_base_url}/send_message` with `X-Viber-Auth-Token` and a sender name.
//! Failures come back as HTTP 200 with a non-zero `status`; 12 (too many requests) is
//! retried, every other status is permanent. `message_token` exceeds 2^53 and is kept
//! as the digits sent, never read as a float.
//!
//! Choices go out as a `keyboard` of `reply` buttons (the id as `ActionBody`, what the
//! customer's tap sends back as a text message), one full-width button per row; more
//! than 24 buttons, or an empty id, as text with the options appended.

use helpline_domain::Channel;
use http::HeaderName;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ViberConfig;
use crate::choices::{label, text_with_options};
use crate::error::ConfigError;
use crate::outbound::{Form, OutboundMessage, SendOutcome};
use crate::outbound::{
    OutboundAdapter, ProviderRequest, ProviderResponse, Reason, Unsendable, by_status, join,
    json_post, require_setting, require_url, to_json, unreadable_success,
};
use crate::secret::require_secrets;

const AUTH_HEADER: HeaderName = HeaderName::from_static("x-viber-auth-token");
/// Viber's limit on `sender.name` (the SDK's `MAX_SENDER_NAME_CHARS`).
pub const MAX_SENDER_NAME_CHARS: usize = 28;
const TOO_MANY_REQUESTS: i64 = 12;
/// A keyboard holds at most 24 buttons; a button 6 columns wide fills its row.
const MAX_BUTTONS: usize = 24;
const FULL_WIDTH: u8 = 6;

#[derive(Debug)]
pub struct ViberOutbound {
    config: ViberConfig,
    sender_name: String,
}

impl ViberOutbound {
    pub fn new(config: ViberConfig, sender_name: String) -> Result<Self, ConfigError> {
        require_secrets(Channel::Viber, &[("auth_token", &config.auth_token)])?;
        require_url(Channel::Viber, "api_base_url", &config.api_base_url)?;
        require_setting(Channel::Viber, "sender_name", &sender_name)?;
        if sender_name.chars().count() > MAX_SENDER_NAME_CHARS {
            return Err(ConfigError::invalid(
                Channel::Viber,
                "sender_name",
                "must be at most 28 characters",
            ));
        }
        Ok(Self {
            config,
            sender_name,
        })
    }
}

impl OutboundAdapter for ViberOutbound {
    fn channel(&self) -> Channel {
        Channel::Viber
    }

    fn build(&self, message: &OutboundMessage, _form: Form) -> Result<ProviderRequest, Unsendable> {
        let mut body = json!({
            "receiver": message.contact,
            "min_api_version": 1,
            "sender": {"name": self.sender_name},
            "tracking_data": message.message.0.to_string(),
            "type": "text",
            "text": message.text,
        });
        let choices = &message.choices;
        let fits = choices.len() <= MAX_BUTTONS && choices.iter().all(|c| !c.id.is_empty());
        if let (false, Some(object)) = (choices.is_empty(), body.as_object_mut()) {
            if fits {
                let buttons: Vec<Value> = choices
                    .iter()
                    .map(|choice| {
                        json!({
                            "ActionType": "reply",
                            "ActionBody": choice.id,
                            "Text": label(choice),
                            "Columns": FULL_WIDTH,
                            "Rows": 1,
                        })
                    })
                    .collect();
                object.insert(
                    "keyboard".to_owned(),
                    json!({"Type": "keyboard", "DefaultHeight": false, "Buttons": buttons}),
                );
            } else {
                object.insert(
                    "text".to_owned(),
                    json!(text_with_options(&message.text, choices)),
                );
            }
        }
        json_post(
            join(&self.config.api_base_url, "send_message"),
            message,
            to_json(&body)?,
            &[(AUTH_HEADER, self.config.auth_token.expose(), true)],
        )
    }

    fn classify(&self, _message: &OutboundMessage, response: &ProviderResponse) -> SendOutcome {
        if !response.is_success() {
            let reason = response.body_reason(format!("viber answered {}", response.status));
            return by_status(response, reason);
        }
        let Ok(answer) = serde_json::from_slice::<Answer>(&response.body) else {
            return unreadable_success(self.channel(), response);
        };
        let reason = || {
            let summary = format!(
                "viber status {} ({})",
                answer.status,
                status_name(answer.status)
            );
            match answer.status_message.as_deref() {
                Some(said) => Reason::provider(summary, said),
                None => Reason::ours(format!("{summary}: no message")),
            }
        };
        match (answer.status, &answer.message_token) {
            (0, Some(token)) => SendOutcome::Accepted {
                provider_message_id: token.to_string(),
            },
            (0, None) => unreadable_success(self.channel(), response),
            (TOO_MANY_REQUESTS, _) => SendOutcome::Retry {
                after: response.retry_after(),
                reason: reason(),
            },
            _ => SendOutcome::Permanent { reason: reason() },
        }
    }
}

/// The SDKs' names for the status codes; 15 and above vary between SDK versions.
fn status_name(status: i64) -> &'static str {
    match status {
        0 => "ok",
        1 => "invalidUrl",
        2 => "invalidAuthToken",
        3 => "badData",
        4 => "missingData",
        5 => "receiverNotRegistered",
        6 => "receiverNotSubscribed",
        7 => "publicAccountBlocked",
        8 => "publicAccountNotFound",
        9 => "publicAccountSuspended",
        10 => "webhookNotSet",
        11 => "receiverNoSuitableDevice",
        12 => "tooManyRequests",
        13 => "apiVersionNotSupported",
        14 => "incompatibleWithVersion",
        _ => "other",
    }
}

/// `{"status":0,"status_message":"ok","message_token":5741311803571729999,…}`
#[derive(Deserialize)]
struct Answer {
    status: i64,
    status_message: Option<String>,
    /// A `Number` keeps all 64 bits of the token (serde_json reads integers exactly).
    message_token: Option<serde_json::Number>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use helpline_domain::QuickReply;

    use super::*;
    use crate::secret::Secret;
    use crate::test_support::{answer, outbound};

    fn adapter() -> ViberOutbound {
        ViberOutbound::new(
            ViberConfig {
                auth_token: Secret::new("viber-token"),
                api_base_url: "http://127.0.0.1:9/pa".to_owned(),
            },
            "Helpline".to_owned(),
        )
        .unwrap()
    }

    fn message() -> OutboundMessage {
        outbound(Channel::Viber, "01234567890A=", "Hallo")
    }

    #[test]
    fn request_carries_token_and_sender_name() {
        let request = adapter().build(&message(), Form::Text).unwrap();
        assert_eq!(request.url, "http://127.0.0.1:9/pa/send_message");
        assert_eq!(request.headers["x-viber-auth-token"], "viber-token");
        assert!(request.headers["x-viber-auth-token"].is_sensitive());
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["receiver"], "01234567890A=");
        assert_eq!(body["sender"]["name"], "Helpline");
        assert_eq!(body["type"], "text");
        assert_eq!(body["text"], "Hallo");
        assert_eq!(body["min_api_version"], 1);
    }

    #[test]
    fn choices_are_a_keyboard_of_reply_buttons() {
        let choices: Vec<QuickReply> = (1..=5)
            .map(|n| QuickReply {
                id: n.to_string(),
                title: "⭐".repeat(n),
            })
            .collect();
        let rating = OutboundMessage {
            prompt: "rating".to_owned(),
            choices,
            ..message()
        };
        let request = adapter().build(&rating, Form::Text).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let buttons: Vec<serde_json::Value> = (1..=5)
            .map(|n| {
                json!({"ActionType": "reply", "ActionBody": n.to_string(), "Text": "⭐".repeat(n),
                       "Columns": 6, "Rows": 1})
            })
            .collect();
        assert_eq!(
            body["keyboard"],
            json!({"Type": "keyboard", "DefaultHeight": false, "Buttons": buttons})
        );
        assert_eq!(body["text"], "Hallo");
        assert_eq!(body["type"], "text");

        let many = OutboundMessage {
            choices: (1..=25)
                .map(|n| QuickReply {
                    id: n.to_string(),
                    title: n.to_string(),
                })
                .collect(),
            ..rating
        };
        let body: serde_json::Value =
            serde_json::from_slice(&adapter().build(&many, Form::Text).unwrap().body).unwrap();
        assert!(body.get("keyboard").is_none());
        assert!(
            body["text"].as_str().unwrap().ends_with("\n24\n25"),
            "{body}"
        );
    }

    #[test]
    fn refuses_a_sender_name_viber_would_cut() {
        let long = "x".repeat(29);
        let config = ViberConfig {
            auth_token: Secret::new("t"),
            api_base_url: "http://127.0.0.1:9/pa".to_owned(),
        };
        assert!(ViberOutbound::new(config.clone(), long).is_err());
        assert!(ViberOutbound::new(config, "ä".repeat(28)).is_ok());
    }

    #[test]
    fn classifies_as_channels_md_says() {
        let a = adapter();
        let m = message();
        assert_eq!(
            a.classify(
                &m,
                &answer(
                    200,
                    r#"{"status":0,"status_message":"ok","message_token":5741311803571729999,"chat_hostname":"SN-CHAT-05_"}"#
                )
            ),
            SendOutcome::Accepted {
                provider_message_id: "5741311803571729999".to_owned()
            }
        );
        assert!(matches!(
            a.classify(
                &m,
                &answer(200, r#"{"status":12,"status_message":"tooManyRequests"}"#)
            ),
            SendOutcome::Retry { after: None, .. }
        ));
        for status in [5, 6, 2, 3, 13, 99] {
            let body = format!(r#"{{"status":{status},"status_message":"nope"}}"#);
            assert!(
                matches!(
                    a.classify(&m, &answer(200, &body)),
                    SendOutcome::Permanent { .. }
                ),
                "{status}"
            );
        }
        assert_eq!(
            a.classify(
                &m,
                &answer(200, r#"{"status":6,"status_message":"notSubscribed"}"#)
            ),
            SendOutcome::Permanent {
                reason: Reason::provider("viber status 6 (receiverNotSubscribed)", "notSubscribed")
            }
        );
        assert!(matches!(
            a.classify(&m, &answer(503, "")),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            a.classify(&m, &answer(429, "")),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            a.classify(&m, &answer(200, "{}")),
            SendOutcome::Permanent { .. }
        ));
    }
}
