//! `[[agents]]`: the region's human agents, their skills and how much each can take.
//!
//! Who is signed in and how busy they are is not configuration: the assignment service
//! folds it from the agents' events. This is the directory it matches tickets against.

use std::collections::BTreeSet;

use helpline_domain::{AgentId, QueueId};
use serde::{Deserialize, Serialize};

use crate::{ConfigProblem, Product};

/// One agent of the region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Names the agent in tokens, events and subjects (`helpline.<region>.agent.<id>`):
    /// lower-case letters, digits, `-` and `_`.
    pub id: AgentId,
    /// What supervisors see.
    #[serde(default)]
    pub name: String,
    /// BCP 47 tags of the languages the agent serves customers in.
    #[serde(default)]
    pub languages: Vec<String>,
    /// Product families or kinds the agent handles (`MateBook`, `phone`); any when empty.
    #[serde(default)]
    pub products: Vec<String>,
    /// The queues the agent takes tickets from.
    #[serde(default)]
    pub queues: Vec<QueueId>,
    /// Tickets the agent holds at most at once, offers included.
    #[serde(default = "default_max_tickets")]
    pub max_tickets: u32,
    #[serde(default)]
    pub role: Role,
}

/// What an agent may do on the AgentDesk API; each role may do what the one before may.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Takes tickets and acts on their own.
    #[default]
    Agent,
    /// Also sees every queue and agent, and reassigns tickets.
    Supervisor,
    /// Everything a supervisor may.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

fn default_max_tickets() -> u32 {
    3
}

impl Agent {
    /// Whether the agent takes tickets of `queue` in `language` about `product` (unknown
    /// products go to anyone of the queue).
    pub fn can_take(&self, queue: &QueueId, language: &str, product: Option<&Product>) -> bool {
        let skilled = match product {
            Some(product) if !self.products.is_empty() => self.products.iter().any(|p| {
                p.eq_ignore_ascii_case(&product.family) || p.eq_ignore_ascii_case(&product.kind)
            }),
            _ => true,
        };
        self.queues.contains(queue) && self.languages.iter().any(|l| l == language) && skilled
    }
}

/// Whether `id` is usable as one token of a NATS subject and in a bearer token.
pub fn valid_agent_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The problems of `[[agents]]`, given the region's queue ids and products.
pub(crate) fn validate(
    agents: &[Agent],
    queues: &BTreeSet<&str>,
    products: &[Product],
    problems: &mut Vec<ConfigProblem>,
) {
    let mut problem = |key: String, message: String| {
        problems.push(ConfigProblem { key, message });
    };
    let mut ids = BTreeSet::new();
    for (i, agent) in agents.iter().enumerate() {
        let id = agent.id.as_str();
        if !valid_agent_id(id) {
            problem(
                format!("agents[{i}].id"),
                format!("{id:?} must be 1 to 64 lower-case letters, digits, '-' or '_'"),
            );
        }
        if !ids.insert(id) {
            problem(format!("agents[{i}].id"), format!("{id} is listed twice"));
        }
        for queue in &agent.queues {
            if !queues.contains(queue.as_str()) {
                problem(
                    format!("agents[{i}].queues"),
                    format!("no queue {queue} in [[queues]]"),
                );
            }
        }
        if !agent.queues.is_empty() && agent.languages.is_empty() {
            problem(
                format!("agents[{i}].languages"),
                "an agent with queues needs at least one language".into(),
            );
        }
        if !agent.queues.is_empty() && agent.max_tickets == 0 {
            problem(
                format!("agents[{i}].max_tickets"),
                "an agent with queues must take at least one ticket".into(),
            );
        }
        for skill in &agent.products {
            let known = products.iter().any(|p| {
                p.family.eq_ignore_ascii_case(skill) || p.kind.eq_ignore_ascii_case(skill)
            });
            if !known {
                problem(
                    format!("agents[{i}].products"),
                    format!("no product family or kind {skill:?} in [[products]]"),
                );
            }
        }
    }
}
