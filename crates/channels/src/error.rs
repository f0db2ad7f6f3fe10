//! The two error types: a rejected webhook and a refused configuration.

use helpline_domain::Channel;

/// Why a webhook request was rejected; each variant maps to one HTTP status.
///
/// Messages name what is wrong (a field path, a line and column) but never carry a secret,
/// a signature or personal data: they are safe to log and to return to the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The signature or secret is missing or wrong → `401`.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The body is not valid JSON of the channel's shape → `400`.
    #[error("malformed body: {0}")]
    Malformed(String),
    /// The request declares a content type the channel does not accept → `415`.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The body is larger than the limit → `413`.
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
}

impl WebhookError {
    /// The HTTP status code to answer with; the one place this mapping is decided.
    pub fn status_code(&self) -> u16 {
        match self {
            WebhookError::Unauthorized(_) => 401,
            WebhookError::Malformed(_) => 400,
            WebhookError::UnsupportedMediaType(_) => 415,
            WebhookError::TooLarge { .. } => 413,
        }
    }

    pub(crate) fn unauthorized(reason: impl Into<String>) -> Self {
        WebhookError::Unauthorized(reason.into())
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        WebhookError::Malformed(reason.into())
    }
}

/// A channel configuration refused when an adapter is built, before it serves a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An empty secret would make every signature forgeable.
    #[error("{channel}: `{field}` must not be empty", channel = .channel.as_str())]
    EmptySecret {
        channel: Channel,
        field: &'static str,
    },
    /// Telegram accepts only 1–256 characters of `A-Z a-z 0-9 _ -` in `setWebhook`.
    #[error("telegram: `secret_token` must be 1 to 256 characters of A-Z, a-z, 0-9, `_` and `-`")]
    InvalidTelegramSecret,
    /// A window of no seconds would refuse every web chat event.
    #[error("web: `sent_at_tolerance_secs` must be at least 1")]
    NoSentAtTolerance,
    /// A sending setting the provider would refuse (a URL that is not one, a Viber
    /// sender name over 28 characters).
    #[error("{channel}: `{field}` {reason}", channel = .channel.as_str())]
    InvalidSetting {
        channel: Channel,
        field: &'static str,
        reason: &'static str,
    },
}

impl ConfigError {
    pub(crate) fn invalid(channel: Channel, field: &'static str, reason: &'static str) -> Self {
        Self::InvalidSetting {
            channel,
            field,
            reason,
        }
    }
}
