//! The `helpline.v1.TicketQuery` API: tickets, timelines, lists and live watches from the
//! live projection. Read-only: nothing here appends to the log.

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use futures::{Stream, StreamExt, stream};
use helpline_auth::{AuthKey, Claims};
use helpline_domain::{AgentId, Holder, Personal, Phase, QueueId, TicketId};
use helpline_eventstore::EventStore;
use helpline_eventstore::codec::channel_from_proto_value;
use helpline_proto::v1 as pb;
use helpline_proto::v1::ticket_query_server::{TicketQuery, TicketQueryServer};
use helpline_region::{RegionConfig, Role};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::error::QueryError;
use crate::live::LiveProjection;
use crate::projection::{Change, Filter, Projection, TicketView, TimelineEntry, waiting_in};
use crate::summary::{self, Audience};

/// Tickets a list returns when the caller sets no limit.
const DEFAULT_LIMIT: usize = 50;
/// Tickets a list returns at most.
const MAX_LIMIT: usize = 1000;

/// The TicketQuery API over `projection` (kept live by [`LiveProjection::follow`]); the
/// binary serves it beside the other services, health and reflection. It shows customers'
/// personal data, so every call needs a bearer token signed with `key` for a supervisor
/// or admin of `region`'s `[[agents]]` (agents see their own tickets on the AgentDesk).
pub fn grpc_service(
    store: EventStore,
    projection: LiveProjection,
    key: AuthKey,
    region: Arc<RegionConfig>,
) -> TicketQueryServer<impl TicketQuery> {
    TicketQueryServer::new(QueryApi {
        store,
        projection,
        key,
        region,
    })
}

#[derive(Debug)]
struct QueryApi {
    store: EventStore,
    projection: LiveProjection,
    key: AuthKey,
    region: Arc<RegionConfig>,
}

type Watch<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl QueryApi {
    /// Who the caller is, as far as personal data goes: the one place that decides it. A
    /// supervisor or admin is an operator of the region; anyone else is refused.
    fn audience<T>(&self, request: &Request<T>) -> Result<Audience, QueryError> {
        self.watcher(request).map(|(audience, _)| audience)
    }

    /// [`Self::audience`], with the token's claims: a watch ends with its token.
    fn watcher<T>(&self, request: &Request<T>) -> Result<(Audience, Claims), QueryError> {
        let (agent, role, claims) = helpline_auth::caller_claims(&self.key, request, &self.region)
            .map_err(|e| QueryError::Unauthenticated(e.to_string()))?;
        if role < Role::Supervisor {
            return Err(QueryError::PermissionDenied(format!(
                "{} is not a supervisor; tickets are read on the AgentDesk",
                agent.id
            )));
        }
        Ok((Audience::operator(), claims))
    }
}

#[tonic::async_trait]
impl TicketQuery for QueryApi {
    async fn get_ticket(
        &self,
        request: Request<pb::GetTicketRequest>,
    ) -> Result<Response<pb::GetTicketResponse>, Status> {
        let audience = self.audience(&request)?;
        let id = ticket_id(&request.get_ref().ticket_id)?;
        let stream_last = self
            .store
            .log_last_sequence()
            .await
            .map_err(QueryError::unavailable)?;
        let (ticket, position) = self.projection.read_with(|projection| {
            let ticket = projection
                .ticket(id)
                .map(|view| view_to_proto(view, &audience));
            (ticket, self.position(projection, stream_last))
        });
        let ticket = ticket.ok_or_else(|| QueryError::NotFound(id.to_string()))?;
        Ok(Response::new(pb::GetTicketResponse {
            ticket: Some(ticket),
            position: Some(position),
        }))
    }

    async fn get_timeline(
        &self,
        request: Request<pb::GetTimelineRequest>,
    ) -> Result<Response<pb::GetTimelineResponse>, Status> {
        let audience = self.audience(&request)?;
        let id = ticket_id(&request.get_ref().ticket_id)?;
        let stream_last = self
            .store
            .log_last_sequence()
            .await
            .map_err(QueryError::unavailable)?;
        let (entries, position) = self.projection.read_with(|projection| {
            let erased = projection.ticket(id).is_some_and(|view| view.state.erased);
            let entries = projection.timeline(id).map(|timeline| {
                timeline
                    .iter()
                    .map(|entry| entry_to_proto(entry, &audience, erased))
                    .collect::<Vec<_>>()
            });
            (entries, self.position(projection, stream_last))
        });
        let entries = entries.ok_or_else(|| QueryError::NotFound(id.to_string()))?;
        Ok(Response::new(pb::GetTimelineResponse {
            ticket_id: id.to_string(),
            entries,
            position: Some(position),
        }))
    }

    async fn list_tickets(
        &self,
        request: Request<pb::ListTicketsRequest>,
    ) -> Result<Response<pb::ListTicketsResponse>, Status> {
        let audience = self.audience(&request)?;
        let request = request.into_inner();
        let filter = filter_from_proto(request.filter.unwrap_or_default())?;
        let limit = match request.limit {
            0 => DEFAULT_LIMIT,
            limit => usize::try_from(limit).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
        };
        let stream_last = self
            .store
            .log_last_sequence()
            .await
            .map_err(QueryError::unavailable)?;
        let (tickets, total, position) = self.projection.read_with(|projection| {
            let (views, total) = projection.list(&filter, limit);
            let tickets: Vec<_> = views
                .into_iter()
                .map(|view| view_to_proto(view, &audience))
                .collect();
            (tickets, total, self.position(projection, stream_last))
        });
        Ok(Response::new(pb::ListTicketsResponse {
            tickets,
            total_matches: u32::try_from(total).unwrap_or(u32::MAX),
            position: Some(position),
        }))
    }

    type WatchTicketStream = Watch<pb::WatchTicketResponse>;

    async fn watch_ticket(
        &self,
        request: Request<pb::WatchTicketRequest>,
    ) -> Result<Response<Self::WatchTicketStream>, Status> {
        let (audience, claims) = self.watcher(&request)?;
        let id = ticket_id(&request.get_ref().ticket_id)?;
        let stream_last = self
            .store
            .log_last_sequence()
            .await
            .map_err(QueryError::unavailable)?;
        // Subscribed before the first answer is read, so no change falls in between;
        // changes the first answer already holds are skipped by their sequence.
        let changes = self.projection.changes();
        let (first, seen) = self.projection.read_with(|projection| {
            let first = projection.ticket(id).map(|view| pb::WatchTicketResponse {
                ticket: Some(view_to_proto(view, &audience)),
                event: None,
                position: Some(self.position(projection, stream_last)),
            });
            (first, projection.last_sequence())
        });
        let first = first.ok_or_else(|| QueryError::NotFound(id.to_string()))?;
        let (live, lagging) = (self.projection.clone(), self.projection.clone());
        let updates = changes_after(
            changes,
            seen,
            move |change| {
                (change.view.id == id).then(|| pb::WatchTicketResponse {
                    ticket: Some(view_to_proto(&change.view, &audience)),
                    event: Some(entry_to_proto(
                        &change.entry,
                        &audience,
                        change.view.state.erased,
                    )),
                    position: Some(live_position(&live, stream_last)),
                })
            },
            // Fell behind: the ticket as it is now says everything that was missed.
            move |_| {
                lagging
                    .read_with(|projection| {
                        projection.ticket(id).map(|view| pb::WatchTicketResponse {
                            ticket: Some(view_to_proto(view, &audience)),
                            event: None,
                            position: Some(position_of(
                                projection,
                                lagging.is_replayed(),
                                stream_last,
                            )),
                        })
                    })
                    .ok_or_else(|| Status::not_found(format!("no ticket {id}")))
            },
        );
        let answers = stream::once(async move { Ok(first) }).chain(updates);
        // The watch lasts as long as the token that opened it.
        Ok(Response::new(helpline_auth::guard_stream(
            &self.key,
            claims,
            Box::pin(answers),
        )))
    }

    type WatchQueueStream = Watch<pb::WatchQueueResponse>;

    async fn watch_queue(
        &self,
        request: Request<pb::WatchQueueRequest>,
    ) -> Result<Response<Self::WatchQueueStream>, Status> {
        let (audience, claims) = self.watcher(&request)?;
        let queue = request.get_ref().queue.trim();
        if queue.is_empty() {
            return Err(QueryError::InvalidArgument {
                field: "queue",
                reason: "name a queue, e.g. de-laptops".to_owned(),
            }
            .into());
        }
        let queue = QueueId::new(queue);
        let stream_last = self
            .store
            .log_last_sequence()
            .await
            .map_err(QueryError::unavailable)?;
        let changes = self.projection.changes();
        let (first, seen) = self.projection.read_with(|projection| {
            let position = self.position(projection, stream_last);
            let first: Vec<Result<pb::WatchQueueResponse, Status>> = projection
                .in_queue(&queue)
                .into_iter()
                .map(|view| {
                    Ok(pb::WatchQueueResponse {
                        ticket: Some(view_to_proto(view, &audience)),
                        event: None,
                        in_queue: true,
                        position: Some(position),
                    })
                })
                .collect();
            (first, projection.last_sequence())
        });
        let live = self.projection.clone();
        let updates = changes_after(
            changes,
            seen,
            move |change| {
                let in_queue = waiting_in(&change.view.state) == Some(&queue);
                if !in_queue && change.was_in_queue.as_ref() != Some(&queue) {
                    return None;
                }
                Some(queue_answer(
                    change,
                    in_queue,
                    &audience,
                    &live,
                    stream_last,
                ))
            },
            |missed| Err(watch_again(missed)),
        );
        let answers = stream::iter(first).chain(updates);
        // The watch lasts as long as the token that opened it.
        Ok(Response::new(helpline_auth::guard_stream(
            &self.key,
            claims,
            Box::pin(answers),
        )))
    }

    type WatchTicketsStream = Watch<pb::WatchTicketsResponse>;

    async fn watch_tickets(
        &self,
        request: Request<pb::WatchTicketsRequest>,
    ) -> Result<Response<Self::WatchTicketsStream>, Status> {
        let (audience, claims) = self.watcher(&request)?;
        let stream_last = self
            .store
            .log_last_sequence()
            .await
            .map_err(QueryError::unavailable)?;
        let changes = self.projection.changes();
        let seen = self
            .projection
            .read_with(|projection| projection.last_sequence());
        let live = self.projection.clone();
        let updates = changes_after(
            changes,
            seen,
            move |change| {
                Some(pb::WatchTicketsResponse {
                    ticket: Some(view_to_proto(&change.view, &audience)),
                    event: Some(entry_to_proto(
                        &change.entry,
                        &audience,
                        change.view.state.erased,
                    )),
                    position: Some(live_position(&live, stream_last)),
                })
            },
            |missed| Err(watch_again(missed)),
        );
        Ok(Response::new(helpline_auth::guard_stream(
            &self.key,
            claims,
            Box::pin(updates),
        )))
    }
}

impl QueryApi {
    /// Where the projection stands; read after the stream's position, so an answer never
    /// shows the projection ahead of the log.
    fn position(&self, projection: &Projection, stream_last: u64) -> pb::ProjectionPosition {
        position_of(projection, self.projection.is_replayed(), stream_last)
    }
}

fn position_of(
    projection: &Projection,
    replayed: bool,
    stream_last: u64,
) -> pb::ProjectionPosition {
    let applied_sequence = projection.last_sequence();
    pb::ProjectionPosition {
        applied_sequence,
        stream_last_sequence: stream_last.max(applied_sequence),
        replayed,
    }
}

/// A watch's position: the stream's last sequence is the one read when the watch began
/// (asking the server on every change would cost a request per event).
fn live_position(live: &LiveProjection, stream_last: u64) -> pb::ProjectionPosition {
    live.read_with(|projection| position_of(projection, live.is_replayed(), stream_last))
}

/// The projection's changes after sequence `seen`, each made an answer by `answer` (or
/// skipped, `None`), until the projection stops. Missed changes cannot be told one by
/// one: a watch that falls behind gets what `lagged` says — an answer that makes up for
/// them (one ticket's current state; the watch goes on), or an error that ends it
/// (`ABORTED`: its caller watches again and reads afresh).
fn changes_after<T: Send + 'static>(
    changes: tokio::sync::broadcast::Receiver<Arc<Change>>,
    seen: u64,
    answer: impl Fn(&Change) -> Option<T> + Send + Sync + 'static,
    lagged: impl Fn(u64) -> Result<T, Status> + Send + Sync + 'static,
) -> impl Stream<Item = Result<T, Status>> + Send + 'static {
    let (answer, lagged) = (Arc::new(answer), Arc::new(lagged));
    stream::unfold(Some(changes), move |changes| {
        let (answer, lagged) = (answer.clone(), lagged.clone());
        async move {
            let mut changes = changes?;
            loop {
                match changes.recv().await {
                    Ok(change) if change.entry.sequence > seen => {
                        if let Some(answer) = answer(&change) {
                            return Some((Ok(answer), Some(changes)));
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        return match lagged(missed) {
                            Ok(answer) => Some((Ok(answer), Some(changes))),
                            Err(status) => Some((Err(status), None)),
                        };
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
}

/// What ends a watch of many tickets that fell behind: the client watches again and
/// gets the current state first.
fn watch_again(missed: u64) -> Status {
    Status::aborted(format!(
        "the watch fell {missed} changes behind; watch again"
    ))
}

fn queue_answer(
    change: &Change,
    in_queue: bool,
    audience: &Audience,
    live: &LiveProjection,
    stream_last: u64,
) -> pb::WatchQueueResponse {
    pb::WatchQueueResponse {
        ticket: Some(view_to_proto(&change.view, audience)),
        event: Some(entry_to_proto(
            &change.entry,
            audience,
            change.view.state.erased,
        )),
        in_queue,
        position: Some(live_position(live, stream_last)),
    }
}

fn ticket_id(value: &str) -> Result<TicketId, QueryError> {
    Uuid::parse_str(value.trim())
        .map(TicketId)
        .map_err(|e| QueryError::InvalidArgument {
            field: "ticket_id",
            reason: format!("{value:?} is not a UUID: {e}"),
        })
}

fn filter_from_proto(filter: pb::TicketFilter) -> Result<Filter, QueryError> {
    let text = |value: String| {
        let value = value.trim().to_owned();
        (!value.is_empty()).then_some(value)
    };
    let phase = match pb::TicketPhase::try_from(filter.phase) {
        Ok(pb::TicketPhase::Unspecified) => None,
        Ok(phase) => Some(phase_from_proto(phase)),
        Err(_) => {
            return Err(QueryError::InvalidArgument {
                field: "filter.phase",
                reason: format!("unknown phase {}", filter.phase),
            });
        }
    };
    let channel =
        channel_from_proto_value(filter.channel).map_err(|reason| QueryError::InvalidArgument {
            field: "filter.channel",
            reason,
        })?;
    Ok(Filter {
        phase,
        queue: text(filter.queue).map(QueueId::new),
        agent: text(filter.agent).map(AgentId::new),
        channel,
        region: text(filter.region),
        opened_from: moment(filter.opened_from, "filter.opened_from")?,
        opened_to: moment(filter.opened_to, "filter.opened_to")?,
        active_from: moment(filter.active_from, "filter.active_from")?,
        active_to: moment(filter.active_to, "filter.active_to")?,
        words: filter.text.split_whitespace().map(str::to_owned).collect(),
    })
}

fn moment(
    at: Option<prost_types::Timestamp>,
    field: &'static str,
) -> Result<Option<SystemTime>, QueryError> {
    at.map(|at| {
        SystemTime::try_from(at).map_err(|e| QueryError::InvalidArgument {
            field,
            reason: e.to_string(),
        })
    })
    .transpose()
}

fn phase_from_proto(phase: pb::TicketPhase) -> Phase {
    match phase {
        pb::TicketPhase::Unspecified => Phase::New,
        pb::TicketPhase::Open => Phase::Open,
        pb::TicketPhase::Routing => Phase::Routing,
        pb::TicketPhase::Queued => Phase::Queued,
        pb::TicketPhase::Assigned => Phase::Assigned,
        pb::TicketPhase::ReferredToStore => Phase::ReferredToStore,
        pb::TicketPhase::Resolved => Phase::Resolved,
        pb::TicketPhase::AwaitingRating => Phase::AwaitingRating,
        pb::TicketPhase::Closed => Phase::Closed,
        pb::TicketPhase::Abandoned => Phase::Abandoned,
    }
}

fn phase_to_proto(phase: Phase) -> pb::TicketPhase {
    match phase {
        Phase::New => pb::TicketPhase::Unspecified,
        Phase::Open => pb::TicketPhase::Open,
        Phase::Routing => pb::TicketPhase::Routing,
        Phase::Queued => pb::TicketPhase::Queued,
        Phase::Assigned => pb::TicketPhase::Assigned,
        Phase::ReferredToStore => pb::TicketPhase::ReferredToStore,
        Phase::Resolved => pb::TicketPhase::Resolved,
        Phase::AwaitingRating => pb::TicketPhase::AwaitingRating,
        Phase::Closed => pb::TicketPhase::Closed,
        Phase::Abandoned => pb::TicketPhase::Abandoned,
    }
}

fn view_to_proto(view: &TicketView, audience: &Audience) -> pb::TicketView {
    let ticket = &view.state;
    let erased = ticket.erased;
    let reveal = |value: &Personal<String>| audience.reveal(value, erased);
    pb::TicketView {
        ticket_id: view.id.to_string(),
        region: view.region.clone(),
        phase: phase_to_proto(ticket.phase).into(),
        holder: match ticket.holder {
            Holder::Bot => pb::TicketHolder::Bot,
            Holder::Agent => pb::TicketHolder::Agent,
        }
        .into(),
        customer: ticket.customer.as_ref().map(|customer| pb::Customer {
            channel: helpline_eventstore::codec::channel_to_proto(customer.channel).into(),
            contact: reveal(&customer.contact),
            display_name: customer
                .display_name
                .as_ref()
                .map(reveal)
                .unwrap_or_default(),
        }),
        language: ticket.language.clone(),
        details: ticket.details.as_ref().map(|details| pb::Details {
            product: details.product.clone(),
            serial_number: shown(&details.serial_number, audience, erased),
            problem: shown(&details.problem, audience, erased),
            serial_verified: details.serial_verified,
            location: shown(&details.location, audience, erased),
            category: details.category.clone(),
        }),
        queue: name(ticket.queue.as_ref()),
        agent: name(ticket.agent.as_ref()),
        accepted: ticket.accepted,
        store: name(ticket.store.as_ref()),
        resolved_by: name(ticket.resolved_by.as_ref()),
        rating: ticket.rating.as_ref().map(|rating| pb::TicketRating {
            score: u32::from(rating.score),
            comment: rating.comment.as_ref().map(reveal).unwrap_or_default(),
        }),
        counts: Some(pb::TicketCounts {
            events: ticket.events,
            customer_messages: ticket.customer_messages,
            outbound_messages: ticket.outbound_messages,
            deliveries: ticket.deliveries,
            delivery_failures: ticket.delivery_failures,
            reads: ticket.reads,
        }),
        opened_at: view.opened_at.map(prost_types::Timestamp::from),
        last_activity_at: Some(prost_types::Timestamp::from(view.last_activity_at)),
        last_sequence: view.last_sequence,
        erased,
    }
}

/// The name of an id, empty when there is none.
fn name(id: Option<&impl ToString>) -> String {
    id.map(ToString::to_string).unwrap_or_default()
}

/// An unknown (empty) personal field stays empty; a known one is shown as the reader may
/// see it.
fn shown(value: &Personal<String>, audience: &Audience, erased: bool) -> String {
    if !crate::summary::present(value) {
        String::new()
    } else {
        audience.reveal(value, erased)
    }
}

fn entry_to_proto(entry: &TimelineEntry, audience: &Audience, erased: bool) -> pb::TimelineEntry {
    pb::TimelineEntry {
        sequence: entry.sequence,
        occurred_at: Some(prost_types::Timestamp::from(entry.occurred_at)),
        event_type: entry.event.name().to_owned(),
        summary: summary::describe(&entry.event, audience, erased),
        event_id: entry.event_id.to_string(),
        command_id: entry.command_id.to_string(),
        causation_id: entry.causation_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use helpline_domain::{Channel, Customer, Event};
    use helpline_eventstore::StoredEvent;
    use tonic::Code;

    use super::*;

    /// The projection's changes as the live projection broadcasts them: ticket openings,
    /// one a second, each the next message of the log.
    struct Changes {
        projection: Projection,
        sequence: u64,
        sender: tokio::sync::broadcast::Sender<Arc<Change>>,
    }

    impl Changes {
        fn kept(kept: usize) -> (Self, tokio::sync::broadcast::Receiver<Arc<Change>>) {
            let (sender, receiver) = tokio::sync::broadcast::channel(kept);
            let changes = Self {
                projection: Projection::default(),
                sequence: 0,
                sender,
            };
            (changes, receiver)
        }

        /// A new ticket opened: its change is broadcast; returns the ticket and sequence.
        fn open(&mut self) -> (TicketId, u64) {
            self.sequence += 1;
            let ticket = TicketId(Uuid::now_v7());
            let opened = Event::TicketOpened {
                ticket,
                customer: Customer {
                    channel: Channel::WhatsApp,
                    contact: Personal::from("4915112345678"),
                    display_name: None,
                },
                language: "de".to_owned(),
            };
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_604_400 + self.sequence);
            let stored = StoredEvent::handwritten(ticket, self.sequence, at, opened);
            let change = self
                .projection
                .apply(&stored)
                .unwrap_or_else(|| panic!("an opening is a change"));
            self.sender
                .send(Arc::new(change))
                .unwrap_or_else(|_| panic!("nobody watches"));
            (ticket, self.sequence)
        }
    }

    /// Every answer of a watch, with each change answered by its sequence.
    async fn answers(
        receiver: tokio::sync::broadcast::Receiver<Arc<Change>>,
        seen: u64,
        lagged: impl Fn(u64) -> Result<u64, Status> + Send + Sync + 'static,
    ) -> Vec<Result<u64, Code>> {
        changes_after(receiver, seen, |change| Some(change.entry.sequence), lagged)
            .map(|answer| answer.map_err(|status| status.code()))
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_watch_answers_the_changes_after_its_start() {
        let (mut changes, receiver) = Changes::kept(16);
        let (_, before) = changes.open();
        changes.open();
        changes.open();
        drop(changes);
        let got = answers(receiver, before, |_| Ok(0)).await;
        assert_eq!(
            got,
            [Ok(2), Ok(3)],
            "the first answer already held the first"
        );
    }

    #[tokio::test]
    async fn a_watch_that_falls_behind_is_made_up_for_and_goes_on() {
        // One ticket's watch: its current state says everything that was missed.
        let (mut changes, receiver) = Changes::kept(2);
        for _ in 0..4 {
            changes.open();
        }
        drop(changes);
        let got = answers(receiver, 0, |missed| Ok(1000 + missed)).await;
        assert_eq!(got, [Ok(1002), Ok(3), Ok(4)]);
    }

    #[tokio::test]
    async fn a_watch_of_many_that_falls_behind_ends_so_its_caller_watches_again() {
        let (mut changes, receiver) = Changes::kept(2);
        for _ in 0..4 {
            changes.open();
        }
        let got = answers(receiver, 0, |missed| Err(watch_again(missed))).await;
        assert_eq!(
            got,
            [Err(Code::Aborted)],
            "ended, though more changes may come"
        );
        assert_eq!(changes.sender.receiver_count(), 0, "the watch let go");
    }
}
