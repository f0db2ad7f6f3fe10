//! WhatsApp Cloud API (`CHANNELS.md` §1): webhooks as Meta sends them, the send API at
//! `POST {api}/{phone_number_id}/messages`, and media by id.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use helpline_domain::Channel;
use serde_json::{Map, Value, json};

use super::meta::{self, GraphError};
use super::server::{self, ApiRequest};
use super::state::{SendKind, Shared};
use super::{Fault, MediaRef, ReceiptKind, Received, Webhook, codec, display_name};

/// The WhatsApp Business Account the simulated number belongs to.
const WABA_ID: &str = "102290129340398";
const DISPLAY_PHONE_NUMBER: &str = "15550783881";
const TEXT_LIMIT: usize = 4096;

pub(super) fn text_webhook(shared: &Shared, customer: &str, text: &str) -> Webhook {
    message_webhook(shared, customer, "text", json!({ "body": text }))
}

pub(super) fn image_webhook(
    shared: &Shared,
    customer: &str,
    media: &MediaRef,
    caption: Option<&str>,
) -> Webhook {
    let sha256 = shared
        .media(&media.id)
        .map(|stored| codec::sha256_base64(&stored.bytes))
        .unwrap_or_default();
    let mut image = json!({ "mime_type": media.mime_type, "sha256": sha256, "id": media.id });
    if let (Some(caption), Some(object)) = (caption, image.as_object_mut()) {
        object.insert("caption".to_owned(), json!(caption));
    }
    message_webhook(shared, customer, "image", image)
}

/// A tap as WhatsApp reports it, shaped by what the customer last got: a template's
/// quick-reply `button`, a list's `list_reply`, else a reply button's `button_reply`;
/// with the `context` naming that message.
pub(super) fn choice_webhook(shared: &Shared, customer: &str, id: &str, title: &str) -> Webhook {
    let wa_id = shared.address(Channel::WhatsApp, customer);
    let last = shared
        .received(Some((Channel::WhatsApp, wa_id.as_str())))
        .pop();
    let context = last
        .as_ref()
        .map(|last| json!({ "from": DISPLAY_PHONE_NUMBER, "id": last.provider_message_id }));
    let kind = last
        .as_ref()
        .and_then(|last| match last.body.get("type").and_then(Value::as_str) {
            Some("template") => Some("template"),
            _ => last
                .body
                .pointer("/interactive/type")
                .and_then(Value::as_str),
        });
    let (message_type, content) = match kind {
        Some("template") => ("button", json!({ "payload": id, "text": title })),
        Some("list") => (
            "interactive",
            json!({ "type": "list_reply", "list_reply": { "id": id, "title": title } }),
        ),
        _ => (
            "interactive",
            json!({ "type": "button_reply", "button_reply": { "id": id, "title": title } }),
        ),
    };
    let webhook = message_webhook(shared, customer, message_type, content);
    match context {
        Some(context) => with_context(shared, webhook, context),
        None => webhook,
    }
}

/// The webhook with `context` added to its one message, signed again.
fn with_context(shared: &Shared, webhook: Webhook, context: Value) -> Webhook {
    let Ok(mut payload) = serde_json::from_slice::<Value>(&webhook.body) else {
        return webhook;
    };
    if let Some(Value::Object(message)) = payload.pointer_mut("/entry/0/changes/0/value/messages/0")
    {
        message.insert("context".to_owned(), context);
    }
    meta::signed_webhook(
        Channel::WhatsApp,
        &shared.config.whatsapp.app_secret,
        &payload,
        webhook.provider_message_id,
        &webhook.customer,
    )
}

pub(super) fn receipt_webhook(
    shared: &Shared,
    customer: &str,
    provider_message_id: &str,
    status: ReceiptKind,
) -> Webhook {
    let wa_id = shared.address(Channel::WhatsApp, customer);
    let mut entry = json!({
        "id": provider_message_id,
        "status": match status {
            ReceiptKind::Delivered => "delivered",
            ReceiptKind::Read => "read",
        },
        "timestamp": codec::now_unix_seconds().to_string(),
        "recipient_id": wa_id,
    });
    if let (ReceiptKind::Delivered, Some(object)) = (status, entry.as_object_mut()) {
        object.insert(
            "conversation".to_owned(),
            json!({ "id": shared.hex_id(), "origin": { "type": "service" } }),
        );
        object.insert(
            "pricing".to_owned(),
            json!({ "billable": true, "pricing_model": "CBP", "category": "service" }),
        );
    }
    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(shared),
        "statuses": [entry],
    });
    signed(shared, value, provider_message_id.to_owned(), customer)
}

fn message_webhook(shared: &Shared, customer: &str, kind: &str, content: Value) -> Webhook {
    let wa_id = shared.address(Channel::WhatsApp, customer);
    let id = format!("wamid.HBgL{}", shared.opaque_id());
    let mut message = json!({
        "from": wa_id,
        "id": id,
        "timestamp": codec::now_unix_seconds().to_string(),
        "type": kind,
    });
    if let Some(object) = message.as_object_mut() {
        object.insert(kind.to_owned(), content);
    }
    let value = json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(shared),
        "contacts": [{ "profile": { "name": display_name(customer) }, "wa_id": wa_id }],
        "messages": [message],
    });
    signed(shared, value, id, customer)
}

fn metadata(shared: &Shared) -> Value {
    json!({
        "display_phone_number": DISPLAY_PHONE_NUMBER,
        "phone_number_id": shared.config.whatsapp.phone_number_id,
    })
}

fn signed(shared: &Shared, value: Value, provider_message_id: String, customer: &str) -> Webhook {
    let payload = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": WABA_ID, "changes": [{ "value": value, "field": "messages" }] }],
    });
    meta::signed_webhook(
        Channel::WhatsApp,
        &shared.config.whatsapp.app_secret,
        &payload,
        provider_message_id,
        customer,
    )
}

pub(super) async fn handle(shared: &Shared, request: ApiRequest) -> Response {
    let segments = request.segments();
    match (&request.method, segments.as_slice()) {
        (&Method::POST, [version, phone_number_id, "messages"]) if is_version(version) => {
            send(shared, &request, phone_number_id).await
        }
        (&Method::GET, ["media", id]) => download(shared, &request, id),
        (&Method::GET, [version, id]) if is_version(version) => media_info(shared, &request, id),
        _ => GraphError::unknown_path(&segments.join("/")).respond(shared),
    }
}

fn is_version(segment: &str) -> bool {
    segment.strip_prefix('v').is_some_and(|rest| {
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
    })
}

/// What a send request asks for.
struct Outgoing {
    /// The phone number (`to`) or, for a customer with a username, the business-scoped
    /// user id (`recipient`) the message is for.
    to: String,
    /// Whether it was addressed by user id.
    by_user_id: bool,
    text: Option<String>,
    template: Option<String>,
    choices: Vec<(String, String)>,
}

async fn send(shared: &Shared, request: &ApiRequest, phone_number_id: &str) -> Response {
    shared.send_latency().await;
    let body = meta::json_object(request);
    let is_template = body
        .as_ref()
        .is_ok_and(|body| body.get("type").and_then(Value::as_str) == Some("template"));
    let kind = if is_template {
        SendKind::Template
    } else {
        SendKind::FreeForm
    };
    if let Some(fault) = shared.begin_send(Channel::WhatsApp, kind) {
        return server::faulted(fault, |fault| fault_response(shared, fault)).await;
    }
    if let Err(error) = authorize(shared, request) {
        return error.respond(shared);
    }
    if phone_number_id != shared.config.whatsapp.phone_number_id {
        return unknown_object("post", phone_number_id).respond(shared);
    }
    let body = match body {
        Ok(body) => body,
        Err(error) => return error.respond(shared),
    };
    let outgoing = match read_send(&body) {
        Ok(outgoing) => outgoing,
        Err(error) => return error.respond(shared),
    };
    let wa_id = match outgoing.by_user_id {
        true => outgoing.to.clone(),
        false => outgoing.to.trim_start_matches('+').to_owned(),
    };
    shared.hold_if_hung(&wa_id).await;
    let id = format!("wamid.HBgL{}", shared.opaque_id());
    let mut sent = json!({ "id": id });
    if let (true, Some(object)) = (outgoing.template.is_some(), sent.as_object_mut()) {
        object.insert("message_status".to_owned(), json!("accepted"));
    }
    shared.record(
        wa_id.clone(),
        Received {
            channel: Channel::WhatsApp,
            customer: wa_id.clone(),
            text: outgoing.text,
            template: outgoing.template,
            choices: outgoing.choices,
            provider_message_id: id,
            idempotency_key: None,
            received_at: std::time::Instant::now(),
            body: Value::Object(body),
        },
    );
    server::json(
        StatusCode::OK,
        &json!({
            "messaging_product": "whatsapp",
            "contacts": [match outgoing.by_user_id {
                true => json!({ "input": outgoing.to, "user_id": wa_id }),
                false => json!({ "input": outgoing.to, "wa_id": wa_id }),
            }],
            "messages": [sent],
        }),
    )
}

fn read_send(body: &Map<String, Value>) -> Result<Outgoing, GraphError> {
    let string = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    if string(body.get("messaging_product")).as_deref() != Some("whatsapp") {
        return Err(GraphError::invalid_parameter(
            "The parameter messaging_product is required.",
        ));
    }
    // `to` (a phone number) wins over `recipient` (a business-scoped user id) when both
    // are sent, as the Cloud API documents.
    let phone = string(body.get("to")).filter(|to| !to.is_empty());
    let user_id = string(body.get("recipient")).filter(|id| !id.is_empty());
    let by_user_id = phone.is_none() && user_id.is_some();
    let to = phone
        .or(user_id)
        .ok_or_else(|| GraphError::invalid_parameter("The parameter to is required."))?;
    if let Some(recipient_type) = body.get("recipient_type")
        && recipient_type.as_str() != Some("individual")
    {
        return Err(GraphError::invalid_parameter(
            "Param recipient_type must be one of {INDIVIDUAL}",
        ));
    }
    let kind = match body.get("type") {
        None => "text",
        Some(kind) => kind
            .as_str()
            .ok_or_else(|| GraphError::invalid_parameter("Param type must be a string"))?,
    };
    let content = body.get(kind);
    let mut choices = Vec::new();
    let (text, template) = match kind {
        "text" => {
            let text = string(content.and_then(|text| text.get("body")))
                .filter(|text| !text.is_empty())
                .ok_or_else(|| {
                    GraphError::invalid_parameter("The parameter text['body'] is required.")
                })?;
            if text.chars().count() > TEXT_LIMIT {
                return Err(GraphError::invalid_parameter(&format!(
                    "Param text['body'] must be at most {TEXT_LIMIT} characters long."
                )));
            }
            (Some(text), None)
        }
        "template" => {
            let name = string(content.and_then(|template| template.get("name")))
                .filter(|name| !name.is_empty())
                .ok_or_else(|| {
                    GraphError::invalid_parameter("The parameter template['name'] is required.")
                })?;
            let language = content
                .and_then(|template| template.get("language"))
                .and_then(|language| language.get("code"))
                .and_then(Value::as_str)
                .filter(|code| !code.is_empty());
            if language.is_none() {
                return Err(GraphError::invalid_parameter(
                    "The parameter template['language']['code'] is required.",
                ));
            }
            (None, Some(name))
        }
        "image" | "video" | "audio" | "document" | "sticker" => {
            let media =
                content.filter(|media| media.get("id").is_some() || media.get("link").is_some());
            let media = media.ok_or_else(|| {
                GraphError::invalid_parameter(&format!("Param {kind} must have either id or link"))
            })?;
            (string(media.get("caption")), None)
        }
        "interactive" => {
            let interactive = content.ok_or_else(|| {
                GraphError::invalid_parameter("The parameter interactive is required.")
            })?;
            let body_text = interactive.get("body").and_then(|body| body.get("text"));
            choices = interactive_choices(interactive)?;
            (string(body_text), None)
        }
        "reaction" | "location" | "contacts" => (None, None),
        other => {
            return Err(GraphError::invalid_parameter(&format!(
                "Param type must be one of {{AUDIO, CONTACTS, DOCUMENT, IMAGE, INTERACTIVE, \
                 LOCATION, REACTION, STICKER, TEMPLATE, TEXT, VIDEO}} - got \"{other}\"."
            )));
        }
    };
    Ok(Outgoing {
        to,
        by_user_id,
        text,
        template,
        choices,
    })
}

/// The buttons of an interactive message, checked against the Cloud API's limits: reply
/// buttons (1–3, `reply.id` up to 256 characters, `reply.title` up to 20) or a list
/// (`action.button` up to 20 characters, 1–10 rows over all sections, row ids up to
/// 200, titles up to 24); ids unique. Other interactive types offer no choices.
fn interactive_choices(interactive: &Value) -> Result<Vec<(String, String)>, GraphError> {
    let action = interactive.get("action");
    let empty = Vec::new();
    let array = |value: Option<&Value>| value.and_then(Value::as_array).unwrap_or(&empty).clone();
    let choices = match interactive.get("type").and_then(Value::as_str) {
        Some("button") => {
            let buttons = array(action.and_then(|action| action.get("buttons")));
            if !(1..=3).contains(&buttons.len()) {
                return Err(GraphError::invalid_parameter(
                    "Param interactive['action']['buttons'] must have between 1 and 3 elements.",
                ));
            }
            buttons
                .iter()
                .map(|button| {
                    if button.get("type").and_then(Value::as_str) != Some("reply") {
                        return Err(GraphError::invalid_parameter(
                            "Param interactive['action']['buttons'][]['type'] must be reply.",
                        ));
                    }
                    choice(button.get("reply"), 256, 20, "['buttons'][]['reply']")
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        Some("list") => {
            let label = action
                .and_then(|action| action.get("button"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if label.is_empty() || label.chars().count() > 20 {
                return Err(GraphError::invalid_parameter(
                    "Param interactive['action']['button'] must be 1 to 20 characters long.",
                ));
            }
            let rows: Vec<Value> = array(action.and_then(|action| action.get("sections")))
                .iter()
                .flat_map(|section| array(section.get("rows")))
                .collect();
            if !(1..=10).contains(&rows.len()) {
                return Err(GraphError::invalid_parameter(
                    "Total row count exceed max allowed count: 10",
                ));
            }
            rows.iter()
                .map(|row| choice(Some(row), 200, 24, "['sections'][]['rows'][]"))
                .collect::<Result<Vec<_>, _>>()?
        }
        _ => Vec::new(),
    };
    let unique = choices
        .iter()
        .enumerate()
        .all(|(n, (id, _))| !choices[..n].iter().any(|(other, _)| other == id));
    if !unique {
        return Err(GraphError::invalid_parameter(
            "Button and row ids must be unique within the message.",
        ));
    }
    Ok(choices)
}

/// `{"id","title"}` with non-empty values within the limits.
fn choice(
    object: Option<&Value>,
    max_id: usize,
    max_title: usize,
    what: &str,
) -> Result<(String, String), GraphError> {
    let field = |name: &str| {
        object
            .and_then(|object| object.get(name))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (id, title) = (field("id"), field("title"));
    if id.is_empty() || id.chars().count() > max_id {
        return Err(GraphError::invalid_parameter(&format!(
            "Param interactive['action']{what}['id'] must be 1 to {max_id} characters long."
        )));
    }
    if title.is_empty() || title.chars().count() > max_title {
        return Err(GraphError::invalid_parameter(&format!(
            "Param interactive['action']{what}['title'] must be 1 to {max_title} characters \
             long."
        )));
    }
    Ok((id, title))
}

fn authorize(shared: &Shared, request: &ApiRequest) -> Result<(), GraphError> {
    let token = meta::access_token(request);
    match &token {
        Some(token) if codec::token_matches(token, &shared.config.whatsapp.access_token) => Ok(()),
        _ => Err(GraphError::unauthorized(token.as_deref())),
    }
}

fn unknown_object(verb: &str, id: &str) -> GraphError {
    GraphError {
        subcode: Some(33),
        ..GraphError::new(
            StatusCode::BAD_REQUEST,
            100,
            format!(
                "Unsupported {verb} request. Object with ID '{id}' does not exist, cannot be \
                 loaded due to missing permissions, or does not support this operation."
            ),
        )
    }
}

fn fault_response(shared: &Shared, fault: &Fault) -> Response {
    let details = |details: &str| json!({ "messaging_product": "whatsapp", "details": details });
    match fault {
        Fault::ServerError { .. } | Fault::Timeout { .. } => {
            GraphError::server_error().respond(shared)
        }
        Fault::RateLimited {
            retry_after_secs, ..
        } => {
            let error = GraphError {
                error_data: Some(details(
                    "Message failed to send because there were too many messages sent from \
                     this phone number in a short period of time",
                )),
                ..GraphError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    130429,
                    "(#130429) Rate limit hit",
                )
            };
            meta::with_retry_after(error.respond(shared), *retry_after_secs)
        }
        Fault::Reject {
            status,
            code,
            message,
            ..
        } => GraphError {
            error_data: Some(details(message)),
            ..meta::reject(*status, *code, message)
        }
        .respond(shared),
        Fault::CustomerOutsideWindow { .. } => GraphError {
            error_data: Some(details(
                "Message failed to send because more than 24 hours have passed since the \
                 customer last replied to this number.",
            )),
            ..GraphError::new(
                StatusCode::BAD_REQUEST,
                131047,
                "(#131047) Re-engagement message",
            )
        }
        .respond(shared),
    }
}

/// `GET {api}/{media-id}`: where to download the media, for the Bearer token holder.
fn media_info(shared: &Shared, request: &ApiRequest, id: &str) -> Response {
    if let Err(error) = authorize(shared, request) {
        return error.respond(shared);
    }
    match shared.media(id) {
        Some(media) => server::json(
            StatusCode::OK,
            &json!({
                "messaging_product": "whatsapp",
                "url": format!("{}/whatsapp/media/{id}", shared.base_url),
                "mime_type": media.mime_type,
                "sha256": media.sha256_hex,
                "file_size": media.bytes.len(),
                "id": id,
            }),
        ),
        None => unknown_object("get", id).respond(shared),
    }
}

/// `GET` of the URL from [`media_info`]: the bytes, with the same Bearer token.
fn download(shared: &Shared, request: &ApiRequest, id: &str) -> Response {
    if let Err(error) = authorize(shared, request) {
        return error.respond(shared);
    }
    match shared.media(id) {
        Some(media) => server::media_bytes(media),
        None => server::not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buttons(n: usize, title: &str) -> Value {
        let buttons: Vec<Value> = (1..=n)
            .map(|id| json!({ "type": "reply", "reply": { "id": id.to_string(), "title": title } }))
            .collect();
        json!({ "type": "button", "body": { "text": "?" }, "action": { "buttons": buttons } })
    }

    fn list(rows: usize, label: &str) -> Value {
        let rows: Vec<Value> = (1..=rows)
            .map(|id| json!({ "id": id.to_string(), "title": "⭐".repeat(id.min(24)) }))
            .collect();
        json!({ "type": "list", "body": { "text": "?" },
                "action": { "button": label, "sections": [{ "rows": rows }] } })
    }

    #[test]
    fn reply_buttons_and_list_rows_are_read_within_the_cloud_apis_limits() {
        let read = |interactive: &Value| interactive_choices(interactive).ok();
        assert_eq!(
            read(&buttons(3, "⭐")),
            Some(vec![
                ("1".to_owned(), "⭐".to_owned()),
                ("2".to_owned(), "⭐".to_owned()),
                ("3".to_owned(), "⭐".to_owned()),
            ])
        );
        assert_eq!(read(&list(5, "Auswählen")).map(|c| c.len()), Some(5));
        assert_eq!(read(&json!({ "type": "cta_url" })), Some(Vec::new()));
        // What the Cloud API refuses.
        assert_eq!(read(&buttons(4, "⭐")), None);
        assert_eq!(read(&buttons(0, "⭐")), None);
        assert_eq!(read(&buttons(1, &"x".repeat(21))), None);
        assert_eq!(read(&buttons(1, "")), None);
        assert_eq!(read(&list(11, "Auswählen")), None);
        assert_eq!(read(&list(5, "")), None);
        assert_eq!(read(&list(5, &"x".repeat(21))), None);
        let mut repeated = list(2, "Auswählen");
        if let Some(row) = repeated.pointer_mut("/action/sections/0/rows/1/id") {
            *row = json!("1");
        }
        assert_eq!(read(&repeated), None);
    }
}
