//! Request latency histograms per command group ([`Command`]), kept per worker thread
//! ([`PerWorker`]) and summed when `/metrics` reads them (`larder_request_duration_seconds`).
//!
//! What is timed is a batch: from the read that brought a connection's complete commands
//! to the moment the last of their replies is queued for the socket. A client that sends
//! one command and waits (most do) sees exactly that on the server's side; in a pipeline
//! every command is recorded with its batch's time, which is when its reply leaves.
//! Two clock reads per batch ([`now_nanos`]), and a few additions into the thread's own
//! cache lines.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::per_worker::PerWorker;

/// Nanoseconds of `CLOCK_MONOTONIC`: a batch's start and end, read from the vDSO with
/// none of `Instant`'s checks (the two reads and their difference cost about a third of
/// `Instant::now()`, twice, and `Instant`'s subtraction, in instructions).
#[inline]
pub fn now_nanos() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only the timespec it is given, which lives on this
    // stack frame; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// The groups requests are timed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `get gets gat gats mg`.
    Get,
    /// `set add replace append prepend cas ms`.
    Set,
    /// `delete md`.
    Delete,
    /// `incr decr ma`.
    Arith,
    /// `touch`.
    Touch,
    /// Everything else (`stats`, `version`, `flush_all`, `mn`, ...).
    Other,
}

impl Command {
    pub const ALL: [Self; 6] = [Self::Get, Self::Set, Self::Delete, Self::Arith, Self::Touch, Self::Other];

    /// The `command` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Set => "set",
            Self::Delete => "delete",
            Self::Arith => "arith",
            Self::Touch => "touch",
            Self::Other => "other",
        }
    }
}

/// Upper bounds of the buckets, in microseconds (a last, unbounded bucket follows).
pub const BUCKETS_MICROS: [u64; 14] =
    [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000];

const SLOTS: usize = BUCKETS_MICROS.len() + 1;

/// How many commands of each group a batch ran.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally([u32; Command::ALL.len()]);

impl Tally {
    #[inline]
    pub fn add(&mut self, c: Command) {
        self.0[c as usize] += 1;
    }
}

/// One group's histogram on one thread: counts per bucket (not cumulative), and the sum.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; SLOTS],
    sum_nanos: AtomicU64,
}

/// One thread's histograms.
#[derive(Debug, Default)]
pub struct Histograms([Histogram; Command::ALL.len()]);

/// A group's histogram summed over the threads, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Cumulative counts, one per [`BUCKETS_MICROS`] bound, then the total (`+Inf`).
    pub cumulative: [u64; SLOTS],
    pub sum: Duration,
}

/// Every thread's histograms.
#[derive(Debug, Default)]
pub struct Latency(PerWorker<Histograms>);

impl Latency {
    /// Records a batch that ran `tally`'s commands and took `nanos` nanoseconds.
    pub fn record(&self, tally: &Tally, nanos: u64) {
        let micros = nanos / 1000;
        let slot = BUCKETS_MICROS.iter().position(|&b| micros <= b).unwrap_or(SLOTS - 1);
        let mine = self.0.local();
        for (h, &n) in mine.0.iter().zip(&tally.0) {
            if n > 0 {
                h.buckets[slot].fetch_add(u64::from(n), Relaxed);
                h.sum_nanos.fetch_add(nanos * u64::from(n), Relaxed);
            }
        }
    }

    /// The group's histogram over every thread.
    pub fn summary(&self, c: Command) -> Summary {
        let mut counts = [0u64; SLOTS];
        let mut nanos = 0u64;
        for h in self.0.iter().map(|t| &t.0[c as usize]) {
            for (n, b) in counts.iter_mut().zip(&h.buckets) {
                *n += b.load(Relaxed);
            }
            nanos += h.sum_nanos.load(Relaxed);
        }
        let mut cumulative = counts;
        for i in 1..SLOTS {
            cumulative[i] += cumulative[i - 1];
        }
        Summary { cumulative, sum: Duration::from_nanos(nanos) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_with_instant() {
        let (i, a) = (std::time::Instant::now(), now_nanos());
        std::thread::sleep(Duration::from_millis(2));
        let (b, elapsed) = (now_nanos(), i.elapsed());
        assert!(b - a >= 2_000_000 && b - a <= elapsed.as_nanos() as u64 + 1_000_000, "{} ns", b - a);
    }

    #[test]
    fn a_batch_counts_each_command_in_its_bucket() {
        let l = Latency::default();
        let mut t = Tally::default();
        t.add(Command::Get);
        t.add(Command::Get);
        t.add(Command::Set);
        l.record(&t, 30_000);
        l.record(&Tally::default(), 5_000_000_000);
        let mut one_set = Tally::default();
        one_set.add(Command::Set);
        l.record(&one_set, 2_000_000_000);
        let get = l.summary(Command::Get);
        assert_eq!(&get.cumulative[..4], &[0, 0, 2, 2], "30 µs falls under the 50 µs bound");
        assert_eq!((get.cumulative[SLOTS - 1], get.sum), (2, Duration::from_micros(60)));
        let set = l.summary(Command::Set);
        assert_eq!((set.cumulative[SLOTS - 2], set.cumulative[SLOTS - 1]), (1, 2), "2 s is past every bound");
        assert_eq!(l.summary(Command::Touch).cumulative, [0; SLOTS]);
    }
}
