//! `helpline dev`: the embedded default. nats-server runs as a child process with its
//! store under the dev data folder; it is stopped with helpline, so Ctrl-C leaves nothing
//! running.

use std::sync::Arc;

use anyhow::Context as _;
use helpline_eventstore::EventStore;
use helpline_testkit::{NatsServer, Simulator};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::{all, chat};

/// Runs until Ctrl-C. `log` is where the services' log lines go, when not to the terminal.
pub async fn run(mut config: Config, log: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let data_dir = std::path::absolute(&config.dev.data_dir)
        .with_context(|| format!("bad data folder {}", config.dev.data_dir.display()))?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let mut nats = NatsServer::builder()
        .port(config.dev.nats_port)
        .store_dir(data_dir.join("jetstream"))
        .log_file(data_dir.join("nats-server.log"))
        .start()
        .await
        .with_context(|| {
            format!(
                "cannot start nats-server on port {} (is another one running? try --nats-port)",
                config.dev.nats_port
            )
        })?;
    config.nats.url = nats.url();

    let result = serve(&config, &nats, log.as_deref()).await;
    if let Err(e) = nats.stop().await {
        tracing::warn!(error = %e, "nats-server did not stop cleanly");
    }
    println!("helpline dev stopped; data kept in {}", data_dir.display());
    result
}

/// The console password of every agent of a local run that has none set.
pub const DEV_PASSWORD: &str = "helpline-dev-password";

async fn serve(
    config: &Config,
    nats: &NatsServer,
    log: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let client = nats
        .connect()
        .await
        .context("cannot connect to nats-server")?;
    let store = EventStore::ensure(client, config.store()?).await?;
    let sim = Arc::new(
        Simulator::start(Default::default())
            .await
            .context("cannot start the channel simulator")?,
    );
    let mut config = config.clone();
    config.channels =
        chat::simulated_channels(&sim).context("simulator channels do not fit the config")?;
    // The simulator serves every provider's media from its own origin, on loopback; the
    // web chat's also come from the console (the widget's attachments).
    config.ingress.media_hosts =
        helpline_ingress::media_policy::MediaHostsConfig::everywhere(&[sim.base_url()]);
    config.ingress.media_hosts.add(
        helpline_domain::Channel::WebChat,
        format!("http://127.0.0.1:{}", config.console.listen.port()),
    );
    // Locally nothing listens beyond loopback.
    config.ops.listen.set_ip([127, 0, 0, 1].into());
    config.grpc.listen.set_ip([127, 0, 0, 1].into());
    config.console.listen.set_ip([127, 0, 0, 1].into());
    // The web chat's replies reach the console's widget, which passes those of the
    // simulator's sessions (typed `web …` here) on to the simulator.
    if let Some(web) = config.channels.web.as_mut() {
        config.console.widget_forward_url = Some(std::mem::replace(
            &mut web.callback_url,
            format!(
                "http://127.0.0.1:{}/widget/callback",
                config.console.listen.port()
            ),
        ));
    }
    let credentials = helpline_console::Credentials::open(
        store.jetstream(),
        &store.layout().credentials_bucket(),
    )
    .await?;
    // A local run's agents sign in to the console with one known password, as a local
    // run's tokens are signed with the public development key; one set on purpose
    // (`helpline agent passwd`) is kept.
    for agent in &config.agents {
        if !credentials.is_set(agent.id.as_str()).await? {
            credentials.set(agent.id.as_str(), DEV_PASSWORD).await?;
        }
    }
    let layout = store.layout();
    println!("helpline dev is running");
    println!("  region        {}", layout.region());
    println!(
        "  nats          {} (pid {}, store {}, log {})",
        nats.url(),
        nats.pid().unwrap_or_default(),
        nats.store_dir().display(),
        nats.log_file().display()
    );
    println!(
        "  event stream  {} ({})",
        layout.event_stream(),
        layout.event_subjects().join(", ")
    );
    println!(
        "  dead letters  {} ({})",
        layout.dead_letter_stream(),
        layout.dead_letter_subjects()
    );
    println!("  buckets       {}", layout.buckets().join(", "));
    println!(
        "  webhooks      http://{}/webhooks/{{channel}}",
        config.ingress.listen
    );
    println!(
        "  gRPC          {} (Routing, Feedback, AgentDesk, TicketQuery, health, reflection)",
        config.grpc.listen
    );
    println!(
        "  probes        http://{0}/healthz, http://{0}/readyz, http://{0}/metrics",
        config.ops.listen
    );
    println!(
        "  console       http://{} (agents sign in with their id, e.g. anna, and the password {DEV_PASSWORD})",
        config.console.listen
    );
    println!(
        "  web chat      http://{}/widget/demo (a service page with the widget; a site embeds http://{}/widget.js)",
        config.console.listen, config.console.listen
    );
    println!(
        "  simulator     {} (plays the messaging providers)",
        sim.base_url()
    );
    match log {
        Some(log) => println!(
            "  logs          {} (`helpline dev --log-to-terminal` shows them here)",
            log.display()
        ),
        None => println!("  logs          this terminal"),
    }
    println!("{}", chat::how_to_chat());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let url = format!("http://{}", config.ingress.listen);
    let services = tokio::spawn(all::run_until_stopped(
        config,
        all::Services::ALL,
        Some(ready_tx),
    ));
    let stop = CancellationToken::new();
    let chat = if ready_rx.await.is_ok() {
        println!("ready; press Ctrl-C to stop");
        Some(tokio::spawn(chat::run(sim.clone(), url, stop.clone())))
    } else {
        None
    };
    // The services run until Ctrl-C or SIGTERM.
    let result = services.await.context("services task failed")?;
    stop.cancel();
    if let Some(chat) = chat {
        let _ = chat.await;
    }
    tracing::info!("shutting down");
    result
}
