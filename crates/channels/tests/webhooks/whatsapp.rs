//! WhatsApp Cloud API: `CHANNELS.md` §1.

use helpline_channels::whatsapp;
use helpline_channels::{InboundAdapter, Secret};

use crate::support::*;

const SIGNED: &str = r#"{"object":"whatsapp_business_account","entry":[]}"#;

fn signature(body: &[u8]) -> String {
    format!("sha256={}", hmac_hex(META_APP_SECRET, body))
}

#[test]
fn a_body_signed_with_the_app_secret_verifies() {
    let body = SIGNED.as_bytes();
    let signature = signature(body);
    assert_eq!(
        verify(
            &whatsapp(),
            &[("X-Hub-Signature-256", &signature)],
            None,
            body
        ),
        Ok(())
    );
}

#[test]
fn uppercase_hex_is_the_same_signature() {
    let body = SIGNED.as_bytes();
    let signature = format!("sha256={}", hmac_hex(META_APP_SECRET, body).to_uppercase());
    assert_eq!(
        verify(
            &whatsapp(),
            &[("x-hub-signature-256", &signature)],
            None,
            body
        ),
        Ok(())
    );
}

#[test]
fn a_tampered_body_is_unauthorized() {
    let signature = signature(SIGNED.as_bytes());
    let tampered = SIGNED.replace("[]", "[ ]");
    assert_unauthorized(verify(
        &whatsapp(),
        &[("X-Hub-Signature-256", &signature)],
        None,
        tampered.as_bytes(),
    ));
}

#[test]
fn a_signature_with_another_secret_is_unauthorized() {
    let body = SIGNED.as_bytes();
    let signature = format!("sha256={}", hmac_hex("not-the-app-secret", body));
    assert_unauthorized(verify(
        &whatsapp(),
        &[("X-Hub-Signature-256", &signature)],
        None,
        body,
    ));
}

#[test]
fn a_missing_signature_is_unauthorized() {
    assert_unauthorized(verify(&whatsapp(), &[], None, SIGNED.as_bytes()));
}

#[test]
fn the_legacy_sha1_header_alone_is_unauthorized() {
    let body = SIGNED.as_bytes();
    assert_unauthorized(verify(
        &whatsapp(),
        &[(
            "X-Hub-Signature",
            "sha1=0123456789abcdef0123456789abcdef01234567",
        )],
        None,
        body,
    ));
}

#[test]
fn a_signature_of_the_wrong_length_is_unauthorized() {
    let body = SIGNED.as_bytes();
    let full = signature(body);
    for wrong in [&full[..full.len() - 2], &format!("{full}00"), "sha256="] {
        assert_unauthorized(verify(
            &whatsapp(),
            &[("X-Hub-Signature-256", wrong)],
            None,
            body,
        ));
    }
}

#[test]
fn a_signature_without_the_prefix_is_unauthorized() {
    let body = SIGNED.as_bytes();
    let bare = hmac_hex(META_APP_SECRET, body);
    assert_unauthorized(verify(
        &whatsapp(),
        &[("X-Hub-Signature-256", &bare)],
        None,
        body,
    ));
}

#[test]
fn a_repeated_signature_header_is_unauthorized() {
    let body = SIGNED.as_bytes();
    let good = signature(body);
    assert_unauthorized(verify(
        &whatsapp(),
        &[
            ("X-Hub-Signature-256", &good),
            ("X-Hub-Signature-256", &good),
        ],
        None,
        body,
    ));
}

#[test]
fn the_handshake_echoes_the_challenge() {
    let token = Secret::new(META_VERIFY_TOKEN);
    assert_eq!(
        whatsapp::verify_handshake(
            Some("subscribe"),
            Some(META_VERIFY_TOKEN),
            Some("1158201444"),
            &token
        ),
        Ok("1158201444".to_owned())
    );
    assert_eq!(
        handshake(
            &whatsapp(),
            Some("subscribe"),
            Some(META_VERIFY_TOKEN),
            Some("x y")
        ),
        Ok("x y".to_owned())
    );
}

#[test]
fn the_handshake_refuses_a_wrong_token_or_mode() {
    let adapter = whatsapp();
    for (mode, token) in [
        ("subscribe", "verify-me-4712"),
        ("subscribe", "verify-me-471"),
        ("subscribe", ""),
        ("unsubscribe", META_VERIFY_TOKEN),
    ] {
        assert_unauthorized(handshake(&adapter, Some(mode), Some(token), Some("1")).map(drop));
    }
}

#[test]
fn the_handshake_without_parameters_is_malformed() {
    let adapter = whatsapp();
    assert_malformed(handshake(
        &adapter,
        None,
        Some(META_VERIFY_TOKEN),
        Some("1"),
    ));
    assert_malformed(handshake(&adapter, Some("subscribe"), None, Some("1")));
    assert_malformed(handshake(
        &adapter,
        Some("subscribe"),
        Some(META_VERIFY_TOKEN),
        None,
    ));
}

/// A `messages` change with the usual metadata and one contact around `inner`.
fn change(inner: &str) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"field":"messages","value":{{
          "messaging_product":"whatsapp",
          "metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},
          "contacts":[{{"profile":{{"name":"Jane Doe"}},"wa_id":"16505551234"}}],
          {inner}}}}}]}}]}}"#
    )
}

#[test]
fn text() {
    check(
        &whatsapp(),
        &change(
            r#""messages":[{"from":"16505551234","id":"wamid.T1","timestamp":"1764082800","type":"text",
                "text":{"body":"My serial is 2NS7N19B12345678"}}]"#,
        ),
        &[
            r#"message wamid.T1 from 16505551234 "Jane Doe" at 1764082800 to 106540352242922: text "My serial is 2NS7N19B12345678""#,
        ],
    );
}

#[test]
fn each_media_kind() {
    check(
        &whatsapp(),
        &change(
            r#""messages":[
              {"from":"16505551234","id":"wamid.I","timestamp":"1764082860","type":"image",
               "image":{"caption":"Photo of the label","mime_type":"image/jpeg","sha256":"abc=","id":"1479537139650973"}},
              {"from":"16505551234","id":"wamid.V","timestamp":"1764082861","type":"video",
               "video":{"mime_type":"video/mp4","id":"2001"}},
              {"from":"16505551234","id":"wamid.A","timestamp":"1764082862","type":"audio",
               "audio":{"mime_type":"audio/ogg; codecs=opus","voice":true,"id":"2002"}},
              {"from":"16505551234","id":"wamid.D","timestamp":"1764082863","type":"document",
               "document":{"filename":"receipt.pdf","mime_type":"application/pdf","id":"2003"}}]"#,
        ),
        &[
            r#"message wamid.I from 16505551234 "Jane Doe" at 1764082860 to 106540352242922: image 1479537139650973 image/jpeg caption "Photo of the label""#,
            r#"message wamid.V from 16505551234 "Jane Doe" at 1764082861 to 106540352242922: video 2001 video/mp4"#,
            r#"message wamid.A from 16505551234 "Jane Doe" at 1764082862 to 106540352242922: audio 2002 audio/ogg; codecs=opus"#,
            r#"message wamid.D from 16505551234 "Jane Doe" at 1764082863 to 106540352242922: document 2003 application/pdf file "receipt.pdf""#,
        ],
    );
}

#[test]
fn location() {
    check(
        &whatsapp(),
        &change(
            r#""messages":[{"from":"16505551234","id":"wamid.L","timestamp":"1764082800","type":"location",
                "location":{"latitude":52.52,"longitude":13.405,"name":"Store"}}]"#,
        ),
        &[
            r#"message wamid.L from 16505551234 "Jane Doe" at 1764082800 to 106540352242922: location 52.52,13.405"#,
        ],
    );
}

#[test]
fn a_quick_reply_button_is_text() {
    check(
        &whatsapp(),
        &change(
            r#""messages":[{"from":"16505551234","id":"wamid.B","timestamp":"1764082800","type":"button",
                "button":{"payload":"rate-5","text":"5"}}]"#,
        ),
        &[
            r#"message wamid.B from 16505551234 "Jane Doe" at 1764082800 to 106540352242922: text "5""#,
        ],
    );
}

#[test]
fn a_tapped_reply_button_or_list_row_is_text_its_rating_digit_else_its_title() {
    check(
        &whatsapp(),
        &change(
            r#""messages":[
              {"context":{"from":"15550783881","id":"wamid.OUT"},"from":"16505551234","id":"wamid.T1",
               "timestamp":"1764082800","type":"interactive",
               "interactive":{"type":"button_reply","button_reply":{"id":"5","title":"⭐⭐⭐⭐⭐"}}},
              {"from":"16505551234","id":"wamid.T2","timestamp":"1764082801","type":"interactive",
               "interactive":{"type":"list_reply","list_reply":{"id":"4","title":"⭐⭐⭐⭐","description":"gut"}}},
              {"from":"16505551234","id":"wamid.T3","timestamp":"1764082802","type":"interactive",
               "interactive":{"type":"button_reply","button_reply":{"id":"lang_de","title":"Deutsch"}}},
              {"from":"16505551234","id":"wamid.T4","timestamp":"1764082803","type":"interactive",
               "interactive":{"type":"list_reply","list_reply":{"id":"lang_en","title":""}}},
              {"from":"16505551234","id":"wamid.T5","timestamp":"1764082804","type":"button",
               "button":{"payload":"3","text":"⭐⭐⭐"}},
              {"from":"16505551234","id":"wamid.T6","timestamp":"1764082805","type":"interactive",
               "interactive":{"type":"nfm_reply","nfm_reply":{"response_json":"{}","body":"Sent","name":"flow"}}}]"#,
        ),
        &[
            r#"message wamid.T1 from 16505551234 "Jane Doe" at 1764082800 to 106540352242922: text "5""#,
            r#"message wamid.T2 from 16505551234 "Jane Doe" at 1764082801 to 106540352242922: text "4""#,
            r#"message wamid.T3 from 16505551234 "Jane Doe" at 1764082802 to 106540352242922: text "Deutsch""#,
            r#"message wamid.T4 from 16505551234 "Jane Doe" at 1764082803 to 106540352242922: text "lang_en""#,
            r#"message wamid.T5 from 16505551234 "Jane Doe" at 1764082804 to 106540352242922: text "3""#,
            "ignored: whatsapp interactive reply `nfm_reply`",
        ],
    );
}

#[test]
fn statuses_are_receipts() {
    check(
        &whatsapp(),
        &change(
            r#""statuses":[
              {"id":"wamid.OUT1","status":"sent","timestamp":"1764082900","recipient_id":"16505551234"},
              {"id":"wamid.OUT1","status":"delivered","timestamp":"1764082920","recipient_id":"16505551234",
               "conversation":{"id":"c1","origin":{"type":"service"}},
               "pricing":{"billable":true,"pricing_model":"CBP","category":"service"}},
              {"id":"wamid.OUT1","status":"read","timestamp":"1764082930","recipient_id":"16505551234"},
              {"id":"wamid.OUT2","status":"failed","timestamp":"1764082940","recipient_id":"16505551234",
               "errors":[{"code":131047,"title":"Re-engagement message","message":"Re-engagement message",
                          "error_data":{"details":"Message failed to send because more than 24 hours have passed"}}]}]"#,
        ),
        &[
            "receipt wamid.OUT1 sent for 16505551234 at 1764082900",
            "receipt wamid.OUT1 delivered for 16505551234 at 1764082920",
            "receipt wamid.OUT1 read for 16505551234 at 1764082930",
            "receipt wamid.OUT2 failed (131047 Re-engagement message) for 16505551234 at 1764082940",
        ],
    );
}

#[test]
fn every_entry_change_message_and_status_of_one_post_is_read() {
    let body = r#"{"object":"whatsapp_business_account","entry":[
      {"id":"1","changes":[
        {"field":"messages","value":{"metadata":{"phone_number_id":"111"},
          "messages":[{"from":"4911","id":"wamid.1","type":"text","text":{"body":"a"}},
                      {"from":"4912","id":"wamid.2","type":"text","text":{"body":"b"}}],
          "statuses":[{"id":"wamid.OUT","status":"delivered"}]}},
        {"field":"messages","value":{"metadata":{"phone_number_id":"111"},
          "messages":[{"from":"4913","id":"wamid.3","type":"text","text":{"body":"c"}}]}}]},
      {"id":"2","changes":[
        {"field":"messages","value":{"metadata":{"phone_number_id":"222"},
          "messages":[{"from":"4914","id":"wamid.4","type":"text","text":{"body":"d"}}]}}]}]}"#;
    check(
        &whatsapp(),
        body,
        &[
            r#"message wamid.1 from 4911 to 111: text "a""#,
            r#"message wamid.2 from 4912 to 111: text "b""#,
            "receipt wamid.OUT delivered",
            r#"message wamid.3 from 4913 to 111: text "c""#,
            r#"message wamid.4 from 4914 to 222: text "d""#,
        ],
    );
}

#[test]
fn other_fields_message_types_and_statuses_are_ignored() {
    let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
      {"field":"message_template_status_update","value":{"event":"APPROVED","message_template_id":1}},
      {"field":"messages","value":{"metadata":{"phone_number_id":"111"},
        "messages":[{"from":"4911","id":"wamid.R","type":"reaction","reaction":{"message_id":"wamid.X","emoji":"👍"}},
                    {"from":"4911","id":"wamid.S","type":"sticker","sticker":{"id":"9","mime_type":"image/webp"}},
                    {"from":"4911","id":"wamid.U","type":"unsupported","errors":[{"code":131051}]}],
        "statuses":[{"id":"wamid.OUT","status":"deleted"}],
        "errors":[{"code":131000,"title":"Something went wrong"}]}},
      {"field":"messages","value":{"metadata":{"phone_number_id":"111"}}}]}]}"#;
    check(
        &whatsapp(),
        body,
        &[
            "ignored: whatsapp field `message_template_status_update`",
            "ignored: whatsapp message type `reaction`",
            "ignored: whatsapp message type `sticker`",
            "ignored: whatsapp message type `unsupported`",
            "ignored: whatsapp status `deleted`",
            "ignored: whatsapp error notification, codes 131000",
            "ignored: whatsapp change without messages or statuses",
        ],
    );
}

#[test]
fn another_object_is_ignored() {
    check(
        &whatsapp(),
        r#"{"object":"page","entry":[{"id":"1","messaging":[]}]}"#,
        &["ignored: whatsapp object `page`"],
    );
}

#[test]
fn a_message_without_its_content_object_is_malformed() {
    let body = change(r#""messages":[{"from":"4911","id":"wamid.1","type":"image"}]"#);
    let reason = assert_malformed(whatsapp().parse(body.as_bytes()));
    assert!(reason.contains("messages[].image is missing"), "{reason}");
}

/// A `user_preferences` change around the given `user_preferences` items.
fn preferences(items: &str) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"102290129340398","changes":[{{"value":{{
          "messaging_product":"whatsapp",
          "metadata":{{"display_phone_number":"15550783881","phone_number_id":"106540352242922"}},
          "contacts":[{{"profile":{{"name":"Jane Doe"}},"wa_id":"16505551234"}}],
          "user_preferences":[{items}]}},"field":"user_preferences"}}]}}]}}"#
    )
}

#[test]
fn a_stop_of_marketing_messages_withdraws_consent_to_marketing() {
    check(
        &whatsapp(),
        &preferences(
            r#"{"wa_id":"16505551234","detail":"User requested to stop marketing messages",
                "category":"marketing_messages","value":"stop","timestamp":1731705720}"#,
        ),
        &[
            "consent withdrawn Marketing whatsapp:user_preferences:16505551234:1731705720:stop by 16505551234",
        ],
    );
}

#[test]
fn a_resume_of_marketing_messages_grants_consent_to_marketing_again() {
    check(
        &whatsapp(),
        &preferences(
            r#"{"wa_id":"16505551234","detail":"User requested to resume marketing messages",
                "category":"marketing_messages","value":"resume","timestamp":"1731705721"}"#,
        ),
        &[
            "consent granted Marketing whatsapp:user_preferences:16505551234:1731705721:resume by 16505551234",
        ],
    );
}

#[test]
fn a_preference_without_a_phone_number_is_for_the_user_id_else_the_changes_one_contact() {
    check(
        &whatsapp(),
        &preferences(
            r#"{"user_id":"US.13491208655302741918","category":"marketing_messages","value":"stop","timestamp":1731705722},
               {"category":"marketing_messages","value":"stop","timestamp":1731705723}"#,
        ),
        &[
            "consent withdrawn Marketing whatsapp:user_preferences:US.13491208655302741918:1731705722:stop by US.13491208655302741918",
            "consent withdrawn Marketing whatsapp:user_preferences:16505551234:1731705723:stop by 16505551234",
        ],
    );
}

#[test]
fn other_preferences_and_shapes_are_ignored_not_refused() {
    check(
        &whatsapp(),
        &preferences(
            r#"{"wa_id":"16505551234","category":"offers_and_announcements","value":"not_interested","timestamp":1},
               {"wa_id":"16505551234","category":"marketing_messages","value":"pause","timestamp":2},
               {"wa_id":16505551234,"category":"marketing_messages","value":"stop","timestamp":3},
               "stop""#,
        ),
        &[
            "ignored: whatsapp user preference category `offers_and_announcements`",
            "ignored: whatsapp user preference value `pause`",
            "ignored: whatsapp user preference of an unknown shape",
            "ignored: whatsapp user preference of an unknown shape",
        ],
    );
    let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[
      {"field":"user_preferences","value":{"messaging_product":"whatsapp","user_preferences":[]}},
      {"field":"user_preferences","value":{"user_preferences":"stop"}},
      {"field":"user_preferences"},
      {"field":"user_preferences","value":{"contacts":[{"wa_id":"1"},{"wa_id":"2"}],
        "user_preferences":[{"category":"marketing_messages","value":"stop","timestamp":4}]}}]}]}"#;
    check(
        &whatsapp(),
        body,
        &[
            "ignored: whatsapp user_preferences without preferences",
            "ignored: whatsapp user_preferences without preferences",
            "ignored: whatsapp user_preferences without preferences",
            "ignored: whatsapp user preference without a user",
        ],
    );
}
