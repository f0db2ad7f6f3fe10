//! The front door under the attacks a single laptop can mount: connections that send
//! nothing, headers or bodies a byte at a time, large uploads that stall, more
//! connections than the port takes. Each is closed or bounded, and a provider's webhook
//! sent meanwhile is still answered 200.

use std::time::{Duration, Instant};

use helpline_domain::Channel;
use helpline_ingress::IngressConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::*;

const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
const BODY_TIMEOUT: Duration = Duration::from_millis(500);
/// Far past either timeout: a connection still open then was never going to be closed.
const NEVER: Duration = Duration::from_secs(20);
/// How often a slow caller sends its next byte: well inside either timeout, so only a
/// deadline over the whole header or body can close it.
const DRIP: Duration = Duration::from_millis(100);

fn config() -> IngressConfig {
    IngressConfig {
        header_timeout_ms: HEADER_TIMEOUT.as_millis() as u64,
        body_timeout_ms: BODY_TIMEOUT.as_millis() as u64,
        ..IngressConfig::default()
    }
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// What became of one slow caller: when the server closed on it (from the connection's
/// start), and what it answered first.
struct Closed {
    after: Option<Duration>,
    answer: String,
}

/// Connects, sends `opening`, then one byte of `drip` every [`DRIP`] until the server
/// closes the connection or [`NEVER`] passes.
async fn slow_caller(address: String, opening: String, drip: u8) -> Closed {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(&address).await else {
        return Closed {
            after: Some(Duration::ZERO),
            answer: "connect failed".to_owned(),
        };
    };
    let _ = stream.write_all(opening.as_bytes()).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        if started.elapsed() > NEVER {
            return Closed {
                after: None,
                answer: String::from_utf8_lossy(&answer).into_owned(),
            };
        }
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => {
                    return Closed {
                        after: Some(started.elapsed()),
                        answer: String::from_utf8_lossy(&answer).into_owned(),
                    };
                }
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            },
            _ = tokio::time::sleep(DRIP) => {
                // A refused write means the server closed: the next read says so.
                let _ = stream.write_all(&[drip]).await;
            }
        }
    }
}

/// A provider's signed webhook, answered while the attack goes on.
async fn a_provider_is_still_answered(h: &Harness, n: u32) {
    let channel = Channel::WhatsApp;
    let webhook = h
        .sim
        .webhook(channel, &customer_id(channel, n), "Hallo, noch jemand da?");
    let response = h.sim.deliver(&h.url, &webhook).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
}

#[tokio::test]
async fn silent_and_slow_header_connections_are_closed_when_the_header_timeout_runs_out() {
    let h = Harness::routes_only(&config()).await;
    let address = address(&h.url);
    let mut callers = Vec::new();
    for n in 0..400 {
        // Half send nothing at all, half their headers a byte at a time.
        let opening = if n % 2 == 0 {
            String::new()
        } else {
            "POST /webhooks/whatsapp HTTP/1.1\r\nHost: helpline\r\nX-Slow: ".to_owned()
        };
        callers.push(tokio::spawn(slow_caller(address.clone(), opening, b'a')));
    }
    tokio::time::sleep(HEADER_TIMEOUT / 5).await;
    a_provider_is_still_answered(&h, 1).await;
    for caller in callers {
        let closed = caller.await.unwrap();
        let after = closed
            .after
            .expect("a slow-header connection was never closed");
        // Generous: the timeout plus scheduling on a busy machine.
        assert!(
            after < HEADER_TIMEOUT + Duration::from_secs(5),
            "closed only after {after:?}"
        );
        assert!(
            !closed.answer.starts_with("HTTP/1.1 2"),
            "a request without its headers was answered {}",
            closed.answer
        );
    }
    a_provider_is_still_answered(&h, 2).await;
}

#[tokio::test]
async fn slow_bodies_are_answered_408_and_closed_when_the_body_timeout_runs_out() {
    let h = Harness::routes_only(&config()).await;
    let address = address(&h.url);
    let opening = "POST /webhooks/whatsapp HTTP/1.1\r\nHost: helpline\r\n\
                   Content-Type: application/json\r\nX-Hub-Signature-256: sha256=00\r\n\
                   Content-Length: 100000\r\n\r\n{"
        .to_owned();
    let callers: Vec<_> = (0..400)
        .map(|_| tokio::spawn(slow_caller(address.clone(), opening.clone(), b' ')))
        .collect();
    tokio::time::sleep(BODY_TIMEOUT / 5).await;
    a_provider_is_still_answered(&h, 1).await;
    for caller in callers {
        let closed = caller.await.unwrap();
        let after = closed
            .after
            .expect("a slow-body connection was never closed");
        assert!(
            after < BODY_TIMEOUT + Duration::from_secs(5),
            "closed only after {after:?}"
        );
        // The 408 goes out before the close, but a caller still sending when the
        // server closes gets a reset, which can overtake the answer. Once the address
        // has been refused often enough, the rest are answered 429 without waiting.
        assert!(
            closed.answer.is_empty()
                || closed.answer.starts_with("HTTP/1.1 408")
                || closed.answer.starts_with("HTTP/1.1 429"),
            "a slow body was answered {:?}",
            closed.answer.lines().next()
        );
    }
}

#[tokio::test]
async fn stalled_large_uploads_hold_no_more_than_the_budget_and_providers_are_still_answered() {
    const UPLOADS: usize = 40;
    const SENT: usize = 1024 * 1024;
    let config = IngressConfig {
        // Room for a few of the uploads' first megabyte, not for all of them.
        max_buffered_body_bytes: 8 * 1024 * 1024,
        body_timeout_ms: 2_000,
        ..config()
    };
    let h = Harness::routes_only(&config).await;
    let address = address(&h.url);
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|_| {
            let address = address.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(&address).await.unwrap();
                let head = format!(
                    "POST /webhooks/whatsapp HTTP/1.1\r\nHost: helpline\r\n\
                     Content-Type: application/json\r\nX-Hub-Signature-256: sha256=00\r\n\
                     Content-Length: {}\r\n\r\n",
                    4 * 1024 * 1024
                );
                stream.write_all(head.as_bytes()).await.unwrap();
                // A megabyte of the promised four, then nothing.
                let _ = stream.write_all(&vec![b' '; SENT]).await;
                let mut answer = Vec::new();
                let ended = tokio::time::timeout(NEVER, stream.read_to_end(&mut answer))
                    .await
                    .is_ok();
                (ended, String::from_utf8_lossy(&answer).into_owned())
            })
        })
        .collect();
    // While the uploads hold what they sent, a provider's small webhook still gets in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a_provider_is_still_answered(&h, 1).await;
    let mut too_slow = 0;
    for upload in uploads {
        let (ended, answer) = upload.await.unwrap();
        assert!(ended, "a stalled upload was never closed");
        match answer.lines().next().unwrap_or_default() {
            // Turned away at once. Closed while the caller was still sending, the
            // connection is reset, which can overtake the answer: also turned away.
            "HTTP/1.1 503 Service Unavailable" | "" => {}
            // Taken in, held until its deadline.
            "HTTP/1.1 408 Request Timeout" => too_slow += 1,
            other => panic!("a stalled upload was answered {other:?}"),
        }
    }
    // The budget holds the first megabyte of eight uploads at most (fewer: room is kept
    // for small bodies); every other upload was turned away at once.
    assert!(
        too_slow <= 8,
        "{too_slow} uploads were held, more than the budget"
    );
    a_provider_is_still_answered(&h, 2).await;
}

#[tokio::test]
async fn connections_over_the_maximum_are_closed_at_once_and_the_others_served() {
    let config = IngressConfig {
        max_connections: 20,
        // Long enough that the idle connections below hold their places.
        header_timeout_ms: 10_000,
        ..config()
    };
    let h = Harness::routes_only(&config).await;
    let address = address(&h.url);
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(&address).await.unwrap());
    }
    // Accepted in order: the 21st finds the port full and is closed without an answer.
    let mut over = TcpStream::connect(&address).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(NEVER, over.read(&mut buffer))
        .await
        .expect("the connection over the maximum was kept open");
    assert!(matches!(read, Ok(0) | Err(_)), "it was answered: {read:?}");
    // Once one closes, there is room again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    a_provider_is_still_answered(&h, 1).await;
}

/// POSTs `webhook` from the loopback address `from`.
async fn post_from(
    h: &Harness,
    from: std::net::IpAddr,
    webhook: &helpline_testkit::simulator::Webhook,
) -> u16 {
    let client = reqwest::Client::builder()
        .local_address(from)
        .build()
        .unwrap();
    let mut request = client
        .post(format!("{}{}", h.url, webhook.path))
        .body(webhook.body.clone());
    for (name, value) in &webhook.headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_source_refused_too_often_is_answered_429_unheard_and_no_one_else_is() {
    let config = IngressConfig {
        max_refusals_per_source: 20,
        ..config()
    };
    let h = Harness::routes_only(&config).await;
    let forger: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let provider: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let channel = Channel::WhatsApp;
    let mut forged = h
        .sim
        .webhook(channel, &customer_id(channel, 70), "gefälscht");
    for (name, value) in &mut forged.headers {
        if name.eq_ignore_ascii_case("X-Hub-Signature-256") {
            *value = format!("sha256={}", "0".repeat(64));
        }
    }
    let mut answers = Vec::new();
    for _ in 0..30 {
        answers.push(post_from(&h, forger, &forged).await);
    }
    assert_eq!(&answers[..20], &[401; 20], "refused while heard");
    assert_eq!(&answers[20..], &[429; 10], "then not heard at all");
    // Even a good webhook from that address waits out the window…
    let good = h.sim.webhook(channel, &customer_id(channel, 71), "echt");
    assert_eq!(post_from(&h, forger, &good).await, 429);
    // …while another address is served as ever.
    assert_eq!(post_from(&h, provider, &good).await, 200);
}

#[tokio::test]
async fn paths_of_no_channel_are_counted_as_one_so_inventing_them_escapes_nothing() {
    let config = IngressConfig {
        max_refusals_per_source: 20,
        ..config()
    };
    let h = Harness::routes_only(&config).await;
    let prober: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let client = reqwest::Client::builder()
        .local_address(prober)
        .build()
        .unwrap();
    let mut answers = Vec::new();
    for n in 0..25 {
        let status = client
            .post(format!("{}/webhooks/invented{n}", h.url))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        answers.push(status);
    }
    assert_eq!(&answers[..20], &[404; 20], "each invented path refused");
    assert_eq!(
        &answers[20..],
        &[429; 5],
        "and all of them counted together"
    );
    // A configured channel is counted on its own: that address is still heard there.
    let good = h.sim.webhook(
        Channel::WhatsApp,
        &customer_id(Channel::WhatsApp, 72),
        "echt",
    );
    assert_eq!(post_from(&h, prober, &good).await, 200);
}
