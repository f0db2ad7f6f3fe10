//! The webhook routes: `POST /webhooks/{whatsapp,messenger,telegram,viber,web}` and Meta's
//! `GET` verification handshake for WhatsApp and Messenger.
//!
//! Order of checks, per the channel policy: body size (413) → signature on the raw body
//! (401) → content type (415) → JSON (400) → dedupe → append → `200`. A webhook is
//! answered `200` only after all its messages and receipts are durably appended, and
//! nothing else stands before it: attachments are fetched afterwards, from the log
//! ([`crate::media`]). If the event store or a bucket is unavailable the answer is `503`,
//! so the provider delivers again later.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use helpline_domain::Channel;
use helpline_eventstore::EventStore;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::front_door::{self, BodyBudget, BodyError, Door, Refusals, Sampled, read_body};
use crate::intake::{Intake, IntakeError};
use crate::media::{self, MediaConfig, MediaError, MediaSources};
use crate::media_policy::MediaHostsConfig;
use crate::receipts::{ReceiptError, Receipts};
use helpline_channels::{
    ChannelsConfig, ConfigError, Inbound, InboundAdapter, MAX_BODY_BYTES, WebhookError,
    WebhookRequest,
};

/// `[ingress]`; a key left out takes its default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressConfig {
    /// The HTTP address of the webhook routes.
    pub listen: SocketAddr,
    /// The largest webhook body, in bytes (4 MiB unless set).
    pub max_body_bytes: usize,
    /// The language a new ticket is served in until the bot learns better (BCP 47).
    pub default_language: String,
    /// The languages the region serves (not a key of `[ingress]`: the binary sets them
    /// from the region file). A provider that names the customer's language (Apple's
    /// `locale`) opens their ticket in it if it is one of these.
    #[serde(skip)]
    pub languages: Vec<String>,
    /// The largest attachment kept in the media bucket, in bytes; a larger one is
    /// recorded as not fetched.
    pub max_media_bytes: u64,
    /// The most bytes of attachments one ticket keeps; past it, attachments are recorded
    /// as not fetched. A customer has one open ticket at a time, so this is also what one
    /// customer can make helpline keep at once.
    pub max_media_bytes_per_ticket: u64,
    /// The media bucket's own size limit, in bytes (set when ingress creates the bucket,
    /// and reserved by JetStream on the servers then): attachments can never take the
    /// room the event log needs.
    pub media_store_max_bytes: u64,
    /// `[ingress.media_hosts]`: where each channel's attachment URLs may point
    /// (`crate::media_policy`).
    pub media_hosts: MediaHostsConfig,
    /// How often the media consumer tries to fetch an attachment before recording it as
    /// not fetched.
    pub media_fetch_attempts: u32,
    /// Delay before the media consumer's second try, doubled per try (at most 30 s).
    pub media_retry_backoff_ms: u64,
    /// Time a caller has to send a request's headers, and the longest a kept-alive
    /// connection may sit idle, in milliseconds.
    pub header_timeout_ms: u64,
    /// Time a caller has to send a webhook's body once its headers are in, in
    /// milliseconds; `408` after.
    pub body_timeout_ms: u64,
    /// Connections open at once on the webhook port (and the ops port); one more is
    /// closed at once.
    pub max_connections: usize,
    /// Bytes of webhook bodies held at once, over all requests; a body that finds it
    /// spent is answered `503` with `Retry-After`, and the provider delivers it again.
    pub max_buffered_body_bytes: usize,
    /// Refused webhooks one source address may send a channel within 10 s before it is
    /// answered `429` at once, unverified; 0 turns the limit off.
    pub max_refusals_per_source: u32,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_body_bytes: MAX_BODY_BYTES,
            default_language: "de".to_owned(),
            languages: Vec::new(),
            max_media_bytes: 16 * 1024 * 1024,
            max_media_bytes_per_ticket: 64 * 1024 * 1024,
            // JetStream reserves it on the server when the bucket is made: modest by
            // default, raised where the region's servers have the disk for it.
            media_store_max_bytes: 1024 * 1024 * 1024,
            media_hosts: MediaHostsConfig::default(),
            // 2 s, 4 s, … then every 30 s: about eight minutes of a media server's outage
            // before the agent is told the attachment is missing.
            media_fetch_attempts: 20,
            media_retry_backoff_ms: 2_000,
            header_timeout_ms: 5_000,
            body_timeout_ms: 10_000,
            max_connections: 1024,
            // Sixteen bodies at the largest size, or thousands of real webhooks.
            max_buffered_body_bytes: 64 * 1024 * 1024,
            // A provider misconfigured is refused every time anyway; a forger is slowed.
            max_refusals_per_source: 100,
        }
    }
}

impl IngressConfig {
    /// How the webhook port (and the ops port) takes connections.
    pub fn door(&self) -> Door {
        Door {
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            max_connections: self.max_connections,
        }
    }

    /// The media consumer's settings, with the channels' media credentials; an
    /// unreadable `media_hosts` entry is an error.
    pub fn media(&self, channels: &ChannelsConfig) -> Result<MediaConfig, MediaError> {
        let parsed = self
            .media_hosts
            .parse()
            .map_err(|reason| MediaError::Config(format!("ingress.media_hosts.{reason}")))?;
        Ok(MediaConfig {
            sources: MediaSources {
                whatsapp: channels
                    .whatsapp
                    .as_ref()
                    .map(|c| (c.api_base_url.clone(), c.access_token.clone())),
                telegram: channels
                    .telegram
                    .as_ref()
                    .map(|c| (c.api_base_url.clone(), c.bot_token.clone())),
                apple: channels.apple.clone(),
                hosts: parsed,
            },
            max_bytes: self.max_media_bytes,
            max_bytes_per_ticket: self.max_media_bytes_per_ticket,
            store_max_bytes: self.media_store_max_bytes,
            attempts: self.media_fetch_attempts,
            retry_backoff: std::time::Duration::from_millis(self.media_retry_backoff_ms),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error(transparent)]
    Receipts(#[from] ReceiptError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("webhook server failed: {0}")]
    Serve(std::io::Error),
}

/// The configured channels and the intake behind the routes.
#[derive(Clone)]
pub struct Ingress {
    inner: Arc<Inner>,
}

struct Inner {
    adapters: HashMap<&'static str, Box<dyn InboundAdapter>>,
    intake: Intake,
    receipts: Receipts,
    max_body_bytes: usize,
    body_timeout: Duration,
    budget: BodyBudget,
    /// Refused webhooks are logged by kind, sampled.
    refusals: Sampled,
    /// And counted per source, which past its limit is answered 429 at once.
    sources: Refusals,
}

impl std::fmt::Debug for Ingress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut channels: Vec<&str> = self.inner.adapters.keys().copied().collect();
        channels.sort_unstable();
        f.debug_struct("Ingress")
            .field("channels", &channels)
            .finish()
    }
}

impl Ingress {
    pub async fn new(
        store: EventStore,
        config: &IngressConfig,
        channels: &ChannelsConfig,
    ) -> Result<Self, IngressError> {
        let adapters: HashMap<&'static str, Box<dyn InboundAdapter>> = channels
            .inbound_adapters()?
            .into_iter()
            .map(|adapter| (adapter.channel().as_str(), adapter))
            .collect();
        let intake = Intake::new(store.clone(), config.default_language.clone())
            .await?
            .serving(config.languages.clone());
        let receipts = Receipts::new(store, intake.seen()).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                adapters,
                intake,
                receipts,
                max_body_bytes: config.max_body_bytes,
                body_timeout: Duration::from_millis(config.body_timeout_ms),
                budget: BodyBudget::new(config.max_buffered_body_bytes),
                refusals: Sampled::new(),
                sources: Refusals::new(config.max_refusals_per_source),
            }),
        })
    }

    /// The webhook routes, to be served alone or merged with other routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/webhooks/{channel}",
                post(receive_webhook).get(verify_handshake),
            )
            // The body is read by the handler (front_door::read_body), bounded there.
            .layer(DefaultBodyLimit::disable())
            .layer(axum::middleware::from_fn(measure))
            .with_state(self.clone())
    }
}

/// Records every webhook's latency, from the request to the answer, by channel and status
/// (`helpline_webhook_seconds`).
async fn measure(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let channel = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .and_then(|name| Channel::ALL.into_iter().find(|c| c.as_str() == name))
        .map_or("unknown", Channel::as_str);
    let response = next.run(request).await;
    helpline_telemetry::metrics::observe(
        "helpline_webhook_seconds",
        "Time from a webhook's request to helpline's answer (a 200 only after the append).",
        &[("channel", channel), ("status", response.status().as_str())],
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Serves the webhook routes on `config.listen`, and fetches attachments with the media
/// consumer, until `shutdown` is cancelled.
pub async fn run(
    store: EventStore,
    config: IngressConfig,
    channels: ChannelsConfig,
    shutdown: CancellationToken,
) -> Result<(), IngressError> {
    let ingress = Ingress::new(store.clone(), &config, &channels).await?;
    // Its own token, so that a serve error stops it too without cancelling the caller's.
    let stop_fetching = shutdown.child_token();
    let fetching = tokio::spawn(media::run(
        store,
        config.media(&channels)?,
        stop_fetching.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| IngressError::Listen {
            addr: config.listen,
            source,
        })?;
    tracing::info!(listen = %config.listen, ?ingress, "webhooks served");
    let served = front_door::serve(listener, ingress.router(), config.door(), shutdown.clone())
        .await
        .map_err(IngressError::Serve);
    stop_fetching.cancel();
    match fetching.await {
        Ok(Ok(())) => served,
        Ok(Err(error)) => served.and(Err(error.into())),
        Err(join) => {
            tracing::error!(error = %join, "media consumer task failed");
            served
        }
    }
}

async fn receive_webhook(
    State(ingress): State<Ingress>,
    Path(channel): Path<String>,
    RawQuery(query): RawQuery,
    source: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let source = source.map(|Extension(ConnectInfo(address))| address.ip());
    // Refusals are counted per configured channel, and every other word of the path
    // under one name: a caller inventing paths neither grows the count nor escapes it.
    let counted = if ingress.inner.adapters.contains_key(channel.as_str()) {
        channel.as_str()
    } else {
        "unconfigured"
    };
    if let Some(source) = source
        && !ingress.inner.sources.admits(source, counted)
    {
        return ingress.too_many_refusals(&channel);
    }
    let response = receive(&ingress, &channel, query, headers, body).await;
    if let Some(source) = source
        && response.status().is_client_error()
    {
        ingress.inner.sources.note(source, counted);
    }
    response
}

async fn receive(
    ingress: &Ingress,
    channel: &str,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let channel = channel.to_owned();
    let Some(adapter) = ingress.inner.adapters.get(channel.as_str()) else {
        return ingress.refuse(&channel, StatusCode::NOT_FOUND, "channel is not configured");
    };
    let inner = &ingress.inner;
    let body = match read_body(
        &headers,
        body,
        inner.max_body_bytes,
        inner.body_timeout,
        &inner.budget,
    )
    .await
    {
        Ok(body) => body,
        Err(BodyError::TooLarge { limit }) => {
            return ingress.webhook_error(&channel, &WebhookError::TooLarge { limit });
        }
        Err(error) => {
            let status = error.status();
            ingress.refusal_said(&channel, status, &error.to_string());
            return error.into_response();
        }
    };
    let body = &body.bytes;
    let request = WebhookRequest {
        headers: &headers,
        query: query.as_deref(),
        body,
    };
    if let Err(error) = adapter.verify(&request) {
        return ingress.webhook_error(&channel, &error);
    }
    if !is_json(&headers) {
        let error = WebhookError::UnsupportedMediaType("expected application/json".to_owned());
        return ingress.webhook_error(&channel, &error);
    }
    let inbound = match adapter.parse(body) {
        Ok(inbound) => inbound,
        Err(error) => return ingress.webhook_error(&channel, &error),
    };
    let channel_id = adapter.channel();
    for item in inbound {
        match item {
            Inbound::Message(message) => match ingress.inner.intake.take(channel_id, message).await
            {
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(channel, %error, "webhook not taken, provider will retry");
                    return (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response();
                }
            },
            Inbound::Receipt(receipt) => {
                if let Err(error) = ingress.inner.receipts.take(channel_id, &receipt).await {
                    tracing::error!(channel, %error, "receipt not taken, provider will retry");
                    return (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response();
                }
            }
            // Messenger's `read`, and `delivery` without `mids`, name no message: only a
            // time up to which everything sent to the customer was read or delivered.
            // Recording it would mean finding every outbound message of the customer
            // before that time, which nothing indexes; deliveries are recorded at
            // acceptance anyway.
            Inbound::Watermark(_) => {
                tracing::debug!(channel, "watermark not recorded: it names no message");
            }
            Inbound::Closed(closed) => {
                if let Err(error) = ingress.inner.intake.close(channel_id, &closed).await {
                    tracing::error!(channel, %error, "closing not taken, provider will retry");
                    return (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response();
                }
            }
            Inbound::Consent(consent) => {
                if let Err(error) = ingress.inner.intake.consent(channel_id, &consent).await {
                    tracing::error!(channel, %error, "consent not taken, provider will retry");
                    return (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response();
                }
            }
            Inbound::Ignored { reason } => tracing::debug!(channel, %reason, "event ignored"),
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"ok\":true}",
    )
        .into_response()
}

async fn verify_handshake(
    State(ingress): State<Ingress>,
    Path(channel): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(adapter) = ingress.inner.adapters.get(channel.as_str()) else {
        return ingress.refuse(&channel, StatusCode::NOT_FOUND, "channel is not configured");
    };
    match adapter.handshake(query.as_deref()) {
        None => ingress.refuse(
            &channel,
            StatusCode::METHOD_NOT_ALLOWED,
            "no handshake on this channel",
        ),
        Some(Ok(challenge)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            challenge,
        )
            .into_response(),
        Some(Err(error)) => ingress.webhook_error(&channel, &error),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

impl Ingress {
    /// A source refused too often: answered without being heard, counted, logged sampled.
    fn too_many_refusals(&self, channel: &str) -> Response {
        helpline_telemetry::metrics::increment(
            "helpline_webhooks_refused_total",
            "Webhooks answered with an error status, by channel and status.",
            &[("channel", channel), ("status", "429")],
        );
        if let Some(unsaid) = self.inner.refusals.due(&format!("{channel}:429")) {
            tracing::warn!(
                channel,
                limit = self.inner.sources.limit(),
                unsaid,
                "webhook source refused too often: answered 429 unheard"
            );
        }
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "10")],
            "too many refused requests from this address; try again later\n",
        )
            .into_response()
    }

    fn webhook_error(&self, channel: &str, error: &WebhookError) -> Response {
        let status = StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::BAD_REQUEST);
        self.refuse(channel, status, &error.to_string())
    }

    fn refuse(&self, channel: &str, status: StatusCode, reason: &str) -> Response {
        self.refusal_said(channel, status, reason);
        (status, format!("{reason}\n")).into_response()
    }

    /// Counts every refusal, and logs it sampled per channel and status: a caller
    /// sending thousands of bad signatures a second must not flood the log.
    fn refusal_said(&self, channel: &str, status: StatusCode, reason: &str) {
        helpline_telemetry::metrics::increment(
            "helpline_webhooks_refused_total",
            "Webhooks answered with an error status, by channel and status.",
            &[("channel", channel), ("status", status.as_str())],
        );
        if let Some(unsaid) = self
            .inner
            .refusals
            .due(&format!("{channel}:{}", status.as_u16()))
        {
            tracing::warn!(
                channel,
                status = status.as_u16(),
                reason,
                unsaid,
                "webhook refused"
            );
        }
    }
}
