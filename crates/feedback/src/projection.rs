//! Keeping the CSAT projection live: replay every ticket event from the log's start,
//! then follow new ones.
//!
//! The event store's one follower ([`EventStore::follow`]) reads the ticket subjects;
//! nothing is stored but the stream, so a restart rebuilds the projection from the log.

use std::sync::{Arc, PoisonError, RwLock};

use helpline_eventstore::{Content, EventStore, Follower, LogEntry, Subjects};
use tokio_util::sync::CancellationToken;

use helpline_region::RegionConfig;

use crate::csat::CsatProjection;
use crate::error::FeedbackError;
use crate::levels::LevelsProjection;

/// The live CSAT projection, shared by the task that follows the log ([`Csat::follow`])
/// and the API that reports from it.
#[derive(Clone, Debug, Default)]
pub struct Csat {
    state: Arc<RwLock<State>>,
}

#[derive(Debug, Default)]
struct State {
    projection: CsatProjection,
    replayed: bool,
}

impl Csat {
    /// Folds every ticket event of `store` into the projection, from the log's first,
    /// until `shutdown` fires. Lost connections are resumed after the last applied event.
    pub async fn follow(
        &self,
        store: &EventStore,
        shutdown: CancellationToken,
    ) -> Result<(), FeedbackError> {
        store
            .follow("csat", Subjects::Tickets, self, &shutdown)
            .await;
        Ok(())
    }

    fn mark_replayed(&self) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !state.replayed {
            state.replayed = true;
            tracing::info!(
                applied = state.projection.last_sequence(),
                "csat projection replayed the log"
            );
        }
    }

    /// Runs `read` on the projection as it is now.
    pub fn read_with<T>(&self, read: impl FnOnce(&CsatProjection) -> T) -> T {
        read(
            &self
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .projection,
        )
    }

    /// A copy of the projection as it is now.
    pub fn snapshot(&self) -> CsatProjection {
        self.read_with(CsatProjection::clone)
    }

    /// Stream sequence of the last applied event.
    pub fn last_sequence(&self) -> u64 {
        self.read_with(CsatProjection::last_sequence)
    }

    /// Whether every ticket event the log held at the first start has been applied.
    pub fn is_replayed(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .replayed
    }
}

impl Follower for Csat {
    fn position(&self) -> u64 {
        self.last_sequence()
    }

    fn apply(&self, entry: LogEntry) {
        let Content::Ticket(events) = entry.content else {
            return;
        };
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        for event in &events {
            state.projection.apply(event);
        }
    }

    fn reached_end(&self) {
        self.mark_replayed();
    }
}

/// The live service-level projection ([`LevelsProjection`]), shared by the task that
/// follows the log ([`Levels::follow`]) and the Reports API. It counts working time by
/// the region's queue hours and holidays.
#[derive(Clone, Debug)]
pub struct Levels {
    state: Arc<RwLock<LevelsState>>,
    region: Arc<RegionConfig>,
}

#[derive(Debug, Default)]
struct LevelsState {
    projection: LevelsProjection,
    replayed: bool,
}

impl Levels {
    pub fn new(region: Arc<RegionConfig>) -> Self {
        Self {
            state: Arc::default(),
            region,
        }
    }

    /// Folds every ticket event of `store` into the projection, from the log's first,
    /// until `shutdown` fires.
    pub async fn follow(
        &self,
        store: &EventStore,
        shutdown: CancellationToken,
    ) -> Result<(), FeedbackError> {
        store
            .follow("service-levels", Subjects::Tickets, self, &shutdown)
            .await;
        Ok(())
    }

    /// Runs `read` on the projection as it is now.
    pub fn read_with<T>(&self, read: impl FnOnce(&LevelsProjection) -> T) -> T {
        read(
            &self
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .projection,
        )
    }

    pub fn region(&self) -> &RegionConfig {
        &self.region
    }

    /// Whether every ticket event the log held at the first start has been applied.
    pub fn is_replayed(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .replayed
    }
}

impl Follower for Levels {
    fn position(&self) -> u64 {
        self.read_with(LevelsProjection::last_sequence)
    }

    fn apply(&self, entry: LogEntry) {
        let Content::Ticket(events) = entry.content else {
            return;
        };
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        for event in &events {
            state.projection.apply(event, &self.region);
        }
    }

    fn reached_end(&self) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if !state.replayed {
            state.replayed = true;
            tracing::info!(
                applied = state.projection.last_sequence(),
                "service-level projection replayed the log"
            );
        }
    }
}
