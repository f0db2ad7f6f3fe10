//! The CSAT projection: what each ticket contributes to customer satisfaction, folded
//! from its events, and the report over it.
//!
//! Pure: [`CsatProjection::apply`] takes one stored event at a time and reads no clock,
//! so the same log always folds to the same projection, live or rebuilt.

use std::collections::{BTreeMap, HashMap};

use helpline_domain::{AgentId, Channel, Event, QueueId, TicketId};
use helpline_eventstore::{Applied, StoredEvent};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// What one ticket contributes to the report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TicketCsat {
    pub region: String,
    pub channel: Option<Channel>,
    /// The queue the ticket was last queued in; none for a store referral.
    pub queue: Option<QueueId>,
    /// The agent who resolved it, the last one if it was resolved more than once.
    pub agent: Option<AgentId>,
    pub resolved_at: Option<Timestamp>,
    /// When the customer was asked to rate: the moment that places a ticket in a period.
    pub rating_requested_at: Option<Timestamp>,
    pub rated_at: Option<Timestamp>,
    pub score: Option<u8>,
}

/// Every ticket's contribution, and how far into the log the fold has come.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsatProjection {
    tickets: HashMap<TicketId, TicketCsat>,
    applied: Applied,
}

/// Which tickets a report counts; `None` does not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsatFilter {
    pub queue: Option<QueueId>,
    pub agent: Option<AgentId>,
    pub channel: Option<Channel>,
    /// Rating requested at or after.
    pub from: Option<Timestamp>,
    /// Rating requested before.
    pub to: Option<Timestamp>,
}

/// What a report groups tickets by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    Region,
    Queue,
    Agent,
    Channel,
    /// Periods of the rating request, in the region's time zone.
    Day,
    Week,
    Month,
}

/// The figures of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsatRow {
    /// One value per grouping, in the order asked.
    pub group: Vec<String>,
    pub ratings: u32,
    pub score_sum: u32,
    /// Ratings of 4 or 5.
    pub satisfied: u32,
    pub ratings_requested: u32,
}

impl CsatProjection {
    /// Folds one event in. Events already applied are skipped, so a replay that overlaps
    /// what was applied changes nothing.
    pub fn apply(&mut self, stored: &StoredEvent) {
        if !self.applied.admit(stored.sequence, stored.meta.event_id) {
            return;
        }
        // An occurred-at outside jiff's range cannot come from a real clock; the event
        // still counts, without a time.
        let at = Timestamp::try_from(stored.meta.occurred_at).ok();
        let ticket = self.tickets.entry(stored.meta.ticket).or_default();
        if ticket.region.is_empty() {
            ticket.region.clone_from(&stored.meta.region);
        }
        match &stored.event {
            Event::TicketOpened { customer, .. } => ticket.channel = Some(customer.channel),
            Event::TicketQueued { queue } => ticket.queue = Some(queue.clone()),
            Event::TicketResolved { agent, .. } => {
                ticket.agent = Some(agent.clone());
                ticket.resolved_at = at;
            }
            Event::RatingRequested { .. } => ticket.rating_requested_at = at,
            Event::RatingReceived { score, .. } => {
                ticket.score = Some(*score);
                ticket.rated_at = at;
            }
            _ => {}
        }
    }

    /// Stream sequence of the last applied event; 0 before the first.
    pub fn last_sequence(&self) -> u64 {
        self.applied.sequence()
    }

    pub fn ticket(&self, id: TicketId) -> Option<&TicketCsat> {
        self.tickets.get(&id)
    }

    /// The figures of the tickets `filter` lets through, one row per group, ordered by
    /// group. Only tickets asked for a rating (or rated) count.
    pub fn report(
        &self,
        filter: &CsatFilter,
        group_by: &[Grouping],
        zone: &TimeZone,
    ) -> Vec<CsatRow> {
        let mut rows: BTreeMap<Vec<String>, CsatRow> = BTreeMap::new();
        for ticket in self.tickets.values() {
            let Some(requested_at) = ticket.rating_requested_at.or(ticket.rated_at) else {
                continue;
            };
            if !filter.admits(ticket, requested_at) {
                continue;
            }
            let group: Vec<String> = group_by
                .iter()
                .map(|grouping| grouping.key(ticket, requested_at, zone))
                .collect();
            let row = rows.entry(group.clone()).or_insert_with(|| CsatRow {
                group,
                ..CsatRow::default()
            });
            row.ratings_requested += 1;
            if let Some(score) = ticket.score {
                row.ratings += 1;
                row.score_sum += u32::from(score);
                if score >= 4 {
                    row.satisfied += 1;
                }
            }
        }
        rows.into_values().collect()
    }
}

impl CsatFilter {
    fn admits(&self, ticket: &TicketCsat, requested_at: Timestamp) -> bool {
        self.admits_values(
            ticket.queue.as_ref(),
            ticket.agent.as_ref(),
            ticket.channel,
            requested_at,
        )
    }

    /// Whether a ticket with these values, placed in time by `at`, counts.
    pub(crate) fn admits_values(
        &self,
        queue: Option<&QueueId>,
        agent: Option<&AgentId>,
        channel: Option<Channel>,
        at: Timestamp,
    ) -> bool {
        matches(self.queue.as_ref(), queue)
            && matches(self.agent.as_ref(), agent)
            && matches(self.channel.as_ref(), channel.as_ref())
            && self.from.is_none_or(|from| at >= from)
            && self.to.is_none_or(|to| at < to)
    }
}

/// No filter, or the ticket's value equals the wanted one.
fn matches<T: PartialEq>(wanted: Option<&T>, actual: Option<&T>) -> bool {
    wanted.is_none() || wanted == actual
}

impl Grouping {
    fn key(self, ticket: &TicketCsat, requested_at: Timestamp, zone: &TimeZone) -> String {
        self.key_of(
            &ticket.region,
            ticket.queue.as_ref(),
            ticket.agent.as_ref(),
            ticket.channel,
            requested_at,
            zone,
        )
    }

    /// The group of a ticket with these values, placed in a period by `at` in `zone`.
    pub(crate) fn key_of(
        self,
        region: &str,
        queue: Option<&QueueId>,
        agent: Option<&AgentId>,
        channel: Option<Channel>,
        at: Timestamp,
        zone: &TimeZone,
    ) -> String {
        let date = at.to_zoned(zone.clone()).date();
        match self {
            Grouping::Region => region.to_owned(),
            Grouping::Queue => queue.map(ToString::to_string).unwrap_or_default(),
            Grouping::Agent => agent.map(ToString::to_string).unwrap_or_default(),
            Grouping::Channel => channel.map(Channel::as_str).unwrap_or_default().to_owned(),
            Grouping::Day => date.to_string(),
            Grouping::Week => {
                let week = date.iso_week_date();
                format!("{:04}-W{:02}", week.year(), week.week())
            }
            Grouping::Month => format!("{:04}-{:02}", date.year(), date.month()),
        }
    }
}

impl CsatRow {
    /// Mean score; 0 without ratings.
    pub fn average(&self) -> f64 {
        ratio(self.score_sum, self.ratings)
    }

    /// Share of ratings of 4 or 5, in percent.
    pub fn csat_percent(&self) -> f64 {
        100.0 * ratio(self.satisfied, self.ratings)
    }

    /// Ratings received per rating requested, in percent.
    pub fn response_rate_percent(&self) -> f64 {
        100.0 * ratio(self.ratings, self.ratings_requested)
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use helpline_domain::{CloseReason, Customer, MessageId, Personal};
    use uuid::Uuid;

    use super::*;

    /// Builds a log by hand: events get increasing sequences and the given times.
    #[derive(Default)]
    struct Log {
        events: Vec<StoredEvent>,
    }

    impl Log {
        fn at(&mut self, ticket: TicketId, unix_secs: u64, event: Event) -> &mut Self {
            let sequence = self.events.len() as u64 + 1;
            self.events.push(StoredEvent::handwritten(
                ticket,
                sequence,
                SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs),
                event,
            ));
            self
        }

        /// A ticket on `channel`, queued in `queue`, resolved by `agent`, asked for a
        /// rating at `asked` (Unix seconds), rated `score` if any.
        fn ticket(
            &mut self,
            channel: Channel,
            queue: &str,
            agent: &str,
            asked: u64,
            score: Option<u8>,
        ) -> TicketId {
            let id = TicketId(Uuid::now_v7());
            let agent = AgentId::new(agent);
            self.at(
                id,
                asked - 600,
                Event::TicketOpened {
                    ticket: id,
                    customer: Customer {
                        channel,
                        contact: Personal::from("contact"),
                        display_name: None,
                    },
                    language: "de".to_owned(),
                },
            )
            .at(
                id,
                asked - 500,
                Event::TicketQueued {
                    queue: QueueId::new(queue),
                },
            )
            .at(
                id,
                asked - 60,
                Event::TicketResolved {
                    agent,
                    summary: String::new(),
                },
            )
            .at(
                id,
                asked,
                Event::RatingRequested {
                    message: MessageId(Uuid::now_v7()),
                },
            );
            if let Some(score) = score {
                self.at(
                    id,
                    asked + 30,
                    Event::RatingReceived {
                        score,
                        comment: None,
                    },
                )
                .at(
                    id,
                    asked + 30,
                    Event::TicketClosed {
                        reason: CloseReason::Rated,
                    },
                );
            }
            id
        }

        fn fold(&self) -> CsatProjection {
            let mut projection = CsatProjection::default();
            for event in &self.events {
                projection.apply(event);
            }
            projection
        }
    }

    /// 2026-11-25 12:00 Berlin, a Wednesday of ISO week 48.
    const WEDNESDAY: u64 = 1_795_604_400;
    const DAY: u64 = 86_400;

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap_or_else(|e| panic!("{e}"))
    }

    fn figures(row: &CsatRow) -> (Vec<&str>, u32, f64, f64, u32, f64) {
        (
            row.group.iter().map(String::as_str).collect(),
            row.ratings,
            row.average(),
            row.csat_percent(),
            row.ratings_requested,
            row.response_rate_percent(),
        )
    }

    #[test]
    fn a_ticket_folds_into_its_channel_queue_agent_times_and_score() {
        let mut log = Log::default();
        let id = log.ticket(Channel::Telegram, "de-laptops", "anna", WEDNESDAY, Some(4));
        let projection = log.fold();
        let at = |secs: u64| Timestamp::from_second(secs as i64).ok();
        assert_eq!(
            projection.ticket(id),
            Some(&TicketCsat {
                region: "de".to_owned(),
                channel: Some(Channel::Telegram),
                queue: Some(QueueId::new("de-laptops")),
                agent: Some(AgentId::new("anna")),
                resolved_at: at(WEDNESDAY - 60),
                rating_requested_at: at(WEDNESDAY),
                rated_at: at(WEDNESDAY + 30),
                score: Some(4),
            })
        );
        assert_eq!(projection.last_sequence(), 6);
    }

    #[test]
    fn applying_an_event_twice_changes_nothing() {
        let mut log = Log::default();
        log.ticket(Channel::WhatsApp, "de-laptops", "anna", WEDNESDAY, Some(5));
        let once = log.fold();
        let mut twice = once.clone();
        for event in &log.events {
            twice.apply(event);
        }
        assert_eq!(once, twice);
    }

    #[test]
    fn the_report_counts_ratings_average_csat_and_response_rate_per_group() {
        let mut log = Log::default();
        log.ticket(Channel::WhatsApp, "de-laptops", "anna", WEDNESDAY, Some(5));
        log.ticket(
            Channel::WhatsApp,
            "de-laptops",
            "anna",
            WEDNESDAY + 60,
            Some(2),
        );
        log.ticket(
            Channel::Telegram,
            "de-laptops",
            "ben",
            WEDNESDAY + DAY,
            Some(4),
        );
        log.ticket(
            Channel::WhatsApp,
            "de-phones",
            "ben",
            WEDNESDAY + 7 * DAY,
            None,
        );
        let projection = log.fold();
        let report = |filter: &CsatFilter, group_by: &[Grouping]| {
            projection.report(filter, group_by, &berlin())
        };

        let total = report(&CsatFilter::default(), &[]);
        assert_eq!(total.len(), 1);
        let (group, ratings, average, csat, requested, response) = figures(&total[0]);
        assert_eq!((group.len(), ratings, requested), (0, 3, 4));
        assert!((average - 11.0 / 3.0).abs() < 1e-9);
        assert!((csat - 200.0 / 3.0).abs() < 1e-9);
        assert!((response - 75.0).abs() < 1e-9);

        let by_agent = report(&CsatFilter::default(), &[Grouping::Agent]);
        assert_eq!(
            figures(&by_agent[0]),
            (vec!["anna"], 2, 3.5, 50.0, 2, 100.0)
        );
        assert_eq!(figures(&by_agent[1]), (vec!["ben"], 1, 4.0, 100.0, 2, 50.0));

        let by_queue_and_day = report(&CsatFilter::default(), &[Grouping::Queue, Grouping::Day]);
        let groups: Vec<_> = by_queue_and_day
            .iter()
            .map(|row| row.group.join(" "))
            .collect();
        assert_eq!(
            groups,
            [
                "de-laptops 2026-11-25",
                "de-laptops 2026-11-26",
                "de-phones 2026-12-02"
            ]
        );

        let by_week = report(&CsatFilter::default(), &[Grouping::Week, Grouping::Month]);
        let groups: Vec<_> = by_week.iter().map(|row| row.group.join(" ")).collect();
        assert_eq!(groups, ["2026-W48 2026-11", "2026-W49 2026-12"]);

        let by_channel = report(
            &CsatFilter::default(),
            &[Grouping::Region, Grouping::Channel],
        );
        let groups: Vec<_> = by_channel.iter().map(|row| row.group.join(" ")).collect();
        assert_eq!(groups, ["de telegram", "de whatsapp"]);
    }

    #[test]
    fn filters_narrow_the_tickets_counted() {
        let mut log = Log::default();
        log.ticket(Channel::WhatsApp, "de-laptops", "anna", WEDNESDAY, Some(5));
        log.ticket(
            Channel::Telegram,
            "de-laptops",
            "ben",
            WEDNESDAY + DAY,
            Some(1),
        );
        log.ticket(
            Channel::WhatsApp,
            "de-phones",
            "ben",
            WEDNESDAY + 2 * DAY,
            Some(3),
        );
        let projection = log.fold();
        let ratings = |filter: CsatFilter| {
            projection
                .report(&filter, &[], &berlin())
                .first()
                .map_or(0, |row| row.ratings)
        };
        let at = |secs: u64| Timestamp::from_second(secs as i64).ok();
        assert_eq!(
            ratings(CsatFilter {
                queue: Some(QueueId::new("de-laptops")),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            ratings(CsatFilter {
                agent: Some(AgentId::new("ben")),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            ratings(CsatFilter {
                channel: Some(Channel::Telegram),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            ratings(CsatFilter {
                from: at(WEDNESDAY + DAY),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            ratings(CsatFilter {
                to: at(WEDNESDAY + DAY),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            ratings(CsatFilter {
                agent: Some(AgentId::new("nobody")),
                ..Default::default()
            }),
            0
        );
    }
}
