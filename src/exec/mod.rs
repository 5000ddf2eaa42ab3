//! Where protocol meets store: [`execute`] is the one place that matches on a
//! [`Request`]. It runs the request against the [`crate::store::Store`], counts what
//! `stats` reports, and writes the reply through [`crate::protocol::encode`] into the
//! connection's [`Output`]. Synchronous, never awaits. A command whose reply can outgrow
//! one write (a multi-get, a metadump) stops when the output is full (or a walk of the
//! store has had its share of the thread) and comes back as [`Work`], which the caller
//! steps until it is done: connections, benches and fuzz
//! targets all run commands through this same path.

mod admin;
pub mod binary;
mod ctx;
mod meta;
mod retrieval;
mod stats;
mod storage;
mod watch;

pub use ctx::Ctx;

use crate::latency::Command;
use crate::memcached::StoreMode;
use crate::protocol::Request;
use crate::protocol::encode::{Reply, put_reply};
use crate::store::{SharedValue, StoreArgs, StoreOutcome};

/// The version `version` and `stats` report: the memcached release whose behaviour Larder
/// reproduces, then Larder's own. Clients and tools read the leading numbers to decide
/// which protocol features to expect (memccapable expects 1.6 answers only from "1.6");
/// the suffix keeps it honest about what answers.
pub const VERSION: &str = concat!("1.6.18-larder.", env!("CARGO_PKG_VERSION"));

/// A connection's replies: bytes, with large values spliced in from the store's memory.
pub type Output = crate::protocol::output::Output<SharedValue>;

/// What the connection does after a request.
#[derive(Debug)]
pub enum Flow {
    Continue,
    /// Goes on; memcached writes out the replies so far at this point (after a retrieval
    /// or `mn`), so nothing later can discard them.
    Transmit,
    /// Goes on with the login accepted (`-Y`).
    Authenticated,
    Close,
    /// The output is full and the command is not done: write it out, then step the work.
    Resume(Work),
    /// `watch`: from now on the connection sends this watcher's log lines (the first is
    /// its `OK`) and runs no more commands.
    Watch(std::sync::Arc<crate::watch::Watcher>),
}

/// A command that carries on over several writes, from where it stopped.
#[derive(Debug)]
pub enum Work {
    /// A retrieval's keys still to look up.
    Retrieval(retrieval::Keys),
    /// A metadump's walk.
    Dump(admin::Dump),
    /// A `stats cachedump` gathering its items.
    CacheDump(admin::CacheDump),
}

impl Work {
    /// Carries on until `out` holds `limit` bytes or the command is done: the flow it ends
    /// in, or `Flow::Resume` with what is left.
    pub fn resume(mut self, ctx: &Ctx, out: &mut Output, limit: usize) -> Flow {
        let done = match &mut self {
            Self::Retrieval(keys) => keys.step(ctx, out, limit),
            Self::Dump(dump) => dump.step(ctx, out, limit),
            Self::CacheDump(dump) => dump.step(ctx, out),
        };
        done.unwrap_or(Flow::Resume(self))
    }
}

/// What a request may need to know of the connection running it.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// Replies to earlier commands are waiting to be written (memcached refuses a
    /// metadump behind them).
    pub replies_waiting: bool,
    /// The connection already prefetched this command's keys.
    pub prefetched: bool,
    /// A long command stops once the output holds this many bytes.
    pub out_limit: usize,
    /// The socket's descriptor, as `watch` lines name the connection (`cfd=`).
    pub cfd: i32,
}

impl Caller {
    /// A caller without a socket: nothing waiting, no output bound.
    pub const DETACHED: Self = Self { replies_waiting: false, prefetched: false, out_limit: usize::MAX, cfd: 0 };
}

/// The group `req` is timed in (see [`crate::latency`]).
pub fn command_group(req: &Request) -> Command {
    match req {
        Request::Get { .. } | Request::MetaGet(_) => Command::Get,
        Request::Store { .. } | Request::TooLarge { .. } | Request::MetaSet { .. } => Command::Set,
        Request::Delete { .. } | Request::MetaDelete(_) => Command::Delete,
        Request::Arith { .. } | Request::MetaArith(_) => Command::Arith,
        Request::Touch { .. } => Command::Touch,
        _ => Command::Other,
    }
}

/// Runs one request and appends its reply (if any) to `out`.
pub fn execute(ctx: &Ctx, req: Request, out: &mut Output, caller: &Caller) -> Flow {
    // With no watcher, this load is all `watch` costs a request.
    let watching = watch::wanted(ctx);
    if watching {
        watch::before(ctx, &req, caller.cfd);
    }
    let buf = &mut out.buf;
    match req {
        Request::Get { keys, with_cas, touch } => {
            let get = retrieval::Retrieval::new(ctx, with_cas, touch);
            if !caller.prefetched {
                get.prefetch(ctx, &keys);
            }
            return Work::Retrieval(get.keys(keys)).resume(ctx, out, caller.out_limit);
        }
        Request::Store { mode, key, flags, deadline, value, noreply } => {
            let args = StoreArgs { mode, key: &key, flags, exptime: deadline, value: &value, ..StoreArgs::default() };
            let old = watching.then(|| watch::look(ctx, &key));
            let outcome = storage::store(ctx, &args, noreply, buf);
            if let Some(old) = old {
                let s = watch::Stored { key: &key, mode, flags, exptime: deadline, value_len: value.len() };
                watch::ended(ctx, &s, outcome, old, mode == StoreMode::Set, caller.cfd);
            }
        }
        Request::TooLarge { key, mode } => {
            if watching {
                watch::refused(ctx, &key, mode, crate::watch::StoreStatus::TooLarge, caller.cfd);
                // memcached then looks the old item up to drop it (`set` and `ms`).
                if ctx.watch.wants(crate::watch::kind::FETCHERS) {
                    watch::fetched(ctx, &key, caller.cfd);
                }
            }
            storage::too_large(ctx, &key, mode, true);
        }
        Request::Delete { key, noreply } => {
            let old = watch::deleting(ctx, &key);
            if storage::delete(ctx, &key, noreply, buf)
                && let Some(old) = old
            {
                watch::deleted(ctx, &key, "delete", old);
            }
        }
        Request::Arith { key, delta, incr, noreply } => storage::arith(ctx, &key, incr, delta, noreply, buf),
        Request::Touch { key, exptime, noreply } => storage::touch(ctx, &key, exptime, noreply, buf),
        Request::FlushAll { delay, noreply } => storage::flush_all(ctx, delay, noreply, buf),
        Request::Stats { group } => stats::write(ctx, group, buf),
        Request::Version => crate::protocol::encode::put_version(buf, VERSION),
        Request::Watch { kinds, noreply } => return watch::start(ctx, kinds, noreply, caller, buf),
        Request::Verbosity { noreply } => crate::protocol::encode::put_reply_unless(buf, noreply, Reply::Ok),
        Request::CacheMemlimit { mib, noreply } => admin::cache_memlimit(ctx, mib, noreply, buf),
        Request::Shutdown { mode_ok } => return admin::shutdown(ctx, mode_ok, buf),
        Request::Auth { user, password } => return admin::login(ctx, &user, &password, buf),
        Request::MetaNoop => {
            put_reply(buf, Reply::MetaNoop);
            return Flow::Transmit;
        }
        Request::MetaGet(m) => meta::get(ctx, &m, buf),
        Request::MetaDelete(m) => {
            use crate::store::DeleteOutcome::{Deleted, Invalidated};
            let old = watch::deleting(ctx, &m.key);
            // `md x` stores an empty item as a `set` does: memcached logs its look at
            // the old item and the store.
            let emptied = (watching && m.remove_value).then(|| watch::look(ctx, &m.key));
            let outcome = meta::delete(ctx, &m, buf);
            if let Some(looked) = emptied
                && matches!(outcome, Deleted | Invalidated)
            {
                let exptime = m.ttl.touch.map_or(0, |(d, _)| d);
                let s =
                    watch::Stored { key: &m.key, mode: StoreMode::Set, flags: m.client_flags, exptime, value_len: 0 };
                watch::ended(ctx, &s, StoreOutcome::Stored, looked, false, caller.cfd);
            }
            if outcome == Deleted
                && let Some(old) = old
            {
                // `md x` leaves an empty item, which is what memcached logs.
                let left = if m.remove_value { watch::deleting(ctx, &m.key).unwrap_or(old) } else { old };
                watch::deleted(ctx, &m.key, "md", left);
            }
        }
        Request::MetaArith(m) => {
            // `ma N` creating the item logs as memcached's add of it does.
            let vivifies = watching && m.ttl.vivify.is_some() && !ctx.store.probe(&m.key).is_live();
            meta::arith(ctx, &m, buf);
            if vivifies {
                watch::vivified(ctx, &m.key, caller.cfd);
            }
        }
        Request::MetaSet { meta, value } => {
            let old = watching.then(|| watch::look(ctx, &meta.key));
            let (outcome, mode) = meta::set(ctx, &meta, &value, buf);
            if let Some(old) = old {
                let exptime = meta.ttl.touch.map_or(0, |(d, _)| d);
                let (key, flags) = (&meta.key[..], meta.client_flags);
                let s = watch::Stored { key, mode, flags, exptime, value_len: value.len() };
                watch::ended(ctx, &s, outcome, old, true, caller.cfd);
            }
        }
        Request::MetaDebug { key, .. } => meta::debug(ctx, &key, buf),
        Request::NoOp { reply, noreply } => crate::protocol::encode::put_reply_unless(buf, noreply, reply),
        Request::CacheDump { args } => {
            if let Some(dump) = admin::cachedump(ctx, args, buf) {
                return Work::CacheDump(dump).resume(ctx, out, caller.out_limit);
            }
        }
        Request::Crawler { enable } => admin::crawler(ctx, enable, buf),
        Request::Crawl { classes, dump: None } => admin::crawl(ctx, classes, buf),
        Request::Crawl { classes, dump: Some(format) } => {
            match admin::dump(ctx, classes, format, caller.replies_waiting) {
                Ok(dump) => return Work::Dump(dump).resume(ctx, out, caller.out_limit),
                Err(refused) => put_reply(buf, refused),
            }
        }
        Request::RefreshCerts { noreply } => admin::refresh_certs(ctx, noreply, buf),
        Request::Quit => return Flow::Close,
    }
    Flow::Continue
}

/// Runs one request to its end for a caller without a socket (benches, fuzz targets,
/// tests): [`execute`], then every step of its work, with no bound on the output.
pub fn run(ctx: &Ctx, req: Request, out: &mut Output) -> Flow {
    let mut flow = execute(ctx, req, out, &Caller::DETACHED);
    while let Flow::Resume(work) = flow {
        flow = work.resume(ctx, out, usize::MAX);
    }
    // No socket to stream to: the watcher goes at once.
    if let Flow::Watch(w) = &flow {
        ctx.watch.remove(w);
    }
    flow
}
