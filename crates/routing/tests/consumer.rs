//! The routing consumer against a real nats-server: a handoff becomes a route, once.

mod support;

use std::sync::Arc;

use helpline_domain::{Event, QueueId, RouteDestination, StoreId};
use support::{Harness, TestResult, germany};
use tokio_util::sync::CancellationToken;

fn routed(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, Event::TicketQueued { .. } | Event::ReferredToStore(_)))
}

#[tokio::test]
async fn a_laptop_hardware_handoff_is_referred_to_the_store_nearest_to_the_postcode() -> TestResult
{
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let routing = tokio::spawn(helpline_routing::run(
        h.store.clone(),
        Arc::new(germany()),
        shutdown.clone(),
    ));

    let ticket = h
        .handed_over("de", "MateBook X Pro", "hardware", "10115 Berlin")
        .await?;
    let events = h.events_once(ticket, routed).await?;

    let berlin = germany()
        .store(&StoreId::new("berlin-mitte"))
        .map(|store| store.referral())
        .ok_or("no berlin-mitte")?;
    assert_eq!(
        events[3..],
        [
            Event::TicketRouted {
                rule: "laptop-hardware-to-store".to_owned(),
                destination: RouteDestination::Store(berlin.store.clone()),
            },
            Event::ReferredToStore(berlin),
        ]
    );
    shutdown.cancel();
    routing.await??;
    Ok(())
}

#[tokio::test]
async fn handoffs_are_queued_by_their_rule_and_each_routed_once() -> TestResult {
    let h = Harness::start().await?;
    let shutdown = CancellationToken::new();
    let region = Arc::new(germany());
    let routing = tokio::spawn(helpline_routing::run(
        h.store.clone(),
        Arc::clone(&region),
        shutdown.clone(),
    ));

    let phone = h.handed_over("de", "Pura 80", "display", "").await?;
    let unplaced = h
        .handed_over("de", "MateBook", "hardware", "Atlantis")
        .await?;
    let phone_events = h.events_once(phone, routed).await?;
    let unplaced_events = h.events_once(unplaced, routed).await?;
    assert_eq!(
        phone_events[3..],
        [
            Event::TicketRouted {
                rule: "phones-and-wearables".to_owned(),
                destination: RouteDestination::Queue(QueueId::new("de-phones")),
            },
            Event::TicketQueued {
                queue: QueueId::new("de-phones"),
            },
        ]
    );
    assert_eq!(
        unplaced_events[3..],
        [
            Event::TicketRouted {
                rule: "laptop-hardware-to-store/no-store-found".to_owned(),
                destination: RouteDestination::Queue(QueueId::new("de-general")),
            },
            Event::TicketQueued {
                queue: QueueId::new("de-general"),
            },
        ]
    );

    // A second instance starting on the same durable consumer finds nothing left to do.
    shutdown.cancel();
    routing.await??;
    let again = CancellationToken::new();
    let restarted = tokio::spawn(helpline_routing::run(
        h.store.clone(),
        region,
        again.clone(),
    ));
    let later = h.handed_over("en", "MatePad", "", "").await?;
    h.events_once(later, routed).await?;
    assert_eq!(h.events(phone).await?.len(), 5);
    assert_eq!(h.events(unplaced).await?.len(), 5);
    again.cancel();
    restarted.await??;
    Ok(())
}
