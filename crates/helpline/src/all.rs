//! `helpline all`: every service in one process, as docker-compose and Kubernetes run it.
//!
//! Today that is the region's event store (ensured at start) and the HTTP probes on
//! `ingress.listen`: `/healthz` answers while the process runs, `/readyz` only while NATS
//! is connected and JetStream answers. The services join here as they are built.

use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use helpline_eventstore::EventStore;

use crate::config::Config;
use crate::shutdown_signal;

pub async fn run(config: Config) -> anyhow::Result<()> {
    // Pods may start before NATS does: keep trying, and stay unready meanwhile.
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(&config.nats.url)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.url))?;
    let listener = tokio::net::TcpListener::bind(config.ingress.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.ingress.listen))?;
    let probes = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(client.clone());
    tracing::info!(listen = %config.ingress.listen, nats = %config.nats.url, "serving probes");
    let server = tokio::spawn(async move {
        axum::serve(listener, probes)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });
    let store = EventStore::ensure(client, config.store())
        .await
        .context("cannot set up the event store")?;
    tracing::info!(stream = store.layout().event_stream(), "event store ready");
    server
        .await
        .context("probe server task failed")?
        .context("probe server failed")?;
    tracing::info!("shut down");
    Ok(())
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
