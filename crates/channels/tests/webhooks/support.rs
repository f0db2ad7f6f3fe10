//! Adapters with known secrets, request builders that sign like the providers do, and a
//! one-line rendering of `Inbound` values so expectations read like the payloads.

use std::time::{Duration, SystemTime};

use helpline_channels::messenger::{MessengerAdapter, MessengerConfig};
use helpline_channels::telegram::{TelegramAdapter, TelegramConfig};
use helpline_channels::viber::{ViberAdapter, ViberConfig};
use helpline_channels::web::{WebAdapter, WebConfig};
use helpline_channels::whatsapp::{WhatsAppAdapter, WhatsAppConfig};
use helpline_channels::{
    Inbound, InboundAdapter, InboundContent, ReceiptStatus, WebhookError, WebhookRequest,
};
use helpline_domain::MediaKind;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

pub const META_APP_SECRET: &str = "meta-app-secret-for-tests";
pub const META_VERIFY_TOKEN: &str = "verify-me-4711";
pub const TELEGRAM_SECRET: &str = "tg_secret-token_4711";
pub const VIBER_AUTH_TOKEN: &str = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9";
pub const WEB_SHARED_SECRET: &str = "web-shared-secret-for-tests";

pub fn whatsapp() -> WhatsAppAdapter {
    WhatsAppAdapter::new(WhatsAppConfig {
        app_secret: META_APP_SECRET.into(),
        verify_token: META_VERIFY_TOKEN.into(),
        ..Default::default()
    })
    .unwrap()
}

pub fn messenger() -> MessengerAdapter {
    MessengerAdapter::new(MessengerConfig {
        app_secret: META_APP_SECRET.into(),
        verify_token: META_VERIFY_TOKEN.into(),
        ..Default::default()
    })
    .unwrap()
}

pub fn telegram() -> TelegramAdapter {
    TelegramAdapter::new(TelegramConfig {
        secret_token: TELEGRAM_SECRET.into(),
        ..Default::default()
    })
    .unwrap()
}

pub fn viber() -> ViberAdapter {
    ViberAdapter::new(ViberConfig {
        auth_token: VIBER_AUTH_TOKEN.into(),
        ..Default::default()
    })
    .unwrap()
}

/// The web chat adapter at [`web_now`], the time the fixtures are stamped with.
/// The web chat adapter with a five-minute window, which the window's tests are written
/// against (the default is a day).
pub fn web() -> WebAdapter {
    WebAdapter::with_clock(
        WebConfig {
            shared_secret: WEB_SHARED_SECRET.into(),
            sent_at_tolerance_secs: 300,
            ..Default::default()
        },
        web_now,
    )
    .unwrap()
}

/// 2026-11-25T15:00:00Z, the `sent_at` of the web chat fixtures.
pub fn web_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_618_800)
}

/// Every adapter, for checks that hold on all channels.
pub fn all_adapters() -> Vec<Box<dyn InboundAdapter>> {
    vec![
        Box::new(whatsapp()),
        Box::new(messenger()),
        Box::new(telegram()),
        Box::new(viber()),
        Box::new(web()),
    ]
}

/// `hex(HMAC-SHA256(key, body))`, lowercase: what Meta, Viber and our web chat sign with.
pub fn hmac_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

/// Runs `verify` on a body with the given headers and query.
pub fn verify(
    adapter: &dyn InboundAdapter,
    pairs: &[(&str, &str)],
    query: Option<&str>,
    body: &[u8],
) -> Result<(), WebhookError> {
    let headers = headers(pairs);
    adapter.verify(&WebhookRequest {
        headers: &headers,
        query,
        body,
    })
}

#[track_caller]
pub fn assert_unauthorized(result: Result<(), WebhookError>) {
    match result {
        Err(WebhookError::Unauthorized(_)) => {}
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[track_caller]
pub fn assert_malformed<T: std::fmt::Debug>(result: Result<T, WebhookError>) -> String {
    match result {
        Err(WebhookError::Malformed(reason)) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// Parses `body` and compares the rendered results line by line.
#[track_caller]
pub fn check(adapter: &dyn InboundAdapter, body: &str, expected: &[&str]) {
    let inbound = adapter
        .parse(body.as_bytes())
        .unwrap_or_else(|error| panic!("parse failed: {error}"));
    let rendered: Vec<String> = inbound.iter().map(render).collect();
    assert_eq!(rendered, expected);
}

/// Meta's subscription handshake through the adapter, as the `GET` route calls it: the
/// parameters given are in the query string.
pub fn handshake(
    adapter: &dyn InboundAdapter,
    mode: Option<&str>,
    verify_token: Option<&str>,
    challenge: Option<&str>,
) -> Result<String, WebhookError> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("hub.mode", mode),
        ("hub.verify_token", verify_token),
        ("hub.challenge", challenge),
    ] {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    let query = query.finish();
    adapter
        .handshake(Some(&query))
        .unwrap_or_else(|| panic!("{:?} has no handshake", adapter.channel()))
}

/// One line per value, personal data shown (these are test fixtures):
/// `message <id> from <contact> "<name>" at <t> to <account>: <content>`,
/// `receipt <id> <status> for <contact> at <t>`, `watermark <status> for <contact> up to <ms>`,
/// `closed <event id> by <contact>`, `ignored: <reason>`.
pub fn render(inbound: &Inbound) -> String {
    match inbound {
        Inbound::Message(message) => {
            let mut line = format!(
                "message {} from {}",
                message.provider_message_id,
                message.contact.expose()
            );
            if let Some(name) = &message.display_name {
                line += &format!(" {:?}", name.expose());
            }
            if let Some(at) = message.sent_at_unix {
                line += &format!(" at {at}");
            }
            if let Some(account) = &message.account {
                line += &format!(" to {account}");
            }
            format!("{line}: {}", render_content(&message.content))
        }
        Inbound::Receipt(receipt) => {
            let mut line = format!(
                "receipt {} {}",
                receipt.provider_message_id,
                render_status(&receipt.status)
            );
            if let Some(contact) = &receipt.contact {
                line += &format!(" for {}", contact.expose());
            }
            if let Some(at) = receipt.at_unix {
                line += &format!(" at {at}");
            }
            line
        }
        Inbound::Watermark(watermark) => format!(
            "watermark {} for {} up to {}",
            render_status(&watermark.status),
            watermark.contact.expose(),
            watermark.up_to_unix_ms
        ),
        Inbound::Closed(closed) => format!(
            "closed {} by {}",
            closed.provider_event_id,
            closed.contact.expose()
        ),
        Inbound::Consent(consent) => format!(
            "consent {} {:?} {} by {}",
            if consent.granted {
                "granted"
            } else {
                "withdrawn"
            },
            consent.scope,
            consent.provider_event_id,
            consent.contact.expose()
        ),
        Inbound::Ignored { reason } => format!("ignored: {reason}"),
    }
}

fn render_content(content: &InboundContent) -> String {
    match content {
        InboundContent::Text(text) => format!("text {:?}", text.expose()),
        InboundContent::Media {
            kind,
            provider_media,
            mime_type,
            caption,
            file_name,
        } => {
            let kind = match kind {
                MediaKind::Image => "image",
                MediaKind::Document => "document",
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
            };
            let mut line = format!("{kind} {provider_media}");
            if let Some(mime_type) = mime_type {
                line += &format!(" {mime_type}");
            }
            if let Some(caption) = caption {
                line += &format!(" caption {:?}", caption.expose());
            }
            if let Some(file_name) = file_name {
                line += &format!(" file {:?}", file_name.expose());
            }
            line
        }
        InboundContent::Location(location) => {
            let (latitude, longitude) = location.expose();
            format!("location {latitude},{longitude}")
        }
    }
}

fn render_status(status: &ReceiptStatus) -> String {
    match status {
        ReceiptStatus::Sent => "sent".to_owned(),
        ReceiptStatus::Delivered => "delivered".to_owned(),
        ReceiptStatus::Read => "read".to_owned(),
        ReceiptStatus::Failed { reason } => format!("failed ({reason})"),
    }
}
