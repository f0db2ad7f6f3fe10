//! Business hours as a region writes them: a queue's weekly hours, the region's public
//! holidays, the region's time zone. Whether agents work at a moment, and when they are
//! back — at the edges of a holiday, across midnight and across the clock changes.

use helpline_domain::QueueId;
use helpline_region::RegionConfig;
use jiff::Timestamp;

/// Germany's laptop queue, staffed on weekdays and Saturday mornings, and a night queue
/// that runs across midnight as two spans; Christmas closes both, a regional holiday only
/// the laptops.
const REGION: &str = r#"
[locale]
country = "DE"
languages = ["de", "en"]
time_zone = "Europe/Berlin"

[routing]
default_queue = "de-laptops"

[[queues]]
id = "de-laptops"
hours = ["mon-fri 08:00-20:00", "sat 10:00-14:00"]
sla = { first_response_mins = 120, next_response_mins = 30, resolution_hours = 24 }

[[queues]]
id = "de-night"
hours = ["daily 22:00-24:00", "daily 00:00-06:00"]

[[queues]]
id = "de-always"

[[holidays]]
date = "2026-12-25"
name = "1. Weihnachtstag"

[[holidays]]
date = "2026-12-26"
name = "2. Weihnachtstag"

[[holidays]]
date = "2026-11-18"
name = "Buß- und Bettag (Sachsen)"
queues = ["de-laptops"]
"#;

fn region() -> RegionConfig {
    let region = RegionConfig::from_region_file(REGION).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(region.validate(), Vec::new());
    region
}

/// A wall-clock time in Berlin.
fn berlin(local: &str) -> Timestamp {
    let zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap_or_else(|e| panic!("{e}"));
    let time: jiff::civil::DateTime = local.parse().unwrap_or_else(|e| panic!("{local}: {e}"));
    time.to_zoned(zone)
        .unwrap_or_else(|e| panic!("{local}: {e}"))
        .timestamp()
}

struct Given {
    region: RegionConfig,
    queue: QueueId,
}

fn given(queue: &str) -> Given {
    Given {
        region: region(),
        queue: QueueId::new(queue),
    }
}

impl Given {
    fn queue(&self) -> &helpline_region::Queue {
        self.region
            .queue(&self.queue)
            .unwrap_or_else(|| panic!("no queue {}", self.queue.as_str()))
    }

    fn open_at(&self, local: &str) -> bool {
        let queue = self.queue();
        self.region.queue_open(queue, berlin(local))
    }

    /// When agents are back, from `local` on, as a Berlin wall-clock time.
    fn back_at(&self, local: &str) -> Option<String> {
        let queue = self.queue();
        let zone = self.region.locale.zone();
        self.region
            .queue_opens(queue, berlin(local))
            .map(|at| at.to_zoned(zone).strftime("%a %Y-%m-%dT%H:%M").to_string())
    }
}

#[test]
fn inside_its_hours_a_queue_is_open_and_agents_are_back_at_once() {
    let laptops = given("de-laptops");
    // 2026-12-02 is a Wednesday.
    assert!(laptops.open_at("2026-12-02T08:00"));
    assert!(laptops.open_at("2026-12-02T19:59"));
    assert_eq!(
        laptops.back_at("2026-12-02T12:34").as_deref(),
        Some("Wed 2026-12-02T12:34")
    );
}

#[test]
fn after_closing_agents_are_back_at_the_next_opening() {
    let laptops = given("de-laptops");
    assert!(!laptops.open_at("2026-12-02T20:00"));
    assert_eq!(
        laptops.back_at("2026-12-02T20:00").as_deref(),
        Some("Thu 2026-12-03T08:00")
    );
    // Before opening on the same day.
    assert_eq!(
        laptops.back_at("2026-12-03T06:15").as_deref(),
        Some("Thu 2026-12-03T08:00")
    );
    // Saturday afternoon: Monday morning, past the closed Sunday.
    assert_eq!(
        laptops.back_at("2026-12-05T14:00").as_deref(),
        Some("Mon 2026-12-07T08:00")
    );
}

#[test]
fn a_holiday_closes_the_whole_day_and_agents_are_back_after_it() {
    let laptops = given("de-laptops");
    // Thursday 24 December, 19:59: still open; 20:00 closed, and the next two days are
    // Christmas: Friday 25 and Saturday 26 are holidays, Sunday is closed anyway.
    assert!(laptops.open_at("2026-12-24T19:59"));
    assert!(
        !laptops.open_at("2026-12-25T12:00"),
        "a weekday of hours, but Christmas"
    );
    assert!(!laptops.open_at("2026-12-26T11:00"));
    assert_eq!(
        laptops.back_at("2026-12-24T20:00").as_deref(),
        Some("Mon 2026-12-28T08:00")
    );
    // The first minute after the holiday is the next day's.
    assert!(laptops.open_at("2026-12-28T08:00"));
}

#[test]
fn a_holiday_of_some_queues_closes_only_those() {
    // Wednesday 18 November 2026: the Saxon holiday closes the laptops, not the others.
    assert!(!given("de-laptops").open_at("2026-11-18T10:00"));
    assert_eq!(
        given("de-laptops").back_at("2026-11-18T10:00").as_deref(),
        Some("Thu 2026-11-19T08:00")
    );
    assert!(given("de-always").open_at("2026-11-18T10:00"));
}

#[test]
fn hours_across_midnight_are_two_spans_open_on_both_sides() {
    let night = given("de-night");
    assert!(night.open_at("2026-12-02T23:59"));
    assert!(night.open_at("2026-12-03T00:00"));
    assert!(night.open_at("2026-12-03T05:59"));
    assert!(!night.open_at("2026-12-03T06:00"));
    assert_eq!(
        night.back_at("2026-12-03T06:00").as_deref(),
        Some("Thu 2026-12-03T22:00")
    );
    // Christmas Eve's night ends at midnight: the holiday takes its early hours too, and
    // the night after it.
    assert!(night.open_at("2026-12-24T23:30"));
    assert!(!night.open_at("2026-12-25T00:30"));
    assert_eq!(
        night.back_at("2026-12-25T00:30").as_deref(),
        Some("Sun 2026-12-27T00:00")
    );
}

#[test]
fn a_queue_always_staffed_is_closed_only_on_holidays() {
    let always = given("de-always");
    assert!(always.open_at("2026-12-06T03:00"));
    assert!(!always.open_at("2026-12-25T03:00"));
    assert_eq!(
        always.back_at("2026-12-25T03:00").as_deref(),
        Some("Sun 2026-12-27T00:00")
    );
}

#[test]
fn the_hours_are_local_time_on_both_sides_of_a_clock_change() {
    let laptops = given("de-laptops");
    // Berlin moves from CEST to CET on Sunday 25 October 2026: 08:00 local on Monday is
    // 07:00 UTC, where on the Friday before it was 06:00 UTC.
    let zone = jiff::tz::TimeZone::UTC;
    let utc = |local: &str| {
        let queue = laptops.queue();
        laptops.region.queue_opens(queue, berlin(local)).map(|at| {
            at.to_zoned(zone.clone())
                .strftime("%Y-%m-%dT%H:%M")
                .to_string()
        })
    };
    assert_eq!(utc("2026-10-22T21:00").as_deref(), Some("2026-10-23T06:00"));
    assert_eq!(utc("2026-10-24T15:00").as_deref(), Some("2026-10-26T07:00"));
}

#[test]
fn a_holiday_naming_an_unknown_queue_is_a_config_problem() {
    let text = format!("{REGION}\n[[holidays]]\ndate = \"2026-10-31\"\nqueues = [\"de-phones\"]\n");
    let region = RegionConfig::from_region_file(&text).unwrap_or_else(|e| panic!("{e}"));
    let problems = region.validate();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "holidays[3].queues[0]");
}

#[test]
fn an_unreadable_holiday_date_is_refused_when_the_file_is_read() {
    let text = format!("{REGION}\n[[holidays]]\ndate = \"31.10.2026\"\n");
    let error = RegionConfig::from_region_file(&text)
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert!(error.to_string().contains("date"), "{error}");
}

#[test]
fn sla_clocks_count_only_the_queues_working_time() {
    use helpline_domain::sla::WorkingHours;
    use std::time::{Duration, SystemTime};
    let laptops = given("de-laptops");
    let hours = laptops.region.working_hours(laptops.queue());
    let at = |local: &str| SystemTime::from(berlin(local));
    let minutes = |from: &str, to: &str| hours.working(at(from), at(to)).as_secs() / 60;
    // Wednesday 19:30 to Thursday 08:30: the half hours on either side of the night.
    assert_eq!(minutes("2026-12-02T19:30", "2026-12-03T08:30"), 60);
    // Thursday 24 December 19:00 to Monday 28 December 09:00: Christmas and Sunday do
    // not count, nor does Saturday, Boxing Day.
    assert_eq!(minutes("2026-12-24T19:00", "2026-12-28T09:00"), 120);
    // A two-hour target for a customer queued on Christmas Eve at 19:00 is due on
    // Monday at 09:00.
    let due = hours.after(at("2026-12-24T19:00"), Duration::from_secs(2 * 3600));
    assert_eq!(due, Some(at("2026-12-28T09:00")));
    // Across the clock change the hours are local: Saturday 24 October 13:00 (CEST) to
    // Monday 26 October 09:00 (CET) is one hour on Saturday and one on Monday.
    assert_eq!(minutes("2026-10-24T13:00", "2026-10-26T09:00"), 120);
}

#[test]
fn a_queues_sla_is_held_in_its_working_time() {
    use helpline_domain::Event;
    use helpline_domain::sla::{SlaClock, SlaClocks};
    use std::time::SystemTime;
    let laptops = given("de-laptops");
    let queue = laptops.queue();
    let targets = queue
        .sla
        .unwrap_or_else(|| panic!("de-laptops has an SLA"))
        .targets();
    assert_eq!(targets.warning_percent, 80, "the default warning");
    let hours = laptops.region.working_hours(queue);
    let at = |local: &str| SystemTime::from(berlin(local));
    // Queued on Christmas Eve at 19:00: the first response is due on Monday at 09:00,
    // and the supervisor is warned at 80 % of it, Monday 08:36.
    let clocks = SlaClocks::default().apply(
        &Event::TicketQueued {
            queue: queue.id.clone(),
        },
        at("2026-12-24T19:00"),
        &hours,
    );
    let clock = clocks.clock(SlaClock::FirstResponse);
    let target = targets.target(SlaClock::FirstResponse);
    let warning = targets.warning(SlaClock::FirstResponse);
    assert_eq!(
        target.and_then(|t| clock.reaches(t, &hours)),
        Some(at("2026-12-28T09:00"))
    );
    assert_eq!(
        warning.and_then(|w| clock.reaches(w, &hours)),
        Some(at("2026-12-28T08:36"))
    );
}

#[test]
fn a_target_of_zero_or_a_warning_beyond_the_target_is_a_config_problem() {
    let text = REGION.replace(
        "sla = { first_response_mins = 120,",
        "sla = { warning_percent = 120, first_response_mins = 0,",
    );
    let region = RegionConfig::from_region_file(&text).unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<String> = region.validate().into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        [
            "queues[0].sla.warning_percent",
            "queues[0].sla.first_response_mins"
        ]
    );
}
