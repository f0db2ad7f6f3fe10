//! `helpline privacy`: the customer's rights from the terminal, and the privacy service.
//!
//! `erase` and `export` call the admin-only Privacy API (so every erasure goes through
//! one audited path), with `--token` or, without one, an admin token signed with the
//! configured key. `retention` runs the region's retention once, straight on NATS.
//! `serve` runs the privacy service (the API and scheduled retention runs).

use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use helpline_eventstore::EventStore;
use helpline_privacy::Privacy;
use helpline_proto::v1 as pb;
use helpline_proto::v1::privacy_client::PrivacyClient;
use tonic::Code;
use tonic::transport::Channel as GrpcChannel;

use crate::UsageError;
use crate::all::{self, Services};
use crate::config::Config;
use crate::desk::Authorized;
use crate::tickets::{ChannelArg, channel_parser};

#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Erase a customer's personal data: their key is purged, every ticket of theirs
    /// shows "[erased]" from then on. Idempotent.
    Erase(CustomerArgs),
    /// Print everything helpline holds about a customer, as JSON.
    Export(CustomerArgs),
    /// Run the region's retention once: customers whose tickets all ended longer ago
    /// than `privacy.retention_days` lose their personal data.
    Retention {
        /// Use this period instead of `privacy.retention_days`.
        #[arg(long)]
        older_than_days: Option<u32>,
    },
    /// Run the privacy service: the Privacy gRPC API on `grpc.listen` and retention
    /// every `privacy.retention_every_hours`.
    Serve,
}

#[derive(Debug, Args)]
pub struct CustomerArgs {
    /// The channel the customer writes on.
    #[arg(long, value_parser = channel_parser(), requires = "contact", conflicts_with = "customer_id")]
    channel: Option<ChannelArg>,
    /// The customer's address on the channel: a WhatsApp number in international form,
    /// written any way (`+49 151 12345678`, `0049151…`), or the channel's chat or user id.
    #[arg(long, requires = "channel")]
    contact: Option<String>,
    /// The customer's pseudonym, as exports and logs name them.
    #[arg(long)]
    customer_id: Option<String>,
    /// The Privacy API.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    /// An admin's bearer token [default: one signed with `auth.jwt_secret` for --admin].
    #[arg(long, env = "HELPLINE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The admin a signed token names [default: the first admin in `[[agents]]`].
    #[arg(long)]
    admin: Option<String>,
}

pub async fn run(config: Config, command: PrivacyCommand) -> anyhow::Result<()> {
    match command {
        PrivacyCommand::Erase(args) => {
            let customer = customer_ref(&args)?;
            let mut client = Client::connect(&config, &args).await?;
            let request = client.request(pb::EraseCustomerRequest {
                customer: Some(customer),
            });
            let erased = client
                .privacy
                .erase_customer(request)
                .await
                .map_err(|status| answer_error("erasure", status))?
                .into_inner();
            println!(
                "customer {} erased: {} tickets ({} newly), key {}",
                erased.customer_id,
                erased.ticket_ids.len(),
                erased.tickets_newly_erased,
                match erased.key_purged {
                    true => "purged",
                    false => "already gone",
                }
            );
            for linked in &erased.linked_customer_ids {
                println!("linked contact {linked} erased with them");
            }
            Ok(())
        }
        PrivacyCommand::Export(args) => {
            let customer = customer_ref(&args)?;
            let mut client = Client::connect(&config, &args).await?;
            let request = client.request(pb::ExportCustomerRequest {
                customer: Some(customer),
            });
            let export = client
                .privacy
                .export_customer(request)
                .await
                .map_err(|status| answer_error("export", status))?
                .into_inner();
            println!("{}", export.json);
            Ok(())
        }
        PrivacyCommand::Retention { older_than_days } => {
            let period = match older_than_days {
                Some(days) => Duration::from_secs(u64::from(days) * 24 * 3600),
                None => config.privacy.retention(),
            };
            let client = crate::nats::connect(&config.nats).await?;
            let store = EventStore::open(client, config.store()?).await?;
            let run = Privacy::new(store).retention(period).await?;
            println!("{run}");
            Ok(())
        }
        PrivacyCommand::Serve => {
            let services = Services {
                privacy: true,
                ..Services::NONE
            };
            all::run(config, services).await
        }
    }
}

/// A request the caller got wrong (a malformed contact, ...) is a usage error (exit code
/// 2); a customer who is not there, or anything else, a failure (exit code 1), so that
/// no script takes an erasure of nobody for an erasure.
fn answer_error(what: &str, status: tonic::Status) -> anyhow::Error {
    match status.code() {
        Code::InvalidArgument => UsageError(format!("{what} refused: {}", status.message())).into(),
        Code::NotFound => anyhow::anyhow!("{what} refused: {}", status.message()),
        code => anyhow::anyhow!(
            "{what} refused: the Privacy API answered {code:?}: {}",
            status.message()
        ),
    }
}

fn customer_ref(args: &CustomerArgs) -> anyhow::Result<pb::CustomerRef> {
    use pb::customer_ref::Customer;
    let customer = match (&args.channel, &args.contact, &args.customer_id) {
        (Some(channel), Some(contact), None) => Customer::Contact(pb::Contact {
            channel: channel.to_proto().into(),
            address: contact.clone(),
        }),
        (None, None, Some(id)) => Customer::CustomerId(id.clone()),
        _ => bail!("name the customer: --channel and --contact, or --customer-id"),
    };
    Ok(pb::CustomerRef {
        customer: Some(customer),
    })
}

struct Client {
    privacy: PrivacyClient<GrpcChannel>,
    authorized: Authorized,
}

impl Client {
    async fn connect(config: &Config, args: &CustomerArgs) -> anyhow::Result<Self> {
        let token = match &args.token {
            Some(token) => token.clone(),
            None => crate::agent_token::admin_token(config, args.admin.as_deref())?,
        };
        let authorized = Authorized::connect("Privacy", &args.grpc, &token).await?;
        Ok(Self {
            privacy: PrivacyClient::new(authorized.channel()),
            authorized,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.authorized.request(message)
    }
}
