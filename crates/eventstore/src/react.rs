//! Reacting to a cause exactly once: how the bot, routing and feedback answer an event.
//!
//! A service's answer to one cause (an event it consumed, or a timer that fired) is a
//! list of commands. They are decided one after the other on the ticket's current state
//! and their events appended as **one** message, whose command id is derived from
//! the service's name and the cause. So:
//!
//! - a redelivered cause (a crash after the append, before the ack) finds its command id
//!   among the ticket's events after the cause and appends nothing, however long ago the
//!   first try was — the stream's duplicate window is not relied on;
//! - two instances handling the same cause at once race on the expected version, and the
//!   loser's append settles as a duplicate (see [`EventStore::append`]);
//! - a reaction is never half applied: a refused command refuses the whole reaction.

use std::time::SystemTime;

use helpline_domain::{Command, DomainError, Ticket, TicketId, decide_all};
use uuid::Uuid;

use crate::EventStore;
use crate::append::{CommandMeta, command_of};
use crate::error::StoreError;
use crate::execute::ExecuteError;
use crate::subscribe::StoredEvent;

/// Namespace of reaction command ids (UUIDv5 of `<service>/<cause id>`).
const REACTION_NAMESPACE: Uuid = Uuid::from_u128(0x7265_6163_7469_6f6e_2d68_656c_706c_696e);
/// Conflicts with other writers tolerated before the cause is left to redelivery.
const TRIES: u32 = 8;

/// Why a service reacts: the cause's id, the ticket it concerns and where in the
/// ticket's log it sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub ticket: TicketId,
    /// Unique per cause: an event id, or a timer's own id.
    pub id: String,
    /// Only events after this sequence can hold an earlier reaction to the cause.
    pub after_sequence: u64,
    pub correlation_id: String,
}

impl Cause {
    /// A consumed event as the cause.
    pub fn event(event: &StoredEvent) -> Self {
        Self {
            ticket: event.meta.ticket,
            id: event.meta.event_id.to_string(),
            after_sequence: event.sequence,
            correlation_id: event.meta.correlation_id.clone(),
        }
    }
}

/// What came of a reaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Reacted {
    /// The events were appended; the ticket is now at `version`.
    Appended { events: usize, version: u64 },
    /// An earlier delivery of the cause already reacted.
    AlreadyDone,
    /// The service had nothing to say.
    Nothing,
    /// The ticket moved on so that a command no longer applies; nothing was appended.
    Refused(DomainError),
}

/// The command id of `service`'s reaction to `cause`: the same on every delivery.
pub fn reaction_id(service: &str, cause: &Cause) -> Uuid {
    Uuid::new_v5(
        &REACTION_NAMESPACE,
        format!("{service}/{}", cause.id).as_bytes(),
    )
}

impl EventStore {
    /// Runs `respond` on the ticket's current state and appends what its commands decide,
    /// once per (`service`, `cause`), however often the cause is delivered.
    pub async fn react<F>(
        &self,
        service: &str,
        cause: &Cause,
        respond: F,
    ) -> Result<Reacted, StoreError>
    where
        F: Fn(&Ticket) -> Vec<Command>,
    {
        let command_id = reaction_id(service, cause);
        let meta = CommandMeta::new(command_id, SystemTime::now())
            .caused_by(cause.id.clone())
            .correlated_with(cause.correlation_id.clone());
        // The ticket is hot exactly at its cause: nothing was appended after the cause,
        // so no earlier reaction to it either. Decide without reading; the append's
        // expected version checks that it is still so, and a conflict reads as below.
        if let Some(hot) = self.hot.get(cause.ticket)
            && hot.loaded.version == cause.after_sequence
        {
            let commands = respond(&hot.loaded.ticket);
            if commands.is_empty() {
                return Ok(Reacted::Nothing);
            }
            let events = match decide_all(&hot.loaded.ticket, commands) {
                Ok((events, _)) => events,
                Err(refusal) => return Ok(Reacted::Refused(refusal)),
            };
            if events.is_empty() {
                return Ok(Reacted::Nothing);
            }
            match self
                .append(cause.ticket, hot.loaded.version, &events, &meta)
                .await
            {
                Ok(appended) if appended.duplicate => return Ok(Reacted::AlreadyDone),
                Ok(appended) => {
                    return Ok(Reacted::Appended {
                        events: events.len(),
                        version: appended.version,
                    });
                }
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!(ticket = %cause.ticket, "hot ticket moved on, reading it");
                }
                Err(e) => return Err(e),
            }
        }
        if self.has_reacted(cause, command_id).await? {
            return Ok(Reacted::AlreadyDone);
        }
        let executed = self
            .execute(cause.ticket, &meta, TRIES, |loaded| {
                Ok::<_, std::convert::Infallible>(respond(&loaded.ticket))
            })
            .await;
        match executed {
            Ok(executed) if executed.events == 0 => Ok(Reacted::Nothing),
            Ok(executed) if executed.appended.duplicate => Ok(Reacted::AlreadyDone),
            Ok(executed) => Ok(Reacted::Appended {
                events: executed.events,
                version: executed.appended.version,
            }),
            Err(ExecuteError::Domain(refusal)) => Ok(Reacted::Refused(refusal)),
            Err(ExecuteError::Store(e)) => Err(e),
            Err(ExecuteError::Refused(never)) => match never {},
        }
    }

    async fn has_reacted(&self, cause: &Cause, command_id: Uuid) -> Result<bool, StoreError> {
        let ours = command_id.to_string();
        let tail = self
            .direct
            .messages_after(
                &self.layout.ticket_subject(cause.ticket),
                cause.after_sequence,
                self.config.request_timeout,
            )
            .await?;
        Ok(tail
            .iter()
            .any(|m| command_of(&m.headers) == Some(ours.as_str())))
    }
}
