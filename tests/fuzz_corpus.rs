//! Replays the fuzz corpus (`fuzz/corpus/<target>/`, kept small with `cargo fuzz cmin`) and
//! any saved crash inputs (`fuzz/regressions/`) through the fuzz targets' own checks
//! (`fuzz/harness.rs`), on stable Rust and without libFuzzer, so CI keeps every input the
//! fuzzers found interesting passing. See fuzz/README.md for running the fuzzers.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn inputs(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// Every input goes through the text and binary decoder and exec targets: each is valid
/// input for the others.
fn replay(dir: &str) -> usize {
    let files = inputs(dir);
    for (name, data) in &files {
        let run = std::panic::catch_unwind(|| {
            harness::decode(data);
            harness::exec(data);
            harness::binary_decode(data);
            harness::binary_exec(data);
        });
        assert!(run.is_ok(), "{dir}/{name} fails");
    }
    files.len()
}

#[test]
fn tls_fuzz_corpus_replays_cleanly() {
    let files = inputs("fuzz/corpus/tls");
    for (name, data) in &files {
        let replies = std::panic::catch_unwind(|| harness::tls(data));
        assert!(replies.is_ok(), "fuzz/corpus/tls/{name} fails");
        if name.starts_with("commands") {
            assert!(replies.unwrap() > 20, "fuzz/corpus/tls/{name}: commands over TLS went unanswered");
        }
    }
    assert!(files.len() >= 3, "only {} TLS corpus files", files.len());
}

#[test]
fn state_fuzz_corpus_replays_cleanly() {
    let files = inputs("fuzz/corpus/state");
    let mut loaded = 0;
    for (name, data) in &files {
        let items = std::panic::catch_unwind(|| harness::state(data));
        assert!(items.is_ok(), "fuzz/corpus/state/{name} fails");
        loaded += items.unwrap();
    }
    assert!(files.len() >= 3, "only {} state corpus files", files.len());
    assert!(loaded > 0, "no corpus file loads any item");
}

#[test]
fn fuzz_corpus_replays_cleanly() {
    let n = replay("fuzz/corpus/decode") + replay("fuzz/corpus/exec");
    assert!(n > 100, "only {n} corpus files: is fuzz/corpus missing?");
}

#[test]
fn fuzz_regressions_replay_cleanly() {
    replay("fuzz/regressions");
}

#[test]
fn http_fuzz_corpus_replays_cleanly() {
    let files = inputs("fuzz/corpus/http");
    let mut served = 0;
    for (name, data) in &files {
        let codes = std::panic::catch_unwind(|| harness::http(data));
        assert!(codes.is_ok(), "fuzz/corpus/http/{name} fails");
        served += codes.unwrap().iter().filter(|&&c| c == 200).count();
    }
    assert!(files.len() >= 5, "only {} HTTP corpus files", files.len());
    assert!(served > 0, "no corpus file gets a page served");
}

#[test]
fn binary_fuzz_corpus_replays_cleanly() {
    let (mut files, mut decoded, mut run) = (0, 0, 0);
    for dir in ["fuzz/corpus/binary", "fuzz/corpus/binary_exec"] {
        for (name, data) in inputs(dir) {
            let counts = std::panic::catch_unwind(|| (harness::binary_decode(&data), harness::binary_exec(&data)));
            assert!(counts.is_ok(), "{dir}/{name} fails");
            let (d, r) = counts.unwrap();
            (files, decoded, run) = (files + 1, decoded + d, run + r);
        }
    }
    assert!(files > 100, "only {files} binary corpus files: is fuzz/corpus missing?");
    assert!(decoded > files && run > files, "the corpus hardly decodes: {decoded} packets, {run} run");
}
