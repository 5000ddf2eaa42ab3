//! A connection driven by hand over a socket pair: turns, buffers, bounds on output.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use super::*;
use crate::Config;
use crate::clock::Clock;

/// A connection on one end of a socket pair, and the client's end.
fn pair() -> (Connection, UnixStream) {
    let (server, client) = UnixStream::pair().unwrap();
    server.set_nonblocking(true).unwrap();
    let ctx = Arc::new(Ctx::new(Config::for_tests(), Clock::starting_at(1_700_000_000)));
    (Connection::new(Transport::plain(server.into()), ctx), client)
}

/// Everything the server has written so far (without waiting, and without making the
/// client's socket non-blocking, which a writer thread may share).
fn replies(client: &mut UnixStream) -> Vec<u8> {
    let (mut got, mut buf) = (Vec::new(), [0u8; 1 << 16]);
    loop {
        // SAFETY: `buf` is writable for its length during the call.
        let n = unsafe { libc::recv(client.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n <= 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n as usize]);
    }
}

#[test]
fn a_connection_with_endless_input_lets_others_go_first() {
    let (mut conn, mut client) = pair();
    let requests = 100_000 / 13;
    client.write_all(&b"get nothing\r\n".repeat(requests)).unwrap();
    // A read of at most 16 KiB brings more than -R's 20 commands: they are all answered
    // (one write), then the others' turn; the rest is still unread.
    assert_eq!(conn.on_ready(true, false, false), Wait::Turn);
    let first = replies(&mut client).len() / 5;
    assert!(first > 20 && first < requests, "{first} of {requests} answered in one turn");
    // The next turns, without a new event, go on where the last stopped until the input
    // runs out.
    let mut turns = 1;
    while conn.on_ready(false, false, false) == Wait::Turn {
        turns += 1;
    }
    assert!(turns > 2, "{turns} turns");
    assert_eq!(replies(&mut client), b"END\r\n".repeat(requests - first));
}

#[test]
fn a_connection_gives_back_the_buffer_a_large_value_took() {
    let (mut conn, mut client) = pair();
    let writer = std::thread::spawn({
        let mut client = client.try_clone().unwrap();
        move || {
            client.write_all(b"set big 0 0 1000000\r\n").unwrap();
            client.write_all(&vec![b'v'; 1_000_000]).unwrap();
            client.write_all(b"\r\n").unwrap();
        }
    });
    let mut got = Vec::new();
    while got != b"STORED\r\n" {
        conn.on_ready(true, false, false);
        got.extend_from_slice(&replies(&mut client));
    }
    writer.join().unwrap();
    // Waiting for its next command, it holds no more than a small buffer.
    assert!(conn.rbuf.capacity() <= KEEP_CAPACITY, "{} bytes kept", conn.rbuf.capacity());
}

#[test]
fn bytes_and_a_hang_up_in_one_event_are_answered_then_closed() {
    let (mut conn, mut client) = pair();
    client.write_all(b"set k 0 0 1\r\nx\r\nget k\r\n").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    // A short read must not be taken for an empty socket once the client has hung up.
    assert_eq!(conn.on_ready(true, true, false), Wait::Close);
    assert_eq!(replies(&mut client), b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n");
}

#[test]
fn a_full_socket_holds_the_rest_of_a_multi_get_until_it_drains() {
    let (mut conn, mut client) = pair();
    let value = vec![b'v'; 100_000];
    let mut set = b"set big 0 0 100000\r\n".to_vec();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    client.write_all(&set).unwrap();
    assert_eq!(conn.on_ready(true, false, false), Wait::Read);
    assert_eq!(replies(&mut client), b"STORED\r\n");
    // 30 copies of the value: 3 MB, far more than the socket and MAX_PENDING_OUTPUT.
    client.write_all(format!("get{}\r\nget big\r\n", " big".repeat(30)).as_bytes()).unwrap();
    assert_eq!(conn.on_ready(true, false, false), Wait::Write);
    let mut got = Vec::new();
    loop {
        got.extend_from_slice(&replies(&mut client));
        match conn.on_ready(false, false, false) {
            Wait::Write | Wait::Turn => continue,
            Wait::Read => break,
            other => panic!("{other:?}"),
        }
    }
    got.extend_from_slice(&replies(&mut client));
    let mut one = b"VALUE big 0 100000\r\n".to_vec();
    one.extend_from_slice(&value);
    one.extend_from_slice(b"\r\n");
    let mut want = one.repeat(30);
    want.extend_from_slice(b"END\r\n");
    want.extend_from_slice(&one);
    want.extend_from_slice(b"END\r\n");
    assert!(got == want, "{} bytes, want {}", got.len(), want.len());
}

#[test]
fn a_metadump_larger_than_the_output_bound_is_written_as_it_goes() {
    let (mut conn, mut client) = pair();
    // 20,000 items with 200-byte keys: a dump of about 5 MB.
    let key = |i: usize| format!("{i:0>200}");
    for i in 0..20_000 {
        let key = key(i);
        let args = crate::store::StoreArgs { key: key.as_bytes(), value: b"v", ..Default::default() };
        assert_eq!(conn.ctx.store.store(&args).0, crate::store::StoreOutcome::Stored);
    }
    client.write_all(b"lru_crawler metadump all\r\nversion\r\n").unwrap();
    let mut got = Vec::new();
    let mut wait = conn.on_ready(true, false, false);
    loop {
        assert!(conn.out.len() < MAX_PENDING_OUTPUT + 512, "held {} bytes", conn.out.len());
        got.extend_from_slice(&replies(&mut client));
        match wait {
            Wait::Write | Wait::Turn => wait = conn.on_ready(false, false, false),
            Wait::Read => break,
            other => panic!("{other:?}"),
        }
    }
    got.extend_from_slice(&replies(&mut client));
    let text = String::from_utf8(got).unwrap();
    let (lines, tail) = text.strip_prefix("OK\r\n").unwrap().rsplit_once("END\r\n").unwrap();
    // Unlike memcached, which leaves it until more bytes come, the command behind the
    // dump is answered at once.
    assert_eq!(tail, format!("VERSION {}\r\n", crate::exec::VERSION));
    let mut seen: Vec<usize> =
        lines.lines().map(|l| l.strip_prefix("key=").unwrap().split_once(' ').unwrap().0.parse().unwrap()).collect();
    seen.sort_unstable();
    assert!(seen.iter().copied().eq(0..20_000), "{} lines", seen.len());
}
