//! Server-wide counters behind the `stats` command: relaxed atomics bumped by connections
//! and `exec`. The store keeps its own item counters (`store::StoreStats`). `socket_writes`
//! is ours, not memcached's, and is not printed: tests use it to check batching.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Declares the counter struct and its reset in one list.
macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Relaxed counters named as memcached names them in `stats`.
        #[derive(Debug, Default)]
        pub struct Stats { $(pub $name: AtomicU64,)* }

        impl Stats {
            /// `stats reset`: zeroes the resettable counters (not gauges such as
            /// `curr_connections`, which `reset` must not touch).
            pub fn reset(&self) {
                $( if !Self::GAUGES.contains(&stringify!($name)) { self.$name.store(0, Relaxed); } )*
            }
        }
    };
}

counters!(
    curr_connections,
    total_connections,
    rejected_connections,
    cmd_get,
    cmd_set,
    cmd_flush,
    cmd_touch,
    cmd_meta,
    get_hits,
    get_misses,
    delete_hits,
    delete_misses,
    incr_hits,
    incr_misses,
    decr_hits,
    decr_misses,
    touch_hits,
    touch_misses,
    store_too_large,
    store_no_memory,
    bytes_read,
    bytes_written,
    conn_yields,
    socket_writes,
);

impl Stats {
    const GAUGES: &'static [&'static str] = &["curr_connections", "socket_writes"];

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
        Stats::incr(&s.cmd_get);
        Stats::incr(&s.curr_connections);
        s.reset();
        assert_eq!((Stats::read(&s.cmd_get), Stats::read(&s.curr_connections)), (0, 1));
    }
}
