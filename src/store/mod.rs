//! The item store: a sharded concurrent map from key to [`Entry`] with memcached's storage
//! semantics (one method per verb), lazy expiry, `flush_all` and CAS uniques from one
//! counter. Knows nothing of the wire protocol beyond [`StoreMode`]; `exec` drives it.

mod entry;
mod evict;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};

use evict::{ClockQueue, Record};

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use dashmap::mapref::entry::Entry as MapEntry;

pub use entry::{ENTRY_OVERHEAD, Entry};

use crate::clock::{Clock, RelTime};
use crate::protocol::StoreMode;
use crate::protocol::decode::item_too_large;
use crate::protocol::number::parse_u64;

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

/// The result of `incr`/`decr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOutcome {
    Value(u64),
    NotFound,
    NonNumeric,
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
            if !dead && e.referenced.swap(false, Relaxed) {
                drop(e);
                self.order.requeue(rec);
                continue;
            }
            drop(e);
            if let Some((k, e)) = self.map.remove_if(&rec.key[..], |_, e| e.birth == rec.birth) {
                if self.dead(&e, now).is_none() {
                    self.stats.evictions.fetch_add(1, Relaxed);
                    if !e.fetched.load(Relaxed) {
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
            if e.time <= oldest_live || (oldest_cas != 0 && e.cas < oldest_cas) {
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
            if !e.fetched.load(Relaxed) {
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
        e.touch_read(now);
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
        e.touch_read(now);
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
        e.atime.store(now, Relaxed);
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
        if self.make_room(Entry::charge(key.len(), value.len())) != Room::Made {
            return StoreOutcome::NoMemory;
        }
        let now = self.clock.now();
        match self.map.entry(Bytes::copy_from_slice(key)) {
            MapEntry::Occupied(mut o) => {
                if let Some(why) = self.dead(o.get(), now) {
                    self.count_dead(why);
                    // memcached unlinks the dead item and carries on as if it were absent.
                    if matches!(mode, StoreMode::Set | StoreMode::Add) {
                        let (old_len, birth) = (o.get().value.len(), o.get().birth);
                        self.stats.reclaimed.fetch_add(1, Relaxed);
                        *o.get_mut() = Entry::new(entry::own(value), flags, exptime, now, self.next_cas(), birth);
                        self.account_resize(old_len, value.len());
                        self.stats.total_items.fetch_add(1, Relaxed);
                        return StoreOutcome::Stored;
                    }
                    let (k, e) = o.remove_entry();
                    self.account_remove(k.len(), &e, now);
                    return self.absent(mode);
                }
                let e = o.get_mut();
                let birth = e.birth;
                let new_value = match mode {
                    StoreMode::Add => {
                        e.atime.store(now, Relaxed);
                        return StoreOutcome::NotStored;
                    }
                    StoreMode::Cas { unique } if unique != e.cas => {
                        self.stats.cas_badval.fetch_add(1, Relaxed);
                        return StoreOutcome::Exists;
                    }
                    StoreMode::Append | StoreMode::Prepend => {
                        if item_too_large(key.len(), e.flags, e.value.len() + value.len(), self.max_item_size) {
                            return StoreOutcome::NotStored;
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
                        Entry::new(joined.freeze(), e.flags, e.exptime, now, self.next_cas(), birth)
                    }
                    StoreMode::Cas { .. } => {
                        self.stats.cas_hits.fetch_add(1, Relaxed);
                        Entry::new(entry::own(value), flags, exptime, now, self.next_cas(), birth)
                    }
                    StoreMode::Set | StoreMode::Replace => {
                        Entry::new(entry::own(value), flags, exptime, now, self.next_cas(), birth)
                    }
                };
                self.account_resize(e.value.len(), new_value.value.len());
                *e = new_value;
                self.stats.total_items.fetch_add(1, Relaxed);
                StoreOutcome::Stored
            }
            MapEntry::Vacant(v) => {
                let outcome = self.absent(mode);
                if outcome == StoreOutcome::Stored {
                    self.account_insert(key.len(), value.len());
                    self.stats.total_items.fetch_add(1, Relaxed);
                    let birth = self.births.fetch_add(1, Relaxed);
                    let key = v.key().clone();
                    v.insert(Entry::new(entry::own(value), flags, exptime, now, self.next_cas(), birth));
                    self.record_insert(key, birth);
                }
                outcome
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

    /// `incr`/`decr` with memcached's rules: the value must read as an unsigned 64-bit
    /// decimal (`strtoull`, leading space allowed), incr wraps, decr stops at 0, and a
    /// result with fewer digits is written in place padded with spaces, as memcached does.
    pub fn arith(&self, key: &[u8], incr: bool, delta: u64) -> ArithOutcome {
        let now = self.clock.now();
        let Some(mut e) = self.map.get_mut(key) else { return ArithOutcome::NotFound };
        if let Some(why) = self.dead(&e, now) {
            drop(e);
            self.count_dead(why);
            self.reap(key, now);
            return ArithOutcome::NotFound;
        }
        // strtoull over the data, which memcached keeps followed by "\r\n": digits, then
        // the end or whitespace.
        let Some(current) = parse_u64(&e.value) else { return ArithOutcome::NonNumeric };
        let new = if incr { current.wrapping_add(delta) } else { current.saturating_sub(delta) };
        let mut n = itoa::Buffer::new();
        let digits = n.format(new).as_bytes();
        let old_len = e.value.len();
        let mut buf = BytesMut::with_capacity(old_len.max(digits.len()));
        buf.put_slice(digits);
        if digits.len() < old_len {
            buf.put_bytes(b' ', old_len - digits.len());
        }
        e.value = buf.freeze();
        e.cas = self.next_cas();
        e.time = now;
        e.atime.store(now, Relaxed);
        self.account_resize(old_len, e.value.len());
        ArithOutcome::Value(new)
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
        assert_eq!(s.arith(b"n", true, 2), ArithOutcome::Value(1));
        assert_eq!(get(&s, "n").unwrap(), b"1                   ", "shorter numbers are space padded");
        set(&s, "n", "10", 0);
        assert_eq!(s.arith(b"n", false, 1), ArithOutcome::Value(9));
        assert_eq!(get(&s, "n").unwrap(), b"9 ");
        assert_eq!(s.arith(b"n", false, 100), ArithOutcome::Value(0));
        set(&s, "n", "99", 0);
        assert_eq!(s.arith(b"n", true, 1), ArithOutcome::Value(100));
        assert_eq!(get(&s, "n").unwrap(), b"100");
        set(&s, "n", " 12", 0);
        assert_eq!(s.arith(b"n", true, 1), ArithOutcome::Value(13));
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
