//! What WhatsApp and Messenger share as Meta webhooks: the GET handshake and the
//! `X-Hub-Signature-256` HMAC.

use crate::adapter::WebhookRequest;
use crate::error::WebhookError;
use crate::secret::Secret;
use crate::signature::{secret_matches, single_header, verify_hmac_sha256};

const SIGNATURE_HEADER: &str = "x-hub-signature-256";
const SIGNATURE_PREFIX: &[u8] = b"sha256=";

/// Meta's subscription handshake (`GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`):
/// returns the challenge verbatim, to be answered `200` as `text/plain`.
///
/// Missing parameters are [`WebhookError::Malformed`]; a mode other than `subscribe` or a
/// token other than `expected_token` (compared in constant time) is
/// [`WebhookError::Unauthorized`].
pub fn verify_handshake(
    mode: Option<&str>,
    verify_token: Option<&str>,
    challenge: Option<&str>,
    expected_token: &Secret,
) -> Result<String, WebhookError> {
    let missing = |name: &str| WebhookError::malformed(format!("{name} is missing"));
    let mode = mode.ok_or_else(|| missing("hub.mode"))?;
    let verify_token = verify_token.ok_or_else(|| missing("hub.verify_token"))?;
    let challenge = challenge.ok_or_else(|| missing("hub.challenge"))?;
    if mode != "subscribe" {
        return Err(WebhookError::unauthorized("hub.mode is not subscribe"));
    }
    if expected_token.is_empty()
        || !secret_matches(verify_token.as_bytes(), expected_token.expose().as_bytes())
    {
        return Err(WebhookError::unauthorized(
            "hub.verify_token does not match",
        ));
    }
    Ok(challenge.to_owned())
}

/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>`. The legacy SHA-1
/// `X-Hub-Signature` is not accepted in its place.
pub(crate) fn verify_hub_signature(
    app_secret: &Secret,
    request: &WebhookRequest<'_>,
) -> Result<(), WebhookError> {
    let header = single_header(request.headers, SIGNATURE_HEADER)?
        .ok_or_else(|| WebhookError::unauthorized("X-Hub-Signature-256 is missing"))?;
    let signature = header.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
        WebhookError::unauthorized("X-Hub-Signature-256 does not start with sha256=")
    })?;
    verify_hmac_sha256(app_secret.expose().as_bytes(), request.body, signature)
}

/// [`verify_handshake`] with the parameters read from a `GET`'s query string.
pub(crate) fn handshake_query(
    query: Option<&str>,
    expected_token: &Secret,
) -> Result<String, WebhookError> {
    let mut mode = None;
    let mut verify_token = None;
    let mut challenge = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "hub.mode" => mode = Some(value.into_owned()),
            "hub.verify_token" => verify_token = Some(value.into_owned()),
            "hub.challenge" => challenge = Some(value.into_owned()),
            _ => {}
        }
    }
    verify_handshake(
        mode.as_deref(),
        verify_token.as_deref(),
        challenge.as_deref(),
        expected_token,
    )
}
