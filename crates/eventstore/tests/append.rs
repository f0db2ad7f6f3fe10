//! Appending: optimistic concurrency, dedupe, atomic multi-event commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use helpline_domain::{MessageBody, Personal};
use helpline_eventstore::{Appended, StoreConfig, StoreError};
use support::*;
use uuid::Uuid;

#[tokio::test]
async fn ensure_twice_changes_nothing() {
    let h = harness().await;
    let js = h.store.jetstream().clone();
    let before = js
        .get_stream("HELPLINE_DE")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();

    helpline_eventstore::EventStore::ensure(h.store.client().clone(), test_config())
        .await
        .unwrap();

    let after = js
        .get_stream("HELPLINE_DE")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(before.config, after.config);
    assert_eq!(before.created, after.created);
    assert!(after.config.allow_direct && after.config.allow_atomic_publish);
    assert!(after.config.duplicate_window >= std::time::Duration::from_secs(120));
    assert_eq!(
        after.config.subjects,
        vec![
            "helpline.de.ticket.*.*".to_owned(),
            "helpline.de.agent.*".to_owned(),
            "helpline.de.customer.*".to_owned(),
            "helpline.de.links.*".to_owned()
        ]
    );
    for bucket in [
        "helpline-de-contacts",
        "helpline-de-snapshots",
        "helpline-de-customer-keys",
    ] {
        js.get_key_value(bucket).await.unwrap();
    }
    js.get_stream("HELPLINE_DE_DEADLETTER").await.unwrap();
}

#[tokio::test]
async fn appended_events_load_back_in_order() {
    let h = harness().await;
    let id = ticket();
    let v1 = open(&h.store, id).await;
    let v2 = h
        .store
        .append(id, v1, &[message("Hallo 👋🏽 שלום")], &command())
        .await
        .unwrap()
        .version;
    assert!(v2 > v1);

    let loaded = h.store.load(id).await.unwrap();
    assert_eq!(loaded.version, v2);
    assert_eq!(loaded.ticket.events, 2);
    assert_eq!(loaded.ticket.customer_messages, 1);
    assert_eq!(loaded.ticket.id, Some(id));
}

#[tokio::test]
async fn a_new_ticket_loads_as_empty_at_version_zero() {
    let h = harness().await;
    let loaded = h.store.load(ticket()).await.unwrap();
    assert_eq!(loaded.version, 0);
    assert_eq!(loaded.ticket, Default::default());
}

#[tokio::test]
async fn eight_concurrent_writers_one_wins_per_version_and_nothing_is_lost() {
    let h = harness().await;
    let store = Arc::new(h.store.clone());
    let id = ticket();
    open(&store, id).await;

    // Each writer appends its one message, reloading after every conflict.
    let mut writers = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let cmd = command();
            let mut conflicts = Vec::new();
            loop {
                let loaded = store.load(id).await.unwrap();
                let text = format!("writer {writer}");
                match store
                    .append(id, loaded.version, &[message(&text)], &cmd)
                    .await
                {
                    Ok(appended) => return (appended, loaded.version, conflicts),
                    Err(StoreError::Conflict { expected, actual }) => {
                        assert_eq!(expected, loaded.version);
                        assert!(actual > expected, "a conflict means someone else moved on");
                        conflicts.push(expected);
                    }
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
        }));
    }
    let mut won_at = HashSet::new();
    let mut conflicts = 0;
    for writer in writers {
        let (appended, expected, lost): (Appended, u64, Vec<u64>) = writer.await.unwrap();
        assert!(!appended.duplicate);
        assert!(
            won_at.insert(expected),
            "two writers succeeded at version {expected}"
        );
        conflicts += lost.len();
    }
    assert_eq!(won_at.len(), 8);

    let log = store.load_from_log(id).await.unwrap();
    assert_eq!(
        log.ticket.customer_messages, 8,
        "every writer's message is there once"
    );
    assert_eq!(log.ticket.events, 9);
    println!("8 writers, {conflicts} conflicts");
}

#[tokio::test]
async fn at_one_version_exactly_one_of_eight_succeeds() {
    let h = harness().await;
    let store = Arc::new(h.store.clone());
    let id = ticket();
    let version = open(&store, id).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let (store, barrier) = (store.clone(), barrier.clone());
        writers.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .append(id, version, &[message("race")], &command())
                .await
        }));
    }
    let mut ok = 0;
    for writer in writers {
        match writer.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict { expected, actual }) => {
                assert_eq!(expected, version);
                assert_eq!(actual, version + 1);
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(store.load_from_log(id).await.unwrap().ticket.events, 2);
}

#[tokio::test]
async fn the_same_command_appended_twice_stores_one_event() {
    let h = harness().await;
    let id = ticket();
    let version = open(&h.store, id).await;
    let cmd = command();
    let event = message("once");

    let first = h
        .store
        .append(id, version, std::slice::from_ref(&event), &cmd)
        .await
        .unwrap();
    // As after a lost acknowledgement: same command, same expected version.
    let retry = h.store.append(id, version, &[event], &cmd).await.unwrap();

    assert_eq!(
        retry,
        Appended {
            version: first.version,
            duplicate: true
        }
    );
    assert_eq!(h.store.load_from_log(id).await.unwrap().ticket.events, 2);
}

#[tokio::test]
async fn a_retried_command_is_no_conflict_even_after_another_writer_moved_on() {
    let h = harness().await;
    let id = ticket();
    let version = open(&h.store, id).await;
    let cmd = command();
    let first = h
        .store
        .append(id, version, &[message("mine")], &cmd)
        .await
        .unwrap();
    h.store
        .append(id, first.version, &[message("someone else's")], &command())
        .await
        .unwrap();

    let retry = h
        .store
        .append(id, version, &[message("mine")], &cmd)
        .await
        .unwrap();

    assert_eq!(
        retry,
        Appended {
            version: first.version,
            duplicate: true
        }
    );
    assert_eq!(h.store.load_from_log(id).await.unwrap().ticket.events, 3);
}

#[tokio::test]
async fn a_multi_event_command_is_stored_together_and_dedupes_as_a_whole() {
    let h = harness().await;
    let id = ticket();
    let cmd = command();
    let events = [opened(id), message("one"), message("two")];

    let first = h.store.append(id, 0, &events, &cmd).await.unwrap();
    let retry = h.store.append(id, 0, &events, &cmd).await.unwrap();

    assert!(!first.duplicate);
    assert_eq!(
        retry,
        Appended {
            version: first.version,
            duplicate: true
        }
    );
    let loaded = h.store.load_from_log(id).await.unwrap();
    assert_eq!(loaded.ticket.events, 3);
    assert_eq!(loaded.version, first.version);
}

#[tokio::test]
async fn a_multi_event_command_at_a_stale_version_stores_nothing() {
    let h = harness().await;
    let id = ticket();
    let version = open(&h.store, id).await;
    h.store
        .append(id, version, &[message("moved on")], &command())
        .await
        .unwrap();

    let stale = h
        .store
        .append(id, version, &[message("a"), message("b")], &command())
        .await;

    assert!(
        matches!(stale, Err(StoreError::Conflict { expected, actual }) if expected == version && actual == version + 1)
    );
    assert_eq!(h.store.load_from_log(id).await.unwrap().ticket.events, 2);
}

#[tokio::test]
async fn a_multi_event_command_with_one_refused_event_stores_none_of_them() {
    let h = harness_with(StoreConfig {
        max_message_size: 16 * 1024,
        ..test_config()
    })
    .await;
    let id = ticket();
    let version = open(&h.store, id).await;
    let too_big = helpline_domain::Event::BotMessageSent {
        message: helpline_domain::MessageId(Uuid::now_v7()),
        body: MessageBody::Text(Personal::new("x".repeat(32 * 1024))),
        prompt: "greeting".to_owned(),
        choices: vec![],
    };

    let result = h
        .store
        .append(
            id,
            version,
            &[message("fits"), too_big, message("fits too")],
            &command(),
        )
        .await;

    assert!(matches!(result, Err(StoreError::Rejected(_))), "{result:?}");
    let loaded = h.store.load_from_log(id).await.unwrap();
    assert_eq!(loaded.ticket.events, 1, "none of the batch was stored");
    assert_eq!(loaded.version, version);
    // The ticket still takes appends at its old version.
    h.store
        .append(id, version, &[message("next")], &command())
        .await
        .unwrap();
}

#[tokio::test]
async fn many_concurrent_multi_event_commands_all_land_beyond_the_servers_batch_limit() {
    // The server keeps at most 50 atomic batches in flight per stream and refuses more;
    // the store queues and retries them instead of failing the command.
    let h = harness().await;
    let store = Arc::new(h.store.clone());
    let appends = (0..120).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let id = ticket();
            store
                .append(id, 0, &[opened(id), message("first")], &command())
                .await
                .map(|_| id)
        })
    });
    let mut tickets = Vec::new();
    for append in futures::future::join_all(appends).await {
        tickets.push(append.unwrap().unwrap());
    }
    for id in tickets {
        assert_eq!(store.load_from_log(id).await.unwrap().ticket.events, 2);
    }
}

#[tokio::test]
async fn one_command_appended_five_times_at_once_is_stored_once() {
    // As when a provider delivers one webhook several times in parallel.
    let h = harness().await;
    let store = Arc::new(h.store.clone());
    let id = ticket();
    let cmd = command();
    let events = [opened(id), message("once")];
    let tries = (0..5).map(|_| {
        let (store, cmd, events) = (store.clone(), cmd.clone(), events.clone());
        tokio::spawn(async move { store.append(id, 0, &events, &cmd).await })
    });
    let outcomes: Vec<_> = futures::future::join_all(tries)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();
    for outcome in &outcomes {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    assert_eq!(store.load_from_log(id).await.unwrap().ticket.events, 2);
}
