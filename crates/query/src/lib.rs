//! Query: tickets as the event log tells them, for operators and tools.
//!
//! - [`projection`] folds ticket events into every ticket's state (the domain's own
//!   `evolve`), timeline and searchable texts, and lists tickets by filter. Pure.
//! - [`summary`] turns an event into one line for a person, and holds [`Audience`], the
//!   one place that decides who sees personal data.
//! - [`LiveProjection`] keeps the projection live: replayed from the log at every start,
//!   then following it, and telling watchers about each change. [`rebuild`] replays the
//!   log once into a fresh projection, with progress (what `helpline rebuild` runs).
//! - [`grpc_service`] is the read-only `helpline.v1.TicketQuery` API over it.
//!
//! **Owns** nothing: the projection lives in memory and is rebuilt from the log; it reads
//! with ephemeral ordered consumers, so it has no consumer position either.
//!
//! **Invariants.** The API never appends. The projection is a pure fold of the log, so a
//! rebuild and the live projection at the same sequence are equal. An answer never shows
//! the projection ahead of the log, and says how far behind it is. Personal data leaves
//! only through [`Audience::reveal`].

#![forbid(unsafe_code)]

mod error;
mod grpc;
mod live;
pub mod projection;
pub mod summary;

pub use error::QueryError;
pub use grpc::grpc_service;
pub use live::{LiveProjection, Progress, Replayed, rebuild, replay};
pub use projection::{Filter, Projection, TicketView, TimelineEntry};
pub use summary::Audience;
