//! Command line to validated configuration: clap's `Cli` with memcached's flag letters and
//! meanings (and memcached's configuration file under it), turned once into a [`Config`]
//! of bytes, limits and addresses.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

/// `-I` bounds, as memcached enforces them.
const MIN_ITEM_SIZE: usize = 1024;
const MAX_ITEM_SIZE: usize = 1024 << 20;

/// Larder: a memcached-compatible cache server.
///
/// Every flag of memcached 1.6's `-h` is accepted, long and short; README.md's flag table
/// says what Larder does with each.
#[derive(Debug, Parser)]
// A flag given twice takes its last value, as with memcached's getopt (`-l` and `-o` add up).
#[command(name = "larder", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// Read flags from a memcached configuration file (Debian's /etc/memcached.conf: one
    /// flag per line, `#` comments, `logfile <path>`); flags on the command line win.
    #[arg(long = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    pub port: u16,

    /// UDP port: only 0 (off, memcached's default since 1.5.6); Larder serves no UDP.
    #[arg(short = 'U', long = "udp-port", default_value_t = 0)]
    pub udp_port: u16,

    /// Interfaces to listen on, comma-separated (e.g. 127.0.0.1,::1), each with an optional
    /// port (127.0.0.1:11311, [::1]:11311); with -Z, a `notls:` prefix serves plain TCP
    /// there. Given more than once, every address is listened on, as in memcached.
    #[arg(short = 'l', long = "listen", action = ArgAction::Append)]
    pub listen: Vec<String>,

    /// Item memory in megabytes.
    #[arg(short = 'm', long = "memory-limit", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub memory_limit: u64,

    /// Maximum simultaneous connections.
    #[arg(short = 'c', long = "conn-limit", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub conn_limit: u32,

    /// Worker threads.
    #[arg(short = 't', long = "threads", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,

    /// Largest item, with an optional k or m suffix (1k to 1024m).
    #[arg(short = 'I', long = "max-item-size", default_value = "1m", value_parser = parse_item_size)]
    pub max_item_size: usize,

    /// More logging: -v debug (connections), -vv trace (every command). RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,

    /// Refuse stores with `SERVER_ERROR out of memory storing object` when the cache is
    /// full, instead of evicting items.
    #[arg(short = 'M', long = "disable-evictions")]
    pub disable_evictions: bool,

    /// Listen on this unix domain socket instead of TCP (TCP is off, as in memcached).
    #[arg(short = 's', long = "unix-socket")]
    pub unix_socket: Option<std::path::PathBuf>,

    /// Permissions of the unix socket, in octal.
    #[arg(short = 'a', long = "unix-mask", default_value = "700", value_parser = parse_mask)]
    pub unix_mask: u32,

    /// Run in the background (detach from the terminal), as memcached's -d.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// Write the process id to this file (removed on exit).
    #[arg(short = 'P', long = "pidfile")]
    pub pidfile: Option<std::path::PathBuf>,

    /// When started as root, run as this user.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,

    /// Raise the core file size limit as far as it goes, so a crash leaves a core.
    #[arg(short = 'r', long = "enable-coredumps")]
    pub enable_coredumps: bool,

    /// Lock all of the process's memory into RAM (mlockall), so the cache is never swapped.
    #[arg(short = 'k', long = "lock-memory")]
    pub lock_memory: bool,

    /// Print Larder's license and its dependencies' and exit.
    #[arg(short = 'i', long = "license")]
    pub license: bool,

    /// memcached's slab growth factor: accepted and shown in `stats settings`; Larder sizes
    /// its slots on its own.
    #[arg(short = 'f', long = "slab-growth-factor", value_name = "FACTOR", value_parser = parse_factor)]
    pub slab_growth_factor: Option<f64>,

    /// memcached's smallest chunk: accepted and shown in `stats settings`.
    #[arg(short = 'n', long = "slab-min-size", value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..))]
    pub slab_min_size: Option<u32>,

    /// memcached's large memory pages: accepted; Larder leaves pages to the kernel.
    #[arg(short = 'L', long = "enable-largepages")]
    pub enable_largepages: bool,

    /// The delimiter between a key's prefix and the rest, for `stats detail`; giving it
    /// turns per-prefix counting on from the start.
    #[arg(short = 'D', long = "prefix-delimiter", value_name = "CHAR", value_parser = parse_delimiter)]
    pub prefix_delimiter: Option<u8>,

    /// How many delimited segments form a `stats detail` prefix: 1 is memcached's rule;
    /// 3 splits Django's `<KEY_PREFIX>:<version>:<key>` by what starts the key. A key with
    /// fewer delimiters counts under what precedes its last one.
    #[arg(long = "prefix-segments", value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=250))]
    pub prefix_segments: u16,

    /// The most prefixes `stats detail` keeps; the rest are counted together in one OTHER
    /// row.
    #[arg(long = "prefix-limit", value_name = "N", default_value_t = crate::prefixes::DEFAULT_LIMIT as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub prefix_limit: u32,

    /// Counters a worker thread keeps for the most requested keys (`stats hotkeys`); 0
    /// turns hot-key counting off.
    #[arg(long = "hot-keys", value_name = "K", default_value_t = crate::hot_keys::DEFAULT_K as u32, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub hot_keys: u32,

    /// Count one fetch in N (on average, at random) for `stats hotkeys`; counts are scaled
    /// back up. 1 counts every fetch.
    #[arg(long = "hot-keys-sample", value_name = "N", default_value_t = crate::hot_keys::DEFAULT_SAMPLE, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub hot_keys_sample: u32,

    /// Commands one connection may run per turn before others get theirs.
    #[arg(short = 'R', long = "max-reqs-per-event", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_reqs_per_event: u32,

    /// Turn CAS off: every item's CAS is 0 and `cas` answers EXISTS, as memcached -C does.
    #[arg(short = 'C', long = "disable-cas")]
    pub disable_cas: bool,

    /// Length of the kernel's queue of connections not yet accepted.
    #[arg(short = 'b', long = "listen-backlog", default_value_t = 1024)]
    pub listen_backlog: i32,

    /// Protocol: auto (each connection by its first byte), ascii (the text and meta
    /// protocols) or binary. Default: auto; binary with -S, ascii with -Y.
    #[arg(short = 'B', long = "protocol", value_name = "NAME")]
    pub protocol: Option<String>,

    /// SASL authentication of binary-protocol clients (through libsasl2; implies -B binary).
    #[arg(short = 'S', long = "enable-sasl")]
    pub enable_sasl: bool,

    /// Refuse `flush_all`.
    #[arg(short = 'F', long = "disable-flush-all")]
    pub disable_flush_all: bool,

    /// Refuse `watch`.
    #[arg(short = 'W', long = "disable-watch")]
    pub disable_watch: bool,

    /// memcached's NAPI ids: accepted and shown in `stats settings`; Larder hands
    /// connections to workers in turn.
    // memcached's -h spells it --napi_ids; its parser takes --napi-ids.
    #[arg(short = 'N', long = "napi-ids", alias = "napi_ids", value_name = "NUM", value_parser = clap::value_parser!(u32).range(1..))]
    pub napi_ids: Option<u32>,

    /// Log line format.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log to this file instead of stderr; SIGHUP reopens it (for logrotate).
    #[arg(long = "log-file")]
    pub log_file: Option<std::path::PathBuf>,

    /// Enable the `shutdown` command, which stops the server as SIGTERM does.
    #[arg(short = 'A', long = "enable-shutdown")]
    pub enable_shutdown: bool,

    /// Refuse the commands that list the cache's keys (`lru_crawler metadump`,
    /// `stats cachedump`, `stats hotkeys`).
    #[arg(short = 'X', long = "disable-dumping")]
    pub disable_dumping: bool,

    /// Require clients to authenticate: a file of `user:password` lines, read at start.
    /// A client logs in with `set <any> 0 0 <n>` whose data is `<user> <password>`.
    #[arg(short = 'Y', long = "auth-file")]
    pub auth_file: Option<std::path::PathBuf>,

    /// Serve TLS on every TCP listener but those `-l` marks `notls:`; the certificate and
    /// the rest come from `-o ssl_*` options (see README).
    #[arg(short = 'Z', long = "enable-ssl")]
    pub enable_ssl: bool,

    /// Keep the cache in this state file across restarts: loaded at start, saved on
    /// SIGTERM, SIGINT, SIGUSR1 and `shutdown` (and every `-o snapshot_interval` seconds).
    #[arg(short = 'e', long = "memory-file")]
    pub memory_file: Option<std::path::PathBuf>,

    /// Before serving, copy every item of the memcached (or Larder) at HOST:PORT: keys from
    /// its `lru_crawler metadump`, values, flags, CAS and remaining TTLs by `mg`.
    #[arg(long = "warm-from", value_name = "HOST:PORT")]
    pub warm_from: Option<String>,

    /// Seconds `--warm-from` may take before the server starts serving with what it has.
    #[arg(long = "warm-from-timeout", value_name = "SECONDS", default_value_t = 300)]
    pub warm_from_timeout: u64,

    /// Serve HTTP on HOST:PORT: Prometheus metrics at /metrics, a live page at /, and
    /// /healthz (off by default; 127.0.0.1:9150 is memcached_exporter's port).
    #[arg(long = "http", value_name = "HOST:PORT")]
    pub http: Option<String>,

    /// Extended options, memcached's `-o key=value[,key=value]`. Larder knows
    /// `idle_timeout=<seconds>` (0, the default, never closes idle connections),
    /// `snapshot_interval=<seconds>` (with -e: also save that often; 0, the default, only
    /// on stopping) and the `ssl_*` options of `-Z`.
    #[arg(short = 'o', long = "extended", value_name = "OPTIONS", action = ArgAction::Append)]
    pub extended: Vec<String>,
}

impl Cli {
    /// Parses `argv`; with `--config-file`, the file's flags come first and each flag given
    /// on the command line replaces the file's (a repeatable one, `-l` or `-o`, as a whole).
    /// Errors are one line each; `--help` and `--version` are clap's to print.
    pub fn parse_with_config_file(argv: Vec<OsString>) -> Result<Self, CliError> {
        let command = Self::command();
        let given = command.clone().try_get_matches_from(&argv)?;
        let Some(path) = given.get_one::<PathBuf>("config_file") else {
            return Ok(Self::from_arg_matches(&given)?);
        };
        let in_file = |e: String| CliError::Line(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| in_file(e.to_string()))?;
        let words = config_file_words(&text).map_err(in_file)?;
        let from_file = command
            .clone()
            .try_get_matches_from(
                std::iter::once(OsString::from("larder")).chain(words.into_iter().map(OsString::from)),
            )
            .map_err(|e| in_file(clap_line(&e)))?;
        let mut merged = vec![OsString::from("larder")];
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            let on = |m: &clap::ArgMatches| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
            let m = match () {
                _ if id == "config_file" => continue,
                _ if on(&given) => &given,
                _ if on(&from_file) => &from_file,
                _ => continue,
            };
            let flag = format!("--{}", arg.get_long().expect("every flag has a long form"));
            match arg.get_action() {
                ArgAction::SetTrue => merged.push(flag.into()),
                ArgAction::Count => merged.extend((0..m.get_count(id)).map(|_| OsString::from(&flag))),
                _ => {
                    for value in m.get_raw(id).into_iter().flatten() {
                        let mut a = OsString::from(format!("{flag}="));
                        a.push(value);
                        merged.push(a);
                    }
                }
            }
        }
        Ok(Self::try_parse_from(merged)?)
    }
}

/// A command line that cannot be run: clap's own error (which prints `--help` and
/// `--version` too), or one line to print.
#[derive(Debug)]
pub enum CliError {
    Clap(clap::Error),
    Line(String),
}

impl From<clap::Error> for CliError {
    fn from(e: clap::Error) -> Self {
        Self::Clap(e)
    }
}

/// The first line of clap's message, without its `error: `.
pub fn clap_line(e: &clap::Error) -> String {
    let msg = e.to_string();
    msg.lines().next().unwrap_or("bad arguments").trim_start_matches("error: ").to_string()
}

/// The flags of a memcached configuration file, read as Debian's wrappers read
/// `/etc/memcached.conf`: `#` starts a comment (`\#` does not), blank lines are skipped,
/// a line starting with `-d` or `-h` is skipped (the service manager runs the server),
/// other lines starting with `-` are split into words as a shell would, and `logfile
/// <path>` becomes `--log-file`.
pub fn config_file_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let mut cut = raw.len();
        let b = raw.as_bytes();
        for i in 0..b.len() {
            if b[i] == b'#' && (i == 0 || b[i - 1] != b'\\') {
                cut = i;
                break;
            }
        }
        let line = raw[..cut].trim();
        if line.is_empty() || line.starts_with("-d") || line.starts_with("-h") {
            continue;
        }
        if line.starts_with('-') {
            words.extend(shell_words(line).map_err(|e| format!("line {}: {e}", n + 1))?);
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some(("logfile", path)) => words.push(format!("--log-file={}", path.trim())),
            _ => return Err(format!("line {}: '{line}' is neither a flag nor `logfile <path>`", n + 1)),
        }
    }
    Ok(words)
}

/// Splits a line into words as `sh` does for plain words, quotes and backslashes.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.extend(chars.next()),
                        Some(c) => w.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// Settings given with `-o`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Extended {
    idle_timeout: u32,
    snapshot_interval: u32,
    tls: TlsSettings,
    /// Not `-o no_lru_maintainer`: `stats` lists the LRU maintainer's counters.
    lru_maintainer: bool,
    /// `-o read_buf_mem_limit`, in bytes (given in MiB; 0: no limit).
    read_buf_mem_limit: Option<usize>,
    /// memcached tuning options accepted without effect.
    ignored: Vec<String>,
}

impl Default for Extended {
    fn default() -> Self {
        Self {
            idle_timeout: 0,
            snapshot_interval: 0,
            tls: TlsSettings::default(),
            lru_maintainer: true,
            read_buf_mem_limit: None,
            ignored: Vec::new(),
        }
    }
}

/// `-Z` and its `-o ssl_*` options, as memcached takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `-Z`.
    pub enabled: bool,
    /// The server's certificate chain (PEM), leaf first.
    pub chain_cert: Option<PathBuf>,
    /// The private key; without it, the key is looked for in `chain_cert`.
    pub key: Option<PathBuf>,
    /// PEM (1, memcached's default) or DER (2).
    pub keyformat: u32,
    pub verify_mode: VerifyMode,
    /// The CAs a client certificate must chain to.
    pub ca_cert: Option<PathBuf>,
    /// An OpenSSL cipher list for TLS 1.2, as `ssl_ciphers` takes it.
    pub ciphers: Option<String>,
    /// memcached's `ssl_min_version` number: 2 (TLS 1.2) or 3 (TLS 1.3).
    pub min_version: u32,
    /// Keep sessions so that clients can resume them.
    pub session_cache: bool,
    /// `ssl_wbuf_size` in bytes (given in kilobytes); reported, as memcached does.
    pub wbuf_size: u32,
    /// `ssl_kernel_tls` (accepted and reported; records are sealed in user space).
    pub kernel_tls: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            chain_cert: None,
            key: None,
            keyformat: 1,
            verify_mode: VerifyMode::None,
            ca_cert: None,
            ciphers: None,
            min_version: 2,
            session_cache: false,
            wbuf_size: 16 * 1024,
            kernel_tls: false,
        }
    }
}

/// `ssl_verify_mode`: whether a client must show a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// 0: none is asked for.
    None,
    /// 1: one is asked for; a client may go without, but one shown must verify.
    Request,
    /// 2: one is required.
    Require,
    /// 3: required on the first handshake only (the same as 2 where there is no renegotiation).
    Once,
}

impl VerifyMode {
    /// The OpenSSL flags memcached stores and `stats settings` prints.
    pub fn openssl_flags(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Request => 1,
            Self::Require => 3,
            Self::Once => 7,
        }
    }
}

/// A numeric `-o` value, with memcached's refusals.
fn ssl_number(key: &str, value: Option<&str>) -> Result<u32, String> {
    let v = value.ok_or_else(|| format!("Missing {key} argument"))?;
    v.parse().map_err(|_| format!("could not parse argument to {key}"))
}

fn ssl_path(key: &str, value: Option<&str>) -> Result<Option<PathBuf>, String> {
    Ok(Some(PathBuf::from(value.ok_or_else(|| format!("Missing {key} argument"))?)))
}

/// One `ssl_*` option into `tls`; false if `key` is not one.
fn parse_ssl_option(tls: &mut TlsSettings, key: &str, value: Option<&str>) -> Result<bool, String> {
    match key {
        "ssl_chain_cert" => tls.chain_cert = ssl_path(key, value)?,
        "ssl_key" => tls.key = ssl_path(key, value)?,
        "ssl_ca_cert" => tls.ca_cert = ssl_path(key, value)?,
        "ssl_ciphers" => tls.ciphers = Some(value.ok_or_else(|| format!("Missing {key} argument"))?.to_string()),
        "ssl_keyformat" => {
            tls.keyformat = ssl_number(key, value)?;
            if !(1..=2).contains(&tls.keyformat) {
                return Err("ssl_keyformat: Larder reads keys in PEM (1) or DER (2)".into());
            }
        }
        "ssl_verify_mode" => {
            tls.verify_mode = match ssl_number(key, value)? {
                0 => VerifyMode::None,
                1 => VerifyMode::Request,
                2 => VerifyMode::Require,
                3 => VerifyMode::Once,
                _ => return Err("Invalid ssl_verify_mode. Use help to see valid options.".into()),
            }
        }
        "ssl_min_version" => {
            tls.min_version = match ssl_number(key, value)? {
                v @ (0 | 1) => {
                    return Err(format!(
                        "ssl_min_version={v}: TLS 1.{v} is not offered (Larder's TLS, rustls, speaks TLS 1.2 and 1.3)"
                    ));
                }
                v @ (2 | 3) => v,
                _ => return Err("Invalid ssl_min_version. Use help to see valid options.".into()),
            }
        }
        "ssl_wbuf_size" => {
            tls.wbuf_size = ssl_number(key, value)?
                .checked_mul(1024)
                .ok_or_else(|| format!("could not parse argument to {key}"))?;
        }
        "ssl_session_cache" => tls.session_cache = true,
        "ssl_kernel_tls" => tls.kernel_tls = true,
        _ => return Ok(false),
    }
    Ok(true)
}

/// Parses `-o` values as memcached does: comma-separated `key=value` pairs; an unknown key
/// is refused with memcached's wording, memcached's own tuning keys are accepted.
fn parse_extended(opts: &[String]) -> Result<Extended, String> {
    let mut ext = Extended::default();
    for opt in opts.iter().flat_map(|o| o.split(',')).filter(|o| !o.is_empty()) {
        let (key, value) = opt.split_once('=').map_or((opt, None), |(k, v)| (k, Some(v)));
        match key {
            "idle_timeout" => {
                ext.idle_timeout = value
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| "-o: missing numeric argument for idle_timeout".to_string())?;
            }
            "snapshot_interval" => {
                ext.snapshot_interval = value
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| "-o: missing numeric argument for snapshot_interval".to_string())?;
            }
            "read_buf_mem_limit" => {
                let mib: usize = value
                    .ok_or_else(|| "Missing read_buf_mem_limit argument".to_string())?
                    .parse()
                    .map_err(|_| "could not parse argument to read_buf_mem_limit".to_string())?;
                let bytes = mib.checked_mul(1 << 20).filter(|&b| u32::try_from(b).is_ok());
                ext.read_buf_mem_limit =
                    Some(bytes.ok_or_else(|| "could not parse argument to read_buf_mem_limit".to_string())?);
            }
            k if parse_ssl_option(&mut ext.tls, k, value)? => {}
            k if k.starts_with("proxy_") => {
                return Err(format!("-o {k}: Larder is a cache server, not memcached's proxy"));
            }
            k if MEMCACHED_TUNING.contains(&k) || k.starts_with("ext_") => {
                match k {
                    "lru_maintainer" => ext.lru_maintainer = true,
                    "no_lru_maintainer" => ext.lru_maintainer = false,
                    _ => {}
                }
                ext.ignored.push(opt.to_string());
            }
            _ => return Err(format!("-o: illegal suboption \"{opt}\"")),
        }
    }
    Ok(ext)
}

/// memcached's `-o` tuning keys for machinery Larder does not have (slab classes, LRU
/// segments, the crawler, hash tables, privilege sandboxes; extstore's `ext_*` too). A
/// command line written for memcached keeps working: they are accepted, logged at start,
/// and change nothing but what `stats` lists (`no_lru_maintainer` drops the maintainer's
/// counters, as in memcached).
const MEMCACHED_TUNING: &[&str] = &[
    "maxconns_fast",
    "no_maxconns_fast",
    "hashpower",
    "no_hashexpand",
    "tail_repair_time",
    "hash_algorithm",
    "lru_crawler",
    "no_lru_crawler",
    "lru_crawler_sleep",
    "lru_crawler_tocrawl",
    "lru_maintainer",
    "no_lru_maintainer",
    "hot_lru_pct",
    "warm_lru_pct",
    "hot_max_factor",
    "warm_max_factor",
    "temporary_ttl",
    "temp_lru",
    "slab_chunk_max",
    "slab_reassign",
    "no_slab_reassign",
    "slab_automove",
    "no_slab_automove",
    "slab_automove_ratio",
    "slab_automove_window",
    "slab_automove_freeratio",
    "watcher_logbuf_size",
    "worker_logbuf_size",
    "track_sizes",
    "modern",
    "no_modern",
    "sock_cookie_id",
    "inline_ascii_resp",
    "no_inline_ascii_resp",
    "slab_sizes",
    "no_chunked_items",
    "drop_privileges",
    "no_drop_privileges",
    "relaxed_privileges",
    "resp_obj_mem_limit",
    "slab_automove_freeratio",
];

/// Parses `-f` as memcached does: a number above 1.
fn parse_factor(s: &str) -> Result<f64, String> {
    s.trim().parse::<f64>().ok().filter(|f| *f > 1.0).ok_or_else(|| "Factor must be greater than 1".to_string())
}

/// Parses `-D`: memcached takes the argument's first character.
fn parse_delimiter(s: &str) -> Result<u8, String> {
    s.trim_start().bytes().next().ok_or_else(|| "No delimiter specified".to_string())
}

/// Parses `-a`: an octal permission mask such as 700 or 0660.
fn parse_mask(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("'{s}' is not an octal mask such as 700"))
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Credentials from an `-Y` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFile {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl AuthFile {
    /// Parses `user:password` lines (memcached's format); blank lines are skipped.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let colon = line.iter().position(|&b| b == b':').ok_or_else(|| format!("-Y: line {} has no ':'", n + 1))?;
            entries.push((line[..colon].to_vec(), line[colon + 1..].to_vec()));
        }
        if entries.is_empty() {
            return Err("-Y: no user:password lines".into());
        }
        Ok(Self { entries })
    }

    /// Whether `user` and `password` match an entry.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        self.entries.iter().any(|(u, p)| u == user && p == password)
    }
}

/// Parses `-I`: bytes, or a number with a `k`/`m` suffix, within memcached's bounds.
fn parse_item_size(s: &str) -> Result<usize, String> {
    let (digits, unit) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 1024),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let n: usize = digits.parse().map_err(|_| format!("'{s}' is not a size such as 512k or 2m"))?;
    let bytes = n.checked_mul(unit).ok_or_else(|| format!("'{s}' is too large"))?;
    if !(MIN_ITEM_SIZE..=MAX_ITEM_SIZE).contains(&bytes) {
        return Err(format!("item size must be between 1k and 1024m, not {s}"));
    }
    Ok(bytes)
}

/// A TCP address to listen on, and whether it serves TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// Parses one `-l` entry: `[notls:]address[:port]`, an IPv6 address with a port in
/// brackets; `port` where none is given. `notls:` is refused without `-Z`, as memcached
/// refuses it.
fn parse_listen(part: &str, port: u16, tls: bool) -> Result<Listen, String> {
    let (plain, addr) = match part.strip_prefix("notls:") {
        Some(_) if !tls => return Err("'notls' option is valid only when SSL is enabled".into()),
        Some(rest) => (true, rest),
        None => (false, part),
    };
    let addr = match (addr.parse::<SocketAddr>(), addr.parse::<IpAddr>()) {
        (Ok(a), _) => a,
        (_, Ok(ip)) => SocketAddr::new(ip, port),
        _ => return Err(format!("-l: '{part}' is not an IP address")),
    };
    Ok(Listen { addr, tls: tls && !plain })
}

/// Validated settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<Listen>,
    /// `-l` as given (`stats settings` shows it so).
    pub listen_arg: String,
    /// `-m` in bytes.
    pub memory_limit: usize,
    pub max_connections: usize,
    pub threads: usize,
    /// `-I` in bytes.
    pub max_item_size: usize,
    pub verbose: u8,
    /// `-s`: a unix domain socket to listen on (then `listen` is empty), and `-a`.
    pub unix_socket: Option<std::path::PathBuf>,
    pub unix_mask: u32,
    /// `-A`: the `shutdown` command works.
    pub enable_shutdown: bool,
    /// Not `-X`: the commands that list keys work.
    pub dump_enabled: bool,
    /// `-M`: a full cache refuses stores instead of evicting.
    pub disable_evictions: bool,
    /// `-B`: the protocols a connection may speak.
    pub protocol: Protocol,
    /// `-S`: binary clients log in through SASL before anything else.
    pub sasl: bool,
    /// `-Y`: clients must authenticate.
    pub auth: Option<AuthFile>,
    /// `-o idle_timeout`: seconds a connection may wait on its client before it is closed
    /// (0: never).
    pub idle_timeout: u32,
    /// `-Z` and `-o ssl_*`.
    pub tls: TlsSettings,
    /// `-e`: the state file, as an absolute path with symlinks resolved (`-d` changes
    /// directory to `/`).
    pub memory_file: Option<PathBuf>,
    /// `--warm-from`: a running server to copy items from before serving, and how long
    /// that may take.
    pub warm_from: Option<String>,
    pub warm_from_timeout: std::time::Duration,
    /// `--http`: where to serve metrics and the live page.
    pub http: Option<String>,
    /// `-o snapshot_interval`: seconds between saves of the state file while serving (0:
    /// only on stopping).
    pub snapshot_interval: u32,
    /// memcached `-o` tuning keys accepted without effect (logged at start).
    pub ignored_options: Vec<String>,
    /// memcached flags for machinery Larder does not have (`-f -n -L -N`), as given
    /// (logged at start).
    pub inert_flags: Vec<String>,
    /// `-b`: the listen queue's length.
    pub listen_backlog: i32,
    /// `-R`: commands a connection runs per turn before the worker moves on.
    pub reqs_per_event: u32,
    /// Not `-C`: items get CAS values.
    pub cas_enabled: bool,
    /// Not `-F`: `flush_all` works.
    pub flush_enabled: bool,
    /// Not `-W`: `watch` works.
    pub watch_enabled: bool,
    /// `-D`: the `stats detail` prefix delimiter, and whether counting starts on.
    pub prefix_delimiter: u8,
    pub detail_enabled: bool,
    /// `--prefix-segments`: delimited segments a prefix is made of (1: memcached's rule).
    pub prefix_segments: usize,
    /// `--prefix-limit`: the most prefixes `stats detail` keeps.
    pub prefix_limit: usize,
    /// `--hot-keys`: counters per worker thread for `stats hotkeys` (0: off).
    pub hot_keys: usize,
    /// `--hot-keys-sample`: one fetch in this many is counted.
    pub hot_keys_sample: u32,
    /// Not `-o no_lru_maintainer`: `stats` lists the LRU maintainer's counters.
    pub lru_maintainer: bool,
    /// `-o read_buf_mem_limit`: bytes all connections' buffers may hold past their base
    /// (0: no limit). Not given: [`crate::budget::Budget::default_limit`].
    pub read_buf_mem_limit: usize,
    /// `-f`, `-n` and `-N` as `stats settings` shows them.
    pub growth_factor: f64,
    pub chunk_size: u32,
    pub napi_ids: Option<u32>,
}

/// `-B`: which protocols a connection may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Each connection by its first byte: binary if it is the binary magic, else text.
    Auto,
    Ascii,
    Binary,
}

impl Protocol {
    /// The name `stats settings` gives it (`binding_protocol`), as memcached's `prot_text`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto-negotiate",
            Self::Ascii => "ascii",
            Self::Binary => "binary",
        }
    }
}

impl Config {
    /// Checks a parsed command line and resolves its addresses.
    pub fn from_cli(cli: &Cli) -> Result<Self, String> {
        if cli.udp_port != 0 {
            return Err(format!(
                "-U {}: Larder serves no UDP (memcached turned UDP off by default in 1.5.6, after the \
                 amplification attacks); give -U 0 or leave it out",
                cli.udp_port
            ));
        }
        let mut protocol = match cli.protocol.as_deref() {
            None | Some("auto") => Protocol::Auto,
            Some("ascii") => Protocol::Ascii,
            Some("binary") => Protocol::Binary,
            Some(p) => {
                return Err(format!(
                    "Invalid value for binding protocol: {p} -- should be one of auto, binary, or ascii"
                ));
            }
        };
        // memcached's rules, in its order: -S speaks binary, -Y text; a -B that says
        // otherwise is refused, and with neither given, -Y has the last word.
        let specified = cli.protocol.is_some();
        if cli.enable_sasl {
            if !specified {
                protocol = Protocol::Binary;
            } else if protocol != Protocol::Binary {
                return Err("ERROR: You cannot allow the ASCII protocol while using SASL.".into());
            }
        }
        if cli.auth_file.is_some() {
            if !specified {
                protocol = Protocol::Ascii;
            } else if protocol != Protocol::Ascii {
                return Err(
                    "ERROR: You cannot allow the BINARY protocol while using ascii authentication tokens.".into()
                );
            }
        }
        // Repeated -l add addresses, each once, as memcached joins them.
        let mut listen_args: Vec<&str> = Vec::new();
        for l in &cli.listen {
            if !listen_args.contains(&l.as_str()) {
                listen_args.push(l);
            }
        }
        let listen_arg = if listen_args.is_empty() { "127.0.0.1".to_string() } else { listen_args.join(",") };
        let mut listen = Vec::new();
        for part in listen_arg.split([',', ';']).map(str::trim).filter(|p| !p.is_empty()) {
            listen.push(parse_listen(part, cli.port, cli.enable_ssl)?);
        }
        if listen.is_empty() {
            return Err("-l: no address given".into());
        }
        if cli.unix_socket.is_some() {
            listen.clear(); // -s turns TCP off, as in memcached
        }
        let memory_limit = (cli.memory_limit as usize) << 20;
        if cli.max_item_size > memory_limit / 2 && cli.max_item_size > MIN_ITEM_SIZE {
            return Err(format!(
                "-I ({} bytes) must not be more than half of -m ({} MiB)",
                cli.max_item_size, cli.memory_limit
            ));
        }
        let mut ext = parse_extended(&cli.extended)?;
        ext.tls.enabled = cli.enable_ssl;
        if ext.tls.enabled && ext.tls.chain_cert.is_none() {
            return Err("-Z: no certificate: give -o ssl_chain_cert=<file> (and ssl_key=<file>)".into());
        }
        if ext.snapshot_interval > 0 && cli.memory_file.is_none() {
            return Err("-o snapshot_interval: there is no state file to save to; give -e <file>".into());
        }
        let memory_file = match &cli.memory_file {
            // A symlink is followed, so that saves replace its target, not the link.
            Some(p) => Some(
                std::fs::canonicalize(p)
                    .or_else(|_| std::path::absolute(p))
                    .map_err(|e| format!("-e {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let inert_flags = [
            cli.slab_growth_factor.map(|f| format!("-f {f}")),
            cli.slab_min_size.map(|n| format!("-n {n}")),
            cli.enable_largepages.then(|| "-L".to_string()),
            cli.napi_ids.map(|n| format!("-N {n}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok(Self {
            listen,
            listen_arg,
            memory_limit,
            max_connections: cli.conn_limit as usize,
            threads: usize::from(cli.threads),
            max_item_size: cli.max_item_size,
            verbose: cli.verbose,
            unix_socket: cli.unix_socket.clone(),
            unix_mask: cli.unix_mask,
            enable_shutdown: cli.enable_shutdown,
            dump_enabled: !cli.disable_dumping,
            disable_evictions: cli.disable_evictions,
            protocol,
            sasl: cli.enable_sasl,
            auth: match &cli.auth_file {
                Some(path) => {
                    let text = std::fs::read(path).map_err(|e| format!("-Y {}: {e}", path.display()))?;
                    Some(AuthFile::parse(&text)?)
                }
                None => None,
            },
            idle_timeout: ext.idle_timeout,
            tls: ext.tls,
            memory_file,
            warm_from: cli.warm_from.clone(),
            warm_from_timeout: std::time::Duration::from_secs(cli.warm_from_timeout),
            http: cli.http.clone(),
            snapshot_interval: ext.snapshot_interval,
            ignored_options: ext.ignored,
            inert_flags,
            listen_backlog: cli.listen_backlog,
            reqs_per_event: cli.max_reqs_per_event,
            cas_enabled: !cli.disable_cas,
            flush_enabled: !cli.disable_flush_all,
            watch_enabled: !cli.disable_watch,
            prefix_delimiter: cli.prefix_delimiter.unwrap_or(b':'),
            detail_enabled: cli.prefix_delimiter.is_some(),
            prefix_segments: usize::from(cli.prefix_segments),
            prefix_limit: cli.prefix_limit as usize,
            hot_keys: cli.hot_keys as usize,
            hot_keys_sample: cli.hot_keys_sample,
            lru_maintainer: ext.lru_maintainer,
            read_buf_mem_limit: ext
                .read_buf_mem_limit
                .unwrap_or_else(|| crate::budget::Budget::default_limit(cli.max_item_size)),
            growth_factor: cli.slab_growth_factor.unwrap_or(1.25),
            chunk_size: cli.slab_min_size.unwrap_or(48),
            napi_ids: cli.napi_ids,
        })
    }

    /// Whether `stats detail` counts from the start: with `-D`, as in memcached, and with
    /// `--http`, whose page and `/metrics` show the prefix table (`stats detail off` still
    /// turns it off).
    pub fn prefixes_on_at_start(&self) -> bool {
        self.detail_enabled || self.http.is_some()
    }

    /// Whether Larder's own `stats detail` and hot-key settings are all at their defaults;
    /// `stats settings` then lists memcached's names only.
    pub fn observability_defaults(&self) -> bool {
        self.prefix_segments == 1
            && self.prefix_limit == crate::prefixes::DEFAULT_LIMIT
            && self.hot_keys == crate::hot_keys::DEFAULT_K
            && self.hot_keys_sample == crate::hot_keys::DEFAULT_SAMPLE
    }

    /// Defaults for tests: an ephemeral port on 127.0.0.1, two threads.
    pub fn for_tests() -> Self {
        Self {
            listen: vec![Listen { addr: SocketAddr::from(([127, 0, 0, 1], 0)), tls: false }],
            listen_arg: "127.0.0.1".into(),
            memory_limit: 64 << 20,
            max_connections: 1024,
            threads: 2,
            max_item_size: 1 << 20,
            verbose: 0,
            unix_socket: None,
            unix_mask: 0o700,
            enable_shutdown: false,
            dump_enabled: true,
            disable_evictions: false,
            protocol: Protocol::Auto,
            sasl: false,
            auth: None,
            idle_timeout: 0,
            tls: TlsSettings::default(),
            memory_file: None,
            warm_from: None,
            warm_from_timeout: std::time::Duration::from_secs(300),
            http: None,
            snapshot_interval: 0,
            ignored_options: Vec::new(),
            inert_flags: Vec::new(),
            listen_backlog: 1024,
            reqs_per_event: 20,
            cas_enabled: true,
            flush_enabled: true,
            watch_enabled: true,
            prefix_delimiter: b':',
            detail_enabled: false,
            prefix_segments: 1,
            prefix_limit: crate::prefixes::DEFAULT_LIMIT,
            hot_keys: crate::hot_keys::DEFAULT_K,
            hot_keys_sample: crate::hot_keys::DEFAULT_SAMPLE,
            lru_maintainer: true,
            read_buf_mem_limit: crate::budget::DEFAULT_LIMIT,
            growth_factor: 1.25,
            chunk_size: 48,
            napi_ids: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_memcached() {
        let cli = Cli::parse_from(["larder"]);
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(c.listen, vec![Listen { addr: "127.0.0.1:11211".parse().unwrap(), tls: false }]);
        assert_eq!((c.memory_limit, c.max_connections, c.threads, c.max_item_size), (64 << 20, 1024, 4, 1 << 20));
    }

    #[test]
    fn flags() {
        let cli = Cli::parse_from(["larder", "-p", "1", "-l", "127.0.0.1,::1", "-m", "128", "-I", "2m", "-vv"]);
        let c = Config::from_cli(&cli).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!((c.memory_limit, c.max_item_size, c.verbose), (128 << 20, 2 << 20, 2));
        assert_eq!(parse_item_size("1k"), Ok(1024));
        assert_eq!(parse_item_size("2048"), Ok(2048));
        assert!(parse_item_size("512").is_err());
        assert!(parse_item_size("2g").is_err());
        assert!(parse_item_size("1025m").is_err());
        assert!(Cli::try_parse_from(["larder", "-t", "0"]).is_err());
        assert!(Cli::try_parse_from(["larder", "-p", "70000"]).is_err());
        assert!(Config::from_cli(&Cli::parse_from(["larder", "-l", "nowhere"])).is_err());
        assert!(Config::from_cli(&Cli::parse_from(["larder", "-m", "1", "-I", "1m"])).is_err());
    }

    #[test]
    fn extended_options() {
        let config = |args: &[&str]| Config::from_cli(&Cli::parse_from([&["larder"], args].concat()));
        assert_eq!(config(&[]).unwrap().idle_timeout, 0, "off by default");
        assert_eq!(config(&["-o", "idle_timeout=5"]).unwrap().idle_timeout, 5);
        assert_eq!(config(&[]).unwrap().read_buf_mem_limit, 64 << 20);
        assert_eq!(config(&["-I", "64m", "-m", "1024"]).unwrap().read_buf_mem_limit, 128 << 20);
        assert_eq!(config(&["-o", "read_buf_mem_limit=32"]).unwrap().read_buf_mem_limit, 32 << 20);
        assert_eq!(config(&["-o", "read_buf_mem_limit=0"]).unwrap().read_buf_mem_limit, 0);
        assert_eq!(config(&["-o", "read_buf_mem_limit"]).unwrap_err(), "Missing read_buf_mem_limit argument");
        assert_eq!(
            config(&["-o", "read_buf_mem_limit=x"]).unwrap_err(),
            "could not parse argument to read_buf_mem_limit"
        );
        assert_eq!(config(&["-o", "idle_timeout=5,idle_timeout=7"]).unwrap().idle_timeout, 7);
        assert_eq!(config(&["-o", "idle_timeout=1", "-o", "idle_timeout=3"]).unwrap().idle_timeout, 3);
        assert_eq!(config(&["-o", "bogus=1"]).unwrap_err(), "-o: illegal suboption \"bogus=1\"");
        assert_eq!(config(&["-o", "idle_timeout=5,bogus"]).unwrap_err(), "-o: illegal suboption \"bogus\"");
        let warm = config(&["-e", "state", "-o", "snapshot_interval=30"]).unwrap();
        assert!(warm.memory_file.as_ref().is_some_and(|p| p.is_absolute() && p.ends_with("state")));
        assert_eq!(warm.snapshot_interval, 30);
        assert!(config(&["-o", "snapshot_interval=30"]).unwrap_err().contains("give -e"));
        let listen = |c: Config| c.listen.iter().map(|l| (l.addr.to_string(), l.tls)).collect::<Vec<_>>();
        let tls = ["-Z", "-o", "ssl_chain_cert=c.pem", "-l"];
        assert_eq!(
            listen(config(&[&tls[..], &["notls:127.0.0.1:11311;127.0.0.1,[::1]:5"]].concat()).unwrap()),
            [("127.0.0.1:11311".into(), false), ("127.0.0.1:11211".into(), true), ("[::1]:5".into(), true)]
        );
        assert_eq!(config(&["-l", "notls:127.0.0.1"]).unwrap_err(), "'notls' option is valid only when SSL is enabled");
        let ssl =
            config(&["-o", "ssl_verify_mode=3,ssl_wbuf_size=32", "-o", "ssl_min_version=3,ssl_session_cache"]).unwrap();
        assert_eq!((ssl.tls.verify_mode.openssl_flags(), ssl.tls.wbuf_size), (7, 32768));
        assert!(ssl.tls.session_cache && ssl.tls.min_version == 3 && !ssl.tls.enabled, "ssl_* without -Z: kept, off");
        for bad in ["idle_timeout", "idle_timeout=", "idle_timeout=x", "idle_timeout=-1"] {
            assert_eq!(config(&["-o", bad]).unwrap_err(), "-o: missing numeric argument for idle_timeout", "{bad}");
        }
    }

    #[test]
    fn config_file_lines_as_debians_wrappers_read_them() {
        let words = |t: &str| config_file_words(t);
        assert_eq!(words("-d\n-m 64\n# -c 10\n\n  -l 127.0.0.1  # local\n").unwrap(), ["-m", "64", "-l", "127.0.0.1"]);
        assert_eq!(
            words("logfile /var/log/memcached.log\n-vv\n").unwrap(),
            ["--log-file=/var/log/memcached.log", "-vv"]
        );
        assert_eq!(words("-D \\#\n-o 'a b',\"c\\\"d\"\n").unwrap(), ["-D", "#", "-o", "a b,c\"d"]);
        assert_eq!(words("-h\n-help\n").unwrap(), Vec::<String>::new(), "-h lines are skipped, as -d lines are");
        assert_eq!(words("memory 64\n").unwrap_err(), "line 1: 'memory 64' is neither a flag nor `logfile <path>`");
        assert_eq!(words("\n-l \"x\n").unwrap_err(), "line 2: unterminated \" quote");
    }

    #[test]
    fn the_command_line_replaces_a_config_file_flag_by_flag() {
        let dir = std::env::temp_dir().join(format!("larder-conf-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("m.conf");
        std::fs::write(&conf, "-m 32\n-l 127.0.0.1\n-l 127.0.0.2\n-o idle_timeout=5\n-C\n-v\nlogfile /tmp/x.log\n")
            .unwrap();
        let parse = |args: &[&str]| {
            let head = ["larder", "--config-file", conf.to_str().unwrap()];
            match Cli::parse_with_config_file(head.iter().chain(args).map(OsString::from).collect()) {
                Ok(cli) => cli,
                Err(e) => panic!("{e:?}"),
            }
        };
        let cli = parse(&[]);
        assert_eq!((cli.memory_limit, cli.listen.len(), cli.disable_cas, cli.verbose), (32, 2, true, 1));
        assert_eq!(cli.log_file.as_deref(), Some(std::path::Path::new("/tmp/x.log")));
        let cli = parse(&["-m", "48", "-l", "::1", "-vv", "--log-file", "/tmp/y.log"]);
        assert_eq!((cli.memory_limit, cli.listen.clone(), cli.verbose), (48, vec!["::1".to_string()], 2));
        assert_eq!((cli.extended.clone(), cli.disable_cas), (vec!["idle_timeout=5".to_string()], true));
        assert_eq!(cli.log_file.as_deref(), Some(std::path::Path::new("/tmp/y.log")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prefix_and_hot_key_flags() {
        let config = |args: &[&str]| Cli::try_parse_from([&["larder"], args].concat()).map(|c| Config::from_cli(&c));
        let c = config(&[]).unwrap().unwrap();
        assert_eq!((c.prefix_segments, c.prefix_limit, c.hot_keys, c.hot_keys_sample), (1, 100, 100, 8));
        assert!(c.observability_defaults() && !c.prefixes_on_at_start());
        let args = ["--prefix-segments", "3", "--prefix-limit", "5", "--hot-keys", "0", "--hot-keys-sample", "1"];
        let c = config(&args).unwrap().unwrap();
        assert_eq!((c.prefix_segments, c.prefix_limit, c.hot_keys, c.hot_keys_sample), (3, 5, 0, 1));
        assert!(!c.observability_defaults());
        assert!(config(&["--http", "127.0.0.1:0"]).unwrap().unwrap().prefixes_on_at_start());
        for bad in [&["--prefix-segments", "0"][..], &["--prefix-limit", "0"], &["--hot-keys-sample", "0"]] {
            assert!(config(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn memcached_flags_with_their_refusals() {
        let config = |args: &[&str]| Config::from_cli(&Cli::try_parse_from([&["larder"], args].concat()).unwrap());
        let c = config(&["-C", "-F", "-W", "-D", "#", "-R", "3", "-b", "9", "-f", "1.5", "-n", "64", "-L", "-N", "2"])
            .unwrap();
        assert!(!c.cas_enabled && !c.flush_enabled && !c.watch_enabled && c.detail_enabled);
        assert_eq!((c.prefix_delimiter, c.reqs_per_event, c.listen_backlog, c.chunk_size), (b'#', 3, 9, 64));
        assert_eq!(c.inert_flags, ["-f 1.5", "-n 64", "-L", "-N 2"]);
        let c = config(&["-l", "127.0.0.1", "-l", "127.0.0.2", "-l", "127.0.0.1", "-U", "0", "-B", "ascii"]).unwrap();
        assert_eq!(c.listen_arg, "127.0.0.1,127.0.0.2", "repeated -l add up, each once");
        assert!(!config(&["-o", "no_lru_maintainer"]).unwrap().lru_maintainer);
        assert!(config(&["-U", "1"]).unwrap_err().contains("Larder serves no UDP"));
        assert_eq!(config(&[]).unwrap().protocol, Protocol::Auto);
        assert_eq!(config(&["-S"]).unwrap().protocol, Protocol::Binary, "-S alone speaks binary");
        assert!(
            config(&["-S", "-B", "auto"]).unwrap_err().contains("cannot allow the ASCII protocol while using SASL")
        );
        let auth = std::env::temp_dir().join(format!("larder-config-auth-{}", std::process::id()));
        std::fs::write(&auth, "u:p\n").unwrap();
        let y = auth.to_str().unwrap();
        assert_eq!(config(&["-Y", y]).unwrap().protocol, Protocol::Ascii, "-Y alone speaks text");
        assert!(config(&["-Y", y, "-B", "binary"]).unwrap_err().contains("BINARY protocol while using ascii auth"));
        assert_eq!(config(&["-Y", y, "-S"]).unwrap().protocol, Protocol::Ascii, "as memcached: -Y has the last word");
        assert!(config(&["-Y", y, "-S", "-B", "ascii"]).unwrap_err().contains("ASCII protocol while using SASL"));
        std::fs::remove_file(&auth).unwrap();
        assert!(config(&["-o", "proxy_config=a"]).unwrap_err().contains("not memcached's proxy"));
        assert_eq!(Cli::try_parse_from(["larder", "-m", "16", "-m", "32"]).unwrap().memory_limit, 32, "last wins");
        assert!(Cli::try_parse_from(["larder", "-f", "1"]).is_err());
        assert!(Cli::try_parse_from(["larder", "-R", "0"]).is_err());
    }
}
