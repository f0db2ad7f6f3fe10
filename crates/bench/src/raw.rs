//! The raw ceilings: JetStream straight through async-nats, no helpline code on the path.

use std::time::Instant;

use anyhow::Context as _;
use async_nats::jetstream;
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt as _};
use serde::Serialize;

use super::{Sizes, per_sec, progress};

const RAW_STREAM: &str = "HELPLINE_BENCH_RAW";
const RAW_SUBJECT_PREFIX: &str = "bench.raw";
pub(super) const MAX_ACKS_IN_FLIGHT: usize = 1024;

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub messages: usize,
    pub seconds: f64,
    pub per_sec: f64,
}

/// Pipelined publish of `messages` to a scratch stream, up to [`MAX_ACKS_IN_FLIGHT`] acks
/// outstanding.
pub(super) async fn publish(
    js: &jetstream::Context,
    sizes: &Sizes,
    messages: usize,
    phase: &'static str,
) -> anyhow::Result<Throughput> {
    js.create_stream(jetstream::stream::Config {
        name: RAW_STREAM.to_owned(),
        subjects: vec![format!("{RAW_SUBJECT_PREFIX}.>")],
        storage: jetstream::stream::StorageType::File,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .context("cannot create the scratch stream")?;
    let subjects: Vec<async_nats::Subject> = (0..sizes.subjects)
        .map(|i| async_nats::Subject::from(format!("{RAW_SUBJECT_PREFIX}.{i}")))
        .collect();
    let payload = Bytes::from(vec![b'x'; sizes.message_bytes]);
    let bar = progress(messages, phase)?;
    let mut in_flight = FuturesOrdered::new();
    let mut acked = 0usize;
    let start = Instant::now();
    let deadline = start + sizes.cap;
    for i in 0..messages {
        if i.is_multiple_of(256) && Instant::now() >= deadline {
            break;
        }
        let subject = subjects[i % subjects.len()].clone();
        let ack = js
            .publish(subject, payload.clone())
            .await
            .context("cannot publish")?;
        in_flight.push_back(async move { ack.await });
        if in_flight.len() >= MAX_ACKS_IN_FLIGHT
            && let Some(ack) = in_flight.next().await
        {
            ack.context("publish not acknowledged")?;
            acked += 1;
            if acked.is_multiple_of(1024) {
                bar.set_position(acked as u64);
            }
        }
    }
    while let Some(ack) = in_flight.next().await {
        ack.context("publish not acknowledged")?;
        acked += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.set_position(acked as u64);
    bar.finish();
    Ok(throughput(acked, seconds))
}

/// An ordered consumer reads the scratch stream back.
pub(super) async fn replay(
    js: &jetstream::Context,
    sizes: &Sizes,
    expected: usize,
) -> anyhow::Result<Throughput> {
    replay_stream(js, RAW_STREAM, expected, sizes.cap, "raw replay").await
}

/// An ordered consumer reads `stream` from its first message until it has read `expected`
/// (or `cap` is up) and does nothing with them: the ceiling of any projection of that
/// stream, whatever its messages' sizes and headers.
pub async fn replay_stream(
    js: &jetstream::Context,
    stream: &str,
    expected: usize,
    cap: std::time::Duration,
    phase: &'static str,
) -> anyhow::Result<Throughput> {
    let stream = js
        .get_stream(stream)
        .await
        .with_context(|| format!("no stream {stream}"))?;
    let bar = progress(expected, phase)?;
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + cap;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .context("cannot create an ordered consumer")?;
    let mut messages = consumer
        .messages()
        .await
        .context("cannot read the stream")?;
    let mut read = 0usize;
    while read < expected {
        match tokio::time::timeout_at(deadline, messages.next()).await {
            Ok(Some(message)) => {
                message.context("replay failed")?;
                read += 1;
                if read.is_multiple_of(1024) {
                    bar.set_position(read as u64);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.set_position(read as u64);
    bar.finish();
    Ok(throughput(read, seconds))
}

pub(super) async fn delete(js: &jetstream::Context) -> anyhow::Result<()> {
    js.delete_stream(RAW_STREAM)
        .await
        .context("cannot delete the scratch stream")?;
    Ok(())
}

fn throughput(messages: usize, seconds: f64) -> Throughput {
    Throughput {
        messages,
        seconds,
        per_sec: per_sec(messages, seconds),
    }
}
