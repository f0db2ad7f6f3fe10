//! Keeping the CSAT projection live: replay every ticket event from the log's start,
//! then follow new ones.
//!
//! An ordered consumer (ephemeral, unacknowledged, recreated by the client on a gap)
//! reads the ticket subjects; nothing is stored but the stream, so a restart rebuilds the
//! projection from the log.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use helpline_eventstore::{DecodeError, EventStore, StoredEvent};
use tokio_util::sync::CancellationToken;

use crate::csat::CsatProjection;
use crate::error::FeedbackError;

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
        // The replay from the start opens every customer's events.
        store.preload_customer_keys().await;
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                outcome = self.read(store) => outcome,
            };
            if let Err(e) = outcome {
                tracing::warn!(error = %e, applied = self.last_sequence(), "csat projection lost the log, resuming");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Reads from after the last applied event until the consumer fails.
    async fn read(&self, store: &EventStore) -> Result<(), FeedbackError> {
        let stream = store
            .jetstream()
            .get_stream_no_info(store.layout().event_stream())
            .await
            .map_err(FeedbackError::unavailable)?;
        let deliver_policy = match self.last_sequence() {
            0 => DeliverPolicy::All,
            last => DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
        };
        let mut consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: store.layout().all_tickets(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(FeedbackError::unavailable)?;
        let pending = consumer
            .info()
            .await
            .map_err(FeedbackError::unavailable)?
            .num_pending;
        if pending == 0 {
            self.mark_replayed();
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(FeedbackError::unavailable)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(FeedbackError::unavailable)?;
            let info = message.info().map_err(FeedbackError::unavailable)?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            match store.decode(&message.payload).await {
                // Without the customer's key right now the event cannot be applied whole:
                // follow again from the last applied event.
                Err(DecodeError::Store(e)) => return Err(FeedbackError::unavailable(e)),
                Ok(events) => {
                    for (meta, event) in events {
                        self.apply(&StoredEvent {
                            subject: message.subject.to_string(),
                            sequence,
                            meta,
                            event,
                            delivered: info.delivered,
                            trace: Default::default(),
                        });
                    }
                }
                // The service consumers dead-letter it; the report can only leave it out.
                Err(e) => {
                    tracing::warn!(sequence, error = %e, "csat projection skips an undecodable event")
                }
            }
            if pending == 0 {
                self.mark_replayed();
            }
        }
        Err(FeedbackError::Unavailable(
            "the ordered consumer ended".to_owned(),
        ))
    }

    fn apply(&self, stored: &StoredEvent) {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .projection
            .apply(stored);
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
