//! The fault suite's cluster mode: the services run as separate `helpline <service>`
//! processes across a three-node JetStream cluster on loopback, as a region runs it (R3
//! streams and buckets, every write fsynced: `sync_interval: always`), while simulated
//! customers hold conversations through the channel simulator. The faults are the ones a
//! cluster brings: the event stream's leader killed (SIGKILL) mid-load and started again,
//! a leader step-down, the leader cut off (its process frozen, its sockets open and
//! silent) and let back, and the whole cluster killed at once and started again. The
//! verdict is the one-server suite's (`faults/verdict.rs`): every webhook answered 200 in
//! the log exactly once, every message to a customer received exactly once and in order,
//! lost 0, duplicated 0. For each fault the report gives how long the system stalled:
//! the longest time without a webhook answered 200, and without a message reaching a
//! customer, from the fault until the next one (30 s at most).
//!
//! Bounded to a few minutes; `cargo test --test faults_cluster -- --nocapture` shows the
//! summary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
#[allow(dead_code)]
#[path = "faults/verdict.rs"]
mod verdict;

use std::sync::Arc;
use std::time::{Duration, Instant};

use helpline_domain::Channel;
use helpline_eventstore::{EventStore, StoreConfig};
use helpline_testkit::{NatsCluster, Simulator};
use tokio_util::sync::CancellationToken;

use crate::cluster::{Kind, Service};
use crate::load::{Agents, Customer, Load};
use crate::run::settle;

const NODES: usize = 3;
const REGION_FILE: &str = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
const CUSTOMERS: usize = 60;
/// Between two customers' first messages: the load spans the whole fault schedule.
const ARRIVAL: Duration = Duration::from_millis(600);
/// How long after a fault its stall is looked for, at most (until the next fault).
const STALL_WINDOW: Duration = Duration::from_secs(30);
/// How long a node stays cut off.
const CUT_OFF: Duration = Duration::from_secs(8);
/// Every channel of the registry, Apple's included.
const CHANNELS: &[Channel] = helpline_channels::CHANNELS;

/// One injected fault: what it was, when, and whether it did what it is for (the
/// stream's leadership moved; the cluster came back).
#[derive(Debug)]
struct Fault {
    what: String,
    at: Instant,
    hit: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_and_nothing_is_sent_twice_across_a_three_node_cluster() {
    let started = Instant::now();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut nats = NatsCluster::start(NODES).await.unwrap();
    let config = StoreConfig {
        replicas: NODES,
        ..StoreConfig::new("de")
    };
    let store = EventStore::ensure(nats.connect().await.unwrap(), config)
        .await
        .unwrap();
    let sim = Arc::new(Simulator::start(Default::default()).await.unwrap());
    let channels = sim.helpline_channels();
    let replicas = NODES.to_string();
    // Egress's line per message sent is a debug line: a failed verdict shows the sends of
    // the tickets it names (see `logs_of`).
    let env = [
        ("HELPLINE_EVENTSTORE__REPLICAS", replicas.as_str()),
        ("HELPLINE_LOG", "info,helpline_egress=debug"),
    ];
    let mut services = Vec::new();
    for kind in Kind::ALL {
        services.push(Service::start_replica(kind, 0, &nats.url(), &channels, &env).await);
    }
    let ingress_url = format!("http://127.0.0.1:{}", services[0].ingress_port);
    let feedback_url = format!("http://127.0.0.1:{}", services[3].grpc_port);
    let desk_url = format!("http://127.0.0.1:{}", services[4].grpc_port);
    let query_url = format!("http://127.0.0.1:{}", services[5].grpc_port);

    // Everything the region keeps is replicated on every node, as production has it.
    let mut problems = Vec::new();
    let mut names = store.jetstream().stream_names();
    let mut streams = 0;
    while let Some(name) = futures::StreamExt::next(&mut names).await {
        let name = name.unwrap();
        let mut stream = store.jetstream().get_stream(&name).await.unwrap();
        let replicas = stream.info().await.unwrap().config.num_replicas;
        if replicas != NODES {
            problems.push(format!(
                "stream {name} has {replicas} replicas, not {NODES}"
            ));
        }
        streams += 1;
    }

    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    // The agents at their desks, offered tickets by the assignment process.
    let desk = desk::start(&desk_url, desk::region_agents(REGION_FILE), stop.clone());
    let load = Load::start(Agents::Desk, sim.clone(), vec![ingress_url], &store, &stop);
    let conversations = load.converse_all(customers(), ARRIVAL);
    let faults = inject_faults(&mut nats, &store, &mut services).await;

    let (finished, failures) = conversations.end().await;
    // The verdict still runs: it tells whether what a customer waited for is in the log.
    problems.extend(failures);
    settle(&services, &sim, &store, &finished, || logs(&services)).await;
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
        verdict::Injected::default(),
    )
    .await;
    problems.extend(found.problems);
    for fault in &faults {
        if !fault.hit {
            problems.push(format!("the fault \"{}\" was not hit", fault.what));
        }
    }
    if faults.len() != 4 {
        problems.push(format!(
            "4 cluster faults planned, {} injected",
            faults.len()
        ));
    }

    let answered = load.stats.answered_at.lock().unwrap().clone();
    let arrivals: Vec<Instant> = sim.arrivals_from(0).into_iter().map(|(_, at)| at).collect();
    // Each fault's stall is looked for until the next fault.
    let stalls: Vec<String> = faults
        .iter()
        .enumerate()
        .map(|(i, fault)| {
            let until = faults
                .get(i + 1)
                .map_or(fault.at + STALL_WINDOW, |next| next.at)
                .min(fault.at + STALL_WINDOW);
            format!(
                "{} (ingest stalled {:.1} s, sends {:.1} s)",
                fault.what,
                longest_gap(&answered, fault.at, until).as_secs_f64(),
                longest_gap(&arrivals, fault.at, until).as_secs_f64()
            )
        })
        .collect();
    let summary = format!(
        "fault suite, cluster mode: {NODES} nodes (R{NODES} for all {streams} streams and buckets, sync_interval always), \
         {} conversations on {} channels, {} webhooks answered 200, {} customer messages in the log, \
         {} messages sent to customers ({} failed, {} by agents through the AgentDesk API, {} calls made again), \
         {} CSAT rows; faults: {}; dead letters {}; \
         lost {}, duplicated {}; load {load_secs:.0}s, total {:.0}s",
        finished.len(),
        CHANNELS.len(),
        found.accepted,
        found.customer_messages,
        found.delivered,
        found.failed,
        desk.replies.load(std::sync::atomic::Ordering::Relaxed),
        desk.retries.load(std::sync::atomic::Ordering::Relaxed),
        found.csat_rows,
        stalls.join("; "),
        found.dead_letters,
        found.lost,
        found.duplicated,
        started.elapsed().as_secs_f64(),
    );
    eprintln!("{summary}");
    let report = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-cluster-suite.txt");
    let verdict = if problems.is_empty() {
        "passed"
    } else {
        "FAILED"
    };
    if let Err(e) = std::fs::write(&report, format!("{verdict}: {summary}\n")) {
        eprintln!("cannot write {}: {e}", report.display());
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\n{summary}\n{}",
        problems.len(),
        problems.join("\n"),
        logs_of(&services, &problems)
    );
    assert_eq!((found.lost, found.duplicated), (0, 0), "{summary}");
    assert_eq!(finished.len(), CUSTOMERS, "{summary}");
}

/// The customers: spread over the channels and scripts, every fourth one's first message
/// a redelivery storm (5 to 20 copies at once).
fn customers() -> Vec<Customer> {
    load::customers(
        CUSTOMERS,
        2,
        CHANNELS,
        |_| 0,
        |i| (if i % 4 == 0 { 5 + (i * 7) % 16 } else { 1 }, 1),
    )
}

/// The cluster's faults, run while the customers talk.
async fn inject_faults(
    nats: &mut NatsCluster,
    store: &EventStore,
    services: &mut [Service],
) -> Vec<Fault> {
    let js = store.jetstream().clone();
    let stream = store.layout().event_stream();
    let pause = |secs: u64| tokio::time::sleep(Duration::from_secs(secs));
    let mut faults = Vec::new();

    pause(4).await;
    let leader = nats.leader_of(&js, stream).await.unwrap();
    let at = Instant::now();
    nats.node(leader).kill().await.unwrap();
    let moved = new_leader(nats, stream, leader).await;
    faults.push(Fault {
        what: format!(
            "leader n{leader} kill -9 (then n{})",
            moved.map_or("?".to_owned(), |n| n.to_string())
        ),
        at,
        hit: moved.is_some(),
    });
    pause(3).await;
    nats.node(leader).restart().await.unwrap();

    pause(5).await;
    let at = Instant::now();
    let stepped = nats.step_down(&js, stream).await;
    faults.push(Fault {
        what: match &stepped {
            Ok((old, new)) => format!("step-down n{old} → n{new}"),
            Err(e) => format!("step-down ({e})"),
        },
        at,
        hit: stepped.is_ok(),
    });

    pause(5).await;
    let leader = nats.leader_of(&js, stream).await.unwrap();
    let at = Instant::now();
    nats.node(leader).pause().unwrap();
    let moved = new_leader(nats, stream, leader).await;
    tokio::time::sleep(CUT_OFF.saturating_sub(at.elapsed())).await;
    nats.node(leader).resume().unwrap();
    faults.push(Fault {
        what: format!(
            "leader n{leader} cut off {:.0} s (then n{})",
            CUT_OFF.as_secs_f64(),
            moved.map_or("?".to_owned(), |n| n.to_string())
        ),
        at,
        hit: moved.is_some(),
    });

    pause(5).await;
    let at = Instant::now();
    let restarted = nats.restart_all().await;
    faults.push(Fault {
        what: "whole cluster kill -9 and restart".to_owned(),
        at,
        hit: restarted.is_ok(),
    });
    // Every service must find the cluster again on its own.
    for service in services.iter_mut() {
        service.wait_ready().await;
    }
    faults
}

/// The node that leads `stream` once `old` no longer does, asked of the other nodes (a
/// client of the old leader would wait on it while it is cut off); None when none took
/// over within 30 s.
async fn new_leader(nats: &NatsCluster, stream: &str, old: usize) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for node in (0..nats.len()).filter(|node| *node != old) {
            let Ok(Ok(client)) =
                tokio::time::timeout(Duration::from_secs(2), nats.connect_to(node)).await
            else {
                continue;
            };
            let js = async_nats::jetstream::new(client);
            if let Ok(Ok(new)) =
                tokio::time::timeout(Duration::from_secs(2), nats.leader_of(&js, stream)).await
                && new != old
            {
                return Some(new);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// The longest stretch without one of `moments` (sorted) from `from` until the last of
/// them before `until`: how long the system stalled after a fault at `from`. All of it
/// when none came.
fn longest_gap(moments: &[Instant], from: Instant, until: Instant) -> Duration {
    let mut last = from;
    let mut longest: Option<Duration> = None;
    for &moment in moments.iter().filter(|m| **m > from && **m <= until) {
        longest = Some(longest.unwrap_or_default().max(moment - last));
        last = moment;
    }
    longest.unwrap_or(until.saturating_duration_since(from))
}

/// [`logs`], and every service's lines naming a ticket that a problem names
/// (`ticket <id>: …`): what happened to it, the sends among it.
fn logs_of(services: &[Service], problems: &[String]) -> String {
    let mut out = logs(services);
    let mut tickets: Vec<&str> = problems
        .iter()
        .filter_map(|problem| problem.strip_prefix("ticket ")?.split(':').next())
        .collect();
    tickets.dedup();
    for ticket in tickets.into_iter().take(3) {
        for service in services {
            out.push_str(&format!(
                "\n--- helpline {} on ticket {ticket} (latest 60 lines) ---\n{}\n",
                service.name(),
                service.log_naming(ticket, 60),
            ));
        }
    }
    out
}

fn logs(services: &[Service]) -> String {
    let mut out = String::new();
    for service in services {
        out.push_str(&format!(
            "\n--- helpline {} (warnings and errors, latest 30) ---\n{}\n",
            service.name(),
            service.log_problems(30),
        ));
    }
    out
}

#[test]
fn a_stall_is_the_longest_stretch_without_progress_after_the_fault() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let moments = [
        at(100),
        at(1_000),
        at(1_200),
        at(4_200),
        at(4_300),
        at(40_000),
    ];
    // From a fault at 1.1 s: 1.2 s, 4.2 s (3.0 s after it), 4.3 s; 40 s is past the end.
    assert_eq!(
        longest_gap(&moments, at(1_100), at(31_100)),
        Duration::from_millis(3_000)
    );
    // Nothing at all before the end: stalled for all of it (or longer).
    assert_eq!(
        longest_gap(&moments, at(5_000), at(35_000)),
        Duration::from_secs(30)
    );
    // The first progress after the fault counts from the fault.
    assert_eq!(
        longest_gap(&moments, at(200), at(3_000)),
        Duration::from_millis(800)
    );
}
