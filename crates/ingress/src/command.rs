//! Running one domain command against a ticket in the store: load, decide, append at the
//! loaded version, and on a conflict (another command appended in between) load and
//! decide again. Shared by egress (delivery outcomes) and receipts.

use helpline_domain::{Command, DomainError, TicketId, decide};
use helpline_eventstore::{Appended, CommandMeta, EventStore, StoreError};

/// Decides `command` on the ticket's current state and appends the resulting events,
/// trying at most `tries` times in all.
///
/// `Ok(Err(_))` is the ticket's refusal; `Err` a technical failure, the last
/// [`StoreError::Conflict`] when every try met another append. `meta.command_id` dedupes
/// retries of the same command, also across calls.
pub(crate) async fn decide_and_append(
    store: &EventStore,
    ticket: TicketId,
    command: &Command,
    meta: &CommandMeta,
    tries: u32,
) -> Result<Result<Appended, DomainError>, StoreError> {
    let mut tried = 0;
    loop {
        tried += 1;
        let loaded = store.load(ticket).await?;
        let events = match decide(&loaded.ticket, command.clone()) {
            Ok(events) => events,
            Err(refusal) => return Ok(Err(refusal)),
        };
        match store.append(ticket, loaded.version, &events, meta).await {
            Ok(appended) => return Ok(Ok(appended)),
            Err(StoreError::Conflict { .. }) if tried < tries => {
                tracing::debug!(ticket = %ticket, tries = tried, "append conflict, reloading");
            }
            Err(e) => return Err(e),
        }
    }
}
