//! Telegram Bot API (`CHANNELS.md` §3): updates as Telegram posts them (the secret token in
//! a header, no body signature), `POST {api}/bot<token>/<method>`, and files by `getFile`.
//!
//! Telegram takes a method's parameters from the query string, a form or a JSON body; so
//! does the simulator (not multipart). Method names are case-insensitive, as in Telegram.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use helpline_domain::Channel;
use serde_json::{Map, Value, json};

use super::server::{self, ApiRequest};
use super::state::{SendKind, Shared};
use super::{Fault, MediaRef, Received, Webhook, codec, display_name};

pub(super) const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
const TEXT_LIMIT: usize = 4096;
const CAPTION_LIMIT: usize = 1024;
/// `callback_data` of an inline keyboard button: 1–64 bytes.
const CALLBACK_DATA_LIMIT: usize = 64;

pub(super) fn text_webhook(shared: &Shared, customer: &str, text: &str) -> Webhook {
    message_webhook(shared, customer, |message| {
        message.insert("text".to_owned(), json!(text));
    })
}

/// Telegram sends a photo in several sizes; the largest has the media's own id.
pub(super) fn image_webhook(
    shared: &Shared,
    customer: &str,
    media: &MediaRef,
    caption: Option<&str>,
) -> Webhook {
    let size = |suffix: &str, width: u32, height: u32, bytes: usize| {
        json!({
            "file_id": format!("{}{suffix}", media.id),
            "file_unique_id": format!("AQAD{}{suffix}", media.id),
            "file_size": bytes,
            "width": width,
            "height": height,
        })
    };
    let photo = json!([
        size("-90", 90, 68, media.size.min(1_500)),
        size("-320", 320, 240, media.size.min(20_000)),
        size("", 1280, 960, media.size),
    ]);
    message_webhook(shared, customer, |message| {
        message.insert("photo".to_owned(), photo);
        if let Some(caption) = caption {
            message.insert("caption".to_owned(), json!(caption));
        }
    })
}

/// A tap on an inline keyboard button: a `callback_query` update with `data` = `id`, on
/// the customer's latest message (its id, text and keyboard), from the customer.
pub(super) fn choice_webhook(shared: &Shared, customer: &str, id: &str) -> Webhook {
    let chat = shared.telegram_chat_id(customer);
    let name = display_name(customer);
    let update_id = shared.next_update_id();
    let mut callback = Map::new();
    callback.insert("id".to_owned(), json!(shared.numeric_id().to_string()));
    callback.insert(
        "from".to_owned(),
        json!({ "id": chat, "is_bot": false, "first_name": name, "language_code": "en" }),
    );
    let last = shared
        .received(Some((Channel::Telegram, chat.to_string().as_str())))
        .pop();
    if let Some(last) = last {
        let mut message = json!({
            "message_id": last.provider_message_id.parse::<i64>().unwrap_or(0),
            "from": bot_user(shared),
            "chat": { "id": chat, "first_name": name, "type": "private" },
            "date": codec::now_unix_seconds(),
            "text": last.text.unwrap_or_default(),
        });
        if let (Some(markup), Some(object)) =
            (last.body.get("reply_markup"), message.as_object_mut())
        {
            object.insert("reply_markup".to_owned(), markup.clone());
        }
        callback.insert("message".to_owned(), message);
    }
    callback.insert("chat_instance".to_owned(), json!(format!("-{chat}")));
    callback.insert("data".to_owned(), json!(id));
    let update = json!({ "update_id": update_id, "callback_query": callback });
    signed(shared, &update, update_id.to_string(), customer)
}

/// Bots get no receipts: an update carrying no message, which helpline ignores.
pub(super) fn receipt_webhook(
    shared: &Shared,
    customer: &str,
    provider_message_id: &str,
) -> Webhook {
    let update = json!({ "update_id": shared.next_update_id() });
    signed(shared, &update, provider_message_id.to_owned(), customer)
}

fn message_webhook(
    shared: &Shared,
    customer: &str,
    content: impl FnOnce(&mut Map<String, Value>),
) -> Webhook {
    let chat = shared.telegram_chat_id(customer);
    let name = display_name(customer);
    let update_id = shared.next_update_id();
    let mut message = Map::new();
    message.insert(
        "message_id".to_owned(),
        json!(shared.next_telegram_message_id(chat)),
    );
    message.insert(
        "from".to_owned(),
        json!({ "id": chat, "is_bot": false, "first_name": name, "language_code": "en" }),
    );
    message.insert(
        "chat".to_owned(),
        json!({ "id": chat, "first_name": name, "type": "private" }),
    );
    message.insert("date".to_owned(), json!(codec::now_unix_seconds()));
    content(&mut message);
    let update = json!({ "update_id": update_id, "message": message });
    signed(shared, &update, update_id.to_string(), customer)
}

fn signed(shared: &Shared, update: &Value, provider_message_id: String, customer: &str) -> Webhook {
    Webhook {
        channel: Channel::Telegram,
        path: "/webhooks/telegram".to_owned(),
        query: None,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                SECRET_HEADER.to_owned(),
                shared.config.telegram.secret_token.clone(),
            ),
        ],
        body: codec::plain_json(update),
        provider_message_id,
        customer: customer.to_owned(),
    }
}

pub(super) async fn handle(shared: &Shared, request: ApiRequest) -> Response {
    let segments = request.segments();
    match segments.as_slice() {
        ["file", bot, path @ ..] => download(shared, bot, &path.join("/")),
        [bot, method] => match bot.strip_prefix("bot") {
            Some(token) => call(shared, &request, token, &method.to_ascii_lowercase()).await,
            None => not_found(),
        },
        _ => not_found(),
    }
}

async fn call(shared: &Shared, request: &ApiRequest, token: &str, method: &str) -> Response {
    let is_send = matches!(method, "sendmessage" | "sendphoto" | "senddocument");
    if is_send {
        shared.send_latency().await;
    }
    if is_send && let Some(fault) = shared.begin_send(Channel::Telegram, SendKind::FreeForm) {
        return server::faulted(fault, fault_response).await;
    }
    if !codec::token_matches(token, &shared.config.telegram.bot_token) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let params = match params(request) {
        Ok(params) => params,
        Err(description) => return error(StatusCode::BAD_REQUEST, description),
    };
    match method {
        "sendmessage" | "sendphoto" | "senddocument" => send(shared, method, params),
        "getme" => ok(bot_user(shared)),
        "getfile" => get_file(shared, &params),
        _ => not_found(),
    }
}

/// The method's parameters: the query string, then a JSON or form body over it; or the
/// description of a `400`.
fn params(request: &ApiRequest) -> Result<Map<String, Value>, &'static str> {
    let mut params: Map<String, Value> = request
        .query
        .as_deref()
        .map(codec::form_pairs)
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, Value::String(value)))
        .collect();
    if request.body.is_empty() {
        return Ok(params);
    }
    let content_type = request
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let body = String::from_utf8_lossy(&request.body);
        for (key, value) in codec::form_pairs(&body) {
            params.insert(key, Value::String(value));
        }
        return Ok(params);
    }
    if content_type.starts_with("multipart/") {
        return Err("Bad Request: multipart uploads are not simulated");
    }
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(body)) => {
            params.extend(body);
            Ok(params)
        }
        _ => Err("Bad Request: can't parse JSON object"),
    }
}

fn send(shared: &Shared, method: &str, mut params: Map<String, Value>) -> Response {
    let chat = match chat_id(&params) {
        Ok(chat) => chat,
        Err(description) => return error(StatusCode::BAD_REQUEST, description),
    };
    let choices = match reply_markup(&mut params) {
        Ok(choices) => choices,
        Err(description) => return error(StatusCode::BAD_REQUEST, description),
    };
    let string = |name: &str| params.get(name).and_then(Value::as_str).map(str::to_owned);
    let text = match method {
        "sendmessage" => {
            let Some(text) = string("text").filter(|text| !text.is_empty()) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: message text is empty",
                );
            };
            if text.chars().count() > TEXT_LIMIT {
                return error(StatusCode::BAD_REQUEST, "Bad Request: message is too long");
            }
            Some(text)
        }
        _ => {
            let field = if method == "sendphoto" {
                "photo"
            } else {
                "document"
            };
            if params.get(field).is_none() {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Bad Request: there is no {field} in the request"),
                );
            }
            let caption = string("caption");
            if caption
                .as_ref()
                .is_some_and(|caption| caption.chars().count() > CAPTION_LIMIT)
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: message caption is too long",
                );
            }
            caption
        }
    };
    let message_id = shared.next_telegram_message_id(chat);
    let mut message = json!({
        "message_id": message_id,
        "from": bot_user(shared),
        "chat": { "id": chat, "type": "private" },
        "date": codec::now_unix_seconds(),
    });
    if let (Some(text), Some(object)) = (&text, message.as_object_mut()) {
        let key = if method == "sendmessage" {
            "text"
        } else {
            "caption"
        };
        object.insert(key.to_owned(), json!(text));
    }
    shared.record(
        chat.to_string(),
        Received {
            channel: Channel::Telegram,
            customer: shared.telegram_customer(chat),
            text,
            template: None,
            choices,
            provider_message_id: message_id.to_string(),
            idempotency_key: None,
            received_at: std::time::Instant::now(),
            body: Value::Object(params),
        },
    );
    ok(message)
}

/// The inline keyboard's buttons with `callback_data`, as `(callback_data, text)`; or the
/// description of a `400`. `reply_markup` may come JSON-serialized (from a query or a
/// form), as Telegram takes it; it is kept decoded in the recorded parameters.
fn reply_markup(params: &mut Map<String, Value>) -> Result<Vec<(String, String)>, &'static str> {
    let invalid = "Bad Request: can't parse reply keyboard markup JSON object";
    let markup = match params.get("reply_markup") {
        None => return Ok(Vec::new()),
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).map_err(|_| invalid)?,
        Some(markup) => markup.clone(),
    };
    let Some(keyboard) = markup.get("inline_keyboard") else {
        // A reply keyboard, its removal or a forced reply: no buttons of ours to tap.
        params.insert("reply_markup".to_owned(), markup);
        return Ok(Vec::new());
    };
    let rows = keyboard.as_array().ok_or(invalid)?;
    let mut choices = Vec::new();
    for row in rows {
        for button in row.as_array().ok_or(invalid)? {
            let text = button.get("text").and_then(Value::as_str).unwrap_or("");
            if text.is_empty() {
                return Err("Bad Request: text buttons are unallowed in the inline keyboard");
            }
            match button.get("callback_data") {
                None => {}
                Some(Value::String(data)) if (1..=CALLBACK_DATA_LIMIT).contains(&data.len()) => {
                    choices.push((data.clone(), text.to_owned()));
                }
                Some(_) => return Err("Bad Request: BUTTON_DATA_INVALID"),
            }
        }
    }
    params.insert("reply_markup".to_owned(), markup);
    Ok(choices)
}

/// `chat_id` as a number or a numeric string (`@channelusername` is no private chat); or
/// the description of a `400`.
fn chat_id(params: &Map<String, Value>) -> Result<i64, &'static str> {
    let chat = match params.get("chat_id") {
        None => return Err("Bad Request: chat_id is empty"),
        Some(Value::Number(number)) => number.as_i64(),
        Some(Value::String(text)) => text.trim().parse().ok(),
        Some(_) => None,
    };
    chat.ok_or("Bad Request: chat not found")
}

fn get_file(shared: &Shared, params: &Map<String, Value>) -> Response {
    let Some(file_id) = params.get("file_id").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "Bad Request: file_id is empty");
    };
    let id = file_id.split('-').next().unwrap_or(file_id);
    match shared.media(id) {
        Some(media) => ok(json!({
            "file_id": file_id,
            "file_unique_id": format!("AQAD{file_id}"),
            "file_size": media.bytes.len(),
            "file_path": file_path(id, &media.mime_type),
        })),
        None => error(StatusCode::BAD_REQUEST, "Bad Request: invalid file_id"),
    }
}

fn file_path(id: &str, mime_type: &str) -> String {
    let folder = if mime_type.starts_with("image/") {
        "photos"
    } else {
        "documents"
    };
    let extension = match mime_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "application/pdf" => "pdf",
        _ => "bin",
    };
    format!("{folder}/file_{id}.{extension}")
}

/// `GET {api}/file/bot<token>/<file_path>`.
fn download(shared: &Shared, bot: &str, path: &str) -> Response {
    let token_ok = bot
        .strip_prefix("bot")
        .is_some_and(|token| codec::token_matches(token, &shared.config.telegram.bot_token));
    let id = path
        .rsplit('/')
        .next()
        .and_then(|name| name.strip_prefix("file_"))
        .and_then(|name| name.split('.').next());
    match (token_ok, id.and_then(|id| shared.media(id))) {
        (true, Some(media)) => server::media_bytes(media),
        _ => not_found(),
    }
}

/// The bot itself; its id is the token's digits before `:`.
fn bot_user(shared: &Shared) -> Value {
    let token = &shared.config.telegram.bot_token;
    let id: i64 = token
        .split(':')
        .next()
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0);
    json!({ "id": id, "is_bot": true, "first_name": "Helpline Sim", "username": "helpline_sim_bot" })
}

fn fault_response(fault: &Fault) -> Response {
    match fault {
        Fault::ServerError { .. } | Fault::Timeout { .. } => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Fault::RateLimited {
            retry_after_secs, ..
        } => server::json(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {retry_after_secs}"),
                "parameters": { "retry_after": retry_after_secs },
            }),
        ),
        Fault::Reject {
            status,
            code,
            message,
            ..
        } => server::json(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            &json!({ "ok": false, "error_code": code, "description": message }),
        ),
        Fault::CustomerOutsideWindow { .. } => error(
            StatusCode::FORBIDDEN,
            "Forbidden: bot was blocked by the user",
        ),
    }
}

fn ok(result: Value) -> Response {
    server::json(StatusCode::OK, &json!({ "ok": true, "result": result }))
}

/// `{"ok":false,"error_code":<status>,"description":…}` with that HTTP status.
fn error(status: StatusCode, description: &str) -> Response {
    server::json(
        status,
        &json!({ "ok": false, "error_code": status.as_u16(), "description": description }),
    )
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(markup: Value) -> Map<String, Value> {
        let mut params = Map::new();
        params.insert("reply_markup".to_owned(), markup);
        params
    }

    #[test]
    fn inline_keyboard_buttons_with_callback_data_are_the_choices() {
        let keyboard = json!({ "inline_keyboard": [
            [{ "text": "⭐", "callback_data": "1" }],
            [{ "text": "⭐⭐", "callback_data": "2" }, { "text": "Web", "url": "https://example.com" }],
        ] });
        let expected = vec![
            ("1".to_owned(), "⭐".to_owned()),
            ("2".to_owned(), "⭐⭐".to_owned()),
        ];
        let mut object = params(keyboard.clone());
        assert_eq!(reply_markup(&mut object), Ok(expected.clone()));
        // Serialized, as a query or a form carries it; kept decoded.
        let mut serialized = params(json!(keyboard.to_string()));
        assert_eq!(reply_markup(&mut serialized), Ok(expected));
        assert_eq!(serialized.get("reply_markup"), Some(&keyboard));
        let mut none = Map::new();
        assert_eq!(reply_markup(&mut none), Ok(Vec::new()));
        let mut removal = params(json!({ "remove_keyboard": true }));
        assert_eq!(reply_markup(&mut removal), Ok(Vec::new()));
    }

    #[test]
    fn callback_data_beyond_64_bytes_or_an_empty_text_is_refused() {
        let long =
            json!({ "inline_keyboard": [[{ "text": "x", "callback_data": "x".repeat(65) }]] });
        assert_eq!(
            reply_markup(&mut params(long)),
            Err("Bad Request: BUTTON_DATA_INVALID")
        );
        let empty = json!({ "inline_keyboard": [[{ "text": "x", "callback_data": "" }]] });
        assert!(reply_markup(&mut params(empty)).is_err());
        let no_text = json!({ "inline_keyboard": [[{ "text": "", "callback_data": "1" }]] });
        assert!(reply_markup(&mut params(no_text)).is_err());
        assert!(reply_markup(&mut params(json!("{not json"))).is_err());
    }
}
