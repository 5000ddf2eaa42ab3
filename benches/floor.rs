//! The floor: the least work a server can do for the load generator's requests, so that a
//! server's CPU per operation can be read against what any server must spend on this
//! machine (the kernel's part: one receive, one send, TCP over loopback, the copy of each
//! value into socket buffers).
//!
//! It holds the `--keys` values the load generator expects (`key:<n>` -> its pattern, one
//! buffer per key, as a store holds them), finds a key by the number in its name (no hash
//! table, no locks, no expiry, no memory limit), and per readiness event makes one `recv`
//! (a short read means the socket is empty) and, per batch of requests, one `sendmsg`
//! that points at the values (no copy in user space). A `set` copies its value once into a scratch buffer, the copy a store makes,
//! and answers `STORED`: the values never change, because the load generator always sets
//! a key to the same bytes. `version` is answered (scripts wait on it); anything else but
//! `get`/`gets`/`set` gets `ERROR`. `--threads N`
//! runs N such loops on one port (`SO_REUSEPORT`, so the kernel spreads connections).
//!
//! Not a server: `scripts/bench --floor` runs it beside Larder and memcached.
//!
//! ```text
//! cargo bench --bench floor -- --port 11299 --keys 100 --value-size 524288
//! ```

use std::io;
use std::net::TcpListener as StdListener;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

mod keyspace;

/// Values at least this long are sent from their buffer; shorter ones are copied into the
/// reply, which costs less than a slice of their own.
const SPLICE_AT: usize = 4096;
/// Slices per `sendmsg`.
const MAX_SLICES: usize = 64;
const LISTENER: Token = Token(usize::MAX);

struct Args {
    port: u16,
    threads: usize,
    keys: usize,
    value_size: usize,
    key_prefix: String,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args { port: 0, threads: 1, keys: 100_000, value_size: 100, key_prefix: "key:".into() };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => a.port = num(&arg, value()?)?,
            "--threads" => a.threads = num(&arg, value()?)?,
            "--keys" => a.keys = num(&arg, value()?)?,
            "--value-size" => a.value_size = num(&arg, value()?)?,
            "--key-prefix" => a.key_prefix = value()?,
            // What `cargo bench` passes to every bench target.
            "--bench" => {}
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    Ok((a.port != 0).then_some(a))
}

fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
    v.parse().map_err(|_| format!("{name}: bad value '{v}'"))
}

fn main() {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            eprintln!("usage: floor --port P [--threads N] [--keys K] [--value-size V] [--key-prefix key:]");
            return;
        }
        Err(e) => {
            eprintln!("floor: {e}");
            std::process::exit(2);
        }
    };
    // The load generator's values, each in a buffer of its own as a store holds them.
    let pattern = keyspace::pattern(args.value_size);
    let values: Arc<Vec<Box<[u8]>>> =
        Arc::new((0..args.keys as u64).map(|k| keyspace::value_of(&pattern, k, args.value_size).into()).collect());
    let prefix: Arc<str> = args.key_prefix.into();
    let threads: Vec<_> = (0..args.threads.max(1))
        .map(|_| {
            let listener = reuseport_listener(args.port).unwrap_or_else(|e| {
                eprintln!("floor: listen on 127.0.0.1:{}: {e}", args.port);
                std::process::exit(1)
            });
            let (values, prefix) = (values.clone(), prefix.clone());
            std::thread::spawn(move || {
                if let Err(e) = serve(listener, &values, &prefix) {
                    eprintln!("floor: {e}");
                    std::process::exit(1);
                }
            })
        })
        .collect();
    eprintln!("floor: listening on 127.0.0.1:{}", args.port);
    for t in threads {
        let _ = t.join();
    }
}

fn reuseport_listener(port: u16) -> io::Result<TcpListener> {
    // SAFETY: plain socket calls on a descriptor this function owns until it is wrapped.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let listener = StdListener::from_raw_fd(fd);
        let one: libc::c_int = 1;
        for opt in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            let p = (&one as *const libc::c_int).cast();
            if libc::setsockopt(fd, libc::SOL_SOCKET, opt, p, size_of::<libc::c_int>() as libc::socklen_t) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
            sin_zero: [0; 8],
        };
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len) != 0 || libc::listen(fd, 1024) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpListener::from_std(listener))
    }
}

/// A piece of a pending reply: bytes of `Conn::out`, or a whole stored value.
enum Part {
    Out(usize, usize),
    Value(usize),
}

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    /// Start of the unparsed input in `rbuf`.
    parsed: usize,
    out: Vec<u8>,
    parts: Vec<Part>,
    /// Bytes of the pending reply already sent.
    sent: usize,
    scratch: Vec<u8>,
}

fn serve(mut listener: TcpListener, values: &[Box<[u8]>], prefix: &str) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = Events::with_capacity(256);
    loop {
        poll.poll(&mut events, None)?;
        for ev in &events {
            if ev.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    stream.set_nodelay(true)?;
                    let slot = conns.iter().position(Option::is_none).unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry().register(&mut stream, Token(slot), Interest::READABLE | Interest::WRITABLE)?;
                    conns[slot] = Some(Conn {
                        stream,
                        rbuf: Vec::with_capacity(16 * 1024),
                        parsed: 0,
                        out: Vec::new(),
                        parts: Vec::new(),
                        sent: 0,
                        scratch: Vec::new(),
                    });
                }
                continue;
            }
            let slot = ev.token().0;
            let Some(conn) = conns[slot].as_mut() else { continue };
            if conn.run(values, prefix).is_err() {
                let mut conn = conns[slot].take().expect("checked above");
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

impl Conn {
    /// Reads and answers until the socket is empty or full; `Err` closes the connection.
    fn run(&mut self, values: &[Box<[u8]>], prefix: &str) -> io::Result<()> {
        loop {
            if !self.flush(values)? {
                return Ok(()); // the socket is full: go on when it is writable
            }
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(64 * 1024);
            }
            let fd = self.stream.as_raw_fd();
            let spare = self.rbuf.spare_capacity_mut();
            let room = spare.len();
            // SAFETY: recv writes at most `room` bytes into the buffer's spare room.
            let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), room, 0) };
            match n {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n if n < 0 => {
                    let e = io::Error::last_os_error();
                    return if e.kind() == io::ErrorKind::WouldBlock { Ok(()) } else { Err(e) };
                }
                // SAFETY: recv initialised n bytes of the spare room.
                n => unsafe { self.rbuf.set_len(self.rbuf.len() + n as usize) },
            }
            self.answer(values, prefix);
            if (n as usize) < room {
                // A short read emptied the socket: no second recv to hear EAGAIN (more
                // bytes arriving later raise a new edge).
                self.flush(values)?;
                return Ok(());
            }
        }
    }

    /// Answers every complete request in the read buffer.
    fn answer(&mut self, values: &[Box<[u8]>], prefix: &str) {
        loop {
            let input = &self.rbuf[self.parsed..];
            let Some(nl) = memchr::memchr(b'\n', input) else { break };
            let line = input[..nl].strip_suffix(b"\r").unwrap_or(&input[..nl]);
            let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
            match words.next() {
                Some(b"get" | b"gets") => {
                    for key in words {
                        let k = keyspace::parse_key(key, prefix).and_then(|k| usize::try_from(k).ok());
                        let Some(k) = k.filter(|&k| k < values.len()) else { continue };
                        let v = &values[k];
                        push_out(&mut self.out, &mut self.parts, &[b"VALUE ", key, b" 0 "]);
                        let mut len = itoa::Buffer::new();
                        push_out(&mut self.out, &mut self.parts, &[len.format(v.len()).as_bytes(), b"\r\n"]);
                        if v.len() >= SPLICE_AT {
                            self.parts.push(Part::Value(k));
                        } else {
                            push_out(&mut self.out, &mut self.parts, &[v]);
                        }
                        push_out(&mut self.out, &mut self.parts, &[b"\r\n"]);
                    }
                    push_out(&mut self.out, &mut self.parts, &[b"END\r\n"]);
                    self.parsed += nl + 1;
                }
                Some(b"set") => {
                    let Some(bytes) = words.nth(3).and_then(|w| std::str::from_utf8(w).ok()?.parse::<usize>().ok())
                    else {
                        push_out(&mut self.out, &mut self.parts, &[b"CLIENT_ERROR bad command line format\r\n"]);
                        self.parsed += nl + 1;
                        continue;
                    };
                    let data = nl + 1;
                    if input.len() < data + bytes + 2 {
                        break; // the value is still arriving
                    }
                    self.scratch.clear();
                    self.scratch.extend_from_slice(&input[data..data + bytes]);
                    push_out(&mut self.out, &mut self.parts, &[b"STORED\r\n"]);
                    self.parsed += data + bytes + 2;
                }
                Some(b"version") => {
                    push_out(&mut self.out, &mut self.parts, &[b"VERSION floor\r\n"]);
                    self.parsed += nl + 1;
                }
                _ => {
                    push_out(&mut self.out, &mut self.parts, &[b"ERROR\r\n"]);
                    self.parsed += nl + 1;
                }
            }
        }
        if self.parsed == self.rbuf.len() {
            self.rbuf.clear();
            self.parsed = 0;
        } else if self.parsed > self.rbuf.len() / 2 {
            self.rbuf.drain(..self.parsed);
            self.parsed = 0;
        }
    }

    /// Sends the pending reply; false when the socket took only part of it.
    fn flush(&mut self, values: &[Box<[u8]>]) -> io::Result<bool> {
        let total: usize = self
            .parts
            .iter()
            .map(|p| match *p {
                Part::Out(a, b) => b - a,
                Part::Value(k) => values[k].len(),
            })
            .sum();
        while self.sent < total {
            let mut slices: [libc::iovec; MAX_SLICES] =
                [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_SLICES];
            let (mut n, mut skip) = (0, self.sent);
            for part in &self.parts {
                let bytes: &[u8] = match *part {
                    Part::Out(a, b) => &self.out[a..b],
                    Part::Value(k) => &values[k],
                };
                if skip >= bytes.len() {
                    skip -= bytes.len();
                    continue;
                }
                slices[n] =
                    libc::iovec { iov_base: bytes[skip..].as_ptr().cast_mut().cast(), iov_len: bytes.len() - skip };
                skip = 0;
                n += 1;
                if n == MAX_SLICES {
                    break;
                }
            }
            // SAFETY: a zeroed msghdr is valid; the slices point into live buffers.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = slices.as_mut_ptr();
            msg.msg_iovlen = n;
            // SAFETY: sendmsg only reads the slices.
            let w = unsafe { libc::sendmsg(self.stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
            if w < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::WouldBlock { Ok(false) } else { Err(e) };
            }
            self.sent += w as usize;
        }
        self.parts.clear();
        self.out.clear();
        self.sent = 0;
        Ok(true)
    }
}

/// Appends `pieces` to `out`, extending the last part when it is `out`'s tail.
fn push_out(out: &mut Vec<u8>, parts: &mut Vec<Part>, pieces: &[&[u8]]) {
    let start = out.len();
    for p in pieces {
        out.extend_from_slice(p);
    }
    match parts.last_mut() {
        Some(Part::Out(_, end)) if *end == start => *end = out.len(),
        _ => parts.push(Part::Out(start, out.len())),
    }
}
