//! libFuzzer target: arbitrary bytes through the binary-protocol decoder and its exec
//! against a small store (see `harness::binary_exec`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::binary_exec(data);
});
