//! `helpline dlq list|show|replay`: the dead letters of the region's consumers.
//!
//! A replay publishes the dead letter, headers and all, to its consumer's replay subject
//! (`helpline.<region>.replay.<consumer>`, see `helpline_eventstore::subscribe`); the
//! consumer hands it to its handler with the original subject and sequence, as if the log
//! delivered it again, and never appends it to the ticket a second time. The dead letter
//! is deleted once the replay is stored; if the handler fails again, the consumer writes
//! a new one. The command then waits a little to say how the replay went.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::Stream;
use clap::Subcommand;
use futures::StreamExt as _;
use helpline_domain::Event;
use helpline_eventstore::subscribe::{
    DEAD_LETTER_CONSUMER_HEADER, DEAD_LETTER_REASON_HEADER, DELIVERIES_HEADER,
    ORIGINAL_SEQUENCE_HEADER, ORIGINAL_SUBJECT_HEADER, REPLAY_OF_HEADER,
};
use helpline_eventstore::{EnvelopeMeta, EventStore, Layout, StoreConfig};
use helpline_query::Audience;
use serde_json::{Value, json};

use crate::config::NatsConfig;

/// The header that names an event's type.
const EVENT_TYPE_HEADER: &str = "Helpline-Event-Type";

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Every dead letter, oldest first: sequence, consumer, event, original position,
    /// when and why.
    List {
        /// Only this consumer's dead letters (bot, routing, feedback, egress, ...).
        #[arg(long)]
        consumer: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter: its headers and the event it holds.
    Show {
        /// The dead letter's sequence, as `dlq list` prints it.
        seq: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sends dead letters back to their consumer, once the cause is fixed, and deletes
    /// them; the consumer handles each again without appending it to the log again.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["seq", "all"])))]
    Replay {
        /// The dead letter's sequence.
        seq: Option<u64>,
        /// Every dead letter (of `--consumer`, if given).
        #[arg(long)]
        all: bool,
        /// With `--all`: only this consumer's dead letters.
        #[arg(long, requires = "all")]
        consumer: Option<String>,
        /// How long to wait for the consumer to handle the replays before saying they
        /// are still queued.
        #[arg(long, default_value_t = 10)]
        wait_secs: u64,
    },
}

/// One dead letter as stored.
struct DeadLetter {
    sequence: u64,
    subject: String,
    headers: HeaderMap,
    payload: bytes::Bytes,
    time: prost_types::Timestamp,
    /// The event, opened with its customer's key ([`DeadLetter::open`]): operators
    /// inspecting a poison event see what the consumer saw.
    /// The message's events: one, or a command's several.
    event: Result<Vec<(EnvelopeMeta, Event)>, String>,
}

impl DeadLetter {
    async fn open(mut self, store: &EventStore) -> Self {
        self.event = store.decode(&self.payload).await.map_err(|e| e.to_string());
        self
    }
}

pub async fn run(
    command: DlqCommand,
    nats: &NatsConfig,
    store_config: StoreConfig,
) -> anyhow::Result<()> {
    let client = crate::nats::connect(nats).await?;
    let store = EventStore::open(client, store_config).await?;
    let layout = store.layout().clone();
    let stream = store
        .jetstream()
        .get_stream_no_info(layout.dead_letter_stream())
        .await
        .with_context(|| format!("no stream {}", layout.dead_letter_stream()))?;
    match command {
        DlqCommand::List { consumer, json } => {
            let mut letters = Vec::new();
            for letter in dead_letters(&stream, &layout, consumer.as_deref()).await? {
                letters.push(letter.open(&store).await);
            }
            if json {
                let out: Vec<Value> = letters.iter().map(letter_json).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                for letter in &letters {
                    println!("{}", letter_line(letter));
                }
                println!("{} dead letters", letters.len());
            }
        }
        DlqCommand::Show { seq, json } => {
            let letter = dead_letter(&stream, &layout, seq).await?.open(&store).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&letter_json(&letter))?);
            } else {
                print!("{}", letter_text(&letter));
            }
        }
        DlqCommand::Replay {
            seq,
            all,
            consumer,
            wait_secs,
        } => {
            let letters = match seq {
                Some(seq) if !all => vec![dead_letter(&stream, &layout, seq).await?],
                _ => dead_letters(&stream, &layout, consumer.as_deref()).await?,
            };
            if letters.is_empty() {
                println!("no dead letters to replay");
                return Ok(());
            }
            let wait = Duration::from_secs(wait_secs);
            let mut failed = 0;
            for letter in &letters {
                if !replay(&store, &stream, &layout, letter, wait).await? {
                    failed += 1;
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} replays failed again", letters.len());
            }
        }
    }
    Ok(())
}

/// Replays one dead letter; false when its consumer failed on it again.
async fn replay(
    store: &EventStore,
    stream: &Stream<()>,
    layout: &Layout,
    letter: &DeadLetter,
    wait: Duration,
) -> anyhow::Result<bool> {
    let consumer = consumer_of(letter, layout);
    let mut headers = HeaderMap::new();
    for (name, values) in letter.headers.iter() {
        let name: &str = name.as_ref();
        if name == "Nats-Msg-Id" {
            continue;
        }
        for value in values {
            headers.append(name, value.as_str());
        }
    }
    headers.insert(REPLAY_OF_HEADER, letter.sequence.to_string().as_str());
    // A second replay command for the same dead letter within the duplicate window is
    // the same replay.
    headers.insert(
        "Nats-Msg-Id",
        format!("replay:{}", letter.sequence).as_str(),
    );
    let subject = layout.replay_subject(&consumer);
    let ack = store
        .jetstream()
        .publish_with_headers(subject.clone(), headers, letter.payload.clone())
        .await
        .context("cannot publish the replay")?
        .await
        .context("the replay was not stored")?;
    // Stored on the replay subject: the dead letter has done its job.
    stream
        .delete_message(letter.sequence)
        .await
        .with_context(|| format!("replayed, but dead letter {} not deleted", letter.sequence))?;
    let original = original_position(letter);
    let deadline = Instant::now() + wait;
    loop {
        if stream.get_raw_message(ack.sequence).await.is_err() {
            // Handled or parked again: a new dead letter for the same original event,
            // written after the replay, says which.
            let again = dead_letters(stream, layout, Some(&consumer))
                .await?
                .into_iter()
                .find(|other| {
                    other.sequence > ack.sequence && original_position(other) == original
                });
            return Ok(match again {
                None => {
                    println!(
                        "dead letter {} replayed to {consumer}: handled; dead letter deleted",
                        letter.sequence
                    );
                    true
                }
                Some(again) => {
                    println!(
                        "dead letter {} replayed to {consumer}: failed again, now dead letter {}: {}",
                        letter.sequence,
                        again.sequence,
                        header(&again.headers, DEAD_LETTER_REASON_HEADER)
                    );
                    false
                }
            });
        }
        if Instant::now() >= deadline {
            println!(
                "dead letter {} replayed to {consumer}: queued on {subject}, not handled within {} s \
                 (is {consumer} running?); dead letter deleted",
                letter.sequence,
                wait.as_secs()
            );
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every dead letter (of `consumer`), oldest first.
async fn dead_letters(
    stream: &Stream<()>,
    layout: &Layout,
    consumer: Option<&str>,
) -> anyhow::Result<Vec<DeadLetter>> {
    let filter = match consumer {
        Some(consumer) => layout.dead_letter_subject(consumer),
        None => layout.dead_letter_subjects(),
    };
    let mut reader = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("cannot read the dead letters")?;
    let pending = reader
        .info()
        .await
        .context("cannot read the dead letters")?
        .num_pending;
    let mut letters = Vec::new();
    if pending == 0 {
        return Ok(letters);
    }
    let mut messages = reader
        .messages()
        .await
        .context("cannot read the dead letters")?;
    while let Some(message) = messages.next().await {
        let message = message.context("cannot read the dead letters")?;
        let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        let (sequence, left, published) = (info.stream_sequence, info.pending, info.published);
        letters.push(DeadLetter {
            sequence,
            subject: message.subject.to_string(),
            headers: message.headers.clone().unwrap_or_default(),
            payload: message.payload.clone(),
            time: timestamp(published.unix_timestamp(), published.nanosecond()),
            event: Err("not opened".to_owned()),
        });
        if left == 0 {
            break;
        }
    }
    Ok(letters)
}

/// The dead letter at `seq`; an error when there is none.
async fn dead_letter(stream: &Stream<()>, layout: &Layout, seq: u64) -> anyhow::Result<DeadLetter> {
    let message = stream
        .get_raw_message(seq)
        .await
        .map_err(|_| anyhow::anyhow!("no dead letter {seq}"))?;
    let prefix = layout.dead_letter_subject("");
    if !message.subject.as_str().starts_with(&prefix) {
        anyhow::bail!("no dead letter {seq}: {} holds a replay", message.subject);
    }
    Ok(DeadLetter {
        sequence: message.sequence,
        subject: message.subject.to_string(),
        headers: message.headers,
        payload: message.payload,
        time: timestamp(message.time.unix_timestamp(), message.time.nanosecond()),
        event: Err("not opened".to_owned()),
    })
}

fn timestamp(seconds: i64, nanos: u32) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds,
        nanos: i32::try_from(nanos).unwrap_or(0),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |value| value.as_str())
}

fn consumer_of(letter: &DeadLetter, layout: &Layout) -> String {
    match header(&letter.headers, DEAD_LETTER_CONSUMER_HEADER) {
        "" => letter
            .subject
            .strip_prefix(&layout.dead_letter_subject(""))
            .unwrap_or_default()
            .to_owned(),
        consumer => consumer.to_owned(),
    }
}

fn original_position(letter: &DeadLetter) -> (String, String) {
    (
        header(&letter.headers, ORIGINAL_SUBJECT_HEADER).to_owned(),
        header(&letter.headers, ORIGINAL_SEQUENCE_HEADER).to_owned(),
    )
}

/// The event's type: from the decoded event, else the header, else `undecodable`.
fn event_type(letter: &DeadLetter) -> String {
    match &letter.event {
        Ok(events) => events
            .iter()
            .map(|(_, event)| event.name())
            .collect::<Vec<_>>()
            .join(","),
        Err(_) => match header(&letter.headers, EVENT_TYPE_HEADER) {
            "" => "undecodable".to_owned(),
            named => format!("{named} (undecodable)"),
        },
    }
}

/// `7  routing  HandoffRequested  helpline.de.ticket.…#42  2026-…Z  permanent: …`
fn letter_line(letter: &DeadLetter) -> String {
    let (subject, sequence) = original_position(letter);
    format!(
        "{:>6}  {:<12}  {:<24}  {subject}#{sequence}  {}  {}",
        letter.sequence,
        header(&letter.headers, DEAD_LETTER_CONSUMER_HEADER),
        event_type(letter),
        letter.time,
        header(&letter.headers, DEAD_LETTER_REASON_HEADER),
    )
}

fn letter_text(letter: &DeadLetter) -> String {
    let mut out = format!(
        "dead letter {} on {} at {}\n",
        letter.sequence, letter.subject, letter.time
    );
    out.push_str("headers:\n");
    for (name, values) in letter.headers.iter() {
        let name: &str = name.as_ref();
        for value in values {
            out.push_str(&format!("  {name}: {}\n", value.as_str()));
        }
    }
    match &letter.event {
        Ok(events) => {
            for (meta, event) in events {
                out.push_str(&format!(
                "event:\n  type: {}\n  ticket: {}\n  region: {}\n  occurred at: {}\n  event id: {}\n  command id: {}\n  causation id: {}\n  summary: {}\n",
                event.name(),
                meta.ticket,
                meta.region,
                prost_types::Timestamp::from(meta.occurred_at),
                meta.event_id,
                meta.command_id,
                meta.causation_id,
                helpline_query::summary::describe(event, &Audience::operator(), false),
            ));
            }
        }
        Err(e) => out.push_str(&format!(
            "event: undecodable ({e}), {} bytes\n",
            letter.payload.len()
        )),
    }
    out
}

fn letter_json(letter: &DeadLetter) -> Value {
    let (subject, sequence) = original_position(letter);
    let headers: serde_json::Map<String, Value> = letter
        .headers
        .iter()
        .map(|(name, values)| {
            let name: &str = name.as_ref();
            let values: Vec<Value> = values
                .iter()
                .map(|value| Value::String(value.as_str().to_owned()))
                .collect();
            (name.to_owned(), Value::Array(values))
        })
        .collect();
    let events: Vec<Value> = letter
        .event
        .as_ref()
        .map(|events| {
            events
                .iter()
                .map(|(meta, event)| event_json(meta, event))
                .collect()
        })
        .unwrap_or_default();
    let event = events.first().cloned();
    json!({
        "sequence": letter.sequence,
        "subject": letter.subject,
        "consumer": header(&letter.headers, DEAD_LETTER_CONSUMER_HEADER),
        "reason": header(&letter.headers, DEAD_LETTER_REASON_HEADER),
        "deliveries": header(&letter.headers, DELIVERIES_HEADER),
        "original_subject": subject,
        "original_sequence": sequence.parse::<u64>().ok(),
        "event_type": event_type(letter),
        "time": letter.time.to_string(),
        "headers": headers,
        "event": event,
        "events": events,
    })
}

/// One event of a dead letter as JSON.
fn event_json(meta: &EnvelopeMeta, event: &Event) -> Value {
    json!({
        "type": event.name(),
        "ticket": meta.ticket.to_string(),
        "region": meta.region,
        "occurred_at": prost_types::Timestamp::from(meta.occurred_at).to_string(),
        "event_id": meta.event_id.to_string(),
        "command_id": meta.command_id.to_string(),
        "summary": helpline_query::summary::describe(event, &Audience::operator(), false),
    })
}
