//! Understanding one customer message: pure, deterministic, and in any order.
//!
//! "MateBook X Pro, SN 2NS7N19B12345678, Bildschirm flackert" gives a product, a serial
//! number and a problem; "Hallo, mein MateBook startet nicht mehr" a product and a
//! problem; "MateBook, Display defekt, 10115 Berlin" a product, a problem and a location.
//!
//! A text is read as words (runs of letters and digits, lower-cased) and segments (the
//! parts between `,` `;` `.` `!` `?` and line breaks). Every word list of a flow is
//! matched as runs of whole words. The lists of all the region's flows are used, so a
//! customer who mixes languages is still understood; categories prefer the ticket's
//! language on a tie.

use std::ops::Range;

use helpline_region::RegionConfig;

use crate::flows::Flows;
use crate::flows::words::{Lists, Word, split_words, words};

/// The prompts after which a bare answer is the serial number.
const SERIAL_PROMPTS: [&str; 2] = ["ask_serial", "serial_invalid"];
/// The prompts that ask for something else than the problem: free text in the answer is
/// a problem only when it names one of the flows' categories ("ein iPhone" answers the
/// product question, wrongly, and is no problem).
const OTHER_QUESTIONS: [&str; 5] = [
    "ask_language",
    "ask_product",
    "ask_serial",
    "serial_invalid",
    "ask_location",
];
/// Serial numbers without a serial word before them: 8 to 20 letters and digits …
const SERIAL_LEN: Range<usize> = 8..21;
/// … with at least this many digits, so that "Windows11" is not taken for one.
const SERIAL_DIGITS: usize = 3;
/// After a serial word, or when the bot asked for it, shorter and longer ones are taken
/// too, so that a wrong serial number is answered as wrong rather than not seen.
const ASKED_SERIAL_LEN: Range<usize> = 4..31;

/// What one message says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Understood {
    /// The product family, as the region names it.
    pub product: Option<String>,
    /// Upper case, without spaces; not yet checked against the product's pattern.
    pub serial: Option<String>,
    /// The postcode (when given) and the place's name, e.g. `10115 Berlin`.
    pub location: Option<String>,
    /// As the flows name it: `hardware`, `boot`, …
    pub category: Option<String>,
    /// What is wrong, in the customer's words.
    pub problem: Option<String>,
    /// The customer asks for a person.
    pub asks_for_agent: bool,
    pub upset: bool,
}

impl Understood {
    /// Nothing was understood.
    pub fn is_empty(&self) -> bool {
        self == &Understood::default()
    }
}

/// The region language `text` is written in, by the flows' detect words; `None` when no
/// word gives it away or two languages score the same.
pub fn detect_language(region: &RegionConfig, flows: &Flows, text: &str) -> Option<String> {
    let words = words(text);
    let mut scores: Vec<(usize, &str)> = region
        .locale
        .languages
        .iter()
        .map(|language| {
            let flow = flows.get(language);
            let score = if &flow.language == language {
                flow.detect_words
                    .iter()
                    .map(|phrase| find_all(&words, phrase).len())
                    .sum()
            } else {
                0
            };
            (score, language.as_str())
        })
        .collect();
    scores.sort_by_key(|(score, _)| std::cmp::Reverse(*score));
    match scores.as_slice() {
        [(best, language), rest @ ..]
            if *best > 0 && rest.first().is_none_or(|(next, _)| next < best) =>
        {
            Some((*language).to_owned())
        }
        _ => None,
    }
}

/// The language a customer picked when asked: a language tag (the button's id) or a
/// flow's name (the button's title), else what the text is written in.
pub fn chosen_language(region: &RegionConfig, flows: &Flows, text: &str) -> Option<String> {
    let answer = text.trim().to_lowercase();
    region
        .locale
        .languages
        .iter()
        .find(|language| {
            language.to_lowercase() == answer || flows.get(language).name().to_lowercase() == answer
        })
        .cloned()
        .or_else(|| detect_language(region, flows, text))
}

/// Everything `text` says. `language` is the ticket's, `last_prompt` what the bot asked
/// last: after `ask_problem` the whole message is the problem, after `ask_location` a
/// place is taken from anywhere in it, after `ask_serial` a bare code is the serial.
pub fn understand(
    region: &RegionConfig,
    flows: &Flows,
    language: &str,
    text: &str,
    last_prompt: &str,
) -> Understood {
    let lists = flows.lists(language);
    let all = words(text);
    let segments = segments(text);
    let product = region.find_product(text).map(|p| p.family.clone());
    let product_names: Vec<Vec<String>> = region
        .products
        .iter()
        .flat_map(|p| p.names())
        .map(split_words)
        .collect();
    let serial = find_serial(
        text,
        &all,
        &lists.serial_words,
        &lists.filler_words,
        SERIAL_PROMPTS.contains(&last_prompt),
    );
    // Spans of the text that are neither problem nor place: the serial and its word.
    let mut taken: Vec<Range<usize>> = serial
        .as_ref()
        .map(|(_, spans)| spans.clone())
        .unwrap_or_default();
    let location = segments.iter().find_map(|segment| {
        find_location(
            region,
            text,
            segment,
            &taken,
            lists,
            &product_names,
            last_prompt == "ask_location",
        )
    });
    if let Some((_, spans)) = &location {
        taken.extend(spans.iter().cloned());
    }
    let category = category(&all, flows, language);
    let problem = if last_prompt == "ask_problem" && !text.trim().is_empty() {
        Some(text.trim().to_owned())
    } else if OTHER_QUESTIONS.contains(&last_prompt) && category.is_none() {
        None
    } else {
        let parts: Vec<String> = segments
            .iter()
            .filter_map(|segment| problem_part(text, segment, &taken, lists, &product_names))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    };
    Understood {
        product,
        serial: serial.map(|(serial, _)| serial),
        location: location.map(|(location, _)| location),
        category,
        problem,
        asks_for_agent: any_of(&all, &lists.agent_words),
        upset: any_of(&all, &lists.upset_words),
    }
}

/// The byte ranges of the parts of `text` between separators.
fn segments(text: &str) -> Vec<Range<usize>> {
    let mut segments = Vec::new();
    let mut from = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, ',' | ';' | '.' | '!' | '?' | '\n') {
            segments.push(from..i);
            from = i + c.len_utf8();
        }
    }
    segments.push(from..text.len());
    segments.retain(|segment| !text[segment.clone()].trim().is_empty());
    segments
}

/// Where `phrase` occurs in `words`, as ranges of word indices.
fn find_all(words: &[Word], phrase: &[String]) -> Vec<Range<usize>> {
    if phrase.is_empty() || phrase.len() > words.len() {
        return Vec::new();
    }
    (0..=words.len() - phrase.len())
        .filter(|&i| {
            words[i..i + phrase.len()]
                .iter()
                .zip(phrase)
                .all(|(word, expected)| &word.text == expected)
        })
        .map(|i| i..i + phrase.len())
        .collect()
}

fn any_of(words: &[Word], phrases: &[Vec<String>]) -> bool {
    phrases
        .iter()
        .any(|phrase| !find_all(words, phrase).is_empty())
}

/// Marks every word that is part of one of `phrases`.
fn mark(words: &[Word], phrases: &[Vec<String>], marked: &mut [bool]) {
    for phrase in phrases {
        for range in find_all(words, phrase) {
            for flag in &mut marked[range] {
                *flag = true;
            }
        }
    }
}

fn overlaps(span: &Range<usize>, taken: &[Range<usize>]) -> bool {
    taken
        .iter()
        .any(|t| span.start < t.end && t.start < span.end)
}

/// A word that could be (part of) a serial number as written.
fn is_code(word: &Word) -> bool {
    word.written.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A word that continues a serial number written in parts ("2NS7 N19B …"): upper case
/// letters and digits only, so that ordinary words after it are not swallowed.
fn continues_code(word: &Word) -> bool {
    is_code(word)
        && word
            .written
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
}

/// The serial number and the byte ranges it (and its serial word) take up.
fn find_serial(
    text: &str,
    words: &[Word],
    serial_words: &[Vec<String>],
    filler_words: &[Vec<String>],
    asked: bool,
) -> Option<(String, Vec<Range<usize>>)> {
    let mut filler = vec![false; words.len()];
    mark(words, filler_words, &mut filler);
    let announced = serial_words
        .iter()
        .flat_map(|phrase| find_all(words, phrase))
        .min_by_key(|range| (range.start, std::cmp::Reverse(range.len())));
    let starts: Vec<(usize, Option<Range<usize>>)> = match &announced {
        Some(range) => {
            let first = (range.end..words.len()).find(|&i| !filler[i]);
            first
                .map(|i| (i, Some(range.clone())))
                .into_iter()
                .collect()
        }
        None if asked => (0..words.len()).map(|i| (i, None)).collect(),
        None => Vec::new(),
    };
    for (start, word_range) in starts {
        if !is_code(&words[start]) {
            continue;
        }
        let mut end = start + 1;
        let mut joined = words[start].written.clone();
        while end < words.len()
            && continues_code(&words[end])
            && text[words[end - 1].span.end..words[end].span.start]
                .chars()
                .all(|c| c == ' ' || c == '-')
            && joined.len() + words[end].written.len() < ASKED_SERIAL_LEN.end
        {
            joined.push_str(&words[end].written);
            end += 1;
        }
        if ASKED_SERIAL_LEN.contains(&joined.len()) && joined.chars().any(|c| c.is_ascii_digit()) {
            let serial = words[start].span.start..words[end - 1].span.end;
            let spans = match word_range {
                Some(range) => vec![
                    serial,
                    words[range.start].span.start..words[range.end - 1].span.end,
                ],
                None => vec![serial],
            };
            return Some((joined.to_uppercase(), spans));
        }
    }
    words
        .iter()
        .find(|word| {
            is_code(word)
                && SERIAL_LEN.contains(&word.written.len())
                && word.written.chars().filter(char::is_ascii_digit).count() >= SERIAL_DIGITS
        })
        .map(|word| (word.written.to_uppercase(), vec![word.span.clone()]))
}

/// The place a segment names, and the byte ranges of the postcode and the place name.
/// Taken when the bot asked for it, or when the segment names a place and says nothing
/// else: a bare number is read as a postcode only when asked ("seit 2024" is no place).
fn find_location(
    region: &RegionConfig,
    text: &str,
    segment: &Range<usize>,
    taken: &[Range<usize>],
    lists: &Lists,
    product_names: &[Vec<String>],
    asked: bool,
) -> Option<(String, Vec<Range<usize>>)> {
    let words: Vec<Word> = words(&text[segment.clone()])
        .into_iter()
        .map(|word| Word {
            span: word.span.start + segment.start..word.span.end + segment.start,
            ..word
        })
        .filter(|word| !overlaps(&word.span, taken))
        .collect();
    let free: Vec<&str> = words.iter().map(|word| word.text.as_str()).collect();
    let place = region.locate(&free.join(" "))?;
    let postcode = words.iter().find(|word| {
        (4..=5).contains(&word.text.len()) && word.text.chars().all(|c| c.is_ascii_digit())
    });
    let names: Vec<Vec<String>> = std::iter::once(&place.name)
        .chain(&place.aliases)
        .map(|name| split_words(name))
        .collect();
    let mut marked = vec![false; words.len()];
    mark(&words, &names, &mut marked);
    if !asked && !marked.iter().any(|marked| *marked) {
        return None;
    }
    for (word, flag) in words.iter().zip(marked.iter_mut()) {
        if postcode.is_some_and(|postcode| postcode.span == word.span) {
            *flag = true;
        }
    }
    let spans: Vec<Range<usize>> = words
        .iter()
        .zip(&marked)
        .filter(|(_, marked)| **marked)
        .map(|(word, _)| word.span.clone())
        .collect();
    mark(&words, &lists.filler_words, &mut marked);
    mark(&words, &lists.greeting_words, &mut marked);
    mark(&words, product_names, &mut marked);
    let says_more = words
        .iter()
        .zip(&marked)
        .any(|(word, marked)| !marked && meaningful(word));
    if says_more && !asked {
        return None;
    }
    let location = match postcode {
        Some(postcode) => format!("{} {}", postcode.text, place.name),
        None => place.name.clone(),
    };
    Some((location, spans))
}

/// The segment as problem text, when it says something beyond greetings, products,
/// filler, serial numbers and places (which are cut out of it) and asks for no person.
fn problem_part(
    text: &str,
    segment: &Range<usize>,
    taken: &[Range<usize>],
    lists: &Lists,
    product_names: &[Vec<String>],
) -> Option<String> {
    let words: Vec<Word> = words(&text[segment.clone()])
        .into_iter()
        .map(|word| Word {
            span: word.span.start + segment.start..word.span.end + segment.start,
            ..word
        })
        .collect();
    if any_of(&words, &lists.agent_words) {
        return None;
    }
    let mut marked: Vec<bool> = words
        .iter()
        .map(|word| overlaps(&word.span, taken))
        .collect();
    mark(&words, &lists.greeting_words, &mut marked);
    mark(&words, &lists.filler_words, &mut marked);
    mark(&words, &lists.serial_words, &mut marked);
    mark(&words, product_names, &mut marked);
    if !words
        .iter()
        .zip(&marked)
        .any(|(word, marked)| !marked && meaningful(word))
    {
        return None;
    }
    let mut cuts: Vec<&Range<usize>> = taken
        .iter()
        .filter(|cut| overlaps(cut, std::slice::from_ref(segment)))
        .collect();
    cuts.sort_by_key(|cut| cut.start);
    let mut kept = String::new();
    let mut from = segment.start;
    for cut in cuts {
        let start = cut.start.max(segment.start);
        if start > from {
            kept.push_str(&text[from..start]);
        }
        from = from.max(cut.end.min(segment.end));
    }
    kept.push_str(&text[from..segment.end]);
    let kept = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    let kept = kept.trim_matches(|c: char| !c.is_alphanumeric() && c != '"' && c != '\'');
    (!kept.is_empty()).then(|| kept.to_owned())
}

/// A word with at least two letters: not a number, not a stray letter.
fn meaningful(word: &Word) -> bool {
    word.text.chars().filter(|c| c.is_alphabetic()).count() >= 2
}

/// The category whose phrase matches the longest run of words; on a tie, the ticket
/// language's flow first, then by name.
fn category(words: &[Word], flows: &Flows, language: &str) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for flow in flows.ordered(language) {
        for (category, phrases) in &flow.category_words {
            for phrase in phrases {
                if !find_all(words, phrase).is_empty()
                    && best.is_none_or(|(length, _)| phrase.len() > length)
                {
                    best = Some((phrase.len(), category));
                }
            }
        }
    }
    best.map(|(_, category)| category.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::germany;

    fn read(language: &str, text: &str, last_prompt: &str) -> Understood {
        understand(&germany(), &Flows::builtin(), language, text, last_prompt)
    }

    #[track_caller]
    fn check(text: &str, expected: Understood) {
        assert_eq!(read("de", text, ""), expected, "{text:?}");
    }

    fn some(text: &str) -> Option<String> {
        Some(text.to_owned())
    }

    #[test]
    fn product_serial_and_problem_in_one_message() {
        check(
            "MateBook X Pro, SN 2NS7N19B12345678, Bildschirm flackert",
            Understood {
                product: some("MateBook X Pro"),
                serial: some("2NS7N19B12345678"),
                category: some("display"),
                problem: some("Bildschirm flackert"),
                ..Understood::default()
            },
        );
    }

    #[test]
    fn a_greeting_is_not_the_problem() {
        check(
            "Hallo, mein MateBook startet nicht mehr",
            Understood {
                product: some("MateBook"),
                category: some("boot"),
                problem: some("mein MateBook startet nicht mehr"),
                ..Understood::default()
            },
        );
        check("Hallo!", Understood::default());
        check("Guten Tag", Understood::default());
    }

    #[test]
    fn a_postcode_and_city_are_the_location() {
        check(
            "MateBook, Display defekt, 10115 Berlin",
            Understood {
                product: some("MateBook"),
                location: some("10115 Berlin"),
                category: some("hardware"),
                problem: some("Display defekt"),
                ..Understood::default()
            },
        );
        check(
            "München",
            Understood {
                location: some("München"),
                ..Understood::default()
            },
        );
    }

    #[test]
    fn a_place_inside_a_sentence_is_taken_only_when_asked() {
        let text = "Mein Laptop ist in Köln kaputt gegangen";
        assert_eq!(read("de", text, "").location, None);
        assert_eq!(read("de", text, "ask_location").location, some("Köln"));
    }

    #[test]
    fn the_order_does_not_matter() {
        check(
            "Bildschirm gebrochen. Seriennummer: 2ns7n19b12345678. Es geht um mein MateBook D 16",
            Understood {
                product: some("MateBook D 16"),
                serial: some("2NS7N19B12345678"),
                category: some("hardware"),
                problem: some("Bildschirm gebrochen"),
                ..Understood::default()
            },
        );
    }

    #[test]
    fn serial_numbers_are_normalized() {
        let serial = |text: &str, prompt: &str| read("de", text, prompt).serial;
        assert_eq!(
            serial("S/N: 2NS7 N19B 1234 5678", ""),
            some("2NS7N19B12345678")
        );
        assert_eq!(serial("sn 2ns7n19b12345678", ""), some("2NS7N19B12345678"));
        assert_eq!(serial("Seriennummer ist 12345", ""), some("12345"));
        assert_eq!(serial("12345", "ask_serial"), some("12345"));
        assert_eq!(serial("12345", ""), None);
        assert_eq!(serial("ABCDEFGHIJK", ""), None);
        assert_eq!(serial("seit dem Update auf Windows11", ""), None);
        assert_eq!(serial("mein Handy von 2024", ""), None);
        assert_eq!(read("de", "mein Handy von 2024", "").location, None);
        assert_eq!(
            read("de", "10115", "ask_location").location,
            some("10115 Berlin")
        );
    }

    #[test]
    fn after_ask_problem_the_whole_message_is_the_problem() {
        assert_eq!(
            read("de", "Hallo, der Lüfter ist laut", "ask_problem").problem,
            some("Hallo, der Lüfter ist laut")
        );
    }

    #[test]
    fn an_answer_to_another_question_is_a_problem_only_when_it_names_one() {
        assert_eq!(read("de", "ein iPhone", "ask_product").problem, None);
        assert_eq!(read("de", "ein iPhone", "").problem, some("ein iPhone"));
        assert_eq!(
            read("de", "mein Laptop geht nicht an", "ask_product").problem,
            some("mein Laptop geht nicht an")
        );
    }

    #[test]
    fn english_messages_are_understood() {
        assert_eq!(
            read("en", "Hi, my MateBook X Pro won't boot", ""),
            Understood {
                product: some("MateBook X Pro"),
                category: some("boot"),
                problem: some("my MateBook X Pro won't boot"),
                ..Understood::default()
            }
        );
        assert_eq!(
            read(
                "en",
                "Pura 80, serial number 2NS7N19B12345678, cracked screen",
                ""
            ),
            Understood {
                product: some("Pura 80"),
                serial: some("2NS7N19B12345678"),
                category: some("hardware"),
                problem: some("cracked screen"),
                ..Understood::default()
            }
        );
    }

    #[test]
    fn requests_for_a_person_and_anger_are_noticed() {
        let de = read("de", "Ich möchte mit einem Mitarbeiter sprechen", "");
        assert!(de.asks_for_agent);
        assert_eq!(de.problem, None);
        let en = read("en", "This is ridiculous, my laptop is broken again", "");
        assert!(en.upset);
        assert!(!en.asks_for_agent);
        assert!(read("en", "I want to talk to a real person", "").asks_for_agent);
        assert!(!read("de", "Mein Akku ist leer", "").asks_for_agent);
    }

    #[test]
    fn the_longest_category_phrase_wins() {
        let category = |text| read("de", text, "").category;
        assert_eq!(category("Display defekt"), some("hardware"));
        assert_eq!(category("Display flackert"), some("display"));
        assert_eq!(category("Passwort vergessen"), some("account"));
        assert_eq!(category("Windows Update hängt"), some("software"));
        assert_eq!(category("Hallo"), None);
    }

    #[test]
    fn the_language_is_detected_by_its_words() {
        let region = germany();
        let flows = Flows::builtin();
        let detect = |text| detect_language(&region, &flows, text);
        assert_eq!(
            detect("Hallo, mein MateBook startet nicht mehr"),
            some("de")
        );
        assert_eq!(detect("Hi, my MateBook won't boot"), some("en"));
        assert_eq!(detect("MateBook X Pro, 2NS7N19B12345678"), None);
        assert_eq!(detect("Hallo hello"), None);
    }

    #[test]
    fn a_language_is_chosen_by_tag_name_or_words() {
        let region = germany();
        let flows = Flows::builtin();
        let chosen = |text| chosen_language(&region, &flows, text);
        assert_eq!(chosen("en"), some("en"));
        assert_eq!(chosen("Deutsch"), some("de"));
        assert_eq!(chosen("english please"), some("en"));
        assert_eq!(chosen("?"), None);
    }
}
