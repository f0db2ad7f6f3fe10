//! Sending to helpline's web chat backend (`CHANNELS.md` §5).
//!
//! `POST {callback_url}`, signed like inbound webhooks with `X-Helpline-Signature:
//! sha256=<hex HMAC-SHA256(shared_secret, body)>`. `event_id` is the idempotency key the
//! backend dedupes on; our message id, `out_<message id>`, is the provider message id.
//!
//! Choices go out twice: as `quick_replies` (their ids, which the backend may render as
//! buttons whose tap sends the id as the customer's text) and appended to the text one
//! per line, so a backend that shows no buttons still shows the options to type.

use helpline_domain::Channel;
use hmac::{Hmac, Mac};
use http::HeaderName;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::WebConfig;
use crate::choices::text_with_options;
use crate::error::ConfigError;
use crate::outbound::{Form, OutboundMessage, SendOutcome};
use crate::outbound::{
    OutboundAdapter, ProviderRequest, ProviderResponse, Reason, Unsendable, by_status, json_post,
    require_url, to_json,
};
use crate::secret::require_secrets;

const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-helpline-signature");

#[derive(Debug)]
pub struct WebOutbound {
    config: WebConfig,
}

impl WebOutbound {
    pub fn new(config: WebConfig) -> Result<Self, ConfigError> {
        require_secrets(
            Channel::WebChat,
            &[("shared_secret", &config.shared_secret)],
        )?;
        require_url(Channel::WebChat, "callback_url", &config.callback_url)?;
        Ok(Self { config })
    }
}

/// The id the backend and its status events know our message by.
pub fn outbound_message_id(message: &OutboundMessage) -> String {
    format!("out_{}", message.message.0)
}

impl OutboundAdapter for WebOutbound {
    fn channel(&self) -> Channel {
        Channel::WebChat
    }

    fn build(&self, message: &OutboundMessage, _form: Form) -> Result<ProviderRequest, Unsendable> {
        let mut content = json!({
            "id": outbound_message_id(message),
            "text": text_with_options(&message.text, &message.choices),
        });
        if let (false, Some(object)) = (message.choices.is_empty(), content.as_object_mut()) {
            let ids: Vec<&str> = message.choices.iter().map(|c| c.id.as_str()).collect();
            object.insert("quick_replies".to_owned(), json!(ids));
        }
        let body = to_json(&json!({
            "version": 1,
            "event_id": message.idempotency_key(),
            "type": "message",
            "session_id": message.contact,
            "message": content,
        }))?;
        // HMAC takes keys of any length, so this cannot fail; mapped rather than unwrapped.
        let mut mac = Hmac::<Sha256>::new_from_slice(self.config.shared_secret.expose().as_bytes())
            .map_err(|_| Unsendable("the web chat's shared secret was refused".to_owned()))?;
        mac.update(&body);
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        json_post(
            self.config.callback_url.clone(),
            message,
            body,
            &[(SIGNATURE_HEADER, &signature, false)],
        )
    }

    fn classify(&self, message: &OutboundMessage, response: &ProviderResponse) -> SendOutcome {
        if response.is_success() {
            return SendOutcome::Accepted {
                provider_message_id: outbound_message_id(message),
            };
        }
        let summary = format!("web chat backend answered {}", response.status);
        let reason = match serde_json::from_slice::<Refusal>(&response.body)
            .ok()
            .and_then(|refusal| refusal.error.or(refusal.message))
        {
            Some(said) => Reason::provider(summary, &said),
            None => response.body_reason(summary),
        };
        by_status(response, reason)
    }
}

/// `{"error":"…"}` or `{"message":"…"}`, if the backend explains itself.
#[derive(Deserialize)]
struct Refusal {
    error: Option<String>,
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use helpline_domain::QuickReply;
    use uuid::Uuid;

    use super::*;
    use crate::secret::Secret;
    use crate::test_support::{answer, outbound};

    fn config() -> WebConfig {
        WebConfig {
            shared_secret: Secret::new("web-secret"),
            callback_url: "http://127.0.0.1:9/chat/replies".to_owned(),
            ..WebConfig::default()
        }
    }

    fn message() -> OutboundMessage {
        outbound(Channel::WebChat, "sess_9f8e7d6c5b4a", "Wir melden uns.")
    }

    #[test]
    fn request_is_signed_like_an_inbound_webhook() {
        let request = WebOutbound::new(config())
            .unwrap()
            .build(&message(), Form::Text)
            .unwrap();
        assert_eq!(request.url, "http://127.0.0.1:9/chat/replies");
        // Signed as the inbound adapter checks signatures, with the same secret. (A reply
        // has no `sent_at`: the freshness check is for events the backend sends us.)
        let header = request.headers["x-helpline-signature"].as_bytes();
        let signature = header.strip_prefix(b"sha256=").unwrap();
        crate::signature::verify_hmac_sha256(b"web-secret", &request.body, signature).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let id = Uuid::from_u128(2);
        assert_eq!(
            body,
            json!({
                "version": 1,
                "event_id": id.to_string(),
                "type": "message",
                "session_id": "sess_9f8e7d6c5b4a",
                "message": {"id": format!("out_{id}"), "text": "Wir melden uns."},
            })
        );
        assert_eq!(
            request.headers["x-idempotency-key"],
            id.to_string().as_str()
        );
    }

    #[test]
    fn choices_are_quick_replies_and_lines_of_the_text() {
        let rating = OutboundMessage {
            text: "Wie war es?".to_owned(),
            prompt: "rating".to_owned(),
            choices: (1..=5)
                .map(|n| QuickReply {
                    id: n.to_string(),
                    title: "⭐".repeat(n),
                })
                .collect(),
            ..message()
        };
        let request = WebOutbound::new(config())
            .unwrap()
            .build(&rating, Form::Text)
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body["message"],
            json!({
                "id": format!("out_{}", Uuid::from_u128(2)),
                "text": "Wie war es?\n\n1 – ⭐\n2 – ⭐⭐\n3 – ⭐⭐⭐\n4 – ⭐⭐⭐⭐\n5 – ⭐⭐⭐⭐⭐",
                "quick_replies": ["1", "2", "3", "4", "5"],
            })
        );
    }

    #[test]
    fn classifies_as_channels_md_says() {
        let a = WebOutbound::new(config()).unwrap();
        let m = message();
        assert_eq!(
            a.classify(&m, &answer(200, r#"{"ok":true}"#)),
            SendOutcome::Accepted {
                provider_message_id: format!("out_{}", Uuid::from_u128(2))
            }
        );
        assert!(matches!(
            a.classify(&m, &answer(429, "")),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            a.classify(&m, &answer(500, "")),
            SendOutcome::Retry { .. }
        ));
        assert_eq!(
            a.classify(&m, &answer(404, r#"{"error":"unknown session"}"#)),
            SendOutcome::Permanent {
                reason: Reason::provider("web chat backend answered 404", "unknown session")
            }
        );
    }
}
