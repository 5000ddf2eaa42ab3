//! libFuzzer target: arbitrary bytes through the binary-protocol decoder, whole and in
//! chunks, with or without `-S` (see `harness::binary_decode`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::binary_decode(data);
});
