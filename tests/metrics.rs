//! `GET /metrics` against `stats`: after known traffic, the exposition and the four
//! `stats` reports are read with no traffic in between, and every `memcached_*` series is
//! checked against the field memcached_exporter makes it from. The table below is the
//! specification: which series exist, with which labels, from which field; a series
//! missing from either side fails.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::{Client, TestServer, spawn};
use larder::Config;

/// Where a series comes from: a field of `stats` (`name`), of `stats settings`
/// (`settings:name`), of a class in `stats items` (`items:1:name`) or `stats slabs`
/// (`1:name`); `a-b-c` is `a` less `b` and `c`; `=v` a fixed value.
const SERIES: &[(&str, &str)] = &[
    ("memcached_up", "=1"),
    ("memcached_version{version=\"VERSION\"}", "=1"),
    ("memcached_commands_total{command=\"get\",status=\"hit\"}", "get_hits"),
    ("memcached_commands_total{command=\"get\",status=\"miss\"}", "get_misses"),
    ("memcached_commands_total{command=\"delete\",status=\"hit\"}", "delete_hits"),
    ("memcached_commands_total{command=\"delete\",status=\"miss\"}", "delete_misses"),
    ("memcached_commands_total{command=\"incr\",status=\"hit\"}", "incr_hits"),
    ("memcached_commands_total{command=\"incr\",status=\"miss\"}", "incr_misses"),
    ("memcached_commands_total{command=\"decr\",status=\"hit\"}", "decr_hits"),
    ("memcached_commands_total{command=\"decr\",status=\"miss\"}", "decr_misses"),
    ("memcached_commands_total{command=\"cas\",status=\"hit\"}", "cas_hits"),
    ("memcached_commands_total{command=\"cas\",status=\"miss\"}", "cas_misses"),
    ("memcached_commands_total{command=\"cas\",status=\"badval\"}", "cas_badval"),
    ("memcached_commands_total{command=\"touch\",status=\"hit\"}", "touch_hits"),
    ("memcached_commands_total{command=\"touch\",status=\"miss\"}", "touch_misses"),
    ("memcached_commands_total{command=\"flush\",status=\"hit\"}", "cmd_flush"),
    ("memcached_commands_total{command=\"set\",status=\"hit\"}", "cmd_set-cas_misses-cas_hits-cas_badval"),
    ("memcached_uptime_seconds", "uptime"),
    ("memcached_time_seconds", "time"),
    ("memcached_process_user_cpu_seconds_total", "rusage_user"),
    ("memcached_process_system_cpu_seconds_total", "rusage_system"),
    ("memcached_current_bytes", "bytes"),
    ("memcached_limit_bytes", "limit_maxbytes"),
    ("memcached_current_items", "curr_items"),
    ("memcached_items_total", "total_items"),
    ("memcached_read_bytes_total", "bytes_read"),
    ("memcached_written_bytes_total", "bytes_written"),
    ("memcached_current_connections", "curr_connections"),
    ("memcached_connections_total", "total_connections"),
    ("memcached_connections_rejected_total", "rejected_connections"),
    ("memcached_connections_yielded_total", "conn_yields"),
    ("memcached_connections_listener_disabled_total", "listen_disabled_num"),
    ("memcached_items_evicted_total", "evictions"),
    ("memcached_items_reclaimed_total", "reclaimed"),
    ("memcached_item_too_large_total", "store_too_large"),
    ("memcached_item_no_memory_total", "store_no_memory"),
    ("memcached_lru_crawler_starts_total", "lru_crawler_starts"),
    ("memcached_direct_reclaims_total", "direct_reclaims"),
    ("memcached_lru_crawler_items_checked_total", "crawler_items_checked"),
    ("memcached_lru_crawler_reclaimed_total", "crawler_reclaimed"),
    ("memcached_lru_crawler_moves_to_cold_total", "moves_to_cold"),
    ("memcached_lru_crawler_moves_to_warm_total", "moves_to_warm"),
    ("memcached_lru_crawler_moves_within_lru_total", "moves_within_lru"),
    ("memcached_malloced_bytes", "total_malloced"),
    ("memcached_accepting_connections", "accepting_conns"),
    ("memcached_max_connections", "settings:maxconns"),
    ("memcached_lru_crawler_enabled", "=1"),
    ("memcached_lru_crawler_sleep", "settings:lru_crawler_sleep"),
    ("memcached_lru_crawler_to_crawl", "settings:lru_crawler_tocrawl"),
    ("memcached_lru_crawler_maintainer_thread", "=1"),
    ("memcached_lru_crawler_hot_percent", "settings:hot_lru_pct"),
    ("memcached_lru_crawler_warm_percent", "settings:warm_lru_pct"),
    ("memcached_lru_crawler_hot_max_factor", "settings:hot_max_factor"),
    ("memcached_lru_crawler_warm_max_factor", "settings:warm_max_factor"),
    ("memcached_slab_current_items{slab=\"1\"}", "items:1:number"),
    ("memcached_slab_items_age_seconds{slab=\"1\"}", "items:1:age"),
    ("memcached_slab_lru_hits_total{slab=\"1\",lru=\"hot\"}", "items:1:hits_to_hot"),
    ("memcached_slab_lru_hits_total{slab=\"1\",lru=\"warm\"}", "items:1:hits_to_warm"),
    ("memcached_slab_lru_hits_total{slab=\"1\",lru=\"cold\"}", "items:1:hits_to_cold"),
    ("memcached_slab_lru_hits_total{slab=\"1\",lru=\"temporary\"}", "items:1:hits_to_temp"),
    ("memcached_slab_items_crawler_reclaimed_total{slab=\"1\"}", "items:1:crawler_reclaimed"),
    ("memcached_slab_items_evicted_total{slab=\"1\"}", "items:1:evicted"),
    ("memcached_slab_items_evicted_nonzero_total{slab=\"1\"}", "items:1:evicted_nonzero"),
    ("memcached_slab_items_evicted_time_seconds{slab=\"1\"}", "items:1:evicted_time"),
    ("memcached_slab_items_evicted_unfetched_total{slab=\"1\"}", "items:1:evicted_unfetched"),
    ("memcached_slab_items_expired_unfetched_total{slab=\"1\"}", "items:1:expired_unfetched"),
    ("memcached_slab_items_outofmemory_total{slab=\"1\"}", "items:1:outofmemory"),
    ("memcached_slab_items_reclaimed_total{slab=\"1\"}", "items:1:reclaimed"),
    ("memcached_slab_items_tailrepairs_total{slab=\"1\"}", "items:1:tailrepairs"),
    ("memcached_slab_mem_requested_bytes{slab=\"1\"}", "items:1:mem_requested"),
    ("memcached_slab_items_moves_to_cold{slab=\"1\"}", "items:1:moves_to_cold"),
    ("memcached_slab_items_moves_to_warm{slab=\"1\"}", "items:1:moves_to_warm"),
    ("memcached_slab_items_moves_within_lru{slab=\"1\"}", "items:1:moves_within_lru"),
    ("memcached_slab_hot_items{slab=\"1\"}", "items:1:number_hot"),
    ("memcached_slab_warm_items{slab=\"1\"}", "items:1:number_warm"),
    ("memcached_slab_cold_items{slab=\"1\"}", "items:1:number_cold"),
    ("memcached_slab_hot_age_seconds{slab=\"1\"}", "items:1:age_hot"),
    ("memcached_slab_warm_age_seconds{slab=\"1\"}", "items:1:age_warm"),
    ("memcached_slab_commands_total{slab=\"1\",command=\"get\",status=\"hit\"}", "1:get_hits"),
    ("memcached_slab_commands_total{slab=\"1\",command=\"delete\",status=\"hit\"}", "1:delete_hits"),
    ("memcached_slab_commands_total{slab=\"1\",command=\"incr\",status=\"hit\"}", "1:incr_hits"),
    ("memcached_slab_commands_total{slab=\"1\",command=\"decr\",status=\"hit\"}", "1:decr_hits"),
    ("memcached_slab_commands_total{slab=\"1\",command=\"cas\",status=\"hit\"}", "1:cas_hits"),
    ("memcached_slab_commands_total{slab=\"1\",command=\"touch\",status=\"hit\"}", "1:touch_hits"),
    ("memcached_slab_commands_total{slab=\"1\",command=\"cas\",status=\"badval\"}", "1:cas_badval"),
    ("memcached_slab_commands_total{slab=\"1\",command=\"set\",status=\"hit\"}", "1:cmd_set-1:cas_hits-1:cas_badval"),
    ("memcached_slab_chunk_size_bytes{slab=\"1\"}", "1:chunk_size"),
    ("memcached_slab_chunks_per_page{slab=\"1\"}", "1:chunks_per_page"),
    ("memcached_slab_current_pages{slab=\"1\"}", "1:total_pages"),
    ("memcached_slab_current_chunks{slab=\"1\"}", "1:total_chunks"),
    ("memcached_slab_chunks_used{slab=\"1\"}", "1:used_chunks"),
    ("memcached_slab_chunks_free{slab=\"1\"}", "1:free_chunks"),
    ("memcached_slab_chunks_free_end{slab=\"1\"}", "1:free_chunks_end"),
];

/// Fields that move on their own between the scrape and `stats` (the clock, CPU time),
/// and `bytes_read`, which has the `stats` commands themselves in it.
const MOVING: &[&str] = &["uptime", "time", "rusage_user", "rusage_system"];

/// A cache server with `--http` beside it, on its own runtime thread.
struct Http {
    addr: SocketAddr,
    cache: TestServer,
    _runtime: tokio::runtime::Runtime,
}

fn start(config: Config) -> Http {
    let cache = spawn(config);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(larder::http::serve(listener, Arc::clone(&cache.ctx)));
    Http { addr, cache, _runtime: runtime }
}

/// The body of `GET /metrics`.
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"), "{head}");
    body.to_owned()
}

/// The body of `GET <path>`, whatever it is.
fn fetch(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

/// Under `-X` the listener shows no key, whole or prefix, as `stats` shows none: no
/// prefix series, no prefix rows on the page, hot keys by hash only.
#[test]
fn under_dump_disabled_the_listener_shows_no_key_or_prefix() {
    let config = Config { dump_enabled: false, hot_keys_sample: 1, ..Config::for_tests() };
    let h = start(config);
    let mut c = h.cache.connect();
    for _ in 0..3 {
        c.roundtrip(b"set secret:tok 0 0 1\r\nv\r\n", b"STORED\r\n");
        c.roundtrip(b"get secret:tok\r\n", b"VALUE secret:tok 0 1\r\nv\r\nEND\r\n");
    }
    c.roundtrip(b"stats detail dump\r\n", b"CLIENT_ERROR stats detail not allowed\r\n");
    let metrics = scrape(h.addr);
    let live = fetch(h.addr, "/live");
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    assert!(metrics.contains("larder_hot_key_requests{key="), "hot keys are there, hashed: {metrics}");
    for (what, body) in [("/metrics", &metrics), ("/live", &live)] {
        assert!(!body.contains("secret"), "{what} names the key or its prefix: {body}");
    }
    assert!(!metrics.contains("larder_prefix_gets_total{"), "{metrics}");
    assert!(live.contains("Key prefixes are hidden (-X)"), "{live}");
}

/// `stats <group>` as `name -> value` (`items:1:number`, `1:chunk_size`...).
fn stats(c: &mut Client, group: &str) -> HashMap<String, String> {
    c.send(format!("stats{}{group}\r\n", if group.is_empty() { "" } else { " " }).as_bytes());
    let mut out = HashMap::new();
    loop {
        let l = c.line();
        if l == "END" {
            return out;
        }
        let mut parts = l.splitn(3, ' ');
        assert_eq!(parts.next(), Some("STAT"), "{l}");
        out.insert(parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
    }
}

/// The exposition's samples by series (name and labels as written), checking the format
/// on the way: HELP then TYPE once per family, before its samples, families never
/// interleaved, counters named `_total`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut seen = Vec::<String>::new();
    let mut current: Option<(String, String)> = None; // (family, type)
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let family = rest.split(' ').next().unwrap().to_owned();
            assert!(!seen.contains(&family), "{family} described twice");
            let ty = lines.next().unwrap();
            let kind = ty.strip_prefix(&format!("# TYPE {family} ")).unwrap_or_else(|| panic!("{ty}"));
            assert!(["counter", "gauge", "untyped", "histogram"].contains(&kind), "{ty}");
            if kind == "counter" {
                assert!(family.ends_with("_total"), "counter {family} is not named _total");
            }
            seen.push(family.clone());
            current = Some((family, kind.to_owned()));
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let (family, kind) = current.as_ref().expect("a sample before any HELP");
        let base = if kind == "histogram" {
            ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name)
        } else {
            name
        };
        assert_eq!(base, family, "{line}: a sample outside its family");
        let v = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("{line}: value")),
        };
        assert!(out.insert(series.to_owned(), v).is_none(), "{series} twice");
    }
    out
}

/// The value `source` names in the reports (see [`SERIES`]).
fn expected(source: &str, reports: &HashMap<String, String>) -> f64 {
    if let Some(v) = source.strip_prefix('=') {
        return v.parse().unwrap();
    }
    let mut parts = source.split('-');
    let field = |f: &str| -> f64 {
        let v = reports.get(f).unwrap_or_else(|| panic!("no stats field {f}"));
        v.parse().unwrap_or_else(|_| panic!("{f} = {v}"))
    };
    let first = field(parts.next().unwrap());
    parts.fold(first, |acc, f| acc - field(f))
}

#[test]
fn every_series_equals_its_stats_field_read_in_the_same_instant() {
    let h = start(Config::for_tests());
    let mut c = h.cache.connect();
    // Known traffic: 4 sets, 1 flush, 4 get hits and 2 misses, 1 delete hit and 1 miss,
    // incr/decr hits and misses, a cas of each outcome, touches, and a refused value.
    c.roundtrip(b"flush_all\r\n", b"OK\r\n");
    for k in ["a", "b", "n", "gone"] {
        c.roundtrip(format!("set {k} 0 0 1\r\n1\r\n").as_bytes(), b"STORED\r\n");
    }
    c.send(b"get a b nope\r\n");
    c.expect(b"VALUE a 0 1\r\n1\r\nVALUE b 0 1\r\n1\r\nEND\r\n");
    c.roundtrip(b"get a\r\n", b"VALUE a 0 1\r\n1\r\nEND\r\n");
    c.roundtrip(b"get nope2\r\n", b"END\r\n");
    c.roundtrip(b"delete gone\r\n", b"DELETED\r\n");
    c.roundtrip(b"delete gone\r\n", b"NOT_FOUND\r\n");
    c.roundtrip(b"incr n 5\r\n", b"6\r\n");
    c.roundtrip(b"decr n 2\r\n", b"4\r\n");
    c.roundtrip(b"incr nope 1\r\n", b"NOT_FOUND\r\n");
    c.roundtrip(b"decr nope 1\r\n", b"NOT_FOUND\r\n");
    c.send(b"gets b\r\n");
    let line = c.line();
    let unique: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    c.expect(b"1\r\nEND\r\n");
    c.roundtrip(format!("cas b 0 0 1 {unique}\r\n2\r\n").as_bytes(), b"STORED\r\n");
    c.roundtrip(format!("cas b 0 0 1 {unique}\r\n3\r\n").as_bytes(), b"EXISTS\r\n");
    c.roundtrip(b"cas nope 0 0 1 1\r\n4\r\n", b"NOT_FOUND\r\n");
    c.roundtrip(b"touch a 100\r\n", b"TOUCHED\r\n");
    c.roundtrip(b"touch nope 100\r\n", b"NOT_FOUND\r\n");
    let big = h.cache.ctx.config.max_item_size + 1;
    c.send(format!("set big 0 0 {big}\r\n").as_bytes());
    c.send(&vec![b'x'; big]);
    c.send(b"\r\n");
    assert_eq!(c.line(), "SERVER_ERROR object too large for cache");

    // The scrape, then the reports, nothing in between. `stats` sees its own 7 bytes read.
    let mut r = h.cache.connect();
    // Served once, so the server has taken the connection in before the scrape.
    r.send(b"version\r\n");
    assert!(r.line().starts_with("VERSION "));
    let text = scrape(h.addr);
    let mut reports = stats(&mut r, "");
    let read_after = "stats\r\n".len() as f64;
    for group in ["settings", "items", "slabs"] {
        for (k, v) in stats(&mut r, group) {
            let k = if group == "settings" { format!("settings:{k}") } else { k };
            reports.insert(k, v);
        }
    }

    let got = samples(&text);
    let version = reports["version"].clone();
    let mut missing = Vec::new();
    for (series, source) in SERIES {
        let series = series.replace("VERSION", &version);
        let Some(&v) = got.get(&series) else {
            missing.push(series);
            continue;
        };
        let want = expected(source, &reports);
        if source == &"bytes_read" {
            assert_eq!(v + read_after, want, "{series}");
        } else if MOVING.contains(source) {
            assert!(v <= want && want - v <= 1.0, "{series}: {v} then {want}");
        } else {
            assert_eq!(v, want, "{series} from {source}");
        }
    }
    assert!(missing.is_empty(), "series not served: {missing:?}");
    let ours: Vec<_> = got.keys().filter(|s| s.starts_with("memcached_")).collect();
    let extra: Vec<_> =
        ours.iter().filter(|s| !SERIES.iter().any(|(want, _)| want.replace("VERSION", &version) == ***s)).collect();
    assert!(extra.is_empty(), "series not in the table: {extra:?}");

    // And the traffic, as the mixin's queries read it.
    let cmd = |c: &str, s: &str| got[&format!("memcached_commands_total{{command=\"{c}\",status=\"{s}\"}}")];
    assert_eq!((cmd("get", "hit"), cmd("get", "miss")), (4.0, 2.0), "a, b, a, then gets b");
    // cmd_set counts cas commands (the exporter takes them out), not refused values.
    assert_eq!((cmd("set", "hit"), cmd("flush", "hit")), (4.0, 1.0));
    assert_eq!((cmd("cas", "hit"), cmd("cas", "badval"), cmd("cas", "miss")), (1.0, 1.0, 1.0));
    assert_eq!((cmd("delete", "hit"), cmd("delete", "miss")), (1.0, 1.0));
    assert_eq!((cmd("touch", "hit"), cmd("touch", "miss")), (1.0, 1.0));
    assert_eq!(got["memcached_item_too_large_total"], 1.0);
    assert_eq!(got["memcached_current_items"], 3.0);
}

#[test]
fn an_empty_cache_has_no_slab_series_and_every_latency_histogram_is_whole() {
    let h = start(Config::for_tests());
    let got = samples(&scrape(h.addr));
    assert!(!got.keys().any(|s| s.starts_with("memcached_slab_")), "{got:?}");
    assert_eq!(got["memcached_current_items"], 0.0);
    assert_eq!(got["memcached_up"], 1.0);
    // Larder's own: every command group's histogram, `+Inf` equal to `_count`.
    for g in ["get", "set", "delete", "arith", "touch", "other"] {
        let inf = got[&format!("larder_request_duration_seconds_bucket{{command=\"{g}\",le=\"+Inf\"}}")];
        assert_eq!(inf, got[&format!("larder_request_duration_seconds_count{{command=\"{g}\"}}")]);
    }
}

/// A label value as the exposition writes it: bytes that are not UTF-8 as `\xNN`, then
/// `\`, `"` and newline escaped.
fn wire_label(bytes: &[u8]) -> String {
    let mut text = String::new();
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        chunk.invalid().iter().for_each(|b| text.push_str(&format!("\\x{b:02x}")));
    }
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The lines of a `stats` subcommand's reply, up to `END`, as bytes.
fn raw_lines(c: &mut Client, cmd: &[u8]) -> Vec<Vec<u8>> {
    c.send(cmd);
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            c.s.read_exact(&mut b).unwrap();
            line.push(b[0]);
        }
        line.truncate(line.len() - 2);
        if line == b"END" {
            return out;
        }
        out.push(line);
    }
}

#[test]
fn prefix_and_hot_key_series_equal_stats_detail_dump_and_stats_hotkeys() {
    let mut config = Config::for_tests();
    config.prefix_limit = 3;
    config.hot_keys_sample = 1;
    let h = start(config);
    let mut c = h.cache.connect();
    c.roundtrip(b"stats detail on\r\n", b"OK\r\n");
    // Prefixes with a quote and a backslash, one that is not UTF-8, one in base64 holding
    // a newline (meta protocol), and more prefixes than the limit.
    let keys: &[&[u8]] = &[b"user:1", b"user:2", b"q\"b\\s:1", b"\xff\xfe:1", b"a:1", b"b:1", b"c:1"];
    for (i, k) in keys.iter().enumerate() {
        for _ in 0..=i {
            c.send(b"set ");
            c.send(k);
            c.send(b" 0 0 1\r\nv\r\n");
            c.expect(b"STORED\r\n");
        }
        for n in 0..(keys.len() - i) * 2 {
            c.send(b"get ");
            c.send(k);
            c.send(if n % 2 == 0 { b"\r\n" as &[u8] } else { b"x\r\n" });
            let reply = c.line();
            if reply.starts_with("VALUE") {
                c.expect(b"v\r\nEND\r\n");
            }
        }
    }
    c.roundtrip(b"delete user:1\r\n", b"DELETED\r\n");
    // "new\nline:k" in base64.
    c.roundtrip(b"ms bmV3CmxpbmU6aw== 1 b\r\nv\r\n", b"HD\r\n");
    c.roundtrip(b"mg bmV3CmxpbmU6aw== b v\r\n", b"VA 1\r\nv\r\n");

    let mut r = h.cache.connect();
    let got = samples(&scrape(h.addr));
    let dump = raw_lines(&mut r, b"stats detail dump\r\n");
    let hot = raw_lines(&mut r, b"stats hotkeys\r\n");

    assert!(dump.iter().any(|l| l.starts_with(b"OTHER ")), "more prefixes than the limit");
    let mut rows = 0;
    for line in &dump {
        let (label, counts) = match line.strip_prefix(b"PREFIX ") {
            Some(rest) => {
                let at = rest.windows(5).position(|w| w == b" get ").unwrap();
                (wire_label(&rest[..at]), &rest[at + 1..])
            }
            None => ("(all others)".to_owned(), line.strip_prefix(b"OTHER ").unwrap()),
        };
        let words: Vec<&str> = std::str::from_utf8(counts).unwrap().split(' ').collect();
        for (field, name) in [("get", "gets"), ("hit", "hits"), ("set", "sets"), ("del", "deletes")] {
            let at = words.iter().position(|w| *w == field).unwrap();
            let series = format!("larder_prefix_{name}_total{{prefix=\"{label}\"}}");
            let v = got.get(&series).unwrap_or_else(|| panic!("{series} missing"));
            assert_eq!(*v, words[at + 1].parse::<f64>().unwrap(), "{series}");
        }
        rows += 1;
    }
    assert_eq!(got.keys().filter(|s| s.starts_with("larder_prefix_gets_total{")).count(), rows);
    assert!(got.contains_key("larder_prefix_gets_total{prefix=\"q\\\"b\\\\s\"}"), "{got:?}");
    assert!(got.contains_key("larder_prefix_gets_total{prefix=\"\\\\xff\\\\xfe\"}"), "{got:?}");

    assert_eq!(hot.len(), 2 * keys.len() + 1, "every key fetched is listed, missed ones too");
    for line in &hot {
        let line = line.strip_prefix(b"STAT ").unwrap();
        let at = line.iter().rposition(|&b| b == b' ').unwrap();
        let (key, count) = (&line[..at], std::str::from_utf8(&line[at + 1..]).unwrap());
        // stats hotkeys writes a key a line cannot carry in base64.
        let key = if key == b"bmV3CmxpbmU6aw==" { b"new\nline:k".to_vec() } else { key.to_vec() };
        let series = format!("larder_hot_key_requests{{key=\"{}\"}}", wire_label(&key));
        assert_eq!(got.get(&series), Some(&count.parse::<f64>().unwrap()), "{series}");
    }
    assert_eq!(got["larder_hot_key_requests{key=\"user:1\"}"], 7.0, "every fetch counted");
    assert_eq!(got["larder_hot_key_requests{key=\"new\\nline:k\"}"], 1.0);
}
