//! Erasure of a customer linked across contacts, on a real store: every contact of the
//! group is erased, and an erasure interrupted after its farthest contact is finished by
//! asking again, because the links that lead to what is left are still readable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::SystemTime;

use helpline_domain::link::LinkedBy;
use helpline_domain::{
    AgentId, Channel, Customer, Event, MessageBody, MessageId, Personal, TicketId,
};
use helpline_eventstore::links::LinkedContact;
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_privacy::{Privacy, Reason};
use helpline_testkit::NatsServer;
use uuid::Uuid;

/// A ticket of `address` on `channel` with one message from them; their contact.
async fn writes(store: &EventStore, channel: Channel, address: &str) -> (LinkedContact, TicketId) {
    let id = TicketId(Uuid::now_v7());
    let events = [
        Event::TicketOpened {
            ticket: id,
            customer: Customer {
                channel,
                contact: Personal::from(address),
                display_name: None,
            },
            language: "de".to_owned(),
        },
        Event::CustomerMessageReceived {
            message: MessageId(Uuid::now_v7()),
            provider_message_id: format!("m.{}", Uuid::now_v7().simple()).into(),
            body: MessageBody::Text(Personal::from("Mein Akku ist leer")),
        },
    ];
    let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
    store.append(id, 0, &events, &meta).await.unwrap();
    let contact = LinkedContact {
        customer: store.customer_id(channel, address),
        channel,
    };
    (contact, id)
}

#[tokio::test]
async fn an_interrupted_erasure_of_a_linked_customer_is_finished_by_asking_again() {
    let nats = NatsServer::start().await.unwrap();
    let store = EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
        .await
        .unwrap();
    // WhatsApp ↔ web chat ↔ Telegram, linked by an agent.
    let (whatsapp, _) = writes(&store, Channel::WhatsApp, "4915100000001").await;
    let (web, web_ticket) = writes(&store, Channel::WebChat, "sess_linked").await;
    let (telegram, telegram_ticket) = writes(&store, Channel::Telegram, "700100").await;
    let anna = LinkedBy::Agent(AgentId::new("anna"));
    store.link_contacts(&whatsapp, &web, &anna).await.unwrap();
    store.link_contacts(&web, &telegram, &anna).await.unwrap();
    let privacy = Privacy::new(store.clone());

    // An erasure asked by the WhatsApp number starts with the farthest contact, Telegram,
    // and dies right after purging its key: nothing else happened.
    assert!(store.erase_customer_key(&telegram.customer).await.unwrap());

    // Asked again, it still reaches Telegram through web chat's ledger (web chat's key is
    // there), erases its ticket, and the rest.
    let erasure = privacy
        .erase(&whatsapp.customer, Reason::Request)
        .await
        .unwrap();
    assert_eq!(
        erasure.linked,
        [web.customer.clone(), telegram.customer.clone()]
    );
    assert_eq!(erasure.tickets.len(), 3);
    assert_eq!(erasure.tickets_newly_erased, 3);
    for contact in [&whatsapp, &web, &telegram] {
        assert!(!store.customer_has_key(&contact.customer).await.unwrap());
    }
    for ticket in [web_ticket, telegram_ticket] {
        let events = store.ticket_events(ticket).await.unwrap();
        assert!(
            events
                .iter()
                .any(|(_, _, e)| matches!(e, Event::CustomerErased))
        );
    }

    // Once every key is gone the links are shredded with them: asked once more, the
    // WhatsApp contact is on its own, and nothing is newly erased.
    let again = privacy
        .erase(&whatsapp.customer, Reason::Request)
        .await
        .unwrap();
    assert!(again.linked.is_empty());
    assert_eq!(again.tickets_newly_erased, 0);
}
