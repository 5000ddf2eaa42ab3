//! The most requested keys: a bounded top-K behind `stats hotkeys` and the HTTP side's
//! hot-key table ([`HotKeys::top`]).
//!
//! **What is counted**: fetches, each key of `get gets gat gats` and every `mg`, hit or
//! miss (a hot key that misses is a stampede, worth seeing). Stores, deletes and
//! arithmetic are not counted: the question asked of hot keys is which reads one server
//! cannot spread, and a write-heavy key shows in `stats detail` by its prefix.
//!
//! **The sketch**: each worker thread keeps a Space-Saving summary of `K` counters
//! (`--hot-keys K`; 0 turns it off): a requested key that has a counter gets one more; one
//! that has none takes the counter of the least counted key, and its count plus one, the
//! count it took over being its `error`. Readers merge the threads' summaries: a key's
//! count is the sum of its counts where a thread has it and of that thread's smallest
//! count where it has not (0 while a thread has a counter free), and so is its error.
//!
//! **The bound**: with every fetch recorded (`--hot-keys-sample 1`) and `N` fetches
//! counted since the last `stats reset`, for every key listed
//! `count - error <= true count <= count`, and `error <= N / K`. Every key requested more
//! than `N / K` times is kept (some thread's share of it is over that thread's `N / K`),
//! so it is among the merged rows, which `stats hotkeys` lists down to the `K` largest
//! counts; keys below `N / K` may be missing or ranked among themselves with error.
//!
//! **Sampling**: with `--hot-keys-sample S` (8 by default), a thread records each fetch
//! with probability `1/S` and counts and errors are reported multiplied by `S`. The bound
//! above then holds for `S` times the sampled count, which is itself within about
//! `3 * sqrt(S * f)` of a key's true count `f` (three standard deviations of a binomial
//! draw: 99.7% of the time), and `N` is `S` times the fetches sampled, about all of them.
//! For a key fetched 10,000 times that is 8.5%, for a million 0.85%. Sampling makes the
//! cost of a fetch that is not recorded one relaxed load and store on the thread's own
//! cache line (a xorshift step); `docs/observability.md` has the measured cost.
//!
//! **Memory**: `K` counters a worker thread, each holding its key (at most 250 bytes, the
//! protocol's limit): a stream of distinct keys replaces keys in place and never grows it.
//!
//! **With `-X`** (no dumping) no key name leaves the server: `stats hotkeys` is refused and
//! [`HotKeys::top`] names each key by a keyed hash (`#` and 16 hex digits, with a key
//! drawn at start, so stable while the server runs and not reversible by guessing).

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use crate::per_worker::PerWorker;

/// `--hot-keys`' default: enough counters that the top 10 of a Zipf-like load are exact in
/// practice, and a reader's table; a few tens of kilobytes a thread at most.
pub const DEFAULT_K: usize = 100;
/// `--hot-keys-sample`'s default (see the module doc and `docs/observability.md`).
pub const DEFAULT_SAMPLE: u32 = 8;

/// A row of [`HotKeys::top`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotKey {
    /// The key as requested; under `-X`, `#` and 16 hex digits of a keyed hash.
    pub key: Vec<u8>,
    /// Estimated requests (an overestimate by at most `error`, sampling aside).
    pub count: u64,
    /// How much of `count` may belong to other keys.
    pub error: u64,
}

/// One thread's Space-Saving summary: `slots` hold the keys, `heap` orders them by count
/// (least first) so the one to replace is at the root, `table` finds a key's slot.
#[derive(Debug, Default)]
struct Sketch {
    table: HashTable<u32>,
    slots: Vec<Slot>,
    /// Slot ids, a binary min-heap by count.
    heap: Vec<u32>,
    hasher: DefaultHashBuilder,
}

#[derive(Debug)]
struct Slot {
    key: Vec<u8>,
    hash: u64,
    count: u64,
    error: u64,
    /// Where the slot is in `heap`.
    at: u32,
}

impl Sketch {
    /// Counts `key`, with at most `capacity` counters.
    fn record(&mut self, key: &[u8], capacity: usize) {
        let hash = self.hasher.hash_one(key);
        let Self { table, slots, heap, .. } = self;
        if let Some(&id) = table.find(hash, |&id| slots[id as usize].key == key) {
            let s = &mut slots[id as usize];
            s.count += 1;
            let at = s.at as usize;
            sift_down(heap, slots, at);
            return;
        }
        if slots.len() < capacity {
            let id = slots.len() as u32;
            slots.push(Slot { key: key.to_vec(), hash, count: 1, error: 0, at: heap.len() as u32 });
            heap.push(id);
            table.insert_unique(hash, id, |&id| slots[id as usize].hash);
            let last = heap.len() - 1;
            sift_up(heap, slots, last);
            return;
        }
        // Space-Saving: the least counted key gives its counter to this one.
        let id = heap[0];
        let old = slots[id as usize].hash;
        if let Ok(e) = table.find_entry(old, |&i| i == id) {
            e.remove();
        }
        let s = &mut slots[id as usize];
        s.error = s.count;
        s.count += 1;
        s.key.clear();
        s.key.extend_from_slice(key);
        s.hash = hash;
        table.insert_unique(hash, id, |&id| slots[id as usize].hash);
        sift_down(heap, slots, 0);
    }

    /// The smallest count if every counter is taken (what a key without one may have had),
    /// else 0.
    fn floor(&self, capacity: usize) -> u64 {
        if self.slots.len() < capacity { 0 } else { self.heap.first().map_or(0, |&id| self.slots[id as usize].count) }
    }

    fn clear(&mut self) {
        self.table.clear();
        self.slots.clear();
        self.heap.clear();
    }
}

fn sift_down(heap: &mut [u32], slots: &mut [Slot], mut at: usize) {
    let count = |i: usize, heap: &[u32], slots: &[Slot]| slots[heap[i] as usize].count;
    loop {
        let (l, r) = (2 * at + 1, 2 * at + 2);
        let mut least = at;
        if l < heap.len() && count(l, heap, slots) < count(least, heap, slots) {
            least = l;
        }
        if r < heap.len() && count(r, heap, slots) < count(least, heap, slots) {
            least = r;
        }
        if least == at {
            return;
        }
        heap.swap(at, least);
        slots[heap[at] as usize].at = at as u32;
        slots[heap[least] as usize].at = least as u32;
        at = least;
    }
}

fn sift_up(heap: &mut [u32], slots: &mut [Slot], mut at: usize) {
    while at > 0 {
        let parent = (at - 1) / 2;
        if slots[heap[parent] as usize].count <= slots[heap[at] as usize].count {
            return;
        }
        heap.swap(at, parent);
        slots[heap[at] as usize].at = at as u32;
        slots[heap[parent] as usize].at = parent as u32;
        at = parent;
    }
}

/// A thread's summary and its sampling state.
#[derive(Debug, Default)]
struct Local {
    /// xorshift64 state (0: not seeded yet): a fetch is recorded when the next value
    /// falls under the threshold.
    rng: AtomicU64,
    sketch: Mutex<Sketch>,
}

/// The hot-key summaries, one per worker thread.
#[derive(Debug)]
pub struct HotKeys {
    /// `K`; 0: off.
    capacity: usize,
    /// Record one fetch in `sample` (on average).
    sample: u32,
    /// `u64::MAX / sample`: a fetch is recorded when the thread's next random number is at
    /// most this.
    threshold: u64,
    /// `-X`: names are shown as keyed hashes.
    hide_names: bool,
    /// The key of those hashes, drawn at start.
    name_key: std::hash::RandomState,
    locals: PerWorker<Local>,
}

impl Default for HotKeys {
    fn default() -> Self {
        Self::new(DEFAULT_K, DEFAULT_SAMPLE, false)
    }
}

impl HotKeys {
    /// `capacity` counters a thread (0: off), recording one fetch in `sample` (at least 1);
    /// `hide_names` for `-X`.
    pub fn new(capacity: usize, sample: u32, hide_names: bool) -> Self {
        let sample = sample.max(1);
        Self {
            capacity,
            sample,
            threshold: u64::MAX / u64::from(sample),
            hide_names,
            name_key: std::hash::RandomState::new(),
            locals: PerWorker::default(),
        }
    }

    /// Whether fetches are counted (`--hot-keys` above 0).
    #[inline]
    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// `K`: counters a thread, and the most rows [`Self::top`] returns.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// One fetch in this many is recorded.
    pub fn sample(&self) -> u32 {
        self.sample
    }

    /// Whether [`Self::top`] hides names (`-X`).
    pub fn names_hidden(&self) -> bool {
        self.hide_names
    }

    /// Counts a fetch of `key` (sampled: see the module doc).
    #[inline]
    pub fn record(&self, key: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        let local = self.locals.local();
        if self.sample > 1 {
            // Only this thread writes its state (slot 0's sharers may race: a lost step
            // changes which fetch is sampled, nothing else).
            let mut x = local.rng.load(Relaxed);
            if x == 0 {
                x = self.seed(local);
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            local.rng.store(x, Relaxed);
            if x > self.threshold {
                return;
            }
        }
        local.sketch.lock().unwrap_or_else(|p| p.into_inner()).record(key, self.capacity);
    }

    /// The first random state of `local`: fixed by its slot, so a run can be repeated.
    #[cold]
    fn seed(&self, local: &Local) -> u64 {
        let slot = self.locals.iter().position(|l| std::ptr::eq(l, local)).unwrap_or(0) as u64;
        0x9e37_79b9_7f4a_7c15u64.wrapping_mul(slot + 1) | 1
    }

    /// The `n` most requested keys, most first (ties by key), merged over the threads,
    /// counts and errors scaled by the sampling rate. Under `-X`, names are keyed hashes.
    pub fn top(&self, n: usize) -> Vec<HotKey> {
        // Per key: the sum of (count - floor) and of (floor - error) where a thread has it;
        // adding every thread's floor gives the merged count and error.
        let mut merged: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
        let mut floors = 0u64;
        for local in self.locals.iter() {
            let sk = local.sketch.lock().unwrap_or_else(|p| p.into_inner());
            let floor = sk.floor(self.capacity);
            floors += floor;
            for s in &sk.slots {
                let m = merged.entry_ref(&s.key[..]).or_default();
                m.0 += s.count.saturating_sub(floor);
                m.1 += floor.saturating_sub(s.error);
            }
        }
        let scale = u64::from(self.sample);
        let mut rows: Vec<HotKey> = merged
            .into_iter()
            .map(|(key, (above, below))| HotKey {
                key,
                count: (floors + above) * scale,
                error: floors.saturating_sub(below) * scale,
            })
            .collect();
        rows.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        rows.truncate(n);
        if self.hide_names {
            for r in &mut rows {
                r.key = format!("#{:016x}", self.name_key.hash_one(&r.key)).into_bytes();
            }
        }
        rows
    }

    /// `stats reset`: forgets every count.
    pub fn clear(&self) {
        for local in self.locals.iter() {
            local.sketch.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// `n` draws of a Zipf(`s`) distribution over `keys` keys, with a fixed seed, and the
    /// true count of each key.
    fn zipf_stream(keys: usize, s: f64, n: usize, seed: u64) -> (Vec<usize>, Vec<u64>) {
        let mut cdf = Vec::with_capacity(keys);
        let mut total = 0.0;
        for k in 1..=keys {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        let mut rng = XorShift(seed);
        let mut truth = vec![0u64; keys];
        let stream: Vec<usize> = (0..n)
            .map(|_| {
                let u = rng.unit() * total;
                let k = cdf.partition_point(|&c| c < u).min(keys - 1);
                truth[k] += 1;
                k
            })
            .collect();
        (stream, truth)
    }

    fn name(k: usize) -> Vec<u8> {
        format!("key:{k}").into_bytes()
    }

    /// Checks the documented bound and that the true top 10 are the reported top 10.
    fn check_top10(h: &HotKeys, truth: &[u64], n: u64, slack: impl Fn(u64) -> u64) {
        let top = h.top(h.capacity());
        let mut by_truth: Vec<usize> = (0..truth.len()).collect();
        by_truth.sort_by_key(|&k| std::cmp::Reverse(truth[k]));
        let reported10: Vec<&[u8]> = top.iter().take(10).map(|r| &r.key[..]).collect();
        for &k in &by_truth[..10] {
            assert!(reported10.contains(&&name(k)[..]), "true top-10 key {k} ({}) not in {reported10:?}", truth[k]);
        }
        let bound = n / h.capacity() as u64;
        for r in &top {
            let k: usize = std::str::from_utf8(&r.key[4..]).unwrap().parse().unwrap();
            let f = truth[k];
            assert!(r.error <= bound + slack(0), "error {} over N/K = {bound}", r.error);
            assert!(
                r.count.saturating_sub(r.error) <= f + slack(f) && f <= r.count + slack(f),
                "key {k}: true {f} outside [{} - {}, {}]",
                r.count,
                r.error,
                r.count
            );
        }
    }

    #[test]
    fn zipf_top10_within_the_bound_unsampled() {
        let (stream, truth) = zipf_stream(100_000, 1.0, 500_000, 42);
        let h = HotKeys::new(DEFAULT_K, 1, false);
        for &k in &stream {
            h.record(&name(k));
        }
        check_top10(&h, &truth, stream.len() as u64, |_| 0);
    }

    #[test]
    fn zipf_top10_within_the_bound_sampled_over_threads() {
        let (stream, truth) = zipf_stream(100_000, 1.0, 800_000, 7);
        let h = std::sync::Arc::new(HotKeys::new(DEFAULT_K, DEFAULT_SAMPLE, false));
        let stream = std::sync::Arc::new(stream);
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let (h, stream) = (h.clone(), stream.clone());
                std::thread::spawn(move || {
                    crate::per_worker::enter(w);
                    for &k in stream.iter().skip(w).step_by(2) {
                        h.record(&name(k));
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|t| t.join().unwrap());
        let s = f64::from(DEFAULT_SAMPLE);
        // Sampling: within 4 standard deviations (the fixed seed makes this deterministic;
        // the documented 3 hold for 99.7% of keys).
        check_top10(&h, &truth, stream.len() as u64, |f| (4.0 * (s * f as f64).sqrt()) as u64 + DEFAULT_SAMPLE as u64);
    }

    #[test]
    fn distinct_keys_stay_bounded() {
        let h = HotKeys::new(16, 1, false);
        for i in 0..100_000u64 {
            h.record(format!("distinct:{i}:{}", "x".repeat((i % 200) as usize)).as_bytes());
        }
        for local in h.locals.iter() {
            let sk = local.sketch.lock().unwrap();
            assert!(sk.slots.len() <= 16 && sk.table.len() <= 16 && sk.heap.len() <= 16);
            assert!(sk.slots.iter().all(|s| s.key.len() <= 220));
        }
        let top = h.top(100);
        assert_eq!(top.len(), 16);
        assert!(top.iter().all(|r| r.error <= 100_000 / 16 && r.count >= r.error));
    }

    #[test]
    fn counts_are_exact_while_there_is_room() {
        let h = HotKeys::new(4, 1, false);
        for (k, times) in [(&b"a"[..], 5), (b"b", 3), (b"c", 1)] {
            for _ in 0..times {
                h.record(k);
            }
        }
        let top: Vec<(Vec<u8>, u64, u64)> = h.top(10).into_iter().map(|r| (r.key, r.count, r.error)).collect();
        assert_eq!(top, [(b"a".to_vec(), 5, 0), (b"b".to_vec(), 3, 0), (b"c".to_vec(), 1, 0)]);
        assert_eq!(h.top(1).len(), 1);
        h.clear();
        assert!(h.top(10).is_empty());
    }

    #[test]
    fn off_records_nothing_and_x_hides_names() {
        let off = HotKeys::new(0, 1, false);
        off.record(b"k");
        assert!(!off.enabled() && off.top(10).is_empty());
        let hidden = HotKeys::new(4, 1, true);
        hidden.record(b"secret:1");
        hidden.record(b"secret:1");
        let top = hidden.top(10);
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].count, top[0].key.len(), top[0].key[0]), (2, 17, b'#'));
        assert!(!top[0].key.windows(6).any(|w| w == b"secret"));
        assert_eq!(hidden.top(10), top, "stable while the server runs");
    }
}
