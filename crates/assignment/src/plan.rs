//! What assignment should do now, decided from a [`View`] at a moment: pure, so the rules
//! are tested without a server. The service carries the actions out, each as a
//! conditional append; an action based on a view that has moved on fails and is planned
//! again from a fresher view.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use helpline_domain::{AgentId, Phase, QueueId, ReleaseReason, TicketId};
use helpline_region::RegionConfig;

use crate::ledger::Presence;
use crate::view::{Mark, TicketEntry, View};

/// How long a claim made for a ticket that is still queued, or still with another agent,
/// counts as an offer or a move in flight (the claim is appended just before the ticket's
/// `AgentAssigned`); after that it was left behind by an assigner or a call that stopped
/// in between, and is freed.
pub const CLAIM_SETTLE: Duration = Duration::from_secs(10);

/// The timing rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// An offer not accepted within this goes to the next agent.
    pub offer_timeout: Duration,
    /// An agent offline this long loses their accepted tickets to the queue.
    pub release_grace: Duration,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Claim capacity of `agent` (expecting their subject at `expected`), then assign.
    Offer {
        ticket: TicketId,
        agent: AgentId,
        expected: u64,
        queued: Mark,
    },
    /// Give the ticket back to its queue, once per `cause`.
    Release {
        ticket: TicketId,
        agent: AgentId,
        reason: ReleaseReason,
        /// Only while the offer is not accepted (an accept that came first wins).
        unaccepted_only: bool,
        cause: String,
        after: u64,
        correlation_id: String,
    },
    /// The claim no longer stands for a ticket the agent holds.
    Free {
        agent: AgentId,
        ticket: TicketId,
        expected: u64,
    },
    /// No agent is free: tell the customer where they stand, once per queueing.
    TellPosition {
        ticket: TicketId,
        position: usize,
        minutes: u32,
        queued: Mark,
    },
}

/// Everything to do at `now`: releases first (they free capacity), then stale claims,
/// then offers — queues by priority, tickets oldest first, each to the qualified agent
/// with free capacity who has been idle longest — and positions for tickets that wait.
pub fn plan(view: &View, region: &RegionConfig, timing: Timing, now: SystemTime) -> Vec<Action> {
    let mut actions = Vec::new();
    releases(view, timing, now, &mut actions);
    stale_claims(view, now, &mut actions);
    offers(view, region, now, &mut actions);
    actions
}

fn releases(view: &View, timing: Timing, now: SystemTime, actions: &mut Vec<Action>) {
    for (id, entry) in &view.tickets {
        let (Phase::Assigned, Some(agent), Some(assigned)) =
            (entry.ticket.phase, &entry.ticket.agent, &entry.assigned)
        else {
            continue;
        };
        let presence = view.presence(agent);
        let release = |reason, cause: String| Action::Release {
            ticket: *id,
            agent: agent.clone(),
            reason,
            unaccepted_only: !entry.ticket.accepted,
            cause,
            after: assigned.sequence,
            correlation_id: assigned.correlation_id.clone(),
        };
        if !entry.ticket.accepted {
            if presence != Presence::Online {
                actions.push(release(
                    ReleaseReason::AgentOffline,
                    format!("offer-withdrawn:{}", assigned.event_id),
                ));
            } else if due(assigned.at, timing.offer_timeout, now) {
                actions.push(release(
                    ReleaseReason::AcceptTimeout,
                    format!("offer-timeout:{}", assigned.event_id),
                ));
            }
            continue;
        }
        let offline_since = view
            .agent(agent)
            .and_then(|a| a.presence_mark.as_ref())
            .filter(|_| presence == Presence::Offline);
        if let Some(mark) = offline_since
            && due(mark.at, timing.release_grace, now)
        {
            actions.push(release(
                ReleaseReason::AgentOffline,
                format!("offline:{}:{}", mark.event_id, assigned.event_id),
            ));
        }
    }
}

fn stale_claims(view: &View, now: SystemTime, actions: &mut Vec<Action>) {
    for (agent, entry) in &view.agents {
        for (ticket, claim) in &entry.claims {
            let Some(held) = view.tickets.get(ticket) else {
                actions.push(free(agent, *ticket, entry.last_sequence));
                continue;
            };
            let holds =
                held.ticket.phase == Phase::Assigned && held.ticket.agent.as_ref() == Some(agent);
            if holds {
                continue;
            }
            // A claim newer than the ticket's latest queueing is that queueing's offer; one
            // newer than its latest assignment to someone else is a move by hand (a
            // transfer or reassignment), claimed before the ticket's append.
            let placed = match held.ticket.phase {
                Phase::Queued => held.queued.as_ref(),
                Phase::Assigned => held.assigned.as_ref(),
                _ => None,
            };
            let in_flight = placed.is_some_and(|mark| claim.sequence > mark.sequence)
                && !due(claim.at, CLAIM_SETTLE, now);
            if !in_flight {
                actions.push(free(agent, *ticket, entry.last_sequence));
            }
        }
    }
}

fn free(agent: &AgentId, ticket: TicketId, expected: u64) -> Action {
    Action::Free {
        agent: agent.clone(),
        ticket,
        expected,
    }
}

/// An agent's free slots and idle time, as this plan uses them up.
struct Slot {
    free: usize,
    idle_since: SystemTime,
    expected: u64,
}

fn offers(view: &View, region: &RegionConfig, now: SystemTime, actions: &mut Vec<Action>) {
    let mut slots: HashMap<&AgentId, Slot> = HashMap::new();
    for agent in &region.agents {
        let Some(entry) = view.agent(&agent.id) else {
            continue;
        };
        if entry.presence != Presence::Online {
            continue;
        }
        let max = usize::try_from(agent.max_tickets).unwrap_or(usize::MAX);
        slots.insert(
            &agent.id,
            Slot {
                free: max.saturating_sub(entry.claims.len()),
                idle_since: entry.idle_since.unwrap_or(SystemTime::UNIX_EPOCH),
                expected: entry.last_sequence,
            },
        );
    }
    let mut waiting: Vec<(&TicketId, &TicketEntry, &Mark, &QueueId, u32)> = view
        .tickets
        .iter()
        .filter(|(_, entry)| entry.ticket.phase == Phase::Queued)
        .filter_map(|(id, entry)| {
            let queued = entry.queued.as_ref()?;
            let queue = entry.ticket.queue.as_ref()?;
            let priority = region.queue(queue).map_or(0, |q| q.priority);
            Some((id, entry, queued, queue, priority))
        })
        .collect();
    waiting.sort_by_key(|(_, _, queued, _, priority)| (Reverse(*priority), queued.sequence));
    let mut positions: HashMap<&QueueId, usize> = HashMap::new();
    for (id, entry, queued, queue, _) in waiting {
        let position = positions.entry(queue).or_default();
        *position += 1;
        // Someone is offering it right now (a claim of this queueing): leave it to them.
        let offered = view.agents.values().any(|agent| {
            agent
                .claims
                .get(id)
                .is_some_and(|claim| claim.sequence > queued.sequence)
        });
        if offered {
            continue;
        }
        let language = entry.ticket.language.as_str();
        let product = entry
            .ticket
            .details
            .as_ref()
            .and_then(|d| region.product(&d.product));
        let qualified = |agent: &&helpline_region::Agent| {
            agent.can_take(queue, language, product)
                && slots.get(&agent.id).is_some_and(|slot| slot.free > 0)
        };
        let longest_idle = |declined_ok: bool| {
            region
                .agents
                .iter()
                .filter(qualified)
                .filter(|agent| declined_ok || !entry.declined.contains(&agent.id))
                .min_by_key(|agent| {
                    slots
                        .get(&agent.id)
                        .map(|slot| slot.idle_since)
                        .unwrap_or(SystemTime::UNIX_EPOCH)
                })
        };
        let chosen = longest_idle(false).or_else(|| longest_idle(true));
        match chosen.and_then(|agent| slots.get_mut(&agent.id).map(|slot| (agent, slot))) {
            Some((agent, slot)) => {
                slot.free -= 1;
                // Sorts after every agent idle before: the next ticket goes to someone else.
                slot.idle_since = now.max(slot.idle_since);
                actions.push(Action::Offer {
                    ticket: *id,
                    agent: agent.id.clone(),
                    expected: slot.expected,
                    queued: queued.clone(),
                });
            }
            None => {
                let serving = region
                    .agents
                    .iter()
                    .filter(|agent| agent.can_take(queue, language, product))
                    .filter(|agent| view.presence(&agent.id) == Presence::Online)
                    .count();
                let per_ticket = region.queue(queue).map_or(5, |q| q.expected_wait_mins);
                actions.push(Action::TellPosition {
                    ticket: *id,
                    position: *position,
                    minutes: estimate(*position, serving, per_ticket),
                    queued: queued.clone(),
                });
            }
        }
    }
}

/// Minutes until a ticket at `position` is taken, when each of `serving` agents takes one
/// every `per_ticket` minutes (one agent's pace when nobody serves the queue now).
pub fn estimate(position: usize, serving: usize, per_ticket: u32) -> u32 {
    let rounds = position.div_ceil(serving.max(1));
    u32::try_from(rounds)
        .unwrap_or(u32::MAX)
        .saturating_mul(per_ticket.max(1))
}

fn due(since: SystemTime, after: Duration, now: SystemTime) -> bool {
    since + after <= now
}
