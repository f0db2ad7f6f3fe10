//! One notification, from the request to the event on the customer's ticket.
//!
//! 1. The template and its text in the customer's language, every placeholder filled.
//! 2. The customer: their pseudonym, consent (their ledger's last event) and latest
//!    ticket (the chain shared with intake).
//! 3. [`reach`]: the lawful way now, or the refusal. A refusal writes nothing and says why.
//! 4. `SendNotification` on the latest ticket, or on a new ticket of the chain where the
//!    latest is over or there is none (opened by this very append, at version 0). The
//!    message id derives from the idempotency key, so a repeated request decides to
//!    nothing; the command id too, so a retried append dedupes.
//!
//! Egress sends it from there, at the channel's notification pace, in the form the
//! customer's window allows at the time of sending.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use async_nats::jetstream::kv;
use helpline_domain::notify::{self, Consent, Means, Reach, Refusal, Scope, Way};
use helpline_domain::{
    Channel, Command, Customer, MessageBody, MessageId, Personal, Phase, TicketId,
    WhatsAppTemplateCall, contact, decide_all,
};
use helpline_eventstore::chain::{self, first_ticket, next_ticket, ticket_is_over};
use helpline_eventstore::consent::ConsentSignal;
use helpline_eventstore::{CommandMeta, CustomerId, EventStore, LoadedTicket, StoreError};
use helpline_flows::Flows;
use helpline_region::RegionConfig;
use uuid::Uuid;

use crate::error::NotifyError;

/// Namespace of the ids derived from idempotency keys.
const NAMESPACE: Uuid = Uuid::from_u128(0x6865_6c70_6c69_6e65_2d6e_6f74_6966_7921);
/// Tries of an append that meets another writer on the same ticket.
const APPEND_TRIES: usize = 8;

/// Who a notification is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// Their address on a channel, written any way the channel's customers write it.
    Contact { channel: Channel, address: String },
    /// The customer of this ticket.
    Ticket(TicketId),
}

/// One notification request.
#[derive(Clone, Debug)]
pub struct NotifyRequest {
    pub recipient: Recipient,
    pub template: String,
    /// The template's placeholders (personal data: names, stores, times).
    pub parameters: BTreeMap<String, String>,
    /// `None`: the customer's ticket's language, else the region's default.
    pub language: Option<String>,
    pub idempotency_key: String,
}

/// What became of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notified {
    Queued {
        ticket: TicketId,
        message: MessageId,
        /// How it goes out; `None` for a key queued before (nothing new was decided).
        way: Option<Way>,
        /// The key was queued before: nothing new was written.
        duplicate: bool,
    },
    Refused(Refused),
}

/// Why nothing was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The channel's rules, for this customer, now.
    Unlawful(Refusal),
    /// helpline does not serve the customer's channel (no `[channels.<name>]`).
    ChannelNotConfigured(Channel),
}

impl Refused {
    pub fn code(&self) -> &'static str {
        match self {
            Refused::Unlawful(refusal) => refusal.code(),
            Refused::ChannelNotConfigured(_) => "channel_not_configured",
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Unlawful(refusal) => refusal.fmt(f),
            Refused::ChannelNotConfigured(channel) => write!(
                f,
                "helpline does not serve {} in this region ([channels.{}] is not configured)",
                channel.as_str(),
                channel.as_str()
            ),
        }
    }
}

/// The customer a request is about, found.
struct Found {
    channel: Channel,
    /// In its stored form.
    address: String,
    customer: CustomerId,
    contact_key: String,
    /// Their latest ticket, if they have one.
    latest: Option<(TicketId, LoadedTicket)>,
}

/// Writes notifications and consent. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    store: EventStore,
    contacts: kv::Store,
    region: Arc<RegionConfig>,
    flows: Arc<Flows>,
    /// The channels helpline serves in this region.
    channels: BTreeSet<ChannelName>,
}

/// A channel, ordered by name (for the set above).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ChannelName(&'static str);

impl Notifier {
    /// Opens the contacts bucket the customer chains are pointed from.
    pub async fn new(
        store: EventStore,
        region: Arc<RegionConfig>,
        flows: Arc<Flows>,
        channels: impl IntoIterator<Item = Channel>,
    ) -> Result<Self, NotifyError> {
        let contacts = store
            .jetstream()
            .get_key_value(store.layout().contacts_bucket())
            .await
            .map_err(|e| NotifyError::Store(StoreError::Unavailable(e.to_string())))?;
        Ok(Self {
            store,
            contacts,
            region,
            flows,
            channels: channels
                .into_iter()
                .map(|channel| ChannelName(channel.as_str()))
                .collect(),
        })
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Writes one notification, or says why not.
    pub async fn notify(&self, request: NotifyRequest) -> Result<Notified, NotifyError> {
        let key = request.idempotency_key.trim();
        if key.is_empty() {
            return Err(NotifyError::invalid(
                "idempotency_key",
                "give a key for this notification, e.g. repair-4711-ready",
            ));
        }
        let template = self
            .region
            .notifications
            .templates
            .get(&request.template)
            .ok_or_else(|| {
                NotifyError::invalid(
                    "template",
                    helpline_region::notifications::TemplateError::Unknown(
                        request.template.clone(),
                    )
                    .to_string(),
                )
            })?;
        let found = self.find(&request.recipient).await?;
        let channel = found.channel;
        if !self.channels.contains(&ChannelName(channel.as_str())) {
            return Ok(self.refused(
                channel,
                &request.template,
                Refused::ChannelNotConfigured(channel),
            ));
        }
        let message = MessageId(Uuid::new_v5(
            &NAMESPACE,
            format!("notification:{key}").as_bytes(),
        ));
        let latest_ticket = found.latest.as_ref().map(|(_, loaded)| &loaded.ticket);
        // A request repeated after its ticket ended finds its notification there.
        if let Some((ticket, loaded)) = &found.latest
            && loaded.ticket.notifications.contains(&message)
        {
            return Ok(Notified::Queued {
                ticket: *ticket,
                message,
                way: None,
                duplicate: true,
            });
        }
        let consent = self.store.consent(&found.customer).await?.consent;
        let last_message_at = match (&found.latest, channel) {
            (Some((ticket, _)), Channel::WhatsApp | Channel::Messenger) => {
                self.store.last_customer_message(*ticket).await?
            }
            _ => None,
        };
        let reach = Reach {
            channel,
            consent,
            has_written: latest_ticket.is_some_and(|ticket| ticket.phase != Phase::New),
            last_message_at,
            conversation_closed: latest_ticket.is_some_and(|ticket| ticket.customer_closed),
            disclosed: latest_ticket.is_some_and(|ticket| ticket.notice_sent),
            erased: latest_ticket.is_some_and(|ticket| ticket.erased),
        };
        let means = Means {
            whatsapp_template: template.whatsapp.is_some(),
            messenger_tag: template.messenger_tag.clone(),
        };
        let way = match notify::reach(&reach, template.kind.into(), &means, SystemTime::now()) {
            Ok(way) => way,
            Err(refusal) => {
                return Ok(self.refused(channel, &request.template, Refused::Unlawful(refusal)));
            }
        };
        let language = request
            .language
            .clone()
            .filter(|language| !language.trim().is_empty())
            .or_else(|| {
                latest_ticket
                    .map(|ticket| ticket.language.clone())
                    .filter(|language| !language.is_empty())
            })
            .unwrap_or_else(|| self.region.locale.default_language().to_owned());
        let default_language = self.region.locale.default_language();
        let text = template
            .render(
                &request.template,
                &language,
                default_language,
                &request.parameters,
            )
            .map_err(|e| NotifyError::invalid("parameters", e.to_string()))?;
        let whatsapp_template = match &template.whatsapp {
            Some(whatsapp) => {
                let parameters = template
                    .whatsapp_parameters(&request.template, &request.parameters)
                    .map_err(|e| NotifyError::invalid("parameters", e.to_string()))?;
                let parameters = serde_json::to_string(&parameters)
                    .map_err(|e| NotifyError::invalid("parameters", e.to_string()))?;
                Some(Box::new(WhatsAppTemplateCall {
                    name: whatsapp.name.clone(),
                    language: whatsapp.language_code(&language),
                    parameters: Personal::new(parameters),
                }))
            }
            None => None,
        };
        let notice = (way == Way::AfterAppleNotice).then(|| {
            let notice = MessageId(Uuid::new_v5(&NAMESPACE, format!("notice:{key}").as_bytes()));
            let text = self.flows.get(&language).text("apple_notice", &[]);
            Box::new((notice, MessageBody::Text(Personal::new(text))))
        });
        let command = Command::SendNotification {
            message,
            template: request.template.clone(),
            kind: template.kind.into(),
            body: MessageBody::Text(Personal::new(text)),
            whatsapp_template,
            message_tag: template.messenger_tag.clone(),
            notice,
        };
        let meta = CommandMeta::new(
            Uuid::new_v5(&NAMESPACE, format!("command:{key}").as_bytes()),
            SystemTime::now(),
        );
        let (ticket, duplicate) = self.append(&found, &language, command, &meta).await?;
        helpline_telemetry::metrics::increment(
            "helpline_notifications_total",
            "Notifications by channel, template and outcome (queued, duplicate, or the refusal's code).",
            &[
                ("channel", channel.as_str()),
                ("template", request.template.as_str()),
                ("outcome", if duplicate { "duplicate" } else { "queued" }),
            ],
        );
        tracing::info!(%ticket, message_id = %message, channel = channel.as_str(), template = %request.template, way = way.as_str(), duplicate, "notification queued");
        Ok(Notified::Queued {
            ticket,
            message,
            way: (!duplicate).then_some(way),
            duplicate,
        })
    }

    /// Records the customer's consent as the brand collected it.
    pub async fn record_consent(
        &self,
        channel: Channel,
        address: &str,
        scope: Scope,
        granted: bool,
        causation_id: &str,
    ) -> Result<(Consent, bool), NotifyError> {
        let (_, customer) = self.customer(channel, address)?;
        let signal = ConsentSignal {
            scope,
            granted,
            source: notify::ConsentSource::Brand,
        };
        Ok(self
            .store
            .change_consent(channel, &customer, signal, causation_id)
            .await?)
    }

    /// The customer's consent as recorded.
    pub async fn consent(&self, channel: Channel, address: &str) -> Result<Consent, NotifyError> {
        let (_, customer) = self.customer(channel, address)?;
        Ok(self.store.consent(&customer).await?.consent)
    }

    fn refused(&self, channel: Channel, template: &str, refused: Refused) -> Notified {
        helpline_telemetry::metrics::increment(
            "helpline_notifications_total",
            "Notifications by channel, template and outcome (queued, duplicate, or the refusal's code).",
            &[
                ("channel", channel.as_str()),
                ("template", template),
                ("outcome", refused.code()),
            ],
        );
        tracing::info!(channel = channel.as_str(), template, code = refused.code(), reason = %refused, "notification refused");
        Notified::Refused(refused)
    }

    /// The contact in its stored form and the customer's pseudonym.
    fn customer(
        &self,
        channel: Channel,
        address: &str,
    ) -> Result<(String, CustomerId), NotifyError> {
        let address = contact::normalize(channel, address)
            .map_err(|e| NotifyError::invalid("contact.address", e.to_string()))?;
        let customer = self.store.customer_id(channel, &address);
        Ok((address, customer))
    }

    async fn find(&self, recipient: &Recipient) -> Result<Found, NotifyError> {
        let (channel, address, start) = match recipient {
            Recipient::Contact { channel, address } => (*channel, address.clone(), None),
            Recipient::Ticket(ticket) => {
                let loaded = self.store.load(*ticket).await?;
                let Some(customer) = loaded.ticket.customer.clone() else {
                    return Err(NotifyError::NotFound(format!(
                        "ticket {ticket} does not exist"
                    )));
                };
                if loaded.ticket.erased || customer.contact.is_erased() {
                    return Err(NotifyError::Erased(*ticket));
                }
                (
                    customer.channel,
                    customer.contact.into_inner(),
                    Some(*ticket),
                )
            }
        };
        let (address, customer) = self.customer(channel, &address)?;
        let contact_key = self.store.layout().contact_key(channel, &customer);
        let latest = self
            .store
            .latest_ticket(&self.contacts, &contact_key, &customer, start)
            .await?;
        Ok(Found {
            channel,
            address,
            customer,
            contact_key,
            latest,
        })
    }

    /// Appends `command` to the customer's latest ticket, or opens the next one with it.
    /// Returns the ticket and whether the notification was there already.
    async fn append(
        &self,
        found: &Found,
        language: &str,
        command: Command,
        meta: &CommandMeta,
    ) -> Result<(TicketId, bool), NotifyError> {
        let (mut ticket, mut loaded) = match &found.latest {
            Some((ticket, loaded)) => (*ticket, loaded.clone()),
            None => (first_ticket(&found.customer), LoadedTicket::default()),
        };
        for _ in 0..APPEND_TRIES {
            if ticket_is_over(&loaded.ticket) {
                ticket = next_ticket(ticket);
                loaded = self.store.load(ticket).await?;
                if loaded.ticket.phase == Phase::New {
                    chain::point_contact(&self.contacts, &found.contact_key, ticket).await?;
                }
                continue;
            }
            let mut commands = Vec::with_capacity(2);
            if loaded.ticket.phase == Phase::New {
                commands.push(Command::OpenTicket {
                    ticket,
                    customer: Customer {
                        channel: found.channel,
                        contact: Personal::new(found.address.clone()),
                        display_name: None,
                    },
                    language: language.to_owned(),
                });
            }
            commands.push(command.clone());
            let events = match decide_all(&loaded.ticket, commands) {
                Ok((events, _)) => events,
                Err(refusal) => return Err(NotifyError::Refused(refusal)),
            };
            if events.is_empty() {
                return Ok((ticket, true));
            }
            let meta = meta.clone().correlated_with(ticket.0.to_string());
            match self
                .store
                .append(ticket, loaded.version, &events, &meta)
                .await
            {
                Ok(appended) => return Ok((ticket, appended.duplicate)),
                Err(StoreError::Conflict { .. }) => loaded = self.store.load(ticket).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(NotifyError::Contended(ticket))
    }
}
