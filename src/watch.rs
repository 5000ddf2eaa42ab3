//! `watch`: memcached's log streams. A connection that sends `watch [fetchers mutations
//! evictions connevents ...]` becomes a watcher and is sent one line per event of the
//! kinds it asked for, in memcached 1.6.18's format (`logger.c`): `ts=<sec>.<usec>
//! gid=<n> type=item_get key=<uri-encoded> status=found clsid=1 cfd=24 size=3`, and
//! `item_store`, `eviction`, `conn_new`, `conn_close` lines. This module owns those
//! bytes, the watchers' buffers and memcached's `log_*` counters.
//!
//! A leaf: it imports nothing of the crate but [`crate::memcached`]'s key encoding, so
//! [`crate::exec::Ctx`] (requests, connection events) and [`crate::store::Store`]
//! (evictions, deep below exec) can both hold an `Arc<Log>` and log into it.
//!
//! Cost: with no watcher attached, asking whether to log is one relaxed atomic load
//! ([`Log::wants`]); nothing is formatted and no lock is taken. With watchers, a line is
//! formatted once per event of a kind some watcher asked for, and copied into each such
//! watcher's bounded buffer ([`WATCHER_BUF_SIZE`], memcached's `watcher_logbuf_size`)
//! under that buffer's own short lock. A line that does not fit is dropped and counted
//! (`log_watcher_skipped`); before its next line the watcher is told `skipped=<n>`, as
//! memcached tells it. Requests never wait on a watcher's socket: the watcher's own
//! connection drains its buffer on its worker thread.

use std::io::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU16, AtomicU64};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::memcached::uri_encode;

/// Event kinds a watcher asks for, memcached's `LOG_*` bits.
pub mod kind {
    pub const SYSEVENTS: u16 = 1 << 1;
    pub const FETCHERS: u16 = 1 << 2;
    pub const MUTATIONS: u16 = 1 << 3;
    pub const CONNEVENTS: u16 = 1 << 5;
    pub const EVICTIONS: u16 = 1 << 6;
    pub const RAWCMDS: u16 = 1 << 9;
    pub const PROXYREQS: u16 = 1 << 10;
    pub const PROXYEVENTS: u16 = 1 << 11;
    pub const PROXYUSER: u16 = 1 << 12;
    /// memcached 1.6.45's `deletions`: items removed by `delete` or `md`.
    pub const DELETIONS: u16 = 1 << 13;
}

/// The words `watch` takes (memcached 1.6.45's `process_watch_command`). Larder logs
/// fetchers, mutations, evictions, connevents and deletions; the rest are accepted, as
/// memcached accepts them, and produce nothing (Larder has no LRU crawler or slab mover to report,
/// no proxy, and memcached 1.6.18 itself never logs `rawcmds`).
pub fn kind_of(word: &[u8]) -> Option<u16> {
    Some(match word {
        b"rawcmds" => kind::RAWCMDS,
        b"evictions" => kind::EVICTIONS,
        b"fetchers" => kind::FETCHERS,
        b"mutations" => kind::MUTATIONS,
        b"sysevents" => kind::SYSEVENTS,
        b"connevents" => kind::CONNEVENTS,
        b"proxyreqs" => kind::PROXYREQS,
        b"proxyevents" => kind::PROXYEVENTS,
        b"proxyuser" => kind::PROXYUSER,
        b"deletions" => kind::DELETIONS,
        _ => return None,
    })
}

/// `watch` with no words watches fetchers.
pub const DEFAULT_KINDS: u16 = kind::FETCHERS;

/// A watcher's buffer (memcached's default `watcher_logbuf_size`).
pub const WATCHER_BUF_SIZE: usize = 256 * 1024;

/// Most watchers at once (memcached's `WATCHER_LIMIT`).
pub const WATCHER_LIMIT: usize = 20;

/// memcached asks for this much room beyond a line, for a `skipped=` line before it.
const SKIP_ROOM: usize = 128;

/// What a fetch found (`item_get ... status=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    NotFound,
    Found,
    Flushed,
    Expired,
}

impl GetStatus {
    fn word(self) -> &'static [u8] {
        match self {
            Self::NotFound => b"not_found",
            Self::Found => b"found",
            Self::Flushed => b"flushed",
            Self::Expired => b"expired",
        }
    }
}

/// How a store ended (`item_store ... status=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    NotStored,
    Stored,
    Exists,
    NotFound,
    TooLarge,
    NoMemory,
}

impl StoreStatus {
    fn word(self) -> &'static [u8] {
        match self {
            Self::NotStored => b"not_stored",
            Self::Stored => b"stored",
            Self::Exists => b"exists",
            Self::NotFound => b"not_found",
            Self::TooLarge => b"too_large",
            Self::NoMemory => b"no_memory",
        }
    }
}

/// Why a connection closed (`conn_close ... reason=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloseReason {
    /// Anything but the ones below (memcached's default).
    #[default]
    Error,
    /// The client hung up or sent `quit`.
    Normal,
    IdleTimeout,
    Shutdown,
}

impl CloseReason {
    fn word(self) -> &'static [u8] {
        match self {
            Self::Error => b"error",
            Self::Normal => b"normal",
            Self::IdleTimeout => b"idle_timeout",
            Self::Shutdown => b"shutdown",
        }
    }
}

/// Where a connection came from, as `conn_new`/`conn_close` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The client's address (`unix` on a unix socket).
    pub rip: String,
    pub rport: u16,
    /// `tcp`, or `local` for a unix socket.
    pub transport: &'static str,
    /// The socket's descriptor (`cfd=`).
    pub cfd: i32,
}

impl Origin {
    /// From the name `stats conns` gives a client: `tcp:1.2.3.4:5`, `tcp6:[::1]:5`, or
    /// `unix:/path`.
    pub fn from_conn_name(name: &str, cfd: i32) -> Self {
        let tcp = name.strip_prefix("tcp:").or_else(|| name.strip_prefix("tcp6:"));
        let parsed = tcp.and_then(|a| a.parse::<std::net::SocketAddr>().ok());
        match parsed {
            Some(a) => Self { rip: a.ip().to_string(), rport: a.port(), transport: "tcp", cfd },
            None => Self { rip: "unix".into(), rport: 0, transport: "local", cfd },
        }
    }
}

/// One event, as its line shows it.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A fetch of `key` (every command that looks an item up logs one).
    ItemGet {
        key: &'a [u8],
        status: GetStatus,
        clsid: u32,
        cfd: i32,
        size: usize,
    },
    /// A storage command's end. `ttl`: seconds left, as memcached's unsigned 32 bits.
    ItemStore {
        key: &'a [u8],
        status: StoreStatus,
        cmd: &'a str,
        ttl: u32,
        clsid: u32,
        cfd: i32,
        size: usize,
    },
    /// An item evicted to make room. `ttl`: seconds left, -1 for none; `la`: seconds
    /// since its last access.
    Eviction {
        key: &'a [u8],
        fetched: bool,
        ttl: i64,
        la: i32,
        clsid: u32,
        size: usize,
    },
    ConnNew(&'a Origin),
    ConnClose(&'a Origin, CloseReason),
    /// An item removed by `delete` (`cmd` "delete") or `md` ("md"), or emptied by `md x`
    /// (logged as the empty item left). 1.6.45.
    Deleted {
        key: &'a [u8],
        cmd: &'a str,
        clsid: u32,
        size: usize,
    },
}

impl Event<'_> {
    /// The kind a watcher must have asked for to see this event.
    pub fn kind(&self) -> u16 {
        match self {
            Self::ItemGet { .. } => kind::FETCHERS,
            Self::ItemStore { .. } => kind::MUTATIONS,
            Self::Eviction { .. } => kind::EVICTIONS,
            Self::ConnNew(_) | Self::ConnClose(..) => kind::CONNEVENTS,
            Self::Deleted { .. } => kind::DELETIONS,
        }
    }

    /// Appends the event's line, `\n`-terminated, stamped `ts=<sec>.<usec> gid=<gid>`
    /// (microseconds unpadded, as memcached's `%d` prints them).
    pub fn write_line(&self, out: &mut Vec<u8>, (sec, usec): (u64, u32), gid: u64) {
        let mut n = itoa::Buffer::new();
        out.extend_from_slice(b"ts=");
        out.extend_from_slice(n.format(sec).as_bytes());
        out.push(b'.');
        out.extend_from_slice(n.format(usec).as_bytes());
        out.extend_from_slice(b" gid=");
        out.extend_from_slice(n.format(gid).as_bytes());
        let num = |out: &mut Vec<u8>, name: &[u8], v: &dyn itoa_any::Num| {
            out.push(b' ');
            out.extend_from_slice(name);
            out.push(b'=');
            v.put(out);
        };
        let word = |out: &mut Vec<u8>, name: &[u8], v: &[u8]| {
            out.push(b' ');
            out.extend_from_slice(name);
            out.push(b'=');
            out.extend_from_slice(v);
        };
        match *self {
            Self::ItemGet { key, status, clsid, cfd, size } => {
                out.extend_from_slice(b" type=item_get key=");
                uri_encode(key, out);
                word(out, b"status", status.word());
                num(out, b"clsid", &clsid);
                num(out, b"cfd", &cfd);
                num(out, b"size", &size);
            }
            Self::ItemStore { key, status, cmd, ttl, clsid, cfd, size } => {
                out.extend_from_slice(b" type=item_store key=");
                uri_encode(key, out);
                word(out, b"status", status.word());
                word(out, b"cmd", cmd.as_bytes());
                num(out, b"ttl", &ttl);
                num(out, b"clsid", &clsid);
                num(out, b"cfd", &cfd);
                num(out, b"size", &size);
            }
            Self::Eviction { key, fetched, ttl, la, clsid, size } => {
                out.extend_from_slice(b" type=eviction key=");
                uri_encode(key, out);
                word(out, b"fetch", if fetched { b"yes" } else { b"no" });
                num(out, b"ttl", &ttl);
                num(out, b"la", &la);
                num(out, b"clsid", &clsid);
                num(out, b"size", &size);
            }
            Self::Deleted { key, cmd, clsid, size } => {
                out.extend_from_slice(b" type=deleted key=");
                uri_encode(key, out);
                word(out, b"cmd", cmd.as_bytes());
                num(out, b"clsid", &clsid);
                num(out, b"size", &size);
            }
            Self::ConnNew(o) => {
                out.extend_from_slice(b" type=conn_new");
                word(out, b"rip", o.rip.as_bytes());
                num(out, b"rport", &o.rport);
                word(out, b"transport", o.transport.as_bytes());
                num(out, b"cfd", &o.cfd);
            }
            Self::ConnClose(o, reason) => {
                out.extend_from_slice(b" type=conn_close");
                word(out, b"rip", o.rip.as_bytes());
                num(out, b"rport", &o.rport);
                word(out, b"transport", o.transport.as_bytes());
                word(out, b"reason", reason.word());
                num(out, b"cfd", &o.cfd);
            }
        }
        out.push(b'\n');
    }
}

/// Integers of any width for the line writer.
mod itoa_any {
    pub trait Num {
        fn put(&self, out: &mut Vec<u8>);
    }
    macro_rules! num {
        ($($t:ty)*) => {$(
            impl Num for $t {
                fn put(&self, out: &mut Vec<u8>) {
                    out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
                }
            }
        )*};
    }
    num!(u16 u32 i32 i64 u64 usize);
}

/// One watcher's lines waiting for its connection to send them.
#[derive(Debug)]
pub struct Watcher {
    kinds: u16,
    cap: usize,
    buf: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Lines dropped since the last one that fit.
    skipped: u64,
}

impl Watcher {
    /// Appends `line` if it fits (with room for a `skipped=` line before it, as memcached
    /// asks), first telling of lines skipped since the last that fit. Returns whether it
    /// was taken.
    fn offer(&self, line: &[u8]) -> bool {
        let mut p = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        if p.bytes.len() + line.len() + SKIP_ROOM > self.cap {
            p.skipped += 1;
            return false;
        }
        if p.skipped > 0 {
            let skipped = p.skipped;
            let _ = writeln!(p.bytes, "skipped={skipped}");
            p.skipped = 0;
        }
        p.bytes.extend_from_slice(line);
        true
    }

    /// Hands the waiting lines to `take` (to copy out) and empties the buffer, keeping its
    /// memory, so a busy watcher does not allocate per drain. False if there were none.
    pub fn drain(&self, take: impl FnOnce(&[u8])) -> bool {
        let mut p = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        if p.bytes.is_empty() {
            return false;
        }
        take(&p.bytes);
        p.bytes.clear();
        true
    }

    /// Lines dropped since the last one that fit.
    pub fn skipped(&self) -> u64 {
        self.buf.lock().unwrap_or_else(PoisonError::into_inner).skipped
    }
}

/// The server's log: its watchers, what they want, and memcached's `log_*` counters.
#[derive(Debug)]
pub struct Log {
    /// The kinds some watcher asked for (0: nobody watches): the request path's one load.
    wanted: AtomicU16,
    /// memcached's global id, one per logged event (and one per watcher added).
    gid: AtomicU64,
    watchers: RwLock<Vec<Arc<Watcher>>>,
    watcher_buf_size: usize,
    /// Events formatted (memcached: entries written to a worker thread's log buffer).
    written: AtomicU64,
    /// Lines given to a watcher.
    sent: AtomicU64,
    /// Lines a watcher's full buffer had no room for.
    skipped: AtomicU64,
}

impl Default for Log {
    fn default() -> Self {
        Self::new(WATCHER_BUF_SIZE)
    }
}

/// `stats`' view of the log (memcached's `log_*` fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// memcached drops an event when its worker thread's log buffer is full; Larder
    /// formats events straight into the watchers' buffers, so has none to drop: 0.
    pub worker_dropped: u64,
    pub worker_written: u64,
    pub watcher_skipped: u64,
    pub watcher_sent: u64,
    pub watchers: u64,
}

impl Log {
    /// A log whose watchers each buffer up to `watcher_buf_size` bytes.
    pub fn new(watcher_buf_size: usize) -> Self {
        Self {
            wanted: AtomicU16::new(0),
            gid: AtomicU64::new(0),
            watchers: RwLock::new(Vec::new()),
            watcher_buf_size,
            written: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Whether some watcher wants events of `kind`: one relaxed load, the whole cost of
    /// logging when no one watches.
    #[inline]
    pub fn wants(&self, kind: u16) -> bool {
        self.wanted.load(Relaxed) & kind != 0
    }

    /// Adds a watcher of `kinds` whose buffer starts with `first` (the `OK` memcached puts
    /// there); `None` when [`WATCHER_LIMIT`] watchers are attached. The watcher is removed
    /// by [`Log::remove`].
    pub fn add(&self, kinds: u16, first: &[u8]) -> Option<Arc<Watcher>> {
        let mut ws = self.watchers.write().unwrap_or_else(PoisonError::into_inner);
        if ws.len() >= WATCHER_LIMIT {
            return None;
        }
        let pending = Pending { bytes: first.to_vec(), skipped: 0 };
        let w = Arc::new(Watcher { kinds, cap: self.watcher_buf_size, buf: Mutex::new(pending) });
        // memcached takes a gid for the watcher's starting point.
        self.gid.fetch_add(1, Relaxed);
        ws.push(w.clone());
        self.wanted.store(ws.iter().fold(0, |k, w| k | w.kinds), Relaxed);
        Some(w)
    }

    /// Detaches `w` (its connection closed).
    pub fn remove(&self, w: &Arc<Watcher>) {
        let mut ws = self.watchers.write().unwrap_or_else(PoisonError::into_inner);
        ws.retain(|x| !Arc::ptr_eq(x, w));
        self.wanted.store(ws.iter().fold(0, |k, w| k | w.kinds), Relaxed);
    }

    /// Formats `event` once and offers its line to every watcher of its kind. Callers
    /// check [`Log::wants`] first, so that nothing is built for an event nobody watches.
    pub fn log(&self, event: &Event<'_>) {
        let kind = event.kind();
        let ws = self.watchers.read().unwrap_or_else(PoisonError::into_inner);
        if !ws.iter().any(|w| w.kinds & kind != 0) {
            return;
        }
        let gid = self.gid.fetch_add(1, Relaxed) + 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut line = Vec::with_capacity(256);
        event.write_line(&mut line, (now.as_secs(), now.subsec_micros()), gid);
        self.written.fetch_add(1, Relaxed);
        for w in ws.iter().filter(|w| w.kinds & kind != 0) {
            let counter = if w.offer(&line) { &self.sent } else { &self.skipped };
            counter.fetch_add(1, Relaxed);
        }
    }

    /// `stats reset`: zeroes the counters (`log_watchers` counts what is attached, and
    /// stays), as memcached's reset does.
    pub fn reset(&self) {
        for c in [&self.written, &self.sent, &self.skipped] {
            c.store(0, Relaxed);
        }
    }

    /// The `log_*` counters `stats` prints.
    pub fn stats(&self) -> LogStats {
        LogStats {
            worker_dropped: 0,
            worker_written: self.written.load(Relaxed),
            watcher_skipped: self.skipped.load(Relaxed),
            watcher_sent: self.sent.load(Relaxed),
            watchers: self.watchers.read().unwrap_or_else(PoisonError::into_inner).len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(e: &Event<'_>) -> String {
        let mut out = Vec::new();
        e.write_line(&mut out, (1_796_587_479, 1763), 7);
        String::from_utf8(out).unwrap()
    }

    /// Lines as memcached 1.6.18 printed them for the same events.
    #[test]
    fn lines_in_memcacheds_format() {
        let o = Origin::from_conn_name("tcp:127.0.0.1:55222", 24);
        let cases: &[(Event<'_>, &str)] = &[
            (
                Event::ItemGet { key: b"foo", status: GetStatus::Found, clsid: 1, cfd: 24, size: 3 },
                "ts=1796587479.1763 gid=7 type=item_get key=foo status=found clsid=1 cfd=24 size=3\n",
            ),
            (
                Event::ItemGet { key: b"a%b\x01", status: GetStatus::NotFound, clsid: 0, cfd: 24, size: 0 },
                "ts=1796587479.1763 gid=7 type=item_get key=a%25b%01 status=not_found clsid=0 cfd=24 size=0\n",
            ),
            (
                Event::ItemStore {
                    key: b"n2",
                    status: StoreStatus::Stored,
                    cmd: "add",
                    ttl: 100,
                    clsid: 1,
                    cfd: 24,
                    size: 1,
                },
                "ts=1796587479.1763 gid=7 type=item_store key=n2 status=stored cmd=add ttl=100 clsid=1 cfd=24 size=1\n",
            ),
            (
                Event::Eviction { key: b"k 1", fetched: false, ttl: -1, la: 3, clsid: 12, size: 1000 },
                "ts=1796587479.1763 gid=7 type=eviction key=k%201 fetch=no ttl=-1 la=3 clsid=12 size=1000\n",
            ),
            (
                Event::ConnNew(&o),
                "ts=1796587479.1763 gid=7 type=conn_new rip=127.0.0.1 rport=55222 transport=tcp cfd=24\n",
            ),
            (
                Event::ConnClose(&o, CloseReason::Normal),
                "ts=1796587479.1763 gid=7 type=conn_close rip=127.0.0.1 rport=55222 transport=tcp reason=normal cfd=24\n",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(line(e), *want);
        }
        let u = Origin::from_conn_name("unix:/tmp/mc.sock", 9);
        assert_eq!((u.rip.as_str(), u.rport, u.transport), ("unix", 0, "local"));
        let v6 = Origin::from_conn_name("tcp6:[::1]:4000", 9);
        assert_eq!((v6.rip.as_str(), v6.rport, v6.transport), ("::1", 4000, "tcp"));
    }

    #[test]
    fn uri_encoding_keeps_only_unreserved_bytes() {
        let mut out = Vec::new();
        uri_encode(b"Az09-._~ /:%\xff", &mut out);
        assert_eq!(out, b"Az09-._~%20%2F%3A%25%FF");
    }

    #[test]
    fn nobody_watching_costs_nothing_and_logs_nothing() {
        let log = Log::default();
        assert!(!log.wants(kind::FETCHERS));
        log.log(&Event::ItemGet { key: b"k", status: GetStatus::Found, clsid: 1, cfd: 1, size: 1 });
        assert_eq!(log.stats(), LogStats::default());
    }

    #[test]
    fn watchers_get_only_their_kinds() {
        let log = Log::default();
        let f = log.add(kind::FETCHERS, b"OK\r\n").unwrap();
        let m = log.add(kind::MUTATIONS, b"OK\r\n").unwrap();
        assert!(log.wants(kind::FETCHERS) && log.wants(kind::MUTATIONS) && !log.wants(kind::EVICTIONS));
        log.log(&Event::ItemGet { key: b"k", status: GetStatus::Found, clsid: 1, cfd: 1, size: 1 });
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert!(f.drain(|l| a.extend_from_slice(l)) && m.drain(|l| b.extend_from_slice(l)));
        assert!(
            a.starts_with(b"OK\r\nts=") && a.ends_with(b" type=item_get key=k status=found clsid=1 cfd=1 size=1\n")
        );
        assert_eq!(b, b"OK\r\n");
        assert!(!f.drain(|_| ()));
        let s = log.stats();
        assert_eq!((s.worker_written, s.watcher_sent, s.watcher_skipped, s.watchers), (1, 1, 0, 2));
        log.remove(&f);
        assert!(!log.wants(kind::FETCHERS) && log.wants(kind::MUTATIONS));
        log.remove(&m);
        assert!(!log.wants(u16::MAX));
        assert_eq!(log.stats().watchers, 0);
    }

    #[test]
    fn a_full_buffer_drops_lines_and_says_how_many() {
        let log = Log::new(1024);
        let w = log.add(kind::FETCHERS, b"").unwrap();
        let get = Event::ItemGet { key: b"key", status: GetStatus::NotFound, clsid: 0, cfd: 5, size: 0 };
        for _ in 0..100 {
            log.log(&get);
        }
        let s = log.stats();
        assert_eq!(s.watcher_sent + s.watcher_skipped, 100);
        assert!(s.watcher_sent > 5 && s.watcher_skipped > 50, "{s:?}");
        assert_eq!(w.skipped(), s.watcher_skipped);
        let mut out = Vec::new();
        w.drain(|l| out.extend_from_slice(l));
        assert!(out.len() <= 1024);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count() as u64, s.watcher_sent);
        // Room again: the next line comes after memcached's note of what was missed.
        log.log(&get);
        out.clear();
        w.drain(|l| out.extend_from_slice(l));
        let text = String::from_utf8(out).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        assert_eq!(first, format!("skipped={}", s.watcher_skipped));
        assert!(rest.contains("type=item_get key=key status=not_found"));
        assert_eq!(w.skipped(), 0);
    }

    #[test]
    fn at_most_twenty_watchers() {
        let log = Log::default();
        let ws: Vec<_> = (0..WATCHER_LIMIT).map(|_| log.add(kind::FETCHERS, b"OK\r\n").unwrap()).collect();
        assert!(log.add(kind::FETCHERS, b"OK\r\n").is_none());
        log.remove(&ws[0]);
        assert!(log.add(kind::FETCHERS, b"OK\r\n").is_some());
    }
}
