use helpline_domain::TicketId;
use helpline_eventstore::StoreError;
use tonic::{Code, Status};

/// What can go wrong in routing: a bad request to the API (an answer to the caller), or
/// the event store (logged; worth a retry when transient).
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error("ticket {0} does not exist")]
    TicketNotFound(TicketId),

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("{0}")]
    Unauthenticated(String),

    #[error("{0}")]
    PermissionDenied(String),
}

/// The one place routing's errors become gRPC status codes.
impl From<RoutingError> for Status {
    fn from(error: RoutingError) -> Self {
        let code = match &error {
            RoutingError::InvalidArgument { .. } => Code::InvalidArgument,
            RoutingError::TicketNotFound(_) => Code::NotFound,
            RoutingError::Store(store) if store.is_transient() => Code::Unavailable,
            RoutingError::Store(_) => Code::Internal,
            RoutingError::Unauthenticated(_) => Code::Unauthenticated,
            RoutingError::PermissionDenied(_) => Code::PermissionDenied,
        };
        if code == Code::Internal {
            tracing::error!(error = %error, "routing api failed");
        }
        Status::new(code, error.to_string())
    }
}
