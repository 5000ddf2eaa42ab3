//! Store alone, one thread: fills fresh items into a store with room for all of them and
//! reports the slowest single sets, with the item count each came at. A table that
//! rebuilds at once shows as sets taking milliseconds at the counts where it doubles.
//! Times are the thread's CPU time, so a busy machine does not make a set look slow.
//!
//! `cargo bench --bench fill -- [ITEMS] [--untimed]` (default 14,000,000; 100,000 under
//! `cargo test`). `--untimed`
//! reads no clock per set and reports only the CPU time of the whole fill (the per-set
//! clock, a system call, costs more than a set).

use std::time::Instant;

use larder::clock::Clock;
use larder::store::{Store, StoreArgs, StoreOutcome};

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --all-targets`) this is a
    // small check that the fill runs.
    let bench = std::env::args().any(|a| a == "--bench");
    let default = if bench { 14_000_000 } else { 100_000 };
    let items: usize = std::env::args().skip(1).find_map(|a| a.replace('_', "").parse().ok()).unwrap_or(default);
    let timed = !std::env::args().any(|a| a == "--untimed");
    let store = Store::new(Clock::starting_at(1_700_000_000), 4 << 30, 1 << 20);
    let value = [b'v'; 100];
    let mut slow: Vec<(u64, usize)> = Vec::new();
    let mut hist = [0u64; 7]; // under 10, 100 us, 1, 10, 100 ms, 1 s, more
    let mut key = Vec::with_capacity(16);
    let start = Instant::now();
    for n in 0..items {
        key.clear();
        key.extend_from_slice(format!("key:{n:08}").as_bytes());
        let args = StoreArgs { key: &key, value: &value, ..StoreArgs::default() };
        if !timed {
            assert_eq!(store.store(&args).0, StoreOutcome::Stored);
            continue;
        }
        let cpu = thread_cpu_ns();
        let (outcome, _) = store.store(&args);
        // The thread's own CPU time: a set the scheduler set aside on a busy machine does
        // not count as slow.
        let ns = thread_cpu_ns() - cpu;
        assert_eq!(outcome, StoreOutcome::Stored);
        hist[(ns.max(1).ilog10() as usize).saturating_sub(3).min(6)] += 1;
        if ns > 200_000 {
            slow.push((ns, n));
        }
    }
    let total = start.elapsed();
    if !timed {
        let cpu = thread_cpu_ns() as f64 / 1e9;
        println!(
            "{items} sets in {:.2} s, {cpu:.2} s of CPU ({:.0} ns a set)",
            total.as_secs_f64(),
            cpu * 1e9 / items as f64
        );
        return;
    }
    slow.sort_unstable_by(|a, b| b.cmp(a));
    println!("{items} sets in {:.2} s ({:.0} ns a set)", total.as_secs_f64(), total.as_nanos() as f64 / items as f64);
    let bounds = ["10 us", "100 us", "1 ms", "10 ms", "100 ms", "1 s"];
    let under = bounds.iter().zip(hist).map(|(b, n)| format!("under {b}: {n}")).collect::<Vec<_>>().join(", ");
    println!("sets taking {under}, more: {}", hist[6]);
    println!(
        "slowest sets over 0.2 ms ({}): {}",
        slow.len(),
        slow.iter().take(20).map(|(ns, n)| format!("{:.2} ms at {n}", *ns as f64 / 1e6)).collect::<Vec<_>>().join(", ")
    );
}
