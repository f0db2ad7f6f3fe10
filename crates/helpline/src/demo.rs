//! `helpline demo`: one scripted conversation end to end, then its timeline.
//!
//! Starts its own nats-server (temporary store, free port), every service and the channel
//! simulator, like `helpline dev` but on free ports so it runs beside one. A customer
//! writes on WhatsApp (through the simulator, with signed webhooks); the bot greets, takes
//! the serial number and the problem and hands over; agent Anna signs in to the
//! AgentDesk API, accepts the offer, replies and resolves; the customer rates. The
//! transcript and the ticket's timeline are printed as they are read from the log.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use helpline_domain::{Channel, Event, MessageBody, Phase, TicketId};
use helpline_eventstore::EventStore;
use helpline_testkit::{NatsServer, Simulator, free_port};

use crate::all::{self, Services};
use crate::chat;
use crate::config::Config;
use crate::desk::AgentDesk;

const CUSTOMER: &str = "4915112345678";
const AGENT: &str = "anna";
/// How long any one step may take before the demo gives up and says which.
const STEP: Duration = Duration::from_secs(30);

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    let nats = NatsServer::start()
        .await
        .context("cannot start nats-server")?;
    let sim = Arc::new(
        Simulator::start(Default::default())
            .await
            .context("cannot start the channel simulator")?,
    );
    config.nats.url = nats.url();
    config.channels =
        chat::simulated_channels(&sim).context("simulator channels do not fit the config")?;
    let loopback = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    config.ingress.listen = loopback(free_port()?);
    config.ops.listen = loopback(free_port()?);
    config.grpc.listen = loopback(free_port()?);
    let ingress = format!("http://{}", config.ingress.listen);
    let grpc = format!("http://{}", config.grpc.listen);
    let key = config.auth.key()?;
    let token = helpline_assignment::auth::issue(
        &key,
        AGENT,
        helpline_region::Role::Agent,
        Duration::from_secs(3600),
        SystemTime::now(),
    )
    .context("cannot sign the agent's token")?;
    let store_config = config.store()?;

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let services = tokio::spawn(all::run_until_stopped(
        config,
        Services::ALL,
        Some(ready_tx),
    ));
    if ready_rx.await.is_err() {
        return match services.await {
            Ok(Err(e)) => Err(e.context("the services did not start")),
            _ => bail!("the services did not start"),
        };
    }
    let store = EventStore::open(nats.connect().await?, store_config).await?;
    let demo = Demo {
        store,
        sim,
        ingress,
        started: Instant::now(),
    };
    let result = demo.play(&grpc, &token).await;
    services.abort();
    result
}

struct Demo {
    store: EventStore,
    sim: Arc<Simulator>,
    ingress: String,
    started: Instant,
}

impl Demo {
    async fn play(&self, grpc: &str, token: &str) -> anyhow::Result<()> {
        println!("helpline demo: one conversation on WhatsApp, through every service\n");
        let mut desk = AgentDesk::connect(grpc, token).await?;
        let signed_in = desk.sign_in().await?;
        self.note(&format!(
            "agent {} ({}) signed in to the AgentDesk",
            signed_in.name, signed_in.agent_id
        ));
        let mut watch = desk.watch().await?;

        self.customer_says("Hallo, ich brauche Hilfe mit meinem MateBook X Pro")
            .await?;
        let ticket = self.ticket().await?;
        self.bot_asked(ticket, "ask_serial").await?;
        self.customer_says("2NS7N19B12345678").await?;
        self.bot_asked(ticket, "ask_problem").await?;
        self.customer_says("Ich kann mich seit dem Update nicht mehr anmelden")
            .await?;
        self.phase(ticket, Phase::Assigned).await?;

        let offered = watch.offer(ticket).await?;
        self.note(&format!(
            "offer to {AGENT}: queue {}, summary {:?}",
            offered.queue, offered.summary
        ));
        desk.accept(ticket).await?;
        self.note(&format!("{AGENT} accepted"));
        desk.reply(
            ticket,
            "Guten Tag, hier ist Anna. Ich habe Ihr Konto zurückgesetzt – bitte melden Sie sich erneut an.",
        )
        .await?;
        self.customer_got("hier ist Anna").await?;
        let answer = "Danke, jetzt klappt es wieder!";
        self.customer_says(answer).await?;
        watch.customer_message(ticket, answer).await?;
        self.note(&format!("{AGENT} sees the customer's answer on her stream"));
        desk.resolve(ticket, "Konto nach Update zurückgesetzt")
            .await?;
        self.note(&format!("{AGENT} resolved the ticket"));
        self.bot_asked(ticket, "rating").await?;
        self.customer_says("5 super, danke!").await?;
        self.phase(ticket, Phase::Closed).await?;
        // Thanks for the rating, delivered.
        self.bot_asked(ticket, "rating_thanks").await?;

        println!("\nthe conversation, as the customer saw it:\n");
        for received in self.sim.received(Channel::WhatsApp, CUSTOMER) {
            let text = received.text.unwrap_or_default();
            println!(
                "  helpline → customer: {}",
                text.replace('\n', "\n                       ")
            );
        }
        println!("\nthe ticket's timeline ({ticket}), from the log:\n");
        for line in self.timeline(ticket).await? {
            println!("  {line}");
        }
        Ok(())
    }

    fn note(&self, what: &str) {
        println!("[{:>6.2}s] {what}", self.started.elapsed().as_secs_f64());
    }

    async fn customer_says(&self, text: &str) -> anyhow::Result<()> {
        self.note(&format!("customer → helpline: {text}"));
        let webhook = self.sim.webhook(Channel::WhatsApp, CUSTOMER, text);
        let answer = self.sim.deliver(&self.ingress, &webhook).await?;
        if answer.status != 200 {
            bail!(
                "the webhook was answered {}: {}",
                answer.status,
                answer.body
            );
        }
        Ok(())
    }

    /// The customer's ticket, once ingress opened it.
    async fn ticket(&self) -> anyhow::Result<TicketId> {
        let deadline = Instant::now() + STEP;
        loop {
            for (ticket, event) in self.events().await? {
                if let Event::TicketOpened { customer, .. } = event
                    && customer.contact.expose() == CUSTOMER
                {
                    return Ok(ticket);
                }
            }
            if Instant::now() > deadline {
                bail!("no ticket was opened for the customer");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the bot sent `prompt` and the customer received everything sent.
    async fn bot_asked(&self, ticket: TicketId, prompt: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + STEP;
        loop {
            let loaded = self.store.load(ticket).await?;
            let sent = loaded.ticket.outbound_messages as usize;
            if loaded.ticket.prompted(prompt) > 0 && self.received() >= sent {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the bot never sent {prompt:?} (last: {:?})",
                    loaded.ticket.last_prompt
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a message holding `part` reached the customer.
    async fn customer_got(&self, part: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + STEP;
        loop {
            let got = self
                .sim
                .received(Channel::WhatsApp, CUSTOMER)
                .iter()
                .any(|received| received.text.as_deref().is_some_and(|t| t.contains(part)));
            if got {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no message with {part:?} reached the customer");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn received(&self) -> usize {
        self.sim.received(Channel::WhatsApp, CUSTOMER).len()
    }

    async fn phase(&self, ticket: TicketId, phase: Phase) -> anyhow::Result<()> {
        let deadline = Instant::now() + STEP;
        loop {
            let loaded = self.store.load(ticket).await?;
            if loaded.ticket.phase == phase {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the ticket stayed {} instead of {phase}",
                    loaded.ticket.phase
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every event of the region's stream, in order.
    async fn events(&self) -> anyhow::Result<Vec<(TicketId, Event)>> {
        Ok(self
            .timeline_entries()
            .await?
            .into_iter()
            .map(|(_, ticket, event)| (ticket, event))
            .collect())
    }

    async fn timeline_entries(&self) -> anyhow::Result<Vec<(SystemTime, TicketId, Event)>> {
        let mut stream = self
            .store
            .jetstream()
            .get_stream(self.store.layout().event_stream())
            .await?;
        let last = stream.info().await?.state.last_sequence;
        let mut events = Vec::new();
        for sequence in 1..=last {
            let Ok(message) = stream.direct_get(sequence).await else {
                continue;
            };
            if let Ok(decoded) = self.store.decode(&message.payload).await {
                for (meta, event) in decoded {
                    events.push((meta.occurred_at, meta.ticket, event));
                }
            }
        }
        Ok(events)
    }

    async fn timeline(&self, ticket: TicketId) -> anyhow::Result<Vec<String>> {
        let entries: Vec<(SystemTime, Event)> = self
            .timeline_entries()
            .await?
            .into_iter()
            .filter(|(_, t, _)| *t == ticket)
            .map(|(at, _, event)| (at, event))
            .collect();
        let first = entries
            .first()
            .map_or(SystemTime::UNIX_EPOCH, |(at, _)| *at);
        Ok(entries
            .iter()
            .map(|(at, event)| {
                let offset = at.duration_since(first).unwrap_or_default();
                format!(
                    "+{:>6.3}s  {:<24} {}",
                    offset.as_secs_f64(),
                    event.name(),
                    describe(event)
                )
            })
            .collect())
    }
}

/// One line about an event, for people.
fn describe(event: &Event) -> String {
    let text = |body: &MessageBody| match body {
        MessageBody::Text(text) => format!("{:?}", text.expose()),
        MessageBody::Media(media) => format!("[{:?} attachment]", media.kind),
        MessageBody::Location(_) => "[location]".to_owned(),
    };
    match event {
        Event::TicketOpened {
            customer, language, ..
        } => format!("on {}, in {language}", customer.channel.as_str()),
        Event::CustomerMessageReceived { body, .. } => text(body),
        Event::BotMessageSent { body, prompt, .. } => format!("{prompt}: {}", text(body)),
        Event::AgentMessageSent { agent, body, .. } => format!("{agent}: {}", text(body)),
        Event::DetailsCaptured(details) => format!(
            "product {:?}, serial {:?} ({}), problem {:?}",
            details.product,
            details.serial_number.expose(),
            if details.serial_verified {
                "verified"
            } else {
                "unverified"
            },
            details.problem.expose()
        ),
        Event::HandoffRequested { reason, .. } => format!("{reason:?}"),
        Event::TicketRouted { rule, destination } => format!("rule {rule} → {destination:?}"),
        Event::TicketQueued { queue } => format!("queue {queue}"),
        Event::AgentAssigned { agent } | Event::AgentAccepted { agent } => agent.to_string(),
        Event::TicketResolved { agent, summary } => format!("{agent}: {summary:?}"),
        Event::RatingReceived { score, comment } => format!(
            "{score}/5{}",
            comment
                .as_ref()
                .map(|c| format!(", {:?}", c.expose()))
                .unwrap_or_default()
        ),
        Event::TicketClosed { reason } => format!("{reason:?}"),
        Event::MessageDelivered {
            provider_message_id,
            ..
        } => format!("provider id {}", provider_message_id.shown()),
        _ => String::new(),
    }
}
