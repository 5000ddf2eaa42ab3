//! Worker threads: each runs an event loop (mio, so epoll) over the connections handed to
//! it, and a socket's readiness event calls its connection's code directly: no task, waker
//! or run queue between the kernel's word and the work, and no atomic state to step
//! through for each request. Threads as memcached lays them out: a connection lives on
//! one thread, and threads share only the server's `Ctx` (the store and the counters).

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{Span, debug, error};

use super::connection::{Connection, Wait};
use crate::exec::Ctx;

/// A connection for a worker, with what it holds while open (its place under the
/// connection limit, say), dropped when it closes.
pub struct NewConn {
    pub conn: Connection,
    pub hold: Box<dyn Send>,
    /// The client's address, for the log.
    pub peer: String,
    /// Entered while the connection runs, so its debug lines name it.
    pub span: Span,
}

/// The worker threads, handed connections in turn.
pub struct Workers {
    workers: Vec<Handle>,
    next: AtomicUsize,
    /// Set when the workers are dropped: each thread closes what it still has and ends.
    quit: Arc<AtomicBool>,
}

struct Handle {
    tx: mpsc::Sender<NewConn>,
    waker: Waker,
}

const WAKER: Token = Token(usize::MAX);

/// How often a worker looks for connections past the idle timeout (`-o idle_timeout`
/// counts in seconds).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// How often a worker with watchers sends them the lines logged since (memcached's
/// logger thread polls every 1 ms to 1 s, backing off while nothing is logged).
const WATCH_TICK: Duration = Duration::from_millis(10);

impl Workers {
    pub fn start(threads: usize, ctx: &Arc<Ctx>) -> std::io::Result<Self> {
        // Should a later thread fail to start, dropping this stops the earlier ones.
        let mut started =
            Self { workers: Vec::new(), next: AtomicUsize::new(0), quit: Arc::new(AtomicBool::new(false)) };
        for i in 0..threads.max(1) {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER)?;
            let (tx, rx) = mpsc::channel();
            let mut worker = Worker {
                poll,
                rx,
                ctx: ctx.clone(),
                conns: Vec::new(),
                free: Vec::new(),
                turn: Vec::new(),
                watchers: Vec::new(),
            };
            let quit = started.quit.clone();
            std::thread::Builder::new().name(format!("larder-worker-{i}")).spawn(move || {
                // This thread's counters are its own (see crate::per_worker).
                crate::per_worker::enter(i);
                worker.run(&quit);
            })?;
            started.workers.push(Handle { tx, waker });
        }
        Ok(started)
    }

    /// Gives `conn` to the next worker in turn.
    pub fn hand(&self, conn: NewConn) {
        let w = &self.workers[self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len()];
        match w.tx.send(conn) {
            Ok(()) => {
                let _ = w.waker.wake();
            }
            Err(lost) => error!(peer = lost.0.peer, "a worker thread is gone; connection closed"),
        }
    }

    /// Makes every worker look at the server's `stopping` flag now.
    pub fn wake_all(&self) {
        for w in &self.workers {
            let _ = w.waker.wake();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::Release);
        self.wake_all();
    }
}

struct Entry {
    /// Dropped first: what it holds (the connection's `stats conns` row, say) goes while
    /// the descriptor is still open, so no new connection can have its number yet.
    _hold: Box<dyn Send>,
    conn: Connection,
    wait: Wait,
    /// In the worker's list of connections to run again without an event.
    queued: bool,
    peer: String,
    span: Span,
}

struct Worker {
    poll: Poll,
    rx: mpsc::Receiver<NewConn>,
    ctx: Arc<Ctx>,
    /// Connections by token.
    conns: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Connections that let others go first and have more to do.
    turn: Vec<usize>,
    /// Connections that are watchers (`watch`), driven every [`WATCH_TICK`].
    watchers: Vec<usize>,
}

impl Worker {
    fn run(&mut self, quit: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        let idle_timeout = self.ctx.config.idle_timeout > 0;
        let mut last_sweep = Instant::now();
        loop {
            let timeout = if !self.turn.is_empty() {
                Some(Duration::ZERO)
            } else if !self.watchers.is_empty() {
                Some(WATCH_TICK)
            } else if idle_timeout {
                Some(SWEEP_EVERY)
            } else {
                None
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                error!(%e, "worker: waiting for events failed");
                std::thread::sleep(SWEEP_EVERY);
            }
            if quit.load(Ordering::Acquire) {
                return;
            }
            let stopping = self.ctx.stopping.load(Ordering::Acquire);
            let mut new = false;
            for ev in events.iter() {
                if ev.token() == WAKER {
                    new = true;
                } else {
                    let hung_up = ev.is_read_closed() || ev.is_error();
                    self.drive(ev.token().0, ev.is_readable(), hung_up, stopping);
                }
            }
            for i in self.watchers.clone() {
                self.drive(i, false, false, stopping);
            }
            for i in std::mem::take(&mut self.turn) {
                if let Some(Some(e)) = self.conns.get_mut(i) {
                    e.queued = false;
                    self.drive(i, false, false, stopping);
                }
            }
            // After this round's events: a place freed by a close in it may be reused,
            // and no event of the old socket's may reach the new one.
            if new {
                self.take_new();
            }
            if stopping {
                // Connections between batches close; one still writing its replies out
                // finishes first.
                for i in 0..self.conns.len() {
                    if self.conns[i].as_ref().is_some_and(|e| e.wait == Wait::Read) {
                        self.close(i);
                    }
                }
            }
            if idle_timeout && last_sweep.elapsed() >= SWEEP_EVERY {
                let now = Instant::now();
                last_sweep = now;
                for i in 0..self.conns.len() {
                    if self.conns[i].as_mut().is_some_and(|e| e.conn.idle_kick(now)) {
                        self.close(i);
                    }
                }
            }
        }
    }

    fn take_new(&mut self) {
        while let Ok(NewConn { conn, hold, peer, span }) = self.rx.try_recv() {
            let i = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let registered = self.poll.registry().register(
                &mut SourceFd(&conn.fd()),
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            );
            if let Err(e) = registered {
                span.in_scope(|| error!(%e, "cannot register the connection"));
                self.free.push(i);
                continue;
            }
            span.in_scope(|| debug!("connection opened"));
            // Bytes already there are reported by the first wait: no need to read now.
            self.conns[i] = Some(Entry { _hold: hold, conn, wait: Wait::Read, queued: false, peer, span });
        }
    }

    /// Lets connection `i` do what it can, and closes it if it is done or panicked.
    fn drive(&mut self, i: usize, readable: bool, hung_up: bool, stopping: bool) {
        let Some(Some(e)) = self.conns.get_mut(i) else { return };
        if e.wait == Wait::Read && !readable && !hung_up && !e.conn.is_watcher() {
            return; // room to write, and nothing to write: nothing to do
        }
        let _in = e.span.enter();
        let wait = std::panic::catch_unwind(AssertUnwindSafe(|| e.conn.on_ready(readable, hung_up, stopping)));
        match wait {
            Ok(Wait::Close) => {}
            Ok(wait) => {
                e.wait = wait;
                if e.conn.is_watcher() && !self.watchers.contains(&i) {
                    self.watchers.push(i);
                }
                if wait == Wait::Turn && !e.queued {
                    e.queued = true;
                    self.turn.push(i);
                }
                return;
            }
            Err(panic) => error!(peer = e.peer, panic = panic_message(&*panic), "connection panicked; closed it"),
        }
        drop(_in);
        self.close(i);
    }

    fn close(&mut self, i: usize) {
        self.watchers.retain(|&w| w != i);
        if let Some(e) = self.conns[i].take() {
            let _ = self.poll.registry().deregister(&mut SourceFd(&e.conn.fd()));
            e.span.in_scope(|| debug!("connection closed"));
            self.free.push(i);
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
