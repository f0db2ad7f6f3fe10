//! The load: simulated customers, each holding a conversation driven by what the bot asks
//! and what they received, an agent's client that takes the queued tickets, and webhook
//! redelivery storms. Every webhook is retried until it is answered 200, as providers do.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use helpline_domain::{
    AgentId, Channel, Command, Event, MessageBody, MessageId, Personal, Phase, Ticket, TicketId,
    decide,
};
use helpline_eventstore::{
    CommandMeta, Content, EventStore, Follower, LogEntry, StoreError, Subjects,
};
use helpline_testkit::Simulator;
use helpline_testkit::simulator::Webhook;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::history::WebhookKey;

/// How long a webhook is redelivered before the run gives up on it.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(90);
/// How long one conversation may take, faults included.
const CONVERSATION_DEADLINE: Duration = Duration::from_secs(150);
const POLL: Duration = Duration::from_millis(100);

/// What a customer talks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// A German customer whose MateBook needs an agent.
    QueueGerman,
    /// An English customer whose MateBook needs an agent.
    QueueEnglish,
    /// A broken display in Berlin: referred to the store, no agent.
    Store,
}

/// One simulated customer.
#[derive(Clone, Debug)]
pub struct Customer {
    pub name: String,
    pub channel: Channel,
    pub script: Script,
    /// Which ingress process (index into [`Load::ingress_urls`]) the provider posts this
    /// customer's webhooks to.
    pub ingress: usize,
    /// Copies of the first message posted at once (a redelivery storm); 1 for none.
    pub first_copies: usize,
    /// Copies of the second message posted at once.
    pub second_copies: usize,
    pub score: u8,
}

/// `count` customers spread over `channels` and the three scripts (every channel meets
/// every script), named apart per `suite` (a digit: no two suites share a customer), at
/// the ingress process `ingress(i)`, posting `copies(i)` of their first and second message.
pub fn customers(
    count: usize,
    suite: u32,
    channels: &[Channel],
    ingress: impl Fn(usize) -> usize,
    copies: impl Fn(usize) -> (usize, usize),
) -> Vec<Customer> {
    (0..count)
        .map(|i| {
            let channel = channels[i % channels.len()];
            let name = match channel {
                Channel::WhatsApp => format!("4915{suite}{:08}", 1000 + i),
                Channel::Telegram => format!("{}", u64::from(suite) * 100_000 + 80_000 + i as u64),
                Channel::Messenger => format!("psid-{suite}-{i}"),
                Channel::Viber => format!("viber-{suite}-{i}"),
                _ => format!("sess_{suite}_{i}"),
            };
            let script = match i % 3 {
                0 => Script::QueueGerman,
                1 => Script::Store,
                _ => Script::QueueEnglish,
            };
            let (first_copies, second_copies) = copies(i);
            Customer {
                name,
                channel,
                script,
                ingress: ingress(i),
                first_copies,
                second_copies,
                score: u8::try_from(1 + (i * 3) % 5).unwrap_or(5),
            }
        })
        .collect()
}

/// How the run went, for the report.
#[derive(Debug, Default)]
pub struct Stats {
    pub webhook_posts: AtomicUsize,
    /// When each webhook was answered 200, in order.
    pub answered_at: Mutex<Vec<std::time::Instant>>,
    pub storms: AtomicUsize,
    pub agent_messages: AtomicUsize,
}

/// Tickets by customer, kept by following the log: `(channel, contact)` → tickets.
#[derive(Debug, Default)]
pub struct Index {
    tickets: Mutex<HashMap<(&'static str, String), Vec<TicketId>>>,
    position: AtomicU64,
}

impl Index {
    pub fn tickets_of(&self, channel: Channel, contact: &str) -> Vec<TicketId> {
        self.tickets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(channel.as_str(), contact.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Follows every ticket event from the log's start until `stop`, with the store's one
    /// log follower (which reads again after a lost connection or a stalled reader: the
    /// nats-server restarts).
    pub async fn follow(self: Arc<Self>, store: EventStore, stop: CancellationToken) {
        store
            .follow("fault-suite index", Subjects::Tickets, &*self, &stop)
            .await;
    }
}

impl Follower for Index {
    fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    fn apply(&self, entry: LogEntry) {
        if entry.sequence <= self.position() {
            return;
        }
        if let Content::Ticket(events) = &entry.content {
            for stored in events {
                let Event::TicketOpened { customer, .. } = &stored.event else {
                    continue;
                };
                self.tickets
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry((
                        customer.channel.as_str(),
                        customer.contact.clone().into_inner(),
                    ))
                    .or_default()
                    .push(stored.meta.ticket);
            }
        }
        self.position.store(entry.sequence, Ordering::Release);
    }

    fn reached_end(&self) {}
}

/// Who takes the queued tickets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agents {
    /// The load itself, appending the agent's commands to the log (no assignment process).
    Direct,
    /// Agents at the AgentDesk API (`faults/desk.rs`), offered tickets by the assignment
    /// process: the customer only waits.
    Desk,
}

/// What the customers share: the simulator, helpline's webhook URLs (one per ingress
/// process), the store (as an agent's client would use it), the ticket index, and the
/// record of answered webhooks.
pub struct Load {
    /// Who plays the agents.
    pub agents: Agents,
    pub sim: Arc<Simulator>,
    pub ingress_urls: Vec<String>,
    pub store: EventStore,
    pub index: Arc<Index>,
    pub accepted: Mutex<BTreeSet<WebhookKey>>,
    pub stats: Stats,
}

/// The customers' conversations under way.
pub struct Conversations(Vec<tokio::task::JoinHandle<Result<Finished, String>>>);

impl Conversations {
    /// Waits for every conversation: those that finished, and why the others did not.
    pub async fn end(self) -> (Vec<Finished>, Vec<String>) {
        let mut finished = Vec::new();
        let mut failures = Vec::new();
        for conversation in self.0 {
            match conversation.await {
                Ok(Ok(done)) => finished.push(done),
                Ok(Err(problem)) => failures.push(problem),
                Err(e) => failures.push(format!("a customer's task failed: {e}")),
            }
        }
        (finished, failures)
    }
}

/// A customer's finished conversation.
#[derive(Clone, Debug)]
pub struct Finished {
    pub customer: Customer,
    pub address: String,
    pub ticket: TicketId,
    /// What the customer wrote and had answered 200, in order: the provider's message id
    /// and the text.
    pub said: Vec<(String, String)>,
}

impl Load {
    /// A load on `store`, its ticket index following the log until `stop`.
    pub fn start(
        agents: Agents,
        sim: Arc<Simulator>,
        ingress_urls: Vec<String>,
        store: &EventStore,
        stop: &CancellationToken,
    ) -> Arc<Load> {
        let index = Arc::new(Index::default());
        tokio::spawn(index.clone().follow(store.clone(), stop.clone()));
        Arc::new(Load {
            agents,
            sim,
            ingress_urls,
            store: store.clone(),
            index,
            accepted: Default::default(),
            stats: Default::default(),
        })
    }

    /// Every customer's conversation on a task of its own, the `i`-th starting `i ×
    /// arrival` from now.
    pub fn converse_all(
        self: &Arc<Self>,
        customers: Vec<Customer>,
        arrival: Duration,
    ) -> Conversations {
        Conversations(
            customers
                .into_iter()
                .enumerate()
                .map(|(i, customer)| {
                    let load = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(arrival * u32::try_from(i).unwrap_or(u32::MAX)).await;
                        load.converse(customer).await
                    })
                })
                .collect(),
        )
    }

    /// Posts `copies` of the webhook at once to the customer's ingress and then, as a
    /// provider would, redelivers it until one answer is 200. Records the webhook as
    /// answered.
    pub async fn post(
        &self,
        customer: &Customer,
        webhook: &Webhook,
        copies: usize,
    ) -> Result<(), String> {
        if copies > 1 {
            self.stats.storms.fetch_add(1, Ordering::Relaxed);
        }
        let url = &self.ingress_urls[customer.ingress % self.ingress_urls.len()];
        let answers =
            futures::future::join_all((0..copies).map(|_| self.post_once(url, webhook))).await;
        let mut ok = answers.contains(&Some(200));
        let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
        let mut last = answers.last().copied().flatten();
        let mut pause = Duration::from_millis(100);
        while !ok {
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "{} webhook {} of {} never answered 200 in {DELIVERY_DEADLINE:?}; last answer {last:?}",
                    webhook.channel.as_str(),
                    webhook.provider_message_id,
                    webhook.customer
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            last = self.post_once(url, webhook).await;
            ok = last == Some(200);
        }
        self.stats
            .answered_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(std::time::Instant::now());
        self.accepted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((
                webhook.channel.as_str(),
                webhook.provider_message_id.clone(),
            ));
        Ok(())
    }

    /// One POST; None when nothing answered (ingress down or cut off mid-request).
    async fn post_once(&self, url: &str, webhook: &Webhook) -> Option<u16> {
        self.stats.webhook_posts.fetch_add(1, Ordering::Relaxed);
        self.sim
            .deliver(url, webhook)
            .await
            .ok()
            .map(|response| response.status)
    }

    /// Loads a ticket, riding out store outages (the nats-server restart).
    async fn load(&self, ticket: TicketId) -> Result<Ticket, String> {
        let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
        loop {
            match self.store.load(ticket).await {
                Ok(loaded) => return Ok(loaded.ticket),
                Err(e) if tokio::time::Instant::now() > deadline => {
                    return Err(format!("ticket {}: cannot load: {e}", ticket.0));
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Holds one customer's conversation to its end (the ticket closed after the rating).
    pub async fn converse(&self, customer: Customer) -> Result<Finished, String> {
        let texts = Texts::of(customer.script);
        let address = self.sim.customer_address(customer.channel, &customer.name);
        let first = self
            .sim
            .webhook(customer.channel, &customer.name, texts.first);
        self.post(&customer, &first, customer.first_copies).await?;
        let mut said = vec![(first.provider_message_id.clone(), texts.first.to_owned())];
        let ticket = self.ticket_of(&customer, &address).await?;
        let who = format!(
            "customer {} ({}, ticket {})",
            customer.name,
            customer.channel.as_str(),
            ticket.0
        );
        let deadline = tokio::time::Instant::now() + CONVERSATION_DEADLINE;
        // The state the customer last answered (phase and messages sent to them): they
        // answer each new question once.
        let mut answered: Option<(Phase, u32)> = None;
        let mut messages_sent = 1;
        loop {
            let state = self.load(ticket).await?;
            if state.phase == Phase::Closed {
                return Ok(Finished {
                    customer,
                    address,
                    ticket,
                    said,
                });
            }
            let received = self.sim.received(customer.channel, &customer.name).len();
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "{who}: stuck in {} after prompt {:?} (prompts {:?}); {} messages sent to the customer, {} delivered, {} failed, {received} received",
                    state.phase,
                    state.last_prompt,
                    state.prompts,
                    state.outbound_messages,
                    state.deliveries,
                    state.delivery_failures
                ));
            }
            // A customer answers what they have read: every message sent so far has its
            // outcome and has arrived.
            let settled = state.outbound_messages == state.deliveries + state.delivery_failures
                && received >= state.deliveries as usize;
            let signature = (state.phase, state.outbound_messages);
            if !settled || answered == Some(signature) {
                tokio::time::sleep(POLL).await;
                continue;
            }
            let reply = match state.phase {
                Phase::Open => texts.answer(&state.last_prompt),
                Phase::AwaitingRating => Some(customer.score.to_string()),
                Phase::Queued
                    if self.agents == Agents::Direct
                        && matches!(state.last_prompt.as_str(), "wait" | "out_of_hours") =>
                {
                    self.agent_resolves(ticket).await?;
                    answered = Some(signature);
                    continue;
                }
                _ => None,
            };
            let Some(reply) = reply else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            answered = Some(signature);
            // A moment to read and type, different per customer.
            let think = 50 + (customer.name.len() as u64 * 37 + messages_sent * 53) % 200;
            tokio::time::sleep(Duration::from_millis(think)).await;
            let webhook = self.sim.webhook(customer.channel, &customer.name, &reply);
            let copies = if messages_sent == 1 {
                customer.second_copies
            } else {
                1
            };
            self.post(&customer, &webhook, copies).await?;
            said.push((webhook.provider_message_id.clone(), reply));
            messages_sent += 1;
        }
    }

    async fn ticket_of(&self, customer: &Customer, address: &str) -> Result<TicketId, String> {
        let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
        loop {
            if let Some(ticket) = self.index.tickets_of(customer.channel, address).first() {
                return Ok(*ticket);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "customer {} ({}): their first message was answered 200 but no ticket opened",
                    customer.name,
                    customer.channel.as_str()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// What an agent's client does with a queued ticket: take it, accept it, write to the
    /// customer, resolve it.
    async fn agent_resolves(&self, ticket: TicketId) -> Result<(), String> {
        let agent = AgentId::new("alex");
        self.agent_command(
            ticket,
            |t| t.phase != Phase::Queued,
            || Command::AssignAgent {
                agent: agent.clone(),
            },
        )
        .await?;
        self.agent_command(
            ticket,
            |t| t.accepted,
            || Command::AcceptAssignment {
                agent: agent.clone(),
            },
        )
        .await?;
        let message = MessageId(Uuid::now_v7());
        self.agent_command(
            ticket,
            |_| false,
            || Command::SendAgentMessage {
                agent: agent.clone(),
                message,
                body: MessageBody::Text(Personal::new(
                    "Ich habe Ihr Konto entsperrt, bitte melden Sie sich neu an.".to_owned(),
                )),
            },
        )
        .await?;
        self.stats.agent_messages.fetch_add(1, Ordering::Relaxed);
        self.agent_command(
            ticket,
            |t| t.phase != Phase::Assigned,
            || Command::ResolveTicket {
                agent: agent.clone(),
                summary: "account unlocked".to_owned(),
            },
        )
        .await
    }

    /// Decides and appends one command, unless `done` says it already took effect;
    /// retried with the same command id, so a retry after a lost answer dedupes.
    async fn agent_command(
        &self,
        ticket: TicketId,
        done: impl Fn(&Ticket) -> bool,
        command: impl Fn() -> Command,
    ) -> Result<(), String> {
        let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
        let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
        loop {
            let loaded = match self.store.load(ticket).await {
                Ok(loaded) => loaded,
                Err(e) => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(format!("ticket {}: agent cannot load: {e}", ticket.0));
                    }
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            if done(&loaded.ticket) {
                return Ok(());
            }
            let events = decide(&loaded.ticket, command())
                .map_err(|e| format!("ticket {}: the agent's command refused: {e}", ticket.0))?;
            match self
                .store
                .append(ticket, loaded.version, &events, &meta)
                .await
            {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) if tokio::time::Instant::now() > deadline => {
                    return Err(format!("ticket {}: agent cannot append: {e}", ticket.0));
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
}

/// What a customer of a script says.
struct Texts {
    first: &'static str,
    product: &'static str,
    serial: &'static str,
    problem: &'static str,
    location: &'static str,
    language: &'static str,
}

impl Texts {
    fn of(script: Script) -> Texts {
        match script {
            Script::QueueGerman => Texts {
                first: "Hallo, ich brauche Hilfe mit meinem MateBook X Pro",
                product: "MateBook X Pro",
                serial: "2NS7N19B12345678",
                problem: "Ich kann mich seit dem Update nicht mehr anmelden",
                location: "10115 Berlin",
                language: "Deutsch",
            },
            Script::QueueEnglish => Texts {
                first: "Hi, I need help with my MateBook X Pro please",
                product: "MateBook X Pro",
                serial: "4HX2K19C87654321",
                problem: "I cannot log in since the update",
                location: "10115 Berlin",
                language: "English",
            },
            Script::Store => Texts {
                first: "Hallo",
                product: "MateBook, Display defekt, 10115 Berlin",
                serial: "2NS7N19B12345678",
                problem: "Display defekt",
                location: "10115 Berlin",
                language: "Deutsch",
            },
        }
    }

    /// The answer to the bot's latest question; None when it asked nothing to answer.
    fn answer(&self, prompt: &str) -> Option<String> {
        let text = match prompt {
            "greeting" | "ask_product" => self.product,
            "ask_serial" | "serial_invalid" => self.serial,
            "ask_problem" => self.problem,
            "ask_location" => self.location,
            "ask_language" => self.language,
            _ => return None,
        };
        Some(text.to_owned())
    }
}
