//! Decoder alone: bytes in the read buffer to `Request`s, no store and no socket.
//!
//! `get` lines (one key and ten), `set` frames by value size arriving whole, and the same
//! `set` frames arriving in 16 KiB reads as a socket delivers them (so a decoder that
//! rescans, or grows its buffer badly, shows up on the large sizes). Throughput is the
//! wire bytes decoded.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use larder::clock::Clock;
use larder::protocol::Decoder;
use larder::protocol::text::Limits;

const VALUE_SIZES: [usize; 5] = [16, 100, 1024, 16 * 1024, 512 * 1024];

/// What a socket read hands the decoder at a time (the connection's read chunk).
const READ_CHUNK: usize = 16 * 1024;

fn decoder() -> Decoder {
    Decoder::new(Limits { max_item_size: 1 << 20 }, Clock::starting_at(1_700_000_000))
}

fn set_frame(size: usize) -> Vec<u8> {
    let mut wire = format!("set key:00012345 0 0 {size}\r\n").into_bytes();
    wire.extend(std::iter::repeat_n(b'x', size));
    wire.extend_from_slice(b"\r\n");
    wire
}

/// Decodes exactly one request from `buf`, which must hold a whole frame.
fn decode_one(d: &mut Decoder, buf: &mut BytesMut) {
    match d.decode(buf) {
        Ok(Some(req)) => {
            black_box(req);
        }
        other => panic!("expected one request, got {other:?}"),
    }
}

fn gets(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode/get");
    let one = b"get key:00012345\r\n".to_vec();
    let keys: Vec<String> = (0..10).map(|i| format!("key:000123{i:02}")).collect();
    let ten = format!("get {}\r\n", keys.join(" ")).into_bytes();
    for (name, wire) in [("1key", one), ("10keys", ten)] {
        g.throughput(Throughput::Bytes(wire.len() as u64));
        let mut d = decoder();
        g.bench_function(name, |b| {
            b.iter_batched_ref(|| BytesMut::from(&wire[..]), |buf| decode_one(&mut d, buf), BatchSize::SmallInput)
        });
    }
    // Sixteen pipelined gets in one read, as scenario (b) delivers them.
    let pipe: Vec<u8> = (0..16).flat_map(|i| format!("get key:000123{i:02}\r\n").into_bytes()).collect();
    g.throughput(Throughput::Bytes(pipe.len() as u64));
    let mut d = decoder();
    g.bench_function("pipeline16", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&pipe[..]),
            |buf| {
                for _ in 0..16 {
                    decode_one(&mut d, buf);
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn sets_whole(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode/set");
    for size in VALUE_SIZES {
        let wire = set_frame(size);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        let mut d = decoder();
        let batch = if size > 64 * 1024 { BatchSize::LargeInput } else { BatchSize::SmallInput };
        g.bench_function(size.to_string(), |b| {
            b.iter_batched_ref(|| BytesMut::from(&wire[..]), |buf| decode_one(&mut d, buf), batch)
        });
    }
    g.finish();
}

/// The frame arrives `READ_CHUNK` bytes at a time, each chunk appended to the buffer the
/// decoder left (the copy a socket read makes is part of the measurement).
fn sets_chunked(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode/set_chunked");
    for size in [16 * 1024, 512 * 1024] {
        let wire = set_frame(size);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        let mut d = decoder();
        g.bench_function(size.to_string(), |b| {
            b.iter(|| {
                let mut buf = BytesMut::with_capacity(READ_CHUNK);
                let mut got = None;
                for chunk in wire.chunks(READ_CHUNK) {
                    buf.reserve(READ_CHUNK);
                    buf.extend_from_slice(chunk);
                    if let Some(req) = d.decode(&mut buf).expect("valid frame") {
                        got = Some(req);
                    }
                }
                black_box(got.expect("the frame decodes once complete"))
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

criterion_group! { name = benches; config = config(); targets = gets, sets_whole, sets_chunked }
criterion_main!(benches);
