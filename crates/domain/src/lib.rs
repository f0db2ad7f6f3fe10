//! The ticket aggregate: helpline's rules, as plain functions.
//!
//! A ticket is one conversation with one customer about one case. Its rules are two pure,
//! synchronous functions:
//!
//! - [`decide`]`(&Ticket, Command) -> Result<Vec<Event>, DomainError>` says what happens
//!   when a command arrives, or why it may not;
//! - [`evolve`]`(Ticket, &Event) -> Ticket` folds one event into the state.
//!
//! Modules: [`ids`] (identifiers), [`personal`] (the wrapper that keeps personal data out
//! of logs), [`contact`] (a customer's address on a channel in its one stored form),
//! [`event`] (past-tense facts), [`notify`] (consent and the lawful way to write first),
//! [`link`] (one customer's contacts on several channels), [`command`] (imperative requests), [`ticket`]
//! (the state, its phases and `evolve`), [`decide`] (the rules), [`error`].
//!
//! **Invariants.** This crate performs no I/O, reads no clock and draws no random numbers:
//! ids and times arrive inside commands. It knows nothing of protobuf, NATS or tokio; the
//! event store converts between these types and the wire contracts in `proto/`.
//! `evolve` never fails: every event `decide` can produce folds into a valid state, and an
//! event that does not fit the phase is still recorded (the log is the truth).

#![forbid(unsafe_code)]

pub mod command;
pub mod contact;
pub mod decide;
pub mod error;
pub mod event;
pub mod ids;
pub mod link;
pub mod notify;
pub mod personal;
pub mod sla;
pub mod ticket;

pub use command::Command;
pub use contact::InvalidContact;
pub use decide::{decide, decide_all};
pub use error::DomainError;
pub use event::{
    Channel, CloseReason, Customer, Details, Event, HandoffReason, Media, MediaKind, MessageBody,
    QuickReply, ReleaseReason, RouteDestination, StoreReferral, WhatsAppTemplateCall,
};
pub use ids::{AgentId, MessageId, QueueId, StoreId, TicketId};
pub use notify::NotificationKind;
pub use personal::{Erased, Personal, PersonalField};
pub use ticket::{AttachmentFetch, EntryPoint, Holder, Phase, Ticket, evolve, fold};
