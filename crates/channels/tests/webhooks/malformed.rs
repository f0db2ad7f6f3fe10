//! The malformed corpus: bodies no channel may accept, and must not panic on. Each row
//! names the channels it is fed to and what they must answer: `Malformed` (400), or
//! `Ignored` where the body is valid JSON of a type helpline does not read.

use helpline_channels::{Inbound, InboundAdapter, WebhookError};

use crate::support::*;

#[derive(Clone, Copy, Debug)]
enum To {
    All,
    WhatsApp,
    Messenger,
    Telegram,
    Viber,
    Web,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Malformed,
    Ignored,
}

struct Case {
    name: &'static str,
    to: To,
    body: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, to: To, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name,
        to,
        body: body.into(),
        expect,
    }
}

/// A valid WhatsApp text notification with `message` as its one message.
fn wa(message: &str) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"metadata":{{"phone_number_id":"111"}},"messages":[{message}]}}}}]}}]}}"#
    )
}

/// A valid Messenger notification with `event` as its one messaging event.
fn fb(event: &str) -> String {
    format!(r#"{{"object":"page","entry":[{{"id":"PAGE1","messaging":[{event}]}}]}}"#)
}

/// A valid Telegram update with `message` as its message.
fn tg(message: &str) -> String {
    format!(r#"{{"update_id":1,"message":{message}}}"#)
}

/// A valid Viber message callback with the given token and message object.
fn vb(token: &str, message: &str) -> String {
    format!(
        r#"{{"event":"message","timestamp":1,"message_token":{token},"sender":{{"id":"U1","name":"J"}},"message":{message}}}"#
    )
}

/// A valid web chat message event with `message` as its message.
fn wc(message: &str) -> String {
    format!(
        r#"{{"version":1,"event_id":"e","type":"message","sent_at":"2026-11-25T15:00:00Z","session_id":"s","message":{message}}}"#
    )
}

fn with_bytes(prefix: &str, middle: &[u8], suffix: &str) -> Vec<u8> {
    [prefix.as_bytes(), middle, suffix.as_bytes()].concat()
}

fn corpus() -> Vec<Case> {
    use Expect::*;
    use To::*;
    let text = r#"{"from":"4911","id":"wamid.1","type":"text","text":{"body":"hi"}}"#;
    vec![
        // Not JSON, or not an object, on every channel.
        case("empty body", All, "", Malformed),
        case("whitespace only", All, " \r\n\t", Malformed),
        case("null", All, "null", Malformed),
        case("array where an object is expected", All, "[]", Malformed),
        case("a string", All, r#""whatsapp_business_account""#, Malformed),
        case("a number", All, "42", Malformed),
        case("truncated after a key", All, r#"{"object":"#, Malformed),
        case(
            "truncated inside a string",
            All,
            r#"{"event":"mess"#,
            Malformed,
        ),
        case("10 000 open brackets", All, "[".repeat(10_000), Malformed),
        case(
            "10 000 nested objects",
            All,
            r#"{"a":"#.repeat(10_000),
            Malformed,
        ),
        case(
            "200 balanced brackets in a field nobody reads",
            All,
            format!(r#"{{"x":{}{}}}"#, "[".repeat(200), "]".repeat(200)),
            Malformed,
        ),
        case("NUL byte before the body", All, b"\0{}".to_vec(), Malformed),
        case(
            "UTF-8 byte order mark",
            All,
            b"\xef\xbb\xbf{}".to_vec(),
            Malformed,
        ),
        case("two values", All, "{} {}", Malformed),
        case("single quotes", All, "{'update_id':1}", Malformed),
        case("NaN", All, r#"{"update_id":NaN}"#, Malformed),
        case("trailing comma", All, r#"{"event":"message",}"#, Malformed),
        case("UTF-16 body", All, b"\xff\xfe{\0}\0".to_vec(), Malformed),
        // WhatsApp.
        case("wa: object missing", WhatsApp, r#"{"entry":[]}"#, Malformed),
        case(
            "wa: object is a number",
            WhatsApp,
            r#"{"object":1,"entry":[]}"#,
            Malformed,
        ),
        case(
            "wa: entry is an object",
            WhatsApp,
            r#"{"object":"whatsapp_business_account","entry":{}}"#,
            Malformed,
        ),
        case(
            "wa: entry missing",
            WhatsApp,
            r#"{"object":"whatsapp_business_account"}"#,
            Malformed,
        ),
        case(
            "wa: changes missing",
            WhatsApp,
            r#"{"object":"whatsapp_business_account","entry":[{"id":"1"}]}"#,
            Malformed,
        ),
        case(
            "wa: value missing",
            WhatsApp,
            r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages"}]}]}"#,
            Malformed,
        ),
        case(
            "wa: message id missing",
            WhatsApp,
            wa(&text.replace(r#""id":"wamid.1","#, "")),
            Malformed,
        ),
        case(
            "wa: message id empty",
            WhatsApp,
            wa(&text.replace("wamid.1", "")),
            Malformed,
        ),
        case(
            "wa: from missing",
            WhatsApp,
            wa(&text.replace(r#""from":"4911","#, "")),
            Malformed,
        ),
        case(
            "wa: text object missing",
            WhatsApp,
            wa(&text.replace(r#","text":{"body":"hi"}"#, "")),
            Malformed,
        ),
        case(
            "wa: text body is a number",
            WhatsApp,
            wa(&text.replace(r#""hi""#, "12")),
            Malformed,
        ),
        case(
            "wa: latitude out of range",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"w","type":"location","location":{"latitude":91,"longitude":0}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: latitude beyond f64",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"w","type":"location","location":{"latitude":1e400,"longitude":0}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: longitude a string",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"w","type":"location","location":{"latitude":1,"longitude":"2"}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: lone surrogate in text",
            WhatsApp,
            wa(&text.replace("hi", r"\ud83d")),
            Malformed,
        ),
        case(
            "wa: invalid UTF-8 in text",
            WhatsApp,
            with_bytes(
                &wa(r#"{"from":"4911","id":"w","type":"text","text":{"body":""#),
                b"\xc3\x28",
                r#""}}]}}]}]}"#,
            ),
            Malformed,
        ),
        case(
            "wa: raw control character in a string",
            WhatsApp,
            wa(&text.replace("hi", "h\u{1}i")),
            Malformed,
        ),
        case(
            "wa: statuses is an object",
            WhatsApp,
            r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":{"id":"w"}}}]}]}"#,
            Malformed,
        ),
        case(
            "wa: status id missing",
            WhatsApp,
            r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"status":"read"}]}}]}]}"#,
            Malformed,
        ),
        case(
            "wa: 200 balanced brackets in an unread field",
            WhatsApp,
            wa(&text.replace(
                r#""type""#,
                &format!(r#""x":{}{},"type""#, "[".repeat(200), "]".repeat(200)),
            )),
            Malformed,
        ),
        case(
            "wa: 1000 balanced brackets in an unread top-level field",
            WhatsApp,
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[],"x":{}{}}}"#,
                "[".repeat(1000),
                "]".repeat(1000)
            ),
            Malformed,
        ),
        case(
            "wa: another object",
            WhatsApp,
            r#"{"object":"instagram","entry":[{"whatever":true}]}"#,
            Ignored,
        ),
        case(
            "wa: another field",
            WhatsApp,
            r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"account_update","value":[1,2]}]}]}"#,
            Ignored,
        ),
        // Messenger.
        case(
            "fb: entry is a string",
            Messenger,
            r#"{"object":"page","entry":"x"}"#,
            Malformed,
        ),
        case("fb: event is an array", Messenger, fb("[]"), Malformed),
        case(
            "fb: mid missing",
            Messenger,
            fb(r#"{"sender":{"id":"P"},"message":{"text":"hi"}}"#),
            Malformed,
        ),
        case(
            "fb: mid a number",
            Messenger,
            fb(r#"{"sender":{"id":"P"},"message":{"mid":7,"text":"hi"}}"#),
            Malformed,
        ),
        case(
            "fb: text a number",
            Messenger,
            fb(r#"{"sender":{"id":"P"},"message":{"mid":"m","text":7}}"#),
            Malformed,
        ),
        case(
            "fb: sender id a number",
            Messenger,
            fb(r#"{"sender":{"id":7},"message":{"mid":"m","text":"hi"}}"#),
            Malformed,
        ),
        case(
            "fb: watermark missing",
            Messenger,
            fb(r#"{"sender":{"id":"P"},"delivery":{"mids":["m"]}}"#),
            Malformed,
        ),
        case(
            "fb: read watermark a string",
            Messenger,
            fb(r#"{"sender":{"id":"P"},"read":{"watermark":"1"}}"#),
            Malformed,
        ),
        case(
            "fb: image without url",
            Messenger,
            fb(
                r#"{"sender":{"id":"P"},"message":{"mid":"m","attachments":[{"type":"image","payload":{}}]}}"#,
            ),
            Malformed,
        ),
        case(
            "fb: another object",
            Messenger,
            r#"{"object":"user","entry":[]}"#,
            Ignored,
        ),
        // Telegram.
        case(
            "tg: update_id missing",
            Telegram,
            r#"{"message":{}}"#,
            Malformed,
        ),
        case(
            "tg: update_id a string",
            Telegram,
            r#"{"update_id":"1"}"#,
            Malformed,
        ),
        case(
            "tg: update_id beyond u64",
            Telegram,
            r#"{"update_id":123456789012345678901234567890}"#,
            Malformed,
        ),
        case("tg: message an array", Telegram, tg("[]"), Malformed),
        case(
            "tg: chat missing",
            Telegram,
            tg(r#"{"message_id":1,"text":"hi"}"#),
            Malformed,
        ),
        case(
            "tg: chat id a string",
            Telegram,
            tg(r#"{"message_id":1,"chat":{"id":"1","type":"private"},"text":"hi"}"#),
            Malformed,
        ),
        case(
            "tg: message_id missing",
            Telegram,
            tg(r#"{"chat":{"id":1,"type":"private"},"text":"hi"}"#),
            Malformed,
        ),
        case(
            "tg: photo without sizes",
            Telegram,
            tg(r#"{"message_id":1,"chat":{"id":1,"type":"private"},"photo":[]}"#),
            Malformed,
        ),
        case(
            "tg: text an object",
            Telegram,
            tg(r#"{"message_id":1,"chat":{"id":1,"type":"private"},"text":{"body":"hi"}}"#),
            Malformed,
        ),
        case(
            "tg: NUL byte after a value",
            Telegram,
            b"{\"update_id\":1\0,\"message\":{}}".to_vec(),
            Malformed,
        ),
        case(
            "tg: invalid UTF-8 in a field nobody reads",
            Telegram,
            with_bytes(
                r#"{"update_id":1,"poll":{"question":""#,
                b"\xff\xfe",
                r#""}}"#,
            ),
            Malformed,
        ),
        case(
            "tg: callback_query an array",
            Telegram,
            r#"{"update_id":1,"callback_query":[]}"#,
            Malformed,
        ),
        case(
            "tg: callback without id",
            Telegram,
            r#"{"update_id":1,"callback_query":{"from":{"id":1},"chat_instance":"1","data":"5"}}"#,
            Malformed,
        ),
        case(
            "tg: callback with an empty id",
            Telegram,
            r#"{"update_id":1,"callback_query":{"id":"","from":{"id":1},"chat_instance":"1","data":"5"}}"#,
            Malformed,
        ),
        case(
            "tg: callback without from",
            Telegram,
            r#"{"update_id":1,"callback_query":{"id":"q","chat_instance":"1","data":"5"}}"#,
            Malformed,
        ),
        case(
            "tg: callback from id a string",
            Telegram,
            r#"{"update_id":1,"callback_query":{"id":"q","from":{"id":"1"},"chat_instance":"1","data":"5"}}"#,
            Malformed,
        ),
        case(
            "tg: callback data empty",
            Telegram,
            r#"{"update_id":1,"callback_query":{"id":"q","from":{"id":1},"chat_instance":"1","data":""}}"#,
            Malformed,
        ),
        case(
            "tg: callback data a number",
            Telegram,
            r#"{"update_id":1,"callback_query":{"id":"q","from":{"id":1},"chat_instance":"1","data":5}}"#,
            Malformed,
        ),
        case(
            "tg: callback message without chat",
            Telegram,
            r#"{"update_id":1,"callback_query":{"id":"q","from":{"id":1},"message":{"message_id":1},"chat_instance":"1","data":"5"}}"#,
            Malformed,
        ),
        case(
            "tg: another update",
            Telegram,
            r#"{"update_id":1,"poll":{"id":"p"}}"#,
            Ignored,
        ),
        // Taps on buttons: WhatsApp interactive replies, Messenger quick replies.
        case(
            "wa: interactive missing",
            WhatsApp,
            wa(r#"{"from":"4911","id":"wamid.1","type":"interactive"}"#),
            Malformed,
        ),
        case(
            "wa: interactive a string",
            WhatsApp,
            wa(r#"{"from":"4911","id":"wamid.1","type":"interactive","interactive":"5"}"#),
            Malformed,
        ),
        case(
            "wa: interactive without type",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"wamid.1","type":"interactive","interactive":{"button_reply":{"id":"5","title":"5"}}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: button_reply missing",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"wamid.1","type":"interactive","interactive":{"type":"button_reply"}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: list_reply under button_reply",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"wamid.1","type":"interactive","interactive":{"type":"list_reply","button_reply":{"id":"5","title":"5"}}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: button_reply without id",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"wamid.1","type":"interactive","interactive":{"type":"button_reply","button_reply":{"title":"5"}}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: list_reply without title",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"wamid.1","type":"interactive","interactive":{"type":"list_reply","list_reply":{"id":"5"}}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: button_reply id a number",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"wamid.1","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":5,"title":"5"}}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: button_reply id and title empty",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"wamid.1","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"","title":""}}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: tapped reply without message id",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"5","title":"5"}}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: template button payload a number",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"wamid.1","type":"button","button":{"payload":5,"text":"5"}}"#,
            ),
            Malformed,
        ),
        case(
            "wa: template button text and payload empty",
            WhatsApp,
            wa(
                r#"{"from":"4911","id":"wamid.1","type":"button","button":{"payload":"","text":""}}"#,
            ),
            Malformed,
        ),
        case(
            "fb: quick_reply a string",
            Messenger,
            fb(r#"{"sender":{"id":"P"},"message":{"mid":"m_1","text":"5","quick_reply":"5"}}"#),
            Malformed,
        ),
        case(
            "fb: quick_reply without payload",
            Messenger,
            fb(r#"{"sender":{"id":"P"},"message":{"mid":"m_1","text":"5","quick_reply":{}}}"#),
            Malformed,
        ),
        case(
            "fb: quick_reply payload a number",
            Messenger,
            fb(
                r#"{"sender":{"id":"P"},"message":{"mid":"m_1","text":"5","quick_reply":{"payload":5}}}"#,
            ),
            Malformed,
        ),
        case(
            "fb: quick reply without mid",
            Messenger,
            fb(r#"{"sender":{"id":"P"},"message":{"text":"5","quick_reply":{"payload":"5"}}}"#),
            Malformed,
        ),
        // Viber.
        case(
            "vb: event missing",
            Viber,
            r#"{"timestamp":1,"message_token":1}"#,
            Malformed,
        ),
        case("vb: event a number", Viber, r#"{"event":1}"#, Malformed),
        case(
            "vb: message_token missing",
            Viber,
            r#"{"event":"message","sender":{"id":"U"},"message":{"type":"text","text":"hi"}}"#,
            Malformed,
        ),
        case(
            "vb: message_token a float",
            Viber,
            vb("5.7e18", r#"{"type":"text","text":"hi"}"#),
            Malformed,
        ),
        case(
            "vb: message_token a string",
            Viber,
            vb(r#""57""#, r#"{"type":"text","text":"hi"}"#),
            Malformed,
        ),
        case(
            "vb: message_token beyond u64",
            Viber,
            vb("99999999999999999999", r#"{"type":"text","text":"hi"}"#),
            Malformed,
        ),
        case(
            "vb: text missing",
            Viber,
            vb("1", r#"{"type":"text"}"#),
            Malformed,
        ),
        case(
            "vb: picture without media",
            Viber,
            vb("1", r#"{"type":"picture","text":"c"}"#),
            Malformed,
        ),
        case(
            "vb: sender id empty",
            Viber,
            vb("1", r#"{"type":"text","text":"hi"}"#).replace(r#""id":"U1""#, r#""id":"""#),
            Malformed,
        ),
        case(
            "vb: delivered without token",
            Viber,
            r#"{"event":"delivered","timestamp":1,"user_id":"U"}"#,
            Malformed,
        ),
        case(
            "vb: another event",
            Viber,
            r#"{"event":"client_status","timestamp":1}"#,
            Ignored,
        ),
        // Web chat: strict, so even a new type is malformed.
        case(
            "web: version a string",
            Web,
            wc(r#"{"id":"m","text":"hi"}"#).replace(r#""version":1"#, r#""version":"1""#),
            Malformed,
        ),
        case(
            "web: version a float",
            Web,
            wc(r#"{"id":"m","text":"hi"}"#).replace(r#""version":1"#, r#""version":1.0"#),
            Malformed,
        ),
        case(
            "web: event_id missing",
            Web,
            wc(r#"{"id":"m","text":"hi"}"#).replace(r#""event_id":"e","#, ""),
            Malformed,
        ),
        case("web: message missing", Web, wc("null"), Malformed),
        case(
            "web: message id missing",
            Web,
            wc(r#"{"text":"hi"}"#),
            Malformed,
        ),
        case(
            "web: duplicate key",
            Web,
            wc(r#"{"id":"m","id":"n","text":"hi"}"#),
            Malformed,
        ),
        case(
            "web: unknown field",
            Web,
            wc(r#"{"id":"m","text":"hi","html":"<b>"}"#),
            Malformed,
        ),
        case(
            "web: neither text nor attachments",
            Web,
            wc(r#"{"id":"m","attachments":[]}"#),
            Malformed,
        ),
        case(
            "web: attachment without url",
            Web,
            wc(r#"{"id":"m","attachments":[{"type":"image"}]}"#),
            Malformed,
        ),
        case(
            "web: unknown type",
            Web,
            wc(r#"{"id":"m","text":"hi"}"#).replace(r#""type":"message""#, r#""type":"typing""#),
            Malformed,
        ),
    ]
}

fn adapters_for(to: To) -> Vec<Box<dyn InboundAdapter>> {
    match to {
        To::All => all_adapters(),
        To::WhatsApp => vec![Box::new(whatsapp())],
        To::Messenger => vec![Box::new(messenger())],
        To::Telegram => vec![Box::new(telegram())],
        To::Viber => vec![Box::new(viber())],
        To::Web => vec![Box::new(web())],
    }
}

fn outcome(result: &Result<Vec<Inbound>, WebhookError>) -> Option<Expect> {
    match result {
        Err(WebhookError::Malformed(_)) => Some(Expect::Malformed),
        Ok(inbound)
            if !inbound.is_empty()
                && inbound
                    .iter()
                    .all(|inbound| matches!(inbound, Inbound::Ignored { .. })) =>
        {
            Some(Expect::Ignored)
        }
        _ => None,
    }
}

#[test]
fn the_malformed_corpus_is_refused_on_every_channel_it_is_fed_to() {
    let corpus = corpus();
    assert!(corpus.len() >= 40, "corpus has {} cases", corpus.len());
    let mut failures = Vec::new();
    for case in &corpus {
        for adapter in adapters_for(case.to) {
            let result = adapter.parse(&case.body);
            if outcome(&result) != Some(case.expect) {
                failures.push(format!(
                    "{} on {}: expected {:?}, got {result:?}",
                    case.name,
                    adapter.channel().as_str(),
                    case.expect
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A time is only recorded, never acted on: one sent as another type than documented
/// (a number for WhatsApp's string, a float, a string for a number, a word) is read from
/// its number or as absent, and the customer's words are taken, never refused.
#[test]
fn a_time_of_another_type_is_tolerated_and_the_message_taken() {
    let text = r#"{"from":"4915112345678","id":"wamid.1","type":"text","text":{"body":"hi"}}"#;
    let corpus = [
        case(
            "wa: timestamp a word",
            To::WhatsApp,
            wa(&text.replace(r#""type""#, r#""timestamp":"soon","type""#)),
            Expect::Ignored,
        ),
        case(
            "wa: timestamp a number",
            To::WhatsApp,
            wa(&text.replace(r#""type""#, r#""timestamp":1764082800,"type""#)),
            Expect::Ignored,
        ),
        case(
            "wa: timestamp a float",
            To::WhatsApp,
            wa(&text.replace(r#""type""#, r#""timestamp":1764082800.25,"type""#)),
            Expect::Ignored,
        ),
        case(
            "fb: timestamp a string",
            To::Messenger,
            fb(
                r#"{"sender":{"id":"P"},"timestamp":"1764082800123","message":{"mid":"m","text":"hi"}}"#,
            ),
            Expect::Ignored,
        ),
        case(
            "fb: timestamp beyond i64",
            To::Messenger,
            fb(r#"{"sender":{"id":"P"},"timestamp":1e30,"message":{"mid":"m","text":"hi"}}"#),
            Expect::Ignored,
        ),
        case(
            "tg: date a string",
            To::Telegram,
            tg(r#"{"message_id":1,"chat":{"id":1,"type":"private"},"date":"today","text":"hi"}"#),
            Expect::Ignored,
        ),
    ];
    for case in corpus {
        for adapter in adapters_for(case.to) {
            let inbound = adapter
                .parse(&case.body)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let taken = inbound
                .iter()
                .filter(|inbound| matches!(inbound, Inbound::Message(_)))
                .count();
            assert_eq!(taken, 1, "{}: {inbound:?}", case.name);
        }
    }
    let seen = r#"{"event":"seen","timestamp":"1","message_token":1,"user_id":"U"}"#;
    let receipts = viber().parse(seen.as_bytes()).unwrap();
    assert!(
        matches!(receipts.as_slice(), [Inbound::Receipt(_)]),
        "{receipts:?}"
    );
}
