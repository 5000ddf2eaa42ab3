//! Running meta commands: store calls and replies with return flags echoed in request
//! order, `q` silencing only the uninteresting codes, as memcached 1.6 answers them. Also
//! `lru_crawler metadump`'s lines, the bookkeeping `me` shows for every item.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Ctx, NON_NUMERIC};
use crate::protocol::decode::{MAX_SLAB_CHUNK, memcached_item_size};
use crate::protocol::meta::base64_encode;
use crate::protocol::{Meta, MetaCmd, StoreMode};
use crate::stats::Stats;
use crate::store::{ArithArgs, ArithOutcome, DebugInfo, DeleteOutcome, DumpCursor, GetArgs, StoreArgs, StoreOutcome};

/// `mg`, `md`, `ma`.
pub fn execute(ctx: &Ctx, m: &Meta, out: &mut BytesMut) {
    match m.cmd {
        MetaCmd::Get => get(ctx, m, out),
        MetaCmd::Delete => delete(ctx, m, out),
        MetaCmd::Arith => arith(ctx, m, out),
        MetaCmd::Set => unreachable!("ms arrives as Request::MetaSet"),
    }
}

/// Appends ` <flag><n>`.
fn put_flag(out: &mut BytesMut, flag: u8, n: impl itoa::Integer) {
    out.put_u8(b' ');
    out.put_u8(flag);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends the key as `k` returns it: ` k<key>`, or ` k<base64> b` for a binary key.
fn put_key(out: &mut BytesMut, key: &[u8], binary: bool) {
    out.put_slice(b" k");
    if binary {
        let mut enc = Vec::with_capacity(key.len() * 4 / 3 + 4);
        base64_encode(key, &mut enc);
        out.put_slice(&enc);
        out.put_slice(b" b");
    } else {
        out.put_slice(key);
    }
}

/// Echoes the flags every reply carries: `O` (opaque, as sent) and `k`.
fn put_opaque_and_key(out: &mut BytesMut, m: &Meta, flag: &[u8], key_binary: bool) -> bool {
    match flag[0] {
        b'O' => {
            out.put_u8(b' ');
            out.put_slice(flag);
            true
        }
        b'k' => {
            put_key(out, &m.key, key_binary);
            true
        }
        _ => false,
    }
}

/// Ends the status line written from `start` (and the value after it), or takes the
/// line back out when `q` silences it.
fn finish(out: &mut BytesMut, start: usize, skip: bool, value: Option<&[u8]>) {
    if skip {
        out.truncate(start);
        return;
    }
    out.put_slice(b"\r\n");
    if let Some(v) = value {
        out.put_slice(v);
        out.put_slice(b"\r\n");
    }
}

/// A TTL as `t` reports it: seconds left, or -1 for none.
fn put_ttl(out: &mut BytesMut, exptime: u32, now: u32) {
    if exptime == 0 {
        out.put_slice(b" t-1");
    } else {
        put_flag(out, b't', exptime.wrapping_sub(now));
    }
}

fn get(ctx: &Ctx, m: &Meta, out: &mut BytesMut) {
    let (store, stats) = (&ctx.store, &ctx.stats);
    let args = GetArgs { ttl: m.ttl, recache: m.recache, bump: !m.no_update, key_binary: m.key_binary };
    let hit = store.meta_get(&m.key, &args);
    // memcached counts a hit with `T` as a touch, and every miss as a get miss.
    let ttl_set = m.ttl.touch.is_some() && hit.is_some();
    let (cmds, hits, misses) = if ttl_set {
        (&stats.cmd_touch, &stats.touch_hits, &stats.touch_misses)
    } else {
        (&stats.cmd_get, &stats.get_hits, &stats.get_misses)
    };
    Stats::incr(cmds);
    let start = out.len();
    let line = &mut *out;
    let Some(h) = hit else {
        Stats::incr(misses);
        line.put_slice(b"EN");
        for (_, f) in m.flags() {
            put_opaque_and_key(line, m, f, m.key_binary);
        }
        return finish(line, start, m.noreply, None);
    };
    Stats::incr(hits);
    let now = store.clock().now();
    if m.value {
        line.put_slice(b"VA ");
        line.put_slice(itoa::Buffer::new().format(h.value.len()).as_bytes());
    } else {
        line.put_slice(b"HD");
    }
    for (pos, f) in m.flags() {
        if put_opaque_and_key(line, m, f, h.key_binary) {
            continue;
        }
        match f[0] {
            b's' => put_flag(line, b's', h.value.len()),
            b't' => put_ttl(line, m.ttl.exptime_at(pos, h.exptime_before, h.created), now),
            b'c' => put_flag(line, b'c', h.cas),
            b'f' => put_flag(line, b'f', h.flags),
            b'l' => put_flag(line, b'l', now.wrapping_sub(h.time_before)),
            b'h' => put_flag(line, b'h', u8::from(h.fetched_before)),
            _ => {}
        }
    }
    if h.token_sent_before {
        line.put_slice(b" Z");
    }
    if h.stale {
        line.put_slice(b" X");
    }
    if h.won {
        line.put_slice(b" W");
    }
    finish(line, start, false, m.value.then_some(&h.value[..]));
}

/// `ms`, once its data block has arrived.
pub fn set(ctx: &Ctx, m: &Meta, value: &Bytes, out: &mut BytesMut) {
    Stats::incr(&ctx.stats.cmd_set);
    let mut mode = match m.mode {
        Some(b'E') => StoreMode::Add,
        Some(b'A') => StoreMode::Append,
        Some(b'P') => StoreMode::Prepend,
        Some(b'R') => StoreMode::Replace,
        _ => StoreMode::Set,
    };
    let compare = m.cas.unwrap_or(0);
    // A CAS turns set and replace into cas, as in memcached.
    if m.cas.is_some() && matches!(mode, StoreMode::Set | StoreMode::Replace) {
        mode = StoreMode::Cas { unique: compare };
    }
    let args = StoreArgs {
        mode,
        key: &m.key,
        flags: m.client_flags,
        exptime: m.ttl.touch.map_or(0, |(d, _)| d),
        value,
        stale_ok: m.invalidate && matches!(mode, StoreMode::Cas { .. }),
        key_binary: m.key_binary,
        compare_cas: if matches!(mode, StoreMode::Append | StoreMode::Prepend) { compare } else { 0 },
    };
    let (outcome, cas) = ctx.store.store_with(&args);
    let code: &[u8] = match outcome {
        StoreOutcome::Stored => b"HD",
        StoreOutcome::NotStored => b"NS",
        StoreOutcome::Exists => b"EX",
        StoreOutcome::NotFound => b"NF",
        StoreOutcome::NoMemory => {
            Stats::incr(&ctx.stats.store_no_memory);
            ctx.store.delete(&m.key);
            out.put_slice(b"SERVER_ERROR out of memory storing object\r\n");
            return;
        }
    };
    let start = out.len();
    let line = &mut *out;
    line.put_slice(code);
    for (_, f) in m.flags() {
        if !put_opaque_and_key(line, m, f, m.key_binary) && f[0] == b'c' {
            put_flag(line, b'c', cas);
        }
    }
    finish(line, start, m.noreply && outcome == StoreOutcome::Stored, None);
}

fn delete(ctx: &Ctx, m: &Meta, out: &mut BytesMut) {
    let stats = &ctx.stats;
    let exptime = m.ttl.touch.map(|(d, _)| d);
    let outcome = ctx.store.meta_delete(&m.key, m.cas, m.invalidate, exptime);
    let code: &[u8] = match outcome {
        DeleteOutcome::Deleted => {
            Stats::incr(&stats.delete_hits);
            b"HD"
        }
        DeleteOutcome::Invalidated => b"HD",
        DeleteOutcome::Exists => {
            Stats::incr(&stats.delete_misses);
            b"EX"
        }
        DeleteOutcome::NotFound => {
            Stats::incr(&stats.delete_misses);
            b"NF"
        }
    };
    let start = out.len();
    let line = &mut *out;
    line.put_slice(code);
    for (_, f) in m.flags() {
        put_opaque_and_key(line, m, f, m.key_binary);
    }
    let quiet = m.noreply && matches!(outcome, DeleteOutcome::Deleted | DeleteOutcome::Invalidated);
    finish(line, start, quiet, None);
}

fn arith(ctx: &Ctx, m: &Meta, out: &mut BytesMut) {
    let stats = &ctx.stats;
    let incr = !matches!(m.mode, Some(b'D' | b'-'));
    let args = ArithArgs {
        incr,
        delta: m.delta,
        compare_cas: m.cas.unwrap_or(0),
        initial: m.ttl.vivify.map(|_| m.initial),
        ttl: m.ttl,
    };
    let (hits, misses) =
        if incr { (&stats.incr_hits, &stats.incr_misses) } else { (&stats.decr_hits, &stats.decr_misses) };
    let start = out.len();
    let line = &mut *out;
    let outcome = ctx.store.meta_arith(&m.key, &args);
    let ArithOutcome::Value { value, cas, exptime_before, created } = outcome else {
        let code: &[u8] = match outcome {
            ArithOutcome::NotFound => {
                Stats::incr(misses);
                b"NF"
            }
            ArithOutcome::Exists => b"EX",
            ArithOutcome::NonNumeric => return line.put_slice(NON_NUMERIC),
            _ => return line.put_slice(b"SERVER_ERROR Out of memory allocating new item\r\n"),
        };
        line.put_slice(code);
        for (_, f) in m.flags() {
            put_opaque_and_key(line, m, f, m.key_binary);
        }
        return finish(line, start, false, None);
    };
    if !created {
        Stats::incr(hits);
    }
    let mut n = itoa::Buffer::new();
    let digits = n.format(value).as_bytes();
    if m.value {
        line.put_slice(b"VA ");
        line.put_slice(itoa::Buffer::new().format(digits.len()).as_bytes());
    } else {
        line.put_slice(b"HD");
    }
    let now = ctx.store.clock().now();
    for (pos, f) in m.flags() {
        if put_opaque_and_key(line, m, f, m.key_binary) {
            continue;
        }
        match f[0] {
            b'c' => put_flag(line, b'c', cas),
            b't' => put_ttl(line, m.ttl.exptime_at(pos, exptime_before, created), now),
            _ => {}
        }
    }
    // memcached silences a successful ma under q, but not one that created the item.
    finish(line, start, m.noreply && !created, m.value.then_some(digits));
}

/// `me`: memcached's debug line, sizes and slab class as memcached would count them.
pub fn debug(ctx: &Ctx, key: &[u8], key_binary: bool, out: &mut BytesMut) {
    Stats::incr(&ctx.stats.cmd_meta);
    let Some(d) = ctx.store.meta_debug(key) else {
        out.put_slice(b"EN\r\n");
        return;
    };
    let now = ctx.store.clock().now();
    out.put_slice(b"ME ");
    if key_binary || d.key_binary {
        let mut enc = Vec::new();
        base64_encode(key, &mut enc);
        out.put_slice(&enc);
    } else {
        out.put_slice(key);
    }
    let exp: i64 = if d.exptime == 0 { -1 } else { i64::from(now.wrapping_sub(d.exptime) as i32) };
    let size = memcached_size(key, &d);
    out.put_slice(b" exp=");
    out.put_slice(itoa::Buffer::new().format(exp).as_bytes());
    out.put_slice(b" la=");
    out.put_slice(itoa::Buffer::new().format(now.wrapping_sub(d.time)).as_bytes());
    out.put_slice(b" cas=");
    out.put_slice(itoa::Buffer::new().format(d.cas).as_bytes());
    out.put_slice(if d.fetched { b" fetch=yes" } else { b" fetch=no" });
    out.put_slice(b" cls=");
    out.put_slice(itoa::Buffer::new().format(slab_class(size, ctx.config.max_item_size)).as_bytes());
    out.put_slice(b" size=");
    out.put_slice(itoa::Buffer::new().format(size).as_bytes());
    out.put_slice(b"\r\n");
}

/// `lru_crawler metadump`: a line for each live item in `classes` (a bit per slab class id,
/// the class memcached would use) from `at` on, until at least `room` bytes are added or
/// the last item is shown, after which `END`. Returns where to carry on, `None` once ended.
pub fn metadump(ctx: &Ctx, classes: u64, at: DumpCursor, out: &mut BytesMut, room: usize) -> Option<DumpCursor> {
    let epoch = ctx.store.clock().epoch();
    let stop = out.len().saturating_add(room);
    let next = ctx.store.dump(at, |key, d| {
        let size = memcached_size(key, d);
        let class = slab_class(size, ctx.config.max_item_size);
        if classes & (1 << class) != 0 {
            // memcached's format: absolute times, the key URI-encoded, lines ending in \n.
            out.put_slice(b"key=");
            uri_encode(key, out);
            out.put_slice(b" exp=");
            let exp = if d.exptime == 0 { -1 } else { epoch + i64::from(d.exptime) };
            out.put_slice(itoa::Buffer::new().format(exp).as_bytes());
            out.put_slice(b" la=");
            out.put_slice(itoa::Buffer::new().format(epoch + i64::from(d.time)).as_bytes());
            out.put_slice(b" cas=");
            out.put_slice(itoa::Buffer::new().format(d.cas).as_bytes());
            out.put_slice(if d.fetched { b" fetch=yes" } else { b" fetch=no" });
            out.put_slice(b" cls=");
            out.put_slice(itoa::Buffer::new().format(class).as_bytes());
            out.put_slice(b" size=");
            out.put_slice(itoa::Buffer::new().format(size).as_bytes());
            out.put_slice(b"\n");
        }
        out.len() < stop
    });
    if next.is_none() {
        out.put_slice(b"END\r\n");
    }
    next
}

/// memcached's `uriencode`: bytes other than letters, digits and `-._~` as `%XX`.
fn uri_encode(key: &[u8], out: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.put_u8(b);
        } else {
            out.put_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// The bytes memcached's item for `key` would take (`ITEM_ntotal`).
fn memcached_size(key: &[u8], d: &DebugInfo) -> usize {
    memcached_item_size(key.len(), d.flags, d.value_len)
}

/// The slab class memcached (`-n 48 -f 1.25`) would put an item of `size` bytes in.
fn slab_class(size: usize, max_item_size: usize) -> u32 {
    let chunk_max = (max_item_size / 2).min(MAX_SLAB_CHUNK);
    let mut class_size: usize = 96;
    let mut class = 1;
    while (class_size as f64) < chunk_max as f64 / 1.25 {
        class_size = class_size.div_ceil(8) * 8;
        if size <= class_size {
            return class;
        }
        class += 1;
        class_size = (class_size as f64 * 1.25) as usize;
    }
    class
}
