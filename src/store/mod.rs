//! The item store: a sharded concurrent map from key to [`Entry`] with memcached's storage
//! semantics (one method per verb), lazy expiry, `flush_all` and CAS uniques from one
//! counter. Knows nothing of the wire protocol beyond [`StoreMode`]; `exec` drives it.

mod entry;
mod evict;
mod meta;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use evict::{ClockQueue, Record};

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;

pub use entry::{ENTRY_OVERHEAD, Entry};
pub use meta::{ArithArgs, ArithOutcome, DebugInfo, DeleteOutcome, GetArgs, MetaHit, TtlFlags};

use crate::clock::{Clock, RelTime};
use crate::protocol::StoreMode;
use crate::protocol::decode::item_too_large;

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

/// Most records eviction looks at for one request, so a request's work stays bounded even
/// when a large value must displace many small ones.
const MAX_EVICT_STEPS: usize = 1 << 16;

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

/// Why a present item does not count as present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dead {
    Flushed,
    Expired,
}

/// The cache.
#[derive(Debug)]
pub struct Store {
    map: DashMap<Bytes, Entry>,
    clock: Clock,
    last_cas: AtomicU64,
    /// `flush_all` state as memcached keeps it: items written at or before `oldest_live`
    /// (once that time has come), or with a CAS below `oldest_cas`, are gone.
    oldest_live: AtomicU32,
    oldest_cas: AtomicU64,
    used: AtomicUsize,
    limit: AtomicUsize,
    order: ClockQueue,
    births: AtomicU32,
    max_item_size: usize,
    pub stats: StoreStats,
}

impl Store {
    /// An empty store charging at most `limit` bytes, refusing items over `max_item_size`.
    pub fn new(clock: Clock, limit: usize, max_item_size: usize) -> Self {
        Self {
            map: DashMap::new(),
            clock,
            last_cas: AtomicU64::new(0),
            oldest_live: AtomicU32::new(0),
            oldest_cas: AtomicU64::new(0),
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            order: ClockQueue::new(),
            births: AtomicU32::new(0),
            max_item_size,
            stats: StoreStats::default(),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Bytes currently charged.
    pub fn bytes(&self) -> usize {
        self.used.load(Relaxed)
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

    /// Evicts until `need` more bytes fit under the limit, least recently used first
    /// (CLOCK). Must not be called while holding a map guard.
    fn make_room(&self, need: usize) -> Room {
        let limit = self.limit.load(Relaxed);
        if need > limit {
            return Room::Never;
        }
        let now = self.clock.now();
        for _ in 0..MAX_EVICT_STEPS {
            if self.used.load(Relaxed) + need <= limit {
                return Room::Made;
            }
            let Some(rec) = self.order.pop() else { return Room::Never };
            let Some(e) = self.map.get(&rec.key[..]) else { continue };
            if e.birth != rec.birth {
                continue; // stale: the entry this record was made for is gone
            }
            let dead = self.dead(&e, now).is_some();
            if !dead && e.bits.fetch_and(!entry::bit::REFERENCED, Relaxed) & entry::bit::REFERENCED != 0 {
                drop(e);
                self.order.requeue(rec);
                continue;
            }
            drop(e);
            if let Some((k, e)) = self.map.remove_if(&rec.key[..], |_, e| e.birth == rec.birth) {
                if self.dead(&e, now).is_none() {
                    self.stats.evictions.fetch_add(1, Relaxed);
                    if !e.has(entry::bit::FETCHED) {
                        self.stats.evicted_unfetched.fetch_add(1, Relaxed);
                    }
                }
                self.account_remove(k.len(), &e, now);
            }
        }
        Room::Partial
    }

    /// Records a new key for eviction, and drops a couple of stale records when deletes
    /// have let them pile up, so the queue stays proportional to the items held.
    fn record_insert(&self, key: Bytes, birth: u32) {
        self.order.push(Record { key, birth });
        if self.order.len() > 2 * self.len() + 1024 {
            for _ in 0..2 {
                let Some(rec) = self.order.pop() else { return };
                let current = self.map.get(&rec.key[..]).is_some_and(|e| e.birth == rec.birth);
                if current {
                    self.order.requeue(rec);
                }
            }
        }
    }

    fn next_cas(&self) -> u64 {
        self.last_cas.fetch_add(1, Relaxed) + 1
    }

    fn dead(&self, e: &Entry, now: RelTime) -> Option<Dead> {
        let oldest_live = self.oldest_live.load(Relaxed);
        if oldest_live != 0 && oldest_live <= now {
            let oldest_cas = self.oldest_cas.load(Relaxed);
            if e.time() <= oldest_live || (oldest_cas != 0 && e.cas < oldest_cas) {
                return Some(Dead::Flushed);
            }
        }
        e.is_expired(now).then_some(Dead::Expired)
    }

    /// Counts a lookup that found a dead item, as memcached's `do_item_get` does.
    fn count_dead(&self, why: Dead) {
        match why {
            Dead::Flushed => &self.stats.get_flushed,
            Dead::Expired => &self.stats.get_expired,
        }
        .fetch_add(1, Relaxed);
    }

    fn account_insert(&self, key_len: usize, value_len: usize) {
        self.used.fetch_add(Entry::charge(key_len, value_len), Relaxed);
        self.stats.curr_items.fetch_add(1, Relaxed);
    }

    fn account_remove(&self, key_len: usize, e: &Entry, now: RelTime) {
        self.used.fetch_sub(Entry::charge(key_len, e.value.len()), Relaxed);
        self.stats.curr_items.fetch_sub(1, Relaxed);
        if self.dead(e, now).is_some() {
            self.stats.reclaimed.fetch_add(1, Relaxed);
            if !e.has(entry::bit::FETCHED) {
                self.stats.expired_unfetched.fetch_add(1, Relaxed);
            }
        }
    }

    fn account_resize(&self, old_len: usize, new_len: usize) {
        if new_len >= old_len {
            self.used.fetch_add(new_len - old_len, Relaxed);
        } else {
            self.used.fetch_sub(old_len - new_len, Relaxed);
        }
    }

    /// Removes `key` if it is still dead (re-checked under the shard's write lock).
    fn reap(&self, key: &[u8], now: RelTime) {
        if let Some((k, e)) = self.map.remove_if(key, |_, e| self.dead(e, now).is_some()) {
            self.account_remove(k.len(), &e, now);
        }
    }

    /// `get`: the live item under `key`, marking it read.
    pub fn get(&self, key: &[u8]) -> Option<Hit> {
        let now = self.clock.now();
        let e = self.map.get(key)?;
        if let Some(why) = self.dead(&e, now) {
            drop(e);
            self.count_dead(why);
            self.reap(key, now);
            return None;
        }
        e.bump(now);
        Some(Hit { value: e.value.clone(), flags: e.flags, cas: e.cas })
    }

    /// `gat`: like [`Store::get`], also giving the item a new deadline.
    pub fn get_and_touch(&self, key: &[u8], exptime: RelTime) -> Option<Hit> {
        let now = self.clock.now();
        let mut e = self.map.get_mut(key)?;
        if let Some(why) = self.dead(&e, now) {
            drop(e);
            self.count_dead(why);
            self.reap(key, now);
            return None;
        }
        e.exptime = exptime;
        e.bump(now);
        Some(Hit { value: e.value.clone(), flags: e.flags, cas: e.cas })
    }

    /// `touch`: gives a live item a new deadline.
    pub fn touch(&self, key: &[u8], exptime: RelTime) -> bool {
        let now = self.clock.now();
        let Some(mut e) = self.map.get_mut(key) else { return false };
        if let Some(why) = self.dead(&e, now) {
            drop(e);
            self.count_dead(why);
            self.reap(key, now);
            return false;
        }
        e.exptime = exptime;
        true
    }

    /// `delete`: whether a live item was removed (a dead one is removed too).
    pub fn delete(&self, key: &[u8]) -> bool {
        let now = self.clock.now();
        match self.map.remove(key) {
            Some((k, e)) => {
                let live = self.dead(&e, now).is_none();
                self.account_remove(k.len(), &e, now);
                live
            }
            None => false,
        }
    }

    /// The storage commands. `exptime` is a relative deadline (see `Clock::deadline`).
    pub fn store(&self, mode: StoreMode, key: &[u8], flags: u32, exptime: RelTime, value: &[u8]) -> StoreOutcome {
        self.store_with(&StoreArgs { mode, key, flags, exptime, value, ..StoreArgs::default() }).0
    }

    /// Storage with the meta protocol's extras (see [`StoreArgs`]). Returns the outcome and
    /// the new CAS unique (0 unless stored).
    pub fn store_with(&self, a: &StoreArgs<'_>) -> (StoreOutcome, u64) {
        let (mode, key, value) = (a.mode, a.key, a.value);
        if self.make_room(Entry::charge(key.len(), value.len())) != Room::Made {
            return (StoreOutcome::NoMemory, 0);
        }
        let now = self.clock.now();
        let fresh = |birth: u32, cas: u64| {
            let e = Entry::new(entry::own(value), a.flags, a.exptime, now, cas, birth);
            e.set_bit(entry::bit::KEY_BINARY, a.key_binary);
            e
        };
        match self.map.entry(Bytes::copy_from_slice(key)) {
            MapEntry::Occupied(mut o) => {
                if let Some(why) = self.dead(o.get(), now) {
                    self.count_dead(why);
                    // memcached unlinks the dead item and carries on as if it were absent.
                    if matches!(mode, StoreMode::Set | StoreMode::Add) {
                        let (old_len, birth) = (o.get().value.len(), o.get().birth);
                        self.stats.reclaimed.fetch_add(1, Relaxed);
                        let cas = self.next_cas();
                        *o.get_mut() = fresh(birth, cas);
                        self.account_resize(old_len, value.len());
                        self.stats.total_items.fetch_add(1, Relaxed);
                        return (StoreOutcome::Stored, cas);
                    }
                    let (k, e) = o.remove_entry();
                    self.account_remove(k.len(), &e, now);
                    return (self.absent(mode), 0);
                }
                let e = o.get_mut();
                let birth = e.birth;
                let new_value = match mode {
                    StoreMode::Add => {
                        e.bump(now); // memcached promotes the item it refused to replace
                        return (StoreOutcome::NotStored, 0);
                    }
                    StoreMode::Cas { unique } if unique != e.cas => {
                        if !(a.stale_ok && unique < e.cas) {
                            self.stats.cas_badval.fetch_add(1, Relaxed);
                            return (StoreOutcome::Exists, 0);
                        }
                        // An older CAS with `I`: stored, but marked stale, keeping the
                        // item's deadline and whether a recache token went out.
                        self.stats.cas_hits.fetch_add(1, Relaxed);
                        let n = Entry::new(entry::own(value), a.flags, e.exptime, now, self.next_cas(), birth);
                        let kept = e.bits.load(Relaxed) & entry::bit::TOKEN_SENT;
                        n.bits.store(kept | entry::bit::STALE, Relaxed);
                        n.set_bit(entry::bit::KEY_BINARY, a.key_binary);
                        n
                    }
                    StoreMode::Append | StoreMode::Prepend => {
                        if a.compare_cas != 0 && a.compare_cas != e.cas {
                            return (StoreOutcome::Exists, 0);
                        }
                        if item_too_large(key.len(), e.flags, e.value.len() + value.len(), self.max_item_size) {
                            return (StoreOutcome::NotStored, 0);
                        }
                        let mut joined = BytesMut::with_capacity(e.value.len() + value.len());
                        if mode == StoreMode::Append {
                            joined.put_slice(&e.value);
                            joined.put_slice(value);
                        } else {
                            joined.put_slice(value);
                            joined.put_slice(&e.value);
                        }
                        // Append and prepend keep the item's flags and deadline.
                        let n = Entry::new(joined.freeze(), e.flags, e.exptime, now, self.next_cas(), birth);
                        n.set_bit(entry::bit::KEY_BINARY, a.key_binary);
                        n
                    }
                    StoreMode::Cas { .. } => {
                        self.stats.cas_hits.fetch_add(1, Relaxed);
                        fresh(birth, self.next_cas())
                    }
                    StoreMode::Set | StoreMode::Replace => fresh(birth, self.next_cas()),
                };
                self.account_resize(e.value.len(), new_value.value.len());
                *e = new_value;
                self.stats.total_items.fetch_add(1, Relaxed);
                (StoreOutcome::Stored, e.cas)
            }
            MapEntry::Vacant(v) => {
                let outcome = self.absent(mode);
                if outcome != StoreOutcome::Stored {
                    return (outcome, 0);
                }
                self.account_insert(key.len(), value.len());
                self.stats.total_items.fetch_add(1, Relaxed);
                let birth = self.births.fetch_add(1, Relaxed);
                let key = v.key().clone();
                let cas = self.next_cas();
                v.insert(fresh(birth, cas));
                self.record_insert(key, birth);
                (outcome, cas)
            }
        }
    }

    /// What a storage command does when no live item exists: only `set` and `add` store.
    fn absent(&self, mode: StoreMode) -> StoreOutcome {
        match mode {
            StoreMode::Set | StoreMode::Add => StoreOutcome::Stored,
            StoreMode::Cas { .. } => {
                self.stats.cas_misses.fetch_add(1, Relaxed);
                StoreOutcome::NotFound
            }
            StoreMode::Replace | StoreMode::Append | StoreMode::Prepend => StoreOutcome::NotStored,
        }
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

    /// Items currently held (live or not yet reaped).
    pub fn len(&self) -> usize {
        self.stats.curr_items.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        assert_eq!((s.len(), s.bytes()), (0, 0));
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
        let per_item = Entry::charge(6, 100);
        let s = Store::new(Clock::starting_at(1_800_000_000), 100 * per_item, 1 << 20);
        let v = "v".repeat(100);
        for i in 0..100 {
            assert_eq!(set(&s, &format!("k{i:05}"), &v, 0), StoreOutcome::Stored);
        }
        assert_eq!(s.len(), 100);
        assert!(get(&s, "k00000").is_some(), "read: gets a second chance");
        for i in 100..150 {
            assert_eq!(set(&s, &format!("k{i:05}"), &v, 0), StoreOutcome::Stored);
            assert!(s.bytes() <= s.limit());
        }
        assert_eq!(s.len(), 100);
        assert_eq!(s.stats.evictions.load(Relaxed), 50);
        assert!(get(&s, "k00000").is_some(), "recently read item survived");
        assert_eq!(get(&s, "k00001"), None, "oldest unread item went first");
        assert!(get(&s, "k00149").is_some());
        // An item larger than the whole limit can never be stored.
        assert_eq!(set(&s, "huge", &"x".repeat(101 * per_item), 0), StoreOutcome::NoMemory);
        // Shrinking the limit evicts down to it.
        s.set_limit(10 * per_item);
        assert!(s.bytes() <= 10 * per_item && s.len() == 10, "{} items", s.len());
    }

    #[test]
    fn delete_churn_does_not_grow_the_eviction_queue() {
        let s = store();
        for _ in 0..10_000 {
            set(&s, "k", "v", 0);
            s.delete(b"k");
        }
        assert!(s.order.len() <= 1024 + 2, "{} records", s.order.len());
    }

    #[test]
    fn charges_track_contents() {
        let s = store();
        set(&s, "k", "12345", 0);
        assert_eq!(s.bytes(), Entry::charge(1, 5));
        s.store(StoreMode::Append, b"k", 0, 0, b"678");
        assert_eq!(s.bytes(), Entry::charge(1, 8));
        set(&s, "k", "1", 0);
        s.arith(b"k", true, 10);
        assert_eq!(s.bytes(), Entry::charge(1, 2));
        s.delete(b"k");
        assert_eq!(s.bytes(), 0);
    }
}
