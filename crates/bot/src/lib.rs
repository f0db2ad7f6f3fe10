//! The first-contact bot: the first to answer a customer, in the customer's language.
//!
//! It takes the intake (product, serial number, problem, and a place when routing would
//! refer the customer to a store), hands the ticket over for routing, tells a queued
//! customer what to expect, tells a referred customer where to go, asks for a rating
//! when a case is done, and ends conversations the customer left silent.
//!
//! Modules: [`flows`] (per language, as data: the words the bot understands and all it
//! says; the crate `helpline-flows`, re-exported), [`understand`] (reading one message; pure), [`conversation`] (what to answer
//! to a trigger; pure), [`service`] (the durable consumers `bot` and `bot-timers`, and
//! the timer stream `HELPLINE_<REGION>_TIMERS`).
//!
//! **Owns:** the intake conversation (`BotMessageSent`, `DetailsCaptured`,
//! `LanguageDetected`, `HandoffRequested`), the rating request (`RatingRequested`), the
//! silence timeout (`TicketAbandoned`, `TicketClosed` without a rating), and the timer
//! stream.
//!
//! **Invariants.** The bot never writes while an agent holds the ticket. Every append is
//! a reaction to one cause (an event or a due timer) through `EventStore::react`, so a
//! redelivery or a restart never sends a message twice, and one reaction's commands are
//! stored together. It never answers the customer's rating: the feedback service owns
//! that step. It never routes or assigns; it only dry-runs the routing rules to know
//! what to ask. Texts, words and categories come from flows, never from code.

#![forbid(unsafe_code)]

pub mod conversation;
pub mod service;
pub mod understand;

pub use conversation::{Trigger, respond};
pub use flows::{Flow, FlowError, Flows};
/// The flows live in their own crate, below every service that speaks to customers.
pub use helpline_flows as flows;
pub use service::{BotError, run};

#[cfg(test)]
pub(crate) mod tests {
    use helpline_region::RegionConfig;

    /// The German deployment's region, as shipped.
    pub(crate) fn germany() -> RegionConfig {
        let text = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
        RegionConfig::from_region_file(text).unwrap_or_else(|e| panic!("{e}"))
    }
}
