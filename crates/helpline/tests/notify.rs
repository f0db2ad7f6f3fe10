//! Notifications, end to end: `helpline all` on a real nats-server, the channel
//! simulator playing every provider, the brand's system calling the Notifications API.
//!
//! Each channel's lawful way: free text inside WhatsApp's window and the approved
//! template outside it (only after an opt-in); Messenger's message tag outside its
//! window; Telegram and Viber only to customers who wrote; Apple's notice before the first
//! notification; web chat refused. A customer who said "STOP", or unsubscribed on Viber,
//! gets nothing, and the provider is not even asked. And a campaign of 10 000
//! notifications, killed midway and run again, reaches every customer exactly once, at
//! the configured pace as the simulator's clock measures it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use helpline_domain::{Channel, Command as TicketCommand, Customer, MessageBody, MessageId};
use helpline_eventstore::{CommandMeta, EventStore, MasterKey, StoreConfig, chain};
use helpline_proto::v1 as pb;
use helpline_proto::v1::notifications_client::NotificationsClient;
use helpline_region::Role;
use helpline_testkit::simulator::Webhook;
use helpline_testkit::{NatsServer, Simulator};
use tonic::Code;

const JWT_SECRET: &str = "notify-test-signing-key-of-at-least-32-bytes!";
const MASTER_KEY: &str = "0f3a9c0e7b1d4f8a2c6e0b9d3f7a1c5e8b2d6f0a4c8e1b5d9f3a7c0e4b8d2f61";

mod process;

use process::KillOnDrop;

struct Deployment {
    /// What `helpline all` logged (warnings and up).
    log: tempfile::NamedTempFile,
    _nats: NatsServer,
    sim: Simulator,
    _helpline: KillOnDrop,
    config: tempfile::NamedTempFile,
    ingress: String,
    grpc: String,
    store: EventStore,
}

impl Deployment {
    /// The German region with the simulator as its providers; `env` adds settings.
    async fn start(env: &[(&str, &str)]) -> Deployment {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let nats = NatsServer::start().await.unwrap();
        let sim = Simulator::start(Default::default()).await.unwrap();
        let channels =
            toml::to_string(&serde_json::json!({ "channels": sim.helpline_channels() })).unwrap();
        let region = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
        let mut config = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut config, format!("{region}\n{channels}").as_bytes()).unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let (mut command, ports) = process::helpline("all", &nats.url());
        command
            .args(["--config", &config.path().display().to_string()])
            .env("HELPLINE_AUTH__JWT_SECRET", JWT_SECRET)
            .env("HELPLINE_PRIVACY__MASTER_KEY", MASTER_KEY)
            .env("HELPLINE_LOG", "warn")
            .stdout(Stdio::from(log.reopen().unwrap()))
            .stderr(Stdio::from(log.reopen().unwrap()));
        for (name, value) in env {
            command.env(name, value);
        }
        let helpline = KillOnDrop(command.spawn().unwrap());
        let store = open_store(&nats).await;
        let deployment = Deployment {
            log,
            _nats: nats,
            sim,
            _helpline: helpline,
            config,
            ingress: format!("http://127.0.0.1:{}", ports.http),
            grpc: format!("http://127.0.0.1:{}", ports.grpc),
            store,
        };
        // The API answers once every service runs.
        let deadline = Instant::now() + Duration::from_secs(60);
        while deployment.try_client().await.is_none() {
            assert!(
                Instant::now() < deadline,
                "the Notifications API never answered"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        deployment
    }

    async fn try_client(&self) -> Option<NotificationsClient<tonic::transport::Channel>> {
        let mut client = NotificationsClient::connect(self.grpc.clone()).await.ok()?;
        let probe = client
            .get_consent(request(
                pb::GetConsentRequest {
                    contact: Some(contact(Channel::Telegram, "1")),
                },
                Role::Admin,
            ))
            .await;
        probe.ok().map(|_| client)
    }

    async fn client(&self) -> NotificationsClient<tonic::transport::Channel> {
        NotificationsClient::connect(self.grpc.clone())
            .await
            .unwrap()
    }

    async fn notify(
        &self,
        recipient: pb::notify_request::Recipient,
        key: &str,
    ) -> pb::NotifyResponse {
        self.client()
            .await
            .notify(request(repair_ready(recipient, key), Role::Admin))
            .await
            .unwrap()
            .into_inner()
    }

    async fn opt_in(&self, channel: Channel, address: &str) {
        let answer = self
            .client()
            .await
            .record_consent(request(
                pb::RecordConsentRequest {
                    contact: Some(contact(channel, address)),
                    granted: true,
                    marketing_only: false,
                },
                Role::Admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(answer.changed);
    }

    /// A webhook the provider sends, delivered until taken.
    async fn provider_sends(&self, webhook: &Webhook) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.sim.deliver(&self.ingress, webhook).await {
                Ok(response) if response.status == 200 => return,
                other => assert!(Instant::now() < deadline, "webhook not taken: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `customer` got a message whose text or template satisfies `matches`.
    async fn customer_gets(
        &self,
        channel: Channel,
        customer: &str,
        what: &str,
        matches: impl Fn(&helpline_testkit::simulator::Received) -> bool,
    ) -> helpline_testkit::simulator::Received {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(got) = self
                .sim
                .received(channel, customer)
                .into_iter()
                .find(|got| matches(got))
            {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{customer} on {channel:?} never got {what}; got {:#?}",
                self.sim.received(channel, customer)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A customer's conversation that began `hours_ago`: their first ticket, opened by a
    /// message then, as the log would hold it after a day's silence.
    async fn wrote_long_ago(&self, channel: Channel, address: &str, hours_ago: u64) {
        let customer = self.store.customer_id(channel, address);
        let ticket = chain::first_ticket(&customer);
        let at = SystemTime::now() - Duration::from_secs(hours_ago * 3600);
        let (events, _) = helpline_domain::decide_all(
            &Default::default(),
            [
                TicketCommand::OpenTicket {
                    ticket,
                    customer: Customer {
                        channel,
                        contact: address.to_owned().into(),
                        display_name: None,
                    },
                    language: "de".to_owned(),
                },
                TicketCommand::ReceiveCustomerMessage {
                    message: MessageId(uuid::Uuid::now_v7()),
                    provider_message_id: format!("old-{address}").into(),
                    body: MessageBody::Text("Wann ist mein MateBook fertig?".to_owned().into()),
                },
            ],
        )
        .unwrap();
        let meta = CommandMeta::new(uuid::Uuid::now_v7(), at);
        self.store.append(ticket, 0, &events, &meta).await.unwrap();
    }
}

async fn open_store(nats: &NatsServer) -> EventStore {
    let config = StoreConfig {
        master_key: MasterKey::from_hex(MASTER_KEY).unwrap(),
        ..StoreConfig::new("de")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match EventStore::open(nats.connect().await.unwrap(), config.clone()).await {
            Ok(store) => return store,
            Err(e) => assert!(Instant::now() < deadline, "store never set up: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn token(role: Role) -> String {
    process::token_for_role(JWT_SECRET, role)
}

fn request<T>(message: T, role: Role) -> tonic::Request<T> {
    process::request_as(JWT_SECRET, message, role)
}

fn contact(channel: Channel, address: &str) -> pb::Contact {
    pb::Contact {
        channel: helpline_eventstore::codec::channel_to_proto(channel).into(),
        address: address.to_owned(),
    }
}

fn to(channel: Channel, address: &str) -> pb::notify_request::Recipient {
    pb::notify_request::Recipient::Contact(contact(channel, address))
}

fn repair_ready(recipient: pb::notify_request::Recipient, key: &str) -> pb::NotifyRequest {
    pb::NotifyRequest {
        recipient: Some(recipient),
        template: "repair_ready".to_owned(),
        parameters: [
            ("product".to_owned(), "MateBook X Pro".to_owned()),
            ("store".to_owned(), "Service Store Berlin Mitte".to_owned()),
        ]
        .into(),
        language: String::new(),
        idempotency_key: key.to_owned(),
    }
}

const READY_DE: &str = "Gute Nachricht: Ihr MateBook X Pro ist repariert und liegt in Service Store Berlin Mitte zur Abholung bereit.";

#[track_caller]
fn queued(answer: &pb::NotifyResponse) -> &pb::NotificationQueued {
    match &answer.outcome {
        Some(pb::notify_response::Outcome::Queued(queued)) => queued,
        other => panic!("expected queued, got {other:?}"),
    }
}

#[track_caller]
fn refused(answer: &pb::NotifyResponse) -> &pb::NotificationRefused {
    match &answer.outcome {
        Some(pb::notify_response::Outcome::Refused(refused)) => refused,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn each_channel_gets_a_notification_only_in_its_lawful_way() {
    // The scripted conversations began 30 and 48 hours ago: a week's silence timeout
    // keeps the bot from abandoning them before the notifications come.
    let d = Deployment::start(&[("HELPLINE_BOT__SILENCE_TIMEOUT_SECS", "604800")]).await;

    // WhatsApp, inside the window: the customer just wrote, so free text.
    d.provider_sends(&d.sim.webhook(Channel::WhatsApp, "+4915111111111", "Hallo"))
        .await;
    d.customer_gets(Channel::WhatsApp, "+4915111111111", "the greeting", |got| {
        got.text.is_some()
    })
    .await;
    let answer = d
        .notify(to(Channel::WhatsApp, "+4915111111111"), "wa-inside")
        .await;
    assert_eq!(queued(&answer).way, "free_text");
    let got = d
        .customer_gets(
            Channel::WhatsApp,
            "+4915111111111",
            "the notification",
            |got| got.text.as_deref() == Some(READY_DE),
        )
        .await;
    assert_eq!(got.template, None);
    // The same key again: nothing new is written or sent.
    let again = d
        .notify(to(Channel::WhatsApp, "+4915111111111"), "wa-inside")
        .await;
    assert!(queued(&again).duplicate);
    assert_eq!(queued(&again).ticket_id, queued(&answer).ticket_id);

    // WhatsApp, outside the window: a customer who last wrote 30 hours ago gets the
    // approved template with its parameters, once they opted in; before, it is refused.
    d.wrote_long_ago(Channel::WhatsApp, "4915122222222", 30)
        .await;
    let answer = d
        .notify(to(Channel::WhatsApp, "+49 151 22222222"), "wa-outside-1")
        .await;
    assert_eq!(refused(&answer).code, "no_opt_in");
    d.opt_in(Channel::WhatsApp, "+4915122222222").await;
    let answer = d
        .notify(to(Channel::WhatsApp, "+4915122222222"), "wa-outside-2")
        .await;
    assert_eq!(queued(&answer).way, "whatsapp_template");
    let got = d
        .customer_gets(Channel::WhatsApp, "+4915122222222", "the template", |got| {
            got.template.as_deref() == Some("repair_ready")
        })
        .await;
    assert_eq!(got.body["template"]["language"]["code"], "de");
    assert_eq!(
        got.body["template"]["components"][0]["parameters"],
        serde_json::json!([
            {"type": "text", "text": "MateBook X Pro"},
            {"type": "text", "text": "Service Store Berlin Mitte"},
        ])
    );
    // The refused request was never sent: the customer got the template once, and no
    // notification as free text.
    let notifications: Vec<_> = d
        .sim
        .received(Channel::WhatsApp, "+4915122222222")
        .into_iter()
        .filter(|got| got.template.is_some() || got.text.as_deref() == Some(READY_DE))
        .collect();
    assert_eq!(notifications.len(), 1, "{notifications:#?}");
    // The customer's answer continues the ticket the notification is on.
    let ticket = helpline_domain::TicketId(queued(&answer).ticket_id.parse().unwrap());
    d.provider_sends(&d.sim.webhook(
        Channel::WhatsApp,
        "+4915122222222",
        "Danke, ich komme morgen vorbei",
    ))
    .await;
    let events = d.store.ticket_events(ticket).await.unwrap();
    let said: Vec<String> = events
        .iter()
        .filter_map(|(_, _, event)| match event {
            helpline_domain::Event::CustomerMessageReceived {
                body: MessageBody::Text(text),
                ..
            } => Some(text.expose().clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        said,
        [
            "Wann ist mein MateBook fertig?",
            "Danke, ich komme morgen vorbei"
        ],
        "the answer is on the notification's ticket"
    );

    // Messenger, outside the window: the update goes out tagged.
    d.wrote_long_ago(Channel::Messenger, "7000000000000001", 48)
        .await;
    let answer = d
        .notify(to(Channel::Messenger, "7000000000000001"), "fb-outside")
        .await;
    assert_eq!(queued(&answer).way, "messenger_tag");
    let got = d
        .customer_gets(
            Channel::Messenger,
            "7000000000000001",
            "the tagged update",
            |got| got.text.as_deref() == Some(READY_DE),
        )
        .await;
    assert_eq!(got.body["messaging_type"], "MESSAGE_TAG");
    assert_eq!(got.body["tag"], "POST_PURCHASE_UPDATE");

    // Telegram and Viber: a customer who never started the bot is refused, with the
    // reason, and the provider is not asked.
    for (channel, address) in [
        (Channel::Telegram, "555000111"),
        (Channel::Viber, "viber-never=="),
    ] {
        let attempts = d.sim.send_attempts(channel);
        let answer = d
            .notify(to(channel, address), &format!("never-{address}"))
            .await;
        let refusal = refused(&answer);
        assert_eq!(refusal.code, "never_wrote", "{channel:?}");
        assert!(refusal.reason.contains("never wrote"), "{}", refusal.reason);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(d.sim.send_attempts(channel), attempts, "{channel:?}");
    }
    // Web chat: only while the widget is open, which helpline cannot see.
    let answer = d.notify(to(Channel::WebChat, "sess_notify"), "web").await;
    assert_eq!(refused(&answer).code, "widget_not_open");

    // Apple: the notice Apple requires goes first, then the notification.
    d.provider_sends(
        &d.sim
            .webhook(Channel::AppleMessages, "apple-notify", "Hallo"),
    )
    .await;
    let address = d
        .sim
        .customer_address(Channel::AppleMessages, "apple-notify");
    let answer = d
        .notify(to(Channel::AppleMessages, &address), "apple")
        .await;
    assert_eq!(queued(&answer).way, "after_apple_notice");
    d.customer_gets(
        Channel::AppleMessages,
        "apple-notify",
        "the notification",
        |got| got.text.as_deref() == Some(READY_DE),
    )
    .await;
    let texts: Vec<String> = d
        .sim
        .received(Channel::AppleMessages, "apple-notify")
        .into_iter()
        .filter_map(|got| got.text)
        .collect();
    let notice = texts
        .iter()
        .position(|text| text.contains("Unsubscribe"))
        .unwrap_or_else(|| panic!("no notice in {texts:#?}"));
    let ready = texts.iter().position(|text| text == READY_DE).unwrap();
    assert!(notice < ready, "{texts:#?}");
}

#[tokio::test]
async fn nothing_reaches_a_customer_who_opted_out() {
    // Telegram notifications at one every two seconds: a customer's STOP can come while
    // one waits for its turn.
    let d =
        Deployment::start(&[("HELPLINE_EGRESS__NOTIFICATIONS_PER_SECOND__TELEGRAM", "0.5")]).await;

    // On Telegram the customer writes STOP: the bot confirms, and from then on every
    // notification is refused before any request to Telegram.
    d.provider_sends(&d.sim.webhook(Channel::Telegram, "Stopper", "Hallo"))
        .await;
    d.provider_sends(&d.sim.webhook(Channel::Telegram, "Stopper", "STOP"))
        .await;
    d.customer_gets(Channel::Telegram, "Stopper", "the confirmation", |got| {
        got.text
            .as_deref()
            .is_some_and(|text| text.contains("START"))
    })
    .await;
    let address = d.sim.customer_address(Channel::Telegram, "Stopper");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let consent = d
            .client()
            .await
            .get_consent(request(
                pb::GetConsentRequest {
                    contact: Some(contact(Channel::Telegram, &address)),
                },
                Role::Supervisor,
            ))
            .await
            .unwrap()
            .into_inner()
            .consent
            .unwrap();
        if consent.notifications == i32::from(pb::ConsentAnswer::Withdrawn) {
            break;
        }
        assert!(Instant::now() < deadline, "the STOP was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts = d.sim.send_attempts(Channel::Telegram);
    let answer = d.notify(to(Channel::Telegram, &address), "stopped").await;
    assert_eq!(refused(&answer).code, "opted_out");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(d.sim.send_attempts(Channel::Telegram), attempts);

    // START again: notifications flow again.
    d.provider_sends(&d.sim.webhook(Channel::Telegram, "Stopper", "start"))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = d.notify(to(Channel::Telegram, &address), "restarted").await;
        if let Some(pb::notify_response::Outcome::Queued(_)) = answer.outcome {
            break;
        }
        assert!(Instant::now() < deadline, "START never took: {answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.customer_gets(Channel::Telegram, "Stopper", "the notification", |got| {
        got.text.as_deref() == Some(READY_DE)
    })
    .await;

    // Two more wait for their turn when the customer says STOP again: neither goes out.
    for key in ["waiting-1", "waiting-2"] {
        let mut moved = repair_ready(to(Channel::Telegram, &address), key);
        moved.template = "appointment_moved".to_owned();
        moved
            .parameters
            .insert("time".to_owned(), "Montag, 10 Uhr".to_owned());
        let answer = d
            .client()
            .await
            .notify(request(moved, Role::Admin))
            .await
            .unwrap()
            .into_inner();
        queued(&answer);
    }
    d.provider_sends(&d.sim.webhook(Channel::Telegram, "Stopper", "Stop!"))
        .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let moved: Vec<_> = d
        .sim
        .received(Channel::Telegram, "Stopper")
        .into_iter()
        .filter_map(|got| got.text)
        .filter(|text| text.contains("Montag, 10 Uhr"))
        .collect();
    assert!(moved.is_empty(), "sent after the STOP: {moved:?}");

    // On Viber the customer unsubscribes: Viber's callback is their opt-out.
    d.provider_sends(&d.sim.webhook(Channel::Viber, "viber-leaver==", "Hallo"))
        .await;
    d.provider_sends(&d.sim.viber_unsubscribed_webhook("viber-leaver=="))
        .await;
    let attempts = d.sim.send_attempts(Channel::Viber);
    let answer = d.notify(to(Channel::Viber, "viber-leaver=="), "left").await;
    assert_eq!(refused(&answer).code, "opted_out");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The bot's greeting may still be on its way; no notification text ever is.
    assert!(
        d.sim
            .received(Channel::Viber, "viber-leaver==")
            .iter()
            .all(|got| got.text.as_deref() != Some(READY_DE))
    );
    assert!(d.sim.send_attempts(Channel::Viber) >= attempts);
}

#[tokio::test]
async fn the_api_answers_only_supervisors_and_admins_and_names_bad_requests() {
    let d = Deployment::start(&[]).await;
    let mut client = d.client().await;
    let mut anonymous = tonic::Request::new(repair_ready(to(Channel::Telegram, "1"), "k"));
    anonymous.metadata_mut().remove("authorization");
    let status = client.notify(anonymous).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .notify(request(
            repair_ready(to(Channel::Telegram, "1"), "k"),
            Role::Agent,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let mut unknown = repair_ready(to(Channel::Telegram, "1"), "k");
    unknown.template = "free_pizza".to_owned();
    let status = client
        .notify(request(unknown, Role::Supervisor))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("free_pizza"),
        "{}",
        status.message()
    );

    let mut missing = repair_ready(to(Channel::WhatsApp, "+4915133333333"), "k");
    missing.parameters.remove("store");
    d.opt_in(Channel::WhatsApp, "+4915133333333").await;
    let status = client
        .notify(request(missing, Role::Supervisor))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("store"), "{}", status.message());

    let keyless = repair_ready(to(Channel::Telegram, "1"), " ");
    let status = client
        .notify(request(keyless, Role::Supervisor))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let national = repair_ready(to(Channel::WhatsApp, "0151 1234567"), "k2");
    let status = client
        .notify(request(national, Role::Supervisor))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

/// Customers of the campaign and the pace it is sent at: below WhatsApp's own rate in
/// egress (80/s), so that the notifications' pace is the one that binds.
const CAMPAIGN: usize = 10_000;
const PER_SECOND: f64 = 75.0;

// Two threads: the simulator answers (and takes its time stamps) beside the test's own
// waiting and counting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_killed_midway_and_run_again_reaches_every_customer_once_at_its_pace() {
    let rate = PER_SECOND.to_string();
    let d = Deployment::start(&[(
        "HELPLINE_EGRESS__NOTIFICATIONS_PER_SECOND__WHATSAPP",
        rate.as_str(),
    )])
    .await;
    // Customers who opted in on the repair form, in the brand's system.
    let numbers: Vec<String> = (0..CAMPAIGN)
        .map(|n| format!("49160{:08}", 10_000_000 + n))
        .collect();
    let client = d.client().await;
    futures::stream::iter(numbers.clone())
        .for_each_concurrent(32, |number| {
            let mut client = client.clone();
            async move {
                client
                    .record_consent(request(
                        pb::RecordConsentRequest {
                            contact: Some(contact(Channel::WhatsApp, &number)),
                            granted: true,
                            marketing_only: false,
                        },
                        Role::Admin,
                    ))
                    .await
                    .unwrap();
            }
        })
        .await;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let mut csv = String::from("channel,contact,product,store\n");
    for number in &numbers {
        csv.push_str(&format!(
            "whatsapp,+{number},MateBook X Pro,\"Service Store Berlin Mitte, Alexanderplatz\"\n"
        ));
    }
    std::io::Write::write_all(&mut file, csv.as_bytes()).unwrap();

    let campaign = |out: Stdio| {
        Command::new(env!("CARGO_BIN_EXE_helpline"))
            .args([
                "--config",
                &d.config.path().display().to_string(),
                "notify",
                "--url",
                &d.grpc,
                "--token",
                &token(Role::Supervisor),
                "campaign",
                &file.path().display().to_string(),
                "--template",
                "repair_ready",
                "--campaign",
                "ready-2026-12",
                "--concurrency",
                "2",
            ])
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The first run is killed once it has queued about a third of the notifications (the
    // log's growth: one append per notification, and one per delivery recorded), while it
    // is still running: queueing is faster than the pace it is sent at.
    let log_length = || async {
        d.store
            .jetstream()
            .get_stream(d.store.layout().event_stream())
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .last_sequence
    };
    let before = log_length().await;
    let mut first = KillOnDrop(campaign(Stdio::null()));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let queued = (log_length().await - before).saturating_sub(d.sim.received_count() as u64);
        if queued >= (CAMPAIGN / 3) as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the campaign never got going");
        if let Some(status) = first.0.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = first.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("the first run ended early ({status}): {stderr}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "the first run was not cut short"
    );
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let sent_before_restart = d.sim.received_count();

    // Run again with the same name: the rest, nothing twice. Waited for on a thread of
    // its own: the simulator answers on this test's runtime meanwhile.
    let second = campaign(Stdio::piped());
    let second = tokio::task::spawn_blocking(move || second.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let summary = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{summary}");
    assert!(summary.contains("refused 0"), "{summary}");
    let deadline = Instant::now() + Duration::from_secs(180);
    while d.sim.received_count() < CAMPAIGN {
        assert!(
            Instant::now() < deadline,
            "{} of {CAMPAIGN} sent",
            d.sim.received_count()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A moment more for anything sent twice to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let received = d.sim.all_received();
    let mut per_customer: HashMap<&str, usize> = HashMap::new();
    for got in &received {
        assert_eq!(got.template.as_deref(), Some("repair_ready"));
        *per_customer.entry(got.customer.as_str()).or_default() += 1;
    }
    assert_eq!(per_customer.len(), CAMPAIGN, "every customer");
    let twice: BTreeMap<&str, usize> = per_customer.into_iter().filter(|(_, n)| *n > 1).collect();
    if !twice.is_empty() {
        let log = std::fs::read_to_string(d.log.path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().take(80).collect();
        let sends: Vec<String> = received
            .iter()
            .filter(|got| twice.contains_key(got.customer.as_str()))
            .take(6)
            .map(|got| {
                format!(
                    "{} {} {:?}",
                    got.customer, got.provider_message_id, got.received_at
                )
            })
            .collect();
        panic!(
            "sent more than once: {twice:?}\nfirst sends: {sends:#?}\nlog:\n{}",
            tail.join("\n")
        );
    }

    // The pace, by the provider's clock: no second-long window holds more than the rate,
    // and the whole run took at least the time the rate allows.
    let mut at: Vec<Instant> = received.iter().map(|got| got.received_at).collect();
    at.sort();
    let window = Duration::from_secs(1);
    let mut busiest = 0;
    let mut start = 0;
    for end in 0..at.len() {
        while at[end].duration_since(at[start]) >= window {
            start += 1;
        }
        busiest = busiest.max(end - start + 1);
    }
    let span = at[at.len() - 1].duration_since(at[0]).as_secs_f64();
    let overall = (at.len() - 1) as f64 / span;
    println!(
        "campaign: {CAMPAIGN} customers, {sent_before_restart} sent before the kill, busiest second {busiest}, overall {overall:.1}/s at a configured {PER_SECOND}/s, {span:.1} s"
    );
    // Never more than the rate in any second, by the provider's clock (egress counts
    // its requests over windows of 1.1 s, for the network's and the scheduler's
    // bunching on the way). Without its pace the
    // campaign goes at WhatsApp's own rate with its burst of 20: 99 in the busiest
    // second, measured.
    assert!(
        busiest as f64 <= PER_SECOND,
        "{busiest} sends in one second at {PER_SECOND}/s"
    );
    assert!(overall <= PER_SECOND, "{overall:.1}/s");
}
