//! The rules: which command is allowed in which phase, and what it produces.

use crate::command::Command;
use crate::error::DomainError;
use crate::event::{CloseReason, Event, MessageBody, ReleaseReason, RouteDestination};
use crate::ids::{AgentId, MessageId, TicketId};
use crate::notify::{APPLE_NOTICE, NotificationKind};
use crate::personal::Personal;
use crate::ticket::{AttachmentFetch, Holder, Phase, Ticket, evolve};

/// Decides what a command does to a ticket: the events to append, or why not.
///
/// Pure: the same state and command always give the same answer. Commands that are
/// already satisfied (erasing an erased customer) give no events rather than an error,
/// so a retried command is harmless.
pub fn decide(ticket: &Ticket, command: Command) -> Result<Vec<Event>, DomainError> {
    let action = command.action();
    let Some(id) = ticket.id else {
        return match command {
            Command::OpenTicket {
                ticket,
                customer,
                language,
            } => {
                not_empty(customer.contact.expose(), "customer contact")?;
                not_empty(&language, "language")?;
                Ok(vec![Event::TicketOpened {
                    ticket,
                    customer,
                    language,
                }])
            }
            _ => Err(DomainError::NotOpened { action }),
        };
    };
    let wrong_phase = || DomainError::WrongPhase {
        ticket: id,
        phase: ticket.phase,
        action,
    };
    let allowed_in = |phases: &[Phase]| -> Result<(), DomainError> {
        if phases.contains(&ticket.phase) {
            Ok(())
        } else {
            Err(wrong_phase())
        }
    };
    // Receipts arrive whenever the provider sends them, also after a ticket closed or its
    // customer was erased.
    let is_receipt = matches!(
        command,
        Command::RecordDelivery { .. }
            | Command::RecordDeliveryFailure { .. }
            | Command::RecordRead { .. }
    );
    if ticket.erased && !is_receipt {
        return match command {
            Command::EraseCustomer => Ok(vec![]),
            _ => Err(DomainError::Erased { ticket: id, action }),
        };
    }
    const CONVERSATION: [Phase; 7] = [
        Phase::Open,
        Phase::Routing,
        Phase::Queued,
        Phase::Assigned,
        Phase::ReferredToStore,
        Phase::Resolved,
        Phase::AwaitingRating,
    ];

    match command {
        Command::OpenTicket { .. } => Err(DomainError::AlreadyOpened { ticket: id }),
        Command::ReceiveCustomerMessage {
            message,
            provider_message_id,
            body,
        } => {
            not_empty(provider_message_id.expose(), "provider message id")?;
            // A provider's redelivery of a message already taken: nothing happens, in
            // whatever phase the ticket is now.
            if ticket.received.contains(&message) {
                return Ok(Vec::new());
            }
            allowed_in(&CONVERSATION)?;
            Ok(vec![Event::CustomerMessageReceived {
                message,
                provider_message_id,
                body,
            }])
        }
        Command::SendBotMessage {
            message,
            body,
            prompt,
            choices,
        } => {
            allowed_in(&CONVERSATION)?;
            bot_holds(ticket, id, action)?;
            body_not_empty(&body)?;
            Ok(vec![Event::BotMessageSent {
                message,
                body,
                prompt,
                choices,
            }])
        }
        Command::CaptureDetails(details) => {
            allowed_in(&[Phase::Open])?;
            if details.is_empty() {
                return Err(DomainError::Empty { field: "details" });
            }
            Ok(vec![Event::DetailsCaptured(details)])
        }
        // The customer may delete the conversation at any time; what egress may send
        // depends on it, whatever the phase. Again before they write is no events.
        Command::RecordConversationClosed => {
            if ticket.customer_closed {
                return Ok(vec![]);
            }
            Ok(vec![Event::ConversationClosedByCustomer])
        }
        Command::NoteEntryPoint { intent, group } => {
            allowed_in(&[Phase::Open])?;
            let (intent, group) = (intent.trim().to_owned(), group.trim().to_owned());
            if intent.is_empty() && group.is_empty() {
                return Err(DomainError::Empty {
                    field: "entry point",
                });
            }
            // The first entry point is how the customer came in; a later one changes
            // nothing (a redelivery, or a second tap on a link).
            if ticket.entry_point.is_some() {
                return Ok(vec![]);
            }
            Ok(vec![Event::EntryPointNoted { intent, group }])
        }
        Command::DetectLanguage { language } => {
            allowed_in(&[Phase::Open])?;
            not_empty(&language, "language")?;
            if language == ticket.language {
                return Ok(vec![]);
            }
            Ok(vec![Event::LanguageDetected { language }])
        }
        Command::RequestHandoff { reason, summary } => {
            allowed_in(&[Phase::Open])?;
            Ok(vec![Event::HandoffRequested { reason, summary }])
        }
        Command::RouteToQueue { rule, queue } => {
            allowed_in(&[Phase::Routing])?;
            not_empty(queue.as_str(), "queue")?;
            Ok(vec![
                Event::TicketRouted {
                    rule,
                    destination: RouteDestination::Queue(queue.clone()),
                },
                Event::TicketQueued { queue },
            ])
        }
        Command::ReferToStore { rule, referral } => {
            allowed_in(&[Phase::Routing])?;
            not_empty(referral.store.as_str(), "store")?;
            Ok(vec![
                Event::TicketRouted {
                    rule,
                    destination: RouteDestination::Store(referral.store.clone()),
                },
                Event::ReferredToStore(referral),
            ])
        }
        Command::AssignAgent { agent } => {
            allowed_in(&[Phase::Queued])?;
            not_empty(agent.as_str(), "agent")?;
            Ok(vec![Event::AgentAssigned { agent }])
        }
        Command::AcceptAssignment { agent } => {
            assigned_to(ticket, id, &agent, action)?;
            if ticket.accepted {
                return Err(DomainError::AlreadyAccepted { ticket: id, agent });
            }
            Ok(vec![Event::AgentAccepted { agent }])
        }
        Command::SendAgentMessage {
            agent,
            message,
            body,
        } => {
            accepted_by(ticket, id, &agent, action)?;
            body_not_empty(&body)?;
            Ok(vec![Event::AgentMessageSent {
                agent,
                message,
                body,
            }])
        }
        Command::ReleaseTicket { agent, reason } => {
            assigned_to(ticket, id, &agent, action)?;
            // A ticket is only ever assigned from a queue, so the queue is known here.
            let Some(queue) = ticket.queue.clone() else {
                return Err(wrong_phase());
            };
            Ok(vec![
                Event::TicketReleased { agent, reason },
                Event::TicketQueued { queue },
            ])
        }
        Command::ResolveTicket { agent, summary } => {
            accepted_by(ticket, id, &agent, action)?;
            Ok(vec![Event::TicketResolved { agent, summary }])
        }
        Command::RequestRating {
            message,
            body,
            choices,
        } => {
            allowed_in(&[Phase::Resolved, Phase::ReferredToStore])?;
            bot_holds(ticket, id, action)?;
            body_not_empty(&body)?;
            Ok(vec![
                Event::BotMessageSent {
                    message,
                    body,
                    prompt: RATING_PROMPT.to_owned(),
                    choices,
                },
                Event::RatingRequested { message },
            ])
        }
        Command::SendNotification {
            message,
            template,
            kind,
            body,
            whatsapp_template,
            message_tag,
            notice,
        } => {
            // The request's idempotency key is the message id: a retried request, or a
            // campaign run again after a crash, sends nothing twice.
            if ticket.notifications.contains(&message) {
                return Ok(vec![]);
            }
            allowed_in(&CONVERSATION)?;
            if ticket.customer_closed {
                return Err(DomainError::CustomerClosed { ticket: id, action });
            }
            not_empty(&template, "template")?;
            body_not_empty(&body)?;
            let mut events = Vec::with_capacity(2);
            if let Some((notice_message, notice_body)) = notice.map(|notice| *notice)
                && !ticket.notice_sent
            {
                body_not_empty(&notice_body)?;
                events.push(Event::NotificationSent {
                    message: notice_message,
                    template: APPLE_NOTICE.to_owned(),
                    kind: NotificationKind::Transactional,
                    body: notice_body,
                    whatsapp_template: None,
                    message_tag: None,
                });
            }
            events.push(Event::NotificationSent {
                message,
                template,
                kind,
                body,
                whatsapp_template: whatsapp_template.map(|call| *call),
                message_tag,
            });
            Ok(events)
        }
        Command::HandBackToBot { agent } => {
            accepted_by(ticket, id, &agent, action)?;
            Ok(vec![Event::ConversationHandedBack { agent }])
        }
        Command::RecordSlaAlarm {
            clock,
            level,
            target_secs,
            run_since_ms,
        } => {
            // Time passing is a fact in any phase of an opened ticket; the watcher only
            // asks for a clock still running.
            if ticket.sla_alarms.contains(&(clock, level, run_since_ms)) {
                return Ok(Vec::new());
            }
            Ok(vec![Event::SlaAlarm {
                clock,
                level,
                target_secs,
                run_since_ms,
            }])
        }
        Command::RecordCannedReply {
            agent,
            message,
            shortcut,
        } => {
            accepted_by(ticket, id, &agent, action)?;
            not_empty(&shortcut, "canned reply shortcut")?;
            Ok(vec![Event::CannedReplyUsed { message, shortcut }])
        }
        Command::AddAgentNote { agent, text } => {
            accepted_by(ticket, id, &agent, action)?;
            not_empty(text.expose(), "note text")?;
            Ok(vec![Event::AgentNoteAdded { agent, text }])
        }
        Command::TransferTicket { agent, queue } => {
            accepted_by(ticket, id, &agent, action)?;
            not_empty(queue.as_str(), "queue")?;
            Ok(vec![
                Event::TicketReleased {
                    agent,
                    reason: ReleaseReason::Transferred,
                },
                Event::TicketQueued { queue },
            ])
        }
        Command::ReceiveRating { score, comment } => {
            allowed_in(&[Phase::AwaitingRating])?;
            if !(1..=5).contains(&score) {
                return Err(DomainError::InvalidRating { score });
            }
            Ok(vec![
                Event::RatingReceived { score, comment },
                Event::TicketClosed {
                    reason: CloseReason::Rated,
                },
            ])
        }
        Command::CloseTicket { reason } => {
            allowed_in(&[
                Phase::Resolved,
                Phase::ReferredToStore,
                Phase::AwaitingRating,
            ])?;
            Ok(vec![Event::TicketClosed { reason }])
        }
        Command::AbandonTicket => {
            allowed_in(&[Phase::Open, Phase::Routing, Phase::Queued, Phase::Assigned])?;
            Ok(vec![Event::TicketAbandoned])
        }
        // A delivery recorded once is recorded: egress's retry after a crash, or the
        // provider's receipt after egress's own record, adds nothing. (A failure after
        // it is news: providers report failures after accepting a message.)
        Command::RecordDelivery { message, .. }
            if matches!(ticket.outcomes.get(&message), Some(Some(_))) =>
        {
            Ok(Vec::new())
        }
        Command::RecordDelivery {
            message,
            provider_message_id,
        } => Ok(vec![Event::MessageDelivered {
            message,
            provider_message_id: kept(ticket, provider_message_id),
        }]),
        Command::RecordDeliveryFailure {
            message,
            reason,
            permanent,
        } => Ok(vec![Event::MessageDeliveryFailed {
            message,
            reason: kept(ticket, reason),
            permanent,
        }]),
        Command::RecordRead {
            message,
            provider_message_id,
        } => Ok(vec![Event::MessageRead {
            message,
            provider_message_id: kept(ticket, provider_message_id),
        }]),
        Command::EraseCustomer => Ok(vec![Event::CustomerErased]),
        // An attachment is fetched after its message was appended, so its outcome is
        // recorded whatever the ticket went through meanwhile, closed included.
        Command::RecordAttachmentStored {
            message,
            object,
            size_bytes,
            mime_type,
        } => {
            if !attachment_awaited(ticket, id, message, action)? {
                return Ok(vec![]);
            }
            not_empty(&object, "attachment object")?;
            Ok(vec![Event::AttachmentStored {
                message,
                object,
                size_bytes,
                mime_type,
            }])
        }
        Command::RecordAttachmentNotFetched { message, reason } => {
            if !attachment_awaited(ticket, id, message, action)? {
                return Ok(vec![]);
            }
            not_empty(&reason, "reason")?;
            Ok(vec![Event::AttachmentNotFetched { message, reason }])
        }
    }
}

/// True while the attachment of the customer's message `message` awaits its outcome;
/// false once it has one (recording it again changes nothing); an error when the ticket
/// has no such attachment.
fn attachment_awaited(
    ticket: &Ticket,
    id: TicketId,
    message: MessageId,
    action: &'static str,
) -> Result<bool, DomainError> {
    match ticket.attachments.get(&message) {
        Some(AttachmentFetch::Awaited) => Ok(true),
        Some(AttachmentFetch::Stored | AttachmentFetch::NotFetched) => Ok(false),
        None => Err(DomainError::NoAttachment {
            ticket: id,
            message,
            action,
        }),
    }
}

/// The `prompt` of the bot message that asks for a rating.
pub const RATING_PROMPT: &str = "rating";

fn bot_holds(ticket: &Ticket, id: TicketId, action: &'static str) -> Result<(), DomainError> {
    match (ticket.holder, &ticket.agent) {
        (Holder::Agent, Some(agent)) => Err(DomainError::AgentHolds {
            ticket: id,
            agent: agent.clone(),
            action,
        }),
        _ => Ok(()),
    }
}

fn assigned_to(
    ticket: &Ticket,
    id: TicketId,
    agent: &AgentId,
    action: &'static str,
) -> Result<(), DomainError> {
    match (&ticket.phase, &ticket.agent) {
        (Phase::Assigned, Some(assigned)) if assigned == agent => Ok(()),
        (Phase::Assigned, Some(assigned)) => Err(DomainError::NotTheAssignedAgent {
            ticket: id,
            agent: agent.clone(),
            assigned: assigned.clone(),
            action,
        }),
        (phase, _) => Err(DomainError::WrongPhase {
            ticket: id,
            phase: *phase,
            action,
        }),
    }
}

fn accepted_by(
    ticket: &Ticket,
    id: TicketId,
    agent: &AgentId,
    action: &'static str,
) -> Result<(), DomainError> {
    assigned_to(ticket, id, agent, action)?;
    if ticket.accepted {
        Ok(())
    } else {
        Err(DomainError::NotAccepted {
            ticket: id,
            agent: agent.clone(),
            action,
        })
    }
}

/// A receipt's personal value (the provider's id, its words) as the ticket keeps it: an
/// erased customer's ticket keeps none, since their key is gone and sealing the value
/// would make them a new one.
fn kept(ticket: &Ticket, value: Personal<String>) -> Personal<String> {
    if ticket.erased {
        Personal::erased()
    } else {
        value
    }
}

fn not_empty(value: &str, field: &'static str) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        Err(DomainError::Empty { field })
    } else {
        Ok(())
    }
}

fn body_not_empty(body: &MessageBody) -> Result<(), DomainError> {
    match body {
        MessageBody::Text(text) => not_empty(text.expose(), "message text"),
        MessageBody::Media(_) | MessageBody::Location(_) => Ok(()),
    }
}

/// Decides `commands` in order, each on the state the previous ones left; gives their
/// events and the state after them. The first refusal refuses them all: a reaction or a
/// request is stored whole or not at all.
pub fn decide_all(
    ticket: &Ticket,
    commands: impl IntoIterator<Item = Command>,
) -> Result<(Vec<Event>, Ticket), DomainError> {
    let mut state = ticket.clone();
    let mut events = Vec::new();
    for command in commands {
        let decided = decide(&state, command)?;
        for event in &decided {
            state = evolve(state, event);
        }
        events.extend(decided);
    }
    Ok((events, state))
}
