//! One client socket: read -> decode every complete request -> execute each -> one write
//! for the whole batch of replies. Owns the read and write buffers and the decoder state.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use crate::conns::ConnRow;
use crate::exec::{self, Ctx, Flow};
use crate::protocol::Decoder;
use crate::protocol::decode::Limits;

/// Read buffer capacity kept free before each read.
const READ_CHUNK: usize = 16 * 1024;

/// A batch's replies are written early once they pass this size, so a long pipeline does
/// not hold its whole output in memory.
const WRITE_EARLY: usize = 1 << 20;

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

/// memcached's `-R` (requests per event) default.
const REQS_PER_EVENT: usize = 20;

impl Pending {
    fn after_command(&mut self, flow: Flow, wbuf_len: usize) {
        self.commands += 1;
        let yields = self.commands > REQS_PER_EVENT && (self.commands - 1) % REQS_PER_EVENT == 0;
        if flow == Flow::Transmit || yields {
            self.committed = wbuf_len;
        }
    }
}

/// Per-connection state.
pub struct Connection {
    socket: TcpStream,
    ctx: Arc<Ctx>,
    decoder: Decoder,
    rbuf: BytesMut,
    wbuf: BytesMut,
    cancel: CancellationToken,
    /// This connection's row in `stats conns`.
    row: Option<Arc<ConnRow>>,
}

impl Connection {
    pub fn new(socket: TcpStream, ctx: Arc<Ctx>, cancel: CancellationToken) -> Self {
        let mut decoder = Decoder::new(Limits { max_item_size: ctx.config.max_item_size }, ctx.store.clock().clone());
        if ctx.config.auth.is_some() {
            decoder = decoder.require_auth();
        }
        Self {
            socket,
            ctx,
            decoder,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
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
        loop {
            // memcached transmits a batch's replies only at certain points (see
            // `Pending`); until then a fatal error or a failing multi-get discards them.
            let mut pending = Pending::default();
            if let Some(row) = &self.row {
                row.set_busy(true, self.ctx.store.clock().now());
            }
            loop {
                let login = self.decoder.awaiting_auth();
                let decoded = self.decoder.decode(&mut self.rbuf);
                if login && !matches!(decoded, Ok(None)) {
                    // memcached answers everything before a login in one reused reply
                    // slot: of several such replies in a batch only the last is sent.
                    let start = *pending.login_reply.get_or_insert(self.wbuf.len());
                    self.wbuf.truncate(start);
                }
                match decoded {
                    Ok(Some(req)) => {
                        trace!(cmd = req.name(), "request");
                        let flow = exec::execute(&self.ctx, req, &mut self.wbuf);
                        match flow {
                            Flow::Close => return self.flush().await,
                            Flow::Authenticated => self.decoder.authenticated(),
                            _ => {}
                        }
                        pending.after_command(flow, self.wbuf.len());
                        if self.wbuf.len() >= WRITE_EARLY {
                            self.flush().await?;
                            pending.committed = 0;
                        }
                    }
                    Ok(None) => break,
                    Err(rejected) => {
                        trace!(error = %rejected.error, "rejected");
                        if rejected.error.is_fatal() {
                            debug!(error = %rejected.error, "closing connection");
                            self.wbuf.truncate(pending.committed);
                            return self.flush().await;
                        }
                        if rejected.error.culls_pending() {
                            self.wbuf.truncate(pending.committed);
                        }
                        if let (Some(reply), false) = (rejected.error.reply(), rejected.noreply) {
                            self.wbuf.put_slice(reply);
                        }
                        pending.after_command(Flow::Continue, self.wbuf.len());
                    }
                }
            }
            if let Some(row) = &self.row {
                row.set_busy(false, 0);
            }
            self.flush().await?;
            self.rbuf.reserve(READ_CHUNK);
            let n = tokio::select! {
                r = self.socket.read_buf(&mut self.rbuf) => r?,
                () = self.cancel.cancelled() => return Ok(()),
            };
            if n == 0 {
                return Ok(());
            }
            self.ctx.stats.bytes_read.fetch_add(n as u64, Relaxed);
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        // Counted before writing, so a client that has the reply sees the count.
        self.ctx.stats.bytes_written.fetch_add(self.wbuf.len() as u64, Relaxed);
        self.ctx.stats.socket_writes.fetch_add(1, Relaxed);
        self.socket.write_all_buf(&mut self.wbuf).await
    }
}
