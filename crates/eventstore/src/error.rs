use std::fmt::Display;

/// What can go wrong in the event store. `Conflict` is an answer (reload and decide
/// again); `Unavailable` is worth a retry; the others need a person.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "ticket changed concurrently: expected version {expected}, found {actual}; reload and decide again"
    )]
    Conflict { expected: u64, actual: u64 },

    #[error("NATS is unavailable: {0}")]
    Unavailable(String),

    #[error("the server refused the append: {0}")]
    Rejected(String),

    #[error("event {sequence} on {subject} cannot be read: {reason}")]
    Corrupt {
        subject: String,
        sequence: u64,
        reason: String,
    },

    #[error("invalid region {0:?}: use 2 to 16 lower-case letters or digits, e.g. \"de\"")]
    InvalidRegion(String),

    #[error("could not create or update {what}: {reason}")]
    Setup { what: String, reason: String },

    #[error("{what} does not exist ({reason}); run `helpline ensure` first")]
    Missing { what: String, reason: String },

    #[error("customer key unusable: {0}; is the region's master key the one it was made with?")]
    Key(String),
}

impl StoreError {
    pub(crate) fn setup(what: impl Display, reason: impl Display) -> Self {
        Self::Setup {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn missing(what: impl Display, reason: impl Display) -> Self {
        Self::Missing {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn unavailable(reason: impl Display) -> Self {
        Self::Unavailable(reason.to_string())
    }

    /// True when the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
