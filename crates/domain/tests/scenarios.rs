//! The ticket's rules as given/when/then specifications.
//!
//! Every transition of `decide` has a scenario; every refusal is in the phase table or in
//! a scenario of its own; `evolve` is checked on the states that typical histories reach.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use helpline_domain::ticket::Rating;
use helpline_domain::{
    Channel, CloseReason, Command, Customer, Details, DomainError, Erased, Event, HandoffReason,
    Holder, Media, MediaKind, MessageBody, Personal, Phase, QueueId, ReleaseReason, StoreId,
    StoreReferral, Ticket, decide, evolve, fold,
};
use support::*;

// =======================================================================================
// The canonical histories are what decide produces
// =======================================================================================

#[test]
fn every_canonical_history_is_what_decide_produces_and_reaches_its_phase() {
    for stage in Stage::ALL {
        let mut ticket = Ticket::default();
        for (command, expected) in stage.steps() {
            let events = decide(&ticket, command.clone())
                .unwrap_or_else(|e| panic!("{stage:?}: {command:?} refused: {e}"));
            assert_eq!(events, expected, "{stage:?}: {command:?}");
            ticket = fold(ticket, &events);
        }
        assert_eq!(ticket.phase, stage.phase(), "{stage:?}");
        assert_eq!(
            ticket,
            Scenario::at(stage, []).ticket().clone(),
            "{stage:?}"
        );
    }
}

#[test]
fn a_full_lifecycle_drives_a_ticket_from_new_to_closed() {
    let commands = vec![
        cmd::open(),
        cmd::receive_message(1),
        cmd::send_bot_message(2),
        cmd::receive_message(3),
        cmd::capture_details(),
        cmd::request_handoff(),
        cmd::route_to_queue(),
        cmd::assign(bob()),
        cmd::release(bob(), ReleaseReason::AcceptTimeout),
        cmd::assign(alice()),
        cmd::accept(alice()),
        cmd::send_agent_message(alice(), 4),
        cmd::record_delivery(4),
        cmd::receive_message(5),
        cmd::resolve(alice()),
        cmd::request_rating(),
        cmd::record_delivery_failure(99),
        cmd::rate(4),
        cmd::record_delivery(99),
        cmd::record_read(4),
    ];
    let mut ticket = Ticket::default();
    let mut log = Vec::new();
    let mut phases = vec![ticket.phase];
    for command in commands {
        let events = decide(&ticket, command.clone())
            .unwrap_or_else(|e| panic!("{command:?} refused in {}: {e}", ticket.phase));
        ticket = fold(ticket, &events);
        log.extend(events);
        if phases.last() != Some(&ticket.phase) {
            phases.push(ticket.phase);
        }
    }
    assert_eq!(
        phases,
        [
            Phase::New,
            Phase::Open,
            Phase::Routing,
            Phase::Queued,
            Phase::Assigned,
            Phase::Queued,
            Phase::Assigned,
            Phase::Resolved,
            Phase::AwaitingRating,
            Phase::Closed,
        ]
    );
    assert_eq!(ticket, fold(Ticket::default(), &log));
    assert_eq!(ticket.events, log.len() as u64);
    assert_eq!(
        ticket.events, 24,
        "20 commands, four of them with two events"
    );
    assert_eq!(ticket.customer_messages, 3);
    assert_eq!(
        ticket.outbound_messages, 3,
        "the rating request is a bot message"
    );
    assert_eq!(ticket.deliveries, 2);
    assert_eq!(ticket.delivery_failures, 1);
    assert_eq!(ticket.reads, 1);
    assert_eq!(ticket.resolved_by, Some(alice()));
    assert_eq!(ticket.rating.as_ref().map(|r| r.score), Some(4));
}

// =======================================================================================
// Transitions: every command's happy path
// =======================================================================================

#[test]
fn open_ticket_opens_a_new_ticket() {
    Scenario::given([]).when(cmd::open()).then([opened()]);
}

#[test]
fn a_customer_message_is_received_in_every_conversation_phase() {
    for stage in conversation_stages() {
        check(
            stage,
            cmd::receive_message(7),
            Ok(vec![customer_message(7)]),
        );
    }
}

#[test]
fn a_customer_message_may_be_media_or_a_location() {
    let photo = MessageBody::Media(Media {
        kind: MediaKind::Image,
        object: Personal::from("media/abc.jpg"),
        mime_type: "image/jpeg".to_owned(),
        size_bytes: 1234,
        caption: None,
        provider_media: Personal::default(),
    });
    let location = MessageBody::Location(Personal::new((52.52, 13.405)));
    for body in [photo, location] {
        let receive = Command::ReceiveCustomerMessage {
            message: message(1),
            provider_message_id: "wamid.1".into(),
            body: body.clone(),
        };
        Scenario::at(Stage::Open, [])
            .when(receive)
            .then([Event::CustomerMessageReceived {
                message: message(1),
                provider_message_id: "wamid.1".into(),
                body,
            }]);
    }
}

#[test]
fn a_message_the_provider_delivers_again_is_taken_once_in_every_phase() {
    let received = Event::CustomerMessageReceived {
        message: message(7),
        provider_message_id: "wamid.7".into(),
        body: text("hallo"),
    };
    for stage in existing_stages() {
        Scenario::at(stage, [received.clone()])
            .when(cmd::receive_message(7))
            .then([]);
    }
}

#[test]
fn a_delivery_recorded_again_adds_nothing_and_a_failure_reported_after_it_is_recorded() {
    for stage in existing_stages() {
        let delivered =
            Scenario::at(stage, [])
                .when(cmd::record_delivery(9))
                .then([Event::MessageDelivered {
                    message: message(9),
                    provider_message_id: "wamid.out.9".into(),
                }]);
        assert_eq!(
            delivered.outcomes.get(&message(9)),
            Some(&Some("wamid.out.9".into()))
        );
        let given = Event::MessageDelivered {
            message: message(9),
            provider_message_id: "wamid.out.9".into(),
        };
        Scenario::at(stage, [given.clone()])
            .when(cmd::record_delivery(9))
            .then([]);
        let failed = Scenario::at(stage, [given])
            .when(Command::RecordDeliveryFailure {
                message: message(9),
                reason: "131026".into(),
                permanent: true,
            })
            .then([Event::MessageDeliveryFailed {
                message: message(9),
                reason: "131026".into(),
                permanent: true,
            }]);
        assert_eq!(
            failed.outcomes.get(&message(9)),
            Some(&Some("wamid.out.9".into())),
            "egress keeps knowing it sent the message"
        );
    }
}

#[test]
fn an_attachment_outcome_is_recorded_in_every_phase_where_its_message_exists() {
    for stage in existing_stages() {
        Scenario::at(stage, [attachment_message(5)])
            .when(cmd::record_attachment_stored(5))
            .then([attachment_stored(5)]);
        Scenario::at(stage, [attachment_message(5)])
            .when(cmd::record_attachment_not_fetched(5))
            .then([attachment_not_fetched(5)]);
    }
}

#[test]
fn an_attachment_outcome_is_recorded_once() {
    for outcome in [attachment_stored(5), attachment_not_fetched(5)] {
        for command in [
            cmd::record_attachment_stored(5),
            cmd::record_attachment_not_fetched(5),
        ] {
            Scenario::at(Stage::Queued, [attachment_message(5), outcome.clone()])
                .when(command)
                .then([]);
        }
    }
}

#[test]
fn an_attachment_outcome_needs_a_customer_attachment_still_to_fetch() {
    let refused = |action| DomainError::NoAttachment {
        ticket: TICKET,
        message: message(5),
        action,
    };
    // A text message, and a photo stored by the old intake with its object already.
    let stored_before = Event::CustomerMessageReceived {
        message: message(5),
        provider_message_id: "wamid.5".into(),
        body: MessageBody::Media(Media {
            kind: MediaKind::Image,
            object: Personal::from("0190-photo"),
            mime_type: "image/jpeg".to_owned(),
            size_bytes: 1234,
            caption: None,
            provider_media: Personal::default(),
        }),
    };
    for given in [customer_message(5), stored_before] {
        let error = Scenario::at(Stage::Open, [given])
            .when(cmd::record_attachment_not_fetched(5))
            .then_err(refused("record an attachment not fetched"));
        assert_eq!(
            error.to_string(),
            format!(
                "ticket {} has no customer attachment to fetch in message {}; cannot record an \
                 attachment not fetched",
                TICKET.0,
                message(5)
            )
        );
    }
    Scenario::at(Stage::Open, [attachment_message(5)])
        .when(Command::RecordAttachmentStored {
            message: message(5),
            object: String::new(),
            size_bytes: 1,
            mime_type: String::new(),
        })
        .then_err(DomainError::Empty {
            field: "attachment object",
        });
    Scenario::at(Stage::Open, [attachment_message(5)])
        .when(Command::RecordAttachmentNotFetched {
            message: message(5),
            reason: " ".to_owned(),
        })
        .then_err(DomainError::Empty { field: "reason" });
}

#[test]
fn the_ticket_follows_each_attachment_from_awaited_to_its_outcome() {
    use helpline_domain::AttachmentFetch;
    let ticket = Scenario::at(
        Stage::Open,
        [
            attachment_message(5),
            attachment_message(6),
            attachment_message(7),
            attachment_stored(5),
            attachment_not_fetched(6),
            customer_message(8),
        ],
    )
    .ticket()
    .clone();
    assert_eq!(
        ticket.attachments.into_iter().collect::<Vec<_>>(),
        [
            (message(5), AttachmentFetch::Stored),
            (message(6), AttachmentFetch::NotFetched),
            (message(7), AttachmentFetch::Awaited),
        ]
    );
    assert_eq!(ticket.customer_messages, 4);
}

#[test]
fn the_bot_may_write_in_every_conversation_phase_unless_an_agent_holds_it() {
    for stage in conversation_stages() {
        let expected = if stage.phase() == Phase::Assigned {
            Err(DomainError::AgentHolds {
                ticket: TICKET,
                agent: alice(),
                action: "send a bot message",
            })
        } else {
            Ok(vec![bot_message(8)])
        };
        check(stage, cmd::send_bot_message(8), expected);
    }
}

#[test]
fn control_passes_between_bot_and_agent_only_by_events_that_say_so() {
    let holder = |stage: Stage| Scenario::at(stage, []).ticket().holder;
    assert_eq!(holder(Stage::Open), Holder::Bot);
    assert_eq!(holder(Stage::Queued), Holder::Bot);
    assert_eq!(holder(Stage::Assigned), Holder::Agent, "from the offer on");
    assert_eq!(holder(Stage::Accepted), Holder::Agent);
    assert_eq!(holder(Stage::Resolved), Holder::Bot, "for the rating step");
    let released = Scenario::at(Stage::Accepted, [])
        .when(cmd::release(alice(), ReleaseReason::ByAgent))
        .then([released(alice(), ReleaseReason::ByAgent), queued()]);
    assert_eq!(released.holder, Holder::Bot);
}

#[test]
fn an_agent_hands_the_conversation_back_and_the_bot_takes_up_the_intake() {
    let ticket = Scenario::at(Stage::Accepted, [])
        .when(cmd::hand_back(alice()))
        .then([Event::ConversationHandedBack { agent: alice() }]);
    assert_eq!(ticket.phase, Phase::Open);
    assert_eq!(ticket.holder, Holder::Bot);
    assert_eq!(ticket.agent, None);
    assert_eq!(ticket.queue, None, "a new handoff is routed afresh");
    Scenario::at(Stage::Assigned, [])
        .when(cmd::hand_back(alice()))
        .then_err(DomainError::NotAccepted {
            ticket: TICKET,
            agent: alice(),
            action: "hand the conversation back to the bot",
        });
}

#[test]
fn the_language_changes_only_when_it_differs() {
    let ticket = Scenario::given([opened()])
        .when(cmd::detect_language("en"))
        .then([Event::LanguageDetected {
            language: "en".to_owned(),
        }]);
    assert_eq!(ticket.language, "en");
    Scenario::given([opened()])
        .when(cmd::detect_language("de"))
        .then([]);
}

#[test]
fn the_entry_point_is_noted_once_while_the_ticket_is_open() {
    let ticket = Scenario::given([opened()])
        .when(cmd::note_entry_point(" repair_status ", "laptops"))
        .then([Event::EntryPointNoted {
            intent: "repair_status".to_owned(),
            group: "laptops".to_owned(),
        }]);
    assert_eq!(
        ticket.entry_point,
        Some(helpline_domain::EntryPoint {
            intent: "repair_status".to_owned(),
            group: "laptops".to_owned(),
        })
    );
    // The first is how the customer came in: a second changes nothing.
    Scenario::given([
        opened(),
        Event::EntryPointNoted {
            intent: "repair_status".to_owned(),
            group: "laptops".to_owned(),
        },
    ])
    .when(cmd::note_entry_point("", "phones"))
    .then([]);
    Scenario::given([opened()])
        .when(cmd::note_entry_point(" ", ""))
        .then_err(DomainError::Empty {
            field: "entry point",
        });
}

fn notification(n: u128) -> Event {
    Event::NotificationSent {
        message: message(n),
        template: "repair_ready".to_owned(),
        kind: helpline_domain::NotificationKind::Transactional,
        body: text("Ihr MateBook ist abholbereit"),
        whatsapp_template: None,
        message_tag: Some("POST_PURCHASE_UPDATE".to_owned()),
    }
}

#[test]
fn a_notification_is_sent_once_per_idempotency_key() {
    let ticket = Scenario::given([opened(), customer_message(1)])
        .when(cmd::notify(7, None))
        .then([notification(7)]);
    assert_eq!(ticket.outbound_messages, 1);
    // The same request again (a retry, a campaign run again after a crash): nothing.
    Scenario::given([opened(), customer_message(1), notification(7)])
        .when(cmd::notify(7, None))
        .then([]);
    // Another notification is another message.
    Scenario::given([opened(), customer_message(1), notification(7)])
        .when(cmd::notify(8, None))
        .then([notification(8)]);
}

#[test]
fn apples_notice_goes_out_before_the_first_notification_of_a_conversation_only() {
    let notice = Event::NotificationSent {
        message: message(6),
        template: helpline_domain::notify::APPLE_NOTICE.to_owned(),
        kind: helpline_domain::NotificationKind::Transactional,
        body: text("Wir senden Ihnen wichtige Mitteilungen"),
        whatsapp_template: None,
        message_tag: None,
    };
    let ticket = Scenario::given([opened(), customer_message(1)])
        .when(cmd::notify(7, Some(6)))
        .then([notice.clone(), notification(7)]);
    assert!(ticket.notice_sent);
    Scenario::given([opened(), customer_message(1), notice, notification(7)])
        .when(cmd::notify(8, Some(9)))
        .then([notification(8)]);
}

#[test]
fn no_notification_after_the_customer_closed_the_conversation_or_the_ticket_closed() {
    let ticket = Scenario::given([opened(), customer_message(1)])
        .ticket()
        .clone();
    let id = ticket.id.unwrap();
    Scenario::given([
        opened(),
        customer_message(1),
        Event::ConversationClosedByCustomer,
    ])
    .when(cmd::notify(7, None))
    .then_err(DomainError::CustomerClosed {
        ticket: id,
        action: "send a notification",
    });
    Scenario::given([opened(), Event::TicketAbandoned])
        .when(cmd::notify(7, None))
        .then_err(DomainError::WrongPhase {
            ticket: id,
            phase: Phase::Abandoned,
            action: "send a notification",
        });
}

#[test]
fn a_conversation_closed_by_the_customer_stays_closed_until_they_write_again() {
    let ticket = Scenario::given([opened()])
        .when(Command::RecordConversationClosed)
        .then([Event::ConversationClosedByCustomer]);
    assert!(ticket.customer_closed);
    // Closed again before writing: nothing new.
    Scenario::given([opened(), Event::ConversationClosedByCustomer])
        .when(Command::RecordConversationClosed)
        .then([]);
    // Writing again opens it.
    let closed = Scenario::given([opened(), Event::ConversationClosedByCustomer]);
    let wrote = helpline_domain::decide(closed.ticket(), cmd::receive_message(7))
        .unwrap_or_else(|e| panic!("{e}"));
    let ticket = helpline_domain::fold(closed.ticket().clone(), &wrote);
    assert!(!ticket.customer_closed);
}

#[test]
fn details_are_captured_while_the_bot_talks() {
    Scenario::given([opened()])
        .when(cmd::capture_details())
        .then([details()]);
}

#[test]
fn details_may_be_captured_again_and_the_last_ones_count() {
    let corrected = Details {
        product: "ThinkPad X13".to_owned(),
        ..laptop_details()
    };
    let ticket = Scenario::given([opened(), details()])
        .when(Command::CaptureDetails(corrected.clone()))
        .then([Event::DetailsCaptured(corrected.clone())]);
    assert_eq!(ticket.details, Some(corrected));
}

#[test]
fn the_bot_hands_over_for_any_reason_with_or_without_details() {
    for reason in [
        HandoffReason::DetailsComplete,
        HandoffReason::CustomerAsked,
        HandoffReason::BotGaveUp,
    ] {
        let summary = || Personal::new(SUMMARY.to_owned());
        Scenario::given([opened(), details()])
            .when(Command::RequestHandoff {
                reason,
                summary: summary(),
            })
            .then([Event::HandoffRequested {
                reason,
                summary: summary(),
            }]);
        Scenario::given([opened()])
            .when(Command::RequestHandoff {
                reason,
                summary: summary(),
            })
            .then([Event::HandoffRequested {
                reason,
                summary: summary(),
            }]);
    }
}

#[test]
fn routing_to_a_queue_records_the_route_and_queues_the_ticket() {
    check(
        Stage::Routing,
        cmd::route_to_queue(),
        Ok(vec![routed_to_queue(), queued()]),
    );
}

#[test]
fn referring_to_a_store_records_the_route_and_the_referral() {
    check(
        Stage::Routing,
        cmd::refer_to_store(),
        Ok(vec![routed_to_store(), referred()]),
    );
}

#[test]
fn a_queued_ticket_is_assigned_to_an_agent() {
    check(
        Stage::Queued,
        cmd::assign(alice()),
        Ok(vec![assigned(alice())]),
    );
}

#[test]
fn the_assigned_agent_accepts() {
    check(
        Stage::Assigned,
        cmd::accept(alice()),
        Ok(vec![accepted(alice())]),
    );
}

#[test]
fn the_accepting_agent_writes_to_the_customer() {
    check(
        Stage::Accepted,
        cmd::send_agent_message(alice(), 5),
        Ok(vec![agent_message(alice(), 5)]),
    );
}

#[test]
fn the_agent_may_send_media() {
    let document = MessageBody::Media(Media {
        kind: MediaKind::Document,
        object: Personal::from("media/label.pdf"),
        mime_type: "application/pdf".to_owned(),
        size_bytes: 99,
        caption: Some("Versandetikett".into()),
        provider_media: Personal::default(),
    });
    Scenario::at(Stage::Accepted, [])
        .when(Command::SendAgentMessage {
            agent: alice(),
            message: message(5),
            body: document.clone(),
        })
        .then([Event::AgentMessageSent {
            agent: alice(),
            message: message(5),
            body: document,
        }]);
}

#[test]
fn a_released_ticket_goes_back_to_its_queue_for_every_reason_accepted_or_not() {
    for reason in [
        ReleaseReason::ByAgent,
        ReleaseReason::AgentOffline,
        ReleaseReason::AcceptTimeout,
    ] {
        for stage in [Stage::Assigned, Stage::Accepted] {
            check(
                stage,
                cmd::release(alice(), reason),
                Ok(vec![released(alice(), reason), queued()]),
            );
        }
    }
}

#[test]
fn the_accepting_agent_resolves() {
    check(
        Stage::Accepted,
        cmd::resolve(alice()),
        Ok(vec![resolved(alice())]),
    );
}

#[test]
fn a_rating_is_requested_after_resolution_or_referral() {
    for stage in [Stage::Resolved, Stage::ReferredToStore] {
        check(
            stage,
            cmd::request_rating(),
            Ok(vec![rating_prompt(), rating_requested()]),
        );
    }
}

#[test]
fn a_rating_is_received_and_closes_the_ticket() {
    check(
        Stage::AwaitingRating,
        cmd::rate(5),
        Ok(vec![rating_received(5), closed(CloseReason::Rated)]),
    );
}

#[test]
fn a_rating_needs_no_comment() {
    Scenario::at(Stage::AwaitingRating, [])
        .when(Command::ReceiveRating {
            score: 3,
            comment: None,
        })
        .then([
            Event::RatingReceived {
                score: 3,
                comment: None,
            },
            closed(CloseReason::Rated),
        ]);
}

#[test]
fn a_ticket_closes_after_resolution_referral_or_a_rating_request() {
    for (stage, reason) in [
        (Stage::Resolved, CloseReason::NoRatingAsked),
        (Stage::ReferredToStore, CloseReason::NoRatingAsked),
        (Stage::AwaitingRating, CloseReason::RatingTimeout),
    ] {
        check(stage, cmd::close(reason), Ok(vec![closed(reason)]));
    }
}

#[test]
fn a_ticket_is_abandoned_before_it_is_resolved() {
    for stage in [
        Stage::Open,
        Stage::Routing,
        Stage::Queued,
        Stage::Assigned,
        Stage::Accepted,
    ] {
        check(stage, cmd::abandon(), Ok(vec![abandoned()]));
    }
}

#[test]
fn receipts_are_recorded_in_every_phase_of_an_existing_ticket() {
    for stage in existing_stages() {
        check(stage, cmd::record_delivery(4), Ok(vec![delivered(4)]));
        check(
            stage,
            cmd::record_delivery_failure(4),
            Ok(vec![delivery_failed(4)]),
        );
        check(stage, cmd::record_read(4), Ok(vec![read(4)]));
    }
}

#[test]
fn a_read_is_recorded_after_the_ticket_closed() {
    let ticket = Scenario::at(Stage::Closed, [])
        .when(cmd::record_read(7))
        .then([read(7)]);
    assert_eq!(ticket.reads, 1);
    assert_eq!(
        ticket.phase,
        Phase::Closed,
        "a read does not move the phase"
    );
}

#[test]
fn a_read_is_recorded_after_the_customer_was_erased_without_the_provider_s_id() {
    let ticket = Scenario::at(Stage::Closed, [erased()])
        .when(cmd::record_read(7))
        .then([Event::MessageRead {
            message: message(7),
            provider_message_id: Personal::erased(),
        }]);
    assert_eq!(ticket.reads, 1);
    assert!(ticket.erased);
    assert_eq!(ticket.phase, Phase::Closed);
}

#[test]
fn a_failure_reported_after_the_erasure_keeps_no_word_of_the_provider_s() {
    Scenario::at(Stage::Closed, [erased()])
        .when(Command::RecordDeliveryFailure {
            message: message(7),
            reason: "131026 +49 170 1234567 is not on WhatsApp".into(),
            permanent: true,
        })
        .then([Event::MessageDeliveryFailed {
            message: message(7),
            reason: Personal::erased(),
            permanent: true,
        }]);
}

#[test]
fn every_read_receipt_counts() {
    // Dedupe is the caller's (the receipt's command id); the ticket counts what the log
    // holds.
    let ticket = Scenario::at(Stage::Accepted, [read(3)])
        .when(cmd::record_read(3))
        .then([read(3)]);
    assert_eq!(ticket.reads, 2);
}

#[test]
fn a_read_of_a_ticket_that_does_not_exist_is_refused() {
    let error = Scenario::given([])
        .when(cmd::record_read(1))
        .then_err(DomainError::NotOpened {
            action: "record a read",
        });
    assert_eq!(
        error.to_string(),
        "ticket does not exist; cannot record a read"
    );
}

#[test]
fn a_temporary_delivery_failure_is_recorded_as_such() {
    Scenario::at(Stage::Open, [])
        .when(Command::RecordDeliveryFailure {
            message: message(2),
            reason: "rate limited".into(),
            permanent: false,
        })
        .then([Event::MessageDeliveryFailed {
            message: message(2),
            reason: "rate limited".into(),
            permanent: false,
        }]);
}

#[test]
fn a_customer_is_erased_in_every_phase_of_an_existing_ticket() {
    for stage in existing_stages() {
        check(stage, cmd::erase(), Ok(vec![erased()]));
    }
}

// =======================================================================================
// Refusals: the phase table
// =======================================================================================

/// Column order of the table: one command per `Command` variant.
const COLUMNS: usize = 31;

/// The column of a command; exhaustive, so a new command must be added to the table.
fn column(command: &Command) -> usize {
    match command {
        Command::OpenTicket { .. } => 0,
        Command::ReceiveCustomerMessage { .. } => 1,
        Command::SendBotMessage { .. } => 2,
        Command::CaptureDetails(_) => 3,
        Command::RequestHandoff { .. } => 4,
        Command::RouteToQueue { .. } => 5,
        Command::ReferToStore { .. } => 6,
        Command::AssignAgent { .. } => 7,
        Command::AcceptAssignment { .. } => 8,
        Command::SendAgentMessage { .. } => 9,
        Command::ReleaseTicket { .. } => 10,
        Command::ResolveTicket { .. } => 11,
        Command::RequestRating { .. } => 12,
        Command::ReceiveRating { .. } => 13,
        Command::CloseTicket { .. } => 14,
        Command::AbandonTicket => 15,
        Command::RecordDelivery { .. } => 16,
        Command::RecordDeliveryFailure { .. } => 17,
        Command::RecordRead { .. } => 18,
        Command::EraseCustomer => 19,
        Command::DetectLanguage { .. } => 20,
        Command::HandBackToBot { .. } => 21,
        Command::AddAgentNote { .. } => 22,
        Command::TransferTicket { .. } => 23,
        Command::RecordAttachmentStored { .. } => 24,
        Command::RecordAttachmentNotFetched { .. } => 25,
        Command::NoteEntryPoint { .. } => 26,
        Command::RecordConversationClosed => 27,
        Command::SendNotification { .. } => 28,
        Command::RecordCannedReply { .. } => 29,
        Command::RecordSlaAlarm { .. } => 30,
    }
}

/// The row of a phase; exhaustive, so a new phase must be added to the table. `Assigned`
/// has two rows (alice has not accepted yet / has accepted).
fn rows(phase: Phase) -> &'static [Stage] {
    match phase {
        Phase::New => &[Stage::New],
        Phase::Open => &[Stage::Open],
        Phase::Routing => &[Stage::Routing],
        Phase::Queued => &[Stage::Queued],
        Phase::Assigned => &[Stage::Assigned, Stage::Accepted],
        Phase::ReferredToStore => &[Stage::ReferredToStore],
        Phase::Resolved => &[Stage::Resolved],
        Phase::AwaitingRating => &[Stage::AwaitingRating],
        Phase::Closed => &[Stage::Closed],
        Phase::Abandoned => &[Stage::Abandoned],
    }
}

const ALL_PHASES: [Phase; 10] = [
    Phase::New,
    Phase::Open,
    Phase::Routing,
    Phase::Queued,
    Phase::Assigned,
    Phase::ReferredToStore,
    Phase::Resolved,
    Phase::AwaitingRating,
    Phase::Closed,
    Phase::Abandoned,
];

/// What each command (columns, as in `cmd::all()`) does at each stage (rows), with alice
/// as the agent of every agent command:
///
/// `Y` accepted · `.` WrongPhase · `N` NotOpened · `O` AlreadyOpened ·
/// `A` NotAccepted · `D` AlreadyAccepted · `H` AgentHolds (the bot may not speak) ·
/// `M` NoAttachment (the canonical histories send no attachment to fetch)
#[rustfmt::skip]
const TABLE: [(Stage, &str); 11] = [
    //                        open  bot   hand  store accpt rels  ask   close dlvr  read  lang  note  atchd entry
    //                           msg   detl  queue assgn agmsg resol rate  abnd  fail  erase back  xfer  unfch  ntfy  cann  sla
    (Stage::New,             "Y  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N  N"),
    (Stage::Open,            "O  Y  Y  Y  Y  .  .  .  .  .  .  .  .  .  .  Y  Y  Y  Y  Y  Y  .  .  .  M  M  Y  Y  Y  .  Y"),
    (Stage::Routing,         "O  Y  Y  .  .  Y  Y  .  .  .  .  .  .  .  .  Y  Y  Y  Y  Y  .  .  .  .  M  M  .  Y  Y  .  Y"),
    (Stage::Queued,          "O  Y  Y  .  .  .  .  Y  .  .  .  .  .  .  .  Y  Y  Y  Y  Y  .  .  .  .  M  M  .  Y  Y  .  Y"),
    (Stage::Assigned,        "O  Y  H  .  .  .  .  .  Y  A  Y  A  .  .  .  Y  Y  Y  Y  Y  .  A  A  A  M  M  .  Y  Y  A  Y"),
    (Stage::Accepted,        "O  Y  H  .  .  .  .  .  D  Y  Y  Y  .  .  .  Y  Y  Y  Y  Y  .  Y  Y  Y  M  M  .  Y  Y  Y  Y"),
    (Stage::ReferredToStore, "O  Y  Y  .  .  .  .  .  .  .  .  .  Y  .  Y  .  Y  Y  Y  Y  .  .  .  .  M  M  .  Y  Y  .  Y"),
    (Stage::Resolved,        "O  Y  Y  .  .  .  .  .  .  .  .  .  Y  .  Y  .  Y  Y  Y  Y  .  .  .  .  M  M  .  Y  Y  .  Y"),
    (Stage::AwaitingRating,  "O  Y  Y  .  .  .  .  .  .  .  .  .  .  Y  Y  .  Y  Y  Y  Y  .  .  .  .  M  M  .  Y  Y  .  Y"),
    (Stage::Closed,          "O  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  Y  Y  Y  Y  .  .  .  .  M  M  .  Y  .  .  Y"),
    (Stage::Abandoned,       "O  .  .  .  .  .  .  .  .  .  .  .  .  .  .  .  Y  Y  Y  Y  .  .  .  .  M  M  .  Y  .  .  Y"),
];

#[test]
fn the_table_covers_every_phase_and_every_command() {
    let stages: Vec<Stage> = TABLE.iter().map(|(stage, _)| *stage).collect();
    let mut expected_stages = Vec::new();
    for phase in ALL_PHASES {
        for stage in rows(phase) {
            assert_eq!(stage.phase(), phase);
            expected_stages.push(*stage);
        }
    }
    assert_eq!(stages, expected_stages);
    assert_eq!(stages, Stage::ALL);
    let columns: Vec<usize> = cmd::all().iter().map(column).collect();
    assert_eq!(columns, (0..COLUMNS).collect::<Vec<_>>());
    for (stage, row) in TABLE {
        assert_eq!(row.split_whitespace().count(), COLUMNS, "{stage:?}");
    }
}

#[test]
fn every_command_is_allowed_or_refused_in_every_phase_as_the_table_says() {
    for (stage, row) in TABLE {
        let phase = stage.phase();
        for (command, cell) in cmd::all().into_iter().zip(row.split_whitespace()) {
            let action = command.action();
            let before = Scenario::at(stage, []).ticket().clone();
            let result = decide(&before, command.clone());
            let context = format!("{stage:?} × {command:?}");
            let expected = match cell {
                "Y" => {
                    let events = result.unwrap_or_else(|e| panic!("{context}: refused: {e}"));
                    assert!(!events.is_empty(), "{context}: accepted without events");
                    continue;
                }
                "." => wrong_phase(phase, action),
                "N" => DomainError::NotOpened { action },
                "O" => DomainError::AlreadyOpened { ticket: TICKET },
                "A" => DomainError::NotAccepted {
                    ticket: TICKET,
                    agent: alice(),
                    action,
                },
                "D" => DomainError::AlreadyAccepted {
                    ticket: TICKET,
                    agent: alice(),
                },
                "H" => DomainError::AgentHolds {
                    ticket: TICKET,
                    agent: alice(),
                    action,
                },
                "M" => DomainError::NoAttachment {
                    ticket: TICKET,
                    message: message(1),
                    action,
                },
                other => panic!("unknown cell {other:?}"),
            };
            let error = match result {
                Err(error) => error,
                Ok(events) => panic!("{context}: accepted with {events:?}, expected {expected}"),
            };
            assert_eq!(error, expected, "{context}");
            assert!(!error.is_invalid_argument(), "{context}: {error}");
            let shown = error.to_string();
            match cell {
                "." => {
                    assert_eq!(
                        shown,
                        format!("ticket {} is {phase:?}; cannot {action}", TICKET.0),
                        "{context}"
                    );
                    assert!(shown.contains("00000000-0000-0000-0000-000000000001"));
                    assert!(shown.contains(&format!(" {phase:?};")), "{shown}");
                }
                "N" => assert_eq!(shown, format!("ticket does not exist; cannot {action}")),
                "A" => {
                    assert!(shown.contains(&TICKET.to_string()), "{shown}");
                    assert!(shown.contains("alice"), "{shown}");
                    assert!(shown.ends_with(&format!("cannot {action}")), "{shown}");
                }
                _ => assert!(shown.contains(&TICKET.to_string()), "{shown}"),
            }
        }
    }
}

#[test]
fn a_wrong_phase_message_names_the_ticket_the_phase_and_the_action() {
    let error = Scenario::at(Stage::Closed, [])
        .when(cmd::assign(alice()))
        .then_err(wrong_phase(Phase::Closed, "assign an agent"));
    assert_eq!(
        error.to_string(),
        "ticket 00000000-0000-0000-0000-000000000001 is Closed; cannot assign an agent"
    );
}

#[test]
fn phase_names_in_messages_are_the_variant_names() {
    let error = Scenario::at(Stage::ReferredToStore, [])
        .when(cmd::route_to_queue())
        .then_err(wrong_phase(Phase::ReferredToStore, "route to a queue"));
    assert_eq!(
        error.to_string(),
        "ticket 00000000-0000-0000-0000-000000000001 is ReferredToStore; cannot route to a queue"
    );
    let error = Scenario::at(Stage::AwaitingRating, [])
        .when(cmd::abandon())
        .then_err(wrong_phase(Phase::AwaitingRating, "abandon"));
    assert_eq!(
        error.to_string(),
        "ticket 00000000-0000-0000-0000-000000000001 is AwaitingRating; cannot abandon"
    );
}

// =======================================================================================
// Refusals: one scenario each
// =======================================================================================

#[test]
fn no_command_but_open_applies_to_a_ticket_that_does_not_exist() {
    for command in cmd::all().into_iter().skip(1) {
        let action = command.action();
        Scenario::given([])
            .when(command)
            .then_err(DomainError::NotOpened { action });
    }
    let error =
        Scenario::given([])
            .when(cmd::record_delivery(1))
            .then_err(DomainError::NotOpened {
                action: "record a delivery",
            });
    assert_eq!(
        error.to_string(),
        "ticket does not exist; cannot record a delivery"
    );
}

#[test]
fn a_ticket_is_opened_only_once() {
    for stage in existing_stages() {
        check(
            stage,
            cmd::open(),
            Err(DomainError::AlreadyOpened { ticket: TICKET }),
        );
    }
    let other = Command::OpenTicket {
        ticket: helpline_domain::TicketId(uuid::Uuid::from_u128(2)),
        customer: customer(),
        language: "en".to_owned(),
    };
    let error = Scenario::given([opened()])
        .when(other)
        .then_err(DomainError::AlreadyOpened { ticket: TICKET });
    assert_eq!(
        error.to_string(),
        "ticket 00000000-0000-0000-0000-000000000001 is already open"
    );
}

#[test]
fn only_the_assigned_agent_accepts_writes_releases_or_resolves() {
    for stage in [Stage::Assigned, Stage::Accepted] {
        for command in [
            cmd::accept(bob()),
            cmd::send_agent_message(bob(), 1),
            cmd::release(bob(), ReleaseReason::ByAgent),
            cmd::resolve(bob()),
        ] {
            let action = command.action();
            let error =
                Scenario::at(stage, [])
                    .when(command)
                    .then_err(DomainError::NotTheAssignedAgent {
                        ticket: TICKET,
                        agent: bob(),
                        assigned: alice(),
                        action,
                    });
            assert_eq!(
                error.to_string(),
                format!(
                    "ticket 00000000-0000-0000-0000-000000000001 is assigned to agent alice, \
                     not bob; cannot {action}"
                )
            );
        }
    }
}

#[test]
fn outside_assignment_agent_commands_fail_on_the_phase_whoever_the_agent() {
    for stage in [Stage::Queued, Stage::Resolved, Stage::Closed] {
        for agent in [alice(), bob()] {
            let command = cmd::accept(agent);
            let action = command.action();
            check(stage, command, Err(wrong_phase(stage.phase(), action)));
        }
    }
}

#[test]
fn an_assignment_is_accepted_only_once() {
    let error = Scenario::at(Stage::Accepted, [])
        .when(cmd::accept(alice()))
        .then_err(DomainError::AlreadyAccepted {
            ticket: TICKET,
            agent: alice(),
        });
    assert_eq!(
        error.to_string(),
        "agent alice has already accepted ticket 00000000-0000-0000-0000-000000000001"
    );
}

#[test]
fn an_agent_writes_and_resolves_only_after_accepting() {
    for command in [cmd::send_agent_message(alice(), 1), cmd::resolve(alice())] {
        let action = command.action();
        let error =
            Scenario::at(Stage::Assigned, [])
                .when(command)
                .then_err(DomainError::NotAccepted {
                    ticket: TICKET,
                    agent: alice(),
                    action,
                });
        assert_eq!(
            error.to_string(),
            format!(
                "agent alice has not accepted ticket 00000000-0000-0000-0000-000000000001 yet; \
                 cannot {action}"
            )
        );
    }
}

#[test]
fn a_reassigned_ticket_must_be_accepted_again() {
    Scenario::at(
        Stage::Accepted,
        [
            released(alice(), ReleaseReason::AgentOffline),
            queued(),
            assigned(bob()),
        ],
    )
    .when(cmd::resolve(bob()))
    .then_err(DomainError::NotAccepted {
        ticket: TICKET,
        agent: bob(),
        action: "resolve",
    });
}

#[test]
fn a_rating_is_a_score_from_1_to_5() {
    for score in [0, 6, 7, 255] {
        let error = Scenario::at(Stage::AwaitingRating, [])
            .when(cmd::rate(score))
            .then_err(DomainError::InvalidRating { score });
        assert!(error.is_invalid_argument());
        assert_eq!(
            error.to_string(),
            format!("a rating is a score from 1 to 5, not {score}")
        );
    }
    for score in 1..=5 {
        check(
            Stage::AwaitingRating,
            cmd::rate(score),
            Ok(vec![rating_received(score), closed(CloseReason::Rated)]),
        );
    }
}

#[test]
fn the_phase_is_checked_before_the_score() {
    check(
        Stage::Resolved,
        cmd::rate(0),
        Err(wrong_phase(Phase::Resolved, "receive a rating")),
    );
}

#[test]
fn empty_or_blank_values_are_refused() {
    let empty = |field| Err(DomainError::Empty { field });
    for blank in ["", "   ", "\t\n"] {
        let open = |contact: &str, language: &str| Command::OpenTicket {
            ticket: TICKET,
            customer: Customer {
                channel: Channel::Telegram,
                contact: contact.into(),
                display_name: None,
            },
            language: language.to_owned(),
        };
        check(Stage::New, open(blank, "de"), empty("customer contact"));
        check(Stage::New, open("4711", blank), empty("language"));
        check(
            Stage::Open,
            Command::ReceiveCustomerMessage {
                message: message(1),
                provider_message_id: blank.into(),
                body: text("hallo"),
            },
            empty("provider message id"),
        );
        check(
            Stage::Open,
            Command::SendBotMessage {
                message: message(1),
                body: text(blank),
                prompt: "greeting".to_owned(),
                choices: vec![],
            },
            empty("message text"),
        );
        check(
            Stage::Open,
            Command::CaptureDetails(Details::default()),
            empty("details"),
        );
        check(Stage::Open, cmd::detect_language(blank), empty("language"));
        check(
            Stage::Routing,
            Command::RouteToQueue {
                rule: RULE.to_owned(),
                queue: QueueId::new(blank),
            },
            empty("queue"),
        );
        check(
            Stage::Routing,
            Command::ReferToStore {
                rule: RULE.to_owned(),
                referral: StoreReferral {
                    store: StoreId::new(blank),
                    ..berlin_referral()
                },
            },
            empty("store"),
        );
        check(
            Stage::Queued,
            cmd::assign(helpline_domain::AgentId::new(blank)),
            empty("agent"),
        );
        check(
            Stage::Accepted,
            Command::SendAgentMessage {
                agent: alice(),
                message: message(1),
                body: text(blank),
            },
            empty("message text"),
        );
    }
    let error = DomainError::Empty { field: "product" };
    assert!(error.is_invalid_argument());
    assert_eq!(error.to_string(), "product must not be empty");
}

#[test]
fn the_phase_is_checked_before_the_arguments() {
    let no_product = Command::CaptureDetails(Details {
        product: String::new(),
        ..laptop_details()
    });
    check(
        Stage::Routing,
        no_product,
        Err(wrong_phase(Phase::Routing, "capture details")),
    );
    check(
        Stage::Open,
        cmd::assign(helpline_domain::AgentId::new("")),
        Err(wrong_phase(Phase::Open, "assign an agent")),
    );
}

#[test]
fn customer_text_may_be_empty_when_the_provider_says_so() {
    // Only the provider's message id is required of an inbound message; its body is what
    // the customer sent (a sticker may arrive as empty text).
    Scenario::at(Stage::Open, [])
        .when(Command::ReceiveCustomerMessage {
            message: message(1),
            provider_message_id: "wamid.1".into(),
            body: text(""),
        })
        .then([Event::CustomerMessageReceived {
            message: message(1),
            provider_message_id: "wamid.1".into(),
            body: text(""),
        }]);
}

// =======================================================================================
// Erasure
// =======================================================================================

#[test]
fn after_erasure_only_erasure_and_receipts_are_accepted_in_every_phase() {
    for stage in existing_stages() {
        for command in cmd::all() {
            let action = command.action();
            let outcome = Scenario::at(stage, [erased()]).when(command.clone());
            match command {
                Command::EraseCustomer => {
                    outcome.then([]);
                }
                // Without the provider's id or words: the customer's key is gone.
                Command::RecordDelivery { .. } => {
                    outcome.then([scrubbed(delivered(3))]);
                }
                Command::RecordDeliveryFailure { .. } => {
                    outcome.then([scrubbed(delivery_failed(3))]);
                }
                Command::RecordRead { .. } => {
                    outcome.then([scrubbed(read(3))]);
                }
                _ => {
                    let error = outcome.then_err(DomainError::Erased {
                        ticket: TICKET,
                        action,
                    });
                    assert!(!error.is_invalid_argument());
                    assert_eq!(
                        error.to_string(),
                        format!(
                            "the customer of ticket 00000000-0000-0000-0000-000000000001 was \
                             erased; cannot {action}"
                        )
                    );
                }
            }
        }
    }
}

#[test]
fn erasing_twice_gives_no_events() {
    let ticket = Scenario::at(Stage::Queued, [erased()])
        .when(cmd::erase())
        .then([]);
    assert_eq!(
        ticket,
        Scenario::at(Stage::Queued, [erased()]).ticket().clone()
    );
}

#[test]
fn erasure_is_checked_before_the_phase_and_the_arguments() {
    check(
        Stage::New,
        cmd::erase(),
        Err(DomainError::NotOpened {
            action: "erase the customer",
        }),
    );
    Scenario::at(Stage::Closed, [erased()])
        .when(cmd::rate(0))
        .then_err(DomainError::Erased {
            ticket: TICKET,
            action: "receive a rating",
        });
    Scenario::at(Stage::Open, [erased()])
        .when(cmd::open())
        .then_err(DomainError::Erased {
            ticket: TICKET,
            action: "open",
        });
}

#[test]
fn erasure_scrubs_every_personal_field() {
    let before = Scenario::at(Stage::Closed, []).ticket().clone();
    assert_eq!(
        before.customer.as_ref().unwrap().contact.expose(),
        "+49 170 1234567"
    );
    assert!(before.rating.as_ref().unwrap().comment.is_some());

    let after = Scenario::at(Stage::Closed, [])
        .when(cmd::erase())
        .then([erased()]);

    assert!(after.erased);
    let customer = after.customer.as_ref().unwrap();
    assert_eq!(customer.channel, Channel::WhatsApp, "not personal; kept");
    assert_eq!(customer.contact.shown(), "[erased]");
    assert!(customer.display_name.iter().all(Personal::is_erased));
    let details = after.details.as_ref().unwrap();
    assert_eq!(details.product, "ThinkPad X1", "not personal; kept");
    assert_eq!(details.serial_number.read(), Err(Erased));
    assert_eq!(details.problem.shown(), "[erased]");
    let rating = after.rating.as_ref().unwrap();
    assert_eq!(rating.score, 5, "not personal; kept");
    assert_eq!(rating.comment, Some(Personal::erased()));
    // Nothing else changes but the flag and the counter.
    let scrubbed = Ticket {
        erased: true,
        events: before.events + 1,
        customer: Some(Customer {
            contact: Personal::erased(),
            display_name: before
                .customer
                .as_ref()
                .and_then(|c| c.display_name.as_ref())
                .map(|_| Personal::erased()),
            ..before.customer.clone().unwrap()
        }),
        details: Some(Details {
            serial_number: Personal::erased(),
            problem: Personal::erased(),
            location: Personal::erased(),
            ..before.details.clone().unwrap()
        }),
        rating: Some(Rating {
            comment: Some(Personal::erased()),
            ..before.rating.clone().unwrap()
        }),
        ..before
    };
    assert_eq!(after, scrubbed);
}

#[test]
fn erasure_forgets_the_provider_s_ids_but_not_which_messages_have_an_outcome() {
    let after = Scenario::at(Stage::Queued, [delivered(9), delivery_failed(8)])
        .when(cmd::erase())
        .then([erased()]);
    assert_eq!(
        after.outcomes.get(&message(9)),
        Some(&Some(Personal::erased())),
        "egress still knows it sent the message"
    );
    assert_eq!(after.outcomes.get(&message(8)), Some(&None));
}

#[test]
fn erasure_of_a_ticket_without_details_or_rating_only_scrubs_the_customer() {
    let after = Scenario::given([opened()])
        .when(cmd::erase())
        .then([erased()]);
    assert!(after.erased);
    assert_eq!(after.details, None);
    assert_eq!(after.rating, None);
    assert_eq!(after.customer.as_ref().unwrap().contact.expose(), "");
    assert_eq!(after.phase, Phase::Open, "erasure does not move the phase");
}

// =======================================================================================
// evolve: the states typical histories reach
// =======================================================================================

#[test]
fn an_opened_ticket_holds_its_id_customer_and_language() {
    let ticket = Scenario::given([opened()]).ticket().clone();
    assert_eq!(
        ticket,
        Ticket {
            id: Some(TICKET),
            phase: Phase::Open,
            customer: Some(customer()),
            language: "de".to_owned(),
            events: 1,
            ..Ticket::default()
        }
    );
}

#[test]
fn a_closed_ticket_holds_the_whole_story() {
    let ticket = Scenario::at(Stage::Closed, []).ticket().clone();
    assert_eq!(
        ticket,
        Ticket {
            id: Some(TICKET),
            phase: Phase::Closed,
            customer: Some(customer()),
            language: "de".to_owned(),
            details: Some(laptop_details()),
            queue: Some(laptops()),
            agent: Some(alice()),
            accepted: true,
            store: None,
            resolved_by: Some(alice()),
            rating: Some(Rating {
                score: 5,
                comment: Some("schnell und freundlich".into()),
            }),
            customer_messages: 0,
            outbound_messages: 1,
            deliveries: 0,
            delivery_failures: 0,
            reads: 0,
            attachments: Default::default(),
            attachment_bytes: 0,
            entry_point: None,
            customer_closed: false,
            received: Default::default(),
            rating_answers: Default::default(),
            sla_alarms: Default::default(),
            outcomes: Default::default(),
            notifications: Default::default(),
            notice_sent: false,
            erased: false,
            holder: Holder::Bot,
            prompts: [("rating".to_owned(), 1)].into(),
            last_prompt: "rating".to_owned(),
            events: 12,
        }
    );
}

#[test]
fn the_queue_is_kept_after_assignment() {
    let ticket = Scenario::at(Stage::Accepted, []).ticket().clone();
    assert_eq!(ticket.phase, Phase::Assigned);
    assert_eq!(ticket.queue, Some(laptops()));
    assert_eq!(ticket.agent, Some(alice()));
    assert!(ticket.accepted);
}

#[test]
fn a_release_clears_the_agent_and_the_acceptance_and_keeps_the_queue() {
    let ticket = Scenario::at(Stage::Accepted, [])
        .when(cmd::release(alice(), ReleaseReason::AgentOffline))
        .then([released(alice(), ReleaseReason::AgentOffline), queued()]);
    assert_eq!(ticket.phase, Phase::Queued);
    assert_eq!(ticket.agent, None);
    assert!(!ticket.accepted);
    assert_eq!(ticket.queue, Some(laptops()));
    assert_eq!(ticket.events, Stage::Accepted.history().len() as u64 + 2);
}

#[test]
fn each_event_of_a_release_on_its_own_frees_the_ticket() {
    // evolve applies whatever the log holds, also a release or a queueing written alone
    // by an older writer.
    let accepted = Scenario::at(Stage::Accepted, []).ticket().clone();
    for event in [released(alice(), ReleaseReason::ByAgent), queued()] {
        let ticket = evolve(accepted.clone(), &event);
        assert_eq!(
            ticket,
            Ticket {
                phase: Phase::Queued,
                holder: Holder::Bot,
                agent: None,
                accepted: false,
                events: accepted.events + 1,
                ..accepted.clone()
            },
            "{event:?}"
        );
    }
}

#[test]
fn a_released_ticket_is_assigned_anew() {
    let ticket = Scenario::at(
        Stage::Accepted,
        [released(alice(), ReleaseReason::ByAgent), queued()],
    )
    .when(cmd::assign(bob()))
    .then([assigned(bob())]);
    assert_eq!(ticket.agent, Some(bob()));
    assert!(!ticket.accepted);
    assert_eq!(ticket.phase, Phase::Assigned);
}

#[test]
fn a_referred_ticket_holds_the_store_and_no_queue() {
    let ticket = Scenario::at(Stage::ReferredToStore, []).ticket().clone();
    assert_eq!(ticket.phase, Phase::ReferredToStore);
    assert_eq!(ticket.store, Some(berlin()));
    assert_eq!(ticket.queue, None);
    assert_eq!(ticket.agent, None);
}

#[test]
fn a_route_alone_does_not_move_the_ticket() {
    let before = Scenario::at(Stage::Routing, []).ticket().clone();
    let after = evolve(before.clone(), &routed_to_queue());
    assert_eq!(
        after,
        Ticket {
            events: before.events + 1,
            ..before
        }
    );
}

#[test]
fn counters_count_messages_and_receipts() {
    let ticket = Scenario::at(
        Stage::Accepted,
        [
            customer_message(1),
            customer_message(2),
            bot_message(3),
            agent_message(alice(), 4),
            agent_message(alice(), 5),
            delivered(3),
            delivered(4),
            delivery_failed(5),
            read(3),
        ],
    )
    .ticket()
    .clone();
    assert_eq!(ticket.customer_messages, 2);
    assert_eq!(ticket.outbound_messages, 3);
    assert_eq!(ticket.deliveries, 2);
    assert_eq!(ticket.delivery_failures, 1);
    assert_eq!(ticket.reads, 1);
    assert_eq!(
        ticket.phase,
        Phase::Assigned,
        "messages do not move the phase"
    );
    assert_eq!(ticket.events, Stage::Accepted.history().len() as u64 + 9);
}

#[test]
fn the_event_counter_counts_every_event_of_every_history() {
    for stage in Stage::ALL {
        let history = stage.history();
        let ticket = Scenario::given(history.clone()).ticket().clone();
        assert_eq!(ticket.events, history.len() as u64, "{stage:?}");
    }
}

#[test]
fn an_abandoned_or_closed_ticket_is_terminal() {
    for stage in Stage::ALL {
        let phase = Scenario::at(stage, []).ticket().phase;
        assert_eq!(
            phase.is_terminal(),
            matches!(stage, Stage::Closed | Stage::Abandoned),
            "{stage:?}"
        );
    }
}

#[test]
fn a_release_without_a_known_queue_is_refused() {
    // Only a foreign log can assign a ticket that was never queued; decide then refuses
    // the release rather than invent a queue.
    Scenario::given([opened(), assigned(alice())])
        .when(cmd::release(alice(), ReleaseReason::ByAgent))
        .then_err(wrong_phase(Phase::Assigned, "release"));
}

#[test]
fn personal_data_does_not_show_in_debug_output() {
    let ticket = Scenario::at(Stage::Closed, []).ticket().clone();
    let shown = format!("{ticket:?} {:?}", Stage::Closed.history());
    for secret in [
        "+49 170",
        "Erika",
        "PF-123456",
        "does not boot",
        "schnell",
        "hallo",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

// =======================================================================================
// Helpers
// =======================================================================================

/// The stages where a ticket exists.
fn existing_stages() -> impl Iterator<Item = Stage> {
    Stage::ALL.into_iter().filter(|s| *s != Stage::New)
}

/// The stages where the conversation goes on.
fn conversation_stages() -> impl Iterator<Item = Stage> {
    existing_stages().filter(|s| !s.phase().is_terminal())
}
