//! The classic commands that change items: `set add replace append prepend cas`,
//! `delete`, `incr`/`decr`, `touch` and `flush_all`.

use bytes::BytesMut;

use super::Ctx;
use crate::memcached::StoreMode;
use crate::protocol::encode::{Reply, put_number, put_reply_unless};
use crate::stats::{PrefixEvent, Stats};
use crate::store::{ArithArgs, ArithOutcome, DeleteOpts, DeleteOutcome, Lookup, StoreArgs, StoreOutcome};

/// A storage command with its data block; how it ended.
pub fn store(ctx: &Ctx, args: &StoreArgs<'_>, noreply: bool, out: &mut BytesMut) -> StoreOutcome {
    let outcome = store_counted(ctx, args).0;
    let reply = match outcome {
        StoreOutcome::Stored => Reply::Stored,
        StoreOutcome::NotStored => Reply::NotStored,
        StoreOutcome::Exists => Reply::Exists,
        StoreOutcome::NotFound => Reply::NotFound,
        StoreOutcome::NoMemory => Reply::OutOfMemoryStoring,
    };
    put_reply_unless(out, noreply, reply);
    outcome
}

/// Stores, counting it as memcached counts a storage command, whatever its protocol: how
/// it ended and the item's new CAS.
pub fn store_counted(ctx: &Ctx, args: &StoreArgs<'_>) -> (StoreOutcome, u64) {
    let (key, mode) = (args.key, args.mode);
    let (store, stats) = (&ctx.store, ctx.stats.local());
    Stats::incr(&stats.cmd_set);
    ctx.stats.prefixes.record(key, PrefixEvent::Set);
    let result = store.store(args);
    if result.0 == StoreOutcome::NoMemory {
        Stats::incr(&stats.store_no_memory);
        // As for a too-large item, memcached drops the stale value of a failed set.
        if mode == StoreMode::Set {
            store.delete(key, &DeleteOpts::default());
        }
    }
    result
}

/// A storage command whose data is over the item size limit. A client that sees the error
/// assumes the old value is gone: memcached makes it so for `set`, and so do we. The reply
/// follows once the decoder has swallowed the data. `counted`: memcached counts the text
/// protocol's refusals in `store_too_large`, not the binary protocol's.
pub fn too_large(ctx: &Ctx, key: &[u8], mode: StoreMode, counted: bool) {
    if counted {
        Stats::incr(&ctx.stats.local().store_too_large);
    }
    ctx.stats.prefixes.record(key, PrefixEvent::Set);
    if mode == StoreMode::Set {
        ctx.store.delete(key, &DeleteOpts::default());
    }
}

/// `delete`: whether it removed an item.
pub fn delete(ctx: &Ctx, key: &[u8], noreply: bool, out: &mut BytesMut) -> bool {
    let hit = delete_counted(ctx, key, None) == DeleteOutcome::Deleted;
    put_reply_unless(out, noreply, if hit { Reply::Deleted } else { Reply::NotFound });
    hit
}

/// Deletes (if the item's CAS is `compare_cas`, when given), counting a hit or a miss.
pub fn delete_counted(ctx: &Ctx, key: &[u8], compare_cas: Option<u64>) -> DeleteOutcome {
    let stats = ctx.stats.local();
    ctx.stats.prefixes.record(key, PrefixEvent::Delete);
    let outcome = ctx.store.delete(key, &DeleteOpts { compare_cas, ..DeleteOpts::default() });
    match outcome {
        DeleteOutcome::Deleted => Stats::incr(&stats.delete_hits),
        DeleteOutcome::NotFound => Stats::incr(&stats.delete_misses),
        DeleteOutcome::Exists | DeleteOutcome::Invalidated => {}
    }
    outcome
}

pub fn arith(ctx: &Ctx, key: &[u8], incr: bool, delta: u64, noreply: bool, out: &mut BytesMut) {
    let stats = ctx.stats.local();
    let (hits, misses) =
        if incr { (&stats.incr_hits, &stats.incr_misses) } else { (&stats.decr_hits, &stats.decr_misses) };
    match ctx.store.arith(key, &ArithArgs { incr, delta, ..ArithArgs::default() }) {
        ArithOutcome::Value { value, .. } => {
            Stats::incr(hits);
            if !noreply {
                put_number(out, value);
            }
        }
        ArithOutcome::NotFound => {
            Stats::incr(misses);
            put_reply_unless(out, noreply, Reply::NotFound);
        }
        ArithOutcome::NonNumeric => put_reply_unless(out, noreply, Reply::NonNumeric),
        // Not produced without a CAS check or create-on-miss.
        ArithOutcome::Exists | ArithOutcome::NoMemory => put_reply_unless(out, noreply, Reply::OutOfMemory),
    }
}

pub fn touch(ctx: &Ctx, key: &[u8], exptime: i32, noreply: bool, out: &mut BytesMut) {
    let (store, stats) = (&ctx.store, ctx.stats.local());
    Stats::incr(&stats.cmd_touch);
    let hit = store.lookup(key, &Lookup::touch(store.clock().deadline(exptime)), |_| ()).is_some();
    Stats::incr(if hit { &stats.touch_hits } else { &stats.touch_misses });
    put_reply_unless(out, noreply, if hit { Reply::Touched } else { Reply::NotFound });
}

/// `flush_all`: counted even when `-F` refuses it, as memcached counts it.
pub fn flush_all(ctx: &Ctx, delay: Option<i32>, noreply: bool, out: &mut BytesMut) {
    Stats::incr(&ctx.stats.local().cmd_flush);
    let reply = match delay {
        _ if !ctx.config.flush_enabled => Reply::FlushNotAllowed,
        None => Reply::BadExptime,
        Some(delay) => {
            ctx.store.flush_all(delay);
            Reply::Ok
        }
    };
    put_reply_unless(out, noreply, reply);
}
