//! The channel simulator: every messaging provider helpline talks to, played on localhost.
//!
//! One HTTP server on `127.0.0.1` serves the providers' **send APIs** (WhatsApp Cloud API,
//! Messenger Send API, Telegram Bot API, Viber REST API, Apple's MSP gateway, and the web
//! chat backend's callback), their media downloads (Apple's encrypted, on its MMCS), and a
//! small control surface for people (`GET /` lists the routes, `GET /_sim/received` shows
//! what customers got). On the **customer side** it
//! builds webhooks exactly as each provider sends them, signed with the configured secrets,
//! and delivers them to helpline, taps on the buttons of a message included.
//!
//! Shapes, signatures, status codes and error bodies follow the channel protocol reference
//! (`CHANNELS.md`, `APPLE-AND-NOTIFY.md`) and agree with what `helpline-channels` parses; the
//! tests of this crate run every webhook through the channels' adapters.
//!
//! Modules: `server` (routing, the control surface, media), one module per provider
//! (`whatsapp`, `messenger`, `telegram`, `viber`, `web`, `apple`, with `meta` for what the
//! two Meta channels share), `state` (what was received, faults, send latency, counters), `codec` (JSON as
//! providers write it, signatures, ids).
//!
//! **Invariants:** a send is recorded only when it is answered as a success; a faulted or
//! refused send records nothing; the state lock is never held across an `.await`; no request,
//! however malformed, makes the server panic (it answers the provider's error instead); the
//! simulator's own HTTP client needs no process-wide TLS provider (it speaks plain HTTP).
//!
mod apple;
mod codec;
mod messenger;
mod meta;
mod server;
mod state;
mod telegram;
mod viber;
mod web;
mod whatsapp;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use helpline_domain::Channel;
use serde::Serialize;
use tokio::sync::oneshot;

use state::Shared;

/// How long [`Simulator::deliver`] waits for helpline to answer a webhook.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// The providers' credentials. `Default` gives fixed secrets for tests; the same values go
/// into helpline's `[channels.*]` configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimulatorConfig {
    pub whatsapp: WhatsAppSim,
    pub messenger: MessengerSim,
    pub telegram: TelegramSim,
    pub viber: ViberSim,
    pub web: WebSim,
    pub apple: AppleSim,
}

/// WhatsApp Cloud API: the app secret signs webhooks, the access token authorizes sends to
/// `/{phone_number_id}/messages`.
#[derive(Clone, PartialEq, Eq)]
pub struct WhatsAppSim {
    pub app_secret: String,
    pub verify_token: String,
    pub access_token: String,
    pub phone_number_id: String,
}

/// Messenger: the app secret signs webhooks, the page access token authorizes sends.
#[derive(Clone, PartialEq, Eq)]
pub struct MessengerSim {
    pub app_secret: String,
    pub verify_token: String,
    pub page_access_token: String,
    pub page_id: String,
}

/// Telegram: `secret_token` is presented on every webhook, `bot_token` is part of every
/// Bot API path (its digits before `:` are the bot's user id).
#[derive(Clone, PartialEq, Eq)]
pub struct TelegramSim {
    pub secret_token: String,
    pub bot_token: String,
}

/// Viber: one auth token signs webhooks and authorizes sends.
#[derive(Clone, PartialEq, Eq)]
pub struct ViberSim {
    pub auth_token: String,
}

/// helpline's web chat: one shared secret signs both directions.
#[derive(Clone, PartialEq, Eq)]
pub struct WebSim {
    pub shared_secret: String,
}

/// Apple Messages for Business: the MSP id and the Messaging API secret (Base64, as Apple
/// issues it) sign tokens both ways; the business is the brand's account.
#[derive(Clone, PartialEq, Eq)]
pub struct AppleSim {
    pub msp_id: String,
    pub secret_base64: String,
    pub business_id: String,
}

/// The running simulator. Serves until dropped.
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
}

/// A webhook as the provider would POST it to helpline: path, query, headers and the exact
/// body bytes the signature covers.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub channel: Channel,
    /// `/webhooks/whatsapp`, `/webhooks/messenger`, …
    pub path: String,
    /// The query string without `?`; providers send none.
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// What helpline dedupes on: the WhatsApp `wamid`, Messenger `mid`, Telegram
    /// `update_id`, Viber `message_token`, web chat `message.id`; for a receipt, the id of
    /// the outbound message it reports on.
    pub provider_message_id: String,
    /// The customer as the caller named them (for Telegram, see
    /// [`Simulator::customer_address`]).
    pub customer: String,
}

/// One message a customer got: a send request the simulator answered as a success.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Received {
    pub channel: Channel,
    /// The customer as addressed: WhatsApp `wa_id`, Messenger PSID, Telegram customer name
    /// (or chat id when the name is unknown), Viber user id, web chat session id.
    pub customer: String,
    /// The text, or a media message's caption.
    pub text: Option<String>,
    /// A WhatsApp template's name.
    pub template: Option<String>,
    /// The buttons the message offered, `(id, title)` in order, as read from the
    /// provider's own request shape: WhatsApp reply buttons and list rows (`id`, `title`),
    /// Messenger text quick replies (`payload`, `title`), Telegram inline keyboard buttons
    /// with `callback_data` (`callback_data`, `text`), Viber keyboard `reply` buttons
    /// (`ActionBody`, `Text`), web chat `quick_replies` (each string as both: the web
    /// chat's callback carries ids only). Empty for a message without buttons.
    pub choices: Vec<(String, String)>,
    /// The id the simulator answered with: `wamid.…`, `m_…`, Telegram `message_id`, Viber
    /// `message_token`, web chat `message.id`.
    pub provider_message_id: String,
    /// The web chat `event_id`; the other providers have no idempotency key.
    pub idempotency_key: Option<String>,
    /// The request body (Telegram: its parameters, from wherever they came).
    pub body: serde_json::Value,
    /// When the simulator took the send request: where a latency measurement (such as
    /// `helpline bench`'s end to end) stops its clock.
    #[serde(skip)]
    pub received_at: std::time::Instant,
}

/// A failure the next send request(s) on a channel get, in that provider's shape. A faulted
/// request records nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `500` with the provider's error body (Viber: a bare `500`).
    ServerError { times: usize },
    /// `429` with `Retry-After` and the provider's rate-limit error. Telegram: its `429`
    /// with `parameters.retry_after` and no header; Viber: HTTP `200` with `status: 12`.
    RateLimited { times: usize, retry_after_secs: u64 },
    /// Answers only after `delay` (then as `ServerError`): the caller's timeout fires first.
    Timeout { times: usize, delay: Duration },
    /// A permanent error: HTTP `status` with `code` and `message` in the provider's error
    /// body. Viber answers HTTP `200` with `status: code`, as Viber does for every error.
    Reject {
        times: usize,
        status: u16,
        code: i64,
        message: String,
    },
    /// The customer cannot be messaged freely: WhatsApp `131047` (templates still go
    /// through, and do not consume this fault), Messenger `10`/`2018278`, Telegram `403`,
    /// Viber `status: 6`, web chat `410`.
    CustomerOutsideWindow { times: usize },
}

impl Fault {
    /// The fault's name in reports: `server_error`, `rate_limited`, `timeout`, `reject`,
    /// `outside_window`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::ServerError { .. } => "server_error",
            Fault::RateLimited { .. } => "rate_limited",
            Fault::Timeout { .. } => "timeout",
            Fault::Reject { .. } => "reject",
            Fault::CustomerOutsideWindow { .. } => "outside_window",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

/// A file the simulator serves, by id (WhatsApp media id, Telegram `file_id`) or by URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaRef {
    /// The WhatsApp media id and Telegram `file_id` of the original.
    pub id: String,
    pub mime_type: String,
    pub size: usize,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    /// A plain URL, as Messenger, Viber and web chat give media.
    pub url: String,
}

/// helpline's answer to a delivered webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("could not listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    #[error("could not build the http client: {0}")]
    Client(String),
    #[error("http request failed: {0}")]
    Http(#[from] reqwest::Error),
}

// The built-in credentials are public, so each says `local-only`: a deployment given one
// of them is warned (helpline's `config check` and its start), as docker-compose uses them.

impl Default for WhatsAppSim {
    fn default() -> Self {
        Self {
            app_secret: "sim-local-only-whatsapp-app-secret".to_owned(),
            verify_token: "sim-local-only-whatsapp-verify-token".to_owned(),
            access_token: "sim-local-only-whatsapp-access-token".to_owned(),
            phone_number_id: "106540352242922".to_owned(),
        }
    }
}

impl Default for MessengerSim {
    fn default() -> Self {
        Self {
            app_secret: "sim-local-only-messenger-app-secret".to_owned(),
            verify_token: "sim-local-only-messenger-verify-token".to_owned(),
            page_access_token: "sim-local-only-messenger-page-access-token".to_owned(),
            page_id: "104537512345678".to_owned(),
        }
    }
}

impl Default for TelegramSim {
    fn default() -> Self {
        Self {
            secret_token: "sim_local-only_telegram-secret-token".to_owned(),
            bot_token: "7012345678:AAHsim-local-only-telegram-bot-token_for-tests".to_owned(),
        }
    }
}

impl Default for ViberSim {
    fn default() -> Self {
        Self {
            auth_token: "4a5b6c7d8e9f0a1b-2c3d4e5f6a7b8c9d-sim-local-only-viber-token".to_owned(),
        }
    }
}

impl Default for AppleSim {
    fn default() -> Self {
        Self {
            msp_id: "sim-local-only-msp".to_owned(),
            // "sim-local-only-apple-messaging-secret", Base64.
            secret_base64: "c2ltLWxvY2FsLW9ubHktYXBwbGUtbWVzc2FnaW5nLXNlY3JldA==".to_owned(),
            business_id: "a884eddf-sim-business".to_owned(),
        }
    }
}

impl Default for WebSim {
    fn default() -> Self {
        Self {
            shared_secret: "sim-local-only-web-shared-secret".to_owned(),
        }
    }
}

// Secrets print as `***`; ids are shown.

impl fmt::Debug for WhatsAppSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhatsAppSim")
            .field("app_secret", &"***")
            .field("verify_token", &"***")
            .field("access_token", &"***")
            .field("phone_number_id", &self.phone_number_id)
            .finish()
    }
}

impl fmt::Debug for MessengerSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessengerSim")
            .field("app_secret", &"***")
            .field("verify_token", &"***")
            .field("page_access_token", &"***")
            .field("page_id", &self.page_id)
            .finish()
    }
}

impl fmt::Debug for TelegramSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramSim")
            .field("secret_token", &"***")
            .field("bot_token", &"***")
            .finish()
    }
}

impl fmt::Debug for ViberSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViberSim")
            .field("auth_token", &"***")
            .finish()
    }
}

impl fmt::Debug for AppleSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppleSim")
            .field("msp_id", &self.msp_id)
            .field("secret_base64", &"***")
            .field("business_id", &self.business_id)
            .finish()
    }
}

impl fmt::Debug for WebSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSim")
            .field("shared_secret", &"***")
            .finish()
    }
}

/// Header names and sizes only: header values carry signatures and tokens.
impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Webhook")
            .field("channel", &self.channel)
            .field("path", &self.path)
            .field("headers", &header_names)
            .field("body_len", &self.body.len())
            .field("provider_message_id", &self.provider_message_id)
            .finish()
    }
}

impl Simulator {
    /// Binds `127.0.0.1` on a free port and serves until the simulator is dropped.
    pub async fn start(config: SimulatorConfig) -> Result<Simulator, SimulatorError> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Binds `address` (for `helpline simulate --listen`) and serves until dropped.
    pub async fn start_on(
        address: SocketAddr,
        config: SimulatorConfig,
    ) -> Result<Simulator, SimulatorError> {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(SimulatorError::Bind)?;
        let address = listener.local_addr().map_err(SimulatorError::Bind)?;
        let shared = Arc::new(Shared::new(config, format!("http://{address}")));
        let client = plain_http_client()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = server::router(shared.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    // A dropped sender is the signal too.
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "channel simulator stopped serving");
            }
        });
        tracing::debug!(%address, "channel simulator serving");
        Ok(Simulator {
            shared,
            client,
            shutdown: Some(shutdown),
        })
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.shared.config
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// What helpline's `[channels.X] api_base_url` (web chat: `callback_url`) must be:
    /// WhatsApp `{base}/whatsapp/v21.0`, Messenger `{base}/messenger/v21.0`, Telegram
    /// `{base}/telegram`, Viber `{base}/viber/pa`, web chat `{base}/web/callback`.
    pub fn api_base_url(&self, channel: Channel) -> String {
        let base = &self.shared.base_url;
        match channel {
            Channel::WhatsApp => format!("{base}/whatsapp/v21.0"),
            Channel::Messenger => format!("{base}/messenger/v21.0"),
            Channel::Telegram => format!("{base}/telegram"),
            Channel::Viber => format!("{base}/viber/pa"),
            Channel::WebChat => format!("{base}/web/callback"),
            Channel::AppleMessages => format!("{base}/apple/v1"),
        }
    }

    /// helpline's `[channels.*]` configuration for talking to this simulator instead of
    /// the real providers, as `{"whatsapp": {"app_secret": …, "api_base_url": …}, …}`:
    /// the one description the binary (`helpline dev`, `helpline simulate`) and the tests
    /// deserialize into their channel configuration.
    pub fn helpline_channels(&self) -> serde_json::Value {
        let c = &self.shared.config;
        serde_json::json!({
            "whatsapp": {
                "app_secret": c.whatsapp.app_secret,
                "verify_token": c.whatsapp.verify_token,
                "access_token": c.whatsapp.access_token,
                "phone_number_id": c.whatsapp.phone_number_id,
                "api_base_url": self.api_base_url(Channel::WhatsApp),
            },
            "messenger": {
                "app_secret": c.messenger.app_secret,
                "verify_token": c.messenger.verify_token,
                "page_access_token": c.messenger.page_access_token,
                "api_base_url": self.api_base_url(Channel::Messenger),
            },
            "telegram": {
                "secret_token": c.telegram.secret_token,
                "bot_token": c.telegram.bot_token,
                "api_base_url": self.api_base_url(Channel::Telegram),
            },
            "viber": {
                "auth_token": c.viber.auth_token,
                "api_base_url": self.api_base_url(Channel::Viber),
            },
            "web": {
                "shared_secret": c.web.shared_secret,
                "callback_url": self.api_base_url(Channel::WebChat),
            },
            "apple": {
                "msp_id": c.apple.msp_id,
                "secret": c.apple.secret_base64,
                "business_id": c.apple.business_id,
                "api_base_url": self.api_base_url(Channel::AppleMessages),
            },
        })
    }

    /// The customer's address on the channel, as helpline sees it: the Telegram chat id
    /// (a name that is not a number maps to a stable numeric id), the WhatsApp `wa_id`
    /// without `+`, otherwise `customer` itself.
    pub fn customer_address(&self, channel: Channel, customer: &str) -> String {
        self.shared.address(channel, customer)
    }

    /// What `customer` got on `channel`, in arrival order.
    pub fn received(&self, channel: Channel, customer: &str) -> Vec<Received> {
        let address = self.shared.address(channel, customer);
        self.shared.received(Some((channel, &address)))
    }

    /// Everything every customer got, in arrival order.
    pub fn all_received(&self) -> Vec<Received> {
        self.shared.received(None)
    }

    /// Who got a message and when (`customer` and `received_at` of each [`Received`]), in
    /// arrival order, from the `from`th message on: for following arrivals under load
    /// without copying every message's body.
    pub fn arrivals_from(&self, from: usize) -> Vec<(String, std::time::Instant)> {
        self.shared.arrivals_from(from)
    }

    /// How many messages customers got so far, without copying them.
    pub fn received_count(&self) -> usize {
        self.shared.received_count()
    }

    /// Queues `fault` for the next send request(s) on `channel`, after the faults already
    /// queued there. Faults are applied before credentials are checked.
    pub fn inject(&self, channel: Channel, fault: Fault) {
        self.shared.inject(channel, fault);
    }

    pub fn clear_faults(&self) {
        self.shared.clear_faults();
    }

    /// Makes every provider's send API take a random while before it takes a send
    /// request: a delay drawn uniformly from `latency` per request, from a generator
    /// seeded with `seed`. Sends that overlap in time are then taken in the order their
    /// delays end, as by a real provider; what a customer received is recorded when the
    /// send is taken. Off unless set; [`Simulator::no_send_latency`] turns it off again.
    pub fn send_latency(&self, latency: RangeInclusive<Duration>, seed: u64) {
        let (min, max) = latency.into_inner();
        self.shared
            .set_latency(Some(state::Latency::new(min, max, seed)));
    }

    /// WhatsApp sends to `customer` are not answered from now on: each request stays open
    /// (and nothing is recorded) until the caller gives up, as a provider stuck on one
    /// recipient would, or until [`Simulator::clear_faults`], which lets the requests still
    /// open through. Other customers are served as before. Off unless asked; only the
    /// WhatsApp send API has it (`helpline bench`'s head-of-line row uses it).
    pub fn hang_whatsapp_sends_to(&self, customer: &str) {
        let address = self.shared.address(Channel::WhatsApp, customer);
        self.shared.hang_whatsapp_sends_to(address);
    }

    pub fn no_send_latency(&self) {
        self.shared.set_latency(None);
    }

    /// Every send request seen on `channel`: faulted, refused or recorded.
    pub fn send_attempts(&self, channel: Channel) -> usize {
        self.shared.send_attempts(channel)
    }

    /// How many send requests got an injected fault, by [`Fault::kind`], on all channels
    /// together (faults cleared before a request took them are not counted).
    pub fn faults_served(&self) -> std::collections::BTreeMap<&'static str, usize> {
        self.shared.faults_served()
    }

    /// Web chat callbacks that repeated an `event_id` that came before, each by when the
    /// first of the two arrived (a sender killed after the site took it sends it again
    /// an ack wait later): the site dedupes them, so the customer sees the message once,
    /// but helpline sent it twice.
    pub fn web_repeats(&self) -> Vec<std::time::Instant> {
        self.shared.web_repeats()
    }

    /// A text message from `customer`, signed as the provider signs it, with a fresh
    /// provider message id.
    pub fn webhook(&self, channel: Channel, customer: &str, text: &str) -> Webhook {
        let shared = &self.shared;
        match channel {
            Channel::WhatsApp => whatsapp::text_webhook(shared, customer, text),
            Channel::Messenger => messenger::text_webhook(shared, customer, text),
            Channel::Telegram => telegram::text_webhook(shared, customer, text),
            Channel::Viber => viber::text_webhook(shared, customer, text),
            Channel::WebChat => web::text_webhook(shared, customer, text),
            Channel::AppleMessages => apple::text_webhook(shared, customer, text),
        }
    }

    /// `customer` taps the button `id` (showing `title`) of a message they received, as
    /// each provider reports the tap: a WhatsApp `interactive` `list_reply` (when the
    /// customer's latest message was a list; else a `button_reply`, or a template's
    /// `button` after a template), a Messenger message with `quick_reply.payload`, a
    /// Telegram `callback_query` with `data` (on the customer's latest message, whose id
    /// and keyboard it names), a Viber text message of the `ActionBody`, a web chat text
    /// message of the id. The provider message id is fresh, as for [`Simulator::webhook`]
    /// (for Telegram the `update_id`).
    pub fn webhook_choice(
        &self,
        channel: Channel,
        customer: &str,
        id: &str,
        title: &str,
    ) -> Webhook {
        let shared = &self.shared;
        match channel {
            Channel::WhatsApp => whatsapp::choice_webhook(shared, customer, id, title),
            Channel::Messenger => messenger::choice_webhook(shared, customer, id, title),
            Channel::Telegram => telegram::choice_webhook(shared, customer, id),
            Channel::Viber => viber::text_webhook(shared, customer, id),
            Channel::WebChat => web::text_webhook(shared, customer, id),
            Channel::AppleMessages => apple::choice_webhook(shared, customer, id, title),
        }
    }

    /// A delivered or read receipt for our outbound `provider_message_id`. Messenger's
    /// `read` names no message (a watermark up to now); Telegram bots get no receipts, so
    /// for Telegram this is a signed update without a message, which helpline ignores.
    pub fn webhook_receipt(
        &self,
        channel: Channel,
        customer: &str,
        provider_message_id: &str,
        status: ReceiptKind,
    ) -> Webhook {
        let shared = &self.shared;
        let id = provider_message_id;
        match channel {
            Channel::WhatsApp => whatsapp::receipt_webhook(shared, customer, id, status),
            Channel::Messenger => messenger::receipt_webhook(shared, customer, id, status),
            Channel::Telegram => telegram::receipt_webhook(shared, customer, id),
            Channel::Viber => viber::receipt_webhook(shared, customer, id, status),
            Channel::WebChat => web::receipt_webhook(shared, customer, id, status),
            Channel::AppleMessages => apple::receipt_webhook(shared, customer),
        }
    }

    /// Apple's `close`: `customer` deleted the conversation on their device.
    pub fn apple_close_webhook(&self, customer: &str) -> Webhook {
        apple::close_webhook(&self.shared, customer)
    }

    /// Viber's `unsubscribed` callback: `customer` left the bot and may no longer be
    /// messaged.
    pub fn viber_unsubscribed_webhook(&self, customer: &str) -> Webhook {
        viber::unsubscribed_webhook(&self.shared, customer)
    }

    /// An image from `customer`, referring to media added with [`Simulator::add_media`]:
    /// by id for WhatsApp and Telegram, by URL otherwise.
    pub fn webhook_image(
        &self,
        channel: Channel,
        customer: &str,
        media: &MediaRef,
        caption: Option<&str>,
    ) -> Webhook {
        let shared = &self.shared;
        match channel {
            Channel::WhatsApp => whatsapp::image_webhook(shared, customer, media, caption),
            Channel::Messenger => messenger::image_webhook(shared, customer, media, caption),
            Channel::Telegram => telegram::image_webhook(shared, customer, media, caption),
            Channel::Viber => viber::image_webhook(shared, customer, media, caption),
            Channel::WebChat => web::image_webhook(shared, customer, media, caption),
            Channel::AppleMessages => apple::image_webhook(shared, customer, media, caption),
        }
    }

    /// Stores a file and serves it the way each provider serves media: WhatsApp
    /// `GET {api}/{id}` then the returned URL with the Bearer token, Telegram `getFile` then
    /// `/file/bot<token>/<file_path>`, and [`MediaRef::url`] for the others.
    pub fn add_media(&self, bytes: Vec<u8>, mime: &str) -> MediaRef {
        self.shared.add_media(bytes, mime)
    }

    /// Takes `media`'s download down (`false`: every provider's download of it answers
    /// `503`, lookups still answer) or brings it back (`true`), as a provider's media
    /// server outage would.
    pub fn set_media_reachable(&self, media: &MediaRef, reachable: bool) {
        self.shared.set_media_reachable(&media.id, reachable);
    }

    /// The next `times` sends on `channel` that the provider takes are answered only after
    /// `delay`: a provider slow to confirm what it has already delivered. With `delay`
    /// shorter than the sender's timeout the message must still arrive once; longer, the
    /// sender cannot know it went out (these APIs take no idempotency key). Counted as
    /// `slow_accept` in [`Simulator::faults_served`].
    pub fn accept_slowly(&self, channel: Channel, times: usize, delay: Duration) {
        self.shared.accept_slowly(channel, times, delay);
    }

    /// How often `media`'s bytes were asked for, answered or not.
    pub fn media_downloads(&self, media: &MediaRef) -> usize {
        self.shared.media_downloads(&media.id)
    }

    /// POSTs `webhook` to helpline at `ingress_base_url` (`http://host:port`).
    pub async fn deliver(
        &self,
        ingress_base_url: &str,
        webhook: &Webhook,
    ) -> Result<DeliveryResponse, SimulatorError> {
        let mut url = format!("{}{}", ingress_base_url.trim_end_matches('/'), webhook.path);
        if let Some(query) = &webhook.query {
            url.push('?');
            url.push_str(query);
        }
        let mut request = self
            .client
            .post(url)
            .timeout(DELIVERY_TIMEOUT)
            .body(webhook.body.clone());
        for (name, value) in &webhook.headers {
            request = request.header(name, value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.text().await?;
        Ok(DeliveryResponse { status, body })
    }

    /// Delivers `webhook` as providers do when helpline cannot take it: again, after pauses
    /// that grow from 250 ms to 2 s, while nothing answers (ingress restarting) or the
    /// answer is a `5xx` or `429`, until `give_up_after` has passed. Any other answer ends
    /// it: `200` taken, a `4xx` refused for good (a redelivery would be refused the same).
    /// `on_retry` hears each failed try and the pause before the next.
    pub async fn deliver_until_answered(
        &self,
        ingress_base_url: &str,
        webhook: &Webhook,
        give_up_after: Duration,
        mut on_retry: impl FnMut(&Result<DeliveryResponse, SimulatorError>, Duration),
    ) -> Result<DeliveryResponse, SimulatorError> {
        let give_up = std::time::Instant::now() + give_up_after;
        let mut pause = Duration::from_millis(250);
        loop {
            let outcome = self.deliver(ingress_base_url, webhook).await;
            let again = match &outcome {
                Ok(answer) => answer.status >= 500 || answer.status == 429,
                Err(_) => true,
            };
            if !again || std::time::Instant::now() + pause > give_up {
                return outcome;
            }
            on_retry(&outcome, pause);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// A client for plain `http://` that works without a process-wide TLS provider, e.g.
    /// to call the simulator's APIs from a test.
    pub fn http_client(&self) -> reqwest::Client {
        self.client.clone()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may already be gone; there is nothing left to stop then.
            let _ = shutdown.send(());
        }
    }
}

impl Webhook {
    /// The body changed after signing (a field added at the end), so the signature no
    /// longer matches. Telegram signs no body, and would accept a changed one; its tampered
    /// webhook also presents a wrong secret token, as a forger without the token would.
    pub fn tampered(&self) -> Webhook {
        let mut tampered = self.clone();
        tampered.body = match self.body.iter().rposition(|&byte| byte == b'}') {
            Some(end) => {
                let mut body = self.body.clone();
                body.splice(end..end, b", \"tampered\": true".iter().copied());
                body
            }
            None => [self.body.as_slice(), b" "].concat(),
        };
        // Telegram and Apple sign no body: their tampered webhook presents a wrong
        // credential too, as a forger without the secret would.
        if matches!(self.channel, Channel::Telegram | Channel::AppleMessages) {
            tampered = tampered.with_wrong_signature();
        }
        tampered
    }

    /// The same body with a signature (Telegram: a secret token) of the right form made
    /// with the wrong key.
    pub fn with_wrong_signature(&self) -> Webhook {
        let mut forged = self.clone();
        let wrong = |value: &str| -> String {
            match self.channel {
                Channel::WhatsApp | Channel::Messenger | Channel::WebChat => {
                    format!("sha256={}", codec::hmac_hex("not-the-secret", &self.body))
                }
                Channel::Viber => codec::hmac_hex("not-the-secret", &self.body),
                Channel::Telegram => format!("{value}-not"),
                Channel::AppleMessages => codec::resigned_bearer(value, "not-the-secret"),
            }
        };
        let header = signature_header(self.channel);
        for (name, value) in &mut forged.headers {
            if name.eq_ignore_ascii_case(header) {
                *value = wrong(value);
            }
        }
        forged
    }
}

/// The header that carries a channel's signature or secret.
fn signature_header(channel: Channel) -> &'static str {
    match channel {
        Channel::WhatsApp | Channel::Messenger => meta::SIGNATURE_HEADER,
        Channel::Telegram => telegram::SECRET_HEADER,
        Channel::Viber => viber::SIGNATURE_HEADER,
        Channel::WebChat => web::SIGNATURE_HEADER,
        Channel::AppleMessages => apple::AUTHORIZATION,
    }
}

/// The name a simulated customer shows, made from how the caller named them.
fn display_name(customer: &str) -> String {
    format!("Sim {customer}")
}

/// reqwest builds a rustls configuration even for `http://`; without a process-wide
/// provider it would panic. The simulator brings its own (ring) and trusts no roots: it
/// never speaks TLS.
fn plain_http_client() -> Result<reqwest::Client, SimulatorError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| SimulatorError::Client(error.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .map_err(|error| SimulatorError::Client(error.to_string()))
}
