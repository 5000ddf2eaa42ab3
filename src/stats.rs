//! Server-wide counters behind the `stats` command, kept per worker thread
//! ([`PerWorker`]): a request bumps its own thread's relaxed atomics and readers sum them
//! ([`Stats::totals`]). The store keeps its own item counters (`store::StoreStats`).
//! `socket_writes` is ours, not memcached's, and is not printed: tests use it to check
//! batching.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::per_worker::{PerWorker, counters};

/// The server's counters: one [`Counters`] per worker thread, and the prefix table.
#[derive(Debug, Default)]
pub struct Stats {
    per_worker: PerWorker<Counters>,
    pub prefixes: PrefixStats,
}

counters!(
    /// One thread's relaxed counters, named as memcached names them in `stats`.
    Counters, Totals {
        counters: total_connections, rejected_connections, cmd_get, cmd_set, cmd_flush,
            cmd_touch, cmd_meta, get_hits, get_misses, delete_hits, delete_misses, incr_hits,
            incr_misses, decr_hits, decr_misses, touch_hits, touch_misses, store_too_large,
            store_no_memory, auth_cmds, auth_errors, idle_kicks, bytes_read, bytes_written,
            conn_yields;
        gauges: curr_connections, socket_writes
    }
);

impl Stats {
    /// Counters with `prefixes` recording as given.
    pub fn new(prefixes: PrefixStats) -> Self {
        Self { per_worker: PerWorker::default(), prefixes }
    }

    /// The calling thread's counters, to bump.
    #[inline]
    pub fn local(&self) -> &Counters {
        self.per_worker.local()
    }

    /// Every counter summed over the threads.
    pub fn totals(&self) -> Totals {
        Totals::of(&self.per_worker)
    }

    /// `stats reset`: zeroes the resettable counters (not gauges such as
    /// `curr_connections`, which `reset` must not touch) and forgets prefixes.
    pub fn reset(&self) {
        self.per_worker.iter().for_each(Counters::reset);
        self.prefixes.clear();
    }

    /// Adds one to a counter.
    #[inline]
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Reads a counter.
    #[inline]
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_keeps_gauges() {
        let s = Stats::default();
        Stats::incr(&s.local().cmd_get);
        Stats::incr(&s.local().curr_connections);
        s.reset();
        let t = s.totals();
        assert_eq!((t.cmd_get, t.curr_connections), (0, 1));
    }
}

/// Per-prefix counters behind `stats detail on|off|dump`, as memcached keeps them: a key's
/// prefix is what precedes its first delimiter (`:`, or `-D`'s); keys without one are not
/// counted. Costs one relaxed load per request while off (the default without `-D`).
#[derive(Debug)]
pub struct PrefixStats {
    enabled: std::sync::atomic::AtomicBool,
    delimiter: u8,
    /// memcached's 256 hash buckets, newest prefix first in each, so `dump` lists prefixes
    /// in memcached's order.
    buckets: std::sync::Mutex<Vec<Vec<PrefixCounts>>>,
}

#[derive(Debug)]
struct PrefixCounts {
    prefix: Box<[u8]>,
    gets: u64,
    hits: u64,
    sets: u64,
    deletes: u64,
}

/// What a request did to a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixEvent {
    Get { hit: bool },
    Set,
    Delete,
}

const PREFIX_BUCKETS: usize = 256;

impl Default for PrefixStats {
    fn default() -> Self {
        Self::new(b':', false)
    }
}

impl PrefixStats {
    /// Counting by what precedes `delimiter`, on from the start if `enabled` (`-D`).
    pub fn new(delimiter: u8, enabled: bool) -> Self {
        Self {
            enabled: std::sync::atomic::AtomicBool::new(enabled),
            delimiter,
            buckets: std::sync::Mutex::new((0..PREFIX_BUCKETS).map(|_| Vec::new()).collect()),
        }
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Relaxed);
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Counts `event` for `key`'s prefix, if recording is on and the key has one.
    pub fn record(&self, key: &[u8], event: PrefixEvent) {
        if !self.enabled() {
            return;
        }
        let Some(len) = key.iter().take_while(|&&b| b != 0).position(|&b| b == self.delimiter) else {
            return;
        };
        let prefix = &key[..len];
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = &mut buckets[murmur3_32(prefix) as usize % PREFIX_BUCKETS];
        let i = match bucket.iter().position(|c| &*c.prefix == prefix) {
            Some(i) => i,
            None => {
                let fresh = PrefixCounts { prefix: prefix.into(), gets: 0, hits: 0, sets: 0, deletes: 0 };
                bucket.insert(0, fresh);
                0
            }
        };
        let c = &mut bucket[i];
        match event {
            PrefixEvent::Get { hit } => {
                c.gets += 1;
                c.hits += u64::from(hit);
            }
            PrefixEvent::Set => c.sets += 1,
            PrefixEvent::Delete => c.deletes += 1,
        }
    }

    /// Calls `f` with each prefix and its counts (gets, hits, sets, deletes), in the
    /// order memcached's `stats detail dump` lists them.
    pub fn each(&self, mut f: impl FnMut(&[u8], [u64; 4])) {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for c in buckets.iter().flatten() {
            f(&c.prefix, [c.gets, c.hits, c.sets, c.deletes]);
        }
    }

    /// `stats reset` forgets prefixes too.
    pub fn clear(&self) {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).iter_mut().for_each(Vec::clear);
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
mod prefix_tests {
    use super::*;

    #[test]
    fn murmur3_reference_values() {
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(murmur3_32(b"The quick brown fox jumps over the lazy dog"), 0x2e4f_f723);
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
        let mut seen = Vec::new();
        p.each(|prefix, counts| seen.push((prefix.to_vec(), counts)));
        assert_eq!(seen, [(b"a".to_vec(), [2, 1, 1, 0])], "gets, hits, sets, deletes; only while enabled");
    }
}
