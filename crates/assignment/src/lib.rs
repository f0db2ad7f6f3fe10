//! Assignment: which agents are signed in, what they can take and how busy they are;
//! queued tickets offered to the best agent; and the agents' `helpline.v1.AgentDesk` API.
//!
//! - [`ledger`]: the agent events on `helpline.<region>.agent.<id>` (presence, capacity
//!   claimed and freed), appended with the subject's expected last sequence.
//! - [`view`]: the projection both the assigner and the API read: tickets waiting or held,
//!   agents' presence and claims, folded from the whole stream in order.
//! - [`plan`]: the pure decisions over a view at a moment: which ticket to offer to whom,
//!   which offer ran out, whose tickets go back to the queue, which claim is stale.
//! - [`Assignment::run`]: follows the stream into the view and carries out the plan;
//!   [`grpc_service`]: the AgentDesk API; [`auth`]: bearer tokens (JWT, HS256).
//!
//! **Owns** nothing but the agent subjects; the directory is configuration and every
//! ticket fact is the ticket's log.
//!
//! **Invariants.** A ticket is offered to an agent only after a capacity claim on the
//! agent's subject was appended at the sequence the decision saw, and the offer itself is
//! an append at the ticket's loaded version: two assigners (replicas) can neither give one
//! ticket to two agents nor fill one agent past `max_tickets`. Every append to a ticket
//! made in reaction to the log goes through `EventStore::react`, so it happens once per
//! cause. Deadlines (offer timeout, offline grace) are read from event times in the log,
//! so they survive restarts without timers of their own.

#![forbid(unsafe_code)]

mod error;
mod grpc;
pub mod ledger;
pub mod plan;
mod service;
pub mod view;

pub use error::AssignmentError;
pub use grpc::grpc_service;
pub use helpline_auth as auth;
pub use helpline_auth::{AuthKey, Claims};
pub use service::{Assignment, AssignmentSettings, SERVICE};
