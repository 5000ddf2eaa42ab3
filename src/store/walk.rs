//! Walking every item, changing nothing; each live item is shown as a lookup shows it
//! ([`Found`]). `lru_crawler metadump` carries a cursor between steps ([`DumpCursor`]): its
//! walk holds a shard's read lock for a few hundred buckets at a time and survives tables
//! rebuilt under it. `stats cachedump` gathers the most recently used items ([`Recent`]):
//! a shard at a time under its read lock, keeping only what can still be listed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
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
            let buckets = if s.is_empty() { 0 } else { s.buckets() };
            let end = buckets.min(at.bucket.saturating_add(DUMP_STEP.min(budget)));
            budget -= end.saturating_sub(at.bucket);
            while at.bucket < end {
                let i = s.walk_order(at.bucket);
                at.bucket += 1;
                if let Some(it) = s.get(i)
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

/// The most recently used live items, for `stats cachedump`: gathered a shard at a time by
/// [`Store::gather_recent`], at most `limit` of them, and only as many, most recent first,
/// as fit in `budget` at the cost the caller puts on each. Recency is the item's last
/// access time (memcached's `it->time`), then within a second its CAS: the newest write
/// first. An item is let go as soon as more recent ones fill the limit or the budget, so
/// what is held is bounded by them.
#[derive(Debug)]
pub struct Recent<T> {
    /// Least recent on top.
    heap: BinaryHeap<Ranked<T>>,
    limit: usize,
    budget: usize,
    cost: usize,
    /// The most recent item let go: nothing less recent can be listed, since the list
    /// stops at the first item that does not fit.
    floor: Option<Rank>,
    /// The next shard to walk.
    shard: usize,
}

/// An item's recency: last access, then CAS.
type Rank = (RelTime, u64);

#[derive(Debug)]
struct Ranked<T> {
    rank: Rank,
    cost: usize,
    value: T,
}

// Ordered by recency, reversed: the heap's greatest is the least recent.
impl<T> Ord for Ranked<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.rank.cmp(&self.rank)
    }
}

impl<T> PartialOrd for Ranked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> PartialEq for Ranked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.rank == other.rank
    }
}

impl<T> Eq for Ranked<T> {}

impl<T> Recent<T> {
    /// At most `limit` items (`None`: no limit) whose costs add up to at most `budget`.
    pub fn new(limit: Option<usize>, budget: usize) -> Self {
        Self { heap: BinaryHeap::new(), limit: limit.unwrap_or(usize::MAX), budget, cost: 0, floor: None, shard: 0 }
    }

    /// Whether an item of `rank` cannot be listed: no more recent than one let go, or
    /// than any held while those fill the limit or the budget.
    fn passes_over(&self, rank: Rank) -> bool {
        self.floor.is_some_and(|floor| rank <= floor)
            || self
                .heap
                .peek()
                .is_some_and(|least| rank <= least.rank && (self.heap.len() >= self.limit || self.cost >= self.budget))
    }

    fn push(&mut self, rank: Rank, cost: usize, value: T) {
        self.heap.push(Ranked { rank, cost, value });
        self.cost += cost;
        // The least recent goes while the rest are enough without it: an item is listed
        // only if it and every more recent one fit.
        while self.heap.len() > self.limit || self.cost > self.budget {
            let Some(least) = self.heap.pop() else { break };
            self.cost -= least.cost;
            self.floor = self.floor.max(Some(least.rank));
        }
    }

    /// How many items and how much cost are held.
    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, usize) {
        (self.heap.len(), self.cost)
    }

    /// Takes the items gathered, most recent first.
    pub fn take_sorted(&mut self) -> Vec<T> {
        self.cost = 0;
        std::mem::take(&mut self.heap).into_sorted_vec().into_iter().map(|r| r.value).collect()
    }
}

impl Store {
    /// `stats cachedump`: offers `recent` the live items of the shards from where it
    /// stopped, each shard walked whole under its read lock, until `DUMP_BUDGET` buckets
    /// were looked at. `show` gives an item's entry and its cost, or `None` to leave it
    /// out; it is asked only about items recent enough to be kept. True when every shard
    /// has been walked. An item there throughout is offered once; one stored or removed
    /// meanwhile may or may not be.
    pub fn gather_recent<T>(
        &self,
        recent: &mut Recent<T>,
        mut show: impl FnMut(Found<'_>) -> Option<(T, usize)>,
    ) -> bool {
        let now = self.clock.now();
        let mut budget = DUMP_BUDGET;
        while let Some(shard) = self.shards.get(recent.shard) {
            if budget == 0 {
                return false;
            }
            let s = read(shard);
            let buckets = if s.is_empty() { 0 } else { s.buckets() };
            budget = budget.saturating_sub(buckets.max(1));
            for i in s.occupied() {
                let it = s.item(i);
                let rank = (it.time(), it.cas());
                if self.dead(it, now).is_some() || recent.passes_over(rank) {
                    continue;
                }
                if let Some((value, cost)) = show(Before::of(&s, i).found(it, false)) {
                    recent.push(rank, cost, value);
                }
            }
            recent.shard += 1;
        }
        true
    }
}
