//! Reading a rating out of a customer's answer: pure, total, and strict about the score.
//!
//! The score leads the answer, as customers write it after "rate us from 1 to 5": `5`,
//! `5/5`, `4 von 5`, `4 out of 5`, stars (`⭐⭐⭐⭐`, `★★★☆☆`), a keycap emoji (`5️⃣`), or a
//! number word of the ticket's language (`fünf`, `five`), optionally followed by `Sterne`
//! or `stars`. Whatever follows the score is the comment: `4 schnelle Hilfe`. A score
//! outside 1–5, a decimal (`4,5`), a scale other than 5 (`8/10`) or anything else reads
//! as no rating, so the customer is asked again rather than misread.

use std::collections::BTreeMap;

/// A score of 1 to 5 and what the customer wrote with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedRating {
    pub score: u8,
    pub comment: Option<String>,
}

/// Star characters counted as one point each.
const STARS: [char; 3] = ['⭐', '★', '🌟'];
/// An empty star: allowed between and after the filled ones, worth nothing.
const EMPTY_STAR: char = '☆';
/// Emoji modifiers that may trail a star or a digit (variation selector, keycap).
const MODIFIERS: [char; 2] = ['\u{FE0F}', '\u{20E3}'];
/// Words that may follow a score without being a comment.
const UNITS: [&str; 9] = [
    "sternen", "sterne", "stern", "stars", "star", "punkte", "punkt", "points", "point",
];
/// Words between a score and its scale: `4 von 5`, `4 out of 5`.
const SCALE_WORDS: [&str; 4] = ["out of", "von", "aus", "of"];
/// Characters that separate a score from its comment: `5 - super`, `4, danke`.
const SEPARATORS: [char; 8] = ['-', '–', '—', ':', ',', '.', ';', '!'];

/// The rating `text` gives, if it reads as one; `number_words` are the ticket language's
/// number words (`"fünf"` → 5), matched case-insensitively.
pub fn parse(text: &str, number_words: &BTreeMap<String, u8>) -> Option<ParsedRating> {
    let text = text.trim();
    let (score, rest) = stars(text)
        .or_else(|| digits(text))
        .or_else(|| word(text, number_words))?;
    let score = u8::try_from(score).ok().filter(|s| (1..=5).contains(s))?;
    let rest = scale(rest, number_words)?;
    let rest = unit(rest);
    let comment = rest
        .trim_start_matches(|c: char| c.is_whitespace() || SEPARATORS.contains(&c))
        .trim_end();
    Some(ParsedRating {
        score,
        comment: (!comment.is_empty()).then(|| comment.to_owned()),
    })
}

/// A run of stars, spaces allowed between them: the count of filled ones, and the rest.
fn stars(text: &str) -> Option<(u32, &str)> {
    let mut filled = 0u32;
    let mut end = 0;
    for (at, c) in text.char_indices() {
        if STARS.contains(&c) {
            filled = filled.saturating_add(1);
        } else if c != EMPTY_STAR && !MODIFIERS.contains(&c) && !c.is_whitespace() {
            break;
        }
        if !c.is_whitespace() {
            end = at + c.len_utf8();
        }
    }
    (end > 0).then(|| (filled, &text[end..]))
}

/// A whole number at the start (not a decimal, not glued to letters), and the rest.
fn digits(text: &str) -> Option<(u32, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    // More than three digits is no score anyway, and stays clear of overflow.
    if end == 0 || end > 3 {
        return None;
    }
    let rest = &text[end..];
    let mut after = rest.chars();
    match (after.next(), after.next()) {
        (Some('.' | ','), Some(next)) if next.is_ascii_digit() => return None,
        (Some(next), _) if next.is_alphanumeric() => return None,
        _ => {}
    }
    let value = text[..end].parse().ok()?;
    Some((value, rest.trim_start_matches(MODIFIERS)))
}

/// A number word at the start, and the rest.
fn word<'t>(text: &'t str, number_words: &BTreeMap<String, u8>) -> Option<(u32, &'t str)> {
    let end = text
        .find(|c: char| !c.is_alphabetic())
        .unwrap_or(text.len());
    let value = number_words.get(&text[..end].to_lowercase())?;
    Some((u32::from(*value), &text[end..]))
}

/// Skips `/5`, `von 5`, `out of fünf`; `None` when the scale is not 5, since a score on
/// another scale cannot be read as 1 to 5 without guessing.
fn scale<'t>(rest: &'t str, number_words: &BTreeMap<String, u8>) -> Option<&'t str> {
    let trimmed = rest.trim_start();
    let after = trimmed.strip_prefix('/').or_else(|| {
        SCALE_WORDS
            .iter()
            .find_map(|scale_word| word_prefix(trimmed, scale_word))
    });
    let Some(after) = after else {
        return Some(rest);
    };
    let after = after.trim_start();
    match digits(after).or_else(|| word(after, number_words)) {
        Some((5, tail)) => Some(tail),
        Some(_) => None,
        // "5 of course": no scale follows, so the words are the comment.
        None => Some(rest),
    }
}

/// Skips a unit after the score: stars, `Sterne`, `points`.
fn unit(rest: &str) -> &str {
    let trimmed = rest.trim_start();
    if let Some((_, tail)) = stars(trimmed) {
        return tail;
    }
    UNITS
        .iter()
        .find_map(|unit| word_prefix(trimmed, unit))
        .unwrap_or(rest)
}

/// `text` after the ASCII word `prefix` (any case), if it starts with it as a whole word.
fn word_prefix<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    let tail = &text[prefix.len()..];
    let whole = !tail.chars().next().is_some_and(char::is_alphanumeric);
    (head.eq_ignore_ascii_case(prefix) && whole).then_some(tail)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn number_words() -> BTreeMap<String, u8> {
        [
            ("eins", 1),
            ("zwei", 2),
            ("drei", 3),
            ("vier", 4),
            ("fünf", 5),
            ("one", 1),
            ("two", 2),
            ("three", 3),
            ("four", 4),
            ("five", 5),
        ]
        .into_iter()
        .map(|(word, score)| (word.to_owned(), score))
        .collect()
    }

    /// `text` reads as `score` with `comment`, or as nothing when `score` is `None`.
    #[track_caller]
    fn check(text: &str, expected: Option<(u8, Option<&str>)>) {
        let parsed = parse(text, &number_words());
        let expected = expected.map(|(score, comment)| ParsedRating {
            score,
            comment: comment.map(str::to_owned),
        });
        assert_eq!(parsed, expected, "{text:?}");
    }

    #[test]
    fn a_bare_number_is_the_score() {
        check("5", Some((5, None)));
        check(" 1 ", Some((1, None)));
        check("3.", Some((3, None)));
        check("4!", Some((4, None)));
        check("5️⃣", Some((5, None)));
    }

    #[test]
    fn a_score_out_of_five() {
        check("5/5", Some((5, None)));
        check("4 / 5", Some((4, None)));
        check("4 von 5", Some((4, None)));
        check("4 von 5 Sternen", Some((4, None)));
        check("3 out of 5", Some((3, None)));
        check("2 of five", Some((2, None)));
        check("vier von fünf", Some((4, None)));
    }

    #[test]
    fn stars_are_counted() {
        check("⭐⭐⭐⭐", Some((4, None)));
        check("★★★", Some((3, None)));
        check("⭐️⭐️⭐️⭐️⭐️", Some((5, None)));
        check("⭐ ⭐", Some((2, None)));
        check("★★★☆☆", Some((3, None)));
    }

    #[test]
    fn number_words_of_either_language() {
        check("fünf", Some((5, None)));
        check("Fünf Sterne", Some((5, None)));
        check("five", Some((5, None)));
        check("Three stars, ok", Some((3, Some("ok"))));
        check("zwei", Some((2, None)));
    }

    #[test]
    fn what_follows_the_score_is_the_comment() {
        check("4 schnelle Hilfe", Some((4, Some("schnelle Hilfe"))));
        check("⭐⭐⭐⭐⭐ super", Some((5, Some("super"))));
        check("5 - very helpful!", Some((5, Some("very helpful!"))));
        check("2, zu lange gewartet", Some((2, Some("zu lange gewartet"))));
        check("5 Sterne, danke", Some((5, Some("danke"))));
        check("5 of course", Some((5, Some("of course"))));
        check("5 ⭐ top", Some((5, Some("top"))));
    }

    #[test]
    fn scores_outside_one_to_five_are_no_rating() {
        for text in [
            "0",
            "6",
            "10",
            "12345",
            "6/5",
            "0 von 5",
            "⭐⭐⭐⭐⭐⭐",
            "☆☆☆",
            "9 stars",
        ] {
            check(text, None);
        }
    }

    #[test]
    fn nonsense_decimals_and_other_scales_are_no_rating() {
        for text in [
            "", "   ", "banana", "super", "Danke, 5", "4,5", "4.5", "8/10", "3 von 10", "5x",
            "4th", "fünfzig", "/5",
        ] {
            check(text, None);
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_only_returns_scores_of_one_to_five(text in any::<String>()) {
            if let Some(rating) = parse(&text, &number_words()) {
                prop_assert!((1..=5).contains(&rating.score));
            }
        }

        #[test]
        fn never_panics_on_stars_digits_and_words_mixed(
            text in "[0-9 /⭐★☆\u{FE0F}\u{20E3}a-zA-Zäöüß.,!-]{0,24}"
        ) {
            if let Some(rating) = parse(&text, &number_words()) {
                prop_assert!((1..=5).contains(&rating.score));
            }
        }

        #[test]
        fn a_score_and_a_comma_keep_whatever_comment_follows(
            score in 1u8..=5,
            comment in "[a-zA-Zäöü][a-zA-Zäöü ]{0,20}",
        ) {
            let parsed = parse(&format!("{score}, {comment}"), &number_words());
            prop_assert_eq!(parsed, Some(ParsedRating {
                score,
                comment: Some(comment.trim_end().to_owned()),
            }));
        }
    }
}
