//! Tickets kept hot: the state and version of the tickets this process recently loaded,
//! appended to or saw in the log.
//!
//! A load starts from the hot state instead of the snapshot bucket (one read fewer: the
//! Direct Get of the events after it still says whether it is current), and a reaction
//! to a ticket's newest event decides on the hot state without reading at all — the
//! append's expected version is the check, and a conflict falls back to reading. A
//! consumer folds every message it is given into the hot state when the message follows
//! on directly (its `Nats-Expected-Last-Subject-Sequence` is the hot version).
//!
//! **Invariant:** a hot state never outlives its customer's key in this process: when
//! the key watcher sees a key purged or a slot of a block erased (which names the
//! customer it was erased for), that customer's hot tickets are dropped.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use helpline_domain::{Event, TicketId};

use crate::load::LoadedTicket;
use crate::seal::CustomerId;

/// Tickets one process keeps hot; beyond this it starts over.
const HOT_LIMIT: usize = 50_000;

/// The hot tickets by id. A ticket's state is boxed and the map is made at its full size
/// once: growing a map of inline states (some 730 bytes each) moved every one of them into
/// freshly faulted memory under the lock each time the count crossed a power of two,
/// while every webhook and consumer of the process waited (found in a 240 ms stall).
type Kept = HashMap<TicketId, Box<Hot>>;

fn kept_at_full_size() -> Kept {
    HashMap::with_capacity(HOT_LIMIT)
}

#[derive(Clone, Debug)]
pub(crate) struct HotTickets {
    inner: Arc<Mutex<Kept>>,
}

impl Default for HotTickets {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(kept_at_full_size())),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Hot {
    pub(crate) loaded: LoadedTicket,
    /// Events folded since the last snapshot was written, so hot loads still write one
    /// every `snapshot_every` events.
    pub(crate) since_snapshot: u64,
}

impl HotTickets {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, ticket: TicketId) -> Option<Hot> {
        self.lock().get(&ticket).map(|hot| Hot::clone(hot))
    }

    /// The customer of a hot ticket, once an event named them.
    pub(crate) fn customer_of(&self, ticket: TicketId) -> Option<CustomerId> {
        self.lock()
            .get(&ticket)
            .and_then(|hot| hot.loaded.customer.clone())
    }

    /// Keeps `hot` unless a newer state of the ticket is kept already.
    pub(crate) fn put(&self, ticket: TicketId, hot: Hot) {
        let mut tickets = self.lock();
        if tickets
            .get(&ticket)
            .is_some_and(|kept| kept.loaded.version > hot.loaded.version)
        {
            return;
        }
        if tickets.len() >= HOT_LIMIT {
            start_over(&mut tickets);
        }
        tickets.insert(ticket, Box::new(hot));
    }

    /// Folds one message's events (stored at `version`, after `previous`) into the
    /// ticket's hot state, if that state is exactly at `previous`; a ticket opened by
    /// this message (`previous` 0) starts hot.
    pub(crate) fn fold(
        &self,
        ticket: TicketId,
        previous: u64,
        version: u64,
        customer: Option<&CustomerId>,
        events: &[&Event],
    ) {
        let mut tickets = self.lock();
        if previous == 0 && tickets.len() >= HOT_LIMIT && !tickets.contains_key(&ticket) {
            start_over(&mut tickets);
        }
        // Folded in place: a hot ticket is not copied for each message.
        let hot = match tickets.entry(ticket) {
            Entry::Occupied(kept) if kept.get().loaded.version == previous => kept.into_mut(),
            Entry::Vacant(new) if previous == 0 => new.insert(Box::new(Hot {
                loaded: LoadedTicket::default(),
                since_snapshot: 0,
            })),
            _ => return,
        };
        for event in events {
            hot.loaded.ticket.apply(event);
        }
        hot.loaded.version = version;
        if let Some(customer) = customer {
            hot.loaded.customer = Some(customer.clone());
        }
        hot.since_snapshot += events.len() as u64;
    }

    /// Drops every hot ticket of the customer (their key was purged).
    pub(crate) fn forget_customer(&self, customer: &CustomerId) {
        self.forget_customers(std::slice::from_ref(customer));
    }

    /// Drops every hot ticket of these customers, in one pass over the map: a block's
    /// rewrite names every customer ever erased from it, and a retention run erases many.
    pub(crate) fn forget_customers(&self, customers: &[CustomerId]) {
        match customers {
            [] => {}
            [customer] => self
                .lock()
                .retain(|_, hot| hot.loaded.customer.as_ref() != Some(customer)),
            _ => {
                let gone: std::collections::HashSet<&CustomerId> = customers.iter().collect();
                self.lock().retain(|_, hot| {
                    hot.loaded
                        .customer
                        .as_ref()
                        .is_none_or(|customer| !gone.contains(customer))
                });
            }
        }
    }

    /// Drops the ticket (its snapshot was dropped, or its state is in doubt).
    pub(crate) fn forget(&self, ticket: TicketId) {
        self.lock().remove(&ticket);
    }
}

/// Empties a full map of hot tickets and frees what it held off the caller's path:
/// freeing fifty thousand tickets, each with allocations of its own, under the lock would
/// stall every append and every consumer of the process at once.
fn start_over(kept: &mut Kept) {
    let tickets = std::mem::replace(kept, kept_at_full_size());
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(move || drop(tickets));
        }
        Err(_) => drop(tickets),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn customer(n: u8) -> CustomerId {
        crate::seal::MasterKey::development()
            .customer_id(helpline_domain::Channel::Telegram, &format!("{n}"))
    }

    fn hot_ticket_of(tickets: &HotTickets, customer: Option<&CustomerId>) -> TicketId {
        let ticket = TicketId(uuid::Uuid::now_v7());
        tickets.fold(ticket, 0, 1, customer, &[]);
        ticket
    }

    #[test]
    fn the_map_of_hot_tickets_never_grows_under_its_lock_not_even_when_it_starts_over() {
        let tickets = HotTickets::default();
        let capacity = tickets.lock().capacity();
        assert!(capacity >= HOT_LIMIT);
        for _ in 0..HOT_LIMIT {
            hot_ticket_of(&tickets, None);
        }
        assert_eq!(tickets.lock().len(), HOT_LIMIT);
        assert_eq!(
            tickets.lock().capacity(),
            capacity,
            "filled to its limit, not grown"
        );
        let first_after = hot_ticket_of(&tickets, None);
        assert_eq!(tickets.lock().len(), 1, "one more starts over");
        assert!(tickets.get(first_after).is_some());
        assert_eq!(
            tickets.lock().capacity(),
            capacity,
            "started over at full size"
        );
    }

    #[test]
    fn forgetting_erased_customers_drops_their_hot_tickets_and_no_one_elses() {
        let tickets = HotTickets::default();
        let (a, b, c) = (customer(1), customer(2), customer(3));
        let of_a = hot_ticket_of(&tickets, Some(&a));
        let of_b = hot_ticket_of(&tickets, Some(&b));
        let of_c = hot_ticket_of(&tickets, Some(&c));
        let of_nobody = hot_ticket_of(&tickets, None);
        tickets.forget_customers(&[a.clone(), b]);
        assert!(tickets.get(of_a).is_none());
        assert!(tickets.get(of_b).is_none());
        assert!(tickets.get(of_c).is_some());
        assert!(
            tickets.get(of_nobody).is_some(),
            "a ticket with no customer yet stays"
        );
        tickets.forget_customer(&c);
        assert!(tickets.get(of_c).is_none());
        tickets.forget_customers(&[a]);
        assert!(tickets.get(of_nobody).is_some());
    }
}
