//! End-to-end load generator for any server speaking memcached's text or binary protocol.
//!
//! N connections (tokio tasks), each a closed loop: write a batch of `--pipeline` requests
//! in one write, read and parse every reply, repeat. A request is a `get` of
//! `--multiget` keys or a `set` of `--value-size` bytes, chosen by `--get-ratio`; keys
//! are `<prefix><index>` drawn uniformly or by a Zipf law from `--keys` indices. Replies
//! are parsed and checked, not counted by bytes: a `VALUE` must name a key that was asked
//! for, in order, with the right length, the value's spot-checked contents and its
//! `\r\n`; a `set` must get `STORED`. Anything else is an error (the first few are printed).
//!
//! With `--protocol binary` the same requests go as memcached's binary packets: a get of
//! one key is a `GET`, a multi-get is a `GETKQ` per key and a `NOOP` (as libmemcached
//! sends it: misses are silent, the `NOOP`'s answer ends the reply), a set is a `SET`
//! with flags 0 and no expiry. Each request's opaque is its key's place in the batch.
//! Replies are read by their 24-byte header (magic 0x81, the request's opcode and opaque,
//! then `bodylen` bytes of extras, key and value) and checked as in text: a hit must carry
//! 4 bytes of flags and the value of the key asked for (a `GETKQ`'s key, in order), a set
//! must get status 0; a get's "Not found" is a miss, any other status an error.
//!
//! With `--rate R` the connections send R requests per second between them, each batch
//! when it is due (not before its previous batch is answered: one batch in flight per
//! connection), and a batch is timed from when it was due: a batch held back by the slow
//! reply to the one before counts its wait for that reply, so a server that leaves a
//! connection waiting is charged for every request the wait held back, not for one (what a
//! closed loop alone records: "coordinated omission"). The load generator's own delays
//! are left out: the wait is figured on a timeline where each batch goes out as soon as it
//! is due and its connection is free, and takes the server as long as it took in fact.
//!
//! Runs for `--duration` seconds after `--warmup` (only the time between counts), or
//! until `--requests` requests are answered. Prints ops/s, latency percentiles from an
//! HDR histogram (from a batch's write to each reply's arrival), hits, misses, errors,
//! its own CPU use (near 1.0 means the load generator, not the server, is the limit) and,
//! given `--server-pid`, the server's CPU time per operation over the same window. The
//! last line, `RESULT k=v ...`, is for scripts (`scripts/bench`).
//!
//! With `--tls --tls-ca FILE` every connection is TLS (rustls, aws-lc-rs, through
//! tokio-rustls), the server's certificate verified against FILE for the server's IP
//! address; there is no mode that accepts any certificate. Sessions are never resumed: each
//! connection makes a full handshake. Everything else (pipelining, multi-gets, the checks
//! of every reply, the report) is the same; the report names the protocol version, cipher
//! suite and key exchange group the server chose.
//!
//! `--storm` is a handshake storm instead of a load: all `--conns` connections open at
//! once, each makes its (TLS) handshake and one request (a get, or a set by
//! `--get-ratio`), checks the reply and closes. It reports how many were served, how many
//! failed, the time until the last was served, and the server's CPU over that time; what
//! is not served within `--storm-timeout` counts as failed, so the run always ends.
//!
//! ```text
//! cargo bench --bench loadgen -- --server 127.0.0.1:11211 --prefill --conns 50 --duration 10
//! cargo bench --bench loadgen -- --server 127.0.0.1:11211 --tls --tls-ca ca.pem --storm --conns 2000
//! ```
//! Without `--server` it prints its usage and exits 0 (so `cargo bench` and
//! `cargo test --benches` pass through it).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

mod keyspace;
use keyspace::parse_key;

const USAGE: &str = "\
usage: loadgen --server HOST:PORT [options]
  --conns N          connections (50)
  --pipeline N       requests per batch, written at once (1)
  --get-ratio F      fraction of requests that are gets, 0..1 (0.9)
  --multiget N       keys per get (1)
  --keys N           key space size (100000)
  --dist D           uniform | zipf (uniform)
  --zipf-s S         Zipf exponent (0.99)
  --value-size N     bytes per value (100)
  --key-prefix P     key prefix (key:)
  --protocol P       text | binary (text)
  --duration S       seconds measured after warm-up (10)
  --warmup S         seconds before measuring (1)
  --requests N       stop after N requests instead of a duration (no warm-up)
  --rate R           requests per second in all, each batch sent when due (closed loop)
  --prefill          set every key once before the run
  --prefill-only     set every key once and exit
  --threads N        runtime threads; 1 = tokio current-thread (1)
  --server-pid PID   report the server's CPU time per op from /proc/PID/stat
  --seed N           random seed (1)
  --label S          echoed in the RESULT line
  --tls              connect with TLS (needs --tls-ca)
  --tls-ca FILE      PEM file of the CA(s) the server's certificate must chain to
  --storm            a handshake storm: all --conns connect at once, one request each
  --storm-timeout S  seconds after which a storm's unserved connections count as failed (30)";

#[derive(Debug, Clone)]
struct Args {
    server: SocketAddr,
    conns: usize,
    pipeline: usize,
    get_ratio: f64,
    multiget: usize,
    keys: u64,
    zipf: Option<f64>,
    value_size: usize,
    key_prefix: String,
    binary: bool,
    duration: f64,
    warmup: f64,
    requests: Option<u64>,
    rate: Option<f64>,
    prefill: bool,
    prefill_only: bool,
    threads: usize,
    server_pid: Option<u32>,
    seed: u64,
    label: String,
    tls: bool,
    tls_ca: Option<String>,
    storm: bool,
    storm_timeout: f64,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        server: SocketAddr::from(([127, 0, 0, 1], 11211)),
        conns: 50,
        pipeline: 1,
        get_ratio: 0.9,
        multiget: 1,
        keys: 100_000,
        zipf: None,
        value_size: 100,
        key_prefix: "key:".into(),
        binary: false,
        duration: 10.0,
        warmup: 1.0,
        requests: None,
        rate: None,
        prefill: false,
        prefill_only: false,
        threads: 1,
        server_pid: None,
        seed: 1,
        label: String::new(),
        tls: false,
        tls_ca: None,
        storm: false,
        storm_timeout: 30.0,
    };
    let mut have_server = false;
    let mut dist = String::from("uniform");
    let mut zipf_s = 0.99;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next()).ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: bad value '{v}'"))
        }
        match name.as_str() {
            // `cargo bench` passes `--bench`; criterion-style filters are not ours.
            "--bench" => {}
            "-h" | "--help" => return Ok(None),
            "--server" => {
                let v = value()?;
                a.server = v.parse().map_err(|_| format!("--server: '{v}' is not HOST:PORT (an IP)"))?;
                have_server = true;
            }
            "--conns" => a.conns = num(&name, value()?)?,
            "--pipeline" => a.pipeline = num(&name, value()?)?,
            "--get-ratio" => a.get_ratio = num(&name, value()?)?,
            "--multiget" => a.multiget = num(&name, value()?)?,
            "--keys" => a.keys = num(&name, value()?)?,
            "--dist" => dist = value()?,
            "--zipf-s" => zipf_s = num(&name, value()?)?,
            "--value-size" => a.value_size = num(&name, value()?)?,
            "--key-prefix" => a.key_prefix = value()?,
            "--protocol" => {
                a.binary = match value()?.as_str() {
                    "text" => false,
                    "binary" => true,
                    v => return Err(format!("--protocol: '{v}' is neither text nor binary")),
                }
            }
            "--duration" => a.duration = num(&name, value()?)?,
            "--warmup" => a.warmup = num(&name, value()?)?,
            "--requests" => a.requests = Some(num(&name, value()?)?),
            "--rate" => a.rate = Some(num(&name, value()?)?),
            "--prefill" => a.prefill = true,
            "--prefill-only" => a.prefill_only = true,
            "--threads" => a.threads = num(&name, value()?)?,
            "--server-pid" => a.server_pid = Some(num(&name, value()?)?),
            "--seed" => a.seed = num(&name, value()?)?,
            "--label" => a.label = value()?,
            "--tls" => a.tls = true,
            "--tls-ca" => a.tls_ca = Some(value()?),
            "--storm" => a.storm = true,
            "--storm-timeout" => a.storm_timeout = num(&name, value()?)?,
            _ => return Err(format!("unknown argument '{arg}'")),
        }
    }
    if !have_server {
        return Ok(None);
    }
    a.zipf = match dist.as_str() {
        "uniform" => None,
        "zipf" => Some(zipf_s),
        _ => return Err(format!("--dist: '{dist}' is neither uniform nor zipf")),
    };
    if a.conns == 0 || a.pipeline == 0 || a.multiget == 0 || a.keys == 0 || a.threads == 0 {
        return Err("--conns, --pipeline, --multiget, --keys and --threads must be positive".into());
    }
    if !(0.0..=1.0).contains(&a.get_ratio) {
        return Err("--get-ratio must be between 0 and 1".into());
    }
    if a.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err("--rate must be positive".into());
    }
    if a.zipf.is_some_and(|s| s <= 0.0) {
        return Err("--zipf-s must be positive".into());
    }
    if a.tls && a.tls_ca.is_none() {
        return Err("--tls needs --tls-ca FILE: the CA the server's certificate chains to".into());
    }
    if !(a.storm_timeout > 0.0 && a.storm_timeout.is_finite()) {
        return Err("--storm-timeout must be positive".into());
    }
    Ok(Some(a))
}

/// splitmix64: small, fast, and good enough to pick keys.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Zipf over ranks 1..=n with exponent s, by rejection-inversion (Hörmann and Derflinger,
/// as `rand_distr::Zipf` does it): constant time per sample, no table.
#[derive(Debug, Clone, Copy)]
struct Zipf {
    s: f64,
    t: f64,
    q: f64,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Self {
        let n = n as f64;
        let q = if s != 1.0 { 1.0 / (1.0 - s) } else { 0.0 };
        let t = if s != 1.0 { (n.powf(1.0 - s) - s) * q } else { 1.0 + n.ln() };
        Self { s, t, q }
    }

    fn inv_cdf(&self, p: f64) -> f64 {
        let pt = p * self.t;
        if pt <= 1.0 {
            pt
        } else if self.s != 1.0 {
            (pt * (1.0 - self.s) + self.s).powf(self.q)
        } else {
            (pt - 1.0).exp()
        }
    }

    /// A rank in 1..=n; rank 1 is the most frequent.
    fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let inv_b = self.inv_cdf(rng.unit());
            let x = (inv_b + 1.0).floor();
            let mut ratio = x.powf(-self.s);
            if x > 1.0 {
                ratio *= inv_b.powf(self.s);
            }
            if rng.unit() < ratio {
                return x as u64;
            }
        }
    }
}

/// What the connections share.
struct Shared {
    args: Args,
    /// Value bytes: the value of key `k` is `pattern[k % 26 ..][.. value_size]`, so a
    /// reply can be checked against the key it names.
    pattern: Vec<u8>,
    zipf: Option<Zipf>,
    /// Replies count toward the results only while this is set.
    recording: AtomicBool,
    stop: AtomicBool,
    /// Requests left to send under `--requests`; prefill's next key otherwise.
    budget: AtomicU64,
    /// Connections that failed outright (connect, I/O, unparseable reply).
    failed: AtomicU64,
    /// `--rate`'s ticker: connections waiting for their batches' turns, and when.
    waiting: std::sync::Mutex<Vec<(Instant, std::task::Waker)>>,
    /// With `--tls`: how to make a connection's handshake.
    tls: Option<TlsClient>,
    /// With `--tls`: what the first handshake settled on, for the report.
    negotiated: std::sync::OnceLock<String>,
}

/// The client side of `--tls`.
struct TlsClient {
    connector: TlsConnector,
    /// The server's IP address, which its certificate must name.
    name: ServerName<'static>,
}

impl TlsClient {
    /// Trusts the CAs in `--tls-ca` (and nothing else), with rustls's default protocol
    /// versions, suites and key exchange groups (aws-lc-rs). Resumption is off, so every
    /// connection pays a full handshake, as a fresh client would.
    fn new(args: &Args) -> Result<Self, String> {
        let ca = args.tls_ca.as_deref().ok_or("--tls needs --tls-ca")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).map_err(|e| format!("--tls-ca {ca}: {e}"))? {
            roots.add(cert.map_err(|e| format!("--tls-ca {ca}: {e}"))?).map_err(|e| format!("--tls-ca {ca}: {e}"))?;
        }
        if roots.is_empty() {
            return Err(format!("--tls-ca {ca}: no certificate in it"));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Self { connector: TlsConnector::from(Arc::new(config)), name: ServerName::from(args.server.ip()) })
    }
}

/// A connection's byte stream: TCP, or TLS over TCP. Each connection's code is compiled
/// for its own kind, so the plain path runs exactly as it did before TLS existed.
trait Wire: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether a write can leave bytes in the stream's own buffer (sealed TLS records the
    /// socket did not take yet), so that it must be flushed.
    const BUFFERED: bool;
}

impl Wire for TcpStream {
    const BUFFERED: bool = false;
}

impl Wire for TlsStream<TcpStream> {
    const BUFFERED: bool = true;
}

/// A connection just opened, before it is given its kind's [`Conn`].
enum Opened {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Shared {
    fn value_of(&self, k: u64) -> &[u8] {
        keyspace::value_of(&self.pattern, k, self.args.value_size)
    }

    fn pick_key(&self, rng: &mut Rng) -> u64 {
        let n = self.args.keys;
        match &self.zipf {
            None => rng.below(n),
            // Scatter the ranks so the hot keys are not neighbours in the key space.
            Some(z) => ((z.sample(rng) - 1).wrapping_mul(2_654_435_761)) % n,
        }
    }
}

/// One connection's results.
#[derive(Debug)]
struct Tally {
    hist: Histogram<u64>,
    requests: u64,
    gets: u64,
    sets: u64,
    hits: u64,
    misses: u64,
    errors: u64,
    bytes_in: u64,
}

impl Tally {
    fn new() -> Self {
        Self {
            // Nanoseconds, 1 ns to 100 s, 3 significant digits.
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"),
            requests: 0,
            gets: 0,
            sets: 0,
            hits: 0,
            misses: 0,
            errors: 0,
            bytes_in: 0,
        }
    }

    fn add(&mut self, o: &Tally) {
        self.hist.add(&o.hist).expect("same bounds");
        self.requests += o.requests;
        self.gets += o.gets;
        self.sets += o.sets;
        self.hits += o.hits;
        self.misses += o.misses;
        self.errors += o.errors;
        self.bytes_in += o.bytes_in;
    }
}

/// A request in flight: a get of `keys[range]` of the batch's key list, or a set.
#[derive(Debug, Clone)]
struct Pending {
    get: bool,
    keys: std::ops::Range<usize>,
}

enum Parsed {
    /// Every reply of the batch is in.
    Done,
    NeedMore,
}

struct Conn<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    /// Key indices of the batch: one per set, `multiget` per get.
    keys: Vec<u64>,
    pending: Vec<Pending>,
    /// The reply being parsed and, within a get, how far its key list has matched.
    next: usize,
    key_pos: usize,
    hits_in_get: u64,
    shown_errors: u32,
    tally: Tally,
}

/// A connection that makes no progress for this long has failed (the run stays bounded
/// even against a server that stops answering).
const STALL: Duration = Duration::from_secs(10);

/// Errors printed per connection before they are only counted.
const SHOW_ERRORS: u32 = 3;

impl<S: Wire> Conn<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: Vec::with_capacity(4096),
            keys: Vec::new(),
            pending: Vec::new(),
            next: 0,
            key_pos: 0,
            hits_in_get: 0,
            shown_errors: 0,
            tally: Tally::new(),
        }
    }

    fn error(&mut self, what: &str, line: &[u8]) {
        self.tally.errors += 1;
        if self.shown_errors < SHOW_ERRORS {
            self.shown_errors += 1;
            eprintln!("loadgen: {what}: {:?}", String::from_utf8_lossy(&line[..line.len().min(120)]));
        }
    }

    fn put_key(&mut self, prefix: &str, k: u64) {
        self.wbuf.extend_from_slice(prefix.as_bytes());
        self.wbuf.extend_from_slice(itoa::Buffer::new().format(k).as_bytes());
    }

    fn add_get(&mut self, sh: &Shared, rng: &mut Rng) {
        if sh.args.binary {
            return self.add_get_binary(sh, rng);
        }
        let start = self.keys.len();
        self.wbuf.extend_from_slice(b"get");
        for _ in 0..sh.args.multiget {
            let k = sh.pick_key(rng);
            self.wbuf.push(b' ');
            self.put_key(&sh.args.key_prefix, k);
            self.keys.push(k);
        }
        self.wbuf.extend_from_slice(b"\r\n");
        self.pending.push(Pending { get: true, keys: start..self.keys.len() });
    }

    fn add_set(&mut self, sh: &Shared, k: u64) {
        if sh.args.binary {
            return self.add_set_binary(sh, k);
        }
        let start = self.keys.len();
        self.wbuf.extend_from_slice(b"set ");
        self.put_key(&sh.args.key_prefix, k);
        self.wbuf.extend_from_slice(b" 0 0 ");
        self.wbuf.extend_from_slice(itoa::Buffer::new().format(sh.args.value_size).as_bytes());
        self.wbuf.extend_from_slice(b"\r\n");
        self.wbuf.extend_from_slice(sh.value_of(k));
        self.wbuf.extend_from_slice(b"\r\n");
        self.keys.push(k);
        self.pending.push(Pending { get: false, keys: start..start + 1 });
    }

    /// Starts a binary request packet: its header, with the key length and body length
    /// left for [`Self::end_packet`]. Returns where the packet starts.
    fn begin_packet(&mut self, opcode: u8, extlen: u8, opaque: u32) -> usize {
        let start = self.wbuf.len();
        self.wbuf.extend_from_slice(&[REQUEST_MAGIC, opcode, 0, 0, extlen, 0, 0, 0, 0, 0, 0, 0]);
        self.wbuf.extend_from_slice(&opaque.to_be_bytes());
        self.wbuf.extend_from_slice(&[0; 8]); // CAS
        start
    }

    /// Fills in the key and body lengths of the packet begun at `start`, now that its
    /// extras, key (`keylen` bytes) and value are written.
    fn end_packet(&mut self, start: usize, keylen: usize) {
        let body = self.wbuf.len() - start - HEADER_LEN;
        self.wbuf[start + 2..start + 4].copy_from_slice(&(keylen as u16).to_be_bytes());
        self.wbuf[start + 8..start + 12].copy_from_slice(&(body as u32).to_be_bytes());
    }

    /// A binary packet of a key and nothing else; the opaque is the key's place in the batch.
    fn key_packet(&mut self, sh: &Shared, opcode: u8, k: u64) {
        let start = self.begin_packet(opcode, 0, self.keys.len() as u32);
        self.put_key(&sh.args.key_prefix, k);
        let keylen = self.wbuf.len() - start - HEADER_LEN;
        self.end_packet(start, keylen);
        self.keys.push(k);
    }

    /// A get of one key is a `GET`; of several, a `GETKQ` each and a `NOOP`, as
    /// libmemcached's multi-get.
    fn add_get_binary(&mut self, sh: &Shared, rng: &mut Rng) {
        let start = self.keys.len();
        if sh.args.multiget == 1 {
            let k = sh.pick_key(rng);
            self.key_packet(sh, bin::GET, k);
        } else {
            for _ in 0..sh.args.multiget {
                let k = sh.pick_key(rng);
                self.key_packet(sh, bin::GETKQ, k);
            }
            let noop = self.begin_packet(bin::NOOP, 0, NOOP_OPAQUE);
            self.end_packet(noop, 0);
        }
        self.pending.push(Pending { get: true, keys: start..self.keys.len() });
    }

    /// A `SET` with flags 0 and no expiry.
    fn add_set_binary(&mut self, sh: &Shared, k: u64) {
        let start = self.keys.len();
        let packet = self.begin_packet(bin::SET, 8, start as u32);
        self.wbuf.extend_from_slice(&[0; 8]); // flags, expiry
        self.put_key(&sh.args.key_prefix, k);
        let keylen = self.wbuf.len() - packet - HEADER_LEN - 8;
        self.wbuf.extend_from_slice(sh.value_of(k));
        self.end_packet(packet, keylen);
        self.keys.push(k);
        self.pending.push(Pending { get: false, keys: start..start + 1 });
    }

    /// One reply is complete: count it (while recording) and move to the next.
    fn finish(&mut self, sh: &Shared, sent: Instant, now: Instant) {
        let p = &self.pending[self.next];
        if sh.recording.load(Relaxed) {
            let t = &mut self.tally;
            t.requests += 1;
            if p.get {
                t.gets += 1;
                t.hits += self.hits_in_get;
                t.misses += p.keys.len() as u64 - self.hits_in_get;
            } else {
                t.sets += 1;
            }
            let ns = now.saturating_duration_since(sent).as_nanos().max(1) as u64;
            t.hist.saturating_record(ns);
        }
        self.next += 1;
        self.key_pos = 0;
        self.hits_in_get = 0;
    }

    /// Parses as many replies as `rbuf` holds. `Err` means the stream cannot be followed.
    fn parse(&mut self, sh: &Shared, sent: Instant, now: Instant) -> Result<Parsed, String> {
        if sh.args.binary {
            return self.parse_binary(sh, sent, now);
        }
        while self.next < self.pending.len() {
            let Some(nl) = memchr::memchr(b'\n', &self.rbuf) else { return Ok(Parsed::NeedMore) };
            let line_end = if nl > 0 && self.rbuf[nl - 1] == b'\r' { nl - 1 } else { nl };
            let line = &self.rbuf[..line_end];
            let get = self.pending[self.next].get;
            if get && line == b"END" {
                self.rbuf.advance(nl + 1);
                self.finish(sh, sent, now);
            } else if get && line.starts_with(b"VALUE ") {
                let (key, len) = parse_value_line(line)
                    .ok_or_else(|| format!("bad VALUE line {:?}", String::from_utf8_lossy(line)))?;
                let total = nl + 1 + len + 2;
                if self.rbuf.len() < total {
                    self.rbuf.reserve(total - self.rbuf.len());
                    return Ok(Parsed::NeedMore);
                }
                let want = self.pending[self.next].keys.clone();
                let asked = &self.keys[want.start + self.key_pos..want.end];
                let found = parse_key(key, &sh.args.key_prefix)
                    .and_then(|k| asked.iter().position(|&a| a == k).map(|i| (k, i)));
                match found {
                    None => {
                        let line = line.to_vec();
                        self.error("VALUE for a key not asked for (or out of order)", &line);
                    }
                    Some((k, i)) => {
                        self.key_pos += i + 1;
                        let data = &self.rbuf[nl + 1..nl + 1 + len];
                        let ok = len == sh.args.value_size
                            && spot_check(data, sh.value_of(k))
                            && &self.rbuf[nl + 1 + len..total] == b"\r\n";
                        if ok {
                            self.hits_in_get += 1;
                        } else {
                            let line = self.rbuf[..line_end].to_vec();
                            self.error("wrong value (length, contents or terminator)", &line);
                        }
                    }
                }
                self.tally.bytes_in += total as u64;
                self.rbuf.advance(total);
            } else if !get && line == b"STORED" {
                self.rbuf.advance(nl + 1);
                self.finish(sh, sent, now);
            } else if is_error_reply(line) {
                // An error ends the reply to its request; count it and go on.
                let line = line.to_vec();
                self.error("error reply", &line);
                self.rbuf.advance(nl + 1);
                self.finish(sh, sent, now);
            } else {
                return Err(format!("unexpected reply line {:?}", String::from_utf8_lossy(line)));
            }
        }
        Ok(Parsed::Done)
    }

    /// [`Self::parse`] for `--protocol binary`: response packets, each read whole by its
    /// header's `bodylen` and checked against the request its opaque names.
    fn parse_binary(&mut self, sh: &Shared, sent: Instant, now: Instant) -> Result<Parsed, String> {
        while self.next < self.pending.len() {
            let Some(h) = self.rbuf.get(..HEADER_LEN) else { return Ok(Parsed::NeedMore) };
            let opcode = h[1];
            let keylen = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let extlen = usize::from(h[4]);
            let status = u16::from_be_bytes([h[6], h[7]]);
            let bodylen = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
            let opaque = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
            // For messages only: formatted when something is wrong.
            let head = move || {
                format!(
                    "opcode {opcode:#04x} status {status:#06x} opaque {opaque} key {keylen} extras {extlen} body {bodylen}"
                )
            };
            if h[0] != RESPONSE_MAGIC {
                return Err(format!("bad response magic {:#04x} ({})", h[0], head()));
            }
            if keylen + extlen > bodylen {
                return Err(format!("key and extras longer than the body ({})", head()));
            }
            let total = HEADER_LEN + bodylen;
            if self.rbuf.len() < total {
                self.rbuf.reserve(total - self.rbuf.len());
                return Ok(Parsed::NeedMore);
            }
            let p = self.pending[self.next].clone();
            let multi = p.get && sh.args.multiget > 1;
            let expected = match (p.get, multi) {
                (false, _) => bin::SET,
                (true, false) => bin::GET,
                (true, true) => bin::GETKQ,
            };
            if multi && opcode == bin::NOOP {
                if status != 0 || opaque != NOOP_OPAQUE || bodylen != 0 {
                    self.error("wrong NOOP reply", head().as_bytes());
                }
                self.rbuf.advance(total);
                self.finish(sh, sent, now);
                continue;
            }
            if opcode != expected {
                return Err(format!("reply with opcode {opcode:#04x} where {expected:#04x} was due ({})", head()));
            }
            // The requests the reply may answer: a multi-get's keys not passed yet, or the
            // request itself.
            let idx = opaque as usize;
            let lo = p.keys.start + if multi { self.key_pos } else { 0 };
            let hi = if multi { p.keys.end } else { p.keys.start + 1 };
            if !(lo..hi).contains(&idx) {
                self.error("reply for a key not asked for (or out of order)", head().as_bytes());
            } else if !p.get {
                if status != 0 {
                    let body = self.rbuf[HEADER_LEN + extlen + keylen..total].to_vec();
                    self.error(&format!("set not stored ({})", head()), &body);
                }
            } else if status == 0 {
                let k = self.keys[idx];
                let body = &self.rbuf[HEADER_LEN..total];
                let key_ok = if multi {
                    parse_key(&body[extlen..extlen + keylen], &sh.args.key_prefix) == Some(k)
                } else {
                    keylen == 0
                };
                let data = &body[extlen + keylen..];
                let ok = extlen == 4 && key_ok && data.len() == sh.args.value_size && spot_check(data, sh.value_of(k));
                if ok {
                    self.hits_in_get += 1;
                } else {
                    self.error("wrong value (flags, key, length or contents)", head().as_bytes());
                }
                if multi {
                    self.key_pos = idx - p.keys.start + 1;
                }
            } else if status == STATUS_NOT_FOUND && !multi {
                // A miss; a GETKQ's is not answered at all.
            } else {
                let body = self.rbuf[HEADER_LEN + extlen + keylen..total].to_vec();
                self.error(&format!("error reply ({})", head()), &body);
            }
            self.tally.bytes_in += total as u64;
            self.rbuf.advance(total);
            if !multi {
                self.finish(sh, sent, now);
            }
        }
        Ok(Parsed::Done)
    }

    /// Sends one batch and reads all its replies, timing them from `queued` before the
    /// write. Returns the time from the write to the last reply.
    async fn batch(
        &mut self,
        sh: &Shared,
        rng: &mut Rng,
        prefill_keys: Option<std::ops::Range<u64>>,
        queued: Duration,
    ) -> Result<Duration, String> {
        self.wbuf.clear();
        self.keys.clear();
        self.pending.clear();
        self.next = 0;
        self.key_pos = 0;
        self.hits_in_get = 0;
        match prefill_keys {
            Some(ks) => {
                for k in ks {
                    self.add_set(sh, k);
                }
            }
            None => {
                for _ in 0..sh.args.pipeline {
                    if rng.unit() < sh.args.get_ratio {
                        self.add_get(sh, rng);
                    } else {
                        let k = sh.pick_key(rng);
                        self.add_set(sh, k);
                    }
                }
            }
        }
        let written = Instant::now();
        let sent = written.checked_sub(queued).unwrap_or(written);
        tokio::time::timeout(STALL, self.stream.write_all(&self.wbuf))
            .await
            .map_err(|_| format!("no progress writing for {STALL:?}"))?
            .map_err(|e| format!("write: {e}"))?;
        if S::BUFFERED {
            tokio::time::timeout(STALL, self.stream.flush())
                .await
                .map_err(|_| format!("no progress writing for {STALL:?}"))?
                .map_err(|e| format!("write: {e}"))?;
        }
        loop {
            let now = Instant::now();
            if let Parsed::Done = self.parse(sh, sent, now)? {
                return Ok(now - written);
            }
            self.rbuf.reserve(64 * 1024);
            let n = tokio::time::timeout(STALL, self.stream.read_buf(&mut self.rbuf))
                .await
                .map_err(|_| format!("no reply for {STALL:?}"))?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            // One clock read per read: replies that arrived together finish together.
            let now = Instant::now();
            if let Parsed::Done = self.parse(sh, sent, now)? {
                return Ok(now - written);
            }
        }
    }
}

/// memcached's binary protocol, as much as the load generator speaks of it.
const REQUEST_MAGIC: u8 = 0x80;
const RESPONSE_MAGIC: u8 = 0x81;
const HEADER_LEN: usize = 24;
const STATUS_NOT_FOUND: u16 = 0x0001;
/// The opaque of a multi-get's closing `NOOP` (a key's place in the batch is below it).
const NOOP_OPAQUE: u32 = u32::MAX;

mod bin {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const NOOP: u8 = 0x0a;
    pub const GETKQ: u8 = 0x0d;
}

fn is_error_reply(line: &[u8]) -> bool {
    line == b"ERROR" || line.starts_with(b"SERVER_ERROR") || line.starts_with(b"CLIENT_ERROR")
}

/// `VALUE <key> <flags> <bytes> [<cas>]` -> (key, bytes).
fn parse_value_line(line: &[u8]) -> Option<(&[u8], usize)> {
    let mut parts = line[6..].split(|&b| b == b' ');
    let key = parts.next()?;
    let _flags = parts.next()?;
    let len = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    Some((key, len))
}

/// Compares the first and last 16 bytes and one in the middle: enough to catch a value
/// from the wrong key or a shifted stream without the load generator reading every byte.
fn spot_check(got: &[u8], want: &[u8]) -> bool {
    let n = got.len();
    if n != want.len() {
        return false;
    }
    let edge = n.min(16);
    got[..edge] == want[..edge] && got[n - edge..] == want[n - edge..] && got.get(n / 2) == want.get(n / 2)
}

/// Connects, and with `--tls` makes the handshake (bounded by [`STALL`]).
async fn connect(sh: &Shared) -> Result<Opened, String> {
    let stream = TcpStream::connect(sh.args.server).await.map_err(|e| format!("connect {}: {e}", sh.args.server))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let Some(tls) = &sh.tls else { return Ok(Opened::Tcp(stream)) };
    let stream = tokio::time::timeout(STALL, tls.connector.connect(tls.name.clone(), stream))
        .await
        .map_err(|_| format!("no TLS handshake in {STALL:?}"))?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    sh.negotiated.get_or_init(|| {
        let c = stream.get_ref().1;
        let name = |v: Option<String>| v.unwrap_or_else(|| "?".into());
        format!(
            "{}/{}/{}",
            name(c.protocol_version().map(|v| format!("{v:?}"))),
            name(c.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()))),
            name(c.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name())))
        )
    });
    Ok(Opened::Tls(Box::new(stream)))
}

/// One connection's closed loop until `stop` (or the request budget runs out).
async fn drive(sh: Arc<Shared>, id: u64) -> Tally {
    match connect(&sh).await {
        Ok(Opened::Tcp(s)) => drive_conn(&sh, id, Conn::new(s)).await,
        Ok(Opened::Tls(s)) => drive_conn(&sh, id, Conn::new(*s)).await,
        Err(e) => {
            eprintln!("loadgen: connection {id}: {e}");
            sh.failed.fetch_add(1, Relaxed);
            Tally::new()
        }
    }
}

async fn drive_conn<S: Wire>(sh: &Shared, id: u64, mut conn: Conn<S>) -> Tally {
    let mut rng = Rng(sh.args.seed.wrapping_mul(0x1000_0000_01B3) ^ (id + 1).wrapping_mul(0x9E37_79B9));
    let depth = sh.args.pipeline as u64;
    // With --rate: this connection's batches are due every `every`, its first at a random
    // point of the first interval so that the connections do not send in step. `free` is
    // when the previous batch's last reply would have come had it gone out when due (or
    // when its connection was free), taking the server the time it took.
    let every = sh.args.rate.map(|r| Duration::from_secs_f64(sh.args.conns as f64 * depth as f64 / r));
    let mut due = Instant::now() + every.unwrap_or_default().mul_f64(rng.unit());
    let mut free = due;
    while !sh.stop.load(Relaxed) {
        if sh.args.requests.is_some() {
            let left = sh.budget.fetch_sub(depth, Relaxed);
            if left < depth || left > u64::MAX / 2 {
                break;
            }
        }
        let mut queued = Duration::ZERO;
        if every.is_some() {
            wait_until(sh, due).await;
            queued = free.saturating_duration_since(due);
        }
        match conn.batch(sh, &mut rng, None, queued).await {
            Ok(took) => {
                if let Some(every) = every {
                    free = due.max(free) + took;
                    due += every;
                }
            }
            Err(e) => {
                eprintln!("loadgen: connection {id}: {e}");
                sh.failed.fetch_add(1, Relaxed);
                break;
            }
        }
    }
    conn.tally
}

/// How often `--rate`'s ticker looks for connections whose batches are due.
const TICK: Duration = Duration::from_micros(50);

/// Every [`TICK`] (a timerfd's), wakes the connections whose batches are due, and all of
/// them once the run stops. tokio's own timer counts in milliseconds, which would send
/// the batches in millisecond bursts; waiting by spinning would keep the load generator's
/// core busy, and a busy real-time thread is stopped by the kernel's RT throttle for 50 ms
/// a second. Runs until aborted.
async fn tick(sh: Arc<Shared>, fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>) {
    loop {
        let stop = sh.stop.load(Relaxed);
        let now = Instant::now();
        sh.waiting.lock().expect("not poisoned").retain(|(at, waker)| {
            let keep = *at > now && !stop;
            if !keep {
                waker.wake_by_ref();
            }
            keep
        });
        let Ok(mut ready) = fd.readable().await else {
            // Connections waiting for a tick would wait for ever.
            eprintln!("loadgen: the ticker's timer failed");
            std::process::exit(1);
        };
        let mut expirations = [0u8; 8];
        // SAFETY: reads 8 bytes into an 8-byte buffer.
        let n = unsafe {
            libc::read(std::os::fd::AsRawFd::as_raw_fd(ready.get_inner()), expirations.as_mut_ptr().cast(), 8)
        };
        if n < 0 {
            ready.clear_ready();
        }
    }
}

/// A timerfd that expires every [`TICK`], for [`tick`].
fn ticker_timer() -> Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>, String> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: plain system calls; the descriptor is checked before it is owned.
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("timerfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: a descriptor just opened, owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let step = libc::timespec { tv_sec: 0, tv_nsec: TICK.as_nanos() as libc::c_long };
    let spec = libc::itimerspec { it_interval: step, it_value: step };
    // SAFETY: a valid timerfd and a valid itimerspec.
    if unsafe { libc::timerfd_settime(std::os::fd::AsRawFd::as_raw_fd(&fd), 0, &spec, std::ptr::null_mut()) } < 0 {
        return Err(format!("timerfd_settime: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: an OwnedFd: open, and the same descriptor, for as long as the AsyncFd owns it.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| format!("timerfd: {e}"))
}

/// Waits until `at`, by tokio's timer while that is far off and by `--rate`'s ticker after.
async fn wait_until(sh: &Shared, at: Instant) {
    const TIMER_STEP: Duration = Duration::from_millis(2);
    if at.saturating_duration_since(Instant::now()) > TIMER_STEP {
        tokio::time::sleep_until((at - TIMER_STEP).into()).await;
    }
    std::future::poll_fn(|cx| {
        if Instant::now() >= at || sh.stop.load(Relaxed) {
            return std::task::Poll::Ready(());
        }
        // The ticker takes the entry out when it wakes the task.
        sh.waiting.lock().expect("not poisoned").push((at, cx.waker().clone()));
        std::task::Poll::Pending
    })
    .await
}

/// Sets every key once, the connections taking chunks from a shared counter.
async fn prefill_conn(sh: Arc<Shared>, id: u64) -> Tally {
    match connect(&sh).await {
        Ok(Opened::Tcp(s)) => prefill_on(&sh, id, Conn::new(s)).await,
        Ok(Opened::Tls(s)) => prefill_on(&sh, id, Conn::new(*s)).await,
        Err(e) => {
            eprintln!("loadgen: prefill connection {id}: {e}");
            sh.failed.fetch_add(1, Relaxed);
            Tally::new()
        }
    }
}

async fn prefill_on<S: Wire>(sh: &Shared, id: u64, mut conn: Conn<S>) -> Tally {
    let mut rng = Rng(id);
    // Up to 1 MiB of values per batch, so a batch's replies never fill the socket.
    let chunk = ((1 << 20) / (sh.args.value_size as u64 + 64)).clamp(1, 64);
    loop {
        let start = sh.budget.fetch_add(chunk, Relaxed);
        if start >= sh.args.keys {
            break;
        }
        let end = (start + chunk).min(sh.args.keys);
        if let Err(e) = conn.batch(sh, &mut rng, Some(start..end), Duration::ZERO).await {
            eprintln!("loadgen: prefill connection {id}: {e}");
            sh.failed.fetch_add(1, Relaxed);
            break;
        }
    }
    conn.tally
}

/// A process's CPU time in user space and in the kernel, from /proc/<pid>/stat (all its
/// threads).
#[derive(Clone, Copy)]
struct CpuTime {
    user: Duration,
    system: Duration,
}

fn cpu_time(pid: &str) -> Option<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let field = |i: usize| Some(Duration::from_nanos(f.get(i)?.parse::<u64>().ok()? * 1_000_000_000 / hz));
    Some(CpuTime { user: field(11)?, system: field(12)? })
}

/// CPU time spent between two readings: user, system, and both.
fn cpu_spent((a, b): (CpuTime, CpuTime)) -> (Duration, Duration, Duration) {
    let (user, system) = (b.user - a.user, b.system - a.system);
    (user, system, user + system)
}

/// One connection of a storm: connect (and handshake), one batch, its replies checked.
/// Returns when it was served.
async fn storm_one(sh: Arc<Shared>, id: u64) -> Result<(Instant, Tally), String> {
    match connect(&sh).await? {
        Opened::Tcp(s) => storm_request(&sh, id, Conn::new(s)).await,
        Opened::Tls(s) => storm_request(&sh, id, Conn::new(*s)).await,
    }
}

async fn storm_request<S: Wire>(sh: &Shared, id: u64, mut conn: Conn<S>) -> Result<(Instant, Tally), String> {
    let mut rng = Rng(sh.args.seed.wrapping_mul(0x1000_0000_01B3) ^ (id + 1).wrapping_mul(0x9E37_79B9));
    conn.batch(sh, &mut rng, None, Duration::ZERO).await?;
    let served = Instant::now();
    if conn.tally.errors > 0 {
        return Err("wrong reply".into());
    }
    Ok((served, conn.tally))
}

/// The kernel's count of connections dropped because a listen queue was full
/// (`TcpExt: ListenOverflows` in /proc/net/netstat; for the whole machine).
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// `--storm`: every connection opens at once, makes its handshake and one batch, and
/// closes; reported when all are served, or failed, or `--storm-timeout` has passed.
async fn storm(sh: &Arc<Shared>) -> Result<bool, String> {
    let args = &sh.args;
    let pid = args.server_pid.map(|p| p.to_string());
    sh.recording.store(true, Relaxed);
    let overflows0 = listen_overflows();
    let (cpu0, self0) = (pid.as_deref().and_then(cpu_time), cpu_time("self"));
    let t0 = Instant::now();
    let deadline = tokio::time::Instant::from_std(t0 + Duration::from_secs_f64(args.storm_timeout));
    let tasks: Vec<_> = (0..args.conns as u64).map(|i| tokio::spawn(storm_one(sh.clone(), i))).collect();
    let mut when = Histogram::<u64>::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds");
    let (mut total, mut failed, mut timed_out, mut shown) = (Tally::new(), 0u64, 0u64, 0);
    for mut t in tasks {
        match tokio::time::timeout_at(deadline, &mut t).await {
            Ok(Ok(Ok((at, tally)))) => {
                when.saturating_record(at.saturating_duration_since(t0).as_nanos().max(1) as u64);
                total.add(&tally);
            }
            Ok(Ok(Err(e))) => {
                failed += 1;
                if shown < SHOW_ERRORS {
                    shown += 1;
                    eprintln!("loadgen: storm connection: {e}");
                }
            }
            Ok(Err(e)) => {
                failed += 1;
                eprintln!("loadgen: storm connection: {e}");
            }
            Err(_) => {
                t.abort();
                timed_out += 1;
            }
        }
    }
    let elapsed = t0.elapsed();
    let (cpu1, self1) = (pid.as_deref().and_then(cpu_time), cpu_time("self"));
    let overflows = overflows0.zip(listen_overflows()).map(|(a, b)| b.saturating_sub(a));
    let served = when.len();
    let ms = |ns: u64| ns as f64 / 1e6;
    let server = cpu0.zip(cpu1).map(cpu_spent);
    let own = self0.zip(self1).map(|c| cpu_spent(c).2.as_secs_f64() / elapsed.as_secs_f64());
    let opt = |v: Option<f64>, prec: usize| v.map_or("NA".to_string(), |v| format!("{v:.prec$}"));
    let negotiated = sh.negotiated.get().map_or("-", String::as_str);
    println!(
        "loadgen: storm of {} connections to {} ({}), {} request(s) each",
        args.conns,
        args.server,
        if sh.tls.is_some() { negotiated } else { "plain TCP" },
        args.pipeline
    );
    println!(
        "  served {served}, failed {failed}, timed out {timed_out} (after {} s); last served at {:.1} ms \
         (p50 {:.1} ms, p99 {:.1} ms); done in {:.1} ms",
        args.storm_timeout,
        ms(when.max()),
        ms(when.value_at_quantile(0.5)),
        ms(when.value_at_quantile(0.99)),
        elapsed.as_secs_f64() * 1e3
    );
    if let Some((user, system, all)) = server {
        println!(
            "  server CPU {:.1} ms ({:.1} user, {:.1} system), {:.1} us per connection served",
            all.as_secs_f64() * 1e3,
            user.as_secs_f64() * 1e3,
            system.as_secs_f64() * 1e3,
            all.as_secs_f64() * 1e6 / served.max(1) as f64
        );
    }
    if let Some(u) = own {
        println!("  load generator CPU {u:.2} cores busy");
    }
    if let Some(o) = overflows {
        println!("  listen queue overflows (the whole machine's): {o}");
    }
    println!(
        "RESULT label={} mode=storm clients={} served={served} failed={failed} timed_out={timed_out} \
         secs={:.3} last_ms={:.1} p50_ms={:.1} p99_ms={:.1} server_cpu_ms={} server_user_ms={} server_sys_ms={} \
         cpu_us_per_conn={} client_util={} listen_overflows={} tls={negotiated}",
        if args.label.is_empty() { "-" } else { &args.label },
        args.conns,
        elapsed.as_secs_f64(),
        ms(when.max()),
        ms(when.value_at_quantile(0.5)),
        ms(when.value_at_quantile(0.99)),
        opt(server.map(|(_, _, a)| a.as_secs_f64() * 1e3), 1),
        opt(server.map(|(u, _, _)| u.as_secs_f64() * 1e3), 1),
        opt(server.map(|(_, s, _)| s.as_secs_f64() * 1e3), 1),
        opt(server.map(|(_, _, a)| a.as_secs_f64() * 1e6 / served.max(1) as f64), 1),
        opt(own, 2),
        overflows.map_or("NA".to_string(), |o| o.to_string()),
    );
    Ok(served == args.conns as u64 && total.errors == 0)
}

async fn prefill(sh: &Arc<Shared>) -> Result<(), String> {
    let start = Instant::now();
    sh.budget.store(0, Relaxed);
    sh.recording.store(true, Relaxed);
    let conns = sh.args.conns.min(16) as u64;
    let tasks: Vec<_> = (0..conns).map(|i| tokio::spawn(prefill_conn(sh.clone(), i))).collect();
    let mut total = Tally::new();
    let mut per_conn = Vec::with_capacity(tasks.len());
    for t in tasks {
        let t = t.await.map_err(|e| e.to_string())?;
        per_conn.push(t.requests);
        total.add(&t);
    }
    sh.recording.store(false, Relaxed);
    eprintln!(
        "loadgen: prefilled {} keys of {} bytes in {:.2} s ({} errors)",
        total.sets,
        sh.args.value_size,
        start.elapsed().as_secs_f64(),
        total.errors
    );
    if total.errors > 0 || total.sets != sh.args.keys || sh.failed.load(Relaxed) > 0 {
        return Err("prefill failed".into());
    }
    Ok(())
}

async fn run(args: Args) -> Result<bool, String> {
    let pattern = keyspace::pattern(args.value_size);
    let zipf = args.zipf.map(|s| Zipf::new(args.keys, s));
    let sh = Arc::new(Shared {
        args: args.clone(),
        pattern,
        zipf,
        recording: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        budget: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        waiting: std::sync::Mutex::new(Vec::new()),
        tls: args.tls.then(|| TlsClient::new(&args)).transpose()?,
        negotiated: std::sync::OnceLock::new(),
    });
    if args.prefill || args.prefill_only {
        prefill(&sh).await?;
        if args.prefill_only {
            return Ok(true);
        }
    }
    if args.storm {
        return storm(&sh).await;
    }
    let pid = args.server_pid.map(|p| p.to_string());
    if let Some(n) = args.requests {
        sh.budget.store(n, Relaxed);
        sh.recording.store(true, Relaxed);
    }
    let ticker = match args.rate {
        Some(_) => Some(tokio::spawn(tick(sh.clone(), ticker_timer()?))),
        None => None,
    };
    let tasks: Vec<_> = (0..args.conns as u64).map(|i| tokio::spawn(drive(sh.clone(), i))).collect();
    let (t0, cpu0, self0);
    if args.requests.is_none() {
        tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
        (t0, cpu0, self0) = (Instant::now(), pid.as_deref().and_then(cpu_time), cpu_time("self"));
        sh.recording.store(true, Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
        sh.recording.store(false, Relaxed);
        sh.stop.store(true, Relaxed);
    } else {
        (t0, cpu0, self0) = (Instant::now(), pid.as_deref().and_then(cpu_time), cpu_time("self"));
    }
    let mut elapsed = t0.elapsed();
    let (mut cpu1, mut self1) = (pid.as_deref().and_then(cpu_time), cpu_time("self"));
    let mut total = Tally::new();
    let mut per_conn = Vec::with_capacity(tasks.len());
    for t in tasks {
        let t = t.await.map_err(|e| e.to_string())?;
        per_conn.push(t.requests);
        total.add(&t);
    }
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if args.requests.is_some() {
        elapsed = t0.elapsed();
        (cpu1, self1) = (pid.as_deref().and_then(cpu_time), cpu_time("self"));
    }
    report(&sh, &total, &per_conn, elapsed, cpu0.zip(cpu1), self0.zip(self1));
    Ok(total.errors == 0 && sh.failed.load(Relaxed) == 0 && total.requests > 0)
}

fn report(
    sh: &Shared,
    t: &Tally,
    per_conn: &[u64],
    elapsed: Duration,
    server_cpu: Option<(CpuTime, CpuTime)>,
    own_cpu: Option<(CpuTime, CpuTime)>,
) {
    let args = &sh.args;
    let failed = sh.failed.load(Relaxed);
    let tls = sh.tls.as_ref().map(|_| sh.negotiated.get().map_or("-", String::as_str));
    let secs = elapsed.as_secs_f64();
    let ops = t.requests as f64 / secs;
    let us = |q: f64| t.hist.value_at_quantile(q) as f64 / 1000.0;
    let per_op = |d: Duration| d.as_secs_f64() * 1e6 / t.requests.max(1) as f64;
    let server_cpu = server_cpu.map(cpu_spent);
    let cpu_per_op = server_cpu.map(|(_, _, all)| per_op(all));
    let server_util = server_cpu.map(|(_, _, all)| all.as_secs_f64() / secs);
    let own_util = own_cpu.map(|c| cpu_spent(c).2.as_secs_f64() / secs);
    let dist = match args.zipf {
        None => "uniform".to_string(),
        Some(s) => format!("zipf({s})"),
    };
    println!(
        "loadgen: {} conns={} pipeline={} get_ratio={} multiget={} keys={} dist={} value={} B{}",
        args.server,
        args.conns,
        args.pipeline,
        args.get_ratio,
        args.multiget,
        args.keys,
        dist,
        args.value_size,
        args.rate.map_or(String::new(), |r| format!(" rate={r}/s"))
    );
    if let Some(tls) = tls {
        println!("  TLS: {tls} (version/cipher suite/key exchange)");
    }
    println!(
        "  {:.0} ops/s ({} requests in {secs:.2} s; {:.0} keys/s; {:.1} MB/s of values in)",
        ops,
        t.requests,
        (t.sets + t.gets * args.multiget as u64) as f64 / secs,
        t.bytes_in as f64 / secs / 1e6
    );
    println!(
        "  latency us: p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
        us(0.5),
        us(0.99),
        us(0.999),
        t.hist.max() as f64 / 1000.0
    );
    // A server that serves some connections and leaves others waiting shows it here, not
    // in the latencies: a waiting connection sends nothing, so it records few samples.
    let mean = t.requests as f64 / per_conn.len().max(1) as f64;
    let share = |v: Option<&u64>| v.map_or(0.0, |&v| v as f64 / mean.max(1.0));
    let (least, most) = (share(per_conn.iter().min()), share(per_conn.iter().max()));
    println!("  requests per connection: least {least:.2}x, most {most:.2}x the mean");
    println!(
        "  gets {} (keys hit {}, missed {}), sets {}, errors {}, failed connections {failed}",
        t.gets, t.hits, t.misses, t.sets, t.errors
    );
    if let (Some((user, system, _)), Some(c), Some(u)) = (server_cpu, cpu_per_op, server_util) {
        println!(
            "  server CPU {c:.2} us/op ({:.2} user, {:.2} system; {u:.2} cores busy)",
            per_op(user),
            per_op(system)
        );
    }
    if let Some(u) = own_util {
        println!("  load generator CPU {u:.2} cores busy");
    }
    let opt = |v: Option<f64>| v.map_or("NA".to_string(), |v| format!("{v:.3}"));
    println!(
        "RESULT label={} ops={} secs={secs:.3} ops_per_sec={ops:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1} \
         hits={} misses={} errors={} failed={failed} cpu_us_per_op={} user_us_per_op={} sys_us_per_op={} \
         server_util={} client_util={} conn_least={least:.3} conn_most={most:.3} tls={}",
        if args.label.is_empty() { "-" } else { &args.label },
        t.requests,
        us(0.5),
        us(0.99),
        us(0.999),
        t.hits,
        t.misses,
        t.errors,
        opt(cpu_per_op),
        opt(server_cpu.map(|(user, _, _)| per_op(user))),
        opt(server_cpu.map(|(_, system, _)| per_op(system))),
        opt(server_util),
        opt(own_util),
        tls.unwrap_or("-"),
    );
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("loadgen: errors or no requests answered");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
