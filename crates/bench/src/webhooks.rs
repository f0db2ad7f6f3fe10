//! Signed WhatsApp webhooks POSTed to the real ingress router: at the maximum rate from a
//! fixed number of clients (closed loop), or on a fixed schedule (open loop).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use hdrhistogram::Histogram;
use helpline_domain::Channel;
use helpline_eventstore::EventStore;
use helpline_ingress::{ChannelsConfig, Ingress, IngressConfig};
use helpline_testkit::Simulator;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{latency_histogram, micros, millis, per_sec, progress, quantile_ms};

const TEXT: &str = "Hallo, mein MateBook startet nicht";

#[derive(Debug, Serialize)]
pub(super) struct Ingest {
    /// The open loop's schedule; `None` for the closed loop, which sends as fast as
    /// answers come.
    pub offered_per_sec: Option<f64>,
    pub sent: usize,
    pub ok: usize,
    pub failed: usize,
    pub seconds: f64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub ratio_to_raw_publish: f64,
    /// This ingest ÷ the floor's (`floor.rs`) in the same run; `None` where no floor ran.
    pub ratio_to_floor: Option<f64>,
}

/// The ingress router serving on a loopback port.
pub(super) struct IngressServer {
    pub base: String,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl IngressServer {
    pub async fn start(store: &EventStore, sim: &Simulator) -> anyhow::Result<Self> {
        let channels: ChannelsConfig = serde_json::from_value(sim.helpline_channels())
            .context("simulator channels do not fit the config")?;
        let config = IngressConfig::default();
        let ingress = Ingress::new(store.clone(), &config, &channels)
            .await
            .context("cannot start the channel gateway")?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot listen on 127.0.0.1")?;
        let base = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            let router = ingress.router();
            // Through the front door `helpline ingress` serves from, as shipped: its
            // connection limits, deadlines and TCP_NODELAY are part of what is measured.
            helpline_ingress::front_door::serve(listener, router, config.door(), stop)
        });
        Ok(Self { base, stop, task })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "webhook server failed"),
            Err(e) => tracing::warn!(error = %e, "webhook server task failed"),
        }
    }
}

/// A webhook ready to POST.
pub(super) struct Prepared {
    pub customer: String,
    url: String,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

/// `count` first messages of new customers; `pass` keeps each pass's customers apart.
/// Built before timing: signing is the provider's work, not helpline's.
pub(super) fn prepare(
    sim: &Simulator,
    base: &str,
    pass: u8,
    count: usize,
) -> anyhow::Result<Vec<Prepared>> {
    let mut prepared = Vec::with_capacity(count);
    for i in 0..count {
        let customer = format!("49{pass}{i:09}");
        let webhook = sim.webhook(Channel::WhatsApp, &customer, TEXT);
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
            customer,
            url,
            headers,
            body: Bytes::from(webhook.body),
        });
    }
    Ok(prepared)
}

pub(super) fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // Shorter than the front door's idle limit (5 s): a connection the server is
        // closing as idle is not taken for a send, which would fail it.
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .context("cannot build the HTTP client")
}

/// POSTs one webhook; whether it was answered `200`. Logs the first refusals only.
pub(super) async fn post(
    http: &reqwest::Client,
    webhook: &Prepared,
    failures: &AtomicUsize,
) -> bool {
    let answer = http
        .post(&webhook.url)
        .headers(webhook.headers.clone())
        .body(webhook.body.clone())
        .send()
        .await;
    let problem = match answer {
        Ok(response) if response.status() == reqwest::StatusCode::OK => {
            // Read the body so the connection goes back to the pool.
            let _ = response.bytes().await;
            return true;
        }
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            format!("{status}: {}", body.trim())
        }
        Err(e) => e.to_string(),
    };
    if failures.fetch_add(1, Ordering::Relaxed) < 3 {
        tracing::warn!(problem, "webhook not taken");
    }
    false
}

/// `clients` tasks, each POSTing its next webhook as soon as the last one is answered.
pub(super) async fn closed_loop(
    base: &str,
    sim: &Simulator,
    pass: u8,
    webhooks: usize,
    clients: usize,
    cap: Duration,
    phase: &'static str,
) -> anyhow::Result<Ingest> {
    let prepared = Arc::new(prepare(sim, base, pass, webhooks)?);
    let http = http_client()?;
    let bar = progress(webhooks, phase)?;
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + cap;
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (prepared, next, failures) = (prepared.clone(), next.clone(), failures.clone());
        let (http, bar) = (http.clone(), bar.clone());
        tasks.push(tokio::spawn(async move {
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
                if post(&http, webhook, &failures).await {
                    latencies.saturating_record(micros(sent.elapsed()));
                    ok += 1;
                } else {
                    failed += 1;
                }
                bar.inc(1);
            }
            anyhow::Ok((latencies, ok, failed))
        }));
    }
    let mut latencies = latency_histogram()?;
    let (mut ok, mut failed) = (0usize, 0usize);
    for task in tasks {
        let (task_latencies, task_ok, task_failed) = task.await.context("client task failed")??;
        latencies
            .add(&task_latencies)
            .context("cannot merge latencies")?;
        ok += task_ok;
        failed += task_failed;
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.finish();
    Ok(ingest(None, ok, failed, seconds, &latencies))
}

/// One webhook of an open-loop schedule.
pub(super) struct Scheduled {
    /// When the schedule meant to send it; latencies count from here, so a sender that
    /// falls behind adds its delay to them instead of hiding it.
    pub intended: Instant,
    /// When the `200` came; `None` when the webhook was refused or not answered.
    pub answered: Option<Instant>,
}

/// Sends `prepared[i]` at `start + i / rate`, each on its own task whatever the answers
/// before it, until the list or `duration` ends; waits for every answer.
pub(super) async fn schedule(
    prepared: &Arc<Vec<Prepared>>,
    rate: f64,
    duration: Duration,
    phase: &'static str,
) -> anyhow::Result<Vec<Scheduled>> {
    let http = http_client()?;
    if let Some(first) = prepared.first() {
        warm_up(&http, &first.url).await;
    }
    let failures = Arc::new(AtomicUsize::new(0));
    let count = prepared
        .len()
        .min((rate * duration.as_secs_f64()).ceil() as usize);
    let bar = progress(count, phase)?;
    let interval = Duration::from_secs_f64(1.0 / rate);
    // A little ahead, so that the first sends are not late already.
    let start = Instant::now() + Duration::from_millis(20);
    // Each send's task is detached and leaves only its answer's time behind: a task kept
    // joinable holds its whole future (the HTTP request's) until joined, so the load
    // generator's memory grew with every send of a pass.
    let answers: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
    let finished = Arc::new((AtomicUsize::new(0), tokio::sync::Notify::new()));
    let connections = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS));
    // The sends are timed by a thread of their own: the runtime's timers fire on
    // millisecond ticks, which made sends 0.66–0.84 ms late on average, a delay every
    // latency of the phase counted (they count from the intended time).
    let runtime = tokio::runtime::Handle::current();
    let sender = {
        let (prepared, answers, finished, bar, connections) = (
            prepared.clone(),
            answers.clone(),
            finished.clone(),
            bar.clone(),
            connections.clone(),
        );
        tokio::task::spawn_blocking(move || {
            for i in 0..count {
                let intended = start + interval.mul_f64(i as f64);
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                let (prepared, http, failures, bar, answers, finished, connections) = (
                    prepared.clone(),
                    http.clone(),
                    failures.clone(),
                    bar.clone(),
                    answers.clone(),
                    finished.clone(),
                    connections.clone(),
                );
                runtime.spawn(async move {
                    // A wait for a connection counts in the latency: it runs from the
                    // intended time.
                    let connection = connections.acquire_owned().await;
                    let taken = post(&http, &prepared[i], &failures).await;
                    drop(connection);
                    if taken {
                        // Nanoseconds after `start`, plus one: 0 stays "not answered".
                        let after = Instant::now().saturating_duration_since(start).as_nanos();
                        answers[i].store(
                            u64::try_from(after).unwrap_or(u64::MAX - 1) + 1,
                            Ordering::Release,
                        );
                    }
                    bar.inc(1);
                    let (done, notify) = &*finished;
                    if done.fetch_add(1, Ordering::AcqRel) + 1 == count {
                        notify.notify_one();
                    }
                });
            }
        })
    };
    sender.await.context("the sending thread failed")?;
    let (done, notify) = &*finished;
    while done.load(Ordering::Acquire) < count {
        // Woken by the last send; the timeout only re-checks in case it raced the wait.
        let _ = tokio::time::timeout(Duration::from_millis(100), notify.notified()).await;
    }
    let scheduled = answers
        .iter()
        .enumerate()
        .map(|(i, answer)| Scheduled {
            intended: start + interval.mul_f64(i as f64),
            answered: match answer.load(Ordering::Acquire) {
                0 => None,
                after => Some(start + Duration::from_nanos(after - 1)),
            },
        })
        .collect();
    bar.finish();
    Ok(scheduled)
}

/// Connections a schedule opens before its first send, and the only ones it sends on: at
/// most this many sends are in flight, each on a connection of its own, and later sends
/// wait for one (from their intended time, so the wait counts). A provider sends from a
/// bounded pool (Telegram's `max_connections`: 40 by default, 100 at most). An unbounded
/// open loop opened a connection per webhook during a stall, past the front door's 1 024,
/// which refused the rest (690 webhooks of one paced pass); with 512 in flight, a stall of
/// 20 ms still opened hundreds, and their set-up on the same two cores stretched it to
/// 40–120 ms (the paced p99 read 38–65 ms at 9.4–10.4 k webhooks/s; sending on these 64
/// only, 5.1–13.6 ms at 8.1–9.4 k).
const CONNECTIONS: usize = 64;

/// Opens [`CONNECTIONS`] keep-alive connections to the server of `url`, left idle in
/// `http`'s pool for the schedule to send on. A provider keeps its connections to a
/// webhook open; a schedule that started on an empty pool opened a connection for every
/// send until answers came back, hundreds in its first 100 ms, and that storm of the load
/// generator's own (on the same two cores) was one of the paced phase's stalls. A `GET /` is
/// answered 404 by the router alone, touching no webhook handler.
async fn warm_up(http: &reqwest::Client, url: &str) {
    let Ok(mut root) = reqwest::Url::parse(url) else {
        return;
    };
    root.set_path("/");
    root.set_query(None);
    // Each answer is read to its end, which hands its connection back to the pool.
    let opened = futures::future::join_all(
        (0..CONNECTIONS).map(|_| async { http.get(root.clone()).send().await?.bytes().await }),
    )
    .await;
    let failed = opened.iter().filter(|answer| answer.is_err()).count();
    if failed > 0 {
        tracing::warn!(failed, "some warm-up connections were not opened");
    }
}

/// Ingest at a fixed offered rate for `duration`; latency of the `200` from the intended
/// send time.
pub(super) async fn open_loop(
    base: &str,
    sim: &Simulator,
    pass: u8,
    rate: f64,
    duration: Duration,
    cap: Duration,
    phase: &'static str,
) -> anyhow::Result<Ingest> {
    let rate = rate.max(1.0);
    let duration = duration.min(cap);
    let count = (rate * duration.as_secs_f64()).ceil() as usize;
    let prepared = Arc::new(prepare(sim, base, pass, count)?);
    let scheduled = schedule(&prepared, rate, duration, phase).await?;
    let mut latencies = latency_histogram()?;
    let (mut ok, mut failed) = (0usize, 0usize);
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    for sent in &scheduled {
        first = Some(first.map_or(sent.intended, |f| f.min(sent.intended)));
        match sent.answered {
            Some(answered) => {
                latencies
                    .saturating_record(micros(answered.saturating_duration_since(sent.intended)));
                last = Some(last.map_or(answered, |l| l.max(answered)));
                ok += 1;
            }
            None => failed += 1,
        }
    }
    let seconds = match (first, last) {
        (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    log_slowest_moments(&scheduled, phase);
    Ok(ingest(Some(rate), ok, failed, seconds, &latencies))
}

/// Width of the windows [`log_slowest_moments`] compares.
const MOMENT: Duration = Duration::from_millis(50);

/// Logs the three 50 ms windows of intended send times whose webhooks waited longest,
/// dated by the wall clock: a stall in an open loop shows as one such window, and its
/// date lines it up with a profile or another process's log.
fn log_slowest_moments(scheduled: &[Scheduled], phase: &'static str) {
    let Some(start) = scheduled.iter().map(|sent| sent.intended).min() else {
        return;
    };
    let wall_start = std::time::SystemTime::now() - start.elapsed();
    let mut worst: std::collections::BTreeMap<u128, Duration> = Default::default();
    for sent in scheduled {
        let Some(answered) = sent.answered else {
            continue;
        };
        let window =
            sent.intended.saturating_duration_since(start).as_millis() / MOMENT.as_millis();
        let waited = answered.saturating_duration_since(sent.intended);
        let slot = worst.entry(window).or_default();
        *slot = (*slot).max(waited);
    }
    let mut windows: Vec<_> = worst.into_iter().collect();
    windows.sort_by_key(|window| std::cmp::Reverse(window.1));
    for (window, waited) in windows.into_iter().take(3) {
        let offset = MOMENT * u32::try_from(window).unwrap_or(u32::MAX);
        let at = (wall_start + offset)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        tracing::info!(
            phase,
            at_unix_secs = format!("{:.3}", at.as_secs_f64()),
            into_phase_ms = offset.as_millis() as u64,
            longest_wait_ms = waited.as_millis() as u64,
            "slow moment of the paced ingest"
        );
    }
}

fn ingest(
    offered_per_sec: Option<f64>,
    ok: usize,
    failed: usize,
    seconds: f64,
    latencies: &Histogram<u64>,
) -> Ingest {
    Ingest {
        offered_per_sec,
        sent: ok + failed,
        ok,
        failed,
        seconds,
        per_sec: per_sec(ok, seconds),
        p50_ms: quantile_ms(latencies, 0.50),
        p99_ms: quantile_ms(latencies, 0.99),
        p999_ms: quantile_ms(latencies, 0.999),
        max_ms: millis(latencies.max()),
        ratio_to_raw_publish: 0.0,
        ratio_to_floor: None,
    }
}
