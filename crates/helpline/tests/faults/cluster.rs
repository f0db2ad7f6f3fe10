//! The system under test as an operator runs it: `helpline <service>` processes over a
//! real nats-server (one per service, or several replicas of one), each with its own
//! ports and its logs kept, and handles to kill, restart, pause and resume them.

use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// How long a (re)started process may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The services the suite runs, one process each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ingress,
    Bot,
    Routing,
    Feedback,
    /// Offers tickets to agents; the AgentDesk API.
    Assignment,
    /// The ticket projection; the TicketQuery API.
    Query,
    /// Erasure and retention; the Privacy API.
    Privacy,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Ingress,
        Kind::Bot,
        Kind::Routing,
        Kind::Feedback,
        Kind::Assignment,
        Kind::Query,
        Kind::Privacy,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ingress => "ingress",
            Kind::Bot => "bot",
            Kind::Routing => "routing",
            Kind::Feedback => "feedback",
            Kind::Assignment => "assignment",
            Kind::Query => "query",
            Kind::Privacy => "privacy",
        }
    }

    /// The sub-command that runs it.
    pub fn command(self) -> &'static [&'static str] {
        match self {
            Kind::Privacy => &["privacy", "serve"],
            Kind::Ingress => &["ingress"],
            Kind::Bot => &["bot"],
            Kind::Routing => &["routing"],
            Kind::Feedback => &["feedback"],
            Kind::Assignment => &["assignment"],
            Kind::Query => &["query"],
        }
    }

    /// The durable consumers over the ticket events this service reads with.
    pub fn ticket_consumers(self) -> &'static [&'static str] {
        match self {
            Kind::Ingress => &["egress", "media"],
            Kind::Bot => &["bot"],
            Kind::Routing => &["routing"],
            Kind::Feedback => &["feedback"],
            // Views that follow the log; no durable consumer.
            Kind::Assignment | Kind::Query | Kind::Privacy => &[],
        }
    }
}

/// One service process. Dropping it kills the process.
pub struct Service {
    pub kind: Kind,
    /// Which replica of its kind, from 0.
    pub replica: usize,
    env: Vec<(String, String)>,
    pub ops_port: u16,
    pub grpc_port: u16,
    pub ingress_port: u16,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    starts: u32,
}

impl Service {
    /// Starts `helpline <kind>` against `nats_url` with `channels` (the simulator's
    /// `[channels.*]` as JSON) and waits until it is ready.
    pub async fn start(kind: Kind, nats_url: &str, channels: &serde_json::Value) -> Service {
        Self::start_replica(kind, 0, nats_url, channels, &[]).await
    }

    /// Starts replica `replica` of `kind`, as [`Service::start`] does, with `extra_env`
    /// added to its environment (e.g. `HELPLINE_LOG` for a finer log filter).
    pub async fn start_replica(
        kind: Kind,
        replica: usize,
        nats_url: &str,
        channels: &serde_json::Value,
        extra_env: &[(&str, &str)],
    ) -> Service {
        let port = || helpline_testkit::free_port().unwrap_or_else(|e| panic!("free port: {e}"));
        let (ops_port, grpc_port, ingress_port) = (port(), port(), port());
        let mut env = vec![
            ("HELPLINE_NATS_URL".to_owned(), nats_url.to_owned()),
            (
                "HELPLINE_OPS__LISTEN".to_owned(),
                format!("127.0.0.1:{ops_port}"),
            ),
            (
                "HELPLINE_GRPC__LISTEN".to_owned(),
                format!("127.0.0.1:{grpc_port}"),
            ),
            (
                "HELPLINE_INGRESS__LISTEN".to_owned(),
                format!("127.0.0.1:{ingress_port}"),
            ),
        ];
        env.extend(channel_env(channels));
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let mut service = Service {
            kind,
            replica,
            env,
            ops_port,
            grpc_port,
            ingress_port,
            child: None,
            log: Arc::default(),
            starts: 0,
        };
        service.spawn().await;
        service
    }

    /// `bot`, or `bot#2` for a replica after the first: the name in reports.
    pub fn name(&self) -> String {
        match self.replica {
            0 => self.kind.name().to_owned(),
            n => format!("{}#{}", self.kind.name(), n + 1),
        }
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let mut command = Command::new(env!("CARGO_BIN_EXE_helpline"));
        command
            .args(self.kind.command())
            .args(["--log-format", "json"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start helpline {}: {e}", self.name()));
        // Drained as it comes: a full pipe would block the service's logging.
        if let Some(stderr) = child.stderr.take() {
            let log = self.log.clone();
            let start = self.starts;
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
                    log.push_str(&format!("[start {start}] {line}\n"));
                }
            });
        }
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits until `/readyz` answers 200 (NATS connected, JetStream answering); panics
    /// with the process's latest logs when it does not in time or the process exited.
    pub async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if status(self.ops_port, "/readyz").await == Some(200) {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(exit)) = child.try_wait()
            {
                panic!(
                    "helpline {} exited while starting ({exit}):\n{}",
                    self.name(),
                    self.log_tail(40)
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "helpline {} not ready after {READY_TIMEOUT:?}:\n{}",
                self.name(),
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> Pid {
        let id = self.child.as_ref().and_then(Child::id).unwrap_or_else(|| {
            panic!("helpline {} is not running", self.name());
        });
        Pid::from_raw(i32::try_from(id).unwrap_or_else(|e| panic!("pid {id}: {e}")))
    }

    /// Kills the process without warning, as a crash or an OOM kill would, and reaps it.
    pub async fn kill9(&mut self) {
        kill(self.pid(), Signal::SIGKILL)
            .unwrap_or_else(|e| panic!("SIGKILL {}: {e}", self.name()));
        if let Some(mut child) = self.child.take() {
            let _ = child.wait().await;
        }
    }

    /// Starts the process again with the same ports and configuration.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill9 only");
        self.spawn().await;
    }

    /// Kills the process without warning at `at`, from a thread of its own, and reaps it;
    /// returns the moment of the signal. The test's runtime also runs the simulator: a
    /// kill on its timers would fire together with the sends whose delays ended while the
    /// runtime was busy, just after the provider took them all, and so aim at the gap
    /// between a provider's acceptance and its record rather than land at random.
    pub async fn kill9_at(&mut self, at: std::time::Instant) -> std::time::Instant {
        let pid = self.pid();
        let name = self.name();
        let signalled = tokio::task::spawn_blocking(move || {
            std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
            kill(pid, Signal::SIGKILL).unwrap_or_else(|e| panic!("SIGKILL {name}: {e}"));
            std::time::Instant::now()
        })
        .await
        .unwrap_or_else(|e| panic!("the kill of {} did not run: {e}", self.name()));
        if let Some(mut child) = self.child.take() {
            let _ = child.wait().await;
        }
        signalled
    }

    /// Freezes the process (SIGSTOP): it holds its connections and its events in flight
    /// but does nothing, as a starved or swapping pod would.
    pub fn pause(&self) {
        kill(self.pid(), Signal::SIGSTOP)
            .unwrap_or_else(|e| panic!("SIGSTOP {}: {e}", self.name()));
    }

    pub fn resume(&self) {
        kill(self.pid(), Signal::SIGCONT)
            .unwrap_or_else(|e| panic!("SIGCONT {}: {e}", self.name()));
    }

    /// Every line the process (all its starts) logged, each prefixed `[start N] `.
    pub fn log_lines(&self) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.lines().map(str::to_owned).collect()
    }

    /// The last `lines` lines the process (all its starts) logged.
    pub fn log_tail(&self, lines: usize) -> String {
        self.latest_lines(|_| true, lines)
    }

    /// The lines logged at warn or error level, at most `lines` of the latest.
    pub fn log_problems(&self, lines: usize) -> String {
        self.latest_lines(
            |line| line.contains("\"WARN\"") || line.contains("\"ERROR\""),
            lines,
        )
    }

    /// The lines naming `needle` (a ticket's id, say), at most `lines` of the latest.
    pub fn log_naming(&self, needle: &str, lines: usize) -> String {
        self.latest_lines(|line| line.contains(needle), lines)
    }

    /// The lines `keep` keeps, at most `lines` of the latest, one string.
    fn latest_lines(&self, keep: impl Fn(&str) -> bool, lines: usize) -> String {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let all: Vec<&str> = log.lines().filter(|line| keep(line)).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The `helpline_consumer_pending` and `helpline_consumer_unacked` figures of this
    /// process's ticket consumers, or None while `/metrics` does not answer them all.
    pub async fn backlog(&self) -> Option<u64> {
        let metrics = body(self.ops_port, "/metrics").await?;
        let mut total = 0;
        for consumer in self.kind.ticket_consumers() {
            for metric in ["helpline_consumer_pending", "helpline_consumer_unacked"] {
                let prefix = format!("{metric}{{consumer=\"{consumer}\"}} ");
                let value = metrics
                    .lines()
                    .find_map(|line| line.strip_prefix(prefix.as_str()))?;
                total += value.trim().parse::<u64>().ok()?;
            }
        }
        Some(total)
    }
}

/// `HELPLINE_CHANNELS__<CHANNEL>__<KEY>` for every key of the simulator's channel
/// configuration. Values are quoted, so that an all-digit id (WhatsApp's phone number id)
/// stays a string.
fn channel_env(channels: &serde_json::Value) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let Some(channels) = channels.as_object() else {
        return env;
    };
    for (channel, keys) in channels {
        let Some(keys) = keys.as_object() else {
            continue;
        };
        for (key, value) in keys {
            let Some(value) = value.as_str() else {
                continue;
            };
            env.push((
                format!(
                    "HELPLINE_CHANNELS__{}__{}",
                    channel.to_ascii_uppercase(),
                    key.to_ascii_uppercase()
                ),
                format!("\"{value}\""),
            ));
        }
    }
    env
}

/// The raw answer to `GET path`, or None while nothing answers.
async fn get(port: u16, path: &str) -> Option<String> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    // A paused process accepts connections (the kernel does) but never answers.
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .ok()
        .flatten()
}

async fn status(port: u16, path: &str) -> Option<u16> {
    get(port, path)
        .await?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn body(port: u16, path: &str) -> Option<String> {
    Some(get(port, path).await?.split_once("\r\n\r\n")?.1.to_owned())
}
