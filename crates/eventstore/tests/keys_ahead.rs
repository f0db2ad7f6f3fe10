//! Keys made ahead: a new customer's first message is one write, sealed under a key from
//! a block made beforehand; the message binds the key to the customer, every process finds
//! it, and erasure takes it (and only it) away everywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use helpline_domain::{Channel, Customer, Event, MessageBody, Personal, TicketId};
use helpline_eventstore::chain::first_ticket;
use helpline_eventstore::{CustomerId, EventStore, Kept, StoreError};
use support::*;

/// A new customer's first message, as intake appends it: their first ticket's opening
/// and the message, one command at version 0 (the claim).
async fn first_message(
    store: &EventStore,
    contact: &str,
    text: &str,
) -> Result<(TicketId, CustomerId), StoreError> {
    let customer = store.customer_id(Channel::WhatsApp, contact);
    let ticket = first_ticket(&customer);
    let opened = Event::TicketOpened {
        ticket,
        customer: Customer {
            channel: Channel::WhatsApp,
            contact: Personal::new(contact.to_owned()),
            display_name: None,
        },
        language: "de".to_owned(),
    };
    store
        .append(ticket, 0, &[opened, message(text)], &command())
        .await?;
    Ok((ticket, customer))
}

async fn keys_in_bucket(store: &EventStore) -> Vec<String> {
    use futures::TryStreamExt as _;
    let bucket = store
        .jetstream()
        .get_key_value("helpline-de-customer-keys")
        .await
        .unwrap();
    let mut keys: Vec<String> = bucket.keys().await.unwrap().try_collect().await.unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_new_customers_first_message_is_one_write_under_a_key_made_ahead() {
    let h = harness().await;
    // The process's first new customer waits for its first block of keys.
    first_message(&h.store, "4915100000001", "erste")
        .await
        .unwrap();
    let client = h.store.client().clone();
    let before = sent_by(&client);
    let (ticket, customer) = first_message(&h.store, "4915100000002", "zweite")
        .await
        .unwrap();
    assert_eq!(
        sent_by(&client) - before,
        1,
        "one publish: the append, no key of its own"
    );
    let keys = keys_in_bucket(&h.store).await;
    assert_eq!(keys.len(), 1, "one block, no key per customer: {keys:?}");
    assert!(keys[0].starts_with("block."), "{keys:?}");
    assert!(!keys.contains(&customer.to_string()));
    assert_eq!(
        texts(&h.store.ticket_events(ticket).await.unwrap()),
        ["zweite"]
    );
}

#[tokio::test]
async fn another_process_opens_the_first_message_by_the_slot_it_names() {
    let h = harness().await;
    let (ticket, customer) = first_message(&h.store, "4915100000003", "hallo")
        .await
        .unwrap();
    let other = another_process(&h.server).await;
    assert_eq!(
        texts(&other.ticket_events(ticket).await.unwrap()),
        ["hallo"]
    );
    assert!(other.customer_has_key(&customer).await.unwrap());
    // Its next events are sealed under the same key, by whichever process appends them.
    let version = other.ticket_events(ticket).await.unwrap().last().unwrap().0;
    say(&other, ticket, version, &["noch eins"]).await;
    assert_eq!(
        texts(&h.store.ticket_events(ticket).await.unwrap()),
        ["hallo", "noch eins"]
    );
}

#[tokio::test]
async fn a_process_opening_many_new_customers_at_once_reads_their_block_once() {
    let h = harness().await;
    let mut tickets = Vec::new();
    for n in 0..40 {
        let contact = format!("49151000020{n:02}");
        let (ticket, _) = first_message(&h.store, &contact, "hallo").await.unwrap();
        tickets.push(ticket);
    }
    // What reading them costs a fresh process, one after the other: one read of their
    // block, then each ticket's own reads.
    let one_by_one = another_process(&h.server).await;
    let before = sent_by(one_by_one.client());
    for ticket in &tickets {
        one_by_one.ticket_events(*ticket).await.unwrap();
    }
    let sequential = sent_by(one_by_one.client()) - before;
    // Another fresh process reads them all at once, as a consumer's lanes take a burst of
    // new customers: the block is still read once, not once per ticket waiting for it.
    let at_once = another_process(&h.server).await;
    let before = sent_by(at_once.client());
    let read =
        futures::future::join_all(tickets.iter().map(|ticket| at_once.ticket_events(*ticket)))
            .await;
    let together = sent_by(at_once.client()) - before;
    for events in read {
        assert_eq!(texts(&events.unwrap()), ["hallo"]);
    }
    // A little room for the key watch's own traffic, far below a read per ticket.
    assert!(
        together <= sequential + 3,
        "{together} messages at once against {sequential} one after the other"
    );
}

#[tokio::test]
async fn a_fresh_process_finds_a_customers_key_by_their_first_ticket() {
    let h = harness().await;
    let (_, customer) = first_message(&h.store, "4915100000004", "hallo")
        .await
        .unwrap();
    // Sealed under the key made ahead: the process knows it from the claim.
    let sealed = h
        .store
        .seal_kept(Kept::Attachment, &customer, "photo-1", b"jpeg bytes")
        .await
        .unwrap();
    let fresh = another_process(&h.server).await;
    assert_eq!(
        fresh
            .open_kept(Kept::Attachment, &customer, "photo-1", &sealed)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"jpeg bytes"[..])
    );
    assert!(fresh.customer_has_key(&customer).await.unwrap());
    assert_eq!(
        keys_in_bucket(&h.store).await.len(),
        1,
        "no key of the customer's own was made"
    );
}

#[tokio::test]
async fn erasing_a_customer_blanks_their_slot_everywhere_and_no_one_elses() {
    let h = harness().await;
    let (gone, erased) = first_message(&h.store, "4915100000005", "bitte löschen")
        .await
        .unwrap();
    let (kept, _) = first_message(&h.store, "4915100000006", "bleibt")
        .await
        .unwrap();
    let attachment = h
        .store
        .seal_kept(Kept::Attachment, &erased, "photo-2", b"jpeg bytes")
        .await
        .unwrap();
    // Another process reads both and caches the block, once its watch is up.
    let other = another_process(&h.server).await;
    assert_eq!(
        texts(&other.ticket_events(gone).await.unwrap()),
        ["bitte löschen"]
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        texts(&other.ticket_events(gone).await.unwrap()),
        ["bitte löschen"]
    );

    assert!(h.store.erase_customer_key(&erased).await.unwrap());
    eventually("the other process sees the slot erased", || {
        let other = other.clone();
        async move { texts(&other.ticket_events(gone).await.unwrap()) == ["[erased]"] }
    })
    .await;
    assert_eq!(
        texts(&h.store.ticket_events(gone).await.unwrap()),
        ["[erased]"]
    );
    assert_eq!(
        texts(&other.ticket_events(kept).await.unwrap()),
        ["bleibt"],
        "the customer in the next slot keeps their key"
    );
    assert_eq!(
        other
            .open_kept(Kept::Attachment, &erased, "photo-2", &attachment)
            .await
            .unwrap(),
        None
    );
    assert!(!other.customer_has_key(&erased).await.unwrap());
    let fresh = another_process(&h.server).await;
    assert_eq!(
        texts(&fresh.ticket_events(gone).await.unwrap()),
        ["[erased]"]
    );
    assert_eq!(texts(&fresh.ticket_events(kept).await.unwrap()), ["bleibt"]);
    assert!(
        !h.store.erase_customer_key(&erased).await.unwrap(),
        "erasing twice finds nothing left"
    );
}

#[tokio::test]
async fn a_customer_with_a_key_of_their_own_and_one_made_ahead_loses_both() {
    let h = harness().await;
    let customer = h.store.customer_id(Channel::WhatsApp, "4915100000007");
    // Something personal kept before their first message (a web-chat page's copy):
    // sealed under a key of their own.
    let early = h
        .store
        .seal_kept(Kept::WidgetMessage, &customer, "m-1", b"vorab")
        .await
        .unwrap();
    let (ticket, _) = first_message(&h.store, "4915100000007", "hallo")
        .await
        .unwrap();
    let fresh = another_process(&h.server).await;
    assert_eq!(
        fresh
            .open_kept(Kept::WidgetMessage, &customer, "m-1", &early)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"vorab"[..])
    );
    assert_eq!(
        texts(&fresh.ticket_events(ticket).await.unwrap()),
        ["hallo"]
    );

    assert!(h.store.erase_customer_key(&customer).await.unwrap());
    let after = another_process(&h.server).await;
    assert_eq!(
        after
            .open_kept(Kept::WidgetMessage, &customer, "m-1", &early)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        texts(&after.ticket_events(ticket).await.unwrap()),
        ["[erased]"]
    );
    assert!(!after.customer_has_key(&customer).await.unwrap());
}

#[tokio::test]
async fn two_processes_racing_for_one_new_customer_bind_one_key() {
    let h = harness().await;
    let other = another_process(&h.server).await;
    let (a, b) = tokio::join!(
        first_message(&h.store, "4915100000008", "von a"),
        first_message(&other, "4915100000008", "von b")
    );
    // Exactly one claim is stored; the other is a conflict, as for any ticket.
    let (ticket, customer) = match (a, b) {
        (Ok(won), Err(StoreError::Conflict { .. }))
        | (Err(StoreError::Conflict { .. }), Ok(won)) => won,
        other => panic!("one claim should win and one conflict: {other:?}"),
    };
    let said = texts(&h.store.ticket_events(ticket).await.unwrap());
    assert_eq!(said.len(), 1);
    // Both processes seal the customer's next message under the bound key.
    for store in [&h.store, &other] {
        let version = store.ticket_events(ticket).await.unwrap().last().unwrap().0;
        say(store, ticket, version, &["weiter"]).await;
    }
    assert_eq!(
        texts(&other.ticket_events(ticket).await.unwrap())[1..],
        ["weiter"; 2]
    );
    assert!(h.store.erase_customer_key(&customer).await.unwrap());
    eventually("every message of the customer reads as erased", || {
        let other = other.clone();
        async move { texts(&other.ticket_events(ticket).await.unwrap()) == ["[erased]"; 3] }
    })
    .await;
}

#[tokio::test]
async fn a_customer_who_returns_after_an_erasure_gets_a_new_key() {
    let h = harness().await;
    let (first, customer) = first_message(&h.store, "4915100000009", "alt")
        .await
        .unwrap();
    h.store.erase_customer_key(&customer).await.unwrap();
    let next = helpline_eventstore::chain::next_ticket(first);
    let version = open(&h.store, next).await;
    say(&h.store, next, version, &["neu"]).await;
    let fresh = another_process(&h.server).await;
    assert_eq!(texts(&fresh.ticket_events(next).await.unwrap()), ["neu"]);
    assert_eq!(
        texts(&fresh.ticket_events(first).await.unwrap()),
        ["[erased]"]
    );
}

#[tokio::test]
async fn a_replay_preloads_blocks_not_one_key_per_customer() {
    use helpline_eventstore::{Content, LogReader, Subjects};

    let h = harness().await;
    const CUSTOMERS: usize = 1_200;
    for n in 0..CUSTOMERS {
        first_message(&h.store, &format!("4915300{n:06}"), &format!("hallo {n}"))
            .await
            .unwrap();
    }
    let blocks = keys_in_bucket(&h.store).await;
    assert!(
        (3..=4).contains(&blocks.len()),
        "{CUSTOMERS} customers in blocks of 512 (one made ahead): {blocks:?}"
    );
    let client = h.server.connect().await.unwrap();
    let other = EventStore::open(client.clone(), test_config())
        .await
        .unwrap();
    let before = sent_by(&client);
    other.start_preloading_customer_keys();
    let mut reader = LogReader::open(&other, Subjects::Tickets, 0).await.unwrap();
    let mut said = 0;
    for _ in 0..reader.pending() {
        let entry = reader.next().await.unwrap().unwrap();
        let Content::Ticket(events) = entry.content else {
            panic!("undecodable message at {}", entry.sequence);
        };
        for stored in events {
            if let Event::CustomerMessageReceived {
                body: MessageBody::Text(text),
                ..
            } = stored.event
            {
                assert_eq!(text.shown(), format!("hallo {said}"));
                said += 1;
            }
        }
    }
    assert_eq!(said, CUSTOMERS, "every text opened, none read as erased");
    let requests = sent_by(&client) - before;
    assert!(
        requests < 40,
        "{requests} messages sent for {CUSTOMERS} customers: keys were read one by one"
    );
}

#[tokio::test]
async fn a_process_that_only_read_a_first_message_seals_the_next_under_the_same_key() {
    use helpline_eventstore::{LogReader, Subjects};

    let h = harness().await;
    let (ticket, customer) = first_message(&h.store, "4915100000009", "hallo")
        .await
        .unwrap();
    // A view's reader opens the first message without learning whose slot it named…
    let reader_process = another_process(&h.server).await;
    let mut reader = LogReader::open(&reader_process, Subjects::Everything, 0)
        .await
        .unwrap();
    reader.next().await.unwrap().unwrap();
    // …and when that process writes to the customer, it finds the key by their first
    // ticket: the message is sealed under it, not under a key of its own.
    say(&reader_process, ticket, 1, &["noch eine Frage"]).await;
    assert_eq!(
        keys_in_bucket(&h.store).await.len(),
        1,
        "only the block: no key of the customer's own was made"
    );
    let fresh = another_process(&h.server).await;
    assert_eq!(
        texts(&fresh.ticket_events(ticket).await.unwrap()),
        ["hallo", "noch eine Frage"]
    );
    // One erasure takes both messages.
    h.store.erase_customer_key(&customer).await.unwrap();
    let after = another_process(&h.server).await;
    assert_eq!(
        texts(&after.ticket_events(ticket).await.unwrap()),
        ["[erased]", "[erased]"]
    );
}
