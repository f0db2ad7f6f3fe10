//! helpline's web chat: `CHANNELS.md` §5. Our own schema, so unknown is malformed.

use std::time::{Duration, SystemTime};

use helpline_channels::web::{WebAdapter, WebConfig};
use helpline_channels::{InboundAdapter, WebhookError, WebhookRequest};

use crate::support::*;

const HEADER: &str = "X-Helpline-Signature";

const MESSAGE: &str = r#"{"version":1,"event_id":"evt_01JDQ7Z3K8M2N4P6R8T0V2X4A1","type":"message","sent_at":"2026-11-25T15:00:00Z",
 "session_id":"sess_9f8e7d6c5b4a","customer":{"id":"cust_42","name":"Jane Doe","locale":"en-GB"},
 "message":{"id":"wc_msg_01","text":"My serial is 2NS7N19B12345678",
   "attachments":[{"type":"image","url":"https://chat.example.com/uploads/3f2a/label.jpg","mime_type":"image/jpeg","size_bytes":90211,"sha256":"ab12"}]}}"#;

fn signed(body: &[u8], content_type: &str) -> Result<(), WebhookError> {
    let signature = format!("sha256={}", hmac_hex(WEB_SHARED_SECRET, body));
    verify(
        &web(),
        &[(HEADER, &signature), ("Content-Type", content_type)],
        None,
        body,
    )
}

#[test]
fn a_body_signed_with_the_shared_secret_verifies() {
    assert_eq!(signed(MESSAGE.as_bytes(), "application/json"), Ok(()));
    assert_eq!(
        signed(MESSAGE.as_bytes(), "application/json; charset=utf-8"),
        Ok(())
    );
    assert_eq!(
        signed(MESSAGE.as_bytes(), "Application/JSON;charset=\"UTF-8\""),
        Ok(())
    );
}

#[test]
fn a_tampered_body_is_unauthorized() {
    let body = MESSAGE.as_bytes();
    let signature = format!("sha256={}", hmac_hex(WEB_SHARED_SECRET, body));
    let tampered = MESSAGE.replace("Jane", "Joan");
    assert_unauthorized(verify(
        &web(),
        &[(HEADER, &signature), ("Content-Type", "application/json")],
        None,
        tampered.as_bytes(),
    ));
}

#[test]
fn a_wrong_missing_or_wrong_length_signature_is_unauthorized() {
    let body = MESSAGE.as_bytes();
    let full = format!("sha256={}", hmac_hex(WEB_SHARED_SECRET, body));
    let other = format!("sha256={}", hmac_hex("another-secret", body));
    let json = ("Content-Type", "application/json");
    for signature in [
        &other,
        &full[..full.len() - 1],
        &format!("{full}ab"),
        &full[7..],
    ] {
        assert_unauthorized(verify(&web(), &[(HEADER, signature), json], None, body));
    }
    assert_unauthorized(verify(&web(), &[json], None, body));
}

#[test]
fn a_content_type_other_than_json_in_utf8_is_unsupported() {
    for content_type in [
        "text/plain",
        "application/json; charset=iso-8859-1",
        "application/jsonx",
    ] {
        assert_eq!(
            signed(MESSAGE.as_bytes(), content_type).map_err(|error| error.status_code()),
            Err(415),
            "{content_type}"
        );
    }
    let body = MESSAGE.as_bytes();
    let signature = format!("sha256={}", hmac_hex(WEB_SHARED_SECRET, body));
    assert!(matches!(
        verify(&web(), &[(HEADER, &signature)], None, body),
        Err(WebhookError::UnsupportedMediaType(_))
    ));
}

#[test]
fn the_signature_is_checked_before_the_content_type() {
    assert_unauthorized(verify(
        &web(),
        &[("Content-Type", "text/plain")],
        None,
        b"{}",
    ));
}

#[test]
fn a_message_with_text_and_an_attachment_is_two_parts() {
    check(
        &web(),
        MESSAGE,
        &[
            r#"message wc_msg_01 from sess_9f8e7d6c5b4a "Jane Doe" at 1795618800: text "My serial is 2NS7N19B12345678""#,
            "message wc_msg_01#1 from sess_9f8e7d6c5b4a \"Jane Doe\" at 1795618800: image https://chat.example.com/uploads/3f2a/label.jpg image/jpeg",
        ],
    );
}

#[test]
fn each_attachment_kind() {
    let body = r#"{"version":1,"event_id":"e","type":"message","sent_at":"2026-11-25T16:00:00+01:00","session_id":"s",
      "message":{"id":"m","attachments":[
        {"type":"image","url":"https://c/i.png"},
        {"type":"video","url":"https://c/v.mp4","mime_type":"video/mp4"},
        {"type":"audio","url":"https://c/a.ogg"},
        {"type":"document","url":"https://c/d.pdf","file_name":"invoice.pdf"}]}}"#;
    check(
        &web(),
        body,
        &[
            "message m from s at 1795618800: image https://c/i.png",
            "message m#1 from s at 1795618800: video https://c/v.mp4 video/mp4",
            "message m#2 from s at 1795618800: audio https://c/a.ogg",
            r#"message m#3 from s at 1795618800: document https://c/d.pdf file "invoice.pdf""#,
        ],
    );
}

#[test]
fn status_is_a_receipt() {
    let body = r#"{"version":1,"event_id":"e2","type":"status","sent_at":"2026-11-25T15:00:05Z","session_id":"sess_1",
      "status":{"message_id":"out_7","state":"read","at":"2026-11-25T15:00:04.250Z"}}"#;
    check(
        &web(),
        body,
        &["receipt out_7 read for sess_1 at 1795618804"],
    );
}

#[test]
fn strictness_unknown_fields_types_versions_and_duplicate_keys_are_malformed() {
    let cases = [
        MESSAGE.replace(r#""version":1"#, r#""version":2"#),
        MESSAGE.replace(r#""type":"message""#, r#""type":"typing""#),
        MESSAGE.replace(r#""locale":"en-GB""#, r#""locale":"en-GB","age":42"#),
        MESSAGE.replace(r#""session_id""#, r#""session_id":"a","session_id""#),
        MESSAGE.replace(r#""type":"image""#, r#""type":"sticker""#),
        MESSAGE.replace("2026-11-25T15:00:00Z", "25.11.2026 15:00"),
        MESSAGE.replace(r#""type":"message""#, r#""type":"status""#),
        r#"{"version":1,"event_id":"e","type":"message","sent_at":"2026-11-25T15:00:00Z","session_id":"s","message":{"id":"m","text":""}}"#.to_owned(),
        r#"{"version":1,"event_id":"e","type":"status","sent_at":"2026-11-25T15:00:00Z","session_id":"s","status":{"message_id":"o","state":"seen","at":"2026-11-25T15:00:00Z"}}"#.to_owned(),
    ];
    for body in cases {
        assert_malformed(web().parse(body.as_bytes()));
    }
}

fn signed_at(body: &str, now: SystemTime) -> Result<(), WebhookError> {
    let signature = format!("sha256={}", hmac_hex(WEB_SHARED_SECRET, body.as_bytes()));
    let headers = headers(&[(HEADER, &signature), ("Content-Type", "application/json")]);
    web().verify_at(
        &WebhookRequest {
            headers: &headers,
            query: None,
            body: body.as_bytes(),
        },
        now,
    )
}

#[test]
fn an_event_sent_within_five_minutes_of_now_either_way_verifies() {
    for offset in [-300i64, -299, -1, 0, 1, 299, 300] {
        let now = web_now() + Duration::from_secs(300);
        let sent = match u64::try_from(offset) {
            Ok(ahead) => now + Duration::from_secs(ahead),
            Err(_) => now - Duration::from_secs(offset.unsigned_abs()),
        };
        let body = MESSAGE.replace("2026-11-25T15:00:00Z", &rfc3339(sent));
        assert_eq!(signed_at(&body, now), Ok(()), "sent {offset} s from now");
    }
}

#[test]
fn a_signed_event_replayed_later_or_stamped_ahead_is_unauthorized() {
    for late in [301, 3600, 3 * 24 * 3600] {
        let now = web_now() + Duration::from_secs(late);
        let refused = signed_at(MESSAGE, now);
        assert_unauthorized(refused.clone());
        let reason = refused.as_ref().err().map(ToString::to_string);
        assert!(reason.unwrap_or_default().contains("past"));
        assert_eq!(refused.err().map(|e| e.status_code()), Some(401));
    }
    let early = web_now() - Duration::from_secs(301);
    let refused = signed_at(MESSAGE, early);
    assert_unauthorized(refused.clone());
    assert!(format!("{refused:?}").contains("future"), "{refused:?}");
    // A status event is held to the same window.
    let status = r#"{"version":1,"event_id":"e2","type":"status","sent_at":"2026-11-25T15:00:05Z","session_id":"sess_1",
      "status":{"message_id":"out_7","state":"read","at":"2026-11-25T15:00:04.250Z"}}"#;
    assert_eq!(signed_at(status, web_now()), Ok(()));
    assert_unauthorized(signed_at(status, web_now() + Duration::from_secs(3600)));
}

#[test]
fn the_window_is_configurable_and_never_empty() {
    let adapter = |seconds| {
        WebAdapter::with_clock(
            WebConfig {
                shared_secret: WEB_SHARED_SECRET.into(),
                sent_at_tolerance_secs: seconds,
                ..Default::default()
            },
            web_now,
        )
    };
    assert!(adapter(0).is_err());
    let body = MESSAGE.as_bytes();
    let signature = format!("sha256={}", hmac_hex(WEB_SHARED_SECRET, body));
    let headers = headers(&[(HEADER, &signature), ("Content-Type", "application/json")]);
    let request = WebhookRequest {
        headers: &headers,
        query: None,
        body,
    };
    let hour_later = web_now() + Duration::from_secs(3600);
    assert_eq!(
        adapter(3600).unwrap().verify_at(&request, hour_later),
        Ok(())
    );
    assert_unauthorized(adapter(3599).unwrap().verify_at(&request, hour_later));
}

#[test]
fn sent_at_is_read_only_once_the_signature_holds() {
    // Unsigned and stale: the answer is about the signature, not the time.
    let refused = verify(
        &web(),
        &[("Content-Type", "application/json")],
        None,
        MESSAGE.as_bytes(),
    );
    assert_eq!(
        refused,
        Err(WebhookError::Unauthorized(
            "X-Helpline-Signature is missing".to_owned()
        ))
    );
    // Signed, but no time to check: malformed, as parse would say.
    let body = MESSAGE.replace(r#""sent_at":"2026-11-25T15:00:00Z","#, "");
    assert_malformed(signed_at(&body, web_now()));
}

/// `time` as the widget writes it: RFC 3339 in UTC, whole seconds.
fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap())
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
