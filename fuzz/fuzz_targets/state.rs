//! libFuzzer target: bytes as a state file loaded at start, raw or as well-framed hostile
//! records (see `harness::state`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::state(data);
});
