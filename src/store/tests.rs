//! The store's unit tests: verbs against an injected clock, eviction, expiry, the walk.

use super::shard::{Side, read};
use super::*;
use crate::clock::Clock;

/// What a read returns, copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hit {
    pub value: Vec<u8>,
    pub flags: u32,
    pub cas: u64,
}

/// The classic commands as the tests call them, on the verbs.
pub(super) trait Classic {
    fn get(&self, key: &[u8]) -> Option<Hit>;
    fn put(&self, mode: StoreMode, key: &[u8], flags: u32, exptime: RelTime, value: &[u8]) -> StoreOutcome;
    fn del(&self, key: &[u8]) -> bool;
    fn touch(&self, key: &[u8], exptime: RelTime) -> bool;
    fn count(&self, key: &[u8], incr: bool, delta: u64) -> ArithOutcome;
}

impl Classic for Store {
    fn get(&self, key: &[u8]) -> Option<Hit> {
        self.lookup(key, &Lookup::GET, |f| Hit {
            value: f.item.value().to_vec(),
            flags: f.item.flags(),
            cas: f.item.cas(),
        })
    }

    fn put(&self, mode: StoreMode, key: &[u8], flags: u32, exptime: RelTime, value: &[u8]) -> StoreOutcome {
        self.store(&StoreArgs { mode, key, flags, exptime, value, ..StoreArgs::default() }).0
    }

    fn del(&self, key: &[u8]) -> bool {
        self.delete(key, &DeleteOpts::default()) == DeleteOutcome::Deleted
    }

    fn touch(&self, key: &[u8], exptime: RelTime) -> bool {
        self.lookup(key, &Lookup::touch(exptime), |_| ()).is_some()
    }

    fn count(&self, key: &[u8], incr: bool, delta: u64) -> ArithOutcome {
        self.arith(key, &ArithArgs { incr, delta, ..ArithArgs::default() })
    }
}

fn store() -> Store {
    Store::new(Clock::starting_at(1_800_000_000), 64 << 20, 1 << 20)
}

fn get(s: &Store, k: &str) -> Option<Vec<u8>> {
    s.get(k.as_bytes()).map(|h| h.value.to_vec())
}

fn set(s: &Store, k: &str, v: &str, exptime: RelTime) -> StoreOutcome {
    s.put(StoreMode::Set, k.as_bytes(), 0, exptime, v.as_bytes())
}

/// Large values leave most shards with an item or none: eviction's sample must span
/// shards, or it evicts whatever one shard holds, however new.
#[test]
fn eviction_keeps_the_newest_of_few_large_items() {
    let s = Store::new(Clock::starting_at(1_800_000_000), 4 << 20, 1 << 20);
    let value = vec![7u8; 100 << 10];
    for n in 0..300 {
        assert_eq!(s.put(StoreMode::Set, format!("big:{n}").as_bytes(), 0, 0, &value), StoreOutcome::Stored);
    }
    assert!(s.len() < 45, "{} items of 100 KiB fit in 4 MiB", s.len());
    let kept = (290..300).filter(|n| s.get(format!("big:{n}").as_bytes()).is_some()).count();
    assert_eq!(kept, 10, "the ten newest items are all there");
}

/// `prefetch_probe` relies on where hashbrown puts slots; if that changes, lookups
/// only lose their prefetch, so this test is what notices.
#[test]
fn probe_prefetch_knows_the_table_layout() {
    let s = store();
    let check = |s: &Store| {
        for shard in s.shards.iter() {
            let sh = read(shard);
            assert!(sh.ctrl != 0 || sh.table.is_empty());
            for i in sh.table.iter_buckets() {
                assert_eq!(std::ptr::from_ref(sh.item(i)).addr(), sh.ctrl - (i + 1) * size_of::<Item>());
            }
        }
    };
    for n in 0..20_000 {
        set(&s, &format!("k{n}"), "v", 0);
    }
    check(&s);
    let buckets = |s: &Store| s.shards.iter().map(|sh| read(sh).table.num_buckets()).sum::<usize>();
    let grown = buckets(&s);
    for n in 100..20_000 {
        assert!(s.del(format!("k{n}").as_bytes()));
    }
    s.reclaim_expired(1024);
    assert!(buckets(&s) < grown / 2, "tables shrank: {grown} -> {}", buckets(&s));
    check(&s);
    assert_eq!(get(&s, "k7").as_deref(), Some(&b"v"[..]));
}

#[test]
fn storage_modes() {
    let s = store();
    assert_eq!(s.put(StoreMode::Replace, b"k", 0, 0, b"x"), StoreOutcome::NotStored);
    assert_eq!(s.put(StoreMode::Append, b"k", 0, 0, b"x"), StoreOutcome::NotStored);
    assert_eq!(s.put(StoreMode::Add, b"k", 5, 0, b"b"), StoreOutcome::Stored);
    assert_eq!(s.put(StoreMode::Add, b"k", 0, 0, b"c"), StoreOutcome::NotStored);
    assert_eq!(s.put(StoreMode::Append, b"k", 99, 0, b"c"), StoreOutcome::Stored);
    assert_eq!(s.put(StoreMode::Prepend, b"k", 99, 0, b"a"), StoreOutcome::Stored);
    let hit = s.get(b"k").unwrap();
    assert_eq!((&hit.value[..], hit.flags), (&b"abc"[..], 5), "append keeps flags");
    assert_eq!(s.put(StoreMode::Cas { unique: hit.cas + 1 }, b"k", 0, 0, b"z"), StoreOutcome::Exists);
    assert_eq!(s.put(StoreMode::Cas { unique: hit.cas }, b"k", 1, 0, b"z"), StoreOutcome::Stored);
    assert_eq!(s.put(StoreMode::Cas { unique: hit.cas }, b"k", 1, 0, b"z"), StoreOutcome::Exists);
    assert_eq!(s.put(StoreMode::Cas { unique: 1 }, b"nope", 1, 0, b"z"), StoreOutcome::NotFound);
    assert_eq!(s.len(), 1);
    assert!(s.del(b"k"));
    assert!(!s.del(b"k"));
    assert_eq!(s.len(), 0);
    assert!(s.bytes() < 64 * BUCKET_BYTES, "only table memory is left: {}", s.bytes());
}

#[test]
fn expiry_with_injected_clock() {
    let s = store();
    let c = s.clock().clone();
    set(&s, "a", "1", c.deadline(2));
    set(&s, "never", "1", 0);
    set(&s, "gone", "1", c.deadline(-1));
    assert_eq!(get(&s, "gone"), None);
    c.advance(1);
    assert!(get(&s, "a").is_some());
    c.advance(1);
    assert_eq!(get(&s, "a"), None, "expires when the deadline is reached");
    assert!(get(&s, "never").is_some());
    assert!(s.touch(b"never", c.deadline(1)));
    c.advance(1);
    assert!(!s.touch(b"never", 0));
    assert_eq!(s.len(), 0, "expired items are reaped when found");
    assert_eq!(s.stats.totals().get_expired, 3);
}

#[test]
fn replace_of_expired_item_is_not_stored() {
    let s = store();
    set(&s, "k", "v", s.clock().deadline(-1));
    assert_eq!(s.put(StoreMode::Replace, b"k", 0, 0, b"x"), StoreOutcome::NotStored);
    assert_eq!(s.put(StoreMode::Add, b"k", 0, 0, b"x"), StoreOutcome::Stored);
    assert_eq!(get(&s, "k").unwrap(), b"x");
}

#[test]
fn arith_rules() {
    let s = store();
    assert_eq!(s.count(b"n", true, 1), ArithOutcome::NotFound);
    set(&s, "n", "18446744073709551615", 0);
    assert!(matches!(s.count(b"n", true, 2), ArithOutcome::Value { value: 1, .. }));
    assert_eq!(get(&s, "n").unwrap(), b"1                   ", "shorter numbers are space padded");
    set(&s, "n", "10", 0);
    assert!(matches!(s.count(b"n", false, 1), ArithOutcome::Value { value: 9, .. }));
    assert_eq!(get(&s, "n").unwrap(), b"9 ");
    assert!(matches!(s.count(b"n", false, 100), ArithOutcome::Value { value: 0, .. }));
    set(&s, "n", "99", 0);
    assert!(matches!(s.count(b"n", true, 1), ArithOutcome::Value { value: 100, .. }));
    assert_eq!(get(&s, "n").unwrap(), b"100");
    set(&s, "n", " 12", 0);
    assert!(matches!(s.count(b"n", true, 1), ArithOutcome::Value { value: 13, .. }));
    for bad in ["abc", "", "-1", "123456789012345678901", "12a"] {
        set(&s, "n", bad, 0);
        assert_eq!(s.count(b"n", true, 1), ArithOutcome::NonNumeric, "{bad:?}");
    }
    let before = s.get(b"n").unwrap().cas;
    set(&s, "n", "5", 0);
    s.count(b"n", true, 1);
    assert!(s.get(b"n").unwrap().cas > before + 1, "incr takes a new CAS");
}

#[test]
fn flush_all_now_and_later() {
    let s = store();
    let c = s.clock().clone();
    set(&s, "a", "1", 0);
    s.flush_all(0);
    assert_eq!(get(&s, "a"), None);
    set(&s, "b", "1", 0);
    assert!(get(&s, "b").is_some(), "items written after the flush survive");
    s.flush_all(2);
    assert!(get(&s, "b").is_some(), "a delayed flush waits");
    c.advance(1);
    set(&s, "c", "1", 0);
    c.advance(1);
    assert_eq!(get(&s, "b"), None);
    assert_eq!(get(&s, "c"), None, "written up to the flush time: flushed too");
    set(&s, "d", "1", 0);
    assert!(get(&s, "d").is_some());
    assert_eq!(s.stats.totals().get_flushed, 3);
}

#[test]
fn append_over_item_limit_is_not_stored() {
    let s = Store::new(Clock::starting_at(1_800_000_000), 64 << 20, 1024);
    let big = "x".repeat(900);
    assert_eq!(set(&s, "k", &big, 0), StoreOutcome::Stored);
    assert_eq!(s.put(StoreMode::Append, b"k", 0, 0, big.as_bytes()), StoreOutcome::NotStored);
    assert_eq!(get(&s, "k").unwrap().len(), 900);
}

#[test]
fn eviction_keeps_under_the_limit_and_spares_read_items() {
    let s = store();
    let v = "v".repeat(100);
    for i in 0..10_000 {
        assert_eq!(set(&s, &format!("k{i:05}"), &v, 0), StoreOutcome::Stored);
    }
    // Exactly full: nothing evicted yet.
    s.set_limit(s.bytes());
    assert_eq!((s.len(), s.stats.totals().evictions), (10_000, 0));
    // A tenth of the items are read between floods of one-time keys (each a tenth of
    // the cache): the hand clears their bit, they are read again, they stay.
    let hot: Vec<String> = (0..10_000).step_by(10).map(|i| format!("k{i:05}")).collect();
    for round in 0..5 {
        for k in &hot {
            assert!(s.get(k.as_bytes()).is_some(), "hot key {k} evicted in round {round}");
        }
        for i in 0..1000 {
            assert_eq!(set(&s, &format!("scan{round}-{i}"), &v, 0), StoreOutcome::Stored);
            assert!(s.bytes() <= s.limit());
        }
    }
    assert!(s.stats.totals().evictions >= 5000, "{}", s.stats.totals().evictions);
    assert!(s.stats.totals().evicted_unfetched >= 4000);
    // An item larger than the whole limit can never be stored.
    assert_eq!(set(&s, "huge", &"x".repeat(s.limit()), 0), StoreOutcome::NoMemory);
    // Shrinking the limit evicts down to it.
    let smaller = s.bytes() / 2;
    s.set_limit(smaller);
    assert!(s.bytes() <= smaller && s.len() < 6000, "{} items", s.len());
}

/// A full cache of `n` items of `v`, exactly at its limit.
fn full_store(n: usize, v: &str) -> Store {
    let s = store();
    for i in 0..n {
        assert_eq!(set(&s, &format!("k{i:05}"), v, 0), StoreOutcome::Stored);
    }
    s.set_limit(s.bytes());
    s
}

/// The scan workload in small: a hot set read between sequential sweeps over more
/// keys than the cache holds. LRU (and the sampled LRU before S3-FIFO's classes) loses the
/// whole hot set to each sweep; probation cycles the sweep through its share of the cache.
#[test]
fn sweeps_larger_than_the_cache_leave_the_read_items() {
    let v = "v".repeat(100);
    let s = full_store(10_000, &v);
    let hot: Vec<String> = (0..10_000).step_by(3).map(|i| format!("k{i:05}")).collect();
    for k in &hot {
        assert!(s.get(k.as_bytes()).is_some());
    }
    for sweep in 0..3 {
        // Twice the cache's worth of keys, each written once (a miss, then its set).
        for i in 0..20_000 {
            let k = format!("sweep{sweep}-{i:05}");
            assert!(s.get(k.as_bytes()).is_none());
            assert_eq!(set(&s, &k, &v, 0), StoreOutcome::Stored);
            assert!(s.bytes() <= s.limit());
        }
        let kept = hot.iter().filter(|k| s.get(k.as_bytes()).is_some()).count();
        assert!(kept * 100 >= hot.len() * 95, "sweep {sweep}: {kept} of {} hot keys kept", hot.len());
    }
    let held = s.len();
    assert!(s.stats.totals().evicted_unfetched as usize >= 60_000 - held, "the sweeps evicted themselves");
}

/// With few one-time keys arriving, probation stays under its share and read items are
/// evicted least recently used first, as before: a hot set that moves on is forgotten.
#[test]
fn read_items_go_least_recently_used_first() {
    let v = "v".repeat(100);
    let s = full_store(10_000, &v);
    let old: Vec<String> = (0..5_000).map(|i| format!("k{i:05}")).collect();
    let new: Vec<String> = (5_000..10_000).map(|i| format!("k{i:05}")).collect();
    for k in old.iter().chain(&new) {
        assert!(s.get(k.as_bytes()).is_some());
    }
    // Only the new half is read from now on, while fresh keys are written and read once.
    for round in 0..20 {
        for k in &new {
            s.get(k.as_bytes());
        }
        for i in 0..500 {
            let k = format!("fresh{round}-{i}");
            assert_eq!(set(&s, &k, &v, 0), StoreOutcome::Stored);
            assert!(s.get(k.as_bytes()).is_some());
        }
    }
    let new_kept = new.iter().filter(|k| s.get(k.as_bytes()).is_some()).count();
    let old_kept = old.iter().filter(|k| s.get(k.as_bytes()).is_some()).count();
    // Sampled LRU is not exact: a sample of the recently read now and then has nothing
    // older in it.
    assert!(new_kept * 100 >= new.len() * 90, "{new_kept} of the read half kept");
    assert!(old_kept * 10 <= old.len(), "{old_kept} of the idle half kept");
}

/// Whether `key` is held, without reading it (a read would end its probation).
fn held(s: &Store, key: &str) -> Option<bool> {
    let (hash, lock) = s.locate(key.as_bytes());
    let sh = read(lock);
    sh.find(hash, key.as_bytes()).map(|i| sh.item(i).bits() & item::bit::ADMITTED != 0)
}

/// A key evicted from probation and written again soon skips probation (the ghost list):
/// it outlives a flood of one-time keys though nobody read it.
#[test]
fn a_key_back_soon_after_its_eviction_skips_probation() {
    let v = "v".repeat(100);
    let s = full_store(10_000, &v);
    let mut flood = 0;
    while held(&s, "k00007").is_some() {
        assert!(flood < 20_000, "an unread item outlived a flood twice the cache");
        assert_eq!(set(&s, &format!("flood{flood:05}"), &v, 0), StoreOutcome::Stored);
        flood += 1;
    }
    assert_eq!(set(&s, "k00007", &v, 0), StoreOutcome::Stored);
    assert_eq!(held(&s, "k00007"), Some(true), "admitted past probation");
    for i in 0..5_000 {
        assert_eq!(set(&s, &format!("again{i:05}"), &v, 0), StoreOutcome::Stored);
    }
    assert_eq!(held(&s, "k00007"), Some(true), "kept through a flood of half the cache");
    // A key never evicted is on probation as usual.
    assert_eq!(set(&s, "brand-new", &v, 0), StoreOutcome::Stored);
    assert_eq!(held(&s, "brand-new"), Some(false));
}

#[test]
fn ghost_entries_are_remembered_once_with_their_side() {
    let s = store();
    set(&s, "k", "v", 0);
    let (hash, lock) = s.locate(b"k");
    let mut sh = write(lock);
    assert_eq!(sh.ghost_take(hash), None);
    sh.ghost_put(hash, Side::Main);
    assert_eq!(sh.ghost_held, [0, 1]);
    assert_eq!(sh.ghost_take(hash ^ (1 << 50)), None, "another fingerprint at the same place");
    assert_eq!(sh.ghost_take(hash), Some(Side::Main));
    assert_eq!(sh.ghost_take(hash), None, "taken once");
    assert_eq!(sh.ghost_held, [0, 0]);
    // A key evicted again replaces its place's entry, whatever it held.
    sh.ghost_put(hash, Side::Main);
    sh.ghost_put(hash, Side::Probation);
    assert_eq!(sh.ghost_held, [1, 0]);
    assert_eq!(sh.ghost_take(hash), Some(Side::Probation));
}

/// ARC's adaptation: a key back from probation's ghost lengthens probation, one back from
/// main's shortens it, and the store's ghost counts follow its shards'.
#[test]
fn ghost_hits_move_the_probation_target() {
    let v = "v".repeat(100);
    let s = full_store(10_000, &v);
    let target = || s.probation_target.load(Relaxed);
    let held_total = || s.ghost_held.iter().map(|h| h.load(Relaxed)).sum::<i64>();
    assert_eq!(target(), evict::INITIAL_TARGET);
    // Unread keys flood through: probation's evictions fill the ghost.
    for i in 0..5_000 {
        assert_eq!(set(&s, &format!("flood{i:05}"), &v, 0), StoreOutcome::Stored);
    }
    let shards_held = |t: usize| s.shards.iter().map(|sh| i64::from(read(sh).ghost_held[t])).sum::<i64>();
    assert_eq!(s.ghost_held[0].load(Relaxed), shards_held(0));
    assert!(held_total() > 1000, "{}", held_total());
    let evicted: Vec<String> = (0..10_000).map(|i| format!("k{i:05}")).filter(|k| held(&s, k).is_none()).collect();
    assert!(evicted.len() > 1000);
    let before = target();
    for k in evicted.iter().take(200) {
        assert_eq!(set(&s, k, &v, 0), StoreOutcome::Stored);
    }
    let raised = target();
    assert!(raised > before, "probation ghost hits raised the target: {before} -> {raised}");
    // Read items only from now on: main evicts, and its keys come back.
    let main: Vec<String> = (0..3_000).map(|i| format!("main{i:05}")).collect();
    for round in 0..4 {
        for k in &main {
            if s.get(k.as_bytes()).is_none() {
                assert_eq!(set(&s, k, &v, 0), StoreOutcome::Stored);
            }
        }
        for i in 0..3_000 {
            let k = format!("read{round}-{i:05}");
            assert_eq!(set(&s, &k, &v, 0), StoreOutcome::Stored);
            // Read at once (now and then a sample evicts the newest item first).
            s.get(k.as_bytes());
        }
    }
    assert!(s.ghost_held[1].load(Relaxed) > 0, "main's evictions are in the ghost");
    assert_eq!(s.ghost_held[1].load(Relaxed), shards_held(1));
    assert!(target() < raised, "main ghost hits lowered the target: {raised} -> {}", target());
}

/// CLOCK's second chance in the main part: of items last used together, the ones read
/// again outlast the ones read once.
#[test]
fn items_read_again_outlast_items_read_once() {
    let v = "v".repeat(100);
    let s = full_store(10_000, &v);
    for i in 0..10_000 {
        let k = format!("k{i:05}");
        assert!(s.get(k.as_bytes()).is_some());
        if i % 2 == 0 {
            assert!(s.get(k.as_bytes()).is_some());
        }
    }
    // Keys written and read at once: everything is in the main part, which evicts.
    for i in 0..4_000 {
        let k = format!("new{i:05}");
        assert_eq!(set(&s, &k, &v, 0), StoreOutcome::Stored);
        s.get(k.as_bytes());
    }
    let kept = |parity| (0..10_000).filter(|i| i % 2 == parity && held(&s, &format!("k{i:05}")).is_some()).count();
    let (twice, once) = (kept(0), kept(1));
    assert!(twice * 2 > once * 3, "read twice kept {twice}, read once kept {once}");
}

#[test]
fn without_evictions_a_full_cache_refuses_stores() {
    let mut s = store();
    s.disable_evictions();
    let c = s.clock().clone();
    let v = "v".repeat(1000);
    for i in 0..100 {
        set(&s, &format!("k{i}"), &v, if i < 10 { c.deadline(5) } else { 0 });
    }
    s.set_limit(s.bytes());
    assert_eq!(set(&s, "new", &v, 0), StoreOutcome::NoMemory);
    assert_eq!((s.len(), s.stats.totals().evictions), (100, 0));
    c.advance(5);
    assert_eq!(set(&s, "new", &v, 0), StoreOutcome::Stored, "an expired item made room");
    assert_eq!(s.stats.totals().evictions, 0);
    assert!(get(&s, "k50").is_some());
}

#[test]
fn background_reclaim_frees_expired_items() {
    let s = store();
    let c = s.clock().clone();
    for i in 0..1000 {
        set(&s, &format!("k{i}"), "v", c.deadline(2));
    }
    set(&s, "keep", "v", 0);
    c.advance(2);
    let mut freed = 0;
    for _ in 0..100 {
        freed += s.reclaim_expired(64);
    }
    assert_eq!((freed, s.len()), (1000, 1));
    assert_eq!(s.stats.totals().reclaimed, 1000);
    assert_eq!(s.stats.totals().expired_unfetched, 1000);
}

#[test]
fn background_reclaim_sweeps_only_what_can_be_dead() {
    let s = store();
    let c = s.clock().clone();
    for i in 0..100 {
        set(&s, &format!("k{i}"), "v", 0);
    }
    assert!(!s.may_have_dead(), "no deadlines, no flush: nothing to sweep");
    assert_eq!(s.reclaim_expired(1024), 0);
    // A touch gives one item a deadline: from then on the sweep walks.
    assert!(s.touch(b"k0", c.deadline(1)));
    assert!(s.may_have_dead());
    c.advance(1);
    assert_eq!((s.reclaim_expired(1024), s.len()), (1, 99));
    // A flush makes every item dead, deadlines or not.
    let t = store();
    set(&t, "a", "v", 0);
    t.flush_all(0);
    t.clock().advance(1);
    assert!(t.may_have_dead());
    assert_eq!((t.reclaim_expired(1024), t.len()), (1, 0));
}

#[test]
fn charges_track_contents() {
    let s = store();
    let empty = s.bytes();
    set(&s, "k", "12345", 0);
    let table = s.bytes() - item::charge_for(1, 5);
    s.put(StoreMode::Append, b"k", 0, 0, &[b'6'; 30]);
    assert_eq!(s.bytes(), table + item::charge_for(1, 35));
    set(&s, "k", "1", 0);
    s.count(b"k", true, 10);
    assert_eq!(s.bytes(), table + item::charge_for(1, 2));
    s.del(b"k");
    assert_eq!(s.bytes(), table, "the table's own memory stays charged");
    assert!(empty <= table);
}

/// Shows items `step` at a time, calling `between` after each step, and returns every
/// key shown (with repeats) once the dump ends.
fn dump_in_steps(s: &Store, step: usize, mut between: impl FnMut(usize)) -> Vec<String> {
    let mut shown = Vec::new();
    let mut at = Some(DumpCursor::default());
    let mut steps = 0;
    while let Some(from) = at {
        let mut n = 0;
        at = s.dump(from, |f| {
            shown.push(String::from_utf8(f.item.key().to_vec()).unwrap());
            n += 1;
            n < step
        });
        steps += 1;
        between(steps);
    }
    shown
}

/// A table rebuilt under a dump (grown by stores, shrunk once items went) moves its
/// items to other buckets; the dump must still show every item there throughout.
#[test]
fn dump_shows_every_item_there_throughout_while_tables_are_rebuilt() {
    let s = store();
    let c = s.clock().clone();
    for n in 0..2_000 {
        set(&s, &format!("keep:{n}"), "v", 0);
    }
    for n in 0..30_000 {
        set(&s, &format!("fill:{n}"), "v", 0);
    }
    let rebuilds = |s: &Store| s.shards.iter().map(|sh| read(sh).rebuilds).sum::<u32>();
    let before = rebuilds(&s);
    // Each odd step grows every table (30,000 more items: 970 a shard where 1,024
    // buckets hold 896), each even one takes them away again and lets the background
    // pass shrink the tables back.
    let shown = dump_in_steps(&s, 4_000, |step| {
        for n in 0..30_000 {
            let key = format!("new:{n}");
            if step % 2 == 1 {
                set(&s, &key, "v", 0);
            } else {
                s.del(key.as_bytes());
            }
        }
        if step % 2 == 0 {
            c.advance(walk::DUMP_QUIET);
            s.reclaim_expired(16);
        }
    });
    assert_eq!(s.stats.totals().evictions, 0);
    assert!(rebuilds(&s) > before + 64, "tables were rebuilt under the dump: {} -> {}", before, rebuilds(&s));
    let shown: std::collections::HashSet<_> = shown.into_iter().collect();
    let missing: Vec<_> = (0..2_000).map(|n| format!("keep:{n}")).filter(|k| !shown.contains(k)).collect();
    assert!(
        missing.is_empty(),
        "{} of 2000 items never shown, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
}

/// A dump that finds nothing to show (here: every item expired, not yet reclaimed)
/// still hands back its cursor after a bounded walk, and then carries on to the end.
#[test]
fn dump_walks_a_bounded_number_of_buckets_per_call() {
    let s = store();
    let c = s.clock().clone();
    for n in 0..100_000 {
        set(&s, &format!("k{n}"), "v", c.deadline(1));
    }
    c.advance(1);
    let buckets: usize = s.shards.iter().map(|sh| read(sh).table.num_buckets()).sum();
    let mut calls = 0;
    let mut at = Some(DumpCursor::default());
    while let Some(from) = at {
        at = s.dump(from, |_| panic!("nothing is live"));
        calls += 1;
    }
    assert_eq!(calls, buckets.div_ceil(walk::DUMP_BUDGET), "{buckets} buckets");
    assert!(calls > 1);
}

/// Compacting waits while a dump is under way, so the dump is not sent back to the
/// start of every shard it is walking.
#[test]
fn tables_are_not_compacted_while_a_dump_is_under_way() {
    let s = store();
    let c = s.clock().clone();
    for n in 0..20_000 {
        set(&s, &format!("k{n}"), "v", 0);
    }
    for n in 100..20_000 {
        s.del(format!("k{n}").as_bytes());
    }
    let buckets = |s: &Store| s.shards.iter().map(|sh| read(sh).table.num_buckets()).sum::<usize>();
    let grown = buckets(&s);
    assert!(s.dump(DumpCursor::default(), |_| false).is_some());
    c.advance(walk::DUMP_QUIET - 1);
    s.reclaim_expired(16);
    assert_eq!(buckets(&s), grown, "no compacting right after a dump's step");
    c.advance(1);
    s.reclaim_expired(16);
    assert!(buckets(&s) < grown / 2, "compacted once the dump went quiet");
}

/// memcached runs `touch`, `gat` and `get` through one fetch: a touch marks the item
/// fetched, and a read moves the access time only by the one-minute rule. A refused
/// `add` is memcached's promotion instead: the access time moves at once.
#[test]
fn touch_is_a_fetch_and_reads_move_the_access_time_by_the_minute() {
    let s = store();
    let c = s.clock().clone();
    set(&s, "k", "v", 0);
    let fetched = |s: &Store| s.lookup(b"k", &Lookup::PEEK, |f| f.fetched_before).unwrap();
    let time = |s: &Store| s.lookup(b"k", &Lookup::PEEK, |f| f.item.time()).unwrap();
    assert!(!fetched(&s));
    assert!(s.touch(b"k", c.deadline(100)));
    assert!(fetched(&s), "a touch counts as a fetch");
    let written = time(&s);
    c.advance(30);
    assert!(s.get(b"k").is_some());
    assert_eq!(time(&s), written, "within a minute a read does not move it");
    c.advance(31);
    assert!(s.get(b"k").is_some());
    assert_eq!(time(&s), c.now(), "after a minute it does");
    c.advance(3);
    assert_eq!(s.put(StoreMode::Add, b"k", 0, 0, b"x"), StoreOutcome::NotStored);
    assert_eq!(time(&s), c.now(), "a refused add moves it at once");
}

/// `delete` finds items as every lookup does: an expired one is reaped and counted as
/// expired (memcached's `get_expired`), and the delete misses.
#[test]
fn deleting_an_expired_item_counts_it_expired() {
    let s = store();
    set(&s, "k", "v", s.clock().deadline(1));
    s.clock().advance(1);
    assert!(!s.del(b"k"));
    assert_eq!((s.stats.totals().get_expired, s.len()), (1, 0));
}

#[test]
fn stats_reset_zeroes_counters_and_keeps_gauges() {
    let s = store();
    set(&s, "a", "1", 0);
    let cas = s.get(b"a").unwrap().cas;
    let cas_put = |unique| {
        s.store(&StoreArgs { mode: StoreMode::Cas { unique }, key: b"a", value: b"2", ..StoreArgs::default() }).0
    };
    assert_eq!(cas_put(cas), StoreOutcome::Stored);
    assert_eq!(cas_put(cas), StoreOutcome::Exists);
    assert_eq!(
        s.store(&StoreArgs { mode: StoreMode::Cas { unique: 1 }, key: b"b", ..StoreArgs::default() }).0,
        StoreOutcome::NotFound
    );
    let st = s.stats.totals();
    assert_eq!((st.cas_hits, st.cas_badval, st.cas_misses, st.total_items), (1, 1, 1, 2));
    s.reset_stats();
    let st = s.stats.totals();
    assert_eq!((st.cas_hits, st.cas_badval, st.cas_misses, st.total_items), (0, 0, 0, 0));
    assert_eq!((s.len(), s.pages_moved()), (1, 0), "curr_items is a gauge and stays");
}

/// Gathers keys for `stats cachedump` as the store offers them, each at `cost(key)`.
fn recent_keys(s: &Store, limit: Option<usize>, budget: usize, cost: impl Fn(&[u8]) -> usize) -> Vec<String> {
    let mut recent = Recent::new(limit, budget);
    while !s.gather_recent(&mut recent, |f| {
        let key = String::from_utf8(f.item.key().to_vec()).unwrap();
        let c = cost(f.item.key());
        Some((key, c))
    }) {}
    recent.take_sorted()
}

/// `stats cachedump`'s order, as memcached's flat LRU has it: the last written first,
/// across seconds and within one (by CAS); a read moves an item up only by the minute
/// rule, as it moves memcached's; dead items are left out.
#[test]
fn recent_items_come_most_recently_used_first() {
    let s = store();
    let c = s.clock().clone();
    let all = |s: &Store| recent_keys(s, None, usize::MAX, |_| 1);
    for k in ["a", "b", "c"] {
        set(&s, k, "v", 0);
    }
    assert_eq!(all(&s), ["c", "b", "a"], "within one second, the newest write first");
    c.advance(1);
    set(&s, "a", "w", 0);
    assert_eq!(all(&s), ["a", "c", "b"]);
    c.advance(1);
    assert!(s.get(b"b").is_some());
    assert_eq!(all(&s), ["a", "c", "b"], "a read within the minute leaves it in place");
    c.advance(61);
    assert!(s.get(b"b").is_some());
    assert_eq!(all(&s), ["b", "a", "c"], "after a minute a read moves it up");
    set(&s, "gone", "v", c.deadline(1));
    set(&s, "d", "v", 0);
    assert_eq!(all(&s), ["d", "gone", "b", "a", "c"]);
    c.advance(1);
    assert_eq!(all(&s), ["d", "b", "a", "c"], "an expired item is not listed");
    c.advance(1);
    s.flush_all(0);
    c.advance(1);
    set(&s, "e", "v", 0);
    assert_eq!(all(&s), ["e"], "flushed items are not listed");
}

/// The limit and the budget keep the most recent items only, and a list stops at the
/// first item that does not fit, as memcached's 2 MB reply does.
#[test]
fn recent_items_stop_at_the_limit_and_the_budget() {
    let s = store();
    for i in 0..10 {
        set(&s, &format!("k{i}"), "v", 0);
    }
    set(&s, "long-key", "v", 0);
    set(&s, "k10", "v", 0);
    assert_eq!(recent_keys(&s, Some(3), usize::MAX, |_| 1), ["k10", "long-key", "k9"]);
    // Costs: 3 for k10, 8 for long-key, 2 for each kN. A budget of 12 takes k10 and
    // long-key (11) and stops at k9 (13), though smaller items follow.
    assert_eq!(recent_keys(&s, None, 12, <[u8]>::len), ["k10", "long-key"]);
    assert_eq!(recent_keys(&s, None, 13, <[u8]>::len), ["k10", "long-key", "k9"]);
    assert_eq!(recent_keys(&s, None, 2, <[u8]>::len), Vec::<String>::new(), "the newest alone does not fit");
    // What is held is pruned as it is gathered: only what can still be listed stays.
    let mut recent = Recent::new(Some(4), 9);
    while !s.gather_recent(&mut recent, |f| Some((f.item.key().to_vec(), f.item.key().len()))) {}
    assert_eq!(recent.held(), (1, 3), "k10 alone: long-key (8) would pass the budget of 9");
    assert_eq!(recent.take_sorted(), [b"k10".to_vec()]);
}

/// Gathering takes a bounded share of the store per call, so a connection gives its
/// thread's other connections a turn between calls, and every live item is offered once.
#[test]
fn recent_items_are_gathered_in_bounded_steps() {
    let s = store();
    let n = 100_000;
    for i in 0..n {
        set(&s, &format!("k{i}"), "v", 0);
    }
    let mut recent = Recent::new(None, usize::MAX);
    let (mut calls, mut offered) = (0, 0);
    loop {
        calls += 1;
        let done = s.gather_recent(&mut recent, |_| {
            offered += 1;
            Some(((), 1))
        });
        if done {
            break;
        }
    }
    assert!(calls > 1, "{n} items in one call");
    assert_eq!((offered, recent.held().0), (n, n));
}

#[test]
fn explicit_cas_names_the_stored_items_cas() {
    let s = store();
    let args =
        |mode, value: &'static [u8], cas_in| StoreArgs { mode, key: b"k", value, cas_in, ..StoreArgs::default() };
    assert_eq!(s.store(&args(StoreMode::Set, b"a", Some(100))), (StoreOutcome::Stored, 100));
    assert_eq!(s.store(&args(StoreMode::Append, b"b", Some(7))), (StoreOutcome::Stored, 7));
    assert_eq!(s.get(b"k"), Some(Hit { value: b"ab".to_vec(), flags: 0, cas: 7 }));
    // A store that does not store leaves the item's CAS.
    assert_eq!(s.store(&args(StoreMode::Add, b"c", Some(9))), (StoreOutcome::NotStored, 0));
    assert_eq!(s.get(b"k").unwrap().cas, 7);
    let a = ArithArgs { incr: true, delta: 1, cas_in: Some(55), ..ArithArgs::default() };
    s.store(&args(StoreMode::Set, b"1", None));
    assert!(matches!(s.arith(b"k", &a), ArithOutcome::Value { value: 2, cas: 55, .. }));
}

#[test]
fn append_with_vivify_stores_on_a_miss() {
    let s = store();
    let args = |mode, vivify| StoreArgs { mode, key: b"k", value: b"xy", flags: 3, vivify, ..StoreArgs::default() };
    assert_eq!(s.store(&args(StoreMode::Append, false)).0, StoreOutcome::NotStored);
    assert_eq!(s.store(&args(StoreMode::Prepend, true)).0, StoreOutcome::Stored);
    assert_eq!(s.store(&args(StoreMode::Append, true)).0, StoreOutcome::Stored);
    let hit = s.get(b"k").unwrap();
    assert_eq!((hit.value, hit.flags), (b"xyxy".to_vec(), 3));
}

#[test]
fn delete_remove_value_leaves_an_empty_item() {
    let s = store();
    s.put(StoreMode::Set, b"k", 5, 0, b"abc");
    let cas = s.get(b"k").unwrap().cas;
    let x = |invalidate, cas_in| DeleteOpts { remove_value: Some((7, 0)), invalidate, cas_in, ..DeleteOpts::default() };
    assert_eq!(s.delete(b"k", &x(false, None)), DeleteOutcome::Deleted);
    // The value goes, the item stays with the new flags and its CAS.
    assert_eq!(s.get(b"k"), Some(Hit { value: Vec::new(), flags: 7, cas }));
    assert_eq!(s.delete(b"k", &x(true, Some(42))), DeleteOutcome::Invalidated);
    assert_eq!(s.get(b"k").unwrap().cas, 42);
    assert_eq!(s.delete(b"nokey", &x(false, None)), DeleteOutcome::NotFound);
}

/// A table past `IN_PLACE_BUCKETS` grows by draining into its successor a few items per
/// write: no write moves more than a bounded number, every item stays findable in
/// either table throughout, deletes reach both, and the table memory charged is the
/// two tables' while both exist and the new one's after.
#[test]
fn large_tables_grow_in_bounded_steps() {
    let s = store();
    let bucket_bytes = |s: &Store| s.shards.iter().map(|sh| read(sh).buckets()).sum::<usize>() * BUCKET_BYTES;
    let items_bytes = |keys: &[String]| keys.iter().map(|k| item::charge_for(k.len(), 1)).sum::<usize>();
    // The empty tables' single buckets were never charged.
    let base = s.bytes() as i64 - bucket_bytes(&s) as i64;
    // Keys of shard 0 only, so that one table goes through several drains.
    let keys: Vec<String> = (0..)
        .map(|n| format!("g{n}"))
        .filter(|k| std::ptr::eq(s.locate(k.as_bytes()).1, &s.shards[0]))
        .take(20_000)
        .collect();
    let (mut drains, mut most_moved, mut deleted) = (0, 0, 0);
    for (n, key) in keys.iter().enumerate() {
        let (old_before, draining_before) = {
            let sh = read(&s.shards[0]);
            (sh.old.as_ref().map_or(0, |o| o.table.len()), sh.old.is_some())
        };
        set(&s, key, "v", 0);
        let sh = read(&s.shards[0]);
        let old_after = sh.old.as_ref().map_or(0, |o| o.table.len());
        if sh.old.is_some() && !draining_before {
            drains += 1;
        } else {
            most_moved = most_moved.max(old_before - old_after);
        }
        drop(sh);
        if n % 1000 == 999 {
            // Every item so far is found, whichever table holds it; one in ten goes.
            for (m, k) in keys[..=n].iter().enumerate() {
                if m % 10 == 3 && m + 1000 > n {
                    assert!(s.del(k.as_bytes()), "{k} deleted");
                    deleted += 1;
                } else if m % 10 != 3 {
                    assert!(s.get(k.as_bytes()).is_some(), "{k} found after {n} sets");
                }
            }
            let live: Vec<String> =
                keys[..=n].iter().enumerate().filter(|(m, _)| m % 10 != 3).map(|(_, k)| k.clone()).collect();
            let want = base + (bucket_bytes(&s) + items_bytes(&live)) as i64;
            assert_eq!(s.bytes() as i64, want, "charges after {n} sets");
        }
    }
    assert!(drains >= 4, "{drains} drains (1,024 buckets to 32,768)");
    assert!(most_moved <= 64, "a write moved {most_moved} items");
    assert_eq!(s.len(), keys.len() - deleted);
    // A drain no write moves along is finished by the background pass.
    let mut more = (0..).map(|n| format!("h{n}")).filter(|k| std::ptr::eq(s.locate(k.as_bytes()).1, &s.shards[0]));
    let mut added = Vec::new();
    while read(&s.shards[0]).old.is_none() {
        let k = more.next().expect("keys");
        set(&s, &k, "v", 0);
        added.push(k);
    }
    for _ in 0..100 {
        s.reclaim_expired(16);
    }
    assert!(read(&s.shards[0]).old.is_none(), "the background pass ended the drain");
    assert!(added.iter().all(|k| s.get(k.as_bytes()).is_some()));
    assert!(keys.iter().step_by(10).all(|k| s.get(k.as_bytes()).is_some()));
    // Deleting most items lets the background pass shrink the table (at once: see
    // `Shard::compact`).
    for k in &added {
        assert!(s.del(k.as_bytes()));
    }
    let grown = read(&s.shards[0]).buckets();
    for (m, k) in keys.iter().enumerate() {
        if m % 10 != 3 && m % 50 != 0 {
            assert!(s.del(k.as_bytes()));
        }
    }
    for _ in 0..20 {
        s.reclaim_expired(16);
    }
    let sh = read(&s.shards[0]);
    assert!(sh.old.is_none() && sh.buckets() * 8 <= grown, "{grown} buckets -> {}", sh.buckets());
    drop(sh);
    for k in keys.iter().step_by(50) {
        assert!(s.get(k.as_bytes()).is_some(), "{k} kept through the shrink");
    }
}

/// Moving items out of sparse slab pages walks a large table a bounded number of buckets
/// per hold of its lock, and still moves every item out of the doomed pages.
#[test]
fn moving_out_of_doomed_pages_reaches_every_item_of_a_large_table() {
    let s = store();
    let value = |i: usize| format!("{i:0100}");
    let keys: Vec<String> = (0..)
        .map(|n| format!("m{n}"))
        .filter(|k| std::ptr::eq(s.locate(k.as_bytes()).1, &s.shards[0]))
        .take(12_000)
        .collect();
    for (i, k) in keys.iter().enumerate() {
        set(&s, k, &value(i), 0);
    }
    assert!(read(&s.shards[0]).buckets() > 2 * evict::MOVE_STEP);
    for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 4 != 0) {
        assert!(s.del(k.as_bytes()), "{i}");
    }
    s.defragment(false);
    let moved = s.stats.totals().relocated;
    assert!(s.pages_moved() > 0 && moved > 0, "sparse pages were emptied");
    let sh = read(&s.shards[0]);
    let left = sh.occupied().filter(|&i| sh.item(i).relocated(&s.slab).is_some()).count();
    assert_eq!(left, 0, "items left in doomed pages after {moved} moved");
    drop(sh);
    for (i, k) in keys.iter().enumerate().step_by(4) {
        assert_eq!(s.get(k.as_bytes()).expect("kept").value, value(i).as_bytes());
    }
}

/// An item stored without a deadline has no room for one in its header: `touch` (and
/// `gat`, `mg T`, `md I T`) gives it one by a copy, charged at its new size, and the
/// deadline then holds as any other.
#[test]
fn a_deadline_given_later_is_kept_and_charged() {
    let s = store();
    let c = s.clock().clone();
    set(&s, "k", "123456", 0);
    let table = s.bytes() - item::charge_for(1, 6);
    assert_eq!(item::charge_for(1, 6), 24, "15 + 2 + 1 + 6 bytes, a 24-byte slot");
    assert!(s.touch(b"k", c.deadline(5)));
    assert_eq!(s.bytes(), table + 32, "4 bytes of exptime: a 32-byte slot");
    assert_eq!(s.get(b"k").expect("kept").value, b"123456");
    assert!(s.touch(b"k", 0), "and back to no deadline, in place");
    assert_eq!(s.bytes(), table + 32);
    assert!(s.touch(b"k", c.deadline(5)));
    c.advance(5);
    assert!(s.get(b"k").is_none(), "expired at its deadline");
    assert_eq!(s.bytes(), table, "refunded at the size it had");
}

/// A cache at its memory limit does not drain: a table there that fills (tombstones left
/// by eviction) or shrinks is rebuilt at once, since holding two tables would cost items.
#[test]
fn at_the_limit_tables_are_rebuilt_at_once() {
    let s = Store::new(Clock::starting_at(1_700_000_000), 2 << 20, 1 << 20);
    let value = "v".repeat(100);
    let keys = (0..).map(|n| format!("l{n}")).filter(|k| std::ptr::eq(s.locate(k.as_bytes()).1, &s.shards[0]));
    let (mut drained, mut evicting_sets) = (false, 0);
    for k in keys.take(30_000) {
        set(&s, &k, &value, 0);
        let sh = read(&s.shards[0]);
        drained |= sh.old.is_some();
        if s.stats.totals().evictions > 0 {
            evicting_sets += 1;
            assert!(sh.old.is_none(), "a drain at the limit, after {evicting_sets} sets there");
        }
    }
    assert!(drained, "the table drained while the cache grew");
    assert!(evicting_sets > 10_000 && s.len() > 10_000, "{evicting_sets} sets at the limit, {} items", s.len());
}
