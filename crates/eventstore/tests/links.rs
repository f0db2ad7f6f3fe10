//! One customer across channels, in the store: each contact's link ledger is sealed under
//! its own key, a link is written on both sides, the group is read back from either one,
//! and an erased contact's ledger no longer links anyone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use helpline_domain::link::{LinkError, LinkedBy};
use helpline_domain::{AgentId, Channel, Customer, Event, Personal};
use helpline_eventstore::links::{LinkOutcome, LinkStoreError, LinkedContact};
use helpline_eventstore::{CustomerId, EventStore};
use support::*;

const PHONE: &str = "4915112345678";
const SESSION: &str = "sess_anna";

fn anna() -> LinkedBy {
    LinkedBy::Agent(AgentId("anna".to_owned()))
}

/// A contact that wrote once (so it has a data key): its pseudonym and channel.
async fn contact_who_wrote(store: &EventStore, channel: Channel, address: &str) -> LinkedContact {
    let id = ticket();
    let opened = Event::TicketOpened {
        ticket: id,
        customer: Customer {
            channel,
            contact: Personal::new(address.to_owned()),
            display_name: None,
        },
        language: "de".to_owned(),
    };
    let version = store
        .append(id, 0, &[opened], &command())
        .await
        .unwrap()
        .version;
    say(store, id, version, &["hallo"]).await;
    LinkedContact {
        customer: store.customer_id(channel, address),
        channel,
    }
}

fn members(group: &helpline_domain::link::Group<CustomerId>) -> Vec<CustomerId> {
    group.members().cloned().collect()
}

#[tokio::test]
async fn a_link_is_written_on_both_sides_and_the_group_is_the_same_from_either() {
    let h = harness().await;
    let whatsapp = contact_who_wrote(&h.store, Channel::WhatsApp, PHONE).await;
    let web = contact_who_wrote(&h.store, Channel::WebChat, SESSION).await;

    let outcome = h
        .store
        .link_contacts(&whatsapp, &web, &anna())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        LinkOutcome {
            first_changed: true,
            second_changed: true
        }
    );
    let from_whatsapp = h.store.linked_group(&whatsapp.customer).await.unwrap();
    assert_eq!(
        members(&from_whatsapp),
        [whatsapp.customer.clone(), web.customer.clone()]
    );
    assert_eq!(
        from_whatsapp.members_with_channels()[1].1,
        Some(Channel::WebChat)
    );
    let from_web = h.store.linked_group(&web.customer).await.unwrap();
    assert_eq!(
        members(&from_web),
        [web.customer.clone(), whatsapp.customer.clone()]
    );

    // Asked again: nothing more is written.
    let sequence = h.store.links(&whatsapp.customer).await.unwrap().sequence;
    let again = h
        .store
        .link_contacts(&whatsapp, &web, &anna())
        .await
        .unwrap();
    assert_eq!(
        again,
        LinkOutcome {
            first_changed: false,
            second_changed: false
        }
    );
    assert_eq!(
        h.store.links(&whatsapp.customer).await.unwrap().sequence,
        sequence
    );
}

#[tokio::test]
async fn the_ledger_names_no_contact_in_plaintext() {
    let h = harness().await;
    let whatsapp = contact_who_wrote(&h.store, Channel::WhatsApp, PHONE).await;
    let web = contact_who_wrote(&h.store, Channel::WebChat, SESSION).await;
    h.store
        .link_contacts(&whatsapp, &web, &anna())
        .await
        .unwrap();

    let stream = h
        .store
        .jetstream()
        .get_stream(h.store.layout().event_stream())
        .await
        .unwrap();
    let stored = stream
        .direct_get_last_for_subject(h.store.layout().links_subject(&whatsapp.customer))
        .await
        .unwrap();
    let payload = stored.payload.as_ref();
    // The other contact's pseudonym is inside the sealed value only: the subject names
    // the ledger's own contact, nothing names the one it is linked to.
    let other = web.customer.as_str().as_bytes();
    assert!(!payload.windows(other.len()).any(|w| w == other));
    assert!(
        !payload
            .windows(SESSION.len())
            .any(|w| w == SESSION.as_bytes())
    );
}

#[tokio::test]
async fn unlinking_takes_the_link_back_from_both_sides() {
    let h = harness().await;
    let whatsapp = contact_who_wrote(&h.store, Channel::WhatsApp, PHONE).await;
    let web = contact_who_wrote(&h.store, Channel::WebChat, SESSION).await;
    let telegram = contact_who_wrote(&h.store, Channel::Telegram, "777001").await;
    h.store
        .link_contacts(&whatsapp, &web, &anna())
        .await
        .unwrap();
    h.store
        .link_contacts(&web, &telegram, &anna())
        .await
        .unwrap();
    assert_eq!(
        h.store
            .linked_group(&whatsapp.customer)
            .await
            .unwrap()
            .len(),
        3
    );

    let outcome = h
        .store
        .unlink_contacts(&web, &whatsapp, &anna())
        .await
        .unwrap();
    assert!(outcome.first_changed && outcome.second_changed);
    assert_eq!(
        members(&h.store.linked_group(&whatsapp.customer).await.unwrap()),
        vec![whatsapp.customer.clone()]
    );
    assert_eq!(
        members(&h.store.linked_group(&web.customer).await.unwrap()),
        [web.customer.clone(), telegram.customer.clone()]
    );
}

#[tokio::test]
async fn a_contact_that_never_wrote_or_itself_cannot_be_linked() {
    let h = harness().await;
    let whatsapp = contact_who_wrote(&h.store, Channel::WhatsApp, PHONE).await;
    let stranger = LinkedContact {
        customer: h.store.customer_id(Channel::WebChat, "sess_nobody"),
        channel: Channel::WebChat,
    };
    let refused = h.store.link_contacts(&whatsapp, &stranger, &anna()).await;
    assert!(
        matches!(&refused, Err(LinkStoreError::NoKey(c)) if *c == stranger.customer),
        "{refused:?}"
    );
    let refused = h.store.link_contacts(&whatsapp, &whatsapp, &anna()).await;
    assert!(
        matches!(
            refused,
            Err(LinkStoreError::Refused(LinkError::SameContact))
        ),
        "{refused:?}"
    );
    // Nothing was written for either.
    assert_eq!(h.store.links(&whatsapp.customer).await.unwrap().sequence, 0);
}

#[tokio::test]
async fn an_erased_contact_links_nobody_even_when_it_writes_again() {
    let h = harness().await;
    let whatsapp = contact_who_wrote(&h.store, Channel::WhatsApp, PHONE).await;
    let web = contact_who_wrote(&h.store, Channel::WebChat, SESSION).await;
    h.store
        .link_contacts(&whatsapp, &web, &anna())
        .await
        .unwrap();

    h.store
        .erase_customer_key(&whatsapp.customer)
        .await
        .unwrap();
    h.store.erase_customer_key(&web.customer).await.unwrap();
    let erased = h.store.links(&whatsapp.customer).await.unwrap();
    assert!(erased.links.linked().is_empty());
    assert!(erased.sequence > 0, "the ledger is still there, unreadable");

    // The same number writes again: a new key, and its old ledger does not open under it.
    contact_who_wrote(&h.store, Channel::WhatsApp, PHONE).await;
    assert_eq!(
        members(&h.store.linked_group(&whatsapp.customer).await.unwrap()),
        vec![whatsapp.customer.clone()]
    );
}
