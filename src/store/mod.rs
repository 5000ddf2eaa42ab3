//! The item store: a hash table split into shards under reader-writer locks, each item one
//! block ([`Item`], small ones in 8-byte-granular slab slots, see `slab`), with memcached's
//! storage semantics (one method per verb), lazy and background expiry, `flush_all`, CAS
//! uniques from one counter, and sampled-LRU eviction under a byte-accurate memory limit.
//! Knows nothing of the wire protocol beyond [`StoreMode`]; `exec` drives it.
//!
//! Layout: a slot in a shard's table is the item's 8-byte pointer; beside the table an
//! access byte per bucket (`Shard::side`: fetched, and the epoch of last use) is set by
//! readers with relaxed atomics under the read lock, so a hit never takes a write lock.
//! Eviction samples buckets along each table and evicts the least recently used of the
//! sample, never-read items first: no queue, no per-item list. Table memory is charged
//! against the limit along with the items.

mod evict;
mod item;
mod meta;
mod slab;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use hashbrown::{DefaultHashBuilder, HashTable};

pub use item::{HEADER as ITEM_HEADER, Item, SharedValue, charge_for};
pub use meta::{ArithArgs, ArithOutcome, DebugInfo, DeleteOutcome, DumpCursor, GetArgs, MetaHit};

use crate::clock::{Clock, RelTime};
use crate::memcached::StoreMode;
use crate::memcached::item_too_large;
use item::{Fields, access, bit};
use slab::Slab;

/// Shards: enough that threads rarely meet on one lock, few enough that each table stays
/// large (table growth is per shard).
const SHARDS: usize = 64;

/// Memory a table bucket costs: the item's pointer, hashbrown's control byte and the
/// access byte.
const BUCKET_BYTES: usize = std::mem::size_of::<Item>() + 2;

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub value: Bytes,
    pub flags: u32,
    pub cas: u64,
}

/// The result of a storage command, as memcached names it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    NotStored,
    Exists,
    NotFound,
    /// No room could be made under the memory limit.
    NoMemory,
}

/// A storage request in full: the classic commands use only the first five fields.
#[derive(Debug, Clone)]
pub struct StoreArgs<'a> {
    pub mode: StoreMode,
    pub key: &'a [u8],
    pub flags: u32,
    pub exptime: RelTime,
    pub value: &'a [u8],
    /// `ms I`: a CAS older than the item's still stores, marking the item stale.
    pub stale_ok: bool,
    /// `ms b`: the key was sent in base64 and is given back that way.
    pub key_binary: bool,
    /// `ms C` with append or prepend: stored only if the item's CAS matches (0 = no check).
    pub compare_cas: u64,
}

impl Default for StoreArgs<'_> {
    fn default() -> Self {
        Self {
            mode: StoreMode::Set,
            key: b"",
            flags: 0,
            exptime: 0,
            value: b"",
            stale_ok: false,
            key_binary: false,
            compare_cas: 0,
        }
    }
}

/// Counters the store keeps itself (the rest of `stats` lives in `crate::stats`).
#[derive(Debug, Default)]
pub struct StoreStats {
    pub curr_items: AtomicUsize,
    pub total_items: AtomicU64,
    pub get_expired: AtomicU64,
    pub get_flushed: AtomicU64,
    pub reclaimed: AtomicU64,
    pub expired_unfetched: AtomicU64,
    pub evictions: AtomicU64,
    pub evicted_unfetched: AtomicU64,
    pub cas_badval: AtomicU64,
    pub cas_hits: AtomicU64,
    pub cas_misses: AtomicU64,
    /// Items moved out of sparse slab pages (memcached's `slab_reassign_rescues`).
    pub relocated: AtomicU64,
}

/// Why a present item does not count as present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dead {
    Flushed,
    Expired,
}

/// What eviction achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    Made,
    /// Still over the limit after the step bound; the next request carries on.
    Partial,
    /// Nothing left to evict, or the item is larger than the whole limit.
    Never,
}

/// One shard: a table of items and their access bytes beside it.
#[derive(Debug, Default)]
struct Shard {
    table: HashTable<Item>,
    /// Per bucket: the item's access byte (fetched, last-use epoch; see [`access`]),
    /// which readers update under the read lock. Saved into the items while the table is
    /// rebuilt (bucket numbers change) and restored after.
    side: Vec<AtomicU8>,
    /// Eviction's hand: the next bucket it samples.
    hand: usize,
    /// Where background expiry carries on.
    sweep: usize,
    /// Address of the table's control bytes, 0 while unknown (an empty table). hashbrown
    /// keeps bucket `i`'s slot `i + 1` slots below them; knowing where they are lets a
    /// lookup start loading every line its probe reads at once (`prefetch_probe`).
    ctrl: usize,
    /// How many times the table was rebuilt (grown, rehashed or shrunk: buckets moved),
    /// so that a walk by bucket number ([`Store::dump`]) knows its place is gone.
    rebuilds: u32,
}

impl Shard {
    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.prefetch_probe(hash);
        // A candidate's whole block is asked for before its key is compared, so the
        // value's lines (which a hit reads next) load alongside the key's.
        self.table.find_bucket_index(hash, |it| {
            it.prefetch();
            it.key() == key
        })
    }

    /// Starts loading the memory a lookup of `hash` reads first: its probe group's control
    /// bytes, that group's slots and their access bytes. Only addresses are computed, so
    /// nothing waits here, and the lookup then waits on these lines once, together,
    /// rather than on the control bytes, then the slot, then the item's access byte.
    fn prefetch_probe(&self, hash: u64) {
        if self.ctrl == 0 {
            return;
        }
        // hashbrown's probe starts at the hash's low bits and reads a group of 16.
        let pos = hash as usize & (self.table.num_buckets() - 1);
        item::prefetch(self.ctrl + pos);
        // Slots pos..pos + 16 lie in the 128 bytes below slot pos - 1.
        let slots = self.ctrl.wrapping_sub((pos + 16) * size_of::<Item>());
        item::prefetch(slots);
        item::prefetch(slots + 64);
        item::prefetch(slots + 127);
        item::prefetch(self.side.as_ptr().addr() + pos);
    }

    /// Learns where the control bytes are after the table moved, from any full bucket.
    fn learn_ctrl(&mut self) {
        self.ctrl = self
            .table
            .iter_buckets()
            .next()
            .map_or(0, |i| std::ptr::from_ref(self.item(i)).addr() + (i + 1) * size_of::<Item>());
    }

    fn item(&self, i: usize) -> &Item {
        self.table.get_bucket(i).expect("bucket found under the same lock")
    }

    fn item_mut(&mut self, i: usize) -> &mut Item {
        self.table.get_bucket_mut(i).expect("bucket found under the same lock")
    }

    /// The item's access byte.
    fn access(&self, i: usize) -> u8 {
        self.side.get(i).map_or(0, |s| s.load(Relaxed))
    }

    fn set_access(&self, i: usize, a: u8) {
        if let Some(s) = self.side.get(i) {
            s.store(a, Relaxed);
        }
    }

    fn fetched(&self, i: usize) -> bool {
        self.access(i) & access::FETCHED != 0
    }

    /// Marks a client's read in `epoch`, without a write lock: one load, and a store only
    /// when something changes.
    fn mark_read(&self, i: usize, epoch: u8) {
        let want = access::FETCHED | epoch;
        if let Some(s) = self.side.get(i)
            && s.load(Relaxed) != want
        {
            s.store(want, Relaxed);
        }
    }

    /// Takes the item out of bucket `i`, its access byte saved with it.
    fn take(&mut self, i: usize) -> Item {
        let a = self.side.get(i).map_or(0, |s| s.swap(0, Relaxed));
        let (mut it, _) = self.table.get_bucket_entry(i).expect("occupied bucket").remove();
        it.set_access(a);
        it
    }

    /// Saves every item's access byte into the item, before buckets move.
    fn save_access(&mut self) {
        for i in 0..self.table.num_buckets() {
            let a = self.access(i);
            if let Some(it) = self.table.get_bucket_mut(i) {
                it.set_access(a);
            }
        }
    }

    /// Rebuilds the access bytes from the items, after buckets moved.
    fn restore_access(&mut self, before: usize) {
        let after = self.table.num_buckets();
        self.side = (0..after).map(|_| AtomicU8::new(0)).collect();
        for i in 0..after {
            if let Some(it) = self.table.get_bucket(i) {
                self.side[i].store(it.access(), Relaxed);
            }
        }
        // Keep the hands at the same relative place, so a rebuild does not send them back
        // over items they have just looked at.
        self.hand = self.hand * after / before.max(1);
        self.sweep = self.sweep * after / before.max(1);
        self.rebuilds = self.rebuilds.wrapping_add(1);
    }

    /// Inserts an item known to be absent, last used in `epoch`; returns its bucket and
    /// how many bytes the table grew by.
    fn insert(&mut self, hash: u64, it: Item, epoch: u8, hasher: &DefaultHashBuilder) -> (usize, usize) {
        let before = self.table.num_buckets();
        // A full table grows (or rehashes away tombstones): buckets move.
        let rebuild = self.table.len() == self.table.capacity();
        if rebuild {
            self.save_access();
        }
        let mut it = it;
        it.set_access(epoch);
        let i = self.table.insert_unique(hash, it, |it| hasher.hash_one(it.key())).bucket_index();
        if rebuild {
            self.restore_access(before);
        } else {
            self.side[i].store(epoch, Relaxed);
        }
        if rebuild || self.ctrl == 0 {
            self.learn_ctrl();
        }
        (i, (self.table.num_buckets() - before) * BUCKET_BYTES)
    }

    /// Rebuilds a table that eviction has left mostly empty at a size that fits its items,
    /// returning the bytes given back. Near the memory limit a table that grew makes the
    /// store evict items to pay for it, which leaves the table sparse: without this,
    /// tables settle a third full and cost twice what they need.
    fn compact(&mut self, hasher: &DefaultHashBuilder) -> usize {
        let before = self.table.num_buckets();
        // Shrink when the items fit the smaller table with 1/64 to spare: a shard that grew
        // while the cache filled returns to its steady size instead of staying half empty,
        // and once the cache is full it stays there (`evict_for_bucket`).
        let target = self.table.len() + self.table.len() / 64 + 16;
        // hashbrown's sizing: buckets for a capacity are a power of two at most 7/8 full.
        if before <= 64 || (target * 8 / 7).next_power_of_two() >= before {
            return 0;
        }
        self.save_access();
        self.table.shrink_to(target, |it| hasher.hash_one(it.key()));
        self.restore_access(before);
        self.learn_ctrl();
        (before - self.table.num_buckets()) * BUCKET_BYTES
    }
}

const PREFETCH_BATCH: usize = 32;

/// Keys about to be looked up (from [`Store::prefetch`]). `add` starts loading each key's
/// table probe (control bytes, slots) without reading anything; `finish` then reads the
/// probes, which have mostly arrived by then, and starts loading every candidate item.
/// Every [`Prefetch::BATCH`] keys a batch is finished and another begun.
pub struct Prefetch<'s> {
    store: &'s Store,
    hashes: [u64; PREFETCH_BATCH],
    n: usize,
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
        }
        self.n = 0;
    }
}

/// The cache.
#[derive(Debug)]
pub struct Store {
    shards: Box<[RwLock<Shard>]>,
    hasher: DefaultHashBuilder,
    clock: Clock,
    last_cas: AtomicU64,
    /// `flush_all` state as memcached keeps it: items written at or before `oldest_live`
    /// (once that time has come), or with a CAS below `oldest_cas`, are gone.
    oldest_live: AtomicU32,
    oldest_cas: AtomicU64,
    /// Bytes charged: item allocations plus table memory.
    used: AtomicUsize,
    limit: AtomicUsize,
    max_item_size: usize,
    /// The shard eviction visits next.
    hand: AtomicUsize,
    /// Whether any item was ever given a deadline: until then the background sweep has
    /// nothing to find (unless a `flush_all` is pending) and skips the tables.
    deadlines_seen: AtomicBool,
    /// `-M`: when full, only expired items make room; stores are refused otherwise.
    evictions: bool,
    /// Eviction's coarse clock: it advances every 1/64 of the cache's worth of new bytes,
    /// and items remember the epoch of their last use (7 bits, wrapping).
    epoch: AtomicU8,
    since_epoch: AtomicUsize,
    /// When a metadump last took a step (`clock.now() + 1`; 0: never). Tables are not
    /// compacted for a while after, so a dump is seldom sent back to a shard's start.
    dumped_at: AtomicU32,
    pub stats: StoreStats,
    /// Slots for small items' blocks, reserved for this store's limit. Declared last, so
    /// dropped after `shards`: the items free their blocks into it.
    slab: Slab,
}

fn read(s: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    // A panic never leaves a shard half-updated (no unwinding point sits between paired
    // updates), so a poisoned lock is used as is.
    s.read().unwrap_or_else(|p| p.into_inner())
}

fn write(s: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    s.write().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// An empty store charging at most `limit` bytes, refusing items over `max_item_size`.
    pub fn new(clock: Clock, limit: usize, max_item_size: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            hasher: DefaultHashBuilder::default(),
            clock,
            last_cas: AtomicU64::new(0),
            oldest_live: AtomicU32::new(0),
            oldest_cas: AtomicU64::new(0),
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            max_item_size,
            hand: AtomicUsize::new(0),
            deadlines_seen: AtomicBool::new(false),
            evictions: true,
            epoch: AtomicU8::new(0),
            since_epoch: AtomicUsize::new(0),
            dumped_at: AtomicU32::new(0),
            stats: StoreStats::default(),
            slab: Slab::new(limit),
        }
    }

    /// `-M`: a full cache refuses stores (`SERVER_ERROR out of memory storing object`)
    /// instead of evicting live items.
    pub fn disable_evictions(&mut self) {
        self.evictions = false;
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Bytes currently charged (items and table).
    pub fn bytes(&self) -> usize {
        self.used.load(Relaxed)
    }

    /// Slab pages emptied by moving their items out (memcached's `slabs_moved`).
    pub fn pages_moved(&self) -> u64 {
        self.slab.pages_moved()
    }

    /// The memory limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }

    /// Changes the memory limit (`cache_memlimit`), evicting down to a smaller one.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Relaxed);
        while self.used.load(Relaxed) > limit && self.make_room(0) == Room::Partial {}
    }

    /// Items currently held (live or not yet reaped).
    pub fn len(&self) -> usize {
        self.stats.curr_items.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn next_cas(&self) -> u64 {
        self.last_cas.fetch_add(1, Relaxed) + 1
    }

    fn locate(&self, key: &[u8]) -> (u64, &RwLock<Shard>) {
        let hash = self.hasher.hash_one(key);
        (hash, self.shard(hash))
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // Bits hashbrown uses for neither bucket position (low) nor tag (top 7).
        &self.shards[(hash >> 40) as usize % SHARDS]
    }

    fn dead(&self, it: &Item, now: RelTime) -> Option<Dead> {
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
    fn count_dead(&self, why: Dead) {
        match why {
            Dead::Flushed => &self.stats.get_flushed,
            Dead::Expired => &self.stats.get_expired,
        }
        .fetch_add(1, Relaxed);
    }

    fn charge(&self, n: usize) {
        self.used.fetch_add(n, Relaxed);
    }

    fn refund(&self, n: usize) {
        self.used.fetch_sub(n, Relaxed);
    }

    /// Inserts a new item (the key known absent) and accounts for it.
    fn insert(&self, shard: &mut Shard, hash: u64, it: Item) -> usize {
        self.note_deadline(it.exptime());
        if shard.table.len() == shard.table.capacity() {
            self.evict_for_bucket(shard, it.charge(), self.clock.now());
        }
        let charge = it.charge();
        self.charge(charge);
        self.stats.curr_items.fetch_add(1, Relaxed);
        self.stats.total_items.fetch_add(1, Relaxed);
        // Bytes, not items: a cache of small items and one of large items both turn
        // over in 64 epochs, and a large item written now is as new as a small one.
        let epoch_bytes = (self.used.load(Relaxed) / 64).max(64 << 10);
        if self.since_epoch.fetch_add(charge, Relaxed) + charge >= epoch_bytes {
            self.since_epoch.store(0, Relaxed);
            self.epoch.store(self.epoch().wrapping_add(1) & access::EPOCH, Relaxed);
        }
        let (i, grown) = shard.insert(hash, it, self.epoch(), &self.hasher);
        self.charge(grown);
        i
    }

    /// Notes that an item got deadline `exptime` (see `deadlines_seen`).
    fn note_deadline(&self, exptime: RelTime) {
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
    pub fn churn(&self) -> (u64, usize) {
        (self.stats.total_items.load(Relaxed), self.stats.curr_items.load(Relaxed))
    }

    /// The current eviction epoch.
    fn epoch(&self) -> u8 {
        self.epoch.load(Relaxed)
    }

    /// Removes bucket `i`'s item and accounts for it; dead items count as reclaimed.
    fn remove(&self, shard: &mut Shard, i: usize, now: RelTime) -> Item {
        let it = shard.take(i);
        self.refund(it.charge());
        self.stats.curr_items.fetch_sub(1, Relaxed);
        if self.dead(&it, now).is_some() {
            self.stats.reclaimed.fetch_add(1, Relaxed);
            if it.access() & access::FETCHED == 0 {
                self.stats.expired_unfetched.fetch_add(1, Relaxed);
            }
        }
        it
    }

    /// Replaces bucket `i`'s item in place and accounts for the size change.
    fn replace(&self, shard: &mut Shard, i: usize, it: Item) {
        self.note_deadline(it.exptime());
        let old = std::mem::replace(shard.item_mut(i), it);
        self.charge(shard.item(i).charge());
        self.refund(old.charge());
        // A new item: not fetched yet, used now.
        shard.set_access(i, self.epoch());
    }

    /// Looks `key` up under a write lock, reaping a dead item; `Some(bucket)` if live.
    fn find_live(&self, shard: &mut Shard, hash: u64, key: &[u8], now: RelTime) -> Option<usize> {
        let i = shard.find(hash, key)?;
        if let Some(why) = self.dead(shard.item(i), now) {
            self.count_dead(why);
            self.remove(shard, i, now);
            return None;
        }
        Some(i)
    }

    /// A batch of lookups about to be made (a multi-get, a pipeline of gets), to start
    /// loading their memory into the CPU cache first: the batch then waits for memory
    /// about twice in all rather than twice per key. See [`Prefetch`].
    pub fn prefetch(&self) -> Prefetch<'_> {
        Prefetch { store: self, hashes: [0; PREFETCH_BATCH], n: 0 }
    }

    /// Runs `f` on the live item under `key` with the shard's read lock held, marking the
    /// read; `None` on a miss. A dead item found is reaped under the write lock.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&Item) -> R) -> Option<R> {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let (result, needs_time) = {
            let s = read(lock);
            let i = s.find(hash, key)?;
            let it = s.item(i);
            if let Some(why) = self.dead(it, now) {
                drop(s);
                self.count_dead(why);
                let mut s = write(lock);
                if let Some(i) = s.find(hash, key)
                    && self.dead(s.item(i), now).is_some()
                {
                    self.remove(&mut s, i, now);
                }
                return None;
            }
            s.mark_read(i, self.epoch());
            (f(it), it.time() < now.saturating_sub(item::UPDATE_INTERVAL))
        };
        if needs_time {
            // memcached moves the access time at most once a minute: rare enough to take
            // the write lock for.
            let mut s = write(lock);
            if let Some(i) = s.find(hash, key) {
                s.item_mut(i).set_time(now);
            }
        }
        Some(result)
    }

    /// `get`: the live item under `key`, copied out, marking it read.
    pub fn get(&self, key: &[u8]) -> Option<Hit> {
        self.get_with(key, |it| Hit { value: Bytes::copy_from_slice(it.value()), flags: it.flags(), cas: it.cas() })
    }

    /// `gat`: gives the live item under `key` a new deadline, then runs `f` on it.
    pub fn touch_with<R>(&self, key: &[u8], exptime: RelTime, f: impl FnOnce(&Item) -> R) -> Option<R> {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let mut s = write(lock);
        let i = self.find_live(&mut s, hash, key, now)?;
        self.note_deadline(exptime);
        let it = s.item_mut(i);
        it.set_exptime(exptime);
        if it.time() < now.saturating_sub(item::UPDATE_INTERVAL) {
            it.set_time(now);
        }
        s.mark_read(i, self.epoch());
        Some(f(s.item(i)))
    }

    /// `gat` returning a copy (tests and tools; `exec` uses [`Store::touch_with`]).
    pub fn get_and_touch(&self, key: &[u8], exptime: RelTime) -> Option<Hit> {
        self.touch_with(key, exptime, |it| Hit {
            value: Bytes::copy_from_slice(it.value()),
            flags: it.flags(),
            cas: it.cas(),
        })
    }

    /// `touch`: gives a live item a new deadline.
    pub fn touch(&self, key: &[u8], exptime: RelTime) -> bool {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let mut s = write(lock);
        let Some(i) = self.find_live(&mut s, hash, key, now) else { return false };
        self.note_deadline(exptime);
        s.item_mut(i).set_exptime(exptime);
        true
    }

    /// `delete`: whether a live item was removed (a dead one is removed too).
    pub fn delete(&self, key: &[u8]) -> bool {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let mut s = write(lock);
        let Some(i) = s.find(hash, key) else { return false };
        let live = self.dead(s.item(i), now).is_none();
        self.remove(&mut s, i, now);
        live
    }

    /// The storage commands. `exptime` is a relative deadline (see `Clock::deadline`).
    pub fn store(&self, mode: StoreMode, key: &[u8], flags: u32, exptime: RelTime, value: &[u8]) -> StoreOutcome {
        self.store_with(&StoreArgs { mode, key, flags, exptime, value, ..StoreArgs::default() }).0
    }

    /// Storage with the meta protocol's extras (see [`StoreArgs`]). Returns the outcome and
    /// the new CAS unique (0 unless stored).
    pub fn store_with(&self, a: &StoreArgs<'_>) -> (StoreOutcome, u64) {
        let result = self.store_locked(a);
        self.settle();
        result
    }

    /// Evicts back under the limit after a change that grew memory under a lock (a table
    /// that grew, an append larger than foreseen).
    fn settle(&self) {
        if self.used.load(Relaxed) > self.limit.load(Relaxed) {
            self.make_room(0);
        }
    }

    fn store_locked(&self, a: &StoreArgs<'_>) -> (StoreOutcome, u64) {
        let (mode, key, value) = (a.mode, a.key, a.value);
        if self.make_room(charge_for(key.len(), value.len())) != Room::Made {
            return (StoreOutcome::NoMemory, 0);
        }
        let now = self.clock.now();
        let binary = if a.key_binary { bit::KEY_BINARY } else { 0 };
        let fresh = |cas: u64| {
            Item::new(
                &self.slab,
                key,
                &[value],
                Fields { cas, exptime: a.exptime, time: now, flags: a.flags, bits: binary },
            )
        };
        let (hash, lock) = self.locate(key);
        // A set stores a fresh item whatever is there: build it (allocation and copy)
        // before taking the lock, while the item it replaces is fetched into the cache.
        let mut prebuilt = (mode == StoreMode::Set).then(|| {
            read(lock).prefetch_probe(hash);
            fresh(0)
        });
        let mut fresh = |cas: u64| match prebuilt.take() {
            Some(mut it) => {
                it.set_cas(cas);
                it
            }
            None => fresh(cas),
        };
        let mut s = write(lock);
        let Some(i) = self.find_live(&mut s, hash, key, now) else {
            return match mode {
                StoreMode::Set | StoreMode::Add => {
                    let cas = self.next_cas();
                    self.insert(&mut s, hash, fresh(cas));
                    (StoreOutcome::Stored, cas)
                }
                StoreMode::Cas { .. } => {
                    self.stats.cas_misses.fetch_add(1, Relaxed);
                    (StoreOutcome::NotFound, 0)
                }
                StoreMode::Replace | StoreMode::Append | StoreMode::Prepend => (StoreOutcome::NotStored, 0),
            };
        };
        let old = s.item(i);
        let new = match mode {
            StoreMode::Add => {
                // memcached promotes the item it refused to replace: a new access time,
                // but not a fetch.
                s.item_mut(i).set_time(now);
                s.set_access(i, (s.access(i) & access::FETCHED) | self.epoch());
                return (StoreOutcome::NotStored, 0);
            }
            StoreMode::Cas { unique } if unique != old.cas() => {
                if !(a.stale_ok && unique < old.cas()) {
                    self.stats.cas_badval.fetch_add(1, Relaxed);
                    return (StoreOutcome::Exists, 0);
                }
                // An older CAS with `I`: stored, but marked stale, keeping the item's
                // deadline and whether a recache token went out.
                self.stats.cas_hits.fetch_add(1, Relaxed);
                let kept = old.bits() & bit::TOKEN_SENT;
                let f = Fields {
                    cas: self.next_cas(),
                    exptime: old.exptime(),
                    time: now,
                    flags: a.flags,
                    bits: kept | bit::STALE | binary,
                };
                Item::new(&self.slab, key, &[value], f)
            }
            StoreMode::Append | StoreMode::Prepend => {
                if a.compare_cas != 0 && a.compare_cas != old.cas() {
                    return (StoreOutcome::Exists, 0);
                }
                if item_too_large(key.len(), old.flags(), old.value().len() + value.len(), self.max_item_size) {
                    return (StoreOutcome::NotStored, 0);
                }
                // Append and prepend keep the item's flags and deadline.
                let f = Fields {
                    cas: self.next_cas(),
                    exptime: old.exptime(),
                    time: now,
                    flags: old.flags(),
                    bits: binary,
                };
                let parts: [&[u8]; 2] =
                    if mode == StoreMode::Append { [old.value(), value] } else { [value, old.value()] };
                Item::new(&self.slab, key, &parts, f)
            }
            StoreMode::Cas { .. } => {
                self.stats.cas_hits.fetch_add(1, Relaxed);
                fresh(self.next_cas())
            }
            StoreMode::Set | StoreMode::Replace => fresh(self.next_cas()),
        };
        let cas = new.cas();
        self.replace(&mut s, i, new);
        self.stats.total_items.fetch_add(1, Relaxed);
        (StoreOutcome::Stored, cas)
    }

    /// `incr`/`decr`: [`Store::meta_arith`] without the meta extras.
    pub fn arith(&self, key: &[u8], incr: bool, delta: u64) -> ArithOutcome {
        self.meta_arith(key, &ArithArgs { incr, delta, ..ArithArgs::default() })
    }

    /// `flush_all [delay]`, with memcached's arithmetic: everything written up to one
    /// second before the flush time is invalid once that time comes.
    pub fn flush_all(&self, delay: i32) {
        let now = self.clock.now();
        let new_oldest = if delay > 0 { self.clock.deadline(delay) } else { now };
        let oldest_live = new_oldest.saturating_sub(1);
        self.oldest_live.store(oldest_live, Relaxed);
        if oldest_live <= now {
            self.oldest_cas.store(self.next_cas(), Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(Clock::starting_at(1_800_000_000), 64 << 20, 1 << 20)
    }

    fn get(s: &Store, k: &str) -> Option<Vec<u8>> {
        s.get(k.as_bytes()).map(|h| h.value.to_vec())
    }

    fn set(s: &Store, k: &str, v: &str, exptime: RelTime) -> StoreOutcome {
        s.store(StoreMode::Set, k.as_bytes(), 0, exptime, v.as_bytes())
    }

    /// Large values leave most shards with an item or none: eviction's sample must span
    /// shards, or it evicts whatever one shard holds, however new.
    #[test]
    fn eviction_keeps_the_newest_of_few_large_items() {
        let s = Store::new(Clock::starting_at(1_800_000_000), 4 << 20, 1 << 20);
        let value = vec![7u8; 100 << 10];
        for n in 0..300 {
            assert_eq!(s.store(StoreMode::Set, format!("big:{n}").as_bytes(), 0, 0, &value), StoreOutcome::Stored);
        }
        assert!(s.len() < 45, "{} items of 100 KiB fit in 4 MiB", s.len());
        let kept = (290..300).filter(|n| s.get(format!("big:{n}").as_bytes()).is_some()).count();
        assert_eq!(kept, 10, "the ten newest items are all there");
    }

    /// `prefetch_probe` relies on where hashbrown puts slots; if that changes, lookups
    /// only lose their prefetch, so this test is what notices.
    #[test]
    fn probe_prefetch_knows_the_table_layout() {
        let s = store();
        let check = |s: &Store| {
            for shard in s.shards.iter() {
                let sh = read(shard);
                assert!(sh.ctrl != 0 || sh.table.is_empty());
                for i in sh.table.iter_buckets() {
                    assert_eq!(std::ptr::from_ref(sh.item(i)).addr(), sh.ctrl - (i + 1) * size_of::<Item>());
                }
            }
        };
        for n in 0..20_000 {
            set(&s, &format!("k{n}"), "v", 0);
        }
        check(&s);
        let buckets = |s: &Store| s.shards.iter().map(|sh| read(sh).table.num_buckets()).sum::<usize>();
        let grown = buckets(&s);
        for n in 100..20_000 {
            assert!(s.delete(format!("k{n}").as_bytes()));
        }
        s.reclaim_expired(1024);
        assert!(buckets(&s) < grown / 2, "tables shrank: {grown} -> {}", buckets(&s));
        check(&s);
        assert_eq!(get(&s, "k7").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn storage_modes() {
        let s = store();
        assert_eq!(s.store(StoreMode::Replace, b"k", 0, 0, b"x"), StoreOutcome::NotStored);
        assert_eq!(s.store(StoreMode::Append, b"k", 0, 0, b"x"), StoreOutcome::NotStored);
        assert_eq!(s.store(StoreMode::Add, b"k", 5, 0, b"b"), StoreOutcome::Stored);
        assert_eq!(s.store(StoreMode::Add, b"k", 0, 0, b"c"), StoreOutcome::NotStored);
        assert_eq!(s.store(StoreMode::Append, b"k", 99, 0, b"c"), StoreOutcome::Stored);
        assert_eq!(s.store(StoreMode::Prepend, b"k", 99, 0, b"a"), StoreOutcome::Stored);
        let hit = s.get(b"k").unwrap();
        assert_eq!((&hit.value[..], hit.flags), (&b"abc"[..], 5), "append keeps flags");
        assert_eq!(s.store(StoreMode::Cas { unique: hit.cas + 1 }, b"k", 0, 0, b"z"), StoreOutcome::Exists);
        assert_eq!(s.store(StoreMode::Cas { unique: hit.cas }, b"k", 1, 0, b"z"), StoreOutcome::Stored);
        assert_eq!(s.store(StoreMode::Cas { unique: hit.cas }, b"k", 1, 0, b"z"), StoreOutcome::Exists);
        assert_eq!(s.store(StoreMode::Cas { unique: 1 }, b"nope", 1, 0, b"z"), StoreOutcome::NotFound);
        assert_eq!(s.len(), 1);
        assert!(s.delete(b"k"));
        assert!(!s.delete(b"k"));
        assert_eq!(s.len(), 0);
        assert!(s.bytes() < 64 * BUCKET_BYTES, "only table memory is left: {}", s.bytes());
    }

    #[test]
    fn expiry_with_injected_clock() {
        let s = store();
        let c = s.clock().clone();
        set(&s, "a", "1", c.deadline(2));
        set(&s, "never", "1", 0);
        set(&s, "gone", "1", c.deadline(-1));
        assert_eq!(get(&s, "gone"), None);
        c.advance(1);
        assert!(get(&s, "a").is_some());
        c.advance(1);
        assert_eq!(get(&s, "a"), None, "expires when the deadline is reached");
        assert!(get(&s, "never").is_some());
        assert!(s.touch(b"never", c.deadline(1)));
        c.advance(1);
        assert!(!s.touch(b"never", 0));
        assert_eq!(s.len(), 0, "expired items are reaped when found");
        assert_eq!(s.stats.get_expired.load(Relaxed), 3);
    }

    #[test]
    fn replace_of_expired_item_is_not_stored() {
        let s = store();
        set(&s, "k", "v", s.clock().deadline(-1));
        assert_eq!(s.store(StoreMode::Replace, b"k", 0, 0, b"x"), StoreOutcome::NotStored);
        assert_eq!(s.store(StoreMode::Add, b"k", 0, 0, b"x"), StoreOutcome::Stored);
        assert_eq!(get(&s, "k").unwrap(), b"x");
    }

    #[test]
    fn arith_rules() {
        let s = store();
        assert_eq!(s.arith(b"n", true, 1), ArithOutcome::NotFound);
        set(&s, "n", "18446744073709551615", 0);
        assert!(matches!(s.arith(b"n", true, 2), ArithOutcome::Value { value: 1, .. }));
        assert_eq!(get(&s, "n").unwrap(), b"1                   ", "shorter numbers are space padded");
        set(&s, "n", "10", 0);
        assert!(matches!(s.arith(b"n", false, 1), ArithOutcome::Value { value: 9, .. }));
        assert_eq!(get(&s, "n").unwrap(), b"9 ");
        assert!(matches!(s.arith(b"n", false, 100), ArithOutcome::Value { value: 0, .. }));
        set(&s, "n", "99", 0);
        assert!(matches!(s.arith(b"n", true, 1), ArithOutcome::Value { value: 100, .. }));
        assert_eq!(get(&s, "n").unwrap(), b"100");
        set(&s, "n", " 12", 0);
        assert!(matches!(s.arith(b"n", true, 1), ArithOutcome::Value { value: 13, .. }));
        for bad in ["abc", "", "-1", "123456789012345678901", "12a"] {
            set(&s, "n", bad, 0);
            assert_eq!(s.arith(b"n", true, 1), ArithOutcome::NonNumeric, "{bad:?}");
        }
        let before = s.get(b"n").unwrap().cas;
        set(&s, "n", "5", 0);
        s.arith(b"n", true, 1);
        assert!(s.get(b"n").unwrap().cas > before + 1, "incr takes a new CAS");
    }

    #[test]
    fn flush_all_now_and_later() {
        let s = store();
        let c = s.clock().clone();
        set(&s, "a", "1", 0);
        s.flush_all(0);
        assert_eq!(get(&s, "a"), None);
        set(&s, "b", "1", 0);
        assert!(get(&s, "b").is_some(), "items written after the flush survive");
        s.flush_all(2);
        assert!(get(&s, "b").is_some(), "a delayed flush waits");
        c.advance(1);
        set(&s, "c", "1", 0);
        c.advance(1);
        assert_eq!(get(&s, "b"), None);
        assert_eq!(get(&s, "c"), None, "written up to the flush time: flushed too");
        set(&s, "d", "1", 0);
        assert!(get(&s, "d").is_some());
        assert_eq!(s.stats.get_flushed.load(Relaxed), 3);
    }

    #[test]
    fn append_over_item_limit_is_not_stored() {
        let s = Store::new(Clock::starting_at(1_800_000_000), 64 << 20, 1024);
        let big = "x".repeat(900);
        assert_eq!(set(&s, "k", &big, 0), StoreOutcome::Stored);
        assert_eq!(s.store(StoreMode::Append, b"k", 0, 0, big.as_bytes()), StoreOutcome::NotStored);
        assert_eq!(get(&s, "k").unwrap().len(), 900);
    }

    #[test]
    fn eviction_keeps_under_the_limit_and_spares_read_items() {
        let s = store();
        let v = "v".repeat(100);
        for i in 0..10_000 {
            assert_eq!(set(&s, &format!("k{i:05}"), &v, 0), StoreOutcome::Stored);
        }
        // Exactly full: nothing evicted yet.
        s.set_limit(s.bytes());
        assert_eq!((s.len(), s.stats.evictions.load(Relaxed)), (10_000, 0));
        // A tenth of the items are read between floods of one-time keys (each a tenth of
        // the cache): the hand clears their bit, they are read again, they stay.
        let hot: Vec<String> = (0..10_000).step_by(10).map(|i| format!("k{i:05}")).collect();
        for round in 0..5 {
            for k in &hot {
                assert!(s.get(k.as_bytes()).is_some(), "hot key {k} evicted in round {round}");
            }
            for i in 0..1000 {
                assert_eq!(set(&s, &format!("scan{round}-{i}"), &v, 0), StoreOutcome::Stored);
                assert!(s.bytes() <= s.limit());
            }
        }
        assert!(s.stats.evictions.load(Relaxed) >= 5000, "{}", s.stats.evictions.load(Relaxed));
        assert!(s.stats.evicted_unfetched.load(Relaxed) >= 4000);
        // An item larger than the whole limit can never be stored.
        assert_eq!(set(&s, "huge", &"x".repeat(s.limit()), 0), StoreOutcome::NoMemory);
        // Shrinking the limit evicts down to it.
        let smaller = s.bytes() / 2;
        s.set_limit(smaller);
        assert!(s.bytes() <= smaller && s.len() < 6000, "{} items", s.len());
    }

    #[test]
    fn without_evictions_a_full_cache_refuses_stores() {
        let mut s = store();
        s.disable_evictions();
        let c = s.clock().clone();
        let v = "v".repeat(1000);
        for i in 0..100 {
            set(&s, &format!("k{i}"), &v, if i < 10 { c.deadline(5) } else { 0 });
        }
        s.set_limit(s.bytes());
        assert_eq!(set(&s, "new", &v, 0), StoreOutcome::NoMemory);
        assert_eq!((s.len(), s.stats.evictions.load(Relaxed)), (100, 0));
        c.advance(5);
        assert_eq!(set(&s, "new", &v, 0), StoreOutcome::Stored, "an expired item made room");
        assert_eq!(s.stats.evictions.load(Relaxed), 0);
        assert!(get(&s, "k50").is_some());
    }

    #[test]
    fn background_reclaim_frees_expired_items() {
        let s = store();
        let c = s.clock().clone();
        for i in 0..1000 {
            set(&s, &format!("k{i}"), "v", c.deadline(2));
        }
        set(&s, "keep", "v", 0);
        c.advance(2);
        let mut freed = 0;
        for _ in 0..100 {
            freed += s.reclaim_expired(64);
        }
        assert_eq!((freed, s.len()), (1000, 1));
        assert_eq!(s.stats.reclaimed.load(Relaxed), 1000);
        assert_eq!(s.stats.expired_unfetched.load(Relaxed), 1000);
    }

    #[test]
    fn background_reclaim_sweeps_only_what_can_be_dead() {
        let s = store();
        let c = s.clock().clone();
        for i in 0..100 {
            set(&s, &format!("k{i}"), "v", 0);
        }
        assert!(!s.may_have_dead(), "no deadlines, no flush: nothing to sweep");
        assert_eq!(s.reclaim_expired(1024), 0);
        // A touch gives one item a deadline: from then on the sweep walks.
        assert!(s.touch(b"k0", c.deadline(1)));
        assert!(s.may_have_dead());
        c.advance(1);
        assert_eq!((s.reclaim_expired(1024), s.len()), (1, 99));
        // A flush makes every item dead, deadlines or not.
        let t = store();
        set(&t, "a", "v", 0);
        t.flush_all(0);
        t.clock().advance(1);
        assert!(t.may_have_dead());
        assert_eq!((t.reclaim_expired(1024), t.len()), (1, 0));
    }

    #[test]
    fn charges_track_contents() {
        let s = store();
        let empty = s.bytes();
        set(&s, "k", "12345", 0);
        let table = s.bytes() - item::charge_for(1, 5);
        s.store(StoreMode::Append, b"k", 0, 0, &[b'6'; 30]);
        assert_eq!(s.bytes(), table + item::charge_for(1, 35));
        set(&s, "k", "1", 0);
        s.arith(b"k", true, 10);
        assert_eq!(s.bytes(), table + item::charge_for(1, 2));
        s.delete(b"k");
        assert_eq!(s.bytes(), table, "the table's own memory stays charged");
        assert!(empty <= table);
    }

    /// Shows items `step` at a time, calling `between` after each step, and returns every
    /// key shown (with repeats) once the dump ends.
    fn dump_in_steps(s: &Store, step: usize, mut between: impl FnMut(usize)) -> Vec<String> {
        let mut shown = Vec::new();
        let mut at = Some(DumpCursor::default());
        let mut steps = 0;
        while let Some(from) = at {
            let mut n = 0;
            at = s.dump(from, |key, _| {
                shown.push(String::from_utf8(key.to_vec()).unwrap());
                n += 1;
                n < step
            });
            steps += 1;
            between(steps);
        }
        shown
    }

    /// A table rebuilt under a dump (grown by stores, shrunk once items went) moves its
    /// items to other buckets; the dump must still show every item there throughout.
    #[test]
    fn dump_shows_every_item_there_throughout_while_tables_are_rebuilt() {
        let s = store();
        let c = s.clock().clone();
        for n in 0..2_000 {
            set(&s, &format!("keep:{n}"), "v", 0);
        }
        for n in 0..30_000 {
            set(&s, &format!("fill:{n}"), "v", 0);
        }
        let rebuilds = |s: &Store| s.shards.iter().map(|sh| read(sh).rebuilds).sum::<u32>();
        let before = rebuilds(&s);
        // Each odd step grows every table (30,000 more items: 970 a shard where 1,024
        // buckets hold 896), each even one takes them away again and lets the background
        // pass shrink the tables back.
        let shown = dump_in_steps(&s, 4_000, |step| {
            for n in 0..30_000 {
                let key = format!("new:{n}");
                if step % 2 == 1 {
                    set(&s, &key, "v", 0);
                } else {
                    s.delete(key.as_bytes());
                }
            }
            if step % 2 == 0 {
                c.advance(meta::DUMP_QUIET);
                s.reclaim_expired(16);
            }
        });
        assert_eq!(s.stats.evictions.load(Relaxed), 0);
        assert!(rebuilds(&s) > before + 64, "tables were rebuilt under the dump: {} -> {}", before, rebuilds(&s));
        let shown: std::collections::HashSet<_> = shown.into_iter().collect();
        let missing: Vec<_> = (0..2_000).map(|n| format!("keep:{n}")).filter(|k| !shown.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "{} of 2000 items never shown, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(3)]
        );
    }

    /// A dump that finds nothing to show (here: every item expired, not yet reclaimed)
    /// still hands back its cursor after a bounded walk, and then carries on to the end.
    #[test]
    fn dump_walks_a_bounded_number_of_buckets_per_call() {
        let s = store();
        let c = s.clock().clone();
        for n in 0..100_000 {
            set(&s, &format!("k{n}"), "v", c.deadline(1));
        }
        c.advance(1);
        let buckets: usize = s.shards.iter().map(|sh| read(sh).table.num_buckets()).sum();
        let mut calls = 0;
        let mut at = Some(DumpCursor::default());
        while let Some(from) = at {
            at = s.dump(from, |_, _| panic!("nothing is live"));
            calls += 1;
        }
        assert_eq!(calls, buckets.div_ceil(meta::DUMP_BUDGET), "{buckets} buckets");
        assert!(calls > 1);
    }

    /// Compacting waits while a dump is under way, so the dump is not sent back to the
    /// start of every shard it is walking.
    #[test]
    fn tables_are_not_compacted_while_a_dump_is_under_way() {
        let s = store();
        let c = s.clock().clone();
        for n in 0..20_000 {
            set(&s, &format!("k{n}"), "v", 0);
        }
        for n in 100..20_000 {
            s.delete(format!("k{n}").as_bytes());
        }
        let buckets = |s: &Store| s.shards.iter().map(|sh| read(sh).table.num_buckets()).sum::<usize>();
        let grown = buckets(&s);
        assert!(s.dump(DumpCursor::default(), |_, _| false).is_some());
        c.advance(meta::DUMP_QUIET - 1);
        s.reclaim_expired(16);
        assert_eq!(buckets(&s), grown, "no compacting right after a dump's step");
        c.advance(1);
        s.reclaim_expired(16);
        assert!(buckets(&s) < grown / 2, "compacted once the dump went quiet");
    }
}
