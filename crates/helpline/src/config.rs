//! The one typed configuration: defaults, then a TOML file, then `HELPLINE_…` environment
//! variables, then command-line flags. Validated once at start and passed down.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use helpline_assignment::auth::TokenPolicy;
use helpline_assignment::{AssignmentSettings, AuthKey};
use helpline_egress::WhatsAppTemplate;
use helpline_eventstore::{MasterKey, StoreConfig};
use helpline_ingress::Secret;
use helpline_ingress::{ChannelsConfig, IngressConfig};
use helpline_region::{
    Agent, BotSettings, Locale, Place, Product, Queue, RegionConfig, RoutingConfig, Store,
};
use serde::{Deserialize, Serialize};

/// The region a configuration names none: Germany, where helpline launched.
pub const DEFAULT_REGION: &str = "de";

/// Every country's region file as shipped (`deploy/k8s/overlays/<region>/helpline.toml`),
/// built in: the base a configuration file is layered over, chosen by its `region`.
pub const REGION_FILES: [(&str, &str); 19] = [
    (
        "at",
        include_str!("../../../deploy/k8s/overlays/at/helpline.toml"),
    ),
    (
        "be",
        include_str!("../../../deploy/k8s/overlays/be/helpline.toml"),
    ),
    (
        "ch",
        include_str!("../../../deploy/k8s/overlays/ch/helpline.toml"),
    ),
    (
        "cz",
        include_str!("../../../deploy/k8s/overlays/cz/helpline.toml"),
    ),
    (
        "de",
        include_str!("../../../deploy/k8s/overlays/de/helpline.toml"),
    ),
    (
        "dk",
        include_str!("../../../deploy/k8s/overlays/dk/helpline.toml"),
    ),
    (
        "es",
        include_str!("../../../deploy/k8s/overlays/es/helpline.toml"),
    ),
    (
        "fi",
        include_str!("../../../deploy/k8s/overlays/fi/helpline.toml"),
    ),
    (
        "fr",
        include_str!("../../../deploy/k8s/overlays/fr/helpline.toml"),
    ),
    (
        "gb",
        include_str!("../../../deploy/k8s/overlays/gb/helpline.toml"),
    ),
    (
        "gr",
        include_str!("../../../deploy/k8s/overlays/gr/helpline.toml"),
    ),
    (
        "hu",
        include_str!("../../../deploy/k8s/overlays/hu/helpline.toml"),
    ),
    (
        "ie",
        include_str!("../../../deploy/k8s/overlays/ie/helpline.toml"),
    ),
    (
        "it",
        include_str!("../../../deploy/k8s/overlays/it/helpline.toml"),
    ),
    (
        "lu",
        include_str!("../../../deploy/k8s/overlays/lu/helpline.toml"),
    ),
    (
        "nl",
        include_str!("../../../deploy/k8s/overlays/nl/helpline.toml"),
    ),
    (
        "pl",
        include_str!("../../../deploy/k8s/overlays/pl/helpline.toml"),
    ),
    (
        "pt",
        include_str!("../../../deploy/k8s/overlays/pt/helpline.toml"),
    ),
    (
        "se",
        include_str!("../../../deploy/k8s/overlays/se/helpline.toml"),
    ),
];

/// The built-in region file of `region`, if helpline ships one.
pub fn region_file(region: &str) -> Option<&'static str> {
    REGION_FILES
        .iter()
        .find(|(code, _)| *code == region)
        .map(|(_, text)| *text)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The region (country code) this deployment serves, e.g. `de`.
    pub region: String,
    pub nats: NatsConfig,
    pub eventstore: EventStoreConfig,
    /// `[ingress]`: the webhook server (`listen` also serves `/healthz` and `/readyz`).
    #[serde(default)]
    pub ingress: IngressConfig,
    /// `[channels.whatsapp]`, `[channels.messenger]`, …: a channel is served only when its
    /// section is there. Not serialized: a channel has no default, and its section holds
    /// secrets.
    #[serde(default, skip_serializing)]
    pub channels: ChannelsConfig,
    /// `[egress]`: how messages go out to customers.
    #[serde(default)]
    pub egress: EgressSettings,
    /// `[grpc]`: the one gRPC port of the process (Routing, Feedback, health, reflection).
    pub grpc: GrpcConfig,
    /// `[ops]`: `/healthz`, `/readyz` and `/metrics` of every service process.
    pub ops: OpsConfig,
    /// `[console]`: the agent console in the browser.
    #[serde(default)]
    pub console: ConsoleConfig,
    pub dev: DevConfig,
    /// `[auth]`: the key AgentDesk bearer tokens are signed with (the secret keys are
    /// never serialized).
    #[serde(default)]
    pub auth: AuthSettings,
    /// `[assignment]`: how long offers and offline agents are waited for.
    #[serde(default)]
    pub assignment: AssignmentConfig,
    /// `[privacy]`: the master key of customers' data keys, and how long closed tickets'
    /// personal data is kept (the master key is never serialized).
    #[serde(default)]
    pub privacy: PrivacySettings,

    // The region's conversation data (see `helpline_region`): `[locale]`, `[bot]`,
    // `[[products]]`, `[[queues]]`, `[routing]`, `[[stores]]`, `[[places]]`.
    #[serde(default)]
    pub locale: Locale,
    #[serde(default)]
    pub bot: BotSettings,
    #[serde(default)]
    pub products: Vec<Product>,
    #[serde(default)]
    pub queues: Vec<Queue>,
    #[serde(default)]
    pub routing: RoutingConfig,
    #[serde(default)]
    pub stores: Vec<Store>,
    #[serde(default)]
    pub places: Vec<Place>,
    #[serde(default)]
    pub agents: Vec<Agent>,
    /// `[notifications]`: the templates notifications are written from.
    #[serde(default)]
    pub notifications: helpline_region::notifications::NotificationsConfig,
    /// `[[holidays]]`: days no queue (or only the listed queues) is staffed.
    #[serde(default)]
    pub holidays: Vec<helpline_region::Holiday>,
    /// `[[canned_replies]]`: answers agents pick by shortcut.
    #[serde(default)]
    pub canned_replies: Vec<helpline_region::canned::CannedReply>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// The Ed25519 public key every service checks tokens with, 64 hex digits
    /// (`helpline agent-token keygen`); `HELPLINE_AUTH__VERIFY_KEY`. Not a secret. When
    /// set, only tokens it verifies are accepted (`jwt_secret` is then ignored).
    pub verify_key: Option<String>,
    /// The Ed25519 signing key (seed, 64 hex digits) belonging to `verify_key`; only
    /// where tokens are issued (`helpline agent-token`, or the brand's identity provider),
    /// never in a service's pod. `HELPLINE_AUTH__SIGNING_KEY`.
    #[serde(skip_serializing)]
    pub signing_key: Option<Secret>,
    /// The older shared HS256 key, at least 32 bytes, which both signs and verifies;
    /// `HELPLINE_AUTH__JWT_SECRET`. Used only without `verify_key`.
    #[serde(skip_serializing)]
    pub jwt_secret: Option<Secret>,
    /// Tokens' `iss`.
    pub issuer: String,
    /// Tokens' `aud`.
    pub audience: String,
    /// The longest a token may live, from `iat` to `exp`; longer ones are refused.
    pub max_token_lifetime_secs: u64,
    /// Without a key, use the built-in development key. Set for `helpline dev` and
    /// runs without a configuration file; set with a configuration file, it stops the
    /// process before it starts (`crate::secrets`).
    pub allow_dev_key: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let policy = TokenPolicy::default();
        Self {
            verify_key: None,
            signing_key: None,
            jwt_secret: None,
            issuer: policy.issuer,
            audience: policy.audience,
            max_token_lifetime_secs: policy.max_lifetime.as_secs(),
            allow_dev_key: false,
        }
    }
}

impl AuthSettings {
    /// The key tokens are checked (and, where the signing key is, issued) with, under the
    /// region's token policy: the configured one, or the development key where that is
    /// allowed; otherwise the service must not start.
    pub fn key(&self) -> Result<AuthKey, ConfigError> {
        let key = match (&self.verify_key, &self.jwt_secret) {
            (Some(verify), _) => {
                AuthKey::ed25519(verify, self.signing_key.as_ref().map(|s| s.expose())).map_err(
                    |e| ConfigError::Invalid(format!("auth.verify_key / auth.signing_key: {e}")),
                )?
            }
            (None, Some(secret)) => AuthKey::new(secret.expose().as_bytes())
                .map_err(|e| ConfigError::Invalid(format!("auth.jwt_secret: {e}")))?,
            (None, None) if self.allow_dev_key => {
                tracing::warn!("no auth key is set: tokens use the public development key");
                AuthKey::development()
            }
            (None, None) => {
                return Err(ConfigError::Invalid(
                    "auth.verify_key is not set (HELPLINE_AUTH__VERIFY_KEY; `helpline agent-token keygen` makes a pair); the APIs need the region's key"
                        .to_owned(),
                ));
            }
        };
        if self.max_token_lifetime_secs == 0 {
            return Err(ConfigError::Invalid(
                "auth.max_token_lifetime_secs must be more than 0".to_owned(),
            ));
        }
        Ok(key.with_policy(TokenPolicy {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            max_lifetime: Duration::from_secs(self.max_token_lifetime_secs),
        }))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    /// The region's master key, 64 hex digits (32 bytes), which wraps every customer's
    /// data key; `HELPLINE_PRIVACY__MASTER_KEY`, from a secret. Lose it and every personal
    /// field of the region reads as erased.
    #[serde(skip_serializing)]
    pub master_key: Option<Secret>,
    /// Without `master_key`, use the public development key. Set for `helpline dev` and
    /// runs without a configuration file; set with a configuration file, it stops the
    /// process before it starts (`crate::secrets`).
    pub allow_dev_key: bool,
    /// Closed tickets older than this lose their customer's personal data (the key is
    /// purged) unless the customer has an open ticket.
    pub retention_days: u32,
    /// How often the privacy service runs retention, in hours.
    pub retention_every_hours: u32,
}

impl Default for PrivacySettings {
    fn default() -> Self {
        Self {
            master_key: None,
            allow_dev_key: false,
            retention_days: 365,
            retention_every_hours: 24,
        }
    }
}

impl PrivacySettings {
    /// The master key: the configured one, or the development key where that is
    /// allowed; otherwise no service may start, as it could not read or write events.
    pub fn master_key(&self) -> Result<MasterKey, ConfigError> {
        match &self.master_key {
            Some(secret) => MasterKey::from_hex(secret.expose())
                .map_err(|e| ConfigError::Invalid(format!("privacy.master_key: {e}"))),
            None if self.allow_dev_key => Ok(MasterKey::development()),
            None => Err(ConfigError::Invalid(
                "privacy.master_key is not set (HELPLINE_PRIVACY__MASTER_KEY); customers' data keys need the region's master key"
                    .to_owned(),
            )),
        }
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 24 * 3600)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssignmentConfig {
    /// An offer not accepted within this many seconds goes to the next agent.
    pub offer_timeout_secs: u64,
    /// An agent offline this many seconds loses their accepted tickets to the queue.
    pub release_grace_secs: u64,
}

impl Default for AssignmentConfig {
    fn default() -> Self {
        let defaults = AssignmentSettings::default();
        Self {
            offer_timeout_secs: defaults.offer_timeout.as_secs(),
            release_grace_secs: defaults.release_grace.as_secs(),
        }
    }
}

impl AssignmentConfig {
    pub fn settings(&self) -> AssignmentSettings {
        AssignmentSettings {
            offer_timeout: Duration::from_secs(self.offer_timeout_secs),
            release_grace: Duration::from_secs(self.release_grace_secs),
        }
    }
}

/// `[grpc]`; a key left out takes its default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    pub listen: std::net::SocketAddr,
    /// Connections open at once; one more is closed at once.
    pub max_connections: usize,
    /// Time a new connection has to send its first bytes, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Longest a call may take to answer (a stream: to start), in seconds;
    /// `DEADLINE_EXCEEDED` after. A client's shorter `grpc-timeout` wins.
    pub request_timeout_secs: u64,
    /// Calls and streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// An idle connection is pinged this often, in seconds, and dropped when the ping
    /// is not answered within 10 s: a peer that vanished does not hold its place.
    pub keepalive_secs: u64,
    /// TLS for the gRPC port: the certificate chain (PEM) and its private key (PEM),
    /// both or neither. Without them the port speaks plain HTTP/2, for a mesh or an
    /// ingress that terminates TLS in front of it.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 50051)),
            max_connections: 1024,
            handshake_timeout_ms: 5_000,
            request_timeout_secs: 30,
            max_concurrent_streams: 100,
            keepalive_secs: 30,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl GrpcConfig {
    /// The port's TLS identity, read from its files, when TLS is configured.
    pub fn tls(&self) -> Result<Option<tonic::transport::ServerTlsConfig>, ConfigError> {
        let read = |path: &PathBuf, key: &str| {
            std::fs::read(path).map_err(|e| {
                ConfigError::Invalid(format!("grpc.{key}: cannot read {}: {e}", path.display()))
            })
        };
        match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                let identity = tonic::transport::Identity::from_pem(
                    read(cert, "tls_cert_file")?,
                    read(key, "tls_key_file")?,
                );
                Ok(Some(
                    tonic::transport::ServerTlsConfig::new().identity(identity),
                ))
            }
            _ => Err(ConfigError::Invalid(
                "grpc.tls_cert_file and grpc.tls_key_file go together".to_owned(),
            )),
        }
    }

    pub fn door(&self) -> helpline_ingress::front_door::Door {
        helpline_ingress::front_door::Door {
            header_timeout: Duration::from_millis(self.handshake_timeout_ms),
            max_connections: self.max_connections,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    pub listen: std::net::SocketAddr,
}

/// `[console]`: where the console serves browsers, where it finds the gRPC services it
/// passes their calls on to, and how long a sign-in lasts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    pub listen: std::net::SocketAddr,
    /// The AgentDesk API (the assignment service); this process's own `grpc.listen`
    /// when unset.
    pub agent_desk_url: Option<String>,
    /// The TicketQuery API (the query service); this process's own when unset.
    pub query_url: Option<String>,
    /// The Feedback API; this process's own when unset.
    pub feedback_url: Option<String>,
    /// How long a sign-in lasts (at most `auth.max_token_lifetime_secs`).
    pub session_ttl_secs: u64,
    /// The CA certificate (PEM) that signed the services' certificates, for `https://`
    /// service URLs (`grpc.tls_cert_file` on their side).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Where the web-chat widget sends customers' messages: ingress's `/webhooks/web`;
    /// this process's own ingress when unset. The widget is served where `[channels.web]`
    /// is configured, whose `callback_url` then names this console's `/widget/callback`.
    pub widget_webhook_url: Option<String>,
    /// Where callbacks for web chat sessions the widget did not open are passed on (a
    /// site's own chat backend beside the widget); unset, they are refused (404).
    pub widget_forward_url: Option<String>,
    /// The sites (`https://www.example.com`) whose pages may call the widget's API; empty:
    /// any site (the widget's token travels in a header, never in a cookie).
    pub widget_origins: Vec<String>,
    /// This console as ingress reaches it (`http://console:8088`), where ingress fetches
    /// the files customers attach in the widget; `ingress.media_hosts.web` must name it.
    /// This process's own console port on loopback when unset.
    pub widget_upload_url: Option<String>,
    /// The largest file a customer may attach in the widget, in bytes (10 MiB unless set).
    pub widget_max_upload_bytes: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 8088)),
            agent_desk_url: None,
            query_url: None,
            feedback_url: None,
            session_ttl_secs: 8 * 60 * 60,
            tls_ca_file: None,
            widget_webhook_url: None,
            widget_forward_url: None,
            widget_origins: Vec::new(),
            widget_upload_url: None,
            widget_max_upload_bytes: 10 * 1024 * 1024,
        }
    }
}

/// `[nats]`: where and as whom a process connects (`crate::nats::connect`). A deployment
/// gives every service its own user, whose permissions the server holds
/// (`deploy/nats/values.yaml`); `helpline dev` runs an open server on loopback.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Where the services connect; `helpline dev` starts its own server here. `tls://`
    /// requires TLS.
    pub url: String,
    /// The NATS user (`HELPLINE_NATS__USER`), with `password`.
    #[serde(default)]
    pub user: Option<String>,
    /// The user's password, from a secret (`HELPLINE_NATS__PASSWORD`). Not serialized.
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    /// An nkey seed (`SU…`) to sign in with instead of a user and password
    /// (`HELPLINE_NATS__NKEY_SEED`, from a secret). Not serialized.
    #[serde(default, skip_serializing)]
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file (user JWT and nkey seed) to sign in with instead.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Where replies to this process's requests arrive; by default `_INBOX.<user>` with a
    /// user (the only inbox its permissions let it read), else `_INBOX`.
    #[serde(default)]
    pub inbox_prefix: Option<String>,
    /// Refuse a connection that is not TLS (also implied by a `tls://` url or a CA file).
    #[serde(default)]
    pub tls_required: bool,
    /// PEM file of the CA that signed the server's certificate.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM files of this process's client certificate and key, for servers that verify
    /// clients; both or neither.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            user: None,
            password: None,
            nkey_seed: None,
            credentials_file: None,
            inbox_prefix: None,
            tls_required: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventStoreConfig {
    /// Replicas of the stream and buckets: 1 locally, 3 in production.
    pub replicas: usize,
    pub duplicate_window_secs: u64,
    pub max_message_bytes: i32,
    /// Deliveries of one event before it goes to the dead-letter subject.
    pub max_deliver: i64,
    pub ack_wait_secs: u64,
    pub snapshot_every: u64,
    /// Partitions of each service's consumer over the tickets (1 to 64): the replicas of
    /// a service share them, one replica per partition at a time. Changing it is an
    /// operation of its own (docs/ARCHITECTURE.md, "Partitions").
    #[serde(default = "partitions")]
    pub partitions: u32,
    /// Tickets each consumer handles at once, each one event at a time.
    #[serde(default = "tickets_in_flight")]
    pub tickets_in_flight: usize,
    /// Customers whose data key a process keeps in memory (about 200 bytes each).
    #[serde(default = "key_cache_limit")]
    pub key_cache_limit: usize,
    /// Create or update the streams and buckets when a service starts. A deployment whose
    /// services may not manage streams sets it to false and runs `helpline ensure` as a
    /// separate step (with the setup user); the services then wait until the store exists.
    #[serde(default = "ensure_on_start")]
    pub ensure_on_start: bool,
}

fn ensure_on_start() -> bool {
    true
}

fn partitions() -> u32 {
    StoreConfig::default().partitions
}

fn tickets_in_flight() -> usize {
    StoreConfig::default().tickets_in_flight
}

fn key_cache_limit() -> usize {
    StoreConfig::default().key_cache_limit
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressSettings {
    /// Sent on WhatsApp in place of free text outside the 24-hour customer-service window,
    /// e.g. `{ name = "case_update", language = "de" }`; without it such messages fail.
    pub whatsapp_template: Option<WhatsAppTemplate>,
    /// Sent on WhatsApp in place of the rating request (and its re-prompt) outside the
    /// 24-hour window, e.g. `{ name = "rating_request", language = "de" }`.
    pub whatsapp_rating_template: Option<WhatsAppTemplate>,
    /// The sender name Viber shows, at most 28 characters.
    pub viber_sender_name: String,
    /// Notifications per second per channel (by its name: `whatsapp = 20.0`), per egress
    /// process: the pace of a campaign, leaving the rest of the channel's rate to
    /// conversations. A channel not named sends a quarter of its default rate.
    pub notifications_per_second: helpline_channels::PerChannel<f64>,
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            whatsapp_template: None,
            whatsapp_rating_template: None,
            viber_sender_name: "Helpline".to_owned(),
            notifications_per_second: helpline_channels::PerChannel::default(),
        }
    }
}

impl EgressSettings {
    /// The notification paces by channel; a rate that is not positive is refused (an
    /// unknown channel's name already was, when the file was read).
    pub fn notification_rates(
        &self,
    ) -> Result<
        std::collections::HashMap<helpline_domain::Channel, helpline_egress::RateLimit>,
        ConfigError,
    > {
        self.notifications_per_second
            .iter()
            .map(|(channel, per_second)| {
                if !(per_second.is_finite() && *per_second > 0.0) {
                    return Err(ConfigError::Invalid(format!(
                        "egress.notifications_per_second.{} must be above 0",
                        channel.as_str()
                    )));
                }
                Ok((
                    channel,
                    helpline_egress::RateLimit {
                        per_second: *per_second,
                        burst: 1,
                    },
                ))
            })
            .collect()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConfig {
    /// Where `helpline dev` keeps the nats-server store and log.
    pub data_dir: PathBuf,
    /// The client port of the nats-server `helpline dev` starts.
    pub nats_port: u16,
}

impl Default for Config {
    fn default() -> Self {
        let store = StoreConfig::default();
        Self {
            region: store.region.clone(),
            nats: NatsConfig::default(),
            eventstore: EventStoreConfig {
                replicas: store.replicas,
                duplicate_window_secs: store.duplicate_window.as_secs(),
                max_message_bytes: store.max_message_size,
                max_deliver: store.max_deliver,
                ack_wait_secs: store.ack_wait.as_secs(),
                snapshot_every: store.snapshot_every,
                partitions: store.partitions,
                tickets_in_flight: store.tickets_in_flight,
                key_cache_limit: store.key_cache_limit,
                ensure_on_start: true,
            },
            ingress: IngressConfig::default(),
            channels: ChannelsConfig::default(),
            egress: EgressSettings::default(),
            grpc: GrpcConfig::default(),
            ops: OpsConfig {
                listen: std::net::SocketAddr::from(([0, 0, 0, 0], 9090)),
            },
            console: ConsoleConfig::default(),
            locale: Locale::default(),
            bot: BotSettings::default(),
            products: Vec::new(),
            queues: Vec::new(),
            routing: RoutingConfig::default(),
            stores: Vec::new(),
            places: Vec::new(),
            agents: Vec::new(),
            notifications: Default::default(),
            holidays: Vec::new(),
            canned_replies: Vec::new(),
            auth: AuthSettings::default(),
            privacy: PrivacySettings::default(),
            assignment: AssignmentConfig::default(),
            dev: DevConfig {
                data_dir: PathBuf::from(".helpline"),
                nats_port: 4222,
            },
        }
    }
}

/// Why the configuration cannot be used; the binary exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    NoSuchFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid region configuration:\n{}", .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Region(Vec<helpline_region::ConfigProblem>),
}

/// The configuration's layers, each over the one before: helpline's defaults; the built-in
/// file of the region (`HELPLINE_REGION`, else the file's `region`, else Germany), so a
/// file need only say what differs — its channels and ingress, say; `file`; the
/// `HELPLINE_*` variables among `vars`. A list (`[[stores]]`, `languages`) is replaced
/// whole by a later layer, never joined, so a file's stores are the region's stores. A
/// region helpline ships no file for has no such layer when a file is given (the file
/// holds it all), and Germany's without one.
pub fn layers(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Figment, ConfigError> {
    let text = match file {
        Some(file) if !file.is_file() => return Err(ConfigError::NoSuchFile(file.to_owned())),
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", file.display())))?,
        ),
        None => None,
    };
    let env = EnvStrings::from_vars(vars);
    let named_in_file = text.as_deref().and_then(region_named_in);
    let region = env
        .value_of("region")
        .map(str::to_owned)
        .or(named_in_file)
        .unwrap_or_else(|| DEFAULT_REGION.to_owned());
    let mut figment = Figment::from(Named {
        provider: Serialized::defaults(Config::default()),
        name: DEFAULTS_LAYER.to_owned(),
    });
    // Without a file, a region helpline ships no file for (a test's, a benchmark's own
    // name for its streams) runs on Germany's data, as every run without a file did.
    let base = match region_file(&region) {
        Some(base) => Some((region.as_str(), base)),
        None if text.is_none() => region_file(DEFAULT_REGION).map(|base| (DEFAULT_REGION, base)),
        None => None,
    };
    if let Some((base_region, base)) = base {
        figment = figment.merge(Named {
            provider: Toml::string(base),
            name: format!("{REGION_LAYER} {base_region}"),
        });
    }
    if let Some(file) = file {
        figment = figment.merge(Toml::file_exact(file));
    }
    Ok(figment.merge(env))
}

/// The process's `HELPLINE_*` variables. Any other variable may hold bytes that are not
/// UTF-8 (a CI runner's, a shell's) and is none of helpline's business, where
/// `std::env::vars` would panic on it; a `HELPLINE_*` one that is not UTF-8 is an error
/// that names it.
pub fn helpline_vars() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str().filter(|key| key.starts_with("HELPLINE_")) else {
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_| ConfigError::Invalid(format!("{key} is not UTF-8 text")))?;
        vars.push((key.to_owned(), value));
    }
    Ok(vars)
}

/// The `region` a configuration file's text names, if it parses and names one.
pub fn region_named_in(text: &str) -> Option<String> {
    let table = text.parse::<toml::Table>().ok()?;
    table.get("region")?.as_str().map(str::to_owned)
}

/// How `helpline config show` names the defaults' layer and a built-in region file's.
const DEFAULTS_LAYER: &str = "default";
const REGION_LAYER: &str = "built-in region";

/// A provider under a name of ours, for `helpline config show`.
struct Named<P> {
    provider: P,
    name: String,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.provider.data()
    }
}

/// The `HELPLINE_*` environment variables as configuration values, each one text.
///
/// figment's own `Env` reads `106540352242922` as a number, and a key that wants text
/// then refuses it ("found unsigned int, expected a string"): the shipped compose file's
/// WhatsApp phone number id stopped ingress that way. Here every value stays text and the
/// configuration is extracted lossily, so numbers and booleans are read from text where
/// a key wants them. A value written as TOML-like data (`[...]`, `{...}`, or a quoted
/// `"..."`, the old workaround) is still read as such.
#[derive(Debug)]
pub struct EnvStrings {
    vars: Vec<(String, String)>,
}

impl EnvStrings {
    /// The value of configuration key `key` (`nats.url`), when a variable sets it.
    pub fn value_of(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// Keeps the `HELPLINE_*` variables among `vars`, named as configuration keys.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        // Read by the logger and the test harness, not part of the config.
        const NOT_CONFIG: [&str; 3] = ["log", "nats_server", "config"];
        let vars = vars
            .into_iter()
            .filter_map(|(name, value)| {
                let name = name.to_ascii_lowercase();
                let key = name.strip_prefix("helpline_")?;
                if key.is_empty() || NOT_CONFIG.contains(&key) {
                    return None;
                }
                let key = match key {
                    "nats_url" => "nats.url".to_owned(),
                    other => other.replace("__", "."),
                };
                Some((key, value))
            })
            .collect();
        Self { vars }
    }
}

impl Provider for EnvStrings {
    fn metadata(&self) -> Metadata {
        Metadata::named("`HELPLINE_` environment variable(s)")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, text) in &self.vars {
            let trimmed = text.trim_start();
            let value = if trimmed.starts_with(['[', '{', '"']) {
                text.parse::<Value>().unwrap_or_else(|e| match e {})
            } else {
                Value::from(text.clone())
            };
            if let Some(nested) = figment::util::nest(key, value).into_dict() {
                merge_into(&mut dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// `from` merged into `into`, dictionaries key by key, the later value winning otherwise
/// (two variables naming one key: the one read last).
fn merge_into(into: &mut Dict, from: Dict) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, nested)) => {
                merge_into(existing, nested)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

impl Config {
    /// Defaults, then the region's built-in file, then `file` (if given), then
    /// `HELPLINE_*` variables: `HELPLINE_REGION`, `HELPLINE_NATS_URL`, and
    /// `HELPLINE_<SECTION>__<KEY>` for any other key (e.g. `HELPLINE_EVENTSTORE__REPLICAS=3`);
    /// see [`layers`]. A variable's value is text: a key that
    /// wants a number or a boolean reads it from the text, and a key that wants text
    /// takes it as it is, digits included (a WhatsApp phone number id, a password).
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(file, helpline_vars()?)
    }

    /// [`Config::load`] with `vars` in place of the process's environment.
    pub fn load_with(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::from_layers(&layers(file, vars)?)
    }

    /// The configuration the layers give ([`layers`]), checked as a process checks it.
    pub fn from_layers(layers: &Figment) -> Result<Self, ConfigError> {
        let mut config: Config = layers
            .extract_lossy()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        crate::nats::take_url_credentials(&mut config.nats).map_err(ConfigError::Invalid)?;
        config.validate()?;
        Ok(config)
    }

    /// The region's conversation data, as the bot, routing and feedback read it.
    pub fn region(&self) -> RegionConfig {
        RegionConfig {
            locale: self.locale.clone(),
            bot: self.bot.clone(),
            products: self.products.clone(),
            queues: self.queues.clone(),
            routing: self.routing.clone(),
            stores: self.stores.clone(),
            places: self.places.clone(),
            agents: self.agents.clone(),
            notifications: self.notifications.clone(),
            holidays: self.holidays.clone(),
            canned_replies: self.canned_replies.clone(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        helpline_eventstore::Layout::new(&self.region)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.egress.notification_rates()?;
        if self.eventstore.duplicate_window_secs < 120 {
            return Err(ConfigError::Invalid(
                "eventstore.duplicate_window_secs must be at least 120 so retried appends dedupe"
                    .to_owned(),
            ));
        }
        // A partition's next owner waits one ack wait (and a second) for the event
        // another process still has in hand; egress's try in hand is one provider
        // request, which a handover does not cut. A shorter ack wait would let the
        // ticket's later messages overtake that send.
        let provider_request = helpline_egress::EgressConfig::default().request_timeout;
        if Duration::from_secs(self.eventstore.ack_wait_secs) < provider_request {
            return Err(ConfigError::Invalid(format!(
                "eventstore.ack_wait_secs must be at least {} (egress's longest provider request), so that a ticket handed over waits for the send in hand",
                provider_request.as_secs()
            )));
        }
        if self.assignment.offer_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "assignment.offer_timeout_secs must be at least 1".to_owned(),
            ));
        }
        if let Some(secret) = &self.auth.jwt_secret
            && secret.expose().len() < AuthKey::MIN_BYTES
        {
            return Err(ConfigError::Invalid(format!(
                "auth.jwt_secret must be at least {} bytes",
                AuthKey::MIN_BYTES
            )));
        }
        // A master key that is set must read as one wherever it is used; one that is not
        // set is refused later, only where a service needs it.
        if let Some(secret) = &self.privacy.master_key {
            MasterKey::from_hex(secret.expose())
                .map_err(|e| ConfigError::Invalid(format!("privacy.master_key: {e}")))?;
        }
        if !(1..=helpline_eventstore::layout::TICKET_SLOTS).contains(&self.eventstore.partitions) {
            return Err(ConfigError::Invalid(format!(
                "eventstore.partitions must be 1 to {}",
                helpline_eventstore::layout::TICKET_SLOTS
            )));
        }
        if self.eventstore.tickets_in_flight < 1 {
            return Err(ConfigError::Invalid(
                "eventstore.tickets_in_flight must be at least 1".to_owned(),
            ));
        }
        if self.eventstore.max_deliver < 1 {
            return Err(ConfigError::Invalid(
                "eventstore.max_deliver must be at least 1".to_owned(),
            ));
        }
        if !(self.nats.url.starts_with("nats://") || self.nats.url.starts_with("tls://")) {
            return Err(ConfigError::Invalid(format!(
                "nats.url must start with nats:// or tls://, not {:?}",
                crate::nats::redacted(&self.nats.url)
            )));
        }
        if let Some((key, problem)) = crate::nats::problems(&self.nats).into_iter().next() {
            return Err(ConfigError::Invalid(format!("{key}: {problem}")));
        }
        let problems = self.region().validate();
        if !problems.is_empty() {
            return Err(ConfigError::Region(problems));
        }
        Ok(())
    }

    /// The event store's settings; fails without a usable master key.
    pub fn store(&self) -> Result<StoreConfig, ConfigError> {
        Ok(StoreConfig {
            region: self.region.clone(),
            replicas: self.eventstore.replicas,
            duplicate_window: Duration::from_secs(self.eventstore.duplicate_window_secs),
            max_message_size: self.eventstore.max_message_bytes,
            max_deliver: self.eventstore.max_deliver,
            ack_wait: Duration::from_secs(self.eventstore.ack_wait_secs),
            snapshot_every: self.eventstore.snapshot_every,
            partitions: self.eventstore.partitions,
            tickets_in_flight: self.eventstore.tickets_in_flight,
            key_cache_limit: self.eventstore.key_cache_limit,
            max_ack_pending: StoreConfig::default()
                .max_ack_pending
                .max(i64::try_from(self.eventstore.tickets_in_flight).unwrap_or(i64::MAX)),
            master_key: self.privacy.master_key()?,
            ..StoreConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// What a platform team's environment gives a WhatsApp phone number id: digits.
    const DIGITS: &str = "106540352242922";

    fn var(path: &[&str]) -> String {
        format!("HELPLINE_{}", path.join("__").to_ascii_uppercase())
    }

    fn load(vars: &[(String, impl AsRef<str>)]) -> Result<Config, ConfigError> {
        Config::load_with(
            None,
            vars.iter()
                .map(|(name, value)| (name.clone(), value.as_ref().to_owned())),
        )
    }

    /// The keys of the section at `path` (with `around` set), as the refusal of an
    /// unknown key lists them, and those it requires: a section that takes no unknown keys
    /// names all; one that ignores them names only what it misses.
    fn keys_of(path: &[&str], around: &[(String, &'static str)]) -> (Vec<String>, Vec<String>) {
        let mut required: Vec<String> = Vec::new();
        loop {
            let mut vars = around.to_vec();
            for key in &required {
                let mut at = path.to_vec();
                at.push(key);
                vars.push((var(&at), DIGITS));
            }
            let mut probe = path.to_vec();
            probe.push("zz_no_such_key");
            vars.push((var(&probe), "1"));
            let refusal = match load(&vars) {
                Ok(_) => return (required.clone(), required),
                Err(e) => e.to_string(),
            };
            if let Some((_, missing)) = refusal.split_once("missing field `")
                && let Some((missing, _)) = missing.split_once('`')
                && !required.iter().any(|key| key == missing)
            {
                required.push(missing.to_owned());
                continue;
            }
            // A map with names of the file's own choosing and a section for each (the
            // region's notification templates): no fixed keys to search.
            if refusal.contains("expected struct") && refusal.contains("zz_no_such_key") {
                return (Vec::new(), required);
            }
            let Some((_, expected)) = refusal.split_once("unknown field") else {
                panic!("{path:?}: {refusal}");
            };
            // "expected `one of `region`, `nats`, …`": the names are the quoted words.
            let keys = expected
                .split('`')
                .filter(|word| {
                    !word.is_empty()
                        && word
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                        && *word != "zz_no_such_key"
                })
                .map(str::to_owned)
                .collect();
            return (keys, required);
        }
    }

    /// Every key under `path` that takes a plain value, with what loading made of
    /// [`DIGITS`] there; sections searched recursively.
    fn leaves(path: &[&str], around: &[(String, &'static str)], found: &mut Vec<(String, String)>) {
        let (keys, required) = keys_of(path, around);
        let mut around = around.to_vec();
        for key in &required {
            let mut at = path.to_vec();
            at.push(key);
            around.push((var(&at), DIGITS));
        }
        for key in keys {
            let mut at: Vec<&str> = path.to_vec();
            at.push(&key);
            let mut vars: Vec<(String, &str)> = around
                .iter()
                .filter(|(name, _)| *name != var(&at))
                .cloned()
                .collect();
            vars.push((var(&at), DIGITS));
            let outcome = match load(&vars) {
                Ok(_) => "accepted".to_owned(),
                Err(e) => e.to_string(),
            };
            let is_section = outcome.contains("expected struct")
                || outcome.contains("expected a map")
                || outcome.contains("expected a dict");
            if is_section {
                let inner: Vec<(String, &'static str)> = around
                    .iter()
                    .filter(|(name, _)| *name != var(&at))
                    .cloned()
                    .collect();
                leaves(&at, &inner, found);
            } else {
                found.push((at.join("."), outcome));
            }
        }
    }

    #[test]
    fn every_key_that_takes_text_takes_text_that_looks_like_a_number() {
        let mut found = Vec::new();
        leaves(&[], &[], &mut found);
        assert!(
            found.len() > 50,
            "the search found only {} keys: {found:?}",
            found.len()
        );
        let refused: Vec<_> = found
            .iter()
            .filter(|(_, outcome)| outcome.contains("expected a string"))
            .collect();
        assert!(refused.is_empty(), "refused as a number: {refused:#?}");
        let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
        for expected in [
            "channels.whatsapp.phone_number_id",
            "channels.whatsapp.app_secret",
            "nats.password",
            "privacy.master_key",
            "egress.viber_sender_name",
        ] {
            assert!(
                keys.contains(&expected),
                "{expected} not searched: {keys:?}"
            );
        }
    }

    #[test]
    fn the_compose_files_whatsapp_phone_number_id_is_read_as_text() {
        let mut vars: Vec<(String, String)> = [
            ("APP_SECRET", "0123456789abcdef0123456789abcdef"),
            ("VERIFY_TOKEN", "20240501"),
            ("ACCESS_TOKEN", "EAAG-access"),
            ("PHONE_NUMBER_ID", DIGITS),
        ]
        .into_iter()
        .map(|(key, value)| {
            (
                format!("HELPLINE_CHANNELS__WHATSAPP__{key}"),
                value.to_owned(),
            )
        })
        .collect();
        let config = load(&vars).unwrap();
        let whatsapp = config.channels.whatsapp.unwrap();
        assert_eq!(whatsapp.phone_number_id, DIGITS);
        assert_eq!(whatsapp.verify_token.expose(), "20240501");
        // The old workaround, the value quoted inside the variable, reads the same.
        vars[3].1 = format!("\"{DIGITS}\"");
        let config = load(&vars).unwrap();
        assert_eq!(config.channels.whatsapp.unwrap().phone_number_id, DIGITS);
    }

    #[test]
    fn numbers_and_booleans_are_still_read_from_the_text() {
        let config = load(&[
            ("HELPLINE_EVENTSTORE__REPLICAS".to_owned(), "3"),
            ("HELPLINE_EVENTSTORE__ENSURE_ON_START".to_owned(), "false"),
            ("HELPLINE_NATS_URL".to_owned(), "nats://nats:4222"),
            ("HELPLINE_INGRESS__LISTEN".to_owned(), "0.0.0.0:8081"),
        ])
        .unwrap();
        assert_eq!(config.eventstore.replicas, 3);
        assert!(!config.eventstore.ensure_on_start);
        assert_eq!(config.nats.url, "nats://nats:4222");
        assert_eq!(config.ingress.listen.port(), 8081);
        let refusal = load(&[("HELPLINE_EVENTSTORE__REPLICAS".to_owned(), "three")])
            .unwrap_err()
            .to_string();
        assert!(refusal.contains("eventstore.replicas"), "{refusal}");
    }

    #[test]
    fn an_ack_wait_shorter_than_a_provider_request_is_refused() {
        let refusal = load(&[("HELPLINE_EVENTSTORE__ACK_WAIT_SECS".to_owned(), "5")])
            .unwrap_err()
            .to_string();
        assert!(refusal.contains("eventstore.ack_wait_secs"), "{refusal}");
        let config = load(&[("HELPLINE_EVENTSTORE__ACK_WAIT_SECS".to_owned(), "30")]).unwrap();
        assert_eq!(config.eventstore.ack_wait_secs, 30);
    }

    #[test]
    fn a_mistyped_channel_key_is_refused_by_name() {
        let refusal = load(&[
            (
                "HELPLINE_CHANNELS__TELEGRAM__SECRET_TOKEN".to_owned(),
                "s3cr3t-token-value",
            ),
            ("HELPLINE_CHANNELS__TELEGRAM__SECRET_TOKN".to_owned(), "x"),
        ])
        .unwrap_err()
        .to_string();
        assert!(refusal.contains("secret_tokn"), "{refusal}");
    }

    fn file_with(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("helpline.toml");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    fn region_alone(region: &str) -> Config {
        let (_dir, file) = file_with(region_file(region).unwrap());
        Config::load_with(Some(&file), []).unwrap()
    }

    #[test]
    fn a_file_with_only_channels_and_ingress_runs_on_the_regions_built_in_file() {
        let (_dir, file) = file_with(
            "[ingress]\nlisten = \"0.0.0.0:9443\"\n\n[channels.telegram]\nsecret_token = \"tg-secret-of-this-brand\"\n",
        );
        let config = Config::load_with(Some(&file), []).unwrap();
        assert_eq!(config.region, "de");
        assert_eq!(config.ingress.listen.port(), 9443);
        assert!(config.channels.telegram.is_some());
        let germany = region_alone("de");
        assert_eq!(config.queues, germany.queues);
        assert_eq!(config.stores, germany.stores);
        assert_eq!(config.routing, germany.routing);
    }

    #[test]
    fn the_region_a_file_names_is_its_base_and_no_other_countrys_data_leaks_in() {
        let (_dir, file) = file_with(
            "region = \"fr\"\n\n[channels.telegram]\nsecret_token = \"tg-secret-of-this-brand\"\n",
        );
        let config = Config::load_with(Some(&file), []).unwrap();
        let france = region_alone("fr");
        assert_eq!(config.region, "fr");
        assert_eq!(config.locale, france.locale);
        assert_eq!(config.stores, france.stores);
        assert_eq!(config.queues, france.queues);
        assert_ne!(config.stores, region_alone("de").stores);

        // A file's list replaces the region's whole: its stores are the region's stores.
        let (_dir, file) = file_with(&format!(
            "region = \"fr\"\n\n{}",
            region_file("fr")
                .unwrap()
                .split("[[stores]]")
                .take(2)
                .skip(1)
                .map(|first| format!("[[stores]]{first}"))
                .collect::<String>()
        ));
        let config = Config::load_with(Some(&file), []).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.stores.len(), 1);
    }

    #[test]
    fn the_region_from_the_environment_picks_the_base_without_a_file() {
        let config = load(&[("HELPLINE_REGION".to_owned(), "fr")]).unwrap();
        assert_eq!(config.region, "fr");
        assert_eq!(config.locale, region_alone("fr").locale);
    }
}
