//! What every channel implements, and the request it is given.

use std::fmt;

use helpline_domain::Channel;

use crate::error::WebhookError;
use crate::inbound::Inbound;

/// The largest body any channel accepts: 4 MiB (Meta's payloads reach about 3 MB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A webhook request as the HTTP server received it.
#[derive(Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub headers: &'a http::HeaderMap,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// The raw body bytes, exactly as received: signatures are computed over these.
    pub body: &'a [u8],
}

/// Shows header names and sizes only: values, query and body hold signatures, tokens and
/// personal data.
impl fmt::Debug for WebhookRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.keys().map(|name| name.as_str()).collect();
        f.debug_struct("WebhookRequest")
            .field("headers", &header_names)
            .field("query_len", &self.query.map(str::len))
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// One messaging channel's inbound webhook: check who sent it, then read it.
///
/// Implementations are pure: no I/O, no clock, no shared mutable state. Each method checks
/// the body size against [`MAX_BODY_BYTES`] first, so each is safe to call on its own.
pub trait InboundAdapter: Send + Sync {
    fn channel(&self) -> Channel;

    /// Checks the request's signature or secret over the raw body, in constant time.
    /// Runs before any parsing; a missing or wrong credential is
    /// [`WebhookError::Unauthorized`].
    fn verify(&self, request: &WebhookRequest<'_>) -> Result<(), WebhookError>;

    /// Reads a verified body into what it reports, in the order the provider sent it.
    /// Valid events helpline does not act on are [`Inbound::Ignored`]; the result may be
    /// empty (e.g. an empty `entry` list). Never panics, whatever the bytes.
    fn parse(&self, body: &[u8]) -> Result<Vec<Inbound>, WebhookError>;

    /// The provider's subscription handshake, a `GET` on the webhook route with `query`
    /// (Meta's `hub.mode`/`hub.verify_token`/`hub.challenge`): the text to answer `200`
    /// with, or why not. `None` for a channel without one (its `GET` is `405`).
    fn handshake(&self, _query: Option<&str>) -> Option<Result<String, WebhookError>> {
        None
    }

    /// The whole check in the order helpline's policy requires: size, [`verify`](Self::verify),
    /// [`parse`](Self::parse).
    fn receive(&self, request: &WebhookRequest<'_>) -> Result<Vec<Inbound>, WebhookError> {
        check_body_size(request.body)?;
        self.verify(request)?;
        self.parse(request.body)
    }
}

pub(crate) fn check_body_size(body: &[u8]) -> Result<(), WebhookError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(())
}
