//! `helpline all` as Kubernetes sees it: live at once, ready only while NATS answers,
//! and it sets up the region's event store on start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;
mod tls;

use process::{KillOnDrop, Ports, free_port, get, get_body, helpline, wait_for};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use helpline_testkit::NatsServer;
use tokio::io::AsyncReadExt;

/// The services a reflection client of `$version` (`v1`, `v1alpha`: the same messages in
/// two packages) lists.
macro_rules! reflected_services {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        match answer.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => list
                .service
                .into_iter()
                .map(|service| service.name)
                .collect::<Vec<String>>(),
            other => panic!("not a list of services: {other:?}"),
        }
    }};
}

#[tokio::test]
async fn all_is_live_ready_while_nats_answers_and_ensures_the_store() {
    let mut nats = NatsServer::start().await.unwrap();
    let (
        mut command,
        Ports {
            http, ops, grpc, ..
        },
    ) = helpline("all", &nats.url());
    let _helpline = KillOnDrop::quiet(&mut command);

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
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
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
    // Reflection answers in both versions: v1 (grpcurl) and v1alpha (grpcio-reflection).
    for listed in [
        reflected_services!(v1, channel.clone()),
        reflected_services!(v1alpha, channel.clone()),
    ] {
        for service in [
            "helpline.v1.Routing",
            "helpline.v1.TicketQuery",
            "grpc.health.v1.Health",
        ] {
            assert!(listed.iter().any(|name| name == service), "{listed:?}");
        }
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
    let (mut command, Ports { http, ops, .. }) = helpline("ingress", &nats.url());
    let mut helpline = command
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

#[tokio::test]
async fn a_password_in_the_nats_url_signs_in_and_is_never_logged() {
    let password = "url-password-4c1e9d07";
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nats.conf");
    std::fs::write(
        &conf,
        format!("authorization: {{ users: [ {{ user: helpline, password: \"{password}\" }} ] }}\n"),
    )
    .unwrap();
    let nats = NatsServer::builder()
        .config_file(&conf)
        .user_and_password("helpline", password)
        .start()
        .await
        .unwrap();
    let url = |port: u16| format!("nats://helpline:{password}@127.0.0.1:{port}");
    let (mut command, Ports { ops, .. }) = helpline("all", &url(nats.port()));
    let mut helpline = command
        // The client library logs the server's address at debug level.
        .env("HELPLINE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = helpline.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut logs = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut logs);
        logs
    });
    // Ready means signed in: the server refuses anyone without the password.
    wait_for(ops, "/readyz", 200).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(helpline.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (status, logs) = tokio::task::spawn_blocking(move || {
        let status = helpline.wait().unwrap();
        (status, logs.join().unwrap())
    })
    .await
    .unwrap();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("\"starting\""), "{logs}");
    assert!(
        !logs.contains(password),
        "the NATS password leaked into the logs"
    );

    // A server that does not answer: the error names it, without the password.
    let closed = free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .arg("ensure")
        .env("HELPLINE_NATS_URL", url(closed))
        .env("HELPLINE_LOG", "debug")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains(&format!("127.0.0.1:{closed}")), "{said}");
    assert!(!said.contains(password), "the NATS password leaked: {said}");
    // Nor does a malformed URL's refusal show it.
    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .arg("ensure")
        .env(
            "HELPLINE_NATS_URL",
            format!("http://helpline:{password}@127.0.0.1:1"),
        )
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(said.contains("nats.url"), "{said}");
    assert!(!said.contains(password), "the NATS password leaked: {said}");
}

/// Whether the server closes `stream` (EOF or reset) before `within` passes.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 256];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // Whatever the server says first (HTTP/2 settings), it must still close.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn every_port_closes_silent_connections_and_turns_away_those_over_its_maximum() {
    let nats = NatsServer::start().await.unwrap();
    let (
        mut command,
        Ports {
            http,
            ops,
            grpc,
            console,
        },
    ) = helpline("all", &nats.url());
    let _helpline = KillOnDrop::quiet(
        command
            .env("HELPLINE_INGRESS__HEADER_TIMEOUT_MS", "2000")
            .env("HELPLINE_INGRESS__MAX_CONNECTIONS", "40")
            .env("HELPLINE_GRPC__HANDSHAKE_TIMEOUT_MS", "2000")
            .env("HELPLINE_GRPC__MAX_CONNECTIONS", "40"),
    );
    wait_for(http, "/readyz", 200).await;
    wait_for(ops, "/readyz", 200).await;
    // The gRPC port answers once the APIs are up.
    let grpc_url = format!("http://127.0.0.1:{grpc}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tonic::transport::Channel::from_shared(grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the gRPC port never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for port in [http, ops, grpc, console] {
        // Connections that send nothing: closed once the timeout runs out (generous
        // bound: the timeout plus a busy machine's scheduling).
        let mut silent = Vec::new();
        for _ in 0..30 {
            silent.push(
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap(),
            );
        }
        for stream in &mut silent {
            assert!(
                closed_within(stream, Duration::from_secs(10)).await,
                "port {port} kept a silent connection open"
            );
        }
        // Forty held open: the forty-first is closed at once, well before the 2 s timeout
        // that would close it anyway (the bound leaves a busy machine's scheduling room).
        let mut held = Vec::new();
        for _ in 0..40 {
            held.push(
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap(),
            );
        }
        let mut over = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        assert!(
            closed_within(&mut over, Duration::from_millis(1200)).await,
            "port {port} took a connection over its maximum"
        );
        drop(held);
    }
    // And every port still serves.
    tokio::time::sleep(Duration::from_millis(200)).await;
    wait_for(http, "/readyz", 200).await;
    wait_for(ops, "/readyz", 200).await;
    let channel = tonic::transport::Channel::from_shared(grpc_url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_grpc_port_speaks_tls_when_given_a_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    tls::certificates(dir.path());
    let nats = NatsServer::start().await.unwrap();
    let (mut command, Ports { ops, grpc, .. }) = helpline("all", &nats.url());
    let _helpline = KillOnDrop::quiet(
        command
            .env(
                "HELPLINE_GRPC__TLS_CERT_FILE",
                dir.path().join("server.crt"),
            )
            .env("HELPLINE_GRPC__TLS_KEY_FILE", dir.path().join("server.key")),
    );
    wait_for(ops, "/readyz", 200).await;
    let ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name("localhost");
    let deadline = Instant::now() + Duration::from_secs(20);
    let channel = loop {
        let connected = tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{grpc}"))
            .unwrap()
            .tls_config(tls.clone())
            .unwrap()
            .connect()
            .await;
        match connected {
            Ok(channel) => break channel,
            Err(e) => assert!(Instant::now() < deadline, "no TLS connection: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    // Plain HTTP/2 gets nowhere.
    let plain = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let answered = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await;
        assert!(answered.is_err(), "answered in plain text");
    }
}

#[tokio::test]
async fn a_python_client_with_grpcio_reflection_lists_the_services_and_checks_health() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // scripts/install-tools puts the pinned grpcio packages there.
    let packages = root.join(".tools/grpc-py");
    assert!(
        packages.join("grpc_reflection").is_dir(),
        "no grpcio-reflection in {}: run scripts/install-tools",
        packages.display()
    );
    let nats = NatsServer::start().await.unwrap();
    let (mut command, Ports { ops, grpc, .. }) = helpline("all", &nats.url());
    let _helpline = KillOnDrop::quiet(&mut command);
    wait_for(ops, "/readyz", 200).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/reflection.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(format!("127.0.0.1:{grpc}"))
        .arg("helpline.v1.TicketQuery")
        .env("PYTHONPATH", &packages)
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "service helpline.v1.TicketQuery",
        "service helpline.v1.AgentDesk",
        "service grpc.health.v1.Health",
        "health SERVING",
    ] {
        assert!(
            printed.lines().any(|l| l == line),
            "no {line:?} in:\n{printed}"
        );
    }
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("described helpline.v1.TicketQuery ") && !l.ends_with(" 0")),
        "{printed}"
    );
}
