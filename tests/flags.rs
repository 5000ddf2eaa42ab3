//! memcached's whole command line: every flag of the real `memcached -h`, short and long,
//! starts Larder or is refused with its documented line; memcached's configuration file
//! (`--config-file`) with Debian's default file and with every flag.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::memcached::{memcached_available, memcached_bin};

const BIN: &str = env!("CARGO_BIN_EXE_larder");

/// What a flag must do.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// The server starts (its log says "larder starting").
    Starts,
    /// The server starts, or (where the host forbids it) stops with this line, as memcached does.
    StartsOr(&'static str),
    /// It prints something and exits 0 (`-h`, `-V`, `-i`), starting with this text.
    Prints(&'static str),
    /// Refused: exit 2 and one line containing this text.
    Refused(&'static str),
    /// Detaches (`-d`): the command returns 0 and the server runs on.
    Detaches,
}

/// A scratch directory for one test's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("larder-flags-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The flags of memcached's `-h`: (`-p`, `Some("--port")`), (`-D`, None), (`-vv`, None), ...
fn memcached_flags() -> Vec<(String, Option<String>)> {
    let out = Command::new(memcached_bin()).arg("-h").output().expect("memcached -h");
    let help = String::from_utf8_lossy(&out.stdout);
    let mut flags = Vec::new();
    for line in help.lines().filter(|l| l.starts_with('-')) {
        let mut words = line.split_whitespace();
        let short = words.next().unwrap().trim_end_matches(',').to_string();
        let long = words.next().filter(|w| w.starts_with("--")).map(|w| w.split('=').next().unwrap().to_string());
        flags.push((short, long));
    }
    flags
}

/// Runs larder with `args` (on an ephemeral port unless they say otherwise) and checks
/// `want`; returns what went wrong.
fn check(args: &[String], want: Want, scratch: &Scratch) -> Result<(), String> {
    let base = ["-p", "0", "-l", "127.0.0.1", "-t", "1"].map(String::from);
    let mut cmd = Command::new(BIN);
    cmd.args(base.iter().chain(args)).env_remove("RUST_LOG").stdin(Stdio::null());
    match want {
        Want::Prints(start) => {
            let out = cmd.output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && text.starts_with(start) {
                return Ok(());
            }
            Err(format!("{:?}: {}", out.status, text.lines().next().unwrap_or("")))
        }
        Want::Refused(line) => {
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.code() == Some(2) && err.trim_end().lines().count() == 1 && err.contains(line) {
                return Ok(());
            }
            Err(format!("{:?}: {err}", out.status))
        }
        Want::Detaches => {
            let pidfile = scratch.path("detached.pid");
            let status = cmd.arg("-P").arg(&pidfile).status().unwrap();
            if !status.success() {
                return Err(format!("{status:?}"));
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse::<u32>().ok()) {
                    kill(pid, "TERM");
                    while Path::new(&pidfile).exists() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err("no pid file".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Want::Starts | Want::StartsOr(_) => {
            let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
            let mut log = BufReader::new(child.stderr.take().unwrap());
            let mut seen = String::new();
            let mut line = String::new();
            let started = loop {
                line.clear();
                if log.read_line(&mut line).unwrap_or(0) == 0 {
                    break false;
                }
                seen.push_str(&line);
                if line.contains("larder starting") {
                    break true;
                }
            };
            if started {
                kill(child.id(), "TERM");
                let status = child.wait().unwrap();
                return if status.success() { Ok(()) } else { Err(format!("stopped with {status:?}: {seen}")) };
            }
            let status = child.wait().unwrap();
            match want {
                Want::StartsOr(refusal) if seen.contains(refusal) => Ok(()),
                _ => Err(format!("did not start ({status:?}): {seen}")),
            }
        }
    }
}

fn kill(pid: u32, sig: &str) {
    assert!(Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap().success());
}

#[test]
fn every_flag_of_memcached_help_starts_or_is_refused_with_its_line() {
    if !memcached_available("the flag table (it reads memcached -h)") {
        return;
    }
    let scratch = Scratch::new("table");
    let certs = common::tls::Certs::new();
    std::fs::write(scratch.path("auth"), "user:pass\n").unwrap();
    let tls_files =
        format!("ssl_chain_cert={},ssl_key={}", certs.path("server.pem").display(), certs.path("server.key").display());
    // Each memcached flag with a typical value (None: it takes none), what it must do, and
    // more values to try with what they must do.
    type Row = (&'static str, Option<String>, Want, Vec<(String, Want)>);
    let s = |v: &str| Some(v.to_string());
    let table: Vec<Row> = vec![
        ("-p", s("0"), Want::Starts, vec![]),
        ("-U", s("0"), Want::Starts, vec![("11211".into(), Want::Refused("Larder serves no UDP"))]),
        ("-s", s(&scratch.path("sock")), Want::Starts, vec![]),
        ("-a", s("600"), Want::Starts, vec![]),
        ("-A", None, Want::Starts, vec![]),
        ("-l", s("127.0.0.1"), Want::Starts, vec![]),
        ("-d", None, Want::Detaches, vec![]),
        ("-r", None, Want::StartsOr("failed to ensure corefile creation"), vec![]),
        ("-u", s("nobody"), Want::Starts, vec![]),
        ("-m", s("32"), Want::Starts, vec![]),
        ("-M", None, Want::Starts, vec![]),
        ("-c", s("100"), Want::Starts, vec![]),
        ("-k", None, Want::Starts, vec![]),
        ("-v", None, Want::Starts, vec![]),
        ("-vv", None, Want::Starts, vec![]),
        ("-vvv", None, Want::Starts, vec![]),
        ("-h", None, Want::Prints("A memcached-compatible"), vec![]),
        ("-i", None, Want::Prints("MIT License"), vec![]),
        ("-V", None, Want::Prints("larder "), vec![]),
        ("-P", s(&scratch.path("pid")), Want::Starts, vec![]),
        ("-f", s("1.5"), Want::Starts, vec![("1".into(), Want::Refused("Factor must be greater than 1"))]),
        ("-n", s("64"), Want::Starts, vec![]),
        ("-L", None, Want::Starts, vec![]),
        ("-D", s("#"), Want::Starts, vec![]),
        ("-t", s("2"), Want::Starts, vec![]),
        ("-R", s("5"), Want::Starts, vec![]),
        ("-C", None, Want::Starts, vec![]),
        ("-b", s("256"), Want::Starts, vec![]),
        (
            "-B",
            s("ascii"),
            Want::Starts,
            vec![
                ("binary".into(), Want::Starts),
                ("auto".into(), Want::Starts),
                ("bogus".into(), Want::Refused("Invalid value for binding protocol: bogus")),
            ],
        ),
        ("-I", s("2m"), Want::Starts, vec![]),
        // Without a SASL configuration to find, memcached -S stops at once, as Larder does.
        ("-S", None, Want::StartsOr("Error initializing sasl."), vec![]),
        ("-F", None, Want::Starts, vec![]),
        ("-X", None, Want::Starts, vec![]),
        ("-W", None, Want::Starts, vec![]),
        ("-Y", s(&scratch.path("auth")), Want::Starts, vec![]),
        ("-e", s(&scratch.path("state")), Want::Starts, vec![]),
        // -Z needs its certificate: given with -o, which the row for -Z adds.
        ("-Z", None, Want::Starts, vec![]),
        (
            "-o",
            s("idle_timeout=5,hashpower=20,ext_path=/tmp/x:1G"),
            Want::Starts,
            vec![("proxy_config=x.lua".into(), Want::Refused("not memcached's proxy"))],
        ),
        ("-N", s("2"), Want::Starts, vec![]),
    ];
    let mut failures = Vec::new();
    let flags = memcached_flags();
    assert!(flags.len() >= 39, "memcached -h lists {} flags: {flags:?}", flags.len());
    for (short, long) in &flags {
        let Some((_, value, want, more)) = table.iter().find(|r| r.0 == short) else {
            failures.push(format!("{short}: memcached has it and the table has no row for it"));
            continue;
        };
        let extra = if short == "-Z" { vec!["-o".to_string(), tls_files.clone()] } else { vec![] };
        let mut forms = vec![[vec![short.clone()], value.iter().cloned().collect(), extra.clone()].concat()];
        if let Some(long) = long {
            let given = value.as_ref().map_or(long.clone(), |v| format!("{long}={v}"));
            forms.push([vec![given], extra.clone()].concat());
        }
        for args in forms {
            if let Err(e) = check(&args, *want, &scratch) {
                failures.push(format!("{args:?}: {e}"));
            }
        }
        for (v, want) in more {
            let args = vec![short.clone(), v.clone()];
            if let Err(e) = check(&args, *want, &scratch) {
                failures.push(format!("{args:?}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// Debian's /etc/memcached.conf as the memcached package installs it (1.6.18).
const DEBIAN_CONF: &str = "# memcached default config file
# 2003 - Jay Bonci <jaybonci@debian.org>
# This configuration file is read by the start-memcached script provided as
# part of the Debian GNU/Linux distribution.

# Run memcached as a daemon. This command is implied, and is not needed for the
# daemon to run. See the README.Debian that comes with this package for more
# information.
-d

# Log memcached's output to /var/log/memcached
logfile /var/log/memcached.log

# Be verbose
# -v

# Be even more verbose (print client commands as well)
# -vv

# Start with a cap of 64 megs of memory. It's reasonable, and the daemon default
# Note that the daemon will grow to this size, but does not start out holding this much
# memory
-m 64

# Default connection port is 11211
-p 11211

# Run the daemon as root. The start-memcached will default to running as root if no
# -u command is present in this config file
-u memcache

# Specify which IP address to listen on. The default is to listen on all IP addresses
# This parameter is one of the only security measures that memcached has, so make sure
# it's listening on a firewalled interface.
-l 127.0.0.1

# Limit the number of simultaneous incoming connections. The daemon default is 1024
# -c 1024

# Lock down all paged memory. Consult with the README and homepage before you do this
# -k

# Return error when memory is exhausted (rather than removing items)
# -M

# Maximize core file limit
# -r

# Use a pidfile
-P /var/run/memcached/memcached.pid
";

/// A server this test started, stopped by its pid if the test fails before `stop`.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts larder with `args`, logging to `log`, and learns its address from that file.
fn start_logging_to(args: &[String], log: &str) -> (Running, String) {
    let mut child = Command::new(BIN).args(args).env_remove("RUST_LOG").stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(at) = text.find("addr=") {
            return (Running(child), text[at + 5..].split_whitespace().next().unwrap().to_string());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("larder exited ({status:?}): {err}{text}");
        }
        assert!(Instant::now() < deadline, "no addr= in {log}: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `stats settings` as name -> value.
fn settings(addr: &str) -> std::collections::HashMap<String, String> {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"stats settings\r\n").unwrap();
    let mut text = String::new();
    let mut r = BufReader::new(c);
    while !text.ends_with("END\r\n") {
        assert!(r.read_line(&mut text).unwrap() > 0, "{text}");
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .map(|l| l.split_once(' ').unwrap())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn stop(mut running: Running) {
    kill(running.0.id(), "TERM");
    assert_eq!(running.0.wait().unwrap().code(), Some(0));
}

#[test]
fn debians_default_memcached_conf_starts_with_command_line_flags_winning() {
    let scratch = Scratch::new("debian");
    let conf = scratch.path("memcached.conf");
    std::fs::write(&conf, DEBIAN_CONF).unwrap();
    let (log, pid) = (scratch.path("larder.log"), scratch.path("larder.pid"));
    // The file's port, user, pid file and log file are the system's: the command line
    // replaces them, flag by flag, and the file's -m and -l stay.
    let args = ["--config-file", &conf, "-p", "0", "-u", "root", "-P", &pid, "--log-file", &log, "-t", "1"];
    let (child, addr) = start_logging_to(&args.map(String::from), &log);
    let s = settings(&addr);
    assert_eq!((s["maxbytes"].as_str(), s["inter"].as_str()), ("67108864", "127.0.0.1"));
    // -d in the file is skipped, as Debian's wrappers skip it: this is still our child.
    assert!(std::fs::read_to_string(&pid).unwrap().trim() == child.0.id().to_string());
    stop(child);
}

#[test]
fn a_conf_with_every_flag_is_read_and_the_command_line_wins() {
    let scratch = Scratch::new("every");
    let log = scratch.path("from-conf.log");
    let conf = scratch.path("every.conf");
    let text = format!(
        "# every flag Larder runs with, as a memcached.conf would give them
-p 0
-U 0
-l 127.0.0.1   # a comment after a flag
-A
-m 32
-M
-c 100
-k
-vv
-f 1.5
-n 64
-L
-D \\#
-t 2
-R 5
-C
-b 128
-B ascii
-I 2m
-F
-X
-W
-o idle_timeout=30,hashpower=16
-N 2
-e {state}
logfile {log}
",
        state = scratch.path("state"),
        log = log,
    );
    std::fs::write(&conf, text).unwrap();
    let (child, addr) = start_logging_to(&["--config-file".into(), conf.clone()], &log);
    let s = settings(&addr);
    let want = [
        ("maxbytes", "33554432"),
        ("maxconns", "100"),
        ("udpport", "0"),
        ("inter", "127.0.0.1"),
        ("verbosity", "2"),
        ("evictions", "off"),
        ("shutdown_command", "yes"),
        ("growth_factor", "1.50"),
        ("chunk_size", "64"),
        ("num_threads", "2"),
        ("stat_key_prefix", "#"),
        ("detail_enabled", "yes"),
        ("reqs_per_event", "5"),
        ("cas_enabled", "no"),
        ("tcp_backlog", "128"),
        ("binding_protocol", "ascii"),
        ("item_size_max", "2097152"),
        ("flush_enabled", "no"),
        ("dump_enabled", "no"),
        ("idle_timeout", "30"),
        ("num_napi_ids", "2"),
    ];
    for (k, v) in want {
        assert_eq!(s[k], v, "{k}");
    }
    stop(child);
    // The command line replaces a flag of the file as a whole: -m, and -o (idle_timeout
    // and hashpower both), but leaves the file's others.
    let log2 = scratch.path("cli.log");
    let args = ["--config-file", &conf, "-m", "48", "-o", "idle_timeout=7", "--log-file", &log2].map(String::from);
    let (child, addr) = start_logging_to(&args, &log2);
    let s = settings(&addr);
    assert_eq!((s["maxbytes"].as_str(), s["idle_timeout"].as_str()), ("50331648", "7"));
    assert_eq!((s["maxconns"].as_str(), s["cas_enabled"].as_str()), ("100", "no"));
    assert!(std::fs::read_to_string(&log).unwrap().lines().count() > 0, "the file's logfile took the first run's log");
    assert!(!std::fs::read_to_string(&log2).unwrap().contains("hashpower"), "the file's -o is replaced whole");
    stop(child);
}

#[test]
fn a_bad_conf_is_one_line_naming_the_file() {
    let scratch = Scratch::new("bad");
    for (text, says) in [
        ("-m lots\n", "invalid value 'lots'"),
        ("memory 64\n", "line 1: 'memory 64' is neither a flag nor `logfile <path>`"),
        ("-l '127.0.0.1\n", "line 1: unterminated ' quote"),
        ("-U 11211\n", "Larder serves no UDP"),
    ] {
        let conf = scratch.path("bad.conf");
        std::fs::write(&conf, text).unwrap();
        let out = Command::new(BIN).args(["--config-file", &conf, "-p", "0"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{text}: {err}");
    }
}

#[test]
fn dash_i_lists_every_dependency_with_its_license() {
    let out = Command::new(BIN).arg("-i").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("MIT License"), "{text}");
    let manifest = include_str!("../Cargo.toml");
    let deps = manifest.split("[dependencies]").nth(1).unwrap().split("\n[").next().unwrap();
    for name in deps.lines().filter_map(|l| l.split_once(" = ")).map(|(n, _)| n.trim()) {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} ")) && l.contains(": ")),
            "{name} is missing from LICENSE-THIRD-PARTY: run scripts/licenses"
        );
    }
}
