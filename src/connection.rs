//! One client socket: read -> decode every complete request -> execute each -> one write
//! for the whole batch of replies. Owns the read and write buffers and the decoder state.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use crate::conns::ConnRow;
use crate::exec::{self, Ctx, Flow};
use crate::protocol::decode::Limits;
use crate::protocol::encode::Output;
use crate::protocol::{Decoder, Request};
use crate::stats::Stats;

/// Read buffer capacity kept free before each read.
const READ_CHUNK: usize = 16 * 1024;
/// Room below which the read buffer is topped up to [`READ_CHUNK`] before a read.
const MIN_READ_ROOM: usize = 4 * 1024;

/// Most bytes taken from the socket by one read. Input is decoded before the next read, so
/// with the decoder's limits a connection buffers at most one unfinished request (a line of
/// 2 KiB, a `get` line of 4 MiB, or a data block up to `-I`) plus one read.
const MAX_READ: usize = 64 * 1024;

/// Replies are written out (and nothing more is read or run until they are) once they pass
/// this size, even in the middle of a multi-get: a client that sends without reading makes
/// the server hold at most this plus one value for it.
pub const MAX_PENDING_OUTPUT: usize = 1 << 20;

/// A buffer whose capacity grew past this (a large item, a long multi-get) is swapped for
/// a small one once it is drained, so an idle connection holds little memory.
const KEEP_CAPACITY: usize = 64 * 1024;

/// memcached queues a pipeline's replies and writes them when its input runs dry, after
/// a retrieval or `mn`, and after every 20 commands (21 the first time) of one read event.
/// Replies not yet written are dropped when the connection is closed for bad input, and a
/// multi-get with an over-long key discards them too. Clients have been seen to depend on
/// neither, but the byte-exact differential test does, so this ledger mirrors it.
#[derive(Debug, Default)]
struct Pending {
    /// Bytes of the write buffer memcached would already have written.
    committed: usize,
    commands: usize,
    /// Where the batch's reply to a not-yet-logged-in client starts (`-Y`).
    login_reply: Option<usize>,
}

/// Lines of a pipelined batch looked at for get keys to prefetch.
const PREFETCH_LINES: usize = 32;

/// memcached's `-R` (requests per event) default.
const REQS_PER_EVENT: usize = 20;

impl Pending {
    fn after_command(&mut self, flow: Flow, wbuf_len: usize) {
        self.commands += 1;
        let yields = self.commands > REQS_PER_EVENT && (self.commands - 1).is_multiple_of(REQS_PER_EVENT);
        if flow == Flow::Transmit || yields {
            self.committed = wbuf_len;
        }
    }
}

/// Per-connection state.
pub struct Connection<S: AsRawFd = std::net::TcpStream> {
    socket: Socket<S>,
    ctx: Arc<Ctx>,
    decoder: Decoder,
    rbuf: BytesMut,
    out: Output,
    cancel: CancellationToken,
    /// `-o idle_timeout`: how long the client may keep the connection waiting on it.
    idle_timeout: Option<Duration>,
    /// When the client last sent a whole command or took the last of its replies:
    /// idleness counts from there. As in memcached, bytes that make no command do not
    /// count, so a client trickling a command it never finishes is idle.
    last_active: Instant,
    /// This connection's row in `stats conns`.
    row: Option<Arc<ConnRow>>,
}

/// A socket a connection serves: a TCP or unix stream, registered with the worker's
/// reactor. Requests come in and replies go out by `recv`, `send` and `sendmsg` made as
/// raw system calls, each tried at once and waited for only when the socket says it
/// would block. The tokio stream types' way (a read-buffer future over mio's `read` over
/// libc's) costs more per request than the call itself: libc's wrappers add thread
/// cancellation bookkeeping (two atomic operations), a vectored write would be a
/// `writev` (the kernel's longer way through the file layer), and waiting on readiness
/// through a future locks the socket's waiter list to leave it, every call.
pub type Socket<S> = AsyncFd<S>;

fn recv(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length during the call; no address is asked for.
    let n = unsafe {
        libc::syscall(libc::SYS_recvfrom, fd, buf.as_mut_ptr(), buf.len(), 0, std::ptr::null::<u8>(), 0)
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn sendto(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for its length during the call; no address is passed.
    let n = unsafe {
        libc::syscall(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), libc::MSG_NOSIGNAL, std::ptr::null::<u8>(), 0)
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn sendmsg(fd: RawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data (all zero is a valid empty message); IoSlice is
    // guaranteed ABI-compatible with iovec on Unix, and `iov` outlives the call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr().cast_mut().cast();
        msg.msg_iovlen = iov.len();
        libc::syscall(libc::SYS_sendmsg, fd, &raw const msg, libc::MSG_NOSIGNAL)
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Reads once into `buf`'s spare room (at most [`MAX_READ`] bytes), waiting until the
/// socket has something. A read that leaves room unfilled has drained the socket, so its
/// readiness is cleared then and the next read waits for the next event instead of
/// asking the kernel to say it has nothing (as tokio's own streams do).
fn poll_recv<S: AsRawFd>(socket: &Socket<S>, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    if buf.capacity() == buf.len() {
        buf.reserve(READ_CHUNK);
    }
    loop {
        let mut ready = std::task::ready!(socket.poll_read_ready(cx))?;
        let room = &mut buf.spare_capacity_mut()[..];
        let len = room.len().min(MAX_READ);
        if let Ok(r) = ready.try_io(|s| recv(s.as_raw_fd(), &mut room[..len])) {
            let n = r?;
            if n < len {
                ready.clear_ready();
            }
            // SAFETY: the kernel initialised the first `n` bytes of the spare room.
            unsafe { buf.set_len(buf.len() + n) };
            return Poll::Ready(Ok(n));
        }
    }
}

/// Makes one write of `out` from byte `done` on, waiting until the socket takes some of
/// it: a `send` when the rest is one stretch of the buffer, else one `sendmsg` of up to
/// [`MAX_IOV`] stretches, straight from the buffer and the values' own blocks.
fn poll_send<S: AsRawFd>(socket: &Socket<S>, cx: &mut Context<'_>, out: &Output, done: usize) -> Poll<io::Result<usize>> {
    loop {
        let mut ready = std::task::ready!(socket.poll_write_ready(cx))?;
        let sent = ready.try_io(|s| {
            if out.len() == out.buf.len() {
                return sendto(s.as_raw_fd(), &out.buf[done..]);
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = out.slices(done, &mut iov);
            sendmsg(s.as_raw_fd(), &iov[..n])
        });
        if let Ok(r) = sent {
            return Poll::Ready(r);
        }
    }
}

impl<S: AsRawFd> Connection<S> {
    pub fn new(socket: Socket<S>, ctx: Arc<Ctx>, cancel: CancellationToken) -> Self {
        let mut decoder = Decoder::new(Limits { max_item_size: ctx.config.max_item_size }, ctx.store.clock().clone());
        if ctx.config.auth.is_some() {
            decoder = decoder.require_auth();
        }
        let idle_timeout =
            (ctx.config.idle_timeout > 0).then(|| Duration::from_secs(u64::from(ctx.config.idle_timeout)));
        Self {
            socket,
            ctx,
            idle_timeout,
            last_active: Instant::now(),
            decoder,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            out: Output::new(BytesMut::with_capacity(READ_CHUNK)),
            cancel,
            row: None,
        }
    }

    /// Reports this connection's activity in `stats conns`.
    pub fn with_row(mut self, row: Arc<ConnRow>) -> Self {
        self.row = Some(row);
        self
    }

    /// Serves the socket until the client leaves, a fatal protocol error, or shutdown.
    pub async fn run(mut self) -> io::Result<()> {
        // One waiter for shutdown for the connection's life, registered by its first poll;
        // later waits only read `stopping`, which is set before the token is cancelled.
        let mut cancelled = Box::pin(self.cancel.clone().cancelled_owned());
        let mut registered = false;
        let ctx = self.ctx.clone();
        let mut stop = std::future::poll_fn(move |cx| {
            if ctx.stopping.load(Acquire) {
                return Poll::Ready(());
            }
            if !registered {
                registered = true;
                return cancelled.as_mut().poll(cx);
            }
            Poll::Pending
        });
        loop {
            let mut commands = false;
            // memcached transmits a batch's replies only at certain points (see
            // `Pending`); until then a fatal error or a failing multi-get discards them.
            let mut pending = Pending::default();
            if let Some(row) = &self.row {
                row.set_busy(true, self.ctx.store.clock().now());
            }
            // A pipeline of gets: start loading their items now, so the lookups below do
            // not each wait on memory in turn.
            let mut batch = None;
            let prefetched = crate::protocol::pipelined_get_keys(&self.rbuf, PREFETCH_LINES, |k| {
                batch.get_or_insert_with(|| self.ctx.store.prefetch()).add(k);
            });
            if let Some(batch) = batch {
                batch.finish();
            }
            loop {
                let login = self.decoder.awaiting_auth();
                let decoded = self.decoder.decode(&mut self.rbuf);
                if login && !matches!(decoded, Ok(None)) {
                    // memcached answers everything before a login in one reused reply
                    // slot: of several such replies in a batch only the last is sent.
                    let start = *pending.login_reply.get_or_insert(self.out.buf.len());
                    self.out.truncate(start);
                }
                match decoded {
                    Ok(Some(req)) => {
                        trace!(cmd = req.name(), "request");
                        commands = true;
                        #[cfg(debug_assertions)]
                        if let Some(hook) = FAULT_HOOK.get() {
                            hook(&req);
                        }
                        let flow = match req {
                            Request::Get { keys, with_cas, touch } => {
                                let get = exec::Retrieval::new(&self.ctx, with_cas, touch);
                                // Unless the walk above already did, for this command.
                                if pending.commands >= prefetched {
                                    get.prefetch(&self.ctx, &keys);
                                }
                                for key in keys.iter() {
                                    get.key(&self.ctx, key, &mut self.out);
                                    if self.out.len() >= MAX_PENDING_OUTPUT {
                                        self.flush().await?;
                                        pending.committed = 0;
                                    }
                                }
                                get.end(&mut self.out.buf)
                            }
                            req => exec::execute(&self.ctx, req, &mut self.out.buf),
                        };
                        match flow {
                            Flow::Close => return self.flush().await,
                            Flow::Authenticated => self.decoder.authenticated(),
                            _ => {}
                        }
                        pending.after_command(flow, self.out.buf.len());
                        if self.out.len() >= MAX_PENDING_OUTPUT {
                            self.flush().await?;
                            pending.committed = 0;
                        }
                    }
                    Ok(None) => break,
                    Err(rejected) => {
                        trace!(error = %rejected.error, "rejected");
                        commands = true;
                        if rejected.error.is_fatal() {
                            debug!(error = %rejected.error, "closing connection");
                            self.out.truncate(pending.committed);
                            return self.flush().await;
                        }
                        if rejected.error.culls_pending() {
                            self.out.truncate(pending.committed);
                        }
                        if let (Some(reply), false) = (rejected.error.reply(), rejected.noreply) {
                            self.out.buf.put_slice(reply);
                        }
                        pending.after_command(Flow::Continue, self.out.buf.len());
                    }
                }
            }
            if let Some(row) = &self.row {
                row.set_busy(false, 0);
            }
            if commands && self.idle_timeout.is_some() {
                self.last_active = Instant::now();
            }
            self.flush().await?;
            self.shrink_input();
            // Requests split off the front shrink the room behind them. Between requests
            // it is made again (by taking the whole buffer back, once they are dropped)
            // only when little is left, not after every request; a request still arriving
            // (a large value) always gets a full chunk to read into.
            if !self.rbuf.is_empty() || self.rbuf.capacity() < MIN_READ_ROOM {
                self.rbuf.reserve(READ_CHUNK);
            }
            let (idle_timeout, last_active) = (self.idle_timeout, self.last_active);
            let idle = async move {
                match idle_timeout {
                    Some(t) => tokio::time::sleep_until(last_active + t).await,
                    None => std::future::pending().await,
                }
            };
            let read = std::future::poll_fn(|cx| poll_recv(&self.socket, cx, &mut self.rbuf));
            let n = tokio::select! {
                // The read first: it is what wakes a connection nearly every time, and
                // then nothing else need be polled.
                biased;
                r = read => r?,
                () = &mut stop => return Ok(()),
                () = idle => {
                    Stats::incr(&self.ctx.stats.idle_kicks);
                    debug!("closing idle connection");
                    return Ok(());
                }
            };
            if n == 0 {
                return Ok(());
            }
            self.ctx.stats.bytes_read.fetch_add(n as u64, Relaxed);
        }
    }

    /// Writes out the pending replies. With an idle timeout, a client that reads none of
    /// them for that long is disconnected.
    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        // Counted before writing, so a client that has the reply sees the count.
        self.ctx.stats.bytes_written.fetch_add(self.out.len() as u64, Relaxed);
        self.ctx.stats.socket_writes.fetch_add(1, Relaxed);
        let large = self.out.buf.capacity() > KEEP_CAPACITY;
        let (total, mut done) = (self.out.len(), 0);
        while done < total {
            let write = std::future::poll_fn(|cx| poll_send(&self.socket, cx, &self.out, done));
            let n = match self.idle_timeout {
                None => write.await?,
                Some(t) => tokio::time::timeout(t, write).await.unwrap_or_else(|_| {
                    Stats::incr(&self.ctx.stats.idle_kicks);
                    debug!("closing connection: client reads no replies");
                    Err(io::ErrorKind::TimedOut.into())
                })?,
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        self.out.clear();
        if large {
            self.out.buf = BytesMut::with_capacity(READ_CHUNK);
        }
        if self.idle_timeout.is_some() {
            self.last_active = Instant::now();
        }
        Ok(())
    }

    /// Gives back a read buffer that grew for a large request, keeping what it still holds.
    fn shrink_input(&mut self) {
        if self.rbuf.capacity() > KEEP_CAPACITY && self.rbuf.len() <= READ_CHUNK {
            let mut small = BytesMut::with_capacity(READ_CHUNK);
            small.extend_from_slice(&self.rbuf);
            self.rbuf = small;
        }
    }
}

/// Most slices one vectored write takes (Linux allows 1,024). A batch rarely has more
/// than a few large values (each is two slices); a longer one takes another call, and
/// the slice array, set up on every flush, stays small.
const MAX_IOV: usize = 16;

/// Fault injection for tests, in debug builds only: when set, runs before each request,
/// so a test can make one connection's task panic and watch the server carry on.
#[cfg(debug_assertions)]
#[doc(hidden)]
pub static FAULT_HOOK: std::sync::OnceLock<fn(&Request)> = std::sync::OnceLock::new();
