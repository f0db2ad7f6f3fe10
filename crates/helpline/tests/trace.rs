//! One customer message is one trace: the webhook's intake in ingress, the bot's answer
//! and egress's send share a trace id, carried in NATS headers from service to service.
//! The spans go to OpenTelemetry's in-memory exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use helpline_bot::flows::Flows;
use helpline_domain::Channel;
use helpline_egress::{self as egress, EgressConfig};
use helpline_eventstore::{EventStore, StoreConfig};
use helpline_ingress::{ChannelsConfig, Ingress, IngressConfig};
use helpline_region::RegionConfig;
use helpline_testkit::{NatsServer, Simulator};
use opentelemetry::Value;
use opentelemetry::trace::{TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const REGION_FILE: &str = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");

fn region() -> RegionConfig {
    RegionConfig::from_region_file(REGION_FILE).unwrap()
}

/// Which service a span belongs to: ingress's intake, or the consumer that handled an
/// event.
fn service_of(span: &SpanData) -> Option<String> {
    if span.name == "take" {
        return Some("ingress".to_owned());
    }
    if span.name != "handle event" {
        return None;
    }
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "consumer")
        .map(|kv| match &kv.value {
            Value::String(name) => name.as_str().to_owned(),
            other => other.to_string(),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_inbound_webhook_is_one_trace_across_ingress_bot_and_egress() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("helpline")))
        .init();

    let nats = NatsServer::start().await.unwrap();
    let store = EventStore::ensure(nats.connect().await.unwrap(), StoreConfig::new("de"))
        .await
        .unwrap();
    let sim = Simulator::start(Default::default()).await.unwrap();
    let channels: ChannelsConfig = serde_json::from_value(sim.helpline_channels()).unwrap();
    let region = Arc::new(region());
    let flows = Arc::new(Flows::for_region(&region).unwrap());
    let shutdown = CancellationToken::new();
    let ingress = Ingress::new(store.clone(), &IngressConfig::default(), &channels)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, ingress.router()).await });
    let egress_config = EgressConfig {
        channels,
        ..EgressConfig::default()
    };
    tokio::spawn(egress::run(store.clone(), egress_config, shutdown.clone()));
    tokio::spawn(helpline_bot::run(
        store.clone(),
        region,
        flows,
        shutdown.clone(),
    ));

    let customer = "4915123400001";
    let webhook = sim.webhook(Channel::WhatsApp, customer, "Hallo");
    assert_eq!(sim.deliver(&url, &webhook).await.unwrap().status, 200);
    for _ in 0..400 {
        if !sim.received(Channel::WhatsApp, customer).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        !sim.received(Channel::WhatsApp, customer).is_empty(),
        "the bot's greeting never reached the customer"
    );
    // Egress's span ends once its delivery outcome is appended.
    let mut traces: Vec<(TraceId, BTreeSet<String>)> = Vec::new();
    for _ in 0..200 {
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let intake = spans
            .iter()
            .find(|span| service_of(span).as_deref() == Some("ingress"))
            .map(|span| span.span_context.trace_id());
        traces = intake
            .map(|trace| {
                let services = spans
                    .iter()
                    .filter(|span| span.span_context.trace_id() == trace)
                    .filter_map(service_of)
                    .collect();
                vec![(trace, services)]
            })
            .unwrap_or_default();
        if traces
            .first()
            .is_some_and(|(_, services)| services.contains("egress"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (trace, services) = traces.first().expect("an intake span");
    for service in ["ingress", "bot", "egress"] {
        assert!(
            services.contains(service),
            "trace {trace} has spans of {services:?}, none of {service}"
        );
    }
    shutdown.cancel();
}
