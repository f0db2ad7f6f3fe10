//! `helpline tickets show|timeline|list`: tickets through the TicketQuery gRPC API, for
//! people (aligned text) or machines (`--json`).

use clap::builder::TypedValueParser as _;
use clap::{Subcommand, ValueEnum};
use helpline_domain::Channel;
use helpline_proto::v1 as pb;
use helpline_proto::v1::ticket_query_client::TicketQueryClient;
use serde_json::{Value, json};
use tonic::Code;

use crate::UsageError;
use crate::config::Config;
use crate::desk::Authorized;

#[derive(Debug, clap::Args)]
pub struct TicketsArgs {
    /// The TicketQuery API: `grpc.listen` of `helpline all`, `helpline query` or
    /// `helpline dev`.
    #[arg(
        long,
        global = true,
        env = "HELPLINE_QUERY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    query_url: String,
    /// A supervisor's or admin's bearer token [default: one signed with `auth.jwt_secret`
    /// for the first admin of `[[agents]]`].
    #[arg(long, global = true, env = "HELPLINE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: TicketsCommand,
}

#[derive(Debug, Subcommand)]
enum TicketsCommand {
    /// One ticket's current state.
    Show {
        /// The ticket's id (a UUID).
        id: String,
    },
    /// Every event of one ticket, oldest first.
    Timeline {
        /// The ticket's id (a UUID).
        id: String,
    },
    /// Tickets matching every given filter, latest activity first.
    List {
        #[arg(long, value_enum)]
        phase: Option<PhaseArg>,
        #[arg(long)]
        queue: Option<String>,
        /// The agent who holds the ticket now.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, value_parser = channel_parser())]
        channel: Option<ChannelArg>,
        /// Words that must all occur in the ticket's texts (messages, details,
        /// summaries), in any case.
        #[arg(long)]
        text: Option<String>,
        /// At most this many tickets (at most 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PhaseArg {
    Open,
    Routing,
    Queued,
    Assigned,
    ReferredToStore,
    Resolved,
    AwaitingRating,
    Closed,
    Abandoned,
}

/// A channel as the command line names it: its name in the channel registry
/// (`whatsapp`, `messenger`, `telegram`, `viber`, `web`, `apple`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelArg(pub Channel);

/// Parses `--channel`, offering the registry's names.
pub(crate) fn channel_parser() -> impl clap::builder::TypedValueParser<Value = ChannelArg> {
    let names: Vec<&'static str> = helpline_channels::CHANNELS
        .iter()
        .map(|channel| channel.as_str())
        .collect();
    clap::builder::PossibleValuesParser::new(names).try_map(|name: String| {
        helpline_channels::by_name(&name)
            .map(ChannelArg)
            .ok_or_else(|| format!("{name} is not a channel"))
    })
}

pub async fn run(config: &Config, args: TicketsArgs) -> anyhow::Result<()> {
    let token = match &args.token {
        Some(token) => token.clone(),
        None => crate::agent_token::admin_token(config, None)?,
    };
    let authorized = Authorized::connect("TicketQuery", &args.query_url, &token).await?;
    let mut client = TicketQueryClient::new(authorized.channel());
    match args.command {
        TicketsCommand::Show { id } => {
            let answer = client
                .get_ticket(authorized.request(pb::GetTicketRequest { ticket_id: id }))
                .await
                .map_err(answer_error)?
                .into_inner();
            let ticket = answer.ticket.unwrap_or_default();
            if args.json {
                let out = json!({
                    "ticket": ticket_json(&ticket),
                    "position": position_json(answer.position.as_ref()),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", ticket_text(&ticket));
                println!("{}", position_text(answer.position.as_ref()));
            }
        }
        TicketsCommand::Timeline { id } => {
            let answer = client
                .get_timeline(authorized.request(pb::GetTimelineRequest { ticket_id: id }))
                .await
                .map_err(answer_error)?
                .into_inner();
            if args.json {
                let out = json!({
                    "ticket_id": answer.ticket_id,
                    "entries": answer.entries.iter().map(entry_json).collect::<Vec<_>>(),
                    "position": position_json(answer.position.as_ref()),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("ticket {}", answer.ticket_id);
                for entry in &answer.entries {
                    println!(
                        "{:>8}  {:<30}  {:<24}  {}",
                        entry.sequence,
                        time_text(entry.occurred_at.as_ref()),
                        entry.event_type,
                        entry.summary
                    );
                }
                println!("{}", position_text(answer.position.as_ref()));
            }
        }
        TicketsCommand::List {
            phase,
            queue,
            agent,
            channel,
            text,
            limit,
        } => {
            let filter = pb::TicketFilter {
                phase: phase.map_or(pb::TicketPhase::Unspecified, PhaseArg::to_proto) as i32,
                queue: queue.unwrap_or_default(),
                agent: agent.unwrap_or_default(),
                channel: channel.map_or(pb::Channel::Unspecified, ChannelArg::to_proto) as i32,
                text: text.unwrap_or_default(),
                ..Default::default()
            };
            let answer = client
                .list_tickets(authorized.request(pb::ListTicketsRequest {
                    filter: Some(filter),
                    limit,
                }))
                .await
                .map_err(answer_error)?
                .into_inner();
            if args.json {
                let out = json!({
                    "tickets": answer.tickets.iter().map(ticket_json).collect::<Vec<_>>(),
                    "total_matches": answer.total_matches,
                    "position": position_json(answer.position.as_ref()),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{:<36}  {:<16}  {:<9}  {:<14}  {:<10}  {:<30}  product",
                    "ticket", "phase", "channel", "queue", "agent", "last activity"
                );
                for ticket in &answer.tickets {
                    println!(
                        "{:<36}  {:<16}  {:<9}  {:<14}  {:<10}  {:<30}  {}",
                        ticket.ticket_id,
                        phase_text(ticket.phase),
                        channel_text(ticket.customer.as_ref().map_or(0, |c| c.channel)),
                        dash(&ticket.queue),
                        dash(&ticket.agent),
                        time_text(ticket.last_activity_at.as_ref()),
                        ticket.details.as_ref().map_or("-", |d| dash(&d.product)),
                    );
                }
                println!(
                    "{} of {} matching tickets; {}",
                    answer.tickets.len(),
                    answer.total_matches,
                    position_text(answer.position.as_ref())
                );
            }
        }
    }
    Ok(())
}

/// A refused request is the caller's mistake (exit code 2); anything else a failure.
fn answer_error(status: tonic::Status) -> anyhow::Error {
    match status.code() {
        Code::InvalidArgument => UsageError(status.message().to_owned()).into(),
        Code::NotFound => anyhow::anyhow!("{}", status.message()),
        code => anyhow::anyhow!(
            "the TicketQuery API answered {code:?}: {}",
            status.message()
        ),
    }
}

impl PhaseArg {
    fn to_proto(self) -> pb::TicketPhase {
        match self {
            PhaseArg::Open => pb::TicketPhase::Open,
            PhaseArg::Routing => pb::TicketPhase::Routing,
            PhaseArg::Queued => pb::TicketPhase::Queued,
            PhaseArg::Assigned => pb::TicketPhase::Assigned,
            PhaseArg::ReferredToStore => pb::TicketPhase::ReferredToStore,
            PhaseArg::Resolved => pb::TicketPhase::Resolved,
            PhaseArg::AwaitingRating => pb::TicketPhase::AwaitingRating,
            PhaseArg::Closed => pb::TicketPhase::Closed,
            PhaseArg::Abandoned => pb::TicketPhase::Abandoned,
        }
    }
}

impl ChannelArg {
    pub(crate) fn to_proto(self) -> pb::Channel {
        helpline_eventstore::codec::channel_to_proto(self.0)
    }
}

fn phase_text(phase: i32) -> &'static str {
    match pb::TicketPhase::try_from(phase) {
        Ok(pb::TicketPhase::Open) => "open",
        Ok(pb::TicketPhase::Routing) => "routing",
        Ok(pb::TicketPhase::Queued) => "queued",
        Ok(pb::TicketPhase::Assigned) => "assigned",
        Ok(pb::TicketPhase::ReferredToStore) => "referred-to-store",
        Ok(pb::TicketPhase::Resolved) => "resolved",
        Ok(pb::TicketPhase::AwaitingRating) => "awaiting-rating",
        Ok(pb::TicketPhase::Closed) => "closed",
        Ok(pb::TicketPhase::Abandoned) => "abandoned",
        Ok(pb::TicketPhase::Unspecified) | Err(_) => "-",
    }
}

fn channel_text(channel: i32) -> &'static str {
    helpline_eventstore::codec::channel_from_proto_value(channel)
        .ok()
        .flatten()
        .map_or("-", Channel::as_str)
}

fn holder_text(holder: i32) -> &'static str {
    match pb::TicketHolder::try_from(holder) {
        Ok(pb::TicketHolder::Bot) => "bot",
        Ok(pb::TicketHolder::Agent) => "agent",
        Ok(pb::TicketHolder::Unspecified) | Err(_) => "-",
    }
}

fn dash(value: &str) -> &str {
    if value.is_empty() { "-" } else { value }
}

/// RFC 3339, or `-` without a time.
fn time_text(at: Option<&prost_types::Timestamp>) -> String {
    at.map_or_else(|| "-".to_owned(), ToString::to_string)
}

fn position_text(position: Option<&pb::ProjectionPosition>) -> String {
    let Some(position) = position else {
        return "projection position unknown".to_owned();
    };
    let behind = position
        .stream_last_sequence
        .saturating_sub(position.applied_sequence);
    let replayed = if position.replayed {
        ""
    } else {
        ", still replaying the log"
    };
    format!(
        "projection at sequence {} of {} ({behind} behind{replayed})",
        position.applied_sequence, position.stream_last_sequence
    )
}

fn ticket_text(ticket: &pb::TicketView) -> String {
    let mut lines = Vec::new();
    let mut line = |key: &str, value: String| lines.push(format!("{key:<14}{value}\n"));
    line("ticket", ticket.ticket_id.clone());
    line("region", ticket.region.clone());
    line(
        "phase",
        format!(
            "{} (held by {})",
            phase_text(ticket.phase),
            holder_text(ticket.holder)
        ),
    );
    if let Some(customer) = &ticket.customer {
        let name = if customer.display_name.is_empty() {
            String::new()
        } else {
            format!(" ({})", customer.display_name)
        };
        line(
            "customer",
            format!(
                "{} {}{name}",
                channel_text(customer.channel),
                customer.contact
            ),
        );
    }
    line("language", dash(&ticket.language).to_owned());
    if let Some(details) = &ticket.details {
        line("product", dash(&details.product).to_owned());
        let verified = if details.serial_number.is_empty() || details.serial_verified {
            ""
        } else {
            " (unverified)"
        };
        line(
            "serial",
            format!("{}{verified}", dash(&details.serial_number)),
        );
        line("problem", dash(&details.problem).to_owned());
        line("category", dash(&details.category).to_owned());
        if !details.location.is_empty() {
            line("location", details.location.clone());
        }
    }
    let accepted = if ticket.accepted { " (accepted)" } else { "" };
    line("queue", dash(&ticket.queue).to_owned());
    line("agent", format!("{}{accepted}", dash(&ticket.agent)));
    line("store", dash(&ticket.store).to_owned());
    line("resolved by", dash(&ticket.resolved_by).to_owned());
    line(
        "rating",
        ticket.rating.as_ref().map_or_else(
            || "-".to_owned(),
            |rating| {
                if rating.comment.is_empty() {
                    format!("{}/5", rating.score)
                } else {
                    format!("{}/5 \"{}\"", rating.score, rating.comment)
                }
            },
        ),
    );
    if let Some(counts) = &ticket.counts {
        line(
            "counts",
            format!(
                "{} events, {} customer messages, {} sent, {} delivered, {} failed, {} read",
                counts.events,
                counts.customer_messages,
                counts.outbound_messages,
                counts.deliveries,
                counts.delivery_failures,
                counts.reads
            ),
        );
    }
    line("opened", time_text(ticket.opened_at.as_ref()));
    line(
        "last activity",
        format!(
            "{} (sequence {})",
            time_text(ticket.last_activity_at.as_ref()),
            ticket.last_sequence
        ),
    );
    if ticket.erased {
        line(
            "erased",
            "the customer's personal data is erased".to_owned(),
        );
    }
    lines.concat()
}

fn time_json(at: Option<&prost_types::Timestamp>) -> Value {
    at.map_or(Value::Null, |at| Value::String(at.to_string()))
}

fn position_json(position: Option<&pb::ProjectionPosition>) -> Value {
    position.map_or(Value::Null, |position| {
        json!({
            "applied_sequence": position.applied_sequence,
            "stream_last_sequence": position.stream_last_sequence,
            "replayed": position.replayed,
        })
    })
}

fn ticket_json(ticket: &pb::TicketView) -> Value {
    json!({
        "ticket_id": ticket.ticket_id,
        "region": ticket.region,
        "phase": phase_text(ticket.phase),
        "holder": holder_text(ticket.holder),
        "customer": ticket.customer.as_ref().map(|customer| json!({
            "channel": channel_text(customer.channel),
            "contact": customer.contact,
            "display_name": customer.display_name,
        })),
        "language": ticket.language,
        "details": ticket.details.as_ref().map(|details| json!({
            "product": details.product,
            "serial_number": details.serial_number,
            "serial_verified": details.serial_verified,
            "problem": details.problem,
            "category": details.category,
            "location": details.location,
        })),
        "queue": ticket.queue,
        "agent": ticket.agent,
        "accepted": ticket.accepted,
        "store": ticket.store,
        "resolved_by": ticket.resolved_by,
        "rating": ticket.rating.as_ref().map(|rating| json!({
            "score": rating.score,
            "comment": rating.comment,
        })),
        "counts": ticket.counts.as_ref().map(|counts| json!({
            "events": counts.events,
            "customer_messages": counts.customer_messages,
            "outbound_messages": counts.outbound_messages,
            "deliveries": counts.deliveries,
            "delivery_failures": counts.delivery_failures,
            "reads": counts.reads,
        })),
        "opened_at": time_json(ticket.opened_at.as_ref()),
        "last_activity_at": time_json(ticket.last_activity_at.as_ref()),
        "last_sequence": ticket.last_sequence,
        "erased": ticket.erased,
    })
}

fn entry_json(entry: &pb::TimelineEntry) -> Value {
    json!({
        "sequence": entry.sequence,
        "occurred_at": time_json(entry.occurred_at.as_ref()),
        "event_type": entry.event_type,
        "summary": entry.summary,
        "event_id": entry.event_id,
        "command_id": entry.command_id,
        "causation_id": entry.causation_id,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_channel_argument_takes_the_registrys_names_and_no_other() {
        let command = clap::Command::new("helpline");
        let parse = |name: &str| {
            clap::builder::TypedValueParser::parse_ref(
                &channel_parser(),
                &command,
                None,
                std::ffi::OsStr::new(name),
            )
        };
        for channel in helpline_channels::CHANNELS {
            assert_eq!(parse(channel.as_str()).unwrap().0, *channel);
        }
        assert_eq!(
            parse("apple").unwrap().to_proto(),
            pb::Channel::AppleMessages
        );
        let refused = parse("fax").unwrap_err().to_string();
        assert!(refused.contains("whatsapp"), "{refused}");
    }
}
