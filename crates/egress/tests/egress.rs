//! Egress end to end: a real nats-server, the real channel simulator, `egress::run`.
//!
//! Tickets are opened by appending domain events; egress sends their bot messages to the
//! simulator and appends the outcome. The tests assert on what customers received and on
//! the tickets' events, never on wall-clock time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, SystemTime};

use helpline_domain::{Channel, Customer, Event, MessageBody, MessageId, Personal, TicketId};
use helpline_egress::{self as egress, EgressConfig, EgressError, RetryPolicy, WhatsAppTemplate};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig, StoreError, outbound};
use helpline_testkit::NatsServer;
use helpline_testkit::simulator::{Fault, Received, Simulator, SimulatorConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TEMPLATE: &str = "ticket_update";

struct Harness {
    _server: NatsServer,
    store: EventStore,
    sim: Simulator,
}

async fn harness() -> Harness {
    harness_with(StoreConfig::default().max_deliver).await
}

async fn harness_with(max_deliver: i64) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = NatsServer::start().await.expect("nats-server starts");
    let client = server.connect().await.expect("connect");
    let config = StoreConfig {
        retry_backoff: Duration::from_millis(20),
        max_deliver,
        // Tries counted, not time: what runs out here is `max_deliver`.
        retry_for: Duration::ZERO,
        ..StoreConfig::new("de")
    };
    let store = EventStore::ensure(client, config).await.expect("ensure");
    let sim = Simulator::start(SimulatorConfig::default())
        .await
        .expect("simulator starts");
    Harness {
        _server: server,
        store,
        sim,
    }
}

/// Every channel pointed at the simulator, short timeouts and budgets for tests.
fn config(sim: &Simulator, template: Option<&str>) -> EgressConfig {
    EgressConfig {
        channels: serde_json::from_value(sim.helpline_channels()).unwrap(),
        whatsapp_template: template.map(|name| WhatsAppTemplate {
            name: name.to_owned(),
            language: "de".to_owned(),
        }),
        retry: RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(20),
        },
        request_timeout: Duration::from_millis(800),
        jitter_seed: Some(1),
        ..EgressConfig::default()
    }
}

/// A running egress; stopped (and checked) with [`Running::stop`].
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), EgressError>>,
}

fn start(store: &EventStore, config: EgressConfig) -> Running {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(egress::run(store.clone(), config, shutdown.clone()));
    Running { shutdown, task }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("egress task")
            .expect("egress ends cleanly");
    }
}

/// Appends one event as its own command, reloading when egress appended in between.
async fn append(store: &EventStore, ticket: TicketId, event: Event, at: SystemTime) {
    let command = CommandMeta::new(Uuid::now_v7(), at);
    loop {
        let version = store.load(ticket).await.unwrap().version;
        match store
            .append(ticket, version, std::slice::from_ref(&event), &command)
            .await
        {
            Ok(_) => return,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => panic!("append failed: {e}"),
        }
    }
}

/// Opens a ticket for `contact` on `channel`, with one customer message written at
/// `customer_wrote`.
async fn open(
    store: &EventStore,
    channel: Channel,
    contact: &str,
    customer_wrote: SystemTime,
) -> TicketId {
    let ticket = TicketId(Uuid::now_v7());
    let opened = Event::TicketOpened {
        ticket,
        customer: Customer {
            channel,
            contact: Personal::new(contact.to_owned()),
            display_name: None,
        },
        language: "de".to_owned(),
    };
    append(store, ticket, opened, customer_wrote).await;
    let wrote = Event::CustomerMessageReceived {
        message: MessageId(Uuid::now_v7()),
        provider_message_id: format!("in-{}", Uuid::now_v7().simple()).into(),
        body: MessageBody::Text(Personal::new("Mein Laptop startet nicht".to_owned())),
    };
    append(store, ticket, wrote, customer_wrote).await;
    ticket
}

async fn bot_says(store: &EventStore, ticket: TicketId, text: &str) -> MessageId {
    let message = MessageId(Uuid::now_v7());
    let event = Event::BotMessageSent {
        message,
        body: MessageBody::Text(Personal::new(text.to_owned())),
        prompt: "test".to_owned(),
        choices: vec![],
    };
    append(store, ticket, event, SystemTime::now()).await;
    message
}

/// The ticket's events, in order, read by Direct Get.
async fn events(store: &EventStore, ticket: TicketId) -> Vec<Event> {
    let events = store.ticket_events(ticket).await.unwrap();
    events.into_iter().map(|(_, _, event)| event).collect()
}

/// `(message, provider id)` of every `MessageDelivered`, in log order.
async fn delivered(store: &EventStore, ticket: TicketId) -> Vec<(MessageId, String)> {
    events(store, ticket)
        .await
        .into_iter()
        .filter_map(|event| match event {
            Event::MessageDelivered {
                message,
                provider_message_id,
            } => Some((message, provider_message_id.expose().clone())),
            _ => None,
        })
        .collect()
}

/// `(message, reason, permanent)` of every `MessageDeliveryFailed`.
async fn failed(store: &EventStore, ticket: TicketId) -> Vec<(MessageId, String, bool)> {
    events(store, ticket)
        .await
        .into_iter()
        .filter_map(|event| match event {
            Event::MessageDeliveryFailed {
                message,
                reason,
                permanent,
            } => Some((message, reason.expose().clone(), permanent)),
            _ => None,
        })
        .collect()
}

/// Polls `check` until it holds, for at most thirty seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The outbound bucket: provider message id → ticket and message, for receipts.
async fn outbound_index(store: &EventStore) -> async_nats::jetstream::kv::Store {
    store
        .jetstream()
        .get_key_value(outbound::outbound_bucket(store.layout()))
        .await
        .unwrap()
}

/// Runs egress until the ticket's first message is recorded as delivered, then stops
/// it; the provider's id for that message.
async fn first_delivery(h: &Harness, ticket: TicketId) -> String {
    let store = &h.store;
    let running = start(store, config(&h.sim, None));
    eventually("the delivery recorded", || async move {
        !delivered(store, ticket).await.is_empty()
    })
    .await;
    running.stop().await;
    delivered(store, ticket).await[0].1.clone()
}

/// Waits until the egress consumer has nothing pending or unacknowledged, three checks
/// in a row.
async fn drained(store: &EventStore) {
    let mut quiet = 0;
    for _ in 0..600 {
        let idle = store
            .consumer_backlog(egress::OUTBOUND_CONSUMER)
            .await
            .is_ok_and(|backlog| backlog.is_empty());
        quiet = if idle { quiet + 1 } else { 0 };
        if quiet >= 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for the egress consumer to drain");
}

fn texts(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.text.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_429_storm_delays_but_delivers_every_message_once_in_order() {
    let h = harness().await;
    let store = &h.store;
    // Telegram chat ids are numbers.
    let customers = ["100001", "100002"];
    const N: usize = 5;
    h.sim.inject(
        Channel::Telegram,
        Fault::RateLimited {
            times: 3,
            retry_after_secs: 1,
        },
    );
    let now = SystemTime::now();
    let tickets = [
        open(store, Channel::Telegram, customers[0], now).await,
        open(store, Channel::Telegram, customers[1], now).await,
    ];
    let mut sent: [Vec<MessageId>; 2] = Default::default();
    for i in 0..N {
        for (c, ticket) in tickets.iter().enumerate() {
            sent[c].push(bot_says(store, *ticket, &format!("kunde {c} nachricht {i}")).await);
        }
    }
    let running = start(store, config(&h.sim, None));

    for (c, ticket) in tickets.iter().enumerate() {
        eventually("every message recorded as delivered", || async move {
            delivered(store, *ticket).await.len() >= N
        })
        .await;
        let received = h.sim.received(Channel::Telegram, customers[c]);
        let expected: Vec<String> = (0..N).map(|i| format!("kunde {c} nachricht {i}")).collect();
        assert_eq!(texts(&received), expected, "exactly once, in order");
        let recorded = delivered(store, *ticket).await;
        assert_eq!(
            recorded.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
            sent[c],
            "one MessageDelivered per message, in order"
        );
        let provider_ids: Vec<String> = received
            .iter()
            .map(|r| r.provider_message_id.clone())
            .collect();
        assert_eq!(
            recorded.into_iter().map(|(_, id)| id).collect::<Vec<_>>(),
            provider_ids
        );
        assert!(failed(store, *ticket).await.is_empty());
    }
    assert_eq!(h.sim.send_attempts(Channel::Telegram), 2 * N + 3);
    drained(store).await;
    running.stop().await;
}

#[tokio::test]
async fn server_errors_and_timeouts_are_retried_without_duplicates() {
    let h = harness().await;
    let store = &h.store;
    h.sim
        .inject(Channel::Messenger, Fault::ServerError { times: 2 });
    h.sim.inject(
        Channel::Messenger,
        Fault::Timeout {
            times: 1,
            delay: Duration::from_secs(3),
        },
    );
    let ticket = open(
        store,
        Channel::Messenger,
        "6543210987654321",
        SystemTime::now(),
    )
    .await;
    let message = bot_says(store, ticket, "Wir kümmern uns 👋🏽").await;
    let running = start(store, config(&h.sim, None));

    eventually("the message is recorded as delivered", || async move {
        !delivered(store, ticket).await.is_empty()
    })
    .await;
    let received = h.sim.received(Channel::Messenger, "6543210987654321");
    assert_eq!(texts(&received), ["Wir kümmern uns 👋🏽"]);
    assert_eq!(
        delivered(store, ticket).await,
        [(message, received[0].provider_message_id.clone())]
    );
    assert_eq!(h.sim.send_attempts(Channel::Messenger), 4);
    running.stop().await;
}

#[tokio::test]
async fn exhausted_retries_are_redelivered_and_keep_the_order() {
    // Enough deliveries that the held messages never reach their last one here.
    let h = harness_with(50).await;
    let store = &h.store;
    h.sim
        .inject(Channel::Viber, Fault::ServerError { times: 3 });
    let customer = "01234567890B=";
    let ticket = open(store, Channel::Viber, customer, SystemTime::now()).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(bot_says(store, ticket, &format!("teil {i}")).await);
    }
    let mut config = config(&h.sim, None);
    // Two attempts per delivery: the first message runs out of them once.
    config.retry.max_attempts = 2;
    let running = start(store, config);

    eventually("all three recorded as delivered", || async move {
        delivered(store, ticket).await.len() == 3
    })
    .await;
    drained(store).await;
    running.stop().await;
    assert_eq!(
        texts(&h.sim.received(Channel::Viber, customer)),
        ["teil 0", "teil 1", "teil 2"]
    );
    assert_eq!(h.sim.send_attempts(Channel::Viber), 3 + 3);
    let recorded = delivered(store, ticket).await;
    assert_eq!(recorded.iter().map(|(m, _)| *m).collect::<Vec<_>>(), sent);
    assert!(failed(store, ticket).await.is_empty());
}

#[tokio::test]
async fn a_rejected_message_fails_permanently_with_the_providers_reason() {
    let h = harness().await;
    let store = &h.store;
    h.sim.inject(
        Channel::WhatsApp,
        Fault::Reject {
            times: 1,
            status: 400,
            code: 131026,
            message: "Message undeliverable".to_owned(),
        },
    );
    h.sim.inject(
        Channel::Viber,
        Fault::Reject {
            times: 1,
            status: 200,
            code: 5,
            message: "receiverNotRegistered".to_owned(),
        },
    );
    let now = SystemTime::now();
    let whatsapp = open(store, Channel::WhatsApp, "4915112345678", now).await;
    let viber = open(store, Channel::Viber, "01234567890A=", now).await;
    let refused = bot_says(store, whatsapp, "erste").await;
    let next = bot_says(store, whatsapp, "zweite").await;
    let refused_viber = bot_says(store, viber, "hallo").await;
    let running = start(store, config(&h.sim, None));

    eventually("both whatsapp outcomes recorded", || async move {
        !failed(store, whatsapp).await.is_empty() && !delivered(store, whatsapp).await.is_empty()
    })
    .await;
    let failures = failed(store, whatsapp).await;
    assert_eq!(failures.len(), 1);
    let (message, reason, permanent) = &failures[0];
    assert_eq!(*message, refused);
    assert!(*permanent);
    assert!(
        reason.contains("Message undeliverable") && reason.contains("131026"),
        "{reason}"
    );
    // A refusal does not hold back the customer's next message.
    assert_eq!(delivered(store, whatsapp).await[0].0, next);
    assert_eq!(
        texts(&h.sim.received(Channel::WhatsApp, "4915112345678")),
        ["zweite"]
    );
    assert_eq!(
        h.sim.send_attempts(Channel::WhatsApp),
        2,
        "a refusal is not retried"
    );

    eventually("the viber failure recorded", || async move {
        !failed(store, viber).await.is_empty()
    })
    .await;
    let failures = failed(store, viber).await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, refused_viber);
    assert!(failures[0].2);
    assert!(failures[0].1.contains("status 5"), "{}", failures[0].1);
    assert!(h.sim.received(Channel::Viber, "01234567890A=").is_empty());
    running.stop().await;
}

#[tokio::test]
async fn a_message_whose_tries_run_out_is_dead_lettered_without_the_provider_s_words() {
    let h = harness_with(2).await;
    let store = &h.store;
    let number = "4915112345678";
    // A provider's error text that names the customer, on a status worth retrying.
    let words = format!("Recipient {number} (Erika Mustermann) is temporarily unavailable");
    h.sim.inject(
        Channel::WhatsApp,
        Fault::Reject {
            times: 10,
            status: 503,
            code: 131000,
            message: words.clone(),
        },
    );
    let ticket = open(store, Channel::WhatsApp, number, SystemTime::now()).await;
    let message = bot_says(store, ticket, "erste").await;
    let mut config = config(&h.sim, None);
    config.retry.max_attempts = 1;
    let running = start(store, config);

    eventually("the failure recorded", || async move {
        !failed(store, ticket).await.is_empty()
    })
    .await;
    // The agent reads the provider's words in the event, opened with the customer's key.
    let failures = failed(store, ticket).await;
    let (failed_message, reason, permanent) = &failures[0];
    assert_eq!((*failed_message, *permanent), (message, false));
    assert!(reason.contains(&words), "{reason}");
    // The dead letter (and so the log line of the handler's error) says only the status
    // and the code.
    let stream = store
        .jetstream()
        .get_stream(store.layout().dead_letter_stream())
        .await
        .unwrap();
    let mut dead = None;
    for _ in 0..600 {
        match stream
            .get_last_raw_message_by_subject(
                &store
                    .layout()
                    .dead_letter_subject(egress::OUTBOUND_CONSUMER),
            )
            .await
        {
            Ok(found) => {
                dead = Some(found);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let dead = dead.expect("a dead letter");
    let said = dead
        .headers
        .get("Helpline-Dead-Letter-Reason")
        .map(|value| value.as_str().to_owned())
        .unwrap_or_default();
    assert!(
        said.contains("whatsapp answered 503, error 131000"),
        "{said}"
    );
    for secret in [number, "Erika Mustermann"] {
        assert!(!said.contains(secret), "{said}");
        assert!(
            !dead
                .payload
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "{secret} in the dead letter's event"
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn redelivered_events_send_nothing_twice() {
    let h = harness().await;
    let store = &h.store;
    let customer = "4915198765432";
    let ticket = open(store, Channel::WhatsApp, customer, SystemTime::now()).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(bot_says(store, ticket, &format!("antwort {i}")).await);
    }
    let running = start(store, config(&h.sim, None));
    eventually("three messages recorded", || async move {
        delivered(store, ticket).await.len() == 3
    })
    .await;
    drained(store).await;
    running.stop().await;

    // As after a crash before the acks: the consumer is reset and every event of the
    // stream is delivered again.
    let stream = store
        .jetstream()
        .get_stream_no_info(store.layout().event_stream())
        .await
        .unwrap();
    for partition in 0..store.config().partition_count() {
        stream
            .delete_consumer(&helpline_eventstore::subscribe::partition_consumer_name(
                egress::OUTBOUND_CONSUMER,
                partition,
            ))
            .await
            .unwrap();
    }
    let running = start(store, config(&h.sim, None));
    drained(store).await;
    running.stop().await;

    assert_eq!(
        texts(&h.sim.received(Channel::WhatsApp, customer)),
        ["antwort 0", "antwort 1", "antwort 2"]
    );
    assert_eq!(h.sim.send_attempts(Channel::WhatsApp), 3);
    let recorded = delivered(store, ticket).await;
    assert_eq!(recorded.iter().map(|(m, _)| *m).collect::<Vec<_>>(), sent);
}

#[tokio::test]
async fn a_crash_after_the_outcome_was_recorded_sends_nothing_again_and_indexes_the_message() {
    let h = harness().await;
    let store = &h.store;
    let customer = "01234567890B=";
    let ticket = open(store, Channel::Viber, customer, SystemTime::now()).await;
    let message = bot_says(store, ticket, "schon gesendet").await;
    // What a crash right after the outcome was appended leaves behind: the event, not yet
    // acknowledged, and no reverse entry for the provider's id.
    append(
        store,
        ticket,
        Event::MessageDelivered {
            message,
            provider_message_id: "5741311803571721087".into(),
        },
        SystemTime::now(),
    )
    .await;
    let running = start(store, config(&h.sim, None));
    drained(store).await;
    let bucket = outbound_index(store).await;
    let key = outbound::provider_key(
        Channel::Viber,
        &store.provider_ref(Channel::Viber, "5741311803571721087"),
    );
    eventually("the reverse entry written", || {
        let (bucket, key) = (bucket.clone(), key.clone());
        async move { bucket.get(&key).await.unwrap().is_some() }
    })
    .await;
    running.stop().await;
    let entry: outbound::ProviderEntry =
        serde_json::from_slice(&bucket.get(&key).await.unwrap().unwrap()).unwrap();
    assert_eq!((entry.ticket, entry.message), (ticket, message));
    assert_eq!(
        delivered(store, ticket).await,
        [(message, "5741311803571721087".to_owned())]
    );
    assert_eq!(h.sim.send_attempts(Channel::Viber), 0);
    assert!(h.sim.received(Channel::Viber, customer).is_empty());
}

#[tokio::test]
async fn whatsapp_outside_the_window_gets_the_template() {
    let h = harness().await;
    let store = &h.store;
    let long_ago = SystemTime::now() - Duration::from_secs(25 * 60 * 60);
    let quiet = open(store, Channel::WhatsApp, "4915100000001", long_ago).await;
    let quiet_message = bot_says(store, quiet, "Ihr Gerät ist repariert").await;
    // Inside the window by our clock, but the provider says 131047: the template, once.
    h.sim
        .inject(Channel::WhatsApp, Fault::CustomerOutsideWindow { times: 1 });
    let refused = open(store, Channel::WhatsApp, "4915100000002", SystemTime::now()).await;
    let refused_message = bot_says(store, refused, "Noch da?").await;
    let running = start(store, config(&h.sim, Some(TEMPLATE)));

    for (ticket, message, customer) in [
        (quiet, quiet_message, "4915100000001"),
        (refused, refused_message, "4915100000002"),
    ] {
        eventually("the template recorded as delivered", || async move {
            !delivered(store, ticket).await.is_empty()
        })
        .await;
        let received = h.sim.received(Channel::WhatsApp, customer);
        assert_eq!(received.len(), 1, "{received:?}");
        assert_eq!(received[0].template.as_deref(), Some(TEMPLATE));
        assert_eq!(received[0].text, None, "no free text outside the window");
        assert_eq!(
            delivered(store, ticket).await,
            [(message, received[0].provider_message_id.clone())]
        );
    }
    running.stop().await;
}

#[tokio::test]
async fn whatsapp_outside_the_window_without_a_template_fails_permanently() {
    let h = harness().await;
    let store = &h.store;
    let long_ago = SystemTime::now() - Duration::from_secs(30 * 60 * 60);
    let ticket = open(store, Channel::WhatsApp, "4915100000003", long_ago).await;
    let message = bot_says(store, ticket, "Hallo?").await;
    let running = start(store, config(&h.sim, None));

    eventually("the failure recorded", || async move {
        !failed(store, ticket).await.is_empty()
    })
    .await;
    let failures = failed(store, ticket).await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, message);
    assert!(failures[0].1.contains("24-hour"), "{}", failures[0].1);
    assert!(failures[0].2);
    assert_eq!(h.sim.send_attempts(Channel::WhatsApp), 0);
    running.stop().await;
}

#[tokio::test]
async fn web_chat_replies_are_signed_and_keyed_by_message() {
    let h = harness().await;
    let store = &h.store;
    let ticket = open(
        store,
        Channel::WebChat,
        "sess_9f8e7d6c5b4a",
        SystemTime::now(),
    )
    .await;
    let message = bot_says(store, ticket, "Willkommen").await;
    let running = start(store, config(&h.sim, None));

    eventually("the reply recorded", || async move {
        !delivered(store, ticket).await.is_empty()
    })
    .await;
    let received = h.sim.received(Channel::WebChat, "sess_9f8e7d6c5b4a");
    assert_eq!(texts(&received), ["Willkommen"]);
    assert_eq!(
        received[0].idempotency_key.as_deref(),
        Some(message.0.to_string().as_str())
    );
    assert_eq!(
        delivered(store, ticket).await,
        [(message, format!("out_{}", message.0))]
    );
    running.stop().await;
}

#[tokio::test]
async fn an_accepted_message_can_be_found_by_its_provider_id() {
    let h = harness().await;
    let store = &h.store;
    // Viber reports on the messages it accepted (delivered, seen, failed).
    let ticket = open(store, Channel::Viber, "01234567890A=", SystemTime::now()).await;
    let message = bot_says(store, ticket, "Wir melden uns").await;
    let provider_id = first_delivery(&h, ticket).await;
    let bucket = outbound_index(store).await;
    let key = |channel| outbound::provider_key(channel, &store.provider_ref(channel, &provider_id));
    let entry = bucket
        .get(key(Channel::Viber))
        .await
        .unwrap()
        .expect("a reverse entry for the provider id");
    assert_eq!(
        serde_json::from_slice::<outbound::ProviderEntry>(&entry).unwrap(),
        outbound::ProviderEntry { ticket, message }
    );
    assert!(
        bucket.get(key(Channel::WhatsApp)).await.unwrap().is_none(),
        "keyed per channel"
    );
}

#[tokio::test]
async fn a_message_on_a_channel_without_receipts_gets_no_reverse_entry() {
    let h = harness().await;
    let store = &h.store;
    // Telegram's Bot API says nothing about a message after accepting it.
    let ticket = open(store, Channel::Telegram, "100077", SystemTime::now()).await;
    bot_says(store, ticket, "Wir melden uns").await;
    let provider_id = first_delivery(&h, ticket).await;
    let bucket = outbound_index(store).await;
    let key = outbound::provider_key(
        Channel::Telegram,
        &store.provider_ref(Channel::Telegram, &provider_id),
    );
    assert!(bucket.get(key).await.unwrap().is_none());
    assert_eq!(bucket.status().await.unwrap().values(), 0);
}

#[tokio::test]
async fn a_customer_whose_sends_hang_holds_back_no_one_else() {
    let h = harness().await;
    let store = &h.store;
    let stuck = "4917699999999";
    h.sim.hang_whatsapp_sends_to(stuck);
    let stuck_ticket = open(store, Channel::WhatsApp, stuck, SystemTime::now()).await;
    bot_says(store, stuck_ticket, "hängt").await;
    bot_says(store, stuck_ticket, "wartet dahinter").await;
    let mut config = config(&h.sim, None);
    // The provider never answers: only the request timeout ends each try.
    config.request_timeout = Duration::from_secs(30);
    let running = start(store, config);

    let others: Vec<String> = (0..50).map(|i| format!("49151{i:08}")).collect();
    for contact in &others {
        let ticket = open(store, Channel::WhatsApp, contact, SystemTime::now()).await;
        bot_says(store, ticket, "Hallo").await;
    }
    eventually("all 50 other customers have their reply", || async {
        others
            .iter()
            .all(|contact| texts(&h.sim.received(Channel::WhatsApp, contact)) == ["Hallo"])
    })
    .await;
    assert!(
        h.sim.received(Channel::WhatsApp, stuck).is_empty(),
        "the hung customer got nothing, and nothing out of order"
    );
    h.sim.clear_faults();
    eventually("the hung customer's messages go out, in order", || async {
        texts(&h.sim.received(Channel::WhatsApp, stuck)).len() == 2
    })
    .await;
    assert_eq!(
        texts(&h.sim.received(Channel::WhatsApp, stuck)),
        ["hängt", "wartet dahinter"]
    );
    running.stop().await;
}
