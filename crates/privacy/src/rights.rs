//! The customer's rights: erasure and export.

use std::time::SystemTime;

use helpline_domain::notify::Answer;
use helpline_domain::{Channel, Command, Event, MessageBody, Personal, TicketId, evolve};
use helpline_eventstore::{CommandMeta, CustomerId, EventStore, ExecuteError, StoreError};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::PrivacyError;
use crate::scan::{TicketRecord, scan};

/// Namespace of erasure command ids: one erasure of one ticket is one command, however
/// often it is asked for.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d1f_0e0c_5b0a_4c55_9a3e_7f20_11c4_e2a9);

/// Attempts of one ticket's erasure against concurrent appends.
const ATTEMPTS: u32 = 10;

/// Why a customer is erased, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The customer asked (the Privacy API, `helpline privacy erase`).
    Request,
    /// The region's retention period passed.
    Retention,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Request => "request",
            Reason::Retention => "retention",
        }
    }
}

/// What one erasure did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    pub customer: CustomerId,
    /// The customer's tickets, and those of every contact linked to them.
    pub tickets: Vec<TicketId>,
    /// The customer's data key was there and is purged now.
    pub key_purged: bool,
    /// Tickets that got `CustomerErased` now (the rest had it already).
    pub tickets_newly_erased: u32,
    /// The customer's other contacts (the same person on other channels), erased with
    /// them: their keys purged and their tickets erased the same way.
    pub linked: Vec<CustomerId>,
}

/// Erasure, export and retention over one region's store.
#[derive(Clone, Debug)]
pub struct Privacy {
    store: EventStore,
}

impl Privacy {
    pub fn new(store: EventStore) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The customer's tickets, oldest first.
    pub async fn tickets_of(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<TicketRecord>, PrivacyError> {
        let mut tickets = self.tickets_of_all(std::slice::from_ref(customer)).await?;
        Ok(tickets.pop().unwrap_or_default())
    }

    /// Each customer's tickets, oldest first, from one scan of the log.
    async fn tickets_of_all(
        &self,
        customers: &[CustomerId],
    ) -> Result<Vec<Vec<TicketRecord>>, PrivacyError> {
        let mut tickets = vec![Vec::new(); customers.len()];
        for record in scan(&self.store).await? {
            let whose = record
                .customer
                .as_ref()
                .and_then(|c| customers.iter().position(|wanted| wanted == c));
            if let Some(i) = whose {
                tickets[i].push(record);
            }
        }
        for list in &mut tickets {
            list.sort_by_key(|record| record.ticket.0);
        }
        Ok(tickets)
    }

    /// The customer and every contact linked to them (the same person on other
    /// channels), the customer first, each contact after the one it was linked through.
    pub async fn linked_contacts(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<(CustomerId, Option<Channel>)>, PrivacyError> {
        let group = self.store.linked_group(customer).await?;
        Ok(group.members_with_channels().to_vec())
    }

    /// Erases the customer: purges their data key (not a soft delete: the entry and its
    /// history go), appends `CustomerErased` to each ticket, which every projection
    /// scrubs on, and drops the tickets' snapshots and open-ticket entries.
    ///
    /// Idempotent: an erased customer's tickets stay in the log (scrubbed), so erasing
    /// them again finds them, completes whatever an interrupted erasure left, and answers
    /// with nothing newly erased and no key purged. A customer with neither a ticket nor a
    /// data key is `NotFound`: nothing was ever stored under that pseudonym, which mostly
    /// means a mistyped contact or the wrong channel, and answering OK would tell the
    /// operator an erasure happened that did not.
    ///
    /// Contacts linked to the customer (the same person on other channels) are erased
    /// with them. They are erased from the farthest back to the customer's own, each
    /// after every contact reached through it: the links that lead to a contact not yet
    /// erased are read under keys not yet purged, so an interrupted erasure asked again
    /// still finds every contact it had not finished.
    pub async fn erase(
        &self,
        customer: &CustomerId,
        reason: Reason,
    ) -> Result<Erasure, PrivacyError> {
        let group: Vec<CustomerId> = self
            .linked_contacts(customer)
            .await?
            .into_iter()
            .map(|(contact, _)| contact)
            .collect();
        let tickets = self.tickets_of_all(&group).await?;
        // A key without a ticket is a first message that never got appended: still the
        // customer's, still purged.
        if group.len() == 1
            && tickets.iter().all(Vec::is_empty)
            && !self.store.customer_has_key(customer).await?
        {
            return Err(self.not_found(customer, "no ticket and no data key"));
        }
        let mut erasure = Erasure {
            customer: customer.clone(),
            tickets: Vec::new(),
            key_purged: false,
            tickets_newly_erased: 0,
            linked: group[1..].to_vec(),
        };
        for (contact, tickets) in group.iter().zip(&tickets).rev() {
            let erased = self.erase_tickets(contact, tickets, reason).await?;
            if contact == customer {
                erasure.key_purged = erased.key_purged;
            }
            erasure.tickets_newly_erased += erased.tickets_newly_erased;
            erasure.tickets.extend(erased.tickets);
        }
        erasure.tickets.sort_by_key(|ticket| ticket.0);
        Ok(erasure)
    }

    pub(crate) async fn erase_tickets(
        &self,
        customer: &CustomerId,
        tickets: &[TicketRecord],
        reason: Reason,
    ) -> Result<Erasure, PrivacyError> {
        // The key first: from this moment nothing of the customer's can be read, even if
        // the rest is interrupted (a second call finishes it).
        let key_purged = self.store.erase_customer_key(customer).await?;
        let mut newly = 0;
        for record in tickets {
            if self.append_erased(customer, record.ticket).await? {
                newly += 1;
            }
            self.store.delete_snapshot(record.ticket).await?;
        }
        self.forget_open_tickets(customer).await?;
        helpline_telemetry::metrics::increment(
            "helpline_customers_erased_total",
            "Customers whose personal data was erased, by reason: request or retention.",
            &[("reason", reason.as_str())],
        );
        tracing::info!(
            %customer,
            reason = reason.as_str(),
            tickets = tickets.len(),
            newly_erased = newly,
            key_purged,
            "customer erased"
        );
        Ok(Erasure {
            customer: customer.clone(),
            tickets: tickets.iter().map(|record| record.ticket).collect(),
            key_purged,
            tickets_newly_erased: newly,
            linked: Vec::new(),
        })
    }

    /// Appends `CustomerErased` unless the ticket has it; true when appended now.
    async fn append_erased(
        &self,
        customer: &CustomerId,
        ticket: TicketId,
    ) -> Result<bool, PrivacyError> {
        let command_id = Uuid::new_v5(&NAMESPACE, format!("erase:{customer}:{ticket}").as_bytes());
        let meta = CommandMeta::new(command_id, SystemTime::now());
        let executed = self
            .store
            .execute(ticket, &meta, ATTEMPTS, |_| {
                Ok::<_, std::convert::Infallible>(vec![Command::EraseCustomer])
            })
            .await;
        match executed {
            Ok(executed) => Ok(executed.events > 0 && !executed.appended.duplicate),
            Err(ExecuteError::Domain(e)) => Err(PrivacyError::Domain {
                ticket: ticket.to_string(),
                reason: e.to_string(),
            }),
            Err(ExecuteError::Store(StoreError::Conflict { .. })) => Err(
                PrivacyError::unavailable(format!("ticket {ticket} kept changing; erase again")),
            ),
            Err(ExecuteError::Store(e)) => Err(e.into()),
            Err(ExecuteError::Refused(never)) => match never {},
        }
    }

    /// Removes the customer's entries from the contacts bucket, so that their next
    /// message opens a new ticket rather than continuing an erased one.
    async fn forget_open_tickets(&self, customer: &CustomerId) -> Result<(), PrivacyError> {
        let layout = self.store.layout();
        let contacts = self
            .store
            .jetstream()
            .get_key_value(layout.contacts_bucket())
            .await
            .map_err(PrivacyError::unavailable)?;
        for channel in Channel::ALL {
            let key = layout.contact_key(channel, customer);
            let present = contacts
                .get(&key)
                .await
                .map_err(PrivacyError::unavailable)?
                .is_some();
            if present {
                contacts
                    .purge(&key)
                    .await
                    .map_err(PrivacyError::unavailable)?;
            }
        }
        Ok(())
    }

    /// Everything helpline holds about the customer, as JSON: per ticket, every event
    /// with its personal fields opened (erased ones as `{"erased": true}`), and the
    /// messages the customer sent; the tickets of every contact linked to them (the same
    /// person on other channels) too, each contact listed with its channel. `NotFound`
    /// when none of them has a ticket (a key alone holds nothing of theirs to export).
    pub async fn export(&self, customer: &CustomerId) -> Result<Value, PrivacyError> {
        let group = self.linked_contacts(customer).await?;
        let contacts: Vec<CustomerId> = group.iter().map(|(c, _)| c.clone()).collect();
        let tickets = self.tickets_of_all(&contacts).await?;
        if tickets.iter().all(Vec::is_empty) {
            return Err(self.not_found(customer, "no ticket"));
        }
        let key_of = async |contact: &CustomerId| -> Result<&'static str, PrivacyError> {
            Ok(match self.store.customer_has_key(contact).await? {
                true => "present",
                false => "erased",
            })
        };
        let key = key_of(customer).await?;
        let mut linked = Vec::new();
        for (contact, channel) in &group[1..] {
            linked.push(json!({
                "customer_id": contact.as_str(),
                "channel": channel.map(Channel::as_str),
                "data_key": key_of(contact).await?,
            }));
        }
        let mut exported = Vec::with_capacity(tickets.iter().map(Vec::len).sum());
        let mut all: Vec<&TicketRecord> = tickets.iter().flatten().collect();
        all.sort_by_key(|record| record.ticket.0);
        for record in all {
            let mut ticket = self.export_ticket(record.ticket).await?;
            if let Some(owner) = &record.customer {
                ticket["customer_id"] = Value::String(owner.as_str().to_owned());
            }
            exported.push(ticket);
        }
        // Their consent to notifications, from their own ledger: it outlives the tickets.
        let consent = self.store.consent(customer).await?.consent;
        let answer = |answer: Answer| match answer {
            Answer::Unknown => "not asked",
            Answer::Given => "given",
            Answer::Withdrawn => "withdrawn",
        };
        Ok(json!({
            "customer_id": customer.as_str(),
            "region": self.store.layout().region(),
            "exported_at": timestamp(SystemTime::now()),
            "data_key": key,
            "linked_contacts": linked,
            "notification_consent": {
                "notifications": answer(consent.notifications),
                "marketing": answer(consent.marketing),
            },
            "tickets": exported,
        }))
    }

    async fn export_ticket(&self, ticket: TicketId) -> Result<Value, PrivacyError> {
        let events = self.store.ticket_events(ticket).await?;
        let mut state = helpline_domain::Ticket::default();
        let mut sent = Vec::new();
        let mut listed = Vec::with_capacity(events.len());
        for (sequence, meta, event) in &events {
            state = evolve(state, event);
            if let Event::CustomerMessageReceived { body, .. } = event {
                sent.push(json!({
                    "at": timestamp(meta.occurred_at),
                    "message": body_json(body),
                }));
            }
            listed.push(json!({
                "sequence": sequence,
                "at": timestamp(meta.occurred_at),
                "type": event.name(),
                "event": serde_json::to_value(event).unwrap_or(Value::Null),
            }));
        }
        let customer = state.customer.as_ref();
        Ok(json!({
            "ticket_id": ticket.to_string(),
            "channel": customer.map(|c| c.channel.as_str()),
            "contact": customer.map(|c| shown(&c.contact)),
            "display_name": customer.and_then(|c| c.display_name.as_ref()).map(shown),
            "language": state.language,
            "phase": format!("{:?}", state.phase),
            "messages_sent": sent,
            "events": listed,
        }))
    }

    /// `NotFound` for a customer of whom nothing is `held`.
    fn not_found(&self, customer: &CustomerId, held: &str) -> PrivacyError {
        PrivacyError::NotFound(format!(
            "customer {customer} has {held} in region {}; check the channel and the contact",
            self.store.layout().region()
        ))
    }
}

fn shown(value: &Personal<String>) -> Value {
    Value::String(value.shown().to_owned())
}

/// A message body as the export shows it: text, an attachment or a location.
fn body_json(body: &MessageBody) -> Value {
    match body {
        MessageBody::Text(text) => json!({ "text": text.shown() }),
        MessageBody::Media(media) => {
            let mut shown = json!({
                "attachment": media.object.shown(),
                "mime_type": media.mime_type,
                "caption": media.caption.as_ref().map(Personal::shown),
            });
            // What the customer's provider gave to fetch it (a URL may name them); messages
            // stored before attachments were fetched afterwards have none.
            if media.provider_media.is_erased() || !media.provider_media.expose().is_empty() {
                shown["provider_media"] = Value::String(media.provider_media.shown().to_owned());
            }
            shown
        }
        MessageBody::Location(at) => match at.read() {
            Ok((latitude, longitude)) => {
                json!({ "location": { "latitude": latitude, "longitude": longitude } })
            }
            Err(erased) => json!({ "location": erased.to_string() }),
        },
    }
}

fn timestamp(at: SystemTime) -> String {
    jiff::Timestamp::try_from(at)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
