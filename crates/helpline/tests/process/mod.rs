//! A `helpline` process as the tests that start one see it: a free port to give it, its
//! HTTP probes, and a handle that kills it when the test ends. Each test file uses what
//! it needs of this.

#![allow(dead_code)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn free_port() -> u16 {
    helpline_testkit::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// The ports a test's `helpline` process listens on, each a free loopback port.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// `ingress.listen`: webhooks and probes.
    pub http: u16,
    /// `ops.listen`: probes and metrics.
    pub ops: u16,
    /// `grpc.listen`: the services' APIs.
    pub grpc: u16,
    /// `console.listen`: the agent console.
    pub console: u16,
}

/// `helpline <service> --log-format json` against the NATS server at `nats_url`, listening
/// on three free loopback ports; the test adds its own settings and output before
/// spawning it.
pub fn helpline(service: &str, nats_url: &str) -> (Command, Ports) {
    let ports = Ports {
        http: free_port(),
        ops: free_port(),
        grpc: free_port(),
        console: free_port(),
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_helpline"));
    command
        .args([service, "--log-format", "json"])
        .env("HELPLINE_NATS_URL", nats_url)
        .env(
            "HELPLINE_INGRESS__LISTEN",
            format!("127.0.0.1:{}", ports.http),
        )
        .env("HELPLINE_OPS__LISTEN", format!("127.0.0.1:{}", ports.ops))
        .env("HELPLINE_GRPC__LISTEN", format!("127.0.0.1:{}", ports.grpc))
        .env(
            "HELPLINE_CONSOLE__LISTEN",
            format!("127.0.0.1:{}", ports.console),
        );
    (command, ports)
}

/// The status code and body of `GET path`, or None while nothing listens.
pub async fn get_response(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response.split_once("\r\n\r\n")?.1.to_owned()))
}

/// The status code of `GET path`, or None while nothing listens.
pub async fn get(port: u16, path: &str) -> Option<u16> {
    get_response(port, path).await.map(|(status, _)| status)
}

/// The body of `GET path`, or None while nothing listens.
pub async fn get_body(port: u16, path: &str) -> Option<String> {
    get_response(port, path).await.map(|(_, body)| body)
}

/// Waits (at most 20 s) until `GET path` answers `status`.
pub async fn wait_for(port: u16, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = get(port, path).await;
        if got == Some(status) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}, last {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `helpline agent passwd --agent AGENT` against the NATS server at `nats_url`, the
/// password on standard input.
pub fn passwd(nats_url: &str, agent: &str, password: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["agent", "passwd", "--agent", agent])
        .env_remove("HELPLINE_CONFIG")
        .env("HELPLINE_NATS_URL", nats_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{password}").unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// The process, killed (and reaped) when the test is done with it.
pub struct KillOnDrop(pub Child);

/// A process started by [`KillOnDrop::quiet`]: its output goes to a file, printed only
/// when the test fails, so a process that never came up says why.
pub struct Quiet {
    child: KillOnDrop,
    log: std::path::PathBuf,
}

impl KillOnDrop {
    /// Starts `command` with its output in a file of the test's own, printed (its last
    /// lines) if the test panics.
    pub fn quiet(command: &mut Command) -> Quiet {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("helpline-{}-{n}.log", std::process::id()));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Quiet {
            child: KillOnDrop(child),
            log,
        }
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let last = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- the helpline process's last {} lines ---\n{}",
                last.len(),
                last.join("\n")
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser script of `crates/console/web/tests` (playwright-core driving Debian's
/// chromium), run by node against the console on port `console` with agent Anna and
/// supervisor Sabine, both with `password`; `env` adds the script's own settings. Its
/// stdin and stdout are piped; the screenshots it takes go to the folder returned.
/// scripts/test installs chromium and the npm packages; run alone, this says what is
/// missing.
pub fn browser(
    script: &str,
    console: u16,
    password: &str,
    env: &[(&str, String)],
) -> (tokio::process::Child, std::path::PathBuf) {
    use std::path::Path;
    use std::process::Stdio;
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "no {chromium}: scripts/test installs Debian's chromium"
    );
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../console/web");
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "no playwright-core in crates/console/web: scripts/test (scripts/build-console) installs it"
    );
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap_or_else(|e| panic!("{e}"));
    let child = tokio::process::Command::new("node")
        .arg(script)
        .current_dir(web)
        .env("CONSOLE_URL", format!("http://127.0.0.1:{console}"))
        .env("AGENT", "anna")
        .env("SUPERVISOR", "sabine")
        .env("PASSWORD", password)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", &chromium)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("node {script}: {e}"));
    (child, screenshots)
}

/// A token signed with `secret` for the German region's agent of `role` (the admin
/// ops-admin, the supervisor sabine, the agent emily), valid ten minutes.
pub fn token_for_role(secret: &str, role: helpline_region::Role) -> String {
    let agent = match role {
        helpline_region::Role::Admin => "ops-admin",
        helpline_region::Role::Supervisor => "sabine",
        helpline_region::Role::Agent => "emily",
    };
    helpline_assignment::auth::issue(
        &helpline_assignment::AuthKey::new(secret).unwrap_or_else(|e| panic!("{e}")),
        agent,
        role,
        Duration::from_secs(600),
        std::time::SystemTime::now(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `message` with the bearer token of the German region's agent of `role`.
pub fn request_as<T>(secret: &str, message: T, role: helpline_region::Role) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let bearer = format!("Bearer {}", token_for_role(secret, role));
    request.metadata_mut().insert(
        "authorization",
        bearer.parse().unwrap_or_else(|e| panic!("{e}")),
    );
    request
}
