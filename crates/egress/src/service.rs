//! The egress service: the durable consumer `egress` over every ticket's events.
//!
//! - `CustomerMessageReceived`: remembers the event's `occurred_at` as the ticket's last
//!   customer message, in memory, for WhatsApp's 24-hour window (a ticket this process
//!   has not seen a customer message of reads it from the log).
//! - `BotMessageSent` / `AgentMessageSent` / `NotificationSent`: sends the text (and the bot's choices) to the
//!   ticket's customer unless the ticket lists an outcome for the message, and appends
//!   `MessageDelivered` or `MessageDeliveryFailed` (see [the crate's
//!   doc](crate) for the exactly-once protocol).
//!   A message the provider accepted also gets a reverse entry, [`provider_key`] →
//!   [`ProviderEntry`], by which ingress finds the ticket of a later receipt, on the
//!   channels whose providers send receipts (not Telegram, not Apple:
//!   [`helpline_channels::sends_receipts`]). The key names the provider's id by its keyed
//!   pseudonym: a WhatsApp `wamid` carries the customer's number.
//! - Everything else is acknowledged untouched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv;
use helpline_domain::notify::NotificationKind;
use helpline_domain::{Channel, Command, Event, MessageBody, MessageId, QuickReply, TicketId};
use helpline_eventstore::{
    CommandMeta, EventStore, ExecuteError, HandlerError, LoadedTicket, StoredEvent,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use helpline_channels::{Form, NotificationMeans, OutboundMessage, Reason};
use helpline_eventstore::outbound::{self, ProviderEntry, provider_key};

use crate::config::EgressConfig;
use crate::error::EgressError;
use crate::sender::{Delivery, Sender, TokioClock};

/// The durable consumer's name.
pub const OUTBOUND_CONSUMER: &str = "egress";
/// Namespace of the command ids egress derives (UUIDv5 of message id and outcome).
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6865_6c70_6c69_6e65_2d65_6772_6573_7321);
/// Longest pause between two tries of a write after a provider's acceptance.
const WRITE_RETRY_CAP: Duration = Duration::from_secs(1);
/// Tries of an append that meets another command's append on the same ticket.
const APPEND_TRIES: u32 = 5;
/// How long before its turn a notification reads its ticket again: enough for a load, so
/// that it still goes out on time.
const NOTIFICATION_READ_AHEAD: Duration = Duration::from_millis(100);
/// How late a notification may wake for its turn and still take it.
const NOTIFICATION_LATE: Duration = Duration::from_millis(20);
/// Tickets whose last customer message one process remembers; beyond this it starts over.
const LAST_INBOUND_REMEMBERED: usize = 100_000;

/// Runs egress until `shutdown` fires: creates (or updates) the outbound bucket, then
/// consumes every ticket's events through the durable consumer [`OUTBOUND_CONSUMER`].
///
/// Sending needs a rustls crypto provider installed in the process (the binary installs
/// ring at start).
pub async fn run(
    store: EventStore,
    config: EgressConfig,
    shutdown: CancellationToken,
) -> Result<(), EgressError> {
    let sender = Sender::new(&config, Arc::new(TokioClock))?;
    let bucket = outbound::open_bucket(&store).await?;
    let egress = Arc::new(Egress {
        store: store.clone(),
        sender,
        bucket,
        // At its full size from the start (clearing keeps it): growing it would move every
        // entry at once under the lock each consumer's customer message waits on.
        last_inbound: Mutex::new(HashMap::with_capacity(LAST_INBOUND_REMEMBERED)),
        shutdown: shutdown.clone(),
    });
    let subscription = store
        .subscribe(
            OUTBOUND_CONSUMER,
            &store.layout().all_tickets(),
            move |event| {
                let egress = Arc::clone(&egress);
                async move { egress.handle(event).await }
            },
        )
        .await?;
    tracing::info!(consumer = OUTBOUND_CONSUMER, "egress running");
    shutdown.cancelled().await;
    subscription.stop().await;
    tracing::info!(consumer = OUTBOUND_CONSUMER, "egress stopped");
    Ok(())
}

/// Creates (or updates) and opens the outbound bucket; ingress opens it the same way to
/// read [`ProviderEntry`]s, whichever of the two starts first.
/// What the provider said about a message.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Delivered {
        provider_message_id: String,
    },
    /// A permanent failure; transient ones record nothing, so they are tried again.
    Failed {
        reason: Reason,
    },
}

/// What a bot or agent message says: its body and, for the bot's, the step and buttons;
/// for a notification, what it goes out as outside the customer's window.
#[derive(Clone)]
struct Said<'a> {
    body: &'a MessageBody,
    prompt: &'a str,
    choices: &'a [QuickReply],
    notification: Option<NotificationMeans>,
    /// A notification's kind: its consent is checked again just before it goes out.
    kind: Option<NotificationKind>,
}

struct Egress {
    store: EventStore,
    sender: Sender,
    bucket: kv::Store,
    /// Ticket → when its customer last wrote, as this process saw it in the log.
    last_inbound: Mutex<HashMap<TicketId, SystemTime>>,
    shutdown: CancellationToken,
}

impl Egress {
    async fn handle(&self, event: StoredEvent) -> Result<(), HandlerError> {
        match &event.event {
            Event::CustomerMessageReceived { .. } => {
                self.note_customer_message(event.meta.ticket, event.meta.occurred_at)
                    .await
            }
            Event::BotMessageSent {
                message,
                body,
                prompt,
                choices,
            } => {
                let said = Said {
                    body,
                    prompt,
                    choices,
                    notification: None,
                    kind: None,
                };
                self.deliver(&event, *message, said).await
            }
            Event::AgentMessageSent { message, body, .. } => {
                let said = Said {
                    body,
                    prompt: "",
                    choices: &[],
                    notification: None,
                    kind: None,
                };
                self.deliver(&event, *message, said).await
            }
            Event::NotificationSent {
                message,
                template,
                kind,
                body,
                whatsapp_template,
                message_tag,
            } => {
                let said = Said {
                    body,
                    prompt: template,
                    choices: &[],
                    notification: Some(NotificationMeans {
                        whatsapp_template: whatsapp_template.clone(),
                        message_tag: message_tag.clone(),
                    }),
                    kind: Some(*kind),
                };
                self.deliver(&event, *message, said).await
            }
            _ => Ok(()),
        }
    }

    /// Keeps the latest customer message time of the ticket; an older one (a replay)
    /// never overwrites a newer one.
    async fn note_customer_message(
        &self,
        ticket: TicketId,
        at: SystemTime,
    ) -> Result<(), HandlerError> {
        let mut last = self
            .last_inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.len() >= LAST_INBOUND_REMEMBERED && !last.contains_key(&ticket) {
            last.clear();
        }
        let known = last.entry(ticket).or_insert(at);
        *known = (*known).max(at);
        Ok(())
    }

    async fn deliver(
        &self,
        event: &StoredEvent,
        message: MessageId,
        said: Said<'_>,
    ) -> Result<(), HandlerError> {
        let ticket = event.meta.ticket;
        let loaded = match self.store.cached(ticket) {
            // Only a handler of this very event records its messages' outcomes, so on
            // the event's first delivery a hot state that has folded the event knows
            // every outcome there is: none.
            Some(hot)
                if event.delivered == 1 && !event.replayed && hot.version >= event.sequence =>
            {
                hot
            }
            // A redelivery or a replay must see every outcome recorded, by whichever
            // process recorded it.
            _ => self.store.load(ticket).await?,
        };
        if let Some(outcome) = loaded.ticket.outcomes.get(&message) {
            tracing::debug!(ticket = %ticket, message_id = %message, "already handled");
            // The reverse entry follows the event: a crash between them leaves it to
            // the redelivery. An erased customer's receipts need no entry.
            if let (Some(Ok(provider_message_id)), Some(customer)) = (
                outcome.as_ref().map(|id| id.read()),
                &loaded.ticket.customer,
            ) && let Some(key) = self.reverse_key(customer.channel, provider_message_id)
            {
                self.index_provider(ticket, message, &key).await?;
            }
            return Ok(());
        }
        // Later messages of the ticket wait behind this one while it is retried: the
        // consumer hands a ticket's events over one at a time, in log order.
        let last_delivery = event.delivered >= self.store.config().max_deliver;
        // A notification waits for its turn in the channel's pace, and reads the ticket and
        // the customer's consent again just before it (in `outbound`): a customer who said
        // stop or closed the conversation while it waited gets nothing. The reads happen
        // ahead of the turn, so that the provider sees the pace, not the reads' delays.
        let prepared = match (said.kind, &loaded.ticket.customer) {
            (Some(_), Some(customer)) => {
                let slot = self.sender.notification_slot(customer.channel);
                let ready = slot.checked_sub(NOTIFICATION_READ_AHEAD).unwrap_or(slot);
                if !self.sender.wait_until(ready, &self.shutdown).await {
                    return Err(HandlerError::Transient(
                        "egress is shutting down".to_owned(),
                    ));
                }
                let reread = self.store.load(ticket).await?;
                let prepared = self.outbound(&reread, ticket, message, said).await?;
                let mut slot = slot;
                loop {
                    if !self.sender.wait_until(slot, &self.shutdown).await {
                        return Err(HandlerError::Transient(
                            "egress is shutting down".to_owned(),
                        ));
                    }
                    // Woken late (a stall): so were the turns after this one, and all
                    // going now would be a burst; a late one takes a new turn instead.
                    if self.sender.clock().now() <= slot + NOTIFICATION_LATE {
                        break;
                    }
                    slot = self.sender.notification_slot(customer.channel);
                }
                prepared
            }
            _ => self.outbound(&loaded, ticket, message, said).await?,
        };
        // Retries with the provider stop when this process lets the ticket go (or stops):
        // its next owner sends the message, before the ticket's later ones.
        let stop = event.let_go.as_ref().unwrap_or(&self.shutdown);
        let (delivery, channel) = match prepared {
            Ok(outbound) => {
                let delivery = self
                    .sender
                    .send(&outbound, stop, &|| event.outlived())
                    .await;
                log_delivery(&outbound, &delivery);
                (delivery, Some(outbound.channel))
            }
            Err(reason) => {
                tracing::warn!(ticket = %ticket, message_id = %message, %reason, "message cannot be sent");
                let reason = Reason::ours(reason);
                (Delivery::Permanent { reason }, None)
            }
        };
        let outcome = match delivery {
            Delivery::Accepted {
                provider_message_id,
                ..
            } => Outcome::Delivered {
                provider_message_id,
            },
            Delivery::Permanent { reason } => Outcome::Failed { reason },
            Delivery::Exhausted { reason } => {
                // Not when stopped, handed over or lost to a redelivery: the message is
                // not given up on, its next handling sends it.
                if last_delivery
                    && !self.shutdown.is_cancelled()
                    && !stop.is_cancelled()
                    && !event.outlived()
                {
                    // The event goes to the dead letters now; the ticket learns of it.
                    let command = Command::RecordDeliveryFailure {
                        message,
                        reason: reason.recorded().into(),
                        permanent: false,
                    };
                    self.append(event, message, command, "failed-transient")
                        .await?;
                }
                // The summary only: a handler's error is logged and becomes the dead
                // letter's reason header, and the provider's words may name the customer.
                return Err(HandlerError::Transient(reason.to_string()));
            }
        };
        // The event is the record: once it is in the log the message is never sent
        // again. A crash between the provider's acceptance and this one append is the
        // only way to send it twice. The reverse entry goes out at the same time.
        let (command, tag, reverse) = match (&outcome, channel) {
            (
                Outcome::Delivered {
                    provider_message_id,
                },
                Some(channel),
            ) => (
                Command::RecordDelivery {
                    message,
                    provider_message_id: provider_message_id.clone().into(),
                },
                "delivered",
                self.reverse_key(channel, provider_message_id),
            ),
            (Outcome::Delivered { .. }, None) => {
                return Err(HandlerError::Permanent(
                    "a message was delivered on no channel".to_owned(),
                ));
            }
            (Outcome::Failed { reason }, _) => (
                Command::RecordDeliveryFailure {
                    message,
                    reason: reason.recorded().into(),
                    permanent: true,
                },
                "failed",
                None,
            ),
        };
        let record = self.record(event, message, command, tag);
        match reverse {
            Some(key) => {
                futures::try_join!(record, self.index_provider(ticket, message, &key))?;
            }
            None => record.await?,
        }
        Ok(())
    }

    /// The reverse entry's key for a message `channel`'s provider accepted as
    /// `provider_message_id`; none where the provider never reports on a message after
    /// accepting it, so nothing needs a way back to it.
    fn reverse_key(&self, channel: Channel, provider_message_id: &str) -> Option<String> {
        helpline_channels::sends_receipts(channel).then(|| {
            provider_key(
                channel,
                &self.store.provider_ref(channel, provider_message_id),
            )
        })
    }

    /// Writes the reverse entry of an accepted message, trying until the bucket takes it.
    async fn index_provider(
        &self,
        ticket: TicketId,
        message: MessageId,
        key: &str,
    ) -> Result<(), HandlerError> {
        let entry = ProviderEntry { ticket, message };
        let value = serde_json::to_vec(&entry).map_err(|e| {
            HandlerError::Permanent(format!("cannot encode the provider entry: {e}"))
        })?;
        let value = bytes::Bytes::from(value);
        self.until_written(|| async {
            self.bucket
                .put(key, value.clone())
                .await
                .map(|_| ())
                .map_err(|e| format!("outbound bucket write failed: {e}"))
        })
        .await
    }

    /// Appends the outcome of a message the provider answered, trying until the log takes
    /// it: a lost record is what would make a redelivery send twice, so a store outage (a
    /// NATS restart) holds this ticket back rather than giving up. Only this ticket
    /// waits: the consumer goes on with the others.
    async fn record(
        &self,
        event: &StoredEvent,
        message: MessageId,
        command: Command,
        tag: &str,
    ) -> Result<(), HandlerError> {
        self.until_written(|| async {
            match self.append(event, message, command.clone(), tag).await {
                Err(HandlerError::Transient(reason)) => Err(reason),
                Err(permanent) => Ok(Err(permanent)),
                Ok(()) => Ok(Ok(())),
            }
        })
        .await?
    }

    /// Runs `write` until it succeeds or egress stops, with backoff.
    async fn until_written<T, F, Fut>(&self, mut write: F) -> Result<T, HandlerError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let mut delay = Duration::from_millis(50);
        let mut tries = 0;
        loop {
            tries += 1;
            match write().await {
                Ok(done) => return Ok(done),
                Err(reason) if !self.shutdown.is_cancelled() => {
                    tracing::warn!(tries, error = %reason, "write after the provider's answer failed, retrying");
                    self.sender.clock().sleep(delay).await;
                    delay = delay.saturating_mul(2).min(WRITE_RETRY_CAP);
                }
                Err(reason) => return Err(HandlerError::Transient(reason)),
            }
        }
    }

    /// The message as the ticket says, or why it cannot be sent at all.
    async fn outbound(
        &self,
        loaded: &LoadedTicket,
        ticket: TicketId,
        message: MessageId,
        said: Said<'_>,
    ) -> Result<Result<OutboundMessage, String>, HandlerError> {
        let MessageBody::Text(text) = said.body else {
            return Ok(Err(
                "egress sends text only; media and locations are not supported yet".to_owned(),
            ));
        };
        if loaded.ticket.erased {
            return Ok(Err("the customer was erased".to_owned()));
        }
        // Apple's rule, and any customer's wish: after they closed the conversation,
        // nothing until they write again. Failed for good, so the agent sees it.
        if loaded.ticket.customer_closed {
            return Ok(Err(
                "the customer closed the conversation; nothing is sent until they write again"
                    .to_owned(),
            ));
        }
        let Some(customer) = loaded.ticket.customer.clone() else {
            return Err(HandlerError::Permanent(format!(
                "ticket {ticket} has no customer: it was never opened"
            )));
        };
        // A campaign is paced: minutes may pass between a notification's queueing and its
        // turn, and a customer who said stop meanwhile gets nothing.
        if let Some(kind) = said.kind {
            let pseudonym = self
                .store
                .customer_id(customer.channel, customer.contact.expose());
            let consent = self.store.consent(&pseudonym).await?.consent;
            if consent.refuses(kind).is_some() {
                return Ok(Err(
                    "the customer opted out of notifications after this one was queued".to_owned(),
                ));
            }
        }
        // The channels with a 24-hour window: WhatsApp always, Messenger for a
        // notification's tag.
        let windowed = customer.channel == Channel::WhatsApp
            || (customer.channel == Channel::Messenger && said.notification.is_some());
        let customer_last_message_at = if windowed {
            self.last_customer_message(ticket).await?
        } else {
            None
        };
        Ok(Ok(OutboundMessage {
            ticket,
            message,
            channel: customer.channel,
            contact: customer.contact.into_inner(),
            text: text.expose().clone(),
            prompt: said.prompt.to_owned(),
            choices: said.choices.to_vec(),
            language: loaded.ticket.language.clone(),
            customer_last_message_at,
            notification: said.notification,
        }))
    }

    /// Decides and appends `command` on the event's ticket, reloading on conflicts. The
    /// command id is derived from the message and `tag`, so a retry dedupes.
    async fn append(
        &self,
        event: &StoredEvent,
        message: MessageId,
        command: Command,
        tag: &str,
    ) -> Result<(), HandlerError> {
        let ticket = event.meta.ticket;
        let meta = CommandMeta::new(command_id(message, tag), self.sender.clock().system_now())
            .caused_by(event.meta.event_id.to_string())
            .correlated_with(event.meta.correlation_id.clone());
        let appended = match self
            .store
            .execute(ticket, &meta, APPEND_TRIES, |_| {
                Ok::<_, std::convert::Infallible>(vec![command.clone()])
            })
            .await
        {
            Ok(executed) => executed.appended,
            Err(ExecuteError::Domain(refusal)) => {
                return Err(HandlerError::Permanent(refusal.to_string()));
            }
            Err(ExecuteError::Store(e)) => return Err(e.into()),
            Err(ExecuteError::Refused(never)) => match never {},
        };
        tracing::debug!(ticket = %ticket, message_id = %message, outcome = tag, duplicate = appended.duplicate, "outcome appended");
        Ok(())
    }

    /// When the ticket's customer last wrote: remembered from the log as this process
    /// followed it, or else read from the ticket's events.
    async fn last_customer_message(
        &self,
        ticket: TicketId,
    ) -> Result<Option<SystemTime>, HandlerError> {
        let remembered = self
            .last_inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&ticket)
            .copied();
        if remembered.is_some() {
            return Ok(remembered);
        }
        let last = self.store.last_customer_message(ticket).await?;
        if let Some(at) = last {
            self.note_customer_message(ticket, at).await?;
        }
        Ok(last)
    }
}

fn log_delivery(message: &OutboundMessage, delivery: &Delivery) {
    let channel = message.channel.as_str();
    let outcome = match delivery {
        Delivery::Accepted { .. } => "delivered",
        Delivery::Permanent { .. } => "refused",
        Delivery::Exhausted { .. } => "retried",
    };
    helpline_telemetry::metrics::increment(
        "helpline_egress_messages_total",
        "Messages to customers by channel and outcome (delivered, refused, retried later).",
        &[("channel", channel), ("outcome", outcome)],
    );
    match delivery {
        Delivery::Accepted { form, attempts, .. } => {
            // Per message, so debug: the ticket's log records the delivery.
            tracing::debug!(ticket = %message.ticket, message_id = %message.message, channel, attempts, template = *form == Form::Template, "message delivered");
        }
        Delivery::Permanent { reason } => {
            tracing::warn!(ticket = %message.ticket, message_id = %message.message, channel, %reason, "message refused");
        }
        Delivery::Exhausted { reason } => {
            tracing::warn!(ticket = %message.ticket, message_id = %message.message, channel, %reason, "message not delivered yet, will be retried");
        }
    }
}

/// The command id of an outcome: the same for every retry of the same message.
fn command_id(message: MessageId, outcome: &str) -> Uuid {
    Uuid::new_v5(
        &COMMAND_NAMESPACE,
        format!("{}:{outcome}", message.0).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn command_ids_are_stable_per_message_and_outcome() {
        let message = MessageId(Uuid::from_u128(42));
        let other = MessageId(Uuid::from_u128(43));
        assert_eq!(
            command_id(message, "delivered"),
            command_id(message, "delivered")
        );
        assert_ne!(
            command_id(message, "delivered"),
            command_id(message, "failed")
        );
        assert_ne!(
            command_id(message, "delivered"),
            command_id(other, "delivered")
        );
        assert_eq!(command_id(message, "delivered").get_version_num(), 5);
    }
}
