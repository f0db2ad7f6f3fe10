//! `helpline all` and `helpline ingress`: the services in one process, as docker-compose
//! and Kubernetes run them, behind one HTTP listener on `ingress.listen`:
//!
//! - `/healthz` answers while the process runs, `/readyz` only while NATS is connected
//!   and JetStream answers;
//! - `/webhooks/{channel}`: the channel gateway; `503` until the event store is set up, so
//!   providers retry rather than lose a message.
//!
//! - egress: messages to customers through the providers' send APIs.
//!
//! More services join `all` as they are built.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use helpline_eventstore::EventStore;
use helpline_ingress::Ingress;
use helpline_ingress::egress::{self, EgressConfig};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::Config;
use crate::shutdown_signal;

pub async fn run(config: Config) -> anyhow::Result<()> {
    run_until_stopped(config, None).await
}

/// As [`run`]; `on_ready` fires once every service takes requests.
pub async fn run_until_stopped(
    config: Config,
    on_ready: Option<tokio::sync::oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    // Pods may start before NATS does: keep trying, and stay unready meanwhile.
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(&config.nats.url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.url))?;
    let listen = config.ingress.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let services: Arc<OnceLock<Router>> = Arc::default();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(client.clone())
        .fallback(forward_to(services.clone()));
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
        }
    });
    tracing::info!(%listen, nats = %config.nats.url, "starting");

    let store = EventStore::ensure(client, config.store())
        .await
        .context("cannot set up the event store")?;
    let ingress = Ingress::new(store.clone(), &config.ingress, &config.channels)
        .await
        .context("cannot start the channel gateway")?;
    let egress_config = EgressConfig {
        channels: config.channels.clone(),
        whatsapp_template: config.egress.whatsapp_template.clone(),
        viber_sender_name: config.egress.viber_sender_name.clone(),
        ..EgressConfig::default()
    };
    let egress = tokio::spawn(egress::run(store, egress_config, shutdown.clone()));
    tracing::info!(?ingress, "channel gateway ready");
    // Set once, here; nothing else writes it.
    let _ = services.set(ingress.router());
    if let Some(on_ready) = on_ready {
        let _ = on_ready.send(());
    }

    let mut egress = egress;
    let mut server = server;
    // Whichever stops first stops the other: a service that fails (a bad channel config,
    // say) takes the process down rather than leaving it half alive.
    tokio::select! {
        served = &mut server => {
            shutdown.cancel();
            let egress_result = egress.await.context("egress task failed")?;
            served.context("http server task failed")?.context("http server failed")?;
            egress_result.context("egress failed")?;
        }
        finished = &mut egress => {
            shutdown.cancel();
            let _ = server.await;
            finished.context("egress task failed")?.context("egress failed")?;
        }
    }
    tracing::info!("shut down");
    Ok(())
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

async fn ready(State(client): State<async_nats::Client>) -> (StatusCode, String) {
    if client.connection_state() != async_nats::connection::State::Connected {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "nats: not connected\n".to_owned(),
        );
    }
    let js = async_nats::jetstream::new(client);
    match tokio::time::timeout(Duration::from_secs(2), js.query_account()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".to_owned()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("jetstream: {e}\n")),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "jetstream: no answer\n".to_owned(),
        ),
    }
}
