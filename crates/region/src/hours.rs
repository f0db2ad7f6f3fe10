//! Weekly opening hours, written as people write them: `"mon-fri 08:00-20:00"`,
//! `"sat 10:00-16:00"`, `"daily 00:00-24:00"`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// When something is open, week by week, in the region's local time. Empty means always.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WeeklyHours {
    spans: Vec<Span>,
    written: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    /// Bit `d` is set for weekday `d` (0 = Monday).
    days: u8,
    /// Minutes after midnight; `to` may be 1440 (24:00).
    from: u16,
    to: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{written:?}: {reason} (expected e.g. \"mon-fri 08:00-20:00\")")]
pub struct HoursError {
    written: String,
    reason: &'static str,
}

impl WeeklyHours {
    /// Parses one entry per span, e.g. `["mon-fri 08:00-20:00", "sat 10:00-16:00"]`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, HoursError> {
        let mut spans = Vec::new();
        for entry in entries {
            spans.push(parse_span(entry.as_ref())?);
        }
        Ok(Self {
            spans,
            written: entries.iter().map(|e| e.as_ref().to_owned()).collect(),
        })
    }

    /// Open around the clock.
    pub fn always(&self) -> bool {
        self.spans.is_empty()
    }

    /// Whether `at` falls into a span, in time zone `zone`.
    pub fn is_open(&self, at: jiff::Timestamp, zone: &jiff::tz::TimeZone) -> bool {
        if self.always() {
            return true;
        }
        let local = at.to_zoned(zone.clone());
        let day = local.weekday().to_monday_zero_offset();
        let minute =
            u16::from(local.hour().unsigned_abs()) * 60 + u16::from(local.minute().unsigned_abs());
        self.spans
            .iter()
            .any(|span| span.days & (1 << day) != 0 && span.from <= minute && minute < span.to)
    }
}

impl WeeklyHours {
    /// The first moment at or after `at` when a span is open on a day that `closed` does
    /// not take out (a public holiday), in time zone `zone`: `at` itself when open now.
    /// `None` when no such moment comes within a year and a week (no spans, or every
    /// open day closed).
    pub fn next_opening(
        &self,
        at: jiff::Timestamp,
        zone: &jiff::tz::TimeZone,
        closed: impl Fn(jiff::civil::Date) -> bool,
    ) -> Option<jiff::Timestamp> {
        let mut day = at.to_zoned(zone.clone()).date();
        for _ in 0..SEARCH_DAYS {
            if !closed(day) {
                // The day's spans in order: the first not over yet is open now or next.
                if let Some((open, _)) = self
                    .open_on(day, zone)
                    .into_iter()
                    .find(|(_, close)| *close > at)
                {
                    return Some(open.max(at));
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }

    /// The moments `day` is open, in order: its spans as instants in `zone` (a span to
    /// 24:00 ends at the next day's midnight).
    pub fn open_on(
        &self,
        day: jiff::civil::Date,
        zone: &jiff::tz::TimeZone,
    ) -> Vec<(jiff::Timestamp, jiff::Timestamp)> {
        let weekday = day.weekday().to_monday_zero_offset();
        let mut spans: Vec<(u16, u16)> = if self.always() {
            vec![(0, MINUTES_PER_DAY)]
        } else {
            self.spans
                .iter()
                .filter(|span| span.days & (1 << weekday) != 0)
                .map(|span| (span.from, span.to))
                .collect()
        };
        spans.sort_unstable();
        spans
            .into_iter()
            .filter_map(|(from, to)| {
                let start = local_moment(day, from, zone)?;
                let end = if to == MINUTES_PER_DAY {
                    local_moment(day.tomorrow().ok()?, 0, zone)?
                } else {
                    local_moment(day, to, zone)?
                };
                (start < end).then_some((start, end))
            })
            .collect()
    }
}

/// How far ahead an opening is looked for: a year of holidays and a week beyond it.
const SEARCH_DAYS: u32 = 366 + 7;
const MINUTES_PER_DAY: u16 = 24 * 60;

/// `minute` after midnight of `day` in `zone`, as an instant. A time that the clocks skip
/// (spring forward) is the first moment after the gap, as people read "opens at 02:30".
fn local_moment(
    day: jiff::civil::Date,
    minute: u16,
    zone: &jiff::tz::TimeZone,
) -> Option<jiff::Timestamp> {
    let hour = i8::try_from(minute / 60).ok()?;
    let minute = i8::try_from(minute % 60).ok()?;
    let time = day.at(hour, minute, 0, 0);
    zone.to_ambiguous_zoned(time)
        .compatible()
        .ok()
        .map(|zoned| zoned.timestamp())
}

/// As written in the config, joined with ", " for messages to customers.
impl fmt::Display for WeeklyHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written.join(", "))
    }
}

fn parse_span(written: &str) -> Result<Span, HoursError> {
    let error = |reason| HoursError {
        written: written.to_owned(),
        reason,
    };
    let mut parts = written.split_whitespace();
    let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(error("two parts, days and times"));
    };
    let days = parse_days(&days.to_ascii_lowercase()).ok_or_else(|| error("unknown days"))?;
    let (from, to) = times
        .split_once('-')
        .ok_or_else(|| error("times as HH:MM-HH:MM"))?;
    let from = parse_time(from).ok_or_else(|| error("unreadable opening time"))?;
    let to = parse_time(to).ok_or_else(|| error("unreadable closing time"))?;
    if from >= to {
        return Err(error("closes before it opens"));
    }
    Ok(Span { days, from, to })
}

fn parse_days(days: &str) -> Option<u8> {
    if days == "daily" {
        return Some(0b111_1111);
    }
    let mut mask = 0u8;
    for part in days.split(',') {
        let index = |day: &str| DAYS.iter().position(|d| *d == day);
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (index(first)?, index(last)?);
                if first > last {
                    return None;
                }
                for day in first..=last {
                    mask |= 1 << day;
                }
            }
            None => mask |= 1 << index(part)?,
        }
    }
    Some(mask)
}

fn parse_time(time: &str) -> Option<u16> {
    let (hours, minutes) = time.split_once(':')?;
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    if minutes >= 60 || hours > 24 || (hours == 24 && minutes > 0) {
        return None;
    }
    Some(hours * 60 + minutes)
}

impl Serialize for WeeklyHours {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.written.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for WeeklyHours {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let written = Vec::<String>::deserialize(deserializer)?;
        WeeklyHours::parse(&written).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(local: &str) -> jiff::Timestamp {
        let zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap_or(jiff::tz::TimeZone::UTC);
        local
            .parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|dt| dt.to_zoned(zone).ok())
            .map(|z| z.timestamp())
            .unwrap_or_else(|| panic!("bad test time {local}"))
    }

    fn berlin() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get("Europe/Berlin").unwrap_or(jiff::tz::TimeZone::UTC)
    }

    #[test]
    fn a_weekday_span_is_open_inside_and_closed_outside_in_local_time() {
        let hours = WeeklyHours::parse(&["mon-fri 08:00-20:00", "sat 10:00-16:00"])
            .unwrap_or_else(|e| panic!("{e}"));
        // 2026-11-25 is a Wednesday.
        assert!(hours.is_open(at("2026-11-25T08:00"), &berlin()));
        assert!(hours.is_open(at("2026-11-25T19:59"), &berlin()));
        assert!(!hours.is_open(at("2026-11-25T20:00"), &berlin()));
        assert!(!hours.is_open(at("2026-11-25T07:59"), &berlin()));
        assert!(hours.is_open(at("2026-11-28T12:00"), &berlin()), "Saturday");
        assert!(!hours.is_open(at("2026-11-29T12:00"), &berlin()), "Sunday");
        assert_eq!(hours.to_string(), "mon-fri 08:00-20:00, sat 10:00-16:00");
    }

    #[test]
    fn no_hours_means_always_open() {
        let hours = WeeklyHours::default();
        assert!(hours.always());
        assert!(hours.is_open(at("2026-11-29T03:00"), &berlin()));
    }

    #[test]
    fn day_lists_and_midnight_are_understood() {
        let hours =
            WeeklyHours::parse(&["mon,wed,sun 00:00-24:00"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(hours.is_open(at("2026-11-29T23:59"), &berlin()));
        assert!(!hours.is_open(at("2026-11-24T12:00"), &berlin()), "Tuesday");
    }

    #[test]
    fn unreadable_hours_are_refused_with_the_entry() {
        for bad in [
            "mon-fri",
            "funday 08:00-10:00",
            "mon 10:00-08:00",
            "mon 8-10",
            "fri-mon 08:00-09:00",
            "mon 24:30-25:00",
        ] {
            let error = WeeklyHours::parse(&[bad])
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(error.to_string().contains(bad), "{error}");
        }
    }
}
