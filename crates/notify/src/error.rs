//! Why a notification or consent request failed (a refusal by the channel's rules is no
//! error: it is an answer, [`crate::Notified::Refused`]).

use helpline_domain::{DomainError, TicketId};
use helpline_eventstore::StoreError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The caller's mistake: `INVALID_ARGUMENT`.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("the customer of ticket {0} was erased")]
    Erased(TicketId),
    /// The ticket's rules refused it (the customer closed the conversation meanwhile).
    #[error(transparent)]
    Refused(DomainError),
    #[error("gave up writing to ticket {0}: it kept changing")]
    Contended(TicketId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NotifyError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

impl From<NotifyError> for Status {
    fn from(error: NotifyError) -> Self {
        match &error {
            NotifyError::Invalid { .. } => Status::invalid_argument(error.to_string()),
            NotifyError::NotFound(_) => Status::not_found(error.to_string()),
            NotifyError::Erased(_) | NotifyError::Refused(_) => {
                Status::failed_precondition(error.to_string())
            }
            NotifyError::Contended(_) => Status::aborted(error.to_string()),
            NotifyError::Store(store) if store.is_transient() => {
                Status::unavailable(error.to_string())
            }
            NotifyError::Store(_) => Status::internal(error.to_string()),
        }
    }
}
