//! Signature and secret checks shared by the channels, all in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::WebhookError;

type HmacSha256 = Hmac<Sha256>;

/// Hex digits in an HMAC-SHA256 signature.
const SIGNATURE_HEX_LEN: usize = 64;

/// The value of a header that must appear at most once. A repeated credential header is
/// refused rather than guessing which copy counts.
pub(crate) fn single_header<'a>(
    headers: &'a http::HeaderMap,
    name: &str,
) -> Result<Option<&'a [u8]>, WebhookError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => Ok(Some(value.as_bytes())),
        (Some(_), Some(_)) => Err(WebhookError::unauthorized(format!(
            "{name} appears more than once"
        ))),
    }
}

/// The value of a query parameter that must appear at most once, undecoded.
pub(crate) fn single_query_param<'a>(
    query: Option<&'a str>,
    name: &str,
) -> Result<Option<&'a str>, WebhookError> {
    let mut values = query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('=').filter(|(key, _)| *key == name))
        .map(|(_, value)| value);
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => Ok(Some(value)),
        (Some(_), Some(_)) => Err(WebhookError::unauthorized(format!(
            "query parameter {name} appears more than once"
        ))),
    }
}

/// Checks `signature_hex` (64 hex digits) against HMAC-SHA256(`key`, `body`).
/// The full tag is compared, in constant time, by `verify_slice`.
pub(crate) fn verify_hmac_sha256(
    key: &[u8],
    body: &[u8],
    signature_hex: &[u8],
) -> Result<(), WebhookError> {
    if signature_hex.len() != SIGNATURE_HEX_LEN {
        return Err(WebhookError::unauthorized(format!(
            "signature must be {SIGNATURE_HEX_LEN} hex digits"
        )));
    }
    let tag = hex::decode(signature_hex)
        .map_err(|_| WebhookError::unauthorized("signature is not hex"))?;
    // HMAC takes keys of any length, so this cannot fail; mapped rather than unwrapped.
    let mut mac = HmacSha256::new_from_slice(key)
        .map_err(|_| WebhookError::unauthorized("signing key rejected"))?;
    mac.update(body);
    mac.verify_slice(&tag)
        .map_err(|_| WebhookError::unauthorized("signature does not match the body"))
}

/// Constant-time equality of a presented secret and the configured one. Different lengths
/// are unequal (the length itself is not secret).
pub(crate) fn secret_matches(presented: &[u8], expected: &[u8]) -> bool {
    bool::from(presented.ct_eq(expected))
}
