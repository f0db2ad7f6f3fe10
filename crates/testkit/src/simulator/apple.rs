//! Apple Messages for Business (`APPLE-AND-NOTIFY.md` §1, §3): the MSP gateway helpline
//! sends through, its attachment store (MMCS), and the customer's device, whose events
//! Apple POSTs to the MSP gzip-compressed with a JWT of `aud` the MSP id.
//!
//! The gateway: `POST /apple/v1/message` (a JWT of `iss` the MSP id: missing → `401`,
//! wrong → `403`; header `id` = body `id`, `Source-Id` the business, `Destination-Id` a
//! customer, `body` on text, `requestIdentifier` and `version` on interactive, never
//! `close` → else `400`; `200` with an empty body), `GET /apple/v1/preDownload` (the
//! same token, `MMCS-Url`/`MMCS-Signature`/`MMCS-Owner` → `{"download-url"}`), and
//! `GET /apple/mmcs/{id}`: an attachment's ciphertext, AES-256-CTR under a key of its own.

use std::io::Write;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use helpline_channels::apple::{AttachmentRef, seal_attachment};
use helpline_domain::Channel;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::server::{self, ApiRequest};
use super::state::{SendKind, Shared};
use super::{Fault, MediaRef, Received, Webhook};

pub(super) const AUTHORIZATION: &str = "authorization";

/// The claims of a token: `aud` on Apple's, `iss` on the MSP's.
#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    iat: i64,
}

fn key(shared: &Shared) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(&shared.config.apple.secret_base64)
        .unwrap_or_default()
}

/// Apple's token on a webhook: HS256 under the secret, `aud` the MSP id, `iat` now.
fn apple_token(shared: &Shared, key: &[u8]) -> String {
    let claims = Claims {
        aud: Some(shared.config.apple.msp_id.clone()),
        iss: None,
        iat: super::codec::now_unix_seconds(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap_or_default()
}

pub(super) fn text_webhook(shared: &Shared, customer: &str, text: &str) -> Webhook {
    event_webhook(shared, customer, "text", |event| {
        event["body"] = json!(text);
    })
}

/// A tap on a quick reply or list picker we sent: Apple echoes the picker with the
/// customer's choice.
pub(super) fn choice_webhook(shared: &Shared, customer: &str, id: &str, title: &str) -> Webhook {
    event_webhook(shared, customer, "interactive", |event| {
        event["interactiveData"] = json!({
            "bid": "com.apple.messages.MSMessageExtensionBalloonPlugin:0000000000:com.apple.icloud.apps.messages.business.extension",
            "data": {
                "version": "1.0",
                "requestIdentifier": format!("req-{}", shared.hex_id()),
                "quick-reply": {
                    "items": [{"identifier": id, "title": title}],
                    "selectedIdentifier": id,
                    "selectedIndex": 0,
                },
            },
        });
    })
}

/// The customer deletes the conversation: Apple's `close`.
pub(super) fn close_webhook(shared: &Shared, customer: &str) -> Webhook {
    event_webhook(shared, customer, "close", |_| {})
}

/// Apple sends no receipts: the nearest thing, the customer stopping typing.
pub(super) fn receipt_webhook(shared: &Shared, customer: &str) -> Webhook {
    event_webhook(shared, customer, "typing_end", |_| {})
}

/// An image as Apple sends it: U+FFFC in the body for it, and its reference on MMCS.
pub(super) fn image_webhook(
    shared: &Shared,
    customer: &str,
    media: &MediaRef,
    caption: Option<&str>,
) -> Webhook {
    let reference = mmcs_reference(shared, media);
    event_webhook(shared, customer, "text", |event| {
        event["body"] = json!(format!(
            "{}\u{fffc}",
            caption.map(|c| format!("{c} ")).unwrap_or_default()
        ));
        event["attachments"] = json!([{
            "name": "IMG_0001.JPG",
            "mimeType": media.mime_type,
            "size": reference.size.unwrap_or_default().to_string(),
            "key": reference.key,
            "url": reference.url,
            "owner": reference.owner,
            "signature": reference.signature,
        }]);
    })
}

/// Where `media`'s ciphertext lies on the simulated MMCS, and its key: derived from the
/// media's id, so no state is kept.
fn mmcs_reference(shared: &Shared, media: &MediaRef) -> AttachmentRef {
    let key = media_key(&media.id);
    AttachmentRef {
        url: format!("{}/apple/mmcs-ref/{}", shared.base_url, media.id),
        owner: format!("owner-{}", media.id),
        signature: hex::encode(Sha256::digest(media.id.as_bytes())),
        key: format!("00{}", hex::encode(key)),
        size: Some(media.size as u64),
    }
}

fn media_key(id: &str) -> [u8; 32] {
    Sha256::digest(format!("simulated apple attachment {id}").as_bytes()).into()
}

fn event_webhook(
    shared: &Shared,
    customer: &str,
    kind: &str,
    content: impl FnOnce(&mut Value),
) -> Webhook {
    let apple = &shared.config.apple;
    let id = format!("{}-{}", shared.hex_id(), shared.hex_id());
    let mut event = json!({
        "v": 1,
        "id": id,
        "type": kind,
        "sourceId": customer,
        "destinationId": apple.business_id,
        "locale": "de_DE",
    });
    content(&mut event);
    let json = super::codec::plain_json(&event);
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let body = gzip
        .write_all(&json)
        .and_then(|()| gzip.finish())
        .unwrap_or_default();
    let token = apple_token(shared, &key(shared));
    Webhook {
        channel: Channel::AppleMessages,
        path: "/webhooks/apple".to_owned(),
        query: None,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("content-encoding".to_owned(), "gzip".to_owned()),
            (AUTHORIZATION.to_owned(), format!("Bearer {token}")),
            ("id".to_owned(), id.clone()),
            ("source-id".to_owned(), customer.to_owned()),
            ("destination-id".to_owned(), apple.business_id.clone()),
            ("device-agent".to_owned(), "iPhone OS".to_owned()),
            ("capability-list".to_owned(), "QUICK,LIST,TIME".to_owned()),
        ],
        body,
        provider_message_id: id,
        customer: customer.to_owned(),
    }
}

pub(super) async fn handle(shared: &Shared, request: ApiRequest) -> Response {
    match (&request.method, request.segments().as_slice()) {
        (&Method::POST, ["v1", "message"]) => send(shared, &request).await,
        (&Method::GET, ["v1", "preDownload"]) => pre_download(shared, &request),
        (&Method::GET, ["mmcs", id]) => mmcs(shared, id),
        _ => server::not_found(),
    }
}

/// The MSP's token: `401` without one, `403` when it does not hold.
fn authorize(shared: &Shared, request: &ApiRequest) -> Result<(), (StatusCode, &'static str)> {
    let Some(token) = request.bearer() else {
        return Err((StatusCode::UNAUTHORIZED, "Authorization is missing"));
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Claims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(&key(shared)),
        &validation,
    )
    .map_err(|_| (StatusCode::FORBIDDEN, "Authorization failed validation"))?
    .claims;
    let fresh = claims.iat.abs_diff(super::codec::now_unix_seconds()) <= 3600;
    if claims.iss.as_deref() != Some(shared.config.apple.msp_id.as_str()) || !fresh {
        return Err((StatusCode::FORBIDDEN, "Authorization failed validation"));
    }
    Ok(())
}

async fn send(shared: &Shared, request: &ApiRequest) -> Response {
    shared.send_latency().await;
    if let Some(fault) = shared.begin_send(Channel::AppleMessages, SendKind::FreeForm) {
        return server::faulted(fault, fault_response).await;
    }
    if let Err((status, message)) = authorize(shared, request) {
        return error(status, message);
    }
    let message = match serde_json::from_slice::<Value>(&request.body) {
        Ok(message @ Value::Object(_)) => message,
        _ => return error(StatusCode::BAD_REQUEST, "the body is not a JSON object"),
    };
    let string = |key: &str| message.get(key).and_then(Value::as_str).unwrap_or("");
    let id = string("id");
    if id.is_empty() || request.header("id") != Some(id) {
        return error(StatusCode::BAD_REQUEST, "header id and body id must match");
    }
    let business = shared.config.apple.business_id.as_str();
    if request.header("source-id") != Some(business) || string("sourceId") != business {
        return error(StatusCode::BAD_REQUEST, "Source-Id is not the business");
    }
    let customer = string("destinationId");
    if customer.is_empty() || request.header("destination-id") != Some(customer) {
        return error(StatusCode::NOT_FOUND, "destination-id not recognised");
    }
    let (text, choices) = match string("type") {
        "text" => match message.get("body").and_then(Value::as_str) {
            Some(body) if !body.is_empty() => (Some(body.to_owned()), Vec::new()),
            _ => return error(StatusCode::BAD_REQUEST, "a text needs a body"),
        },
        "interactive" => {
            let data = &message["interactiveData"]["data"];
            if data.get("requestIdentifier").is_none() || data.get("version").is_none() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "interactive data needs requestIdentifier and version",
                );
            }
            let quick = &data["quick-reply"];
            let choices = quick["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| {
                    let text = |key: &str| item[key].as_str().unwrap_or("").to_owned();
                    (text("identifier"), text("title"))
                })
                .collect();
            (quick["summaryText"].as_str().map(str::to_owned), choices)
        }
        "close" => return error(StatusCode::BAD_REQUEST, "an MSP never sends close"),
        "typing_start" | "typing_end" => return StatusCode::OK.into_response(),
        _ => return error(StatusCode::BAD_REQUEST, "unknown type"),
    };
    shared.record(
        customer.to_owned(),
        Received {
            channel: Channel::AppleMessages,
            customer: customer.to_owned(),
            text,
            template: None,
            choices,
            provider_message_id: id.to_owned(),
            idempotency_key: Some(id.to_owned()),
            received_at: std::time::Instant::now(),
            body: message.clone(),
        },
    );
    StatusCode::OK.into_response()
}

/// `preDownload`: the token, then the attachment's MMCS URL, signature and owner as the
/// webhook named them → a download URL.
fn pre_download(shared: &Shared, request: &ApiRequest) -> Response {
    if let Err((status, message)) = authorize(shared, request) {
        return error(status, message);
    }
    let Some(id) = request
        .header("mmcs-url")
        .and_then(|url| url.rsplit_once("/apple/mmcs-ref/"))
        .map(|(_, id)| id.to_owned())
    else {
        return error(StatusCode::BAD_REQUEST, "MMCS-Url is missing or unknown");
    };
    let signature = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(id.as_bytes()));
    if request.header("mmcs-signature") != Some(signature.as_str())
        || request.header("mmcs-owner") != Some(format!("owner-{id}").as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "MMCS-Signature or MMCS-Owner does not match",
        );
    }
    server::json(
        StatusCode::OK,
        &json!({"download-url": format!("{}/apple/mmcs/{id}", shared.base_url)}),
    )
}

/// The ciphertext of an attachment.
fn mmcs(shared: &Shared, id: &str) -> Response {
    match shared.media(id) {
        Some(mut media) => {
            media.bytes = seal_attachment(&media_key(id), &media.bytes).into();
            media.mime_type = "application/octet-stream".to_owned();
            server::media_bytes(media)
        }
        None => server::not_found(),
    }
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::ServerError { .. } | Fault::Timeout { .. } => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "server error")
        }
        // Apple documents no 429; a busy gateway answers 503.
        Fault::RateLimited {
            retry_after_secs, ..
        } => (
            server::retry_after(*retry_after_secs),
            error(StatusCode::SERVICE_UNAVAILABLE, "try again later"),
        )
            .into_response(),
        Fault::Reject {
            status, message, ..
        } => error(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            message,
        ),
        // The customer deleted the conversation: Apple's answer is not documented.
        Fault::CustomerOutsideWindow { .. } => {
            error(StatusCode::NOT_FOUND, "destination-id not recognised")
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}
