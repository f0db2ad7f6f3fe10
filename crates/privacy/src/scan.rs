//! Which tickets exist, whose they are, and whether they are over: read from the event
//! headers alone (a headers-only ordered consumer), never from personal data.

use std::collections::BTreeMap;
use std::time::SystemTime;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt;
use helpline_domain::TicketId;
use helpline_eventstore::append::{CUSTOMER_HEADER, EVENT_TYPE_HEADER};
use helpline_eventstore::{CustomerId, EventStore};
use uuid::Uuid;

use crate::error::PrivacyError;

/// One ticket as its headers tell it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketRecord {
    pub ticket: TicketId,
    /// From `TicketOpened`; `None` for a ticket opened before customers were named.
    pub customer: Option<CustomerId>,
    /// When its last event was stored.
    pub last_event_at: SystemTime,
    /// Closed or abandoned: it takes no more messages.
    pub over: bool,
    /// It carries `CustomerErased`.
    pub erased: bool,
}

/// Every ticket of the region, in ticket-id order.
pub async fn scan(store: &EventStore) -> Result<Vec<TicketRecord>, PrivacyError> {
    let stream = store
        .jetstream()
        .get_stream_no_info(store.layout().event_stream())
        .await
        .map_err(PrivacyError::unavailable)?;
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: store.layout().all_tickets(),
            deliver_policy: DeliverPolicy::All,
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(PrivacyError::unavailable)?;
    let mut tickets: BTreeMap<TicketId, TicketRecord> = BTreeMap::new();
    let pending = consumer
        .info()
        .await
        .map_err(PrivacyError::unavailable)?
        .num_pending;
    if pending == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(PrivacyError::unavailable)?;
    // An ordered consumer that stops delivering (the server restarted under it, say) would
    // otherwise keep the caller waiting forever: a scan with nothing for a while gives up,
    // and the caller's retry starts a fresh one.
    let idle = store.config().request_timeout;
    loop {
        let message = match tokio::time::timeout(idle, messages.next()).await {
            Ok(Some(message)) => message.map_err(PrivacyError::unavailable)?,
            Ok(None) => break,
            Err(_) => {
                return Err(PrivacyError::unavailable(format!(
                    "the scan of the region's tickets received nothing for {idle:?}"
                )));
            }
        };
        let info = message.info().map_err(PrivacyError::unavailable)?;
        let done = info.pending == 0;
        let at = SystemTime::from(info.published);
        let ticket = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|id| Uuid::parse_str(id).ok())
            .map(TicketId);
        if let Some(ticket) = ticket {
            let header = |name: &str| {
                message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
            };
            let record = tickets.entry(ticket).or_insert_with(|| TicketRecord {
                ticket,
                customer: None,
                last_event_at: at,
                over: false,
                erased: false,
            });
            record.last_event_at = record.last_event_at.max(at);
            // A message holds one event or a command's several, named in order.
            let types = header(EVENT_TYPE_HEADER).unwrap_or_default();
            for event_type in types.split(',') {
                match event_type {
                    "TicketOpened" => {
                        record.customer = header(CUSTOMER_HEADER)
                            .as_deref()
                            .and_then(CustomerId::parse);
                    }
                    "TicketClosed" | "TicketAbandoned" => record.over = true,
                    "CustomerErased" => record.erased = true,
                    _ => {}
                }
            }
        }
        if done {
            break;
        }
    }
    Ok(tickets.into_values().collect())
}
