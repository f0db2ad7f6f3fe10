//! The webhook routes over real HTTP, against a real nats-server, with the channel
//! simulator playing the providers: what a provider sends is what gets appended, once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attachments;
mod choices;
mod front_door;
mod malformed;
mod real_payloads;
mod support;

use std::collections::{HashMap, HashSet};

use helpline_domain::{Channel, Event, MessageBody, TicketId};
use helpline_eventstore::EventStore;
use helpline_ingress::IngressConfig;
use helpline_testkit::simulator::ReceiptKind;
use support::*;

/// The channels whose receipts name the message they report on (Messenger's reads are
/// watermarks, Telegram bots get no receipts).
const RECEIPT_CHANNELS: [Channel; 3] = [Channel::WhatsApp, Channel::Viber, Channel::WebChat];

const ODD_TEXT: &str = "Mein Laptop 👩🏽‍💻 startet nicht — שלום e\u{301} 𝄞 \u{0} ok";

#[tokio::test]
async fn a_signed_text_message_becomes_a_customer_message_with_the_exact_text() {
    let h = Harness::start().await;
    for channel in CHANNELS {
        let customer = customer_id(channel, 1);
        let webhook = h.sim.webhook(channel, &customer, ODD_TEXT);
        let response = h.sim.deliver(&h.url, &webhook).await.unwrap();
        assert_eq!(response.status, 200, "{channel:?}: {}", response.body);

        let events = h.events().await;
        let texts: Vec<&str> = events
            .iter()
            .filter_map(|(_, event)| match event {
                Event::CustomerMessageReceived {
                    provider_message_id,
                    body: MessageBody::Text(text),
                    ..
                } if *provider_message_id.expose() == webhook.provider_message_id => {
                    Some(text.expose().as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(texts, vec![ODD_TEXT], "{channel:?}");
        let opened = events.iter().find_map(|(_, event)| match event {
            Event::TicketOpened { customer: c, .. } if c.channel == channel => Some(c.clone()),
            _ => None,
        });
        let opened = opened.unwrap_or_else(|| panic!("{channel:?}: no TicketOpened"));
        assert_eq!(opened.contact.expose(), &customer);
    }
}

#[tokio::test]
async fn a_tampered_body_or_a_wrong_signature_is_refused_and_appends_nothing() {
    let h = Harness::start().await;
    for channel in CHANNELS {
        let webhook = h.sim.webhook(channel, &customer_id(channel, 2), "hallo");
        for forged in [webhook.tampered(), webhook.with_wrong_signature()] {
            let response = h.sim.deliver(&h.url, &forged).await.unwrap();
            assert_eq!(response.status, 401, "{channel:?}: {}", response.body);
        }
    }
    assert_eq!(h.events().await.len(), 0);
}

#[tokio::test]
async fn a_redelivered_message_is_answered_200_and_appends_nothing_new() {
    let h = Harness::start().await;
    for channel in CHANNELS {
        let webhook = h
            .sim
            .webhook(channel, &customer_id(channel, 3), "noch einmal");
        assert_eq!(h.sim.deliver(&h.url, &webhook).await.unwrap().status, 200);
        let before = h.events().await.len();
        for _ in 0..3 {
            let response = h.sim.deliver(&h.url, &webhook).await.unwrap();
            assert_eq!(response.status, 200, "{channel:?}");
        }
        assert_eq!(h.events().await.len(), before, "{channel:?}");
    }
}

#[tokio::test]
async fn the_same_message_delivered_five_times_at_once_is_appended_once() {
    let h = Harness::start().await;
    for channel in CHANNELS {
        let webhook = h
            .sim
            .webhook(channel, &customer_id(channel, 8), "ungeduldig");
        let deliveries = (0..5).map(|_| {
            let (sim, url, webhook) = (h.sim.clone(), h.url.clone(), webhook.clone());
            tokio::spawn(async move { sim.deliver(&url, &webhook).await.unwrap().status })
        });
        for delivery in futures::future::join_all(deliveries).await {
            assert_eq!(delivery.unwrap(), 200, "{channel:?}");
        }
        let copies = h
            .events()
            .await
            .into_iter()
            .filter(|(_, e)| matches!(e, Event::CustomerMessageReceived { provider_message_id, .. } if *provider_message_id.expose() == webhook.provider_message_id))
            .count();
        assert_eq!(copies, 1, "{channel:?}");
    }
}

#[tokio::test]
async fn a_hundred_first_messages_from_a_hundred_customers_open_a_hundred_tickets() {
    let h = Harness::start().await;
    for channel in CHANNELS {
        let deliveries = (0..100).map(|n| {
            let webhook =
                h.sim
                    .webhook(channel, &customer_id(channel, 1000 + n), "erste Nachricht");
            let (sim, url) = (h.sim.clone(), h.url.clone());
            tokio::spawn(async move { sim.deliver(&url, &webhook).await.unwrap().status })
        });
        for delivery in futures::future::join_all(deliveries).await {
            assert_eq!(delivery.unwrap(), 200, "{channel:?}");
        }
        let opened: HashSet<_> = h
            .events()
            .await
            .into_iter()
            .filter(|(_, e)| matches!(e, Event::TicketOpened { customer, .. } if customer.channel == channel))
            .map(|(ticket, _)| ticket)
            .collect();
        assert_eq!(opened.len(), 100, "{channel:?}");
    }
}

#[tokio::test]
async fn ten_racing_first_messages_from_one_customer_open_one_ticket() {
    let h = Harness::start().await;
    for channel in CHANNELS {
        let customer = customer_id(channel, 4);
        let deliveries = (0..10).map(|n| {
            let webhook = h.sim.webhook(channel, &customer, &format!("Nachricht {n}"));
            let (sim, url) = (h.sim.clone(), h.url.clone());
            tokio::spawn(async move { sim.deliver(&url, &webhook).await.unwrap().status })
        });
        for delivery in futures::future::join_all(deliveries).await {
            assert_eq!(delivery.unwrap(), 200, "{channel:?}");
        }
        let mut per_ticket: HashMap<_, (usize, usize)> = HashMap::new();
        for (ticket, event) in h.events().await {
            match event {
                Event::TicketOpened { customer: c, .. }
                    if c.channel == channel && *c.contact.expose() == customer =>
                {
                    per_ticket.entry(ticket).or_default().0 += 1
                }
                Event::CustomerMessageReceived { .. } => {
                    per_ticket.entry(ticket).or_default().1 += 1
                }
                _ => {}
            }
        }
        let tickets: Vec<_> = per_ticket
            .values()
            .filter(|(opened, _)| *opened > 0)
            .collect();
        assert_eq!(
            tickets,
            vec![&(1, 10)],
            "{channel:?}: one ticket holding all ten messages"
        );
    }
}

#[tokio::test]
async fn a_closed_ticket_is_not_reopened_the_next_message_opens_a_new_one() {
    let h = Harness::start().await;
    let channel = Channel::WebChat;
    let customer = customer_id(channel, 5);
    h.sim
        .deliver(&h.url, &h.sim.webhook(channel, &customer, "erste"))
        .await
        .unwrap();
    let first = h.events().await[0].0;
    h.close(first).await;

    let response = h
        .sim
        .deliver(&h.url, &h.sim.webhook(channel, &customer, "neue Frage"))
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let opened: Vec<_> = h
        .events()
        .await
        .into_iter()
        .filter(|(_, e)| matches!(e, Event::TicketOpened { .. }))
        .map(|(t, _)| t)
        .collect();
    assert_eq!(opened.len(), 2);
    assert_ne!(opened[0], opened[1]);
}

/// Messages the store's connection (which ingress writes through) sent to nats-server
/// while `f` ran: what one webhook costs.
async fn sent_during<T>(store: &EventStore, f: impl std::future::Future<Output = T>) -> (T, u64) {
    let sent = || {
        store
            .client()
            .statistics()
            .out_messages
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = sent();
    let result = f.await;
    (result, sent() - before)
}

#[tokio::test]
async fn a_new_customers_first_message_costs_one_write_and_so_does_each_next_message() {
    let h = Harness::routes_only(&IngressConfig::default()).await;
    // Another customer first, so that the store's watchers (customer keys) have started
    // and settled, and its first block of keys is made, before the count.
    for text in ["hallo", "noch da?"] {
        let warm_up = h
            .sim
            .webhook(Channel::WhatsApp, &customer_id(Channel::WhatsApp, 40), text);
        assert_eq!(h.sim.deliver(&h.url, &warm_up).await.unwrap().status, 200);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for channel in CHANNELS {
        let customer = customer_id(channel, 41);
        let first = h.sim.webhook(channel, &customer, "erste Nachricht");
        let (response, sent) = sent_during(&h.store, h.sim.deliver(&h.url, &first)).await;
        assert_eq!(response.unwrap().status, 200, "{channel:?}");
        // The ticket opened with the message in one append, sealed under a key made
        // ahead: the append binds it, no key of the customer's own is written.
        assert_eq!(sent, 1, "{channel:?}: messages to NATS for a new customer");
        for text in ["zweite", "dritte", "vierte", "fünfte"] {
            let next = h.sim.webhook(channel, &customer, text);
            let (response, sent) = sent_during(&h.store, h.sim.deliver(&h.url, &next)).await;
            assert_eq!(response.unwrap().status, 200, "{channel:?}");
            assert_eq!(
                sent, 1,
                "{channel:?}: messages to NATS for a known customer"
            );
        }
    }
}

#[tokio::test]
async fn a_returning_customer_reaches_their_current_ticket_through_any_process() {
    let h = Harness::routes_only(&IngressConfig::default()).await;
    // A second ingress process on the same log, which has never seen the customer.
    let other = h.another_ingress().await;
    let channel = Channel::Telegram;
    let customer = customer_id(channel, 42);
    let say = |url: &str, text: &str| {
        let (sim, url, webhook) = (
            h.sim.clone(),
            url.to_owned(),
            h.sim.webhook(channel, &customer, text),
        );
        async move { assert_eq!(sim.deliver(&url, &webhook).await.unwrap().status, 200) }
    };
    let ticket_of = |events: &[(TicketId, Event)], text: &str| {
        events
            .iter()
            .find_map(|(ticket, event)| match event {
                Event::CustomerMessageReceived {
                    body: MessageBody::Text(t),
                    ..
                } if t.expose() == text => Some(*ticket),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{text:?} is not in the log"))
    };

    say(&h.url, "eins").await;
    let first = ticket_of(&h.events().await, "eins");
    h.close(first).await;
    say(&h.url, "zwei").await;
    say(&other, "drei").await;
    let events = h.events().await;
    let second = ticket_of(&events, "zwei");
    assert_ne!(second, first, "a closed ticket takes no more messages");
    assert_eq!(
        ticket_of(&events, "drei"),
        second,
        "the other process finds the current ticket"
    );

    h.close(second).await;
    say(&other, "vier").await;
    say(&h.url, "fünf").await;
    let events = h.events().await;
    let third = ticket_of(&events, "vier");
    assert!(third != first && third != second);
    assert_eq!(
        ticket_of(&events, "fünf"),
        third,
        "the first process moves on too"
    );
    let opened = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::TicketOpened { .. }))
        .count();
    assert_eq!(opened, 3, "one ticket per conversation");
}

#[tokio::test]
async fn meta_handshakes_echo_the_challenge_only_for_the_right_token() {
    let h = Harness::start().await;
    let client = reqwest::Client::new();
    for (channel, token) in [
        ("whatsapp", h.sim.config().whatsapp.verify_token.clone()),
        ("messenger", h.sim.config().messenger.verify_token.clone()),
    ] {
        let url = format!(
            "{}/webhooks/{channel}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444",
            h.url
        );
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "1158201444");

        let url = format!(
            "{}/webhooks/{channel}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            h.url
        );
        assert_eq!(client.get(url).send().await.unwrap().status(), 401);
    }
}

#[tokio::test]
async fn a_read_receipt_for_a_delivered_message_is_recorded_once() {
    let h = Harness::start().await;
    let egress = h.start_egress();
    for (n, channel) in (20..).zip(RECEIPT_CHANNELS) {
        let customer = customer_id(channel, n);
        let (ticket, message, provider_id) = h.reply_delivered(channel, &customer).await;
        let before = h.ticket_events(ticket).await;

        // Egress recorded the delivery when the provider accepted the message.
        let delivered =
            h.sim
                .webhook_receipt(channel, &customer, &provider_id, ReceiptKind::Delivered);
        let response = h.sim.deliver(&h.url, &delivered).await.unwrap();
        assert_eq!(response.status, 200, "{channel:?}: {}", response.body);
        assert_eq!(h.ticket_events(ticket).await, before, "{channel:?}");

        let read = h
            .sim
            .webhook_receipt(channel, &customer, &provider_id, ReceiptKind::Read);
        let response = h.sim.deliver(&h.url, &read).await.unwrap();
        assert_eq!(response.status, 200, "{channel:?}: {}", response.body);
        let after = h.ticket_events(ticket).await;
        let expected = Event::MessageRead {
            message,
            provider_message_id: provider_id.clone().into(),
        };
        assert_eq!(after[..before.len()], before[..], "{channel:?}");
        assert_eq!(after[before.len()..], [expected], "{channel:?}");

        for _ in 0..2 {
            let response = h.sim.deliver(&h.url, &read).await.unwrap();
            assert_eq!(response.status, 200, "{channel:?}: {}", response.body);
        }
        assert_eq!(
            h.ticket_events(ticket).await,
            after,
            "{channel:?}: redelivered"
        );
    }
    egress.stop().await;
}

#[tokio::test]
async fn a_receipt_for_a_message_sent_before_entries_were_keyed_finds_it_by_the_earlier_key() {
    let h = Harness::start().await;
    let egress = h.start_egress();
    let customer = customer_id(Channel::WhatsApp, 45);
    let (ticket, message, provider_id) = h.reply_delivered(Channel::WhatsApp, &customer).await;
    egress.stop().await;
    // What an earlier egress left: the entry under the plain SHA-256 of the provider's id.
    let bucket = h
        .store
        .jetstream()
        .get_key_value(helpline_eventstore::outbound::outbound_bucket(
            h.store.layout(),
        ))
        .await
        .unwrap();
    let keyed = helpline_eventstore::outbound::provider_key(
        Channel::WhatsApp,
        &h.store.provider_ref(Channel::WhatsApp, &provider_id),
    );
    let entry = bucket.get(&keyed).await.unwrap().unwrap();
    bucket.purge(&keyed).await.unwrap();
    let earlier = format!(
        "provider.whatsapp.{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            provider_id.as_bytes()
        ))
    );
    bucket.put(&earlier, entry).await.unwrap();

    let read = h.sim.webhook_receipt(
        Channel::WhatsApp,
        &customer,
        &provider_id,
        ReceiptKind::Read,
    );
    let response = h.sim.deliver(&h.url, &read).await.unwrap();
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(h.ticket_events(ticket).await.contains(&Event::MessageRead {
        message,
        provider_message_id: provider_id.clone().into(),
    }));
}

#[tokio::test]
async fn a_receipt_for_an_unknown_message_is_answered_200_and_appends_nothing() {
    let h = Harness::start().await;
    let unknown = [
        (
            Channel::WhatsApp,
            "wamid.HBgLNDkxNTE1NTUxMjM0FQIAERgSNkI3QTQ1RkQ0QTVDM0E2RTUA",
        ),
        (Channel::Viber, "5494865451283737000"),
        (Channel::WebChat, "out_0192f0c1-3b20-7abc-9def-0123456789ab"),
    ];
    for (channel, provider_id) in unknown {
        let customer = customer_id(channel, 30);
        for kind in [ReceiptKind::Read, ReceiptKind::Delivered] {
            let webhook = h.sim.webhook_receipt(channel, &customer, provider_id, kind);
            let response = h.sim.deliver(&h.url, &webhook).await.unwrap();
            assert_eq!(
                response.status, 200,
                "{channel:?} {kind:?}: {}",
                response.body
            );
        }
    }
    let read = h.sim.webhook_receipt(
        Channel::WhatsApp,
        &customer_id(Channel::WhatsApp, 30),
        unknown[0].1,
        ReceiptKind::Read,
    );
    let failed = whatsapp_failed(&h.sim, &read, 131026, "Message undeliverable");
    assert_eq!(h.sim.deliver(&h.url, &failed).await.unwrap().status, 200);
    assert_eq!(h.events().await, []);
}

#[tokio::test]
async fn a_whatsapp_failed_status_records_a_permanent_failure_with_the_providers_reason() {
    let h = Harness::start().await;
    let egress = h.start_egress();
    let customer = customer_id(Channel::WhatsApp, 40);
    let (ticket, message, provider_id) = h.reply_delivered(Channel::WhatsApp, &customer).await;
    let read = h.sim.webhook_receipt(
        Channel::WhatsApp,
        &customer,
        &provider_id,
        ReceiptKind::Read,
    );
    let failed = whatsapp_failed(&h.sim, &read, 131026, "Message undeliverable");
    for _ in 0..2 {
        let response = h.sim.deliver(&h.url, &failed).await.unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let failures: Vec<Event> = h
        .ticket_events(ticket)
        .await
        .into_iter()
        .filter(|event| matches!(event, Event::MessageDeliveryFailed { .. }))
        .collect();
    assert_eq!(
        failures,
        [Event::MessageDeliveryFailed {
            message,
            reason: "131026 Message undeliverable".into(),
            permanent: true,
        }]
    );
    egress.stop().await;
}

#[tokio::test]
async fn two_web_chat_sessions_may_use_the_same_message_id() {
    let h = Harness::routes_only(&IngressConfig::default()).await;
    let secret = h.sim.config().web.shared_secret.clone();
    // The site numbers messages per session: both sessions send their `msg_1`.
    let mut texts = Vec::new();
    for (n, text) in [(60, "Erste Sitzung"), (61, "Zweite Sitzung")] {
        let mut webhook = h
            .sim
            .webhook(Channel::WebChat, &customer_id(Channel::WebChat, n), text);
        let mut body: serde_json::Value = serde_json::from_slice(&webhook.body).unwrap();
        body["message"]["id"] = serde_json::json!("msg_1");
        webhook.body = serde_json::to_vec(&body).unwrap();
        for (name, value) in &mut webhook.headers {
            if name.eq_ignore_ascii_case("X-Helpline-Signature") {
                *value = format!("sha256={}", hmac_hex(&secret, &webhook.body));
            }
        }
        let response = h.sim.deliver(&h.url, &webhook).await.unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
        texts.push(text);
    }
    let received: Vec<String> = h
        .events()
        .await
        .into_iter()
        .filter_map(|(_, event)| match event {
            Event::CustomerMessageReceived {
                body: MessageBody::Text(text),
                ..
            } => Some(text.expose().clone()),
            _ => None,
        })
        .collect();
    assert_eq!(received, texts, "both sessions' messages were taken");
}

/// Apple's rule: after the customer closed (deleted) the conversation, nothing is sent to
/// them until they write again. The next bot message fails for good without a request to
/// Apple, so the agent sees why; the customer's next message opens the conversation again.
#[tokio::test]
async fn after_an_apple_customer_closes_the_conversation_nothing_is_sent_until_they_write() {
    let h = Harness::start().await;
    let egress = h.start_egress();
    let apple = Channel::AppleMessages;
    let customer = customer_id(apple, 70);
    let (ticket, _, _) = h.reply_delivered(apple, &customer).await;
    let got = || h.sim.received(apple, &customer).len();
    assert_eq!(got(), 1);
    let close = h.sim.apple_close_webhook(&customer);
    for _ in 0..2 {
        let response = h.sim.deliver(&h.url, &close).await.unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let closings = |events: &[Event]| {
        events
            .iter()
            .filter(|event| matches!(event, Event::ConversationClosedByCustomer))
            .count()
    };
    assert_eq!(
        closings(&h.ticket_events(ticket).await),
        1,
        "a redelivery adds nothing"
    );

    let message = helpline_domain::MessageId(uuid::Uuid::now_v7());
    h.append(
        ticket,
        Event::BotMessageSent {
            message,
            body: MessageBody::Text(helpline_domain::Personal::new("Noch da?".to_owned())),
            prompt: "test".to_owned(),
            choices: Vec::new(),
        },
    )
    .await;
    let mut failed = None;
    for _ in 0..200 {
        failed = h
            .ticket_events(ticket)
            .await
            .into_iter()
            .find_map(|event| match event {
                Event::MessageDeliveryFailed {
                    message: m,
                    reason,
                    permanent,
                } if m == message => Some((reason.expose().clone(), permanent)),
                _ => None,
            });
        if failed.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (reason, permanent) = failed.expect("the message is recorded as not sent");
    assert!(permanent);
    assert!(reason.contains("closed the conversation"), "{reason}");
    assert_eq!(got(), 1, "no request reached Apple");

    // The customer writes again: the conversation is open, the next message goes out.
    let again = h.sim.webhook(apple, &customer, "Doch, noch eine Frage");
    assert_eq!(h.sim.deliver(&h.url, &again).await.unwrap().status, 200);
    h.bot_says(ticket, "Gern, worum geht es?", "test", Vec::new())
        .await;
    assert_eq!(got(), 2);
    egress.stop().await;
}
