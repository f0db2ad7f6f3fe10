//! The customer's conversation from first message to rating, end to end: a real
//! nats-server, the channel simulator playing WhatsApp, and the real ingress, egress, bot,
//! routing and feedback services as tasks of this test (so that one can be killed and
//! started afresh mid-conversation). No agent service: the test resolves the ticket with
//! the commands an agent's client would send.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use helpline_bot::flows::Flows;
use helpline_domain::{AgentId, Channel, Command, Event, MessageBody, Phase, TicketId, decide};
use helpline_egress::{self as egress, EgressConfig};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_ingress::{ChannelsConfig, Ingress, IngressConfig};
use helpline_proto::v1::feedback_client::FeedbackClient;
use helpline_region::RegionConfig;
use helpline_testkit::{NatsServer, Received, Simulator};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const REGION_FILE: &str = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");

/// The German region, with every queue staffed around the clock so that what the bot
/// says does not depend on when the test runs.
fn region() -> RegionConfig {
    let mut region = RegionConfig::from_region_file(REGION_FILE).unwrap();
    for queue in &mut region.queues {
        queue.hours = Default::default();
    }
    region
}

/// The services a test can kill and start again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Service {
    Bot,
    Routing,
    Feedback,
}

struct Stack {
    _nats: NatsServer,
    sim: Arc<Simulator>,
    store: EventStore,
    region: Arc<RegionConfig>,
    flows: Arc<Flows>,
    ingress_url: String,
    grpc_url: String,
    running: HashMap<Service, JoinHandle<()>>,
    shutdown: CancellationToken,
}

impl Stack {
    async fn start() -> Stack {
        Self::start_with(region()).await
    }

    /// The region, with today and tomorrow (Berlin) public holidays: every queue closed
    /// until the day after tomorrow's midnight.
    async fn start_on_holidays() -> (Stack, jiff::Zoned) {
        let mut region = region();
        let zone = region.locale.zone();
        let today = jiff::Timestamp::now().to_zoned(zone.clone()).date();
        let tomorrow = today.tomorrow().unwrap();
        for date in [today, tomorrow] {
            region.holidays.push(helpline_region::Holiday {
                date,
                name: "Testfeiertag".to_owned(),
                queues: Vec::new(),
            });
        }
        let back = tomorrow.tomorrow().unwrap().to_zoned(zone).unwrap();
        (Self::start_with(region).await, back)
    }

    async fn start_with(region: RegionConfig) -> Stack {
        // reqwest (egress, media) and async-nats share ring; an earlier install is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let nats = NatsServer::start().await.unwrap();
        let store = EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
            .await
            .unwrap();
        let sim = Arc::new(Simulator::start(Default::default()).await.unwrap());
        let channels: ChannelsConfig = serde_json::from_value(sim.helpline_channels()).unwrap();
        let region = Arc::new(region);
        let flows = Arc::new(Flows::for_region(&region).unwrap());
        let shutdown = CancellationToken::new();

        let ingress = Ingress::new(store.clone(), &IngressConfig::default(), &channels)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ingress_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, ingress.router()).await });
        let egress_config = EgressConfig {
            channels,
            request_timeout: Duration::from_secs(2),
            ..EgressConfig::default()
        };
        tokio::spawn(egress::run(store.clone(), egress_config, shutdown.clone()));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_url = format!("http://{}", listener.local_addr().unwrap());
        let csat = helpline_feedback::Csat::default();
        tokio::spawn({
            let (csat, store, shutdown) = (csat.clone(), store.clone(), shutdown.clone());
            async move { csat.follow(&store, shutdown).await }
        });
        let feedback_api = helpline_feedback::grpc_service(
            store.clone(),
            csat,
            region.clone(),
            helpline_testkit::bearer::test_key(),
        );
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(feedback_api)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );

        let mut stack = Stack {
            _nats: nats,
            sim,
            store,
            region,
            flows,
            ingress_url,
            grpc_url,
            running: HashMap::new(),
            shutdown,
        };
        for service in [Service::Bot, Service::Routing, Service::Feedback] {
            stack.start_service(service);
        }
        stack
    }

    fn start_service(&mut self, service: Service) {
        let store = self.store.clone();
        let region = self.region.clone();
        let flows = self.flows.clone();
        let shutdown = self.shutdown.child_token();
        let task = match service {
            Service::Bot => tokio::spawn(async move {
                helpline_bot::run(store, region, flows, shutdown)
                    .await
                    .unwrap();
            }),
            Service::Routing => tokio::spawn(async move {
                helpline_routing::run(store, region, shutdown)
                    .await
                    .unwrap();
            }),
            Service::Feedback => tokio::spawn(async move {
                helpline_feedback::run(store, flows, shutdown)
                    .await
                    .unwrap();
            }),
        };
        self.running.insert(service, task);
    }

    /// Kills the service's task where it stands, as a crash would, and starts a fresh one.
    async fn restart(&mut self, service: Service) {
        if let Some(task) = self.running.remove(&service) {
            task.abort();
            let _ = task.await;
        }
        self.start_service(service);
    }

    /// The customer writes on WhatsApp; the webhook is answered 200.
    async fn say(&self, customer: &str, text: &str) {
        self.say_on(Channel::WhatsApp, customer, text).await;
    }

    /// The customer writes on `channel`; the webhook is answered 200.
    async fn say_on(&self, channel: Channel, customer: &str, text: &str) {
        let webhook = self.sim.webhook(channel, customer, text);
        let response = self.sim.deliver(&self.ingress_url, &webhook).await.unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
    }

    /// The customer taps the button `(id, title)` of a message they got on `channel`.
    async fn tap_on(&self, channel: Channel, customer: &str, (id, title): &(String, String)) {
        let webhook = self.sim.webhook_choice(channel, customer, id, title);
        let response = self.sim.deliver(&self.ingress_url, &webhook).await.unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
    }

    /// Every event of the region's stream, in order.
    async fn events(&self) -> Vec<(TicketId, Event)> {
        let mut stream = self
            .store
            .jetstream()
            .get_stream("HELPLINE_DE")
            .await
            .unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut events = Vec::new();
        for seq in 1..=last {
            let Ok(message) = stream.direct_get(seq).await else {
                continue;
            };
            for (meta, event) in self.store.decode(&message.payload).await.unwrap() {
                events.push((meta.ticket, event));
            }
        }
        events
    }

    async fn ticket_of(&self, customer: &str) -> TicketId {
        for _ in 0..200 {
            let found = self
                .events()
                .await
                .into_iter()
                .find_map(|(ticket, event)| match event {
                    Event::TicketOpened { customer: c, .. } if c.contact.expose() == customer => {
                        Some(ticket)
                    }
                    _ => None,
                });
            if let Some(ticket) = found {
                return ticket;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no ticket for {customer}");
    }

    async fn ticket_events(&self, ticket: TicketId) -> Vec<Event> {
        self.events()
            .await
            .into_iter()
            .filter(|(t, _)| *t == ticket)
            .map(|(_, event)| event)
            .collect()
    }

    /// Waits until the bot has sent a message with `prompt` on the ticket and the
    /// customer has received every bot message sent so far; returns what they received.
    async fn until_prompted(&self, customer: &str, prompt: &str) -> Vec<Received> {
        self.until_prompted_on(Channel::WhatsApp, customer, prompt)
            .await
    }

    /// [`Stack::until_prompted`] for a customer on `channel`.
    async fn until_prompted_on(
        &self,
        channel: Channel,
        customer: &str,
        prompt: &str,
    ) -> Vec<Received> {
        let ticket = self.ticket_of(customer).await;
        for _ in 0..400 {
            let events = self.ticket_events(ticket).await;
            let sent = bot_prompts(&events);
            let received = self.sim.received(channel, customer);
            if sent.iter().any(|p| p == prompt) && received.len() >= outbound(&events) {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let events = self.ticket_events(ticket).await;
        panic!(
            "the bot never prompted {prompt:?}; prompts so far {:?}, phase events {:?}, failures {:?}",
            bot_prompts(&events),
            events.iter().map(Event::name).collect::<Vec<_>>(),
            events
                .iter()
                .filter(|e| matches!(e, Event::MessageDeliveryFailed { .. }))
                .collect::<Vec<_>>()
        );
    }

    async fn until_phase(&self, customer: &str, phase: Phase) -> helpline_domain::Ticket {
        let ticket = self.ticket_of(customer).await;
        for _ in 0..400 {
            let loaded = self.store.load(ticket).await.unwrap();
            if loaded.ticket.phase == phase {
                return loaded.ticket;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let loaded = self.store.load(ticket).await.unwrap();
        panic!(
            "ticket stuck in {:?}, expected {phase:?}",
            loaded.ticket.phase
        );
    }

    /// What an agent's client does: take the queued ticket, accept it, resolve it.
    async fn agent_resolves(&self, customer: &str) {
        let ticket = self.ticket_of(customer).await;
        let alice = AgentId::new("alice");
        for command in [
            Command::AssignAgent {
                agent: alice.clone(),
            },
            Command::AcceptAssignment {
                agent: alice.clone(),
            },
            Command::ResolveTicket {
                agent: alice.clone(),
                summary: "account unlocked".to_owned(),
            },
        ] {
            let loaded = self.store.load(ticket).await.unwrap();
            let events = decide(&loaded.ticket, command).unwrap();
            let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
            self.store
                .append(ticket, loaded.version, &events, &meta)
                .await
                .unwrap();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for task in self.running.values() {
            task.abort();
        }
    }
}

fn bot_prompts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::BotMessageSent { prompt, .. } => Some(prompt.clone()),
            _ => None,
        })
        .collect()
}

fn outbound(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|event| matches!(event, Event::BotMessageSent { .. }))
        .count()
}

fn texts(received: &[Received]) -> Vec<String> {
    received.iter().filter_map(|r| r.text.clone()).collect()
}

fn handoff_summary(events: &[Event]) -> String {
    events
        .iter()
        .find_map(|event| match event {
            Event::HandoffRequested { summary, .. } => Some(summary.expose().clone()),
            _ => None,
        })
        .expect("a handoff")
}

/// Every bot message reached the customer exactly once: as many deliveries as messages,
/// and no text twice in a row.
fn assert_each_message_once(events: &[Event], received: &[Received]) {
    assert_eq!(outbound(events), received.len(), "{:#?}", texts(received));
    let sent: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            Event::BotMessageSent {
                body: MessageBody::Text(text),
                ..
            } => Some(text.expose().clone()),
            _ => None,
        })
        .collect();
    for (sent, got) in sent.iter().zip(received) {
        let got = got.text.clone().unwrap_or_default();
        assert!(got.starts_with(sent.as_str()), "sent {sent:?}, got {got:?}");
    }
}

async fn the_customer_is_handed_over_with_a_summary(
    customer: &str,
    first: &str,
    serial: &str,
    problem: &str,
    expected_queue: &str,
) {
    let stack = Stack::start().await;
    stack.say(customer, first).await;
    let received = stack.until_prompted(customer, "ask_serial").await;
    let ticket = stack.ticket_of(customer).await;
    let events = stack.ticket_events(ticket).await;
    assert_eq!(
        bot_prompts(&events)[0],
        "greeting",
        "{:?}",
        texts(&received)
    );

    stack.say(customer, serial).await;
    stack.until_prompted(customer, "ask_problem").await;
    stack.say(customer, problem).await;
    let queued = stack.until_phase(customer, Phase::Queued).await;
    assert_eq!(queued.queue.map(|q| q.0), Some(expected_queue.to_owned()));
    let received = stack.until_prompted(customer, "wait").await;

    let events = stack.ticket_events(ticket).await;
    let summary = handoff_summary(&events);
    for part in ["MateBook X Pro", serial, problem] {
        assert!(summary.contains(part), "{summary:?} lacks {part:?}");
    }
    let details = queued.details.expect("details");
    assert_eq!(details.product, "MateBook X Pro");
    assert_eq!(details.serial_number.expose(), serial);
    assert!(details.serial_verified);
    assert_each_message_once(&events, &received);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_german_customer_is_greeted_asked_for_the_serial_and_handed_over() {
    the_customer_is_handed_over_with_a_summary(
        "4915112345678",
        "Hallo, ich brauche Hilfe mit meinem MateBook X Pro",
        "2NS7N19B12345678",
        "Ich kann mich seit dem Update nicht mehr anmelden",
        "de-laptops",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_english_customer_is_served_in_english_and_handed_over() {
    the_customer_is_handed_over_with_a_summary(
        "447700900123",
        "Hi, I need help with my MateBook X Pro please",
        "4HX2K19C87654321",
        "I cannot log in since the update",
        "de-english",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_hours_the_customer_hears_when_agents_are_back_in_german_and_in_english() {
    let (stack, back) = Stack::start_on_holidays().await;
    let index = usize::from(back.weekday().to_monday_zero_offset().unsigned_abs());
    let weekday = |names: [&'static str; 7]| -> &'static str { names[index] };
    let (day, month) = (back.day(), back.month());
    for (customer, first, serial, problem, expected) in [
        (
            "4915112345678",
            "Hallo, ich brauche Hilfe mit meinem MateBook X Pro",
            "2NS7N19B12345678",
            "Ich kann mich seit dem Update nicht mehr anmelden",
            format!(
                "Wir sind ab {}, {day}.{month}., um 00:00 Uhr wieder für Sie da",
                weekday([
                    "Montag",
                    "Dienstag",
                    "Mittwoch",
                    "Donnerstag",
                    "Freitag",
                    "Samstag",
                    "Sonntag"
                ])
            ),
        ),
        (
            "447700900123",
            "Hi, I need help with my MateBook X Pro please",
            "4HX2K19C87654321",
            "I cannot log in since the update",
            format!(
                "We're back {} {day}/{month} at 00:00",
                weekday([
                    "Monday",
                    "Tuesday",
                    "Wednesday",
                    "Thursday",
                    "Friday",
                    "Saturday",
                    "Sunday"
                ])
            ),
        ),
    ] {
        stack.say(customer, first).await;
        stack.until_prompted(customer, "ask_serial").await;
        stack.say(customer, serial).await;
        stack.until_prompted(customer, "ask_problem").await;
        stack.say(customer, problem).await;
        let received = stack.until_prompted(customer, "out_of_hours").await;
        let said = texts(&received).join("\n");
        assert!(said.contains(&expected), "{said}\nlacks {expected:?}");
        // The ticket waits in its queue for the agents.
        stack.until_phase(customer, Phase::Queued).await;
    }
}

/// The store referral, the rating in the channel, and the CSAT report, with each of bot,
/// routing and feedback killed and restarted along the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_laptop_with_a_hardware_defect_is_referred_to_the_nearest_store_and_rated() {
    let mut stack = Stack::start().await;
    let customer = "4917098765432";
    stack.say(customer, "Hallo").await;
    stack.until_prompted(customer, "greeting").await;
    stack.restart(Service::Bot).await;
    stack.restart(Service::Routing).await;
    stack
        .say(customer, "MateBook, Display defekt, 10115 Berlin")
        .await;
    let referred = stack.until_phase(customer, Phase::AwaitingRating).await;
    assert_eq!(referred.store.map(|s| s.0), Some("berlin-mitte".to_owned()));
    let received = stack.until_prompted(customer, "rating").await;
    let all = texts(&received).join("\n");
    assert!(all.contains("Service Store Berlin Mitte"), "{all}");
    assert!(all.contains("Friedrichstraße 100"), "{all}");
    let rating_request = received.last().unwrap();
    assert!(
        rating_request.body.to_string().contains("⭐⭐⭐⭐⭐"),
        "the rating request offers buttons: {}",
        rating_request.body
    );

    stack.restart(Service::Feedback).await;
    stack.say(customer, "⭐⭐⭐⭐⭐ super").await;
    let closed = stack.until_phase(customer, Phase::Closed).await;
    let rating = closed.rating.expect("rated");
    assert_eq!(rating.score, 5);
    assert_eq!(
        rating.comment.map(|c| c.expose().clone()),
        Some("super".to_owned())
    );

    let ticket = stack.ticket_of(customer).await;
    let events = stack.ticket_events(ticket).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::RatingReceived { score: 5, .. }))
    );
    // Thanks for the rating, then nothing more.
    let received = stack.until_prompted(customer, "rating_thanks").await;
    let events = stack.ticket_events(ticket).await;
    assert_each_message_once(&events, &received);

    let channel = tonic::transport::Channel::from_shared(stack.grpc_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut feedback = FeedbackClient::with_interceptor(
        channel,
        helpline_testkit::bearer::Bearer::new("sabine", helpline_region::Role::Supervisor).unwrap(),
    );
    let mut report = None;
    for _ in 0..100 {
        let response = feedback
            .get_csat(helpline_proto::v1::GetCsatRequest::default())
            .await
            .unwrap()
            .into_inner();
        if response.rows.iter().any(|row| row.ratings > 0) {
            report = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = report.expect("the CSAT report counts the rating");
    let row = &report.rows[0];
    assert_eq!(row.ratings, 1);
    assert!((row.average - 5.0).abs() < f64::EPSILON, "{row:?}");
}

/// Apple Messages for Business end to end: the customer's words reach the bot, the
/// referral and its rating request reach the customer, the rating goes out as Apple's
/// quick reply, and the customer's tap on five stars is the ticket's rating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apple_customer_is_referred_and_rates_with_a_tap_on_the_quick_reply() {
    let stack = Stack::start().await;
    let apple = Channel::AppleMessages;
    let customer = "urn:mbid:AQAAY-apple-customer-1";
    stack.say_on(apple, customer, "Hallo").await;
    stack.until_prompted_on(apple, customer, "greeting").await;
    stack
        .say_on(apple, customer, "MateBook, Display defekt, 10115 Berlin")
        .await;
    stack.until_phase(customer, Phase::AwaitingRating).await;
    let received = stack.until_prompted_on(apple, customer, "rating").await;
    let all = texts(&received).join("\n");
    assert!(all.contains("Service Store Berlin Mitte"), "{all}");
    let rating_request = received.last().unwrap();
    assert_eq!(rating_request.body["type"], "interactive", "a quick reply");
    assert_eq!(
        rating_request
            .choices
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5"]
    );

    stack
        .tap_on(apple, customer, &rating_request.choices[4])
        .await;
    let closed = stack.until_phase(customer, Phase::Closed).await;
    assert_eq!(closed.rating.expect("rated").score, 5);
    let ticket = stack.ticket_of(customer).await;
    let events = stack.ticket_events(ticket).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::RatingReceived { score: 5, .. }))
    );
    let received = stack
        .until_prompted_on(apple, customer, "rating_thanks")
        .await;
    let events = stack.ticket_events(ticket).await;
    assert_each_message_once(&events, &received);
}

/// A restart of each service between the customer's messages changes nothing the
/// customer sees: the conversation goes on where it was, no message twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_services_mid_conversation_continues_it_without_repeating() {
    let mut stack = Stack::start().await;
    let customer = "4915199988877";
    stack.say(customer, "Hallo, mein MateBook X Pro").await;
    stack.until_prompted(customer, "ask_serial").await;
    stack.restart(Service::Bot).await;
    stack.say(customer, "2NS7N19B12345678").await;
    stack.until_prompted(customer, "ask_problem").await;
    stack.restart(Service::Bot).await;
    stack.restart(Service::Routing).await;
    stack
        .say(customer, "Ich kann mich nicht mehr anmelden")
        .await;
    stack.until_phase(customer, Phase::Queued).await;
    stack.until_prompted(customer, "wait").await;
    stack.restart(Service::Bot).await;
    stack.agent_resolves(customer).await;
    stack.until_prompted(customer, "rating").await;
    stack.restart(Service::Feedback).await;
    stack.say(customer, "4").await;
    stack.until_phase(customer, Phase::Closed).await;
    let received = stack.until_prompted(customer, "rating_thanks").await;

    let ticket = stack.ticket_of(customer).await;
    let events = stack.ticket_events(ticket).await;
    assert_eq!(
        bot_prompts(&events),
        [
            "greeting",
            "ask_serial",
            "ask_problem",
            "handoff",
            "wait",
            "rating",
            "rating_thanks"
        ],
        "{:#?}",
        texts(&received)
    );
    // Settle: a redelivered event after the restarts would show up as a late message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = stack.sim.received(Channel::WhatsApp, customer);
    let events = stack.ticket_events(ticket).await;
    assert_each_message_once(&events, &received);
}
