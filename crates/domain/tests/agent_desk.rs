//! The agent's actions beyond accept, reply and resolve: internal notes, transfers to
//! another queue, and a supervisor's reassignment (a release and an assignment).

mod support;

use helpline_domain::{
    Command, DomainError, Event, Holder, Personal, Phase, QueueId, ReleaseReason, decide, fold,
};
use support::*;

#[test]
fn a_note_is_recorded_for_agents_and_changes_nothing_else() {
    let before = Scenario::at(Stage::Accepted, []).ticket().clone();
    let ticket = Scenario::at(Stage::Accepted, [])
        .when(cmd::add_note(alice()))
        .then([Event::AgentNoteAdded {
            agent: alice(),
            text: Personal::new("prefers a call back".to_owned()),
        }]);
    assert_eq!(ticket.phase, Phase::Assigned);
    assert_eq!(ticket.outbound_messages, before.outbound_messages);
    assert_eq!(ticket.holder, Holder::Agent);
}

#[test]
fn an_empty_note_or_someone_elses_is_refused() {
    Scenario::at(Stage::Accepted, [])
        .when(Command::AddAgentNote {
            agent: alice(),
            text: Personal::new("  ".to_owned()),
        })
        .then_err(DomainError::Empty { field: "note text" });
    let error = Scenario::at(Stage::Accepted, [])
        .when(cmd::add_note(bob()))
        .then_err(DomainError::NotTheAssignedAgent {
            ticket: TICKET,
            agent: bob(),
            assigned: alice(),
            action: "add a note",
        });
    assert!(error.to_string().contains("bob"));
}

#[test]
fn a_transfer_releases_the_ticket_into_the_other_queue() {
    let ticket = Scenario::at(Stage::Accepted, [])
        .when(cmd::transfer(alice(), "de-phones"))
        .then([
            Event::TicketReleased {
                agent: alice(),
                reason: ReleaseReason::Transferred,
            },
            Event::TicketQueued {
                queue: QueueId::new("de-phones"),
            },
        ]);
    assert_eq!(ticket.phase, Phase::Queued);
    assert_eq!(ticket.queue, Some(QueueId::new("de-phones")));
    assert_eq!(ticket.agent, None);
    assert_eq!(ticket.holder, Holder::Bot);
}

#[test]
fn a_transfer_to_an_agent_is_a_transfer_then_an_assignment() {
    let ticket = Scenario::at(Stage::Accepted, []).ticket().clone();
    let mut state = ticket;
    let mut events = Vec::new();
    for command in [cmd::transfer(alice(), "de-laptops-de"), cmd::assign(bob())] {
        let decided = decide(&state, command).unwrap_or_else(|e| panic!("{e}"));
        state = fold(state, &decided);
        events.extend(decided);
    }
    assert_eq!(events.len(), 3);
    assert_eq!(state.phase, Phase::Assigned);
    assert_eq!(state.agent, Some(bob()));
    assert!(!state.accepted, "the new agent accepts for themselves");
}

#[test]
fn a_supervisor_reassigns_by_releasing_and_assigning() {
    let mut state = Scenario::at(Stage::Assigned, []).ticket().clone();
    for command in [
        cmd::release(alice(), ReleaseReason::Reassigned),
        cmd::assign(bob()),
    ] {
        let decided = decide(&state, command).unwrap_or_else(|e| panic!("{e}"));
        state = fold(state, &decided);
    }
    assert_eq!(state.agent, Some(bob()));
    assert_eq!(state.queue, Some(laptops()));
}

#[test]
fn only_an_accepted_ticket_is_transferred() {
    Scenario::at(Stage::Assigned, [])
        .when(cmd::transfer(alice(), "de-phones"))
        .then_err(DomainError::NotAccepted {
            ticket: TICKET,
            agent: alice(),
            action: "transfer",
        });
    Scenario::at(Stage::Accepted, [])
        .when(cmd::transfer(alice(), " "))
        .then_err(DomainError::Empty { field: "queue" });
}
