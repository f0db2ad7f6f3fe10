//! What a raw replay's rate depends on: 200 000 messages of each shape (payload size,
//! headers, subjects) published to a scratch stream, then read twice by an ordered
//! consumer that does nothing with them, with the CPU each side used per message.
//!
//! ```text
//! nats-server -js -sd <dir> -p 4333 &
//! cargo run --release -p helpline-bench --example replay_shapes -- 127.0.0.1:4333 <nats-server pid>
//! ```
//!
//! docs/PERFORMANCE.md ("The stream's own raw replay") has a run's figures.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::FuturesOrdered;
use helpline_bench::{cpu_seconds, replay_stream};

const MESSAGES: usize = 200_000;
const ACKS_IN_FLIGHT: usize = 1024;
/// A replay that takes longer than this ends with what it read.
const REPLAY_CAP: Duration = Duration::from_secs(120);

struct Shape {
    name: &'static str,
    payload_bytes: usize,
    /// The first this many of helpline's headers, at their real sizes.
    headers: usize,
    subjects: usize,
}

const SHAPES: [Shape; 8] = [
    shape("300 B", 300, 0, 10_000),
    shape("990 B", 990, 0, 10_000),
    shape("300 B, 200 000 subjects", 300, 0, 200_000),
    shape("300 B, 1 header", 300, 1, 10_000),
    shape("300 B, 2 headers", 300, 2, 10_000),
    shape("300 B, 3 headers", 300, 3, 10_000),
    shape("300 B, 4 headers", 300, 4, 10_000),
    shape("300 B again", 300, 0, 10_000),
];

const fn shape(name: &'static str, payload_bytes: usize, headers: usize, subjects: usize) -> Shape {
    Shape {
        name,
        payload_bytes,
        headers,
        subjects,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "127.0.0.1:4333".to_owned());
    let server_pid = args
        .next()
        .map(|pid| pid.parse::<u32>())
        .transpose()
        .context("the second argument is nats-server's pid")?;
    let client = async_nats::connect(&url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let js = jetstream::new(client);
    for (n, shape) in SHAPES.iter().enumerate() {
        let stream = format!("REPLAY_SHAPE_{n}");
        // A stream left over from an interrupted run; its absence is no error.
        let _ = js.delete_stream(&stream).await;
        js.create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{stream}.>")],
            ..Default::default()
        })
        .await
        .context("cannot create a scratch stream")?;
        publish(&js, &stream, shape).await?;
        for round in 0..2 {
            let before = (
                cpu_seconds(None),
                server_pid.and_then(|pid| cpu_seconds(Some(pid))),
            );
            let read = replay_stream(&js, &stream, MESSAGES, REPLAY_CAP, "replay").await?;
            let after = (
                cpu_seconds(None),
                server_pid.and_then(|pid| cpu_seconds(Some(pid))),
            );
            let per_message = |before: Option<f64>, after: Option<f64>| match (before, after) {
                (Some(before), Some(after)) => {
                    format!(
                        "{:.2} µs",
                        (after - before) * 1e6 / read.messages.max(1) as f64
                    )
                }
                _ => "—".to_owned(),
            };
            println!(
                "{:26} round {round}: {:>7.0} msg/s ({} read); CPU per message: client {}, nats-server {}",
                shape.name,
                read.per_sec,
                read.messages,
                per_message(before.0, after.0),
                per_message(before.1, after.1),
            );
        }
        js.delete_stream(&stream)
            .await
            .context("cannot delete a scratch stream")?;
    }
    Ok(())
}

async fn publish(js: &jetstream::Context, stream: &str, shape: &Shape) -> anyhow::Result<()> {
    let payload = Bytes::from(vec![b'x'; shape.payload_bytes]);
    let mut acks = FuturesOrdered::new();
    for i in 0..MESSAGES {
        let subject = format!("{stream}.ticket.{}", i % shape.subjects);
        let ack = if shape.headers == 0 {
            js.publish(subject, payload.clone()).await
        } else {
            js.publish_with_headers(subject, headers(i, shape.headers), payload.clone())
                .await
        }
        .context("cannot publish")?;
        acks.push_back(ack.into_future());
        if acks.len() >= ACKS_IN_FLIGHT
            && let Some(ack) = acks.next().await
        {
            ack.context("publish not acknowledged")?;
        }
    }
    while let Some(ack) = acks.next().await {
        ack.context("publish not acknowledged")?;
    }
    Ok(())
}

/// helpline's headers on a new customer's first message, in order of necessity.
fn headers(i: usize, count: usize) -> async_nats::HeaderMap {
    let command = format!("{i:036}");
    let all = [
        ("Nats-Msg-Id", format!("{command}:1")),
        (
            "Helpline-Event-Type",
            "TicketOpened,CustomerMessageReceived".to_owned(),
        ),
        (
            "Helpline-Customer",
            "f049ed4fab6b52213fad94320cb4b0a6".to_owned(),
        ),
        ("Helpline-Command-Id", command),
    ];
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in all.into_iter().take(count) {
        headers.insert(name, value.as_str());
    }
    headers
}
