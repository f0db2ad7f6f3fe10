//! What both suites do once the load is over: wait until the system has settled, and
//! read the event log back.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use helpline_domain::{Event, TicketId};
use helpline_eventstore::{EventStore, StoredEvent};
use helpline_testkit::Simulator;

use crate::cluster::Service;
use crate::load::Finished;

/// How long the system may take to settle after the last conversation closed.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// Waits until every consumer has caught up and acknowledged everything, and every
/// message sent to a customer has its outcome and has arrived; panics after
/// [`SETTLE_DEADLINE`] with what is still waiting and `logs()`.
pub async fn settle(
    services: &[Service],
    sim: &Simulator,
    store: &EventStore,
    finished: &[Finished],
    logs: impl Fn() -> String,
) {
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    let mut calm = 0;
    loop {
        let mut waiting = Vec::new();
        for service in services {
            match service.backlog().await {
                Some(0) => {}
                other => waiting.push(format!("{} backlog {other:?}", service.name())),
            }
        }
        for done in finished {
            let Ok(loaded) = store.load(done.ticket).await else {
                waiting.push(format!("ticket {} unreadable", done.ticket.0));
                continue;
            };
            let t = loaded.ticket;
            let received = sim
                .received(done.customer.channel, &done.customer.name)
                .len();
            if t.outbound_messages != t.deliveries + t.delivery_failures
                || received < t.deliveries as usize
            {
                waiting.push(format!(
                    "ticket {}: {} sent, {} delivered, {} failed, {received} received",
                    done.ticket.0, t.outbound_messages, t.deliveries, t.delivery_failures
                ));
            }
        }
        // Twice calm in a row: a delayed redelivery would have shown in between.
        calm = if waiting.is_empty() { calm + 1 } else { 0 };
        if calm == 3 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the system did not settle in {SETTLE_DEADLINE:?}:\n{}\n{}",
            waiting.join("\n"),
            logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The event log as read back at the end.
pub struct Log {
    /// Each ticket's channel and events, in order.
    pub tickets: BTreeMap<TicketId, (&'static str, Vec<Event>)>,
    /// Every ticket event as a consumer sees it, in stream order.
    pub stored: Vec<StoredEvent>,
    /// Messages on ticket subjects that are no event: (sequence, subject).
    pub undecodable: Vec<(u64, String)>,
    /// Every message's `Nats-Msg-Id`: (sequence, id).
    pub message_ids: Vec<(u64, String)>,
}

impl Log {
    pub fn customer_messages(&self) -> usize {
        self.tickets
            .values()
            .flat_map(|(_, events)| events)
            .filter(|e| matches!(e, Event::CustomerMessageReceived { .. }))
            .count()
    }
}

pub async fn read_log(store: &EventStore) -> Log {
    let mut stream = store
        .jetstream()
        .get_stream(store.layout().event_stream())
        .await
        .unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut log = Log {
        tickets: BTreeMap::new(),
        stored: Vec::new(),
        undecodable: Vec::new(),
        message_ids: Vec::new(),
    };
    let mut channels: HashMap<TicketId, &'static str> = HashMap::new();
    let agent_subjects = format!("helpline.{}.agent.", store.layout().region());
    for sequence in 1..=last {
        let message = stream
            .direct_get(sequence)
            .await
            .unwrap_or_else(|e| panic!("sequence {sequence}: {e}"));
        let subject = message.subject.to_string();
        // Agents' ledgers (presence, sign-in) share the stream; they hold no ticket event.
        if subject.starts_with(&agent_subjects) {
            continue;
        }
        if let Some(id) = message.headers.get("Nats-Msg-Id") {
            log.message_ids.push((sequence, id.to_string()));
        }
        match store.decode(&message.payload).await {
            Ok(events) => {
                for (meta, event) in events {
                    if let Event::TicketOpened { customer, .. } = &event {
                        channels.insert(meta.ticket, customer.channel.as_str());
                    }
                    let channel = channels.get(&meta.ticket).copied().unwrap_or("unknown");
                    log.tickets
                        .entry(meta.ticket)
                        .or_insert_with(|| (channel, Vec::new()))
                        .1
                        .push(event.clone());
                    log.stored.push(StoredEvent {
                        subject: subject.clone(),
                        sequence,
                        meta,
                        event,
                        delivered: 1,
                        replayed: false,
                        trace: Default::default(),
                        let_go: None,
                        hold: None,
                    });
                }
            }
            Err(_) => log.undecodable.push((sequence, subject)),
        }
    }
    log
}
