//! The query projection: every ticket's state, timeline and searchable texts, folded
//! from its events.
//!
//! Pure: [`Projection::apply`] takes one stored event at a time and reads no clock, so
//! the same log always folds to the same projection, live or rebuilt. A ticket's state
//! is the domain's own fold ([`helpline_domain::evolve`]), so the query service never
//! disagrees with the services that decide.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::SystemTime;

use helpline_domain::{AgentId, Channel, Event, Phase, QueueId, Ticket, TicketId};
use helpline_eventstore::{Applied, EnvelopeMeta, StoredEvent};
use uuid::Uuid;

use crate::summary;

/// One ticket's current state and where it sits in time.
#[derive(Clone, Debug, PartialEq)]
pub struct TicketView {
    pub id: TicketId,
    pub region: String,
    /// The domain's fold of the ticket's events.
    pub state: Ticket,
    /// When `TicketOpened` occurred; none while it has not been seen.
    pub opened_at: Option<SystemTime>,
    /// When its latest event occurred.
    pub last_activity_at: SystemTime,
    /// Stream sequence of its latest event.
    pub last_sequence: u64,
}

/// One event of a ticket, as it was stored.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineEntry {
    pub sequence: u64,
    pub occurred_at: SystemTime,
    pub event_id: Uuid,
    pub command_id: Uuid,
    pub causation_id: String,
    pub event: Event,
}

/// What one applied event changed, for live watchers.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub view: TicketView,
    pub entry: TimelineEntry,
    /// The queue the ticket waited in (or was being served from) before this event.
    pub was_in_queue: Option<QueueId>,
}

/// Which tickets a list shows; `None` and empty values do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub phase: Option<Phase>,
    pub queue: Option<QueueId>,
    pub agent: Option<AgentId>,
    pub channel: Option<Channel>,
    pub region: Option<String>,
    /// Opened at or after.
    pub opened_from: Option<SystemTime>,
    /// Opened before.
    pub opened_to: Option<SystemTime>,
    /// Last event at or after.
    pub active_from: Option<SystemTime>,
    /// Last event before.
    pub active_to: Option<SystemTime>,
    /// Words that must all occur in the ticket's texts; matched ignoring case.
    pub words: Vec<String>,
}

/// Every ticket's view, timeline and texts, and how far into the log the fold has come.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Projection {
    /// Boxed: a ticket's fold is some 700 bytes, and a map of them moved every one at each
    /// growth, a tenth of a rebuild's time.
    /// Hashed by foldhash, randomly seeded: ticket ids are UUIDv7 made by helpline, and
    /// SipHash was a visible share of a rebuild.
    tickets: HashMap<TicketId, Box<Folded>, foldhash::fast::RandomState>,
    applied: Applied,
    events: u64,
}

#[derive(Clone, Debug, PartialEq)]
struct Folded {
    view: TicketView,
    timeline: Vec<TimelineEntry>,
    /// Lower-case texts for free-text search; personal ones dropped once the customer
    /// is erased.
    texts: Vec<String>,
}

impl Projection {
    /// Folds one event in and says what changed. Events already applied are skipped
    /// (`None`), so a replay that overlaps what was applied changes nothing.
    pub fn apply(&mut self, stored: &StoredEvent) -> Option<Change> {
        let was_in_queue = self.fold(stored)?;
        let folded = self.tickets.get(&stored.meta.ticket)?;
        Some(Change {
            view: folded.view.clone(),
            entry: folded.timeline.last()?.clone(),
            was_in_queue,
        })
    }

    /// Folds one event in, as [`Projection::apply`], without saying what changed: what a
    /// replay uses, where nobody watches and copying the ticket's view per event was a
    /// measurable share of a rebuild. `None` for an event already applied; otherwise the
    /// queue the ticket waited in before it.
    pub fn fold(&mut self, stored: &StoredEvent) -> Option<Option<QueueId>> {
        self.fold_event(
            stored.sequence,
            Cow::Borrowed(&stored.meta),
            Cow::Borrowed(&stored.event),
        )
    }

    /// As [`Projection::fold`], taking the event: a replay hands each one over, and the
    /// timeline keeps it and its envelope's texts without a copy.
    pub fn fold_owned(&mut self, stored: StoredEvent) -> Option<Option<QueueId>> {
        let StoredEvent {
            sequence,
            meta,
            event,
            ..
        } = stored;
        self.fold_event(sequence, Cow::Owned(meta), Cow::Owned(event))
    }

    fn fold_event(
        &mut self,
        sequence: u64,
        meta: Cow<'_, EnvelopeMeta>,
        event: Cow<'_, Event>,
    ) -> Option<Option<QueueId>> {
        if !self.applied.admit(sequence, meta.event_id) {
            return None;
        }
        self.events += 1;
        let (id, at) = (meta.ticket, meta.occurred_at);
        let (event_id, command_id) = (meta.event_id, meta.command_id);
        let (region, causation_id) = match meta {
            Cow::Owned(meta) => (Cow::Owned(meta.region), meta.causation_id),
            Cow::Borrowed(meta) => (Cow::Borrowed(&meta.region), meta.causation_id.clone()),
        };
        let folded = self.tickets.entry(id).or_insert_with(|| {
            Box::new(Folded {
                view: TicketView {
                    id,
                    region: region.into_owned(),
                    state: Ticket::default(),
                    opened_at: None,
                    last_activity_at: at,
                    last_sequence: 0,
                },
                // Room for one event: a ticket's first growth would make room for four
                // entries of 368 bytes, most of a rebuild's fresh memory where tickets
                // are short, and its page faults were a tenth of the rebuild.
                timeline: Vec::with_capacity(1),
                texts: Vec::new(),
            })
        });
        let was_in_queue = waiting_in(&folded.view.state).cloned();
        let view = &mut folded.view;
        view.state.apply(&event);
        view.last_sequence = sequence;
        // A late-stamped event (another writer's clock) does not move activity back.
        view.last_activity_at = view.last_activity_at.max(at);
        if matches!(*event, Event::TicketOpened { .. }) {
            view.opened_at = Some(at);
        }
        let erasure = matches!(*event, Event::CustomerErased);
        if !erasure {
            summary::texts(&event, !view.state.erased, &mut folded.texts);
        }
        folded.timeline.push(TimelineEntry {
            sequence,
            occurred_at: at,
            event_id,
            command_id,
            causation_id,
            event: event.into_owned(),
        });
        if erasure {
            // The projection's copies of the customer's data go with the customer.
            folded.texts.clear();
            for earlier in &mut folded.timeline {
                earlier.event.erase_personal();
                summary::texts(&earlier.event, false, &mut folded.texts);
            }
        }
        Some(was_in_queue)
    }

    /// Stream sequence of the last applied event; 0 before the first.
    pub fn last_sequence(&self) -> u64 {
        self.applied.sequence()
    }

    /// Events applied.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Tickets seen.
    pub fn ticket_count(&self) -> usize {
        self.tickets.len()
    }

    pub fn ticket(&self, id: TicketId) -> Option<&TicketView> {
        self.tickets.get(&id).map(|folded| &folded.view)
    }

    /// The ticket's events, oldest first.
    pub fn timeline(&self, id: TicketId) -> Option<&[TimelineEntry]> {
        self.tickets
            .get(&id)
            .map(|folded| folded.timeline.as_slice())
    }

    /// The tickets `filter` lets through, latest activity first (ties by id), at most
    /// `limit`, and how many match in all.
    pub fn list(&self, filter: &Filter, limit: usize) -> (Vec<&TicketView>, usize) {
        let mut matching: Vec<&TicketView> = self
            .tickets
            .values()
            .filter(|folded| filter.admits(folded))
            .map(|folded| &folded.view)
            .collect();
        let total = matching.len();
        matching.sort_by(|a, b| {
            b.last_activity_at
                .cmp(&a.last_activity_at)
                .then(a.id.cmp(&b.id))
        });
        matching.truncate(limit);
        (matching, total)
    }

    /// The tickets waiting in `queue` or being served from it, oldest activity first.
    pub fn in_queue(&self, queue: &QueueId) -> Vec<&TicketView> {
        let mut waiting: Vec<&TicketView> = self
            .tickets
            .values()
            .map(|folded| &folded.view)
            .filter(|view| waiting_in(&view.state) == Some(queue))
            .collect();
        waiting.sort_by(|a, b| {
            a.last_activity_at
                .cmp(&b.last_activity_at)
                .then(a.id.cmp(&b.id))
        });
        waiting
    }
}

/// The queue a ticket waits in or is being served from: queued or assigned.
pub fn waiting_in(ticket: &Ticket) -> Option<&QueueId> {
    match ticket.phase {
        Phase::Queued | Phase::Assigned => ticket.queue.as_ref(),
        _ => None,
    }
}

impl Filter {
    fn admits(&self, folded: &Folded) -> bool {
        let view = &folded.view;
        let ticket = &view.state;
        let within = |at: Option<SystemTime>, from: Option<SystemTime>, to: Option<SystemTime>| {
            (from.is_none() && to.is_none())
                || at.is_some_and(|at| {
                    from.is_none_or(|from| at >= from) && to.is_none_or(|to| at < to)
                })
        };
        self.phase.is_none_or(|phase| ticket.phase == phase)
            && matches(self.queue.as_ref(), ticket.queue.as_ref())
            && matches(self.agent.as_ref(), ticket.agent.as_ref())
            && self
                .channel
                .is_none_or(|channel| ticket.customer.as_ref().map(|c| c.channel) == Some(channel))
            && self
                .region
                .as_ref()
                .is_none_or(|region| *region == view.region)
            && within(view.opened_at, self.opened_from, self.opened_to)
            && within(
                Some(view.last_activity_at),
                self.active_from,
                self.active_to,
            )
            && self.words.iter().all(|word| {
                let word = word.to_lowercase();
                folded.texts.iter().any(|text| text.contains(&word))
            })
    }
}

/// No filter, or the ticket's value equals the wanted one.
fn matches<T: PartialEq>(wanted: Option<&T>, actual: Option<&T>) -> bool {
    wanted.is_none() || wanted == actual
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use helpline_domain::{Customer, Details, MessageBody, MessageId, Personal};

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

        /// A ticket on `channel` that says `text` and is queued in `queue` at `at`.
        fn queued(&mut self, channel: Channel, text: &str, queue: &str, at: u64) -> TicketId {
            let id = TicketId(Uuid::now_v7());
            self.at(
                id,
                at - 60,
                Event::TicketOpened {
                    ticket: id,
                    customer: Customer {
                        channel,
                        contact: Personal::from("4915112345678"),
                        display_name: None,
                    },
                    language: "de".to_owned(),
                },
            )
            .at(
                id,
                at - 50,
                Event::CustomerMessageReceived {
                    message: MessageId(Uuid::now_v7()),
                    provider_message_id: "wamid.1".into(),
                    body: MessageBody::Text(Personal::from(text)),
                },
            )
            .at(
                id,
                at - 40,
                Event::DetailsCaptured(Details {
                    product: "MateBook X Pro".to_owned(),
                    ..Details::default()
                }),
            )
            .at(
                id,
                at,
                Event::TicketQueued {
                    queue: QueueId::new(queue),
                },
            );
            id
        }

        fn fold(&self) -> Projection {
            let mut projection = Projection::default();
            for event in &self.events {
                projection.apply(event);
            }
            projection
        }
    }

    const T0: u64 = 1_795_604_400;

    fn secs(unix: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(unix))
    }

    #[test]
    fn a_ticket_folds_into_its_state_times_and_timeline() {
        let mut log = Log::default();
        let id = log.queued(Channel::Telegram, "Akku defekt", "de-laptops", T0);
        let projection = log.fold();
        let view = projection.ticket(id).unwrap_or_else(|| panic!("no ticket"));
        assert_eq!(view.state.phase, Phase::Queued);
        assert_eq!(view.state.queue, Some(QueueId::new("de-laptops")));
        assert_eq!(view.state.customer_messages, 1);
        assert_eq!(
            (view.opened_at, Some(view.last_activity_at)),
            (secs(T0 - 60), secs(T0))
        );
        assert_eq!(view.last_sequence, 4);
        let types: Vec<&str> = projection
            .timeline(id)
            .unwrap_or_default()
            .iter()
            .map(|entry| entry.event.name())
            .collect();
        assert_eq!(
            types,
            [
                "TicketOpened",
                "CustomerMessageReceived",
                "DetailsCaptured",
                "TicketQueued"
            ]
        );
        assert_eq!((projection.events(), projection.last_sequence()), (4, 4));
    }

    #[test]
    fn applying_an_event_twice_changes_nothing() {
        let mut log = Log::default();
        log.queued(Channel::WhatsApp, "Akku defekt", "de-laptops", T0);
        let once = log.fold();
        let mut twice = once.clone();
        for event in &log.events {
            assert_eq!(twice.apply(event), None);
        }
        assert_eq!(once, twice);
    }

    #[test]
    fn filters_narrow_the_list_and_text_search_ignores_case() {
        let mut log = Log::default();
        let akku = log.queued(Channel::WhatsApp, "Der Akku ist defekt", "de-laptops", T0);
        let screen = log.queued(
            Channel::Telegram,
            "Bildschirm flackert",
            "de-phones",
            T0 + 600,
        );
        let projection = log.fold();
        let ids = |filter: Filter| -> Vec<TicketId> {
            projection
                .list(&filter, 10)
                .0
                .iter()
                .map(|view| view.id)
                .collect()
        };
        assert_eq!(ids(Filter::default()), [screen, akku]);
        let by_queue = Filter {
            queue: Some(QueueId::new("de-laptops")),
            ..Filter::default()
        };
        assert_eq!(ids(by_queue), [akku]);
        let by_channel = Filter {
            channel: Some(Channel::Telegram),
            ..Filter::default()
        };
        assert_eq!(ids(by_channel), [screen]);
        let by_words = Filter {
            words: vec!["AKKU".to_owned(), "matebook".to_owned()],
            ..Filter::default()
        };
        assert_eq!(ids(by_words), [akku]);
        let by_opening = Filter {
            opened_from: secs(T0),
            ..Filter::default()
        };
        assert_eq!(ids(by_opening), [screen]);
        let by_activity = Filter {
            active_to: secs(T0 + 1),
            phase: Some(Phase::Queued),
            ..Filter::default()
        };
        assert_eq!(ids(by_activity), [akku]);
        let nobody = Filter {
            agent: Some(AgentId::new("anna")),
            ..Filter::default()
        };
        assert_eq!(projection.list(&nobody, 10), (Vec::new(), 0));
        assert_eq!(projection.list(&Filter::default(), 1).1, 2);
    }

    #[test]
    fn a_replay_folding_owned_events_builds_the_projection_the_live_view_builds() {
        let mut log = Log::default();
        log.queued(Channel::WhatsApp, "Der Akku ist defekt", "de-laptops", T0);
        let erased = log.queued(
            Channel::Telegram,
            "Bildschirm flackert",
            "de-phones",
            T0 + 5,
        );
        log.at(erased, T0 + 10, Event::CustomerErased);
        let live = log.fold();
        let mut replayed = Projection::default();
        for event in log.events.clone() {
            replayed.fold_owned(event);
        }
        assert_eq!(replayed, live);
    }

    #[test]
    fn an_erased_customer_is_no_longer_found_by_personal_texts() {
        let mut log = Log::default();
        let id = log.queued(Channel::WhatsApp, "Der Akku ist defekt", "de-laptops", T0);
        log.at(id, T0 + 10, Event::CustomerErased);
        let projection = log.fold();
        let search = |word: &str| Filter {
            words: vec![word.to_owned()],
            ..Filter::default()
        };
        assert_eq!(projection.list(&search("akku"), 10).1, 0);
        assert_eq!(projection.list(&search("matebook"), 10).1, 1);
        // The timeline's copies of the customer's data are gone from memory too.
        for entry in projection.timeline(id).unwrap_or_default() {
            let mut event = entry.event.clone();
            event.personal_fields_mut(|field, value| {
                assert!(
                    !value.holds_known_value(),
                    "{}.{field} kept in memory",
                    entry.event.name()
                );
            });
        }
    }

    #[test]
    fn a_change_says_which_queue_the_ticket_left() {
        let mut log = Log::default();
        let id = log.queued(Channel::WhatsApp, "Akku", "de-laptops", T0);
        log.at(id, T0 + 5, Event::TicketAbandoned);
        let mut projection = Projection::default();
        let changes: Vec<Change> = log
            .events
            .iter()
            .filter_map(|event| projection.apply(event))
            .collect();
        let last = changes.last().unwrap_or_else(|| panic!("no change"));
        assert_eq!(last.was_in_queue, Some(QueueId::new("de-laptops")));
        assert_eq!(last.view.state.phase, Phase::Abandoned);
        assert!(projection.in_queue(&QueueId::new("de-laptops")).is_empty());
    }
}
