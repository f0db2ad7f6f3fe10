//! The agent events on `helpline.<region>.agent.<agent_id>` (`AgentEventEnvelope` in
//! `proto/helpline/v1/agents.proto`): presence changes and the tickets claimed against,
//! and freed from, the agent's capacity.
//!
//! Claims are appended with `Nats-Expected-Last-Subject-Sequence` set to the subject's
//! last sequence the decision saw: whoever appends first wins, the other learns of the
//! conflict and decides again on fresh state. Presence changes are appended
//! unconditionally (the newest wins), which also moves the sequence, so a claim decided
//! before a sign-out fails.

use std::time::SystemTime;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use helpline_domain::{AgentId, TicketId};
use helpline_eventstore::{EventStore, StoreError};
use helpline_proto::v1 as pb;
use helpline_proto::v1::agent_event_envelope::Event as AgentEventProto;
use prost::Message;
use uuid::Uuid;

/// The schema version written into every agent envelope.
const SCHEMA_VERSION: u32 = 1;

/// Whether an agent takes tickets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Presence {
    Online,
    /// On a break: no new offers; accepted tickets stay.
    Away,
    /// Signed out: offers are withdrawn, accepted tickets go back after the grace period.
    #[default]
    Offline,
}

/// One fact about an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    PresenceChanged(Presence),
    CapacityClaimed(TicketId),
    CapacityFreed(TicketId),
}

/// An agent event as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentRecord {
    pub event_id: Uuid,
    pub agent: AgentId,
    pub occurred_at: SystemTime,
    pub event: AgentEvent,
}

/// Why an agent event could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable agent event: {0}")]
pub struct AgentCodecError(String);

impl AgentEvent {
    pub fn name(&self) -> &'static str {
        match self {
            AgentEvent::PresenceChanged(_) => "AgentPresenceChanged",
            AgentEvent::CapacityClaimed(_) => "AgentCapacityClaimed",
            AgentEvent::CapacityFreed(_) => "AgentCapacityFreed",
        }
    }
}

pub fn presence_to_proto(presence: Presence) -> pb::AgentPresence {
    match presence {
        Presence::Online => pb::AgentPresence::Online,
        Presence::Away => pb::AgentPresence::Away,
        Presence::Offline => pb::AgentPresence::Offline,
    }
}

/// The presence of a proto value; `None` for unspecified or unknown values.
pub fn presence_from_proto(value: i32) -> Option<Presence> {
    match pb::AgentPresence::try_from(value) {
        Ok(pb::AgentPresence::Online) => Some(Presence::Online),
        Ok(pb::AgentPresence::Away) => Some(Presence::Away),
        Ok(pb::AgentPresence::Offline) => Some(Presence::Offline),
        Ok(pb::AgentPresence::Unspecified) | Err(_) => None,
    }
}

pub fn encode(
    region: &str,
    agent: &AgentId,
    event: &AgentEvent,
    causation_id: &str,
    at: SystemTime,
) -> Vec<u8> {
    let event = match event {
        AgentEvent::PresenceChanged(presence) => {
            AgentEventProto::PresenceChanged(pb::AgentPresenceChanged {
                presence: presence_to_proto(*presence).into(),
            })
        }
        AgentEvent::CapacityClaimed(ticket) => {
            AgentEventProto::CapacityClaimed(pb::AgentCapacityClaimed {
                ticket_id: ticket.0.hyphenated().to_string(),
            })
        }
        AgentEvent::CapacityFreed(ticket) => {
            AgentEventProto::CapacityFreed(pb::AgentCapacityFreed {
                ticket_id: ticket.0.hyphenated().to_string(),
            })
        }
    };
    pb::AgentEventEnvelope {
        event_id: Uuid::now_v7().hyphenated().to_string(),
        agent_id: agent.as_str().to_owned(),
        region: region.to_owned(),
        occurred_at: Some(prost_types::Timestamp::from(at)),
        causation_id: causation_id.to_owned(),
        schema_version: SCHEMA_VERSION,
        event: Some(event),
    }
    .encode_to_vec()
}

pub fn decode(bytes: &[u8]) -> Result<AgentRecord, AgentCodecError> {
    let bad = |what: &str| AgentCodecError(what.to_owned());
    let envelope = pb::AgentEventEnvelope::decode(bytes).map_err(|e| bad(&e.to_string()))?;
    let ticket = |id: &str| {
        Uuid::parse_str(id)
            .map(TicketId)
            .map_err(|e| bad(&format!("ticket_id: {e}")))
    };
    let event = match envelope.event.ok_or_else(|| bad("event is missing"))? {
        AgentEventProto::PresenceChanged(e) => AgentEvent::PresenceChanged(
            presence_from_proto(e.presence).ok_or_else(|| bad("presence_changed.presence"))?,
        ),
        AgentEventProto::CapacityClaimed(e) => AgentEvent::CapacityClaimed(ticket(&e.ticket_id)?),
        AgentEventProto::CapacityFreed(e) => AgentEvent::CapacityFreed(ticket(&e.ticket_id)?),
    };
    let occurred_at = envelope
        .occurred_at
        .and_then(|t| SystemTime::try_from(t).ok())
        .ok_or_else(|| bad("occurred_at"))?;
    if envelope.agent_id.is_empty() {
        return Err(bad("agent_id is missing"));
    }
    Ok(AgentRecord {
        event_id: Uuid::parse_str(&envelope.event_id)
            .map_err(|e| bad(&format!("event_id: {e}")))?,
        agent: AgentId::new(envelope.agent_id),
        occurred_at,
        event,
    })
}

/// Why an agent event was not appended.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Someone appended to the agent's subject since the decision: decide again.
    #[error("agent {0} changed concurrently")]
    Conflict(AgentId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Appends `event` to the agent's subject; with `expected`, only if the subject's last
/// sequence is still that. Returns the event's sequence.
pub async fn append(
    store: &EventStore,
    agent: &AgentId,
    event: &AgentEvent,
    expected: Option<u64>,
    causation_id: &str,
) -> Result<u64, LedgerError> {
    let subject = store.layout().agent_subject(agent.as_str());
    let payload = encode(
        store.layout().region(),
        agent,
        event,
        causation_id,
        SystemTime::now(),
    );
    let mut publish = PublishMessage::build()
        .payload(payload.into())
        .header("Helpline-Event-Type", event.name());
    if let Some(expected) = expected {
        publish = publish.expected_last_subject_sequence(expected);
    }
    let unavailable = |e: &dyn std::fmt::Display| {
        LedgerError::Store(StoreError::Unavailable(format!("append to {subject}: {e}")))
    };
    let ack = store
        .jetstream()
        .send_publish(subject.clone(), publish)
        .await
        .map_err(|e| unavailable(&e))?
        .await;
    match ack {
        Ok(ack) => Ok(ack.sequence),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
            Err(LedgerError::Conflict(agent.clone()))
        }
        Err(e) => Err(unavailable(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_events_round_trip() {
        let agent = AgentId::new("anna");
        let ticket = TicketId(Uuid::now_v7());
        for event in [
            AgentEvent::PresenceChanged(Presence::Online),
            AgentEvent::PresenceChanged(Presence::Away),
            AgentEvent::PresenceChanged(Presence::Offline),
            AgentEvent::CapacityClaimed(ticket),
            AgentEvent::CapacityFreed(ticket),
        ] {
            let bytes = encode("de", &agent, &event, "cause", SystemTime::now());
            let record = decode(&bytes).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(record.event, event);
            assert_eq!(record.agent, agent);
        }
        assert!(decode(b"\x01garbage").is_err());
        assert!(decode(&[]).is_err());
    }
}
