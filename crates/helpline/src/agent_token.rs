//! `helpline agent-token`: a bearer token for the gRPC APIs, signed with the configured
//! signing key (`auth.signing_key`, or the older shared `auth.jwt_secret`), for
//! operators, development and tests; production tokens may also come from the brand's
//! identity provider, signed with the same key. `--keygen` makes the region's Ed25519
//! key pair; `--revoke` voids an agent's tokens (AgentDesk's `RevokeTokens`, as an admin).

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use helpline_domain::AgentId;
use helpline_region::Role;

use helpline_proto::v1 as pb;
use helpline_proto::v1::agent_desk_client::AgentDeskClient;

use crate::config::Config;
use crate::desk::Authorized;

#[derive(Debug, Args)]
pub struct AgentTokenArgs {
    /// The agent, as `[[agents]] id` names them.
    #[arg(long, required_unless_present = "keygen")]
    agent: Option<String>,
    /// Prints a new Ed25519 key pair for `[auth]`: the verify key (every service) and the
    /// signing key (only where tokens are issued), and exits.
    #[arg(long, conflicts_with_all = ["agent", "revoke"])]
    keygen: bool,
    /// Voids every token of the agent issued until now, everywhere within seconds
    /// (AgentDesk's `RevokeTokens`; takes an admin).
    #[arg(long)]
    revoke: bool,
    /// The AgentDesk API, for `--revoke`.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    /// An admin's token, for `--revoke`; without it, one is signed with the configured key.
    #[arg(long)]
    token: Option<String>,
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

pub async fn run(config: &Config, args: &AgentTokenArgs) -> anyhow::Result<()> {
    if args.keygen {
        let (verify, signing) = helpline_assignment::AuthKey::generate_ed25519()?;
        println!("# [auth] of every service (HELPLINE_AUTH__VERIFY_KEY): not a secret");
        println!("verify_key = \"{verify}\"");
        println!("# only where tokens are issued (HELPLINE_AUTH__SIGNING_KEY): a secret");
        println!("signing_key = \"{signing}\"");
        return Ok(());
    }
    let Some(agent) = &args.agent else {
        anyhow::bail!("--agent names whose token this is");
    };
    let region = config.region();
    if region.agent(&AgentId::new(agent.as_str())).is_none() {
        anyhow::bail!(
            "no agent {agent:?} in the region's [[agents]]; the API would refuse the token"
        );
    }
    if args.revoke {
        return revoke(config, args, agent).await;
    }
    let key = config.auth.key()?;
    let token = helpline_assignment::auth::issue(
        &key,
        agent,
        args.role.into(),
        Duration::from_secs(args.ttl_secs),
        SystemTime::now(),
    )
    .context("cannot sign the token")?;
    println!("{token}");
    Ok(())
}

async fn revoke(config: &Config, args: &AgentTokenArgs, agent: &str) -> anyhow::Result<()> {
    let token = match &args.token {
        Some(token) => token.clone(),
        None => admin_token(config, None)?,
    };
    let authorized = Authorized::connect("AgentDesk", &args.grpc, &token).await?;
    let mut desk = AgentDeskClient::new(authorized.channel());
    let answer = desk
        .revoke_tokens(authorized.request(pb::RevokeTokensRequest {
            agent_id: agent.to_owned(),
        }))
        .await
        .map_err(|status| anyhow::anyhow!("{}: {}", status.code(), status.message()))?
        .into_inner();
    let until = answer.revoked_until.map_or(0, |t| t.seconds);
    println!("{agent}: tokens issued until {until} (Unix seconds) are void");
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
