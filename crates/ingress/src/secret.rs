//! Secrets from the configuration, kept out of logs by construction.

use std::fmt;

use helpline_domain::Channel;
use serde::Deserialize;

use crate::error::ConfigError;

/// A secret (an app secret, a verify token, a bot token).
///
/// `Debug` prints `***`; the value is reached only through [`Secret::expose`]. There is
/// deliberately no `PartialEq`: secrets are compared in constant time by the adapters.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
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
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(secret)), "Some(***)");
    }
}
