//! Per-prefix counters behind `stats detail on|off|dump` (and the HTTP side's prefix
//! table, through [`PrefixStats::snapshot`]).
//!
//! **The rule** ([`PrefixRule`]): a key's prefix is what precedes its `segments`-th
//! delimiter (`-D`, `:` by default; `--prefix-segments`, 1 by default). With 1 this is
//! memcached's rule exactly: what precedes the first delimiter, keys without one not
//! counted. With more, Django's `<KEY_PREFIX>:<version>:<key>` splits by what the
//! application puts in front of its own keys: `:1:user:42` is `:1:user` with 3 segments.
//! A key with fewer delimiters than `segments` (but at least one) counts under what
//! precedes its *last* delimiter, the longest prefix it has (`:1:homepage` is `:1`), so
//! every key memcached would count is still counted once; a key without the delimiter is
//! not counted, as in memcached. A key is read up to its first NUL byte, as memcached
//! reads it.
//!
//! **Bounded cardinality**: at most `--prefix-limit` rows (100 by default) are listed;
//! what the rest did is counted in one "other" row, so every recorded event is in exactly
//! one row (totals are conserved). Each worker thread keeps its own table of at most
//! `2 * limit` prefixes, run as Space-Saving over prefixes: a prefix not in a full table
//! takes the place of the one with the least weight, whose counts move to the thread's
//! "other" row, and starts from that one's weight plus one. So a newcomer is not pushed
//! out by the next newcomer before it has had a chance (a prefix that becomes busy gets
//! in and stays), and a prefix with more than `1 / (2 * limit)` of a thread's events
//! since the last `stats reset` is never evicted. The weight (events plus what was
//! inherited) only decides evictions; the counts a row shows are exact since the prefix
//! last entered the table. Readers merge the threads' tables, list the `limit` prefixes
//! with the most events (gets, sets and deletes) and fold the rest into "other".
//!
//! **Order**: `dump` lists prefixes as memcached does: by memcached's 256 hash buckets
//! (MurmurHash3 of the prefix), the newest prefix first within a bucket (newest: first
//! seen latest, by a sequence number taken when a prefix enters a table; its oldest entry
//! across threads counts), "other" last. With fewer prefixes than the limit and
//! `--prefix-segments 1`, `stats detail dump` is byte for byte memcached's.
//!
//! **Cost**: one relaxed load per request while off (memcached's default, until `stats
//! detail on` or `-D`); while on, a lock of the calling thread's own table (uncontended:
//! only readers share it) and a hash lookup. The shared sequence counter is written only
//! when a prefix enters a table.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use hashbrown::HashMap;

use crate::per_worker::PerWorker;

/// `--prefix-limit`'s default: enough rows for the parts of an application a person reads
/// in one table, and few enough series (four a prefix) for a Prometheus scrape.
pub const DEFAULT_LIMIT: usize = 100;

/// How a key's prefix is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixRule {
    /// `-D`: the byte between segments.
    pub delimiter: u8,
    /// `--prefix-segments`: how many segments form a prefix (at least 1).
    pub segments: usize,
}

impl Default for PrefixRule {
    fn default() -> Self {
        Self { delimiter: b':', segments: 1 }
    }
}

impl PrefixRule {
    /// `key`'s prefix: what precedes its `segments`-th delimiter, or its last one if it has
    /// fewer; `None` for a key without the delimiter (before any NUL byte).
    pub fn prefix<'k>(&self, key: &'k [u8]) -> Option<&'k [u8]> {
        let key = &key[..memchr::memchr(0, key).unwrap_or(key.len())];
        let end = memchr::memchr_iter(self.delimiter, key).take(self.segments.max(1)).last()?;
        Some(&key[..end])
    }
}

/// What a request did to a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixEvent {
    Get { hit: bool },
    Set,
    Delete,
}

/// A row of counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub gets: u64,
    pub hits: u64,
    pub sets: u64,
    pub deletes: u64,
}

impl Counts {
    fn add(&mut self, o: &Self) {
        self.gets += o.gets;
        self.hits += o.hits;
        self.sets += o.sets;
        self.deletes += o.deletes;
    }

    fn count(&mut self, event: PrefixEvent) {
        match event {
            PrefixEvent::Get { hit } => {
                self.gets += 1;
                self.hits += u64::from(hit);
            }
            PrefixEvent::Set => self.sets += 1,
            PrefixEvent::Delete => self.deletes += 1,
        }
    }

    fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

/// A row of [`PrefixStats::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRow {
    /// The prefix; empty for the "other" row (an empty prefix is a real one too: Django's
    /// default `KEY_PREFIX`, so tell them apart by `other`).
    pub prefix: Vec<u8>,
    /// The row counting every prefix past the limit.
    pub other: bool,
    pub gets: u64,
    pub hits: u64,
    pub sets: u64,
    pub deletes: u64,
}

impl PrefixRow {
    fn new(prefix: Vec<u8>, other: bool, c: Counts) -> Self {
        Self { prefix, other, gets: c.gets, hits: c.hits, sets: c.sets, deletes: c.deletes }
    }

    /// gets, hits, sets, deletes: the numbers of a `stats detail dump` line.
    pub fn counts(&self) -> [u64; 4] {
        [self.gets, self.hits, self.sets, self.deletes]
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    counts: Counts,
    /// Events counted since the prefix entered, plus what it inherited then: ranks only.
    weight: u64,
    /// When it entered (from [`PrefixStats::seq`]): orders `dump`.
    seq: u64,
}

/// One thread's table.
#[derive(Debug, Default)]
struct Table {
    rows: HashMap<Box<[u8]>, Entry>,
    other: Counts,
}

/// Per-prefix counters, a table per worker thread.
#[derive(Debug)]
pub struct PrefixStats {
    enabled: AtomicBool,
    rule: PrefixRule,
    limit: usize,
    /// Taken when a prefix enters a table: newer prefixes have larger numbers.
    seq: AtomicU64,
    tables: PerWorker<Mutex<Table>>,
}

const PREFIX_BUCKETS: u32 = 256;

impl Default for PrefixStats {
    fn default() -> Self {
        Self::new(PrefixRule::default(), DEFAULT_LIMIT, false)
    }
}

impl PrefixStats {
    /// Counting by `rule`, at most `limit` prefixes (at least 1), on from the start if
    /// `enabled`.
    pub fn new(rule: PrefixRule, limit: usize, enabled: bool) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            rule,
            limit: limit.max(1),
            seq: AtomicU64::new(0),
            tables: PerWorker::default(),
        }
    }

    pub fn rule(&self) -> PrefixRule {
        self.rule
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Relaxed);
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Counts `event` for `key`'s prefix, if recording is on and the key has one.
    #[inline]
    pub fn record(&self, key: &[u8], event: PrefixEvent) {
        if self.enabled() {
            self.record_on(key, event);
        }
    }

    fn record_on(&self, key: &[u8], event: PrefixEvent) {
        let Some(prefix) = self.rule.prefix(key) else { return };
        let mut t = self.tables.local().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = t.rows.get_mut(prefix) {
            e.counts.count(event);
            e.weight += 1;
            return;
        }
        let mut weight = 0;
        if t.rows.len() >= 2 * self.limit {
            // Space-Saving: the least busy leaves for "other"; the newcomer starts from its
            // weight. Ties go to the newest, so that long-standing prefixes stay.
            let (victim, e) = t.rows.iter().min_by_key(|(_, e)| (e.weight, std::cmp::Reverse(e.seq))).expect("full");
            let (victim, e) = (victim.clone(), *e);
            t.rows.remove(&victim);
            t.other.add(&e.counts);
            weight = e.weight;
        }
        let mut counts = Counts::default();
        counts.count(event);
        let seq = self.seq.fetch_add(1, Relaxed);
        t.rows.insert(prefix.into(), Entry { counts, weight: weight + 1, seq });
    }

    /// Every thread's table merged: the `limit` heaviest prefixes in the order memcached's
    /// `stats detail dump` lists them, then the "other" row if anything was counted there.
    pub fn snapshot(&self) -> Vec<PrefixRow> {
        let mut merged: HashMap<Vec<u8>, Entry> = HashMap::new();
        let mut other = Counts::default();
        for t in self.tables.iter() {
            let t = t.lock().unwrap_or_else(|p| p.into_inner());
            other.add(&t.other);
            for (prefix, e) in &t.rows {
                let m =
                    merged.entry_ref(&prefix[..]).or_insert(Entry { counts: Counts::default(), weight: 0, seq: e.seq });
                m.counts.add(&e.counts);
                m.weight += e.weight;
                m.seq = m.seq.min(e.seq);
            }
        }
        let mut rows: Vec<(Vec<u8>, Entry)> = merged.into_iter().collect();
        if rows.len() > self.limit {
            let events = |c: &Counts| c.gets + c.sets + c.deletes;
            rows.sort_unstable_by_key(|(_, e)| (std::cmp::Reverse(events(&e.counts)), e.seq));
            for (_, e) in rows.drain(self.limit..) {
                other.add(&e.counts);
            }
        }
        rows.sort_unstable_by_key(|(p, e)| (murmur3_32(p) % PREFIX_BUCKETS, std::cmp::Reverse(e.seq)));
        let mut out: Vec<PrefixRow> = rows.into_iter().map(|(p, e)| PrefixRow::new(p, false, e.counts)).collect();
        if !other.is_zero() {
            out.push(PrefixRow::new(Vec::new(), true, other));
        }
        out
    }

    /// `stats reset` forgets prefixes too.
    pub fn clear(&self) {
        for t in self.tables.iter() {
            *t.lock().unwrap_or_else(|p| p.into_inner()) = Table::default();
        }
    }
}

/// MurmurHash3 x86 32-bit with seed 0: memcached's default hash, used here only to order
/// `stats detail dump` as memcached does.
fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h: u32 = 0;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    let mut k: u32 = 0;
    for (i, &b) in tail.iter().enumerate() {
        k ^= u32::from(b) << (8 * i);
    }
    if !tail.is_empty() {
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(delimiter: u8, segments: usize) -> PrefixRule {
        PrefixRule { delimiter, segments }
    }

    #[test]
    fn murmur3_reference_values() {
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(murmur3_32(b"The quick brown fox jumps over the lazy dog"), 0x2e4f_f723);
    }

    /// Delimiter, segments, key, prefix.
    type Case = (u8, usize, &'static [u8], Option<&'static [u8]>);

    #[test]
    fn the_prefix_rule() {
        let cases: &[Case] = &[
            // memcached's rule: what precedes the first delimiter.
            (b':', 1, b"user:42", Some(b"user")),
            (b':', 1, b"a:b:c", Some(b"a")),
            (b':', 1, b"nodelim", None),
            (b':', 1, b":1:user:42", Some(b"")),
            (b':', 1, b"", None),
            (b':', 1, b":", Some(b"")),
            // Django's <KEY_PREFIX>:<version>:<key>, three segments.
            (b':', 3, b":1:user:42", Some(b":1:user")),
            (b':', 3, b"site:1:views.page:abc", Some(b"site:1:views.page")),
            (b':', 2, b":1:user:42", Some(b":1")),
            // Fewer delimiters than segments: the longest prefix the key has.
            (b':', 3, b":1:homepage", Some(b":1")),
            (b':', 3, b"a:b", Some(b"a")),
            (b':', 5, b"nodelim", None),
            // Empty segments count as segments.
            (b':', 2, b"a::b", Some(b"a:")),
            (b':', 3, b"::::", Some(b"::")),
            // Other delimiters; the key is read up to a NUL, as memcached reads it.
            (b'#', 2, b"a#b#c", Some(b"a#b")),
            (b'#', 1, b"a:b", None),
            (b':', 1, b"a\0:b", None),
            (b':', 2, b"a:b\0:c", Some(b"a")),
            // Binary and odd bytes are bytes.
            (b':', 2, b"\xff\xfe:\x01:\x80", Some(b"\xff\xfe:\x01")),
            (b'\xff', 1, b"ab\xffcd", Some(b"ab")),
        ];
        for &(d, n, key, want) in cases {
            assert_eq!(rule(d, n).prefix(key), want, "{:?} with {n} segments of {:?}", char::from(d), key);
        }
    }

    fn dump(p: &PrefixStats) -> Vec<(Vec<u8>, bool, [u64; 4])> {
        p.snapshot().into_iter().map(|r| (r.prefix.clone(), r.other, r.counts())).collect()
    }

    #[test]
    fn counts_by_prefix_only_when_enabled() {
        let p = PrefixStats::default();
        p.record(b"a:1", PrefixEvent::Set);
        p.set_enabled(true);
        p.record(b"a:1", PrefixEvent::Set);
        p.record(b"a:2", PrefixEvent::Get { hit: false });
        p.record(b"a:1", PrefixEvent::Get { hit: true });
        p.record(b"nodelim", PrefixEvent::Delete);
        assert_eq!(dump(&p), [(b"a".to_vec(), false, [2, 1, 1, 0])], "gets, hits, sets, deletes; only while enabled");
        p.clear();
        assert_eq!(dump(&p), []);
    }

    #[test]
    fn django_keys_split_with_three_segments() {
        let p = PrefixStats::new(rule(b':', 3), DEFAULT_LIMIT, true);
        for i in 0..10 {
            p.record(format!(":1:a:{i}").as_bytes(), PrefixEvent::Get { hit: true });
            p.record(format!(":1:b:{i}").as_bytes(), PrefixEvent::Get { hit: i == 0 });
        }
        let mut rows = dump(&p);
        rows.sort();
        assert_eq!(rows, [(b":1:a".to_vec(), false, [10, 10, 0, 0]), (b":1:b".to_vec(), false, [10, 1, 0, 0])]);
    }

    #[test]
    fn dump_order_is_memcacheds_bucket_then_newest() {
        let p = PrefixStats::new(PrefixRule::default(), 1000, true);
        let names: Vec<String> = (0..600).map(|i| format!("p{i}")).collect();
        for n in &names {
            p.record(format!("{n}:k").as_bytes(), PrefixEvent::Set);
        }
        let got: Vec<Vec<u8>> = p.snapshot().into_iter().filter(|r| !r.other).map(|r| r.prefix).collect();
        // Bucket ascending; within a bucket, the later-created first.
        let key = |pfx: &[u8]| {
            let i = names.iter().position(|n| n.as_bytes() == pfx).unwrap();
            (murmur3_32(pfx) % 256, std::cmp::Reverse(i))
        };
        assert!(got.windows(2).all(|w| key(&w[0]) < key(&w[1])), "memcached's order");
    }

    /// More prefixes than the limit: the busiest stay (each has 1/15 of the events, over
    /// the 1/(2 * limit) that guarantees it), the rest are in "other", and every event is
    /// in exactly one row.
    #[test]
    fn the_busiest_are_kept_and_the_rest_are_other() {
        let limit = 10;
        let p = PrefixStats::new(PrefixRule::default(), limit, true);
        let mut total = Counts::default();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..2_000u64 {
            // Ten busy prefixes, each seen every round...
            for b in 0..10 {
                let ev = if round % 3 == 0 { PrefixEvent::Set } else { PrefixEvent::Get { hit: b % 2 == 0 } };
                p.record(format!("busy{b}:{round}").as_bytes(), ev);
                total.count(ev);
            }
            // ...and a stream of new, rarely repeated ones arriving between them.
            for _ in 0..5 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let ev = PrefixEvent::Delete;
                p.record(format!("rare{}:x", rng % 50_000).as_bytes(), ev);
                total.count(ev);
            }
        }
        let rows = p.snapshot();
        let named: Vec<&PrefixRow> = rows.iter().filter(|r| !r.other).collect();
        assert!(named.len() <= limit);
        let mut busy: Vec<&[u8]> = named.iter().map(|r| &r.prefix[..]).filter(|p| p.starts_with(b"busy")).collect();
        busy.sort();
        let want: Vec<String> = (0..10).map(|b| format!("busy{b}")).collect();
        assert_eq!(busy, want.iter().map(|s| s.as_bytes()).collect::<Vec<_>>(), "the ten busy prefixes are kept");
        let other = rows.last().unwrap();
        assert!(other.other && other.deletes > 0, "the rare ones are counted in other");
        let mut sum = Counts::default();
        for r in &rows {
            sum.add(&Counts { gets: r.gets, hits: r.hits, sets: r.sets, deletes: r.deletes });
        }
        assert_eq!(sum, total, "totals are conserved");
        // Per thread the table stays within twice the limit.
        for t in p.tables.iter() {
            assert!(t.lock().unwrap().rows.len() <= 2 * limit);
        }
    }

    /// Threads keep their own tables; the snapshot merges them, and caps the union at the
    /// limit (the heaviest across threads kept).
    #[test]
    fn threads_tables_are_merged() {
        let p = std::sync::Arc::new(PrefixStats::new(PrefixRule::default(), 3, true));
        let handles: Vec<_> = (0..3)
            .map(|w| {
                let p = p.clone();
                std::thread::spawn(move || {
                    crate::per_worker::enter(w);
                    for i in 0..100 {
                        p.record(b"shared:k", PrefixEvent::Get { hit: i % 2 == 0 });
                    }
                    p.record(format!("own{w}:k").as_bytes(), PrefixEvent::Set);
                    for _ in 0..w * 10 {
                        p.record(format!("own{w}:k").as_bytes(), PrefixEvent::Set);
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        let rows = p.snapshot();
        let find = |name: &[u8]| rows.iter().find(|r| !r.other && r.prefix == name).map(PrefixRow::counts);
        assert_eq!(find(b"shared"), Some([300, 150, 0, 0]));
        assert_eq!(find(b"own2"), Some([0, 0, 21, 0]));
        assert_eq!(find(b"own1"), Some([0, 0, 11, 0]));
        assert_eq!(find(b"own0"), None, "the lightest of four past a limit of three");
        assert_eq!(rows.last().map(|r| (r.other, r.counts())), Some((true, [0, 0, 1, 0])));
    }
}
