//! Flows as data: per language, the words the bot understands and everything it says.
//!
//! One TOML file per language. The built-in ones (`flows/<language>.toml` in this crate)
//! are compiled in; a region replaces or adds languages with `bot.flows_dir`, a folder of
//! `<language>.toml` files in the same format. Every file is checked when it is loaded:
//! every text is present, no text uses a placeholder the bot does not fill, every routing
//! category exists; each problem names the file and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use helpline_domain::QuickReply;
use helpline_region::{Locale, RegionConfig};
use serde::Deserialize;

pub mod words;

use crate::words::{Lists, consent_words, split_words};

/// The built-in flows, by language.
const BUILTIN: [(&str, &str); 14] = [
    ("de", include_str!("../flows/de.toml")),
    ("en", include_str!("../flows/en.toml")),
    ("cs", include_str!("../flows/cs.toml")),
    ("da", include_str!("../flows/da.toml")),
    ("el", include_str!("../flows/el.toml")),
    ("es", include_str!("../flows/es.toml")),
    ("fi", include_str!("../flows/fi.toml")),
    ("fr", include_str!("../flows/fr.toml")),
    ("hu", include_str!("../flows/hu.toml")),
    ("it", include_str!("../flows/it.toml")),
    ("nl", include_str!("../flows/nl.toml")),
    ("pl", include_str!("../flows/pl.toml")),
    ("pt", include_str!("../flows/pt.toml")),
    ("sv", include_str!("../flows/sv.toml")),
];

/// Every text a flow must have, with the placeholders the bot fills in for it.
const TEXTS: [(&str, &[&str]); 27] = [
    ("greeting", &["brand"]),
    ("ask_language", &[]),
    ("ask_product", &[]),
    ("ask_serial", &["product"]),
    ("serial_invalid", &["product"]),
    ("ask_problem", &["product"]),
    ("ask_location", &[]),
    ("handoff", &[]),
    ("handoff_asked", &[]),
    ("wait", &["minutes"]),
    ("queue_position", &["position", "minutes"]),
    ("out_of_hours", &["hours", "back"]),
    ("agents_back", &["weekday", "day", "month", "time"]),
    ("store_referral", &["name", "address", "opening_hours"]),
    ("rating_request", &["brand"]),
    ("rating_reprompt", &[]),
    ("rating_thanks", &[]),
    ("closed_unrated", &[]),
    ("abandoned", &[]),
    ("agent_summary", &["product", "serial", "problem"]),
    ("summary_location", &["location"]),
    ("summary_verified", &["serial"]),
    ("summary_unverified", &["serial"]),
    ("summary_unknown", &[]),
    ("notifications_stopped", &["brand"]),
    ("notifications_resumed", &["brand"]),
    // Apple's disclosure before the first notification; its wording is Apple's, so it
    // takes nothing the bot could fill in differently per region.
    ("apple_notice", &[]),
];

/// What a rating button shows when a flow does not say otherwise.
const STARS: [&str; 5] = ["⭐", "⭐⭐", "⭐⭐⭐", "⭐⭐⭐⭐", "⭐⭐⭐⭐⭐"];

/// The flows of every language a region serves.
#[derive(Clone, Debug, PartialEq)]
pub struct Flows {
    flows: BTreeMap<String, Flow>,
    /// The region's default language's flow: the answer for any language without one.
    default: Flow,
    /// Each language's word lists, that language's first, split into words once here
    /// rather than on every message.
    lists: BTreeMap<String, Lists>,
    default_lists: Lists,
    /// Every language's stop and start phrases, split into words → whether the phrase
    /// turns notifications on: made once here rather than on every message.
    consent_words: BTreeMap<Vec<String>, bool>,
}

/// One language's flow.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// The language tag, as the file is named: `de`.
    pub language: String,
    /// The language's own name, for the language choice: `Deutsch`.
    pub(crate) name: String,
    pub(crate) detect: Vec<String>,
    pub(crate) agent_words: Vec<String>,
    pub(crate) upset_words: Vec<String>,
    pub(crate) greeting_words: Vec<String>,
    pub(crate) filler_words: Vec<String>,
    pub(crate) serial_words: Vec<String>,
    /// Whole messages that stop the brand's notifications.
    pub(crate) stop_words: Vec<String>,
    /// Whole messages that turn them on again.
    pub(crate) start_words: Vec<String>,
    /// Category → phrases that mark it.
    pub(crate) categories: BTreeMap<String, Vec<String>>,
    /// `detect`, each phrase split into words.
    pub detect_words: Vec<Vec<String>>,
    /// `categories`, each phrase split into words.
    pub category_words: BTreeMap<String, Vec<Vec<String>>>,
    rating_words: BTreeMap<String, u8>,
    rating_titles: Vec<String>,
    /// Monday first.
    weekdays: Vec<String>,
    texts: BTreeMap<String, String>,
}

/// A flow that cannot be used; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("{file}: {problem}")]
    Invalid { file: String, problem: String },
    #[error("{file}: cannot be read: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("no flow for language {language:?}: {file} does not exist and none is built in")]
    Missing { language: String, file: String },
}

/// A flow file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowFile {
    #[serde(default)]
    name: String,
    #[serde(default)]
    detect: Vec<String>,
    #[serde(default)]
    agent_words: Vec<String>,
    #[serde(default)]
    upset_words: Vec<String>,
    #[serde(default)]
    greeting_words: Vec<String>,
    #[serde(default)]
    filler_words: Vec<String>,
    #[serde(default)]
    serial_words: Vec<String>,
    #[serde(default)]
    stop_words: Vec<String>,
    #[serde(default)]
    start_words: Vec<String>,
    #[serde(default)]
    categories: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rating_words: BTreeMap<String, u8>,
    /// The five rating buttons' titles, 1 to 5; stars when absent.
    #[serde(default)]
    rating_titles: Vec<String>,
    /// The days of the week, Monday first.
    #[serde(default)]
    weekdays: Vec<String>,
    #[serde(default)]
    texts: BTreeMap<String, String>,
}

impl Flows {
    /// The built-in flows, with the default locale's language as the fallback.
    pub fn builtin() -> Flows {
        let flows: BTreeMap<String, Flow> = BUILTIN
            .iter()
            .map(|(language, text)| {
                // The built-in files are compiled in and checked by this module's tests,
                // so a parse failure here cannot reach a release.
                let flow = Flow::parse(language, text, &builtin_file(language))
                    .unwrap_or_else(|e| panic!("built-in flow: {e}"));
                ((*language).to_owned(), flow)
            })
            .collect();
        let default_language = Locale::default().default_language().to_owned();
        Self::assemble(flows, &default_language)
            .unwrap_or_else(|| panic!("no built-in flow for {default_language}"))
    }

    /// The flows of `region`'s languages: each from `bot.flows_dir` when the folder has
    /// `<language>.toml`, else built in. Every routing rule's category must exist in
    /// every flow, since the bot classifies problems by the flow's categories.
    ///
    /// Reads files: call it once at start, before serving.
    pub fn for_region(region: &RegionConfig) -> Result<Flows, FlowError> {
        let mut languages = region.locale.languages.clone();
        if languages.is_empty() {
            languages.push(region.locale.default_language().to_owned());
        }
        let mut flows = BTreeMap::new();
        for language in &languages {
            let flow = load(language, &region.bot.flows_dir)?;
            for rule in &region.routing.rules {
                for category in &rule.categories {
                    if !flow.categories.contains_key(&category.to_lowercase()) {
                        return Err(FlowError::Invalid {
                            file: flow_file(language, &region.bot.flows_dir),
                            problem: format!(
                                "categories.{category} is missing (routing rule {:?} needs it)",
                                rule.name
                            ),
                        });
                    }
                }
            }
            flows.insert(language.clone(), flow);
        }
        let default_language = region.locale.default_language();
        Self::assemble(flows, default_language).ok_or_else(|| FlowError::Missing {
            language: default_language.to_owned(),
            file: flow_file(default_language, &region.bot.flows_dir),
        })
    }

    /// The flow of `language`, or of the default language when there is none.
    pub fn get(&self, language: &str) -> &Flow {
        self.flows.get(language).unwrap_or(&self.default)
    }

    /// Every flow, by language.
    pub fn all(&self) -> impl Iterator<Item = &Flow> {
        self.flows.values()
    }

    /// The flow of `language` first, then the others.
    pub fn ordered(&self, language: &str) -> Vec<&Flow> {
        let first = self.get(language);
        std::iter::once(first)
            .chain(self.all().filter(|flow| flow.language != first.language))
            .collect()
    }

    /// What a message that is nothing but a stop or start phrase of any of the region's
    /// languages asks for: `Some(false)` for no more notifications ("STOP!", "Abmelden"),
    /// `Some(true)` for notifications again ("start"), `None` for anything else, a
    /// sentence that merely contains such a word too ("my laptop won't stop beeping").
    ///
    /// Every language counts, not only the conversation's: a customer writes "stop" in
    /// whatever language, and a missed stop keeps messaging someone who said no.
    pub fn consent_word(&self, text: &str) -> Option<bool> {
        self.consent_words
            .get(split_words(text).as_slice())
            .copied()
    }

    /// The word lists of `language`'s flow and then the others', split into words.
    pub fn lists(&self, language: &str) -> &Lists {
        self.lists.get(language).unwrap_or(&self.default_lists)
    }

    fn assemble(flows: BTreeMap<String, Flow>, default_language: &str) -> Option<Flows> {
        let default = flows.get(default_language)?.clone();
        let mut assembled = Flows {
            flows,
            default,
            lists: BTreeMap::new(),
            default_lists: Lists::default(),
            consent_words: BTreeMap::new(),
        };
        assembled.consent_words = consent_words(&assembled);
        assembled.default_lists = Lists::of(&assembled, default_language);
        assembled.lists = assembled
            .flows
            .keys()
            .map(|language| (language.clone(), Lists::of(&assembled, language)))
            .collect();
        Some(assembled)
    }
}

impl Flow {
    /// The text `key` with every `{name}` of `args` filled in. A key the flow does not
    /// have (loading checks every key the bot uses) comes back as the key itself.
    pub fn text(&self, key: &str, args: &[(&str, &str)]) -> String {
        let Some(template) = self.texts.get(key) else {
            return key.to_owned();
        };
        args.iter().fold(template.clone(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        })
    }

    /// When agents are back, as the customer reads it: `at` in the region's time zone
    /// written with the flow's `agents_back` ("Montag, 7.12., um 08:00 Uhr").
    pub fn agents_back(&self, at: &jiff::Zoned) -> String {
        let weekday = usize::from(at.weekday().to_monday_zero_offset().unsigned_abs());
        let day = at.day().to_string();
        let month = at.month().to_string();
        let time = format!("{:02}:{:02}", at.hour(), at.minute());
        self.text(
            "agents_back",
            &[
                (
                    "weekday",
                    self.weekdays.get(weekday).map_or("", String::as_str),
                ),
                ("day", &day),
                ("month", &month),
                ("time", &time),
            ],
        )
    }

    /// Number words a customer may rate with: `"fünf"` → 5.
    pub fn rating_words(&self) -> &BTreeMap<String, u8> {
        &self.rating_words
    }

    /// The rating buttons: ids `"1"` to `"5"`, titles as the flow says (stars by default).
    pub fn rating_choices(&self) -> Vec<QuickReply> {
        let titles: Vec<&str> = if self.rating_titles.len() == STARS.len() {
            self.rating_titles.iter().map(String::as_str).collect()
        } else {
            STARS.to_vec()
        };
        titles
            .into_iter()
            .zip(1..)
            .map(|(title, score)| QuickReply {
                id: score.to_string(),
                title: title.to_owned(),
            })
            .collect()
    }

    /// The language's own name: `Deutsch`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parses and checks one flow file; `file` names it in errors.
    fn parse(language: &str, text: &str, file: &str) -> Result<Flow, FlowError> {
        let invalid = |problem: String| FlowError::Invalid {
            file: file.to_owned(),
            problem,
        };
        let raw: FlowFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .and_then(|span| text.get(..span.start))
                .map(|before| before.matches('\n').count() + 1);
            match line {
                Some(line) => invalid(format!("line {line}: {}", e.message())),
                None => invalid(e.message().to_owned()),
            }
        })?;
        if raw.name.trim().is_empty() {
            return Err(invalid("name is missing".to_owned()));
        }
        let lists = [
            ("detect", &raw.detect),
            ("agent_words", &raw.agent_words),
            ("greeting_words", &raw.greeting_words),
            ("serial_words", &raw.serial_words),
            // Required: a language whose customers cannot stop notifications in it must
            // not go live.
            ("stop_words", &raw.stop_words),
            ("start_words", &raw.start_words),
        ];
        for (key, list) in lists {
            if list.iter().all(|word| word.trim().is_empty()) {
                return Err(invalid(format!("{key} is missing or empty")));
            }
        }
        for (key, list) in [
            ("stop_words", &raw.stop_words),
            ("start_words", &raw.start_words),
        ] {
            // Only a whole message matches these, so a phrase without words (an emoji)
            // could never match and would only look like it works. Blanks are skipped,
            // as in every list.
            let wordless =
                |phrase: &&String| !phrase.trim().is_empty() && split_words(phrase).is_empty();
            if let Some(phrase) = list.iter().find(wordless) {
                return Err(invalid(format!(
                    "{key} has {phrase:?}, which has no words to match"
                )));
            }
        }
        if raw.categories.is_empty() {
            return Err(invalid("categories is missing or empty".to_owned()));
        }
        for (category, phrases) in &raw.categories {
            if phrases.iter().all(|phrase| phrase.trim().is_empty()) {
                return Err(invalid(format!("categories.{category} is empty")));
            }
        }
        if raw.rating_words.is_empty() {
            return Err(invalid("rating_words is missing or empty".to_owned()));
        }
        for (word, score) in &raw.rating_words {
            if !(1..=5).contains(score) {
                return Err(invalid(format!(
                    "rating_words.{word} is {score}; a rating is 1 to 5"
                )));
            }
        }
        if !raw.rating_titles.is_empty() && raw.rating_titles.len() != STARS.len() {
            return Err(invalid(format!(
                "rating_titles has {} titles; it needs one per score, 1 to 5",
                raw.rating_titles.len()
            )));
        }
        if raw.weekdays.len() != 7 || raw.weekdays.iter().any(|day| day.trim().is_empty()) {
            return Err(invalid(format!(
                "weekdays has {} names; it needs the seven days, Monday first",
                raw.weekdays
                    .iter()
                    .filter(|day| !day.trim().is_empty())
                    .count()
            )));
        }
        check_texts(&raw.texts).map_err(invalid)?;
        let detect = lowered(raw.detect);
        let categories: BTreeMap<String, Vec<String>> = raw
            .categories
            .into_iter()
            .map(|(category, phrases)| (category.to_lowercase(), lowered(phrases)))
            .collect();
        Ok(Flow {
            detect_words: detect.iter().map(|phrase| split_words(phrase)).collect(),
            category_words: categories
                .iter()
                .map(|(category, phrases)| {
                    (
                        category.clone(),
                        phrases.iter().map(|phrase| split_words(phrase)).collect(),
                    )
                })
                .collect(),
            language: language.to_owned(),
            name: raw.name.trim().to_owned(),
            detect,
            agent_words: lowered(raw.agent_words),
            upset_words: lowered(raw.upset_words),
            greeting_words: lowered(raw.greeting_words),
            filler_words: lowered(raw.filler_words),
            serial_words: lowered(raw.serial_words),
            stop_words: lowered(raw.stop_words),
            start_words: lowered(raw.start_words),
            categories,
            rating_words: raw
                .rating_words
                .into_iter()
                .map(|(word, score)| (word.to_lowercase(), score))
                .collect(),
            rating_titles: raw.rating_titles,
            weekdays: raw.weekdays,
            texts: raw.texts,
        })
    }
}

/// Every text present and non-empty, no unknown text, no placeholder the bot does not
/// fill in (a typo would reach the customer as `{minuts}`).
fn check_texts(texts: &BTreeMap<String, String>) -> Result<(), String> {
    for (key, _) in TEXTS {
        if texts.get(key).is_none_or(|text| text.trim().is_empty()) {
            return Err(format!("texts.{key} is missing"));
        }
    }
    for (key, text) in texts {
        let Some((_, allowed)) = TEXTS.iter().find(|(known, _)| known == key) else {
            return Err(format!("texts.{key} is not a text the bot uses"));
        };
        for placeholder in placeholders(text).map_err(|e| format!("texts.{key}: {e}"))? {
            if !allowed.contains(&placeholder) {
                let expected = if allowed.is_empty() {
                    "it takes none".to_owned()
                } else {
                    let names: Vec<String> = allowed.iter().map(|a| format!("{{{a}}}")).collect();
                    format!("it takes {}", names.join(", "))
                };
                return Err(format!(
                    "texts.{key} uses {{{placeholder}}}, which the bot does not fill in; {expected}"
                ));
            }
        }
    }
    Ok(())
}

/// The `{name}` placeholders of a text; an unclosed or empty brace is an error.
fn placeholders(text: &str) -> Result<BTreeSet<&str>, String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("a `{` is never closed".to_owned());
        };
        let name = &after[..close];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(format!("{{{name}}} is not a placeholder like {{product}}"));
        }
        found.insert(name);
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("a `}` is never opened".to_owned());
    }
    Ok(found)
}

fn lowered(words: Vec<String>) -> Vec<String> {
    words
        .into_iter()
        .map(|word| word.trim().to_lowercase())
        .filter(|word| !word.is_empty())
        .collect()
}

/// `language`'s flow: from `dir` when the file is there, else built in.
fn load(language: &str, dir: &str) -> Result<Flow, FlowError> {
    if !dir.is_empty() {
        let path = Path::new(dir).join(format!("{language}.toml"));
        let file = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => return Flow::parse(language, &text, &file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(FlowError::Unreadable {
                    file,
                    reason: e.to_string(),
                });
            }
        }
    }
    let Some((_, text)) = BUILTIN.iter().find(|(builtin, _)| *builtin == language) else {
        return Err(FlowError::Missing {
            language: language.to_owned(),
            file: flow_file(language, dir),
        });
    };
    Flow::parse(language, text, &builtin_file(language))
}

/// Where `language`'s flow is looked for, for messages.
fn flow_file(language: &str, dir: &str) -> String {
    if dir.is_empty() {
        builtin_file(language)
    } else {
        Path::new(dir)
            .join(format!("{language}.toml"))
            .display()
            .to_string()
    }
}

fn builtin_file(language: &str) -> String {
    format!("flows/{language}.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The German deployment's region, as shipped.
    fn germany() -> RegionConfig {
        let text = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
        RegionConfig::from_region_file(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn file_without(key: &str) -> String {
        BUILTIN[0]
            .1
            .lines()
            .filter(|line| !line.starts_with(&format!("{key} =")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The German built-in file with `key`'s list, however many lines it spans, set to
    /// `list`.
    fn file_with_list(key: &str, list: &str) -> String {
        let text = BUILTIN[0].1;
        let start = text
            .find(&format!("\n{key} = ["))
            .unwrap_or_else(|| panic!("no {key}"));
        let end = text[start..]
            .find("]\n")
            .map(|end| start + end + 2)
            .unwrap_or_else(|| panic!("{key} is never closed"));
        format!("{}\n{key} = {list}\n{}", &text[..start], &text[end..])
    }

    /// Whether `phrase`'s words come as a run among `text`'s words.
    fn names(text: &str, phrase: &str) -> bool {
        let words = split_words(text);
        let phrase = split_words(phrase);
        words
            .windows(phrase.len())
            .any(|run| run == phrase.as_slice())
    }

    fn problem_of(text: &str) -> String {
        match Flow::parse("fr", text, "flows/fr.toml") {
            Ok(_) => panic!("the flow was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_built_in_flows_are_complete() {
        let flows = Flows::builtin();
        for (language, _) in BUILTIN {
            assert_eq!(flows.get(language).language, language);
        }
        let flows = Flows::for_region(&germany()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(flows.get("de").name(), "Deutsch");
        assert_eq!(flows.get("en").name(), "English");
    }

    #[test]
    fn an_unknown_language_falls_back_to_the_default() {
        let flows = Flows::builtin();
        assert_eq!(flows.get("tlh").language, "de");
        let mut region = germany();
        region.locale.languages = vec!["en".to_owned(), "de".to_owned()];
        let flows = Flows::for_region(&region).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(flows.get("fr").language, "en");
    }

    #[test]
    fn texts_fill_in_their_placeholders() {
        let flows = Flows::builtin();
        assert_eq!(
            flows.get("en").text("wait", &[("minutes", "4")]),
            "A member of our team will be with you shortly. The waiting time is about 4 minutes."
        );
        assert_eq!(
            flows
                .get("de")
                .text("summary_verified", &[("serial", "ABC")]),
            "ABC (geprüft)"
        );
        assert_eq!(flows.get("de").text("no_such_text", &[]), "no_such_text");
    }

    #[test]
    fn ratings_come_as_words_and_buttons() {
        let flows = Flows::builtin();
        assert_eq!(flows.get("de").rating_words().get("fünf"), Some(&5));
        assert_eq!(flows.get("en").rating_words().get("three"), Some(&3));
        let choices = flows.get("en").rating_choices();
        let ids: Vec<&str> = choices.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5"]);
        assert_eq!(choices[4].title, "⭐⭐⭐⭐⭐");
    }

    #[test]
    fn a_missing_text_is_named_with_its_file() {
        assert_eq!(
            problem_of(&file_without("ask_serial")),
            "flows/fr.toml: texts.ask_serial is missing"
        );
    }

    #[test]
    fn a_placeholder_the_bot_does_not_fill_is_refused() {
        let text = BUILTIN[0]
            .1
            .replacen("{minutes} Minuten", "{minuts} Minuten", 1);
        assert_eq!(
            problem_of(&text),
            "flows/fr.toml: texts.wait uses {minuts}, which the bot does not fill in; it takes {minutes}"
        );
        let text = BUILTIN[0]
            .1
            .replacen("{minutes} Minuten", "{minutes Minuten", 1);
        assert_eq!(
            problem_of(&text),
            "flows/fr.toml: texts.wait: a `{` is never closed"
        );
    }

    #[test]
    fn unknown_keys_and_bad_scores_are_refused() {
        let text = BUILTIN[0].1.replace("abandoned =", "abandonned =");
        assert_eq!(
            problem_of(&text),
            "flows/fr.toml: texts.abandoned is missing"
        );
        let text = format!("{}\nfarewell = \"Tschüss\"", BUILTIN[0].1);
        assert_eq!(
            problem_of(&text),
            "flows/fr.toml: texts.farewell is not a text the bot uses"
        );
        let text = BUILTIN[0].1.replace("\"fünf\" = 5", "\"sechs\" = 6");
        assert_eq!(
            problem_of(&text),
            "flows/fr.toml: rating_words.sechs is 6; a rating is 1 to 5"
        );
        assert_eq!(
            problem_of(&file_without("name")),
            "flows/fr.toml: name is missing"
        );
    }

    #[test]
    fn a_region_language_without_a_flow_is_an_error() {
        let mut region = germany();
        region.locale.languages.push("tlh".to_owned());
        let error = Flows::for_region(&region)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            error,
            Err(
                "no flow for language \"tlh\": flows/tlh.toml does not exist and none is built in"
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_flows_dir_replaces_and_adds_languages() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let klingon = BUILTIN[1]
            .1
            .replace("name = \"English\"", "name = \"tlhIngan Hol\"");
        std::fs::write(dir.path().join("tlh.toml"), klingon).unwrap_or_else(|e| panic!("{e}"));
        let mut region = germany();
        region.locale.languages.push("tlh".to_owned());
        region.bot.flows_dir = dir.path().display().to_string();
        let flows = Flows::for_region(&region).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(flows.get("tlh").name(), "tlhIngan Hol");
        assert_eq!(flows.get("de").name(), "Deutsch");

        let broken = BUILTIN[1].1.replace("ask_serial =", "ask_serial_x =");
        std::fs::write(dir.path().join("tlh.toml"), broken).unwrap_or_else(|e| panic!("{e}"));
        let error = Flows::for_region(&region)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let file = dir.path().join("tlh.toml").display().to_string();
        assert_eq!(error, Err(format!("{file}: texts.ask_serial is missing")));
    }

    #[test]
    fn every_routing_category_must_be_in_every_flow() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let without_hardware = BUILTIN[1].1.replace("hardware = [", "hardwear = [");
        std::fs::write(dir.path().join("en.toml"), without_hardware)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut region = germany();
        region.bot.flows_dir = dir.path().display().to_string();
        let error = Flows::for_region(&region)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let file = dir.path().join("en.toml").display().to_string();
        assert_eq!(
            error,
            Err(format!(
                "{file}: categories.hardware is missing (routing rule \"laptop-hardware-to-store\" needs it)"
            ))
        );
    }

    #[test]
    fn consent_words_are_recognised_whatever_the_case_and_punctuation() {
        let flows = Flows::builtin();
        for text in [
            "STOP!",
            " Stop. ",
            "stop",
            "Abmelden",
            "UNSUBSCRIBE",
            "keine Nachrichten mehr!",
        ] {
            assert_eq!(flows.consent_word(text), Some(false), "{text:?}");
        }
        for text in ["START", "Start!", "wieder anmelden", "Resume."] {
            assert_eq!(flows.consent_word(text), Some(true), "{text:?}");
        }
    }

    #[test]
    fn every_built_in_languages_consent_words_are_recognised() {
        let flows = Flows::builtin();
        for flow in flows.all() {
            for (phrases, consent) in [(&flow.stop_words, false), (&flow.start_words, true)] {
                for phrase in phrases {
                    for text in [
                        phrase.clone(),
                        format!("{}!", phrase.to_uppercase()),
                        format!(" {phrase}. "),
                    ] {
                        assert_eq!(
                            flows.consent_word(&text),
                            Some(consent),
                            "{}: {text:?}",
                            flow.language
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_sentence_containing_a_consent_word_is_not_one() {
        let flows = Flows::builtin();
        for text in [
            "my laptop won't stop beeping",
            "It won't start",
            "stop stop",
            "please stop",
            "Mein Laptop startet nicht, bitte abmelden",
            "",
            "🛑",
            "!!!",
        ] {
            assert_eq!(flows.consent_word(text), None, "{text:?}");
        }
    }

    #[test]
    fn only_the_regions_languages_consent_words_count() {
        let flows = Flows::for_region(&germany()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(flows.consent_word("Abmelden"), Some(false));
        assert_eq!(flows.consent_word("unsubscribe"), Some(false));
        // Finnish is not one of the German region's languages.
        assert_eq!(flows.consent_word("lopeta"), None);
    }

    #[test]
    fn a_stop_phrase_beats_the_same_start_phrase_of_another_language() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // Klingon's start words are German stop words and its stop words German start
        // words, so whichever language comes first, stop must win.
        let klingon = BUILTIN[1]
            .1
            .replacen("\"start\", ", "\"start\", \"abmelden\", ", 1)
            .replacen("\"stop\", ", "\"stop\", \"wieder anmelden\", ", 1);
        std::fs::write(dir.path().join("tlh.toml"), klingon).unwrap_or_else(|e| panic!("{e}"));
        let mut region = germany();
        region.locale.languages.push("tlh".to_owned());
        region.bot.flows_dir = dir.path().display().to_string();
        let flows = Flows::for_region(&region).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            flows
                .get("tlh")
                .start_words
                .contains(&"abmelden".to_owned())
        );
        assert!(
            flows
                .get("tlh")
                .stop_words
                .contains(&"wieder anmelden".to_owned())
        );
        assert_eq!(flows.consent_word("abmelden"), Some(false));
        assert_eq!(flows.consent_word("Wieder anmelden!"), Some(false));
        assert_eq!(flows.consent_word("start"), Some(true));
    }

    #[test]
    fn every_built_in_flow_can_stop_and_restart_notifications() {
        let flows = Flows::builtin();
        for flow in flows.all() {
            let language = &flow.language;
            assert!(!flow.stop_words.is_empty(), "{language}");
            assert!(!flow.start_words.is_empty(), "{language}");
            // The English words work everywhere: customers use them in every language,
            // and the Apple notice asks for 'Unsubscribe' in every language.
            assert!(flow.stop_words.contains(&"stop".to_owned()), "{language}");
            assert!(
                flow.stop_words.contains(&"unsubscribe".to_owned()),
                "{language}"
            );
            assert!(flow.start_words.contains(&"start".to_owned()), "{language}");

            let stopped = flow.text("notifications_stopped", &[("brand", "Acme")]);
            assert!(stopped.contains("Acme"), "{language}: {stopped}");
            assert!(
                flow.start_words.iter().any(|word| names(&stopped, word)),
                "{language}: {stopped} names none of its start words"
            );
            let resumed = flow.text("notifications_resumed", &[("brand", "Acme")]);
            assert!(resumed.contains("Acme"), "{language}: {resumed}");
            let notice = flow.text("apple_notice", &[]);
            assert!(notice.contains("Unsubscribe"), "{language}: {notice}");
        }
        assert_eq!(
            flows.get("en").text("apple_notice", &[]),
            "We will send important notifications related to your account status or transactions. Send 'Unsubscribe' to manage your message preferences."
        );
        assert_eq!(
            flows
                .get("de")
                .text("notifications_stopped", &[("brand", "Acme")]),
            "Erledigt: Sie erhalten keine Benachrichtigungen mehr von Acme. Wenn Sie sie wieder erhalten möchten, schreiben Sie einfach „START“."
        );
    }

    #[test]
    fn a_flow_without_consent_words_or_notification_texts_is_refused() {
        assert_eq!(
            problem_of(&file_with_list("stop_words", "[]")),
            "flows/fr.toml: stop_words is missing or empty"
        );
        assert_eq!(
            problem_of(&file_with_list("start_words", "[]")),
            "flows/fr.toml: start_words is missing or empty"
        );
        assert_eq!(
            problem_of(&file_with_list("stop_words", "[\"stop\", \"🛑\"]")),
            "flows/fr.toml: stop_words has \"🛑\", which has no words to match"
        );
        for key in [
            "notifications_stopped",
            "notifications_resumed",
            "apple_notice",
        ] {
            assert_eq!(
                problem_of(&file_without(key)),
                format!("flows/fr.toml: texts.{key} is missing")
            );
        }
        let text = BUILTIN[0].1.replacen("{brand}. Wenn", "{product}. Wenn", 1);
        assert_eq!(
            problem_of(&text),
            "flows/fr.toml: texts.notifications_stopped uses {product}, which the bot does not fill in; it takes {brand}"
        );
    }
}
