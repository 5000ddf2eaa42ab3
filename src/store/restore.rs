//! Putting back an item a state file kept ([`Store::restore`]): with its own CAS, deadline,
//! last use and state bits, and never by evicting another: a restore that does not fit says
//! so and the loader decides what to skip.

use std::sync::atomic::Ordering::Relaxed;

use super::item::{Fields, Item, access, bit, charge_for};
use super::{Store, write};
use crate::clock::RelTime;
use crate::memcached::item_too_large;

/// An item as a state file keeps it, its times already on this store's clock.
#[derive(Debug, Clone, Copy)]
pub struct Kept<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    pub cas: u64,
    /// Its deadline (0: never); the loader drops items whose deadline has passed.
    pub exptime: RelTime,
    /// Its last use.
    pub time: RelTime,
    /// Read by a client since written (`mg h`, and eviction's order).
    pub fetched: bool,
    /// Invalidated (`md I`, a stale `ms I`).
    pub stale: bool,
    /// A recache token had gone out.
    pub token_sent: bool,
    /// Stored under a base64 key.
    pub key_binary: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    Stored,
    /// Stored over an older copy of the key (a walk that saw it twice).
    Replaced,
    /// Over this store's `-I`.
    TooLarge,
    /// Would pass the memory limit.
    Full,
    /// The key is already here with a CAS at least as new (a walk that saw it twice).
    Older,
}

impl Store {
    /// Puts `k` back. Items restored do not count in `total_items` (counters start afresh
    /// with the process), and the CAS counter moves past `k.cas`.
    pub fn restore(&self, k: &Kept<'_>) -> Restored {
        if item_too_large(k.key.len(), k.flags, k.value.len(), self.max_item_size) {
            return Restored::TooLarge;
        }
        if self.used.load(Relaxed) + charge_for(k.key.len(), k.value.len()) > self.limit() {
            return Restored::Full;
        }
        let bits = if k.stale { bit::STALE } else { 0 }
            | if k.token_sent { bit::TOKEN_SENT } else { 0 }
            | if k.key_binary { bit::KEY_BINARY } else { 0 };
        let f = Fields { cas: k.cas, exptime: k.exptime, time: k.time, flags: k.flags, bits };
        let it = Item::new(&self.slab, k.key, &[k.value], f);
        self.last_cas.fetch_max(k.cas, Relaxed);
        let (hash, lock) = self.locate(k.key);
        let mut s = write(lock);
        let now = self.clock.now();
        let (i, done) = match self.find_live(&mut s, hash, k.key, now) {
            Some(i) if s.item(i).cas() >= k.cas => return Restored::Older,
            Some(i) => {
                self.replace(&mut s, i, it);
                (i, Restored::Replaced)
            }
            None => {
                let i = self.insert(&mut s, hash, it);
                self.stats.local().total_items.fetch_sub(1, Relaxed);
                (i, Restored::Stored)
            }
        };
        if k.fetched {
            s.set_access(i, s.access(i) | access::FETCHED);
        }
        done
    }

    /// The CAS counter moves past `cas` (a state file's highest), so that no CAS given out
    /// from now on equals one a client holds from before a restart.
    pub fn resume_cas(&self, cas: u64) {
        self.last_cas.fetch_max(cas, Relaxed);
    }

    /// When a delayed `flush_all` still to come takes effect: every item last written by
    /// then goes at that time.
    pub fn pending_flush(&self) -> Option<RelTime> {
        let at = self.oldest_live.load(Relaxed);
        (at != 0 && at > self.clock.now()).then_some(at)
    }

    /// The last CAS unique given out.
    pub fn cas_counter(&self) -> u64 {
        self.last_cas.load(Relaxed)
    }

    /// `-I` in bytes.
    pub fn max_item_size(&self) -> usize {
        self.max_item_size
    }
}
