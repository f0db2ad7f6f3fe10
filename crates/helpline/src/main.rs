//! `helpline`: the one binary. It parses the command line, loads the configuration (exit
//! code 2 when it is bad), starts telemetry, and runs a sub-command. Everything else lives
//! in the library crates; this file only wires them together.

// `deny`, not `forbid`: one call (`collect_freed`) is allowed, nothing else.
#![deny(unsafe_code)]

mod agent_chat;
mod agent_passwd;
mod agent_token;
mod all;
mod chat;
mod config;
mod config_check;
mod config_show;
mod demo;
mod desk;
mod dev;
mod dlq;
mod grpc_door;
mod nats;
mod notify;
mod privacy;
mod rebuild;
mod report;
mod revocations;
mod secrets;
mod tickets;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use helpline_eventstore::EventStore;
use helpline_telemetry::{LogFormat, LogWriter};

/// mimalloc rather than the system allocator: under load the services allocate from many
/// threads at once, and glibc's malloc spent about a third of the CPU of `helpline bench`'s
/// end-to-end phase in allocation and its arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::all::Services;
use crate::config::Config;

/// helpline: event-sourced customer service over messaging apps, on NATS JetStream.
#[derive(Debug, Parser)]
#[command(name = "helpline", version, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML); `HELPLINE_*` environment variables override it.
    #[arg(long, global = true, env = "HELPLINE_CONFIG")]
    config: Option<PathBuf>,

    /// Log format: human-readable on a terminal, JSON lines otherwise.
    #[arg(long, global = true, value_enum, default_value_t = LogStyle::Auto)]
    log_format: LogStyle,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogStyle {
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run helpline locally: starts nats-server as a child process (data in the dev data
    /// folder), creates the region's streams and buckets, runs every service with the
    /// channel simulator in place of the providers, and lets you chat as a customer in the
    /// terminal, until Ctrl-C.
    Dev {
        /// Folder for the nats-server store and log [default: .helpline].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Client port of the embedded nats-server [default: 4222].
        #[arg(long)]
        nats_port: Option<u16>,
        /// Port of the webhook and probe server, on 127.0.0.1 [default: the port of
        /// `ingress.listen`, 8080].
        #[arg(long)]
        http_port: Option<u16>,
        /// Write the services' log lines to the terminal too; by default they go to
        /// `helpline.log` in the data folder, and the terminal shows the conversation.
        #[arg(long)]
        log_to_terminal: bool,
    },
    /// Play the messaging providers on localhost and chat as a customer from the terminal:
    /// prints the `[channels.*]` configuration that points helpline at the simulator, sends
    /// each typed line as a signed webhook, and prints what customers receive.
    Simulate {
        /// Where the simulator serves the providers' APIs.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// helpline's webhook server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        ingress: String,
    },
    /// Run every service in one process: the channel gateway (webhooks on
    /// `ingress.listen`, egress), the bot, routing, feedback and assignment, their gRPC APIs on
    /// `grpc.listen`, and `/healthz`, `/readyz`, `/metrics` on `ops.listen`.
    All,
    /// Run the channel gateway: provider webhooks on `ingress.listen` and egress to the
    /// providers.
    Ingress,
    /// Run the first-contact bot: greets, collects product, serial number and problem,
    /// hands over; closes silent conversations.
    Bot,
    /// Run routing: hands-over go to a queue or the nearest service store; the Routing
    /// gRPC API on `grpc.listen`.
    Routing,
    /// Run feedback: ratings in, tickets closed; the Feedback (CSAT) gRPC API on
    /// `grpc.listen`.
    Feedback,
    /// Run assignment: offers queued tickets to agents by skill, capacity and idle time;
    /// the AgentDesk gRPC API on `grpc.listen`.
    Assignment,
    /// Print a bearer token for the AgentDesk API, signed with the configured key (the
    /// development key when none is configured), for development and tests.
    AgentToken(agent_token::AgentTokenArgs),
    /// Agents' console accounts: `passwd` sets an agent's password.
    Agent {
        #[command(subcommand)]
        command: agent_passwd::AgentCommand,
    },
    /// Run the agent console for browsers on `console.listen`: its pages, sign-in, and
    /// gRPC-Web to the AgentDesk, TicketQuery and Feedback APIs (`console.*_url`).
    Console,
    /// Run the query service: the ticket projection, replayed from the log and followed;
    /// the TicketQuery gRPC API on `grpc.listen`.
    Query,
    /// Read tickets through the TicketQuery API: `show ID`, `timeline ID`, `list`.
    Tickets(tickets::TicketsArgs),
    /// Supervisors' reports through the Reports API: `csat`, `sla` (`--by queue`,
    /// `--period week`, `--csv`).
    Report(report::ReportArgs),
    /// Customers' personal data: `erase` and `export` (through the admin-only Privacy
    /// API), `retention` (once, now), `serve` (the privacy service).
    Privacy {
        #[command(subcommand)]
        command: privacy::PrivacyCommand,
    },
    /// Notifications, the brand writing first (through the Notifications API): `send`,
    /// `campaign FILE`, `opt-in`, `opt-out`, `consent`; `serve` runs the API.
    Notify(notify::NotifyArgs),
    /// Replay the whole log into a fresh projection, with progress on stderr, and print
    /// how long it took.
    Rebuild {
        #[arg(value_enum)]
        projection: rebuild::ProjectionName,
    },
    /// Inspect and replay dead letters: events a consumer could not handle.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Create or update the region's streams and KV buckets on the configured NATS
    /// (idempotent; run before the services start, e.g. as a Kubernetes Job).
    Ensure,
    /// Play one scripted conversation end to end on a private nats-server and the channel
    /// simulator: the bot's intake, the handoff, an agent on the AgentDesk API, the
    /// resolution and the rating; then print the transcript and the ticket's timeline.
    Demo,
    /// Chat in the terminal: `chat agent --agent anna` works tickets through the
    /// AgentDesk API of a running helpline; `chat customer` plays customers through the
    /// channel simulator (as `helpline simulate`).
    Chat {
        #[command(subcommand)]
        role: ChatRole,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Measure the system against raw JetStream on nats-server children with temporary
    /// stores (default sync, then `sync_interval: always`): publish and replay ceilings,
    /// webhook ingest, end to end, rebuild, single-ticket loads and memory; prints a
    /// Markdown table with the targets and writes a JSON report.
    Bench(helpline_bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum ChatRole {
    /// Be an agent: offers and customer messages appear as they come; type commands.
    Agent {
        /// The agent, as `[[agents]] id` names them; the token is signed with the
        /// configured key.
        #[arg(long)]
        agent: String,
        /// The AgentDesk API (`grpc.listen` of `helpline dev` or `helpline all`).
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        grpc: String,
    },
    /// Be customers: the simulator plays the providers; each typed line is a webhook.
    Customer {
        /// Where the simulator serves the providers' APIs.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// helpline's webhook server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        ingress: String,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a region configuration file as it stands (without `HELPLINE_*`
    /// variables): prints `FILE:LINE: KEY: PROBLEM` for each problem and exits with 2, or
    /// says it is fine and exits with 0.
    Check { file: PathBuf },
    /// Print the configuration a process would run with (`--config` and the `HELPLINE_*`
    /// variables over the region's built-in file and the defaults), one key per line with
    /// the layer its value came from; secrets are printed as `***`. Exits with 2 when the
    /// configuration would stop a process, after printing it and why.
    Show,
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Command::Config {
        command: ConfigCommand::Check { file },
    } = &cli.command
    {
        return check_config(file);
    }
    if let Command::Config {
        command: ConfigCommand::Show,
    } = &cli.command
    {
        return show_config(cli.config.as_deref());
    }
    // reqwest and async-nats share ring as rustls's provider; installing it once keeps a
    // second provider from ever being chosen. An earlier install is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Without a file this is a local run on the shipped region, and `helpline dev` is
    // local by definition: both may use the public development keys. A process given a
    // file is a deployment, which refuses them (`secrets`).
    let local = cli.config.is_none() || matches!(cli.command, Command::Dev { .. });
    let loaded = Config::load(cli.config.as_deref()).and_then(|mut config| {
        if local {
            config.auth.allow_dev_key = true;
            config.privacy.allow_dev_key = true;
            Ok((config, Vec::new()))
        } else {
            let warnings = secrets::check_deployment(&config)?;
            Ok((config, warnings))
        }
    });
    let (config, warnings) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("helpline: {e}");
            return ExitCode::from(2);
        }
    };
    // `helpline dev` keeps the terminal for the conversation: its log lines go to a file.
    let dev_log = match &cli.command {
        Command::Dev {
            data_dir,
            log_to_terminal: false,
            ..
        } => Some(
            data_dir
                .clone()
                .unwrap_or_else(|| config.dev.data_dir.clone())
                .join("helpline.log"),
        ),
        _ => None,
    };
    let format = match cli.log_format {
        LogStyle::Json => LogFormat::Json,
        LogStyle::Pretty => LogFormat::Pretty,
        LogStyle::Auto if dev_log.is_some() || std::io::stderr().is_terminal() => LogFormat::Pretty,
        LogStyle::Auto => LogFormat::Json,
    };
    let (log_writer, dev_log) = match dev_log.as_deref().map(open_log) {
        Some(Ok(file)) => (LogWriter::File(file), dev_log),
        Some(Err(e)) => {
            eprintln!("helpline: logging to the terminal: {e}");
            (LogWriter::Stderr, None)
        }
        None => (LogWriter::Stderr, None),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(give_back_freed_memory)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("helpline: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter's connection lives on the runtime.
    let telemetry = {
        let _runtime = runtime.enter();
        helpline_telemetry::init_to("helpline", format, log_writer)
    };
    let telemetry = match telemetry {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("helpline: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (key, problem) in &warnings {
        tracing::warn!(key, problem, "a secret not fit for a deployment");
    }
    let result = runtime.block_on(run(cli.command, config, dev_log));
    // Flushes the spans still batched while the exporter's runtime still runs.
    drop(telemetry);
    // A read of the terminal (the dev chat) blocks a runtime thread until a line comes;
    // it holds nothing that needs finishing, so it is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<UsageError>() => {
            eprintln!("helpline: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "helpline stopped");
            eprintln!("helpline: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the sub-command; `dev_log` is the file `helpline dev`'s log lines go to, if any.
async fn run(
    command: Command,
    mut config: Config,
    dev_log: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    match command {
        Command::Dev {
            data_dir,
            nats_port,
            http_port,
            log_to_terminal: _,
        } => {
            if let Some(dir) = data_dir {
                config.dev.data_dir = dir;
            }
            if let Some(port) = nats_port {
                config.dev.nats_port = port;
            }
            let port = http_port.unwrap_or(config.ingress.listen.port());
            config.ingress.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            dev::run(config, dev_log).await
        }
        Command::All => all::run(config, Services::ALL).await,
        Command::Ingress => {
            let services = Services {
                ingress: true,
                ..Services::NONE
            };
            all::run(config, services).await
        }
        Command::Bot => {
            let services = Services {
                bot: true,
                ..Services::NONE
            };
            all::run(config, services).await
        }
        Command::Routing => {
            let services = Services {
                routing: true,
                ..Services::NONE
            };
            all::run(config, services).await
        }
        Command::Feedback => {
            let services = Services {
                feedback: true,
                ..Services::NONE
            };
            all::run(config, services).await
        }
        Command::Assignment => {
            let services = Services {
                assignment: true,
                ..Services::NONE
            };
            all::run(config, services).await
        }
        Command::AgentToken(args) => agent_token::run(&config, &args).await,
        Command::Agent { command } => agent_passwd::run(&config, &command).await,
        Command::Console => {
            let services = Services {
                console: true,
                ..Services::NONE
            };
            all::run(config, services).await
        }
        Command::Query => {
            let services = Services {
                query: true,
                ..Services::NONE
            };
            all::run(config, services).await
        }
        Command::Tickets(args) => tickets::run(&config, args).await,
        Command::Report(args) => report::run(&config, args).await,
        Command::Privacy { command } => privacy::run(config, command).await,
        Command::Notify(args) => notify::run(config, args).await,
        Command::Rebuild { projection } => {
            rebuild::run(projection, &config.nats, config.store()?).await
        }
        Command::Dlq { command } => dlq::run(command, &config.nats, config.store()?).await,
        Command::Simulate { listen, ingress } => simulate(listen, ingress).await,
        Command::Chat {
            role: ChatRole::Customer { listen, ingress },
        } => simulate(listen, ingress).await,
        Command::Chat {
            role: ChatRole::Agent { agent, grpc },
        } => agent_chat::run(&config, &agent, &grpc).await,
        Command::Bench(args) => helpline_bench::run(args, config.store()?, config.region()).await,
        // Handled in `main`, before any configuration is loaded.
        Command::Config { .. } => Ok(()),
        Command::Demo => demo::run(config).await,
        Command::Ensure => {
            // Setting up streams and buckets seals nothing, so the setup Job runs without
            // the master key (least privilege); the configured one is used when present.
            config.privacy.allow_dev_key = true;
            let client = nats::connect(&config.nats).await?;
            let store = EventStore::ensure(client, config.store()?).await?;
            let layout = store.layout();
            println!(
                "ensured stream {} and {}, buckets {}",
                layout.event_stream(),
                layout.dead_letter_stream(),
                layout.buckets().join(", ")
            );
            Ok(())
        }
    }
}

/// The log file of `helpline dev`, appended to, its folder made if missing.
fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn show_config(file: Option<&std::path::Path>) -> ExitCode {
    let vars = match config::helpline_vars() {
        Ok(vars) => vars,
        Err(e) => {
            eprintln!("helpline: {e}");
            return ExitCode::from(2);
        }
    };
    match config_show::show(file, vars) {
        Ok((text, problem)) => {
            print!("{text}");
            match problem {
                None => ExitCode::SUCCESS,
                Some(problem) => {
                    eprintln!("helpline: {problem}");
                    ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            eprintln!("helpline: {e}");
            ExitCode::from(2)
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let findings = config_check::check(file);
    for finding in &findings {
        let line = finding.line.map(|l| format!("{l}:")).unwrap_or_default();
        let key = if finding.key.is_empty() {
            String::new()
        } else {
            format!(" {}:", finding.key)
        };
        let warning = if finding.warning { " warning:" } else { "" };
        eprintln!(
            "{}:{line}{key}{warning} {}",
            file.display(),
            finding.message
        );
    }
    if findings.iter().any(|finding| !finding.warning) {
        return ExitCode::from(2);
    }
    println!("{}: ok", file.display());
    ExitCode::SUCCESS
}

async fn simulate(listen: std::net::SocketAddr, ingress: String) -> anyhow::Result<()> {
    let sim = helpline_testkit::Simulator::start_on(listen, Default::default())
        .await
        .with_context(|| format!("cannot start the simulator on {listen}"))?;
    println!("# channel simulator on {}", sim.base_url());
    println!("# point helpline at it with this configuration:\n");
    println!("{}", chat::simulated_channels_toml(&sim));
    println!("{}", chat::how_to_chat());
    let stop = tokio_util::sync::CancellationToken::new();
    let chat = tokio::spawn(chat::run(std::sync::Arc::new(sim), ingress, stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    let _ = chat.await;
    Ok(())
}

/// A request the caller got wrong in a way clap cannot see (a malformed ticket id, ...):
/// exit code 2, like other usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub String);

/// Ctrl-C or SIGTERM, whichever comes first.
pub(crate) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

/// How the allocator serves a long-running service on few cores; measured with `helpline
/// bench` (docs/PERFORMANCE.md, "Memory and the allocator").
///
/// - **No transparent huge pages.** mimalloc marks the memory it maps `MADV_HUGEPAGE`, so
///   every first touch after a purge faults in and zeroes a whole 2 MiB page: under a
///   bursty load the kernel's page zeroing took a fifth of both cores in 300 ms bursts,
///   and every request in flight waited (webhook p99 at half the maximum rate 110–200
///   ms). `MIMALLOC_ALLOW_THP=1` in the environment keeps them.
/// - **Freed memory is given back after a second, not 10 ms** (mimalloc 3's default):
///   purging at once meant thousands of `madvise` calls and page faults a second for
///   memory that is used again right away. `MIMALLOC_PURGE_DELAY` in the environment wins.
fn tune_allocator() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // Best effort: without it the process only runs slower under bursts.
        let _ = nix::sys::prctl::set_thp_disable(true);
    }
    delay_purges();
}

#[allow(unsafe_code)]
fn delay_purges() {
    // `mi_option_purge_delay` of mimalloc 2 (include/mimalloc.h; the sys crate names no
    // constant for it). Set only while it holds its documented default of 10 ms, so that
    // an environment's MIMALLOC_PURGE_DELAY wins, and so that a renumbered option list in
    // a later mimalloc changes nothing rather than another option.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    const DEFAULT_MS: std::ffi::c_long = 10;
    const DELAY_MS: std::ffi::c_long = 1000;
    // SAFETY: both take and return plain integers; mimalloc documents options as
    // settable at any time from any thread.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) == DEFAULT_MS {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, DELAY_MS);
        }
    }
}

/// As a worker goes idle (at most once a second per worker), asks the allocator to give
/// the memory freed meanwhile back to the system. mimalloc otherwise returns it only when
/// the thread next does enough allocation work, which an idle process never does: after a
/// burst (a hundred stalled uploads) the RSS would stay at its peak for a minute.
fn give_back_freed_memory() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    let now = std::time::Instant::now();
    let due = LAST.with(|last| {
        let due = last
            .get()
            .is_none_or(|at| now.duration_since(at) >= std::time::Duration::from_secs(1));
        if due {
            last.set(Some(now));
        }
        due
    });
    if due {
        collect_freed();
    }
}

#[allow(unsafe_code)]
fn collect_freed() {
    // SAFETY: `mi_collect` takes no pointers and only tidies the calling thread's heap;
    // it may be called from any thread at any time (mimalloc's documented contract).
    unsafe { libmimalloc_sys::mi_collect(false) }
}
