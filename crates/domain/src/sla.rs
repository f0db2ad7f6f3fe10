//! Service levels: a ticket's SLA clocks, folded from its events.
//!
//! Three clocks, each counting only the queue's working time (business hours, no
//! holidays), as the supervisor's targets mean it:
//!
//! - **first response**: from the ticket's first queueing (the customer waits for a person)
//!   to the first agent message;
//! - **next response**: from a customer message that follows an agent's reply to the
//!   agent's next message: each one a fresh run of the clock;
//! - **resolution**: from the first queueing to the ticket's resolution, paused while the
//!   ticket waits on the customer (an agent spoke last) and running again when they write.
//!
//! Like everything in this crate it reads no clock: every event comes with the moment it
//! happened, and working time is asked of [`WorkingHours`], which the region's calendar
//! implements. **Invariant:** a clock's elapsed time never decreases, as time passes or as
//! events are folded in; folding a ticket's events in one go or one at a time gives the same
//! clocks (a rebuild equals the live fold).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::Event;

/// Working time as a queue counts it.
pub trait WorkingHours {
    /// The working time within `[from, to)`; zero when `to` is not after `from`.
    fn working(&self, from: SystemTime, to: SystemTime) -> Duration;

    /// The moment at which `working` of working time has passed since `from`; `None`
    /// when the hours never open again.
    fn after(&self, from: SystemTime, working: Duration) -> Option<SystemTime>;
}

/// Every moment counts: a queue staffed around the clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct AroundTheClock;

impl WorkingHours for AroundTheClock {
    fn working(&self, from: SystemTime, to: SystemTime) -> Duration {
        to.duration_since(from).unwrap_or_default()
    }

    fn after(&self, from: SystemTime, working: Duration) -> Option<SystemTime> {
        from.checked_add(working)
    }
}

/// Which of a ticket's clocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SlaClock {
    FirstResponse,
    NextResponse,
    Resolution,
}

impl SlaClock {
    pub const ALL: [SlaClock; 3] = [
        SlaClock::FirstResponse,
        SlaClock::NextResponse,
        SlaClock::Resolution,
    ];

    /// As in the region file, events, metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SlaClock::FirstResponse => "first_response",
            SlaClock::NextResponse => "next_response",
            SlaClock::Resolution => "resolution",
        }
    }
}

/// How far past its target a running clock is: the supervisor is warned at a share of
/// the target, and told when it is breached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SlaLevel {
    Warning,
    Breached,
}

impl SlaLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaLevel::Warning => "warning",
            SlaLevel::Breached => "breached",
        }
    }
}

/// One clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockState {
    /// Nothing has started it yet.
    #[default]
    NotStarted,
    /// Counting since `since`, on top of the working time `banked` before a pause.
    Running { since: SystemTime, banked: Duration },
    /// Waiting on the customer, with the working time counted so far.
    Paused { banked: Duration },
    /// Done: the working time it took.
    Stopped { took: Duration },
}

impl ClockState {
    fn start(&mut self, at: SystemTime) {
        *self = ClockState::Running {
            since: at,
            banked: Duration::ZERO,
        };
    }

    fn pause(&mut self, at: SystemTime, hours: &impl WorkingHours) {
        if let ClockState::Running { since, banked } = *self {
            *self = ClockState::Paused {
                banked: banked + hours.working(since, at),
            };
        }
    }

    fn resume(&mut self, at: SystemTime) {
        if let ClockState::Paused { banked } = *self {
            *self = ClockState::Running { since: at, banked };
        }
    }

    fn stop(&mut self, at: SystemTime, hours: &impl WorkingHours) {
        *self = match *self {
            ClockState::Running { since, banked } => ClockState::Stopped {
                took: banked + hours.working(since, at),
            },
            ClockState::Paused { banked } => ClockState::Stopped { took: banked },
            other => other,
        };
    }

    /// The working time counted by `now`; `None` before the clock started.
    pub fn elapsed(&self, now: SystemTime, hours: &impl WorkingHours) -> Option<Duration> {
        match *self {
            ClockState::NotStarted => None,
            ClockState::Running { since, banked } => Some(banked + hours.working(since, now)),
            ClockState::Paused { banked } => Some(banked),
            ClockState::Stopped { took } => Some(took),
        }
    }

    /// When the clock reaches `target` of working time, if it is running: the moment
    /// it started counting again when it is already past.
    pub fn reaches(&self, target: Duration, hours: &impl WorkingHours) -> Option<SystemTime> {
        match *self {
            ClockState::Running { since, banked } => match target.checked_sub(banked) {
                Some(left) => hours.after(since, left),
                None => Some(since),
            },
            _ => None,
        }
    }
}

/// A queue's targets, in working time; a clock without a target is not watched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlaTargets {
    pub first_response: Option<Duration>,
    pub next_response: Option<Duration>,
    pub resolution: Option<Duration>,
    /// The share of a target at which the supervisor is warned, in percent (e.g. 80).
    pub warning_percent: u8,
}

impl SlaTargets {
    pub fn target(&self, clock: SlaClock) -> Option<Duration> {
        match clock {
            SlaClock::FirstResponse => self.first_response,
            SlaClock::NextResponse => self.next_response,
            SlaClock::Resolution => self.resolution,
        }
    }

    /// The warning's share of `clock`'s target.
    pub fn warning(&self, clock: SlaClock) -> Option<Duration> {
        let percent = u32::from(self.warning_percent.min(100));
        self.target(clock).map(|target| target * percent / 100)
    }
}

/// A ticket's three clocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlaClocks {
    pub first_response: ClockState,
    pub next_response: ClockState,
    pub resolution: ClockState,
    /// An agent has written: the customer's next message starts a next-response clock.
    agent_replied: bool,
    /// Resolved, closed or abandoned: nothing starts again.
    done: bool,
}

impl SlaClocks {
    pub fn clock(&self, clock: SlaClock) -> &ClockState {
        match clock {
            SlaClock::FirstResponse => &self.first_response,
            SlaClock::NextResponse => &self.next_response,
            SlaClock::Resolution => &self.resolution,
        }
    }

    /// Folds in `event`, which happened at `at`.
    pub fn apply(mut self, event: &Event, at: SystemTime, hours: &impl WorkingHours) -> Self {
        if self.done {
            return self;
        }
        match event {
            Event::TicketQueued { .. } => {
                if self.first_response == ClockState::NotStarted {
                    self.first_response.start(at);
                }
                match self.resolution {
                    ClockState::NotStarted => self.resolution.start(at),
                    ClockState::Paused { .. } => self.resolution.resume(at),
                    _ => {}
                }
            }
            Event::CustomerMessageReceived { .. } => {
                let waiting = matches!(self.next_response, ClockState::Running { .. });
                if self.agent_replied && !waiting {
                    self.next_response.start(at);
                }
                self.resolution.resume(at);
            }
            Event::AgentMessageSent { .. } => {
                self.agent_replied = true;
                if matches!(self.first_response, ClockState::Running { .. }) {
                    self.first_response.stop(at, hours);
                }
                if matches!(self.next_response, ClockState::Running { .. }) {
                    self.next_response.stop(at, hours);
                }
                self.resolution.pause(at, hours);
            }
            Event::TicketResolved { .. } | Event::TicketClosed { .. } | Event::TicketAbandoned => {
                self.first_response.stop(at, hours);
                self.next_response.stop(at, hours);
                self.resolution.stop(at, hours);
                self.done = true;
            }
            _ => {}
        }
        self
    }

    /// Folds a ticket's events with their moments, in log order.
    pub fn fold<'a>(
        events: impl IntoIterator<Item = (&'a Event, SystemTime)>,
        hours: &impl WorkingHours,
    ) -> Self {
        events
            .into_iter()
            .fold(Self::default(), |clocks, (event, at)| {
                clocks.apply(event, at, hours)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentId, MessageBody, MessageId, Personal, QueueId};
    use proptest::prelude::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn t(minutes: u64) -> SystemTime {
        // Monday 7 December 2026, 00:00 UTC.
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_601_600) + MINUTE * minutes as u32
    }

    fn queued() -> Event {
        Event::TicketQueued {
            queue: QueueId::new("de-laptops"),
        }
    }

    fn customer() -> Event {
        Event::CustomerMessageReceived {
            message: MessageId(uuid::Uuid::nil()),
            provider_message_id: Personal::new("wamid.1".to_owned()),
            body: MessageBody::Text(Personal::new("hallo".to_owned())),
        }
    }

    fn agent() -> Event {
        Event::AgentMessageSent {
            agent: AgentId::new("anna"),
            message: MessageId(uuid::Uuid::nil()),
            body: MessageBody::Text(Personal::new("Guten Tag".to_owned())),
        }
    }

    fn resolved() -> Event {
        Event::TicketResolved {
            agent: AgentId::new("anna"),
            summary: String::new(),
        }
    }

    /// Agents work 08:00–20:00 UTC every day.
    struct Daytime;

    impl Daytime {
        fn open_in(day_start: SystemTime) -> (SystemTime, SystemTime) {
            (day_start + MINUTE * 8 * 60, day_start + MINUTE * 20 * 60)
        }

        fn day_start(at: SystemTime) -> SystemTime {
            let secs = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs - secs % 86_400)
        }
    }

    impl WorkingHours for Daytime {
        fn working(&self, from: SystemTime, to: SystemTime) -> Duration {
            let mut total = Duration::ZERO;
            let mut day = Self::day_start(from);
            while day < to {
                let (open, close) = Self::open_in(day);
                let (a, b) = (open.max(from), close.min(to));
                total += b.duration_since(a).unwrap_or_default();
                day += Duration::from_secs(86_400);
            }
            total
        }

        fn after(&self, from: SystemTime, working: Duration) -> Option<SystemTime> {
            let mut left = working;
            let mut day = Self::day_start(from);
            loop {
                let (open, close) = Self::open_in(day);
                let start = open.max(from);
                let span = close.duration_since(start).unwrap_or_default();
                if span >= left && start < close {
                    return Some(start + left);
                }
                left -= span;
                day += Duration::from_secs(86_400);
            }
        }
    }

    struct Given {
        clocks: SlaClocks,
    }

    fn given(events: &[(Event, u64)]) -> Given {
        Given {
            clocks: SlaClocks::fold(events.iter().map(|(e, m)| (e, t(*m))), &AroundTheClock),
        }
    }

    impl Given {
        fn when(mut self, event: Event, minute: u64) -> Self {
            self.clocks = self.clocks.apply(&event, t(minute), &AroundTheClock);
            self
        }

        fn elapsed(&self, clock: SlaClock, minute: u64) -> Option<u64> {
            self.clocks
                .clock(clock)
                .elapsed(t(minute), &AroundTheClock)
                .map(|d| d.as_secs() / 60)
        }
    }

    #[test]
    fn the_first_response_clock_runs_from_queueing_to_the_first_agent_message() {
        let g = given(&[(customer(), 0)]);
        assert_eq!(
            g.elapsed(SlaClock::FirstResponse, 5),
            None,
            "not queued yet"
        );
        let g = g.when(queued(), 2);
        assert_eq!(g.elapsed(SlaClock::FirstResponse, 12), Some(10));
        let g = g.when(agent(), 17);
        assert_eq!(g.elapsed(SlaClock::FirstResponse, 60), Some(15), "stopped");
        // A second agent message changes nothing.
        let g = g.when(agent(), 30);
        assert_eq!(g.elapsed(SlaClock::FirstResponse, 60), Some(15));
    }

    #[test]
    fn a_customer_message_after_an_agent_reply_starts_a_fresh_next_response_clock() {
        let g = given(&[(queued(), 0), (agent(), 5)]);
        assert_eq!(g.elapsed(SlaClock::NextResponse, 10), None);
        let g = g.when(customer(), 20);
        assert_eq!(g.elapsed(SlaClock::NextResponse, 23), Some(3));
        // The customer writing again does not restart it.
        let g = g.when(customer(), 25);
        assert_eq!(g.elapsed(SlaClock::NextResponse, 30), Some(10));
        let g = g.when(agent(), 32);
        assert_eq!(g.elapsed(SlaClock::NextResponse, 90), Some(12));
        let g = g.when(customer(), 100);
        assert_eq!(g.elapsed(SlaClock::NextResponse, 101), Some(1), "fresh run");
    }

    #[test]
    fn the_resolution_clock_pauses_while_the_ticket_waits_on_the_customer() {
        let g = given(&[(queued(), 0), (agent(), 10)]);
        assert_eq!(g.elapsed(SlaClock::Resolution, 500), Some(10), "paused");
        let g = g.when(customer(), 600);
        assert_eq!(g.elapsed(SlaClock::Resolution, 605), Some(15));
        let g = g.when(resolved(), 620);
        assert_eq!(g.elapsed(SlaClock::Resolution, 9_000), Some(30));
    }

    #[test]
    fn resolution_stops_every_clock_and_nothing_starts_them_again() {
        let g = given(&[(queued(), 0), (resolved(), 4)]);
        assert_eq!(g.elapsed(SlaClock::FirstResponse, 100), Some(4));
        let g = g.when(customer(), 10).when(queued(), 11);
        assert_eq!(g.elapsed(SlaClock::Resolution, 100), Some(4));
        assert_eq!(g.elapsed(SlaClock::NextResponse, 100), None);
    }

    #[test]
    fn clocks_count_working_time_only() {
        // Queued Monday 19:00; agents leave at 20:00 and are back at 08:00.
        let clocks = SlaClocks::default().apply(&queued(), t(19 * 60), &Daytime);
        let at = |minute| {
            clocks
                .first_response
                .elapsed(t(minute), &Daytime)
                .map(|d| d.as_secs() / 60)
        };
        assert_eq!(at(19 * 60 + 30), Some(30));
        assert_eq!(at(23 * 60), Some(60), "the night does not count");
        assert_eq!(at(24 * 60 + 8 * 60 + 15), Some(75));
        // A two-hour target is reached Tuesday 09:00.
        let due = clocks
            .first_response
            .reaches(MINUTE * 120, &Daytime)
            .unwrap_or_else(|| panic!("never due"));
        assert_eq!(due, t(24 * 60 + 9 * 60));
    }

    #[test]
    fn a_warning_comes_at_its_share_of_the_target() {
        let targets = SlaTargets {
            first_response: Some(MINUTE * 60),
            warning_percent: 80,
            ..SlaTargets::default()
        };
        assert_eq!(targets.warning(SlaClock::FirstResponse), Some(MINUTE * 48));
        assert_eq!(targets.warning(SlaClock::Resolution), None);
        let clocks = SlaClocks::default().apply(&queued(), t(0), &AroundTheClock);
        assert_eq!(
            clocks.first_response.reaches(MINUTE * 48, &AroundTheClock),
            Some(t(48))
        );
        // A paused or stopped clock reaches nothing.
        let replied = clocks.apply(&agent(), t(5), &AroundTheClock);
        assert_eq!(
            replied.resolution.reaches(MINUTE * 48, &AroundTheClock),
            None
        );
    }

    fn events() -> impl Strategy<Value = Vec<(Event, u64)>> {
        let event = prop_oneof![
            Just(queued()),
            Just(customer()),
            Just(agent()),
            Just(resolved()),
        ];
        proptest::collection::vec((event, 0u64..600), 0..30).prop_map(|mut events| {
            // Moments in log order.
            let mut at = 0;
            for (_, gap) in &mut events {
                at += *gap;
                *gap = at;
            }
            events
        })
    }

    proptest! {
        #[test]
        fn clocks_never_run_backwards(events in events(), step in 1u64..600) {
            let mut clocks = SlaClocks::default();
            let mut last: [Option<Duration>; 3] = [None; 3];
            let end = events.last().map_or(0, |(_, m)| *m) + step;
            let mut moments: Vec<u64> = events.iter().map(|(_, m)| *m).collect();
            moments.extend((0..end).step_by(usize::try_from(step).unwrap_or(1)));
            moments.sort_unstable();
            let mut next = events.iter().peekable();
            for now in moments {
                while let Some((event, _)) = next.next_if(|(_, m)| *m <= now) {
                    clocks = clocks.apply(event, t(now), &Daytime);
                }
                for (i, clock) in SlaClock::ALL.iter().enumerate() {
                    let elapsed = clocks.clock(*clock).elapsed(t(now), &Daytime);
                    if let (Some(before), Some(after)) = (last[i], elapsed) {
                        // A fresh next-response run starts again from zero: that is a
                        // new clock, not this one running backwards.
                        let fresh = *clock == SlaClock::NextResponse
                            && matches!(clocks.next_response, ClockState::Running { banked, .. } if banked.is_zero());
                        prop_assert!(after >= before || fresh, "{clock:?} went from {before:?} to {after:?}");
                    }
                    last[i] = elapsed.or(last[i]);
                }
            }
        }

        #[test]
        fn a_rebuild_equals_the_live_fold(events in events(), split in 0usize..30) {
            let all = SlaClocks::fold(events.iter().map(|(e, m)| (e, t(*m))), &Daytime);
            let split = split.min(events.len());
            let live = SlaClocks::fold(events[..split].iter().map(|(e, m)| (e, t(*m))), &Daytime);
            let live = events[split..]
                .iter()
                .fold(live, |clocks, (e, m)| clocks.apply(e, t(*m), &Daytime));
            prop_assert_eq!(all, live);
        }
    }
}
