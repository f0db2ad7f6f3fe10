//! `helpline chat agent`: a person plays an agent in the terminal, through the AgentDesk
//! API of a running helpline (`helpline dev` or `helpline all`). Offers and the live
//! events of the agent's tickets are printed as they come; typed lines are commands.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use helpline_domain::TicketId;
use helpline_proto::v1 as pb;
use tokio::io::AsyncBufReadExt as _;

use crate::config::Config;
use crate::desk::{AgentDesk, Watch};

pub const HOW_TO: &str = "\
commands: accept · reply TEXT · note TEXT · release · resolve SUMMARY · use TICKET · quit
contacts · link CHANNEL ADDRESS (the same customer writes there too) · unlink CUSTOMER_ID
(the ticket is the latest offered one unless `use` names another)";

pub async fn run(config: &Config, agent: &str, grpc: &str) -> anyhow::Result<()> {
    let token = helpline_assignment::auth::issue(
        &config.auth.key()?,
        agent,
        helpline_region::Role::Agent,
        Duration::from_secs(8 * 3600),
        SystemTime::now(),
    )
    .context("cannot sign the agent's token")?;
    let mut desk = AgentDesk::connect(grpc, &token).await?;
    let me = desk.sign_in().await?;
    println!(
        "signed in as {} ({}), queues {}, up to {} tickets",
        me.name,
        me.agent_id,
        me.queues.join(", "),
        me.max_tickets
    );
    println!("{HOW_TO}");
    let current: Arc<Mutex<Option<TicketId>>> = Arc::default();
    let watch = desk.watch().await?;
    let printer = tokio::spawn(print_updates(watch, current.clone()));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        let ticket = *current.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = match (command, ticket) {
            ("", _) => Ok(()),
            ("quit" | "exit", _) => break,
            ("use", _) => match rest.trim().parse::<uuid::Uuid>() {
                Ok(id) => {
                    *current.lock().unwrap_or_else(PoisonError::into_inner) = Some(TicketId(id));
                    Ok(())
                }
                Err(e) => Err(anyhow::anyhow!("not a ticket id: {e}")),
            },
            (_, None) => Err(anyhow::anyhow!(
                "no ticket yet: wait for an offer, or `use TICKET`"
            )),
            ("accept", Some(t)) => desk.accept(t).await,
            ("reply", Some(t)) => desk.reply(t, rest).await,
            ("note", Some(t)) => desk.note(t, rest).await,
            ("release", Some(t)) => desk.release(t).await,
            ("resolve", Some(t)) => desk.resolve(t, rest).await,
            ("contacts", Some(t)) => desk.contacts(t).await.map(|c| print_contacts(&c)),
            ("link", Some(t)) => match rest.trim().split_once(' ') {
                Some((channel, address)) => match helpline_domain::Channel::ALL
                    .into_iter()
                    .find(|c| c.as_str() == channel)
                {
                    Some(channel) => desk
                        .link(t, channel, address.trim())
                        .await
                        .map(|c| print_contacts(&c)),
                    None => Err(anyhow::anyhow!(
                        "unknown channel {channel:?}: whatsapp, messenger, telegram, viber, apple or web"
                    )),
                },
                None => Err(anyhow::anyhow!(
                    "link CHANNEL ADDRESS, e.g. link whatsapp +49 151 12345678"
                )),
            },
            ("unlink", Some(t)) => desk
                .unlink(t, rest.trim())
                .await
                .map(|c| print_contacts(&c)),
            (other, _) => Err(anyhow::anyhow!("unknown command {other:?}\n{HOW_TO}")),
        };
        match outcome {
            Ok(()) if !command.is_empty() => println!("ok"),
            Ok(()) => {}
            Err(e) => println!("refused: {e:#}"),
        }
    }
    printer.abort();
    Ok(())
}

/// The customer's contacts as the agent sees them: pseudonym, channel, tickets.
fn print_contacts(contacts: &[pb::CustomerContact]) {
    for contact in contacts {
        let channel = helpline_eventstore::codec::channel_from_proto_value(contact.channel)
            .ok()
            .flatten()
            .map_or("?", helpline_domain::Channel::as_str);
        println!(
            "contact {} on {channel}: tickets {}",
            contact.customer_id,
            contact.ticket_ids.join(", ")
        );
    }
}

async fn print_updates(mut watch: Watch, current: Arc<Mutex<Option<TicketId>>>) {
    loop {
        let update = match watch.recv().await {
            Ok(Some(update)) => update,
            Ok(None) => return println!("the AgentDesk stream ended"),
            Err(e) => return println!("the AgentDesk stream failed: {e:#}"),
        };
        match update.update {
            Some(pb::watch_response::Update::Ticket(ticket)) => {
                if let Ok(id) = ticket.ticket_id.parse() {
                    *current.lock().unwrap_or_else(PoisonError::into_inner) = Some(TicketId(id));
                }
                let state = if ticket.accepted { "yours" } else { "offered" };
                println!(
                    "[{state}] ticket {} in {} ({}): {}",
                    ticket.ticket_id,
                    ticket.queue,
                    ticket.language,
                    ticket.summary.replace('\n', " · ")
                );
            }
            Some(pb::watch_response::Update::Event(envelope)) => {
                if let Some(line) = describe(&envelope) {
                    println!("[{}] {line}", short(&update.ticket_id));
                }
            }
            None => {}
        }
    }
}

fn short(ticket: &str) -> &str {
    ticket
        .get(ticket.len().saturating_sub(8)..)
        .unwrap_or(ticket)
}

/// What an agent wants to see of a ticket event.
fn describe(envelope: &pb::EventEnvelope) -> Option<String> {
    use pb::event_envelope::Event as E;
    let text = |body: &Option<pb::MessageBody>| match body.as_ref().and_then(|b| b.content.as_ref())
    {
        Some(pb::message_body::Content::Text(text)) => text.clone(),
        Some(pb::message_body::Content::Media(media)) => format!("[attachment {}]", media.object),
        Some(pb::message_body::Content::Location(_)) => "[location]".to_owned(),
        None => String::new(),
    };
    match envelope.event.as_ref()? {
        E::CustomerMessageReceived(m) => Some(format!("customer: {}", text(&m.body))),
        E::BotMessageSent(m) => Some(format!("bot: {}", text(&m.body))),
        E::AgentMessageSent(m) => Some(format!("{}: {}", m.agent, text(&m.body))),
        E::NotificationSent(m) => Some(format!("notification {}: {}", m.template, text(&m.body))),
        E::MessageDeliveryFailed(m) => Some(format!("not delivered: {}", m.reason)),
        E::TicketResolved(_) => Some("resolved".to_owned()),
        E::TicketReleased(_) => Some("released".to_owned()),
        _ => None,
    }
}
