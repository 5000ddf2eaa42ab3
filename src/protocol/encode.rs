//! Every reply byte of the text and meta protocols: the fixed lines ([`Reply`], with
//! memcached's error strings), `VALUE` lines, numbers, `STAT` lines and the meta
//! protocol's status lines with their echoed flags. Each writer appends to the
//! connection's write buffer with `put_slice` and `itoa`, never `format!`, so replies cost
//! no allocation of their own. `exec` decides what to answer; this module decides how it
//! looks on the wire.

use std::ops::Deref;

use bytes::{BufMut, BytesMut};

use super::ProtocolError;
use super::meta::base64_encode;
use super::output::Output;
use crate::memcached::uri_encode;

/// Every reply that is one fixed line, named for what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    Ok,
    End,
    Reset,
    MetaNoop,
    MetaMiss,
    Error,
    OutOfMemoryStoring,
    OutOfMemory,
    OutOfMemoryNewItem,
    /// A read buffer could not grow (`-o read_buf_mem_limit`); the connection closes.
    OutOfMemoryReading,
    NonNumeric,
    MemlimitTooSmall,
    MemlimitAdjustFailed,
    ShutdownDisabled,
    ShutdownMode,
    AuthFailure,
    CachedumpNotAllowed,
    /// `stats hotkeys` under `-X`, worded as `stats cachedump`'s refusal.
    HotkeysNotAllowed,
    CrawlerStartFailed,
    CrawlerStopFailed,
    CrawlUnknownError,
    CrawlerDisabled,
    MetadumpNotAllowed,
    MetadumpPipelined,
    MgdumpNotAllowed,
    DetailNotAllowed,
    MgdumpPipelined,
    BadClass,
    NotStarted,
    DetailUsage,
    BadCommandLine,
    BadCommandLineFormat,
    IllegalSlabId,
    TlsNotEnabled,
    SameClass,
    BadClassPair,
    NoSpare,
    LruPctOver,
    LruFactorZero,
    CrawlerSleepTooLong,
    BadLineTermination,
    BadAuthToken,
    Unauthenticated,
    BadDataChunk,
    TooLarge,
    BadExptime,
    /// `-F`.
    FlushNotAllowed,
    /// `-W`.
    WatchNotAllowed,
    WatchPipelined,
    WatcherTooMany,
    BadDelta,
    DeleteUsage,
    DuplicateFlag,
    InvalidFlag,
    BadToken,
    KeyDecode,
    BadInitial,
    BadMetaDelta,
    OpaqueTooLong,
    InvalidOrDuplicateFlag,
    MgFlagsTooLong,
    MsMode,
    MaMode,
    TooManyConnections,
}

impl Reply {
    /// The line, `\r\n` included, byte for byte as memcached 1.6 sends it.
    pub fn line(self) -> &'static [u8] {
        match self {
            Self::Stored => b"STORED\r\n",
            Self::NotStored => b"NOT_STORED\r\n",
            Self::Exists => b"EXISTS\r\n",
            Self::NotFound => b"NOT_FOUND\r\n",
            Self::Deleted => b"DELETED\r\n",
            Self::Touched => b"TOUCHED\r\n",
            Self::Ok => b"OK\r\n",
            Self::End => b"END\r\n",
            Self::Reset => b"RESET\r\n",
            Self::MetaNoop => b"MN\r\n",
            Self::MetaMiss => b"EN\r\n",
            Self::Error => b"ERROR\r\n",
            Self::OutOfMemoryStoring => b"SERVER_ERROR out of memory storing object\r\n",
            Self::OutOfMemory => b"SERVER_ERROR out of memory\r\n",
            Self::OutOfMemoryNewItem => b"SERVER_ERROR Out of memory allocating new item\r\n",
            Self::OutOfMemoryReading => b"SERVER_ERROR out of memory reading request\r\n",
            Self::NonNumeric => b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            Self::MemlimitTooSmall => b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n",
            Self::MemlimitAdjustFailed => b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n",
            Self::ShutdownDisabled => b"SERVER_ERROR: shutdown not enabled\r\n",
            Self::ShutdownMode => b"CLIENT_ERROR invalid shutdown mode\r\n",
            Self::AuthFailure => b"CLIENT_ERROR authentication failure\r\n",
            Self::CachedumpNotAllowed => b"CLIENT_ERROR stats cachedump not allowed\r\n",
            Self::HotkeysNotAllowed => b"CLIENT_ERROR stats hotkeys not allowed\r\n",
            Self::CrawlerStartFailed => b"ERROR failed to start lru crawler thread\r\n",
            Self::CrawlerStopFailed => b"ERROR failed to stop lru crawler thread\r\n",
            Self::CrawlUnknownError => b"ERROR an unknown error happened\r\n",
            Self::CrawlerDisabled => b"CLIENT_ERROR lru crawler disabled\r\n",
            Self::MetadumpNotAllowed => b"ERROR metadump not allowed\r\n",
            Self::MetadumpPipelined => b"ERROR cannot pipeline other commands before metadump\r\n",
            Self::MgdumpNotAllowed => b"ERROR key dump not allowed\r\n",
            Self::DetailNotAllowed => b"CLIENT_ERROR stats detail not allowed\r\n",
            Self::MgdumpPipelined => b"ERROR cannot pipeline other commands before mgdump\r\n",
            Self::BadClass => b"BADCLASS invalid class id\r\n",
            Self::NotStarted => b"NOTSTARTED no items to crawl\r\n",
            Self::DetailUsage => b"CLIENT_ERROR usage: stats detail on|off|dump\r\n",
            Self::BadCommandLine => b"CLIENT_ERROR bad command line\r\n",
            Self::BadCommandLineFormat => b"CLIENT_ERROR bad command line format\r\n",
            Self::IllegalSlabId => b"CLIENT_ERROR Illegal slab id\r\n",
            Self::TlsNotEnabled => b"Error TLS not enabled\r\n",
            Self::SameClass => b"SAME src and dst class are identical\r\n",
            Self::BadClassPair => b"BADCLASS invalid src or dst class id\r\n",
            Self::NoSpare => b"NOSPARE source class has no spare pages\r\n",
            Self::LruPctOver => b"ERROR hot and warm pcts must not exceed 80\r\n",
            Self::LruFactorZero => b"ERROR hot/warm age factors must be greater than 0\r\n",
            Self::CrawlerSleepTooLong => b"CLIENT_ERROR sleep must be one second or less\r\n",
            Self::BadLineTermination => b"CLIENT_ERROR bad command line termination\r\n",
            Self::BadAuthToken => b"CLIENT_ERROR bad authentication token format\r\n",
            Self::Unauthenticated => b"CLIENT_ERROR unauthenticated\r\n",
            Self::BadDataChunk => b"CLIENT_ERROR bad data chunk\r\n",
            Self::TooLarge => b"SERVER_ERROR object too large for cache\r\n",
            Self::BadExptime => b"CLIENT_ERROR invalid exptime argument\r\n",
            Self::FlushNotAllowed => b"CLIENT_ERROR flush_all not allowed\r\n",
            Self::WatchNotAllowed => b"CLIENT_ERROR watch commands not allowed\r\n",
            Self::WatchPipelined => b"ERROR cannot pipeline other commands before watch\r\n",
            Self::WatcherTooMany => b"WATCHER_TOO_MANY log watcher limit reached\r\n",
            Self::BadDelta => b"CLIENT_ERROR invalid numeric delta argument\r\n",
            Self::DeleteUsage => b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
            Self::DuplicateFlag => b"CLIENT_ERROR duplicate flag\r\n",
            Self::InvalidFlag => b"CLIENT_ERROR invalid flag\r\n",
            Self::BadToken => b"CLIENT_ERROR bad token in command line format\r\n",
            Self::KeyDecode => b"CLIENT_ERROR error decoding key\r\n",
            Self::BadInitial => b"CLIENT_ERROR invalid numeric initial value\r\n",
            Self::BadMetaDelta => b"CLIENT_ERROR invalid numeric delta value\r\n",
            Self::OpaqueTooLong => b"CLIENT_ERROR opaque token too long\r\n",
            Self::InvalidOrDuplicateFlag => b"CLIENT_ERROR invalid or duplicate flag\r\n",
            Self::MgFlagsTooLong => b"CLIENT_ERROR options flags are too long\r\n",
            Self::MsMode => b"CLIENT_ERROR invalid mode for ms M token\r\n",
            Self::MaMode => b"CLIENT_ERROR invalid mode for ma M token\r\n",
            Self::TooManyConnections => b"ERROR Too many open connections\r\n",
        }
    }
}

/// Appends a fixed reply.
/// `refresh_certs` could not load the files: as in memcached, the reason is the reply.
pub fn put_refresh_failed(out: &mut BytesMut, why: &str) {
    out.put_slice(why.replace(['\r', '\n'], " ").as_bytes());
    out.put_slice(b"\r\n");
}

pub fn put_reply(out: &mut BytesMut, reply: Reply) {
    out.put_slice(reply.line());
}

/// Appends a fixed reply unless the command said `noreply`.
pub fn put_reply_unless(out: &mut BytesMut, noreply: bool, reply: Reply) {
    if !noreply {
        out.put_slice(reply.line());
    }
}

/// The reply memcached gives to a refused request, or `None` where it closes without a
/// word.
pub fn error_reply(error: ProtocolError) -> Option<Reply> {
    Some(match error {
        ProtocolError::UnknownCommand => Reply::Error,
        ProtocolError::BadFormat | ProtocolError::GetKeyTooLong => Reply::BadCommandLineFormat,
        ProtocolError::BadDataChunk => Reply::BadDataChunk,
        ProtocolError::TooLarge => Reply::TooLarge,
        ProtocolError::Refused(reply) => reply,
        ProtocolError::BadExptime => Reply::BadExptime,
        ProtocolError::BadDelta => Reply::BadDelta,
        ProtocolError::DeleteUsage => Reply::DeleteUsage,
        ProtocolError::LineTooLong | ProtocolError::Http => return None,
    })
}

/// `VERSION <version>\r\n`.
pub fn put_version(out: &mut BytesMut, version: &str) {
    out.put_slice(b"VERSION ");
    out.put_slice(version.as_bytes());
    out.put_slice(b"\r\n");
}

/// `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
pub fn put_value(out: &mut BytesMut, key: &[u8], flags: u32, value: &[u8], cas: Option<u64>) {
    out.reserve(key.len() + value.len() + 64);
    put_value_line(out, key, flags, value.len(), cas);
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// [`put_value`] with the data shared, not copied: written to the socket from the value's
/// own memory.
pub fn put_shared_value<V: Deref<Target = [u8]>>(
    out: &mut Output<V>,
    key: &[u8],
    flags: u32,
    value: V,
    cas: Option<u64>,
) {
    out.buf.reserve(key.len() + 64);
    put_value_line(&mut out.buf, key, flags, value.len(), cas);
    out.splice(value);
    out.buf.put_slice(b"\r\n");
}

/// The `VALUE` line, without the data.
fn put_value_line(out: &mut BytesMut, key: &[u8], flags: u32, len: usize, cas: Option<u64>) {
    let mut n = itoa::Buffer::new();
    out.put_slice(b"VALUE ");
    out.put_slice(key);
    out.put_u8(b' ');
    out.put_slice(n.format(flags).as_bytes());
    out.put_u8(b' ');
    out.put_slice(n.format(len).as_bytes());
    if let Some(c) = cas {
        out.put_u8(b' ');
        out.put_slice(n.format(c).as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// A decimal number on its own line (the `incr`/`decr` reply).
pub fn put_number(out: &mut BytesMut, v: u64) {
    out.put_slice(itoa::Buffer::new().format(v).as_bytes());
    out.put_slice(b"\r\n");
}

/// `STAT <name> <value>\r\n` for any displayable value.
pub fn put_stat(out: &mut BytesMut, name: &str, value: impl StatValue) {
    out.put_slice(b"STAT ");
    out.put_slice(name.as_bytes());
    out.put_u8(b' ');
    value.put(out);
    out.put_slice(b"\r\n");
}

/// `STAT <prefix><name> <value>\r\n`: a per-class line (`items:1:`, `1:`).
pub fn put_class_stat(out: &mut BytesMut, prefix: &str, name: &str, value: u64) {
    out.put_slice(b"STAT ");
    out.put_slice(prefix.as_bytes());
    out.put_slice(name.as_bytes());
    out.put_u8(b' ');
    out.put_slice(itoa::Buffer::new().format(value).as_bytes());
    out.put_slice(b"\r\n");
}

/// `STAT <fd>:<name> <value>\r\n`: a line of `stats conns`.
pub fn put_conn_stat(out: &mut BytesMut, fd: i32, name: &str, value: impl StatValue) {
    out.put_slice(b"STAT ");
    out.put_slice(itoa::Buffer::new().format(fd).as_bytes());
    out.put_u8(b':');
    out.put_slice(name.as_bytes());
    out.put_u8(b' ');
    value.put(out);
    out.put_slice(b"\r\n");
}

/// `PREFIX <prefix> get <n> hit <n> set <n> del <n>\r\n`: a line of `stats detail dump`.
pub fn put_prefix_stat(out: &mut BytesMut, prefix: &[u8], counts: [u64; 4]) {
    out.put_slice(b"PREFIX ");
    out.put_slice(prefix);
    put_prefix_counts(out, counts);
}

/// ` get <n> hit <n> set <n> del <n>\r\n`.
fn put_prefix_counts(out: &mut BytesMut, [gets, hits, sets, deletes]: [u64; 4]) {
    let mut n = itoa::Buffer::new();
    for (label, v) in [(" get ", gets), (" hit ", hits), (" set ", sets), (" del ", deletes)] {
        out.put_slice(label.as_bytes());
        out.put_slice(n.format(v).as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// `OTHER get <n> hit <n> set <n> del <n>\r\n`: the last line of `stats detail dump` when
/// there were more prefixes than `--prefix-limit`: what the others did, together. Not a
/// `PREFIX` line, so that it cannot be read as a prefix's.
pub fn put_other_prefix_stat(out: &mut BytesMut, counts: [u64; 4]) {
    out.put_slice(b"OTHER");
    put_prefix_counts(out, counts);
}

/// `STAT <key> <count>\r\n`: a line of `stats hotkeys`. A key with a byte a text line
/// cannot carry (space, control) is written in base64, as `mg`'s `k` writes binary keys.
pub fn put_hot_key(out: &mut BytesMut, key: &[u8], count: u64) {
    out.put_slice(b"STAT ");
    if key.iter().any(|&b| b <= b' ' || b == 0x7f) {
        put_base64(out, key);
    } else {
        out.put_slice(key);
    }
    out.put_u8(b' ');
    out.put_slice(itoa::Buffer::new().format(count).as_bytes());
    out.put_slice(b"\r\n");
}

/// A value a `STAT` line can carry.
pub trait StatValue {
    fn put(&self, out: &mut BytesMut);
}

macro_rules! int_stat {
    ($($t:ty),*) => {$(
        impl StatValue for $t {
            fn put(&self, out: &mut BytesMut) {
                out.put_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
int_stat!(u8, u16, u32, u64, usize, i32, i64);

impl StatValue for &str {
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(self.as_bytes());
    }
}

impl StatValue for String {
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(self.as_bytes());
    }
}

impl StatValue for bool {
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(if *self { b"yes" } else { b"no" });
    }
}

/// Seconds and microseconds as memcached prints `rusage_*`: `S.UUUUUU`.
pub struct Seconds {
    pub secs: u64,
    pub micros: u32,
}

impl StatValue for Seconds {
    fn put(&self, out: &mut BytesMut) {
        out.put_slice(itoa::Buffer::new().format(self.secs).as_bytes());
        out.put_u8(b'.');
        let mut digits = [b'0'; 6];
        let mut m = self.micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        out.put_slice(&digits);
    }
}

/// The status code that starts a meta reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCode {
    /// `HD`: done, no value.
    Done,
    /// `VA <len>`: a value of this many bytes follows the line.
    Value(usize),
    /// `EN`: a miss.
    Miss,
    /// `NS`: not stored.
    NotStored,
    /// `EX`: the CAS did not match.
    Exists,
    /// `NF`: not found.
    NotFound,
}

/// Starts a meta reply with its status code.
pub fn put_meta_code(out: &mut BytesMut, code: MetaCode) {
    out.put_slice(match code {
        MetaCode::Done => b"HD",
        MetaCode::Value(_) => b"VA ",
        MetaCode::Miss => b"EN",
        MetaCode::NotStored => b"NS",
        MetaCode::Exists => b"EX",
        MetaCode::NotFound => b"NF",
    });
    if let MetaCode::Value(len) = code {
        out.put_slice(itoa::Buffer::new().format(len).as_bytes());
    }
}

/// Appends a return flag with a number: ` <flag><n>`.
pub fn put_meta_flag(out: &mut BytesMut, flag: u8, n: impl itoa::Integer) {
    out.put_u8(b' ');
    out.put_u8(flag);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends a return flag without a value (` W`, ` X`, ` Z`).
pub fn put_meta_mark(out: &mut BytesMut, flag: u8) {
    out.put_u8(b' ');
    out.put_u8(flag);
}

/// Appends a flag token as the client sent it (`O<opaque>`).
pub fn put_meta_echo(out: &mut BytesMut, token: &[u8]) {
    out.put_u8(b' ');
    out.put_slice(token);
}

/// Appends the key as `k` returns it: ` k<key>`, or ` k<base64> b` for a binary key.
pub fn put_meta_key(out: &mut BytesMut, key: &[u8], binary: bool) {
    out.put_slice(b" k");
    if binary {
        put_base64(out, key);
        out.put_slice(b" b");
    } else {
        out.put_slice(key);
    }
}

/// A TTL as `t` reports it: seconds left, or -1 for none.
pub fn put_meta_ttl(out: &mut BytesMut, exptime: u32, now: u32) {
    if exptime == 0 {
        out.put_slice(b" t-1");
    } else {
        put_meta_flag(out, b't', exptime.wrapping_sub(now));
    }
}

/// Ends the meta reply line started at `start` (and the value after it), or takes the
/// line back out when `q` silences it.
pub fn end_meta(out: &mut BytesMut, start: usize, silenced: bool, value: Option<&[u8]>) {
    if silenced {
        out.truncate(start);
        return;
    }
    out.put_slice(b"\r\n");
    if let Some(v) = value {
        out.put_slice(v);
        out.put_slice(b"\r\n");
    }
}

fn put_base64(out: &mut BytesMut, data: &[u8]) {
    let mut enc = Vec::with_capacity(data.len().div_ceil(3) * 4);
    base64_encode(data, &mut enc);
    out.put_slice(&enc);
}

/// What `me` and `lru_crawler metadump` show of an item, in memcached's terms.
#[derive(Debug, Clone, Copy)]
pub struct DumpLine {
    /// `me`: seconds until expiry (-1: never); metadump: the Unix time of expiry (-1).
    pub exp: i64,
    /// `me`: seconds since last access; metadump: its Unix time.
    pub la: i64,
    pub cas: u64,
    pub fetched: bool,
    pub class: u32,
    pub size: usize,
}

impl DumpLine {
    /// ` exp=.. la=.. cas=.. fetch=.. cls=.. size=..`
    fn put(&self, out: &mut BytesMut) {
        let mut n = itoa::Buffer::new();
        out.put_slice(b" exp=");
        out.put_slice(n.format(self.exp).as_bytes());
        out.put_slice(b" la=");
        out.put_slice(n.format(self.la).as_bytes());
        out.put_slice(b" cas=");
        out.put_slice(n.format(self.cas).as_bytes());
        out.put_slice(if self.fetched { b" fetch=yes" } else { b" fetch=no" });
        out.put_slice(b" cls=");
        out.put_slice(n.format(self.class).as_bytes());
        out.put_slice(b" size=");
        out.put_slice(n.format(self.size).as_bytes());
    }
}

/// `me`'s reply: `ME <key> exp=..`, the key in base64 when it is binary.
pub fn put_debug_line(out: &mut BytesMut, key: &[u8], binary: bool, line: &DumpLine) {
    out.put_slice(b"ME ");
    if binary {
        put_base64(out, key);
    } else {
        out.put_slice(key);
    }
    line.put(out);
    out.put_slice(b"\r\n");
}

/// One metadump line: `key=<uri-encoded key> exp=..`, then (memcached 1.6.45) the
/// client flags and a space, ending in `\n` as memcached's do.
pub fn put_dump_line(out: &mut BytesMut, key: &[u8], line: &DumpLine, flags: u32) {
    out.put_slice(b"key=");
    uri_encode(key, out);
    line.put(out);
    out.put_slice(b" flags=");
    out.put_slice(itoa::Buffer::new().format(flags).as_bytes());
    out.put_slice(b" \n");
}

/// One `lru_crawler mgdump` line (1.6.45): `mg <key>`, or `mg <base64 key> b`.
pub fn put_mgdump_line(out: &mut BytesMut, key: &[u8], binary: bool) {
    out.put_slice(b"mg ");
    if binary {
        put_base64(out, key);
        out.put_slice(b" b\r\n");
    } else {
        out.put_slice(key);
        out.put_slice(b"\r\n");
    }
}

/// The start of a metadump or mgdump (1.6.45 sends `OK` first).
pub fn put_dump_start(out: &mut BytesMut) {
    put_reply(out, Reply::Ok);
}

/// The end of a metadump (`END`) or an mgdump (`EN`).
pub fn put_dump_end(out: &mut BytesMut, keys: bool) {
    put_reply(out, if keys { Reply::MetaMiss } else { Reply::End });
}

/// One `stats cachedump` line: `ITEM <key> [<value bytes> b; <expiry> s]`, the expiry a
/// Unix time (0: none).
pub fn put_cachedump_item(out: &mut BytesMut, key: &[u8], bytes: usize, expiry: u64) {
    out.put_slice(b"ITEM ");
    out.put_slice(key);
    out.put_slice(b" [");
    out.put_slice(itoa::Buffer::new().format(bytes).as_bytes());
    out.put_slice(b" b; ");
    out.put_slice(itoa::Buffer::new().format(expiry).as_bytes());
    out.put_slice(b" s]\r\n");
}

/// The length of the line [`put_cachedump_item`] writes, to know before writing it
/// whether it fits in memcached's reply (see [`CACHEDUMP_ROOM`]).
pub fn cachedump_item_len(key: &[u8], bytes: usize, expiry: u64) -> usize {
    let digits = |n: u64| itoa::Buffer::new().format(n).len();
    "ITEM  [ b;  s]\r\n".len() + key.len() + digits(bytes as u64) + digits(expiry)
}

/// Bytes of `stats cachedump` lines memcached sends at most: its reply buffer is 2 MB,
/// and a line goes in only if `END\r\n` and a NUL still fit after it.
pub const CACHEDUMP_ROOM: usize = 2 * 1024 * 1024 - 6;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cachedump_lines() {
        let mut out = BytesMut::new();
        put_cachedump_item(&mut out, b"k", 12, 0);
        put_cachedump_item(&mut out, b"key:2", 0, 2_000_000_000);
        assert_eq!(&out[..], b"ITEM k [12 b; 0 s]\r\nITEM key:2 [0 b; 2000000000 s]\r\n");
        assert_eq!(cachedump_item_len(b"k", 12, 0) + cachedump_item_len(b"key:2", 0, 2_000_000_000), out.len());
    }

    #[test]
    fn value_lines() {
        let mut out = BytesMut::new();
        put_value(&mut out, b"k", 7, b"hi", None);
        put_value(&mut out, b"k", 0, b"", Some(42));
        put_number(&mut out, u64::MAX);
        assert_eq!(&out[..], b"VALUE k 7 2\r\nhi\r\nVALUE k 0 0 42\r\n\r\n18446744073709551615\r\n");
    }

    #[test]
    fn stat_lines() {
        let mut out = BytesMut::new();
        put_stat(&mut out, "rusage_user", Seconds { secs: 3, micros: 4207 });
        put_stat(&mut out, "cas_enabled", true);
        assert_eq!(&out[..], b"STAT rusage_user 3.004207\r\nSTAT cas_enabled yes\r\n");
    }
}
