//! Customers' data keys, in the region's key bucket (`helpline-<region>-customer-keys`,
//! history 1), wrapped by the master key. A customer's key is kept in one of two ways:
//!
//! - **made ahead, in a block** (`block.<id>`, [`crate::blocks`]): what a new customer's
//!   first event is sealed under. That event is the claim of the customer's first ticket
//!   and names the slot, so it also binds the key to the customer: one write, not a key's
//!   create and then an append. Readers find the key by the slot an envelope names; a
//!   lookup by customer reads the first event of their first ticket for it.
//! - **their own entry**, under their pseudonym: every key made before blocks, and a key
//!   made for a customer whose first write is not a ticket's claim (a web-chat page
//!   keeping a message before it reaches intake), or who returns after an erasure.
//!
//! A customer may have one of each; erasure purges both, and every sealed value names the
//! id of the key that sealed it, so each opens with the right one.
//!
//! Keys are cached per process. The cache follows the bucket: a watcher takes every change
//! as it comes — a key created elsewhere is cached as the watch delivers it, an erased one
//! (an entry purged, a slot blanked) is evicted — so an erasure reaches every process
//! within a round trip, and until the watcher runs nothing is cached at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::OnceCell;

use crate::blocks::{self, SLOTS, Slot, StoredBlock};
use crate::error::StoreError;
use crate::hot::HotTickets;
use crate::layout::Layout;
use crate::seal::{BlockId, CustomerId, DataKey, KeyRef, MasterKey};
use crate::sharded::Sharded;

/// The header a KV bucket's stream marks deletes and purges with (`DEL`, `PURGE`).
const KV_OPERATION_HEADER: &str = "KV-Operation";
/// Tries at rewriting a block that other erasures keep changing.
const ERASE_TRIES: usize = 16;

/// A block's keys as this process read them; an erased slot is `None`.
#[derive(Clone)]
struct Block {
    keys: Vec<Option<Arc<DataKey>>>,
}

impl Block {
    fn key(&self, slot: u16) -> Option<Arc<DataKey>> {
        self.keys.get(usize::from(slot)).cloned().flatten()
    }
}

/// What one process knows of the key bucket.
#[derive(Default)]
struct Cache {
    /// Customers' own keys, or that they have none. Hashed by foldhash: pseudonyms are
    /// HMAC outputs nobody can aim at one bucket, and every opened message looks one up
    /// (SipHash was a visible share of a replay).
    keys: Sharded<CustomerId, Option<Arc<DataKey>>>,
    /// Keys this process created, by the revision of their entry: the watcher's news of
    /// that very entry changes nothing, so a new customer's key is not read back.
    created: Sharded<CustomerId, u64>,
    /// Customers whose key the watcher saw purged: a key created just before is not
    /// cached after it.
    purged: std::collections::HashSet<CustomerId>,
    /// Blocks of keys made ahead, as read or made here.
    blocks: Sharded<BlockId, Arc<Block>>,
    /// The slot each customer's first event named, as this process learned it (from an
    /// event it opened or a claim it stored): their key made ahead.
    slots: Sharded<CustomerId, KeyRef>,
    /// Blocks the watcher saw rewritten (a slot erased) or removed: a preload that read
    /// one before that does not cache what it read.
    rewritten: std::collections::HashSet<BlockId>,
}

impl Cache {
    fn clear(&mut self) {
        *self = Self::default();
    }

    /// Makes room for one more key under `limit`: a full cache forgets an eighth of its
    /// keys (whichever the map yields first), not all of them, so a replay over more
    /// customers than fit reads back only the keys it lost.
    fn make_room(&mut self, limit: usize) {
        for customer in forget_an_eighth(&mut self.keys, limit) {
            self.created.remove(&customer);
        }
    }

    /// Makes room for one more block, counting each as [`SLOTS`] keys against `limit`,
    /// and for one more customer's slot.
    fn make_room_for_block(&mut self, limit: usize) {
        forget_an_eighth(&mut self.blocks, (limit / SLOTS).max(2));
        forget_an_eighth(&mut self.slots, limit);
    }

    /// The customer's key made ahead, when this process knows it.
    fn slot_key(&self, customer: &CustomerId) -> Option<(Arc<DataKey>, KeyRef)> {
        let at = *self.slots.get(customer)?;
        let key = self.blocks.get(&at.block)?.key(at.slot)?;
        Some((key, at))
    }

    /// Takes in a block's erasures: the erased slots' keys are gone, and so is what this
    /// process knew of their customers. Returns the customers whose hot tickets go too:
    /// every customer erased from the block so far, since which of them are new is not
    /// known when the block is not cached (dropping them again finds nothing).
    fn erased_in(&mut self, block: BlockId, stored: &StoredBlock<'_>) -> Vec<CustomerId> {
        let mut erased = Vec::new();
        if let Some(cached) = self.blocks.get_mut(&block) {
            let cached = Arc::make_mut(cached);
            for (slot, content) in stored.slots().enumerate() {
                if let Slot::Erased(_) = content
                    && let Some(key) = cached.keys.get_mut(slot)
                {
                    *key = None;
                }
            }
        }
        for content in stored.slots() {
            if let Slot::Erased(Some(customer)) = content {
                self.slots.remove(&customer);
                erased.push(customer);
            }
        }
        self.note_rewritten(block);
        erased
    }

    fn note_rewritten(&mut self, block: BlockId) {
        if self.rewritten.len() >= 100_000 {
            self.rewritten.clear();
        }
        self.rewritten.insert(block);
    }
}

/// The blocks this process hands slots out of.
#[derive(Default)]
struct Ahead {
    /// The block slots are taken from, and its next free slot.
    current: Option<(BlockId, Arc<Block>, usize)>,
    /// The block made while the current one runs low.
    next: Option<(BlockId, Arc<Block>)>,
    /// Whether a task is making the next block.
    making_next: bool,
}

impl Ahead {
    /// The next free slot's key, and whether to start making the next block.
    fn take(&mut self) -> Option<(Arc<DataKey>, KeyRef, bool)> {
        loop {
            if let Some((block, keys, next)) = self.current.as_mut()
                && *next < SLOTS
            {
                let slot = *next;
                *next += 1;
                let at = blocks::slot_at(*block, slot);
                let key = keys.key(at.slot)?;
                // Half the block left: under a stall a block took 10–17 ms to make, and a
                // quarter left (13 ms of new customers at 10 000/s) made a thousand claims
                // wait for it.
                let low = SLOTS - *next < SLOTS / 2;
                let start = low && self.next.is_none() && !self.making_next;
                self.making_next |= start;
                return Some((key, at, start));
            }
            let (block, keys) = self.next.take()?;
            self.current = Some((block, keys, 0));
        }
    }

    /// Takes a block just made: as the current one if that is used up, else as the next.
    fn add(&mut self, block: BlockId, keys: Arc<Block>) {
        let used_up = self
            .current
            .as_ref()
            .is_none_or(|(_, _, next)| *next >= SLOTS);
        if used_up {
            self.current = Some((block, keys, 0));
        } else if self.next.is_none() {
            self.next = Some((block, keys));
        }
    }
}

pub(crate) struct CustomerKeys {
    js: async_nats::jetstream::Context,
    bucket: kv::Store,
    /// The region's event stream: where a customer's first event names their slot.
    events: async_nats::jetstream::stream::Stream<()>,
    layout: Layout,
    master: MasterKey,
    cache: Arc<Mutex<Cache>>,
    watching: Arc<AtomicBool>,
    /// Counts the bucket's changes seen: a key read before a change is not cached after it.
    changes: Arc<AtomicU64>,
    watcher: OnceCell<tokio::task::AbortHandle>,
    /// Tickets kept hot, dropped with their customer's key.
    hot: HotTickets,
    /// Keys kept at most.
    limit: usize,
    /// Whether a preload is reading the bucket now, and its progress: a key missing from
    /// the cache meanwhile is most likely still on its way, so [`CustomerKeys::get`]
    /// waits for it rather than reading it on its own.
    preload: Arc<Preload>,
    ahead: Mutex<Ahead>,
    /// Held while a block is made for a claim that found no free slot, so that claims
    /// arriving together make one block, not one each.
    making: tokio::sync::Mutex<()>,
    /// Blocks being read now, each with its turn: readers of one block read it once.
    reading: Mutex<HashMap<BlockId, Arc<tokio::sync::Mutex<()>>>>,
}
/// A preload's state, shared with the task that reads the bucket.
#[derive(Default)]
struct Preload {
    running: AtomicBool,
    progress: tokio::sync::Notify,
}

impl Preload {
    /// What `look` finds, looking again each time a running preload reports progress,
    /// until it finds something, the preload ends, or the preload reports nothing for
    /// [`PRELOAD_PATIENCE`].
    async fn wait_for<T>(&self, look: impl Fn() -> Option<T>) -> Option<T> {
        loop {
            // Registered before the look, so progress made in between is not missed.
            let progress = self.progress.notified();
            if let Some(found) = look() {
                return Some(found);
            }
            if !self.running.load(Ordering::Acquire) {
                return None;
            }
            if tokio::time::timeout(PRELOAD_PATIENCE, progress)
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Tells waiting readers to look again.
    fn report(&self) {
        self.progress.notify_waiters();
    }
}

/// Keys a preload reads between its reports of progress to waiting readers.
const PRELOAD_REPORT_EVERY: usize = 512;
/// How long a reader waits for a preload that reports no progress before it reads the key
/// itself: a preload that stalls must not stall the readers.
const PRELOAD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for CustomerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerKeys")
            .field("bucket", &self.bucket.name)
            .finish_non_exhaustive()
    }
}

impl Drop for CustomerKeys {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.get() {
            watcher.abort();
        }
    }
}

impl CustomerKeys {
    pub(crate) fn new(
        js: async_nats::jetstream::Context,
        bucket: kv::Store,
        events: async_nats::jetstream::stream::Stream<()>,
        layout: Layout,
        master: MasterKey,
        hot: HotTickets,
        limit: usize,
    ) -> Self {
        Self {
            js,
            bucket,
            events,
            layout,
            master,
            hot,
            limit,
            cache: Arc::default(),
            watching: Arc::default(),
            changes: Arc::default(),
            watcher: OnceCell::new(),
            preload: Arc::default(),
            ahead: Mutex::default(),
            making: tokio::sync::Mutex::new(()),
            reading: Mutex::default(),
        }
    }

    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The customer's own key (their entry under their pseudonym); `None` when they have
    /// none (never had one, or erased). What opens an event that names no slot.
    pub(crate) async fn get(
        &self,
        customer: &CustomerId,
    ) -> Result<Option<Arc<DataKey>>, StoreError> {
        self.watch().await;
        if let Some(cached) = self.cached_or_preloaded(customer).await {
            return Ok(cached);
        }
        let seen = self.changes.load(Ordering::Acquire);
        let wrapped = self.read_entry(customer.as_str()).await?;
        let key = match wrapped {
            Some(wrapped) => Some(Arc::new(
                self.master
                    .unwrap_key(customer, &wrapped)
                    .map_err(|e| StoreError::Key(format!("customer {customer}: {e}")))?,
            )),
            None => None,
        };
        self.remember(customer, key.clone(), seen);
        Ok(key)
    }

    /// The key in slot `at`, which an event of `customer` names; `None` when it was
    /// erased. Remembers that it is the customer's, for sealing their next events.
    pub(crate) async fn get_at(
        &self,
        customer: &CustomerId,
        at: KeyRef,
    ) -> Result<Option<Arc<DataKey>>, StoreError> {
        let key = self.key_at(at).await?;
        if key.is_some() {
            self.bind(customer, at);
        }
        Ok(key)
    }

    /// The key kept in slot `at`, without learning whose it is: what a reader that never
    /// seals needs, since every event sealed under a slot's key names the slot.
    pub(crate) async fn key_at(&self, at: KeyRef) -> Result<Option<Arc<DataKey>>, StoreError> {
        Ok(self
            .block(at.block)
            .await?
            .and_then(|block| block.key(at.slot)))
    }

    /// A key to seal the customer's new data under, and its slot when it was made ahead;
    /// `None` when they have none (never had one, or erased).
    pub(crate) async fn sealing_key(
        &self,
        customer: &CustomerId,
    ) -> Result<Option<(Arc<DataKey>, Option<KeyRef>)>, StoreError> {
        self.watch().await;
        {
            let cache = lock(&self.cache);
            if let Some((key, at)) = cache.slot_key(customer) {
                return Ok(Some((key, Some(at))));
            }
            if let Some(Some(key)) = cache.keys.get(customer) {
                return Ok(Some((key.clone(), None)));
            }
        }
        if let Some(key) = self.get(customer).await? {
            return Ok(Some((key, None)));
        }
        match self.slot_named_for(customer, Reader::Any).await? {
            Some(at) => Ok(self.get_at(customer, at).await?.map(|key| (key, Some(at)))),
            None => Ok(None),
        }
    }

    /// The customer's key whose id is `key_id` (what a sealed value names): their own or
    /// the one made ahead for them; `None` when neither is it (erased).
    pub(crate) async fn opening_key(
        &self,
        customer: &CustomerId,
        key_id: u32,
    ) -> Result<Option<Arc<DataKey>>, StoreError> {
        self.watch().await;
        let is_it = |key: &Arc<DataKey>| key.id() == key_id;
        {
            let cache = lock(&self.cache);
            if let Some((key, _)) = cache.slot_key(customer).filter(|(key, _)| is_it(key)) {
                return Ok(Some(key));
            }
            if let Some(Some(key)) = cache.keys.get(customer)
                && is_it(key)
            {
                return Ok(Some(key.clone()));
            }
        }
        if let Some(key) = self.get(customer).await?.filter(is_it) {
            return Ok(Some(key));
        }
        match self.slot_named_for(customer, Reader::Any).await? {
            Some(at) => Ok(self.get_at(customer, at).await?.filter(is_it)),
            None => Ok(None),
        }
    }

    /// The slot the first event of the customer's first ticket names: their key made
    /// ahead, if it was. `Reader::Leader` asks the stream's leader, for an erasure that
    /// must not miss it on a replica behind.
    async fn slot_named_for(
        &self,
        customer: &CustomerId,
        reader: Reader,
    ) -> Result<Option<KeyRef>, StoreError> {
        let subject = self
            .layout
            .ticket_subject(crate::chain::first_ticket(customer));
        let first = match reader {
            Reader::Any => match self.events.direct_get_first_for_subject(&subject).await {
                Ok(message) => Some(message.payload),
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                    self.first_from_leader(&subject).await?
                }
                Err(e) => {
                    return Err(StoreError::unavailable(format!(
                        "first event of customer {customer}: {e}"
                    )));
                }
            },
            Reader::Leader => self.first_from_leader(&subject).await?,
        };
        let Some(first) = first else {
            return Ok(None);
        };
        Ok(crate::codec::parse(&first)
            .ok()
            .filter(|parsed| parsed.customer() == Some(customer))
            .and_then(|parsed| parsed.key_ref()))
    }

    async fn first_from_leader(&self, subject: &str) -> Result<Option<Bytes>, StoreError> {
        match self
            .events
            .get_first_raw_message_by_subject(subject, 1)
            .await
        {
            Ok(message) => Ok(Some(message.payload)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(StoreError::unavailable(format!(
                "first event of {subject}: {e}"
            ))),
        }
    }

    /// A block's keys: cached, brought by a running preload, or read.
    async fn block(&self, block: BlockId) -> Result<Option<Arc<Block>>, StoreError> {
        self.watch().await;
        let cached = || lock(&self.cache).blocks.get(&block).cloned();
        if let Some(cached) = self.preload.wait_for(cached).await {
            return Ok(Some(cached));
        }
        // One read of a block at a time: the first messages of a new block's customers
        // come together, on many lanes at once, and each would read the block and unwrap
        // its 512 keys (up to 141 times for one block, under the bench's end-to-end
        // load). The others wait for the first and find it cached.
        let turn = lock(&self.reading).entry(block).or_default().clone();
        let read = async {
            let _turn = turn.lock().await;
            match cached() {
                Some(cached) => Ok(Some(cached)),
                None => self.read_block(block).await,
            }
        }
        .await;
        let mut reading = lock(&self.reading);
        // The map's and this call's: no one else waits for this block.
        if Arc::strong_count(&turn) == 2 {
            reading.remove(&block);
        }
        read
    }

    /// Reads and opens a block, caching it unless the bucket changed meanwhile.
    async fn read_block(&self, block: BlockId) -> Result<Option<Arc<Block>>, StoreError> {
        let seen = self.changes.load(Ordering::Acquire);
        let stored = self.read_entry(&block.bucket_key()).await?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let keys = Arc::new(self.open_block(block, &stored)?);
        let mut cache = lock(&self.cache);
        if self.watching.load(Ordering::Acquire) && self.changes.load(Ordering::Acquire) == seen {
            cache.make_room_for_block(self.limit);
            cache.blocks.insert(block, keys.clone());
        }
        Ok(Some(keys))
    }

    /// Unwraps a stored block's keys.
    fn open_block(&self, block: BlockId, stored: &[u8]) -> Result<Block, StoreError> {
        let stored = StoredBlock::parse(stored)
            .map_err(|e| StoreError::Key(format!("block {block}: {e}")))?;
        let mut keys = Vec::with_capacity(SLOTS);
        for (slot, content) in stored.slots().enumerate() {
            keys.push(match content {
                Slot::Key(wrapped) => {
                    let at = blocks::slot_at(block, slot);
                    Some(Arc::new(
                        self.master
                            .unwrap_slot(at, wrapped)
                            .map_err(|e| StoreError::Key(format!("key {at}: {e}")))?,
                    ))
                }
                Slot::Erased(_) => None,
            });
        }
        Ok(Block { keys })
    }

    /// Remembers that slot `at` holds the customer's key (an event of theirs named it).
    pub(crate) fn bind(&self, customer: &CustomerId, at: KeyRef) {
        let mut cache = lock(&self.cache);
        if !self.watching.load(Ordering::Acquire) || cache.slots.get(customer) == Some(&at) {
            return;
        }
        cache.make_room_for_block(self.limit);
        cache.slots.insert(customer.clone(), at);
    }

    /// A key made ahead for a new customer's first event, and the slot it is kept in,
    /// which that event must name. The slot is this call's alone, whether or not the event
    /// is ever stored (an event that might have been stored binds it; one never stored
    /// only wastes it), so two customers never share a key.
    pub(crate) async fn claim(self: &Arc<Self>) -> Result<(Arc<DataKey>, KeyRef), StoreError> {
        self.watch().await;
        if let Some(taken) = self.take_ahead() {
            return Ok(taken);
        }
        // No slot left: this claim waits for a block, and so does every new customer's
        // first message in this process meanwhile.
        let waited = std::time::Instant::now();
        loop {
            let _making = self.making.lock().await;
            if let Some(taken) = self.take_ahead() {
                tracing::debug!(
                    ms = waited.elapsed().as_millis(),
                    "a new customer's key waited for a block of keys"
                );
                return Ok(taken);
            }
            let (block, keys) = self.make_block().await?;
            lock(&self.ahead).add(block, keys);
        }
    }

    /// A free slot of this process's blocks, starting the next block's making when the
    /// current one runs low.
    fn take_ahead(self: &Arc<Self>) -> Option<(Arc<DataKey>, KeyRef)> {
        let (key, at, start) = lock(&self.ahead).take()?;
        if start {
            let keys = self.clone();
            tokio::spawn(async move {
                let made = keys.make_block().await;
                let mut ahead = lock(&keys.ahead);
                ahead.making_next = false;
                match made {
                    Ok((block, made)) => ahead.add(block, made),
                    Err(e) => {
                        tracing::warn!(error = %e, "the next block of customer keys was not made; the next claim makes it")
                    }
                }
            });
        }
        Some((key, at))
    }

    /// Makes a block of keys and stores it (a KV create, so two processes never make the
    /// same block).
    async fn make_block(&self) -> Result<(BlockId, Arc<Block>), StoreError> {
        let started = std::time::Instant::now();
        let mut last = None;
        for _ in 0..3 {
            let block = BlockId::generate();
            // 512 keys drawn and wrapped take about a millisecond: off the workers that
            // answer webhooks.
            let master = self.master.clone();
            let (keys, value) = tokio::task::spawn_blocking(move || blocks::draw(&master, block))
                .await
                .map_err(|e| StoreError::unavailable(format!("block of keys {block}: {e}")))?
                .map_err(|e| StoreError::Key(format!("block {block}: {e}")))?;
            match self.bucket.create(block.bucket_key(), value.into()).await {
                Ok(_) => {
                    let keys = Arc::new(Block {
                        keys: keys.into_iter().map(|key| Some(Arc::new(key))).collect(),
                    });
                    let mut cache = lock(&self.cache);
                    if self.watching.load(Ordering::Acquire) {
                        cache.make_room_for_block(self.limit);
                        cache.blocks.insert(block, keys.clone());
                    }
                    tracing::debug!(
                        %block,
                        ms = started.elapsed().as_millis(),
                        "block of customer keys made"
                    );
                    return Ok((block, keys));
                }
                // Another process drew the same id (one in 2^64): draw again.
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(StoreError::unavailable(format!("block of keys: {e}")));
                }
            }
        }
        Err(StoreError::unavailable(format!(
            "block of keys: {}",
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// An entry's value as any replica has it, confirmed by the leader when the replica
    /// has none (see [`CustomerKeys::read_from_leader`]); `None` when there is none.
    async fn read_entry(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self
            .bucket
            .entry(key)
            .await
            .map_err(|e| StoreError::unavailable(format!("customer keys, {key}: {e}")))?
        {
            Some(entry) if entry.operation == Operation::Put => Ok(Some(entry.value)),
            _ => Ok(self.read_from_leader(key).await?.map(|(value, _)| value)),
        }
    }

    /// An entry as the bucket's leader has it, with its revision. A KV read may be
    /// answered by any replica (direct get), and a replica behind the leader does not
    /// have a key created a moment ago yet; a customer whose events are being read has had
    /// a key, so before "no key" is taken for an erasure (and remembered) the leader
    /// confirms it.
    async fn read_from_leader(&self, key: &str) -> Result<Option<(Bytes, u64)>, StoreError> {
        let subject = format!("{}{key}", self.bucket.prefix);
        match self
            .bucket
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(message) => {
                let operation = message
                    .headers
                    .get(KV_OPERATION_HEADER)
                    .map(|value| value.as_str().to_owned());
                Ok(match operation.as_deref() {
                    None | Some("PUT") => Some((message.payload, message.sequence)),
                    // DEL or PURGE: erased.
                    Some(_) => None,
                })
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(StoreError::unavailable(format!(
                "customer keys (leader): {e}"
            ))),
        }
    }

    /// The cached key, waiting for a running preload to bring it while the preload makes
    /// progress; `None` when it is not cached after all.
    async fn cached_or_preloaded(&self, customer: &CustomerId) -> Option<Option<Arc<DataKey>>> {
        self.preload
            .wait_for(|| lock(&self.cache).keys.get(customer).cloned())
            .await
    }

    /// Reads every key of the bucket into the cache at once (one ordered consumer rather
    /// than a read per customer or block): for replaying the whole log. Returns how many.
    pub(crate) async fn preload(&self) -> Result<usize, StoreError> {
        self.watch().await;
        let unavailable =
            |e: &dyn std::fmt::Display| StoreError::unavailable(format!("customer keys: {e}"));
        // The watch must run first, else a key purged meanwhile could stay cached.
        for _ in 0..100 {
            if self.watching.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if !self.watching.load(Ordering::Acquire) {
            return Ok(0);
        }
        let stored = self
            .js
            .get_stream(format!("KV_{}", self.bucket.name))
            .await
            .map_err(|e| unavailable(&e))?
            .info()
            .await
            .map_err(|e| unavailable(&e))?
            .state
            .messages;
        if stored == 0 {
            return Ok(0);
        }
        let mut entries = self
            .bucket
            .watch_with_history(">")
            .await
            .map_err(|e| unavailable(&e))?;
        let mut loaded = 0;
        let mut reported = 0;
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(|e| unavailable(&e))?;
            if entry.operation == Operation::Put {
                if let Some(block) = BlockId::from_bucket_key(&entry.key) {
                    if let Ok(keys) = self.open_block(block, &entry.value) {
                        loaded += self.remember_preloaded_block(block, keys);
                    }
                } else if let Some(customer) = CustomerId::parse(&entry.key)
                    && let Ok(key) = self.master.unwrap_key(&customer, &entry.value)
                    && self.remember_preloaded(customer, Arc::new(key))
                {
                    loaded += 1;
                }
                if loaded >= reported + PRELOAD_REPORT_EVERY {
                    reported = loaded;
                    self.preload.report();
                }
            }
            if entry.delta == 0 || loaded >= self.limit {
                break;
            }
        }
        Ok(loaded)
    }

    /// Starts [`CustomerKeys::preload`] on a task of its own: a replay reads the log
    /// meanwhile, and a key it needs before the preload brought it waits for the preload
    /// rather than reading the bucket itself. Does nothing while a preload runs.
    pub(crate) fn start_preload(self: &Arc<Self>) {
        if self.preload.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let keys = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let outcome = keys.preload().await;
            keys.preload.running.store(false, Ordering::Release);
            keys.preload.report();
            match outcome {
                Ok(loaded) => tracing::info!(
                    keys = loaded,
                    ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    "customer keys preloaded"
                ),
                Err(e) => tracing::warn!(error = %e, "customer keys not preloaded"),
            }
        });
    }

    /// Caches a key the preload read, unless the watcher knows better: a key it cached
    /// meanwhile is as new or newer (the watcher sees every change after the preload
    /// started), and a customer it saw erased stays erased. So a preload is never thrown
    /// away because the bucket changed while it ran. True when cached.
    fn remember_preloaded(&self, customer: CustomerId, key: Arc<DataKey>) -> bool {
        let mut cache = lock(&self.cache);
        if !self.watching.load(Ordering::Acquire) || cache.purged.contains(&customer) {
            return false;
        }
        if cache.keys.contains_key(&customer) {
            return true;
        }
        cache.make_room(self.limit);
        cache.keys.insert(customer, Some(key));
        true
    }

    /// Caches a block the preload read, unless one is cached already (read or updated
    /// since, so as new or newer) or the watcher saw it rewritten (what the preload read
    /// may be from before an erasure). Returns how many keys it holds.
    fn remember_preloaded_block(&self, block: BlockId, keys: Block) -> usize {
        let mut cache = lock(&self.cache);
        if !self.watching.load(Ordering::Acquire) || cache.rewritten.contains(&block) {
            return 0;
        }
        let held = |keys: &Block| keys.keys.iter().flatten().count();
        if let Some(cached) = cache.blocks.get(&block) {
            return held(cached);
        }
        let count = held(&keys);
        cache.make_room_for_block(self.limit);
        cache.blocks.insert(block, Arc::new(keys));
        count
    }

    /// A key to seal the customer's data under, made (as their own entry) if they have
    /// none; with its slot when it was made ahead. Two processes making one at once agree
    /// on whichever was stored first (KV create).
    pub(crate) async fn get_or_create(
        &self,
        customer: &CustomerId,
    ) -> Result<(Arc<DataKey>, Option<KeyRef>), StoreError> {
        if let Some(found) = self.sealing_key(customer).await? {
            return Ok(found);
        }
        let key = DataKey::generate();
        let wrapped = self.master.wrap(customer, &key);
        lock(&self.cache).purged.remove(customer);
        match self.bucket.create(customer.as_str(), wrapped.into()).await {
            Ok(revision) => {
                let key = Arc::new(key);
                let mut cache = lock(&self.cache);
                if self.watching.load(Ordering::Acquire) && !cache.purged.contains(customer) {
                    cache.make_room(self.limit);
                    cache.created.insert(customer.clone(), revision);
                    cache.keys.insert(customer.clone(), Some(key.clone()));
                }
                Ok((key, None))
            }
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                lock(&self.cache).keys.remove(customer);
                let key = self.get(customer).await?.ok_or_else(|| {
                    StoreError::unavailable(format!("customer {customer}: key vanished while made"))
                })?;
                Ok((key, None))
            }
            Err(e) => Err(StoreError::unavailable(format!("customer key: {e}"))),
        }
    }

    /// Erases every key of the customer: purges their own entry and its history, and
    /// blanks the slot their first event names. True when there was one. A key is not
    /// unwrapped first: one that no longer opens is erased all the same.
    pub(crate) async fn erase(&self, customer: &CustomerId) -> Result<bool, StoreError> {
        let had_own = self
            .bucket
            .entry(customer.as_str())
            .await
            .map_err(|e| StoreError::unavailable(format!("customer key: {e}")))?
            .is_some_and(|entry| entry.operation == Operation::Put);
        self.bucket
            .purge(customer.as_str())
            .await
            .map_err(|e| StoreError::unavailable(format!("purge customer key: {e}")))?;
        let had_slot = match self.slot_named_for(customer, Reader::Leader).await? {
            Some(at) => self.erase_slot(customer, at).await?,
            None => false,
        };
        {
            let mut cache = lock(&self.cache);
            cache.keys.remove(customer);
            cache.slots.remove(customer);
        }
        self.hot.forget_customer(customer);
        Ok(had_own || had_slot)
    }

    /// Blanks slot `at` for `customer`: rewrites the block at the revision it was read at,
    /// again if another erasure rewrote it meanwhile. True when the slot held a key.
    async fn erase_slot(&self, customer: &CustomerId, at: KeyRef) -> Result<bool, StoreError> {
        let key = at.block.bucket_key();
        for _ in 0..ERASE_TRIES {
            let Some((value, revision)) = self.read_from_leader(&key).await? else {
                return Ok(false);
            };
            let stored = StoredBlock::parse(&value)
                .map_err(|e| StoreError::Key(format!("block {}: {e}", at.block)))?;
            let Some(erased) = stored.erase(usize::from(at.slot), customer) else {
                return Ok(false);
            };
            match self.bucket.update(&key, erased.into(), revision).await {
                Ok(_) => {
                    let mut cache = lock(&self.cache);
                    if let Some(cached) = cache.blocks.get_mut(&at.block)
                        && let Some(slot) = Arc::make_mut(cached).keys.get_mut(usize::from(at.slot))
                    {
                        *slot = None;
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => {
                    return Err(StoreError::unavailable(format!("erase key {at}: {e}")));
                }
            }
        }
        Err(StoreError::unavailable(format!(
            "erase key {at}: the block kept changing"
        )))
    }

    fn remember(&self, customer: &CustomerId, key: Option<Arc<DataKey>>, seen: u64) {
        let mut cache = lock(&self.cache);
        if !self.watching.load(Ordering::Acquire) || self.changes.load(Ordering::Acquire) != seen {
            return;
        }
        cache.make_room(self.limit);
        cache.keys.insert(customer.clone(), key);
    }

    /// Starts the watcher once; if it cannot start, keys are simply not cached.
    async fn watch(&self) {
        self.watcher
            .get_or_init(|| async {
                let cache = self.cache.clone();
                let watching = self.watching.clone();
                let changes = self.changes.clone();
                let bucket = self.bucket.clone();
                let hot = self.hot.clone();
                let limit = self.limit;
                let master = self.master.clone();
                let task = tokio::spawn(async move {
                    let mut updates = match bucket.watch_all().await {
                        Ok(updates) => updates,
                        Err(e) => {
                            tracing::warn!(error = %e, "customer keys are not cached: cannot watch the key bucket");
                            return;
                        }
                    };
                    watching.store(true, Ordering::Release);
                    while let Some(update) = updates.next().await {
                        match update {
                            Ok(entry) => {
                                let forget = if let Some(block) = BlockId::from_bucket_key(&entry.key) {
                                    block_changed(&cache, &changes, block, &entry)
                                } else if let Some(customer) = CustomerId::parse(&entry.key) {
                                    own_key_changed(&cache, &changes, &master, limit, customer, &entry)
                                } else {
                                    Vec::new()
                                };
                                hot.forget_customers(&forget);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "key bucket watch failed");
                                break;
                            }
                        }
                    }
                    watching.store(false, Ordering::Release);
                    lock(&cache).clear();
                });
                task.abort_handle()
            })
            .await;
    }
}

/// Where [`CustomerKeys::slot_named_for`] reads a first event.
#[derive(Clone, Copy)]
enum Reader {
    /// Any replica (direct get), the leader when that finds none.
    Any,
    /// The stream's leader only.
    Leader,
}

/// The watcher's news of a customer's own entry; returns whose hot tickets to drop.
fn own_key_changed(
    cache: &Mutex<Cache>,
    changes: &AtomicU64,
    master: &MasterKey,
    limit: usize,
    customer: CustomerId,
    entry: &kv::Entry,
) -> Vec<CustomerId> {
    let mut cache = lock(cache);
    // The key this process just created: nothing changed.
    if entry.operation == Operation::Put && cache.created.get(&customer) == Some(&entry.revision) {
        cache.created.remove(&customer);
        return Vec::new();
    }
    changes.fetch_add(1, Ordering::AcqRel);
    cache.created.remove(&customer);
    if entry.operation == Operation::Put {
        // Another process's new key: kept, so that the first event sealed under it needs
        // no read. It comes after any purge of an earlier key (the watch goes in revision
        // order), so it is the customer's key now. One that does not open is not kept; a
        // read will say why.
        cache.purged.remove(&customer);
        match master.unwrap_key(&customer, &entry.value) {
            Ok(key) => {
                cache.make_room(limit);
                cache.keys.insert(customer, Some(Arc::new(key)));
            }
            Err(_) => {
                cache.keys.remove(&customer);
            }
        }
        Vec::new()
    } else {
        cache.keys.remove(&customer);
        if cache.purged.len() >= limit {
            cache.purged.clear();
        }
        cache.purged.insert(customer.clone());
        vec![customer]
    }
}

/// The watcher's news of a block: a new one tells nothing (its keys are read when an
/// event names one); a rewritten one has erased slots, each naming its customer, whose
/// keys and hot tickets go. Returns whose hot tickets to drop.
fn block_changed(
    cache: &Mutex<Cache>,
    changes: &AtomicU64,
    block: BlockId,
    entry: &kv::Entry,
) -> Vec<CustomerId> {
    let stored = match entry.operation {
        Operation::Put => match StoredBlock::parse(&entry.value) {
            Ok(stored) if stored.generation == 0 => return Vec::new(),
            Ok(stored) => Some(stored),
            Err(_) => None,
        },
        _ => None,
    };
    changes.fetch_add(1, Ordering::AcqRel);
    let mut cache = lock(cache);
    match stored {
        Some(stored) => cache.erased_in(block, &stored),
        // Deleted, purged or unreadable: nothing of it is known any more.
        None => {
            cache.blocks.remove(&block);
            cache.note_rewritten(block);
            let gone: Vec<CustomerId> = cache
                .slots
                .iter()
                .filter(|(_, at)| at.block == block)
                .map(|(customer, _)| customer.clone())
                .collect();
            for customer in &gone {
                cache.slots.remove(customer);
            }
            gone
        }
    }
}

/// Once `map` holds `limit` entries, forgets an eighth of them (whichever it yields
/// first) and returns which.
fn forget_an_eighth<K, V>(map: &mut Sharded<K, V>, limit: usize) -> Vec<K>
where
    K: Clone + Eq + std::hash::Hash,
{
    if map.len() < limit.max(1) {
        return Vec::new();
    }
    let forget = map.some_keys((limit / 8).max(1));
    for key in &forget {
        map.remove(key);
    }
    forget
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn customer(n: usize) -> CustomerId {
        CustomerId::parse(&format!("{n:032x}")).unwrap()
    }

    #[tokio::test]
    async fn a_reader_waits_for_a_running_preload_to_bring_the_key() {
        let preload = Arc::new(Preload::default());
        preload.running.store(true, Ordering::Release);
        let cache = Arc::new(Mutex::new(None));
        let loader = {
            let (preload, cache) = (preload.clone(), cache.clone());
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                preload.report();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                *cache.lock().unwrap() = Some("key");
                preload.report();
            })
        };
        assert_eq!(
            preload.wait_for(|| *cache.lock().unwrap()).await,
            Some("key")
        );
        loader.await.unwrap();
    }

    #[tokio::test]
    async fn a_reader_stops_waiting_when_the_preload_ends_without_the_key() {
        let preload = Arc::new(Preload::default());
        preload.running.store(true, Ordering::Release);
        let ender = {
            let preload = preload.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                preload.running.store(false, Ordering::Release);
                preload.report();
            })
        };
        assert_eq!(preload.wait_for(|| None::<()>).await, None);
        ender.await.unwrap();
        // With no preload running nobody waits at all.
        assert_eq!(preload.wait_for(|| None::<()>).await, None);
    }

    #[tokio::test]
    async fn a_reader_stops_waiting_for_a_preload_that_reports_nothing() {
        let preload = Preload::default();
        preload.running.store(true, Ordering::Release);
        // A stalled preload: still running, never reporting. The reader reads for itself.
        assert_eq!(preload.wait_for(|| None::<()>).await, None);
    }

    #[test]
    fn a_block_rewritten_by_an_erasure_forgets_the_slot_and_its_customer_only() {
        let block = BlockId::generate();
        let (keys, made) = blocks::draw(&MasterKey::development(), block).unwrap();
        let mut cache = Cache::default();
        cache.blocks.insert(
            block,
            Arc::new(Block {
                keys: keys.into_iter().map(|key| Some(Arc::new(key))).collect(),
            }),
        );
        let (erased, kept) = (customer(1), customer(2));
        cache
            .slots
            .insert(erased.clone(), KeyRef { block, slot: 5 });
        cache.slots.insert(kept.clone(), KeyRef { block, slot: 6 });
        assert!(cache.slot_key(&erased).is_some());

        let rewritten = StoredBlock::parse(&made)
            .unwrap()
            .erase(5, &erased)
            .unwrap();
        let dropped = cache.erased_in(block, &StoredBlock::parse(&rewritten).unwrap());
        assert_eq!(
            dropped,
            std::slice::from_ref(&erased),
            "whose hot tickets go"
        );
        assert!(cache.slot_key(&erased).is_none());
        assert!(
            cache.slot_key(&kept).is_some(),
            "the next slot's customer keeps theirs"
        );
        assert!(
            cache.rewritten.contains(&block),
            "a preload that read the block before must not cache it"
        );
    }

    fn fresh_block() -> (BlockId, Arc<Block>) {
        let keys = (0..SLOTS)
            .map(|_| Some(Arc::new(DataKey::generate())))
            .collect();
        (BlockId::generate(), Arc::new(Block { keys }))
    }

    #[test]
    fn slots_are_handed_out_once_and_the_next_block_is_asked_for_when_half_is_left() {
        let mut ahead = Ahead::default();
        assert!(ahead.take().is_none(), "no block yet");
        let (first, keys) = fresh_block();
        ahead.add(first, keys);
        let mut asked = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for n in 0..SLOTS {
            let (_, at, start) = ahead.take().unwrap();
            assert_eq!(at.block, first);
            assert!(seen.insert(at.slot), "slot {} handed out twice", at.slot);
            if start {
                asked.push(n);
            }
        }
        assert_eq!(asked, [SLOTS / 2], "asked once, when half was left");
        assert!(
            ahead.take().is_none(),
            "used up, the next block not made yet"
        );
        let (second, keys) = fresh_block();
        ahead.making_next = false;
        ahead.add(second, keys);
        assert_eq!(
            ahead.take().map(|(_, at, _)| at),
            Some(KeyRef {
                block: second,
                slot: 0
            })
        );
    }

    #[test]
    fn a_full_cache_forgets_an_eighth_of_its_keys_not_all() {
        let mut cache = Cache::default();
        for n in 0..80 {
            cache.make_room(80);
            cache
                .keys
                .insert(customer(n), Some(Arc::new(DataKey::generate())));
        }
        assert_eq!(cache.keys.len(), 80, "below the limit nothing is forgotten");
        cache.make_room(80);
        assert_eq!(cache.keys.len(), 70);
        cache.make_room(80);
        assert_eq!(cache.keys.len(), 70, "room was made already");
    }
}
