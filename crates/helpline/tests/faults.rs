//! The fault suite: the services (ingress, bot, routing, feedback, assignment, query) run as
//! separate `helpline <service>` processes over a real nats-server while simulated
//! customers hold conversations through the channel simulator and agents work their
//! tickets through the AgentDesk API (`faults/desk.rs`), and faults are injected mid-load: kill -9 of each service in turn and a
//! restart, a nats-server restart, webhook redelivery storms, provider 500s and 429s with
//! `Retry-After`, a poison event in the stream, and a consumer frozen for a while. Then a
//! history checker (`faults/history.rs`) reads what happened and names every broken
//! promise: a webhook answered 200 without exactly one `CustomerMessageReceived`, a bot or
//! agent message that did not reach its customer exactly once and in order, an event
//! sequence the domain does not allow, a projection that differs from a rebuild (the CSAT
//! report; the query API's timeline of every ticket), a dead letter that is not the
//! poison event.
//!
//! Bounded to a few minutes; `cargo test --test faults -- --nocapture` shows the summary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Shared with the replica suite (`replicas.rs`); each suite uses part of them.
#[allow(dead_code)]
#[path = "faults/cluster.rs"]
mod cluster;
#[path = "faults/desk.rs"]
mod desk;
#[allow(dead_code)]
#[path = "faults/history.rs"]
mod history;
#[allow(dead_code)]
#[path = "faults/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "faults/run.rs"]
mod run;
#[path = "faults/verdict.rs"]
mod verdict;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use helpline_domain::{Channel, TicketId};
use helpline_eventstore::{EventStore, StoreConfig};
use helpline_proto::v1 as pb;
use helpline_testkit::simulator::Fault;
use helpline_testkit::{NatsServer, Simulator};
use tokio_util::sync::CancellationToken;

use crate::cluster::{Kind, Service};
use crate::load::{Agents, Customer, Load};
use crate::run::settle;

const REGION_FILE: &str = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
const CUSTOMERS: usize = 60;
/// The WhatsApp customer erased mid-load (not one of the conversations).
const ERASED_CUSTOMER: &str = "4915199999999";
/// Between two customers' first messages: the load spans the whole fault schedule.
const ARRIVAL: Duration = Duration::from_millis(600);
/// Every channel of the registry, Apple's included.
const CHANNELS: &[Channel] = helpline_channels::CHANNELS;

/// The faults injected, by kind, for the report.
#[derive(Debug, Default)]
struct Injected {
    kills: Vec<&'static str>,
    nats_restarts: usize,
    pauses: Vec<&'static str>,
    poison: Vec<String>,
    server_errors: usize,
    rate_limits: usize,
    /// Sends the provider takes and confirms 2 s late.
    slow_accepts: usize,
    /// Tickets of the customer erased through the Privacy API mid-load.
    erased: Vec<TicketId>,
    /// When ingress (the sender) was killed, and how far into its slot.
    sending_kills: Vec<Instant>,
    ingress_kill_offset: Duration,
}

/// A number the run draws (std's per-process random hash keys).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

struct System {
    nats: NatsServer,
    services: Vec<Service>,
    sim: Arc<Simulator>,
}

impl System {
    fn service(&mut self, kind: Kind) -> &mut Service {
        self.services
            .iter_mut()
            .find(|s| s.kind == kind)
            .unwrap_or_else(|| panic!("no {} process", kind.name()))
    }

    /// The warnings and errors every process logged, for a failure message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for service in &self.services {
            out.push_str(&format!(
                "\n--- helpline {} (warnings and errors, latest 30) ---\n{}\n--- helpline {} (latest 15 lines) ---\n{}\n",
                service.kind.name(),
                service.log_problems(30),
                service.kind.name(),
                service.log_tail(15)
            ));
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_and_nothing_is_sent_twice_under_faults() {
    let started = Instant::now();
    // async-nats (the test's own store client) needs a process-wide rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = NatsServer::start().await.unwrap();
    let store = EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
        .await
        .unwrap();
    let sim = Arc::new(Simulator::start(Default::default()).await.unwrap());
    let channels = sim.helpline_channels();
    let mut services = Vec::new();
    for kind in Kind::ALL {
        services.push(Service::start(kind, &nats.url(), &channels).await);
    }
    let ingress_url = format!("http://127.0.0.1:{}", services[0].ingress_port);
    let feedback_url = format!("http://127.0.0.1:{}", services[3].grpc_port);
    let desk_url = format!("http://127.0.0.1:{}", services[4].grpc_port);
    let query_url = format!("http://127.0.0.1:{}", services[5].grpc_port);
    let mut system = System {
        nats,
        services,
        sim: sim.clone(),
    };

    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    // The agents at their desks, offered tickets by the assignment process.
    let desk = desk::start(&desk_url, desk::region_agents(REGION_FILE), stop.clone());
    let load = Load::start(Agents::Desk, sim.clone(), vec![ingress_url], &store, &stop);

    let conversations = load.converse_all(customers(), ARRIVAL);
    let injected = inject_faults(&mut system, &store).await;

    let (finished, failures) = conversations.end().await;
    assert!(
        failures.is_empty(),
        "conversations did not finish:\n{}\n{}",
        failures.join("\n"),
        system.logs()
    );
    settle(&system.services, &sim, &store, &finished, || system.logs()).await;
    let load_secs = started.elapsed().as_secs_f64();

    let found = verdict::check(
        &sim,
        &load,
        &store,
        &finished,
        verdict::Apis {
            feedback: &feedback_url,
            query: Some(&query_url),
        },
        verdict::Injected {
            poison: &injected.poison,
            erased: &injected.erased,
            sending_kills: &injected.sending_kills,
        },
    )
    .await;
    let mut problems = found.problems;
    let (delivered, failed, lost, duplicated) =
        (found.delivered, found.failed, found.lost, found.duplicated);

    let served = sim.faults_served();
    let stats = &load.stats;
    // A fault that was injected but never met a request proves nothing: each kind must
    // have been hit at least once.
    for (kind, queued) in [
        ("server_error", injected.server_errors),
        ("rate_limited", injected.rate_limits),
        ("slow_accept", injected.slow_accepts),
    ] {
        if queued == 0 || served.get(kind).copied().unwrap_or(0) == 0 {
            problems.push(format!(
                "the provider fault {kind} was queued {queued} times and answered {} times: not hit",
                served.get(kind).copied().unwrap_or(0)
            ));
        }
    }
    if stats.storms.load(Ordering::Relaxed) == 0 {
        problems.push("no redelivery storm was posted".to_owned());
    }
    if injected.erased.is_empty() {
        problems.push("the erasure named no ticket".to_owned());
    }
    if injected.kills.len() < 4
        || injected.nats_restarts == 0
        || injected.pauses.is_empty()
        || injected.poison.is_empty()
    {
        problems.push(format!(
            "not every fault was injected: kills {:?}, nats-server restarts {}, pauses {:?}, poison events {}",
            injected.kills,
            injected.nats_restarts,
            injected.pauses,
            injected.poison.len()
        ));
    }
    let summary = format!(
        "fault suite: {} conversations on {} channels, {} webhooks answered 200 ({} posts, {} storms), \
         {} customer messages in the log, {delivered} messages sent to customers ({failed} failed, {} by agents through the AgentDesk API, {} of them from a canned reply: \
         {} watch streams opened again, {} calls made again, {} tickets left to another agent), \
         {} CSAT rows; faults: kill -9 {:?}, nats-server kill -9 and restart {}, paused {:?}, poison events {}, \
         provider 500s queued {} (answered {}), 429s with Retry-After queued {} (answered {}), sends confirmed 2 s late queued {} (taken {}), \
         ingress killed {:.1} s into its slot ({} second sends in egress's gap), a customer erased through the Privacy API ({} tickets); \
         dead letters {}; lost {lost}, duplicated {duplicated}; load {load_secs:.0}s, total {:.0}s",
        finished.len(),
        CHANNELS.len(),
        found.accepted,
        stats.webhook_posts.load(Ordering::Relaxed),
        stats.storms.load(Ordering::Relaxed),
        found.customer_messages,
        desk.replies.load(Ordering::Relaxed),
        found.canned_replies,
        desk.reconnects.load(Ordering::Relaxed),
        desk.retries.load(Ordering::Relaxed),
        desk.left.lock().unwrap().len(),
        found.csat_rows,
        injected.kills,
        injected.nats_restarts,
        injected.pauses,
        injected.poison.len(),
        injected.server_errors,
        served.get("server_error").copied().unwrap_or(0),
        injected.rate_limits,
        served.get("rate_limited").copied().unwrap_or(0),
        injected.slow_accepts,
        served.get("slow_accept").copied().unwrap_or(0),
        injected.ingress_kill_offset.as_secs_f64(),
        found.copies_after_kill,
        injected.erased.len(),
        found.dead_letters,
        started.elapsed().as_secs_f64(),
    );
    eprintln!("{summary}");
    // A passing test's output is captured; `scripts/test` prints this file after the run.
    let report = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-suite.txt");
    let verdict = if problems.is_empty() {
        "passed"
    } else {
        "FAILED"
    };
    if let Err(e) = std::fs::write(&report, format!("{verdict}: {summary}\n")) {
        eprintln!("cannot write {}: {e}", report.display());
    }
    if !problems.is_empty() {
        // Every process's whole log beside the report, to follow a failure's tickets.
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-suite-logs");
        let _ = std::fs::create_dir_all(&dir);
        for service in &system.services {
            let _ = std::fs::write(
                dir.join(format!("{}.log", service.name())),
                service.log_lines().join("\n"),
            );
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\n{summary}\n{}",
        problems.len(),
        problems.join("\n"),
        system.logs()
    );
    assert_eq!((lost, duplicated), (0, 0), "{summary}");
    assert_eq!(finished.len(), CUSTOMERS, "{summary}");
    assert_eq!(injected.kills.len(), Kind::ALL.len(), "{summary}");
}

/// The customers: spread over the channels and scripts, every fourth one's first message
/// a redelivery storm (5 to 20 copies at once), every seventh one's second message too.
fn customers() -> Vec<Customer> {
    load::customers(
        CUSTOMERS,
        1,
        CHANNELS,
        |_| 0,
        |i| {
            (
                if i % 4 == 0 { 5 + (i * 7) % 16 } else { 1 },
                if i % 7 == 3 { 5 + (i * 3) % 16 } else { 1 },
            )
        },
    )
}

/// The fault schedule, run while the customers talk. Returns what was injected.
async fn inject_faults(system: &mut System, store: &EventStore) -> Injected {
    let mut injected = Injected::default();
    let sim = system.sim.clone();
    let pause = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));

    // A customer who writes once and asks to be forgotten while the faults go on.
    let ingress_url = format!(
        "http://127.0.0.1:{}",
        system.service(Kind::Ingress).ingress_port
    );
    let privacy_url = format!(
        "http://127.0.0.1:{}",
        system.service(Kind::Privacy).grpc_port
    );
    let forgotten = sim.webhook(
        Channel::WhatsApp,
        ERASED_CUSTOMER,
        "Bitte löschen Sie meine Daten.",
    );
    let answer = sim
        .deliver_until_answered(&ingress_url, &forgotten, Duration::from_secs(60), |_, _| {})
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);

    pause(3).await;
    for channel in [Channel::WhatsApp, Channel::Telegram, Channel::Viber] {
        sim.inject(channel, Fault::ServerError { times: 3 });
        injected.server_errors += 3;
    }

    // Ingress (with egress) killed at a moment the run draws: webhooks in flight are cut
    // off, and a send the provider took may lose its record (egress's named gap, counted
    // by the verdict as a copy, at most one per kill).
    let offset = Duration::from_millis(random() % 2_000);
    injected.ingress_kill_offset = offset;
    tokio::time::sleep(Duration::from_secs(4) + offset).await;
    injected.sending_kills.push(Instant::now());
    kill_and_restart(system, Kind::Ingress, &mut injected).await;

    // Every other service, in turn.
    for kind in Kind::ALL.into_iter().filter(|kind| *kind != Kind::Ingress) {
        pause(3).await;
        kill_and_restart(system, kind, &mut injected).await;
        if kind == Kind::Bot {
            // Providers slow to confirm what they took, within egress's timeout: each
            // message must still go out once. (Away from the ingress kill: a sender killed
            // while it waits is egress's named gap, which the kill's allowance covers once.)
            for channel in [Channel::Messenger, Channel::WebChat] {
                sim.accept_slowly(channel, 3, Duration::from_secs(2));
                injected.slow_accepts += 3;
            }
        }
        if kind == Kind::Privacy {
            injected.erased = erase(&privacy_url, ERASED_CUSTOMER).await;
        }
        if kind == Kind::Routing {
            injected.poison.push(poison(store).await);
            for channel in [Channel::Messenger, Channel::WhatsApp, Channel::Telegram] {
                sim.inject(
                    channel,
                    Fault::RateLimited {
                        times: 2,
                        retry_after_secs: 1,
                    },
                );
                injected.rate_limits += 2;
            }
        }
    }

    pause(3).await;
    // A slow consumer: the bot frozen with its events in flight, long enough for a
    // backlog, shorter than the ack wait.
    system.service(Kind::Bot).pause();
    pause(6).await;
    system.service(Kind::Bot).resume();
    injected.pauses.push(Kind::Bot.name());

    pause(2).await;
    for channel in [Channel::WebChat, Channel::Viber, Channel::Messenger] {
        sim.inject(channel, Fault::ServerError { times: 2 });
        injected.server_errors += 2;
        sim.inject(
            channel,
            Fault::RateLimited {
                times: 1,
                retry_after_secs: 2,
            },
        );
        injected.rate_limits += 1;
    }

    pause(3).await;
    // A crash, not a shutdown: kill -9, then the server starts again on its store.
    system.nats.kill().await.unwrap();
    system.nats.restart().await.unwrap();
    injected.nats_restarts += 1;
    // Every service must reconnect on its own: ready again, or the run names it.
    for service in &mut system.services {
        service.wait_ready().await;
    }
    injected
}

/// Erases the WhatsApp customer `address` through the Privacy API, as the region's admin
/// (ops-admin in Germany's file), trying
/// again while the API is unavailable; returns their tickets.
async fn erase(url: &str, address: &str) -> Vec<TicketId> {
    let admin = helpline_testkit::bearer::token(
        &helpline_assignment::AuthKey::development(),
        "ops-admin",
        helpline_region::Role::Admin,
    )
    .unwrap();
    let request = pb::EraseCustomerRequest {
        customer: Some(pb::CustomerRef {
            customer: Some(pb::customer_ref::Customer::Contact(pb::Contact {
                channel: pb::Channel::Whatsapp.into(),
                address: address.to_owned(),
            })),
        }),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = async {
            let channel = tonic::transport::Channel::from_shared(url.to_owned())
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let mut client = pb::privacy_client::PrivacyClient::with_interceptor(
                channel,
                helpline_testkit::bearer::Bearer::with_token(&admin).map_err(|e| e.to_string())?,
            );
            client
                .erase_customer(request.clone())
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| status.to_string())
        }
        .await;
        match answer {
            Ok(erased) => {
                return erased
                    .ticket_ids
                    .iter()
                    .map(|id| TicketId(id.parse().unwrap()))
                    .collect();
            }
            Err(e) => assert!(Instant::now() < deadline, "the erasure failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn kill_and_restart(system: &mut System, kind: Kind, injected: &mut Injected) {
    let service = system.service(kind);
    service.kill9().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    service.restart().await;
    injected.kills.push(kind.name());
}

/// Publishes bytes that are no event to a ticket's subject; returns the subject.
async fn poison(store: &EventStore) -> String {
    let subject = store
        .layout()
        .ticket_subject(TicketId(uuid::Uuid::now_v7()));
    store
        .jetstream()
        .publish(
            subject.clone(),
            b"\xff\x00 not an event \xfe".as_slice().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    subject
}
