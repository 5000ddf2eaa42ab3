//! `--warm-from HOST:PORT`: filling a store that is not serving yet from a running
//! memcached (or Larder) over its text protocol. One connection lists the keys with
//! `lru_crawler metadump all`; a second fetches them in pipelined batches with
//! `mg <key> u v f t c` (`u`: the source's LRU order is left alone), and each answer is put back with its value, client flags, CAS and
//! remaining TTL ([`Store::restore`], which never evicts: what does not fit under `-m` is
//! counted and skipped). Memory is bounded by the store's limit and one batch; time by a
//! deadline and socket timeouts. Progress is logged every few seconds.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use tracing::info;

use crate::clock::RelTime;
use crate::store::{Kept, Lookup, Restored, Store};

/// Keys fetched per pipelined batch.
const BATCH: usize = 256;
/// How long a read from the source may take before the warm-up gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Between progress lines in the log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What a warm-up brought over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Warmed {
    /// Keys the source listed.
    pub listed: u64,
    pub items: u64,
    /// Key and value bytes put back.
    pub bytes: u64,
    /// Gone from the source between listing and fetching (or expired meanwhile).
    pub missed: u64,
    pub too_large: u64,
    pub no_room: u64,
}

/// Why a warm-up failed.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, io::Error),
    #[error("{0}: {1}")]
    Io(String, io::Error),
    #[error("{0} refused to list its keys: {1:?}")]
    Refused(String, String),
    #[error("{0} sent something unexpected: {1:?}")]
    Protocol(String, String),
    #[error("{0}: gave up at --warm-from-timeout")]
    Deadline(String),
}

/// Most walks of the source's keys: memcached's metadump can miss a few items that its
/// LRU maintainer moves while the crawler passes (4 of 200,000 in one run), so the walk is
/// repeated for the keys not copied yet until one finds none.
const PASSES: usize = 3;

/// Copies every item `source` holds into `store`, within `deadline`. On an error part
/// way, what was copied stays in the store.
pub fn warm_from(store: &Store, source: &str, deadline: Duration) -> Result<Warmed, WarmError> {
    let start = Instant::now();
    let mut warmed = Warmed::default();
    for pass in 0..PASSES {
        let before = warmed.items;
        one_pass(store, source, start + deadline, pass > 0, &mut warmed)?;
        if warmed.items == before {
            break;
        }
    }
    Ok(warmed)
}

/// One walk of the source's keys; `again`: only keys `store` does not hold are fetched.
fn one_pass(store: &Store, source: &str, until: Instant, again: bool, warmed: &mut Warmed) -> Result<(), WarmError> {
    let io_err = |e: io::Error| WarmError::Io(source.to_string(), e);
    let connect = || connect(source).map_err(|e| WarmError::Connect(source.to_string(), e));
    let mut lister = connect()?;
    let fetcher = connect()?;
    lister.write_all(b"lru_crawler metadump all\r\n").map_err(io_err)?;
    let mut keys = BufReader::with_capacity(1 << 16, lister);
    let mut fetch = Fetcher { w: fetcher.try_clone().map_err(io_err)?, r: BufReader::with_capacity(1 << 20, fetcher) };
    let mut batch: Vec<Listed> = Vec::with_capacity(BATCH);
    let mut line = Vec::new();
    let mut progress = Instant::now();
    loop {
        line.clear();
        if keys.read_until(b'\n', &mut line).map_err(io_err)? == 0 {
            return Err(WarmError::Protocol(source.to_string(), "the key list ended early".into()));
        }
        let text = trim(&line);
        if text.starts_with(b"BUSY") && batch.is_empty() && Instant::now() < until {
            // The source's crawler is still finishing the last walk.
            std::thread::sleep(Duration::from_millis(50));
            keys.get_mut().write_all(b"lru_crawler metadump all\r\n").map_err(io_err)?;
            continue;
        }
        if text == b"OK" {
            // memcached 1.6.45 (and Larder) start a dump with `OK`; 1.6.18 does not.
            continue;
        }
        let end = text == b"END";
        if !end {
            let Some(listed) = parse_dump_line(text) else {
                let what = String::from_utf8_lossy(text).into_owned();
                return Err(if !text.starts_with(b"key=") {
                    WarmError::Refused(source.to_string(), what)
                } else {
                    WarmError::Protocol(source.to_string(), what)
                });
            };
            if !again {
                warmed.listed += 1;
                batch.push(listed);
            } else if store.lookup(&listed.key, &Lookup::PEEK, |_| ()).is_none() {
                batch.push(listed);
            }
        }
        if batch.len() == BATCH || (end && !batch.is_empty()) {
            fetch.batch(store, &batch, warmed).map_err(|e| match e {
                FetchError::Io(e) => io_err(e),
                FetchError::Protocol(what) => WarmError::Protocol(source.to_string(), what),
            })?;
            batch.clear();
            if Instant::now() > until {
                return Err(WarmError::Deadline(source.to_string()));
            }
            if progress.elapsed() > PROGRESS_EVERY {
                progress = Instant::now();
                info!(source, listed = warmed.listed, items = warmed.items, bytes = warmed.bytes, "warming");
            }
        }
        if end {
            return Ok(());
        }
    }
}

/// A connection to `source` (HOST:PORT, each of its addresses tried for 5 s), with the
/// warm-up's read and write timeouts; `larder` also calls it at start to refuse an
/// unreachable source.
pub fn connect(source: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in source.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
            Ok(s) => {
                s.set_read_timeout(Some(READ_TIMEOUT))?;
                s.set_write_timeout(Some(READ_TIMEOUT))?;
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A key from the source's metadump, with what the listing says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    key: Vec<u8>,
    /// Last access, Unix seconds.
    la: i64,
    fetched: bool,
}

/// `key=<uri-encoded> exp=.. la=.. cas=.. fetch=yes|no ...`.
fn parse_dump_line(line: &[u8]) -> Option<Listed> {
    let mut listed = Listed { key: Vec::new(), la: 0, fetched: false };
    for field in line.split(|&b| b == b' ') {
        if let Some(k) = field.strip_prefix(b"key=") {
            listed.key = uri_decode(k)?;
        } else if let Some(v) = field.strip_prefix(b"la=") {
            listed.la = std::str::from_utf8(v).ok()?.parse().ok()?;
        } else if let Some(v) = field.strip_prefix(b"fetch=") {
            listed.fetched = v == b"yes";
        }
    }
    (!listed.key.is_empty() && listed.key.len() <= 250).then_some(listed)
}

fn uri_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

fn trim(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The fetching connection.
struct Fetcher {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

enum FetchError {
    Io(io::Error),
    Protocol(String),
}

impl From<io::Error> for FetchError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl Fetcher {
    /// Fetches `batch` with one write of pipelined `mg`s and puts each item back.
    fn batch(&mut self, store: &Store, batch: &[Listed], warmed: &mut Warmed) -> Result<(), FetchError> {
        let mut req = Vec::with_capacity(batch.len() * 64);
        for l in batch {
            req.extend_from_slice(b"mg ");
            if is_text_key(&l.key) {
                req.extend_from_slice(&l.key);
                req.extend_from_slice(b" u v f t c\r\n");
            } else {
                crate::protocol::meta::base64_encode(&l.key, &mut req);
                req.extend_from_slice(b" b u v f t c\r\n");
            }
        }
        self.w.write_all(&req)?;
        let clock = store.clock();
        let mut head = Vec::new();
        let mut value = Vec::new();
        for l in batch {
            head.clear();
            self.r.read_until(b'\n', &mut head)?;
            let line = trim(&head);
            if line == b"EN" {
                warmed.missed += 1;
                continue;
            }
            let bad = || FetchError::Protocol(String::from_utf8_lossy(line).into_owned());
            let Some(rest) = line.strip_prefix(b"VA ") else { return Err(bad()) };
            let mut fields = rest.split(|&b| b == b' ');
            let len: usize = fields.next().and_then(|f| std::str::from_utf8(f).ok()?.parse().ok()).ok_or_else(bad)?;
            let (mut flags, mut ttl, mut cas) = (0u32, -1i64, 0u64);
            for f in fields {
                let (&tag, v) = f.split_first().ok_or_else(bad)?;
                let v = std::str::from_utf8(v).map_err(|_| bad())?;
                match tag {
                    b'f' => flags = v.parse().map_err(|_| bad())?,
                    b't' => ttl = v.parse().map_err(|_| bad())?,
                    b'c' => cas = v.parse().map_err(|_| bad())?,
                    _ => {}
                }
            }
            if len > 1 << 30 {
                return Err(bad());
            }
            value.clear();
            value.resize(len + 2, 0);
            self.r.read_exact(&mut value)?;
            if !value.ends_with(b"\r\n") {
                return Err(bad());
            }
            value.truncate(len);
            let now = clock.now();
            let exptime: RelTime = match ttl {
                -1 => 0,
                t if t <= 0 => {
                    warmed.missed += 1;
                    continue;
                }
                t => now.saturating_add(u32::try_from(t).unwrap_or(u32::MAX)),
            };
            let time = (l.la - clock.epoch()).clamp(1, i64::from(now)) as RelTime;
            let kept = Kept {
                key: &l.key,
                value: &value,
                flags,
                cas,
                exptime,
                time,
                fetched: l.fetched,
                stale: false,
                token_sent: false,
                key_binary: !is_text_key(&l.key),
            };
            match store.restore(&kept) {
                Restored::Stored => {
                    warmed.items += 1;
                    warmed.bytes += (l.key.len() + len) as u64;
                }
                Restored::TooLarge => warmed.too_large += 1,
                Restored::Full => warmed.no_room += 1,
                Restored::Older | Restored::Replaced => {}
            }
        }
        Ok(())
    }
}

/// A key the text protocol can carry as it is.
fn is_text_key(key: &[u8]) -> bool {
    key.iter().all(|&b| b > b' ' && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_lines_parse_as_memcached_writes_them() {
        let l = parse_dump_line(b"key=a%20b%25 exp=-1 la=1700000000 cas=7 fetch=yes cls=1 size=70").unwrap();
        assert_eq!(l, Listed { key: b"a b%".to_vec(), la: 1_700_000_000, fetched: true });
        assert_eq!(parse_dump_line(b"key=%zz exp=-1"), None);
        assert_eq!(parse_dump_line(b"key=%4 exp=-1"), None);
        assert_eq!(parse_dump_line(b"exp=-1 la=0"), None, "no key");
        assert_eq!(parse_dump_line(b"BUSY currently processing crawler request"), None);
        assert!(!is_text_key(b"a b") && !is_text_key(b"\x00") && is_text_key(b"k:1"));
    }
}
