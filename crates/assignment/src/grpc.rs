//! The `helpline.v1.AgentDesk` API. Every call is authenticated first (bearer JWT, the
//! agent must be in the region's directory), then checked for its role, then for its
//! arguments; ticket actions are decided by the ticket's rules on its current state and
//! appended at the loaded version.

use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::Stream;
use helpline_domain::link::LinkedBy;
use helpline_domain::{
    AgentId, Command, Media, MediaKind, MessageBody, MessageId, Personal, Phase, QueueId,
    ReleaseReason, Ticket, TicketId,
};
use helpline_eventstore::CustomerId;
use helpline_eventstore::codec;
use helpline_eventstore::links::LinkedContact;
use helpline_proto::v1 as pb;
use helpline_proto::v1::agent_desk_server::{AgentDesk, AgentDeskServer};
use helpline_region::{Agent, Role};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::{self, AuthKey};
use crate::error::AssignmentError;
use crate::ledger::{self, Presence};
use crate::service::{Assignment, Change};
use crate::view::{TicketEntry, holder};

/// The AgentDesk API over a running [`Assignment`]; tokens are checked with `key`.
pub fn grpc_service(assignment: Assignment, key: AuthKey) -> AgentDeskServer<impl AgentDesk> {
    AgentDeskServer::new(Desk { assignment, key })
}

#[derive(Debug)]
struct Desk {
    assignment: Assignment,
    key: AuthKey,
}

/// The authenticated caller.
struct Caller {
    agent: Agent,
    /// The lower of the token's role and the directory's.
    role: Role,
    /// What the caller's token says: when it ends.
    claims: auth::Claims,
}

impl Caller {
    fn id(&self) -> &AgentId {
        &self.agent.id
    }

    fn supervisor(&self) -> Result<(), AssignmentError> {
        if self.role >= Role::Supervisor {
            Ok(())
        } else {
            Err(AssignmentError::PermissionDenied(format!(
                "agent {} is not a supervisor",
                self.agent.id
            )))
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AgentDesk for Desk {
    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let caller = self.caller(&request)?;
        self.assignment
            .set_presence(caller.id(), Presence::Online)
            .await?;
        let agent = &caller.agent;
        Ok(Response::new(pb::SignInResponse {
            agent_id: agent.id.to_string(),
            name: agent.name.clone(),
            role: role_to_proto(caller.role).into(),
            languages: agent.languages.clone(),
            queues: agent.queues.iter().map(ToString::to_string).collect(),
            max_tickets: agent.max_tickets,
        }))
    }

    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        let caller = self.caller(&request)?;
        self.assignment
            .set_presence(caller.id(), Presence::Offline)
            .await?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn set_presence(
        &self,
        request: Request<pb::SetPresenceRequest>,
    ) -> Result<Response<pb::SetPresenceResponse>, Status> {
        let caller = self.caller(&request)?;
        let presence = ledger::presence_from_proto(request.get_ref().presence)
            .ok_or_else(|| AssignmentError::invalid("presence", "give ONLINE, AWAY or OFFLINE"))?;
        self.assignment.set_presence(caller.id(), presence).await?;
        Ok(Response::new(pb::SetPresenceResponse {}))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = self.caller(&request)?;
        let me = caller.id().clone();
        let assignment = self.assignment.clone();
        // Subscribed before the snapshot is taken, so nothing falls between the two.
        let mut changes = assignment.inner.changes.subscribe();
        let snapshot: Vec<pb::WatchResponse> = {
            let view = assignment.view();
            view.tickets_of(&me)
                .map(|(id, entry)| offer(&assignment, *id, entry))
                .collect()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let stopping = assignment.inner.stopping.clone();
        tokio::spawn(async move {
            for update in snapshot {
                if tx.send(Ok(update)).await.is_err() {
                    return;
                }
            }
            loop {
                let change = tokio::select! {
                    _ = stopping.cancelled() => return,
                    _ = tx.closed() => return,
                    change = changes.recv() => change,
                };
                let change = match change {
                    Ok(change) => change,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(agent = %me, missed, "agent stream fell behind");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let Change { change, envelope } = &*change;
                let mine = |holder: &Option<AgentId>| holder.as_ref() == Some(&me);
                if !mine(&change.agent_before) && !mine(&change.agent_after) {
                    continue;
                }
                let update = match (&change.event, mine(&change.agent_before)) {
                    (helpline_domain::Event::AgentAssigned { .. }, false) => {
                        let view = assignment.view();
                        match view.tickets.get(&change.ticket) {
                            Some(entry) => offer(&assignment, change.ticket, entry),
                            None => continue,
                        }
                    }
                    _ => pb::WatchResponse {
                        ticket_id: change.ticket.to_string(),
                        update: Some(pb::watch_response::Update::Event(envelope.clone())),
                    },
                };
                if tx.send(Ok(update)).await.is_err() {
                    return;
                }
            }
        });
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        // The agent's stream lasts as long as the token that opened it.
        Ok(Response::new(auth::guard_stream(
            &self.key,
            caller.claims,
            Box::pin(stream),
        )))
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Result<Response<pb::GetConversationResponse>, Status> {
        let caller = self.caller(&request)?;
        let ticket = ticket_id(&request.get_ref().ticket_id)?;
        self.may_read_history(&caller, ticket).await?;
        let events = self
            .assignment
            .inner
            .store
            .ticket_events(ticket)
            .await
            .map_err(AssignmentError::from)?
            .into_iter()
            .map(|(_, meta, event)| codec::to_api(&meta, &event))
            .collect();
        Ok(Response::new(pb::GetConversationResponse { events }))
    }

    async fn get_attachment(
        &self,
        request: Request<pb::GetAttachmentRequest>,
    ) -> Result<Response<pb::GetAttachmentResponse>, Status> {
        let caller = self.caller(&request)?;
        let ticket = ticket_id(&request.get_ref().ticket_id)?;
        let object = request.get_ref().object.as_str();
        self.may_read(&caller, ticket)?;
        let store = &self.assignment.inner.store;
        // Only an object the ticket's log names as its own, sealed under its customer's
        // key (named on the events that carry personal fields): never another ticket's by
        // a guessed name.
        let events = store
            .ticket_events(ticket)
            .await
            .map_err(AssignmentError::from)?;
        let customer = events.iter().find_map(|(_, meta, _)| meta.customer.clone());
        let mime_type = events.into_iter().find_map(|(_, _, event)| match event {
            helpline_domain::Event::AttachmentStored {
                object: stored,
                mime_type,
                ..
            } if !object.is_empty() && stored == object => Some(mime_type),
            _ => None,
        });
        let (Some(customer), Some(mime_type)) = (customer, mime_type) else {
            return Err(Status::not_found(format!(
                "ticket {ticket} has no attachment {object}"
            )));
        };
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(%ticket, error = %e, "an attachment could not be read");
            Status::unavailable("the attachment cannot be read right now; try again")
        };
        let bucket = store
            .jetstream()
            .get_object_store(store.layout().media_bucket())
            .await
            .map_err(|e| unavailable(&e))?;
        let mut sealed = Vec::new();
        let mut reading = bucket.get(object).await.map_err(|e| unavailable(&e))?;
        tokio::io::AsyncReadExt::read_to_end(&mut reading, &mut sealed)
            .await
            .map_err(|e| unavailable(&e))?;
        let data = store
            .open_attachment(&customer, object, &sealed)
            .await
            .map_err(AssignmentError::from)?
            .ok_or_else(|| Status::not_found("the customer was erased: the attachment is gone"))?;
        Ok(Response::new(pb::GetAttachmentResponse { data, mime_type }))
    }

    async fn accept(
        &self,
        request: Request<pb::AcceptRequest>,
    ) -> Result<Response<pb::AcceptResponse>, Status> {
        let caller = self.caller(&request)?;
        let ticket = ticket_id(&request.get_ref().ticket_id)?;
        let me = caller.id().clone();
        self.assignment
            .command(
                ticket,
                |t| yours(t, &me),
                |_| vec![Command::AcceptAssignment { agent: me.clone() }],
            )
            .await?;
        Ok(Response::new(pb::AcceptResponse {}))
    }

    async fn reply(
        &self,
        request: Request<pb::ReplyRequest>,
    ) -> Result<Response<pb::ReplyResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let ticket = ticket_id(&request.ticket_id)?;
        let me = caller.id().clone();
        let region = &self.assignment.inner.region;
        let shortcut = request.canned_reply.trim().to_owned();
        let canned = match shortcut.as_str() {
            "" => None,
            shortcut => Some(region.canned_reply(shortcut).cloned().ok_or_else(|| {
                AssignmentError::invalid(
                    "canned_reply",
                    format!("{shortcut:?} is not a canned reply of this region"),
                )
            })?),
        };
        // An empty body with a canned reply sends the canned reply as the ticket fills it.
        let body = match (
            &canned,
            request.body.as_ref().and_then(|b| b.content.as_ref()),
        ) {
            (Some(_), None) => None,
            _ => Some(body_from_proto(request.body)?),
        };
        // The client's id for this reply names the message and the command, so a retry
        // dedupes against a first try that was stored. Derived with the ticket and the
        // agent: the stream dedupes across all tickets, and one client's id must never
        // silence another reply.
        let request_id = match request.request_id.trim() {
            "" => None,
            id => {
                let id = Uuid::parse_str(id).map_err(|e| {
                    AssignmentError::invalid("request_id", format!("not a UUID: {e}"))
                })?;
                Some(Uuid::new_v5(
                    &ticket.0,
                    format!("reply:{}:{id}", me.as_str()).as_bytes(),
                ))
            }
        };
        let message = MessageId(request_id.unwrap_or_else(Uuid::now_v7));
        self.assignment
            .command_with_id(
                request_id,
                ticket,
                |t| yours(t, &me),
                |t| {
                    let body = match (&body, &canned) {
                        (Some(body), _) => body.clone(),
                        (None, Some(canned)) => MessageBody::Text(Personal::new(
                            canned_text(region, canned, t, &me).unwrap_or_default(),
                        )),
                        (None, None) => MessageBody::Text(Personal::new(String::new())),
                    };
                    let mut commands = vec![Command::SendAgentMessage {
                        agent: me.clone(),
                        message,
                        body,
                    }];
                    if let Some(canned) = &canned {
                        commands.push(Command::RecordCannedReply {
                            agent: me.clone(),
                            message,
                            shortcut: canned.shortcut.clone(),
                        });
                    }
                    commands
                },
            )
            .await?;
        Ok(Response::new(pb::ReplyResponse {
            message_id: message.to_string(),
        }))
    }

    async fn list_canned_replies(
        &self,
        request: Request<pb::ListCannedRepliesRequest>,
    ) -> Result<Response<pb::ListCannedRepliesResponse>, Status> {
        let caller = self.caller(&request)?;
        let ticket = ticket_id(&request.get_ref().ticket_id)?;
        self.may_read(&caller, ticket)?;
        let loaded = self
            .assignment
            .inner
            .store
            .load(ticket)
            .await
            .map_err(AssignmentError::from)?;
        let region = &self.assignment.inner.region;
        let query = &request.get_ref().query;
        let replies = region
            .canned_replies
            .iter()
            .filter(|canned| canned.matches(query))
            .filter_map(|canned| {
                let text = canned_text(region, canned, &loaded.ticket, caller.id())?;
                Some(pb::CannedReply {
                    shortcut: canned.shortcut.clone(),
                    title: canned.title.clone(),
                    text,
                })
            })
            .collect();
        Ok(Response::new(pb::ListCannedRepliesResponse { replies }))
    }

    async fn add_note(
        &self,
        request: Request<pb::AddNoteRequest>,
    ) -> Result<Response<pb::AddNoteResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let ticket = ticket_id(&request.ticket_id)?;
        if request.text.trim().is_empty() {
            return Err(AssignmentError::invalid("text", "a note needs text").into());
        }
        let me = caller.id().clone();
        self.assignment
            .command(
                ticket,
                |t| yours(t, &me),
                |_| {
                    vec![Command::AddAgentNote {
                        agent: me.clone(),
                        text: Personal::new(request.text.clone()),
                    }]
                },
            )
            .await?;
        Ok(Response::new(pb::AddNoteResponse {}))
    }

    async fn transfer(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> Result<Response<pb::TransferResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let ticket = ticket_id(&request.ticket_id)?;
        let me = caller.id().clone();
        // The note goes first, while the caller still holds the ticket, in the same append
        // as the move: the next holder never sees the ticket without it.
        let note: Vec<Command> = (!request.note.trim().is_empty())
            .then(|| Command::AddAgentNote {
                agent: me.clone(),
                text: Personal::new(request.note.clone()),
            })
            .into_iter()
            .collect();
        match request.target {
            Some(pb::transfer_request::Target::Queue(queue)) => {
                let queue = self.queue(&queue, "queue")?;
                self.assignment
                    .command(
                        ticket,
                        |t| yours(t, &me),
                        |_| {
                            let mut commands = note.clone();
                            commands.push(Command::TransferTicket {
                                agent: me.clone(),
                                queue: queue.clone(),
                            });
                            commands
                        },
                    )
                    .await?;
            }
            Some(pb::transfer_request::Target::AgentId(target)) => {
                let target = self.agent(&target, "agent_id")?;
                if target == me {
                    return Err(AssignmentError::invalid(
                        "agent_id",
                        "the ticket is yours already",
                    )
                    .into());
                }
                let commands = |t: &Ticket| {
                    let queue = t.queue.clone().unwrap_or_else(|| QueueId::new(""));
                    let mut commands = note.clone();
                    commands.extend([
                        Command::TransferTicket {
                            agent: me.clone(),
                            queue,
                        },
                        Command::AssignAgent {
                            agent: target.clone(),
                        },
                    ]);
                    commands
                };
                // The caller's hold on the ticket first: a transfer refused for it must
                // not claim, even for a moment, a slot the target needs for an offer.
                self.assignment
                    .precheck(ticket, |t| yours(t, &me), commands)
                    .await?;
                let claim = self.assignment.claim(&target, ticket).await?;
                let moved = self
                    .assignment
                    .command(ticket, |t| yours(t, &me), commands)
                    .await;
                if let Err(e) = moved {
                    self.assignment.unclaim(&target, ticket, claim).await;
                    return Err(e.into());
                }
            }
            None => {
                return Err(
                    AssignmentError::invalid("target", "give a queue or an agent_id").into(),
                );
            }
        }
        Ok(Response::new(pb::TransferResponse {}))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let caller = self.caller(&request)?;
        let ticket = ticket_id(&request.get_ref().ticket_id)?;
        let me = caller.id().clone();
        self.assignment
            .command(
                ticket,
                |t| yours(t, &me),
                |_| {
                    vec![Command::ReleaseTicket {
                        agent: me.clone(),
                        reason: ReleaseReason::ByAgent,
                    }]
                },
            )
            .await?;
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let ticket = ticket_id(&request.ticket_id)?;
        let me = caller.id().clone();
        self.assignment
            .command(
                ticket,
                |t| yours(t, &me),
                |_| {
                    vec![Command::ResolveTicket {
                        agent: me.clone(),
                        summary: request.summary.clone(),
                    }]
                },
            )
            .await?;
        Ok(Response::new(pb::ResolveResponse {}))
    }

    async fn list_queues(
        &self,
        request: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        self.caller(&request)?.supervisor()?;
        let region = &self.assignment.inner.region;
        let now = SystemTime::now();
        let view = self.assignment.view();
        let mut queues: Vec<pb::QueueStatus> = region
            .queues
            .iter()
            .map(|queue| {
                let of_queue = view
                    .tickets
                    .values()
                    .filter(|entry| entry.ticket.queue.as_ref() == Some(&queue.id));
                let waiting: Vec<&TicketEntry> = of_queue
                    .clone()
                    .filter(|entry| entry.ticket.phase == Phase::Queued)
                    .collect();
                let longest = waiting
                    .iter()
                    .filter_map(|entry| entry.queued.as_ref())
                    .filter_map(|mark| now.duration_since(mark.at).ok())
                    .max()
                    .unwrap_or_default();
                pb::QueueStatus {
                    queue: queue.id.to_string(),
                    name: queue.name.clone(),
                    priority: queue.priority,
                    languages: queue.languages.clone(),
                    waiting: count(waiting.len()),
                    longest_wait_secs: longest.as_secs(),
                    assigned: count(
                        of_queue
                            .filter(|e| e.ticket.phase == Phase::Assigned)
                            .count(),
                    ),
                    agents_online: count(
                        region
                            .agents
                            .iter()
                            .filter(|a| a.queues.contains(&queue.id))
                            .filter(|a| view.presence(&a.id) == Presence::Online)
                            .count(),
                    ),
                }
            })
            .collect();
        queues.sort_by_key(|q| std::cmp::Reverse(q.priority));
        Ok(Response::new(pb::ListQueuesResponse { queues }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        self.caller(&request)?.supervisor()?;
        let region = &self.assignment.inner.region;
        let view = self.assignment.view();
        let agents = region
            .agents
            .iter()
            .map(|agent| {
                let entry = view.agent(&agent.id);
                let tickets: Vec<String> = entry
                    .map(|e| e.claims.keys().map(ToString::to_string).collect())
                    .unwrap_or_default();
                pb::AgentStatus {
                    agent_id: agent.id.to_string(),
                    name: agent.name.clone(),
                    role: role_to_proto(agent.role).into(),
                    presence: ledger::presence_to_proto(view.presence(&agent.id)).into(),
                    load: count(tickets.len()),
                    max_tickets: agent.max_tickets,
                    ticket_ids: tickets,
                    languages: agent.languages.clone(),
                    queues: agent.queues.iter().map(ToString::to_string).collect(),
                }
            })
            .collect();
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    async fn reassign(
        &self,
        request: Request<pb::ReassignRequest>,
    ) -> Result<Response<pb::ReassignResponse>, Status> {
        self.caller(&request)?.supervisor()?;
        let request = request.into_inner();
        let ticket = ticket_id(&request.ticket_id)?;
        let target = self.agent(&request.agent_id, "agent_id")?;
        let commands = |t: &Ticket| {
            let mut commands = Vec::new();
            if let (Phase::Assigned, Some(current)) = (t.phase, &t.agent) {
                if current == &target {
                    return commands;
                }
                commands.push(Command::ReleaseTicket {
                    agent: current.clone(),
                    reason: ReleaseReason::Reassigned,
                });
            }
            commands.push(Command::AssignAgent {
                agent: target.clone(),
            });
            commands
        };
        // As for a transfer: a ticket that is gone or closed claims nothing.
        self.assignment
            .precheck(ticket, |_| Ok(()), commands)
            .await?;
        let claim = self.assignment.claim(&target, ticket).await?;
        let moved = self.assignment.command(ticket, |_| Ok(()), commands).await;
        if let Err(e) = moved {
            self.assignment.unclaim(&target, ticket, claim).await;
            return Err(e.into());
        }
        Ok(Response::new(pb::ReassignResponse {}))
    }

    async fn revoke_tokens(
        &self,
        request: Request<pb::RevokeTokensRequest>,
    ) -> Result<Response<pb::RevokeTokensResponse>, Status> {
        let caller = self.caller(&request)?;
        let agent = match request.get_ref().agent_id.as_str() {
            "" => caller.id().clone(),
            id => self.agent(id, "agent_id")?,
        };
        // An agent may end their own sessions; another agent's only an admin.
        if agent != *caller.id() && caller.role < Role::Admin {
            return Err(AssignmentError::PermissionDenied(format!(
                "agent {} is not an admin",
                caller.agent.id
            ))
            .into());
        }
        let until = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let store = &self.assignment.inner.store;
        let bucket = store
            .jetstream()
            .get_key_value(store.layout().revocations_bucket())
            .await
            .map_err(|e| AssignmentError::Unavailable(format!("revocations: {e}")))?;
        bucket
            .put(agent.as_str(), until.to_string().into())
            .await
            .map_err(|e| AssignmentError::Unavailable(format!("revocations: {e}")))?;
        // This process at once; the others as they follow the bucket.
        self.key.revoke(agent.as_str(), until);
        tracing::warn!(agent = %agent, by = %caller.agent.id, until, "agent's tokens revoked");
        Ok(Response::new(pb::RevokeTokensResponse {
            revoked_until: Some(prost_types::Timestamp {
                seconds: i64::try_from(until).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        }))
    }

    async fn link_contacts(
        &self,
        request: Request<pb::LinkContactsRequest>,
    ) -> Result<Response<pb::LinkContactsResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let contacts = self
            .change_link(&caller, &request.ticket_id, request.other, Link::Link)
            .await?;
        Ok(Response::new(pb::LinkContactsResponse { contacts }))
    }

    async fn unlink_contacts(
        &self,
        request: Request<pb::UnlinkContactsRequest>,
    ) -> Result<Response<pb::UnlinkContactsResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let contacts = self
            .change_link(&caller, &request.ticket_id, request.other, Link::Unlink)
            .await?;
        Ok(Response::new(pb::UnlinkContactsResponse { contacts }))
    }

    async fn list_linked_contacts(
        &self,
        request: Request<pb::ListLinkedContactsRequest>,
    ) -> Result<Response<pb::ListLinkedContactsResponse>, Status> {
        let caller = self.caller(&request)?;
        let ticket = ticket_id(&request.get_ref().ticket_id)?;
        self.may_read(&caller, ticket)?;
        let mine = self.contact_of(ticket, "ticket_id").await?;
        let contacts = self.contacts(&mine.customer).await?;
        Ok(Response::new(pb::ListLinkedContactsResponse { contacts }))
    }
}

/// What an agent asks of two contacts.
#[derive(Clone, Copy, Debug)]
enum Link {
    Link,
    Unlink,
}

impl Desk {
    /// Links or unlinks the customer of `ticket` (which the caller may read) and the
    /// `other` contact; the customer's contacts after it.
    async fn change_link(
        &self,
        caller: &Caller,
        ticket: &str,
        other: Option<pb::OtherContact>,
        link: Link,
    ) -> Result<Vec<pb::CustomerContact>, AssignmentError> {
        let ticket = ticket_id(ticket)?;
        self.may_read(caller, ticket)?;
        let mine = self.contact_of(ticket, "ticket_id").await?;
        let other = self.other_contact(other).await?;
        let by = LinkedBy::Agent(caller.id().clone());
        tracing::info!(agent = %caller.id(), %ticket, customer = %mine.customer, other = %other.customer, ?link, "contacts");
        let store = &self.assignment.inner.store;
        match link {
            Link::Link => store.link_contacts(&mine, &other, &by).await?,
            Link::Unlink => store.unlink_contacts(&mine, &other, &by).await?,
        };
        self.contacts(&mine.customer).await
    }

    /// The customer of `ticket` and their channel; a ticket that names nobody any more
    /// (erased) or never did cannot be linked.
    async fn contact_of(
        &self,
        ticket: TicketId,
        field: &'static str,
    ) -> Result<LinkedContact, AssignmentError> {
        let loaded = self.assignment.inner.store.load(ticket).await?;
        if loaded.ticket.phase == Phase::New {
            return Err(AssignmentError::TicketNotFound(ticket));
        }
        let channel = loaded.ticket.customer.as_ref().map(|c| c.channel);
        match (loaded.customer, channel) {
            (Some(customer), Some(channel)) if !loaded.ticket.erased => {
                Ok(LinkedContact { customer, channel })
            }
            _ => Err(AssignmentError::invalid(
                field,
                format!(
                    "ticket {ticket} names no customer (erased, or opened before customers were named)"
                ),
            )),
        }
    }

    /// The other contact a link request names.
    async fn other_contact(
        &self,
        other: Option<pb::OtherContact>,
    ) -> Result<LinkedContact, AssignmentError> {
        use pb::other_contact::Who as Other;
        let other = other.and_then(|o| o.who).ok_or_else(|| {
            AssignmentError::invalid("other", "give a ticket_id, a contact or a customer_id")
        })?;
        match other {
            Other::TicketId(id) => {
                let ticket = Uuid::parse_str(&id).map(TicketId).map_err(|e| {
                    AssignmentError::invalid("other.ticket_id", format!("not a UUID: {e}"))
                })?;
                self.contact_of(ticket, "other.ticket_id").await
            }
            Other::Contact(contact) => {
                let channel = codec::channel_from_proto_value(contact.channel)
                    .map_err(|reason| AssignmentError::invalid("other.contact.channel", reason))?
                    .ok_or_else(|| {
                        AssignmentError::invalid("other.contact.channel", "name the channel")
                    })?;
                // The pseudonym is of the stored form: any spelling must become it.
                let address = helpline_domain::contact::normalize(channel, &contact.address)
                    .map_err(|e| {
                        AssignmentError::invalid("other.contact.address", e.to_string())
                    })?;
                Ok(LinkedContact {
                    customer: self.assignment.inner.store.customer_id(channel, &address),
                    channel,
                })
            }
            Other::CustomerId(id) => {
                let customer = CustomerId::parse(&id).ok_or_else(|| {
                    AssignmentError::invalid(
                        "other.customer_id",
                        "not a customer id (32 hex digits)",
                    )
                })?;
                // Its channel, from its first ticket.
                let first = helpline_eventstore::chain::first_ticket(&customer);
                let loaded = self.assignment.inner.store.load(first).await?;
                let channel = loaded
                    .ticket
                    .customer
                    .as_ref()
                    .map(|c| c.channel)
                    .ok_or_else(|| {
                        AssignmentError::NotFound(format!("customer {customer} has no ticket"))
                    })?;
                Ok(LinkedContact { customer, channel })
            }
        }
    }

    /// The customer's contacts (their own first, then every linked one), each with its
    /// tickets.
    async fn contacts(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<pb::CustomerContact>, AssignmentError> {
        let store = &self.assignment.inner.store;
        let group = store.linked_group(customer).await?;
        let mut contacts = Vec::with_capacity(group.len());
        for (contact, channel) in group.members_with_channels() {
            let tickets = store.chain_of(contact).await?;
            let channel = match channel {
                Some(channel) => Some(*channel),
                None => match tickets.first() {
                    Some(first) => store.load(*first).await?.ticket.customer.map(|c| c.channel),
                    None => None,
                },
            };
            contacts.push(pb::CustomerContact {
                customer_id: contact.to_string(),
                channel: channel
                    .map(codec::channel_to_proto)
                    .unwrap_or(pb::Channel::Unspecified)
                    .into(),
                ticket_ids: tickets.iter().map(ToString::to_string).collect(),
            });
        }
        Ok(contacts)
    }

    /// Who is calling: a valid token of an agent in the directory.
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, AssignmentError> {
        let (agent, role, claims) =
            auth::caller_claims(&self.key, request, &self.assignment.inner.region)?;
        Ok(Caller {
            role,
            agent: agent.clone(),
            claims,
        })
    }

    /// Whether the caller may read the ticket: it is theirs (offered or accepted), or they
    /// supervise. Another agent is not told whether it exists.
    fn may_read(&self, caller: &Caller, ticket: TicketId) -> Result<(), AssignmentError> {
        let holds = self
            .assignment
            .view()
            .tickets
            .get(&ticket)
            .is_some_and(|entry| holder(&entry.ticket).as_ref() == Some(caller.id()));
        if holds {
            return Ok(());
        }
        caller
            .supervisor()
            .map_err(|_| AssignmentError::PermissionDenied(format!("ticket {ticket} is not yours")))
    }

    /// Whether the caller may read the ticket's conversation: as [`Desk::may_read`], or
    /// it is a ticket of the same customer as one they hold, on a contact linked to that
    /// one (the customer's history across channels).
    async fn may_read_history(
        &self,
        caller: &Caller,
        ticket: TicketId,
    ) -> Result<(), AssignmentError> {
        let refused = match self.may_read(caller, ticket) {
            Ok(()) => return Ok(()),
            Err(refused) => refused,
        };
        let held: Vec<TicketId> = self
            .assignment
            .view()
            .tickets
            .iter()
            .filter(|(_, entry)| holder(&entry.ticket).as_ref() == Some(caller.id()))
            .map(|(id, _)| *id)
            .collect();
        if held.is_empty() {
            return Err(refused);
        }
        let Ok(theirs) = self.contact_of(ticket, "ticket_id").await else {
            return Err(refused);
        };
        for mine in held {
            let Ok(mine) = self.contact_of(mine, "ticket_id").await else {
                continue;
            };
            let group = self
                .assignment
                .inner
                .store
                .linked_group(&mine.customer)
                .await?;
            if group.members().any(|contact| *contact == theirs.customer) {
                return Ok(());
            }
        }
        Err(refused)
    }

    fn queue(&self, id: &str, field: &'static str) -> Result<QueueId, AssignmentError> {
        let queue = QueueId::new(id);
        match self.assignment.inner.region.queue(&queue) {
            Some(_) => Ok(queue),
            None => Err(AssignmentError::invalid(
                field,
                format!("no queue {id:?} in the region"),
            )),
        }
    }

    fn agent(&self, id: &str, field: &'static str) -> Result<AgentId, AssignmentError> {
        let agent = AgentId::new(id);
        match self.assignment.inner.region.agent(&agent) {
            Some(_) => Ok(agent),
            None => Err(AssignmentError::invalid(
                field,
                format!("no agent {id:?} in the region"),
            )),
        }
    }
}

/// A ticket action is the holder's: anyone else's is refused before the rules are asked.
/// `canned` in the ticket's language (else the region's first), filled in: the
/// customer's name on the channel, the ticket's number (its id's first eight characters,
/// as the console shows it), the address of the store it was referred to, the agent's
/// name.
fn canned_text(
    region: &helpline_region::RegionConfig,
    canned: &helpline_region::canned::CannedReply,
    ticket: &Ticket,
    agent: &AgentId,
) -> Option<String> {
    let values = helpline_region::canned::CannedValues {
        customer_name: ticket
            .customer
            .as_ref()
            .and_then(|customer| customer.display_name.as_ref())
            .map(|name| name.expose().clone())
            .unwrap_or_default(),
        ticket_number: ticket
            .id
            .map(|id| id.to_string().chars().take(8).collect())
            .unwrap_or_default(),
        store_address: ticket
            .store
            .as_ref()
            .and_then(|store| region.store(store))
            .map(|store| store.address.clone())
            .unwrap_or_default(),
        agent_name: region
            .agent(agent)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| agent.to_string()),
    };
    canned.render(&ticket.language, region.locale.default_language(), &values)
}

fn yours(ticket: &Ticket, me: &AgentId) -> Result<(), AssignmentError> {
    match &ticket.agent {
        Some(agent) if agent != me => Err(AssignmentError::PermissionDenied(format!(
            "ticket {} is not yours",
            ticket.id.map(|id| id.to_string()).unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

fn ticket_id(value: &str) -> Result<TicketId, AssignmentError> {
    if value.is_empty() {
        return Err(AssignmentError::invalid("ticket_id", "missing"));
    }
    Uuid::parse_str(value)
        .map(TicketId)
        .map_err(|e| AssignmentError::invalid("ticket_id", format!("not a UUID: {e}")))
}

fn body_from_proto(body: Option<pb::MessageBody>) -> Result<MessageBody, AssignmentError> {
    use pb::message_body::Content;
    match body.and_then(|b| b.content) {
        Some(Content::Text(text)) if !text.trim().is_empty() => {
            Ok(MessageBody::Text(Personal::new(text)))
        }
        Some(Content::Text(_)) => Err(AssignmentError::invalid("body.text", "empty")),
        Some(Content::Media(media)) => {
            let kind = match pb::MediaKind::try_from(media.kind) {
                Ok(pb::MediaKind::Image) => MediaKind::Image,
                Ok(pb::MediaKind::Document) => MediaKind::Document,
                Ok(pb::MediaKind::Audio) => MediaKind::Audio,
                Ok(pb::MediaKind::Video) => MediaKind::Video,
                _ => return Err(AssignmentError::invalid("body.media.kind", "give the kind")),
            };
            if media.object.trim().is_empty() {
                return Err(AssignmentError::invalid(
                    "body.media.object",
                    "name the attachment in the media store",
                ));
            }
            Ok(MessageBody::Media(Media {
                kind,
                object: Personal::new(media.object),
                mime_type: media.mime_type,
                size_bytes: media.size_bytes,
                caption: Some(media.caption)
                    .filter(|c| !c.is_empty())
                    .map(Personal::new),
                // An agent names an object already in the media store: nothing to fetch.
                provider_media: Personal::default(),
            }))
        }
        Some(Content::Location(_)) => Err(AssignmentError::invalid(
            "body.location",
            "agents send text or attachments",
        )),
        None => Err(AssignmentError::invalid("body", "give text or media")),
    }
}

/// The offer (or accepted ticket) as the agent sees it.
fn offer(assignment: &Assignment, id: TicketId, entry: &TicketEntry) -> pb::WatchResponse {
    let ticket = &entry.ticket;
    let expires = entry
        .assigned
        .as_ref()
        .filter(|_| !ticket.accepted)
        .map(|mark| prost_types::Timestamp::from(mark.at + assignment.settings().offer_timeout));
    let details = ticket.details.as_ref().map(|d| pb::Details {
        product: d.product.clone(),
        serial_number: d.serial_number.shown().to_owned(),
        problem: d.problem.shown().to_owned(),
        serial_verified: d.serial_verified,
        location: d.location.shown().to_owned(),
        category: d.category.clone(),
    });
    pb::WatchResponse {
        ticket_id: id.to_string(),
        update: Some(pb::watch_response::Update::Ticket(pb::AgentTicket {
            ticket_id: id.to_string(),
            queue: ticket
                .queue
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            language: ticket.language.clone(),
            channel: ticket
                .customer
                .as_ref()
                .map_or(pb::Channel::Unspecified, |c| {
                    helpline_eventstore::codec::channel_to_proto(c.channel)
                })
                .into(),
            details,
            summary: entry.summary.clone(),
            accepted: ticket.accepted,
            offer_expires_at: expires,
            last_customer_message_at: entry
                .last_customer_message_at
                .map(prost_types::Timestamp::from),
        })),
    }
}

fn role_to_proto(role: Role) -> pb::AgentRole {
    match role {
        Role::Agent => pb::AgentRole::Agent,
        Role::Supervisor => pb::AgentRole::Supervisor,
        Role::Admin => pb::AgentRole::Admin,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
