//! Feedback: reads customers' ratings and reports customer satisfaction (CSAT).
//!
//! - [`run`] is the durable consumer `feedback`: while a ticket awaits its rating, a
//!   customer's message that reads as a score ([`rating::parse`]) becomes thanks, then
//!   `RatingReceived` and `TicketClosed`; one that does not gets the rating request once
//!   more; a second one closes the ticket without a rating.
//! - [`csat`] folds ticket events into what each ticket contributes to CSAT, and reports
//!   ratings, average, share of 4–5 and response rate by region, queue, agent, channel
//!   or period.
//! - [`Csat`] keeps that projection live: replayed from the log at every start, then
//!   following it.
//! - [`grpc_service`] is the read-only `helpline.v1.Feedback` API over it.
//! - [`levels`] folds each queued ticket's SLA clocks (first response, next response,
//!   resolution, in the queue's working time) and reports tickets, mean times, targets
//!   met and breached by the same groups; [`Levels`] keeps it live.
//! - [`reports_service`] is the read-only `helpline.v1.Reports` API over both.
//! - [`watch_service_levels`] records `SlaWarning` and `SlaBreached` when a running clock
//!   reaches them, from the same projection: the log is its timers.
//!
//! **Owns** nothing but its consumer's position: the projection lives in memory and is
//! rebuilt from the log.
//!
//! **Invariants.** Every append of the consumer goes through
//! [`helpline_eventstore::EventStore::react`], so an answer is handled exactly once however
//! often it is delivered; the SLA watch appends an alarm only through `execute` with a
//! command id derived from the alarm, and the ticket records each alarm once. Feedback speaks
//! only to tickets awaiting a rating and never requests a rating itself (the bot does).
//! A score is always 1 to 5; anything uncertain reads as no rating. The API never
//! appends, and a report never shows the projection ahead of the log.

#![forbid(unsafe_code)]

mod consumer;
pub mod csat;
mod error;
mod grpc;
pub mod levels;
mod projection;
pub mod rating;
mod reports;
pub mod watch;

pub use consumer::{CLOSED_UNRATED, CONSUMER, RATING_REPROMPT, RATING_THANKS, run};
pub use error::FeedbackError;
pub use grpc::grpc_service;
pub use projection::{Csat, Levels, Projections, levels_for_region};
pub use reports::reports_service;
pub use watch::{RecordedAlarm, recorded_alarms, watch_service_levels};
