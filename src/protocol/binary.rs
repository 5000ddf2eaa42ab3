//! memcached's binary protocol (deprecated by memcached in 1.6, still served): the 24-byte
//! packet header, the opcodes memcached answers and their length rules, decoding packets
//! into [`Packet`]s and writing response packets. memcached's `protocol_binary.h` and
//! `proto_bin.c` are the definition, quirks included: a request's extras and key are taken
//! off the input before it is checked, a value is read only by the commands that have one,
//! and what the header says beyond that is left to be read as the next packet. No I/O and
//! no store types: `exec::binary` runs the packets.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::text::{Framing, Limits};
use crate::clock::{Clock, RelTime};
use crate::memcached::{KEY_MAX_LENGTH, StoreMode, item_too_large};

/// The first byte of every request; a connection whose first byte is this speaks binary
/// (memcached's `-B auto`).
pub const REQUEST_MAGIC: u8 = 0x80;
const RESPONSE_MAGIC: u8 = 0x81;
pub const HEADER_LEN: usize = 24;

/// memcached refuses a body longer than this (`ITEM_SIZE_MAX_UPPER_LIMIT`) and closes.
const MAX_BODY: u32 = 1 << 30;
/// The longest SASL mechanism name memcached takes (`MAX_SASL_MECH_LEN`).
const MAX_MECH_LEN: usize = 32;

/// The opcodes memcached 1.6 answers (`protocol_binary_command`).
pub mod op {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
    pub const SASL_LIST_MECHS: u8 = 0x20;
    pub const SASL_AUTH: u8 = 0x21;
    pub const SASL_STEP: u8 = 0x22;
}

/// Response statuses, each with the text memcached sends as the body of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    NotFound,
    Exists,
    TooLarge,
    Invalid,
    NotStored,
    NonNumeric,
    AuthError,
    AuthContinue,
    UnknownCommand,
    OutOfMemory,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Self::NotFound => 0x01,
            Self::Exists => 0x02,
            Self::TooLarge => 0x03,
            Self::Invalid => 0x04,
            Self::NotStored => 0x05,
            Self::NonNumeric => 0x06,
            Self::AuthError => 0x20,
            Self::AuthContinue => 0x21,
            Self::UnknownCommand => 0x81,
            Self::OutOfMemory => 0x82,
        }
    }

    /// memcached's `write_bin_error` text for the status.
    pub fn text(self) -> &'static [u8] {
        match self {
            Self::NotFound => b"Not found",
            Self::Exists => b"Data exists for key.",
            Self::TooLarge => b"Too large.",
            Self::Invalid => b"Invalid arguments",
            Self::NotStored => b"Not stored.",
            Self::NonNumeric => b"Non-numeric server-side value for incr or decr",
            Self::AuthError => b"Auth failure.",
            Self::AuthContinue => b"",
            Self::UnknownCommand => b"Unknown command",
            Self::OutOfMemory => b"Out of memory",
        }
    }
}

/// What a response echoes of its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Echo {
    pub opcode: u8,
    pub opaque: u32,
}

/// One decoded request: what it echoes, the CAS its header carries (0: none), whether it
/// is a quiet variant, and the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub echo: Echo,
    pub cas: u64,
    /// A quiet opcode (`getq`, `setq`, ...): success is not answered (a retrieval's miss
    /// is not; its hit is); errors are.
    pub quiet: bool,
    pub command: Command,
}

/// The commands memcached's binary protocol serves, with their length rules checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `get getq getk getkq touch gat gatq gatk gatkq`.
    Get {
        key: Bytes,
        /// The key goes back in the reply (`getk`, `gatk`).
        with_key: bool,
        /// The value goes back (all but `touch`).
        with_value: bool,
        /// The new deadline of a touch or gat.
        touch: Option<RelTime>,
    },
    /// `set add replace append prepend` and their quiet variants. A set, add or replace
    /// with a CAS in its header is a `cas`; an append or prepend with one compares it.
    Store {
        mode: StoreMode,
        key: Bytes,
        flags: u32,
        deadline: RelTime,
        value: Bytes,
    },
    /// A storage command whose value is over the item size limit: answered `Too large.`,
    /// its value discarded, and a `set`'s old value dropped, as memcached does.
    TooLarge {
        key: Bytes,
        mode: StoreMode,
    },
    Delete {
        key: Bytes,
    },
    /// `incr decr` and quiet variants; `create` is the item's initial value and deadline
    /// when it is missing, unless the expiration was 0xffffffff.
    Arith {
        key: Bytes,
        incr: bool,
        delta: u64,
        create: Option<(u64, RelTime)>,
    },
    /// `flush flushq`: the delay, 0 for now.
    Flush {
        delay: u32,
    },
    Noop,
    Version,
    Quit,
    /// `stat` with its key (the report's name; empty for the general one).
    Stat {
        key: Bytes,
    },
    SaslList,
    /// `sasl_auth` (`step` false) and `sasl_step`: the mechanism and the client's data.
    Sasl {
        step: bool,
        mech: Bytes,
        data: Bytes,
    },
    /// Answered with an error status that does not end the connection (an unknown opcode,
    /// a SASL opcode without `-S`, an over-long mechanism); its value is discarded.
    Refused(Status),
}

/// A packet memcached answers by closing the connection: after an error response, or
/// (bad magic) with nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fatal {
    pub echo: Echo,
    pub status: Option<Status>,
}

#[derive(Debug)]
enum State {
    /// Waiting for a header, its extras and key.
    Header,
    /// A storage or SASL command waiting for its value.
    Value(Box<(Packet, usize)>),
    /// Discarding this many bytes of a refused value.
    Swallow(u64),
}

/// Incremental decoder over a connection's read buffer.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    clock: Clock,
    state: State,
    /// `-S`: SASL is on, so SASL opcodes are served.
    sasl: bool,
    /// `-S` and no login yet: only SASL and `version` are served; anything else ends the
    /// connection.
    unauthenticated: bool,
}

impl Decoder {
    pub fn new(limits: Limits, clock: Clock) -> Self {
        Self { limits, clock, state: State::Header, sasl: false, unauthenticated: false }
    }

    /// `-S`: serve SASL, and nothing else before a login.
    pub fn require_sasl(mut self) -> Self {
        self.sasl = true;
        self.unauthenticated = true;
        self
    }

    /// The login succeeded.
    pub fn authenticated(&mut self) {
        self.unauthenticated = false;
    }

    /// The bytes still missing from what the decoder must hold whole before it goes on (a
    /// value, or a header's extras and key), when it waits for such: the connection grows
    /// its buffer with the data to that end, not with the declared length.
    pub fn block_left(&self, buf: &BytesMut) -> Option<usize> {
        let total = match &self.state {
            State::Value(pending) => pending.1,
            State::Header => {
                let h = buf.get(..HEADER_LEN).filter(|h| h[0] == REQUEST_MAGIC)?;
                HEADER_LEN + usize::from(h[4]) + usize::from(u16::from_be_bytes([h[2], h[3]]))
            }
            State::Swallow(_) => return None,
        };
        (buf.len() < total).then(|| total - buf.len())
    }

    /// What the decoder waits for.
    pub fn framing(&self) -> Framing {
        match self.state {
            State::Header => Framing::Line,
            State::Value(_) => Framing::Data,
            State::Swallow(_) => Framing::Swallow,
        }
    }

    /// Decodes the next packet. `Ok(None)`: more bytes are needed. Consumed bytes are split
    /// off `buf`; after a [`Fatal`] the connection must close.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, Fatal> {
        loop {
            match &mut self.state {
                State::Swallow(left) => {
                    let n = (*left).min(buf.len() as u64);
                    buf.advance(n as usize);
                    *left -= n;
                    if *left > 0 {
                        return Ok(None);
                    }
                    self.state = State::Header;
                }
                State::Value(pending) => {
                    if buf.len() < pending.1 {
                        return Ok(None);
                    }
                    let State::Value(pending) = std::mem::replace(&mut self.state, State::Header) else {
                        unreachable!()
                    };
                    let (mut packet, len) = *pending;
                    let value = buf.split_to(len).freeze();
                    match &mut packet.command {
                        Command::Store { value: v, .. } | Command::Sasl { data: v, .. } => *v = value,
                        _ => unreachable!("only storage and SASL commands read a value"),
                    }
                    return Ok(Some(packet));
                }
                State::Header => {
                    if let Some(packet) = self.header(buf)? {
                        return Ok(Some(packet));
                    }
                    if matches!(self.state, State::Header) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    fn header(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, Fatal> {
        let Some(h) = buf.get(..HEADER_LEN) else { return Ok(None) };
        let echo = Echo { opcode: h[1], opaque: u32::from_ne_bytes([h[12], h[13], h[14], h[15]]) };
        if h[0] != REQUEST_MAGIC {
            return Err(Fatal { echo, status: None });
        }
        let keylen = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let extlen = usize::from(h[4]);
        let bodylen = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        let cas = u64::from_be_bytes(h[16..24].try_into().expect("8 bytes"));
        if buf.len() < HEADER_LEN + extlen + keylen {
            return Ok(None);
        }
        let mut frame = buf.split_to(HEADER_LEN + extlen + keylen).freeze();
        frame.advance(HEADER_LEN);
        let extras = frame.split_to(extlen);
        let key = frame;
        let body = bodylen as usize;
        let fatal = |status| Err(Fatal { echo, status: Some(status) });
        if keylen + extlen > body {
            return fatal(Status::UnknownCommand);
        }
        if bodylen > MAX_BODY {
            return fatal(Status::Invalid);
        }
        let opcode = echo.opcode;
        if self.unauthenticated && !matches!(opcode, op::SASL_LIST_MECHS | op::SASL_AUTH | op::SASL_STEP | op::VERSION)
        {
            return fatal(Status::AuthError);
        }
        if keylen > KEY_MAX_LENGTH {
            return fatal(Status::Invalid);
        }
        let quiet = matches!(
            opcode,
            op::SETQ
                | op::ADDQ
                | op::REPLACEQ
                | op::DELETEQ
                | op::INCREMENTQ
                | op::DECREMENTQ
                | op::QUITQ
                | op::FLUSHQ
                | op::APPENDQ
                | op::PREPENDQ
                | op::GETQ
                | op::GETKQ
                | op::GATQ
                | op::GATKQ
        );
        let value_len = body - keylen - extlen;
        let be32 = |b: &[u8]| u32::from_be_bytes(b[..4].try_into().expect("4 bytes"));
        let be64 = |b: &[u8]| u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
        let deadline = |exptime: u32| self.clock.deadline(i32::try_from(exptime).unwrap_or(i32::MAX));
        let no_value = extlen == 0 && keylen == 0 && body == 0;
        let command = match opcode {
            op::VERSION if no_value => Command::Version,
            op::NOOP if no_value => Command::Noop,
            op::QUIT | op::QUITQ if no_value => Command::Quit,
            // memcached's guards for SASL turned off answer after the length checks.
            op::SASL_LIST_MECHS if no_value && !self.sasl => Command::Refused(Status::UnknownCommand),
            op::SASL_LIST_MECHS if no_value => {
                // memcached's `init_sasl_conn`: every SASL command starts logged out.
                self.unauthenticated = true;
                Command::SaslList
            }
            op::FLUSH | op::FLUSHQ if keylen == 0 && body == extlen && (extlen == 0 || extlen == 4) => {
                Command::Flush { delay: if extlen == 4 { be32(&extras) } else { 0 } }
            }
            op::SET | op::SETQ | op::ADD | op::ADDQ | op::REPLACE | op::REPLACEQ if extlen == 8 && keylen != 0 => {
                let flags = be32(&extras);
                let mode = match (opcode, cas) {
                    (_, unique @ 1..) => StoreMode::Cas { unique },
                    (op::SET | op::SETQ, _) => StoreMode::Set,
                    (op::ADD | op::ADDQ, _) => StoreMode::Add,
                    _ => StoreMode::Replace,
                };
                let d = deadline(be32(&extras[4..]));
                // memcached drops a failed `set`'s old value, whatever the header's CAS.
                let too_large_mode = if matches!(opcode, op::SET | op::SETQ) { StoreMode::Set } else { mode };
                return Ok(self.with_value(
                    echo,
                    cas,
                    quiet,
                    Command::Store { mode, key: key.clone(), flags, deadline: d, value: Bytes::new() },
                    (flags, value_len, key, too_large_mode),
                ));
            }
            op::APPEND | op::APPENDQ | op::PREPEND | op::PREPENDQ if keylen > 0 && extlen == 0 => {
                let mode =
                    if matches!(opcode, op::APPEND | op::APPENDQ) { StoreMode::Append } else { StoreMode::Prepend };
                return Ok(self.with_value(
                    echo,
                    cas,
                    quiet,
                    Command::Store { mode, key: key.clone(), flags: 0, deadline: 0, value: Bytes::new() },
                    (0, value_len, key, mode),
                ));
            }
            op::GET | op::GETQ | op::GETK | op::GETKQ if extlen == 0 && body == keylen && keylen > 0 => {
                Command::Get { key, with_key: matches!(opcode, op::GETK | op::GETKQ), with_value: true, touch: None }
            }
            op::TOUCH | op::GAT | op::GATQ | op::GATK | op::GATKQ if extlen == 4 && keylen != 0 => Command::Get {
                key,
                with_key: matches!(opcode, op::GATK | op::GATKQ),
                with_value: opcode != op::TOUCH,
                touch: Some(deadline(be32(&extras))),
            },
            op::DELETE | op::DELETEQ if keylen > 0 && extlen == 0 && body == keylen => Command::Delete { key },
            op::INCREMENT | op::INCREMENTQ | op::DECREMENT | op::DECREMENTQ
                if keylen > 0 && extlen == 20 && body == keylen + extlen =>
            {
                let exptime = be32(&extras[16..]);
                Command::Arith {
                    key,
                    incr: matches!(opcode, op::INCREMENT | op::INCREMENTQ),
                    delta: be64(&extras),
                    create: (exptime != u32::MAX).then(|| (be64(&extras[8..]), deadline(exptime))),
                }
            }
            op::STAT if extlen == 0 => Command::Stat { key },
            op::SASL_AUTH | op::SASL_STEP if extlen == 0 && keylen != 0 && !self.sasl => {
                self.state = State::Swallow((body - keylen) as u64);
                Command::Refused(Status::UnknownCommand)
            }
            op::SASL_AUTH | op::SASL_STEP if extlen == 0 && keylen != 0 => {
                let data_len = body - keylen;
                let refusal = if keylen > MAX_MECH_LEN {
                    Some(Status::Invalid)
                } else if item_too_large(keylen, 0, data_len, self.limits.max_item_size) {
                    Some(Status::OutOfMemory)
                } else {
                    None
                };
                if let Some(status) = refusal {
                    self.state = State::Swallow(data_len as u64);
                    Command::Refused(status)
                } else {
                    self.unauthenticated = true;
                    let command = Command::Sasl { step: opcode == op::SASL_STEP, mech: key, data: Bytes::new() };
                    return Ok(self.await_value(Packet { echo, cas, quiet, command }, data_len));
                }
            }
            op::VERSION
            | op::NOOP
            | op::QUIT
            | op::QUITQ
            | op::SASL_LIST_MECHS
            | op::FLUSH
            | op::FLUSHQ
            | op::SET
            | op::SETQ
            | op::ADD
            | op::ADDQ
            | op::REPLACE
            | op::REPLACEQ
            | op::APPEND
            | op::APPENDQ
            | op::PREPEND
            | op::PREPENDQ
            | op::GET
            | op::GETQ
            | op::GETK
            | op::GETKQ
            | op::TOUCH
            | op::GAT
            | op::GATQ
            | op::GATK
            | op::GATKQ
            | op::DELETE
            | op::DELETEQ
            | op::INCREMENT
            | op::INCREMENTQ
            | op::DECREMENT
            | op::DECREMENTQ
            | op::STAT
            | op::SASL_AUTH
            | op::SASL_STEP => return fatal(Status::Invalid),
            _ => {
                // memcached discards the whole body length after the extras and key it has
                // already taken: the bytes of what follows, if the body was shorter.
                self.state = State::Swallow(u64::from(bodylen));
                Command::Refused(Status::UnknownCommand)
            }
        };
        Ok(Some(Packet { echo, cas, quiet, command }))
    }

    /// A storage command whose value is still to come: the packet once it has, or at
    /// once the refusal of a value over the item size limit (which is then discarded).
    fn with_value(
        &mut self,
        echo: Echo,
        cas: u64,
        quiet: bool,
        command: Command,
        (flags, len, key, too_large_mode): (u32, usize, Bytes, StoreMode),
    ) -> Option<Packet> {
        if item_too_large(key.len(), flags, len, self.limits.max_item_size) {
            self.state = State::Swallow(len as u64);
            return Some(Packet { echo, cas, quiet, command: Command::TooLarge { key, mode: too_large_mode } });
        }
        self.await_value(Packet { echo, cas, quiet, command }, len)
    }

    fn await_value(&mut self, packet: Packet, len: usize) -> Option<Packet> {
        self.state = State::Value(Box::new((packet, len)));
        None
    }
}

/// Calls `f` with the keys the first `max_packets` packets of a pipelined batch will look
/// up (the `get` and `gat` families), stepping over each packet by its body length, when
/// more than one packet is there: a hint for prefetching, as
/// [`super::pipelined_get_keys`] is for text (a libmemcached multi-get is a pipeline of
/// `getkq`s and a `noop`). A header not all here, or one without the request magic, ends
/// the walk; nothing it does changes what the decoder sees. Returns how many packets it
/// walked (0 for a batch of one).
pub fn pipelined_get_keys(buf: &[u8], max_packets: usize, mut f: impl FnMut(&[u8])) -> usize {
    let mut rest = buf;
    for n in 0..max_packets {
        let Some(h) = rest.get(..HEADER_LEN) else { return n };
        if h[0] != REQUEST_MAGIC {
            return n;
        }
        let keylen = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let extlen = usize::from(h[4]);
        let total = HEADER_LEN + u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
        if n == 0 && rest.len() <= total {
            return 0; // one packet: nothing to overlap
        }
        let retrieval =
            matches!(h[1], op::GET | op::GETQ | op::GETK | op::GETKQ | op::GAT | op::GATQ | op::GATK | op::GATKQ);
        if retrieval
            && keylen > 0
            && HEADER_LEN + extlen + keylen <= total
            && let Some(key) = rest.get(HEADER_LEN + extlen..HEADER_LEN + extlen + keylen)
        {
            f(key);
        }
        let Some(after) = rest.get(total..) else { return n + 1 };
        rest = after;
    }
    max_packets
}

/// Writes a response header.
pub fn put_header(out: &mut BytesMut, echo: Echo, status: u16, extlen: u8, keylen: u16, bodylen: u32, cas: u64) {
    // Built whole and appended once: one capacity check instead of one per field.
    out.extend_from_slice(&header(echo, status, extlen, keylen, bodylen, cas));
}

/// A response header's bytes.
fn header(echo: Echo, status: u16, extlen: u8, keylen: u16, bodylen: u32, cas: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = RESPONSE_MAGIC;
    h[1] = echo.opcode;
    h[2..4].copy_from_slice(&keylen.to_be_bytes());
    h[4] = extlen;
    // h[5]: the data type, raw bytes (0).
    h[6..8].copy_from_slice(&status.to_be_bytes());
    h[8..12].copy_from_slice(&bodylen.to_be_bytes());
    h[12..16].copy_from_slice(&echo.opaque.to_ne_bytes());
    h[16..24].copy_from_slice(&cas.to_be_bytes());
    h
}

/// A success response with a body of `value` only (no extras, no key).
pub fn put_ok(out: &mut BytesMut, echo: Echo, cas: u64, value: &[u8]) {
    put_header(out, echo, 0, 0, 0, value.len() as u32, cas);
    out.extend_from_slice(value);
}

/// An error response: the status and memcached's text for it (or `text` instead).
pub fn put_error(out: &mut BytesMut, echo: Echo, status: Status, text: Option<&[u8]>) {
    let text = text.unwrap_or(status.text());
    put_header(out, echo, status.code(), 0, 0, text.len() as u32, 0);
    out.extend_from_slice(text);
}

/// A retrieval's miss with the key (`getk`, `gatk`): status 1, the key as key and body.
pub fn put_miss_with_key(out: &mut BytesMut, echo: Echo, key: &[u8]) {
    put_header(out, echo, Status::NotFound.code(), 0, key.len() as u16, key.len() as u32, 0);
    out.extend_from_slice(key);
}

/// A retrieval's hit, up to the value: the header, the flags and the key if asked; the
/// value (`value_len` bytes) is for the caller to add.
pub fn put_hit_head(out: &mut BytesMut, echo: Echo, cas: u64, flags: u32, key: Option<&[u8]>, value_len: usize) {
    let keylen = key.map_or(0, <[u8]>::len);
    // The header and the flags, appended at once.
    let mut head = [0u8; HEADER_LEN + 4];
    head[..HEADER_LEN].copy_from_slice(&header(echo, 0, 4, keylen as u16, (4 + keylen + value_len) as u32, cas));
    head[HEADER_LEN..].copy_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&head);
    if let Some(key) = key {
        out.extend_from_slice(key);
    }
}

/// An `incr`/`decr` result: the new value as 8 bytes.
pub fn put_counter(out: &mut BytesMut, echo: Echo, cas: u64, value: u64) {
    put_header(out, echo, 0, 0, 0, 8, cas);
    out.put_u64(value);
}

/// One `stat` response packet (`name`, `value`); both empty for the last.
pub fn put_stat(out: &mut BytesMut, opaque: u32, name: &[u8], value: &[u8]) {
    let echo = Echo { opcode: op::STAT, opaque };
    put_header(out, echo, 0, 0, name.len() as u16, (name.len() + value.len()) as u32, 0);
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests;
