//! The verdict both fault suites share (the one-server suite and the cluster mode): what the
//! log, the simulator and the services' APIs say after the load, as broken promises.

use std::time::{Duration, Instant};

use helpline_domain::{Event, Ticket, TicketId, fold};
use helpline_eventstore::EventStore;
use helpline_eventstore::subscribe::{
    DEAD_LETTER_CONSUMER_HEADER, DEAD_LETTER_REASON_HEADER, ORIGINAL_SUBJECT_HEADER,
};
use helpline_feedback::csat::{CsatFilter, CsatProjection, Grouping};
use helpline_proto::v1 as pb;
use helpline_region::RegionConfig;
use helpline_testkit::Simulator;

use crate::cluster::Kind;
use crate::history::{self, Arrival, CsatFigures, DeadLetter};
use crate::load::{Finished, Load};
use crate::run::{Log, read_log};

const REGION_FILE: &str = include_str!("../../../../deploy/k8s/overlays/de/helpline.toml");

/// Where the services' APIs answer.
#[derive(Clone, Copy, Debug)]
pub struct Apis<'a> {
    /// The Feedback API (the live CSAT report).
    pub feedback: &'a str,
    /// The TicketQuery API, when a query process runs.
    pub query: Option<&'a str>,
}

/// What the suite did on purpose that leaves its mark in the log.
#[derive(Clone, Copy, Debug, Default)]
pub struct Injected<'a> {
    /// Subjects of the poison events published.
    pub poison: &'a [String],
    /// Tickets of customers erased through the Privacy API.
    pub erased: &'a [TicketId],
    /// When a process that sends to providers (ingress, with egress) was killed.
    pub sending_kills: &'a [Instant],
}

/// Around a kill of a sending process (before, after), a send the provider took without
/// its record is the gap egress names, not a duplicate. After: the copy goes out once the
/// restarted process holds the partition again (its lease runs out first).
const KILL_WINDOW: (Duration, Duration) = (Duration::from_secs(15), Duration::from_secs(15));

/// What the checks found, and the counts for the summary line.
#[derive(Debug, Default)]
pub struct Verdict {
    pub problems: Vec<String>,
    /// Webhooks answered 200.
    pub accepted: usize,
    /// `CustomerMessageReceived` events in the log.
    pub customer_messages: usize,
    pub delivered: usize,
    pub failed: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Second sends explained by a kill of a sending process (at most one per kill).
    pub copies_after_kill: usize,
    pub csat_rows: usize,
    pub dead_letters: usize,
    /// Agents' messages recorded as written from a canned reply (`CannedReplyUsed`).
    pub canned_replies: usize,
}

/// Every webhook answered 200 is in the log exactly once, in its ticket and in order; every
/// message sent reached its customer exactly once (web chat repeats counted); nothing is
/// recorded as failed; each ticket's events are ones the domain allows, no prompt is sent
/// twice, a loaded ticket equals a fold of its log; the live CSAT report equals a rebuild;
/// the dead letters are exactly the `poison` events (subjects), and nothing else in the
/// log is undecodable; with a query process, its timeline of every ticket is the log's;
/// each `erased` ticket holds `CustomerErased` and its personal data reads as erased.
pub async fn check(
    sim: &Simulator,
    load: &Load,
    store: &EventStore,
    finished: &[Finished],
    apis: Apis<'_>,
    injected: Injected<'_>,
) -> Verdict {
    let (feedback_url, query_url) = (apis.feedback, apis.query);
    let (poison, erased) = (injected.poison, injected.erased);
    let injected = &injected;
    let log = read_log(store).await;
    let mut problems = Vec::new();

    let accepted = load.accepted.lock().unwrap().clone();
    // An erased customer's tickets are checked for their erasure; their messages (whose
    // provider ids are erased too) are no one's webhook any more.
    problems.extend(erasures(&log, erased));
    let remembered: std::collections::BTreeMap<_, _> = log
        .tickets
        .iter()
        .filter(|(ticket, _)| !erased.contains(ticket))
        .map(|(ticket, events)| (*ticket, events.clone()))
        .collect();
    let (inbound_problems, inbound_lost) = history::inbound(&accepted, &remembered);
    problems.extend(inbound_problems);

    let (mut delivered, mut failed, mut lost, mut duplicated) = (0, 0, inbound_lost, 0);
    let mut copies_after_kill = 0;
    for done in finished {
        let tickets = load.index.tickets_of(done.customer.channel, &done.address);
        if tickets.len() != 1 {
            problems.push(format!(
                "customer {} ({}) has {} tickets: {tickets:?}",
                done.customer.name,
                done.customer.channel.as_str(),
                tickets.len()
            ));
        }
        let Some((_, events)) = log.tickets.get(&done.ticket) else {
            problems.push(format!("ticket {} is not in the log", done.ticket.0));
            continue;
        };
        problems.extend(history::inbound_in_order(done.ticket, events, &done.said));
        let arrivals = Arrival::all(sim.received(done.customer.channel, &done.customer.name));
        let report = history::ordered(
            done.ticket,
            events,
            &arrivals,
            injected.sending_kills,
            KILL_WINDOW,
        );
        delivered += report.delivered;
        failed += report.failed;
        lost += report.lost;
        duplicated += report.duplicated;
        copies_after_kill += report.copies_after_kill;
        if report.out_of_order {
            problems.push(format!(
                "ticket {}: messages reached the customer in another order than the log's",
                done.ticket.0
            ));
        }
        problems.extend(report.problems);
    }
    // The web chat site shows a repeated callback once (it dedupes on event_id), but
    // helpline sent it twice: a copy, allowed only around a kill of a sending process.
    // Timed by the first of the two sends, as the window of every other channel's copy.
    for repeat in sim.web_repeats() {
        let near_kill = injected
            .sending_kills
            .iter()
            .any(|kill| repeat + KILL_WINDOW.0 >= *kill && repeat <= *kill + KILL_WINDOW.1);
        if near_kill {
            copies_after_kill += 1;
        } else {
            duplicated += 1;
            problems.push("a web chat callback was sent again, far from any kill".to_owned());
        }
    }
    // Egress's named gap: a sender killed after a provider took a message and before its
    // record sends it again. One such copy per kill at most.
    if copies_after_kill > injected.sending_kills.len() {
        problems.push(format!(
            "{copies_after_kill} messages went out a second time around {} kill(s) of a sending process; at most one per kill may",
            injected.sending_kills.len()
        ));
    }
    // Every fault the suite injects is one a provider recovers from (500s, 429s, kills,
    // restarts): a message recorded as failed is a message the customer never got.
    if failed > 0 {
        problems.push(format!(
            "{failed} messages recorded as MessageDeliveryFailed; every injected fault is transient"
        ));
    }
    for (ticket, (_, events)) in &log.tickets {
        problems.extend(history::phases(*ticket, events));
        problems.extend(history::prompts_once(*ticket, events));
        problems.extend(check_snapshot(store, *ticket, events).await);
    }
    if let Some(url) = query_url {
        problems.extend(check_query(url, &log).await);
    }
    let csat_rows = check_csat(feedback_url, &log).await;
    problems.extend(csat_rows.1);
    let letters = read_dead_letters(store).await;
    let consumers: Vec<&str> = Kind::ALL
        .iter()
        .flat_map(|kind| kind.ticket_consumers().iter().copied())
        .collect();
    problems.extend(history::dead_letters(&letters, poison, &consumers));
    let undecodable: Vec<&String> = log.undecodable.iter().map(|(_, s)| s).collect();
    if undecodable.len() != poison.len() {
        problems.push(format!(
            "the log holds undecodable messages on {undecodable:?}, the poison events were {:?}",
            poison
        ));
    }
    Verdict {
        problems,
        accepted: accepted.len(),
        customer_messages: log.customer_messages(),
        delivered,
        failed,
        lost,
        duplicated,
        copies_after_kill,
        csat_rows: csat_rows.0,
        dead_letters: letters.len(),
        canned_replies: log
            .tickets
            .values()
            .flat_map(|(_, events)| events)
            .filter(|event| matches!(event, helpline_domain::Event::CannedReplyUsed { .. }))
            .count(),
    }
}

/// The ticket as services load it (snapshot plus the events after it) equals a fold of
/// its whole log.
async fn check_snapshot(store: &EventStore, ticket: TicketId, events: &[Event]) -> Vec<String> {
    let folded = fold(Ticket::default(), events);
    match store.load(ticket).await {
        Ok(loaded) if loaded.ticket == folded => Vec::new(),
        Ok(loaded) => vec![format!(
            "ticket {}: loaded state differs from a fold of the log:\n  loaded {:?}\n  folded {folded:?}",
            ticket.0, loaded.ticket
        )],
        Err(e) => vec![format!("ticket {}: cannot load: {e}", ticket.0)],
    }
}

/// The feedback process's live CSAT report equals a rebuild from the log. Returns the
/// number of rows and the problems.
async fn check_csat(url: &str, log: &Log) -> (usize, Vec<String>) {
    let mut rebuilt = CsatProjection::default();
    for stored in &log.stored {
        rebuilt.apply(stored);
    }
    let region = RegionConfig::from_region_file(REGION_FILE).unwrap();
    let rebuilt: Vec<CsatFigures> = rebuilt
        .report(
            &CsatFilter::default(),
            &[Grouping::Queue, Grouping::Channel],
            &region.locale.zone(),
        )
        .into_iter()
        .map(|row| CsatFigures {
            average: row.average(),
            group: row.group,
            ratings: row.ratings,
            ratings_requested: row.ratings_requested,
        })
        .collect();
    let (channel, bearer) = as_supervisor(url).await;
    let mut client = pb::feedback_client::FeedbackClient::with_interceptor(channel, bearer);
    let last = log.stored.last().map_or(0, |s| s.sequence);
    let request = pb::GetCsatRequest {
        filter: None,
        group_by: vec![
            pb::CsatGrouping::Queue as i32,
            pb::CsatGrouping::Channel as i32,
        ],
    };
    // The projection follows the log; it has read everything once it reports the last
    // ticket event as applied; a follower that lost its consumer reads again within
    // seconds, so give it a generous while.
    for _ in 0..600 {
        let response = client.get_csat(request.clone()).await.unwrap().into_inner();
        let applied = response.position.map_or(0, |p| p.applied_sequence);
        if applied >= last {
            let live: Vec<CsatFigures> = response
                .rows
                .into_iter()
                .map(|row| CsatFigures {
                    group: row.group,
                    ratings: row.ratings,
                    ratings_requested: row.ratings_requested,
                    average: row.average,
                })
                .collect();
            return (rebuilt.len(), history::csat(&live, &rebuilt));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (
        rebuilt.len(),
        vec![format!(
            "the live CSAT projection never reached sequence {last}"
        )],
    )
}

async fn read_dead_letters(store: &EventStore) -> Vec<DeadLetter> {
    let mut stream = store
        .jetstream()
        .get_stream(store.layout().dead_letter_stream())
        .await
        .unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut letters = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        let Ok(message) = stream.direct_get(sequence).await else {
            continue;
        };
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        letters.push(DeadLetter {
            consumer: header(DEAD_LETTER_CONSUMER_HEADER),
            original_subject: header(ORIGINAL_SUBJECT_HEADER),
            reason: header(DEAD_LETTER_REASON_HEADER),
        });
    }
    letters
}

/// The query process's timeline of every ticket equals the log: the same events, by
/// sequence and name, in order, once the projection has read up to the log's end.
async fn check_query(url: &str, log: &Log) -> Vec<String> {
    let (channel, bearer) = as_supervisor(url).await;
    let mut client = pb::ticket_query_client::TicketQueryClient::with_interceptor(channel, bearer);
    let last = log.stored.last().map_or(0, |s| s.sequence);
    let mut expected: std::collections::BTreeMap<TicketId, Vec<(u64, &'static str)>> =
        Default::default();
    for stored in &log.stored {
        expected
            .entry(stored.meta.ticket)
            .or_default()
            .push((stored.sequence, stored.event.name()));
    }
    let mut problems = Vec::new();
    for (ticket, events) in &expected {
        let mut answer = None;
        for _ in 0..600 {
            let response = client
                .get_timeline(pb::GetTimelineRequest {
                    ticket_id: ticket.0.to_string(),
                })
                .await;
            match response {
                Ok(response) => {
                    let response = response.into_inner();
                    let applied = response.position.map_or(0, |p| p.applied_sequence);
                    if applied >= last {
                        answer = Some(response);
                        break;
                    }
                }
                Err(status) if status.code() == tonic::Code::NotFound => {}
                Err(status) => {
                    problems.push(format!("ticket {}: the query API: {status}", ticket.0));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let Some(answer) = answer else {
            problems.push(format!(
                "ticket {}: the query projection never reached sequence {last}",
                ticket.0
            ));
            continue;
        };
        let shown: Vec<(u64, String)> = answer
            .entries
            .into_iter()
            .map(|entry| (entry.sequence, entry.event_type))
            .collect();
        let logged: Vec<(u64, String)> = events
            .iter()
            .map(|(sequence, name)| (*sequence, (*name).to_owned()))
            .collect();
        if shown != logged {
            problems.push(format!(
                "ticket {}: the query API shows {shown:?}, the log holds {logged:?}",
                ticket.0
            ));
        }
    }
    problems
}

/// Each erased ticket is in the log with `CustomerErased`, and its customer's contact and
/// messages read as erased (their key is gone).
fn erasures(log: &Log, erased: &[TicketId]) -> Vec<String> {
    let mut problems = Vec::new();
    for ticket in erased {
        let Some((_, events)) = log.tickets.get(ticket) else {
            problems.push(format!("erased ticket {} is not in the log", ticket.0));
            continue;
        };
        if !events.iter().any(|e| matches!(e, Event::CustomerErased)) {
            problems.push(format!("erased ticket {} has no CustomerErased", ticket.0));
        }
        for event in events {
            let readable = match event {
                Event::TicketOpened { customer, .. } => !customer.contact.is_erased(),
                Event::CustomerMessageReceived {
                    body: helpline_domain::MessageBody::Text(text),
                    ..
                } => !text.is_erased(),
                _ => false,
            };
            if readable {
                problems.push(format!(
                    "erased ticket {}: {} still reads in the clear",
                    ticket.0,
                    event.name()
                ));
            }
        }
    }
    if erased.is_empty()
        && log
            .tickets
            .values()
            .any(|(_, e)| e.iter().any(|e| matches!(e, Event::CustomerErased)))
    {
        problems.push("a ticket was erased that no one asked to erase".to_owned());
    }
    problems
}

/// A connection to the API at `url` and a supervisor's bearer token for it. The services
/// run without a configuration file: tokens of the development key.
async fn as_supervisor(url: &str) -> (tonic::transport::Channel, helpline_testkit::bearer::Bearer) {
    let supervisor = helpline_testkit::bearer::token(
        &helpline_assignment::AuthKey::development(),
        "sabine",
        helpline_region::Role::Supervisor,
    )
    .unwrap();
    let channel = tonic::transport::Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    (
        channel,
        helpline_testkit::bearer::Bearer::with_token(&supervisor).unwrap(),
    )
}
