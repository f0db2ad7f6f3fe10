//! Rows measured on a pipeline of their own (ingress, egress and the bot on one fresh
//! connection, region stream `benchlanes`), so that no backlog of the main end-to-end
//! phase is in their way: the messages a first conversation sends to nats-server, and
//! whether one customer whose sends hang holds back the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use helpline_domain::Channel;
use helpline_testkit::Simulator;
use serde::Serialize;

use super::e2e::FirstReplies;
use super::tap::{Sent, Tap};
use super::webhooks;
use super::{latency_histogram, micros, millis, quantile_ms};

/// How long the others may take in the head-of-line row before they count as unanswered:
/// well past its 1 s target, well short of egress's 10 s send timeout, so the hung send is
/// still hanging when the wait ends.
const HEAD_OF_LINE_WAIT: Duration = Duration::from_secs(5);
/// The bot may say several things to a new customer; its first conversation is over once
/// no further message has arrived for this long.
const QUIET: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize)]
pub(super) struct HeadOfLine {
    /// Customers writing while one customer's sends hang.
    pub others: usize,
    /// Of them, those who got a first reply within the wait.
    pub answered: usize,
    pub wait_secs: u64,
    /// From each webhook's send to the simulator taking the first reply to that customer;
    /// an unanswered customer counts with the whole wait.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Whether the hung customer got anything meanwhile (never, while the fault holds):
    /// the row's check that it measured what it says.
    pub blocked_customer_answered: bool,
}

/// What the services send to nats-server per unit of work. A **round trip** is a message
/// sent with a reply subject, which its sender waits on (a publish awaiting its ack, a KV
/// or Direct Get, an API call, a pull request), counted on the wire by a [`Tap`];
/// **messages** are every PUB and HPUB (`out_messages` of the client): round trips plus
/// acknowledgements and other one-way messages.
#[derive(Debug, Serialize)]
pub(super) struct RoundTrips {
    /// New-customer webhooks taken by ingress alone (the ingest phase, on ingress's own
    /// connection).
    pub webhooks: usize,
    pub messages_per_webhook: f64,
    /// Round trips of ingress per new customer's first webhook (the conversations below,
    /// ingress on a connection of its own).
    pub round_trips_per_webhook: f64,
    /// First conversations (webhook in, every bot reply delivered) through ingress, egress
    /// and the bot.
    pub conversations: usize,
    pub round_trips_per_conversation: f64,
    pub messages_per_conversation: f64,
    /// What those connections send when nothing happens (member heartbeats, pulls), per
    /// second; subtracted from the conversations' counts over their duration.
    pub idle_round_trips_per_sec: f64,
    pub idle_messages_per_sec: f64,
    /// The conversations' counts before that subtraction.
    pub gross_round_trips_per_conversation: f64,
    pub gross_messages_per_conversation: f64,
}

pub(super) fn out_messages(client: &async_nats::Client) -> u64 {
    client.statistics().out_messages.load(Ordering::Relaxed)
}

/// What the taps counted, summed.
fn sent(taps: &[&Tap]) -> Sent {
    taps.iter().fold(Sent::default(), |sum, tap| {
        let sent = tap.sent();
        Sent {
            requests: sum.requests + sent.requests,
            one_way: sum.one_way + sent.one_way,
        }
    })
}

/// `count` new customers' first conversations through the pipeline whose ingress talks
/// to nats-server through `ingress` and whose bot and egress through `services`: what
/// they sent per conversation, from the first webhook to the last bot reply taken by the
/// simulator.
pub(super) async fn conversations(
    ingress: &Tap,
    services: &Tap,
    sim: &Simulator,
    base: &str,
    count: usize,
    cap: Duration,
) -> anyhow::Result<RoundTrips> {
    let taps = [ingress, services];
    let mut prepared = webhooks::prepare(sim, base, 5, count + 1)?;
    let warm_up = prepared.remove(0);
    let http = webhooks::http_client()?;
    anyhow::ensure!(
        webhooks::post(&http, &warm_up, &AtomicUsize::new(0)).await,
        "the warm-up webhook was refused"
    );
    wait_for_replies(sim, &[warm_up.customer.as_str()], cap).await?;
    quiet(sim, cap).await;

    let idle_from = sent(&taps);
    let idle_start = Instant::now();
    tokio::time::sleep(QUIET).await;
    let idle = sent(&taps).since(idle_from);
    let idle_secs = idle_start.elapsed().as_secs_f64();

    let before = sent(&taps);
    let ingress_before = ingress.sent();
    let start = Instant::now();
    let customers: Vec<&str> = prepared.iter().map(|p| p.customer.as_str()).collect();
    let failures = AtomicUsize::new(0);
    let bar = super::progress(count, "round trips")?;
    // All at once: the count is per conversation, whatever the concurrency.
    futures::future::join_all(prepared.iter().map(|webhook| {
        let (http, failures, bar) = (&http, &failures, &bar);
        async move {
            webhooks::post(http, webhook, failures).await;
            bar.inc(1);
        }
    }))
    .await;
    bar.finish();
    anyhow::ensure!(
        failures.load(Ordering::Relaxed) == 0,
        "webhooks of the round-trip count were refused"
    );
    let ingress_sent = ingress.sent().since(ingress_before);
    wait_for_replies(sim, &customers, cap).await?;
    quiet(sim, cap).await;
    let total = sent(&taps).since(before);
    // The quiet wait at the end is not the conversations' own time.
    let busy = start.elapsed().saturating_sub(QUIET).as_secs_f64();
    let per = |n: f64| n / count.max(1) as f64;
    let net = |n: u64, idle_per_sec: f64| per((n as f64 - idle_per_sec * busy).max(0.0));
    let idle_requests = idle.requests as f64 / idle_secs;
    let idle_messages = idle.messages() as f64 / idle_secs;
    Ok(RoundTrips {
        webhooks: 0,
        messages_per_webhook: 0.0,
        round_trips_per_webhook: per(ingress_sent.requests as f64),
        conversations: count,
        round_trips_per_conversation: net(total.requests, idle_requests),
        messages_per_conversation: net(total.messages(), idle_messages),
        idle_round_trips_per_sec: idle_requests,
        idle_messages_per_sec: idle_messages,
        gross_round_trips_per_conversation: per(total.requests as f64),
        gross_messages_per_conversation: per(total.messages() as f64),
    })
}

/// One customer whose WhatsApp sends hang, then `others` new customers writing at once.
pub(super) async fn head_of_line(
    sim: &Simulator,
    base: &str,
    others: usize,
    cap: Duration,
) -> anyhow::Result<HeadOfLine> {
    let prepared = webhooks::prepare(sim, base, 6, others + 1)?;
    let (blocked, others) = prepared
        .split_first()
        .context("no customer for the head-of-line row")?;
    sim.hang_whatsapp_sends_to(&blocked.customer);
    let http = webhooks::http_client()?;
    let attempts = sim.send_attempts(Channel::WhatsApp);
    anyhow::ensure!(
        webhooks::post(&http, blocked, &AtomicUsize::new(0)).await,
        "the blocked customer's webhook was refused"
    );
    // The row means something only once a send to that customer is hanging.
    let deadline = Instant::now() + cap;
    while sim.send_attempts(Channel::WhatsApp) == attempts {
        anyhow::ensure!(
            Instant::now() < deadline,
            "egress did not try to send to the blocked customer within {cap:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let failures = AtomicUsize::new(0);
    let mut replies = FirstReplies::from(sim.received_count());
    let sent = Instant::now();
    let answers = futures::future::join_all(
        others
            .iter()
            .map(|webhook| webhooks::post(&http, webhook, &failures)),
    )
    .await;
    let accepted: HashMap<&str, Instant> = others
        .iter()
        .zip(answers)
        .filter(|(_, ok)| *ok)
        .map(|(webhook, _)| (webhook.customer.as_str(), sent))
        .collect();
    let deadline = sent + HEAD_OF_LINE_WAIT;
    let first = loop {
        let first = replies.look(sim, &accepted);
        if first.len() >= accepted.len() || Instant::now() >= deadline {
            break first;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let blocked_customer_answered = !sim
        .received(Channel::WhatsApp, &blocked.customer)
        .is_empty();
    // Lets the hung send through, so that egress is not left waiting on it.
    sim.clear_faults();
    let mut latencies = latency_histogram()?;
    for customer in accepted.keys() {
        let waited = first.get(*customer).map_or(HEAD_OF_LINE_WAIT, |reply| {
            reply.saturating_duration_since(sent)
        });
        latencies.saturating_record(micros(waited));
    }
    // Refused webhooks are unanswered customers too.
    for _ in accepted.len()..others.len() {
        latencies.saturating_record(micros(HEAD_OF_LINE_WAIT));
    }
    Ok(HeadOfLine {
        others: others.len(),
        answered: first.len(),
        wait_secs: HEAD_OF_LINE_WAIT.as_secs(),
        p50_ms: quantile_ms(&latencies, 0.50),
        p99_ms: quantile_ms(&latencies, 0.99),
        max_ms: millis(latencies.max()),
        blocked_customer_answered,
    })
}

/// Waits until each of `customers` got a first message.
async fn wait_for_replies(
    sim: &Simulator,
    customers: &[&str],
    cap: Duration,
) -> anyhow::Result<()> {
    let wanted: HashMap<&str, Instant> = customers.iter().map(|c| (*c, Instant::now())).collect();
    let deadline = Instant::now() + cap;
    let mut replies = FirstReplies::from(0);
    while replies.answered(sim, &wanted) < wanted.len() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the bot did not answer {} customers within {cap:?}",
            wanted.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Waits until the simulator has taken no message for [`QUIET`] (or `cap` passed).
async fn quiet(sim: &Simulator, cap: Duration) {
    let deadline = Instant::now() + cap;
    let mut count = sim.received_count();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sim.received_count();
        if now != count {
            count = now;
            since = Instant::now();
        } else if since.elapsed() >= QUIET {
            return;
        }
    }
}
