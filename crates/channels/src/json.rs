//! Reading JSON bodies safely: UTF-8 and nesting checked before serde_json sees them, and
//! serde_json's errors rewritten so they never echo a value from the body.

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};
use serde_json::error::Category;

use crate::adapter::check_body_size;
use crate::error::WebhookError;

/// Nesting at which serde_json stops (its recursion limit); the same bound is enforced
/// before parsing, because serde_json does not count the levels of fields it skips.
const MAX_DEPTH: usize = 128;

/// Size, UTF-8 and depth checks, then serde_json into `T`.
pub(crate) fn from_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, WebhookError> {
    check_body_size(body)?;
    // serde_json does not validate UTF-8 inside strings it skips; the whole body must be.
    let text = std::str::from_utf8(body).map_err(|error| {
        WebhookError::malformed(format!(
            "body is not valid UTF-8 after byte {}",
            error.valid_up_to()
        ))
    })?;
    check_depth(text)?;
    serde_json::from_str(text).map_err(malformed)
}

/// A part of a body kept as its JSON text, read into its type only once the parts before
/// it say which (a whole Meta `entry` once `object` names the channel, a `value` by its
/// `field`): one copy of the text, no tree of `serde_json::Value`s built and read again.
pub(crate) type Raw = Box<serde_json::value::RawValue>;

/// A [`Raw`] part (already checked as part of the body) into `T`.
pub(crate) fn from_raw<T: DeserializeOwned>(
    raw: &serde_json::value::RawValue,
) -> Result<T, WebhookError> {
    serde_json::from_str(raw.get()).map_err(malformed)
}

/// A body [`from_body`] has already checked (size, UTF-8, depth), read again into `T`.
pub(crate) fn from_checked<T: DeserializeOwned>(body: &[u8]) -> Result<T, WebhookError> {
    serde_json::from_slice(body).map_err(malformed)
}

/// Rejects nesting of [`MAX_DEPTH`] levels or more, in one pass and constant stack.
/// Only the structure is looked at; anything else wrong is left to serde_json.
fn check_depth(text: &str) -> Result<(), WebhookError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth >= MAX_DEPTH {
                    return Err(WebhookError::malformed(format!(
                        "JSON nested {MAX_DEPTH} levels or deeper"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A serde_json error as a `Malformed` that says what and where, but not which value:
/// syntax errors are fixed texts; data errors such as `invalid type: string "…"` would
/// quote the body, so only the expectation (from our own types) is kept.
fn malformed(error: serde_json::Error) -> WebhookError {
    let position = if error.line() > 0 {
        format!(" at line {} column {}", error.line(), error.column())
    } else {
        String::new()
    };
    let full = error.to_string();
    let message = full.strip_suffix(&position).unwrap_or(&full);
    let safe = match error.classify() {
        Category::Syntax | Category::Eof => message.to_owned(),
        Category::Data => describe_data_error(message),
        Category::Io => "could not read the body".to_owned(),
    };
    WebhookError::malformed(format!("{safe}{position}"))
}

fn describe_data_error(message: &str) -> String {
    // Our own field and type names follow the last ", expected "; what precedes it may
    // quote the body.
    let expected = message
        .rfind(", expected ")
        .map(|at| &message[at..])
        .unwrap_or("");
    if message.starts_with("missing field `") || message.starts_with("duplicate field `") {
        message.to_owned()
    } else if message.starts_with("unknown field `") {
        format!("unknown field{expected}")
    } else if message.starts_with("unknown variant `") {
        format!("unknown variant{expected}")
    } else {
        format!("wrong type or value{expected}")
    }
}

/// The field, or `Malformed("<what> is missing")`.
pub(crate) fn required<T>(value: Option<T>, what: &str) -> Result<T, WebhookError> {
    value.ok_or_else(|| WebhookError::malformed(format!("{what} is missing")))
}

/// An id that must not be empty: an empty dedupe key would merge unrelated messages.
pub(crate) fn non_empty<'a>(value: &'a str, what: &str) -> Result<&'a str, WebhookError> {
    if value.is_empty() {
        Err(WebhookError::malformed(format!("{what} is empty")))
    } else {
        Ok(value)
    }
}

/// A number a provider sends for something helpline only records (a time), read from
/// whatever form it comes in: an integer, a float (truncated toward zero), or a string of
/// either. Any other shape, or a value out of range, reads as absent: the field is not
/// worth refusing a customer's words over, and a provider that changes its type (Meta's
/// float timestamps) must not have its webhooks refused and, in the end, disabled.
pub(crate) fn lenient_integer<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    let number = match &value {
        serde_json::Value::Number(number) => number
            .as_i64()
            .or_else(|| number.as_f64().and_then(float_to_integer)),
        serde_json::Value::String(text) => {
            let text = text.trim();
            text.parse::<i64>()
                .ok()
                .or_else(|| text.parse::<f64>().ok().and_then(float_to_integer))
        }
        _ => None,
    };
    Ok(number)
}

fn float_to_integer(value: f64) -> Option<i64> {
    // i64::MAX as f64 rounds up to 2^63, which is out of range: compare below it.
    let in_range = value.is_finite() && value.abs() < 9.0e18;
    #[allow(clippy::cast_possible_truncation)]
    in_range.then(|| value.trunc() as i64)
}

/// `at` in Unix seconds, negative before 1970, saturating at the ends of `i64`.
pub(crate) fn unix_seconds(at: std::time::SystemTime) -> i64 {
    match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs())
            .map(|secs| -secs)
            .unwrap_or(i64::MIN),
    }
}

/// Unix milliseconds to Unix seconds, rounding down.
pub(crate) fn millis_to_seconds(millis: i64) -> i64 {
    millis.div_euclid(1000)
}

/// A latitude and longitude in degrees, finite and in range.
pub(crate) fn coordinates(
    latitude: f64,
    longitude: f64,
    what: &str,
) -> Result<(f64, f64), WebhookError> {
    let valid = (-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude);
    if valid {
        Ok((latitude, longitude))
    } else {
        Err(WebhookError::malformed(format!("{what} is out of range")))
    }
}

/// A provider's event or message type for an `Ignored` reason: the name if it looks like
/// one (short, `A-Z a-z 0-9 _ . -`), else `unknown`, so a reason never carries content.
pub(crate) fn type_label(raw: &str) -> &str {
    let looks_like_a_name = !raw.is_empty()
        && raw.len() <= 40
        && raw
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'));
    if looks_like_a_name { raw } else { "unknown" }
}

/// A 64-bit integer id (signed or unsigned) as its decimal string. Rejects floats, so an
/// id beyond 2^64 (which serde_json reads as a float) is malformed, not rounded.
pub(crate) fn integer_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct Visitor;

    impl de::Visitor<'_> for Visitor {
        type Value = String;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a 64-bit integer id")
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<String, E> {
            Ok(value.to_string())
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<String, E> {
            Ok(value.to_string())
        }
    }

    deserializer.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[track_caller]
    fn check_depth_of(nesting: usize, ok: bool) {
        let text = format!("{}{}", "[".repeat(nesting), "]".repeat(nesting));
        assert_eq!(check_depth(&text).is_ok(), ok, "nesting {nesting}");
        // Same answer as serde_json itself on a value it does not skip.
        assert_eq!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), ok);
    }

    #[test]
    fn depth_limit_matches_serde_json() {
        check_depth_of(127, true);
        check_depth_of(128, false);
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!("{{\"a\":\"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert!(check_depth(&text).is_ok());
    }

    #[test]
    fn data_errors_do_not_quote_the_body() {
        let error = serde_json::from_str::<i64>("\"+4915112345678\"").unwrap_err();
        let WebhookError::Malformed(message) = malformed(error) else {
            panic!("not malformed")
        };
        assert_eq!(
            message,
            "wrong type or value, expected i64 at line 1 column 16"
        );
    }

    #[test]
    fn a_recorded_number_is_read_from_any_form_it_comes_in() {
        #[derive(serde::Deserialize)]
        struct Sent {
            #[serde(default, deserialize_with = "lenient_integer")]
            at: Option<i64>,
        }
        let read = |body: &str| serde_json::from_str::<Sent>(body).unwrap().at;
        assert_eq!(read(r#"{"at":"1764082800"}"#), Some(1_764_082_800));
        assert_eq!(read(r#"{"at":1764082800}"#), Some(1_764_082_800));
        assert_eq!(read(r#"{"at":1764082800.731}"#), Some(1_764_082_800));
        assert_eq!(read(r#"{"at":"1764082800.731"}"#), Some(1_764_082_800));
        assert_eq!(read(r#"{"at":1764082800731}"#), Some(1_764_082_800_731));
        for absent in [
            "{}",
            r#"{"at":null}"#,
            r#"{"at":"soon"}"#,
            r#"{"at":""}"#,
            r#"{"at":[1]}"#,
            r#"{"at":{"s":1}}"#,
            r#"{"at":true}"#,
            r#"{"at":1e300}"#,
            r#"{"at":"NaN"}"#,
        ] {
            assert_eq!(read(absent), None, "{absent}");
        }
    }
}
