//! `helpline demo` plays a whole conversation on a fresh nats-server of its own and
//! prints it: greeting, serial captured, handoff, assignment, agent reply, resolution,
//! rating.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_demo_prints_a_complete_conversation() {
    let output = Command::new(env!("CARGO_BIN_EXE_helpline"))
        .args(["demo", "--log-format", "json"])
        .env("HELPLINE_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for step in [
        "BotMessageSent           greeting:",
        "(verified)",
        "HandoffRequested",
        "TicketQueued",
        "AgentAssigned            anna",
        "AgentAccepted            anna",
        "AgentMessageSent         anna:",
        "TicketResolved           anna:",
        "RatingRequested",
        "RatingReceived           5/5",
        "TicketClosed             Rated",
    ] {
        assert!(stdout.contains(step), "no {step:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("helpline → customer: Guten Tag, hier ist Anna."),
        "the agent's reply reached the customer:\n{stdout}"
    );
}
