//! memcached's text and meta protocols: what a client can ask ([`Request`]), the decoders
//! that turn bytes into requests (`text`, with `meta` and `admin` for their lines), the
//! refusals ([`ProtocolError`]), and the reply side (`encode` writes every reply byte into
//! an `output`). No I/O and no store types live here: `exec` runs the requests.

mod admin;
pub mod binary;
pub mod encode;
pub mod meta;
pub mod output;
pub mod text;

use bytes::Bytes;

use crate::clock::RelTime;
use crate::memcached::StoreMode;
use encode::Reply;

pub use meta::Meta;
pub use text::{Decoder, Framing};

/// `stats cachedump`'s arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheDumpArgs {
    /// A slab class id below memcached's 64.
    pub class: u32,
    /// The most items to list; 0 for no limit.
    pub limit: u32,
}

/// One client command, decoded. Keys and values are slices of the frame they came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get`, `gets`, `gat`, `gats` (and the legacy `bget`).
    Get {
        keys: KeyList,
        with_cas: bool,
        touch: Option<i32>,
    },
    /// `set add replace append prepend cas` with their data block. `deadline` is the
    /// exptime already resolved against the clock when the command line arrived.
    Store {
        mode: StoreMode,
        key: Bytes,
        flags: u32,
        deadline: RelTime,
        value: Bytes,
        noreply: bool,
    },
    /// A storage command whose data block is larger than the item size limit: memcached
    /// drops the old value of a `set` at once. The decoder then swallows the data and
    /// answers with [`ProtocolError::TooLarge`].
    TooLarge {
        key: Bytes,
        mode: StoreMode,
    },
    Delete {
        key: Bytes,
        noreply: bool,
    },
    Arith {
        key: Bytes,
        delta: u64,
        incr: bool,
        noreply: bool,
    },
    Touch {
        key: Bytes,
        exptime: i32,
        noreply: bool,
    },
    /// `flush_all [delay]`; `delay` is 0 when absent, None when it is not a number (the
    /// error comes after `-F`'s refusal, as in memcached).
    FlushAll {
        delay: Option<i32>,
        noreply: bool,
    },
    /// `watch [what...]`: the event kinds asked for (`crate::watch::kind`), or `None`
    /// if a word is not one memcached knows (`noreply` never is: it silences the reply).
    Watch {
        kinds: Option<u16>,
        noreply: bool,
    },
    Stats {
        group: StatsGroup,
    },
    Version,
    Verbosity {
        noreply: bool,
    },
    /// `cache_memlimit <MiB>`.
    CacheMemlimit {
        mib: u32,
        noreply: bool,
    },
    /// `shutdown [graceful]`: refused unless enabled with `-A`; `mode_ok` is false for
    /// an argument other than `graceful`.
    Shutdown {
        mode_ok: bool,
    },
    /// `mn`: the meta no-op, which memcached answers with `MN`.
    MetaNoop,
    MetaGet(Box<Meta>),
    MetaDelete(Box<Meta>),
    MetaArith(Box<Meta>),
    /// `ms` with its data block.
    MetaSet {
        meta: Box<Meta>,
        value: Bytes,
    },
    /// `me <key> [b]`.
    MetaDebug {
        key: Bytes,
        key_binary: bool,
    },
    /// An admin command about machinery Larder does not have (slab classes, LRU tuning,
    /// the LRU crawler's knobs): accepted for scripts' sake and answered as
    /// memcached answers it, with no effect.
    NoOp {
        reply: Reply,
        noreply: bool,
    },
    /// `stats cachedump <class> <limit>`: the slab class to list and the most items to
    /// list (0: as many as fit in memcached's 2 MB reply), or memcached's refusal of the
    /// arguments; `-X` refuses the command before either.
    CacheDump {
        args: Result<CacheDumpArgs, Reply>,
    },
    /// A login under `-Y`: the data block of the client's `set`.
    Auth {
        user: Bytes,
        password: Bytes,
    },
    /// `lru_crawler enable|disable`: Larder reclaims expired items on its own, but the
    /// switch keeps memcached's state and replies.
    Crawler {
        enable: bool,
    },
    /// `lru_crawler crawl <classes>` (answered as memcached answers it; expired items are
    /// reclaimed anyway), or `lru_crawler metadump|mgdump <classes>`: a line for every
    /// live item, the connection writing it out as it goes.
    Crawl {
        classes: CrawlClasses,
        dump: Option<DumpFormat>,
    },
    /// `refresh_certs`: read the TLS certificate and key files again (`-Z`). `noreply`
    /// silences its `OK` only, as in memcached.
    RefreshCerts {
        noreply: bool,
    },
    Quit,
}

/// What an `lru_crawler` dump lists for each item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// `metadump`: `key=.. exp=.. la=.. cas=.. fetch=.. cls=.. size=.. flags=..`.
    Meta,
    /// `mgdump` (memcached 1.6.45): `mg <key>`, or `mg <base64 key> b`, ready to send.
    Keys,
}

/// The slab classes an `lru_crawler crawl|metadump|mgdump` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlClasses {
    All,
    /// `hash`: every item, by a walk of the hash table (`metadump` only).
    Hash,
    /// A bit per class id named; none when the list named none.
    List(u64),
    /// An id that is not a class memcached could have.
    Bad,
}

/// Which `stats` report was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsGroup {
    General,
    Settings,
    Items,
    Slabs,
    Sizes,
    Conns,
    Reset,
    /// `stats detail` with a missing or bad argument.
    DetailUsage,
    /// `stats detail on|off|dump`.
    Detail(DetailCmd),
    /// `stats hotkeys` (Larder's): the most requested keys.
    HotKeys,
}

/// `stats detail` subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetailCmd {
    On,
    Off,
    Dump,
}

impl Request {
    /// The command word, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Get { with_cas: false, touch: None, .. } => "get",
            Self::Get { with_cas: true, touch: None, .. } => "gets",
            Self::Get { with_cas: false, touch: Some(_), .. } => "gat",
            Self::Get { with_cas: true, touch: Some(_), .. } => "gats",
            Self::Store { mode, .. } | Self::TooLarge { mode, .. } => mode.name(),
            Self::Delete { .. } => "delete",
            Self::Arith { incr: true, .. } => "incr",
            Self::Arith { incr: false, .. } => "decr",
            Self::Touch { .. } => "touch",
            Self::FlushAll { .. } => "flush_all",
            Self::Watch { .. } => "watch",
            Self::Stats { .. } => "stats",
            Self::Version => "version",
            Self::Verbosity { .. } => "verbosity",
            Self::CacheMemlimit { .. } => "cache_memlimit",
            Self::Shutdown { .. } => "shutdown",
            Self::MetaNoop => "mn",
            Self::MetaGet(_) => "mg",
            Self::MetaDelete(_) => "md",
            Self::MetaArith(_) => "ma",
            Self::MetaSet { .. } => "ms",
            Self::MetaDebug { .. } => "me",
            Self::NoOp { .. } | Self::Crawler { .. } | Self::Crawl { .. } | Self::CacheDump { .. } => "admin",
            Self::Auth { .. } => "auth",
            Self::RefreshCerts { .. } => "refresh_certs",
            Self::Quit => "quit",
        }
    }
}

/// The keys of a retrieval command: the space-separated tail of its command line, kept as
/// one slice so a multi-get allocates nothing. Every key was checked against
/// [`crate::memcached::KEY_MAX_LENGTH`] by the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyList(Bytes);

impl KeyList {
    pub(crate) fn new(tail: Bytes) -> Self {
        Self(tail)
    }

    /// The keys in request order, duplicates included.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b' ').filter(|k| !k.is_empty())
    }
}

/// Calls `f` with the keys the first `max_lines` commands of a pipelined batch will look
/// up (`get`, `gets`, `mg`), stepping over storage commands' data blocks by their declared
/// length, when more than one command is there: a hint for prefetching. What it cannot
/// make sense of ends the walk; nothing it does changes what the decoder sees. Returns
/// how many commands it walked (0 for a batch of one).
pub fn pipelined_get_keys(buf: &[u8], max_lines: usize, mut f: impl FnMut(&[u8])) -> usize {
    let mut rest = buf;
    for n in 0..max_lines {
        let Some(end) = memchr::memchr(b'\n', rest) else { return n };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if n == 0 && rest.is_empty() {
            return 0; // one command: nothing to overlap
        }
        let mut tokens = line.split(|&b| b == b' ' || b == b'\r').filter(|t| !t.is_empty());
        let data_len = match tokens.next() {
            Some(b"get" | b"gets") => {
                tokens.for_each(&mut f);
                continue;
            }
            Some(b"mg") => {
                tokens.next().into_iter().for_each(&mut f);
                continue;
            }
            Some(b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas") => tokens.nth(3),
            Some(b"ms") => tokens.nth(1),
            _ => continue,
        };
        let Some(len) = data_len.and_then(|t| std::str::from_utf8(t).ok()?.parse::<usize>().ok()) else { return n };
        let Some(after) = rest.get(len.saturating_add(2)..) else { return n };
        rest = after;
    }
    max_lines
}

/// A request memcached refuses, and whether the connection ends ([`encode::error_reply`]
/// gives its reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown command or wrong number of arguments")]
    UnknownCommand,
    #[error("bad command line format")]
    BadFormat,
    /// A key over 250 bytes in a retrieval: memcached also discards the replies it has
    /// not written yet.
    #[error("key too long in a retrieval")]
    GetKeyTooLong,
    #[error("bad data chunk")]
    BadDataChunk,
    #[error("object too large for cache")]
    TooLarge,
    /// A refusal with a reply of its own (the meta commands', a `-Y` login's).
    #[error("{}", String::from_utf8_lossy(.0.line()).trim_end())]
    Refused(Reply),
    #[error("invalid exptime argument")]
    BadExptime,
    #[error("invalid numeric delta argument")]
    BadDelta,
    #[error("bad delete arguments")]
    DeleteUsage,
    #[error("command line too long")]
    LineTooLong,
    #[error("HTTP request on the memcached port")]
    Http,
}

impl ProtocolError {
    /// Whether memcached discards its not-yet-written replies before answering this.
    pub fn culls_pending(self) -> bool {
        self == Self::GetKeyTooLong
    }

    /// Whether memcached closes the connection after this error.
    pub fn is_fatal(self) -> bool {
        matches!(self, Self::LineTooLong | Self::Http)
    }
}

/// A refused request, with whether its `noreply` silences the error (memcached 1.6 drops
/// error replies too once it has seen `noreply` on a classic command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub error: ProtocolError,
    pub noreply: bool,
}

impl From<ProtocolError> for Rejection {
    fn from(error: ProtocolError) -> Self {
        Self { error, noreply: false }
    }
}

#[cfg(test)]
mod tests {
    use super::pipelined_get_keys;

    fn keys(buf: &[u8], max: usize) -> Vec<String> {
        let mut v = Vec::new();
        pipelined_get_keys(buf, max, |k| v.push(String::from_utf8_lossy(k).into_owned()));
        v
    }

    #[test]
    fn prefetch_hint_walks_a_pipeline_over_data_blocks() {
        let batch = b"get a b\r\nset s 0 0 8\r\nget fake\r\ngets c\r\ndelete d\r\nms m 3 T0\r\nget\r\n\
                      mg e v\r\ncas x 0 0 1 7\r\nz\r\nget f\r\n";
        assert_eq!(keys(batch, 32), ["a", "b", "c", "e", "f"], "a data block that looks like a get is stepped over");
        assert_eq!(keys(batch, 3), ["a", "b", "c"]);
        assert!(keys(b"get a b c\r\n", 32).is_empty(), "one command: nothing to overlap");
        assert!(keys(b"get a\r\nget b", 32) == ["a"], "an unfinished line ends the walk");
        assert_eq!(
            keys(b"get a\r\nset s 0 0 100\r\nshort\r\nget b\r\n", 32),
            ["a"],
            "so does a data block not all here"
        );
        assert_eq!(keys(b"get a\r\nset s 0 0 x\r\nget b\r\n", 32), ["a"], "and a length that is not a number");
    }
}
