//! The HTTP side: one router for every provider, routed by the first path segment, plus
//! plain media URLs and the control surface for people.

use helpline_domain::Channel;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::state::Shared;
use super::{Fault, apple, codec, messenger, telegram, viber, web, whatsapp};

/// A request to one provider's API, its path split after the provider's prefix.
#[derive(Debug)]
pub(super) struct ApiRequest {
    pub method: Method,
    /// Percent-decoded path segments after `/whatsapp`, `/telegram`, ….
    pub segments: Vec<String>,
    /// The raw query string.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// A decoded query parameter, the first if repeated.
    pub fn query_param(&self, name: &str) -> Option<String> {
        codec::form_pairs(self.query.as_deref()?)
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The token of `Authorization: Bearer <token>`.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// Whether the content type is JSON (any charset). A missing content type counts as
    /// JSON: clients of the providers' APIs often leave it out.
    pub fn is_json(&self) -> bool {
        self.header("content-type").is_none_or(|value| {
            value
                .split(';')
                .next()
                .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
        })
    }

    pub fn segments(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut segments = uri
        .path()
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| codec::percent_decode(segment, false));
    let Some(first) = segments.next() else {
        return help(&shared);
    };
    let request = ApiRequest {
        method,
        segments: segments.collect(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
    };
    let taken_before = shared.received_count();
    let (channel, response) = match first.as_str() {
        "whatsapp" => (Channel::WhatsApp, whatsapp::handle(&shared, request).await),
        "messenger" => (
            Channel::Messenger,
            messenger::handle(&shared, request).await,
        ),
        "telegram" => (Channel::Telegram, telegram::handle(&shared, request).await),
        "viber" => (Channel::Viber, viber::handle(&shared, request).await),
        "web" => (Channel::WebChat, web::handle(&shared, request).await),
        "apple" => (
            Channel::AppleMessages,
            apple::handle(&shared, request).await,
        ),
        _ => return other(&shared, first.as_str(), &request),
    };
    // A provider slow to answer a send it has taken (`Simulator::accept_slowly`): the
    // message is the customer's already; the answer comes late.
    if shared.received_count() > taken_before
        && let Some(delay) = shared.slow_accept(channel)
    {
        tokio::time::sleep(delay).await;
    }
    response
}

/// The simulator's own routes: media, redirects, the control surface.
fn other(shared: &Shared, first: &str, request: &ApiRequest) -> Response {
    match first {
        "media" => plain_media(shared, request),
        "redirect" => redirect(request),
        "_sim" => control(shared, request),
        _ => not_found(),
    }
}

/// `GET /redirect?to=<url>`: a `302` to `url`, as a media server that hands a download
/// on elsewhere (and as an attacker's server would).
fn redirect(request: &ApiRequest) -> Response {
    let to = request
        .query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("to="))
        .map(|to| codec::percent_decode(to, true));
    match to.and_then(|to| HeaderValue::from_str(&to).ok()) {
        Some(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        None => (StatusCode::BAD_REQUEST, "redirect needs ?to=<url>\n").into_response(),
    }
}

/// `GET /media/{id}`: media by plain URL (Messenger, Viber, web chat).
fn plain_media(shared: &Shared, request: &ApiRequest) -> Response {
    match (&request.method, request.segments().as_slice()) {
        (&Method::GET, [id]) => match shared.media(id) {
            Some(media) => media_bytes(media),
            None => not_found(),
        },
        _ => not_found(),
    }
}

pub(super) fn media_bytes(media: super::state::Media) -> Response {
    media
        .downloads
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if !media.reachable {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "media server unavailable\n",
        )
            .into_response();
    }
    let content_type = HeaderValue::from_str(&media.mime_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        media.bytes,
    )
        .into_response()
}

/// `GET /_sim/received`: everything customers got, as JSON.
fn control(shared: &Shared, request: &ApiRequest) -> Response {
    match (&request.method, request.segments().as_slice()) {
        (&Method::GET, ["received"]) => json(StatusCode::OK, &shared.received(None)),
        _ => not_found(),
    }
}

fn help(shared: &Shared) -> Response {
    let base = &shared.base_url;
    let config = &shared.config;
    let text = format!(
        "helpline channel simulator\n\n\
         send APIs (point helpline's [channels.*] here):\n\
         \x20 whatsapp  api_base_url = {base}/whatsapp/v21.0   POST /{{phone_number_id}}/messages (phone_number_id {})\n\
         \x20 messenger api_base_url = {base}/messenger/v21.0  POST /me/messages (page_id {})\n\
         \x20 telegram  api_base_url = {base}/telegram         POST /bot<token>/sendMessage\n\
         \x20 viber     api_base_url = {base}/viber/pa         POST /send_message\n\
         \x20 web       callback_url = {base}/web/callback\n\
         \x20 apple     api_base_url = {base}/apple/v1        POST /message\n\n\
         media: GET {base}/media/{{id}}\n\
         what customers received: GET {base}/_sim/received\n",
        config.whatsapp.phone_number_id, config.messenger.page_id,
    );
    (StatusCode::OK, text).into_response()
}

pub(super) fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    (status, axum::Json(body)).into_response()
}

pub(super) fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Answers a faulted send: `render` gives the provider's answer for the fault; a
/// `Timeout` first waits its delay, then answers as a server error.
pub(super) async fn faulted(fault: Fault, render: impl Fn(&Fault) -> Response) -> Response {
    if let Fault::Timeout { delay, .. } = &fault {
        tokio::time::sleep(*delay).await;
        return render(&Fault::ServerError { times: 1 });
    }
    render(&fault)
}

/// A `Retry-After` header of whole seconds.
pub(super) fn retry_after(seconds: u64) -> [(header::HeaderName, HeaderValue); 1] {
    [(header::RETRY_AFTER, HeaderValue::from(seconds))]
}
