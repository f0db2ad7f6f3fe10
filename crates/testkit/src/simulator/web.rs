//! helpline's web chat (`CHANNELS.md` §5): the site's chat backend. It posts customer
//! events to helpline and takes helpline's replies at its callback URL, both signed with
//! `X-Helpline-Signature: sha256=<hex HMAC-SHA256(shared_secret, body)>`.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use helpline_domain::Channel;
use serde_json::{Map, Value, json};

use super::server::{self, ApiRequest};
use super::state::{SendKind, Shared};
use super::{Fault, MediaRef, ReceiptKind, Received, Webhook, codec, display_name};

pub(super) const SIGNATURE_HEADER: &str = "x-helpline-signature";
const SIGNATURE_PREFIX: &str = "sha256=";

pub(super) fn text_webhook(shared: &Shared, customer: &str, text: &str) -> Webhook {
    message_webhook(shared, customer, |message| {
        message.insert("text".to_owned(), json!(text));
    })
}

pub(super) fn image_webhook(
    shared: &Shared,
    customer: &str,
    media: &MediaRef,
    caption: Option<&str>,
) -> Webhook {
    message_webhook(shared, customer, |message| {
        if let Some(caption) = caption {
            message.insert("text".to_owned(), json!(caption));
        }
        message.insert(
            "attachments".to_owned(),
            json!([{
                "type": "image",
                "url": media.url,
                "mime_type": media.mime_type,
                "size_bytes": media.size,
                "sha256": media.sha256,
            }]),
        );
    })
}

pub(super) fn receipt_webhook(
    shared: &Shared,
    customer: &str,
    provider_message_id: &str,
    status: ReceiptKind,
) -> Webhook {
    let event = json!({
        "version": 1,
        "event_id": format!("evt_{}", shared.hex_id()),
        "type": "status",
        "sent_at": codec::now_rfc3339(),
        "session_id": customer,
        "status": {
            "message_id": provider_message_id,
            "state": match status {
                ReceiptKind::Delivered => "delivered",
                ReceiptKind::Read => "read",
            },
            "at": codec::now_rfc3339(),
        },
    });
    signed(shared, &event, provider_message_id.to_owned(), customer)
}

fn message_webhook(
    shared: &Shared,
    customer: &str,
    content: impl FnOnce(&mut Map<String, Value>),
) -> Webhook {
    let id = format!("wc_msg_{}", shared.hex_id());
    let mut message = Map::new();
    message.insert("id".to_owned(), json!(id));
    content(&mut message);
    let event = json!({
        "version": 1,
        "event_id": format!("evt_{}", shared.hex_id()),
        "type": "message",
        "sent_at": codec::now_rfc3339(),
        "session_id": customer,
        "customer": { "id": format!("cust_{customer}"), "name": display_name(customer), "locale": "en-GB" },
        "message": message,
    });
    signed(shared, &event, id, customer)
}

fn signed(shared: &Shared, event: &Value, provider_message_id: String, customer: &str) -> Webhook {
    let body = codec::plain_json(event);
    let signature = codec::hmac_hex(&shared.config.web.shared_secret, &body);
    Webhook {
        channel: Channel::WebChat,
        path: "/webhooks/web".to_owned(),
        query: None,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                SIGNATURE_HEADER.to_owned(),
                format!("{SIGNATURE_PREFIX}{signature}"),
            ),
        ],
        body,
        provider_message_id,
        customer: customer.to_owned(),
    }
}

pub(super) async fn handle(shared: &Shared, request: ApiRequest) -> Response {
    match (&request.method, request.segments().as_slice()) {
        (&Method::POST, ["callback"]) => callback(shared, &request).await,
        _ => server::not_found(),
    }
}

/// A reply from helpline: verified, then recorded once per `event_id`.
async fn callback(shared: &Shared, request: &ApiRequest) -> Response {
    shared.send_latency().await;
    if let Some(fault) = shared.begin_send(Channel::WebChat, SendKind::FreeForm) {
        return server::faulted(fault, fault_response).await;
    }
    let signed_ok = request
        .header(SIGNATURE_HEADER)
        .and_then(|header| header.strip_prefix(SIGNATURE_PREFIX))
        .is_some_and(|signature| {
            codec::hmac_matches(&shared.config.web.shared_secret, &request.body, signature)
        });
    if !signed_ok {
        return error(
            StatusCode::UNAUTHORIZED,
            "X-Helpline-Signature is missing or does not match the body",
        );
    }
    if request.header("content-type").is_none() || !request.is_json() {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/json",
        );
    }
    let event = match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(event)) => event,
        _ => return error(StatusCode::BAD_REQUEST, "the body is not a JSON object"),
    };
    let reply = match read_reply(&event) {
        Ok(reply) => reply,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let recorded = shared.record_web_once(
        &reply.event_id,
        reply.session_id.clone(),
        Received {
            channel: Channel::WebChat,
            customer: reply.session_id,
            text: reply.text,
            template: None,
            choices: reply.choices,
            provider_message_id: reply.message_id,
            idempotency_key: Some(reply.event_id.clone()),
            received_at: std::time::Instant::now(),
            body: Value::Object(event),
        },
    );
    if !recorded {
        tracing::debug!(event_id = %reply.event_id, "web chat callback repeated, not recorded again");
    }
    server::json(StatusCode::OK, &json!({ "ok": true }))
}

struct Reply {
    event_id: String,
    session_id: String,
    message_id: String,
    text: Option<String>,
    choices: Vec<(String, String)>,
}

fn read_reply(event: &Map<String, Value>) -> Result<Reply, &'static str> {
    let string = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    if event.get("version").and_then(Value::as_u64) != Some(1) {
        return Err("version must be 1");
    }
    let event_id = string(event.get("event_id")).ok_or("event_id is missing")?;
    if event.get("type").and_then(Value::as_str) != Some("message") {
        return Err("type must be message");
    }
    let session_id = string(event.get("session_id")).ok_or("session_id is missing")?;
    let message = event.get("message").ok_or("message is missing")?;
    let message_id = string(message.get("id")).ok_or("message.id is missing")?;
    let text = match message.get("text") {
        None => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => return Err("message.text must be a string"),
    };
    if text.is_none() && message.get("attachments").is_none() {
        return Err("message needs text or attachments");
    }
    // The ids the customer can tap; the web chat sends no titles, so each is its own.
    let choices = match message.get("quick_replies") {
        None => Vec::new(),
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|id| match id {
                Value::String(id) if !id.is_empty() => Ok((id.clone(), id.clone())),
                _ => Err("message.quick_replies must hold non-empty strings"),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("message.quick_replies must be an array"),
    };
    Ok(Reply {
        event_id,
        session_id,
        message_id,
        text,
        choices,
    })
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::ServerError { .. } | Fault::Timeout { .. } => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
        Fault::RateLimited {
            retry_after_secs, ..
        } => (
            server::retry_after(*retry_after_secs),
            error(StatusCode::TOO_MANY_REQUESTS, "rate limited"),
        )
            .into_response(),
        Fault::Reject {
            status,
            code,
            message,
            ..
        } => server::json(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            &json!({ "ok": false, "code": code, "error": message }),
        ),
        Fault::CustomerOutsideWindow { .. } => error(StatusCode::GONE, "the session has ended"),
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    server::json(status, &json!({ "ok": false, "error": message }))
}
