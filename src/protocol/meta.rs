//! Meta command lines (`mg ms md ma me`): flag parsing with memcached 1.6's rules and
//! error strings, base64 keys, and the token walk replies use to echo return flags in
//! request order.

use bytes::Bytes;

use super::ProtocolError;
use super::encode::Reply;
use crate::clock::{Clock, RelTime};
use crate::memcached::number::{parse_i32_truncating, parse_u32_truncating, parse_u64};
use crate::memcached::{KEY_MAX_LENGTH, TtlFlags};

/// memcached refuses meta lines with more tokens than this (`MFLAG_MAX_OPT_LENGTH`).
const MAX_META_TOKENS: usize = 20;

/// Longest opaque (`O`) token, flag letter included (`MFLAG_MAX_OPAQUE_LENGTH`).
const MAX_OPAQUE: usize = 32;

/// Which meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCmd {
    Get,
    Set,
    Delete,
    Arith,
}

/// A decoded meta request (the data block of `ms` travels beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub cmd: MetaCmd,
    /// The key, base64-decoded when `b` was given.
    pub key: Bytes,
    /// The key as sent, for echoing with `k`.
    pub wire_key: Bytes,
    pub key_binary: bool,
    /// The flag tokens, as sent, for echoing return flags in order.
    pub flag_tokens: Bytes,
    pub value: bool,
    pub noreply: bool,
    pub no_update: bool,
    pub cas: Option<u64>,
    pub mode: Option<u8>,
    pub ttl: TtlFlags,
    pub recache: Option<(RelTime, usize)>,
    pub client_flags: u32,
    pub delta: u64,
    pub initial: u64,
    pub invalidate: bool,
}

impl Meta {
    /// The flag tokens with their positions (the positions `TtlFlags` uses).
    pub fn flags(&self) -> impl Iterator<Item = (usize, &[u8])> {
        self.flag_tokens.split(|&b| b == b' ').filter(|t| !t.is_empty()).enumerate()
    }
}

/// An `ms` line whose data block must be read (or swallowed) next.
#[derive(Debug)]
pub enum SetLine {
    /// Read `len` bytes of data, then store.
    Data { meta: Meta, len: usize },
    /// Swallow `len + 2` bytes, then answer with `error`.
    Refuse { len: usize, error: ProtocolError },
}

/// What a meta line decodes to.
#[derive(Debug)]
pub enum Parsed {
    Done(Meta),
    Set(SetLine),
    /// `me <key> [b]`: key and whether it was base64.
    Debug {
        key: Bytes,
        key_binary: bool,
    },
    /// `mn`.
    Noop,
}

/// Parses a meta line; `tokens` are the line's space-separated tokens (at most 23) and
/// `ntokens` memcached's count (tokens + 1).
pub fn parse(line: &Bytes, tokens: &[(usize, usize)], clock: &Clock) -> Result<Parsed, ProtocolError> {
    let ntokens = tokens.len() + 1;
    let tok = |i: usize| tokens.get(i).map_or(&[][..], |&(s, e)| &line[s..e]);
    let cmd = match tok(0)[1] {
        b'g' => MetaCmd::Get,
        b's' => MetaCmd::Set,
        b'd' => MetaCmd::Delete,
        b'a' => MetaCmd::Arith,
        b'n' => return Ok(Parsed::Noop),
        b'e' => {
            let key = tok(1);
            if ntokens < 3 || key.len() > KEY_MAX_LENGTH {
                return Err(ProtocolError::BadFormat);
            }
            if ntokens >= 4 && tok(2) == b"b" {
                let key = base64_decode(key).ok_or(ProtocolError::BadFormat)?;
                return Ok(Parsed::Debug { key: key.into(), key_binary: true });
            }
            let (s, e) = tokens[1];
            return Ok(Parsed::Debug { key: line.slice(s..e), key_binary: false });
        }
        _ => return Err(ProtocolError::UnknownCommand),
    };
    if ntokens < 3 {
        return Err(ProtocolError::UnknownCommand);
    }
    if tok(1).len() > KEY_MAX_LENGTH {
        return Err(ProtocolError::BadFormat);
    }
    if cmd == MetaCmd::Set && ntokens == 3 {
        return Err(ProtocolError::BadFormat);
    }
    if ntokens > MAX_META_TOKENS {
        return Err(ProtocolError::Refused(if cmd == MetaCmd::Get {
            Reply::MgFlagsTooLong
        } else {
            Reply::FlagsTooLong
        }));
    }
    let mut set_len = 0usize;
    if cmd == MetaCmd::Set {
        let len = parse_i32_truncating(tok(2)).ok_or(ProtocolError::BadFormat)?;
        if !(0..=i32::MAX - 2).contains(&len) {
            return Err(ProtocolError::BadFormat);
        }
        set_len = len as usize;
    }
    let first_flag = if cmd == MetaCmd::Set { 3 } else { 2 };
    let (ks, ke) = tokens[1];
    let flag_tokens = match tokens.get(first_flag) {
        Some(&(s, _)) => line.slice(s..tokens[tokens.len() - 1].1),
        None => Bytes::new(),
    };
    let mut m = Meta {
        cmd,
        key: line.slice(ks..ke),
        wire_key: line.slice(ks..ke),
        key_binary: false,
        flag_tokens,
        value: false,
        noreply: false,
        no_update: false,
        cas: None,
        mode: None,
        ttl: TtlFlags::default(),
        recache: None,
        client_flags: 0,
        delta: 1,
        initial: 0,
        invalidate: false,
    };
    let refuse = |error: Reply| -> Result<Parsed, ProtocolError> {
        match cmd {
            MetaCmd::Set => Ok(Parsed::Set(SetLine::Refuse { len: set_len, error: ProtocolError::Refused(error) })),
            MetaCmd::Get => Err(ProtocolError::Refused(error)),
            MetaCmd::Delete | MetaCmd::Arith => Err(ProtocolError::Refused(Reply::InvalidOrDuplicateFlag)),
        }
    };
    if let Err(e) = preparse(&mut m, clock) {
        return refuse(e);
    }
    // Checked while building replies in memcached; checked up front here.
    if m.flags().any(|(_, t)| t[0] == b'O' && t.len() > MAX_OPAQUE) {
        return match cmd {
            MetaCmd::Set => {
                Ok(Parsed::Set(SetLine::Refuse { len: set_len, error: ProtocolError::Refused(Reply::OpaqueTooLong) }))
            }
            _ => Err(ProtocolError::Refused(Reply::OpaqueTooLong)),
        };
    }
    match (cmd, m.mode) {
        (MetaCmd::Set, Some(mode)) if !b"EAPRS".contains(&mode) => {
            return Ok(Parsed::Set(SetLine::Refuse { len: set_len, error: ProtocolError::Refused(Reply::MsMode) }));
        }
        (MetaCmd::Arith, Some(mode)) if !b"I+D-".contains(&mode) => return Err(ProtocolError::Refused(Reply::MaMode)),
        _ => {}
    }
    if cmd == MetaCmd::Set {
        return Ok(Parsed::Set(SetLine::Data { meta: m, len: set_len }));
    }
    Ok(Parsed::Done(m))
}

/// memcached's `_meta_flag_preparse`: every flag once; bad values noted and parsing goes
/// on (the last error wins); an unknown or repeated flag stops at once.
fn preparse(m: &mut Meta, clock: &Clock) -> Result<(), Reply> {
    let mut seen = [false; 128];
    // memcached keeps one error string, starting as "bad command line format"; most bad
    // flags overwrite it, a bad `F` only marks the failure.
    let mut error: Option<Reply> = None;
    let mut failed = false;
    let tokens = m.flag_tokens.clone();
    for (pos, t) in tokens.split(|&b| b == b' ').filter(|t| !t.is_empty()).enumerate() {
        let o = t[0];
        if o >= 127 || seen[usize::from(o)] {
            return Err(Reply::DuplicateFlag);
        }
        seen[usize::from(o)] = true;
        let arg = &t[1..];
        let deadline = |error: &mut Option<Reply>| match parse_i32_truncating(arg) {
            Some(e) => Some((clock.deadline(e), pos)),
            None => {
                *error = Some(Reply::BadToken);
                None
            }
        };
        match o {
            b'b' => match base64_decode(&m.key) {
                Some(k) => {
                    m.key = k.into();
                    m.key_binary = true;
                }
                None => error = Some(Reply::KeyDecode),
            },
            b'N' => m.ttl.vivify = deadline(&mut error),
            b'T' => m.ttl.touch = deadline(&mut error),
            b'R' => m.recache = deadline(&mut error),
            b'l' | b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'h' => {}
            b'v' => m.value = true,
            b'u' => m.no_update = true,
            b'q' => m.noreply = true,
            b'F' => match parse_u32_truncating(arg) {
                Some(f) => m.client_flags = f,
                None => failed = true,
            },
            b'C' => match parse_u64(arg) {
                Some(c) => m.cas = Some(c),
                None => error = Some(Reply::BadToken),
            },
            b'M' => {
                if t.len() != 2 {
                    error = Some(Reply::MetaModeLength);
                } else {
                    m.mode = Some(t[1]);
                }
            }
            b'J' => match parse_u64(arg) {
                Some(v) => m.initial = v,
                None => error = Some(Reply::BadInitial),
            },
            b'D' => match parse_u64(arg) {
                Some(v) => m.delta = v,
                None => error = Some(Reply::BadMetaDelta),
            },
            b'I' => m.invalidate = true,
            _ => return Err(Reply::InvalidFlag),
        }
    }
    match (error, failed) {
        (Some(e), _) => Err(e),
        (None, true) => Err(Reply::BadCommandLineFormat),
        (None, false) => Ok(()),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as memcached encodes binary keys.
pub fn base64_encode(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63]);
            } else {
                out.push(b'=');
            }
        }
    }
}

/// Decodes standard base64; `None` on bad input or an empty result (memcached's
/// `base64_decode` returning 0).
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| B64.iter().position(|&x| x == c).map(|v| v as u32);
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let trimmed = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"=")).unwrap_or(text);
    if !text.len().is_multiple_of(4) {
        return None;
    }
    for chunk in trimmed.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for data in [&b"f"[..], b"fo", b"foo", b"foob", b"\x00\xff\x10 \r\n"] {
            let mut enc = Vec::new();
            base64_encode(data, &mut enc);
            assert_eq!(base64_decode(&enc).as_deref(), Some(data), "{enc:?}");
        }
        let mut enc = Vec::new();
        base64_encode(b"foo", &mut enc);
        assert_eq!(enc, b"Zm9v");
        assert_eq!(base64_decode(b"Zm9"), None);
        assert_eq!(base64_decode(b"Zm!v"), None);
        assert_eq!(base64_decode(b""), None);
    }
}
