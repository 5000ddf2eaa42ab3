//! Walking every item: the cursor `lru_crawler metadump` carries between steps; each live
//! item is shown as a lookup shows it ([`Found`]), changing nothing. A walk holds a shard's read lock for a few hundred
//! buckets at a time and survives tables rebuilt under it.

use std::sync::atomic::Ordering::Relaxed;

use super::Store;
use super::lookup::{Before, Found};
use super::shard::read;
use crate::clock::RelTime;

/// Where a walk over every item ([`Store::dump`]) carries on: a shard, a bucket in it, and
/// the shard's rebuild count when the walk was last there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpCursor {
    shard: usize,
    bucket: usize,
    rebuilds: u32,
}

/// Buckets a walk looks at per hold of a shard's read lock, so that writers to the shard
/// wait on it for a few microseconds at a time.
const DUMP_STEP: usize = 256;

/// Buckets one call of [`Store::dump`] looks at, at most, however few of them hold items
/// to show (a class with no items, a cache just flushed): about a millisecond's work, so
/// the connection gives its thread's other connections their turn between calls.
pub(super) const DUMP_BUDGET: usize = 1 << 16;

/// Seconds after a dump's last step during which tables are not compacted.
pub(super) const DUMP_QUIET: RelTime = 2;

impl Store {
    /// `lru_crawler metadump`: shows `f` the key and bookkeeping of every live item from
    /// `at` on, until `f` says it has had enough for now (returns false) or
    /// [`DUMP_BUDGET`] buckets were looked at. Returns where to carry on, or `None` when
    /// every item has been shown. An item there throughout the walk is shown at least
    /// once: a shard whose table was rebuilt since the walk was last in it (its buckets
    /// moved) is walked again from its start, so its items shown before are shown again.
    /// An item stored or removed meanwhile may or may not be shown, as with memcached.
    pub fn dump(&self, mut at: DumpCursor, mut f: impl FnMut(Found<'_>) -> bool) -> Option<DumpCursor> {
        let now = self.clock.now();
        self.dumped_at.store(now.saturating_add(1), Relaxed);
        let mut budget = DUMP_BUDGET;
        while let Some(shard) = self.shards.get(at.shard) {
            if budget == 0 {
                return Some(at);
            }
            let s = read(shard);
            if s.rebuilds != at.rebuilds {
                at = DumpCursor { rebuilds: s.rebuilds, bucket: 0, ..at };
            }
            let buckets = if s.table.is_empty() { 0 } else { s.table.num_buckets() };
            let end = buckets.min(at.bucket.saturating_add(DUMP_STEP.min(budget)));
            budget -= end.saturating_sub(at.bucket);
            while at.bucket < end {
                let i = at.bucket;
                at.bucket += 1;
                if let Some(it) = s.table.get_bucket(i)
                    && self.dead(it, now).is_none()
                    && !f(Before::of(&s, i).found(it, false))
                {
                    return Some(at);
                }
            }
            if at.bucket >= buckets {
                // The next shard's count is taken when the walk gets there.
                at = DumpCursor { shard: at.shard + 1, ..DumpCursor::default() };
            }
        }
        None
    }
}
