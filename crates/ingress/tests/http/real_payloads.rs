//! Every payload a provider really sends is taken: a provider retries, and in the end
//! disables, a webhook that does not answer 2xx.
//!
//! `real_payloads/<channel>.json` holds payloads in the shapes the providers document,
//! each with the page it was written from, the customer's words helpline must record
//! from it, and a note on what it is: text and media from phone-number and username-only
//! customers, taps, echoes of our own sends, edits, reactions, receipts, opt-ins, group
//! messages, updates of kinds helpline does not act on. Every one must be answered 2xx,
//! twice (a provider's redelivery), and the log must then hold each customer text exactly
//! once and nothing else.

use std::collections::{BTreeMap, BTreeSet};

use helpline_domain::{Channel, Event, MessageBody};
use helpline_ingress::IngressConfig;
use serde::Deserialize;

use super::support::*;

/// One payload of the corpus.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// The provider's page the shape was written from.
    source: String,
    /// What it is and what helpline does with it.
    note: String,
    /// The customer's words helpline must record from it: texts, tapped titles, captions.
    texts: Vec<String>,
    payload: serde_json::Value,
}

fn corpus() -> Vec<(Channel, Vec<Case>)> {
    let read = |channel: Channel, json: &str| -> (Channel, Vec<Case>) {
        let cases = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("real_payloads/{}.json: {e}", channel.as_str()));
        (channel, cases)
    };
    vec![
        read(
            Channel::WhatsApp,
            include_str!("real_payloads/whatsapp.json"),
        ),
        read(
            Channel::Messenger,
            include_str!("real_payloads/messenger.json"),
        ),
        read(
            Channel::Telegram,
            include_str!("real_payloads/telegram.json"),
        ),
        read(Channel::Viber, include_str!("real_payloads/viber.json")),
    ]
}

#[test]
fn the_corpus_is_sixty_documented_payloads_with_distinct_names_and_texts() {
    let mut names = BTreeSet::new();
    let mut texts = BTreeSet::new();
    let mut count = 0;
    for (channel, cases) in corpus() {
        for case in cases {
            count += 1;
            let name = format!("{}/{}", channel.as_str(), case.name);
            assert!(
                case.source.starts_with("https://"),
                "{name}: no source page"
            );
            assert!(!case.note.trim().is_empty(), "{name}: no note");
            assert!(case.payload.is_object(), "{name}: not a JSON object");
            for text in case.texts {
                assert!(texts.insert(text.clone()), "{name}: {text:?} twice");
            }
            assert!(names.insert(name.clone()), "{name} twice");
        }
    }
    assert!(count >= 60, "{count} payloads");
}

/// The customer's words an event records: a text, or an attachment's caption.
fn recorded_words(event: &Event) -> Option<String> {
    match event {
        Event::CustomerMessageReceived { body, .. } => match body {
            MessageBody::Text(text) => Some(text.expose().clone()),
            MessageBody::Media(media) => media.caption.as_ref().map(|c| c.expose().clone()),
            MessageBody::Location(_) => None,
        },
        _ => None,
    }
}

#[tokio::test]
async fn every_real_payload_is_answered_2xx_and_each_customer_text_is_recorded_once() {
    // Only the routes: attachments are not fetched, their captions are still recorded.
    let h = Harness::routes_only(&IngressConfig::default()).await;
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = Vec::new();
    let corpus = corpus();
    // The second round is the provider redelivering every one of them.
    for round in 1..=2 {
        for (channel, cases) in &corpus {
            for case in cases {
                let body = serde_json::to_vec(&case.payload).unwrap();
                let status = post(&h, *channel, body, "application/json").await;
                if !(200..300).contains(&status) {
                    refused.push(format!(
                        "round {round}: {}/{}: {status}",
                        channel.as_str(),
                        case.name
                    ));
                }
                if round == 1 {
                    for text in &case.texts {
                        *expected.entry(text.clone()).or_default() += 1;
                    }
                }
            }
        }
    }
    assert!(refused.is_empty(), "refused: {refused:#?}");

    let mut recorded: BTreeMap<String, usize> = BTreeMap::new();
    for (_, event) in h.events().await {
        if let Some(words) = recorded_words(&event) {
            *recorded.entry(words).or_default() += 1;
        }
    }
    let missing: Vec<&String> = expected
        .keys()
        .filter(|text| !recorded.contains_key(*text))
        .collect();
    let extra: Vec<&String> = recorded
        .keys()
        .filter(|text| !expected.contains_key(*text))
        .collect();
    let twice: Vec<(&String, &usize)> = recorded.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && twice.is_empty(),
        "missing: {missing:#?}\nrecorded though no customer's words: {extra:#?}\nmore than once: {twice:#?}"
    );
}

/// A WhatsApp message from a customer with a username, who hides their number: Meta sends
/// their business-scoped user id and no phone number.
fn username_only_message(wamid: &str, user_id: &str, text: &str) -> serde_json::Value {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Jana", "username": "jana.k"}, "user_id": user_id}],
            "messages": [{"from_user_id": user_id, "id": wamid, "timestamp": "1764082800",
                          "type": "text", "text": {"body": text}}]
        }}]}]
    })
}

#[tokio::test]
async fn a_username_only_whatsapp_customer_is_a_customer_like_any_other() {
    let h = Harness::start().await;
    let egress = h.start_egress();
    let user_id = "DE.1502576394655843";
    for (wamid, text) in [
        ("wamid.HBgLdXNlcm5hbWUx", "Mein MateBook lädt nicht"),
        ("wamid.HBgLdXNlcm5hbWUy", "Seriennummer 2NS7N19B12345678"),
    ] {
        let body = serde_json::to_vec(&username_only_message(wamid, user_id, text)).unwrap();
        assert_eq!(
            post(&h, Channel::WhatsApp, body, "application/json").await,
            200
        );
    }
    // Their user id is the contact: both messages are one ticket's.
    let ticket = h.ticket_of(Channel::WhatsApp, user_id).await;
    let texts: Vec<Option<String>> = h
        .ticket_events(ticket)
        .await
        .iter()
        .filter(|event| matches!(event, Event::CustomerMessageReceived { .. }))
        .map(recorded_words)
        .collect();
    assert_eq!(
        texts,
        [
            Some("Mein MateBook lädt nicht".to_owned()),
            Some("Seriennummer 2NS7N19B12345678".to_owned())
        ]
    );

    // Replies go to it, as `recipient` (a phone number would be `to`).
    h.bot_says(ticket, "Danke, wir prüfen das.", "test", Vec::new())
        .await;
    let received = h.sim.received(Channel::WhatsApp, user_id);
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].text.as_deref(), Some("Danke, wir prüfen das."));
    assert_eq!(received[0].body["recipient"], user_id);
    assert!(received[0].body.get("to").is_none(), "{}", received[0].body);
    egress.stop().await;
}
