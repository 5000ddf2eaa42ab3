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
use rustls::pki_types::pem::PemObject;

fn tls_config(certs: &Certs) -> Config {
    Config { tls: certs.settings(), ..Config::for_tests() }
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
    assert_eq!(c.stat("ssl_handshake_errors"), "0");
    // `bytes_read` counts what the client sent, not the records that carried it.
    let read: u64 = c.stat("bytes_read").parse().unwrap();
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
    assert_eq!(c.stat("ssl_new_sessions"), "2");
    assert_eq!(c.stat("time_since_server_cert_refresh"), "0");
    // A second connection of the same client resumes a session instead of a full handshake.
    let mut again = TlsClient::connect(srv.addr, config);
    again.roundtrip(b"mn\r\n", b"MN\r\n");
    assert_eq!(again.s.conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
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
    assert_eq!(c.stat("ssl_handshake_errors"), "3");
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
    old.roundtrip(b"refresh_certs noreply\r\nmn\r\n", b"MN\r\n");
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
    let want = format!("Error loading the certificate chain: {} : ", certs.path("server.pem").display());
    assert!(line.starts_with(want.as_bytes()), "{}", String::from_utf8_lossy(&line));
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
    assert_eq!(c.stat("ssl_handshake_errors"), "0");
    // memcached counts its listening socket too.
    assert_eq!(c.stat("total_connections"), (CLIENTS + 2).to_string());
}

/// `-Z` and `-o ssl_*` mistakes stop the server at start with one line (memcached's words
/// where it has them).
#[test]
fn bad_tls_options_are_refused_in_one_line() {
    let certs = Certs::new();
    let bin = env!("CARGO_BIN_EXE_larder");
    let (cert, key) = (certs.path("server.pem"), certs.path("server.key"));
    let files = format!("ssl_chain_cert={},ssl_key={}", cert.display(), key.display());
    let nope = certs.path("nope.pem");
    let with = |more: &str| format!("{files},{more}");
    for (args, want) in [
        (
            vec!["-Z".to_string()],
            "larder: -Z: no certificate: give -o ssl_chain_cert=<file> (and ssl_key=<file>)".into(),
        ),
        (
            vec!["-Z".into(), "-o".into(), "ssl_chain_cert".into()],
            "larder: Missing ssl_chain_cert argument".to_string(),
        ),
        (
            vec!["-Z".into(), "-o".into(), format!("ssl_chain_cert={}", nope.display())],
            format!(
                "larder: Error loading the certificate chain: {} : I/O error: No such file or directory (os error 2)",
                nope.display()
            ),
        ),
        (
            vec!["-Z".into(), "-o".into(), with(&format!("ssl_ca_cert={},ssl_verify_mode=2", nope.display()))],
            format!(
                "larder: Error loading the CA certificate: {} : I/O error: No such file or directory (os error 2)",
                nope.display()
            ),
        ),
        (
            vec!["-Z".into(), "-o".into(), with("ssl_verify_mode=5")],
            "larder: Invalid ssl_verify_mode. Use help to see valid options.".into(),
        ),
        (
            vec!["-Z".into(), "-o".into(), with("ssl_verify_mode=x")],
            "larder: could not parse argument to ssl_verify_mode".into(),
        ),
        (
            vec!["-Z".into(), "-o".into(), with("ssl_verify_mode=2")],
            "larder: ssl_verify_mode above 0 needs ssl_ca_cert: the CAs client certificates must chain to".into(),
        ),
        (
            vec!["-Z".into(), "-o".into(), with("ssl_min_version=1")],
            "larder: ssl_min_version=1: TLS 1.1 is not offered (Larder's TLS, rustls, speaks TLS 1.2 and 1.3)".into(),
        ),
        (
            vec!["-Z".into(), "-o".into(), with("ssl_min_version=7")],
            "larder: Invalid ssl_min_version. Use help to see valid options.".into(),
        ),
        (
            vec!["-Z".into(), "-o".into(), with("ssl_keyformat=3")],
            "larder: ssl_keyformat: Larder reads keys in PEM (1) or DER (2)".into(),
        ),
    ] {
        let out = std::process::Command::new(bin).args(["-p", "0"]).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), want, "{args:?}");
    }
    let out =
        std::process::Command::new(bin).args(["-p", "0", "-Z", "-o", &with("ssl_ciphers=RC4-MD5")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("larder: Error setting the provided cipher(s): RC4-MD5: 'RC4-MD5' is not one"), "{err}");
}

/// `-l notls:` keeps a plain listener beside the TLS ones, as memcached's does.
#[test]
fn notls_listener_serves_plain_text_beside_tls() {
    let certs = Certs::new();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (tls_port, plain_port) = (free(), free());
    let files =
        format!("ssl_chain_cert={},ssl_key={}", certs.path("server.pem").display(), certs.path("server.key").display());
    let listen = format!("notls:127.0.0.1:{plain_port},127.0.0.1");
    let (mut child, addr, _log) = common::start_binary(
        env!("CARGO_BIN_EXE_larder"),
        &["-p", &tls_port.to_string(), "-l", &listen, "-Z", "-o", &files],
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(addr.ends_with(&format!(":{plain_port}")), "{addr}");
        let mut plain = common::Client { s: TcpStream::connect(("127.0.0.1", plain_port)).unwrap() };
        plain.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        plain.roundtrip(b"mn\r\n", b"MN\r\n");
        let addr = format!("127.0.0.1:{tls_port}").parse().unwrap();
        let mut tls = TlsClient::connect(addr, certs.client_config(None));
        tls.roundtrip(b"mn\r\n", b"MN\r\n");
        assert_eq!(plain.stat("ssl_handshake_errors"), "0");
    }));
    let _ = child.kill();
    let _ = child.wait();
    result.unwrap();
}

/// `-Y` logins and `-c` over TLS: a client logs in through its encrypted connection, and
/// one past the limit gets memcached's refusal (written before any handshake, as
/// memcached writes it) while the others carry on.
#[test]
fn logins_and_the_connection_limit_over_tls() {
    let certs = Certs::new();
    let auth = larder::config::AuthFile::parse(b"app:secret").unwrap();
    let srv = spawn(Config { auth: Some(auth), max_connections: 2, ..tls_config(&certs) });
    let mut c = TlsClient::connect(srv.addr, certs.client_config(None));
    c.roundtrip(b"get k\r\n", b"CLIENT_ERROR unauthenticated\r\n");
    c.roundtrip(b"set login 0 0 10\r\napp secret\r\n", b"STORED\r\n");
    c.roundtrip(b"set k 0 0 1\r\nv\r\nget k\r\n", b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n");
    let mut second = TlsClient::connect(srv.addr, certs.client_config(None));
    second.roundtrip(b"set login 0 0 10\r\napp secret\r\n", b"STORED\r\n");
    let mut third = TcpStream::connect(srv.addr).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut refused = Vec::new();
    third.read_to_end(&mut refused).unwrap();
    assert_eq!(refused, b"ERROR Too many open connections\r\n");
    c.roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nv\r\nEND\r\n");
}

/// Without `ssl_session_cache`, clients still resume by stateless tickets (as with
/// memcached's OpenSSL), and nothing is counted in `ssl_new_sessions`, which is absent.
#[test]
fn sessions_resume_by_ticket_without_the_cache() {
    let certs = Certs::new();
    let srv = spawn(tls_config(&certs));
    let config = certs.client_config(None);
    let mut first = TlsClient::connect(srv.addr, config.clone());
    first.roundtrip(b"mn\r\n", b"MN\r\n");
    assert_eq!(first.s.conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
    let mut again = TlsClient::connect(srv.addr, config);
    again.roundtrip(b"mn\r\n", b"MN\r\n");
    assert_eq!(again.s.conn.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    again.send(b"stats\r\n");
    let mut text = Vec::new();
    while !text.ends_with(b"END\r\n") {
        let mut buf = [0u8; 8192];
        let n = again.s.read(&mut buf).unwrap();
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(text).unwrap();
    assert!(!text.contains("ssl_new_sessions") && text.contains("STAT ssl_handshake_errors 0\r\n"), "{text}");
}

/// A chain file that also holds the key needs no `ssl_key`; a DER key is read with
/// `ssl_keyformat=2`.
#[test]
fn key_in_the_chain_file_or_in_der() {
    let certs = Certs::new();
    let pem = certs.ca.issue(&["127.0.0.1"], 9, false);
    std::fs::write(certs.path("both.pem"), format!("{}{}", pem.cert, pem.key)).unwrap();
    let der = rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
    std::fs::write(certs.path("key.der"), der.secret_der()).unwrap();
    for settings in [
        TlsSettings { key: None, chain_cert: Some(certs.path("both.pem")), ..certs.settings() },
        TlsSettings {
            key: Some(certs.path("key.der")),
            keyformat: 2,
            chain_cert: Some(certs.path("both.pem")),
            ..certs.settings()
        },
    ] {
        let srv = spawn(Config { tls: settings, ..Config::for_tests() });
        let mut c = TlsClient::connect(srv.addr, certs.client_config(None));
        c.roundtrip(b"mn\r\n", b"MN\r\n");
        assert_eq!(c.server_serial(), [9]);
    }
}
