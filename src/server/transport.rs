//! A connection's socket and how bytes cross it: plain, with the system calls straight
//! through `libc` so a read or a batch's write is exactly one call; or TLS, a rustls
//! `ServerConnection` decrypting what those calls read and sealing the replies into records
//! before they write them. The handshake happens inside the same reads and writes, so it
//! never blocks the worker; a failed one is counted and logged at debug.

use std::io::{self, BufRead, IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use rustls::ServerConnection;
use tracing::debug;

use crate::exec::Output;
use crate::tls::TlsCounters;

/// A connection's socket, plain or TLS. Dropping it ends a TLS session with a
/// `close_notify` when the socket takes one, then closes the socket.
pub struct Transport {
    socket: OwnedFd,
    tls: Option<Box<TlsState>>,
}

struct TlsState {
    conn: ServerConnection,
    counters: Arc<TlsCounters>,
    /// Records read from the socket that rustls has not taken yet (only when a read's
    /// plaintext passed the room the connection gave it).
    unread: Vec<u8>,
}

/// What a read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// `n` bytes (perhaps none: a TLS handshake step, or nothing there); `drained`: the
    /// socket has no more for now, so the next read waits for its next event.
    Data { n: usize, drained: bool },
    /// The client has closed its side (and every byte before that was taken).
    Eof,
}

impl Transport {
    pub fn plain(socket: OwnedFd) -> Self {
        Self { socket, tls: None }
    }

    pub fn tls(socket: OwnedFd, conn: ServerConnection, counters: Arc<TlsCounters>) -> Self {
        Self { socket, tls: Some(Box::new(TlsState { conn, counters, unread: Vec::new() })) }
    }

    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Reads up to `max` bytes of the client's data onto the end of `rbuf` (which has room
    /// for them). `hung_up`: the client has shut its side, so a short read does not mean
    /// another event will come; reads go on to the end.
    pub fn recv(&mut self, rbuf: &mut BytesMut, max: usize, hung_up: bool) -> io::Result<Received> {
        let fd = self.fd();
        let Some(tls) = &mut self.tls else {
            let room = &mut rbuf.spare_capacity_mut()[..max];
            let n = loop {
                match recv(fd, room) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Received::Data { n: 0, drained: true });
                    }
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                return Ok(Received::Eof);
            }
            // SAFETY: the kernel initialised the first `n` bytes of the spare room.
            unsafe { rbuf.set_len(rbuf.len() + n) };
            // A read that leaves room unfilled has emptied the socket.
            return Ok(Received::Data { n, drained: n < max && !hung_up });
        };
        tls.recv(fd, rbuf, max, hung_up)
    }

    /// Makes one write of `out` from byte `done` on (plain), or seals as much of it as
    /// rustls takes into records and writes what the socket takes (TLS); returns how many
    /// bytes of `out` it took.
    pub fn send(&mut self, out: &Output, done: usize) -> io::Result<usize> {
        let fd = self.fd();
        let Some(tls) = &mut self.tls else { return send(fd, out, done) };
        tls.flush(fd)?;
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let n = out.slices(done, &mut iov);
        let taken = tls.conn.writer().write_vectored(&iov[..n])?;
        match tls.flush(fd) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(taken),
        }
    }

    /// Writes out records already sealed (TLS: the rest of a batch, a handshake step);
    /// false if the socket stopped taking them.
    pub fn flush(&mut self) -> io::Result<bool> {
        let fd = self.fd();
        match &mut self.tls {
            None => Ok(true),
            Some(tls) => match tls.flush(fd) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) => Err(e),
            },
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        let fd = self.fd();
        if let Some(tls) = &mut self.tls
            && !tls.conn.is_handshaking()
        {
            tls.conn.send_close_notify();
            let _ = tls.conn.write_tls(&mut Socket(fd));
        }
    }
}

thread_local! {
    /// Where a worker's TLS reads land before rustls takes them, so that one system call
    /// reads up to 64 KiB of records (rustls reading the socket itself asks for 4 KiB).
    static RECORDS: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; 64 * 1024].into_boxed_slice());
}

impl TlsState {
    /// One read of records from the socket, decrypted onto the end of `rbuf`: at most
    /// `max` bytes of plaintext, as a plain read takes at most `max` bytes (memcached's
    /// answers to an over-long line depend on how much one read takes). Records read past
    /// that wait in `unread`, their plaintext in rustls, for the next call.
    fn recv(&mut self, fd: RawFd, rbuf: &mut BytesMut, max: usize, hung_up: bool) -> io::Result<Received> {
        let mut n = 0;
        if self.take_plaintext(rbuf, max, &mut n)? {
            return Ok(ended(n));
        }
        if !self.unread.is_empty() {
            let mut unread = std::mem::take(&mut self.unread);
            let fed = self.feed(fd, &mut &unread[..], rbuf, max, &mut n);
            unread.drain(..unread.len() - fed.1);
            self.unread = unread;
            if let Some(end) = fed.0? {
                return Ok(end);
            }
        }
        if n >= max || !self.unread.is_empty() {
            return Ok(Received::Data { n, drained: false });
        }
        RECORDS.with_borrow_mut(|records| {
            let want = (max - n).min(records.len());
            let got = loop {
                match recv_into(fd, &mut records[..want]) {
                    Ok(got) => break got,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Received::Data { n, drained: true }),
                    Err(e) => return Err(e),
                }
            };
            if got == 0 {
                if self.conn.is_handshaking() {
                    self.counters.handshake_errors.fetch_add(1, Relaxed);
                    debug!("TLS handshake failed: the client closed the connection");
                }
                return Ok(ended(n));
            }
            let (end, left) = self.feed(fd, &mut &records[..got], rbuf, max, &mut n);
            if let Some(end) = end? {
                return Ok(end);
            }
            if left > 0 {
                self.unread.extend_from_slice(&records[got - left..got]);
                return Ok(Received::Data { n, drained: false });
            }
            // A read that leaves room unfilled has emptied the socket; rustls may still
            // hold plaintext past `max`.
            Ok(Received::Data { n, drained: got < want && !hung_up && n < max })
        })
    }

    /// Gives rustls the records in `records` and takes their plaintext, until `max` bytes
    /// of it are taken or the records are used up; how it ended (`Some` when the session
    /// did) and how many bytes of `records` are left.
    fn feed(
        &mut self,
        fd: RawFd,
        records: &mut &[u8],
        rbuf: &mut BytesMut,
        max: usize,
        n: &mut usize,
    ) -> (io::Result<Option<Received>>, usize) {
        let mut step = || -> io::Result<Option<Received>> {
            while !records.is_empty() && *n < max {
                // rustls takes what its buffer has room for: a record or so at a time.
                if self.conn.read_tls(records)? == 0 {
                    return Ok(Some(ended(*n))); // after the client's close_notify
                }
                self.process(fd)?;
                if self.take_plaintext(rbuf, max, n)? {
                    return Ok(Some(ended(*n)));
                }
            }
            Ok(None)
        };
        let end = step();
        (end, records.len())
    }

    /// Moves the plaintext rustls holds onto the end of `rbuf` until `n` reaches `max`;
    /// true once the client has ended the session (a close_notify, or the socket closed).
    fn take_plaintext(&mut self, rbuf: &mut BytesMut, max: usize, n: &mut usize) -> io::Result<bool> {
        let mut reader = self.conn.reader();
        while *n < max {
            match reader.fill_buf() {
                Ok([]) => return Ok(true),
                Ok(chunk) => {
                    let take = chunk.len().min(max - *n);
                    rbuf.extend_from_slice(&chunk[..take]);
                    reader.consume(take);
                    *n += take;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Decrypts the records read; a bad one is counted and logged, its alert sent, and the
    /// connection ends.
    fn process(&mut self, fd: RawFd) -> io::Result<()> {
        let handshaking = self.conn.is_handshaking();
        let Err(e) = self.conn.process_new_packets() else { return Ok(()) };
        if handshaking {
            self.counters.handshake_errors.fetch_add(1, Relaxed);
            debug!(error = %e, "TLS handshake failed");
        } else {
            debug!(error = %e, "TLS error");
        }
        let _ = self.conn.write_tls(&mut Socket(fd));
        Err(io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Writes sealed records until none is left (`Ok`) or the socket is full (`WouldBlock`).
    fn flush(&mut self, fd: RawFd) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Socket(fd)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What a read that met the end of the session brought: its last bytes, or the end.
fn ended(n: usize) -> Received {
    if n > 0 { Received::Data { n, drained: false } } else { Received::Eof }
}

/// `recv` into initialised memory.
fn recv_into(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: an initialised slice is valid as uninitialised memory of the same length,
    // and `recv` only writes bytes into it.
    recv(fd, unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) })
}

/// The socket as rustls writes it (records, alerts).
struct Socket(RawFd);

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sendto(self.0, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sendmsg(self.0, &bufs[..bufs.len().min(MAX_IOV)])
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn recv(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length during the call; no address is asked for.
    syscall_result(unsafe {
        libc::syscall(libc::SYS_recvfrom, fd, buf.as_mut_ptr(), buf.len(), 0, std::ptr::null::<u8>(), 0)
    })
}

/// A system call's return: a byte count, or -1 and `errno`.
fn syscall_result(n: libc::c_long) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn sendto(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for its length during the call; no address is passed.
    syscall_result(unsafe {
        libc::syscall(libc::SYS_sendto, fd, buf.as_ptr(), buf.len(), libc::MSG_NOSIGNAL, std::ptr::null::<u8>(), 0)
    })
}

fn sendmsg(fd: RawFd, iov: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data (all zero is a valid empty message); IoSlice is
    // guaranteed ABI-compatible with iovec on Unix, and `iov` outlives the call.
    syscall_result(unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_ptr().cast_mut().cast();
        msg.msg_iovlen = iov.len();
        libc::syscall(libc::SYS_sendmsg, fd, &raw const msg, libc::MSG_NOSIGNAL)
    })
}

/// Most slices one vectored write takes (Linux allows 1,024). A batch rarely has more
/// than a few large values (each is two slices); a longer one takes another call, and
/// the slice array, set up on every write, stays small.
const MAX_IOV: usize = 16;

/// Makes one write of `out` from byte `done` on: a `send` when the rest is one stretch of
/// the buffer, else one `sendmsg` of up to [`MAX_IOV`] stretches, straight from the
/// buffer and the values' own blocks.
fn send(fd: RawFd, out: &Output, done: usize) -> io::Result<usize> {
    if out.len() == out.buf.len() {
        return sendto(fd, &out.buf[done..]);
    }
    let mut iov = [IoSlice::new(&[]); MAX_IOV];
    let n = out.slices(done, &mut iov);
    sendmsg(fd, &iov[..n])
}
