//! The Privacy API through a real tonic client on a random port, on a real store: a
//! customer is found by any spelling of their contact, a contact that names nobody is
//! `NOT_FOUND`, and one the channel could not have is `INVALID_ARGUMENT`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::SystemTime;

use helpline_domain::{Channel, Customer, Event, MessageBody, MessageId, Personal, TicketId};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_privacy::Privacy;
use helpline_proto::v1 as pb;
use helpline_proto::v1::privacy_client::PrivacyClient;
use helpline_region::{RegionConfig, Role};
use helpline_testkit::NatsServer;
use helpline_testkit::bearer::{Bearer, test_key};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel as GrpcChannel, Server, server::TcpIncoming};
use tonic::{Code, Status};
use uuid::Uuid;

/// The customer's number as WhatsApp's webhooks send it, and so as it is stored.
const WA_ID: &str = "4915112345678";
const TEXT: &str = "Mein Akku ist nach dem Update leer";

type Client = PrivacyClient<InterceptedService<GrpcChannel, Bearer>>;

struct Harness {
    _nats: NatsServer,
    store: EventStore,
    client: Client,
    /// Stops the server when the test ends.
    _server: tokio_util::sync::DropGuard,
}

impl Harness {
    /// A store with one WhatsApp customer, who wrote from [`WA_ID`], and the Privacy API
    /// on it, called as the region's admin.
    async fn start() -> (Harness, TicketId) {
        let nats = NatsServer::start().await.unwrap();
        let store = EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
            .await
            .unwrap();
        let ticket = customer_wrote(&store, Channel::WhatsApp, WA_ID).await;
        let region = RegionConfig::from_region_file(include_str!(
            "../../../deploy/k8s/overlays/de/helpline.toml"
        ))
        .unwrap();
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = incoming.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(
            Server::builder()
                .add_service(helpline_privacy::grpc_service(
                    Privacy::new(store.clone()),
                    test_key(),
                    Arc::new(region),
                ))
                .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
        );
        let channel = GrpcChannel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let client = PrivacyClient::with_interceptor(
            channel,
            Bearer::new("ops-admin", Role::Admin).unwrap(),
        );
        let harness = Harness {
            _nats: nats,
            store,
            client,
            _server: shutdown.drop_guard(),
        };
        (harness, ticket)
    }

    async fn export(&mut self, channel: pb::Channel, contact: &str) -> Result<String, Status> {
        let request = pb::ExportCustomerRequest {
            customer: by_contact(channel, contact),
        };
        let export = self.client.export_customer(request).await?.into_inner();
        assert_eq!(
            export.customer_id,
            self.store.customer_id(Channel::WhatsApp, WA_ID).to_string(),
            "{contact:?} named someone else"
        );
        Ok(export.json)
    }

    async fn erase(
        &mut self,
        channel: pb::Channel,
        contact: &str,
    ) -> Result<pb::EraseCustomerResponse, Status> {
        let request = pb::EraseCustomerRequest {
            customer: by_contact(channel, contact),
        };
        Ok(self.client.erase_customer(request).await?.into_inner())
    }
}

fn by_contact(channel: pb::Channel, contact: &str) -> Option<pb::CustomerRef> {
    Some(pb::CustomerRef {
        customer: Some(pb::customer_ref::Customer::Contact(pb::Contact {
            channel: channel.into(),
            address: contact.to_owned(),
        })),
    })
}

/// A ticket opened by `contact`, who wrote [`TEXT`], as intake appends it.
async fn customer_wrote(store: &EventStore, channel: Channel, contact: &str) -> TicketId {
    let id = TicketId(Uuid::now_v7());
    let events = [
        Event::TicketOpened {
            ticket: id,
            customer: Customer {
                channel,
                contact: Personal::from(contact),
                display_name: Some(Personal::from("Kim Wagner")),
            },
            language: "de".to_owned(),
        },
        Event::CustomerMessageReceived {
            message: MessageId(Uuid::now_v7()),
            provider_message_id: format!("wamid.{}", Uuid::now_v7().simple()).into(),
            body: MessageBody::Text(Personal::from(TEXT)),
        },
    ];
    let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
    store.append(id, 0, &events, &meta).await.unwrap();
    id
}

#[tokio::test]
async fn a_whatsapp_customer_is_exported_and_erased_by_any_spelling_of_their_number() {
    let (mut h, ticket) = Harness::start().await;
    for spelled in [
        WA_ID,
        "+4915112345678",
        "0049 151 12345678",
        "+49 (151) 123-456-78",
    ] {
        let json = h.export(pb::Channel::Whatsapp, spelled).await.unwrap();
        assert!(json.contains(TEXT), "{spelled:?}: {json}");
    }

    let erased = h
        .erase(pb::Channel::Whatsapp, "+49 (151) 123-456-78")
        .await
        .unwrap();
    assert_eq!(erased.ticket_ids, [ticket.to_string()]);
    assert!(erased.key_purged);
    assert_eq!(erased.tickets_newly_erased, 1);

    // Erasing again, by yet another spelling, finds the erased customer and changes
    // nothing.
    let again = h
        .erase(pb::Channel::Whatsapp, "0049 151 12345678")
        .await
        .unwrap();
    assert_eq!(again.ticket_ids, [ticket.to_string()]);
    assert!(!again.key_purged);
    assert_eq!(again.tickets_newly_erased, 0);

    // What is left holds nothing of theirs.
    let json = h
        .export(pb::Channel::Whatsapp, "+4915112345678")
        .await
        .unwrap();
    for personal in [WA_ID, TEXT, "Kim Wagner"] {
        assert!(!json.contains(personal), "{personal:?} in {json}");
    }
    assert!(json.contains("[erased]"), "{json}");
}

#[tokio::test]
async fn a_contact_that_names_no_customer_is_not_found_and_erases_nothing() {
    let (mut h, ticket) = Harness::start().await;
    let nobody = [
        (pb::Channel::Whatsapp, "+49 151 99999999"),
        // The same number on another channel is another customer.
        (pb::Channel::Telegram, WA_ID),
        (pb::Channel::Viber, "+4915112345678"),
    ];
    for (channel, contact) in nobody {
        let refused = h.erase(channel, contact).await.unwrap_err();
        assert_eq!(refused.code(), Code::NotFound, "{channel:?} {contact:?}");
        assert!(
            refused.message().contains("no ticket and no data key"),
            "{refused:?}"
        );
        let refused = h.export(channel, contact).await.unwrap_err();
        assert_eq!(refused.code(), Code::NotFound, "{channel:?} {contact:?}");
    }
    let unknown = pb::EraseCustomerRequest {
        customer: Some(pb::CustomerRef {
            customer: Some(pb::customer_ref::Customer::CustomerId(
                Uuid::now_v7().simple().to_string(),
            )),
        }),
    };
    let refused = h.client.erase_customer(unknown).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);

    // The customer who is there kept everything.
    let customer = h.store.customer_id(Channel::WhatsApp, WA_ID);
    assert!(h.store.customer_has_key(&customer).await.unwrap());
    let events = h.store.ticket_events(ticket).await.unwrap();
    assert!(
        events
            .iter()
            .all(|(_, _, e)| !matches!(e, Event::CustomerErased))
    );
}

#[tokio::test]
async fn a_phone_number_no_customer_could_have_is_an_invalid_argument() {
    let (mut h, _) = Harness::start().await;
    for (contact, why) in [
        ("0151 12345678", "international form"),
        ("+49 (0)151 12345678", "(0)"),
        ("+49 151", "8 to 15 digits"),
        ("4915112345678 ext. 2", "only digits"),
        ("  ", "empty"),
    ] {
        let refused = h.erase(pb::Channel::Whatsapp, contact).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{contact:?}");
        assert!(refused.message().contains(why), "{contact:?}: {refused:?}");
        assert!(
            refused.message().starts_with("customer.contact.address: "),
            "{refused:?}"
        );
        let refused = h.export(pb::Channel::Whatsapp, contact).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{contact:?}");
    }
}

#[tokio::test]
async fn a_customer_with_a_data_key_and_no_ticket_yet_is_erased() {
    let (mut h, _) = Harness::start().await;
    let customer = h.store.customer_id(Channel::WhatsApp, "4917012345678");
    h.store.customer_key(&customer).await.unwrap();

    let erased = h
        .erase(pb::Channel::Whatsapp, "+49 170 12345678")
        .await
        .unwrap();
    assert_eq!(erased.customer_id, customer.to_string());
    assert!(erased.ticket_ids.is_empty());
    assert!(erased.key_purged);
    assert!(!h.store.customer_has_key(&customer).await.unwrap());
    // Now nothing is left under that name.
    let refused = h
        .erase(pb::Channel::Whatsapp, "+49 170 12345678")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
}
