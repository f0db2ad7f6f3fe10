//! `helpline agent-token`: a bearer token for the AgentDesk API, signed with the
//! configured key, for development and tests. Production tokens come from the brand's
//! identity provider, signed with the same key.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use helpline_domain::AgentId;
use helpline_region::Role;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct AgentTokenArgs {
    /// The agent, as `[[agents]] id` names them.
    #[arg(long)]
    agent: String,
    /// The role the token grants; the directory's role caps it.
    #[arg(long, value_enum, default_value_t = RoleArg::Agent)]
    role: RoleArg,
    /// How long the token is valid, in seconds.
    #[arg(long, default_value_t = 8 * 3600)]
    ttl_secs: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Agent,
    Supervisor,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Agent => Role::Agent,
            RoleArg::Supervisor => Role::Supervisor,
            RoleArg::Admin => Role::Admin,
        }
    }
}

pub fn run(config: &Config, args: &AgentTokenArgs) -> anyhow::Result<()> {
    let region = config.region();
    if region.agent(&AgentId::new(args.agent.as_str())).is_none() {
        anyhow::bail!(
            "no agent {:?} in the region's [[agents]]; the API would refuse the token",
            args.agent
        );
    }
    let key = config.auth.key()?;
    let token = helpline_assignment::auth::issue(
        &key,
        &args.agent,
        args.role.into(),
        Duration::from_secs(args.ttl_secs),
        SystemTime::now(),
    )
    .context("cannot sign the token")?;
    println!("{token}");
    Ok(())
}

/// A short-lived admin token signed with the configured key, for `admin` or the first
/// admin of `[[agents]]`: what the operator's commands (`privacy`, `tickets`) send when
/// given no `--token`.
pub(crate) fn admin_token(config: &Config, admin: Option<&str>) -> anyhow::Result<String> {
    let region = config.region();
    let admin = match admin {
        Some(admin) => admin.to_owned(),
        None => region
            .agents
            .iter()
            .find(|agent| agent.role == Role::Admin)
            .map(|agent| agent.id.to_string())
            .context("no admin in the region's [[agents]]; pass --token")?,
    };
    let key = config.auth.key()?;
    helpline_assignment::auth::issue(
        &key,
        &admin,
        Role::Admin,
        Duration::from_secs(300),
        SystemTime::now(),
    )
    .context("cannot sign an admin token")
}
