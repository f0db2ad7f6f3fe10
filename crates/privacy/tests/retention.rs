//! Retention on a real store: a customer whose tickets are all over loses their key; one
//! with an open ticket keeps it, however old their closed tickets are.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use helpline_domain::{
    Channel, CloseReason, Customer, Event, MessageBody, MessageId, Personal, TicketId,
};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_privacy::{Privacy, Reason};
use helpline_testkit::NatsServer;
use uuid::Uuid;

async fn store(nats: &NatsServer) -> EventStore {
    EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
        .await
        .unwrap()
}

/// A ticket of `contact` with one message, closed when `closed`.
async fn ticket(store: &EventStore, contact: &str, closed: bool) -> TicketId {
    let id = TicketId(Uuid::now_v7());
    let mut events = vec![
        Event::TicketOpened {
            ticket: id,
            customer: Customer {
                channel: Channel::WhatsApp,
                contact: Personal::from(contact),
                display_name: None,
            },
            language: "de".to_owned(),
        },
        Event::CustomerMessageReceived {
            message: MessageId(Uuid::now_v7()),
            provider_message_id: format!("wamid.{}", Uuid::now_v7().simple()).into(),
            body: MessageBody::Text(Personal::from("Mein Akku ist leer")),
        },
    ];
    if closed {
        events.push(Event::TicketClosed {
            reason: CloseReason::NoRatingAsked,
        });
    }
    let mut version = 0;
    for event in events {
        let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
        version = store
            .append(id, version, &[event], &meta)
            .await
            .unwrap()
            .version;
    }
    id
}

#[tokio::test]
async fn retention_purges_customers_whose_tickets_are_all_over_and_keeps_open_ones() {
    let nats = NatsServer::start().await.unwrap();
    let store = store(&nats).await;
    let done = ticket(&store, "4915100000001", true).await;
    let old = ticket(&store, "4915100000002", true).await;
    let open = ticket(&store, "4915100000002", false).await;
    let privacy = Privacy::new(store.clone());
    let gone = store.customer_id(Channel::WhatsApp, "4915100000001");
    let kept = store.customer_id(Channel::WhatsApp, "4915100000002");

    // Nothing is old enough within a year.
    let run = privacy
        .retention(Duration::from_secs(365 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(
        (run.customers_purged, run.kept_recent, run.kept_open),
        (0, 1, 1)
    );

    // With a period of zero every ended ticket is past it.
    let run = privacy.retention(Duration::ZERO).await.unwrap();
    assert_eq!(run.tickets_scanned, 3);
    assert_eq!((run.customers_purged, run.kept_open), (1, 1));
    assert!(!store.customer_has_key(&gone).await.unwrap());
    assert!(store.customer_has_key(&kept).await.unwrap());
    let erased = store.load(done).await.unwrap().ticket;
    assert!(erased.erased);
    assert_eq!(erased.customer.unwrap().contact.shown(), "[erased]");
    for id in [old, open] {
        let ticket = store.load(id).await.unwrap().ticket;
        assert_eq!(ticket.customer.unwrap().contact.shown(), "4915100000002");
    }

    // A second run finds the erased customer done and changes nothing.
    let run = privacy.retention(Duration::ZERO).await.unwrap();
    assert_eq!(
        (run.customers_purged, run.already_erased, run.kept_open),
        (0, 1, 1)
    );
    assert!(
        run.to_string().starts_with("retention: 3 tickets scanned"),
        "{run}"
    );
}

#[tokio::test]
async fn erasing_twice_is_harmless_and_says_so() {
    let nats = NatsServer::start().await.unwrap();
    let store = store(&nats).await;
    let id = ticket(&store, "4915100000003", false).await;
    let customer = store.customer_id(Channel::WhatsApp, "4915100000003");
    let privacy = Privacy::new(store.clone());
    let first = privacy.erase(&customer, Reason::Request).await.unwrap();
    assert_eq!(first.tickets, [id]);
    assert!(first.key_purged);
    assert_eq!(first.tickets_newly_erased, 1);
    let second = privacy.erase(&customer, Reason::Request).await.unwrap();
    assert_eq!(second.tickets, [id]);
    assert!(!second.key_purged);
    assert_eq!(second.tickets_newly_erased, 0);
    let events = store.ticket_events(id).await.unwrap();
    let erasures = events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::CustomerErased))
        .count();
    assert_eq!(erasures, 1);
}
