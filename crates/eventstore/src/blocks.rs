//! Blocks of data keys made ahead: the stored form of one block, pure, no I/O.
//!
//! A new customer's key is not an entry of its own: a process makes keys ahead, a block at
//! a time (`block.<id>` in the key bucket, [`SLOTS`] keys each wrapped by the master key
//! for its slot), and a new customer's first event names the slot it was sealed under.
//! That event is the claim of the customer's first ticket, so one write both stores the
//! customer's words and binds the key to them ([`crate::keys`] has the rest).
//!
//! **Invariant:** a slot is handed out once, whether or not the event that names it is
//! stored: two customers never share a key, so erasing one never erases another.
//!
//! Erasing a customer rewrites their block with the slot blanked and the customer's
//! pseudonym in its place (a pseudonym is what envelopes and bucket keys already name
//! customers by), so every process that follows the bucket knows whose hot tickets to
//! drop. The generation counts the rewrites: 0 is a block as made, which tells nobody
//! anything.

use crate::seal::{BlockId, CustomerId, DataKey, KeyRef, MasterKey, WRAPPED_KEY_LEN};

/// Keys per block. A block's entry is about 39 KB; a process wastes at most the rest of
/// one block when it stops.
pub(crate) const SLOTS: usize = 512;

/// The layout of a block's value: this version byte, the generation (4 bytes, big-endian),
/// then [`SLOTS`] slots of [`WRAPPED_KEY_LEN`] bytes.
const BLOCK_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4;
/// An erased slot begins with this byte (a wrapped key begins with its version, 1), then
/// the erased customer's pseudonym, then zeros.
const ERASED: u8 = 0;

/// What a slot of a stored block holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Slot<'a> {
    /// A wrapped key: handed out to a customer or not yet.
    Key(&'a [u8]),
    /// Erased, with the pseudonym of the customer it was erased for (none for a slot
    /// blanked without one).
    Erased(Option<CustomerId>),
}

/// A block's value as stored, read.
#[derive(Debug)]
pub(crate) struct StoredBlock<'a> {
    pub generation: u32,
    bytes: &'a [u8],
}

/// Why a stored block cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a block of keys is malformed: {0}")]
pub(crate) struct MalformedBlock(&'static str);

/// Slot `slot` of `block`. Slots are numbered below [`SLOTS`], which a `u16` holds.
pub(crate) fn slot_at(block: BlockId, slot: usize) -> KeyRef {
    KeyRef {
        block,
        slot: u16::try_from(slot).unwrap_or(u16::MAX),
    }
}

/// A new block: [`SLOTS`] fresh keys, and the value to store, each key wrapped for its
/// slot. About a millisecond of work (two random draws and a wrap per key).
pub(crate) fn draw(
    master: &MasterKey,
    block: BlockId,
) -> Result<(Vec<DataKey>, Vec<u8>), MalformedBlock> {
    let keys: Vec<DataKey> = (0..SLOTS).map(|_| DataKey::generate()).collect();
    let wrapped: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .map(|(slot, key)| master.wrap_slot(slot_at(block, slot), key))
        .collect();
    Ok((keys, made(&wrapped)?))
}

/// A new block's value: generation 0, every slot a key wrapped for it.
fn made(wrapped: &[Vec<u8>]) -> Result<Vec<u8>, MalformedBlock> {
    if wrapped.len() != SLOTS {
        return Err(MalformedBlock("wrong number of keys"));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + SLOTS * WRAPPED_KEY_LEN);
    out.push(BLOCK_VERSION);
    out.extend_from_slice(&0u32.to_be_bytes());
    for key in wrapped {
        if key.len() != WRAPPED_KEY_LEN || key.first() == Some(&ERASED) {
            return Err(MalformedBlock("a key is not a wrapped key"));
        }
        out.extend_from_slice(key);
    }
    Ok(out)
}

impl<'a> StoredBlock<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MalformedBlock> {
        if bytes.first() != Some(&BLOCK_VERSION) {
            return Err(MalformedBlock("unknown version"));
        }
        if bytes.len() != HEADER_LEN + SLOTS * WRAPPED_KEY_LEN {
            return Err(MalformedBlock("wrong length"));
        }
        let generation = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        Ok(Self { generation, bytes })
    }

    /// The slot's content; `None` beyond the block.
    pub fn slot(&self, slot: usize) -> Option<Slot<'a>> {
        let start = HEADER_LEN + slot.checked_mul(WRAPPED_KEY_LEN)?;
        let bytes = self.bytes.get(start..start + WRAPPED_KEY_LEN)?;
        Some(match bytes.split_first() {
            Some((&ERASED, rest)) => Slot::Erased(
                std::str::from_utf8(rest.get(..32).unwrap_or_default())
                    .ok()
                    .and_then(CustomerId::parse),
            ),
            _ => Slot::Key(bytes),
        })
    }

    /// Every slot, in order.
    pub fn slots(&self) -> impl Iterator<Item = Slot<'a>> + '_ {
        (0..SLOTS).filter_map(|slot| self.slot(slot))
    }

    /// The block with `slot` erased for `customer`, one generation on; `None` when the
    /// slot was erased already (or is beyond the block).
    pub fn erase(&self, slot: usize, customer: &CustomerId) -> Option<Vec<u8>> {
        if !matches!(self.slot(slot)?, Slot::Key(_)) {
            return None;
        }
        let mut out = self.bytes.to_vec();
        out[1..HEADER_LEN].copy_from_slice(&self.generation.wrapping_add(1).max(1).to_be_bytes());
        let start = HEADER_LEN + slot * WRAPPED_KEY_LEN;
        let erased = &mut out[start..start + WRAPPED_KEY_LEN];
        erased.fill(0);
        erased[0] = ERASED;
        erased[1..33].copy_from_slice(customer.as_str().as_bytes());
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn block() -> (BlockId, Vec<u8>) {
        let id = BlockId::generate();
        let (_, value) = draw(&MasterKey::development(), id).unwrap();
        (id, value)
    }

    fn customer(n: u8) -> CustomerId {
        MasterKey::development().customer_id(helpline_domain::Channel::Viber, &format!("+49{n}"))
    }

    #[test]
    fn a_block_as_made_holds_a_key_in_every_slot_and_tells_nothing() {
        let (id, bytes) = block();
        let stored = StoredBlock::parse(&bytes).unwrap();
        assert_eq!(stored.generation, 0);
        assert_eq!(stored.slots().count(), SLOTS);
        let Some(Slot::Key(wrapped)) = stored.slot(SLOTS - 1) else {
            panic!("the last slot holds a key");
        };
        assert!(
            MasterKey::development()
                .unwrap_slot(slot_at(id, SLOTS - 1), wrapped)
                .is_ok()
        );
        assert_eq!(stored.slot(SLOTS), None);
    }

    #[test]
    fn erasing_a_slot_blanks_only_it_and_names_whom_it_was_erased_for() {
        let (_, bytes) = block();
        let stored = StoredBlock::parse(&bytes).unwrap();
        let erased = stored.erase(3, &customer(1)).unwrap();
        let after = StoredBlock::parse(&erased).unwrap();
        assert_eq!(after.generation, 1);
        assert_eq!(after.slot(3), Some(Slot::Erased(Some(customer(1)))));
        for slot in [0, 2, 4, SLOTS - 1] {
            assert_eq!(after.slot(slot), stored.slot(slot), "slot {slot}");
        }
        assert_eq!(
            after.erase(3, &customer(1)),
            None,
            "erasing twice changes nothing"
        );
        let twice = StoredBlock::parse(&erased)
            .unwrap()
            .erase(4, &customer(2))
            .unwrap();
        assert_eq!(StoredBlock::parse(&twice).unwrap().generation, 2);
    }

    #[test]
    fn anything_but_a_whole_block_is_refused() {
        let (_, bytes) = block();
        assert!(StoredBlock::parse(&bytes[..bytes.len() - 1]).is_err());
        assert!(StoredBlock::parse(&[]).is_err());
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(StoredBlock::parse(&other).is_err());
        assert!(made(&[vec![1u8; WRAPPED_KEY_LEN]]).is_err());
    }
}
