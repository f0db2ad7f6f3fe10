//! Names of the region's streams, subjects and buckets (DESIGN §4).

use helpline_domain::{Channel, TicketId};

use crate::error::StoreError;
use crate::seal::CustomerId;

/// The JetStream layout of one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    region: String,
    event_stream: String,
    dead_letter_stream: String,
}

impl Layout {
    /// `region` is a lower-case code of 2 to 16 letters or digits, e.g. `de`.
    pub fn new(region: &str) -> Result<Self, StoreError> {
        let valid = (2..=16).contains(&region.len())
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !valid {
            return Err(StoreError::InvalidRegion(region.to_owned()));
        }
        let upper = region.to_ascii_uppercase();
        Ok(Self {
            region: region.to_owned(),
            event_stream: format!("HELPLINE_{upper}"),
            dead_letter_stream: format!("HELPLINE_{upper}_DEADLETTER"),
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// `HELPLINE_<REGION>`: every ticket's and agent's events.
    pub fn event_stream(&self) -> &str {
        &self.event_stream
    }

    /// `helpline.<region>.ticket.<ticket_id>`: one ticket's events, in order.
    pub fn ticket_subject(&self, ticket: TicketId) -> String {
        format!("helpline.{}.ticket.{}", self.region, ticket.0)
    }

    /// `helpline.<region>.ticket.*`: every ticket.
    pub fn all_tickets(&self) -> String {
        format!("helpline.{}.ticket.*", self.region)
    }

    /// `helpline.<region>.agent.<agent_id>`: one agent's presence and capacity.
    pub fn agent_subject(&self, agent: &str) -> String {
        format!("helpline.{}.agent.{agent}", self.region)
    }

    pub fn event_subjects(&self) -> Vec<String> {
        vec![
            self.all_tickets(),
            format!("helpline.{}.agent.*", self.region),
        ]
    }

    /// `HELPLINE_<REGION>_DEADLETTER`: events consumers could not handle.
    pub fn dead_letter_stream(&self) -> &str {
        &self.dead_letter_stream
    }

    /// `helpline.<region>.deadletter.<consumer>`.
    pub fn dead_letter_subject(&self, consumer: &str) -> String {
        format!("helpline.{}.deadletter.{consumer}", self.region)
    }

    pub fn dead_letter_subjects(&self) -> String {
        format!("helpline.{}.deadletter.*", self.region)
    }

    /// `helpline.<region>.replay.<consumer>`: dead letters an operator sent back to their
    /// consumer, in the dead-letter stream; the consumer reads them beside the log.
    pub fn replay_subject(&self, consumer: &str) -> String {
        format!("helpline.{}.replay.{consumer}", self.region)
    }

    pub fn replay_subjects(&self) -> String {
        format!("helpline.{}.replay.*", self.region)
    }

    /// KV: channel contact → the customer's open ticket.
    pub fn contacts_bucket(&self) -> String {
        format!("helpline-{}-contacts", self.region)
    }

    /// `<channel>.<customer pseudonym>`: the customer's key in the contacts bucket; never
    /// the contact itself.
    pub fn contact_key(&self, channel: Channel, customer: &CustomerId) -> String {
        format!("{}.{customer}", channel.as_str())
    }

    /// KV: ticket → snapshot (state and last applied sequence).
    pub fn snapshots_bucket(&self) -> String {
        format!("helpline-{}-snapshots", self.region)
    }

    /// KV: customer → data key; deleting a key erases that customer's personal data.
    pub fn customer_keys_bucket(&self) -> String {
        format!("helpline-{}-customer-keys", self.region)
    }

    pub fn buckets(&self) -> [String; 3] {
        [
            self.contacts_bucket(),
            self.snapshots_bucket(),
            self.customer_keys_bucket(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let layout = Layout::new("de").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(layout.event_stream(), "HELPLINE_DE");
        assert_eq!(layout.dead_letter_stream(), "HELPLINE_DE_DEADLETTER");
        assert_eq!(
            layout.ticket_subject(TicketId(uuid::Uuid::nil())),
            "helpline.de.ticket.00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(layout.agent_subject("a-1"), "helpline.de.agent.a-1");
        assert_eq!(layout.snapshots_bucket(), "helpline-de-snapshots");
    }

    #[test]
    fn refuses_regions_that_would_break_subjects() {
        for bad in [
            "",
            "d",
            "DE",
            "de.x",
            "de*",
            "de>",
            "de x",
            "abcdefghijklmnopq",
        ] {
            assert!(
                matches!(Layout::new(bad), Err(StoreError::InvalidRegion(_))),
                "{bad:?}"
            );
        }
    }
}
