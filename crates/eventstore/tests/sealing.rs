//! Personal data in the store: sealed in events and snapshots, readable while the
//! customer's key exists, erased everywhere once it is purged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use helpline_domain::{Channel, Event, MessageBody};
use helpline_eventstore::{EventStore, MasterKey, StoreConfig, StoreError};
use support::*;

fn contains(bytes: &[u8], text: &str) -> bool {
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

/// A new ticket of the WhatsApp customer `contact`, with one message from them.
async fn customer_says(store: &EventStore, contact: &str, text: &str) -> helpline_domain::TicketId {
    let id = ticket();
    let opened = Event::TicketOpened {
        ticket: id,
        customer: helpline_domain::Customer {
            channel: Channel::WhatsApp,
            contact: contact.to_owned().into(),
            display_name: None,
        },
        language: "de".to_owned(),
    };
    let version = store
        .append(id, 0, &[opened], &command())
        .await
        .unwrap()
        .version;
    say(store, id, version, &[text]).await;
    id
}

#[tokio::test]
async fn a_snapshot_is_sealed_and_goes_with_the_customers_key() {
    let h = harness_with(StoreConfig {
        snapshot_every: 4,
        ..test_config()
    })
    .await;
    let id = ticket();
    let version = open(&h.store, id).await;
    say(
        &h.store,
        id,
        version,
        &["geheim 1", "geheim 2", "geheim 3", "geheim 4"],
    )
    .await;
    h.store.load(id).await.unwrap();
    let kv = h
        .store
        .jetstream()
        .get_key_value("helpline-de-snapshots")
        .await
        .unwrap();
    let key = id.0.to_string();
    eventually("snapshot written", || {
        let (kv, key) = (kv.clone(), key.clone());
        async move { kv.entry(key).await.ok().flatten().is_some() }
    })
    .await;
    let snapshot = kv.get(&key).await.unwrap().unwrap();
    for secret in ["geheim", "4915112345678", "Jana"] {
        assert!(!contains(&snapshot, secret), "snapshot holds {secret:?}");
    }
    let from_snapshot = h.store.load(id).await.unwrap();
    assert_eq!(from_snapshot, h.store.load_from_log(id).await.unwrap());

    let customer = h.store.customer_id(Channel::WhatsApp, "4915112345678");
    assert!(h.store.erase_customer_key(&customer).await.unwrap());
    let after = h.store.load(id).await.unwrap();
    let contact = &after.ticket.customer.as_ref().unwrap().contact;
    assert_eq!(contact.shown(), "[erased]", "the snapshot no longer opens");
    assert_eq!(after.version, from_snapshot.version);
    assert_eq!(
        texts(&h.store.ticket_events(id).await.unwrap()),
        ["[erased]"; 4]
    );
}

#[tokio::test]
async fn an_erasure_reaches_a_process_that_had_the_key_cached() {
    let h = harness().await;
    let id = ticket();
    let version = open(&h.store, id).await;
    say(&h.store, id, version, &["hallo"]).await;
    // A second process reads the ticket, caching the customer's key.
    let other = another_process(&h.server).await;
    assert_eq!(texts(&other.ticket_events(id).await.unwrap()), ["hallo"]);
    // Its key cache follows the key bucket from its first read on; read again once that
    // watch is up, so the key is in the cache when it is erased.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(texts(&other.ticket_events(id).await.unwrap()), ["hallo"]);

    let customer = h.store.customer_id(Channel::WhatsApp, "4915112345678");
    h.store.erase_customer_key(&customer).await.unwrap();
    eventually("the other process sees the erasure", || {
        let other = other.clone();
        async move { texts(&other.ticket_events(id).await.unwrap()) == ["[erased]"] }
    })
    .await;
    assert!(
        !h.store.erase_customer_key(&customer).await.unwrap(),
        "idempotent"
    );
}

#[tokio::test]
async fn another_master_key_cannot_read_the_customers_data() {
    let h = harness().await;
    let id = ticket();
    let version = open(&h.store, id).await;
    say(&h.store, id, version, &["hallo"]).await;
    let wrong = StoreConfig {
        master_key: MasterKey::from_hex(&"42".repeat(32)).unwrap(),
        ..test_config()
    };
    let other = EventStore::open(h.server.connect().await.unwrap(), wrong)
        .await
        .unwrap();
    // Another master key names the customer differently and cannot unwrap their key:
    // an operator error, reported as such, never shown as erased data.
    assert_ne!(
        other.customer_id(Channel::WhatsApp, "4915112345678"),
        h.store.customer_id(Channel::WhatsApp, "4915112345678")
    );
    assert!(matches!(
        other.ticket_events(id).await,
        Err(StoreError::Key(_))
    ));
}

#[tokio::test]
async fn a_key_made_in_another_process_arrives_with_the_watch_so_the_first_read_asks_nothing() {
    let h = harness().await;
    let client = h.server.connect().await.unwrap();
    let other = EventStore::open(client.clone(), test_config())
        .await
        .unwrap();
    // The other process is up and following the key bucket before the customer writes.
    other.preload_customer_keys().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let id = ticket();
    let version = open(&h.store, id).await;
    say(&h.store, id, version, &["hallo"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let sent = || sent_by(&client);
    let before = sent();
    assert_eq!(texts(&other.ticket_events(id).await.unwrap()), ["hallo"]);
    let first_read = sent() - before;
    let before = sent();
    assert_eq!(texts(&other.ticket_events(id).await.unwrap()), ["hallo"]);
    let second_read = sent() - before;
    assert_eq!(
        first_read, second_read,
        "the first read fetched the customer's key: it should have come with the watch"
    );
}

#[tokio::test]
async fn two_processes_opening_tickets_for_one_new_customer_share_one_key() {
    let h = harness().await;
    let other = another_process(&h.server).await;
    let (a, b) = (ticket(), ticket());
    let (first, second) = tokio::join!(open(&h.store, a), open(&other, b));
    assert!(first > 0 && second > 0);
    say(&h.store, a, first, &["from a"]).await;
    say(&other, b, second, &["from b"]).await;
    // Each process reads the other's ticket: one key for the customer.
    assert_eq!(texts(&other.ticket_events(a).await.unwrap()), ["from a"]);
    assert_eq!(texts(&h.store.ticket_events(b).await.unwrap()), ["from b"]);
}

#[tokio::test]
async fn preloaded_keys_open_every_customer_and_still_follow_erasures() {
    let h = harness().await;
    let mut tickets = Vec::new();
    for n in 0..3 {
        tickets.push(customer_says(&h.store, &format!("49151000000{n}"), "hallo").await);
    }
    let other = another_process(&h.server).await;
    assert_eq!(other.preload_customer_keys().await, 3);
    for id in &tickets {
        assert_eq!(texts(&other.ticket_events(*id).await.unwrap()), ["hallo"]);
    }
    let erased = h.store.customer_id(Channel::WhatsApp, "491510000001");
    h.store.erase_customer_key(&erased).await.unwrap();
    eventually("the preloading process sees the erasure", || {
        let other = other.clone();
        let id = tickets[1];
        async move { texts(&other.ticket_events(id).await.unwrap()) == ["[erased]"] }
    })
    .await;
    assert_eq!(
        texts(&other.ticket_events(tickets[0]).await.unwrap()),
        ["hallo"]
    );
}

#[tokio::test]
async fn a_replay_started_with_the_preload_opens_every_customer_without_reading_keys_itself() {
    use helpline_eventstore::{Content, LogReader, Subjects};

    let h = harness().await;
    const CUSTOMERS: usize = 400;
    for n in 0..CUSTOMERS {
        customer_says(&h.store, &format!("4915200{n:06}"), &format!("hallo {n}")).await;
    }
    let client = h.server.connect().await.unwrap();
    let other = EventStore::open(client.clone(), test_config())
        .await
        .unwrap();
    let sent = || sent_by(&client);
    let before = sent();
    // The replay reads at once, as a projection's start does, while the keys arrive.
    other.start_preloading_customer_keys();
    let mut reader = LogReader::open(&other, Subjects::Tickets, 0).await.unwrap();
    let mut said = Vec::new();
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
                said.push(text.shown().to_owned());
            }
        }
    }
    let expected: Vec<String> = (0..CUSTOMERS).map(|n| format!("hallo {n}")).collect();
    assert_eq!(said, expected, "every text opened, none read as erased");
    // A key read on its own is a request each; the preload and the reader together are a
    // handful of requests and flow-control replies.
    let requests = sent() - before;
    assert!(
        requests < 40,
        "{requests} messages sent for {CUSTOMERS} customers: keys were read one by one"
    );
}

#[tokio::test]
async fn a_view_that_starts_from_now_reads_only_the_keys_of_what_it_reads() {
    use helpline_eventstore::{Content, Follower, LogEntry, Subjects};
    use std::sync::Mutex;

    /// The texts of the customer messages it was handed, from after `position`.
    struct FromNow(Mutex<(u64, Vec<String>)>);
    impl Follower for FromNow {
        fn position(&self) -> u64 {
            self.0.lock().unwrap().0
        }
        fn apply(&self, entry: LogEntry) {
            let mut seen = self.0.lock().unwrap();
            seen.0 = seen.0.max(entry.sequence);
            if let Content::Ticket(events) = entry.content {
                for stored in events {
                    if let Event::CustomerMessageReceived {
                        body: MessageBody::Text(text),
                        ..
                    } = stored.event
                    {
                        seen.1.push(text.shown().to_owned());
                    }
                }
            }
        }
        fn reached_end(&self) {}
    }

    let h = harness().await;
    const CUSTOMERS: usize = 300;
    for n in 0..CUSTOMERS {
        customer_says(&h.store, &format!("4915200{n:06}"), &format!("hallo {n}")).await;
    }
    let now = h.store.log_last_sequence().await.unwrap();
    let client = h.server.connect().await.unwrap();
    let other = EventStore::open(client.clone(), test_config())
        .await
        .unwrap();
    let received = || {
        client
            .statistics()
            .in_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = received();
    let view = std::sync::Arc::new(FromNow(Mutex::new((now, Vec::new()))));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let following = tokio::spawn({
        let (other, view, shutdown) = (other.clone(), view.clone(), shutdown.clone());
        async move {
            other
                .follow("from now", Subjects::Tickets, view.as_ref(), &shutdown)
                .await
        }
    });
    customer_says(&h.store, "4915299999999", "neu hier").await;
    eventually("the new customer's message is followed", || {
        let view = view.clone();
        async move { !view.0.lock().unwrap().1.is_empty() }
    })
    .await;
    assert_eq!(view.0.lock().unwrap().1, ["neu hier"]);
    // Every key of the 300 customers before would be far more than this: a preload is
    // what a replay from the start needs, not a view from now on.
    let bytes = received() - before;
    assert!(
        bytes < 12_000,
        "{bytes} bytes received for one new customer's message: the keys were preloaded"
    );
    shutdown.cancel();
    following.await.unwrap();
}
