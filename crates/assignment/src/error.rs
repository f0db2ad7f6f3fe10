use helpline_domain::{DomainError, TicketId};
use helpline_eventstore::StoreError;
use helpline_eventstore::links::LinkStoreError;
use tonic::{Code, Status};

use crate::auth::AuthError;
use crate::ledger::LedgerError;

/// What can go wrong in assignment: answers to an API caller (the first group), refused
/// commands, and the event store (logged; worth a retry when transient).
#[derive(Debug, thiserror::Error)]
pub enum AssignmentError {
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),

    #[error("{0}")]
    PermissionDenied(String),

    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },

    #[error("ticket {0} does not exist")]
    TicketNotFound(TicketId),

    /// Something a request names that is not there (a contact that never wrote).
    #[error("{0}")]
    NotFound(String),

    #[error("{0}")]
    Unavailable(String),

    /// Well formed, but not possible now (an agent offline or at capacity).
    #[error("{0}")]
    Refused(String),

    #[error(transparent)]
    Domain(#[from] DomainError),

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error("could not create or update {what}: {reason}")]
    Setup { what: String, reason: String },
}

impl AssignmentError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<LinkStoreError> for AssignmentError {
    fn from(error: LinkStoreError) -> Self {
        match error {
            LinkStoreError::Refused(e) => Self::invalid("other", e.to_string()),
            LinkStoreError::NoKey(customer) => Self::NotFound(format!(
                "customer {customer} has no data key: nobody writes from that contact, or they were erased"
            )),
            LinkStoreError::Store(e) => Self::Store(e),
        }
    }
}

impl From<LedgerError> for AssignmentError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Conflict(agent) => {
                Self::Unavailable(format!("agent {agent} changed concurrently; try again"))
            }
            LedgerError::Store(e) => Self::Store(e),
        }
    }
}

/// The one place assignment's errors become gRPC status codes.
impl From<AssignmentError> for Status {
    fn from(error: AssignmentError) -> Self {
        let code = match &error {
            AssignmentError::Unauthenticated(_) => Code::Unauthenticated,
            AssignmentError::PermissionDenied(_) => Code::PermissionDenied,
            AssignmentError::InvalidArgument { .. } => Code::InvalidArgument,
            AssignmentError::TicketNotFound(_) | AssignmentError::NotFound(_) => Code::NotFound,
            AssignmentError::Unavailable(_) => Code::Unavailable,
            AssignmentError::Refused(_) => Code::FailedPrecondition,
            AssignmentError::Domain(DomainError::NotTheAssignedAgent { .. }) => {
                Code::PermissionDenied
            }
            AssignmentError::Domain(e) if e.is_invalid_argument() => Code::InvalidArgument,
            AssignmentError::Domain(_) => Code::FailedPrecondition,
            AssignmentError::Store(StoreError::Conflict { .. }) => Code::Aborted,
            AssignmentError::Store(store) if store.is_transient() => Code::Unavailable,
            AssignmentError::Store(_) | AssignmentError::Setup { .. } => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %error, "agent desk failed");
        }
        Status::new(code, error.to_string())
    }
}
