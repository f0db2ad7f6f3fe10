//! The outbound index, `helpline-<region>-outbound`: which ticket and message each
//! provider message id belongs to. Egress writes an entry for every message a provider
//! accepted, beside the outcome event; ingress reads it to record the provider's
//! receipts on that message. Keys name the provider's id by its keyed pseudonym only.

use async_nats::jetstream::kv;
use async_nats::jetstream::stream::StorageType;
use helpline_domain::{Channel, MessageId, TicketId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{EventStore, Layout, ProviderRef, StoreError};

/// `helpline-<region>-outbound`: [`provider_key`] → [`ProviderEntry`] for every message a
/// provider accepted. (Keys `<message id>` and `last-inbound.<ticket>` were written by
/// earlier versions and are no longer read.)
pub fn outbound_bucket(layout: &Layout) -> String {
    format!("helpline-{}-outbound", layout.region())
}

/// The outbound bucket's key of a provider's message id: `provider.<channel>.<ref>`,
/// with the id's keyed pseudonym ([`EventStore::provider_ref`]), a valid KV key that
/// names nothing of the customer's.
pub fn provider_key(channel: Channel, provider: &ProviderRef) -> String {
    format!("provider.{}.{provider}", channel.as_str())
}

/// The key earlier versions wrote the same entry under, `provider.<channel>.<hex SHA-256
/// of the id>`: still looked up for the receipts of messages they sent. No longer
/// written, as anyone holding a provider's id could find its entry.
pub fn earlier_provider_key(channel: Channel, provider_message_id: &str) -> String {
    format!(
        "provider.{}.{}",
        channel.as_str(),
        hex::encode(Sha256::digest(provider_message_id.as_bytes()))
    )
}

/// Which ticket and message a provider's message id belongs to, written under
/// [`provider_key`] beside the outcome event, as JSON `{"ticket":…,"message":…}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEntry {
    pub ticket: TicketId,
    pub message: MessageId,
}

/// How long a reverse entry (provider message → ticket and message) is kept: a receipt
/// later than this is for a message helpline no longer tracks, answered 200 and ignored.
const OUTBOUND_ENTRY_MAX_AGE: std::time::Duration =
    std::time::Duration::from_secs(30 * 24 * 60 * 60);

/// Opens the outbound index, creating it (or updating its settings) as needed.
pub async fn open_bucket(store: &EventStore) -> Result<kv::Store, StoreError> {
    let name = outbound_bucket(store.layout());
    store
        .jetstream()
        .create_or_update_key_value(kv::Config {
            bucket: name.clone(),
            description: format!(
                "helpline {} egress: the ticket and message of each provider message id",
                store.layout().region()
            ),
            history: 1,
            // Receipts come within days; an entry names no one, but none need outlive
            // its message's receipts (nor the entries of earlier versions, keyed by an
            // unkeyed hash of the provider's id).
            max_age: OUTBOUND_ENTRY_MAX_AGE,
            storage: StorageType::File,
            num_replicas: store.config().replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| StoreError::setup(format!("the bucket {name}"), e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use uuid::Uuid;

    use super::*;

    #[test]
    fn the_bucket_is_named_per_region() {
        assert_eq!(
            outbound_bucket(&Layout::new("de").unwrap()),
            "helpline-de-outbound"
        );
    }

    #[test]
    fn provider_keys_name_the_id_by_its_keyed_pseudonym_per_channel() {
        let master = crate::MasterKey::development();
        let key = |channel, id| provider_key(channel, &master.provider_ref(channel, id));
        let wamid = "wamid.HBgL Ü/*>";
        let whatsapp = key(Channel::WhatsApp, wamid);
        let (prefix, hash) = whatsapp.rsplit_once('.').unwrap();
        assert_eq!(prefix, "provider.whatsapp");
        assert_eq!(hash.len(), 32);
        assert!(
            hash.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(whatsapp, earlier_provider_key(Channel::WhatsApp, wamid));
        assert_ne!(key(Channel::Viber, "5"), key(Channel::Telegram, "5"));
        // What earlier versions wrote, and receipts of their messages still look up.
        assert_eq!(
            earlier_provider_key(Channel::Viber, "5"),
            "provider.viber.ef2d127de37b942baad06145e54b0c619a1f22327b2ebbcfbec78f5564afe39d"
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
