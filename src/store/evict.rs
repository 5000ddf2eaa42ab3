//! Keeping the store under its memory limit, and giving expired items' memory back.
//!
//! Eviction is sampled LRU, as memcached's and Redis's approximations are: a hand walks
//! each shard's buckets; visits sample a few items (across shards when a shard holds
//! fewer) and evict the one unused the longest, by the 7-bit epoch in its access byte.
//! Items never read since they were written count as older by a quarter of the cache's
//! turnover, so a flood of one-time keys is evicted before items that are being read
//! (scan resistance), and an item just written still outlives ones nobody has touched
//! for longer. Shards are visited in turn, one lock at a time, a bounded number of
//! buckets per visit: no request does unbounded work, and a hit never pays for eviction.

use std::sync::atomic::Ordering::Relaxed;

use super::item::access;
use super::walk::DUMP_QUIET;
use super::{BUCKET_BYTES, Room, SHARDS, Shard, Store, write};
use crate::clock::RelTime;
use crate::watch;

/// Buckets one visit to a shard looks at, at most.
const BUCKETS_PER_VISIT: usize = 32;

/// Items one visit compares (Redis samples 5; more is closer to true LRU).
const SAMPLE: usize = 8;

/// How much older a never-read item counts, in epochs (64 epochs = one turnover).
const UNFETCHED_BONUS: u8 = 16;

/// Most buckets eviction looks at for one request, so a request's work stays bounded even
/// when a large value must displace many small ones.
const MAX_EVICT_BUCKETS: usize = 1 << 17;

/// The best eviction candidate of a sample that spans shards.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: u8,
    shard: usize,
    bucket: usize,
    /// Where the item's key lies: tells it from an item put in its bucket since.
    block: usize,
}

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
        // The sample so far: a shard of few items (large values spread over 64 shards)
        // offers only those, so visits add up until SAMPLE items have been compared.
        let mut best: Option<Candidate> = None;
        let mut sampled = 0;
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
            let at = self.hand.fetch_add(1, Relaxed) % SHARDS;
            let mut s = write(&self.shards[at]);
            if s.table.is_empty() {
                empty_visits += 1;
                continue;
            }
            empty_visits = 0;
            let (victim, n) = self.sample(&mut s, now, &mut looked);
            sampled += n;
            if let Some((score, i)) = victim
                && best.is_none_or(|b| score > b.score)
            {
                best = Some(Candidate { score, shard: at, bucket: i, block: s.item(i).key().as_ptr().addr() });
            }
            // Expired items removed on the way may already have made the room.
            if sampled >= SAMPLE
                && self.used.load(Relaxed) + need > limit
                && let Some(b) = best.take()
            {
                sampled = 0;
                if b.shard != at {
                    drop(s);
                    s = write(&self.shards[b.shard]);
                }
                // Unless another request took or replaced it since it was sampled.
                if s.table.get_bucket(b.bucket).is_some_and(|it| it.key().as_ptr().addr() == b.block) {
                    self.evict(&mut s, b.bucket, now);
                }
            }
            self.compact(&mut s, now);
        }
        Room::Made
    }

    /// One visit's sample: walks the shard's hand over up to [`BUCKETS_PER_VISIT`]
    /// buckets, reclaiming dead items on the way, and returns the least recently used of
    /// up to [`SAMPLE`] live items (none with `-M`) with its score, and how many it
    /// compared. Adds the buckets seen to `looked`.
    fn sample(&self, s: &mut Shard, now: RelTime, looked: &mut usize) -> (Option<(u8, usize)>, usize) {
        let buckets = s.table.num_buckets();
        let epoch = self.epoch();
        let mut victim: Option<(u8, usize)> = None;
        let mut sampled = 0;
        for _ in 0..BUCKETS_PER_VISIT.min(buckets) {
            *looked += 1;
            let i = s.hand % buckets;
            s.hand = (i + 1) % buckets;
            let Some(it) = s.table.get_bucket(i) else { continue };
            if self.dead(it, now).is_some() {
                self.remove(s, i, now); // expired: reclaimed, not evicted
                continue;
            }
            if !self.evictions {
                continue; // -M: only expired items give way
            }
            let a = s.access(i);
            let age = epoch.wrapping_sub(a & access::EPOCH) & access::EPOCH;
            let score = age + if a & access::FETCHED == 0 { UNFETCHED_BONUS } else { 0 };
            if victim.is_none_or(|(best, _)| score > best) {
                victim = Some((score, i));
            }
            sampled += 1;
            if sampled == SAMPLE {
                break;
            }
        }
        (victim, sampled)
    }

    fn evict(&self, s: &mut Shard, i: usize, now: RelTime) {
        let it = self.remove(s, i, now);
        self.stats.local().evictions.fetch_add(1, Relaxed);
        let fetched = it.access() & access::FETCHED != 0;
        if !fetched {
            self.stats.local().evicted_unfetched.fetch_add(1, Relaxed);
        }
        if self.log.wants(watch::kind::EVICTIONS) {
            let (key, value) = (it.key(), it.value());
            let size = crate::memcached::item_size(key.len(), it.flags(), value.len());
            self.log.log(&watch::Event::Eviction {
                key,
                fetched,
                ttl: if it.exptime() == 0 { -1 } else { i64::from(it.exptime().wrapping_sub(now) as i32) },
                la: now.wrapping_sub(it.time()) as i32,
                clsid: crate::memcached::slab_class(size, self.max_item_size),
                size: value.len(),
            });
        }
    }

    /// Before an insert into a full table of a full cache: evicts from this shard to free
    /// a bucket instead of doubling the table. Doubling would be charged (ten bytes a
    /// bucket), the charge would evict items from every shard, and the table would sit
    /// half empty: with hashbrown's power-of-two tables that costs about 6 bytes per item
    /// at steady state. Only a shard holding at least its share of the items does this, so
    /// a shard of a few small items among large ones still grows. Bounded: an erase that
    /// leaves a tombstone frees no bucket, and after a few such the table grows anyway.
    pub(super) fn evict_for_bucket(&self, s: &mut Shard, incoming: usize, now: RelTime) {
        let growth = s.table.num_buckets() * BUCKET_BYTES;
        let full_cache = self.used.load(Relaxed) + incoming + growth > self.limit.load(Relaxed);
        if !(self.evictions && full_cache && s.table.len() * SHARDS >= self.len()) {
            return;
        }
        let mut looked = 0; // bounded by the four visits instead
        for _ in 0..4 {
            if s.table.len() < s.table.capacity() {
                return;
            }
            if let (Some((_, i)), _) = self.sample(s, now, &mut looked) {
                self.evict(s, i, now);
            }
        }
    }

    /// Shrinks a sparse table ([`Shard::compact`]) and refunds what it gave back, unless a
    /// metadump ran in the last [`DUMP_QUIET`] seconds: a rebuilt table sends a dump back
    /// to the shard's first bucket (see [`Store::dump`]), and compacting is only a saving.
    fn compact(&self, s: &mut Shard, now: RelTime) {
        let dumped_at = self.dumped_at.load(Relaxed);
        if dumped_at != 0 && now.saturating_add(1).saturating_sub(dumped_at) < DUMP_QUIET {
            return;
        }
        let given_back = s.compact(&self.hasher);
        self.refund(given_back);
    }

    /// When small items fill the slab's pages badly (after the mix of sizes changed), moves
    /// the items out of the sparsest pages so those go back to the OS. Cheap when there is
    /// nothing to do (a few atomic loads and one lock), so the background task checks
    /// often with `only_if_severe` (a burst), and less often for any slack worth a pass
    /// over the tables.
    pub fn defragment(&self, only_if_severe: bool) {
        if self.doom_sparse(only_if_severe) {
            self.move_out_of_doomed_pages();
        }
    }

    /// The cheap half of [`Store::defragment`]: dooms the sparsest pages if slack is
    /// worth it, and says whether items must now be moved out of them.
    pub fn doom_sparse(&self, only_if_severe: bool) -> bool {
        self.slab.doom_sparse(only_if_severe)
    }

    /// Moves every item in a doomed slab page to another slot, so the page empties and
    /// goes back to the OS: one pass over every table, a shard's lock held for its own.
    /// Runs only when the slab has doomed pages, which takes a change in item sizes.
    pub fn move_out_of_doomed_pages(&self) {
        for shard in self.shards.iter() {
            let mut s = write(shard);
            for i in 0..s.table.num_buckets() {
                if let Some(moved) = s.table.get_bucket(i).and_then(|it| it.relocated(&self.slab)) {
                    // Same length, same slot size: nothing to re-charge.
                    *s.item_mut(i) = moved;
                    self.stats.local().relocated.fetch_add(1, Relaxed);
                }
            }
        }
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
            // With no deadline ever given and no flush pending nothing can be dead: the
            // walk (a cache miss per item) is skipped.
            let walk = if self.may_have_dead() { buckets_per_shard.min(buckets) } else { 0 };
            for _ in 0..walk {
                let i = s.sweep % buckets;
                s.sweep = (i + 1) % buckets;
                if s.table.get_bucket(i).is_some_and(|it| self.dead(it, now).is_some()) {
                    self.remove(&mut s, i, now);
                    freed += 1;
                }
            }
            self.compact(&mut s, now);
        }
        self.slab.trim();
        self.defragment(false);
        freed
    }
}
