//! NATS least privilege, against a real nats-server that runs with the deployment's
//! permissions: deploy/nats/nats.conf (docker-compose), which is deploy/nats/values.yaml's
//! `config.merge.authorization` (Helm) rendered for region de.
//!
//! - The two files grant the same, every user signs in with a password from its own
//!   Secret, and the grants say what the design says (only assignment writes agent
//!   subjects, query writes nothing, ...).
//! - Every service runs as its own user (the real binary, one process each, streams set
//!   up by `helpline ensure` as "setup") and carries one conversation from the first
//!   message to the rating, after which the brand notifies customers through notify and
//!   privacy exports and erases the customer (and the contact an agent linked to them);
//!   the server refuses nothing.
//! - Each user reaches the API families it needs beyond that conversation (dead letters
//!   and their replays, media, every reader of data keys), and a service connecting
//!   with another service's permissions cannot do what it does not own: the server
//!   refuses with "Permissions Violation" and nothing changes.
//! - `[nats]` TLS settings reach a server that serves TLS and verifies clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod process;
mod tls;
mod widget_client;

use process::{Ports, get_response as get};
use widget_client::WidgetCustomer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer::pull, kv, object_store, stream};
use async_nats::{ConnectOptions, Event as NatsEvent};
use futures::StreamExt;
use helpline_domain::notify::{Answer, ConsentSource, Scope};
use helpline_domain::{Channel, Phase, TicketId};
use helpline_eventstore::chain;
use helpline_eventstore::consent::ConsentSignal;
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_proto::v1 as pb;
use helpline_testkit::{NatsServer, Simulator, free_port};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

const REGION: &str = "de";
/// How long one step of the conversation may take on a busy machine.
const STEP: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------ the deployment's files

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The `$tplYaml` program under `config.merge.authorization` in deploy/nats/values.yaml.
fn helm_template() -> String {
    let values = read("deploy/nats/values.yaml");
    let lines: Vec<&str> = values.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.trim() == "authorization:")
        .expect("deploy/nats/values.yaml has config.merge.authorization");
    assert_eq!(
        lines[start + 1].trim(),
        "$tplYaml: |",
        "authorization is one $tplYaml block"
    );
    let outer = indentation(lines[start + 1]);
    let block: Vec<&str> = lines[start + 2..]
        .iter()
        .take_while(|line| line.trim().is_empty() || indentation(line) > outer)
        .copied()
        .collect();
    let cut = block
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| indentation(line))
        .min()
        .expect("the block is not empty");
    block
        .iter()
        .map(|line| line.get(cut..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_owned()
}

/// The program as the chart renders it in the namespace helpline-<region>.
fn render(template: &str, region: &str) -> String {
    let mut out = Vec::new();
    for line in template.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("{{-") {
            assert!(
                [
                    r#"{{- $r := trimPrefix "helpline-" .Release.Namespace }}"#,
                    "{{- $R := upper $r }}"
                ]
                .contains(&trimmed),
                "this test renders only the region's two definitions, not {line:?}"
            );
            continue;
        }
        out.push(
            line.replace("{{ $r }}", region)
                .replace("{{ $R }}", &region.to_ascii_uppercase()),
        );
    }
    let rendered = out.join("\n");
    assert!(
        !rendered.contains("{{"),
        "the block uses only {{{{ $r }}}} and {{{{ $R }}}}:\n{rendered}"
    );
    rendered
}

fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rendered block as data (it is JSON with comment lines).
fn as_json(rendered: &str) -> Value {
    serde_json::from_str(&without_comments(rendered))
        .unwrap_or_else(|e| panic!("the authorization block is not JSON: {e}"))
}

/// The rendered block as the chart writes it into nats.conf: `"<< $VAR >>"` becomes the
/// bare variable `$VAR`, which the server reads from its environment.
fn as_nats_conf(rendered: &str) -> String {
    let mut out = String::new();
    let mut rest = rendered;
    while let Some(start) = rest.find("\"<< $") {
        let end = start + rest[start..].find(" >>\"").expect("<< $VAR >> is closed");
        out.push_str(&rest[..start]);
        out.push_str(&rest[start + 4..end]);
        rest = &rest[end + 4..];
    }
    out.push_str(rest);
    out
}

/// Text without comment lines and white space, to compare two renderings.
fn squash(text: &str) -> String {
    without_comments(text)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// The region's authorization as both deployments hold it.
fn authorization() -> Value {
    as_json(&render(&helm_template(), REGION))
}

/// `(user, the environment variable holding its password)` of every user.
fn users(authorization: &Value) -> Vec<(String, String)> {
    authorization["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|user| {
            let name = user["user"].as_str().expect("user").to_owned();
            let password = user["password"].as_str().expect("password");
            let variable = password
                .strip_prefix("<< $")
                .and_then(|p| p.strip_suffix(" >>"))
                .unwrap_or_else(|| {
                    panic!("{name}: the password must be a variable (<< $VAR >>), not written out")
                })
                .to_owned();
            (name, variable)
        })
        .collect()
}

fn grants(authorization: &Value, user: &str, direction: &str, list: &str) -> Vec<String> {
    let user = authorization["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["user"] == user)
        .unwrap_or_else(|| panic!("no user {user}"));
    user["permissions"][direction][list]
        .as_array()
        .map(|subjects| {
            subjects
                .iter()
                .map(|s| s.as_str().expect("a subject").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

const SERVICES: [&str; 9] = [
    "ingress",
    "bot",
    "routing",
    "feedback",
    "assignment",
    "query",
    "privacy",
    "console",
    "notify",
];

#[test]
fn compose_and_helm_grant_the_same_and_what_the_design_says() {
    let rendered = render(&helm_template(), REGION);
    let expected = format!("authorization: {}", as_nats_conf(&rendered));
    assert!(
        squash(&read("deploy/nats/nats.conf")) == squash(&expected),
        "deploy/nats/nats.conf must be deploy/nats/values.yaml's authorization for region \
         {REGION}; after its comments it should read:\n{expected}"
    );

    let auth = as_json(&rendered);
    let users = users(&auth);
    let names: Vec<&str> = users.iter().map(|(name, _)| name.as_str()).collect();
    for needed in SERVICES.iter().chain(&["setup", "admin"]) {
        assert!(names.contains(needed), "no NATS user {needed}: {names:?}");
    }
    // Every password comes from the user's own Secret, in Helm and in compose.
    let values = read("deploy/nats/values.yaml");
    let compose = read("docker-compose.yml");
    for (user, variable) in &users {
        assert_eq!(
            *variable,
            format!("HELPLINE_NATS_{}_PASSWORD", user.to_uppercase())
        );
        let at = values
            .find(&format!("    {variable}:\n"))
            .unwrap_or_else(|| panic!("values.yaml: container.env has no {variable}"));
        let next: String = values[at..].lines().take(5).collect::<Vec<_>>().join("\n");
        assert!(
            next.contains(&format!("name: helpline-nats-{user}")) && next.contains("key: password"),
            "values.yaml: {variable} must come from the Secret helpline-nats-{user}:\n{next}"
        );
        assert!(
            compose.contains(&format!("      {variable}: ")),
            "docker-compose.yml: the nats service has no {variable}"
        );
    }
    // Every workload signs in as its own user with its own Secret.
    for (file, user) in SERVICES
        .iter()
        .map(|s| (format!("deploy/k8s/base/{s}.yaml"), *s))
        .chain([("deploy/k8s/base/ensure.yaml".to_owned(), "setup")])
    {
        let text = read(&file);
        assert!(
            text.contains(&format!(
                "- name: HELPLINE_NATS__USER\n              value: {user}\n"
            )) && text.contains(&format!("name: helpline-nats-{user}\n")),
            "{file}: must sign in as {user} with the Secret helpline-nats-{user}"
        );
    }

    for (user, _) in &users {
        let publish = grants(&auth, user, "publish", "allow");
        let subscribe = grants(&auth, user, "subscribe", "allow");
        if user == "admin" {
            continue;
        }
        assert_eq!(
            subscribe,
            [format!("_INBOX.{user}.>")],
            "{user} reads only its own inbox"
        );
        for subject in &publish {
            assert!(
                !subject.contains("STREAM.DELETE") && !subject.contains(".LEADER.STEPDOWN"),
                "{user}: {subject}: no service deletes streams"
            );
            assert!(
                !["*", ">", "$JS.API.>", "$JS.>", "$KV.>", "helpline.>"]
                    .contains(&subject.as_str()),
                "{user}: {subject} is too broad"
            );
        }
        let may = |subject: &str| publish.iter().any(|s| s == subject);
        assert_eq!(
            may("helpline.de.ticket.*.*"),
            !["query", "setup", "console"].contains(&user.as_str()),
            "{user}: ticket subjects"
        );
        assert_eq!(
            may("helpline.de.agent.*"),
            user == "assignment",
            "{user}: agent subjects"
        );
        assert_eq!(
            may("$KV.helpline-de-customer-keys.>"),
            ["ingress", "privacy", "console", "notify"].contains(&user.as_str()),
            "{user}: writing the key bucket"
        );
        assert_eq!(
            may("$JS.API.DIRECT.GET.KV_helpline-de-customer-keys.>"),
            user != "setup",
            "{user}: reading the key bucket (every service decrypts)"
        );
        assert_eq!(
            may("$KV.helpline-de-contacts.>"),
            ["ingress", "privacy", "notify"].contains(&user.as_str()),
            "{user}: contacts"
        );
        assert_eq!(
            may("helpline.de.customer.*"),
            ["ingress", "bot", "notify"].contains(&user.as_str()),
            "{user}: customers' consent ledgers"
        );
        assert_eq!(
            may("helpline.de.links.*"),
            user == "assignment",
            "{user}: contacts' link ledgers (an agent links two contacts)"
        );
        assert_eq!(
            may("$JS.API.STREAM.CREATE.HELPLINE_DE"),
            user == "setup",
            "{user}: creating the event stream"
        );
        if user == "query" {
            assert!(
                !publish.iter().any(|s| s.starts_with("helpline.")
                    || s.starts_with("$KV.")
                    || s.starts_with("$JS.ACK.")),
                "query publishes nothing: {publish:?}"
            );
        }
        if user == "notify" {
            // An API that follows no log: no consumer on the event stream, no dead letters,
            // no partitions, only the customers' buckets it writes.
            let not_its_own = |s: &&String| {
                (s.starts_with("$JS.API.CONSUMER.")
                    && (s.contains(".HELPLINE_DE") || s.contains("KV_helpline-de-members")))
                    || s.starts_with("$JS.ACK.")
                    || s.starts_with("helpline.de.deadletter.")
                    || s.starts_with("$KV.helpline-de-members.")
                    || s.starts_with("$KV.helpline-de-revocations.")
                    || s.starts_with("$O.")
            };
            let beyond: Vec<&String> = publish.iter().filter(not_its_own).collect();
            assert!(
                beyond.is_empty(),
                "notify reads no log with a consumer and writes no other service's bucket: {beyond:?}"
            );
        }
    }
}

// ------------------------------------------------------------------ a server with them

/// A nats-server with deploy/nats/nats.conf and a random password per user.
struct Deployment {
    nats: NatsServer,
    passwords: BTreeMap<String, String>,
}

impl Deployment {
    async fn start() -> Self {
        let mut builder = NatsServer::builder().config_file(repo_file("deploy/nats/nats.conf"));
        let mut passwords = BTreeMap::new();
        for (user, variable) in users(&authorization()) {
            // As docs/ROLLOUT.md makes them: a letter, then hex.
            let password = format!("h{}", Uuid::now_v7().simple());
            builder = builder.env(variable, password.clone());
            passwords.insert(user, password);
        }
        let nats = builder
            .user_and_password("admin", passwords["admin"].clone())
            .start()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Self { nats, passwords }
    }

    async fn session(&self, user: &str) -> Session {
        Session::connect(&self.nats, user, &self.passwords[user]).await
    }

    fn violations_logged(&self) -> Vec<String> {
        std::fs::read_to_string(self.nats.log_file())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("Violation"))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- what the server refused:\n{}",
                self.violations_logged().join("\n")
            );
        }
    }
}

/// One user's connection, as the binary makes it (replies in `_INBOX.<user>`), with what
/// the server reported to it.
struct Session {
    user: String,
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Session {
    async fn connect(nats: &NatsServer, user: &str, password: &str) -> Self {
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        let client = ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned())
            .custom_inbox_prefix(format!("_INBOX.{user}"))
            .event_callback(move |event| {
                let sink = sink.clone();
                async move {
                    if let NatsEvent::ServerError(error) = event {
                        sink.lock().unwrap().push(error.to_string());
                    }
                }
            })
            .connect(nats.url())
            .await
            .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"));
        Self {
            user: user.to_owned(),
            client,
            errors,
        }
    }

    /// A JetStream context that gives up on an unanswered request after a second.
    fn js(&self) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(1))
            .ack_timeout(Duration::from_secs(1))
            .build(self.client.clone())
    }

    /// Waits until the server told this user it may not publish to (or subscribe to)
    /// `subject`.
    async fn refused(&self, action: &str, subject: &str) {
        let wanted = format!("Permissions Violation for {action} to \"{subject}\"");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self
                .errors
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.contains(&wanted))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the server never said {wanted:?}; it said {:?}",
                self.user,
                self.errors.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn said_nothing(&self) {
        assert_eq!(
            *self.errors.lock().unwrap(),
            Vec::<String>::new(),
            "{}: the server refused something",
            self.user
        );
    }
}

fn store_config() -> StoreConfig {
    StoreConfig {
        request_timeout: Duration::from_secs(2),
        ..StoreConfig::new(REGION)
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + STEP;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Messages stored on `subject` in `stream`, read as admin.
async fn stored(js: &jetstream::Context, stream: &str, subject: &str) -> u64 {
    let stream = js.get_stream(stream).await.unwrap();
    let mut subjects = stream.info_with_subjects(subject).await.unwrap();
    subjects
        .next()
        .await
        .map(|entry| entry.unwrap().1 as u64)
        .unwrap_or(0)
}

// ------------------------------------------------------------------ API families, refusals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_reaches_what_it_needs_and_nothing_another_service_owns() {
    let deployment = Deployment::start().await;
    let admin = deployment.session("admin").await;
    let admin_js = admin.js();

    // Nobody gets in without a user, or with another user's password.
    let anonymous = async_nats::connect(deployment.nats.url()).await;
    assert!(anonymous.is_err(), "a connection without a user is refused");
    let wrong = ConnectOptions::with_user_and_password(
        "bot".to_owned(),
        deployment.passwords["query"].clone(),
    )
    .connect(deployment.nats.url())
    .await;
    assert!(wrong.is_err(), "bot with query's password is refused");

    // (a) The setup user sets up the region; a service user may not.
    let feedback = deployment.session("feedback").await;
    let refused = EventStore::ensure(feedback.client.clone(), store_config()).await;
    assert!(refused.is_err(), "feedback may not create the streams");
    feedback
        .refused("Publish", "$JS.API.STREAM.UPDATE.HELPLINE_DE")
        .await;
    let setup = deployment.session("setup").await;
    EventStore::ensure(setup.client.clone(), store_config())
        .await
        .unwrap_or_else(|e| panic!("setup cannot ensure the store: {e}"));
    setup.said_nothing();

    let mut users = Users::default();
    for user in SERVICES {
        let session = deployment.session(user).await;
        let store = EventStore::open(session.client.clone(), store_config())
            .await
            .unwrap_or_else(|e| panic!("{user} cannot open the store: {e}"));
        users.0.insert(user, (session, store));
    }

    // Durable consumers, dead letters and their replays, through the real subscription:
    // an undecodable event is parked on each consumer's dead-letter subject; an operator
    // (admin) replays it; the consumer takes it from its replay subject, parks it again
    // and deletes the replay.
    let poison = format!("helpline.de.ticket.00.{}", Uuid::now_v7());
    admin_js
        .publish(poison.clone(), "not an event".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let consumers = [
        ("ingress", "egress"),
        ("ingress", "media"),
        ("bot", "bot"),
        ("routing", "routing"),
        ("feedback", "feedback"),
    ];
    let mut subscriptions = Vec::new();
    for (user, consumer) in consumers {
        let subscription = users
            .store(user)
            .subscribe(consumer, "helpline.de.ticket.*.*", |_| async { Ok(()) })
            .await
            .unwrap_or_else(|e| panic!("{user} cannot subscribe as {consumer}: {e}"));
        subscriptions.push(subscription);
    }
    for (user, consumer) in consumers {
        let subject = format!("helpline.de.deadletter.{consumer}");
        eventually(
            &format!("{user} parks the poison event on {subject}"),
            || {
                let (js, subject) = (admin_js.clone(), subject.clone());
                async move { stored(&js, "HELPLINE_DE_DEADLETTER", &subject).await == 1 }
            },
        )
        .await;
    }
    let replayed = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["dlq", "replay", "--all", "--wait-secs", "30"])
        .env("HELPLINE_NATS_URL", deployment.nats.url())
        .env("HELPLINE_NATS__USER", "admin")
        .env("HELPLINE_NATS__PASSWORD", &deployment.passwords["admin"])
        .env("HELPLINE_LOG", "warn")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&replayed.stdout);
    for (user, consumer) in consumers {
        assert!(
            said.contains(&format!("replayed to {consumer}: failed again")),
            "{user} took the replay from its replay subject and parked it again:\n{said}\n{}",
            String::from_utf8_lossy(&replayed.stderr)
        );
        assert_eq!(
            stored(
                &admin_js,
                "HELPLINE_DE_DEADLETTER",
                &format!("helpline.de.replay.{consumer}")
            )
            .await,
            0,
            "{user} deleted the handled replay"
        );
    }
    for subscription in subscriptions {
        subscription.stop().await;
    }

    // Ingress: its media bucket, which it creates, written and read.
    let ingress_js = users.session("ingress").js();
    let media = ingress_js
        .create_object_store(object_store::Config {
            bucket: "helpline-de-media".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("ingress cannot create its media bucket: {e}"));
    media
        .put("photo.jpg", &mut &b"\xff\xd8 a photo"[..])
        .await
        .unwrap_or_else(|e| panic!("ingress cannot store media: {e}"));
    let mut read_back = Vec::new();
    media
        .get("photo.jpg")
        .await
        .unwrap()
        .read_to_end(&mut read_back)
        .await
        .unwrap();
    assert_eq!(read_back, b"\xff\xd8 a photo");

    // Privacy erases a customer: purges the data key ingress made, deletes a snapshot
    // and a contacts entry, appends to the ticket, follows the log.
    let customer = format!("c{}", Uuid::now_v7().simple());
    let keys = |user: &str| {
        let js = users.session(user).js();
        async move { js.get_key_value("helpline-de-customer-keys").await.unwrap() }
    };
    keys("ingress")
        .await
        .create(&customer, "a wrapped key".into())
        .await
        .unwrap_or_else(|e| panic!("ingress cannot make a data key: {e}"));
    for reader in SERVICES {
        let entry = keys(reader).await.entry(&customer).await;
        assert!(
            matches!(entry, Ok(Some(_))),
            "{reader} reads data keys: {entry:?}"
        );
    }
    let contacts = |user: &str| {
        let js = users.session(user).js();
        async move { js.get_key_value("helpline-de-contacts").await.unwrap() }
    };
    let snapshots = |user: &str| {
        let js = users.session(user).js();
        async move { js.get_key_value("helpline-de-snapshots").await.unwrap() }
    };
    contacts("ingress")
        .await
        .put(format!("web.{customer}"), "a ticket".into())
        .await
        .unwrap();
    snapshots("bot")
        .await
        .put("a-ticket", "a snapshot".into())
        .await
        .unwrap();
    keys("privacy").await.purge(&customer).await.unwrap();
    contacts("privacy")
        .await
        .delete(format!("web.{customer}"))
        .await
        .unwrap();
    snapshots("privacy").await.delete("a-ticket").await.unwrap();
    let erased = format!("helpline.de.ticket.00.{}", Uuid::now_v7());
    let privacy_js = users.session("privacy").js();
    privacy_js
        .publish(erased.clone(), "CustomerErased".into())
        .await
        .unwrap()
        .await
        .unwrap_or_else(|e| panic!("privacy cannot append: {e}"));
    let mut follower = privacy_js
        .get_stream_no_info("HELPLINE_DE")
        .await
        .unwrap()
        .create_consumer(pull::OrderedConfig {
            filter_subject: "helpline.de.ticket.*.*".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("privacy cannot follow the log: {e}"));
    assert_eq!(follower.info().await.unwrap().num_pending, 2);
    let first = follower
        .messages()
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.subject.as_str(), poison);

    // Notify: the brand writes first, to a WhatsApp customer who never wrote. It records
    // their opt-in on their own ledger (and reads it back by Direct Get), makes their data
    // key with the append that opens the first ticket of their chain, finds that ticket as
    // the chain's latest (contacts entry, Direct Gets, the followed key bucket) and points
    // their contacts entry at it, and writes a snapshot.
    let notify_store = users.store("notify");
    let number = "4915100000042";
    let whatsapp = notify_store.customer_id(Channel::WhatsApp, number);
    let (consent, changed) = notify_store
        .change_consent(
            Channel::WhatsApp,
            &whatsapp,
            ConsentSignal {
                scope: Scope::All,
                granted: true,
                source: ConsentSource::Brand,
            },
            "nats-permissions",
        )
        .await
        .unwrap_or_else(|e| panic!("notify cannot record consent: {e}"));
    assert!(changed && consent.notifications == Answer::Given);
    assert_eq!(
        notify_store.consent(&whatsapp).await.unwrap().consent,
        consent
    );
    let first_ticket = chain::first_ticket(&whatsapp);
    notify_store
        .append(
            first_ticket,
            0,
            &[opened_on(first_ticket, Channel::WhatsApp, number)],
            &CommandMeta::new(Uuid::now_v7(), SystemTime::now()),
        )
        .await
        .unwrap_or_else(|e| panic!("notify cannot open a ticket: {e}"));
    let notify_contacts = contacts("notify").await;
    let contact_key = notify_store
        .layout()
        .contact_key(Channel::WhatsApp, &whatsapp);
    let latest = notify_store
        .latest_ticket(&notify_contacts, &contact_key, &whatsapp, None)
        .await
        .unwrap_or_else(|e| panic!("notify cannot find the customer's latest ticket: {e}"));
    assert_eq!(latest.map(|(ticket, _)| ticket), Some(first_ticket));
    chain::point_contact(&notify_contacts, &contact_key, first_ticket)
        .await
        .unwrap_or_else(|e| panic!("notify cannot point the contacts entry: {e}"));
    assert_eq!(
        chain::pointed_ticket(&notify_contacts, &contact_key)
            .await
            .unwrap(),
        Some(first_ticket)
    );
    snapshots("notify")
        .await
        .put("a-notified-ticket", "a snapshot".into())
        .await
        .unwrap_or_else(|e| panic!("notify cannot write a snapshot: {e}"));
    for user in SERVICES {
        users.session(user).said_nothing();
    }

    // ----- refusals: a service with another's permissions.
    let ticket = TicketId(Uuid::now_v7());
    let ticket_subject = helpline_eventstore::Layout::new("de")
        .unwrap()
        .ticket_subject(ticket);

    // Query is read-only: no append, by the store or by hand, no snapshot.
    let query = users.session("query");
    let appended = users
        .store("query")
        .append(
            ticket,
            0,
            &[opened(ticket)],
            &CommandMeta::new(Uuid::now_v7(), SystemTime::now()),
        )
        .await;
    assert!(appended.is_err(), "query appended: {appended:?}");
    let by_hand = query.js().publish(ticket_subject.clone(), "x".into()).await;
    assert!(
        by_hand.is_ok(),
        "a publish is sent and refused by the server"
    );
    assert!(
        by_hand.unwrap().await.is_err(),
        "query's append was acknowledged"
    );
    query.refused("Publish", &ticket_subject).await;
    let snapshot = snapshots("query").await.put("a-ticket", "x".into()).await;
    assert!(snapshot.is_err());
    query
        .refused("Publish", "$KV.helpline-de-snapshots.a-ticket")
        .await;
    assert_eq!(stored(&admin_js, "HELPLINE_DE", &ticket_subject).await, 0);

    // Only assignment writes agents' presence and capacity.
    for user in [
        "routing", "ingress", "bot", "feedback", "query", "privacy", "notify",
    ] {
        let acked = users
            .session(user)
            .js()
            .publish("helpline.de.agent.anna", "AgentCapacityClaimed".into())
            .await
            .unwrap()
            .await;
        assert!(acked.is_err(), "{user} wrote an agent subject");
        users
            .session(user)
            .refused("Publish", "helpline.de.agent.anna")
            .await;
    }
    assert_eq!(
        stored(&admin_js, "HELPLINE_DE", "helpline.de.agent.anna").await,
        0
    );

    // Only ingress, the console and notify make data keys and only privacy purges them. (A
    // purge is a write to the key's own subject, as a create is: the server cannot tell
    // the two apart, so the writers' code is what never purges.)
    for user in ["bot", "routing", "feedback", "assignment", "query"] {
        let bucket = keys(user).await;
        assert!(bucket.put(&customer, "forged".into()).await.is_err());
        assert!(bucket.purge("another-customer").await.is_err());
        let subject = format!("$KV.helpline-de-customer-keys.{customer}");
        users.session(user).refused("Publish", &subject).await;
        users
            .session(user)
            .refused("Publish", "$KV.helpline-de-customer-keys.another-customer")
            .await;
    }
    let entry = keys("ingress").await.entry(&customer).await.unwrap();
    assert!(
        entry.is_some_and(|e| e.operation == kv::Operation::Purge),
        "the purge stands; nothing forged a key"
    );

    // Contacts are ingress's and privacy's.
    for user in ["bot", "routing", "feedback", "assignment", "query"] {
        let opened = users
            .session(user)
            .js()
            .get_key_value("helpline-de-contacts")
            .await;
        assert!(opened.is_err(), "{user} opened the contacts bucket");
        users
            .session(user)
            .refused("Publish", "$JS.API.STREAM.INFO.KV_helpline-de-contacts")
            .await;
    }

    // No service creates, changes or deletes a stream.
    for user in SERVICES {
        let js = users.session(user).js();
        let created = js
            .create_stream(stream::Config {
                name: "EXFILTRATE".to_owned(),
                subjects: vec!["helpline.de.>".to_owned()],
                ..Default::default()
            })
            .await;
        assert!(created.is_err(), "{user} created a stream");
        users
            .session(user)
            .refused("Publish", "$JS.API.STREAM.CREATE.EXFILTRATE")
            .await;
        assert!(js.delete_stream("HELPLINE_DE").await.is_err());
        users
            .session(user)
            .refused("Publish", "$JS.API.STREAM.DELETE.HELPLINE_DE")
            .await;
        let purged = js
            .get_stream_no_info("HELPLINE_DE")
            .await
            .unwrap()
            .purge()
            .await;
        assert!(purged.is_err(), "{user} purged the log");
        users
            .session(user)
            .refused("Publish", "$JS.API.STREAM.PURGE.HELPLINE_DE")
            .await;
    }
    admin_js.get_stream("HELPLINE_DE").await.unwrap();

    // A consumer is its service's: no other may delete it, pull from it or redefine it.
    let before = admin_js
        .get_stream("HELPLINE_DE")
        .await
        .unwrap()
        .consumer_info("bot-0")
        .await
        .unwrap();
    for user in ["query", "assignment", "feedback", "routing", "notify"] {
        let js = users.session(user).js();
        assert!(
            js.delete_consumer_from_stream("bot-0", "HELPLINE_DE")
                .await
                .is_err()
        );
        users
            .session(user)
            .refused("Publish", "$JS.API.CONSUMER.DELETE.HELPLINE_DE.bot-0")
            .await;
        let inbox = users.session(user).client.new_inbox();
        users
            .session(user)
            .client
            .publish_with_reply(
                "$JS.API.CONSUMER.MSG.NEXT.HELPLINE_DE.bot-0",
                inbox,
                "{\"batch\":10}".into(),
            )
            .await
            .unwrap();
        users
            .session(user)
            .refused("Publish", "$JS.API.CONSUMER.MSG.NEXT.HELPLINE_DE.bot-0")
            .await;
    }
    // The ordered consumers' unnamed create cannot smuggle in the durable's name.
    let smuggled: Result<Value, _> = query
        .js()
        .request(
            "CONSUMER.CREATE.HELPLINE_DE",
            &serde_json::json!({
                "stream_name": "HELPLINE_DE",
                "config": {"durable_name": "bot-0", "name": "bot-0", "filter_subject": "helpline.de.agent.*"},
            }),
        )
        .await;
    assert!(
        smuggled
            .as_ref()
            .is_ok_and(|answer| answer.get("error").is_some()),
        "JetStream refuses a durable through the ephemeral form: {smuggled:?}"
    );
    let after = admin_js
        .get_stream("HELPLINE_DE")
        .await
        .unwrap()
        .consumer_info("bot-0")
        .await
        .unwrap();
    assert_eq!(before.config.filter_subjects, after.config.filter_subjects);
    assert_eq!(
        before.created, after.created,
        "the bot's consumer is untouched"
    );

    // A dead letter is its consumer's.
    let acked = users
        .session("bot")
        .js()
        .publish("helpline.de.deadletter.routing", "forged".into())
        .await
        .unwrap()
        .await;
    assert!(acked.is_err());
    users
        .session("bot")
        .refused("Publish", "helpline.de.deadletter.routing")
        .await;

    // Notify follows no log: no consumer on the event stream, not even an ordered one.
    let notify = users.session("notify");
    let followed = notify
        .js()
        .get_stream_no_info("HELPLINE_DE")
        .await
        .unwrap()
        .create_consumer(pull::OrderedConfig {
            filter_subject: "helpline.de.ticket.*.*".to_owned(),
            ..Default::default()
        })
        .await;
    assert!(followed.is_err(), "notify followed the log");
    notify
        .refused("Publish", "$JS.API.CONSUMER.CREATE.HELPLINE_DE")
        .await;
    // Nor does it touch another service's bucket: the revocations are assignment's to
    // write (notify only follows them), the inbound dedupe is ingress's, the partitions'
    // heartbeats the consumers'.
    let revocations = notify
        .js()
        .get_key_value("helpline-de-revocations")
        .await
        .unwrap_or_else(|e| panic!("notify cannot follow the revocations: {e}"));
    assert!(revocations.put("anna", "forged".into()).await.is_err());
    notify
        .refused("Publish", "$KV.helpline-de-revocations.anna")
        .await;
    assert!(
        notify
            .js()
            .get_key_value("helpline-de-inbound")
            .await
            .is_err()
    );
    notify
        .refused("Publish", "$JS.API.STREAM.INFO.KV_helpline-de-inbound")
        .await;
    let acked = notify
        .js()
        .publish("$KV.helpline-de-members.bot.0", "forged".into())
        .await
        .unwrap()
        .await;
    assert!(acked.is_err(), "notify wrote a heartbeat");
    notify
        .refused("Publish", "$KV.helpline-de-members.bot.0")
        .await;

    // Replies are read only by whoever asked: no service reads another's inbox.
    query.client.subscribe("_INBOX.bot.>").await.unwrap();
    query.refused("Subscription", "_INBOX.bot.>").await;
    query.client.subscribe("_INBOX.>").await.unwrap();
    query.refused("Subscription", "_INBOX.>").await;

    // The setup user writes no message.
    let acked = setup
        .js()
        .publish(ticket_subject.clone(), "x".into())
        .await
        .unwrap()
        .await;
    assert!(acked.is_err());
    setup.refused("Publish", &ticket_subject).await;
    assert_eq!(stored(&admin_js, "HELPLINE_DE", &ticket_subject).await, 0);

    let logged = deployment.violations_logged();
    assert!(
        logged.iter().any(|line| line.contains("user:query")
            && line.contains("Publish Violation")
            && line.contains(&ticket_subject)),
        "the server logs who was refused what: {logged:?}"
    );
}

/// Every service user's connection, and the event store it opened.
#[derive(Default)]
struct Users(BTreeMap<&'static str, (Session, EventStore)>);

impl Users {
    fn session(&self, user: &str) -> &Session {
        &self.0[user].0
    }

    fn store(&self, user: &str) -> &EventStore {
        &self.0[user].1
    }
}

fn opened(ticket: TicketId) -> helpline_domain::Event {
    opened_on(ticket, Channel::WebChat, "sess_query")
}

fn opened_on(ticket: TicketId, channel: Channel, contact: &str) -> helpline_domain::Event {
    helpline_domain::Event::TicketOpened {
        ticket,
        customer: helpline_domain::Customer {
            channel,
            contact: helpline_domain::Personal::new(contact.to_owned()),
            display_name: None,
        },
        language: "de".to_owned(),
    }
}

// ------------------------------------------------------------------ every service, running

/// A helpline process; killed on drop, its log printed when the test failed.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- {} (last lines)\n{}",
                self.name,
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    }
}

fn helpline(name: &str, args: &[&str], env: &[(String, String)], dir: &Path) -> Process {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(args)
        .args(["--log-format", "json"])
        .env("HELPLINE_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Process {
        name: name.to_owned(),
        child,
        log,
    }
}

fn signed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Delivers one customer message as a web chat webhook, again while ingress answers 503.
async fn say(sim: &Simulator, ingress: &str, customer: &str, text: &str) {
    let webhook = sim.webhook(Channel::WebChat, customer, text);
    let deadline = Instant::now() + STEP;
    loop {
        let answer = sim.deliver(ingress, &webhook).await.unwrap();
        if answer.status == 200 {
            return;
        }
        assert!(
            answer.status == 503 && Instant::now() < deadline,
            "the webhook was answered {}: {}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the bot sent `prompt` and the customer received everything sent.
async fn asked(
    store: &EventStore,
    sim: &Simulator,
    customer: &str,
    ticket: TicketId,
    prompt: &str,
) {
    let deadline = Instant::now() + STEP;
    loop {
        let loaded = store.load(ticket).await.unwrap();
        let received = sim.received(Channel::WebChat, customer).len();
        if loaded.ticket.prompted(prompt) > 0
            && received >= loaded.ticket.outbound_messages as usize
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the bot never sent {prompt:?} (last: {:?}; phase {})",
            loaded.ticket.last_prompt,
            loaded.ticket.phase
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn reaches(store: &EventStore, ticket: TicketId, phase: Phase) {
    let deadline = Instant::now() + STEP;
    loop {
        let now = store.load(ticket).await.unwrap().ticket.phase;
        if now == phase {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the ticket stayed {now}, not {phase}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_carries_a_conversation_as_its_own_user_and_the_server_refuses_nothing() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let deployment = Deployment::start().await;
    let sim = Simulator::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwt = "nats-permissions-test-agentdesk-key-0001";
    let services = SERVICES;
    let ports: BTreeMap<&str, Ports> = services
        .iter()
        .map(|s| {
            let ports = Ports {
                ops: free_port().unwrap(),
                grpc: free_port().unwrap(),
                http: free_port().unwrap(),
                console: free_port().unwrap(),
            };
            (*s, ports)
        })
        .collect();
    let env = |user: &str| -> Vec<(String, String)> {
        let mut env = vec![
            ("HELPLINE_NATS_URL".to_owned(), deployment.nats.url()),
            ("HELPLINE_NATS__USER".to_owned(), user.to_owned()),
            (
                "HELPLINE_NATS__PASSWORD".to_owned(),
                deployment.passwords[user].clone(),
            ),
            (
                "HELPLINE_EVENTSTORE__ENSURE_ON_START".to_owned(),
                "false".to_owned(),
            ),
            ("HELPLINE_AUTH__JWT_SECRET".to_owned(), jwt.to_owned()),
        ];
        if let Some(ports) = ports.get(user) {
            for (key, port) in [
                ("HELPLINE_OPS__LISTEN", ports.ops),
                ("HELPLINE_GRPC__LISTEN", ports.grpc),
                ("HELPLINE_INGRESS__LISTEN", ports.http),
                ("HELPLINE_CONSOLE__LISTEN", ports.console),
            ] {
                env.push((key.to_owned(), format!("127.0.0.1:{port}")));
            }
        }
        // The web chat's replies go through the console's widget, which passes those of
        // the simulator's sessions on to the simulator.
        let url = |service: &str, port: fn(&Ports) -> u16| {
            ports
                .get(service)
                .map(|p| format!("http://127.0.0.1:{}", port(p)))
                .unwrap_or_default()
        };
        let web_secret = (
            "HELPLINE_CHANNELS__WEB__SHARED_SECRET".to_owned(),
            sim.config().web.shared_secret.clone(),
        );
        // WhatsApp, for the brand's notification, which egress sends.
        let whatsapp = &sim.config().whatsapp;
        let whatsapp_section = [
            ("APP_SECRET", whatsapp.app_secret.clone()),
            ("VERIFY_TOKEN", whatsapp.verify_token.clone()),
        ]
        .map(|(key, value)| (format!("HELPLINE_CHANNELS__WHATSAPP__{key}"), value));
        if user == "ingress" {
            env.push(web_secret);
            env.extend(whatsapp_section);
            for (key, value) in [
                ("ACCESS_TOKEN", whatsapp.access_token.clone()),
                ("PHONE_NUMBER_ID", whatsapp.phone_number_id.clone()),
                ("API_BASE_URL", sim.api_base_url(Channel::WhatsApp)),
            ] {
                env.push((format!("HELPLINE_CHANNELS__WHATSAPP__{key}"), value));
            }
            env.push((
                "HELPLINE_CHANNELS__WEB__CALLBACK_URL".to_owned(),
                format!("{}/widget/callback", url("console", |p| p.console)),
            ));
            // The widget's attachments come from the console.
            env.push((
                "HELPLINE_INGRESS__MEDIA_HOSTS__WEB".to_owned(),
                format!("[\"{}\"]", url("console", |p| p.console)),
            ));
        } else if user == "console" {
            env.push(web_secret);
            for (key, value) in [
                ("AGENT_DESK_URL", url("assignment", |p| p.grpc)),
                ("QUERY_URL", url("query", |p| p.grpc)),
                ("FEEDBACK_URL", url("feedback", |p| p.grpc)),
                (
                    "WIDGET_WEBHOOK_URL",
                    format!("{}/webhooks/web", url("ingress", |p| p.http)),
                ),
                ("WIDGET_FORWARD_URL", sim.api_base_url(Channel::WebChat)),
            ] {
                env.push((format!("HELPLINE_CONSOLE__{key}"), value));
            }
        }
        // Notify holds no channel's secret: the region file names its channels.
        env
    };
    let mut running = Vec::new();
    for service in &services {
        let args: &[&str] = match *service {
            "privacy" => &["privacy", "serve"],
            "notify" => &["notify", "serve"],
            other => &[other],
        };
        running.push(helpline(service, args, &env(service), dir.path()));
    }

    // The services wait for the streams, which only setup may create: no webhook is
    // taken before.
    let http = ports["ingress"].http;
    let ingress = format!("http://127.0.0.1:{http}");
    let customer = "sess_permissions";
    eventually("ingress listens", move || async move {
        get(http, "/healthz").await.is_some()
    })
    .await;
    let early = sim
        .deliver(&ingress, &sim.webhook(Channel::WebChat, customer, "Hallo?"))
        .await
        .unwrap();
    assert_eq!(
        early.status, 503,
        "a webhook was taken before the streams existed"
    );
    // As the Job runs it: with the region file, without the master key.
    let ensured = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .arg("ensure")
        .envs(env("setup"))
        .env(
            "HELPLINE_CONFIG",
            repo_file("deploy/k8s/overlays/de/helpline.toml"),
        )
        .env("HELPLINE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        ensured.status.success(),
        "helpline ensure as setup: {}",
        String::from_utf8_lossy(&ensured.stderr)
    );
    for service in &services {
        let ops = ports[service].ops;
        eventually(&format!("{service} is ready"), move || async move {
            get(ops, "/readyz")
                .await
                .is_some_and(|(status, _)| status == 200)
        })
        .await;
    }

    let admin = deployment.session("admin").await;
    let store = EventStore::open(admin.client.clone(), StoreConfig::new(REGION))
        .await
        .unwrap();
    let grpc = |service: &str| format!("http://127.0.0.1:{}", ports[service].grpc);

    // Agent Anna signs in to assignment's AgentDesk and watches for offers.
    let key = helpline_assignment::AuthKey::new(jwt.as_bytes()).unwrap();
    let token = helpline_assignment::auth::issue(
        &key,
        "anna",
        helpline_region::Role::Agent,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap();
    // Supervisor Sabine reads tickets through the query service.
    let supervisor = helpline_assignment::auth::issue(
        &key,
        "sabine",
        helpline_region::Role::Supervisor,
        Duration::from_secs(600),
        SystemTime::now(),
    )
    .unwrap();
    let mut desk = pb::agent_desk_client::AgentDeskClient::connect(grpc("assignment"))
        .await
        .unwrap();
    desk.sign_in(signed(&token, pb::SignInRequest {}))
        .await
        .unwrap();
    let mut watch = desk
        .watch(signed(&token, pb::WatchRequest {}))
        .await
        .unwrap()
        .into_inner();

    // The first message opens a ticket, which query lists.
    say(
        &sim,
        &ingress,
        customer,
        "Hallo, ich brauche Hilfe mit meinem MateBook X Pro",
    )
    .await;
    let mut tickets = pb::ticket_query_client::TicketQueryClient::connect(grpc("query"))
        .await
        .unwrap();
    let deadline = Instant::now() + STEP;
    let ticket = loop {
        let listed = tickets
            .list_tickets(signed(&supervisor, pb::ListTicketsRequest::default()))
            .await
            .unwrap()
            .into_inner();
        if let Some(view) = listed.tickets.first() {
            break TicketId(view.ticket_id.parse().unwrap());
        }
        assert!(Instant::now() < deadline, "query never listed the ticket");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    asked(&store, &sim, customer, ticket, "ask_serial").await;
    say(&sim, &ingress, customer, "2NS7N19B12345678").await;
    asked(&store, &sim, customer, ticket, "ask_problem").await;
    say(
        &sim,
        &ingress,
        customer,
        "Ich kann mich seit dem Update nicht mehr anmelden",
    )
    .await;
    reaches(&store, ticket, Phase::Assigned).await;

    let id = ticket.to_string();
    tokio::time::timeout(STEP, async {
        loop {
            let update = watch.message().await.unwrap().expect("the watch goes on");
            if let Some(pb::watch_response::Update::Ticket(offer)) = update.update
                && offer.ticket_id == id
                && !offer.accepted
            {
                return;
            }
        }
    })
    .await
    .expect("anna is offered the ticket");
    desk.accept(signed(
        &token,
        pb::AcceptRequest {
            ticket_id: id.clone(),
        },
    ))
    .await
    .unwrap();
    let reply = pb::ReplyRequest {
        ticket_id: id.clone(),
        body: Some(pb::MessageBody {
            content: Some(pb::message_body::Content::Text(
                "Guten Tag, hier ist Anna.".to_owned(),
            )),
        }),
        request_id: uuid::Uuid::now_v7().to_string(),
        canned_reply: String::new(),
    };
    desk.reply(signed(&token, reply)).await.unwrap();
    // The customer says they wrote from another session before: anna links the two
    // contacts (assignment writes both link ledgers) and reads the customer's history.
    let other_session = "sess_permissions_before";
    say(&sim, &ingress, other_session, "Hallo?").await;
    let linked = desk
        .link_contacts(signed(
            &token,
            pb::LinkContactsRequest {
                ticket_id: id.clone(),
                other: Some(pb::OtherContact {
                    who: Some(pb::other_contact::Who::Contact(pb::Contact {
                        channel: pb::Channel::WebChat.into(),
                        address: other_session.to_owned(),
                    })),
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(linked.contacts.len(), 2, "{linked:?}");
    let history = desk
        .list_linked_contacts(signed(
            &token,
            pb::ListLinkedContactsRequest {
                ticket_id: id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.contacts[0].ticket_ids, vec![id.clone()]);
    assert_eq!(history.contacts[1].ticket_ids.len(), 1, "{history:?}");
    let deadline = Instant::now() + STEP;
    while !sim.received(Channel::WebChat, customer).iter().any(|r| {
        r.text
            .as_deref()
            .is_some_and(|t| t.contains("hier ist Anna"))
    }) {
        assert!(
            Instant::now() < deadline,
            "the agent's reply never reached the customer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say(&sim, &ingress, customer, "Danke, jetzt klappt es wieder!").await;
    let resolve = pb::ResolveRequest {
        ticket_id: id.clone(),
        summary: "Konto zurückgesetzt".to_owned(),
    };
    desk.resolve(signed(&token, resolve)).await.unwrap();
    asked(&store, &sim, customer, ticket, "rating").await;
    say(&sim, &ingress, customer, "5 super, danke!").await;
    reaches(&store, ticket, Phase::Closed).await;
    asked(&store, &sim, customer, ticket, "rating_thanks").await;

    // A customer on the brand's site, through the console's widget: a session, a message
    // signed on to ingress, the bot's answer kept (sealed under the customer's key, read
    // by the console) and read back.
    let console = format!("http://127.0.0.1:{}", ports["console"].console);
    let widget = WidgetCustomer::open(&reqwest::Client::new(), &console).await;
    let uploaded: serde_json::Value = widget
        .upload("text/plain", "Ladegerät: 5 V, 1 A".as_bytes())
        .await
        .json()
        .await
        .unwrap();
    let message = serde_json::json!({
        "id": "permissions-0001",
        "text": "Meine Uhr lädt nicht",
        "attachments": [{ "upload": uploaded["upload"], "file_name": "ladegeraet.txt" }],
    });
    assert_eq!(widget.send(message).await, 200);
    let read = widget.answered(STEP).await;
    assert!(read.contains("Meine Uhr"), "{read}");

    // Ingress fetched the file from the console and keeps it as the ticket's attachment.
    let deadline = Instant::now() + STEP;
    'fetched: loop {
        let listed = tickets
            .list_tickets(signed(&supervisor, pb::ListTicketsRequest::default()))
            .await
            .unwrap()
            .into_inner();
        for view in listed.tickets {
            let events = store
                .ticket_events(TicketId(view.ticket_id.parse().unwrap()))
                .await
                .unwrap();
            if events.iter().any(|(_, _, e)| {
                matches!(e, helpline_domain::Event::AttachmentStored { mime_type, .. } if mime_type == "text/plain")
            }) {
                break 'fetched;
            }
        }
        assert!(
            Instant::now() < deadline,
            "ingress never stored the widget's attachment"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Query and feedback answer from their projections; each consumer is measured.
    let deadline = Instant::now() + STEP;
    loop {
        let view = tickets
            .get_ticket(signed(
                &supervisor,
                pb::GetTicketRequest {
                    ticket_id: id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .ticket;
        if view.is_some_and(|t| t.phase == pb::TicketPhase::Closed as i32) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "query never showed the ticket closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut feedback = pb::feedback_client::FeedbackClient::connect(grpc("feedback"))
        .await
        .unwrap();
    feedback
        .get_csat(signed(&supervisor, pb::GetCsatRequest::default()))
        .await
        .unwrap();
    for (service, consumer) in [
        ("ingress", "egress"),
        ("ingress", "media"),
        ("bot", "bot"),
        ("bot", "bot-timers"),
        ("routing", "routing"),
        ("feedback", "feedback"),
    ] {
        let (_, metrics) = get(ports[service].ops, "/metrics").await.unwrap();
        assert!(
            metrics.contains(&format!(
                "helpline_consumer_pending{{consumer=\"{consumer}\"}}"
            )),
            "{service} reads its consumer {consumer}: {metrics}"
        );
    }

    // The brand notifies customers through the Notifications API, signed as a supervisor.
    // The conversation's customer writes on the web chat, where a notification is never
    // lawful (helpline cannot see whether the widget is open): notify reads their ticket,
    // chain and consent ledger, and refuses with the reason, writing nothing.
    let mut notifications = pb::notifications_client::NotificationsClient::connect(grpc("notify"))
        .await
        .unwrap();
    let repair_ready = |recipient: pb::notify_request::Recipient, key: &str| pb::NotifyRequest {
        recipient: Some(recipient),
        template: "repair_ready".to_owned(),
        parameters: [
            ("product".to_owned(), "MateBook X Pro".to_owned()),
            ("store".to_owned(), "Service Store Berlin Mitte".to_owned()),
        ]
        .into(),
        language: String::new(),
        idempotency_key: key.to_owned(),
    };
    let answer = notifications
        .notify(signed(
            &supervisor,
            repair_ready(
                pb::notify_request::Recipient::TicketId(id.clone()),
                "permissions-web-ready",
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(
            &answer.outcome,
            Some(pb::notify_response::Outcome::Refused(refused)) if refused.code == "widget_not_open"
        ),
        "the web chat's customer is refused: {answer:?}"
    );
    // A WhatsApp customer whose opt-in the brand collected on the repair form: notify
    // records it on their ledger, then queues the approved template on the first ticket of
    // their chain, which it opens (making their data key); egress sends it.
    let number = "+4915100000042";
    let contact = pb::Contact {
        channel: helpline_eventstore::codec::channel_to_proto(Channel::WhatsApp).into(),
        address: number.to_owned(),
    };
    let recorded = notifications
        .record_consent(signed(
            &supervisor,
            pb::RecordConsentRequest {
                contact: Some(contact.clone()),
                granted: true,
                marketing_only: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(recorded.changed, "the opt-in was recorded: {recorded:?}");
    let notify = |key: &'static str| {
        let (mut notifications, request) = (
            notifications.clone(),
            signed(
                &supervisor,
                repair_ready(pb::notify_request::Recipient::Contact(contact.clone()), key),
            ),
        );
        async move { notifications.notify(request).await.unwrap().into_inner() }
    };
    let queued = match notify("permissions-repair-4711-ready").await.outcome {
        Some(pb::notify_response::Outcome::Queued(queued)) => queued,
        other => panic!("the notification was not queued: {other:?}"),
    };
    assert_eq!(queued.way, "whatsapp_template");
    assert!(!queued.duplicate);
    let deadline = Instant::now() + STEP;
    while !sim
        .received(Channel::WhatsApp, number)
        .iter()
        .any(|got| got.template.as_deref() == Some("repair_ready"))
    {
        assert!(
            Instant::now() < deadline,
            "the notification never reached the customer: {:?}",
            sim.received(Channel::WhatsApp, number)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same key again: found on the ticket, nothing new written.
    let again = match notify("permissions-repair-4711-ready").await.outcome {
        Some(pb::notify_response::Outcome::Queued(again)) => again,
        other => panic!("the repeated notification was not answered as queued: {other:?}"),
    };
    assert!(again.duplicate);
    assert_eq!(again.ticket_id, queued.ticket_id);

    // Privacy exports the customer, then erases them: purges their data key, appends
    // CustomerErased, deletes the snapshot and the contacts entry.
    let privacy = |command: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
            .args([
                "privacy",
                command,
                "--channel",
                "web",
                "--contact",
                customer,
            ])
            .args(["--grpc", &grpc("privacy")])
            .env("HELPLINE_AUTH__JWT_SECRET", jwt)
            .env("HELPLINE_LOG", "warn")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "helpline privacy {command}: {said}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        said
    };
    assert!(
        privacy("export").contains(&id),
        "the export holds the ticket"
    );
    let erased = privacy("erase");
    // With the session anna linked to them.
    assert!(
        erased.contains("2 tickets (2 newly), key purged") && erased.contains("linked contact"),
        "{erased}"
    );

    // Nothing any service did was refused, and every service still runs.
    assert_eq!(deployment.violations_logged(), Vec::<String>::new());
    for process in &mut running {
        let log = std::fs::read_to_string(&process.log).unwrap_or_default();
        assert!(
            !log.contains("NATS server reported an error"),
            "{}: the server refused something:\n{log}",
            process.name
        );
        assert!(
            process.child.try_wait().unwrap().is_none(),
            "{} stopped",
            process.name
        );
    }
}

// ------------------------------------------------------------------ TLS

#[tokio::test]
async fn tls_to_nats_is_configured_by_ca_and_client_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    tls::certificates(dir.path());
    let config = dir.path().join("tls.conf");
    std::fs::write(
        &config,
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\n",
            path("server.crt"),
            path("server.key"),
            path("ca.crt")
        ),
    )
    .unwrap();
    let nats = NatsServer::builder()
        .config_file(&config)
        .tls_client(path("ca.crt"), path("client.crt"), path("client.key"))
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!("tls://127.0.0.1:{}", nats.port());
    let ensure = |settings: &[(&str, String)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
            .arg("ensure")
            .env("HELPLINE_NATS_URL", &url)
            .envs(settings.iter().map(|(k, v)| (*k, v)))
            .env("HELPLINE_LOG", "warn")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let ca = ("HELPLINE_NATS__TLS_CA_FILE", path("ca.crt"));
    let cert = ("HELPLINE_NATS__TLS_CERT_FILE", path("client.crt"));
    let key = ("HELPLINE_NATS__TLS_KEY_FILE", path("client.key"));

    let (code, said) = ensure(&[ca.clone(), cert.clone(), key.clone()]);
    assert_eq!(
        code,
        Some(0),
        "the CA and a client certificate get in: {said}"
    );
    let (code, said) = ensure(&[cert.clone(), key.clone()]);
    assert_eq!(
        code,
        Some(1),
        "without the CA the server is not trusted: {said}"
    );
    let (code, said) = ensure(std::slice::from_ref(&ca));
    assert_eq!(code, Some(1), "the server verifies clients: {said}");
    let (code, said) = ensure(&[
        ca,
        cert,
        ("HELPLINE_NATS__TLS_KEY_FILE", path("missing.key")),
    ]);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("nats.tls_key_file"),
        "a missing file is named: {said}"
    );

    // A plain server is refused when TLS is required.
    let plain = NatsServer::start().await.unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .arg("ensure")
        .env("HELPLINE_NATS_URL", plain.url())
        .env("HELPLINE_NATS__TLS_REQUIRED", "true")
        .env("HELPLINE_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "TLS required, plain server");
}
