//! Store alone: `get` hits and misses, `set` over existing keys, and `set` of new keys
//! under a memory limit so small that every one evicts, at 1, 2 and 4 threads.
//!
//! With several threads each sample's operations are split between them and the time is
//! the wall time for all of them, so "time per op" is the aggregate cost and throughput
//! the aggregate rate: a store that scales shows it falling with threads (up to the
//! machine's cores), one that contends shows it rising.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use larder::clock::Clock;
use larder::store::{Lookup, Store, StoreArgs, StoreOutcome};

/// Keys in the hit/miss/set working set (scenario (a)'s key count).
const KEYS: usize = 100_000;
const VALUE: [u8; 100] = [b'v'; 100];
const THREADS: [usize; 3] = [1, 2, 4];

/// Keys in a scattered order (a stride coprime with the count), so consecutive operations
/// do not walk the map's memory in insertion order.
fn keys(n: usize, prefix: &str) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{prefix}{:08}", (i * 7919) % n).into_bytes()).collect()
}

fn filled(limit: usize) -> Store {
    let store = Store::new(Clock::starting_at(1_700_000_000), limit, 1 << 20);
    for k in keys(KEYS, "key:") {
        assert_eq!(store.store(&set_args(&k)).0, StoreOutcome::Stored);
    }
    store
}

/// Numbers every operation any sample has run, so each call sees an index no earlier call
/// saw (the eviction bench needs keys that are not already in the store).
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Runs `iters` calls of `op` split over `threads` threads; returns the wall time. Each
/// thread takes its own contiguous run of indices.
fn spread(iters: u64, threads: usize, op: &(impl Fn(usize) + Sync)) -> Duration {
    let per = (iters as usize).div_ceil(threads);
    let first = NEXT.fetch_add(per * threads, Relaxed);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let base = first + t * per;
            s.spawn(move || {
                for i in base..base + per {
                    op(i);
                }
            });
        }
    });
    start.elapsed()
}

fn bench_op(c: &mut Criterion, name: &str, store: &Store, op: impl Fn(&Store, usize) + Sync) {
    let mut g = c.benchmark_group(format!("store/{name}"));
    g.throughput(Throughput::Elements(1));
    for threads in THREADS {
        g.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, &threads| {
            b.iter_custom(|iters| spread(iters, threads, &|i| op(store, i)))
        });
    }
    g.finish();
}

/// A `set` of [`VALUE`] under `key`.
fn set_args(key: &[u8]) -> StoreArgs<'_> {
    StoreArgs { key, value: &VALUE, ..StoreArgs::default() }
}

fn hit(c: &mut Criterion) {
    let store = filled(1 << 30);
    let ks = keys(KEYS, "key:");
    bench_op(c, "get_hit", &store, |s, i| {
        black_box(s.lookup(&ks[i % KEYS], &Lookup::GET, |f| f.item.value().len()).expect("hit"));
    });
}

fn miss(c: &mut Criterion) {
    let store = filled(1 << 30);
    let ks = keys(KEYS, "nokey:");
    bench_op(c, "get_miss", &store, |s, i| {
        assert!(s.lookup(&ks[i % KEYS], &Lookup::GET, |f| f.item.value().len()).is_none());
    });
}

fn set(c: &mut Criterion) {
    let store = filled(1 << 30);
    let ks = keys(KEYS, "key:");
    bench_op(c, "set_existing", &store, |s, i| {
        black_box(s.store(&set_args(&ks[i % KEYS])));
    });
}

/// 1 MiB holds a few thousand 100-byte items, so once warm every new key evicts one.
fn evict(c: &mut Criterion) {
    let store = filled(1 << 20);
    let ks = keys(1 << 20, "new:");
    bench_op(c, "set_evicting", &store, |s, i| {
        assert_eq!(s.store(&set_args(&ks[i % ks.len()])).0, StoreOutcome::Stored);
    });
    assert!(store.stats.totals().evictions > 0, "nothing was evicted");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = hit, miss, set, evict }
criterion_main!(benches);
