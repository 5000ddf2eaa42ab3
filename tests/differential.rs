//! Byte-for-byte differential test: every session in `tests/corpus/*.txt` is played
//! against Debian's `memcached` and against Larder, each on a fresh server, and the
//! replies are compared step by step. Only CAS uniques in `VALUE` lines, `STAT` values
//! (but those a session names in `stat_values`) and the `VERSION` string are normalised;
//! every other byte must match.
//!
//! # Corpus format
//!
//! ```text
//! # comment (a line starting with '#'; blank lines are ignored)
//! === session name [-I 512k]    starts a session; [...] holds memcached flags, given to
//!                               both servers: Larder's Config is built from them by its
//!                               own command line parser (`Cli`, then `Config::from_cli`)
//! > TEXT      send what is buffered + TEXT + "\r\n", then sync (one synced step)
//! >= TEXT     send what is buffered + TEXT (no terminator added), then sync
//! >| TEXT     send what is buffered + TEXT (no terminator added), do NOT sync: the server
//!             may be mid-line or mid data block; the reply is collected at the next sync
//! + TEXT      buffer TEXT + "\r\n" (goes out in the same write as the next send)
//! += TEXT     buffer TEXT (no terminator)
//! sleep SECS  wait (memcached's clock ticks once a second: use TTL 2 + sleep 3)
//! expect_close  send what is buffered, read until EOF (2 s) -> "<closed>" or "<open>"
//! stat_values NAME...  in this session (wherever the line stands), `STAT NAME <value>`
//!             lines keep their values: for counters both servers must agree on
//! @2 > TEXT   any send line or expect_close may start with `@N ` (N = 1..16) to use the
//!             session's N-th connection (opened on first use; default 1); buffers, syncs
//!             and partial sends are per connection, `$CAS` values are shared
//! lines N [FIELD...]  send what is buffered, then read until N more lines have come (a
//!             `watch` connection's log stream: no `mn` sentinel, which a watcher ignores).
//!             In those lines the values of `ts= gid= cfd= rport=`, and of each FIELD
//!             named (`key la`), are masked as `*`; lines beyond the N are kept for the
//!             next `lines`. Counts as a synced step. Start a watcher with
//!             `>| watch fetchers\r\n` and `lines 1` (its `OK`)
//! reference 1.6.45  the session is judged by memcached 1.6.45 (see below), not 1.6.18
//! cas_masked  (with `reference`) CAS values in meta replies (`c123`, `cas=123`) compare
//!             as `<cas>`: 1.6.45's CAS counter runs one ahead of 1.6.18's, which Larder
//!             keeps; sessions of 1.6.45's additions name CAS values with `E` instead
//! ```
//!
//! TEXT escapes: `\r \n \t \0 \s`(space) `\\ \{ \$ \xNN`; `{STR*N}` repeats STR N times
//! (`{x*1048577}`); `$CAS` is the last cas unique seen in a `VALUE` line on this server
//! in this session, `$CAS1`, `$CAS2`, ... the first, second, ... one.
//!
//! Syncing: the harness appends the sentinel `mn\r\n` to the write and reads until it has
//! one `MN` reply line per `mn` command sent since the last sync (so sessions may send `mn`
//! themselves), then strips the sentinel's `MN`. A closed connection is recorded as
//! `<closed>`, a read timeout (5 s) as `<timeout>`. Note that memcached's `mn` (like a
//! successful get, `quit`, the end of each read, and every 21st command of a batch)
//! flushes pending replies, so sessions that test reply culling keep `mn` out of the step.
//!
//! # Over TLS
//!
//! `differential_corpus_over_tls_vs_memcached` plays the same sessions over TLS, against
//! memcached `-Z` and Larder with the same certificate files. memcached 1.6.18 over TLS
//! leaves a command unanswered when it arrives in the same read as the end of a set's
//! data (`set k 0 0 5\r\n`, then `first\r\nmn\r\n`: `STORED`, and no `MN` until the
//! client sends more; over TCP it answers). Sessions where memcached so stalls are not
//! compared; Larder must answer every step of them.
//!
//! # Sessions judged by memcached 1.6.45
//!
//! Larder follows memcached 1.6.45 where it answers a client otherwise than Debian's
//! 1.6.18 (its meta flags `E`, `x`, `mg C`, `ms s` and `N`, `lru_crawler mgdump`, `watch
//! deletions`, changed errors: `tests/corpus/since_1.6.18.txt`, and the 1.6.18 sessions
//! renamed "... (1.6.45 answers otherwise than 1.6.18)"). CI has no 1.6.45, so its
//! replies are kept in `tests/corpus/1.6.45.golden`, recorded from a build of it. For a
//! `reference 1.6.45` session, Larder (also over TLS) must answer byte for byte as the
//! transcript says, and Debian's memcached must not (or the mark is not needed). Over
//! TLS the transcripts that list `stats` are not compared (TLS adds counters of its own).
//!
//! - `LARDER_REF_MEMCACHED=$(../shared/reference/build-memcached)` also plays each such
//!   session against that live 1.6.45 binary and fails if it no longer answers as its
//!   transcript says.
//! - With `LARDER_REF_RECORD=1` as well, the transcripts are recorded (all of them, or
//!   those `DIFF_FILTER` selects) into the golden file instead. A session whose steps no
//!   longer match its transcript fails until recorded again.
//!
//! # Environment
//!
//! - `DIFF_AGAINST=memcached` compares memcached with a second memcached instead of Larder
//!   (must give zero differences: it proves the harness is deterministic).
//! - `DIFF_ONLY_MEMCACHED=1` runs memcached alone (with `DIFF_DUMP=1`, prints its replies).
//! - `DIFF_FILTER=substr` runs only sessions whose `file: name` contains `substr`.
//! - `DIFF_THREADS=n` (default 8), `DIFF_DUMP=1` prints every step's replies,
//!   `MEMCACHED_BIN=path` (default: `memcached` on PATH).

mod common;

use clap::Parser as _;
use common::memcached::{Memcached, memcached_available, start_memcached, start_memcached_bin};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const READ_TIMEOUT: Duration = Duration::from_secs(5);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// After an unsynced send, give the server a moment so the bytes arrive as their own read.
const PARTIAL_PAUSE: Duration = Duration::from_millis(20);
const SENTINEL: &[u8] = b"mn\r\n";

// ---------------------------------------------------------------------------------------
// Corpus

#[derive(Debug, Clone)]
enum Action {
    /// Append to the pending buffer; `then` says what to do with it.
    Send {
        text: String,
        crlf: bool,
        then: Then,
    },
    Sleep(Duration),
    ExpectClose,
    /// Read this many log lines from a watcher, masking these fields' values as well as
    /// the ones that always differ.
    Lines(usize, Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Then {
    Buffer,
    Sync,
    NoSync,
}

#[derive(Debug, Clone)]
struct Step {
    line: usize,
    src: String,
    /// Which of the session's connections (1-based; `@N` prefix, default 1).
    conn: usize,
    action: Action,
}

#[derive(Debug, Clone)]
struct Session {
    file: String,
    line: usize,
    name: String,
    opts: Vec<String>,
    /// `stat_values`: the `STAT` names whose values are compared, not normalised.
    stat_values: Vec<String>,
    /// `reference 1.6.45`: the session is judged by memcached 1.6.45's recorded replies
    /// (its golden transcript), not by Debian's memcached (which must answer otherwise).
    reference: bool,
    /// `cas_masked`: CAS values in meta replies (`c123`, `cas=123`) are compared as
    /// `<cas>`: 1.6.45's counter starts one higher than 1.6.18's, which Larder keeps.
    cas_masked: bool,
    steps: Vec<Step>,
}

impl Session {
    fn label(&self) -> String {
        format!("{}:{} \"{}\"", self.file, self.line, self.name)
    }
}

fn parse_corpus_file(file: &str, text: &str) -> Vec<Session> {
    let mut sessions: Vec<Session> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let here = || format!("{file}:{line}");
        if l.trim().is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(rest) = l.strip_prefix("===") {
            let rest = rest.trim();
            let (name, opts) = match (rest.rfind('['), rest.ends_with(']')) {
                (Some(open), true) => (
                    rest[..open].trim().to_string(),
                    rest[open + 1..rest.len() - 1].split_whitespace().map(String::from).collect(),
                ),
                _ => (rest.to_string(), Vec::new()),
            };
            assert!(!name.is_empty(), "{}: session without a name", here());
            sessions.push(Session {
                file: file.to_string(),
                line,
                name,
                opts,
                stat_values: Vec::new(),
                reference: false,
                cas_masked: false,
                steps: Vec::new(),
            });
            continue;
        }
        let session = sessions.last_mut().unwrap_or_else(|| panic!("{}: step before the first `===` header", here()));
        if let Some(names) = l.strip_prefix("stat_values ") {
            session.stat_values.extend(names.split_whitespace().map(String::from));
            continue;
        }
        if let Some(version) = l.strip_prefix("reference ") {
            assert_eq!(
                version.trim(),
                REFERENCE_VERSION,
                "{}: the one reference release is {REFERENCE_VERSION}",
                here()
            );
            session.reference = true;
            continue;
        }
        if l.trim_end() == "cas_masked" {
            session.cas_masked = true;
            continue;
        }
        let (conn, l) = match l.strip_prefix('@') {
            Some(rest) => {
                let (n, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                let n: usize = n.parse().unwrap_or_else(|_| panic!("{}: bad @N prefix", here()));
                assert!((1..=16).contains(&n), "{}: connection number must be 1..=16", here());
                (n, rest)
            }
            None => (1, l),
        };
        let action = if let Some(s) = l.strip_prefix("sleep ") {
            Action::Sleep(Duration::from_secs_f64(s.trim().parse().unwrap_or_else(|_| panic!("{}: bad sleep", here()))))
        } else if l.trim_end() == "expect_close" {
            Action::ExpectClose
        } else if let Some(rest) = l.strip_prefix("lines ") {
            let mut words = rest.split_whitespace();
            let n = words.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{}: bad lines", here()));
            Action::Lines(n, words.map(String::from).collect())
        } else {
            let (prefix, body) = match l.find(' ') {
                Some(sp) => (&l[..sp], &l[sp + 1..]),
                None => (l, ""),
            };
            let (crlf, then) = match prefix {
                ">" => (true, Then::Sync),
                ">=" => (false, Then::Sync),
                ">|" => (false, Then::NoSync),
                "+" => (true, Then::Buffer),
                "+=" => (false, Then::Buffer),
                _ => panic!("{}: cannot parse line {l:?}", here()),
            };
            // Validate escapes early so corpus typos fail at load time.
            expand(body, &[]).unwrap_or_else(|e| panic!("{}: {e}", here()));
            Action::Send { text: body.to_string(), crlf, then }
        };
        let src = if conn == 1 { l.to_string() } else { format!("@{conn} {l}") };
        session.steps.push(Step { line, src, conn, action });
    }
    for s in &sessions {
        for c in 1..=16 {
            let last_send = s.steps.iter().rev().filter(|st| st.conn == c).find_map(|st| match &st.action {
                Action::Send { then, .. } => Some(*then),
                Action::ExpectClose | Action::Lines(..) => Some(Then::Sync),
                Action::Sleep(_) => None,
            });
            assert!(
                matches!(last_send, None | Some(Then::Sync)),
                "{}: each connection must end with a synced step or expect_close",
                s.label()
            );
        }
    }
    sessions
}

fn load_corpus() -> Vec<Session> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        all.extend(parse_corpus_file(&name, &text));
    }
    let mut seen = std::collections::HashSet::new();
    for s in &all {
        assert!(seen.insert((s.file.clone(), s.name.clone())), "duplicate session {}", s.label());
    }
    all
}

/// Expands escapes, `{STR*N}` repeats and `$CAS` references into bytes.
fn expand(text: &str, cas: &[u64]) -> Result<Vec<u8>, String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let (bytes, used) = escape(&b[i..])?;
                out.extend_from_slice(&bytes);
                i += used;
            }
            b'{' => {
                let close =
                    find_unescaped(&b[i + 1..], b'}').ok_or_else(|| format!("unclosed '{{' in {text:?}"))? + i + 1;
                let inner = &text[i + 1..close];
                let star = inner.rfind('*').ok_or_else(|| format!("'{{{inner}}}' needs '*N'"))?;
                let n: usize = inner[star + 1..].parse().map_err(|_| format!("bad repeat count in '{{{inner}}}'"))?;
                let unit = expand(&inner[..star], cas)?;
                for _ in 0..n {
                    out.extend_from_slice(&unit);
                }
                i = close + 1;
            }
            b'$' if b[i..].starts_with(b"$CAS") => {
                let digits = b[i + 4..].iter().take_while(|c| c.is_ascii_digit()).count();
                let value = if digits == 0 {
                    cas.last().copied()
                } else {
                    let n: usize = text[i + 4..i + 4 + digits].parse().unwrap();
                    n.checked_sub(1).and_then(|k| cas.get(k).copied())
                };
                // At corpus load time no cas is known yet; a later miss is a real failure.
                let value = value.unwrap_or(0);
                out.extend_from_slice(value.to_string().as_bytes());
                i += 4 + digits;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn find_unescaped(b: &[u8], want: u8) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == want {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn escape(b: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let c = *b.get(1).ok_or("trailing backslash")?;
    Ok(match c {
        b'r' => (vec![b'\r'], 2),
        b'n' => (vec![b'\n'], 2),
        b't' => (vec![b'\t'], 2),
        b'0' => (vec![0], 2),
        b's' => (vec![b' '], 2),
        b'\\' | b'{' | b'}' | b'$' | b'*' => (vec![c], 2),
        b'x' => {
            let hex = b.get(2..4).ok_or("short \\x escape")?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).map_err(|e| e.to_string())?, 16)
                .map_err(|_| "bad \\x escape".to_string())?;
            (vec![v], 4)
        }
        _ => return Err(format!("unknown escape \\{}", c as char)),
    })
}

// ---------------------------------------------------------------------------------------
// Servers

/// Larder's configuration for a session's memcached flags, through the real command line
/// parser, so each flag means to Larder what the binary makes of it. The harness picks the
/// port (an ephemeral one, for both servers), the address and Larder's threads (memcached
/// runs with `-t 1`; see `common::memcached`).
fn larder_config(opts: &[String]) -> larder::config::Config {
    let argv =
        ["larder", "-p", "0", "-l", "127.0.0.1", "-t", "2"].into_iter().map(String::from).chain(opts.iter().cloned());
    let cli = larder::Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("session options {opts:?}: {}", larder::config::clap_line(&e)));
    larder::Config::from_cli(&cli).unwrap_or_else(|e| panic!("session options {opts:?}: {e}"))
}

enum Server {
    Memcached(Memcached),
    Larder(common::TestServer),
}

impl Server {
    fn addr(&self) -> SocketAddr {
        match self {
            Server::Memcached(m) => m.addr,
            Server::Larder(l) => l.addr,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Memcached,
    Larder,
    /// memcached 1.6.45 built from source (`LARDER_REF_MEMCACHED`).
    Reference,
}

/// The newer memcached release whose behaviour Larder follows where it differs from
/// Debian's 1.6.18: sessions marked `reference 1.6.45` are judged by its replies.
const REFERENCE_VERSION: &str = "1.6.45";

/// Where the reference release's replies to the `reference` sessions are kept.
const GOLDEN: &str = "tests/corpus/1.6.45.golden";

/// The reference binary, when this run may start it (`LARDER_REF_MEMCACHED=path`).
fn reference_bin() -> Option<String> {
    std::env::var("LARDER_REF_MEMCACHED").ok().filter(|v| !v.is_empty())
}

impl Kind {
    /// Starts a server for a session; with `tls`, serving TLS with those certificates.
    fn start(self, opts: &[String], tls: Option<&common::tls::Certs>) -> Server {
        match (self, tls) {
            (Kind::Memcached, None) => Server::Memcached(start_memcached(opts)),
            (Kind::Memcached, Some(certs)) => {
                Server::Memcached(start_memcached(&[&certs.memcached_args(), opts].concat()))
            }
            (Kind::Reference, None) => {
                let bin = reference_bin().expect("LARDER_REF_MEMCACHED names the reference memcached");
                Server::Memcached(start_memcached_bin(&bin, opts, &[]))
            }
            (Kind::Reference, Some(_)) => unreachable!("the reference release is played over TCP only"),
            (Kind::Larder, None) => Server::Larder(common::spawn(larder_config(opts))),
            (Kind::Larder, Some(certs)) => {
                let config = larder::config::Config { tls: certs.settings(), ..larder_config(opts) };
                Server::Larder(common::tls::spawn(config))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running a session

#[derive(Debug, Clone)]
struct Record {
    line: usize,
    src: String,
    reply: Vec<u8>,
}

/// A session's connection: plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn connect(addr: SocketAddr, tls: Option<&common::tls::Certs>) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        tcp.set_write_timeout(Some(READ_TIMEOUT))?;
        Ok(match tls {
            None => Self::Plain(tcp),
            Some(certs) => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let conn = rustls::ClientConnection::new(certs.client_config(None), name).unwrap();
                Self::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
        })
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Plain(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

struct Conn {
    stream: Stream,
    closed: bool,
    /// Bytes buffered by `+` lines, not sent yet.
    pending: Vec<u8>,
    /// Corpus lines since this connection's last record.
    src_lines: Vec<String>,
    /// Bytes sent since the last sync, to count the `mn` commands whose `MN` to wait for.
    unsynced: Vec<u8>,
    acc: Vec<u8>,
    /// The session's `stat_values`.
    keep: Vec<String>,
}

impl Conn {
    fn write(&mut self, bytes: &[u8]) {
        self.unsynced.extend_from_slice(bytes);
        if self.closed || bytes.is_empty() {
            return;
        }
        if self.stream.write_all(bytes).and_then(|()| self.stream.flush()).is_err() {
            self.closed = true;
        }
    }

    /// Reads until `done(acc)` or EOF/error (closed) or the deadline (timed out).
    fn read_until(&mut self, deadline: Instant, done: impl Fn(&[u8]) -> bool) -> ReadEnd {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if done(&self.acc) {
                return ReadEnd::Done;
            }
            if self.closed {
                return ReadEnd::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return ReadEnd::TimedOut;
            }
            self.stream.tcp().set_read_timeout(Some(deadline - now)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => self.closed = true,
                Ok(n) => self.acc.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// Writes `bytes` followed by the sentinel in one write, then collects the replies up
    /// to the sentinel's `MN` (or EOF / timeout) and normalises them.
    fn send_and_sync(&mut self, bytes: &[u8], cas: &mut Vec<u64>) -> Vec<u8> {
        self.write(&[bytes, SENTINEL].concat());
        let want = count_mn_commands(&self.unsynced);
        self.unsynced.clear();
        let end = self.read_until(Instant::now() + READ_TIMEOUT, |acc| {
            acc.ends_with(b"MN\r\n") && walk(acc, None, &mut Vec::new(), &[]) >= want
        });
        let mut raw = std::mem::take(&mut self.acc);
        let mut suffix: &[u8] = b"";
        match end {
            ReadEnd::Done => raw.truncate(raw.len() - 4),
            ReadEnd::Closed => suffix = b"<closed>",
            ReadEnd::TimedOut => suffix = b"<timeout>",
        }
        let mut out = Vec::new();
        walk(&raw, Some(&mut out), cas, &self.keep);
        out.extend_from_slice(suffix);
        out
    }

    fn expect_close(&mut self, cas: &mut Vec<u64>) -> Vec<u8> {
        self.unsynced.clear();
        let end = self.read_until(Instant::now() + CLOSE_TIMEOUT, |_| false);
        let raw = std::mem::take(&mut self.acc);
        let mut out = Vec::new();
        walk(&raw, Some(&mut out), cas, &self.keep);
        out.extend_from_slice(if end == ReadEnd::Closed { b"<closed>" } else { b"<open>" });
        out
    }
}

/// Fields of `watch` lines whose values differ between any two runs.
const LOG_MASKED: [&str; 4] = ["ts", "gid", "cfd", "rport"];

impl Conn {
    /// Reads until `n` more `\n`-terminated lines have come (or EOF / timeout); returns
    /// them with the values of [`LOG_MASKED`] and of `mask` replaced by `*`. Lines beyond
    /// the `n` stay for the next call.
    fn read_lines(&mut self, n: usize, mask: &[String]) -> Vec<u8> {
        let count = |acc: &[u8]| acc.iter().filter(|&&b| b == b'\n').count();
        let end = self.read_until(Instant::now() + READ_TIMEOUT, |acc| count(acc) >= n);
        let nth_line_end = |k: usize| self.acc.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(k);
        let cut = match end {
            ReadEnd::Done => n.checked_sub(1).and_then(nth_line_end).map_or(0, |(i, _)| i + 1),
            _ => self.acc.len(),
        };
        let rest = self.acc.split_off(cut);
        let raw = std::mem::replace(&mut self.acc, rest);
        let mut out = Vec::new();
        for line in raw.split_inclusive(|&b| b == b'\n') {
            let mut first = true;
            for token in line.split(|&b| b == b' ') {
                if !first {
                    out.push(b' ');
                }
                first = false;
                let name = token.iter().position(|&b| b == b'=').map(|i| &token[..i]);
                match name {
                    Some(name)
                        if LOG_MASKED.iter().any(|m| m.as_bytes() == name)
                            || mask.iter().any(|m| m.as_bytes() == name) =>
                    {
                        out.extend_from_slice(name);
                        out.extend_from_slice(b"=*");
                        if token.ends_with(b"\n") {
                            out.push(b'\n');
                        }
                    }
                    _ => out.extend_from_slice(token),
                }
            }
        }
        match end {
            ReadEnd::Done => {}
            ReadEnd::Closed => out.extend_from_slice(b"<closed>"),
            ReadEnd::TimedOut => out.extend_from_slice(b"<timeout>"),
        }
        out
    }
}

#[derive(PartialEq)]
enum ReadEnd {
    Done,
    Closed,
    TimedOut,
}

/// Counts the command lines in `sent` that are `mn` (each gets an `MN` line back).
fn count_mn_commands(sent: &[u8]) -> usize {
    sent.split(|&c| c == b'\n')
        .rev()
        .skip(1) // the part after the last '\n' is not a complete line
        .filter(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            l == b"mn" || l.starts_with(b"mn ")
        })
        .count()
}

/// Walks a reply stream line by line, skipping `VALUE` data blocks. Returns the number of
/// `MN` lines. With `out`, writes the normalised stream there and records cas uniques;
/// `STAT` lines named in `keep` are written as they came.
fn walk(buf: &[u8], mut out: Option<&mut Vec<u8>>, cas: &mut Vec<u64>, keep: &[String]) -> usize {
    let mut mn = 0;
    let mut pos = 0;
    while pos < buf.len() {
        let Some(nl) = memchr_nl(&buf[pos..]) else {
            if let Some(o) = out.as_deref_mut() {
                o.extend_from_slice(&buf[pos..]);
            }
            break;
        };
        let line_end = pos + nl + 1;
        let line = &buf[pos..line_end];
        let body = line.strip_suffix(b"\n").unwrap();
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let ending = &line[body.len()..];
        let mut data_len = None;
        let mut normalised: Option<Vec<u8>> = None;
        if body == b"MN" {
            mn += 1;
        } else if body.starts_with(b"VALUE ") {
            let toks: Vec<&[u8]> = body.split(|&c| c == b' ').collect();
            if toks.len() == 4 || toks.len() == 5 {
                data_len = std::str::from_utf8(toks[3]).ok().and_then(|s| s.parse::<usize>().ok());
            }
            if toks.len() == 5 {
                if let Some(c) = std::str::from_utf8(toks[4]).ok().and_then(|s| s.parse().ok())
                    && out.is_some()
                {
                    cas.push(c);
                }
                normalised = Some([&toks[..4].join(&b' ')[..], b" <cas>"].concat());
            }
        } else if body.starts_with(b"STAT ") {
            let toks: Vec<&[u8]> = body.splitn(3, |&c| c == b' ').collect();
            if !keep.iter().any(|k| k.as_bytes() == toks[1]) {
                normalised = Some([b"STAT ", toks[1]].concat());
            }
        } else if body.starts_with(b"VERSION ") {
            normalised = Some(b"VERSION <v>".to_vec());
        }
        if let Some(o) = out.as_deref_mut() {
            match &normalised {
                Some(n) => {
                    o.extend_from_slice(n);
                    o.extend_from_slice(ending);
                }
                None => o.extend_from_slice(line),
            }
        }
        pos = line_end;
        if let Some(n) = data_len {
            let end = (pos + n + 2).min(buf.len());
            if let Some(o) = out.as_deref_mut() {
                o.extend_from_slice(&buf[pos..end]);
            }
            pos = end;
        }
    }
    mn
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Plays a session against a fresh server of `kind`.
fn run_session(kind: Kind, session: &Session, tls: Option<&common::tls::Certs>) -> Vec<Record> {
    let server = kind.start(&session.opts, tls);
    let mut conns: Vec<Option<Conn>> = (0..=16).map(|_| None).collect();
    // Cas uniques seen on any of the session's connections, in order.
    let mut cas: Vec<u64> = Vec::new();
    let mut records = Vec::new();
    for step in &session.steps {
        if let Action::Sleep(d) = &step.action {
            std::thread::sleep(*d);
            for c in conns.iter_mut().flatten() {
                c.src_lines.push(step.src.clone());
            }
            continue;
        }
        let conn = conns[step.conn].get_or_insert_with(|| {
            let stream = Stream::connect(server.addr(), tls)
                .unwrap_or_else(|e| panic!("{:?} connect for {}: {e}", kind, session.label()));
            Conn {
                stream,
                closed: false,
                pending: Vec::new(),
                src_lines: Vec::new(),
                unsynced: Vec::new(),
                acc: Vec::new(),
                keep: session.stat_values.clone(),
            }
        });
        conn.src_lines.push(step.src.clone());
        let reply = match &step.action {
            Action::Sleep(_) => unreachable!(),
            Action::Send { text, crlf, then } => {
                conn.pending.extend(expand(text, &cas).unwrap());
                if *crlf {
                    conn.pending.extend_from_slice(b"\r\n");
                }
                match then {
                    Then::Buffer => None,
                    Then::NoSync => {
                        let bytes = std::mem::take(&mut conn.pending);
                        conn.write(&bytes);
                        std::thread::sleep(PARTIAL_PAUSE);
                        None
                    }
                    Then::Sync => {
                        let bytes = std::mem::take(&mut conn.pending);
                        Some(conn.send_and_sync(&bytes, &mut cas))
                    }
                }
            }
            Action::ExpectClose => {
                let bytes = std::mem::take(&mut conn.pending);
                conn.write(&bytes);
                Some(conn.expect_close(&mut cas))
            }
            Action::Lines(n, mask) => {
                let bytes = std::mem::take(&mut conn.pending);
                conn.write(&bytes);
                conn.unsynced.clear();
                Some(conn.read_lines(*n, mask))
            }
        };
        if let Some(reply) = reply {
            let src = std::mem::take(&mut conn.src_lines).join("\n");
            records.push(Record { line: step.line, src, reply });
        }
    }
    for c in conns.iter_mut().flatten() {
        let _ = c.stream.tcp().shutdown(Shutdown::Both);
    }
    drop(conns);
    drop(server);
    records
}

// ---------------------------------------------------------------------------------------
// Golden transcripts of the reference release
//
// `tests/corpus/1.6.45.golden` holds memcached 1.6.45's (normalised) replies to every
// session marked `reference 1.6.45`, recorded by playing them against a 1.6.45 build:
//
//     === <file>: <session name>
//     > <the step's corpus lines, escaped, joined by \n>
//     < <the reply, escaped>
//
// Escapes are the corpus's (`\r \n \t \0 \\ \{ \} \$ \* \xNN`, `{C*N}` for a run of
// one byte), so a reply reads back through `expand`. A session whose steps no longer
// match its transcript fails until it is recorded again.

type Golden = BTreeMap<String, Vec<(String, Vec<u8>)>>;

fn golden_key(s: &Session) -> String {
    format!("{}: {}", s.file, s.name)
}

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN)
}

fn load_golden() -> Golden {
    let path = golden_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Golden::new(),
        Err(e) => panic!("reading {}: {e}", path.display()),
    };
    let mut golden = Golden::new();
    let mut current: Option<String> = None;
    let mut src: Option<String> = None;
    for (i, l) in text.lines().enumerate() {
        let here = || format!("{GOLDEN}:{}", i + 1);
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(key) = l.strip_prefix("=== ") {
            current = Some(key.to_string());
            golden.insert(key.to_string(), Vec::new());
        } else if let Some(text) = l.strip_prefix("> ") {
            let bytes = expand(text, &[]).unwrap_or_else(|e| panic!("{}: {e}", here()));
            src = Some(String::from_utf8(bytes).unwrap_or_else(|_| panic!("{}: not UTF-8", here())));
        } else if let Some(text) = l.strip_prefix("< ").or_else(|| (l == "<").then_some("")) {
            let key = current.as_ref().unwrap_or_else(|| panic!("{}: reply before a session", here()));
            let src = src.take().unwrap_or_else(|| panic!("{}: reply without its step", here()));
            let reply = expand(text, &[]).unwrap_or_else(|e| panic!("{}: {e}", here()));
            golden.get_mut(key).unwrap().push((src, reply));
        } else {
            panic!("{}: cannot parse {l:?}", here());
        }
    }
    golden
}

fn save_golden(golden: &Golden) {
    let mut out = String::from(
        "# memcached 1.6.45's replies to the corpus sessions marked `reference 1.6.45`, recorded\n\
         # by tests/differential.rs (LARDER_REF_MEMCACHED=<1.6.45 binary> LARDER_REF_RECORD=1).\n\
         # Do not edit by hand: record again.\n",
    );
    for (key, records) in golden {
        let _ = write!(out, "\n=== {key}\n");
        for (src, reply) in records {
            let _ = writeln!(out, "> {}", golden_escape(src.as_bytes()));
            let _ = writeln!(out, "< {}", golden_escape(reply));
        }
    }
    std::fs::write(golden_path(), out).unwrap_or_else(|e| panic!("writing {GOLDEN}: {e}"));
}

/// Bytes as one line that `expand` reads back.
fn golden_escape(b: &[u8]) -> String {
    let one = |c: u8| match c {
        b'\r' => "\\r".to_string(),
        b'\n' => "\\n".to_string(),
        b'\t' => "\\t".to_string(),
        0 => "\\0".to_string(),
        b'\\' | b'{' | b'}' | b'$' | b'*' => format!("\\{}", c as char),
        0x21..=0x7e | b' ' => (c as char).to_string(),
        _ => format!("\\x{c:02x}"),
    };
    let mut s = String::new();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..].iter().take_while(|&&x| x == b[i]).count();
        if run > 8 {
            let _ = write!(s, "{{{}*{run}}}", one(b[i]));
            i += run;
        } else {
            s.push_str(&one(b[i]));
            i += 1;
        }
    }
    // A trailing space would not survive editors: write it as \s.
    if s.ends_with(' ') {
        s.pop();
        s.push_str("\\s");
    }
    s
}

/// The golden transcript as records of `session`'s steps (`None`: missing or stale).
fn golden_records(session: &Session, golden: &Golden) -> Result<Vec<Record>, String> {
    let record_again = "record it again: LARDER_REF_MEMCACHED=$(../shared/reference/build-memcached) \
                        LARDER_REF_RECORD=1 cargo test --test differential differential_corpus_vs_memcached";
    let Some(recs) = golden.get(&golden_key(session)) else {
        return Err(format!("no 1.6.45 transcript in {GOLDEN}; {record_again}"));
    };
    // The steps that produce a record, in order, as `run_session` joins their lines.
    let mut srcs = Vec::new();
    let mut pending: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for step in &session.steps {
        if let Action::Sleep(_) = step.action {
            for v in pending.values_mut() {
                v.push(step.src.clone());
            }
            continue;
        }
        let lines = pending.entry(step.conn).or_default();
        lines.push(step.src.clone());
        let synced = match &step.action {
            Action::Send { then, .. } => *then == Then::Sync,
            _ => true,
        };
        if synced {
            srcs.push((step.line, std::mem::take(lines).join("\n")));
        }
    }
    if srcs.len() != recs.len() || srcs.iter().zip(recs).any(|((_, a), (b, _))| a != b) {
        return Err(format!("the 1.6.45 transcript in {GOLDEN} is for other steps; {record_again}"));
    }
    Ok(srcs.into_iter().zip(recs).map(|((line, src), (_, reply))| Record { line, src, reply: reply.clone() }).collect())
}

// ---------------------------------------------------------------------------------------
// Reporting

/// Shows bytes with escapes visible; long runs of one byte are shown as `{c*N}`.
fn show(b: &[u8]) -> String {
    const HEAD: usize = 1200;
    const TAIL: usize = 300;
    if b.len() > HEAD + TAIL + 100 {
        return format!(
            "{}\" ...({} bytes)... \"{}",
            show_all(&b[..HEAD]),
            b.len() - HEAD - TAIL,
            show_all(&b[b.len() - TAIL..])
        );
    }
    show_all(b)
}

fn show_all(b: &[u8]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < b.len() {
        // A line repeated 3+ times in a row is shown once, as `{LINE*N}`.
        if (i == 0 || b[i - 1] == b'\n')
            && let Some(len) = b[i..].iter().position(|&c| c == b'\n').map(|p| p + 1)
        {
            let line = &b[i..i + len];
            let reps = b[i..].chunks(len).take_while(|c| *c == line).count();
            if reps >= 3 && len > 1 {
                let _ = write!(s, "{{{}*{reps}}}", show_all(line));
                i += reps * len;
                continue;
            }
        }
        let c = b[i];
        let run = b[i..].iter().take_while(|&&x| x == c).count();
        let one = match c {
            b'\r' => "\\r".to_string(),
            b'\n' => "\\n".to_string(),
            b'\t' => "\\t".to_string(),
            b'\\' => "\\\\".to_string(),
            b'{' => "\\{".to_string(),
            0x20..=0x7e => (c as char).to_string(),
            _ => format!("\\x{c:02x}"),
        };
        if run > 8 {
            let _ = write!(s, "{{{one}*{run}}}");
            i += run;
        } else {
            s.push_str(&one);
            i += 1;
        }
    }
    s
}

fn show_src(src: &str) -> String {
    let mut s: String = src.lines().collect::<Vec<_>>().join(" | ");
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn compare(session: &Session, a_name: &str, a: &[Record], b_name: &str, b: &[Record]) -> Option<String> {
    assert_eq!(a.len(), b.len());
    let mut report = String::new();
    let mut diffs = 0;
    for (ra, rb) in a.iter().zip(b) {
        if ra.reply == rb.reply {
            continue;
        }
        diffs += 1;
        if diffs <= 3 {
            let _ = writeln!(report, "  step {}:{}: {}", session.file, ra.line, show_src(&ra.src));
            let _ = writeln!(report, "    {a_name:>10}: \"{}\"", show(&ra.reply));
            let _ = writeln!(report, "    {b_name:>10}: \"{}\"", show(&rb.reply));
            let at = ra.reply.iter().zip(&rb.reply).take_while(|(x, y)| x == y).count();
            if at > 200 {
                let from = at - 40;
                let _ = writeln!(report, "    first difference at byte {at}; from byte {from}:");
                let _ = writeln!(
                    report,
                    "    {a_name:>10}: \"{}\"",
                    show(&ra.reply[from..(from + 200).min(ra.reply.len())])
                );
                let _ = writeln!(
                    report,
                    "    {b_name:>10}: \"{}\"",
                    show(&rb.reply[from..(from + 200).min(rb.reply.len())])
                );
            }
        }
    }
    if diffs == 0 {
        return None;
    }
    if diffs > 3 {
        let _ = writeln!(report, "  ... and {} more differing steps", diffs - 3);
    }
    Some(format!("DIFF {}\n{report}", session.label()))
}

fn dump(session: &Session, name: &str, recs: &[Record]) -> String {
    let mut s = format!("### {} [{name}] opts={:?}\n", session.label(), session.opts);
    for r in recs {
        let _ = writeln!(s, "  {}:{}: {}", session.file, r.line, show_src(&r.src));
        let _ = writeln!(s, "      -> \"{}\"", show(&r.reply));
    }
    s
}

// ---------------------------------------------------------------------------------------
// The test

#[test]
fn differential_corpus_vs_memcached() {
    differential(None);
}

/// The same sessions over TLS: Larder against memcached `-Z`, with certificates both read
/// from the same files.
#[test]
fn differential_corpus_over_tls_vs_memcached() {
    differential(Some(&common::tls::Certs::new()));
}

/// How the sessions marked `reference 1.6.45` are judged: Larder (over TLS too) against
/// the golden transcript; with `LARDER_REF_MEMCACHED`, the live 1.6.45 build against it
/// as well (or recorded into it, with `LARDER_REF_RECORD`); and Debian's memcached must
/// answer otherwise, or the mark is not needed.
struct Reference<'a> {
    golden: &'a Golden,
    live: bool,
    record: bool,
    recorded: Mutex<Golden>,
    /// Larder, unless the run plays memcached alone or against itself.
    other: Option<Kind>,
    tls: Option<&'a common::tls::Certs>,
    /// Sessions not compared over TLS: their transcript lists `stats`, which over TLS
    /// has TLS's own counters (the transcripts are recorded over TCP).
    tls_skipped: AtomicUsize,
}

/// `cas_masked`: the CAS values of meta reply lines as `<cas>`.
fn mask_cas(records: &[Record]) -> Vec<Record> {
    let mask_line = |line: &[u8]| -> Vec<u8> {
        let meta = [&b"HD"[..], b"VA ", b"EX", b"NS", b"NF", b"EN", b"ME "].iter().any(|p| line.starts_with(p));
        if !meta {
            return line.to_vec();
        }
        let mut out = Vec::new();
        for (i, tok) in line.split(|&b| b == b' ').enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            let (body, end) = match tok.iter().position(|&b| b == b'\r' || b == b'\n') {
                Some(p) => tok.split_at(p),
                None => (tok, &b""[..]),
            };
            let digits = |d: &[u8]| !d.is_empty() && d.iter().all(u8::is_ascii_digit);
            if i > 0 && body.first() == Some(&b'c') && digits(&body[1..]) {
                out.extend_from_slice(b"c<cas>");
            } else if body.starts_with(b"cas=") && digits(&body[4..]) {
                out.extend_from_slice(b"cas=<cas>");
            } else {
                out.extend_from_slice(body);
            }
            out.extend_from_slice(end);
        }
        out
    };
    records
        .iter()
        .map(|r| Record { reply: r.reply.split_inclusive(|&b| b == b'\n').flat_map(mask_line).collect(), ..r.clone() })
        .collect()
}

impl Reference<'_> {
    fn judge(&self, s: &Session, do_dump: bool) -> (Option<String>, String) {
        let mut text = String::new();
        let mut problems = String::new();
        let mut expected = golden_records(s, self.golden);
        let masked = |recs: Vec<Record>| if s.cas_masked { mask_cas(&recs) } else { recs };

        if self.live {
            let live = run_session(Kind::Reference, s, None);
            if do_dump {
                text.push_str(&dump(s, "memcached-1.6.45", &live));
            }
            if self.record {
                let recs = live.iter().map(|r| (r.src.clone(), r.reply.clone())).collect();
                self.recorded.lock().unwrap().insert(golden_key(s), recs);
                expected = Ok(live);
            } else if let Ok(golden) = &expected
                && let Some(d) = compare(s, "1.6.45 live", &masked(live.clone()), "golden", &masked(golden.clone()))
            {
                problems.push_str(&d.replacen("DIFF ", "the live 1.6.45 build differs from its transcript: ", 1));
            }
        }
        let expected = match expected {
            Ok(e) if s.cas_masked => mask_cas(&e),
            Ok(e) => e,
            Err(e) => return (Some(format!("DIFF {}\n  {e}\n", s.label())), text),
        };
        let lists_stats =
            || expected.iter().any(|r| r.reply.starts_with(b"STAT ") || r.reply.windows(6).any(|w| w == b"\nSTAT "));
        if self.tls.is_some() && lists_stats() {
            self.tls_skipped.fetch_add(1, Ordering::Relaxed);
            return (None, text);
        }
        if let Some(kind) = self.other {
            let got = masked(run_session(kind, s, self.tls));
            if do_dump {
                text.push_str(&dump(s, "larder", &got));
            }
            if let Some(d) = compare(s, "1.6.45", &expected, "larder", &got) {
                problems.push_str(&d);
            }
        }
        if self.tls.is_none() {
            let debian = masked(run_session(Kind::Memcached, s, None));
            if do_dump {
                text.push_str(&dump(s, "memcached", &debian));
            }
            if debian.iter().zip(&expected).all(|(a, b)| a.reply == b.reply) {
                let _ = writeln!(
                    problems,
                    "DIFF {}\n  Debian's memcached answers as {REFERENCE_VERSION} does: drop `reference`",
                    s.label()
                );
            }
        }
        ((!problems.is_empty()).then_some(problems), text)
    }
}

fn differential(tls: Option<&common::tls::Certs>) {
    if !memcached_available("the differential test") {
        return;
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let only_memcached = env("DIFF_ONLY_MEMCACHED").is_some_and(|v| v != "0");
    let other = match env("DIFF_AGAINST").as_deref() {
        None | Some("larder") => Kind::Larder,
        Some("memcached") => Kind::Memcached,
        Some(x) => panic!("DIFF_AGAINST={x}: expected larder or memcached"),
    };
    let other_name = if other == Kind::Memcached { "memcached2" } else { "larder" };
    let do_dump = env("DIFF_DUMP").is_some_and(|v| v != "0");
    let filter = env("DIFF_FILTER");
    let threads: usize = env("DIFF_THREADS").and_then(|t| t.parse().ok()).unwrap_or(8).max(1);

    let corpus: Vec<Session> = load_corpus()
        .into_iter()
        .filter(|s| filter.as_ref().is_none_or(|f| format!("{}: {}", s.file, s.name).contains(f)))
        .collect();
    assert!(!corpus.is_empty(), "no sessions selected");
    let started = Instant::now();
    let golden = load_golden();
    let reference = Reference {
        golden: &golden,
        live: tls.is_none() && reference_bin().is_some(),
        record: env("LARDER_REF_RECORD").is_some_and(|v| v != "0"),
        recorded: Mutex::new(Golden::new()),
        other: (!only_memcached && other == Kind::Larder).then_some(other),
        tls,
        tls_skipped: AtomicUsize::new(0),
    };
    assert!(!reference.record || reference.live, "LARDER_REF_RECORD needs LARDER_REF_MEMCACHED (and no TLS)");
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..corpus.len()).collect());
    let results: Mutex<Vec<(usize, Option<String>, String)>> = Mutex::new(Vec::new());
    let stalled = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(corpus.len()) {
            scope.spawn(|| {
                loop {
                    let Some(i) = queue.lock().unwrap().pop_front() else { break };
                    let s = &corpus[i];
                    if s.reference {
                        let (diff, text) = reference.judge(s, do_dump);
                        results.lock().unwrap().push((i, diff, text));
                        continue;
                    }
                    let (mc, ot) = std::thread::scope(|inner| {
                        let h = (!only_memcached).then(|| inner.spawn(|| run_session(other, s, tls)));
                        let mc = run_session(Kind::Memcached, s, tls);
                        (mc, h.map(|h| h.join()))
                    });
                    let mut text = String::new();
                    if do_dump {
                        text.push_str(&dump(s, "memcached", &mc));
                    }
                    let diff = match ot {
                        None => None,
                        Some(Err(_)) => Some(format!("DIFF {}\n  {other_name} side panicked\n", s.label())),
                        Some(Ok(ot)) => {
                            if do_dump {
                                text.push_str(&dump(s, other_name, &ot));
                            }
                            let timed_out = |recs: &[Record]| recs.iter().any(|r| r.reply.ends_with(b"<timeout>"));
                            if tls.is_some() && timed_out(&mc) {
                                // memcached -Z leaves a command that arrives in the same
                                // read as the end of a set's data unanswered until more
                                // bytes come (see the module doc): nothing to compare,
                                // but Larder must answer every step.
                                stalled.fetch_add(1, Ordering::Relaxed);
                                timed_out(&ot).then(|| format!("DIFF {}\n  {other_name} timed out\n", s.label()))
                            } else {
                                compare(s, "memcached", &mc, other_name, &ot)
                            }
                        }
                    };
                    results.lock().unwrap().push((i, diff, text));
                }
            });
        }
    });
    if reference.record {
        let recorded = reference.recorded.into_inner().unwrap();
        let mut golden = golden.clone();
        if filter.is_none() {
            // Sessions no longer marked (or gone) leave the file.
            golden.retain(|k, _| recorded.contains_key(k));
        }
        golden.extend(recorded);
        save_golden(&golden);
        println!("recorded the 1.6.45 transcripts in {GOLDEN}");
    }
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    let mut failed = 0;
    for (_, diff, text) in &results {
        if !text.is_empty() {
            println!("{text}");
        }
        if let Some(d) = diff {
            failed += 1;
            println!("{d}");
        }
    }
    let versus = if only_memcached { "memcached only".to_string() } else { format!("memcached vs {other_name}") };
    let references = corpus.iter().filter(|s| s.reference).count();
    let versus = format!(
        "{versus}; {references} of them judged by memcached {REFERENCE_VERSION}'s transcripts{}",
        if reference.live { ", re-verified against the live build" } else { "" }
    );
    let versus = match tls {
        Some(_) => format!(
            "{versus}, over TLS; {} sessions where memcached stalled, {} transcripts listing stats not compared",
            stalled.load(Ordering::Relaxed),
            reference.tls_skipped.load(Ordering::Relaxed)
        ),
        None => versus,
    };
    println!(
        "differential ({versus}): {} sessions run, {} passed, {} differed, {:.1}s",
        corpus.len(),
        corpus.len() - failed,
        failed,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(failed, 0, "{failed} of {} sessions differ from memcached (see above)", corpus.len());
}
