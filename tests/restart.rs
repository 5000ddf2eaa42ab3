//! Warm restarts of the real binary with `-e`: every way of stopping saves, a restart
//! gives back what was there (values, flags, CAS, deadlines), a `kill -9` in the middle of
//! a save leaves the previous file, and a bad file is set aside while the server serves.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command};
use std::time::{Duration, Instant};

use common::Client;

const BIN: &str = env!("CARGO_BIN_EXE_larder");

/// A directory of the test's own, removed at the end.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("larder-restart-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn state(&self) -> PathBuf {
        self.0.join("state")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Larder {
    child: Child,
    addr: String,
    log: BufReader<ChildStderr>,
}

fn start(state: &Path, extra: &[&str], env: &[(&str, &str)]) -> Larder {
    let state = state.to_str().unwrap();
    let args: Vec<&str> =
        ["-p", "0", "-l", "127.0.0.1", "-t", "2", "-e", state].into_iter().chain(extra.iter().copied()).collect();
    let (child, addr, log) = common::start_binary_with(BIN, &args, env);
    Larder { child, addr, log }
}

impl Larder {
    fn client(&self) -> Client {
        Client::to(&self.addr)
    }

    /// Stops it with `sig` and waits: it must exit 0. Returns the rest of its log.
    fn stop(mut self, sig: &str) -> String {
        signal(self.child.id(), sig);
        assert_eq!(self.child.wait().unwrap().code(), Some(0));
        let mut rest = String::new();
        self.log.read_to_string(&mut rest).unwrap();
        rest
    }
}

impl Drop for Larder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap().success());
}

/// The reply lines to `req` up to and including `END`.
fn lines(c: &mut Client, req: &str) -> Vec<String> {
    c.send(req.as_bytes());
    let mut out = Vec::new();
    loop {
        let l = c.line();
        let end = l == "END" || l == "EN";
        out.push(l);
        if end {
            return out;
        }
    }
}

/// Stores `k0`.. with values of `len` bytes, pipelined in one write per 100.
fn fill(c: &mut Client, n: usize, len: usize) {
    let value = "v".repeat(len);
    for start in (0..n).step_by(100) {
        let batch: String = (start..n.min(start + 100)).map(|i| format!("set k{i} 0 0 {len}\r\n{value}\r\n")).collect();
        c.send(batch.as_bytes());
        for _ in start..n.min(start + 100) {
            c.expect(b"STORED\r\n");
        }
    }
}

/// Polls `stat` until `ok` holds (a real process's clock cannot be advanced by hand).
fn wait_for_stat(c: &mut Client, stat: &str, ok: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: u64 = c.stat(stat).parse().unwrap();
        if ok(v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{stat} stayed at {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_saves_and_the_restart_gives_everything_back() {
    let dir = Dir::new("term");
    let a = start(&dir.state(), &[], &[]);
    let mut c = a.client();
    c.roundtrip(b"set plain 0 0 5\r\nhello\r\n", b"STORED\r\n");
    c.roundtrip(b"set flagged 4294967295 0 3\r\nabc\r\n", b"STORED\r\n");
    c.roundtrip(b"set ttl 7 1000 2\r\nxy\r\n", b"STORED\r\n");
    c.roundtrip(b"ms YmluYXJ5 4 b\r\n\x00\x01\xff\x7f\r\n", b"HD\r\n"); // key "binary", in base64
    let before = lines(&mut c, "gets plain flagged ttl binary\r\n");
    assert_eq!(before.len(), 9, "{before:?}");
    let log = a.stop("TERM");
    assert!(log.contains("state saved"), "{log}");

    let b = start(&dir.state(), &[], &[]);
    let mut c = b.client();
    assert_eq!(lines(&mut c, "gets plain flagged ttl binary\r\n"), before, "values, flags and CAS");
    // The deadline is kept as a time, not restarted: 1000 s at most are left.
    c.send(b"me ttl\r\n");
    let ttl = c.line();
    // (memcached's `me` prints the seconds left with a minus sign.)
    let exp = ttl.split(" exp=").nth(1).unwrap().split(' ').next().unwrap();
    let left: u64 = exp.trim_start_matches('-').parse().unwrap();
    assert!((990..=1000).contains(&left), "{ttl:?}");
    assert_eq!(c.stat("state_file_load_items"), "4");
    assert_eq!(c.stat("curr_items"), "4");
    assert_eq!(c.stat("total_items"), "0", "counters start afresh");
    // A new CAS is above every restored one.
    let max_before: u64 = before
        .iter()
        .filter(|l| l.starts_with("VALUE"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .max()
        .unwrap();
    c.send(b"ms fresh 1 c\r\nz\r\n");
    let cas: u64 = c.line().strip_prefix("HD c").unwrap().parse().unwrap();
    assert!(cas > max_before, "{cas} > {max_before}");
    b.stop("TERM");
}

#[test]
fn sigint_sigusr1_and_shutdown_save_too() {
    let dir = Dir::new("stops");
    let a = start(&dir.state(), &["-A"], &[]);
    a.client().roundtrip(b"set one 0 0 1\r\n1\r\n", b"STORED\r\n");
    a.stop("INT");
    let b = start(&dir.state(), &["-A"], &[]);
    b.client().roundtrip(b"set two 0 0 1\r\n2\r\n", b"STORED\r\n");
    b.stop("USR1");
    let mut c_ = start(&dir.state(), &["-A"], &[]);
    let mut c = c_.client();
    c.roundtrip(b"set three 0 0 1\r\n3\r\n", b"STORED\r\n");
    c.send(b"shutdown\r\n");
    assert_eq!(c_.child.wait().unwrap().code(), Some(0));
    let d = start(&dir.state(), &[], &[]);
    let mut c = d.client();
    c.roundtrip(
        b"get one two three\r\n",
        b"VALUE one 0 1\r\n1\r\nVALUE two 0 1\r\n2\r\nVALUE three 0 1\r\n3\r\nEND\r\n",
    );
    d.stop("TERM");
}

#[test]
fn kill_9_in_the_middle_of_a_save_leaves_the_previous_file() {
    let dir = Dir::new("kill9");
    // Saves every second, each frame followed by a 300 ms pause: a save of 3 MiB takes a
    // second or more, so a kill lands inside one.
    let a = start(&dir.state(), &["-o", "snapshot_interval=1"], &[("LARDER_TEST_SAVE_PAUSE_MS", "300")]);
    let mut c = a.client();
    fill(&mut c, 3000, 1000);
    wait_for_stat(&mut c, "state_file_last_save_items", |n| n == 3000);
    let saved = std::fs::read(dir.state()).unwrap();
    let tail = &saved[saved.len() - larder::persist::format::END_FRAME as usize..];
    let items = larder::persist::format::read_totals(tail).unwrap().items;
    c.roundtrip(b"set after 0 0 1\r\nx\r\n", b"STORED\r\n");
    // The next save is under way once its temporary file has something in it.
    let tmp = dir.0.join("state.tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::metadata(&tmp).map_or(true, |m| m.len() < 1 << 20) {
        assert!(Instant::now() < deadline, "no save started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut a = a;
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    assert_eq!(std::fs::read(dir.state()).unwrap(), saved, "the state file is the last whole save");

    let b = start(&dir.state(), &[], &[]);
    let mut c = b.client();
    assert_eq!(c.stat("state_file_load_items"), items.to_string());
    assert_eq!(items, 3000);
    assert_eq!(c.stat("state_file_load_failures"), "0");
    c.roundtrip(b"get k2999 after\r\n", format!("VALUE k2999 0 1000\r\n{}\r\nEND\r\n", "v".repeat(1000)).as_bytes());
    // The torn temporary file is simply replaced by the next save.
    let log = b.stop("TERM");
    assert!(log.contains("state saved"), "{log}");
    assert!(!tmp.exists());
}

#[test]
fn bad_state_files_are_set_aside_and_the_server_serves() {
    let dir = Dir::new("bad");
    let a = start(&dir.state(), &[], &[]);
    let mut c = a.client();
    fill(&mut c, 200, 10);
    a.stop("TERM");
    let good = std::fs::read(dir.state()).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    let cases: [(&str, Vec<u8>); 4] = [
        ("truncated", good[..good.len() - 10].to_vec()),
        ("bit-flipped", flipped),
        ("empty", Vec::new()),
        ("foreign", b"VALUE k 0 1\r\nx\r\nEND\r\n".to_vec()),
    ];
    for (what, bytes) in cases {
        std::fs::write(dir.state(), &bytes).unwrap();
        let _ = std::fs::remove_file(dir.0.join("state.bad"));
        let b = start(&dir.state(), &[], &[]);
        let mut c = b.client();
        assert_eq!(c.stat("state_file_load_failures"), "1", "{what}");
        assert_eq!(c.stat("curr_items"), "0", "{what}: nothing of it loaded");
        c.roundtrip(b"set fresh 0 0 1\r\nf\r\nget fresh k1\r\n", b"STORED\r\nVALUE fresh 0 1\r\nf\r\nEND\r\n");
        assert_eq!(std::fs::read(dir.0.join("state.bad")).unwrap(), bytes, "{what}: set aside as it was");
        let log = b.stop("TERM");
        assert!(log.contains("state saved"), "{what}: {log}");
    }
}

#[test]
fn smaller_limits_on_restart_keep_what_fits() {
    let dir = Dir::new("limits");
    let a = start(&dir.state(), &["-m", "64"], &[]);
    let mut c = a.client();
    fill(&mut c, 5000, 4000);
    c.send(format!("set large 0 0 5000\r\n{}\r\n", "L".repeat(5000)).as_bytes());
    c.expect(b"STORED\r\n");
    a.stop("TERM");

    // -m 8: about 2,000 of the 20 MB fit; -I 4k: the large item does not.
    let b = start(&dir.state(), &["-m", "8", "-I", "4k"], &[]);
    let mut c = b.client();
    let loaded: u64 = c.stat("state_file_load_items").parse().unwrap();
    let skipped: u64 = c.stat("state_file_load_skipped").parse().unwrap();
    assert!((1000..3000).contains(&loaded), "{loaded}");
    assert_eq!(loaded + skipped, 5001);
    let bytes: u64 = c.stat("bytes").parse().unwrap();
    assert!(bytes <= 8 << 20, "{bytes}");
    c.roundtrip(b"mn\r\nget large\r\n", b"MN\r\nEND\r\n");
    b.stop("TERM");
}

#[test]
fn stats_settings_names_the_memory_file() {
    let dir = Dir::new("settings");
    let a = start(&dir.state(), &[], &[]);
    let mut c = a.client();
    let settings = lines(&mut c, "stats settings\r\n");
    let want = format!("STAT memory_file {}", dir.state().display());
    assert!(settings.contains(&want), "{settings:?}");
    // The log says what the start found.
    let mut a = a;
    let mut line = String::new();
    while !line.contains("state file") {
        line.clear();
        assert!(a.log.read_line(&mut line).unwrap() > 0);
    }
    assert!(line.contains("no state file; starting empty"), "{line}");
    a.stop("TERM");
}

/// `gets` of `keys` (one request), as reply lines, read in large chunks (the values hold
/// no line ends).
fn gets_lines(c: &mut Client, keys: &[String]) -> Vec<String> {
    c.send(format!("gets {}\r\n", keys.join(" ")).as_bytes());
    let mut reply = Vec::new();
    let mut chunk = vec![0; 1 << 16];
    while !(reply == b"END\r\n" || reply.ends_with(b"\r\nEND\r\n")) {
        let n = c.s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed");
        reply.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(reply).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn warm_from_memcached_copies_every_item_intact() {
    if !common::memcached::memcached_available("--warm-from's test") {
        return;
    }
    let mc = common::memcached::start_memcached(&["-m".into(), "256".into()]);
    let mut src = Client::to(&mc.addr.to_string());
    // 200,000 items: values of 1 to 700 bytes, flags of every width, no TTL or TTLs of an
    // hour to a day, and a few keys only the meta protocol's base64 can carry.
    const N: usize = 200_000;
    let key = |i: usize| format!("warm:{i}");
    for start in (0..N).step_by(500) {
        let mut batch = String::new();
        for i in start..(start + 500).min(N) {
            let flags = [0u64, 1, 0xffff, 0xffff_ffff][i % 4];
            let ttl = [0, 3600, 86_400][i % 3];
            let value = format!("{i}:").repeat(1 + i % 100);
            batch.push_str(&format!("set {} {flags} {ttl} {}\r\n{value}\r\n", key(i), value.len()));
        }
        src.send(batch.as_bytes());
        for _ in start..(start + 500).min(N) {
            src.expect(b"STORED\r\n");
        }
    }
    src.roundtrip(b"ms AAEC/w== 2 b F9\r\nhi\r\n", b"HD\r\n"); // key 00 01 02 ff
    let b = start(&Dir::new("warm").state(), &["-m", "256", "--warm-from", &mc.addr.to_string()], &[]);
    let mut c = b.client();
    // The first reply waits for the copy (a debug build on a busy machine takes a while).
    c.s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    assert_eq!(src.stat("curr_items"), (N + 1).to_string(), "the source evicted nothing");
    assert_eq!(c.stat("curr_items"), (N + 1).to_string());
    for start in (0..N).step_by(1000) {
        let keys: Vec<String> = (start..(start + 1000).min(N)).map(key).collect();
        let want = gets_lines(&mut src, &keys);
        assert_eq!(want.len(), 2 * keys.len() + 1);
        assert_eq!(gets_lines(&mut c, &keys), want, "values, flags and CAS of keys {start}..");
    }
    // TTLs: what was left at the source, give or take the seconds the copy took.
    for i in [1, 2, 4, 5, 199_997, 199_998] {
        let ttl = |c: &mut Client| -> i64 {
            c.send(format!("mg {} t\r\n", key(i)).as_bytes());
            c.line().strip_prefix("HD t").unwrap().parse().unwrap()
        };
        let (at_source, here) = (ttl(&mut src), ttl(&mut c));
        // (The two servers' clocks tick at different moments: a second either way.)
        let close = (-1..=10).contains(&(at_source - here));
        assert!((here == -1) == (at_source == -1) && close, "{i}: {here} vs {at_source}");
    }
    c.roundtrip(b"mg AAEC/w== b v f\r\n", b"VA 2 f9\r\nhi\r\n");
    b.stop("TERM");
}

#[test]
fn warm_from_an_unreachable_source_is_one_line_and_exit_1() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(BIN).args(["-p", "0", "--warm-from", &format!("127.0.0.1:{port}")]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("larder: --warm-from 127.0.0.1:{port}: ")), "{err}");
}

#[test]
fn a_state_file_that_could_never_be_saved_is_refused_at_start() {
    let out = Command::new(BIN).args(["-p", "0", "-e", "/nonexistent-dir/state"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("larder: -e /nonexistent-dir/state: ") && err.lines().count() == 1, "{err}");
    // A directory (or anything but a regular file) is never taken for one, nor moved aside.
    let dir = Dir::new("notfile");
    let out = Command::new(BIN).args(["-p", "0", "-e", dir.0.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a regular file"));
    assert!(dir.0.is_dir());
}
