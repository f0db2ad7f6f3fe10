//! Secrets from the configuration, kept out of logs by construction.

use std::fmt;

use helpline_domain::Channel;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::error::ConfigError;

/// A secret (an app secret, a verify token, a bot token).
///
/// `Debug` prints `***`; the value is reached only through [`Secret::expose`]. There is
/// deliberately no `PartialEq`: secrets are compared in constant time by the adapters.
///
/// Read only from a string. Anything else is refused with an error that says what it
/// was but not its value: serde's own message would quote it (an all-digit secret written
/// unquoted in a TOML file is a number, "invalid type: integer `123…`"), and the error is
/// printed and logged. (`HELPLINE_*` variables are always text.)
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `any`, not `string`: asked for a string, a deserializer may report a number
        // itself, quoting it, without asking the visitor.
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl SecretVisitor {
    fn refuse<E: de::Error>(found: &str) -> E {
        E::custom(format!(
            "a secret must be a string, found {found} (its value is not shown); quote it \
             in the TOML file (\"…\")"
        ))
    }
}

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret, as a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Secret, E> {
        Ok(Secret::new(value))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Secret, E> {
        Ok(Secret(value))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(Self::refuse("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(Self::refuse("a number"))
    }

    fn visit_char<E: de::Error>(self, _: char) -> Result<Secret, E> {
        Err(Self::refuse("a character"))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(Self::refuse("bytes"))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// Refuses a channel configuration with an empty secret among `secrets`: an empty key
/// would make every signature forgeable.
pub(crate) fn require_secrets(
    channel: Channel,
    secrets: &[(&'static str, &Secret)],
) -> Result<(), ConfigError> {
    match secrets.iter().find(|(_, secret)| secret.is_empty()) {
        Some((field, _)) => Err(ConfigError::EmptySecret { channel, field }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_that_is_not_a_string_is_refused_without_its_value() {
        for (json, found) in [
            ("123456789012345678", "a number"),
            ("-123456789012345678", "a number"),
            ("1234567890.125", "a number"),
            ("true", "a boolean"),
        ] {
            let error = serde_json::from_str::<Secret>(json)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains(found), "{error}");
            for digits in ["12345", "0125", "true"] {
                assert!(!error.contains(digits), "{error}");
            }
        }
        let secret: Secret = serde_json::from_str("\"123456789012345678\"").unwrap_or_default();
        assert_eq!(secret.expose(), "123456789012345678");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(secret)), "Some(***)");
    }
}
