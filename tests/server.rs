//! Behaviour over real TCP against an in-process server: exact bytes in, exact bytes out.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{spawn, spawn_with_clock};
use larder::Config;
use larder::clock::Clock;

#[test]
fn pipelined_commands_are_answered_in_order() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.roundtrip(
        b"set k 7 0 2\r\nhi\r\nget k nokey k\r\nappend k 0 0 1\r\n!\r\nprepend k 0 0 1\r\n<\r\n\
          get k\r\ndelete k\r\ndelete k\r\nbogus\r\nmn\r\n",
        b"STORED\r\nVALUE k 7 2\r\nhi\r\nVALUE k 7 2\r\nhi\r\nEND\r\nSTORED\r\nSTORED\r\n\
          VALUE k 7 4\r\n<hi!\r\nEND\r\nDELETED\r\nNOT_FOUND\r\nERROR\r\nMN\r\n",
    );
}

#[test]
fn a_batch_of_replies_is_one_write() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.roundtrip(b"set k 0 0 1\r\nv\r\n", b"STORED\r\n");
    let before = srv.ctx.stats.totals().socket_writes;
    let mut req = Vec::new();
    let mut want = Vec::new();
    for _ in 0..50 {
        req.extend_from_slice(b"get k\r\n");
        want.extend_from_slice(b"VALUE k 0 1\r\nv\r\nEND\r\n");
    }
    c.roundtrip(&req, &want);
    assert_eq!(srv.ctx.stats.totals().socket_writes - before, 1, "50 replies, one write");
}

#[test]
fn large_values_written_from_the_store_survive_overwrites_and_slow_readers() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    // Values of 4 KiB and more are written from the item's own memory (vectored writes);
    // smaller ones are copied. Mix both in one multi-get, in a pipeline with other replies;
    // ten shared values make more slices than one vectored write takes.
    let sizes = [4096usize, 10, 200_000, 4095, 65_536, 700_000, 5_000, 6_000, 7_000, 8_000, 9_000, 10_000];
    let mut want = Vec::new();
    let mut get = b"get".to_vec();
    for (i, n) in sizes.iter().enumerate() {
        let v: Vec<u8> = (0..*n).map(|j| (i * 31 + j % 251) as u8).collect();
        let mut set = format!("set big{i} {i} 0 {n}\r\n").into_bytes();
        set.extend_from_slice(&v);
        set.extend_from_slice(b"\r\n");
        c.roundtrip(&set, b"STORED\r\n");
        get.extend_from_slice(format!(" big{i}").as_bytes());
        want.extend_from_slice(format!("VALUE big{i} {i} {n}\r\n").as_bytes());
        want.extend_from_slice(&v);
        want.extend_from_slice(b"\r\n");
    }
    get.extend_from_slice(b"\r\nset big2 0 0 1\r\nx\r\ndelete big4\r\nget big2\r\n");
    want.extend_from_slice(b"END\r\nSTORED\r\nDELETED\r\nVALUE big2 0 1\r\nx\r\nEND\r\n");
    // Send it all, wait while the server fills the socket and waits on us, then read
    // slowly: the overwritten and deleted values must still come out whole.
    c.send(&get);
    std::thread::sleep(Duration::from_millis(100));
    c.expect(&want);
    assert_eq!(srv.ctx.store.lookup(b"big2", &larder::store::Lookup::PEEK, |f| f.item.value().len()), Some(1));
}

#[test]
fn bare_newlines_and_extra_spaces() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.roundtrip(b"set  lf   0 0 1 \nx\r\nget lf\n", b"STORED\r\nVALUE lf 0 1\r\nx\r\nEND\r\n");
}

#[test]
fn cas_round_trip() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.roundtrip(b"set k 0 0 1\r\na\r\n", b"STORED\r\n");
    c.send(b"gets k\r\n");
    let line = c.line();
    let cas: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    c.expect(b"a\r\nEND\r\n");
    c.roundtrip(format!("cas k 0 0 1 {}\r\nb\r\n", cas + 1).as_bytes(), b"EXISTS\r\n");
    c.roundtrip(format!("cas k 0 0 1 {cas}\r\nb\r\n").as_bytes(), b"STORED\r\n");
    c.roundtrip(format!("cas k 0 0 1 {cas}\r\nc\r\n").as_bytes(), b"EXISTS\r\n");
    c.roundtrip(b"cas nokey 0 0 1 1\r\nc\r\n", b"NOT_FOUND\r\n");
    assert_eq!(c.stat("cas_badval"), "2");
    assert_eq!(c.stat("cas_hits"), "1");
    assert_eq!(c.stat("cas_misses"), "1");
}

#[test]
fn values_up_to_the_item_limit_and_refusal_beyond() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    // memcached's largest value at -I 1m with a 3-byte key: 1 MiB - 59 - 3.
    let max = (1 << 20) - 59 - 3;
    let value: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    let mut req = format!("set big 0 0 {max}\r\n").into_bytes();
    req.extend_from_slice(&value);
    req.extend_from_slice(b"\r\nget big\r\n");
    let mut want = format!("STORED\r\nVALUE big 0 {max}\r\n").into_bytes();
    want.extend_from_slice(&value);
    want.extend_from_slice(b"\r\nEND\r\n");
    c.roundtrip(&req, &want);

    // One byte more: the data is swallowed, the old value dropped, the connection kept.
    let mut req = format!("set big 0 0 {}\r\n", max + 1).into_bytes();
    req.extend_from_slice(&vec![b'x'; max + 1]);
    req.extend_from_slice(b"\r\nget big\r\n");
    c.roundtrip(&req, b"SERVER_ERROR object too large for cache\r\nEND\r\n");
    assert_eq!(c.stat("store_too_large"), "1");
}

#[test]
fn bad_data_chunk_keeps_the_connection() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.roundtrip(b"set bd 0 0 3\r\nabcde\r\nget bd\r\n", b"CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\n");
}

#[test]
fn long_line_without_newline_closes_but_long_multiget_does_not() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.send(&[b'x'; 3000]);
    assert!(c.is_closed());

    let mut c = srv.connect();
    let keys: String = (0..2000).map(|i| format!(" key{i}")).collect();
    c.send(format!("get{keys}").as_bytes());
    std::thread::sleep(Duration::from_millis(50));
    c.roundtrip(b"\r\n", b"END\r\n");
}

#[test]
fn http_requests_are_dropped() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.is_closed());
}

#[test]
fn quit_closes_after_earlier_replies() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.send(b"version\r\nquit\r\nversion\r\n");
    assert_eq!(c.line(), format!("VERSION {}", larder::exec::VERSION));
    assert!(c.is_closed());
}

#[test]
fn connections_past_the_limit_are_refused_and_counted() {
    let srv = spawn(Config { max_connections: 2, ..Config::for_tests() });
    let mut a = srv.connect();
    let mut b = srv.connect();
    a.roundtrip(b"mn\r\n", b"MN\r\n");
    b.roundtrip(b"mn\r\n", b"MN\r\n");
    let mut third = srv.connect();
    third.expect(b"ERROR Too many open connections\r\n");
    assert!(third.is_closed());
    assert_eq!(a.stat("rejected_connections"), "1");
    assert_eq!(a.stat("curr_connections"), "2");
    drop(b);
    // The freed place is usable once the server has seen the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.ctx.stats.totals().curr_connections > 1 {
        assert!(Instant::now() < deadline, "close not noticed");
        std::thread::yield_now();
    }
    let mut d = srv.connect();
    d.roundtrip(b"mn\r\n", b"MN\r\n");
}

#[test]
fn expiry_follows_the_server_clock() {
    let clock = Clock::starting_at(1_800_000_000);
    let srv = spawn_with_clock(Config::for_tests(), clock.clone());
    let mut c = srv.connect();
    // Absolute exptimes are read against the clock, which starts in the (test's) future.
    c.roundtrip(
        b"set ttl 0 0 1\r\na\r\nset abs 0 1800000005 1\r\nb\r\nset neg 0 -1 1\r\nc\r\n",
        b"STORED\r\nSTORED\r\nSTORED\r\n",
    );
    c.roundtrip(b"touch ttl 10\r\nget neg\r\n", b"TOUCHED\r\nEND\r\n");
    clock.advance(5);
    c.roundtrip(b"get abs ttl\r\n", b"VALUE ttl 0 1\r\na\r\nEND\r\n");
    clock.advance(5);
    c.roundtrip(b"get ttl\r\ngat 100 ttl\r\n", b"END\r\nEND\r\n");
    assert_eq!(c.stat("get_expired"), "3");
}

#[test]
fn flush_all_with_delay() {
    let clock = Clock::starting_at(1_800_000_000);
    let srv = spawn_with_clock(Config::for_tests(), clock.clone());
    let mut c = srv.connect();
    c.roundtrip(b"set a 0 0 1\r\na\r\nflush_all 2\r\nget a\r\n", b"STORED\r\nOK\r\nVALUE a 0 1\r\na\r\nEND\r\n");
    clock.advance(2);
    c.roundtrip(b"get a\r\nset b 0 0 1\r\nb\r\nget b\r\n", b"END\r\nSTORED\r\nVALUE b 0 1\r\nb\r\nEND\r\n");
    c.roundtrip(b"flush_all noreply\r\nget b\r\n", b"END\r\n");
    assert_eq!(c.stat("cmd_flush"), "2");
}

#[test]
fn stats_reports_counters() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.roundtrip(b"set a 0 0 1\r\na\r\nget a b\r\nincr a 1\r\ndecr x 1\r\ntouch a 0\r\n",
        b"STORED\r\nVALUE a 0 1\r\na\r\nEND\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\nNOT_FOUND\r\nTOUCHED\r\n");
    for (name, want) in [
        ("cmd_get", "2"),
        ("get_hits", "1"),
        ("get_misses", "1"),
        ("cmd_set", "1"),
        ("curr_items", "1"),
        ("total_items", "1"),
        ("decr_misses", "1"),
        ("touch_hits", "1"),
        ("limit_maxbytes", "67108864"),
        ("threads", "2"),
        ("curr_connections", "1"),
    ] {
        assert_eq!(c.stat(name), want, "{name}");
    }
    c.roundtrip(b"stats reset\r\n", b"RESET\r\n");
    assert_eq!(c.stat("cmd_get"), "0");
    assert_eq!(c.stat("curr_items"), "1", "reset does not forget items");
}

#[test]
fn many_clients_at_once() {
    let srv = spawn(Config::for_tests());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let mut c = srv.connect();
            std::thread::spawn(move || {
                c.roundtrip(format!("set n{t} 0 0 1\r\n0\r\n").as_bytes(), b"STORED\r\n");
                for i in 0..200 {
                    let key = format!("t{t}k{i}");
                    c.roundtrip(format!("set {key} {t} 0 3\r\nv{t:02}\r\n").as_bytes(), b"STORED\r\n");
                    c.roundtrip(format!("incr n{t} 1\r\n").as_bytes(), format!("{}\r\n", i + 1).as_bytes());
                }
                c.roundtrip(
                    format!("get t{t}k199\r\n").as_bytes(),
                    format!("VALUE t{t}k199 {t} 3\r\nv{t:02}\r\nEND\r\n").as_bytes(),
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(srv.connect().stat("curr_items"), "1608");
}

#[test]
fn shutdown_closes_idle_connections_and_returns() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.roundtrip(b"mn\r\n", b"MN\r\n");
    let started = Instant::now();
    drop(srv); // signals shutdown and joins the server thread
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut b = [0u8; 1];
    assert!(matches!(c.s.read(&mut b), Ok(0) | Err(_)));
}

#[test]
fn auth_file_gates_every_command_until_login() {
    let auth = larder::config::AuthFile::parse(b"alice:secret\nbob:pw\n").unwrap();
    let srv = spawn(Config { auth: Some(auth), ..Config::for_tests() });
    let mut c = srv.connect();
    c.roundtrip(b"version\r\n", b"CLIENT_ERROR unauthenticated\r\n");
    c.roundtrip(b"set x 0 0 9\r\nalice bad\r\n", b"CLIENT_ERROR authentication failure\r\n");
    c.roundtrip(b"set x 0 0 5\r\nalice\r\n", b"CLIENT_ERROR bad authentication token format\r\n");
    c.roundtrip(b"set x 0 0 12\r\nalice secret\r\n", b"STORED\r\n");
    c.roundtrip(b"set k 0 0 1\r\nv\r\nget k\r\n", b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n");
    // A malformed login is not counted, as in memcached.
    assert_eq!(c.stat("auth_cmds"), "2");
    assert_eq!(c.stat("auth_errors"), "1");
    // Each connection logs in on its own.
    srv.connect().roundtrip(b"get k\r\n", b"CLIENT_ERROR unauthenticated\r\n");
}

#[test]
fn shutdown_only_when_enabled() {
    let srv = spawn(Config::for_tests());
    srv.connect().roundtrip(b"shutdown\r\n", b"SERVER_ERROR: shutdown not enabled\r\n");

    let srv = spawn(Config { enable_shutdown: true, ..Config::for_tests() });
    let mut c = srv.connect();
    c.roundtrip(b"shutdown now\r\n", b"CLIENT_ERROR invalid shutdown mode\r\n");
    let mut other = srv.connect();
    other.roundtrip(b"mn\r\n", b"MN\r\n");
    c.send(b"shutdown graceful\r\n");
    assert!(c.is_closed());
    assert!(other.is_closed(), "the server stops, closing idle connections");
    assert!(srv.ctx.shutdown.is_cancelled());
}

#[test]
fn meta_commands_over_tcp() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.roundtrip(b"ms k 2 T0 F3 c\r\nhi\r\n", b"HD c1\r\n");
    c.roundtrip(b"mg k v f k s Oop\r\n", b"VA 2 f3 kk s2 Oop\r\nhi\r\n");
    c.roundtrip(b"mg miss v q\r\nmg miss k\r\nmn\r\n", b"EN kmiss\r\nMN\r\n");
    // Stale-while-revalidate: one client wins the recache token.
    c.roundtrip(b"md k I\r\nmg k v c\r\nmg k v c\r\n", b"HD\r\nVA 2 c2 X W\r\nhi\r\nVA 2 c2 Z X\r\nhi\r\n");
    c.roundtrip(b"ma n N0 J5 v\r\nma n D2 v\r\nma n MD D10 v\r\n", b"VA 1\r\n5\r\nVA 1\r\n7\r\nVA 1\r\n0\r\n");
}

#[test]
fn stats_conns_lists_listener_and_clients() {
    let srv = spawn(Config::for_tests());
    let mut idle = srv.connect();
    idle.roundtrip(b"mn\r\n", b"MN\r\n");
    let mut c = srv.connect();
    c.send(b"stats conns\r\n");
    let mut lines = Vec::new();
    loop {
        let l = c.line();
        if l == "END" {
            break;
        }
        lines.push(l);
    }
    // Rows are by descriptor, and descriptors are shared with the other tests running in
    // this process, so the listener need not come first.
    let mut states: Vec<&str> =
        lines.iter().filter(|l| l.contains(":state ")).map(|l| l.rsplit(' ').next().unwrap()).collect();
    states.sort_unstable();
    assert_eq!(states, ["conn_listening", "conn_parse_cmd", "conn_read"], "{lines:?}");
    let listen = format!("listen_addr tcp:{}", srv.addr);
    assert_eq!(lines.iter().filter(|l| l.ends_with(&listen)).count(), 2, "{lines:?}");
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.ctx.stats.totals().curr_connections > 1 {
        assert!(Instant::now() < deadline, "close not noticed");
        std::thread::yield_now();
    }
    c.send(b"stats conns\r\n");
    let mut n = 0;
    while c.line() != "END" {
        n += 1;
    }
    assert_eq!(n, 3 + 4, "closed connections leave the table");
}

/// `stats conns` shows what each client is waiting for with memcached's names, as seen
/// on memcached 1.6.18: a client that sent nothing `conn_new_cmd`; one between commands
/// or part way through a command line `conn_read`; one part way through a data block
/// (`set`, `ms`, or only the command line sent) `conn_nread`; one sending a refused (too
/// large) block `conn_swallow`; one not taking its replies `conn_mwrite`; the asking one
/// `conn_parse_cmd`.
#[test]
fn stats_conns_names_what_each_client_waits_for() {
    let srv = spawn(Config::for_tests());
    let mut setup = srv.connect();
    let value = vec![b'v'; 1_000_000];
    setup.send(format!("set big 0 0 {}\r\n", value.len()).as_bytes());
    setup.send(&value);
    setup.roundtrip(b"\r\n", b"STORED\r\n");
    let (mut clients, mut want) = (Vec::new(), Vec::new());
    let sends: [(&[u8], &str); 9] = [
        (b"", "conn_new_cmd"),
        (b"get a\r\n", "conn_read"),
        (b"get a", "conn_read"),
        (b"mg foo v", "conn_read"),
        (b"set k 0 0 10\r\n", "conn_nread"),
        (b"set k 0 0 10\r\nabc", "conn_nread"),
        (b"ms k 10\r\nab", "conn_nread"),
        (b"set k 0 0 2000000\r\nab", "conn_swallow"),
        // 100 MB of replies: more than the socket buffers hold.
        (&[b"get".as_slice(), &b" big".repeat(100), b"\r\n"].concat(), "conn_mwrite"),
    ];
    for (bytes, state) in sends {
        let mut c = srv.connect();
        if !bytes.is_empty() {
            c.send(bytes);
        }
        want.push((format!("tcp:{}", c.s.local_addr().unwrap()), state));
        clients.push(c);
    }
    let mut asker = srv.connect();
    let mine = format!("tcp:{}", asker.s.local_addr().unwrap());
    want.push((mine, "conn_parse_cmd"));
    // The workers take the bytes in their own time: ask until every row says what it
    // should (or show the last answer).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        asker.send(b"stats conns\r\n");
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut addr_of = std::collections::HashMap::new();
        loop {
            let l = asker.line();
            if l == "END" {
                break;
            }
            let mut parts = l.splitn(3, ' ');
            let (Some("STAT"), Some(k), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
                panic!("{l}");
            };
            let (fd, field) = k.split_once(':').unwrap();
            match field {
                "addr" => {
                    addr_of.insert(fd.to_string(), v.to_string());
                }
                "state" => rows.push((addr_of[fd].clone(), v.to_string())),
                _ => {}
            }
        }
        let got: Vec<(String, &str)> = want
            .iter()
            .map(|(addr, _)| {
                let state = rows.iter().find(|(a, _)| a == addr).map_or("<missing>", |(_, s)| s.as_str());
                (addr.clone(), state)
            })
            .collect();
        if got == want || Instant::now() > deadline {
            assert_eq!(got, want);
            break;
        }
        std::thread::yield_now();
    }
    // Once the data block is whole, the client is between commands again.
    clients[5].roundtrip(b"defghij\r\n", b"STORED\r\n");
    asker.send(b"stats conns\r\n");
    let me = format!("addr {}", want[5].0);
    let mut lines = Vec::new();
    loop {
        let l = asker.line();
        if l == "END" {
            break;
        }
        lines.push(l);
    }
    let at = lines.iter().position(|l| l.ends_with(&me)).expect("row of the finished set");
    assert!(lines[at + 2].ends_with(":state conn_read"), "{lines:?}");
}

/// `stats cachedump 1 0` stops where memcached's 2 MB reply buffer does: a line goes in
/// only if `END\r\n` and a NUL still fit after it. Items written within one second come
/// newest first; with a limit, the newest that many; -X refuses the command.
#[test]
fn stats_cachedump_fills_memcached_two_megabytes_newest_first() {
    let clock = Clock::starting_at(1_800_000_000);
    let srv = spawn_with_clock(Config::for_tests(), clock);
    let mut c = srv.connect();
    let key = |i: usize| format!("{i:0>240}");
    let n = 10_000;
    let mut sets = Vec::new();
    for i in 0..n {
        sets.extend_from_slice(format!("set {} 0 2000000000 1 noreply\r\nv\r\n", key(i)).as_bytes());
    }
    c.roundtrip(&[sets.as_slice(), b"mn\r\n"].concat(), b"MN\r\n");
    let line = |i: usize| format!("ITEM {} [1 b; 2000000000 s]\r\n", key(i));
    // 267 bytes a line: 7,854 of them fit in 2 MB less 6.
    let fit = (2 * 1024 * 1024 - 6) / line(0).len();
    assert_eq!(fit, 7854);
    let want: String = (n - fit..n).rev().map(line).chain(["END\r\n".to_string()]).collect();
    c.roundtrip(b"stats cachedump 1 0\r\n", want.as_bytes());
    let want: String = (n - 3..n).rev().map(line).chain(["END\r\n".to_string()]).collect();
    c.roundtrip(b"stats cachedump 1 3\r\n", want.as_bytes());
    c.roundtrip(b"stats cachedump 2 0\r\n", b"END\r\n");

    let srv = spawn(Config { dump_enabled: false, ..Config::for_tests() });
    srv.connect().roundtrip(b"stats cachedump 1 0\r\n", b"CLIENT_ERROR stats cachedump not allowed\r\n");
}

#[test]
fn mg_last_access_follows_memcached_minute_rule() {
    let clock = Clock::starting_at(1_800_000_000);
    let srv = spawn_with_clock(Config::for_tests(), clock.clone());
    let mut c = srv.connect();
    c.roundtrip(b"ms k 1 T0\r\nx\r\n", b"HD\r\n");
    clock.advance(5);
    c.roundtrip(b"mg k l h\r\nmg k l h\r\n", b"HD l5 h0\r\nHD l5 h1\r\n");
    clock.advance(61);
    // Over a minute old: this read moves the access time, the next one sees it.
    c.roundtrip(b"mg k l\r\nmg k l\r\n", b"HD l66\r\nHD l0\r\n");
    c.roundtrip(b"me k\r\n", b"ME k exp=-1 la=0 cas=1 fetch=yes cls=1 size=61\r\n");
}

#[test]
fn dash_m_refuses_instead_of_evicting() {
    let srv =
        spawn(Config { disable_evictions: true, memory_limit: 2 << 20, max_item_size: 1 << 20, ..Config::for_tests() });
    let mut c = srv.connect();
    let value = vec![b'x'; 100 * 1024];
    let mut refused = 0;
    for i in 0..40 {
        let mut req = format!("set big{i} 0 0 {}\r\n", value.len()).into_bytes();
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
        c.send(&req);
        match c.line().as_str() {
            "STORED" => {}
            "SERVER_ERROR out of memory storing object" => refused += 1,
            other => panic!("{other}"),
        }
    }
    assert!(refused > 15, "{refused} refused");
    assert_eq!(c.stat("evictions"), "0");
    assert_eq!(c.stat("store_no_memory"), refused.to_string());
    c.roundtrip(b"get big0\r\n", &[b"VALUE big0 0 102400\r\n".as_slice(), &value, b"\r\nEND\r\n"].concat());
}

#[test]
fn lru_crawler_metadump_lists_live_items_as_memcached_does() {
    let clock = Clock::starting_at(1_800_000_000);
    let srv = spawn_with_clock(Config::for_tests(), clock.clone());
    let mut c = srv.connect();
    c.roundtrip(
        b"set plain 0 0 1\r\na\r\nset t%/\xc3\xa9 5 100 2\r\nbb\r\nset gone 0 1 1\r\nc\r\nget plain\r\n",
        b"STORED\r\nSTORED\r\nSTORED\r\nVALUE plain 0 1\r\na\r\nEND\r\n",
    );
    clock.advance(2);
    // Lines end in a bare \n and come in no set order; the expired item is left out. Times
    // are Unix times, keys URI-encoded, sizes and classes memcached's (checked against
    // memcached 1.6.18 by hand with these commands), then 1.6.45's client flags and space,
    // after its `OK`.
    c.send(b"lru_crawler metadump all\r\n");
    assert_eq!(c.line(), "OK");
    let dump = c.line();
    let mut lines: Vec<&str> = dump.split('\n').collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "END",
            "key=plain exp=-1 la=1800000000 cas=1 fetch=yes cls=1 size=65 flags=0 ",
            "key=t%25%2F%C3%A9 exp=1800000100 la=1800000000 cas=2 fetch=no cls=1 size=70 flags=5 ",
        ]
    );
    c.roundtrip(b"lru_crawler metadump 2,3\r\n", b"OK\r\nEND\r\n");
    // Not behind replies that have not gone out; after a get's, which memcached sends
    // before reading on, it is.
    c.roundtrip(
        b"mg plain v\r\nlru_crawler metadump all\r\n",
        b"VA 1\r\na\r\nERROR cannot pipeline other commands before metadump\r\n",
    );
    c.send(b"get gone\r\nlru_crawler metadump 1\r\n");
    assert_eq!(c.line(), "END");
    assert_eq!(c.line(), "OK");
    assert_eq!(c.line().lines().count(), 3);
    c.roundtrip(
        b"lru_crawler disable\r\nlru_crawler crawl 63\r\nlru_crawler metadump all\r\n",
        b"OK\r\nCLIENT_ERROR lru crawler disabled\r\nCLIENT_ERROR lru crawler disabled\r\n",
    );
    c.roundtrip(b"lru_crawler enable\r\nlru_crawler crawl 63\r\nlru_crawler crawl 1,\r\n", b"OK\r\nOK\r\nOK\r\n");
}

#[test]
fn lru_crawler_mgdump_lists_keys_as_memcached_1_6_45_does() {
    let srv = spawn(Config::for_tests());
    let mut c = srv.connect();
    c.roundtrip(b"set plain 0 0 1\r\na\r\nms Zm9v 1 b\r\nx\r\nset gone 0 -1 1\r\nc\r\n", b"STORED\r\nHD\r\nSTORED\r\n");
    // `OK`, a line to send back for each live item (binary keys in base64 with `b`), in
    // no set order, then `EN`.
    c.send(b"lru_crawler mgdump all\r\n");
    assert_eq!(c.line(), "OK");
    let mut keys = [c.line(), c.line()];
    keys.sort_unstable();
    assert_eq!(keys, ["mg Zm9v b", "mg plain"]);
    assert_eq!(c.line(), "EN");
    c.roundtrip(b"lru_crawler mgdump 2\r\n", b"OK\r\nEN\r\n");
    c.roundtrip(
        b"mg plain v\r\nlru_crawler mgdump hash\r\n",
        b"VA 1\r\na\r\nERROR cannot pipeline other commands before mgdump\r\n",
    );
    let srv = spawn(Config { dump_enabled: false, ..Config::for_tests() });
    srv.connect().roundtrip(b"lru_crawler mgdump all\r\n", b"ERROR key dump not allowed\r\n");
}
