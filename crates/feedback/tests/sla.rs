//! SLA alarms on a real nats-server: the watch records the warning and the breach of a
//! ticket's first response once each, at the moments a test clock reaches them, and a
//! restarted watch (a fresh projection rebuilt from the log) neither repeats them nor
//! misses one that fell due while it was down. A supervisor's alert feed, open all the
//! while, is told of each once.

mod support;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use helpline_domain::sla::{SlaClock, SlaLevel};
use helpline_domain::{Channel, Customer, Event, Personal, QueueId, TicketId};
use helpline_eventstore::CommandMeta;
use helpline_feedback::{levels_for_region, recorded_alarms, watch_service_levels};
use helpline_region::RegionConfig;
use support::{Harness, TestResult};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A queue staffed around the clock whose first response is due in 10 minutes; the
/// supervisor is warned at 80 %.
const REGION: &str = r#"
[locale]
country = "DE"
languages = ["de"]
time_zone = "Europe/Berlin"

[routing]
default_queue = "de-general"

[[queues]]
id = "de-general"
sla = { first_response_mins = 10 }
"#;

const MINUTE: Duration = Duration::from_secs(60);

/// A clock the test moves.
#[derive(Clone)]
struct TestClock(Arc<Mutex<SystemTime>>);

impl TestClock {
    fn set(&self, at: SystemTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The projection and the watch, as `helpline feedback` runs them; stopped on drop.
struct Watch {
    stop: CancellationToken,
}

impl Watch {
    fn start(h: &Harness, clock: &TestClock) -> Watch {
        let region = RegionConfig::from_region_file(REGION).unwrap_or_else(|e| panic!("{e}"));
        let levels = levels_for_region(Arc::new(region));
        let stop = CancellationToken::new();
        let (store, following, shutdown) = (h.store.clone(), levels.clone(), stop.clone());
        tokio::spawn(async move { following.follow(&store, shutdown).await });
        let now = clock.clone();
        tokio::spawn(watch_service_levels(
            h.store.clone(),
            levels,
            Arc::new(move || now.now()),
            stop.clone(),
        ));
        Watch { stop }
    }
}

/// Waits up to ten seconds for the ticket's alarms to be `expected`.
async fn until_alarms(h: &Harness, ticket: TicketId, expected: &[(SlaClock, SlaLevel, u64)]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = alarms(h, ticket).await;
        if now == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alarms {now:?}, waited for {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The ticket's SLA alarms in the log, in order.
async fn alarms(h: &Harness, ticket: TicketId) -> Vec<(SlaClock, SlaLevel, u64)> {
    h.store
        .ticket_events(ticket)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter_map(|(_, _, event)| match event {
            Event::SlaAlarm {
                clock,
                level,
                target_secs,
                ..
            } => Some((clock, level, target_secs)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_warning_and_a_breach_fire_once_at_their_moments_and_survive_a_restart() -> TestResult {
    let h = Harness::start().await?;
    let queued_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_630_400);
    let ticket = TicketId(Uuid::now_v7());
    let events = [
        Event::TicketOpened {
            ticket,
            customer: Customer {
                channel: Channel::WhatsApp,
                contact: Personal::from("4915112345678"),
                display_name: None,
            },
            language: "de".to_owned(),
        },
        Event::TicketQueued {
            queue: QueueId::new("de-general"),
        },
    ];
    h.store
        .append(
            ticket,
            0,
            &events,
            &CommandMeta::new(Uuid::now_v7(), queued_at),
        )
        .await?;
    let clock = TestClock(Arc::new(Mutex::new(queued_at + 7 * MINUTE)));
    // A supervisor's alert feed, open through the whole test (the watch's restart too).
    let region = RegionConfig::from_region_file(REGION).unwrap_or_else(|e| panic!("{e}"));
    let feed_levels = levels_for_region(Arc::new(region));
    let feed_stop = CancellationToken::new();
    let (store, following, shutdown) = (h.store.clone(), feed_levels.clone(), feed_stop.clone());
    tokio::spawn(async move { following.follow(&store, shutdown).await });
    let _stop_feed = feed_stop.drop_guard();
    let mut feed = recorded_alarms(
        h.store.clone(),
        feed_levels,
        0,
        Some(QueueId::new("de-general")),
    );
    let watch = Watch::start(&h, &clock);
    // Seven minutes in: nothing yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(alarms(&h, ticket).await, []);

    // Eight minutes (80 % of ten): the warning, once.
    clock.set(queued_at + 8 * MINUTE);
    let warned = vec![(SlaClock::FirstResponse, SlaLevel::Warning, 600)];
    until_alarms(&h, ticket, &warned).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(alarms(&h, ticket).await, warned, "once");

    // The watch restarts while the breach falls due: the new one rebuilds from the log,
    // records the breach, and not the warning again.
    drop(watch);
    clock.set(queued_at + 11 * MINUTE);
    let _watch = Watch::start(&h, &clock);
    let breached = vec![
        (SlaClock::FirstResponse, SlaLevel::Warning, 600),
        (SlaClock::FirstResponse, SlaLevel::Breached, 600),
    ];
    until_alarms(&h, ticket, &breached).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(alarms(&h, ticket).await, breached, "each once");

    // The supervisor was alerted of each, once, in order, with its queue.
    let mut alerted = Vec::new();
    while let Ok(Some(alarm)) = tokio::time::timeout(Duration::from_secs(2), feed.recv()).await {
        assert_eq!(alarm.ticket, ticket);
        assert_eq!(alarm.queue, Some(QueueId::new("de-general")));
        alerted.push((alarm.clock, alarm.level, alarm.target.as_secs()));
    }
    assert_eq!(alerted, breached);
    Ok(())
}
