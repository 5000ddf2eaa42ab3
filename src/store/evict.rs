//! Keeping the store under its memory limit, and giving expired items' memory back.
//!
//! Eviction is sampled, as memcached's and Redis's LRU approximations are: a hand walks
//! each shard's buckets; visits sample a few items (across shards when a shard holds
//! fewer) and evict one of them. Which one follows S3-FIFO (Yang et al., SOSP 2023) with
//! the access byte for its queues: an item not read since it was written is on probation
//! (S3-FIFO's small queue), a read one is in the main part. While probationary items hold
//! more than the probation target's share of the cache, the sample's oldest probationary
//! item goes (FIFO order: its epoch is its write's); otherwise its least recently used
//! read item, unless that one was read again since eviction last passed it, which earns
//! it a second chance (CLOCK's reference bit, `access::AGAIN`, standing in for S3-FIFO's
//! frequency counter). So a sweep of one-time keys cycles through probation and leaves
//! the read items alone, while an item read once is kept as LRU would.
//!
//! An evicted key leaves a 16-bit fingerprint in its shard's ghost list (one entry per two
//! buckets, direct-mapped, charged with the table), tagged with the part it left. Written
//! again while it is there, it skips probation (`bit::ADMITTED`), as S3-FIFO's ghost
//! queue sends it to the main queue, and its tag moves the probation target as ARC moves
//! its split (Megiddo and Modha, FAST 2003): a key back from probation says probation was
//! too short, one back from the main part that the main part was too small, each weighed
//! by the other tag's count over its own. A fixed tenth, S3-FIFO's, loses to LRU where
//! popularity shifts abruptly (new keys need a longer probation) and the adaptation wins
//! that back.
//!
//! The share on probation is estimated from the samples themselves, so nothing is counted
//! per request; a read still only sets the access byte. Shards are visited in turn, one
//! lock at a time, a bounded number of buckets per visit: no request does unbounded work,
//! and a hit never pays for eviction.

use std::hash::BuildHasher;
use std::sync::atomic::Ordering::Relaxed;

use super::item::access;
use super::shard::probationary;
use super::walk::DUMP_QUIET;
use super::{BUCKET_BYTES, Room, SHARDS, Shard, Side, Store, write};
use crate::clock::RelTime;
use crate::watch;

/// Buckets one visit to a shard looks at, at most.
const BUCKETS_PER_VISIT: usize = 32;

/// Items one visit compares at least (Redis samples 5; more is closer to true LRU and
/// FIFO, but each is a header read, a cache miss in a large cache: 16 gained about a
/// tenth of a point of hit ratio in `scripts/evictbench` for 50% more CPU per evicting
/// set in `cargo bench --bench store`).
const SAMPLE: usize = 8;

/// The probation target a store starts with, in 1/65536ths of its items (a fifth).
pub(super) const INITIAL_TARGET: u32 = 65536 / 5;

/// The probation target's bounds, in 1/65536ths: a hundredth to a half. ARC lets its
/// split go anywhere; here a sweep whose keys come back after longer than probation but
/// while the ghost still holds them (a table swept again and again) would push the target
/// up to where the main part loses the items being read (at `-m 32` in
/// `scripts/evictbench`'s scan: 52.6% of requests hit with nine tenths, 55.5% with a
/// half, where LRU has 53.9%).
const TARGET_MIN: f64 = 65536.0 / 100.0;
const TARGET_MAX: f64 = 65536.0 / 2.0;

/// How far one ghost hit moves the probation target, as a factor of it (before ARC's
/// weighting by the two tags' counts). A larger step overshoots: a sweep then pushes the
/// target past the room the read items need, and main evicts them.
const TARGET_STEP: f64 = 0.002;

/// The estimate of the probationary share moves 1/PROBATION_SMOOTHING of the way to each
/// sample's share (an average over the last few hundred items sampled).
const PROBATION_SMOOTHING: u32 = 32;

/// A candidate's score: its age in epochs, plus this when it is of the class evicted first.
const FIRST: u8 = 0x80;

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

/// Items the background pass moves from a shard's draining table per visit (about a
/// tenth of a millisecond under the shard's lock).
const BACKGROUND_DRAIN: usize = 1024;

/// Buckets the pass moving items out of doomed pages looks at per hold of a shard's lock.
pub(super) const MOVE_STEP: usize = 4096;

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
            if s.is_empty() {
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
                if s.get(b.bucket).is_some_and(|it| it.key().as_ptr().addr() == b.block) {
                    self.evict(&mut s, b.bucket, now);
                }
            }
            self.compact(&mut s, now);
        }
        Room::Made
    }

    /// One visit's sample: walks the shard's hand over up to [`BUCKETS_PER_VISIT`]
    /// buckets, reclaiming dead items on the way, and returns the eviction candidate of
    /// up to [`SAMPLE`] live items (none with `-M`) with its score, and how many it
    /// compared. Adds the buckets seen to `looked`. The candidate is the oldest item of the
    /// class evicted first (probationary while they hold more than the probation target,
    /// else read ones, passing over those read again once), or the oldest of the other
    /// class when the sample has none.
    fn sample(&self, s: &mut Shard, now: RelTime, looked: &mut usize) -> (Option<(u8, usize)>, usize) {
        let buckets = s.buckets();
        let epoch = self.epoch();
        let probation_first = self.probation.load(Relaxed) > self.probation_target.load(Relaxed);
        let mut victim: Option<(u8, usize)> = None;
        let mut sampled = 0;
        let mut on_probation = 0;
        for _ in 0..BUCKETS_PER_VISIT.min(buckets) {
            *looked += 1;
            let i = s.hand % buckets;
            s.hand = (i + 1) % buckets;
            let Some(it) = s.get(i) else { continue };
            if self.dead(it, now).is_some() {
                self.remove(s, i, now); // expired: reclaimed, not evicted
                continue;
            }
            if !self.evictions {
                continue; // -M: only expired items give way
            }
            let a = s.access(i);
            let probation = probationary(a, it.bits());
            on_probation += u32::from(probation);
            let age = epoch.wrapping_sub(a & access::EPOCH) & access::EPOCH;
            let mut score = age | if probation == probation_first { FIRST } else { 0 };
            if !probation_first && a & access::AGAIN != 0 {
                // CLOCK's second chance: a read item read again since eviction last
                // passed it is used now, as far as eviction is concerned, and is kept.
                s.set_access(i, (a & !(access::AGAIN | access::EPOCH)) | epoch);
                score = 0;
            }
            if victim.is_none_or(|(best, _)| score > best) {
                victim = Some((score, i));
            }
            sampled += 1;
            // A sample without an item of the first class goes on, within the visit's
            // buckets: else a tenth of the cache on probation would be missed by 43% of
            // samples of 8 (0.9^8), and eviction would take read items instead.
            if sampled >= SAMPLE && victim.is_some_and(|(score, _)| score & FIRST != 0) {
                break;
            }
        }
        if sampled > 0 {
            // Racing updates lose a step now and then; it is an average.
            let seen = on_probation * 65536 / sampled as u32;
            let old = self.probation.load(Relaxed);
            let new = old - old / PROBATION_SMOOTHING + seen / PROBATION_SMOOTHING;
            self.probation.store(new, Relaxed);
        }
        (victim, sampled)
    }

    fn evict(&self, s: &mut Shard, i: usize, now: RelTime) {
        let side = if self.on_probation(s, i) { Side::Probation } else { Side::Main };
        let it = self.remove(s, i, now);
        // Remembered, so that the key, written again soon, skips probation, and its
        // side's share moves.
        let held = s.ghost_held;
        s.ghost_put(self.hasher.hash_one(it.key()), side);
        self.ghost_changed(held, s);
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

    /// Whether an item about to be written under `hash` goes past probation: its key was
    /// evicted lately. The ghost hit moves the probation target.
    pub(super) fn admits(&self, s: &mut Shard, hash: u64) -> bool {
        let held = s.ghost_held;
        let side = s.ghost_take(hash);
        self.ghost_changed(held, s);
        let Some(side) = side else { return false };
        // ARC's rule: a key back from probation's ghost says probation is too short, one
        // back from main's that main is too small; each hit weighs as the other list's
        // size over its own, at least 1.
        let [p, m] = [0, 1].map(|t| self.ghost_held[t].load(Relaxed).max(1) as f64);
        let target = f64::from(self.probation_target.load(Relaxed));
        let target = match side {
            Side::Probation => target * (1.0 + TARGET_STEP * (m / p).max(1.0)),
            Side::Main => target / (1.0 + TARGET_STEP * (p / m).max(1.0)),
        };
        self.probation_target.store(target.clamp(TARGET_MIN, TARGET_MAX) as u32, Relaxed);
        true
    }

    /// Adds a shard's change in ghost entries since `before` to the store's counts.
    fn ghost_changed(&self, before: [u32; 2], s: &Shard) {
        for (t, held) in self.ghost_held.iter().enumerate() {
            let delta = i64::from(s.ghost_held[t]) - i64::from(before[t]);
            if delta != 0 {
                held.fetch_add(delta, Relaxed);
            }
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
        if !(self.evictions && full_cache && s.len() * SHARDS >= self.len()) {
            return;
        }
        let mut looked = 0; // bounded by the four visits instead
        for _ in 0..4 {
            if !s.full() {
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
        let before = s.buckets();
        s.compact(&self.hasher);
        self.charge_buckets(before, s);
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
    /// goes back to the OS: one pass over every table, a shard's lock held for
    /// [`MOVE_STEP`] buckets at a time (a shard whose buckets are renumbered meanwhile is
    /// walked again from its start). Runs only when the slab has doomed pages, which takes
    /// a change in item sizes.
    pub fn move_out_of_doomed_pages(&self) {
        for shard in self.shards.iter() {
            let (mut at, mut rebuilds) = (0, None);
            loop {
                let mut s = write(shard);
                if rebuilds != Some(s.rebuilds) {
                    (at, rebuilds) = (0, Some(s.rebuilds));
                }
                let end = s.buckets().min(at + MOVE_STEP);
                for p in at..end {
                    let i = s.walk_order(p);
                    if let Some(moved) = s.get(i).and_then(|it| it.relocated(&self.slab)) {
                        // Same length, same slot size: nothing to re-charge.
                        *s.item_mut(i) = moved;
                        self.stats.local().relocated.fetch_add(1, Relaxed);
                    }
                }
                at = end;
                if at >= s.buckets() {
                    break;
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
            // A drain no write is moving along is finished here, a bounded step at a time.
            self.drain(&mut s, BACKGROUND_DRAIN);
            let buckets = s.buckets();
            if s.is_empty() {
                continue;
            }
            // With no deadline ever given and no flush pending nothing can be dead: the
            // walk (a cache miss per item) is skipped.
            let walk = if self.may_have_dead() { buckets_per_shard.min(buckets) } else { 0 };
            for _ in 0..walk {
                let i = s.sweep % buckets;
                s.sweep = (i + 1) % buckets;
                if s.get(i).is_some_and(|it| self.dead(it, now).is_some()) {
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
