//! Privacy: the customer's rights over their personal data, and its retention.
//!
//! - [`Privacy::erase`] crypto-shreds a customer: their data key is purged from the key
//!   bucket (with its history), every ticket of theirs gets `CustomerErased` (projections
//!   scrub on it), and their snapshots and open-ticket entries go. From then on every
//!   personal field sealed under that key reads as `[erased]`, in every process.
//! - [`Privacy::export`] gathers everything helpline holds about a customer as JSON.
//! - [`Privacy::retention`] erases customers whose tickets all ended longer ago than the
//!   region's period ([`retention::plan`]).
//! - [`grpc_service`] is the admin-only `helpline.v1.Privacy` API over them.
//!
//! A customer is named by their pseudonym ([`helpline_eventstore::CustomerId`]), derived
//! from channel and contact with the region's master key. A contact in a request is first
//! brought to the form intake stores ([`helpline_domain::contact::normalize`]), so
//! `+49 151 …` and `0049151…` name the customer WhatsApp knows as `49151…`. Their tickets
//! are found from event headers ([`scan`]), never by reading personal data; a customer
//! with neither a ticket nor a data key is not found, never erased "successfully".
//!
//! **Owns** nothing: it acts on the event store's log and buckets.
//!
//! **Invariants.** The key is purged before anything else, so an interrupted erasure
//! already hides the data and a second call completes it. Every erasure and retention run
//! is logged by pseudonym (never by contact) and counted in metrics. Nothing here writes a
//! personal value.

#![forbid(unsafe_code)]

mod error;
mod grpc;
pub mod retention;
mod rights;
pub mod scan;

pub use error::PrivacyError;
pub use grpc::grpc_service;
pub use retention::RetentionRun;
pub use rights::{Erasure, Privacy, Reason};
