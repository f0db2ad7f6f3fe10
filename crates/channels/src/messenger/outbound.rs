//! Sending on Facebook Messenger's Send API (`CHANNELS.md` §2.4).
//!
//! `POST {api_base_url}/me/messages` with the Page access token as `Authorization:
//! Bearer` (the configuration names no page id; `/me` is the page the token belongs to),
//! `messaging_type: RESPONSE`. Outside the 24-hour window Meta refuses (2018278); the
//! `HUMAN_AGENT` tag needs a permission helpline does not assume, so that fails. A
//! notification outside the window goes out with its message tag (`messaging_type:
//! MESSAGE_TAG`, e.g. `POST_PURCHASE_UPDATE`): [`Form::Template`] is that form here.
//!
//! Choices go out as `quick_replies` (`content_type: text`, the id as `payload`, titles
//! of at most 20 characters, at most 13); more as text with the options appended.

use std::time::{Duration, SystemTime};

use helpline_domain::Channel;
use http::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::{Value, json};

use super::MessengerConfig;
use crate::choices::{fit, label, text_with_options};
use crate::error::ConfigError;
use crate::graph;
use crate::outbound::{Form, OutboundMessage, SendOutcome};
use crate::outbound::{
    OutboundAdapter, ProviderRequest, ProviderResponse, Unsendable, bearer, join, json_post,
    require_url, to_json, unreadable_success,
};
use crate::secret::require_secrets;

/// How long after the customer's last message free text may be sent.
const CUSTOMER_SERVICE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// "This message is sent outside of allowed window" (permission error 10).
const WINDOW_CLOSED_SUBCODE: i64 = 2018278;
/// The Send API's limits on quick replies: how many, a title's and a payload's length.
const MAX_QUICK_REPLIES: usize = 13;
const MAX_TITLE_CHARS: usize = 20;
const MAX_PAYLOAD_CHARS: usize = 1000;

#[derive(Debug)]
pub struct MessengerOutbound {
    config: MessengerConfig,
}

impl MessengerOutbound {
    pub fn new(config: MessengerConfig) -> Result<Self, ConfigError> {
        require_secrets(
            Channel::Messenger,
            &[("page_access_token", &config.page_access_token)],
        )?;
        require_url(Channel::Messenger, "api_base_url", &config.api_base_url)?;
        Ok(Self { config })
    }
}

impl OutboundAdapter for MessengerOutbound {
    fn channel(&self) -> Channel {
        Channel::Messenger
    }

    fn first_form(&self, message: &OutboundMessage, now: SystemTime) -> Result<Form, Unsendable> {
        let inside = message.customer_last_message_at.is_some_and(|last| {
            // A last message "in the future" (clock skew) is as recent as it gets.
            now.duration_since(last)
                .map_or(true, |age| age < CUSTOMER_SERVICE_WINDOW)
        });
        match tag(message) {
            Some(_) if !inside => Ok(Form::Template),
            _ => Ok(Form::Text),
        }
    }

    fn after_window_closed(&self, message: &OutboundMessage, form: Form) -> Option<Form> {
        (form == Form::Text && tag(message).is_some()).then_some(Form::Template)
    }

    fn build(&self, message: &OutboundMessage, form: Form) -> Result<ProviderRequest, Unsendable> {
        let body = match (form, tag(message)) {
            (Form::Template, Some(tag)) => json!({
                "recipient": {"id": message.contact},
                "messaging_type": "MESSAGE_TAG",
                "tag": tag,
                "message": content(message),
            }),
            (Form::Template, None) => {
                return Err(Unsendable(
                    "outside Messenger's 24-hour window only a tagged update may be sent"
                        .to_owned(),
                ));
            }
            (Form::Text, _) => json!({
                "recipient": {"id": message.contact},
                "messaging_type": "RESPONSE",
                "message": content(message),
            }),
        };
        let authorization = bearer(self.config.page_access_token.expose());
        json_post(
            join(&self.config.api_base_url, "me/messages"),
            message,
            to_json(&body)?,
            &[(AUTHORIZATION, &authorization, true)],
        )
    }

    fn classify(&self, _message: &OutboundMessage, response: &ProviderResponse) -> SendOutcome {
        if response.is_success() {
            return match serde_json::from_slice::<Sent>(&response.body) {
                Ok(Sent {
                    message_id: Some(id),
                }) if !id.is_empty() => SendOutcome::Accepted {
                    provider_message_id: id,
                },
                _ => unreadable_success(self.channel(), response),
            };
        }
        graph::classify_failure(self.channel(), response, |error| {
            error.error_subcode == Some(WINDOW_CLOSED_SUBCODE)
                || (error.code == Some(10) && error.message.contains("outside of allowed window"))
        })
    }
}

/// A notification's message tag, if it has one.
fn tag(message: &OutboundMessage) -> Option<&str> {
    message
        .notification
        .as_ref()
        .and_then(|notification| notification.message_tag.as_deref())
}

/// The `message` object: the text with quick replies where the choices fit them, else
/// the text with the options appended.
fn content(message: &OutboundMessage) -> Value {
    let choices = &message.choices;
    let fits = choices.len() <= MAX_QUICK_REPLIES
        && choices
            .iter()
            .all(|c| !c.id.is_empty() && c.id.chars().count() <= MAX_PAYLOAD_CHARS);
    if choices.is_empty() {
        return json!({"text": message.text});
    }
    if !fits {
        return json!({"text": text_with_options(&message.text, choices)});
    }
    let quick_replies: Vec<Value> = choices
        .iter()
        .map(|choice| {
            json!({
                "content_type": "text",
                "title": fit(label(choice), MAX_TITLE_CHARS),
                "payload": choice.id,
            })
        })
        .collect();
    json!({"text": message.text, "quick_replies": quick_replies})
}

/// `{"recipient_id":"<PSID>","message_id":"m_..."}`
#[derive(Deserialize)]
struct Sent {
    message_id: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use helpline_domain::QuickReply;

    use super::*;
    use crate::outbound::Reason;
    use crate::secret::Secret;
    use crate::test_support::{answer, outbound};

    fn adapter() -> MessengerOutbound {
        MessengerOutbound::new(MessengerConfig {
            page_access_token: Secret::new("page-token"),
            api_base_url: "http://127.0.0.1:9/v21.0".to_owned(),
            ..MessengerConfig::default()
        })
        .unwrap()
    }

    fn message() -> OutboundMessage {
        outbound(Channel::Messenger, "6543210987654321", "Hallo 👋🏽")
    }

    #[test]
    fn request_follows_the_send_api() {
        let request = adapter().build(&message(), Form::Text).unwrap();
        assert_eq!(request.url, "http://127.0.0.1:9/v21.0/me/messages");
        assert_eq!(request.headers["authorization"], "Bearer page-token");
        assert!(request.headers.contains_key("x-idempotency-key"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({
                "recipient": {"id": "6543210987654321"},
                "messaging_type": "RESPONSE",
                "message": {"text": "Hallo 👋🏽"},
            })
        );
    }

    #[test]
    fn choices_are_quick_replies_with_the_id_as_payload() {
        let choices: Vec<QuickReply> = (1..=5)
            .map(|n| QuickReply {
                id: n.to_string(),
                title: "⭐".repeat(n),
            })
            .collect();
        let rating = OutboundMessage {
            text: "Wie war es?".to_owned(),
            prompt: "rating".to_owned(),
            choices: choices.clone(),
            ..message()
        };
        let request = adapter().build(&rating, Form::Text).unwrap();
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let quick_replies: Vec<Value> = (1..=5)
            .map(|n| json!({"content_type": "text", "title": "⭐".repeat(n), "payload": n.to_string()}))
            .collect();
        assert_eq!(
            body,
            json!({
                "recipient": {"id": "6543210987654321"},
                "messaging_type": "RESPONSE",
                "message": {"text": "Wie war es?", "quick_replies": quick_replies},
            })
        );

        let long = OutboundMessage {
            choices: vec![QuickReply {
                id: "x".to_owned(),
                title: "Ein Titel über zwanzig Zeichen".to_owned(),
            }],
            ..rating.clone()
        };
        let body: Value =
            serde_json::from_slice(&adapter().build(&long, Form::Text).unwrap().body).unwrap();
        let title = body["message"]["quick_replies"][0]["title"]
            .as_str()
            .unwrap();
        assert_eq!(title.chars().count(), 20);

        let many = OutboundMessage {
            choices: (1..=14)
                .map(|n| QuickReply {
                    id: n.to_string(),
                    title: String::new(),
                })
                .collect(),
            ..rating
        };
        let body: Value =
            serde_json::from_slice(&adapter().build(&many, Form::Text).unwrap().body).unwrap();
        assert!(body["message"].get("quick_replies").is_none());
        let text = body["message"]["text"].as_str().unwrap();
        assert!(text.starts_with("Wie war es?\n\n1\n2\n"), "{text}");
        assert!(text.ends_with("\n14"), "{text}");
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
                    r#"{"recipient_id":"6543210987654321","message_id":"m_abc"}"#
                )
            ),
            SendOutcome::Accepted {
                provider_message_id: "m_abc".to_owned()
            }
        );
        for code in [4, 613, 2] {
            let body = format!(r#"{{"error":{{"message":"limit","code":{code}}}}}"#);
            assert!(
                matches!(
                    a.classify(&m, &answer(400, &body)),
                    SendOutcome::Retry { .. }
                ),
                "{code}"
            );
        }
        let window = r#"{"error":{"message":"(#10) This message is sent outside of allowed window.","code":10,"error_subcode":2018278}}"#;
        assert!(matches!(
            a.classify(&m, &answer(400, window)),
            SendOutcome::WindowClosed { .. }
        ));
        assert_eq!(a.after_window_closed(&m, Form::Text), None);
        let unknown = r#"{"error":{"message":"(#100) No matching user found","code":100,"error_subcode":2018001}}"#;
        match a.classify(&m, &answer(400, unknown)) {
            SendOutcome::Permanent { reason } => {
                assert_eq!(
                    reason,
                    Reason::provider(
                        "messenger answered 400, error 100/2018001",
                        "(#100) No matching user found"
                    )
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            a.classify(&m, &answer(503, "")),
            SendOutcome::Retry { .. }
        ));
    }

    #[test]
    fn a_notification_outside_the_window_goes_out_with_its_message_tag() {
        let now = SystemTime::now();
        let tagged = |last: Option<SystemTime>| OutboundMessage {
            customer_last_message_at: last,
            notification: Some(crate::NotificationMeans {
                whatsapp_template: None,
                message_tag: Some("POST_PURCHASE_UPDATE".to_owned()),
            }),
            ..message()
        };
        let adapter = adapter();
        let inside = tagged(Some(now - Duration::from_secs(600)));
        assert_eq!(adapter.first_form(&inside, now), Ok(Form::Text));
        let outside = tagged(Some(now - Duration::from_secs(48 * 3600)));
        assert_eq!(adapter.first_form(&outside, now), Ok(Form::Template));
        let request = adapter.build(&outside, Form::Template).unwrap();
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["messaging_type"], "MESSAGE_TAG");
        assert_eq!(body["tag"], "POST_PURCHASE_UPDATE");
        assert_eq!(body["message"]["text"], "Hallo 👋🏽");
        // Meta saying the window closed after all: the tagged form, once.
        assert_eq!(
            adapter.after_window_closed(&inside, Form::Text),
            Some(Form::Template)
        );
        // A bot's or agent's message is never tagged.
        assert_eq!(adapter.first_form(&message(), now), Ok(Form::Text));
        assert_eq!(adapter.after_window_closed(&message(), Form::Text), None);
        assert!(adapter.build(&message(), Form::Template).is_err());
    }
}
