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

/// The TLS target's certificates: made once per process, written where `-Z` reads them.
fn tls_settings() -> &'static larder::config::TlsSettings {
    use std::sync::OnceLock;
    static SETTINGS: OnceLock<(larder::config::TlsSettings, String)> = OnceLock::new();
    &SETTINGS
        .get_or_init(|| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
            let dir = std::env::temp_dir().join(format!("larder-fuzz-tls-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
            std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
            let settings = larder::config::TlsSettings {
                enabled: true,
                chain_cert: Some(dir.join("cert.pem")),
                key: Some(dir.join("key.pem")),
                ..Default::default()
            };
            (settings, cert.pem())
        })
        .0
}

/// A client that trusts any server: the target is the server's side.
#[derive(Debug)]
struct AnyServer(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Moves what each side has written to the other until neither has news: the server
/// connection runs on every turn; the client (if any) reads and writes records.
fn pump(
    conn: &mut larder::server::connection::Connection,
    sock: &mut std::os::unix::net::UnixStream,
    client: &mut Option<rustls::ClientConnection>,
    replies: &mut usize,
) -> bool {
    use std::io::{Read, Write};
    for _ in 0..64 {
        let wait = conn.on_ready(true, false, false);
        if wait == larder::server::connection::Wait::Close {
            return false;
        }
        let mut moved = false;
        let mut buf = [0u8; 16 * 1024];
        loop {
            match sock.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => {
                    moved = true;
                    if let Some(c) = client.as_mut() {
                        let mut rd = &buf[..n];
                        while !rd.is_empty() {
                            if c.read_tls(&mut rd).is_err() || c.process_new_packets().is_err() {
                                return false;
                            }
                            let mut plain = Vec::new();
                            let _ = c.reader().read_to_end(&mut plain);
                            *replies += plain.len();
                        }
                    }
                }
                Err(_) => break,
            }
        }
        if let Some(c) = client.as_mut() {
            while c.wants_write() {
                moved = true;
                let mut w = Vec::new();
                c.write_tls(&mut w).unwrap();
                if sock.write_all(&w).is_err() {
                    return false;
                }
            }
        }
        if !moved && wait != larder::server::connection::Wait::Turn {
            return true;
        }
    }
    true
}

/// TLS target: bytes at a TLS connection, three ways by the first byte: raw from the
/// first byte on (garbage or truncated handshakes); after a real handshake, as records of
/// commands (the decoder and exec over TLS); after a real handshake, raw (garbage and
/// truncated records). Checks: no panic. Returns the bytes of replies the client read.
pub fn tls(data: &[u8]) -> usize {
    use std::io::Write;
    let Some((&seed, wire)) = data.split_first() else { return 0 };
    let settings = tls_settings();
    let config = Config { memory_limit: MEMORY, max_item_size: MAX_ITEM, tls: settings.clone(), ..Config::for_tests() };
    let Ok(tls) = larder::tls::Tls::load(settings) else { panic!("test certificates") };
    let session = tls.accept().unwrap();
    let counters = tls.counters.clone();
    let ctx = std::sync::Arc::new(Ctx::new(config, Clock::starting_at(START)).with_tls(tls));
    let (server, mut sock) = std::os::unix::net::UnixStream::pair().unwrap();
    server.set_nonblocking(true).unwrap();
    sock.set_nonblocking(true).unwrap();
    let transport = larder::server::transport::Transport::tls(server.into(), session, counters);
    let mut conn = larder::server::connection::Connection::new(transport, ctx);
    let chunk = usize::from(seed >> 2) * 8 + 1;
    let mut replies = 0;
    let mut client = None;
    if seed & 3 != 0 {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(AnyServer(provider)))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        client = Some(rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap());
        if !pump(&mut conn, &mut sock, &mut client, &mut replies) {
            panic!("the handshake failed");
        }
        assert!(!client.as_ref().unwrap().is_handshaking(), "the handshake did not finish");
    }
    for piece in wire.chunks(chunk) {
        match client.as_mut() {
            Some(c) if seed & 3 == 1 => {
                c.writer().write_all(piece).unwrap();
            }
            _ => {
                if sock.write_all(piece).is_err() {
                    return replies;
                }
                if seed & 3 == 2 {
                    client = None; // its records are garbled from here on
                }
            }
        }
        if !pump(&mut conn, &mut sock, &mut client, &mut replies) {
            return replies;
        }
    }
    replies
}

/// State-file target: bytes as the `-e` file a starting server loads into a small store,
/// two ways by the first byte: raw (magic, frames and checksums as they come: torn,
/// foreign and corrupt files), or behind the magic as one frame of records with a correct
/// checksum and an end frame counting `data[1]` items, so record parsing, expiry, `-I` and
/// `-m` planning meet hostile lengths, times and counts. Checks: no panic; a refused file
/// leaves the store empty; a loaded one leaves it within its limit. Returns the items loaded.
pub fn state(data: &[u8]) -> u64 {
    use larder::persist::format::{FORMAT, MAGIC};
    let Some((&mode, rest)) = data.split_first() else { return 0 };
    let file = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let count = u64::from(rest.first().copied().unwrap_or(0));
        let records = rest.get(1..).unwrap_or(&[]);
        let frame = |kind: u32, payload: &[u8]| {
            let mut f = Vec::with_capacity(12 + payload.len());
            f.extend_from_slice(&kind.to_le_bytes());
            f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            let mut sum = crc32fast::Hasher::new();
            sum.update(&f);
            sum.update(payload);
            f.extend_from_slice(&sum.finalize().to_le_bytes());
            f.extend_from_slice(payload);
            f
        };
        let mut end = Vec::new();
        for v in [START as u64, count, 0, 0, u64::from(mode)] {
            end.extend_from_slice(&v.to_le_bytes());
        }
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&FORMAT.to_le_bytes());
        file.extend(frame(1, records));
        file.extend(frame(2, &end));
        file
    };
    thread_local! {
        static PATH: std::path::PathBuf = std::env::temp_dir().join(format!("larder-fuzz-state-{}-{:?}", std::process::id(), std::thread::current().id()));
    }
    let path = PATH.with(|p| p.clone());
    std::fs::write(&path, &file).expect("writing the state file");
    let store = larder::store::Store::new(Clock::starting_at(START + i64::from(mode >> 1)), MEMORY, MAX_ITEM);
    let loaded = larder::persist::load(&store, &path);
    let _ = std::fs::remove_file(&path);
    match loaded {
        Ok(Some(l)) => {
            assert!(store.bytes() <= store.limit(), "loaded past the limit: {} > {}", store.bytes(), store.limit());
            assert_eq!(l.items, store.len() as u64);
            l.items
        }
        Ok(None) => unreachable!("the file was written"),
        Err(_) => {
            assert!(store.is_empty(), "a refused file left items");
            0
        }
    }
}

/// `http`: arbitrary bytes at the `--http` listener's connection (hyper and Larder's
/// routing over an in-memory stream, on a paused clock so the head timeout fires at
/// once), cut into writes of 1 to 32 bytes by the first byte. Returns the replies'
/// status codes. Checks: no panic, the connection ends, and what it sends is whole
/// responses (HTTP/1.1, or 1.0 to a 1.0 request) with a status line each.
pub fn http(data: &[u8]) -> Vec<u16> {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let Some((&first, wire)) = data.split_first() else { return Vec::new() };
    let chunk = usize::from(first % 32) + 1;
    let ctx = Arc::new(Ctx::new(Config::for_tests(), Clock::starting_at(START)));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    let reply = runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let history = Arc::new(larder::http::live::History::default());
        let limits = larder::http::Limits { head_bytes: 8192, ..larder::http::Limits::default() };
        let served = tokio::spawn(larder::http::serve_connection(server, ctx, history, limits));
        let mut reply = Vec::new();
        let (mut rd, mut wr) = tokio::io::split(&mut client);
        let write = async {
            for piece in wire.chunks(chunk) {
                if wr.write_all(piece).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        };
        let read = rd.read_to_end(&mut reply);
        let (_, read) = tokio::join!(write, read);
        assert!(read.is_ok(), "reading the replies failed");
        let _ = served.await.expect("the connection task panicked");
        reply
    });
    statuses(&reply)
}

/// A response starts here (HTTP/1.0 answered as such).
fn is_status_line(reply: &[u8]) -> bool {
    reply.starts_with(b"HTTP/1.1 ") || reply.starts_with(b"HTTP/1.0 ")
}

/// The status codes of the responses in `reply`, checking each has a status line and
/// the head ends; bodies are skipped by their content-length.
fn statuses(mut reply: &[u8]) -> Vec<u16> {
    let mut codes = Vec::new();
    while !reply.is_empty() {
        assert!(
            is_status_line(reply),
            "not a status line: {:?}",
            String::from_utf8_lossy(&reply[..reply.len().min(80)])
        );
        let head_end = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head ends") + 4;
        let head = std::str::from_utf8(&reply[..head_end]).expect("a response head is text");
        codes.push(head[9..12].parse().expect("a status code"));
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse::<usize>().expect("a content length"));
        // A reply to HEAD has a length but no body: the next response follows at once
        // (no body Larder sends starts like a status line).
        let rest = &reply[head_end..];
        reply = if is_status_line(rest) { rest } else { &rest[length.min(rest.len())..] };
    }
    codes
}

/// The binary decoder with `-I max_item_size`, under `-S` when the input's first byte has
/// its top bit set.
fn binary_decoder(seed: u8, max_item_size: usize, clock: Clock) -> larder::protocol::binary::Decoder {
    let d = larder::protocol::binary::Decoder::new(Limits { max_item_size }, clock);
    if seed & 0x80 != 0 { d.require_sasl() } else { d }
}

/// How much a binary decoder may hold beyond what it was given: a header's extras and key
/// (24 + 255 + 65,535 bytes) or a value's read-ahead (64 KiB), allowing for `BytesMut`
/// doubling. A promised body (up to 1 GiB) must never be reserved whole.
const BINARY_SLACK: usize = 4 * (24 + 255 + 65_535 + 64 * 1024);

type BinaryOutcome = Result<larder::protocol::binary::Packet, larder::protocol::binary::Fatal>;

/// Decodes binary packets from `wire` cut into reads of `chunk` bytes, up to a fatal error.
/// Checks as it goes: `Ok(None)` means no further packet without more bytes (asking again
/// consumes nothing), a discard leaves nothing unread, keys and values are within the
/// limits, and the buffer stays within [`BINARY_SLACK`] of what was given.
fn binary_decode_in_chunks(seed: u8, wire: &[u8], chunk: usize) -> Vec<BinaryOutcome> {
    use larder::protocol::binary::Command;
    let max_item = binary_max_item(seed);
    let mut d = binary_decoder(seed, max_item, Clock::starting_at(START));
    let (mut buf, mut out) = (BytesMut::new(), Vec::new());
    let mut given = 0;
    for piece in wire.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        given += piece.len();
        loop {
            let before = buf.len();
            let decoded = d.decode(&mut buf);
            assert!(buf.len() <= before, "decoding added bytes");
            assert!(buf.capacity() <= 2 * given + BINARY_SLACK, "{} bytes reserved for {given} given", buf.capacity());
            match decoded {
                Ok(Some(p)) => {
                    assert!(
                        before - buf.len() > 0 || matches!(p.command, Command::Store { .. } | Command::Sasl { .. })
                    );
                    match &p.command {
                        Command::Store { key, value, .. } => {
                            assert!(!key.is_empty() && key.len() <= larder::memcached::KEY_MAX_LENGTH);
                            assert!(value.len() <= max_item, "a {}-byte value past -I", value.len());
                        }
                        Command::Get { key, .. } | Command::Delete { key } | Command::Arith { key, .. } => {
                            assert!(!key.is_empty() && key.len() <= larder::memcached::KEY_MAX_LENGTH);
                        }
                        Command::Sasl { mech, data, .. } => {
                            assert!(mech.len() <= 32 && data.len() <= max_item);
                            // A login the exec would accept, simulated so the -S decoder's
                            // logged-in paths are reached.
                            if data.first().is_some_and(|b| b & 1 == 1) {
                                d.authenticated();
                            }
                        }
                        _ => {}
                    }
                    out.push(Ok(p));
                }
                Ok(None) => {
                    if d.framing() == larder::protocol::Framing::Swallow {
                        assert!(buf.is_empty(), "a discard stopped with {} bytes unread", buf.len());
                    }
                    let len = buf.len();
                    assert_eq!(d.decode(&mut buf), Ok(None), "a packet appeared without new bytes");
                    assert_eq!(buf.len(), len, "asking again consumed bytes");
                    break;
                }
                Err(fatal) => {
                    out.push(Err(fatal));
                    return out;
                }
            }
        }
    }
    out
}

/// The decoder target's `-I`: memcached's largest (1 GiB) when the first byte's bit 6 is
/// set, so a header may promise a value the decoder would wait for; else the small one.
fn binary_max_item(seed: u8) -> usize {
    if seed & 0x40 != 0 { 1 << 30 } else { MAX_ITEM }
}

/// Binary decoder target: the first byte picks `-S` (top bit), `-I` (bit 6, see
/// [`binary_max_item`]) and the read size (1 to 32 bytes, low five bits). Checks: no
/// panic, the invariants of [`binary_decode_in_chunks`], and decoding in chunks gives the
/// packets and fatal error decoding whole gives. Returns the packets decoded.
pub fn binary_decode(data: &[u8]) -> usize {
    let Some((&seed, wire)) = data.split_first() else { return 0 };
    let whole = binary_decode_in_chunks(seed, wire, usize::MAX);
    let chunked = binary_decode_in_chunks(seed, wire, usize::from(seed % 32) + 1);
    assert_eq!(whole, chunked, "chunk size {}", seed % 32 + 1);
    whole.iter().filter(|p| p.is_ok()).count()
}

/// The response packets in `reply`, each checked: magic 0x81, whole, extras and key within
/// the body, the request's opcode and opaque echoed (a `stat` reply is several packets).
/// Returns their statuses.
fn binary_responses(mut reply: &[u8], echo: larder::protocol::binary::Echo) -> Vec<u16> {
    let mut statuses = Vec::new();
    while !reply.is_empty() {
        assert!(reply.len() >= 24, "a torn response header: {reply:?}");
        assert_eq!(reply[0], 0x81, "response magic");
        assert_eq!(reply[1], echo.opcode, "opcode not echoed");
        let keylen = usize::from(u16::from_be_bytes([reply[2], reply[3]]));
        let extlen = usize::from(reply[4]);
        let body = u32::from_be_bytes(reply[8..12].try_into().unwrap()) as usize;
        assert_eq!(&reply[12..16], &echo.opaque.to_ne_bytes(), "opaque not echoed");
        assert!(extlen + keylen <= body, "extras {extlen} + key {keylen} > body {body}");
        assert!(reply.len() >= 24 + body, "a body of {body} with {} bytes after the header", reply.len() - 24);
        statuses.push(u16::from_be_bytes([reply[6], reply[7]]));
        reply = &reply[24 + body..];
    }
    statuses
}

/// Binary decoder + exec target: packets through `exec::binary::execute` against a small
/// store. The first byte picks `-S` (top bit, libsasl2 not started, so every login fails),
/// the read size (low four bits: 1 to 241 bytes) and how far the clock moves between
/// reads (bits 4-6: 0 to 7 s). Checks: no panic, the store stays within
/// its limit, every response is well-formed with its request's opcode and opaque, a quiet
/// write answers only an error, and a fatal error's response is one error packet.
/// Returns the packets run.
pub fn binary_exec(data: &[u8]) -> usize {
    use larder::protocol::binary::{Command, put_error};
    let Some((&seed, wire)) = data.split_first() else { return 0 };
    let sasl = seed & 0x80 != 0;
    let clock = Clock::starting_at(START);
    let config = Config { memory_limit: MEMORY, max_item_size: MAX_ITEM, sasl, ..Config::for_tests() };
    let ctx = Ctx::new(config, clock.clone());
    let mut d = binary_decoder(seed, MAX_ITEM, clock.clone());
    let mut session = exec::binary::Session::default();
    let mut buf = BytesMut::new();
    let chunk = usize::from(seed & 0x0f) * 16 + 1;
    let mut run = 0;
    for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(packet)) => {
                    run += 1;
                    let (echo, quiet) = (packet.echo, packet.quiet);
                    let write = matches!(
                        packet.command,
                        Command::Store { .. } | Command::Delete { .. } | Command::Arith { .. } | Command::Flush { .. }
                    );
                    let mut out = Output::new(BytesMut::new());
                    let flow = exec::binary::execute(&ctx, packet, &mut out, &mut session);
                    assert!(ctx.store.bytes() <= ctx.store.limit(), "{} > {}", ctx.store.bytes(), ctx.store.limit());
                    let statuses = binary_responses(&out.into_flat(), echo);
                    if quiet && write {
                        assert!(statuses.iter().all(|&s| s != 0), "a quiet write answered success");
                    }
                    match flow {
                        Flow::Close => return run,
                        Flow::Authenticated => d.authenticated(),
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(fatal) => {
                    let mut out = BytesMut::new();
                    if let Some(status) = fatal.status {
                        put_error(&mut out, fatal.echo, status, None);
                    }
                    assert!(binary_responses(&out, fatal.echo).len() <= 1);
                    return run;
                }
            }
        }
        clock.advance(u32::from((seed >> 4) & 7));
    }
    run
}
