//! Warm restarts: the state file `-e` names, saved from a running store and loaded into an
//! empty one. A save walks the store a few hundred buckets at a time under each shard's
//! read lock (as `lru_crawler metadump` does: no global lock, requests go on), fills
//! checksummed frames outside the locks and writes them to `<file>.tmp`, which is fsynced
//! and renamed over the file, so a crash at any point leaves the previous file whole. A
//! load checks the whole file before it puts back one item; a file that fails (torn,
//! corrupt, foreign, another format) is logged and set aside as `<file>.bad`, and the
//! server starts empty. The byte format is in [`format`]; [`warm`] is the other way to
//! start warm, copying a running server's items over the network.

pub mod format;
pub mod warm;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::clock::RelTime;
use crate::memcached::item_too_large;
use crate::store::{DumpCursor, Kept, Restored, Store, charge_for};
use format::{END_FRAME, FormatError, ReadError, Reader, Record, Totals, Writer, state};

/// Memory a restored item is expected to cost beyond its block: its table bucket, with
/// the table's slack.
const TABLE_ALLOWANCE: u64 = 24;

/// The state file and what became of its saves and load.
#[derive(Debug)]
pub struct Persist {
    path: PathBuf,
    /// Held for a save's length: saves (periodic, final) never overlap.
    saving: Mutex<()>,
    /// A pause after each frame written (a test hook, `LARDER_TEST_SAVE_PAUSE_MS`): makes a
    /// save slow enough to be killed in the middle.
    pause: Duration,
    pub stats: PersistStats,
}

/// Counters of saves and the load, for `stats`.
#[derive(Debug, Default)]
pub struct PersistStats {
    pub saves: AtomicU64,
    pub save_failures: AtomicU64,
    /// Unix time the last save finished (0: none yet).
    pub last_save_time: AtomicU64,
    pub last_save_micros: AtomicU64,
    pub last_save_items: AtomicU64,
    /// Bytes of the file the last save wrote.
    pub last_save_bytes: AtomicU64,
    /// Unix time the load finished (0: nothing loaded).
    pub load_time: AtomicU64,
    pub load_micros: AtomicU64,
    pub load_items: AtomicU64,
    pub load_bytes: AtomicU64,
    /// Items the file held that were not put back: expired, over `-I`, or past `-m`.
    pub load_skipped: AtomicU64,
    /// 1 if a state file was there and could not be loaded.
    pub load_failures: AtomicU64,
}

/// What a save wrote.
#[derive(Debug, Clone, Copy)]
pub struct Saved {
    pub totals: Totals,
    pub file_bytes: u64,
    pub took: Duration,
}

/// What a load put back and left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loaded {
    pub items: u64,
    /// Key and value bytes put back.
    pub bytes: u64,
    pub expired: u64,
    pub too_large: u64,
    /// Left out because `-m` is smaller than the saved items need (the least recently
    /// used ones).
    pub no_room: u64,
    pub file_bytes: u64,
}

/// Why a load did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Format(#[from] FormatError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<ReadError> for LoadError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Format(f) => Self::Format(f),
            ReadError::Io(e) => Self::Io(e),
        }
    }
}

impl Persist {
    pub fn new(path: PathBuf) -> Self {
        let pause = std::env::var("LARDER_TEST_SAVE_PAUSE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        Self { path, saving: Mutex::new(()), pause: Duration::from_millis(pause), stats: PersistStats::default() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Saves `store` to the state file (waiting for a save under way to end first), logs
    /// and counts the outcome.
    pub fn save(&self, store: &Store) -> io::Result<Saved> {
        let _one = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let s = &self.stats;
        match save(store, &self.path, self.pause) {
            Ok(saved) => {
                let t = saved.totals;
                info!(path = %self.path.display(), items = t.items, bytes = saved.file_bytes, secs = saved.took.as_secs_f64(), "state saved");
                s.saves.fetch_add(1, Relaxed);
                s.last_save_time.store(store.clock().unix_now() as u64, Relaxed);
                s.last_save_micros.store(saved.took.as_micros() as u64, Relaxed);
                s.last_save_items.store(t.items, Relaxed);
                s.last_save_bytes.store(saved.file_bytes, Relaxed);
                Ok(saved)
            }
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot save the state file; the previous one is kept");
                s.save_failures.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    /// Loads the state file into `store` (empty, not serving yet). No file: nothing to do.
    /// A file that cannot be loaded is set aside as `<file>.bad`, and `store` stays empty.
    pub fn load(&self, store: &Store) -> Option<Loaded> {
        let start = Instant::now();
        let s = &self.stats;
        match load(store, &self.path) {
            Ok(None) => {
                info!(path = %self.path.display(), "no state file; starting empty");
                None
            }
            Ok(Some(l)) => {
                let took = start.elapsed();
                info!(
                    path = %self.path.display(), items = l.items, bytes = l.file_bytes, secs = took.as_secs_f64(),
                    expired = l.expired, too_large = l.too_large, no_room = l.no_room, "state loaded"
                );
                s.load_time.store(store.clock().unix_now() as u64, Relaxed);
                s.load_micros.store(took.as_micros() as u64, Relaxed);
                s.load_items.store(l.items, Relaxed);
                s.load_bytes.store(l.file_bytes, Relaxed);
                s.load_skipped.store(l.expired + l.too_large + l.no_room, Relaxed);
                Some(l)
            }
            Err(e) => {
                s.load_failures.store(1, Relaxed);
                let aside = with_suffix(&self.path, ".bad");
                // Only a regular file is moved aside (check_writable refuses anything else
                // at start; this guards a path replaced since).
                let regular = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_file());
                let moved = if regular {
                    std::fs::rename(&self.path, &aside)
                } else {
                    Err(io::Error::other("not a regular file"))
                };
                match moved {
                    Ok(()) => {
                        warn!(path = %self.path.display(), error = %e, set_aside = ?aside, "state file not loaded; starting empty")
                    }
                    Err(r) => {
                        warn!(path = %self.path.display(), error = %e, rename_error = %r, "state file not loaded (and not set aside); starting empty")
                    }
                }
                None
            }
        }
    }
}

/// Whether `path` can be a state file: absent or a regular file, in a directory a save
/// can write its temporary file in (tried and removed).
pub fn check_writable(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(io::Error::other("exists and is not a regular file")),
        _ => {}
    }
    let tmp = with_suffix(path, ".tmp");
    OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    std::fs::remove_file(&tmp)
}

/// `path` with `suffix` on its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.to_path_buf().into_os_string();
    p.push(suffix);
    p.into()
}

/// Writes every live item of `store` to `<path>.tmp`, then fsyncs it and renames it over
/// `path`.
pub fn save(store: &Store, path: &Path, pause: Duration) -> io::Result<Saved> {
    let start = Instant::now();
    let tmp = with_suffix(path, ".tmp");
    let file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    let written = (|| {
        let mut w = Writer::new(&file)?;
        let epoch = store.clock().epoch();
        let unix = |t: RelTime| epoch + i64::from(t);
        // A delayed `flush_all` still to come is kept as the deadline it amounts to for the
        // items written before it.
        let flush_at = store.pending_flush();
        let mut at = Some(DumpCursor::default());
        while let Some(cursor) = at {
            at = store.dump(cursor, |found| {
                let it = found.item;
                let state = if found.fetched_before { state::FETCHED } else { 0 }
                    | if found.stale() { state::STALE } else { 0 }
                    | if found.token_sent_before { state::TOKEN_SENT } else { 0 }
                    | if found.key_binary() { state::KEY_BINARY } else { 0 };
                let exptime = match flush_at {
                    Some(t) if found.time_before <= t && (found.exptime_before == 0 || found.exptime_before > t) => t,
                    _ => found.exptime_before,
                };
                let deadline = if exptime == 0 { 0 } else { unix(exptime) };
                let record = Record {
                    key: it.key(),
                    value: it.value(),
                    flags: it.flags(),
                    cas: it.cas(),
                    deadline,
                    last_use: unix(found.time_before),
                    state,
                };
                w.add(&record, it.charge());
                !w.full()
            });
            if w.full() {
                w.flush()?;
                if !pause.is_zero() {
                    std::thread::sleep(pause);
                }
            }
        }
        w.finish(store.clock().unix_now(), store.cas_counter())
    })();
    let totals = match written.and_then(|(totals, f)| f.sync_all().map(|()| totals)) {
        Ok(totals) => totals,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let file_bytes = file.metadata()?.len();
    drop(file);
    std::fs::rename(&tmp, path)?;
    // The rename itself is made durable by syncing the directory that holds it.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()?;
    Ok(Saved { totals, file_bytes, took: start.elapsed() })
}

/// Loads `path` into `store`: `Ok(None)` if there is no such file. The file is read
/// twice: a first pass checks every frame (and, when the items will not all fit, finds the
/// oldest last use that still does), the second puts items back.
pub fn load(store: &Store, path: &Path) -> Result<Option<Loaded>, LoadError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    let from_start = || -> io::Result<BufReader<&File>> {
        (&file).seek(SeekFrom::Start(0))?;
        Ok(BufReader::with_capacity(1 << 20, &file))
    };
    // The magic and format first (a foreign or older file says so), then the end marker
    // (a torn file is found without reading it all).
    Reader::new(from_start()?, len)?;
    let mut tail = vec![0; END_FRAME as usize];
    if len < END_FRAME + format::MAGIC.len() as u64 + 4 {
        return Err(FormatError::Truncated.into());
    }
    file.read_exact_at(&mut tail, len - END_FRAME)?;
    let totals = format::read_totals(&tail)?;
    let now = store.clock().unix_now();
    let max_item_size = store.max_item_size();
    let fits = |r: &Record<'_>| !item_too_large(r.key.len(), r.flags, r.value.len(), max_item_size);
    let live = |r: &Record<'_>| r.deadline == 0 || r.deadline > now;
    // Pass 1: every frame checked; the charge of live items by last use, if they may not fit.
    let limit = store.limit() as u64;
    let plan = totals.charge + totals.items * TABLE_ALLOWANCE > limit;
    let mut by_use: BTreeMap<i64, u64> = BTreeMap::new();
    let mut reader = Reader::new(from_start()?, len)?;
    while let Some(records) = reader.frame()? {
        for r in records {
            let r = r?;
            if plan && live(&r) && fits(&r) {
                *by_use.entry(r.last_use).or_default() +=
                    charge_for(r.key.len(), r.value.len()) as u64 + TABLE_ALLOWANCE;
            }
        }
    }
    if reader.totals() != totals {
        return Err(FormatError::Corrupt("the end marker changed while reading").into());
    }
    // The second of last use at which the newest items pass the limit: items used before
    // it are left out, and its own are put back (in file order) only into the room the
    // newer ones leave, so that none of those finds the cache full.
    let (mut oldest, mut room) = (i64::MIN, 0);
    let mut sum = 0;
    for (&last_use, &charge) in by_use.iter().rev() {
        if sum + charge > limit {
            (oldest, room) = (last_use, limit - sum);
            break;
        }
        sum += charge;
    }
    // Pass 2: put them back.
    let epoch = store.clock().epoch();
    let rel = |unix: i64| (unix - epoch).clamp(1, i64::from(RelTime::MAX)) as RelTime;
    let mut loaded = Loaded { file_bytes: len, ..Loaded::default() };
    let mut reader = Reader::new(from_start()?, len)?;
    while let Some(records) = reader.frame()? {
        for r in records {
            let r = r?;
            if !live(&r) {
                loaded.expired += 1;
                continue;
            }
            if !fits(&r) {
                loaded.too_large += 1;
                continue;
            }
            if r.last_use <= oldest {
                let charge = charge_for(r.key.len(), r.value.len()) as u64 + TABLE_ALLOWANCE;
                if r.last_use < oldest || charge > room {
                    loaded.no_room += 1;
                    continue;
                }
                room -= charge;
            }
            let kept = Kept {
                key: r.key,
                value: r.value,
                flags: r.flags,
                cas: r.cas,
                exptime: if r.deadline == 0 { 0 } else { rel(r.deadline) },
                time: rel(r.last_use).min(store.clock().now()),
                fetched: r.state & state::FETCHED != 0,
                stale: r.state & state::STALE != 0,
                token_sent: r.state & state::TOKEN_SENT != 0,
                key_binary: r.state & state::KEY_BINARY != 0,
            };
            match store.restore(&kept) {
                Restored::Stored => {
                    loaded.items += 1;
                    loaded.bytes += (r.key.len() + r.value.len()) as u64;
                }
                Restored::TooLarge => loaded.too_large += 1,
                Restored::Full => loaded.no_room += 1,
                Restored::Older | Restored::Replaced => {}
            }
        }
    }
    store.resume_cas(totals.max_cas);
    Ok(Some(loaded))
}

#[cfg(test)]
mod tests;
