//! Warm restarts: `persist::save` of a filled store to a state file, and `persist::load` of
//! that file into an empty store, at a given number of items (keys `key:<n>`, 100-byte
//! values, no expiry).
//!
//! For each item count it fills a store (with room for every item: nothing is evicted),
//! then runs `--rounds` rounds of a save (to a file in a directory of its own under the
//! temporary directory, removed at the end) and a load of it into a fresh store, and
//! prints each round and the medians: seconds, items per second and MB per second (file
//! bytes over the time; MB = 10^6 bytes) for the save and for the load, the file's size
//! and the items loaded (which must be every item saved). A save ends with an fsync of
//! the file and of its directory, so its time includes writing it to the disk; the load
//! reads the file just saved, from the page cache (a load after a reboot reads the disk).
//!
//! ```text
//! cargo bench --bench persist                                   # 1,000,000 items, 3 rounds
//! cargo bench --bench persist -- --items 1000000,10000000       # also 10M (about 4 GB of memory)
//! PERSIST_ITEMS=10000000 PERSIST_ROUNDS=5 cargo bench --bench persist
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it saves and loads 10,000
//! items once, a check that the bench works, not a measurement.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use larder::clock::Clock;
use larder::persist;
use larder::store::{Store, StoreArgs, StoreOutcome, charge_for};

const VALUE_SIZE: usize = 100;
const VALUE: [u8; VALUE_SIZE] = [b'v'; VALUE_SIZE];
/// Memory per item beyond its block, for the store's limit: its table bucket and slack.
const TABLE_SLACK: usize = 64;

struct Args {
    items: Vec<usize>,
    rounds: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut items = env("PERSIST_ITEMS");
    let mut rounds = env("PERSIST_ROUNDS");
    let mut dir = env("PERSIST_DIR");
    let mut bench = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--items" => items = Some(value()?),
            "--rounds" => rounds = Some(value()?),
            "--dir" => dir = Some(value()?),
            // What `cargo bench` passes to every bench target.
            "--bench" => bench = true,
            "-h" | "--help" => {
                println!(
                    "usage: persist [--items N[,N...]] [--rounds R] [--dir D]\n  \
                     (or PERSIST_ITEMS, PERSIST_ROUNDS, PERSIST_DIR; default 1000000 items, 3 rounds, the temp dir)"
                );
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    // Under `cargo test`: a small check, unless told otherwise.
    let (default_items, default_rounds) = if bench { ("1000000", "3") } else { ("10000", "1") };
    let items = items
        .as_deref()
        .unwrap_or(default_items)
        .split(',')
        .map(|n| n.trim().replace('_', "").parse().map_err(|_| format!("--items: bad count '{n}'")))
        .collect::<Result<Vec<usize>, _>>()?;
    let rounds = rounds.as_deref().unwrap_or(default_rounds).parse().map_err(|_| "--rounds: bad number")?;
    if items.contains(&0) || rounds == 0 {
        return Err("--items and --rounds must be positive".into());
    }
    let dir = dir.map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    Ok(Args { items, rounds, dir })
}

/// A directory of the bench's own, removed (with the state file) when dropped, also when
/// a check fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: &Path) -> std::io::Result<Self> {
        let path = parent.join(format!("larder-persist-bench-{}", std::process::id()));
        std::fs::create_dir(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key(buf: &mut Vec<u8>, n: usize) {
    buf.clear();
    buf.extend_from_slice(b"key:");
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A store with room for `items` items of [`VALUE_SIZE`] bytes and their keys.
fn empty(items: usize) -> Store {
    let per_item = charge_for(b"key:".len() + items.to_string().len(), VALUE_SIZE) + TABLE_SLACK;
    let limit = (items * per_item * 2).max(64 << 20);
    Store::new(Clock::starting_at(1_700_000_000), limit, 1 << 20)
}

fn filled(items: usize) -> Store {
    let store = empty(items);
    let mut k = Vec::with_capacity(32);
    for n in 0..items {
        key(&mut k, n);
        let args = StoreArgs { key: &k, value: &VALUE, ..StoreArgs::default() };
        assert_eq!(store.store(&args).0, StoreOutcome::Stored, "item {n} not stored");
    }
    assert_eq!(store.len(), items, "the store does not hold every item (evictions?)");
    store
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

fn rates(items: usize, bytes: u64, secs: f64) -> String {
    format!("{:>6.3} s  {:>10.0} items/s  {:>7.1} MB/s", secs, items as f64 / secs, bytes as f64 / 1e6 / secs)
}

fn run(items: usize, rounds: usize, dir: &Path) {
    let start = Instant::now();
    let store = filled(items);
    let fill = start.elapsed();
    println!(
        "persist/{items}: filled in {:.2} s ({:.0} items/s), {:.1} MB charged, limit {:.1} MB",
        fill.as_secs_f64(),
        items as f64 / fill.as_secs_f64(),
        store.bytes() as f64 / 1e6,
        store.limit() as f64 / 1e6
    );
    let tmp = TempDir::new(dir).unwrap_or_else(|e| panic!("cannot make a directory in {}: {e}", dir.display()));
    let path = tmp.0.join("state");
    let (mut saves, mut loads) = (Vec::new(), Vec::new());
    let mut file_bytes = 0;
    for round in 1..=rounds {
        let t = Instant::now();
        let saved = persist::save(&store, &path, Duration::ZERO).expect("save");
        let save = t.elapsed().as_secs_f64();
        assert_eq!(saved.totals.items, items as u64, "items saved");
        file_bytes = saved.file_bytes;
        assert_eq!(std::fs::metadata(&path).expect("the state file").len(), file_bytes);

        let fresh = empty(items);
        let t = Instant::now();
        let loaded = persist::load(&fresh, &path).expect("load").expect("the state file is there");
        let load = t.elapsed().as_secs_f64();
        assert_eq!(loaded.items, items as u64, "items loaded: {loaded:?}");
        assert_eq!(fresh.len(), items, "items in the loaded store");
        // Dropped outside the timing: 10M items take a while to free.
        drop(fresh);
        println!(
            "persist/{items} round {round}: save {}   load {}",
            rates(items, file_bytes, save),
            rates(items, file_bytes, load)
        );
        saves.push(save);
        loads.push(load);
    }
    let (save, load) = (median(&saves), median(&loads));
    println!(
        "persist/{items}: file {:.1} MB ({:.1} bytes/item); medians of {rounds}: save {}   load {}; {items} items loaded",
        file_bytes as f64 / 1e6,
        file_bytes as f64 / items as f64,
        rates(items, file_bytes, save),
        rates(items, file_bytes, load)
    );
    println!(
        "RESULT items={items} rounds={rounds} file_bytes={file_bytes} save_s={save:.4} save_items_per_s={:.0} \
         save_mb_per_s={:.1} load_s={load:.4} load_items_per_s={:.0} load_mb_per_s={:.1} loaded={items}",
        items as f64 / save,
        file_bytes as f64 / 1e6 / save,
        items as f64 / load,
        file_bytes as f64 / 1e6 / load
    );
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("persist: {e}");
        std::process::exit(2)
    });
    for &items in &args.items {
        run(items, args.rounds, &args.dir);
    }
}
