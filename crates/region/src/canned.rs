//! `[[canned_replies]]`: the answers agents give again and again, per language, with
//! placeholders the ticket fills in, found by their shortcut.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ConfigProblem;

/// The placeholders a canned reply may use, each filled from the ticket and its agent.
pub const PLACEHOLDERS: [&str; 4] = [
    "customer_name",
    "ticket_number",
    "store_address",
    "agent_name",
];

/// One canned reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CannedReply {
    /// What agents type to find it: lowercase letters, digits, `-` and `_` (`kva`).
    pub shortcut: String,
    /// What the list shows: `Kostenvoranschlag`.
    #[serde(default)]
    pub title: String,
    /// Its text per language (`text.de`, `text.en`), with `{customer_name}`,
    /// `{ticket_number}`, `{store_address}` and `{agent_name}`.
    pub text: BTreeMap<String, String>,
}

/// What a canned reply's placeholders are filled with; an unknown value is left blank
/// (a customer without a name on the channel).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CannedValues {
    pub customer_name: String,
    pub ticket_number: String,
    pub store_address: String,
    pub agent_name: String,
}

impl CannedReply {
    /// Its text in `language`, else in `fallback` (the region's default language), with
    /// the placeholders filled in; `None` when it has neither.
    pub fn render(&self, language: &str, fallback: &str, values: &CannedValues) -> Option<String> {
        let template = self
            .text
            .get(language)
            .or_else(|| self.text.get(fallback))?;
        let filled = [
            ("customer_name", &values.customer_name),
            ("ticket_number", &values.ticket_number),
            ("store_address", &values.store_address),
            ("agent_name", &values.agent_name),
        ]
        .iter()
        .fold(template.clone(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        });
        // "Hallo {customer_name}," for a customer without a name reads "Hallo ,".
        Some(filled.replace(" ,", ","))
    }

    /// Whether it matches what an agent typed: its shortcut begins with it, or its title
    /// or one of its texts contains it, in any case. Everything matches nothing typed.
    pub fn matches(&self, query: &str) -> bool {
        let query = query.trim().to_lowercase();
        query.is_empty()
            || self.shortcut.starts_with(&query)
            || self.title.to_lowercase().contains(&query)
            || self
                .text
                .values()
                .any(|text| text.to_lowercase().contains(&query))
    }
}

/// Every problem of the region's canned replies, each with its key.
pub(crate) fn validate(replies: &[CannedReply], problems: &mut Vec<ConfigProblem>) {
    let mut seen = std::collections::BTreeSet::new();
    for (i, reply) in replies.iter().enumerate() {
        let key = |field: &str| format!("canned_replies[{i}].{field}");
        let readable = !reply.shortcut.is_empty()
            && reply
                .shortcut
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !readable {
            problems.push(ConfigProblem {
                key: key("shortcut"),
                message: format!(
                    "{:?}: lowercase letters, digits, - and _ only, e.g. \"kva\"",
                    reply.shortcut
                ),
            });
        } else if !seen.insert(reply.shortcut.as_str()) {
            problems.push(ConfigProblem {
                key: key("shortcut"),
                message: format!("{:?} is listed twice", reply.shortcut),
            });
        }
        if reply.text.is_empty() {
            problems.push(ConfigProblem {
                key: key("text"),
                message: "a text in at least one language, e.g. text.de".to_owned(),
            });
        }
        // A text in a language the region does not serve (yet) is never sent: no problem.
        for (language, text) in &reply.text {
            let mut rest = text.as_str();
            while let Some(open) = rest.find('{') {
                let after = &rest[open + 1..];
                let name = after.split('}').next().unwrap_or_default();
                if !PLACEHOLDERS.contains(&name) {
                    problems.push(ConfigProblem {
                        key: key(&format!("text.{language}")),
                        message: format!(
                            "{{{name}}} is no placeholder; known: {}",
                            PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
                        ),
                    });
                    break;
                }
                rest = after;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(shortcut: &str, texts: &[(&str, &str)]) -> CannedReply {
        CannedReply {
            shortcut: shortcut.to_owned(),
            title: "Kostenvoranschlag".to_owned(),
            text: texts
                .iter()
                .map(|(l, t)| ((*l).to_owned(), (*t).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_reply_is_filled_in_in_the_tickets_language_else_the_regions_first() {
        let kva = reply(
            "kva",
            &[(
                "de",
                "Hallo {customer_name}, Anfrage {ticket_number}. {agent_name}",
            )],
        );
        let values = CannedValues {
            customer_name: "Jana".to_owned(),
            ticket_number: "0192f0c1".to_owned(),
            agent_name: "Anna".to_owned(),
            ..CannedValues::default()
        };
        assert_eq!(
            kva.render("fr", "de", &values).as_deref(),
            Some("Hallo Jana, Anfrage 0192f0c1. Anna")
        );
        let nameless = CannedValues::default();
        assert_eq!(
            kva.render("de", "de", &nameless).as_deref(),
            Some("Hallo, Anfrage . ")
        );
        assert_eq!(kva.render("fr", "it", &values), None);
        assert!(kva.matches("KV") && kva.matches("kosten") && kva.matches(""));
        assert!(!kva.matches("abholung"));
    }

    #[test]
    fn a_bad_or_repeated_shortcut_an_unknown_placeholder_or_no_text_is_named_with_its_key() {
        let mut problems = Vec::new();
        validate(
            &[
                reply("kva", &[("de", "Hallo {name}")]),
                reply("kva", &[("fr", "Bonjour")]),
                reply("Groß", &[("de", "x")]),
                reply("leer", &[]),
            ],
            &mut problems,
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "canned_replies[0].text.de",
                "canned_replies[1].shortcut",
                "canned_replies[2].shortcut",
                "canned_replies[3].text",
            ]
        );
        assert!(problems[0].message.contains("{name} is no placeholder"));
    }
}
