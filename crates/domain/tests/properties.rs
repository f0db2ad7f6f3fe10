//! Properties of `decide` and `evolve` over arbitrary command sequences.
//!
//! A sequence mixes arbitrary commands (mostly refused) with "the next step of the happy
//! path from wherever the ticket stands", so that runs reach the deep phases. Each
//! sequence is run through `decide` from a new ticket; accepted commands' events are
//! folded into the running state and appended to the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;

use helpline_domain::{
    AgentId, Channel, CloseReason, Command, Customer, Details, DomainError, Event, HandoffReason,
    Holder, Media, MediaKind, MessageBody, MessageId, Personal, Phase, QueueId, ReleaseReason,
    StoreId, StoreReferral, Ticket, TicketId, decide, evolve, fold,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use uuid::Uuid;

// =======================================================================================
// Generators
// =======================================================================================

const AGENTS: [&str; 3] = ["alice", "bob", ""];
const QUEUES: [&str; 3] = ["de-laptops-de", "de-phones-de", ""];
const STORES: [&str; 2] = ["berlin-mitte", ""];
const WORDS: [&str; 4] = ["", "  ", "x", "Hallo, mein Laptop startet nicht"];

fn word() -> impl Strategy<Value = String> {
    prop::sample::select(&WORDS[..]).prop_map(str::to_owned)
}

fn personal() -> impl Strategy<Value = Personal<String>> {
    word().prop_map(Personal::new)
}

fn agent() -> impl Strategy<Value = AgentId> {
    prop::sample::select(&AGENTS[..]).prop_map(AgentId::new)
}

fn queue() -> impl Strategy<Value = QueueId> {
    prop::sample::select(&QUEUES[..]).prop_map(QueueId::new)
}

fn store() -> impl Strategy<Value = StoreId> {
    prop::sample::select(&STORES[..]).prop_map(StoreId::new)
}

fn message_id() -> impl Strategy<Value = MessageId> {
    (0u128..4).prop_map(|n| MessageId(Uuid::from_u128(0x1000 + n)))
}

fn ticket_id() -> impl Strategy<Value = TicketId> {
    (1u128..=2).prop_map(|n| TicketId(Uuid::from_u128(n)))
}

fn body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        3 => personal().prop_map(MessageBody::Text),
        1 => (prop::option::of(personal()), 0u64..10_000).prop_map(|(caption, size_bytes)| {
            MessageBody::Media(Media {
                kind: MediaKind::Image,
                object: Personal::from("media/1.jpg"),
                mime_type: "image/jpeg".to_owned(),
                size_bytes,
                caption,
                provider_media: Personal::default(),
            })
        }),
        1 => prop::option::of(personal()).prop_map(|caption| {
            MessageBody::Media(Media {
                kind: MediaKind::Document,
                object: Personal::default(),
                mime_type: String::new(),
                size_bytes: 0,
                caption,
                provider_media: Personal::from("https://cdn.example.com/1.pdf"),
            })
        }),
        1 => Just(MessageBody::Location(Personal::new((52.52, 13.405)))),
    ]
}

fn customer() -> impl Strategy<Value = Customer> {
    (
        prop::sample::select(&Channel::ALL[..]),
        personal(),
        prop::option::of(personal()),
    )
        .prop_map(|(channel, contact, display_name)| Customer {
            channel,
            contact,
            display_name,
        })
}

fn details() -> impl Strategy<Value = Details> {
    (word(), personal(), personal(), any::<bool>()).prop_map(
        |(product, serial_number, problem, serial_verified)| Details {
            product,
            serial_number,
            problem,
            serial_verified,
            ..Details::default()
        },
    )
}

fn handoff_reason() -> impl Strategy<Value = HandoffReason> {
    prop::sample::select(vec![
        HandoffReason::DetailsComplete,
        HandoffReason::CustomerAsked,
        HandoffReason::BotGaveUp,
    ])
}

fn release_reason() -> impl Strategy<Value = ReleaseReason> {
    prop::sample::select(vec![
        ReleaseReason::ByAgent,
        ReleaseReason::AgentOffline,
        ReleaseReason::AcceptTimeout,
    ])
}

fn close_reason() -> impl Strategy<Value = CloseReason> {
    prop::sample::select(vec![
        CloseReason::Rated,
        CloseReason::RatingTimeout,
        CloseReason::NoRatingAsked,
    ])
}

/// Any command, with arguments from small pools (so agents match and differ, and strings
/// are often empty).
fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (ticket_id(), customer(), word()).prop_map(|(ticket, customer, language)| {
            Command::OpenTicket {
                ticket,
                customer,
                language,
            }
        }),
        (message_id(), word(), body()).prop_map(|(message, provider_message_id, body)| {
            Command::ReceiveCustomerMessage {
                message,
                provider_message_id: provider_message_id.into(),
                body,
            }
        }),
        (message_id(), body()).prop_map(|(message, body)| Command::SendBotMessage {
            message,
            body,
            prompt: "greeting".to_owned(),
            choices: vec![],
        }),
        word().prop_map(|language| Command::DetectLanguage { language }),
        agent().prop_map(|agent| Command::HandBackToBot { agent }),
        details().prop_map(Command::CaptureDetails),
        (handoff_reason(), personal())
            .prop_map(|(reason, summary)| Command::RequestHandoff { reason, summary }),
        (word(), queue()).prop_map(|(rule, queue)| Command::RouteToQueue { rule, queue }),
        (word(), store()).prop_map(|(rule, store)| Command::ReferToStore {
            rule,
            referral: StoreReferral {
                store,
                name: "Store".to_owned(),
                address: "Street 1".to_owned(),
                opening_hours: "Mo–Fr".to_owned(),
            },
        }),
        agent().prop_map(|agent| Command::AssignAgent { agent }),
        agent().prop_map(|agent| Command::AcceptAssignment { agent }),
        (agent(), message_id(), body()).prop_map(|(agent, message, body)| {
            Command::SendAgentMessage {
                agent,
                message,
                body,
            }
        }),
        (agent(), release_reason())
            .prop_map(|(agent, reason)| Command::ReleaseTicket { agent, reason }),
        (agent(), word()).prop_map(|(agent, summary)| Command::ResolveTicket { agent, summary }),
        (message_id(), body()).prop_map(|(message, body)| Command::RequestRating {
            message,
            body,
            choices: vec![],
        }),
        (0u8..=6, prop::option::of(personal()))
            .prop_map(|(score, comment)| Command::ReceiveRating { score, comment }),
        close_reason().prop_map(|reason| Command::CloseTicket { reason }),
        Just(Command::AbandonTicket),
        (message_id(), word()).prop_map(|(message, provider_message_id)| {
            Command::RecordDelivery {
                message,
                provider_message_id: provider_message_id.into(),
            }
        }),
        (message_id(), word(), any::<bool>()).prop_map(|(message, reason, permanent)| {
            Command::RecordDeliveryFailure {
                message,
                reason: reason.into(),
                permanent,
            }
        }),
        (message_id(), word()).prop_map(|(message, provider_message_id)| {
            Command::RecordRead {
                message,
                provider_message_id: provider_message_id.into(),
            }
        }),
        Just(Command::EraseCustomer),
        (message_id(), 0u64..10_000).prop_map(|(message, size_bytes)| {
            Command::RecordAttachmentStored {
                message,
                object: message.0.to_string(),
                size_bytes,
                mime_type: "application/pdf".to_owned(),
            }
        }),
        (message_id(), word())
            .prop_map(|(message, reason)| Command::RecordAttachmentNotFetched { message, reason }),
        (message_id(), message_id(), any::<bool>()).prop_map(|(message, notice, apple)| {
            Command::SendNotification {
                message,
                template: "repair_ready".to_owned(),
                kind: helpline_domain::NotificationKind::Transactional,
                body: MessageBody::Text("abholbereit".into()),
                whatsapp_template: None,
                message_tag: None,
                notice: apple.then(|| Box::new((notice, MessageBody::Text("Hinweis".into())))),
            }
        }),
    ]
}

/// One step of a generated sequence.
#[derive(Clone, Debug)]
enum Step {
    /// The next command of the happy path from the current state; the number picks among
    /// the branches (queue or store, accept or release, …) and sometimes a detour.
    Next(u8),
    /// Any command at all.
    Any(Box<Command>),
}

fn steps(max: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<u8>().prop_map(Step::Next),
            2 => command().prop_map(|command| Step::Any(Box::new(command))),
        ],
        0..max,
    )
}

/// The command a well-behaved caller would send next: the happy path, with its branches.
fn next_command(ticket: &Ticket, choice: u8) -> Command {
    use support::cmd;
    let pick = |pool: &[&'static str]| -> &'static str { pool[usize::from(choice) % pool.len()] };
    if choice % 32 == 31 {
        return cmd::erase();
    }
    // The media consumer records an awaited attachment's outcome, whatever the phase.
    if choice % 8 == 5
        && let Some(message) = ticket
            .attachments
            .iter()
            .find(|(_, fetch)| **fetch == helpline_domain::AttachmentFetch::Awaited)
            .map(|(message, _)| *message)
    {
        return match (choice / 8) % 2 {
            0 => Command::RecordAttachmentStored {
                message,
                object: message.0.to_string(),
                size_bytes: 1,
                mime_type: "application/pdf".to_owned(),
            },
            _ => Command::RecordAttachmentNotFetched {
                message,
                reason: "provider answered 503".to_owned(),
            },
        };
    }
    let agent = ticket.agent.clone().unwrap_or_else(support::alice);
    match ticket.phase {
        Phase::New => cmd::open(),
        Phase::Open => match choice % 6 {
            0 => cmd::capture_details(),
            1 => cmd::receive_message(u128::from(choice)),
            2 => cmd::detect_language(pick(&["de", "en"])),
            _ => cmd::request_handoff(),
        },
        Phase::Routing => match choice % 3 {
            0 => Command::ReferToStore {
                rule: "r".to_owned(),
                referral: StoreReferral {
                    store: StoreId::new(pick(&STORES[..1])),
                    name: "Store".to_owned(),
                    address: "Street 1".to_owned(),
                    opening_hours: "Mo–Fr".to_owned(),
                },
            },
            _ => Command::RouteToQueue {
                rule: "r".to_owned(),
                queue: QueueId::new(pick(&QUEUES[..2])),
            },
        },
        Phase::Queued => match choice % 8 {
            7 => cmd::abandon(),
            _ => cmd::assign(AgentId::new(pick(&AGENTS[..2]))),
        },
        Phase::Assigned if !ticket.accepted => match choice % 5 {
            4 => cmd::release(agent, ReleaseReason::AcceptTimeout),
            _ => cmd::accept(agent),
        },
        Phase::Assigned => match choice % 7 {
            0 => cmd::send_agent_message(agent, u128::from(choice)),
            1 => cmd::release(agent, ReleaseReason::AgentOffline),
            2 => cmd::hand_back(agent),
            3 => cmd::send_bot_message(u128::from(choice)),
            4 => cmd::accept(agent),
            _ => cmd::resolve(agent),
        },
        Phase::ReferredToStore | Phase::Resolved => match choice % 4 {
            0 => cmd::close(CloseReason::NoRatingAsked),
            _ => cmd::request_rating(),
        },
        // Scores 0..=6: the out-of-range ones are refused.
        Phase::AwaitingRating => match choice % 8 {
            7 => cmd::close(CloseReason::RatingTimeout),
            n => cmd::rate(n),
        },
        Phase::Closed | Phase::Abandoned => match choice % 4 {
            0 => cmd::record_delivery(u128::from(choice)),
            1 => cmd::record_delivery_failure(u128::from(choice)),
            2 => cmd::record_read(u128::from(choice)),
            _ => cmd::erase(),
        },
    }
}

// =======================================================================================
// Running a sequence
// =======================================================================================

/// One command and what `decide` said, with the state it saw.
#[derive(Debug)]
struct Outcome {
    before: Ticket,
    command: Command,
    result: Result<Vec<Event>, DomainError>,
}

#[derive(Debug)]
struct Run {
    /// The state as `decide` saw it after the last command.
    ticket: Ticket,
    /// Every accepted event, in order.
    log: Vec<Event>,
    outcomes: Vec<Outcome>,
}

fn run(steps: &[Step]) -> Run {
    let mut ticket = Ticket::default();
    let mut log = Vec::new();
    let mut outcomes = Vec::new();
    for step in steps {
        let command = match step {
            Step::Next(choice) => next_command(&ticket, *choice),
            Step::Any(command) => (**command).clone(),
        };
        let before = ticket.clone();
        let result = decide(&ticket, command.clone());
        if let Ok(events) = &result {
            for event in events {
                ticket = evolve(ticket, event);
            }
            log.extend(events.iter().cloned());
        }
        outcomes.push(Outcome {
            before,
            command,
            result,
        });
    }
    Run {
        ticket,
        log,
        outcomes,
    }
}

// =======================================================================================
// The properties
// =======================================================================================

fn check_run(run: &Run) -> Result<(), TestCaseError> {
    let new = Ticket::default();

    // (a) Folding the full log from a new ticket gives exactly the state decide saw.
    prop_assert_eq!(&fold(new.clone(), &run.log), &run.ticket);

    // (b) A snapshot after any k events, followed by the tail, gives the same state.
    for k in 0..=run.log.len() {
        let snapshot = fold(new.clone(), &run.log[..k]);
        prop_assert_eq!(snapshot.events, k as u64);
        prop_assert_eq!(
            &fold(snapshot, &run.log[k..]),
            &run.ticket,
            "split at {}",
            k
        );
    }

    // (d) The state counts the events folded into it.
    prop_assert_eq!(run.ticket.events, run.log.len() as u64);

    let mut state = new;
    let mut folded = 0usize;
    for outcome in &run.outcomes {
        // Each command saw the state folded from the events accepted before it.
        prop_assert_eq!(&outcome.before, &state);
        prop_assert_eq!(outcome.before.events, folded as u64);
        // decide is a function of the state and the command.
        prop_assert_eq!(
            &decide(&outcome.before, outcome.command.clone()),
            &outcome.result
        );
        match &outcome.result {
            Ok(events) => {
                // Only an already-satisfied command is accepted with no events: erasing
                // an erased customer, setting the language the ticket already has,
                // receiving a message received before, or recording an outcome again.
                if events.is_empty() {
                    match &outcome.command {
                        Command::EraseCustomer => prop_assert!(outcome.before.erased),
                        Command::DetectLanguage { language } => {
                            prop_assert_eq!(language, &outcome.before.language)
                        }
                        Command::RecordAttachmentStored { message, .. }
                        | Command::RecordAttachmentNotFetched { message, .. } => prop_assert_ne!(
                            outcome.before.attachments.get(message),
                            Some(&helpline_domain::AttachmentFetch::Awaited)
                        ),
                        Command::ReceiveCustomerMessage { message, .. } => {
                            prop_assert!(outcome.before.received.contains(message))
                        }
                        Command::SendNotification { message, .. } => {
                            prop_assert!(outcome.before.notifications.contains(message))
                        }
                        Command::RecordDelivery { message, .. } => prop_assert!(matches!(
                            outcome.before.outcomes.get(message),
                            Some(Some(_))
                        )),
                        other => prop_assert!(false, "{other:?} accepted without events"),
                    }
                }
                state = fold(state, events);
                folded += events.len();
                prop_assert_eq!(&run.log[folded - events.len()..folded], &events[..]);
                invariants(&state)?;
            }
            // (c) A refused command produces no events and leaves the state as it was:
            // the next command sees the same state.
            Err(error) => {
                prop_assert_eq!(&state, &outcome.before, "refused with {}", error);
            }
        }
    }
    prop_assert_eq!(folded, run.log.len());
    prop_assert_eq!(&state, &run.ticket);
    Ok(())
}

/// What holds of every state that decide's events lead to.
fn invariants(t: &Ticket) -> Result<(), TestCaseError> {
    prop_assert_eq!(t.id.is_none(), t.phase == Phase::New);
    prop_assert!(t.id.is_none() || t.customer.is_some());
    prop_assert!(!(t.queue.is_some() && t.store.is_some()), "routed twice");
    match t.phase {
        Phase::Queued => {
            prop_assert!(t.queue.is_some() && t.agent.is_none() && !t.accepted);
        }
        Phase::Assigned => prop_assert!(t.queue.is_some() && t.agent.is_some()),
        Phase::ReferredToStore => prop_assert!(t.store.is_some()),
        Phase::Resolved => prop_assert!(t.resolved_by.is_some()),
        Phase::AwaitingRating => prop_assert!(t.resolved_by.is_some() || t.store.is_some()),
        _ => {}
    }
    prop_assert!(!t.accepted || t.agent.is_some());
    // The agent holds a live conversation exactly while the ticket is assigned to them.
    if !t.phase.is_terminal() {
        prop_assert_eq!(t.holder == Holder::Agent, t.phase == Phase::Assigned);
    }
    if let Some(rating) = &t.rating {
        prop_assert_eq!(t.phase, Phase::Closed);
        prop_assert!((1..=5).contains(&rating.score));
    }
    if t.erased {
        let customer = t.customer.as_ref().unwrap();
        prop_assert_eq!(customer.contact.shown(), "[erased]");
        prop_assert!(customer.display_name.iter().all(Personal::is_erased));
        if let Some(details) = &t.details {
            prop_assert_eq!(details.serial_number.shown(), "[erased]");
            prop_assert_eq!(details.problem.shown(), "[erased]");
            prop_assert_eq!(details.location.shown(), "[erased]");
        }
        if let Some(rating) = &t.rating {
            prop_assert!(rating.comment.iter().all(Personal::is_erased));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn decide_and_evolve_agree_on_every_sequence(steps in steps(60)) {
        check_run(&run(&steps))?;
    }
}

// =======================================================================================
// The generator reaches the whole state space
// =======================================================================================

fn error_kind(error: &DomainError) -> &'static str {
    match error {
        DomainError::NotOpened { .. } => "NotOpened",
        DomainError::AlreadyOpened { .. } => "AlreadyOpened",
        DomainError::WrongPhase { .. } => "WrongPhase",
        DomainError::NotTheAssignedAgent { .. } => "NotTheAssignedAgent",
        DomainError::AlreadyAccepted { .. } => "AlreadyAccepted",
        DomainError::NotAccepted { .. } => "NotAccepted",
        DomainError::InvalidRating { .. } => "InvalidRating",
        DomainError::AgentHolds { .. } => "AgentHolds",
        DomainError::Empty { .. } => "Empty",
        DomainError::Erased { .. } => "Erased",
        DomainError::NoAttachment { .. } => "NoAttachment",
        DomainError::CustomerClosed { .. } => "CustomerClosed",
    }
}

#[test]
fn the_generator_reaches_every_phase_event_and_refusal() {
    let mut runner = TestRunner::deterministic();
    let strategy = steps(60);
    let mut phases = BTreeSet::new();
    let mut events = BTreeSet::new();
    let mut errors = BTreeSet::new();
    let mut accepted = BTreeSet::new();
    let mut closed_rated = 0;
    let runs = 300;
    for _ in 0..runs {
        let steps = strategy.new_tree(&mut runner).unwrap().current();
        let run = run(&steps);
        check_run(&run).unwrap();
        for outcome in &run.outcomes {
            phases.insert(format!("{:?}", outcome.before.phase));
            match &outcome.result {
                Ok(produced) => {
                    accepted.insert(outcome.command.action());
                    events.extend(produced.iter().map(Event::name));
                }
                Err(error) => {
                    errors.insert(error_kind(error));
                }
            }
        }
        phases.insert(format!("{:?}", run.ticket.phase));
        if run.log.contains(&Event::TicketClosed {
            reason: CloseReason::Rated,
        }) {
            closed_rated += 1;
        }
    }

    let all_phases = [
        "New",
        "Open",
        "Routing",
        "Queued",
        "Assigned",
        "ReferredToStore",
        "Resolved",
        "AwaitingRating",
        "Closed",
        "Abandoned",
    ];
    assert_eq!(phases, all_phases.map(str::to_owned).into());
    assert_eq!(
        accepted.len(),
        24,
        "every command accepted somewhere: {accepted:?}"
    );
    assert_eq!(events.len(), 25, "every event produced: {events:?}");
    assert_eq!(errors.len(), 11, "every refusal seen: {errors:?}");
    assert!(
        closed_rated * 10 >= runs,
        "only {closed_rated} of {runs} runs went the whole way to a rating"
    );
}
