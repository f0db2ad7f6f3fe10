//! The front door: how helpline's HTTP ports take connections from anyone on the
//! internet without letting a few of them take the process down.
//!
//! - **Connections.** At most [`Door::max_connections`] at once; one more is closed as
//!   soon as it is accepted (counted in `helpline_http_connections_refused_total`).
//! - **Headers.** A connection has [`Door::header_timeout`] to send a request's headers,
//!   the first and every next one on a kept-alive connection, so a connection that sends
//!   nothing, or its headers a byte at a time, is closed when it runs out.
//! - **Bodies.** A body is read by [`read_body`]: its declared or streamed length is
//!   checked against the route's limit before it is buffered, it must arrive whole within
//!   its deadline (`408` otherwise), and the bytes buffered at once by all requests are
//!   bounded by a [`BodyBudget`] (`503` and `Retry-After` when it is spent).
//!
//! - **Refusals.** A caller whose webhooks keep being refused (bad signatures, garbage)
//!   is answered `429` at once, unverified, once it has been refused
//!   [`Refusals::limit`] times on a channel within [`Refusals::WINDOW`]: a flood of forged
//!   requests costs a hash-map lookup each, not a signature check and a log line.
//!
//! Memory is then bounded by `max_connections` × the read buffer (64 KiB) plus the budget,
//! whatever the callers do, and everything a stalled caller holds is given back at the
//! latest when its deadline passes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The most a connection's read buffer holds (headers, and body bytes on their way to
/// the budget): providers' headers are a few KiB.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How a port takes connections.
#[derive(Clone, Copy, Debug)]
pub struct Door {
    /// Time to send a request's headers, and the longest a kept-alive connection may
    /// sit idle between requests.
    pub header_timeout: Duration,
    /// Connections open at once, beyond which a new one is closed at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` through the front door until `shutdown` is cancelled,
/// then lets the requests in hand finish. Each request carries its peer's address as
/// [`ConnectInfo<SocketAddr>`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    door: Door,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let open = Arc::new(Semaphore::new(door.max_connections.max(1)));
    let connections = TaskTracker::new();
    let refused = Sampled::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: the listener itself is fine.
                Err(e) => {
                    tracing::warn!(%local, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            helpline_telemetry::metrics::increment(
                "helpline_http_connections_refused_total",
                "Connections closed at once because the port had its maximum open.",
                &[("port", &local.port().to_string())],
            );
            if let Some(unsaid) = refused.due("connection") {
                tracing::warn!(%local, max_connections = door.max_connections, unsaid, "connection refused: too many open");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let shutdown = shutdown.clone();
        connections.spawn(connection(stream, peer, router, door, permit, shutdown));
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    door: Door,
    permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(door.header_timeout)
        // hyper's read buffer grows to ~400 KiB by default and is outside the body
        // budget: a thousand uploading connections would hold 400 MiB in it alone.
        .max_buf_size(READ_BUFFER_BYTES);
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    // Bound after `served`, so dropped before it (and the socket in it): the place is
    // free by the time the caller sees the connection close, and a caller that then
    // opens another is never refused for a connection it already saw end.
    let _permit = permit;
    let result = tokio::select! {
        result = served.as_mut() => result,
        _ = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and garbage from callers: theirs, not ours.
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// The bytes of request bodies buffered at once, over every request of a port.
///
/// A body larger than [`BodyBudget::SMALL`] may only take from the budget while
/// [`BodyBudget::reserve`] stays free after it, so the small bodies every provider sends
/// keep being read while a few large uploads hold the rest.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    /// What a small body is: a provider's webhook is a few kilobytes.
    pub const SMALL: usize = 64 * 1024;

    pub fn new(total: usize) -> Self {
        let total = total.clamp(Self::SMALL, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Kept free of large bodies: an eighth of the budget.
    fn reserve(&self) -> usize {
        self.total / 8
    }

    /// Bytes not held by any body right now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    fn take(&self, bytes: usize, read_so_far: usize) -> Option<OwnedSemaphorePermit> {
        let large = read_so_far + bytes > Self::SMALL;
        if large && self.available() < bytes + self.reserve() {
            return None;
        }
        let bytes = u32::try_from(bytes).ok()?;
        Arc::clone(&self.bytes).try_acquire_many_owned(bytes).ok()
    }
}

/// A body read whole, with the budget it holds until dropped.
#[derive(Debug)]
pub struct ReadBody {
    pub bytes: Bytes,
    _held: Vec<OwnedSemaphorePermit>,
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body over the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body not received within {0:?}")]
    TooSlow(Duration),
    #[error("too many bodies being received; try again later")]
    Busy,
    #[error("body could not be read: {0}")]
    Broken(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for BodyError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, format!("{self}\n")).into_response();
        let headers = response.headers_mut();
        match self {
            // The provider tries again later; a webhook refused for load loses nothing.
            BodyError::Busy => {
                headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            }
            // The caller's connection is spent: it was too slow, or sent too much.
            BodyError::TooSlow(_) | BodyError::TooLarge { .. } => {
                headers.insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            BodyError::Broken(_) => {}
        }
        response
    }
}

/// Reads `body` whole: refused at once when its `Content-Length` is over `limit`, and as
/// soon as what arrived is; within `deadline` from now; taking what it buffers from
/// `budget`.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    deadline: Duration,
    budget: &BodyBudget,
) -> Result<ReadBody, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let reading = async {
        let mut body = body;
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut held = Vec::new();
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if read + data.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            held.push(budget.take(data.len(), read).ok_or(BodyError::Busy)?);
            read += data.len();
            chunks.push(data);
        }
        let bytes = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.swap_remove(0),
            _ => {
                let mut whole = Vec::with_capacity(read);
                for chunk in &chunks {
                    whole.extend_from_slice(chunk);
                }
                Bytes::from(whole)
            }
        };
        Ok(ReadBody { bytes, _held: held })
    };
    tokio::time::timeout(deadline, reading)
        .await
        .unwrap_or(Err(BodyError::TooSlow(deadline)))
}

/// Refused requests per (source address, channel), over a fixed window.
#[derive(Debug)]
pub struct Refusals {
    limit: u32,
    /// Per source, per channel (as the caller names it: ingress counts every path word it
    /// has no channel for as one): when the window began and the refusals in it. Nested
    /// so that a webhook's check allocates nothing.
    counts: Mutex<HashMap<IpAddr, HashMap<String, Window>>>,
}

/// When a source's window on a channel began, and the refusals in it.
type Window = (Instant, u32);

impl Refusals {
    pub const WINDOW: Duration = Duration::from_secs(10);
    /// Sources remembered at most; beyond, the memory starts over.
    const SOURCES: usize = 100_000;

    /// At most `limit` refusals per source and channel in a window; 0 turns it off.
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            counts: Mutex::default(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Whether `source` is still heard on `channel`: false once it was refused `limit`
    /// times in the current window.
    pub fn admits(&self, source: IpAddr, channel: &str) -> bool {
        if self.limit == 0 {
            return true;
        }
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        match counts
            .get(&source)
            .and_then(|channels| channels.get(channel))
        {
            Some((since, count)) => since.elapsed() >= Self::WINDOW || *count < self.limit,
            None => true,
        }
    }

    /// Counts one refusal of `source` on `channel`.
    pub fn note(&self, source: IpAddr, channel: &str) {
        if self.limit == 0 {
            return;
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.len() >= Self::SOURCES {
            counts.clear();
        }
        let channels = counts.entry(source).or_default();
        let entry = match channels.get_mut(channel) {
            Some(entry) => entry,
            None => channels
                .entry(channel.to_owned())
                .or_insert((Instant::now(), 0)),
        };
        if entry.0.elapsed() >= Self::WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// Warnings said at most once every [`Sampled::EVERY`] per kind, with how many were
/// left unsaid meanwhile: a flood of refused callers must not become a flood of log
/// lines.
#[derive(Debug, Default)]
pub struct Sampled {
    /// Per kind: when it was last said, and how often since.
    kinds: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Sampled {
    pub const EVERY: Duration = Duration::from_secs(10);
    /// Kinds remembered at most; beyond, the memory starts over.
    const KINDS: usize = 1024;

    pub fn new() -> Self {
        Self::default()
    }

    /// `Some(left unsaid since the last time)` when this occurrence of `kind` is to be
    /// said, `None` when it is to be counted only.
    pub fn due(&self, kind: &str) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some((said, unsaid)) = kinds.get_mut(kind) {
            if now.duration_since(*said) < Self::EVERY {
                *unsaid += 1;
                return None;
            }
            let left = *unsaid;
            *said = now;
            *unsaid = 0;
            return Some(left);
        }
        if kinds.len() >= Self::KINDS {
            kinds.clear();
        }
        kinds.insert(kind.to_owned(), (now, 0));
        Some(0)
    }
}
