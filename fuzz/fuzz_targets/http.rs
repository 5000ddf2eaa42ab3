//! libFuzzer target: bytes at the `--http` listener's connection (see `harness::http`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::http(data);
});
