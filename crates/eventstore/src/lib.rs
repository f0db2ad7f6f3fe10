//! The event store: helpline's only store, on NATS JetStream.
//!
//! - [`EventStore::ensure`] creates or updates the region's stream, dead-letter stream and
//!   KV buckets ([`layout`] names them); [`EventStore::open`] uses what exists.
//! - [`EventStore::append`] writes a command's events to the ticket's subject as one
//!   message, with optimistic concurrency and dedupe ([`append`]).
//! - [`EventStore::load`] rebuilds a ticket from a KV snapshot plus the events after it,
//!   read by batch Direct Get ([`load`]).
//! - [`EventStore::subscribe`] is the one consumer runtime: many tickets at once, one
//!   event at a time per ticket, partitions shared across processes, retries and a
//!   dead-letter subject for poison events ([`subscribe`]).
//! - [`EventStore::follow`] keeps an in-memory view live from the log: the one follower
//!   behind the query projection, the CSAT report and the assignment view ([`follow`]).
//! - [`EventStore::react`] appends a service's answer to an event exactly once ([`react`]).
//! - [`codec`] converts domain events to and from the `helpline.v1.EventEnvelope` contract;
//!   [`seal`] seals their personal fields under a data key per customer, which the key
//!   bucket holds wrapped by the region's master key; [`EventStore::erase_customer_key`]
//!   purges one, after which the customer's fields read as erased.
//!
//! **Invariants.**
//! - Every append carries `Nats-Expected-Last-Subject-Sequence`; a retry of the same command
//!   never writes twice and never reports a false conflict.
//! - A command's events are stored all together or not at all.
//! - Loading a ticket never scans the stream and never creates a consumer.
//! - A consumer acknowledges an event only after its handler returned; an event the
//!   handler cannot take is parked on the dead-letter subject with the reason, never
//!   dropped, and never blocks the events behind it.
//! - Nothing here panics on bytes read from the network.
//! - No personal value is ever written in plaintext: an event's personal fields are sealed
//!   before it is published, and snapshots are sealed whole. A data key never leaves the
//!   process unwrapped, and never appears in a subject, header, log line or metric.

#![forbid(unsafe_code)]

pub mod append;
mod blocks;
pub mod chain;
pub mod codec;
mod config;
pub mod consent;
mod customers;
mod direct;
mod error;
pub mod execute;
pub mod follow;
mod hot;
mod keys;
pub mod layout;
pub mod links;
pub mod live;
pub mod load;
mod members;
pub mod outbound;
pub mod react;
pub mod seal;
mod sharded;
pub mod subscribe;
mod xchacha;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use helpline_domain::TicketId;

pub use append::{Appended, CommandMeta};
pub use codec::{EnvelopeMeta, SCHEMA_VERSION};
pub use config::StoreConfig;
pub use customers::{DecodeError, Kept};
pub use error::StoreError;
pub use execute::{ExecuteError, Executed};
pub use follow::{Content, Follower, LogEntry, LogReader, Subjects};
pub use layout::Layout;
pub use live::{Fold, Live};
pub use load::LoadedTicket;
pub use react::{Cause, Reacted, reaction_id};
pub use seal::{BlockId, CustomerId, KeyRef, MasterKey, ProviderRef};
pub use subscribe::{Applied, Backlog, HandlerError, Hold, StoredEvent, Subscription};

/// A region's event store: one connection, the stream and the buckets.
#[derive(Clone, Debug)]
pub struct EventStore {
    client: async_nats::Client,
    js: jetstream::Context,
    layout: Layout,
    config: StoreConfig,
    snapshots: kv::Store,
    keys: Arc<keys::CustomerKeys>,
    /// Ticket → customer, so an append to a known ticket finds its key without a read.
    customers: Arc<Mutex<HashMap<TicketId, CustomerId>>>,
    /// Tickets kept hot ([`hot`]).
    hot: hot::HotTickets,
    /// Batch Direct Gets on the event stream, over one reply subscription.
    direct: Arc<direct::DirectGets>,
}

impl EventStore {
    /// Creates or updates the region's streams and buckets, then opens the store.
    /// Idempotent: a second run with the same config changes nothing.
    pub async fn ensure(
        client: async_nats::Client,
        config: StoreConfig,
    ) -> Result<Self, StoreError> {
        let layout = Layout::new(&config.region)?;
        let js = jetstream::new(client.clone());
        js.create_or_update_stream(event_stream_config(&layout, &config))
            .await
            .map_err(|e| StoreError::setup(layout.event_stream(), e))?;
        js.create_or_update_stream(dead_letter_stream_config(&layout, &config))
            .await
            .map_err(|e| StoreError::setup(layout.dead_letter_stream(), e))?;
        js.create_or_update_stream(widget_stream_config(&layout, &config))
            .await
            .map_err(|e| StoreError::setup(layout.widget_stream(), e))?;
        let uploads = layout.widget_uploads_bucket();
        if js.get_object_store(&uploads).await.is_err() {
            js.create_object_store(jetstream::object_store::Config {
                bucket: uploads.clone(),
                description: Some(format!(
                    "helpline {}: files customers attached in the web-chat widget, sealed, \
                     until ingress fetched them",
                    layout.region()
                )),
                max_age: layout::WIDGET_UPLOAD_LIFETIME,
                max_bytes: 1024 * 1024 * 1024,
                storage: StorageType::File,
                num_replicas: config.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::setup(&uploads, e))?;
        }
        // The two buckets `open` checks are made last, after the members bucket: a process
        // that starts while `ensure` runs waits while `open` fails, so it must not succeed
        // before everything exists (feedback once failed on a members bucket not made yet).
        let opened_by_open = [layout.snapshots_bucket(), layout.customer_keys_bucket()];
        let (last, first): (Vec<String>, Vec<String>) = layout
            .buckets()
            .into_iter()
            .partition(|bucket| opened_by_open.contains(bucket));
        for bucket in &first {
            make_bucket(&js, &layout, &config, bucket).await?;
        }
        let members = layout.members_bucket();
        js.create_or_update_key_value(kv::Config {
            bucket: members.clone(),
            description: format!(
                "helpline {}: heartbeats of the processes sharing each consumer's partitions",
                layout.region()
            ),
            history: 1,
            // Heartbeats only: a dead process's key goes away by itself.
            max_age: members::BUCKET_MAX_AGE,
            storage: StorageType::File,
            num_replicas: config.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| StoreError::setup(&members, e))?;
        for bucket in &last {
            make_bucket(&js, &layout, &config, bucket).await?;
        }
        Self::open(client, config).await
    }

    /// Opens a store whose streams and buckets exist (made by [`EventStore::ensure`]).
    pub async fn open(client: async_nats::Client, config: StoreConfig) -> Result<Self, StoreError> {
        let layout = Layout::new(&config.region)?;
        let js = jetstream::new(client.clone());
        let snapshots = js
            .get_key_value(layout.snapshots_bucket())
            .await
            .map_err(|e| StoreError::missing(layout.snapshots_bucket(), e))?;
        let keys = js
            .get_key_value(layout.customer_keys_bucket())
            .await
            .map_err(|e| StoreError::missing(layout.customer_keys_bucket(), e))?;
        let hot = hot::HotTickets::default();
        let events = js
            .get_stream_no_info(layout.event_stream())
            .await
            .map_err(|e| StoreError::missing(layout.event_stream(), e))?;
        let keys = Arc::new(keys::CustomerKeys::new(
            js.clone(),
            keys,
            events,
            layout.clone(),
            config.master_key.clone(),
            hot.clone(),
            config.key_cache_limit,
        ));
        let direct = Arc::new(direct::DirectGets::new(&client, layout.event_stream()).await?);
        Ok(Self {
            client,
            js,
            layout,
            config,
            snapshots,
            keys,
            // At its full size from the start, as the hot tickets are: growing it would
            // rehash every entry under the lock every append of the process waits on.
            customers: Arc::new(Mutex::new(HashMap::with_capacity(
                customers::TICKETS_REMEMBERED,
            ))),
            hot,
            direct,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The same store, whose consumers try a failing event `max_deliver` times, from
    /// `retry_backoff` on: for a consumer whose failures outlast the others' (a provider's
    /// media server down for minutes). Everything else is shared with `self`.
    pub fn with_consumer_retries(&self, max_deliver: i64, retry_backoff: Duration) -> Self {
        let mut store = self.clone();
        store.config.max_deliver = max_deliver;
        store.config.retry_backoff = retry_backoff;
        store
    }
}

fn event_stream_config(layout: &Layout, config: &StoreConfig) -> stream::Config {
    stream::Config {
        name: layout.event_stream().to_owned(),
        description: Some(format!(
            "helpline event log for region {}: one subject per ticket and per agent",
            layout.region()
        )),
        subjects: layout.event_subjects(),
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: config.replicas,
        discard: DiscardPolicy::New,
        duplicate_window: config.duplicate_window,
        max_message_size: config.max_message_size,
        allow_direct: true,
        allow_atomic_publish: true,
        ..Default::default()
    }
}

fn widget_stream_config(layout: &Layout, config: &StoreConfig) -> stream::Config {
    stream::Config {
        name: layout.widget_stream(),
        description: Some(format!(
            "helpline web-chat widget conversations for region {}: what each session's \
             customer sees, sealed, kept a week",
            layout.region()
        )),
        subjects: vec![layout.widget_subjects()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: config.replicas,
        max_age: layout::WIDGET_HISTORY,
        duplicate_window: config.duplicate_window,
        max_message_size: 64 * 1024,
        ..Default::default()
    }
}

fn dead_letter_stream_config(layout: &Layout, config: &StoreConfig) -> stream::Config {
    stream::Config {
        name: layout.dead_letter_stream().to_owned(),
        description: Some(format!(
            "helpline dead letters for region {}: events a consumer could not handle, and \
             those sent back to it for another try",
            layout.region()
        )),
        subjects: vec![layout.dead_letter_subjects(), layout.replay_subjects()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas: config.replicas,
        duplicate_window: config.duplicate_window,
        // A dead letter carries the original event plus headers, so it may be a little
        // larger than the event itself.
        max_message_size: config.max_message_size.saturating_add(64 * 1024),
        allow_direct: true,
        ..Default::default()
    }
}

/// Makes (or updates) one of the region's plain buckets: one revision per key, on file.
async fn make_bucket(
    js: &jetstream::Context,
    layout: &Layout,
    config: &StoreConfig,
    bucket: &str,
) -> Result<(), StoreError> {
    js.create_or_update_key_value(kv::Config {
        bucket: bucket.to_owned(),
        description: format!("helpline {} {bucket}", layout.region()),
        history: 1,
        storage: StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    })
    .await
    .map_err(|e| StoreError::setup(bucket, e))?;
    Ok(())
}
