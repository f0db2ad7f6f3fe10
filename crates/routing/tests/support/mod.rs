//! Fixtures for routing's integration tests: a real nats-server per test, the German
//! region as shipped, and tickets the bot handed over.

// Each test binary uses a part of the fixtures.
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use helpline_domain::{Channel, Customer, Details, Event, HandoffReason, Personal, TicketId};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_region::RegionConfig;
use helpline_testkit::NatsServer;
use uuid::Uuid;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub struct Harness {
    pub server: NatsServer,
    pub store: EventStore,
}

impl Harness {
    pub async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let server = NatsServer::start().await?;
        let client = server.connect().await?;
        let config = StoreConfig {
            retry_backoff: Duration::from_millis(10),
            request_timeout: Duration::from_secs(1),
            ..StoreConfig::new("de")
        };
        let store = EventStore::ensure(client, config).await?;
        Ok(Self { server, store })
    }

    /// A ticket on WhatsApp whose bot captured these details and handed it over.
    pub async fn handed_over(
        &self,
        language: &str,
        product: &str,
        category: &str,
        location: &str,
    ) -> Result<TicketId, Box<dyn std::error::Error>> {
        let ticket = TicketId(Uuid::now_v7());
        let events = [
            Event::TicketOpened {
                ticket,
                customer: Customer {
                    channel: Channel::WhatsApp,
                    contact: Personal::from("4915112345678"),
                    display_name: None,
                },
                language: language.to_owned(),
            },
            Event::DetailsCaptured(Details {
                product: product.to_owned(),
                category: category.to_owned(),
                location: Personal::from(location),
                problem: Personal::from("startet nicht"),
                ..Details::default()
            }),
            Event::HandoffRequested {
                reason: HandoffReason::DetailsComplete,
                summary: Personal::from("summary"),
            },
        ];
        let mut version = 0;
        for event in events {
            let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
            version = self
                .store
                .append(ticket, version, &[event], &meta)
                .await?
                .version;
        }
        Ok(ticket)
    }

    /// Every event of the ticket, in order, read straight from the stream.
    pub async fn events(&self, ticket: TicketId) -> Result<Vec<Event>, Box<dyn std::error::Error>> {
        let events = self.store.ticket_events(ticket).await?;
        Ok(events.into_iter().map(|(_, _, event)| event).collect())
    }

    /// Polls the ticket's events until `done` holds, for at most ten seconds.
    pub async fn events_once(
        &self,
        ticket: TicketId,
        done: impl Fn(&[Event]) -> bool,
    ) -> Result<Vec<Event>, Box<dyn std::error::Error>> {
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

/// The German deployment's region, as shipped.
pub fn germany() -> RegionConfig {
    let text = include_str!("../../../../deploy/k8s/overlays/de/helpline.toml");
    RegionConfig::from_region_file(text).unwrap_or_else(|e| panic!("{e}"))
}

/// 2026-11-25 is a Wednesday; noon in Berlin, when every queue is staffed.
pub fn wednesday_noon() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: 1_795_604_400,
        nanos: 0,
    }
}
