//! Viber REST bot API (`CHANNELS.md` §4): callbacks signed with
//! `X-Viber-Content-Signature`, and `POST {api}/send_message` with `X-Viber-Auth-Token`.
//!
//! Viber answers application errors with HTTP `200` and a non-zero `status`; so does the
//! simulator, for refused credentials, bad bodies, rate limits and rejections alike.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use helpline_domain::Channel;
use serde_json::{Map, Value, json};

use super::server::{self, ApiRequest};
use super::state::{SendKind, Shared};
use super::{Fault, MediaRef, ReceiptKind, Received, Webhook, codec, display_name};

pub(super) const SIGNATURE_HEADER: &str = "x-viber-content-signature";
const AUTH_HEADER: &str = "x-viber-auth-token";
const CHAT_HOSTNAME: &str = "SN-CHAT-05_";
const TEXT_LIMIT: usize = 7000;
const SENDER_NAME_LIMIT: usize = 28;
/// A keyboard holds 1–24 buttons.
const KEYBOARD_BUTTON_LIMIT: usize = 24;

/// Viber's application-level status codes.
const INVALID_AUTH_TOKEN: i64 = 2;
const BAD_DATA: i64 = 3;
const MISSING_DATA: i64 = 4;
const RECEIVER_NOT_SUBSCRIBED: i64 = 6;
const TOO_MANY_REQUESTS: i64 = 12;

pub(super) fn text_webhook(shared: &Shared, customer: &str, text: &str) -> Webhook {
    message_webhook(shared, customer, json!({ "type": "text", "text": text }))
}

/// Viber sends a picture's caption as `text`, empty when there is none.
pub(super) fn image_webhook(
    shared: &Shared,
    customer: &str,
    media: &MediaRef,
    caption: Option<&str>,
) -> Webhook {
    let message = json!({
        "type": "picture",
        "text": caption.unwrap_or(""),
        "media": media.url,
        "thumbnail": media.url,
        "file_name": "image.jpg",
        "file_size": media.size,
    });
    message_webhook(shared, customer, message)
}

/// `delivered` or `seen` for our outbound `message_token` (a number on the wire).
pub(super) fn receipt_webhook(
    shared: &Shared,
    customer: &str,
    provider_message_id: &str,
    status: ReceiptKind,
) -> Webhook {
    // A token Viber never gave is passed on as it is, and helpline refuses it.
    let token = provider_message_id
        .parse::<u64>()
        .map_or_else(|_| json!(provider_message_id), |token| json!(token));
    let callback = json!({
        "event": match status {
            ReceiptKind::Delivered => "delivered",
            ReceiptKind::Read => "seen",
        },
        "timestamp": codec::now_unix_millis(),
        "chat_hostname": CHAT_HOSTNAME,
        "message_token": token,
        "user_id": customer,
    });
    signed(shared, &callback, provider_message_id.to_owned(), customer)
}

/// The customer unsubscribed from the bot (Viber: `unsubscribed`, with the user's id and
/// the event's own token).
pub(super) fn unsubscribed_webhook(shared: &Shared, customer: &str) -> Webhook {
    let token = shared.next_viber_token();
    let callback = json!({
        "event": "unsubscribed",
        "timestamp": codec::now_unix_millis(),
        "chat_hostname": CHAT_HOSTNAME,
        "user_id": customer,
        "message_token": token,
    });
    signed(shared, &callback, token.to_string(), customer)
}

fn message_webhook(shared: &Shared, customer: &str, message: Value) -> Webhook {
    let token = shared.next_viber_token();
    let callback = json!({
        "event": "message",
        "timestamp": codec::now_unix_millis(),
        "chat_hostname": CHAT_HOSTNAME,
        "message_token": token,
        "sender": {
            "id": customer,
            "name": display_name(customer),
            "language": "en",
            "country": "GB",
            "api_version": 10,
        },
        "message": message,
        "silent": false,
    });
    signed(shared, &callback, token.to_string(), customer)
}

/// `X-Viber-Content-Signature: <hex HMAC-SHA256(auth_token, body)>`, no prefix.
fn signed(
    shared: &Shared,
    callback: &Value,
    provider_message_id: String,
    customer: &str,
) -> Webhook {
    let body = codec::plain_json(callback);
    let signature = codec::hmac_hex(&shared.config.viber.auth_token, &body);
    Webhook {
        channel: Channel::Viber,
        path: "/webhooks/viber".to_owned(),
        query: None,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (SIGNATURE_HEADER.to_owned(), signature),
        ],
        body,
        provider_message_id,
        customer: customer.to_owned(),
    }
}

pub(super) async fn handle(shared: &Shared, request: ApiRequest) -> Response {
    match (&request.method, request.segments().as_slice()) {
        (&Method::POST, ["pa", "send_message"]) => send(shared, &request).await,
        _ => server::not_found(),
    }
}

/// What a send request asks for.
struct Outgoing {
    receiver: String,
    text: Option<String>,
    choices: Vec<(String, String)>,
}

async fn send(shared: &Shared, request: &ApiRequest) -> Response {
    shared.send_latency().await;
    if let Some(fault) = shared.begin_send(Channel::Viber, SendKind::FreeForm) {
        return server::faulted(fault, fault_response).await;
    }
    let token_ok = request
        .header(AUTH_HEADER)
        .is_some_and(|token| codec::token_matches(token, &shared.config.viber.auth_token));
    if !token_ok {
        return status(INVALID_AUTH_TOKEN, "invalidAuthToken");
    }
    let body = match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(body)) => body,
        _ => return status(BAD_DATA, "badData"),
    };
    let outgoing = match read_send(&body) {
        Ok(outgoing) => outgoing,
        Err((code, message)) => return status(code, message),
    };
    let token = shared.next_viber_token();
    shared.record(
        outgoing.receiver.clone(),
        Received {
            channel: Channel::Viber,
            customer: outgoing.receiver,
            text: outgoing.text,
            template: None,
            choices: outgoing.choices,
            provider_message_id: token.to_string(),
            idempotency_key: None,
            received_at: std::time::Instant::now(),
            body: Value::Object(body),
        },
    );
    server::json(
        StatusCode::OK,
        &json!({
            "status": 0,
            "status_message": "ok",
            "message_token": token,
            "chat_hostname": CHAT_HOSTNAME,
        }),
    )
}

/// The send, or the Viber status refusing it.
fn read_send(body: &Map<String, Value>) -> Result<Outgoing, (i64, &'static str)> {
    let string = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let missing = || (MISSING_DATA, "missingData");
    let bad = || (BAD_DATA, "badData");
    let receiver = string(body.get("receiver"))
        .filter(|receiver| !receiver.is_empty())
        .ok_or_else(missing)?;
    let sender_name = string(body.get("sender").and_then(|sender| sender.get("name")))
        .filter(|name| !name.is_empty())
        .ok_or_else(missing)?;
    if sender_name.chars().count() > SENDER_NAME_LIMIT {
        return Err(bad());
    }
    let text = string(body.get("text"));
    let choices = keyboard(body.get("keyboard"))?;
    let outgoing = |text: Option<String>| Outgoing {
        receiver: receiver.clone(),
        text,
        choices: choices.clone(),
    };
    match string(body.get("type")).as_deref() {
        Some("text") => {
            let text = text.filter(|text| !text.is_empty()).ok_or_else(missing)?;
            if text.chars().count() > TEXT_LIMIT {
                return Err(bad());
            }
            Ok(outgoing(Some(text)))
        }
        Some("picture" | "video" | "file" | "url") => {
            if string(body.get("media")).is_none_or(|media| media.is_empty()) {
                return Err(missing());
            }
            Ok(outgoing(text))
        }
        Some("location" | "contact" | "sticker" | "rich_media") => Ok(outgoing(None)),
        Some(_) => Err(bad()),
        None => Err(missing()),
    }
}

/// A `keyboard`'s `reply` buttons as `(ActionBody, Text)` (`reply` is the default
/// `ActionType`; `open-url` and the like offer no answer); or the status refusing it.
fn keyboard(value: Option<&Value>) -> Result<Vec<(String, String)>, (i64, &'static str)> {
    let Some(keyboard) = value else {
        return Ok(Vec::new());
    };
    let bad = (BAD_DATA, "badData");
    if keyboard.get("Type").and_then(Value::as_str) != Some("keyboard") {
        return Err(bad);
    }
    let buttons = keyboard
        .get("Buttons")
        .and_then(Value::as_array)
        .ok_or((MISSING_DATA, "missingData"))?;
    if buttons.is_empty() || buttons.len() > KEYBOARD_BUTTON_LIMIT {
        return Err(bad);
    }
    let mut choices = Vec::new();
    for button in buttons {
        let field = |name: &str| button.get(name).and_then(Value::as_str).unwrap_or("");
        let body = field("ActionBody");
        if body.is_empty() {
            return Err((MISSING_DATA, "missingData"));
        }
        if matches!(field("ActionType"), "" | "reply") {
            choices.push((body.to_owned(), field("Text").to_owned()));
        }
    }
    Ok(choices)
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::ServerError { .. } | Fault::Timeout { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
        Fault::RateLimited { .. } => status(TOO_MANY_REQUESTS, "tooManyRequests"),
        Fault::Reject { code, message, .. } => status(*code, message),
        Fault::CustomerOutsideWindow { .. } => {
            status(RECEIVER_NOT_SUBSCRIBED, "receiverNotSubscribed")
        }
    }
}

/// HTTP `200` with a Viber status.
fn status(code: i64, message: &str) -> Response {
    server::json(
        StatusCode::OK,
        &json!({ "status": code, "status_message": message, "chat_hostname": CHAT_HOSTNAME }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyboard_reply_buttons_are_read_as_action_body_and_text() {
        let keyboard = json!({ "Type": "keyboard", "Buttons": [
            { "ActionType": "reply", "ActionBody": "1", "Text": "⭐" },
            { "ActionBody": "2", "Text": "⭐⭐" },
            { "ActionType": "open-url", "ActionBody": "https://example.com", "Text": "Web" },
        ] });
        assert_eq!(
            keyboard_choices(&keyboard),
            Ok(vec![
                ("1".to_owned(), "⭐".to_owned()),
                ("2".to_owned(), "⭐⭐".to_owned())
            ])
        );
        assert_eq!(super::keyboard(None), Ok(Vec::new()));
        let wrong_type = json!({ "Type": "rich_media", "Buttons": [] });
        assert_eq!(keyboard_choices(&wrong_type), Err((BAD_DATA, "badData")));
        let no_body = json!({ "Type": "keyboard", "Buttons": [{ "Text": "x" }] });
        assert_eq!(
            keyboard_choices(&no_body),
            Err((MISSING_DATA, "missingData"))
        );
        let buttons: Vec<Value> = (0..25)
            .map(|n| json!({ "ActionBody": n.to_string() }))
            .collect();
        let too_many = json!({ "Type": "keyboard", "Buttons": buttons });
        assert_eq!(keyboard_choices(&too_many), Err((BAD_DATA, "badData")));
    }

    fn keyboard_choices(value: &Value) -> Result<Vec<(String, String)>, (i64, &'static str)> {
        super::keyboard(Some(value))
    }
}
