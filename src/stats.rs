//! Server-wide counters behind the `stats` command, kept per worker thread
//! ([`PerWorker`]): a request bumps its own thread's relaxed atomics and readers sum them
//! ([`Stats::totals`]). The store keeps its own item counters (`store::StoreStats`).
//! Beside the counters: the per-prefix table of `stats detail` ([`crate::prefixes`]) and
//! the hot keys of `stats hotkeys` ([`crate::hot_keys`]), per worker thread too.
//! `socket_writes` is ours, not memcached's, and is not printed: tests use it to check
//! batching.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use crate::hot_keys::HotKeys;
use crate::per_worker::{PerWorker, counters};
pub use crate::prefixes::{PrefixEvent, PrefixStats};

/// The server's counters: one [`Counters`] per worker thread, the prefix table and the
/// hot keys.
#[derive(Debug, Default)]
pub struct Stats {
    per_worker: PerWorker<Counters>,
    pub prefixes: PrefixStats,
    pub hot_keys: HotKeys,
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
    /// Counters with `prefixes` and `hot_keys` recording as given.
    pub fn new(prefixes: PrefixStats, hot_keys: HotKeys) -> Self {
        Self { per_worker: PerWorker::default(), prefixes, hot_keys }
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
    /// `curr_connections`, which `reset` must not touch), forgets prefixes and hot keys.
    pub fn reset(&self) {
        self.per_worker.iter().for_each(Counters::reset);
        self.prefixes.clear();
        self.hot_keys.clear();
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
