//! Why egress cannot start or keep running.

use helpline_domain::Channel;
use helpline_eventstore::StoreError;

use crate::error::ConfigError;

/// A refused configuration or an unusable store; per-message failures are not errors
/// here but `MessageDeliveryFailed` events or consumer retries.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(transparent)]
    Secret(#[from] ConfigError),

    #[error("{channel}: `{field}` {reason}", channel = .channel.as_str())]
    InvalidSetting {
        channel: Channel,
        field: &'static str,
        reason: &'static str,
    },

    #[error("invalid egress configuration: {0}")]
    Config(String),

    #[error("cannot build the HTTP client: {0}")]
    Client(String),

    #[error("cannot create or open the bucket {bucket}: {reason}")]
    Bucket { bucket: String, reason: String },

    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EgressError {
    pub(crate) fn invalid(channel: Channel, field: &'static str, reason: &'static str) -> Self {
        Self::InvalidSetting {
            channel,
            field,
            reason,
        }
    }
}
