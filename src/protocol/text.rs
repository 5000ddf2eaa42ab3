//! Text-protocol decoding: bytes in, [`Request`]s out. Owns framing (command lines, data
//! blocks, swallowing refused data), input limits and memcached's argument rules; knows
//! nothing about storage (see `exec`). Tokenising follows memcached's `tokenize_command`:
//! tokens split on the space byte only, at most 24 counted, the line cut at a NUL byte.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use super::encode::Reply;
use super::meta::{self, Meta};
use super::{CrawlClasses, DetailCmd, KeyList, ProtocolError, Rejection, Request, StatsGroup, StoreMode};
use crate::clock::{Clock, RelTime};
use crate::memcached::number::{parse_i32_truncating, parse_u32_truncating, parse_u64};
use crate::memcached::{KEY_MAX_LENGTH, LARGEST_SLAB_CLASS, MAX_SLAB_CLASSES, item_too_large};

/// memcached closes a connection whose buffered command line passes this many bytes without
/// a newline, unless the line is a `get`/`gets`.
pub const MAX_LINE: usize = 2048;

/// Our own bound on a `get`/`gets` line, which memcached leaves unbounded: 10,000 keys of
/// 250 bytes fit with room to spare.
pub const MAX_GET_LINE: usize = 4 << 20;

/// How far ahead of the data received a data block's buffer may be grown.
const MAX_RESERVE_AHEAD: usize = 64 * 1024;

/// memcached's `MAX_TOKENS`: the tokenizer stops after 23 tokens plus a terminal one.
const MAX_TOKENS: usize = 24;

/// Decoder limits taken from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `-I`: the largest item, in bytes, header included as memcached counts it.
    pub max_item_size: usize,
}

/// Incremental decoder over a connection's read buffer (the `tokio_util` `Decoder` shape).
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Storage commands take their deadline when their command line arrives, as in
    /// memcached, however long the data block takes.
    clock: Clock,
    /// How far the current line has been searched for `\n` already.
    scanned: usize,
    state: State,
    /// `-Y`: until a login succeeds, only the login `set` is understood.
    unauthenticated: bool,
}

#[derive(Debug)]
enum State {
    /// Waiting for a command line.
    Line,
    /// A storage command line was read; waiting for its data block and `\r\n`.
    Data(PendingStore),
    /// An `ms` line was read; waiting for `len` bytes of data and `\r\n`.
    MetaData { meta: Box<Meta>, len: usize },
    /// A login `set` line was read; waiting for `<user> <password>` and `\r\n`.
    AuthData(usize),
    /// Discarding this many bytes of a refused data block; then the refusal is answered
    /// (memcached replies only once the data is consumed), silently under `noreply`.
    Swallow { left: usize, error: ProtocolError, noreply: bool },
}

#[derive(Debug)]
struct PendingStore {
    mode: StoreMode,
    key: Bytes,
    flags: u32,
    deadline: RelTime,
    len: usize,
    noreply: bool,
}

impl Decoder {
    pub fn new(limits: Limits, clock: Clock) -> Self {
        Self { limits, clock, scanned: 0, state: State::Line, unauthenticated: false }
    }

    /// Requires a login (`-Y`) before any other command.
    pub fn require_auth(mut self) -> Self {
        self.unauthenticated = true;
        self
    }

    /// Whether a login is still awaited.
    pub fn awaiting_auth(&self) -> bool {
        self.unauthenticated
    }

    /// The login succeeded: decode commands from now on.
    pub fn authenticated(&mut self) {
        self.unauthenticated = false;
    }

    /// Decodes the next request. `Ok(None)` means more bytes are needed; consumed bytes are
    /// split off `buf`. After an `Err` the input stays framed unless the error is fatal.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, Rejection> {
        loop {
            match &mut self.state {
                State::Swallow { left, error, noreply } => {
                    let n = (*left).min(buf.len());
                    buf.advance(n);
                    *left -= n;
                    if *left > 0 {
                        return Ok(None);
                    }
                    let rejection = Rejection { error: *error, noreply: *noreply };
                    self.state = State::Line;
                    return Err(rejection);
                }
                State::MetaData { len, .. } => {
                    let total = *len + 2;
                    if buf.len() < total {
                        buf.reserve((total - buf.len()).min(MAX_RESERVE_AHEAD));
                        return Ok(None);
                    }
                    let State::MetaData { meta, len } = std::mem::replace(&mut self.state, State::Line) else {
                        unreachable!()
                    };
                    let block = buf.split_to(total).freeze();
                    if &block[len..] != b"\r\n" {
                        // Meta commands always report errors, `q` or not.
                        return Err(ProtocolError::BadDataChunk.into());
                    }
                    return Ok(Some(Request::MetaSet { meta, value: block.slice(..len) }));
                }
                State::Data(pending) => {
                    let total = pending.len + 2;
                    if buf.len() < total {
                        // Grow with the data, not with the declared length: a header alone
                        // must not make a connection allocate a whole item.
                        buf.reserve((total - buf.len()).min(MAX_RESERVE_AHEAD));
                        return Ok(None);
                    }
                    let State::Data(p) = std::mem::replace(&mut self.state, State::Line) else { unreachable!() };
                    let block = buf.split_to(total).freeze();
                    if &block[p.len..] != b"\r\n" {
                        return Err(Rejection { error: ProtocolError::BadDataChunk, noreply: p.noreply });
                    }
                    return Ok(Some(Request::Store {
                        mode: p.mode,
                        key: p.key,
                        flags: p.flags,
                        deadline: p.deadline,
                        value: block.slice(..p.len),
                        noreply: p.noreply,
                    }));
                }
                State::AuthData(len) => {
                    let total = *len + 2;
                    if buf.len() < total {
                        return Ok(None);
                    }
                    self.state = State::Line;
                    let block = buf.split_to(total).freeze();
                    if &block[total - 2..] != b"\r\n" {
                        return Err(ProtocolError::Refused(Reply::BadLineTermination).into());
                    }
                    let payload = block.slice(..total - 2);
                    let toks = Tokens::new(&payload[..memchr::memchr(0, &payload).unwrap_or(payload.len())]);
                    if toks.n < 2 {
                        return Err(ProtocolError::Refused(Reply::BadAuthToken).into());
                    }
                    let (user, password) = (payload.slice(toks.span(0)), payload.slice(toks.span(1)));
                    return Ok(Some(Request::Auth { user, password }));
                }
                State::Line if self.unauthenticated => {
                    // memcached's try_read_command_asciiauth: only `set <k> <f> <e> <n>`
                    // is read, its data being the credentials.
                    let Some(eol) = memchr::memchr(b'\n', buf) else {
                        if buf.len() > MAX_LINE {
                            return Err(ProtocolError::LineTooLong.into());
                        }
                        return Ok(None);
                    };
                    let line = buf.split_to(eol + 1);
                    let line = &line[..eol]; // the '\r' stays: strtoul stops at it
                    let toks = Tokens::new(&line[..memchr::memchr(0, line).unwrap_or(line.len())]);
                    match (toks.n >= 5 && toks.get(line, 0) == b"set", parse_u32_truncating(toks.get(line, 4))) {
                        (true, Some(len)) => self.state = State::AuthData(len as usize),
                        _ => return Err(ProtocolError::Refused(Reply::Unauthenticated).into()),
                    }
                }
                State::Line => {
                    let Some(i) = memchr::memchr(b'\n', &buf[self.scanned..]) else {
                        self.scanned = buf.len();
                        if buf.len() > MAX_LINE && !(is_multiget(buf) && buf.len() <= MAX_GET_LINE) {
                            return Err(ProtocolError::LineTooLong.into());
                        }
                        return Ok(None);
                    };
                    let eol = self.scanned + i;
                    self.scanned = 0;
                    let mut frame = buf.split_to(eol + 1).freeze();
                    // memcached strips a '\r' before the '\n' only when the line has more
                    // than one byte before it ("\r\n" alone stays a one-byte command).
                    let end = if eol > 1 && frame[eol - 1] == b'\r' { eol - 1 } else { eol };
                    // The line is a C string to memcached: a NUL byte ends it.
                    let end = memchr::memchr(0, &frame[..end]).unwrap_or(end);
                    // Cut down in place: a slice would be a second reference to count.
                    frame.truncate(end);
                    match self.parse_line(frame)? {
                        Line::Done(req) => return Ok(Some(req)),
                        Line::Data(p) => self.state = State::Data(p),
                        Line::Refused { key, mode, len, noreply } => {
                            self.state = State::Swallow { left: len + 2, error: ProtocolError::TooLarge, noreply };
                            return Ok(Some(Request::TooLarge { key, mode }));
                        }
                        Line::MetaData(meta, len) => self.state = State::MetaData { meta: Box::new(meta), len },
                        Line::MetaRefused { len, error } => {
                            self.state = State::Swallow { left: len + 2, error, noreply: false };
                        }
                    }
                }
            }
        }
    }

    fn parse_line(&self, line: Bytes) -> Result<Line, Rejection> {
        let toks = Tokens::new(&line);
        // ntokens as memcached counts it: the real tokens plus a terminal one.
        let ntokens = toks.n + 1;
        if toks.n == 0 || toks.len(0) < 2 {
            return Err(ProtocolError::UnknownCommand.into());
        }
        let cmd = toks.get(&line, 0);
        let want = |ok: bool| if ok { Ok(()) } else { Err(Rejection::from(ProtocolError::UnknownCommand)) };
        let noreply = toks.get(&line, toks.n - 1) == b"noreply";
        let silent = |error: ProtocolError| Rejection { error, noreply };
        let key_at = |i: usize| -> Result<Bytes, Rejection> {
            let r = toks.span(i);
            if r.len() > KEY_MAX_LENGTH {
                return Err(silent(ProtocolError::BadFormat));
            }
            Ok(line.slice(r))
        };

        if cmd.len() == 2 && cmd[0] == b'm' {
            return self.parse_meta(&line, &toks);
        }

        let store_mode = match cmd {
            b"set" => Some(StoreMode::Set),
            b"add" => Some(StoreMode::Add),
            b"replace" => Some(StoreMode::Replace),
            b"append" => Some(StoreMode::Append),
            b"prepend" => Some(StoreMode::Prepend),
            b"cas" => Some(StoreMode::Cas { unique: 0 }),
            _ => None,
        };
        if let Some(mut mode) = store_mode {
            let base = if matches!(mode, StoreMode::Cas { .. }) { 7 } else { 6 };
            want(ntokens == base || ntokens == base + 1)?;
            let key = key_at(1)?;
            let (Some(flags), Some(exptime), Some(len)) = (
                parse_u32_truncating(toks.get(&line, 2)),
                parse_i32_truncating(toks.get(&line, 3)),
                parse_i32_truncating(toks.get(&line, 4)),
            ) else {
                return Err(silent(ProtocolError::BadFormat));
            };
            if let StoreMode::Cas { unique } = &mut mode {
                *unique = parse_u64(toks.get(&line, 5)).ok_or(silent(ProtocolError::BadFormat))?;
            }
            if !(0..=i32::MAX - 2).contains(&len) {
                return Err(silent(ProtocolError::BadFormat));
            }
            let len = len as usize;
            if item_too_large(key.len(), flags, len, self.limits.max_item_size) {
                return Ok(Line::Refused { key, mode, len, noreply });
            }
            let deadline = self.clock.deadline(exptime);
            return Ok(Line::Data(PendingStore { mode, key, flags, deadline, len, noreply }));
        }

        let req = match cmd {
            b"get" | b"gets" | b"gat" | b"gats" | b"bget" => {
                want(ntokens >= 3)?;
                let touch = cmd.starts_with(b"gat");
                let with_cas = cmd.ends_with(b"s");
                let (exptime, first_key) = if touch {
                    let e =
                        parse_i32_truncating(toks.get(&line, 1)).ok_or(Rejection::from(ProtocolError::BadExptime))?;
                    (Some(e), 2)
                } else {
                    (None, 1)
                };
                let tail = if first_key < toks.n {
                    // The line itself, advanced to its keys (no second reference).
                    let start = toks.span(first_key).start;
                    let mut line = line;
                    line.advance(start);
                    line
                } else {
                    Bytes::new()
                };
                let keys = KeyList::new(tail);
                if keys.iter().any(|k| k.len() > KEY_MAX_LENGTH) {
                    return Err(ProtocolError::GetKeyTooLong.into());
                }
                Request::Get { keys, with_cas, touch: exptime }
            }
            b"delete" => {
                want((3..=5).contains(&ntokens))?;
                if ntokens > 3 {
                    let hold_is_zero = toks.get(&line, 2) == b"0";
                    let valid =
                        (ntokens == 4 && (hold_is_zero || noreply)) || (ntokens == 5 && hold_is_zero && noreply);
                    if !valid {
                        return Err(silent(ProtocolError::DeleteUsage));
                    }
                }
                let noreply = ntokens > 3 && noreply;
                let key = toks.span(1);
                if key.len() > KEY_MAX_LENGTH {
                    return Err(Rejection { error: ProtocolError::BadFormat, noreply });
                }
                Request::Delete { key: line.slice(key), noreply }
            }
            b"incr" | b"decr" => {
                want(ntokens == 4 || ntokens == 5)?;
                let key = key_at(1)?;
                let delta = parse_u64(toks.get(&line, 2)).ok_or(silent(ProtocolError::BadDelta))?;
                Request::Arith { key, delta, incr: cmd == b"incr", noreply }
            }
            b"touch" => {
                want(ntokens == 4 || ntokens == 5)?;
                let key = key_at(1)?;
                let exptime = parse_i32_truncating(toks.get(&line, 2)).ok_or(silent(ProtocolError::BadExptime))?;
                Request::Touch { key, exptime, noreply }
            }
            b"flush_all" => {
                want((2..=4).contains(&ntokens))?;
                let delay = if ntokens != if noreply { 3 } else { 2 } {
                    parse_i32_truncating(toks.get(&line, 1)).ok_or(silent(ProtocolError::BadExptime))?
                } else {
                    0
                };
                Request::FlushAll { delay, noreply }
            }
            b"version" => Request::Version,
            b"quit" => Request::Quit,
            b"shutdown" => {
                Request::Shutdown { mode_ok: ntokens == 2 || (ntokens == 3 && toks.get(&line, 1) == b"graceful") }
            }
            b"verbosity" => {
                want(ntokens == 3 || ntokens == 4)?;
                parse_u32_truncating(toks.get(&line, 1)).ok_or(silent(ProtocolError::BadFormat))?;
                Request::Verbosity { noreply }
            }
            b"cache_memlimit" => {
                want(ntokens == 3 || ntokens == 4)?;
                let mib = parse_u32_truncating(toks.get(&line, 1)).ok_or(silent(ProtocolError::UnknownCommand))?;
                Request::CacheMemlimit { mib, noreply }
            }
            b"stats" if toks.get(&line, 1) == b"cachedump" => {
                let reply = if ntokens < 5 {
                    Reply::BadCommandLine
                } else {
                    match (parse_u32_truncating(toks.get(&line, 2)), parse_u32_truncating(toks.get(&line, 3))) {
                        (Some(id), Some(_)) if id >= MAX_SLAB_CLASSES => Reply::IllegalSlabId,
                        (Some(_), Some(_)) => Reply::End,
                        // A reply, not a protocol error: memcached checks -X first.
                        _ => Reply::BadCommandLineFormat,
                    }
                };
                Request::CacheDump { reply }
            }
            b"stats" => Request::Stats { group: stats_group(&toks, &line)? },
            b"slabs" => Request::NoOp { reply: slabs_reply(&toks, &line, ntokens, noreply)?, noreply },
            b"lru" => {
                want(ntokens >= 3)?;
                Request::NoOp { reply: lru_reply(&toks, &line, ntokens), noreply }
            }
            b"lru_crawler" if ntokens == 3 && matches!(toks.get(&line, 1), b"enable" | b"disable") => {
                Request::Crawler { enable: toks.get(&line, 1) == b"enable" }
            }
            b"lru_crawler" if ntokens == 4 && matches!(toks.get(&line, 1), b"crawl" | b"metadump") => {
                Request::Crawl { classes: crawl_classes(toks.get(&line, 2)), dump: toks.get(&line, 1) == b"metadump" }
            }
            b"lru_crawler" => Request::NoOp { reply: lru_crawler_reply(&toks, &line, ntokens), noreply: false },
            // memcached as Debian builds it has TLS, which Larder does not speak.
            b"refresh_certs" => Request::NoOp { reply: Reply::TlsNotEnabled, noreply: false },
            _ => {
                // memcached drops connections that look like HTTP (cross-protocol attacks).
                if toks.get(&line, toks.n - 1).starts_with(b"HTTP/") {
                    return Err(ProtocolError::Http.into());
                }
                return Err(ProtocolError::UnknownCommand.into());
            }
        };
        Ok(Line::Done(req))
    }
}

impl Decoder {
    fn parse_meta(&self, line: &Bytes, toks: &Tokens) -> Result<Line, Rejection> {
        let spans: Vec<(usize, usize)> = (0..toks.n).map(|i| (toks.span(i).start, toks.span(i).end)).collect();
        Ok(match meta::parse(line, &spans, &self.clock)? {
            meta::Parsed::Noop => Line::Done(Request::MetaNoop),
            meta::Parsed::Debug { key, key_binary } => Line::Done(Request::MetaDebug { key, key_binary }),
            meta::Parsed::Done(m) => Line::Done(Request::Meta(Box::new(m))),
            meta::Parsed::Set(meta::SetLine::Refuse { len, error }) => Line::MetaRefused { len, error },
            meta::Parsed::Set(meta::SetLine::Data { meta, len }) => {
                if item_too_large(meta.key.len(), meta.client_flags, len, self.limits.max_item_size) {
                    // memcached drops the existing item whatever the mode.
                    let key = meta.key.clone();
                    return Ok(Line::Refused { key, mode: StoreMode::Set, len, noreply: false });
                }
                Line::MetaData(meta, len)
            }
        })
    }
}

fn stats_group(toks: &Tokens, line: &[u8]) -> Result<StatsGroup, Rejection> {
    if toks.n == 1 {
        return Ok(StatsGroup::General);
    }
    Ok(match toks.get(line, 1) {
        b"reset" => StatsGroup::Reset,
        b"settings" => StatsGroup::Settings,
        b"items" => StatsGroup::Items,
        b"slabs" => StatsGroup::Slabs,
        b"sizes" => StatsGroup::Sizes,
        b"conns" => StatsGroup::Conns,
        b"detail" if toks.n >= 3 => match toks.get(line, 2) {
            b"on" => StatsGroup::Detail(DetailCmd::On),
            b"off" => StatsGroup::Detail(DetailCmd::Off),
            b"dump" => StatsGroup::Detail(DetailCmd::Dump),
            _ => StatsGroup::DetailUsage,
        },
        b"detail" => StatsGroup::DetailUsage,
        _ => return Err(ProtocolError::UnknownCommand.into()),
    })
}

const OK: Reply = Reply::Ok;
const ERROR: Reply = Reply::Error;

/// `slabs reassign|automove`: Larder has no slab classes, so there is never a page to move.
fn slabs_reply(toks: &Tokens, line: &[u8], ntokens: usize, noreply: bool) -> Result<Reply, Rejection> {
    let sub = toks.get(line, 1);
    if ntokens == 5 && sub == b"reassign" {
        let (Some(src), Some(dst)) = (parse_i32_truncating(toks.get(line, 2)), parse_i32_truncating(toks.get(line, 3)))
        else {
            return Err(ProtocolError::BadFormat.into());
        };
        let class_ok = |c: i32| (1..=LARGEST_SLAB_CLASS).contains(&c);
        return Ok(if src == dst {
            Reply::SameClass
        } else if !(class_ok(src) || src == -1) || !class_ok(dst) {
            Reply::BadClassPair
        } else {
            Reply::NoSpare
        });
    }
    if ntokens >= 4 && sub == b"automove" {
        let arg = toks.get(line, 2);
        if arg == b"ratio" {
            let ok = ntokens >= 5 && std::str::from_utf8(toks.get(line, 3)).is_ok_and(|r| r.parse::<f64>().is_ok());
            return Ok(if ok { OK } else { ERROR });
        }
        return match parse_u32_truncating(arg) {
            None => Err(Rejection { error: ProtocolError::BadFormat, noreply }),
            Some(0..=2) => Ok(OK),
            Some(_) => Ok(ERROR),
        };
    }
    Err(ProtocolError::UnknownCommand.into())
}

/// `lru tune|mode|temp_ttl`, validated as memcached validates them.
fn lru_reply(toks: &Tokens, line: &[u8], ntokens: usize) -> Reply {
    let float = |i: usize| std::str::from_utf8(toks.get(line, i)).ok().and_then(|f| f.parse::<f64>().ok());
    match toks.get(line, 1) {
        b"tune" if ntokens >= 7 => {
            let (Some(hot), Some(warm), Some(hot_factor), Some(factor)) =
                (parse_u32_truncating(toks.get(line, 2)), parse_u32_truncating(toks.get(line, 3)), float(4), float(5))
            else {
                return ERROR;
            };
            if u64::from(hot) + u64::from(warm) > 80 {
                Reply::LruPctOver
            } else if factor <= 0.0 || hot_factor <= 0.0 {
                Reply::LruFactorZero
            } else {
                OK
            }
        }
        b"mode" if ntokens >= 4 => match toks.get(line, 2) {
            b"flat" | b"segmented" => OK,
            _ => ERROR,
        },
        b"temp_ttl" if ntokens >= 4 => {
            if parse_i32_truncating(toks.get(line, 2)).is_some() {
                OK
            } else {
                ERROR
            }
        }
        _ => ERROR,
    }
}

/// `lru_crawler crawl|metadump <classes>`: `all`, `hash` (a walk of the hash table, which
/// `crawl` refuses), or slab class ids from 1 to 63 separated by commas (empty ids skipped,
/// each parsed as memcached's `safe_strtoul` into 32 bits).
fn crawl_classes(tok: &[u8]) -> CrawlClasses {
    match tok {
        b"all" => CrawlClasses::All,
        b"hash" => CrawlClasses::Hash,
        _ => {
            let mut mask = 0u64;
            for id in tok.split(|&b| b == b',').filter(|id| !id.is_empty()) {
                match parse_u32_truncating(id) {
                    Some(n) if (1..MAX_SLAB_CLASSES).contains(&n) => mask |= 1 << n,
                    _ => return CrawlClasses::Bad,
                }
            }
            CrawlClasses::List(mask)
        }
    }
}

/// `lru_crawler`: Larder reclaims expired items on its own schedule; the knobs are accepted.
fn lru_crawler_reply(toks: &Tokens, line: &[u8], ntokens: usize) -> Reply {
    let sub = toks.get(line, 1);
    match (ntokens, sub) {
        (4, b"tocrawl") => {
            if parse_u32_truncating(toks.get(line, 2)).is_some() {
                OK
            } else {
                Reply::BadCommandLineFormat
            }
        }
        (4, b"sleep") => match parse_u32_truncating(toks.get(line, 2)) {
            None => Reply::BadCommandLineFormat,
            Some(us) if us > 1_000_000 => Reply::CrawlerSleepTooLong,
            Some(_) => OK,
        },
        _ => ERROR,
    }
}

/// What a command line turned out to be.
enum Line {
    Done(Request),
    Data(PendingStore),
    Refused {
        key: Bytes,
        mode: StoreMode,
        len: usize,
        noreply: bool,
    },
    MetaData(Meta, usize),
    /// An `ms` refused before its data: swallow it, then answer.
    MetaRefused {
        len: usize,
        error: ProtocolError,
    },
}

/// Whether a line without a newline may grow past [`MAX_LINE`]: memcached allows it for
/// `get `/`gets ` after at most 100 leading spaces.
fn is_multiget(buf: &[u8]) -> bool {
    let spaces = buf.iter().take_while(|&&b| b == b' ').count();
    let rest = &buf[spaces..];
    spaces <= 100 && (rest.starts_with(b"get ") || rest.starts_with(b"gets "))
}

/// Token spans of one command line, as memcached's tokenizer finds them.
struct Tokens {
    spans: [(u32, u32); MAX_TOKENS],
    /// Real tokens found (at most `MAX_TOKENS - 1`).
    n: usize,
}

impl Tokens {
    fn new(line: &[u8]) -> Self {
        let mut t = Tokens { spans: [(0, 0); MAX_TOKENS], n: 0 };
        let mut start = 0;
        for (i, &b) in line.iter().enumerate() {
            if b == b' ' {
                if i > start {
                    t.spans[t.n] = (start as u32, i as u32);
                    t.n += 1;
                    if t.n == MAX_TOKENS - 1 {
                        return t;
                    }
                }
                start = i + 1;
            }
        }
        if line.len() > start {
            t.spans[t.n] = (start as u32, line.len() as u32);
            t.n += 1;
        }
        t
    }

    fn span(&self, i: usize) -> Range<usize> {
        let (s, e) = self.spans[i];
        s as usize..e as usize
    }

    fn len(&self, i: usize) -> usize {
        self.span(i).len()
    }

    /// Token `i`, or an empty slice past the end (memcached's terminal token).
    fn get<'a>(&self, line: &'a [u8], i: usize) -> &'a [u8] {
        if i < self.n { &line[self.span(i)] } else { &[] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> Decoder {
        Decoder::new(Limits { max_item_size: 1 << 20 }, Clock::starting_at(1_800_000_000))
    }

    /// Decodes until more input is needed; errors are kept in order with the requests.
    fn drain(d: &mut Decoder, buf: &mut BytesMut) -> Vec<Result<Request, Rejection>> {
        let mut out = Vec::new();
        loop {
            match d.decode(buf) {
                Ok(Some(r)) => out.push(Ok(r)),
                Ok(None) => return out,
                Err(e) => {
                    let fatal = e.error.is_fatal();
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }

    fn decode_all(wire: &[u8]) -> Vec<Result<Request, Rejection>> {
        drain(&mut decoder(), &mut BytesMut::from(wire))
    }

    fn one(wire: &[u8]) -> Result<Request, Rejection> {
        let mut v = decode_all(wire);
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    fn err(wire: &[u8]) -> (ProtocolError, bool) {
        let e = one(wire).unwrap_err();
        (e.error, e.noreply)
    }

    const PIPELINE: &[u8] = b"set k 1 0 5\r\nhello\r\nget k  k2\r\nincr n 5\nbogus\r\n\
        cas k 0 0 1 99 noreply\r\nx\r\nset big 0 0 2000\r\n";

    /// Pipelines covering every framing path: data blocks, bad chunks, swallowed items,
    /// noreply errors, bare newlines, retrievals and admin commands.
    const PIPELINES: &[&[u8]] = &[
        PIPELINE,
        b"set k 0 0 3\r\nabcde\r\nget k\r\ndelete k 0 noreply\n",
        b"gats 10 a b\r\nset x 0 0 -1 noreply\r\nincr k 18446744073709551615\r\n\r\nstats\r\n",
        b"append k 0 0 0\r\n\r\nprepend k 0 0 2\r\n\r\n\r\nflush_all 10\r\nmn\r\nquit\r\n",
        b"touch k -1\r\nverbosity 1 noreply\r\nslabs automove 1\r\nGET / HTTP/1.1\r\n",
    ];

    #[test]
    fn decodes_at_every_split_point() {
        assert_eq!(decode_all(PIPELINE).len(), 5);
        for wire in PIPELINES {
            let whole = decode_all(wire);
            for cut in 0..=wire.len() {
                let (mut d, mut buf) = (decoder(), BytesMut::from(&wire[..cut]));
                let mut got = drain(&mut d, &mut buf);
                buf.extend_from_slice(&wire[cut..]);
                got.extend(drain(&mut d, &mut buf));
                assert_eq!(got, whole, "split at {cut} of {:?}", String::from_utf8_lossy(wire));
            }
        }
    }

    #[test]
    fn swallow_survives_every_split_point() {
        let mut wire = b"set big 0 0 2000\r\n".to_vec();
        wire.extend_from_slice(&[b'z'; 2000]);
        wire.extend_from_slice(b"\r\nget k\r\n");
        let limits = Limits { max_item_size: 1024 };
        let fresh = || Decoder::new(limits, Clock::starting_at(1_800_000_000));
        let whole = drain(&mut fresh(), &mut BytesMut::from(&wire[..]));
        assert_eq!(whole.len(), 3, "{whole:?}");
        for cut in (0..=wire.len()).step_by(7) {
            let (mut d, mut buf) = (fresh(), BytesMut::from(&wire[..cut]));
            let mut got = drain(&mut d, &mut buf);
            buf.extend_from_slice(&wire[cut..]);
            got.extend(drain(&mut d, &mut buf));
            assert_eq!(got, whole, "split at {cut}");
        }
    }

    #[test]
    fn decodes_byte_by_byte() {
        for wire in PIPELINES {
            let (mut d, mut buf) = (decoder(), BytesMut::new());
            let mut got = Vec::new();
            for &b in *wire {
                buf.extend_from_slice(&[b]);
                got.extend(drain(&mut d, &mut buf));
            }
            assert_eq!(got, decode_all(wire));
        }
    }

    #[test]
    fn storage_line() {
        let Ok(Request::Store { mode, key, flags, deadline, value, noreply }) =
            one(b"set  k   4294967296 4294967295 2 \r\nhi\r\n")
        else {
            panic!()
        };
        assert_eq!(
            (mode, &key[..], flags, deadline, &value[..], noreply),
            (StoreMode::Set, &b"k"[..], 0, 1, &b"hi"[..], false),
            "4294967295 is -1: expired"
        );
        assert!(matches!(
            one(b"cas k 0 0 1 7 noreply\r\nx\r\n"),
            Ok(Request::Store { mode: StoreMode::Cas { unique: 7 }, noreply: true, .. })
        ));
        // An unknown 7th token is ignored.
        assert!(matches!(one(b"set k 0 0 1 garbage\r\nx\r\n"), Ok(Request::Store { noreply: false, .. })));
    }

    #[test]
    fn storage_errors() {
        assert_eq!(err(b"set k 0 0\r\n"), (ProtocolError::UnknownCommand, false));
        assert_eq!(err(b"set k 0 0 -1\r\n"), (ProtocolError::BadFormat, false));
        assert_eq!(err(b"set k 0 0 -1 noreply\r\n"), (ProtocolError::BadFormat, true));
        assert_eq!(err(b"set k -1 0 1\r\n"), (ProtocolError::BadFormat, false));
        assert_eq!(err(b"set k 0 x 1\r\n"), (ProtocolError::BadFormat, false));
        assert_eq!(err(b"set k 0 0 2147483647\r\n"), (ProtocolError::BadFormat, false));
        let long = [b'a'; 251];
        let mut line = b"set ".to_vec();
        line.extend_from_slice(&long);
        line.extend_from_slice(b" 0 0 1\r\n");
        assert_eq!(err(&line), (ProtocolError::BadFormat, false));
        let got = decode_all(b"set k 0 0 3\r\nabcde\r\n");
        assert_eq!(got[0], Err(Rejection { error: ProtocolError::BadDataChunk, noreply: false }));
        assert_eq!(got[1], Err(ProtocolError::UnknownCommand.into()), "the leftover \\r\\n is a line");
    }

    #[test]
    fn too_large_is_swallowed() {
        let mut d = Decoder::new(Limits { max_item_size: 1024 }, Clock::starting_at(1_800_000_000));
        let mut buf = BytesMut::from(&b"set k 0 0 1000\r\n"[..]);
        assert!(matches!(d.decode(&mut buf), Ok(Some(Request::TooLarge { mode: StoreMode::Set, .. }))));
        assert_eq!(d.decode(&mut buf), Ok(None), "no reply before the data is consumed");
        buf.extend_from_slice(&[b'x'; 600]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.is_empty(), "swallowed bytes are not buffered");
        buf.extend_from_slice(&[b'x'; 400]);
        buf.extend_from_slice(b"\r\nversion\r\n");
        assert_eq!(d.decode(&mut buf), Err(ProtocolError::TooLarge.into()));
        assert_eq!(d.decode(&mut buf), Ok(Some(Request::Version)));
        // The boundary is memcached's: 1024 - 59 - key length.
        let ok = format!("set k 0 0 {}\r\n", 1024 - 59 - 1);
        assert!(matches!(
            Decoder::new(Limits { max_item_size: 1024 }, Clock::starting_at(1_800_000_000))
                .decode(&mut BytesMut::from(ok.as_bytes())),
            Ok(None)
        ));
        let over = format!("set k 0 0 {}\r\n", 1024 - 59);
        assert!(matches!(
            Decoder::new(Limits { max_item_size: 1024 }, Clock::starting_at(1_800_000_000))
                .decode(&mut BytesMut::from(over.as_bytes())),
            Ok(Some(Request::TooLarge { .. }))
        ));
    }

    #[test]
    fn retrieval() {
        let Ok(Request::Get { keys, with_cas: true, touch: Some(-1) }) = one(b"gats 4294967295 a b  a \r\n") else {
            panic!()
        };
        assert_eq!(keys.iter().collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"a"]);
        assert!(matches!(one(b"gat 10\r\n"), Ok(Request::Get { .. })));
        assert_eq!(err(b"get\r\n"), (ProtocolError::UnknownCommand, false));
        assert_eq!(err(b"gat x k\r\n"), (ProtocolError::BadExptime, false));
        let mut line = b"get a ".to_vec();
        line.extend_from_slice(&[b'k'; 251]);
        line.extend_from_slice(b"\r\n");
        assert_eq!(err(&line), (ProtocolError::GetKeyTooLong, false));
        // 30 keys: more than the tokenizer's 24 slots, all kept.
        let many: String = (0..30).map(|i| format!(" k{i}")).collect();
        let Ok(Request::Get { keys, .. }) = one(format!("get{many}\r\n").as_bytes()) else { panic!() };
        assert_eq!(keys.iter().count(), 30);
    }

    #[test]
    fn other_commands() {
        assert_eq!(one(b"delete k 0\r\n"), Ok(Request::Delete { key: Bytes::from_static(b"k"), noreply: false }));
        assert_eq!(
            one(b"delete k 0 noreply\r\n"),
            Ok(Request::Delete { key: Bytes::from_static(b"k"), noreply: true })
        );
        assert_eq!(err(b"delete k 1\r\n"), (ProtocolError::DeleteUsage, false));
        assert_eq!(err(b"delete k 1 noreply\r\n"), (ProtocolError::DeleteUsage, true));
        assert_eq!(err(b"incr k -1\r\n"), (ProtocolError::BadDelta, false));
        assert_eq!(err(b"touch k x noreply\r\n"), (ProtocolError::BadExptime, true));
        assert_eq!(one(b"flush_all\r\n"), Ok(Request::FlushAll { delay: 0, noreply: false }));
        assert_eq!(one(b"flush_all noreply\r\n"), Ok(Request::FlushAll { delay: 0, noreply: true }));
        assert_eq!(one(b"flush_all -5 noreply\r\n"), Ok(Request::FlushAll { delay: -5, noreply: true }));
        assert_eq!(err(b"flush_all abc\r\n"), (ProtocolError::BadExptime, false));
        assert_eq!(err(b"verbosity\r\n"), (ProtocolError::UnknownCommand, false));
        assert_eq!(one(b"verbosity 1\n"), Ok(Request::Verbosity { noreply: false }));
        assert_eq!(one(b"stats\r\n"), Ok(Request::Stats { group: StatsGroup::General }));
        assert_eq!(err(b"stats nope\r\n"), (ProtocolError::UnknownCommand, false));
        assert_eq!(err(b"GET k\r\n"), (ProtocolError::UnknownCommand, false));
        assert_eq!(err(b"\r\n"), (ProtocolError::UnknownCommand, false));
        assert_eq!(err(b"GET / HTTP/1.1\r\n"), (ProtocolError::Http, false));
        // A NUL ends the line for memcached.
        assert_eq!(err(b"set a\0b 0 0 1\r\n"), (ProtocolError::UnknownCommand, false));
    }

    #[test]
    fn long_lines() {
        let mut d = decoder();
        let mut buf = BytesMut::from(&[b'x'; MAX_LINE + 1][..]);
        assert_eq!(d.decode(&mut buf).unwrap_err().error, ProtocolError::LineTooLong);
        let mut line = b"get ".to_vec();
        line.extend(std::iter::repeat_n(b"key ".iter().copied(), 1000).flatten());
        let mut buf = BytesMut::from(&line[..]);
        assert_eq!(d.decode(&mut buf), Ok(None), "a long multiget waits for its newline");
        buf.extend_from_slice(b"\r\n");
        assert!(matches!(d.decode(&mut buf), Ok(Some(Request::Get { .. }))));
        // A long line whose newline arrived with it is parsed normally.
        let mut line = vec![b'z'; 3000];
        line.extend_from_slice(b"\r\n");
        assert_eq!(err(&line), (ProtocolError::UnknownCommand, false));
    }
}
