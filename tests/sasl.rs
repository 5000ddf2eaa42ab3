//! `larder::sasl` against a real SASL setup: a sasldb made by `saslpasswd2` in a temp
//! directory, a `memcached.conf` with `mech_list: plain cram-md5`, and Debian's memcached
//! `-S` on the same config as the reference for the mechanism list and for every
//! exchange's outcome (its 0x00 `Authenticated` / 0x21 continue / 0x20 `Auth failure.`).
//!
//! libsasl2 is initialised once per process, so every test shares one fixture. Under
//! `CI=true` a missing `saslpasswd2` (Debian: sasl2-bin) or memcached fails the test;
//! elsewhere the test is skipped with a warning.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use hmac::{KeyInit, Mac};
use larder::sasl::{self, MAX_MECH_LEN, Session, Step};

use common::sasl::{ALICE, BOB, fixture, hostname, missing};

fn plain(authzid: &str, user: &str, pass: &str) -> Vec<u8> {
    format!("{authzid}\0{user}\0{pass}").into_bytes()
}

/// A CRAM-MD5 client's answer: `user hex(HMAC-MD5(password, challenge))`.
fn cram_md5(user: &str, pass: &str, challenge: &[u8]) -> Vec<u8> {
    let mut mac = hmac::Hmac::<md5::Md5>::new_from_slice(pass.as_bytes()).unwrap();
    mac.update(challenge);
    let digest = mac.finalize().into_bytes();
    let mut out = format!("{user} ").into_bytes();
    for b in digest {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    out
}

#[test]
fn sasl_plain_right_and_wrong_password() {
    let Some(_) = fixture() else { return };
    let mut s = Session::new().unwrap();
    assert_eq!(s.start(b"PLAIN", &plain("", ALICE.0, ALICE.1)), Step::Done);
    let mut s = Session::new().unwrap();
    assert_eq!(s.start(b"PLAIN", &plain("", ALICE.0, "wrong")), Step::Failed);
    // The mechanism name is matched without regard to case, as by memcached.
    let mut s = Session::new().unwrap();
    assert_eq!(s.start(b"plain", &plain("", ALICE.0, ALICE.1)), Step::Done);
    // A failed attempt leaves the session usable for another.
    let mut s = Session::new().unwrap();
    assert_eq!(s.start(b"PLAIN", &plain("", "nobody", "x")), Step::Failed);
    assert_eq!(s.start(b"PLAIN", &plain("", ALICE.0, ALICE.1)), Step::Done);
}

#[test]
fn sasl_user_at_realm() {
    let Some(_) = fixture() else { return };
    let bob = format!("{}@{}", BOB.0, BOB.1);
    let mut s = Session::new().unwrap();
    assert_eq!(s.start(b"PLAIN", &plain("", &bob, BOB.2)), Step::Done);
    // A bare name is looked up in the hostname's realm, where bob is not.
    let mut s = Session::new().unwrap();
    assert_eq!(s.start(b"PLAIN", &plain("", BOB.0, BOB.2)), Step::Failed);
    // And alice may name her realm.
    let alice = format!("{}@{}", ALICE.0, hostname());
    let mut s = Session::new().unwrap();
    assert_eq!(s.start(b"PLAIN", &plain("", &alice, ALICE.1)), Step::Done);
}

#[test]
fn sasl_cram_md5_challenge_response() {
    let Some(_) = fixture() else { return };
    let mut s = Session::new().unwrap();
    let Step::Continue(challenge) = s.start(b"CRAM-MD5", b"") else { panic!("no challenge") };
    assert!(challenge.starts_with(b"<") && challenge.ends_with(b">"), "{challenge:?}");
    assert_eq!(s.step(&cram_md5(ALICE.0, ALICE.1, &challenge)), Step::Done);

    let mut s = Session::new().unwrap();
    let Step::Continue(challenge) = s.start(b"CRAM-MD5", b"") else { panic!("no challenge") };
    assert_eq!(s.step(&cram_md5(ALICE.0, "wrong", &challenge)), Step::Failed);
}

#[test]
fn sasl_hostile_inputs_fail_cleanly() {
    let Some(_) = fixture() else { return };
    let mut s = Session::new().unwrap();
    assert_eq!(s.step(b"\0alice\0secret"), Step::Failed, "a step before any start");
    assert_eq!(s.start(b"NOSUCHMECH", b"x"), Step::Failed);
    assert_eq!(s.start(&[b'A'; MAX_MECH_LEN + 1], b"x"), Step::Failed);
    assert_eq!(s.start(b"", b"x"), Step::Failed);
    // C reads the name up to the NUL: "PL" is no mechanism.
    assert_eq!(s.start(b"PL\0AIN", &plain("", ALICE.0, ALICE.1)), Step::Failed);
    let mut s = Session::new().unwrap();
    assert_eq!(s.start(b"PLAIN", &vec![b'x'; 1 << 20]), Step::Failed, "a megabyte of junk");
    let mut s = Session::new().unwrap();
    assert_eq!(s.start(b"PLAIN", b"\0\0\0\0"), Step::Failed);
    let mut s = Session::new().unwrap();
    let Step::Continue(_) = s.start(b"CRAM-MD5", b"") else { panic!("no challenge") };
    assert_eq!(s.step(&[0xff; 4096]), Step::Failed);
    // The session outlives its failures and is dropped (sasl_dispose) without trouble.
    assert!(s.mechanisms().is_ok());
}

#[test]
fn sasl_sessions_are_send() {
    let Some(_) = fixture() else { return };
    let mut s = Session::new().unwrap();
    let handle = std::thread::spawn(move || s.start(b"PLAIN", &plain("", ALICE.0, ALICE.1)));
    assert_eq!(handle.join().unwrap(), Step::Done);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..20 {
                    let mut s = Session::new().unwrap();
                    let Step::Continue(c) = s.start(b"CRAM-MD5", b"") else { panic!() };
                    assert_eq!(s.step(&cram_md5(ALICE.0, ALICE.1, &c)), Step::Done);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

// ---- Debian's memcached -S on the same config, over the binary protocol

struct Memcached {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_memcached(conf_dir: &Path) -> Option<Memcached> {
    let bin = std::env::var("MEMCACHED_BIN").unwrap_or_else(|_| "memcached".into());
    let here = Command::new(&bin).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !here.is_ok_and(|s| s.success()) {
        missing("memcached (apt-get install memcached)");
        return None;
    }
    let port_file = conf_dir.join(format!("ports-{:?}", std::thread::current().id()));
    let _ = std::fs::remove_file(&port_file);
    // `-p -1`: an ephemeral port, written to MEMCACHED_PORT_FILENAME once listening.
    let child = Command::new(&bin)
        .args(["-S", "-B", "binary", "-p", "-1", "-U", "0", "-l", "127.0.0.1", "-t", "1", "-u", "root"])
        .env("SASL_CONF_PATH", conf_dir)
        .env("MEMCACHED_PORT_FILENAME", &port_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning memcached");
    let mut mc = Memcached { child, addr: "127.0.0.1:0".parse().unwrap() };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let port = std::fs::read_to_string(&port_file).ok().and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("TCP INET: ")).and_then(|p| p.trim().parse::<u16>().ok())
        });
        if let Some(port) = port {
            mc.addr = SocketAddr::from(([127, 0, 0, 1], port));
            return Some(mc);
        }
        assert!(mc.child.try_wait().unwrap().is_none(), "memcached -S exited at startup");
        assert!(Instant::now() < deadline, "memcached did not report its port");
        std::thread::sleep(Duration::from_millis(5));
    }
}

const LIST_MECHS: u8 = 0x20;
const AUTH: u8 = 0x21;
const STEP: u8 = 0x22;

/// One binary request (magic 0x80, 24-byte header, no extras), and its reply's status and
/// body.
fn call(conn: &mut TcpStream, opcode: u8, key: &[u8], value: &[u8]) -> (u16, Vec<u8>) {
    let mut req = vec![0x80, opcode];
    req.extend_from_slice(&(key.len() as u16).to_be_bytes());
    req.extend_from_slice(&[0, 0, 0, 0]);
    req.extend_from_slice(&((key.len() + value.len()) as u32).to_be_bytes());
    req.extend_from_slice(&[0; 12]);
    req.extend_from_slice(key);
    req.extend_from_slice(value);
    conn.write_all(&req).unwrap();
    let mut head = [0u8; 24];
    conn.read_exact(&mut head).unwrap();
    assert_eq!((head[0], head[1]), (0x81, opcode));
    let status = u16::from_be_bytes([head[6], head[7]]);
    let mut body = vec![0; u32::from_be_bytes(head[8..12].try_into().unwrap()) as usize];
    conn.read_exact(&mut body).unwrap();
    (status, body)
}

/// memcached's reply for a `Step`: what the binary protocol must send.
fn as_memcached_reply(step: &Step) -> (u16, Vec<u8>) {
    match step {
        Step::Done => (0, b"Authenticated".to_vec()),
        Step::Continue(challenge) => (0x21, challenge.clone()),
        Step::Failed => (0x20, b"Auth failure.".to_vec()),
    }
}

fn connect(mc: &Memcached) -> TcpStream {
    let c = TcpStream::connect(mc.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

#[test]
fn sasl_mechanism_list_is_memcacheds() {
    let Some(dir) = fixture() else { return };
    let Some(mc) = start_memcached(dir) else { return };
    let (status, theirs) = call(&mut connect(&mc), LIST_MECHS, b"", b"");
    assert_eq!(status, 0);
    let ours = Session::new().unwrap().mechanisms().unwrap();
    assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
    assert_eq!(ours, b"PLAIN CRAM-MD5");
}

/// The same exchanges on one memcached connection and one `Session` each: the outcomes
/// (mapped to memcached's reply) must be memcached's replies byte for byte.
#[test]
fn sasl_exchanges_match_memcached() {
    let Some(dir) = fixture() else { return };
    let Some(mc) = start_memcached(dir) else { return };
    let alice = plain("", ALICE.0, ALICE.1);
    let bob = plain("", &format!("{}@{}", BOB.0, BOB.1), BOB.2);
    let wrong = plain("", ALICE.0, "wrong");
    type Ops<'a> = &'a [(u8, &'a [u8], &'a [u8])];
    let sessions: &[(&str, Ops)] = &[
        ("plain", &[(AUTH, b"PLAIN", &alice)]),
        ("lower-case name", &[(AUTH, b"plain", &alice)]),
        ("user@realm", &[(AUTH, b"PLAIN", &bob)]),
        ("wrong, then right", &[(AUTH, b"PLAIN", &wrong), (AUTH, b"PLAIN", &alice)]),
        ("no data: an empty challenge", &[(AUTH, b"PLAIN", b""), (STEP, b"PLAIN", &alice)]),
        ("unknown mechanism", &[(AUTH, b"NOSUCH", &alice)]),
        ("a NUL in the name", &[(AUTH, b"PL\0AIN", &alice), (AUTH, b"PLAIN\0junk", &alice)]),
        ("a step first", &[(STEP, b"PLAIN", &alice)]),
        ("a second exchange after success", &[(AUTH, b"PLAIN", &alice), (AUTH, b"PLAIN", &alice)]),
        ("junk", &[(AUTH, b"PLAIN", b"\0\0\0\0"), (AUTH, b"CRAM-MD5", b"x y")]),
    ];
    for (name, ops) in sessions {
        let mut conn = connect(&mc);
        let mut ours = Session::new().unwrap();
        for (i, &(opcode, mech, data)) in ops.iter().enumerate() {
            let theirs = call(&mut conn, opcode, mech, data);
            let step = if opcode == AUTH { ours.start(mech, data) } else { ours.step(data) };
            assert_eq!(as_memcached_reply(&step), theirs, "{name}, request {i}");
        }
    }
    // CRAM-MD5 on both, answered by the test's HMAC-MD5 (memcached's acceptance checks it).
    let mut conn = connect(&mc);
    let (status, challenge) = call(&mut conn, AUTH, b"CRAM-MD5", b"");
    assert_eq!(status, 0x21);
    let answer = cram_md5(ALICE.0, ALICE.1, &challenge);
    assert_eq!(call(&mut conn, STEP, b"CRAM-MD5", &answer), (0, b"Authenticated".to_vec()));
    let mut ours = Session::new().unwrap();
    let Step::Continue(challenge) = ours.start(b"CRAM-MD5", b"") else { panic!("no challenge") };
    assert_eq!(ours.step(&cram_md5(ALICE.0, ALICE.1, &challenge)), Step::Done);
}

#[test]
fn sasl_init_is_once_per_process() {
    let Some(dir) = fixture() else { return };
    // A second init (even with another directory) returns the first result.
    assert_eq!(sasl::init_with(Some(OsStr::new("/nonexistent"))), Ok(()));
    assert_eq!(sasl::init(), Ok(()));
    assert!(dir.join("memcached.conf").exists());
}
