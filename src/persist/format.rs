//! The state file's bytes: what [`Writer`] writes and [`Reader`] accepts, nothing else.
//!
//! ```text
//! file    = magic "\x89LARDER\n", format (u32), frame*, end frame, nothing after
//! frame   = kind (u32: ITEMS or END), length (u32), CRC-32 of kind, length and payload
//!           (u32), payload (length bytes)
//! ITEMS   = record*, about 1 MiB of them (one larger item makes a larger frame)
//! record  = key length (u8), state (u8: fetched, stale, token sent, base64 key),
//!           client flags (u32), CAS (u64), deadline (i64 Unix seconds, 0 = never),
//!           last use (i64 Unix seconds), value length (u32), key, value
//! END     = saved at (i64 Unix seconds), items (u64), key and value bytes (u64), memory
//!           the items were charged (u64), highest CAS given out (u64)
//! ```
//!
//! Integers are little-endian. Every frame is checked before anything in it is used, a
//! frame's length is checked against what is left of the file before it is read (a
//! hostile length cannot make the reader allocate more than the file holds), and a file
//! that ends anywhere but right after its END frame is truncated. The format number
//! changes whenever these bytes do: a reader never guesses at another format.

use std::io::{self, Read, Write};

/// The first bytes of every state file: non-ASCII first (a text file is never one), a
/// newline last (a file mangled by newline translation is caught here).
pub const MAGIC: [u8; 8] = *b"\x89LARDER\n";

/// The format this build writes and reads.
pub const FORMAT: u32 = 1;

const ITEMS: u32 = 1;
const END: u32 = 2;

/// Bytes before a frame's payload: kind, length, CRC.
const FRAME_HEAD: usize = 12;
/// Bytes of a record before its key.
pub const RECORD_HEAD: usize = 1 + 1 + 4 + 8 + 8 + 8 + 4;
const END_LEN: usize = 8 * 5;
/// Bytes of the END frame, which ends the file.
pub const END_FRAME: u64 = (FRAME_HEAD + END_LEN) as u64;
/// Payload an ITEMS frame is closed at.
const FRAME_TARGET: usize = 1 << 20;

/// State bits of a record.
pub mod state {
    pub const FETCHED: u8 = 1;
    pub const STALE: u8 = 2;
    pub const TOKEN_SENT: u8 = 4;
    pub const KEY_BINARY: u8 = 8;
}

/// One item as the file keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    pub cas: u64,
    /// Unix seconds; 0: never.
    pub deadline: i64,
    /// Unix seconds.
    pub last_use: i64,
    pub state: u8,
}

/// The END frame: totals, to check the file against and to plan a load by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub saved_at: i64,
    pub items: u64,
    /// Key and value bytes of every record.
    pub bytes: u64,
    /// What the items were charged against the memory limit of the server that saved them.
    pub charge: u64,
    pub max_cas: u64,
}

/// Why a file is not loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a Larder state file")]
    Foreign,
    #[error("state file format {0}, and this Larder reads format {FORMAT} only")]
    OtherFormat(u32),
    #[error("truncated (it ends before its end marker)")]
    Truncated,
    #[error("corrupt: {0}")]
    Corrupt(&'static str),
}

/// Reads a state file front to back: [`Reader::frame`] until it returns `None`.
pub struct Reader<R> {
    inner: R,
    /// Bytes of the file not read yet.
    left: u64,
    buf: Vec<u8>,
    items: u64,
    done: bool,
}

impl<R: Read> Reader<R> {
    /// Checks the magic and format of a file of `len` bytes.
    pub fn new(mut inner: R, len: u64) -> Result<Self, ReadError> {
        let mut head = [0; MAGIC.len() + 4];
        if len < head.len() as u64 {
            let mut start = vec![0; len as usize];
            inner.read_exact(&mut start)?;
            return Err(if MAGIC.starts_with(&start) { FormatError::Truncated } else { FormatError::Foreign }.into());
        }
        inner.read_exact(&mut head)?;
        if head[..MAGIC.len()] != MAGIC {
            return Err(FormatError::Foreign.into());
        }
        let format = u32::from_le_bytes(head[MAGIC.len()..].try_into().expect("4 bytes"));
        if format != FORMAT {
            return Err(FormatError::OtherFormat(format).into());
        }
        Ok(Self { inner, left: len - head.len() as u64, buf: Vec::new(), items: 0, done: false })
    }

    /// The next frame of records, checked; `Ok(None)` after the END frame, whose totals
    /// [`Reader::totals`] then gives.
    pub fn frame(&mut self) -> Result<Option<Records<'_>>, ReadError> {
        if self.done {
            return Ok(None);
        }
        if self.left < FRAME_HEAD as u64 {
            return Err(FormatError::Truncated.into());
        }
        let mut head = [0; FRAME_HEAD];
        self.inner.read_exact(&mut head)?;
        self.left -= FRAME_HEAD as u64;
        let word = |i: usize| u32::from_le_bytes(head[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        let (kind, len, crc) = (word(0), word(1), word(2));
        if u64::from(len) > self.left {
            return Err(FormatError::Truncated.into());
        }
        self.buf.clear();
        self.buf.resize(len as usize, 0);
        self.inner.read_exact(&mut self.buf)?;
        self.left -= u64::from(len);
        if frame_crc(&head[..8], &self.buf) != crc {
            return Err(FormatError::Corrupt("a checksum does not match").into());
        }
        match kind {
            ITEMS => Ok(Some(Records { rest: &self.buf, count: &mut self.items })),
            END if len as usize == END_LEN => {
                if self.left != 0 {
                    return Err(FormatError::Corrupt("bytes after the end marker").into());
                }
                self.done = true;
                if self.totals().items != self.items {
                    self.done = false;
                    return Err(FormatError::Corrupt("the item count does not match").into());
                }
                Ok(None)
            }
            _ => Err(FormatError::Corrupt("an unknown frame").into()),
        }
    }

    /// The END frame's totals (zeros until it has been read).
    pub fn totals(&self) -> Totals {
        if self.done { totals(&self.buf) } else { Totals::default() }
    }
}

/// A file's totals before reading it, from its last [`END_FRAME`] bytes (its END frame).
pub fn read_totals(tail: &[u8]) -> Result<Totals, FormatError> {
    if tail.len() != END_FRAME as usize {
        return Err(FormatError::Truncated);
    }
    let word = |i: usize| u32::from_le_bytes(tail[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    if word(0) != END || word(1) as usize != END_LEN {
        return Err(FormatError::Truncated);
    }
    if frame_crc(&tail[..8], &tail[FRAME_HEAD..]) != word(2) {
        return Err(FormatError::Truncated);
    }
    Ok(totals(&tail[FRAME_HEAD..]))
}

/// A frame's checksum: CRC-32 of its kind and length (`head`) and its payload.
fn frame_crc(head: &[u8], payload: &[u8]) -> u32 {
    let mut sum = crc32fast::Hasher::new();
    sum.update(head);
    sum.update(payload);
    sum.finalize()
}

/// An END frame's payload.
fn totals(end: &[u8]) -> Totals {
    let w = |i: usize| u64::from_le_bytes(end[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    Totals { saved_at: w(0) as i64, items: w(1), bytes: w(2), charge: w(3), max_cas: w(4) }
}

/// The records of one checked frame.
pub struct Records<'a> {
    rest: &'a [u8],
    count: &'a mut u64,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.rest;
        if r.len() < RECORD_HEAD {
            self.rest = &[];
            return Some(Err(FormatError::Corrupt("a record is cut short")));
        }
        let u32_at = |i: usize| u32::from_le_bytes(r[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().expect("8 bytes"));
        let key_len = usize::from(r[0]);
        let value_len = u32_at(30) as usize;
        let end = RECORD_HEAD + key_len + value_len;
        if key_len == 0 || r.len() < end {
            self.rest = &[];
            return Some(Err(FormatError::Corrupt("a record is cut short")));
        }
        self.rest = &r[end..];
        *self.count += 1;
        Some(Ok(Record {
            state: r[1],
            flags: u32_at(2),
            cas: u64_at(6),
            deadline: u64_at(14) as i64,
            last_use: u64_at(22) as i64,
            key: &r[RECORD_HEAD..RECORD_HEAD + key_len],
            value: &r[RECORD_HEAD + key_len..end],
        }))
    }
}

/// A read that failed: the file's bytes, or the file system.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Format(#[from] FormatError),
    #[error("{0}")]
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        // The length was checked first, so running out of bytes means the file shrank.
        if e.kind() == io::ErrorKind::UnexpectedEof { Self::Format(FormatError::Truncated) } else { Self::Io(e) }
    }
}

/// Writes a state file: [`Writer::add`] each item, then [`Writer::finish`].
pub struct Writer<W: Write> {
    out: W,
    frame: Vec<u8>,
    totals: Totals,
}

impl<W: Write> Writer<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&MAGIC)?;
        out.write_all(&FORMAT.to_le_bytes())?;
        let mut frame = Vec::with_capacity(FRAME_HEAD + FRAME_TARGET + 4096);
        frame.resize(FRAME_HEAD, 0);
        Ok(Self { out, frame, totals: Totals::default() })
    }

    /// Adds an item charged `charge` bytes to the frame being filled (no I/O, so it can be
    /// called under a shard's lock).
    pub fn add(&mut self, r: &Record<'_>, charge: usize) {
        debug_assert!(!r.key.is_empty() && r.key.len() <= 255);
        let f = &mut self.frame;
        f.push(r.key.len() as u8);
        f.push(r.state);
        f.extend_from_slice(&r.flags.to_le_bytes());
        f.extend_from_slice(&r.cas.to_le_bytes());
        f.extend_from_slice(&r.deadline.to_le_bytes());
        f.extend_from_slice(&r.last_use.to_le_bytes());
        f.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        f.extend_from_slice(r.key);
        f.extend_from_slice(r.value);
        self.totals.items += 1;
        self.totals.bytes += (r.key.len() + r.value.len()) as u64;
        self.totals.charge += charge as u64;
        self.totals.max_cas = self.totals.max_cas.max(r.cas);
    }

    /// Whether the frame being filled is full: [`Writer::flush`] it before adding more.
    pub fn full(&self) -> bool {
        self.frame.len() - FRAME_HEAD >= FRAME_TARGET
    }

    /// Writes out the items added so far as a frame.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.frame.len() > FRAME_HEAD { self.write_frame(ITEMS) } else { Ok(()) }
    }

    /// Writes the last items and the END frame; returns the totals and the inner writer.
    pub fn finish(mut self, saved_at: i64, max_cas: u64) -> io::Result<(Totals, W)> {
        self.flush()?;
        self.totals.saved_at = saved_at;
        self.totals.max_cas = self.totals.max_cas.max(max_cas);
        let t = self.totals;
        for v in [t.saved_at as u64, t.items, t.bytes, t.charge, t.max_cas] {
            self.frame.extend_from_slice(&v.to_le_bytes());
        }
        self.write_frame(END)?;
        Ok((t, self.out))
    }

    fn write_frame(&mut self, kind: u32) -> io::Result<()> {
        let len = u32::try_from(self.frame.len() - FRAME_HEAD).map_err(|_| io::Error::other("frame over 4 GiB"))?;
        self.frame[..4].copy_from_slice(&kind.to_le_bytes());
        self.frame[4..8].copy_from_slice(&len.to_le_bytes());
        let crc = frame_crc(&self.frame[..8], &self.frame[FRAME_HEAD..]);
        self.frame[8..12].copy_from_slice(&crc.to_le_bytes());
        self.out.write_all(&self.frame)?;
        self.frame.truncate(FRAME_HEAD);
        Ok(())
    }
}
