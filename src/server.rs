//! Accepting connections: one accept loop per listener, the `-c` connection limit with
//! memcached's refusal, one task per socket, and graceful shutdown (stop accepting, let
//! connections finish the batch in hand, wait for them).
//!
//! Threads as memcached lays them out: the caller's runtime accepts (and runs the
//! background tasks), and hands each socket to one of `-t` worker threads in turn, each a
//! single-threaded runtime with its own epoll. A connection lives on one thread: no
//! work stealing, no wake-ups across threads, nothing shared but the store.

use std::any::Any;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, debug, error, info, info_span, warn};

use crate::connection::{Connection, Socket};
use crate::exec::Ctx;
use crate::stats::Stats;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long shutdown waits for open connections before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// memcached's reply to a connection over the limit, after which it closes the socket.
const TOO_MANY: &[u8] = b"ERROR Too many open connections\r\n";

/// A socket the server accepts on: TCP, or a unix domain socket (`-s`).
pub enum Listener {
    Tcp(TcpListener),
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
    let workers = Arc::new(Workers::start(ctx.config.threads));
    let permits = Arc::new(Semaphore::new(ctx.config.max_connections));
    let ticker = tokio::spawn(ctx.store.clock().clone().run_ticker());
    let reclaimer = tokio::spawn(reclaim_expired(ctx.clone()));
    for listener in listeners {
        let (ctx, token, permits, tracker2, workers) =
            (ctx.clone(), token.clone(), permits.clone(), tracker.clone(), workers.clone());
        match listener.into() {
            Listener::Tcp(l) => {
                if let Ok(local) = l.local_addr() {
                    ctx.conns.add_listener(l.as_raw_fd(), tcp_name(&local));
                }
                tracker.spawn(accept_loop(l, ctx, token, permits, tracker2, workers));
            }
            Listener::Unix(l) => {
                if let Ok(local) = l.local_addr() {
                    ctx.conns.add_listener(l.as_raw_fd(), unix_name(&local));
                }
                tracker.spawn(accept_loop(l, ctx, token, permits, tracker2, workers));
            }
        }
    }
    tokio::select! {
        () = shutdown => {}
        () = ctx.shutdown.cancelled() => {}
    }
    info!("shutting down: no new connections; draining open ones");
    ctx.stopping.store(true, std::sync::atomic::Ordering::Release);
    token.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await.is_err() {
        warn!("connections still open after {DRAIN_TIMEOUT:?}; leaving them");
    }
    ticker.abort();
    reclaimer.abort();
    drop(workers);
}

/// The threads connections run on, each a current-thread runtime, handed sockets in turn.
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    next: std::sync::atomic::AtomicUsize,
    /// Dropped to stop the threads (their runtimes then drop any connection left).
    _stop: tokio::sync::watch::Sender<()>,
}

impl Workers {
    fn start(threads: usize) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(());
        let handles = (0..threads.max(1))
            .map(|i| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a worker thread's runtime");
                let handle = rt.handle().clone();
                let mut stopped = stopped.clone();
                std::thread::Builder::new()
                    .name(format!("larder-worker-{i}"))
                    .spawn(move || rt.block_on(async move { while stopped.changed().await.is_ok() {} }))
                    .expect("a worker thread");
                handle
            })
            .collect();
        Self { handles, next: std::sync::atomic::AtomicUsize::new(0), _stop: stop }
    }

    /// The next worker in turn.
    fn next(&self) -> &tokio::runtime::Handle {
        &self.handles[self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.handles.len()]
    }
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
    /// The socket between threads, registered with no runtime.
    type Std: AsRawFd + Send + Sync + 'static;
    /// A new client, with its and our address as `stats conns` names them.
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, String, String)>> + Send;
    fn into_std(s: Self::Stream) -> std::io::Result<Self::Std>;
    /// Registers the socket with the current thread's runtime.
    fn from_std(s: Self::Std) -> std::io::Result<Socket<Self::Std>> {
        // SAFETY: the std stream owns its descriptor, which stays open and the same until
        // the stream is dropped, and the stream is dropped only with the `AsyncFd`.
        Ok(unsafe { Socket::register(s) }?)
    }
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

async fn accept_loop<L: Accept>(
    listener: L,
    ctx: Arc<Ctx>,
    token: CancellationToken,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    workers: Arc<Workers>,
) {
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
            Stats::incr(&ctx.stats.rejected_connections);
            debug!(%peer, "connection refused: over the limit");
            tracker.spawn(async move {
                let _ = socket.write_all(TOO_MANY).await;
            });
            continue;
        };
        Stats::incr(&ctx.stats.total_connections);
        let fd = socket.as_raw_fd();
        let row = ctx.conns.add(fd, peer.clone(), local, ctx.store.clock().now());
        let guard = Slot::take(ctx.clone(), permit, fd);
        let (cancel, ctx) = (token.child_token(), ctx.clone());
        // A span per connection costs the subscriber's enter and exit on every poll, so
        // there is one only when its debug lines would be printed.
        let span = if tracing::enabled!(tracing::Level::DEBUG) { info_span!("conn", %peer) } else { Span::none() };
        let socket = match L::into_std(socket) {
            Ok(s) => s,
            Err(e) => {
                warn!(%e, %peer, "cannot hand the connection to a worker");
                continue;
            }
        };
        let task = async move {
            debug!("connection opened");
            let socket = match L::from_std(socket) {
                Ok(s) => s,
                Err(e) => return warn!(%e, "cannot register the connection"),
            };
            let conn = Connection::new(socket, ctx, cancel).with_row(row);
            match CatchUnwind(Box::pin(conn.run())).await {
                Ok(Ok(())) => debug!("connection closed"),
                Ok(Err(e)) => debug!(%e, "connection closed on error"),
                Err(panic) => error!(%peer, panic = panic_message(&*panic), "connection task panicked; closed it"),
            }
            drop(guard);
        };
        workers.next().spawn(tracker.track_future(task.instrument(span)));
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
        Stats::incr(&ctx.stats.curr_connections);
        Self { ctx, _permit: permit, fd }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.ctx.conns.remove(self.fd);
        self.ctx.stats.curr_connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs a connection's future, turning a panic in it into an `Err`, so the panic is logged
/// with the connection's span and its slot is given back. (Tokio would isolate the panic
/// anyway; this makes it visible in our log.) The connection's state is dropped with the
/// future, so nothing half-updated is used again: the socket closes.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}
