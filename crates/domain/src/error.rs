//! Why a command was refused. These are answers to the caller (gRPC `FAILED_PRECONDITION`
//! or `INVALID_ARGUMENT`), never technical failures.

use thiserror::Error;

use crate::ids::{AgentId, MessageId, TicketId};
use crate::ticket::PhaseName;

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("ticket does not exist; cannot {action}")]
    NotOpened { action: &'static str },

    #[error("ticket {ticket} is already open")]
    AlreadyOpened { ticket: TicketId },

    #[error("ticket {ticket} is {phase}; cannot {action}")]
    WrongPhase {
        ticket: TicketId,
        phase: PhaseName,
        action: &'static str,
    },

    #[error("ticket {ticket} is assigned to agent {assigned}, not {agent}; cannot {action}")]
    NotTheAssignedAgent {
        ticket: TicketId,
        agent: AgentId,
        assigned: AgentId,
        action: &'static str,
    },

    #[error("agent {agent} has already accepted ticket {ticket}")]
    AlreadyAccepted { ticket: TicketId, agent: AgentId },

    #[error("agent {agent} has not accepted ticket {ticket} yet; cannot {action}")]
    NotAccepted {
        ticket: TicketId,
        agent: AgentId,
        action: &'static str,
    },

    #[error("agent {agent} holds the conversation of ticket {ticket}; the bot cannot {action}")]
    AgentHolds {
        ticket: TicketId,
        agent: AgentId,
        action: &'static str,
    },

    #[error("a rating is a score from 1 to 5, not {score}")]
    InvalidRating { score: u8 },

    #[error("{field} must not be empty")]
    Empty { field: &'static str },

    #[error(
        "ticket {ticket} has no customer attachment to fetch in message {message}; cannot {action}"
    )]
    NoAttachment {
        ticket: TicketId,
        message: MessageId,
        action: &'static str,
    },

    #[error("the customer of ticket {ticket} closed the conversation; cannot {action}")]
    CustomerClosed {
        ticket: TicketId,
        action: &'static str,
    },

    #[error("the customer of ticket {ticket} was erased; cannot {action}")]
    Erased {
        ticket: TicketId,
        action: &'static str,
    },
}

impl DomainError {
    /// True for a malformed command (`INVALID_ARGUMENT`); false for a command that is well
    /// formed but not allowed now (`FAILED_PRECONDITION`).
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            DomainError::InvalidRating { .. } | DomainError::Empty { .. }
        )
    }
}
