//! Running services: `helpline all` runs every one in one process, `helpline <service>`
//! one of them, as docker-compose and Kubernetes run them.
//!
//! - `ops.listen`: `/healthz` answers while the process runs, `/readyz` only once its
//!   services run (the event store may first wait for `helpline ensure`) and while NATS is
//!   connected, JetStream answers and this process's projections (query, CSAT) have
//!   replayed the log, `/metrics` the pending events of this process's
//!   consumers (Prometheus text).
//! - ingress (`ingress.listen`): `/webhooks/{channel}` and the same probes; `503` until
//!   the event store is set up, so providers retry rather than lose a message. Egress
//!   runs with it.
//! - bot, routing, feedback: durable consumers over the region's ticket events.
//! - assignment: follows the region's stream, offers queued tickets to agents.
//! - query: the ticket projection, replayed from the log and followed (TicketQuery).
//! - `grpc.listen`: the gRPC APIs of the services in this process (Routing, Feedback,
//!   AgentDesk, TicketQuery), with `grpc.health.v1` and server reflection.
//!
//! Whichever service stops first stops the others: a failing service takes the process
//! down rather than leaving it half alive, and the orchestrator restarts it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use helpline_egress::{self as egress, EgressConfig};
use helpline_eventstore::EventStore;
use helpline_ingress::Ingress;
use helpline_ingress::media;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::Config;
use crate::shutdown_signal;

/// Which services a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Services {
    pub ingress: bool,
    pub bot: bool,
    pub routing: bool,
    pub feedback: bool,
    pub assignment: bool,
    pub query: bool,
    /// The Privacy API (erasure, export) and the region's retention runs.
    pub privacy: bool,
    /// The agent console for browsers, on `console.listen`.
    pub console: bool,
    /// The Notifications API: the brand writes first.
    pub notify: bool,
}

impl Services {
    pub const ALL: Services = Services {
        ingress: true,
        bot: true,
        routing: true,
        feedback: true,
        assignment: true,
        query: true,
        privacy: true,
        console: true,
        notify: true,
    };
    pub const NONE: Services = Services {
        ingress: false,
        bot: false,
        routing: false,
        feedback: false,
        assignment: false,
        query: false,
        privacy: false,
        console: false,
        notify: false,
    };

    /// The durable consumers these services read with, for `/metrics`.
    fn consumers(self) -> Vec<&'static str> {
        let mut consumers = Vec::new();
        if self.ingress {
            consumers.extend([egress::OUTBOUND_CONSUMER, media::MEDIA_CONSUMER]);
        }
        if self.bot {
            consumers.extend(["bot", "bot-timers"]);
        }
        if self.routing {
            consumers.push("routing");
        }
        if self.feedback {
            consumers.push("feedback");
        }
        consumers
    }
}

pub async fn run(config: Config, services: Services) -> anyhow::Result<()> {
    run_until_stopped(config, services, None).await
}

/// As [`run`]; `on_ready` fires once every service takes requests.
pub async fn run_until_stopped(
    config: Config,
    services: Services,
    on_ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    // Without its token key none of the authenticated APIs (every one but health and
    // reflection) may start at all, not even half; without the master key no service can
    // read or write events.
    let auth_key = match services.assignment
        || services.query
        || services.privacy
        || services.routing
        || services.feedback
        || services.console
        || services.notify
    {
        true => Some(config.auth.key()?),
        false => None,
    };
    config.privacy.master_key()?;
    // Pods may start before NATS does: keep trying, and stay unready meanwhile.
    let client = crate::nats::connect_retrying(&config.nats).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();

    let ops = Ops {
        client: client.clone(),
        stream: config.region.clone(),
        consumers: services.consumers(),
        partitions: config.eventstore.partitions,
        projections: Arc::default(),
        started: Arc::default(),
    };
    serve_http(
        &mut tasks,
        config.ops.listen,
        probes(ops.clone())
            .route("/metrics", get(metrics))
            .with_state(ops.clone()),
        config.ingress.door(),
        shutdown.clone(),
    )
    .await?;
    let webhooks: Arc<OnceLock<Router>> = Arc::default();
    if services.ingress {
        let app = probes(ops.clone())
            .with_state(ops.clone())
            .fallback(forward_to(webhooks.clone()));
        serve_http(
            &mut tasks,
            config.ingress.listen,
            app,
            config.ingress.door(),
            shutdown.clone(),
        )
        .await?;
    }
    tracing::info!(?services, nats = %crate::nats::redacted(&config.nats.url), "starting");

    let store = if config.eventstore.ensure_on_start {
        EventStore::ensure(client, config.store()?)
            .await
            .context("cannot set up the event store")?
    } else {
        // Set up by `helpline ensure`, a step of its own with the setup user: services
        // may not create or change streams.
        match open_when_set_up(client, config.store()?, &shutdown).await {
            Some(store) => store,
            None => return Ok(()),
        }
    };
    if let Some(key) = &auth_key {
        let following = crate::revocations::follow(
            store.jetstream().clone(),
            store.layout().revocations_bucket(),
            key.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            following.await;
            Ok(())
        });
    }
    let region = Arc::new(config.region());
    let flows = Arc::new(
        helpline_bot::flows::Flows::for_region(&region).context("cannot load the bot's flows")?,
    );
    if services.ingress {
        let ingress_config = helpline_ingress::IngressConfig {
            languages: region.locale.languages.clone(),
            ..config.ingress.clone()
        };
        let ingress = Ingress::new(store.clone(), &ingress_config, &config.channels)
            .await
            .context("cannot start the channel gateway")?;
        // Attachments are fetched after the webhook's 200, from the log.
        let (media_store, media_config, media_shutdown) = (
            store.clone(),
            config
                .ingress
                .media(&config.channels)
                .context("cannot read the media settings")?,
            shutdown.clone(),
        );
        tasks.spawn(async move {
            media::run(media_store, media_config, media_shutdown)
                .await
                .context("the media consumer failed")
        });
        let egress_config = EgressConfig {
            channels: config.channels.clone(),
            whatsapp_template: config.egress.whatsapp_template.clone(),
            whatsapp_rating_template: config.egress.whatsapp_rating_template.clone(),
            viber_sender_name: config.egress.viber_sender_name.clone(),
            notification_rate_limits: config.egress.notification_rates()?,
            ..EgressConfig::default()
        };
        let (store, shutdown) = (store.clone(), shutdown.clone());
        tasks.spawn(async move {
            egress::run(store, egress_config, shutdown)
                .await
                .context("egress failed")
        });
        tracing::info!(?ingress, "channel gateway ready");
        // Set once, here; nothing else writes it.
        let _ = webhooks.set(ingress.router());
    }
    if services.bot {
        let (store, region, flows, shutdown) = (
            store.clone(),
            region.clone(),
            flows.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            helpline_bot::run(store, region, flows, shutdown)
                .await
                .context("bot failed")
        });
    }
    if services.routing {
        let (store, region, shutdown) = (store.clone(), region.clone(), shutdown.clone());
        tasks.spawn(async move {
            helpline_routing::run(store, region, shutdown)
                .await
                .context("routing failed")
        });
    }
    if services.feedback {
        let (store, flows, shutdown) = (store.clone(), flows.clone(), shutdown.clone());
        tasks.spawn(async move {
            helpline_feedback::run(store, flows, shutdown)
                .await
                .context("feedback failed")
        });
    }
    let assignment = if services.assignment
        && let Some(key) = auth_key.clone()
    {
        let assignment = helpline_assignment::Assignment::new(
            store.clone(),
            region.clone(),
            flows.clone(),
            config.assignment.settings(),
        );
        let (running, shutdown) = (assignment.clone(), shutdown.clone());
        tasks.spawn(async move { running.run(shutdown).await.context("assignment failed") });
        Some((assignment, key))
    } else {
        None
    };
    let csat = helpline_feedback::Csat::default();
    let levels = helpline_feedback::levels_for_region(region.clone());
    if services.feedback {
        let replayed = csat.clone();
        ops.watch_projection("csat", Arc::new(move || replayed.is_replayed()));
        // One reader of the log for both projections.
        let both = helpline_feedback::Projections {
            csat: csat.clone(),
            levels: levels.clone(),
        };
        let (following, stop) = (store.clone(), shutdown.clone());
        tasks.spawn(async move {
            // Ends only at shutdown: a lost log is resumed inside.
            both.follow(&following, stop).await;
            Ok(())
        });
        let replayed = levels.clone();
        ops.watch_projection("service-levels", Arc::new(move || replayed.is_replayed()));
        let (watching, watched, stop) = (store.clone(), levels.clone(), shutdown.clone());
        tasks.spawn(async move {
            helpline_feedback::watch_service_levels(
                watching,
                watched,
                Arc::new(std::time::SystemTime::now),
                stop,
            )
            .await;
            Ok(())
        });
    }
    let tickets = helpline_query::LiveProjection::default();
    if services.query {
        let replayed = tickets.clone();
        ops.watch_projection("query", Arc::new(move || replayed.is_replayed()));
        let (store, tickets, shutdown) = (store.clone(), tickets.clone(), shutdown.clone());
        tasks.spawn(async move {
            // Ends only at shutdown: a lost log is resumed inside.
            tickets.follow(&store, shutdown).await;
            Ok(())
        });
    }
    let privacy = match (services.privacy, auth_key.clone()) {
        (true, Some(key)) => {
            let privacy = helpline_privacy::Privacy::new(store.clone());
            let (running, shutdown) = (privacy.clone(), shutdown.clone());
            let (period, every) = (
                config.privacy.retention(),
                Duration::from_secs(u64::from(config.privacy.retention_every_hours.max(1)) * 3600),
            );
            tasks.spawn(async move {
                retain(running, period, every, shutdown).await;
                Ok(())
            });
            Some((privacy, key))
        }
        _ => None,
    };
    let mut console_key = auth_key.clone().filter(|_| services.console);
    if let Some(why) = console_key
        .as_ref()
        .and_then(|key| console_cannot_run(&config, key))
    {
        // Asked for on its own, the console must run; as part of a process that runs
        // other services (which verify tokens with the public key alone, or serve gRPC
        // over TLS), it steps aside and says why.
        if services
            == (Services {
                console: true,
                ..Services::NONE
            })
        {
            anyhow::bail!("{why}");
        }
        tracing::warn!("the console is not started: {why}");
        console_key = None;
    }
    let notifier = match (services.notify, auth_key.clone()) {
        (true, Some(key)) => {
            let notifier = helpline_notify::Notifier::new(
                store.clone(),
                region.clone(),
                flows.clone(),
                region.notifications.channels().unwrap_or_else(|| {
                    helpline_channels::CHANNELS
                        .iter()
                        .copied()
                        .filter(|channel| config.channels.is_configured(*channel))
                        .collect()
                }),
            )
            .await
            .context("cannot start the Notifications API")?;
            Some((notifier, key))
        }
        _ => None,
    };
    if services.routing
        || services.feedback
        || services.assignment
        || services.query
        || services.privacy
        || services.notify
    {
        let apis = Apis {
            store: store.clone(),
            region: region.clone(),
            csat,
            levels,
            tickets,
            auth_key,
            assignment,
            privacy,
            notifier,
        };
        serve_grpc(&mut tasks, &config.grpc, apis, services, shutdown.clone()).await?;
    }
    if let Some(key) = console_key {
        let console = console(&config, key, &store, services).await?;
        serve_http(
            &mut tasks,
            config.console.listen,
            helpline_console::router(Arc::new(console)),
            config.ingress.door(),
            shutdown.clone(),
        )
        .await?;
        tracing::info!(listen = %config.console.listen, "console ready");
    }
    ops.started.store(true, Ordering::Release);
    if let Some(on_ready) = on_ready {
        let _ = on_ready.send(());
    }

    let mut result = Ok(());
    while let Some(finished) = tasks.join_next().await {
        shutdown.cancel();
        let outcome = finished
            .context("service task failed")
            .and_then(|outcome| outcome);
        if let Err(e) = outcome
            && result.is_ok()
        {
            result = Err(e);
        }
    }
    tracing::info!("shut down");
    result
}

/// Why the console cannot run with this configuration, if it cannot.
fn console_cannot_run(config: &Config, key: &helpline_assignment::AuthKey) -> Option<&'static str> {
    let urls_unset = config.console.agent_desk_url.is_none()
        || config.console.query_url.is_none()
        || config.console.feedback_url.is_none();
    if !key.can_sign() {
        Some(
            "the console signs agents in and needs auth.signing_key (or auth.jwt_secret), not only auth.verify_key",
        )
    } else if config.grpc.tls_cert_file.is_some() && urls_unset {
        Some(
            "the gRPC port speaks TLS: name the services as the console reaches them, console.agent_desk_url, console.query_url and console.feedback_url (https://<a name in the certificate>:<port>), with console.tls_ca_file",
        )
    } else {
        None
    }
}

/// The console, reaching each gRPC service at its configured URL or, unset, at this
/// process's own gRPC port when this process serves that API.
async fn console(
    config: &Config,
    key: helpline_assignment::AuthKey,
    store: &EventStore,
    services: Services,
) -> anyhow::Result<helpline_console::Console> {
    // Unset: this process's own gRPC port, plain (`console_cannot_run` has made sure it
    // is).
    let own = format!("http://127.0.0.1:{}", config.grpc.listen.port());
    let channel = |key: &str,
                   url: &Option<String>,
                   served_here: bool|
     -> anyhow::Result<tonic::transport::Channel> {
        let url = match url {
            Some(url) => url.clone(),
            None if served_here => own.clone(),
            None => anyhow::bail!(
                "console.{key} is not set, and this process does not serve that API: name the service's gRPC address (http://assignment:50051, say)"
            ),
        };
        let endpoint = tonic::transport::Channel::from_shared(url.clone())
            .with_context(|| format!("console.{key}: not a URL: {url}"))?
            .connect_timeout(Duration::from_secs(5));
        let endpoint = if url.starts_with("https://") {
            let Some(ca) = &config.console.tls_ca_file else {
                anyhow::bail!(
                    "console.{key}: {url} speaks TLS: set console.tls_ca_file to the CA certificate that signed the service's"
                );
            };
            let pem = std::fs::read(ca)
                .with_context(|| format!("console.tls_ca_file: cannot read {}", ca.display()))?;
            endpoint
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(pem)),
                )
                .with_context(|| format!("console.{key}: TLS for {url}"))?
        } else if url.starts_with("http://") {
            endpoint
        } else {
            anyhow::bail!("console.{key}: {url}: name the service as http://… or https://…");
        };
        Ok(endpoint.connect_lazy())
    };
    let upstreams = helpline_console::Upstreams {
        agent_desk: channel(
            "agent_desk_url",
            &config.console.agent_desk_url,
            services.assignment,
        )?,
        ticket_query: channel("query_url", &config.console.query_url, services.query)?,
        feedback: channel(
            "feedback_url",
            &config.console.feedback_url,
            services.feedback,
        )?,
    };
    let credentials = helpline_console::Credentials::open(
        store.jetstream(),
        &store.layout().credentials_bucket(),
    )
    .await?;
    let console = helpline_console::Console::new(
        key,
        credentials,
        &config.agents,
        Duration::from_secs(config.console.session_ttl_secs),
        upstreams,
    );
    let Some(web) = &config.channels.web else {
        tracing::info!("no [channels.web]: the console serves no web-chat widget");
        return Ok(console);
    };
    let webhook_url = match &config.console.widget_webhook_url {
        Some(url) => url.clone(),
        None if services.ingress => format!(
            "http://127.0.0.1:{}/webhooks/web",
            config.ingress.listen.port()
        ),
        None => anyhow::bail!(
            "console.widget_webhook_url is not set, and this process serves no webhooks: name ingress's web chat webhook (http://ingress:8080/webhooks/web, say)"
        ),
    };
    let widget =
        helpline_console::Widget::new(
            helpline_console::WidgetSettings {
                shared_secret: web.shared_secret.expose().to_owned(),
                webhook_url,
                forward_url: config.console.widget_forward_url.clone(),
                origins: config.console.widget_origins.clone(),
                upload_base_url: config.console.widget_upload_url.clone().unwrap_or_else(|| {
                    format!("http://127.0.0.1:{}", config.console.listen.port())
                }),
                max_upload_bytes: config.console.widget_max_upload_bytes,
            },
            store.clone(),
        )
        .context("the web-chat widget's HTTP client")?;
    Ok(console.with_widget(widget))
}

/// Runs retention every `every`, the first time a minute after start; a failed run is
/// logged and tried again at the next.
async fn retain(
    privacy: helpline_privacy::Privacy,
    period: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut next = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(next) => {}
        }
        if let Err(e) = privacy.retention(period).await {
            tracing::warn!(error = %e, "retention run failed; trying again at the next");
        }
        next = every;
    }
}

/// Opens the event store once its streams and buckets exist, trying every two seconds;
/// `None` when the process is stopped first.
async fn open_when_set_up(
    client: async_nats::Client,
    store_config: helpline_eventstore::StoreConfig,
    shutdown: &CancellationToken,
) -> Option<EventStore> {
    const PAUSE: Duration = Duration::from_secs(2);
    let mut waited = Duration::ZERO;
    loop {
        match EventStore::open(client.clone(), store_config.clone()).await {
            Ok(store) => return Some(store),
            // Said at once, then every half minute.
            Err(e) if waited.as_secs().is_multiple_of(30) => tracing::warn!(
                error = %e,
                waited_secs = waited.as_secs(),
                "the event store is not set up yet (`helpline ensure`); waiting"
            ),
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(PAUSE) => waited += PAUSE,
        }
    }
}

async fn serve_http(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    listen: std::net::SocketAddr,
    app: Router,
    door: helpline_ingress::front_door::Door,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tasks.spawn(async move {
        helpline_ingress::front_door::serve(listener, app, door, shutdown)
            .await
            .with_context(|| format!("http server on {listen} failed"))
    });
    Ok(())
}

/// What the gRPC APIs read.
struct Apis {
    store: EventStore,
    region: Arc<helpline_region::RegionConfig>,
    csat: helpline_feedback::Csat,
    levels: helpline_feedback::Levels,
    tickets: helpline_query::LiveProjection,
    /// The key bearer tokens are checked with, when an authenticated API runs here.
    auth_key: Option<helpline_assignment::AuthKey>,
    /// The assignment service and the key of AgentDesk tokens, when it runs here.
    assignment: Option<(
        helpline_assignment::Assignment,
        helpline_assignment::AuthKey,
    )>,
    /// Erasure and export, and the key of admin tokens, when privacy runs here.
    privacy: Option<(helpline_privacy::Privacy, helpline_assignment::AuthKey)>,
    /// Notifications, and the key of supervisors' tokens, when notify runs here.
    notifier: Option<(helpline_notify::Notifier, helpline_assignment::AuthKey)>,
}

async fn serve_grpc(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    grpc: &crate::config::GrpcConfig,
    apis: Apis,
    services: Services,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listen = grpc.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Reflection in both versions: grpcurl and current clients ask v1, Python's
    // grpcio-reflection and older tools only v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(helpline_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build gRPC reflection")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(helpline_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("cannot build gRPC reflection (v1alpha)")?;
    let mut server = tonic::transport::Server::builder()
        .timeout(Duration::from_secs(grpc.request_timeout_secs))
        .max_concurrent_streams(grpc.max_concurrent_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(grpc.keepalive_secs.max(1))))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .http2_max_header_list_size(16 * 1024);
    if let Some(tls) = grpc.tls()? {
        server = server
            .tls_config(tls)
            .context("the gRPC port's TLS certificate or key cannot be used")?;
    }
    let mut router = server
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_v1alpha);
    if services.routing
        && let Some(key) = apis.auth_key.clone()
    {
        let service = helpline_routing::grpc_service(apis.store.clone(), apis.region.clone(), key);
        health_reporter
            .set_service_status("helpline.v1.Routing", tonic_health::ServingStatus::Serving)
            .await;
        router = router.add_service(service);
    }
    if services.feedback
        && let Some(key) = apis.auth_key.clone()
    {
        let service = helpline_feedback::grpc_service(
            apis.store.clone(),
            apis.csat.clone(),
            apis.region.clone(),
            key.clone(),
        );
        health_reporter
            .set_service_status("helpline.v1.Feedback", tonic_health::ServingStatus::Serving)
            .await;
        router = router.add_service(service);
        let reports = helpline_feedback::reports_service(
            apis.store.clone(),
            apis.csat,
            apis.levels,
            apis.region.clone(),
            key,
        );
        health_reporter
            .set_service_status("helpline.v1.Reports", tonic_health::ServingStatus::Serving)
            .await;
        router = router.add_service(reports);
    }
    if services.query
        && let Some(key) = apis.auth_key.clone()
    {
        let service = helpline_query::grpc_service(
            apis.store.clone(),
            apis.tickets,
            key,
            apis.region.clone(),
        );
        health_reporter
            .set_service_status(
                "helpline.v1.TicketQuery",
                tonic_health::ServingStatus::Serving,
            )
            .await;
        router = router.add_service(service);
    }
    if let Some((assignment, key)) = apis.assignment {
        let service = helpline_assignment::grpc_service(assignment, key);
        health_reporter
            .set_service_status(
                "helpline.v1.AgentDesk",
                tonic_health::ServingStatus::Serving,
            )
            .await;
        router = router.add_service(service);
    }
    if let Some((privacy, key)) = apis.privacy {
        let service = helpline_privacy::grpc_service(privacy, key, apis.region.clone());
        health_reporter
            .set_service_status("helpline.v1.Privacy", tonic_health::ServingStatus::Serving)
            .await;
        router = router.add_service(service);
    }
    if let Some((notifier, key)) = apis.notifier {
        let service = helpline_notify::grpc_service(notifier, key, apis.region.clone());
        health_reporter
            .set_service_status(
                "helpline.v1.Notifications",
                tonic_health::ServingStatus::Serving,
            )
            .await;
        router = router.add_service(service);
    }
    let incoming = crate::grpc_door::incoming(listener, grpc.door());
    tasks.spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await })
            .await
            .with_context(|| format!("gRPC server on {listen} failed"))
    });
    tracing::info!(%listen, "gRPC APIs ready");
    Ok(())
}

/// What the probes and `/metrics` look at.
#[derive(Clone)]
struct Ops {
    client: async_nats::Client,
    stream: String,
    consumers: Vec<&'static str>,
    /// Partitions of each consumer over the tickets (`<consumer>-<partition>`).
    partitions: u32,
    /// The in-memory projections of this process and whether each has replayed the log
    /// up to where it stood at start: until then their APIs would answer from a partial
    /// view, so the process is not ready.
    projections: Arc<std::sync::Mutex<Vec<(&'static str, ReplayCheck)>>>,
    /// Every service of the process runs. Not before: the event store may wait for
    /// `helpline ensure`, and the APIs listen only after it.
    started: Arc<AtomicBool>,
}

type ReplayCheck = Arc<dyn Fn() -> bool + Send + Sync>;

impl Ops {
    fn watch_projection(&self, name: &'static str, replayed: ReplayCheck) {
        self.projections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name, replayed));
    }

    /// The projections still replaying the log.
    fn replaying(&self) -> Vec<&'static str> {
        self.projections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, replayed)| !replayed())
            .map(|(name, _)| *name)
            .collect()
    }
}

fn probes(_: Ops) -> Router<Ops> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
}

/// Routes a request to the services once they are up; `503` before.
fn forward_to(
    services: Arc<OnceLock<Router>>,
) -> impl Fn(Request) -> std::pin::Pin<Box<dyn Future<Output = Response> + Send>> + Clone {
    move |request: Request| {
        let services = services.clone();
        Box::pin(async move {
            match services.get() {
                Some(router) => match router.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
            }
        })
    }
}

async fn ready(State(ops): State<Ops>) -> (StatusCode, String) {
    if ops.client.connection_state() != async_nats::connection::State::Connected {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "nats: not connected\n".to_owned(),
        );
    }
    if !ops.started.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the event store (set up by `helpline ensure`), then the services\n"
                .to_owned(),
        );
    }
    let replaying = ops.replaying();
    let js = async_nats::jetstream::new(ops.client);
    match tokio::time::timeout(Duration::from_secs(2), js.query_account()).await {
        Ok(Ok(_)) if !replaying.is_empty() => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("replaying the log: {}\n", replaying.join(", ")),
        ),
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".to_owned()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("jetstream: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "jetstream: no answer\n".to_owned(),
        ),
    }
}

/// Prometheus text: how many events wait for each of this process's consumers, and how
/// many were delivered but not yet acknowledged.
async fn metrics(State(ops): State<Ops>) -> (StatusCode, String) {
    let js = async_nats::jetstream::new(ops.client);
    let stream = helpline_eventstore::Layout::new(&ops.stream)
        .map(|layout| layout.event_stream().to_owned())
        .unwrap_or_default();
    let mut pending = String::from(
        "# HELP helpline_consumer_pending Events in the stream not yet delivered to the consumer.\n\
         # TYPE helpline_consumer_pending gauge\n",
    );
    let mut unacked = String::from(
        "# HELP helpline_consumer_unacked Events delivered to the consumer and not yet acknowledged.\n\
         # TYPE helpline_consumer_unacked gauge\n",
    );
    for name in &ops.consumers {
        // A timer consumer is one durable; a ticket consumer one per partition, summed.
        let (stream_name, durables) = if name.ends_with("-timers") {
            (format!("{stream}_TIMERS"), vec![(*name).to_owned()])
        } else {
            let durables = (0..ops.partitions)
                .map(|p| helpline_eventstore::subscribe::partition_consumer_name(name, p))
                .collect();
            (stream.clone(), durables)
        };
        let mut counts: Option<(u64, usize)> = None;
        for durable in durables {
            let info = async {
                let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
                    .get_stream(&stream_name)
                    .await
                    .ok()?
                    .get_consumer(&durable)
                    .await
                    .ok()?;
                consumer.info().await.ok().cloned()
            };
            if let Ok(Some(info)) = tokio::time::timeout(Duration::from_secs(2), info).await {
                let (pending, unacked) = counts.unwrap_or_default();
                counts = Some((pending + info.num_pending, unacked + info.num_ack_pending));
            }
        }
        if let Some((num_pending, num_ack_pending)) = counts {
            pending.push_str(&format!(
                "helpline_consumer_pending{{consumer=\"{name}\"}} {num_pending}\n"
            ));
            unacked.push_str(&format!(
                "helpline_consumer_unacked{{consumer=\"{name}\"}} {num_ack_pending}\n"
            ));
        }
    }
    let recorded = helpline_telemetry::metrics::render();
    (StatusCode::OK, format!("{pending}{unacked}{recorded}"))
}
