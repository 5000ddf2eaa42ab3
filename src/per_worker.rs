//! [`PerWorker`]: one copy of a value per worker thread, each on cache lines of its own,
//! so a request writes only its own thread's counters (and sketches) and readers sum or
//! merge the copies. A thread's slot is set once by [`enter`] (the worker threads call it
//! when they start); every other thread (the accept loop, background tasks, tests) shares
//! slot 0. Slots are shared, never unsafe: their contents are atomics or locks, so a
//! thread without a slot of its own (more workers than slots) shares slot 0, which costs
//! contention, not correctness. A leaf module: anyone may import it.

use std::cell::Cell;

thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as worker `worker` (0-based) for every [`PerWorker`].
pub fn enter(worker: usize) {
    SLOT.set(worker + 1);
}

/// Slots a [`PerWorker`] holds: one per core, plus slot 0, so up to that many workers
/// (memcached's `-t` defaults to 4; a server runs one per core at most) write alone.
fn slots() -> usize {
    static SLOTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| std::thread::available_parallelism().map_or(4, usize::from).clamp(4, 256) + 1)
}

/// A value on cache lines of its own (128 bytes: adjacent-line prefetching pairs lines).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// A `T` per worker thread.
#[derive(Debug)]
pub struct PerWorker<T> {
    slots: Box<[Padded<T>]>,
}

impl<T: Default> Default for PerWorker<T> {
    fn default() -> Self {
        Self { slots: (0..slots()).map(|_| Padded::default()).collect() }
    }
}

impl<T> PerWorker<T> {
    /// The calling thread's copy.
    #[inline]
    pub fn local(&self) -> &T {
        let slots = &self.slots;
        &slots.get(SLOT.get()).unwrap_or(&slots[0]).0
    }

    /// Every copy, for readers to sum or merge.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|p| &p.0)
    }
}

/// Declares a thread's counters (`$counters`: relaxed atomics, for [`PerWorker`]), their
/// sum (`$totals`: plain numbers) and `$counters::reset`, which zeroes the counters but not
/// the gauges. A gauge goes up on one thread and down on another: its copies wrap, and
/// their wrapping sum is the true value.
macro_rules! counters {
    ($(#[$doc:meta])* $counters:ident, $totals:ident {
        counters: $($name:ident),* $(,)?;
        gauges: $($gauge:ident),* $(,)?
    }) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $counters {
            $(pub $name: std::sync::atomic::AtomicU64,)*
            $(pub $gauge: std::sync::atomic::AtomicU64,)*
        }

        /// Every thread's copy summed.
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $totals {
            $(pub $name: u64,)*
            $(pub $gauge: u64,)*
        }

        impl $totals {
            /// The sum over `per_worker`.
            pub fn of(per_worker: &$crate::per_worker::PerWorker<$counters>) -> Self {
                use std::sync::atomic::Ordering::Relaxed;
                let mut t = Self::default();
                for c in per_worker.iter() {
                    $( t.$name = t.$name.wrapping_add(c.$name.load(Relaxed)); )*
                    $( t.$gauge = t.$gauge.wrapping_add(c.$gauge.load(Relaxed)); )*
                }
                t
            }
        }

        impl $counters {
            /// Zeroes the counters (not the gauges).
            pub fn reset(&self) {
                $( self.$name.store(0, std::sync::atomic::Ordering::Relaxed); )*
            }
        }
    };
}
pub(crate) use counters;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use super::*;

    #[test]
    fn each_worker_writes_its_own_slot_and_readers_see_the_sum() {
        let p: std::sync::Arc<PerWorker<AtomicU64>> = std::sync::Arc::default();
        p.local().fetch_add(1, Relaxed);
        let handles: Vec<_> = (0..3)
            .map(|w| {
                let p = p.clone();
                std::thread::spawn(move || {
                    enter(w);
                    p.local().fetch_add(10, Relaxed);
                    std::ptr::from_ref(p.local()) as usize
                })
            })
            .collect();
        let addrs: Vec<usize> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(p.iter().map(|c| c.load(Relaxed)).sum::<u64>(), 31);
        assert_eq!(p.local().load(Relaxed), 1, "this thread is slot 0, apart from the workers");
        assert!(addrs.windows(2).all(|w| w[0].abs_diff(w[1]) >= 128), "each worker on lines of its own");
    }
}
