//! Facebook Messenger (`CHANNELS.md` §2): webhooks as Meta sends them and the Send API at
//! `POST {api}/me/messages` (or `/{page_id}/messages`), token as `?access_token=` or Bearer.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use helpline_domain::Channel;
use serde_json::{Map, Value, json};

use super::meta::{self, GraphError};
use super::server::{self, ApiRequest};
use super::state::{SendKind, Shared};
use super::{Fault, MediaRef, ReceiptKind, Received, Webhook, codec};

const TEXT_LIMIT: usize = 2000;
/// The Send API's quick replies: at most 13, titles of at most 20 characters, payloads
/// of at most 1000.
const QUICK_REPLY_LIMIT: usize = 13;
const QUICK_REPLY_TITLE_LIMIT: usize = 20;
const PAYLOAD_LIMIT: usize = 1000;

pub(super) fn text_webhook(shared: &Shared, customer: &str, text: &str) -> Webhook {
    let mid = format!("m_{}", shared.opaque_id());
    let message = json!({ "mid": mid, "text": text });
    message_webhook(shared, customer, mid, message)
}

/// A tapped quick reply: its title as the text, our id as `quick_reply.payload`.
pub(super) fn choice_webhook(shared: &Shared, customer: &str, id: &str, title: &str) -> Webhook {
    let mid = format!("m_{}", shared.opaque_id());
    let message = json!({ "mid": mid, "text": title, "quick_reply": { "payload": id } });
    message_webhook(shared, customer, mid, message)
}

/// Messenger has no captions; a caption is sent as the message's text beside the image.
pub(super) fn image_webhook(
    shared: &Shared,
    customer: &str,
    media: &MediaRef,
    caption: Option<&str>,
) -> Webhook {
    let mid = format!("m_{}", shared.opaque_id());
    let mut message = json!({
        "mid": mid,
        "attachments": [{ "type": "image", "payload": { "url": media.url } }],
    });
    if let (Some(caption), Some(object)) = (caption, message.as_object_mut()) {
        object.insert("text".to_owned(), json!(caption));
    }
    message_webhook(shared, customer, mid, message)
}

/// `delivery` names the message; `read` is a watermark up to now and names none.
pub(super) fn receipt_webhook(
    shared: &Shared,
    customer: &str,
    provider_message_id: &str,
    status: ReceiptKind,
) -> Webhook {
    let page_id = &shared.config.messenger.page_id;
    let now = codec::now_unix_millis();
    let event = match status {
        ReceiptKind::Delivered => json!({
            "sender": { "id": customer },
            "recipient": { "id": page_id },
            "delivery": { "mids": [provider_message_id], "watermark": now },
        }),
        ReceiptKind::Read => json!({
            "sender": { "id": customer },
            "recipient": { "id": page_id },
            "timestamp": now,
            "read": { "watermark": now },
        }),
    };
    signed(shared, event, provider_message_id.to_owned(), customer)
}

fn message_webhook(shared: &Shared, customer: &str, mid: String, message: Value) -> Webhook {
    let event = json!({
        "sender": { "id": customer },
        "recipient": { "id": shared.config.messenger.page_id },
        "timestamp": codec::now_unix_millis(),
        "message": message,
    });
    signed(shared, event, mid, customer)
}

fn signed(shared: &Shared, event: Value, provider_message_id: String, customer: &str) -> Webhook {
    let payload = json!({
        "object": "page",
        "entry": [{
            "id": shared.config.messenger.page_id,
            "time": codec::now_unix_millis(),
            "messaging": [event],
        }],
    });
    meta::signed_webhook(
        Channel::Messenger,
        &shared.config.messenger.app_secret,
        &payload,
        provider_message_id,
        customer,
    )
}

pub(super) async fn handle(shared: &Shared, request: ApiRequest) -> Response {
    let segments = request.segments();
    match (&request.method, segments.as_slice()) {
        (&Method::POST, [version, target, "messages"]) if version.starts_with('v') => {
            send(shared, &request, target).await
        }
        _ => GraphError::unknown_path(&segments.join("/")).respond(shared),
    }
}

/// What a send request asks for; `None` text and no message for a sender action.
struct Outgoing {
    recipient: String,
    text: Option<String>,
    choices: Vec<(String, String)>,
    is_message: bool,
}

async fn send(shared: &Shared, request: &ApiRequest, target: &str) -> Response {
    shared.send_latency().await;
    if let Some(fault) = shared.begin_send(Channel::Messenger, SendKind::FreeForm) {
        return server::faulted(fault, |fault| fault_response(shared, fault)).await;
    }
    let config = &shared.config.messenger;
    let token = meta::access_token(request);
    if !token
        .as_deref()
        .is_some_and(|token| codec::token_matches(token, &config.page_access_token))
    {
        return GraphError::unauthorized(token.as_deref()).respond(shared);
    }
    if target != "me" && target != config.page_id {
        return GraphError {
            subcode: Some(33),
            ..GraphError::new(
                StatusCode::BAD_REQUEST,
                100,
                format!(
                    "Unsupported post request. Object with ID '{target}' does not exist, cannot \
                     be loaded due to missing permissions, or does not support this operation."
                ),
            )
        }
        .respond(shared);
    }
    let body = match meta::json_object(request) {
        Ok(body) => body,
        Err(error) => return error.respond(shared),
    };
    let outgoing = match read_send(&body) {
        Ok(outgoing) => outgoing,
        Err(error) => return error.respond(shared),
    };
    if !outgoing.is_message {
        return server::json(
            StatusCode::OK,
            &json!({ "recipient_id": outgoing.recipient }),
        );
    }
    let mid = format!("m_{}", shared.opaque_id());
    shared.record(
        outgoing.recipient.clone(),
        Received {
            channel: Channel::Messenger,
            customer: outgoing.recipient.clone(),
            text: outgoing.text,
            template: None,
            choices: outgoing.choices,
            provider_message_id: mid.clone(),
            idempotency_key: None,
            received_at: std::time::Instant::now(),
            body: Value::Object(body),
        },
    );
    server::json(
        StatusCode::OK,
        &json!({ "recipient_id": outgoing.recipient, "message_id": mid }),
    )
}

fn read_send(body: &Map<String, Value>) -> Result<Outgoing, GraphError> {
    let recipient = body
        .get("recipient")
        .and_then(|recipient| recipient.get("id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| GraphError::invalid_parameter("The parameter recipient is required"))?
        .to_owned();
    let message = body.get("message");
    if message.is_none() && body.get("sender_action").is_some() {
        return Ok(Outgoing {
            recipient,
            text: None,
            choices: Vec::new(),
            is_message: false,
        });
    }
    match body.get("messaging_type").and_then(Value::as_str) {
        Some("RESPONSE" | "UPDATE") => {}
        Some("MESSAGE_TAG") if body.get("tag").and_then(Value::as_str).is_some() => {}
        Some("MESSAGE_TAG") => {
            return Err(GraphError::invalid_parameter(
                "The parameter tag is required for messaging_type MESSAGE_TAG",
            ));
        }
        _ => {
            return Err(GraphError::invalid_parameter(
                "Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}",
            ));
        }
    }
    let message = message
        .filter(|message| message.get("text").is_some() || message.get("attachment").is_some())
        .ok_or_else(|| GraphError::invalid_parameter("Must send either message or state"))?;
    let text = match message.get("text") {
        None => None,
        Some(Value::String(text)) if text.chars().count() > TEXT_LIMIT => {
            return Err(GraphError::invalid_parameter(&format!(
                "Length of param message[text] must be less than or equal to {TEXT_LIMIT}"
            )));
        }
        Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
        Some(_) => {
            return Err(GraphError::invalid_parameter(
                "param message[text] must be a non-empty UTF-8 encoded string",
            ));
        }
    };
    let choices = quick_replies(message.get("quick_replies"))?;
    Ok(Outgoing {
        recipient,
        text,
        choices,
        is_message: true,
    })
}

/// `quick_replies` checked as the Send API does; the text ones as `(payload, title)`
/// (`user_phone_number` and `user_email` ask for data and offer no choice).
fn quick_replies(value: Option<&Value>) -> Result<Vec<(String, String)>, GraphError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let replies = value.as_array().ok_or_else(|| {
        GraphError::invalid_parameter("param message[quick_replies] must be an array")
    })?;
    if replies.is_empty() || replies.len() > QUICK_REPLY_LIMIT {
        return Err(GraphError::invalid_parameter(&format!(
            "param message[quick_replies] must have between 1 and {QUICK_REPLY_LIMIT} elements"
        )));
    }
    let mut choices = Vec::new();
    for reply in replies {
        let field = |name: &str| reply.get(name).and_then(Value::as_str).unwrap_or("");
        match field("content_type") {
            "text" => {
                let (title, payload) = (field("title"), field("payload"));
                if title.is_empty() || title.chars().count() > QUICK_REPLY_TITLE_LIMIT {
                    return Err(GraphError::invalid_parameter(&format!(
                        "param message[quick_replies][title] must be 1 to \
                         {QUICK_REPLY_TITLE_LIMIT} characters long"
                    )));
                }
                if payload.is_empty() || payload.chars().count() > PAYLOAD_LIMIT {
                    return Err(GraphError::invalid_parameter(&format!(
                        "param message[quick_replies][payload] must be 1 to {PAYLOAD_LIMIT} \
                         characters long"
                    )));
                }
                choices.push((payload.to_owned(), title.to_owned()));
            }
            "user_phone_number" | "user_email" => {}
            _ => {
                return Err(GraphError::invalid_parameter(
                    "param message[quick_replies][content_type] must be one of {TEXT, \
                     USER_PHONE_NUMBER, USER_EMAIL}",
                ));
            }
        }
    }
    Ok(choices)
}

fn fault_response(shared: &Shared, fault: &Fault) -> Response {
    match fault {
        Fault::ServerError { .. } | Fault::Timeout { .. } => GraphError {
            transient: true,
            ..GraphError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                2,
                "(#2) Temporary send message failure. Please try again later",
            )
        }
        .respond(shared),
        Fault::RateLimited {
            retry_after_secs, ..
        } => meta::with_retry_after(
            GraphError::new(
                StatusCode::TOO_MANY_REQUESTS,
                613,
                "(#613) Calls to this API have exceeded the rate limit.",
            )
            .respond(shared),
            *retry_after_secs,
        ),
        Fault::Reject {
            status,
            code,
            message,
            ..
        } => meta::reject(*status, *code, message).respond(shared),
        Fault::CustomerOutsideWindow { .. } => GraphError {
            subcode: Some(2018278),
            ..GraphError::new(
                StatusCode::BAD_REQUEST,
                10,
                "(#10) This message is sent outside of allowed window.",
            )
        }
        .respond(shared),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(n: usize, title: &str) -> Value {
        let replies: Vec<Value> = (1..=n)
            .map(|id| json!({ "content_type": "text", "title": title, "payload": id.to_string() }))
            .collect();
        json!(replies)
    }

    #[test]
    fn text_quick_replies_are_read_as_payload_and_title_within_the_limits() {
        let read = |value: &Value| quick_replies(Some(value)).ok();
        assert_eq!(
            read(&replies(2, "⭐")),
            Some(vec![
                ("1".to_owned(), "⭐".to_owned()),
                ("2".to_owned(), "⭐".to_owned())
            ])
        );
        assert_eq!(
            read(&json!([{ "content_type": "user_email" }])),
            Some(Vec::new())
        );
        assert_eq!(quick_replies(None).ok(), Some(Vec::new()));
        assert_eq!(read(&replies(14, "⭐")), None);
        assert_eq!(read(&replies(1, &"x".repeat(21))), None);
        assert_eq!(
            read(&json!([{ "content_type": "text", "title": "a" }])),
            None
        );
        assert_eq!(read(&json!([{ "content_type": "location" }])), None);
        assert_eq!(read(&json!("1")), None);
    }
}
