use std::fmt::Display;

use helpline_eventstore::StoreError;
use tonic::{Code, Status};

/// What can go wrong in privacy: a bad request (an answer to the caller), or NATS
/// (logged; worth a retry).
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error("{0}")]
    NotFound(String),

    #[error("{0}")]
    Unauthenticated(String),

    #[error("{0}")]
    PermissionDenied(String),

    #[error("NATS is unavailable: {0}")]
    Unavailable(String),

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("ticket {ticket}: {reason}")]
    Domain { ticket: String, reason: String },
}

impl PrivacyError {
    pub(crate) fn unavailable(reason: impl Display) -> Self {
        Self::Unavailable(reason.to_string())
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

/// The one place privacy's errors become gRPC status codes.
impl From<PrivacyError> for Status {
    fn from(error: PrivacyError) -> Self {
        let code = match &error {
            PrivacyError::InvalidArgument { .. } => Code::InvalidArgument,
            PrivacyError::NotFound(_) => Code::NotFound,
            PrivacyError::Unauthenticated(_) => Code::Unauthenticated,
            PrivacyError::PermissionDenied(_) => Code::PermissionDenied,
            PrivacyError::Unavailable(_) => Code::Unavailable,
            PrivacyError::Store(store) if store.is_transient() => Code::Unavailable,
            PrivacyError::Store(_) | PrivacyError::Domain { .. } => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %error, "privacy api failed");
        }
        Status::new(code, error.to_string())
    }
}
