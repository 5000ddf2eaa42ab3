//! libFuzzer target: arbitrary bytes through the decoder and exec against a small store.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::exec(data));
