//! Consuming: every event handled, poison parked on the dead-letter subject, trace
//! context carried from the producer to the handler.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use helpline_domain::{Event, MessageBody};
use helpline_eventstore::{HandlerError, StoreConfig, StoredEvent};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use support::*;
use tracing_subscriber::layer::SubscriberExt;

fn text_of(event: &StoredEvent) -> Option<String> {
    match &event.event {
        Event::CustomerMessageReceived {
            body: MessageBody::Text(text),
            ..
        } => Some(text.expose().clone()),
        _ => None,
    }
}

#[tokio::test]
async fn poison_events_are_dead_lettered_while_later_events_are_still_handled() {
    let h = harness_with(StoreConfig {
        max_deliver: 3,
        ..test_config()
    })
    .await;
    let store = h.store.clone();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0));
    let sub = {
        let (handled, attempts) = (handled.clone(), attempts.clone());
        store
            .subscribe(
                "test-consumer",
                &store.layout().all_tickets(),
                move |event| {
                    let (handled, attempts) = (handled.clone(), attempts.clone());
                    async move {
                        match text_of(&event).as_deref() {
                            Some("poison") => {
                                *attempts.lock().unwrap() += 1;
                                Err(HandlerError::Transient("cannot handle poison".into()))
                            }
                            Some("panic") => panic!("handler bug"),
                            Some(text) => {
                                handled.lock().unwrap().push(text.to_owned());
                                Ok(())
                            }
                            None => Ok(()),
                        }
                    }
                },
            )
            .await
            .unwrap()
    };

    let id = ticket();
    let mut version = open(&store, id).await;
    for text in ["first", "poison", "panic", "second"] {
        version = store
            .append(id, version, &[message(text)], &command())
            .await
            .unwrap()
            .version;
    }
    // Bytes that are no event at all, published around the event store.
    let garbage_subject = store.layout().ticket_subject(ticket());
    store
        .jetstream()
        .publish(garbage_subject.clone(), "\u{0}not protobuf".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let later = ticket();
    let v = open(&store, later).await;
    store
        .append(later, v, &[message("third")], &command())
        .await
        .unwrap();

    eventually("later events handled", || {
        let handled = handled.clone();
        async move { handled.lock().unwrap().len() == 3 }
    })
    .await;
    assert_eq!(*handled.lock().unwrap(), vec!["first", "second", "third"]);

    let dead_letters = store
        .jetstream()
        .get_stream("HELPLINE_DE_DEADLETTER")
        .await
        .unwrap();
    eventually("three dead letters", || {
        let mut stream = dead_letters.clone();
        async move { stream.info().await.unwrap().state.messages == 3 }
    })
    .await;
    assert_eq!(*attempts.lock().unwrap(), 3, "tried max_deliver times");

    let mut reasons = Vec::new();
    for seq in 1..=3 {
        let letter = dead_letters.get_raw_message(seq).await.unwrap();
        assert_eq!(
            letter.subject.as_str(),
            "helpline.de.deadletter.test-consumer"
        );
        let header = |name: &str| letter.headers.get(name).map(|v| v.as_str().to_owned());
        assert!(header("Helpline-Original-Sequence").is_some());
        reasons.push((
            header("Helpline-Original-Subject").unwrap(),
            header("Helpline-Dead-Letter-Reason").unwrap(),
        ));
    }
    assert!(
        reasons
            .iter()
            .any(|(_, r)| r.contains("cannot handle poison") && r.contains("after 3 deliveries")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(_, r)| r.contains("handler panicked: handler bug")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(s, r)| *s == garbage_subject && r.contains("undecodable")),
        "{reasons:?}"
    );

    // The dead letter keeps the original bytes for inspection and replay.
    let poison = dead_letters.get_raw_message(1).await.unwrap();
    assert!(!poison.payload.is_empty());
    sub.stop().await;
}

#[tokio::test]
async fn a_durable_consumer_resumes_where_it_left_off() {
    let h = harness().await;
    let store = h.store.clone();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscribe = |seen: Arc<Mutex<Vec<u64>>>| {
        let store = store.clone();
        async move {
            store
                .subscribe("resume", &store.layout().all_tickets(), move |event| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push(event.sequence);
                        Ok(())
                    }
                })
                .await
                .unwrap()
        }
    };
    let id = ticket();
    let mut version = open(&store, id).await;
    let sub = subscribe(seen.clone()).await;
    eventually("first event", || {
        let seen = seen.clone();
        async move { seen.lock().unwrap().len() == 1 }
    })
    .await;
    sub.stop().await;

    for n in 0..3 {
        version = store
            .append(id, version, &[message(&format!("{n}"))], &command())
            .await
            .unwrap()
            .version;
    }
    let sub = subscribe(seen.clone()).await;
    eventually("the rest", || {
        let seen = seen.clone();
        async move { seen.lock().unwrap().len() == 4 }
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec![1, 2, 3, 4], "each event once, in order");
    sub.stop().await;
}

#[tokio::test]
async fn trace_context_travels_from_the_append_to_the_handler() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = harness().await;
    let store = h.store.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let sub = store
        .subscribe("trace", &store.layout().all_tickets(), move |event| {
            let tx = tx.clone();
            async move {
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(event.trace.span().span_context().clone());
                }
                Ok(())
            }
        })
        .await
        .unwrap();

    let span = tracing::info_span!("customer message");
    let sent = {
        let _entered = span.enter();
        let sent = helpline_telemetry::current_context()
            .span()
            .span_context()
            .clone();
        let id = ticket();
        open(&store, id).await;
        sent
    };
    assert!(sent.is_valid(), "the producer has a trace");

    let received = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received.trace_id(), sent.trace_id());
    assert!(received.is_remote());

    // And the header is there on the stored message, in W3C form.
    let mut stream = store.jetstream().get_stream("HELPLINE_DE").await.unwrap();
    let _ = stream.info().await.unwrap();
    let stored = stream.get_raw_message(1).await.unwrap();
    let traceparent = stored
        .headers
        .get("traceparent")
        .unwrap()
        .as_str()
        .to_owned();
    assert!(
        traceparent.starts_with(&format!("00-{}-", sent.trace_id())),
        "{traceparent}"
    );
    sub.stop().await;
}
