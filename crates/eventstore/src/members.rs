//! Sharing a consumer's partitions among the processes that run it.
//!
//! Every process running a partitioned consumer puts a heartbeat under
//! `<consumer>.<instance>` in the members bucket ([`crate::Layout::members_bucket`])
//! every [`HEARTBEAT`] and watches the others'. A member is live while its last heartbeat
//! is younger than [`MEMBER_TTL`]. Each partition belongs to the live member with the
//! highest rendezvous score ([`owner`]), so every process computes the same split from the
//! same members, a joining or leaving member moves only its own share, and a member that
//! dies without a word loses its partitions once its heartbeats stop.
//!
//! Membership only spreads the work. That no two processes pull one partition at once is
//! the server's promise: each partition's durable consumer has a pinned-client priority
//! group, so while the old owner still pulls, the new one waits on standby.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::kv;
use futures::StreamExt;

/// How often a member says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a member that joins others waits before it takes its share: they see its
/// first heartbeat and hand its partitions over at their next own heartbeat, within two.
pub const JOIN_GRACE: Duration = Duration::from_secs(2);
/// How long a member stays live after its last heartbeat.
pub const MEMBER_TTL: Duration = Duration::from_secs(4);
/// How long the bucket keeps a heartbeat (dead members' keys vanish after this).
pub const BUCKET_MAX_AGE: Duration = Duration::from_secs(60);

/// The live members of one consumer, as one process sees them.
#[derive(Debug, Default)]
pub struct Members {
    seen: HashMap<String, Instant>,
}

impl Members {
    /// Takes one entry of the watch on `<consumer>.*`.
    pub fn observe(&mut self, entry: &kv::Entry) {
        let Some((_, member)) = entry.key.split_once('.') else {
            return;
        };
        match entry.operation {
            kv::Operation::Put => {
                // An entry from before the watch started may be old already.
                let age = SystemTime::from(entry.created)
                    .elapsed()
                    .unwrap_or(Duration::ZERO);
                if age < MEMBER_TTL {
                    let seen = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                    self.seen.insert(member.to_owned(), seen);
                }
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                self.seen.remove(member);
            }
        }
    }

    /// The live members, `me` always among them.
    pub fn live(&mut self, me: &str) -> BTreeSet<String> {
        self.seen.retain(|_, seen| seen.elapsed() < MEMBER_TTL);
        let mut live: BTreeSet<String> = self.seen.keys().cloned().collect();
        live.insert(me.to_owned());
        live
    }
}

/// The partitions of `partitions` that `me` owns among `live` (rendezvous hashing).
pub fn owned(me: &str, live: &BTreeSet<String>, partitions: u32) -> BTreeSet<u32> {
    (0..partitions)
        .filter(|&p| owner(live, p).is_some_and(|owner| owner == me))
        .collect()
}

/// The member that owns `partition`: the highest score, ties to the smallest name.
pub fn owner(live: &BTreeSet<String>, partition: u32) -> Option<&str> {
    live.iter()
        .map(|member| (score(member, partition), member))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, member)| member.as_str())
}

fn score(member: &str, partition: u32) -> u64 {
    // FNV-1a, 64 bits: stable across processes and versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.bytes().chain([b'/']).chain(partition.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // A final mix, as FNV's low bits alone spread short keys poorly.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

/// Follows the members of `consumer` in `bucket`; yields each entry of the watch.
pub async fn watch(
    bucket: &kv::Store,
    consumer: &str,
) -> Result<impl futures::Stream<Item = kv::Entry> + use<>, kv::WatchError> {
    let watch = bucket.watch_with_history(format!("{consumer}.*")).await?;
    Ok(watch.filter_map(|entry| async move { entry.ok() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn every_partition_has_exactly_one_owner() {
        let live = members(&["a", "b", "c"]);
        let mut all = Vec::new();
        for member in &live {
            all.extend(owned(member, &live, 16));
        }
        all.sort_unstable();
        assert_eq!(all, (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn the_work_is_shared_by_every_member() {
        let live = members(&["a", "b", "c"]);
        for member in &live {
            assert!(!owned(member, &live, 16).is_empty(), "{member} has nothing");
        }
    }

    #[test]
    fn a_member_leaving_moves_only_its_own_partitions() {
        let before = members(&["a", "b", "c"]);
        let after = members(&["a", "b"]);
        for p in 0..16 {
            let was = owner(&before, p);
            if was != Some("c") {
                assert_eq!(owner(&after, p), was, "partition {p} moved");
            }
        }
    }
}
