//! Sending on WhatsApp Cloud API (`CHANNELS.md` §1.5, §1.6).
//!
//! `POST {api_base_url}/{phone_number_id}/messages` with `Authorization: Bearer`. Free
//! text only within 24 hours of the customer's last message; outside it the configured
//! template (the rating template for the rating prompts), or nothing.
//!
//! Choices go out as an interactive message: up to 3 as reply buttons (titles of at most
//! 20 characters), up to 10 as a list (rows of at most 24); more, or ids WhatsApp would
//! refuse, as text with the options appended.

use std::time::{Duration, SystemTime};

use helpline_domain::{Channel, QuickReply, contact};
use http::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{WhatsAppConfig, WhatsAppTemplate};
use crate::choices::{fit, label, text_with_options};
use crate::error::ConfigError;
use crate::graph;
use crate::outbound::{Form, OutboundMessage, SendOutcome};
use crate::outbound::{
    OutboundAdapter, ProviderRequest, ProviderResponse, Unsendable, bearer, join, json_post,
    require_setting, require_url, to_json, unreadable_success,
};
use crate::secret::require_secrets;

/// How long after the customer's last message free text may be sent.
pub const CUSTOMER_SERVICE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Re-engagement: more than 24 hours since the customer wrote (131047; 470 on-premises).
const WINDOW_CLOSED_CODES: [i64; 2] = [131047, 470];
/// The bot's prompts that ask for a rating: outside the window they go out as the rating
/// template.
pub const RATING_PROMPTS: [&str; 2] = ["rating", "rating_reprompt"];

/// Reply buttons: at most 3, titles of at most 20 characters, ids of at most 256, a body
/// of at most 1024 characters.
const MAX_BUTTONS: usize = 3;
const MAX_BUTTON_TITLE_CHARS: usize = 20;
const MAX_BUTTON_ID_CHARS: usize = 256;
const MAX_BUTTON_BODY_CHARS: usize = 1024;
/// A list: at most 10 rows, titles of at most 24 characters, ids of at most 200; its body
/// takes as much as a text message.
const MAX_ROWS: usize = 10;
const MAX_ROW_TITLE_CHARS: usize = 24;
const MAX_ROW_ID_CHARS: usize = 200;

#[derive(Debug)]
pub struct WhatsAppOutbound {
    config: WhatsAppConfig,
    template: Option<WhatsAppTemplate>,
    rating_template: Option<WhatsAppTemplate>,
}

impl WhatsAppOutbound {
    pub fn new(
        config: WhatsAppConfig,
        template: Option<WhatsAppTemplate>,
        rating_template: Option<WhatsAppTemplate>,
    ) -> Result<Self, ConfigError> {
        let channel = Channel::WhatsApp;
        require_secrets(channel, &[("access_token", &config.access_token)])?;
        require_setting(channel, "phone_number_id", &config.phone_number_id)?;
        require_url(channel, "api_base_url", &config.api_base_url)?;
        if let Some(template) = &template {
            require_setting(channel, "template.name", &template.name)?;
            require_setting(channel, "template.language", &template.language)?;
        }
        if let Some(template) = &rating_template {
            require_setting(channel, "rating_template.name", &template.name)?;
            require_setting(channel, "rating_template.language", &template.language)?;
        }
        Ok(Self {
            config,
            template,
            rating_template,
        })
    }

    /// The template that stands in for `message` outside the window: a notification's
    /// own (never the re-engagement template: it would say something else), else the
    /// rating template for a rating prompt, if configured, else the general one.
    fn template_for(&self, message: &OutboundMessage) -> Option<Template> {
        if let Some(notification) = &message.notification {
            return notification
                .whatsapp_template
                .as_ref()
                .map(|call| Template {
                    name: call.name.clone(),
                    language: call.language.clone(),
                    parameters: serde_json::from_str(call.parameters.expose()).unwrap_or_default(),
                });
        }
        let rating = RATING_PROMPTS.contains(&message.prompt.as_str());
        rating
            .then_some(self.rating_template.as_ref())
            .flatten()
            .or(self.template.as_ref())
            .map(|template| Template {
                name: template.name.clone(),
                language: template.language.clone(),
                parameters: Vec::new(),
            })
    }
}

/// A template send: name, language code and the body's parameters in order.
struct Template {
    name: String,
    language: String,
    parameters: Vec<String>,
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
        } else if self.template_for(message).is_some() {
            Ok(Form::Template)
        } else {
            Err(window_closed_without_template(message))
        }
    }

    fn after_window_closed(&self, message: &OutboundMessage, form: Form) -> Option<Form> {
        match form {
            Form::Text if self.template_for(message).is_some() => Some(Form::Template),
            _ => None,
        }
    }

    fn build(&self, message: &OutboundMessage, form: Form) -> Result<ProviderRequest, Unsendable> {
        let mut body = match form {
            Form::Text => content(message),
            Form::Template => {
                let template = self
                    .template_for(message)
                    .ok_or_else(|| window_closed_without_template(message))?;
                let mut call = json!({
                    "name": template.name,
                    "language": {"policy": "deterministic", "code": template.language},
                });
                if !template.parameters.is_empty()
                    && let Some(call) = call.as_object_mut()
                {
                    let parameters: Vec<Value> = template
                        .parameters
                        .iter()
                        .map(|text| json!({"type": "text", "text": text}))
                        .collect();
                    call.insert(
                        "components".to_owned(),
                        json!([{"type": "body", "parameters": parameters}]),
                    );
                }
                json!({"type": "template", "template": call})
            }
        };
        if let Some(object) = body.as_object_mut() {
            object.insert("messaging_product".to_owned(), json!("whatsapp"));
            object.insert("recipient_type".to_owned(), json!("individual"));
            // A customer known only by their business-scoped user id is addressed by
            // it as `recipient`; `to` is for phone numbers (and wins when both are sent).
            let field = if contact::is_whatsapp_user_id(&message.contact) {
                "recipient"
            } else {
                "to"
            };
            object.insert(field.to_owned(), json!(message.contact));
        }
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

/// The free-form part of a send: `type` and its object. Reply buttons where the choices
/// fit them, else a list, else text with the options appended.
fn content(message: &OutboundMessage) -> Value {
    let choices = &message.choices;
    if choices.is_empty() {
        return plain_text(&message.text);
    }
    let text_chars = message.text.chars().count();
    let ids_fit = |max: usize| choices.iter().all(|c| c.id.chars().count() <= max);
    let titles_fit = |max: usize| choices.iter().all(|c| label(c).chars().count() <= max);
    if choices.len() <= MAX_BUTTONS
        && ids_fit(MAX_BUTTON_ID_CHARS)
        && titles_fit(MAX_BUTTON_TITLE_CHARS)
        && text_chars <= MAX_BUTTON_BODY_CHARS
        && valid_ids(choices)
    {
        let buttons: Vec<Value> = choices
            .iter()
            .map(|choice| json!({"type": "reply", "reply": {"id": choice.id, "title": label(choice)}}))
            .collect();
        return json!({
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": message.text},
                "action": {"buttons": buttons},
            },
        });
    }
    if choices.len() <= MAX_ROWS && ids_fit(MAX_ROW_ID_CHARS) && valid_ids(choices) {
        let rows: Vec<Value> = choices
            .iter()
            .map(
                |choice| json!({"id": choice.id, "title": fit(label(choice), MAX_ROW_TITLE_CHARS)}),
            )
            .collect();
        return json!({
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": {"text": message.text},
                "action": {
                    "button": list_button_label(&message.language),
                    "sections": [{"rows": rows}],
                },
            },
        });
    }
    plain_text(&text_with_options(&message.text, choices))
}

/// WhatsApp refuses empty and repeated ids (the answer names the one tapped).
fn valid_ids(choices: &[QuickReply]) -> bool {
    choices.iter().enumerate().all(|(n, choice)| {
        !choice.id.is_empty() && !choices[..n].iter().any(|other| other.id == choice.id)
    })
}

fn plain_text(text: &str) -> Value {
    json!({"type": "text", "text": {"preview_url": false, "body": text}})
}

/// The label of the button that opens a list (at most 20 characters), in the ticket's
/// language where known, else English.
fn list_button_label(language: &str) -> &'static str {
    let primary = language.split(['-', '_']).next().unwrap_or("");
    match primary.to_ascii_lowercase().as_str() {
        "de" => "Auswählen",
        "fr" => "Choisir",
        "es" => "Elegir",
        "it" => "Scegli",
        "nl" => "Kiezen",
        _ => "Choose",
    }
}

fn window_closed_without_template(message: &OutboundMessage) -> Unsendable {
    Unsendable(if message.notification.is_some() {
        "the customer's 24-hour WhatsApp window is closed and the notification has no approved template"
            .to_owned()
    } else {
        "the customer's 24-hour WhatsApp window is closed and no template is configured".to_owned()
    })
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

    use http::HeaderValue;
    use uuid::Uuid;

    use super::*;
    use crate::outbound::Reason;
    use crate::secret::Secret;
    use crate::test_support::{answer, outbound};

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
        WhatsAppOutbound::new(config(), template, None).unwrap()
    }

    fn message(last: Option<SystemTime>) -> OutboundMessage {
        OutboundMessage {
            prompt: "test".to_owned(),
            customer_last_message_at: last,
            ..outbound(
                Channel::WhatsApp,
                "16505551234",
                "Danke, Seriennummer 2NS7N19B12345678 ist notiert.",
            )
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
            adapter(Some(template())).after_window_closed(&message(None), Form::Text),
            Some(Form::Template)
        );
        assert_eq!(
            adapter(Some(template())).after_window_closed(&message(None), Form::Template),
            None
        );
        assert_eq!(
            adapter(None).after_window_closed(&message(None), Form::Text),
            None
        );
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

    fn notification(last: Option<SystemTime>, with_template: bool) -> OutboundMessage {
        OutboundMessage {
            notification: Some(crate::NotificationMeans {
                whatsapp_template: with_template.then(|| helpline_domain::WhatsAppTemplateCall {
                    name: "repair_ready".to_owned(),
                    language: "en_US".to_owned(),
                    parameters: r#"["MateBook X Pro","Berlin Mitte"]"#.to_owned().into(),
                }),
                message_tag: None,
            }),
            ..message(last)
        }
    }

    #[test]
    fn a_notification_outside_the_window_goes_out_as_its_own_template_with_parameters() {
        let now = SystemTime::now();
        let adapter = adapter(Some(template()));
        let recent = Some(now - Duration::from_secs(3600));
        assert_eq!(
            adapter.first_form(&notification(recent, true), now),
            Ok(Form::Text)
        );
        let outside = notification(Some(now - Duration::from_secs(25 * 3600)), true);
        assert_eq!(adapter.first_form(&outside, now), Ok(Form::Template));
        let body = body(&adapter.build(&outside, Form::Template).unwrap());
        assert_eq!(body["template"]["name"], "repair_ready");
        assert_eq!(body["template"]["language"]["code"], "en_US");
        assert_eq!(
            body["template"]["components"],
            json!([{"type": "body", "parameters": [
                {"type": "text", "text": "MateBook X Pro"},
                {"type": "text", "text": "Berlin Mitte"},
            ]}])
        );
        // Never the re-engagement template in its place: it would say something else.
        let without = notification(None, false);
        assert!(adapter.first_form(&without, now).is_err());
        assert_eq!(adapter.after_window_closed(&without, Form::Text), None);
        assert_eq!(
            adapter.after_window_closed(&notification(recent, true), Form::Text),
            Some(Form::Template)
        );
    }

    fn stars(n: usize) -> Vec<QuickReply> {
        (1..=n)
            .map(|score| QuickReply {
                id: score.to_string(),
                title: "⭐".repeat(score),
            })
            .collect()
    }

    fn with_choices(choices: Vec<QuickReply>) -> OutboundMessage {
        OutboundMessage {
            text: "Wie zufrieden waren Sie?".to_owned(),
            prompt: "rating".to_owned(),
            choices,
            ..message(Some(now()))
        }
    }

    #[test]
    fn up_to_three_choices_are_reply_buttons() {
        let request = adapter(None)
            .build(&with_choices(stars(3)), Form::Text)
            .unwrap();
        assert_eq!(
            body(&request),
            serde_json::json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "16505551234",
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": "Wie zufrieden waren Sie?"},
                    "action": {"buttons": [
                        {"type": "reply", "reply": {"id": "1", "title": "⭐"}},
                        {"type": "reply", "reply": {"id": "2", "title": "⭐⭐"}},
                        {"type": "reply", "reply": {"id": "3", "title": "⭐⭐⭐"}},
                    ]},
                },
            })
        );
    }

    #[test]
    fn more_than_three_choices_are_a_list() {
        let request = adapter(None)
            .build(&with_choices(stars(5)), Form::Text)
            .unwrap();
        let rows: Vec<Value> = (1..=5)
            .map(|n| serde_json::json!({"id": n.to_string(), "title": "⭐".repeat(n)}))
            .collect();
        assert_eq!(
            body(&request),
            serde_json::json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "16505551234",
                "type": "interactive",
                "interactive": {
                    "type": "list",
                    "body": {"text": "Wie zufrieden waren Sie?"},
                    "action": {"button": "Auswählen", "sections": [{"rows": rows}]},
                },
            })
        );
        let english = OutboundMessage {
            language: "en-GB".to_owned(),
            ..with_choices(stars(5))
        };
        let request = adapter(None).build(&english, Form::Text).unwrap();
        assert_eq!(body(&request)["interactive"]["action"]["button"], "Choose");
    }

    #[test]
    fn long_titles_make_a_list_with_cut_rows() {
        let long = |id: &str| QuickReply {
            id: id.to_owned(),
            title: "Ein sehr langer Titel für einen Knopf".to_owned(),
        };
        let request = adapter(None)
            .build(&with_choices(vec![long("a"), long("b")]), Form::Text)
            .unwrap();
        let body = body(&request);
        assert_eq!(body["interactive"]["type"], "list");
        let title = body["interactive"]["action"]["sections"][0]["rows"][0]["title"]
            .as_str()
            .unwrap_or_else(|| panic!("no row title in {body}"));
        assert_eq!(title.chars().count(), 24);
        assert!(title.ends_with('…'), "{title}");
    }

    #[test]
    fn choices_beyond_a_list_or_with_repeated_ids_are_appended_as_text() {
        let request = adapter(None)
            .build(&with_choices(stars(11)), Form::Text)
            .unwrap();
        let body = body(&request);
        assert_eq!(body["type"], "text");
        let text = body["text"]["body"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("Wie zufrieden waren Sie?\n\n1 – ⭐\n"),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("11 – {}", "⭐".repeat(11))),
            "{text}"
        );

        let mut repeated = stars(2);
        repeated[1].id = "1".to_owned();
        let request = adapter(None)
            .build(&with_choices(repeated), Form::Text)
            .unwrap();
        assert_eq!(body_type(&request), "text");
    }

    fn body_type(request: &ProviderRequest) -> String {
        body(request)["type"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn a_rating_prompt_outside_the_window_sends_the_rating_template() {
        let rating_template = WhatsAppTemplate {
            name: "rate_us".to_owned(),
            language: "de".to_owned(),
        };
        let both = WhatsAppOutbound::new(config(), Some(template()), Some(rating_template.clone()))
            .unwrap();
        let only_rating = WhatsAppOutbound::new(config(), None, Some(rating_template)).unwrap();
        let outside = |prompt: &str| OutboundMessage {
            prompt: prompt.to_owned(),
            customer_last_message_at: None,
            notification: None,
            ..with_choices(stars(5))
        };
        for prompt in RATING_PROMPTS {
            let message = outside(prompt);
            for a in [&both, &only_rating] {
                assert_eq!(a.first_form(&message, now()), Ok(Form::Template));
                let request = a.build(&message, Form::Template).unwrap();
                let body = body(&request);
                assert_eq!(body["type"], "template");
                assert_eq!(body["template"]["name"], "rate_us", "{prompt}");
                assert!(body.get("interactive").is_none());
            }
        }
        let other = outside("ask_serial");
        let request = both.build(&other, Form::Template).unwrap();
        assert_eq!(body(&request)["template"]["name"], "ticket_update");
        // Without a general template, only the rating prompts can leave the window.
        assert!(only_rating.first_form(&other, now()).is_err());
        assert_eq!(only_rating.after_window_closed(&other, Form::Text), None);
        assert_eq!(
            only_rating.after_window_closed(&outside("rating"), Form::Text),
            Some(Form::Template)
        );
        // The general template stands in for a rating when there is no rating template.
        let request = adapter(Some(template()))
            .build(&outside("rating"), Form::Template)
            .unwrap();
        assert_eq!(body(&request)["template"]["name"], "ticket_update");
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
                assert_eq!(reason.summary(), "whatsapp answered 400, error 131026");
                let said = reason.said().unwrap();
                assert!(said.contains("(#131026) Something"), "{said}");
                assert!(said.contains("more words"), "{said}");
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
                reason: Reason::ours("whatsapp answered 429: no body")
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
        assert!(WhatsAppOutbound::new(WhatsAppConfig::default(), None, None).is_err());
        let no_number = WhatsAppConfig {
            phone_number_id: String::new(),
            ..config()
        };
        assert!(WhatsAppOutbound::new(no_number, None, None).is_err());
        let bad_url = WhatsAppConfig {
            api_base_url: "graph.facebook.com".to_owned(),
            ..config()
        };
        assert!(WhatsAppOutbound::new(bad_url, None, None).is_err());
    }
}
