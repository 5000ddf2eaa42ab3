//! The `--http` listener at its edge: raw HTTP over real sockets. What it serves (paths,
//! methods, content types) and that it stays inside its bounds under hostile clients
//! (too many connections, oversized and slow request heads, garbage), with the cache port
//! serving throughout.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, TestServer, spawn};
use larder::Config;
use larder::http::Limits;

/// A cache server with an HTTP listener beside it, on its own runtime thread.
struct Http {
    addr: SocketAddr,
    cache: TestServer,
    _runtime: tokio::runtime::Runtime,
}

fn start(limits: Limits) -> Http {
    let cache = spawn(Config::for_tests());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(larder::http::serve_with(listener, Arc::clone(&cache.ctx), limits));
    Http { addr, cache, _runtime: runtime }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `request` on a fresh connection and reads until the server closes it.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = connect(addr);
    // A connection refused at accept may be reset before the request is written.
    let _ = s.write_all(request);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    exchange(addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
}

fn status(reply: &str) -> &str {
    reply.split(' ').nth(1).unwrap_or("")
}

/// The cache port still answers.
fn cache_serves(h: &Http) {
    let mut c: Client = h.cache.connect();
    c.send(b"set alive 0 0 1\r\n1\r\nget alive\r\n");
    c.expect(b"STORED\r\nVALUE alive 0 1\r\n1\r\nEND\r\n");
}

#[test]
fn serves_its_paths_and_only_get() {
    let h = start(Limits::default());
    let cases: &[(&[u8], &str, &str)] = &[
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "200", "\r\n\r\nok\n"),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "200", "text/plain; version=0.0.4"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "200", "<title>Larder</title>"),
        (b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "200", "\"history\":"),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "404", "not found"),
        (
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            "405",
            "allow: GET, HEAD",
        ),
        (b"DELETE / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "405", "only GET"),
        (b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "200", "content-type: text/plain"),
        (b"GET /healthz HTTP/1.0\r\n\r\n", "200", "ok\n"),
    ];
    for (request, want_status, want) in cases {
        let reply = get_raw(h.addr, request);
        assert_eq!(status(&reply), *want_status, "{}: {reply}", String::from_utf8_lossy(request));
        assert!(reply.contains(want), "{}: {reply:?} lacks {want:?}", String::from_utf8_lossy(request));
    }
    let head = get_raw(h.addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head:?}");
    // Keep-alive: two requests on one connection.
    let two = get_raw(
        h.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(two.matches("HTTP/1.1 200 OK").count(), 2, "{two}");
    cache_serves(&h);
}

fn get_raw(addr: SocketAddr, request: &[u8]) -> String {
    exchange(addr, request)
}

#[test]
fn healthz_says_when_the_server_is_stopping() {
    let h = start(Limits::default());
    assert_eq!(status(&get(h.addr, "/healthz")), "200");
    h.cache.ctx.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    let reply = get(h.addr, "/healthz");
    assert_eq!(status(&reply), "503", "{reply}");
}

#[test]
fn garbage_and_oversized_heads_fail_alone() {
    let h = start(Limits { head_bytes: 8 * 1024, head_timeout: Duration::from_secs(1), ..Limits::default() });
    let garbage: &[&[u8]] = &[
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
        b"get foo\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"\r\n\r\n\r\n",
    ];
    for g in garbage {
        let reply = exchange(h.addr, g);
        assert!(
            reply.is_empty() || status(&reply).starts_with('4') || status(&reply) == "505",
            "{:?} got {reply:.200}",
            String::from_utf8_lossy(g)
        );
    }
    let long = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(64 * 1024));
    let reply = exchange(h.addr, long.as_bytes());
    assert!(reply.is_empty() || status(&reply) == "431", "a 64 KiB head is refused: {:.80}", reply);
    assert_eq!(status(&get(h.addr, "/healthz")), "200", "the listener still serves");
    cache_serves(&h);
}

#[test]
fn a_slow_head_is_cut_off() {
    let h = start(Limits { head_timeout: Duration::from_millis(300), ..Limits::default() });
    let mut s = connect(h.addr);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(started.elapsed() < Duration::from_secs(8), "closed by the head timeout, not the read timeout");
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.is_empty() || status(&reply) == "408", "{reply}");
    cache_serves(&h);
}

#[test]
fn connections_past_the_limit_are_closed() {
    let h = start(Limits { connections: 4, ..Limits::default() });
    // Four idle connections hold every slot.
    let held: Vec<TcpStream> = (0..4).map(|_| connect(h.addr)).collect();
    // Past the limit, a connection is closed without a reply.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = get(h.addr, "/healthz");
        if reply.is_empty() {
            break;
        }
        // The listener may not have accepted all four yet.
        assert!(Instant::now() < deadline, "a fifth connection was served: {reply}");
        std::thread::yield_now();
    }
    cache_serves(&h);
    drop(held);
    // Slots come back when connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&get(h.addr, "/healthz")) != "200" {
        assert!(Instant::now() < deadline, "slots never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}
