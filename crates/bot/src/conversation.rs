//! The conversation: what the bot says and does in answer to one trigger. Pure.
//!
//! [`respond`] reads the ticket as it stands (the triggering event already folded in)
//! and returns the commands of one reaction; the service appends them together, so a
//! customer never sees half an answer. What the bot asked before is in the ticket's
//! `prompts` and `last_prompt`, rebuilt from the log, so the conversation needs no
//! memory of its own and survives any restart.
//!
//! The intake, in order: the language (detected on the first message, or asked when
//! nothing gives it away), a greeting once, then product, problem, and what routing
//! needs (a dry run of the region's rules): a place for a store referral, a serial
//! number for a queue. A customer who asks for a person, or is upset, is handed over at
//! once; a question asked [`GIVE_UP_AFTER`] times without an answer hands over too.

use helpline_domain::{
    CloseReason, Command, Details, Event, HandoffReason, Holder, MessageBody, MessageId, Personal,
    Phase, QueueId, QuickReply, StoreReferral, Ticket,
};
use helpline_region::{RegionConfig, RouteFacts, Target};

use crate::flows::{Flow, Flows};
use crate::understand::{Understood, chosen_language, detect_language, understand};

/// A question asked this often without an answer is not asked again: the bot hands over.
pub const GIVE_UP_AFTER: u32 = 3;
/// The prompt of the reminder a queued customer gets when asking for a person.
pub const STILL_WAITING: &str = "still_waiting";

/// What the bot answers.
#[derive(Clone, Copy, Debug)]
pub enum Trigger<'a> {
    /// An event of the ticket's log.
    Event(&'a Event),
    /// The silence timer fired; it was armed when the ticket had this many customer
    /// messages.
    Silence { customer_messages: u32 },
}

/// Whether the bot has anything to say to `event`; the others need no reaction.
pub fn reacts_to(event: &Event) -> bool {
    matches!(
        event,
        Event::CustomerMessageReceived { .. }
            | Event::TicketQueued { .. }
            | Event::ReferredToStore(_)
            | Event::TicketResolved { .. }
            | Event::ConversationHandedBack { .. }
    )
}

/// The commands of the bot's reaction to `trigger` on `ticket`, in order. `now` decides
/// queue hours and routing rules; `next_id` names each bot message.
pub fn respond(
    region: &RegionConfig,
    flows: &Flows,
    ticket: &Ticket,
    trigger: Trigger<'_>,
    now: jiff::Timestamp,
    next_id: &mut dyn FnMut() -> MessageId,
) -> Vec<Command> {
    let mut bot = Bot {
        region,
        flows,
        ticket,
        now,
        next_id,
        language: ticket.language.clone(),
        commands: Vec::new(),
    };
    let event = match trigger {
        Trigger::Silence { customer_messages } => {
            bot.silence(customer_messages);
            return bot.commands;
        }
        Trigger::Event(event) => event,
    };
    // Only silence may end an agent's conversation; otherwise the bot keeps quiet.
    if ticket.holder == Holder::Agent || ticket.erased {
        return Vec::new();
    }
    // "STOP" or "START" alone is about notifications, never an answer to the intake: the
    // service records it in the customer's consent; the bot confirms it.
    if let Event::CustomerMessageReceived {
        body: MessageBody::Text(text),
        ..
    } = event
        && !ticket.phase.is_terminal()
        && let Some(granted) = flows.consent_word(text.expose())
    {
        let prompt = if granted {
            "notifications_resumed"
        } else {
            "notifications_stopped"
        };
        let brand = region.bot.brand.clone();
        bot.say_text(prompt, &[("brand", &brand)]);
        return bot.commands;
    }
    // The ticket may have moved on since the event (a redelivery, a backlog): each arm
    // checks the phase the ticket is in now.
    match (event, ticket.phase) {
        (Event::CustomerMessageReceived { body, .. }, Phase::Open) => bot.intake(&text_of(body)),
        (Event::CustomerMessageReceived { body, .. }, Phase::Queued) => {
            bot.remind_queued(&text_of(body))
        }
        (Event::TicketQueued { queue }, Phase::Queued) if ticket.queue.as_ref() == Some(queue) => {
            if let Some((prompt, text)) = bot.queue_text(queue) {
                bot.say(prompt, text, Vec::new());
            }
        }
        (Event::ReferredToStore(referral), Phase::ReferredToStore) => bot.refer(referral),
        (Event::TicketResolved { .. }, Phase::Resolved) => bot.request_rating(),
        (Event::ConversationHandedBack { .. }, Phase::Open) => {
            let details = ticket.details.clone().unwrap_or_default();
            bot.next_step(&details);
        }
        _ => {}
    }
    bot.commands
}

/// One reaction being put together.
struct Bot<'a> {
    region: &'a RegionConfig,
    flows: &'a Flows,
    ticket: &'a Ticket,
    now: jiff::Timestamp,
    next_id: &'a mut dyn FnMut() -> MessageId,
    /// The language the bot answers in: the ticket's, or the one just detected.
    language: String,
    commands: Vec<Command>,
}

impl Bot<'_> {
    fn flow(&self) -> &Flow {
        self.flows.get(&self.language)
    }

    fn say(&mut self, prompt: &str, text: String, choices: Vec<QuickReply>) {
        let message = (self.next_id)();
        self.commands.push(Command::SendBotMessage {
            message,
            body: MessageBody::Text(Personal::new(text)),
            prompt: prompt.to_owned(),
            choices,
        });
    }

    /// Says the text of the same name as `prompt`.
    fn say_text(&mut self, prompt: &str, args: &[(&str, &str)]) {
        let text = self.flow().text(prompt, args);
        self.say(prompt, text, Vec::new());
    }

    /// A customer message while the bot runs the intake.
    fn intake(&mut self, text: &str) {
        let ticket = self.ticket;
        let greeted = ticket.prompted("greeting") > 0;
        let answers_language = ticket.last_prompt == "ask_language";
        let detected = if answers_language {
            chosen_language(self.region, self.flows, text)
        } else if greeted {
            None
        } else {
            detect_language(self.region, self.flows, text)
        };
        if let Some(language) = &detected
            && language != &ticket.language
        {
            self.language = language.clone();
            self.commands.push(Command::DetectLanguage {
                language: language.clone(),
            });
        }
        let mut understood = understand(
            self.region,
            self.flows,
            &self.language,
            text,
            &ticket.last_prompt,
        );
        if answers_language {
            // "Deutsch" or "English please" names a language, not a problem.
            understood.problem = None;
        }
        if detected.is_none()
            && !greeted
            && ticket.prompted("ask_language") == 0
            && self.region.locale.languages.len() > 1
            && understood.is_empty()
        {
            self.ask_language();
            return;
        }
        let old = ticket.details.clone().unwrap_or_default();
        let (details, serial_rejected) = self.merge(&old, understood.clone());
        if details != old && !details.is_empty() {
            self.commands.push(Command::CaptureDetails(details.clone()));
        }
        if !greeted {
            let brand = self.region.bot.brand.clone();
            self.say_text("greeting", &[("brand", &brand)]);
        }
        if understood.asks_for_agent || understood.upset {
            self.say_text("handoff_asked", &[]);
            self.hand_off(HandoffReason::CustomerAsked, &details);
        } else if serial_rejected {
            let product = details.product.clone();
            self.say_text("serial_invalid", &[("product", &product)]);
        } else {
            self.next_step(&details);
        }
    }

    /// The language choice, in the default language's words, one button per language.
    fn ask_language(&mut self) {
        let choices = self
            .region
            .locale
            .languages
            .iter()
            .map(|language| QuickReply {
                id: language.clone(),
                title: self.flows.get(language).name().to_owned(),
            })
            .collect();
        let text = self.flow().text("ask_language", &[]);
        self.say("ask_language", text, choices);
    }

    /// What is known after this message, and whether its serial number was refused.
    ///
    /// A serial number is checked as soon as the product is known. A wrong one is
    /// dropped and asked for again, until the `max_serial_tries`-th wrong one, which is
    /// kept as unverified.
    fn merge(&self, old: &Details, understood: Understood) -> (Details, bool) {
        let mut details = old.clone();
        // Free text is the problem when it answers the question for it, or when it names
        // one ("startet nicht mehr"); "ich brauche Hilfe mit meinem MateBook" is not one.
        let answers_problem = self.ticket.last_prompt == "ask_problem";
        let names_a_problem = understood.category.is_some();
        if let Some(product) = understood.product
            && product != details.product
        {
            details.product = product;
            details.serial_verified = false;
        }
        if let Some(serial) = understood.serial
            && &serial != details.serial_number.expose()
        {
            details.serial_number = Personal::new(serial);
            details.serial_verified = false;
        }
        if let Some(location) = understood.location {
            details.location = Personal::new(location);
        }
        if let Some(category) = understood.category {
            details.category = category;
        }
        if let Some(problem) = understood.problem
            && (answers_problem || (names_a_problem && details.problem.expose().is_empty()))
        {
            details.problem = Personal::new(problem);
        }
        let mut rejected = false;
        if !details.serial_number.expose().is_empty()
            && !details.serial_verified
            && let Some(product) = self.region.product(&details.product)
        {
            let tries = self.ticket.prompted("serial_invalid") + 1;
            if product.accepts_serial(details.serial_number.expose()) {
                details.serial_verified = true;
            } else if tries < self.region.bot.max_serial_tries {
                details.serial_number = Personal::default();
                rejected = true;
            }
        }
        (details, rejected)
    }

    /// Asks for what is still missing, or hands over when nothing is.
    fn next_step(&mut self, details: &Details) {
        let product = details.product.clone();
        if product.is_empty() {
            return self.ask("ask_product", &[], details);
        }
        // The serial first, then the problem: the problem's category decides whether a
        // store (which needs no serial) or a queue takes the case.
        if details.problem.expose().is_empty() {
            if details.serial_number.expose().is_empty() {
                return self.ask("ask_serial", &[("product", &product)], details);
            }
            return self.ask("ask_problem", &[("product", &product)], details);
        }
        let facts = RouteFacts {
            language: self.language.clone(),
            product: product.clone(),
            category: details.category.clone(),
            channel: self.ticket.customer.as_ref().map(|c| c.channel),
            ..RouteFacts::of(self.ticket)
        };
        match self.region.route(&facts, self.now).target {
            Target::Store if details.location.expose().is_empty() => {
                self.ask("ask_location", &[], details)
            }
            Target::Queue(_) if details.serial_number.expose().is_empty() => {
                self.ask("ask_serial", &[("product", &product)], details)
            }
            Target::Store | Target::Queue(_) => {
                self.say_text("handoff", &[]);
                self.hand_off(HandoffReason::DetailsComplete, details);
            }
        }
    }

    /// Asks `prompt`, unless it went unanswered too often: then a person takes over.
    fn ask(&mut self, prompt: &str, args: &[(&str, &str)], details: &Details) {
        if self.ticket.prompted(prompt) >= GIVE_UP_AFTER {
            self.say_text("handoff", &[]);
            self.hand_off(HandoffReason::BotGaveUp, details);
        } else {
            self.say_text(prompt, args);
        }
    }

    fn hand_off(&mut self, reason: HandoffReason, details: &Details) {
        let summary = self.summary(details);
        self.commands.push(Command::RequestHandoff {
            reason,
            summary: Personal::new(summary),
        });
    }

    /// For the agent, in the ticket's language: product, serial number and whether it
    /// was verified, problem, and the place when known.
    fn summary(&self, details: &Details) -> String {
        let flow = self.flow();
        let unknown = flow.text("summary_unknown", &[]);
        let or_unknown = |value: &str| {
            if value.is_empty() {
                unknown.clone()
            } else {
                value.to_owned()
            }
        };
        let serial = details.serial_number.expose();
        let serial = match (serial.is_empty(), details.serial_verified) {
            (true, _) => unknown.clone(),
            (false, true) => flow.text("summary_verified", &[("serial", serial)]),
            (false, false) => flow.text("summary_unverified", &[("serial", serial)]),
        };
        let mut summary = flow.text(
            "agent_summary",
            &[
                ("product", &or_unknown(&details.product)),
                ("serial", &serial),
                ("problem", &or_unknown(details.problem.expose())),
            ],
        );
        let location = details.location.expose();
        if !location.is_empty() {
            summary.push('\n');
            summary.push_str(&flow.text("summary_location", &[("location", location)]));
        }
        summary
    }

    /// What a queued customer is told to expect, with its text's name: the wait when the
    /// queue is staffed now; when not (out of its hours, or a holiday), when agents are
    /// back, and its hours.
    fn queue_text(&self, queue: &QueueId) -> Option<(&'static str, String)> {
        let queue = self.region.queue(queue)?;
        if self.region.queue_open(queue, self.now) {
            let minutes = queue.expected_wait_mins.to_string();
            return Some(("wait", self.flow().text("wait", &[("minutes", &minutes)])));
        }
        let hours = queue.hours.to_string();
        let flow = self.flow();
        // A queue whose hours never open again still keeps the ticket: the customer hears
        // that it is saved, without a moment nobody can promise.
        let back = self
            .region
            .queue_opens(queue, self.now)
            .map(|at| flow.agents_back(&at.to_zoned(self.region.locale.zone())))
            .unwrap_or_default();
        Some((
            "out_of_hours",
            flow.text("out_of_hours", &[("hours", &hours), ("back", &back)]),
        ))
    }

    /// A queued customer asking for a person hears the wait again, once per queueing.
    fn remind_queued(&mut self, text: &str) {
        let ticket = self.ticket;
        if ticket.last_prompt == STILL_WAITING {
            return;
        }
        let understood = understand(self.region, self.flows, &self.language, text, "");
        if let (true, Some(queue)) = (understood.asks_for_agent, &ticket.queue)
            && let Some((_, text)) = self.queue_text(queue)
        {
            self.say(STILL_WAITING, text, Vec::new());
        }
    }

    fn refer(&mut self, referral: &StoreReferral) {
        self.say_text(
            "store_referral",
            &[
                ("name", &referral.name),
                ("address", &referral.address),
                ("opening_hours", &referral.opening_hours),
            ],
        );
        self.request_rating();
    }

    fn request_rating(&mut self) {
        let flow = self.flow();
        let body = MessageBody::Text(Personal::new(
            flow.text("rating_request", &[("brand", &self.region.bot.brand)]),
        ));
        let choices = flow.rating_choices();
        let message = (self.next_id)();
        self.commands.push(Command::RequestRating {
            message,
            body,
            choices,
        });
    }

    /// The customer said nothing since the timer was armed: the ticket is given up, or
    /// closed without a rating.
    fn silence(&mut self, armed_at: u32) {
        if self.ticket.customer_messages > armed_at {
            return;
        }
        match self.ticket.phase {
            Phase::Open | Phase::Routing | Phase::Queued => {
                self.say_text("abandoned", &[]);
                self.commands.push(Command::AbandonTicket);
            }
            // The agent holds the conversation; the bot may not write in it.
            Phase::Assigned => self.commands.push(Command::AbandonTicket),
            Phase::AwaitingRating => {
                self.say_text("closed_unrated", &[]);
                self.commands.push(Command::CloseTicket {
                    reason: CloseReason::RatingTimeout,
                });
            }
            _ => {}
        }
    }
}

/// The words of a message: its text, a caption, or nothing.
fn text_of(body: &MessageBody) -> String {
    match body {
        MessageBody::Text(text) => text.expose().clone(),
        MessageBody::Media(media) => media
            .caption
            .as_ref()
            .map(|caption| caption.expose().clone())
            .unwrap_or_default(),
        MessageBody::Location(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use helpline_domain::{AgentId, Channel, Customer, TicketId, decide, evolve};
    use uuid::Uuid;

    use super::*;
    use crate::tests::germany;

    const WEDNESDAY_NOON: &str = "2026-11-25T11:00:00Z";
    const SUNDAY_NOON: &str = "2026-11-29T11:00:00Z";

    /// A ticket's story so far, and the bot's answers to what happens next.
    struct Scenario {
        region: RegionConfig,
        flows: Flows,
        ticket: Ticket,
        now: jiff::Timestamp,
        ids: u128,
        /// What the bot said in the last step, in order.
        said: Vec<String>,
        summary: Option<String>,
    }

    fn given(events: impl IntoIterator<Item = Event>) -> Scenario {
        let ticket = events
            .into_iter()
            .fold(Ticket::default(), |t, e| evolve(t, &e));
        Scenario {
            region: germany(),
            flows: Flows::builtin(),
            ticket,
            now: timestamp(WEDNESDAY_NOON),
            ids: 1000,
            said: Vec::new(),
            summary: None,
        }
    }

    fn timestamp(text: &str) -> jiff::Timestamp {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    impl Scenario {
        fn at(mut self, now: &str) -> Self {
            self.now = timestamp(now);
            self
        }

        /// `event` happens; the bot answers; its answer is decided and folded in.
        fn when(&mut self, event: Event) -> Vec<String> {
            self.ticket = evolve(self.ticket.clone(), &event);
            self.answer(Trigger::Event(&event))
        }

        /// `event` is delivered again, or late: the ticket has already moved past it.
        fn when_late(&mut self, event: Event) -> Vec<String> {
            self.answer(Trigger::Event(&event))
        }

        /// The silence timer, armed at `customer_messages`, fires.
        fn when_silent(&mut self, customer_messages: u32) -> Vec<String> {
            self.answer(Trigger::Silence { customer_messages })
        }

        #[track_caller]
        fn answer(&mut self, trigger: Trigger<'_>) -> Vec<String> {
            let mut ids = self.ids;
            let mut next_id = || {
                ids += 1;
                MessageId(Uuid::from_u128(ids))
            };
            let commands = respond(
                &self.region,
                &self.flows,
                &self.ticket,
                trigger,
                self.now,
                &mut next_id,
            );
            self.ids = ids;
            self.said.clear();
            self.summary = None;
            let steps = commands.iter().map(describe).collect();
            for command in commands {
                match &command {
                    Command::SendBotMessage { body, .. } | Command::RequestRating { body, .. } => {
                        self.said.push(body_text(body));
                    }
                    Command::RequestHandoff { summary, .. } => {
                        self.summary = Some(summary.expose().clone());
                    }
                    _ => {}
                }
                let events = decide(&self.ticket, command.clone())
                    .unwrap_or_else(|e| panic!("the bot's {command:?} was refused: {e}"));
                self.ticket = events.iter().fold(self.ticket.clone(), evolve);
            }
            steps
        }
    }

    fn body_text(body: &MessageBody) -> String {
        match body {
            MessageBody::Text(text) => text.expose().clone(),
            other => format!("{other:?}"),
        }
    }

    /// One line per command, as the tests spell them.
    fn describe(command: &Command) -> String {
        match command {
            Command::SendBotMessage { prompt, .. } => format!("say {prompt}"),
            Command::CaptureDetails(details) => {
                let serial = details.serial_number.expose();
                let fields = [
                    ("product", details.product.clone()),
                    (
                        "serial",
                        match (serial.is_empty(), details.serial_verified) {
                            (true, _) => String::new(),
                            (false, true) => format!("{serial} (verified)"),
                            (false, false) => format!("{serial} (unverified)"),
                        },
                    ),
                    ("problem", details.problem.expose().clone()),
                    ("location", details.location.expose().clone()),
                    ("category", details.category.clone()),
                ];
                let known: Vec<String> = fields
                    .iter()
                    .filter(|(_, value)| !value.is_empty())
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect();
                format!("details {}", known.join("; "))
            }
            Command::DetectLanguage { language } => format!("language {language}"),
            Command::RequestHandoff { reason, .. } => format!("handoff {reason:?}"),
            Command::RequestRating { .. } => "rating".to_owned(),
            Command::AbandonTicket => "abandon".to_owned(),
            Command::CloseTicket { reason } => format!("close {reason:?}"),
            other => format!("{other:?}"),
        }
    }

    fn ticket_id() -> TicketId {
        TicketId(Uuid::from_u128(1))
    }

    fn opened(language: &str) -> Event {
        Event::TicketOpened {
            ticket: ticket_id(),
            customer: Customer {
                channel: Channel::WhatsApp,
                contact: Personal::new("4915112345678".to_owned()),
                display_name: None,
            },
            language: language.to_owned(),
        }
    }

    fn says(text: &str) -> Event {
        Event::CustomerMessageReceived {
            message: MessageId(Uuid::from_u128(7)),
            provider_message_id: "wamid.7".into(),
            body: MessageBody::Text(Personal::new(text.to_owned())),
        }
    }

    fn bot(prompt: &str) -> Event {
        Event::BotMessageSent {
            message: MessageId(Uuid::from_u128(8)),
            body: MessageBody::Text(Personal::new("…".to_owned())),
            prompt: prompt.to_owned(),
            choices: Vec::new(),
        }
    }

    fn details(product: &str, serial: &str, problem: &str, category: &str) -> Event {
        Event::DetailsCaptured(Details {
            product: product.to_owned(),
            serial_number: Personal::new(serial.to_owned()),
            problem: Personal::new(problem.to_owned()),
            serial_verified: !serial.is_empty(),
            location: Personal::default(),
            category: category.to_owned(),
        })
    }

    fn handed_over() -> Event {
        Event::HandoffRequested {
            reason: HandoffReason::DetailsComplete,
            summary: Personal::new("…".to_owned()),
        }
    }

    fn queued(queue: &str) -> Event {
        Event::TicketQueued {
            queue: QueueId::new(queue),
        }
    }

    fn assigned() -> Event {
        Event::AgentAssigned {
            agent: AgentId::new("anna"),
        }
    }

    fn accepted() -> Event {
        Event::AgentAccepted {
            agent: AgentId::new("anna"),
        }
    }

    fn resolved() -> Event {
        Event::TicketResolved {
            agent: AgentId::new("anna"),
            summary: "display replaced".to_owned(),
        }
    }

    fn referred() -> Event {
        Event::ReferredToStore(StoreReferral {
            store: helpline_domain::StoreId::new("berlin-mitte"),
            name: "Service Store Berlin Mitte".to_owned(),
            address: "Friedrichstraße 100, 10117 Berlin".to_owned(),
            opening_hours: "Mo–Fr 10:00–19:00, Sa 10:00–16:00".to_owned(),
        })
    }

    /// Open, greeted, with a MateBook X Pro whose display flickers: the serial is missing.
    fn asked_for_serial() -> Scenario {
        given([
            opened("de"),
            says("Hallo"),
            bot("greeting"),
            bot("ask_product"),
            says("MateBook X Pro, Bildschirm flackert"),
            details("MateBook X Pro", "", "Bildschirm flackert", "display"),
            bot("ask_serial"),
        ])
    }

    #[test]
    fn everything_in_the_first_message_is_handed_over_at_once() {
        let mut s = given([opened("de")]);
        assert_eq!(
            s.when(says(
                "MateBook X Pro, SN 2NS7N19B12345678, Bildschirm flackert"
            )),
            [
                "details product=MateBook X Pro; serial=2NS7N19B12345678 (verified); problem=Bildschirm flackert; category=display",
                "say greeting",
                "say handoff",
                "handoff DetailsComplete",
            ]
        );
        assert_eq!(
            s.summary.as_deref(),
            Some(
                "Produkt: MateBook X Pro\nSeriennummer: 2NS7N19B12345678 (geprüft)\nProblem: Bildschirm flackert"
            )
        );
        assert!(s.said[0].starts_with("Hallo und willkommen beim Helpline Kundenservice!"));
    }

    #[test]
    fn a_greeting_is_answered_with_the_first_question() {
        let mut s = given([opened("de")]);
        assert_eq!(s.when(says("Hallo")), ["say greeting", "say ask_product"]);
        assert_eq!(
            s.said[1],
            "Um welches Gerät geht es? Bitte nennen Sie das Modell, zum Beispiel „MateBook X Pro“."
        );
    }

    #[test]
    fn a_german_conversation_step_by_step() {
        let mut s = given([opened("de")]);
        assert_eq!(
            s.when(says("Guten Tag")),
            ["say greeting", "say ask_product"]
        );
        assert_eq!(
            s.when(says("Es geht um mein MateBook X Pro")),
            ["details product=MateBook X Pro", "say ask_serial"]
        );
        assert!(s.said[0].starts_with("Wie lautet die Seriennummer Ihres MateBook X Pro?"));
        assert_eq!(
            s.when(says("2NS7N19B12345678")),
            [
                "details product=MateBook X Pro; serial=2NS7N19B12345678 (verified)",
                "say ask_problem",
            ]
        );
        assert_eq!(
            s.said,
            ["Bitte beschreiben Sie kurz, was mit Ihrem MateBook X Pro nicht stimmt."]
        );
        assert_eq!(
            s.when(says("Das Display flackert seit dem Update")),
            [
                "details product=MateBook X Pro; serial=2NS7N19B12345678 (verified); problem=Das Display flackert seit dem Update; category=display",
                "say handoff",
                "handoff DetailsComplete",
            ]
        );
        assert_eq!(s.ticket.phase, Phase::Routing);
    }

    #[test]
    fn a_problem_without_a_serial_number_asks_for_it() {
        let mut s = given([opened("de")]);
        assert_eq!(
            s.when(says("Hallo, mein MateBook startet nicht mehr")),
            [
                "details product=MateBook; problem=mein MateBook startet nicht mehr; category=boot",
                "say greeting",
                "say ask_serial",
            ]
        );
        assert!(s.said[1].starts_with("Wie lautet die Seriennummer Ihres MateBook?"));
    }

    #[test]
    fn an_english_first_message_switches_the_language() {
        let mut s = given([opened("de")]);
        assert_eq!(
            s.when(says("Hi, my MateBook X Pro won't boot")),
            [
                "language en",
                "details product=MateBook X Pro; problem=my MateBook X Pro won't boot; category=boot",
                "say greeting",
                "say ask_serial",
            ]
        );
        assert!(s.said[0].starts_with("Hello and welcome to Helpline customer service!"));
        assert_eq!(
            s.when(says("serial number 2NS7N19B12345678")),
            [
                "details product=MateBook X Pro; serial=2NS7N19B12345678 (verified); problem=my MateBook X Pro won't boot; category=boot",
                "say handoff",
                "handoff DetailsComplete",
            ]
        );
        assert_eq!(
            s.summary.as_deref(),
            Some(
                "Product: MateBook X Pro\nSerial number: 2NS7N19B12345678 (verified)\nProblem: my MateBook X Pro won't boot"
            )
        );
    }

    #[test]
    fn the_language_is_asked_when_nothing_gives_it_away() {
        let mut s = given([opened("de")]);
        assert_eq!(s.when(says("👍")), ["say ask_language"]);
        let Some(Command::SendBotMessage { choices, .. }) = respond(
            &s.region,
            &s.flows,
            &given([opened("de"), says("👍")]).ticket,
            Trigger::Event(&says("👍")),
            s.now,
            &mut || MessageId(Uuid::nil()),
        )
        .into_iter()
        .next() else {
            panic!("no question");
        };
        let titles: Vec<(&str, &str)> = choices
            .iter()
            .map(|c| (c.id.as_str(), c.title.as_str()))
            .collect();
        assert_eq!(titles, [("de", "Deutsch"), ("en", "English")]);
        assert_eq!(
            s.when(says("English")),
            ["language en", "say greeting", "say ask_product"]
        );
        assert_eq!(s.ticket.language, "en");
    }

    #[test]
    fn the_language_is_asked_only_once() {
        let mut s = given([opened("de"), says("👍"), bot("ask_language")]);
        assert_eq!(s.when(says("🤷")), ["say greeting", "say ask_product"]);
    }

    #[test]
    fn an_invalid_serial_number_is_asked_again_then_taken_as_unverified() {
        let mut s = asked_for_serial();
        assert_eq!(s.when(says("SN 12345")), ["say serial_invalid"]);
        assert_eq!(
            s.said,
            [
                "Diese Seriennummer passt leider nicht zu einem MateBook X Pro. Bitte prüfen Sie sie noch einmal und senden Sie sie erneut."
            ]
        );
        assert_eq!(
            s.when(says("SN 99999")),
            [
                "details product=MateBook X Pro; serial=99999 (unverified); problem=Bildschirm flackert; category=display",
                "say handoff",
                "handoff DetailsComplete",
            ]
        );
        assert_eq!(
            s.summary.as_deref(),
            Some(
                "Produkt: MateBook X Pro\nSeriennummer: 99999 (nicht geprüft)\nProblem: Bildschirm flackert"
            )
        );
    }

    #[test]
    fn a_serial_number_before_the_product_is_checked_once_the_product_is_known() {
        let mut s = given([opened("de")]);
        assert_eq!(
            s.when(says("Seriennummer 2NS7N19B1234, Bildschirm flackert")),
            [
                "details serial=2NS7N19B1234 (unverified); problem=Bildschirm flackert; category=display",
                "say greeting",
                "say ask_product",
            ]
        );
        assert_eq!(
            s.when(says("MateBook X Pro")),
            [
                "details product=MateBook X Pro; problem=Bildschirm flackert; category=display",
                "say serial_invalid",
            ]
        );
    }

    #[test]
    fn a_hardware_defect_asks_for_a_place_not_a_serial_number() {
        let mut s = given([opened("de")]);
        assert_eq!(
            s.when(says("MateBook, Display defekt")),
            [
                "details product=MateBook; problem=Display defekt; category=hardware",
                "say greeting",
                "say ask_location",
            ]
        );
        assert_eq!(
            s.when(says("10115")),
            [
                "details product=MateBook; problem=Display defekt; location=10115 Berlin; category=hardware",
                "say handoff",
                "handoff DetailsComplete",
            ]
        );
        assert_eq!(
            s.summary.as_deref(),
            Some(
                "Produkt: MateBook\nSeriennummer: keine Angabe\nProblem: Display defekt\nStandort: 10115 Berlin"
            )
        );
    }

    #[test]
    fn a_known_place_needs_no_question() {
        let mut s = given([opened("de")]);
        assert_eq!(
            s.when(says("MateBook, Display defekt, 10115 Berlin")),
            [
                "details product=MateBook; problem=Display defekt; location=10115 Berlin; category=hardware",
                "say greeting",
                "say handoff",
                "handoff DetailsComplete",
            ]
        );
    }

    #[test]
    fn asking_for_a_person_hands_over_at_once() {
        let mut s = given([opened("de")]);
        assert_eq!(
            s.when(says("Ich möchte mit einem Mitarbeiter sprechen")),
            ["say greeting", "say handoff_asked", "handoff CustomerAsked"]
        );
        assert_eq!(
            s.summary.as_deref(),
            Some("Produkt: keine Angabe\nSeriennummer: keine Angabe\nProblem: keine Angabe")
        );
        let mut s = given([
            opened("en"),
            says("hi"),
            bot("greeting"),
            bot("ask_product"),
        ]);
        assert_eq!(
            s.when(says("This is ridiculous, my laptop is broken again")),
            [
                "details product=MateBook; problem=This is ridiculous, my laptop is broken again; category=hardware",
                "say handoff_asked",
                "handoff CustomerAsked",
            ]
        );
        assert_eq!(
            s.said,
            ["Of course, I'll connect you with a member of our team."]
        );
    }

    #[test]
    fn an_unanswered_question_is_asked_three_times_then_a_person_takes_over() {
        let mut s = given([
            opened("de"),
            says("Hallo"),
            bot("greeting"),
            bot("ask_product"),
            says("iPhone"),
            bot("ask_product"),
        ]);
        assert_eq!(s.when(says("ein iPhone")), ["say ask_product"]);
        assert_eq!(
            s.when(says("iPhone 15")),
            ["say handoff", "handoff BotGaveUp"]
        );
    }

    #[test]
    fn a_queued_customer_hears_the_expected_wait() {
        let story = [
            opened("de"),
            says("MateBook X Pro, SN 2NS7N19B12345678, Bildschirm flackert"),
            handed_over(),
        ];
        let mut s = given(story.clone());
        assert_eq!(s.when(queued("de-laptops")), ["say wait"]);
        assert_eq!(
            s.said,
            [
                "Eine Mitarbeiterin oder ein Mitarbeiter ist gleich für Sie da. Die Wartezeit beträgt etwa 4 Minuten."
            ]
        );
        let mut s = given(story).at(SUNDAY_NOON);
        assert_eq!(s.when(queued("de-laptops")), ["say out_of_hours"]);
        assert!(
            s.said[0].contains("mon-fri 08:00-20:00, sat 10:00-16:00"),
            "{}",
            s.said[0]
        );
    }

    #[test]
    fn out_of_hours_a_queued_customer_hears_when_agents_are_back_in_their_language() {
        let story = |language: &str| {
            [
                opened(language),
                says("MateBook X Pro, SN 2NS7N19B12345678, display flickers"),
                handed_over(),
            ]
        };
        // Sunday noon: the laptop queue opens on Monday at 08:00, Berlin time.
        let mut s = given(story("de")).at(SUNDAY_NOON);
        assert_eq!(s.when(queued("de-laptops")), ["say out_of_hours"]);
        assert_eq!(
            s.said,
            [
                "Unser Team ist gerade nicht erreichbar. Wir sind ab Montag, 30.11., um 08:00 Uhr \
                 wieder für Sie da (unsere Zeiten: mon-fri 08:00-20:00, sat 10:00-16:00). Ihre \
                 Anfrage bleibt gespeichert, und wir melden uns dann bei Ihnen."
            ]
        );
        let mut s = given(story("en")).at(SUNDAY_NOON);
        assert_eq!(s.when(queued("de-laptops")), ["say out_of_hours"]);
        assert!(
            s.said[0].contains("We're back Monday 30/11 at 08:00 (our hours:"),
            "{}",
            s.said[0]
        );
    }

    #[test]
    fn on_a_public_holiday_agents_are_back_on_the_first_working_day_after_it() {
        let story = [
            opened("de"),
            says("MateBook X Pro, SN 2NS7N19B12345678, Bildschirm flackert"),
            handed_over(),
        ];
        // Christmas Day 2026 is a Friday inside the queue's hours; Saturday is Boxing Day
        // and Sunday is closed: Monday 28 December.
        let mut s = given(story.clone()).at("2026-12-25T10:00:00Z");
        assert_eq!(s.when(queued("de-laptops")), ["say out_of_hours"]);
        assert!(
            s.said[0].contains("ab Montag, 28.12., um 08:00 Uhr"),
            "{}",
            s.said[0]
        );
        // The evening before, after closing: the same Monday, past both holidays.
        let mut s = given(story).at("2026-12-24T19:30:00Z");
        assert_eq!(s.when(queued("de-laptops")), ["say out_of_hours"]);
        assert!(s.said[0].contains("Montag, 28.12."), "{}", s.said[0]);
    }

    #[test]
    fn a_queued_customer_asking_for_a_person_is_reminded_once() {
        let mut s = given([
            opened("de"),
            handed_over(),
            queued("de-laptops"),
            bot("wait"),
        ]);
        assert_eq!(
            s.when(says("Wann kommt endlich ein Mitarbeiter?")),
            ["say still_waiting"]
        );
        assert_eq!(
            s.when(says("Hallo? Mitarbeiter bitte!")),
            Vec::<String>::new()
        );
        assert_eq!(s.when(says("Danke")), Vec::<String>::new());
    }

    #[test]
    fn the_bot_keeps_quiet_while_routing_and_while_an_agent_holds_the_ticket() {
        let mut s = given([opened("de"), handed_over()]);
        assert_eq!(s.when(says("Hallo?")), Vec::<String>::new());
        let mut s = given([
            opened("de"),
            handed_over(),
            queued("de-laptops"),
            assigned(),
            accepted(),
        ]);
        assert_eq!(
            s.when(says("Ich will einen Mitarbeiter")),
            Vec::<String>::new()
        );
        assert_eq!(s.when_late(queued("de-laptops")), Vec::<String>::new());
    }

    #[test]
    fn a_store_referral_is_told_and_a_rating_requested() {
        let mut s = given([opened("de"), handed_over()]);
        assert_eq!(s.when(referred()), ["say store_referral", "rating"]);
        assert_eq!(
            s.said[0],
            "Ihr Gerät wird am besten direkt vor Ort geprüft. Bitte besuchen Sie den Service Store Berlin Mitte, Friedrichstraße 100, 10117 Berlin (Öffnungszeiten: Mo–Fr 10:00–19:00, Sa 10:00–16:00). Bringen Sie das Gerät und, wenn möglich, den Kaufbeleg mit."
        );
        assert_eq!(s.ticket.phase, Phase::AwaitingRating);
    }

    #[test]
    fn a_resolved_ticket_gets_a_rating_request_and_the_answer_is_left_to_feedback() {
        let mut s = given([
            opened("en"),
            handed_over(),
            queued("de-english"),
            assigned(),
            accepted(),
        ]);
        assert_eq!(s.when(resolved()), ["rating"]);
        assert_eq!(
            s.said,
            [
                "How satisfied were you with Helpline customer service? Please rate us from 1 (poor) to 5 (excellent)."
            ]
        );
        assert_eq!(s.when(says("5")), Vec::<String>::new());
        assert_eq!(
            s.when(says("I want to talk to a person")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_conversation_handed_back_resumes_the_intake() {
        let mut s = given([
            opened("de"),
            says("MateBook X Pro, Bildschirm flackert"),
            details("MateBook X Pro", "", "Bildschirm flackert", "display"),
            Event::HandoffRequested {
                reason: HandoffReason::CustomerAsked,
                summary: Personal::new("…".to_owned()),
            },
            queued("de-laptops"),
            assigned(),
            accepted(),
        ]);
        assert_eq!(
            s.when(Event::ConversationHandedBack {
                agent: AgentId::new("anna"),
            }),
            ["say ask_serial"]
        );
    }

    #[test]
    fn a_silent_customer_is_given_up_or_closed_unrated() {
        let mut s = given([
            opened("de"),
            says("Hallo"),
            bot("greeting"),
            bot("ask_product"),
        ]);
        assert_eq!(s.when_silent(1), ["say abandoned", "abandon"]);
        assert_eq!(s.ticket.phase, Phase::Abandoned);
        assert_eq!(s.when_silent(1), Vec::<String>::new());

        let mut s = given([opened("de"), says("Hallo"), says("Hallo?")]);
        assert_eq!(
            s.when_silent(1),
            Vec::<String>::new(),
            "the customer wrote since"
        );

        let mut s = given([
            opened("de"),
            says("Hallo"),
            handed_over(),
            queued("de-laptops"),
            assigned(),
        ]);
        assert_eq!(
            s.when_silent(1),
            ["abandon"],
            "the agent holds the conversation"
        );

        let mut s = given([opened("de"), says("Hallo"), handed_over()]);
        s.when(referred());
        assert_eq!(
            s.when_silent(1),
            ["say closed_unrated", "close RatingTimeout"]
        );
        assert_eq!(s.ticket.phase, Phase::Closed);
    }

    #[test]
    fn only_conversation_events_are_reacted_to() {
        assert!(reacts_to(&says("Hallo")));
        assert!(reacts_to(&queued("de-laptops")));
        assert!(reacts_to(&resolved()));
        assert!(!reacts_to(&bot("greeting")));
        assert!(!reacts_to(&opened("de")));
        assert!(!reacts_to(&handed_over()));
    }
}
