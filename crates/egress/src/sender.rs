//! Sending one message: the HTTP client, a token bucket per channel, and the retry loop.
//!
//! The loop asks the channel's adapter for the first form (text or template), sends,
//! and reads the answer: `Accepted` and `Permanent` end it; `WindowClosed` switches to
//! the adapter's fallback form once; `Retry` waits — the provider's `after` if given,
//! else an exponential backoff with equal jitter — unless the attempts or the elapsed
//! budget are spent, which ends in [`Delivery::Exhausted`]. Time comes from a [`Clock`],
//! so the loop and the limiter are tested with a manual clock, never the wall clock.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use helpline_domain::Channel;
use tokio_util::sync::CancellationToken;

use helpline_channels::{
    Form, OutboundAdapter, OutboundMessage, OutboundSettings, ProviderResponse, Reason, SendOutcome,
};

use crate::config::{EgressConfig, RateLimit, RetryPolicy};
use crate::error::EgressError;

/// Provider answers are small; anything beyond this is cut before classification.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Where time comes from: monotonic for budgets and rates, wall-clock for the 24-hour
/// window and event times, and sleeping. Tests use a clock that only pretends to sleep.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
    fn system_now(&self) -> SystemTime;
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// The real clock: `Instant::now`, `SystemTime::now`, `tokio::time::sleep`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn system_now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        tokio::time::sleep(duration).boxed()
    }
}

/// How sending one message ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The provider took the message, in `form`, at the `attempts`-th try.
    Accepted {
        provider_message_id: String,
        form: Form,
        attempts: u32,
    },
    /// It cannot be sent: the provider refused it, or the channel cannot send it.
    Permanent { reason: Reason },
    /// Still failing when the attempts or the time budget ran out, or egress is shutting
    /// down: worth trying again later.
    Exhausted { reason: Reason },
}

/// How much the way from egress to the provider's clock may bunch notifications (the
/// scheduler, the network, the provider's own queue) and the provider still see no more
/// than the configured rate in any second: egress counts its requests over windows this
/// much longer than the rate's own.
const NOTIFICATION_MARGIN: Duration = Duration::from_millis(100);

/// Sends messages on every configured channel. Cheap to share behind an `Arc`.
pub struct Sender {
    client: reqwest::Client,
    adapters: HashMap<Channel, Arc<dyn OutboundAdapter>>,
    limiters: HashMap<Channel, TokenBucket>,
    /// The notifications' pace per channel ([`Sender::notification_slot`]).
    notification_limiters: HashMap<Channel, TokenBucket>,
    /// The notifications' ceiling per channel, checked just before each request: the
    /// pace spreads them, this keeps a stall anywhere before the request from bunching
    /// them past the rate.
    notification_windows: HashMap<Channel, SendWindow>,
    policy: RetryPolicy,
    clock: Arc<dyn Clock>,
    rng: Mutex<fastrand::Rng>,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut channels: Vec<&str> = self.adapters.keys().map(|c| c.as_str()).collect();
        channels.sort_unstable();
        f.debug_struct("Sender")
            .field("channels", &channels)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender for every channel configured in `config.channels`. Needs a rustls crypto
    /// provider installed in the process (the binary and the tests install ring).
    pub fn new(config: &EgressConfig, clock: Arc<dyn Clock>) -> Result<Self, EgressError> {
        Self::with_adapters(adapters(config)?, config, clock)
    }

    /// A sender with the given adapters, for channels or tests of its own.
    pub fn with_adapters(
        adapters: Vec<Arc<dyn OutboundAdapter>>,
        config: &EgressConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EgressError> {
        config.validate()?;
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            // A redirected POST could be sent twice, or to somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("helpline/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EgressError::Client(e.to_string()))?;
        let now = clock.now();
        let limiters = Channel::ALL
            .into_iter()
            .map(|channel| (channel, TokenBucket::new(config.rate_limit(channel), now)))
            .collect();
        let notification_windows: HashMap<Channel, SendWindow> = Channel::ALL
            .into_iter()
            .map(|channel| {
                let limit = config.notification_rate_limit(channel);
                (
                    channel,
                    SendWindow::for_rate(limit.per_second, NOTIFICATION_MARGIN),
                )
            })
            .collect();
        // Paced at the window's own rate, evenly: the window then only binds after a stall.
        let notification_limiters = Channel::ALL
            .into_iter()
            .map(|channel| {
                let limit = config.notification_rate_limit(channel);
                let paced = RateLimit {
                    per_second: notification_windows[&channel].per_second(),
                    ..limit
                };
                (channel, TokenBucket::new(paced, now))
            })
            .collect();
        let rng = config
            .jitter_seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Ok(Self {
            client,
            adapters: adapters
                .into_iter()
                .map(|adapter| (adapter.channel(), adapter))
                .collect(),
            limiters,
            notification_limiters,
            notification_windows,
            policy: config.retry,
            clock,
            rng: Mutex::new(rng),
        })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Sends `message`, retrying as the policy allows. Stops early, with
    /// [`Delivery::Exhausted`], when `cancel` fires (between attempts, never mid-request)
    /// or, just before a request, when `lost` says the event that asks for the message is
    /// no longer this process's (it stood still past the event's ack wait, and the
    /// redelivery sends the message, maybe elsewhere: a request here would be a copy).
    pub async fn send(
        &self,
        message: &OutboundMessage,
        cancel: &CancellationToken,
        lost: &(dyn Fn() -> bool + Sync),
    ) -> Delivery {
        let Some(adapter) = self.adapters.get(&message.channel).cloned() else {
            return Delivery::Permanent {
                reason: Reason::ours(format!(
                    "egress is not configured to send on {}",
                    message.channel.as_str()
                )),
            };
        };
        self.retrying(adapter.as_ref(), message, cancel, lost, |form| {
            self.attempt(adapter.as_ref(), message, form)
        })
        .await
    }

    /// The retry loop around `attempt`, which sends one request in `form` and classifies
    /// the answer.
    async fn retrying<F, Fut>(
        &self,
        adapter: &dyn OutboundAdapter,
        message: &OutboundMessage,
        cancel: &CancellationToken,
        lost: &(dyn Fn() -> bool + Sync),
        mut attempt: F,
    ) -> Delivery
    where
        F: FnMut(Form) -> Fut,
        Fut: Future<Output = SendOutcome>,
    {
        let shutting_down = || Delivery::Exhausted {
            reason: Reason::ours("stopped: egress is shutting down or handed the ticket over"),
        };
        let mut form = match adapter.first_form(message, self.clock.system_now()) {
            Ok(form) => form,
            Err(refusal) => {
                return Delivery::Permanent {
                    reason: Reason::ours(refusal.0),
                };
            }
        };
        let started = self.clock.now();
        let mut attempts = 0;
        let mut switched = false;
        loop {
            if cancel.is_cancelled() {
                return shutting_down();
            }
            if let Some(limiter) = self.limiters.get(&message.channel) {
                let wait = limiter.reserve(self.clock.now());
                if !wait.is_zero() && self.pause(wait, cancel).await {
                    return shutting_down();
                }
            }
            if message.notification.is_some()
                && let Some(window) = self.notification_windows.get(&message.channel)
            {
                loop {
                    let wait = window.admit(self.clock.now());
                    if wait.is_zero() {
                        break;
                    }
                    if self.pause(wait, cancel).await {
                        return shutting_down();
                    }
                }
            }
            // Checked after every wait, the rate limit's included: a freeze falls most
            // likely in one.
            if lost() {
                return Delivery::Exhausted {
                    reason: Reason::ours(
                        "held past its ack wait (the process stood still): its redelivery sends it",
                    ),
                };
            }
            attempts += 1;
            match attempt(form).await {
                SendOutcome::Accepted {
                    provider_message_id,
                } => {
                    return Delivery::Accepted {
                        provider_message_id,
                        form,
                        attempts,
                    };
                }
                SendOutcome::Permanent { reason } => return Delivery::Permanent { reason },
                SendOutcome::WindowClosed { reason } => {
                    match adapter.after_window_closed(message, form) {
                        Some(next) if !switched => {
                            tracing::info!(ticket = %message.ticket, message_id = %message.message, channel = message.channel.as_str(), "customer window closed, sending the template");
                            switched = true;
                            form = next;
                        }
                        _ => return Delivery::Permanent { reason },
                    }
                }
                SendOutcome::Retry { after, reason } => {
                    if attempts >= self.policy.max_attempts {
                        return Delivery::Exhausted {
                            reason: reason.noting(&format!(" (gave up after {attempts} attempts)")),
                        };
                    }
                    let delay = after.unwrap_or_else(|| self.backoff(attempts));
                    let elapsed = self.clock.now().saturating_duration_since(started);
                    if elapsed.saturating_add(delay) > self.policy.max_elapsed {
                        return Delivery::Exhausted {
                            reason: reason.noting(&format!(
                                " (next try in {delay:?}, beyond the retry budget of {:?})",
                                self.policy.max_elapsed
                            )),
                        };
                    }
                    tracing::info!(ticket = %message.ticket, message_id = %message.message, channel = message.channel.as_str(), attempts, ?delay, %reason, "send failed, retrying");
                    if self.pause(delay, cancel).await {
                        return shutting_down();
                    }
                }
            }
        }
    }

    /// Sleeps on the clock; true if `cancel` fired first.
    /// Takes a notification's turn on `channel` (its pace, before the channel's own rate):
    /// when it may go out. The caller waits until then; what it does just before (reading
    /// the ticket again) should be short, or the provider sees the pace bunched.
    pub fn notification_slot(&self, channel: Channel) -> Instant {
        let now = self.clock.now();
        match self.notification_limiters.get(&channel) {
            Some(limiter) => now + limiter.reserve(now),
            None => now,
        }
    }

    /// Waits until `at`. False when `cancel` fired first.
    pub async fn wait_until(&self, at: Instant, cancel: &CancellationToken) -> bool {
        let wait = at.saturating_duration_since(self.clock.now());
        wait.is_zero() || !self.pause(wait, cancel).await
    }

    async fn pause(&self, duration: Duration, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = cancel.cancelled() => true,
            _ = self.clock.sleep(duration) => false,
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        backoff(&self.policy, attempts, &mut rng)
    }

    /// One request and its classification; transport failures are classified here.
    async fn attempt(
        &self,
        adapter: &dyn OutboundAdapter,
        message: &OutboundMessage,
        form: Form,
    ) -> SendOutcome {
        let request = match adapter.build(message, form) {
            Ok(request) => request,
            Err(refusal) => {
                return SendOutcome::Permanent {
                    reason: Reason::ours(refusal.0),
                };
            }
        };
        let sent = self
            .client
            .request(request.method, request.url.as_str())
            .headers(request.headers)
            .body(request.body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return transport_failure(adapter.channel(), e),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = match read_body(&mut response).await {
            Ok(body) => body,
            Err(e) => {
                // The status still counts; an unreadable 2xx is classified as such.
                tracing::debug!(channel = adapter.channel().as_str(), status, error = %e.without_url(), "provider answer body unreadable");
                Bytes::new()
            }
        };
        adapter.classify(
            message,
            &ProviderResponse {
                status,
                headers,
                body,
            },
        )
    }
}

/// The adapters for every configured channel, each checking its configuration.
fn adapters(config: &EgressConfig) -> Result<Vec<Arc<dyn OutboundAdapter>>, EgressError> {
    let settings = OutboundSettings {
        whatsapp_template: config.whatsapp_template.clone(),
        whatsapp_rating_template: config.whatsapp_rating_template.clone(),
        viber_sender_name: config.viber_sender_name.clone(),
    };
    Ok(config
        .channels
        .outbound_adapters(&settings)?
        .into_iter()
        .map(Arc::from)
        .collect())
}

/// No answer at all: timeouts and connection failures are retried (`CHANNELS.md` §6);
/// a request reqwest cannot even build is not. The URL is dropped from the error: a
/// Telegram URL holds the bot token.
fn transport_failure(channel: Channel, error: reqwest::Error) -> SendOutcome {
    let error = error.without_url();
    let mut reason = if error.is_timeout() {
        format!("{} did not answer in time", channel.as_str())
    } else {
        format!("{} unreachable", channel.as_str())
    };
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    // The transport's own words (connection refused, a DNS failure) name hosts, not
    // customers: the URL is dropped above.
    let reason = Reason::ours(reason);
    if error.is_builder() {
        SendOutcome::Permanent { reason }
    } else {
        SendOutcome::Retry {
            after: None,
            reason,
        }
    }
}

async fn read_body(response: &mut reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(body.freeze())
}

/// `base · 2^(attempts-1)`, at most `max_delay`, then equal jitter: somewhere between
/// half of that and all of it, so retries of many messages spread out.
pub fn backoff(policy: &RetryPolicy, attempts: u32, rng: &mut fastrand::Rng) -> Duration {
    let exponent = attempts.saturating_sub(1).min(20);
    let ceiling = policy
        .base_delay
        .saturating_mul(1 << exponent)
        .min(policy.max_delay);
    let half = ceiling / 2;
    let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(rng.u64(0..=spread))
}

/// A token bucket: `burst` sends at once, then `per_second` on average. A caller takes
/// a token and is told how long to wait for it; tokens may go negative, so waiting
/// callers queue in the order they asked.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        let burst = f64::from(limit.burst.max(1));
        Self {
            // Validated positive by the config; guarded again so a wait is always finite.
            per_second: if limit.per_second > 0.0 {
                limit.per_second
            } else {
                1.0
            },
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                at: now,
            }),
        }
    }

    /// Takes one token at `now`; returns how long to wait before using it.
    pub fn reserve(&self, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(state.at).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.per_second).min(self.burst);
        state.at = state.at.max(now);
        state.tokens -= 1.0;
        if state.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(-state.tokens / self.per_second)
                .unwrap_or(Duration::from_secs(1))
        }
    }
}

/// At most `most` requests in any window of `span`, by egress's clock: a ceiling that
/// holds however the requests before it bunch. Remembers the last `most` requests.
#[derive(Debug)]
struct SendWindow {
    span: Duration,
    most: usize,
    sent: Mutex<VecDeque<Instant>>,
}

impl SendWindow {
    /// The ceiling for `per_second` (at least one request, however slow the rate), over
    /// windows `margin` longer than the rate's own.
    fn for_rate(per_second: f64, margin: Duration) -> Self {
        let per_second = if per_second > 0.0 { per_second } else { 1.0 };
        // Whole requests: the count the rate allows in one second, one when it allows
        // less, over the time those take at the rate.
        let most = per_second.floor().max(1.0);
        let span = Duration::try_from_secs_f64(most / per_second).unwrap_or(Duration::from_secs(1));
        Self {
            span: span + margin,
            // At most a few thousand: the rates are validated finite.
            most: most.min(f64::from(u32::MAX)) as usize,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// The even pace that fills the window exactly.
    fn per_second(&self) -> f64 {
        self.most as f64 / self.span.as_secs_f64()
    }

    /// Counts a request at `now` if the window has room, and returns zero; else how long
    /// until it has (nothing is counted then: ask again after the wait).
    fn admit(&self, now: Instant) -> Duration {
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        while sent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.span)
        {
            sent.pop_front();
        }
        if sent.len() < self.most {
            sent.push_back(now);
            return Duration::ZERO;
        }
        match sent.front() {
            // Never zero: the oldest request is less than a span ago.
            Some(oldest) => (*oldest + self.span).saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use helpline_domain::{MessageId, TicketId};
    use uuid::Uuid;

    use super::*;
    use helpline_channels::{NotificationMeans, ProviderRequest, Unsendable};

    /// A clock whose sleeps return at once and move its time forward.
    #[derive(Debug)]
    struct ManualClock {
        start: Instant,
        wall: SystemTime,
        elapsed: Mutex<Duration>,
        sleeps: Mutex<Vec<Duration>>,
    }

    impl ManualClock {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                start: Instant::now(),
                wall: SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000),
                elapsed: Mutex::new(Duration::ZERO),
                sleeps: Mutex::new(Vec::new()),
            })
        }

        fn sleeps(&self) -> Vec<Duration> {
            self.sleeps.lock().unwrap().clone()
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + *self.elapsed.lock().unwrap()
        }

        fn system_now(&self) -> SystemTime {
            self.wall + *self.elapsed.lock().unwrap()
        }

        fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
            *self.elapsed.lock().unwrap() += duration;
            self.sleeps.lock().unwrap().push(duration);
            futures::future::ready(()).boxed()
        }
    }

    /// An adapter that only decides forms; the tests script the answers.
    #[derive(Debug)]
    struct Scripted {
        first: Result<Form, Unsendable>,
        fallback: Option<Form>,
    }

    impl OutboundAdapter for Scripted {
        fn channel(&self) -> Channel {
            Channel::WhatsApp
        }

        fn first_form(&self, _: &OutboundMessage, _: SystemTime) -> Result<Form, Unsendable> {
            self.first.clone()
        }

        fn after_window_closed(&self, _: &OutboundMessage, form: Form) -> Option<Form> {
            self.fallback.filter(|next| *next != form)
        }

        fn build(&self, _: &OutboundMessage, _: Form) -> Result<ProviderRequest, Unsendable> {
            Err(Unsendable("not used".to_owned()))
        }

        fn classify(&self, _: &OutboundMessage, _: &ProviderResponse) -> SendOutcome {
            SendOutcome::Permanent {
                reason: Reason::ours("not used"),
            }
        }
    }

    fn text_adapter() -> Scripted {
        Scripted {
            first: Ok(Form::Text),
            fallback: Some(Form::Template),
        }
    }

    fn message() -> OutboundMessage {
        OutboundMessage {
            ticket: TicketId(Uuid::from_u128(1)),
            message: MessageId(Uuid::from_u128(2)),
            channel: Channel::WhatsApp,
            contact: "1".to_owned(),
            text: "t".to_owned(),
            prompt: String::new(),
            choices: Vec::new(),
            language: "de".to_owned(),
            customer_last_message_at: None,
            notification: None,
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(30),
        }
    }

    fn sender(clock: Arc<ManualClock>, policy: RetryPolicy, limit: Option<RateLimit>) -> Sender {
        let mut config = EgressConfig {
            retry: policy,
            jitter_seed: Some(7),
            ..EgressConfig::default()
        };
        if let Some(limit) = limit {
            config.rate_limits.insert(Channel::WhatsApp, limit);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        Sender::with_adapters(Vec::new(), &config, clock).unwrap()
    }

    fn retry(after: Option<u64>) -> SendOutcome {
        SendOutcome::Retry {
            after: after.map(Duration::from_secs),
            reason: Reason::ours("busy"),
        }
    }

    fn accepted() -> SendOutcome {
        SendOutcome::Accepted {
            provider_message_id: "wamid.1".to_owned(),
        }
    }

    /// Runs the loop against scripted answers; returns the result and the forms tried.
    async fn run(
        sender: &Sender,
        adapter: &Scripted,
        answers: Vec<SendOutcome>,
    ) -> (Delivery, Vec<Form>) {
        let answers = Mutex::new(VecDeque::from(answers));
        let forms = Mutex::new(Vec::new());
        let delivery = sender
            .retrying(
                adapter,
                &message(),
                &CancellationToken::new(),
                &|| false,
                |form| {
                    forms.lock().unwrap().push(form);
                    let next = answers
                        .lock()
                        .unwrap()
                        .pop_front()
                        .expect("a scripted answer");
                    futures::future::ready(next)
                },
            )
            .await;
        (delivery, forms.into_inner().unwrap())
    }

    #[tokio::test]
    async fn honours_the_providers_wait_then_succeeds() {
        let clock = ManualClock::new();
        let sender = sender(clock.clone(), policy(), None);
        let (delivery, forms) = run(
            &sender,
            &text_adapter(),
            vec![retry(Some(1)), retry(Some(1)), retry(Some(1)), accepted()],
        )
        .await;
        assert_eq!(
            delivery,
            Delivery::Accepted {
                provider_message_id: "wamid.1".to_owned(),
                form: Form::Text,
                attempts: 4
            }
        );
        assert_eq!(forms, vec![Form::Text; 4]);
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(1); 3]);
    }

    #[tokio::test]
    async fn backs_off_exponentially_with_jitter_without_a_providers_wait() {
        let clock = ManualClock::new();
        let sender = sender(clock.clone(), policy(), None);
        let (delivery, _) = run(
            &sender,
            &text_adapter(),
            vec![
                retry(None),
                retry(None),
                retry(None),
                retry(None),
                retry(None),
                accepted(),
            ],
        )
        .await;
        assert!(matches!(delivery, Delivery::Accepted { attempts: 6, .. }));
        let sleeps = clock.sleeps();
        let ceilings = [100, 200, 400, 800, 1600].map(Duration::from_millis);
        assert_eq!(sleeps.len(), ceilings.len());
        for (slept, ceiling) in sleeps.iter().zip(ceilings) {
            assert!(
                *slept >= ceiling / 2 && *slept <= ceiling,
                "{slept:?} not within [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
    }

    #[test]
    fn backoff_is_capped_and_never_below_half() {
        let mut rng = fastrand::Rng::with_seed(1);
        let policy = policy();
        for attempts in 1..40 {
            let delay = backoff(&policy, attempts, &mut rng);
            assert!(delay <= policy.max_delay, "{attempts}: {delay:?}");
            assert!(delay >= policy.base_delay / 2, "{attempts}: {delay:?}");
        }
        assert!(backoff(&policy, 30, &mut rng) >= policy.max_delay / 2);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let clock = ManualClock::new();
        let policy = RetryPolicy {
            max_attempts: 3,
            ..policy()
        };
        let sender = sender(clock.clone(), policy, None);
        let (delivery, forms) = run(&sender, &text_adapter(), vec![retry(None); 3]).await;
        match delivery {
            Delivery::Exhausted { reason } => {
                assert!(reason.summary().contains("3 attempts"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(forms.len(), 3);
        assert_eq!(clock.sleeps().len(), 2);
    }

    #[tokio::test]
    async fn gives_up_when_the_wait_would_pass_the_budget() {
        let clock = ManualClock::new();
        let policy = RetryPolicy {
            max_elapsed: Duration::from_secs(10),
            ..policy()
        };
        let sender = sender(clock.clone(), policy, None);
        let (delivery, forms) = run(
            &sender,
            &text_adapter(),
            vec![retry(Some(4)), retry(Some(4)), retry(Some(4))],
        )
        .await;
        assert!(
            matches!(delivery, Delivery::Exhausted { .. }),
            "{delivery:?}"
        );
        // Waits of 4 s and 4 s fit in 10 s; a third would end at 12 s.
        assert_eq!(forms.len(), 3);
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(4); 2]);
    }

    #[tokio::test]
    async fn permanent_ends_at_once() {
        let clock = ManualClock::new();
        let sender = sender(clock.clone(), policy(), None);
        let (delivery, forms) = run(
            &sender,
            &text_adapter(),
            vec![SendOutcome::Permanent {
                reason: Reason::provider("whatsapp answered 400", "(#131026) undeliverable"),
            }],
        )
        .await;
        assert_eq!(
            delivery,
            Delivery::Permanent {
                reason: Reason::provider("whatsapp answered 400", "(#131026) undeliverable")
            }
        );
        assert_eq!(forms.len(), 1);
        assert!(clock.sleeps().is_empty());
    }

    #[tokio::test]
    async fn a_closed_window_switches_to_the_template_once() {
        let clock = ManualClock::new();
        let sender = sender(clock.clone(), policy(), None);
        let closed = || SendOutcome::WindowClosed {
            reason: Reason::ours("131047"),
        };
        let (delivery, forms) = run(&sender, &text_adapter(), vec![closed(), accepted()]).await;
        assert!(matches!(
            delivery,
            Delivery::Accepted {
                form: Form::Template,
                attempts: 2,
                ..
            }
        ));
        assert_eq!(forms, vec![Form::Text, Form::Template]);
        assert!(clock.sleeps().is_empty(), "the switch does not wait");

        let (delivery, forms) = run(&sender, &text_adapter(), vec![closed(), closed()]).await;
        assert_eq!(
            delivery,
            Delivery::Permanent {
                reason: Reason::ours("131047")
            }
        );
        assert_eq!(forms, vec![Form::Text, Form::Template]);

        let no_template = Scripted {
            first: Ok(Form::Text),
            fallback: None,
        };
        let (delivery, forms) = run(&sender, &no_template, vec![closed()]).await;
        assert!(matches!(delivery, Delivery::Permanent { .. }));
        assert_eq!(forms.len(), 1);
    }

    #[tokio::test]
    async fn a_refused_first_form_sends_nothing() {
        let clock = ManualClock::new();
        let sender = sender(clock, policy(), None);
        let refusing = Scripted {
            first: Err(Unsendable("window closed, no template".to_owned())),
            fallback: None,
        };
        let (delivery, forms) = run(&sender, &refusing, vec![]).await;
        assert_eq!(
            delivery,
            Delivery::Permanent {
                reason: Reason::ours("window closed, no template")
            }
        );
        assert!(forms.is_empty());
    }

    #[tokio::test]
    async fn cancellation_stops_between_attempts() {
        let clock = ManualClock::new();
        let sender = sender(clock, policy(), None);
        let cancel = CancellationToken::new();
        let tries = Mutex::new(0);
        let delivery = sender
            .retrying(&text_adapter(), &message(), &cancel, &|| false, |_| {
                *tries.lock().unwrap() += 1;
                cancel.cancel();
                futures::future::ready(retry(Some(1)))
            })
            .await;
        assert!(matches!(delivery, Delivery::Exhausted { .. }));
        assert_eq!(*tries.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_send_whose_event_this_process_lost_is_not_tried_again() {
        let clock = ManualClock::new();
        let sender = sender(clock, policy(), None);
        // The process stands still in the backoff after the first try, past the event's
        // ack wait.
        let lost = std::sync::atomic::AtomicBool::new(false);
        let tries = Mutex::new(0);
        let delivery = sender
            .retrying(
                &text_adapter(),
                &message(),
                &CancellationToken::new(),
                &|| lost.load(std::sync::atomic::Ordering::SeqCst),
                |_| {
                    *tries.lock().unwrap() += 1;
                    lost.store(true, std::sync::atomic::Ordering::SeqCst);
                    futures::future::ready(retry(Some(1)))
                },
            )
            .await;
        assert!(
            matches!(&delivery, Delivery::Exhausted { reason } if reason.to_string().contains("ack wait")),
            "{delivery:?}"
        );
        assert_eq!(*tries.lock().unwrap(), 1);
        // Lost before the first try: nothing goes out.
        let delivery = sender
            .retrying(
                &text_adapter(),
                &message(),
                &CancellationToken::new(),
                &|| true,
                |_| -> futures::future::Ready<SendOutcome> { unreachable!("no request") },
            )
            .await;
        assert!(
            matches!(delivery, Delivery::Exhausted { .. }),
            "{delivery:?}"
        );
    }

    #[tokio::test]
    async fn the_rate_limit_spaces_sends_after_the_burst() {
        let clock = ManualClock::new();
        let limit = RateLimit {
            per_second: 10.0,
            burst: 2,
        };
        let sender = sender(clock.clone(), policy(), Some(limit));
        for _ in 0..5 {
            let (delivery, _) = run(&sender, &text_adapter(), vec![accepted()]).await;
            assert!(matches!(delivery, Delivery::Accepted { .. }));
        }
        let sleeps = clock.sleeps();
        assert_eq!(sleeps.len(), 3, "{sleeps:?}");
        for slept in sleeps {
            assert!(
                slept.abs_diff(Duration::from_millis(100)) < Duration::from_millis(1),
                "{slept:?}"
            );
        }
    }

    #[tokio::test]
    async fn notifications_that_bunch_before_their_requests_never_pass_their_rate_in_any_second() {
        let clock = ManualClock::new();
        let mut config = EgressConfig {
            retry: policy(),
            jitter_seed: Some(7),
            ..EgressConfig::default()
        };
        config.notification_rate_limits.insert(
            Channel::WhatsApp,
            RateLimit {
                per_second: 5.0,
                burst: 1,
            },
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sender = Sender::with_adapters(Vec::new(), &config, clock.clone()).unwrap();
        let notification = OutboundMessage {
            notification: Some(NotificationMeans::default()),
            ..message()
        };
        // Twelve notifications whose turns all came at once (a stall held them), then
        // one of the bot's messages, which the notifications' ceiling does not hold.
        let requests = Mutex::new(Vec::new());
        for message in std::iter::repeat_n(&notification, 12).chain([&message()]) {
            let delivery = sender
                .retrying(
                    &text_adapter(),
                    message,
                    &CancellationToken::new(),
                    &|| false,
                    |_| {
                        requests
                            .lock()
                            .unwrap()
                            .push((clock.now(), message.notification.is_some()));
                        futures::future::ready(accepted())
                    },
                )
                .await;
            assert!(
                matches!(delivery, Delivery::Accepted { .. }),
                "{delivery:?}"
            );
        }
        let requests = requests.into_inner().unwrap();
        let notified: Vec<Instant> = requests.iter().filter(|r| r.1).map(|r| r.0).collect();
        assert_eq!(notified.len(), 12);
        // Five at once, then each as the first of the window leaves it: never six in
        // 1.1 s, so up to 100 ms of bunching on the way still shows the provider five a
        // second at most.
        for (i, at) in notified.iter().enumerate().skip(5) {
            let gap = at.duration_since(notified[i - 5]);
            assert!(gap >= Duration::from_millis(1100), "{i}: {gap:?}");
        }
        // The bot's message went at once, after the last notification.
        assert_eq!(requests[12], (*notified.last().unwrap(), false));
    }

    #[test]
    fn token_bucket_refills_at_its_rate_up_to_the_burst() {
        let start = Instant::now();
        let bucket = TokenBucket::new(
            RateLimit {
                per_second: 2.0,
                burst: 3,
            },
            start,
        );
        let at = |ms: u64| start + Duration::from_millis(ms);
        for _ in 0..3 {
            assert_eq!(bucket.reserve(at(0)), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(at(0)), Duration::from_millis(500));
        // The reserved token is owed: the next caller queues behind it.
        assert_eq!(bucket.reserve(at(0)), Duration::from_secs(1));
        // After a long pause the bucket is full again, never fuller.
        for _ in 0..3 {
            assert_eq!(bucket.reserve(at(60_000)), Duration::ZERO);
        }
        assert!(bucket.reserve(at(60_000)) > Duration::ZERO);
    }

    #[tokio::test]
    async fn a_channel_without_config_fails_permanently() {
        let sender = sender(ManualClock::new(), policy(), None);
        let delivery = sender
            .send(&message(), &CancellationToken::new(), &|| false)
            .await;
        match delivery {
            Delivery::Permanent { reason } => {
                assert!(reason.summary().contains("whatsapp"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
