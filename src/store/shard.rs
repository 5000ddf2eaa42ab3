//! A shard's table and what every verb does to one. The table holds each item's 8-byte
//! pointer; beside it an access byte per bucket ([`Shard::side`]: fetched, and the epoch of
//! last use) is set by readers with relaxed atomics under the read lock, so a hit never
//! takes a write lock. hashbrown's layout is used to prefetch a lookup's probe
//! ([`Prefetch`]). The `impl Store` here is the bookkeeping every verb shares: finding a
//! live item (reaping a dead one), inserting, replacing and removing with the byte and
//! item accounting, CAS uniques and the eviction epoch.
//!
//! A table past [`IN_PLACE_BUCKETS`] that fills while the memory limit has room is not
//! rebuilt at once: a table twice its size takes its place and the old one is drained into
//! it a few items per write ([`Drain`]), as memcached's hash expansion and Redis's
//! rehashing do, so no request of a growing cache waits for a whole table to move,
//! whatever its size. While a drain lasts, lookups look in both tables, and bucket numbers
//! past the new table's name the old one's buckets. At the limit (and to shrink a table
//! eviction left sparse) a table is rebuilt at once: holding two tables there would cost
//! items.

use std::hash::BuildHasher;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{RwLockReadGuard, RwLockWriteGuard};

use hashbrown::{DefaultHashBuilder, HashTable};

use super::item::{self, Item, access};
use super::{BUCKET_BYTES, SHARDS, Store};
use crate::clock::RelTime;

/// Why a present item does not count as present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dead {
    Flushed,
    Expired,
}

/// Whether an item with access byte `a` and header bits `bits` is on probation
/// (eviction's small queue): neither read since written nor admitted past it.
pub(super) fn probationary(a: u8, bits: u8) -> bool {
    a & access::FETCHED == 0 && bits & item::bit::ADMITTED == 0
}

/// The two parts of the cache eviction keeps apart (see `evict.rs`): items on probation
/// (written, not read since, not admitted) and the main part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Probation = 0,
    Main = 1,
}

/// What eviction achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Room {
    Made,
    /// Still over the limit after the step bound; the next request carries on.
    Partial,
    /// Nothing left to evict, or the item is larger than the whole limit.
    Never,
}

/// Tables with fewer buckets than this are rebuilt at once when they fill (a few
/// microseconds' work); larger ones are replaced and drained in steps.
pub(super) const IN_PLACE_BUCKETS: usize = 1024;

/// Items a write moves from a draining table at least; more when the new table's room
/// asks for it ([`Shard::drain_step_for`]).
const DRAIN_STEP: usize = 4;

/// Epochs a cache's worth of writes takes: the access byte's 64 epochs wrap after four
/// turnovers, so a read item idle that long looks new again (a main part that keeps its
/// items through sweeps holds some that long). Finer epochs order probation more exactly
/// but wrap sooner; 16 did best of 8 to 64 in `scripts/evictbench`.
const EPOCHS_PER_TURNOVER: usize = (access::EPOCH as usize + 1) / 4;

/// How many buckets ahead of the one it moves a drain starts loading an item.
const DRAIN_AHEAD: usize = 8;

/// One shard: a table of items and their access bytes beside it.
#[derive(Debug, Default)]
pub(super) struct Shard {
    pub(super) table: HashTable<Item>,
    /// Per bucket: the item's access byte (fetched, last-use epoch; see [`access`]),
    /// which readers update under the read lock. Saved into the items while the table is
    /// rebuilt (bucket numbers change) and restored after.
    pub(super) side: Box<[AtomicU8]>,
    /// The table being drained into `table`, while one is.
    pub(super) old: Option<Box<Drain>>,
    /// Fingerprints of keys lately evicted, each tagged with the part it was evicted from
    /// ([`Side`]): S3-FIFO's ghost queue with ARC's two ghost lists in one. One entry per
    /// two buckets (about half an entry per item), direct-mapped: a key written again
    /// while its fingerprint is here skips probation, and its tag moves the probation
    /// target (see `evict.rs`). Emptied when the table changes size.
    pub(super) ghost: Vec<u16>,
    /// Entries in `ghost` with each tag, indexed by [`Side`].
    pub(super) ghost_held: [u32; 2],
    /// Eviction's hand: the next bucket it samples.
    pub(super) hand: usize,
    /// Where background expiry carries on.
    pub(super) sweep: usize,
    /// Address of the table's control bytes, 0 while unknown (an empty table). hashbrown
    /// keeps bucket `i`'s slot `i + 1` slots below them; knowing where they are lets a
    /// lookup start loading every line its probe reads at once (`prefetch_probe`).
    pub(super) ctrl: usize,
    /// How many times the table was rebuilt (grown, rehashed or shrunk: buckets moved),
    /// so that a walk by bucket number ([`Store::dump`]) knows its place is gone.
    pub(super) rebuilds: u32,
}

/// A table being emptied into its successor: its items, their access bytes, where its
/// control bytes are (as [`Shard::ctrl`]), and the next bucket to move.
#[derive(Debug)]
pub(super) struct Drain {
    pub(super) table: HashTable<Item>,
    side: Box<[AtomicU8]>,
    ctrl: usize,
    next: usize,
}

/// Starts loading a probe of `hash` in a table of `buckets` whose control bytes are at
/// `ctrl` (0: unknown, nothing is loaded).
fn prefetch_group(ctrl: usize, buckets: usize, side: &[AtomicU8], hash: u64) {
    if ctrl == 0 {
        return;
    }
    // hashbrown's probe starts at the hash's low bits and reads a group of 16.
    let pos = hash as usize & (buckets - 1);
    item::prefetch(ctrl + pos);
    // Slots pos..pos + 16 lie in the 128 bytes below slot pos - 1.
    let slots = ctrl.wrapping_sub((pos + 16) * size_of::<Item>());
    item::prefetch(slots);
    item::prefetch(slots + 64);
    item::prefetch(slots + 127);
    item::prefetch(side.as_ptr().addr() + pos);
}

/// `n` access bytes of 0, from zeroed memory: a big table's come from fresh pages the
/// kernel fills as they are first touched, not from a pass writing every byte.
fn zeroed(n: usize) -> Box<[AtomicU8]> {
    // SAFETY: an AtomicU8 is a u8 in an UnsafeCell, for which all zeroes is a valid value.
    unsafe { Box::new_zeroed_slice(n).assume_init() }
}

impl Shard {
    pub(super) fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.prefetch_probe(hash);
        // A candidate's whole block is asked for before its key is compared, so the
        // value's lines (which a hit reads next) load alongside the key's.
        let found = self.table.find_bucket_index(hash, |it| {
            it.prefetch();
            it.key() == key
        });
        match (found, &self.old) {
            (None, Some(old)) => {
                old.table.find_bucket_index(hash, |it| it.key() == key).map(|j| self.table.num_buckets() + j)
            }
            _ => found,
        }
    }

    /// Items held, in both tables while a drain lasts.
    pub(super) fn len(&self) -> usize {
        self.table.len() + self.old.as_ref().map_or(0, |o| o.table.len())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bucket numbers in use: the table's, then the draining table's.
    pub(super) fn buckets(&self) -> usize {
        self.table.num_buckets() + self.old.as_ref().map_or(0, |o| o.table.num_buckets())
    }

    /// Whether an insert into the table needs it rebuilt or replaced first.
    pub(super) fn full(&self) -> bool {
        self.table.len() == self.table.capacity()
    }

    /// Bucket `i`'s item, if it holds one.
    pub(super) fn get(&self, i: usize) -> Option<&Item> {
        let n = self.table.num_buckets();
        match &self.old {
            Some(old) if i >= n => old.table.get_bucket(i - n),
            _ => self.table.get_bucket(i),
        }
    }

    fn side_at(&self, i: usize) -> Option<&AtomicU8> {
        let n = self.table.num_buckets();
        match &self.old {
            Some(old) if i >= n => old.side.get(i - n),
            _ => self.side.get(i),
        }
    }

    /// The table bucket number `i` names (the draining one past the table's buckets),
    /// that table's access bytes, and the bucket's number in it. (`get` and `side_at`,
    /// on every read's path, resolve the number themselves: through this they took 1-2%
    /// more instructions per get.)
    fn part_mut(&mut self, i: usize) -> (&mut HashTable<Item>, &[AtomicU8], usize) {
        let n = self.table.num_buckets();
        match &mut self.old {
            Some(old) if i >= n => (&mut old.table, &old.side, i - n),
            _ => (&mut self.table, &self.side, i),
        }
    }

    /// The occupied buckets of both tables.
    pub(super) fn occupied(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.table.num_buckets();
        let old = self.old.iter().flat_map(move |o| o.table.iter_buckets().map(move |j| n + j));
        self.table.iter_buckets().chain(old)
    }

    /// The bucket a walk's `p`th step looks at: a draining table's buckets first, so an
    /// item moved out of a bucket the walk has not reached lands where it still will.
    pub(super) fn walk_order(&self, p: usize) -> usize {
        match &self.old {
            Some(old) if p < old.table.num_buckets() => self.table.num_buckets() + p,
            Some(old) => p - old.table.num_buckets(),
            None => p,
        }
    }

    /// Starts loading the memory a lookup of `hash` reads first: its probe group's control
    /// bytes, that group's slots and their access bytes. Only addresses are computed, so
    /// nothing waits here, and the lookup then waits on these lines once, together,
    /// rather than on the control bytes, then the slot, then the item's access byte.
    pub(super) fn prefetch_probe(&self, hash: u64) {
        prefetch_group(self.ctrl, self.table.num_buckets(), &self.side, hash);
        if let Some(old) = &self.old {
            // A miss in the table goes on to the draining one.
            prefetch_group(old.ctrl, old.table.num_buckets(), &old.side, hash);
        }
    }

    /// Learns where the control bytes are after the table moved, from any full bucket.
    pub(super) fn learn_ctrl(&mut self) {
        self.ctrl = self
            .table
            .iter_buckets()
            .next()
            .map_or(0, |i| std::ptr::from_ref(self.item(i)).addr() + (i + 1) * size_of::<Item>());
    }

    pub(super) fn item(&self, i: usize) -> &Item {
        self.get(i).expect("bucket found under the same lock")
    }

    pub(super) fn item_mut(&mut self, i: usize) -> &mut Item {
        let (table, _, j) = self.part_mut(i);
        table.get_bucket_mut(j).expect("bucket found under the same lock")
    }

    /// The item's access byte.
    pub(super) fn access(&self, i: usize) -> u8 {
        self.side_at(i).map_or(0, |s| s.load(Relaxed))
    }

    pub(super) fn set_access(&self, i: usize, a: u8) {
        if let Some(s) = self.side_at(i) {
            s.store(a, Relaxed);
        }
    }

    /// Where `hash` would sit in the ghost list, and its entry there with tag 0 (never 0,
    /// the empty entry): the top bit set, a 14-bit fingerprint, the tag in the low bit.
    /// Bits the table (low), the shard (40..46) and hashbrown's tag (top 7) use are
    /// avoided for the position.
    fn ghost_entry(&mut self, hash: u64) -> (usize, u16) {
        let len = (self.table.num_buckets() / 2).max(1);
        if self.ghost.len() != len {
            self.ghost = vec![0; len]; // zeroed memory, as `zeroed`
            self.ghost_held = [0; 2];
        }
        (((hash >> 12) as usize) & (len - 1), 0x8000 | ((hash >> 45) as u16 & 0x7ffe))
    }

    /// Remembers a key evicted from `side`.
    pub(super) fn ghost_put(&mut self, hash: u64, side: Side) {
        let (at, entry) = self.ghost_entry(hash);
        let was = self.ghost[at];
        if was != 0 {
            self.ghost_held[usize::from(was & 1)] -= 1;
        }
        self.ghost[at] = entry | side as u16;
        self.ghost_held[side as usize] += 1;
    }

    /// Whether a key being written was evicted lately, and from which side (and forgets
    /// it).
    pub(super) fn ghost_take(&mut self, hash: u64) -> Option<Side> {
        let (at, entry) = self.ghost_entry(hash);
        let was = self.ghost[at];
        if was & !1 != entry {
            return None;
        }
        self.ghost[at] = 0;
        self.ghost_held[usize::from(was & 1)] -= 1;
        Some(if was & 1 == 0 { Side::Probation } else { Side::Main })
    }

    pub(super) fn fetched(&self, i: usize) -> bool {
        self.access(i) & access::FETCHED != 0
    }

    /// Marks a client's read in `epoch`, without a write lock: one load, and a store only
    /// when something changes. A read of a read item marks it read again.
    pub(super) fn mark_read(&self, i: usize, epoch: u8) {
        if let Some(s) = self.side_at(i) {
            let had = s.load(Relaxed);
            let main = had & access::FETCHED != 0 || self.item(i).bits() & item::bit::ADMITTED != 0;
            let again = if main { access::AGAIN } else { 0 };
            let want = access::FETCHED | again | epoch;
            if had != want {
                s.store(want, Relaxed);
            }
        }
    }

    /// Takes the item out of bucket `i`, its access byte saved with it.
    pub(super) fn take(&mut self, i: usize) -> Item {
        let (table, side, j) = self.part_mut(i);
        let a = side.get(j).map_or(0, |s| s.swap(0, Relaxed));
        let (mut it, _) = table.get_bucket_entry(j).expect("occupied bucket").remove();
        it.set_access(a);
        it
    }

    /// Saves the table's items' access bytes into the items, before its buckets move.
    fn save_access(&mut self) {
        for i in 0..self.table.num_buckets() {
            let a = self.side.get(i).map_or(0, |s| s.load(Relaxed));
            if let Some(it) = self.table.get_bucket_mut(i) {
                it.set_access(a);
            }
        }
    }

    /// Rebuilds the table's access bytes from its items, after its buckets moved.
    fn restore_access(&mut self) {
        let n = self.table.num_buckets();
        self.side = zeroed(n);
        for i in self.table.iter_buckets() {
            let a = self.table.get_bucket(i).map_or(0, Item::access);
            self.side[i].store(a, Relaxed);
        }
    }

    /// After bucket numbers changed (from `before` in use): keeps the hands at the same
    /// relative place, so a rebuild does not send them back over items they have just
    /// looked at, and tells walks their place is gone.
    fn renumbered(&mut self, before: usize) {
        let after = self.buckets();
        self.hand = self.hand * after / before.max(1);
        self.sweep = self.sweep * after / before.max(1);
        self.rebuilds = self.rebuilds.wrapping_add(1);
        self.learn_ctrl();
    }

    /// Inserts an item known to be absent, last used in `epoch`; returns its bucket. A
    /// full table is replaced by one twice its size (or its size, when tombstones filled
    /// it) to be drained into if it is large and `drain` allows (the memory limit has room
    /// for both tables), else rebuilt at once.
    pub(super) fn insert(&mut self, hash: u64, it: Item, epoch: u8, drain: bool, hasher: &DefaultHashBuilder) -> usize {
        if self.full() {
            self.finish_drain(hasher);
        }
        let n = self.table.num_buckets();
        if self.full() && n >= IN_PLACE_BUCKETS && drain {
            // hashbrown's rule: twice the room unless half of it would hold the items.
            let room = n / 8 * 7;
            self.start_drain(if self.table.len() < room / 2 { room } else { room * 2 });
        }
        let before = self.buckets();
        let rebuild = self.full();
        if rebuild {
            self.save_access();
        }
        let mut it = it;
        it.set_access(epoch);
        let i = self.table.insert_unique(hash, it, |it| hasher.hash_one(it.key())).bucket_index();
        if rebuild {
            self.restore_access();
            self.renumbered(before);
        } else {
            self.side[i].store(epoch, Relaxed);
            if self.ctrl == 0 {
                self.learn_ctrl();
            }
        }
        i
    }

    /// Puts a new table with room for `capacity` items in place of this one, which is
    /// then drained into it. Bucket numbers change.
    fn start_drain(&mut self, capacity: usize) {
        let before = self.buckets();
        let table = std::mem::replace(&mut self.table, HashTable::with_capacity(capacity));
        let side = std::mem::replace(&mut self.side, zeroed(self.table.num_buckets()));
        self.old = Some(Box::new(Drain { table, side, ctrl: self.ctrl, next: 0 }));
        self.renumbered(before);
    }

    /// How many items a write moves from the draining table: enough that it is empty
    /// before the new table's room runs out, whatever is inserted meanwhile.
    pub(super) fn drain_step_for(&self) -> usize {
        let Some(old) = &self.old else { return 0 };
        let (left, room) = (old.table.len(), self.table.capacity() - self.table.len());
        if room <= left + 1 { left } else { DRAIN_STEP.max(left.div_ceil(room - left - 1)) }
    }

    /// Moves up to `n` items from the draining table into the table (looking at no more
    /// than 8n buckets), and lets the draining table go once it is empty. The table's
    /// bucket numbers stay as they are until the drain ends.
    pub(super) fn drain(&mut self, n: usize, hasher: &DefaultHashBuilder) {
        let Some(mut old) = self.old.take() else { return };
        let before = self.table.num_buckets() + old.table.num_buckets();
        let (end, mut moved, mut looked, mut rebuilt) = (old.table.num_buckets(), 0, 0, false);
        while moved < n && looked < n.saturating_mul(8) && old.next < end && !old.table.is_empty() {
            looked += 1;
            let j = old.next;
            // The key of an item a few buckets on is read (for its hash) soon.
            if let Some(ahead) = old.table.get_bucket(j + DRAIN_AHEAD) {
                ahead.prefetch();
            }
            let Ok(entry) = old.table.get_bucket_entry(j) else {
                old.next += 1;
                continue;
            };
            let a = old.side[j].swap(0, Relaxed);
            let (it, _) = entry.remove();
            if self.full() {
                // Only tombstones can have used up the room the steps were sized for:
                // the table is rebuilt, as an insert into it would.
                self.save_access();
                self.table.reserve(1, |it| hasher.hash_one(it.key()));
                self.restore_access();
                rebuilt = true;
            }
            let i = self.table.insert_unique(hasher.hash_one(it.key()), it, |it| hasher.hash_one(it.key()));
            self.side[i.bucket_index()].store(a, Relaxed);
            moved += 1;
        }
        let emptied = old.table.is_empty();
        if !emptied {
            self.old = Some(old);
        }
        if rebuilt || emptied {
            self.renumbered(before);
        } else if self.ctrl == 0 {
            self.learn_ctrl();
        }
    }

    /// Ends a drain at once (the table about to be replaced again).
    fn finish_drain(&mut self, hasher: &DefaultHashBuilder) {
        while self.old.is_some() {
            self.drain(usize::MAX / 8, hasher);
        }
    }

    /// Rebuilds a table that eviction has left mostly empty at a size that fits its items,
    /// returning the bytes given back. Near the memory limit a table that grew makes the
    /// store evict items to pay for it, which leaves the table sparse: without this,
    /// tables settle a third full and cost twice what they need.
    pub(super) fn compact(&mut self, hasher: &DefaultHashBuilder) {
        let before = self.table.num_buckets();
        // Shrink when the items fit the smaller table with 1/64 to spare: a shard that grew
        // while the cache filled returns to its steady size instead of staying half empty,
        // and once the cache is full it stays there (`evict_for_bucket`).
        let target = self.table.len() + self.table.len() / 64 + 16;
        // hashbrown's sizing: buckets for a capacity are a power of two at most 7/8 full.
        if self.old.is_some() || before <= 64 || (target * 8 / 7).next_power_of_two() >= before {
            return;
        }
        // Rebuilt at once, not drained: a drain would hold the larger table and the
        // smaller one together, which a cache at its limit pays for in items.
        let all = self.buckets();
        self.save_access();
        self.table.shrink_to(target, |it| hasher.hash_one(it.key()));
        self.restore_access();
        self.renumbered(all);
    }
}

pub(super) const PREFETCH_BATCH: usize = 32;

/// Keys about to be looked up (from [`Store::prefetch`]). `add` starts loading each key's
/// table probe (control bytes, slots) without reading anything; `finish` then reads the
/// probes, which have mostly arrived by then, and starts loading every candidate item.
/// Every [`Prefetch::BATCH`] keys a batch is finished and another begun.
pub struct Prefetch<'s> {
    pub(super) store: &'s Store,
    pub(super) hashes: [u64; PREFETCH_BATCH],
    pub(super) n: usize,
}

impl Prefetch<'_> {
    /// Keys whose memory is requested at once: a few hundred cache lines, well inside L1/L2.
    pub const BATCH: usize = PREFETCH_BATCH;

    pub fn add(&mut self, key: &[u8]) {
        if self.n == Self::BATCH {
            self.items();
        }
        let (hash, lock) = self.store.locate(key);
        read(lock).prefetch_probe(hash);
        self.hashes[self.n] = hash;
        self.n += 1;
    }

    /// Prefetches the items the batch's keys may name.
    pub fn finish(mut self) {
        self.items();
    }

    fn items(&mut self) {
        for &hash in &self.hashes[..self.n] {
            let s = read(self.store.shard(hash));
            // The closure sees each candidate with the key's hash tag; it prefetches the
            // item and answers "not it", so nothing is compared and the probe moves on.
            s.table.find(hash, |it| {
                it.prefetch();
                false
            });
            if let Some(old) = &s.old {
                old.table.find(hash, |it| {
                    it.prefetch();
                    false
                });
            }
        }
        self.n = 0;
    }
}

pub(super) fn read(s: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    // A panic never leaves a shard half-updated (no unwinding point sits between paired
    // updates), so a poisoned lock is used as is.
    s.read().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn write(s: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    s.write().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// The next CAS value (0 with `-C`).
    pub(super) fn next_cas(&self) -> u64 {
        if !self.cas {
            return 0;
        }
        self.last_cas.fetch_add(1, Relaxed) + 1
    }

    pub(super) fn locate(&self, key: &[u8]) -> (u64, &RwLock<Shard>) {
        let hash = self.hasher.hash_one(key);
        (hash, self.shard(hash))
    }

    pub(super) fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // Bits hashbrown uses for neither bucket position (low) nor tag (top 7).
        &self.shards[(hash >> 40) as usize % SHARDS]
    }

    pub(super) fn dead(&self, it: &Item, now: RelTime) -> Option<Dead> {
        let oldest_live = self.oldest_live.load(Relaxed);
        if oldest_live != 0 && oldest_live <= now {
            let oldest_cas = self.oldest_cas.load(Relaxed);
            if it.time() <= oldest_live || (oldest_cas != 0 && it.cas() < oldest_cas) {
                return Some(Dead::Flushed);
            }
        }
        it.is_expired(now).then_some(Dead::Expired)
    }

    /// Counts a lookup that found a dead item, as memcached's `do_item_get` does.
    pub(super) fn count_dead(&self, why: Dead) {
        match why {
            Dead::Flushed => &self.stats.local().get_flushed,
            Dead::Expired => &self.stats.local().get_expired,
        }
        .fetch_add(1, Relaxed);
    }

    pub(super) fn charge(&self, n: usize) {
        self.used.fetch_add(n, Relaxed);
    }

    pub(super) fn refund(&self, n: usize) {
        self.used.fetch_sub(n, Relaxed);
    }

    /// Inserts a new item (the key known absent) and accounts for it.
    pub(super) fn insert(&self, shard: &mut Shard, hash: u64, it: Item) -> usize {
        let mut it = it;
        self.note_deadline(it.exptime());
        if self.evictions && shard.table.num_buckets() > 0 && self.admits(shard, hash) {
            it.set_bits(it.bits() | item::bit::ADMITTED);
        }
        if shard.full() {
            self.evict_for_bucket(shard, it.charge(), self.clock.now());
        }
        let charge = it.charge();
        self.charge(charge);
        self.stats.local().curr_items.fetch_add(1, Relaxed);
        self.stats.local().total_items.fetch_add(1, Relaxed);
        // Bytes, not items: a cache of small items and one of large items both turn
        // over in the same number of epochs, and a large item written now is as new as a
        // small one.
        let epoch_bytes = (self.used.load(Relaxed) / EPOCHS_PER_TURNOVER).max(64 << 10);
        if self.since_epoch.fetch_add(charge, Relaxed) + charge >= epoch_bytes {
            self.since_epoch.store(0, Relaxed);
            self.epoch.store(self.epoch().wrapping_add(1) & access::EPOCH, Relaxed);
        }
        let before = shard.buckets();
        // A table grows by a drain while the limit has room for it and the table twice its
        // size beside it; a cache at its limit rebuilds at once instead (as it shrinks),
        // so that tables growing and shrinking there do not cost it items.
        let both = 3 * shard.table.num_buckets() * BUCKET_BYTES;
        let drain = self.used.load(Relaxed) + both <= self.limit.load(Relaxed);
        let i = shard.insert(hash, it, self.epoch(), drain, &self.hasher);
        self.charge_buckets(before, shard);
        i
    }

    /// Charges (or refunds) the tables' change from `before` buckets.
    pub(super) fn charge_buckets(&self, before: usize, shard: &Shard) {
        let after = shard.buckets();
        if after > before {
            self.charge((after - before) * BUCKET_BYTES);
        } else {
            self.refund((before - after) * BUCKET_BYTES);
        }
    }

    /// A write's share of a drain in progress ([`Shard::drain`]).
    pub(super) fn drain(&self, shard: &mut Shard, n: usize) {
        if shard.old.is_some() {
            let before = shard.buckets();
            shard.drain(n, &self.hasher);
            self.charge_buckets(before, shard);
        }
    }

    /// Notes that an item got deadline `exptime` (see `deadlines_seen`).
    pub(super) fn note_deadline(&self, exptime: RelTime) {
        if exptime != 0 && !self.deadlines_seen.load(Relaxed) {
            self.deadlines_seen.store(true, Relaxed);
        }
    }

    /// Whether the background sweep can find anything: an item with a deadline, or a
    /// pending `flush_all`.
    pub fn may_have_dead(&self) -> bool {
        self.deadlines_seen.load(Relaxed) || self.oldest_live.load(Relaxed) != 0
    }

    /// A reading that changes whenever an item is stored or removed (items stored so far,
    /// items held): while it stays the same, the slab's pages fill as well as they did
    /// and the tables need no compacting.
    pub fn churn(&self) -> (u64, u64) {
        let t = self.stats.totals();
        (t.total_items, t.curr_items)
    }

    /// The current eviction epoch.
    pub(super) fn epoch(&self) -> u8 {
        self.epoch.load(Relaxed)
    }

    /// Removes bucket `i`'s item and accounts for it; dead items count as reclaimed.
    pub(super) fn remove(&self, shard: &mut Shard, i: usize, now: RelTime) -> Item {
        let it = shard.take(i);
        self.refund(it.charge());
        self.stats.local().curr_items.fetch_sub(1, Relaxed);
        if self.dead(&it, now).is_some() {
            self.stats.local().reclaimed.fetch_add(1, Relaxed);
            if it.access() & access::FETCHED == 0 {
                self.stats.local().expired_unfetched.fetch_add(1, Relaxed);
            }
        }
        it
    }

    /// Replaces bucket `i`'s item in place and accounts for the size change.
    pub(super) fn replace(&self, shard: &mut Shard, i: usize, it: Item) {
        let mut it = it;
        self.note_deadline(it.exptime());
        // Past probation stays past it (eviction's classes): a rewritten item is not new to
        // the cache, though it is unread again.
        if !self.on_probation(shard, i) {
            it.set_bits(it.bits() | item::bit::ADMITTED);
        }
        let old = std::mem::replace(shard.item_mut(i), it);
        self.charge(shard.item(i).charge());
        self.refund(old.charge());
        // A new item: not fetched yet, used now.
        shard.set_access(i, self.epoch());
    }

    /// Gives bucket `i`'s item deadline `t`: in place when its header has room for one,
    /// else as a copy built with one (charged for the 4 bytes it may add).
    pub(super) fn set_exptime(&self, shard: &mut Shard, i: usize, t: RelTime) {
        if shard.item(i).exptime_fits(t) {
            shard.item_mut(i).set_exptime(t);
            return;
        }
        let it = shard.item(i).with_exptime(&self.slab, t);
        self.charge(it.charge());
        let old = std::mem::replace(shard.item_mut(i), it);
        self.refund(old.charge());
    }

    /// Whether bucket `i`'s item is on probation (eviction's small queue): neither read
    /// since written nor admitted past it by the ghost list.
    pub(super) fn on_probation(&self, shard: &Shard, i: usize) -> bool {
        probationary(shard.access(i), shard.item(i).bits())
    }

    /// Looks `key` up under a write lock, reaping a dead item; `Some(bucket)` if live.
    /// Every write comes here first, so it also moves its share of a drain.
    pub(super) fn find_live(&self, shard: &mut Shard, hash: u64, key: &[u8], now: RelTime) -> Option<usize> {
        self.drain(shard, shard.drain_step_for());
        let i = shard.find(hash, key)?;
        if let Some(why) = self.dead(shard.item(i), now) {
            self.count_dead(why);
            self.remove(shard, i, now);
            return None;
        }
        Some(i)
    }

    /// Evicts back under the limit after a change that grew memory under a lock (a table
    /// that grew, an append larger than foreseen).
    pub(super) fn settle(&self) {
        if self.used.load(Relaxed) > self.limit.load(Relaxed) {
            self.make_room(0);
        }
    }
}
