//! `helpline`: the one binary. It parses the command line, loads the configuration (exit
//! code 2 when it is bad), starts telemetry, and runs a sub-command. Everything else lives
//! in the library crates; this file only wires them together.

#![forbid(unsafe_code)]

mod all;
mod bench;
mod chat;
mod config;
mod dev;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use helpline_eventstore::EventStore;
use helpline_telemetry::LogFormat;

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
    /// Run every service in one process: today the channel gateway (webhooks in on
    /// `ingress.listen`, egress out), with the `/healthz` and `/readyz` probes.
    All,
    /// Run the channel gateway: provider webhooks on `ingress.listen` and egress to the
    /// providers, with the `/healthz` and `/readyz` probes.
    Ingress,
    /// Create or update the region's streams and KV buckets on the configured NATS
    /// (idempotent; run before the services start, e.g. as a Kubernetes Job).
    Ensure,
    /// Measure the system against raw JetStream on a nats-server child with a temporary
    /// store: pipelined publish and replay ceilings, webhook ingest through the real
    /// router, and single-ticket loads; prints a Markdown table and writes a JSON report.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest and async-nats share ring as rustls's provider; installing it once keeps a
    // second provider from ever being chosen. An earlier install is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("helpline: {e}");
            return ExitCode::from(2);
        }
    };
    let format = match cli.log_format {
        LogStyle::Json => LogFormat::Json,
        LogStyle::Pretty => LogFormat::Pretty,
        LogStyle::Auto if std::io::stderr().is_terminal() => LogFormat::Pretty,
        LogStyle::Auto => LogFormat::Json,
    };
    let _telemetry = match helpline_telemetry::init("helpline", format) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("helpline: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("helpline: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command, config));
    // A read of the terminal (the dev chat) blocks a runtime thread until a line comes;
    // it holds nothing that needs finishing, so it is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "helpline stopped");
            eprintln!("helpline: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, mut config: Config) -> anyhow::Result<()> {
    match command {
        Command::Dev {
            data_dir,
            nats_port,
            http_port,
        } => {
            if let Some(dir) = data_dir {
                config.dev.data_dir = dir;
            }
            if let Some(port) = nats_port {
                config.dev.nats_port = port;
            }
            let port = http_port.unwrap_or(config.ingress.listen.port());
            config.ingress.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            dev::run(config).await
        }
        Command::All | Command::Ingress => all::run(config).await,
        Command::Simulate { listen, ingress } => simulate(listen, ingress).await,
        Command::Bench(args) => bench::run(args, config.store()).await,
        Command::Ensure => {
            let client = async_nats::connect(&config.nats.url)
                .await
                .with_context(|| format!("cannot connect to NATS at {}", config.nats.url))?;
            let store = EventStore::ensure(client, config.store()).await?;
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

async fn simulate(listen: std::net::SocketAddr, ingress: String) -> anyhow::Result<()> {
    let sim = helpline_testkit::Simulator::start_on(listen, Default::default())
        .await
        .with_context(|| format!("cannot start the simulator on {listen}"))?;
    println!("# channel simulator on {}", sim.base_url());
    println!("# point helpline at it with this configuration:\n");
    println!("{}", chat::simulated_channels_toml(&sim));
    println!("{}", chat::HOW_TO_CHAT);
    let stop = tokio_util::sync::CancellationToken::new();
    let chat = tokio::spawn(chat::run(std::sync::Arc::new(sim), ingress, stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    let _ = chat.await;
    Ok(())
}

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
