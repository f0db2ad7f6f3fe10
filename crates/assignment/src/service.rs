//! The assignment service: follows the region's stream into the [`View`], and carries out
//! the [`plan`] whenever the view changes or a deadline may have passed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};
use tracing::Instrument as _;

use helpline_domain::{
    AgentId, Command, MessageBody, MessageId, Personal, Phase, Ticket, TicketId, decide_all,
};
use helpline_eventstore::{
    Cause, CommandMeta, Content, EventStore, ExecuteError, Follower, LogEntry, Reacted, StoreError,
    Subjects, codec, reaction_id,
};
use helpline_flows::Flows;
use helpline_proto::v1 as pb;
use helpline_region::RegionConfig;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::AssignmentError;
use crate::ledger::{self, AgentEvent, LedgerError, Presence};
use crate::plan::{Action, Timing, plan};
use crate::view::{Mark, TicketChange, View};

/// The service name of offers (reactions to `TicketQueued`).
pub const SERVICE: &str = "assignment";
/// The service name of releases (offer timeouts, agents gone).
const RELEASE_SERVICE: &str = "assignment-release";
/// The service name of the customer's place in the queue.
const POSITION_SERVICE: &str = "assignment-position";
/// The prompt of the bot message that tells a waiting customer their place.
pub const POSITION_PROMPT: &str = "queue_position";
/// Deadlines are checked at least this often.
const TICK: Duration = Duration::from_millis(200);
/// Updates kept for slow AgentDesk streams before they skip ahead.
const CHANGES: usize = 4096;
/// Tries of a command from the API that meets other writers.
const TRIES: u32 = 8;

/// The timing of offers and releases: `[assignment]` in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssignmentSettings {
    /// An offer not accepted within this goes to the next agent.
    pub offer_timeout: Duration,
    /// An agent offline this long loses their accepted tickets to the queue.
    pub release_grace: Duration,
}

impl Default for AssignmentSettings {
    fn default() -> Self {
        Self {
            offer_timeout: Duration::from_secs(60),
            release_grace: Duration::from_secs(300),
        }
    }
}

/// A ticket event applied to the view, for the AgentDesk streams.
#[derive(Clone, Debug)]
pub(crate) struct Change {
    pub(crate) change: TicketChange,
    /// The event as the AgentDesk shows it (personal fields opened), for the stream to
    /// pass on.
    pub(crate) envelope: pb::EventEnvelope,
}

/// The running service, shared by the assigner and the AgentDesk API.
#[derive(Clone)]
pub struct Assignment {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: EventStore,
    pub(crate) region: Arc<RegionConfig>,
    flows: Arc<Flows>,
    settings: AssignmentSettings,
    view: Mutex<View>,
    caught_up: AtomicBool,
    pub(crate) changes: broadcast::Sender<Arc<Change>>,
    changed: Notify,
    pub(crate) stopping: CancellationToken,
}

impl fmt::Debug for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assignment")
            .field("region", &self.inner.store.layout().region())
            .field("agents", &self.inner.region.agents.len())
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl Assignment {
    pub fn new(
        store: EventStore,
        region: Arc<RegionConfig>,
        flows: Arc<Flows>,
        settings: AssignmentSettings,
    ) -> Self {
        let (changes, _) = broadcast::channel(CHANGES);
        Self {
            inner: Arc::new(Inner {
                store,
                region,
                flows,
                settings,
                view: Mutex::new(View::default()),
                caught_up: AtomicBool::new(false),
                changes,
                changed: Notify::new(),
                stopping: CancellationToken::new(),
            }),
        }
    }

    /// Follows the log and assigns until `shutdown` fires.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), AssignmentError> {
        let follower = tokio::spawn({
            let this = self.clone();
            let shutdown = shutdown.clone();
            async move { this.follow(shutdown).await }
        });
        tracing::info!(
            service = SERVICE,
            agents = self.inner.region.agents.len(),
            "assignment running"
        );
        let mut told = HashSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inner.changed.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            if !self.inner.caught_up.load(Ordering::Acquire) {
                continue;
            }
            let actions = {
                let timing = Timing {
                    offer_timeout: self.inner.settings.offer_timeout,
                    release_grace: self.inner.settings.release_grace,
                };
                plan(&self.view(), &self.inner.region, timing, SystemTime::now())
            };
            self.execute(actions, &mut told).await;
        }
        self.inner.stopping.cancel();
        if let Err(e) = follower.await {
            tracing::error!(error = %e, "assignment follower failed");
        }
        tracing::info!(service = SERVICE, "assignment stopped");
        Ok(())
    }

    /// The view as it stands; held briefly, never across an await.
    pub(crate) fn view(&self) -> MutexGuard<'_, View> {
        self.inner
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the view has replayed the log up to its end once.
    pub fn caught_up(&self) -> bool {
        self.inner.caught_up.load(Ordering::Acquire)
    }

    async fn follow(&self, shutdown: CancellationToken) {
        let store = self.inner.store.clone();
        store
            .follow("assignment", Subjects::Everything, self, &shutdown)
            .await;
    }

    fn mark_caught_up(&self) {
        if !self.inner.caught_up.swap(true, Ordering::AcqRel) {
            tracing::info!(applied = self.view().applied, "assignment view replayed");
        }
        self.inner.changed.notify_one();
    }

    /// Applies one message: an agent's event, or a ticket's events.
    fn apply_entry(&self, entry: &LogEntry) {
        let (subject, sequence) = (entry.subject.as_str(), entry.sequence);
        let mut view = self.view();
        if sequence <= view.applied {
            return;
        }
        let events = match &entry.content {
            // Agent events only change the view; the streams follow tickets. The
            // customers' own ledgers (their consent) are nothing to assignment.
            Content::Other if !subject.contains(".agent.") => {
                view.applied = sequence;
                return;
            }
            Content::Other => {
                match ledger::decode(&entry.payload) {
                    Ok(record) => view.apply_agent(sequence, &record),
                    Err(e) => {
                        tracing::warn!(subject, sequence, error = %e, "agent event skipped");
                        view.applied = sequence;
                    }
                }
                return;
            }
            Content::Undecodable(_) => {
                tracing::warn!(subject, sequence, "ticket event skipped");
                view.applied = sequence;
                return;
            }
            Content::Ticket(events) => events,
        };
        let changes: Vec<Change> = events
            .iter()
            .map(|stored| Change {
                change: view.apply_ticket(sequence, &stored.meta, &stored.event, &stored.trace),
                envelope: codec::to_api(&stored.meta, &stored.event),
            })
            .collect();
        drop(view);
        for change in changes {
            // Nobody watching is fine: the streams subscribe when agents connect.
            let _ = self.inner.changes.send(Arc::new(change));
        }
    }

    async fn execute(&self, actions: Vec<Action>, told: &mut HashSet<String>) {
        // Sequences of this round's own appends per agent: the next claim on the same agent
        // expects the previous one, as no one else wrote in between (else it conflicts).
        let mut sequences: HashMap<AgentId, u64> = HashMap::new();
        let mut conflicted: HashSet<AgentId> = HashSet::new();
        for action in actions {
            let outcome = match action {
                Action::Offer {
                    ticket,
                    agent,
                    expected,
                    queued,
                } => {
                    if conflicted.contains(&agent) {
                        continue;
                    }
                    let expected = sequences.get(&agent).copied().unwrap_or(expected);
                    let claimed = ledger::append(
                        &self.inner.store,
                        &agent,
                        &AgentEvent::CapacityClaimed(ticket),
                        Some(expected),
                        &queued.event_id,
                    )
                    .await;
                    match claimed {
                        Ok(sequence) => {
                            sequences.insert(agent.clone(), sequence);
                            self.offer(ticket, &agent, &queued, sequence).await
                        }
                        Err(LedgerError::Conflict(_)) => {
                            conflicted.insert(agent);
                            Ok(())
                        }
                        Err(e) => Err(e.into()),
                    }
                }
                Action::Release {
                    ticket,
                    agent,
                    reason,
                    unaccepted_only,
                    cause,
                    after,
                    correlation_id,
                } => {
                    let cause = Cause {
                        ticket,
                        id: cause,
                        after_sequence: after,
                        correlation_id,
                    };
                    self.inner
                        .store
                        .react(RELEASE_SERVICE, &cause, |t| {
                            let holds = t.phase == Phase::Assigned && t.agent.as_ref() == Some(&agent);
                            if holds && !(unaccepted_only && t.accepted) {
                                vec![Command::ReleaseTicket {
                                    agent: agent.clone(),
                                    reason,
                                }]
                            } else {
                                vec![]
                            }
                        })
                        .await
                        .map(|reacted| {
                            if matches!(reacted, Reacted::Appended { .. }) {
                                tracing::info!(%ticket, %agent, ?reason, "ticket back to its queue");
                            }
                        })
                        .map_err(AssignmentError::from)
                }
                Action::Free {
                    agent,
                    ticket,
                    expected,
                } => {
                    if conflicted.contains(&agent) {
                        continue;
                    }
                    let expected = sequences.get(&agent).copied().unwrap_or(expected);
                    match ledger::append(
                        &self.inner.store,
                        &agent,
                        &AgentEvent::CapacityFreed(ticket),
                        Some(expected),
                        "assignment",
                    )
                    .await
                    {
                        Ok(sequence) => {
                            sequences.insert(agent, sequence);
                            Ok(())
                        }
                        Err(LedgerError::Conflict(_)) => {
                            conflicted.insert(agent);
                            Ok(())
                        }
                        Err(e) => Err(e.into()),
                    }
                }
                Action::TellPosition {
                    ticket,
                    position,
                    minutes,
                    queued,
                } => {
                    if !told.insert(queued.event_id.clone()) {
                        continue;
                    }
                    self.tell_position(ticket, position, minutes, &queued).await
                }
            };
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "assignment step failed; planned again");
            }
        }
    }

    /// Appends the offer after its claim; gives the claim back when the ticket went to
    /// someone else meanwhile.
    async fn offer(
        &self,
        ticket: TicketId,
        agent: &AgentId,
        queued: &Mark,
        claim: u64,
    ) -> Result<(), AssignmentError> {
        let store = &self.inner.store;
        let cause = Cause {
            ticket,
            id: queued.event_id.clone(),
            after_sequence: queued.sequence,
            correlation_id: queued.correlation_id.clone(),
        };
        // The offer belongs to the customer message's trace, as the queueing did.
        let span = tracing::info_span!("offer", %ticket, %agent);
        let parent = self
            .view()
            .tickets
            .get(&ticket)
            .map(|entry| entry.queued_trace.clone());
        if let Some(parent) = parent {
            helpline_telemetry::set_parent(&span, parent);
        }
        let reacted = store
            .react(SERVICE, &cause, |t| {
                if t.phase == Phase::Queued {
                    vec![Command::AssignAgent {
                        agent: agent.clone(),
                    }]
                } else {
                    vec![]
                }
            })
            .instrument(span)
            .await?;
        let ours = match reacted {
            Reacted::Appended { .. } => true,
            // Another assigner answered the same queueing, or the ticket moved on: it is
            // ours only if it went to the same agent.
            _ => {
                let loaded = store.load(ticket).await?;
                loaded.ticket.phase == Phase::Assigned
                    && loaded.ticket.agent.as_ref() == Some(agent)
            }
        };
        if ours {
            tracing::info!(%ticket, %agent, "ticket offered");
            return Ok(());
        }
        match ledger::append(
            store,
            agent,
            &AgentEvent::CapacityFreed(ticket),
            Some(claim),
            "assignment",
        )
        .await
        {
            // Someone wrote to the agent since: the stale claim is freed on a later round.
            Ok(_) | Err(LedgerError::Conflict(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn tell_position(
        &self,
        ticket: TicketId,
        position: usize,
        minutes: u32,
        queued: &Mark,
    ) -> Result<(), AssignmentError> {
        let cause = Cause {
            ticket,
            id: format!("position:{}", queued.event_id),
            after_sequence: queued.sequence,
            correlation_id: queued.correlation_id.clone(),
        };
        let message = MessageId(Uuid::new_v5(
            &reaction_id(POSITION_SERVICE, &cause),
            b"position",
        ));
        let (position_text, minutes) = (position.to_string(), minutes.to_string());
        let reacted = self
            .inner
            .store
            .react(POSITION_SERVICE, &cause, |t| {
                if t.phase != Phase::Queued {
                    return vec![];
                }
                let text = self.inner.flows.get(&t.language).text(
                    POSITION_PROMPT,
                    &[("position", &position_text), ("minutes", &minutes)],
                );
                vec![Command::SendBotMessage {
                    message,
                    body: MessageBody::Text(Personal::new(text)),
                    prompt: POSITION_PROMPT.to_owned(),
                    choices: vec![],
                }]
            })
            .await?;
        if matches!(reacted, Reacted::Appended { .. }) {
            tracing::info!(%ticket, position, "customer told their place in the queue");
        }
        Ok(())
    }

    /// Records the agent's presence.
    pub async fn set_presence(
        &self,
        agent: &AgentId,
        presence: Presence,
    ) -> Result<(), AssignmentError> {
        ledger::append(
            &self.inner.store,
            agent,
            &AgentEvent::PresenceChanged(presence),
            None,
            "agent-desk",
        )
        .await?;
        tracing::info!(%agent, ?presence, "agent presence");
        Ok(())
    }

    /// Claims a slot of `agent` for `ticket`, for a transfer or reassignment by hand.
    pub(crate) async fn claim(
        &self,
        agent: &AgentId,
        ticket: TicketId,
    ) -> Result<u64, AssignmentError> {
        let max = self
            .inner
            .region
            .agent(agent)
            .map_or(0, |a| usize::try_from(a.max_tickets).unwrap_or(usize::MAX));
        for _ in 0..TRIES {
            let (expected, presence, load, has) = {
                let view = self.view();
                match view.agent(agent) {
                    Some(entry) => (
                        entry.last_sequence,
                        entry.presence,
                        entry.claims.len(),
                        entry.claims.contains_key(&ticket),
                    ),
                    None => (0, Presence::Offline, 0, false),
                }
            };
            if presence != Presence::Online {
                return Err(AssignmentError::Refused(format!(
                    "agent {agent} is not online"
                )));
            }
            if has {
                return Ok(expected);
            }
            if load >= max {
                return Err(AssignmentError::Refused(format!(
                    "agent {agent} is at capacity ({load} of {max})"
                )));
            }
            match ledger::append(
                &self.inner.store,
                agent,
                &AgentEvent::CapacityClaimed(ticket),
                Some(expected),
                "agent-desk",
            )
            .await
            {
                Ok(sequence) => return Ok(sequence),
                // The view catches up with the newer event in a moment.
                Err(LedgerError::Conflict(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AssignmentError::Unavailable(format!(
            "agent {agent} keeps changing; try again"
        )))
    }

    /// Gives back a claim made by [`Assignment::claim`] when its command failed.
    pub(crate) async fn unclaim(&self, agent: &AgentId, ticket: TicketId, claim: u64) {
        let freed = ledger::append(
            &self.inner.store,
            agent,
            &AgentEvent::CapacityFreed(ticket),
            Some(claim),
            "agent-desk",
        )
        .await;
        if let Err(e) = freed {
            // A later round frees a claim whose ticket the agent does not hold.
            tracing::debug!(%agent, %ticket, error = %e, "claim left to the assigner");
        }
    }

    /// Asks, on the ticket as it is now, whether `check` and the ticket's rules would take
    /// `commands`, without appending anything. A move to another agent asks this before it
    /// claims that agent's capacity, so a move refused for the caller's rights or the
    /// ticket's state never touches the agent's ledger; [`Assignment::command`] asks again
    /// when it appends, as the ticket may change in between.
    pub(crate) async fn precheck<C, K>(
        &self,
        ticket: TicketId,
        check: K,
        commands: C,
    ) -> Result<(), AssignmentError>
    where
        K: Fn(&Ticket) -> Result<(), AssignmentError>,
        C: Fn(&Ticket) -> Vec<Command>,
    {
        let loaded = self.inner.store.load(ticket).await?;
        if loaded.ticket.id.is_none() {
            return Err(AssignmentError::TicketNotFound(ticket));
        }
        check(&loaded.ticket)?;
        decide_all(&loaded.ticket, commands(&loaded.ticket))?;
        Ok(())
    }

    /// Loads the ticket, lets `check` refuse, decides `commands` in order and appends
    /// their events at the loaded version; reloads and tries again when another writer
    /// came first. Returns the ticket as it is after the command.
    pub(crate) async fn command<C, K>(
        &self,
        ticket: TicketId,
        check: K,
        commands: C,
    ) -> Result<Ticket, AssignmentError>
    where
        K: Fn(&Ticket) -> Result<(), AssignmentError>,
        C: Fn(&Ticket) -> Vec<Command>,
    {
        self.command_with_id(None, ticket, check, commands).await
    }

    /// As [`Assignment::command`], with the command's id given by the caller when it has
    /// one (a client's request id): the same id again dedupes against a first try that
    /// was stored, within the stream's duplicate window.
    pub(crate) async fn command_with_id<C, K>(
        &self,
        command_id: Option<Uuid>,
        ticket: TicketId,
        check: K,
        commands: C,
    ) -> Result<Ticket, AssignmentError>
    where
        K: Fn(&Ticket) -> Result<(), AssignmentError>,
        C: Fn(&Ticket) -> Vec<Command>,
    {
        let meta = CommandMeta::new(command_id.unwrap_or_else(Uuid::now_v7), SystemTime::now());
        let executed = self
            .inner
            .store
            .execute(ticket, &meta, TRIES, |loaded| {
                if loaded.ticket.id.is_none() {
                    return Err(AssignmentError::TicketNotFound(ticket));
                }
                check(&loaded.ticket)?;
                Ok(commands(&loaded.ticket))
            })
            .await;
        match executed {
            Ok(executed) => Ok(executed.ticket),
            Err(ExecuteError::Refused(e)) => Err(e),
            Err(ExecuteError::Domain(e)) => Err(e.into()),
            Err(ExecuteError::Store(StoreError::Conflict { .. })) => Err(
                AssignmentError::Unavailable(format!("ticket {ticket} keeps changing; try again")),
            ),
            Err(ExecuteError::Store(e)) => Err(e.into()),
        }
    }

    pub(crate) fn settings(&self) -> AssignmentSettings {
        self.inner.settings
    }
}

impl Follower for Assignment {
    fn position(&self) -> u64 {
        self.view().applied
    }

    fn apply(&self, entry: LogEntry) {
        self.apply_entry(&entry);
        if self.caught_up() {
            self.inner.changed.notify_one();
        }
    }

    fn reached_end(&self) {
        self.mark_caught_up();
    }
}
