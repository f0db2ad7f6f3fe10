//! Intake on a real store: a customer is one customer whichever way their provider
//! spells their address.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use helpline_domain::{Channel, Personal};
use helpline_eventstore::{EventStore, StoreConfig};
use helpline_ingress::intake::{Intake, Taken};
use helpline_ingress::{InboundContent, InboundMessage};
use helpline_testkit::NatsServer;

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
