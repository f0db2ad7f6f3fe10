//! What holds across channels: the order of checks, status codes, configuration, and
//! keeping secrets and personal data out of `Debug` and error messages.

use helpline_channels::messenger::{MessengerAdapter, MessengerConfig};
use helpline_channels::telegram::{TelegramAdapter, TelegramConfig};
use helpline_channels::viber::{ViberAdapter, ViberConfig};
use helpline_channels::web::{WebAdapter, WebConfig};
use helpline_channels::whatsapp::{WhatsAppAdapter, WhatsAppConfig};
use helpline_channels::{
    ConfigError, InboundAdapter, MAX_BODY_BYTES, WebhookError, WebhookRequest,
};
use helpline_domain::Channel;

use crate::support::*;

const TEXT: &str = r#"{"update_id":1,"message":{"message_id":1,"chat":{"id":4915112345678,"type":"private"},"text":"My serial is 2NS7N19B12345678"}}"#;

fn receive_telegram(token: Option<&str>, body: &[u8]) -> Result<usize, WebhookError> {
    let pairs: Vec<(&str, &str)> = token
        .map(|token| ("X-Telegram-Bot-Api-Secret-Token", token))
        .into_iter()
        .collect();
    let headers = headers(&pairs);
    telegram()
        .receive(&WebhookRequest {
            headers: &headers,
            query: None,
            body,
        })
        .map(|inbound| inbound.len())
}

#[test]
fn receive_checks_size_then_credentials_then_the_body() {
    let too_large = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        receive_telegram(None, &too_large),
        Err(WebhookError::TooLarge {
            limit: MAX_BODY_BYTES
        })
    );
    assert_unauthorized(receive_telegram(None, b"not json").map(drop));
    assert_malformed(receive_telegram(Some(TELEGRAM_SECRET), b"not json"));
    assert_eq!(
        receive_telegram(Some(TELEGRAM_SECRET), TEXT.as_bytes()),
        Ok(1)
    );
}

#[test]
fn every_entry_point_refuses_a_body_over_the_limit() {
    let too_large = vec![b' '; MAX_BODY_BYTES + 1];
    for adapter in all_adapters() {
        let too_large_error = Err(WebhookError::TooLarge {
            limit: MAX_BODY_BYTES,
        });
        assert_eq!(adapter.parse(&too_large), too_large_error);
        assert_eq!(
            verify(adapter.as_ref(), &[], None, &too_large),
            Err(WebhookError::TooLarge {
                limit: MAX_BODY_BYTES,
            })
        );
    }
}

#[test]
fn status_codes() {
    let cases = [
        (WebhookError::Unauthorized("x".into()), 401),
        (WebhookError::Malformed("x".into()), 400),
        (WebhookError::UnsupportedMediaType("x".into()), 415),
        (WebhookError::TooLarge { limit: 1 }, 413),
    ];
    for (error, code) in cases {
        assert_eq!(error.status_code(), code, "{error}");
    }
}

#[test]
fn channels() {
    let channels: Vec<Channel> = all_adapters()
        .iter()
        .map(|adapter| adapter.channel())
        .collect();
    assert_eq!(
        channels,
        [
            Channel::WhatsApp,
            Channel::Messenger,
            Channel::Telegram,
            Channel::Viber,
            Channel::WebChat
        ]
    );
}

#[test]
fn empty_secrets_are_refused_at_start() {
    let empty = || "".into();
    assert_eq!(
        WhatsAppAdapter::new(WhatsAppConfig {
            app_secret: empty(),
            verify_token: "t".into(),
            ..Default::default()
        })
        .map(drop),
        Err(ConfigError::EmptySecret {
            channel: Channel::WhatsApp,
            field: "app_secret"
        })
    );
    assert_eq!(
        MessengerAdapter::new(MessengerConfig {
            app_secret: "s".into(),
            verify_token: empty(),
            ..Default::default()
        })
        .map(drop),
        Err(ConfigError::EmptySecret {
            channel: Channel::Messenger,
            field: "verify_token"
        })
    );
    assert!(
        ViberAdapter::new(ViberConfig {
            auth_token: empty(),
            ..Default::default()
        })
        .is_err()
    );
    assert!(
        WebAdapter::new(WebConfig {
            shared_secret: empty(),
            ..Default::default()
        })
        .is_err()
    );
}

#[test]
fn a_telegram_secret_telegram_would_refuse_is_refused() {
    let long = "a".repeat(257);
    for token in ["", "has space", "ümlaut", "semi;colon", long.as_str()] {
        assert_eq!(
            TelegramAdapter::new(TelegramConfig {
                secret_token: token.into(),
                ..Default::default()
            })
            .map(drop),
            Err(ConfigError::InvalidTelegramSecret),
            "{token:?}"
        );
    }
}

#[test]
fn debug_shows_no_secret() {
    let rendered = format!(
        "{:?} {:?} {:?} {:?} {:?}",
        whatsapp(),
        messenger(),
        telegram(),
        viber(),
        web()
    );
    for secret in [
        META_APP_SECRET,
        META_VERIFY_TOKEN,
        TELEGRAM_SECRET,
        VIBER_AUTH_TOKEN,
        WEB_SHARED_SECRET,
    ] {
        assert!(!rendered.contains(secret), "{rendered}");
    }
    assert!(rendered.contains("***"));
}

#[test]
fn debug_shows_no_personal_data() {
    let inbound = telegram().parse(TEXT.as_bytes()).unwrap();
    let rendered = format!("{inbound:?}");
    assert!(!rendered.contains("4915112345678"), "{rendered}");
    assert!(!rendered.contains("2NS7N19B12345678"), "{rendered}");
}

#[test]
fn errors_do_not_quote_the_body() {
    let bodies = [
        // Wrong types whose values serde would quote.
        r#"{"update_id":1,"message":{"message_id":1,"chat":{"id":"+4915112345678","type":"private"}}}"#,
        r#"{"update_id":1,"message":{"message_id":"+4915112345678","chat":{"id":1,"type":"private"}}}"#,
        r#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"text":4915112345678}}"#,
        r#"{"update_id":1,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"text":["+4915112345678"]}}"#,
    ];
    for body in bodies {
        let reason = assert_malformed(telegram().parse(body.as_bytes()));
        assert!(!reason.contains("4915112345678"), "{reason}");
    }
    let web_bodies = [
        r#"{"version":1,"event_id":"e","type":"message","sent_at":"s","session_id":"s","+4915112345678":1}"#,
        r#"{"version":1,"event_id":"e","type":"+4915112345678","sent_at":"s","session_id":"s"}"#,
    ];
    for body in web_bodies {
        let reason = assert_malformed(web().parse(body.as_bytes()));
        assert!(!reason.contains("4915112345678"), "{reason}");
    }
}

#[test]
fn ignored_reasons_do_not_carry_content() {
    let body = r#"{"update_id":1,"call me on +4915112345678":{}}"#;
    check(&telegram(), body, &["ignored: telegram update `unknown`"]);
}

#[test]
fn a_request_debugs_without_credentials_or_body() {
    let headers = headers(&[("X-Telegram-Bot-Api-Secret-Token", TELEGRAM_SECRET)]);
    let request = WebhookRequest {
        headers: &headers,
        query: Some("sig=abc"),
        body: TEXT.as_bytes(),
    };
    let rendered = format!("{request:?}");
    assert!(!rendered.contains(TELEGRAM_SECRET), "{rendered}");
    assert!(!rendered.contains("sig=abc"), "{rendered}");
    assert!(!rendered.contains("2NS7N19B12345678"), "{rendered}");
}
