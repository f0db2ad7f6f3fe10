//! `helpline rebuild`: the query projection rebuilt from 100 000 events equals the live
//! one, and the command shows its progress and a summary.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use helpline_domain::{
    AgentId, Channel, Customer, Details, Event, HandoffReason, MessageBody, MessageId, Personal,
    QueueId, RouteDestination, TicketId,
};
use helpline_eventstore::codec::{self, Sealer};
use helpline_eventstore::{EnvelopeMeta, EventStore, SCHEMA_VERSION, StoreConfig};
use helpline_query::{LiveProjection, Progress};
use helpline_testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TICKETS: usize = 10_000;
const EVENTS_PER_TICKET: usize = 10;
const EVENTS: u64 = (TICKETS * EVENTS_PER_TICKET) as u64;
/// Publishes awaiting their ack at once.
const ACKS_IN_FLIGHT: usize = 4096;

async fn start() -> (NatsServer, EventStore) {
    let server = NatsServer::start()
        .await
        .unwrap_or_else(|e| panic!("nats-server: {e}"));
    let client = server
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let store = EventStore::ensure(client, StoreConfig::new("de"))
        .await
        .unwrap_or_else(|e| panic!("ensure: {e}"));
    (server, store)
}

/// The `n`-th event of a ticket's life, from opening to resolution.
/// Customers the tickets belong to (each has a data key).
const CUSTOMERS: usize = 100;

fn event(ticket: TicketId, i: usize, n: usize) -> Event {
    let agent = AgentId::new(format!("agent-{}", i % 17));
    let queue = QueueId::new(["de-laptops", "de-phones", "de-tablets"][i % 3]);
    match n {
        0 => Event::TicketOpened {
            ticket,
            customer: Customer {
                channel: Channel::ALL[i % Channel::ALL.len()],
                contact: Personal::from(format!("49151{i:08}")),
                display_name: None,
            },
            language: "de".to_owned(),
        },
        1 => Event::CustomerMessageReceived {
            message: MessageId(Uuid::now_v7()),
            provider_message_id: format!("wamid.{i}").into(),
            body: MessageBody::Text(Personal::from(format!("Mein Laptop {i} startet nicht"))),
        },
        2 => Event::BotMessageSent {
            message: MessageId(Uuid::now_v7()),
            body: MessageBody::Text(Personal::from("Welches Gerät haben Sie?")),
            prompt: "ask_product".to_owned(),
            choices: Vec::new(),
        },
        3 => Event::DetailsCaptured(Details {
            product: "MateBook X Pro".to_owned(),
            problem: Personal::from("startet nicht"),
            category: "hardware".to_owned(),
            ..Details::default()
        }),
        4 => Event::HandoffRequested {
            reason: HandoffReason::DetailsComplete,
            summary: Personal::from("MateBook X Pro, startet nicht"),
        },
        5 => Event::TicketRouted {
            rule: "laptops".to_owned(),
            destination: RouteDestination::Queue(queue.clone()),
        },
        6 => Event::TicketQueued { queue },
        7 => Event::AgentAssigned {
            agent: agent.clone(),
        },
        8 => Event::AgentMessageSent {
            agent,
            message: MessageId(Uuid::now_v7()),
            body: MessageBody::Text(Personal::from("Ich helfe Ihnen gern")),
        },
        _ => Event::TicketResolved {
            agent,
            summary: "Akku getauscht".to_owned(),
        },
    }
}

/// Appends 10 events to each of 10 000 tickets, round by round so tickets interleave,
/// as pipelined publishes of encoded envelopes; one connection keeps each ticket's order.
async fn fill(store: &EventStore) {
    let started = SystemTime::now();
    let tickets: Vec<TicketId> = (0..TICKETS).map(|_| TicketId(Uuid::now_v7())).collect();
    let js = store.jetstream();
    // Sealed like appended events, under 100 customers' keys, so the rebuild opens them.
    let mut customers = Vec::new();
    for c in 0..CUSTOMERS {
        let customer = store.customer_id(Channel::WhatsApp, &format!("+49151{c:08}"));
        let (key, key_ref) = store
            .customer_key(&customer)
            .await
            .unwrap_or_else(|e| panic!("customer key: {e}"));
        customers.push((customer, key, key_ref));
    }
    let mut in_flight = FuturesUnordered::new();
    for n in 0..EVENTS_PER_TICKET {
        for (i, &ticket) in tickets.iter().enumerate() {
            let meta = EnvelopeMeta {
                event_id: Uuid::now_v7(),
                ticket,
                region: "de".to_owned(),
                occurred_at: started + Duration::from_millis((n * TICKETS + i) as u64),
                command_id: Uuid::now_v7(),
                causation_id: String::new(),
                correlation_id: String::new(),
                schema_version: SCHEMA_VERSION,
                customer: None,
            };
            let (customer, key, key_ref) = &customers[i % CUSTOMERS];
            let sealer = Sealer {
                customer,
                key,
                key_ref: *key_ref,
            };
            let payload = codec::encode(&meta, &event(ticket, i, n), Some(sealer))
                .unwrap_or_else(|e| panic!("encode: {e}"));
            let payload = Bytes::from(payload);
            let ack = js
                .publish(store.layout().ticket_subject(ticket), payload)
                .await
                .unwrap_or_else(|e| panic!("publish: {e}"));
            in_flight.push(ack.into_future());
            if in_flight.len() >= ACKS_IN_FLIGHT
                && let Some(ack) = in_flight.next().await
            {
                ack.unwrap_or_else(|e| panic!("publish not acknowledged: {e}"));
            }
        }
    }
    while let Some(ack) = in_flight.next().await {
        ack.unwrap_or_else(|e| panic!("publish not acknowledged: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_over_100000_events_equals_the_live_projection() {
    let (_server, store) = start().await;
    let live = LiveProjection::default();
    let stop = CancellationToken::new();
    let follower = tokio::spawn({
        let (live, store, stop) = (live.clone(), store.clone(), stop.clone());
        async move { live.follow(&store, stop).await }
    });
    fill(&store).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while live.last_sequence() < EVENTS {
        assert!(
            Instant::now() < deadline,
            "the live projection stopped at {}",
            live.last_sequence()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    follower.await.unwrap_or_else(|e| panic!("follower: {e}"));

    let reports = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let (rebuilt, replayed) = helpline_query::rebuild(&store, {
        let reports = reports.clone();
        move |progress| {
            reports
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(progress)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("rebuild: {e}"));

    assert_eq!(replayed.events, EVENTS);
    assert_eq!(replayed.last_sequence, EVENTS);
    assert_eq!(rebuilt.events(), EVENTS);
    assert_eq!(rebuilt.ticket_count(), TICKETS);
    let reports = reports
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert_eq!(
        reports.last(),
        Some(&Progress {
            done: EVENTS,
            total: EVENTS
        })
    );
    assert!(
        reports.windows(2).all(|w| w[0].done <= w[1].done),
        "{reports:?}"
    );
    let snapshot = live.snapshot();
    assert!(
        snapshot == rebuilt,
        "the rebuild differs from the live projection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helpline_rebuild_shows_progress_and_a_summary() {
    let (server, store) = start().await;
    fill(&store).await;
    let rebuild = |projection: &str| {
        Command::new(env!("CARGO_BIN_EXE_helpline"))
            .args(["--log-format", "json", "rebuild", projection])
            .env("HELPLINE_NATS_URL", server.url())
            .env("HELPLINE_LOG", "warn")
            .output()
            .unwrap_or_else(|e| panic!("helpline: {e}"))
    };

    let output = rebuild("query");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("rebuild query: 0/100000 events (0%)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("rebuild query: 100000/100000 events (100%)"),
        "{stderr}"
    );
    assert!(stderr.contains(" events/s"), "{stderr}");
    let summary = stdout
        .lines()
        .find(|line| line.starts_with("rebuilt query: "))
        .unwrap_or_else(|| panic!("no summary in {stdout}"));
    assert!(summary.contains("100000 events in "), "{summary}");
    assert!(summary.contains(" events/s), 10000 tickets"), "{summary}");

    let output = rebuild("csat");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("rebuilt csat: 100000 events in "),
        "{stdout}"
    );

    let output = rebuild("tickets");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("query") && stderr.contains("csat"),
        "{stderr}"
    );
}
