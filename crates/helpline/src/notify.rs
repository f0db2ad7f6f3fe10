//! `helpline notify`: the brand writes first, through the Notifications API.
//!
//! - `send`: one notification, to a contact on a channel or to a ticket's customer.
//! - `campaign FILE`: one notification per row of a CSV file, paced by egress, resumable:
//!   each row's idempotency key is `<campaign>:<channel>:<contact>`, so a run killed
//!   midway and started again sends every customer exactly once.
//! - `opt-in`, `opt-out`, `consent`: the customer's consent as the brand collected it.
//! - `serve`: the Notifications API on `grpc.listen`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use helpline_proto::v1 as pb;
use helpline_proto::v1::notifications_client::NotificationsClient;
use indicatif::{ProgressBar, ProgressStyle};
use tonic::Code;
use tonic::transport::Channel as GrpcChannel;

use crate::UsageError;
use crate::all::{self, Services};
use crate::config::Config;
use crate::desk::Authorized;
use crate::tickets::{ChannelArg, channel_parser};

#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// The Notifications API: `grpc.listen` of `helpline all`, `helpline notify serve` or
    /// `helpline dev`.
    #[arg(
        long,
        global = true,
        env = "HELPLINE_NOTIFY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    url: String,
    /// A supervisor's or admin's bearer token [default: one signed with the configured key
    /// for the first admin of `[[agents]]`].
    #[arg(long, global = true, env = "HELPLINE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: NotifyCommand,
}

#[derive(Debug, Subcommand)]
enum NotifyCommand {
    /// Send one notification from a template of `[notifications.templates]`.
    Send {
        #[command(flatten)]
        customer: OptionalContact,
        /// The customer of this ticket (their current ticket takes it).
        #[arg(long, conflicts_with_all = ["channel", "contact"])]
        ticket: Option<String>,
        /// The template, e.g. `repair_ready`.
        #[arg(long)]
        template: String,
        /// A placeholder's value, `name=value`; repeat for each.
        #[arg(long = "param", value_parser = parse_parameter)]
        parameters: Vec<(String, String)>,
        /// The language to write in [default: the customer's ticket's, else the region's].
        #[arg(long)]
        language: Option<String>,
        /// This notification's idempotency key: sending again with the same key sends
        /// nothing [default: a new one, printed, to retry with].
        #[arg(long)]
        key: Option<String>,
    },
    /// Send one notification per row of a CSV file with the header
    /// `channel,contact[,language],<parameter>…`; refusals are printed as CSV
    /// (`channel,contact,code,reason`) on stdout, progress on stderr.
    Campaign {
        /// The CSV file.
        file: PathBuf,
        /// The template every row is written from.
        #[arg(long)]
        template: String,
        /// The campaign's name: with the row's channel and contact, each notification's
        /// idempotency key. Run again with the same name to resume after a crash.
        #[arg(long)]
        campaign: String,
        /// Requests in flight at once (the pace of sending is egress's).
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Record that the customer opted in (e.g. on the repair form).
    OptIn(ConsentArgs),
    /// Record that the customer opted out.
    OptOut(ConsentArgs),
    /// Print the customer's consent as recorded.
    Consent {
        #[command(flatten)]
        customer: Contact,
    },
    /// Run the Notifications API on `grpc.listen`.
    Serve,
}

#[derive(Debug, Args)]
struct Contact {
    /// The channel the customer writes on.
    #[arg(long, value_parser = channel_parser())]
    channel: ChannelArg,
    /// Their address on it: a WhatsApp number in international form, written any way, or
    /// the channel's chat or user id.
    #[arg(long)]
    contact: String,
}

#[derive(Debug, Args)]
struct OptionalContact {
    /// The channel the customer writes on.
    #[arg(long, value_parser = channel_parser(), requires = "contact")]
    channel: Option<ChannelArg>,
    /// Their address on it.
    #[arg(long, requires = "channel")]
    contact: Option<String>,
}

#[derive(Debug, Args)]
struct ConsentArgs {
    #[command(flatten)]
    customer: Contact,
    /// Marketing only, rather than every notification.
    #[arg(long)]
    marketing: bool,
}

fn parse_parameter(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(name, value)| (name.trim().to_owned(), value.to_owned()))
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| format!("{text:?} is not name=value"))
}

pub async fn run(config: Config, args: NotifyArgs) -> anyhow::Result<()> {
    if let NotifyCommand::Serve = args.command {
        let services = Services {
            notify: true,
            ..Services::NONE
        };
        return all::run(config, services).await;
    }
    let token = match &args.token {
        Some(token) => token.clone(),
        None => crate::agent_token::admin_token(&config, None)?,
    };
    let authorized = Authorized::connect("Notifications", &args.url, &token).await?;
    let client = Client {
        api: NotificationsClient::new(authorized.channel()),
        authorized,
    };
    match args.command {
        NotifyCommand::Send {
            customer,
            ticket,
            template,
            parameters,
            language,
            key,
        } => {
            let recipient = match (customer.channel, customer.contact, ticket) {
                (Some(channel), Some(contact), None) => {
                    pb::notify_request::Recipient::Contact(pb::Contact {
                        channel: channel.to_proto().into(),
                        address: contact,
                    })
                }
                (None, None, Some(ticket)) => pb::notify_request::Recipient::TicketId(ticket),
                _ => bail!(UsageError(
                    "name the customer: --channel and --contact, or --ticket".to_owned()
                )),
            };
            let key = key.unwrap_or_else(|| {
                let key = uuid::Uuid::now_v7().to_string();
                eprintln!(
                    "idempotency key {key} (give it as --key to retry without sending twice)"
                );
                key
            });
            let answer = client
                .notify(pb::NotifyRequest {
                    recipient: Some(recipient),
                    template,
                    parameters: parameters.into_iter().collect(),
                    language: language.unwrap_or_default(),
                    idempotency_key: key,
                })
                .await?;
            match answer.outcome {
                Some(pb::notify_response::Outcome::Queued(queued)) => {
                    let how = if queued.duplicate {
                        "queued before with this key: nothing new".to_owned()
                    } else {
                        queued.way.replace('_', " ")
                    };
                    println!(
                        "queued on ticket {} as message {} ({how})",
                        queued.ticket_id, queued.message_id
                    );
                    Ok(())
                }
                Some(pb::notify_response::Outcome::Refused(refused)) => {
                    bail!("refused ({}): {}", refused.code, refused.reason)
                }
                None => bail!("the Notifications API answered neither queued nor refused"),
            }
        }
        NotifyCommand::Campaign {
            file,
            template,
            campaign,
            concurrency,
        } => run_campaign(&client, &file, &template, &campaign, concurrency).await,
        NotifyCommand::OptIn(args) => record(&client, args, true).await,
        NotifyCommand::OptOut(args) => record(&client, args, false).await,
        NotifyCommand::Consent { customer } => {
            let answer = client
                .api
                .clone()
                .get_consent(client.authorized.request(pb::GetConsentRequest {
                    contact: Some(contact(&customer)),
                }))
                .await
                .map_err(answer_error)?
                .into_inner();
            println!("{}", describe(answer.consent.unwrap_or_default()));
            Ok(())
        }
        NotifyCommand::Serve => Ok(()),
    }
}

async fn record(client: &Client, args: ConsentArgs, granted: bool) -> anyhow::Result<()> {
    let answer = client
        .api
        .clone()
        .record_consent(client.authorized.request(pb::RecordConsentRequest {
            contact: Some(contact(&args.customer)),
            granted,
            marketing_only: args.marketing,
        }))
        .await
        .map_err(answer_error)?
        .into_inner();
    println!(
        "{}{}",
        describe(answer.consent.unwrap_or_default()),
        if answer.changed {
            ""
        } else {
            " (unchanged: already so)"
        }
    );
    Ok(())
}

fn contact(customer: &Contact) -> pb::Contact {
    pb::Contact {
        channel: customer.channel.to_proto().into(),
        address: customer.contact.clone(),
    }
}

fn describe(consent: pb::Consent) -> String {
    let word = |answer: i32| match pb::ConsentAnswer::try_from(answer) {
        Ok(pb::ConsentAnswer::Given) => "given",
        Ok(pb::ConsentAnswer::Withdrawn) => "withdrawn",
        _ => "not asked",
    };
    format!(
        "notifications: {}, marketing: {}",
        word(consent.notifications),
        word(consent.marketing)
    )
}

struct Client {
    api: NotificationsClient<GrpcChannel>,
    authorized: Authorized,
}

impl Client {
    async fn notify(&self, request: pb::NotifyRequest) -> anyhow::Result<pb::NotifyResponse> {
        Ok(self
            .api
            .clone()
            .notify(self.authorized.request(request))
            .await
            .map_err(answer_error)?
            .into_inner())
    }
}

/// The caller's mistake (an unknown template, a missing parameter, a malformed contact)
/// is a usage error (exit code 2); anything else a failure (exit code 1).
fn answer_error(status: tonic::Status) -> anyhow::Error {
    match status.code() {
        Code::InvalidArgument => UsageError(format!("refused: {}", status.message())).into(),
        code => anyhow::anyhow!(
            "the Notifications API answered {code:?}: {}",
            status.message()
        ),
    }
}

/// One row of a campaign file.
struct Row {
    line: usize,
    channel: String,
    contact: String,
    language: String,
    parameters: BTreeMap<String, String>,
}

async fn run_campaign(
    client: &Client,
    file: &PathBuf,
    template: &str,
    campaign: &str,
    concurrency: usize,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let rows = campaign_rows(&text).map_err(|e| UsageError(format!("{}: {e}", file.display())))?;
    let channels: BTreeMap<&str, helpline_domain::Channel> = helpline_channels::CHANNELS
        .iter()
        .map(|channel| (channel.as_str(), *channel))
        .collect();
    for row in &rows {
        if !channels.contains_key(row.channel.as_str()) {
            bail!(UsageError(format!(
                "{}: line {}: {:?} is not a channel ({})",
                file.display(),
                row.line,
                row.channel,
                helpline_channels::NAMES.join(", ")
            )));
        }
    }
    let progress = ProgressBar::new(rows.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} notifications, {per_sec}, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let queued = AtomicU64::new(0);
    let duplicates = AtomicU64::new(0);
    let refusals: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let failures: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    println!("channel,contact,code,reason");
    futures::stream::iter(rows)
        .for_each_concurrent(concurrency.max(1), |row| {
            let (progress, queued, duplicates) = (&progress, &queued, &duplicates);
            let (refusals, failures) = (Arc::clone(&refusals), Arc::clone(&failures));
            let channel = channels
                .get(row.channel.as_str())
                .copied()
                .unwrap_or(helpline_domain::Channel::WebChat);
            async move {
                let request = pb::NotifyRequest {
                    recipient: Some(pb::notify_request::Recipient::Contact(pb::Contact {
                        channel: helpline_eventstore::codec::channel_to_proto(channel).into(),
                        address: row.contact.clone(),
                    })),
                    template: template.to_owned(),
                    parameters: row.parameters.clone().into_iter().collect(),
                    language: row.language.clone(),
                    idempotency_key: format!("{campaign}:{}:{}", row.channel, row.contact.trim()),
                };
                match client.notify(request).await.map(|answer| answer.outcome) {
                    Ok(Some(pb::notify_response::Outcome::Queued(answer))) => {
                        let counter = if answer.duplicate { duplicates } else { queued };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(pb::notify_response::Outcome::Refused(refused))) => {
                        progress.suspend(|| {
                            println!(
                                "{},{},{},{}",
                                row.channel,
                                csv_field(&row.contact),
                                refused.code,
                                csv_field(&refused.reason)
                            );
                        });
                        *refusals
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .entry(refused.code)
                            .or_default() += 1;
                    }
                    Ok(None) => failures
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(format!("line {}: no outcome", row.line)),
                    Err(e) => failures
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(format!("line {}: {e:#}", row.line)),
                }
                progress.inc(1);
            }
        })
        .await;
    progress.finish_and_clear();
    let refusals = refusals
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let failures = failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let refused: u64 = refusals.values().sum();
    let by_code: Vec<String> = refusals
        .iter()
        .map(|(code, n)| format!("{code} {n}"))
        .collect();
    eprintln!(
        "campaign {campaign}: queued {}, already queued {}, refused {refused}{}, failed {}",
        queued.load(Ordering::Relaxed),
        duplicates.load(Ordering::Relaxed),
        if by_code.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_code.join(", "))
        },
        failures.len()
    );
    for failure in failures.iter().take(10) {
        eprintln!("  {failure}");
    }
    if !failures.is_empty() {
        bail!(
            "{} rows failed; run the campaign again with the same name to send the rest (nothing is sent twice)",
            failures.len()
        );
    }
    Ok(())
}

/// A field for the refusals' CSV: quoted when it must be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// The rows of a campaign file: a header `channel,contact[,language],<parameter>…`, then
/// one customer per line. Fields may be quoted (`"Berlin Mitte, Alexanderplatz"`, a quote
/// inside doubled); blank lines are skipped.
fn campaign_rows(text: &str) -> Result<Vec<Row>, String> {
    let records = parse_csv(text)?;
    let mut records = records.into_iter();
    let Some((_, header)) = records.next() else {
        return Err("empty: the first line names the columns (channel,contact,…)".to_owned());
    };
    let header: Vec<String> = header.iter().map(|name| name.trim().to_owned()).collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(channel), Some(contact)) = (column("channel"), column("contact")) else {
        return Err("the header must name the columns channel and contact".to_owned());
    };
    let language = column("language");
    let mut rows = Vec::new();
    for (line, fields) in records {
        if fields.len() != header.len() {
            return Err(format!(
                "line {line}: {} fields, the header has {}",
                fields.len(),
                header.len()
            ));
        }
        let parameters = header
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != channel && *i != contact && Some(*i) != language)
            .map(|(i, name)| (name.clone(), fields[i].clone()))
            .collect();
        rows.push(Row {
            line,
            channel: fields[channel].trim().to_ascii_lowercase(),
            contact: fields[contact].trim().to_owned(),
            language: language
                .map(|i| fields[i].trim().to_owned())
                .unwrap_or_default(),
            parameters,
        });
    }
    Ok(rows)
}

/// RFC 4180 records with their line numbers (1-based, of the record's first line).
fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                fields.push(std::mem::take(&mut field));
                if fields.iter().any(|f| !f.trim().is_empty()) {
                    records.push((start, std::mem::take(&mut fields)));
                } else {
                    fields.clear();
                }
                line += 1;
                start = line;
            }
            ('\n', true) => {
                line += 1;
                field.push('\n');
            }
            (c, _) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {start}: a quote is never closed"));
    }
    fields.push(field);
    if fields.iter().any(|f| !f.trim().is_empty()) {
        records.push((start, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_campaign_file_is_read_with_quotes_blank_lines_and_parameters() {
        let text = "channel,contact,language,product,store\n\
                    whatsapp,+49 151 1234567,de,MateBook X Pro,\"Berlin Mitte, Alexanderplatz\"\n\
                    \n\
                    TELEGRAM,4711,,\"Mate \"\"Pad\"\"\",Hamburg\r\n";
        let rows = campaign_rows(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].channel, "whatsapp");
        assert_eq!(rows[0].contact, "+49 151 1234567");
        assert_eq!(rows[0].language, "de");
        assert_eq!(rows[0].parameters["store"], "Berlin Mitte, Alexanderplatz");
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].channel, "telegram");
        assert_eq!(rows[1].parameters["product"], "Mate \"Pad\"");
        assert!(!rows[1].parameters.contains_key("language"));
    }

    #[test]
    fn a_campaign_file_without_its_columns_or_with_ragged_rows_is_refused() {
        assert!(campaign_rows("").is_err());
        assert!(campaign_rows("contact,product\n1,x\n").is_err());
        let ragged = campaign_rows("channel,contact,product\ntelegram,1\n");
        assert_eq!(
            ragged.err().as_deref(),
            Some("line 2: 2 fields, the header has 3")
        );
        assert!(campaign_rows("channel,contact\ntelegram,\"1\n").is_err());
    }

    #[test]
    fn refusal_fields_are_quoted_when_they_must_be() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
