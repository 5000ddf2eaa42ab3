//! Keeping the store under its memory limit, and giving expired items' memory back.
//!
//! Eviction is CLOCK over each shard's own table: a hand walks the buckets; an item read
//! since the hand last passed (its reference bit set) has the bit cleared and stays, an
//! item not read is evicted. New items start unreferenced, so a flood of one-time keys is
//! evicted before items that are being read. Shards are visited in turn, one lock at a
//! time, a bounded number of buckets per visit, so no request does unbounded work.

use std::sync::atomic::Ordering::Relaxed;

use super::item::bit;
use super::{Room, SHARDS, Store, write};

/// Buckets one visit to a shard looks at.
const BUCKETS_PER_VISIT: usize = 32;

/// Most buckets eviction looks at for one request, so a request's work stays bounded even
/// when a large value must displace many small ones.
const MAX_EVICT_BUCKETS: usize = 1 << 17;

/// With `-M`, the most buckets a store looks at for expired items before it is refused.
const MAX_RECLAIM_BUCKETS: usize = 4096;

impl Store {
    /// Evicts until `need` more bytes fit under the limit. Must not be called while holding
    /// a shard lock.
    pub(super) fn make_room(&self, need: usize) -> Room {
        let limit = self.limit.load(Relaxed);
        if need > limit {
            return Room::Never;
        }
        let now = self.clock.now();
        let mut looked = 0;
        let mut empty_visits = 0;
        // With evictions off only expired items can make room; background expiry finds
        // most of them, so a refused store does not sweep the whole cache looking.
        let max_looked = if self.evictions { MAX_EVICT_BUCKETS } else { MAX_RECLAIM_BUCKETS };
        while self.used.load(Relaxed) + need > limit {
            if looked >= max_looked {
                return if self.evictions { Room::Partial } else { Room::Never };
            }
            if empty_visits >= SHARDS {
                return Room::Never; // every shard is empty: the table alone fills the limit
            }
            let shard = &self.shards[self.hand.fetch_add(1, Relaxed) % SHARDS];
            let mut s = write(shard);
            let buckets = s.table.num_buckets();
            if s.table.is_empty() {
                empty_visits += 1;
                continue;
            }
            empty_visits = 0;
            for _ in 0..BUCKETS_PER_VISIT.min(buckets) {
                if self.used.load(Relaxed) + need <= limit {
                    break;
                }
                looked += 1;
                let i = s.hand % buckets;
                s.hand = (i + 1) % buckets;
                if s.table.get_bucket(i).is_none() {
                    continue;
                }
                let dead = self.dead(s.item(i), now).is_some();
                if !dead && !self.evictions {
                    continue; // -M: only expired items give way
                }
                if !dead && s.bits(i) & bit::REFERENCED != 0 {
                    s.clear_bit(i, bit::REFERENCED);
                    continue;
                }
                let it = self.remove(&mut s, i, now);
                if !dead {
                    self.stats.evictions.fetch_add(1, Relaxed);
                    if it.bits() & bit::FETCHED == 0 {
                        self.stats.evicted_unfetched.fetch_add(1, Relaxed);
                    }
                }
            }
            let freed = s.compact(&self.hasher);
            self.refund(freed);
        }
        Room::Made
    }

    /// Background expiry: looks at up to `buckets_per_shard` buckets of every shard and
    /// removes items that have expired or been flushed. Returns how many were removed.
    /// Each shard's lock is held only for its own short scan.
    pub fn reclaim_expired(&self, buckets_per_shard: usize) -> usize {
        let now = self.clock.now();
        let mut freed = 0;
        for shard in self.shards.iter() {
            let mut s = write(shard);
            let buckets = s.table.num_buckets();
            if s.table.is_empty() {
                continue;
            }
            for _ in 0..buckets_per_shard.min(buckets) {
                let i = s.sweep % buckets;
                s.sweep = (i + 1) % buckets;
                if s.table.get_bucket(i).is_some_and(|it| self.dead(it, now).is_some()) {
                    self.remove(&mut s, i, now);
                    freed += 1;
                }
            }
            let given_back = s.compact(&self.hasher);
            self.refund(given_back);
        }
        freed
    }
}
