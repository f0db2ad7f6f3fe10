//! Facebook Messenger: `CHANNELS.md` §2.

use helpline_channels::messenger;
use helpline_channels::{InboundAdapter, Secret};

use crate::support::*;

const SIGNED: &str =
    r#"{"object":"page","entry":[{"id":"PAGE1","time":1764082800123,"messaging":[]}]}"#;

fn signature(body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(META_APP_SECRET, body))
}

#[test]
fn a_body_signed_with_the_app_secret_verifies() {
    let body = SIGNED.as_bytes();
    let signature = signature(body);
    assert_eq!(
        verify(
            &messenger(),
            &[("X-Hub-Signature-256", &signature)],
            None,
            body
        ),
        Ok(())
    );
}

#[test]
fn a_tampered_body_is_unauthorized() {
    let signature = signature(SIGNED.as_bytes());
    let tampered = SIGNED.replace("PAGE1", "PAGE2");
    assert_unauthorized(verify(
        &messenger(),
        &[("X-Hub-Signature-256", &signature)],
        None,
        tampered.as_bytes(),
    ));
}

#[test]
fn a_wrong_or_missing_or_short_signature_is_unauthorized() {
    let body = SIGNED.as_bytes();
    let other = format!("sha256={}", hmac_hex("another-app", body));
    let full = signature(body);
    let short = &full[..40];
    assert_unauthorized(verify(
        &messenger(),
        &[("X-Hub-Signature-256", &other)],
        None,
        body,
    ));
    assert_unauthorized(verify(
        &messenger(),
        &[("X-Hub-Signature-256", short)],
        None,
        body,
    ));
    assert_unauthorized(verify(&messenger(), &[], None, body));
}

#[test]
fn a_signature_that_is_not_hex_is_unauthorized() {
    let body = SIGNED.as_bytes();
    let not_hex = format!("sha256={}", "z".repeat(64));
    assert_unauthorized(verify(
        &messenger(),
        &[("X-Hub-Signature-256", &not_hex)],
        None,
        body,
    ));
}

#[test]
fn the_handshake_is_metas() {
    let token = Secret::new(META_VERIFY_TOKEN);
    assert_eq!(
        messenger::verify_handshake(
            Some("subscribe"),
            Some(META_VERIFY_TOKEN),
            Some("42"),
            &token
        ),
        Ok("42".to_owned())
    );
    assert_unauthorized(
        handshake(&messenger(), Some("subscribe"), Some("guess"), Some("42")).map(drop),
    );
}

/// One page entry with the given `messaging` events.
fn entry(events: &str) -> String {
    format!(
        r#"{{"object":"page","entry":[{{"id":"PAGE1","time":1764082800123,"messaging":[{events}]}}]}}"#
    )
}

#[test]
fn text() {
    check(
        &messenger(),
        &entry(
            r#"{"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1764082799876,
                "message":{"mid":"m_ZKc9","text":"My serial is 2NS7N19B12345678"}}"#,
        ),
        &[
            r#"message m_ZKc9 from PSID1 at 1764082799 to PAGE1: text "My serial is 2NS7N19B12345678""#,
        ],
    );
}

#[test]
fn a_tapped_quick_reply_is_its_rating_digit_or_the_title_the_customer_saw() {
    check(
        &messenger(),
        &entry(
            r#"{"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1764082799876,
                "message":{"mid":"m_Q1","text":"⭐⭐⭐⭐⭐","quick_reply":{"payload":"5"}}},
               {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1764082799877,
                "message":{"mid":"m_Q2","text":"Deutsch","quick_reply":{"payload":""}}},
               {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1764082799878,
                "message":{"mid":"m_Q3","text":"Reparaturstatus","quick_reply":{"payload":"QR_REPAIR"}}}"#,
        ),
        &[
            r#"message m_Q1 from PSID1 at 1764082799 to PAGE1: text "5""#,
            r#"message m_Q2 from PSID1 at 1764082799 to PAGE1: text "Deutsch""#,
            r#"message m_Q3 from PSID1 at 1764082799 to PAGE1: text "Reparaturstatus""#,
        ],
    );
}

#[test]
fn each_attachment_kind_is_one_part() {
    check(
        &messenger(),
        &entry(
            r#"{"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1764082799876,
                "message":{"mid":"m_A","text":"see attached","attachments":[
                  {"type":"image","payload":{"url":"https://scontent.example/i.jpg"}},
                  {"type":"video","payload":{"url":"https://scontent.example/v.mp4"}},
                  {"type":"audio","payload":{"url":"https://scontent.example/a.mp4"}},
                  {"type":"file","payload":{"url":"https://scontent.example/f.pdf"}},
                  {"type":"location","payload":{"coordinates":{"lat":48.1374,"long":11.5755}}},
                  {"type":"image","payload":{"url":"https://scontent.example/s.png","sticker_id":369239263222822}},
                  {"type":"fallback","payload":{"url":"https://example.com"},"title":"a link"}]}}"#,
        ),
        &[
            r#"message m_A from PSID1 at 1764082799 to PAGE1: text "see attached""#,
            "message m_A#1 from PSID1 at 1764082799 to PAGE1: image https://scontent.example/i.jpg",
            "message m_A#2 from PSID1 at 1764082799 to PAGE1: video https://scontent.example/v.mp4",
            "message m_A#3 from PSID1 at 1764082799 to PAGE1: audio https://scontent.example/a.mp4",
            "message m_A#4 from PSID1 at 1764082799 to PAGE1: document https://scontent.example/f.pdf",
            "message m_A#5 from PSID1 at 1764082799 to PAGE1: location 48.1374,11.5755",
        ],
    );
}

#[test]
fn deliveries_with_mids_are_receipts_and_without_a_watermark() {
    check(
        &messenger(),
        &entry(
            r#"{"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},
                "delivery":{"mids":["m_OUT1","m_OUT2"],"watermark":1458668856253}},
               {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},
                "delivery":{"watermark":1458668856999}}"#,
        ),
        &[
            "receipt m_OUT1 delivered for PSID1 at 1458668856",
            "receipt m_OUT2 delivered for PSID1 at 1458668856",
            "watermark delivered for PSID1 up to 1458668856999",
        ],
    );
}

#[test]
fn a_read_is_a_watermark() {
    check(
        &messenger(),
        &entry(
            r#"{"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1458668856463,
                "read":{"watermark":1458668856253}}"#,
        ),
        &["watermark read for PSID1 up to 1458668856253"],
    );
}

#[test]
fn echoes_reactions_stickers_standby_and_other_objects_are_ignored() {
    let body = r#"{"object":"page","entry":[
      {"id":"PAGE1","time":1,"messaging":[
        {"sender":{"id":"PAGE1"},"recipient":{"id":"PSID1"},"timestamp":1,
         "message":{"is_echo":true,"app_id":1517776481860111,"mid":"m_ECHO","text":"our reply"}},
        {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1,
         "reaction":{"mid":"m_ECHO","action":"react","reaction":"love","emoji":"\u2764"}},
        {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1,
         "message":{"mid":"m_STICKER","attachments":[{"type":"image","payload":{"url":"https://x","sticker_id":1}}]}}]},
      {"id":"PAGE1","time":1,"standby":[{"sender":{"id":"PSID1"},"message":{"mid":"m_S","text":"hi"}}]}]}"#;
    check(
        &messenger(),
        body,
        &[
            "ignored: messenger echo of our own message",
            "ignored: messenger event without message, delivery or read",
            "ignored: messenger message without text or supported attachments",
            "ignored: messenger entry without messaging",
        ],
    );
    check(
        &messenger(),
        r#"{"object":"instagram","entry":[]}"#,
        &["ignored: messenger object `instagram`"],
    );
}

#[test]
fn a_tapped_postback_is_a_text_message_of_its_rating_digit_or_title() {
    check(
        &messenger(),
        &entry(
            r#"{"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1764082799876,
                "postback":{"mid":"m_P1","title":"Mit einem Menschen sprechen","payload":"HANDOFF"}},
               {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1764082799877,
                "postback":{"mid":"m_P2","title":"⭐⭐⭐⭐","payload":"4"}},
               {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1764082799878,
                "postback":{"title":"Los geht's","payload":"GET_STARTED","referral":{"ref":"x","source":"SHORTLINK","type":"OPEN_THREAD"}}}"#,
        ),
        &[
            r#"message m_P1 from PSID1 at 1764082799 to PAGE1: text "Mit einem Menschen sprechen""#,
            r#"message m_P2 from PSID1 at 1764082799 to PAGE1: text "4""#,
            // Before postbacks had a mid: keyed by sender and time, which a redelivery repeats.
            r#"message postback:PSID1:1764082799878 from PSID1 at 1764082799 to PAGE1: text "Los geht's""#,
        ],
    );
}

#[test]
fn a_message_without_a_sender_is_malformed() {
    let body = entry(r#"{"recipient":{"id":"PAGE1"},"message":{"mid":"m_1","text":"hi"}}"#);
    let reason = assert_malformed(messenger().parse(body.as_bytes()));
    assert!(reason.contains("sender is missing"), "{reason}");
}

/// Jane's opt-in event for marketing messages, with the given `notification_messages_status`
/// fields.
fn optin(timestamp: u64, status: &str) -> String {
    entry(&format!(
        r#"{{"sender":{{"id":"PSID1"}},"recipient":{{"id":"PAGE1"}},"timestamp":{timestamp},
            "optin":{{"type":"notification_messages","payload":"REPAIR_UPDATES_OPTIN",
              "notification_messages_token":"7426891350274610385","notification_messages_timezone":"Europe/Berlin",
              "token_expiry_timestamp":1783413000000,"user_token_status":"NOT_REFRESHED",{status}
              "title":"Repair status updates"}}}}"#
    ))
}

#[test]
fn stop_notifications_withdraws_consent_to_marketing() {
    check(
        &messenger(),
        &optin(
            1767862199804,
            r#""notification_messages_status":"STOP NOTIFICATIONS","#,
        ),
        &["consent withdrawn Marketing messenger:optin:PSID1:1767862199804 by PSID1"],
    );
}

#[test]
fn resume_notifications_grants_consent_to_marketing_again() {
    check(
        &messenger(),
        &optin(
            1767862259680,
            r#""notification_messages_status":"RESUME NOTIFICATIONS","#,
        ),
        &["consent granted Marketing messenger:optin:PSID1:1767862259680 by PSID1"],
    );
}

#[test]
fn other_optins_are_ignored_not_refused() {
    check(
        &messenger(),
        &optin(1767862140390, ""),
        &["ignored: messenger optin `notification_messages` with no status"],
    );
    check(
        &messenger(),
        &optin(
            1767862140391,
            r#""notification_messages_status":"PAUSE NOTIFICATIONS","#,
        ),
        &["ignored: messenger optin `notification_messages` with another status"],
    );
    let body = entry(
        r#"{"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":1,
            "optin":{"type":"one_time_notif_req","payload":"x","one_time_notif_token":"t"}},
           {"recipient":{"id":"PAGE1"},"timestamp":2,
            "optin":{"ref":"checkbox","user_ref":"UREF1"}},
           {"recipient":{"id":"PAGE1"},"timestamp":3,
            "optin":{"type":"notification_messages","notification_messages_status":"STOP NOTIFICATIONS"}},
           {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":4,
            "optin":{"type":7,"notification_messages_status":"STOP NOTIFICATIONS"}},
           {"sender":{"id":"PSID1"},"recipient":{"id":"PAGE1"},"timestamp":5,"optin":"STOP"}"#,
    );
    check(
        &messenger(),
        &body,
        &[
            "ignored: messenger optin `one_time_notif_req`",
            "ignored: messenger optin `none`",
            "ignored: messenger optin without a sender",
            "ignored: messenger optin of an unknown shape",
            "ignored: messenger optin of an unknown shape",
        ],
    );
}
