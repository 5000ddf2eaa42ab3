//! Soak test with an exact checker, run by hand:
//!
//! ```sh
//! cargo build --release --examples
//! target/release/examples/soak --secs 300 --clients 200
//! ```
//!
//! Starts `target/release/larder` (or `$LARDER_BIN`) with a memory limit no run fills (so
//! nothing may be evicted), then `--clients` threads each own a set of keys and run a random
//! mix of every storage, retrieval, arithmetic, touch, delete and meta command against them,
//! pipelined batches and `noreply` included, while keeping a model of what their keys must
//! hold. Every reply is checked against the model, so a lost write (acknowledged, later not
//! seen), a phantom one (seen, never acknowledged) or a wrong reply is reported. Some clients
//! are killed mid-request (their half-sent item must never appear) or right after sending a
//! write without reading its reply (the next read, once the server has closed that
//! connection, must show the old or the new value: nothing else). The server's RSS is sampled throughout and its log checked for panics. Exits
//! non-zero on any error. `flush_all` is left out: it would wipe other clients' keys.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use support::{Rng, Server, arg};

/// Keys each client owns; the first few hold counters.
const KEYS: usize = 24;
const COUNTERS: usize = 3;
/// Appends stop growing a value past this; it is reset with a `set` instead.
const MAX_VALUE: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq)]
enum State {
    Absent,
    Present { value: Vec<u8>, flags: u32 },
}

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn open(srv: &Server) -> Self {
        let s = srv.connect();
        Self { r: BufReader::with_capacity(64 * 1024, s.try_clone().unwrap()), w: s }
    }

    fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut l = Vec::new();
        self.r.read_until(b'\n', &mut l)?;
        if !l.ends_with(b"\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short line {:?}", String::from_utf8_lossy(&l)),
            ));
        }
        l.truncate(l.len() - 2);
        Ok(l)
    }

    fn block(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0; n + 2];
        self.r.read_exact(&mut v)?;
        if !v.ends_with(b"\r\n") {
            return Err(io::Error::other("data block without CRLF"));
        }
        v.truncate(n);
        Ok(v)
    }
}

#[derive(Default)]
struct Totals {
    ops: AtomicU64,
    checks: AtomicU64,
    kills: AtomicU64,
    uncertain_resolved_new: AtomicU64,
    uncertain_resolved_old: AtomicU64,
}

struct Client<'a> {
    srv: &'a Server,
    rng: Rng,
    conn: Conn,
    keys: Vec<String>,
    model: Vec<State>,
    /// After a kill right after a write: the other state the key may be in.
    maybe: Vec<Option<State>>,
    totals: &'a Totals,
    errors: &'a Mutex<Vec<String>>,
}

/// `safe_strtoull` on item data (see tests/model.rs).
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
    let m: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let v = if negative { m.wrapping_neg() } else { m };
    if negative && (v as i64) < 0 {
        return None;
    }
    Some(v)
}

type R<T> = Result<T, String>;

fn io<T>(r: io::Result<T>) -> R<T> {
    r.map_err(|e| format!("i/o: {e}"))
}

impl<'a> Client<'a> {
    fn fail(&self, msg: String) {
        let mut e = self.errors.lock().unwrap();
        if e.len() < 50 {
            e.push(msg);
        }
    }

    fn expect_line(&mut self, want: &[u8], what: &str) -> R<()> {
        let got = io(self.conn.line())?;
        if got != want {
            return Err(format!(
                "{what}: want {:?}, got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            ));
        }
        Ok(())
    }

    /// Compares what the server holds for key `i` with the model.
    fn check(&mut self, i: usize, got: State) -> R<()> {
        self.totals.checks.fetch_add(1, Relaxed);
        if got == self.model[i] {
            if self.maybe[i].take().is_some() {
                self.totals.uncertain_resolved_old.fetch_add(1, Relaxed);
            }
            return Ok(());
        }
        if self.maybe[i].as_ref() == Some(&got) {
            self.maybe[i] = None;
            self.model[i] = got;
            self.totals.uncertain_resolved_new.fetch_add(1, Relaxed);
            return Ok(());
        }
        let show = |s: &State| match s {
            State::Absent => "absent".to_string(),
            State::Present { value, flags } => {
                format!(
                    "flags {flags}, {} bytes {:?}",
                    value.len(),
                    String::from_utf8_lossy(&value[..value.len().min(40)])
                )
            }
        };
        Err(format!("{}: server has {}, model has {}", self.keys[i], show(&got), show(&self.model[i])))
    }

    /// Reads `VALUE` lines up to `END`, checking each against the model; returns CAS uniques.
    fn read_values(&mut self, asked: &[usize]) -> R<Vec<(usize, u64)>> {
        let mut seen = Vec::new();
        let mut cas = Vec::new();
        loop {
            let l = io(self.conn.line())?;
            if l == b"END" {
                break;
            }
            let text = String::from_utf8_lossy(&l).into_owned();
            let parts: Vec<&str> = text.split(' ').collect();
            if parts.len() < 4 || parts[0] != "VALUE" {
                return Err(format!("bad retrieval line {text:?}"));
            }
            let i = self.keys.iter().position(|k| k == parts[1]).ok_or(format!("foreign key in {text:?}"))?;
            let flags: u32 = parts[2].parse().map_err(|_| text.clone())?;
            let len: usize = parts[3].parse().map_err(|_| text.clone())?;
            let value = io(self.conn.block(len))?;
            if let Some(c) = parts.get(4) {
                cas.push((i, c.parse().map_err(|_| text.clone())?));
            }
            seen.push(i);
            self.check(i, State::Present { value, flags })?;
        }
        // Keys asked for and not returned must be absent.
        for &i in asked {
            if !seen.contains(&i) {
                self.check(i, State::Absent)?;
            }
        }
        Ok(cas)
    }

    fn value(&mut self, i: usize) -> Vec<u8> {
        if i < COUNTERS && self.rng.chance(80) {
            let top = if self.rng.chance(50) { 1000 } else { u64::MAX };
            return self.rng.below(top).to_string().into_bytes();
        }
        let n = match self.rng.below(10) {
            0 => 0,
            1..=6 => self.rng.below(100) as usize,
            7 | 8 => self.rng.below(4096) as usize,
            _ => self.rng.below(64 * 1024) as usize,
        };
        // Binary values, CR LF and NUL included, to exercise framing.
        self.rng.bytes(n)
    }

    fn store_line(&self, cmd: &str, i: usize, flags: u32, value: &[u8], extra: &str) -> Vec<u8> {
        let mut w = format!("{cmd} {} {flags} 0 {}{extra}\r\n", self.keys[i], value.len()).into_bytes();
        w.extend_from_slice(value);
        w.extend_from_slice(b"\r\n");
        w
    }

    fn reconnect(&mut self) -> R<()> {
        self.conn = Conn::open(self.srv);
        // Settle what a killed write left behind before anything depends on it.
        let unsure: Vec<usize> = (0..KEYS).filter(|&i| self.maybe[i].is_some()).collect();
        if !unsure.is_empty() {
            let keys: Vec<&str> = unsure.iter().map(|&i| self.keys[i].as_str()).collect();
            io(self.conn.w.write_all(format!("get {}\r\n", keys.join(" ")).as_bytes()))?;
            self.read_values(&unsure)?;
        }
        Ok(())
    }

    fn one_op(&mut self) -> R<()> {
        let i = self.rng.below(KEYS as u64) as usize;
        let flags = if self.rng.chance(50) { 0 } else { self.rng.next() as u32 };
        let present = matches!(self.model[i], State::Present { .. });
        self.totals.ops.fetch_add(1, Relaxed);
        match self.rng.below(100) {
            0..=14 => {
                let v = self.value(i);
                io(self.conn.w.write_all(&self.store_line("set", i, flags, &v, "")))?;
                self.expect_line(b"STORED", "set")?;
                self.model[i] = State::Present { value: v, flags };
            }
            15..=19 => {
                let v = self.value(i);
                io(self.conn.w.write_all(&self.store_line("add", i, flags, &v, "")))?;
                if present {
                    self.expect_line(b"NOT_STORED", "add")?;
                } else {
                    self.expect_line(b"STORED", "add")?;
                    self.model[i] = State::Present { value: v, flags };
                }
            }
            20..=23 => {
                let v = self.value(i);
                io(self.conn.w.write_all(&self.store_line("replace", i, flags, &v, "")))?;
                if present {
                    self.expect_line(b"STORED", "replace")?;
                    self.model[i] = State::Present { value: v, flags };
                } else {
                    self.expect_line(b"NOT_STORED", "replace")?;
                }
            }
            24..=29 => {
                let append = self.rng.chance(50);
                let n = self.rng.below(50) as usize;
                let v = self.rng.bytes(n);
                let long = matches!(&self.model[i], State::Present { value, .. } if value.len() > MAX_VALUE);
                if long {
                    io(self.conn.w.write_all(format!("delete {}\r\n", self.keys[i]).as_bytes()))?;
                    self.expect_line(b"DELETED", "delete")?;
                    self.model[i] = State::Absent;
                    return Ok(());
                }
                let cmd = if append { "append" } else { "prepend" };
                io(self.conn.w.write_all(&self.store_line(cmd, i, flags, &v, "")))?;
                if present {
                    self.expect_line(b"STORED", cmd)?;
                    if let State::Present { value, .. } = &mut self.model[i] {
                        if append {
                            value.extend_from_slice(&v);
                        } else {
                            value.splice(0..0, v);
                        }
                    }
                } else {
                    self.expect_line(b"NOT_STORED", cmd)?;
                }
            }
            30..=37 => {
                // gets, then cas with the right unique or a wrong one.
                io(self.conn.w.write_all(format!("gets {}\r\n", self.keys[i]).as_bytes()))?;
                let cas = self.read_values(&[i])?;
                let v = self.value(i);
                match cas.first() {
                    Some(&(_, c)) => {
                        let right = self.rng.chance(70);
                        let unique = if right { c } else { c ^ (1 + self.rng.below(1 << 40)) };
                        io(self.conn.w.write_all(&self.store_line("cas", i, flags, &v, &format!(" {unique}"))))?;
                        if right {
                            self.expect_line(b"STORED", "cas")?;
                            self.model[i] = State::Present { value: v, flags };
                        } else {
                            self.expect_line(b"EXISTS", "cas with a wrong unique")?;
                        }
                    }
                    None => {
                        io(self.conn.w.write_all(&self.store_line("cas", i, flags, &v, " 12345")))?;
                        self.expect_line(b"NOT_FOUND", "cas on a missing key")?;
                    }
                }
            }
            38..=49 => {
                let i = i % COUNTERS;
                let incr = self.rng.chance(60);
                let delta = if self.rng.chance(90) { self.rng.below(1000) } else { self.rng.next() };
                let cmd = if incr { "incr" } else { "decr" };
                io(self.conn.w.write_all(format!("{cmd} {} {delta}\r\n", self.keys[i]).as_bytes()))?;
                let want: Vec<u8> = match &mut self.model[i] {
                    State::Absent => b"NOT_FOUND".to_vec(),
                    State::Present { value, .. } => match numeric(value) {
                        None => b"CLIENT_ERROR cannot increment or decrement non-numeric value".to_vec(),
                        Some(v) => {
                            let n = if incr { v.wrapping_add(delta) } else { v.saturating_sub(delta) };
                            let mut digits = n.to_string().into_bytes();
                            if digits.len() <= value.len() {
                                digits.resize(value.len(), b' ');
                            }
                            *value = digits;
                            n.to_string().into_bytes()
                        }
                    },
                };
                self.expect_line(&want, cmd)?;
            }
            50..=55 => {
                io(self.conn.w.write_all(format!("delete {}\r\n", self.keys[i]).as_bytes()))?;
                self.expect_line(if present { b"DELETED" } else { b"NOT_FOUND" }, "delete")?;
                self.model[i] = State::Absent;
            }
            56..=58 => {
                io(self.conn.w.write_all(format!("touch {} 0\r\n", self.keys[i]).as_bytes()))?;
                self.expect_line(if present { b"TOUCHED" } else { b"NOT_FOUND" }, "touch")?;
            }
            59..=74 => {
                let n = 1 + self.rng.below(8) as usize;
                let asked: Vec<usize> = (0..n).map(|_| self.rng.below(KEYS as u64) as usize).collect();
                let keys: Vec<&str> = asked.iter().map(|&i| self.keys[i].as_str()).collect();
                let cmd = ["get", "gets", "gat 0", "gats 0"][self.rng.below(4) as usize];
                io(self.conn.w.write_all(format!("{cmd} {}\r\n", keys.join(" ")).as_bytes()))?;
                self.read_values(&asked)?;
            }
            75..=79 => {
                // Meta: ms, mg, md.
                match self.rng.below(3) {
                    0 => {
                        let v = self.value(i);
                        let mut w = format!("ms {} {} F{flags}\r\n", self.keys[i], v.len()).into_bytes();
                        w.extend_from_slice(&v);
                        w.extend_from_slice(b"\r\n");
                        io(self.conn.w.write_all(&w))?;
                        self.expect_line(b"HD", "ms")?;
                        self.model[i] = State::Present { value: v, flags };
                    }
                    1 => {
                        io(self.conn.w.write_all(format!("mg {} v f\r\n", self.keys[i]).as_bytes()))?;
                        let l = io(self.conn.line())?;
                        let got = if l == b"EN" {
                            State::Absent
                        } else {
                            let text = String::from_utf8_lossy(&l).into_owned();
                            let p: Vec<&str> = text.split(' ').collect();
                            if p.len() != 3 || p[0] != "VA" || !p[2].starts_with('f') {
                                return Err(format!("mg: {text:?}"));
                            }
                            let len: usize = p[1].parse().map_err(|_| text.clone())?;
                            let flags: u32 = p[2][1..].parse().map_err(|_| text.clone())?;
                            State::Present { value: io(self.conn.block(len))?, flags }
                        };
                        self.check(i, got)?;
                    }
                    _ => {
                        io(self.conn.w.write_all(format!("md {}\r\n", self.keys[i]).as_bytes()))?;
                        self.expect_line(if present { b"HD" } else { b"NF" }, "md")?;
                        self.model[i] = State::Absent;
                    }
                }
            }
            80..=85 => {
                // A pipelined batch: noreply sets, then one get of everything they touched.
                let n = 1 + self.rng.below(10) as usize;
                let mut wire = Vec::new();
                let mut touched = Vec::new();
                for _ in 0..n {
                    let j = self.rng.below(KEYS as u64) as usize;
                    let v = self.value(j);
                    let f = self.rng.next() as u32 & 0xffff;
                    wire.extend_from_slice(&self.store_line("set", j, f, &v, " noreply"));
                    self.model[j] = State::Present { value: v, flags: f };
                    touched.push(j);
                }
                let keys: Vec<&str> = touched.iter().map(|&j| self.keys[j].as_str()).collect();
                wire.extend_from_slice(format!("get {}\r\nmn\r\n", keys.join(" ")).as_bytes());
                io(self.conn.w.write_all(&wire))?;
                self.read_values(&touched)?;
                self.expect_line(b"MN", "mn")?;
            }
            86..=93 => {
                // Bad input mixed in: answered, and the connection goes on.
                let (wire, want): (&[u8], &[u8]) = match self.rng.below(3) {
                    0 => (b"bogus command\r\n", b"ERROR"),
                    1 => (b"set k 0 0 -1\r\n", b"CLIENT_ERROR bad command line format"),
                    _ => (b"incr\r\n", b"ERROR"),
                };
                io(self.conn.w.write_all(wire))?;
                self.expect_line(want, "bad input")?;
            }
            94..=96 => {
                // Killed mid-request: half an item, or a request whose reply is never read.
                self.totals.kills.fetch_add(1, Relaxed);
                let v = self.value(i);
                let wire = self.store_line("set", i, flags, &v, "");
                let cut = 1 + self.rng.below(wire.len() as u64 - 2) as usize;
                let _ = self.conn.w.write_all(&wire[..cut]);
                let _ = self.conn.w.shutdown(Shutdown::Both);
                self.reconnect()?;
                // Whatever part arrived, the item was never complete: nothing changed.
                io(self.conn.w.write_all(format!("get {}\r\n", self.keys[i]).as_bytes()))?;
                self.read_values(&[i])?;
            }
            _ => {
                // Killed right after sending a whole write: it may or may not have happened.
                self.totals.kills.fetch_add(1, Relaxed);
                let v = self.value(i);
                let _ = self.conn.w.write_all(&self.store_line("set", i, flags, &v, ""));
                let _ = self.conn.w.shutdown(Shutdown::Write);
                self.maybe[i] = Some(State::Present { value: v, flags });
                // The checker (not the client) waits for the server to finish with the dead
                // connection, discarding the reply unread: a write still in flight on it
                // could otherwise land after the next read and look like a phantom.
                let mut sink = Vec::new();
                let _ = self.conn.r.read_to_end(&mut sink);
                self.reconnect()?;
            }
        }
        Ok(())
    }

    /// Reads back every key.
    fn verify_all(&mut self) -> R<()> {
        let all: Vec<usize> = (0..KEYS).collect();
        let keys = self.keys.join(" ");
        io(self.conn.w.write_all(format!("get {keys}\r\n").as_bytes()))?;
        self.read_values(&all)?;
        Ok(())
    }
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

fn main() {
    let secs: u64 = arg("--secs", 300);
    let clients: usize = arg("--clients", 200);
    let seed: u64 = arg("--seed", 1);
    let log = std::env::temp_dir().join(format!("larder-soak-{}.log", std::process::id()));
    let srv = Server::start(&["-m", "1024", "-c", "4096", "-t", "4"], log.clone());
    println!(
        "soak: {clients} clients for {secs} s against {} (pid {}), log {}",
        support::server_binary().display(),
        srv.child.id(),
        log.display()
    );

    let totals = Totals::default();
    let errors = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let rss_samples = Mutex::new(Vec::new());
    let srv_ref = &srv;
    std::thread::scope(|s| {
        for id in 0..clients {
            let (totals, errors, stop) = (&totals, &errors, &stop);
            s.spawn(move || {
                let mut c = Client {
                    srv: srv_ref,
                    rng: Rng::new(seed * 1_000_003 + id as u64),
                    conn: Conn::open(srv_ref),
                    keys: (0..KEYS).map(|k| format!("soak:{id}:{k}")).collect(),
                    model: vec![State::Absent; KEYS],
                    maybe: vec![None; KEYS],
                    totals,
                    errors,
                };
                while !stop.load(Relaxed) {
                    if let Err(e) = c.one_op() {
                        c.fail(format!("client {id}: {e}"));
                        // Start over on a fresh connection, learning what the server has.
                        c.conn = Conn::open(srv_ref);
                        c.maybe = vec![None; KEYS];
                        let all: Vec<usize> = (0..KEYS).collect();
                        let _ = resync(&mut c, &all);
                    }
                }
                if let Err(e) = c.reconnect().and_then(|()| c.verify_all()) {
                    c.fail(format!("client {id} final check: {e}"));
                }
            });
        }
        // RSS sampler and progress.
        let (totals, stop, rss_samples) = (&totals, &stop, &rss_samples);
        s.spawn(move || {
            // The clients stop when this thread ends, by a panic too (stdout gone, say):
            // otherwise they would run on forever.
            let _stop = StopOnDrop(stop);
            let mut last = 0;
            while start.elapsed() < Duration::from_secs(secs) {
                std::thread::sleep(Duration::from_secs(5));
                let (rss, hwm) = srv_ref.rss_kib();
                rss_samples.lock().unwrap().push((start.elapsed().as_secs(), rss));
                let ops = totals.ops.load(Relaxed);
                println!(
                    "  t={:>4}s ops={ops} ({}/s) rss={} MiB peak={} MiB curr_connections={}",
                    start.elapsed().as_secs(),
                    (ops - last) / 5,
                    rss / 1024,
                    hwm / 1024,
                    srv_ref.stat("curr_connections")
                );
                last = ops;
            }
        });
    });

    let elapsed = start.elapsed().as_secs_f64();
    let stats = srv.stats();
    let stat = |n: &str| stats.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let samples = rss_samples.into_inner().unwrap();
    let (rss_now, hwm) = srv.rss_kib();
    let half = samples.len() / 2;
    let max_of = |s: &[(u64, u64)]| s.iter().map(|x| x.1).max().unwrap_or(0) / 1024;
    // Skip the first fifth as warm-up (the cache filling).
    let warm = samples.len() / 5;
    let first = max_of(&samples[warm..half.max(warm)]);
    let second = max_of(&samples[half..]);
    let ops = totals.ops.load(Relaxed);
    println!("soak finished after {elapsed:.0} s");
    println!(
        "  operations: {ops} ({:.0}/s), reads checked against the model: {}",
        ops as f64 / elapsed,
        totals.checks.load(Relaxed)
    );
    println!(
        "  kills: {} (after a whole write: {} resolved as applied, {} as not)",
        totals.kills.load(Relaxed),
        totals.uncertain_resolved_new.load(Relaxed),
        totals.uncertain_resolved_old.load(Relaxed)
    );
    println!(
        "  server: curr_items={} evictions={} total_connections={} curr_connections={} cmd_get={} cmd_set={}",
        stat("curr_items"),
        stat("evictions"),
        stat("total_connections"),
        stat("curr_connections"),
        stat("cmd_get"),
        stat("cmd_set")
    );
    println!(
        "  rss: max {first} MiB in the first half (after warm-up), {second} MiB in the second; now {} MiB, peak {} MiB",
        rss_now / 1024,
        hwm / 1024
    );
    let panics = srv.panics();
    let errors = errors.into_inner().unwrap();
    let mut failed = false;
    if stat("evictions") != "0" {
        println!("  FAIL: evictions happened; the checker assumes none");
        failed = true;
    }
    if second > first + first / 10 + 16 {
        println!("  FAIL: RSS grew in the second half");
        failed = true;
    }
    if !panics.is_empty() {
        println!("  FAIL: panics in the server log:\n    {}", panics.join("\n    "));
        failed = true;
    }
    if !errors.is_empty() {
        println!("  FAIL: {} checker errors (first {}):", errors.len(), errors.len().min(20));
        for e in errors.iter().take(20) {
            println!("    {e}");
        }
        failed = true;
    }
    srv.stop();
    if failed {
        std::process::exit(1);
    }
    println!("  OK: no lost or phantom writes, no panics, RSS flat");
}

/// Adopts what the server holds for `keys` as the model (after an error).
fn resync(c: &mut Client<'_>, keys: &[usize]) -> R<()> {
    let names: Vec<&str> = keys.iter().map(|&i| c.keys[i].as_str()).collect();
    io(c.conn.w.write_all(format!("get {}\r\n", names.join(" ")).as_bytes()))?;
    for &i in keys {
        c.model[i] = State::Absent;
    }
    loop {
        let l = io(c.conn.line())?;
        if l == b"END" {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&l).into_owned();
        let p: Vec<&str> = text.split(' ').collect();
        let i = c.keys.iter().position(|k| k == p[1]).ok_or("foreign key")?;
        let flags = p[2].parse().map_err(|_| "flags")?;
        let len: usize = p[3].parse().map_err(|_| "len")?;
        c.model[i] = State::Present { value: io(c.conn.block(len))?, flags };
    }
}
