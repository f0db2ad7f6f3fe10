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
use std::time::{Duration, SystemTime};

use helpline_domain::Command;
use helpline_domain::TicketId;
use helpline_domain::sla::{SlaClock, SlaLevel};
use helpline_eventstore::{CommandMeta, EventStore};
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
