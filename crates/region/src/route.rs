//! Evaluating the routing rules: pure, so that routing applies them and the bot can
//! dry-run them (to ask for a postcode before a store referral).

use helpline_domain::{Channel, QueueId, Ticket};

use crate::{RegionConfig, Rule};

/// What routing matches a ticket on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteFacts {
    pub language: String,
    /// Product family, as in `[[products]] family`; empty when unknown.
    pub product: String,
    pub category: String,
    pub channel: Option<Channel>,
    /// The entry point's intent and group the customer came in by; empty when none.
    pub intent: String,
    pub group: String,
}

impl RouteFacts {
    /// The facts a ticket's events established.
    pub fn of(ticket: &Ticket) -> Self {
        let details = ticket.details.clone().unwrap_or_default();
        let entry = ticket.entry_point.clone().unwrap_or_default();
        Self {
            language: ticket.language.clone(),
            product: details.product,
            category: details.category,
            channel: ticket.customer.as_ref().map(|customer| customer.channel),
            intent: entry.intent,
            group: entry.group,
        }
    }
}

/// Where the rules send a ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Queue(QueueId),
    /// To the nearest store; which one depends on the customer's postcode or city.
    Store,
}

/// The rule that matched (or `default` when none did) and its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub rule: String,
    pub target: Target,
}

/// The rule name reported when no rule matched and the default queue was taken.
pub const DEFAULT_RULE: &str = "default";

impl RegionConfig {
    /// The first rule that matches `facts` at `at` (region time for rule hours), else the
    /// default queue.
    pub fn route(&self, facts: &RouteFacts, at: jiff::Timestamp) -> Route {
        let zone = self.locale.zone();
        self.routing
            .rules
            .iter()
            .find(|rule| self.matches(rule, facts) && rule.hours.is_open(at, &zone))
            .map(|rule| Route {
                rule: rule.name.clone(),
                target: match (&rule.queue, rule.refer_to_store) {
                    (_, true) => Target::Store,
                    (Some(queue), false) => Target::Queue(queue.clone()),
                    // Validation refuses such a rule; the default queue is the safe answer.
                    (None, false) => Target::Queue(self.routing.default_queue.clone()),
                },
            })
            .unwrap_or_else(|| Route {
                rule: DEFAULT_RULE.to_owned(),
                target: Target::Queue(self.routing.default_queue.clone()),
            })
    }

    fn matches(&self, rule: &Rule, facts: &RouteFacts) -> bool {
        let listed = |list: &[String], value: &str| {
            list.is_empty() || list.iter().any(|item| item.eq_ignore_ascii_case(value))
        };
        let kind = self
            .product(&facts.product)
            .map_or("", |product| product.kind.as_str());
        let channel = facts.channel.map_or("", Channel::as_str);
        listed(&rule.countries, &self.locale.country)
            && listed(&rule.languages, &facts.language)
            && listed(&rule.products, &facts.product)
            && listed(&rule.product_kinds, kind)
            && listed(&rule.categories, &facts.category)
            && listed(&rule.channels, channel)
            && listed(&rule.intents, &facts.intent)
            && listed(&rule.groups, &facts.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::germany;

    fn wednesday_noon() -> jiff::Timestamp {
        "2026-11-25T11:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn facts(language: &str, product: &str, category: &str) -> RouteFacts {
        RouteFacts {
            language: language.to_owned(),
            product: product.to_owned(),
            category: category.to_owned(),
            channel: Some(Channel::WhatsApp),
            ..RouteFacts::default()
        }
    }

    #[test]
    fn a_laptop_with_a_hardware_defect_goes_to_a_store() {
        let route = germany().route(&facts("de", "MateBook", "hardware"), wednesday_noon());
        assert_eq!(route.rule, "laptop-hardware-to-store");
        assert_eq!(route.target, Target::Store);
    }

    #[test]
    fn rules_are_tried_in_order_and_the_first_match_decides() {
        let region = germany();
        let route = |f| region.route(&f, wednesday_noon());
        assert_eq!(
            route(facts("en", "MateBook", "")).target,
            Target::Queue(QueueId::new("de-english"))
        );
        assert_eq!(
            route(facts("de", "MateBook X Pro", "boot")).target,
            Target::Queue(QueueId::new("de-laptops"))
        );
        assert_eq!(
            route(facts("de", "Pura 80", "hardware")).target,
            Target::Queue(QueueId::new("de-phones"))
        );
    }

    #[test]
    fn the_button_of_a_laptop_page_goes_to_the_laptop_queue() {
        let region = germany();
        let from_button = RouteFacts {
            group: "laptops".to_owned(),
            channel: Some(Channel::AppleMessages),
            ..facts("de", "", "")
        };
        let route = region.route(&from_button, wednesday_noon());
        assert_eq!(route.rule, "laptop-page-button");
        assert_eq!(route.target, Target::Queue(QueueId::new("de-laptops")));
        // A hardware defect still goes to a store, whatever button it came by.
        let defect = RouteFacts {
            group: "laptops".to_owned(),
            ..facts("de", "MateBook", "hardware")
        };
        assert_eq!(
            region.route(&defect, wednesday_noon()).target,
            Target::Store
        );
    }

    #[test]
    fn nothing_matching_goes_to_the_default_queue() {
        let route = germany().route(&facts("de", "", ""), wednesday_noon());
        assert_eq!(
            route,
            Route {
                rule: DEFAULT_RULE.to_owned(),
                target: Target::Queue(QueueId::new("de-general"))
            }
        );
    }

    #[test]
    fn a_rule_with_hours_applies_only_within_them() {
        let mut region = germany();
        region.routing.rules[0].hours =
            crate::WeeklyHours::parse(&["sat-sun 10:00-12:00"]).unwrap_or_else(|e| panic!("{e}"));
        let route = region.route(&facts("de", "MateBook", "hardware"), wednesday_noon());
        assert_eq!(route.rule, "laptops");
    }
}
