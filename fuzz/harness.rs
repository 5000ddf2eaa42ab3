//! What the fuzz targets run, shared with `tests/fuzz_corpus.rs`, which replays every file
//! under `fuzz/corpus/` on stable Rust so CI checks the corpus without libFuzzer.
//!
//! Inputs are raw wire bytes; the first byte picks how they are cut into reads (and, for
//! `exec`, how far the clock moves between reads), so one input covers many framings.

#![allow(dead_code)]

use bytes::BytesMut;
use larder::Config;
use larder::clock::Clock;
use larder::exec::{self, Ctx, Flow, Output};
use larder::protocol::encode::{error_reply, put_reply};
use larder::protocol::text::{Limits, MAX_LINE};
use larder::protocol::{Decoder, Rejection, Request};

/// A small `-I`, so too-large items and swallowing are reached by short inputs.
const MAX_ITEM: usize = 2048;

/// A small memory limit, so eviction runs too.
const MEMORY: usize = 64 * 1024;

const START: i64 = 1_800_000_000;

fn decoder(clock: Clock) -> Decoder {
    Decoder::new(Limits { max_item_size: MAX_ITEM }, clock)
}

/// Decodes until more input is needed or a fatal error; errors stay in order.
fn drain(d: &mut Decoder, buf: &mut BytesMut, out: &mut Vec<Result<Request, Rejection>>) -> bool {
    loop {
        match d.decode(buf) {
            Ok(Some(r)) => out.push(Ok(r)),
            Ok(None) => return true,
            Err(e) => {
                let fatal = e.error.is_fatal();
                out.push(Err(e));
                if fatal {
                    return false;
                }
            }
        }
    }
}

fn decode_in_chunks(wire: &[u8], chunk: usize) -> Vec<Result<Request, Rejection>> {
    let (mut d, mut buf, mut out) = (decoder(Clock::starting_at(START)), BytesMut::new(), Vec::new());
    for piece in wire.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        if !drain(&mut d, &mut buf, &mut out) {
            break;
        }
    }
    out
}

/// Whether some stretch of `wire` without a newline is longer than memcached's line limit:
/// then whether the connection is dropped depends on how the bytes arrive (as in memcached),
/// so whole and chunked decoding may rightly differ.
fn has_long_run(wire: &[u8]) -> bool {
    wire.split(|&b| b == b'\n').any(|run| run.len() >= MAX_LINE)
}

/// Decoder target: never panics, and decoding in chunks gives what decoding whole gives.
pub fn decode(data: &[u8]) {
    let Some((&seed, wire)) = data.split_first() else { return };
    let whole = decode_in_chunks(wire, usize::MAX);
    let chunked = decode_in_chunks(wire, usize::from(seed % 32) + 1);
    if !has_long_run(wire) {
        assert_eq!(whole, chunked, "chunk size {}", seed % 32 + 1);
    }
}

/// Decoder + exec target: never panics, the store stays within its memory limit, and every
/// reply is whole lines.
pub fn exec(data: &[u8]) {
    let Some((&seed, wire)) = data.split_first() else { return };
    let clock = Clock::starting_at(START);
    let config = Config { memory_limit: MEMORY, max_item_size: MAX_ITEM, ..Config::for_tests() };
    let ctx = Ctx::new(config, clock.clone());
    let mut d = decoder(clock.clone());
    let (mut buf, mut out) = (BytesMut::new(), Output::new(BytesMut::new()));
    let chunk = usize::from(seed & 0x3f) * 4 + 1;
    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = out.buf.len();
            match d.decode(&mut buf) {
                Ok(Some(req)) => {
                    let flow = exec::run(&ctx, req, &mut out);
                    assert!(ctx.store.bytes() <= ctx.store.limit(), "{} > {}", ctx.store.bytes(), ctx.store.limit());
                    let reply = &out.buf[before..];
                    assert!(reply.is_empty() || reply.ends_with(b"\r\n"), "{:?}", String::from_utf8_lossy(reply));
                    if let Flow::Close = flow {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) if e.error.is_fatal() => return,
                Err(e) => {
                    if let (Some(reply), false) = (error_reply(e.error), e.noreply) {
                        put_reply(&mut out.buf, reply);
                    }
                }
            }
            // Replies are not kept: only their shape is checked.
            if out.buf.len() > 1 << 16 {
                out.clear();
            }
        }
        clock.advance(u32::from(seed >> 6));
    }
}
