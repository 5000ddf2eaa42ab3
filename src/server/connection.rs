//! One client socket: read -> decode every complete request -> execute each -> one write
//! for the whole batch of replies. Owns the read and write buffers and the decoder state.
//! Its worker's event loop ([`super::worker`]) calls [`Connection::on_ready`] when the
//! socket has news; the connection does all it can without blocking and says what it
//! waits for next.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tracing::{debug, trace};

use super::transport::{Received, Transport};
use crate::budget::{self, Held};
use crate::config::Protocol;
use crate::conns::{ConnRow, ConnState};
use crate::exec::{self, Caller, Ctx, Flow, Output, Work};
use crate::latency::{self, Tally};
use crate::protocol::binary;
use crate::protocol::encode::{Reply, error_reply, put_reply};
use crate::protocol::text::Limits;
use crate::protocol::{Decoder, Framing};
use crate::stats::Stats;
use crate::watch::{CloseReason, Event, Origin, Watcher, kind};

/// Read buffer capacity kept free before each read (memcached reads 16 KiB at a time), and
/// the size up to which a connection's buffers are not counted in the buffer budget.
const READ_CHUNK: usize = budget::BASE;
/// Room below which the read buffer is topped up to [`READ_CHUNK`] before a read.
const MIN_READ_ROOM: usize = 4 * 1024;

/// Room enough for a read when nothing is buffered: the space behind requests already
/// taken is made again only once less than this is left, not before every read (a
/// connection sending small requests reads into its first buffer many times between two
/// such moves). A line longer than a read brings is judged at the next read.
const IDLE_READ_ROOM: usize = MIN_READ_ROOM / 2;

/// A new connection's read buffer: enough for the requests of most clients. It grows to
/// [`READ_CHUNK`] (still uncounted by the buffer budget) the first time a request spans
/// two reads; a client that sends a large value at once leaves for a buffer of its size
/// from here, so that 1,000 such clients hold 4 MiB of base buffers, not 16.
const FIRST_READ: usize = MIN_READ_ROOM;

/// Most bytes taken from the socket by one read. Input is decoded before the next read, so
/// with the decoder's limits a connection buffers at most one unfinished request (a line of
/// 2 KiB, a `get` line of 4 MiB, or a data block up to `-I`) plus one read; past
/// [`budget::BASE`] only if the buffer budget has room.
const MAX_READ: usize = 64 * 1024;

/// Reads (of up to 16 KiB) and full reply buffers (of 1 MiB) one readiness event may take
/// before the connection lets its worker's other connections have a turn: a client that
/// pipelines without pause, or asks for a huge multi-get, cannot hold the thread.
const STEPS_PER_TURN: usize = 4;

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

/// Commands of a pipelined batch (lines, or binary packets) looked at for get keys to prefetch.
const PREFETCH_LINES: usize = 32;

impl Pending {
    /// `per_event`: `-R`.
    fn after_command(&mut self, flow: &Flow, wbuf_len: usize, per_event: usize) {
        self.commands += 1;
        let yields = self.commands > per_event && (self.commands - 1).is_multiple_of(per_event);
        if matches!(flow, Flow::Transmit) || yields {
            self.committed = wbuf_len;
        }
    }
}

/// The commands of one read being run: memcached's flush ledger, whether any command was
/// there, how many the pipeline walk prefetched, and a command whose replies filled the
/// output before its end (it carries on once they are written).
#[derive(Default)]
struct Batch {
    pending: Pending,
    commands: bool,
    /// When the batch's bytes were read, and its commands by group, for the latency
    /// histograms.
    started: u64,
    tally: Tally,
    prefetched: usize,
    work: Option<Work>,
    /// How much output the batch builds before it must be written out:
    /// [`MAX_PENDING_OUTPUT`], or [`budget::BASE`] while the buffer budget is spent.
    out_limit: usize,
}

/// What a connection waits for after [`Connection::on_ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The client's next bytes.
    Read,
    /// Room in the socket for the replies it holds.
    Write,
    /// Nothing: it has more to do at once but lets other connections go first.
    Turn,
    /// Nothing more: close it.
    Close,
}

/// How a batch ended.
enum Step {
    /// Every complete command is run.
    Done,
    /// The replies must go out before it goes on.
    Full,
    /// Close once the replies are out (`quit`, a fatal protocol error).
    Close,
}

/// Per-connection state.
pub struct Connection {
    transport: Transport,
    ctx: Arc<Ctx>,
    decoder: Decoder,
    rbuf: BytesMut,
    out: Output,
    /// Bytes of `out` already written.
    written: usize,
    /// `out` is in the `bytes_written` and `socket_writes` stats.
    counted: bool,
    batch: Option<Batch>,
    /// Bytes came in that no batch has looked at yet.
    unread: bool,
    /// The last read left the socket empty: nothing more to read until its next event.
    drained: bool,
    /// The client has shut its side: reads go on until they say so (a short read does not
    /// mean another event will come).
    hung_up: bool,
    closing: bool,
    /// `-o idle_timeout`: how long the client may keep the connection waiting on it.
    idle_timeout: Option<Duration>,
    /// When the client last sent a whole command or took the last of its replies:
    /// idleness counts from there. As in memcached, bytes that make no command do not
    /// count, so a client trickling a command it never finishes is idle.
    last_active: Instant,
    /// Since when the socket has taken none of the replies, while it holds some.
    stalled_since: Option<Instant>,
    /// This connection's row in `stats conns`, and the state it shows.
    row: Option<Arc<ConnRow>>,
    shown: ConnState,
    /// Bytes have come in since the connection opened (until then memcached shows it as
    /// `conn_new_cmd`).
    seen_input: bool,
    /// Commands run so far (a turn ends once it has run `-R` of them).
    commands_run: usize,
    /// `-R`.
    reqs_per_event: usize,
    /// Who the client is, for `watch connevents` (set by the accept loop).
    origin: Option<Origin>,
    /// Why the connection ends, once it does (`conn_close ... reason=`).
    close_reason: CloseReason,
    /// After `watch`: the log lines this connection sends instead of running commands.
    watcher: Option<Arc<Watcher>>,
    /// `-B auto`: the protocol is not chosen yet (the first byte chooses it).
    negotiating: bool,
    /// A binary-protocol connection's decoder and session.
    binary: Option<Box<Binary>>,
    /// What the read buffer's allocation and the reply buffer hold of the buffer budget
    /// (`-o read_buf_mem_limit`): all their bytes once past [`budget::BASE`] (of a mapped
    /// read buffer, those resident).
    held_in: Held,
    held_out: Held,
    /// The read buffer's allocation (its `capacity` counts only what is past the requests
    /// split off its front).
    in_cap: usize,
}

/// What a connection speaking the binary protocol keeps.
struct Binary {
    decoder: binary::Decoder,
    session: exec::binary::Session,
}

impl Connection {
    /// A connection on `transport`'s socket, which must be in non-blocking mode.
    pub fn new(transport: Transport, ctx: Arc<Ctx>) -> Self {
        let limits = Limits { max_item_size: ctx.config.max_item_size };
        let mut decoder = Decoder::new(limits, ctx.store.clock().clone());
        if ctx.config.auth.is_some() {
            decoder = decoder.require_auth();
        }
        let idle_timeout =
            (ctx.config.idle_timeout > 0).then(|| Duration::from_secs(u64::from(ctx.config.idle_timeout)));
        let ctx_reqs = ctx.config.reqs_per_event as usize;
        let protocol = ctx.config.protocol;
        let binary = (protocol == Protocol::Binary).then(|| Binary::new(&ctx));
        Self {
            transport,
            ctx,
            decoder,
            rbuf: BytesMut::with_capacity(FIRST_READ),
            // The reply buffer comes with the first batch: a client that only sends (a slow
            // large set) holds none.
            out: Output::new(BytesMut::new()),
            written: 0,
            counted: false,
            batch: None,
            unread: false,
            drained: false,
            hung_up: false,
            closing: false,
            idle_timeout,
            last_active: Instant::now(),
            stalled_since: None,
            row: None,
            shown: ConnState::New,
            seen_input: false,
            commands_run: 0,
            reqs_per_event: ctx_reqs.max(1),
            origin: None,
            close_reason: CloseReason::default(),
            watcher: None,
            negotiating: protocol == Protocol::Auto,
            binary,
            held_in: Held::default(),
            held_out: Held::default(),
            in_cap: FIRST_READ,
        }
    }

    /// Names the client in `watch connevents` lines, and logs its `conn_new`.
    pub fn with_origin(mut self, origin: Origin) -> Self {
        if self.ctx.watch.wants(kind::CONNEVENTS) {
            self.ctx.watch.log(&Event::ConnNew(&origin));
        }
        self.origin = Some(origin);
        self
    }

    /// Whether the connection is a watcher: its worker drives it on a tick, to send the
    /// lines that arrive.
    pub fn is_watcher(&self) -> bool {
        self.watcher.is_some()
    }

    /// Reports this connection's activity in `stats conns`.
    pub fn with_row(mut self, row: Arc<ConnRow>) -> Self {
        self.row = Some(row);
        self
    }

    /// The socket's descriptor, for the worker's epoll.
    pub fn fd(&self) -> RawFd {
        self.transport.fd()
    }

    /// Does all it can now: writes what the socket takes, runs the commands that came in,
    /// reads what is there. `readable`: the event said there may be bytes to read;
    /// `hung_up`: it said the client has shut its side. `stopping`: the server is shutting
    /// down, so a connection between batches closes.
    pub fn on_ready(&mut self, readable: bool, hung_up: bool, stopping: bool) -> Wait {
        if readable || hung_up {
            self.drained = false;
        }
        self.hung_up |= hung_up;
        match self.advance(stopping) {
            Ok(wait) => {
                self.show_state(wait);
                wait
            }
            Err(e) => {
                debug!(%e, "connection closed on error");
                Wait::Close
            }
        }
    }

    /// Shows in `stats conns` what the connection waits for now, as memcached names it:
    /// the rest of a command line or a data block, a refused block to discard, the client
    /// to take its replies.
    fn show_state(&mut self, wait: Wait) {
        let state = match wait {
            Wait::Close => return,
            _ if self.watcher.is_some() => ConnState::Watch,
            Wait::Write => ConnState::Write,
            Wait::Turn => ConnState::Parse,
            Wait::Read => match self.binary.as_ref().map_or_else(|| self.decoder.framing(), |b| b.decoder.framing()) {
                Framing::Data => ConnState::DataBlock,
                Framing::Swallow => ConnState::Swallow,
                Framing::Line if self.seen_input => ConnState::Read,
                Framing::Line => ConnState::New,
            },
        };
        if state != self.shown
            && let Some(row) = &self.row
        {
            self.shown = state;
            row.set_state(state);
        }
    }

    /// With an idle timeout, whether the client has kept this connection waiting on it
    /// too long (for a command, or to take its replies) at `now`: if so, the kick is
    /// counted and logged, and the caller closes the connection.
    pub fn idle_kick(&mut self, now: Instant) -> bool {
        let Some(t) = self.idle_timeout.filter(|_| self.watcher.is_none()) else { return false };
        let since = match self.stalled_since {
            Some(stalled) => stalled,
            None if self.batch.is_none() => self.last_active,
            None => return false,
        };
        if now.saturating_duration_since(since) < t {
            return false;
        }
        Stats::incr(&self.ctx.stats.local().idle_kicks);
        self.close_reason = CloseReason::IdleTimeout;
        if self.stalled_since.is_some() {
            debug!("closing connection: client reads no replies");
        } else {
            debug!("closing idle connection");
        }
        true
    }

    /// Runs the connection until it must wait, or until its turn is up: `STEPS_PER_TURN`
    /// reads or output-filling steps, or the batch that brings the turn to `-R` commands
    /// (a batch is never cut short for it, so pipelined replies still go out in one write).
    fn advance(&mut self, stopping: bool) -> io::Result<Wait> {
        let mut steps = 0;
        let turn_ends = self.commands_run + self.reqs_per_event;
        loop {
            // Replies first: nothing more is read or run until they are out.
            if !self.write()? {
                self.stalled_since.get_or_insert_with(Instant::now);
                return Ok(Wait::Write);
            }
            if self.closing {
                return Ok(Wait::Close);
            }
            if self.watcher.is_some() {
                if stopping {
                    self.close_reason = CloseReason::Shutdown;
                    return Ok(Wait::Close);
                }
                return self.stream_log();
            }
            if self.batch.is_some() || self.unread {
                match self.run_batch() {
                    Step::Done => {}
                    Step::Full => {
                        steps += 1;
                        if steps == STEPS_PER_TURN || self.commands_run >= turn_ends {
                            return Ok(self.yield_turn());
                        }
                        continue;
                    }
                    Step::Close => {
                        self.closing = true;
                        continue;
                    }
                }
                if !self.out.is_empty() || self.watcher.is_some() {
                    continue;
                }
            }
            if stopping {
                self.close_reason = CloseReason::Shutdown;
                return Ok(Wait::Close);
            }
            if self.drained {
                return Ok(Wait::Read);
            }
            if steps >= STEPS_PER_TURN || self.commands_run >= turn_ends {
                return Ok(self.yield_turn());
            }
            steps += 1;
            if !self.read()? {
                self.close_reason = CloseReason::Normal;
                return Ok(Wait::Close);
            }
        }
    }

    /// A watcher's turn: input is read and ignored (as memcached's logger thread does;
    /// the client hanging up ends the watch), and the lines logged since the last turn
    /// are written. Called with the replies written out.
    fn stream_log(&mut self) -> io::Result<Wait> {
        if !self.drained {
            if !self.read()? {
                // memcached's logger thread closes a watcher with no reason given:
                // `reason=error`, as for any other end of a watch.
                return Ok(Wait::Close);
            }
            self.rbuf.clear();
            self.unread = false;
        }
        let Some(w) = &self.watcher else { return Ok(Wait::Read) };
        let out = &mut self.out.buf;
        if w.drain(|lines| out.extend_from_slice(lines)) {
            // memcached's logger thread writes these; they are not in `bytes_written`.
            self.counted = true;
            if !self.write()? {
                self.stalled_since.get_or_insert_with(Instant::now);
                return Ok(Wait::Write);
            }
        }
        Ok(Wait::Read)
    }

    /// Lets the worker's other connections go first with work still in hand, counted as
    /// memcached counts a connection that used up its requests per event (`conn_yields`).
    fn yield_turn(&self) -> Wait {
        Stats::incr(&self.ctx.stats.local().conn_yields);
        Wait::Turn
    }

    /// Reads once into the read buffer; false when the client has gone.
    fn read(&mut self) -> io::Result<bool> {
        if !self.make_room() {
            // memcached's reply when it cannot grow a read buffer; it closes after it.
            debug!("closing connection: the buffer budget is spent");
            (self.rbuf, self.in_cap) = (BytesMut::new(), 0);
            self.ctx.budget.release(&mut self.held_in);
            put_reply(&mut self.out.buf, Reply::OutOfMemoryReading);
            self.closing = true;
            return Ok(true);
        }
        let len = self.rbuf.spare_capacity_mut().len().min(MAX_READ);
        let buffered = self.rbuf.len();
        let (n, drained) = match self.transport.recv(&mut self.rbuf, len, self.hung_up)? {
            Received::Eof => return Ok(false),
            Received::Data { n, drained } => (n, drained),
        };
        // Once the socket is empty, the next read waits for the next event instead of
        // asking the kernel to say it has nothing.
        self.drained = drained;
        self.settle_input();
        if n > 0 {
            self.unread = true;
            self.seen_input = true;
            self.ctx.stats.local().bytes_read.fetch_add(n as u64, Relaxed);
        }
        // memcached reads into a 16 KiB buffer, as much as it has room for, and judges a
        // line without its newline by what it then holds: after a read that filled less
        // room than memcached's would have had (a small first buffer, or what was left of
        // one), such a line waits for the next read.
        self.decoder.defer_long_lines(n == len && !drained && len < READ_CHUNK.saturating_sub(buffered));
        Ok(true)
    }

    /// Writes the pending replies while the socket takes them; false if it stopped
    /// taking them before the end.
    fn write(&mut self) -> io::Result<bool> {
        let total = self.out.len();
        if total == 0 {
            return self.transport.flush();
        }
        if !self.counted {
            // Counted before writing, so a client that has the reply sees the count.
            self.ctx.stats.local().bytes_written.fetch_add(total as u64, Relaxed);
            self.ctx.stats.local().socket_writes.fetch_add(1, Relaxed);
            self.counted = true;
        }
        while self.written < total {
            match self.transport.send(&self.out, self.written) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.stalled_since = None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(self.hold_output()),
                Err(e) => return Err(e),
            }
        }
        if !self.transport.flush()? {
            return Ok(self.hold_output());
        }
        (self.written, self.counted) = (0, false);
        self.out.clear();
        if self.out.buf.capacity() > KEEP_CAPACITY || (self.held_out.bytes() > 0 && self.ctx.budget.spent()) {
            self.out.buf = BytesMut::with_capacity(READ_CHUNK);
        }
        if self.held_out.bytes() > 0 {
            self.ctx.budget.release(&mut self.held_out);
        }
        if self.idle_timeout.is_some() {
            self.last_active = Instant::now();
        }
        Ok(true)
    }

    /// Runs the complete commands in the read buffer (or goes on with the batch that
    /// filled the output), appending their replies.
    fn run_batch(&mut self) -> Step {
        let mut batch = match self.batch.take() {
            Some(batch) => batch,
            None => self.start_batch(),
        };
        let step = self.run_commands(&mut batch);
        match step {
            Step::Full => self.batch = Some(batch),
            Step::Done => {
                self.shrink_input();
                if batch.commands {
                    self.ctx.latency.record(&batch.tally, latency::now_nanos().saturating_sub(batch.started));
                    if self.idle_timeout.is_some() {
                        self.last_active = Instant::now();
                    }
                }
            }
            Step::Close => {}
        }
        step
    }

    fn start_batch(&mut self) -> Batch {
        self.unread = false;
        if self.out.buf.capacity() == 0 {
            self.out.buf.reserve(READ_CHUNK);
        }
        if self.negotiating && !self.rbuf.is_empty() {
            // memcached's `-B auto`: the first byte chooses, once.
            self.negotiating = false;
            if self.rbuf[0] == binary::REQUEST_MAGIC {
                self.binary = Some(Binary::new(&self.ctx));
            }
        }
        if let Some(row) = &self.row {
            row.set_parsing(self.ctx.store.clock().now());
            self.shown = ConnState::Parse;
        }
        // A pipeline of gets: start loading their items now, so the lookups below do
        // not each wait on memory in turn.
        let mut prefetch = None;
        let mut add = |k: &[u8]| prefetch.get_or_insert_with(|| self.ctx.store.prefetch()).add(k);
        let prefetched = match &self.binary {
            Some(bin) if bin.decoder.framing() == Framing::Line => {
                binary::pipelined_get_keys(&self.rbuf, PREFETCH_LINES, &mut add);
                0
            }
            Some(_) => 0,
            None => crate::protocol::pipelined_get_keys(&self.rbuf, PREFETCH_LINES, &mut add),
        };
        if let Some(prefetch) = prefetch {
            prefetch.finish();
        }
        let out_limit = if self.ctx.budget.spent() { budget::BASE } else { MAX_PENDING_OUTPUT };
        Batch { prefetched, started: latency::now_nanos(), out_limit, ..Batch::default() }
    }

    fn run_commands(&mut self, batch: &mut Batch) -> Step {
        if self.binary.is_some() {
            return self.run_packets(batch);
        }
        if let Some(work) = batch.work.take() {
            let flow = work.resume(&self.ctx, &mut self.out, batch.out_limit);
            if let Some(step) = self.command_done(batch, flow) {
                return step;
            }
        }
        loop {
            let login = self.decoder.awaiting_auth();
            let decoded = self.decoder.decode(&mut self.rbuf);
            if login && !matches!(decoded, Ok(None)) {
                // memcached answers everything before a login in one reused reply
                // slot: of several such replies in a batch only the last is sent.
                let start = *batch.pending.login_reply.get_or_insert(self.out.buf.len());
                self.out.truncate(start);
            }
            match decoded {
                Ok(Some(req)) => {
                    trace!(cmd = req.name(), "request");
                    batch.commands = true;
                    #[cfg(debug_assertions)]
                    if let Some(hook) = FAULT_HOOK.get() {
                        hook(&req);
                    }
                    let caller = Caller {
                        // memcached refuses a dump behind replies it has not sent (since a get's, say).
                        replies_waiting: self.out.buf.len() > batch.pending.committed,
                        // The walk in `start_batch` got to this command.
                        prefetched: batch.pending.commands < batch.prefetched,
                        out_limit: batch.out_limit,
                        cfd: self.transport.fd(),
                    };
                    batch.tally.add(exec::command_group(&req));
                    let flow = exec::execute(&self.ctx, req, &mut self.out, &caller);
                    if let Some(step) = self.command_done(batch, flow) {
                        return step;
                    }
                }
                Ok(None) => return Step::Done,
                Err(rejected) => {
                    trace!(error = %rejected.error, "rejected");
                    batch.commands = true;
                    if rejected.error.is_fatal() {
                        debug!(error = %rejected.error, "closing connection");
                        self.out.truncate(batch.pending.committed);
                        return Step::Close;
                    }
                    if rejected.error.culls_pending() {
                        self.out.truncate(batch.pending.committed);
                    }
                    if let (Some(reply), false) = (error_reply(rejected.error), rejected.noreply) {
                        put_reply(&mut self.out.buf, reply);
                    }
                    self.commands_run += 1;
                    batch.pending.after_command(&Flow::Continue, self.out.buf.len(), self.reqs_per_event);
                }
            }
        }
    }

    /// [`Self::run_commands`] for a connection speaking the binary protocol.
    fn run_packets(&mut self, batch: &mut Batch) -> Step {
        loop {
            let Some(bin) = self.binary.as_mut() else { return Step::Done };
            match bin.decoder.decode(&mut self.rbuf) {
                Ok(Some(packet)) => {
                    trace!(opcode = packet.echo.opcode, "binary request");
                    batch.commands = true;
                    batch.tally.add(exec::binary::command_group(&packet));
                    let flow = exec::binary::execute(&self.ctx, packet, &mut self.out, &mut bin.session);
                    if let Some(step) = self.command_done(batch, flow) {
                        return step;
                    }
                }
                Ok(None) => return Step::Done,
                Err(fatal) => {
                    batch.commands = true;
                    debug!(opcode = fatal.echo.opcode, status = ?fatal.status, "closing binary connection");
                    match fatal.status {
                        // Bad magic: memcached closes at once, its unsent replies with it.
                        None => self.out.truncate(batch.pending.committed),
                        Some(status) => binary::put_error(&mut self.out.buf, fatal.echo, status, None),
                    }
                    return Step::Close;
                }
            }
        }
    }

    /// Where a command left the connection: `Some(step)` ends the batch for now (the
    /// replies must be written out first, or the connection closes), `None` goes on to
    /// the next command.
    fn command_done(&mut self, batch: &mut Batch, flow: Flow) -> Option<Step> {
        match flow {
            Flow::Close => {
                // `quit`, or `shutdown` (which has cancelled the server's token).
                let shutdown = self.ctx.shutdown.is_cancelled();
                self.close_reason = if shutdown { CloseReason::Shutdown } else { CloseReason::Normal };
                return Some(Step::Close);
            }
            Flow::Watch(w) => {
                // What follows `watch` is never run.
                self.watcher = Some(w);
                self.rbuf.clear();
                self.unread = false;
                // Shown as a watcher before its `OK` goes out, so that a client that has
                // read the `OK` finds it so in `stats conns`.
                self.show_state(Wait::Read);
                return Some(Step::Done);
            }
            Flow::Resume(work) => {
                batch.pending.committed = 0;
                batch.work = Some(work);
                return Some(Step::Full);
            }
            Flow::Authenticated => match &mut self.binary {
                Some(bin) => bin.decoder.authenticated(),
                None => self.decoder.authenticated(),
            },
            Flow::Continue | Flow::Transmit => {}
        }
        self.commands_run += 1;
        batch.pending.after_command(&flow, self.out.buf.len(), self.reqs_per_event);
        if self.out.len() >= batch.out_limit {
            batch.pending.committed = 0;
            return Some(Step::Full);
        }
        None
    }
}

impl Binary {
    fn new(ctx: &Ctx) -> Box<Self> {
        let limits = Limits { max_item_size: ctx.config.max_item_size };
        let mut decoder = binary::Decoder::new(limits, ctx.store.clock().clone());
        if ctx.config.sasl {
            decoder = decoder.require_sasl();
        }
        Box::new(Self { decoder, session: exec::binary::Session::default() })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.ctx.budget.release(&mut self.held_in);
        self.ctx.budget.release(&mut self.held_out);
        if let Some(w) = &self.watcher {
            self.ctx.watch.remove(w);
        }
        if let Some(origin) = &self.origin
            && self.ctx.watch.wants(kind::CONNEVENTS)
        {
            self.ctx.watch.log(&Event::ConnClose(origin, self.close_reason));
        }
    }
}

/// Fault injection for tests, in debug builds only: when set, runs before each request,
/// so a test can make one connection's handler panic and watch the server carry on.
#[cfg(debug_assertions)]
#[doc(hidden)]
pub static FAULT_HOOK: std::sync::OnceLock<fn(&crate::protocol::Request)> = std::sync::OnceLock::new();

mod buffers;
#[cfg(test)]
mod tests;
