//! `helpline all` as Kubernetes sees it: live at once, ready only while NATS answers,
//! and it sets up the region's event store on start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use helpline_testkit::NatsServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> u16 {
    helpline_testkit::free_port().unwrap()
}

/// The status code of `GET path`, or None while nothing listens.
async fn get(port: u16, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The body of `GET path`, or None while nothing listens.
async fn get_body(port: u16, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_owned())
}

async fn wait_for(port: u16, path: &str, status: u16) {
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

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn all_is_live_ready_while_nats_answers_and_ensures_the_store() {
    let mut nats = NatsServer::start().await.unwrap();
    let (http, ops, grpc) = (free_port(), free_port(), free_port());
    let _helpline = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_helpline"))
            .args(["all", "--log-format", "json"])
            .env("HELPLINE_NATS_URL", nats.url())
            .env("HELPLINE_INGRESS__LISTEN", format!("127.0.0.1:{http}"))
            .env("HELPLINE_OPS__LISTEN", format!("127.0.0.1:{ops}"))
            .env("HELPLINE_GRPC__LISTEN", format!("127.0.0.1:{grpc}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    wait_for(http, "/healthz", 200).await;
    wait_for(http, "/readyz", 200).await;
    wait_for(ops, "/readyz", 200).await;
    let js = async_nats::jetstream::new(nats.connect().await.unwrap());
    js.get_stream("HELPLINE_DE").await.unwrap();
    // Each service creates its consumer as it starts.
    let consumers = [
        "egress",
        "media",
        "bot",
        "bot-timers",
        "routing",
        "feedback",
    ];
    let listed = |metrics: &str| {
        consumers.iter().all(|consumer| {
            metrics.contains(&format!(
                "helpline_consumer_pending{{consumer=\"{consumer}\"}}"
            ))
        })
    };
    let mut metrics = String::new();
    for _ in 0..200 {
        metrics = get_body(ops, "/metrics").await.unwrap_or_default();
        if listed(&metrics) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listed(&metrics), "{metrics}");
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["helpline.v1.Routing", "helpline.v1.Feedback"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
    }

    nats.stop().await.unwrap();
    wait_for(http, "/readyz", 503).await;
    assert_eq!(get(http, "/healthz").await, Some(200), "alive without NATS");

    nats.restart().await.unwrap();
    wait_for(http, "/readyz", 200).await;
}

#[tokio::test]
async fn ingress_reads_channels_from_the_environment_and_never_logs_secrets() {
    let nats = NatsServer::start().await.unwrap();
    let sim = helpline_testkit::Simulator::start(Default::default())
        .await
        .unwrap();
    let secret = sim.config().web.shared_secret.clone();
    let (http, ops) = (free_port(), free_port());
    let mut helpline = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["ingress", "--log-format", "json"])
        .env("HELPLINE_NATS_URL", nats.url())
        .env("HELPLINE_INGRESS__LISTEN", format!("127.0.0.1:{http}"))
        .env("HELPLINE_OPS__LISTEN", format!("127.0.0.1:{ops}"))
        .env("HELPLINE_CHANNELS__WEB__SHARED_SECRET", &secret)
        .env(
            "HELPLINE_CHANNELS__WEB__CALLBACK_URL",
            sim.api_base_url(helpline_domain::Channel::WebChat),
        )
        .env("HELPLINE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the logs as they come: a full pipe would block helpline's logging.
    let mut stderr = helpline.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut logs = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut logs);
        logs
    });
    wait_for(http, "/readyz", 200).await;
    let url = format!("http://127.0.0.1:{http}");
    let webhook = sim.webhook(helpline_domain::Channel::WebChat, "sess_env", "hallo");
    let mut answer = sim.deliver(&url, &webhook).await.unwrap();
    for _ in 0..100 {
        if answer.status != 503 {
            break;
        }
        // The routes join a moment after the probes answer.
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer = sim.deliver(&url, &webhook).await.unwrap();
    }
    assert_eq!(answer.status, 200, "{}", answer.body);
    let metrics = get_body(ops, "/metrics").await.unwrap_or_default();
    assert!(
        metrics.contains("helpline_webhook_seconds_count{channel=\"web\",status=\"200\"}"),
        "webhook latency is measured: {metrics}"
    );
    let telegram = sim.webhook(helpline_domain::Channel::Telegram, "700001", "hallo");
    assert_eq!(
        sim.deliver(&url, &telegram).await.unwrap().status,
        404,
        "not configured"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helpline.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let status = helpline.wait().unwrap();
        (status, logs.join().unwrap())
    })
    .await
    .unwrap();
    assert!(output.0.success(), "{}", output.1);
    assert!(
        output.1.contains("webhook"),
        "the logs say something: {}",
        output.1
    );
    assert!(!output.1.contains(&secret), "a secret leaked into the logs");
    assert!(
        !output.1.contains("hallo"),
        "message text leaked into the logs"
    );
}
