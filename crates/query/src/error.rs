use std::fmt::Display;

use tonic::{Code, Status};

/// What can go wrong in the query service: a bad request (an answer to the caller), an
/// unknown ticket, or NATS (logged; worth a retry).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error("no ticket {0}")]
    NotFound(String),

    #[error("NATS is unavailable: {0}")]
    Unavailable(String),

    #[error("{0}")]
    Unauthenticated(String),

    #[error("{0}")]
    PermissionDenied(String),
}

impl QueryError {
    pub(crate) fn unavailable(reason: impl Display) -> Self {
        Self::Unavailable(reason.to_string())
    }
}

/// The one place the query service's errors become gRPC status codes.
impl From<QueryError> for Status {
    fn from(error: QueryError) -> Self {
        let code = match &error {
            QueryError::InvalidArgument { .. } => Code::InvalidArgument,
            QueryError::NotFound(_) => Code::NotFound,
            QueryError::Unavailable(_) => Code::Unavailable,
            QueryError::Unauthenticated(_) => Code::Unauthenticated,
            QueryError::PermissionDenied(_) => Code::PermissionDenied,
        };
        Status::new(code, error.to_string())
    }
}
