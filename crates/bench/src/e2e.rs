//! End to end: a customer's message in, the bot's reply out. Ingress, egress and the bot
//! run as tasks of this process against the channel simulator; customers write at a fixed
//! offered rate (open loop) and each latency runs from the message's intended send time
//! to the simulator taking the first reply to that customer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use helpline_domain::Channel;
use helpline_egress::{self as egress, EgressConfig, RateLimit};
use helpline_eventstore::EventStore;
use helpline_ingress::ChannelsConfig;
use helpline_testkit::Simulator;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::memory::{self, InProcess};
use super::webhooks::{self, IngressServer};
use super::{Sizes, Stack, latency_histogram, micros, millis, per_sec, quantile_ms};

/// Egress's WhatsApp send rate in the bench. The default (80/s, the Cloud API's standard
/// tier per number) would cap replies far below the offered rate; the simulator has no
/// such limit, and a deployment at this rate runs on a higher tier.
const EGRESS_RATE: RateLimit = RateLimit {
    per_second: 100_000.0,
    burst: 10_000,
};

#[derive(Debug, Serialize)]
pub(super) struct EndToEnd {
    pub offered_per_sec: f64,
    /// Webhooks sent on the schedule.
    pub sent: usize,
    /// Webhooks not answered `200`: their customers never get a reply.
    pub refused: usize,
    pub replied: usize,
    /// Accepted messages whose reply had not come when the phase ended; each is counted
    /// in the percentiles with the time it had waited by then (a lower bound).
    pub unanswered: usize,
    /// From the first intended send to the last reply.
    pub seconds: f64,
    pub replied_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Of the latency above, the part until the webhook's `200` (the message durable in
    /// the log), from the same intended send time: the rest is the pipeline's.
    pub webhook_p50_ms: f64,
    pub webhook_p99_ms: f64,
    pub egress_whatsapp_per_sec: f64,
    /// CPU time per accepted message, from the first send to the last reply (or the
    /// phase's end): of this process (ingress, egress, the bot, and also the load
    /// generator and the simulator) and of nats-server. What shows whether the row is
    /// bound by the two cores rather than by a wait.
    pub cpu_ms_per_conversation: Option<f64>,
    pub nats_server_cpu_ms_per_conversation: Option<f64>,
    /// CPU cores busy on average over the same time, for each.
    pub cpu_cores: Option<f64>,
    pub nats_server_cpu_cores: Option<f64>,
}

/// Egress and the bot running as tasks of this process until stopped.
pub(super) struct Pipeline {
    shutdown: CancellationToken,
    egress: JoinHandle<Result<(), egress::EgressError>>,
    bot: JoinHandle<Result<(), helpline_bot::BotError>>,
}

impl Pipeline {
    pub fn start(store: &EventStore, sim: &Simulator, stack: &Stack) -> anyhow::Result<Self> {
        let shutdown = CancellationToken::new();
        let channels: ChannelsConfig = serde_json::from_value(sim.helpline_channels())
            .context("simulator channels do not fit the config")?;
        let egress_config = EgressConfig {
            channels,
            rate_limits: HashMap::from([(Channel::WhatsApp, EGRESS_RATE)]),
            ..EgressConfig::default()
        };
        let egress = tokio::spawn(egress::run(store.clone(), egress_config, shutdown.clone()));
        let bot = tokio::spawn(helpline_bot::run(
            store.clone(),
            stack.region.clone(),
            stack.flows.clone(),
            shutdown.clone(),
        ));
        Ok(Self {
            shutdown,
            egress,
            bot,
        })
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for (name, stopped) in [
            ("egress", stop(self.egress).await),
            ("bot", stop(self.bot).await),
        ] {
            if let Err(e) = stopped {
                tracing::warn!(service = name, error = %e, "service did not stop cleanly");
            }
        }
    }
}

/// Customers writing at `rate` for `duration` through `ingress` (egress and the bot
/// running), after one warm-up conversation.
pub(super) struct Load<'a> {
    pub rate: f64,
    pub duration: Duration,
    pub pass: u8,
    pub phase: &'static str,
    pub sizes: &'a Sizes,
}

pub(super) async fn run(
    store: &EventStore,
    sim: &Simulator,
    ingress: &IngressServer,
    stack: &Stack,
    load: &Load<'_>,
    nats_pid: Option<u32>,
) -> anyhow::Result<(EndToEnd, InProcess)> {
    let pipeline = Pipeline::start(store, sim, stack)?;
    let result = measure(sim, &ingress.base, load, nats_pid).await;
    pipeline.stop().await;
    result
}

async fn stop<E: std::fmt::Display>(task: JoinHandle<Result<(), E>>) -> anyhow::Result<()> {
    let abort = task.abort_handle();
    match tokio::time::timeout(Duration::from_secs(10), task).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => anyhow::bail!("{e}"),
        Ok(Err(e)) => anyhow::bail!("{e}"),
        Err(_) => {
            abort.abort();
            anyhow::bail!("still running after 10 s, aborted")
        }
    }
}

pub(super) async fn measure(
    sim: &Simulator,
    base: &str,
    load: &Load<'_>,
    nats_pid: Option<u32>,
) -> anyhow::Result<(EndToEnd, InProcess)> {
    let sizes = load.sizes;
    let count = (load.rate * load.duration.as_secs_f64()).ceil() as usize;
    let mut prepared = webhooks::prepare(sim, base, load.pass, count + 1)?;
    let warm_up = prepared.remove(0);
    let prepared = Arc::new(prepared);

    // One conversation first: the consumers exist and every connection is open.
    let http = webhooks::http_client()?;
    anyhow::ensure!(
        webhooks::post(&http, &warm_up, &AtomicUsize::new(0)).await,
        "the warm-up webhook was refused"
    );
    let deadline = Instant::now() + sizes.cap;
    while sim
        .received(Channel::WhatsApp, &warm_up.customer)
        .is_empty()
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the bot did not answer the warm-up message within {:?}",
            sizes.cap
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The bot may say more than one thing; let it finish before measuring idle memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // nats-server's figures only when its pid is known (`None` would read this process).
    let nats_rss = || nats_pid.and_then(|pid| memory::rss_bytes(Some(pid)));
    let nats_cpu = || nats_pid.and_then(|pid| memory::cpu_seconds(Some(pid)));
    let idle = (memory::rss_bytes(None), nats_rss());
    let before = sim.received_count();

    let mut replies = FirstReplies::from(before);
    let sampler = memory::Sampler::start(nats_pid);
    let cpu_before = (Instant::now(), memory::cpu_seconds(None), nats_cpu());
    let scheduled = webhooks::schedule(&prepared, load.rate, load.duration, load.phase).await?;
    let accepted: HashMap<&str, Instant> = scheduled
        .iter()
        .zip(prepared.iter())
        .filter(|(sent, _)| sent.answered.is_some())
        .map(|(sent, webhook)| (webhook.customer.as_str(), sent.intended))
        .collect();
    let refused = scheduled.len() - accepted.len();

    // Every accepted message gets at least one reply: wait for that many cheaply, then
    // for a reply to each customer.
    let deadline = Instant::now() + sizes.cap;
    let first_reply = loop {
        let received = sim.received_count().saturating_sub(before);
        if received >= accepted.len() {
            let first = replies.look(sim, &accepted);
            if first.len() >= accepted.len() {
                break first;
            }
        }
        if Instant::now() >= deadline {
            break replies.look(sim, &accepted);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ended = Instant::now();
    let cpu_after = (memory::cpu_seconds(None), nats_cpu());
    let (loaded_bytes, nats_loaded_bytes) = sampler.stop().await;
    let wall = ended.saturating_duration_since(cpu_before.0).as_secs_f64();
    let used = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
    let (cpu, nats_cpu) = (
        used(cpu_before.1, cpu_after.0),
        used(cpu_before.2, cpu_after.1),
    );
    let per_conversation =
        |seconds: Option<f64>| seconds.map(|s| s * 1000.0 / accepted.len().max(1) as f64);
    let cores = |seconds: Option<f64>| seconds.map(|s| s / wall.max(f64::EPSILON));

    let mut latencies = latency_histogram()?;
    let mut webhook_latencies = latency_histogram()?;
    for sent in &scheduled {
        if let Some(answered) = sent.answered {
            webhook_latencies
                .saturating_record(micros(answered.saturating_duration_since(sent.intended)));
        }
    }
    let (mut replied, mut unanswered) = (0usize, 0usize);
    let first_intended = scheduled.iter().map(|s| s.intended).min();
    let mut last_reply = None::<Instant>;
    for (customer, intended) in &accepted {
        let waited = match first_reply.get(*customer) {
            Some(reply) => {
                replied += 1;
                last_reply = Some(last_reply.map_or(*reply, |last| last.max(*reply)));
                reply.saturating_duration_since(*intended)
            }
            None => {
                unanswered += 1;
                ended.saturating_duration_since(*intended)
            }
        };
        latencies.saturating_record(micros(waited));
    }
    let seconds = match (first_intended, last_reply) {
        (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    let e2e = EndToEnd {
        offered_per_sec: load.rate,
        sent: scheduled.len(),
        refused,
        replied,
        unanswered,
        seconds,
        replied_per_sec: per_sec(replied, seconds),
        p50_ms: quantile_ms(&latencies, 0.50),
        p99_ms: quantile_ms(&latencies, 0.99),
        p999_ms: quantile_ms(&latencies, 0.999),
        max_ms: millis(latencies.max()),
        webhook_p50_ms: quantile_ms(&webhook_latencies, 0.50),
        webhook_p99_ms: quantile_ms(&webhook_latencies, 0.99),
        egress_whatsapp_per_sec: EGRESS_RATE.per_second,
        cpu_ms_per_conversation: per_conversation(cpu),
        nats_server_cpu_ms_per_conversation: per_conversation(nats_cpu),
        cpu_cores: cores(cpu),
        nats_server_cpu_cores: cores(nats_cpu),
    };
    let memory = InProcess {
        idle_bytes: idle.0,
        loaded_bytes,
        nats_server_idle_bytes: idle.1,
        nats_server_loaded_bytes: nats_loaded_bytes,
    };
    Ok((e2e, memory))
}

/// When each customer got their first message, followed as the simulator takes them: each
/// look reads only the messages that arrived since the last.
#[derive(Debug)]
pub(super) struct FirstReplies {
    /// Messages of the simulator already looked at.
    seen: usize,
    first: HashMap<String, Instant>,
}

impl FirstReplies {
    /// Follows the messages after the `from`th the simulator took.
    pub fn from(from: usize) -> Self {
        Self {
            seen: from,
            first: HashMap::new(),
        }
    }

    /// Reads what arrived since the last look; returns the first replies of `customers`
    /// so far.
    pub fn look(
        &mut self,
        sim: &Simulator,
        customers: &HashMap<&str, Instant>,
    ) -> HashMap<String, Instant> {
        self.read(sim);
        self.first
            .iter()
            .filter(|(customer, _)| customers.contains_key(customer.as_str()))
            .map(|(customer, at)| (customer.clone(), *at))
            .collect()
    }

    /// How many of `customers` got a first message so far.
    pub fn answered(&mut self, sim: &Simulator, customers: &HashMap<&str, Instant>) -> usize {
        self.read(sim);
        customers
            .keys()
            .filter(|customer| self.first.contains_key(**customer))
            .count()
    }

    fn read(&mut self, sim: &Simulator) {
        let arrived = sim.arrivals_from(self.seen);
        self.seen += arrived.len();
        for (customer, at) in arrived {
            self.first.entry(customer).or_insert(at);
        }
    }
}
