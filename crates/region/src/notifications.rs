//! `[notifications]`: the templates the brand's systems send notifications from.
//!
//! ```toml
//! [notifications.templates.repair_ready]
//! kind = "transactional"
//! text.de = "Ihr {product} ist repariert und liegt in {store} zur Abholung bereit."
//! text.en = "Your {product} is repaired and ready for pickup at {store}."
//! # Outside WhatsApp's 24-hour window: the template Meta approved, its body parameters
//! # in order, and its language code per language where it differs.
//! whatsapp = { name = "repair_ready", parameters = ["product", "store"], languages = { en = "en_US" } }
//! # Outside Messenger's 24-hour window: the message tag it goes out with.
//! messenger_tag = "POST_PURCHASE_UPDATE"
//! ```

use std::collections::{BTreeMap, BTreeSet};

use helpline_domain::{Channel, NotificationKind};
use serde::{Deserialize, Serialize};

use crate::ConfigProblem;

/// Messenger's message tags that may carry an update outside the 24-hour window (no
/// promotional content in any of them). `HUMAN_AGENT` is an agent's reply, never a
/// notification.
pub const MESSENGER_TAGS: [&str; 3] = [
    "CONFIRMED_EVENT_UPDATE",
    "POST_PURCHASE_UPDATE",
    "ACCOUNT_UPDATE",
];

/// `[notifications]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// The channels notifications may go out on, by name (`whatsapp`, `messenger`,
    /// `telegram`, `viber`, `apple`, `web`); a notification to a customer on another is
    /// refused. Empty: the channels whose `[channels.*]` section the process has. The
    /// notify service, which holds no channel's secrets, needs the list.
    pub channels: Vec<String>,
    /// By name, as the Notifications API and `helpline notify` name them.
    pub templates: BTreeMap<String, NotificationTemplate>,
}

/// `[notifications.templates.<name>]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationTemplate {
    #[serde(default)]
    pub kind: TemplateKind,
    /// The text per language (BCP 47 tag as in `locale.languages`), with `{parameter}`
    /// placeholders. The region's default language is required.
    pub text: BTreeMap<String, String>,
    /// The approved WhatsApp template it goes out as outside the 24-hour window; without
    /// one a notification to a WhatsApp customer outside the window is refused.
    #[serde(default)]
    pub whatsapp: Option<WhatsAppTemplateConfig>,
    /// The Messenger message tag outside the 24-hour window (one of [`MESSENGER_TAGS`]);
    /// without one such a notification is refused.
    #[serde(default)]
    pub messenger_tag: Option<String>,
}

/// The `kind` of a template, as written in the region file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateKind {
    #[default]
    Transactional,
    Marketing,
}

impl From<TemplateKind> for NotificationKind {
    fn from(kind: TemplateKind) -> Self {
        match kind {
            TemplateKind::Transactional => NotificationKind::Transactional,
            TemplateKind::Marketing => NotificationKind::Marketing,
        }
    }
}

/// `whatsapp = { … }` of a template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppTemplateConfig {
    /// As Meta approved it.
    pub name: String,
    /// The request's parameters that fill the template's body `{{1}}`, `{{2}}`, … in order.
    #[serde(default)]
    pub parameters: Vec<String>,
    /// The template's language code per language where it is not the language tag
    /// itself (`en` → `en_US`).
    #[serde(default)]
    pub languages: BTreeMap<String, String>,
}

impl WhatsAppTemplateConfig {
    /// The template's language code for a customer served in `language`.
    pub fn language_code(&self, language: &str) -> String {
        self.languages
            .get(language)
            .cloned()
            .unwrap_or_else(|| language.to_owned())
    }
}

/// Why a notification cannot be written from a template: the caller's mistake.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("no notification template {0:?} in the region (notifications.templates)")]
    Unknown(String),
    #[error("template {template:?} needs the parameter {parameter:?}")]
    MissingParameter { template: String, parameter: String },
}

impl NotificationTemplate {
    /// The text in `language`, or else in `default_language`, with every `{name}` of
    /// `parameters` filled in. A placeholder without a parameter is refused, so no
    /// customer ever reads `{store}`.
    pub fn render(
        &self,
        name: &str,
        language: &str,
        default_language: &str,
        parameters: &BTreeMap<String, String>,
    ) -> Result<String, TemplateError> {
        let text = self
            .text
            .get(language)
            .or_else(|| self.text.get(default_language))
            .or_else(|| self.text.values().next())
            .cloned()
            .unwrap_or_default();
        for placeholder in placeholders(&text) {
            if !parameters.contains_key(&placeholder) {
                return Err(TemplateError::MissingParameter {
                    template: name.to_owned(),
                    parameter: placeholder,
                });
            }
        }
        Ok(parameters.iter().fold(text, |text, (key, value)| {
            text.replace(&format!("{{{key}}}"), value)
        }))
    }

    /// The WhatsApp template's body parameters, in order, from the request's.
    pub fn whatsapp_parameters(
        &self,
        name: &str,
        parameters: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, TemplateError> {
        let Some(whatsapp) = &self.whatsapp else {
            return Ok(Vec::new());
        };
        whatsapp
            .parameters
            .iter()
            .map(|parameter| {
                parameters
                    .get(parameter)
                    .cloned()
                    .ok_or_else(|| TemplateError::MissingParameter {
                        template: name.to_owned(),
                        parameter: parameter.clone(),
                    })
            })
            .collect()
    }
}

/// The `{name}` placeholders of a text, each once.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let name = &after[..close];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            found.insert(name.to_owned());
        }
        rest = &after[close + 1..];
    }
    found
}

impl NotificationsConfig {
    /// The channels of [`NotificationsConfig::channels`]; `None` when the list is empty.
    pub fn channels(&self) -> Option<Vec<Channel>> {
        (!self.channels.is_empty()).then(|| {
            Channel::ALL
                .into_iter()
                .filter(|channel| self.channels.iter().any(|name| name == channel.as_str()))
                .collect()
        })
    }

    pub(crate) fn validate(&self, default_language: &str, problems: &mut Vec<ConfigProblem>) {
        for (n, name) in self.channels.iter().enumerate() {
            if !Channel::ALL.iter().any(|channel| channel.as_str() == name) {
                let names: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
                problems.push(ConfigProblem {
                    key: format!("notifications.channels[{n}]"),
                    message: format!("{name:?} is not a channel; one of {}", names.join(", ")),
                });
            }
        }
        for (name, template) in &self.templates {
            let key = |field: &str| format!("notifications.templates.{name}.{field}");
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                || name.is_empty()
            {
                problems.push(ConfigProblem {
                    key: format!("notifications.templates.{name}"),
                    message: "a template's name is lower-case letters, digits and _".into(),
                });
            }
            if !template.text.contains_key(default_language) {
                problems.push(ConfigProblem {
                    key: key("text"),
                    message: format!("needs a text in the default language {default_language:?}"),
                });
            }
            for (language, text) in &template.text {
                if text.trim().is_empty() {
                    problems.push(ConfigProblem {
                        key: key(&format!("text.{language}")),
                        message: "is empty".into(),
                    });
                }
            }
            if let Some(whatsapp) = &template.whatsapp
                && whatsapp.name.trim().is_empty()
            {
                problems.push(ConfigProblem {
                    key: key("whatsapp.name"),
                    message: "the approved template's name is missing".into(),
                });
            }
            if let Some(tag) = &template.messenger_tag {
                if !MESSENGER_TAGS.contains(&tag.as_str()) {
                    problems.push(ConfigProblem {
                        key: key("messenger_tag"),
                        message: format!(
                            "{tag:?} is not a tag for updates; one of {}",
                            MESSENGER_TAGS.join(", ")
                        ),
                    });
                }
                if template.kind == TemplateKind::Marketing {
                    problems.push(ConfigProblem {
                        key: key("messenger_tag"),
                        message: "Messenger's tags allow no marketing".into(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repair_ready() -> NotificationTemplate {
        NotificationTemplate {
            kind: TemplateKind::Transactional,
            text: [
                (
                    "de".to_owned(),
                    "Ihr {product} ist abholbereit in {store}.".to_owned(),
                ),
                (
                    "en".to_owned(),
                    "Your {product} is ready at {store}.".to_owned(),
                ),
            ]
            .into(),
            whatsapp: Some(WhatsAppTemplateConfig {
                name: "repair_ready".into(),
                parameters: vec!["product".into(), "store".into()],
                languages: [("en".to_owned(), "en_US".to_owned())].into(),
            }),
            messenger_tag: Some("POST_PURCHASE_UPDATE".into()),
        }
    }

    fn parameters() -> BTreeMap<String, String> {
        [
            ("product".to_owned(), "MateBook X Pro".to_owned()),
            ("store".to_owned(), "Berlin Mitte".to_owned()),
        ]
        .into()
    }

    #[test]
    fn a_template_renders_in_the_customers_language_else_the_default() {
        let template = repair_ready();
        assert_eq!(
            template.render("repair_ready", "en", "de", &parameters()),
            Ok("Your MateBook X Pro is ready at Berlin Mitte.".to_owned())
        );
        assert_eq!(
            template.render("repair_ready", "fr", "de", &parameters()),
            Ok("Ihr MateBook X Pro ist abholbereit in Berlin Mitte.".to_owned())
        );
    }

    #[test]
    fn a_placeholder_without_its_parameter_is_refused() {
        let mut partial = parameters();
        partial.remove("store");
        assert_eq!(
            repair_ready().render("repair_ready", "de", "de", &partial),
            Err(TemplateError::MissingParameter {
                template: "repair_ready".into(),
                parameter: "store".into()
            })
        );
        assert!(
            repair_ready()
                .whatsapp_parameters("repair_ready", &partial)
                .is_err()
        );
    }

    #[test]
    fn whatsapp_parameters_follow_the_templates_order_and_language_codes() {
        let template = repair_ready();
        assert_eq!(
            template.whatsapp_parameters("repair_ready", &parameters()),
            Ok(vec!["MateBook X Pro".to_owned(), "Berlin Mitte".to_owned()])
        );
        let whatsapp = template.whatsapp.unwrap_or_default();
        assert_eq!(whatsapp.language_code("en"), "en_US");
        assert_eq!(whatsapp.language_code("de"), "de");
    }

    #[test]
    fn validation_names_the_key_of_each_problem() {
        let mut bad = repair_ready();
        bad.text.remove("de");
        bad.messenger_tag = Some("HUMAN_AGENT".into());
        let config = NotificationsConfig {
            channels: vec!["whatsapp".into(), "fax".into()],
            templates: [("Repair Ready".to_owned(), bad)].into(),
        };
        let mut problems = Vec::new();
        config.validate("de", &mut problems);
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "notifications.channels[1]",
                "notifications.templates.Repair Ready",
                "notifications.templates.Repair Ready.text",
                "notifications.templates.Repair Ready.messenger_tag",
            ]
        );
    }
}
