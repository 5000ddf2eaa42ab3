//! `watch` on the request path: turning a connection into a watcher, and the `item_get`
//! and `item_store` events memcached 1.6.18 logs for each command. memcached logs an
//! `item_get` wherever its `do_item_get` runs: for each key of `get gets gat gats`, and
//! for the one key of `touch`, `delete`, `incr`/`decr`, every storage command (the old
//! item, looked at before the new one goes in) and `mg ms md ma me`; a storage command
//! then logs its `item_store`. Everything here runs only when [`crate::watch::Log::wants`]
//! says some watcher asked for these events.

use bytes::BytesMut;

use super::{Caller, Ctx, Flow};
use crate::clock::RelTime;
use crate::memcached::{StoreMode, item_size, slab_class};
use crate::protocol::Request;
use crate::protocol::encode::{Reply, put_reply_unless};
use crate::store::{Probe, StoreOutcome};
use crate::watch::{Event, GetStatus, StoreStatus, kind};

/// `watch`: the connection becomes a watcher (its first line, `OK`, is the watcher's
/// own), or is refused as memcached refuses it: `-W`, replies to earlier commands not
/// yet sent, a word memcached does not know, or 20 watchers already.
pub fn start(ctx: &Ctx, kinds: Option<u16>, noreply: bool, caller: &Caller, out: &mut BytesMut) -> Flow {
    let refusal = if !ctx.config.watch_enabled {
        Reply::WatchNotAllowed
    } else if caller.replies_waiting {
        Reply::WatchPipelined
    } else {
        match kinds {
            None => Reply::Error,
            Some(kinds) => match ctx.watch.add(kinds, b"OK\r\n") {
                Some(w) => return Flow::Watch(w),
                None => Reply::WatcherTooMany,
            },
        }
    };
    put_reply_unless(out, noreply, refusal);
    Flow::Continue
}

/// Whether the fetch and store events of requests are wanted: the request path's one
/// relaxed load.
#[inline]
pub fn wanted(ctx: &Ctx) -> bool {
    ctx.watch.wants(kind::FETCHERS | kind::MUTATIONS)
}

/// Logs the `item_get` lines memcached logs for `req` before it runs.
pub fn before(ctx: &Ctx, req: &Request, cfd: i32) {
    if !ctx.watch.wants(kind::FETCHERS) {
        return;
    }
    match req {
        Request::Get { keys, .. } => keys.iter().for_each(|k| fetched(ctx, k, cfd)),
        // A store's look at the old item is logged with its end (see `ended`).
        Request::Delete { key, .. }
        | Request::Arith { key, .. }
        | Request::Touch { key, .. }
        | Request::MetaDebug { key, .. } => fetched(ctx, key, cfd),
        Request::MetaGet(m) | Request::MetaDelete(m) | Request::MetaArith(m) => fetched(ctx, &m.key, cfd),
        _ => {}
    }
}

/// An `item_get` line for what a fetch of `key` finds now.
pub fn fetched(ctx: &Ctx, key: &[u8], cfd: i32) {
    look(ctx, key).log(ctx, key, cfd);
}

/// What a fetch found, to log as an `item_get` line now or after the command.
#[derive(Debug, Clone, Copy)]
pub struct Looked {
    status: GetStatus,
    clsid: u32,
    size: usize,
}

impl Looked {
    fn log(self, ctx: &Ctx, key: &[u8], cfd: i32) {
        if ctx.watch.wants(kind::FETCHERS) {
            let Self { status, clsid, size } = self;
            ctx.watch.log(&Event::ItemGet { key, status, clsid, cfd, size });
        }
    }
}

/// What a fetch of `key` finds now.
pub fn look(ctx: &Ctx, key: &[u8]) -> Looked {
    let (status, clsid, size) = match ctx.store.probe(key) {
        Probe::Missing => (GetStatus::NotFound, 0, 0),
        Probe::Flushed => (GetStatus::Flushed, 0, 0),
        Probe::Expired => (GetStatus::Expired, 0, 0),
        Probe::Live { flags, value_len, .. } => (GetStatus::Found, class(ctx, key, flags, value_len), value_len),
    };
    Looked { status, clsid, size }
}

/// The slab class memcached would give the item.
fn class(ctx: &Ctx, key: &[u8], flags: u32, value_len: usize) -> u32 {
    slab_class(item_size(key.len(), flags, value_len), ctx.config.max_item_size)
}

/// What a storage command was asked to store.
pub struct Stored<'a> {
    pub key: &'a [u8],
    pub mode: StoreMode,
    pub flags: u32,
    pub exptime: RelTime,
    pub value_len: usize,
}

/// The lines of a storage command that ended in `outcome`, `old` being what it found
/// under the key before: memcached's look at the old item (`item_get`), then the
/// `item_store` with the item as stored (an append's whole value), or as sent when it
/// was not. A store that found no memory for its item never looked: memcached logs the
/// refusal, then (when it drops the old value: `set`, and `ms` whatever its mode,
/// `drops_old`) its look at the old item.
pub fn ended(ctx: &Ctx, s: &Stored<'_>, outcome: StoreOutcome, old: Looked, drops_old: bool, cfd: i32) {
    if outcome == StoreOutcome::NoMemory {
        refused(ctx, s.key, s.mode, StoreStatus::NoMemory, cfd);
        if drops_old {
            old.log(ctx, s.key, cfd);
        }
        return;
    }
    old.log(ctx, s.key, cfd);
    stored(ctx, s, outcome, cfd);
}

/// The `item_store` line of a storage command that ended in `outcome` (not `NoMemory`).
fn stored(ctx: &Ctx, s: &Stored<'_>, outcome: StoreOutcome, cfd: i32) {
    if !ctx.watch.wants(kind::MUTATIONS) {
        return;
    }
    let status = match outcome {
        StoreOutcome::Stored => StoreStatus::Stored,
        StoreOutcome::NotStored => StoreStatus::NotStored,
        StoreOutcome::Exists => StoreStatus::Exists,
        StoreOutcome::NotFound => StoreStatus::NotFound,
        StoreOutcome::NoMemory => StoreStatus::NoMemory,
    };
    let (mut flags, mut exptime, mut value_len) = (s.flags, s.exptime, s.value_len);
    if outcome == StoreOutcome::Stored
        && let Probe::Live { flags: f, value_len: v, exptime: e } = ctx.store.probe(s.key)
    {
        (flags, exptime, value_len) = (f, e, v);
    }
    let now = ctx.store.clock().now();
    ctx.watch.log(&Event::ItemStore {
        key: s.key,
        status,
        cmd: s.mode.name(),
        // memcached prints `exptime - current_time` unsigned: a past deadline wraps.
        ttl: if exptime == 0 { 0 } else { exptime.wrapping_sub(now) },
        clsid: class(ctx, s.key, flags, value_len),
        cfd,
        size: value_len,
    });
}

/// What `watch deletions` will say of `key` if a delete removes it now: its slab class
/// and value size (`None`: no deletions watcher, or nothing there).
pub fn deleting(ctx: &Ctx, key: &[u8]) -> Option<(u32, usize)> {
    if !ctx.watch.wants(kind::DELETIONS) {
        return None;
    }
    match ctx.store.probe(key) {
        Probe::Live { flags, value_len, .. } => Some((class(ctx, key, flags, value_len), value_len)),
        _ => None,
    }
}

/// The `type=deleted` line of a delete that removed (or `md x` emptied) an item.
pub fn deleted(ctx: &Ctx, key: &[u8], cmd: &str, (clsid, size): (u32, usize)) {
    ctx.watch.log(&Event::Deleted { key, cmd, clsid, size });
}

/// The lines of `ma N` creating its item: memcached stores it as an `add`, which looks
/// the key up again first.
pub fn vivified(ctx: &Ctx, key: &[u8], cfd: i32) {
    let Probe::Live { flags, value_len, exptime } = ctx.store.probe(key) else { return };
    if ctx.watch.wants(kind::FETCHERS) {
        ctx.watch.log(&Event::ItemGet { key, status: GetStatus::NotFound, clsid: 0, cfd, size: 0 });
    }
    let s = Stored { key, mode: StoreMode::Add, flags, exptime, value_len };
    stored(ctx, &s, StoreOutcome::Stored, cfd);
}

/// The `item_store` line of a store refused before it began (too large, or no memory for
/// the item). memcached 1.6.18 logs these with its arguments one place off: the class is
/// the connection's descriptor and the descriptor 0, and so does Larder.
pub fn refused(ctx: &Ctx, key: &[u8], mode: StoreMode, status: StoreStatus, cfd: i32) {
    if ctx.watch.wants(kind::MUTATIONS) {
        let clsid = u32::try_from(cfd).unwrap_or(0);
        ctx.watch.log(&Event::ItemStore { key, status, cmd: mode.name(), ttl: 0, clsid, cfd: 0, size: 0 });
    }
}
