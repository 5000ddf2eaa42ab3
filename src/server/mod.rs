//! Accepting connections: one accept loop per listener, the `-c` connection limit with
//! memcached's refusal, handing each socket to a worker thread, and graceful shutdown
//! (stop accepting, let connections finish the batch in hand, wait for them).
//!
//! Threads as memcached lays them out: the caller's runtime accepts (and runs the
//! background tasks), and hands each socket to one of `-t` worker threads in turn
//! ([`worker`]), each with its own epoll. A connection lives on one thread: no
//! work stealing, no wake-ups across threads.

pub mod connection;
pub mod transport;
pub mod worker;

use std::future::Future;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Span, debug, error, info, info_span, warn};

use connection::Connection;
use transport::Transport;
use worker::{NewConn, Workers};

use crate::exec::Ctx;
use crate::protocol::encode::Reply;
use crate::stats::Stats;
use crate::tls::Tls;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long shutdown waits for open connections before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A socket the server accepts on: TCP, TCP serving TLS (`-Z`), or a unix domain socket
/// (`-s`).
pub enum Listener {
    Tcp(TcpListener),
    Tls(TcpListener),
    Unix(UnixListener),
}

impl From<TcpListener> for Listener {
    fn from(l: TcpListener) -> Self {
        Self::Tcp(l)
    }
}

impl From<UnixListener> for Listener {
    fn from(l: UnixListener) -> Self {
        Self::Unix(l)
    }
}

/// memcached's form of an address in `stats conns`.
fn tcp_name(a: &std::net::SocketAddr) -> String {
    if a.is_ipv4() { format!("tcp:{a}") } else { format!("tcp6:{a}") }
}

fn unix_name(a: &tokio::net::unix::SocketAddr) -> String {
    format!("unix:{}", a.as_pathname().map_or_else(String::new, |p| p.display().to_string()))
}

/// Serves `listeners` until `shutdown` completes, then drains connections and returns.
pub async fn run<L: Into<Listener>>(
    listeners: impl IntoIterator<Item = L>,
    ctx: Arc<Ctx>,
    shutdown: impl Future<Output = ()>,
) {
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let workers = match Workers::start(ctx.config.threads, &ctx) {
        Ok(w) => Arc::new(w),
        Err(e) => return error!(%e, "cannot start the worker threads"),
    };
    let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
    let ticker = tokio::spawn(ctx.store.clock().clone().run_ticker());
    let reclaimer = tokio::spawn(reclaim_expired(ctx.clone()));
    for listener in listeners {
        let (ctx, token, permits, tracker2, workers) =
            (ctx.clone(), token.clone(), permits.clone(), tracker.clone(), workers.clone());
        let loops = Loops { ctx, token, permits, tracker: tracker2, workers };
        match listener.into() {
            Listener::Tcp(l) => {
                if let Ok(local) = l.local_addr() {
                    loops.ctx.conns.add_listener(l.as_raw_fd(), tcp_name(&local));
                }
                tracker.spawn(accept_loop(l, loops, None));
            }
            Listener::Tls(l) => {
                let Some(tls) = loops.ctx.tls.clone() else {
                    error!("a TLS listener, but no certificates loaded (-Z); not listening there");
                    continue;
                };
                if let Ok(local) = l.local_addr() {
                    loops.ctx.conns.add_listener(l.as_raw_fd(), tcp_name(&local));
                }
                tracker.spawn(accept_loop(l, loops, Some(tls)));
            }
            Listener::Unix(l) => {
                if let Ok(local) = l.local_addr() {
                    loops.ctx.conns.add_listener(l.as_raw_fd(), unix_name(&local));
                }
                tracker.spawn(accept_loop(l, loops, None));
            }
        }
    }
    // memcached counts its listening sockets as connections in total_connections.
    ctx.stats.local().total_connections.fetch_add(ctx.conns.listeners() as u64, std::sync::atomic::Ordering::Relaxed);
    tokio::select! {
        () = shutdown => {}
        () = ctx.shutdown.cancelled() => {}
    }
    info!("shutting down: no new connections; draining open ones");
    ctx.stopping.store(true, std::sync::atomic::Ordering::Release);
    workers.wake_all();
    token.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await.is_err() {
        warn!("connections still open after {DRAIN_TIMEOUT:?}; leaving them");
    }
    ticker.abort();
    reclaimer.abort();
    drop(workers);
}

/// How often background expiry runs, and how many buckets of each shard it looks at.
const RECLAIM_EVERY: Duration = Duration::from_millis(100);
const RECLAIM_BUCKETS: usize = 1024;

/// How often the slab is checked for pages left sparse by a change in item sizes: a
/// burst of large values after small ones should not wait long for that memory.
const DEFRAGMENT_EVERY: Duration = Duration::from_millis(10);

/// How often the background task wakes once nothing has been stored or removed for
/// [`QUIET_CHECKS`] checks in a row: an idle cache (or one only read from) costs no CPU
/// to speak of, as memcached's does not.
const IDLE_EVERY: Duration = Duration::from_secs(1);
const QUIET_CHECKS: u32 = 10;

/// Gives expired items' memory back without waiting for a client to touch them: small
/// batches, each shard's lock held only for its own short scan, on the blocking pool so a
/// worker thread never stalls on it. In between, keeps the slab's pages well filled.
/// What needs doing follows from items being stored or removed, so while none are, the
/// task only looks for items that may have died (and wakes less often).
async fn reclaim_expired(ctx: Arc<Ctx>) {
    let store = &ctx.store;
    let (mut churn, mut quiet) = (store.churn(), 0u32);
    let (mut last_pass, mut churn_at_pass) = (tokio::time::Instant::now(), None);
    loop {
        tokio::time::sleep(if quiet >= QUIET_CHECKS { IDLE_EVERY } else { DEFRAGMENT_EVERY }).await;
        let now = store.churn();
        quiet = if now == churn { quiet.saturating_add(1) } else { 0 };
        churn = now;
        let ctx = ctx.clone();
        if last_pass.elapsed() >= RECLAIM_EVERY {
            last_pass = tokio::time::Instant::now();
            if churn_at_pass != Some(churn) || store.may_have_dead() {
                churn_at_pass = Some(churn);
                let _ = tokio::task::spawn_blocking(move || ctx.store.reclaim_expired(RECLAIM_BUCKETS)).await;
            }
        } else if quiet == 0 && store.doom_sparse(true) {
            let _ = tokio::task::spawn_blocking(move || ctx.store.move_out_of_doomed_pages()).await;
        }
    }
}

/// What the accept loop needs of a listener.
trait Accept: Send + 'static {
    type Stream: tokio::io::AsyncWrite + AsRawFd + Send + Unpin + 'static;
    /// The socket between threads, registered with no runtime (in non-blocking mode).
    type Std: Into<std::os::fd::OwnedFd>;
    /// A new client, with its and our address as `stats conns` names them.
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, String, String)>> + Send;
    fn into_std(s: Self::Stream) -> std::io::Result<Self::Std>;
}

impl Accept for TcpListener {
    type Stream = tokio::net::TcpStream;
    type Std = std::net::TcpStream;

    fn into_std(s: Self::Stream) -> std::io::Result<Self::Std> {
        s.into_std()
    }

    async fn accept(&self) -> std::io::Result<(Self::Stream, String, String)> {
        let (s, peer) = TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        let local = s.local_addr().unwrap_or(peer);
        Ok((s, tcp_name(&peer), tcp_name(&local)))
    }
}

impl Accept for UnixListener {
    type Stream = tokio::net::UnixStream;
    type Std = std::os::unix::net::UnixStream;

    fn into_std(s: Self::Stream) -> std::io::Result<Self::Std> {
        s.into_std()
    }

    async fn accept(&self) -> std::io::Result<(Self::Stream, String, String)> {
        let (s, _) = UnixListener::accept(self).await?;
        let local = self.local_addr().map(|a| unix_name(&a)).unwrap_or_default();
        // memcached names a unix client by the socket it came in on.
        Ok((s, local.clone(), local))
    }
}

/// What every accept loop shares.
struct Loops {
    ctx: Arc<Ctx>,
    token: CancellationToken,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    workers: Arc<Workers>,
}

/// Accepts on `listener` until shutdown; `tls`: its connections speak TLS. The accept
/// loop does no cryptography: the handshake runs on the connection's worker.
async fn accept_loop<L: Accept>(listener: L, loops: Loops, tls: Option<Arc<Tls>>) {
    let Loops { ctx, token, permits, tracker, workers } = loops;
    loop {
        let (mut socket, peer, local) = tokio::select! {
            () = token.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(%e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            Stats::incr(&ctx.stats.local().rejected_connections);
            debug!(%peer, "connection refused: over the limit");
            tracker.spawn(async move {
                let _ = socket.write_all(Reply::TooManyConnections.line()).await;
            });
            continue;
        };
        Stats::incr(&ctx.stats.local().total_connections);
        let fd = socket.as_raw_fd();
        let row = ctx.conns.add(fd, peer.clone(), local, ctx.store.clock().now());
        let slot = Slot::take(ctx.clone(), permit, fd);
        // A span per connection costs the subscriber's enter and exit on every event, so
        // there is one only when its debug lines would be printed.
        let span = if tracing::enabled!(tracing::Level::DEBUG) { info_span!("conn", %peer) } else { Span::none() };
        let socket = match L::into_std(socket) {
            Ok(s) => s.into(),
            Err(e) => {
                warn!(%e, %peer, "cannot hand the connection to a worker");
                continue;
            }
        };
        let transport = match &tls {
            None => Transport::plain(socket),
            Some(tls) => match tls.accept() {
                Ok(session) => Transport::tls(socket, session, tls.counters.clone()),
                Err(e) => {
                    error!(%e, %peer, "cannot start TLS");
                    continue;
                }
            },
        };
        let origin = crate::watch::Origin::from_conn_name(&peer, fd);
        let conn = Connection::new(transport, ctx.clone()).with_row(row).with_origin(origin);
        // Shutdown waits for the tracker's tokens: one per open connection.
        workers.hand(NewConn { conn, hold: Box::new((slot, tracker.token())), peer, span });
    }
}

/// A connection's place under the limit; dropping it (even in a panic) frees the place.
struct Slot {
    ctx: Arc<Ctx>,
    _permit: OwnedSemaphorePermit,
    fd: i32,
}

impl Slot {
    fn take(ctx: Arc<Ctx>, permit: OwnedSemaphorePermit, fd: i32) -> Self {
        Stats::incr(&ctx.stats.local().curr_connections);
        Self { ctx, _permit: permit, fd }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.ctx.conns.remove(self.fd);
        self.ctx.stats.local().curr_connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
