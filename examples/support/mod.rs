//! Shared by the hand-run stress examples: start the `larder` binary as a child process on a
//! free 127.0.0.1 port, read its RSS from /proc, and a tiny seeded RNG.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `larder` binary next to this example's (`target/<profile>/larder`), or `$LARDER_BIN`.
pub fn server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("LARDER_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|examples| examples.parent()).unwrap().join("larder")
}

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    /// Starts the server with `args` (plus `-p <free port>`), logging to `log`.
    pub fn start(args: &[&str], log: PathBuf) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let bin = server_binary();
        let child = Command::new(&bin)
            .args(args)
            .args(["-l", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e} (build it with cargo build --release)", bin.display()));
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port, log }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    /// Resident set size in KiB (and the peak), from /proc.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// `stats` as (name, value) pairs.
    pub fn stats(&self) -> Vec<(String, String)> {
        let mut s = self.connect();
        s.write_all(b"stats\r\n").unwrap();
        let mut r = BufReader::new(s);
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line == "END" || line.is_empty() {
                return out;
            }
            let mut parts = line.splitn(3, ' ');
            parts.next();
            out.push((parts.next().unwrap_or("").into(), parts.next().unwrap_or("").into()));
        }
    }

    pub fn stat(&self, name: &str) -> String {
        self.stats().into_iter().find(|(k, _)| k == name).map(|(_, v)| v).unwrap_or_default()
    }

    /// Lines of the server's log that mention a panic.
    pub fn panics(&self) -> Vec<String> {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.log).map(|mut f| f.read_to_string(&mut text));
        text.lines().filter(|l| l.contains("panic")).map(String::from).collect()
    }

    pub fn stop(mut self) {
        // SIGTERM for a graceful stop; kill if it does not go.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server still running when its handle goes (the example panicked) is killed, not left
/// behind.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// xorshift64*: deterministic per seed, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Parses `--name value` flags with defaults.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}")))
        .unwrap_or(default)
}
