//! The feedback consumer against a real nats-server: answers to the rating request.

mod support;

use std::sync::Arc;

use helpline_domain::{Channel, CloseReason, Event, Personal};
use helpline_feedback::{CLOSED_UNRATED, RATING_REPROMPT, RATING_THANKS};
use helpline_flows::Flows;
use support::{Harness, TestResult};
use tokio_util::sync::CancellationToken;

fn closed(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::TicketClosed { .. }))
}

fn prompts(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::BotMessageSent { prompt, .. } => Some(prompt.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn stars_with_a_comment_are_a_rating_and_close_the_ticket() -> TestResult {
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let feedback = tokio::spawn(helpline_feedback::run(
        h.store.clone(),
        Arc::new(Flows::builtin()),
        shutdown.clone(),
    ));
    let ticket = h
        .awaiting_rating(Channel::WhatsApp, "de-laptops", "anna")
        .await?;

    h.say(ticket, "⭐⭐⭐⭐⭐ super").await?;
    let events = h.events_once(ticket, closed).await?;

    assert_eq!(prompts(&events), ["rating", RATING_THANKS]);
    assert_eq!(
        events[events.len() - 2..],
        [
            Event::RatingReceived {
                score: 5,
                comment: Some(Personal::from("super")),
            },
            Event::TicketClosed {
                reason: CloseReason::Rated,
            },
        ]
    );
    shutdown.cancel();
    feedback.await??;
    Ok(())
}

#[tokio::test]
async fn two_answers_without_a_score_get_one_more_request_then_close_unrated() -> TestResult {
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let feedback = tokio::spawn(helpline_feedback::run(
        h.store.clone(),
        Arc::new(Flows::builtin()),
        shutdown.clone(),
    ));
    let ticket = h
        .awaiting_rating(Channel::Telegram, "de-laptops", "anna")
        .await?;

    h.say(ticket, "banana").await?;
    let events = h
        .events_once(ticket, |events| prompts(events).len() == 2)
        .await?;
    assert_eq!(prompts(&events), ["rating", RATING_REPROMPT]);
    assert!(!closed(&events));

    h.say(ticket, "banana").await?;
    let events = h.events_once(ticket, closed).await?;
    assert_eq!(
        prompts(&events),
        ["rating", RATING_REPROMPT, CLOSED_UNRATED]
    );
    assert_eq!(
        events.last(),
        Some(&Event::TicketClosed {
            reason: CloseReason::NoRatingGiven,
        })
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::RatingReceived { .. }))
    );
    shutdown.cancel();
    feedback.await??;
    Ok(())
}
