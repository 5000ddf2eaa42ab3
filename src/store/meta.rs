//! The store side of memcached's meta commands (`mg`, `md`, `ma`, `me`): lookups that
//! report item state (CAS, TTL, last access, fetched), vivify-on-miss, recache tokens and
//! stale-while-revalidate, and counters with a CAS check and create-on-miss. Classic
//! `incr`/`decr` are the plain case of [`Store::meta_arith`]. Also the walk over every
//! item that `lru_crawler metadump` reports the same bookkeeping from.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::item::{Fields, Item, UPDATE_INTERVAL, bit, charge_for};
use super::{Room, Shard, Store, read, write};
use crate::clock::RelTime;
use crate::memcached::TtlFlags;
use crate::memcached::number::parse_u64;

/// What `mg` asked of the store.
#[derive(Debug, Clone, Copy, Default)]
pub struct GetArgs {
    pub ttl: TtlFlags,
    /// `R<ttl>`: win the recache token if the item's TTL is below this deadline.
    pub recache: Option<(RelTime, usize)>,
    /// Whether the read counts as an access (`u` turns it off).
    pub bump: bool,
    /// `b`: the key came in base64 (kept on a vivified item).
    pub key_binary: bool,
}

/// What `mg` found, with the item state as it was before this request changed it.
#[derive(Debug, Clone)]
pub struct MetaHit {
    pub value: Bytes,
    pub flags: u32,
    pub cas: u64,
    /// Deadline before the request's own `T`/`N` flags.
    pub exptime_before: RelTime,
    /// `it->time` before this access (`l`).
    pub time_before: RelTime,
    /// Fetched before this access (`h`).
    pub fetched_before: bool,
    pub stale: bool,
    /// A recache token had already gone out (`Z`).
    pub token_sent_before: bool,
    /// This request won the recache token (`W`).
    pub won: bool,
    /// Created by `N` on a miss.
    pub created: bool,
    pub key_binary: bool,
}

/// What `md` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// `I`: marked stale with a new CAS instead of removed.
    Invalidated,
    /// `C` did not match.
    Exists,
    NotFound,
}

/// What `ma` (and `incr`/`decr`) asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArithArgs {
    pub incr: bool,
    pub delta: u64,
    /// Proceed only if the item's CAS is this (0 = no check).
    pub compare_cas: u64,
    /// `N`/`J`: on a miss, create the item with this initial value.
    pub initial: Option<u64>,
    pub ttl: TtlFlags,
}

/// What `ma` did.
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

/// What `me` and `lru_crawler metadump` show of an item.
#[derive(Debug, Clone, Copy)]
pub struct DebugInfo {
    pub exptime: RelTime,
    pub time: RelTime,
    pub cas: u64,
    pub fetched: bool,
    pub flags: u32,
    pub value_len: usize,
    pub key_binary: bool,
}

impl DebugInfo {
    fn of(s: &Shard, i: usize) -> Self {
        let it = s.item(i);
        Self {
            exptime: it.exptime(),
            time: it.time(),
            cas: it.cas(),
            fetched: s.fetched(i),
            flags: it.flags(),
            value_len: it.value().len(),
            key_binary: it.bits() & bit::KEY_BINARY != 0,
        }
    }
}

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
    /// `mg`: the live item, with `T`, `N`, `R` and access marking applied under the shard's
    /// write lock so recache tokens go to exactly one client.
    pub fn meta_get(&self, key: &[u8], a: &GetArgs) -> Option<MetaHit> {
        if a.ttl.vivify.is_none() {
            return self.meta_get_locked(key, a);
        }
        if self.make_room(charge_for(key.len(), 0)) != Room::Made {
            return None;
        }
        let hit = self.meta_get_locked(key, a);
        self.settle();
        hit
    }

    fn meta_get_locked(&self, key: &[u8], a: &GetArgs) -> Option<MetaHit> {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let mut s = write(lock);
        if let Some(i) = self.find_live(&mut s, hash, key, now) {
            let bits = s.item(i).bits();
            let fetched_before = s.fetched(i);
            let it = s.item_mut(i);
            let before = it.exptime();
            let token_sent = bits & bit::TOKEN_SENT != 0;
            let stale = bits & bit::STALE != 0;
            let mut won = a.recache.is_some_and(|(r, pos)| {
                let ttl = a.ttl.exptime_at(pos, before, false);
                !token_sent && ttl != 0 && ttl < r
            });
            won |= stale && !token_sent;
            let exptime = a.ttl.exptime_at(usize::MAX, before, false);
            self.note_deadline(exptime);
            it.set_exptime(exptime);
            if won {
                it.set_bits(it.bits() | bit::TOKEN_SENT);
            }
            let hit = MetaHit {
                value: Bytes::copy_from_slice(it.value()),
                flags: it.flags(),
                cas: it.cas(),
                exptime_before: before,
                time_before: it.time(),
                fetched_before,
                stale,
                token_sent_before: token_sent,
                won,
                created: false,
                key_binary: bits & bit::KEY_BINARY != 0,
            };
            if a.bump {
                if it.time() < now.saturating_sub(UPDATE_INTERVAL) {
                    it.set_time(now);
                }
                s.mark_read(i, self.epoch());
            }
            return Some(hit);
        }
        a.ttl.vivify?;
        let cas = self.next_cas();
        let bits = bit::TOKEN_SENT | if a.key_binary { bit::KEY_BINARY } else { 0 };
        let exptime = a.ttl.exptime_at(usize::MAX, 0, true);
        self.insert(&mut s, hash, Item::new(&self.slab, key, &[], Fields { cas, exptime, time: now, flags: 0, bits }));
        Some(MetaHit {
            value: Bytes::new(),
            flags: 0,
            cas,
            exptime_before: 0,
            time_before: now,
            fetched_before: false,
            stale: false,
            token_sent_before: false,
            won: true,
            created: true,
            key_binary: a.key_binary,
        })
    }

    /// `md`: removes the live item, or with `invalidate` marks it stale (new CAS, optional
    /// new deadline, recache token free again).
    pub fn meta_delete(
        &self,
        key: &[u8],
        compare_cas: Option<u64>,
        invalidate: bool,
        exptime: Option<RelTime>,
    ) -> DeleteOutcome {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let mut s = write(lock);
        let Some(i) = self.find_live(&mut s, hash, key, now) else { return DeleteOutcome::NotFound };
        if compare_cas.is_some_and(|c| c != s.item(i).cas()) {
            return DeleteOutcome::Exists;
        }
        if invalidate {
            let cas = self.next_cas();
            let it = s.item_mut(i);
            if let Some(t) = exptime {
                self.note_deadline(t);
                it.set_exptime(t);
            }
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
    pub fn meta_arith(&self, key: &[u8], a: &ArithArgs) -> ArithOutcome {
        if a.initial.is_some() && self.make_room(charge_for(key.len(), 20)) != Room::Made {
            return ArithOutcome::NoMemory;
        }
        let outcome = self.meta_arith_locked(key, a);
        self.settle();
        outcome
    }

    fn meta_arith_locked(&self, key: &[u8], a: &ArithArgs) -> ArithOutcome {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let mut s = write(lock);
        let Some(i) = self.find_live(&mut s, hash, key, now) else {
            let Some(initial) = a.initial else { return ArithOutcome::NotFound };
            let mut n = itoa::Buffer::new();
            let digits = n.format(initial).as_bytes();
            let cas = self.next_cas();
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
        f.cas = self.next_cas();
        f.exptime = a.ttl.exptime_at(usize::MAX, exptime_before, false);
        let grows = digits.len() > old_len;
        let new = if !grows {
            // Rewritten in place: memcached pads with spaces and keeps the access-time rule.
            if f.time < now.saturating_sub(UPDATE_INTERVAL) {
                f.time = now;
            }
            let pad = vec![b' '; old_len - digits.len()];
            Item::new(&self.slab, key, &[digits, &pad], f)
        } else {
            f.time = now;
            Item::new(&self.slab, key, &[digits], f)
        };
        let cas = new.cas();
        // Same item, new contents: the readers' bits stay with it.
        let side = s.side.get(i).map_or(0, |b| b.load(Relaxed));
        self.replace(&mut s, i, new);
        if let Some(b) = s.side.get(i) {
            b.store(side, Relaxed);
        }
        if grows {
            // memcached writes a longer number into a new item, which counts as one.
            self.stats.total_items.fetch_add(1, Relaxed);
        }
        ArithOutcome::Value { value, cas, exptime_before, created: false }
    }

    /// `me`: the live item's bookkeeping, without marking an access.
    pub fn meta_debug(&self, key: &[u8]) -> Option<DebugInfo> {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let s = read(lock);
        let i = s.find(hash, key)?;
        if self.dead(s.item(i), now).is_some() {
            return None;
        }
        Some(DebugInfo::of(&s, i))
    }

    /// `lru_crawler metadump`: shows `f` the key and bookkeeping of every live item from
    /// `at` on, until `f` says it has had enough for now (returns false) or
    /// [`DUMP_BUDGET`] buckets were looked at. Returns where to carry on, or `None` when
    /// every item has been shown. An item there throughout the walk is shown at least
    /// once: a shard whose table was rebuilt since the walk was last in it (its buckets
    /// moved) is walked again from its start, so its items shown before are shown again.
    /// An item stored or removed meanwhile may or may not be shown, as with memcached.
    pub fn dump(&self, mut at: DumpCursor, mut f: impl FnMut(&[u8], &DebugInfo) -> bool) -> Option<DumpCursor> {
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
                    && !f(it.key(), &DebugInfo::of(&s, i))
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
