//! Assignment against a real nats-server, with real AgentDesk clients over gRPC: offers
//! go to qualified agents within capacity, run out to the next agent, come back when an
//! agent signs out, and two replicas never give a ticket twice or overfill an agent.
//! Tickets are made queued by direct appends, as routing would leave them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use helpline_assignment::ledger::{self, AgentEvent, Presence};
use helpline_assignment::{Assignment, AssignmentSettings, AuthKey, auth, grpc_service};
use helpline_domain::{
    AgentId, Channel, Customer, Event, HandoffReason, Personal, QueueId, ReleaseReason,
    RouteDestination, TicketId,
};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_flows::Flows;
use helpline_proto::v1 as pb;
use helpline_proto::v1::agent_desk_client::AgentDeskClient;
use helpline_region::{Agent, RegionConfig, Role};
use helpline_testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel as GrpcChannel;
use tonic::{Code, Request};
use uuid::Uuid;

const REGION_FILE: &str = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");

fn key() -> AuthKey {
    AuthKey::new(vec![42u8; 32]).unwrap_or_else(|e| panic!("{e}"))
}

fn agent(id: &str, languages: &[&str], queues: &[&str], max: u32, role: Role) -> Agent {
    Agent {
        id: AgentId::new(id),
        name: id.to_owned(),
        languages: languages.iter().map(|l| (*l).to_owned()).collect(),
        products: vec![],
        queues: queues.iter().map(|q| QueueId::new(*q)).collect(),
        max_tickets: max,
        role,
    }
}

fn region(agents: Vec<Agent>) -> RegionConfig {
    let mut region = RegionConfig::from_region_file(REGION_FILE).unwrap_or_else(|e| panic!("{e}"));
    region.agents = agents;
    assert_eq!(region.validate(), vec![]);
    region
}

struct Harness {
    nats: NatsServer,
    store: EventStore,
    region: Arc<RegionConfig>,
    grpc: String,
    shutdown: CancellationToken,
}

impl Harness {
    async fn start(agents: Vec<Agent>, settings: AssignmentSettings) -> Harness {
        let nats = NatsServer::start().await.unwrap_or_else(|e| panic!("{e}"));
        let store = Self::connect(&nats).await;
        let region = Arc::new(region(agents));
        let shutdown = CancellationToken::new();
        let grpc = Self::replica(&store, &region, settings, &shutdown).await;
        Harness {
            nats,
            store,
            region,
            grpc,
            shutdown,
        }
    }

    async fn connect(nats: &NatsServer) -> EventStore {
        let client = nats.connect().await.unwrap_or_else(|e| panic!("{e}"));
        let config = StoreConfig {
            retry_backoff: Duration::from_millis(10),
            ..StoreConfig::new("de")
        };
        EventStore::ensure(client, config)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// One more assignment service with its own connection and AgentDesk server.
    async fn replica(
        store: &EventStore,
        region: &Arc<RegionConfig>,
        settings: AssignmentSettings,
        shutdown: &CancellationToken,
    ) -> String {
        let flows = Arc::new(Flows::for_region(region).unwrap_or_else(|e| panic!("{e}")));
        let assignment = Assignment::new(store.clone(), region.clone(), flows, settings);
        tokio::spawn({
            let (assignment, shutdown) = (assignment.clone(), shutdown.clone());
            async move { assignment.run(shutdown).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let server = tonic::transport::Server::builder()
            .add_service(grpc_service(assignment, key()))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                shutdown.clone().cancelled_owned(),
            );
        tokio::spawn(server);
        url
    }

    async fn client(&self) -> AgentDeskClient<GrpcChannel> {
        AgentDeskClient::connect(self.grpc.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A ticket waiting in `queue`, in `language`, as routing leaves it.
    async fn queued(&self, queue: &str, language: &str) -> TicketId {
        queue_ticket(&self.store, queue, language).await
    }

    /// Every ticket event of the stream, in order.
    async fn ticket_events(&self) -> Vec<(TicketId, Event)> {
        ticket_events(&self.store).await
    }

    async fn sign_in(&self, agent: &str) -> AgentDeskClient<GrpcChannel> {
        let mut client = self.client().await;
        client
            .sign_in(authed(agent, pb::SignInRequest {}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        client
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn queue_ticket(store: &EventStore, queue: &str, language: &str) -> TicketId {
    let ticket = TicketId(Uuid::now_v7());
    let events = [
        Event::TicketOpened {
            ticket,
            customer: Customer {
                channel: Channel::WhatsApp,
                contact: Personal::new(format!("49151{}", ticket.0.as_u128() % 1_000_000)),
                display_name: None,
            },
            language: language.to_owned(),
        },
        Event::HandoffRequested {
            reason: HandoffReason::CustomerAsked,
            summary: Personal::new("needs a person".to_owned()),
        },
        Event::TicketRouted {
            rule: "test".to_owned(),
            destination: RouteDestination::Queue(QueueId::new(queue)),
        },
        Event::TicketQueued {
            queue: QueueId::new(queue),
        },
    ];
    store
        .append(
            ticket,
            0,
            &events,
            &CommandMeta::new(Uuid::now_v7(), SystemTime::now()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ticket
}

async fn ticket_events(store: &EventStore) -> Vec<(TicketId, Event)> {
    let stream = store
        .jetstream()
        .get_stream("HELPLINE_DE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: store.layout().all_tickets(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pending = consumer
        .info()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .num_pending;
    let mut events = Vec::new();
    if pending == 0 {
        return events;
    }
    let mut messages = consumer.messages().await.unwrap_or_else(|e| panic!("{e}"));
    while let Some(message) = messages.next().await {
        let message = message.unwrap_or_else(|e| panic!("{e}"));
        let decoded = store
            .decode(&message.payload)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (meta, event) in decoded {
            events.push((meta.ticket, event));
        }
        let info = message.info().unwrap_or_else(|e| panic!("{e}"));
        if info.pending == 0 {
            break;
        }
    }
    events
}

fn token(agent: &str) -> String {
    auth::issue(
        &key(),
        agent,
        Role::Admin,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn authed<T>(agent: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {}", token(agent))
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    request.metadata_mut().insert("authorization", value);
    request
}

/// Per agent, the most tickets they held at once, replaying the log: a ticket counts
/// from its `AgentAssigned` until it leaves the agent. Also checks that no ticket is
/// assigned while another agent holds it.
fn peak_loads(events: &[(TicketId, Event)]) -> BTreeMap<AgentId, usize> {
    let mut holder: HashMap<TicketId, AgentId> = HashMap::new();
    let mut load: BTreeMap<AgentId, usize> = BTreeMap::new();
    let mut peak: BTreeMap<AgentId, usize> = BTreeMap::new();
    for (ticket, event) in events {
        match event {
            Event::AgentAssigned { agent } => {
                assert!(
                    !holder.contains_key(ticket),
                    "ticket {ticket} assigned to {agent} while {:?} holds it",
                    holder.get(ticket)
                );
                holder.insert(*ticket, agent.clone());
                let now = load.entry(agent.clone()).or_default();
                *now += 1;
                let top = peak.entry(agent.clone()).or_default();
                *top = (*top).max(*now);
            }
            Event::TicketReleased { .. }
            | Event::TicketResolved { .. }
            | Event::ConversationHandedBack { .. }
            | Event::TicketAbandoned => {
                if let Some(agent) = holder.remove(ticket)
                    && let Some(now) = load.get_mut(&agent)
                {
                    *now -= 1;
                }
            }
            _ => {}
        }
    }
    peak
}

fn assignments(events: &[(TicketId, Event)]) -> Vec<(TicketId, AgentId)> {
    events
        .iter()
        .filter_map(|(ticket, event)| match event {
            Event::AgentAssigned { agent } => Some((*ticket, agent.clone())),
            _ => None,
        })
        .collect()
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// An agent's client that accepts every offer and resolves it at once.
fn work_through_offers(grpc: String, agent: &'static str) {
    tokio::spawn(async move {
        let mut client = AgentDeskClient::connect(grpc)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut stream = client
            .watch(authed(agent, pb::WatchRequest {}))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner();
        while let Some(Ok(update)) = stream.next().await {
            let Some(pb::watch_response::Update::Ticket(ticket)) = update.update else {
                continue;
            };
            if ticket.accepted {
                continue;
            }
            let id = ticket.ticket_id;
            if client
                .accept(authed(
                    agent,
                    pb::AcceptRequest {
                        ticket_id: id.clone(),
                    },
                ))
                .await
                .is_ok()
            {
                let _ = client
                    .resolve(authed(
                        agent,
                        pb::ResolveRequest {
                            ticket_id: id,
                            summary: "done".to_owned(),
                        },
                    ))
                    .await;
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_tickets_go_to_qualified_agents_and_no_agent_is_ever_over_capacity() {
    let agents = vec![
        agent(
            "dora",
            &["de"],
            &["de-laptops", "de-general"],
            3,
            Role::Agent,
        ),
        agent("eric", &["en"], &["de-english"], 1, Role::Agent),
        agent(
            "bilal",
            &["de", "en"],
            &["de-laptops", "de-english"],
            2,
            Role::Agent,
        ),
    ];
    let capacity: BTreeMap<&str, usize> = [("dora", 3), ("eric", 1), ("bilal", 2)].into();
    let h = Harness::start(agents, AssignmentSettings::default()).await;
    for agent in ["dora", "eric", "bilal"] {
        h.sign_in(agent).await;
        work_through_offers(h.grpc.clone(), agent);
    }
    let mut tickets = Vec::new();
    for n in 0..20 {
        let (queue, language) = match n % 4 {
            0 => ("de-english", "en"),
            1 => ("de-general", "de"),
            _ => ("de-laptops", "de"),
        };
        tickets.push((h.queued(queue, language).await, queue, language));
    }
    eventually(
        "every ticket was resolved",
        Duration::from_secs(20),
        || async {
            let events = h.ticket_events().await;
            events
                .iter()
                .filter(|(_, e)| matches!(e, Event::TicketResolved { .. }))
                .count()
                == 20
        },
    )
    .await;
    let events = h.ticket_events().await;
    for (ticket, agent) in assignments(&events) {
        let (_, queue, language) = tickets
            .iter()
            .find(|(t, _, _)| *t == ticket)
            .unwrap_or_else(|| panic!("unknown ticket"));
        let directory = h
            .region
            .agent(&agent)
            .unwrap_or_else(|| panic!("unknown agent {agent}"));
        assert!(
            directory.can_take(&QueueId::new(*queue), language, None),
            "{ticket} ({queue}, {language}) went to {agent}"
        );
    }
    for (agent, peak) in peak_loads(&events) {
        assert!(
            peak <= capacity[agent.as_str()],
            "{agent} held {peak} at once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offer_not_accepted_in_time_goes_to_the_next_agent() {
    let agents = vec![
        agent("dora", &["de"], &["de-general"], 2, Role::Agent),
        agent("jan", &["de"], &["de-general"], 2, Role::Agent),
    ];
    let settings = AssignmentSettings {
        offer_timeout: Duration::from_secs(1),
        ..AssignmentSettings::default()
    };
    let h = Harness::start(agents, settings).await;
    h.sign_in("dora").await;
    h.sign_in("jan").await;
    let ticket = h.queued("de-general", "de").await;
    eventually(
        "the offer ran out and went on",
        Duration::from_secs(10),
        || async { assignments(&h.ticket_events().await).len() >= 2 },
    )
    .await;
    let events = h.ticket_events().await;
    let offers: Vec<AgentId> = assignments(&events)
        .into_iter()
        .filter(|(t, _)| *t == ticket)
        .map(|(_, agent)| agent)
        .collect();
    assert_ne!(
        offers[0], offers[1],
        "the second offer goes to the other agent"
    );
    assert!(events.iter().any(|(t, e)| *t == ticket
        && matches!(e, Event::TicketReleased { agent, reason: ReleaseReason::AcceptTimeout } if *agent == offers[0])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_signing_out_mid_conversation_hands_their_tickets_to_another() {
    let agents = vec![
        agent("dora", &["de"], &["de-general"], 2, Role::Agent),
        agent("jan", &["de"], &["de-general"], 2, Role::Agent),
    ];
    let settings = AssignmentSettings {
        release_grace: Duration::from_secs(1),
        ..AssignmentSettings::default()
    };
    let h = Harness::start(agents, settings).await;
    let mut dora = h.sign_in("dora").await;
    let ticket = h.queued("de-general", "de").await;
    eventually(
        "dora was offered the ticket",
        Duration::from_secs(10),
        || async { assignments(&h.ticket_events().await).len() == 1 },
    )
    .await;
    dora.accept(authed(
        "dora",
        pb::AcceptRequest {
            ticket_id: ticket.to_string(),
        },
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    dora.reply(authed(
        "dora",
        pb::ReplyRequest {
            ticket_id: ticket.to_string(),
            body: Some(pb::MessageBody {
                content: Some(pb::message_body::Content::Text("Hallo!".to_owned())),
            }),
            request_id: String::new(),
            canned_reply: String::new(),
        },
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    h.sign_in("jan").await;
    dora.sign_out(authed("dora", pb::SignOutRequest {}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eventually(
        "jan took the ticket over",
        Duration::from_secs(10),
        || async {
            assignments(&h.ticket_events().await)
                .iter()
                .any(|(t, agent)| *t == ticket && agent.as_str() == "jan")
        },
    )
    .await;
    let events = h.ticket_events().await;
    assert!(events.iter().any(|(t, e)| *t == ticket
        && matches!(
            e,
            Event::TicketReleased {
                reason: ReleaseReason::AgentOffline,
                ..
            }
        )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_retried_with_its_request_id_reaches_the_customer_once() {
    let agents = vec![agent("dora", &["de"], &["de-general"], 2, Role::Agent)];
    let h = Harness::start(agents, AssignmentSettings::default()).await;
    let mut dora = h.sign_in("dora").await;
    let ticket = h.queued("de-general", "de").await;
    eventually(
        "dora was offered the ticket",
        Duration::from_secs(10),
        || async { assignments(&h.ticket_events().await).len() == 1 },
    )
    .await;
    dora.accept(authed(
        "dora",
        pb::AcceptRequest {
            ticket_id: ticket.to_string(),
        },
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let reply = |request_id: &str| {
        authed(
            "dora",
            pb::ReplyRequest {
                ticket_id: ticket.to_string(),
                body: Some(pb::MessageBody {
                    content: Some(pb::message_body::Content::Text("Hallo!".to_owned())),
                }),
                request_id: request_id.to_owned(),
                canned_reply: String::new(),
            },
        )
    };
    // The answer to the first try was lost; the client sends the same request again.
    let request_id = Uuid::now_v7().to_string();
    let first = dora
        .reply(reply(&request_id))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let again = dora
        .reply(reply(&request_id))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(first.message_id, again.message_id);
    // Without one, or with another, it is another message.
    dora.reply(reply(""))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    dora.reply(reply(&Uuid::now_v7().to_string()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sent = h
        .ticket_events()
        .await
        .into_iter()
        .filter(|(t, e)| *t == ticket && matches!(e, Event::AgentMessageSent { .. }))
        .count();
    assert_eq!(sent, 3);

    let status = dora
        .reply(reply("not-a-uuid"))
        .await
        .err()
        .unwrap_or_else(|| panic!("a request id that is no UUID was taken"));
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_under_500_tickets_never_assign_twice_nor_overfill_an_agent() {
    let mut agents = Vec::new();
    let mut capacity = BTreeMap::new();
    for n in 0..40u32 {
        let id = format!("agent-{n}");
        let max = 3 + n % 8;
        capacity.insert(AgentId::new(id.as_str()), max as usize);
        agents.push(agent(
            &id,
            &["de", "en"],
            &["de-general", "de-english"],
            max,
            Role::Agent,
        ));
    }
    let total: usize = capacity.values().sum();
    let h = Harness::start(agents, AssignmentSettings::default()).await;
    let second = Harness::connect(&h.nats).await;
    Harness::replica(
        &second,
        &h.region,
        AssignmentSettings::default(),
        &h.shutdown,
    )
    .await;
    for n in 0..40 {
        h.sign_in(&format!("agent-{n}")).await;
    }
    let creators: Vec<_> = (0..10)
        .map(|worker| {
            let store = if worker % 2 == 0 {
                h.store.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move {
                for n in 0..50 {
                    let (queue, language) = if n % 3 == 0 {
                        ("de-english", "en")
                    } else {
                        ("de-general", "de")
                    };
                    queue_ticket(&store, queue, language).await;
                }
            })
        })
        .collect();
    for creator in creators {
        creator.await.unwrap_or_else(|e| panic!("{e}"));
    }
    eventually("every agent is full", Duration::from_secs(25), || async {
        assignments(&h.ticket_events().await).len() >= total
    })
    .await;
    // Let both replicas settle: anything more would be a double assignment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = h.ticket_events().await;
    let given = assignments(&events);
    assert_eq!(given.len(), total, "each free slot filled once");
    let mut seen = std::collections::HashSet::new();
    for (ticket, _) in &given {
        assert!(seen.insert(*ticket), "ticket {ticket} assigned twice");
    }
    for (agent, peak) in peak_loads(&events) {
        assert!(
            peak <= capacity[&agent],
            "{agent} held {peak} of {}",
            capacity[&agent]
        );
    }
}

fn ticket_calls(
    client: AgentDeskClient<GrpcChannel>,
    ticket: String,
    token: Option<String>,
) -> Vec<futures::future::BoxFuture<'static, (&'static str, Code)>> {
    macro_rules! call {
        ($name:literal, $method:ident, $message:expr) => {{
            let mut client = client.clone();
            let request = signed(token.as_deref(), $message);
            Box::pin(async move {
                let code = match client.$method(request).await {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                };
                ($name, code)
            }) as futures::future::BoxFuture<'static, (&'static str, Code)>
        }};
    }
    let text = || {
        Some(pb::MessageBody {
            content: Some(pb::message_body::Content::Text("hi".to_owned())),
        })
    };
    vec![
        call!(
            "GetConversation",
            get_conversation,
            pb::GetConversationRequest {
                ticket_id: ticket.clone()
            }
        ),
        call!(
            "GetAttachment",
            get_attachment,
            pb::GetAttachmentRequest {
                ticket_id: ticket.clone(),
                object: "an-object".to_owned(),
            }
        ),
        call!(
            "Accept",
            accept,
            pb::AcceptRequest {
                ticket_id: ticket.clone()
            }
        ),
        call!(
            "Reply",
            reply,
            pb::ReplyRequest {
                ticket_id: ticket.clone(),
                body: text(),
                request_id: String::new(),
                canned_reply: String::new(),
            }
        ),
        call!(
            "AddNote",
            add_note,
            pb::AddNoteRequest {
                ticket_id: ticket.clone(),
                text: "n".to_owned()
            }
        ),
        call!(
            "Transfer",
            transfer,
            pb::TransferRequest {
                ticket_id: ticket.clone(),
                target: Some(pb::transfer_request::Target::Queue("de-general".to_owned())),
                note: String::new(),
            }
        ),
        call!(
            "Release",
            release,
            pb::ReleaseRequest {
                ticket_id: ticket.clone()
            }
        ),
        call!(
            "Resolve",
            resolve,
            pb::ResolveRequest {
                ticket_id: ticket.clone(),
                summary: "s".to_owned()
            }
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_needs_a_valid_token_and_tickets_are_their_holders_alone() {
    let agents = vec![
        agent("dora", &["de"], &["de-general"], 2, Role::Agent),
        agent("jan", &["de"], &["de-phones"], 2, Role::Agent),
        agent("sabine", &["de"], &[], 1, Role::Supervisor),
    ];
    let h = Harness::start(agents, AssignmentSettings::default()).await;
    let client = h.client().await;
    let ticket = h.queued("de-general", "de").await;
    h.sign_in("dora").await;
    eventually("dora holds the ticket", Duration::from_secs(10), || async {
        assignments(&h.ticket_events().await).len() == 1
    })
    .await;

    // No token, a token signed with another key, an expired one: UNAUTHENTICATED.
    let foreign = auth::issue(
        &AuthKey::development(),
        "dora",
        Role::Agent,
        Duration::from_secs(60),
        SystemTime::now(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let expired = auth::issue(
        &key(),
        "dora",
        Role::Agent,
        Duration::from_secs(1),
        SystemTime::now() - Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for bad in [None, Some(foreign), Some(expired), Some(token("nobody"))] {
        let mut calls = ticket_calls(client.clone(), ticket.to_string(), bad.clone());
        let mut plain = client.clone();
        let b = bad.as_deref();
        let codes = [
            (
                "SignIn",
                plain.sign_in(signed(b, pb::SignInRequest {})).await.err(),
            ),
            (
                "SignOut",
                plain.sign_out(signed(b, pb::SignOutRequest {})).await.err(),
            ),
            (
                "SetPresence",
                plain
                    .set_presence(signed(
                        b,
                        pb::SetPresenceRequest {
                            presence: pb::AgentPresence::Away.into(),
                        },
                    ))
                    .await
                    .err(),
            ),
            (
                "Watch",
                plain.watch(signed(b, pb::WatchRequest {})).await.err(),
            ),
            (
                "ListQueues",
                plain
                    .list_queues(signed(b, pb::ListQueuesRequest {}))
                    .await
                    .err(),
            ),
            (
                "ListAgents",
                plain
                    .list_agents(signed(b, pb::ListAgentsRequest {}))
                    .await
                    .err(),
            ),
            (
                "Reassign",
                plain
                    .reassign(signed(
                        b,
                        pb::ReassignRequest {
                            ticket_id: ticket.to_string(),
                            agent_id: "jan".to_owned(),
                        },
                    ))
                    .await
                    .err(),
            ),
        ];
        for (name, status) in codes {
            assert_eq!(
                status.map(|s| s.code()),
                Some(Code::Unauthenticated),
                "{name} with {bad:?}"
            );
        }
        for call in calls.drain(..) {
            let (name, code) = call.await;
            assert_eq!(code, Code::Unauthenticated, "{name} with {bad:?}");
        }
    }

    // Jan acting on dora's ticket: PERMISSION_DENIED, every action.
    let jan = token_for("jan", Role::Agent);
    for call in ticket_calls(client.clone(), ticket.to_string(), Some(jan.clone())) {
        let (name, code) = call.await;
        assert_eq!(
            code,
            Code::PermissionDenied,
            "{name} on another agent's ticket"
        );
    }
    // Supervisor-only calls by an agent: PERMISSION_DENIED; by a supervisor: fine.
    let mut as_jan = client.clone();
    let denied = as_jan
        .list_queues(signed(Some(&jan), pb::ListQueuesRequest {}))
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(denied, Some(Code::PermissionDenied));
    // A supervisor token for an agent the directory lists as an agent grants no more.
    let inflated = token_for("jan", Role::Admin);
    let denied = as_jan
        .list_agents(signed(Some(&inflated), pb::ListAgentsRequest {}))
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(denied, Some(Code::PermissionDenied));
    let supervisor = token_for("sabine", Role::Supervisor);
    let agents = as_jan
        .list_agents(signed(Some(&supervisor), pb::ListAgentsRequest {}))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let dora = agents
        .agents
        .iter()
        .find(|a| a.agent_id == "dora")
        .unwrap_or_else(|| panic!("dora listed"));
    assert_eq!(dora.load, 1);
    let queues = as_jan
        .list_queues(signed(Some(&supervisor), pb::ListQueuesRequest {}))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert!(
        queues
            .queues
            .iter()
            .any(|q| q.queue == "de-general" && q.assigned == 1)
    );

    // The ticket's conversation so far: its holder's, and any supervisor's, to read.
    let dora_token = token_for("dora", Role::Agent);
    for reader in [&dora_token, &supervisor] {
        let conversation = as_jan
            .get_conversation(signed(
                Some(reader),
                pb::GetConversationRequest {
                    ticket_id: ticket.to_string(),
                },
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_inner();
        use pb::event_envelope::Event;
        let events: Vec<_> = conversation
            .events
            .iter()
            .filter_map(|e| e.event.as_ref())
            .collect();
        assert!(
            matches!(events.first(), Some(Event::TicketOpened(_)))
                && events.iter().any(|e| matches!(e, Event::TicketQueued(_))),
            "{events:?}"
        );
    }

    // An object the ticket's log does not name is no attachment of it.
    let status = as_jan
        .get_attachment(signed(
            Some(&dora_token),
            pb::GetAttachmentRequest {
                ticket_id: ticket.to_string(),
                object: "another-tickets-object".to_owned(),
            },
        ))
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(status, Some(Code::NotFound));

    // Malformed requests name the field.
    let status = as_jan
        .accept(signed(
            Some(&dora_token),
            pb::AcceptRequest {
                ticket_id: "nope".to_owned(),
            },
        ))
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted a bad id"));
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("ticket_id"),
        "{}",
        status.message()
    );
    let status = as_jan
        .reply(signed(
            Some(&dora_token),
            pb::ReplyRequest {
                ticket_id: ticket.to_string(),
                body: None,
                request_id: String::new(),
                canned_reply: String::new(),
            },
        ))
        .await
        .err()
        .unwrap_or_else(|| panic!("replied without a body"));
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("body"), "{}", status.message());
    let status = as_jan
        .set_presence(signed(
            Some(&dora_token),
            pb::SetPresenceRequest { presence: 0 },
        ))
        .await
        .err()
        .unwrap_or_else(|| panic!("presence unspecified"));
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("presence"),
        "{}",
        status.message()
    );

    // The supervisor reassigns dora's ticket to jan's colleague: dora's offer is gone.
    let reassigned = as_jan
        .reassign(signed(
            Some(&supervisor),
            pb::ReassignRequest {
                ticket_id: ticket.to_string(),
                agent_id: "dora".to_owned(),
            },
        ))
        .await;
    assert!(reassigned.is_ok(), "{reassigned:?}");
}

fn signed<T>(token: Option<&str>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn token_for(agent: &str, role: Role) -> String {
    auth::issue(
        &key(),
        agent,
        role,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Every event on `agent`'s subject, in order.
async fn agent_events(store: &EventStore, agent: &str) -> Vec<AgentEvent> {
    let stream = store
        .jetstream()
        .get_stream("HELPLINE_DE")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: store.layout().agent_subject(agent),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pending = consumer
        .info()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .num_pending;
    let mut events = Vec::new();
    if pending == 0 {
        return events;
    }
    let mut messages = consumer.messages().await.unwrap_or_else(|e| panic!("{e}"));
    while let Some(message) = messages.next().await {
        let message = message.unwrap_or_else(|e| panic!("{e}"));
        let record = ledger::decode(&message.payload).unwrap_or_else(|e| panic!("{e}"));
        events.push(record.event);
        let info = message.info().unwrap_or_else(|e| panic!("{e}"));
        if info.pending == 0 {
            break;
        }
    }
    events
}

/// Dora holds a ticket (offered, not accepted); jan and kai are online in another queue;
/// sabine supervises.
async fn dora_holds_a_ticket() -> (Harness, TicketId, AgentDeskClient<GrpcChannel>) {
    let agents = vec![
        agent("dora", &["de"], &["de-general"], 1, Role::Agent),
        agent("jan", &["de"], &["de-phones"], 1, Role::Agent),
        agent("kai", &["de"], &["de-phones"], 1, Role::Agent),
        agent("sabine", &["de"], &[], 1, Role::Supervisor),
    ];
    let h = Harness::start(agents, AssignmentSettings::default()).await;
    let ticket = h.queued("de-general", "de").await;
    h.sign_in("dora").await;
    let client = h.sign_in("jan").await;
    h.sign_in("kai").await;
    eventually(
        "dora is offered the ticket",
        Duration::from_secs(10),
        || async { assignments(&h.ticket_events().await).len() == 1 },
    )
    .await;
    (h, ticket, client)
}

/// `agent`'s request to transfer `ticket` to kai.
fn to_kai(agent: &str, ticket: TicketId) -> Request<pb::TransferRequest> {
    signed(
        Some(&token_for(agent, Role::Agent)),
        pb::TransferRequest {
            ticket_id: ticket.to_string(),
            target: Some(pb::transfer_request::Target::AgentId("kai".to_owned())),
            note: "Kundin wartet auf den Kostenvoranschlag; bitte heute zurückrufen.".to_owned(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_an_agent_keeps_the_slot_it_claimed_for_them() {
    let (h, ticket, mut client) = dora_holds_a_ticket().await;
    client
        .accept(signed(
            Some(&token_for("dora", Role::Agent)),
            pb::AcceptRequest {
                ticket_id: ticket.to_string(),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .transfer(to_kai("dora", ticket))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        assignments(&h.ticket_events().await).last(),
        Some(&(ticket, AgentId::new("kai")))
    );
    // The note is on the ticket, written by dora in the same step, before the move.
    let events = h.ticket_events().await;
    let noted = events.iter().position(|(_, event)| {
        matches!(event, Event::AgentNoteAdded { agent, text }
            if agent.as_str() == "dora" && text.expose().contains("Kostenvoranschlag"))
    });
    let released = events
        .iter()
        .position(|(_, event)| matches!(event, Event::TicketReleased { .. }));
    assert!(
        noted.is_some() && noted < released,
        "note {noted:?}, release {released:?}"
    );
    // The claim is made before the ticket moves; the assigner, looking in between, must
    // not take it for one left behind.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        agent_events(&h.store, "kai").await,
        [
            AgentEvent::PresenceChanged(Presence::Online),
            AgentEvent::CapacityClaimed(ticket)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_transfer_leaves_the_targets_capacity_untouched() {
    let (h, ticket, mut client) = dora_holds_a_ticket().await;
    // Jan moving dora's ticket: not his to move.
    let refused = client.transfer(to_kai("jan", ticket)).await;
    assert_eq!(
        refused.err().map(|s| s.code()),
        Some(Code::PermissionDenied)
    );
    // Dora moving an offer she has not accepted: the ticket's rules refuse it.
    let refused = client.transfer(to_kai("dora", ticket)).await;
    assert_eq!(
        refused.err().map(|s| s.code()),
        Some(Code::FailedPrecondition)
    );
    // A supervisor reassigning a ticket that does not exist.
    let missing = client
        .reassign(signed(
            Some(&token_for("sabine", Role::Supervisor)),
            pb::ReassignRequest {
                ticket_id: Uuid::now_v7().to_string(),
                agent_id: "kai".to_owned(),
            },
        ))
        .await;
    assert_eq!(missing.err().map(|s| s.code()), Some(Code::NotFound));
    assert_eq!(
        agent_events(&h.store, "kai").await,
        [AgentEvent::PresenceChanged(Presence::Online)],
        "a refused move claimed the target's capacity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canned_reply_is_found_by_shortcut_filled_in_for_the_ticket_and_recorded() {
    let (h, ticket, mut client) = dora_holds_a_ticket().await;
    fn dora<T>(message: T) -> Request<T> {
        signed(Some(&token_for("dora", Role::Agent)), message)
    }
    client
        .accept(dora(pb::AcceptRequest {
            ticket_id: ticket.to_string(),
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Typing "kv" finds the cost estimate by its shortcut, in the ticket's German.
    let found = client
        .list_canned_replies(dora(pb::ListCannedRepliesRequest {
            ticket_id: ticket.to_string(),
            query: "kv".to_owned(),
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .replies;
    let number: String = ticket.to_string().chars().take(8).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].shortcut, "kva");
    assert!(
        found[0].text.starts_with(&format!(
            "Hallo, für Ihre Anfrage {number} erstellen wir einen Kostenvoranschlag"
        )),
        "{}",
        found[0].text
    );
    // Words of a title find it too; nothing typed lists them all.
    let by_title = |query: &str| pb::ListCannedRepliesRequest {
        ticket_id: ticket.to_string(),
        query: query.to_owned(),
    };
    let titles = |replies: Vec<pb::CannedReply>| -> Vec<String> {
        replies.into_iter().map(|r| r.shortcut).collect()
    };
    let abholbereit = client
        .list_canned_replies(dora(by_title("abholbereit")))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(titles(abholbereit.replies), ["abholung"]);
    let all = client
        .list_canned_replies(dora(by_title("")))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(titles(all.replies).len(), h.region.canned_replies.len());

    // Sent with an empty body: the filled-in text goes out, and the ticket records which
    // canned reply it was.
    let sent = client
        .reply(dora(pb::ReplyRequest {
            ticket_id: ticket.to_string(),
            body: None,
            request_id: String::new(),
            canned_reply: "kva".to_owned(),
        }))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let events = h.ticket_events().await;
    let text = events.iter().find_map(|(_, event)| match event {
        Event::AgentMessageSent {
            body: helpline_domain::MessageBody::Text(text),
            message,
            ..
        } if message.to_string() == sent.message_id => Some(text.expose().clone()),
        _ => None,
    });
    assert_eq!(text.as_deref(), Some(found[0].text.as_str()));
    assert!(
        events.iter().any(|(_, event)| matches!(event,
            Event::CannedReplyUsed { message, shortcut }
                if message.to_string() == sent.message_id && shortcut == "kva")),
        "{events:?}"
    );
    // A shortcut the region does not have is the caller's mistake.
    let unknown = client
        .reply(dora(pb::ReplyRequest {
            ticket_id: ticket.to_string(),
            body: None,
            request_id: String::new(),
            canned_reply: "gibtsnicht".to_owned(),
        }))
        .await;
    assert_eq!(
        unknown.err().map(|status| status.code()),
        Some(Code::InvalidArgument)
    );
}

/// The customer's history across channels: once a supervisor has linked the WhatsApp
/// customer dora holds to a web-chat contact of theirs, dora reads that contact's ticket
/// too (before, it was not hers to read); an agent who holds neither still may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_reads_the_tickets_of_a_contact_linked_to_their_customer() {
    let (h, ticket, mut client) = dora_holds_a_ticket().await;
    let web = TicketId(Uuid::now_v7());
    let opened = Event::TicketOpened {
        ticket: web,
        customer: Customer {
            channel: Channel::WebChat,
            contact: Personal::new("sess_dora_customer".to_owned()),
            display_name: None,
        },
        language: "de".to_owned(),
    };
    h.store
        .append(
            web,
            0,
            &[opened],
            &CommandMeta::new(Uuid::now_v7(), SystemTime::now()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let read = |agent: &str| {
        signed(
            Some(&token_for(agent, Role::Agent)),
            pb::GetConversationRequest {
                ticket_id: web.to_string(),
            },
        )
    };
    let before = client.get_conversation(read("dora")).await;
    assert_eq!(before.err().map(|s| s.code()), Some(Code::PermissionDenied));

    let linked = client
        .link_contacts(signed(
            Some(&token_for("sabine", Role::Supervisor)),
            pb::LinkContactsRequest {
                ticket_id: ticket.to_string(),
                other: Some(pb::OtherContact {
                    who: Some(pb::other_contact::Who::TicketId(web.to_string())),
                }),
            },
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(linked.contacts.len(), 2);
    assert_eq!(
        linked.contacts[1].ticket_ids,
        Vec::<String>::new(),
        "the web ticket is no derived chain ticket"
    );

    let after = client
        .get_conversation(read("dora"))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(after.events.len(), 1);
    let jan = client.get_conversation(read("jan")).await;
    assert_eq!(jan.err().map(|s| s.code()), Some(Code::PermissionDenied));
}
