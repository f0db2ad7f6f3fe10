use helpline_eventstore::StoreError;
use tonic::{Code, Status};

/// What can go wrong in feedback: a bad request to the API (an answer to the caller), or
/// NATS (logged; worth a retry).
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("{0}")]
    Unauthenticated(String),

    #[error("{0}")]
    PermissionDenied(String),
}

/// The one place feedback's errors become gRPC status codes.
impl From<FeedbackError> for Status {
    fn from(error: FeedbackError) -> Self {
        let code = match &error {
            FeedbackError::InvalidArgument { .. } => Code::InvalidArgument,
            FeedbackError::Store(store) if store.is_transient() => Code::Unavailable,
            FeedbackError::Store(_) => Code::Internal,
            FeedbackError::Unauthenticated(_) => Code::Unauthenticated,
            FeedbackError::PermissionDenied(_) => Code::PermissionDenied,
        };
        if code == Code::Internal {
            tracing::error!(error = %error, "feedback api failed");
        }
        Status::new(code, error.to_string())
    }
}
