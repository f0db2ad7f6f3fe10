//! Buttons in the channel itself: a bot message's choices reach each provider in its own
//! shape, a customer's tap comes back as a message the rating can be read from, and on
//! WhatsApp outside the 24-hour window the rating request goes out as the rating
//! template.

use std::time::{Duration, SystemTime};

use helpline_domain::{Channel, Event, MessageBody, QuickReply, TicketId};
use helpline_egress::{EgressConfig, WhatsAppTemplate};

use crate::support::*;

const GENERAL_TEMPLATE: &str = "ticket_update";
const RATING_TEMPLATE: &str = "rate_your_support";

fn stars() -> Vec<QuickReply> {
    (1..=5)
        .map(|n| QuickReply {
            id: n.to_string(),
            title: "⭐".repeat(n),
        })
        .collect()
}

fn templates() -> EgressConfig {
    let template = |name: &str| WhatsAppTemplate {
        name: name.to_owned(),
        language: "de".to_owned(),
    };
    EgressConfig {
        whatsapp_template: Some(template(GENERAL_TEMPLATE)),
        whatsapp_rating_template: Some(template(RATING_TEMPLATE)),
        ..EgressConfig::default()
    }
}

/// The tickets and texts of the customer messages with `provider_message_id`.
async fn texts_of(h: &Harness, provider_id: &str) -> Vec<(TicketId, String)> {
    h.events()
        .await
        .into_iter()
        .filter_map(|(ticket, event)| match event {
            Event::CustomerMessageReceived {
                provider_message_id,
                body: MessageBody::Text(text),
                ..
            } if provider_message_id.expose() == provider_id => {
                Some((ticket, text.expose().clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn rating_choices_reach_every_channel_and_a_tap_on_five_comes_back_as_five() {
    let h = Harness::start().await;
    let egress = h.start_egress_with(templates());
    let expected: Vec<(String, String)> = stars().into_iter().map(|c| (c.id, c.title)).collect();
    for (n, channel) in (60..).zip(CHANNELS) {
        let customer = customer_id(channel, n);
        let opening = h
            .sim
            .webhook(channel, &customer, "Mein Laptop startet nicht");
        let response = h
            .sim
            .deliver(&h.url, &opening)
            .await
            .unwrap_or_else(|e| panic!("{channel:?}: {e}"));
        assert_eq!(response.status, 200, "{channel:?}: {}", response.body);
        let ticket = h.ticket_of(channel, &customer).await;

        let (_, provider_id) = h
            .bot_says(ticket, "Wie zufrieden waren Sie?", "rating", stars())
            .await;
        let received = h.sim.received(channel, &customer);
        let rating = received
            .iter()
            .find(|r| r.provider_message_id == provider_id)
            .unwrap_or_else(|| panic!("{channel:?}: the rating request was not received"));
        assert_eq!(rating.template, None, "{channel:?}: inside the window");
        if channel == Channel::WebChat {
            // The web chat's callback names ids only; the titles are lines of the text.
            let ids: Vec<(String, String)> =
                (1..=5).map(|n| (n.to_string(), n.to_string())).collect();
            assert_eq!(rating.choices, ids);
            let text = rating.text.clone().unwrap_or_default();
            assert!(text.ends_with("5 – ⭐⭐⭐⭐⭐"), "{text}");
        } else {
            assert_eq!(rating.choices, expected, "{channel:?}");
            assert_eq!(
                rating.text.as_deref(),
                Some("Wie zufrieden waren Sie?"),
                "{channel:?}"
            );
        }

        let tap = h.sim.webhook_choice(channel, &customer, "5", "⭐⭐⭐⭐⭐");
        for _ in 0..2 {
            let response = h
                .sim
                .deliver(&h.url, &tap)
                .await
                .unwrap_or_else(|e| panic!("{channel:?}: {e}"));
            assert_eq!(response.status, 200, "{channel:?}: {}", response.body);
        }
        let texts = texts_of(&h, &tap.provider_message_id).await;
        assert_eq!(
            texts.len(),
            1,
            "{channel:?}: one message per tap, redelivery deduped"
        );
        let (tapped_on, text) = &texts[0];
        assert_eq!(
            *tapped_on, ticket,
            "{channel:?}: the tap answers the open ticket"
        );
        assert!(
            text.contains('5') || text.contains("⭐⭐⭐⭐⭐"),
            "{channel:?}: {text:?}"
        );
    }
    egress.stop().await;
}

#[tokio::test]
async fn whatsapp_outside_the_window_sends_the_rating_template_for_the_rating_prompt() {
    let h = Harness::start().await;
    let egress = h.start_egress_with(templates());
    let channel = Channel::WhatsApp;
    let customer = customer_id(channel, 70);
    let two_days_ago = SystemTime::now() - Duration::from_secs(48 * 3600);
    let ticket = h.open_at(channel, &customer, two_days_ago).await;

    let (_, rating_id) = h
        .bot_says(ticket, "Wie zufrieden waren Sie?", "rating", stars())
        .await;
    let (_, reprompt_id) = h
        .bot_says(ticket, "Bitte bewerten Sie uns", "rating_reprompt", stars())
        .await;
    let (_, other_id) = h
        .bot_says(ticket, "Wir haben Neuigkeiten", "ask_serial", Vec::new())
        .await;

    let received = h.sim.received(channel, &customer);
    let template_of = |provider_id: &str| {
        received
            .iter()
            .find(|r| r.provider_message_id == provider_id)
            .and_then(|r| r.template.clone())
    };
    assert_eq!(template_of(&rating_id).as_deref(), Some(RATING_TEMPLATE));
    assert_eq!(template_of(&reprompt_id).as_deref(), Some(RATING_TEMPLATE));
    assert_eq!(template_of(&other_id).as_deref(), Some(GENERAL_TEMPLATE));

    // The customer taps the template's "5": its payload comes back as their text.
    let tap = h.sim.webhook_choice(channel, &customer, "5", "⭐⭐⭐⭐⭐");
    let response = h
        .sim
        .deliver(&h.url, &tap)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status, 200, "{}", response.body);
    // The ticket was opened without ingress, so the tap opens one of its own; its text is
    // what matters here.
    let texts: Vec<String> = texts_of(&h, &tap.provider_message_id)
        .await
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    assert_eq!(texts, ["5"]);
    egress.stop().await;
}
