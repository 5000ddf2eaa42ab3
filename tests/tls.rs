//! TLS at the edge: a real rustls client against an in-process Larder serving TLS with
//! certificates the test made. Every command over TLS as over TCP, bad peers counted and
//! harmless to others, mutual TLS by `ssl_verify_mode`, certificate reload, a stalled
//! handshake closed by the idle timeout, and a storm of handshakes all served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::tls::{Certs, TlsClient, spawn};
use larder::config::{Config, TlsSettings, VerifyMode};

fn tls_config(certs: &Certs) -> Config {
    Config { tls: certs.settings(), ..Config::for_tests() }
}

fn stat(c: &mut TlsClient, name: &str) -> String {
    c.send(b"stats\r\n");
    let mut all = Vec::new();
    while !all.ends_with(b"END\r\n") {
        let mut buf = [0u8; 4096];
        let n = c.s.read(&mut buf).expect("stats");
        assert!(n > 0, "closed during stats");
        all.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(all).unwrap();
    let prefix = format!("STAT {name} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {name} in {text}")).to_string()
}

#[test]
fn every_command_works_over_tls() {
    let certs = Certs::new();
    let srv = spawn(tls_config(&certs));
    let mut c = TlsClient::connect(srv.addr, certs.client_config(None));
    c.roundtrip(b"set a 5 0 3\r\nabc\r\n", b"STORED\r\n");
    c.roundtrip(b"get a\r\n", b"VALUE a 5 3\r\nabc\r\nEND\r\n");
    c.roundtrip(b"append a 0 0 2\r\nde\r\nincr n 1\r\n", b"STORED\r\nNOT_FOUND\r\n");
    c.roundtrip(b"ms m 2 T0\r\nhi\r\nmg m v f\r\nmn\r\n", b"HD\r\nVA 2 f0\r\nhi\r\nMN\r\n");
    c.roundtrip(b"delete a\r\nget a\r\n", b"DELETED\r\nEND\r\n");
    c.roundtrip(b"bogus\r\n", b"ERROR\r\n");

    // A pipeline of 500 commands in one write, the replies in order.
    let mut req = Vec::new();
    let mut want = Vec::new();
    for i in 0..250 {
        req.extend_from_slice(format!("set k{i} 0 0 {}\r\n{i}\r\nget k{i}\r\n", i.to_string().len()).as_bytes());
        want.extend_from_slice(format!("STORED\r\nVALUE k{i} 0 {}\r\n{i}\r\nEND\r\n", i.to_string().len()).as_bytes());
    }
    c.roundtrip(&req, &want);

    // Values up to -I (1 MiB) both ways, and a multi-get of 3 MiB: several times the
    // connection's output bound, so it is written out as the socket takes it.
    let big: Vec<u8> = (0..(1 << 20) - 512).map(|i| b'a' + (i % 26) as u8).collect();
    for k in ["b1", "b2", "b3"] {
        c.send(format!("set {k} 0 0 {}\r\n", big.len()).as_bytes());
        c.send(&big);
        c.roundtrip(b"\r\n", b"STORED\r\n");
    }
    c.send(b"get b1 b2 b3\r\n");
    for k in ["b1", "b2", "b3"] {
        c.expect(format!("VALUE {k} 0 {}\r\n", big.len()).as_bytes());
        c.expect(&big);
        c.expect(b"\r\n");
    }
    c.expect(b"END\r\n");
    assert_eq!(stat(&mut c, "ssl_handshake_errors"), "0");
    // `bytes_read` counts what the client sent, not the records that carried it.
    let read: u64 = stat(&mut c, "bytes_read").parse().unwrap();
    assert!((3 * big.len() as u64..3 * big.len() as u64 + 100_000).contains(&read), "{read}");
    c.roundtrip(b"quit\r\n", b"");
    let mut rest = Vec::new();
    assert_eq!(c.s.read_to_end(&mut rest).unwrap_or(0), 0, "closed after quit, with a close_notify");
}

#[test]
fn settings_and_refresh_certs_report_tls() {
    let certs = Certs::new();
    let mut config = tls_config(&certs);
    config.tls.session_cache = true;
    let srv = spawn(config);
    let config = certs.client_config(None);
    let mut c = TlsClient::connect(srv.addr, config.clone());
    c.send(b"stats settings\r\n");
    let mut text = String::new();
    while !text.ends_with("END\r\n") {
        let mut buf = [0u8; 8192];
        let n = c.s.read(&mut buf).unwrap();
        text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let chain = format!("STAT ssl_chain_cert {}\r\n", certs.path("server.pem").display());
    for line in
        ["STAT ssl_enabled yes\r\n", &chain, "STAT ssl_session_cache yes\r\n", "STAT ssl_min_version tlsv1.2\r\n"]
    {
        assert!(text.contains(line), "{line:?} not in {text}");
    }
    // A TLS 1.3 handshake hands the client two tickets, each a session in the cache: memcached
    // counts 2 as well.
    assert_eq!(stat(&mut c, "ssl_new_sessions"), "2");
    assert_eq!(stat(&mut c, "time_since_server_cert_refresh"), "0");
    // A second connection of the same client resumes a session instead of a full handshake.
    let mut again = TlsClient::connect(srv.addr, config);
    again.roundtrip(b"mn\r\n", b"MN\r\n");
    assert_eq!(again.s.conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
}

#[test]
fn plain_text_garbage_and_hang_ups_are_counted_and_harm_no_one() {
    let certs = Certs::new();
    let srv = spawn(tls_config(&certs));
    let mut good = TlsClient::connect(srv.addr, certs.client_config(None));
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
    let mut half = TlsClient::connect(srv.addr, certs.client_config(None));
    half.handshake().unwrap();
    half.s.sock.write_all(&[23, 3, 3, 0, 64, 1, 2, 3]).unwrap();
    half.s.sock.shutdown(std::net::Shutdown::Both).unwrap();

    good.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n");
    assert_eq!(stat(&mut good, "ssl_handshake_errors"), "3");
    let deadline = Instant::now() + Duration::from_secs(5);
    while stat(&mut good, "curr_connections") != "1" {
        assert!(Instant::now() < deadline, "the bad peers' connections stay open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Handshakes under `ssl_verify_mode`: which client certificates are let in.
#[test]
fn mutual_tls_by_verify_mode() {
    let certs = Certs::new();
    let other_ca = common::tls::Ca::new("Another CA");
    let stranger = other_ca.issue(&["client"], 7, false);
    let expired = certs.ca.issue(&["client"], 8, true);
    let with = |mode| TlsSettings { verify_mode: mode, ca_cert: Some(certs.path("ca.pem")), ..certs.settings() };
    let try_client = |srv: &common::TestServer, id: Option<&common::tls::Pem>| {
        let mut c = TlsClient::connect(srv.addr, certs.client_config(id));
        // In TLS 1.3 the server's verdict on the client comes after the client's handshake ends.
        c.handshake().and_then(|()| {
            c.s.write_all(b"version\r\n")?;
            let mut buf = [0u8; 9];
            c.s.read_exact(&mut buf)?;
            Ok(buf == *b"VERSION 1")
        })
    };

    let srv = spawn(Config { tls: with(VerifyMode::Require), ..Config::for_tests() });
    assert!(try_client(&srv, Some(&certs.client)).unwrap(), "a certificate from the CA is let in");
    for (who, id) in [("no certificate", None), ("another CA's", Some(&stranger)), ("an expired one", Some(&expired))] {
        assert!(try_client(&srv, id).is_err(), "{who}: let in under verify mode 2");
    }
    let mut c = TlsClient::connect(srv.addr, certs.client_config(Some(&certs.client)));
    assert_eq!(stat(&mut c, "ssl_handshake_errors"), "3");
    drop(srv);

    let srv = spawn(Config { tls: with(VerifyMode::Request), ..Config::for_tests() });
    assert!(try_client(&srv, None).unwrap(), "mode 1 lets a client without a certificate in");
    assert!(try_client(&srv, Some(&certs.client)).unwrap());
    assert!(try_client(&srv, Some(&stranger)).is_err(), "mode 1 refuses a certificate that does not verify");
}

#[test]
fn refresh_certs_serves_new_connections_the_new_certificate() {
    let certs = Certs::new();
    let srv = spawn(tls_config(&certs));
    let mut old = TlsClient::connect(srv.addr, certs.client_config(None));
    old.roundtrip(b"version\r\n", format!("VERSION {}\r\n", larder::exec::VERSION).as_bytes());
    assert_eq!(old.server_serial(), [1]);

    certs.install_server(&certs.ca.issue(&["127.0.0.1"], 2, false));
    old.roundtrip(b"refresh_certs\r\n", b"OK\r\n");
    let mut new = TlsClient::connect(srv.addr, certs.client_config(None));
    new.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
    assert_eq!(new.server_serial(), [2]);
    old.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n");

    // A broken file: refused with the reason, and the certificate in use stays.
    std::fs::write(certs.path("server.pem"), "not a certificate").unwrap();
    old.send(b"refresh_certs\r\n");
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let mut b = [0u8];
        old.s.read_exact(&mut b).unwrap();
        line.push(b[0]);
    }
    assert!(line.starts_with(b"ERROR "), "{}", String::from_utf8_lossy(&line));
    let mut after = TlsClient::connect(srv.addr, certs.client_config(None));
    after.roundtrip(b"mn\r\n", b"MN\r\n");
    assert_eq!(after.server_serial(), [2]);
}

#[test]
fn refresh_certs_without_tls_says_so() {
    let srv = common::spawn(Config::for_tests());
    srv.connect().roundtrip(b"refresh_certs\r\n", b"Error TLS not enabled\r\n");
}

#[test]
fn idle_timeout_closes_a_stalled_handshake_only() {
    let certs = Certs::new();
    let srv = spawn(Config { idle_timeout: 1, ..tls_config(&certs) });
    let mut stalled = TcpStream::connect(srv.addr).unwrap();
    stalled.write_all(&[22, 3, 1, 0x02, 0x00, 1, 0, 1]).unwrap();
    let mut busy = TlsClient::connect(srv.addr, certs.client_config(None));
    let started = Instant::now();
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The busy client keeps working while the stalled one waits out its timeout.
    while started.elapsed() < Duration::from_millis(1500) {
        busy.roundtrip(b"mn\r\n", b"MN\r\n");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut buf = [0u8; 16];
    assert_eq!(stalled.read(&mut buf).unwrap_or(0), 0, "the stalled handshake is closed");
    assert!(started.elapsed() < Duration::from_secs(5));
    busy.roundtrip(b"mn\r\n", b"MN\r\n");
}

/// 2,000 clients open their connections and send their ClientHello at once; every one
/// completes its handshake and is answered.
#[test]
fn a_storm_of_handshakes_is_all_served() {
    const CLIENTS: usize = 2000;
    const THREADS: usize = 16;
    let certs = Certs::new();
    let srv = spawn(Config { max_connections: 4096, ..tls_config(&certs) });
    let config = certs.client_config(None);
    let barrier = std::sync::Barrier::new(THREADS);
    let served = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                let mut clients: Vec<TlsClient> =
                    (0..CLIENTS / THREADS).map(|_| TlsClient::connect(srv.addr, config.clone())).collect();
                barrier.wait();
                for c in &mut clients {
                    c.s.conn.write_tls(&mut c.s.sock).unwrap(); // the ClientHello
                }
                for c in &mut clients {
                    c.roundtrip(b"mn\r\n", b"MN\r\n");
                    served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(served.into_inner(), CLIENTS);
    let mut c = TlsClient::connect(srv.addr, config);
    assert_eq!(stat(&mut c, "ssl_handshake_errors"), "0");
    assert_eq!(stat(&mut c, "total_connections"), (CLIENTS + 1).to_string());
}
