//! A customer's tickets: a chain of derived ids. The first is derived from the customer's
//! pseudonym, each next one from the one before, so the first append to a ticket is the
//! claim on it (of two racing writers exactly one opens it at version 0). The
//! `helpline-<region>-contacts` bucket points at a customer's latest ticket, a shortcut
//! so that a returning customer is found without walking the chain; a lost or stale
//! pointer only costs reads.
//!
//! Intake (a customer's message) and notifications (the brand writing first) both find
//! and extend the chain this way.

use async_nats::jetstream::kv;
use bytes::Bytes;
use helpline_domain::{Phase, TicketId};
use uuid::Uuid;

use crate::EventStore;
use crate::error::StoreError;
use crate::load::LoadedTicket;
use crate::seal::CustomerId;

/// Namespace of the derived ticket ids.
const TICKETS: Uuid = Uuid::from_u128(0x6865_6c70_6c69_6e65_2d74_6963_6b65_7473);
/// Tickets walked past the pointer before giving up: a customer with this many tickets
/// since their pointer was last written is not a customer.
const MAX_WALK: usize = 64;

/// The customer's first ticket: derived, so that its first append is the claim.
pub fn first_ticket(customer: &CustomerId) -> TicketId {
    TicketId(Uuid::new_v5(&TICKETS, customer.as_str().as_bytes()))
}

/// The ticket after `ticket` in its customer's chain.
pub fn next_ticket(ticket: TicketId) -> TicketId {
    TicketId(Uuid::new_v5(&TICKETS, ticket.0.as_bytes()))
}

/// A contacts-bucket value: the ticket id as text.
pub fn parse_ticket(value: &[u8]) -> Option<TicketId> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| Uuid::parse_str(s).ok())
        .map(TicketId)
}

/// A ticket that takes no more customer messages: the customer starts a new one.
pub fn ticket_is_over(ticket: &helpline_domain::Ticket) -> bool {
    ticket.phase.is_terminal() || ticket.erased
}

/// The ticket the contacts bucket names for `contact_key`, if any.
pub async fn pointed_ticket(
    contacts: &kv::Store,
    contact_key: &str,
) -> Result<Option<TicketId>, StoreError> {
    let entry = contacts
        .entry(contact_key)
        .await
        .map_err(StoreError::unavailable)?;
    Ok(entry
        .filter(|entry| entry.operation == kv::Operation::Put)
        .and_then(|entry| parse_ticket(&entry.value)))
}

/// Points `contact_key` at `ticket`, the next of their chain. Several processes moving on
/// at once write the same; a pointer left behind only costs reads later.
pub async fn point_contact(
    contacts: &kv::Store,
    contact_key: &str,
    ticket: TicketId,
) -> Result<(), StoreError> {
    contacts
        .put(contact_key, Bytes::from(ticket.0.to_string()))
        .await
        .map_err(StoreError::unavailable)?;
    Ok(())
}

/// Tickets of one customer's chain listed at most: the history an agent is shown.
const MAX_LISTED: usize = 256;

impl EventStore {
    /// The customer's tickets along their chain, oldest first (at most 256): their
    /// history. One load per ticket, and one more for the end of the chain.
    pub async fn chain_of(&self, customer: &CustomerId) -> Result<Vec<TicketId>, StoreError> {
        let mut tickets = Vec::new();
        let mut ticket = first_ticket(customer);
        while tickets.len() < MAX_LISTED && self.load(ticket).await?.ticket.phase != Phase::New {
            tickets.push(ticket);
            ticket = next_ticket(ticket);
        }
        Ok(tickets)
    }

    /// The customer's latest ticket, loaded: from `start` (what the caller remembers),
    /// else their pointer, else their first; then along the chain while a later one
    /// exists. `None` when they have no ticket at all.
    pub async fn latest_ticket(
        &self,
        contacts: &kv::Store,
        contact_key: &str,
        customer: &CustomerId,
        start: Option<TicketId>,
    ) -> Result<Option<(TicketId, LoadedTicket)>, StoreError> {
        let mut ticket = match start {
            Some(ticket) => ticket,
            None => pointed_ticket(contacts, contact_key)
                .await?
                .unwrap_or_else(|| first_ticket(customer)),
        };
        let mut loaded = self.load(ticket).await?;
        if loaded.ticket.phase == Phase::New {
            return Ok(None);
        }
        for _ in 0..MAX_WALK {
            let next = self.load(next_ticket(ticket)).await?;
            if next.ticket.phase == Phase::New {
                break;
            }
            (ticket, loaded) = (next_ticket(ticket), next);
        }
        Ok(Some((ticket, loaded)))
    }
}
