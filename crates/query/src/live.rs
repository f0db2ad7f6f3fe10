//! Reading the log into a projection: a one-off [`replay`] up to the log's end (what
//! `helpline rebuild` runs), and [`LiveProjection`], the event store's live projection of
//! it, replayed at start and then following new events (what the query service serves
//! from).
//!
//! Both read the ticket subjects with the event store's one log reader
//! ([`helpline_eventstore::follow`]); nothing is stored but the stream.

use std::time::{Duration, Instant};

use helpline_eventstore::{Content, EventStore, Fold, Live, LogReader, StoredEvent, Subjects};

use crate::error::QueryError;
use crate::projection::{Change, Projection};

/// How far a replay has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Messages of the log read: ticket messages, undecodable ones included, and the few
    /// others (agents', customers' ledgers) the stream holds.
    pub done: u64,
    /// Messages the log held when the replay began.
    pub total: u64,
}

/// What a finished replay read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Replayed {
    /// Ticket messages read (a command's several events are one), undecodable ones
    /// included.
    pub events: u64,
    /// Events that could not be decoded and were left out.
    pub undecodable: u64,
    /// Stream sequence of the last event read.
    pub last_sequence: u64,
    pub elapsed: Duration,
}

impl Replayed {
    pub fn events_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events as f64 / secs
        } else {
            0.0
        }
    }
}

/// Reads every ticket event the log holds now, from its first, into `apply`; calls
/// `progress` now and then and once at the end. Events appended meanwhile are left out.
pub async fn replay(
    store: &EventStore,
    mut apply: impl FnMut(StoredEvent),
    mut progress: impl FnMut(Progress),
) -> Result<Replayed, QueryError> {
    let started = Instant::now();
    let end = store
        .log_last_sequence()
        .await
        .map_err(QueryError::unavailable)?;
    // The whole stream, not its ticket subjects: a filter costs the server a match of
    // every ticket's subject to count what is pending (90 ms before the first message at
    // 240 000 tickets, against 10–25 ms without), and the stream holds little else.
    let mut reader = LogReader::open(store, Subjects::Everything, 0)
        .await
        .map_err(QueryError::unavailable)?;
    // Keys after the reader: its requests do not queue behind the preload's megabytes of
    // keys on the one connection, and its first messages need only the first keys.
    store.start_preloading_customer_keys();
    let total = reader.pending();
    let opened = started.elapsed();
    let (mut done, mut undecodable, mut last_sequence) = (0u64, 0u64, 0u64);
    let mut ticket_messages = 0u64;
    let mut reported = Instant::now();
    progress(Progress { done, total });
    while done < total {
        let Some(read) = reader.next().await else {
            break;
        };
        let read = read.map_err(QueryError::unavailable)?;
        if done == 0 {
            // Where a replay's start goes: the reader's consumer, then the first message
            // (its customer's key included).
            tracing::debug!(
                reader_ms = opened.as_millis(),
                first_ms = started.elapsed().as_millis(),
                total,
                "replay read its first message"
            );
        }
        done += 1;
        last_sequence = read.sequence;
        let (sequence, pending) = (read.sequence, read.pending);
        match read.content {
            Content::Ticket(events) => {
                ticket_messages += 1;
                events.into_iter().for_each(&mut apply);
            }
            Content::Undecodable(reason) => {
                tracing::warn!(sequence, error = %reason, "replay skips an undecodable event");
                ticket_messages += 1;
                undecodable += 1;
            }
            Content::Other => {}
        }
        if reported.elapsed() >= Duration::from_millis(100) {
            reported = Instant::now();
            progress(Progress { done, total });
        }
        if pending == 0 || sequence >= end {
            break;
        }
    }
    progress(Progress {
        done,
        total: total.max(done),
    });
    Ok(Replayed {
        events: ticket_messages,
        undecodable,
        last_sequence,
        elapsed: started.elapsed(),
    })
}

/// A fresh projection of every ticket event the log holds now.
pub async fn rebuild(
    store: &EventStore,
    progress: impl FnMut(Progress),
) -> Result<(Projection, Replayed), QueryError> {
    let mut projection = Projection::default();
    let replayed = replay(
        store,
        |event| {
            projection.fold_owned(event);
        },
        progress,
    )
    .await?;
    Ok((projection, replayed))
}

/// The live projection the query service answers from: replayed at every start, then
/// following new events; its changes feed the watch APIs.
pub type LiveProjection = Live<Projection>;

impl Fold for Projection {
    const VIEW: &'static str = "query";
    type Change = Change;
    /// Changes a slow watcher may fall behind by before it is told so.
    const CHANGES_KEPT: usize = 4096;

    fn apply(&mut self, stored: &StoredEvent) -> Option<Change> {
        Projection::apply(self, stored)
    }

    fn last_sequence(&self) -> u64 {
        Projection::last_sequence(self)
    }
}
