//! Model check: random command sequences run against the real `Store` and against
//! a plain `HashMap` model written from memcached's rules must give the same results, CAS
//! uniques included. The memory limit is far above what a sequence stores, so nothing is
//! evicted; time moves only when a sequence says so.
//!
//! The model's rules, as memcached has them:
//! - an item is dead once its deadline (not 0) is reached, or once `flush_all` ran after it
//!   was written; dead items count as absent;
//! - `set` stores; `add` only when absent; `replace`, `append`, `prepend` only when present;
//!   `cas` stores when present with the same unique (`EXISTS` when it differs, `NOT_FOUND`
//!   when absent); `append`/`prepend` keep flags and deadline, and refuse (`NOT_STORED`) to
//!   grow an item past the item size limit;
//! - every successful storage, `incr`/`decr` and immediate `flush_all` takes the next CAS
//!   unique from one counter; `touch` keeps it;
//! - `incr` wraps at 2^64, `decr` stops at 0; a value `strtoull` does not read as a whole
//!   u64 is refused (see [`numeric`] for its quirks); a result no longer than the old value
//!   is space-padded to its length, a longer one replaces it.

use std::collections::HashMap;

use larder::clock::{Clock, RelTime};
use larder::memcached::StoreMode;
use larder::store::{ArithArgs, ArithOutcome, DeleteOpts, DeleteOutcome, Lookup, Store, StoreArgs, StoreOutcome};
use proptest::prelude::*;

const KEYS: [&[u8]; 4] = [b"a", b"bb", b"counter", b"k:3"];
const MAX_ITEM: usize = 2048;
/// memcached's item header as `-I` counts it (see `memcached::item_too_large`).
const ITEM_HEADER: usize = 59;

#[derive(Debug, Clone)]
enum Unique {
    /// The key's current unique (or 1 when absent).
    Current,
    /// One below the current one: a writer that lost a race.
    Stale,
    Any(u64),
}

#[derive(Debug, Clone)]
enum Op {
    Store { mode: u8, key: usize, flags: u32, exptime: i32, value: Vec<u8>, unique: Unique },
    Get { key: usize },
    GetAndTouch { key: usize, exptime: i32 },
    Touch { key: usize, exptime: i32 },
    Delete { key: usize },
    Arith { key: usize, incr: bool, delta: u64 },
    FlushAll,
    Advance { secs: u32 },
}

#[derive(Debug, Clone)]
struct Item {
    value: Vec<u8>,
    flags: u32,
    cas: u64,
    deadline: RelTime,
}

/// The reference: a map, a CAS counter and the clock's exptime rule.
#[derive(Default)]
struct Model {
    items: HashMap<usize, Item>,
    last_cas: u64,
}

impl Model {
    fn live(&mut self, key: usize, now: RelTime) -> Option<&mut Item> {
        if self.items.get(&key).is_some_and(|it| it.deadline != 0 && it.deadline <= now) {
            self.items.remove(&key);
        }
        self.items.get_mut(&key)
    }

    fn next_cas(&mut self) -> u64 {
        self.last_cas += 1;
        self.last_cas
    }

    fn hit(it: &Item) -> Hit {
        Hit { value: it.value.clone(), flags: it.flags, cas: it.cas }
    }
}

/// What a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hit {
    value: Vec<u8>,
    flags: u32,
    cas: u64,
}

/// A read through `opts`, copied out.
fn read(store: &Store, key: &[u8], opts: &Lookup) -> Option<Hit> {
    store.lookup(key, opts, |f| Hit { value: f.item.value().to_vec(), flags: f.item.flags(), cas: f.item.cas() })
}

/// A u64 as memcached's `safe_strtoull` reads item data for `incr`: C's `strtoull` (leading
/// whitespace, an optional sign, digits; overflow refused), then the end or a whitespace or
/// NUL byte must follow. A `-` sign is refused only when the negated result would be
/// negative as a signed number, so "-11000000000000000000" is 7446744073709551616.
fn numeric(value: &[u8]) -> Option<u64> {
    let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = value.iter().take_while(|&&b| space(b)).count();
    let rest = &value[start..];
    let (negative, rest) = match rest.first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits).is_some_and(|&b| !space(b) && b != 0) {
        return None;
    }
    let magnitude: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let v = if negative { magnitude.wrapping_neg() } else { magnitude };
    if negative && (v as i64) < 0 {
        return None;
    }
    Some(v)
}

fn value_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..12),
        3 => any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        1 => (0u64..1000).prop_map(|n| format!("  {n}").into_bytes()),
        1 => (0u64..1000).prop_map(|n| format!("{n}   ").into_bytes()),
        1 => Just(b"18446744073709551615".to_vec()),
        1 => Just(b"123456789012345678901".to_vec()),
        1 => prop_oneof![Just(b"-1".to_vec()), Just(b"-0".to_vec()), Just(b"+5".to_vec())],
        1 => Just(b"12a".to_vec()),
        1 => (500usize..900).prop_map(|n| vec![b'x'; n]),
    ]
}

fn exptime_strategy() -> impl Strategy<Value = i32> {
    prop_oneof![4 => Just(0), 4 => 1i32..5, 1 => Just(-1), 1 => Just(i32::MIN), 1 => Just(2_592_001)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let unique =
        prop_oneof![2 => Just(Unique::Current), 1 => Just(Unique::Stale), 1 => any::<u64>().prop_map(Unique::Any)];
    prop_oneof![
        6 => (0u8..6, key.clone(), prop_oneof![Just(0u32), any::<u32>()], exptime_strategy(), value_strategy(), unique)
            .prop_map(|(mode, key, flags, exptime, value, unique)| Op::Store { mode, key, flags, exptime, value, unique }),
        3 => key.clone().prop_map(|key| Op::Get { key }),
        1 => (key.clone(), exptime_strategy()).prop_map(|(key, exptime)| Op::GetAndTouch { key, exptime }),
        1 => (key.clone(), exptime_strategy()).prop_map(|(key, exptime)| Op::Touch { key, exptime }),
        1 => key.clone().prop_map(|key| Op::Delete { key }),
        3 => (key.clone(), any::<bool>(), prop_oneof![0u64..100, any::<u64>(), Just(u64::MAX)])
            .prop_map(|(key, incr, delta)| Op::Arith { key, incr, delta }),
        1 => Just(Op::FlushAll),
        2 => (0u32..4).prop_map(|secs| Op::Advance { secs }),
    ]
}

/// Runs one op on both sides and compares what each answered.
fn step(store: &Store, clock: &Clock, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let now = clock.now();
    match op {
        Op::Store { mode, key, flags, exptime, value, unique } => {
            let current = model.live(*key, now).map(|it| it.cas);
            let unique = match unique {
                Unique::Current => current.unwrap_or(1),
                Unique::Stale => current.unwrap_or(1).saturating_sub(1),
                Unique::Any(u) => *u,
            };
            let mode = match mode {
                0 => StoreMode::Set,
                1 => StoreMode::Add,
                2 => StoreMode::Replace,
                3 => StoreMode::Append,
                4 => StoreMode::Prepend,
                _ => StoreMode::Cas { unique },
            };
            let deadline = clock.deadline(*exptime);
            let got = store
                .store(&StoreArgs {
                    mode,
                    key: KEYS[*key],
                    flags: *flags,
                    exptime: deadline,
                    value,
                    ..StoreArgs::default()
                })
                .0;
            let key_len = KEYS[*key].len();
            let want = match (mode, model.live(*key, now).is_some()) {
                (StoreMode::Add, true) | (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, false) => {
                    StoreOutcome::NotStored
                }
                (StoreMode::Cas { .. }, false) => StoreOutcome::NotFound,
                (StoreMode::Cas { unique }, true) if Some(unique) != current => StoreOutcome::Exists,
                (StoreMode::Append | StoreMode::Prepend, true) => {
                    let it = model.items.get(key).unwrap();
                    let flags_len = if it.flags == 0 { 0 } else { 4 };
                    if ITEM_HEADER + key_len + flags_len + it.value.len() + value.len() > MAX_ITEM {
                        StoreOutcome::NotStored
                    } else {
                        let cas = model.next_cas();
                        let it = model.items.get_mut(key).unwrap();
                        if mode == StoreMode::Append {
                            it.value.extend_from_slice(value);
                        } else {
                            it.value.splice(0..0, value.iter().copied());
                        }
                        it.cas = cas;
                        StoreOutcome::Stored
                    }
                }
                _ => {
                    let cas = model.next_cas();
                    model.items.insert(*key, Item { value: value.clone(), flags: *flags, cas, deadline });
                    StoreOutcome::Stored
                }
            };
            prop_assert_eq!(got, want, "{:?}", op);
        }
        Op::Get { key } => {
            let want = model.live(*key, now).map(|it| Model::hit(it));
            prop_assert_eq!(read(store, KEYS[*key], &Lookup::GET), want, "{:?}", op);
        }
        Op::GetAndTouch { key, exptime } => {
            let deadline = clock.deadline(*exptime);
            let want = model.live(*key, now).map(|it| {
                it.deadline = deadline;
                Model::hit(it)
            });
            prop_assert_eq!(read(store, KEYS[*key], &Lookup::touch(deadline)), want, "{:?}", op);
        }
        Op::Touch { key, exptime } => {
            let deadline = clock.deadline(*exptime);
            let want = model.live(*key, now).map(|it| it.deadline = deadline).is_some();
            prop_assert_eq!(store.lookup(KEYS[*key], &Lookup::touch(deadline), |_| ()).is_some(), want, "{:?}", op);
        }
        Op::Delete { key } => {
            let want = model.live(*key, now).is_some();
            model.items.remove(key);
            prop_assert_eq!(
                store.delete(KEYS[*key], &DeleteOpts::default()) == DeleteOutcome::Deleted,
                want,
                "{:?}",
                op
            );
        }
        Op::Arith { key, incr, delta } => {
            // (value, CAS), or the refusal.
            let got = match store.arith(KEYS[*key], &ArithArgs { incr: *incr, delta: *delta, ..ArithArgs::default() }) {
                ArithOutcome::Value { value, cas, .. } => Ok((value, cas)),
                other => Err(format!("{other:?}")),
            };
            let want = match model.live(*key, now).map(|it| numeric(&it.value)) {
                None => Err("NotFound".to_string()),
                Some(None) => Err("NonNumeric".to_string()),
                Some(Some(v)) => {
                    let n = if *incr { v.wrapping_add(*delta) } else { v.saturating_sub(*delta) };
                    let cas = model.next_cas();
                    let it = model.items.get_mut(key).unwrap();
                    let mut digits = n.to_string().into_bytes();
                    if digits.len() <= it.value.len() {
                        digits.resize(it.value.len(), b' ');
                    }
                    it.value = digits;
                    it.cas = cas;
                    Ok((n, cas))
                }
            };
            prop_assert_eq!(got, want, "{:?}", op);
        }
        Op::FlushAll => {
            store.flush_all(0);
            model.items.clear();
            model.next_cas();
        }
        Op::Advance { secs } => clock.advance(*secs),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_the_model(ops in proptest::collection::vec(op_strategy(), 1..80)) {
        let clock = Clock::starting_at(1_800_000_000);
        let store = Store::new(clock.clone(), 64 << 20, MAX_ITEM);
        let mut model = Model::default();
        for op in &ops {
            step(&store, &clock, &mut model, op)?;
        }
        // Everything still there reads back the same at the end, and after time passes.
        for secs in [0, 3] {
            clock.advance(secs);
            for (i, key) in KEYS.iter().enumerate() {
                let want = model.live(i, clock.now()).map(|it| Model::hit(it));
                prop_assert_eq!(read(&store, key, &Lookup::GET), want, "final read of {:?}", key);
            }
        }
    }
}

#[test]
fn the_model_reads_numbers_as_memcached_does() {
    assert_eq!(numeric(b"12"), Some(12));
    assert_eq!(numeric(b"  12"), Some(12));
    assert_eq!(numeric(b"12   "), Some(12));
    assert_eq!(numeric(b"18446744073709551615"), Some(u64::MAX));
    assert_eq!(numeric(b"-0"), Some(0));
    assert_eq!(numeric(b"+7"), Some(7));
    assert_eq!(numeric(b"-11000000000000000000"), Some(7_446_744_073_709_551_616));
    for bad in [&b""[..], b"-1", b"12a", b"123456789012345678901", b" ", b"abc", b"--1"] {
        assert_eq!(numeric(bad), None, "{bad:?}");
    }
}
