//! The meta commands (`mg ms md ma me`): store calls, and replies with return flags
//! echoed in request order, `q` silencing only the uninteresting codes, as memcached
//! 1.6.45 answers them (with its additions since 1.6.18: `E` naming the new CAS, `mg C`
//! withholding an unchanged value, `ms s` and `ms MA N`, `md x`).

use bytes::{Bytes, BytesMut};

use super::Ctx;
use crate::memcached::{StoreMode, item_size, slab_class};
use crate::protocol::Meta;
use crate::protocol::encode::{
    DumpLine, MetaCode, Reply, end_meta, put_debug_line, put_meta_code, put_meta_echo, put_meta_flag, put_meta_key,
    put_meta_mark, put_meta_ttl, put_reply,
};
use crate::stats::Stats;
use crate::store::{ArithArgs, ArithOutcome, DeleteOpts, DeleteOutcome, Lookup, Probe, StoreArgs, StoreOutcome};

/// Echoes the flags every reply carries: `O` (opaque, as sent) and `k`.
fn put_opaque_and_key(out: &mut BytesMut, m: &Meta, flag: &[u8], key_binary: bool) -> bool {
    match flag[0] {
        b'O' => put_meta_echo(out, flag),
        b'k' => put_meta_key(out, &m.key, key_binary),
        _ => return false,
    }
    true
}

/// `mg`.
pub fn get(ctx: &Ctx, m: &Meta, out: &mut BytesMut) {
    let (store, stats) = (&ctx.store, ctx.stats.local());
    let opts = Lookup {
        ttl: m.ttl,
        recache: m.recache,
        bump: !m.no_update,
        revalidate: true,
        key_binary: m.key_binary,
        cas_in: m.cas_in,
    };
    let now = store.clock().now();
    let start = out.len();
    // The reply is written under the shard's lock, straight from the item.
    let hit = store.lookup(&m.key, &opts, |f| {
        let it = f.item;
        // `C` with `v` (1.6.45): an item whose CAS matches goes without its value.
        let value = m.value && m.cas != Some(it.cas());
        put_meta_code(out, if value { MetaCode::Value(it.value().len()) } else { MetaCode::Done });
        for (pos, flag) in m.flags() {
            if put_opaque_and_key(out, m, flag, f.key_binary()) {
                continue;
            }
            match flag[0] {
                b's' => put_meta_flag(out, b's', it.value().len()),
                b't' => put_meta_ttl(out, m.ttl.exptime_at(pos, f.exptime_before, f.created), now),
                b'c' => put_meta_flag(out, b'c', it.cas()),
                b'f' => put_meta_flag(out, b'f', it.flags()),
                b'l' => put_meta_flag(out, b'l', now.wrapping_sub(f.time_before)),
                b'h' => put_meta_flag(out, b'h', u8::from(f.fetched_before)),
                _ => {}
            }
        }
        if f.token_sent_before {
            put_meta_mark(out, b'Z');
        }
        if f.stale() {
            put_meta_mark(out, b'X');
        }
        if f.won {
            put_meta_mark(out, b'W');
        }
        end_meta(out, start, false, value.then_some(it.value()));
    });
    ctx.stats.hot_keys.record(&m.key);
    // memcached counts a hit with `T` as a touch, and every miss as a get miss.
    let touched = m.ttl.touch.is_some() && hit.is_some();
    let (cmds, hits, misses) = if touched {
        (&stats.cmd_touch, &stats.touch_hits, &stats.touch_misses)
    } else {
        (&stats.cmd_get, &stats.get_hits, &stats.get_misses)
    };
    Stats::incr(cmds);
    if hit.is_some() {
        Stats::incr(hits);
        return;
    }
    Stats::incr(misses);
    put_meta_code(out, MetaCode::Miss);
    for (_, flag) in m.flags() {
        put_opaque_and_key(out, m, flag, m.key_binary);
    }
    end_meta(out, start, m.noreply, None);
}

/// `ms`, once its data block has arrived: how it ended, and the mode it stored in (a
/// CAS makes `set` and `replace` a `cas`).
pub fn set(ctx: &Ctx, m: &Meta, value: &Bytes, out: &mut BytesMut) -> (StoreOutcome, StoreMode) {
    Stats::incr(&ctx.stats.local().cmd_set);
    let mut mode = m.store_mode;
    let compare = m.cas.unwrap_or(0);
    let appends = matches!(mode, StoreMode::Append | StoreMode::Prepend);
    // `N` with append or prepend (1.6.45): a miss stores the data as a new item, with
    // `N`'s deadline rather than `T`'s.
    let vivify = appends && m.ttl.vivify.is_some();
    let deadline = if vivify { m.ttl.vivify } else { m.ttl.touch };
    // A CAS turns set and replace into cas, as in memcached.
    if m.cas.is_some() && matches!(mode, StoreMode::Set | StoreMode::Replace) {
        mode = StoreMode::Cas { unique: compare };
    }
    let args = StoreArgs {
        mode,
        key: &m.key,
        flags: m.client_flags,
        exptime: deadline.map_or(0, |(d, _)| d),
        value,
        stale_ok: m.invalidate && matches!(mode, StoreMode::Cas { .. }),
        key_binary: m.key_binary,
        compare_cas: if appends { compare } else { 0 },
        cas_in: m.cas_in,
        vivify,
    };
    let (outcome, cas) = ctx.store.store(&args);
    let code = match outcome {
        StoreOutcome::Stored => MetaCode::Done,
        StoreOutcome::NotStored => MetaCode::NotStored,
        StoreOutcome::Exists => MetaCode::Exists,
        StoreOutcome::NotFound => MetaCode::NotFound,
        StoreOutcome::NoMemory => {
            Stats::incr(&ctx.stats.local().store_no_memory);
            ctx.store.delete(&m.key, &DeleteOpts::default());
            put_reply(out, Reply::OutOfMemoryStoring);
            return (outcome, mode);
        }
    };
    let start = out.len();
    let line = &mut *out;
    put_meta_code(line, code);
    for (_, f) in m.flags() {
        if put_opaque_and_key(line, m, f, m.key_binary) {
            continue;
        }
        match f[0] {
            b'c' => put_meta_flag(line, b'c', cas),
            // `s` (1.6.45): the item's size as stored (an append's whole value), or
            // the data's when nothing was stored.
            b's' => {
                let stored_len = match ctx.store.probe(&m.key) {
                    Probe::Live { value_len, .. } if outcome == StoreOutcome::Stored && appends => value_len,
                    _ => value.len(),
                };
                put_meta_flag(line, b's', stored_len);
            }
            _ => {}
        }
    }
    end_meta(line, start, m.noreply && outcome == StoreOutcome::Stored, None);
    (outcome, mode)
}

/// `md`: how it ended.
pub fn delete(ctx: &Ctx, m: &Meta, out: &mut BytesMut) -> DeleteOutcome {
    let stats = ctx.stats.local();
    let exptime = m.ttl.touch.map(|(d, _)| d);
    let opts = DeleteOpts {
        compare_cas: m.cas,
        invalidate: m.invalidate,
        exptime,
        cas_in: m.cas_in,
        // `x` (1.6.45): an empty value with `F`'s flags and `T`'s deadline (or none).
        remove_value: m.remove_value.then(|| (m.client_flags, exptime.unwrap_or(0))),
    };
    let outcome = ctx.store.delete(&m.key, &opts);
    let code = match outcome {
        DeleteOutcome::Deleted => {
            Stats::incr(&stats.delete_hits);
            MetaCode::Done
        }
        DeleteOutcome::Invalidated => MetaCode::Done,
        DeleteOutcome::Exists => {
            Stats::incr(&stats.delete_misses);
            MetaCode::Exists
        }
        DeleteOutcome::NotFound => {
            Stats::incr(&stats.delete_misses);
            MetaCode::NotFound
        }
    };
    let start = out.len();
    let line = &mut *out;
    put_meta_code(line, code);
    for (_, f) in m.flags() {
        put_opaque_and_key(line, m, f, m.key_binary);
    }
    let quiet = m.noreply && matches!(outcome, DeleteOutcome::Deleted | DeleteOutcome::Invalidated);
    end_meta(line, start, quiet, None);
    outcome
}

/// `ma`.
pub fn arith(ctx: &Ctx, m: &Meta, out: &mut BytesMut) {
    let stats = ctx.stats.local();
    let incr = !m.decr;
    let args = ArithArgs {
        incr,
        delta: m.delta,
        compare_cas: m.cas.unwrap_or(0),
        initial: m.ttl.vivify.map(|_| m.initial),
        ttl: m.ttl,
        cas_in: m.cas_in,
    };
    let (hits, misses) =
        if incr { (&stats.incr_hits, &stats.incr_misses) } else { (&stats.decr_hits, &stats.decr_misses) };
    let start = out.len();
    let line = &mut *out;
    let outcome = ctx.store.arith(&m.key, &args);
    let ArithOutcome::Value { value, cas, exptime_before, created } = outcome else {
        let code = match outcome {
            ArithOutcome::NotFound => {
                Stats::incr(misses);
                MetaCode::NotFound
            }
            ArithOutcome::Exists => MetaCode::Exists,
            ArithOutcome::NonNumeric => return put_reply(line, Reply::NonNumeric),
            _ => return put_reply(line, Reply::OutOfMemoryNewItem),
        };
        put_meta_code(line, code);
        for (_, f) in m.flags() {
            put_opaque_and_key(line, m, f, m.key_binary);
        }
        return end_meta(line, start, false, None);
    };
    if !created {
        Stats::incr(hits);
    }
    let mut n = itoa::Buffer::new();
    let digits = n.format(value).as_bytes();
    put_meta_code(line, if m.value { MetaCode::Value(digits.len()) } else { MetaCode::Done });
    let now = ctx.store.clock().now();
    for (pos, f) in m.flags() {
        if put_opaque_and_key(line, m, f, m.key_binary) {
            continue;
        }
        match f[0] {
            b'c' => put_meta_flag(line, b'c', cas),
            b't' => put_meta_ttl(line, m.ttl.exptime_at(pos, exptime_before, created), now),
            _ => {}
        }
    }
    // memcached 1.6.45 silences a successful ma under q, one that created the item too.
    end_meta(line, start, m.noreply, m.value.then_some(digits));
}

/// `me`: memcached's debug line, sizes and slab class as memcached would count them.
pub fn debug(ctx: &Ctx, key: &[u8], out: &mut BytesMut) {
    Stats::incr(&ctx.stats.local().cmd_meta);
    let now = ctx.store.clock().now();
    let found = ctx.store.lookup(key, &Lookup::PEEK, |f| {
        let it = f.item;
        let size = item_size(key.len(), it.flags(), it.value().len());
        let exptime = it.exptime();
        let line = DumpLine {
            // Seconds left (1.6.18 printed them with the sign inverted).
            exp: if exptime == 0 { -1 } else { i64::from(exptime.wrapping_sub(now) as i32) },
            la: i64::from(now.wrapping_sub(it.time())),
            cas: it.cas(),
            fetched: f.fetched_before,
            class: slab_class(size, ctx.config.max_item_size),
            size,
        };
        // The key as stored: base64 only for an item stored under a base64 key (an
        // `md x` tombstone is not), whether or not this request sent it so.
        put_debug_line(out, key, f.key_binary(), &line);
    });
    if found.is_none() {
        put_reply(out, Reply::MetaMiss);
    }
}
