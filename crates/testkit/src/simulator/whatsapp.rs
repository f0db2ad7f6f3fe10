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
    to: String,
    text: Option<String>,
    template: Option<String>,
}

async fn send(shared: &Shared, request: &ApiRequest, phone_number_id: &str) -> Response {
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
    let wa_id = outgoing.to.trim_start_matches('+').to_owned();
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
            provider_message_id: id,
            idempotency_key: None,
            body: Value::Object(body),
        },
    );
    server::json(
        StatusCode::OK,
        &json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": outgoing.to, "wa_id": wa_id }],
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
    let to = string(body.get("to"))
        .filter(|to| !to.is_empty())
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
            let body_text = content
                .and_then(|interactive| interactive.get("body"))
                .and_then(|body| body.get("text"));
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
    Ok(Outgoing { to, text, template })
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
