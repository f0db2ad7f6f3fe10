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
    /// Loads the ticket (from this process's hot state first), asks `commands` what to do
    /// on it (it may refuse with the caller's error), decides those commands in order and
    /// appends their events as one message at the loaded version; on a conflict reads and
    /// decides again, `tries` reads in all. `meta.command_id` dedupes retries, also across
    /// calls.
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
        // The first try decides on this process's hot state of the ticket, if it has one,
        // without reading: the append's expected version checks it. Only a decision that
        // appends is trusted from it; a refusal or nothing to do is confirmed on a read.
        let mut trust_cached = true;
        let mut tried = 0;
        loop {
            let cached = if trust_cached {
                self.cached(ticket)
            } else {
                None
            };
            let from_cache = cached.is_some();
            trust_cached = false;
            let loaded = match cached {
                Some(loaded) => loaded,
                None => {
                    tried += 1;
                    self.load(ticket).await?
                }
            };
            let wanted = match commands(&loaded) {
                Ok(wanted) => wanted,
                Err(_) if from_cache => continue,
                Err(refused) => return Err(ExecuteError::Refused(refused)),
            };
            let (events, after) = match decide_all(&loaded.ticket, wanted) {
                Ok(decided) => decided,
                Err(_) if from_cache => continue,
                Err(refusal) => return Err(ExecuteError::Domain(refusal)),
            };
            if events.is_empty() {
                if from_cache {
                    continue;
                }
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
                Err(StoreError::Conflict { .. }) if from_cache || tried < tries.max(1) => {
                    tracing::debug!(ticket = %ticket, tried, "append conflict, reloading");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
