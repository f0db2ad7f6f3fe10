//! `helpline report csat|sla`: supervisors' reports through the Reports gRPC API, as an
//! aligned table for people or CSV (`--csv`) for spreadsheets.

use clap::{Subcommand, ValueEnum};
use helpline_proto::v1 as pb;
use helpline_proto::v1::reports_client::ReportsClient;
use tonic::Code;

use crate::UsageError;
use crate::config::Config;
use crate::desk::Authorized;
use crate::tickets::{ChannelArg, channel_parser};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The Reports API: `grpc.listen` of `helpline all`, `helpline feedback` or
    /// `helpline dev`.
    #[arg(
        long,
        global = true,
        env = "HELPLINE_REPORTS_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    reports_url: String,
    /// A supervisor's or admin's bearer token [default: one signed with `auth.jwt_secret`
    /// for the first admin of `[[agents]]`].
    #[arg(long, global = true, env = "HELPLINE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// One row per value of these, in this order (repeat or separate with commas).
    #[arg(long, global = true, value_enum, value_delimiter = ',')]
    by: Vec<ByArg>,
    /// One row per period as well, in the region's time zone.
    #[arg(long, global = true, value_enum)]
    period: Option<PeriodArg>,
    /// Only this queue's tickets.
    #[arg(long, global = true)]
    queue: Option<String>,
    /// Only this agent's tickets.
    #[arg(long, global = true)]
    agent: Option<String>,
    #[arg(long, global = true, value_parser = channel_parser())]
    channel: Option<ChannelArg>,
    /// From this day on (`2026-12-01`, the region's midnight).
    #[arg(long, global = true)]
    from: Option<jiff::civil::Date>,
    /// Before this day (`2027-01-01`).
    #[arg(long, global = true)]
    to: Option<jiff::civil::Date>,
    /// Comma-separated values with a header line instead of a table.
    #[arg(long, global = true)]
    csv: bool,
    #[command(subcommand)]
    command: ReportCommand,
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Customer satisfaction: ratings, mean score, share of 4 and 5, response rate (by
    /// when the rating was requested).
    Csat,
    /// Service levels and volumes: tickets queued, first response, next response and
    /// resolution times in working time, targets met and breached (by first queueing).
    Sla,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ByArg {
    Region,
    Queue,
    Agent,
    Channel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PeriodArg {
    Day,
    Week,
    Month,
}

pub async fn run(config: &Config, args: ReportArgs) -> anyhow::Result<()> {
    let token = match &args.token {
        Some(token) => token.clone(),
        None => crate::agent_token::admin_token(config, None)?,
    };
    let zone = config.region().locale.zone();
    let day = |date: jiff::civil::Date| -> anyhow::Result<prost_types::Timestamp> {
        let at = date
            .to_zoned(zone.clone())
            .map_err(|e| UsageError(format!("{date}: {e}")))?
            .timestamp();
        Ok(prost_types::Timestamp {
            seconds: at.as_second(),
            nanos: 0,
        })
    };
    let filter = pb::CsatFilter {
        queue: args.queue.clone().unwrap_or_default(),
        agent: args.agent.clone().unwrap_or_default(),
        channel: args
            .channel
            .map_or(pb::Channel::Unspecified, ChannelArg::to_proto) as i32,
        from: args.from.map(day).transpose()?,
        to: args.to.map(day).transpose()?,
    };
    let mut group_by: Vec<i32> = args
        .by
        .iter()
        .map(|by| match by {
            ByArg::Region => pb::CsatGrouping::Region,
            ByArg::Queue => pb::CsatGrouping::Queue,
            ByArg::Agent => pb::CsatGrouping::Agent,
            ByArg::Channel => pb::CsatGrouping::Channel,
        } as i32)
        .collect();
    if let Some(period) = args.period {
        group_by.push(match period {
            PeriodArg::Day => pb::CsatGrouping::Day,
            PeriodArg::Week => pb::CsatGrouping::Week,
            PeriodArg::Month => pb::CsatGrouping::Month,
        } as i32);
    }
    let mut columns: Vec<String> = args
        .by
        .iter()
        .map(|by| format!("{by:?}").to_lowercase())
        .collect();
    if let Some(period) = args.period {
        columns.push(format!("{period:?}").to_lowercase());
    }
    let authorized = Authorized::connect("Reports", &args.reports_url, &token).await?;
    let mut client = ReportsClient::new(authorized.channel());
    let (header, rows, position) = match args.command {
        ReportCommand::Csat => {
            let answer = client
                .get_satisfaction(authorized.request(pb::GetSatisfactionRequest {
                    filter: Some(filter),
                    group_by,
                }))
                .await
                .map_err(answer_error)?
                .into_inner();
            let header = [
                "ratings",
                "average",
                "csat_percent",
                "requested",
                "response_rate_percent",
            ];
            let rows: Vec<Vec<String>> = answer
                .rows
                .iter()
                .map(|row| {
                    let mut cells = row.group.clone();
                    cells.extend([
                        row.ratings.to_string(),
                        format!("{:.2}", row.average),
                        format!("{:.1}", row.csat_percent),
                        row.ratings_requested.to_string(),
                        format!("{:.1}", row.response_rate_percent),
                    ]);
                    cells
                })
                .collect();
            (header.map(str::to_owned).to_vec(), rows, answer.position)
        }
        ReportCommand::Sla => {
            let answer = client
                .get_service_levels(authorized.request(pb::GetServiceLevelsRequest {
                    filter: Some(filter),
                    group_by,
                }))
                .await
                .map_err(answer_error)?
                .into_inner();
            let mut header = vec!["tickets".to_owned()];
            for clock in ["first_response", "next_response", "resolution"] {
                for figure in ["avg_min", "met", "breached", "attained_percent"] {
                    header.push(format!("{clock}_{figure}"));
                }
            }
            let rows: Vec<Vec<String>> = answer
                .rows
                .iter()
                .map(|row| {
                    let mut cells = row.group.clone();
                    cells.push(row.tickets.to_string());
                    for clock in [&row.first_response, &row.next_response, &row.resolution] {
                        let clock = clock.unwrap_or_default();
                        cells.extend([
                            format!("{:.1}", clock.average_seconds / 60.0),
                            clock.met.to_string(),
                            clock.breached.to_string(),
                            format!("{:.1}", clock.attainment_percent),
                        ]);
                    }
                    cells
                })
                .collect();
            (header, rows, answer.position)
        }
    };
    columns.extend(header);
    print!("{}", render(&columns, &rows, args.csv));
    if !args.csv
        && let Some(position) = position
        && !position.replayed
    {
        println!(
            "(partial: the report has read the log up to {} of {})",
            position.applied_sequence, position.stream_last_sequence
        );
    }
    Ok(())
}

/// The report as an aligned table, or as CSV (a value with a comma or quote quoted).
fn render(columns: &[String], rows: &[Vec<String>], csv: bool) -> String {
    let mut out = String::new();
    if csv {
        let line = |cells: &[String]| {
            cells
                .iter()
                .map(|cell| {
                    if cell.contains([',', '"', '\n']) {
                        format!("\"{}\"", cell.replace('"', "\"\""))
                    } else {
                        cell.clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        out.push_str(&line(columns));
        out.push('\n');
        for row in rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        return out;
    }
    let shown = |cell: &str| {
        if cell.is_empty() {
            "-".to_owned()
        } else {
            cell.to_owned()
        }
    };
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(shown(cell).chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    out.push_str(&line(columns.to_vec()));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(|cell| shown(cell)).collect()));
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str("(no tickets)\n");
    }
    out
}

fn answer_error(status: tonic::Status) -> anyhow::Error {
    match status.code() {
        Code::InvalidArgument => UsageError(status.message().to_owned()).into(),
        code => anyhow::anyhow!("the Reports API answered {code:?}: {}", status.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_its_columns_and_csv_quotes_what_needs_it() {
        let columns = vec!["agent".to_owned(), "ratings".to_owned()];
        let rows = vec![
            vec!["anna".to_owned(), "12".to_owned()],
            vec![String::new(), "3".to_owned()],
            vec!["o\"brien, k".to_owned(), "1".to_owned()],
        ];
        assert_eq!(
            render(&columns, &rows, false),
            "agent       ratings\nanna        12\n-           3\no\"brien, k  1\n"
        );
        assert_eq!(
            render(&columns, &rows, true),
            "agent,ratings\nanna,12\n,3\n\"o\"\"brien, k\",1\n"
        );
    }
}
