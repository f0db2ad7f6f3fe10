//! Loading one ticket: a KV snapshot plus a batch Direct Get of the events after it.
//!
//! Never a scan of the stream and never a consumer per load. A snapshot is a cache:
//! unreadable or missing, it costs time, never correctness.

use helpline_domain::{Ticket, TicketId, evolve};
use serde::{Deserialize, Serialize};

use crate::EventStore;
use crate::error::StoreError;
use crate::seal::{CustomerId, FieldPlace};

/// Bump when `Ticket`'s serialized shape changes; older snapshots are then ignored.
/// 3: personal values may be erased, and a ticket with a customer is sealed whole.
/// 4: the messages received and the outcomes of outbound messages, by message.
/// 5: the bytes of the attachments stored, against the ticket's quota.
/// 6: the provider's ids in the outcomes are personal, so they may read erased.
const SNAPSHOT_SCHEMA: u32 = 6;

/// A ticket's state and the version it was folded up to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedTicket {
    pub ticket: Ticket,
    /// The stream sequence of the ticket's last event; 0 when it has none. Pass it as
    /// `expected_version` to the next append.
    pub version: u64,
    /// The customer whose key seals the ticket's personal data, once an event named them.
    pub customer: Option<CustomerId>,
}

/// A snapshot in the KV bucket. A ticket with a customer is stored sealed under the
/// customer's key, so that erasing the key also erases the snapshot's copy.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    schema: u32,
    version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    customer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<SealedTicket>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ticket: Option<Ticket>,
}

/// A `Ticket` as JSON, sealed (`helpline.v1.Sealed` in hex).
#[derive(Serialize, Deserialize)]
struct SealedTicket {
    key_id: u32,
    nonce: String,
    ciphertext: String,
}

const SNAPSHOT_FIELD: &str = "ticket";

fn snapshot_record(id: TicketId) -> String {
    format!("snapshot:{}", id.0)
}

impl EventStore {
    /// The ticket as its events say, from its hot state in this process (see
    /// [`crate::hot`]) or else the latest snapshot on.
    #[tracing::instrument(level = "debug", skip(self), fields(ticket = %id))]
    pub async fn load(&self, id: TicketId) -> Result<LoadedTicket, StoreError> {
        let (start, since_snapshot) = match self.hot.get(id) {
            Some(hot) => (hot.loaded, hot.since_snapshot),
            None => (self.read_snapshot(id).await, 0),
        };
        let (loaded, folded) = self.fold_after(id, start).await?;
        let since_snapshot = since_snapshot + folded;
        let snapshot_due = since_snapshot >= self.config.snapshot_every;
        self.hot.put(
            id,
            crate::hot::Hot {
                loaded: loaded.clone(),
                since_snapshot: if snapshot_due { 0 } else { since_snapshot },
            },
        );
        if snapshot_due {
            let store = self.clone();
            let snapshot = loaded.clone();
            // Off the hot path: the caller has its ticket already.
            tokio::spawn(async move {
                if let Err(e) = store.write_snapshot(id, &snapshot).await {
                    tracing::warn!(ticket = %id, error = %e, "snapshot not written");
                }
            });
        }
        Ok(loaded)
    }

    /// The ticket as this process last saw it, without reading: its hot state, which
    /// another writer may have moved past. Only for deciding an append, whose expected
    /// version is the check; on a conflict, a refusal or nothing to do, [`Self::load`].
    pub fn cached(&self, id: TicketId) -> Option<LoadedTicket> {
        self.hot.get(id).map(|hot| hot.loaded)
    }

    /// The ticket folded from its first event, ignoring any snapshot (for audits, and to
    /// check snapshots against the log).
    pub async fn load_from_log(&self, id: TicketId) -> Result<LoadedTicket, StoreError> {
        let (loaded, _) = self.fold_after(id, LoadedTicket::default()).await?;
        Ok(loaded)
    }

    /// Saves `loaded` as the ticket's snapshot unless a newer one is there already
    /// (compare-and-set on the KV revision).
    pub async fn write_snapshot(
        &self,
        id: TicketId,
        loaded: &LoadedTicket,
    ) -> Result<(), StoreError> {
        let key = id.0.to_string();
        let Some(snapshot) = self.seal_snapshot(id, loaded).await? else {
            return Ok(());
        };
        let value = serde_json::to_vec(&snapshot).map_err(StoreError::unavailable)?;
        let current = self
            .snapshots
            .entry(key.clone())
            .await
            .map_err(StoreError::unavailable)?;
        let result = match current {
            None => self
                .snapshots
                .create(&key, value.into())
                .await
                .map(|_| ())
                .map_err(StoreError::unavailable),
            Some(entry) => {
                let newer = serde_json::from_slice::<Snapshot>(&entry.value)
                    .is_ok_and(|s| s.schema == SNAPSHOT_SCHEMA && s.version >= loaded.version);
                if newer {
                    return Ok(());
                }
                self.snapshots
                    .update(&key, value.into(), entry.revision)
                    .await
                    .map(|_| ())
                    .map_err(StoreError::unavailable)
            }
        };
        // Losing a race to another writer is fine: its snapshot is at least as good.
        if let Err(e) = result {
            tracing::debug!(ticket = %id, error = %e, "snapshot write lost a race");
        }
        Ok(())
    }

    /// Removes the ticket's snapshot and its history (erasure); the next load folds the
    /// log.
    pub async fn delete_snapshot(&self, id: TicketId) -> Result<(), StoreError> {
        self.hot.forget(id);
        self.snapshots
            .purge(id.0.to_string())
            .await
            .map_err(StoreError::unavailable)
    }

    /// The snapshot to store: sealed when the ticket has a customer; `None` when their
    /// key is gone (erased), since there is nothing it could be sealed under.
    async fn seal_snapshot(
        &self,
        id: TicketId,
        loaded: &LoadedTicket,
    ) -> Result<Option<Snapshot>, StoreError> {
        let mut snapshot = Snapshot {
            schema: SNAPSHOT_SCHEMA,
            version: loaded.version,
            customer: None,
            sealed: None,
            ticket: None,
        };
        let Some(customer) = &loaded.customer else {
            snapshot.ticket = Some(loaded.ticket.clone());
            return Ok(Some(snapshot));
        };
        let Some((key, _)) = self.keys.sealing_key(customer).await? else {
            return Ok(None);
        };
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(&loaded.ticket).map_err(StoreError::unavailable)?,
        );
        let record = snapshot_record(id);
        let place = FieldPlace {
            record: &record,
            field: SNAPSHOT_FIELD,
            customer,
        };
        let sealed = key.seal(&place, &plain);
        snapshot.customer = Some(customer.to_string());
        snapshot.sealed = Some(SealedTicket {
            key_id: sealed.key_id,
            nonce: hex::encode(sealed.nonce),
            ciphertext: hex::encode(sealed.ciphertext),
        });
        Ok(Some(snapshot))
    }

    /// The snapshot's ticket, opened; `None` when it cannot be (erased key, old schema).
    async fn open_snapshot(&self, id: TicketId, snapshot: Snapshot) -> Option<LoadedTicket> {
        if snapshot.schema != SNAPSHOT_SCHEMA {
            return None;
        }
        let (customer, ticket) = match (snapshot.customer, snapshot.sealed, snapshot.ticket) {
            (None, None, Some(ticket)) => (None, ticket),
            (Some(customer), Some(sealed), None) => {
                let customer = CustomerId::parse(&customer)?;
                let key = match self.keys.opening_key(&customer, sealed.key_id).await {
                    Ok(key) => key?,
                    Err(e) => {
                        tracing::warn!(ticket = %id, error = %e, "snapshot key unavailable, folding from the log");
                        return None;
                    }
                };
                let sealed = helpline_proto::v1::Sealed {
                    key_id: sealed.key_id,
                    nonce: hex::decode(sealed.nonce).ok()?.into(),
                    ciphertext: hex::decode(sealed.ciphertext).ok()?.into(),
                };
                let record = snapshot_record(id);
                let place = FieldPlace {
                    record: &record,
                    field: SNAPSHOT_FIELD,
                    customer: &customer,
                };
                let plain = zeroize::Zeroizing::new(key.open(&place, &sealed).ok()?);
                (Some(customer), serde_json::from_slice(&plain).ok()?)
            }
            _ => return None,
        };
        Some(LoadedTicket {
            ticket,
            version: snapshot.version,
            customer,
        })
    }

    async fn read_snapshot(&self, id: TicketId) -> LoadedTicket {
        match self.snapshots.entry(id.0.to_string()).await {
            Ok(Some(entry)) => match serde_json::from_slice::<Snapshot>(&entry.value) {
                Ok(snapshot) => self.open_snapshot(id, snapshot).await.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(ticket = %id, error = %e, "unreadable snapshot ignored");
                    LoadedTicket::default()
                }
            },
            Ok(None) => LoadedTicket::default(),
            Err(e) => {
                tracing::warn!(ticket = %id, error = %e, "snapshot unavailable, folding from the log");
                LoadedTicket::default()
            }
        }
    }

    /// Folds the events after `start.version` into `start`; also says how many there were.
    async fn fold_after(
        &self,
        id: TicketId,
        start: LoadedTicket,
    ) -> Result<(LoadedTicket, u64), StoreError> {
        let subject = self.layout.ticket_subject(id);
        let tail = self
            .direct
            .messages_after(&subject, start.version, self.config.request_timeout)
            .await?;
        let mut loaded = start;
        let folded = tail.len() as u64;
        for message in tail {
            for (meta, event) in self.decode_stored(&message).await? {
                if meta.customer.is_some() {
                    loaded.customer = meta.customer;
                }
                loaded.ticket = evolve(loaded.ticket, &event);
            }
            loaded.version = message.sequence;
        }
        Ok((loaded, folded))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use helpline_domain::Phase;
    use uuid::Uuid;

    use super::*;

    /// A snapshot as written before `Ticket` counted reads: it has no `reads` field.
    const SNAPSHOT_WITHOUT_READS: &str = r#"{"schema":1,"version":42,"ticket":{
        "id":"0192f0c1-3b1e-7c3a-8f00-5e2d9a6b4c10","phase":"Closed","customer":null,
        "language":"de","details":null,"queue":null,"agent":null,"accepted":false,
        "store":null,"resolved_by":null,"rating":null,"customer_messages":3,
        "outbound_messages":2,"deliveries":2,"delivery_failures":0,"erased":false,
        "events":9}}"#;

    #[test]
    fn a_snapshot_from_before_reads_were_counted_still_parses() {
        let snapshot: Snapshot = serde_json::from_str(SNAPSHOT_WITHOUT_READS).unwrap();
        // Schema 1 lacks the bot's prompts and the conversation's holder, which defaults
        // cannot restore: such a snapshot parses, and loading ignores it for the log.
        assert_eq!(snapshot.schema, 1);
        assert_ne!(snapshot.schema, SNAPSHOT_SCHEMA);
        assert_eq!(snapshot.version, 42);
        let ticket = snapshot.ticket.unwrap();
        assert_eq!(
            ticket.id,
            Some(TicketId(
                Uuid::parse_str("0192f0c1-3b1e-7c3a-8f00-5e2d9a6b4c10").unwrap()
            ))
        );
        assert_eq!(ticket.phase, Phase::Closed);
        assert_eq!(ticket.deliveries, 2);
        assert_eq!(ticket.reads, 0);
        assert_eq!(ticket.events, 9);
    }

    #[test]
    fn reads_round_trip_through_a_snapshot() {
        let ticket = Ticket {
            reads: 4,
            ..Ticket::default()
        };
        let json = serde_json::to_vec(&Snapshot {
            schema: SNAPSHOT_SCHEMA,
            version: 1,
            customer: None,
            sealed: None,
            ticket: Some(ticket.clone()),
        })
        .unwrap();
        let snapshot: Snapshot = serde_json::from_slice(&json).unwrap();
        assert_eq!(snapshot.ticket, Some(ticket));
    }
}
