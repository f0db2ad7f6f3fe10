//! One running helpline ingress per test: nats-server, event store, simulator, routes.

use std::sync::Arc;
use std::time::SystemTime;

use helpline_domain::{Channel, Event, TicketId};
use helpline_eventstore::{CommandMeta, EventStore, StoreConfig};
use helpline_ingress::channels::{
    messenger::MessengerConfig, telegram::TelegramConfig, viber::ViberConfig, web::WebConfig,
    whatsapp::WhatsAppConfig,
};
use helpline_ingress::{ChannelsConfig, Ingress, IngressConfig};
use helpline_testkit::NatsServer;
use helpline_testkit::simulator::{Simulator, SimulatorConfig};
use uuid::Uuid;

pub const CHANNELS: [Channel; 5] = [
    Channel::WhatsApp,
    Channel::Messenger,
    Channel::Telegram,
    Channel::Viber,
    Channel::WebChat,
];

/// A customer address that fits the channel (Telegram chat ids are numbers).
pub fn customer_id(channel: Channel, n: u32) -> String {
    match channel {
        Channel::WhatsApp => format!("4915{:09}", n),
        Channel::Telegram => format!("{}", 700_000 + n),
        Channel::Viber => format!("viber{n:06}A="),
        Channel::WebChat => format!("sess_{n:08}"),
        _ => format!("{}", 25_000_000_000_000u64 + u64::from(n)),
    }
}

pub struct Harness {
    /// Kept for the test's lifetime: dropping it stops the server.
    _server: NatsServer,
    pub store: EventStore,
    pub sim: Arc<Simulator>,
    pub url: String,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(IngressConfig::default()).await
    }

    pub async fn start_with(config: IngressConfig) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let server = NatsServer::start().await.unwrap();
        let store = EventStore::ensure(server.connect().await.unwrap(), StoreConfig::new("de"))
            .await
            .unwrap();
        let sim = Arc::new(Simulator::start(SimulatorConfig::default()).await.unwrap());
        let channels = channels_for(&sim);
        let ingress = Ingress::new(store.clone(), &config, &channels)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = ingress.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            _server: server,
            store,
            sim,
            url,
        }
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
            let (meta, event) = helpline_eventstore::codec::decode(&message.payload).unwrap();
            events.push((meta.ticket, event));
        }
        events
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

pub fn channels_for(sim: &Simulator) -> ChannelsConfig {
    let c = sim.config();
    ChannelsConfig {
        whatsapp: Some(WhatsAppConfig {
            app_secret: c.whatsapp.app_secret.as_str().into(),
            verify_token: c.whatsapp.verify_token.as_str().into(),
            access_token: c.whatsapp.access_token.as_str().into(),
            phone_number_id: c.whatsapp.phone_number_id.clone(),
            api_base_url: sim.api_base_url(Channel::WhatsApp),
        }),
        messenger: Some(MessengerConfig {
            app_secret: c.messenger.app_secret.as_str().into(),
            verify_token: c.messenger.verify_token.as_str().into(),
            page_access_token: c.messenger.page_access_token.as_str().into(),
            api_base_url: sim.api_base_url(Channel::Messenger),
        }),
        telegram: Some(TelegramConfig {
            secret_token: c.telegram.secret_token.as_str().into(),
            bot_token: c.telegram.bot_token.as_str().into(),
            api_base_url: sim.api_base_url(Channel::Telegram),
        }),
        viber: Some(ViberConfig {
            auth_token: c.viber.auth_token.as_str().into(),
            api_base_url: sim.api_base_url(Channel::Viber),
        }),
        web: Some(WebConfig {
            shared_secret: c.web.shared_secret.as_str().into(),
            callback_url: sim.api_base_url(Channel::WebChat),
        }),
    }
}
