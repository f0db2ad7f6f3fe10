//! `helpline bench`: measures the system against the raw JetStream ceilings in one run, on
//! nats-server children with temporary stores, so the figures compare. The `helpline`
//! binary parses the flags ([`BenchArgs`]) and calls [`run`]; this crate is a tool, like
//! the binary, and may depend on every service crate, while none depends on it. Two
//! servers, one after the other:
//!
//! **Default sync** (the server's 2-minute `sync_interval`):
//! 1. raw pipelined publish of fixed-size messages to many subjects of a scratch stream;
//! 2. raw replay of that stream through an ordered consumer;
//! 3. `helpline all` started as its own process against an empty region: idle RSS; then
//!    again, with the WhatsApp channel, under 100 stalled 4 MiB uploads (`front_door`):
//!    RSS idle, at its highest, once they were closed, and a webhook answered meanwhile;
//! 4. end to end (`e2e`): ingress, egress and bot in this process against the channel
//!    simulator; customers write at a fixed offered rate (open loop), latency from each
//!    message's intended send time to the simulator taking the bot's reply; RSS idle and
//!    under load;
//! 5. webhook ingest (`webhooks`) at the maximum (closed loop, concurrent clients), then
//!    again at half that rate (open loop), latency of the `200`; the messages ingress sent
//!    to nats-server per webhook; the same clients against the ingest floor (`floor`): a
//!    bare handler that checks the signature and makes one publish;
//! 6. on a pipeline and region stream of their own (`lanes`): the messages a first
//!    conversation sends to nats-server, one customer whose sends hang while 50 others
//!    write, and end to end with the provider taking 300 ms per send;
//! 7. rebuild: more customers added (`customers`), the whole region stream read raw (the
//!    ceiling of any projection of these very messages), then replayed into the query
//!    projection;
//! 8. single-ticket load (`tickets`) at a small and a large ticket count, in a stream of
//!    their own.
//!
//! **`sync_interval: always`** (every write fsynced, as production runs): raw pipelined
//! publish, end to end and webhook ingest again.
//!
//! Every phase stops after its message count or its time cap. The result is printed as a
//! Markdown table (each row with its target and whether it was met) and written as JSON.

#![forbid(unsafe_code)]

mod customers;
mod e2e;
mod floor;
mod front_door;
mod lanes;
mod memory;
mod raw;

// The pieces the `replay_shapes` example measures with, so that it reads a stream and a
// process's CPU time as the bench does.
pub use memory::cpu_seconds;
pub use raw::{Throughput, replay_stream};
mod tap;
mod tickets;
mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use hdrhistogram::Histogram;
use helpline_bot::flows::Flows;
use helpline_eventstore::{EventStore, StoreConfig};
use helpline_region::RegionConfig;
use helpline_testkit::{NatsServer, Simulator};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use self::customers::Added;
use self::e2e::{EndToEnd, Load, Pipeline};
use self::floor::FloorServer;
use self::front_door::StalledUploads;
use self::lanes::{HeadOfLine, RoundTrips};
use self::memory::Memory;
use self::tap::Tap;
use self::tickets::TicketLoad;
use self::webhooks::{Ingest, IngressServer};

/// Sizes of a `helpline bench` run; unset sizes take the `--quick` or full defaults.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// A short run (about a minute on two cores) with smaller sizes.
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
    /// Webhooks POSTed to the ingress at the maximum rate [default: 20000, quick 4000].
    #[arg(long)]
    pub webhooks: Option<usize>,
    /// Concurrent webhook clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Seconds of the second ingest pass, at half the measured maximum rate
    /// [default: 10, quick 3].
    #[arg(long)]
    pub paced_secs: Option<u64>,
    /// Customer messages per second offered end to end.
    #[arg(long, default_value_t = 1000.0)]
    pub e2e_rate: f64,
    /// Seconds of offered end-to-end load [default: 20, quick 5].
    #[arg(long)]
    pub e2e_secs: Option<u64>,
    /// New customers per second offered end to end while the provider takes 300 ms to
    /// answer each send.
    #[arg(long, default_value_t = 200.0)]
    pub slow_provider_rate: f64,
    /// Customers writing while one customer's sends hang.
    #[arg(long, default_value_t = 50)]
    pub head_of_line_customers: usize,
    /// First conversations whose messages to nats-server are counted
    /// [default: 200, quick 100].
    #[arg(long)]
    pub conversations: Option<usize>,
    /// Customers added to the region stream before the rebuild, each sealed under a key
    /// made ahead as a first message is, on top of the webhook phases' [default: 110000,
    /// quick 5000].
    #[arg(long)]
    pub rebuild_customers: Option<usize>,
    /// Tickets in the stream for the small single-ticket load [default: 10000, quick 3000].
    #[arg(long)]
    pub tickets: Option<usize>,
    /// Tickets in the stream for the large single-ticket load, filled by raw pipelined
    /// publishes [default: 1000000, quick 30000].
    #[arg(long)]
    pub large_tickets: Option<usize>,
    /// Events of the loaded ticket (the opening event included).
    #[arg(long, default_value_t = 50)]
    pub ticket_events: usize,
    /// Timed loads of that ticket.
    #[arg(long, default_value_t = 200)]
    pub loads: usize,
    /// Raw messages published with `sync_interval: always` [default: 40000, quick 10000].
    #[arg(long)]
    pub durable_raw_messages: Option<usize>,
    /// Webhooks POSTed with `sync_interval: always` [default: 10000, quick 2000].
    #[arg(long)]
    pub durable_webhooks: Option<usize>,
    /// Concurrent webhook clients with `sync_interval: always`: more webhooks in flight
    /// share each of the server's syncs.
    #[arg(long, default_value_t = 128)]
    pub durable_clients: usize,
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
    #[serde(rename = "paced_secs", serialize_with = "as_secs")]
    paced: Duration,
    e2e_rate: f64,
    #[serde(rename = "e2e_secs", serialize_with = "as_secs")]
    e2e: Duration,
    slow_provider_rate: f64,
    head_of_line_customers: usize,
    conversations: usize,
    rebuild_customers: usize,
    tickets: usize,
    large_tickets: usize,
    ticket_events: usize,
    loads: usize,
    durable_raw_messages: usize,
    durable_webhooks: usize,
    durable_clients: usize,
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
        let secs = |set: Option<u64>, full: u64, quick: u64| {
            Duration::from_secs(set.unwrap_or(if args.quick { quick } else { full }).max(1))
        };
        let tickets = pick(args.tickets, 10_000, 3_000);
        Self {
            raw_messages: pick(args.raw_messages, 200_000, 50_000).max(1),
            subjects: args.subjects.max(1),
            message_bytes: args.message_bytes,
            webhooks: pick(args.webhooks, 20_000, 4_000).max(1),
            clients: args.clients.max(1),
            paced: secs(args.paced_secs, 10, 3),
            e2e_rate: args.e2e_rate.max(1.0),
            e2e: secs(args.e2e_secs, 20, 5),
            slow_provider_rate: args.slow_provider_rate.max(1.0),
            head_of_line_customers: args.head_of_line_customers.max(1),
            conversations: pick(args.conversations, 200, 100).max(1),
            rebuild_customers: pick(args.rebuild_customers, 110_000, 5_000),
            tickets,
            large_tickets: pick(args.large_tickets, 1_000_000, 30_000).max(tickets),
            ticket_events: args.ticket_events.max(1),
            loads: args.loads.max(1),
            durable_raw_messages: pick(args.durable_raw_messages, 40_000, 10_000).max(1),
            durable_webhooks: pick(args.durable_webhooks, 10_000, 2_000).max(1),
            durable_clients: args.durable_clients.max(1),
            cap: secs(args.phase_secs, 60, 20),
        }
    }
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    quick: bool,
    machine: Machine,
    sizes: &'a Sizes,
    raw_publish: Throughput,
    raw_replay: Throughput,
    end_to_end: EndToEnd,
    webhook_ingest: Ingest,
    webhook_ingest_paced: Ingest,
    webhook_floor: Ingest,
    /// The floor in the paced pass's open loop, at its rate.
    webhook_floor_paced: Ingest,
    round_trips: RoundTrips,
    head_of_line: HeadOfLine,
    end_to_end_slow_provider: EndToEnd,
    rebuild: Rebuild,
    ticket_load: TicketLoad,
    ticket_load_large: TicketLoad,
    memory: Memory,
    front_door: StalledUploads,
    durable: Durable,
    rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    /// `/proc/loadavg` (1, 5 and 15 minutes) as the run began and as it ended.
    load_average_before: [f64; 3],
    load_average_after: [f64; 3],
}

#[derive(Debug, Serialize)]
struct Rebuild {
    /// What was rebuilt: the query service's projection.
    projection: &'static str,
    events: u64,
    tickets: usize,
    /// Customers added before the rebuild (`--rebuild-customers`).
    added: Added,
    /// Entries in the region's key bucket: blocks of keys made ahead (512 keys each, what
    /// new customers' first messages are sealed under) and customers' own keys.
    key_bucket_entries: u64,
    /// Keys the rebuilding process keeps (`eventstore.key_cache_limit`).
    key_cache_limit: u64,
    seconds: f64,
    per_sec: f64,
    ratio_to_raw_replay: f64,
    /// Messages in the region stream (ticket messages and the few others) and their mean
    /// stored size, headers included.
    stream_messages: u64,
    stream_bytes_per_message: f64,
    /// The same stream read raw just before: the ceiling of any projection of it.
    stream_replay: raw::Throughput,
    ratio_to_stream_replay: f64,
    /// CPU time per event of the rebuild, this process's and nats-server's.
    cpu_us_per_event: Option<f64>,
    nats_server_cpu_us_per_event: Option<f64>,
}

/// The phases run again on a server with `sync_interval: always`.
#[derive(Debug, Serialize)]
struct Durable {
    raw_publish: Throughput,
    end_to_end: EndToEnd,
    webhook_ingest: Ingest,
}

/// One line of the summary table.
#[derive(Debug, Serialize)]
struct Row {
    row: String,
    system: String,
    raw_ceiling: String,
    ratio: Option<f64>,
    target: String,
    /// `None` where the row has no target.
    met: Option<bool>,
}

pub async fn run(
    args: BenchArgs,
    store_config: StoreConfig,
    region: RegionConfig,
) -> anyhow::Result<()> {
    let sizes = Sizes::from(&args);
    let load_average_before = load_average();
    let flows = Arc::new(Flows::for_region(&region).context("cannot load the bot's flows")?);
    let stack = Stack {
        store_config,
        region: Arc::new(region),
        flows,
    };

    let mut nats = NatsServer::start()
        .await
        .context("cannot start nats-server")?;
    let default_sync = default_sync(&sizes, &nats, &stack).await;
    if let Err(e) = nats.stop().await {
        tracing::warn!(error = %e, "nats-server did not stop cleanly");
    }
    let default_sync = default_sync?;

    let mut nats = NatsServer::builder()
        .sync_always()
        .start()
        .await
        .context("cannot start nats-server with sync_interval: always")?;
    let durable = durable(&sizes, &nats, &stack).await;
    if let Err(e) = nats.stop().await {
        tracing::warn!(error = %e, "nats-server did not stop cleanly");
    }
    let durable = durable?;

    let machine = Machine {
        cpus: std::thread::available_parallelism().map_or(0, usize::from),
        load_average_before,
        load_average_after: load_average(),
    };
    let report = default_sync.into_report(args.quick, machine, &sizes, durable);
    println!("{}", table(&report));
    println!(
        "load average before {:?}, after {:?} ({} cpus)",
        report.machine.load_average_before, report.machine.load_average_after, report.machine.cpus
    );
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

/// What the in-process services are built from.
struct Stack {
    store_config: StoreConfig,
    region: Arc<RegionConfig>,
    flows: Arc<Flows>,
}

/// The figures of the default-sync server.
struct DefaultSync {
    raw_publish: Throughput,
    raw_replay: Throughput,
    end_to_end: EndToEnd,
    webhook_ingest: Ingest,
    webhook_ingest_paced: Ingest,
    webhook_floor: Ingest,
    /// The floor in the paced pass's open loop, at its rate.
    webhook_floor_paced: Ingest,
    round_trips: RoundTrips,
    head_of_line: HeadOfLine,
    end_to_end_slow_provider: EndToEnd,
    rebuild: Rebuild,
    ticket_load: TicketLoad,
    ticket_load_large: TicketLoad,
    memory: Memory,
    front_door: StalledUploads,
}

/// The provider's answer time of the slow-provider row.
const SLOW_PROVIDER: Duration = Duration::from_millis(300);

async fn default_sync(
    sizes: &Sizes,
    nats: &NatsServer,
    stack: &Stack,
) -> anyhow::Result<DefaultSync> {
    let client = nats
        .connect()
        .await
        .context("cannot connect to nats-server")?;
    let js = jetstream::new(client.clone());
    let raw_publish = raw::publish(&js, sizes, sizes.raw_messages, "raw publish").await?;
    let raw_replay = raw::replay(&js, sizes, raw_publish.messages).await?;
    raw::delete(&js).await?;

    let helpline_all_idle = memory::helpline_all_idle(nats).await?;
    let front_door = front_door::stalled_uploads(nats).await?;

    // The region's stream holds only what the phases below write, so the bot and egress
    // of the end-to-end phase (which read it from its start) see only their own customers.
    let store = EventStore::ensure(client.clone(), stack.store_config.clone())
        .await
        .context("cannot set up the event store")?;
    // Ingress on a connection of its own, as in a process of its own: what it sends to
    // nats-server per webhook is counted on that connection alone.
    let ingress_client = nats
        .connect()
        .await
        .context("cannot connect to nats-server")?;
    let ingress_store = EventStore::open(ingress_client.clone(), stack.store_config.clone())
        .await
        .context("cannot open the event store for ingress")?;
    let sim = Simulator::start(Default::default())
        .await
        .context("cannot start the channel simulator")?;
    let ingress = IngressServer::start(&ingress_store, &sim).await?;
    let load = Load {
        rate: sizes.e2e_rate,
        duration: sizes.e2e,
        pass: 1,
        phase: "end to end",
        sizes,
    };
    let (end_to_end, in_process) =
        e2e::run(&store, &sim, &ingress, stack, &load, nats.pid()).await?;
    let before = lanes::out_messages(&ingress_client);
    let mut webhook_ingest = webhooks::closed_loop(
        &ingress.base,
        &sim,
        2,
        sizes.webhooks,
        sizes.clients,
        sizes.cap,
        "webhook ingest",
    )
    .await?;
    let messages_per_webhook =
        (lanes::out_messages(&ingress_client) - before) as f64 / webhook_ingest.ok.max(1) as f64;
    webhook_ingest.ratio_to_raw_publish = ratio(webhook_ingest.per_sec, raw_publish.per_sec);
    let half = webhook_ingest.per_sec / 2.0;
    let mut webhook_ingest_paced = webhooks::open_loop(
        &ingress.base,
        &sim,
        3,
        half,
        sizes.paced,
        sizes.cap,
        "webhook ingest ½",
    )
    .await?;
    webhook_ingest_paced.ratio_to_raw_publish =
        ratio(webhook_ingest_paced.per_sec, raw_publish.per_sec);
    ingress.stop().await;
    let (webhook_floor, mut webhook_floor_paced) = floor(&client, &sim, sizes, half).await?;
    webhook_ingest.ratio_to_floor = Some(ratio(webhook_ingest.per_sec, webhook_floor.per_sec));
    webhook_floor_paced.ratio_to_raw_publish =
        ratio(webhook_floor_paced.per_sec, raw_publish.per_sec);

    let lanes = lanes(nats, &sim, stack, sizes).await?;
    let round_trips = RoundTrips {
        webhooks: webhook_ingest.ok,
        messages_per_webhook,
        ..lanes.round_trips
    };

    let added = customers::add(&store, sizes.rebuild_customers, sizes.cap).await?;
    let rebuild = rebuild(&store, raw_replay.per_sec, added, nats.pid(), sizes.cap).await?;

    // A stream of its own, so that it holds exactly the stated number of tickets.
    let load_config = StoreConfig {
        region: "benchload".to_owned(),
        ..stack.store_config.clone()
    };
    let load_store = EventStore::ensure(client, load_config)
        .await
        .context("cannot set up the ticket-load store")?;
    let ticket_load = tickets::small(&load_store, sizes).await?;
    let ticket_load_large = tickets::large(&load_store, sizes, ticket_load.tickets).await?;
    let memory = Memory {
        helpline_all_idle,
        in_process,
        nats_server_after_large_fill_bytes: memory::rss_bytes(nats.pid()),
    };
    Ok(DefaultSync {
        raw_publish,
        raw_replay,
        end_to_end,
        webhook_ingest,
        webhook_ingest_paced,
        webhook_floor,
        webhook_floor_paced,
        round_trips,
        head_of_line: lanes.head_of_line,
        end_to_end_slow_provider: lanes.slow_provider,
        rebuild,
        ticket_load,
        ticket_load_large,
        memory,
        front_door,
    })
}

/// The ingest floor loaded like helpline's ingress: at its maximum rate, then in the same
/// open loop as helpline's paced pass, at `paced_rate`. The second is the paced p99's
/// ceiling: what this machine gives a webhook that is only verified and published, at
/// that rate and at that moment of the run.
async fn floor(
    client: &async_nats::Client,
    sim: &Simulator,
    sizes: &Sizes,
    paced_rate: f64,
) -> anyhow::Result<(Ingest, Ingest)> {
    let js = jetstream::new(client.clone());
    let app_secret = sim.config().whatsapp.app_secret.clone();
    let floor = FloorServer::start(&js, &app_secret).await?;
    let measured = async {
        let maximum = webhooks::closed_loop(
            &floor.base,
            sim,
            4,
            sizes.webhooks,
            sizes.clients,
            sizes.cap,
            "webhook floor",
        )
        .await?;
        let paced = webhooks::open_loop(
            &floor.base,
            sim,
            5,
            paced_rate,
            sizes.paced,
            sizes.cap,
            "webhook floor ½",
        )
        .await?;
        Ok((maximum, paced))
    }
    .await;
    floor.stop(&js).await?;
    measured
}

struct Lanes {
    round_trips: RoundTrips,
    head_of_line: HeadOfLine,
    slow_provider: EndToEnd,
}

/// Ingress, egress and the bot on one fresh connection and a region stream of their own:
/// a first conversation's messages to nats-server, head-of-line blocking, and end to end
/// with a slow provider.
async fn lanes(
    nats: &NatsServer,
    sim: &Simulator,
    stack: &Stack,
    sizes: &Sizes,
) -> anyhow::Result<Lanes> {
    // Ingress on a connection of its own, bot and egress on another, each through a
    // counting relay: the round trips are counted on the wire.
    let server = format!("127.0.0.1:{}", nats.port());
    let ingress_tap = Tap::start(server.clone()).await?;
    let services_tap = Tap::start(server).await?;
    let connect = |url: String| async move {
        async_nats::connect(url)
            .await
            .context("cannot connect to nats-server through the counting relay")
    };
    let config = StoreConfig {
        region: "benchlanes".to_owned(),
        ..stack.store_config.clone()
    };
    let store = EventStore::ensure(
        connect(services_tap.url().to_owned()).await?,
        config.clone(),
    )
    .await
    .context("cannot set up the lanes' store")?;
    let ingress_store = EventStore::open(connect(ingress_tap.url().to_owned()).await?, config)
        .await
        .context("cannot open the lanes' store for ingress")?;
    let ingress = IngressServer::start(&ingress_store, sim).await?;
    let pipeline = Pipeline::start(&store, sim, stack)?;
    let measured = async {
        let round_trips = lanes::conversations(
            &ingress_tap,
            &services_tap,
            sim,
            &ingress.base,
            sizes.conversations,
            sizes.cap,
        )
        .await?;
        let head_of_line =
            lanes::head_of_line(sim, &ingress.base, sizes.head_of_line_customers, sizes.cap)
                .await?;
        sim.send_latency(SLOW_PROVIDER..=SLOW_PROVIDER, 1);
        let load = Load {
            rate: sizes.slow_provider_rate,
            duration: sizes.e2e,
            pass: 7,
            phase: "e2e, slow provider",
            sizes,
        };
        // This process's CPU includes the counting relays' here.
        let slow = e2e::measure(sim, &ingress.base, &load, nats.pid()).await;
        sim.no_send_latency();
        anyhow::Ok(Lanes {
            round_trips,
            head_of_line,
            slow_provider: slow?.0,
        })
    }
    .await;
    pipeline.stop().await;
    ingress.stop().await;
    measured
}

async fn durable(sizes: &Sizes, nats: &NatsServer, stack: &Stack) -> anyhow::Result<Durable> {
    let client = nats
        .connect()
        .await
        .context("cannot connect to nats-server")?;
    let js = jetstream::new(client.clone());
    let raw_publish =
        raw::publish(&js, sizes, sizes.durable_raw_messages, "raw publish fsync").await?;
    raw::delete(&js).await?;
    let store = EventStore::ensure(client, stack.store_config.clone())
        .await
        .context("cannot set up the event store")?;
    let sim = Simulator::start(Default::default())
        .await
        .context("cannot start the channel simulator")?;
    let ingress = IngressServer::start(&store, &sim).await?;
    let load = Load {
        rate: sizes.e2e_rate,
        duration: sizes.e2e,
        pass: 1,
        phase: "end to end fsync",
        sizes,
    };
    let (end_to_end, _) = e2e::run(&store, &sim, &ingress, stack, &load, nats.pid()).await?;
    let mut webhook_ingest = webhooks::closed_loop(
        &ingress.base,
        &sim,
        2,
        sizes.durable_webhooks,
        sizes.durable_clients,
        sizes.cap,
        "webhook ingest fsync",
    )
    .await?;
    webhook_ingest.ratio_to_raw_publish = ratio(webhook_ingest.per_sec, raw_publish.per_sec);
    ingress.stop().await;
    Ok(Durable {
        raw_publish,
        end_to_end,
        webhook_ingest,
    })
}

/// The whole region stream replayed into a fresh query projection; the customer keys'
/// preload is inside the timed part (`helpline_query::rebuild` starts its clock first).
/// Just before, the same stream is read raw by an ordered consumer that does nothing with
/// its messages: what reading these very messages costs, beside the scratch stream's
/// replay of small ones that the target names.
async fn rebuild(
    store: &EventStore,
    raw_replay: f64,
    added: Added,
    nats_pid: Option<u32>,
    cap: Duration,
) -> anyhow::Result<Rebuild> {
    let key_bucket_entries = key_bucket_entries(store).await?;
    let stream = store.layout().event_stream();
    let mut handle = store
        .jetstream()
        .get_stream(stream)
        .await
        .with_context(|| format!("no stream {stream}"))?;
    let state = handle
        .info()
        .await
        .context("cannot read the region stream's state")?
        .state
        .clone();
    let messages = usize::try_from(state.messages).unwrap_or(usize::MAX);
    let stream_replay = raw::replay_stream(
        store.jetstream(),
        stream,
        messages,
        cap,
        "raw replay of the region stream",
    )
    .await?;
    let bar = progress(0, "rebuild")?;
    let cpu_before = (
        memory::cpu_seconds(None),
        nats_pid.and_then(|pid| memory::cpu_seconds(Some(pid))),
    );
    let (projection, replayed) = helpline_query::rebuild(store, |progress| {
        bar.set_length(progress.total);
        bar.set_position(progress.done);
    })
    .await
    .context("cannot rebuild the query projection")?;
    let cpu_after = (
        memory::cpu_seconds(None),
        nats_pid.and_then(|pid| memory::cpu_seconds(Some(pid))),
    );
    bar.finish();
    let per_sec = replayed.events_per_sec();
    let per_event = |before: Option<f64>, after: Option<f64>| {
        Some((after? - before?) * 1e6 / replayed.events.max(1) as f64)
    };
    Ok(Rebuild {
        projection: "query (helpline_query::rebuild)",
        events: replayed.events,
        tickets: projection.ticket_count(),
        added,
        key_bucket_entries,
        key_cache_limit: u64::try_from(store.config().key_cache_limit).unwrap_or(u64::MAX),
        seconds: replayed.elapsed.as_secs_f64(),
        per_sec,
        ratio_to_raw_replay: ratio(per_sec, raw_replay),
        stream_messages: state.messages,
        stream_bytes_per_message: state.bytes as f64 / state.messages.max(1) as f64,
        ratio_to_stream_replay: ratio(per_sec, stream_replay.per_sec),
        stream_replay,
        cpu_us_per_event: per_event(cpu_before.0, cpu_after.0),
        nats_server_cpu_us_per_event: per_event(cpu_before.1, cpu_after.1),
    })
}

/// Entries in the region's customer-key bucket.
async fn key_bucket_entries(store: &EventStore) -> anyhow::Result<u64> {
    let bucket = store.layout().customer_keys_bucket();
    let kv = store
        .jetstream()
        .get_key_value(&bucket)
        .await
        .with_context(|| format!("no bucket {bucket}"))?;
    let status = kv
        .status()
        .await
        .context("cannot read the key bucket's state")?;
    Ok(status.values())
}

impl DefaultSync {
    fn into_report<'a>(
        self,
        quick: bool,
        machine: Machine,
        sizes: &'a Sizes,
        durable: Durable,
    ) -> Report<'a> {
        let rows = rows(sizes, &self, &durable);
        Report {
            quick,
            machine,
            sizes,
            raw_publish: self.raw_publish,
            raw_replay: self.raw_replay,
            end_to_end: self.end_to_end,
            webhook_ingest: self.webhook_ingest,
            webhook_ingest_paced: self.webhook_ingest_paced,
            webhook_floor: self.webhook_floor,
            webhook_floor_paced: self.webhook_floor_paced,
            round_trips: self.round_trips,
            head_of_line: self.head_of_line,
            end_to_end_slow_provider: self.end_to_end_slow_provider,
            rebuild: self.rebuild,
            ticket_load: self.ticket_load,
            ticket_load_large: self.ticket_load_large,
            memory: self.memory,
            front_door: self.front_door,
            durable,
            rows,
        }
    }
}

/// Targets, as ratios to the raw ceilings of the same run where one applies.
const INGEST_FLOOR_RATIO_TARGET: f64 = 0.5;
const DURABLE_INGEST_RATIO_TARGET: f64 = 0.5;
const PACED_P99_TARGET_MS: f64 = 20.0;
const E2E_P50_TARGET_MS: f64 = 5.0;
const E2E_P99_TARGET_MS: f64 = 25.0;
const SLOW_PROVIDER_P99_TARGET_MS: f64 = 400.0;
const HEAD_OF_LINE_P99_TARGET_MS: f64 = 1000.0;
const ROUND_TRIPS_PER_WEBHOOK_TARGET: f64 = 3.0;
const ROUND_TRIPS_PER_CONVERSATION_TARGET: f64 = 15.0;
const REBUILD_RATIO_TARGET: f64 = 0.7;
const LOAD_P50_TARGET_MS: f64 = 1.0;
const LOAD_GROWTH_TARGET: f64 = 1.5;
const ALL_IDLE_TARGET_BYTES: u64 = 60 * 1000 * 1000;

fn rows(sizes: &Sizes, s: &DefaultSync, durable: &Durable) -> Vec<Row> {
    let publish = format!("{} msg/s publish", thousands(s.raw_publish.per_sec));
    let floor = format!("{} webhooks/s floor", thousands(s.webhook_floor.per_sec));
    let small = &s.ticket_load;
    let large = &s.ticket_load_large;
    let growth = ratio(large.timed.p50_ms, small.timed.p50_ms);
    let in_process = &s.memory.in_process;
    let durable_publish = format!(
        "{} msg/s publish (fsync)",
        thousands(durable.raw_publish.per_sec)
    );
    let ingest_to_floor = s.webhook_ingest.ratio_to_floor.unwrap_or(0.0);
    let hol = &s.head_of_line;
    let trips = &s.round_trips;
    let rebuild = &s.rebuild;
    let key_cache = if u64::try_from(rebuild.tickets).unwrap_or(u64::MAX) > rebuild.key_cache_limit
    {
        format!(
            ", past the key cache's {} limit",
            thousands(rebuild.key_cache_limit as f64)
        )
    } else {
        String::new()
    };
    vec![
        Row {
            row: format!(
                "raw pipelined publish ({} B, {} subjects, {} acks in flight)",
                sizes.message_bytes,
                sizes.subjects,
                raw::MAX_ACKS_IN_FLIGHT
            ),
            system: "—".to_owned(),
            raw_ceiling: format!("{} msg/s", thousands(s.raw_publish.per_sec)),
            ratio: None,
            target: "—".to_owned(),
            met: None,
        },
        Row {
            row: "raw ordered-consumer replay".to_owned(),
            system: "—".to_owned(),
            raw_ceiling: format!("{} msg/s", thousands(s.raw_replay.per_sec)),
            ratio: None,
            target: "—".to_owned(),
            met: None,
        },
        Row {
            row: format!(
                "webhook ingest floor: signature check + one publish per request ({} clients)",
                sizes.clients
            ),
            system: ingest_figure(&s.webhook_floor),
            raw_ceiling: publish.clone(),
            ratio: Some(ratio(s.webhook_floor.per_sec, s.raw_publish.per_sec)),
            target: "—".to_owned(),
            met: None,
        },
        Row {
            row: format!("webhook ingest, maximum ({} clients)", sizes.clients),
            system: format!(
                "{}; {:.3}× raw publish",
                ingest_figure(&s.webhook_ingest),
                s.webhook_ingest.ratio_to_raw_publish
            ),
            raw_ceiling: floor,
            ratio: Some(ingest_to_floor),
            target: format!("≥ {INGEST_FLOOR_RATIO_TARGET:.1}× floor"),
            met: Some(s.webhook_ingest.failed == 0 && ingest_to_floor >= INGEST_FLOOR_RATIO_TARGET),
        },
        Row {
            row: "webhook ingest at half the maximum rate (open loop)".to_owned(),
            system: ingest_figure(&s.webhook_ingest_paced),
            raw_ceiling: format!(
                "floor at the same rate: {}",
                ingest_figure(&s.webhook_floor_paced)
            ),
            ratio: None,
            target: format!("p99 < {PACED_P99_TARGET_MS:.0} ms"),
            met: Some(
                s.webhook_ingest_paced.failed == 0
                    && s.webhook_ingest_paced.p99_ms < PACED_P99_TARGET_MS,
            ),
        },
        Row {
            row: "round trips to NATS per new-customer webhook (requests with a reply subject \
                  that ingress sent, counted on the wire)"
                .to_owned(),
            system: format!(
                "{:.2} (over {} webhooks); all messages {:.2} (over {} webhooks of the ingest)",
                trips.round_trips_per_webhook,
                trips.conversations,
                trips.messages_per_webhook,
                trips.webhooks
            ),
            raw_ceiling: "1 (the floor's publish)".to_owned(),
            ratio: None,
            target: format!("≤ {ROUND_TRIPS_PER_WEBHOOK_TARGET:.0}"),
            met: Some(
                trips.conversations > 0
                    && trips.round_trips_per_webhook <= ROUND_TRIPS_PER_WEBHOOK_TARGET,
            ),
        },
        Row {
            row: "round trips to NATS per first conversation, webhook → bot reply delivered \
                  (requests with a reply subject that ingress, bot and egress sent, counted \
                  on the wire)"
                .to_owned(),
            system: format!(
                "{:.1} (gross {:.1}, less {:.1}/s idle); all messages, acks included, {:.1} \
                 (gross {:.1}, less {:.0}/s idle); {} conversations",
                trips.round_trips_per_conversation,
                trips.gross_round_trips_per_conversation,
                trips.idle_round_trips_per_sec,
                trips.messages_per_conversation,
                trips.gross_messages_per_conversation,
                trips.idle_messages_per_sec,
                trips.conversations
            ),
            raw_ceiling: "—".to_owned(),
            ratio: None,
            target: format!("≤ {ROUND_TRIPS_PER_CONVERSATION_TARGET:.0}"),
            met: Some(
                trips.conversations > 0
                    && trips.round_trips_per_conversation <= ROUND_TRIPS_PER_CONVERSATION_TARGET,
            ),
        },
        e2e_row(
            &format!(
                "end to end: new customers' first message in → bot reply out, {} s",
                sizes.e2e.as_secs()
            ),
            &s.end_to_end,
            Some((Some(E2E_P50_TARGET_MS), E2E_P99_TARGET_MS)),
        ),
        Row {
            row: format!(
                "no head-of-line blocking: one customer's sends hang, {} others write at once",
                hol.others
            ),
            system: format!(
                "{} of {} answered within {} s (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms){}",
                hol.answered,
                hol.others,
                hol.wait_secs,
                hol.p50_ms,
                hol.p99_ms,
                hol.max_ms,
                if hol.blocked_customer_answered {
                    "; the hung customer was answered: the fault did not hold"
                } else {
                    ""
                }
            ),
            raw_ceiling: "—".to_owned(),
            ratio: None,
            target: format!(
                "{0} of {0} answered, p99 < {1:.0} s",
                hol.others,
                HEAD_OF_LINE_P99_TARGET_MS / 1000.0
            ),
            met: Some(
                hol.answered == hol.others
                    && !hol.blocked_customer_answered
                    && hol.p99_ms < HEAD_OF_LINE_P99_TARGET_MS,
            ),
        },
        e2e_row(
            &format!(
                "end to end, the provider answering each send after {} ms, {} s",
                SLOW_PROVIDER.as_millis(),
                sizes.e2e.as_secs()
            ),
            &s.end_to_end_slow_provider,
            Some((None, SLOW_PROVIDER_P99_TARGET_MS)),
        ),
        Row {
            row: format!(
                "rebuild: whole stream into the {}, {} tickets of as many customers ({} added), their keys in {} entries of the key bucket, key preload timed",
                rebuild.projection,
                rebuild.tickets,
                rebuild.added.customers,
                rebuild.key_bucket_entries
            ),
            system: format!(
                "{} events/s ({} events, {} tickets{key_cache}){}",
                thousands(rebuild.per_sec),
                rebuild.events,
                rebuild.tickets,
                rebuild_cpu_text(rebuild)
            ),
            raw_ceiling: format!(
                "{} msg/s replay ({} B messages); the region stream itself ({} messages of {:.0} B on average, headers included) replayed raw: {} msg/s, the rebuild {:.2}× that",
                thousands(s.raw_replay.per_sec),
                sizes.message_bytes,
                rebuild.stream_messages,
                rebuild.stream_bytes_per_message,
                thousands(rebuild.stream_replay.per_sec),
                rebuild.ratio_to_stream_replay
            ),
            ratio: Some(rebuild.ratio_to_raw_replay),
            target: format!("≥ {REBUILD_RATIO_TARGET:.1}×"),
            met: Some(rebuild.ratio_to_raw_replay >= REBUILD_RATIO_TARGET),
        },
        Row {
            row: format!(
                "load one {}-event ticket, {} tickets in the stream (snapshot + tail)",
                small.events, small.tickets
            ),
            system: format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                small.timed.p50_ms, small.timed.p99_ms
            ),
            raw_ceiling: "—".to_owned(),
            ratio: None,
            target: format!("p50 < {LOAD_P50_TARGET_MS:.0} ms"),
            met: Some(small.timed.p50_ms < LOAD_P50_TARGET_MS),
        },
        Row {
            row: format!(
                "load one {}-event ticket, {} tickets in the stream (snapshot + tail)",
                large.events, large.tickets
            ),
            system: format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                large.timed.p50_ms, large.timed.p99_ms
            ),
            raw_ceiling: format!(
                "p50 {:.2} ms at {} tickets",
                small.timed.p50_ms, small.tickets
            ),
            ratio: Some(growth),
            target: format!("p50 < {LOAD_P50_TARGET_MS:.0} ms, ≤ {LOAD_GROWTH_TARGET}× slower"),
            met: Some(large.timed.p50_ms < LOAD_P50_TARGET_MS && growth <= LOAD_GROWTH_TARGET),
        },
        Row {
            row: format!(
                "load the same ticket from its log ({} events, no snapshot), {} tickets",
                large.events, large.tickets
            ),
            system: format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                large.timed.from_log_p50_ms, large.timed.from_log_p99_ms
            ),
            raw_ceiling: "—".to_owned(),
            ratio: None,
            target: "—".to_owned(),
            met: None,
        },
        Row {
            row: "RSS, ingress + egress + bot + load generator in one process".to_owned(),
            system: format!(
                "idle {}, under load {}",
                megabytes(in_process.idle_bytes),
                megabytes(in_process.loaded_bytes)
            ),
            raw_ceiling: format!(
                "nats-server idle {}, under load {}",
                megabytes(in_process.nats_server_idle_bytes),
                megabytes(in_process.nats_server_loaded_bytes)
            ),
            ratio: None,
            target: "—".to_owned(),
            met: None,
        },
        Row {
            row: "RSS, `helpline all` (own process), idle".to_owned(),
            system: megabytes(s.memory.helpline_all_idle.rss_bytes),
            raw_ceiling: "—".to_owned(),
            ratio: None,
            target: format!("< {}", megabytes(Some(ALL_IDLE_TARGET_BYTES))),
            met: s
                .memory
                .helpline_all_idle
                .rss_bytes
                .map(|rss| rss < ALL_IDLE_TARGET_BYTES),
        },
        front_door_row(&s.front_door),
        Row {
            row: format!(
                "fsync: raw pipelined publish ({} acks in flight)",
                raw::MAX_ACKS_IN_FLIGHT
            ),
            system: "—".to_owned(),
            raw_ceiling: format!("{} msg/s", thousands(durable.raw_publish.per_sec)),
            ratio: None,
            target: "—".to_owned(),
            met: None,
        },
        Row {
            row: format!(
                "fsync: webhook ingest, maximum ({} clients)",
                sizes.durable_clients
            ),
            system: ingest_figure(&durable.webhook_ingest),
            raw_ceiling: durable_publish,
            ratio: Some(durable.webhook_ingest.ratio_to_raw_publish),
            target: format!("≥ {DURABLE_INGEST_RATIO_TARGET:.1}×"),
            met: Some(
                durable.webhook_ingest.failed == 0
                    && durable.webhook_ingest.ratio_to_raw_publish >= DURABLE_INGEST_RATIO_TARGET,
            ),
        },
        e2e_row(
            "fsync: end to end: message in → bot reply out",
            &durable.end_to_end,
            None,
        ),
    ]
}

fn front_door_row(door: &StalledUploads) -> Row {
    let answers: Vec<String> = door
        .answers
        .iter()
        .map(|(answer, count)| match answer.as_str() {
            "0" => format!("{count} closed unanswered"),
            "open" => format!("{count} still open"),
            status => format!("{count} × {status}"),
        })
        .collect();
    let over_idle = |rss: Option<u64>| match (rss, door.idle_rss_bytes) {
        (Some(rss), Some(idle)) => format!(
            "{} (+{})",
            mebibytes(Some(rss)),
            mebibytes(Some(rss.saturating_sub(idle)))
        ),
        _ => mebibytes(rss),
    };
    Row {
        row: format!(
            "front door: {} stalled {} MiB uploads to `helpline all` (body deadline {} s), \
             a webhook meanwhile",
            door.uploads,
            door.declared_bytes / (1024 * 1024),
            door.body_timeout_ms / 1000
        ),
        system: format!(
            "RSS idle {}, peak {}, after {} ({:.1} s after the last close); uploads {} \
             (all closed after {:.1} s, {} held at the webhook); webhook {} in {:.1} ms",
            mebibytes(door.idle_rss_bytes),
            over_idle(door.peak_rss_bytes),
            over_idle(door.after_rss_bytes),
            door.after_ms / 1000.0,
            answers.join(", "),
            door.all_closed_after_ms / 1000.0,
            door.held_at_webhook,
            door.webhook_status
                .map_or_else(|| "unanswered".to_owned(), |status| status.to_string()),
            door.webhook_ms
        ),
        raw_ceiling: "—".to_owned(),
        ratio: None,
        target: format!(
            "peak < idle + {}, after < idle + {} within {} s, webhook 200",
            mebibytes(Some(front_door::PEAK_TARGET_BYTES)),
            mebibytes(Some(front_door::AFTER_TARGET_BYTES)),
            front_door::RETURN_CAP.as_secs()
        ),
        met: door.met(),
    }
}

fn ingest_figure(ingest: &Ingest) -> String {
    let failed = match ingest.failed {
        0 => String::new(),
        n => format!(", {n} failed"),
    };
    format!(
        "{} webhooks/s (p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms{failed})",
        thousands(ingest.per_sec),
        ingest.p50_ms,
        ingest.p99_ms,
        ingest.p999_ms
    )
}

/// `targets`: the p50 (where one applies) and p99 the row must stay under, with no
/// message unanswered after the drain; `None` where the row has no target.
fn e2e_row(name: &str, e2e: &EndToEnd, targets: Option<(Option<f64>, f64)>) -> Row {
    let unanswered = e2e.unanswered + e2e.refused;
    let (target, met) = match targets {
        Some((p50, p99)) => {
            let p50_text = p50.map_or_else(String::new, |p50| format!("p50 < {p50:.0} ms, "));
            (
                format!("0 unanswered after the drain, {p50_text}p99 < {p99:.0} ms"),
                Some(unanswered == 0 && p50.is_none_or(|p50| e2e.p50_ms < p50) && e2e.p99_ms < p99),
            )
        }
        None => ("—".to_owned(), None),
    };
    Row {
        row: format!(
            "{name} at {} new customers/s offered",
            thousands(e2e.offered_per_sec)
        ),
        system: format!(
            "{} replies/s, {unanswered} unanswered of {} (p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms; \
             of which until the webhook's 200: p50 {:.2} ms, p99 {:.2} ms){}",
            thousands(e2e.replied_per_sec),
            e2e.sent,
            e2e.p50_ms,
            e2e.p99_ms,
            e2e.p999_ms,
            e2e.webhook_p50_ms,
            e2e.webhook_p99_ms,
            cpu_text(e2e)
        ),
        raw_ceiling: "—".to_owned(),
        ratio: None,
        target,
        met,
    }
}

/// "; CPU per event: …" when both processes' CPU time could be read.
fn rebuild_cpu_text(rebuild: &Rebuild) -> String {
    match (
        rebuild.cpu_us_per_event,
        rebuild.nats_server_cpu_us_per_event,
    ) {
        (Some(own), Some(nats)) => {
            format!("; CPU per event: this process {own:.2} µs, nats-server {nats:.2} µs")
        }
        _ => String::new(),
    }
}

/// "; CPU per conversation: …" when both processes' CPU time could be read.
fn cpu_text(e2e: &EndToEnd) -> String {
    match (
        e2e.cpu_ms_per_conversation,
        e2e.nats_server_cpu_ms_per_conversation,
        e2e.cpu_cores,
        e2e.nats_server_cpu_cores,
    ) {
        (Some(own), Some(nats), Some(own_cores), Some(nats_cores)) => format!(
            "; CPU per conversation: this process {own:.2} ms, nats-server {nats:.2} ms \
             ({own_cores:.2} + {nats_cores:.2} cores busy)"
        ),
        _ => String::new(),
    }
}

fn table(report: &Report) -> String {
    let mut out = String::from(
        "| row | system | raw ceiling | ratio | target | met |\n|---|---|---|---|---|---|\n",
    );
    for row in &report.rows {
        let ratio = row
            .ratio
            .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
        let met = match row.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "—",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {ratio} | {} | {met} |\n",
            row.row, row.system, row.raw_ceiling, row.target
        ));
    }
    out
}

/// `/proc/loadavg`'s three averages; zeros where it cannot be read.
fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|field| field.parse::<f64>().unwrap_or(0.0));
    [(); 3].map(|()| fields.next().unwrap_or(0.0))
}

fn progress(len: usize, phase: &'static str) -> anyhow::Result<ProgressBar> {
    // The bar is drawn only on a terminal; the log line dates the phase everywhere (a
    // profile of one phase is cut by these times).
    tracing::info!(phase, len, "bench phase started");
    let style = ProgressStyle::with_template(
        "{msg:>18} [{bar:30}] {pos}/{len} {per_sec} {elapsed_precise}",
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

/// Bytes as decimal megabytes, `—` when unknown.
fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "—".to_owned(),
        |bytes| format!("{:.1} MB", bytes as f64 / 1e6),
    )
}

/// Bytes as binary megabytes (the front door's budget is set in them), `—` when unknown.
fn mebibytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "—".to_owned(),
        |bytes| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)),
    )
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
        assert_eq!(megabytes(Some(12_345_678)), "12.3 MB");
        assert_eq!(megabytes(None), "—");
        assert_eq!(mebibytes(Some(96 * 1024 * 1024)), "96.0 MiB");
    }
}
