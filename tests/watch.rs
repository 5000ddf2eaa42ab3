//! `watch` over real sockets: each kind of event gives memcached 1.6.18's line for the
//! command that triggers it; a watcher that never reads costs requests nothing (lines it
//! has no room for are dropped and counted); `-W`, bad words, pipelining and the
//! twenty-watcher limit are refused with memcached's words. The lines' exact bytes are
//! compared with memcached's in `tests/corpus/watch.txt` (tests/differential.rs).

mod common;

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

use common::{Client, TestServer, spawn};
use larder::Config;

/// Reads from a watcher until it has sent `n` more lines (memcached ends them with a bare
/// `\n`) or the deadline passes; returns them without their `ts=... gid=...` stamp.
fn lines(w: &mut Client, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    while got.iter().filter(|&&b| b == b'\n').count() < n {
        assert!(Instant::now() < deadline, "{n} lines wanted, got {:?}", String::from_utf8_lossy(&got));
        match w.s.read(&mut buf) {
            Ok(0) => panic!("watcher closed after {:?}", String::from_utf8_lossy(&got)),
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the watcher: {e}"),
        }
    }
    let text = String::from_utf8(got).unwrap();
    text.lines().map(unstamped).collect()
}

/// A line without its `ts=<sec>.<usec> gid=<n> ` prefix, checking that prefix's shape.
fn unstamped(line: &str) -> String {
    let Some(rest) = line.strip_prefix("ts=") else { return line.to_string() };
    let (ts, rest) = rest.split_once(' ').unwrap();
    let (sec, usec) = ts.split_once('.').unwrap();
    assert!(sec.parse::<u64>().unwrap() > 1_600_000_000 && usec.parse::<u32>().unwrap() < 1_000_000, "{line}");
    let (gid, rest) = rest.split_once(' ').unwrap();
    assert!(gid.strip_prefix("gid=").unwrap().parse::<u64>().unwrap() > 0, "{line}");
    rest.to_string()
}

/// A watcher of `what`, once its `OK` has come.
fn watcher(srv: &TestServer, what: &str) -> Client {
    let mut w = srv.connect();
    w.roundtrip(format!("watch {what}\r\n").trim_end_matches(' ').as_bytes(), b"OK\r\n");
    w
}

/// The descriptor the server gave `c`, as its `cfd=` shows it: found in `stats conns`
/// by the client's port.
fn cfd(c: &mut Client) -> String {
    let me = format!("tcp:{}", c.s.local_addr().unwrap());
    c.send(b"stats conns\r\n");
    let mut fd = None;
    loop {
        let l = c.line();
        if l == "END" {
            return fd.expect("own row in stats conns");
        }
        if let Some(rest) = l.strip_prefix("STAT ")
            && let Some((name, addr)) = rest.split_once(' ')
            && name.ends_with(":addr")
            && addr == me
        {
            fd = Some(name.trim_end_matches(":addr").to_string());
        }
    }
}

#[test]
fn fetchers_log_each_key_found_or_not() {
    let srv = spawn(Config::for_tests());
    let mut w = watcher(&srv, "fetchers");
    let mut c = srv.connect();
    let fd = cfd(&mut c);
    c.roundtrip(b"set foo 5 0 3\r\nbar\r\n", b"STORED\r\n");
    c.roundtrip(b"gets foo nope\r\n", b"VALUE foo 5 3 1\r\nbar\r\nEND\r\n");
    c.roundtrip(b"mg Zm9v b v\r\n", b"VA 3\r\nbar\r\n");
    c.roundtrip(b"delete a%b\x01\r\n", b"NOT_FOUND\r\n");
    assert_eq!(
        lines(&mut w, 5),
        [
            // memcached looks the old item up before every store.
            format!("type=item_get key=foo status=not_found clsid=0 cfd={fd} size=0"),
            format!("type=item_get key=foo status=found clsid=1 cfd={fd} size=3"),
            format!("type=item_get key=nope status=not_found clsid=0 cfd={fd} size=0"),
            format!("type=item_get key=foo status=found clsid=1 cfd={fd} size=3"),
            format!("type=item_get key=a%25b%01 status=not_found clsid=0 cfd={fd} size=0"),
        ]
    );
}

#[test]
fn mutations_log_each_store_with_its_status() {
    let srv = spawn(Config::for_tests());
    let mut w = watcher(&srv, "mutations");
    let mut c = srv.connect();
    let fd = cfd(&mut c);
    c.roundtrip(b"add n 0 100 1\r\nx\r\n", b"STORED\r\n");
    c.roundtrip(b"add n 0 0 1\r\ny\r\n", b"NOT_STORED\r\n");
    c.roundtrip(b"append n 0 0 2\r\nzz\r\n", b"STORED\r\n");
    c.roundtrip(b"cas n 0 0 1 999\r\nx\r\n", b"EXISTS\r\n");
    c.roundtrip(b"replace nope 0 0 1\r\nx\r\n", b"NOT_STORED\r\n");
    c.roundtrip(b"ms m 2 MA\r\nhi\r\n", b"NS\r\n");
    let got = lines(&mut w, 6);
    // A second may pass between the add and its line: the TTL is 100 or 99.
    assert!(
        got[0] == format!("type=item_store key=n status=stored cmd=add ttl=100 clsid=1 cfd={fd} size=1")
            || got[0].contains("ttl=99"),
        "{}",
        got[0]
    );
    assert_eq!(
        got[1..],
        [
            format!("type=item_store key=n status=not_stored cmd=add ttl=0 clsid=1 cfd={fd} size=1"),
            // An append logs the whole new value.
            format!("type=item_store key=n status=stored cmd=append ttl={} clsid=1 cfd={fd} size=3", ttl(&got[2])),
            format!("type=item_store key=n status=exists cmd=cas ttl=0 clsid=1 cfd={fd} size=1"),
            format!("type=item_store key=nope status=not_stored cmd=replace ttl=0 clsid=1 cfd={fd} size=1"),
            format!("type=item_store key=m status=not_stored cmd=append ttl=0 clsid=1 cfd={fd} size=2"),
        ]
    );
}

fn ttl(line: &str) -> &str {
    line.split(' ').find_map(|t| t.strip_prefix("ttl=")).unwrap()
}

#[test]
fn evictions_log_the_item_evicted() {
    let mut config = Config::for_tests();
    config.memory_limit = 2 << 20;
    let srv = spawn(config);
    let mut w = watcher(&srv, "evictions");
    let mut c = srv.connect();
    let value = vec![b'v'; 100_000];
    for i in 0..40 {
        let mut set = format!("set big{i} 0 0 {}\r\n", value.len()).into_bytes();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        c.roundtrip(&set, b"STORED\r\n");
    }
    let evicted: u64 = c.stat("evictions").parse().unwrap();
    assert!(evicted > 0);
    let got = lines(&mut w, 1);
    let line = &got[0];
    let key = line.strip_prefix("type=eviction key=big").unwrap().split(' ').next().unwrap();
    assert!(key.parse::<u32>().unwrap() < 40, "{line}");
    let rest = line.split_once(" fetch=").unwrap().1;
    // Never read, no TTL, last used within the test, memcached's class for 100 KB.
    let (la, rest) = rest.strip_prefix("no ttl=-1 la=").unwrap().split_once(' ').unwrap();
    assert!(la.parse::<u32>().unwrap() < 60, "{line}");
    let size = larder::memcached::item_size(key.len() + 3, 0, value.len());
    assert_eq!(rest, format!("clsid={} size=100000", larder::memcached::slab_class(size, 1 << 20)));
}

#[test]
fn connevents_log_opens_and_closes_with_their_reason() {
    let srv = spawn(Config::for_tests());
    let mut w = watcher(&srv, "connevents");
    let mut c = srv.connect();
    let port = c.s.local_addr().unwrap().port();
    let fd = cfd(&mut c);
    c.send(b"quit\r\n");
    assert!(c.is_closed());
    let mut other = srv.connect();
    let port2 = other.s.local_addr().unwrap().port();
    let fd2 = cfd(&mut other);
    drop(other);
    assert_eq!(
        lines(&mut w, 4),
        [
            format!("type=conn_new rip=127.0.0.1 rport={port} transport=tcp cfd={fd}"),
            format!("type=conn_close rip=127.0.0.1 rport={port} transport=tcp reason=normal cfd={fd}"),
            format!("type=conn_new rip=127.0.0.1 rport={port2} transport=tcp cfd={fd2}"),
            format!("type=conn_close rip=127.0.0.1 rport={port2} transport=tcp reason=normal cfd={fd2}"),
        ]
    );
    // A watcher is shown as memcached shows one, and its end is `reason=error`, as
    // memcached's logger thread gives none.
    let w2 = watcher(&srv, "fetchers");
    let port3 = w2.s.local_addr().unwrap().port();
    let mut c = srv.connect();
    c.send(b"stats conns\r\n");
    let mut state = String::new();
    let mut fd3 = String::new();
    loop {
        let l = c.line();
        if l == "END" {
            break;
        }
        if l.ends_with(&format!(":addr tcp:127.0.0.1:{port3}")) {
            fd3 = l["STAT ".len()..l.find(':').unwrap()].to_string();
        }
        if !fd3.is_empty() && l.starts_with(&format!("STAT {fd3}:state ")) {
            state = l.rsplit(' ').next().unwrap().to_string();
        }
    }
    assert_eq!(state, "conn_watch");
    drop(w2);
    let got = lines(&mut w, 3);
    assert!(
        got[0].starts_with(&format!("type=conn_new rip=127.0.0.1 rport={port3} transport=tcp cfd={fd3}")),
        "{got:?}"
    );
    assert!(got[1].starts_with("type=conn_new"), "{got:?}");
    assert_eq!(got[2], format!("type=conn_close rip=127.0.0.1 rport={port3} transport=tcp reason=error cfd={fd3}"));
}

#[test]
fn watch_with_no_words_watches_fetchers_and_ignores_input() {
    let srv = spawn(Config::for_tests());
    let mut w = watcher(&srv, "");
    // What a watcher sends is read and ignored, as by memcached.
    w.send(b"version\r\nget k\r\n");
    let mut c = srv.connect();
    c.roundtrip(b"set k 0 0 1\r\nx\r\nget k\r\n", b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
    let got = lines(&mut w, 2);
    assert!(
        got[0].starts_with("type=item_get key=k status=not_found")
            && got[1].starts_with("type=item_get key=k status=found"),
        "{got:?}"
    );
    assert_eq!(c.stat("log_watchers"), "1");
    drop(w);
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.stat("log_watchers") != "0" {
        assert!(Instant::now() < deadline, "the closed watcher is still counted");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn refusals_in_memcacheds_words() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.roundtrip(b"watch bogus\r\n", b"ERROR\r\n");
    c.roundtrip(b"watch fetchers bogus\r\n", b"ERROR\r\n");
    // `noreply` is no word of watch's: the ERROR is silenced.
    c.roundtrip(b"watch noreply\r\nmn\r\n", b"MN\r\n");
    c.roundtrip(
        b"version\r\nwatch\r\n",
        format!("VERSION {}\r\nERROR cannot pipeline other commands before watch\r\n", larder::exec::VERSION)
            .as_bytes(),
    );
    // A get's reply is sent before the next command: nothing waits, and watch starts.
    let mut ws = vec![srv.connect()];
    ws[0].roundtrip(b"get a\r\nwatch\r\n", b"END\r\nOK\r\n");
    for _ in 1..20 {
        ws.push(watcher(&srv, "mutations"));
    }
    c.roundtrip(b"watch\r\n", b"WATCHER_TOO_MANY log watcher limit reached\r\n");
    assert_eq!(c.stat("log_watchers"), "20");

    let mut config = Config::for_tests();
    config.watch_enabled = false;
    let srv = spawn(config);
    let mut c = srv.connect();
    for cmd in ["watch", "watch fetchers", "watch bogus"] {
        c.roundtrip(format!("{cmd}\r\n").as_bytes(), b"CLIENT_ERROR watch commands not allowed\r\n");
    }
    c.roundtrip(b"version\r\n", format!("VERSION {}\r\n", larder::exec::VERSION).as_bytes());
}

/// A watcher that never reads: requests go on at full speed, the lines it had no room
/// for are dropped and counted, and it is told how many when it reads again.
#[test]
fn a_watcher_that_never_reads_slows_nothing() {
    let srv = spawn(Config::for_tests());
    let mut w = watcher(&srv, "fetchers mutations");
    let mut c = srv.connect();
    // Long keys make long lines: 25,000 sets log about 15 MB, more than the socket
    // buffers and the watcher's 256 KiB hold.
    let prefix = "k".repeat(240);
    let started = Instant::now();
    const SETS: usize = 25_000;
    for batch in 0..SETS / 500 {
        let mut req = Vec::new();
        for i in 0..500 {
            req.extend_from_slice(format!("set {prefix}{:06} 0 0 1\r\nx\r\n", batch * 500 + i).as_bytes());
        }
        c.roundtrip(&req, &b"STORED\r\n".repeat(500));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "{SETS} sets took {took:?}");
    let skipped: u64 = c.stat("log_watcher_skipped").parse().unwrap();
    let sent: u64 = c.stat("log_watcher_sent").parse().unwrap();
    let written: u64 = c.stat("log_worker_written").parse().unwrap();
    assert!(skipped > 0, "nothing skipped");
    assert_eq!(written, 2 * SETS as u64);
    assert_eq!(sent + skipped, written);
    assert_eq!(c.stat("log_worker_dropped"), "0");
    // The server serves on.
    c.roundtrip(b"get nokey\r\n", b"END\r\n");
    // The watcher reads at last: what fitted, then (once room is made) memcached's note
    // of what was missed before the next line.
    w.s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        match w.s.read(&mut buf) {
            Ok(0) => panic!("watcher closed"),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {
                // Drained for now: one more event shows the skipped count.
                c.roundtrip(b"get after\r\n", b"END\r\n");
            }
        }
        if seen.windows(9).any(|x| x == b"\nskipped=") {
            break;
        }
        assert!(Instant::now() < deadline, "no skipped= line");
    }
    let text = String::from_utf8_lossy(&seen);
    let count: u64 = text.split("\nskipped=").nth(1).unwrap().split('\n').next().unwrap().parse().unwrap();
    assert!(count > 0 && count <= skipped, "{count} of {skipped}");
}
