//! The webhook port's front door against `helpline all` as a process of its own: a hundred
//! uploads that declare 4 MiB and stall hold memory only within the body budget, give it
//! back once the body deadline closes them, and a provider's webhook is answered all the
//! while.
//!
//! Bounds are generous (RSS depends on the allocator, the machine and its load); the bench
//! measures the same attack with tighter targets (`docs/PERFORMANCE.md`, "Front door:
//! stalled uploads").

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;

use process::{KillOnDrop, Ports, helpline, wait_for};

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use helpline_domain::Channel;
use helpline_testkit::NatsServer;
use helpline_testkit::Simulator;
use helpline_testkit::upload::{self, closed_by};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1024 * 1024;
/// The declared length of each stalled upload: the webhook limit, so it is not refused
/// at once as too large.
const UPLOAD: usize = 4 * 1024 * 1024;
const STALLED: usize = 100;
const BODY_TIMEOUT: Duration = Duration::from_secs(3);

/// `VmRSS` of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

/// POSTs a signed WhatsApp text webhook from customer `n`, as the provider would; the
/// answer's status code, or None when the port did not answer.
async fn post_webhook(port: u16, sim: &Simulator, n: u32) -> Option<u16> {
    let webhook = sim.webhook(Channel::WhatsApp, &format!("49151{n:08}"), "hallo");
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            webhook.path,
            webhook.body.len()
        );
        for (name, value) in &webhook.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.ok()?;
        stream.write_all(&webhook.body).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

/// An upload declaring [`UPLOAD`] bytes, stalled once a write has waited 200 ms.
async fn stall(port: u16) -> (TcpStream, usize) {
    upload::stall(port, UPLOAD, Duration::from_millis(200))
        .await
        .unwrap()
}

/// Samples the RSS of `pid` every 20 ms until dropped; keeps the highest.
struct Peak {
    highest: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Peak {
    fn sample(pid: u32) -> Self {
        let highest = Arc::new(AtomicU64::new(rss(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::spawn({
            let (highest, stop) = (highest.clone(), stop.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    highest.fetch_max(rss(pid), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Self { highest, stop }
    }

    fn highest(&self) -> u64 {
        self.highest.load(Ordering::Relaxed)
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_uploads_hold_memory_within_the_budget_and_give_it_back() {
    let nats = NatsServer::start().await.unwrap();
    // The provider's API, where egress sends the bot's replies.
    let sim = Simulator::start(Default::default()).await.unwrap();
    let whatsapp = sim.config().whatsapp.clone();
    let (mut command, Ports { http, .. }) = helpline("all", &nats.url());
    let helpline = KillOnDrop(
        command
            .env(
                "HELPLINE_INGRESS__BODY_TIMEOUT_MS",
                BODY_TIMEOUT.as_millis().to_string(),
            )
            .env(
                "HELPLINE_CHANNELS__WHATSAPP__APP_SECRET",
                &whatsapp.app_secret,
            )
            .env(
                "HELPLINE_CHANNELS__WHATSAPP__VERIFY_TOKEN",
                &whatsapp.verify_token,
            )
            .env(
                "HELPLINE_CHANNELS__WHATSAPP__ACCESS_TOKEN",
                &whatsapp.access_token,
            )
            // Quoted: the variables are read as TOML values, and digits alone would be a
            // number where a string is expected.
            .env(
                "HELPLINE_CHANNELS__WHATSAPP__PHONE_NUMBER_ID",
                format!("\"{}\"", whatsapp.phone_number_id),
            )
            .env(
                "HELPLINE_CHANNELS__WHATSAPP__API_BASE_URL",
                sim.api_base_url(helpline_domain::Channel::WhatsApp),
            )
            .env("HELPLINE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = helpline.0.id();
    wait_for(http, "/readyz", 200).await;
    // The routes join a moment after the probes answer; a few webhooks warm them up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    loop {
        sent += 1;
        let status = post_webhook(http, &sim, sent).await;
        if status == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a signed webhook was never answered 200, last {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..10 {
        sent += 1;
        assert_eq!(post_webhook(http, &sim, sent).await, Some(200));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss(pid);

    let peak = Peak::sample(pid);
    let attack = Instant::now();
    let uploads: Vec<_> = (0..STALLED).map(|_| tokio::spawn(stall(http))).collect();
    let mut stalled = Vec::with_capacity(STALLED);
    let mut uploaded = 0;
    for upload in uploads {
        let (stream, bytes) = upload.await.unwrap();
        uploaded += bytes;
        stalled.push(stream);
    }
    let stalled_after = attack.elapsed();
    // A provider's webhook while they stall.
    sent += 1;
    let answered = Instant::now();
    let status = post_webhook(http, &sim, sent).await;
    let answered_in = answered.elapsed();
    assert_eq!(
        status,
        Some(200),
        "a webhook was not answered while uploads stalled"
    );
    // …while the server still held some of them: the uploads that took from the budget
    // wait for their deadline.
    let mut held = 0;
    for stream in &stalled {
        let mut buffer = [0u8; 1];
        let peeked = tokio::time::timeout(Duration::from_millis(2), stream.peek(&mut buffer));
        if peeked.await.is_err() {
            held += 1;
        }
    }
    assert!(held > 0, "no upload was held when the webhook was answered");

    // Every stalled upload is closed by its body deadline (plus a busy machine's
    // scheduling).
    let deadline = attack + BODY_TIMEOUT + Duration::from_secs(10);
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    for (i, stream) in stalled.iter_mut().enumerate() {
        let Some(status) = closed_by(stream, deadline).await else {
            panic!(
                "stalled upload {i} was still open {:?} after it began",
                attack.elapsed()
            );
        };
        *answers.entry(status).or_default() += 1;
    }
    let closed_after = attack.elapsed();
    let highest = peak.highest();
    drop(peak);
    drop(stalled);

    // And the memory they held is given back. The allocator purges freed memory a while
    // after it was freed, when the thread that owns it next tidies its heap.
    let back = Instant::now();
    let mut after = rss(pid);
    while after > idle + 48 * MIB && back.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = rss(pid);
    }
    eprintln!(
        "idle {:.1} MiB, peak {:.1} MiB (+{:.1}), after {:.1} MiB (+{:.1}) {:?} after the \
         last close; {STALLED} uploads stalled after {stalled_after:?} having sent \
         {:.1} MiB, answered {answers:?}, all closed after {closed_after:?}; {held} held \
         when a webhook was answered {status:?} in {answered_in:?}",
        mib(idle),
        mib(highest),
        mib(highest.saturating_sub(idle)),
        mib(after),
        mib(after.saturating_sub(idle)),
        back.elapsed(),
        mib(uploaded as u64),
    );
    assert!(
        highest < idle + 160 * MIB,
        "peak RSS {:.1} MiB over idle {:.1} MiB",
        mib(highest),
        mib(idle)
    );
    assert!(
        after <= idle + 48 * MIB,
        "RSS {:.1} MiB 30 s after the uploads were closed, idle {:.1} MiB",
        mib(after),
        mib(idle)
    );
    // Still serving.
    sent += 1;
    assert_eq!(post_webhook(http, &sim, sent).await, Some(200));
}
