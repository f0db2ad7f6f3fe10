//! The console: what a browser talks to. It serves the console's pages, signs agents in
//! with their password (an Argon2id hash in the credentials bucket, [`credentials`]),
//! keeps the session in cookies ([`session`]), and passes the pages' gRPC-Web calls on
//! to the same gRPC services every other client uses — AgentDesk, TicketQuery, Feedback —
//! with the session's bearer token in place of the cookie. It holds no state of its own
//! and no second copy of any API: what an agent may do is what the services allow the
//! token.
//!
//! Invariants:
//! - A call reaches a service only with a valid session token and, every call being a
//!   state change or a read of personal data, the session's CSRF token.
//! - The bearer token never reaches a page's scripts: it travels in an httpOnly cookie
//!   and is moved to `authorization` here.
//! - Nothing here depends on another service crate; the services are reached over gRPC.

pub mod credentials;
pub mod session;
mod web;
mod widget;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use helpline_auth::AuthKey;
use helpline_region::Agent;
use tonic::transport::Channel;

pub use credentials::{Credentials, CredentialsError};
pub use web::router;
pub use widget::{Widget, WidgetSettings};

/// How a console reaches the gRPC services, each a lazily connected channel.
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// AgentDesk (the assignment service).
    pub agent_desk: Channel,
    /// TicketQuery (the query service).
    pub ticket_query: Channel,
    /// Feedback (CSAT).
    pub feedback: Channel,
}

/// Everything a console serves with.
#[derive(Debug)]
pub struct Console {
    key: AuthKey,
    credentials: Credentials,
    agents: HashMap<String, Agent>,
    session_ttl: Duration,
    upstreams: Upstreams,
    failures: SignInFailures,
    /// The web-chat widget's backend, where the web chat channel is configured.
    widget: Option<Widget>,
}

impl Console {
    /// A console signing tokens with `key` (which must be able to sign) for the agents
    /// of `[[agents]]`, each session living `session_ttl`.
    pub fn new(
        key: AuthKey,
        credentials: Credentials,
        agents: &[Agent],
        session_ttl: Duration,
        upstreams: Upstreams,
    ) -> Self {
        Self {
            key,
            credentials,
            agents: agents
                .iter()
                .map(|agent| (agent.id.to_string(), agent.clone()))
                .collect(),
            session_ttl,
            upstreams,
            failures: SignInFailures::default(),
            widget: None,
        }
    }

    /// The same console, serving the web-chat widget's backend too.
    pub fn with_widget(mut self, widget: Widget) -> Self {
        self.widget = Some(widget);
        self
    }
}

/// Failed sign-ins per agent id: after [`SignInFailures::LIMIT`] within a window, further
/// attempts on that id are turned away until the window ends, so a password cannot be
/// guessed at the speed of the network.
#[derive(Debug, Default)]
struct SignInFailures(Mutex<HashMap<String, (u32, Instant)>>);

impl SignInFailures {
    const LIMIT: u32 = 5;
    const WINDOW: Duration = Duration::from_secs(60);

    /// Whether `agent` may try now.
    fn may_try(&self, agent: &str) -> bool {
        let failures = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match failures.get(agent) {
            Some((count, since)) => *count < Self::LIMIT || since.elapsed() >= Self::WINDOW,
            None => true,
        }
    }

    fn failed(&self, agent: &str) {
        let mut failures = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A map of every name ever tried would grow without bound: old windows go.
        if failures.len() > 10_000 {
            failures.retain(|_, (_, since)| since.elapsed() < Self::WINDOW);
        }
        let entry = failures
            .entry(agent.to_owned())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= Self::WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    fn succeeded(&self, agent: &str) {
        let mut failures = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        failures.remove(agent);
    }
}
