//! One customer across channels: contacts linked to each other.
//!
//! A contact (a customer's address on one channel) is what the rest of helpline calls a
//! customer: one pseudonym, one data key, one chain of tickets. When an agent has verified
//! that the person writing on web chat is the one who wrote on WhatsApp, the two contacts
//! are **linked**: each contact's own link ledger names the other. The person is then
//! every contact reachable through links — their **group** — and export and erasure
//! cover the whole group; unlinking takes one link back.
//!
//! Two pure parts, in the style of the ticket's `decide`/`evolve`:
//!
//! - [`Links::decide`] says what a link or unlink request changes in one contact's
//!   ledger, or why it may not. Every [`LinksChanged`] carries the whole set after it, so
//!   the ledger's latest event is its state.
//! - [`Group`] walks the links from one contact, a ledger at a time, as the caller reads
//!   them: the contacts it reaches in the order it reached them, so that an erasure can
//!   take them from the farthest back to the first.
//!
//! A link is two facts, one in each contact's ledger, written one after the other; the
//! caller completes an interrupted link by asking again (both decisions are idempotent).
//! Contacts are named by a key type `K` the caller chooses (the event store's
//! pseudonyms): this crate never sees one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::event::Channel;

/// Contacts one contact may be linked to: a person with more addresses than this is not
/// one person, and a walk over the group stays bounded.
pub const MAX_LINKS: usize = 16;

/// Contacts one group may hold, for the same reason.
pub const MAX_GROUP: usize = 32;

/// One contact's links: the other contacts it is linked to, with their channels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Links<K: Ord> {
    linked: BTreeMap<K, Channel>,
}

impl<K: Ord> Default for Links<K> {
    fn default() -> Self {
        Self {
            linked: BTreeMap::new(),
        }
    }
}

/// What someone asks of one contact's links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkRequest<K> {
    /// `other` (on `channel`) is the same person.
    Link { other: K, channel: Channel },
    /// `other` is not, after all.
    Unlink { other: K },
}

/// Who linked or unlinked, and on what grounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkedBy {
    /// An agent (or supervisor) who checked it with the customer.
    Agent(crate::AgentId),
    /// The bot: the customer typed the one-time code sent to their other contact.
    OneTimeCode,
}

impl LinkedBy {
    pub fn as_string(&self) -> String {
        match self {
            LinkedBy::Agent(agent) => format!("agent:{agent}"),
            LinkedBy::OneTimeCode => "one-time-code".to_owned(),
        }
    }

    /// Reads what [`LinkedBy::as_string`] wrote.
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once(':') {
            Some(("agent", agent)) if !agent.is_empty() => {
                Some(LinkedBy::Agent(crate::AgentId(agent.to_owned())))
            }
            None if text == "one-time-code" => Some(LinkedBy::OneTimeCode),
            _ => None,
        }
    }
}

/// A contact's links changed: the whole set after the change, and the change itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinksChanged<K: Ord> {
    pub linked: BTreeMap<K, Channel>,
    pub change: LinkRequest<K>,
}

/// Why a link may not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("a contact cannot be linked to itself")]
    SameContact,
    #[error("a contact is linked to at most {MAX_LINKS} others")]
    TooManyLinks,
}

impl<K: Ord + Clone> Links<K> {
    /// The links a ledger's latest [`LinksChanged`] holds.
    pub fn from_linked(linked: BTreeMap<K, Channel>) -> Self {
        Self { linked }
    }

    pub fn linked(&self) -> &BTreeMap<K, Channel> {
        &self.linked
    }

    pub fn is_linked(&self, other: &K) -> bool {
        self.linked.contains_key(other)
    }

    /// What `request` changes in the links of contact `me`: `None` when they already say
    /// so (a second link of the same two, an unlink of two that are not linked), so that
    /// asking again after an interruption writes only what is missing.
    pub fn decide(
        &self,
        me: &K,
        request: LinkRequest<K>,
    ) -> Result<Option<LinksChanged<K>>, LinkError> {
        let mut linked = self.linked.clone();
        match &request {
            LinkRequest::Link { other, .. } if other == me => return Err(LinkError::SameContact),
            LinkRequest::Link { other, channel } => {
                if linked.get(other) == Some(channel) {
                    return Ok(None);
                }
                if !linked.contains_key(other) && linked.len() >= MAX_LINKS {
                    return Err(LinkError::TooManyLinks);
                }
                linked.insert(other.clone(), *channel);
            }
            LinkRequest::Unlink { other } => {
                if linked.remove(other).is_none() {
                    return Ok(None);
                }
            }
        }
        Ok(Some(LinksChanged {
            linked,
            change: request,
        }))
    }

    /// The links after `changed`.
    pub fn evolve(self, changed: &LinksChanged<K>) -> Self {
        Self {
            linked: changed.linked.clone(),
        }
    }
}

/// A walk over the contacts linked, directly or through others, to a first one: the
/// caller asks [`Group::next_to_read`] whose ledger to read, and tells the group what it
/// holds with [`Group::learn`], until nothing is left to read.
#[derive(Clone, Debug)]
pub struct Group<K: Ord> {
    /// Reached, in the order reached (breadth first), with the channel when known.
    members: Vec<(K, Option<Channel>)>,
    seen: BTreeSet<K>,
    to_read: VecDeque<K>,
    /// More contacts were linked than [`MAX_GROUP`] allows; the rest were left out.
    pub truncated: bool,
}

impl<K: Ord + Clone> Group<K> {
    /// A group of one, `first`, whose ledger is read first.
    pub fn of(first: K) -> Self {
        Self {
            members: vec![(first.clone(), None)],
            seen: BTreeSet::from([first.clone()]),
            to_read: VecDeque::from([first]),
            truncated: false,
        }
    }

    /// The next contact whose links are to be read; `None` when the walk is over.
    pub fn next_to_read(&mut self) -> Option<K> {
        self.to_read.pop_front()
    }

    /// What `contact`'s ledger says: every contact it names joins the group.
    pub fn learn(&mut self, links: &Links<K>) {
        for (other, channel) in &links.linked {
            if self.seen.contains(other) {
                if let Some(member) = self.members.iter_mut().find(|(k, _)| k == other) {
                    member.1.get_or_insert(*channel);
                }
                continue;
            }
            if self.members.len() >= MAX_GROUP {
                self.truncated = true;
                continue;
            }
            self.seen.insert(other.clone());
            self.members.push((other.clone(), Some(*channel)));
            self.to_read.push_back(other.clone());
        }
    }

    /// Every contact reached, the first one first, each after the one it was reached
    /// through.
    pub fn members(&self) -> impl Iterator<Item = &K> {
        self.members.iter().map(|(k, _)| k)
    }

    /// Every contact reached with its channel as a link named it (`None` for the first
    /// one, unless a link back named it).
    pub fn members_with_channels(&self) -> &[(K, Option<Channel>)] {
        &self.members
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}
