//! The one consumer runtime: a handler over every ticket's events, many tickets at once,
//! one event at a time per ticket, shared among the processes that run it.
//!
//! - **Lanes.** Deliveries go to their ticket's lane by the subject's last token (no
//!   decode); a lane is handled in log order by one task, up to `tickets_in_flight` lanes
//!   at once. A slow or retrying ticket holds back only its own later events.
//! - **Partitions.** A subscription over every ticket runs `partitions` durable consumers
//!   `<name>-<p>` (each over the slots `s mod partitions = p` of the ticket subjects) with
//!   a pinned-client priority group; the processes share them by heartbeats in the
//!   members bucket (`members.rs`). A (re)started partition first waits for the
//!   events another process held, so that none is handled after a later one of its ticket.
//! - **Outcomes.** An event is acknowledged only after the handler returned `Ok`. A
//!   transient failure is tried again in place with exponential backoff; a permanent
//!   failure, a panic, an undecodable message, or an event that has failed `max_deliver`
//!   times is published to the dead-letter subject with the reason, and only then
//!   terminated — so nothing is lost and nothing blocks the events behind it.
//!
//! The server-side consumer has no `max_deliver` of its own: if the dead-letter publish
//! itself fails, the event is redelivered until it succeeds, rather than silently parked.
//!
//! A dead letter is replayed by publishing it to the consumer's replay subject
//! ([`crate::Layout::replay_subject`], in the dead-letter stream), which every
//! subscription also reads through the durable consumer `<name>-replay`. The handler gets
//! the event with its original subject and sequence, so it is handled as if the log
//! delivered it again — and never appended twice to the ticket. A handled replay is
//! deleted; one that fails again becomes a new dead letter.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PriorityPolicy, pull};
use async_nats::jetstream::kv;
use async_nats::jetstream::{AckKind, Message};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use helpline_domain::Event;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use crate::DecodeError;
use crate::EventStore;
use crate::codec::EnvelopeMeta;
use crate::customers::Binding;
use crate::error::StoreError;
use crate::layout::subject_partition;
use crate::members;

/// Longest delay between two tries of one event.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// The priority group every partition consumer pins its one puller in.
const PIN_GROUP: &str = "owner";
/// How long a pinned puller keeps its partition after its last pull: how long a
/// partition of a process that died waits for its next owner.
const PIN_TTL: Duration = Duration::from_secs(5);
/// How much longer than the ack wait a restarted consumer waits for held events.
const SETTLE_MARGIN: Duration = Duration::from_secs(1);
/// How often a settling partition asks the server whether the events it waits for are
/// back or done with: a process that handed a partition over finishes (and acknowledges)
/// what it had in hand, which never comes back as a redelivery.
const SETTLE_RECHECK: Duration = Duration::from_millis(250);
/// Headers of the original message that must not be replayed onto the dead letter.
const PUBLISH_CONTROL_HEADERS: [&str; 6] = [
    "Nats-Msg-Id",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Sequence",
    "Nats-Batch-Id",
    "Nats-Batch-Sequence",
    "Nats-Batch-Commit",
];

pub const DEAD_LETTER_REASON_HEADER: &str = "Helpline-Dead-Letter-Reason";
pub const DEAD_LETTER_CONSUMER_HEADER: &str = "Helpline-Dead-Letter-Consumer";
pub const ORIGINAL_SUBJECT_HEADER: &str = "Helpline-Original-Subject";
pub const ORIGINAL_SEQUENCE_HEADER: &str = "Helpline-Original-Sequence";
pub const DELIVERIES_HEADER: &str = "Helpline-Deliveries";
/// On a replay: the stream sequence of the dead letter it replays.
pub const REPLAY_OF_HEADER: &str = "Helpline-Replay-Of";

/// An event as a consumer receives it.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub subject: String,
    /// The stream sequence of the event's message; per ticket, sequences only grow. The
    /// events of one command share their message, and so their sequence.
    pub sequence: u64,
    pub meta: EnvelopeMeta,
    pub event: Event,
    /// How often this event has been delivered to this consumer, this time included.
    pub delivered: i64,
    /// Handed back from the dead letters by an operator: an earlier delivery may have
    /// done part of its work, whatever `delivered` says.
    pub replayed: bool,
    /// The producer's trace context, parent of the handler's span.
    pub trace: opentelemetry::Context,
    /// From a subscription: fires when this process stops handling the event's ticket
    /// (its partition handed over to another process, or the subscription stopping). A
    /// handler with long retries of its own (a provider's) stops between them and fails
    /// transiently, so that the ticket's next owner handles the event in its order,
    /// rather than this process going on with it late. None in a view's read.
    pub let_go: Option<CancellationToken>,
    /// From a subscription: this process's hold on the event (see [`StoredEvent::outlived`]).
    /// None in a view's read.
    pub hold: Option<Hold>,
}

/// A process's hold on an event it consumes: the server counts the event as this
/// process's while its ack wait runs, which the subscription's keep-alive extends.
#[derive(Clone, Debug)]
pub struct Hold {
    /// When its ack wait last began here: its arrival, or the keep-alive's last extension.
    kept: Arc<Mutex<Instant>>,
    ack_wait: Duration,
}

impl Hold {
    fn new(ack_wait: Duration) -> Self {
        Self {
            kept: Arc::new(Mutex::new(Instant::now())),
            ack_wait,
        }
    }

    fn kept_alive(&self) {
        *self.kept.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// True when nearly an ack wait passed since its ack wait last began here: the
    /// keep-alive extends it every third of one, so only a process that stood still
    /// (frozen, starved) gets there, and the server has sent the event again, here or to
    /// the partition's next owner.
    pub fn outlived(&self) -> bool {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
            > self.ack_wait.mul_f64(0.9)
    }
}

impl StoredEvent {
    /// True when this process held the event past its ack wait without extending it (it
    /// stood still meanwhile): the server has sent it again, maybe to another process. A
    /// handler asks before what cannot be undone (a provider's send) and fails
    /// transiently instead; the ticket then waits for the redelivery. Never true in a
    /// view's read.
    pub fn outlived(&self) -> bool {
        self.hold.as_ref().is_some_and(Hold::outlived)
    }

    /// An event as a fold sees it, written by hand instead of read from the log: the
    /// next message of a hand-written log in a test of a projection (region `de`, new
    /// event and command ids, delivered once, no customer key).
    pub fn handwritten(
        ticket: helpline_domain::TicketId,
        sequence: u64,
        occurred_at: std::time::SystemTime,
        event: Event,
    ) -> Self {
        Self {
            subject: format!("helpline.de.ticket.{}", ticket.0),
            sequence,
            meta: EnvelopeMeta {
                event_id: Uuid::now_v7(),
                ticket,
                region: "de".to_owned(),
                occurred_at,
                command_id: Uuid::now_v7(),
                causation_id: String::new(),
                correlation_id: String::new(),
                schema_version: crate::SCHEMA_VERSION,
                customer: None,
            },
            event,
            delivered: 1,
            replayed: false,
            trace: opentelemetry::Context::default(),
            let_go: None,
            hold: None,
        }
    }
}

/// How far a fold of the log got: the last message applied and which of its events,
/// so that a replay overlapping what was applied changes nothing, also when one message
/// holds a command's several events (which share its sequence).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    sequence: u64,
    events: Vec<uuid::Uuid>,
}

impl Applied {
    /// The stream sequence of the last message applied; 0 before the first.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// True, and remembered, when `event` is new to the fold.
    pub fn admit(&mut self, sequence: u64, event: uuid::Uuid) -> bool {
        match sequence.cmp(&self.sequence) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal if self.events.contains(&event) => false,
            std::cmp::Ordering::Equal => {
                self.events.push(event);
                true
            }
            std::cmp::Ordering::Greater => {
                self.sequence = sequence;
                self.events.clear();
                self.events.push(event);
                true
            }
        }
    }
}

/// Why a handler did not take an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying: the network, a conflict, a provider's 5xx.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help: the event goes to the dead-letter subject now.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) | StoreError::Conflict { .. } => {
                HandlerError::Transient(error.to_string())
            }
            _ => HandlerError::Permanent(error.to_string()),
        }
    }
}

/// A running consumer. Stop it with [`Subscription::stop`]; dropping it also stops it.
#[derive(Debug)]
pub struct Subscription {
    name: String,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Subscription {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops taking new events, lets the events in hand finish, hands the ones not
    /// started back to the server (so another replica takes them at once), and waits.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        tracing::debug!(consumer = %self.name, "consumer stopped");
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

type BoxedHandler = Arc<
    dyn Fn(StoredEvent) -> futures::future::BoxFuture<'static, Result<(), HandlerError>>
        + Send
        + Sync,
>;

impl EventStore {
    /// Runs `handler` for every event on `filter` (e.g. [`crate::Layout::all_tickets`]),
    /// through the durable consumer `name`, which resumes where it left off.
    ///
    /// Up to [`crate::StoreConfig::tickets_in_flight`] tickets are handled at once, each
    /// strictly one event at a time in the order of the log: events are routed to a
    /// ticket's lane by the last token of their subject, without decoding them. A ticket
    /// whose handler is slow or retrying holds back only its own later events.
    pub async fn subscribe<H, F>(
        &self,
        name: &str,
        filter: &str,
        handler: H,
    ) -> Result<Subscription, StoreError>
    where
        H: Fn(StoredEvent) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler: BoxedHandler = Arc::new(move |event| handler(event).boxed());
        // Every ticket: partitioned and shared with the other processes running `name`.
        // Anything narrower (a test's, an operator's): one consumer, this process alone.
        let partitioned = filter == self.layout.all_tickets();
        let partitions = if partitioned {
            self.config.partition_count()
        } else {
            1
        };
        let replay_consumer = self.replay_consumer(name).await?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let worker = Arc::new(Worker {
            store: self.clone(),
            name: name.to_owned(),
            filter: filter.to_owned(),
            partitions,
            handler,
            lanes: Mutex::new(HashMap::new()),
            tickets: Arc::new(Semaphore::new(self.config.tickets_in_flight.max(1))),
            settling: Mutex::new(HashSet::new()),
            owned: Mutex::new(HashMap::new()),
            cancel: cancel.clone(),
            tasks: tasks.clone(),
        });
        if partitioned {
            let bucket = self
                .js
                .get_key_value(self.layout.members_bucket())
                .await
                .map_err(|e| StoreError::missing(self.layout.members_bucket(), e))?;
            let watch = members::watch(&bucket, name)
                .await
                .map_err(|e| StoreError::setup(format!("members of {name}"), e))?;
            tasks.spawn(Arc::clone(&worker).share(bucket, watch));
        } else {
            let consumer = self.consumer(name, filter).await?;
            let token = worker.own(0);
            tasks.spawn(Arc::clone(&worker).pull(consumer, Source::Log, 0, token));
        }
        let replays = worker.cancel.child_token();
        tasks.spawn(Arc::clone(&worker).pull(replay_consumer, Source::Replays, 0, replays));
        tasks.spawn(Arc::clone(&worker).keep_alive());
        Ok(Subscription {
            name: name.to_owned(),
            cancel,
            tasks,
        })
    }

    async fn consumer(
        &self,
        name: &str,
        filter: &str,
    ) -> Result<consumer::Consumer<pull::Config>, StoreError> {
        self.durable(
            self.layout.event_stream(),
            pull::Config {
                filter_subject: filter.to_owned(),
                ..self.durable_config(name)
            },
        )
        .await
    }

    /// What every durable consumer of a subscription shares: explicit acks, from the
    /// start of the stream (what was acknowledged stays so), no server-side delivery
    /// limit (the runtime counts deliveries and dead-letters itself).
    fn durable_config(&self, durable: &str) -> pull::Config {
        pull::Config {
            durable_name: Some(durable.to_owned()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.config.ack_wait,
            max_deliver: -1,
            max_ack_pending: self.config.max_ack_pending,
            ..Default::default()
        }
    }

    /// Creates (or finds, when it is the same) the durable consumer `config` on `stream`.
    async fn durable(
        &self,
        stream: &str,
        config: pull::Config,
    ) -> Result<consumer::Consumer<pull::Config>, StoreError> {
        let name = config.durable_name.clone().unwrap_or_default();
        self.js
            .get_stream_no_info(stream)
            .await
            .map_err(StoreError::unavailable)?
            .create_consumer(config)
            .await
            .map_err(|e| StoreError::setup(format!("consumer {name}"), e))
    }

    /// How far behind the consumer `name` over every ticket is, summed over its
    /// partitions: events not yet delivered, and delivered but not yet acknowledged.
    pub async fn consumer_backlog(&self, name: &str) -> Result<Backlog, StoreError> {
        let stream = self
            .js
            .get_stream_no_info(self.layout.event_stream())
            .await
            .map_err(StoreError::unavailable)?;
        let mut backlog = Backlog::default();
        for partition in 0..self.config.partition_count() {
            let info = stream
                .consumer_info(partition_consumer_name(name, partition))
                .await
                .map_err(StoreError::unavailable)?;
            backlog.pending += info.num_pending;
            backlog.unacknowledged += info.num_ack_pending as u64;
        }
        Ok(backlog)
    }

    /// The durable consumer `<name>-<partition>` over one partition of every ticket, with
    /// a pinned-client priority group so that one process at a time pulls from it.
    async fn partition_consumer(
        &self,
        name: &str,
        partition: u32,
        partitions: u32,
    ) -> Result<consumer::Consumer<pull::Config>, StoreError> {
        let durable = partition_consumer_name(name, partition);
        self.durable(
            self.layout.event_stream(),
            pull::Config {
                filter_subjects: self.layout.partition_filters(partition, partitions),
                priority_policy: PriorityPolicy::PinnedClient,
                priority_groups: vec![PIN_GROUP.to_owned()],
                priority_timeout: PIN_TTL,
                ..self.durable_config(&durable)
            },
        )
        .await
    }

    /// The durable consumer `<name>-replay` over the consumer's replay subject.
    async fn replay_consumer(
        &self,
        name: &str,
    ) -> Result<consumer::Consumer<pull::Config>, StoreError> {
        // Handled replays are deleted, so "from the start" is only what still waits.
        self.durable(
            self.layout.dead_letter_stream(),
            pull::Config {
                filter_subject: self.layout.replay_subject(name),
                ..self.durable_config(&format!("{name}-replay"))
            },
        )
        .await
    }
}

/// A consumer's events not yet done with ([`EventStore::consumer_backlog`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// In the stream, not yet delivered.
    pub pending: u64,
    /// Delivered, not yet acknowledged.
    pub unacknowledged: u64,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        self.pending == 0 && self.unacknowledged == 0
    }
}

/// Where a delivery came from: the log itself, or the consumer's replay subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Log,
    Replays,
}

/// One event handed to this process, waiting in (or at the head of) its ticket's lane.
/// Not `Clone`: its message's headers are a map, and a lane shares it instead.
struct Delivery {
    message: Message,
    source: Source,
    /// Its sequence in the stream it was read from (the dead-letter stream for a replay).
    delivered_sequence: u64,
    position: Arc<Position>,
    /// The partition of its ticket (of the original subject, for a replay).
    partition: u32,
    /// When this process got it; the keep-alive extends the ack wait of old ones.
    since: Instant,
    /// Whether the server still counts it as this process's.
    hold: Hold,
}

impl Delivery {
    fn same(&self, other: &Delivery) -> bool {
        self.source == other.source && self.delivered_sequence == other.delivered_sequence
    }

    fn outlived(&self) -> bool {
        self.hold.outlived()
    }
}

/// One ticket's events in hand, in log order; the head is the one being handled. A lane
/// exists while it holds events; at most one task runs it. Shared, so that the task
/// handling the head holds it without copying the message (its headers are a map).
struct Lane {
    queue: VecDeque<Arc<Delivery>>,
    running: bool,
    /// The head is in the handler; a later delivery never goes before it.
    head_in_hand: bool,
    partition: u32,
}

/// What became of one event.
enum Outcome {
    Handled,
    /// Dead-lettered with this reason.
    Park(String),
    /// Not finished because the subscription stops: handed back to the server.
    Release,
    /// Held past its ack wait while in hand (the process stood still): the server sent it
    /// again, maybe elsewhere; its ticket waits for that redelivery.
    Outlived,
}

struct Worker {
    store: EventStore,
    name: String,
    filter: String,
    partitions: u32,
    handler: BoxedHandler,
    /// Ticket token → its lane.
    lanes: Mutex<HashMap<String, Lane>>,
    /// Tickets handled at once.
    tickets: Arc<Semaphore>,
    /// Partitions whose (re)started consumer waits for the events another process held
    /// when it stopped, so that none of them is handled after a later one of its ticket.
    settling: Mutex<HashSet<u32>>,
    /// The partitions this process pulls, each with the token that stops its pulling.
    owned: Mutex<HashMap<u32, CancellationToken>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Worker {
    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lane>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn pull(
        self: Arc<Self>,
        mut consumer: consumer::Consumer<pull::Config>,
        source: Source,
        partition: u32,
        stop: CancellationToken,
    ) {
        // A consumer over every ticket is a partition's, pinned to one puller.
        let pinned = self.filter == self.store.layout.all_tickets();
        'consume: loop {
            let pulled = if pinned && source == Source::Log {
                consumer.stream().group(PIN_GROUP).messages().await
            } else {
                consumer.messages().await
            };
            let mut messages = match pulled {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(consumer = %self.name, error = %e, "cannot pull, retrying");
                    if self.pause(&stop).await {
                        break;
                    }
                    continue;
                }
            };
            let mut settle = match source {
                Source::Log => self.start_settling(&mut consumer, partition).await,
                Source::Replays => None,
            };
            // The consumer sequence of the last delivery this pull stream brought: the
            // server numbers its deliveries one by one, so a number skipped is a delivery
            // it sent and this process never got (lost on the way, as through a cluster
            // node that failed), which it sends again only after the ack wait.
            let mut last_delivery: Option<u64> = None;
            let mut first_delivery = true;
            let mut recheck = tokio::time::interval(SETTLE_RECHECK);
            recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let deadline = settle.as_ref().map(|s| s.deadline);
                let next = tokio::select! {
                    _ = stop.cancelled() => break 'consume,
                    _ = sleep_until_or_never(deadline) => {
                        self.end_settling(partition, settle.take(), Settled::TimedOut);
                        continue;
                    }
                    _ = recheck.tick(), if settle.is_some() => {
                        if self.held_elsewhere(&mut consumer, partition).await == Some(0) {
                            self.end_settling(partition, settle.take(), Settled::NoneOut);
                        }
                        continue;
                    }
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => {
                        // The first delivery is when the server let this process pull:
                        // for a partition, once the previous owner had stopped pulling,
                        // so after its let-go. What it held then is done, or back, within
                        // an ack wait of that: the wait counts from here, not from the
                        // pull's start, which can come before the let-go.
                        if std::mem::take(&mut first_delivery)
                            && let Some(s) = settle.as_mut()
                        {
                            s.deadline = self.settle_deadline();
                        }
                        // Only a partition's pinned consumer has one puller, whose
                        // deliveries are numbered without gaps.
                        let lost = if pinned && source == Source::Log {
                            lost_before(&mut last_delivery, &message)
                        } else {
                            0
                        };
                        if lost > 0 {
                            tracing::info!(consumer = %self.name, partition, lost, "deliveries lost on the way; waiting for them before their tickets go on");
                            helpline_telemetry::metrics::increment(
                                "helpline_consumer_lost_deliveries_total",
                                "Deliveries a partition's consumer saw the server number but never got (each holds the partition until it is back).",
                                &[("consumer", self.name.as_str())],
                            );
                            let settling = match settle.as_mut() {
                                Some(settling) => settling,
                                None => settle.insert(self.begin_settling(partition, 0)),
                            };
                            // The lost deliveries come back an ack wait after they were
                            // sent: wait that long from now.
                            settling.awaited += lost;
                            settling.deadline = self.settle_deadline();
                        }
                        let redelivered = self.take(message, source);
                        if let Some(s) = settle.as_mut()
                            && redelivered
                        {
                            s.awaited = s.awaited.saturating_sub(1);
                            if s.awaited == 0 {
                                self.end_settling(partition, settle.take(), Settled::Back);
                            }
                        }
                    }
                    Some(Err(e)) => {
                        use async_nats::jetstream::consumer::pull::MessagesErrorKind;
                        tracing::warn!(consumer = %self.name, error = %e, "pull failed");
                        if e.kind() == MessagesErrorKind::ConsumerDeleted {
                            break;
                        }
                    }
                    None => break,
                }
            }
            if settle.is_some() {
                self.settled(partition);
            }
            // The pull stream ended (consumer deleted, connection lost): recreate and
            // resume from the consumer's acknowledged position.
            if self.pause(&stop).await {
                break;
            }
            let recreated = match source {
                Source::Replays => self.store.replay_consumer(&self.name).await,
                Source::Log if pinned => {
                    self.store
                        .partition_consumer(&self.name, partition, self.partitions)
                        .await
                }
                Source::Log => self.store.consumer(&self.name, &self.filter).await,
            };
            match recreated {
                Ok(recreated) => consumer = recreated,
                Err(e) => {
                    tracing::warn!(consumer = %self.name, error = %e, "cannot recreate consumer")
                }
            }
        }
        // No new events: the lanes finish what they hold; nothing left waits on settling.
        // The pin is not released by hand: this process cannot tell whether it holds it,
        // and releasing another's would let two processes pull the partition. The next
        // owner is pinned once this one has not pulled for the pin's TTL.
        self.settled(partition);
    }

    /// Events delivered to a process that stopped without acknowledging them come back
    /// only after the ack wait, while newer events of the same tickets arrive at once.
    /// So a (re)started consumer that finds such events pending queues what it gets,
    /// without handling it, until they are back (or the ack wait has passed), and lanes
    /// keep their events in log order.
    async fn start_settling(
        &self,
        consumer: &mut consumer::Consumer<pull::Config>,
        partition: u32,
    ) -> Option<Settle> {
        let awaited = self.held_elsewhere(consumer, partition).await?;
        if awaited == 0 {
            return None;
        }
        tracing::info!(consumer = %self.name, partition, awaited, "waiting for events another process held");
        Some(self.begin_settling(partition, awaited))
    }

    /// Holds `partition`'s lanes until `awaited` redeliveries are back (or the ack wait
    /// and a margin passed, or none is out with anyone else).
    fn begin_settling(&self, partition: u32, awaited: usize) -> Settle {
        self.settling
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition);
        Settle {
            awaited,
            deadline: self.settle_deadline(),
            since: tokio::time::Instant::now(),
        }
    }

    /// When a settling that begins (or is renewed) now stops waiting: an ack wait, in
    /// which the server sends again what was out, and a margin.
    fn settle_deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.store.config.ack_wait + SETTLE_MARGIN
    }

    /// Ends a partition's settling, `how` it ended, and counts it: how long partitions are
    /// held, and why, is what an operator reads after a handover or a cluster failure.
    fn end_settling(self: &Arc<Self>, partition: u32, settle: Option<Settle>, how: Settled) {
        let Some(settle) = settle else {
            return;
        };
        let (outcome, message) = match how {
            Settled::Back => ("redelivered", "the events awaited are back"),
            Settled::NoneOut => (
                "done_elsewhere",
                "the events another process held are back or done",
            ),
            Settled::TimedOut => ("timed_out", "stopped waiting for redeliveries"),
        };
        let held = settle.since.elapsed();
        let held_ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
        tracing::info!(consumer = %self.name, partition, held_ms, "{message}");
        helpline_telemetry::metrics::observe(
            "helpline_consumer_partition_held_seconds",
            "How long a partition's events waited for ones another process held or the way lost, by how the wait ended (redelivered, done_elsewhere, timed_out).",
            &[("consumer", self.name.as_str()), ("outcome", outcome)],
            held.as_secs_f64(),
        );
        self.settled(partition);
    }

    /// Events of `partition` the server counts as delivered and not acknowledged that
    /// this process does not hold: out with another process (or lost on the way). None
    /// when the server cannot say now.
    async fn held_elsewhere(
        &self,
        consumer: &mut consumer::Consumer<pull::Config>,
        partition: u32,
    ) -> Option<usize> {
        let pending = match consumer.info().await {
            Ok(info) => info.num_ack_pending,
            Err(e) => {
                tracing::debug!(consumer = %self.name, error = %e, "no consumer info");
                return None;
            }
        };
        let ours = self
            .lanes()
            .values()
            .filter(|lane| lane.partition == partition)
            .flat_map(|lane| lane.queue.iter())
            .filter(|d| d.source == Source::Log)
            .count();
        Some(pending.saturating_sub(ours))
    }

    /// Ends a partition's settling: every lane of it that waited starts.
    fn settled(self: &Arc<Self>, partition: u32) {
        let was = self
            .settling
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&partition);
        if !was {
            return;
        }
        let keys: Vec<String> = self
            .lanes()
            .iter()
            .filter(|(_, lane)| lane.partition == partition)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.start_lane(key);
        }
    }

    fn is_settling(&self, partition: u32) -> bool {
        self.settling
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&partition)
    }

    /// Marks `partition` as pulled here; the token stops its pulling.
    fn own(&self, partition: u32) -> CancellationToken {
        let token = self.cancel.child_token();
        self.owned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition, token.clone());
        token
    }

    /// The token that fires when this process lets `partition` go or stops; one that
    /// has fired for a partition this process does not pull.
    fn ownership(&self, partition: u32) -> CancellationToken {
        self.owned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .cloned()
            .unwrap_or_else(|| {
                let gone = CancellationToken::new();
                gone.cancel();
                gone
            })
    }

    /// True when this process no longer pulls `partition`, or stops altogether: events
    /// of it not yet started go back to the server, for the partition's next owner.
    fn let_go(&self, partition: u32) -> bool {
        self.cancel.is_cancelled()
            || self
                .owned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&partition)
                .is_none_or(CancellationToken::is_cancelled)
    }

    /// Waits a moment before trying again; true when asked to stop meanwhile.
    async fn pause(&self, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(Duration::from_millis(500)) => false,
        }
    }

    /// Keeps this process's share of the partitions: heartbeats, follows the other
    /// members, and starts or stops pulling partitions as the share changes.
    async fn share(
        self: Arc<Self>,
        bucket: kv::Store,
        watch: impl futures::Stream<Item = kv::Entry> + Send,
    ) {
        let me = Uuid::now_v7().simple().to_string();
        let key = format!("{}.{me}", self.name);
        let mut watch = Box::pin(watch);
        let mut members = members::Members::default();
        let mut beat = tokio::time::interval(members::HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watching = true;
        // Until the watch has brought back this process's own first heartbeat, it has not
        // seen the members that were there before it, and would take their partitions.
        let mut caught_up = false;
        // When it did: the members already there hand its share over at their next
        // heartbeat after seeing it, so it takes nothing from them before then.
        let mut joined: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = beat.tick() => {
                    if let Err(e) = bucket.put(&key, Bytes::new()).await {
                        tracing::warn!(consumer = %self.name, error = %e, "heartbeat not written");
                    }
                }
                entry = watch.next(), if watching => match entry {
                    Some(entry) => {
                        members.observe(&entry);
                        if !caught_up && entry.key == key {
                            caught_up = true;
                            joined = Some(tokio::time::Instant::now());
                        } else {
                            continue;
                        }
                    }
                    None => {
                        tracing::warn!(consumer = %self.name, "members watch ended; sharing by what was seen");
                        watching = false;
                        caught_up = true;
                        continue;
                    }
                },
            }
            if !caught_up {
                continue;
            }
            let live = members.live(&me);
            // A member that just joined others waits out their handover: until then the
            // one that held a partition may still pull it, and two would handle one
            // ticket at once.
            if live.len() > 1 && joined.is_some_and(|at| at.elapsed() < members::JOIN_GRACE) {
                continue;
            }
            let share = members::owned(&me, &live, self.partitions);
            self.reshare(&share).await;
        }
        // Leaving: the others take the partitions over without waiting for the TTL.
        if let Err(e) = bucket.delete(&key).await {
            tracing::debug!(consumer = %self.name, error = %e, "member key not deleted");
        }
    }

    /// Starts pulling the partitions of `share` not pulled yet, stops the others.
    async fn reshare(self: &Arc<Self>, share: &BTreeSet<u32>) {
        let dropped: Vec<u32> = {
            let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
            let dropped: Vec<u32> = owned
                .keys()
                .filter(|p| !share.contains(p))
                .copied()
                .collect();
            for partition in &dropped {
                if let Some(token) = owned.remove(partition) {
                    token.cancel();
                }
            }
            dropped
        };
        for partition in dropped {
            tracing::info!(consumer = %self.name, partition, "partition handed over");
            // Its lanes see `let_go` and release what they have not started.
            self.wake_lanes(partition);
        }
        let new: Vec<u32> = {
            let owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
            share
                .iter()
                .filter(|p| !owned.contains_key(p))
                .copied()
                .collect()
        };
        for partition in new {
            match self
                .store
                .partition_consumer(&self.name, partition, self.partitions)
                .await
            {
                Ok(consumer) => {
                    tracing::info!(consumer = %self.name, partition, "partition taken");
                    let token = self.own(partition);
                    self.tasks.spawn(Arc::clone(self).pull(
                        consumer,
                        Source::Log,
                        partition,
                        token,
                    ));
                }
                Err(e) => {
                    tracing::warn!(consumer = %self.name, partition, error = %e, "cannot take partition, retrying");
                }
            }
        }
    }

    /// Starts the idle lanes of `partition`, so that they release what they hold.
    fn wake_lanes(self: &Arc<Self>, partition: u32) {
        let keys: Vec<String> = self
            .lanes()
            .iter()
            .filter(|(_, lane)| lane.partition == partition && !lane.running)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.start_lane(key);
        }
    }

    /// Puts a delivery into its ticket's lane; true when it is a redelivery of an event
    /// this process did not hold (what a settling partition waits for).
    fn take(self: &Arc<Self>, message: Message, source: Source) -> bool {
        let (delivered_sequence, delivered) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered),
            Err(e) => {
                // Not a JetStream delivery: nothing to acknowledge or redeliver.
                tracing::warn!(consumer = %self.name, error = %e, "message without delivery info");
                return false;
            }
        };
        let (subject, sequence) = match source {
            Source::Log => (message.subject.to_string(), delivered_sequence),
            Source::Replays => match replayed_position(&message) {
                Some(position) => position,
                None => {
                    tracing::warn!(consumer = %self.name, sequence = delivered_sequence, "replay without its original position, dropped");
                    let worker = Arc::clone(self);
                    self.tasks.spawn(async move {
                        if let Err(e) = message.ack_with(AckKind::Term).await {
                            tracing::debug!(error = %e, "term of a bad replay not confirmed");
                        }
                        worker.finish_replay(delivered_sequence).await;
                    });
                    return delivered > 1;
                }
            },
        };
        let key = ticket_token(&subject).to_owned();
        let partition = subject_partition(&subject, self.partitions);
        let delivery = Delivery {
            message,
            source,
            delivered_sequence,
            position: Arc::new(Position {
                subject,
                sequence,
                delivered,
                replay: (source == Source::Replays).then_some(delivered_sequence),
            }),
            partition,
            since: Instant::now(),
            hold: Hold::new(self.store.config.ack_wait),
        };
        let mut held_here = false;
        let start = {
            let mut lanes = self.lanes();
            match lanes.get_mut(&key) {
                Some(lane) => {
                    if let Some(held) = lane.queue.iter_mut().find(|d| d.same(&delivery)) {
                        // A redelivery of an event in hand: keep the newest handle, whose
                        // acknowledgement the server expects, and how long it is held.
                        let since = held.since;
                        *held = Arc::new(Delivery { since, ..delivery });
                        held_here = true;
                        // A lane waiting for this redelivery goes on.
                        true
                    } else {
                        // In log order; a head already in the handler stays first.
                        let in_hand = usize::from(lane.head_in_hand);
                        let at = lane
                            .queue
                            .iter()
                            .skip(in_hand)
                            .position(|d| d.position.sequence > delivery.position.sequence)
                            .map_or(lane.queue.len(), |i| i + in_hand);
                        lane.queue.insert(at, Arc::new(delivery));
                        false
                    }
                }
                None => {
                    lanes.insert(
                        key.clone(),
                        Lane {
                            queue: VecDeque::from([Arc::new(delivery)]),
                            running: false,
                            head_in_hand: false,
                            partition,
                        },
                    );
                    true
                }
            }
        };
        if start && !self.is_settling(partition) {
            self.start_lane(key);
        }
        delivered > 1 && !held_here
    }

    /// Starts a task for the lane unless one runs it already.
    fn start_lane(self: &Arc<Self>, key: String) {
        let start = match self.lanes().get_mut(&key) {
            Some(lane) if !lane.running => {
                lane.running = true;
                true
            }
            _ => false,
        };
        if start {
            self.tasks.spawn(Arc::clone(self).run_lane(key));
        }
    }

    /// Handles a ticket's events one after the other until its lane is empty.
    async fn run_lane(self: Arc<Self>, key: String) {
        let permit = tokio::select! {
            _ = self.cancel.cancelled() => None,
            permit = Arc::clone(&self.tickets).acquire_owned() => permit.ok(),
        };
        loop {
            let next = {
                let mut lanes = self.lanes();
                let Some(lane) = lanes.get_mut(&key) else {
                    return;
                };
                if permit.is_none() || self.let_go(lane.partition) {
                    // Stopping: what has not started goes back to the server now.
                    let queue = std::mem::take(&mut lane.queue);
                    lanes.remove(&key);
                    Err(queue)
                } else if self.is_settling(lane.partition) {
                    // An earlier event of this ticket may be on its way back; the lane
                    // waits, and starts again when its partition has settled.
                    lane.running = false;
                    return;
                } else {
                    // Held past its ack wait while this process stood still: sent again.
                    if let Some(outlived) = lane.queue.front().filter(|d| d.outlived()) {
                        let outlived = Arc::clone(outlived);
                        self.await_redelivery(lane, &key, outlived);
                        return;
                    }
                    match lane.queue.front() {
                        Some(head) => {
                            lane.head_in_hand = true;
                            Ok(head.clone())
                        }
                        None => {
                            lanes.remove(&key);
                            return;
                        }
                    }
                }
            };
            let head = match next {
                Ok(head) => head,
                Err(queue) => {
                    for delivery in queue {
                        self.release(&delivery.message).await;
                    }
                    return;
                }
            };
            let started = Instant::now();
            let outcome = self.handle(&head).await;
            if matches!(outcome, Outcome::Outlived) {
                let mut lanes = self.lanes();
                let Some(lane) = lanes.get_mut(&key) else {
                    return;
                };
                lane.head_in_hand = false;
                if lane.queue.front().is_some_and(|d| Arc::ptr_eq(d, &head)) {
                    self.await_redelivery(lane, &key, head);
                    return;
                }
                // Its redelivery came here meanwhile and took its place: handled next.
                continue;
            }
            // The newest handle of the head, which a redelivery may have replaced.
            let current = {
                let mut lanes = self.lanes();
                match lanes.get_mut(&key) {
                    Some(lane) if lane.queue.front().is_some_and(|d| d.same(&head)) => {
                        lane.head_in_hand = false;
                        lane.queue.pop_front()
                    }
                    _ => None,
                }
            }
            .unwrap_or(head);
            self.finish(&current, outcome).await;
            // One line per handling, with its duration: what shows, across processes, that
            // no ticket was in two handlers at once.
            let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            tracing::debug!(consumer = %self.name, ticket = %key, sequence = current.position.sequence, elapsed_us, "event handled");
        }
    }

    /// Stops the lane at `outlived`, its head, which this process held past its ack wait
    /// without an extension (it stood still meanwhile): the server sends it again, maybe
    /// to the partition's next owner. The lane waits for that redelivery (it starts the
    /// lane again), so that the ticket is not handled in two places, nor its later events
    /// before it; one that went elsewhere is forgotten here.
    fn await_redelivery(self: &Arc<Self>, lane: &mut Lane, key: &str, outlived: Arc<Delivery>) {
        tracing::info!(consumer = %self.name, ticket = %key, sequence = outlived.position.sequence, "event held past its ack wait; waiting for its redelivery");
        helpline_telemetry::metrics::increment(
            "helpline_consumer_outlived_deliveries_total",
            "Events a process held past their ack wait without extending it (it stood still), whose redelivery their ticket waited for instead of handling them.",
            &[("consumer", self.name.as_str())],
        );
        lane.running = false;
        self.tasks
            .spawn(Arc::clone(self).forget_outlived(key.to_owned(), outlived));
    }

    /// The redelivery of an event this process held past its ack wait comes within an ack
    /// wait, here or to another process, and here once this process pulls its partition
    /// again (after the members have reshared and the pin has moved back, when another
    /// took it meanwhile); one that has not come here by then went elsewhere (and may be
    /// done there): the lane lets it go and goes on.
    async fn forget_outlived(self: Arc<Self>, key: String, outlived: Arc<Delivery>) {
        let repinned = PIN_TTL + 2 * members::HEARTBEAT;
        let wait = self.store.config.ack_wait.max(repinned) + SETTLE_MARGIN;
        tokio::select! {
            _ = self.cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let forgotten = {
            let mut lanes = self.lanes();
            match lanes.get_mut(&key) {
                Some(lane)
                    if !lane.running
                        && lane
                            .queue
                            .front()
                            .is_some_and(|d| Arc::ptr_eq(d, &outlived)) =>
                {
                    lane.queue.pop_front();
                    if lane.queue.is_empty() {
                        lanes.remove(&key);
                        false
                    } else {
                        true
                    }
                }
                _ => false,
            }
        };
        if forgotten {
            self.start_lane(key);
        }
    }

    /// Decodes the event and runs the handler, retrying transient failures in place
    /// with exponential backoff, so that the ticket's later events wait behind it.
    async fn handle(&self, delivery: &Delivery) -> Outcome {
        let position = &delivery.position;
        let max_deliver = self.store.config.max_deliver;
        let mut attempt = position.delivered;
        if attempt > max_deliver {
            return Outcome::Park(format!("delivered {attempt} times without being handled"));
        }
        // Events of the message (a command's several) already handled: a retry goes on
        // from the one that failed.
        let mut done = 0;
        // A transient failure is tried again for `max_deliver` tries and at least
        // `retry_for`: an outage of NATS (a leader election, a restart) parks nothing.
        let partition = delivery.partition;
        let first_try = tokio::time::Instant::now();
        let retry_for = self.store.config.retry_for;
        let again = |attempt: i64| attempt < max_deliver || first_try.elapsed() < retry_for;
        loop {
            let outcome = self.attempt(delivery, attempt, &mut done).await;
            let result = match &outcome {
                Ok(()) => "handled",
                // Handled again at its redelivery.
                Err(_) if delivery.outlived() => "retried",
                Err(HandlerError::Transient(_)) if again(attempt) => "retried",
                Err(_) => "dead_lettered",
            };
            helpline_telemetry::metrics::increment(
                "helpline_events_total",
                "Events a consumer took, by outcome: handled, retried later, dead-lettered.",
                &[("consumer", self.name.as_str()), ("outcome", result)],
            );
            match outcome {
                Ok(()) => return Outcome::Handled,
                // Handed over (or stopping) meanwhile: the next owner tries it, in its
                // ticket's order, instead of this process going on after it has moved on.
                Err(HandlerError::Transient(_)) if self.let_go(partition) => {
                    return Outcome::Release;
                }
                // The process stood still past the ack wait with the event in hand (a
                // handler that saw it, `StoredEvent::outlived`, failed for that): another
                // try here would handle it a second time beside its redelivery.
                Err(_) if delivery.outlived() => return Outcome::Outlived,
                Err(HandlerError::Transient(reason)) if again(attempt) => {
                    let delay = retry_delay(self.store.config.retry_backoff, attempt);
                    tracing::info!(consumer = %self.name, sequence = position.sequence, %reason, ?delay, "handler failed, retrying");
                    tokio::select! {
                        _ = self.cancel.cancelled() => return Outcome::Release,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    if self.let_go(partition) {
                        return Outcome::Release;
                    }
                    if delivery.outlived() {
                        return Outcome::Outlived;
                    }
                    attempt += 1;
                }
                Err(error) => {
                    return Outcome::Park(format!("{error} (after {attempt} deliveries)"));
                }
            }
        }
    }

    /// One try of the handler on the message's events from the `done`-th on, one after
    /// the other; a panic is a permanent failure.
    async fn attempt(
        &self,
        delivery: &Delivery,
        attempt: i64,
        done: &mut usize,
    ) -> Result<(), HandlerError> {
        let position = &delivery.position;
        let message = &delivery.message;
        let events = match self
            .store
            .decode_received(&message.payload, Binding::Learn)
            .await
        {
            Ok(decoded) => decoded,
            Err(DecodeError::Codec(e)) => {
                return Err(HandlerError::Permanent(format!("undecodable event: {e}")));
            }
            Err(DecodeError::Store(e)) => {
                return Err(HandlerError::Transient(format!("customer key: {e}")));
            }
        };
        let no_headers = HeaderMap::new();
        let headers = message.headers.as_ref().unwrap_or(&no_headers);
        if *done == 0
            && delivery.source == Source::Log
            && let Some(previous) = headers
                .get("Nats-Expected-Last-Subject-Sequence")
                .and_then(|value| value.as_str().parse::<u64>().ok())
            && let Some((meta, _)) = events.first()
        {
            // Keeps the ticket hot when this message follows on its hot state directly.
            let folded: Vec<&Event> = events.iter().map(|(_, event)| event).collect();
            let customer = events.iter().find_map(|(meta, _)| meta.customer.as_ref());
            self.store
                .hot
                .fold(meta.ticket, previous, position.sequence, customer, &folded);
        }
        let trace = helpline_telemetry::extract(headers);
        let let_go = self.ownership(delivery.partition);
        for (meta, event) in events.into_iter().skip(*done) {
            let span = tracing::info_span!(
                "handle event",
                consumer = %self.name,
                ticket = %meta.ticket,
                event = event.name(),
                sequence = position.sequence,
                delivered = attempt
            );
            helpline_telemetry::set_parent(&span, trace.clone());
            let stored = StoredEvent {
                subject: position.subject.clone(),
                sequence: position.sequence,
                meta,
                event,
                delivered: attempt,
                replayed: delivery.source == Source::Replays,
                trace: trace.clone(),
                let_go: Some(let_go.clone()),
                hold: Some(delivery.hold.clone()),
            };
            AssertUnwindSafe((self.handler)(stored))
                .catch_unwind()
                .instrument(span)
                .await
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(HandlerError::Permanent(format!("handler panicked: {what}")))
                })?;
            *done += 1;
        }
        Ok(())
    }

    /// Acknowledges, parks or hands back the event after its outcome.
    async fn finish(&self, delivery: &Delivery, outcome: Outcome) {
        let done = match outcome {
            Outcome::Handled => {
                // A lost ack means a redelivery, which handlers take idempotently; not
                // waiting for the server's confirmation saves a round trip per event.
                if let Err(e) = delivery.message.ack().await {
                    tracing::warn!(consumer = %self.name, error = %e, "ack not sent");
                }
                true
            }
            Outcome::Park(reason) => {
                self.dead_letter(&delivery.message, &delivery.position, &reason)
                    .await
            }
            Outcome::Release => {
                self.release(&delivery.message).await;
                false
            }
            // Neither acknowledged nor handed back: the redelivery is under way already.
            Outcome::Outlived => false,
        };
        if done && delivery.source == Source::Replays {
            self.finish_replay(delivery.delivered_sequence).await;
        }
    }

    /// Hands an event back to the server for redelivery now.
    async fn release(&self, message: &Message) {
        if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
            tracing::debug!(consumer = %self.name, error = %e, "nak not sent; the ack wait will redeliver");
        }
    }

    /// Extends the ack wait of every event held longer than a third of it (a ticket
    /// waiting behind a slow send or a retry), so the server does not redeliver it
    /// meanwhile.
    ///
    /// Of a partition let go, only the event in a handler is kept: the next owner waits
    /// for it (it is out with another process) until it is done, where a redelivery would
    /// have two processes handle the ticket at once and its later events overtake the
    /// try in hand. The events queued behind it go back when it is done.
    async fn keep_alive(self: Arc<Self>) {
        let every = (self.store.config.ack_wait / 3).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let old: Vec<Arc<Delivery>> = self
                .lanes()
                .values()
                .flat_map(|lane| {
                    let kept = if self.let_go(lane.partition) {
                        usize::from(lane.head_in_hand)
                    } else {
                        lane.queue.len()
                    };
                    lane.queue.iter().take(kept)
                })
                // One whose ack wait ran out is the server's again: extending it now
                // would let this process handle it beside the one it was sent to.
                .filter(|d| d.since.elapsed() >= every && !d.outlived())
                .cloned()
                .collect();
            for delivery in old {
                match delivery.message.ack_with(AckKind::Progress).await {
                    Ok(()) => delivery.hold.kept_alive(),
                    Err(e) => {
                        tracing::debug!(consumer = %self.name, error = %e, "progress not sent")
                    }
                }
            }
        }
    }

    /// A replay that is done with (acknowledged, or parked again) leaves the replay
    /// subject, so that only waiting replays stay there.
    async fn finish_replay(&self, replay_sequence: u64) {
        let deleted = async {
            self.store
                .js
                .get_stream_no_info(self.store.layout.dead_letter_stream())
                .await
                .map_err(StoreError::unavailable)?
                .delete_message(replay_sequence)
                .await
                .map_err(StoreError::unavailable)
        }
        .await;
        if let Err(e) = deleted {
            tracing::warn!(consumer = %self.name, replay_sequence, error = %e, "handled replay not deleted");
        }
    }

    /// Parks the message on the dead-letter subject, then terminates its delivery; true
    /// when parked. If the dead letter cannot be written, the message is left to be
    /// redelivered.
    async fn dead_letter(&self, message: &Message, position: &Position, reason: &str) -> bool {
        let (sequence, delivered) = (position.sequence, position.delivered);
        let mut headers = HeaderMap::new();
        if let Some(original) = &message.headers {
            for (name, values) in original.iter() {
                if PUBLISH_CONTROL_HEADERS.contains(&name.as_ref()) {
                    continue;
                }
                for value in values {
                    headers.append(name.as_ref(), value.as_str());
                }
            }
        }
        // A replay that fails again is a new dead letter, not a duplicate of the first.
        let msg_id = match position.replay {
            None => format!("{}:{sequence}", self.name),
            Some(replay) => format!("{}:{sequence}:replay:{replay}", self.name),
        };
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        headers.insert(DEAD_LETTER_REASON_HEADER, reason);
        headers.insert(DEAD_LETTER_CONSUMER_HEADER, self.name.as_str());
        headers.insert(ORIGINAL_SUBJECT_HEADER, position.subject.as_str());
        headers.insert(ORIGINAL_SEQUENCE_HEADER, sequence.to_string().as_str());
        headers.insert(DELIVERIES_HEADER, delivered.to_string().as_str());
        let subject = self.store.layout.dead_letter_subject(&self.name);
        let published = async {
            self.store
                .js
                .publish_with_headers(subject.clone(), headers, message.payload.clone())
                .await?
                .await
        }
        .await;
        match published {
            Ok(_) => {
                tracing::error!(consumer = %self.name, sequence, %reason, dead_letter = %subject, "event dead-lettered");
                helpline_telemetry::metrics::increment(
                    "helpline_dead_letters_total",
                    "Events parked on a consumer's dead-letter subject.",
                    &[("consumer", self.name.as_str())],
                );
                if let Err(e) = message.ack_with(AckKind::Term).await {
                    tracing::warn!(error = %e, "term failed; the dead letter dedupes the redelivery");
                }
                true
            }
            Err(e) => {
                tracing::error!(consumer = %self.name, sequence, error = %e, "dead letter not written, event will be redelivered");
                let _ = message
                    .ack_with(AckKind::Nak(Some(self.store.config.retry_backoff)))
                    .await;
                false
            }
        }
    }
}

/// Where an event sits in the log, and how often this consumer was given it.
struct Position {
    subject: String,
    sequence: u64,
    delivered: i64,
    /// For a replay: its sequence in the dead-letter stream.
    replay: Option<u64>,
}

/// A restarted consumer waiting for the events another process held.
struct Settle {
    /// Redeliveries still to come.
    awaited: usize,
    deadline: tokio::time::Instant,
    since: tokio::time::Instant,
}

/// How a partition's settling ended.
#[derive(Clone, Copy)]
enum Settled {
    /// Every redelivery awaited came.
    Back,
    /// The server counts no event out with anyone else.
    NoneOut,
    /// The ack wait (and a margin) passed.
    TimedOut,
}

/// How many deliveries the server numbered between the last one this pull stream brought
/// and `message`, none of which arrived; remembers `message`'s number. A redelivery keeps
/// counting (the server numbers it anew); a number lower than the last (a new consumer
/// leader that had not heard of the last deliveries) starts counting again from it.
fn lost_before(last: &mut Option<u64>, message: &Message) -> usize {
    match message.info() {
        Ok(info) => skipped(last, info.consumer_sequence),
        Err(_) => 0,
    }
}

/// The delivery numbers skipped between `last` and `this`; remembers `this`.
fn skipped(last: &mut Option<u64>, this: u64) -> usize {
    let lost = match *last {
        Some(before) if this > before => this - before - 1,
        _ => 0,
    };
    *last = Some(this);
    usize::try_from(lost).unwrap_or(usize::MAX)
}

async fn sleep_until_or_never(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The durable consumer of one partition: `<name>-<partition>`.
pub fn partition_consumer_name(name: &str, partition: u32) -> String {
    format!("{name}-{partition}")
}

/// The ticket token of a ticket subject: its last token (`helpline.<region>.ticket.<id>`).
fn ticket_token(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or(subject)
}

/// A replay's original subject and sequence, from the dead letter's headers.
fn replayed_position(message: &Message) -> Option<(String, u64)> {
    let headers = message.headers.as_ref()?;
    let subject = headers.get(ORIGINAL_SUBJECT_HEADER)?.as_str().to_owned();
    let sequence = headers
        .get(ORIGINAL_SEQUENCE_HEADER)?
        .as_str()
        .parse()
        .ok()?;
    Some((subject, sequence))
}

/// `base · 2^(delivered-1)`, at most [`MAX_RETRY_DELAY`].
fn retry_delay(base: Duration, delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    base.saturating_mul(1 << exponent).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        let base = Duration::from_millis(200);
        assert_eq!(retry_delay(base, 1), Duration::from_millis(200));
        assert_eq!(retry_delay(base, 2), Duration::from_millis(400));
        assert_eq!(retry_delay(base, 4), Duration::from_millis(1600));
        assert_eq!(retry_delay(base, 60), MAX_RETRY_DELAY);
    }

    #[test]
    fn a_delivery_number_skipped_is_a_delivery_lost() {
        let mut last = None;
        assert_eq!(
            skipped(&mut last, 7),
            0,
            "the first delivery a stream brings"
        );
        assert_eq!(skipped(&mut last, 8), 0);
        assert_eq!(skipped(&mut last, 11), 2, "9 and 10 never arrived");
        assert_eq!(skipped(&mut last, 12), 0);
    }

    #[test]
    fn a_delivery_number_going_back_starts_counting_again_from_it() {
        // A new consumer leader that had not heard of the last deliveries numbers again
        // from where it knows.
        let mut last = Some(40);
        assert_eq!(skipped(&mut last, 35), 0);
        assert_eq!(skipped(&mut last, 36), 0);
        assert_eq!(skipped(&mut last, 38), 1);
    }
}
