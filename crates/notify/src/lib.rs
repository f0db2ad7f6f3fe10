//! Notifications: the brand writes first ("your repaired MateBook is ready for pickup").
//!
//! - [`Notifier::notify`] turns a request (a template, its parameters, a customer by
//!   contact or ticket, an idempotency key) into a `NotificationSent` on the customer's
//!   current ticket, in the way the channel allows now ([`helpline_domain::notify::reach`]),
//!   or a refusal with the reason. Egress sends it like any message.
//! - [`Notifier::record_consent`] records an opt-in or opt-out the brand collected, in
//!   the customer's own ledger, the one their "STOP" and the providers' signals write to.
//! - [`grpc_service`]: the `helpline.v1.Notifications` API, supervisors and admins only.
//!
//! **Invariants.**
//! - Nothing is written for a customer who opted out, and nothing reaches a provider
//!   from here: sending is egress's, from the event.
//! - A refusal writes nothing and is answered with its reason; never a silent drop.
//! - One idempotency key, one notification: the message and command ids derive from it.
//! - Depends on the domain, the event store, the region and the flows; on no other
//!   service.

#![forbid(unsafe_code)]

mod error;
mod grpc;
mod notifier;

pub use error::NotifyError;
pub use grpc::grpc_service;
pub use notifier::{Notified, Notifier, NotifyRequest, Recipient, Refused};
