//! Keeping feedback's projections live: replay every ticket event from the log's start,
//! then follow new ones.
//!
//! The event store's one follower ([`EventStore::follow`]) reads the ticket subjects;
//! nothing is stored but the stream, so a restart rebuilds each projection from the log.
//! [`Live`] does this for any [`Fold`]: [`Csat`] and [`Levels`] are the two, and
//! [`Projections`] keeps both with one reader.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use helpline_eventstore::{Content, EventStore, Follower, LogEntry, StoredEvent, Subjects};
use helpline_region::RegionConfig;
use tokio_util::sync::CancellationToken;

use crate::csat::CsatProjection;
use crate::error::FeedbackError;
use crate::levels::LevelsProjection;

/// A pure fold of ticket events that [`Live`] keeps current.
pub trait Fold: fmt::Debug + Send + Sync + 'static {
    /// The view's name in log lines.
    const VIEW: &'static str;
    /// Folds one event in; one applied before changes nothing.
    fn apply(&mut self, stored: &StoredEvent);
    /// Stream sequence of the last applied event; 0 before the first.
    fn last_sequence(&self) -> u64;
}

impl Fold for CsatProjection {
    const VIEW: &'static str = "csat";

    fn apply(&mut self, stored: &StoredEvent) {
        CsatProjection::apply(self, stored);
    }

    fn last_sequence(&self) -> u64 {
        CsatProjection::last_sequence(self)
    }
}

impl Fold for LevelsProjection {
    const VIEW: &'static str = "service-levels";

    fn apply(&mut self, stored: &StoredEvent) {
        LevelsProjection::apply(self, stored);
    }

    fn last_sequence(&self) -> u64 {
        LevelsProjection::last_sequence(self)
    }
}

/// A projection shared by the task that follows the log ([`Live::follow`]) and the
/// readers that report from it.
#[derive(Debug)]
pub struct Live<P> {
    state: Arc<RwLock<State<P>>>,
}

impl<P> Clone for Live<P> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
        }
    }
}

#[derive(Debug)]
struct State<P> {
    projection: P,
    replayed: bool,
}

/// The live CSAT projection.
pub type Csat = Live<CsatProjection>;

/// The live service-level projection, counting working time by the region's queue hours
/// and holidays.
pub type Levels = Live<LevelsProjection>;

impl Default for Csat {
    fn default() -> Self {
        Self::new(CsatProjection::default())
    }
}

impl Levels {
    /// The service levels of `region`'s queues.
    pub fn for_region(region: Arc<RegionConfig>) -> Self {
        Self::new(LevelsProjection::new(region))
    }
}

impl<P: Fold> Live<P> {
    /// Starts from `projection` (empty: it is filled from the log).
    pub fn new(projection: P) -> Self {
        Self {
            state: Arc::new(RwLock::new(State {
                projection,
                replayed: false,
            })),
        }
    }

    /// Folds every ticket event of `store` into the projection, from the log's first,
    /// until `shutdown` fires. Lost connections are resumed after the last applied event.
    pub async fn follow(
        &self,
        store: &EventStore,
        shutdown: CancellationToken,
    ) -> Result<(), FeedbackError> {
        store
            .follow(P::VIEW, Subjects::Tickets, self, &shutdown)
            .await;
        Ok(())
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

    /// Whether every ticket event the log held at the first start has been applied.
    pub fn is_replayed(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .replayed
    }
}

impl<P: Fold + Clone> Live<P> {
    /// A copy of the projection as it is now.
    pub fn snapshot(&self) -> P {
        self.read_with(P::clone)
    }
}

impl<P: Fold> Live<P> {
    /// Folds in one message's events.
    fn apply_events(&self, events: &[StoredEvent]) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        for event in events {
            state.projection.apply(event);
        }
    }

    fn mark_replayed(&self) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !state.replayed {
            state.replayed = true;
            tracing::info!(
                view = P::VIEW,
                applied = state.projection.last_sequence(),
                "projection replayed the log"
            );
        }
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

/// Feedback's two projections kept live by one reader of the log: `helpline feedback`
/// replays and decodes the log once for both, not once each.
#[derive(Clone, Debug)]
pub struct Projections {
    pub csat: Csat,
    pub levels: Levels,
}

impl Projections {
    /// Folds every ticket event of `store` into both, from the log's first, until
    /// `shutdown` fires (as [`Live::follow`]).
    pub async fn follow(
        &self,
        store: &EventStore,
        shutdown: CancellationToken,
    ) -> Result<(), FeedbackError> {
        store
            .follow("feedback", Subjects::Tickets, self, &shutdown)
            .await;
        Ok(())
    }
}

impl Follower for Projections {
    /// The one further behind: a message both have applied is applied again to neither
    /// (each projection skips what it applied before).
    fn position(&self) -> u64 {
        self.csat.last_sequence().min(self.levels.last_sequence())
    }

    fn apply(&self, entry: LogEntry) {
        if let Content::Ticket(events) = entry.content {
            self.csat.apply_events(&events);
            self.levels.apply_events(&events);
        }
    }

    fn reached_end(&self) {
        self.csat.mark_replayed();
        self.levels.mark_replayed();
    }
}
