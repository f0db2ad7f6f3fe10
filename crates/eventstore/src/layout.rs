//! Names of the region's streams, subjects and buckets (DESIGN §4).

use helpline_domain::{Channel, TicketId};

use crate::error::StoreError;
use crate::seal::CustomerId;

/// Slots of the ticket subjects. Part of every stored subject, so it never changes; the
/// partition count of a consumer (at most this) can.
pub const TICKET_SLOTS: u32 = 64;

/// A ticket's slot: FNV-1a of its id's text, modulo [`TICKET_SLOTS`]. Spreads tickets
/// evenly whatever their ids look like (time-ordered UUIDv7 or name-based UUIDv5).
pub fn ticket_slot(ticket: TicketId) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in ticket
        .0
        .hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .bytes()
    {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % TICKET_SLOTS
}

/// The partition of a ticket subject (`…ticket.<slot>.<id>`), without decoding anything.
pub fn subject_partition(subject: &str, partitions: u32) -> u32 {
    let slot = subject
        .rsplit('.')
        .nth(1)
        .and_then(|slot| slot.parse::<u32>().ok())
        .unwrap_or(0);
    slot % partitions.max(1)
}

/// How long a widget session's conversation is kept for the widget to show it again
/// ([`Layout::widget_stream`]).
pub const WIDGET_HISTORY: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// How long a file attached in the widget waits for ingress to fetch it.
pub const WIDGET_UPLOAD_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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

    /// `helpline.<region>.ticket.<slot>.<ticket_id>`: one ticket's events, in order. The
    /// slot ([`ticket_slot`], two digits) is what consumers partition the tickets by.
    pub fn ticket_subject(&self, ticket: TicketId) -> String {
        format!(
            "helpline.{}.ticket.{:02}.{}",
            self.region,
            ticket_slot(ticket),
            ticket.0
        )
    }

    /// `helpline.<region>.ticket.*.*`: every ticket.
    pub fn all_tickets(&self) -> String {
        format!("helpline.{}.ticket.*.*", self.region)
    }

    /// The subjects of partition `partition` of `partitions`: every ticket whose slot is
    /// `partition` modulo `partitions`. With one partition, every ticket.
    pub fn partition_filters(&self, partition: u32, partitions: u32) -> Vec<String> {
        if partitions <= 1 {
            return vec![self.all_tickets()];
        }
        (0..TICKET_SLOTS)
            .filter(|slot| slot % partitions == partition)
            .map(|slot| format!("helpline.{}.ticket.{slot:02}.*", self.region))
            .collect()
    }

    /// `helpline-<region>-members`: which process runs which consumer, by heartbeat;
    /// consumers' partitions are shared out among the live ones.
    pub fn members_bucket(&self) -> String {
        format!("helpline-{}-members", self.region)
    }

    /// `helpline.<region>.agent.<agent_id>`: one agent's presence and capacity.
    pub fn agent_subject(&self, agent: &str) -> String {
        format!("helpline.{}.agent.{agent}", self.region)
    }

    /// `helpline.<region>.customer.<customer pseudonym>`: the customer's own ledger on one
    /// channel, facts that outlive their tickets (their consent to notifications).
    pub fn customer_subject(&self, customer: &CustomerId) -> String {
        format!("helpline.{}.customer.{customer}", self.region)
    }

    /// `helpline.<region>.links.<customer pseudonym>`: the contacts one contact is linked
    /// to (the same customer on other channels), sealed under its key.
    pub fn links_subject(&self, customer: &CustomerId) -> String {
        format!("helpline.{}.links.{customer}", self.region)
    }

    pub fn event_subjects(&self) -> Vec<String> {
        vec![
            self.all_tickets(),
            format!("helpline.{}.agent.*", self.region),
            format!("helpline.{}.customer.*", self.region),
            format!("helpline.{}.links.*", self.region),
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

    /// Agents whose bearer tokens were revoked: agent id → the Unix second up to which
    /// their tokens are void. Written by AgentDesk's `RevokeTokens`, followed by every
    /// process that checks tokens.
    pub fn revocations_bucket(&self) -> String {
        format!("helpline-{}-revocations", self.region)
    }

    /// Agents' console passwords: agent id → Argon2id hash (PHC string). Written by
    /// `helpline agent passwd`, read by the console at each sign-in.
    pub fn credentials_bucket(&self) -> String {
        format!("helpline-{}-credentials", self.region)
    }

    /// Object store: the attachments customers sent, each sealed under its customer's key
    /// (ingress stores them, agents' tools read them).
    pub fn media_bucket(&self) -> String {
        format!("helpline-{}-media", self.region)
    }

    /// `HELPLINE_<REGION>_WIDGET`: what the web-chat widget's customers see of their
    /// conversation — their own messages and helpline's replies, each sealed under the
    /// customer's key — kept for [`WIDGET_HISTORY`] so a page opened again, or a widget
    /// reconnecting, finds it. Not the record of the ticket: the event log is.
    pub fn widget_stream(&self) -> String {
        format!("HELPLINE_{}_WIDGET", self.region.to_ascii_uppercase())
    }

    /// Object store: files customers attached in the web-chat widget, each sealed under the
    /// customer's key, kept [`WIDGET_UPLOAD_LIFETIME`] for ingress to fetch (it keeps its own
    /// copy in [`Layout::media_bucket`]).
    pub fn widget_uploads_bucket(&self) -> String {
        format!("helpline-{}-widget-uploads", self.region)
    }

    /// `helpline.<region>.widget.<customer pseudonym>`: one widget session's conversation.
    pub fn widget_subject(&self, customer: &CustomerId) -> String {
        format!("helpline.{}.widget.{customer}", self.region)
    }

    pub fn widget_subjects(&self) -> String {
        format!("helpline.{}.widget.*", self.region)
    }

    pub fn buckets(&self) -> [String; 5] {
        [
            self.contacts_bucket(),
            self.snapshots_bucket(),
            self.customer_keys_bucket(),
            self.revocations_bucket(),
            self.credentials_bucket(),
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
            format!(
                "helpline.de.ticket.{:02}.00000000-0000-0000-0000-000000000000",
                ticket_slot(TicketId(uuid::Uuid::nil()))
            )
        );
        assert_eq!(layout.agent_subject("a-1"), "helpline.de.agent.a-1");
        assert_eq!(layout.snapshots_bucket(), "helpline-de-snapshots");
    }

    #[test]
    fn partitions_cover_every_slot_exactly_once() {
        let layout = Layout::new("de").unwrap_or_else(|e| panic!("{e}"));
        for partitions in [1, 2, 3, 8, 64] {
            let mut all: Vec<String> = (0..partitions)
                .flat_map(|p| layout.partition_filters(p, partitions))
                .collect();
            let total = all.len();
            all.sort();
            all.dedup();
            assert_eq!(all.len(), total, "{partitions}: a slot in two partitions");
            if partitions > 1 {
                assert_eq!(total, TICKET_SLOTS as usize, "{partitions}");
            }
        }
        let ticket = TicketId(uuid::Uuid::now_v7());
        let subject = layout.ticket_subject(ticket);
        let partition = subject_partition(&subject, 8);
        let slot_filter = format!("helpline.de.ticket.{:02}.*", ticket_slot(ticket));
        assert!(
            layout
                .partition_filters(partition, 8)
                .contains(&slot_filter)
        );
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
