//! The assignment projection: every ticket that is not finished, every agent's presence
//! and claims, folded from the region's stream in stream order. Pure: the service feeds
//! it, the planner and the API read it. It may lag the log; every write made from it is
//! conditional (on the ticket's version or the agent subject's sequence), so a stale view
//! costs a retry, never a wrong assignment.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use helpline_domain::{AgentId, Erased, Event, Phase, ReleaseReason, Ticket, TicketId};
use helpline_eventstore::EnvelopeMeta;

use crate::ledger::{AgentEvent, AgentRecord, Presence};

/// Where an event sits: its id, stream sequence, time and correlation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub event_id: String,
    pub sequence: u64,
    pub at: SystemTime,
    pub correlation_id: String,
}

/// One ticket as assignment sees it.
#[derive(Clone, Debug, Default)]
pub struct TicketEntry {
    pub ticket: Ticket,
    /// The sequence of its last event.
    pub version: u64,
    /// The latest `TicketQueued`.
    pub queued: Option<Mark>,
    /// Its trace context, when it was read live: the offer continues that trace.
    pub queued_trace: opentelemetry::Context,
    /// The latest `AgentAssigned`.
    pub assigned: Option<Mark>,
    /// Agents whose offer of this ticket ran out; the next offer prefers others.
    pub declined: BTreeSet<AgentId>,
    /// The bot's handoff summary, for the agent.
    pub summary: String,
    /// When the customer last wrote (WhatsApp's 24-hour window runs from it).
    pub last_customer_message_at: Option<std::time::SystemTime>,
}

/// A ticket counted against an agent's capacity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The claim's stream sequence: after the ticket's latest `TicketQueued` means it is
    /// this queueing's offer, after its latest `AgentAssigned` a transfer or reassignment
    /// (either possibly still in flight).
    pub sequence: u64,
    pub at: SystemTime,
}

/// One agent's presence and load.
#[derive(Clone, Debug, Default)]
pub struct AgentEntry {
    pub presence: Presence,
    /// The latest presence change.
    pub presence_mark: Option<Mark>,
    pub claims: BTreeMap<TicketId, Claim>,
    /// The sequence of the last event on the agent's subject: what a claim expects.
    pub last_sequence: u64,
    /// Since when the agent has had no new ticket (their last claim, or sign-in).
    pub idle_since: Option<SystemTime>,
}

/// What one applied event changed, for the AgentDesk streams.
#[derive(Clone, Debug)]
pub struct TicketChange {
    pub ticket: TicketId,
    pub sequence: u64,
    /// The agent holding the ticket before and after the event.
    pub agent_before: Option<AgentId>,
    pub agent_after: Option<AgentId>,
    pub event: Event,
}

/// The projection.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// The stream sequence of the last applied message.
    pub applied: u64,
    pub tickets: HashMap<TicketId, TicketEntry>,
    pub agents: BTreeMap<AgentId, AgentEntry>,
}

impl View {
    /// Folds one ticket event; returns who held the ticket before and after.
    pub fn apply_ticket(
        &mut self,
        sequence: u64,
        meta: &EnvelopeMeta,
        event: &Event,
        trace: &opentelemetry::Context,
    ) -> TicketChange {
        self.applied = self.applied.max(sequence);
        let entry = self.tickets.entry(meta.ticket).or_default();
        let agent_before = holder(&entry.ticket);
        entry.ticket.apply(event);
        entry.version = sequence;
        let mark = || Mark {
            event_id: meta.event_id.to_string(),
            sequence,
            at: meta.occurred_at,
            correlation_id: meta.correlation_id.clone(),
        };
        match event {
            Event::TicketQueued { .. } => {
                entry.queued = Some(mark());
                entry.queued_trace = trace.clone();
            }
            Event::AgentAssigned { .. } => entry.assigned = Some(mark()),
            Event::TicketReleased {
                agent,
                reason: ReleaseReason::AcceptTimeout,
            } => {
                entry.declined.insert(agent.clone());
            }
            Event::HandoffRequested { summary, .. } => {
                entry.summary = summary.shown().to_owned();
                entry.declined.clear();
            }
            Event::CustomerErased => entry.summary = Erased::SHOWN.to_owned(),
            Event::CustomerMessageReceived { .. } => {
                entry.last_customer_message_at = Some(meta.occurred_at);
            }
            _ => {}
        }
        let agent_after = holder(&entry.ticket);
        if entry.ticket.phase.is_terminal() {
            self.tickets.remove(&meta.ticket);
        }
        TicketChange {
            ticket: meta.ticket,
            sequence,
            agent_before,
            agent_after,
            event: event.clone(),
        }
    }

    /// Folds one agent event.
    pub fn apply_agent(&mut self, sequence: u64, record: &AgentRecord) {
        self.applied = self.applied.max(sequence);
        let entry = self.agents.entry(record.agent.clone()).or_default();
        entry.last_sequence = sequence;
        match &record.event {
            AgentEvent::PresenceChanged(presence) => {
                if *presence == Presence::Online && entry.presence != Presence::Online {
                    entry.idle_since = Some(record.occurred_at);
                }
                entry.presence = *presence;
                entry.presence_mark = Some(Mark {
                    event_id: record.event_id.to_string(),
                    sequence,
                    at: record.occurred_at,
                    correlation_id: record.event_id.to_string(),
                });
            }
            AgentEvent::CapacityClaimed(ticket) => {
                entry.claims.insert(
                    *ticket,
                    Claim {
                        sequence,
                        at: record.occurred_at,
                    },
                );
                entry.idle_since = Some(record.occurred_at);
            }
            AgentEvent::CapacityFreed(ticket) => {
                entry.claims.remove(ticket);
            }
        }
    }

    pub fn agent(&self, agent: &AgentId) -> Option<&AgentEntry> {
        self.agents.get(agent)
    }

    pub fn presence(&self, agent: &AgentId) -> Presence {
        self.agents
            .get(agent)
            .map(|a| a.presence)
            .unwrap_or_default()
    }

    /// The tickets an agent holds now, offered or accepted.
    pub fn tickets_of<'a>(
        &'a self,
        agent: &'a AgentId,
    ) -> impl Iterator<Item = (&'a TicketId, &'a TicketEntry)> {
        self.tickets
            .iter()
            .filter(move |(_, entry)| holder(&entry.ticket).as_ref() == Some(agent))
    }
}

/// The agent who holds a ticket: assigned (offered or accepted).
pub fn holder(ticket: &Ticket) -> Option<AgentId> {
    match ticket.phase {
        Phase::Assigned => ticket.agent.clone(),
        _ => None,
    }
}
