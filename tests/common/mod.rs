//! Test support: an in-process Larder on an ephemeral 127.0.0.1 port, and raw-bytes
//! client helpers. Each server runs on its own thread and runtime and stops on drop.

#![allow(dead_code)]

pub mod binary;
pub mod memcached;
pub mod sasl;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use larder::clock::Clock;
use larder::{Config, Ctx};
use tokio::sync::oneshot;

/// A running server. Dropping it shuts the server down and waits for it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub ctx: Arc<Ctx>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a server with `config` (its listen address's port is ignored: 127.0.0.1:0).
pub fn spawn(config: Config) -> TestServer {
    spawn_with_clock(config, Clock::system())
}

/// Starts a server whose clock the test drives (`server.ctx.store.clock().advance(..)`).
/// The ticker still re-reads wall time, which never moves a manual clock backwards.
pub fn spawn_with_clock(config: Config, clock: Clock) -> TestServer {
    spawn_listener(config, clock, None)
}

/// Starts a server; with `tls`, its listener serves TLS.
fn spawn_listener(config: Config, clock: Clock, tls: Option<larder::tls::Tls>) -> TestServer {
    let std_listener = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let serve_tls = tls.is_some();
    let mut ctx = Ctx::new(config.clone(), clock);
    if let Some(tls) = tls {
        ctx = ctx.with_tls(tls);
    }
    let ctx = Arc::new(ctx);
    let (stop, stopped) = oneshot::channel::<()>();
    let server_ctx = ctx.clone();
    let thread = std::thread::spawn(move || {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(config.threads).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let listener = if serve_tls {
                larder::server::Listener::Tls(listener)
            } else {
                larder::server::Listener::Tcp(listener)
            };
            larder::server::run(vec![listener], server_ctx, async {
                let _ = stopped.await;
            })
            .await;
        });
    });
    TestServer { addr, ctx, stop: Some(stop), thread: Some(thread) }
}

impl TestServer {
    /// A blocking client with a 5 s read timeout, so a wrong server fails instead of hanging.
    pub fn connect(&self) -> Client {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        Client { s }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A raw-bytes client.
pub struct Client {
    pub s: TcpStream,
}

impl Client {
    /// A client of the server at `addr` (a binary's), with the usual read timeout.
    pub fn to(addr: &str) -> Self {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Self { s }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("send");
    }

    /// Reads exactly `want.len()` bytes and compares them with `want`.
    pub fn expect(&mut self, want: &[u8]) {
        let mut got = vec![0; want.len()];
        if let Err(e) = self.s.read_exact(&mut got) {
            panic!("reading {:?}: {e}", String::from_utf8_lossy(want));
        }
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    }

    /// Sends `req` and expects exactly `want` back.
    pub fn roundtrip(&mut self, req: &[u8], want: &[u8]) {
        self.send(req);
        self.expect(want);
    }

    /// Reads one `\r\n`-terminated line.
    pub fn line(&mut self) -> String {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while !out.ends_with(b"\r\n") {
            self.s.read_exact(&mut b).expect("reading a line");
            out.push(b[0]);
        }
        String::from_utf8_lossy(&out[..out.len() - 2]).into_owned()
    }

    /// Sends `stats` and returns the value of one field.
    pub fn stat(&mut self, name: &str) -> String {
        self.send(b"stats\r\n");
        let mut found = None;
        loop {
            let l = self.line();
            if l == "END" {
                return found.unwrap_or_else(|| panic!("no stat {name}"));
            }
            let mut parts = l.splitn(3, ' ');
            if let (Some("STAT"), Some(k), Some(v)) = (parts.next(), parts.next(), parts.next())
                && k == name
            {
                found = Some(v.to_string());
            }
        }
    }

    /// Whether the server has closed the connection (EOF within the read timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_)) && {
            // An error other than a timeout (e.g. reset) is a close too; a timeout is not.
            true
        }
    }
}

/// Starts the `larder` binary at `bin` with `args` (which should include `-p 0`) and
/// learns its address from the `addr=` log line; the rest of its log is left to read.
// The child goes back to the caller, who stops it (a failed start panics the test).
#[allow(clippy::zombie_processes)]
pub fn start_binary(bin: &str, args: &[&str]) -> (Child, String, BufReader<ChildStderr>) {
    start_binary_with(bin, args, &[])
}

/// [`start_binary`] with environment variables set for the child.
#[allow(clippy::zombie_processes)]
pub fn start_binary_with(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (Child, String, BufReader<ChildStderr>) {
    let mut child = Command::new(bin)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "larder exited before listening");
        if let Some(at) = line.find("addr=") {
            let addr = line[at + 5..].split_whitespace().next().unwrap().to_string();
            return (child, addr, err);
        }
    }
}
