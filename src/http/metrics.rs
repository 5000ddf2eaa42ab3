//! `GET /metrics`: the Prometheus text format (version 0.0.4).
//!
//! **memcached's series** carry memcached_exporter's names, HELP texts, types and labels
//! (its `pkg/exporter/exporter.go`), so dashboards and alerts written for memcached
//! (Grafana's memcached mixin) work unchanged. They are made as the exporter makes them:
//! from the `STAT` lines of `stats`, `stats settings`, `stats items` and `stats slabs`,
//! here Larder's own reports ([`crate::exec::run`]) read once per scrape and parsed the
//! way the exporter's client parses memcached's (a `STAT` line of three words; a name
//! without `:` is global, `<class>:<name>` a slab's, `items:<class>:<name>` an item
//! class's). A counter therefore always equals the `stats` field it comes from; a field
//! `stats` does not print gives no series, as with the exporter (extstore's and the
//! proxy's, whose presence the exporter keys on `extstore_limit_maxbytes` and
//! `proxy_backend_total`, and the `lru_crawler_*` settings unless `lru_crawler` is `yes`).
//! Two departures, both in the type line only: families the exporter types `counter` but
//! names without `_total` (`memcached_uptime_seconds`, `memcached_slab_mem_requested_bytes`,
//! `memcached_slab_items_evicted_time_seconds`, `memcached_slab_items_moves_*`) are typed
//! `untyped`, so `promtool check metrics` is clean and queries by name work the same; and
//! values are printed as `stats` prints them (integers exactly, not as floats).
//!
//! **Larder's own series** are prefixed `larder_`: request latency per command group
//! ([`crate::latency`]); what each key prefix did, as `stats detail dump` counts it
//! (`larder_prefix_{gets,hits,sets,deletes}_total{prefix}`, at most `--prefix-limit`
//! prefixes and the rest together as `prefix="(all others)"`, which no text-protocol
//! key's prefix can be, as it holds a space); and the most requested keys as `stats hotkeys` estimates them
//! (`larder_hot_key_requests{key}`, at most `--hot-keys` of them; names hashed under
//! `-X`, as the page shows them).
//!
//! **Format**: each family's `# HELP` and `# TYPE` once, then all its samples; families
//! in name order. Label values escape `\`, `"` and newline, as the format asks. Keys and
//! prefixes are bytes and label values UTF-8: a byte that is not part of valid UTF-8 is
//! written `\xNN` (so `\\xNN` on the wire, `\xNN` once Prometheus has read it), valid
//! UTF-8 as it is. Two rows whose labels would then be the same (a key spelled like
//! another's escape, a base64 key's prefix spelled like the others' row) are one series with their counts added, so a scrape never holds a
//! duplicate series, which Prometheus would refuse whole.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Display, Write};

use crate::exec::{Ctx, Output};
use crate::latency::{BUCKETS_MICROS, Command};
use crate::protocol::{Request, StatsGroup};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The whole exposition.
pub fn render(ctx: &Ctx) -> String {
    let report = Report::read(ctx);
    let mut x = Exposition::default();
    let ok = memcached(&report, &mut x);
    x.sample(&UP, &[], u8::from(ok));
    latency(ctx, &mut x);
    prefixes(ctx, &mut x);
    hot_keys(ctx, &mut x);
    x.finish()
}

/// A family's type line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Untyped,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Untyped => "untyped",
            Self::Histogram => "histogram",
        }
    }
}

/// A metric family: its name, type and HELP text.
#[derive(Debug)]
struct Def {
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

const fn def(name: &'static str, kind: Kind, help: &'static str) -> Def {
    Def { name, kind, help }
}

use Kind::{Counter, Gauge, Untyped};

const UP: Def = def("memcached_up", Gauge, "Could the memcached server be reached.");
const VERSION: Def = def("memcached_version", Gauge, "The version of this memcached server.");
const COMMANDS: Def = def(
    "memcached_commands_total",
    Counter,
    "Total number of all requests broken down by command (get, set, etc.) and status.",
);
const CPU_USER: Def =
    def("memcached_process_user_cpu_seconds_total", Counter, "Accumulated user time for this process.");
const CPU_SYSTEM: Def =
    def("memcached_process_system_cpu_seconds_total", Counter, "Accumulated system time for this process.");
const MAX_CONNECTIONS: Def = def("memcached_max_connections", Gauge, "Maximum number of clients allowed.");
const LRU_HITS: Def = def("memcached_slab_lru_hits_total", Counter, "Number of get_hits to the LRU.");
const SLAB_COMMANDS: Def = def(
    "memcached_slab_commands_total",
    Counter,
    "Total number of all requests broken down by command (get, set, etc.) and status per slab.",
);
const LATENCY: Def = def(
    "larder_request_duration_seconds",
    Kind::Histogram,
    "Time from reading a request to queueing its reply, by command group.",
);

const PREFIX_COUNTS: [Def; 4] = [
    def(
        "larder_prefix_gets_total",
        Counter,
        "Fetches of keys with this prefix (stats detail dump's get), since the prefix was last counted apart.",
    ),
    def(
        "larder_prefix_hits_total",
        Counter,
        "Fetches of keys with this prefix that hit (stats detail dump's hit), since the prefix was last counted apart.",
    ),
    def(
        "larder_prefix_sets_total",
        Counter,
        "Stores of keys with this prefix (stats detail dump's set), since the prefix was last counted apart.",
    ),
    def(
        "larder_prefix_deletes_total",
        Counter,
        "Deletes of keys with this prefix (stats detail dump's del), since the prefix was last counted apart.",
    ),
];
/// The `prefix` label of the row counting the prefixes past `--prefix-limit` (the live
/// page names it so too).
pub const OTHER_PREFIXES: &str = "(all others)";
const HOT_KEY: Def = def(
    "larder_hot_key_requests",
    Gauge,
    "Estimated fetches of each of the most requested keys since the last stats reset (stats hotkeys: an overestimate by at most fetches / --hot-keys).",
);

/// `stats` fields (with `stats slabs`' global lines) and their unlabelled series.
const GENERAL: &[(&str, Def)] = &[
    ("uptime", def("memcached_uptime_seconds", Untyped, "Number of seconds since the server started.")),
    ("time", def("memcached_time_seconds", Gauge, "current UNIX time according to the server.")),
    ("bytes", def("memcached_current_bytes", Gauge, "Current number of bytes used to store items.")),
    (
        "limit_maxbytes",
        def("memcached_limit_bytes", Gauge, "Number of bytes this server is allowed to use for storage."),
    ),
    ("curr_items", def("memcached_current_items", Gauge, "Current number of items stored by this instance.")),
    (
        "total_items",
        def("memcached_items_total", Counter, "Total number of items stored during the life of this instance."),
    ),
    (
        "bytes_read",
        def("memcached_read_bytes_total", Counter, "Total number of bytes read by this server from network."),
    ),
    (
        "bytes_written",
        def("memcached_written_bytes_total", Counter, "Total number of bytes sent by this server to network."),
    ),
    ("curr_connections", def("memcached_current_connections", Gauge, "Current number of open connections.")),
    (
        "total_connections",
        def(
            "memcached_connections_total",
            Counter,
            "Total number of connections opened since the server started running.",
        ),
    ),
    (
        "rejected_connections",
        def(
            "memcached_connections_rejected_total",
            Counter,
            "Total number of connections rejected due to hitting the memcached's -c limit in maxconns_fast mode.",
        ),
    ),
    (
        "conn_yields",
        def(
            "memcached_connections_yielded_total",
            Counter,
            "Total number of connections yielded running due to hitting the memcached's -R limit.",
        ),
    ),
    (
        "listen_disabled_num",
        def(
            "memcached_connections_listener_disabled_total",
            Counter,
            "Number of times that memcached has hit its connections limit and disabled its listener.",
        ),
    ),
    (
        "evictions",
        def(
            "memcached_items_evicted_total",
            Counter,
            "Total number of valid items removed from cache to free memory for new items.",
        ),
    ),
    (
        "reclaimed",
        def(
            "memcached_items_reclaimed_total",
            Counter,
            "Total number of times an entry was stored using memory from an expired entry.",
        ),
    ),
    (
        "store_too_large",
        def(
            "memcached_item_too_large_total",
            Counter,
            "The number of times an item exceeded the max-item-size when being stored.",
        ),
    ),
    (
        "store_no_memory",
        def(
            "memcached_item_no_memory_total",
            Counter,
            "The number of times an item could not be stored due to no more memory.",
        ),
    ),
    ("lru_crawler_starts", def("memcached_lru_crawler_starts_total", Counter, "Times an LRU crawler was started.")),
    (
        "direct_reclaims",
        def("memcached_direct_reclaims_total", Counter, "Times worker threads had to directly reclaim or evict items."),
    ),
    (
        "crawler_items_checked",
        def("memcached_lru_crawler_items_checked_total", Counter, "Total items examined by LRU Crawler."),
    ),
    ("crawler_reclaimed", def("memcached_lru_crawler_reclaimed_total", Counter, "Total items freed by LRU Crawler.")),
    (
        "moves_to_cold",
        def(
            "memcached_lru_crawler_moves_to_cold_total",
            Counter,
            "Total number of items moved from HOT/WARM to COLD LRU's.",
        ),
    ),
    (
        "moves_to_warm",
        def("memcached_lru_crawler_moves_to_warm_total", Counter, "Total number of items moved from COLD to WARM LRU."),
    ),
    (
        "moves_within_lru",
        def(
            "memcached_lru_crawler_moves_within_lru_total",
            Counter,
            "Total number of items reshuffled within HOT or WARM LRU's.",
        ),
    ),
    ("total_malloced", def("memcached_malloced_bytes", Gauge, "Number of bytes of memory allocated to slab pages.")),
    (
        "accepting_conns",
        def("memcached_accepting_connections", Gauge, "The Memcached server is currently accepting new connections."),
    ),
];

/// `stats settings` fields shown while `lru_crawler` is `yes`; `true` for a yes/no field.
const LRU_SETTINGS: &[(&str, bool, Def)] = &[
    ("lru_crawler", true, def("memcached_lru_crawler_enabled", Gauge, "Whether the LRU crawler is enabled.")),
    (
        "lru_crawler_sleep",
        false,
        def("memcached_lru_crawler_sleep", Gauge, "Microseconds to sleep between LRU crawls."),
    ),
    (
        "lru_crawler_tocrawl",
        false,
        def("memcached_lru_crawler_to_crawl", Gauge, "Max items to crawl per slab per run."),
    ),
    (
        "lru_maintainer_thread",
        true,
        def("memcached_lru_crawler_maintainer_thread", Gauge, "Split LRU mode and background threads."),
    ),
    (
        "hot_lru_pct",
        false,
        def("memcached_lru_crawler_hot_percent", Gauge, "Percent of slab memory reserved for HOT LRU."),
    ),
    (
        "warm_lru_pct",
        false,
        def("memcached_lru_crawler_warm_percent", Gauge, "Percent of slab memory reserved for WARM LRU."),
    ),
    (
        "hot_max_factor",
        false,
        def("memcached_lru_crawler_hot_max_factor", Gauge, "Set idle age of HOT LRU to COLD age * this"),
    ),
    (
        "warm_max_factor",
        false,
        def("memcached_lru_crawler_warm_max_factor", Gauge, "Set idle age of WARM LRU to COLD age * this"),
    ),
];

/// `stats items` fields of a class and their `{slab}` series.
const ITEMS: &[(&str, Def)] = &[
    ("number", def("memcached_slab_current_items", Gauge, "Number of items currently stored in this slab class.")),
    (
        "age",
        def("memcached_slab_items_age_seconds", Gauge, "Number of seconds the oldest item has been in the slab class."),
    ),
    (
        "crawler_reclaimed",
        def("memcached_slab_items_crawler_reclaimed_total", Counter, "Number of items freed by the LRU Crawler."),
    ),
    (
        "evicted",
        def(
            "memcached_slab_items_evicted_total",
            Counter,
            "Total number of times an item had to be evicted from the LRU before it expired.",
        ),
    ),
    (
        "evicted_nonzero",
        def(
            "memcached_slab_items_evicted_nonzero_total",
            Counter,
            "Total number of times an item which had an explicit expire time set had to be evicted from the LRU before it expired.",
        ),
    ),
    (
        "evicted_time",
        def(
            "memcached_slab_items_evicted_time_seconds",
            Untyped,
            "Seconds since the last access for the most recent item evicted from this class.",
        ),
    ),
    (
        "evicted_unfetched",
        def("memcached_slab_items_evicted_unfetched_total", Counter, "Total nmber of items evicted and never fetched."),
    ),
    (
        "expired_unfetched",
        def(
            "memcached_slab_items_expired_unfetched_total",
            Counter,
            "Total number of valid items evicted from the LRU which were never touched after being set.",
        ),
    ),
    (
        "outofmemory",
        def(
            "memcached_slab_items_outofmemory_total",
            Counter,
            "Total number of items for this slab class that have triggered an out of memory error.",
        ),
    ),
    ("reclaimed", def("memcached_slab_items_reclaimed_total", Counter, "Total number of items reclaimed.")),
    (
        "tailrepairs",
        def(
            "memcached_slab_items_tailrepairs_total",
            Counter,
            "Total number of times the entries for a particular ID need repairing.",
        ),
    ),
    (
        "mem_requested",
        def(
            "memcached_slab_mem_requested_bytes",
            Untyped,
            "Number of bytes of memory actual items take up within a slab.",
        ),
    ),
    (
        "moves_to_cold",
        def("memcached_slab_items_moves_to_cold", Untyped, "Number of items moved from HOT or WARM into COLD."),
    ),
    ("moves_to_warm", def("memcached_slab_items_moves_to_warm", Untyped, "Number of items moves from COLD into WARM.")),
    (
        "moves_within_lru",
        def(
            "memcached_slab_items_moves_within_lru",
            Untyped,
            "Number of times active items were bumped within HOT or WARM.",
        ),
    ),
    ("number_hot", def("memcached_slab_hot_items", Gauge, "Number of items presently stored in the HOT LRU.")),
    ("number_warm", def("memcached_slab_warm_items", Gauge, "Number of items presently stored in the WARM LRU.")),
    ("number_cold", def("memcached_slab_cold_items", Gauge, "Number of items presently stored in the COLD LRU.")),
    (
        "number_temp",
        def("memcached_slab_temporary_items", Gauge, "Number of items presently stored in the TEMPORARY LRU."),
    ),
    ("age_hot", def("memcached_slab_hot_age_seconds", Gauge, "Age of the oldest item in HOT LRU.")),
    // The exporter's HELP text, as it is.
    ("age_warm", def("memcached_slab_warm_age_seconds", Gauge, "Age of the oldest item in HOT LRU.")),
];

/// `stats items`' `hits_to_*` fields and their `lru` label.
const LRUS: [(&str, &str); 4] =
    [("hits_to_hot", "hot"), ("hits_to_warm", "warm"), ("hits_to_cold", "cold"), ("hits_to_temp", "temporary")];

/// `stats slabs` fields of a class and their `{slab}` series.
const SLABS: &[(&str, Def)] = &[
    (
        "chunk_size",
        def(
            "memcached_slab_chunk_size_bytes",
            Gauge,
            "Number of bytes allocated to each chunk within this slab class.",
        ),
    ),
    (
        "chunks_per_page",
        def("memcached_slab_chunks_per_page", Gauge, "Number of chunks within a single page for this slab class."),
    ),
    ("total_pages", def("memcached_slab_current_pages", Gauge, "Number of pages allocated to this slab class.")),
    ("total_chunks", def("memcached_slab_current_chunks", Gauge, "Number of chunks allocated to this slab class.")),
    ("used_chunks", def("memcached_slab_chunks_used", Gauge, "Number of chunks allocated to an item.")),
    ("free_chunks", def("memcached_slab_chunks_free", Gauge, "Number of chunks not yet allocated items.")),
    (
        "free_chunks_end",
        def("memcached_slab_chunks_free_end", Gauge, "Number of free chunks at the end of the last allocated page."),
    ),
];

/// Commands with `<op>_hits` and `<op>_misses` fields, in the exporter's order.
const OPS: [&str; 6] = ["get", "delete", "incr", "decr", "cas", "touch"];

/// The `memcached_*` series from `report`; false if a field did not parse (the exporter
/// then reports `memcached_up 0`).
fn memcached(report: &Report, x: &mut Exposition) -> bool {
    let mut ok = true;
    let g = &report.general;
    if let Some(v) = g.get("version") {
        x.sample(&VERSION, &[("version", v)], 1);
    }
    for op in OPS {
        ok &= x.field(&COMMANDS, &[("command", op), ("status", "hit")], g, &format!("{op}_hits"));
        ok &= x.field(&COMMANDS, &[("command", op), ("status", "miss")], g, &format!("{op}_misses"));
    }
    ok &= x.field(&COMMANDS, &[("command", "cas"), ("status", "badval")], g, "cas_badval");
    ok &= x.field(&COMMANDS, &[("command", "flush"), ("status", "hit")], g, "cmd_flush");
    // memcached counts cas commands in cmd_set too; the exporter takes them out.
    match difference(g, "cmd_set", &["cas_misses", "cas_hits", "cas_badval"]) {
        Ok(Some(sets)) => x.sample(&COMMANDS, &[("command", "set"), ("status", "hit")], sets),
        Ok(None) => {}
        Err(()) => ok = false,
    }
    for (field, d) in GENERAL {
        ok &= x.field(d, &[], g, field);
    }
    for (field, d) in [("rusage_user", &CPU_USER), ("rusage_system", &CPU_SYSTEM)] {
        match g.get(field).map(|v| timeval(v)) {
            Some(Some(secs)) => x.sample(d, &[], Num::Float(secs)),
            Some(None) => ok = false,
            None => {}
        }
    }

    let s = &report.settings;
    ok &= x.field(&MAX_CONNECTIONS, &[], s, "maxconns");
    if s.get("lru_crawler").map(String::as_str) == Some("yes") {
        for (field, boolean, d) in LRU_SETTINGS {
            match (s.get(*field).map(String::as_str), boolean) {
                (None, _) => {}
                (Some("yes"), true) => x.sample(d, &[], 1),
                (Some("no"), true) => x.sample(d, &[], 0),
                (Some(_), true) => ok = false,
                (Some(_), false) => ok &= x.field(d, &[], s, field),
            }
        }
    }

    for (class, fields) in &report.items {
        let slab = class.to_string();
        ok &= x.field(&ITEMS[0].1, &[("slab", &slab)], fields, "number");
        ok &= x.field(&ITEMS[1].1, &[("slab", &slab)], fields, "age");
        for (field, lru) in LRUS {
            ok &= x.field(&LRU_HITS, &[("slab", &slab), ("lru", lru)], fields, field);
        }
        for (field, d) in &ITEMS[2..] {
            ok &= x.field(d, &[("slab", &slab)], fields, field);
        }
    }
    for (class, fields) in &report.slabs {
        let slab = class.to_string();
        for op in OPS {
            ok &= x.field(
                &SLAB_COMMANDS,
                &[("slab", &slab), ("command", op), ("status", "hit")],
                fields,
                &format!("{op}_hits"),
            );
        }
        ok &=
            x.field(&SLAB_COMMANDS, &[("slab", &slab), ("command", "cas"), ("status", "badval")], fields, "cas_badval");
        // Per class, memcached has no cas_misses (a miss finds no class).
        match difference(fields, "cmd_set", &["cas_hits", "cas_badval"]) {
            Ok(Some(sets)) => x.sample(&SLAB_COMMANDS, &[("slab", &slab), ("command", "set"), ("status", "hit")], sets),
            Ok(None) => {}
            Err(()) => ok = false,
        }
        for (field, d) in SLABS {
            ok &= x.field(d, &[("slab", &slab)], fields, field);
        }
    }
    ok
}

/// `fields[from]` less the sum of `fields[less]`: `Ok(None)` if one is missing, `Err` if
/// one does not parse.
fn difference(fields: &HashMap<String, String>, from: &str, less: &[&str]) -> Result<Option<Num>, ()> {
    let Some(total) = fields.get(from) else { return Ok(None) };
    let mut n = Num::parse(total).ok_or(())?;
    for field in less {
        let Some(v) = fields.get(*field) else { return Ok(None) };
        n = n.minus(Num::parse(v).ok_or(())?);
    }
    Ok(Some(n))
}

/// A `seconds.micros` field (`rusage_user`) in seconds.
fn timeval(v: &str) -> Option<f64> {
    let (secs, micros) = v.split_once('.')?;
    Some(secs.parse::<f64>().ok()? + micros.parse::<f64>().ok()? / 1e6)
}

/// `larder_request_duration_seconds{command}`: see [`crate::latency`].
fn latency(ctx: &Ctx, x: &mut Exposition) {
    for c in Command::ALL {
        let s = ctx.latency.summary(c);
        let label = c.label();
        for (bound, n) in BUCKETS_MICROS.iter().zip(&s.cumulative) {
            let le = Num::Float(*bound as f64 / 1e6).to_string();
            x.sample_as(&LATENCY, "_bucket", &[("command", label), ("le", &le)], n);
        }
        let total = s.cumulative[BUCKETS_MICROS.len()];
        x.sample_as(&LATENCY, "_bucket", &[("command", label), ("le", "+Inf")], total);
        x.sample_as(&LATENCY, "_sum", &[("command", label)], Num::Float(s.sum.as_secs_f64()));
        x.sample_as(&LATENCY, "_count", &[("command", label)], total);
    }
}

/// `larder_prefix_*_total{prefix}`: the rows of `stats detail dump`; none under `-X`,
/// which refuses that dump.
fn prefixes(ctx: &Ctx, x: &mut Exposition) {
    if !ctx.config.dump_enabled {
        return;
    }
    let mut rows = Rows::default();
    for r in ctx.stats.prefixes.snapshot() {
        let label = if r.other { OTHER_PREFIXES.into() } else { label_text(&r.prefix) };
        rows.add(label, r.counts());
    }
    for (prefix, counts) in rows.0 {
        for (d, n) in PREFIX_COUNTS.iter().zip(counts) {
            x.sample(d, &[("prefix", &prefix)], n);
        }
    }
}

/// `larder_hot_key_requests{key}`: the rows of `stats hotkeys`.
fn hot_keys(ctx: &Ctx, x: &mut Exposition) {
    let hot = &ctx.stats.hot_keys;
    let mut rows = Rows::default();
    for k in hot.top(hot.capacity()) {
        rows.add(label_text(&k.key), [k.count]);
    }
    for (key, [n]) in rows.0 {
        x.sample(&HOT_KEY, &[("key", &key)], n);
    }
}

/// Rows by label, in the order first seen; a label seen again adds its counts.
#[derive(Debug)]
struct Rows<const N: usize>(Vec<(String, [u64; N])>, HashMap<String, usize>);

impl<const N: usize> Default for Rows<N> {
    fn default() -> Self {
        Self(Vec::new(), HashMap::new())
    }
}

impl<const N: usize> Rows<N> {
    fn add(&mut self, label: String, counts: [u64; N]) {
        match self.1.get(&label) {
            Some(&i) => self.0[i].1.iter_mut().zip(counts).for_each(|(c, n)| *c += n),
            None => {
                self.1.insert(label.clone(), self.0.len());
                self.0.push((label, counts));
            }
        }
    }
}

/// Bytes as a label value: valid UTF-8 as it is, other bytes as `\xNN`.
fn label_text(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        s.push_str(chunk.valid());
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}

/// The `STAT` lines of one scrape's reports, split as memcached_exporter's client splits
/// memcached's.
#[derive(Debug, Default)]
struct Report {
    /// `stats`, with the global lines of `stats slabs` (`total_malloced`).
    general: HashMap<String, String>,
    settings: HashMap<String, String>,
    /// `stats items`, by class.
    items: BTreeMap<u32, HashMap<String, String>>,
    /// `stats slabs`, by class.
    slabs: BTreeMap<u32, HashMap<String, String>>,
}

impl Report {
    fn read(ctx: &Ctx) -> Self {
        let mut r = Self::default();
        for group in [StatsGroup::General, StatsGroup::Slabs, StatsGroup::Items] {
            for (name, value) in stat_lines(&stats(ctx, group)) {
                let parts: Vec<&str> = name.split(':').collect();
                let class = |s: &str| s.parse::<u32>().ok();
                match parts[..] {
                    [_] => {
                        r.general.insert(name.to_owned(), value.to_owned());
                    }
                    [c, field] => {
                        if let Some(c) = class(c) {
                            r.slabs.entry(c).or_default().insert(field.to_owned(), value.to_owned());
                        }
                    }
                    [_, c, field] => {
                        if let Some(c) = class(c) {
                            r.items.entry(c).or_default().insert(field.to_owned(), value.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        }
        let settings = stats(ctx, StatsGroup::Settings);
        r.settings = stat_lines(&settings).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        r
    }
}

/// The reply to `stats <group>`, as a client would read it.
fn stats(ctx: &Ctx, group: StatsGroup) -> String {
    let mut out = Output::new(bytes::BytesMut::new());
    crate::exec::run(ctx, Request::Stats { group }, &mut out);
    String::from_utf8_lossy(&out.into_flat()).into_owned()
}

/// (name, value) of each `STAT <name> <value>` line (lines of other shapes are skipped).
fn stat_lines(reply: &str) -> impl Iterator<Item = (&str, &str)> {
    reply.split("\r\n").filter_map(|line| match line.split(' ').collect::<Vec<_>>()[..] {
        ["STAT", name, value] => Some((name, value.trim())),
        _ => None,
    })
}

/// A sample's value: an integer exactly as `stats` printed it, or a float.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    /// A `stats` value, as the exporter reads it (`strconv.ParseFloat`).
    fn parse(v: &str) -> Option<Self> {
        if let Ok(n) = v.parse::<i128>() {
            return Some(Self::Int(n));
        }
        v.parse::<f64>().ok().map(Self::Float)
    }

    fn minus(self, o: Self) -> Self {
        match (self, o) {
            (Self::Int(a), Self::Int(b)) => Self::Int(a - b),
            (a, b) => Self::Float(a.float() - b.float()),
        }
    }

    fn float(self) -> f64 {
        match self {
            Self::Int(n) => n as f64,
            Self::Float(f) => f,
        }
    }
}

impl Display for Num {
    /// As Prometheus parses it: `NaN`, `+Inf`, `-Inf`, else decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Float(v) if v.is_nan() => f.write_str("NaN"),
            Self::Float(v) if v.is_infinite() => f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" }),
            Self::Float(v) => write!(f, "{v}"),
        }
    }
}

/// The families being written, by name; each family's samples in the order given.
#[derive(Debug, Default)]
struct Exposition {
    families: BTreeMap<&'static str, (&'static Def, String)>,
}

impl Exposition {
    /// A sample of family `d`.
    fn sample(&mut self, d: &'static Def, labels: &[(&str, &str)], value: impl Display) {
        self.sample_as(d, "", labels, value);
    }

    /// A sample named the family's name and `suffix` (`_bucket`, `_sum`, `_count`).
    fn sample_as(&mut self, d: &'static Def, suffix: &str, labels: &[(&str, &str)], value: impl Display) {
        let (known, lines) = self.families.entry(d.name).or_insert_with(|| (d, String::new()));
        debug_assert!(std::ptr::eq(*known, d) || (known.kind == d.kind && known.help == d.help));
        lines.push_str(d.name);
        lines.push_str(suffix);
        if !labels.is_empty() {
            lines.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    lines.push(',');
                }
                lines.push_str(name);
                lines.push_str("=\"");
                escape_label(value, lines);
                lines.push('"');
            }
            lines.push('}');
        }
        let _ = writeln!(lines, " {value}");
    }

    /// A sample of `fields[field]`, if it is there: false if it does not parse.
    fn field(
        &mut self,
        d: &'static Def,
        labels: &[(&str, &str)],
        fields: &HashMap<String, String>,
        field: &str,
    ) -> bool {
        match fields.get(field).map(|v| Num::parse(v)) {
            None => true,
            Some(Some(n)) => {
                self.sample(d, labels, n);
                true
            }
            Some(None) => false,
        }
    }

    fn finish(self) -> String {
        let mut out = String::with_capacity(32 * 1024);
        for (name, (d, lines)) in self.families {
            out.push_str("# HELP ");
            out.push_str(name);
            out.push(' ');
            escape_help(d.help, &mut out);
            out.push_str("\n# TYPE ");
            out.push_str(name);
            out.push(' ');
            out.push_str(d.kind.as_str());
            out.push('\n');
            out.push_str(&lines);
        }
        out
    }
}

/// A label value as the text format writes it: `\`, `"` and newline escaped.
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A HELP text as the text format writes it: `\` and newline escaped.
fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut s = String::new();
        escape_label("a\\b\"c\nd é", &mut s);
        assert_eq!(s, "a\\\\b\\\"c\\nd é");
        let mut h = String::new();
        escape_help("a\\b\"c\nd", &mut h);
        assert_eq!(h, "a\\\\b\"c\\nd");
    }

    #[test]
    fn key_bytes_become_label_text_and_a_shared_label_adds_up() {
        assert_eq!(label_text(b"user:\xff\xfe:\"x\"\\"), "user:\\xff\\xfe:\"x\"\\");
        assert_eq!(label_text("é:1".as_bytes()), "é:1");
        let mut rows = Rows::default();
        rows.add(label_text(b"\xff"), [1, 2]);
        rows.add(label_text(b"a"), [5, 5]);
        rows.add(label_text(b"\\xff"), [3, 4]);
        assert_eq!(rows.0, [("\\xff".to_owned(), [4, 6]), ("a".to_owned(), [5, 5])]);
    }

    #[test]
    fn values_print_as_prometheus_parses_them() {
        let shown: Vec<String> =
            ["18446744073709551615", "0.20", "7", "-3"].iter().map(|v| Num::parse(v).unwrap().to_string()).collect();
        assert_eq!(shown, ["18446744073709551615", "0.2", "7", "-3"]);
        assert_eq!(Num::Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Num::Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Num::Float(1e-5).to_string(), "0.00001");
        assert_eq!(timeval("1.000250"), Some(1.00025));
        assert_eq!(timeval("12"), None);
    }

    #[test]
    fn families_are_written_once_in_name_order_with_all_their_samples() {
        const A: Def = def("b_total", Counter, "B.");
        const B: Def = def("a", Gauge, "A\nline.");
        let mut x = Exposition::default();
        x.sample(&A, &[("k", "1")], 1);
        x.sample(&B, &[], 2);
        x.sample(&A, &[("k", "2")], Num::Int(3));
        assert_eq!(
            x.finish(),
            "# HELP a A\\nline.\n# TYPE a gauge\na 2\n# HELP b_total B.\n# TYPE b_total counter\nb_total{k=\"1\"} 1\nb_total{k=\"2\"} 3\n"
        );
    }

    #[test]
    fn stat_lines_split_as_the_exporter_splits_them() {
        let reply = "STAT pid 1\r\nSTAT items:1:number 4\r\nSTAT 1:chunk_size 96\r\nSTAT odd two words\r\nEND\r\n";
        let lines: Vec<_> = stat_lines(reply).collect();
        assert_eq!(lines, [("pid", "1"), ("items:1:number", "4"), ("1:chunk_size", "96")]);
        let mut fields = HashMap::new();
        fields.insert("cmd_set".to_owned(), "10".to_owned());
        fields.insert("cas_hits".to_owned(), "3".to_owned());
        assert_eq!(difference(&fields, "cmd_set", &["cas_hits"]).unwrap().unwrap().to_string(), "7");
        assert!(difference(&fields, "cmd_set", &["cas_badval"]).unwrap().is_none());
    }
}
