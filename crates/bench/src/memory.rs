//! Resident memory and CPU time: of this process and nats-server while the end-to-end
//! phase runs, and the memory of `helpline all` started as a process of its own and left
//! idle (the process is also started for the front door's phase, `front_door`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use helpline_testkit::{NatsServer, free_port};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long `helpline all` may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle after ready: the services' consumers and connections settle.
pub(super) const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize)]
pub(super) struct Memory {
    pub helpline_all_idle: AllIdle,
    pub in_process: InProcess,
    /// nats-server once the large ticket count is in its stream.
    pub nats_server_after_large_fill_bytes: Option<u64>,
}

/// This process (ingress, egress, bot, the simulator and the load generator) and
/// nats-server, before and during the end-to-end load.
#[derive(Debug, Serialize)]
pub(super) struct InProcess {
    pub idle_bytes: Option<u64>,
    /// The highest RSS sampled (every 100 ms) while the load ran.
    pub loaded_bytes: Option<u64>,
    pub nats_server_idle_bytes: Option<u64>,
    pub nats_server_loaded_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(super) struct AllIdle {
    pub rss_bytes: Option<u64>,
    pub ready_after_ms: f64,
    /// The region `helpline all` served: one of its own, so that its consumers find
    /// nothing to do.
    pub region: &'static str,
}

/// `VmRSS` of `pid` (this process when `None`) from `/proc/<pid>/status`.
pub(super) fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time (user and system) `pid` (this process when `None`) has used so far, in
/// seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    // The kernel reports these in USER_HZ ticks, 100 a second on every Linux ABI.
    const TICKS_PER_SECOND: f64 = 100.0;
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // Fields 14 and 15 of the file (utime, stime) are the 12th and 13th after the name.
    let user: u64 = fields.nth(11)?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / TICKS_PER_SECOND)
}

/// Samples this process's and nats-server's RSS until stopped; keeps the highest.
pub(super) struct Sampler {
    stop: CancellationToken,
    task: JoinHandle<(Option<u64>, Option<u64>)>,
}

impl Sampler {
    pub fn start(nats_pid: Option<u32>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let (mut own, mut nats) = (None::<u64>, None::<u64>);
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    own = own.max(rss_bytes(None));
                    nats = nats.max(nats_pid.and_then(|pid| rss_bytes(Some(pid))));
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                }
                (own, nats)
            }
        });
        Self { stop, task }
    }

    pub async fn stop(self) -> (Option<u64>, Option<u64>) {
        self.stop.cancel();
        self.task.await.unwrap_or((None, None))
    }
}

/// Kills the child on every way out, errors included.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Already gone is fine: the wait settles it either way.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `helpline all` started from this binary; killed when dropped.
pub(super) struct AllProcess {
    child: KillOnDrop,
    /// Its webhook port (`ingress.listen`).
    pub http: u16,
    /// From the start to `/readyz` answering.
    pub ready_after: Duration,
}

impl AllProcess {
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Its RSS, `None` once it is gone.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(Some(self.pid()))
    }
}

/// Starts this binary as `helpline all` against `nats` on `region`, on free ports and
/// with `env` on top, and waits for `/readyz` on its ops port.
pub(super) async fn start_all(
    nats: &NatsServer,
    region: &str,
    env: &[(&str, String)],
) -> anyhow::Result<AllProcess> {
    let binary = std::env::current_exe().context("cannot find this binary")?;
    let (http, ops) = (free_port()?, free_port()?);
    let started = Instant::now();
    let child = Command::new(binary)
        .args(["all", "--log-format", "json"])
        .env("HELPLINE_NATS_URL", nats.url())
        .env("HELPLINE_REGION", region)
        .env("HELPLINE_INGRESS__LISTEN", format!("127.0.0.1:{http}"))
        .env("HELPLINE_OPS__LISTEN", format!("127.0.0.1:{ops}"))
        .env(
            "HELPLINE_CONSOLE__LISTEN",
            format!("127.0.0.1:{}", free_port()?),
        )
        .env(
            "HELPLINE_GRPC__LISTEN",
            format!("127.0.0.1:{}", free_port()?),
        )
        .env("HELPLINE_LOG", "warn")
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start helpline all")?;
    let mut child = KillOnDrop(child);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("cannot build the HTTP client")?;
    let url = format!("http://127.0.0.1:{ops}/readyz");
    loop {
        if let Some(status) = child.0.try_wait()? {
            anyhow::bail!("helpline all exited before it was ready ({status})");
        }
        let ready = client
            .get(&url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success());
        if ready {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < READY_TIMEOUT,
            "helpline all was not ready after {READY_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(AllProcess {
        child,
        http,
        ready_after: started.elapsed(),
    })
}

/// Starts this binary as `helpline all` against `nats`, waits for `/readyz` on its ops
/// port, lets it settle and reads its RSS.
pub(super) async fn helpline_all_idle(nats: &NatsServer) -> anyhow::Result<AllIdle> {
    const REGION: &str = "benchidle";
    let all = start_all(nats, REGION, &[]).await?;
    tokio::time::sleep(SETTLE).await;
    Ok(AllIdle {
        rss_bytes: all.rss_bytes(),
        ready_after_ms: all.ready_after.as_secs_f64() * 1000.0,
        region: REGION,
    })
}
