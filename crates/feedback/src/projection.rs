//! Keeping feedback's projections live: replay every ticket event from the log's start,
//! then follow new ones.
//!
//! The event store's live projection ([`Live`]) keeps any [`Fold`] current: [`Csat`] and
//! [`Levels`] are feedback's two, and [`Projections`] keeps both with one reader of the
//! log. Nothing is stored but the stream, so a restart rebuilds each from the log.

use std::sync::Arc;

use helpline_eventstore::{
    Content, EventStore, Fold, Follower, Live, LogEntry, StoredEvent, Subjects,
};
use helpline_region::RegionConfig;
use tokio_util::sync::CancellationToken;

use crate::csat::CsatProjection;
use crate::levels::LevelsProjection;

impl Fold for CsatProjection {
    const VIEW: &'static str = "csat";
    type Change = ();

    fn apply(&mut self, stored: &StoredEvent) -> Option<()> {
        CsatProjection::apply(self, stored);
        None
    }

    fn last_sequence(&self) -> u64 {
        CsatProjection::last_sequence(self)
    }
}

impl Fold for LevelsProjection {
    const VIEW: &'static str = "service-levels";
    type Change = ();

    fn apply(&mut self, stored: &StoredEvent) -> Option<()> {
        LevelsProjection::apply(self, stored);
        None
    }

    fn last_sequence(&self) -> u64 {
        LevelsProjection::last_sequence(self)
    }
}

/// The live CSAT projection.
pub type Csat = Live<CsatProjection>;

/// The live service-level projection, counting working time by the region's queue hours
/// and holidays.
pub type Levels = Live<LevelsProjection>;

/// The live service levels of `region`'s queues.
pub fn levels_for_region(region: Arc<RegionConfig>) -> Levels {
    Live::new(LevelsProjection::new(region))
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
    pub async fn follow(&self, store: &EventStore, shutdown: CancellationToken) {
        store
            .follow("feedback", Subjects::Tickets, self, &shutdown)
            .await;
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
