//! One cached item: its value, client flags, CAS unique, deadline and access bookkeeping,
//! and what it is charged against the memory limit.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use bytes::Bytes;

use crate::clock::RelTime;

/// Bytes charged per item on top of its key and value: the map slot (key handle + entry),
/// the key's and value's own allocations and shared headers, and its eviction record,
/// rounded up.
/// Refined by measurement in the memory benchmark.
pub const ENTRY_OVERHEAD: usize = 160;

/// A stored item. The value is an exact-size allocation of its own, never a slice of a
/// connection's read buffer, so the memory limit charges what is really held.
#[derive(Debug)]
pub struct Entry {
    pub(crate) value: Bytes,
    pub(crate) cas: u64,
    pub(crate) flags: u32,
    /// Relative deadline; 0 never expires.
    pub(crate) exptime: RelTime,
    /// When the value was last written (memcached's `it->time`, used by `flush_all`).
    pub(crate) time: RelTime,
    /// Last read or write, for eviction order; updated with relaxed stores under a read lock.
    pub(crate) atime: AtomicU32,
    /// Whether a client has read this item since it was written.
    pub(crate) fetched: AtomicBool,
    /// Read since eviction last looked at it (CLOCK's reference bit).
    pub(crate) referenced: AtomicBool,
    /// Which insertion of this key made the entry (see `evict::Record`).
    pub(crate) birth: u32,
}

impl Entry {
    pub(crate) fn new(value: Bytes, flags: u32, exptime: RelTime, now: RelTime, cas: u64, birth: u32) -> Self {
        Self {
            value,
            cas,
            flags,
            exptime,
            time: now,
            atime: AtomicU32::new(now),
            fetched: AtomicBool::new(false),
            referenced: AtomicBool::new(false),
            birth,
        }
    }

    /// Bytes this item counts against the memory limit.
    pub fn charge(key_len: usize, value_len: usize) -> usize {
        key_len + value_len + ENTRY_OVERHEAD
    }

    /// Marks a read: recency for eviction and the fetched flag, without a write lock.
    #[inline]
    pub(crate) fn touch_read(&self, now: RelTime) {
        if self.atime.load(Ordering::Relaxed) != now {
            self.atime.store(now, Ordering::Relaxed);
        }
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
            self.fetched.store(true, Ordering::Relaxed);
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
