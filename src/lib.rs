//! Larder: an in-memory cache server that speaks memcached's text and meta protocols.
//!
//! A request's path: [`server`] accepts a socket under the connection limit and hands it
//! to a worker thread ([`server::worker`]), whose event loop runs the socket's
//! [`server::connection::Connection`] when it is ready. The connection reads into its
//! buffer; the [`protocol`] decoder yields one [`protocol::Request`] per complete command;
//! [`exec::execute`], the one place that matches on a request, runs it against the
//! [`store::Store`] and writes the reply through [`protocol::encode`] into the connection's
//! output. A command whose reply outgrows one write (a long multi-get, a metadump) comes
//! back as [`exec::Work`] that the connection steps as the socket drains. When no complete
//! command is left, one write sends the whole batch.
//!
//! One direction: `server` -> `protocol` and `exec` -> `store` -> [`memcached`] (the rules
//! every layer shares). `protocol` and `store` never import each other; `exec` alone sees
//! both. [`clock`], [`config`], [`conns`] and [`stats`] are small shared modules ([`stats`]
//! holds [`prefixes`], the counters of `stats detail`, and [`hot_keys`], the top-K of
//! `stats hotkeys`), [`tls`] the
//! certificates and settings of `-Z`, [`persist`] the state file of `-e` (saved from the
//! store and loaded into it at start, beside the request path); `daemon` serves the
//! binary's `-d`, `-u` and `-P`. [`watch`] is the log of `watch` streams, a leaf that
//! `exec`, `server` and `store` (for evictions) all log into. [`per_worker`] gives every
//! counter, histogram and sketch a copy per worker thread (requests write only their own
//! thread's cache lines; readers sum), [`latency`] times requests per command group, and
//! [`http`] is `--http`'s listener (`/metrics`, the live page, `/healthz`), beside the
//! cache port on the same runtime, reading what `stats` reads. [`budget`] is the ceiling
//! on what connections' buffers hold past their base (`-o read_buf_mem_limit`). `docs/design.md` draws the
//! same map.

pub mod budget;
pub mod clock;
pub mod config;
pub mod conns;
pub mod daemon;
pub mod exec;
pub mod hot_keys;
pub mod http;
pub mod latency;
pub mod memcached;
pub mod per_worker;
pub mod persist;
pub mod prefixes;
pub mod protocol;
pub mod sasl;
pub mod server;
pub mod stats;
pub mod store;
pub mod tls;
pub mod watch;

pub use config::{Cli, Config};
pub use exec::Ctx;
