//! Identifiers. Ticket and message ids are UUIDv7, made by the caller (the domain has no
//! clock and no randomness); agents, queues and stores are named by configuration.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One conversation with one customer about one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TicketId(pub Uuid);

/// One message to or from a customer, as helpline names it (not the provider's id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId(pub Uuid);

macro_rules! named_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

named_id!(
    /// A human agent, as the agent directory names them.
    AgentId
);
named_id!(
    /// A queue of tickets waiting for an agent, e.g. `de-laptops-de`.
    QueueId
);
named_id!(
    /// A local service store that takes referred cases, e.g. `berlin-mitte`.
    StoreId
);

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
