//! The bot service: two durable consumers.
//!
//! - [`CONSUMER`] over every ticket's events: answers the events the conversation reacts
//!   to through [`EventStore::react`] (once per event, however often it is delivered),
//!   and arms the ticket's silence timer on `TicketOpened`, `CustomerMessageReceived`
//!   and `RatingRequested` (once for a ticket opened by the customer's first message:
//!   the opening and the message are one message of the log).
//! - [`TIMER_CONSUMER`] over the timer stream `HELPLINE_<REGION>_TIMERS`: one subject per
//!   ticket, `helpline.<region>.timer.<ticket>`, holding only the latest deadline (a
//!   newer one replaces the older), as a work queue (an acknowledged timer is removed).
//!   A timer not yet due is handed back with a delayed nak; a due one lets the
//!   conversation decide (abandon, close unrated, or nothing when the customer wrote
//!   since), then is acknowledged.
//!
//! A customer's message that is only a stop or start word ("STOP", "Abmelden", "START" in
//! any of the region's languages) changes their consent to notifications, in their own
//! ledger, before the conversation confirms it.
//!
//! Both consumers and the stream are durable, so timers survive restarts of the bot.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt;
use helpline_domain::notify::{ConsentSource, Scope};
use helpline_domain::{Event, MessageBody, MessageId, TicketId};
use helpline_eventstore::consent::ConsentSignal;
use helpline_eventstore::{
    Cause, EventStore, HandlerError, Reacted, StoreError, StoredEvent, reaction_id,
};
use helpline_region::RegionConfig;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::conversation::{Trigger, reacts_to, respond};
use crate::flows::Flows;

/// The durable consumer of ticket events, and the service name of its reactions.
pub const CONSUMER: &str = "bot";
/// The durable consumer of the timer stream.
pub const TIMER_CONSUMER: &str = "bot-timers";
/// How long a fetched timer stays with one bot before it is delivered again.
const TIMER_ACK_WAIT: Duration = Duration::from_secs(5);
/// The service name of reactions to a timer.
const TIMER_SERVICE: &str = "bot-timer";
/// Pause before pulling again after the timer consumer failed.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Why the bot cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not create or update {what}: {reason}")]
    Setup { what: String, reason: String },
}

/// A ticket's silence deadline, as stored on its timer subject (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub ticket: TicketId,
    /// Unix milliseconds.
    pub due_at: u64,
    /// The ticket's customer messages when the timer was armed: more by the time it is
    /// due means the customer wrote since.
    pub customer_messages: u32,
    /// The stream sequence of the event that armed it: an earlier reaction to the timer
    /// can only be after it.
    #[serde(default)]
    pub sequence: u64,
    #[serde(default)]
    pub correlation_id: String,
}

/// `HELPLINE_<REGION>_TIMERS`.
pub fn timer_stream(store: &EventStore) -> String {
    format!("{}_TIMERS", store.layout().event_stream())
}

/// `helpline.<region>.timer.<ticket>`.
pub fn timer_subject(store: &EventStore, ticket: TicketId) -> String {
    format!("helpline.{}.timer.{}", store.layout().region(), ticket.0)
}

/// Runs the bot until `shutdown` fires: creates (or updates) the timer stream and both
/// consumers, answers ticket events and fires due timers.
pub async fn run(
    store: EventStore,
    region: Arc<RegionConfig>,
    flows: Arc<Flows>,
    shutdown: CancellationToken,
) -> Result<(), BotError> {
    let timers = ensure_timers(&store).await?;
    let bot = Arc::new(Bot {
        store: store.clone(),
        region,
        flows,
    });
    let subscription = {
        let bot = Arc::clone(&bot);
        store
            .subscribe(CONSUMER, &store.layout().all_tickets(), move |event| {
                let bot = Arc::clone(&bot);
                async move { bot.handle(event).await }
            })
            .await?
    };
    let stop_timers = shutdown.child_token();
    let timer_task = tokio::spawn(Arc::clone(&bot).fire_timers(timers, stop_timers.clone()));
    tracing::info!(consumer = CONSUMER, timers = TIMER_CONSUMER, "bot running");
    shutdown.cancelled().await;
    subscription.stop().await;
    stop_timers.cancel();
    if let Err(e) = timer_task.await {
        tracing::error!(consumer = TIMER_CONSUMER, error = %e, "timer task failed");
    }
    tracing::info!(consumer = CONSUMER, "bot stopped");
    Ok(())
}

/// Creates or updates the timer stream and its consumer; idempotent.
async fn ensure_timers(store: &EventStore) -> Result<consumer::Consumer<pull::Config>, BotError> {
    let name = timer_stream(store);
    let setup = |what: &str, e: &dyn std::fmt::Display| BotError::Setup {
        what: what.to_owned(),
        reason: e.to_string(),
    };
    let js = store.jetstream();
    js.create_or_update_stream(stream::Config {
        name: name.clone(),
        description: Some(format!(
            "helpline bot silence timers for region {}: the latest deadline per ticket",
            store.layout().region()
        )),
        subjects: vec![format!("helpline.{}.timer.>", store.layout().region())],
        // A timer handled is acknowledged and gone: the stream holds live deadlines only.
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        num_replicas: store.config().replicas,
        // A newer deadline replaces the older one.
        max_messages_per_subject: 1,
        duplicate_window: store.config().duplicate_window,
        ..Default::default()
    })
    .await
    .map_err(|e| setup(&name, &e))?;
    js.get_stream_no_info(&name)
        .await
        .map_err(|e| setup(&name, &e))?
        .create_consumer(pull::Config {
            durable_name: Some(TIMER_CONSUMER.to_owned()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            // Short: a timer fetched by a bot that stops before holding it back (or firing
            // it) comes back this soon to the next bot; firing twice is harmless, the
            // reaction is once per timer.
            ack_wait: TIMER_ACK_WAIT,
            // Timers wait as delayed naks until due; none may ever run out of deliveries.
            max_deliver: -1,
            // Every ticket's pending timer counts as unacknowledged; there are many.
            max_ack_pending: -1,
            ..Default::default()
        })
        .await
        .map_err(|e| setup(&format!("consumer {TIMER_CONSUMER}"), &e))
}

struct Bot {
    store: EventStore,
    region: Arc<RegionConfig>,
    flows: Arc<Flows>,
}

impl Bot {
    async fn handle(&self, event: StoredEvent) -> Result<(), HandlerError> {
        // The customer messages the ticket had at this event's message, when this process
        // holds the ticket hot exactly there (as the consumer leaves it for a message that
        // follows on its hot state): what arming the silence timer needs, without a read.
        // Taken before the reaction below moves the hot state on.
        let messages_at_event = self
            .store
            .cached(event.meta.ticket)
            .filter(|hot| hot.version == event.sequence)
            .map(|hot| hot.ticket.customer_messages);
        self.note_consent(&event).await?;
        if reacts_to(&event.event) {
            let now = timestamp(event.meta.occurred_at);
            let cause = Cause::event(&event);
            let reacted = self
                .react(CONSUMER, &cause, Trigger::Event(&event.event), now)
                .await?;
            log_reaction(&cause, event.event.name(), &reacted);
        }
        if matches!(
            event.event,
            Event::TicketOpened { .. }
                | Event::CustomerMessageReceived { .. }
                | Event::RatingRequested { .. }
        ) {
            self.arm(&event, messages_at_event).await?;
        }
        Ok(())
    }

    /// A customer's "STOP" or "START" alone changes their consent to notifications, in
    /// their own ledger (the conversation confirms it). Again is nothing.
    async fn note_consent(&self, event: &StoredEvent) -> Result<(), HandlerError> {
        let Event::CustomerMessageReceived {
            body: MessageBody::Text(text),
            ..
        } = &event.event
        else {
            return Ok(());
        };
        let Some(granted) = self.flows.consent_word(text.expose()) else {
            return Ok(());
        };
        let ticket = self.store.load(event.meta.ticket).await?.ticket;
        let Some(customer) = ticket.customer.filter(|c| !c.contact.is_erased()) else {
            return Ok(());
        };
        let pseudonym = self
            .store
            .customer_id(customer.channel, customer.contact.expose());
        let signal = ConsentSignal {
            scope: Scope::All,
            granted,
            source: ConsentSource::CustomerWords,
        };
        self.store
            .change_consent(
                customer.channel,
                &pseudonym,
                signal,
                &event.meta.event_id.to_string(),
            )
            .await?;
        Ok(())
    }

    /// Appends the conversation's answer to `trigger`, once per (`service`, `cause`).
    /// Bot message ids derive from the reaction, so every try names them the same.
    async fn react(
        &self,
        service: &str,
        cause: &Cause,
        trigger: Trigger<'_>,
        now: jiff::Timestamp,
    ) -> Result<Reacted, StoreError> {
        let reaction = reaction_id(service, cause);
        self.store
            .react(service, cause, |ticket| {
                let mut n = 0u32;
                let mut next_id = || {
                    n += 1;
                    MessageId(Uuid::new_v5(&reaction, &n.to_be_bytes()))
                };
                respond(
                    &self.region,
                    &self.flows,
                    ticket,
                    trigger,
                    now,
                    &mut next_id,
                )
            })
            .await
    }

    /// Publishes the ticket's new silence deadline, the event's time plus the region's
    /// timeout, and waits for the stream to store it. `messages_at_event`: the ticket's
    /// customer messages at the event's message, if known without a read.
    async fn arm(
        &self,
        event: &StoredEvent,
        messages_at_event: Option<u32>,
    ) -> Result<(), HandlerError> {
        let ticket = event.meta.ticket;
        let customer_messages = match (&event.event, messages_at_event) {
            (_, Some(known)) => known,
            (Event::TicketOpened { .. }, None) => 0,
            _ => self.store.load(ticket).await?.ticket.customer_messages,
        };
        // A ticket opened by the customer's first message holds that message in the same
        // message of the log, handled right after this event: it arms the same deadline
        // with the count it makes, so arming for the opening too would only be a second
        // timer to store, hold back and replace.
        if matches!(event.event, Event::TicketOpened { .. }) && customer_messages > 0 {
            return Ok(());
        }
        let timer = Timer {
            ticket,
            due_at: unix_millis(event.meta.occurred_at)
                .saturating_add(self.region.bot.silence_timeout_secs.saturating_mul(1000)),
            customer_messages,
            sequence: event.sequence,
            correlation_id: event.meta.correlation_id.clone(),
        };
        self.publish(&timer, &event.meta.event_id.to_string())
            .await
            .map_err(HandlerError::Transient)
    }

    async fn publish(&self, timer: &Timer, message_id: &str) -> Result<(), String> {
        let payload = serde_json::to_vec(timer).map_err(|e| e.to_string())?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", message_id);
        self.store
            .jetstream()
            .publish_with_headers(
                timer_subject(&self.store, timer.ticket),
                headers,
                payload.into(),
            )
            .await
            .map_err(|e| format!("timer not published: {e}"))?
            .await
            .map_err(|e| format!("timer not stored: {e}"))?;
        tracing::debug!(ticket = %timer.ticket, due_at = timer.due_at, "silence timer armed");
        Ok(())
    }

    /// Pulls timers until `stop` fires; recreates the consumer when it is lost.
    async fn fire_timers(
        self: Arc<Self>,
        mut consumer: consumer::Consumer<pull::Config>,
        stop: CancellationToken,
    ) {
        loop {
            match consumer.messages().await {
                Ok(mut messages) => loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => return,
                        next = messages.next() => next,
                    };
                    match next {
                        Some(Ok(message)) => self.on_timer(message).await,
                        Some(Err(e)) => {
                            tracing::warn!(consumer = TIMER_CONSUMER, error = %e, "pull failed")
                        }
                        None => break,
                    }
                },
                Err(e) => {
                    tracing::warn!(consumer = TIMER_CONSUMER, error = %e, "cannot pull, retrying")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RETRY_PAUSE) => {}
            }
            match ensure_timers(&self.store).await {
                Ok(recreated) => consumer = recreated,
                Err(e) => {
                    tracing::warn!(consumer = TIMER_CONSUMER, error = %e, "cannot recreate consumer")
                }
            }
        }
    }

    /// Waits for a timer that is not due; handles and acknowledges one that is. A timer
    /// that fails is tried again after the store's backoff.
    async fn on_timer(&self, message: Message) {
        let timer: Timer = match serde_json::from_slice(&message.payload) {
            Ok(timer) => timer,
            Err(e) => {
                // Only this service writes timers; an unreadable one can never be handled.
                tracing::error!(subject = %message.subject, error = %e, "unreadable timer dropped");
                settle(&message, AckKind::Term).await;
                return;
            }
        };
        let now = unix_millis(SystemTime::now());
        if timer.due_at > now {
            let wait = Duration::from_millis(timer.due_at - now);
            settle(&message, AckKind::Nak(Some(wait))).await;
            return;
        }
        match self.fire(&timer).await {
            Ok(()) => settle(&message, AckKind::Ack).await,
            Err(e) => {
                tracing::warn!(ticket = %timer.ticket, error = %e, "timer failed, retrying");
                settle(
                    &message,
                    AckKind::Nak(Some(self.store.config().retry_backoff)),
                )
                .await;
            }
        }
    }

    /// The customer was silent until the deadline: the conversation decides what ends.
    async fn fire(&self, timer: &Timer) -> Result<(), StoreError> {
        let cause = Cause {
            ticket: timer.ticket,
            id: format!("{}:{}", timer.ticket, timer.customer_messages),
            after_sequence: timer.sequence,
            correlation_id: timer.correlation_id.clone(),
        };
        let due = timestamp(UNIX_EPOCH + Duration::from_millis(timer.due_at));
        let trigger = Trigger::Silence {
            customer_messages: timer.customer_messages,
        };
        let reacted = self.react(TIMER_SERVICE, &cause, trigger, due).await?;
        log_reaction(&cause, "silence", &reacted);
        if reacted == Reacted::Nothing {
            self.rearm_if_stale(timer).await?;
        }
        Ok(())
    }

    /// A timer armed before a later customer message fired although the later message
    /// should have replaced it (an older event delivered again, after the newer one
    /// armed): arm a fresh deadline so that the ticket still times out.
    async fn rearm_if_stale(&self, timer: &Timer) -> Result<(), StoreError> {
        let loaded = self.store.load(timer.ticket).await?;
        let ticket = loaded.ticket;
        if ticket.phase.is_terminal() || ticket.customer_messages <= timer.customer_messages {
            return Ok(());
        }
        let fresh = Timer {
            due_at: unix_millis(SystemTime::now())
                .saturating_add(self.region.bot.silence_timeout_secs.saturating_mul(1000)),
            customer_messages: ticket.customer_messages,
            sequence: loaded.version,
            ..timer.clone()
        };
        let id = format!("rearm:{}:{}", timer.ticket, ticket.customer_messages);
        self.publish(&fresh, &id)
            .await
            .map_err(StoreError::Unavailable)
    }
}

async fn settle(message: &Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        // The ack wait redelivers the timer, which is handled the same way again.
        tracing::warn!(subject = %message.subject, error = %e, "timer not settled");
    }
}

fn log_reaction(cause: &Cause, trigger: &str, reacted: &Reacted) {
    match reacted {
        Reacted::Appended { events, version } => {
            // Per reaction, so debug: the ticket's log holds what the bot said.
            tracing::debug!(ticket = %cause.ticket, trigger, events, version, "bot answered")
        }
        Reacted::AlreadyDone => {
            tracing::debug!(ticket = %cause.ticket, trigger, "already answered")
        }
        Reacted::Nothing => tracing::debug!(ticket = %cause.ticket, trigger, "nothing to say"),
        Reacted::Refused(e) => {
            tracing::debug!(ticket = %cause.ticket, trigger, reason = %e, "ticket moved on")
        }
    }
}

fn timestamp(at: SystemTime) -> jiff::Timestamp {
    // Times before 1970 or beyond jiff's range do not occur in events; the epoch is a
    // harmless stand-in.
    jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_are_json_with_unix_milliseconds() {
        let timer = Timer {
            ticket: TicketId(Uuid::from_u128(1)),
            due_at: 1_764_082_800_123,
            customer_messages: 2,
            sequence: 42,
            correlation_id: "c".to_owned(),
        };
        let json = serde_json::to_string(&timer).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            json,
            r#"{"ticket":"00000000-0000-0000-0000-000000000001","due_at":1764082800123,"customer_messages":2,"sequence":42,"correlation_id":"c"}"#
        );
        let minimal =
            r#"{"ticket":"00000000-0000-0000-0000-000000000001","due_at":5,"customer_messages":0}"#;
        let parsed: Timer = serde_json::from_str(minimal).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.due_at, 5);
        assert_eq!(unix_millis(UNIX_EPOCH + Duration::from_millis(7)), 7);
    }
}
