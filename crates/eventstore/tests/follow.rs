//! Following the log into a view: every ticket message once, in order, and on after the
//! reader's consumer vanished under it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use helpline_domain::{Event, MessageBody};
use helpline_eventstore::{Content, EventStore, Follower, LogEntry, Subjects};
use support::*;
use tokio_util::sync::CancellationToken;

/// A view that records which customer messages it saw, by text, and where it stands.
#[derive(Default)]
struct Texts {
    seen: Mutex<(u64, Vec<String>)>,
    reached_end: Mutex<u32>,
}

impl Texts {
    fn texts(&self) -> Vec<String> {
        self.seen.lock().unwrap().1.clone()
    }
}

impl Follower for Texts {
    fn position(&self) -> u64 {
        self.seen.lock().unwrap().0
    }

    fn apply(&self, entry: LogEntry) {
        let mut seen = self.seen.lock().unwrap();
        if entry.sequence <= seen.0 {
            return;
        }
        seen.0 = entry.sequence;
        if let Content::Ticket(events) = entry.content {
            for stored in events {
                if let Event::CustomerMessageReceived {
                    body: MessageBody::Text(text),
                    ..
                } = stored.event
                {
                    seen.1.push(text.expose().clone());
                }
            }
        }
    }

    fn reached_end(&self) {
        *self.reached_end.lock().unwrap() += 1;
    }
}

/// A [`Texts`] view following `store` until the token is cancelled.
fn follow(store: &EventStore) -> (Arc<Texts>, CancellationToken, tokio::task::JoinHandle<()>) {
    let view = Arc::new(Texts::default());
    let shutdown = CancellationToken::new();
    let following = tokio::spawn({
        let (store, view, shutdown) = (store.clone(), view.clone(), shutdown.clone());
        async move {
            store
                .follow("test", Subjects::Tickets, view.as_ref(), &shutdown)
                .await
        }
    });
    (view, shutdown, following)
}

#[tokio::test]
async fn a_view_reads_the_log_so_far_then_follows_new_messages_in_order() {
    let h = harness().await;
    let id = ticket();
    let v = open(&h.store, id).await;
    let v = say(&h.store, id, v, &["eins", "zwei"]).await;
    let (view, shutdown, following) = follow(&h.store);
    eventually("the replay reaches the end", || {
        let view = view.clone();
        async move { *view.reached_end.lock().unwrap() > 0 }
    })
    .await;
    assert_eq!(view.texts(), ["eins", "zwei"]);
    say(&h.store, id, v, &["drei"]).await;
    eventually("the new message is followed", || {
        let view = view.clone();
        async move { view.texts().len() == 3 }
    })
    .await;
    assert_eq!(view.texts(), ["eins", "zwei", "drei"]);
    shutdown.cancel();
    following.await.unwrap();
}

#[tokio::test]
async fn a_view_whose_consumer_vanished_on_the_server_reads_on() {
    let h = harness().await;
    let id = ticket();
    let v = open(&h.store, id).await;
    let v = say(&h.store, id, v, &["eins"]).await;
    let (view, shutdown, following) = follow(&h.store);
    eventually("the first message is read", || {
        let view = view.clone();
        async move { view.texts().len() == 1 }
    })
    .await;
    // What a server restart can do to a client-side consumer: its server half is gone.
    let stream = h
        .store
        .jetstream()
        .get_stream(h.store.layout().event_stream())
        .await
        .unwrap();
    let names: Vec<String> = {
        use futures::TryStreamExt;
        stream.consumer_names().try_collect().await.unwrap()
    };
    assert!(!names.is_empty(), "the view reads through a consumer");
    for name in names {
        stream.delete_consumer(&name).await.unwrap();
    }
    say(&h.store, id, v, &["zwei", "drei"]).await;
    eventually("the messages after the loss are followed", || {
        let view = view.clone();
        async move { view.texts().len() == 3 }
    })
    .await;
    assert_eq!(view.texts(), ["eins", "zwei", "drei"]);
    shutdown.cancel();
    following.await.unwrap();
}

/// The customers' texts, as a pure fold: what a service's view looks like to [`Live`].
#[derive(Debug, Default, Clone)]
struct Said {
    applied: helpline_eventstore::Applied,
    texts: Vec<String>,
}

impl helpline_eventstore::Fold for Said {
    const VIEW: &'static str = "said";
    type Change = String;
    const CHANGES_KEPT: usize = 16;

    fn apply(&mut self, stored: &helpline_eventstore::StoredEvent) -> Option<String> {
        if !self.applied.admit(stored.sequence, stored.meta.event_id) {
            return None;
        }
        match &stored.event {
            Event::CustomerMessageReceived {
                body: MessageBody::Text(text),
                ..
            } => {
                self.texts.push(text.expose().clone());
                Some(text.expose().clone())
            }
            _ => None,
        }
    }

    fn last_sequence(&self) -> u64 {
        self.applied.sequence()
    }
}

#[tokio::test]
async fn a_live_projection_replays_then_tells_its_watchers_each_change() {
    let h = harness().await;
    let id = ticket();
    let v = open(&h.store, id).await;
    let v = say(&h.store, id, v, &["eins"]).await;
    let live = helpline_eventstore::Live::<Said>::default();
    assert!(!live.is_replayed(), "nothing read yet");
    let shutdown = CancellationToken::new();
    let following = tokio::spawn({
        let (live, store, shutdown) = (live.clone(), h.store.clone(), shutdown.clone());
        async move { live.follow(&store, shutdown).await }
    });
    eventually("the log so far is replayed", || {
        let live = live.clone();
        async move { live.is_replayed() }
    })
    .await;
    assert_eq!(live.read_with(|said| said.texts.clone()), ["eins"]);

    let mut changes = live.changes();
    say(&h.store, id, v, &["zwei", "drei"]).await;
    let told = [changes.recv().await.unwrap(), changes.recv().await.unwrap()];
    assert_eq!(
        told.map(|change| change.as_str().to_owned()),
        ["zwei", "drei"]
    );
    assert_eq!(live.snapshot().texts, ["eins", "zwei", "drei"]);
    assert_eq!(live.last_sequence(), live.snapshot().applied.sequence());
    shutdown.cancel();
    following.await.unwrap();
}
