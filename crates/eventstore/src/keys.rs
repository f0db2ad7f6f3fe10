//! Customers' data keys, in the region's key bucket (`helpline-<region>-customer-keys`,
//! history 1), wrapped by the master key.
//!
//! Keys are cached per process. The cache follows the bucket: a watcher takes every change
//! as it comes — a key created elsewhere is cached as the watch delivers it, an erased one
//! is evicted — so an erasure reaches every process within a round trip, a new customer's
//! first event finds its key already here (the key is stored before the event, and the
//! server sends both on in that order), and until the watcher runs nothing is cached at
//! all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::OnceCell;

use crate::error::StoreError;
use crate::hot::HotTickets;
use crate::seal::{CustomerId, DataKey, MasterKey};

/// The header a KV bucket's stream marks deletes and purges with (`DEL`, `PURGE`).
const KV_OPERATION_HEADER: &str = "KV-Operation";

/// What one process knows of the key bucket.
#[derive(Default)]
struct Cache {
    /// Hashed by foldhash: pseudonyms are HMAC outputs nobody can aim at one bucket, and
    /// every opened message looks one up (SipHash was a visible share of a replay).
    keys: HashMap<CustomerId, Option<Arc<DataKey>>, foldhash::fast::RandomState>,
    /// Keys this process created, by the revision of their entry: the watcher's news of
    /// that very entry changes nothing, so a new customer's key is not read back.
    created: HashMap<CustomerId, u64>,
    /// Customers whose key the watcher saw purged: a key created just before is not
    /// cached after it.
    purged: std::collections::HashSet<CustomerId>,
}

impl Cache {
    fn clear(&mut self) {
        self.keys.clear();
        self.created.clear();
        self.purged.clear();
    }

    /// Makes room for one more key under `limit`: a full cache forgets an eighth of its
    /// keys (whichever the map yields first), not all of them, so a replay over more
    /// customers than fit reads back only the keys it lost.
    fn make_room(&mut self, limit: usize) {
        if self.keys.len() < limit.max(1) {
            return;
        }
        let forget: Vec<CustomerId> = self.keys.keys().take((limit / 8).max(1)).cloned().collect();
        for customer in &forget {
            self.keys.remove(customer);
            self.created.remove(customer);
        }
    }
}

pub(crate) struct CustomerKeys {
    js: async_nats::jetstream::Context,
    bucket: kv::Store,
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
        master: MasterKey,
        hot: HotTickets,
        limit: usize,
    ) -> Self {
        Self {
            js,
            bucket,
            master,
            hot,
            limit,
            cache: Arc::default(),
            watching: Arc::default(),
            changes: Arc::default(),
            watcher: OnceCell::new(),
            preload: Arc::default(),
        }
    }

    pub(crate) fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The customer's key; `None` when they have none (never had one, or erased).
    pub(crate) async fn get(
        &self,
        customer: &CustomerId,
    ) -> Result<Option<Arc<DataKey>>, StoreError> {
        self.watch().await;
        if let Some(cached) = self.cached_or_preloaded(customer).await {
            return Ok(cached);
        }
        let seen = self.changes.load(Ordering::Acquire);
        let wrapped = match self
            .bucket
            .entry(customer.as_str())
            .await
            .map_err(|e| StoreError::unavailable(format!("customer key: {e}")))?
        {
            Some(entry) if entry.operation == Operation::Put => Some(entry.value),
            _ => self.read_from_leader(customer).await?,
        };
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

    /// The customer's wrapped key as the bucket's leader has it. A KV read may be answered
    /// by any replica (direct get), and a replica behind the leader does not have a key
    /// created a moment ago yet; a customer whose events are being read has had a key, so
    /// before "no key" is taken for an erasure (and remembered) the leader confirms it.
    async fn read_from_leader(&self, customer: &CustomerId) -> Result<Option<Bytes>, StoreError> {
        let subject = format!("{}{}", self.bucket.prefix, customer.as_str());
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
                    None | Some("PUT") => Some(message.payload),
                    // DEL or PURGE: erased.
                    Some(_) => None,
                })
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(StoreError::unavailable(format!(
                "customer key (leader): {e}"
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
    /// than a read per customer): for replaying the whole log. Returns how many.
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
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(|e| unavailable(&e))?;
            if entry.operation == Operation::Put
                && let Some(customer) = CustomerId::parse(&entry.key)
                && let Ok(key) = self.master.unwrap_key(&customer, &entry.value)
                && self.remember_preloaded(customer, Arc::new(key))
            {
                loaded += 1;
                if loaded % PRELOAD_REPORT_EVERY == 0 {
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

    /// The customer's key, made and stored first if they have none. Two processes making
    /// one at once agree on whichever was stored first (KV create). `likely_new` (a
    /// ticket being opened) tries the create first, saving a read for a new customer.
    pub(crate) async fn get_or_create(
        &self,
        customer: &CustomerId,
        likely_new: bool,
    ) -> Result<Arc<DataKey>, StoreError> {
        let cached = lock(&self.cache).keys.get(customer).cloned();
        match cached {
            Some(Some(key)) => return Ok(key),
            Some(None) => {}
            None if likely_new => {}
            None => {
                if let Some(key) = self.get(customer).await? {
                    return Ok(key);
                }
            }
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
                Ok(key)
            }
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                lock(&self.cache).keys.remove(customer);
                self.get(customer).await?.ok_or_else(|| {
                    StoreError::unavailable(format!("customer {customer}: key vanished while made"))
                })
            }
            Err(e) => Err(StoreError::unavailable(format!("customer key: {e}"))),
        }
    }

    /// Purges the customer's key and its history from the bucket; true when there was one.
    /// The key is not unwrapped first: one that no longer opens is purged all the same.
    pub(crate) async fn erase(&self, customer: &CustomerId) -> Result<bool, StoreError> {
        let had = self
            .bucket
            .entry(customer.as_str())
            .await
            .map_err(|e| StoreError::unavailable(format!("customer key: {e}")))?
            .is_some_and(|entry| entry.operation == Operation::Put);
        self.bucket
            .purge(customer.as_str())
            .await
            .map_err(|e| StoreError::unavailable(format!("purge customer key: {e}")))?;
        lock(&self.cache).keys.remove(customer);
        self.hot.forget_customer(customer);
        Ok(had)
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
                                let mut cache = lock(&cache);
                                let Some(customer) = CustomerId::parse(&entry.key) else {
                                    continue;
                                };
                                // The key this process just created: nothing changed.
                                if entry.operation == Operation::Put
                                    && cache.created.get(&customer) == Some(&entry.revision)
                                {
                                    cache.created.remove(&customer);
                                    continue;
                                }
                                changes.fetch_add(1, Ordering::AcqRel);
                                cache.created.remove(&customer);
                                if entry.operation == Operation::Put {
                                    // Another process's new key: kept, so that the first
                                    // event sealed under it needs no read. It comes after
                                    // any purge of an earlier key (the watch goes in
                                    // revision order), so it is the customer's key now. One
                                    // that does not open is not kept; a read will say why.
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
                                } else {
                                    cache.keys.remove(&customer);
                                    if cache.purged.len() >= limit {
                                        cache.purged.clear();
                                    }
                                    cache.purged.insert(customer.clone());
                                    drop(cache);
                                    hot.forget_customer(&customer);
                                }
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

fn lock(cache: &Mutex<Cache>) -> MutexGuard<'_, Cache> {
    cache
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
