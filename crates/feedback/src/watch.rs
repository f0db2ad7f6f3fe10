//! The SLA watch: records `SlaWarning` and `SlaBreached` on a ticket when one of its
//! running clocks reaches the warning share of its queue's target, or the target.
//!
//! The timers are the log itself: the service-level projection, rebuilt from the log at
//! every start, knows every running clock, when it reaches each level in its queue's
//! working time, and which alarms are recorded already. So a restart (or a second
//! replica) fires what fell due meanwhile, once: each alarm's command id is derived from
//! the ticket, clock, run and level, and the ticket's rules record an alarm only once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use helpline_domain::Command;
use helpline_domain::TicketId;
use helpline_domain::sla::{SlaClock, SlaLevel};
use helpline_eventstore::{CommandMeta, Content, EventStore, Follower, LogEntry, Subjects};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::projection::Levels;

/// How often the watch looks for alarms that fell due.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// Tries of one alarm's append against other writers of the ticket.
const APPEND_TRIES: u32 = 5;

/// What the watch reads the time from: the system clock in production, a test's clock
/// in tests.
pub type Now = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Watches `levels` (kept live by [`Levels::follow`]) until `shutdown` fires, appending
/// each alarm as it falls due by `now`.
pub async fn watch_service_levels(
    store: EventStore,
    levels: Levels,
    now: Now,
    shutdown: CancellationToken,
) {
    // Appended, and not yet back through the projection: not appended again meanwhile.
    let mut pending: BTreeSet<(TicketId, SlaClock, SlaLevel, u64)> = BTreeSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        // Before the projection has read the whole log it does not know every alarm
        // already recorded.
        if !levels.is_replayed() {
            continue;
        }
        let due = levels.read_with(|projection| projection.due_alarms(now()));
        let keys: BTreeSet<_> = due
            .iter()
            .map(|a| (a.ticket, a.clock, a.level, a.run_since_ms))
            .collect();
        pending.retain(|key| keys.contains(key));
        for alarm in due {
            let key = (alarm.ticket, alarm.clock, alarm.level, alarm.run_since_ms);
            if pending.contains(&key) {
                continue;
            }
            let name = format!(
                "sla:{}:{}:{}",
                alarm.clock.as_str(),
                alarm.level.as_str(),
                alarm.run_since_ms
            );
            let meta = CommandMeta::new(Uuid::new_v5(&alarm.ticket.0, name.as_bytes()), now());
            let command = Command::RecordSlaAlarm {
                clock: alarm.clock,
                level: alarm.level,
                target_secs: alarm.target.as_secs(),
                run_since_ms: alarm.run_since_ms,
            };
            let executed = store
                .execute(alarm.ticket, &meta, APPEND_TRIES, |_| {
                    Ok::<_, std::convert::Infallible>(vec![command.clone()])
                })
                .await;
            match executed {
                Ok(executed) => {
                    pending.insert(key);
                    if executed.events > 0 && !executed.appended.duplicate {
                        helpline_telemetry::metrics::increment(
                            "helpline_sla_alarms_total",
                            "SLA alarms recorded, by queue, clock and level (warning, breached).",
                            &[
                                ("queue", alarm.queue.as_str()),
                                ("clock", alarm.clock.as_str()),
                                ("level", alarm.level.as_str()),
                            ],
                        );
                        tracing::warn!(
                            ticket = %alarm.ticket,
                            queue = %alarm.queue,
                            clock = alarm.clock.as_str(),
                            level = alarm.level.as_str(),
                            target_secs = alarm.target.as_secs(),
                            "SLA alarm"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(ticket = %alarm.ticket, error = %e, "SLA alarm not recorded, trying again");
                }
            }
        }
    }
}

/// An SLA alarm as recorded on its ticket: what a supervisor is alerted with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedAlarm {
    pub ticket: TicketId,
    /// The queue the ticket was first queued in, whose target it is; `None` when the
    /// service-level projection has not seen it queued.
    pub queue: Option<helpline_domain::QueueId>,
    pub clock: SlaClock,
    pub level: SlaLevel,
    pub target: Duration,
    pub recorded_at: SystemTime,
    /// The alarm's message in the log.
    pub sequence: u64,
}

/// Every SLA alarm recorded after log position `after`, as it is recorded (of `queue`
/// only, when given), until the receiver is dropped: the supervisor's alert feed. The
/// ticket subjects are followed by the event store's one follower; the queue comes from
/// `levels`.
pub fn recorded_alarms(
    store: EventStore,
    levels: Levels,
    after: u64,
    queue: Option<helpline_domain::QueueId>,
) -> tokio::sync::mpsc::UnboundedReceiver<RecordedAlarm> {
    // Unbounded because a follower hands on messages without waiting. What it holds is
    // alarms only (at most two per ticket and clock run), and the stream that drains it
    // ends with the supervisor's token.
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let feed = AlarmFeed {
        levels,
        queue,
        position: AtomicU64::new(after),
        queued: std::sync::Mutex::default(),
        sender,
    };
    tokio::spawn(async move {
        // Nobody cancels it: the follower is dropped when the receiver goes.
        let shutdown = CancellationToken::new();
        tokio::select! {
            _ = feed.sender.closed() => {}
            _ = store.follow("SLA alarm feed", Subjects::Tickets, &feed, &shutdown) => {}
        }
    });
    receiver
}

struct AlarmFeed {
    levels: Levels,
    queue: Option<helpline_domain::QueueId>,
    position: AtomicU64,
    /// The first queue of each ticket queued since the feed started, as the feed read it.
    /// The service-level projection follows the log on its own and may not have read a
    /// ticket's queueing yet when the feed reads its alarm; without this, an alarm right
    /// after its ticket was queued would be taken for another queue's and not sent.
    queued: std::sync::Mutex<std::collections::HashMap<TicketId, helpline_domain::QueueId>>,
    sender: tokio::sync::mpsc::UnboundedSender<RecordedAlarm>,
}

/// Tickets the feed remembers the queue of; beyond this it starts over (the projection
/// has long caught up with the ones it forgets).
const QUEUED_REMEMBERED: usize = 100_000;

impl AlarmFeed {
    fn queued(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<TicketId, helpline_domain::QueueId>>
    {
        self.queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The ticket's queue as the projection has it, or as the feed read it when the
    /// projection has not got there yet.
    fn queue_of(&self, ticket: TicketId) -> Option<helpline_domain::QueueId> {
        self.levels
            .read_with(|projection| projection.ticket(ticket).and_then(|t| t.queue.clone()))
            .or_else(|| self.queued().get(&ticket).cloned())
    }
}

impl Follower for AlarmFeed {
    fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    fn apply(&self, entry: LogEntry) {
        if entry.sequence <= self.position() {
            // Handed on again after a resume: sent already.
            return;
        }
        self.position.store(entry.sequence, Ordering::Release);
        let Content::Ticket(events) = entry.content else {
            return;
        };
        for stored in events {
            if let helpline_domain::Event::TicketQueued { queue } = &stored.event {
                let mut queued = self.queued();
                if queued.len() >= QUEUED_REMEMBERED {
                    queued.clear();
                }
                queued
                    .entry(stored.meta.ticket)
                    .or_insert_with(|| queue.clone());
                continue;
            }
            let helpline_domain::Event::SlaAlarm {
                clock,
                level,
                target_secs,
                ..
            } = stored.event
            else {
                continue;
            };
            let ticket = stored.meta.ticket;
            let queue = self.queue_of(ticket);
            if self.queue.is_some() && queue != self.queue {
                continue;
            }
            // A closed receiver stops the follower (see `recorded_alarms`).
            let _ = self.sender.send(RecordedAlarm {
                ticket,
                queue,
                clock,
                level,
                target: Duration::from_secs(target_secs),
                recorded_at: stored.meta.occurred_at,
                sequence: stored.sequence,
            });
        }
    }

    fn reached_end(&self) {}
}
