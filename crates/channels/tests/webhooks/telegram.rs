//! Telegram Bot API: `CHANNELS.md` §3.

use helpline_channels::InboundAdapter;

use crate::support::*;

const BODY: &str = r#"{"update_id":804712351,"message":{"message_id":1042,"chat":{"id":587236105,"type":"private"},"date":1764082800,"text":"hi"}}"#;

const HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

#[test]
fn the_configured_secret_token_verifies() {
    assert_eq!(
        verify(
            &telegram(),
            &[(HEADER, TELEGRAM_SECRET)],
            None,
            BODY.as_bytes()
        ),
        Ok(())
    );
}

#[test]
fn a_wrong_secret_token_is_unauthorized() {
    let shorter = &TELEGRAM_SECRET[..TELEGRAM_SECRET.len() - 1];
    let longer = format!("{TELEGRAM_SECRET}x");
    let other = TELEGRAM_SECRET.replace('4', "5");
    for wrong in [shorter, &longer, &other, ""] {
        assert_unauthorized(verify(
            &telegram(),
            &[(HEADER, wrong)],
            None,
            BODY.as_bytes(),
        ));
    }
}

#[test]
fn a_missing_secret_token_is_unauthorized() {
    assert_unauthorized(verify(&telegram(), &[], None, BODY.as_bytes()));
}

#[test]
fn the_token_is_not_a_body_signature_so_any_body_passes_with_it() {
    // Telegram signs nothing: the secret header is the whole check.
    assert_eq!(
        verify(&telegram(), &[(HEADER, TELEGRAM_SECRET)], None, b"tampered"),
        Ok(())
    );
}

/// A private-chat update from Jane with the given message fields.
fn update(fields: &str) -> String {
    format!(
        r#"{{"update_id":804712351,"message":{{"message_id":1042,
          "from":{{"id":587236105,"is_bot":false,"first_name":"Jane","last_name":"Doe","username":"janedoe","language_code":"en"}},
          "chat":{{"id":587236105,"type":"private","first_name":"Jane"}},"date":1764082800,{fields}}}}}"#
    )
}

#[test]
fn text() {
    check(
        &telegram(),
        &update(r#""text":"My serial is 2NS7N19B12345678""#),
        &[
            r#"message 804712351 from 587236105 "Jane Doe" at 1764082800: text "My serial is 2NS7N19B12345678""#,
        ],
    );
}

#[test]
fn a_photo_is_its_largest_size() {
    check(
        &telegram(),
        &update(
            r#""caption":"the label","photo":[
              {"file_id":"small","file_unique_id":"s","file_size":1200,"width":90,"height":60},
              {"file_id":"large","file_unique_id":"l","file_size":90211,"width":1280,"height":853},
              {"file_id":"medium","file_unique_id":"m","file_size":20000,"width":320,"height":213}]"#,
        ),
        &[
            r#"message 804712351 from 587236105 "Jane Doe" at 1764082800: image large caption "the label""#,
        ],
    );
}

#[test]
fn each_file_kind() {
    let cases = [
        (
            r#""document":{"file_id":"doc1","file_unique_id":"d","file_name":"invoice.pdf","mime_type":"application/pdf"}"#,
            r#"document doc1 application/pdf file "invoice.pdf""#,
        ),
        (
            r#""video":{"file_id":"vid1","file_unique_id":"v","width":1,"height":1,"duration":3,"mime_type":"video/mp4"}"#,
            "video vid1 video/mp4",
        ),
        (
            r#""video_note":{"file_id":"note1","file_unique_id":"n","length":240,"duration":3}"#,
            "video note1",
        ),
        (
            r#""audio":{"file_id":"aud1","file_unique_id":"a","duration":3,"mime_type":"audio/mpeg"}"#,
            "audio aud1 audio/mpeg",
        ),
        (
            r#""voice":{"file_id":"voice1","file_unique_id":"o","duration":3,"mime_type":"audio/ogg"}"#,
            "audio voice1 audio/ogg",
        ),
    ];
    for (fields, content) in cases {
        let expected =
            format!(r#"message 804712351 from 587236105 "Jane Doe" at 1764082800: {content}"#);
        check(&telegram(), &update(fields), &[&expected]);
    }
}

#[test]
fn location() {
    check(
        &telegram(),
        &update(r#""location":{"latitude":-33.8688,"longitude":151.2093}"#),
        &[
            r#"message 804712351 from 587236105 "Jane Doe" at 1764082800: location -33.8688,151.2093"#,
        ],
    );
}

/// Jane taps the button with `data` on the bot's message 1043.
fn callback(update_id: u64, fields: &str) -> String {
    format!(
        r#"{{"update_id":{update_id},"callback_query":{{"id":"4382bfdwdsb323b2d9",
          "from":{{"id":587236105,"is_bot":false,"first_name":"Jane","last_name":"Doe","language_code":"en"}},
          "message":{{"message_id":1043,"from":{{"id":7012345678,"is_bot":true,"first_name":"Helpline"}},
            "chat":{{"id":587236105,"type":"private","first_name":"Jane"}},"date":1764082800,
            "text":"Wie war es?","reply_markup":{{"inline_keyboard":[[{{"text":"⭐⭐⭐⭐⭐","callback_data":"5"}}]]}}}},
          "chat_instance":"-8723499102938123",{fields}}}}}"#
    )
}

#[test]
fn a_tapped_inline_button_is_a_text_message_of_its_data_one_per_update() {
    check(
        &telegram(),
        &callback(804712352, r#""data":"5""#),
        &[r#"message 804712352 from 587236105 "Jane Doe": text "5""#],
    );
    // The same button tapped again is a new update, so a new message.
    check(
        &telegram(),
        &callback(804712353, r#""data":"5""#),
        &[r#"message 804712353 from 587236105 "Jane Doe": text "5""#],
    );
    // Without the message (sent in inline mode), the user who tapped is the chat.
    let inline = r#"{"update_id":7,"callback_query":{"id":"q","from":{"id":42,"is_bot":false},
      "inline_message_id":"AAA","chat_instance":"1","data":"4"}}"#;
    check(&telegram(), inline, &[r#"message 7 from 42: text "4""#]);
}

#[test]
fn taps_in_groups_from_bots_or_without_data_are_ignored() {
    let group = r#"{"update_id":8,"callback_query":{"id":"q","from":{"id":42,"is_bot":false},
      "message":{"message_id":1,"chat":{"id":-100,"type":"supergroup"},"date":1},"chat_instance":"1","data":"4"}}"#;
    check(
        &telegram(),
        group,
        &["ignored: telegram callback in a `supergroup` chat"],
    );
    let bot = r#"{"update_id":9,"callback_query":{"id":"q","from":{"id":42,"is_bot":true},
      "chat_instance":"1","data":"4"}}"#;
    check(&telegram(), bot, &["ignored: telegram callback from a bot"]);
    check(
        &telegram(),
        &callback(10, r#""game_short_name":"g""#),
        &["ignored: telegram callback without data"],
    );
}

#[test]
fn ids_beyond_32_bits_are_kept_exactly() {
    let body = r#"{"update_id":9007199254740993,"message":{"message_id":1,
      "chat":{"id":-1009007199254740993,"type":"private"},"text":"x"}}"#;
    check(
        &telegram(),
        body,
        &[r#"message 9007199254740993 from -1009007199254740993: text "x""#],
    );
}

#[test]
fn other_updates_groups_bots_and_stickers_are_ignored() {
    let cases = [
        (
            r#"{"update_id":1,"edited_message":{"message_id":1,"chat":{"id":1,"type":"private"},"date":1,"text":"x"}}"#,
            "ignored: telegram update `edited_message`",
        ),
        (
            r#"{"update_id":2,"channel_post":{"message_id":1,"chat":{"id":-100,"type":"channel"},"date":1,"text":"x"}}"#,
            "ignored: telegram update `channel_post`",
        ),
        (r#"{"update_id":3}"#, "ignored: telegram update `empty`"),
        (
            r#"{"update_id":4,"message":{"message_id":1,"chat":{"id":-100,"type":"supergroup"},"text":"x"}}"#,
            "ignored: telegram message in a `supergroup` chat",
        ),
        (
            r#"{"update_id":5,"message":{"message_id":1,"from":{"id":9,"is_bot":true,"first_name":"B"},"chat":{"id":9,"type":"private"},"text":"x"}}"#,
            "ignored: telegram message from a bot",
        ),
        (
            r#"{"update_id":6,"message":{"message_id":1,"chat":{"id":1,"type":"private"},"sticker":{"file_id":"s","width":512,"height":512}}}"#,
            "ignored: telegram message without supported content",
        ),
    ];
    for (body, expected) in cases {
        check(&telegram(), body, &[expected]);
    }
}

#[test]
fn an_update_id_that_is_not_an_integer_is_malformed() {
    for body in [
        r#"{"update_id":"804712351","message":{}}"#,
        r#"{"update_id":8.5}"#,
        r#"{"update_id":18446744073709551615}"#,
    ] {
        assert_malformed(telegram().parse(body.as_bytes()));
    }
}

/// Jane's private chat reports the bot's new membership `status` (as the bot sees itself).
fn my_chat_member(update_id: u64, chat: &str, old_status: &str, new_status: &str) -> String {
    format!(
        r#"{{"update_id":{update_id},"my_chat_member":{{
          "chat":{chat},
          "from":{{"id":587236105,"is_bot":false,"first_name":"Jane","last_name":"Doe","language_code":"en"}},
          "date":1764085500,
          "old_chat_member":{{"user":{{"id":7012345678,"is_bot":true,"first_name":"Helpline","username":"helpline_support_bot"}},"status":"{old_status}"}},
          "new_chat_member":{{"user":{{"id":7012345678,"is_bot":true,"first_name":"Helpline","username":"helpline_support_bot"}},"status":"{new_status}","until_date":0}}}}}}"#
    )
}

const JANES_CHAT: &str =
    r#"{"id":587236105,"first_name":"Jane","last_name":"Doe","type":"private"}"#;

#[test]
fn blocking_the_bot_withdraws_consent_to_every_notification() {
    check(
        &telegram(),
        &my_chat_member(804712416, JANES_CHAT, "member", "kicked"),
        &["consent withdrawn All 804712416 by 587236105"],
    );
}

#[test]
fn unblocking_the_bot_grants_consent_to_every_notification_again() {
    check(
        &telegram(),
        &my_chat_member(804712417, JANES_CHAT, "kicked", "member"),
        &["consent granted All 804712417 by 587236105"],
    );
}

#[test]
fn the_bot_added_to_or_removed_from_a_group_other_statuses_and_shapes_are_ignored() {
    let group = r#"{"id":-4012345678,"title":"Family","type":"group"}"#;
    let channel = r#"{"id":-1001234567890,"title":"News","type":"channel"}"#;
    let cases = [
        (
            my_chat_member(1, group, "left", "member"),
            "ignored: telegram my_chat_member in a `group` chat",
        ),
        (
            my_chat_member(2, channel, "administrator", "kicked"),
            "ignored: telegram my_chat_member in a `channel` chat",
        ),
        (
            my_chat_member(3, JANES_CHAT, "member", "restricted"),
            "ignored: telegram my_chat_member status `restricted`",
        ),
        (
            r#"{"update_id":4,"my_chat_member":{"chat":{"id":1,"type":"private"}}}"#.to_owned(),
            "ignored: telegram my_chat_member without chat or new status",
        ),
        (
            r#"{"update_id":5,"my_chat_member":"kicked"}"#.to_owned(),
            "ignored: telegram my_chat_member without chat or new status",
        ),
    ];
    for (body, expected) in cases {
        check(&telegram(), &body, &[expected]);
    }
}
