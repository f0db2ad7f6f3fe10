//! Intake on a real store: a customer is one customer whichever way their provider
//! spells their address, and a provider's id of a message is named only by pseudonyms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use helpline_domain::{Channel, Event, MessageBody, MessageId, Personal};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_ingress::intake::{Intake, Taken};
use helpline_ingress::{InboundContent, InboundMessage};
use helpline_testkit::NatsServer;
use uuid::Uuid;

/// The number as WhatsApp's webhooks send it.
const WA_ID: &str = "4915112345678";

fn message(provider_message_id: &str, contact: &str) -> InboundMessage {
    InboundMessage {
        provider_message_id: provider_message_id.to_owned(),
        contact: Personal::new(contact.to_owned()),
        display_name: None,
        sent_at_unix: None,
        content: InboundContent::Text(Personal::new("Mein Akku ist leer".to_owned())),
        account: None,
        language: None,
        entry_point: None,
    }
}

#[tokio::test]
async fn every_spelling_of_a_whatsapp_number_writes_to_the_ticket_of_the_number_whatsapp_sends() {
    let nats = NatsServer::start().await.unwrap();
    let store = EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
        .await
        .unwrap();
    let intake = Intake::new(store.clone(), "de".to_owned()).await.unwrap();

    let mut tickets = Vec::new();
    for (n, spelled) in [WA_ID, "+4915112345678", " +49 151 123-456-78 "]
        .into_iter()
        .enumerate()
    {
        match intake
            .take(Channel::WhatsApp, message(&format!("wamid.{n}"), spelled))
            .await
            .unwrap()
        {
            Taken::Appended { ticket, .. } => tickets.push(ticket),
            other => panic!("{spelled:?}: {other:?}"),
        }
    }
    assert!(tickets.iter().all(|t| *t == tickets[0]), "{tickets:?}");

    // Stored as WhatsApp sends it, under the pseudonym of that form.
    let loaded = store.load_from_log(tickets[0]).await.unwrap();
    let customer = loaded.ticket.customer.unwrap();
    assert_eq!(customer.contact.expose(), WA_ID);
    assert_eq!(loaded.ticket.received.len(), 3);
    let customer_id = store.customer_id(Channel::WhatsApp, WA_ID);
    assert!(store.customer_has_key(&customer_id).await.unwrap());

    // An address no WhatsApp customer has is refused, and nothing is appended.
    let stored = || async {
        let mut stream = store.jetstream().get_stream("HELPLINE_DE").await.unwrap();
        stream.info().await.unwrap().state.messages
    };
    let before = stored().await;
    for refused in ["0151 12345678", "anna", ""] {
        let taken = intake
            .take(Channel::WhatsApp, message("wamid.x", refused))
            .await
            .unwrap();
        assert_eq!(taken, Taken::Refused, "{refused:?}");
    }
    assert_eq!(stored().await, before);
}

#[tokio::test]
async fn a_message_is_named_by_pseudonyms_of_the_provider_s_id_and_one_taken_before_them_dedupes() {
    let nats = NatsServer::start().await.unwrap();
    let store = EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
        .await
        .unwrap();
    let intake = Intake::new(store.clone(), "de".to_owned()).await.unwrap();
    // A wamid as WhatsApp makes them: the customer's number, base64-encoded, inside.
    let wamid = "wamid.HBgNNDkxNTExMjM0NTY3OBUCABIYFDNBQjFDMkQzRTRGNTA2MTcyODM5AA==";
    let Taken::Appended { ticket, version } = intake
        .take(Channel::WhatsApp, message(wamid, WA_ID))
        .await
        .unwrap()
    else {
        panic!("not appended");
    };
    let provider = store.provider_ref(Channel::WhatsApp, wamid);
    let events = store.ticket_events(ticket).await.unwrap();
    let (_, meta, received) = events.last().unwrap();
    let Event::CustomerMessageReceived {
        message: id,
        provider_message_id,
        ..
    } = received
    else {
        panic!("{received:?}");
    };
    assert_eq!(provider_message_id.expose(), wamid, "opened with the key");
    assert_eq!(meta.causation_id, format!("whatsapp:{provider}"));
    assert_ne!(*id, earlier_message_id(wamid));
    // Stored, the id is sealed: not in the payload, a header or the subject.
    let stream = store.jetstream().get_stream("HELPLINE_DE").await.unwrap();
    let stored = stream.get_raw_message(version).await.unwrap();
    let mut bytes = stored.payload.to_vec();
    bytes.extend_from_slice(stored.subject.as_bytes());
    for (_, values) in stored.headers.iter() {
        for value in values {
            bytes.extend_from_slice(value.as_str().as_bytes());
        }
    }
    for secret in [wamid, "HBgNNDkxNTE"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
    }
    assert_eq!(
        intake
            .take(Channel::WhatsApp, message(wamid, WA_ID))
            .await
            .unwrap(),
        Taken::Duplicate
    );

    // A message an earlier version took, under the id it derived from the provider's id
    // itself, and the provider delivers again.
    let older = "wamid.HBgNNDkxNTExMjM0NTY3OBUCABIYFDk5OTlDMkQzRTRGNTA2MTcyODM5AA==";
    let taken_then = Event::CustomerMessageReceived {
        message: earlier_message_id(older),
        provider_message_id: older.into(),
        body: MessageBody::Text("Mein Akku ist leer".into()),
    };
    let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
    store
        .append(ticket, version, &[taken_then], &meta)
        .await
        .unwrap();
    assert_eq!(
        intake
            .take(Channel::WhatsApp, message(older, WA_ID))
            .await
            .unwrap(),
        Taken::Duplicate
    );
    let received = store.load_from_log(ticket).await.unwrap().ticket.received;
    assert_eq!(received.len(), 2);
}

/// The message id earlier versions derived from the provider's id itself.
fn earlier_message_id(provider_message_id: &str) -> MessageId {
    let namespace = Uuid::from_u128(0x6865_6c70_6c69_6e65_2d69_6e67_7265_7373);
    MessageId(Uuid::new_v5(
        &namespace,
        format!("message:whatsapp:{provider_message_id}").as_bytes(),
    ))
}

#[tokio::test]
async fn a_new_ticket_is_served_in_the_customers_own_language_when_the_region_serves_it() {
    let nats = NatsServer::start().await.unwrap();
    let store = EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
        .await
        .unwrap();
    let intake = Intake::new(store.clone(), "de".to_owned())
        .await
        .unwrap()
        .serving(vec!["de".to_owned(), "en".to_owned()]);
    for (n, (named, served)) in [(Some("en"), "en"), (Some("ja"), "de"), (None, "de")]
        .into_iter()
        .enumerate()
    {
        let message = InboundMessage {
            language: named.map(str::to_owned),
            ..message(&format!("msg-{n}"), &format!("urn:mbid:AQAAY{n}"))
        };
        let Taken::Appended { ticket, .. } =
            intake.take(Channel::AppleMessages, message).await.unwrap()
        else {
            panic!("{named:?}: not appended");
        };
        let loaded = store.load_from_log(ticket).await.unwrap();
        assert_eq!(loaded.ticket.language, served, "{named:?}");
    }
}

#[tokio::test]
async fn the_entry_point_a_customer_came_by_is_noted_with_the_opening_once() {
    let nats = NatsServer::start().await.unwrap();
    let store = EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
        .await
        .unwrap();
    let intake = Intake::new(store.clone(), "de".to_owned()).await.unwrap();
    let from_button = |id: &str| InboundMessage {
        entry_point: Some(helpline_domain::EntryPoint {
            intent: "repair_status".to_owned(),
            group: "laptops".to_owned(),
        }),
        ..message(id, "urn:mbid:AQAAY-button")
    };
    let mut ticket = None;
    for id in ["first", "second"] {
        let Taken::Appended { ticket: t, .. } = intake
            .take(Channel::AppleMessages, from_button(id))
            .await
            .unwrap()
        else {
            panic!("{id}: not appended");
        };
        ticket = Some(t);
    }
    let loaded = store.load_from_log(ticket.unwrap()).await.unwrap();
    assert_eq!(
        loaded.ticket.entry_point,
        Some(helpline_domain::EntryPoint {
            intent: "repair_status".to_owned(),
            group: "laptops".to_owned(),
        })
    );
    assert_eq!(loaded.ticket.received.len(), 2, "both messages taken");
}
