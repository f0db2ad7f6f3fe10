//! The history checker: pure functions over what a run recorded (the webhooks answered
//! 200, the event log, what each simulated customer received, the dead letters, the live
//! CSAT figures, the services' handler logs) that name every broken promise by ticket.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use helpline_domain::{Event, Holder, MessageBody, MessageId, Phase, Ticket, TicketId, evolve};

/// A webhook as the checker knows it: the channel's name and the provider message id.
pub type WebhookKey = (&'static str, String);

/// What the outbound check found for one ticket.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outbound {
    pub problems: Vec<String>,
    /// Bot and agent messages whose delivery the log records.
    pub delivered: usize,
    /// Messages the log records as failed (no `MessageDelivered`).
    pub failed: usize,
    /// Delivered messages the customer never received.
    pub lost: usize,
    /// Sends the customer received more than once, or that match no recorded delivery.
    pub duplicated: usize,
}

/// One dead letter as read from the dead-letter stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub consumer: String,
    pub original_subject: String,
    pub reason: String,
}

/// One row of a CSAT report, as the API and a rebuild both give it.
#[derive(Clone, Debug, PartialEq)]
pub struct CsatFigures {
    pub group: Vec<String>,
    pub ratings: u32,
    pub ratings_requested: u32,
    pub average: f64,
}

/// Every webhook answered 200 produced exactly one `CustomerMessageReceived`, and every
/// `CustomerMessageReceived` comes from such a webhook. `tickets` maps each ticket to its
/// channel's name and its events. Returns the problems and how many were lost.
pub fn inbound(
    accepted: &BTreeSet<WebhookKey>,
    tickets: &BTreeMap<TicketId, (&'static str, Vec<Event>)>,
) -> (Vec<String>, usize) {
    let mut seen: BTreeMap<WebhookKey, Vec<TicketId>> = BTreeMap::new();
    for (ticket, (channel, events)) in tickets {
        for event in events {
            if let Event::CustomerMessageReceived {
                provider_message_id,
                ..
            } = event
            {
                seen.entry((channel, provider_message_id.expose().clone()))
                    .or_default()
                    .push(*ticket);
            }
        }
    }
    let mut problems = Vec::new();
    let mut lost = 0;
    for key in accepted {
        match seen.get(key).map(Vec::len).unwrap_or(0) {
            1 => {}
            0 => {
                lost += 1;
                problems.push(format!(
                    "{} webhook {} was answered 200 but no CustomerMessageReceived holds it",
                    key.0, key.1
                ));
            }
            n => problems.push(format!(
                "{} webhook {} produced {n} CustomerMessageReceived, on tickets {:?}",
                key.0, key.1, seen[key]
            )),
        }
    }
    for (key, on) in &seen {
        if !accepted.contains(key) {
            problems.push(format!(
                "ticket {:?}: CustomerMessageReceived {} ({}) from no webhook answered 200",
                on, key.1, key.0
            ));
        }
    }
    (problems, lost)
}

/// The customer's words are on their own ticket, each once, with its text, in the order
/// they were written: `said` is what the customer wrote and had answered 200, in order
/// (provider message id, text).
pub fn inbound_in_order(
    ticket: TicketId,
    events: &[Event],
    said: &[(String, String)],
) -> Vec<String> {
    let logged: Vec<(String, String)> = events
        .iter()
        .filter_map(|event| match event {
            Event::CustomerMessageReceived {
                provider_message_id,
                body,
                ..
            } => Some((
                provider_message_id.expose().clone(),
                match body {
                    MessageBody::Text(text) => text.expose().clone(),
                    other => format!("{other:?}"),
                },
            )),
            _ => None,
        })
        .collect();
    if logged == said {
        return Vec::new();
    }
    vec![format!(
        "ticket {}: the customer wrote {said:?}, the log holds {logged:?}",
        ticket.0
    )]
}

/// The bot says each prompt once per thing the customer wrote: the same prompt twice
/// with no customer message between is one reaction made twice (a redelivered event
/// decided again, two replicas deciding at once).
pub fn prompts_once(ticket: TicketId, events: &[Event]) -> Vec<String> {
    let mut since_customer: Vec<&str> = Vec::new();
    let mut problems = Vec::new();
    for event in events {
        match event {
            Event::CustomerMessageReceived { .. } => since_customer.clear(),
            Event::BotMessageSent { prompt, .. } => {
                if since_customer.contains(&prompt.as_str()) {
                    problems.push(format!(
                        "ticket {}: the bot said {prompt:?} twice with no customer message between",
                        ticket.0
                    ));
                }
                since_customer.push(prompt);
            }
            _ => {}
        }
    }
    problems
}

/// Every bot or agent message of the ticket reached the customer exactly once and in the
/// order of the log: `received` is the provider message ids the customer got, in arrival
/// order. A message recorded as failed must not have arrived.
pub fn outbound(ticket: TicketId, events: &[Event], received: &[String]) -> Outbound {
    let mut sent: Vec<(MessageId, String)> = Vec::new();
    let mut delivered: BTreeMap<MessageId, Vec<String>> = BTreeMap::new();
    let mut failed: BTreeSet<MessageId> = BTreeSet::new();
    for event in events {
        match event {
            Event::BotMessageSent {
                message, prompt, ..
            } => sent.push((*message, prompt.clone())),
            Event::AgentMessageSent { message, .. } => sent.push((*message, "agent".to_owned())),
            Event::MessageDelivered {
                message,
                provider_message_id,
            } => delivered
                .entry(*message)
                .or_default()
                .push(provider_message_id.expose().clone()),
            Event::MessageDeliveryFailed { message, .. } => {
                failed.insert(*message);
            }
            _ => {}
        }
    }
    let mut report = Outbound::default();
    let mut expected: Vec<String> = Vec::new();
    for (message, prompt) in &sent {
        match delivered.get(message).map(Vec::as_slice) {
            Some([provider_id]) => {
                report.delivered += 1;
                expected.push(provider_id.clone());
            }
            Some(many) => report.problems.push(format!(
                "ticket {}: message {} ({prompt}) has {} MessageDelivered: {many:?}",
                ticket.0,
                message.0,
                many.len()
            )),
            None if failed.contains(message) => report.failed += 1,
            None => report.problems.push(format!(
                "ticket {}: message {} ({prompt}) has no delivery outcome in the log",
                ticket.0, message.0
            )),
        }
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in received {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    for id in &expected {
        if !counts.contains_key(id.as_str()) {
            report.lost += 1;
            report.problems.push(format!(
                "ticket {}: delivered message {id} never reached the customer",
                ticket.0
            ));
        }
    }
    for (id, n) in &counts {
        if !expected.iter().any(|e| e == id) {
            report.duplicated += n;
            report.problems.push(format!(
                "ticket {}: the customer received {id} {n} time(s), which no MessageDelivered names (a second send?)",
                ticket.0
            ));
        } else if *n > 1 {
            report.duplicated += n - 1;
            report.problems.push(format!(
                "ticket {}: the customer received {id} {n} times",
                ticket.0
            ));
        }
    }
    if report.problems.is_empty() && received != expected.as_slice() {
        report.problems.push(format!(
            "ticket {}: messages arrived out of order: log order {expected:?}, arrival order {received:?}",
            ticket.0
        ));
    }
    report
}

/// The ticket's events form a sequence the domain allows: each event is one that
/// `decide` produces in the phase (and for the holder) the events before it left, and the
/// events that `decide` only ever produces together come together.
pub fn phases(ticket: TicketId, events: &[Event]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut state = Ticket::default();
    // Each SLA alarm (clock, level, run) is recorded once, whatever restarts the watch saw.
    let mut alarms = std::collections::BTreeSet::new();
    for (i, event) in events.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| &events[p]);
        let next = events.get(i + 1);
        if let Event::SlaAlarm {
            clock,
            level,
            run_since_ms,
            ..
        } = event
            && !alarms.insert((clock.as_str(), level.as_str(), *run_since_ms))
        {
            problems.push(format!(
                "ticket {}: event {} ({}) records an SLA alarm a second time",
                ticket.0,
                i + 1,
                event.name()
            ));
        }
        if let Err(why) = allowed(&state, previous, event, next) {
            problems.push(format!(
                "ticket {}: event {} ({}) in phase {}: {why}",
                ticket.0,
                i + 1,
                event.name(),
                state.phase
            ));
        }
        state = evolve(state, event);
    }
    problems
}

/// The phases in which a ticket takes conversation (DESIGN §3: every open phase).
const CONVERSATION: [Phase; 7] = [
    Phase::Open,
    Phase::Routing,
    Phase::Queued,
    Phase::Assigned,
    Phase::ReferredToStore,
    Phase::Resolved,
    Phase::AwaitingRating,
];

fn allowed(
    state: &Ticket,
    previous: Option<&Event>,
    event: &Event,
    next: Option<&Event>,
) -> Result<(), String> {
    let phase = state.phase;
    let within = |phases: &[Phase]| {
        if phases.contains(&phase) {
            Ok(())
        } else {
            Err(format!("allowed only in {phases:?}"))
        }
    };
    let accepted_agent = |agent| {
        if phase == Phase::Assigned && state.accepted && state.agent.as_ref() == Some(agent) {
            Ok(())
        } else {
            Err("needs the assigned agent's acceptance".to_owned())
        }
    };
    if phase == Phase::New && !matches!(event, Event::TicketOpened { .. }) {
        return Err("the ticket was never opened".to_owned());
    }
    match event {
        Event::TicketOpened { .. } => within(&[Phase::New]),
        Event::CustomerMessageReceived { .. } => within(&CONVERSATION),
        Event::BotMessageSent { .. } => {
            within(&CONVERSATION)?;
            if state.holder == Holder::Agent {
                return Err("the bot spoke while an agent held the conversation".to_owned());
            }
            Ok(())
        }
        Event::DetailsCaptured(_) | Event::LanguageDetected { .. } => within(&[Phase::Open]),
        Event::HandoffRequested { .. } => within(&[Phase::Open]),
        Event::TicketRouted { .. } => {
            within(&[Phase::Routing])?;
            match next {
                Some(Event::TicketQueued { .. } | Event::ReferredToStore(_)) => Ok(()),
                _ => Err("not followed by TicketQueued or ReferredToStore".to_owned()),
            }
        }
        Event::ReferredToStore(_) => match previous {
            Some(Event::TicketRouted { .. }) => Ok(()),
            _ => Err("not preceded by TicketRouted".to_owned()),
        },
        Event::TicketQueued { .. } => match previous {
            Some(Event::TicketRouted { .. } | Event::TicketReleased { .. }) => Ok(()),
            _ => Err("not preceded by TicketRouted or TicketReleased".to_owned()),
        },
        Event::AgentAssigned { .. } => within(&[Phase::Queued]),
        Event::AgentAccepted { agent } => {
            if phase == Phase::Assigned && !state.accepted && state.agent.as_ref() == Some(agent) {
                Ok(())
            } else {
                Err("not assigned to this agent, or accepted already".to_owned())
            }
        }
        Event::AgentMessageSent { agent, .. }
        | Event::TicketResolved { agent, .. }
        | Event::ConversationHandedBack { agent } => accepted_agent(agent),
        Event::TicketReleased { agent, .. } => {
            if phase != Phase::Assigned || state.agent.as_ref() != Some(agent) {
                return Err("not assigned to this agent".to_owned());
            }
            match next {
                Some(Event::TicketQueued { .. }) => Ok(()),
                _ => Err("not followed by TicketQueued".to_owned()),
            }
        }
        Event::RatingRequested { .. } => {
            within(&[Phase::Resolved, Phase::ReferredToStore])?;
            match previous {
                Some(Event::BotMessageSent { .. }) => Ok(()),
                _ => Err("not preceded by the bot's rating request".to_owned()),
            }
        }
        Event::RatingReceived { score, .. } => {
            within(&[Phase::AwaitingRating])?;
            if !(1..=5).contains(score) {
                return Err(format!("score {score} outside 1–5"));
            }
            match next {
                Some(Event::TicketClosed { .. }) => Ok(()),
                _ => Err("not followed by TicketClosed".to_owned()),
            }
        }
        Event::TicketClosed { .. } => within(&[
            Phase::Resolved,
            Phase::ReferredToStore,
            Phase::AwaitingRating,
        ]),
        Event::TicketAbandoned => {
            within(&[Phase::Open, Phase::Routing, Phase::Queued, Phase::Assigned])
        }
        // An SLA clock runs from the first queueing: no alarm before it.
        Event::SlaAlarm { .. } if state.queue.is_none() => {
            Err("an SLA alarm on a ticket never queued".to_owned())
        }
        // The canned reply's record comes with the agent's message it wrote.
        Event::CannedReplyUsed { message, .. } => match previous {
            Some(Event::AgentMessageSent { message: sent, .. }) if sent == message => Ok(()),
            _ => Err("not preceded by the agent's message it names".to_owned()),
        },
        // Receipts, notes and erasure: the domain takes them in any phase of an opened
        // ticket (receipts even after it closed), and their own rules are not what faults
        // can break.
        _ => Ok(()),
    }
}

/// Exactly one dead letter per consumer for each poison event, and nothing else.
pub fn dead_letters(letters: &[DeadLetter], poison: &[String], consumers: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut count: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for letter in letters {
        if poison.contains(&letter.original_subject) {
            *count
                .entry((letter.consumer.as_str(), letter.original_subject.as_str()))
                .or_default() += 1;
        } else {
            problems.push(format!(
                "consumer {} dead-lettered an event of {}, which is no poison event: {}",
                letter.consumer, letter.original_subject, letter.reason
            ));
        }
    }
    for subject in poison {
        for consumer in consumers {
            match count.get(&(*consumer, subject.as_str())) {
                Some(1) => {}
                Some(n) => problems.push(format!(
                    "consumer {consumer} dead-lettered the poison event on {subject} {n} times"
                )),
                None => problems.push(format!(
                    "consumer {consumer} never dead-lettered the poison event on {subject}"
                )),
            }
        }
    }
    for (consumer, subject) in count.keys() {
        if !consumers.contains(consumer) {
            problems.push(format!(
                "unexpected consumer {consumer} dead-lettered the poison event on {subject}"
            ));
        }
    }
    problems
}

/// The live report equals the rebuilt one, row for row.
pub fn csat(live: &[CsatFigures], rebuilt: &[CsatFigures]) -> Vec<String> {
    let same = |a: &CsatFigures, b: &CsatFigures| {
        a.group == b.group
            && a.ratings == b.ratings
            && a.ratings_requested == b.ratings_requested
            && (a.average - b.average).abs() < 1e-9
    };
    if live.len() == rebuilt.len() && live.iter().zip(rebuilt).all(|(a, b)| same(a, b)) {
        return Vec::new();
    }
    vec![format!(
        "the live CSAT report differs from a rebuild from the log:\n  live    {live:?}\n  rebuilt {rebuilt:?}"
    )]
}

/// One message a customer got, as the ordered check reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub provider_message_id: String,
    /// What the customer saw (text, buttons, template): two sends of one message show
    /// the same.
    pub content: String,
    /// When the provider took it.
    pub at: Instant,
}

impl Arrival {
    /// What one customer received, as the simulator recorded it, in arrival order.
    pub fn all(received: Vec<helpline_testkit::Received>) -> Vec<Arrival> {
        received
            .into_iter()
            .map(|r| Arrival {
                content: format!("{:?} {:?} {:?}", r.text, r.choices, r.template),
                provider_message_id: r.provider_message_id,
                at: r.received_at,
            })
            .collect()
    }
}

/// What the ordered check found for one ticket.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ordered {
    pub problems: Vec<String>,
    /// Bot and agent messages whose delivery the log records.
    pub delivered: usize,
    /// Messages the log records as failed.
    pub failed: usize,
    /// Delivered messages the customer never received.
    pub lost: usize,
    /// Sends the customer received more than once, beyond the second sends a kill
    /// explains.
    pub duplicated: usize,
    /// Second sends of a message whose first send the provider took around the kill of a
    /// sending process, without its record: the gap egress names.
    pub copies_after_kill: usize,
    /// Each of those copies: the ticket, the message and when it arrived, for the report.
    pub copies: Vec<String>,
    /// Whether the messages the log recorded arrived in another order than the log's.
    pub out_of_order: bool,
}

/// Every bot and agent message of the ticket reached the customer exactly once and in
/// the order of the log (the order of `BotMessageSent` and `AgentMessageSent`), where
/// `arrivals` is what the customer got in arrival order.
///
/// One exception is counted rather than failed: a send the provider took without the log
/// naming it (no `MessageDelivered` holds its provider id), showing what a delivered
/// message of the ticket shows, taken within `window` of one of `kills` (when a
/// sending process was killed; `window` is how long before and after). That is egress's
/// named gap: the process died after the provider took the message and before its
/// record, so the redelivered event sent it again. The caller bounds how many of those a
/// run may have. The order is checked on the sends the log names.
pub fn ordered(
    ticket: TicketId,
    events: &[Event],
    arrivals: &[Arrival],
    kills: &[Instant],
    window: (Duration, Duration),
) -> Ordered {
    let mut sent: Vec<(MessageId, String)> = Vec::new();
    let mut delivered: BTreeMap<MessageId, Vec<String>> = BTreeMap::new();
    let mut failed: BTreeSet<MessageId> = BTreeSet::new();
    for event in events {
        match event {
            Event::BotMessageSent {
                message, prompt, ..
            } => sent.push((*message, prompt.clone())),
            Event::AgentMessageSent { message, .. } => sent.push((*message, "agent".to_owned())),
            Event::MessageDelivered {
                message,
                provider_message_id,
            } => delivered
                .entry(*message)
                .or_default()
                .push(provider_message_id.expose().clone()),
            Event::MessageDeliveryFailed { message, .. } => {
                failed.insert(*message);
            }
            _ => {}
        }
    }
    let mut report = Ordered::default();
    // The provider ids the log names, in log order, with the prompt for messages.
    let mut expected: Vec<(String, String)> = Vec::new();
    for (message, prompt) in &sent {
        match delivered.get(message).map(Vec::as_slice) {
            Some([provider_id]) => {
                report.delivered += 1;
                expected.push((provider_id.clone(), prompt.clone()));
            }
            Some(many) => report.problems.push(format!(
                "ticket {}: message {} ({prompt}) has {} MessageDelivered: {many:?}",
                ticket.0,
                message.0,
                many.len()
            )),
            None if failed.contains(message) => report.failed += 1,
            None => report.problems.push(format!(
                "ticket {}: message {} ({prompt}) has no delivery outcome in the log",
                ticket.0, message.0
            )),
        }
    }
    let prompt_of = |id: &str| {
        expected
            .iter()
            .find(|(e, _)| e == id)
            .map(|(_, prompt)| prompt.clone())
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut first_at: BTreeMap<&str, Instant> = BTreeMap::new();
    let mut arrived: Vec<&str> = Vec::new();
    let near = |at: Instant| {
        kills
            .iter()
            .any(|kill| at + window.0 >= *kill && at <= *kill + window.1)
    };
    for arrival in arrivals {
        let id = arrival.provider_message_id.as_str();
        let near_kill = near(arrival.at);
        if let Some(prompt) = prompt_of(id) {
            let n = counts.entry(id).or_default();
            *n += 1;
            let first = *first_at.entry(id).or_insert(arrival.at);
            if *n == 1 {
                arrived.push(id);
            } else if near_kill || near(first) {
                // A provider whose message id is the sender's (Apple) shows a second send
                // under the same id: the same gap as a new id for the same words. Its
                // first arrival is the one the killed process sent without a record; the
                // second is the redelivery's, an ack wait later.
                report.copies_after_kill += 1;
                report.copies.push(format!(
                    "ticket {}: the {prompt} message again under its own id {id}{}",
                    ticket.0,
                    since_kills(arrival.at, kills)
                ));
            } else {
                report.duplicated += 1;
                report.problems.push(format!(
                    "ticket {}: the customer received {id} ({prompt}) again, far from any kill",
                    ticket.0
                ));
            }
            continue;
        }
        let copy_of = arrivals
            .iter()
            .find(|a| a.content == arrival.content && prompt_of(&a.provider_message_id).is_some())
            .and_then(|a| prompt_of(&a.provider_message_id));
        match copy_of {
            Some(prompt) if near_kill => {
                report.copies_after_kill += 1;
                report.copies.push(format!(
                    "ticket {}: the {prompt} message again as {id}{}",
                    ticket.0,
                    since_kills(arrival.at, kills)
                ));
            }
            Some(prompt) => {
                report.duplicated += 1;
                report.problems.push(format!(
                    "ticket {}: the customer got the {prompt} message a second time (as {id}), far from any kill",
                    ticket.0
                ));
            }
            None => {
                report.duplicated += 1;
                report.problems.push(format!(
                    "ticket {}: the customer got {id}, which no MessageDelivered names and no delivered message shows",
                    ticket.0
                ));
            }
        }
    }
    let mut in_log_order: Vec<&str> = Vec::new();
    for (id, prompt) in &expected {
        if counts.contains_key(id.as_str()) {
            in_log_order.push(id);
        } else {
            report.lost += 1;
            report.problems.push(format!(
                "ticket {}: delivered message {id} ({prompt}) never reached the customer",
                ticket.0
            ));
        }
    }
    if arrived != in_log_order {
        report.out_of_order = true;
        let prompts =
            |ids: &[&str]| -> Vec<String> { ids.iter().filter_map(|id| prompt_of(id)).collect() };
        report.problems.push(format!(
            "ticket {}: messages arrived out of order: log order {:?}, arrival order {:?}",
            ticket.0,
            prompts(&in_log_order),
            prompts(&arrived)
        ));
    }
    report
}

/// When `at` was, from each of `kills`: "(+1.2s after the kills, …)".
fn since_kills(at: Instant, kills: &[Instant]) -> String {
    let offsets: Vec<String> = kills
        .iter()
        .map(|kill| {
            if at >= *kill {
                format!("+{:.3}s", (at - *kill).as_secs_f64())
            } else {
                format!("-{:.3}s", (*kill - at).as_secs_f64())
            }
        })
        .collect();
    format!(" ({} from the kills)", offsets.join(", "))
}

/// The message of the line a service logs when it has finished handling one event:
/// after the handler returned and the event was acknowledged, retried or parked.
pub const HANDLED_MESSAGE: &str = "event handled";

/// One handling of one event by one process, as its log tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handling {
    /// The process: the service replica and which start of it.
    pub process: String,
    pub consumer: String,
    pub ticket: String,
    pub sequence: u64,
    /// Microseconds since the Unix epoch, by the machine's clock that all processes
    /// share: when handling began and when it ended.
    pub start_us: i64,
    pub end_us: i64,
}

/// Reads a handling from one JSON log line of `process`, when it is the line
/// [`HANDLED_MESSAGE`]: `timestamp` (RFC 3339, UTC, as `tracing`'s JSON format writes it)
/// is the end; the fields `consumer`, `ticket`, `sequence` and `elapsed_us` (how long the
/// handling took, in microseconds) say which and since when. `consumer`, `ticket` and
/// `sequence` may also come from the line's span (`handle event`).
pub fn handling(process: &str, line: &str) -> Option<Handling> {
    let json = &line[line.find('{')?..];
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let fields = value.get("fields")?;
    if fields.get("message")?.as_str()? != HANDLED_MESSAGE {
        return None;
    }
    // The line's own fields first, then those of its span ("handle event" names the
    // consumer, ticket and sequence too).
    let span = value.get("span");
    let field = |name: &str| fields.get(name).or_else(|| span?.get(name));
    let number = |name: &str| {
        let field = field(name)?;
        field
            .as_u64()
            .or_else(|| field.as_str().and_then(|s| s.parse().ok()))
    };
    let text = |name: &str| field(name)?.as_str().map(str::to_owned);
    let end_us = unix_micros(value.get("timestamp")?.as_str()?)?;
    let elapsed = i64::try_from(number("elapsed_us")?).ok()?;
    Some(Handling {
        process: process.to_owned(),
        consumer: text("consumer")?,
        ticket: text("ticket")?,
        sequence: number("sequence")?,
        start_us: end_us - elapsed,
        end_us,
    })
}

/// No two processes handled events of one ticket for one consumer at the same time: for
/// each pair of handlings of the same consumer and ticket by different processes whose
/// times overlap, a problem.
pub fn overlaps(handlings: &[Handling]) -> Vec<String> {
    let mut by_ticket: BTreeMap<(&str, &str), Vec<&Handling>> = BTreeMap::new();
    for h in handlings {
        by_ticket
            .entry((h.consumer.as_str(), h.ticket.as_str()))
            .or_default()
            .push(h);
    }
    let mut problems = Vec::new();
    for ((consumer, ticket), mut list) in by_ticket {
        list.sort_by_key(|h| (h.start_us, h.end_us));
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                if b.start_us >= a.end_us {
                    break;
                }
                if a.process != b.process {
                    problems.push(format!(
                        "consumer {consumer}, ticket {ticket}: {} handled sequence {} while {} handled sequence {} ({} µs together)",
                        a.process,
                        a.sequence,
                        b.process,
                        b.sequence,
                        a.end_us.min(b.end_us) - b.start_us
                    ));
                }
            }
        }
    }
    problems
}

/// The lines egress logs when a provider took a message (`message delivered`) and when
/// its outcome is in the log (`outcome appended`), both at debug.
const ACCEPTED_MESSAGE: &str = "\"message\":\"message delivered\"";
const RECORDED_MESSAGE: &str = "\"message\":\"outcome appended\"";

/// Egress's named gap, measured: for every message a process logged as taken by the
/// provider and then as recorded, the microseconds between the two lines. `lines` are
/// each process's log lines with the process's name (a replica's start).
pub fn acceptance_windows<'a>(lines: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<i64> {
    let mut accepted: BTreeMap<(&str, String), i64> = BTreeMap::new();
    let mut windows = Vec::new();
    for (process, line) in lines {
        let (is_accepted, is_recorded) = (
            line.contains(ACCEPTED_MESSAGE),
            line.contains(RECORDED_MESSAGE),
        );
        if !is_accepted && !is_recorded {
            continue;
        }
        let Some(value) = line
            .find('{')
            .and_then(|at| serde_json::from_str::<serde_json::Value>(&line[at..]).ok())
        else {
            continue;
        };
        // The message's id, beside the line's own `message`.
        let (Some(at), Some(message)) = (
            value
                .get("timestamp")
                .and_then(|t| t.as_str())
                .and_then(unix_micros),
            value
                .get("fields")
                .and_then(|fields| fields.get("message_id"))
                .and_then(|m| m.as_str()),
        ) else {
            continue;
        };
        let key = (process, message.to_owned());
        if is_accepted {
            accepted.insert(key, at);
        } else if let Some(taken) = accepted.remove(&key) {
            windows.push(at - taken);
        }
    }
    windows.sort_unstable();
    windows
}

/// `2025-06-01T12:34:56.123456Z` as microseconds since the Unix epoch.
fn unix_micros(timestamp: &str) -> Option<i64> {
    let (date, time) = timestamp.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut clock = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    let digits = fraction.len().min(6);
    let micros = fraction.get(..digits)?.parse::<i64>().ok()? * 10_i64.pow(6 - digits as u32);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + micros)
}

/// Every append was stored once: each `Nats-Msg-Id` (a command id and the event's place
/// in it) appears once in the log, so no service's reaction to a cause, and no other
/// command, was stored twice. `ids` are (stream sequence, message id).
pub fn stored_once(ids: &[(u64, String)]) -> Vec<String> {
    let mut seen: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (sequence, id) in ids {
        seen.entry(id.as_str()).or_default().push(*sequence);
    }
    seen.into_iter()
        .filter(|(_, sequences)| sequences.len() > 1)
        .map(|(id, sequences)| format!("message id {id} is stored at sequences {sequences:?}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use helpline_domain::{
        AgentId, Channel, CloseReason, Customer, MessageBody, Personal, QueueId, RouteDestination,
    };
    use uuid::Uuid;

    use super::*;

    fn ticket() -> TicketId {
        TicketId(Uuid::from_u128(7))
    }

    fn opened() -> Event {
        Event::TicketOpened {
            ticket: ticket(),
            customer: Customer {
                channel: Channel::WhatsApp,
                contact: Personal::new("4915100000001".to_owned()),
                display_name: None,
            },
            language: "de".to_owned(),
        }
    }

    fn says(provider_id: &str) -> Event {
        Event::CustomerMessageReceived {
            message: MessageId(Uuid::now_v7()),
            provider_message_id: provider_id.into(),
            body: MessageBody::Text(Personal::new("hallo".to_owned())),
        }
    }

    fn bot(n: u128, prompt: &str) -> Event {
        Event::BotMessageSent {
            message: MessageId(Uuid::from_u128(n)),
            body: MessageBody::Text(Personal::new(prompt.to_owned())),
            prompt: prompt.to_owned(),
            choices: Vec::new(),
        }
    }

    fn delivered(n: u128, provider_id: &str) -> Event {
        Event::MessageDelivered {
            message: MessageId(Uuid::from_u128(n)),
            provider_message_id: provider_id.into(),
        }
    }

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    fn tickets(events: Vec<Event>) -> BTreeMap<TicketId, (&'static str, Vec<Event>)> {
        BTreeMap::from([(ticket(), ("whatsapp", events))])
    }

    #[test]
    fn a_prompt_said_twice_for_one_customer_message_is_a_problem() {
        let once = vec![
            opened(),
            says("wamid.1"),
            bot(1, "greeting"),
            bot(2, "ask_serial"),
        ];
        assert!(prompts_once(ticket(), &once).is_empty());
        let asked_again = vec![
            opened(),
            says("wamid.1"),
            bot(1, "ask_serial"),
            says("wamid.2"),
            bot(2, "ask_serial"),
        ];
        assert!(
            prompts_once(ticket(), &asked_again).is_empty(),
            "a new answer, a new ask"
        );
        let twice = vec![
            opened(),
            says("wamid.1"),
            bot(1, "greeting"),
            bot(2, "greeting"),
        ];
        assert_eq!(prompts_once(ticket(), &twice).len(), 1);
    }

    #[test]
    fn the_customers_words_are_on_their_ticket_once_with_their_text_in_order() {
        let said = vec![
            ("wamid.1".to_owned(), "hallo".to_owned()),
            ("wamid.2".to_owned(), "SN-42".to_owned()),
        ];
        let says = |id: &str, text: &str| Event::CustomerMessageReceived {
            message: MessageId(Uuid::now_v7()),
            provider_message_id: Personal::new(id.to_owned()),
            body: MessageBody::Text(Personal::new(text.to_owned())),
        };
        let logged = vec![opened(), says("wamid.1", "hallo"), says("wamid.2", "SN-42")];
        assert!(inbound_in_order(ticket(), &logged, &said).is_empty());
        let swapped = vec![opened(), says("wamid.2", "SN-42"), says("wamid.1", "hallo")];
        assert_eq!(
            inbound_in_order(ticket(), &swapped, &said).len(),
            1,
            "order"
        );
        let altered = vec![opened(), says("wamid.1", "hallo"), says("wamid.2", "SN-43")];
        assert_eq!(inbound_in_order(ticket(), &altered, &said).len(), 1, "text");
        let twice = vec![
            opened(),
            says("wamid.1", "hallo"),
            says("wamid.1", "hallo"),
            says("wamid.2", "SN-42"),
        ];
        assert_eq!(inbound_in_order(ticket(), &twice, &said).len(), 1, "twice");
    }

    #[test]
    fn a_webhook_answered_200_is_one_customer_message() {
        let accepted = BTreeSet::from([("whatsapp", "wamid.1".to_owned())]);
        let (problems, lost) = inbound(&accepted, &tickets(vec![opened(), says("wamid.1")]));
        assert_eq!((problems, lost), (vec![], 0));
    }

    #[test]
    fn a_lost_a_doubled_and_a_phantom_customer_message_are_named() {
        let accepted = BTreeSet::from([
            ("whatsapp", "wamid.1".to_owned()),
            ("whatsapp", "wamid.2".to_owned()),
        ]);
        let events = vec![opened(), says("wamid.1"), says("wamid.1"), says("wamid.3")];
        let (problems, lost) = inbound(&accepted, &tickets(events));
        assert_eq!(lost, 1);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("produced 2"), "{problems:#?}");
        assert!(problems[1].contains("wamid.2"), "{problems:#?}");
        assert!(problems[2].contains("wamid.3"), "{problems:#?}");
    }

    #[test]
    fn messages_received_once_in_order_pass() {
        let events = [
            opened(),
            bot(1, "greeting"),
            bot(2, "ask_serial"),
            delivered(1, "p1"),
            delivered(2, "p2"),
        ];
        let report = outbound(ticket(), &events, &strings(&["p1", "p2"]));
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!(
            (report.delivered, report.lost, report.duplicated),
            (2, 0, 0)
        );
    }

    #[test]
    fn a_second_send_a_loss_and_a_swap_are_named() {
        let events = [
            opened(),
            bot(1, "greeting"),
            bot(2, "ask_serial"),
            delivered(1, "p1"),
            delivered(2, "p2"),
        ];
        let twice = outbound(ticket(), &events, &strings(&["p1", "p9", "p2", "p2"]));
        assert_eq!((twice.lost, twice.duplicated), (0, 2), "{twice:#?}");
        let lost = outbound(ticket(), &events, &strings(&["p1"]));
        assert_eq!((lost.lost, lost.duplicated), (1, 0), "{lost:#?}");
        let swapped = outbound(ticket(), &events, &strings(&["p2", "p1"]));
        assert!(swapped.problems[0].contains("out of order"), "{swapped:#?}");
    }

    #[test]
    fn a_message_without_an_outcome_or_with_a_failure_is_counted() {
        let events = [
            opened(),
            bot(1, "greeting"),
            bot(2, "ask_serial"),
            Event::MessageDeliveryFailed {
                message: MessageId(Uuid::from_u128(1)),
                reason: "blocked".into(),
                permanent: true,
            },
        ];
        let report = outbound(ticket(), &events, &[]);
        assert_eq!(report.failed, 1);
        assert_eq!(report.problems.len(), 1, "{report:#?}");
        assert!(report.problems[0].contains("no delivery outcome"));
    }

    #[test]
    fn the_whole_life_of_a_ticket_is_allowed() {
        let anna = AgentId::new("anna");
        let queue = QueueId::new("de-laptops");
        let events = [
            opened(),
            says("w1"),
            bot(1, "greeting"),
            Event::HandoffRequested {
                reason: helpline_domain::HandoffReason::DetailsComplete,
                summary: Personal::new("summary".to_owned()),
            },
            Event::TicketRouted {
                rule: "laptops".to_owned(),
                destination: RouteDestination::Queue(queue.clone()),
            },
            Event::TicketQueued { queue },
            Event::AgentAssigned {
                agent: anna.clone(),
            },
            Event::AgentAccepted {
                agent: anna.clone(),
            },
            Event::AgentMessageSent {
                agent: anna.clone(),
                message: MessageId(Uuid::from_u128(2)),
                body: MessageBody::Text(Personal::new("hi".to_owned())),
            },
            Event::TicketResolved {
                agent: anna,
                summary: "done".to_owned(),
            },
            bot(3, "rating"),
            Event::RatingRequested {
                message: MessageId(Uuid::from_u128(3)),
            },
            Event::RatingReceived {
                score: 5,
                comment: None,
            },
            Event::TicketClosed {
                reason: CloseReason::Rated,
            },
            delivered(3, "p3"),
        ];
        assert_eq!(phases(ticket(), &events), Vec::<String>::new());
    }

    #[test]
    fn events_out_of_their_phase_are_named() {
        let anna = AgentId::new("anna");
        let events = [
            opened(),
            Event::AgentAssigned {
                agent: anna.clone(),
            },
            Event::TicketClosed {
                reason: CloseReason::Rated,
            },
            says("w1"),
        ];
        let problems = phases(ticket(), &events);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("AgentAssigned"), "{problems:#?}");
        assert!(problems[2].contains("Closed"), "{problems:#?}");
        let never_opened = phases(ticket(), &[says("w1")]);
        assert!(
            never_opened[0].contains("never opened"),
            "{never_opened:#?}"
        );
    }

    #[test]
    fn the_bot_never_speaks_while_an_agent_holds_the_ticket() {
        let queue = QueueId::new("de-laptops");
        let events = [
            opened(),
            Event::HandoffRequested {
                reason: helpline_domain::HandoffReason::DetailsComplete,
                summary: Personal::new("summary".to_owned()),
            },
            Event::TicketRouted {
                rule: "laptops".to_owned(),
                destination: RouteDestination::Queue(queue.clone()),
            },
            Event::TicketQueued { queue },
            Event::AgentAssigned {
                agent: AgentId::new("anna"),
            },
            bot(1, "wait"),
        ];
        let problems = phases(ticket(), &events);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("agent held"), "{problems:#?}");
    }

    #[test]
    fn an_sla_alarm_is_recorded_once_and_only_on_a_queued_ticket() {
        use helpline_domain::sla::{SlaClock, SlaLevel};
        let alarm = |level| Event::SlaAlarm {
            clock: SlaClock::FirstResponse,
            level,
            target_secs: 600,
            run_since_ms: 0,
        };
        let queue = QueueId::new("de-laptops");
        let queued = [
            opened(),
            Event::HandoffRequested {
                reason: helpline_domain::HandoffReason::DetailsComplete,
                summary: Personal::new("summary".to_owned()),
            },
            Event::TicketRouted {
                rule: "laptops".to_owned(),
                destination: RouteDestination::Queue(queue.clone()),
            },
            Event::TicketQueued { queue },
        ];
        let mut events = queued.to_vec();
        events.extend([alarm(SlaLevel::Warning), alarm(SlaLevel::Breached)]);
        assert_eq!(phases(ticket(), &events), Vec::<String>::new());
        events.push(alarm(SlaLevel::Warning));
        let problems = phases(ticket(), &events);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("a second time"), "{problems:#?}");
        let unqueued = phases(ticket(), &[opened(), alarm(SlaLevel::Warning)]);
        assert_eq!(unqueued.len(), 1, "{unqueued:#?}");
        assert!(unqueued[0].contains("never queued"), "{unqueued:#?}");
    }

    #[test]
    fn a_canned_reply_is_recorded_with_the_agents_message_it_wrote() {
        let anna = AgentId::new("anna");
        let sent = |n| Event::AgentMessageSent {
            agent: anna.clone(),
            message: MessageId(Uuid::from_u128(n)),
            body: MessageBody::Text(Personal::new("hi".to_owned())),
        };
        let canned = |n| Event::CannedReplyUsed {
            message: MessageId(Uuid::from_u128(n)),
            shortcut: "hallo".to_owned(),
        };
        let problems = |events: &[Event]| {
            let mut all = vec![opened()];
            all.extend_from_slice(events);
            phases(ticket(), &all)
                .into_iter()
                .filter(|p| p.contains("CannedReplyUsed"))
                .collect::<Vec<_>>()
        };
        assert_eq!(problems(&[sent(1), canned(1)]), Vec::<String>::new());
        assert_eq!(problems(&[sent(1), canned(2)]).len(), 1);
        assert_eq!(problems(&[canned(1)]).len(), 1);
    }

    #[test]
    fn only_the_poison_event_is_dead_lettered_once_per_consumer() {
        let poison = vec!["helpline.de.ticket.x".to_owned()];
        let letter = |consumer: &str, subject: &str| DeadLetter {
            consumer: consumer.to_owned(),
            original_subject: subject.to_owned(),
            reason: "undecodable event".to_owned(),
        };
        let good = [
            letter("bot", "helpline.de.ticket.x"),
            letter("egress", "helpline.de.ticket.x"),
        ];
        assert!(dead_letters(&good, &poison, &["bot", "egress"]).is_empty());
        let bad = [
            letter("bot", "helpline.de.ticket.x"),
            letter("bot", "helpline.de.ticket.x"),
            letter("egress", "helpline.de.ticket.y"),
        ];
        let problems = dead_letters(&bad, &poison, &["bot", "egress"]);
        assert_eq!(problems.len(), 3, "{problems:#?}");
    }

    #[test]
    fn csat_reports_compare_row_by_row() {
        let row = |ratings| CsatFigures {
            group: vec!["de-laptops".to_owned()],
            ratings,
            ratings_requested: 2,
            average: 4.5,
        };
        assert!(csat(&[row(2)], &[row(2)]).is_empty());
        assert_eq!(csat(&[row(1)], &[row(2)]).len(), 1);
        assert_eq!(csat(&[], &[row(2)]).len(), 1);
    }

    fn arrival(id: &str, content: &str, at: Instant) -> Arrival {
        Arrival {
            provider_message_id: id.to_owned(),
            content: content.to_owned(),
            at,
        }
    }

    const WINDOW: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(1));

    fn two_messages() -> Vec<Event> {
        vec![
            opened(),
            bot(1, "greeting"),
            bot(2, "ask_serial"),
            delivered(1, "p1"),
            delivered(2, "p2"),
        ]
    }

    #[test]
    fn messages_in_log_order_exactly_once_pass_the_ordered_check() {
        let now = Instant::now();
        let arrivals = [arrival("p1", "hi", now), arrival("p2", "serial?", now)];
        let report = ordered(ticket(), &two_messages(), &arrivals, &[], WINDOW);
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!(
            (report.delivered, report.lost, report.duplicated),
            (2, 0, 0)
        );
        assert!(!report.out_of_order);
    }

    #[test]
    fn two_messages_of_a_ticket_swapped_on_the_way_are_out_of_order() {
        let now = Instant::now();
        let arrivals = [arrival("p2", "serial?", now), arrival("p1", "hi", now)];
        let report = ordered(ticket(), &two_messages(), &arrivals, &[], WINDOW);
        assert!(report.out_of_order, "{report:#?}");
        assert!(
            report.problems[0].contains(
                r#"log order ["greeting", "ask_serial"], arrival order ["ask_serial", "greeting"]"#
            ),
            "{report:#?}"
        );
    }

    #[test]
    fn a_second_send_around_a_kill_is_counted_and_elsewhere_it_is_a_duplicate() {
        let kill = Instant::now();
        let copy_then_recorded = [
            arrival("p0", "hi", kill),
            arrival("p1", "hi", kill + Duration::from_secs(2)),
            arrival("p2", "serial?", kill + Duration::from_secs(3)),
        ];
        let report = ordered(
            ticket(),
            &two_messages(),
            &copy_then_recorded,
            &[kill],
            WINDOW,
        );
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!((report.copies_after_kill, report.duplicated), (1, 0));
        let far = ordered(
            ticket(),
            &two_messages(),
            &copy_then_recorded,
            &[kill + Duration::from_secs(60)],
            WINDOW,
        );
        assert_eq!((far.copies_after_kill, far.duplicated), (0, 1), "{far:#?}");
    }

    #[test]
    fn a_send_like_no_delivered_message_a_repeat_and_a_loss_are_named() {
        let kill = Instant::now();
        let arrivals = [
            arrival("p9", "something else", kill),
            arrival("p1", "hi", kill),
            arrival("p1", "hi", kill),
        ];
        let long_before = kill + Duration::from_secs(60);
        let report = ordered(ticket(), &two_messages(), &arrivals, &[long_before], WINDOW);
        assert_eq!((report.duplicated, report.lost), (2, 1), "{report:#?}");
        assert_eq!(report.copies_after_kill, 0);
    }

    #[test]
    fn a_resend_under_the_senders_own_id_an_ack_wait_after_the_kill_is_a_copy() {
        // The killed process sent it just before the kill; the redelivery sent it again
        // once the ack wait had passed, far from the kill itself.
        let kill = Instant::now();
        let arrivals = [
            arrival("p1", "hi", kill),
            arrival("p1", "hi", kill + Duration::from_secs(10)),
            arrival("p2", "serial?", kill + Duration::from_secs(11)),
        ];
        let report = ordered(ticket(), &two_messages(), &arrivals, &[kill], WINDOW);
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!((report.copies_after_kill, report.duplicated), (1, 0));
    }

    #[test]
    fn a_repeat_under_the_senders_own_id_around_a_kill_is_a_copy() {
        // Apple's message id is the one the sender chose: a second send repeats it.
        let kill = Instant::now();
        let arrivals = [
            arrival("p1", "hi", kill),
            arrival("p1", "hi", kill + Duration::from_millis(500)),
            arrival("p2", "serial?", kill + Duration::from_secs(1)),
        ];
        let report = ordered(ticket(), &two_messages(), &arrivals, &[kill], WINDOW);
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!((report.copies_after_kill, report.duplicated), (1, 0));
        assert!(!report.out_of_order, "{report:#?}");
        assert_eq!(report.copies.len(), 1, "{report:#?}");
    }

    fn log_line(message: &str, end: &str, elapsed_us: u64) -> String {
        format!(
            r#"[start 1] {{"timestamp":"{end}","level":"DEBUG","fields":{{"message":"{message}","consumer":"egress","ticket":"t1","sequence":7,"elapsed_us":{elapsed_us}}},"target":"helpline_eventstore::subscribe"}}"#
        )
    }

    #[test]
    fn a_handled_line_gives_the_handling_and_its_times() {
        let line = log_line(HANDLED_MESSAGE, "2025-06-01T12:00:01.000250Z", 500);
        let h = handling("ingress#2/1", &line).unwrap();
        assert_eq!(
            (h.consumer.as_str(), h.ticket.as_str(), h.sequence),
            ("egress", "t1", 7)
        );
        // 2025-06-01T00:00:00Z is 1748736000 s after the epoch.
        let end = (1_748_736_000 + 12 * 3600 + 1) * 1_000_000 + 250;
        assert_eq!((h.start_us, h.end_us), (end - 500, end));
        assert_eq!(
            handling(
                "x",
                &log_line("event sent", "2025-06-01T12:00:01.000250Z", 5)
            ),
            None
        );
        assert_eq!(handling("x", "[start 1] not json"), None);
        let in_span = r#"[start 2] {"timestamp":"2025-06-01T12:00:01.000250Z","level":"DEBUG","fields":{"message":"event handled","elapsed_us":10},"target":"helpline_eventstore::subscribe","span":{"consumer":"bot","ticket":"t2","sequence":9,"name":"handle event"}}"#;
        let h = handling("bot", in_span).unwrap();
        assert_eq!(
            (h.consumer.as_str(), h.ticket.as_str(), h.sequence),
            ("bot", "t2", 9)
        );
    }

    #[test]
    fn the_acceptance_window_runs_from_a_messages_delivery_to_its_recorded_outcome() {
        let line = |message: &str, at: &str, id: &str| {
            format!(
                r#"{{"timestamp":"2025-06-01T12:00:{at}Z","level":"DEBUG","fields":{{"message":"{message}","ticket":"t1","message_id":"{id}"}},"target":"helpline_egress::service"}}"#
            )
        };
        let lines = [
            line("message delivered", "01.000100", "m1"),
            line("message delivered", "01.000200", "m2"),
            line("outcome appended", "01.002100", "m1"),
            // Another process's record of m2 is not this process's.
            line("outcome appended", "01.000900", "m2"),
        ];
        let processes = ["a", "a", "a", "b"];
        let windows =
            acceptance_windows(processes.into_iter().zip(lines.iter().map(String::as_str)));
        assert_eq!(windows, vec![2_000]);
    }

    #[test]
    fn two_processes_handling_one_ticket_at_once_overlap_and_in_turn_do_not() {
        let h = |process: &str, ticket: &str, start_us, end_us| Handling {
            process: process.to_owned(),
            consumer: "egress".to_owned(),
            ticket: ticket.to_owned(),
            sequence: 1,
            start_us,
            end_us,
        };
        let in_turn = [
            h("a", "t1", 0, 10),
            h("b", "t1", 10, 20),
            h("a", "t1", 25, 30),
        ];
        assert_eq!(overlaps(&in_turn), Vec::<String>::new());
        let other_tickets = [h("a", "t1", 0, 10), h("b", "t2", 5, 20)];
        assert_eq!(overlaps(&other_tickets), Vec::<String>::new());
        let at_once = [h("a", "t1", 0, 10), h("b", "t1", 5, 20), h("c", "t1", 8, 9)];
        assert_eq!(overlaps(&at_once).len(), 3, "{:#?}", overlaps(&at_once));
    }

    #[test]
    fn a_message_id_stored_twice_is_named() {
        let ids = [
            (1, "a:0".to_owned()),
            (2, "b:0".to_owned()),
            (5, "a:0".to_owned()),
        ];
        assert_eq!(
            stored_once(&ids),
            vec!["message id a:0 is stored at sequences [1, 5]".to_owned()]
        );
    }
}
