//! Running a request against one ticket: load, decide, append at the loaded version, and
//! on a conflict (another writer appended in between) load and decide again. The one
//! command loop of every service that acts on a request (an agent's reply, a delivery
//! receipt, an erasure); reactions to the log go through [`crate::react`], which adds
//! once-per-cause on top.

use helpline_domain::{Command, DomainError, Ticket, TicketId, decide_all};

use crate::EventStore;
use crate::append::{Appended, CommandMeta};
use crate::error::StoreError;
use crate::load::LoadedTicket;

/// A request carried out.
#[derive(Clone, Debug, PartialEq)]
pub struct Executed {
    /// Where the ticket's log stands after it; `duplicate` when an earlier try of the
    /// same command (same command id) had stored the events already.
    pub appended: Appended,
    /// How many events were appended (0: the ticket was already as asked).
    pub events: usize,
    /// The ticket after the request.
    pub ticket: Ticket,
}

/// Why a request was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// The caller's own check refused it on the ticket as it stands.
    #[error("{0}")]
    Refused(E),
    /// The ticket's rules refused it.
    #[error(transparent)]
    Domain(DomainError),
    /// The store failed, or every try met another writer (`StoreError::Conflict`).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EventStore {
    /// Loads the ticket, asks `commands` what to do on it (it may refuse with the
    /// caller's error), decides those commands in order and appends their events as one
    /// message at the loaded version; on a conflict loads and decides again, `tries`
    /// times in all. `meta.command_id` dedupes retries, also across calls.
    pub async fn execute<E, F>(
        &self,
        ticket: TicketId,
        meta: &CommandMeta,
        tries: u32,
        commands: F,
    ) -> Result<Executed, ExecuteError<E>>
    where
        F: Fn(&LoadedTicket) -> Result<Vec<Command>, E>,
    {
        let mut tried = 0;
        loop {
            tried += 1;
            let loaded = self.load(ticket).await?;
            let wanted = commands(&loaded).map_err(ExecuteError::Refused)?;
            let (events, after) =
                decide_all(&loaded.ticket, wanted).map_err(ExecuteError::Domain)?;
            if events.is_empty() {
                return Ok(Executed {
                    appended: Appended {
                        version: loaded.version,
                        duplicate: false,
                    },
                    events: 0,
                    ticket: after,
                });
            }
            match self.append(ticket, loaded.version, &events, meta).await {
                Ok(appended) => {
                    return Ok(Executed {
                        appended,
                        events: events.len(),
                        ticket: after,
                    });
                }
                Err(StoreError::Conflict { .. }) if tried < tries.max(1) => {
                    tracing::debug!(ticket = %ticket, tried, "append conflict, reloading");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
