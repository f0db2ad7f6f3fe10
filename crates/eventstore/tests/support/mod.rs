//! Fixtures for the event store's integration tests: a real nats-server per test, a
//! store on it, and ready-made events.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod lossy;

use std::time::{Duration, SystemTime};

use helpline_domain::{Channel, Customer, Event, MessageBody, MessageId, Personal, TicketId};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_testkit::NatsServer;
use uuid::Uuid;

pub struct Harness {
    pub server: NatsServer,
    pub store: EventStore,
}

pub async fn harness() -> Harness {
    harness_with(test_config()).await
}

pub fn test_config() -> StoreConfig {
    StoreConfig {
        retry_backoff: Duration::from_millis(10),
        // Tries counted, not time: a test's poison is parked after `max_deliver` tries.
        retry_for: Duration::ZERO,
        ..StoreConfig::new("de")
    }
}

pub async fn harness_with(config: StoreConfig) -> Harness {
    let server = NatsServer::start().await.expect("nats-server starts");
    let client = server.connect().await.expect("connect");
    let store = EventStore::ensure(client, config).await.expect("ensure");
    Harness { server, store }
}

pub fn ticket() -> TicketId {
    TicketId(Uuid::now_v7())
}

pub fn command() -> CommandMeta {
    CommandMeta::new(Uuid::now_v7(), SystemTime::now())
}

pub fn opened(ticket: TicketId) -> Event {
    Event::TicketOpened {
        ticket,
        customer: Customer {
            channel: Channel::WhatsApp,
            contact: Personal::new("4915112345678".to_owned()),
            display_name: Some(Personal::new("Jana".to_owned())),
        },
        language: "de".to_owned(),
    }
}

pub fn message(text: &str) -> Event {
    Event::CustomerMessageReceived {
        message: MessageId(Uuid::now_v7()),
        provider_message_id: format!("wamid.{}", Uuid::now_v7().simple()).into(),
        body: MessageBody::Text(Personal::new(text.to_owned())),
    }
}

/// Appends `opened` as the ticket's first event and returns the version.
pub async fn open(store: &EventStore, ticket: TicketId) -> u64 {
    store
        .append(ticket, 0, &[opened(ticket)], &command())
        .await
        .expect("open ticket")
        .version
}

/// Appends one customer message per text, each at the version the previous one left,
/// and returns the final version.
pub async fn say(store: &EventStore, ticket: TicketId, mut version: u64, texts: &[&str]) -> u64 {
    for text in texts {
        version = store
            .append(ticket, version, &[message(text)], &command())
            .await
            .expect("append message")
            .version;
    }
    version
}

/// Polls `check` until it holds, for at most ten seconds.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(10), check).await;
}

/// Polls `check` until it holds, for at most `within`.
pub async fn eventually_within<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The texts of the customer messages among `events`, as read (erased ones as `[erased]`).
pub fn texts(events: &[(u64, helpline_eventstore::EnvelopeMeta, Event)]) -> Vec<String> {
    events
        .iter()
        .filter_map(|(_, _, event)| match event {
            Event::CustomerMessageReceived {
                body: MessageBody::Text(text),
                ..
            } => Some(text.shown().to_owned()),
            _ => None,
        })
        .collect()
}

/// Messages `client` has sent to nats-server so far.
pub fn sent_by(client: &async_nats::Client) -> u64 {
    client
        .statistics()
        .out_messages
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Another process on the same server: a store of its own, with nothing cached.
pub async fn another_process(server: &NatsServer) -> EventStore {
    EventStore::open(server.connect().await.unwrap(), test_config())
        .await
        .unwrap()
}
