//! `helpline dev` as an operator runs it: it brings up nats-server with the region's
//! streams and buckets, and Ctrl-C stops everything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn free_port() -> u16 {
    helpline_testkit::free_port().unwrap()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

#[tokio::test]
async fn dev_brings_up_nats_with_the_stream_and_stops_cleanly_on_ctrl_c() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let http_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args([
            "dev",
            "--log-format",
            "json",
            "--nats-port",
            &port.to_string(),
            "--http-port",
            &http_port.to_string(),
            "--data-dir",
        ])
        .arg(data.path())
        .env("HELPLINE_OPS__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env(
            "HELPLINE_CONSOLE__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "HELPLINE_GRPC__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        let mut said = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
        said
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut nats_pid = None;
    let mut banner = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push(line.clone());
        if let Some(rest) = line.split("(pid ").nth(1) {
            nats_pid = rest.split(',').next().and_then(|p| p.parse::<i32>().ok());
        }
        if line.starts_with("ready") {
            break;
        }
    }
    let nats_pid = nats_pid.expect("dev prints the nats-server pid");

    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    js.get_stream("HELPLINE_DE").await.unwrap();
    js.get_stream("HELPLINE_DE_DEADLETTER").await.unwrap();
    for bucket in [
        "helpline-de-contacts",
        "helpline-de-snapshots",
        "helpline-de-customer-keys",
    ] {
        js.get_key_value(bucket).await.unwrap();
    }
    assert!(
        data.path().join("jetstream").is_dir(),
        "the store lives in the data folder"
    );

    // A person chats as a customer: the line goes through the simulator as a signed
    // webhook and lands as a ticket.
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "web sess_dev Mein Laptop startet nicht").unwrap();
    let answer = lines
        .by_ref()
        .map(|line| line.unwrap())
        .find(|line| line.starts_with("→ web sess_dev"))
        .unwrap();
    assert_eq!(answer, "→ web sess_dev: delivered");
    // The bot may have answered already: the stream's first message is the customer's.
    let stream = js.get_stream("HELPLINE_DE").await.unwrap();
    let first = stream.direct_get(1).await.unwrap();
    assert_eq!(
        first
            .headers
            .get("Helpline-Event-Type")
            .map(|value| value.as_str()),
        Some("TicketOpened,CustomerMessageReceived"),
        "TicketOpened and the message, one append"
    );

    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "helpline dev did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(!alive(nats_pid), "nats-server {nats_pid} was left running");

    // The terminal shows the conversation; the services' log lines go to the data folder.
    let log = data.path().join("helpline.log");
    assert!(
        banner
            .iter()
            .any(|line| line.starts_with("  logs") && line.contains(&log.display().to_string())),
        "{banner:#?}"
    );
    let said = said.join().unwrap();
    assert!(
        !said.contains("\"level\":\"INFO\""),
        "log lines on the terminal: {said}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("\"level\":\"INFO\"") && logged.contains("gRPC APIs ready"),
        "{logged}"
    );
}

#[test]
fn a_bad_config_exits_with_code_2_and_says_why() {
    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .arg("ensure")
        .env("HELPLINE_REGION", "Germany!")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid region"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["ensure", "--config", "/nonexistent/helpline.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn every_sub_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["dev", "--help"],
        vec!["ensure", "--help"],
        vec!["all", "--help"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
            .args(&args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage: helpline"),
            "{args:?}"
        );
    }
}
