//! The web-chat widget's backend: what the `<script>` on the brand's service website talks
//! to. It plays the site's chat backend of the web chat channel (CHANNELS.md §5): a
//! customer's message is signed here with the channel's shared secret and sent to
//! ingress's `/webhooks/web`, and helpline's replies come back to `/widget/callback`,
//! signed the same way. The page never holds the secret.
//!
//! A widget session is a bearer token the page keeps: a random session id and its HMAC
//! under a key derived from the shared secret, so any console replica can check it and
//! nobody can make one for another session. What a session's customer sees — their own
//! messages and helpline's replies — is kept in the widget stream
//! (`Layout::widget_stream`), one subject per customer, each message sealed under the
//! customer's key: a page that reconnects reads on from the last sequence it showed, and
//! a page opened again reads it all. Erasing the customer erases it with the rest.
//!
//! Invariants:
//! - A session reads only its own subject: the subject is derived from the token's
//!   session, never from anything else the page sends.
//! - A message the page sends again (a retry after a lost answer) is one message: its id
//!   is the webhook's `message.id`, which ingress dedupes, and the widget stream's
//!   message id.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::HeaderMap as NatsHeaders;
use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use helpline_domain::Channel;
use helpline_eventstore::{CustomerId, EventStore, Kept};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Console;
use crate::web::error;

mod uploads;

pub(crate) use uploads::{upload, uploaded};

/// How the page names a session: `wgt_` and 32 hex digits.
const SESSION_PREFIX: &str = "wgt_";
/// The header the web chat's webhooks are signed in, both ways.
const SIGNATURE_HEADER: &str = "x-helpline-signature";
/// The largest message a customer may type, in characters.
const MAX_TEXT_CHARS: usize = 4096;
/// The largest callback body taken from egress.
const MAX_CALLBACK_BYTES: usize = 64 * 1024;
/// How often an idle event stream carries a comment, so that proxies keep it open and a
/// page learns early that it broke.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the widget's backend is configured with. `Debug` never prints the secret.
#[derive(Clone)]
pub struct WidgetSettings {
    /// `[channels.web] shared_secret`: signs webhooks both ways, and keys the sessions.
    pub shared_secret: String,
    /// Ingress's `/webhooks/web`, where customers' messages are sent.
    pub webhook_url: String,
    /// Where callbacks for sessions the widget did not open are passed on (the site's own
    /// chat backend, if it has one besides the widget); without it they are refused.
    pub forward_url: Option<String>,
    /// The sites (origins, `https://www.example.com`) whose pages may call the widget's
    /// API; empty: any site.
    pub origins: Vec<String>,
    /// This console as ingress reaches it (`http://console:8088`): the files customers
    /// attach are fetched from here, so ingress's `media_hosts.web` must name it.
    pub upload_base_url: String,
    /// The largest file a customer may attach, in bytes.
    pub max_upload_bytes: usize,
}

impl std::fmt::Debug for WidgetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WidgetSettings")
            .field("shared_secret", &"***")
            .field("webhook_url", &self.webhook_url)
            .field("forward_url", &self.forward_url)
            .field("origins", &self.origins)
            .field("upload_base_url", &self.upload_base_url)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .finish()
    }
}

/// The widget's backend. `Debug` prints neither the secret nor the session key.
pub struct Widget {
    settings: WidgetSettings,
    /// Keys the sessions' tokens: HMAC-SHA256 of a fixed label under the shared secret.
    session_key: [u8; 32],
    store: EventStore,
    http: reqwest::Client,
}

impl std::fmt::Debug for Widget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Widget")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Widget {
    pub fn new(settings: WidgetSettings, store: EventStore) -> Result<Self, reqwest::Error> {
        let session_key = hmac_sha256(
            settings.shared_secret.as_bytes(),
            b"helpline widget session",
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            settings,
            session_key,
            store,
            http,
        })
    }

    /// A new session's id and token.
    fn open_session(&self) -> Result<(String, String), getrandom::Error> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)?;
        let session = format!("{SESSION_PREFIX}{}", hex::encode(random));
        let token = format!(
            "{session}.{}",
            hex::encode(hmac_sha256(&self.session_key, session.as_bytes()))
        );
        Ok((session, token))
    }

    /// The session a token names, when the token is one this region's widget made.
    fn session_of(&self, token: &str) -> Option<String> {
        let (session, mac) = token.split_once('.')?;
        if !session.starts_with(SESSION_PREFIX) || session.len() != SESSION_PREFIX.len() + 32 {
            return None;
        }
        let mac = hex::decode(mac).ok()?;
        let mut check = Hmac::<Sha256>::new_from_slice(&self.session_key).ok()?;
        check.update(session.as_bytes());
        // Constant time: `verify_slice` compares without an early exit.
        check.verify_slice(&mac).ok()?;
        Some(session.to_owned())
    }

    fn customer(&self, session: &str) -> CustomerId {
        self.store.customer_id(Channel::WebChat, session)
    }

    fn subject(&self, session: &str) -> String {
        self.store.layout().widget_subject(&self.customer(session))
    }

    fn sign(&self, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex::encode(hmac_sha256(self.settings.shared_secret.as_bytes(), body))
        )
    }

    /// Keeps `message` in the session's conversation, sealed; a message kept before under
    /// the same id is kept once.
    async fn keep(&self, session: &str, message: &Shown) -> Result<(), String> {
        let customer = self.customer(session);
        let plain = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        let sealed = self
            .store
            .seal_kept(Kept::WidgetMessage, &customer, &message.id, &plain)
            .await
            .map_err(|e| e.to_string())?;
        let mut headers = NatsHeaders::new();
        // Deduplicated within the session: a page chooses its ids, and one session's
        // choice must never silence another's message.
        headers.insert("Nats-Msg-Id", format!("{customer}.{}", message.id).as_str());
        headers.insert(ENTRY_HEADER, message.id.as_str());
        self.store
            .jetstream()
            .publish_with_headers(self.subject(session), headers, sealed.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// The header naming a kept message's id, which its seal is bound to.
const ENTRY_HEADER: &str = "Helpline-Widget-Message";

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// A message as the widget shows it.
#[derive(Debug, Serialize, Deserialize)]
struct Shown {
    /// The page's id for a customer's message; helpline's for a reply.
    id: String,
    from: Speaker,
    text: String,
    /// The answers offered (the rating's `1`…`5`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    quick_replies: Vec<String>,
    /// The names of the files the customer attached.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<String>,
    /// Unix milliseconds, when the backend took it.
    at: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Speaker {
    Customer,
    Helpline,
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// A request the widget's backend turns away, and why.
#[derive(Debug)]
pub(crate) struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// What a page is told when its message or its reading did not go through now: it tries
/// again, with the same message id or from the same sequence.
const TRY_AGAIN: Refusal = Refusal(StatusCode::SERVICE_UNAVAILABLE, "not now; try again");

/// The widget of this console, or the answer that says it is not configured.
fn widget_of(console: &Console) -> Result<&Widget, Refusal> {
    console.widget.as_ref().ok_or(Refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "the web-chat widget is not configured here: it needs [channels.web]",
    ))
}

/// The session of a request's `authorization: Bearer`, or the 401 that says why not.
fn bearer_session(widget: &Widget, headers: &HeaderMap) -> Result<String, Refusal> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| widget.session_of(token.trim()))
        .ok_or(Refusal(
            StatusCode::UNAUTHORIZED,
            "no widget session, or not one of this site's",
        ))
}

#[derive(Serialize)]
struct Opened {
    token: String,
}

/// `POST /widget/api/sessions`: a new chat, as a token the page keeps.
pub(crate) async fn open_session(State(console): State<Arc<Console>>) -> Result<Response, Refusal> {
    let widget = widget_of(&console)?;
    let (session, token) = widget.open_session().map_err(|e| {
        tracing::error!(error = %e, "widget: no randomness for a session");
        TRY_AGAIN
    })?;
    tracing::info!(customer = %widget.customer(&session), "widget session opened");
    Ok((StatusCode::CREATED, axum::Json(Opened { token })).into_response())
}

/// What a page sends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sent {
    /// The page's id for the message, the same on every retry: 8 to 64 letters, digits,
    /// `-` or `_`.
    id: String,
    text: String,
    /// The customer's name, if the site knows it.
    #[serde(default)]
    name: Option<String>,
    /// The page's language (BCP 47).
    #[serde(default)]
    locale: Option<String>,
    /// Files uploaded before (`POST /widget/api/uploads`), by the name it answered.
    #[serde(default)]
    attachments: Vec<Attached>,
}

/// A file of the message: an upload's name and what the page knows of it.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct Attached {
    upload: String,
    #[serde(default)]
    file_name: Option<String>,
}

impl Sent {
    fn problem(&self) -> Option<&'static str> {
        let id_ok = (8..=64).contains(&self.id.len())
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            Some("a message's id is 8 to 64 letters, digits, - or _")
        } else if self.text.trim().is_empty() && self.attachments.is_empty() {
            Some("a message needs text or an attachment")
        } else if self.attachments.len() > 5 {
            Some("a message has at most 5 attachments")
        } else if self
            .attachments
            .iter()
            .any(|a| !uploads::is_upload_name(&a.upload))
        {
            Some("an attachment names an upload (its name from /widget/api/uploads)")
        } else if self.text.chars().count() > MAX_TEXT_CHARS {
            Some("a message is at most 4096 characters")
        } else {
            None
        }
    }
}

/// `POST /widget/api/messages`: the customer's message, signed and sent to ingress, then
/// kept for the page; 200 once both hold, 503 (the page tries again, with the same id)
/// when either did not.
pub(crate) async fn send(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let widget = widget_of(&console)?;
    let session = bearer_session(widget, &headers)?;
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| Refusal(StatusCode::PAYLOAD_TOO_LARGE, "message too large"))?;
    let sent: Sent = serde_json::from_slice(&bytes).map_err(|_| {
        Refusal(
            StatusCode::BAD_REQUEST,
            "a message is {\"id\": …, \"text\": …}",
        )
    })?;
    if let Some(problem) = sent.problem() {
        return Err(Refusal(StatusCode::BAD_REQUEST, problem));
    }
    let sent_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut customer = serde_json::json!({ "id": session });
    if let Some(name) = sent.name.as_deref().filter(|n| !n.trim().is_empty()) {
        customer["name"] = name.into();
    }
    if let Some(locale) = sent.locale.as_deref().filter(|l| !l.trim().is_empty()) {
        customer["locale"] = locale.into();
    }
    let mut message = serde_json::json!({ "id": format!("wc_{}", sent.id) });
    if !sent.text.trim().is_empty() {
        message["text"] = sent.text.clone().into();
    }
    if !sent.attachments.is_empty() {
        let mut attachments = Vec::new();
        for attached in &sent.attachments {
            attachments.push(widget.attachment(&session, attached).await?);
        }
        message["attachments"] = attachments.into();
    }
    let webhook = serde_json::json!({
        "version": 1,
        "event_id": format!("evt_{}", sent.id),
        "type": "message",
        "sent_at": sent_at,
        "session_id": session,
        "customer": customer,
        "message": message,
    });
    let webhook = serde_json::to_vec(&webhook).map_err(|_| {
        Refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the message could not be encoded",
        )
    })?;
    let answer = widget
        .http
        .post(&widget.settings.webhook_url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, widget.sign(&webhook))
        .body(webhook)
        .send()
        .await;
    match answer {
        Ok(answer) if answer.status().is_success() => {}
        Ok(answer) if answer.status().is_client_error() && answer.status() != 429 => {
            let status = answer.status();
            let said = answer.text().await.unwrap_or_default();
            tracing::warn!(%status, said = %said, "widget: ingress refused a customer's message");
            return Err(Refusal(StatusCode::BAD_REQUEST, "the message was refused"));
        }
        Ok(answer) => {
            tracing::warn!(status = %answer.status(), "widget: ingress did not take a message now");
            return Err(TRY_AGAIN);
        }
        Err(e) => {
            tracing::warn!(error = %e, "widget: ingress did not answer");
            return Err(TRY_AGAIN);
        }
    }
    let shown = Shown {
        id: format!("c_{}", sent.id),
        from: Speaker::Customer,
        text: sent.text,
        quick_replies: Vec::new(),
        attachments: sent
            .attachments
            .iter()
            .map(|a| a.file_name.clone().unwrap_or_else(|| a.upload.clone()))
            .collect(),
        at: unix_millis(),
    };
    widget.keep(&session, &shown).await.map_err(|e| {
        // Ingress has it: the conversation goes on, and the page's retry keeps it here.
        tracing::warn!(error = %e, "widget: a customer's message was not kept for the page");
        TRY_AGAIN
    })?;
    Ok(axum::Json(serde_json::json!({ "ok": true })).into_response())
}

/// What egress posts (CHANNELS.md §5, helpline's side).
#[derive(Deserialize)]
struct Callback {
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    session_id: String,
    message: CallbackMessage,
}

#[derive(Deserialize)]
struct CallbackMessage {
    text: String,
    #[serde(default)]
    quick_replies: Vec<String>,
}

/// `POST /widget/callback`: a reply from helpline (egress) to a widget session, kept for
/// its page; 200 once kept, so egress sends again until it is.
pub(crate) async fn callback(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let widget = widget_of(&console)?;
    let body = axum::body::to_bytes(body, MAX_CALLBACK_BYTES)
        .await
        .map_err(|_| Refusal(StatusCode::PAYLOAD_TOO_LARGE, "callback too large"))?;
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok());
    let verified = signature.is_some_and(|signature| {
        Hmac::<Sha256>::new_from_slice(widget.settings.shared_secret.as_bytes())
            .map(|mut mac| {
                mac.update(&body);
                mac.verify_slice(&signature).is_ok()
            })
            .unwrap_or(false)
    });
    if !verified {
        tracing::warn!("widget: a callback without a valid signature was refused");
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "X-Helpline-Signature does not hold",
        ));
    }
    let callback: Callback = serde_json::from_slice(&body).map_err(|e| {
        tracing::warn!(error = %e, "widget: a malformed callback was refused");
        Refusal(StatusCode::BAD_REQUEST, "not a web chat callback")
    })?;
    if callback.kind != "message" {
        return Err(Refusal(StatusCode::BAD_REQUEST, "a callback is a message"));
    }
    if !callback.session_id.starts_with(SESSION_PREFIX) {
        return Ok(forward(widget, &headers, body).await);
    }
    let shown = Shown {
        id: callback.event_id,
        from: Speaker::Helpline,
        text: callback.message.text,
        quick_replies: callback.message.quick_replies,
        attachments: Vec::new(),
        at: unix_millis(),
    };
    widget
        .keep(&callback.session_id, &shown)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "widget: a reply was not kept; egress sends it again");
            TRY_AGAIN
        })?;
    Ok(axum::Json(serde_json::json!({ "ok": true })).into_response())
}

/// A callback for a session the widget did not open, passed on as it came.
async fn forward(widget: &Widget, headers: &HeaderMap, body: Bytes) -> Response {
    let Some(url) = &widget.settings.forward_url else {
        return error(
            StatusCode::NOT_FOUND,
            "no widget session of that name, and console.widget_forward_url is not set",
        );
    };
    let mut request = widget
        .http
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(signature) = headers.get(SIGNATURE_HEADER) {
        request = request.header(SIGNATURE_HEADER, signature);
    }
    match request.send().await {
        Ok(answer) => {
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = answer.bytes().await.unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "widget: the forward URL did not answer");
            error(StatusCode::BAD_GATEWAY, "the forward URL did not answer")
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct After {
    /// The last sequence the page has shown; 0 (or none) for the whole conversation.
    #[serde(default)]
    after: u64,
}

/// One message as the page receives it.
#[derive(Serialize)]
struct Delivered {
    seq: u64,
    #[serde(flatten)]
    shown: Option<Shown>,
    /// The customer was erased: the message is gone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    erased: bool,
}

/// `GET /widget/api/events?after=N`: the session's conversation from after sequence `N`
/// on, then each new message as it is kept, as server-sent events (`id:` the sequence).
/// A comment every 15 s keeps it open.
pub(crate) async fn events(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(After { after }): Query<After>,
) -> Result<Response, Refusal> {
    let widget = widget_of(&console)?;
    let session = bearer_session(widget, &headers)?;
    let unreadable = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, "widget: the conversation cannot be read now");
        TRY_AGAIN
    };
    let stream = widget
        .store
        .jetstream()
        .get_stream_no_info(widget.store.layout().widget_stream())
        .await
        .map_err(|e| unreadable(&e))?;
    let mut messages = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: widget.subject(&session),
            deliver_policy: match after {
                0 => DeliverPolicy::All,
                after => DeliverPolicy::ByStartSequence {
                    start_sequence: after.saturating_add(1),
                },
            },
            ..Default::default()
        })
        .await
        .map_err(|e| unreadable(&e))?
        .messages()
        .await
        .map_err(|e| unreadable(&e))?;
    let (frames, mut taken) = tokio::sync::mpsc::channel::<Bytes>(16);
    let store = widget.store.clone();
    let customer = widget.customer(&session);
    tokio::spawn(async move {
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.tick().await;
        loop {
            let frame = tokio::select! {
                _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
                _ = frames.closed() => break,
                next = messages.next() => match next {
                    Some(Ok(message)) => match delivered(&store, &customer, &message).await {
                        Some(frame) => frame,
                        None => break,
                    },
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "widget: a conversation's reading ended");
                        break;
                    }
                    None => break,
                },
            };
            if frames.send(frame).await.is_err() {
                break;
            }
        }
    });
    let body = futures::stream::poll_fn(move |cx| {
        taken
            .poll_recv(cx)
            .map(|frame| frame.map(Ok::<_, Infallible>))
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// A kept message as one server-sent event; `None` when it cannot be read now (the page
/// reconnects and reads it again).
async fn delivered(
    store: &EventStore,
    customer: &CustomerId,
    message: &jetstream::Message,
) -> Option<Bytes> {
    let seq = message.info().ok()?.stream_sequence;
    let name = message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(ENTRY_HEADER))
        .map(|name| name.as_str().to_owned())
        .unwrap_or_default();
    let opened = match store
        .open_kept(Kept::WidgetMessage, customer, &name, &message.payload)
        .await
    {
        Ok(opened) => opened,
        Err(e) => {
            tracing::warn!(error = %e, "widget: a kept message cannot be opened now");
            return None;
        }
    };
    let shown = opened.and_then(|plain| serde_json::from_slice::<Shown>(&plain).ok());
    let erased = shown.is_none();
    let data = serde_json::to_string(&Delivered { seq, shown, erased }).ok()?;
    Some(Bytes::from(format!("id: {seq}\ndata: {data}\n\n")))
}

/// `OPTIONS /widget/api/*`, and the header on every widget API answer: the configured
/// sites may call it (any site when none is configured). The token travels in a header,
/// never in a cookie, so a site that is not the customer's cannot act for them.
pub(crate) async fn cross_origin(
    State(console): State<Arc<Console>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let preflight = request.method() == http::Method::OPTIONS;
    let allowed = origin.as_ref().and_then(|origin| {
        let origins = &console.widget.as_ref()?.settings.origins;
        let text = origin.to_str().ok()?;
        (origins.is_empty() || origins.iter().any(|o| o == text)).then(|| origin.clone())
    });
    let mut response = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    if let Some(origin) = allowed {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        if preflight {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_never_print_the_shared_secret() {
        let settings = WidgetSettings {
            shared_secret: "a-web-chat-secret-nobody-sees".to_owned(),
            webhook_url: "http://ingress:8080/webhooks/web".to_owned(),
            forward_url: None,
            origins: Vec::new(),
            upload_base_url: "http://console:8088".to_owned(),
            max_upload_bytes: 1,
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("nobody-sees"), "{printed}");
        assert!(printed.contains("http://ingress:8080"), "{printed}");
    }

    #[test]
    fn a_message_needs_an_id_of_its_own_and_text_or_a_file() {
        let sent = |id: &str, text: &str| Sent {
            id: id.to_owned(),
            text: text.to_owned(),
            name: None,
            locale: None,
            attachments: Vec::new(),
        };
        assert_eq!(sent("0190a1b2-c3d4", "Hallo").problem(), None);
        assert!(sent("short", "Hallo").problem().is_some());
        assert!(sent("with.dots.in.it", "Hallo").problem().is_some());
        assert!(sent("0190a1b2-c3d4", "  ").problem().is_some());
        assert!(
            sent("0190a1b2-c3d4", &"x".repeat(MAX_TEXT_CHARS + 1))
                .problem()
                .is_some()
        );
        let file = |upload: &str| Attached {
            upload: upload.to_owned(),
            file_name: Some("fehler.png".to_owned()),
        };
        let with = |attachments: Vec<Attached>| Sent {
            attachments,
            ..sent("0190a1b2-c3d4", "")
        };
        assert_eq!(
            with(vec![file("up_0123456789abcdef0123456789abcdef")]).problem(),
            None
        );
        assert!(with(vec![file("../../metrics")]).problem().is_some());
        assert!(
            with(vec![file("up_0123456789abcdef0123456789abcdef"); 6])
                .problem()
                .is_some()
        );
    }
}
