//! The durable consumer `feedback`: a customer's answer to the rating request becomes a
//! rating, a second request, or, answered twice with no score, a close without one.

use std::sync::Arc;

use helpline_domain::{
    CloseReason, Command, Event, MessageBody, MessageId, Personal, Phase, Ticket,
};
use helpline_eventstore::{Cause, EventStore, HandlerError, Reacted, StoredEvent};
use helpline_flows::{Flow, Flows};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::FeedbackError;
use crate::rating;

/// The durable consumer's name, also the service name of its reactions.
pub const CONSUMER: &str = "feedback";
/// Prompts of feedback's bot messages, as the flows name their texts.
pub const RATING_THANKS: &str = "rating_thanks";
pub const RATING_REPROMPT: &str = "rating_reprompt";
pub const CLOSED_UNRATED: &str = "closed_unrated";

/// Reads ratings from customers' answers until `shutdown` fires, then lets the event in
/// hand finish. `flows` give the texts and number words of each language.
pub async fn run(
    store: EventStore,
    flows: Arc<Flows>,
    shutdown: CancellationToken,
) -> Result<(), FeedbackError> {
    let filter = store.layout().all_tickets();
    let handler_store = store.clone();
    let subscription = store
        .subscribe(CONSUMER, &filter, move |event| {
            let store = handler_store.clone();
            let flows = Arc::clone(&flows);
            async move { handle(&store, &flows, event).await }
        })
        .await?;
    tracing::info!(consumer = CONSUMER, "feedback running");
    shutdown.cancelled().await;
    subscription.stop().await;
    tracing::info!(consumer = CONSUMER, "feedback stopped");
    Ok(())
}

async fn handle(
    store: &EventStore,
    flows: &Flows,
    stored: StoredEvent,
) -> Result<(), HandlerError> {
    let Event::CustomerMessageReceived { message, body, .. } = &stored.event else {
        return Ok(());
    };
    let reacted = store
        .react(CONSUMER, &Cause::event(&stored), |ticket| {
            answer(ticket, *message, body, flows.get(&ticket.language))
        })
        .await?;
    let ticket = stored.meta.ticket;
    match reacted {
        Reacted::Appended { events, .. } => {
            tracing::info!(%ticket, events, "rating answer handled")
        }
        Reacted::AlreadyDone => tracing::debug!(%ticket, "rating answer already handled"),
        Reacted::Nothing => {}
        Reacted::Refused(refusal) => {
            tracing::warn!(%ticket, reason = %refusal, "rating answer refused")
        }
    }
    Ok(())
}

/// What a customer's message (`message`, in `ticket` already) means to a ticket:
/// nothing unless the ticket awaits a rating and awaited it when the message came (a
/// message from before the request, read late after a restart, answers nothing); then
/// thanks and the rating, a second request, or a close without a rating.
fn answer(ticket: &Ticket, message: MessageId, body: &MessageBody, flow: &Flow) -> Vec<Command> {
    if ticket.phase != Phase::AwaitingRating || !ticket.rating_answers.contains(&message) {
        return vec![];
    }
    // A photo or a location is no score either, and is answered like one.
    let parsed = match body {
        MessageBody::Text(text) => rating::parse(text.expose(), flow.rating_words()),
        MessageBody::Media(_) | MessageBody::Location(_) => None,
    };
    let say = |prompt: &str, choices| Command::SendBotMessage {
        message: MessageId(Uuid::now_v7()),
        body: MessageBody::Text(Personal::new(flow.text(prompt, &[]))),
        prompt: prompt.to_owned(),
        choices,
    };
    match parsed {
        // Thanks first: the rating closes the ticket, and a closed ticket takes no message.
        Some(rating) => vec![
            say(RATING_THANKS, vec![]),
            Command::ReceiveRating {
                score: rating.score,
                comment: rating.comment.map(Personal::new),
            },
        ],
        None if ticket.prompted(RATING_REPROMPT) == 0 => {
            vec![say(RATING_REPROMPT, flow.rating_choices())]
        }
        None => vec![
            say(CLOSED_UNRATED, vec![]),
            Command::CloseTicket {
                reason: CloseReason::NoRatingGiven,
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use helpline_domain::{
        AgentId, Channel, Customer, DomainError, HandoffReason, QueueId, TicketId, decide, fold,
    };

    use super::*;

    fn text(text: &str) -> MessageBody {
        MessageBody::Text(Personal::from(text))
    }

    /// A ticket an agent resolved and the bot asked to rate, with `extra` events after.
    fn awaiting_rating(extra: &[Event]) -> Ticket {
        fold(Ticket::default(), history().iter().chain(extra))
    }

    /// The events of a ticket an agent resolved and the bot asked to rate.
    fn history() -> Vec<Event> {
        let agent = AgentId::new("anna");
        let ticket = TicketId(Uuid::nil());
        vec![
            Event::TicketOpened {
                ticket,
                customer: Customer {
                    channel: Channel::WhatsApp,
                    contact: Personal::from("4915112345678"),
                    display_name: None,
                },
                language: "de".to_owned(),
            },
            Event::HandoffRequested {
                reason: HandoffReason::DetailsComplete,
                summary: Personal::from("summary"),
            },
            Event::TicketQueued {
                queue: QueueId::new("de-laptops"),
            },
            Event::AgentAssigned {
                agent: agent.clone(),
            },
            Event::AgentAccepted {
                agent: agent.clone(),
            },
            Event::TicketResolved {
                agent,
                summary: String::new(),
            },
            Event::RatingRequested {
                message: MessageId(Uuid::nil()),
            },
        ]
    }

    fn reprompted() -> Event {
        Event::BotMessageSent {
            message: MessageId(Uuid::nil()),
            body: text("Bitte eine Zahl von 1 bis 5"),
            prompt: RATING_REPROMPT.to_owned(),
            choices: vec![],
        }
    }

    /// `ticket` after the customer wrote `body`, as message `n`.
    fn wrote(ticket: Ticket, n: u128, body: &MessageBody) -> (Ticket, MessageId) {
        let message = MessageId(Uuid::from_u128(n));
        let received = Event::CustomerMessageReceived {
            message,
            provider_message_id: format!("wamid.{n}").into(),
            body: body.clone(),
        };
        (fold(ticket, [&received]), message)
    }

    /// Given `ticket`, when the customer writes `body`, then these events follow; message
    /// ids are left out, being fresh on every call.
    #[track_caller]
    fn check(ticket: Ticket, body: MessageBody, expected: &[(&str, Option<&str>)]) {
        let flows = Flows::builtin();
        let (mut state, message) = wrote(ticket, 100, &body);
        let mut events = Vec::new();
        for command in answer(&state, message, &body, flows.get(&state.language)) {
            let decided = decide(&state, command).unwrap_or_else(|e: DomainError| panic!("{e}"));
            state = fold(state, &decided);
            events.extend(decided);
        }
        let summary: Vec<(String, Option<String>)> = events
            .iter()
            .map(|event| match event {
                Event::BotMessageSent { prompt, .. } => {
                    ("BotMessageSent".to_owned(), Some(prompt.clone()))
                }
                Event::RatingReceived { score, comment } => (
                    format!("RatingReceived {score}"),
                    comment.as_ref().map(|c| c.expose().clone()),
                ),
                Event::TicketClosed { reason } => (format!("TicketClosed {reason:?}"), None),
                other => (other.name().to_owned(), None),
            })
            .collect();
        let expected: Vec<(String, Option<String>)> = expected
            .iter()
            .map(|(name, detail)| ((*name).to_owned(), detail.map(str::to_owned)))
            .collect();
        assert_eq!(summary, expected);
    }

    #[test]
    fn a_score_is_thanked_for_then_recorded_and_the_ticket_closes() {
        check(
            awaiting_rating(&[]),
            text("⭐⭐⭐⭐⭐ super"),
            &[
                ("BotMessageSent", Some(RATING_THANKS)),
                ("RatingReceived 5", Some("super")),
                ("TicketClosed Rated", None),
            ],
        );
        check(
            awaiting_rating(&[reprompted()]),
            text("vier"),
            &[
                ("BotMessageSent", Some(RATING_THANKS)),
                ("RatingReceived 4", None),
                ("TicketClosed Rated", None),
            ],
        );
    }

    #[test]
    fn no_score_gets_the_request_again_once_then_closes_the_ticket_unrated() {
        check(
            awaiting_rating(&[]),
            text("banana"),
            &[("BotMessageSent", Some(RATING_REPROMPT))],
        );
        check(
            awaiting_rating(&[reprompted()]),
            text("banana"),
            &[
                ("BotMessageSent", Some(CLOSED_UNRATED)),
                ("TicketClosed NoRatingGiven", None),
            ],
        );
    }

    #[test]
    fn a_shared_location_is_no_score() {
        check(
            awaiting_rating(&[]),
            MessageBody::Location(Personal::new((52.52, 13.4))),
            &[("BotMessageSent", Some(RATING_REPROMPT))],
        );
    }

    #[test]
    fn a_ticket_not_awaiting_a_rating_gets_no_answer() {
        let flows = Flows::builtin();
        let closed = awaiting_rating(&[Event::TicketClosed {
            reason: CloseReason::RatingTimeout,
        }]);
        let (closed, message) = wrote(closed, 1, &text("5"));
        assert_eq!(
            answer(&closed, message, &text("5"), flows.get("de")),
            vec![]
        );
        let (new, message) = wrote(Ticket::default(), 2, &text("5"));
        assert_eq!(answer(&new, message, &text("5"), flows.get("de")), vec![]);
    }

    #[test]
    fn a_message_from_before_the_rating_request_read_late_answers_nothing() {
        let flows = Flows::builtin();
        // The customer wrote while the agent was on it; feedback, restarted, reads that
        // message only once the ticket awaits a rating.
        let (early, message) = wrote(Ticket::default(), 3, &text("banana"));
        let mut state = fold(early, &history());
        assert_eq!(state.phase, Phase::AwaitingRating);
        assert_eq!(
            answer(&state, message, &text("banana"), flows.get("de")),
            vec![]
        );
        // The same words after the request are an answer.
        let later;
        (state, later) = wrote(state, 4, &text("banana"));
        assert_eq!(
            answer(&state, later, &text("banana"), flows.get("de")).len(),
            1
        );
    }

    #[test]
    fn the_second_request_offers_the_rating_buttons() {
        let flows = Flows::builtin();
        let (state, message) = wrote(awaiting_rating(&[]), 5, &text("?"));
        let commands = answer(&state, message, &text("?"), flows.get("de"));
        let [Command::SendBotMessage { choices, body, .. }] = commands.as_slice() else {
            panic!("not one bot message: {commands:?}");
        };
        assert_eq!(choices, &flows.get("de").rating_choices());
        assert_eq!(
            body,
            &MessageBody::Text(Personal::new(flows.get("de").text(RATING_REPROMPT, &[])))
        );
    }
}
