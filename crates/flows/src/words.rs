//! Splitting text into words, the one way the bot reads a message and the flows' phrases
//! are prepared; and each language's word lists, split once when flows are assembled.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::{Flow, Flows};

/// A word of a text: lower-cased, with its byte range in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    /// As written, for telling a serial number's parts from ordinary words.
    pub written: String,
    pub span: Range<usize>,
}

/// The word lists of every flow, the ticket language's first, split into words: made
/// once per language when the flows are assembled ([`Flows::lists`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lists {
    pub agent_words: Vec<Vec<String>>,
    pub upset_words: Vec<Vec<String>>,
    pub greeting_words: Vec<Vec<String>>,
    pub filler_words: Vec<Vec<String>>,
    pub serial_words: Vec<Vec<String>>,
}

impl Lists {
    pub(crate) fn of(flows: &Flows, language: &str) -> Lists {
        let ordered = flows.ordered(language);
        let gather = |list: fn(&Flow) -> &Vec<String>| -> Vec<Vec<String>> {
            ordered
                .iter()
                .flat_map(|flow| list(flow).iter())
                .map(|phrase| split_words(phrase))
                .filter(|phrase| !phrase.is_empty())
                .collect()
        };
        Lists {
            agent_words: gather(|f| &f.agent_words),
            upset_words: gather(|f| &f.upset_words),
            greeting_words: gather(|f| &f.greeting_words),
            filler_words: gather(|f| &f.filler_words),
            serial_words: gather(|f| &f.serial_words),
        }
    }
}

/// Every flow's stop and start phrases, split into words → whether the phrase turns
/// notifications on; for [`Flows::consent_word`], made once when the flows are assembled.
/// Start phrases go in first so that a stop phrase of another language with the same
/// words replaces them: a wrong stop costs a notification, a wrong start sends to
/// someone who said no. A phrase without words is left out, or every message without
/// words (an emoji) would match it.
pub(crate) fn consent_words(flows: &Flows) -> BTreeMap<Vec<String>, bool> {
    let starts = flows
        .all()
        .flat_map(|flow| flow.start_words.iter().map(|phrase| (phrase, true)));
    let stops = flows
        .all()
        .flat_map(|flow| flow.stop_words.iter().map(|phrase| (phrase, false)));
    starts
        .chain(stops)
        .map(|(phrase, start)| (split_words(phrase), start))
        .filter(|(words, _)| !words.is_empty())
        .collect()
}

/// The words of `text`, in order.
pub fn words(text: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(from)) => {
                let written = &text[from..i];
                words.push(Word {
                    text: written.to_lowercase(),
                    written: written.to_owned(),
                    span: from..i,
                });
                start = None;
            }
            _ => {}
        }
    }
    words
}

/// The lower-cased words of `phrase`.
pub fn split_words(phrase: &str) -> Vec<String> {
    words(phrase).into_iter().map(|word| word.text).collect()
}
