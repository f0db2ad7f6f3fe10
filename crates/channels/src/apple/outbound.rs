//! Sending through Apple's MSP gateway (`APPLE-AND-NOTIFY.md` §1.6).
//!
//! `POST {api_base_url}/message`, `Authorization: Bearer <JWT iss=MSP id, iat=now>`,
//! headers `id` (helpline's message id, so a retry is the same message to Apple),
//! `Source-Id` (the business) and `Destination-Id` (the customer's opaque id), and
//! `auto-reply: true` on the bot's messages. Apple answers `200` with no body and no id;
//! the message id is the provider's id. 400/401/403/404 are final, 5xx and timeouts are
//! retried with the same `id`.
//!
//! Choices: two to five go out as a quick reply (the text is its summary, each choice an
//! item), which Apple shows as buttons; more, or one, are lines of the text.

use std::time::SystemTime;

use helpline_domain::Channel;
use http::HeaderName;
use serde_json::json;

use super::{AppleConfig, Clock, gateway_token};
use crate::choices::{fit, label, text_with_options};
use crate::error::ConfigError;
use crate::outbound::{
    Form, OutboundAdapter, OutboundMessage, ProviderRequest, ProviderResponse, SendOutcome,
    Unsendable, bearer, by_status, json_post, require_url, to_json,
};

/// The balloon of Apple's own interactive messages (quick replies, list pickers).
const BID: &str = "com.apple.messages.MSMessageExtensionBalloonPlugin:0000000000:com.apple.icloud.apps.messages.business.extension";
/// Items a quick reply may hold.
const QUICK_REPLY_ITEMS: std::ops::RangeInclusive<usize> = 2..=5;
/// Characters of an item's title that fit its button.
const ITEM_TITLE_CHARS: usize = 24;

#[derive(Debug)]
pub struct AppleOutbound {
    config: AppleConfig,
    key: Vec<u8>,
    clock: Clock,
}

impl AppleOutbound {
    pub fn new(config: AppleConfig) -> Result<Self, ConfigError> {
        Self::with_clock(config, SystemTime::now)
    }

    /// Tokens made at the time `clock` gives (a fixed time in tests).
    pub fn with_clock(config: AppleConfig, clock: Clock) -> Result<Self, ConfigError> {
        let key = config.check()?;
        require_url(Channel::AppleMessages, "api_base_url", &config.api_base_url)?;
        Ok(Self { config, key, clock })
    }

    fn content(&self, message: &OutboundMessage, id: &str) -> serde_json::Value {
        let envelope = |kind: &str| {
            json!({
                "v": 1,
                "id": id,
                "type": kind,
                "sourceId": self.config.business_id,
                "destinationId": message.contact,
            })
        };
        if QUICK_REPLY_ITEMS.contains(&message.choices.len()) {
            let items: Vec<serde_json::Value> = message
                .choices
                .iter()
                .map(|choice| json!({"identifier": choice.id, "title": fit(label(choice), ITEM_TITLE_CHARS)}))
                .collect();
            let mut body = envelope("interactive");
            body["interactiveData"] = json!({
                "bid": BID,
                "data": {
                    "version": "1.0",
                    "mspVersion": "1.0",
                    "requestIdentifier": id,
                    "quick-reply": {"summaryText": message.text, "items": items},
                },
            });
            return body;
        }
        let mut body = envelope("text");
        body["body"] = json!(text_with_options(&message.text, &message.choices));
        body
    }
}

impl OutboundAdapter for AppleOutbound {
    fn channel(&self) -> Channel {
        Channel::AppleMessages
    }

    fn build(&self, message: &OutboundMessage, _form: Form) -> Result<ProviderRequest, Unsendable> {
        let id = message.message.0.to_string();
        let token = gateway_token(&self.config, &self.key, (self.clock)()).map_err(Unsendable)?;
        let authorization = bearer(&token);
        let url = format!("{}/message", self.config.api_base_url.trim_end_matches('/'));
        let body = to_json(&self.content(message, &id))?;
        let mut headers = vec![
            (http::header::AUTHORIZATION, authorization.as_str(), true),
            (HeaderName::from_static("id"), id.as_str(), false),
            (
                HeaderName::from_static("source-id"),
                self.config.business_id.as_str(),
                false,
            ),
            (
                HeaderName::from_static("destination-id"),
                message.contact.as_str(),
                true,
            ),
        ];
        // The bot's words; an agent's are a person's.
        if !message.prompt.is_empty() {
            headers.push((HeaderName::from_static("auto-reply"), "true", false));
        }
        json_post(url, message, body, &headers)
    }

    fn classify(&self, message: &OutboundMessage, response: &ProviderResponse) -> SendOutcome {
        if response.is_success() {
            return SendOutcome::Accepted {
                provider_message_id: message.message.0.to_string(),
            };
        }
        let reason = response.body_reason(format!("apple gateway answered {}", response.status));
        by_status(response, reason)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use helpline_domain::QuickReply;
    use uuid::Uuid;

    use super::*;
    use crate::secret::Secret;
    use crate::test_support::{answer, outbound};

    fn config() -> AppleConfig {
        AppleConfig {
            msp_id: "msp-0001".to_owned(),
            secret: Secret::new("c2VjcmV0LW9mLXRoZS1tc3A="),
            business_id: "a884eddf-business".to_owned(),
            api_base_url: "http://127.0.0.1:9/apple/v1".to_owned(),
            ..AppleConfig::default()
        }
    }

    fn at_noon() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_082_800)
    }

    fn message() -> OutboundMessage {
        OutboundMessage {
            prompt: "ask_serial".to_owned(),
            ..outbound(
                Channel::AppleMessages,
                "urn:mbid:AQAAY-customer",
                "Wie lautet die Seriennummer?",
            )
        }
    }

    #[test]
    fn a_text_goes_to_the_customer_from_the_business_with_a_token_of_the_msp() {
        let adapter = AppleOutbound::with_clock(config(), at_noon).unwrap();
        let request = adapter.build(&message(), Form::Text).unwrap();
        let id = Uuid::from_u128(2).to_string();
        assert_eq!(request.url, "http://127.0.0.1:9/apple/v1/message");
        assert_eq!(request.headers["id"], id.as_str());
        assert_eq!(request.headers["source-id"], "a884eddf-business");
        assert_eq!(request.headers["destination-id"], "urn:mbid:AQAAY-customer");
        assert_eq!(request.headers["auto-reply"], "true");
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            json!({"v": 1, "id": id, "type": "text", "sourceId": "a884eddf-business",
                   "destinationId": "urn:mbid:AQAAY-customer", "body": "Wie lautet die Seriennummer?"})
        );
        // The token: HS256 under the decoded secret, iss the MSP, iat now.
        let token = request.headers["authorization"]
            .to_str()
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(b"secret-of-the-msp"),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims, json!({"iss": "msp-0001", "iat": 1_764_082_800}));
        assert!(request.headers["authorization"].is_sensitive());
    }

    #[test]
    fn an_agents_message_is_no_auto_reply() {
        let adapter = AppleOutbound::with_clock(config(), at_noon).unwrap();
        let agent = OutboundMessage {
            prompt: String::new(),
            ..message()
        };
        let request = adapter.build(&agent, Form::Text).unwrap();
        assert!(request.headers.get("auto-reply").is_none());
    }

    #[test]
    fn up_to_five_choices_are_a_quick_reply_more_are_lines() {
        let adapter = AppleOutbound::with_clock(config(), at_noon).unwrap();
        let rating = OutboundMessage {
            text: "Wie zufrieden waren Sie?".to_owned(),
            prompt: "rating".to_owned(),
            choices: (1..=5)
                .map(|n| QuickReply {
                    id: n.to_string(),
                    title: "⭐".repeat(n),
                })
                .collect(),
            ..message()
        };
        let body: serde_json::Value =
            serde_json::from_slice(&adapter.build(&rating, Form::Text).unwrap().body).unwrap();
        assert_eq!(body["type"], "interactive");
        let data = &body["interactiveData"]["data"];
        assert_eq!(data["version"], "1.0");
        assert_eq!(data["requestIdentifier"], Uuid::from_u128(2).to_string());
        assert_eq!(
            data["quick-reply"]["summaryText"],
            "Wie zufrieden waren Sie?"
        );
        assert_eq!(
            data["quick-reply"]["items"][4],
            json!({"identifier": "5", "title": "⭐⭐⭐⭐⭐"})
        );

        let languages = OutboundMessage {
            choices: ["de", "en", "fr", "it", "es", "pl"]
                .iter()
                .map(|id| QuickReply {
                    id: (*id).to_owned(),
                    title: id.to_uppercase(),
                })
                .collect(),
            ..message()
        };
        let body: serde_json::Value =
            serde_json::from_slice(&adapter.build(&languages, Form::Text).unwrap().body).unwrap();
        assert_eq!(body["type"], "text");
        assert!(body["body"].as_str().unwrap().contains("PL"));
    }

    #[test]
    fn classifies_as_apple_documents_its_codes() {
        let adapter = AppleOutbound::with_clock(config(), at_noon).unwrap();
        let m = message();
        assert_eq!(
            adapter.classify(&m, &answer(200, "")),
            SendOutcome::Accepted {
                provider_message_id: Uuid::from_u128(2).to_string()
            }
        );
        for status in [500, 503] {
            assert!(matches!(
                adapter.classify(&m, &answer(status, "")),
                SendOutcome::Retry { .. }
            ));
        }
        for status in [400, 401, 403, 404] {
            assert!(matches!(
                adapter.classify(&m, &answer(status, "nope")),
                SendOutcome::Permanent { .. }
            ));
        }
    }

    #[test]
    fn a_secret_that_is_not_base64_is_refused() {
        let bad = AppleConfig {
            secret: Secret::new("not base64 !"),
            ..config()
        };
        assert!(AppleOutbound::new(bad).is_err());
        let no_msp = AppleConfig {
            msp_id: " ".to_owned(),
            ..config()
        };
        assert!(AppleOutbound::new(no_msp).is_err());
    }
}
