//! Apple Messages for Business (`APPLE-AND-NOTIFY.md` §1): a JWT of Apple's for our MSP,
//! the business in `destination-id`, gzip or plain JSON bodies.

use std::io::Write;
use std::time::{Duration, SystemTime};

use helpline_channels::apple::{AppleAdapter, AppleConfig};
use helpline_channels::{InboundAdapter, WebhookError, WebhookRequest};
use http::{HeaderMap, HeaderValue};

use crate::support::*;

const MSP: &str = "msp-0001";
const BUSINESS: &str = "a884eddf-business";
/// "secret-of-the-msp", Base64, as Apple issues it.
const SECRET: &str = "c2VjcmV0LW9mLXRoZS1tc3A=";
const NOW: u64 = 1_764_082_800;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

fn apple() -> AppleAdapter {
    AppleAdapter::with_clock(
        AppleConfig {
            msp_id: MSP.to_owned(),
            secret: SECRET.into(),
            business_id: BUSINESS.to_owned(),
            ..AppleConfig::default()
        },
        now,
    )
    .unwrap()
}

/// Apple's token: HS256 under the decoded secret, with `aud` and `iat`.
fn token(aud: &str, iat: u64, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"aud": aud, "iat": iat}),
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

fn headers(token: &str, destination: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers.insert(
        "destination-id",
        HeaderValue::from_str(destination).unwrap(),
    );
    headers
}

fn verify(headers: &HeaderMap) -> Result<(), WebhookError> {
    apple().verify(&WebhookRequest {
        headers,
        query: None,
        body: b"{}",
    })
}

fn gzip(json: &str) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(json.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn a_token_of_apples_for_our_msp_and_business_verifies_and_nothing_else_does() {
    let key = b"secret-of-the-msp";
    assert_eq!(verify(&headers(&token(MSP, NOW, key), BUSINESS)), Ok(()));
    // An hour either way is tolerated; more is a replay or a clock far off.
    assert_eq!(
        verify(&headers(&token(MSP, NOW - 3600, key), BUSINESS)),
        Ok(())
    );
    for (why, headers) in [
        (
            "another MSP",
            headers(&token("msp-other", NOW, key), BUSINESS),
        ),
        (
            "another secret",
            headers(&token(MSP, NOW, b"not-the-secret"), BUSINESS),
        ),
        ("stale", headers(&token(MSP, NOW - 3601, key), BUSINESS)),
        (
            "from the future",
            headers(&token(MSP, NOW + 3601, key), BUSINESS),
        ),
        (
            "another business",
            headers(&token(MSP, NOW, key), "other-business"),
        ),
        ("no token", {
            let mut headers = headers(&token(MSP, NOW, key), BUSINESS);
            headers.remove("authorization");
            headers
        }),
    ] {
        assert!(
            matches!(verify(&headers), Err(WebhookError::Unauthorized(_))),
            "{why}"
        );
    }
}

#[test]
fn a_gzipped_text_is_the_customers_words_in_their_language_by_their_entry_point() {
    let body = r#"{"v":1,"id":"6b0e-1","type":"text","sourceId":"urn:mbid:AQAAY1","destinationId":"a884eddf-business","locale":"en_US","intent":"repair_status","group":"laptops","body":"My laptop is dead"}"#;
    let inbound = apple().parse(&gzip(body)).unwrap();
    let [helpline_channels::Inbound::Message(message)] = inbound.as_slice() else {
        panic!("{inbound:?}");
    };
    assert_eq!(message.language.as_deref(), Some("en"));
    let point = message.entry_point.clone().unwrap();
    assert_eq!(
        (point.intent.as_str(), point.group.as_str()),
        ("repair_status", "laptops")
    );
    check(
        &apple(),
        body,
        &[r#"message 6b0e-1 from urn:mbid:AQAAY1 to a884eddf-business: text "My laptop is dead""#],
    );
}

#[test]
fn an_attachment_is_its_encrypted_reference_and_the_words_a_part_of_their_own() {
    let body = r#"{"v":1,"id":"6b0e-2","type":"text","sourceId":"urn:mbid:AQAAY1","destinationId":"a884eddf-business","body":"Typenschild \ufffc","attachments":[{"name":"IMG_1.JPG","mimeType":"image/jpeg","size":"27654","key":"00abab","url":"https://p1.icloud-content.com/x","owner":"o1","signature":"81d3"}]}"#;
    let inbound = apple().parse(body.as_bytes()).unwrap();
    let rendered: Vec<String> = inbound.iter().map(render).collect();
    assert_eq!(rendered.len(), 2, "{rendered:?}");
    assert_eq!(
        rendered[0],
        r#"message 6b0e-2 from urn:mbid:AQAAY1 to a884eddf-business: text "Typenschild""#
    );
    assert!(
        rendered[1].starts_with("message 6b0e-2#1 "),
        "{}",
        rendered[1]
    );
    assert!(rendered[1].contains("apple:"), "{}", rendered[1]);
}

#[test]
fn a_tapped_quick_reply_is_its_rating_digit_typing_is_ignored_and_close_is_a_closing() {
    check(
        &apple(),
        r#"{"v":1,"id":"6b0e-3","type":"interactive","sourceId":"urn:mbid:AQAAY1","destinationId":"a884eddf-business","interactiveData":{"data":{"version":"1.0","requestIdentifier":"r","quick-reply":{"items":[{"identifier":"5","title":"⭐⭐⭐⭐⭐"}],"selectedIdentifier":"5"}}}}"#,
        &[r#"message 6b0e-3 from urn:mbid:AQAAY1 to a884eddf-business: text "5""#],
    );
    check(
        &apple(),
        r#"{"v":1,"id":"6b0e-4","type":"typing_start","sourceId":"urn:mbid:AQAAY1","destinationId":"a884eddf-business"}"#,
        &["ignored: apple typing indicator"],
    );
    check(
        &apple(),
        r#"{"v":1,"id":"6b0e-5","type":"close","sourceId":"urn:mbid:AQAAY1","destinationId":"a884eddf-business"}"#,
        &["closed 6b0e-5 by urn:mbid:AQAAY1"],
    );
    check(
        &apple(),
        r#"{"v":1,"id":"6b0e-6","type":"richLink","sourceId":"urn:mbid:AQAAY1"}"#,
        &["ignored: apple message type `richLink`"],
    );
}

#[test]
fn what_is_not_gzip_or_json_is_malformed_and_a_gzip_bomb_is_too_large() {
    let mut truncated = gzip(r#"{"v":1,"id":"x","type":"text"}"#);
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        apple().parse(&truncated),
        Err(WebhookError::Malformed(_))
    ));
    let bomb = gzip(&" ".repeat(5 * 1024 * 1024));
    assert!(matches!(
        apple().parse(&bomb),
        Err(WebhookError::TooLarge { .. })
    ));
    assert!(matches!(
        apple().parse(br#"{"v":1,"type":"text","body":"no id"}"#),
        Err(WebhookError::Malformed(_))
    ));
}
