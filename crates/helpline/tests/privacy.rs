//! Personal data, end to end: `helpline all` (every service, as deployed, with its own
//! master key and token key) on a real nats-server, the channel simulator playing
//! WhatsApp. A customer with a known number, name, serial and text talks to the bot; then
//! nothing of theirs may be found in plaintext, neither in any stored message nor in the
//! server's files on disk; the admin-only Privacy API exports it all and erases it; after
//! the erasure every personal field reads "[erased]", the key is gone with its history,
//! and every projection rebuilds. The Privacy API finds the customer by any spelling of
//! their number, and says so when a contact names nobody. The same holds for the
//! providers' ids of the customer's messages (a WhatsApp wamid carries the number) and
//! for a provider's error texts that name the customer, which also never reach the logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::kv::Operation;
use futures::StreamExt as _;
use helpline_assignment::AuthKey;
use helpline_domain::{Channel, Phase};
use helpline_eventstore::{EventStore, MasterKey, StoreConfig};
use helpline_proto::v1 as pb;
use helpline_proto::v1::privacy_client::PrivacyClient;
use helpline_region::Role;
use helpline_testkit::simulator::{Fault, ReceiptKind, Webhook};
use helpline_testkit::{NatsServer, Simulator};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tonic::Code;

const PHONE: &str = "+4915112345678";
/// What WhatsApp reports as the customer's number and profile name (the simulator names
/// a customer "Sim <number>").
const WA_ID: &str = "4915112345678";
const NAME: &str = "Sim +4915112345678";
/// How an operator might type the customer's number.
const SPELLINGS: [&str; 3] = [
    "+4915112345678",
    "0049 151 12345678",
    "+49 (151) 123-456-78",
];
const SERIAL: &str = "2NS7N19B12345678";
const FIRST: &str = "Hallo, mein MateBook X Pro macht Probleme";
const PROBLEM: &str = "Seit dem Update kann ich mich nicht mehr anmelden";

const JWT_SECRET: &str = "privacy-test-signing-key-of-at-least-32-bytes";
const MASTER_KEY: &str = "5f3a9c0e7b1d4f8a2c6e0b9d3f7a1c5e8b2d6f0a4c8e1b5d9f3a7c0e4b8d2f61";

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Deployment {
    nats: NatsServer,
    sim: Simulator,
    _helpline: KillOnDrop,
    config: tempfile::NamedTempFile,
    /// What `helpline all` wrote to stdout and stderr: its logs.
    log: tempfile::NamedTempFile,
    ingress: String,
    grpc: String,
    store: EventStore,
}

impl Deployment {
    async fn start() -> Deployment {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let nats = NatsServer::start().await.unwrap();
        let sim = Simulator::start(Default::default()).await.unwrap();
        // The German region with the simulator as its providers, as an operator's file.
        let channels =
            toml::to_string(&serde_json::json!({ "channels": sim.helpline_channels() })).unwrap();
        let region = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
        let mut config = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut config, format!("{region}\n{channels}").as_bytes()).unwrap();
        let port = || helpline_testkit::free_port().unwrap();
        let (http, ops, grpc) = (port(), port(), port());
        let log = tempfile::NamedTempFile::new().unwrap();
        let helpline = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_helpline"))
                .args(["--config", &config.path().display().to_string(), "all"])
                .env("HELPLINE_NATS_URL", nats.url())
                .env("HELPLINE_INGRESS__LISTEN", format!("127.0.0.1:{http}"))
                .env("HELPLINE_OPS__LISTEN", format!("127.0.0.1:{ops}"))
                .env("HELPLINE_GRPC__LISTEN", format!("127.0.0.1:{grpc}"))
                .env("HELPLINE_CONSOLE__LISTEN", format!("127.0.0.1:{}", port()))
                .env("HELPLINE_AUTH__JWT_SECRET", JWT_SECRET)
                .env("HELPLINE_PRIVACY__MASTER_KEY", MASTER_KEY)
                // Ingress's debug lines too: receipts name the provider's message there.
                .env("HELPLINE_LOG", "info,helpline_ingress=debug")
                .stdout(Stdio::from(log.reopen().unwrap()))
                .stderr(Stdio::from(log.reopen().unwrap()))
                .spawn()
                .unwrap(),
        );
        let store = open_store(&nats).await;
        Deployment {
            nats,
            sim,
            _helpline: helpline,
            config,
            log,
            ingress: format!("http://127.0.0.1:{http}"),
            grpc: format!("http://127.0.0.1:{grpc}"),
            store,
        }
    }

    /// The customer's message, delivered until taken; the webhook as the provider sent it.
    async fn customer_says(&self, text: &str) -> Webhook {
        let webhook = self.sim.webhook(Channel::WhatsApp, PHONE, text);
        self.provider_sends(&webhook).await;
        webhook
    }

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

    /// Waits until the bot has sent `count` messages to the customer.
    async fn customer_got(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sim.received(Channel::WhatsApp, PHONE).len() < count {
            assert!(Instant::now() < deadline, "the bot did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn privacy(&self) -> PrivacyClient<tonic::transport::Channel> {
        PrivacyClient::connect(self.grpc.clone()).await.unwrap()
    }

    fn helpline(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_helpline"))
            .args(["--config", &self.config.path().display().to_string()])
            .args(args)
            .env("HELPLINE_NATS_URL", self.nats.url())
            .env("HELPLINE_AUTH__JWT_SECRET", JWT_SECRET)
            .env("HELPLINE_PRIVACY__MASTER_KEY", MASTER_KEY)
            .output()
            .unwrap()
    }
}

/// The store as the deployment's services see it (same master key), once `helpline all`
/// has set it up.
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

fn token(agent: &str, role: Role) -> String {
    helpline_assignment::auth::issue(
        &AuthKey::new(JWT_SECRET).unwrap(),
        agent,
        role,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap()
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn by_contact(address: &str) -> Option<pb::CustomerRef> {
    Some(pb::CustomerRef {
        customer: Some(pb::customer_ref::Customer::Contact(pb::Contact {
            channel: pb::Channel::Whatsapp.into(),
            address: address.to_owned(),
        })),
    })
}

/// Every secret that occurs in `bytes`.
fn leaks<'a>(bytes: &[u8], secrets: &[&'a str]) -> Vec<&'a str> {
    secrets
        .iter()
        .filter(|secret| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()))
        .copied()
        .collect()
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
}

/// Every message of every stream on the server (the event log, dead letters, timers and
/// every KV bucket), as subject, headers and payload.
async fn every_stored_message(store: &EventStore) -> Vec<(String, Vec<u8>)> {
    let js = store.jetstream();
    let mut names = js.stream_names();
    let mut streams = Vec::new();
    while let Some(name) = names.next().await {
        streams.push(name.unwrap());
    }
    assert!(streams.iter().any(|s| s == "HELPLINE_DE"), "{streams:?}");
    let mut out = Vec::new();
    for name in streams {
        let mut stream = js.get_stream(&name).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        for sequence in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            let mut bytes = message.subject.as_bytes().to_vec();
            for (header, values) in message.headers.iter() {
                let header: &str = header.as_ref();
                bytes.extend_from_slice(header.as_bytes());
                for value in values {
                    bytes.extend_from_slice(value.as_str().as_bytes());
                }
            }
            bytes.extend_from_slice(&message.payload);
            out.push((format!("{name}#{sequence} {}", message.subject), bytes));
        }
    }
    out
}

/// Every secret that anyone with the region's store can still read: every message of the
/// event log opened with the customers' keys, its events as JSON (where a personal value
/// that is known is the value itself).
async fn readable<'a>(store: &EventStore, secrets: &[&'a str]) -> Vec<(String, &'a str)> {
    let mut stream = store.jetstream().get_stream("HELPLINE_DE").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut found = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        for (_, event) in store.decode(&message.payload).await.unwrap() {
            let json = serde_json::to_string(&event).unwrap();
            for secret in leaks(json.as_bytes(), secrets) {
                found.push((format!("#{sequence} {}", event.name()), secret));
            }
        }
    }
    found
}

#[tokio::test]
async fn personal_data_is_sealed_exportable_and_erasable() {
    let deployment = Deployment::start().await;
    let secrets = [WA_ID, NAME, SERIAL, FIRST, PROBLEM];

    // A conversation up to the handoff: greeting, serial, problem.
    deployment.customer_says(FIRST).await;
    deployment.customer_got(1).await;
    deployment.customer_says(SERIAL).await;
    deployment.customer_got(2).await;
    deployment.customer_says(PROBLEM).await;
    let customer = deployment.store.customer_id(Channel::WhatsApp, WA_ID);
    let ticket = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let tickets = helpline_privacy::scan::scan(&deployment.store)
                .await
                .unwrap();
            let handed_over = match tickets
                .iter()
                .find(|t| t.customer.as_ref() == Some(&customer))
            {
                Some(record) => {
                    let loaded = deployment.store.load(record.ticket).await.unwrap();
                    matches!(
                        loaded.ticket.phase,
                        Phase::Queued | Phase::Assigned | Phase::ReferredToStore
                    )
                    .then_some(record.ticket)
                }
                None => None,
            };
            if let Some(ticket) = handed_over {
                break ticket;
            }
            assert!(
                Instant::now() < deadline,
                "the ticket was never handed over"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let loaded = deployment.store.load(ticket).await.unwrap();
    let details = loaded.ticket.details.clone().unwrap();
    assert_eq!(
        details.serial_number.shown(),
        SERIAL,
        "the services read it"
    );
    assert_eq!(
        loaded.ticket.customer.as_ref().unwrap().contact.shown(),
        WA_ID
    );

    // Nothing personal in plaintext: not in any stored message...
    let messages = every_stored_message(&deployment.store).await;
    assert!(messages.len() > 10, "{} messages", messages.len());
    for (what, bytes) in &messages {
        assert_eq!(leaks(bytes, &secrets), Vec::<&str>::new(), "in {what}");
    }
    // ... nor in the server's files on disk.
    let mut stored = Vec::new();
    files(deployment.nats.store_dir(), &mut stored);
    assert!(stored.iter().any(|(_, bytes)| !bytes.is_empty()));
    for (file, bytes) in &stored {
        assert_eq!(leaks(bytes, &secrets), Vec::<&str>::new(), "in {file}");
    }

    // The Privacy API is for admins only.
    let mut privacy = deployment.privacy().await;
    let export = |token: Option<&str>| {
        with_token(
            pb::ExportCustomerRequest {
                customer: by_contact(WA_ID),
            },
            token,
        )
    };
    let refused = privacy.export_customer(export(None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = privacy
        .export_customer(export(Some("not-a-token")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    for (who, role) in [
        ("anna", Role::Agent),
        ("sabine", Role::Supervisor),
        ("anna", Role::Admin),
    ] {
        let refused = privacy
            .export_customer(export(Some(&token(who, role))))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{who} as {role:?}");
        let refused = privacy
            .erase_customer(with_token(
                pb::EraseCustomerRequest {
                    customer: by_contact(WA_ID),
                },
                Some(&token(who, role)),
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{who} as {role:?}");
    }
    let admin = token("ops-admin", Role::Admin);
    let bad = privacy
        .export_customer(with_token(
            pb::ExportCustomerRequest { customer: None },
            Some(&admin),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Export before erasure: every message the customer sent.
    let exported = privacy
        .export_customer(export(Some(&admin)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exported.customer_id, customer.to_string());
    let json: serde_json::Value = serde_json::from_str(&exported.json).unwrap();
    let sent: Vec<&str> = json["tickets"][0]["messages_sent"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["message"]["text"].as_str())
        .collect();
    assert_eq!(sent, [FIRST, SERIAL, PROBLEM]);
    assert_eq!(json["tickets"][0]["contact"], WA_ID);
    assert_eq!(json["tickets"][0]["display_name"], NAME);
    assert_eq!(json["data_key"], "present");
    assert_eq!(json["notification_consent"]["notifications"], "not asked");
    // The same by any spelling of the number.
    for spelled in SPELLINGS {
        let exported = privacy
            .export_customer(with_token(
                pb::ExportCustomerRequest {
                    customer: by_contact(spelled),
                },
                Some(&admin),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(exported.customer_id, customer.to_string(), "{spelled:?}");
        assert!(exported.json.contains(PROBLEM), "{spelled:?}");
    }
    // The same through the command line.
    let cli = deployment.helpline(&[
        "privacy",
        "export",
        "--channel",
        "whatsapp",
        "--contact",
        "0049 151 12345678",
        "--grpc",
        &deployment.grpc,
    ]);
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(stdout.contains(PROBLEM), "{stdout}");

    // A contact that names nobody is not found, and erases nothing; one that is no
    // phone number is the caller's mistake.
    let erase = |address: &str| {
        with_token(
            pb::EraseCustomerRequest {
                customer: by_contact(address),
            },
            Some(&admin),
        )
    };
    let nobody = privacy
        .erase_customer(erase("+49 151 99999999"))
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::NotFound, "{nobody:?}");
    let national = privacy
        .erase_customer(erase("0151 12345678"))
        .await
        .unwrap_err();
    assert_eq!(national.code(), Code::InvalidArgument, "{national:?}");
    let cli = |contact: &str| {
        deployment.helpline(&[
            "privacy",
            "erase",
            "--channel",
            "whatsapp",
            "--contact",
            contact,
            "--grpc",
            &deployment.grpc,
        ])
    };
    let nobody = cli("+49 151 99999999");
    let stderr = String::from_utf8_lossy(&nobody.stderr);
    assert_eq!(nobody.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no ticket and no data key"), "{stderr}");
    let national = cli("0151 12345678");
    let stderr = String::from_utf8_lossy(&national.stderr);
    assert_eq!(national.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("international form"), "{stderr}");
    assert!(deployment.store.customer_has_key(&customer).await.unwrap());

    // Until the erasure the customer's data can be read with the store's keys (which is
    // what the scan after it must not find).
    assert!(!readable(&deployment.store, &secrets).await.is_empty());

    // Erasure, by another spelling than the one WhatsApp sends.
    let erased = privacy
        .erase_customer(erase("+49 (151) 123-456-78"))
        .await
        .unwrap()
        .into_inner();
    assert!(erased.key_purged);
    assert_eq!(erased.ticket_ids, [ticket.to_string()]);
    assert_eq!(erased.tickets_newly_erased, 1);
    // Idempotent, also through the command line.
    let again = deployment.helpline(&[
        "privacy",
        "erase",
        "--customer-id",
        customer.as_str(),
        "--grpc",
        &deployment.grpc,
    ]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(stdout.contains("(0 newly), key already gone"), "{stdout}");

    // The key is gone from the bucket, with its history.
    let keys = deployment
        .store
        .jetstream()
        .get_key_value("helpline-de-customer-keys")
        .await
        .unwrap();
    assert!(keys.get(customer.as_str()).await.unwrap().is_none());
    let mut history = keys.history(customer.as_str()).await.unwrap();
    while let Some(entry) = history.next().await {
        let entry = entry.unwrap();
        assert_eq!(entry.operation, Operation::Purge);
        assert!(entry.value.is_empty());
    }
    assert!(!deployment.store.customer_has_key(&customer).await.unwrap());

    // Nothing of theirs can be read any more, from anything stored...
    assert_eq!(
        readable(&deployment.store, &secrets).await,
        Vec::<(String, &str)>::new()
    );
    for (what, bytes) in &every_stored_message(&deployment.store).await {
        assert_eq!(leaks(bytes, &secrets), Vec::<&str>::new(), "in {what}");
    }

    // Reading the ticket shows "[erased]" for every personal field: from the log...
    let loaded = deployment.store.load_from_log(ticket).await.unwrap();
    assert!(loaded.ticket.erased);
    let customer_now = loaded.ticket.customer.as_ref().unwrap();
    assert_eq!(customer_now.contact.shown(), "[erased]");
    assert!(
        customer_now
            .display_name
            .iter()
            .all(|n| n.shown() == "[erased]")
    );
    let details = loaded.ticket.details.as_ref().unwrap();
    assert_eq!(details.serial_number.shown(), "[erased]");
    assert_eq!(details.problem.shown(), "[erased]");
    for (_, _, mut event) in deployment.store.ticket_events(ticket).await.unwrap() {
        let name = event.name();
        event.personal_fields_mut(|field, value| {
            assert!(!value.holds_known_value(), "{name}.{field} kept its value");
        });
    }
    // ... and from the query service, which shows tickets only to supervisors and admins.
    let mut query = helpline_proto::v1::ticket_query_client::TicketQueryClient::connect(
        deployment.grpc.clone(),
    )
    .await
    .unwrap();
    let get = |token: Option<&str>| {
        with_token(
            pb::GetTicketRequest {
                ticket_id: ticket.to_string(),
            },
            token,
        )
    };
    let refused = query.get_ticket(get(None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = query
        .get_ticket(get(Some(&token("anna", Role::Agent))))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let view = query
        .get_ticket(get(Some(&token("sabine", Role::Supervisor))))
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert!(view.erased);
    assert_eq!(view.customer.unwrap().contact, "[erased]");
    let shown = deployment.helpline(&[
        "tickets",
        "--query-url",
        &deployment.grpc,
        "show",
        &ticket.to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(stdout.contains("[erased]"), "{stdout}");
    assert_eq!(
        leaks(stdout.as_bytes(), &secrets),
        Vec::<&str>::new(),
        "{stdout}"
    );
    let timeline = deployment.helpline(&[
        "tickets",
        "--query-url",
        &deployment.grpc,
        "timeline",
        &ticket.to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&timeline.stdout);
    assert!(timeline.status.success(), "{stdout}");
    assert_eq!(
        leaks(stdout.as_bytes(), &secrets),
        Vec::<&str>::new(),
        "{stdout}"
    );

    // The export now holds nothing of them but the pseudonym.
    let exported = privacy
        .export_customer(export(Some(&admin)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        leaks(exported.json.as_bytes(), &secrets),
        Vec::<&str>::new()
    );
    assert!(exported.json.contains("[erased]"));

    // A full rebuild of every projection completes.
    for projection in ["query", "csat"] {
        let rebuilt = deployment.helpline(&["rebuild", projection]);
        assert!(
            rebuilt.status.success(),
            "rebuild {projection}: {}",
            String::from_utf8_lossy(&rebuilt.stderr)
        );
    }
}

/// What the simulator's WhatsApp says when it refuses a send here: Meta's error text can
/// name the recipient.
const REFUSAL: &str =
    "Message undeliverable: 4915112345678 (Sim +4915112345678) is not on WhatsApp";
/// The title of a failed status WhatsApp reports later, naming the recipient too.
const FAILED_TITLE: &str = "Recipient 4915112345678 has blocked this business";

/// The customer's ticket, once a message of theirs opened it.
async fn ticket_of(
    deployment: &Deployment,
    customer: &helpline_eventstore::CustomerId,
) -> helpline_domain::TicketId {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tickets = helpline_privacy::scan::scan(&deployment.store)
            .await
            .unwrap();
        if let Some(record) = tickets
            .iter()
            .find(|t| t.customer.as_ref() == Some(customer))
        {
            return record.ticket;
        }
        assert!(Instant::now() < deadline, "no ticket opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the ticket's events hold at least `count` that `matches`.
async fn ticket_has(
    deployment: &Deployment,
    ticket: helpline_domain::TicketId,
    count: usize,
    what: &str,
    matches: impl Fn(&helpline_domain::Event) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = deployment.store.ticket_events(ticket).await.unwrap();
        if events.iter().filter(|(_, _, event)| matches(event)).count() >= count {
            return;
        }
        assert!(Instant::now() < deadline, "never recorded: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `receipt` (a WhatsApp status) turned into a failed one with `code` and `title`, signed
/// as WhatsApp signs.
fn whatsapp_failed(sim: &Simulator, receipt: &Webhook, code: i64, title: &str) -> Webhook {
    let mut body: serde_json::Value = serde_json::from_slice(&receipt.body).unwrap();
    let status = &mut body["entry"][0]["changes"][0]["value"]["statuses"][0];
    status["status"] = "failed".into();
    status["errors"] = serde_json::json!([{ "code": code, "title": title, "message": title }]);
    let body = serde_json::to_vec(&body).unwrap();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(sim.config().whatsapp.app_secret.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut failed = receipt.clone();
    for (name, value) in &mut failed.headers {
        if name.eq_ignore_ascii_case("x-hub-signature-256") {
            *value = signature.clone();
        }
    }
    failed.body = body;
    failed
}

/// Every stored message (streams, buckets) and every file of the server that holds one
/// of `secrets`.
async fn found_in_store(deployment: &Deployment, secrets: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (what, bytes) in every_stored_message(&deployment.store).await {
        for secret in leaks(&bytes, secrets) {
            found.push(format!("{secret} in {what}"));
        }
    }
    let mut stored = Vec::new();
    files(deployment.nats.store_dir(), &mut stored);
    for (file, bytes) in stored {
        for secret in leaks(&bytes, secrets) {
            found.push(format!("{secret} in {file}"));
        }
    }
    found
}

#[tokio::test]
async fn providers_ids_and_error_texts_are_sealed_kept_out_of_logs_and_erased() {
    use helpline_domain::Event;

    let deployment = Deployment::start().await;
    let customer = deployment.store.customer_id(Channel::WhatsApp, WA_ID);

    // The greeting goes out; the customer reads it.
    let mut inbound = vec![deployment.customer_says(FIRST).await];
    deployment.customer_got(1).await;
    let ticket = ticket_of(&deployment, &customer).await;
    let greeting = deployment.sim.received(Channel::WhatsApp, PHONE)[0]
        .provider_message_id
        .clone();
    ticket_has(&deployment, ticket, 1, "the greeting delivered", |e| {
        matches!(e, Event::MessageDelivered { .. })
    })
    .await;
    let read =
        deployment
            .sim
            .webhook_receipt(Channel::WhatsApp, PHONE, &greeting, ReceiptKind::Read);
    deployment.provider_sends(&read).await;
    ticket_has(&deployment, ticket, 1, "the read receipt", |e| {
        matches!(e, Event::MessageRead { .. })
    })
    .await;
    // The next reply is refused with a text naming the customer, and WhatsApp later
    // reports the greeting failed, with a title naming them too.
    deployment.sim.inject(
        Channel::WhatsApp,
        Fault::Reject {
            times: 1,
            status: 400,
            code: 131026,
            message: REFUSAL.to_owned(),
        },
    );
    inbound.push(deployment.customer_says(SERIAL).await);
    ticket_has(&deployment, ticket, 1, "the refused send", |e| {
        matches!(e, Event::MessageDeliveryFailed { .. })
    })
    .await;
    let failed = whatsapp_failed(&deployment.sim, &read, 131049, FAILED_TITLE);
    deployment.provider_sends(&failed).await;
    ticket_has(&deployment, ticket, 2, "the failed status", |e| {
        matches!(e, Event::MessageDeliveryFailed { .. })
    })
    .await;
    inbound.push(deployment.customer_says(PROBLEM).await);
    ticket_has(&deployment, ticket, 3, "the three messages", |e| {
        matches!(e, Event::CustomerMessageReceived { .. })
    })
    .await;

    let outbound: Vec<String> = deployment
        .sim
        .received(Channel::WhatsApp, PHONE)
        .into_iter()
        .map(|received| received.provider_message_id)
        .collect();
    let mut ids: Vec<String> = inbound
        .iter()
        .map(|webhook| webhook.provider_message_id.clone())
        .chain(outbound)
        .collect();
    ids.sort();
    ids.dedup();
    assert!(ids.len() >= 4, "{ids:?}");
    // What earlier versions keyed the outbound and dedupe buckets by: a plain hash of an
    // id, which anyone holding the id can compute.
    let plain_hashes: Vec<String> = ids
        .iter()
        .map(|id| hex::encode(Sha256::digest(id.as_bytes())))
        .collect();
    let mut secrets: Vec<&str> = vec![REFUSAL, FAILED_TITLE];
    secrets.extend(ids.iter().map(String::as_str));
    secrets.extend(plain_hashes.iter().map(String::as_str));

    // The services read them while the customer exists: the ticket knows the greeting's
    // provider id (receipts find it), and the agent's supervisor reads why sends failed.
    let loaded = deployment.store.load(ticket).await.unwrap();
    assert!(
        loaded
            .ticket
            .outcomes
            .values()
            .flatten()
            .any(|id| id.read().is_ok_and(|id| *id == greeting)),
        "the greeting's provider id"
    );
    let query = helpline_proto::v1::ticket_query_client::TicketQueryClient::connect(
        deployment.grpc.clone(),
    )
    .await
    .unwrap();
    let timeline = || async {
        query
            .clone()
            .get_timeline(with_token(
                pb::GetTimelineRequest {
                    ticket_id: ticket.to_string(),
                },
                Some(&token("sabine", Role::Supervisor)),
            ))
            .await
            .unwrap()
            .into_inner()
            .entries
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let failures = loop {
        let failures: Vec<String> = timeline()
            .await
            .into_iter()
            .filter(|entry| entry.event_type == "MessageDeliveryFailed")
            .map(|entry| entry.summary)
            .collect();
        if failures.len() >= 2 {
            break failures;
        }
        assert!(Instant::now() < deadline, "the timeline lacks the failures");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(failures.iter().any(|f| f.contains(REFUSAL)), "{failures:?}");
    assert!(
        failures.iter().any(|f| f.contains(FAILED_TITLE)),
        "{failures:?}"
    );

    // Yet none of it is stored in plaintext: not in a message, a header, a subject, a KV
    // key or a file of the server; only opening the events with the key shows it.
    assert_eq!(
        found_in_store(&deployment, &secrets).await,
        Vec::<String>::new()
    );
    let opened: Vec<&str> = readable(&deployment.store, &secrets)
        .await
        .into_iter()
        .map(|(_, secret)| secret)
        .collect();
    for secret in [
        REFUSAL,
        FAILED_TITLE,
        greeting.as_str(),
        inbound[0].provider_message_id.as_str(),
    ] {
        assert!(
            opened.contains(&secret),
            "{secret} not readable with the key"
        );
    }

    // Erasure.
    let erased = deployment
        .privacy()
        .await
        .erase_customer(with_token(
            pb::EraseCustomerRequest {
                customer: by_contact(WA_ID),
            },
            Some(&token("ops-admin", Role::Admin)),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(erased.key_purged);

    // Nothing of them can be read anywhere in the store now: not stored in plaintext,
    // the events open to erased ids and reasons, the ticket's outcomes forget the
    // provider's ids, the timeline shows "[erased]".
    assert_eq!(
        found_in_store(&deployment, &secrets).await,
        Vec::<String>::new()
    );
    assert_eq!(readable(&deployment.store, &secrets).await, Vec::new());
    let mut kinds = std::collections::BTreeSet::new();
    for (_, _, mut event) in deployment.store.ticket_events(ticket).await.unwrap() {
        let name = event.name();
        event.personal_fields_mut(|field, value| {
            if field == "provider_message_id" || field == "reason" {
                kinds.insert(name);
            }
            assert!(!value.holds_known_value(), "{name}.{field} kept its value");
        });
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "CustomerMessageReceived",
            "MessageDelivered",
            "MessageDeliveryFailed",
            "MessageRead"
        ]
    );
    let loaded = deployment.store.load_from_log(ticket).await.unwrap();
    assert!(!loaded.ticket.outcomes.is_empty());
    assert!(
        loaded
            .ticket
            .outcomes
            .values()
            .flatten()
            .all(helpline_domain::Personal::is_erased)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown: String = timeline()
            .await
            .into_iter()
            .map(|entry| format!("{} {}\n", entry.summary, entry.causation_id))
            .collect();
        if leaks(shown.as_bytes(), &secrets).is_empty() && shown.contains("[erased]") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timeline still shows: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The logs never named them, before or after; the refusal is logged by its status
    // and code, beside the ticket and message, which lead to the reason.
    let log = std::fs::read(deployment.log.path()).unwrap();
    assert_eq!(leaks(&log, &secrets), Vec::<&str>::new());
    assert_eq!(
        leaks(&log, &["whatsapp answered 400, error 131026"]),
        ["whatsapp answered 400, error 131026"]
    );
}

/// The export of `customer` an admin asks for, as JSON.
async fn exported(
    privacy: &mut PrivacyClient<tonic::transport::Channel>,
    admin: &str,
    customer: Option<pb::CustomerRef>,
) -> serde_json::Value {
    let answer = privacy
        .export_customer(with_token(
            pb::ExportCustomerRequest { customer },
            Some(admin),
        ))
        .await
        .unwrap()
        .into_inner();
    serde_json::from_str(&answer.json).unwrap()
}

/// One customer across channels: the person who wrote on WhatsApp opens the brand's web
/// chat; supervisor Sabine links the two contacts through AgentDesk. From then on the
/// export by either contact covers both, an unlink takes that back, and the erasure
/// asked by the web chat session erases the WhatsApp contact too: both keys purged,
/// both tickets erased, the export shows nothing of theirs any more.
#[tokio::test]
async fn a_customer_linked_across_whatsapp_and_web_chat_is_one_in_export_and_erasure() {
    const SESSION: &str = "sess_linked_9f2c";
    const WEB_TEXT: &str = "Ich habe gestern schon per WhatsApp geschrieben";
    let deployment = Deployment::start().await;
    let whatsapp = deployment.store.customer_id(Channel::WhatsApp, WA_ID);
    let web = deployment.store.customer_id(Channel::WebChat, SESSION);
    deployment.customer_says(FIRST).await;
    deployment
        .provider_sends(&deployment.sim.webhook(Channel::WebChat, SESSION, WEB_TEXT))
        .await;
    let whatsapp_ticket = ticket_of(&deployment, &whatsapp).await;
    let web_ticket = ticket_of(&deployment, &web).await;

    let mut desk = pb::agent_desk_client::AgentDeskClient::connect(deployment.grpc.clone())
        .await
        .unwrap();
    let sabine = token("sabine", Role::Supervisor);
    let web_contact = || pb::OtherContact {
        who: Some(pb::other_contact::Who::Contact(pb::Contact {
            channel: pb::Channel::WebChat.into(),
            address: SESSION.to_owned(),
        })),
    };
    let link = |other: pb::OtherContact| pb::LinkContactsRequest {
        ticket_id: whatsapp_ticket.to_string(),
        other: Some(other),
    };
    // Only someone who may read the ticket links its customer: anna holds nothing.
    let refused = desk
        .link_contacts(with_token(
            link(web_contact()),
            Some(&token("anna", Role::Agent)),
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // A contact that never wrote is nobody to link.
    let nobody = pb::OtherContact {
        who: Some(pb::other_contact::Who::Contact(pb::Contact {
            channel: pb::Channel::WebChat.into(),
            address: "sess_never_wrote".to_owned(),
        })),
    };
    let refused = desk
        .link_contacts(with_token(link(nobody), Some(&sabine)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    let linked = desk
        .link_contacts(with_token(link(web_contact()), Some(&sabine)))
        .await
        .unwrap()
        .into_inner();
    let contacts: Vec<(String, i32, Vec<String>)> = linked
        .contacts
        .iter()
        .map(|c| (c.customer_id.clone(), c.channel, c.ticket_ids.clone()))
        .collect();
    assert_eq!(
        contacts,
        [
            (
                whatsapp.to_string(),
                pb::Channel::Whatsapp as i32,
                vec![whatsapp_ticket.to_string()]
            ),
            (
                web.to_string(),
                pb::Channel::WebChat as i32,
                vec![web_ticket.to_string()]
            ),
        ]
    );

    // The export by the WhatsApp number holds the web chat ticket and its words too.
    let mut privacy = deployment.privacy().await;
    let admin = token("ops-admin", Role::Admin);
    let by_session = || {
        Some(pb::CustomerRef {
            customer: Some(pb::customer_ref::Customer::Contact(pb::Contact {
                channel: pb::Channel::WebChat.into(),
                address: SESSION.to_owned(),
            })),
        })
    };
    let linked_export: serde_json::Value = exported(&mut privacy, &admin, by_contact(PHONE)).await;
    let ticket_ids = |exported: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = exported["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["ticket_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![whatsapp_ticket.to_string(), web_ticket.to_string()];
    both.sort();
    assert_eq!(ticket_ids(&linked_export), both);
    assert_eq!(
        linked_export["linked_contacts"][0]["customer_id"],
        web.as_str()
    );
    assert_eq!(linked_export["linked_contacts"][0]["channel"], "web");
    let text = linked_export.to_string();
    assert!(text.contains(WEB_TEXT) && text.contains(FIRST), "{text}");
    // And the same person from the other side.
    let from_web: serde_json::Value = exported(&mut privacy, &admin, by_session()).await;
    assert_eq!(ticket_ids(&from_web), both);

    // Unlinked, each contact is its own customer again; linked again, one.
    let unlinked = desk
        .unlink_contacts(with_token(
            pb::UnlinkContactsRequest {
                ticket_id: whatsapp_ticket.to_string(),
                other: Some(pb::OtherContact {
                    who: Some(pb::other_contact::Who::CustomerId(web.to_string())),
                }),
            },
            Some(&sabine),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unlinked.contacts.len(), 1);
    let alone: serde_json::Value = exported(&mut privacy, &admin, by_contact(PHONE)).await;
    assert_eq!(ticket_ids(&alone), [whatsapp_ticket.to_string()]);
    desk.link_contacts(with_token(
        pb::LinkContactsRequest {
            ticket_id: web_ticket.to_string(),
            other: Some(pb::OtherContact {
                who: Some(pb::other_contact::Who::TicketId(
                    whatsapp_ticket.to_string(),
                )),
            }),
        },
        Some(&sabine),
    ))
    .await
    .unwrap();

    // Erasure asked by the web chat session takes the WhatsApp contact with it.
    let erased = privacy
        .erase_customer(with_token(
            pb::EraseCustomerRequest {
                customer: by_session(),
            },
            Some(&admin),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.customer_id, web.to_string());
    assert_eq!(erased.linked_customer_ids, [whatsapp.to_string()]);
    let mut erased_tickets = erased.ticket_ids.clone();
    erased_tickets.sort();
    assert_eq!(erased_tickets, both);
    assert_eq!(erased.tickets_newly_erased, 2);
    assert!(erased.key_purged);
    for customer in [&whatsapp, &web] {
        assert!(!deployment.store.customer_has_key(customer).await.unwrap());
    }
    for ticket in [whatsapp_ticket, web_ticket] {
        ticket_has(&deployment, ticket, 1, "CustomerErased", |event| {
            matches!(event, helpline_domain::Event::CustomerErased)
        })
        .await;
    }
    // Nothing of either is readable in the export any more, and the link is shredded
    // with the keys: each contact is on its own.
    let after: serde_json::Value = exported(&mut privacy, &admin, by_contact(PHONE)).await;
    let text = after.to_string();
    assert!(!text.contains(FIRST) && !text.contains(WEB_TEXT), "{text}");
    assert_eq!(after["data_key"], "erased");
    assert_eq!(ticket_ids(&after), [whatsapp_ticket.to_string()]);
}
