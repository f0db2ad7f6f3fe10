//! Providers' receipts on helpline's outbound messages, recorded on their tickets.
//!
//! 1. **What is recorded.** `Read` → `RecordRead`; `Failed` → `RecordDeliveryFailure`,
//!    permanent, with the provider's reason. `Sent` and `Delivered` append nothing:
//!    egress appended `MessageDelivered` when the provider accepted the message.
//! 2. **Dedupe.** `(channel, provider id, status)` is looked up in the inbound dedupe
//!    bucket (24 hours), as customer messages are. Within the stream's two-minute
//!    duplicate window the append dedupes too: its command id is a UUIDv5 of the same.
//! 3. **Which ticket.** Egress writes `provider.<channel>.<provider ref>` → ticket and
//!    message in the outbound bucket beside the outcome of an accepted send. A receipt
//!    without that entry is for a message that is not ours, or one sent before egress
//!    wrote such entries: answered `200`, nothing appended. Messages sent before the
//!    entries were keyed are found under the plain SHA-256 of the provider's id.
//!
//! The provider's id is named everywhere by its keyed pseudonym
//! ([`EventStore::provider_ref`]: dedupe and outbound keys, command and causation ids,
//! logs) and is kept only sealed, in the event; a failure's reason (the provider's words
//! can name the customer) likewise.
//! 4. **Append** through the domain at the loaded version, reloading on conflicts. The
//!    dedupe entry is written last: only an appended receipt counts as seen.

use std::time::SystemTime;

use async_nats::jetstream::kv;
use bytes::Bytes;
use helpline_domain::{Channel, Command, MessageId, TicketId};
use helpline_eventstore::{
    CommandMeta, EventStore, ExecuteError, Executed, ProviderRef, StoreError,
};
use uuid::Uuid;

use helpline_channels::inbound::{Receipt, ReceiptStatus};
use helpline_eventstore::outbound::{
    ProviderEntry, earlier_provider_key, open_bucket, provider_key,
};

/// Tries at appending a receipt that keeps meeting other appends on its ticket.
const APPEND_TRIES: u32 = 16;
/// Namespace of the receipts' command ids (UUIDv5 of channel, provider ref and status).
const NAMESPACE: Uuid = Uuid::from_u128(0x6865_6c70_6c69_6e65_2d72_6563_6569_7074);

/// What became of one receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noted {
    /// Appended to the ticket of the message.
    Appended { ticket: TicketId, version: u64 },
    /// Seen before (a redelivery): nothing appended.
    Duplicate,
    /// A status helpline does not record: sent, or delivered (recorded at acceptance).
    NotRecorded,
    /// Not a message helpline knows: not ours, or sent before reverse entries existed.
    Unknown,
    /// Refused by the ticket's rules; logged, answered 200 so the provider stops retrying.
    Refused,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key-value store: {0}")]
    Kv(String),
}

/// The buckets receipts use, opened once.
#[derive(Clone, Debug)]
pub struct Receipts {
    store: EventStore,
    /// Egress's `helpline-<region>-outbound`, for the reverse entries.
    outbound: kv::Store,
    /// Intake's `helpline-<region>-inbound`, for dedupe.
    seen: kv::Store,
}

impl Receipts {
    /// Opens (creating it if egress has not yet) the outbound bucket; `seen` is intake's
    /// dedupe bucket.
    pub async fn new(store: EventStore, seen: kv::Store) -> Result<Self, ReceiptError> {
        let outbound = open_bucket(&store)
            .await
            .map_err(|e| ReceiptError::Kv(e.to_string()))?;
        Ok(Self {
            store,
            outbound,
            seen,
        })
    }

    /// Records one receipt on the ticket of the message it reports on.
    #[tracing::instrument(skip_all, fields(channel = channel.as_str(), status = status_name(&receipt.status)))]
    pub async fn take(&self, channel: Channel, receipt: &Receipt) -> Result<Noted, ReceiptError> {
        if !is_recorded(&receipt.status) {
            tracing::debug!("receipt not recorded: delivery is recorded when the provider accepts");
            return Ok(Noted::NotRecorded);
        }
        let status = status_name(&receipt.status);
        let id = &receipt.provider_message_id;
        let provider = self.store.provider_ref(channel, id);
        let seen_key = format!("receipt.{}.{provider}.{status}", channel.as_str());
        if self.seen.get(&seen_key).await.map_err(kv_error)?.is_some() {
            tracing::debug!(%provider, "redelivered receipt ignored");
            return Ok(Noted::Duplicate);
        }
        let Some(entry) = self.provider_entry(channel, id, &provider).await? else {
            tracing::debug!(%provider, "receipt for an unknown message ignored");
            return Ok(Noted::Unknown);
        };
        let ProviderEntry { ticket, message } = entry;
        let Some(command) = command_for(&receipt.status, message, id) else {
            // is_recorded said otherwise above; kept total rather than unreachable.
            return Ok(Noted::NotRecorded);
        };
        let meta = CommandMeta::new(command_id(channel, &provider, status), SystemTime::now())
            .caused_by(format!("{}:{provider}", channel.as_str()))
            .correlated_with(ticket.0.to_string());
        let executed = self
            .store
            .execute(ticket, &meta, APPEND_TRIES, |_| {
                Ok::<_, std::convert::Infallible>(vec![command.clone()])
            })
            .await;
        match executed {
            Ok(Executed { appended, .. }) => {
                self.seen
                    .put(&seen_key, Bytes::from(ticket.0.to_string()))
                    .await
                    .map_err(kv_error)?;
                tracing::debug!(ticket = %ticket, message_id = %message, version = appended.version, duplicate = appended.duplicate, "receipt appended");
                Ok(Noted::Appended {
                    ticket,
                    version: appended.version,
                })
            }
            Err(ExecuteError::Domain(refusal)) => {
                tracing::warn!(ticket = %ticket, message_id = %message, reason = %refusal, "receipt refused");
                Ok(Noted::Refused)
            }
            Err(ExecuteError::Store(e)) => Err(e.into()),
            Err(ExecuteError::Refused(never)) => match never {},
        }
    }

    /// The reverse entry egress wrote for the provider's id, if any: under its keyed
    /// pseudonym, or, for a message sent before entries were keyed, under the id's plain
    /// hash. An unreadable entry is logged and treated as absent: refusing the webhook
    /// would only make the provider deliver it again, forever.
    async fn provider_entry(
        &self,
        channel: Channel,
        provider_message_id: &str,
        provider: &ProviderRef,
    ) -> Result<Option<ProviderEntry>, ReceiptError> {
        let mut found = None;
        for key in [
            provider_key(channel, provider),
            earlier_provider_key(channel, provider_message_id),
        ] {
            let entry = self.outbound.entry(&key).await.map_err(kv_error)?;
            if let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) {
                found = Some((key, entry));
                break;
            }
        }
        let Some((key, entry)) = found else {
            return Ok(None);
        };
        match serde_json::from_slice(&entry.value) {
            Ok(found) => Ok(Some(found)),
            Err(e) => {
                tracing::warn!(key, error = %e, "unreadable provider entry ignored");
                Ok(None)
            }
        }
    }
}

/// Whether a receipt with this status is recorded on the ticket at all.
pub fn is_recorded(status: &ReceiptStatus) -> bool {
    matches!(status, ReceiptStatus::Read | ReceiptStatus::Failed { .. })
}

/// The command a receipt becomes on the ticket of `message`; `None` for the statuses
/// that are not recorded. A failure the provider reports after accepting a message is
/// final: the provider has stopped trying.
pub fn command_for(
    status: &ReceiptStatus,
    message: MessageId,
    provider_message_id: &str,
) -> Option<Command> {
    match status {
        ReceiptStatus::Read => Some(Command::RecordRead {
            message,
            provider_message_id: provider_message_id.into(),
        }),
        ReceiptStatus::Failed { reason } => Some(Command::RecordDeliveryFailure {
            message,
            reason: reason.as_str().into(),
            permanent: true,
        }),
        ReceiptStatus::Sent | ReceiptStatus::Delivered => None,
    }
}

/// The status as named in logs, dedupe keys and command ids.
fn status_name(status: &ReceiptStatus) -> &'static str {
    match status {
        ReceiptStatus::Sent => "sent",
        ReceiptStatus::Delivered => "delivered",
        ReceiptStatus::Read => "read",
        ReceiptStatus::Failed { .. } => "failed",
    }
}

/// The same for every redelivery of one receipt, different for each status.
fn command_id(channel: Channel, provider: &ProviderRef, status: &str) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("{}:{provider}:{status}", channel.as_str()).as_bytes(),
    )
}

fn kv_error(error: impl std::fmt::Display) -> ReceiptError {
    ReceiptError::Kv(error.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const MESSAGE: MessageId = MessageId(Uuid::from_u128(7));

    fn statuses() -> [ReceiptStatus; 4] {
        [
            ReceiptStatus::Sent,
            ReceiptStatus::Delivered,
            ReceiptStatus::Read,
            ReceiptStatus::Failed {
                reason: "131026 Message undeliverable".to_owned(),
            },
        ]
    }

    #[test]
    fn a_read_receipt_records_a_read() {
        assert_eq!(
            command_for(&ReceiptStatus::Read, MESSAGE, "wamid.1"),
            Some(Command::RecordRead {
                message: MESSAGE,
                provider_message_id: "wamid.1".into(),
            })
        );
    }

    #[test]
    fn a_failed_receipt_records_a_permanent_failure_with_the_providers_reason() {
        let failed = ReceiptStatus::Failed {
            reason: "131026 Message undeliverable".to_owned(),
        };
        assert_eq!(
            command_for(&failed, MESSAGE, "wamid.1"),
            Some(Command::RecordDeliveryFailure {
                message: MESSAGE,
                reason: "131026 Message undeliverable".into(),
                permanent: true,
            })
        );
    }

    #[test]
    fn sent_and_delivered_receipts_record_nothing() {
        for status in [ReceiptStatus::Sent, ReceiptStatus::Delivered] {
            assert_eq!(command_for(&status, MESSAGE, "wamid.1"), None, "{status:?}");
        }
    }

    #[test]
    fn is_recorded_agrees_with_command_for() {
        for status in statuses() {
            assert_eq!(
                is_recorded(&status),
                command_for(&status, MESSAGE, "wamid.1").is_some(),
                "{status:?}"
            );
        }
    }

    #[test]
    fn command_ids_are_stable_per_channel_provider_id_and_status() {
        let master = helpline_eventstore::MasterKey::development();
        let id = |channel, provider_id, status| {
            command_id(channel, &master.provider_ref(channel, provider_id), status)
        };
        assert_eq!(
            id(Channel::WhatsApp, "wamid.1", "read"),
            id(Channel::WhatsApp, "wamid.1", "read")
        );
        assert_ne!(
            id(Channel::WhatsApp, "wamid.1", "read"),
            id(Channel::WhatsApp, "wamid.1", "failed")
        );
        assert_ne!(
            id(Channel::WhatsApp, "wamid.1", "read"),
            id(Channel::WhatsApp, "wamid.2", "read")
        );
        assert_ne!(
            id(Channel::WhatsApp, "5", "read"),
            id(Channel::Viber, "5", "read")
        );
        assert_eq!(id(Channel::Viber, "5", "read").get_version_num(), 5);
        let names: std::collections::BTreeSet<_> = statuses().iter().map(status_name).collect();
        assert_eq!(names.len(), 4);
    }
}
