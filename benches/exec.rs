//! Request to reply without a socket: `exec::run` (the connection's `exec::execute`, then
//! any work it returns) on a decoded request, the reply appended to an output, against a store holding the scenarios' data. The
//! `pipeline16` case also decodes, as a connection does for one read of sixteen
//! pipelined gets: everything the server does per batch except the two syscalls.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use larder::clock::Clock;
use larder::exec::{self, Flow, Output};
use larder::protocol::text::Limits;
use larder::protocol::{Decoder, Request};
use larder::{Config, Ctx};

const KEYS: usize = 100_000;

fn key(i: usize) -> String {
    format!("key:{i:08}")
}

fn clock() -> Clock {
    Clock::starting_at(1_700_000_000)
}

fn decode_all(wire: &[u8]) -> Vec<Request> {
    let mut d = Decoder::new(Limits { max_item_size: 1 << 20 }, clock());
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Some(req) = d.decode(&mut buf).expect("valid request") {
        out.push(req);
    }
    assert!(buf.is_empty(), "trailing bytes");
    out
}

fn decode_one(wire: &[u8]) -> Request {
    let mut reqs = decode_all(wire);
    assert_eq!(reqs.len(), 1);
    reqs.pop().unwrap()
}

fn set_wire(key: &str, size: usize) -> Vec<u8> {
    let mut w = format!("set {key} 0 0 {size}\r\n").into_bytes();
    w.extend(std::iter::repeat_n(b'v', size));
    w.extend_from_slice(b"\r\n");
    w
}

/// A context (`Config::for_tests`, with room for the large values) holding 100,000
/// 100-byte values under `key:N`, plus `big16k` and `big512k`.
fn ctx() -> Ctx {
    let mut config = Config::for_tests();
    config.memory_limit = 256 << 20;
    let ctx = Ctx::new(config, clock());
    let mut out = Output::new(BytesMut::new());
    let mut wire = Vec::new();
    for i in 0..KEYS {
        wire.extend(set_wire(&key(i), 100));
    }
    wire.extend(set_wire("big16k", 16 * 1024));
    wire.extend(set_wire("big512k", 512 * 1024));
    for req in decode_all(&wire) {
        exec::run(&ctx, req, &mut out);
        assert!(out.buf.starts_with(b"STORED\r\n"), "{:?}", String::from_utf8_lossy(&out.buf[..out.buf.len().min(80)]));
        out.clear();
    }
    ctx
}

/// Runs a copy of `req` per iteration into a cleared buffer (cloning a request bumps
/// reference counts; it copies no key or value).
fn run(ctx: &Ctx, req: &Request, out: &mut Output) {
    out.clear();
    black_box(exec::run(ctx, req.clone(), out));
}

fn single(c: &mut Criterion) {
    let ctx = ctx();
    let mut g = c.benchmark_group("exec");
    g.throughput(Throughput::Elements(1));
    let mut out = Output::new(BytesMut::with_capacity(1 << 20));
    let ten: Vec<String> = (0..10).map(|i| key(i * 9973 % KEYS)).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("get_hit", format!("get {}\r\n", key(4242)).into_bytes()),
        ("get_miss", b"get nokey:00004242\r\n".to_vec()),
        ("gets_hit", format!("gets {}\r\n", key(4242)).into_bytes()),
        ("multiget10_hit", format!("get {}\r\n", ten.join(" ")).into_bytes()),
        ("set_100", set_wire(&key(4242), 100)),
        ("set_1k", set_wire(&key(4243), 1024)),
        ("delete_miss", b"delete nokey:00004242\r\n".to_vec()),
        ("get_16k", b"get big16k\r\n".to_vec()),
        ("get_512k", b"get big512k\r\n".to_vec()),
    ];
    for (name, wire) in cases {
        let req = decode_one(&wire);
        run(&ctx, &req, &mut out);
        assert!(!out.buf.starts_with(b"ERROR") && !out.buf.starts_with(b"SERVER_ERROR"), "{name}: {:?}", &out.buf[..]);
        g.bench_function(name, |b| b.iter(|| run(&ctx, &req, &mut out)));
    }
    g.finish();
}

/// Sixteen gets in one buffer: decode each, execute it, one reply buffer for the batch.
fn pipeline(c: &mut Criterion) {
    let ctx = ctx();
    let mut g = c.benchmark_group("exec");
    g.throughput(Throughput::Elements(16));
    let wire: Vec<u8> = (0..16).flat_map(|i| format!("get {}\r\n", key(i * 6007 % KEYS)).into_bytes()).collect();
    let mut d = Decoder::new(Limits { max_item_size: 1 << 20 }, clock());
    let mut out = Output::new(BytesMut::with_capacity(16 * 1024));
    g.bench_function("pipeline16_decode_get", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| {
                out.clear();
                while let Some(req) = d.decode(buf).expect("valid") {
                    if let Flow::Close = exec::run(&ctx, req, &mut out) {
                        unreachable!("get does not close");
                    }
                }
                black_box(out.len())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = single, pipeline }
criterion_main!(benches);
