//! Shared fixtures for the domain tests: fixed ids, one fixture per event and per command,
//! canonical histories that reach each stage of a ticket, and the given/when/then harness.
//!
//! Everything here is deterministic: ids are `Uuid::from_u128(n)`, names are fixed.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use helpline_domain::{
    AgentId, Channel, CloseReason, Command, Customer, Details, DomainError, Event, HandoffReason,
    Media, MediaKind, MessageBody, MessageId, Personal, Phase, QueueId, ReleaseReason,
    RouteDestination, StoreId, StoreReferral, Ticket, TicketId, decide, fold,
};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Ids and values
// ---------------------------------------------------------------------------------------

/// The ticket every scenario is about.
pub const TICKET: TicketId = TicketId(Uuid::from_u128(1));

/// A message id; distinct from the ticket id for every `n`.
pub fn message(n: u128) -> MessageId {
    MessageId(Uuid::from_u128(0x1000 + n))
}

pub fn alice() -> AgentId {
    AgentId::new("alice")
}

pub fn bob() -> AgentId {
    AgentId::new("bob")
}

pub fn laptops() -> QueueId {
    QueueId::new("de-laptops-de")
}

pub fn berlin() -> StoreId {
    StoreId::new("berlin-mitte")
}

pub const RULE: &str = "de-laptops";

pub fn customer() -> Customer {
    Customer {
        channel: Channel::WhatsApp,
        contact: "+49 170 1234567".into(),
        display_name: Some("Erika Mustermann".into()),
    }
}

pub fn laptop_details() -> Details {
    Details {
        product: "ThinkPad X1".to_owned(),
        serial_number: "PF-123456".into(),
        problem: "does not boot".into(),
        serial_verified: true,
        location: "10115 Berlin".into(),
        category: "hardware".to_owned(),
    }
}

pub fn berlin_referral() -> StoreReferral {
    StoreReferral {
        store: berlin(),
        name: "Service Store Berlin Mitte".to_owned(),
        address: "Friedrichstraße 100, 10117 Berlin".to_owned(),
        opening_hours: "Mo–Fr 10–19".to_owned(),
    }
}

pub const SUMMARY: &str = "ThinkPad X1, serial PF-123456 (verified): does not boot";

pub fn text(s: &str) -> MessageBody {
    MessageBody::Text(s.into())
}

// ---------------------------------------------------------------------------------------
// Events, in the past tense
// ---------------------------------------------------------------------------------------

pub fn opened() -> Event {
    Event::TicketOpened {
        ticket: TICKET,
        customer: customer(),
        language: "de".to_owned(),
    }
}

pub fn customer_message(n: u128) -> Event {
    Event::CustomerMessageReceived {
        message: message(n),
        provider_message_id: format!("wamid.{n}").into(),
        body: text("hallo"),
    }
}

pub fn bot_message(n: u128) -> Event {
    Event::BotMessageSent {
        message: message(n),
        body: text("Wie kann ich helfen?"),
        prompt: "greeting".to_owned(),
        choices: vec![],
    }
}

pub fn details() -> Event {
    Event::DetailsCaptured(laptop_details())
}

pub fn handoff() -> Event {
    Event::HandoffRequested {
        reason: HandoffReason::DetailsComplete,
        summary: SUMMARY.into(),
    }
}

pub fn routed_to_queue() -> Event {
    Event::TicketRouted {
        rule: RULE.to_owned(),
        destination: RouteDestination::Queue(laptops()),
    }
}

pub fn queued() -> Event {
    Event::TicketQueued { queue: laptops() }
}

pub fn routed_to_store() -> Event {
    Event::TicketRouted {
        rule: RULE.to_owned(),
        destination: RouteDestination::Store(berlin()),
    }
}

pub fn referred() -> Event {
    Event::ReferredToStore(berlin_referral())
}

pub fn assigned(agent: AgentId) -> Event {
    Event::AgentAssigned { agent }
}

pub fn accepted(agent: AgentId) -> Event {
    Event::AgentAccepted { agent }
}

pub fn agent_message(agent: AgentId, n: u128) -> Event {
    Event::AgentMessageSent {
        agent,
        message: message(n),
        body: text("Bitte senden Sie das Gerät ein."),
    }
}

pub fn released(agent: AgentId, reason: ReleaseReason) -> Event {
    Event::TicketReleased { agent, reason }
}

pub fn resolved(agent: AgentId) -> Event {
    Event::TicketResolved {
        agent,
        summary: "repair order created".to_owned(),
    }
}

/// The bot's message that asks for the rating, sent with [`rating_requested`].
pub fn rating_prompt() -> Event {
    Event::BotMessageSent {
        message: message(99),
        body: text("Wie zufrieden waren Sie? 1–5"),
        prompt: helpline_domain::decide::RATING_PROMPT.to_owned(),
        choices: vec![],
    }
}

pub fn rating_requested() -> Event {
    Event::RatingRequested {
        message: message(99),
    }
}

pub fn rating_received(score: u8) -> Event {
    Event::RatingReceived {
        score,
        comment: Some("schnell und freundlich".into()),
    }
}

pub fn closed(reason: CloseReason) -> Event {
    Event::TicketClosed { reason }
}

pub fn abandoned() -> Event {
    Event::TicketAbandoned
}

pub fn delivered(n: u128) -> Event {
    Event::MessageDelivered {
        message: message(n),
        provider_message_id: format!("wamid.out.{n}").into(),
    }
}

pub fn delivery_failed(n: u128) -> Event {
    Event::MessageDeliveryFailed {
        message: message(n),
        reason: "number not on WhatsApp".into(),
        permanent: true,
    }
}

pub fn read(n: u128) -> Event {
    Event::MessageRead {
        message: message(n),
        provider_message_id: format!("wamid.out.{n}").into(),
    }
}

pub fn erased() -> Event {
    Event::CustomerErased
}

/// `event` with its personal values erased, as it is recorded on an erased ticket.
pub fn scrubbed(mut event: Event) -> Event {
    event.erase_personal();
    event
}

/// A customer's photo as a webhook brings it: the provider's reference, no object yet.
pub fn photo_to_fetch() -> MessageBody {
    MessageBody::Media(Media {
        kind: MediaKind::Image,
        object: Personal::default(),
        mime_type: "image/jpeg".to_owned(),
        size_bytes: 0,
        caption: Some("Typenschild".into()),
        provider_media: "https://cdn.example.com/label.jpg".into(),
    })
}

/// A customer's message with a photo still to fetch.
pub fn attachment_message(n: u128) -> Event {
    Event::CustomerMessageReceived {
        message: message(n),
        provider_message_id: format!("wamid.{n}").into(),
        body: photo_to_fetch(),
    }
}

pub fn attachment_stored(n: u128) -> Event {
    Event::AttachmentStored {
        message: message(n),
        object: message(n).0.to_string(),
        size_bytes: 4096,
        mime_type: "image/jpeg".to_owned(),
    }
}

pub fn attachment_not_fetched(n: u128) -> Event {
    Event::AttachmentNotFetched {
        message: message(n),
        reason: "provider answered 503".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Commands, in the imperative; each one is the command that produces the event above
// ---------------------------------------------------------------------------------------

pub mod cmd {
    use super::*;

    pub fn open() -> Command {
        Command::OpenTicket {
            ticket: TICKET,
            customer: customer(),
            language: "de".to_owned(),
        }
    }

    pub fn receive_message(n: u128) -> Command {
        Command::ReceiveCustomerMessage {
            message: message(n),
            provider_message_id: format!("wamid.{n}").into(),
            body: text("hallo"),
        }
    }

    pub fn send_bot_message(n: u128) -> Command {
        Command::SendBotMessage {
            message: message(n),
            body: text("Wie kann ich helfen?"),
            prompt: "greeting".to_owned(),
            choices: vec![],
        }
    }

    pub fn capture_details() -> Command {
        Command::CaptureDetails(laptop_details())
    }

    pub fn request_handoff() -> Command {
        Command::RequestHandoff {
            reason: HandoffReason::DetailsComplete,
            summary: SUMMARY.into(),
        }
    }

    pub fn route_to_queue() -> Command {
        Command::RouteToQueue {
            rule: RULE.to_owned(),
            queue: laptops(),
        }
    }

    pub fn refer_to_store() -> Command {
        Command::ReferToStore {
            rule: RULE.to_owned(),
            referral: berlin_referral(),
        }
    }

    pub fn assign(agent: AgentId) -> Command {
        Command::AssignAgent { agent }
    }

    pub fn accept(agent: AgentId) -> Command {
        Command::AcceptAssignment { agent }
    }

    pub fn send_agent_message(agent: AgentId, n: u128) -> Command {
        Command::SendAgentMessage {
            agent,
            message: message(n),
            body: text("Bitte senden Sie das Gerät ein."),
        }
    }

    pub fn release(agent: AgentId, reason: ReleaseReason) -> Command {
        Command::ReleaseTicket { agent, reason }
    }

    pub fn resolve(agent: AgentId) -> Command {
        Command::ResolveTicket {
            agent,
            summary: "repair order created".to_owned(),
        }
    }

    pub fn request_rating() -> Command {
        Command::RequestRating {
            message: message(99),
            body: text("Wie zufrieden waren Sie? 1–5"),
            choices: vec![],
        }
    }

    pub fn hand_back(agent: AgentId) -> Command {
        Command::HandBackToBot { agent }
    }

    /// The notification `n` ("Ihr MateBook ist abholbereit"), with Apple's notice as
    /// message `notice` where given.
    pub fn notify(n: u128, notice: Option<u128>) -> Command {
        Command::SendNotification {
            message: message(n),
            template: "repair_ready".to_owned(),
            kind: helpline_domain::NotificationKind::Transactional,
            body: text("Ihr MateBook ist abholbereit"),
            whatsapp_template: None,
            message_tag: Some("POST_PURCHASE_UPDATE".to_owned()),
            notice: notice
                .map(|m| Box::new((message(m), text("Wir senden Ihnen wichtige Mitteilungen")))),
        }
    }

    pub fn sla_alarm() -> Command {
        Command::RecordSlaAlarm {
            clock: helpline_domain::sla::SlaClock::FirstResponse,
            level: helpline_domain::sla::SlaLevel::Warning,
            target_secs: 1800,
            run_since_ms: 0,
        }
    }

    pub fn canned_reply(agent: AgentId, n: u128, shortcut: &str) -> Command {
        Command::RecordCannedReply {
            agent,
            message: message(n),
            shortcut: shortcut.to_owned(),
        }
    }

    pub fn note_entry_point(intent: &str, group: &str) -> Command {
        Command::NoteEntryPoint {
            intent: intent.to_owned(),
            group: group.to_owned(),
        }
    }

    pub fn detect_language(language: &str) -> Command {
        Command::DetectLanguage {
            language: language.to_owned(),
        }
    }

    pub fn rate(score: u8) -> Command {
        Command::ReceiveRating {
            score,
            comment: Some("schnell und freundlich".into()),
        }
    }

    pub fn close(reason: CloseReason) -> Command {
        Command::CloseTicket { reason }
    }

    pub fn abandon() -> Command {
        Command::AbandonTicket
    }

    pub fn record_delivery(n: u128) -> Command {
        Command::RecordDelivery {
            message: message(n),
            provider_message_id: format!("wamid.out.{n}").into(),
        }
    }

    pub fn record_delivery_failure(n: u128) -> Command {
        Command::RecordDeliveryFailure {
            message: message(n),
            reason: "number not on WhatsApp".into(),
            permanent: true,
        }
    }

    pub fn record_read(n: u128) -> Command {
        Command::RecordRead {
            message: message(n),
            provider_message_id: format!("wamid.out.{n}").into(),
        }
    }

    pub fn erase() -> Command {
        Command::EraseCustomer
    }

    pub fn record_attachment_stored(n: u128) -> Command {
        Command::RecordAttachmentStored {
            message: message(n),
            object: message(n).0.to_string(),
            size_bytes: 4096,
            mime_type: "image/jpeg".to_owned(),
        }
    }

    pub fn record_attachment_not_fetched(n: u128) -> Command {
        Command::RecordAttachmentNotFetched {
            message: message(n),
            reason: "provider answered 503".to_owned(),
        }
    }

    pub fn add_note(agent: AgentId) -> Command {
        Command::AddAgentNote {
            agent,
            text: Personal::new("prefers a call back".to_owned()),
        }
    }

    pub fn transfer(agent: AgentId, queue: &str) -> Command {
        Command::TransferTicket {
            agent,
            queue: QueueId::new(queue),
        }
    }

    /// One command of every variant, in declaration order, with the canonical arguments
    /// (alice is the agent of every canonical history).
    pub fn all() -> Vec<Command> {
        vec![
            open(),
            receive_message(1),
            send_bot_message(2),
            capture_details(),
            request_handoff(),
            route_to_queue(),
            refer_to_store(),
            assign(alice()),
            accept(alice()),
            send_agent_message(alice(), 3),
            release(alice(), ReleaseReason::ByAgent),
            resolve(alice()),
            request_rating(),
            rate(5),
            close(CloseReason::NoRatingAsked),
            abandon(),
            record_delivery(3),
            record_delivery_failure(3),
            record_read(3),
            erase(),
            detect_language("en"),
            hand_back(alice()),
            add_note(alice()),
            transfer(alice(), "de-phones"),
            record_attachment_stored(1),
            record_attachment_not_fetched(1),
            note_entry_point("repair_status", "laptops"),
            Command::RecordConversationClosed,
            notify(70, None),
            canned_reply(alice(), 71, "kva"),
            sla_alarm(),
        ]
    }
}

// ---------------------------------------------------------------------------------------
// Canonical histories
// ---------------------------------------------------------------------------------------

/// A point in a ticket's life, reached by a canonical history. `Assigned` and `Accepted`
/// are both `Phase::Assigned`; they differ in whether alice has accepted yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    New,
    Open,
    Routing,
    Queued,
    Assigned,
    Accepted,
    ReferredToStore,
    Resolved,
    AwaitingRating,
    Closed,
    Abandoned,
}

impl Stage {
    pub const ALL: [Stage; 11] = [
        Stage::New,
        Stage::Open,
        Stage::Routing,
        Stage::Queued,
        Stage::Assigned,
        Stage::Accepted,
        Stage::ReferredToStore,
        Stage::Resolved,
        Stage::AwaitingRating,
        Stage::Closed,
        Stage::Abandoned,
    ];

    pub fn phase(self) -> Phase {
        match self {
            Stage::New => Phase::New,
            Stage::Open => Phase::Open,
            Stage::Routing => Phase::Routing,
            Stage::Queued => Phase::Queued,
            Stage::Assigned | Stage::Accepted => Phase::Assigned,
            Stage::ReferredToStore => Phase::ReferredToStore,
            Stage::Resolved => Phase::Resolved,
            Stage::AwaitingRating => Phase::AwaitingRating,
            Stage::Closed => Phase::Closed,
            Stage::Abandoned => Phase::Abandoned,
        }
    }

    /// The events that bring a new ticket to this stage.
    pub fn history(self) -> Vec<Event> {
        self.steps()
            .into_iter()
            .flat_map(|(_, events)| events)
            .collect()
    }

    /// The commands that bring a new ticket to this stage.
    pub fn commands(self) -> Vec<Command> {
        self.steps()
            .into_iter()
            .map(|(command, _)| command)
            .collect()
    }

    /// The happy path to this stage: each command with the events it produces, written
    /// out by hand (a test checks that `decide` agrees).
    pub fn steps(self) -> Vec<(Command, Vec<Event>)> {
        let then = |before: Stage, command: Command, events: Vec<Event>| {
            let mut steps = before.steps();
            steps.push((command, events));
            steps
        };
        match self {
            Stage::New => vec![],
            Stage::Open => vec![(cmd::open(), vec![opened()])],
            Stage::Routing => {
                let mut steps = Stage::Open.steps();
                steps.push((cmd::capture_details(), vec![details()]));
                steps.push((cmd::request_handoff(), vec![handoff()]));
                steps
            }
            Stage::Queued => then(
                Stage::Routing,
                cmd::route_to_queue(),
                vec![routed_to_queue(), queued()],
            ),
            Stage::Assigned => then(Stage::Queued, cmd::assign(alice()), vec![assigned(alice())]),
            Stage::Accepted => then(
                Stage::Assigned,
                cmd::accept(alice()),
                vec![accepted(alice())],
            ),
            Stage::ReferredToStore => then(
                Stage::Routing,
                cmd::refer_to_store(),
                vec![routed_to_store(), referred()],
            ),
            Stage::Resolved => then(
                Stage::Accepted,
                cmd::resolve(alice()),
                vec![resolved(alice())],
            ),
            Stage::AwaitingRating => then(
                Stage::Resolved,
                cmd::request_rating(),
                vec![rating_prompt(), rating_requested()],
            ),
            Stage::Closed => then(
                Stage::AwaitingRating,
                cmd::rate(5),
                vec![rating_received(5), closed(CloseReason::Rated)],
            ),
            Stage::Abandoned => then(Stage::Queued, cmd::abandon(), vec![abandoned()]),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The given/when/then harness
// ---------------------------------------------------------------------------------------

/// `Scenario::given(history).when(command).then(events)` or `.then_err(error)`.
#[derive(Debug)]
pub struct Scenario {
    ticket: Ticket,
}

impl Scenario {
    /// A ticket folded from `events`, starting from a new ticket.
    pub fn given(events: impl IntoIterator<Item = Event>) -> Self {
        let events: Vec<Event> = events.into_iter().collect();
        Self {
            ticket: fold(Ticket::default(), &events),
        }
    }

    /// A ticket at `stage`, followed by `more` events.
    pub fn at(stage: Stage, more: impl IntoIterator<Item = Event>) -> Self {
        Self::given(stage.history().into_iter().chain(more))
    }

    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    pub fn when(self, command: Command) -> Outcome {
        let description = format!("{command:?}");
        let result = decide(&self.ticket, command);
        Outcome {
            before: self.ticket,
            description,
            result,
        }
    }
}

/// What `decide` answered, to be checked with `then` or `then_err`.
#[derive(Debug)]
pub struct Outcome {
    before: Ticket,
    description: String,
    result: Result<Vec<Event>, DomainError>,
}

impl Outcome {
    /// Asserts the command was accepted with exactly `expected`; returns the state after
    /// folding them, for checks on `evolve`.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = Event>) -> Ticket {
        let expected: Vec<Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(
                    events, expected,
                    "{} in phase {} produced other events",
                    self.description, self.before.phase
                );
                fold(self.before, &events)
            }
            Err(error) => panic!(
                "{} in phase {} was refused ({error}); expected {expected:?}",
                self.description, self.before.phase
            ),
        }
    }

    /// Asserts the command was refused with exactly `expected`; returns the error.
    #[track_caller]
    pub fn then_err(self, expected: DomainError) -> DomainError {
        match self.result {
            Err(error) => {
                assert_eq!(
                    error, expected,
                    "{} in phase {} was refused for another reason",
                    self.description, self.before.phase
                );
                error
            }
            Ok(events) => panic!(
                "{} in phase {} was accepted with {events:?}; expected {expected:?}",
                self.description, self.before.phase
            ),
        }
    }
}

/// The data-driven helper: at `stage`, `command` gives `expected` (events or an error).
#[track_caller]
pub fn check(stage: Stage, command: Command, expected: Result<Vec<Event>, DomainError>) {
    let outcome = Scenario::at(stage, []).when(command);
    match expected {
        Ok(events) => {
            outcome.then(events);
        }
        Err(error) => {
            outcome.then_err(error);
        }
    }
}

/// The error for `action` refused in `phase` of the scenario ticket.
pub fn wrong_phase(phase: Phase, action: &'static str) -> DomainError {
    DomainError::WrongPhase {
        ticket: TICKET,
        phase,
        action,
    }
}
