//! Text-protocol decoding: bytes in, [`Request`]s out. Owns framing (command lines, data
//! blocks, swallowing refused data), input limits and memcached's argument rules; knows
//! nothing about storage (see `exec`). Tokenising follows memcached's `tokenize_command`:
//! tokens split on the space byte only, at most 24 counted, the line cut at a NUL byte.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use super::encode::Reply;
use super::meta::{self, Meta};
use super::{KeyList, ProtocolError, Rejection, Request, StoreMode, admin};
use crate::clock::{Clock, RelTime};
use crate::memcached::number::{parse_i32_truncating, parse_u32_truncating, parse_u64};
use crate::memcached::{KEY_MAX_LENGTH, item_too_large};

/// memcached closes a connection whose buffered command line passes this many bytes without
/// a newline, unless the line is a `get`/`gets`.
pub const MAX_LINE: usize = 2048;

/// Our own bound on a `get`/`gets` line, which memcached leaves unbounded: 10,000 keys of
/// 250 bytes fit with room to spare.
pub const MAX_GET_LINE: usize = 4 << 20;

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
    /// A line without its newline waits for more input however long it is (see
    /// [`Decoder::defer_long_lines`]).
    defer_long_lines: bool,
}

/// Where a decoder is in its input between requests: what it needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A command line (or the rest of one).
    Line,
    /// The rest of a data block (a storage command's, an `ms`'s, a login's).
    Data,
    /// The rest of a refused data block, to discard.
    Swallow,
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
        Self { limits, clock, scanned: 0, state: State::Line, unauthenticated: false, defer_long_lines: false }
    }

    /// Whether a line over [`MAX_LINE`] without its newline waits for more input instead of
    /// closing the connection: memcached judges it by what its 16 KiB read brought, and a
    /// connection whose last read filled a smaller buffer has more to read first.
    pub fn defer_long_lines(&mut self, on: bool) {
        self.defer_long_lines = on;
    }

    /// Requires a login (`-Y`) before any other command.
    pub fn require_auth(mut self) -> Self {
        self.unauthenticated = true;
        self
    }

    /// What the decoder waits for.
    pub fn framing(&self) -> Framing {
        match self.state {
            State::Line => Framing::Line,
            State::Data(_) | State::MetaData { .. } | State::AuthData(_) => Framing::Data,
            State::Swallow { .. } => Framing::Swallow,
        }
    }

    /// In a data block, the bytes of it (its `\r\n` included) not yet in `buf`: the
    /// connection grows its buffer with the data to that end, not with the declared
    /// length, so that a header alone does not make it allocate a whole item.
    pub fn block_left(&self, buf: &BytesMut) -> Option<usize> {
        let total = match &self.state {
            State::Data(p) => p.len + 2,
            State::MetaData { len, .. } | State::AuthData(len) => len + 2,
            State::Line | State::Swallow { .. } => return None,
        };
        Some(total.saturating_sub(buf.len()))
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
                        if buf.len() > MAX_LINE && !self.defer_long_lines {
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
                        if buf.len() > MAX_LINE
                            && !self.defer_long_lines
                            && !(is_multiget(buf) && buf.len() <= MAX_GET_LINE)
                        {
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
                        Line::MetaData(meta, len) => self.state = State::MetaData { meta, len },
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

        if let Some(mode) = store_mode(cmd) {
            return self.parse_storage(mode, &toks, line, noreply);
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
                    parse_i32_truncating(toks.get(&line, 1))
                } else {
                    Some(0)
                };
                Request::FlushAll { delay, noreply }
            }
            b"version" => Request::Version,
            b"watch" => {
                // Every word must be one memcached knows; none means fetchers.
                let mut words = (1..toks.n).map(|i| crate::watch::kind_of(toks.get(&line, i)));
                let kinds = if toks.n == 1 {
                    Some(crate::watch::DEFAULT_KINDS)
                } else {
                    words.try_fold(0, |kinds, word| word.map(|w| kinds | w))
                };
                Request::Watch { kinds, noreply }
            }
            b"quit" => Request::Quit,
            _ => {
                if let Some(req) = admin::parse(cmd, &toks, &line, noreply)? {
                    return Ok(Line::Done(req));
                }
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
    /// A storage command's line (`set add replace append prepend cas`): its data block is
    /// read next, or swallowed when the item would be too large.
    fn parse_storage(&self, mut mode: StoreMode, toks: &Tokens, line: Bytes, noreply: bool) -> Result<Line, Rejection> {
        let ntokens = toks.n + 1;
        let silent = |error: ProtocolError| Rejection { error, noreply };
        let base = if matches!(mode, StoreMode::Cas { .. }) { 7 } else { 6 };
        if ntokens != base && ntokens != base + 1 {
            return Err(ProtocolError::UnknownCommand.into());
        }
        let key = toks.span(1);
        if key.len() > KEY_MAX_LENGTH {
            return Err(silent(ProtocolError::BadFormat));
        }
        let key = line.slice(key);
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
        Ok(Line::Data(PendingStore { mode, key, flags, deadline, len, noreply }))
    }

    fn parse_meta(&self, line: &Bytes, toks: &Tokens) -> Result<Line, Rejection> {
        Ok(match meta::parse(line, &toks.spans[..toks.n], &self.clock)? {
            meta::Parsed::Noop => Line::Done(Request::MetaNoop),
            meta::Parsed::Debug { key, key_binary } => Line::Done(Request::MetaDebug { key, key_binary }),
            meta::Parsed::Get(m) => Line::Done(Request::MetaGet(Box::new(m))),
            meta::Parsed::Delete(m) => Line::Done(Request::MetaDelete(Box::new(m))),
            meta::Parsed::Arith(m) => Line::Done(Request::MetaArith(Box::new(m))),
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

/// The storage mode a command word names, if it is a storage command.
fn store_mode(cmd: &[u8]) -> Option<StoreMode> {
    Some(match cmd {
        b"set" => StoreMode::Set,
        b"add" => StoreMode::Add,
        b"replace" => StoreMode::Replace,
        b"append" => StoreMode::Append,
        b"prepend" => StoreMode::Prepend,
        b"cas" => StoreMode::Cas { unique: 0 },
        _ => return None,
    })
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
    MetaData(Box<Meta>, usize),
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
pub(super) struct Tokens {
    pub(super) spans: [(u32, u32); MAX_TOKENS],
    /// Real tokens found (at most `MAX_TOKENS - 1`).
    pub(super) n: usize,
}

impl Tokens {
    pub(super) fn new(line: &[u8]) -> Self {
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

    pub(super) fn span(&self, i: usize) -> Range<usize> {
        let (s, e) = self.spans[i];
        s as usize..e as usize
    }

    pub(super) fn len(&self, i: usize) -> usize {
        self.span(i).len()
    }

    /// Token `i`, or an empty slice past the end (memcached's terminal token).
    pub(super) fn get<'a>(&self, line: &'a [u8], i: usize) -> &'a [u8] {
        if i < self.n { &line[self.span(i)] } else { &[] }
    }
}

#[cfg(test)]
mod tests;
