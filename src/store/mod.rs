//! The item store and its verbs: [`Store::lookup`] (with options, the classic retrievals
//! being its plain case), [`Store::store`], [`Store::delete`], [`Store::arith`] and
//! [`Store::flush_all`], with memcached's semantics; a walk over every item
//! ([`Store::dump`], which state files are saved with too), the most recently used items
//! ([`Store::gather_recent`], for `stats cachedump`) and putting back what a state file
//! kept ([`Store::restore`]). A hash table split into 64 shards under reader-writer locks
//! (`shard`; a large table grows by draining into its successor a few items per write),
//! each item one block ([`Item`]; small ones in 8-byte-granular slots of the store's own
//! `slab`), lazy and background expiry, CAS uniques from one counter, and sampled
//! eviction by S3-FIFO's classes under a byte-accurate memory limit (`evict`): no queue,
//! no per-item list, table memory charged along with the items. Speaks no protocol: it
//! imports only the clock, [`crate::memcached`]'s rules and the [`crate::watch`] log it
//! tells of evictions; `exec` drives it.

mod evict;
mod item;
mod lookup;
mod restore;
mod shard;
mod slab;
#[cfg(test)]
mod tests;
mod walk;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use hashbrown::DefaultHashBuilder;

pub use item::charge_for;
pub use item::{Item, SharedValue};
pub use lookup::{Found, Lookup, Probe};
pub use restore::{Kept, Restored};
pub use shard::Prefetch;
pub use walk::{DumpCursor, Recent};

use crate::clock::{Clock, RelTime};
use crate::memcached::number::parse_u64;
use crate::memcached::{StoreMode, TtlFlags, item_too_large};
use crate::watch::Log;
use item::{Fields, access, bit};
use shard::{PREFETCH_BATCH, Room, Shard, Side, read, write};
use slab::Slab;

/// Shards: enough that threads rarely meet on one lock, few enough that each table stays
/// large (table growth is per shard).
const SHARDS: usize = 64;

/// Memory a table bucket costs: the item's pointer, hashbrown's control byte, the access
/// byte and half a ghost entry (a 16-bit tagged fingerprint per two buckets, see
/// `evict.rs`).
const BUCKET_BYTES: usize = std::mem::size_of::<Item>() + 2 + 1;

/// What `delete` and `md` ask beyond the key.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteOpts {
    /// `md C`: delete only if the item's CAS is this.
    pub compare_cas: Option<u64>,
    /// `md I`: mark the item stale instead of removing it.
    pub invalidate: bool,
    /// `md T` with `I`: the stale item's new deadline.
    pub exptime: Option<RelTime>,
    /// `md E` (memcached 1.6.45): the CAS the invalidated or emptied item gets.
    pub cas_in: Option<u64>,
    /// `md x` (1.6.45): instead of removing the item, replace it with an empty value
    /// with these client flags (`F`) and this deadline (`T`, or none), keeping its CAS
    /// (or taking `E`'s).
    pub remove_value: Option<(u32, RelTime)>,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// `I`: marked stale with a new CAS instead of removed.
    Invalidated,
    /// `C` did not match.
    Exists,
    NotFound,
}

/// What `incr`/`decr` and `ma` ask.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArithArgs {
    pub incr: bool,
    pub delta: u64,
    /// Proceed only if the item's CAS is this (0 = no check).
    pub compare_cas: u64,
    /// `N`/`J`: on a miss, create the item with this initial value.
    pub initial: Option<u64>,
    pub ttl: TtlFlags,
    /// `ma E` (memcached 1.6.45): the CAS the changed or created item gets.
    pub cas_in: Option<u64>,
}

/// What an arithmetic command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new value (or the initial value of a created item), the item's new CAS, its
    /// deadline before the request's `T`/`N` flags, and whether it was created.
    Value {
        value: u64,
        cas: u64,
        exptime_before: RelTime,
        created: bool,
    },
    NotFound,
    Exists,
    NonNumeric,
    NoMemory,
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
    /// `ms E` (memcached 1.6.45): the stored item's CAS, instead of the next unique.
    pub cas_in: Option<u64>,
    /// `ms MA N` / `MP N` (1.6.45): append and prepend store the value as a new item
    /// (`flags`, `exptime`) when the key is missing.
    pub vivify: bool,
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
            cas_in: None,
            vivify: false,
        }
    }
}

crate::per_worker::counters!(
    /// Counters the store keeps itself, per worker thread (the rest of `stats` lives in
    /// `crate::stats`). `relocated`: items moved out of sparse slab pages (memcached's
    /// `slab_reassign_rescues`).
    StoreCounters, StoreTotals {
        counters: total_items, get_expired, get_flushed, reclaimed, expired_unfetched, evictions,
            evicted_unfetched, cas_badval, cas_hits, cas_misses, relocated;
        gauges: curr_items
    }
);

/// The store's counters: a [`StoreCounters`] per worker thread.
#[derive(Debug, Default)]
pub struct StoreStats(crate::per_worker::PerWorker<StoreCounters>);

impl StoreStats {
    /// The calling thread's counters, to bump.
    #[inline]
    pub fn local(&self) -> &StoreCounters {
        self.0.local()
    }

    /// Every counter summed over the threads.
    pub fn totals(&self) -> StoreTotals {
        StoreTotals::of(&self.0)
    }

    /// `stats reset`: zeroes every counter, as memcached's reset does; `curr_items` is a
    /// gauge and stays.
    fn reset(&self) {
        self.0.iter().for_each(StoreCounters::reset);
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
    /// Not `-C`: items get CAS values (with `-C` every CAS is 0, as in memcached).
    cas: bool,
    /// Eviction's coarse clock: it advances every 1/64 of the cache's worth of new bytes,
    /// and items remember the epoch of their last use (7 bits, wrapping).
    epoch: AtomicU8,
    since_epoch: AtomicUsize,
    /// Eviction's estimate of the share of items never read since written (the
    /// probationary items), in 1/65536ths, from its own samples (see `evict.rs`).
    probation: AtomicU32,
    /// The share of items probation may hold before its items go first, in 1/65536ths,
    /// moved by ghost hits (see `evict.rs`).
    probation_target: AtomicU32,
    /// Ghost entries held across the shards with each tag (`Shard::ghost_held`'s sums).
    ghost_held: [AtomicI64; 2],
    /// When a metadump last took a step (`clock.now() + 1`; 0: never). Tables are not
    /// compacted for a while after, so a dump is seldom sent back to a shard's start.
    dumped_at: AtomicU32,
    pub stats: StoreStats,
    /// `watch evictions`: the server's log, told of each item evicted.
    log: Arc<Log>,
    /// Slots for small items' blocks, reserved for this store's limit. Declared last, so
    /// dropped after `shards`: the items free their blocks into it.
    slab: Slab,
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
            cas: true,
            epoch: AtomicU8::new(0),
            since_epoch: AtomicUsize::new(0),
            // An empty cache fills with items nobody has read yet.
            probation: AtomicU32::new(65536),
            probation_target: AtomicU32::new(evict::INITIAL_TARGET),
            ghost_held: Default::default(),
            dumped_at: AtomicU32::new(0),
            stats: StoreStats::default(),
            log: Arc::default(),
            slab: Slab::new(limit),
        }
    }

    /// `-M`: a full cache refuses stores (`SERVER_ERROR out of memory storing object`)
    /// instead of evicting live items.
    pub fn disable_evictions(&mut self) {
        self.evictions = false;
    }

    /// `-C`: every item's CAS is 0; `cas` and `ms C` find no match (EXISTS), as in
    /// memcached, while `md C0` and `ma C0` match an item's 0.
    pub fn disable_cas(&mut self) {
        self.cas = false;
    }

    /// Tells `log` of evictions (`watch evictions`).
    pub fn set_log(&mut self, log: Arc<Log>) {
        self.log = log;
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

    /// `stats reset`: the store's counters (not its gauges: items, bytes) start from 0.
    pub fn reset_stats(&self) {
        self.stats.reset();
        self.slab.reset_pages_moved();
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
        self.stats.totals().curr_items as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A batch of lookups about to be made (a multi-get, a pipeline of gets), to start
    /// loading their memory into the CPU cache first: the batch then waits for memory
    /// about twice in all rather than twice per key. See [`Prefetch`].
    pub fn prefetch(&self) -> Prefetch<'_> {
        Prefetch { store: self, hashes: [0; PREFETCH_BATCH], n: 0 }
    }

    /// The storage commands: `a.mode` says what an existing item allows. Returns the
    /// outcome and the new CAS unique (0 unless stored).
    pub fn store(&self, a: &StoreArgs<'_>) -> (StoreOutcome, u64) {
        let result = self.store_locked(a);
        self.settle();
        result
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
        // `E` names the CAS the stored item gets (none, as any CAS, with -C).
        let next_cas = || match a.cas_in {
            Some(c) if self.cas => c,
            _ => self.next_cas(),
        };
        let Some(i) = self.find_live(&mut s, hash, key, now) else {
            return match mode {
                StoreMode::Append | StoreMode::Prepend if a.vivify => {
                    let cas = next_cas();
                    self.insert(&mut s, hash, fresh(cas));
                    (StoreOutcome::Stored, cas)
                }
                StoreMode::Set | StoreMode::Add => {
                    let cas = next_cas();
                    self.insert(&mut s, hash, fresh(cas));
                    (StoreOutcome::Stored, cas)
                }
                StoreMode::Cas { .. } => {
                    self.stats.local().cas_misses.fetch_add(1, Relaxed);
                    (StoreOutcome::NotFound, 0)
                }
                StoreMode::Replace | StoreMode::Append | StoreMode::Prepend => (StoreOutcome::NotStored, 0),
            };
        };
        let old = s.item(i);
        let new = match mode {
            StoreMode::Add => {
                // memcached (with its default segmented LRU) promotes the item it refused to
                // replace: a new access time, even within the minute, but not a fetch.
                s.item_mut(i).set_time(now);
                s.set_access(i, (s.access(i) & access::FETCHED) | self.epoch());
                return (StoreOutcome::NotStored, 0);
            }
            // memcached reads a CAS of 0 (all of them, with -C) as none given: no match.
            StoreMode::Cas { unique } if unique != old.cas() || !self.cas || unique == 0 => {
                if !(a.stale_ok && unique < old.cas() && unique != 0) {
                    self.stats.local().cas_badval.fetch_add(1, Relaxed);
                    return (StoreOutcome::Exists, 0);
                }
                // An older CAS with `I`: stored, but marked stale, keeping the item's
                // deadline and whether a recache token went out.
                self.stats.local().cas_hits.fetch_add(1, Relaxed);
                let kept = old.bits() & bit::TOKEN_SENT;
                let f = Fields {
                    cas: next_cas(),
                    exptime: old.exptime(),
                    time: now,
                    flags: a.flags,
                    bits: kept | bit::STALE | binary,
                };
                Item::new(&self.slab, key, &[value], f)
            }
            StoreMode::Append | StoreMode::Prepend => {
                if a.compare_cas != 0 && a.compare_cas != old.cas() && self.cas {
                    return (StoreOutcome::Exists, 0);
                }
                if item_too_large(key.len(), old.flags(), old.value().len() + value.len(), self.max_item_size) {
                    return (StoreOutcome::NotStored, 0);
                }
                // Append and prepend keep the item's flags and deadline.
                let f = Fields { cas: next_cas(), exptime: old.exptime(), time: now, flags: old.flags(), bits: binary };
                let parts: [&[u8]; 2] =
                    if mode == StoreMode::Append { [old.value(), value] } else { [value, old.value()] };
                Item::new(&self.slab, key, &parts, f)
            }
            StoreMode::Cas { .. } => {
                self.stats.local().cas_hits.fetch_add(1, Relaxed);
                fresh(next_cas())
            }
            StoreMode::Set | StoreMode::Replace => fresh(next_cas()),
        };
        let cas = new.cas();
        self.replace(&mut s, i, new);
        self.stats.local().total_items.fetch_add(1, Relaxed);
        (StoreOutcome::Stored, cas)
    }

    /// `delete` and `md`: removes the live item, or with `invalidate` marks it stale (new
    /// CAS, optional new deadline, recache token free again).
    pub fn delete(&self, key: &[u8], opts: &DeleteOpts) -> DeleteOutcome {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let mut s = write(lock);
        let Some(i) = self.find_live(&mut s, hash, key, now) else { return DeleteOutcome::NotFound };
        if opts.compare_cas.is_some_and(|c| c != s.item(i).cas()) {
            return DeleteOutcome::Exists;
        }
        let cas_in = opts.cas_in.filter(|_| self.cas);
        if let Some((flags, exptime)) = opts.remove_value {
            // memcached 1.6.45 stores a new, empty item over the old one (which does not
            // keep the mark of a base64 key: replies then give the key as it is).
            let cas = cas_in.unwrap_or(s.item(i).cas());
            let it = Item::new(&self.slab, key, &[], Fields { cas, exptime, time: now, flags, bits: 0 });
            self.replace(&mut s, i, it);
            self.stats.local().total_items.fetch_add(1, Relaxed);
            if !opts.invalidate {
                return DeleteOutcome::Deleted;
            }
        }
        if opts.invalidate {
            let cas = cas_in.unwrap_or_else(|| self.next_cas());
            if let Some(t) = opts.exptime {
                self.note_deadline(t);
                self.set_exptime(&mut s, i, t);
            }
            let it = s.item_mut(i);
            it.set_bits((it.bits() | bit::STALE) & !bit::TOKEN_SENT);
            it.set_cas(cas);
            return DeleteOutcome::Invalidated;
        }
        self.remove(&mut s, i, now);
        DeleteOutcome::Deleted
    }

    /// `incr`/`decr`/`ma` with memcached's rules: the value must read as an unsigned 64-bit
    /// decimal (`strtoull`, leading space allowed), incr wraps, decr stops at 0, and a
    /// result with fewer digits is written in place padded with spaces, as memcached does.
    pub fn arith(&self, key: &[u8], a: &ArithArgs) -> ArithOutcome {
        if a.initial.is_some() && self.make_room(charge_for(key.len(), 20)) != Room::Made {
            return ArithOutcome::NoMemory;
        }
        let outcome = self.arith_locked(key, a);
        self.settle();
        outcome
    }

    fn arith_locked(&self, key: &[u8], a: &ArithArgs) -> ArithOutcome {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let mut s = write(lock);
        let Some(i) = self.find_live(&mut s, hash, key, now) else {
            let Some(initial) = a.initial else { return ArithOutcome::NotFound };
            let mut n = itoa::Buffer::new();
            let digits = n.format(initial).as_bytes();
            let cas = a.cas_in.filter(|_| self.cas).unwrap_or_else(|| self.next_cas());
            let exptime = a.ttl.exptime_at(usize::MAX, 0, true);
            self.insert(
                &mut s,
                hash,
                Item::new(&self.slab, key, &[digits], Fields { cas, exptime, time: now, flags: 0, bits: 0 }),
            );
            return ArithOutcome::Value { value: initial, cas, exptime_before: 0, created: true };
        };
        let old = s.item(i);
        if old.value().is_empty() {
            return ArithOutcome::NonNumeric;
        }
        if a.compare_cas != 0 && a.compare_cas != old.cas() {
            return ArithOutcome::Exists;
        }
        // strtoull over the data, which memcached keeps followed by "\r\n".
        let Some(current) = parse_u64(old.value()) else { return ArithOutcome::NonNumeric };
        let value = if a.incr { current.wrapping_add(a.delta) } else { current.saturating_sub(a.delta) };
        let mut n = itoa::Buffer::new();
        let digits = n.format(value).as_bytes();
        let old_len = old.value().len();
        let exptime_before = old.exptime();
        let mut f = old.fields();
        f.cas = a.cas_in.filter(|_| self.cas).unwrap_or_else(|| self.next_cas());
        f.exptime = a.ttl.exptime_at(usize::MAX, exptime_before, false);
        let grows = digits.len() > old_len;
        let new = if !grows {
            // Rewritten in place: memcached pads with spaces and keeps the access-time rule.
            f.time = item::bumped(f.time, now);
            let pad = vec![b' '; old_len - digits.len()];
            Item::new(&self.slab, key, &[digits, &pad], f)
        } else {
            f.time = now;
            Item::new(&self.slab, key, &[digits], f)
        };
        let cas = new.cas();
        // Same item, new contents: the readers' bits stay with it.
        let side = s.access(i);
        self.replace(&mut s, i, new);
        s.set_access(i, side);
        if grows {
            // memcached writes a longer number into a new item, which counts as one.
            self.stats.local().total_items.fetch_add(1, Relaxed);
        }
        ArithOutcome::Value { value, cas, exptime_before, created: false }
    }

    /// `flush_all [delay]`, with memcached's arithmetic: everything written up to one
    /// second before the flush time is invalid once that time comes.
    pub fn flush_all(&self, delay: i32) {
        let now = self.clock.now();
        let new_oldest = if delay > 0 { self.clock.deadline(delay) } else { now };
        // Without CAS to tell this second's later writes apart, memcached -C flushes the
        // whole second, as this does.
        let oldest_live = if self.cas { new_oldest.saturating_sub(1) } else { new_oldest };
        self.oldest_live.store(oldest_live, Relaxed);
        if oldest_live <= now {
            self.oldest_cas.store(self.next_cas(), Relaxed);
        }
    }
}
