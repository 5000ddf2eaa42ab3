//! The retrieval commands (`get gets gat gats`): each key looked up and its `VALUE`
//! written, a small value copied under the shard's lock, a large one spliced in from the
//! item's own memory. A long multi-get is [`Keys`] work that stops when the output is full
//! and carries on where it stopped.

use super::{Ctx, Flow, Output};
use crate::clock::RelTime;
use crate::protocol::KeyList;
use crate::protocol::encode::{Reply, put_reply, put_shared_value, put_value};
use crate::stats::{PrefixEvent, Stats};
use crate::store::{Lookup, Prefetch};

/// How a retrieval command looks each key up.
#[derive(Debug, Clone, Copy)]
pub struct Retrieval {
    with_cas: bool,
    /// `gat`/`gats`: the new deadline; these count as touches.
    deadline: Option<RelTime>,
}

/// A retrieval command's keys from the `next`th on.
#[derive(Debug)]
pub struct Keys {
    get: Retrieval,
    keys: KeyList,
    next: usize,
}

impl Retrieval {
    pub fn new(ctx: &Ctx, with_cas: bool, touch: Option<i32>) -> Self {
        Self { with_cas, deadline: touch.map(|exptime| ctx.store.clock().deadline(exptime)) }
    }

    /// Prefetches the items of a multi-get's first keys (see [`crate::store::Store::prefetch`]),
    /// so the lookups that follow find them in the CPU cache: a batch's worth, enough to
    /// overlap a typical page's keys, few enough that the first are still cached when read.
    pub fn prefetch(&self, ctx: &Ctx, keys: &KeyList) {
        let mut keys = keys.iter().take(Prefetch::BATCH).peekable();
        let Some(first) = keys.next() else { return };
        if keys.peek().is_none() {
            return; // one key: nothing to overlap
        }
        let mut batch = ctx.store.prefetch();
        batch.add(first);
        keys.for_each(|k| batch.add(k));
        batch.finish();
    }

    /// The command's keys, as work the caller steps.
    pub fn keys(self, keys: KeyList) -> Keys {
        Keys { get: self, keys, next: 0 }
    }

    /// Looks up one key and appends its `VALUE` if it is there.
    fn key(&self, ctx: &Ctx, key: &[u8], out: &mut Output) {
        let store = &ctx.store;
        // A small value is copied into the reply under the shard's lock (no allocation);
        // a large one is shared with the store and written from there.
        let with_cas = self.with_cas;
        let hit = store
            .lookup(key, &self.deadline.map_or(Lookup::GET, Lookup::touch), |f| {
                let it = f.item;
                let cas = with_cas.then(|| it.cas());
                match it.shared_value() {
                    Some(v) => put_shared_value(out, key, it.flags(), v, cas),
                    None => put_value(&mut out.buf, key, it.flags(), it.value(), cas),
                }
            })
            .is_some();
        count(ctx, key, hit, self.deadline.is_some());
    }
}

/// Counts a retrieval of `key`, whatever its protocol: a get, or with `touched` a gat.
#[inline]
pub fn count(ctx: &Ctx, key: &[u8], hit: bool, touched: bool) {
    let stats = ctx.stats.local();
    let (cmds, hits, misses) = if touched {
        (&stats.cmd_touch, &stats.touch_hits, &stats.touch_misses)
    } else {
        (&stats.cmd_get, &stats.get_hits, &stats.get_misses)
    };
    Stats::incr(cmds);
    Stats::incr(if hit { hits } else { misses });
    ctx.stats.prefixes.record(key, PrefixEvent::Get { hit });
    ctx.stats.hot_keys.record(key);
}

impl Keys {
    /// Looks keys up until the output holds `limit` bytes (`None`: more to do) or the last
    /// is done and the reply ended.
    pub fn step(&mut self, ctx: &Ctx, out: &mut Output, limit: usize) -> Option<Flow> {
        for key in self.keys.iter().skip(self.next) {
            self.get.key(ctx, key, out);
            self.next += 1;
            if out.len() >= limit {
                return None;
            }
        }
        put_reply(&mut out.buf, Reply::End);
        Some(Flow::Transmit)
    }
}
