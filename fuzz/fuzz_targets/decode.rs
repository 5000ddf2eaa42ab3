//! libFuzzer target: arbitrary bytes through the decoder, whole and in chunks.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::decode(data));
