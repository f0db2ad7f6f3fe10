//! An agent and a customer talk through helpline: the customer writes on WhatsApp (the
//! channel simulator), the ticket is queued and offered to the signed-in agent over the
//! real AgentDesk gRPC API; the agent's reply reaches the customer through egress, and
//! the customer's answer streams back to the agent.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use helpline_assignment::{Assignment, AssignmentSettings, AuthKey, auth, grpc_service};
use helpline_bot::flows::Flows;
use helpline_domain::{AgentId, Channel, Command, HandoffReason, Personal, QueueId, decide};
use helpline_egress::{self as egress, EgressConfig};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_ingress::{ChannelsConfig, Ingress, IngressConfig};
use helpline_proto::v1 as pb;
use helpline_proto::v1::agent_desk_client::AgentDeskClient;
use helpline_region::{Agent, RegionConfig, Role};
use helpline_testkit::{NatsServer, Simulator};
use tokio_util::sync::CancellationToken;
use tonic::Request;
use uuid::Uuid;

const REGION_FILE: &str = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");

fn region() -> RegionConfig {
    let mut region = RegionConfig::from_region_file(REGION_FILE).unwrap_or_else(|e| panic!("{e}"));
    region.agents = vec![Agent {
        id: AgentId::new("anna"),
        name: "Anna".to_owned(),
        languages: vec!["de".to_owned()],
        products: vec![],
        queues: vec![QueueId::new("de-general")],
        max_tickets: 2,
        role: Role::Agent,
    }];
    region
}

fn signed<T>(key: &AuthKey, message: T) -> Request<T> {
    let token = auth::issue(
        key,
        "anna",
        Role::Agent,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    request.metadata_mut().insert("authorization", value);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agents_reply_reaches_the_customer_and_the_answer_streams_back() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = NatsServer::start().await.unwrap_or_else(|e| panic!("{e}"));
    let client = nats.connect().await.unwrap_or_else(|e| panic!("{e}"));
    let store = EventStore::ensure(client, StoreConfig::new("de"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sim = Simulator::start(Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let channels: ChannelsConfig =
        serde_json::from_value(sim.helpline_channels()).unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();

    let ingress = Ingress::new(store.clone(), &IngressConfig::default(), &channels)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ingress_url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    tokio::spawn(async move { axum::serve(listener, ingress.router()).await });
    let egress_config = EgressConfig {
        channels,
        request_timeout: Duration::from_secs(2),
        ..EgressConfig::default()
    };
    tokio::spawn(egress::run(store.clone(), egress_config, shutdown.clone()));

    let region = Arc::new(region());
    let flows = Arc::new(Flows::for_region(&region).unwrap_or_else(|e| panic!("{e}")));
    let key = AuthKey::new(vec![9u8; 32]).unwrap_or_else(|e| panic!("{e}"));
    let assignment = Assignment::new(store.clone(), region, flows, AssignmentSettings::default());
    tokio::spawn({
        let (assignment, shutdown) = (assignment.clone(), shutdown.clone());
        async move { assignment.run(shutdown).await }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let grpc_url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(grpc_service(assignment, key.clone()))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown.clone().cancelled_owned(),
            ),
    );

    // The agent signs in and watches.
    let mut agent = AgentDeskClient::connect(grpc_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    agent
        .sign_in(signed(&key, pb::SignInRequest {}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut updates = agent
        .watch(signed(&key, pb::WatchRequest {}))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();

    // The customer writes; the ticket is handed over and queued (the bot's and routing's
    // part, done here by hand).
    let customer = "4915112340000";
    let said = sim
        .deliver(
            &ingress_url,
            &sim.webhook(Channel::WhatsApp, customer, "Hallo, ich brauche Hilfe"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(said.status, 200, "{}", said.body);
    let offer = tokio::time::timeout(Duration::from_secs(15), async {
        let mut queued = false;
        loop {
            if !queued {
                queued = queue_the_customers_ticket(&store).await;
            }
            let next = tokio::time::timeout(Duration::from_millis(200), updates.next()).await;
            if let Ok(Some(Ok(pb::WatchResponse {
                update: Some(pb::watch_response::Update::Ticket(ticket)),
                ..
            }))) = next
            {
                return ticket;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no offer reached the agent"));
    assert_eq!(offer.queue, "de-general");
    assert_eq!(offer.summary, "Kunde möchte eine Person sprechen");

    agent
        .accept(signed(
            &key,
            pb::AcceptRequest {
                ticket_id: offer.ticket_id.clone(),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    agent
        .reply(signed(
            &key,
            pb::ReplyRequest {
                ticket_id: offer.ticket_id.clone(),
                body: Some(pb::MessageBody {
                    content: Some(pb::message_body::Content::Text(
                        "Guten Tag, hier ist Anna. Wie kann ich helfen?".to_owned(),
                    )),
                }),
                request_id: String::new(),
                canned_reply: String::new(),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    agent
        .add_note(signed(
            &key,
            pb::AddNoteRequest {
                ticket_id: offer.ticket_id.clone(),
                text: "Stammkunde".to_owned(),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut received = Vec::new();
    for _ in 0..100 {
        received = sim.received(Channel::WhatsApp, customer);
        if !received.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let texts: Vec<String> = received.iter().filter_map(|r| r.text.clone()).collect();
    assert_eq!(
        texts,
        ["Guten Tag, hier ist Anna. Wie kann ich helfen?"],
        "the reply reaches the customer, the note never does"
    );

    let answered = sim
        .deliver(
            &ingress_url,
            &sim.webhook(Channel::WhatsApp, customer, "Mein MateBook startet nicht"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answered.status, 200, "{}", answered.body);
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(update)) = updates.next().await {
            if let Some(pb::watch_response::Update::Event(envelope)) = update.update
                && let Some(pb::event_envelope::Event::CustomerMessageReceived(message)) =
                    envelope.event
                && let Some(pb::MessageBody {
                    content: Some(pb::message_body::Content::Text(text)),
                }) = message.body
            {
                return text;
            }
        }
        String::new()
    })
    .await
    .unwrap_or_else(|_| panic!("the customer's answer never reached the agent"));
    assert_eq!(answer, "Mein MateBook startet nicht");
}

/// Hands the customer's ticket over to the general queue, once it exists; true when done.
async fn queue_the_customers_ticket(store: &EventStore) -> bool {
    let Some(ticket) = first_ticket(store).await else {
        return false;
    };
    for command in [
        Command::RequestHandoff {
            reason: HandoffReason::CustomerAsked,
            summary: Personal::new("Kunde möchte eine Person sprechen".to_owned()),
        },
        Command::RouteToQueue {
            rule: "default".to_owned(),
            queue: QueueId::new("de-general"),
        },
    ] {
        let loaded = store.load(ticket).await.unwrap_or_else(|e| panic!("{e}"));
        let events = decide(&loaded.ticket, command).unwrap_or_else(|e| panic!("{e}"));
        store
            .append(
                ticket,
                loaded.version,
                &events,
                &CommandMeta::new(Uuid::now_v7(), SystemTime::now()),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    true
}

async fn first_ticket(store: &EventStore) -> Option<helpline_domain::TicketId> {
    let stream = store
        .jetstream()
        .get_stream_no_info("HELPLINE_DE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The agent's sign-in may come first in the stream.
    for sequence in 1..=4 {
        let Ok(message) = stream.direct_get(sequence).await else {
            continue;
        };
        if let Some((meta, _)) = store
            .decode(&message.payload)
            .await
            .ok()
            .and_then(|events| events.into_iter().next())
        {
            return Some(meta.ticket);
        }
    }
    None
}
