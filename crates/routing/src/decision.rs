//! Applying the region's rules to one ticket: pure, so that the consumer and the dry run
//! give the same answer for the same facts and time.

use std::fmt;

use helpline_domain::{Command, QueueId, StoreReferral, Ticket};
use helpline_region::{RegionConfig, RouteFacts, Target};

/// Where a ticket goes, and by which rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The rule named in `TicketRouted`: the matching rule, `default`, or
    /// `<rule>/no-store-found` when a store rule fell back to the default queue.
    pub rule: String,
    pub destination: Destination,
    /// Why a store rule could not refer the ticket; `None` when it went where its rule
    /// said.
    pub fallback: Option<Fallback>,
}

/// A queue of agents, or a store with everything the customer is told about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Queue(QueueId),
    Store(StoreReferral),
}

/// Why a rule that refers to a store sent the ticket to the default queue instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The bot captured no postcode or city.
    NoLocation,
    /// The location names no configured place, or the region lists no store.
    NoStoreFound,
}

/// Suffix of the rule name when a store rule fell back to the default queue.
pub const NO_STORE_SUFFIX: &str = "/no-store-found";

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fallback::NoLocation => "the ticket has no postcode or city",
            Fallback::NoStoreFound => "no store is known near the ticket's postcode or city",
        })
    }
}

/// The facts routing matches a ticket on, and the location a store rule needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub route: RouteFacts,
    /// Postcode or city as the customer gave it; personal, never logged.
    pub location: String,
}

impl Facts {
    pub fn of(ticket: &Ticket) -> Self {
        Self {
            route: RouteFacts::of(ticket),
            location: ticket
                .details
                .as_ref()
                .map(|details| details.location.expose().clone())
                .unwrap_or_default(),
        }
    }
}

/// Where `facts` go at `at`: the first matching rule's queue, or the store nearest to the
/// location; the default queue when a store rule finds no store, so no ticket is stuck.
pub fn decide_route(region: &RegionConfig, facts: &Facts, at: jiff::Timestamp) -> Decision {
    let route = region.route(&facts.route, at);
    match route.target {
        Target::Queue(queue) => Decision {
            rule: route.rule,
            destination: Destination::Queue(queue),
            fallback: None,
        },
        Target::Store => {
            let fallback = if facts.location.trim().is_empty() {
                Fallback::NoLocation
            } else if let Some(store) = region.nearest_store(&facts.location) {
                return Decision {
                    rule: route.rule,
                    destination: Destination::Store(store.referral()),
                    fallback: None,
                };
            } else {
                Fallback::NoStoreFound
            };
            Decision {
                rule: format!("{}{NO_STORE_SUFFIX}", route.rule),
                destination: Destination::Queue(region.routing.default_queue.clone()),
                fallback: Some(fallback),
            }
        }
    }
}

impl Decision {
    /// The command that carries the decision out.
    pub fn command(&self) -> Command {
        match &self.destination {
            Destination::Queue(queue) => Command::RouteToQueue {
                rule: self.rule.clone(),
                queue: queue.clone(),
            },
            Destination::Store(referral) => Command::ReferToStore {
                rule: self.rule.clone(),
                referral: referral.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use helpline_domain::{
        Channel, Customer, Details, Event, HandoffReason, Personal, StoreId, TicketId, decide, fold,
    };

    use super::*;

    fn germany() -> RegionConfig {
        let text = include_str!("../../../deploy/k8s/overlays/de/helpline.toml");
        RegionConfig::from_region_file(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// 2026-11-25 is a Wednesday; noon in Berlin, when every queue is staffed.
    fn wednesday_noon() -> jiff::Timestamp {
        "2026-11-25T11:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A ticket the bot handed over, with what it captured.
    fn handed_over(language: &str, product: &str, category: &str, location: &str) -> Ticket {
        let ticket = TicketId(uuid::Uuid::nil());
        fold(
            Ticket::default(),
            &[
                Event::TicketOpened {
                    ticket,
                    customer: Customer {
                        channel: Channel::WhatsApp,
                        contact: Personal::from("4915112345678"),
                        display_name: None,
                    },
                    language: language.to_owned(),
                },
                Event::DetailsCaptured(Details {
                    product: product.to_owned(),
                    category: category.to_owned(),
                    location: Personal::from(location),
                    ..Details::default()
                }),
                Event::HandoffRequested {
                    reason: HandoffReason::DetailsComplete,
                    summary: Personal::from("summary"),
                },
            ],
        )
    }

    /// Given a handed-over ticket, when routing decides, then these events follow.
    #[track_caller]
    fn check(ticket: Ticket, expected: Vec<Event>) {
        let decision = decide_route(&germany(), &Facts::of(&ticket), wednesday_noon());
        let events = decide(&ticket, decision.command()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(events, expected);
    }

    fn queued(rule: &str, queue: &str) -> Vec<Event> {
        vec![
            Event::TicketRouted {
                rule: rule.to_owned(),
                destination: helpline_domain::RouteDestination::Queue(QueueId::new(queue)),
            },
            Event::TicketQueued {
                queue: QueueId::new(queue),
            },
        ]
    }

    #[test]
    fn a_laptop_with_a_hardware_defect_is_referred_to_the_nearest_store() {
        let berlin = germany()
            .store(&StoreId::new("berlin-mitte"))
            .map(|store| store.referral())
            .unwrap_or_else(|| panic!("no berlin-mitte"));
        check(
            handed_over("de", "MateBook X Pro", "hardware", "10115 Berlin"),
            vec![
                Event::TicketRouted {
                    rule: "laptop-hardware-to-store".to_owned(),
                    destination: helpline_domain::RouteDestination::Store(berlin.store.clone()),
                },
                Event::ReferredToStore(berlin),
            ],
        );
    }

    #[test]
    fn a_city_name_finds_its_store_too() {
        let decision = decide_route(
            &germany(),
            &Facts::of(&handed_over("de", "MatePad", "hardware", "in Munich bitte")),
            wednesday_noon(),
        );
        assert!(
            matches!(&decision.destination, Destination::Store(r) if r.store.as_str() == "muenchen-zentrum"),
            "{decision:?}"
        );
    }

    #[test]
    fn queue_rules_send_the_ticket_to_their_queue() {
        check(
            handed_over("de", "MateBook", "boot", ""),
            queued("laptops", "de-laptops"),
        );
        check(
            handed_over("en", "MateBook", "boot", ""),
            queued("english", "de-english"),
        );
        check(
            handed_over("de", "Pura 80", "hardware", ""),
            queued("phones-and-wearables", "de-phones"),
        );
    }

    #[test]
    fn nothing_matching_goes_to_the_default_queue() {
        check(
            handed_over("de", "", "", ""),
            queued("default", "de-general"),
        );
    }

    #[test]
    fn a_store_rule_without_a_location_falls_back_to_the_default_queue() {
        let ticket = handed_over("de", "MateBook", "hardware", "");
        check(
            ticket.clone(),
            queued("laptop-hardware-to-store/no-store-found", "de-general"),
        );
        let decision = decide_route(&germany(), &Facts::of(&ticket), wednesday_noon());
        assert_eq!(decision.fallback, Some(Fallback::NoLocation));
    }

    #[test]
    fn a_store_rule_with_an_unknown_place_falls_back_to_the_default_queue() {
        let ticket = handed_over("de", "MateBook", "hardware", "Atlantis");
        check(
            ticket.clone(),
            queued("laptop-hardware-to-store/no-store-found", "de-general"),
        );
        let decision = decide_route(&germany(), &Facts::of(&ticket), wednesday_noon());
        assert_eq!(decision.fallback, Some(Fallback::NoStoreFound));
    }
}
