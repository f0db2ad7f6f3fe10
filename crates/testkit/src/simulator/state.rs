//! What the simulator remembers: messages received, faults queued, attempts, media, and the
//! counters that make provider ids unique.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use helpline_domain::Channel;

use super::{Fault, MediaRef, Received, SimulatorConfig, codec};

/// Viber message tokens are 64-bit and beyond 2^53, like the real ones.
const VIBER_TOKEN_BASE: u64 = 5_700_000_000_000_000_000;
/// Where names that are not numbers land as Telegram chat ids: above 32 bits.
const TELEGRAM_NAMED_BASE: i64 = 5_000_000_000;

#[derive(Debug)]
pub(super) struct Shared {
    pub config: SimulatorConfig,
    pub base_url: String,
    /// Random per simulator, so ids differ between runs (a persistent store dedupes on them).
    nonce: u64,
    counter: AtomicU64,
    telegram_update: AtomicI64,
    viber_token: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Record>,
    faults: HashMap<Channel, VecDeque<Queued>>,
    attempts: HashMap<Channel, usize>,
    /// Faults answered, by [`Fault::kind`].
    served: BTreeMap<&'static str, usize>,
    /// Each web chat callback's `event_id`, with when it first arrived.
    web_event_ids: HashMap<String, std::time::Instant>,
    /// Web chat callbacks that repeated an `event_id`: the site shows the message once,
    /// but each is a send helpline made twice, so they are counted, by when the first
    /// of the two arrived.
    web_repeats: Vec<std::time::Instant>,
    media: HashMap<String, Media>,
    /// Telegram chat ids of customers named by something other than a number.
    telegram_names: HashMap<i64, String>,
    /// Telegram numbers messages per chat, both directions together.
    telegram_message_ids: HashMap<i64, i64>,
    /// How long each send request waits before the provider takes it; none by default.
    latency: Option<Latency>,
    /// WhatsApp customers (`wa_id`) whose sends are never answered.
    hung_whatsapp: HashSet<String>,
    /// Sends to be taken and then answered late: (delay, sends left) per channel.
    slow_accepts: HashMap<Channel, (Duration, usize)>,
}

/// Random send latency: a delay drawn uniformly from `min..=max` per send request, from
/// a seeded generator so that a run's delays can be drawn again.
#[derive(Debug)]
pub(super) struct Latency {
    min: Duration,
    max: Duration,
    rng: fastrand::Rng,
}

impl Latency {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min: min.min(max),
            max: max.max(min),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The next delay, within `min..=max`.
    pub fn draw(&mut self) -> Duration {
        let span = u64::try_from((self.max - self.min).as_micros()).unwrap_or(u64::MAX);
        self.min + Duration::from_micros(self.rng.u64(0..=span))
    }
}

#[derive(Debug)]
struct Record {
    /// The channel address the message went to, which `received` matches on.
    address: String,
    received: Received,
}

#[derive(Debug)]
struct Queued {
    fault: Fault,
    remaining: usize,
}

#[derive(Clone, Debug)]
pub(super) struct Media {
    pub bytes: Bytes,
    pub mime_type: String,
    pub sha256_hex: String,
    /// False while the provider's media server is down: downloads answer `503`.
    pub reachable: bool,
    /// Downloads asked for, answered or not; shared by every copy of the entry.
    pub downloads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// What a send request is, as far as faults care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SendKind {
    FreeForm,
    /// A WhatsApp template: allowed outside the customer service window.
    Template,
}

impl Shared {
    pub fn new(config: SimulatorConfig, base_url: String) -> Self {
        let nonce = RandomState::new().build_hasher().finish();
        let micros = codec::now_unix_micros();
        Self {
            config,
            base_url,
            nonce,
            counter: AtomicU64::new(0),
            telegram_update: AtomicI64::new(codec::now_unix_millis()),
            viber_token: AtomicU64::new(VIBER_TOKEN_BASE.saturating_add(micros)),
            state: Mutex::new(State::default()),
        }
    }

    /// Never poisoned in practice: nothing panics while holding the lock; if something
    /// did, the state is still consistent (every change is a single push or insert).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// 16 unique bytes: the simulator's nonce and a counter.
    fn unique_bytes(&self) -> [u8; 16] {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.nonce.to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
        bytes
    }

    /// Opaque base64 without padding, like the bodies of Meta's ids.
    pub fn opaque_id(&self) -> String {
        codec::base64(&self.unique_bytes())
            .trim_end_matches('=')
            .to_owned()
    }

    /// Lowercase hex, for our own web chat ids.
    pub fn hex_id(&self) -> String {
        hex::encode(self.unique_bytes())
    }

    /// A number that is unique in this simulator, for Graph media ids and the like.
    pub fn numeric_id(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        1_000_000_000_000_000 + (self.nonce % 1_000_000_000) * 1_000 + n
    }

    pub fn next_update_id(&self) -> i64 {
        self.telegram_update.fetch_add(1, Ordering::Relaxed)
    }

    pub fn next_viber_token(&self) -> u64 {
        self.viber_token.fetch_add(1, Ordering::Relaxed)
    }

    /// The next `message_id` in a Telegram chat.
    pub fn next_telegram_message_id(&self, chat: i64) -> i64 {
        let mut state = self.lock();
        let next = state.telegram_message_ids.entry(chat).or_insert(0);
        *next += 1;
        *next
    }

    /// The customer's address on the channel (see `Simulator::customer_address`).
    pub fn address(&self, channel: Channel, customer: &str) -> String {
        match channel {
            Channel::Telegram => self.telegram_chat_id(customer).to_string(),
            Channel::WhatsApp => customer.trim_start_matches('+').to_owned(),
            _ => customer.to_owned(),
        }
    }

    /// A customer's Telegram chat id: the number itself, or for a name a stable id
    /// derived from it (FNV-1a), remembered so sends to it are reported under the name.
    pub fn telegram_chat_id(&self, customer: &str) -> i64 {
        if let Ok(id) = customer.parse::<i64>() {
            return id;
        }
        let hash = customer
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        // Below 10^12, so the sum stays far from i64::MAX.
        let offset = i64::try_from(hash % 1_000_000_000_000).unwrap_or(0);
        let id = TELEGRAM_NAMED_BASE + offset;
        self.lock()
            .telegram_names
            .entry(id)
            .or_insert_with(|| customer.to_owned());
        id
    }

    /// How a Telegram chat is reported in [`Received::customer`]: by name when known.
    pub fn telegram_customer(&self, chat: i64) -> String {
        self.lock()
            .telegram_names
            .get(&chat)
            .cloned()
            .unwrap_or_else(|| chat.to_string())
    }

    pub fn received(&self, filter: Option<(Channel, &str)>) -> Vec<Received> {
        self.lock()
            .received
            .iter()
            .filter(|record| match filter {
                Some((channel, address)) => {
                    record.received.channel == channel && record.address == address
                }
                None => true,
            })
            .map(|record| record.received.clone())
            .collect()
    }

    pub fn arrivals_from(&self, from: usize) -> Vec<(String, std::time::Instant)> {
        self.lock()
            .received
            .iter()
            .skip(from)
            .map(|record| {
                (
                    record.received.customer.clone(),
                    record.received.received_at,
                )
            })
            .collect()
    }

    pub fn received_count(&self) -> usize {
        self.lock().received.len()
    }

    pub fn record(&self, address: String, received: Received) {
        tracing::debug!(
            channel = received.channel.as_str(),
            provider_message_id = %received.provider_message_id,
            "simulated customer received a message"
        );
        self.lock().received.push(Record { address, received });
    }

    /// Records a web chat message unless its `event_id` was recorded before; returns
    /// whether it was recorded.
    pub fn record_web_once(&self, event_id: &str, address: String, received: Received) -> bool {
        let mut state = self.lock();
        if let Some(first) = state.web_event_ids.get(event_id).copied() {
            state.web_repeats.push(first);
            return false;
        }
        state
            .web_event_ids
            .insert(event_id.to_owned(), std::time::Instant::now());
        state.received.push(Record { address, received });
        true
    }

    pub fn inject(&self, channel: Channel, fault: Fault) {
        let remaining = match &fault {
            Fault::ServerError { times }
            | Fault::RateLimited { times, .. }
            | Fault::Timeout { times, .. }
            | Fault::Reject { times, .. }
            | Fault::CustomerOutsideWindow { times } => *times,
        };
        if remaining == 0 {
            return;
        }
        self.lock()
            .faults
            .entry(channel)
            .or_default()
            .push_back(Queued { fault, remaining });
    }

    pub fn set_latency(&self, latency: Option<Latency>) {
        self.lock().latency = latency;
    }

    /// Waits the send latency, if one is set. Called before a send request is looked at,
    /// so that concurrent sends are taken in the order their delays end, as a provider
    /// with a queue of its own would take them.
    pub async fn send_latency(&self) {
        let delay = self.lock().latency.as_mut().map(Latency::draw);
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }

    pub fn hang_whatsapp_sends_to(&self, wa_id: String) {
        self.lock().hung_whatsapp.insert(wa_id);
    }

    /// Holds a send to `wa_id` while sends to it hang: the caller's request stays open
    /// until its own timeout gives up on it or the faults are cleared (then it is taken).
    pub async fn hold_if_hung(&self, wa_id: &str) {
        while self.lock().hung_whatsapp.contains(wa_id) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn clear_faults(&self) {
        let mut state = self.lock();
        state.faults.clear();
        state.hung_whatsapp.clear();
        state.slow_accepts.clear();
    }

    /// The next `times` sends on `channel` that the provider takes are answered only after
    /// `delay`.
    pub fn accept_slowly(&self, channel: Channel, times: usize, delay: Duration) {
        self.lock().slow_accepts.insert(channel, (delay, times));
    }

    /// A send on `channel` was just taken: how long its answer is held, if at all.
    pub fn slow_accept(&self, channel: Channel) -> Option<Duration> {
        let mut state = self.lock();
        let (delay, left) = state.slow_accepts.get_mut(&channel)?;
        if *left == 0 {
            return None;
        }
        *left -= 1;
        let delay = *delay;
        *state.served.entry("slow_accept").or_insert(0) += 1;
        Some(delay)
    }

    pub fn send_attempts(&self, channel: Channel) -> usize {
        self.lock().attempts.get(&channel).copied().unwrap_or(0)
    }

    pub fn faults_served(&self) -> BTreeMap<&'static str, usize> {
        self.lock().served.clone()
    }

    pub fn web_repeats(&self) -> Vec<std::time::Instant> {
        self.lock().web_repeats.clone()
    }

    /// Counts a send request and takes the fault it gets, if any.
    pub fn begin_send(&self, channel: Channel, kind: SendKind) -> Option<Fault> {
        let mut state = self.lock();
        *state.attempts.entry(channel).or_insert(0) += 1;
        let queue = state.faults.get_mut(&channel)?;
        let front = queue.front_mut()?;
        if kind == SendKind::Template && matches!(front.fault, Fault::CustomerOutsideWindow { .. })
        {
            return None;
        }
        front.remaining -= 1;
        let fault = front.fault.clone();
        if front.remaining == 0 {
            queue.pop_front();
        }
        *state.served.entry(fault.kind()).or_insert(0) += 1;
        Some(fault)
    }

    pub fn add_media(&self, bytes: Vec<u8>, mime: &str) -> MediaRef {
        let id = self.numeric_id().to_string();
        let sha256 = codec::sha256_hex(&bytes);
        let media = MediaRef {
            url: format!("{}/media/{id}", self.base_url),
            id: id.clone(),
            mime_type: mime.to_owned(),
            size: bytes.len(),
            sha256: sha256.clone(),
        };
        self.lock().media.insert(
            id,
            Media {
                bytes: Bytes::from(bytes),
                mime_type: mime.to_owned(),
                sha256_hex: sha256,
                reachable: true,
                downloads: Default::default(),
            },
        );
        media
    }

    pub fn media_downloads(&self, id: &str) -> usize {
        self.lock().media.get(id).map_or(0, |media| {
            media.downloads.load(std::sync::atomic::Ordering::SeqCst)
        })
    }

    pub fn set_media_reachable(&self, id: &str, reachable: bool) {
        if let Some(media) = self.lock().media.get_mut(id) {
            media.reachable = reachable;
        }
    }

    pub fn media(&self, id: &str) -> Option<Media> {
        self.lock().media.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_latency_stays_in_its_range_and_repeats_with_its_seed() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(300));
        let draws = |seed| {
            let mut latency = Latency::new(min, max, seed);
            (0..1000).map(|_| latency.draw()).collect::<Vec<_>>()
        };
        let first = draws(7);
        assert!(first.iter().all(|d| (min..=max).contains(d)), "{first:?}");
        assert_eq!(first, draws(7));
        assert_ne!(first, draws(8));
        // Spread over the range, not stuck at one end.
        assert!(first.iter().any(|d| *d < Duration::from_millis(100)));
        assert!(first.iter().any(|d| *d > Duration::from_millis(200)));
    }

    #[test]
    fn a_fixed_latency_is_that_delay() {
        let fixed = Duration::from_millis(40);
        let mut latency = Latency::new(fixed, fixed, 1);
        assert_eq!(latency.draw(), fixed);
    }
}
