//! The bot service against a real nats-server: answers appear in the ticket's log, once,
//! across restarts; silent customers time out, also across a restart.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use async_nats::jetstream::consumer::pull;
use futures::StreamExt;
use helpline_bot::service::{CONSUMER, timer_stream, timer_subject};
use helpline_bot::{BotError, Flows, run};
use helpline_domain::{
    Channel, Command, Customer, Event, MessageBody, MessageId, Personal, Phase, StoreId,
    StoreReferral, Ticket, TicketId, decide,
};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig, StoreError};
use helpline_region::RegionConfig;
use helpline_testkit::NatsServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

type Result<T = ()> = anyhow::Result<T>;

struct Harness {
    server: NatsServer,
    store: EventStore,
}

async fn harness() -> Result<Harness> {
    let server = NatsServer::start().await?;
    let client = server.connect().await?;
    let config = StoreConfig {
        retry_backoff: Duration::from_millis(20),
        ..StoreConfig::new("de")
    };
    let store = EventStore::ensure(client, config).await?;
    Ok(Harness { server, store })
}

/// The German region, as shipped, with its silence timeout changed.
fn germany(silence_timeout_secs: u64) -> Result<RegionConfig> {
    let text = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
    let mut region = RegionConfig::from_region_file(text)?;
    region.bot.silence_timeout_secs = silence_timeout_secs;
    Ok(region)
}

/// A running bot.
struct Bot {
    shutdown: CancellationToken,
    task: JoinHandle<std::result::Result<(), BotError>>,
}

fn start(store: &EventStore, region: &RegionConfig) -> Bot {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(
        store.clone(),
        Arc::new(region.clone()),
        Arc::new(Flows::builtin()),
        shutdown.clone(),
    ));
    Bot { shutdown, task }
}

impl Bot {
    async fn stop(self) -> Result {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

fn command() -> CommandMeta {
    CommandMeta::new(Uuid::now_v7(), SystemTime::now())
}

async fn open(store: &EventStore) -> Result<TicketId> {
    let ticket = TicketId(Uuid::now_v7());
    let opened = Event::TicketOpened {
        ticket,
        customer: Customer {
            channel: Channel::WhatsApp,
            contact: Personal::new("4915112345678".to_owned()),
            display_name: None,
        },
        language: "de".to_owned(),
    };
    store.append(ticket, 0, &[opened], &command()).await?;
    Ok(ticket)
}

/// Decides `command` on the ticket as it is and appends it, again on a conflict with
/// the bot's own appends.
async fn execute(store: &EventStore, ticket: TicketId, command: Command) -> Result {
    let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
    for _ in 0..20 {
        let loaded = store.load(ticket).await?;
        let events = decide(&loaded.ticket, command.clone())?;
        match store.append(ticket, loaded.version, &events, &meta).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("the ticket kept changing")
}

async fn say(store: &EventStore, ticket: TicketId, text: &str) -> Result {
    let message = MessageId(Uuid::now_v7());
    let command = Command::ReceiveCustomerMessage {
        message,
        provider_message_id: format!("wamid.{}", message.0.simple()).into(),
        body: MessageBody::Text(Personal::new(text.to_owned())),
    };
    execute(store, ticket, command).await
}

/// The ticket's events, in order, read with an ordered consumer.
async fn events(store: &EventStore, id: TicketId) -> Result<Vec<Event>> {
    let count = usize::try_from(ticket(store, id).await?.events)?;
    let mut messages = store
        .jetstream()
        .get_stream_no_info(store.layout().event_stream())
        .await?
        .create_consumer(pull::OrderedConfig {
            filter_subject: store.layout().ticket_subject(id),
            ..Default::default()
        })
        .await?
        .messages()
        .await?;
    let mut events = Vec::new();
    while events.len() < count {
        let message = messages
            .next()
            .await
            .context("the ticket's events ended")??;
        events.extend(
            store
                .decode(&message.payload)
                .await?
                .into_iter()
                .map(|(_, event)| event),
        );
    }
    Ok(events)
}

/// The bot's messages: prompt and text.
fn bot_messages(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::BotMessageSent {
                prompt,
                body: MessageBody::Text(text),
                ..
            } => Some((prompt.clone(), text.expose().clone())),
            _ => None,
        })
        .collect()
}

async fn ticket(store: &EventStore, ticket: TicketId) -> Result<Ticket> {
    Ok(store.load(ticket).await?.ticket)
}

/// Polls the ticket until `check` holds, for at most 20 seconds.
async fn eventually(
    store: &EventStore,
    id: TicketId,
    what: &str,
    check: impl Fn(&Ticket) -> bool,
) -> Result<Ticket> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = ticket(store, id).await?;
        if check(&state) {
            return Ok(state);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for: {what}; the ticket is {state:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the bot's consumer has nothing pending or unacknowledged, three checks in
/// a row.
async fn drained(store: &EventStore) -> Result {
    let mut quiet = 0;
    for _ in 0..400 {
        let idle = store
            .consumer_backlog(CONSUMER)
            .await
            .is_ok_and(|backlog| backlog.is_empty());
        quiet = if idle { quiet + 1 } else { 0 };
        if quiet >= 3 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the bot's consumer did not drain")
}

fn prompts(ticket: &Ticket) -> Vec<(String, u32)> {
    ticket
        .prompts
        .iter()
        .map(|(prompt, count)| (prompt.clone(), *count))
        .collect()
}

fn counted(expected: &[(&str, u32)]) -> Vec<(String, u32)> {
    expected
        .iter()
        .map(|(prompt, count)| ((*prompt).to_owned(), *count))
        .collect()
}

#[tokio::test]
async fn the_bot_greets_and_asks_for_the_product() -> Result {
    let h = harness().await?;
    let bot = start(&h.store, &germany(3600)?);
    let id = open(&h.store).await?;
    say(&h.store, id, "Hallo").await?;
    let state = eventually(&h.store, id, "the first question", |t| {
        t.last_prompt == "ask_product"
    })
    .await?;
    assert_eq!(
        prompts(&state),
        counted(&[("ask_product", 1), ("greeting", 1)])
    );
    bot.stop().await
}

#[tokio::test]
async fn a_complete_intake_is_handed_over_with_a_summary() -> Result {
    let h = harness().await?;
    let bot = start(&h.store, &germany(3600)?);
    let id = open(&h.store).await?;
    say(
        &h.store,
        id,
        "MateBook X Pro, SN 2NS7N19B12345678, Bildschirm flackert",
    )
    .await?;
    let state = eventually(&h.store, id, "the handoff", |t| t.phase == Phase::Routing).await?;
    let details = state.details.clone().context("no details captured")?;
    assert_eq!(details.product, "MateBook X Pro");
    assert!(details.serial_verified);
    assert_eq!(prompts(&state), counted(&[("greeting", 1), ("handoff", 1)]));
    bot.stop().await
}

#[tokio::test]
async fn a_restarted_bot_continues_the_conversation_and_never_repeats_itself() -> Result {
    let h = harness().await?;
    let region = germany(3600)?;
    let bot = start(&h.store, &region);
    let id = open(&h.store).await?;
    say(&h.store, id, "Hallo").await?;
    eventually(&h.store, id, "the product question", |t| {
        t.last_prompt == "ask_product"
    })
    .await?;
    bot.stop().await?;

    say(&h.store, id, "Es geht um mein MateBook X Pro").await?;
    let bot = start(&h.store, &region);
    eventually(&h.store, id, "the serial question", |t| {
        t.last_prompt == "ask_serial"
    })
    .await?;
    say(&h.store, id, "2NS7N19B12345678").await?;
    eventually(&h.store, id, "the problem question", |t| {
        t.last_prompt == "ask_problem"
    })
    .await?;
    bot.stop().await?;

    // Every event delivered again from the start: each was answered already.
    let stream = h
        .store
        .jetstream()
        .get_stream_no_info(h.store.layout().event_stream())
        .await?;
    for partition in 0..h.store.config().partition_count() {
        stream
            .delete_consumer(&helpline_eventstore::subscribe::partition_consumer_name(
                CONSUMER, partition,
            ))
            .await?;
    }
    let bot = start(&h.store, &region);
    drained(&h.store).await?;
    let state = ticket(&h.store, id).await?;
    assert_eq!(
        prompts(&state),
        counted(&[
            ("ask_problem", 1),
            ("ask_product", 1),
            ("ask_serial", 1),
            ("greeting", 1),
        ])
    );
    assert_eq!(state.outbound_messages, 4);

    say(&h.store, id, "Das Display flackert").await?;
    eventually(&h.store, id, "the handoff", |t| t.phase == Phase::Routing).await?;
    let said: Vec<String> = bot_messages(&events(&h.store, id).await?)
        .into_iter()
        .map(|(prompt, _)| prompt)
        .collect();
    assert_eq!(
        said,
        [
            "greeting",
            "ask_product",
            "ask_serial",
            "ask_problem",
            "handoff"
        ]
    );
    bot.stop().await
}

#[tokio::test]
async fn a_silent_customer_is_abandoned() -> Result {
    let h = harness().await?;
    let bot = start(&h.store, &germany(2)?);
    let id = open(&h.store).await?;
    say(&h.store, id, "Hallo").await?;
    let state = eventually(&h.store, id, "the abandonment", |t| {
        t.phase == Phase::Abandoned
    })
    .await?;
    assert_eq!(state.prompted("abandoned"), 1);
    // A fired timer is acknowledged, and so gone from the timer stream.
    let timers = h
        .store
        .jetstream()
        .get_stream(timer_stream(&h.store))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while timers
        .get_last_raw_message_by_subject(&timer_subject(&h.store, id))
        .await
        .is_ok()
    {
        if Instant::now() > deadline {
            bail!("the fired timer is still stored");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bot.stop().await
}

#[tokio::test]
async fn a_ticket_opened_by_the_customers_first_message_arms_one_timer() -> Result {
    let h = harness().await?;
    // The bot on a connection and store of its own, as in a process of its own: what it
    // knows of the ticket comes from its consumer alone.
    let bot_store = EventStore::ensure(
        h.server.connect().await?,
        StoreConfig {
            retry_backoff: Duration::from_millis(20),
            ..StoreConfig::new("de")
        },
    )
    .await?;
    let bot = start(&bot_store, &germany(600)?);
    // As ingress writes a new customer's first message: the opening and the message,
    // one message of the log.
    let id = TicketId(Uuid::now_v7());
    let message = MessageId(Uuid::now_v7());
    let first = [
        Event::TicketOpened {
            ticket: id,
            customer: Customer {
                channel: Channel::WhatsApp,
                contact: Personal::new("4915112345678".to_owned()),
                display_name: None,
            },
            language: "de".to_owned(),
        },
        Event::CustomerMessageReceived {
            message,
            provider_message_id: format!("wamid.{}", message.0.simple()).into(),
            body: MessageBody::Text(Personal::new("Hallo".to_owned())),
        },
    ];
    h.store.append(id, 0, &first, &command()).await?;
    eventually(&h.store, id, "the product question", |t| {
        t.last_prompt == "ask_product"
    })
    .await?;
    drained(&bot_store).await?;
    bot.stop().await?;

    let timers = h
        .store
        .jetstream()
        .get_stream(timer_stream(&h.store))
        .await?;
    let armed = timers
        .get_last_raw_message_by_subject(&timer_subject(&h.store, id))
        .await?;
    let timer: helpline_bot::service::Timer = serde_json::from_slice(&armed.payload)?;
    assert_eq!(timer.customer_messages, 1);
    // One timer was ever written to the stream: none for the opening alone.
    assert_eq!(armed.sequence, 1);
    Ok(())
}

#[tokio::test]
async fn a_timer_armed_before_a_restart_fires_after_it() -> Result {
    let h = harness().await?;
    let region = germany(3)?;
    let bot = start(&h.store, &region);
    let id = open(&h.store).await?;
    say(&h.store, id, "Hallo").await?;
    eventually(&h.store, id, "the product question", |t| {
        t.last_prompt == "ask_product"
    })
    .await?;
    bot.stop().await?;

    let armed = h
        .store
        .jetstream()
        .get_stream(timer_stream(&h.store))
        .await?
        .get_last_raw_message_by_subject(&timer_subject(&h.store, id))
        .await?;
    let timer: helpline_bot::service::Timer = serde_json::from_slice(&armed.payload)?;
    assert_eq!(timer.customer_messages, 1);
    assert_eq!(ticket(&h.store, id).await?.phase, Phase::Open);

    let bot = start(&h.store, &region);
    let state = eventually(&h.store, id, "the abandonment", |t| {
        t.phase == Phase::Abandoned
    })
    .await?;
    assert_eq!(state.prompted("abandoned"), 1);
    bot.stop().await
}

#[tokio::test]
async fn a_referred_customer_who_does_not_rate_is_closed_unrated() -> Result {
    let h = harness().await?;
    let bot = start(&h.store, &germany(4)?);
    let id = open(&h.store).await?;
    say(&h.store, id, "MateBook, Display defekt, 10115 Berlin").await?;
    eventually(&h.store, id, "the handoff", |t| t.phase == Phase::Routing).await?;
    let referral = StoreReferral {
        store: StoreId::new("berlin-mitte"),
        name: "Service Store Berlin Mitte".to_owned(),
        address: "Friedrichstraße 100, 10117 Berlin".to_owned(),
        opening_hours: "Mo–Fr 10:00–19:00, Sa 10:00–16:00".to_owned(),
    };
    execute(
        &h.store,
        id,
        Command::ReferToStore {
            rule: "laptop-hardware-to-store".to_owned(),
            referral,
        },
    )
    .await?;
    let state = eventually(&h.store, id, "the rating request", |t| {
        t.phase == Phase::AwaitingRating
    })
    .await?;
    assert_eq!(state.prompted("store_referral"), 1);
    assert_eq!(state.prompted("rating"), 1);
    let state = eventually(&h.store, id, "the close", |t| t.phase == Phase::Closed).await?;
    assert_eq!(state.prompted("closed_unrated"), 1);
    bot.stop().await
}
