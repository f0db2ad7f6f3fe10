//! `helpline agent passwd`: sets an agent's console password, kept only as an Argon2id
//! hash in the region's credentials bucket.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use helpline_eventstore::Layout;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Set an agent's console password: typed twice at a terminal (not shown), else read
    /// as one line from standard input. At least 12 characters.
    Passwd(PasswdArgs),
}

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The agent, as in `[[agents]]`.
    #[arg(long)]
    pub agent: String,
}

pub async fn run(config: &Config, command: &AgentCommand) -> anyhow::Result<()> {
    let AgentCommand::Passwd(args) = command;
    if !config
        .agents
        .iter()
        .any(|agent| agent.id.as_str() == args.agent)
    {
        return Err(crate::UsageError(format!(
            "no agent {} in [[agents]] of region {}",
            args.agent, config.region
        ))
        .into());
    }
    let password = read_password(&args.agent)?;
    let client = crate::nats::connect(&config.nats).await?;
    let js = async_nats::jetstream::new(client);
    let layout = Layout::new(&config.region)?;
    let credentials =
        helpline_console::Credentials::open(&js, &layout.credentials_bucket()).await?;
    credentials
        .set(&args.agent, &password)
        .await
        .map_err(|e| match e {
            helpline_console::CredentialsError::TooShort => {
                anyhow::Error::new(crate::UsageError(e.to_string()))
            }
            other => other.into(),
        })?;
    println!("the console password of {} is set", args.agent);
    Ok(())
}

fn read_password(agent: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = prompt_hidden(&format!("new console password for {agent}: "))?;
    let second = prompt_hidden("the same again: ")?;
    if first != second {
        return Err(crate::UsageError("the two passwords differ".to_owned()).into());
    }
    Ok(first)
}

/// Reads a line from the terminal with echo off, turning it back on whatever happens.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let before = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = before.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning the terminal's echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &before);
    eprintln!();
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
