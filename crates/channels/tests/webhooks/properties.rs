//! Properties over arbitrary input: no adapter panics on any bytes, and text survives
//! every channel byte for byte, however it is escaped.

use helpline_channels::{Inbound, InboundAdapter, InboundContent};
use proptest::prelude::*;

use crate::support::*;

const ODD_TEXT: &str = "👩🏽‍💻 שלום e\u{301} 𝄞 \u{0}";

/// A body of each channel carrying `text` (a JSON string literal, quotes included).
fn bodies_with_text(text: &str) -> Vec<(Box<dyn InboundAdapter>, String)> {
    vec![
        (
            Box::new(whatsapp()),
            format!(
                r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"messages":[{{"from":"4911","id":"wamid.1","type":"text","text":{{"body":{text}}}}}]}}}}]}}]}}"#
            ),
        ),
        (
            Box::new(messenger()),
            format!(
                r#"{{"object":"page","entry":[{{"id":"PAGE1","messaging":[{{"sender":{{"id":"P"}},"message":{{"mid":"m","text":{text}}}}}]}}]}}"#
            ),
        ),
        (
            Box::new(telegram()),
            format!(
                r#"{{"update_id":1,"message":{{"message_id":1,"chat":{{"id":1,"type":"private"}},"text":{text}}}}}"#
            ),
        ),
        (
            Box::new(viber()),
            format!(
                r#"{{"event":"message","message_token":1,"sender":{{"id":"U"}},"message":{{"type":"text","text":{text}}}}}"#
            ),
        ),
        (
            Box::new(web()),
            format!(
                r#"{{"version":1,"event_id":"e","type":"message","sent_at":"2026-11-25T15:00:00Z","session_id":"s","message":{{"id":"m","text":{text}}}}}"#
            ),
        ),
    ]
}

/// A JSON string literal with every non-ASCII character as `\uXXXX` (surrogate pairs
/// beyond the BMP), as Meta writes its payloads.
fn ascii_escaped(text: &str) -> String {
    let mut literal = String::from("\"");
    for unit in text.encode_utf16() {
        match unit {
            0x22 => literal.push_str("\\\""),
            0x5c => literal.push_str("\\\\"),
            0x20..=0x7e => literal.push(char::from(unit as u8)),
            _ => literal.push_str(&format!("\\u{unit:04x}")),
        }
    }
    literal.push('"');
    literal
}

/// The text each channel reads from a body built by [`bodies_with_text`].
fn texts_read(literal: &str) -> Vec<(&'static str, Result<String, String>)> {
    bodies_with_text(literal)
        .into_iter()
        .map(|(adapter, body)| {
            let text = match adapter.parse(body.as_bytes()).as_deref() {
                Ok(
                    [
                        Inbound::Message(helpline_channels::InboundMessage {
                            content: InboundContent::Text(text),
                            ..
                        }),
                    ],
                ) => Ok(text.expose().clone()),
                other => Err(format!("{other:?}")),
            };
            (adapter.channel().as_str(), text)
        })
        .collect()
}

#[track_caller]
fn check_round_trip(text: &str, literal: &str) {
    for (channel, read) in texts_read(literal) {
        assert_eq!(read.as_deref(), Ok(text), "{channel}");
    }
}

#[test]
fn odd_text_round_trips_exactly_on_every_channel() {
    check_round_trip(ODD_TEXT, &serde_json::to_string(ODD_TEXT).unwrap());
    check_round_trip(ODD_TEXT, &ascii_escaped(ODD_TEXT));
    assert_eq!(
        ODD_TEXT.as_bytes(),
        "\u{1f469}\u{1f3fd}\u{200d}\u{1f4bb} \u{5e9}\u{5dc}\u{5d5}\u{5dd} e\u{301} \u{1d11e} \u{0}"
            .as_bytes()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_round_trips_exactly(text in any::<String>()) {
        // The web chat treats empty text as absent, so give it something to carry.
        let text = format!("{text}.");
        for literal in [serde_json::to_string(&text).unwrap(), ascii_escaped(&text)] {
            for (channel, read) in texts_read(&literal) {
                prop_assert_eq!(read.as_deref(), Ok(text.as_str()), "{}", channel);
            }
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        for adapter in all_adapters() {
            let _ = adapter.parse(&body);
        }
    }

    #[test]
    fn parse_never_panics_on_mutated_valid_bodies(
        seed in 0usize..5,
        cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let (adapter, body) = bodies_with_text("\"hi\"").swap_remove(seed);
        let mut body = body.into_bytes();
        for (at, byte, edit) in cuts {
            let at = at.index(body.len() + 1);
            match edit {
                0 => body.insert(at, byte),
                1 if at < body.len() => body[at] = byte,
                _ => body.truncate(at),
            }
        }
        let _ = adapter.parse(&body);
    }

    #[test]
    fn verify_refuses_arbitrary_credentials(
        value in "[ -~]{0,80}",
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        for (adapter, header) in [
            (Box::new(whatsapp()) as Box<dyn InboundAdapter>, "x-hub-signature-256"),
            (Box::new(messenger()), "x-hub-signature-256"),
            (Box::new(telegram()), "x-telegram-bot-api-secret-token"),
            (Box::new(viber()), "x-viber-content-signature"),
            (Box::new(web()), "x-helpline-signature"),
        ] {
            prop_assume!(value != TELEGRAM_SECRET);
            let result = verify(adapter.as_ref(), &[(header, &value)], Some(&value), &body);
            prop_assert!(
                matches!(result, Err(helpline_channels::WebhookError::Unauthorized(_))),
                "{}: {:?}", adapter.channel().as_str(), result
            );
        }
    }
}
