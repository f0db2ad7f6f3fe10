//! Loading one ticket of many: one ticket's events interleaved with other tickets'
//! openings, then timed `EventStore::load`s of it, at a small and at a large ticket count
//! in the same stream.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt as _, TryStreamExt as _};
use helpline_domain::{Channel, Customer, Event, MessageBody, MessageId, Personal, TicketId};
use helpline_eventstore::codec::{self, EnvelopeMeta, Sealer};
use helpline_eventstore::{CommandMeta, EventStore, SCHEMA_VERSION};
use serde::Serialize;
use uuid::Uuid;

use super::raw::MAX_ACKS_IN_FLIGHT;
use super::{Sizes, latency_histogram, micros, millis, progress, quantile_ms};

/// Concurrent appends while filling the store with the small count.
const FILL_CONCURRENCY: usize = 64;

#[derive(Debug, Serialize)]
pub(super) struct TicketLoad {
    /// Tickets in the stream when the loads ran (the loaded one included).
    pub tickets: usize,
    /// How the stream was filled: `append` (the event store's write path) or `raw publish`.
    pub filled_by: &'static str,
    pub fill_seconds: f64,
    /// Whether the fill reached the asked-for count before the phase's time cap.
    pub fill_complete: bool,
    pub events: usize,
    #[serde(flatten)]
    pub timed: Loads,
}

#[derive(Debug, Serialize)]
pub(super) struct Loads {
    pub version: u64,
    pub loads: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The same ticket folded from its first event, ignoring the snapshot.
    pub from_log_p50_ms: f64,
    pub from_log_p99_ms: f64,
}

/// `sizes.tickets` tickets (the loaded one among them), written through
/// `EventStore::append`.
pub(super) async fn small(store: &EventStore, sizes: &Sizes) -> anyhow::Result<TicketLoad> {
    let target = TicketId(Uuid::now_v7());
    let others = sizes.tickets.saturating_sub(1);
    let bar = progress(others + sizes.ticket_events, "fill tickets")?;
    let start = Instant::now();
    let mut version = store
        .append(target, 0, &[opened(target, 0)], &command())
        .await
        .context("cannot open the loaded ticket")?
        .version;
    bar.inc(1);
    let gaps = sizes.ticket_events.saturating_sub(1).max(1);
    let per_gap = others.div_ceil(gaps).max(1);
    let mut filled = 0usize;
    let mut said = 1usize;
    while filled < others || said < sizes.ticket_events {
        if start.elapsed() >= sizes.cap {
            anyhow::bail!(
                "filling the store took longer than {:?} ({filled} tickets)",
                sizes.cap
            );
        }
        let chunk = per_gap.min(others - filled);
        futures::stream::iter(filled..filled + chunk)
            .map(|i| async move {
                let ticket = TicketId(Uuid::now_v7());
                store
                    .append(ticket, 0, &[opened(ticket, i + 1)], &command())
                    .await
            })
            .buffer_unordered(FILL_CONCURRENCY)
            .inspect_ok(|_| bar.inc(1))
            .try_for_each(|_| async { Ok(()) })
            .await
            .context("cannot fill the store")?;
        filled += chunk;
        if said < sizes.ticket_events {
            version = store
                .append(target, version, &[message(said)], &command())
                .await
                .context("cannot append to the loaded ticket")?
                .version;
            said += 1;
            bar.inc(1);
        }
    }
    let fill_seconds = start.elapsed().as_secs_f64();
    bar.finish();
    Ok(TicketLoad {
        tickets: filled + 1,
        filled_by: "append",
        fill_seconds,
        fill_complete: true,
        events: said,
        timed: timed_loads(store, target, version, sizes).await?,
    })
}

/// Up to `sizes.large_tickets` tickets in the stream, `already` of them there: the rest
/// written by pipelined raw publishes of encoded envelopes (a plain publish per event,
/// in order on one connection, so each ticket's events keep their order), with a new
/// loaded ticket's events spread among them. Stops at the phase's time cap and says so.
pub(super) async fn large(
    store: &EventStore,
    sizes: &Sizes,
    already: usize,
) -> anyhow::Result<TicketLoad> {
    let others = sizes.large_tickets.saturating_sub(already + 1);
    let bar = progress(others + sizes.ticket_events, "fill tickets (raw)")?;
    let js = store.jetstream();
    let layout = store.layout();
    let region = layout.region().to_owned();
    let target = TicketId(Uuid::now_v7());
    let target_subject = layout.ticket_subject(target);
    let gaps = sizes.ticket_events.saturating_sub(1).max(1);
    let per_gap = others.div_ceil(gaps).max(1);
    // One customer's key seals every ticket's contact: the load reads sealed events like
    // real ones, without a key made per synthetic customer.
    let customer = store.customer_id(Channel::WhatsApp, "bench");
    let (key, key_ref) = store.customer_key(&customer).await?;
    let sealer = Some(Sealer {
        customer: &customer,
        key: &key,
        key_ref,
    });
    let mut in_flight = FuturesOrdered::new();
    let mut target_acks = Vec::with_capacity(sizes.ticket_events);
    let start = Instant::now();
    let deadline = start + sizes.cap;
    let mut filled = 0usize;
    let mut said = 0usize;
    let mut complete = true;
    while said < sizes.ticket_events {
        // The loaded ticket's next event, then a gap of other tickets' openings.
        let event = match said {
            0 => opened(target, 0),
            n => message(n),
        };
        let payload = codec::encode(&envelope(target, &region), &event, sealer)?;
        let ack = js
            .publish(target_subject.clone(), Bytes::from(payload))
            .await
            .context("cannot publish the loaded ticket's event")?;
        in_flight.push_back(tagged(true, ack));
        said += 1;
        let gap_end = if complete {
            (filled + per_gap).min(others)
        } else {
            filled
        };
        while filled < gap_end {
            if filled.is_multiple_of(1024) && Instant::now() >= deadline {
                // Out of time: the loaded ticket's remaining events follow right away.
                complete = false;
                break;
            }
            let ticket = TicketId(Uuid::now_v7());
            let payload = codec::encode(
                &envelope(ticket, &region),
                &opened(ticket, filled + 1),
                sealer,
            )?;
            let ack = js
                .publish(layout.ticket_subject(ticket), Bytes::from(payload))
                .await
                .context("cannot publish a ticket's opening")?;
            in_flight.push_back(tagged(false, ack));
            filled += 1;
            while in_flight.len() >= MAX_ACKS_IN_FLIGHT {
                settle(in_flight.next().await, &mut target_acks, &bar)?;
            }
        }
    }
    while let Some(ack) = in_flight.next().await {
        settle(Some(ack), &mut target_acks, &bar)?;
    }
    let fill_seconds = start.elapsed().as_secs_f64();
    bar.finish();
    let version = target_acks
        .iter()
        .copied()
        .max()
        .context("the loaded ticket has no events")?;
    Ok(TicketLoad {
        tickets: store_ticket_count(store).await?,
        filled_by: "raw publish",
        fill_seconds,
        fill_complete: complete && filled == others,
        events: said,
        timed: timed_loads(store, target, version, sizes).await?,
    })
}

type Ack = (
    bool,
    Result<
        async_nats::jetstream::publish::PublishAck,
        async_nats::jetstream::context::PublishError,
    >,
);

/// An acknowledgement, marked with whether it is for one of the loaded ticket's events.
async fn tagged(is_target: bool, ack: async_nats::jetstream::context::PublishAckFuture) -> Ack {
    (is_target, ack.await)
}

/// Counts one acknowledged publish; keeps the sequences of the loaded ticket's events.
fn settle(
    ack: Option<Ack>,
    target_acks: &mut Vec<u64>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    if let Some((is_target, ack)) = ack {
        let ack = ack.context("publish not acknowledged")?;
        if is_target {
            target_acks.push(ack.sequence);
        }
        bar.inc(1);
    }
    Ok(())
}

/// Subjects in the store's stream: one per ticket, nothing else is written there.
async fn store_ticket_count(store: &EventStore) -> anyhow::Result<usize> {
    let mut stream = store
        .jetstream()
        .get_stream(store.layout().event_stream())
        .await
        .context("no ticket stream")?;
    let info = stream
        .info()
        .await
        .context("cannot read the stream's state")?;
    Ok(usize::try_from(info.state.subjects_count).unwrap_or(usize::MAX))
}

/// One untimed load that folds every event and writes the snapshot, then timed loads
/// (snapshot + tail) and timed loads from the log (no snapshot).
async fn timed_loads(
    store: &EventStore,
    target: TicketId,
    version: u64,
    sizes: &Sizes,
) -> anyhow::Result<Loads> {
    let first = store.load(target).await.context("cannot load the ticket")?;
    anyhow::ensure!(
        first.version == version,
        "loaded version {} is not the written {version}",
        first.version
    );
    // The snapshot is written off the load's path; give it time to land.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let bar = progress(sizes.loads * 2, "ticket load")?;
    let mut loads = latency_histogram()?;
    let mut from_log = latency_histogram()?;
    let start = Instant::now();
    for _ in 0..sizes.loads {
        if start.elapsed() >= sizes.cap {
            break;
        }
        let began = Instant::now();
        let loaded = store.load(target).await.context("cannot load the ticket")?;
        loads.saturating_record(micros(began.elapsed()));
        anyhow::ensure!(loaded.version == version, "a load returned an old version");
        bar.inc(1);
    }
    for _ in 0..sizes.loads {
        if start.elapsed() >= sizes.cap {
            break;
        }
        let began = Instant::now();
        store
            .load_from_log(target)
            .await
            .context("cannot load the ticket from its log")?;
        from_log.saturating_record(micros(began.elapsed()));
        bar.inc(1);
    }
    bar.finish();
    Ok(Loads {
        version,
        loads: usize::try_from(loads.len()).unwrap_or(usize::MAX),
        p50_ms: quantile_ms(&loads, 0.50),
        p99_ms: quantile_ms(&loads, 0.99),
        max_ms: millis(loads.max()),
        from_log_p50_ms: quantile_ms(&from_log, 0.50),
        from_log_p99_ms: quantile_ms(&from_log, 0.99),
    })
}

pub(super) fn envelope(ticket: TicketId, region: &str) -> EnvelopeMeta {
    let command = Uuid::now_v7();
    EnvelopeMeta {
        event_id: Uuid::now_v7(),
        ticket,
        region: region.to_owned(),
        occurred_at: SystemTime::now(),
        command_id: command,
        causation_id: command.to_string(),
        correlation_id: command.to_string(),
        schema_version: SCHEMA_VERSION,
        customer: None,
    }
}

pub(super) fn opened(ticket: TicketId, n: usize) -> Event {
    Event::TicketOpened {
        ticket,
        customer: Customer {
            channel: Channel::WhatsApp,
            contact: Personal::new(format!("4917{n:09}")),
            display_name: None,
        },
        language: "de".to_owned(),
    }
}

fn message(n: usize) -> Event {
    Event::CustomerMessageReceived {
        message: MessageId(Uuid::now_v7()),
        provider_message_id: Personal::new(format!("wamid.bench.{}", Uuid::now_v7().simple())),
        body: MessageBody::Text(Personal::new(format!("Nachricht {n}: es geht noch nicht"))),
    }
}

fn command() -> CommandMeta {
    CommandMeta::new(Uuid::now_v7(), SystemTime::now())
}
