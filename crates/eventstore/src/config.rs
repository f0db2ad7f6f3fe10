use std::time::Duration;

use crate::seal::MasterKey;

/// How the event store is set up and behaves. Defaults suit `helpline dev` and tests;
/// production raises `replicas` to 3.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    /// The region (country code), lower case: `de`.
    pub region: String,
    /// Stream and bucket replicas: 1 locally, 3 in production.
    pub replicas: usize,
    /// How long JetStream remembers `Nats-Msg-Id`s for dedupe (at least two minutes).
    pub duplicate_window: Duration,
    /// The largest event, in bytes.
    pub max_message_size: i32,
    /// How often a consumer gets an event before it is dead-lettered.
    pub max_deliver: i64,
    /// How long a consumer may hold an event before JetStream redelivers it.
    pub ack_wait: Duration,
    /// Delay before the first retry of a failed event; doubled per attempt.
    pub retry_backoff: Duration,
    /// How long a transient failure (NATS or a provider not answering) is retried in
    /// place, `max_deliver` tries or more, before the event is dead-lettered: longer than
    /// a leader election or a whole cluster's restart, so that an outage parks nothing.
    pub retry_for: Duration,
    /// Events in flight per consumer: delivered to a process and not yet acknowledged.
    pub max_ack_pending: i64,
    /// Tickets a consumer handles at once, each one event at a time.
    pub tickets_in_flight: usize,
    /// Partitions of every service's consumer over all tickets; the processes running a
    /// service share them out, one process per partition at a time (at most 64).
    pub partitions: u32,
    /// A load that folded this many events after the snapshot writes a new snapshot.
    pub snapshot_every: u64,
    /// Customers whose data key one process keeps in memory (about 200 bytes each); a
    /// full cache forgets an eighth of them. A service replaying the whole log (query,
    /// feedback, assignment) wants every customer's key: set it above the customer count.
    pub key_cache_limit: usize,
    /// How long one request to the server may take.
    pub request_timeout: Duration,
    /// Wraps the customers' data keys. The default is the public development key;
    /// deployments set their own from a secret.
    pub master_key: MasterKey,
}

impl StoreConfig {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            ..Self::default()
        }
    }

    /// The partitions each consumer over every ticket runs: `partitions`, within 1 and
    /// the subjects' slot count.
    pub fn partition_count(&self) -> u32 {
        self.partitions.clamp(1, crate::layout::TICKET_SLOTS)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            region: "de".to_owned(),
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_message_size: 1024 * 1024,
            max_deliver: 5,
            ack_wait: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(200),
            retry_for: Duration::from_secs(60),
            max_ack_pending: 4096,
            tickets_in_flight: 256,
            partitions: 8,
            snapshot_every: 32,
            key_cache_limit: 1_000_000,
            request_timeout: Duration::from_secs(5),
            master_key: MasterKey::development(),
        }
    }
}
