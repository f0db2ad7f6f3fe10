//! The egress service: the durable consumer `egress` over every ticket's events.
//!
//! - `CustomerMessageReceived`: remembers the event's `occurred_at` as the ticket's last
//!   customer message (KV key `last-inbound.<ticket>`), for WhatsApp's 24-hour window.
//! - `BotMessageSent` / `AgentMessageSent`: sends the text (and the bot's choices) to the
//!   ticket's customer and appends `MessageDelivered` or `MessageDeliveryFailed` (see the
//!   module doc of [`crate::egress`] for the exactly-once protocol around the KV key
//!   `<message id>`).
//!   A message the provider accepted also gets a reverse entry, [`provider_key`] →
//!   [`ProviderEntry`], by which ingress finds the ticket of a later receipt.
//! - Everything else is acknowledged untouched.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use helpline_domain::{Channel, Command, Event, MessageBody, MessageId, QuickReply, TicketId};
use helpline_eventstore::{
    CommandMeta, EventStore, ExecuteError, HandlerError, Layout, StoredEvent,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::config::EgressConfig;
use super::error::EgressError;
use super::sender::{Delivery, Sender, TokioClock};
use super::{Form, OutboundMessage};
use crate::intake;

/// The durable consumer's name.
pub const OUTBOUND_CONSUMER: &str = "egress";
/// Namespace of the command ids egress derives (UUIDv5 of message id and outcome).
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6865_6c70_6c69_6e65_2d65_6772_6573_7321);
/// Longest pause between two tries of an outbound bucket write.
const KV_RETRY_CAP: Duration = Duration::from_secs(1);
/// Tries of an append that meets another command's append on the same ticket.
const APPEND_TRIES: u32 = 5;
const LAST_INBOUND_PREFIX: &str = "last-inbound.";

/// `helpline-<region>-outbound`: message id → what the provider answered;
/// `last-inbound.<ticket>` → when the customer last wrote (Unix milliseconds); and
/// [`provider_key`] → [`ProviderEntry`] for every message a provider accepted.
pub fn outbound_bucket(layout: &Layout) -> String {
    format!("helpline-{}-outbound", layout.region())
}

/// The outbound bucket's key of a provider's message id:
/// `provider.<channel>.<hex SHA-256 of the id>`, a valid KV key whatever the id holds.
pub fn provider_key(channel: Channel, provider_message_id: &str) -> String {
    format!("provider.{}", intake::key(channel, provider_message_id))
}

/// Which ticket and message a provider's message id belongs to, written under
/// [`provider_key`] before the outbound record, as JSON `{"ticket":…,"message":…}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEntry {
    pub ticket: TicketId,
    pub message: MessageId,
}

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
    let bucket = open_bucket(&store).await?;
    let egress = Arc::new(Egress {
        store: store.clone(),
        sender,
        bucket,
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
pub(crate) async fn open_bucket(store: &EventStore) -> Result<kv::Store, EgressError> {
    let name = outbound_bucket(store.layout());
    store
        .jetstream()
        .create_or_update_key_value(kv::Config {
            bucket: name.clone(),
            description: format!(
                "helpline {} egress: provider answers per message, last customer message per ticket",
                store.layout().region()
            ),
            history: 1,
            storage: StorageType::File,
            num_replicas: store.config().replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| EgressError::Bucket {
            bucket: name,
            reason: e.to_string(),
        })
}

/// What the provider said about a message, kept under its message id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OutboundRecord {
    #[serde(flatten)]
    outcome: Recorded,
    /// True once the matching event is in the ticket's log.
    recorded: bool,
    /// The reverse entry ([`provider_key`]) of an accepted message, written right after
    /// this record, and again on a redelivery that finds the record not yet recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Recorded {
    Delivered {
        provider_message_id: String,
    },
    /// A permanent failure; transient ones leave no record, so they are tried again.
    Failed {
        reason: String,
    },
}

/// What a bot or agent message says: its body and, for the bot's, the step and buttons.
#[derive(Clone, Copy)]
struct Said<'a> {
    body: &'a MessageBody,
    prompt: &'a str,
    choices: &'a [QuickReply],
}

struct Egress {
    store: EventStore,
    sender: Sender,
    bucket: kv::Store,
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
                };
                self.deliver(&event, *message, said).await
            }
            Event::AgentMessageSent { message, body, .. } => {
                let said = Said {
                    body,
                    prompt: "",
                    choices: &[],
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
        let millis = unix_millis(at);
        let key = last_inbound_key(ticket);
        let known = self.entry(&key).await?.and_then(|v| parse_millis(&v));
        if known.is_some_and(|known| known >= millis) {
            return Ok(());
        }
        self.put(&key, millis.to_string().into_bytes()).await
    }

    async fn deliver(
        &self,
        event: &StoredEvent,
        message: MessageId,
        said: Said<'_>,
    ) -> Result<(), HandlerError> {
        let ticket = event.meta.ticket;
        if let Some(record) = self.record_of(message).await? {
            if record.recorded {
                tracing::debug!(ticket = %ticket, message = %message, "already handled");
                return Ok(());
            }
            tracing::info!(ticket = %ticket, message = %message, "provider answered before, recording the event");
            self.index_provider(ticket, message, record.provider_key.as_deref())
                .await?;
            return self
                .append_and_mark(event, message, record.outcome, record.provider_key)
                .await;
        }
        // Later messages of the ticket wait behind this one while it is retried: the
        // consumer hands a ticket's events over one at a time, in log order.
        let last_delivery = event.delivered >= self.store.config().max_deliver;
        let (delivery, channel) = match self.outbound(ticket, message, said).await? {
            Ok(outbound) => {
                let delivery = self.sender.send(&outbound, &self.shutdown).await;
                log_delivery(&outbound, &delivery);
                (delivery, Some(outbound.channel))
            }
            Err(reason) => {
                tracing::warn!(ticket = %ticket, message = %message, %reason, "message cannot be sent");
                (Delivery::Permanent { reason }, None)
            }
        };
        let outcome = match delivery {
            Delivery::Accepted {
                provider_message_id,
                ..
            } => Recorded::Delivered {
                provider_message_id,
            },
            Delivery::Permanent { reason } => Recorded::Failed { reason },
            Delivery::Exhausted { reason } => {
                if last_delivery && !self.shutdown.is_cancelled() {
                    // The event goes to the dead letters now; the ticket learns of it.
                    let command = Command::RecordDeliveryFailure {
                        message,
                        reason: reason.clone(),
                        permanent: false,
                    };
                    self.append(event, message, command, "failed-transient")
                        .await?;
                }
                return Err(HandlerError::Transient(reason));
            }
        };
        let provider_entry = match (&outcome, channel) {
            (
                Recorded::Delivered {
                    provider_message_id,
                },
                Some(channel),
            ) => Some(provider_key(channel, provider_message_id)),
            _ => None,
        };
        // The record first: from here on the message is never sent again. A crash between
        // the provider's acceptance and this one write is the only way to send it twice.
        self.save(
            message,
            &OutboundRecord {
                outcome: outcome.clone(),
                recorded: false,
                provider_key: provider_entry.clone(),
            },
        )
        .await?;
        // Then the reverse entry, so that the message's receipts find it; a redelivery
        // that finds the record unrecorded writes it again.
        self.index_provider(ticket, message, provider_entry.as_deref())
            .await?;
        self.append_and_mark(event, message, outcome, provider_entry)
            .await
    }

    /// Writes the reverse entry of an accepted message (none for a failed one).
    async fn index_provider(
        &self,
        ticket: TicketId,
        message: MessageId,
        key: Option<&str>,
    ) -> Result<(), HandlerError> {
        let Some(key) = key else {
            return Ok(());
        };
        let entry = ProviderEntry { ticket, message };
        let value = serde_json::to_vec(&entry).map_err(|e| {
            HandlerError::Permanent(format!("cannot encode the provider entry: {e}"))
        })?;
        self.put(key, value).await
    }

    /// The message as the ticket says, or why it cannot be sent at all.
    async fn outbound(
        &self,
        ticket: TicketId,
        message: MessageId,
        said: Said<'_>,
    ) -> Result<Result<OutboundMessage, String>, HandlerError> {
        let MessageBody::Text(text) = said.body else {
            return Ok(Err(
                "egress sends text only; media and locations are not supported yet".to_owned(),
            ));
        };
        let loaded = self.store.load(ticket).await?;
        if loaded.ticket.erased {
            return Ok(Err("the customer was erased".to_owned()));
        }
        let Some(customer) = loaded.ticket.customer else {
            return Err(HandlerError::Permanent(format!(
                "ticket {ticket} has no customer: it was never opened"
            )));
        };
        let customer_last_message_at = if customer.channel == Channel::WhatsApp {
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
            language: loaded.ticket.language,
            customer_last_message_at,
        }))
    }

    /// Appends the event for `outcome`, then marks the record as recorded.
    async fn append_and_mark(
        &self,
        event: &StoredEvent,
        message: MessageId,
        outcome: Recorded,
        provider_key: Option<String>,
    ) -> Result<(), HandlerError> {
        let (command, tag) = match &outcome {
            Recorded::Delivered {
                provider_message_id,
            } => (
                Command::RecordDelivery {
                    message,
                    provider_message_id: provider_message_id.clone(),
                },
                "delivered",
            ),
            Recorded::Failed { reason } => (
                Command::RecordDeliveryFailure {
                    message,
                    reason: reason.clone(),
                    permanent: true,
                },
                "failed",
            ),
        };
        self.append(event, message, command, tag).await?;
        let marked = OutboundRecord {
            outcome,
            recorded: true,
            provider_key,
        };
        if let Err(e) = self.save(message, &marked).await {
            // A redelivery appends again, with the same command id, and dedupes.
            tracing::warn!(message = %message, error = %e, "outbound record not marked as recorded");
        }
        Ok(())
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
        tracing::debug!(ticket = %ticket, message = %message, outcome = tag, duplicate = appended.duplicate, "outcome appended");
        Ok(())
    }

    async fn record_of(&self, message: MessageId) -> Result<Option<OutboundRecord>, HandlerError> {
        let Some(value) = self.entry(&message.0.to_string()).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&value).map(Some).map_err(|e| {
            // Sending anyway could send twice; a person has to look.
            HandlerError::Permanent(format!("unreadable outbound record for {message}: {e}"))
        })
    }

    async fn save(&self, message: MessageId, record: &OutboundRecord) -> Result<(), HandlerError> {
        let value = serde_json::to_vec(record)
            .map_err(|e| HandlerError::Permanent(format!("cannot encode the record: {e}")))?;
        self.put(&message.0.to_string(), value).await
    }

    async fn last_customer_message(
        &self,
        ticket: TicketId,
    ) -> Result<Option<SystemTime>, HandlerError> {
        let value = self.entry(&last_inbound_key(ticket)).await?;
        Ok(value
            .and_then(|v| parse_millis(&v))
            .map(|millis| UNIX_EPOCH + Duration::from_millis(millis)))
    }

    async fn entry(&self, key: &str) -> Result<Option<bytes::Bytes>, HandlerError> {
        match self.bucket.entry(key).await {
            // A deleted or purged key reads as absent.
            Ok(Some(entry)) if entry.operation == kv::Operation::Put => Ok(Some(entry.value)),
            Ok(_) => Ok(None),
            Err(e) => Err(HandlerError::Transient(format!(
                "outbound bucket unreadable: {e}"
            ))),
        }
    }

    /// Writes `key`, trying again until the bucket takes it or egress stops: after a
    /// provider's acceptance, a lost write is what would make a redelivery send twice, so
    /// a store outage (a NATS restart) holds this ticket back rather than giving up. Only
    /// this ticket waits: the consumer goes on with the others.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), HandlerError> {
        let value = bytes::Bytes::from(value);
        let mut delay = Duration::from_millis(50);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.bucket.put(key, value.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) if !self.shutdown.is_cancelled() => {
                    tracing::warn!(tries, error = %e, "outbound bucket write failed, retrying");
                    self.sender.clock().sleep(delay).await;
                    delay = delay.saturating_mul(2).min(KV_RETRY_CAP);
                }
                Err(e) => {
                    return Err(HandlerError::Transient(format!(
                        "outbound bucket write failed: {e}"
                    )));
                }
            }
        }
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
            tracing::info!(ticket = %message.ticket, message = %message.message, channel, attempts, template = *form == Form::Template, "message delivered");
        }
        Delivery::Permanent { reason } => {
            tracing::warn!(ticket = %message.ticket, message = %message.message, channel, %reason, "message refused");
        }
        Delivery::Exhausted { reason } => {
            tracing::warn!(ticket = %message.ticket, message = %message.message, channel, %reason, "message not delivered yet, will be retried");
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

fn last_inbound_key(ticket: TicketId) -> String {
    format!("{LAST_INBOUND_PREFIX}{}", ticket.0)
}

fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn parse_millis(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
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

    #[test]
    fn records_round_trip_as_tagged_json() {
        let record = OutboundRecord {
            outcome: Recorded::Delivered {
                provider_message_id: "wamid.1".to_owned(),
            },
            recorded: false,
            provider_key: None,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            json,
            r#"{"outcome":"delivered","provider_message_id":"wamid.1","recorded":false}"#
        );
        assert_eq!(
            serde_json::from_str::<OutboundRecord>(&json).unwrap(),
            record
        );
    }

    #[test]
    fn keys_and_times() {
        let ticket = TicketId(Uuid::from_u128(1));
        assert_eq!(
            last_inbound_key(ticket),
            "last-inbound.00000000-0000-0000-0000-000000000001"
        );
        let at = UNIX_EPOCH + Duration::from_millis(1_764_082_800_123);
        assert_eq!(unix_millis(at), 1_764_082_800_123);
        assert_eq!(parse_millis(b"1764082800123"), Some(1_764_082_800_123));
        assert_eq!(parse_millis(b"soon"), None);
        assert_eq!(
            outbound_bucket(&Layout::new("de").unwrap()),
            "helpline-de-outbound"
        );
    }

    #[test]
    fn provider_keys_hash_the_id_per_channel() {
        let key = provider_key(Channel::WhatsApp, "wamid.HBgL Ü/*>");
        let (prefix, hash) = key.rsplit_once('.').unwrap();
        assert_eq!(prefix, "provider.whatsapp");
        assert_eq!(hash.len(), 64);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(
            provider_key(Channel::Viber, "5"),
            "provider.viber.ef2d127de37b942baad06145e54b0c619a1f22327b2ebbcfbec78f5564afe39d"
        );
        assert_ne!(
            provider_key(Channel::Viber, "5"),
            provider_key(Channel::Telegram, "5")
        );
    }

    #[test]
    fn provider_entries_are_json_of_two_uuids() {
        let entry = ProviderEntry {
            ticket: TicketId(Uuid::from_u128(1)),
            message: MessageId(Uuid::from_u128(2)),
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            json,
            r#"{"ticket":"00000000-0000-0000-0000-000000000001","message":"00000000-0000-0000-0000-000000000002"}"#
        );
        assert_eq!(serde_json::from_str::<ProviderEntry>(&json).unwrap(), entry);
    }
}
