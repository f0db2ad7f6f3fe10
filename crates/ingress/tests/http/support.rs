//! One running helpline ingress per test: nats-server, event store, simulator, routes;
//! and egress, for the tests that need a message sent first.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use helpline_domain::{
    Channel, Customer, Event, Media, MessageBody, MessageId, Personal, QuickReply, TicketId,
};
use helpline_egress::{self as egress, EgressConfig, EgressError};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig, StoreError};
use helpline_ingress::media_policy::MediaHostsConfig;
use helpline_ingress::{ChannelsConfig, Ingress, IngressConfig};
use helpline_testkit::NatsServer;
use helpline_testkit::simulator::{MediaRef, Simulator, SimulatorConfig, Webhook};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use uuid::Uuid;

/// How often the tests' media consumer tries a failing attachment.
pub const MEDIA_ATTEMPTS: u32 = 4;

pub const CHANNELS: [Channel; 6] = [
    Channel::WhatsApp,
    Channel::Messenger,
    Channel::Telegram,
    Channel::Viber,
    Channel::WebChat,
    Channel::AppleMessages,
];

/// A customer address that fits the channel (Telegram chat ids are numbers).
pub fn customer_id(channel: Channel, n: u32) -> String {
    match channel {
        Channel::WhatsApp => format!("4915{:09}", n),
        Channel::Telegram => format!("{}", 700_000 + n),
        Channel::Viber => format!("viber{n:06}A="),
        Channel::WebChat => format!("sess_{n:08}"),
        Channel::AppleMessages => format!("urn:mbid:AQAAY{n:08}"),
        _ => format!("{}", 25_000_000_000_000u64 + u64::from(n)),
    }
}

pub struct Harness {
    /// Kept for the test's lifetime: dropping it stops the server.
    _server: NatsServer,
    /// Stops the media consumer when the test ends.
    _media: Option<DropGuard>,
    pub store: EventStore,
    pub sim: Arc<Simulator>,
    pub url: String,
}

impl Harness {
    /// The routes and the media consumer, which tries a failing attachment
    /// [`MEDIA_ATTEMPTS`] times.
    pub async fn start() -> Self {
        Self::start_with(IngressConfig {
            media_fetch_attempts: MEDIA_ATTEMPTS,
            ..IngressConfig::default()
        })
        .await
    }

    /// The routes and the media consumer as `config` says, except that the consumer's
    /// retries start at 50 ms.
    pub async fn start_with(config: IngressConfig) -> Self {
        let mut h = Self::routes_only(&config).await;
        h._media = Some(h.start_media(&config));
        h
    }

    /// The media consumer as `config` says (retries from 50 ms), until the guard drops.
    /// Left at their defaults (the providers' real hosts), the media hosts are the
    /// simulator's origin, which serves every provider's media.
    pub fn start_media(&self, config: &IngressConfig) -> DropGuard {
        let mut config = IngressConfig {
            media_retry_backoff_ms: 50,
            ..config.clone()
        };
        if config.media_hosts == MediaHostsConfig::default() {
            config.media_hosts = MediaHostsConfig::everywhere(&[self.sim.base_url()]);
        }
        let stop = CancellationToken::new();
        tokio::spawn(helpline_ingress::media::run(
            self.store.clone(),
            config.media(&channels_for(&self.sim)).unwrap(),
            stop.clone(),
        ));
        stop.drop_guard()
    }

    /// The webhook routes alone: nothing fetches attachments.
    pub async fn routes_only(config: &IngressConfig) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = NatsServer::start().await.unwrap();
        let store = EventStore::ensure(server.connect().await.unwrap(), StoreConfig::new("de"))
            .await
            .unwrap();
        let sim = Arc::new(Simulator::start(SimulatorConfig::default()).await.unwrap());
        let channels = channels_for(&sim);
        let url = serve_ingress(&store, config, &channels).await;
        Self {
            _server: server,
            _media: None,
            store,
            sim,
            url,
        }
    }

    /// Another ingress process on the same log, with a memory of its own: its base URL.
    pub async fn another_ingress(&self) -> String {
        serve_ingress(
            &self.store,
            &IngressConfig::default(),
            &channels_for(&self.sim),
        )
        .await
    }

    /// Every ticket event in the stream, in order.
    pub async fn events(&self) -> Vec<(TicketId, Event)> {
        let mut stream = self
            .store
            .jetstream()
            .get_stream("HELPLINE_DE")
            .await
            .unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        let mut events = Vec::new();
        for seq in 1..=last {
            let Ok(message) = stream.direct_get(seq).await else {
                continue;
            };
            // The customers' own ledgers (their consent) hold no ticket events.
            if !message.subject.contains(".ticket.") {
                continue;
            }
            for (meta, event) in self.store.decode(&message.payload).await.unwrap() {
                events.push((meta.ticket, event));
            }
        }
        events
    }

    /// The events of one ticket, in order.
    pub async fn ticket_events(&self, ticket: TicketId) -> Vec<Event> {
        self.events()
            .await
            .into_iter()
            .filter(|(t, _)| *t == ticket)
            .map(|(_, event)| event)
            .collect()
    }

    /// Runs egress against the simulator until [`RunningEgress::stop`].
    pub fn start_egress(&self) -> RunningEgress {
        self.start_egress_with(EgressConfig::default())
    }

    /// [`Harness::start_egress`] with `config`'s templates.
    pub fn start_egress_with(&self, config: EgressConfig) -> RunningEgress {
        let config = EgressConfig {
            channels: channels_for(&self.sim),
            request_timeout: Duration::from_secs(2),
            jitter_seed: Some(1),
            ..config
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(egress::run(self.store.clone(), config, shutdown.clone()));
        RunningEgress { shutdown, task }
    }

    /// The customer writes (opening a ticket), the bot answers, egress sends the answer:
    /// the ticket, helpline's id of the answer and the provider's.
    pub async fn reply_delivered(
        &self,
        channel: Channel,
        customer: &str,
    ) -> (TicketId, MessageId, String) {
        let webhook = self
            .sim
            .webhook(channel, customer, "Mein Laptop startet nicht");
        let response = self.sim.deliver(&self.url, &webhook).await.unwrap();
        assert_eq!(response.status, 200, "{channel:?}: {}", response.body);
        let ticket = self.ticket_of(channel, customer).await;
        let (message, provider_message_id) = self
            .bot_says(ticket, "Wir kümmern uns", "test", Vec::new())
            .await;
        (ticket, message, provider_message_id)
    }

    /// The ticket that a customer's message on `channel` opened.
    pub async fn ticket_of(&self, channel: Channel, customer: &str) -> TicketId {
        self.events()
            .await
            .into_iter()
            .find_map(|(ticket, event)| match event {
                Event::TicketOpened { customer: c, .. }
                    if c.channel == channel && c.contact.expose() == customer =>
                {
                    Some(ticket)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{channel:?}: no ticket opened"))
    }

    /// Opens a ticket whose customer last wrote at `wrote_at`, by appending the events
    /// (a webhook would make the message's time now).
    pub async fn open_at(
        &self,
        channel: Channel,
        customer: &str,
        wrote_at: SystemTime,
    ) -> TicketId {
        let ticket = TicketId(Uuid::now_v7());
        let opened = Event::TicketOpened {
            ticket,
            customer: Customer {
                channel,
                contact: Personal::new(customer.to_owned()),
                display_name: None,
            },
            language: "de".to_owned(),
        };
        self.append_at(ticket, opened, wrote_at).await;
        let wrote = Event::CustomerMessageReceived {
            message: MessageId(Uuid::now_v7()),
            provider_message_id: format!("in-{}", Uuid::now_v7().simple()).into(),
            body: MessageBody::Text(Personal::new("Mein Laptop startet nicht".to_owned())),
        };
        self.append_at(ticket, wrote, wrote_at).await;
        ticket
    }

    /// The bot says `text` at its step `prompt` with `choices`; waits until egress has
    /// sent it: helpline's id of the message and the provider's.
    pub async fn bot_says(
        &self,
        ticket: TicketId,
        text: &str,
        prompt: &str,
        choices: Vec<QuickReply>,
    ) -> (MessageId, String) {
        let message = MessageId(Uuid::now_v7());
        let answer = Event::BotMessageSent {
            message,
            body: MessageBody::Text(Personal::new(text.to_owned())),
            prompt: prompt.to_owned(),
            choices,
        };
        self.append(ticket, answer).await;
        for _ in 0..600 {
            let delivered = self
                .ticket_events(ticket)
                .await
                .into_iter()
                .find_map(|event| match event {
                    Event::MessageDelivered {
                        message: m,
                        provider_message_id,
                    } if m == message => Some(provider_message_id.expose().clone()),
                    _ => None,
                });
            if let Some(provider_message_id) = delivered {
                return (message, provider_message_id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let events = self.ticket_events(ticket).await;
        panic!("egress did not record the answer as delivered: {events:?}");
    }

    /// Appends one event as its own command, reloading when someone appended in between.
    pub async fn append(&self, ticket: TicketId, event: Event) {
        self.append_at(ticket, event, SystemTime::now()).await;
    }

    /// [`Harness::append`] with the event's `occurred_at` set to `at`.
    pub async fn append_at(&self, ticket: TicketId, event: Event, at: SystemTime) {
        let meta = CommandMeta::new(Uuid::now_v7(), at);
        loop {
            let version = self.store.load(ticket).await.unwrap().version;
            match self
                .store
                .append(ticket, version, std::slice::from_ref(&event), &meta)
                .await
            {
                Ok(_) => return,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => panic!("append failed: {e}"),
            }
        }
    }

    /// The customer message whose attachment `media` is, and the outcome recorded for
    /// it, waiting (generously) for the outcome.
    pub async fn attachment_outcome(&self, media: &MediaRef) -> (MessageId, Media, Event) {
        for _ in 0..1200 {
            let events = self.events().await;
            let received = events.iter().find_map(|(_, event)| match event {
                Event::CustomerMessageReceived {
                    message,
                    body: MessageBody::Media(m),
                    ..
                } if refers_to(m, media) => Some((*message, m.clone())),
                _ => None,
            });
            if let Some((message, m)) = received {
                let outcome = events.into_iter().find_map(|(_, event)| match &event {
                    Event::AttachmentStored { message: of, .. }
                    | Event::AttachmentNotFetched { message: of, .. }
                        if *of == message =>
                    {
                        Some(event)
                    }
                    _ => None,
                });
                if let Some(outcome) = outcome {
                    return (message, m, outcome);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no outcome recorded for the attachment: {:?}",
            self.events().await
        );
    }

    /// Closes a ticket the way the conversation would, through the domain.
    pub async fn close(&self, ticket: TicketId) {
        let loaded = self.store.load(ticket).await.unwrap();
        let events = vec![Event::TicketAbandoned];
        let meta = CommandMeta::new(Uuid::now_v7(), SystemTime::now());
        self.store
            .append(ticket, loaded.version, &events, &meta)
            .await
            .unwrap();
    }
}

/// A running egress; stopped (and checked) with [`RunningEgress::stop`].
pub struct RunningEgress {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), EgressError>>,
}

impl RunningEgress {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("egress task")
            .expect("egress ends cleanly");
    }
}

/// The message names `media` as the provider gave it: its WhatsApp media id or Telegram
/// `file_id` (which starts with the id), or its URL.
pub fn refers_to(message: &Media, media: &MediaRef) -> bool {
    let reference = message.provider_media.expose();
    let apple_mmcs =
        helpline_channels::apple::AttachmentRef::decode(reference).is_some_and(|apple| {
            apple
                .url
                .ends_with(&format!("/apple/mmcs-ref/{}", media.id))
        });
    *reference == media.url
        || *reference == media.id
        || reference.starts_with(&format!("{}-", media.id))
        || apple_mmcs
}

pub fn hmac_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A WhatsApp `failed` status for the message of `receipt` (a simulator's WhatsApp
/// receipt), with Meta's error `code` and `title`, signed again with the app secret: the
/// simulator builds only delivered and read receipts.
pub fn whatsapp_failed(sim: &Simulator, receipt: &Webhook, code: i64, title: &str) -> Webhook {
    let mut body: serde_json::Value = serde_json::from_slice(&receipt.body).unwrap();
    let status = &mut body["entry"][0]["changes"][0]["value"]["statuses"][0];
    assert!(status.is_object(), "not a whatsapp receipt: {body}");
    status["status"] = "failed".into();
    status["errors"] = serde_json::json!([{
        "code": code,
        "title": title,
        "message": title,
        "error_data": { "details": "Message failed to send." },
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }]);
    let body = serde_json::to_vec(&body).unwrap();
    let signature = format!(
        "sha256={}",
        hmac_hex(&sim.config().whatsapp.app_secret, &body)
    );
    let mut failed = receipt.clone();
    for (name, value) in &mut failed.headers {
        if name.eq_ignore_ascii_case("x-hub-signature-256") {
            *value = signature.clone();
        }
    }
    failed.body = body;
    failed
}

pub fn channels_for(sim: &Simulator) -> ChannelsConfig {
    serde_json::from_value(sim.helpline_channels()).unwrap()
}

/// Serves the webhook routes of an ingress over `store` on a free local port: its base URL.
async fn serve_ingress(
    store: &EventStore,
    config: &IngressConfig,
    channels: &ChannelsConfig,
) -> String {
    let ingress = Ingress::new(store.clone(), config, channels).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = ingress.router();
    let door = config.door();
    tokio::spawn(helpline_ingress::front_door::serve(
        listener,
        router,
        door,
        CancellationToken::new(),
    ));
    url
}

/// The URL and authentication headers a provider would send with `body`.
pub fn signed(h: &Harness, channel: Channel, body: &[u8]) -> (String, Vec<(String, String)>) {
    let c = h.sim.config();
    // Apple's token covers no body: the one on any of its webhooks, with the business.
    if channel == Channel::AppleMessages {
        let any = h.sim.webhook(channel, "urn:mbid:any", "");
        let headers = any
            .headers
            .into_iter()
            .filter(|(name, _)| matches!(name.as_str(), "authorization" | "destination-id"))
            .collect();
        return (format!("{}/webhooks/apple", h.url), headers);
    }
    let (path, auth) = match channel {
        Channel::WhatsApp => (
            "whatsapp",
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hmac_hex(&c.whatsapp.app_secret, body)),
            ),
        ),
        Channel::Messenger => (
            "messenger",
            (
                "X-Hub-Signature-256",
                format!("sha256={}", hmac_hex(&c.messenger.app_secret, body)),
            ),
        ),
        Channel::Telegram => (
            "telegram",
            (
                "X-Telegram-Bot-Api-Secret-Token",
                c.telegram.secret_token.clone(),
            ),
        ),
        Channel::Viber => (
            "viber",
            (
                "X-Viber-Content-Signature",
                hmac_hex(&c.viber.auth_token, body),
            ),
        ),
        _ => (
            "web",
            (
                "X-Helpline-Signature",
                format!("sha256={}", hmac_hex(&c.web.shared_secret, body)),
            ),
        ),
    };
    (
        format!("{}/webhooks/{path}", h.url),
        vec![(auth.0.to_owned(), auth.1)],
    )
}

pub async fn post(h: &Harness, channel: Channel, body: Vec<u8>, content_type: &str) -> u16 {
    let (url, headers) = signed(h, channel, &body);
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Content-Type", content_type)
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status().as_u16()
}
