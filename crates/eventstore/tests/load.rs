//! Loading: snapshot plus tail, and durability across a server restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use helpline_eventstore::StoreConfig;
use support::*;

#[tokio::test]
async fn a_ticket_loaded_after_a_server_restart_equals_the_one_before() {
    let mut h = harness().await;
    let id = ticket();
    let version = open(&h.store, id).await;
    let version = say(
        &h.store,
        id,
        version,
        &[
            "message 0",
            "message 1",
            "message 2",
            "message 3",
            "message 4",
        ],
    )
    .await;
    let before = h.store.load(id).await.unwrap();

    h.server.kill().await.unwrap();
    h.server.restart().await.unwrap();

    let client = h.server.connect().await.unwrap();
    let store = helpline_eventstore::EventStore::open(client, test_config())
        .await
        .unwrap();
    let after = store.load(id).await.unwrap();
    assert_eq!(after, before);
    assert_eq!(after.version, version);
    // And the ticket goes on from there.
    store
        .append(id, version, &[message("after restart")], &command())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_snapshot_plus_its_tail_equals_the_full_fold() {
    let h = harness_with(StoreConfig {
        snapshot_every: 4,
        ..test_config()
    })
    .await;
    let id = ticket();
    let version = open(&h.store, id).await;
    let version = say(
        &h.store,
        id,
        version,
        &[
            "before 0", "before 1", "before 2", "before 3", "before 4", "before 5", "before 6",
            "before 7", "before 8", "before 9",
        ],
    )
    .await;
    // This load folds 11 events and writes a snapshot in the background.
    h.store.load(id).await.unwrap();
    let kv = h
        .store
        .jetstream()
        .get_key_value("helpline-de-snapshots")
        .await
        .unwrap();
    let key = id.0.to_string();
    eventually("snapshot written", || {
        let kv = kv.clone();
        let key = key.clone();
        async move { kv.entry(key).await.ok().flatten().is_some() }
    })
    .await;
    let version = say(&h.store, id, version, &["after 0", "after 1", "after 2"]).await;

    let from_snapshot = h.store.load(id).await.unwrap();
    let from_log = h.store.load_from_log(id).await.unwrap();
    assert_eq!(from_snapshot, from_log);
    assert_eq!(from_snapshot.version, version);
    assert_eq!(from_snapshot.ticket.customer_messages, 13);
}

#[tokio::test]
async fn an_unreadable_snapshot_costs_time_not_correctness() {
    let h = harness().await;
    let id = ticket();
    let version = open(&h.store, id).await;
    let kv = h
        .store
        .jetstream()
        .get_key_value("helpline-de-snapshots")
        .await
        .unwrap();
    kv.put(id.0.to_string(), "not a snapshot".into())
        .await
        .unwrap();

    let loaded = h.store.load(id).await.unwrap();

    assert_eq!(loaded, h.store.load_from_log(id).await.unwrap());
    assert_eq!(loaded.version, version);
}

#[tokio::test]
async fn an_older_snapshot_never_replaces_a_newer_one() {
    let h = harness().await;
    let id = ticket();
    let v1 = open(&h.store, id).await;
    let old = h.store.load(id).await.unwrap();
    let v2 = h
        .store
        .append(id, v1, &[message("newer")], &command())
        .await
        .unwrap()
        .version;
    let new = h.store.load(id).await.unwrap();

    h.store.write_snapshot(id, &new).await.unwrap();
    h.store.write_snapshot(id, &old).await.unwrap();

    let kv = h
        .store
        .jetstream()
        .get_key_value("helpline-de-snapshots")
        .await
        .unwrap();
    let stored: serde_json::Value =
        serde_json::from_slice(&kv.get(id.0.to_string()).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored["version"], v2);
}
