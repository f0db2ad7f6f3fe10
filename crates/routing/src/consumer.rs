//! The durable consumer `routing`: every `HandoffRequested` becomes a `TicketRouted`
//! followed by `TicketQueued` or `ReferredToStore`, appended once per handoff.

use std::sync::{Arc, Mutex, PoisonError};

use helpline_domain::{Event, Phase};
use helpline_eventstore::{Cause, EventStore, HandlerError, Reacted, StoredEvent};
use helpline_region::RegionConfig;
use tokio_util::sync::CancellationToken;

use crate::decision::{Decision, Destination, Facts, decide_route};
use crate::error::RoutingError;

/// The durable consumer's name, also the service name of its reactions.
pub const CONSUMER: &str = "routing";

/// Routes handed-over tickets until `shutdown` fires, then lets the event in hand finish.
pub async fn run(
    store: EventStore,
    region: Arc<RegionConfig>,
    shutdown: CancellationToken,
) -> Result<(), RoutingError> {
    let filter = store.layout().all_tickets();
    let handler_store = store.clone();
    let subscription = store
        .subscribe(CONSUMER, &filter, move |event| {
            let store = handler_store.clone();
            let region = Arc::clone(&region);
            async move { handle(&store, &region, event).await }
        })
        .await?;
    tracing::info!(consumer = CONSUMER, "routing running");
    shutdown.cancelled().await;
    subscription.stop().await;
    tracing::info!(consumer = CONSUMER, "routing stopped");
    Ok(())
}

async fn handle(
    store: &EventStore,
    region: &RegionConfig,
    stored: StoredEvent,
) -> Result<(), HandlerError> {
    if !matches!(stored.event, Event::HandoffRequested { .. }) {
        return Ok(());
    }
    // The handoff's own time, not the clock: a redelivery hours later evaluates the rules'
    // hours as the first delivery did.
    let at = jiff::Timestamp::try_from(stored.meta.occurred_at)
        .map_err(|e| HandlerError::Permanent(format!("occurred_at out of range: {e}")))?;
    // Kept for the log line after the append; the closure may run more than once when
    // another writer appends to the ticket meanwhile, and the last run is the one stored.
    let decided: Mutex<Option<Decision>> = Mutex::new(None);
    let reacted = store
        .react(CONSUMER, &Cause::event(&stored), |ticket| {
            // Handed back to the bot, abandoned, or already routed by a newer handoff.
            if ticket.phase != Phase::Routing {
                return vec![];
            }
            let decision = decide_route(region, &Facts::of(ticket), at);
            let command = decision.command();
            *decided.lock().unwrap_or_else(PoisonError::into_inner) = Some(decision);
            vec![command]
        })
        .await?;
    let ticket = stored.meta.ticket;
    match reacted {
        Reacted::Appended { .. } => {
            let decision = decided.into_inner().unwrap_or_else(PoisonError::into_inner);
            if let Some(decision) = decision {
                log(ticket, &decision);
            }
        }
        Reacted::AlreadyDone => tracing::debug!(%ticket, "handoff already routed"),
        Reacted::Nothing => tracing::debug!(%ticket, "ticket no longer waits for routing"),
        Reacted::Refused(refusal) => {
            tracing::warn!(%ticket, reason = %refusal, "route refused");
        }
    }
    Ok(())
}

fn log(ticket: helpline_domain::TicketId, decision: &Decision) {
    let rule = decision.rule.as_str();
    match (&decision.destination, decision.fallback) {
        (Destination::Queue(queue), Some(why)) => {
            tracing::warn!(%ticket, rule, %queue, reason = %why, "store rule found no store, queued in the default queue");
        }
        (Destination::Queue(queue), None) => tracing::info!(%ticket, rule, %queue, "ticket queued"),
        (Destination::Store(referral), _) => {
            tracing::info!(%ticket, rule, store = %referral.store, "ticket referred to store");
        }
    }
}
