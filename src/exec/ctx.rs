//! [`Ctx`]: everything a request can reach, one per server, shared by every connection.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::clock::Clock;
use crate::config::Config;
use crate::conns::Conns;
use crate::hot_keys::HotKeys;
use crate::latency::Latency;
use crate::persist::Persist;
use crate::prefixes::PrefixRule;
use crate::stats::{PrefixStats, Stats};
use crate::store::Store;
use crate::tls::Tls;
use crate::watch::Log;

/// Everything a request can touch, shared by all connections.
#[derive(Debug)]
pub struct Ctx {
    pub config: Config,
    pub store: Store,
    pub stats: Stats,
    /// Request latency per command group, per worker thread.
    pub latency: Latency,
    /// `lru_crawler enable|disable` state (on by default, as in memcached).
    pub crawler: AtomicBool,
    /// Cancelled by the `shutdown` command (`-A`); the server stops as on SIGTERM.
    pub shutdown: CancellationToken,
    /// Open sockets, for `stats conns`.
    pub conns: Conns,
    /// Set when the server starts draining: the worker threads then close every
    /// connection waiting for a command, and the rest once their batch is written.
    pub stopping: AtomicBool,
    /// With `-Z`: the certificates new TLS connections get, and TLS's counters.
    pub tls: Option<Arc<Tls>>,
    /// With `-e`: the state file, and what its saves and load did.
    pub persist: Option<Persist>,
    /// `watch`: the attached watchers and memcached's `log_*` counters; the store holds
    /// it too, for evictions.
    pub watch: Arc<Log>,
    /// `-o read_buf_mem_limit`: what connections' buffers may hold past their base.
    pub budget: Budget,
}

impl Ctx {
    pub fn new(config: Config, clock: Clock) -> Self {
        let mut store = Store::new(clock, config.memory_limit, config.max_item_size);
        if config.disable_evictions {
            store.disable_evictions();
        }
        if !config.cas_enabled {
            store.disable_cas();
        }
        let watch = Arc::new(Log::default());
        store.set_log(watch.clone());
        let persist = config.memory_file.clone().map(Persist::new);
        let rule = PrefixRule { delimiter: config.prefix_delimiter, segments: config.prefix_segments };
        let prefixes = PrefixStats::new(rule, config.prefix_limit, config.prefixes_on_at_start());
        let hot_keys = HotKeys::new(config.hot_keys, config.hot_keys_sample, !config.dump_enabled);
        let stats = Stats::new(prefixes, hot_keys);
        let budget = Budget::new(config.read_buf_mem_limit);
        Self {
            config,
            store,
            stats,
            latency: Latency::default(),
            crawler: AtomicBool::new(true),
            shutdown: CancellationToken::new(),
            conns: Conns::default(),
            stopping: AtomicBool::new(false),
            tls: None,
            persist,
            watch,
            budget,
        }
    }

    /// Serves TLS with `tls` on the listeners that ask for it.
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(Arc::new(tls));
        self
    }
}
