//! A live projection: a pure fold of ticket events, replayed from the log's first message
//! at every start and then kept current, shared by the task that follows the log and the
//! readers that answer from it. The one way every service keeps an in-memory view (the
//! query service's tickets, feedback's CSAT and service levels); nothing is stored but
//! the stream.
//!
//! **Invariants.**
//! - A [`Fold`] is pure: the same events in the same order give the same projection, so a
//!   restart, a second replica and `helpline rebuild` agree.
//! - An event is folded in once: a fold skips what it applied before (the follower may
//!   hand a message on again after a resume), and its position is the last it applied.
//! - Readers see the projection between messages, never half of a command's events.
//! - Nothing takes the projection's lock while holding it: std's `RwLock` queues a second
//!   read behind a waiting writer, so a read inside a read deadlocked the query service
//!   (its `GetTimeline` asked `is_replayed` inside `read_with` while the follower waited
//!   to write). Whether the view has replayed is an atomic beside the lock, not under it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::EventStore;
use crate::follow::{Content, Follower, LogEntry, Subjects};
use crate::subscribe::StoredEvent;

/// A pure fold of ticket events that [`Live`] keeps current.
pub trait Fold: fmt::Debug + Send + Sync + 'static {
    /// The view's name in log lines and metrics.
    const VIEW: &'static str;
    /// What watchers of the view are told of an applied event (`()` for a view nobody
    /// watches).
    type Change: fmt::Debug + Send + Sync + 'static;
    /// Changes a slow watcher may fall behind by before it is told it lagged.
    const CHANGES_KEPT: usize = 1;

    /// Folds one event in; one applied before changes nothing and tells nothing.
    fn apply(&mut self, stored: &StoredEvent) -> Option<Self::Change>;
    /// Stream sequence of the last applied event; 0 before the first.
    fn last_sequence(&self) -> u64;
}

/// A projection shared by the task that follows the log ([`Live::follow`]), the readers
/// that answer from it, and the watchers of its changes.
pub struct Live<P: Fold> {
    state: Arc<RwLock<State<P>>>,
    /// Set once every ticket event the log held at the first start has been applied.
    replayed: Arc<AtomicBool>,
    changes: broadcast::Sender<Arc<P::Change>>,
}

impl<P: Fold> fmt::Debug for Live<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live")
            .field("view", &P::VIEW)
            .field("state", &self.state)
            .field("replayed", &self.is_replayed())
            .finish_non_exhaustive()
    }
}

impl<P: Fold> Clone for Live<P> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            replayed: Arc::clone(&self.replayed),
            changes: self.changes.clone(),
        }
    }
}

impl<P: Fold + Default> Default for Live<P> {
    fn default() -> Self {
        Self::new(P::default())
    }
}

#[derive(Debug)]
struct State<P> {
    projection: P,
}

impl<P: Fold> Live<P> {
    /// Starts from `projection` (empty: it is filled from the log).
    pub fn new(projection: P) -> Self {
        Self {
            state: Arc::new(RwLock::new(State { projection })),
            replayed: Arc::new(AtomicBool::new(false)),
            changes: broadcast::channel(P::CHANGES_KEPT.max(1)).0,
        }
    }

    /// Folds every ticket event of `store` into the projection, from after its position,
    /// until `shutdown` fires; a lost connection resumes after the last applied event.
    pub async fn follow(&self, store: &EventStore, shutdown: CancellationToken) {
        store
            .follow(P::VIEW, Subjects::Tickets, self, &shutdown)
            .await;
    }

    /// Runs `read` on the projection as it is now.
    pub fn read_with<T>(&self, read: impl FnOnce(&P) -> T) -> T {
        read(
            &self
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .projection,
        )
    }

    /// Stream sequence of the last applied event.
    pub fn last_sequence(&self) -> u64 {
        self.read_with(P::last_sequence)
    }

    /// Whether every ticket event the log held at the first start has been applied. Takes
    /// no lock, so it may be asked inside [`Live::read_with`].
    pub fn is_replayed(&self) -> bool {
        self.replayed.load(Ordering::Acquire)
    }

    /// Every change applied from now on; a receiver that falls more than
    /// [`Fold::CHANGES_KEPT`] changes behind is told it lagged.
    pub fn changes(&self) -> broadcast::Receiver<Arc<P::Change>> {
        self.changes.subscribe()
    }

    /// Folds in one message's events, all under one lock: what [`Follower::apply`] does,
    /// for a follower that keeps several views with one reader of the log.
    pub fn apply_events(&self, events: &[StoredEvent]) {
        let mut changed = Vec::new();
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            for event in events {
                if let Some(change) = state.projection.apply(event) {
                    changed.push(change);
                }
            }
        }
        // No watcher is not an error: the change is simply not wanted.
        if self.changes.receiver_count() > 0 {
            for change in changed {
                let _ = self.changes.send(Arc::new(change));
            }
        }
    }

    /// Records that the view has read everything the log held: what
    /// [`Follower::reached_end`] does.
    /// Called after every message that leaves nothing pending, so it takes no lock once
    /// the view has replayed.
    pub fn mark_replayed(&self) {
        if !self.replayed.swap(true, Ordering::AcqRel) {
            tracing::info!(
                view = P::VIEW,
                applied = self.last_sequence(),
                "projection replayed the log"
            );
        }
    }
}

impl<P: Fold + Clone> Live<P> {
    /// A copy of the projection as it is now.
    pub fn snapshot(&self) -> P {
        self.read_with(P::clone)
    }
}

impl<P: Fold> Follower for Live<P> {
    fn position(&self) -> u64 {
        self.last_sequence()
    }

    fn apply(&self, entry: LogEntry) {
        if let Content::Ticket(events) = entry.content {
            self.apply_events(&events);
        }
    }

    fn reached_end(&self) {
        self.mark_replayed();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, Default)]
    struct LastSeen(u64);

    impl Fold for LastSeen {
        const VIEW: &'static str = "last seen";
        type Change = ();

        fn apply(&mut self, stored: &StoredEvent) -> Option<()> {
            self.0 = stored.sequence;
            Some(())
        }

        fn last_sequence(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn an_answer_may_ask_whether_the_view_replayed_while_the_follower_waits_to_write() {
        let live = Live::<LastSeen>::default();
        let (answered, answer) = std::sync::mpsc::channel();
        let (reader, asked, follower) = (live.clone(), live.clone(), live.clone());
        std::thread::spawn(move || {
            reader.read_with(|_| {
                // The follower starts waiting for the lock this answer holds…
                let writing = std::thread::spawn(move || follower.apply_events(&[]));
                std::thread::sleep(Duration::from_millis(100));
                // …and the answer asks, as the query service's position does.
                let _ = answered.send(asked.is_replayed());
                writing
            })
        });
        assert_eq!(
            answer.recv_timeout(Duration::from_secs(10)),
            Ok(false),
            "the answer waited behind the follower, which waited for the answer"
        );
        live.mark_replayed();
        assert!(live.is_replayed());
    }
}
