//! Meta command lines (`mg ms md ma me`): flag parsing with memcached 1.6.45's rules and
//! refusals (its `proto_parser.c`: strict numbers, the flags added since 1.6.18: `E`,
//! `x`, `mg C`, `ms s` and `N`), base64 keys, and the token walk replies use to echo
//! return flags in request order.

use bytes::Bytes;

use super::ProtocolError;
use super::encode::Reply;
use crate::clock::{Clock, RelTime};
use crate::memcached::{KEY_MAX_LENGTH, StoreMode, TtlFlags};

/// memcached refuses meta lines with more tokens than this (`MFLAG_MAX_OPT_LENGTH`,
/// compared in 1.6.45 with the tokens themselves, command and key included).
const MAX_META_TOKENS: usize = 20;

/// Longest opaque (`O`) token, flag letter included (`MFLAG_MAX_OPAQUE_LENGTH`).
const MAX_OPAQUE: usize = 32;

/// Which meta command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaCmd {
    Get,
    Set,
    Delete,
    Arith,
}

/// A decoded meta request's key and flags (which command it is, the [`super::Request`]
/// variant says; the data block of `ms` travels beside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The key, base64-decoded when `b` was given.
    pub key: Bytes,
    pub key_binary: bool,
    /// The flag tokens, as sent, for echoing return flags in order.
    pub flag_tokens: Bytes,
    pub value: bool,
    pub noreply: bool,
    pub no_update: bool,
    pub cas: Option<u64>,
    /// `ms M<mode>`: how an existing item is treated (`S`, the default, is a set).
    pub store_mode: StoreMode,
    /// `ma MD` or `M-`: decrement instead of increment.
    pub decr: bool,
    pub ttl: TtlFlags,
    pub recache: Option<(RelTime, usize)>,
    pub client_flags: u32,
    pub delta: u64,
    pub initial: u64,
    pub invalidate: bool,
    /// `E<cas>` (1.6.45): the CAS a changed or created item gets, instead of the next.
    pub cas_in: Option<u64>,
    /// `md x` (1.6.45): empty the item's value instead of removing it.
    pub remove_value: bool,
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
    Data { meta: Box<Meta>, len: usize },
    /// Swallow `len + 2` bytes, then answer with `error`.
    Refuse { len: usize, error: ProtocolError },
}

/// What a meta line decodes to.
#[derive(Debug)]
pub enum Parsed {
    Get(Meta),
    Delete(Meta),
    Arith(Meta),
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
pub fn parse(line: &Bytes, tokens: &[(u32, u32)], clock: &Clock) -> Result<Parsed, ProtocolError> {
    let span = |i: usize| tokens[i].0 as usize..tokens[i].1 as usize;
    let tok = |i: usize| if i < tokens.len() { &line[span(i)] } else { &[][..] };
    let cmd = match tok(0)[1] {
        b'g' => MetaCmd::Get,
        b's' => MetaCmd::Set,
        b'd' => MetaCmd::Delete,
        b'a' => MetaCmd::Arith,
        b'n' => return Ok(Parsed::Noop),
        b'e' => {
            if !flags_tokenize(line, tokens, 2) || tokens.len() < 2 || tok(1).len() > KEY_MAX_LENGTH {
                return Err(ProtocolError::BadFormat);
            }
            // 1.6.45 counts tokens without the terminal one here, yet kept 1.6.18's
            // `ntokens >= 4`: `b` decodes the key only with a token after it.
            if tokens.len() >= 4 && tok(2) == b"b" {
                let key = base64_decode(tok(1)).ok_or(ProtocolError::BadFormat)?;
                return Ok(Parsed::Debug { key: key.into(), key_binary: true });
            }
            return Ok(Parsed::Debug { key: line.slice(span(1)), key_binary: false });
        }
        _ => return Err(ProtocolError::UnknownCommand),
    };
    let first_flag = if cmd == MetaCmd::Set { 3 } else { 2 };
    // memcached's tokenizer gives up on a flag that starts with neither a letter nor a
    // digit, and the line is then too short: a bad format, with no data swallowed.
    if tokens.len() < first_flag || !flags_tokenize(line, tokens, first_flag) {
        return Err(ProtocolError::BadFormat);
    }
    let mut set_len = 0usize;
    if cmd == MetaCmd::Set {
        let len = tok_i32(tok(2)).ok_or(ProtocolError::BadFormat)?;
        if !(0..=i32::MAX - 2).contains(&len) {
            return Err(ProtocolError::BadFormat);
        }
        set_len = len as usize;
    }
    let refuse = |error: Reply| -> Result<Parsed, ProtocolError> {
        match cmd {
            MetaCmd::Set => Ok(Parsed::Set(SetLine::Refuse { len: set_len, error: ProtocolError::Refused(error) })),
            MetaCmd::Get | MetaCmd::Delete => Err(ProtocolError::Refused(error)),
            MetaCmd::Arith => Err(ProtocolError::Refused(Reply::InvalidOrDuplicateFlag)),
        }
    };
    if tok(1).len() > KEY_MAX_LENGTH {
        return refuse(Reply::BadCommandLineFormat);
    }
    if tokens.len() > MAX_META_TOKENS {
        return refuse(Reply::MgFlagsTooLong);
    }
    let flag_tokens = match tokens.get(first_flag) {
        Some(&(s, _)) => line.slice(s as usize..tokens[tokens.len() - 1].1 as usize),
        None => Bytes::new(),
    };
    let mut m = Meta {
        key: line.slice(span(1)),
        key_binary: false,
        flag_tokens,
        value: false,
        noreply: false,
        no_update: false,
        cas: None,
        store_mode: StoreMode::Set,
        decr: false,
        ttl: TtlFlags::default(),
        recache: None,
        client_flags: 0,
        delta: 1,
        initial: 0,
        invalidate: false,
        cas_in: None,
        remove_value: false,
    };
    let mode = match preparse(&mut m, clock) {
        Ok(mode) => mode,
        Err(e) => return refuse(e),
    };
    // Checked while building replies in memcached; checked up front here.
    if m.flags().any(|(_, t)| t[0] == b'O' && t.len() > MAX_OPAQUE) {
        return match cmd {
            MetaCmd::Set => {
                Ok(Parsed::Set(SetLine::Refuse { len: set_len, error: ProtocolError::Refused(Reply::OpaqueTooLong) }))
            }
            _ => Err(ProtocolError::Refused(Reply::OpaqueTooLong)),
        };
    }
    Ok(match cmd {
        MetaCmd::Set => {
            m.store_mode = match mode {
                None | Some(b'S') => StoreMode::Set,
                Some(b'E') => StoreMode::Add,
                Some(b'A') => StoreMode::Append,
                Some(b'P') => StoreMode::Prepend,
                Some(b'R') => StoreMode::Replace,
                Some(_) => {
                    return Ok(Parsed::Set(SetLine::Refuse {
                        len: set_len,
                        error: ProtocolError::Refused(Reply::MsMode),
                    }));
                }
            };
            Parsed::Set(SetLine::Data { meta: Box::new(m), len: set_len })
        }
        MetaCmd::Arith => {
            m.decr = match mode {
                None | Some(b'I' | b'+') => false,
                Some(b'D' | b'-') => true,
                Some(_) => return Err(ProtocolError::Refused(Reply::MaMode)),
            };
            Parsed::Arith(m)
        }
        // mg and md accept any mode and ignore it, as memcached does.
        MetaCmd::Get => Parsed::Get(m),
        MetaCmd::Delete => Parsed::Delete(m),
    })
}

/// Whether memcached's tokenizer takes the line: from `first_flag` on, each token must
/// start with a byte from `A` to `z` or a digit (`_mcmc_tokenize_meta`).
fn flags_tokenize(line: &[u8], tokens: &[(u32, u32)], first_flag: usize) -> bool {
    tokens.iter().skip(first_flag).all(|&(s, _)| {
        let c = line[s as usize];
        (b'A'..=b'z').contains(&c) || c.is_ascii_digit()
    })
}

/// memcached 1.6.45's numbers (`mcmc_tokto*`): decimal digits only, an optional `-` for
/// the signed ones, no overflow, at most 11 (32-bit) or 22 (64-bit) characters.
fn tok_u64(t: &[u8]) -> Option<u64> {
    if t.len() > 22 {
        return None;
    }
    t.iter()
        .try_fold(0u64, |sum, &c| c.is_ascii_digit().then(|| sum.checked_mul(10)?.checked_add(u64::from(c - b'0')))?)
}

fn tok_u32(t: &[u8]) -> Option<u32> {
    if t.len() > 11 {
        return None;
    }
    tok_u64(t).and_then(|v| u32::try_from(v).ok())
}

fn tok_i32(t: &[u8]) -> Option<i32> {
    if t.len() > 11 {
        return None;
    }
    match t.strip_prefix(b"-") {
        Some(digits) => tok_u64(digits).and_then(|v| i32::try_from(-i64::try_from(v).ok()?).ok()),
        None => tok_u64(t).and_then(|v| i32::try_from(v).ok()),
    }
}

/// A flag's argument (`T30` -> `30`): memcached wants at least one byte after the flag.
fn flag_arg(t: &[u8]) -> Option<&[u8]> {
    (t.len() > 1).then(|| &t[1..])
}

/// memcached's `_meta_flag_preparse`: every flag once; bad values noted and parsing goes
/// on (the last error wins); an unknown or repeated flag stops at once. Returns the `M`
/// flag's mode byte, for the command to judge.
fn preparse(m: &mut Meta, clock: &Clock) -> Result<Option<u8>, Reply> {
    let mut mode = None;
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
        let deadline = |error: &mut Option<Reply>| match flag_arg(t).and_then(tok_i32) {
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
            b'x' => m.remove_value = true,
            b'F' => match flag_arg(t).and_then(tok_u32) {
                Some(f) => m.client_flags = f,
                None => failed = true,
            },
            b'C' => match flag_arg(t).and_then(tok_u64) {
                Some(c) => m.cas = Some(c),
                None => error = Some(Reply::BadToken),
            },
            b'E' => match flag_arg(t).and_then(tok_u64) {
                Some(c) => m.cas_in = Some(c),
                None => error = Some(Reply::BadToken),
            },
            // 1.6.45 takes the byte after `M`, whatever the token's length: a lone `M`
            // names the separator that follows, which no command takes as a mode.
            b'M' => mode = Some(t.get(1).copied().unwrap_or(b' ')),
            b'J' => match flag_arg(t).and_then(tok_u64) {
                Some(v) => m.initial = v,
                None => error = Some(Reply::BadInitial),
            },
            b'D' => match flag_arg(t).and_then(tok_u64) {
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
        (None, false) => Ok(mode),
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

    #[test]
    fn numbers_are_memcached_1_6_45s() {
        assert_eq!(tok_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(tok_u64(b"18446744073709551616"), None);
        assert_eq!(tok_u64(b"0000000000000000000001"), Some(1));
        assert_eq!(tok_u64(b"00000000000000000000001"), None);
        for bad in [&b"+1"[..], b"-1", b" 1", b"1x", b"\t1"] {
            assert_eq!(tok_u64(bad), None, "{bad:?}");
        }
        assert_eq!(tok_u64(b""), Some(0));
        assert_eq!(tok_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(tok_u32(b"4294967296"), None);
        assert_eq!(tok_i32(b"-2147483648"), Some(i32::MIN));
        assert_eq!(tok_i32(b"2147483647"), Some(i32::MAX));
        assert_eq!(tok_i32(b"2147483648"), None);
        assert_eq!(tok_i32(b"-2147483649"), None);
        assert_eq!(tok_i32(b"4294967295"), None);
        assert_eq!(flag_arg(b"T"), None);
        assert_eq!(flag_arg(b"T5"), Some(&b"5"[..]));
    }

    fn parse_line(line: &'static [u8]) -> Result<Parsed, ProtocolError> {
        let line = Bytes::from_static(line);
        let mut tokens = Vec::new();
        let mut start = 0;
        for (i, &b) in line.iter().chain(b" ").enumerate() {
            if b == b' ' {
                if i > start {
                    tokens.push((start as u32, i as u32));
                }
                start = i + 1;
            }
        }
        parse(&line, &tokens, &Clock::starting_at(1_800_000_000))
    }

    #[test]
    fn the_flags_added_since_1_6_18() {
        let Ok(Parsed::Delete(m)) = parse_line(b"md k x E5 F3") else { panic!() };
        assert!(m.remove_value);
        assert_eq!((m.cas_in, m.client_flags), (Some(5), 3));
        let Ok(Parsed::Set(SetLine::Data { meta, len: 1 })) = parse_line(b"ms k 1 MEE") else { panic!() };
        assert_eq!(meta.store_mode, StoreMode::Add);
        let Ok(Parsed::Set(SetLine::Refuse { len: 1, error })) = parse_line(b"ms k 1 M") else { panic!() };
        assert_eq!(error, ProtocolError::Refused(Reply::MsMode));
        assert_eq!(parse_line(b"mg k E").unwrap_err(), ProtocolError::Refused(Reply::BadToken));
        assert_eq!(parse_line(b"md k Z").unwrap_err(), ProtocolError::Refused(Reply::InvalidFlag));
        assert_eq!(parse_line(b"ma k Z").unwrap_err(), ProtocolError::Refused(Reply::InvalidOrDuplicateFlag));
        assert_eq!(parse_line(b"mg k !").unwrap_err(), ProtocolError::BadFormat);
        assert_eq!(parse_line(b"mg").unwrap_err(), ProtocolError::BadFormat);
    }
}
