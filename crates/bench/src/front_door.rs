//! The webhook port's front door under stalled uploads: `helpline all` started as a process
//! of its own, a hundred connections each declaring a 4 MiB webhook, sending what the
//! server takes and then nothing; its RSS idle, at its highest while they stall and once
//! the body deadline closed them, and whether a provider's webhook is answered meanwhile.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use helpline_domain::Channel;
use helpline_testkit::upload::{self, closed_by};
use helpline_testkit::{NatsServer, Simulator};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::memory::{self, AllProcess};

const MIB: u64 = 1024 * 1024;
const UPLOADS: usize = 100;
/// The webhook limit: a larger declared length is refused before anything is read.
const DECLARED: usize = 4 * 1024 * 1024;
/// A write waiting this long means the server (and the sockets' buffers) took no more.
const WRITE_STALL: Duration = Duration::from_millis(200);
/// `ingress.body_timeout_ms` of the process: shorter than the default 10 s so the phase
/// stays short; what the uploads hold does not depend on it, only for how long.
const BODY_TIMEOUT: Duration = Duration::from_secs(3);
/// Beyond the body deadline, for a busy machine's scheduling.
const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// The longest wait, after the last upload was closed, for the RSS to come back.
pub(super) const RETURN_CAP: Duration = Duration::from_secs(20);
pub(super) const PEAK_TARGET_BYTES: u64 = 96 * MIB;
pub(super) const AFTER_TARGET_BYTES: u64 = 32 * MIB;
const REGION: &str = "benchdoor";
/// The longest wait for the webhook route to answer `200` after `/readyz` did.
const WARM_UP_CAP: Duration = Duration::from_secs(20);

#[derive(Debug, Serialize)]
pub(super) struct StalledUploads {
    pub uploads: usize,
    pub declared_bytes: usize,
    pub body_timeout_ms: u64,
    /// Body bytes written before the uploads' writes stalled, into the server and the
    /// sockets' buffers together.
    pub sent_bytes: u64,
    pub idle_rss_bytes: Option<u64>,
    /// The highest RSS sampled (every 20 ms) from the first upload to the last one closed.
    pub peak_rss_bytes: Option<u64>,
    /// The first RSS sampled (every 100 ms) within the target after the last upload was
    /// closed, or the last one sampled when [`RETURN_CAP`] ran out.
    pub after_rss_bytes: Option<u64>,
    pub after_ms: f64,
    /// The server's answers to the uploads by status code; `0` for a connection closed
    /// without one, `open` for one still open when the grace ran out.
    pub answers: BTreeMap<String, usize>,
    /// Uploads the server still held when the webhook below was answered.
    pub held_at_webhook: usize,
    pub all_closed_after_ms: f64,
    /// A provider's signed webhook sent while the uploads stalled.
    pub webhook_status: Option<u16>,
    pub webhook_ms: f64,
}

impl StalledUploads {
    /// Within the targets, every upload closed and the webhook answered `200`; `None`
    /// where the RSS could not be read.
    pub fn met(&self) -> Option<bool> {
        let (idle, peak, after) = (
            self.idle_rss_bytes?,
            self.peak_rss_bytes?,
            self.after_rss_bytes?,
        );
        Some(
            peak < idle + PEAK_TARGET_BYTES
                && after < idle + AFTER_TARGET_BYTES
                && !self.answers.contains_key("open")
                && self.webhook_status == Some(200),
        )
    }
}

pub(super) async fn stalled_uploads(nats: &NatsServer) -> anyhow::Result<StalledUploads> {
    // The provider's API, where egress sends the bot's replies.
    let sim = Simulator::start(Default::default())
        .await
        .context("cannot start the channel simulator")?;
    let whatsapp = sim.config().whatsapp.clone();
    let env = [
        (
            "HELPLINE_INGRESS__BODY_TIMEOUT_MS",
            BODY_TIMEOUT.as_millis().to_string(),
        ),
        (
            "HELPLINE_CHANNELS__WHATSAPP__APP_SECRET",
            whatsapp.app_secret.clone(),
        ),
        (
            "HELPLINE_CHANNELS__WHATSAPP__VERIFY_TOKEN",
            whatsapp.verify_token.clone(),
        ),
        (
            "HELPLINE_CHANNELS__WHATSAPP__ACCESS_TOKEN",
            whatsapp.access_token.clone(),
        ),
        // Quoted: the variables are read as TOML values, and digits alone would be a
        // number where a string is expected.
        (
            "HELPLINE_CHANNELS__WHATSAPP__PHONE_NUMBER_ID",
            format!("\"{}\"", whatsapp.phone_number_id),
        ),
        (
            "HELPLINE_CHANNELS__WHATSAPP__API_BASE_URL",
            sim.api_base_url(Channel::WhatsApp),
        ),
    ];
    let all = memory::start_all(nats, REGION, &env).await?;
    let base = format!("http://127.0.0.1:{}", all.http);
    // The routes join a moment after `/readyz` answers; a few webhooks warm them up.
    let warm = Instant::now();
    let mut customer = 0;
    loop {
        customer += 1;
        let webhook = sim.webhook(Channel::WhatsApp, &format!("door{customer}"), "hallo");
        let status = sim
            .deliver(&base, &webhook)
            .await
            .map(|answer| answer.status);
        if matches!(status, Ok(200)) && customer >= 10 {
            break;
        }
        anyhow::ensure!(
            warm.elapsed() < WARM_UP_CAP,
            "helpline all did not answer a webhook 200 (last {status:?})"
        );
        if !matches!(status, Ok(200)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(memory::SETTLE).await;
    let idle_rss_bytes = all.rss_bytes();

    let peak = Peak::start(&all);
    let began = Instant::now();
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|_| tokio::spawn(stall(all.http)))
        .collect();
    let mut stalled = Vec::with_capacity(UPLOADS);
    let mut sent_bytes = 0;
    for upload in uploads {
        let (stream, sent) = upload.await.context("an upload's task failed")??;
        sent_bytes += sent as u64;
        stalled.push(stream);
    }
    let webhook = sim.webhook(Channel::WhatsApp, "door-meanwhile", "hallo");
    let sent = Instant::now();
    let webhook_status = sim
        .deliver(&base, &webhook)
        .await
        .ok()
        .map(|answer| answer.status);
    let webhook_ms = sent.elapsed().as_secs_f64() * 1000.0;
    let mut held_at_webhook = 0;
    for stream in &stalled {
        if held(stream).await {
            held_at_webhook += 1;
        }
    }

    let deadline = began + BODY_TIMEOUT + CLOSE_GRACE;
    let mut answers = BTreeMap::new();
    for stream in &mut stalled {
        let answer = closed_by(stream, deadline)
            .await
            .map_or_else(|| "open".to_owned(), |status| status.to_string());
        *answers.entry(answer).or_default() += 1;
    }
    let all_closed_after_ms = began.elapsed().as_secs_f64() * 1000.0;
    let peak_rss_bytes = peak.stop().await;
    drop(stalled);

    let closed = Instant::now();
    let mut after_rss_bytes = all.rss_bytes();
    while let (Some(idle), Some(after)) = (idle_rss_bytes, after_rss_bytes)
        && after >= idle + AFTER_TARGET_BYTES
        && closed.elapsed() < RETURN_CAP
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after_rss_bytes = all.rss_bytes();
    }
    Ok(StalledUploads {
        uploads: UPLOADS,
        declared_bytes: DECLARED,
        body_timeout_ms: u64::try_from(BODY_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        sent_bytes,
        idle_rss_bytes,
        peak_rss_bytes,
        after_rss_bytes,
        after_ms: closed.elapsed().as_secs_f64() * 1000.0,
        answers,
        held_at_webhook,
        all_closed_after_ms,
        webhook_status,
        webhook_ms,
    })
}

/// An upload declaring [`DECLARED`] bytes, stalled as far as the server takes it.
async fn stall(port: u16) -> anyhow::Result<(TcpStream, usize)> {
    upload::stall(port, DECLARED, WRITE_STALL)
        .await
        .context("cannot send an upload")
}

/// Whether the server holds `stream` open without having said anything yet.
async fn held(stream: &TcpStream) -> bool {
    let mut buffer = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(2), stream.peek(&mut buffer))
        .await
        .is_err()
}

/// Samples a process's RSS every 20 ms until stopped; keeps the highest.
struct Peak {
    highest: Arc<AtomicU64>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Peak {
    fn start(all: &AllProcess) -> Self {
        let pid = all.pid();
        let highest = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (highest, stop) = (highest.clone(), stop.clone());
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                loop {
                    if let Some(rss) = memory::rss_bytes(Some(pid)) {
                        highest.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                }
            }
        });
        Self {
            highest,
            stop,
            task,
        }
    }

    async fn stop(self) -> Option<u64> {
        self.stop.cancel();
        let _ = self.task.await;
        Some(self.highest.load(Ordering::Relaxed)).filter(|&rss| rss > 0)
    }
}
