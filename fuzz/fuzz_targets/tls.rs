//! libFuzzer target: bytes at a TLS connection: raw, as records after a real handshake,
//! or as commands inside them (see `harness::tls`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::tls(data);
});
