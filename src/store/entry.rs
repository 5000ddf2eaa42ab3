//! One cached item: its value, client flags, CAS unique, deadline and access bookkeeping,
//! and what it is charged against the memory limit.

use std::sync::atomic::{AtomicU8, AtomicU32, Ordering::Relaxed};

use bytes::Bytes;

use crate::clock::RelTime;

/// Bytes charged per item on top of its key and value: the map slot (key handle + entry),
/// the key's and value's own allocations and shared headers, and its eviction record,
/// rounded up.
/// Refined by measurement in the memory benchmark.
pub const ENTRY_OVERHEAD: usize = 160;

/// memcached bumps an item's access time at most this often (`ITEM_UPDATE_INTERVAL`).
const UPDATE_INTERVAL: RelTime = 60;

/// Item state bits, memcached's `it_flags` where they are observable.
pub(crate) mod bit {
    /// Read by a client since written (`ITEM_FETCHED`; `mg h`, `me fetch=`).
    pub const FETCHED: u8 = 1;
    /// Read since eviction last looked (CLOCK's reference bit).
    pub const REFERENCED: u8 = 2;
    /// Invalidated by `md I` or a stale `ms I` (`ITEM_STALE`; `mg` reports `X`).
    pub const STALE: u8 = 4;
    /// A client has been handed the recache token (`ITEM_TOKEN_SENT`; `mg` reports `Z`).
    pub const TOKEN_SENT: u8 = 8;
    /// Stored under a base64 (`b`) key, so meta replies give the key back in base64.
    pub const KEY_BINARY: u8 = 16;
}

/// A stored item. The value is an exact-size allocation of its own, never a slice of a
/// connection's read buffer, so the memory limit charges what is really held.
#[derive(Debug)]
pub struct Entry {
    pub(crate) value: Bytes,
    pub(crate) cas: u64,
    pub(crate) flags: u32,
    /// Relative deadline; 0 never expires.
    pub(crate) exptime: RelTime,
    /// memcached's `it->time`: set when written, moved forward on a read at most once a
    /// minute. `flush_all`, `mg l` and `me la=` read it.
    pub(crate) time: AtomicU32,
    /// [`bit`] flags; reads set theirs with relaxed atomics under the map's read lock.
    pub(crate) bits: AtomicU8,
    /// Which insertion of this key made the entry (see `evict::Record`).
    pub(crate) birth: u32,
}

impl Entry {
    pub(crate) fn new(value: Bytes, flags: u32, exptime: RelTime, now: RelTime, cas: u64, birth: u32) -> Self {
        Self { value, cas, flags, exptime, time: AtomicU32::new(now), bits: AtomicU8::new(0), birth }
    }

    /// Bytes this item counts against the memory limit.
    pub fn charge(key_len: usize, value_len: usize) -> usize {
        key_len + value_len + ENTRY_OVERHEAD
    }

    #[inline]
    pub(crate) fn has(&self, b: u8) -> bool {
        self.bits.load(Relaxed) & b != 0
    }

    pub(crate) fn set_bit(&self, b: u8, on: bool) {
        if on {
            self.bits.fetch_or(b, Relaxed);
        } else {
            self.bits.fetch_and(!b, Relaxed);
        }
    }

    pub(crate) fn time(&self) -> RelTime {
        self.time.load(Relaxed)
    }

    /// Marks a read (memcached's `do_item_bump`): fetched, referenced for eviction, and the
    /// access time if it is over a minute old. No write lock needed; the common case is
    /// one load.
    #[inline]
    pub(crate) fn bump(&self, now: RelTime) {
        const READ: u8 = bit::FETCHED | bit::REFERENCED;
        if self.bits.load(Relaxed) & READ != READ {
            self.bits.fetch_or(READ, Relaxed);
        }
        self.bump_time(now);
    }

    /// Moves the access time forward if it is over a minute old.
    #[inline]
    pub(crate) fn bump_time(&self, now: RelTime) {
        if self.time() < now.saturating_sub(UPDATE_INTERVAL) {
            self.time.store(now, Relaxed);
        }
    }

    pub(crate) fn is_expired(&self, now: RelTime) -> bool {
        self.exptime != 0 && self.exptime <= now
    }
}

/// Copies a value into an exact-size allocation of its own.
pub(crate) fn own(value: &[u8]) -> Bytes {
    Bytes::copy_from_slice(value)
}
