//! Where protocol meets store: runs one decoded [`Request`] against the [`Store`] and
//! appends memcached's reply to the write buffer. Synchronous, never awaits, and counts
//! what `stats` reports.

mod meta;

use std::sync::atomic::Ordering::Relaxed;

use bytes::{BufMut, BytesMut};

use crate::config::Config;
use crate::protocol::encode::{Output, Seconds, put_number, put_stat, put_value};
use crate::protocol::{CrawlClasses, DetailCmd, Request, StatsGroup, StoreMode};
use crate::stats::{PrefixEvent, Stats};
use crate::store::{ArithOutcome, DumpCursor, Store, StoreOutcome};
pub use meta::metadump;

/// The version `version` and `stats` report: the memcached release whose behaviour Larder
/// reproduces, then Larder's own. Clients and tools read the leading numbers to decide
/// which protocol features to expect (memccapable expects 1.6 answers only from "1.6");
/// the suffix keeps it honest about what answers.
pub const VERSION: &str = concat!("1.6.18-larder.", env!("CARGO_PKG_VERSION"));

const NON_NUMERIC: &[u8] = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";

/// memcached refuses `cache_memlimit` below this many MiB.
const MIN_MEMLIMIT_MIB: u32 = 8;

/// Everything a request can touch, shared by all connections.
#[derive(Debug)]
pub struct Ctx {
    pub config: Config,
    pub store: Store,
    pub stats: Stats,
    /// `lru_crawler enable|disable` state (on by default, as in memcached).
    pub crawler: std::sync::atomic::AtomicBool,
    /// Cancelled by the `shutdown` command (`-A`); the server stops as on SIGTERM.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Open sockets, for `stats conns`.
    pub conns: crate::conns::Conns,
    /// Set when the server starts draining: the worker threads then close every
    /// connection waiting for a command, and the rest once their batch is written.
    pub stopping: std::sync::atomic::AtomicBool,
}

impl Ctx {
    pub fn new(config: Config, clock: crate::clock::Clock) -> Self {
        let mut store = Store::new(clock, config.memory_limit, config.max_item_size);
        if config.disable_evictions {
            store.disable_evictions();
        }
        Self {
            config,
            store,
            stats: Stats::default(),
            crawler: std::sync::atomic::AtomicBool::new(true),
            shutdown: tokio_util::sync::CancellationToken::new(),
            conns: crate::conns::Conns::default(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// Whether the connection goes on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Goes on; memcached writes out the replies so far at this point (after a retrieval
    /// or `mn`), so nothing later can discard them.
    Transmit,
    /// Goes on with the login accepted (`-Y`).
    Authenticated,
    Close,
}

/// Runs one request and appends its reply (if any) to `out`.
pub fn execute(ctx: &Ctx, req: Request, out: &mut BytesMut) -> Flow {
    let (store, stats) = (&ctx.store, &ctx.stats);
    match req {
        Request::Get { keys, with_cas, touch } => {
            // Connections run retrievals themselves, writing large values from the
            // store's memory; here they are copied into `out`.
            let get = Retrieval::new(ctx, with_cas, touch);
            let mut o = Output::new(std::mem::take(out));
            for key in keys.iter() {
                get.key(ctx, key, &mut o);
            }
            *out = o.into_flat();
            return get.end(out);
        }
        Request::Store { mode, key, flags, deadline, value, noreply } => {
            Stats::incr(&stats.cmd_set);
            stats.prefixes.record(&key, PrefixEvent::Set);
            let reply: &[u8] = match store.store(mode, &key, flags, deadline, &value) {
                StoreOutcome::Stored => b"STORED\r\n",
                StoreOutcome::NotStored => b"NOT_STORED\r\n",
                StoreOutcome::Exists => b"EXISTS\r\n",
                StoreOutcome::NotFound => b"NOT_FOUND\r\n",
                StoreOutcome::NoMemory => {
                    Stats::incr(&stats.store_no_memory);
                    // As for a too-large item, memcached drops the stale value of a failed set.
                    if mode == StoreMode::Set {
                        store.delete(&key);
                    }
                    b"SERVER_ERROR out of memory storing object\r\n"
                }
            };
            reply_unless(out, noreply, reply);
        }
        Request::TooLarge { key, mode } => {
            Stats::incr(&stats.store_too_large);
            stats.prefixes.record(&key, PrefixEvent::Set);
            // A client that sees the error assumes the old value is gone: memcached makes it
            // so for `set`, and so do we. The reply follows once the data is swallowed.
            if mode == StoreMode::Set {
                store.delete(&key);
            }
        }
        Request::Delete { key, noreply } => {
            stats.prefixes.record(&key, PrefixEvent::Delete);
            let hit = store.delete(&key);
            Stats::incr(if hit { &stats.delete_hits } else { &stats.delete_misses });
            reply_unless(out, noreply, if hit { b"DELETED\r\n" } else { b"NOT_FOUND\r\n" });
        }
        Request::Arith { key, delta, incr, noreply } => {
            let (hits, misses) =
                if incr { (&stats.incr_hits, &stats.incr_misses) } else { (&stats.decr_hits, &stats.decr_misses) };
            match store.arith(&key, incr, delta) {
                ArithOutcome::Value { value, .. } => {
                    Stats::incr(hits);
                    if !noreply {
                        put_number(out, value);
                    }
                }
                ArithOutcome::NotFound => {
                    Stats::incr(misses);
                    reply_unless(out, noreply, b"NOT_FOUND\r\n");
                }
                ArithOutcome::NonNumeric => reply_unless(out, noreply, NON_NUMERIC),
                // Not produced without a CAS check or create-on-miss.
                ArithOutcome::Exists | ArithOutcome::NoMemory => {
                    reply_unless(out, noreply, b"SERVER_ERROR out of memory\r\n")
                }
            }
        }
        Request::Touch { key, exptime, noreply } => {
            Stats::incr(&stats.cmd_touch);
            let hit = store.touch(&key, store.clock().deadline(exptime));
            Stats::incr(if hit { &stats.touch_hits } else { &stats.touch_misses });
            reply_unless(out, noreply, if hit { b"TOUCHED\r\n" } else { b"NOT_FOUND\r\n" });
        }
        Request::FlushAll { delay, noreply } => {
            Stats::incr(&stats.cmd_flush);
            store.flush_all(delay);
            reply_unless(out, noreply, b"OK\r\n");
        }
        Request::Stats { group } => write_stats(ctx, group, out),
        Request::Version => {
            out.put_slice(b"VERSION ");
            out.put_slice(VERSION.as_bytes());
            out.put_slice(b"\r\n");
        }
        Request::Verbosity { noreply } => reply_unless(out, noreply, b"OK\r\n"),
        Request::CacheMemlimit { mib, noreply } => {
            let reply: &[u8] = if mib < MIN_MEMLIMIT_MIB {
                b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
            } else if mib > 1_000_000_000 {
                b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
            } else {
                store.set_limit((mib as usize) << 20);
                b"OK\r\n"
            };
            reply_unless(out, noreply, reply);
        }
        Request::Shutdown { mode_ok } => {
            if !ctx.config.enable_shutdown {
                out.put_slice(b"ERROR: shutdown not enabled\r\n");
            } else if !mode_ok {
                out.put_slice(b"CLIENT_ERROR invalid shutdown mode\r\n");
            } else {
                // memcached closes the asking connection without a reply and stops.
                tracing::info!("shutdown command received");
                ctx.shutdown.cancel();
                return Flow::Close;
            }
        }
        Request::Auth { user, password } => {
            Stats::incr(&stats.auth_cmds);
            if ctx.config.auth.as_ref().is_some_and(|a| a.check(&user, &password)) {
                out.put_slice(b"STORED\r\n");
                return Flow::Authenticated;
            }
            Stats::incr(&stats.auth_errors);
            out.put_slice(b"CLIENT_ERROR authentication failure\r\n");
        }
        Request::MetaNoop => {
            out.put_slice(b"MN\r\n");
            return Flow::Transmit;
        }
        Request::Meta(m) => meta::execute(ctx, &m, out),
        Request::MetaSet { meta, value } => meta::set(ctx, &meta, &value, out),
        Request::MetaDebug { key, key_binary } => meta::debug(ctx, &key, key_binary, out),
        Request::NoOp { reply, noreply } => reply_unless(out, noreply, reply),
        Request::CacheDump { reply } if ctx.config.dump_enabled => out.put_slice(reply),
        Request::CacheDump { .. } => out.put_slice(b"CLIENT_ERROR stats cachedump not allowed\r\n"),
        Request::Crawler { enable } => {
            let was = ctx.crawler.swap(enable, Relaxed);
            out.put_slice(match (enable, was) {
                (true, true) => b"ERROR failed to start lru crawler thread\r\n",
                (false, false) => b"ERROR failed to stop lru crawler thread\r\n",
                _ => b"OK\r\n",
            });
        }
        Request::Crawl { classes, dump: false } => {
            out.put_slice(crawl_refusal(ctx, classes, None).unwrap_or(match classes {
                CrawlClasses::Hash => b"ERROR an unknown error happened\r\n",
                _ => b"OK\r\n",
            }));
        }
        Request::Crawl { classes, dump: true } => match metadump_start(ctx, classes, false) {
            // All at once, for callers without a socket: a connection runs a dump itself
            // (`Connection::dump`), writing it out as it goes and between other clients.
            Ok(classes) => {
                let mut at = Some(DumpCursor::default());
                while let Some(from) = at {
                    at = metadump(ctx, classes, from, out, usize::MAX);
                }
            }
            Err(refused) => out.put_slice(refused),
        },
        Request::Quit => return Flow::Close,
    }
    Flow::Continue
}

/// Why memcached would not start an `lru_crawler crawl` (`dump` None) or a `metadump` of
/// `classes`, in the order it checks. `dump`: whether replies to earlier commands are still
/// waiting to go out, which memcached refuses to mix with a dump.
fn crawl_refusal(ctx: &Ctx, classes: CrawlClasses, dump: Option<bool>) -> Option<&'static [u8]> {
    if !ctx.crawler.load(Relaxed) {
        return Some(b"CLIENT_ERROR lru crawler disabled\r\n");
    }
    if let Some(stacked) = dump {
        if !ctx.config.dump_enabled {
            return Some(b"ERROR metadump not allowed\r\n");
        }
        if stacked {
            return Some(b"ERROR cannot pipeline other commands before metadump\r\n");
        }
    }
    match classes {
        CrawlClasses::Bad => Some(b"BADCLASS invalid class id\r\n"),
        CrawlClasses::List(0) => Some(b"NOTSTARTED no items to crawl\r\n"),
        _ => None,
    }
}

/// `lru_crawler metadump`: the slab classes to show (a bit per class id), or memcached's
/// reply refusing it (`stacked`: see [`crawl_refusal`]).
pub fn metadump_start(ctx: &Ctx, classes: CrawlClasses, stacked: bool) -> Result<u64, &'static [u8]> {
    match (crawl_refusal(ctx, classes, Some(stacked)), classes) {
        (Some(refused), _) => Err(refused),
        (None, CrawlClasses::List(mask)) => Ok(mask),
        (None, _) => Ok(u64::MAX),
    }
}

/// A retrieval command (`get gets gat gats`) run one key at a time, so that the connection
/// can write a long multi-get's reply out between keys instead of holding all of it.
#[derive(Debug, Clone, Copy)]
pub struct Retrieval {
    with_cas: bool,
    /// The new deadline, for `gat`/`gats`.
    deadline: Option<crate::clock::RelTime>,
}

impl Retrieval {
    pub fn new(ctx: &Ctx, with_cas: bool, touch: Option<i32>) -> Self {
        Self { with_cas, deadline: touch.map(|e| ctx.store.clock().deadline(e)) }
    }

    /// Prefetches the items of a multi-get's first keys (see [`crate::store::Store::prefetch`]),
    /// so the lookups that follow find them in the CPU cache: a batch's worth, enough to
    /// overlap a typical page's keys, few enough that the first are still cached when read.
    pub fn prefetch(&self, ctx: &Ctx, keys: &crate::protocol::KeyList) {
        let mut keys = keys.iter().take(crate::store::Prefetch::BATCH).peekable();
        let Some(first) = keys.next() else { return };
        if keys.peek().is_none() {
            return; // one key: nothing to overlap
        }
        let mut batch = ctx.store.prefetch();
        batch.add(first);
        keys.for_each(|k| batch.add(k));
        batch.finish();
    }

    /// Looks up one key and appends its `VALUE` if it is there.
    pub fn key(&self, ctx: &Ctx, key: &[u8], out: &mut Output) {
        let (store, stats) = (&ctx.store, &ctx.stats);
        // A small value is copied into the reply under the shard's lock (no allocation);
        // a large one is shared with the store and written from there.
        let with_cas = self.with_cas;
        let put = |it: &crate::store::Item| {
            let cas = with_cas.then(|| it.cas());
            match it.shared_value() {
                Some(v) => out.put_shared_value(key, it.flags(), v, cas),
                None => put_value(&mut out.buf, key, it.flags(), it.value(), cas),
            }
        };
        let hit = match self.deadline {
            Some(d) => {
                Stats::incr(&stats.cmd_touch);
                let hit = store.touch_with(key, d, put).is_some();
                Stats::incr(if hit { &stats.touch_hits } else { &stats.touch_misses });
                hit
            }
            None => {
                Stats::incr(&stats.cmd_get);
                let hit = store.get_with(key, put).is_some();
                Stats::incr(if hit { &stats.get_hits } else { &stats.get_misses });
                hit
            }
        };
        stats.prefixes.record(key, PrefixEvent::Get { hit });
    }

    /// Ends the reply after the last key.
    pub fn end(self, out: &mut BytesMut) -> Flow {
        out.put_slice(b"END\r\n");
        Flow::Transmit
    }
}

fn reply_unless(out: &mut BytesMut, noreply: bool, reply: &[u8]) {
    if !noreply {
        out.put_slice(reply);
    }
}

fn write_stats(ctx: &Ctx, group: StatsGroup, out: &mut BytesMut) {
    match group {
        StatsGroup::General => general_stats(ctx, out),
        StatsGroup::Settings => settings_stats(ctx, out),
        StatsGroup::Items => item_stats(ctx, out),
        StatsGroup::Slabs => slab_stats(ctx, out),
        StatsGroup::Sizes => put_stat(out, "sizes_status", "disabled"),
        StatsGroup::Conns => ctx.conns.report(ctx.store.clock().now(), out),
        StatsGroup::Reset => {
            ctx.stats.reset();
            out.put_slice(b"RESET\r\n");
            return;
        }
        StatsGroup::Detail(cmd @ (DetailCmd::On | DetailCmd::Off)) => {
            ctx.stats.prefixes.set_enabled(cmd == DetailCmd::On);
            out.put_slice(b"OK\r\n");
            return;
        }
        StatsGroup::Detail(DetailCmd::Dump) => {
            ctx.stats.prefixes.dump(out);
            return;
        }
        StatsGroup::DetailUsage => {
            out.put_slice(b"CLIENT_ERROR usage: stats detail on|off|dump\r\n");
            return;
        }
    }
    out.put_slice(b"END\r\n");
}

/// `stats items`: Larder keeps every item in one class, reported as memcached's class 1
/// with memcached's field names so monitoring that parses them keeps working.
fn item_stats(ctx: &Ctx, out: &mut BytesMut) {
    let (st, s) = (&ctx.store.stats, &ctx.stats);
    let items = ctx.store.len();
    if items == 0 {
        return;
    }
    let r = Stats::read;
    let fields: [(&str, u64); 28] = [
        ("number", items as u64),
        ("number_hot", 0),
        ("number_warm", 0),
        ("number_cold", items as u64),
        ("age_hot", 0),
        ("age_warm", 0),
        ("age", 0),
        ("mem_requested", ctx.store.bytes() as u64),
        ("evicted", r(&st.evictions)),
        ("evicted_nonzero", 0),
        ("evicted_time", 0),
        ("outofmemory", r(&s.store_no_memory)),
        ("tailrepairs", 0),
        ("reclaimed", r(&st.reclaimed)),
        ("expired_unfetched", r(&st.expired_unfetched)),
        ("evicted_unfetched", r(&st.evicted_unfetched)),
        ("evicted_active", 0),
        ("crawler_reclaimed", 0),
        ("crawler_items_checked", 0),
        ("lrutail_reflocked", 0),
        ("moves_to_cold", 0),
        ("moves_to_warm", 0),
        ("moves_within_lru", 0),
        ("direct_reclaims", 0),
        ("hits_to_hot", 0),
        ("hits_to_warm", 0),
        ("hits_to_cold", r(&s.get_hits)),
        ("hits_to_temp", 0),
    ];
    for (name, v) in fields {
        out.put_slice(b"STAT items:1:");
        put_stat_tail(out, name, v);
    }
}

/// `stats slabs`: one class holding everything, sized by what items are charged.
fn slab_stats(ctx: &Ctx, out: &mut BytesMut) {
    const PAGE: u64 = 1 << 20;
    let (s, st) = (&ctx.stats, &ctx.store.stats);
    let (items, bytes) = (ctx.store.len() as u64, ctx.store.bytes() as u64);
    let r = Stats::read;
    if items > 0 {
        let chunk = bytes.div_ceil(items).max(1);
        let fields: [(&str, u64); 15] = [
            ("chunk_size", chunk),
            ("chunks_per_page", (PAGE / chunk).max(1)),
            ("total_pages", bytes.div_ceil(PAGE)),
            ("total_chunks", items),
            ("used_chunks", items),
            ("free_chunks", 0),
            ("free_chunks_end", 0),
            ("get_hits", r(&s.get_hits)),
            ("cmd_set", r(&s.cmd_set)),
            ("delete_hits", r(&s.delete_hits)),
            ("incr_hits", r(&s.incr_hits)),
            ("decr_hits", r(&s.decr_hits)),
            ("cas_hits", r(&st.cas_hits)),
            ("cas_badval", r(&st.cas_badval)),
            ("touch_hits", r(&s.touch_hits)),
        ];
        for (name, v) in fields {
            out.put_slice(b"STAT 1:");
            put_stat_tail(out, name, v);
        }
    }
    put_stat(out, "active_slabs", u64::from(items > 0));
    put_stat(out, "total_malloced", bytes);
}

/// The `<name> <value>\r\n` part of a STAT line.
fn put_stat_tail(out: &mut BytesMut, name: &str, v: u64) {
    out.put_slice(name.as_bytes());
    out.put_u8(b' ');
    out.put_slice(itoa::Buffer::new().format(v).as_bytes());
    out.put_slice(b"\r\n");
}

fn rusage() -> (Seconds, Seconds) {
    // SAFETY: getrusage only writes the struct we pass, which is plain old data.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let secs = |tv: libc::timeval| Seconds { secs: tv.tv_sec as u64, micros: tv.tv_usec as u32 };
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// `stats`, with memcached 1.6's field names in its order. Fields about machinery Larder
/// does not have (slab mover, LRU crawler, extstore) report 0.
fn general_stats(ctx: &Ctx, out: &mut BytesMut) {
    let (s, st, store) = (&ctx.stats, &ctx.store.stats, &ctx.store);
    let r = Stats::read;
    let clock = store.clock();
    let (user, system) = rusage();
    let cas_misses = st.cas_misses.load(Relaxed);
    put_stat(out, "pid", std::process::id());
    put_stat(out, "uptime", clock.now());
    put_stat(out, "time", clock.unix_now());
    put_stat(out, "version", VERSION);
    put_stat(out, "libevent", "tokio");
    put_stat(out, "pointer_size", usize::BITS);
    put_stat(out, "rusage_user", user);
    put_stat(out, "rusage_system", system);
    put_stat(out, "max_connections", ctx.config.max_connections);
    put_stat(out, "curr_connections", r(&s.curr_connections));
    put_stat(out, "total_connections", r(&s.total_connections));
    put_stat(out, "rejected_connections", r(&s.rejected_connections));
    put_stat(out, "connection_structures", r(&s.curr_connections));
    for name in [
        "response_obj_oom",
        "response_obj_count",
        "response_obj_bytes",
        "read_buf_count",
        "read_buf_bytes",
        "read_buf_bytes_free",
        "read_buf_oom",
        "reserved_fds",
    ] {
        put_stat(out, name, 0u32);
    }
    put_stat(out, "cmd_get", r(&s.cmd_get));
    put_stat(out, "cmd_set", r(&s.cmd_set));
    put_stat(out, "cmd_flush", r(&s.cmd_flush));
    put_stat(out, "cmd_touch", r(&s.cmd_touch));
    put_stat(out, "cmd_meta", r(&s.cmd_meta));
    put_stat(out, "get_hits", r(&s.get_hits));
    put_stat(out, "get_misses", r(&s.get_misses));
    put_stat(out, "get_expired", r(&st.get_expired));
    put_stat(out, "get_flushed", r(&st.get_flushed));
    put_stat(out, "delete_misses", r(&s.delete_misses));
    put_stat(out, "delete_hits", r(&s.delete_hits));
    put_stat(out, "incr_misses", r(&s.incr_misses));
    put_stat(out, "incr_hits", r(&s.incr_hits));
    put_stat(out, "decr_misses", r(&s.decr_misses));
    put_stat(out, "decr_hits", r(&s.decr_hits));
    put_stat(out, "cas_misses", cas_misses);
    put_stat(out, "cas_hits", r(&st.cas_hits));
    put_stat(out, "cas_badval", r(&st.cas_badval));
    put_stat(out, "touch_hits", r(&s.touch_hits));
    put_stat(out, "touch_misses", r(&s.touch_misses));
    put_stat(out, "store_too_large", r(&s.store_too_large));
    put_stat(out, "store_no_memory", r(&s.store_no_memory));
    put_stat(out, "auth_cmds", r(&s.auth_cmds));
    put_stat(out, "auth_errors", r(&s.auth_errors));
    // memcached lists this one only when `-o idle_timeout` is set.
    if ctx.config.idle_timeout > 0 {
        put_stat(out, "idle_kicks", r(&s.idle_kicks));
    }
    put_stat(out, "bytes_read", r(&s.bytes_read));
    put_stat(out, "bytes_written", r(&s.bytes_written));
    put_stat(out, "limit_maxbytes", store.limit());
    put_stat(out, "accepting_conns", 1u32);
    put_stat(out, "listen_disabled_num", 0u32);
    put_stat(out, "time_in_listen_disabled_us", 0u32);
    put_stat(out, "threads", ctx.config.threads);
    put_stat(out, "conn_yields", r(&s.conn_yields));
    put_stat(out, "hash_power_level", 16u32);
    put_stat(out, "hash_bytes", 524288u32);
    put_stat(out, "hash_is_expanding", 0u32);
    for name in [
        "slab_reassign_rescues",
        "slab_reassign_chunk_rescues",
        "slab_reassign_evictions_nomem",
        "slab_reassign_inline_reclaim",
        "slab_reassign_busy_items",
        "slab_reassign_busy_deletes",
        "slab_reassign_running",
        "slabs_moved",
        "lru_crawler_running",
        "lru_crawler_starts",
        "lru_maintainer_juggles",
        "malloc_fails",
        "log_worker_dropped",
        "log_worker_written",
        "log_watcher_skipped",
        "log_watcher_sent",
        "log_watchers",
        "unexpected_napi_ids",
        "round_robin_fallback",
    ] {
        // Larder's slab moves items out of sparse pages, as memcached's page mover does.
        match name {
            "slab_reassign_rescues" => put_stat(out, name, r(&store.stats.relocated)),
            "slabs_moved" => put_stat(out, name, store.pages_moved()),
            _ => put_stat(out, name, 0u32),
        }
    }
    put_stat(out, "bytes", store.bytes());
    put_stat(out, "curr_items", store.len());
    put_stat(out, "total_items", r(&st.total_items));
    put_stat(out, "slab_global_page_pool", 0u32);
    put_stat(out, "expired_unfetched", r(&st.expired_unfetched));
    put_stat(out, "evicted_unfetched", r(&st.evicted_unfetched));
    put_stat(out, "evicted_active", 0u32);
    put_stat(out, "evictions", r(&st.evictions));
    put_stat(out, "reclaimed", r(&st.reclaimed));
    for name in [
        "crawler_reclaimed",
        "crawler_items_checked",
        "lrutail_reflocked",
        "moves_to_cold",
        "moves_to_warm",
        "moves_within_lru",
        "direct_reclaims",
        "lru_bumps_dropped",
    ] {
        put_stat(out, name, 0u32);
    }
}

/// `stats settings`, with memcached 1.6's names; values describe Larder where they apply.
fn settings_stats(ctx: &Ctx, out: &mut BytesMut) {
    let c = &ctx.config;
    let port = c.listen.first().map_or(0, |a| a.port());
    put_stat(out, "maxbytes", ctx.store.limit());
    put_stat(out, "maxconns", c.max_connections);
    put_stat(out, "tcpport", port);
    put_stat(out, "udpport", 0u32);
    let inter = c.listen.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(",");
    put_stat(out, "inter", inter);
    put_stat(out, "verbosity", c.verbose);
    put_stat(out, "oldest", 0u32);
    put_stat(out, "evictions", if c.disable_evictions { "off" } else { "on" });
    put_stat(out, "domain_socket", "NULL");
    put_stat(out, "umask", 700u32);
    put_stat(out, "shutdown_command", c.enable_shutdown);
    put_stat(out, "growth_factor", "1.25");
    put_stat(out, "chunk_size", 48u32);
    put_stat(out, "num_threads", c.threads);
    put_stat(out, "num_threads_per_udp", c.threads);
    put_stat(out, "stat_key_prefix", ":");
    put_stat(out, "detail_enabled", ctx.stats.prefixes.enabled());
    put_stat(out, "reqs_per_event", 20u32);
    put_stat(out, "cas_enabled", true);
    put_stat(out, "tcp_backlog", 1024u32);
    put_stat(out, "binding_protocol", "ascii");
    put_stat(out, "auth_enabled_sasl", false);
    put_stat(out, "auth_enabled_ascii", c.auth.is_some());
    put_stat(out, "item_size_max", c.max_item_size);
    put_stat(out, "maxconns_fast", true);
    put_stat(out, "hashpower_init", 0u32);
    put_stat(out, "slab_reassign", false);
    put_stat(out, "slab_automove", 0u32);
    put_stat(out, "slab_automove_ratio", "0.80");
    put_stat(out, "slab_automove_window", 30u32);
    put_stat(out, "slab_chunk_max", c.max_item_size / 2);
    put_stat(out, "lru_crawler", ctx.crawler.load(Relaxed));
    put_stat(out, "lru_crawler_sleep", 100u32);
    put_stat(out, "lru_crawler_tocrawl", 0u32);
    put_stat(out, "tail_repair_time", 0u32);
    put_stat(out, "flush_enabled", true);
    put_stat(out, "dump_enabled", c.dump_enabled);
    put_stat(out, "hash_algorithm", "siphash");
    put_stat(out, "lru_maintainer_thread", false);
    put_stat(out, "lru_segmented", false);
    put_stat(out, "hot_lru_pct", 20u32);
    put_stat(out, "warm_lru_pct", 40u32);
    put_stat(out, "hot_max_factor", "0.20");
    put_stat(out, "warm_max_factor", "2.00");
    put_stat(out, "temp_lru", false);
    put_stat(out, "temporary_ttl", 61u32);
    put_stat(out, "idle_timeout", c.idle_timeout);
    put_stat(out, "watcher_logbuf_size", 262144u32);
    put_stat(out, "worker_logbuf_size", 65536u32);
    put_stat(out, "read_buf_mem_limit", 0u32);
    put_stat(out, "track_sizes", false);
    put_stat(out, "inline_ascii_response", false);
    put_stat(out, "ext_item_size", 512u32);
    put_stat(out, "ext_item_age", u32::MAX);
    put_stat(out, "ext_low_ttl", 0u32);
    put_stat(out, "ext_recache_rate", 2000u32);
    put_stat(out, "ext_wbuf_size", 4194304u32);
    put_stat(out, "ext_compact_under", 0u32);
    put_stat(out, "ext_drop_under", 0u32);
    put_stat(out, "ext_max_sleep", 1000000u32);
    put_stat(out, "ext_max_frag", "0.80");
    put_stat(out, "slab_automove_freeratio", "0.010");
    put_stat(out, "ext_drop_unread", false);
    put_stat(out, "ssl_enabled", false);
    put_stat(out, "ssl_chain_cert", "(null)");
    put_stat(out, "ssl_key", "(null)");
    put_stat(out, "ssl_verify_mode", 0u32);
    put_stat(out, "ssl_keyformat", 1u32);
    put_stat(out, "ssl_ciphers", "NULL");
    put_stat(out, "ssl_ca_cert", "NULL");
    put_stat(out, "ssl_wbuf_size", 16384u32);
    put_stat(out, "ssl_session_cache", false);
    put_stat(out, "ssl_kernel_tls", false);
    put_stat(out, "ssl_min_version", "tlsv1.2");
    put_stat(out, "num_napi_ids", "(null)");
    put_stat(out, "memory_file", "(null)");
}
