//! Reacting to an event: once per cause, and, for a ticket this process keeps hot, with
//! no read at all — the append's expected version is the only check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use helpline_domain::{Command, Event, MessageBody, MessageId, Personal};
use helpline_eventstore::{Cause, EventStore, Reacted};
use support::*;
use uuid::Uuid;

fn greet(_: &helpline_domain::Ticket) -> Vec<Command> {
    vec![
        Command::SendBotMessage {
            message: MessageId(Uuid::now_v7()),
            body: MessageBody::Text(Personal::new("Hallo".to_owned())),
            prompt: "greeting".to_owned(),
            choices: Vec::new(),
        },
        Command::SendBotMessage {
            message: MessageId(Uuid::now_v7()),
            body: MessageBody::Text(Personal::new("Welches Produkt?".to_owned())),
            prompt: "ask_product".to_owned(),
            choices: Vec::new(),
        },
    ]
}

/// Messages this store's connection sent to the server while `f` ran.
async fn sent_during<F: std::future::Future<Output = T>, T>(store: &EventStore, f: F) -> (T, u64) {
    let stats = store.client().statistics();
    let before = stats
        .out_messages
        .load(std::sync::atomic::Ordering::Relaxed);
    let result = f.await;
    let after = stats
        .out_messages
        .load(std::sync::atomic::Ordering::Relaxed);
    (result, after - before)
}

#[tokio::test]
async fn a_reaction_to_the_newest_event_of_a_hot_ticket_is_one_append_and_happens_once() {
    let h = harness().await;
    // Another process writes the ticket; this one has read it once.
    let writer = EventStore::open(h.server.connect().await.unwrap(), test_config())
        .await
        .unwrap();
    let store = EventStore::open(h.server.connect().await.unwrap(), test_config())
        .await
        .unwrap();
    let id = ticket();
    let v = open(&writer, id).await;
    say(&writer, id, v, &["Hallo, mein Laptop"]).await;
    let (sequence, meta, event) = store.ticket_events(id).await.unwrap().pop().unwrap();
    assert!(matches!(event, Event::CustomerMessageReceived { .. }));
    store.load(id).await.unwrap();
    // A process that has run a while has the customer's key cached.
    store.preload_customer_keys().await;
    let cause = Cause::event(&helpline_eventstore::StoredEvent {
        subject: store.layout().ticket_subject(id),
        sequence,
        meta,
        event,
        delivered: 1,
        replayed: false,
        trace: Default::default(),
        let_go: None,
        hold: None,
    });

    let (reacted, sent) = sent_during(&store, store.react("bot", &cause, greet)).await;
    assert!(
        matches!(reacted, Ok(Reacted::Appended { events: 2, .. })),
        "{reacted:?}"
    );
    assert_eq!(sent, 1, "one append, no read");

    // The same cause again (a redelivery after the ack was lost): the ticket moved on, so
    // the reaction reads and finds itself, here and in the writer, which never had it hot.
    for reader in [&store, &writer] {
        assert_eq!(
            reader.react("bot", &cause, greet).await.unwrap(),
            Reacted::AlreadyDone
        );
    }
    let bot_messages = store
        .ticket_events(id)
        .await
        .unwrap()
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::BotMessageSent { .. }))
        .count();
    assert_eq!(bot_messages, 2, "one reaction, two messages, stored once");
}

#[tokio::test]
async fn a_hot_ticket_that_moved_on_is_read_before_reacting() {
    let h = harness().await;
    let other = EventStore::open(h.server.connect().await.unwrap(), test_config())
        .await
        .unwrap();
    let id = ticket();
    let v = open(&h.store, id).await;
    let v = say(&h.store, id, v, &["erste Nachricht"]).await;
    let (sequence, meta, event) = h.store.ticket_events(id).await.unwrap().pop().unwrap();
    let cause = Cause::event(&helpline_eventstore::StoredEvent {
        subject: h.store.layout().ticket_subject(id),
        sequence,
        meta,
        event,
        delivered: 1,
        replayed: false,
        trace: Default::default(),
        let_go: None,
        hold: None,
    });
    // Another process appends after the cause; this one's hot state is at the cause.
    say(&other, id, v, &["zweite Nachricht"]).await;
    assert!(matches!(
        h.store.react("bot", &cause, greet).await.unwrap(),
        Reacted::Appended { events: 2, .. }
    ));
    let events = h.store.ticket_events(id).await.unwrap();
    let names: Vec<&str> = events.iter().map(|(_, _, e)| e.name()).collect();
    assert_eq!(
        names,
        [
            "TicketOpened",
            "CustomerMessageReceived",
            "CustomerMessageReceived",
            "BotMessageSent",
            "BotMessageSent"
        ],
        "decided on the ticket as it stands, after the second message"
    );
}
