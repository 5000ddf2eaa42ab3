//! Saving a store and loading it into another, with the clock moved by hand between them.

use std::sync::atomic::AtomicUsize;

use super::*;
use crate::clock::Clock;
use crate::memcached::StoreMode;
use crate::store::{DeleteOpts, Lookup, StoreArgs, StoreOutcome};

const T0: i64 = 1_800_000_000;

/// A directory of its own under the system's temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Relaxed);
        let dir = std::env::temp_dir().join(format!("larder-persist-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("state")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn set(store: &Store, key: &[u8], value: &[u8], flags: u32, exptime: i32) -> u64 {
    let args = StoreArgs { key, value, flags, exptime: store.clock().deadline(exptime), ..StoreArgs::default() };
    let (outcome, cas) = store.store(&args);
    assert_eq!(outcome, StoreOutcome::Stored);
    cas
}

/// Value, flags, CAS, deadline (Unix) of `key`, as a `PEEK` shows it.
fn peek(store: &Store, key: &[u8]) -> Option<(Vec<u8>, u32, u64, i64)> {
    let epoch = store.clock().epoch();
    store.lookup(key, &Lookup::PEEK, |f| {
        let e = f.item.exptime();
        (f.item.value().to_vec(), f.item.flags(), f.item.cas(), if e == 0 { 0 } else { epoch + i64::from(e) })
    })
}

fn store_at(unix: i64, limit: usize, max_item: usize) -> Store {
    Store::new(Clock::starting_at(unix), limit, max_item)
}

#[test]
fn every_field_comes_back_and_expiry_counts_the_downtime() {
    let dir = Dir::new();
    let a = store_at(T0, 64 << 20, 1 << 20);
    set(&a, b"plain", b"v1", 0, 0);
    set(&a, b"flags", b"v2", 0xdead_beef, 0);
    set(&a, b"ttl-long", b"v3", 7, 3600);
    set(&a, b"ttl-short", b"v4", 0, 50);
    set(&a, b"big", &vec![b'x'; 500_000], 1, 0);
    let stale = StoreArgs { mode: StoreMode::Set, key: b"stale", value: b"v5", ..StoreArgs::default() };
    a.store(&stale);
    a.delete(b"stale", &DeleteOpts { invalidate: true, ..DeleteOpts::default() });
    a.lookup(b"plain", &Lookup::GET, |_| ()); // fetched
    let kept = [&b"plain"[..], b"flags", b"ttl-long", b"big", b"stale"];
    let before: Vec<_> = kept.iter().map(|k| peek(&a, k)).collect();
    let saved = save(&a, &dir.file(), Duration::ZERO).unwrap();
    assert_eq!(saved.totals.items, 6);
    assert_eq!(saved.totals.max_cas, a.cas_counter());
    assert!(!with_suffix(&dir.file(), ".tmp").exists(), "the temporary file is renamed");

    // 100 seconds later: the 50-second item expired while the server was down.
    let b = store_at(T0 + 100, 64 << 20, 1 << 20);
    let loaded = load(&b, &dir.file()).unwrap().unwrap();
    assert_eq!((loaded.items, loaded.expired, loaded.no_room, loaded.too_large), (5, 1, 0, 0));
    assert_eq!(b.len(), 5);
    for (key, was) in kept.iter().zip(&before) {
        assert!(peek(&b, key) == *was, "{} differs", String::from_utf8_lossy(key));
    }
    assert_eq!(peek(&b, b"ttl-short"), None);
    let stale = b.lookup(b"stale", &Lookup::PEEK, |f| f.stale()).unwrap();
    assert!(stale, "the stale mark is kept");
    let fetched = b.lookup(b"plain", &Lookup::PEEK, |f| f.fetched_before).unwrap();
    let unfetched = b.lookup(b"flags", &Lookup::PEEK, |f| f.fetched_before).unwrap();
    assert!(fetched && !unfetched, "whether an item was read is kept");
    // The CAS counter resumes above every restored CAS.
    let next = set(&b, b"new", b"n", 0, 0);
    assert!(next > a.cas_counter(), "{next} > {}", a.cas_counter());
    assert_eq!(b.stats.totals().total_items, 1, "restored items are not counted as stored");
}

#[test]
fn a_smaller_memory_limit_keeps_the_most_recently_used() {
    let dir = Dir::new();
    let a = store_at(T0, 64 << 20, 1 << 20);
    // 4,000 items of 1 KiB, a batch of 100 per minute: batch 0 is the oldest.
    let value = vec![b'v'; 1000];
    for batch in 0..40 {
        for i in 0..100 {
            set(&a, format!("k{batch}-{i}").as_bytes(), &value, 0, 0);
        }
        a.clock().advance(60);
    }
    save(&a, &dir.file(), Duration::ZERO).unwrap();
    // Room for about a quarter of them.
    let b = store_at(T0 + 2400 + 10, 1 << 20, 64 << 10);
    let loaded = load(&b, &dir.file()).unwrap().unwrap();
    assert!(loaded.items > 500 && loaded.items < 1100, "{loaded:?}");
    assert_eq!(loaded.items + loaded.no_room, 4000);
    assert!(b.bytes() <= b.limit());
    let kept = |batch: usize| (0..100).filter(|i| peek(&b, format!("k{batch}-{i}").as_bytes()).is_some()).count();
    let first_gap = (0..40).rev().find(|&batch| kept(batch) < 100).unwrap();
    assert!(first_gap < 35, "the newest batches are whole: {first_gap}");
    assert!((0..first_gap).all(|batch| kept(batch) == 0), "nothing older than the first gap is kept");
}

#[test]
fn a_smaller_item_limit_skips_what_no_longer_fits() {
    let dir = Dir::new();
    let a = store_at(T0, 64 << 20, 1 << 20);
    set(&a, b"small", &[b's'; 500], 0, 0);
    set(&a, b"large", &[b'l'; 5000], 0, 0);
    save(&a, &dir.file(), Duration::ZERO).unwrap();
    let b = store_at(T0, 64 << 20, 2048);
    let loaded = load(&b, &dir.file()).unwrap().unwrap();
    assert_eq!((loaded.items, loaded.too_large), (1, 1));
    assert!(peek(&b, b"small").is_some() && peek(&b, b"large").is_none());
}

#[test]
fn no_file_is_nothing_to_load() {
    let dir = Dir::new();
    assert!(load(&store_at(T0, 1 << 20, 1024), &dir.file()).unwrap().is_none());
}

fn saved_bytes() -> Vec<u8> {
    let dir = Dir::new();
    let a = store_at(T0, 64 << 20, 1 << 20);
    for i in 0..300 {
        set(&a, format!("key{i}").as_bytes(), &vec![b'a' + (i % 26) as u8; 10 + i * 7], i as u32, 0);
    }
    save(&a, &dir.file(), Duration::ZERO).unwrap();
    std::fs::read(dir.file()).unwrap()
}

/// Loads `bytes` as a state file into a fresh store: the error, the store left empty.
fn load_bad(bytes: &[u8]) -> LoadError {
    let dir = Dir::new();
    std::fs::write(dir.file(), bytes).unwrap();
    let b = store_at(T0, 64 << 20, 1 << 20);
    let e = load(&b, &dir.file()).expect_err("a bad file is refused");
    assert!(b.is_empty(), "nothing of a bad file is loaded ({e})");
    e
}

#[test]
fn torn_corrupt_foreign_and_other_format_files_are_refused_whole() {
    let good = saved_bytes();
    assert!(good.len() > 30_000);
    for cut in [0, 1, 7, 12, 13, 40, good.len() / 2, good.len() - END_FRAME as usize, good.len() - 1] {
        let e = load_bad(&good[..cut]);
        assert!(matches!(e, LoadError::Format(FormatError::Truncated)), "cut at {cut}: {e}");
    }
    for at in [12, 13, 20, 100, good.len() / 3, good.len() - 30, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        let e = load_bad(&bad);
        assert!(matches!(e, LoadError::Format(_)), "bit flip at {at}: {e}");
    }
    let e = load_bad(b"#!/bin/sh\necho not a state file\n");
    assert!(matches!(e, LoadError::Format(FormatError::Foreign)), "{e}");
    let mut older = good.clone();
    older[8..12].copy_from_slice(&0u32.to_le_bytes());
    let e = load_bad(&older);
    assert_eq!(e.to_string(), "state file format 0, and this Larder reads format 1 only");
    let mut longer = good.clone();
    longer.extend_from_slice(b"extra");
    assert!(matches!(load_bad(&longer), LoadError::Format(_)));
}

#[test]
fn a_bad_file_is_set_aside_and_counted() {
    let dir = Dir::new();
    std::fs::write(dir.file(), b"garbage").unwrap();
    let p = Persist::new(dir.file());
    let b = store_at(T0, 1 << 20, 1024);
    assert!(p.load(&b).is_none());
    assert_eq!(p.stats.load_failures.load(Relaxed), 1);
    assert!(!dir.file().exists());
    assert_eq!(std::fs::read(with_suffix(&dir.file(), ".bad")).unwrap(), b"garbage");
}

#[test]
fn a_save_that_cannot_write_keeps_the_previous_file() {
    let dir = Dir::new();
    let a = store_at(T0, 1 << 20, 1024);
    set(&a, b"k", b"v", 0, 0);
    let p = Persist::new(dir.file());
    p.save(&a).unwrap();
    let first = std::fs::read(dir.file()).unwrap();
    // The temporary file's name is taken by a directory: the save fails.
    std::fs::create_dir(with_suffix(&dir.file(), ".tmp")).unwrap();
    set(&a, b"k2", b"v", 0, 0);
    assert!(p.save(&a).is_err());
    assert_eq!(std::fs::read(dir.file()).unwrap(), first);
    assert_eq!((p.stats.saves.load(Relaxed), p.stats.save_failures.load(Relaxed)), (1, 1));
}

#[test]
fn a_written_file_reads_back() {
    let mut frame = Vec::new();
    let mut w = Writer::new(&mut frame).unwrap();
    w.add(&Record { key: b"k", value: b"v", flags: 0, cas: 1, deadline: 0, last_use: T0, state: 0 }, 64);
    w.finish(T0, 1).unwrap();
    let good = frame.clone();
    let mut r = Reader::new(&good[..], good.len() as u64).unwrap();
    let records: Vec<_> = r.frame().unwrap().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key, b"k");
    assert!(r.frame().unwrap().is_none());
    assert_eq!(r.totals().items, 1);
}

#[test]
fn a_delayed_flush_still_to_come_is_kept_as_a_deadline() {
    let dir = Dir::new();
    let a = store_at(T0, 1 << 20, 1024);
    set(&a, b"old", b"v", 0, 0);
    set(&a, b"sooner", b"v", 0, 30);
    a.flush_all(100); // due 99 s from now
    save(&a, &dir.file(), Duration::ZERO).unwrap();
    // A restart before it is due keeps the items, and they go when it is due.
    let b = store_at(T0 + 50, 1 << 20, 1024);
    assert_eq!(load(&b, &dir.file()).unwrap().unwrap().items, 1, "the 30 s item expired meanwhile");
    assert!(peek(&b, b"old").is_some());
    b.clock().advance(60);
    assert!(peek(&b, b"old").is_none(), "flushed at the time flush_all set");
    // A restart after it is due loads nothing it flushed.
    let c = store_at(T0 + 200, 1 << 20, 1024);
    assert_eq!(load(&c, &dir.file()).unwrap().unwrap().expired, 2);
    assert!(c.is_empty());
}
