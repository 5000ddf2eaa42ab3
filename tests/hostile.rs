//! Hostile peers over TCP: clients that never read, trickle bytes, flood the
//! connection limit, hang up mid-request or half-close, and a connection whose code panics.
//! The server must stay within its bounds and keep serving everyone else. Byte-exact bad
//! input is in `tests/corpus/hostile.txt` (checked against memcached by the differential
//! test); what a corpus cannot express is here. Every test is bounded in time and count and
//! talks only to 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, TestServer, spawn};
use larder::Config;

fn stat(srv: &TestServer, name: &str) -> u64 {
    srv.connect().stat(name).parse().unwrap()
}

/// Polls until `cond` holds, for at most 5 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn set(c: &mut Client, key: &str, value: &[u8]) {
    c.send(format!("set {key} 0 0 {}\r\n", value.len()).as_bytes());
    c.send(value);
    c.roundtrip(b"\r\n", b"STORED\r\n");
}

/// Reads everything until EOF (or the 5 s timeout).
fn read_to_end(c: &mut Client) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = c.s.read_to_end(&mut out);
    out
}

#[test]
fn a_client_that_never_reads_holds_a_bounded_reply() {
    let srv = spawn(Config::for_tests());
    let value = vec![b'v'; 512 * 1024];
    set(&mut srv.connect(), "big", &value);
    let before = stat(&srv, "cmd_get");

    // One multi-get whose whole reply would be 100 MiB, then many pipelined ones.
    let mut c = srv.connect();
    let keys = 200;
    c.send(format!("get{}\r\n", " big".repeat(keys)).as_bytes());
    c.send(&b"get big\r\n".repeat(50));
    thread::sleep(Duration::from_millis(500));
    // The server stopped once its buffer and the sockets' were full: the kernel holds a
    // few MiB on loopback, Larder at most 1 MiB plus one value.
    let looked_up = stat(&srv, "cmd_get") - before;
    assert!(looked_up > 0 && looked_up < 60, "{looked_up} values looked up for a client that reads nothing");

    // Once the client reads, every reply arrives whole and in order.
    let one = format!("VALUE big 0 {}\r\n", value.len()).len() + value.len() + 2;
    let mut reply = vec![0; one * keys + 5 + (one + 5) * 50];
    c.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.s.read_exact(&mut reply).unwrap();
    assert!(reply.starts_with(b"VALUE big 0 524288\r\nvvv"));
    assert_eq!(&reply[one * keys..one * keys + 5], b"END\r\n");
    assert!(reply.ends_with(b"v\r\nEND\r\n"));
    assert_eq!(stat(&srv, "cmd_get") - before, keys as u64 + 50);
}

#[test]
fn a_get_line_past_4_mib_without_newline_closes() {
    // memcached buffers a `get` line without bound; Larder stops at 4 MiB.
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    let chunk = b" aaaaaaa".repeat(8 * 1024);
    let _ = c.s.write_all(b"get");
    for _ in 0..(5 << 20) / chunk.len() {
        if c.s.write_all(&chunk).is_err() {
            break; // the server has hung up already
        }
    }
    assert!(c.is_closed());
    srv.connect().roundtrip(b"version\r\n", format!("VERSION {}\r\n", larder::exec::VERSION).as_bytes());
}

#[test]
fn data_block_cut_off_by_a_disconnect_is_not_stored() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.send(b"set k 0 0 100\r\n");
    c.send(&[b'x'; 50]);
    drop(c);
    srv.connect().roundtrip(b"get k\r\n", b"END\r\n");
    eventually("the cut-off connection is gone", || stat(&srv, "curr_connections") == 1);
    // A large one cut off too.
    let mut c = srv.connect();
    c.send(b"set big 0 0 1000000\r\n");
    c.send(&[b'y'; 700_000]);
    drop(c);
    srv.connect().roundtrip(b"get big\r\n", b"END\r\n");
}

#[test]
fn half_closed_socket_gets_all_its_replies_then_eof() {
    // As memcached: requests sent before the client shut its write side are answered.
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.send(b"set a 0 0 1\r\nx\r\nget a\r\n");
    c.send(format!("get{}\r\n", " a".repeat(3000)).as_bytes());
    c.s.shutdown(Shutdown::Write).unwrap();
    let got = read_to_end(&mut c);
    let value = b"VALUE a 0 1\r\nx\r\n";
    let mut want = b"STORED\r\n".to_vec();
    want.extend_from_slice(value);
    want.extend_from_slice(b"END\r\n");
    want.extend_from_slice(&value.repeat(3000));
    want.extend_from_slice(b"END\r\n");
    assert_eq!(got.len(), want.len());
    assert!(got == want);

    // Half-closed in the middle of a data block: closed without a reply, nothing stored.
    let mut c = srv.connect();
    c.send(b"set b 0 0 10\r\nxx");
    c.s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut c), b"");
    srv.connect().roundtrip(b"get b\r\n", b"END\r\n");
}

#[test]
fn idle_timeout_closes_idle_trickling_and_unread_connections_only() {
    let srv = spawn(Config { idle_timeout: 1, ..Config::for_tests() });
    let mut admin = srv.connect();
    set(&mut admin, "big", &vec![b'v'; 512 * 1024]);
    admin.send(b"stats settings\r\n");
    let mut settings = Vec::new();
    loop {
        let l = admin.line();
        if l == "END" {
            break;
        }
        settings.push(l);
    }
    assert!(settings.contains(&"STAT idle_timeout 1".to_string()), "{settings:?}");

    let start = Instant::now();
    let idle = thread::spawn({
        let mut c = srv.connect();
        move || {
            assert!(c.is_closed());
            start.elapsed()
        }
    });
    // Trickles a command it never finishes: bytes are not commands, so it is idle too.
    let trickler = thread::spawn({
        let mut c = srv.connect();
        move || {
            for &b in b"get aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                // A close while a trickled byte is still unread arrives as a reset, not
                // an EOF: both mean the server hung up.
                if c.s.write_all(&[b]).is_err() {
                    return start.elapsed();
                }
                thread::sleep(Duration::from_millis(200));
                let mut buf = [0u8; 1];
                c.s.set_nonblocking(true).unwrap();
                let closed = match c.s.read(&mut buf) {
                    Ok(0) => true,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    Ok(_) => false,
                };
                c.s.set_nonblocking(false).unwrap();
                if closed {
                    return start.elapsed();
                }
            }
            panic!("a trickling client was never closed");
        }
    });
    // Asks for 50 MiB and reads none of it: stuck on its replies, closed too.
    let mut unread = srv.connect();
    unread.send(format!("get{}\r\n", " big".repeat(100)).as_bytes());
    // Sends a whole command more often than the timeout: kept.
    let mut active = srv.connect();
    for _ in 0..8 {
        active.roundtrip(b"mn\r\n", b"MN\r\n");
        thread::sleep(Duration::from_millis(300));
    }
    let (idle, trickled) = (idle.join().unwrap(), trickler.join().unwrap());
    assert!(idle >= Duration::from_millis(900) && idle < Duration::from_secs(3), "idle closed after {idle:?}");
    assert!(trickled >= Duration::from_millis(900) && trickled < Duration::from_secs(3), "{trickled:?}");
    // (`admin` has been idle all along too.)
    eventually("four idle kicks", || stat(&srv, "idle_kicks") == 4);
    active.roundtrip(b"mn\r\n", b"MN\r\n");
    drop(unread);
}

#[test]
fn without_idle_timeout_stats_has_no_idle_kicks() {
    // memcached prints `idle_kicks` only when `-o idle_timeout` is set.
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.send(b"stats\r\n");
    loop {
        let l = c.line();
        assert!(!l.contains("idle_kicks"));
        if l == "END" {
            break;
        }
    }
}

#[test]
fn slow_loris_connections_do_not_starve_others() {
    let srv = spawn(Config::for_tests());
    let lorises: Vec<TcpStream> = (0..200).map(|_| srv.connect().s).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Each loris trickles a `set` one byte at a time, never finishing its data block.
    let trickler = thread::spawn({
        let stop = stop.clone();
        move || {
            let wire: Vec<Vec<u8>> = (0..200).map(|i| format!("set loris{i} 0 0 1000\r\n").into_bytes()).collect();
            let mut lorises = lorises;
            let mut pos = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (s, w) in lorises.iter_mut().zip(&wire) {
                    let b = w.get(pos).copied().unwrap_or(b'x');
                    s.write_all(&[b]).unwrap();
                }
                pos += 1;
                thread::sleep(Duration::from_millis(20));
            }
            lorises
        }
    });
    // Let every loris get its command line in and start on its data block.
    thread::sleep(Duration::from_millis(1000));
    let mut c = srv.connect();
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    for i in 0..300 {
        let t = Instant::now();
        c.roundtrip(format!("set k{i} 0 0 2\r\nhi\r\n").as_bytes(), b"STORED\r\n");
        c.roundtrip(format!("get k{i}\r\n").as_bytes(), format!("VALUE k{i} 0 2\r\nhi\r\nEND\r\n").as_bytes());
        worst = worst.max(t.elapsed());
    }
    let took = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lorises = trickler.join().unwrap();
    assert!(took < Duration::from_secs(10), "300 round trips took {took:?}");
    assert!(worst < Duration::from_secs(1), "slowest round trip {worst:?}");
    // The lorises were served all along: finishing their sets stores them.
    let s = &mut lorises[7];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&[b'x'; 1000]).unwrap();
    s.write_all(b"\r\n").unwrap();
    let mut reply = Vec::new();
    let mut b = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        s.read_exact(&mut b).unwrap();
        reply.push(b[0]);
    }
    // It had sent more than 1000 bytes of data already: the tail is a bad chunk or a
    // stored item followed by junk, never silence.
    assert!(
        reply == b"STORED\r\n" || reply == b"CLIENT_ERROR bad data chunk\r\n",
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(stat(&srv, "curr_connections"), 202);
}

#[test]
fn a_connection_flood_past_the_limit_is_refused_counted_and_recovered_from() {
    let srv = spawn(Config { max_connections: 20, ..Config::for_tests() });
    let mut admin = srv.connect();
    let flood: Vec<Client> = (0..60).map(|_| srv.connect()).collect();
    let (mut served, mut refused) = (Vec::new(), 0);
    for mut c in flood {
        c.send(b"version\r\n");
        let l = c.line();
        if l == "ERROR Too many open connections" {
            assert!(c.is_closed(), "refused and closed");
            refused += 1;
        } else {
            assert!(l.starts_with("VERSION "), "{l}");
            served.push(c);
        }
    }
    assert_eq!((served.len(), refused), (19, 41));
    assert_eq!(admin.stat("rejected_connections"), "41");
    assert_eq!(admin.stat("curr_connections"), "20");
    // The flood ends; the server is back to normal.
    drop(served);
    eventually("the flood's connections are gone", || admin.stat("curr_connections") == "1");
    let again: Vec<Client> = (0..19).map(|_| srv.connect()).collect();
    for mut c in again {
        c.roundtrip(b"mn\r\n", b"MN\r\n");
    }
    assert_eq!(admin.stat("rejected_connections"), "41");
}

/// Only debug builds have the fault hook.
#[cfg(debug_assertions)]
#[test]
fn a_panic_in_one_connection_closes_it_and_nothing_else() {
    fn panic_on_poison(req: &larder::protocol::Request) {
        if let larder::protocol::Request::Get { keys, .. } = req
            && keys.iter().any(|k| k == b"__poison__")
        {
            panic!("injected fault");
        }
    }
    larder::server::connection::FAULT_HOOK.get_or_init(|| panic_on_poison as fn(&larder::protocol::Request));
    let srv = spawn(Config { max_connections: 4, ..Config::for_tests() });
    let mut bystander = srv.connect();
    set(&mut bystander, "k", b"v");
    for _ in 0..10 {
        let mut victim = srv.connect();
        victim.send(b"get __poison__\r\n");
        assert_eq!(read_to_end(&mut victim), b"", "the panicking connection is closed");
    }
    // Ten panics later, with room for only four connections: the slots were given back.
    bystander.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n");
    eventually("slots freed", || bystander.stat("curr_connections") == "1");
    let mut others: Vec<Client> = (0..3).map(|_| srv.connect()).collect();
    for c in &mut others {
        c.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n");
    }
}

#[test]
fn bad_extended_options_are_refused_in_one_line() {
    let bin = env!("CARGO_BIN_EXE_larder");
    for (args, want) in [
        (&["-o", "bogus=1"][..], "larder: -o: illegal suboption \"bogus=1\""),
        (&["-o", "idle_timeout=5,nonsense"], "larder: -o: illegal suboption \"nonsense\""),
        (&["-o", "idle_timeout=soon"], "larder: -o: missing numeric argument for idle_timeout"),
        (&["-o", "idle_timeout"], "larder: -o: missing numeric argument for idle_timeout"),
    ] {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), want, "{args:?}");
    }
}

/// Bad TLS peers: plain text, garbage and a cut-short handshake on a TLS port, and a
/// client that hangs up mid-record. Each is counted (`ssl_handshake_errors` for the
/// handshakes) and closed; a good client on the same server sees nothing of it.
#[test]
fn plain_text_garbage_and_hang_ups_are_counted_and_harm_no_one() {
    let certs = common::tls::Certs::new();
    let srv = common::tls::spawn(Config { tls: certs.settings(), ..Config::for_tests() });
    let mut good = common::tls::TlsClient::connect(srv.addr, certs.client_config(None));
    good.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");

    let raw = |bytes: &[u8], hang_up: bool| {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        if hang_up {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut back = Vec::new();
        let closed = s.read_to_end(&mut back).is_ok();
        (closed, back)
    };
    // Plain text gets an alert record (content type 21), never a memcached reply, and the close.
    let (closed, back) = raw(b"version\r\nget k\r\n", false);
    assert!(closed && back.first() == Some(&21), "{back:?}");
    // Garbage shaped like a handshake record.
    let (closed, _) = raw(&[22, 3, 1, 0, 5, 1, 2, 3, 4, 5], false);
    assert!(closed);
    // A ClientHello cut short, then the client hangs up.
    let (closed, _) = raw(&[22, 3, 1, 0x02, 0x00, 1, 0, 1, 0xfc, 3, 3], true);
    assert!(closed);
    // After a good handshake, half a record and a hang-up.
    let mut half = common::tls::TlsClient::connect(srv.addr, certs.client_config(None));
    half.handshake().unwrap();
    half.s.sock.write_all(&[23, 3, 3, 0, 64, 1, 2, 3]).unwrap();
    half.s.sock.shutdown(std::net::Shutdown::Both).unwrap();

    good.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n");
    assert_eq!(good.stat("ssl_handshake_errors"), "3");
    let deadline = Instant::now() + Duration::from_secs(5);
    while good.stat("curr_connections") != "1" {
        assert!(Instant::now() < deadline, "the bad peers' connections stay open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `-o read_buf_mem_limit`: a read buffer that would grow past the budget gets memcached's
/// `SERVER_ERROR out of memory reading request` and its connection is closed; everyone
/// else is served, and the budget comes back when the connections holding it go.
#[test]
fn the_buffer_budget_refuses_growth_past_it_and_comes_back() {
    let mut config = Config::for_tests();
    config.read_buf_mem_limit = 1 << 20;
    let srv = spawn(config);
    let mut c = srv.connect();
    c.send(b"stats settings\r\n");
    let settings: Vec<String> = std::iter::from_fn(|| Some(c.line()).filter(|l| l != "END")).collect();
    assert!(settings.contains(&"STAT read_buf_mem_limit 1048576".to_string()), "{settings:?}");
    let value = vec![b'v'; 900_000];

    // One slow set holds most of the budget: its buffer grows with its data.
    let mut holder = srv.connect();
    holder.send(format!("set held 0 0 {}\r\n", value.len()).as_bytes());
    holder.send(&value[..value.len() - 1]);
    eventually("the slow set's buffer to hold its data", || srv.ctx.budget.used() > 800_000);
    assert_eq!(stat(&srv, "read_buf_count"), 1);
    assert!(stat(&srv, "read_buf_bytes") > 800_000);

    // A second large value does not fit beside it.
    let mut refused = srv.connect();
    refused.send(format!("set refused 0 0 {}\r\n", value.len()).as_bytes());
    let _ = refused.s.write_all(&value[..300_000]);
    let reply = read_to_end(&mut refused);
    assert_eq!(reply, b"SERVER_ERROR out of memory reading request\r\n");
    assert_eq!(stat(&srv, "read_buf_oom"), 1);
    assert!(srv.ctx.budget.used() < 1 << 20);

    // Small requests need no budget: they are served all along.
    let mut c = srv.connect();
    set(&mut c, "small", b"hello");
    c.roundtrip(b"get small\r\n", b"VALUE small 0 5\r\nhello\r\nEND\r\n");

    // The holder finishes its set (its buffer goes back), another hangs up halfway.
    holder.roundtrip(b"v\r\n", b"STORED\r\n");
    let mut quitter = srv.connect();
    quitter.send(format!("set gone 0 0 {}\r\n", value.len()).as_bytes());
    quitter.send(&value[..500_000]);
    eventually("the quitter's buffer to be charged", || srv.ctx.budget.used() > 400_000);
    drop(quitter);
    let until = Instant::now() + Duration::from_secs(5);
    while srv.ctx.budget.used() != 0 && Instant::now() < until {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!((srv.ctx.budget.used(), srv.ctx.budget.grown()), (0, 0), "the budget comes back");
    assert_eq!(stat(&srv, "read_buf_count"), 0);

    // With it back, a large set goes through on a new connection, however many clients
    // have declared large values they do not send: a buffer is charged what its data
    // makes resident, not what a header declares.
    let headers: Vec<Client> = (0..20)
        .map(|_| {
            let mut c = srv.connect();
            c.send(b"set declared 0 0 1000000\r\nab");
            c
        })
        .collect();
    let mut again = srv.connect();
    set(&mut again, "again", &value);
    again.send(b"get again\r\n");
    let mut got = vec![0; format!("VALUE again 0 {}\r\n", value.len()).len() + value.len() + 7];
    again.s.read_exact(&mut got).unwrap();
    assert!(got.ends_with(b"v\r\nEND\r\n"));
    assert_eq!(stat(&srv, "read_buf_oom"), 1);
    drop(headers);
}

/// Replies a client leaves unread are charged to the buffer budget while the server holds
/// them (its buffer and the values spliced in), so they count against large sets coming
/// in elsewhere; once the client reads them the budget comes back.
#[test]
fn unread_replies_are_charged_to_the_buffer_budget() {
    let mut config = Config::for_tests();
    config.read_buf_mem_limit = 1 << 20;
    let srv = spawn(config);
    let value = vec![b'v'; 512 * 1024];
    set(&mut srv.connect(), "big", &value);
    assert_eq!(srv.ctx.budget.used(), 0);

    let mut reader = srv.connect();
    let keys = 200;
    reader.send(format!("get{}\r\n", " big".repeat(keys)).as_bytes());
    eventually("the unread replies to be charged", || srv.ctx.budget.used() >= 1 << 20);

    // A large value coming in now finds no room; small requests are served.
    let mut other = srv.connect();
    other.send(b"set other 0 0 600000\r\n");
    let _ = other.s.write_all(&value[..500_000]);
    assert_eq!(read_to_end(&mut other), b"SERVER_ERROR out of memory reading request\r\n");
    let mut c = srv.connect();
    set(&mut c, "small", b"hi");

    // The client reads: every reply whole, and the budget back.
    let one = format!("VALUE big 0 {}\r\n", value.len()).len() + value.len() + 2;
    let mut reply = vec![0; one * keys + 5];
    reader.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    reader.s.read_exact(&mut reply).unwrap();
    assert!(reply.ends_with(b"v\r\nEND\r\n"));
    eventually("the budget to come back", || srv.ctx.budget.used() == 0);
    set(&mut c, "other", &value);
}

// The binary protocol's hostile peers. Packets are built by hand so their lengths can lie.

use common::binary::{header as bin_header, packet as bin};
use larder::protocol::binary::op::{GET, GETKQ, NOOP, SASL_AUTH, SASL_STEP, SET, VERSION};

fn bin_set(key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    bin(SET, key, &[0; 8], value, opaque)
}

/// A response packet as read: (opcode, status, opaque, key, body after extras and key).
#[derive(Debug, PartialEq)]
struct Response {
    opcode: u8,
    status: u16,
    opaque: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// Reads one response packet, checking its magic and lengths.
fn read_response(c: &mut Client) -> Response {
    let mut h = [0u8; 24];
    c.s.read_exact(&mut h).expect("a response header");
    assert_eq!(h[0], 0x81, "response magic: {h:?}");
    let keylen = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let extlen = usize::from(h[4]);
    let body = u32::from_be_bytes(h[8..12].try_into().unwrap()) as usize;
    assert!(extlen + keylen <= body, "{h:?}");
    let mut b = vec![0u8; body];
    c.s.read_exact(&mut b).expect("a response body");
    Response {
        opcode: h[1],
        status: u16::from_be_bytes([h[6], h[7]]),
        opaque: u32::from_be_bytes(h[12..16].try_into().unwrap()),
        key: b[extlen..extlen + keylen].to_vec(),
        value: b[extlen + keylen..].to_vec(),
    }
}

/// A fresh client gets answers in both protocols: the server kept serving.
fn still_serves(srv: &TestServer) {
    let mut c = srv.connect();
    c.send(&bin(VERSION, b"", &[], b"", 77));
    let r = read_response(&mut c);
    assert_eq!((r.opcode, r.status, r.opaque), (VERSION, 0, 77));
    assert_eq!(r.value, larder::exec::VERSION.as_bytes());
    srv.connect().roundtrip(b"version\r\n", format!("VERSION {}\r\n", larder::exec::VERSION).as_bytes());
}

/// Sends `wire` on a new connection, expects one error packet with `status` and `opaque`,
/// then the close.
fn refused_then_closed(srv: &TestServer, wire: &[u8], status: u16, opaque: u32) {
    let mut c = srv.connect();
    c.send(wire);
    let r = read_response(&mut c);
    assert_eq!((r.status, r.opaque), (status, opaque), "{r:?}");
    assert!(!r.value.is_empty(), "an error carries memcached's text");
    assert_eq!(read_to_end(&mut c), b"", "the connection goes on after a fatal error");
}

#[test]
fn binary_lengths_that_lie_are_refused_and_close() {
    let srv = spawn(Config::for_tests());
    // A key longer than the body: "Unknown command" (0x81), then the close.
    let mut wire = bin_header(GET, 3, 0, 1, 1);
    wire.extend_from_slice(b"key");
    refused_then_closed(&srv, &wire, 0x81, 1);
    // Extras and key longer than the body.
    let mut wire = bin_header(SET, 3, 8, 9, 2);
    wire.extend_from_slice(&[0; 8]);
    wire.extend_from_slice(b"key");
    refused_then_closed(&srv, &wire, 0x81, 2);
    // A body of 2^32-1: "Invalid arguments" (0x04) at once, nothing of it awaited.
    let mut wire = bin_header(SET, 1, 8, u32::MAX, 3);
    wire.extend_from_slice(&[0; 8]);
    wire.push(b'k');
    refused_then_closed(&srv, &wire, 0x04, 3);
    // Just over memcached's 1 GiB body limit.
    let mut wire = bin_header(SET, 1, 8, (1 << 30) + 1, 4);
    wire.extend_from_slice(&[0; 8]);
    wire.push(b'k');
    refused_then_closed(&srv, &wire, 0x04, 4);
    still_serves(&srv);
}

#[test]
fn binary_key_length_65535_without_key_bytes_waits_then_refuses_the_key() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    // The header alone: the server waits for 65,535 key bytes, answering nothing.
    c.send(&bin_header(GET, u16::MAX, 0, u32::from(u16::MAX), 9));
    c.s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut b = [0u8; 1];
    assert!(c.s.read(&mut b).is_err(), "an answer before the key arrived");
    still_serves(&srv);
    // Once they come, a key over 250 bytes is "Invalid arguments", and the close.
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.send(&vec![b'k'; usize::from(u16::MAX)]);
    let r = read_response(&mut c);
    assert_eq!((r.opcode, r.status, r.opaque), (GET, 0x04, 9));
    assert_eq!(read_to_end(&mut c), b"");
    still_serves(&srv);
}

/// A header promising a value of nearly 1 GiB, then silence, on 20 connections, against
/// the binary as its own process (so its memory can be read): with `-I 1024m` each value
/// is one the server would store, with the default `-I` one it discards. Its memory must
/// not grow by the promises, not even for a moment: its peak virtual size (`VmPeak`,
/// which counts what is reserved, touched or not, and even if freed since) stays within
/// 64 MiB of where it was. The idle timeout closes the silent connections.
#[test]
fn binary_header_promising_1_gib_then_silence_reserves_nothing_and_times_out() {
    fn vm_peak(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmPeak:")).expect("VmPeak");
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }
    /// The server process, killed however the test ends.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let bin_path = env!("CARGO_BIN_EXE_larder");
    for (item_max, stored) in [("1024m", true), ("1m", false)] {
        let args = ["-p", "0", "-l", "127.0.0.1", "-m", "2048", "-I", item_max, "-t", "2", "-o", "idle_timeout=1"];
        let (child, addr, mut err) = common::start_binary(bin_path, &args);
        let child = Child(child);
        thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        // Warm the workers up first, so what grows after is the promises' doing.
        for i in 0..4 {
            let mut c = Client::to(&addr);
            c.send(&bin_set(b"warm", &[b'w'; 100_000], i));
            assert_eq!(read_response(&mut c).status, 0);
        }
        let before = vm_peak(child.0.id());
        let body: u32 = (1 << 30) - 64;
        let silent: Vec<Client> = (0..20u32)
            .map(|i| {
                let mut c = Client::to(&addr);
                let mut wire = bin_header(SET, 5, 8, body, i);
                wire.extend_from_slice(&[0; 8]);
                wire.extend_from_slice(b"big00");
                wire.extend_from_slice(&[b'v'; 1000]); // a little of the value
                c.send(&wire);
                c
            })
            .collect();
        let start = Instant::now();
        thread::sleep(Duration::from_millis(500));
        let grown = vm_peak(child.0.id()).saturating_sub(before);
        assert!(grown < 64 << 20, "-I {item_max}: {} MiB more reserved for 20 silent 1 GiB promises", grown >> 20);
        // The bystander is served meanwhile.
        let mut other = Client::to(&addr);
        other.send(&bin(GET, b"warm", &[], b"", 5));
        let r = read_response(&mut other);
        assert_eq!((r.status, r.value.len()), (0, 100_000));
        // The idle timeout closes the silent ones, as for text: a value being read, or
        // (over -I) being discarded after its "Too large." (0x03).
        for (i, mut c) in silent.into_iter().enumerate() {
            if !stored {
                let r = read_response(&mut c);
                assert_eq!((r.status, r.opaque), (0x03, i as u32), "-I {item_max}");
            }
            assert!(c.is_closed(), "-I {item_max}: a silent connection stays open");
        }
        let took = start.elapsed();
        assert!(took > Duration::from_millis(500) && took < Duration::from_secs(4), "closed after {took:?}");
        let mut other = Client::to(&addr);
        other.send(&bin(GET, b"big00", &[], b"", 6));
        assert_eq!(read_response(&mut other).status, 0x01, "-I {item_max}: nothing stored");
    }
}

#[test]
fn binary_sasl_step_without_a_start_fails_and_the_login_still_works() {
    let Some(_) = common::sasl::fixture() else { return };
    let (user, pass) = common::sasl::ALICE;
    let config = Config { sasl: true, protocol: larder::config::Protocol::Binary, ..Config::for_tests() };
    let srv = spawn(config);
    let plain = format!("\0{user}\0{pass}");
    let mut c = srv.connect();
    // A step with no exchange started: "Auth failure." (0x20), counted, the connection kept.
    c.send(&bin(SASL_STEP, b"PLAIN", &[], plain.as_bytes(), 1));
    let r = read_response(&mut c);
    assert_eq!((r.opcode, r.status, r.value.as_slice()), (SASL_STEP, 0x20, &b"Auth failure."[..]));
    // Steps and starts with lying data lengths: a mechanism over 32 bytes, data over -I.
    c.send(&bin(SASL_STEP, &[b'M'; 40], &[], b"x", 2));
    assert_eq!(read_response(&mut c).status, 0x04);
    let mut wire = bin_header(SASL_STEP, 5, 0, 5 + (2 << 20), 3);
    wire.extend_from_slice(b"PLAIN");
    wire.extend_from_slice(&vec![0; 2 << 20]);
    c.send(&wire);
    assert_eq!(read_response(&mut c).status, 0x82, "SASL data over the item size");
    // Then a real login, and commands.
    c.send(&bin(SASL_AUTH, b"PLAIN", &[], plain.as_bytes(), 4));
    let r = read_response(&mut c);
    assert_eq!((r.status, r.value.as_slice()), (0, &b"Authenticated"[..]));
    c.send(&bin_set(b"k", b"v", 5));
    assert_eq!(read_response(&mut c).status, 0);
    // A step after the login's exchange ended fails, and logs the client out.
    c.send(&bin(SASL_STEP, b"PLAIN", &[], b"x", 6));
    assert_eq!(read_response(&mut c).status, 0x20);
    c.send(&bin(GET, b"k", &[], b"", 7));
    assert_eq!(read_response(&mut c).status, 0x20, "a get after a failed step");
    assert_eq!(read_to_end(&mut c), b"", "not logged in: closed");
    // Another client, with no login, is refused; one that logs in is served.
    let mut other = srv.connect();
    other.send(&bin(VERSION, b"", &[], b"", 8));
    assert_eq!(read_response(&mut other).status, 0);
    other.send(&bin(SASL_AUTH, b"PLAIN", &[], plain.as_bytes(), 9));
    assert_eq!(read_response(&mut other).status, 0);
    other.send(&bin(GET, b"k", &[], b"", 10));
    assert_eq!(read_response(&mut other).value, b"v");
}

#[test]
fn binary_garbage_after_a_valid_packet_closes_without_a_reply() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    let mut wire = bin(NOOP, b"", &[], b"", 1);
    wire.extend_from_slice(b"GARBAGE\r\nget k\r\n");
    wire.extend_from_slice(&bin(NOOP, b"", &[], b"", 2));
    c.send(&wire);
    let r = read_response(&mut c);
    assert_eq!((r.opcode, r.status, r.opaque), (NOOP, 0, 1));
    assert_eq!(read_to_end(&mut c), b"", "bad magic: closed, nothing after the noop");
    still_serves(&srv);
}

#[test]
fn binary_then_text_on_one_connection_is_closed_at_the_text() {
    // memcached's `-B auto` chooses by a connection's first byte, once.
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.send(&bin(VERSION, b"", &[], b"", 3));
    c.send(b"version\r\n");
    let r = read_response(&mut c);
    assert_eq!((r.opcode, r.status), (VERSION, 0));
    assert_eq!(read_to_end(&mut c), b"", "a text command on a binary connection");
    // The other way round: a text connection stays text (the packet is an unfinished line).
    let mut t = srv.connect();
    t.send(b"version\r\n");
    t.send(&bin(VERSION, b"", &[], b"", 3));
    assert!(t.line().starts_with("VERSION "));
    still_serves(&srv);
}

#[test]
fn binary_flood_of_quiet_gets_never_read_holds_a_bounded_reply() {
    let srv = spawn(Config::for_tests());
    let value = vec![b'v'; 500];
    let mut admin = srv.connect();
    admin.send(&bin_set(b"k", &value, 0));
    assert_eq!(read_response(&mut admin).status, 0);
    let hits_before = stat(&srv, "get_hits");
    let n = 100_000u32;
    let mut wire = Vec::with_capacity(n as usize * 25 + 24);
    for i in 0..n {
        wire.extend_from_slice(&bin(GETKQ, b"k", &[], b"", i));
    }
    wire.extend_from_slice(&bin(NOOP, b"", &[], b"", n));
    let c = srv.connect();
    let mut w = c.s.try_clone().unwrap();
    let writer = thread::spawn(move || w.write_all(&wire).is_ok());
    thread::sleep(Duration::from_millis(700));
    // The server stopped reading once its 1 MiB of output and the sockets' buffers were
    // full: ~529 bytes a hit, so a few thousand hits, never all 100,000.
    let looked_up = stat(&srv, "get_hits") - hits_before;
    assert!(looked_up > 0 && looked_up < 40_000, "{looked_up} quiet gets run for a client that reads nothing");
    still_serves(&srv);
    // Once the client reads, every hit arrives whole and in order, then the noop's reply.
    c.s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = std::io::BufReader::with_capacity(1 << 16, c.s.try_clone().unwrap());
    for i in 0..n {
        let mut h = [0u8; 24];
        r.read_exact(&mut h).unwrap();
        assert_eq!((h[0], h[1], &h[12..16]), (0x81, GETKQ, &i.to_be_bytes()[..]), "reply {i}");
        let mut body = vec![0u8; u32::from_be_bytes(h[8..12].try_into().unwrap()) as usize];
        r.read_exact(&mut body).unwrap();
        assert_eq!(body.len(), 4 + 1 + value.len());
    }
    let mut h = [0u8; 24];
    r.read_exact(&mut h).unwrap();
    assert_eq!((h[1], &h[12..16]), (NOOP, &n.to_be_bytes()[..]));
    assert!(writer.join().unwrap());
    assert_eq!(stat(&srv, "get_hits") - hits_before, u64::from(n));
}
