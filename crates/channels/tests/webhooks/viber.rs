//! Viber REST bot API: `CHANNELS.md` §4.

use helpline_channels::InboundAdapter;

use crate::support::*;

const SIGNED: &str = r#"{"event":"webhook","timestamp":1764082000000,"chat_hostname":"SN-CHAT-05_","message_token":5741311803571700000}"#;

const HEADER: &str = "X-Viber-Content-Signature";

#[test]
fn a_body_signed_with_the_auth_token_verifies() {
    let body = SIGNED.as_bytes();
    let signature = hmac_hex(VIBER_AUTH_TOKEN, body);
    assert_eq!(
        verify(&viber(), &[(HEADER, &signature)], None, body),
        Ok(())
    );
}

#[test]
fn the_signature_may_come_as_the_sig_query_parameter() {
    let body = SIGNED.as_bytes();
    let query = format!("foo=1&sig={}", hmac_hex(VIBER_AUTH_TOKEN, body));
    assert_eq!(verify(&viber(), &[], Some(&query), body), Ok(()));
}

#[test]
fn the_header_wins_over_the_query_parameter() {
    let body = SIGNED.as_bytes();
    let good = format!("sig={}", hmac_hex(VIBER_AUTH_TOKEN, body));
    let bad = hmac_hex("another-token", body);
    assert_unauthorized(verify(&viber(), &[(HEADER, &bad)], Some(&good), body));
}

#[test]
fn a_tampered_body_is_unauthorized() {
    let signature = hmac_hex(VIBER_AUTH_TOKEN, SIGNED.as_bytes());
    let tampered = SIGNED.replace("05_", "06_");
    assert_unauthorized(verify(
        &viber(),
        &[(HEADER, &signature)],
        None,
        tampered.as_bytes(),
    ));
}

#[test]
fn a_wrong_missing_or_wrong_length_signature_is_unauthorized() {
    let body = SIGNED.as_bytes();
    let full = hmac_hex(VIBER_AUTH_TOKEN, body);
    let wrong = hmac_hex("another-token", body);
    let prefixed = format!("sha256={full}");
    for signature in [&wrong, &full[..63], &format!("{full}0"), &prefixed] {
        assert_unauthorized(verify(&viber(), &[(HEADER, signature)], None, body));
    }
    assert_unauthorized(verify(&viber(), &[], None, body));
    assert_unauthorized(verify(&viber(), &[], Some("sig="), body));
}

#[test]
fn a_repeated_sig_parameter_is_unauthorized() {
    let body = SIGNED.as_bytes();
    let signature = hmac_hex(VIBER_AUTH_TOKEN, body);
    let query = format!("sig={signature}&sig={signature}");
    assert_unauthorized(verify(&viber(), &[], Some(&query), body));
}

/// A message callback from Jane with the given `message` object.
fn message(object: &str) -> String {
    format!(
        r#"{{"event":"message","timestamp":1764082800123,"chat_hostname":"SN-CHAT-05_","message_token":5741311803571721087,
          "sender":{{"id":"01234567890A=","name":"Jane Doe","avatar":"https://x/a.jpg","language":"en","country":"GB","api_version":10}},
          "message":{object},"silent":false}}"#
    )
}

#[test]
fn text_with_a_token_beyond_2_pow_53() {
    check(
        &viber(),
        &message(r#"{"type":"text","text":"My serial is 2NS7N19B12345678","tracking_data":"t"}"#),
        &[
            r#"message 5741311803571721087 from 01234567890A= "Jane Doe" at 1764082800: text "My serial is 2NS7N19B12345678""#,
        ],
    );
}

#[test]
fn a_tapped_keyboard_button_is_a_text_message_of_its_action_body() {
    // Viber sends a `reply` button's ActionBody as the customer's text.
    check(
        &viber(),
        &message(
            r#"{"type":"text","text":"5","tracking_data":"0192f0c1-3b20-7abc-9def-0123456789ab"}"#,
        ),
        &[r#"message 5741311803571721087 from 01234567890A= "Jane Doe" at 1764082800: text "5""#],
    );
}

#[test]
fn each_media_kind() {
    let cases = [
        (
            r#"{"type":"picture","text":"caption","media":"https://v/p.jpg","thumbnail":"https://v/t.jpg","file_name":"label.jpg","file_size":90211}"#,
            r#"image https://v/p.jpg caption "caption" file "label.jpg""#,
        ),
        (
            r#"{"type":"picture","text":"","media":"https://v/p.jpg"}"#,
            "image https://v/p.jpg",
        ),
        (
            r#"{"type":"video","media":"https://v/v.mp4","size":1,"duration":3}"#,
            "video https://v/v.mp4",
        ),
        (
            r#"{"type":"file","media":"https://v/f.pdf","file_name":"invoice.pdf","size":1}"#,
            r#"document https://v/f.pdf file "invoice.pdf""#,
        ),
    ];
    for (object, content) in cases {
        let expected = format!(
            r#"message 5741311803571721087 from 01234567890A= "Jane Doe" at 1764082800: {content}"#
        );
        check(&viber(), &message(object), &[&expected]);
    }
}

#[test]
fn location() {
    check(
        &viber(),
        &message(r#"{"type":"location","location":{"lat":50.4501,"lon":30.5234}}"#),
        &[
            r#"message 5741311803571721087 from 01234567890A= "Jane Doe" at 1764082800: location 50.4501,30.5234"#,
        ],
    );
}

#[test]
fn delivered_seen_and_failed_are_receipts() {
    let cases = [
        (
            r#"{"event":"delivered","timestamp":1764082920000,"chat_hostname":"SN-CHAT-05_","message_token":5741311803571729999,"user_id":"01234567890A="}"#,
            "receipt 5741311803571729999 delivered for 01234567890A= at 1764082920",
        ),
        (
            r#"{"event":"seen","timestamp":1764082930000,"message_token":5741311803571729999,"user_id":"01234567890A="}"#,
            "receipt 5741311803571729999 read for 01234567890A= at 1764082930",
        ),
        (
            r#"{"event":"failed","timestamp":1764082940000,"message_token":5741311803571729999,"user_id":"01234567890A=","desc":"receiver is not subscribed"}"#,
            "receipt 5741311803571729999 failed (receiver is not subscribed) for 01234567890A= at 1764082940",
        ),
    ];
    for (body, expected) in cases {
        check(&viber(), body, &[expected]);
    }
}

#[test]
fn other_events_and_message_types_are_ignored() {
    let cases = [
        (SIGNED.to_owned(), "ignored: viber event `webhook`"),
        (
            r#"{"event":"conversation_started","timestamp":1,"message_token":1,"type":"open","context":"c","user":{"id":"x"},"subscribed":false}"#.to_owned(),
            "ignored: viber event `conversation_started`",
        ),
        (
            message(r#"{"type":"sticker","sticker_id":46105}"#),
            "ignored: viber message type `sticker`",
        ),
        (
            message(r#"{"type":"contact","contact":{"name":"Jo","phone_number":"+4930"}}"#),
            "ignored: viber message type `contact`",
        ),
    ];
    for (body, expected) in cases {
        check(&viber(), &body, &[expected]);
    }
}

#[test]
fn a_token_read_as_a_float_or_a_string_is_malformed() {
    for token in [
        "5.741311803571721e18",
        "\"5741311803571721087\"",
        "18446744073709551616",
    ] {
        let body = message(r#"{"type":"text","text":"x"}"#).replace("5741311803571721087", token);
        assert_malformed(viber().parse(body.as_bytes()));
    }
}

#[test]
fn a_callback_without_an_event_or_with_one_that_is_not_a_string_is_malformed() {
    for body in [
        r#"{"timestamp":1764082000000,"message_token":5741311803571700000}"#,
        r#"{"event":7,"timestamp":1764082000000}"#,
        r#"{"event":null,"timestamp":1764082000000}"#,
        r#"{"event":{"type":"message"}}"#,
    ] {
        assert_malformed(viber().parse(body.as_bytes()));
    }
}

#[test]
fn unsubscribed_withdraws_consent_to_every_notification() {
    check(
        &viber(),
        r#"{"event":"unsubscribed","timestamp":1764087060907,"chat_hostname":"SN-376_",
            "user_id":"01234567890A=","message_token":5741311803571816115}"#,
        &["consent withdrawn All 5741311803571816115 by 01234567890A="],
    );
}

#[test]
fn subscribed_grants_consent_to_every_notification_again() {
    check(
        &viber(),
        r#"{"event":"subscribed","timestamp":1764087000118,"chat_hostname":"SN-149_",
            "user":{"id":"01234567890A=","name":"Jane Doe","avatar":"https://x/a.jpg","country":"GB","language":"en","api_version":8},
            "message_token":5741311803571808196}"#,
        &["consent granted All 5741311803571808196 by 01234567890A="],
    );
}

#[test]
fn a_subscription_callback_without_a_token_is_keyed_by_event_user_and_time() {
    check(
        &viber(),
        r#"{"event":"unsubscribed","timestamp":1764087060907,"user_id":"01234567890A="}"#,
        &["consent withdrawn All viber:unsubscribed:01234567890A=:1764087060907 by 01234567890A="],
    );
    check(
        &viber(),
        r#"{"event":"subscribed","timestamp":"1764087000118","user":{"id":"01234567890A="},"message_token":"t"}"#,
        &["consent granted All viber:subscribed:01234567890A=:1764087000118 by 01234567890A="],
    );
}

#[test]
fn a_subscription_callback_without_its_user_is_ignored_not_refused() {
    let cases = [
        (
            r#"{"event":"unsubscribed","timestamp":1,"message_token":1}"#,
            "ignored: viber event `unsubscribed` without a user",
        ),
        (
            r#"{"event":"unsubscribed","timestamp":1,"user_id":"","message_token":1}"#,
            "ignored: viber event `unsubscribed` without a user",
        ),
        (
            r#"{"event":"unsubscribed","timestamp":1,"user_id":42,"message_token":1}"#,
            "ignored: viber event `unsubscribed` without a user",
        ),
        (
            // `subscribed` names its user in `user`, not `user_id`.
            r#"{"event":"subscribed","timestamp":1,"user_id":"01234567890A=","message_token":1}"#,
            "ignored: viber event `subscribed` without a user",
        ),
        (
            r#"{"event":"subscribed","timestamp":1,"user":"01234567890A=","message_token":1}"#,
            "ignored: viber event `subscribed` without a user",
        ),
    ];
    for (body, expected) in cases {
        check(&viber(), body, &[expected]);
    }
}
