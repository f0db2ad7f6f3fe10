//! Sending on WhatsApp Cloud API (`CHANNELS.md` §1.5, §1.6).
//!
//! `POST {api_base_url}/{phone_number_id}/messages` with `Authorization: Bearer`. Free
//! text only within 24 hours of the customer's last message; outside it the configured
//! template, or nothing.

use std::time::{Duration, SystemTime};

use helpline_domain::Channel;
use http::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::json;

use super::adapter::{
    OutboundAdapter, ProviderRequest, ProviderResponse, Unsendable, bearer, join, json_post,
    require_setting, require_url, to_json, unreadable_success,
};
use super::config::WhatsAppTemplate;
use super::error::EgressError;
use super::graph;
use super::{Form, OutboundMessage, SendOutcome};
use crate::channels::whatsapp::WhatsAppConfig;
use crate::secret::require_secrets;

/// How long after the customer's last message free text may be sent.
pub const CUSTOMER_SERVICE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Re-engagement: more than 24 hours since the customer wrote (131047; 470 on-premises).
const WINDOW_CLOSED_CODES: [i64; 2] = [131047, 470];

#[derive(Debug)]
pub struct WhatsAppOutbound {
    config: WhatsAppConfig,
    template: Option<WhatsAppTemplate>,
}

impl WhatsAppOutbound {
    pub fn new(
        config: WhatsAppConfig,
        template: Option<WhatsAppTemplate>,
    ) -> Result<Self, EgressError> {
        let channel = Channel::WhatsApp;
        require_secrets(channel, &[("access_token", &config.access_token)])?;
        require_setting(channel, "phone_number_id", &config.phone_number_id)?;
        require_url(channel, "api_base_url", &config.api_base_url)?;
        if let Some(template) = &template {
            require_setting(channel, "template.name", &template.name)?;
            require_setting(channel, "template.language", &template.language)?;
        }
        Ok(Self { config, template })
    }
}

impl OutboundAdapter for WhatsAppOutbound {
    fn channel(&self) -> Channel {
        Channel::WhatsApp
    }

    fn first_form(&self, message: &OutboundMessage, now: SystemTime) -> Result<Form, Unsendable> {
        let inside = message.customer_last_message_at.is_some_and(|last| {
            // A last message "in the future" (clock skew) is as recent as it gets.
            now.duration_since(last)
                .map_or(true, |age| age < CUSTOMER_SERVICE_WINDOW)
        });
        if inside {
            Ok(Form::Text)
        } else if self.template.is_some() {
            Ok(Form::Template)
        } else {
            Err(window_closed_without_template())
        }
    }

    fn after_window_closed(&self, form: Form) -> Option<Form> {
        match form {
            Form::Text if self.template.is_some() => Some(Form::Template),
            _ => None,
        }
    }

    fn build(&self, message: &OutboundMessage, form: Form) -> Result<ProviderRequest, Unsendable> {
        let body = match form {
            Form::Text => json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": message.contact,
                "type": "text",
                "text": {"preview_url": false, "body": message.text},
            }),
            Form::Template => {
                let template = self
                    .template
                    .as_ref()
                    .ok_or_else(window_closed_without_template)?;
                json!({
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": message.contact,
                    "type": "template",
                    "template": {
                        "name": template.name,
                        "language": {"policy": "deterministic", "code": template.language},
                    },
                })
            }
        };
        let url = join(
            &self.config.api_base_url,
            &format!("{}/messages", self.config.phone_number_id),
        );
        let authorization = bearer(self.config.access_token.expose());
        json_post(
            url,
            message,
            to_json(&body)?,
            &[(AUTHORIZATION, &authorization, true)],
        )
    }

    fn classify(&self, _message: &OutboundMessage, response: &ProviderResponse) -> SendOutcome {
        if response.is_success() {
            return match serde_json::from_slice::<Sent>(&response.body) {
                Ok(Sent { messages }) => match messages.into_iter().next() {
                    Some(SentMessage { id }) if !id.is_empty() => SendOutcome::Accepted {
                        provider_message_id: id,
                    },
                    _ => unreadable_success(self.channel(), response),
                },
                Err(_) => unreadable_success(self.channel(), response),
            };
        }
        graph::classify_failure(self.channel(), response, |error| {
            error
                .code
                .is_some_and(|code| WINDOW_CLOSED_CODES.contains(&code))
        })
    }
}

fn window_closed_without_template() -> Unsendable {
    Unsendable(
        "the customer's 24-hour WhatsApp window is closed and no template is configured".to_owned(),
    )
}

/// `{"messages":[{"id":"wamid..."}]}`
#[derive(Deserialize)]
struct Sent {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    #[serde(default)]
    id: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use helpline_domain::{MessageId, TicketId};
    use http::HeaderValue;
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use crate::egress::test_support::answer;
    use crate::secret::Secret;

    fn config() -> WhatsAppConfig {
        WhatsAppConfig {
            access_token: Secret::new("wa-token"),
            phone_number_id: "106540352242922".to_owned(),
            api_base_url: "http://127.0.0.1:9/v21.0/".to_owned(),
            ..WhatsAppConfig::default()
        }
    }

    fn template() -> WhatsAppTemplate {
        WhatsAppTemplate {
            name: "ticket_update".to_owned(),
            language: "de".to_owned(),
        }
    }

    fn adapter(template: Option<WhatsAppTemplate>) -> WhatsAppOutbound {
        WhatsAppOutbound::new(config(), template).unwrap()
    }

    fn message(last: Option<SystemTime>) -> OutboundMessage {
        OutboundMessage {
            ticket: TicketId(Uuid::from_u128(1)),
            message: MessageId(Uuid::from_u128(2)),
            channel: Channel::WhatsApp,
            contact: "16505551234".to_owned(),
            text: "Danke, Seriennummer 2NS7N19B12345678 ist notiert.".to_owned(),
            customer_last_message_at: last,
        }
    }

    fn body(request: &ProviderRequest) -> Value {
        serde_json::from_slice(&request.body).unwrap()
    }

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn now() -> SystemTime {
        NOW + Duration::from_secs(2_000_000_000)
    }

    #[test]
    fn text_inside_the_window_template_outside_refusal_without_template() {
        let hours = |h: u64| Some(now() - Duration::from_secs(h * 3600));
        let with = adapter(Some(template()));
        let without = adapter(None);
        assert_eq!(with.first_form(&message(hours(23)), now()), Ok(Form::Text));
        assert_eq!(
            with.first_form(&message(hours(24)), now()),
            Ok(Form::Template)
        );
        assert_eq!(with.first_form(&message(None), now()), Ok(Form::Template));
        assert_eq!(
            with.first_form(&message(Some(now() + Duration::from_secs(60))), now()),
            Ok(Form::Text)
        );
        assert_eq!(
            without.first_form(&message(hours(1)), now()),
            Ok(Form::Text)
        );
        let refused = without.first_form(&message(hours(25)), now()).unwrap_err();
        assert!(refused.0.contains("24-hour"), "{refused}");
        assert!(without.first_form(&message(None), now()).is_err());
    }

    #[test]
    fn a_closed_window_switches_to_the_template_once() {
        assert_eq!(
            adapter(Some(template())).after_window_closed(Form::Text),
            Some(Form::Template)
        );
        assert_eq!(
            adapter(Some(template())).after_window_closed(Form::Template),
            None
        );
        assert_eq!(adapter(None).after_window_closed(Form::Text), None);
    }

    #[test]
    fn text_request_follows_the_cloud_api() {
        let request = adapter(None).build(&message(None), Form::Text).unwrap();
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(
            request.url,
            "http://127.0.0.1:9/v21.0/106540352242922/messages"
        );
        assert_eq!(request.headers["authorization"], "Bearer wa-token");
        assert!(request.headers["authorization"].is_sensitive());
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(
            request.headers["x-idempotency-key"],
            Uuid::from_u128(2).to_string().as_str()
        );
        assert_eq!(
            body(&request),
            serde_json::json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "16505551234",
                "type": "text",
                "text": {"preview_url": false, "body": "Danke, Seriennummer 2NS7N19B12345678 ist notiert."},
            })
        );
    }

    #[test]
    fn template_request_names_template_and_language() {
        let request = adapter(Some(template()))
            .build(&message(None), Form::Template)
            .unwrap();
        let body = body(&request);
        assert_eq!(body["type"], "template");
        assert_eq!(body["template"]["name"], "ticket_update");
        assert_eq!(body["template"]["language"]["code"], "de");
        assert!(
            body.get("text").is_none(),
            "no free text in a template send"
        );
        assert!(adapter(None).build(&message(None), Form::Template).is_err());
    }

    #[test]
    fn classifies_as_channels_md_says() {
        let a = adapter(None);
        let m = message(None);
        let graph = |code: i64, status: u16| {
            answer(
                status,
                &format!(
                    r#"{{"error":{{"message":"(#{code}) Something","type":"OAuthException","code":{code},
                        "error_data":{{"messaging_product":"whatsapp","details":"more words"}},"fbtrace_id":"A"}}}}"#
                ),
            )
        };
        assert_eq!(
            a.classify(
                &m,
                &answer(
                    200,
                    r#"{"messaging_product":"whatsapp","contacts":[{"input":"1","wa_id":"1"}],"messages":[{"id":"wamid.HBgL"}]}"#
                )
            ),
            SendOutcome::Accepted {
                provider_message_id: "wamid.HBgL".to_owned()
            }
        );
        for code in [130429, 131056, 80007, 4, 613, 2] {
            assert!(
                matches!(
                    a.classify(&m, &graph(code, 400)),
                    SendOutcome::Retry { after: None, .. }
                ),
                "{code}"
            );
        }
        for code in [131047, 470] {
            assert!(
                matches!(
                    a.classify(&m, &graph(code, 400)),
                    SendOutcome::WindowClosed { .. }
                ),
                "{code}"
            );
        }
        match a.classify(&m, &graph(131026, 400)) {
            SendOutcome::Permanent { reason } => {
                assert!(reason.contains("131026") && reason.contains("(#131026) Something"));
                assert!(reason.contains("more words"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            a.classify(&m, &graph(131000, 500)),
            SendOutcome::Retry { .. }
        ));
        let mut limited = answer(429, "");
        limited
            .headers
            .insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            a.classify(&m, &limited),
            SendOutcome::Retry {
                after: Some(Duration::from_secs(7)),
                reason: "whatsapp answered 429: no body".to_owned()
            }
        );
        assert!(matches!(
            a.classify(&m, &answer(502, "<html>bad gateway</html>")),
            SendOutcome::Retry { .. }
        ));
        assert!(matches!(
            a.classify(&m, &answer(401, "nope")),
            SendOutcome::Permanent { .. }
        ));
        assert!(matches!(
            a.classify(&m, &answer(200, "not json")),
            SendOutcome::Permanent { .. }
        ));
    }

    #[test]
    fn refuses_incomplete_configuration() {
        assert!(WhatsAppOutbound::new(WhatsAppConfig::default(), None).is_err());
        let no_number = WhatsAppConfig {
            phone_number_id: String::new(),
            ..config()
        };
        assert!(WhatsAppOutbound::new(no_number, None).is_err());
        let bad_url = WhatsAppConfig {
            api_base_url: "graph.facebook.com".to_owned(),
            ..config()
        };
        assert!(WhatsAppOutbound::new(bad_url, None).is_err());
    }
}
