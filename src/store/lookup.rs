//! The one fetch: [`Store::lookup`] with its options ([`Lookup`]), under which memcached
//! runs `get`, `gat`, `touch`, `mg` and `me`, and what it shows of the item it found
//! ([`Found`]). What a use of an item does (mark it fetched, move its access time by
//! [`item::bumped`], hand out the recache token) is decided here for every command that
//! fetches.

use super::Store;
use super::item::{self, Fields, Item, bit, charge_for};
use super::shard::{Room, Shard, read, write};
use crate::clock::RelTime;
use crate::memcached::TtlFlags;

/// How a lookup treats the item it finds. memcached runs `get`, `gat`, `touch`, `mg` and
/// `me` on one fetch machinery; these are its options. [`Lookup::GET`] is the plain read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lookup {
    /// New deadlines in request order: `gat`/`touch` are a `T` at position 0; `mg` has
    /// `T`, and `N` (create the item on a miss with that deadline).
    pub ttl: TtlFlags,
    /// `mg R<ttl>`: win the recache token if the item's TTL is below this deadline, and
    /// the flag's position.
    pub recache: Option<(RelTime, usize)>,
    /// A client's use: marks the item fetched and moves its access time by memcached's
    /// rule (`mg u` and `me` do not).
    pub bump: bool,
    /// The meta protocol's stale-while-revalidate: a stale item's recache token goes to
    /// this lookup if no one has it yet.
    pub revalidate: bool,
    /// The key came in base64 (kept on an item created on a miss).
    pub key_binary: bool,
    /// `mg E` (memcached 1.6.45): the CAS an item created on a miss gets.
    pub cas_in: Option<u64>,
}

impl Lookup {
    /// `get`/`gets`.
    pub const GET: Self = Self {
        ttl: TtlFlags { touch: None, vivify: None },
        recache: None,
        bump: true,
        revalidate: false,
        key_binary: false,
        cas_in: None,
    };
    /// `me`: the item as it is, changing nothing.
    pub const PEEK: Self = Self { bump: false, ..Self::GET };

    /// `gat`/`gats`/`touch`: a new deadline, and a use.
    pub fn touch(deadline: RelTime) -> Self {
        Self { ttl: TtlFlags { touch: Some((deadline, 0)), vivify: None }, ..Self::GET }
    }

    /// Whether the lookup changes more than the access mark (so needs the write lock).
    fn changes_item(&self) -> bool {
        self.ttl.touch.is_some() || self.ttl.vivify.is_some() || self.recache.is_some() || self.revalidate
    }
}

/// The item a lookup found, with its state as it was before the lookup changed it.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub item: &'a Item,
    /// Its deadline before the lookup's own `T`/`N`.
    pub exptime_before: RelTime,
    /// `it->time` before this access (`mg l`).
    pub time_before: RelTime,
    /// Fetched before this access (`mg h`, `me fetch=`).
    pub fetched_before: bool,
    /// A recache token had already gone out (`mg Z`).
    pub token_sent_before: bool,
    /// This lookup won the recache token (`mg W`).
    pub won: bool,
    /// Created on a miss (`mg N`).
    pub created: bool,
}

impl Found<'_> {
    /// Invalidated by `md I` or a stale `ms I` (`mg X`).
    pub fn stale(&self) -> bool {
        self.item.bits() & bit::STALE != 0
    }

    /// Stored under a base64 key, so replies give the key back that way.
    pub fn key_binary(&self) -> bool {
        self.item.bits() & bit::KEY_BINARY != 0
    }
}

/// What a fetch would find under a key: the status memcached's `watch fetchers` line
/// gives (`found`, `not_found`, `flushed`, `expired`) and the item's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Missing,
    Flushed,
    Expired,
    Live { flags: u32, value_len: usize, exptime: RelTime },
}

impl Probe {
    pub fn is_live(&self) -> bool {
        matches!(self, Self::Live { .. })
    }
}

/// An item's state before a lookup changes it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Before {
    exptime: RelTime,
    time: RelTime,
    fetched: bool,
    token_sent: bool,
}

impl Before {
    pub(super) fn of(s: &Shard, i: usize) -> Self {
        let it = s.item(i);
        Self {
            exptime: it.exptime(),
            time: it.time(),
            fetched: s.fetched(i),
            token_sent: it.bits() & bit::TOKEN_SENT != 0,
        }
    }

    pub(super) fn found(self, item: &Item, won: bool) -> Found<'_> {
        Found {
            item,
            exptime_before: self.exptime,
            time_before: self.time,
            fetched_before: self.fetched,
            token_sent_before: self.token_sent,
            won,
            created: false,
        }
    }
}

impl Store {
    /// Finds the live item under `key` and runs `f` on it with the shard's lock held (so a
    /// reply can be written from the item's memory), after applying what `opts` asks:
    /// new deadlines, the recache token, the access mark. `None` on a miss, unless `opts`
    /// creates the item on a miss (`mg N`). A dead item found is reaped and counted as
    /// memcached counts it. A lookup that changes nothing but the access mark (`get`, `me`)
    /// takes only the read lock.
    pub fn lookup<R>(&self, key: &[u8], opts: &Lookup, f: impl FnOnce(Found<'_>) -> R) -> Option<R> {
        if opts.changes_item() {
            if opts.ttl.vivify.is_none() {
                return self.lookup_locked(key, opts, f);
            }
            if self.make_room(charge_for(key.len(), 0)) != Room::Made {
                return None;
            }
            let found = self.lookup_locked(key, opts, f);
            self.settle();
            return found;
        }
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let (result, bump_time) = {
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
            let found = Before::of(&s, i).found(it, false);
            if opts.bump {
                s.mark_read(i, self.epoch());
            }
            (f(found), opts.bump && item::bumped(it.time(), now) != it.time())
        };
        if bump_time {
            // Rare enough (once a minute per item) to take the write lock for.
            let mut s = write(lock);
            if let Some(i) = s.find(hash, key) {
                s.item_mut(i).bump_time(now);
            }
        }
        Some(result)
    }

    /// What a lookup of `key` would find now, changing nothing (a dead item is neither
    /// reaped nor counted): for the `item_get` lines of `watch fetchers`.
    pub fn probe(&self, key: &[u8]) -> Probe {
        let (hash, lock) = self.locate(key);
        let s = read(lock);
        let Some(i) = s.find(hash, key) else { return Probe::Missing };
        let it = s.item(i);
        match self.dead(it, self.clock.now()) {
            Some(super::shard::Dead::Flushed) => Probe::Flushed,
            Some(super::shard::Dead::Expired) => Probe::Expired,
            None => Probe::Live { flags: it.flags(), value_len: it.value().len(), exptime: it.exptime() },
        }
    }

    /// [`Store::lookup`] under the write lock, for lookups that change the item.
    fn lookup_locked<R>(&self, key: &[u8], opts: &Lookup, f: impl FnOnce(Found<'_>) -> R) -> Option<R> {
        let now = self.clock.now();
        let (hash, lock) = self.locate(key);
        let mut s = write(lock);
        if let Some(i) = self.find_live(&mut s, hash, key, now) {
            let before = Before::of(&s, i);
            let stale = s.item(i).bits() & bit::STALE != 0;
            let won = opts.revalidate
                && !before.token_sent
                && (stale
                    || opts.recache.is_some_and(|(r, pos)| {
                        let ttl = opts.ttl.exptime_at(pos, before.exptime, false);
                        ttl != 0 && ttl < r
                    }));
            let exptime = opts.ttl.exptime_at(usize::MAX, before.exptime, false);
            self.note_deadline(exptime);
            let epoch = self.epoch();
            self.set_exptime(&mut s, i, exptime);
            let it = s.item_mut(i);
            if won {
                it.set_bits(it.bits() | bit::TOKEN_SENT);
            }
            if opts.bump {
                it.bump_time(now);
                s.mark_read(i, epoch);
            }
            return Some(f(before.found(s.item(i), won)));
        }
        opts.ttl.vivify?;
        let cas = match opts.cas_in {
            Some(c) if self.cas => c,
            _ => self.next_cas(),
        };
        let bits = bit::TOKEN_SENT | if opts.key_binary { bit::KEY_BINARY } else { 0 };
        let exptime = opts.ttl.exptime_at(usize::MAX, 0, true);
        let i = self.insert(
            &mut s,
            hash,
            Item::new(&self.slab, key, &[], Fields { cas, exptime, time: now, flags: 0, bits }),
        );
        Some(f(Found {
            item: s.item(i),
            exptime_before: 0,
            time_before: now,
            fetched_before: false,
            token_sent_before: false,
            won: true,
            created: true,
        }))
    }
}
