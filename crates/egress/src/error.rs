//! Why egress cannot start or keep running.

use helpline_eventstore::StoreError;

use helpline_channels::ConfigError;

/// A refused configuration or an unusable store; per-message failures are not errors
/// here but `MessageDeliveryFailed` events or consumer retries.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(transparent)]
    Secret(#[from] ConfigError),

    #[error("invalid egress configuration: {0}")]
    Config(String),

    #[error("cannot build the HTTP client: {0}")]
    Client(String),

    #[error("cannot create or open the bucket {bucket}: {reason}")]
    Bucket { bucket: String, reason: String },

    #[error(transparent)]
    Store(#[from] StoreError),
}
