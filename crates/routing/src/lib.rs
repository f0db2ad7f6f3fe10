//! Routing: decides where a ticket the bot handed over goes — a queue of agents, or the
//! service store nearest to the customer.
//!
//! - [`run`] is the durable consumer `routing`: on `HandoffRequested` it applies the
//!   region's rules to the ticket's facts and appends `TicketRouted` with `TicketQueued`
//!   or `ReferredToStore`.
//! - [`grpc_service`] is the read-only `helpline.v1.Routing` API: the rules as configured,
//!   and a dry run of a route for a ticket or for facts given by hand.
//! - [`decision`] is the pure part both share: rules, nearest store, fallback.
//!
//! **Owns** nothing but its consumer's position; the region's rules are configuration
//! and the ticket's state is the log's.
//!
//! **Invariants.** Every append goes through [`helpline_eventstore::EventStore::react`],
//! so a handoff is routed exactly once however often it is delivered. A route depends
//! only on the ticket's events, the region's file and the handoff's time, never on the
//! clock at delivery. No ticket is left unrouted: a store rule that finds no store sends
//! it to the default queue under the rule `<rule>/no-store-found`. Routing never assigns
//! agents and never writes to the customer; the API never appends.

#![forbid(unsafe_code)]

mod consumer;
pub mod decision;
mod error;
mod grpc;

pub use consumer::{CONSUMER, run};
pub use error::RoutingError;
pub use grpc::grpc_service;
