//! `helpline bench`: measures the system against the raw JetStream ceilings, in one run on
//! one nats-server child with a temporary store, so the figures compare:
//!
//! 1. raw pipelined publish of 300-byte messages to many subjects of a scratch stream;
//! 2. raw replay of that stream through an ordered consumer;
//! 3. webhook ingest: the real ingress router on `127.0.0.1:0`, signed WhatsApp text
//!    webhooks POSTed by concurrent clients; throughput and latency percentiles;
//! 4. single-ticket load: `EventStore::load` of one ticket among many.
//!
//! Every phase stops after its message count or its time cap. The result is printed as a
//! Markdown table and written as JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use async_nats::jetstream;
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt as _, TryStreamExt as _};
use hdrhistogram::Histogram;
use helpline_domain::{Channel, Customer, Event, MessageBody, MessageId, Personal, TicketId};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_ingress::{ChannelsConfig, Ingress, IngressConfig};
use helpline_testkit::{NatsServer, Simulator};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const RAW_STREAM: &str = "HELPLINE_BENCH_RAW";
const RAW_SUBJECT_PREFIX: &str = "bench.raw";
const MAX_ACKS_IN_FLIGHT: usize = 1024;
/// Concurrent appends while filling the store with tickets.
const FILL_CONCURRENCY: usize = 64;

/// Sizes of a `helpline bench` run; unset sizes take the `--quick` or full defaults.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// A short run (about half a minute on two cores) with smaller sizes.
    #[arg(long)]
    pub quick: bool,
    /// Messages published to the scratch stream (raw ceiling) [default: 200000, quick 50000].
    #[arg(long)]
    pub raw_messages: Option<usize>,
    /// Distinct subjects of the raw publish.
    #[arg(long, default_value_t = 10_000)]
    pub subjects: usize,
    /// Bytes per raw message.
    #[arg(long, default_value_t = 300)]
    pub message_bytes: usize,
    /// Webhooks POSTed to the ingress [default: 20000, quick 4000].
    #[arg(long)]
    pub webhooks: Option<usize>,
    /// Concurrent webhook clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Tickets in the store around the loaded one [default: 10000, quick 3000].
    #[arg(long)]
    pub tickets: Option<usize>,
    /// Events of the loaded ticket (the opening event included).
    #[arg(long, default_value_t = 50)]
    pub ticket_events: usize,
    /// Timed loads of that ticket.
    #[arg(long, default_value_t = 200)]
    pub loads: usize,
    /// Time cap of each phase, in seconds [default: 60, quick 20].
    #[arg(long)]
    pub phase_secs: Option<u64>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench/report.json")]
    pub report: PathBuf,
}

#[derive(Debug, Serialize)]
struct Sizes {
    raw_messages: usize,
    subjects: usize,
    message_bytes: usize,
    webhooks: usize,
    clients: usize,
    tickets: usize,
    ticket_events: usize,
    loads: usize,
    #[serde(rename = "phase_cap_secs", serialize_with = "as_secs")]
    cap: Duration,
}

fn as_secs<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_secs())
}

impl Sizes {
    fn from(args: &BenchArgs) -> Self {
        let pick = |set: Option<usize>, full: usize, quick: usize| {
            set.unwrap_or(if args.quick { quick } else { full })
        };
        Self {
            raw_messages: pick(args.raw_messages, 200_000, 50_000).max(1),
            subjects: args.subjects.max(1),
            message_bytes: args.message_bytes,
            webhooks: pick(args.webhooks, 20_000, 4_000).max(1),
            clients: args.clients.max(1),
            tickets: pick(args.tickets, 10_000, 3_000),
            ticket_events: args.ticket_events.max(1),
            loads: args.loads.max(1),
            cap: Duration::from_secs(
                args.phase_secs
                    .unwrap_or(if args.quick { 20 } else { 60 })
                    .max(1),
            ),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    quick: bool,
    cpus: usize,
    sizes: &'a Sizes,
    raw_publish: Throughput,
    raw_replay: Throughput,
    webhook_ingest: Ingest,
    ticket_load: TicketLoad,
    rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
struct Throughput {
    messages: usize,
    seconds: f64,
    per_sec: f64,
}

#[derive(Debug, Serialize)]
struct Ingest {
    sent: usize,
    ok: usize,
    failed: usize,
    seconds: f64,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    ratio_to_raw_publish: f64,
}

#[derive(Debug, Serialize)]
struct TicketLoad {
    tickets: usize,
    events: usize,
    version: u64,
    loads: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The same ticket folded from its first event, ignoring the snapshot.
    from_log_p50_ms: f64,
    from_log_p99_ms: f64,
}

/// One line of the summary table.
#[derive(Debug, Serialize)]
struct Row {
    row: String,
    system: String,
    raw_ceiling: String,
    ratio: Option<f64>,
}

pub async fn run(args: BenchArgs, store_config: StoreConfig) -> anyhow::Result<()> {
    let sizes = Sizes::from(&args);
    let mut nats = NatsServer::start()
        .await
        .context("cannot start nats-server")?;
    let result = measure(&args, &sizes, &nats, store_config).await;
    if let Err(e) = nats.stop().await {
        tracing::warn!(error = %e, "nats-server did not stop cleanly");
    }
    let report = result?;
    println!("{}", table(&report));
    if let Some(dir) = args.report.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(&args.report, json + "\n")
        .with_context(|| format!("cannot write {}", args.report.display()))?;
    println!("report written to {}", args.report.display());
    Ok(())
}

async fn measure<'a>(
    args: &BenchArgs,
    sizes: &'a Sizes,
    nats: &NatsServer,
    store_config: StoreConfig,
) -> anyhow::Result<Report<'a>> {
    let client = nats
        .connect()
        .await
        .context("cannot connect to nats-server")?;
    let js = jetstream::new(client.clone());

    let raw_publish = raw_publish(&js, sizes).await?;
    let raw_replay = raw_replay(&js, sizes, raw_publish.messages).await?;
    js.delete_stream(RAW_STREAM)
        .await
        .context("cannot delete the scratch stream")?;

    let store = EventStore::ensure(client, store_config)
        .await
        .context("cannot set up the event store")?;
    let mut webhook_ingest = webhook_ingest(&store, sizes).await?;
    webhook_ingest.ratio_to_raw_publish = ratio(webhook_ingest.per_sec, raw_publish.per_sec);
    let ticket_load = ticket_load(&store, sizes).await?;

    let rows = vec![
        Row {
            row: format!(
                "raw pipelined publish ({} B, {} subjects, {MAX_ACKS_IN_FLIGHT} acks in flight)",
                sizes.message_bytes, sizes.subjects
            ),
            system: "—".to_owned(),
            raw_ceiling: format!("{} msg/s", thousands(raw_publish.per_sec)),
            ratio: None,
        },
        Row {
            row: "raw ordered-consumer replay".to_owned(),
            system: "—".to_owned(),
            raw_ceiling: format!("{} msg/s", thousands(raw_replay.per_sec)),
            ratio: None,
        },
        Row {
            row: format!("webhook ingest ({} clients)", sizes.clients),
            system: format!(
                "{} webhooks/s (p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms)",
                thousands(webhook_ingest.per_sec),
                webhook_ingest.p50_ms,
                webhook_ingest.p99_ms,
                webhook_ingest.p999_ms
            ),
            raw_ceiling: format!("{} msg/s publish", thousands(raw_publish.per_sec)),
            ratio: Some(webhook_ingest.ratio_to_raw_publish),
        },
        Row {
            row: format!(
                "load one {}-event ticket among {} (snapshot + tail)",
                ticket_load.events, ticket_load.tickets
            ),
            system: format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                ticket_load.p50_ms, ticket_load.p99_ms
            ),
            raw_ceiling: "—".to_owned(),
            ratio: None,
        },
        Row {
            row: format!(
                "load the same ticket from its log ({} events, no snapshot)",
                ticket_load.events
            ),
            system: format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                ticket_load.from_log_p50_ms, ticket_load.from_log_p99_ms
            ),
            raw_ceiling: "—".to_owned(),
            ratio: None,
        },
    ];
    Ok(Report {
        quick: args.quick,
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        sizes,
        raw_publish,
        raw_replay,
        webhook_ingest,
        ticket_load,
        rows,
    })
}

/// Phase 1: pipelined publish, up to [`MAX_ACKS_IN_FLIGHT`] acks outstanding.
async fn raw_publish(js: &jetstream::Context, sizes: &Sizes) -> anyhow::Result<Throughput> {
    js.create_stream(jetstream::stream::Config {
        name: RAW_STREAM.to_owned(),
        subjects: vec![format!("{RAW_SUBJECT_PREFIX}.>")],
        storage: jetstream::stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .context("cannot create the scratch stream")?;
    let subjects: Vec<async_nats::Subject> = (0..sizes.subjects)
        .map(|i| async_nats::Subject::from(format!("{RAW_SUBJECT_PREFIX}.{i}")))
        .collect();
    let payload = Bytes::from(vec![b'x'; sizes.message_bytes]);
    let bar = progress(sizes.raw_messages, "raw publish")?;
    let mut in_flight = FuturesOrdered::new();
    let mut acked = 0usize;
    let start = Instant::now();
    let deadline = start + sizes.cap;
    for i in 0..sizes.raw_messages {
        if i.is_multiple_of(256) && Instant::now() >= deadline {
            break;
        }
        let subject = subjects[i % subjects.len()].clone();
        let ack = js
            .publish(subject, payload.clone())
            .await
            .context("cannot publish")?;
        in_flight.push_back(async move { ack.await });
        if in_flight.len() >= MAX_ACKS_IN_FLIGHT
            && let Some(ack) = in_flight.next().await
        {
            ack.context("publish not acknowledged")?;
            acked += 1;
            if acked.is_multiple_of(1024) {
                bar.set_position(acked as u64);
            }
        }
    }
    while let Some(ack) = in_flight.next().await {
        ack.context("publish not acknowledged")?;
        acked += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.set_position(acked as u64);
    bar.finish();
    Ok(throughput(acked, seconds))
}

/// Phase 2: an ordered consumer reads the scratch stream back.
async fn raw_replay(
    js: &jetstream::Context,
    sizes: &Sizes,
    expected: usize,
) -> anyhow::Result<Throughput> {
    let stream = js
        .get_stream(RAW_STREAM)
        .await
        .context("no scratch stream")?;
    let bar = progress(expected, "raw replay")?;
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + sizes.cap;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .context("cannot create an ordered consumer")?;
    let mut messages = consumer
        .messages()
        .await
        .context("cannot read the scratch stream")?;
    let mut read = 0usize;
    while read < expected {
        match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(message)) => {
                message.context("replay failed")?;
                read += 1;
                if read.is_multiple_of(1024) {
                    bar.set_position(read as u64);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.set_position(read as u64);
    bar.finish();
    Ok(throughput(read, seconds))
}

/// A webhook ready to POST.
struct Prepared {
    url: String,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

/// Phase 3: the real ingress router, concurrent clients POSTing signed webhooks.
async fn webhook_ingest(store: &EventStore, sizes: &Sizes) -> anyhow::Result<Ingest> {
    let sim = Simulator::start(Default::default())
        .await
        .context("cannot start the channel simulator")?;
    let channels: ChannelsConfig = serde_json::from_value(sim.helpline_channels())
        .context("simulator channels do not fit the config")?;
    let ingress = Ingress::new(store.clone(), &IngressConfig::default(), &channels)
        .await
        .context("cannot start the channel gateway")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot listen on 127.0.0.1")?;
    let base = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        let router = ingress.router();
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });

    // Built before timing: signing is the provider's work, not helpline's.
    let mut prepared = Vec::with_capacity(sizes.webhooks);
    for i in 0..sizes.webhooks {
        let customer = format!("49151{i:08}");
        let webhook = sim.webhook(Channel::WhatsApp, &customer, "Mein Laptop startet nicht");
        let mut url = format!("{base}{}", webhook.path);
        if let Some(query) = &webhook.query {
            url.push('?');
            url.push_str(query);
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &webhook.headers {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes())?,
                reqwest::header::HeaderValue::from_str(value)?,
            );
        }
        prepared.push(Prepared {
            url,
            headers,
            body: Bytes::from(webhook.body),
        });
    }
    let prepared = Arc::new(prepared);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(sizes.clients)
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")?;

    let bar = progress(sizes.webhooks, "webhook ingest")?;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + sizes.cap;
    let mut clients = Vec::with_capacity(sizes.clients);
    for _ in 0..sizes.clients {
        let prepared = prepared.clone();
        let next = next.clone();
        let http = http.clone();
        let bar = bar.clone();
        clients.push(tokio::spawn(async move {
            let mut latencies = latency_histogram()?;
            let (mut ok, mut failed) = (0usize, 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(webhook) = prepared.get(i) else {
                    break;
                };
                if Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                let answer = http
                    .post(&webhook.url)
                    .headers(webhook.headers.clone())
                    .body(webhook.body.clone())
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status() == reqwest::StatusCode::OK => {
                        // Read the body so the connection goes back to the pool.
                        let _ = response.bytes().await;
                        latencies.saturating_record(micros(sent.elapsed()));
                        ok += 1;
                    }
                    Ok(response) => {
                        if failed == 0 {
                            let status = response.status();
                            let body = response.text().await.unwrap_or_default();
                            tracing::warn!(%status, body = body.trim(), "webhook refused");
                        }
                        failed += 1;
                    }
                    Err(e) => {
                        if failed == 0 {
                            tracing::warn!(error = %e, "webhook not delivered");
                        }
                        failed += 1;
                    }
                }
                bar.inc(1);
            }
            anyhow::Ok((latencies, ok, failed))
        }));
    }
    let mut latencies = latency_histogram()?;
    let (mut ok, mut failed) = (0usize, 0usize);
    for client in clients {
        let (client_latencies, client_ok, client_failed) =
            client.await.context("client task failed")??;
        latencies
            .add(&client_latencies)
            .context("cannot merge latencies")?;
        ok += client_ok;
        failed += client_failed;
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.finish();
    stop.cancel();
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "webhook server failed"),
        Err(e) => tracing::warn!(error = %e, "webhook server task failed"),
    }
    Ok(Ingest {
        sent: ok + failed,
        ok,
        failed,
        seconds,
        per_sec: per_sec(ok, seconds),
        p50_ms: quantile_ms(&latencies, 0.50),
        p99_ms: quantile_ms(&latencies, 0.99),
        p999_ms: quantile_ms(&latencies, 0.999),
        max_ms: millis(latencies.max()),
        ratio_to_raw_publish: 0.0,
    })
}

/// Phase 4: one ticket of `ticket_events` events, its events interleaved with `tickets`
/// other tickets' openings; then timed loads of it.
async fn ticket_load(store: &EventStore, sizes: &Sizes) -> anyhow::Result<TicketLoad> {
    let target = TicketId(Uuid::now_v7());
    let total = sizes.tickets + sizes.ticket_events;
    let bar = progress(total, "fill tickets")?;
    let start = Instant::now();
    let mut version = store
        .append(target, 0, &[opened(target, 0)], &command())
        .await
        .context("cannot open the loaded ticket")?
        .version;
    bar.inc(1);
    let gaps = sizes.ticket_events.saturating_sub(1).max(1);
    let per_gap = sizes.tickets.div_ceil(gaps);
    let mut filled = 0usize;
    let mut said = 1usize;
    while filled < sizes.tickets || said < sizes.ticket_events {
        if start.elapsed() >= sizes.cap {
            anyhow::bail!(
                "filling the store took longer than {:?} ({filled} tickets)",
                sizes.cap
            );
        }
        let chunk = per_gap.min(sizes.tickets - filled);
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
    bar.finish();

    // The first load folds every event and writes the snapshot the others start from.
    let first = store.load(target).await.context("cannot load the ticket")?;
    anyhow::ensure!(
        first.version == version,
        "loaded version {} is not the appended {version}",
        first.version
    );
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
    Ok(TicketLoad {
        tickets: filled,
        events: said,
        version,
        loads: usize::try_from(loads.len()).unwrap_or(usize::MAX),
        p50_ms: quantile_ms(&loads, 0.50),
        p99_ms: quantile_ms(&loads, 0.99),
        max_ms: millis(loads.max()),
        from_log_p50_ms: quantile_ms(&from_log, 0.50),
        from_log_p99_ms: quantile_ms(&from_log, 0.99),
    })
}

fn opened(ticket: TicketId, n: usize) -> Event {
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
        provider_message_id: format!("wamid.bench.{}", Uuid::now_v7().simple()),
        body: MessageBody::Text(Personal::new(format!("Nachricht {n}: es geht noch nicht"))),
    }
}

fn command() -> CommandMeta {
    CommandMeta::new(Uuid::now_v7(), SystemTime::now())
}

fn progress(len: usize, phase: &'static str) -> anyhow::Result<ProgressBar> {
    let style = ProgressStyle::with_template(
        "{msg:>15} [{bar:30}] {pos}/{len} {per_sec} {elapsed_precise}",
    )
    .context("bad progress template")?
    .progress_chars("=> ");
    Ok(ProgressBar::new(len as u64)
        .with_style(style)
        .with_message(phase))
}

/// Microseconds from 1 µs to 10 minutes, three significant digits.
fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000, 3).context("bad histogram bounds")
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    millis(histogram.value_at_quantile(quantile))
}

fn throughput(messages: usize, seconds: f64) -> Throughput {
    Throughput {
        messages,
        seconds,
        per_sec: per_sec(messages, seconds),
    }
}

fn per_sec(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn ratio(system: f64, raw: f64) -> f64 {
    if raw > 0.0 { system / raw } else { 0.0 }
}

/// `123456.7` as `123 k`, `4321.0` as `4.3 k`, smaller figures as they are.
fn thousands(value: f64) -> String {
    if value >= 100_000.0 {
        format!("{:.0} k", value / 1000.0)
    } else if value >= 1000.0 {
        format!("{:.1} k", value / 1000.0)
    } else {
        format!("{value:.0}")
    }
}

fn table(report: &Report) -> String {
    let mut out = String::from("| row | system | raw ceiling | ratio |\n|---|---|---|---|\n");
    for row in &report.rows {
        let ratio = row
            .ratio
            .map_or_else(|| "—".to_owned(), |r| format!("{:.1} %", r * 100.0));
        out.push_str(&format!(
            "| {} | {} | {} | {ratio} |\n",
            row.row, row.system, row.raw_ceiling
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_rounded_for_the_table() {
        assert_eq!(thousands(123_456.7), "123 k");
        assert_eq!(thousands(4_321.0), "4.3 k");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(ratio(1.0, 0.0), 0.0);
        assert_eq!(per_sec(10, 2.0), 5.0);
    }
}
