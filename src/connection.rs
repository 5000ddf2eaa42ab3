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

use crate::exec::{self, Ctx, Flow};
use crate::protocol::Decoder;
use crate::protocol::decode::Limits;

/// Read buffer capacity kept free before each read.
const READ_CHUNK: usize = 16 * 1024;

/// A batch's replies are written early once they pass this size, so a long pipeline does
/// not hold its whole output in memory.
const WRITE_EARLY: usize = 1 << 20;

/// Per-connection state.
pub struct Connection {
    socket: TcpStream,
    ctx: Arc<Ctx>,
    decoder: Decoder,
    rbuf: BytesMut,
    wbuf: BytesMut,
    cancel: CancellationToken,
}

impl Connection {
    pub fn new(socket: TcpStream, ctx: Arc<Ctx>, cancel: CancellationToken) -> Self {
        let decoder = Decoder::new(Limits { max_item_size: ctx.config.max_item_size }, ctx.store.clock().clone());
        Self {
            socket,
            ctx,
            decoder,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(READ_CHUNK),
            cancel,
        }
    }

    /// Serves the socket until the client leaves, a fatal protocol error, or shutdown.
    pub async fn run(mut self) -> io::Result<()> {
        loop {
            loop {
                match self.decoder.decode(&mut self.rbuf) {
                    Ok(Some(req)) => {
                        trace!(cmd = req.name(), "request");
                        if exec::execute(&self.ctx, req, &mut self.wbuf) == Flow::Close {
                            return self.flush().await;
                        }
                        if self.wbuf.len() >= WRITE_EARLY {
                            self.flush().await?;
                        }
                    }
                    Ok(None) => break,
                    Err(rejected) => {
                        trace!(error = %rejected.error, "rejected");
                        if rejected.error.is_fatal() {
                            // memcached sends what earlier commands produced, then closes.
                            debug!(error = %rejected.error, "closing connection");
                            return self.flush().await;
                        }
                        if let (Some(reply), false) = (rejected.error.reply(), rejected.noreply) {
                            self.wbuf.put_slice(reply);
                        }
                    }
                }
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
