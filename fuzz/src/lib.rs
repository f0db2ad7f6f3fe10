//! Shared by the fuzz targets: builds a [`WebhookRequest`]'s headers and query from the
//! fuzzer's bytes, so that `verify` sees every kind of credential.
//!
//! The body is the whole input. How the credential is presented is chosen by the input's
//! length (so a seed body can reach every case by growing or shrinking), its value by the
//! input's first bytes:
//!
//! | `len % 5` | credential |
//! |---|---|
//! | 0 | valid: the correct HMAC of the body (or the configured token) |
//! | 1 | the prefix and then the first up to 80 raw bytes of the input |
//! | 2 | the prefix and 64 well-formed hex digits of the first 32 bytes (wrong value) |
//! | 3 | the valid credential, twice |
//! | 4 | absent; the query is the first up to 80 bytes of the input (Viber's `?sig=`) |

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

/// How a channel authenticates a webhook.
#[derive(Clone, Copy, Debug)]
pub enum Credential {
    /// `header: prefix + hex(HMAC-SHA256(key, body))`.
    Hmac {
        header: &'static str,
        prefix: &'static str,
        key: &'static str,
    },
    /// `header: token`, compared as is.
    Token {
        header: &'static str,
        token: &'static str,
    },
    /// `header: token` (a bearer token that covers no body), with headers that must
    /// come with it (Apple's `destination-id`).
    TokenWith {
        header: &'static str,
        token: &'static str,
        with: &'static [(&'static str, &'static str)],
    },
}

/// Which presentation [`request_parts`] chose for `data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented {
    Valid,
    Raw,
    WrongHex,
    Twice,
    Absent,
}

/// The headers and query of a request whose body is `data`.
#[derive(Debug)]
pub struct RequestParts {
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub presented: Presented,
}

const CONTENT_TYPES: [&[u8]; 4] = [
    b"application/json",
    b"application/json; charset=utf-8",
    b"Application/JSON;charset=\"UTF-8\"",
    b"text/plain",
];

pub fn request_parts(data: &[u8], credential: Credential) -> RequestParts {
    let head = &data[..data.len().min(80)];
    let (name, prefix, valid) = match credential {
        Credential::Hmac {
            header,
            prefix,
            key,
        } => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(data);
            let signature = hex::encode(mac.finalize().into_bytes());
            (header, prefix, format!("{prefix}{signature}").into_bytes())
        }
        Credential::Token { header, token } | Credential::TokenWith { header, token, .. } => {
            (header, "", token.as_bytes().to_vec())
        }
    };
    let name = HeaderName::from_static(name);
    let mut headers = HeaderMap::new();
    if let Credential::TokenWith { with, .. } = credential {
        for (name, value) in with {
            insert(&mut headers, &HeaderName::from_static(name), value.as_bytes());
        }
    }
    let mut query = None;
    let presented = match data.len() % 5 {
        0 => {
            insert(&mut headers, &name, &valid);
            Presented::Valid
        }
        1 => {
            insert(&mut headers, &name, &[prefix.as_bytes(), head].concat());
            Presented::Raw
        }
        2 => {
            let wrong = hex::encode(&head[..head.len().min(32)]);
            insert(
                &mut headers,
                &name,
                format!("{prefix}{wrong:0<64}").as_bytes(),
            );
            Presented::WrongHex
        }
        3 => {
            insert(&mut headers, &name, &valid);
            insert(&mut headers, &name, &valid);
            Presented::Twice
        }
        _ => {
            query = Some(String::from_utf8_lossy(head).into_owned());
            Presented::Absent
        }
    };
    // The content type (read by the web chat after its signature): one of a few real ones,
    // or the input's first bytes.
    let content_type = match data.get(1).map(|byte| usize::from(*byte) % 5) {
        Some(index) if index < CONTENT_TYPES.len() => CONTENT_TYPES[index],
        _ => head,
    };
    insert(&mut headers, &http::header::CONTENT_TYPE, content_type);
    RequestParts {
        headers,
        query,
        presented,
    }
}

/// Appends the header if the bytes are a valid header value (some fuzzed bytes are not).
fn insert(headers: &mut HeaderMap, name: &HeaderName, value: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.append(name.clone(), value);
    }
}

/// What every target checks, for one adapter and one input: `parse` on the bytes and
/// `verify` on a request built from them must not panic; `verify` must refuse a missing,
/// repeated or wrong credential and accept a valid one. `also_valid` names a refusal a
/// valid credential may still get (the web chat checks the content type after the
/// signature).
pub fn check(
    adapter: &dyn helpline_channels::InboundAdapter,
    credential: Credential,
    data: &[u8],
    also_valid: fn(&helpline_channels::WebhookError) -> bool,
) {
    use helpline_channels::{WebhookError, WebhookRequest};

    let parsed = adapter.parse(data);
    let _ = format!("{parsed:?}");

    let parts = request_parts(data, credential);
    let request = WebhookRequest {
        headers: &parts.headers,
        query: parts.query.as_deref(),
        body: data,
    };
    let verified = adapter.verify(&request);
    let _ = format!("{request:?} {verified:?}");
    match parts.presented {
        Presented::Valid => assert!(
            matches!(&verified, Ok(())) || verified.as_ref().is_err_and(also_valid),
            "valid credential refused: {verified:?}"
        ),
        Presented::Absent | Presented::Twice | Presented::WrongHex => assert!(
            matches!(verified, Err(WebhookError::Unauthorized(_))),
            "{:?} credential accepted: {verified:?}",
            parts.presented,
        ),
        Presented::Raw => {}
    }
}

/// For targets where only `Ok` answers a valid credential.
pub fn nothing_else(_: &helpline_channels::WebhookError) -> bool {
    false
}
