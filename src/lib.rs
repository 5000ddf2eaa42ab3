//! Larder: an in-memory cache server that speaks memcached's text protocol.
//!
//! Request flow: [`server`] accepts a socket under the connection limit and hands it to a
//! [`worker`] thread, whose event loop runs its [`connection::Connection`] whenever the
//! socket is ready. The connection reads into its buffer and drains it: the
//! [`protocol::Decoder`] yields one [`protocol::Request`] per complete command, which
//! [`exec::execute`] runs against the [`store::Store`], appending the reply to the write
//! buffer. When no complete command is left, one write sends the whole batch.
//!
//! Three layers, one direction: connection (non-blocking I/O) -> protocol (bytes to requests) ->
//! exec -> store (data). `protocol` never imports from `store`; `store` takes from
//! `protocol` only what both must agree on (the storage mode, memcached's item-size rule,
//! the meta TTL flags and its number parsing).

pub mod clock;
pub mod config;
pub mod connection;
pub mod conns;
pub mod daemon;
pub mod exec;
pub mod protocol;
pub mod server;
pub mod stats;
pub mod store;
pub mod worker;

pub use config::{Cli, Config};
pub use exec::Ctx;
