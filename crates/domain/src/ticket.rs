//! The ticket's state, its phases, and `evolve`, which folds one event into the state.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::{Customer, Details, Event, MessageBody};
use crate::ids::{AgentId, MessageId, QueueId, StoreId, TicketId};
use crate::personal::Personal;

/// Where a ticket stands.
///
/// ```text
/// Open -> Routing -> Queued -> Assigned -> Resolved -> AwaitingRating -> Closed
///                \-> ReferredToStore -> AwaitingRating -> Closed
/// Open | Routing | Queued | Assigned -> Abandoned
/// Assigned -> Queued (released, agent offline, or not accepted in time)
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// No event yet: the ticket does not exist.
    #[default]
    New,
    /// The bot is talking to the customer.
    Open,
    /// Handed over by the bot, waiting for routing.
    Routing,
    Queued,
    Assigned,
    ReferredToStore,
    Resolved,
    AwaitingRating,
    Closed,
    Abandoned,
}

impl Ticket {
    /// How often the bot sent `prompt`.
    pub fn prompted(&self, prompt: &str) -> u32 {
        self.prompts.get(prompt).copied().unwrap_or(0)
    }
}

impl Phase {
    /// Closed and Abandoned tickets take no more conversation.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Closed | Phase::Abandoned)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Who speaks for the brand in the conversation. The bot never writes while an agent
/// holds it; control passes back explicitly (release, hand-back, resolution).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Holder {
    #[default]
    Bot,
    Agent,
}

/// The phase as named in error messages.
pub type PhaseName = Phase;

/// What became of an attachment a customer sent, fetched after its message was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttachmentFetch {
    /// Named by the message; not fetched yet.
    Awaited,
    /// Fetched and stored in the media bucket.
    Stored,
    /// Given up on; the agent is told it is missing.
    NotFetched,
}

/// How the customer came in: the intent and group of the link they followed (Apple's
/// "Message us"), either may be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPoint {
    pub intent: String,
    pub group: String,
}

/// A customer's rating of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    pub score: u8,
    pub comment: Option<Personal<String>>,
}

/// The state of one ticket, folded from its events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: Option<TicketId>,
    pub phase: Phase,
    /// Absent from snapshots written before it was recorded; those tickets predate
    /// agents, hence the bot.
    #[serde(default)]
    pub holder: Holder,
    pub customer: Option<Customer>,
    pub language: String,
    pub details: Option<Details>,
    /// The queue the ticket waits in or was taken from; kept after assignment so a
    /// released ticket goes back to the same queue.
    pub queue: Option<QueueId>,
    pub agent: Option<AgentId>,
    pub accepted: bool,
    pub store: Option<StoreId>,
    /// How often the bot sent each prompt (`greeting`, `ask_serial`, `serial_invalid`,
    /// `rating`, …): what the bot has asked, rebuilt from the log after any restart.
    #[serde(default)]
    pub prompts: BTreeMap<String, u32>,
    /// The prompt of the bot's latest message: what a bare answer replies to.
    #[serde(default)]
    pub last_prompt: String,
    pub resolved_by: Option<AgentId>,
    pub rating: Option<Rating>,
    pub customer_messages: u32,
    pub outbound_messages: u32,
    pub deliveries: u32,
    pub delivery_failures: u32,
    /// Read receipts of outbound messages. Absent from snapshots written before reads
    /// were counted, hence the default.
    #[serde(default)]
    pub reads: u32,
    /// The customer's attachments fetched after their messages, by message, and what
    /// became of each. Messages stored before that carried their object already and are
    /// not listed; absent from snapshots written before, hence the default.
    #[serde(default)]
    pub attachments: BTreeMap<MessageId, AttachmentFetch>,
    /// Bytes of the attachments stored for the ticket, against its quota.
    #[serde(default)]
    pub attachment_bytes: u64,
    /// How the customer came in, where the channel said. Absent from snapshots written
    /// before it was recorded, hence the default.
    #[serde(default)]
    pub entry_point: Option<EntryPoint>,
    /// The customer closed the conversation on their side and has not written since:
    /// nothing may be sent to them. Absent from older snapshots, hence the default.
    #[serde(default)]
    pub customer_closed: bool,
    /// The customer messages received, by helpline's id of each (derived from the
    /// provider's): a provider's redelivery, however late, is recognised and taken once.
    /// Absent from snapshots written before, hence the default; the stream's duplicate
    /// window covers those tickets' recent messages.
    #[serde(default)]
    pub received: BTreeSet<MessageId>,
    /// The customer messages received while the ticket awaited a rating: the only ones
    /// that can answer the rating request, however late a service reads them.
    #[serde(default)]
    pub rating_answers: BTreeSet<MessageId>,
    /// The SLA alarms recorded: clock, level and the run's start (ms), each once.
    #[serde(default)]
    pub sla_alarms: BTreeSet<(crate::sla::SlaClock, crate::sla::SlaLevel, u64)>,
    /// The outbound messages whose outcome is recorded: the provider's id of each one
    /// delivered (personal, erased with the customer), none for one that failed for good.
    /// Egress sends a message only while it is not listed here, so a redelivered send
    /// goes out once. Absent from snapshots written before, hence the default (and a new
    /// snapshot schema).
    #[serde(default)]
    pub outcomes: BTreeMap<MessageId, Option<Personal<String>>>,
    /// The notifications sent on the ticket, by message id (derived from the request's
    /// idempotency key): a repeated request is recognised and sends nothing. Absent from
    /// older snapshots, hence the default.
    #[serde(default)]
    pub notifications: BTreeSet<MessageId>,
    /// Apple's notice about notifications went out in this conversation.
    #[serde(default)]
    pub notice_sent: bool,
    pub erased: bool,
    /// How many events were folded into this state.
    pub events: u64,
}

/// Folds one event into the state. Never fails: the log is the truth, so an event is
/// applied even where `decide` would not have produced it (an old or foreign writer).
pub fn evolve(mut ticket: Ticket, event: &Event) -> Ticket {
    ticket.apply(event);
    ticket
}

impl Ticket {
    /// Folds one event into the state in place, as [`evolve`] does: for a fold that keeps
    /// many tickets where they are (a projection), to which moving a ticket of some 700
    /// bytes out and back per event was a measurable share of a rebuild.
    pub fn apply(&mut self, event: &Event) {
        let ticket = self;
        ticket.events += 1;
        match event {
            Event::TicketOpened {
                ticket: id,
                customer,
                language,
            } => {
                ticket.id = Some(*id);
                ticket.customer = Some(customer.clone());
                ticket.language = language.clone();
                ticket.phase = Phase::Open;
                ticket.holder = Holder::Bot;
            }
            Event::CustomerMessageReceived { message, body, .. } => {
                ticket.customer_messages += 1;
                // Writing again opens the conversation they had closed.
                ticket.customer_closed = false;
                ticket.received.insert(*message);
                if ticket.phase == Phase::AwaitingRating {
                    ticket.rating_answers.insert(*message);
                }
                if let MessageBody::Media(media) = body
                    && media.awaits_fetch()
                {
                    ticket
                        .attachments
                        .insert(*message, AttachmentFetch::Awaited);
                }
            }
            Event::BotMessageSent { prompt, .. } => {
                ticket.outbound_messages += 1;
                *ticket.prompts.entry(prompt.clone()).or_default() += 1;
                ticket.last_prompt = prompt.clone();
            }
            Event::AgentMessageSent { .. } => ticket.outbound_messages += 1,
            Event::DetailsCaptured(details) => ticket.details = Some(details.clone()),
            Event::LanguageDetected { language } => ticket.language = language.clone(),
            Event::ConversationClosedByCustomer => ticket.customer_closed = true,
            Event::EntryPointNoted { intent, group } => {
                ticket.entry_point = Some(EntryPoint {
                    intent: intent.clone(),
                    group: group.clone(),
                });
            }
            Event::HandoffRequested { .. } => ticket.phase = Phase::Routing,
            // The destination takes effect with the TicketQueued or ReferredToStore that
            // follows in the same command.
            Event::TicketRouted { .. } => {}
            Event::ReferredToStore(referral) => {
                ticket.store = Some(referral.store.clone());
                ticket.phase = Phase::ReferredToStore;
            }
            Event::TicketQueued { queue } => {
                ticket.queue = Some(queue.clone());
                ticket.agent = None;
                ticket.accepted = false;
                ticket.phase = Phase::Queued;
                ticket.holder = Holder::Bot;
            }
            Event::AgentAssigned { agent } => {
                ticket.agent = Some(agent.clone());
                ticket.accepted = false;
                ticket.phase = Phase::Assigned;
                ticket.holder = Holder::Agent;
            }
            Event::AgentAccepted { .. } => ticket.accepted = true,
            Event::TicketReleased { .. } => {
                ticket.agent = None;
                ticket.accepted = false;
                ticket.phase = Phase::Queued;
                ticket.holder = Holder::Bot;
            }
            Event::TicketResolved { agent, .. } => {
                ticket.resolved_by = Some(agent.clone());
                ticket.phase = Phase::Resolved;
                ticket.holder = Holder::Bot;
            }
            // The bot takes up the intake again, and a new handoff is routed afresh.
            Event::ConversationHandedBack { .. } => {
                ticket.queue = None;
                ticket.agent = None;
                ticket.accepted = false;
                ticket.phase = Phase::Open;
                ticket.holder = Holder::Bot;
            }
            // For the agents' eyes only; nothing about the conversation changes.
            Event::AgentNoteAdded { .. } | Event::CannedReplyUsed { .. } => {}
            Event::SlaAlarm {
                clock,
                level,
                run_since_ms,
                ..
            } => {
                ticket.sla_alarms.insert((*clock, *level, *run_since_ms));
            }
            Event::RatingRequested { .. } => ticket.phase = Phase::AwaitingRating,
            Event::NotificationSent {
                message, template, ..
            } => {
                ticket.outbound_messages += 1;
                ticket.notifications.insert(*message);
                if template == crate::notify::APPLE_NOTICE {
                    ticket.notice_sent = true;
                }
            }
            Event::RatingReceived { score, comment } => {
                ticket.rating = Some(Rating {
                    score: *score,
                    comment: comment.clone(),
                })
            }
            Event::TicketClosed { .. } => ticket.phase = Phase::Closed,
            Event::TicketAbandoned => ticket.phase = Phase::Abandoned,
            Event::MessageDelivered {
                message,
                provider_message_id,
            } => {
                ticket.deliveries += 1;
                ticket
                    .outcomes
                    .insert(*message, Some(provider_message_id.clone()));
            }
            Event::MessageDeliveryFailed {
                message, permanent, ..
            } => {
                ticket.delivery_failures += 1;
                if *permanent {
                    ticket.outcomes.entry(*message).or_insert(None);
                }
            }
            Event::MessageRead { .. } => ticket.reads += 1,
            Event::AttachmentStored {
                message,
                size_bytes,
                ..
            } => {
                ticket.attachments.insert(*message, AttachmentFetch::Stored);
                ticket.attachment_bytes = ticket.attachment_bytes.saturating_add(*size_bytes);
            }
            Event::AttachmentNotFetched { message, .. } => {
                ticket
                    .attachments
                    .insert(*message, AttachmentFetch::NotFetched);
            }
            Event::CustomerErased => {
                ticket.erased = true;
                if let Some(customer) = &mut ticket.customer {
                    customer.contact = Personal::erased();
                    customer.display_name =
                        customer.display_name.as_ref().map(|_| Personal::erased());
                }
                if let Some(details) = &mut ticket.details {
                    details.serial_number = Personal::erased();
                    details.problem = Personal::erased();
                    details.location = Personal::erased();
                }
                if let Some(rating) = &mut ticket.rating {
                    rating.comment = rating.comment.as_ref().map(|_| Personal::erased());
                }
                for provider_message_id in ticket.outcomes.values_mut().flatten() {
                    *provider_message_id = Personal::erased();
                }
            }
        }
    }
}

/// Folds a sequence of events, starting from `ticket`.
pub fn fold<'a>(ticket: Ticket, events: impl IntoIterator<Item = &'a Event>) -> Ticket {
    events.into_iter().fold(ticket, evolve)
}
