//! Consuming: every event handled, poison parked on the dead-letter subject, trace
//! context carried from the producer to the handler.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use helpline_domain::{Event, MessageBody};
use helpline_eventstore::{EventStore, HandlerError, StoreConfig, StoredEvent};
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
async fn a_transient_failure_outlasting_max_deliver_tries_is_retried_for_retry_for_and_handled() {
    // NATS away for a leader election: the handler fails six times in a row, more than
    // `max_deliver`, within `retry_for`.
    let h = harness_with(StoreConfig {
        max_deliver: 2,
        retry_for: std::time::Duration::from_secs(5),
        ..test_config()
    })
    .await;
    let store = h.store.clone();
    let attempts = Arc::new(Mutex::new(0));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let _sub = {
        let (attempts, handled) = (attempts.clone(), handled.clone());
        store
            .subscribe(
                "test-consumer",
                &store.layout().all_tickets(),
                move |event| {
                    let (attempts, handled) = (attempts.clone(), handled.clone());
                    async move {
                        let Some(text) = text_of(&event) else {
                            return Ok(());
                        };
                        let mut attempts = attempts.lock().unwrap();
                        *attempts += 1;
                        if *attempts <= 6 {
                            return Err(HandlerError::Transient("NATS is unavailable".into()));
                        }
                        handled.lock().unwrap().push(text);
                        Ok(())
                    }
                },
            )
            .await
            .unwrap()
    };
    let id = ticket();
    let version = open(&store, id).await;
    store
        .append(id, version, &[message("hallo")], &command())
        .await
        .unwrap();
    eventually("handled after the outage", || {
        let handled = handled.clone();
        async move { *handled.lock().unwrap() == ["hallo"] }
    })
    .await;
    assert_eq!(*attempts.lock().unwrap(), 7);
    let mut dead_letters = store
        .jetstream()
        .get_stream("HELPLINE_DE_DEADLETTER")
        .await
        .unwrap();
    assert_eq!(dead_letters.info().await.unwrap().state.messages, 0);
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
    // Another ticket's event does not wait for the poison; one ticket's keep their order.
    let handled = handled.lock().unwrap().clone();
    let at = |text: &str| handled.iter().position(|t| t == text).unwrap();
    assert!(at("first") < at("second"), "{handled:?}");
    assert!(handled.contains(&"third".to_owned()), "{handled:?}");

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

/// What a handler saw: the events of each ticket in the order handled, and whether two
/// events of one ticket were ever in the handler at once.
#[derive(Default)]
struct Seen {
    by_ticket: std::collections::HashMap<helpline_domain::TicketId, Vec<u64>>,
    in_hand: std::collections::HashSet<helpline_domain::TicketId>,
    overlapped: bool,
    most_in_hand: usize,
}

#[tokio::test]
async fn many_tickets_are_handled_at_once_and_each_ticket_in_log_order() {
    let h = harness().await;
    let store = h.store.clone();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let _sub = {
        let seen = seen.clone();
        store
            .subscribe("ordered", &store.layout().all_tickets(), move |event| {
                let seen = seen.clone();
                async move {
                    let ticket = event.meta.ticket;
                    {
                        let mut seen = seen.lock().unwrap();
                        if !seen.in_hand.insert(ticket) {
                            seen.overlapped = true;
                        }
                        seen.most_in_hand = seen.most_in_hand.max(seen.in_hand.len());
                    }
                    // Slow enough that tickets overlap, uneven so they finish out of order.
                    let pause = (event.sequence % 7) * 3;
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    let mut seen = seen.lock().unwrap();
                    seen.in_hand.remove(&ticket);
                    seen.by_ticket
                        .entry(ticket)
                        .or_default()
                        .push(event.sequence);
                    Ok(())
                }
            })
            .await
            .unwrap()
    };
    let tickets: Vec<_> = (0..20).map(|_| ticket()).collect();
    let mut versions = Vec::new();
    for id in &tickets {
        versions.push(open(&store, *id).await);
    }
    // Interleaved: each round appends one message to every ticket.
    for round in 0..8 {
        for (id, version) in tickets.iter().zip(versions.iter_mut()) {
            *version = say(&store, *id, *version, &[&format!("message {round}")]).await;
        }
    }
    eventually("every event handled", || {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .by_ticket
                .values()
                .map(Vec::len)
                .sum::<usize>()
                == 20 * 9
        }
    })
    .await;
    let seen = seen.lock().unwrap();
    assert!(
        !seen.overlapped,
        "two events of one ticket were handled at once"
    );
    for (ticket, sequences) in &seen.by_ticket {
        assert!(
            sequences.windows(2).all(|w| w[0] < w[1]),
            "ticket {ticket} handled out of order: {sequences:?}"
        );
    }
    assert!(seen.most_in_hand > 1, "tickets were handled one at a time");
}

#[tokio::test]
async fn a_ticket_whose_handler_hangs_holds_back_only_itself() {
    let h = harness().await;
    let store = h.store.clone();
    let stuck = ticket();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let _sub = {
        let handled = handled.clone();
        store
            .subscribe("hanging", &store.layout().all_tickets(), move |event| {
                let handled = handled.clone();
                async move {
                    if event.meta.ticket == stuck && text_of(&event).is_some() {
                        // A provider that never answers.
                        std::future::pending::<()>().await;
                    }
                    handled
                        .lock()
                        .unwrap()
                        .push((event.meta.ticket, text_of(&event)));
                    Ok(())
                }
            })
            .await
            .unwrap()
    };
    let v = open(&store, stuck).await;
    say(&store, stuck, v, &["hangs", "waits behind it"]).await;
    let others: Vec<_> = (0..50).map(|_| ticket()).collect();
    for id in &others {
        let v = open(&store, *id).await;
        say(&store, *id, v, &["hello"]).await;
    }
    eventually("the 50 other tickets handled", || {
        let handled = handled.clone();
        async move {
            handled
                .lock()
                .unwrap()
                .iter()
                .filter(|(t, text)| *t != stuck && text.is_some())
                .count()
                == 50
        }
    })
    .await;
    let handled = handled.lock().unwrap();
    assert!(
        !handled
            .iter()
            .any(|(t, text)| *t == stuck && text.is_some()),
        "the stuck ticket's later message was handled before the one in front of it"
    );
}

#[tokio::test]
async fn a_retried_event_keeps_its_ticket_s_later_events_behind_it() {
    let h = harness_with(StoreConfig {
        max_deliver: 5,
        ..test_config()
    })
    .await;
    let store = h.store.clone();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(0));
    let _sub = {
        let (handled, failures) = (handled.clone(), failures.clone());
        store
            .subscribe("retrying", &store.layout().all_tickets(), move |event| {
                let (handled, failures) = (handled.clone(), failures.clone());
                async move {
                    let Some(text) = text_of(&event) else {
                        return Ok(());
                    };
                    if text == "flaky" {
                        let mut failures = failures.lock().unwrap();
                        if *failures < 2 {
                            *failures += 1;
                            return Err(HandlerError::Transient("provider answered 503".into()));
                        }
                    }
                    handled.lock().unwrap().push(text);
                    Ok(())
                }
            })
            .await
            .unwrap()
    };
    let id = ticket();
    let v = open(&store, id).await;
    say(&store, id, v, &["before", "flaky", "after"]).await;
    eventually("all three handled", || {
        let handled = handled.clone();
        async move { handled.lock().unwrap().len() == 3 }
    })
    .await;
    assert_eq!(*handled.lock().unwrap(), vec!["before", "flaky", "after"]);
    assert_eq!(*failures.lock().unwrap(), 2);
}

#[tokio::test]
async fn a_delivery_lost_on_the_way_is_handled_before_its_ticket_s_later_events() {
    // The server counts a delivery the client never got as out with the client, and sends
    // it again only after the ack wait, while the ticket's later events go out at once.
    let config = StoreConfig {
        ack_wait: Duration::from_secs(2),
        ..test_config()
    };
    let h = harness_with(config.clone()).await;
    let proxy = lossy::LossyProxy::start(h.server.port()).await;
    let client = async_nats::connect(&proxy.url).await.unwrap();
    let consuming = EventStore::open(client, config).await.unwrap();
    let handled = Arc::new(Mutex::new(Vec::new()));
    let _sub = {
        let handled = handled.clone();
        consuming
            .subscribe("lossy", &consuming.layout().all_tickets(), move |event| {
                let handled = handled.clone();
                async move {
                    handled
                        .lock()
                        .unwrap()
                        .push((event.meta.ticket, text_of(&event)));
                    Ok(())
                }
            })
            .await
            .unwrap()
    };
    let store = h.store.clone();
    let id = ticket();
    let v = open(&store, id).await;
    eventually("the ticket's opening handled", || {
        let handled = handled.clone();
        async move { handled.lock().unwrap().iter().any(|(t, _)| *t == id) }
    })
    .await;
    let subject = store.layout().ticket_subject(id);
    let v = proxy
        .lose_next_delivery_of(&subject, say(&store, id, v, &["first"]))
        .await;
    say(&store, id, v, &["second", "third"]).await;
    let texts = || {
        handled
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t == id)
            .filter_map(|(_, text)| text.clone())
            .collect::<Vec<_>>()
    };
    eventually(
        "the three messages handled, the lost one after the ack wait",
        || {
            let done = texts().len() >= 3;
            async move { done }
        },
    )
    .await;
    assert_eq!(proxy.dropped(), 1);
    assert_eq!(texts(), vec!["first", "second", "third"]);
    // An operator sees the loss and how the partition's wait for it ended.
    let metrics = helpline_telemetry::metrics::render();
    assert!(
        metrics.contains("helpline_consumer_lost_deliveries_total{consumer=\"lossy\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "helpline_consumer_partition_held_seconds_count{consumer=\"lossy\",outcome=\"redelivered\"} 1"
        ) || metrics.contains(
            "helpline_consumer_partition_held_seconds_count{consumer=\"lossy\",outcome=\"done_elsewhere\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_handler_retrying_on_its_own_stops_when_its_ticket_is_let_go_and_the_event_goes_back() {
    // A handler that retries a provider by itself, for as long as it holds the ticket.
    let h = harness().await;
    let store = h.store.clone();
    let id = ticket();
    let filter = store.layout().ticket_subject(id);
    let trying = Arc::new(tokio::sync::Notify::new());
    let first = {
        let trying = trying.clone();
        store
            .subscribe("let-go", &filter, move |event| {
                let trying = trying.clone();
                async move {
                    if text_of(&event).is_none() {
                        return Ok(());
                    }
                    trying.notify_one();
                    let Some(let_go) = event.let_go else {
                        return Err(HandlerError::Permanent("no let-go token".into()));
                    };
                    let_go.cancelled().await;
                    Err(HandlerError::Transient("provider still failing".into()))
                }
            })
            .await
            .unwrap()
    };
    let v = open(&store, id).await;
    say(&store, id, v, &["hello"]).await;
    trying.notified().await;
    // Stopping waits for the handler in hand: it returns because its ticket was let go.
    tokio::time::timeout(Duration::from_secs(10), first.stop())
        .await
        .expect("the handler in hand stopped retrying");
    let handled = Arc::new(Mutex::new(Vec::new()));
    let _second = {
        let handled = handled.clone();
        store
            .subscribe("let-go", &filter, move |event| {
                let handled = handled.clone();
                async move {
                    if let Some(text) = text_of(&event) {
                        handled.lock().unwrap().push((text, event.delivered));
                    }
                    Ok(())
                }
            })
            .await
            .unwrap()
    };
    eventually(
        "the event handed back and handled by the next subscriber",
        || {
            let handled = handled.clone();
            async move { !handled.lock().unwrap().is_empty() }
        },
    )
    .await;
    assert_eq!(*handled.lock().unwrap(), vec![("hello".to_owned(), 2)]);
}

/// One handling of a customer message, as a process's handler saw it: logged when it
/// starts, so that a second handling of an event still in hand shows.
#[derive(Clone, Debug)]
struct Handling {
    ticket: helpline_domain::TicketId,
    text: String,
    process: &'static str,
    started: std::time::Instant,
    ended: Option<std::time::Instant>,
}

/// A subscriber of the consumer `handover` over every ticket that logs each customer
/// message it handles. Its "first" messages stay in hand: until their partition is let
/// go, or for `keep` when it is not; after a let-go for `after_let_go` more (a provider
/// request in flight, which a let-go does not cut), counted in `let_go`.
async fn handover_subscriber(
    store: &EventStore,
    process: &'static str,
    log: Arc<Mutex<Vec<Handling>>>,
    let_go: Arc<std::sync::atomic::AtomicUsize>,
    keep: Duration,
    after_let_go: Duration,
) -> helpline_eventstore::Subscription {
    use std::sync::atomic::Ordering;
    store
        .subscribe("handover", &store.layout().all_tickets(), move |event| {
            let (log, let_go) = (log.clone(), let_go.clone());
            async move {
                let Some(text) = text_of(&event) else {
                    return Ok(());
                };
                let first = text == "first";
                let at = {
                    let mut log = log.lock().unwrap();
                    log.push(Handling {
                        ticket: event.meta.ticket,
                        text,
                        process,
                        started: std::time::Instant::now(),
                        ended: None,
                    });
                    log.len() - 1
                };
                if first {
                    let token = event.let_go.clone().unwrap_or_default();
                    tokio::select! {
                        _ = token.cancelled() => {
                            let_go.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(after_let_go).await;
                        }
                        _ = tokio::time::sleep(keep) => {}
                    }
                }
                log.lock().unwrap()[at].ended = Some(std::time::Instant::now());
                Ok(())
            }
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_ticket_handed_over_mid_handling_goes_on_only_after_the_handling_in_hand_is_done() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // An ack wait longer than the pin on a partition, so that the server would send the
    // event in hand to the new owner before the old owner's handler is done with it.
    let config = StoreConfig {
        ack_wait: Duration::from_secs(6),
        ..test_config()
    };
    let h = harness_with(config.clone()).await;
    let partitions = config.partition_count();
    // One ticket in every partition, so that some move to the second process whatever
    // its share.
    let mut tickets = std::collections::BTreeMap::new();
    while tickets.len() < partitions as usize {
        let id = ticket();
        tickets
            .entry(helpline_eventstore::layout::ticket_slot(id) % partitions)
            .or_insert(id);
    }
    let log = Arc::new(Mutex::new(Vec::<Handling>::new()));
    let let_go = Arc::new(AtomicUsize::new(0));
    let _first = handover_subscriber(
        &h.store,
        "first process",
        log.clone(),
        let_go.clone(),
        Duration::from_secs(4),
        // Within the ack wait, as egress's provider request is within the default one.
        Duration::from_millis(6_500),
    )
    .await;
    let mut versions = Vec::new();
    for id in tickets.values() {
        let v = open(&h.store, *id).await;
        versions.push(say(&h.store, *id, v, &["first"]).await);
    }
    eventually("every ticket's first message in hand", || {
        let log = log.clone();
        async move { log.lock().unwrap().len() == partitions as usize }
    })
    .await;
    // A second process joins: the first hands it its share while handling.
    let second_store = EventStore::open(h.server.connect().await.unwrap(), config)
        .await
        .unwrap();
    let _second = handover_subscriber(
        &second_store,
        "second process",
        log.clone(),
        Arc::new(AtomicUsize::new(0)),
        Duration::ZERO,
        Duration::ZERO,
    )
    .await;
    for (id, v) in tickets.values().zip(&versions) {
        say(&h.store, *id, *v, &["second"]).await;
    }
    eventually_within(
        "every ticket's messages handled and no handling in hand",
        Duration::from_secs(40),
        || {
            let (log, tickets) = (log.clone(), tickets.len());
            async move {
                let log = log.lock().unwrap();
                log.iter().filter(|h| h.text == "second").count() >= tickets
                    && log.iter().all(|h| h.ended.is_some())
            }
        },
    )
    .await;
    // A moment for a late second handling to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        let_go.load(Ordering::SeqCst) > 0,
        "no partition was handed over while its ticket was in hand"
    );
    let log = log.lock().unwrap();
    for id in tickets.values() {
        let of_ticket: Vec<&Handling> = log.iter().filter(|h| h.ticket == *id).collect();
        let texts: Vec<&str> = of_ticket.iter().map(|h| h.text.as_str()).collect();
        assert_eq!(
            texts,
            ["first", "second"],
            "ticket {id} was handled {of_ticket:?}"
        );
        assert!(
            of_ticket[1].started >= of_ticket[0].ended.unwrap_or(of_ticket[1].started),
            "ticket {id}'s second message was handled before its first was done: {of_ticket:?}"
        );
    }
    assert!(
        log.iter()
            .any(|h| h.text == "second" && h.process == "second process"),
        "no ticket went on in the second process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_process_that_stood_still_held_past_its_ack_wait_is_handled_once_by_the_next_owner()
{
    let config = StoreConfig {
        ack_wait: Duration::from_secs(3),
        ..test_config()
    };
    let h = harness_with(config.clone()).await;
    let log: Arc<Mutex<Vec<(String, &'static str)>>> = Arc::default();
    let subscriber = {
        let log = log.clone();
        move |store: EventStore, process: &'static str, freezes: bool| {
            let log = log.clone();
            async move {
                store
                    .subscribe("stall", &store.layout().all_tickets(), move |event| {
                        let log = log.clone();
                        async move {
                            let Some(text) = text_of(&event) else {
                                return Ok(());
                            };
                            log.lock().unwrap().push((text.clone(), process));
                            if text == "freeze" && freezes {
                                // The whole process stands still: its one thread sleeps.
                                std::thread::sleep(Duration::from_secs(12));
                            } else if text == "first" {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                            Ok(())
                        }
                    })
                    .await
                    .unwrap()
            }
        }
    };
    // The first process, whose handler of "freeze" stops its one runtime thread.
    let first = OwnProcess::start(h.server.url(), config.clone(), {
        let subscriber = subscriber.clone();
        move |store| subscriber(store, "first process", true)
    });
    let handled = |text: &'static str| {
        let log = log.clone();
        move || {
            let log = log.clone();
            async move { log.lock().unwrap().iter().any(|(t, _)| t == text) }
        }
    };
    let id = ticket();
    let v = open(&h.store, id).await;
    say(&h.store, id, v, &["first", "second"]).await;
    eventually("the first message in hand", handled("first")).await;
    // The second is delivered to the first process and waits behind the first there.
    let mut queued = false;
    for _ in 0..100 {
        let backlog = h.store.consumer_backlog("stall").await.unwrap();
        if backlog.pending == 0 && backlog.unacknowledged == 2 {
            queued = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        queued,
        "the second message was not delivered beside the first"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stalled = ticket();
    let v = open(&h.store, stalled).await;
    say(&h.store, stalled, v, &["freeze"]).await;
    eventually("the first process standing still", handled("freeze")).await;
    // A second process takes the partitions over while the first stands still, and
    // handles what the server sends it again.
    let _second = subscriber(h.store.clone(), "second process", false).await;
    eventually_within(
        "the second process handling the second message",
        Duration::from_secs(30),
        || {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .iter()
                    .any(|(t, p)| t == "second" && *p == "second process")
            }
        },
    )
    .await;
    // The first process moves again (12 s after it stopped) and goes on.
    tokio::time::sleep(Duration::from_secs(14)).await;
    first.stop();
    let log = log.lock().unwrap();
    let seconds: Vec<_> = log.iter().filter(|(t, _)| t == "second").collect();
    assert_eq!(
        seconds.len(),
        1,
        "the second message was handled more than once: {log:?}"
    );
    // An operator sees that a process stood still past its ack wait.
    let metrics = helpline_telemetry::metrics::render();
    assert!(
        metrics.contains("helpline_consumer_outlived_deliveries_total{consumer=\"stall\"}"),
        "{metrics}"
    );
}

/// The window a frozen process leaves inside a handler: it stands still with the event in
/// hand, past the ack wait, before the one thing it cannot undo (for egress, the send).
/// The handler sees it lost the event, and the process neither tries it again nor goes
/// on with the ticket: the redelivery, at the next owner, is the one that does it.
#[tokio::test]
async fn a_handler_that_stood_still_past_its_ack_wait_sees_the_event_lost_and_does_nothing_twice() {
    let config = StoreConfig {
        ack_wait: Duration::from_secs(3),
        ..test_config()
    };
    let h = harness_with(config.clone()).await;
    // (text, process, what the handler did)
    type Log = Arc<Mutex<Vec<(String, &'static str, &'static str)>>>;
    let log: Log = Arc::default();
    let subscriber = {
        let log = log.clone();
        move |store: EventStore, process: &'static str, freezes: bool| {
            let log = log.clone();
            async move {
                store
                    .subscribe("stall", &store.layout().all_tickets(), move |event| {
                        let log = log.clone();
                        async move {
                            let Some(text) = text_of(&event) else {
                                return Ok(());
                            };
                            let note =
                                |what| log.lock().unwrap().push((text.clone(), process, what));
                            note("started");
                            if text == "freeze" && freezes && event.delivered == 1 {
                                // The whole process stands still, after the handler began
                                // and before its send.
                                std::thread::sleep(Duration::from_secs(12));
                            }
                            if event.outlived() {
                                note("lost it");
                                return Err(HandlerError::Transient(
                                    "held past the ack wait".to_owned(),
                                ));
                            }
                            // A redelivery looks up whether the work was done (egress reads
                            // the message's outcome on the ticket).
                            let done = event.delivered > 1
                                && log
                                    .lock()
                                    .unwrap()
                                    .iter()
                                    .any(|(t, _, what)| *t == text && *what == "sent");
                            if done {
                                note("done before");
                                return Ok(());
                            }
                            note("sent");
                            Ok(())
                        }
                    })
                    .await
                    .unwrap()
            }
        }
    };
    let first = OwnProcess::start(h.server.url(), config.clone(), {
        let subscriber = subscriber.clone();
        move |store| subscriber(store, "first process", true)
    });
    let id = ticket();
    let v = open(&h.store, id).await;
    say(&h.store, id, v, &["freeze", "after"]).await;
    let seen = |text: &'static str, process: &'static str, what: &'static str| {
        let log = log.clone();
        move || {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .iter()
                    .any(|entry| *entry == (text.to_owned(), process, what))
            }
        }
    };
    eventually(
        "the first process standing still",
        seen("freeze", "first process", "started"),
    )
    .await;
    // A second process takes the partitions over and handles what the server sends again.
    let _second = subscriber(h.store.clone(), "second process", false).await;
    eventually_within(
        "the second process handling the ticket",
        Duration::from_secs(30),
        seen("after", "second process", "sent"),
    )
    .await;
    // The first process moves again (12 s after it stopped).
    eventually_within(
        "the first process seeing it lost the event",
        Duration::from_secs(20),
        seen("freeze", "first process", "lost it"),
    )
    .await;
    // Long enough for retries in place (10 ms apart) and for its lane to go on.
    tokio::time::sleep(Duration::from_secs(8)).await;
    first.stop();
    let log = log.lock().unwrap().clone();
    // The delivery it lost is not tried again here (a retry in place would find it lost
    // again, up to the dead letters); a redelivery that reached this process anyway finds
    // the work done.
    let lost: Vec<_> = log
        .iter()
        .filter(|(_, _, what)| *what == "lost it")
        .collect();
    assert_eq!(
        lost,
        [&("freeze".to_owned(), "first process", "lost it")],
        "tried again after losing it: {log:?}"
    );
    // Done once, at the next owner, in the ticket's order.
    let sent: Vec<_> = log
        .iter()
        .filter(|(_, _, what)| *what == "sent")
        .map(|(t, p, _)| (t.as_str(), *p))
        .collect();
    assert_eq!(
        sent,
        [("freeze", "second process"), ("after", "second process")],
        "{log:?}"
    );
    let mut dead_letters = h
        .store
        .jetstream()
        .get_stream("HELPLINE_DE_DEADLETTER")
        .await
        .unwrap();
    assert_eq!(dead_letters.info().await.unwrap().state.messages, 0);
}

/// A process on a thread of its own, with one runtime thread: a handler that blocks that
/// thread makes the whole process stand still, as a paused container does.
struct OwnProcess {
    done: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl OwnProcess {
    /// Connects to `url` and keeps the subscription `subscribe` makes until [`Self::stop`].
    fn start<S, F>(url: String, config: StoreConfig, subscribe: S) -> Self
    where
        S: FnOnce(EventStore) -> F + Send + 'static,
        F: std::future::Future<Output = helpline_eventstore::Subscription>,
    {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let done = done.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let client = async_nats::connect(url).await.unwrap();
                    let store = EventStore::open(client, config).await.unwrap();
                    let _subscription = subscribe(store).await;
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                });
            })
        };
        Self { done, thread }
    }

    fn stop(self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap();
    }
}
