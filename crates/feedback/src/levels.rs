//! The service-level projection: each ticket's SLA clocks (first response, next response,
//! resolution), counted in its queue's working time, and the report over them.
//!
//! Pure like [`crate::csat`]: [`LevelsProjection::apply`] takes one stored event at a
//! time with the region's configuration and reads no clock; a report takes the moment it
//! is for, so that a clock still running past its target counts as breached.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use helpline_domain::sla::{ClockState, SlaClock, SlaClocks, SlaLevel, SlaTargets};
use helpline_domain::{AgentId, Channel, Event, QueueId, TicketId};
use helpline_eventstore::{Applied, StoredEvent};
use helpline_region::RegionConfig;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::csat::{CsatFilter, Grouping};

/// What one ticket contributes to the service-level report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketLevels {
    pub region: String,
    pub channel: Option<Channel>,
    /// The queue whose hours and targets hold the ticket: the one it was first queued in.
    pub queue: Option<QueueId>,
    /// The agent who resolved it, else the last one who wrote to the customer.
    pub agent: Option<AgentId>,
    /// When it was first queued: the moment that places a ticket in a period.
    pub queued_at: Option<Timestamp>,
    pub clocks: SlaClocks,
    /// The SLA alarms the log holds for it: clock, level, the run's start (ms).
    pub alarms: std::collections::BTreeSet<(SlaClock, SlaLevel, u64)>,
}

/// An SLA alarm that is due and not yet in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueAlarm {
    pub ticket: TicketId,
    pub queue: QueueId,
    pub clock: SlaClock,
    pub level: SlaLevel,
    pub target: Duration,
    /// The clock's run: its start in ms since the epoch for next response, 0 otherwise.
    pub run_since_ms: u64,
}

/// Every queued ticket's clocks, and how far into the log the fold has come, with the
/// region whose queue hours, holidays and targets they are counted and judged by.
#[derive(Clone, Debug, PartialEq)]
pub struct LevelsProjection {
    tickets: HashMap<TicketId, TicketLevels>,
    applied: Applied,
    region: Arc<RegionConfig>,
}

/// The figures of one clock over a group of tickets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClockFigures {
    /// Runs of the clock that stopped (for next response, every one of them counts once:
    /// the last run of each ticket).
    pub stopped: u32,
    /// Working time of the stopped runs, summed.
    pub working_total: Duration,
    /// Stopped within the queue's target.
    pub met: u32,
    /// Stopped past the target, or still running past it at the report's moment.
    pub breached: u32,
}

/// The figures of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelsRow {
    /// One value per grouping, in the order asked.
    pub group: Vec<String>,
    /// Tickets queued for an agent.
    pub tickets: u32,
    pub first_response: ClockFigures,
    pub next_response: ClockFigures,
    pub resolution: ClockFigures,
}

impl LevelsProjection {
    /// Empty, for `region`'s queues.
    pub fn new(region: Arc<RegionConfig>) -> Self {
        Self {
            tickets: HashMap::new(),
            applied: Applied::default(),
            region,
        }
    }

    pub fn region(&self) -> &RegionConfig {
        &self.region
    }

    /// Folds one event in, counting working time by the hours of the ticket's queue.
    /// Events already applied are skipped.
    pub fn apply(&mut self, stored: &StoredEvent) {
        if !self.applied.admit(stored.sequence, stored.meta.event_id) {
            return;
        }
        let region = &self.region;
        let ticket = self.tickets.entry(stored.meta.ticket).or_default();
        if ticket.region.is_empty() {
            ticket.region.clone_from(&stored.meta.region);
        }
        match &stored.event {
            Event::TicketOpened { customer, .. } => ticket.channel = Some(customer.channel),
            Event::TicketQueued { queue } if ticket.queue.is_none() => {
                ticket.queue = Some(queue.clone());
                ticket.queued_at = Timestamp::try_from(stored.meta.occurred_at).ok();
            }
            Event::AgentMessageSent { agent, .. } => ticket.agent = Some(agent.clone()),
            Event::SlaAlarm {
                clock,
                level,
                run_since_ms,
                ..
            } => {
                ticket.alarms.insert((*clock, *level, *run_since_ms));
            }
            Event::TicketResolved { agent, .. } => ticket.agent = Some(agent.clone()),
            _ => {}
        }
        let at = stored.meta.occurred_at;
        // A ticket never queued has no clock running; one queued in a queue this region
        // no longer has counts around the clock.
        match ticket.queue.as_ref().and_then(|id| region.queue(id)) {
            Some(queue) => {
                let hours = region.working_hours(queue);
                ticket.clocks = ticket.clocks.apply(&stored.event, at, &hours);
            }
            None => {
                let hours = helpline_domain::sla::AroundTheClock;
                ticket.clocks = ticket.clocks.apply(&stored.event, at, &hours);
            }
        }
    }

    /// Stream sequence of the last applied event; 0 before the first.
    pub fn last_sequence(&self) -> u64 {
        self.applied.sequence()
    }

    pub fn ticket(&self, id: TicketId) -> Option<&TicketLevels> {
        self.tickets.get(&id)
    }

    /// Every alarm due by `now` and not yet recorded: a running clock past the warning
    /// share of its queue's target, or past the target. Warnings come before breaches.
    pub fn due_alarms(&self, now: SystemTime) -> Vec<DueAlarm> {
        let region = &self.region;
        let mut due = Vec::new();
        for (id, ticket) in &self.tickets {
            let Some(queue) = ticket.queue.as_ref().and_then(|q| region.queue(q)) else {
                continue;
            };
            let Some(targets) = queue.sla.map(|sla| sla.targets()) else {
                continue;
            };
            let hours = region.working_hours(queue);
            for clock in SlaClock::ALL {
                let state = ticket.clocks.clock(clock);
                let ClockState::Running { since, .. } = *state else {
                    continue;
                };
                // Next response runs afresh after each agent reply: its start names the
                // run. The other clocks run once per ticket (paused and resumed).
                let run_since_ms = match clock {
                    SlaClock::NextResponse => since
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    _ => 0,
                };
                let Some(target) = targets.target(clock) else {
                    continue;
                };
                for (level, at) in [
                    (SlaLevel::Warning, targets.warning(clock)),
                    (SlaLevel::Breached, Some(target)),
                ] {
                    let reached = at.and_then(|at| state.reaches(at, &hours));
                    if reached.is_some_and(|moment| moment <= now)
                        && !ticket.alarms.contains(&(clock, level, run_since_ms))
                    {
                        due.push(DueAlarm {
                            ticket: *id,
                            queue: queue.id.clone(),
                            clock,
                            level,
                            target,
                            run_since_ms,
                        });
                    }
                }
            }
        }
        due.sort_by_key(|alarm| (alarm.ticket, alarm.clock, alarm.level));
        due
    }

    /// The figures of the queued tickets `filter` lets through (`from` and `to` on the
    /// first queueing; the agent as above), one row per group, ordered by group, at the
    /// moment `now`.
    pub fn report(
        &self,
        filter: &CsatFilter,
        group_by: &[Grouping],
        now: SystemTime,
    ) -> Vec<LevelsRow> {
        let region = &self.region;
        let zone: TimeZone = region.locale.zone();
        let mut rows: BTreeMap<Vec<String>, LevelsRow> = BTreeMap::new();
        for ticket in self.tickets.values() {
            let Some(queued_at) = ticket.queued_at else {
                continue;
            };
            if !filter.admits_values(
                ticket.queue.as_ref(),
                ticket.agent.as_ref(),
                ticket.channel,
                queued_at,
            ) {
                continue;
            }
            let group: Vec<String> = group_by
                .iter()
                .map(|grouping| {
                    grouping.key_of(
                        &ticket.region,
                        ticket.queue.as_ref(),
                        ticket.agent.as_ref(),
                        ticket.channel,
                        queued_at,
                        &zone,
                    )
                })
                .collect();
            let row = rows.entry(group.clone()).or_insert_with(|| LevelsRow {
                group,
                ..LevelsRow::default()
            });
            row.tickets += 1;
            let queue = ticket.queue.as_ref().and_then(|id| region.queue(id));
            let targets: SlaTargets = queue
                .and_then(|queue| queue.sla)
                .map(|sla| sla.targets())
                .unwrap_or_default();
            for clock in SlaClock::ALL {
                let figures = match clock {
                    SlaClock::FirstResponse => &mut row.first_response,
                    SlaClock::NextResponse => &mut row.next_response,
                    SlaClock::Resolution => &mut row.resolution,
                };
                let state = ticket.clocks.clock(clock);
                let elapsed = match queue {
                    Some(queue) => state.elapsed(now, &region.working_hours(queue)),
                    None => state.elapsed(now, &helpline_domain::sla::AroundTheClock),
                };
                figures.count(state, elapsed, targets.target(clock));
            }
        }
        rows.into_values().collect()
    }
}

impl ClockFigures {
    fn count(&mut self, state: &ClockState, elapsed: Option<Duration>, target: Option<Duration>) {
        let Some(elapsed) = elapsed else {
            return;
        };
        let over = target.is_some_and(|target| elapsed > target);
        if let ClockState::Stopped { took } = state {
            self.stopped += 1;
            self.working_total += *took;
            if target.is_some() && !over {
                self.met += 1;
            }
        }
        if over {
            self.breached += 1;
        }
    }

    /// Mean working time of the stopped runs; zero without any.
    pub fn average(&self) -> Duration {
        if self.stopped == 0 {
            Duration::ZERO
        } else {
            self.working_total / self.stopped
        }
    }

    /// Runs within target per runs judged (met or breached), in percent; 100 when none
    /// was judged yet.
    pub fn attainment_percent(&self) -> f64 {
        let judged = self.met + self.breached;
        if judged == 0 {
            100.0
        } else {
            100.0 * f64::from(self.met) / f64::from(judged)
        }
    }
}

#[cfg(test)]
mod tests {
    use helpline_domain::{Customer, MessageBody, MessageId, Personal};
    use uuid::Uuid;

    use super::*;

    const MINUTE: u64 = 60;
    /// Monday 7 December 2026, 09:00 in Berlin (08:00 UTC).
    const MONDAY_9: u64 = 1_796_630_400;

    const REGION: &str = r#"
[locale]
country = "DE"
languages = ["de"]
time_zone = "Europe/Berlin"

[routing]
default_queue = "de-always"

[[queues]]
id = "de-always"
sla = { first_response_mins = 30, next_response_mins = 60, resolution_hours = 24 }

[[queues]]
id = "de-office"
hours = ["mon-fri 08:00-20:00"]
sla = { first_response_mins = 30 }
"#;

    fn region() -> RegionConfig {
        RegionConfig::from_region_file(REGION).unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(unix_secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs)
    }

    /// A log written by hand, folded as it grows.
    struct Log {
        projection: LevelsProjection,
        events: Vec<StoredEvent>,
    }

    fn log() -> Log {
        Log {
            projection: LevelsProjection::new(Arc::new(region())),
            events: Vec::new(),
        }
    }

    impl Log {
        fn at(&mut self, ticket: TicketId, unix_secs: u64, event: Event) -> &mut Self {
            let stored = StoredEvent::handwritten(
                ticket,
                self.events.len() as u64 + 1,
                at(unix_secs),
                event,
            );
            self.projection.apply(&stored);
            self.events.push(stored);
            self
        }

        fn opened(&mut self, channel: Channel, queue: &str, queued: u64) -> TicketId {
            let id = TicketId(Uuid::now_v7());
            let customer = Customer {
                channel,
                contact: Personal::from("contact"),
                display_name: None,
            };
            self.at(
                id,
                queued - MINUTE,
                Event::TicketOpened {
                    ticket: id,
                    customer,
                    language: "de".to_owned(),
                },
            )
            .at(
                id,
                queued,
                Event::TicketQueued {
                    queue: QueueId::new(queue),
                },
            );
            id
        }

        fn agent(&mut self, ticket: TicketId, agent: &str, unix_secs: u64) -> &mut Self {
            self.at(
                ticket,
                unix_secs,
                Event::AgentMessageSent {
                    agent: AgentId::new(agent),
                    message: MessageId(Uuid::now_v7()),
                    body: MessageBody::Text(Personal::from("Guten Tag")),
                },
            )
        }

        fn customer(&mut self, ticket: TicketId, unix_secs: u64) -> &mut Self {
            self.at(
                ticket,
                unix_secs,
                Event::CustomerMessageReceived {
                    message: MessageId(Uuid::now_v7()),
                    provider_message_id: Personal::from("wamid.1"),
                    body: MessageBody::Text(Personal::from("Danke")),
                },
            )
        }

        fn resolved(&mut self, ticket: TicketId, agent: &str, unix_secs: u64) -> &mut Self {
            self.at(
                ticket,
                unix_secs,
                Event::TicketResolved {
                    agent: AgentId::new(agent),
                    summary: String::new(),
                },
            )
        }

        fn report(&self, group_by: &[Grouping], now: u64) -> Vec<LevelsRow> {
            self.projection
                .report(&CsatFilter::default(), group_by, at(now))
        }
    }

    /// Three tickets of the around-the-clock queue on Monday morning.
    fn monday() -> Log {
        let mut log = log();
        // Anna answers in 20 minutes, then takes 2 hours for the next answer.
        let a = log.opened(Channel::WhatsApp, "de-always", MONDAY_9);
        log.agent(a, "anna", MONDAY_9 + 20 * MINUTE)
            .customer(a, MONDAY_9 + 40 * MINUTE)
            .agent(a, "anna", MONDAY_9 + 160 * MINUTE)
            .resolved(a, "anna", MONDAY_9 + 180 * MINUTE);
        // Ben answers in 45 minutes.
        let b = log.opened(Channel::WebChat, "de-always", MONDAY_9 + 60 * MINUTE);
        log.agent(b, "ben", MONDAY_9 + 105 * MINUTE)
            .resolved(b, "ben", MONDAY_9 + 120 * MINUTE);
        // Nobody has answered yet.
        log.opened(Channel::WhatsApp, "de-always", MONDAY_9 + 150 * MINUTE);
        log
    }

    #[test]
    fn a_queue_report_counts_tickets_times_and_targets_met_and_breached() {
        // At 12:30 the third ticket has waited 60 minutes: past its 30-minute target.
        let rows = monday().report(&[Grouping::Queue], MONDAY_9 + 210 * MINUTE);
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(
            (row.group.as_slice(), row.tickets),
            (&["de-always".to_owned()][..], 3)
        );
        let first = &row.first_response;
        assert_eq!((first.stopped, first.met, first.breached), (2, 1, 2));
        assert_eq!(first.average(), Duration::from_secs(32 * 60 + 30));
        assert!((first.attainment_percent() - 100.0 / 3.0).abs() < 1e-9);
        // Anna's two hours for the next answer missed its hour.
        let next = &row.next_response;
        assert_eq!((next.stopped, next.met, next.breached), (1, 0, 1));
        assert_eq!(next.average(), Duration::from_secs(120 * 60));
        // Resolution pauses while the ticket waits on the customer: Anna's ticket counts
        // the 20 minutes to her first answer and the 120 to her second; after that it
        // waited on the customer until she resolved it. Ben's: 45 minutes.
        let resolution = &row.resolution;
        assert_eq!(
            (resolution.stopped, resolution.met, resolution.breached),
            (2, 2, 0)
        );
        assert_eq!(
            resolution.average(),
            Duration::from_secs((140 + 45) * 60 / 2)
        );
    }

    #[test]
    fn a_report_by_agent_and_channel_splits_the_same_tickets() {
        let rows = monday().report(
            &[Grouping::Agent, Grouping::Channel],
            MONDAY_9 + 210 * MINUTE,
        );
        let groups: Vec<(Vec<String>, u32, u32)> = rows
            .iter()
            .map(|r| (r.group.clone(), r.tickets, r.first_response.met))
            .collect();
        let g = |agent: &str, channel: &str| vec![agent.to_owned(), channel.to_owned()];
        assert_eq!(
            groups,
            [
                (g("", "whatsapp"), 1, 0),
                (g("anna", "whatsapp"), 1, 1),
                (g("ben", "web"), 1, 0),
            ]
        );
    }

    #[test]
    fn working_time_leaves_out_the_night_and_the_weekend() {
        let mut log = log();
        // Queued Friday 19:50 in Berlin; the office opens Monday 08:00; answered 08:05.
        let friday_1950 = MONDAY_9 - 3 * 24 * 3600 + 10 * 3600 + 50 * MINUTE;
        let t = log.opened(Channel::Telegram, "de-office", friday_1950);
        log.agent(t, "anna", MONDAY_9 - 55 * MINUTE);
        let rows = log.report(&[Grouping::Queue], MONDAY_9);
        let first = &rows[0].first_response;
        assert_eq!(first.average(), Duration::from_secs(15 * 60));
        assert_eq!((first.met, first.breached), (1, 0));
        // Without a target nothing is judged: next response and resolution have none.
        assert_eq!(rows[0].resolution.attainment_percent(), 100.0);
    }

    #[test]
    fn a_rebuild_from_the_log_equals_the_live_fold_and_a_replay_changes_nothing() {
        let live = monday();
        let mut rebuilt = LevelsProjection::new(Arc::new(region()));
        for stored in &live.events {
            rebuilt.apply(stored);
        }
        assert_eq!(rebuilt, live.projection);
        // Delivered again from an earlier position: already applied, skipped.
        for stored in &live.events[3..] {
            rebuilt.apply(stored);
        }
        assert_eq!(rebuilt, live.projection);
        let weeks = live.report(&[Grouping::Week], MONDAY_9 + 210 * MINUTE);
        assert_eq!(weeks[0].group, ["2026-W50"]);
    }
}
