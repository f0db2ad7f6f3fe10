//! `helpline dlq`: a poison event dead-lettered by a consumer is listed, shown, replayed
//! while the cause persists (a new dead letter), and replayed once it is fixed — handled
//! again at its original sequence, without a second copy in the ticket's log.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use helpline_domain::{Channel, Customer, Event, MessageBody, MessageId, Personal, TicketId};
use helpline_eventstore::{CommandMeta, EventStore, HandlerError, StoreConfig};
use helpline_testkit::NatsServer;
use uuid::Uuid;

const CONSUMER: &str = "ops-test";

struct Harness {
    server: NatsServer,
    store: EventStore,
}

impl Harness {
    fn helpline(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_helpline"))
            .args(["--log-format", "json", "dlq"])
            .args(args)
            .env("HELPLINE_NATS_URL", self.server.url())
            .env("HELPLINE_LOG", "warn")
            .output()
            .unwrap_or_else(|e| panic!("helpline: {e}"))
    }

    async fn dead_letters(&self) -> u64 {
        let mut stream = self
            .store
            .jetstream()
            .get_stream(self.store.layout().dead_letter_stream())
            .await
            .unwrap_or_else(|e| panic!("dead-letter stream: {e}"));
        let info = stream
            .info()
            .await
            .unwrap_or_else(|e| panic!("stream info: {e}"));
        info.state.messages
    }

    async fn wait_for_dead_letters(&self, count: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.dead_letters().await != count {
            assert!(Instant::now() < deadline, "never {count} dead letters");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn log_last_sequence(&self) -> u64 {
        let mut stream = self
            .store
            .jetstream()
            .get_stream(self.store.layout().event_stream())
            .await
            .unwrap_or_else(|e| panic!("event stream: {e}"));
        let info = stream
            .info()
            .await
            .unwrap_or_else(|e| panic!("stream info: {e}"));
        info.state.last_sequence
    }
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_shown_and_replayed_once_fixed() {
    let server = NatsServer::start()
        .await
        .unwrap_or_else(|e| panic!("nats-server: {e}"));
    let client = server
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let config = StoreConfig {
        retry_backoff: Duration::from_millis(10),
        ..StoreConfig::new("de")
    };
    let store = EventStore::ensure(client, config)
        .await
        .unwrap_or_else(|e| panic!("ensure: {e}"));
    let h = Harness { server, store };

    // A consumer that cannot take customer messages until "fixed".
    let broken = Arc::new(AtomicBool::new(true));
    let handled = Arc::new(Mutex::new(Vec::<(u64, &'static str)>::new()));
    let _subscription = h
        .store
        .subscribe(CONSUMER, &h.store.layout().all_tickets(), {
            let (broken, handled) = (broken.clone(), handled.clone());
            move |event| {
                let (broken, handled) = (broken.clone(), handled.clone());
                async move {
                    let poison = matches!(event.event, Event::CustomerMessageReceived { .. });
                    if poison && broken.load(Ordering::SeqCst) {
                        return Err(HandlerError::Permanent(
                            "poison: no parser for this message".to_owned(),
                        ));
                    }
                    handled
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((event.sequence, event.event.name()));
                    Ok(())
                }
            }
        })
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"));

    let ticket = TicketId(Uuid::now_v7());
    let mut version = 0;
    for event in [
        Event::TicketOpened {
            ticket,
            customer: Customer {
                channel: Channel::WhatsApp,
                contact: Personal::from("4915112345678"),
                display_name: None,
            },
            language: "de".to_owned(),
        },
        Event::CustomerMessageReceived {
            message: MessageId(Uuid::now_v7()),
            provider_message_id: "wamid.1".into(),
            body: MessageBody::Text(Personal::from("Mein Akku ist defekt")),
        },
    ] {
        let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
        version = h
            .store
            .append(ticket, version, &[event], &meta)
            .await
            .unwrap_or_else(|e| panic!("append: {e}"))
            .version;
    }
    h.wait_for_dead_letters(1).await;
    let original = format!("{}#{version}", h.store.layout().ticket_subject(ticket));

    // list
    let output = h.helpline(&["list"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    for expected in [
        CONSUMER,
        "CustomerMessageReceived",
        original.as_str(),
        "permanent: poison: no parser for this message",
        "1 dead letters",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in {stdout}");
    }
    let output = h.helpline(&["list", "--json", "--consumer", CONSUMER]);
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("list --json: {e}: {}", text(&output).0));
    let letters = listed.as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 1, "{listed:#}");
    assert_eq!(letters[0]["original_sequence"], version);
    assert_eq!(letters[0]["event_type"], "CustomerMessageReceived");
    let seq = letters[0]["sequence"]
        .as_u64()
        .unwrap_or_else(|| panic!("no sequence in {listed:#}"));
    assert_eq!(
        text(&h.helpline(&["list", "--consumer", "nobody"]))
            .0
            .trim(),
        "no dead letters"
    );

    // show
    let output = h.helpline(&["show", &seq.to_string()]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    for expected in [
        "Helpline-Dead-Letter-Reason: permanent: poison",
        "Helpline-Original-Sequence: 2",
        "type: CustomerMessageReceived",
        "summary: customer: Mein Akku ist defekt",
        &format!("ticket: {}", ticket.0),
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in {stdout}");
    }
    assert_eq!(h.helpline(&["show", "999"]).status.code(), Some(1));
    assert_eq!(h.helpline(&["replay"]).status.code(), Some(2));

    // Replayed while still broken: it fails again and becomes a new dead letter.
    let output = h.helpline(&["replay", &seq.to_string()]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("failed again, now dead letter"), "{stdout}");
    h.wait_for_dead_letters(1).await;

    // Fixed: replayed, handled at its original sequence, and gone from the dead letters.
    broken.store(false, Ordering::SeqCst);
    let output = h.helpline(&["replay", "--all", "--consumer", CONSUMER]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "replayed to {CONSUMER}: handled; dead letter deleted"
        )),
        "{stdout}"
    );
    let handled = handled
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert_eq!(
        handled,
        [(1, "TicketOpened"), (version, "CustomerMessageReceived")]
    );
    assert_eq!(h.dead_letters().await, 0);
    assert_eq!(text(&h.helpline(&["list"])).0.trim(), "no dead letters");
    assert_eq!(
        h.log_last_sequence().await,
        version,
        "the replay wrote to the log"
    );
}
