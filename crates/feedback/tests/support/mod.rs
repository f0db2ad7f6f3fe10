//! Fixtures for feedback's integration tests: a real nats-server per test, and tickets
//! that await their rating.

// Each test binary uses a part of the fixtures.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use helpline_domain::{
    AgentId, Channel, Customer, Event, HandoffReason, MessageBody, MessageId, Personal, QueueId,
    TicketId,
};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_testkit::NatsServer;
use uuid::Uuid;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;
pub type Fallible<T> = Result<T, Box<dyn std::error::Error>>;

pub struct Harness {
    pub server: NatsServer,
    pub store: EventStore,
}

impl Harness {
    pub async fn start() -> Fallible<Self> {
        let server = NatsServer::start().await?;
        let client = server.connect().await?;
        let config = StoreConfig {
            retry_backoff: Duration::from_millis(10),
            ..StoreConfig::new("de")
        };
        let store = EventStore::ensure(client, config).await?;
        Ok(Self { server, store })
    }

    /// Appends `events` to the ticket, one command each, and returns the new version.
    pub async fn append(
        &self,
        ticket: TicketId,
        mut version: u64,
        events: Vec<Event>,
    ) -> Fallible<u64> {
        for event in events {
            let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
            version = self
                .store
                .append(ticket, version, &[event], &meta)
                .await?
                .version;
        }
        Ok(version)
    }

    /// A ticket on `channel`, queued in `queue`, resolved by `agent`, and asked to rate.
    pub async fn awaiting_rating(
        &self,
        channel: Channel,
        queue: &str,
        agent: &str,
    ) -> Fallible<TicketId> {
        let ticket = TicketId(Uuid::now_v7());
        let agent = AgentId::new(agent);
        let rating_message = MessageId(Uuid::now_v7());
        self.append(
            ticket,
            0,
            vec![
                Event::TicketOpened {
                    ticket,
                    customer: Customer {
                        channel,
                        contact: Personal::from("4915112345678"),
                        display_name: None,
                    },
                    language: "de".to_owned(),
                },
                Event::HandoffRequested {
                    reason: HandoffReason::DetailsComplete,
                    summary: Personal::from("summary"),
                },
                Event::TicketQueued {
                    queue: QueueId::new(queue),
                },
                Event::AgentAssigned {
                    agent: agent.clone(),
                },
                Event::AgentAccepted {
                    agent: agent.clone(),
                },
                Event::TicketResolved {
                    agent,
                    summary: "fixed".to_owned(),
                },
                Event::BotMessageSent {
                    message: rating_message,
                    body: MessageBody::Text(Personal::from("Wie zufrieden waren Sie?")),
                    prompt: "rating".to_owned(),
                    choices: vec![],
                },
                Event::RatingRequested {
                    message: rating_message,
                },
            ],
        )
        .await?;
        Ok(ticket)
    }

    /// The customer writes `text` on the ticket.
    pub async fn say(&self, ticket: TicketId, text: &str) -> Fallible<()> {
        let version = self.store.load(ticket).await?.version;
        self.append(
            ticket,
            version,
            vec![Event::CustomerMessageReceived {
                message: MessageId(Uuid::now_v7()),
                provider_message_id: format!("wamid.{}", Uuid::now_v7().simple()).into(),
                body: MessageBody::Text(Personal::from(text)),
            }],
        )
        .await?;
        Ok(())
    }

    /// Every event of the ticket, in order, read straight from the stream.
    pub async fn events(&self, ticket: TicketId) -> Fallible<Vec<Event>> {
        let events = self.store.ticket_events(ticket).await?;
        Ok(events.into_iter().map(|(_, _, event)| event).collect())
    }

    /// Polls the ticket's events until `done` holds, for at most ten seconds.
    pub async fn events_once(
        &self,
        ticket: TicketId,
        done: impl Fn(&[Event]) -> bool,
    ) -> Fallible<Vec<Event>> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(ticket).await?;
            if done(&events) {
                return Ok(events);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("timed out; events so far: {events:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Polls `check` until it holds, for at most ten seconds.
pub async fn eventually(what: &str, check: impl Fn() -> bool) -> TestResult {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        if std::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
