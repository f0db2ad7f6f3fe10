//! The replica suite: several processes of each service over one real nats-server, as a
//! deployment scales them — three of `helpline ingress` (which runs egress too) and of
//! `helpline bot`, two of routing and of feedback — while 100 simulated customers on all
//! five channels hold their conversations, each posting to one of the ingress processes.
//! The providers answer every send after a random 0–300 ms, and one replica of bot and
//! one of ingress are killed with SIGKILL at random moments and started again.
//!
//! Then it checks what replicas must not break:
//!
//! - every customer received every bot and agent message **in the order the log holds
//!   them** and **exactly once**; the one exception, counted and reported, is egress's
//!   named gap: a message the provider took just before its sending process was killed,
//!   without its record, goes out again — at most one such second send per kill of a
//!   sending process;
//! - every webhook answered 200 is exactly one `CustomerMessageReceived`;
//! - every append (a service's reaction to a cause included) is stored once;
//! - **no ticket is handled by two replicas at the same time**, read from the services'
//!   `event handled` log lines (see [`history::handling`]).
//!
//! Bounded to a few minutes; `cargo test -p helpline --test replicas -- --nocapture`
//! shows the summary, also written to `replicas-suite.txt` in the target's tmp folder.
//! `REPLICA_SUITE_SEED=<n>` repeats a run's kill moments and provider delays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Shared with the fault suite (`faults.rs`); each suite uses part of them.
#[allow(dead_code)]
#[path = "faults/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "faults/history.rs"]
mod history;
#[allow(dead_code)]
#[path = "faults/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "faults/run.rs"]
mod run;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use helpline_domain::{Channel, Event};
use helpline_eventstore::{EventStore, StoreConfig};
use helpline_testkit::{NatsServer, Simulator};
use tokio_util::sync::CancellationToken;

use crate::cluster::{Kind, Service};
use crate::history::{Arrival, Handling};
use crate::load::{Agents, Customer, Finished, Index, Load};
use crate::run::{read_log, settle};

const CUSTOMERS: usize = 100;
/// Between two customers' first messages: the kills land while many talk at once.
const ARRIVAL: Duration = Duration::from_millis(250);
/// Processes per service.
const REPLICAS: [(Kind, usize); 4] = [
    (Kind::Ingress, 3),
    (Kind::Bot, 3),
    (Kind::Routing, 2),
    (Kind::Feedback, 2),
];
/// The services killed, one replica each, at a random moment of this span of the load.
const KILLED: [Kind; 2] = [Kind::Bot, Kind::Ingress];
const KILL_SPAN: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(25));
/// How long a provider takes to answer a send, drawn per send.
const SEND_LATENCY: (Duration, Duration) = (Duration::ZERO, Duration::from_millis(300));
/// Around a kill of a sending process, when a second send of a message is its gap: the
/// provider took the first while the process lived (its own retries and waits included)
/// or, still in flight, up to a provider's latency after it died.
const KILL_WINDOW: (Duration, Duration) = (Duration::from_secs(15), Duration::from_secs(2));
/// Every channel of the registry, Apple's included.
const CHANNELS: &[Channel] = helpline_channels::CHANNELS;
/// The services' log filter: the handler runtime at debug for its `event handled` lines.
const LOG_FILTER: &str = "info,async_nats=warn,helpline_eventstore::subscribe=debug,helpline_eventstore::execute=debug,helpline_egress=debug";

/// One kill: which process, and when.
#[derive(Clone, Debug)]
struct Kill {
    process: String,
    kind: Kind,
    at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_keep_each_ticket_in_order_and_send_each_message_once() {
    let started = Instant::now();
    let seed = seed();
    // async-nats (the test's own store client) needs a process-wide rustls provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = NatsServer::start().await.unwrap();
    let store = EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
        .await
        .unwrap();
    let sim = Arc::new(Simulator::start(Default::default()).await.unwrap());
    sim.send_latency(SEND_LATENCY.0..=SEND_LATENCY.1, seed);
    let channels = sim.helpline_channels();
    let mut services = Vec::new();
    for (kind, replicas) in REPLICAS {
        for replica in 0..replicas {
            services.push(
                Service::start_replica(
                    kind,
                    replica,
                    &nats.url(),
                    &channels,
                    &[("HELPLINE_LOG", LOG_FILTER)],
                )
                .await,
            );
        }
    }
    let ingress_urls: Vec<String> = services
        .iter()
        .filter(|s| s.kind == Kind::Ingress)
        .map(|s| format!("http://127.0.0.1:{}", s.ingress_port))
        .collect();

    let stop = CancellationToken::new();
    let _stop_on_drop = stop.clone().drop_guard();
    let load = Load::start(Agents::Direct, sim.clone(), ingress_urls, &store, &stop);
    let conversations = load.converse_all(customers(), ARRIVAL);
    let kills = kill_and_restart(&mut services, seed, started).await;

    let (finished, failures) = conversations.end().await;
    assert!(
        failures.is_empty(),
        "conversations did not finish:\n{}\n{}",
        failures.join("\n"),
        logs(&services)
    );
    settle(&services, &sim, &store, &finished, || logs(&services)).await;
    let load_secs = started.elapsed().as_secs_f64();

    let log = read_log(&store).await;
    let mut problems = Vec::new();
    let accepted = load.accepted.lock().unwrap().clone();
    let (inbound_problems, inbound_lost) = history::inbound(&accepted, &log.tickets);
    problems.extend(inbound_problems);

    // Only a process that sends to providers can leave a second send behind.
    let sending_kills: Vec<Instant> = kills
        .iter()
        .filter(|k| k.kind == Kind::Ingress)
        .map(|k| k.at)
        .collect();
    let mut found = Found {
        lost: inbound_lost,
        ..Found::default()
    };
    for done in &finished {
        found.check(&sim, &load.index, done, &log, &sending_kills);
    }
    problems.append(&mut found.problems);
    // A web chat callback sent again is deduped by the site, so no customer sees it twice:
    // it is counted as a copy all the same, allowed only around a kill of a sender.
    // Timed by the first of the two sends, as the window of every other channel's copy.
    for repeat in sim.web_repeats() {
        let near_kill = sending_kills
            .iter()
            .any(|kill| repeat + KILL_WINDOW.0 >= *kill && repeat <= *kill + KILL_WINDOW.1);
        if near_kill {
            found.copies_after_kill += 1;
            found
                .copies
                .push("a web chat callback sent again by egress".to_owned());
        } else {
            found.duplicated += 1;
            problems.push("a web chat callback was sent again, far from any kill".to_owned());
        }
    }
    for (ticket, (_, events)) in &log.tickets {
        problems.extend(history::phases(*ticket, events));
        problems.extend(history::prompts_once(*ticket, events));
    }
    let stored_twice = history::stored_once(&log.message_ids);
    problems.extend(stored_twice.iter().cloned());
    if found.copies_after_kill > sending_kills.len() {
        problems.push(format!(
            "{} messages went out a second time around {} kill(s) of a sending process; at most one per kill may",
            found.copies_after_kill,
            sending_kills.len()
        ));
    }
    let handlings = handlings(&services);
    let overlaps = history::overlaps(&handlings);
    let overlaps_figure = if handlings.is_empty() {
        problems.push(format!(
            "no process logged an '{}' line: who handled which ticket when cannot be checked",
            history::HANDLED_MESSAGE
        ));
        "not measured (no 'event handled' lines)".to_owned()
    } else {
        format!("{} (in {} handlings)", overlaps.len(), handlings.len())
    };
    problems.extend(overlaps.iter().cloned());

    let replicas: Vec<String> = REPLICAS
        .iter()
        .map(|(kind, n)| format!("{n} {}", kind.name()))
        .collect();
    let killed: Vec<String> = kills
        .iter()
        .map(|k| {
            format!(
                "{} at {:.1}s",
                k.process,
                k.at.duration_since(started).as_secs_f64()
            )
        })
        .collect();
    let window = acceptance_window(&services);
    let summary = format!(
        "replica suite (seed {seed}): {} processes ({}), {} customers on {} channels finished, \
         {} webhooks answered 200, {} messages sent to customers ({} failed, {} by the agent), \
         provider latency {:?}–{:?}; kills: {} [{}]; duplicates after kill {} (allowed {}; \
         acceptance to record {window}), \
         lost {}, duplicated {}, order violations {} ticket(s), overlaps {overlaps_figure}, \
         appends stored twice {}; load {load_secs:.0}s, total {:.0}s",
        services.len(),
        replicas.join(", "),
        finished.len(),
        CHANNELS.len(),
        accepted.len(),
        found.delivered,
        found.failed,
        load.stats
            .agent_messages
            .load(std::sync::atomic::Ordering::Relaxed),
        SEND_LATENCY.0,
        SEND_LATENCY.1,
        kills.len(),
        killed.join(", "),
        found.copies_after_kill,
        sending_kills.len(),
        found.lost,
        found.duplicated,
        found.out_of_order,
        stored_twice.len(),
        started.elapsed().as_secs_f64(),
    );
    eprintln!("{summary}");
    let verdict = if problems.is_empty() {
        "passed"
    } else {
        "FAILED"
    };
    let report = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("replicas-suite.txt");
    // The rarer kinds first: one order problem per ticket would hide them.
    problems.sort_by_key(|p| p.contains("out of order"));
    let shown: Vec<&String> = problems.iter().take(40).collect();
    let copies = if found.copies.is_empty() {
        String::new()
    } else {
        format!("copies around kills:\n{}\n", found.copies.join("\n"))
    };
    let listing = format!(
        "{copies}{} problems{}:\n{}",
        problems.len(),
        if problems.len() > shown.len() {
            format!(" (the first {})", shown.len())
        } else {
            String::new()
        },
        shown
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    if let Err(e) = std::fs::write(&report, format!("{verdict}: {summary}\n{listing}\n")) {
        eprintln!("cannot write {}: {e}", report.display());
    }
    // Every process's whole log beside the report, to follow a failure's tickets.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("replicas-logs");
    let _ = std::fs::create_dir_all(&dir);
    for service in &services {
        let _ = std::fs::write(
            dir.join(format!("{}.log", service.name())),
            service.log_lines().join("\n"),
        );
    }
    assert!(problems.is_empty(), "{listing}\n{summary}");
    assert_eq!(finished.len(), CUSTOMERS, "{summary}");
    assert_eq!(kills.len(), KILLED.len(), "{summary}");
}

/// The run's seed: `REPLICA_SUITE_SEED` to repeat a run, else a fresh one.
fn seed() -> u64 {
    std::env::var("REPLICA_SUITE_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| RandomState::new().build_hasher().finish())
}

/// The customers: spread over the channels, the scripts and the ingress processes.
fn customers() -> Vec<Customer> {
    let ingress = REPLICAS
        .iter()
        .find(|(kind, _)| *kind == Kind::Ingress)
        .map_or(1, |(_, n)| *n);
    // Ingress processes turn at another rate than the channels, so that every channel
    // meets every process.
    load::customers(
        CUSTOMERS,
        6,
        CHANNELS,
        |i| (i / CHANNELS.len() + i) % ingress,
        |_| (1, 1),
    )
}

/// Kills one replica of each of [`KILLED`] with SIGKILL at a random moment of
/// [`KILL_SPAN`] after `started`, and starts it again; returns the kills in order.
async fn kill_and_restart(services: &mut [Service], seed: u64, started: Instant) -> Vec<Kill> {
    let mut random = seed;
    let mut next = || {
        // splitmix64: moments and replicas follow from the seed alone.
        random = random.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = random;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let span = KILL_SPAN.1 - KILL_SPAN.0;
    let mut plan: Vec<(Duration, Kind, usize)> = KILLED
        .iter()
        .map(|kind| {
            let replicas = services.iter().filter(|s| s.kind == *kind).count();
            let at = KILL_SPAN.0 + span.mul_f64((next() % 10_000) as f64 / 10_000.0);
            let replica = usize::try_from(next() % replicas as u64).unwrap();
            (at, *kind, replica)
        })
        .collect();
    plan.sort_by_key(|(at, _, _)| *at);
    let mut kills = Vec::new();
    for (at, kind, replica) in plan {
        let service = services
            .iter_mut()
            .find(|s| s.kind == kind && s.replica == replica)
            .unwrap();
        let at = service.kill9_at(started + at).await;
        kills.push(Kill {
            process: service.name(),
            kind,
            at,
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        service.restart().await;
    }
    kills
}

/// What the per-customer checks found, summed.
#[derive(Debug, Default)]
struct Found {
    problems: Vec<String>,
    delivered: usize,
    failed: usize,
    lost: usize,
    duplicated: usize,
    copies_after_kill: usize,
    /// Each copy around a kill, named.
    copies: Vec<String>,
    out_of_order: usize,
}

impl Found {
    /// One customer: one ticket, and what they received against its log.
    fn check(
        &mut self,
        sim: &Simulator,
        index: &Index,
        done: &Finished,
        log: &run::Log,
        sending_kills: &[Instant],
    ) {
        let tickets = index.tickets_of(done.customer.channel, &done.address);
        if tickets.len() != 1 {
            self.problems.push(format!(
                "customer {} ({}) has {} tickets: {tickets:?}",
                done.customer.name,
                done.customer.channel.as_str(),
                tickets.len()
            ));
        }
        let Some((_, events)) = log.tickets.get(&done.ticket) else {
            self.problems
                .push(format!("ticket {} is not in the log", done.ticket.0));
            return;
        };
        let arrivals = Arrival::all(sim.received(done.customer.channel, &done.customer.name));
        // No provider refuses anything in this run: a message that failed never reached
        // its customer.
        for event in events {
            if let Event::MessageDeliveryFailed {
                message, reason, ..
            } = event
            {
                self.problems.push(format!(
                    "ticket {}: message {} ({}) failed: {}",
                    done.ticket.0,
                    message.0,
                    done.customer.channel.as_str(),
                    reason.shown()
                ));
            }
        }
        let report = history::ordered(done.ticket, events, &arrivals, sending_kills, KILL_WINDOW);
        self.delivered += report.delivered;
        self.failed += report.failed;
        self.lost += report.lost;
        self.duplicated += report.duplicated;
        self.copies_after_kill += report.copies_after_kill;
        self.copies.extend(report.copies);
        self.out_of_order += usize::from(report.out_of_order);
        self.problems.extend(report.problems);
    }
}

/// Every handling every process logged; a process is a replica's start, since a
/// restarted replica is a new process.
fn handlings(services: &[Service]) -> Vec<Handling> {
    let mut all = Vec::new();
    for service in services {
        for line in service.log_lines() {
            let start = line
                .strip_prefix("[start ")
                .and_then(|rest| rest.split_once(']'))
                .map_or("?", |(n, _)| n);
            let process = format!("{} (start {start})", service.name());
            all.extend(history::handling(&process, &line));
        }
    }
    all
}

/// Egress's gap between a provider's acceptance and the outcome's record, over every
/// message every ingress process sent: "p50 1.7 ms, p99 9.8 ms, max 14.5 ms (734)".
fn acceptance_window(services: &[Service]) -> String {
    let lines: Vec<(String, String)> = services
        .iter()
        .filter(|service| service.kind == Kind::Ingress)
        .flat_map(|service| {
            service.log_lines().into_iter().map(move |line| {
                let start = line
                    .strip_prefix("[start ")
                    .and_then(|rest| rest.split_once(']'))
                    .map_or("?", |(n, _)| n)
                    .to_owned();
                (format!("{} (start {start})", service.name()), line)
            })
        })
        .collect();
    let windows = history::acceptance_windows(lines.iter().map(|(p, l)| (p.as_str(), l.as_str())));
    if windows.is_empty() {
        return "not measured (no 'message delivered' and 'outcome appended' lines)".to_owned();
    }
    let ms = |us: i64| us as f64 / 1000.0;
    let at = |q: f64| windows[((windows.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({})",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(windows[windows.len() - 1]),
        windows.len()
    )
}

/// The warnings and errors every process logged, for a failure message.
fn logs(services: &[Service]) -> String {
    let mut out = String::new();
    for service in services {
        out.push_str(&format!(
            "\n--- helpline {} (warnings and errors, latest 20) ---\n{}\n",
            service.name(),
            service.log_problems(20),
        ));
    }
    out
}
