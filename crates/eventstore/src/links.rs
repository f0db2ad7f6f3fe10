//! One customer across channels: each contact's link ledger,
//! `helpline.<region>.links.<pseudonym>`, and the group of contacts its links reach
//! (the rules are the domain's `link` module).
//!
//! Each `ContactLinksChanged` carries every contact linked after it, sealed under the
//! ledger's own contact's data key: reading a contact's links is one Direct Get of the
//! subject's last message, a change is appended only if nobody changed the ledger since
//! (`Nats-Expected-Last-Subject-Sequence`), and erasing the contact's key shreds which
//! other contacts were the same person. A ledger whose last change no longer opens (its
//! contact was erased, and perhaps wrote again since under a new key) holds no links.
//!
//! Keys stay per contact: a link copies no key and no personal value, so each contact's
//! tickets stay sealed under its own key, an export opens each with its own, and an
//! erasure of the group purges every one of them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use helpline_domain::Channel;
use helpline_domain::link::{Group, LinkError, LinkRequest, LinkedBy, Links, LinksChanged};
use helpline_proto::v1 as pb;
use prost::Message;
use uuid::Uuid;

use crate::EventStore;
use crate::append::{LEDGER_TRIES, ledger_kept_changing};
use crate::codec;
use crate::customers::{Kept, kept_place};
use crate::error::StoreError;
use crate::seal::CustomerId;

/// The event type header of a link ledger's messages.
pub const LINKS_CHANGED: &str = "ContactLinksChanged";

/// A contact's links as their ledger says, and the ledger's last sequence (0: empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLinks {
    pub links: Links<CustomerId>,
    pub sequence: u64,
}

/// Why a link or unlink was not made.
#[derive(Debug, thiserror::Error)]
pub enum LinkStoreError {
    #[error(transparent)]
    Refused(#[from] LinkError),
    /// The contact has no data key: it never wrote, or it was erased.
    #[error("customer {0} has no data key: nobody writes from that contact, or they were erased")]
    NoKey(CustomerId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One contact of a link: its pseudonym and channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkedContact {
    pub customer: CustomerId,
    pub channel: Channel,
}

/// What a link or unlink of two contacts wrote: whether each side's ledger changed
/// (false: it already said so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkOutcome {
    pub first_changed: bool,
    pub second_changed: bool,
}

impl EventStore {
    /// The contact's links: the latest `ContactLinksChanged` of their ledger, opened
    /// under their key; none when the ledger is empty or no longer opens. One Direct Get.
    pub async fn links(&self, customer: &CustomerId) -> Result<StoredLinks, StoreError> {
        let subject = self.layout().links_subject(customer);
        let Some(message) = self.last_on_subject(&subject).await? else {
            return Ok(StoredLinks {
                links: Links::default(),
                sequence: 0,
            });
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            subject: subject.clone(),
            sequence: message.sequence,
            reason,
        };
        let envelope = pb::CustomerEnvelope::decode(message.payload.as_ref())
            .map_err(|e| corrupt(e.to_string()))?;
        let Some(pb::customer_envelope::Event::ContactLinksChanged(changed)) = envelope.event
        else {
            return Err(corrupt("not a ContactLinksChanged".to_owned()));
        };
        let sealed = changed
            .linked
            .ok_or_else(|| corrupt("contact_links_changed.linked is missing".to_owned()))?;
        let opened = match self.keys.opening_key(customer, sealed.key_id).await? {
            Some(key) => key
                .open(
                    &kept_place(Kept::ContactLinks, &envelope.event_id, customer),
                    &sealed,
                )
                .ok(),
            None => None,
        };
        let linked = match opened {
            // Erased: whoever writes from this contact now is not linked to anyone.
            None => BTreeMap::new(),
            Some(bytes) => {
                let contacts = pb::LinkedContacts::decode(bytes.as_slice())
                    .map_err(|e| corrupt(e.to_string()))?;
                let mut linked = BTreeMap::new();
                for contact in contacts.contacts {
                    let other = CustomerId::parse(&contact.customer_id).ok_or_else(|| {
                        corrupt(format!("{:?} is no pseudonym", contact.customer_id))
                    })?;
                    let channel = codec::channel_from_proto_value(contact.channel)
                        .ok()
                        .flatten()
                        .ok_or_else(|| {
                            corrupt(format!("channel {} is unknown", contact.channel))
                        })?;
                    linked.insert(other, channel);
                }
                linked
            }
        };
        Ok(StoredLinks {
            links: Links::from_linked(linked),
            sequence: message.sequence,
        })
    }

    /// Applies `request` to the links of `customer` (on `channel`): appends the change, or
    /// nothing when the ledger already says so. True when it changed.
    pub async fn change_links(
        &self,
        customer: &CustomerId,
        channel: Channel,
        request: LinkRequest<CustomerId>,
        by: &LinkedBy,
    ) -> Result<bool, LinkStoreError> {
        let subject = self.layout().links_subject(customer);
        for _ in 0..LEDGER_TRIES {
            let stored = self.links(customer).await?;
            let Some(changed) = stored.links.decide(customer, request.clone())? else {
                return Ok(false);
            };
            let Some((key, _)) = self.keys.sealing_key(customer).await? else {
                return Err(LinkStoreError::NoKey(customer.clone()));
            };
            let event_id = Uuid::now_v7().to_string();
            let contacts = pb::LinkedContacts {
                contacts: changed
                    .linked
                    .iter()
                    .map(|(other, channel)| pb::LinkedContact {
                        customer_id: other.to_string(),
                        channel: codec::channel_to_proto(*channel).into(),
                    })
                    .collect(),
            };
            let sealed = key.seal(
                &kept_place(Kept::ContactLinks, &event_id, customer),
                &contacts.encode_to_vec(),
            );
            let payload = encode(self, &event_id, customer, channel, &changed, sealed, by);
            if self
                .append_to_ledger(&subject, LINKS_CHANGED, payload, stored.sequence)
                .await?
            {
                let (change, other) = match &changed.change {
                    LinkRequest::Link { other, .. } => ("linked", other),
                    LinkRequest::Unlink { other } => ("unlinked", other),
                };
                tracing::info!(
                    %customer,
                    %other,
                    change,
                    by = %by.as_string(),
                    links = changed.linked.len(),
                    "contact links changed"
                );
                return Ok(true);
            }
        }
        Err(ledger_kept_changing(&subject).into())
    }

    /// Links two contacts: the same person. Both must have a data key (both wrote, and
    /// neither is erased). Writes `first`'s ledger, then `second`'s; an interruption
    /// between the two leaves the link in `first`'s only, and asking again completes it.
    pub async fn link_contacts(
        &self,
        first: &LinkedContact,
        second: &LinkedContact,
        by: &LinkedBy,
    ) -> Result<LinkOutcome, LinkStoreError> {
        for contact in [first, second] {
            if !self.customer_has_key(&contact.customer).await? {
                return Err(LinkStoreError::NoKey(contact.customer.clone()));
            }
        }
        let link = |other: &LinkedContact| LinkRequest::Link {
            other: other.customer.clone(),
            channel: other.channel,
        };
        let first_changed = self
            .change_links(&first.customer, first.channel, link(second), by)
            .await?;
        let second_changed = self
            .change_links(&second.customer, second.channel, link(first), by)
            .await?;
        Ok(LinkOutcome {
            first_changed,
            second_changed,
        })
    }

    /// Takes a link back, from both ledgers. A contact without a key (erased) holds no
    /// links to take back, so its side changes nothing.
    pub async fn unlink_contacts(
        &self,
        first: &LinkedContact,
        second: &LinkedContact,
        by: &LinkedBy,
    ) -> Result<LinkOutcome, LinkStoreError> {
        let unlink = |other: &LinkedContact| LinkRequest::Unlink {
            other: other.customer.clone(),
        };
        let mut changed = [false, false];
        for (i, (me, other)) in [(first, second), (second, first)].into_iter().enumerate() {
            changed[i] = match self
                .change_links(&me.customer, me.channel, unlink(other), by)
                .await
            {
                Ok(changed) => changed,
                Err(LinkStoreError::NoKey(_)) => false,
                Err(e) => return Err(e),
            };
        }
        Ok(LinkOutcome {
            first_changed: changed[0],
            second_changed: changed[1],
        })
    }

    /// Every contact linked to `first`, directly or through others: `first` first, each
    /// contact after the one it was reached through. One Direct Get per contact.
    pub async fn linked_group(&self, first: &CustomerId) -> Result<Group<CustomerId>, StoreError> {
        let mut group = Group::of(first.clone());
        while let Some(contact) = group.next_to_read() {
            let stored = self.links(&contact).await?;
            group.learn(&stored.links);
        }
        if group.truncated {
            tracing::warn!(
                customer = %first,
                reached = group.len(),
                "a customer's linked contacts exceed the group limit; the rest were left out"
            );
        }
        Ok(group)
    }
}

/// Encodes a `ContactLinksChanged` in its `CustomerEnvelope`.
fn encode(
    store: &EventStore,
    event_id: &str,
    customer: &CustomerId,
    channel: Channel,
    changed: &LinksChanged<CustomerId>,
    linked: pb::Sealed,
    by: &LinkedBy,
) -> Vec<u8> {
    pb::CustomerEnvelope {
        event_id: event_id.to_owned(),
        region: store.layout().region().to_owned(),
        customer_id: customer.to_string(),
        channel: codec::channel_to_proto(channel).into(),
        occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
        causation_id: String::new(),
        event: Some(pb::customer_envelope::Event::ContactLinksChanged(
            pb::ContactLinksChanged {
                linked: Some(linked),
                change: match changed.change {
                    LinkRequest::Link { .. } => pb::LinkChange::Linked,
                    LinkRequest::Unlink { .. } => pb::LinkChange::Unlinked,
                }
                .into(),
                by: by.as_string(),
            },
        )),
    }
    .encode_to_vec()
}
