//! The `stats` reports, with memcached 1.6's field names in its order, so monitoring that
//! parses memcached's keeps working. Fields about machinery Larder does not have report 0.

use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;

use super::{Ctx, VERSION};
use crate::protocol::encode::{
    Reply, Seconds, put_class_stat, put_conn_stat, put_hot_key, put_other_prefix_stat, put_prefix_stat, put_reply,
    put_stat,
};
use crate::protocol::{DetailCmd, StatsGroup};
use crate::stats::Stats;

/// Writes the `stats` report asked for.
pub fn write(ctx: &Ctx, group: StatsGroup, out: &mut BytesMut) {
    match group {
        StatsGroup::General => general_stats(ctx, out),
        StatsGroup::Settings => settings_stats(ctx, out),
        StatsGroup::Items => item_stats(ctx, out),
        StatsGroup::Slabs => slab_stats(ctx, out),
        StatsGroup::Sizes => put_stat(out, "sizes_status", "disabled"),
        StatsGroup::Conns => conn_stats(ctx, out),
        StatsGroup::Reset => {
            // Everything memcached's reset zeroes: the server's, the store's, the log's
            // and TLS's counters (the gauges and the state file's record stay).
            ctx.stats.reset();
            ctx.store.reset_stats();
            ctx.watch.reset();
            if let Some(tls) = &ctx.tls {
                tls.counters.reset();
            }
            put_reply(out, Reply::Reset);
            return;
        }
        // memcached 1.6.45: `-X` refuses `stats detail` too (a dump of key prefixes).
        StatsGroup::Detail(_) | StatsGroup::DetailUsage if !ctx.config.dump_enabled => {
            put_reply(out, Reply::DetailNotAllowed);
            return;
        }
        StatsGroup::Detail(cmd @ (DetailCmd::On | DetailCmd::Off)) => {
            ctx.stats.prefixes.set_enabled(cmd == DetailCmd::On);
            put_reply(out, Reply::Ok);
            return;
        }
        StatsGroup::Detail(DetailCmd::Dump) => {
            for row in ctx.stats.prefixes.snapshot() {
                if row.other {
                    put_other_prefix_stat(out, row.counts());
                } else {
                    put_prefix_stat(out, &row.prefix, row.counts());
                }
            }
            put_reply(out, Reply::End);
            return;
        }
        StatsGroup::HotKeys => return hot_keys(ctx, out),
        StatsGroup::DetailUsage => {
            put_reply(out, Reply::DetailUsage);
            return;
        }
    }
    put_reply(out, Reply::End);
}

/// `stats hotkeys`: `STAT <key> <estimated fetches>`, the most fetched first (see
/// [`crate::hot_keys`] for the bound); refused under `-X` as `stats cachedump` is, and
/// `STAT hotkeys_status disabled` with `--hot-keys 0` (as `stats sizes` says it is off).
fn hot_keys(ctx: &Ctx, out: &mut BytesMut) {
    let hot = &ctx.stats.hot_keys;
    if !ctx.config.dump_enabled {
        return put_reply(out, Reply::HotkeysNotAllowed);
    }
    if !hot.enabled() {
        put_stat(out, "hotkeys_status", "disabled");
    }
    for row in hot.top(hot.capacity()) {
        put_hot_key(out, &row.key, row.count);
    }
    put_reply(out, Reply::End);
}

/// `stats conns`: a group of lines per open socket, `<fd>:<field>`.
fn conn_stats(ctx: &Ctx, out: &mut BytesMut) {
    for row in ctx.conns.rows(ctx.store.clock().now()) {
        put_conn_stat(out, row.fd, "addr", row.addr.as_str());
        if let Some(listen) = &row.listen_addr {
            put_conn_stat(out, row.fd, "listen_addr", listen.as_str());
        }
        put_conn_stat(out, row.fd, "state", row.state);
        put_conn_stat(out, row.fd, "secs_since_last_cmd", row.idle);
    }
}

/// `stats items`: Larder keeps every item in one class, reported as memcached's class 1
/// with memcached's field names so monitoring that parses them keeps working. Without the
/// LRU maintainer (`-o no_lru_maintainer`) memcached leaves out its segments' fields.
fn item_stats(ctx: &Ctx, out: &mut BytesMut) {
    let (st, s) = (ctx.store.stats.totals(), ctx.stats.totals());
    let items = ctx.store.len();
    if items == 0 {
        return;
    }
    let fields: [(&str, u64); 28] = [
        ("number", items as u64),
        ("number_hot", 0),
        ("number_warm", 0),
        ("number_cold", items as u64),
        ("age_hot", 0),
        ("age_warm", 0),
        ("age", 0),
        ("mem_requested", ctx.store.bytes() as u64),
        ("evicted", st.evictions),
        ("evicted_nonzero", 0),
        ("evicted_time", 0),
        ("outofmemory", s.store_no_memory),
        ("tailrepairs", 0),
        ("reclaimed", st.reclaimed),
        ("expired_unfetched", st.expired_unfetched),
        ("evicted_unfetched", st.evicted_unfetched),
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
        ("hits_to_cold", s.get_hits),
        ("hits_to_temp", 0),
    ];
    for (name, v) in fields {
        if ctx.config.lru_maintainer || !MAINTAINER_ITEM_STATS.contains(&name) {
            put_class_stat(out, "items:1:", name, v);
        }
    }
}

/// The `stats items` fields memcached shows only while its LRU maintainer runs.
const MAINTAINER_ITEM_STATS: &[&str] = &[
    "number_hot",
    "number_warm",
    "number_cold",
    "age_hot",
    "age_warm",
    "evicted_active",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
    "direct_reclaims",
    "hits_to_hot",
    "hits_to_warm",
    "hits_to_cold",
    "hits_to_temp",
];

/// `stats slabs`: one class holding everything, sized by what items are charged.
fn slab_stats(ctx: &Ctx, out: &mut BytesMut) {
    const PAGE: u64 = 1 << 20;
    let (s, st) = (ctx.stats.totals(), ctx.store.stats.totals());
    let (items, bytes) = (ctx.store.len() as u64, ctx.store.bytes() as u64);
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
            ("get_hits", s.get_hits),
            ("cmd_set", s.cmd_set),
            ("delete_hits", s.delete_hits),
            ("incr_hits", s.incr_hits),
            ("decr_hits", s.decr_hits),
            ("cas_hits", st.cas_hits),
            ("cas_badval", st.cas_badval),
            ("touch_hits", s.touch_hits),
        ];
        for (name, v) in fields {
            put_class_stat(out, "1:", name, v);
        }
    }
    put_stat(out, "active_slabs", u64::from(items > 0));
    put_stat(out, "total_malloced", bytes);
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
/// does not have (slab mover, LRU crawler, extstore) report 0; those of memcached's LRU
/// maintainer are left out with `-o no_lru_maintainer`, as memcached leaves them out.
fn general_stats(ctx: &Ctx, out: &mut BytesMut) {
    let maintainer = ctx.config.lru_maintainer;
    let (s, st, store) = (ctx.stats.totals(), ctx.store.stats.totals(), &ctx.store);
    let clock = store.clock();
    let (user, system) = rusage();
    put_stat(out, "pid", std::process::id());
    put_stat(out, "uptime", clock.uptime());
    put_stat(out, "time", clock.unix_now());
    put_stat(out, "version", VERSION);
    put_stat(out, "libevent", "mio");
    put_stat(out, "pointer_size", usize::BITS);
    put_stat(out, "rusage_user", user);
    put_stat(out, "rusage_system", system);
    put_stat(out, "max_connections", ctx.config.max_connections);
    // memcached counts its listening sockets among its connections, all but one of them
    // in curr_connections.
    let (clients, listeners) = (s.curr_connections, ctx.conns.listeners() as u64);
    put_stat(out, "curr_connections", (clients + listeners).saturating_sub(1).max(clients));
    put_stat(out, "total_connections", s.total_connections);
    put_stat(out, "rejected_connections", s.rejected_connections);
    put_stat(out, "connection_structures", clients + listeners);
    put_zero_stats(out, &["response_obj_oom", "response_obj_count", "response_obj_bytes"]);
    // The connection buffer budget: buffers grown past their base, the bytes they hold,
    // none kept free (memcached counts its cache of 16 KiB buffers here), refusals.
    let budget = &ctx.budget;
    put_stat(out, "read_buf_count", budget.grown() as u64);
    put_stat(out, "read_buf_bytes", budget.used() as u64);
    put_stat(out, "read_buf_bytes_free", 0u32);
    put_stat(out, "read_buf_oom", budget.refused() as u64);
    put_stat(out, "reserved_fds", 0u32);
    put_stat(out, "cmd_get", s.cmd_get);
    put_stat(out, "cmd_set", s.cmd_set);
    put_stat(out, "cmd_flush", s.cmd_flush);
    put_stat(out, "cmd_touch", s.cmd_touch);
    put_stat(out, "cmd_meta", s.cmd_meta);
    put_stat(out, "get_hits", s.get_hits);
    put_stat(out, "get_misses", s.get_misses);
    put_stat(out, "get_expired", st.get_expired);
    put_stat(out, "get_flushed", st.get_flushed);
    put_stat(out, "delete_misses", s.delete_misses);
    put_stat(out, "delete_hits", s.delete_hits);
    put_stat(out, "incr_misses", s.incr_misses);
    put_stat(out, "incr_hits", s.incr_hits);
    put_stat(out, "decr_misses", s.decr_misses);
    put_stat(out, "decr_hits", s.decr_hits);
    put_stat(out, "cas_misses", st.cas_misses);
    put_stat(out, "cas_hits", st.cas_hits);
    put_stat(out, "cas_badval", st.cas_badval);
    put_stat(out, "touch_hits", s.touch_hits);
    put_stat(out, "touch_misses", s.touch_misses);
    put_stat(out, "store_too_large", s.store_too_large);
    put_stat(out, "store_no_memory", s.store_no_memory);
    put_stat(out, "auth_cmds", s.auth_cmds);
    put_stat(out, "auth_errors", s.auth_errors);
    // memcached lists this one only when `-o idle_timeout` is set.
    if ctx.config.idle_timeout > 0 {
        put_stat(out, "idle_kicks", s.idle_kicks);
    }
    put_stat(out, "bytes_read", s.bytes_read);
    put_stat(out, "bytes_written", s.bytes_written);
    put_stat(out, "limit_maxbytes", store.limit());
    put_stat(out, "accepting_conns", 1u32);
    put_stat(out, "listen_disabled_num", 0u32);
    put_stat(out, "time_in_listen_disabled_us", 0u32);
    put_stat(out, "threads", ctx.config.threads);
    put_stat(out, "conn_yields", s.conn_yields);
    put_stat(out, "hash_power_level", 16u32);
    put_stat(out, "hash_bytes", 524288u32);
    put_stat(out, "hash_is_expanding", 0u32);
    let log = ctx.watch.stats();
    for name in [
        "slab_reassign_rescues",
        "slab_reassign_chunk_rescues",
        "slab_reassign_inline_reclaim",
        "slab_reassign_busy_items",
        "slab_reassign_busy_deletes",
        // memcached 1.6.45's names (1.6.18 had slab_reassign_evictions_nomem instead).
        "slab_reassign_busy_nomem",
        "slab_reassign_last_busy_status",
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
            "unexpected_napi_ids" => {
                tls_stats(ctx, out);
                put_stat(out, name, 0u32);
            }
            "slab_reassign_rescues" => put_stat(out, name, st.relocated),
            "slabs_moved" => put_stat(out, name, store.pages_moved()),
            "lru_maintainer_juggles" if !maintainer => {}
            "log_worker_dropped" => put_stat(out, name, log.worker_dropped),
            "log_worker_written" => put_stat(out, name, log.worker_written),
            "log_watcher_skipped" => put_stat(out, name, log.watcher_skipped),
            "log_watcher_sent" => put_stat(out, name, log.watcher_sent),
            "log_watchers" => put_stat(out, name, log.watchers),
            "slab_reassign_last_busy_status" => put_stat(out, name, "none"),
            _ => put_stat(out, name, 0u32),
        }
    }
    put_stat(out, "bytes", store.bytes());
    put_stat(out, "curr_items", store.len());
    put_stat(out, "total_items", st.total_items);
    put_stat(out, "slab_global_page_pool", 0u32);
    put_stat(out, "expired_unfetched", st.expired_unfetched);
    put_stat(out, "evicted_unfetched", st.evicted_unfetched);
    if maintainer {
        put_stat(out, "evicted_active", 0u32);
    }
    put_stat(out, "evictions", st.evictions);
    put_stat(out, "reclaimed", st.reclaimed);
    put_zero_stats(out, &["crawler_reclaimed", "crawler_items_checked", "lrutail_reflocked"]);
    if maintainer {
        put_zero_stats(
            out,
            &["moves_to_cold", "moves_to_warm", "moves_within_lru", "direct_reclaims", "lru_bumps_dropped"],
        );
    }
    state_file_stats(ctx, out);
}

/// With `-e`: the state file's last save and the load at start (times are Unix seconds,
/// 0 for never).
fn state_file_stats(ctx: &Ctx, out: &mut BytesMut) {
    let Some(p) = &ctx.persist else { return };
    let s = &p.stats;
    let secs = |micros: &std::sync::atomic::AtomicU64| {
        let m = Stats::read(micros);
        Seconds { secs: m / 1_000_000, micros: (m % 1_000_000) as u32 }
    };
    put_stat(out, "state_file_saves", Stats::read(&s.saves));
    put_stat(out, "state_file_save_failures", Stats::read(&s.save_failures));
    put_stat(out, "state_file_last_save_time", Stats::read(&s.last_save_time));
    put_stat(out, "state_file_last_save_seconds", secs(&s.last_save_micros));
    put_stat(out, "state_file_last_save_items", Stats::read(&s.last_save_items));
    put_stat(out, "state_file_last_save_bytes", Stats::read(&s.last_save_bytes));
    put_stat(out, "state_file_load_time", Stats::read(&s.load_time));
    put_stat(out, "state_file_load_seconds", secs(&s.load_micros));
    put_stat(out, "state_file_load_items", Stats::read(&s.load_items));
    put_stat(out, "state_file_load_bytes", Stats::read(&s.load_bytes));
    put_stat(out, "state_file_load_skipped", Stats::read(&s.load_skipped));
    put_stat(out, "state_file_load_failures", Stats::read(&s.load_failures));
}

/// With `-Z`, TLS's counters, where memcached lists them.
fn tls_stats(ctx: &Ctx, out: &mut BytesMut) {
    let Some(tls) = &ctx.tls else { return };
    let c = &tls.counters;
    if ctx.config.tls.session_cache {
        put_stat(out, "ssl_new_sessions", Stats::read(&c.new_sessions));
    }
    put_stat(out, "ssl_handshake_errors", Stats::read(&c.handshake_errors));
    put_stat(out, "time_since_server_cert_refresh", tls.since_refresh());
}

/// Fields of machinery Larder does not have, which memcached's monitoring expects: 0 each.
fn put_zero_stats(out: &mut BytesMut, names: &[&str]) {
    for name in names {
        put_stat(out, name, 0u32);
    }
}

/// `stats settings`, with memcached 1.6's names; values describe Larder where they apply.
fn settings_stats(ctx: &Ctx, out: &mut BytesMut) {
    let c = &ctx.config;
    let port = c.listen.first().map_or(0, |l| l.addr.port());
    put_stat(out, "maxbytes", ctx.store.limit());
    put_stat(out, "maxconns", c.max_connections);
    put_stat(out, "tcpport", port);
    put_stat(out, "udpport", 0u32);
    // With -s there is no TCP, and memcached has no -l to show.
    put_stat(out, "inter", if c.unix_socket.is_some() { "NULL" } else { c.listen_arg.as_str() });
    put_stat(out, "verbosity", c.verbose);
    put_stat(out, "oldest", 0u32);
    put_stat(out, "evictions", if c.disable_evictions { "off" } else { "on" });
    put_stat(out, "domain_socket", "NULL");
    put_stat(out, "umask", 700u32);
    put_stat(out, "shutdown_command", c.enable_shutdown);
    put_stat(out, "growth_factor", format!("{:.2}", c.growth_factor));
    put_stat(out, "chunk_size", c.chunk_size);
    put_stat(out, "num_threads", c.threads);
    put_stat(out, "num_threads_per_udp", c.threads);
    put_stat(out, "stat_key_prefix", char::from(c.prefix_delimiter).to_string());
    put_stat(out, "detail_enabled", ctx.stats.prefixes.enabled());
    put_stat(out, "reqs_per_event", c.reqs_per_event);
    put_stat(out, "cas_enabled", c.cas_enabled);
    put_stat(out, "tcp_backlog", c.listen_backlog);
    put_stat(out, "binding_protocol", c.protocol.name());
    put_stat(out, "auth_enabled_sasl", c.sasl);
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
    put_stat(out, "flush_enabled", c.flush_enabled);
    put_stat(out, "dump_enabled", c.dump_enabled);
    put_stat(out, "hash_algorithm", "siphash");
    // memcached's LRU is segmented while its maintainer runs.
    put_stat(out, "lru_maintainer_thread", c.lru_maintainer);
    put_stat(out, "lru_segmented", c.lru_maintainer);
    put_stat(out, "hot_lru_pct", 20u32);
    put_stat(out, "warm_lru_pct", 40u32);
    put_stat(out, "hot_max_factor", "0.20");
    put_stat(out, "warm_max_factor", "2.00");
    put_stat(out, "temp_lru", false);
    put_stat(out, "temporary_ttl", 61u32);
    put_stat(out, "idle_timeout", c.idle_timeout);
    put_stat(out, "watcher_logbuf_size", 262144u32);
    put_stat(out, "worker_logbuf_size", 65536u32);
    put_stat(out, "read_buf_mem_limit", ctx.budget.limit() as u64);
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
    let tls = &c.tls;
    // memcached prints an unset file or cipher list as C's "(null)" or as "NULL".
    let path = |p: &Option<std::path::PathBuf>, none: &'static str| {
        p.as_ref().map_or_else(|| none.to_string(), |p| p.display().to_string())
    };
    put_stat(out, "ssl_enabled", tls.enabled);
    put_stat(out, "ssl_chain_cert", path(&tls.chain_cert, "(null)"));
    put_stat(out, "ssl_key", path(&tls.key, "(null)"));
    put_stat(out, "ssl_verify_mode", tls.verify_mode.openssl_flags());
    put_stat(out, "ssl_keyformat", tls.keyformat);
    put_stat(out, "ssl_ciphers", tls.ciphers.as_deref().unwrap_or("NULL"));
    put_stat(out, "ssl_ca_cert", path(&tls.ca_cert, "NULL"));
    put_stat(out, "ssl_wbuf_size", tls.wbuf_size);
    put_stat(out, "ssl_session_cache", tls.session_cache);
    put_stat(out, "ssl_kernel_tls", tls.kernel_tls);
    put_stat(out, "ssl_min_version", if tls.min_version == 3 { "tlsv1.3" } else { "tlsv1.2" });
    // memcached 1.6.18 prints an unset -N as "(null)" (and crashes printing a set one).
    match c.napi_ids {
        Some(n) => put_stat(out, "num_napi_ids", n),
        None => put_stat(out, "num_napi_ids", "(null)"),
    }
    put_stat(out, "memory_file", path(&c.memory_file, "(null)"));
    // memcached 1.6.45: the bytes of client flags an item keeps (4 without
    // --enable-large-client-flags).
    put_stat(out, "client_flags_size", 4u32);
    if c.memory_file.is_some() {
        put_stat(out, "snapshot_interval", c.snapshot_interval);
    }
    // Larder's own, listed once any differs from its default (so that by default the
    // names are memcached's).
    if !c.observability_defaults() {
        put_stat(out, "detail_prefix_segments", c.prefix_segments);
        put_stat(out, "detail_prefix_limit", c.prefix_limit);
        put_stat(out, "hot_keys", c.hot_keys);
        put_stat(out, "hot_keys_sample", c.hot_keys_sample);
    }
}
