//! Memory under attack, run by hand:
//!
//! ```sh
//! cargo build --release --examples
//! target/release/examples/slow_sets --conns 1000 --size 1000000
//! ```
//!
//! Starts `target/release/larder -m 64 -o read_buf_mem_limit=0` (or `$LARDER_BIN`): with no
//! buffer budget, so that every set can be held at once (with the default budget most are
//! refused; `scripts/connbudget` measures that ceiling). It opens `--conns` connections and
//! has each send a `set` of `--size` bytes: the header and most of the data at once (so
//! every connection holds an almost whole item at the same time, the worst case), then the
//! last `--tail` bytes a few bytes at a time, round robin, over about `--trickle-secs`. The
//! server's RSS is sampled throughout and checked against the bound README documents:
//! `-m` plus, per connection, one item (`-I`) and 128 KiB of buffers, plus 64 MiB for the
//! process itself. At the end every set must have been answered `STORED`, and a header-only
//! flood (connections that declare 1 MB and send nothing more) must cost almost nothing.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Server, arg};

const MIB: u64 = 1024 * 1024;

fn main() {
    let conns: usize = arg("--conns", 1000);
    let size: usize = arg("--size", 1_000_000);
    let tail: usize = arg("--tail", 4096);
    let trickle_secs: u64 = arg("--trickle-secs", 20);
    let memory_mib: u64 = 64;
    let log = std::env::temp_dir().join(format!("larder-slow-sets-{}.log", std::process::id()));
    let srv = Server::start(
        &["-m", &memory_mib.to_string(), "-c", &(conns + 100).to_string(), "-o", "read_buf_mem_limit=0"],
        log,
    );
    let (base, _) = srv.rss_kib();
    println!(
        "slow_sets: {conns} connections x {size}-byte sets; server pid {}, idle RSS {} MiB",
        srv.child.id(),
        base / 1024
    );

    let start = Instant::now();
    let mut socks: Vec<TcpStream> = (0..conns).map(|_| srv.connect()).collect();
    let data = vec![b'z'; size];
    for (i, s) in socks.iter_mut().enumerate() {
        s.write_all(format!("set slow{i} 0 0 {size}\r\n").as_bytes()).unwrap();
        s.write_all(&data[..size - tail]).unwrap();
    }
    let (rss, _) = srv.rss_kib();
    println!(
        "  all {conns} connections hold {} bytes of their item: RSS {} MiB ({:.1} s)",
        size - tail,
        rss / 1024,
        start.elapsed().as_secs_f64()
    );

    // The tail, a few bytes at a time.
    let step = 4;
    let rounds = tail / step;
    let pause = Duration::from_secs(trickle_secs) / rounds as u32;
    let mut peak_kib = 0;
    for r in 0..rounds {
        for s in &mut socks {
            s.write_all(&data[size - tail + r * step..size - tail + (r + 1) * step]).unwrap();
        }
        if r % (rounds / 10).max(1) == 0 {
            let (rss, _) = srv.rss_kib();
            peak_kib = peak_kib.max(rss);
            println!("  trickling: {:>3}% of the tail sent, RSS {} MiB", r * 100 / rounds, rss / 1024);
        }
        std::thread::sleep(pause);
    }
    let mut stored = 0;
    for s in &mut socks {
        s.write_all(&data[size - tail + rounds * step..]).unwrap();
        s.write_all(b"\r\n").unwrap();
    }
    for s in &mut socks {
        let mut reply = [0u8; 8];
        if s.read_exact(&mut reply).is_ok() && &reply == b"STORED\r\n" {
            stored += 1;
        }
    }
    let (rss_after, hwm) = srv.rss_kib();
    drop(socks);
    std::thread::sleep(Duration::from_secs(1));
    let (rss_closed, _) = srv.rss_kib();

    // Header-only flood: a declared length must not be allocated up front.
    let before = srv.rss_kib().0;
    let mut headers: Vec<TcpStream> = (0..conns).map(|_| srv.connect()).collect();
    for (i, s) in headers.iter_mut().enumerate() {
        s.write_all(format!("set hdr{i} 0 0 {size}\r\nab").as_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let header_flood = srv.rss_kib().0.saturating_sub(before);
    drop(headers);

    let item_max = MIB; // -I default
    let per_conn = item_max + 128 * 1024;
    let bound = memory_mib * MIB + conns as u64 * per_conn + 64 * MIB;
    println!("  stored: {stored}/{conns}; evictions {}", srv.stat("evictions"));
    println!(
        "  RSS: peak {} MiB (VmHWM), after the sets {} MiB, after closing {} MiB",
        hwm / 1024,
        rss_after / 1024,
        rss_closed / 1024
    );
    println!("  header-only flood of {conns} connections: +{} MiB", header_flood / 1024);
    println!("  bound: -m {memory_mib} MiB + {conns} x (1 MiB item + 128 KiB buffers) + 64 MiB = {} MiB", bound / MIB);
    let mut ok = true;
    if hwm * 1024 > bound {
        println!("  FAIL: peak RSS over the bound");
        ok = false;
    }
    if stored != conns {
        println!("  FAIL: not every set was stored");
        ok = false;
    }
    if header_flood * 1024 > conns as u64 * 128 * 1024 {
        println!("  FAIL: headers alone cost more than 128 KiB per connection");
        ok = false;
    }
    let panics = srv.panics();
    if !panics.is_empty() {
        println!("  FAIL: panics in the log: {panics:?}");
        ok = false;
    }
    srv.stop();
    if !ok {
        std::process::exit(1);
    }
    println!("  OK");
}
