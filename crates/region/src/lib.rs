//! A region's configuration as data: what one deployment (one country) serves.
//!
//! Languages, time zone, products with their serial-number patterns, queues with their
//! staffed hours, routing rules, service stores and the places (postcodes, cities) by
//! which the nearest store is found. The bot, routing and feedback services read it; a
//! new country is a new file, never new code.
//!
//! It lives in the `helpline.toml` of the deployment, beside the technical sections, as
//! the top-level keys `[locale]`, `[bot]`, `[[products]]`, `[[queues]]`, `[routing]`,
//! `[[routing.rules]]`, `[[stores]]` and `[[places]]`. [`RegionConfig::validate`] checks
//! what serde cannot (references between sections, patterns, hours) and names the key of
//! every problem.
//!
//! **Invariants.** No I/O: the binary reads the file, this crate only describes and
//! checks it. Every lookup is deterministic: the same text and time give the same
//! answer, so a redelivered event is handled the same way.

#![forbid(unsafe_code)]

mod agents;
pub mod canned;
mod hours;
pub mod notifications;
mod places;
mod route;

use std::collections::BTreeSet;
use std::fmt;

use helpline_domain::{AgentId, Channel, QueueId, StoreId};
use serde::{Deserialize, Serialize};

pub use agents::{Agent, Role, valid_agent_id};
pub use hours::{HoursError, WeeklyHours};
pub use places::{Place, Store};
pub use route::{DEFAULT_RULE, Route, RouteFacts, Target};

/// Everything a region configures about its conversations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionConfig {
    pub locale: Locale,
    pub bot: BotSettings,
    pub products: Vec<Product>,
    pub queues: Vec<Queue>,
    pub routing: RoutingConfig,
    pub stores: Vec<Store>,
    pub places: Vec<Place>,
    /// `[[agents]]`: the agent directory; a region may list none.
    #[serde(default)]
    pub agents: Vec<Agent>,
    /// `[notifications]`: the templates the brand's systems notify customers from.
    #[serde(default)]
    pub notifications: notifications::NotificationsConfig,
    /// `[[holidays]]`: public holidays, on which queues are not staffed whatever their
    /// hours say.
    #[serde(default)]
    pub holidays: Vec<Holiday>,
    /// `[[canned_replies]]`: answers agents pick by shortcut, per language.
    #[serde(default)]
    pub canned_replies: Vec<canned::CannedReply>,
}

/// A queue's working time: its hours, less the region's holidays that close it, in the
/// region's time zone. What its SLA clocks count.
#[derive(Debug)]
pub struct QueueHours<'a> {
    region: &'a RegionConfig,
    queue: &'a Queue,
    zone: jiff::tz::TimeZone,
}

/// How far a working-time sum or search looks: a year and a week of days.
const WORKING_SEARCH_DAYS: usize = 366 + 7;

impl QueueHours<'_> {
    /// The open intervals of every day from `from`'s local day on, in order, holidays
    /// left out.
    fn intervals(
        &self,
        from: jiff::Timestamp,
    ) -> impl Iterator<Item = (jiff::Timestamp, jiff::Timestamp)> + '_ {
        let first = from.to_zoned(self.zone.clone()).date();
        std::iter::successors(Some(first), |day| day.tomorrow().ok())
            .take(WORKING_SEARCH_DAYS)
            .filter(|day| self.region.holiday(&self.queue.id, *day).is_none())
            .flat_map(|day| self.queue.hours.open_on(day, &self.zone))
    }
}

impl helpline_domain::sla::WorkingHours for QueueHours<'_> {
    fn working(
        &self,
        from: std::time::SystemTime,
        to: std::time::SystemTime,
    ) -> std::time::Duration {
        let (Ok(from), Ok(to)) = (
            jiff::Timestamp::try_from(from),
            jiff::Timestamp::try_from(to),
        ) else {
            return std::time::Duration::ZERO;
        };
        let mut total = std::time::Duration::ZERO;
        for (open, close) in self.intervals(from) {
            if open >= to {
                break;
            }
            let (start, end) = (open.max(from), close.min(to));
            if start < end {
                total +=
                    std::time::Duration::try_from(end.duration_since(start)).unwrap_or_default();
            }
        }
        total
    }

    fn after(
        &self,
        from: std::time::SystemTime,
        working: std::time::Duration,
    ) -> Option<std::time::SystemTime> {
        let from = jiff::Timestamp::try_from(from).ok()?;
        let mut left = working;
        for (open, close) in self.intervals(from) {
            if close <= from {
                continue;
            }
            let start = open.max(from);
            let span = std::time::Duration::try_from(close.duration_since(start)).ok()?;
            if span >= left {
                let at = std::time::SystemTime::from(start);
                return at.checked_add(left);
            }
            left -= span;
        }
        None
    }
}

/// `[[holidays]]`: a day on which agents do not work, in the region's time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    /// The day, `2026-12-25`.
    pub date: jiff::civil::Date,
    /// What it is called, for supervisors: `1. Weihnachtstag`.
    #[serde(default)]
    pub name: String,
    /// The queues it closes; every queue when empty (a regional holiday may close only
    /// the queues staffed from that state).
    #[serde(default)]
    pub queues: Vec<QueueId>,
}

impl Holiday {
    fn closes(&self, queue: &QueueId) -> bool {
        self.queues.is_empty() || self.queues.contains(queue)
    }
}

/// `[locale]`: the country, its languages and its clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Locale {
    /// ISO 3166-1 alpha-2, upper case, e.g. `DE`.
    pub country: String,
    /// BCP 47 tags the region serves; the first is the default. Each needs a bot flow.
    pub languages: Vec<String>,
    /// IANA time zone of the region's business hours, e.g. `Europe/Berlin`.
    pub time_zone: String,
}

impl Default for Locale {
    fn default() -> Self {
        Self {
            country: "DE".to_owned(),
            languages: vec!["de".to_owned(), "en".to_owned()],
            time_zone: "Europe/Berlin".to_owned(),
        }
    }
}

impl Locale {
    /// The language a ticket opens in when nothing else is known.
    pub fn default_language(&self) -> &str {
        self.languages.first().map_or("en", String::as_str)
    }

    /// The region's time zone; UTC when the name is unknown (validation reports it).
    pub fn zone(&self) -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get(&self.time_zone).unwrap_or(jiff::tz::TimeZone::UTC)
    }
}

/// `[bot]`: how the first-contact bot behaves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotSettings {
    /// A conversation the customer left silent this long is abandoned (Open, Routing,
    /// Queued, Assigned) or closed unrated (waiting for a rating).
    pub silence_timeout_secs: u64,
    /// Invalid serial numbers the bot accepts before it hands over with the serial marked
    /// unverified.
    pub max_serial_tries: u32,
    /// A folder of `<language>.toml` flows that replace the built-in ones; empty for the
    /// built-in flows.
    pub flows_dir: String,
    /// The brand the bot speaks for, as its greeting names it.
    pub brand: String,
}

impl Default for BotSettings {
    fn default() -> Self {
        Self {
            silence_timeout_secs: 24 * 3600,
            max_serial_tries: 2,
            flows_dir: String::new(),
            brand: "Helpline".to_owned(),
        }
    }
}

/// `[[products]]`: a product family the bot recognizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// The family's name as agents and reports show it, e.g. `MateBook X Pro`.
    pub family: String,
    /// What kind of device it is (`laptop`, `phone`, …); routing rules match on it.
    pub kind: String,
    /// Other ways customers write it, matched case-insensitively as whole words. The
    /// family name itself always matches.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A regular expression a valid serial number matches in full, e.g.
    /// `^[A-Z0-9]{16}$`.
    pub serial_pattern: String,
}

impl Product {
    /// Whether `serial` (already upper-cased and stripped of spaces) is valid for this
    /// product. An unparsable pattern accepts nothing; validation reports it.
    pub fn accepts_serial(&self, serial: &str) -> bool {
        regex::Regex::new(&self.serial_pattern).is_ok_and(|pattern| pattern.is_match(serial))
    }

    /// Every name the product goes by, the family first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.family.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// `[[queues]]`: tickets waiting for agents with one set of skills.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub id: QueueId,
    /// What supervisors and reports call it.
    #[serde(default)]
    pub name: String,
    /// Languages its agents speak.
    #[serde(default)]
    pub languages: Vec<String>,
    /// When agents staff it, in the region's time zone; always staffed when empty.
    #[serde(default)]
    pub hours: WeeklyHours,
    /// What the bot tells a customer to expect when the queue is staffed.
    #[serde(default = "default_expected_wait")]
    pub expected_wait_mins: u32,
    /// Higher goes first when agents are scarce.
    #[serde(default)]
    pub priority: u32,
    /// `sla = { first_response_mins = 30, … }`: the service levels its tickets are held
    /// to, in working time (its hours, less holidays); none when absent.
    #[serde(default)]
    pub sla: Option<SlaPolicy>,
}

/// A queue's service-level targets, as supervisors write them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    /// From queueing to the first agent message.
    #[serde(default)]
    pub first_response_mins: Option<u32>,
    /// From a customer's message after an agent's reply to the agent's next one.
    #[serde(default)]
    pub next_response_mins: Option<u32>,
    /// From queueing to resolution, not counting the time waiting on the customer.
    #[serde(default)]
    pub resolution_hours: Option<u32>,
    /// When the supervisor is warned, as a share of a target.
    #[serde(default = "default_warning_percent")]
    pub warning_percent: u8,
}

fn default_warning_percent() -> u8 {
    80
}

impl SlaPolicy {
    /// The targets as the ticket's SLA clocks take them.
    pub fn targets(&self) -> helpline_domain::sla::SlaTargets {
        let minutes = |m: u32| std::time::Duration::from_secs(u64::from(m) * 60);
        helpline_domain::sla::SlaTargets {
            first_response: self.first_response_mins.map(minutes),
            next_response: self.next_response_mins.map(minutes),
            resolution: self.resolution_hours.map(|h| minutes(h.saturating_mul(60))),
            warning_percent: self.warning_percent,
        }
    }
}

fn default_expected_wait() -> u32 {
    5
}

/// `[routing]`: where handed-over tickets go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Where a ticket goes when no rule matches.
    pub default_queue: QueueId,
    /// Tried in order; the first that matches decides.
    pub rules: Vec<Rule>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            default_queue: QueueId::new("general"),
            rules: Vec::new(),
        }
    }
}

/// `[[routing.rules]]`: a condition on the ticket and where it sends it. Every list that
/// is given must contain the ticket's value; an empty list matches anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Named in `TicketRouted` and in the Routing API.
    pub name: String,
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub languages: Vec<String>,
    /// Product families, as in `[[products]] family`.
    #[serde(default)]
    pub products: Vec<String>,
    /// Product kinds, as in `[[products]] kind`.
    #[serde(default)]
    pub product_kinds: Vec<String>,
    /// Problem categories, as the bot's flows classify them (`hardware`, `display`, …).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Channel names as in the webhook routes: `whatsapp`, `messenger`, `telegram`,
    /// `viber`, `apple`, `web`.
    #[serde(default)]
    pub channels: Vec<String>,
    /// The intents of the entry points the customer came in by (Apple's "Message us"
    /// `biz-intent-id`), e.g. `repair_status`.
    #[serde(default)]
    pub intents: Vec<String>,
    /// Their groups (`biz-group-id`), e.g. `laptops` for a laptop page's button.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The rule applies only within these hours (region time); always when empty.
    #[serde(default)]
    pub hours: WeeklyHours,
    /// Send matching tickets to this queue …
    #[serde(default)]
    pub queue: Option<QueueId>,
    /// … or refer them to the nearest store.
    #[serde(default)]
    pub refer_to_store: bool,
}

/// One thing wrong with a region's configuration: the key, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted path of the offending key, e.g. `routing.rules[2].queue`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl RegionConfig {
    /// Every problem serde cannot see: unknown time zone, bad patterns, rules naming
    /// queues that do not exist, duplicate ids. Empty when the region is usable.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| {
            problems.push(ConfigProblem { key, message });
        };
        let locale = &self.locale;
        if locale.country.len() != 2 || !locale.country.chars().all(|c| c.is_ascii_uppercase()) {
            problem(
                "locale.country".into(),
                format!(
                    "{:?} is not an ISO 3166 alpha-2 code like \"DE\"",
                    locale.country
                ),
            );
        }
        if locale.languages.is_empty() {
            problem("locale.languages".into(), "at least one language".into());
        }
        if jiff::tz::TimeZone::get(&locale.time_zone).is_err() {
            problem(
                "locale.time_zone".into(),
                format!("{:?} is not an IANA time zone", locale.time_zone),
            );
        }
        self.notifications
            .validate(locale.default_language(), &mut problems);
        let mut problem = |key: String, message: String| {
            problems.push(ConfigProblem { key, message });
        };
        if self.bot.silence_timeout_secs == 0 {
            problem("bot.silence_timeout_secs".into(), "must be above 0".into());
        }
        let mut families = BTreeSet::new();
        for (i, product) in self.products.iter().enumerate() {
            if !families.insert(product.family.to_lowercase()) {
                problem(
                    format!("products[{i}].family"),
                    format!("{:?} is listed twice", product.family),
                );
            }
            if let Err(e) = regex::Regex::new(&product.serial_pattern) {
                problem(format!("products[{i}].serial_pattern"), e.to_string());
            }
        }
        let mut queues = BTreeSet::new();
        for (i, queue) in self.queues.iter().enumerate() {
            if !queues.insert(queue.id.as_str()) {
                problem(
                    format!("queues[{i}].id"),
                    format!("{} is listed twice", queue.id),
                );
            }
        }
        let known_queue = |queue: &QueueId| queues.contains(queue.as_str());
        if !known_queue(&self.routing.default_queue) {
            problem(
                "routing.default_queue".into(),
                format!("no queue {} in [[queues]]", self.routing.default_queue),
            );
        }
        for (i, rule) in self.routing.rules.iter().enumerate() {
            match (&rule.queue, rule.refer_to_store) {
                (Some(_), true) | (None, false) => problem(
                    format!("routing.rules[{i}]"),
                    format!(
                        "rule {:?} needs exactly one of `queue` and `refer_to_store = true`",
                        rule.name
                    ),
                ),
                (Some(queue), false) if !known_queue(queue) => problem(
                    format!("routing.rules[{i}].queue"),
                    format!("no queue {queue} in [[queues]]"),
                ),
                _ => {}
            }
            for channel in &rule.channels {
                if !Channel::ALL.iter().any(|known| known.as_str() == channel) {
                    problem(
                        format!("routing.rules[{i}].channels"),
                        format!("no channel {channel:?}"),
                    );
                }
            }
            for family in &rule.products {
                if !families.contains(&family.to_lowercase()) {
                    problem(
                        format!("routing.rules[{i}].products"),
                        format!("no product {family:?} in [[products]]"),
                    );
                }
            }
            if rule.refer_to_store && self.stores.is_empty() {
                problem(
                    format!("routing.rules[{i}].refer_to_store"),
                    "the region lists no [[stores]]".into(),
                );
            }
        }
        let mut stores = BTreeSet::new();
        for (i, store) in self.stores.iter().enumerate() {
            if !stores.insert(store.id.as_str()) {
                problem(
                    format!("stores[{i}].id"),
                    format!("{} is listed twice", store.id),
                );
            }
            if !valid_coordinates(store.latitude, store.longitude) {
                problem(
                    format!("stores[{i}]"),
                    "latitude/longitude out of range".into(),
                );
            }
        }
        for (i, place) in self.places.iter().enumerate() {
            if !valid_coordinates(place.latitude, place.longitude) {
                problem(
                    format!("places[{i}]"),
                    "latitude/longitude out of range".into(),
                );
            }
        }
        for (i, queue) in self.queues.iter().enumerate() {
            let Some(sla) = &queue.sla else { continue };
            if !(1..=100).contains(&sla.warning_percent) {
                problems.push(ConfigProblem {
                    key: format!("queues[{i}].sla.warning_percent"),
                    message: format!("{} is not a share of 1 to 100 percent", sla.warning_percent),
                });
            }
            for (key, value) in [
                ("first_response_mins", sla.first_response_mins),
                ("next_response_mins", sla.next_response_mins),
                ("resolution_hours", sla.resolution_hours),
            ] {
                if value == Some(0) {
                    problems.push(ConfigProblem {
                        key: format!("queues[{i}].sla.{key}"),
                        message: "must be above 0; leave it out for no target".to_owned(),
                    });
                }
            }
        }
        for (i, holiday) in self.holidays.iter().enumerate() {
            for (j, queue) in holiday.queues.iter().enumerate() {
                if !queues.contains(queue.as_str()) {
                    problems.push(ConfigProblem {
                        key: format!("holidays[{i}].queues[{j}]"),
                        message: format!("{:?} is not a queue of this region", queue.as_str()),
                    });
                }
            }
        }
        agents::validate(&self.agents, &queues, &self.products, &mut problems);
        canned::validate(&self.canned_replies, &mut problems);
        problems
    }

    /// The canned reply with this shortcut.
    pub fn canned_reply(&self, shortcut: &str) -> Option<&canned::CannedReply> {
        self.canned_replies
            .iter()
            .find(|reply| reply.shortcut == shortcut)
    }

    pub fn queue(&self, id: &QueueId) -> Option<&Queue> {
        self.queues.iter().find(|queue| &queue.id == id)
    }

    /// The holiday that closes `queue` on `date` (a day in the region's time zone).
    pub fn holiday(&self, queue: &QueueId, date: jiff::civil::Date) -> Option<&Holiday> {
        self.holidays
            .iter()
            .find(|holiday| holiday.date == date && holiday.closes(queue))
    }

    /// Whether `queue` is staffed at `at`: inside its hours, on a day that is no holiday
    /// of it, in the region's time zone.
    pub fn queue_open(&self, queue: &Queue, at: jiff::Timestamp) -> bool {
        let zone = self.locale.zone();
        let date = at.to_zoned(zone.clone()).date();
        queue.hours.is_open(at, &zone) && self.holiday(&queue.id, date).is_none()
    }

    /// `queue`'s working time, business hours and holidays, for its SLA clocks.
    pub fn working_hours<'a>(&'a self, queue: &'a Queue) -> QueueHours<'a> {
        QueueHours {
            region: self,
            queue,
            zone: self.locale.zone(),
        }
    }

    /// When `queue` is staffed next, from `at` on: `at` itself when it is now. `None`
    /// when its hours never open in the coming year.
    pub fn queue_opens(&self, queue: &Queue, at: jiff::Timestamp) -> Option<jiff::Timestamp> {
        queue.hours.next_opening(at, &self.locale.zone(), |date| {
            self.holiday(&queue.id, date).is_some()
        })
    }

    pub fn agent(&self, id: &AgentId) -> Option<&Agent> {
        self.agents.iter().find(|agent| &agent.id == id)
    }

    pub fn store(&self, id: &StoreId) -> Option<&Store> {
        self.stores.iter().find(|store| &store.id == id)
    }

    /// The product a customer's text mentions: the longest family name or alias found in
    /// it as whole words, case-insensitively ("MateBook X Pro" before "MateBook").
    pub fn find_product(&self, text: &str) -> Option<&Product> {
        let lower = text.to_lowercase();
        self.products
            .iter()
            .flat_map(|product| product.names().map(move |name| (name, product)))
            .filter(|(name, _)| places::contains_word(&lower, &name.to_lowercase()))
            .max_by_key(|(name, _)| name.chars().count())
            .map(|(_, product)| product)
    }

    /// A region's `helpline.toml` as shipped beside its overlay: its region sections,
    /// leaving out the top-level `region` code, which belongs to the binary's
    /// configuration.
    pub fn from_region_file(text: &str) -> Result<RegionConfig, toml::de::Error> {
        let mut table: toml::Table = toml::from_str(text)?;
        // Read by the binary, not by the conversation: which region, and how long
        // personal data is kept.
        table.remove("region");
        table.remove("privacy");
        table.try_into()
    }

    /// The product a family name (any case) names.
    pub fn product(&self, family: &str) -> Option<&Product> {
        self.products
            .iter()
            .find(|product| product.family.eq_ignore_ascii_case(family))
    }
}

fn valid_coordinates(latitude: f64, longitude: f64) -> bool {
    (-90.0..=90.0).contains(&latitude) && (-180.0..=180.0).contains(&longitude)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The German deployment's file, as shipped.
    pub(crate) fn germany() -> RegionConfig {
        let text = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
        RegionConfig::from_region_file(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_german_region_is_valid() {
        let region = germany();
        assert_eq!(region.validate(), vec![]);
        assert_eq!(region.locale.default_language(), "de");
    }

    #[test]
    fn the_longest_product_name_in_the_text_wins() {
        let region = germany();
        let family = |text| region.find_product(text).map(|p| p.family.as_str());
        assert_eq!(
            family("Hallo, mein MateBook startet nicht"),
            Some("MateBook")
        );
        assert_eq!(
            family("MateBook X Pro, SN 2NS7N19B12345678"),
            Some("MateBook X Pro")
        );
        assert_eq!(family("my matebook x pro"), Some("MateBook X Pro"));
        assert_eq!(family("Guten Tag"), None);
    }

    #[test]
    fn serial_numbers_are_checked_against_the_products_pattern() {
        let region = germany();
        let laptop = region
            .product("MateBook X Pro")
            .unwrap_or_else(|| panic!("no laptop"));
        assert!(laptop.accepts_serial("2NS7N19B12345678"));
        assert!(!laptop.accepts_serial("12345"));
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let mut region = germany();
        region.locale.time_zone = "Mars/Olympus".to_owned();
        region.products[0].serial_pattern = "([".to_owned();
        region.routing.rules[1].queue = Some(QueueId::new("nowhere"));
        region.routing.default_queue = QueueId::new("gone");
        let keys: Vec<String> = region.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "locale.time_zone",
                "products[0].serial_pattern",
                "routing.default_queue",
                "routing.rules[1].queue",
            ]
        );
    }
}
