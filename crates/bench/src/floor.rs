//! The webhook ingest floor: the least a webhook handler must do, served by axum in this
//! process and loaded by the same clients as helpline's ingress. Per request it verifies
//! the WhatsApp signature (HMAC-SHA256 of the body under the app secret, as ingress does)
//! and makes one JetStream publish, answering `200` only after the publish is
//! acknowledged. Concurrent requests share the connection, so their publishes pipeline.
//! helpline's ingest is reported as a ratio to this.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use async_nats::jetstream::{self, message::PublishMessage};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const FLOOR_STREAM: &str = "HELPLINE_BENCH_FLOOR";
const FLOOR_SUBJECT_PREFIX: &str = "bench.floor";
/// As many subjects as the raw publish uses by default, so the server's per-subject work
/// is alike.
const FLOOR_SUBJECTS: u64 = 10_000;
const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The floor's handler serving on a loopback port, at the WhatsApp webhook path.
pub(crate) struct FloorServer {
    pub base: String,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

struct Floor {
    js: jetstream::Context,
    app_secret: Vec<u8>,
    next: AtomicU64,
}

impl FloorServer {
    pub async fn start(js: &jetstream::Context, app_secret: &str) -> anyhow::Result<Self> {
        js.create_stream(jetstream::stream::Config {
            name: FLOOR_STREAM.to_owned(),
            subjects: vec![format!("{FLOOR_SUBJECT_PREFIX}.>")],
            storage: jetstream::stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .context("cannot create the floor's stream")?;
        let floor = Arc::new(Floor {
            js: js.clone(),
            app_secret: app_secret.as_bytes().to_vec(),
            next: AtomicU64::new(0),
        });
        let router = axum::Router::new()
            .route("/webhooks/whatsapp", post(take))
            .with_state(floor);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot listen on 127.0.0.1")?;
        let base = format!("http://{}", listener.local_addr()?);
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            // Through the same front door as helpline's ingress, so that the two differ
            // only in their handlers.
            let door = helpline_ingress::IngressConfig::default().door();
            helpline_ingress::front_door::serve(listener, router, door, stop)
        });
        Ok(Self { base, stop, task })
    }

    /// Stops serving and deletes the floor's stream.
    pub async fn stop(self, js: &jetstream::Context) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "floor server failed"),
            Err(e) => tracing::warn!(error = %e, "floor server task failed"),
        }
        js.delete_stream(FLOOR_STREAM)
            .await
            .context("cannot delete the floor's stream")?;
        Ok(())
    }
}

async fn take(State(floor): State<Arc<Floor>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let Some(signature) = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("sha256="))
    else {
        return StatusCode::UNAUTHORIZED;
    };
    let Ok(presented) = hex::decode(signature) else {
        return StatusCode::UNAUTHORIZED;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&floor.app_secret) else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    mac.update(&body);
    // `verify_slice` compares in constant time, as ingress does.
    if mac.verify_slice(&presented).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let n = floor.next.fetch_add(1, Ordering::Relaxed) % FLOOR_SUBJECTS;
    // The signature names the body, so a provider's retry of it dedupes, like ingress's
    // `Nats-Msg-Id`.
    let publish = PublishMessage::build().payload(body).message_id(signature);
    let ack = match floor
        .js
        .send_publish(format!("{FLOOR_SUBJECT_PREFIX}.{n}"), publish)
        .await
    {
        Ok(ack) => ack,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE,
    };
    match ack.await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
