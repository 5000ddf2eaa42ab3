//! The `larder` binary itself: flags, refusals and signal handling.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_larder");

#[test]
fn bad_flags_get_one_line_and_a_nonzero_exit() {
    for args in
        [&["-m", "lots"][..], &["-t", "0"], &["--bogus"], &["-I", "2g"], &["-l", "nowhere"], &["-m", "1", "-I", "1m"]]
    {
        let out = Command::new(BIN).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("larder: "), "{err}");
    }
}

#[test]
fn help_and_version() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--port", "--listen", "--memory-limit", "--conn-limit", "--threads", "--max-item-size", "--verbose"] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("larder 1."));
}

/// Starts the binary on an ephemeral port and learns the port from its log.
fn start(extra: &[&str]) -> (std::process::Child, String, BufReader<std::process::ChildStderr>) {
    let args: Vec<&str> = ["-p", "0", "-l", "127.0.0.1", "-t", "1"].into_iter().chain(extra.iter().copied()).collect();
    common::start_binary(BIN, &args)
}

#[test]
fn sigterm_finishes_in_flight_work_and_exits_zero() {
    let (mut child, addr, mut log) = start(&[]);
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"set k 0 0 1\r\nv\r\n").unwrap();
    let mut reply = [0u8; 8];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"STORED\r\n");
    send_signal(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    log.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("SIGTERM received") && rest.contains("stopped"), "{rest}");
    // The idle connection was closed by the server.
    assert!(matches!(c.read(&mut reply), Ok(0) | Err(_)));
}

#[test]
fn sigint_exits_zero() {
    let (mut child, _addr, _log) = start(&["-v"]);
    send_signal(child.id(), "INT");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Sends a signal with kill(1), which keeps the test free of `unsafe` libc calls.
fn send_signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(ok.success());
}

#[test]
fn shutdown_command_with_dash_a_exits_zero() {
    let (mut child, addr, _log) = start(&["-A"]);
    let mut c = TcpStream::connect(&addr).unwrap();
    c.write_all(b"shutdown\r\n").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn unreadable_auth_file_is_refused() {
    let out = Command::new(BIN).args(["-Y", "/nonexistent/larder-auth"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("larder: -Y"));
}

#[test]
fn daemon_mode_writes_a_pid_file_logs_to_a_file_and_reopens_it_on_sighup() {
    let dir = std::env::temp_dir().join(format!("larder-daemon-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pidfile, log) = (dir.join("larder.pid"), dir.join("larder.log"));
    // -d: the command returns at once (the parent exits 0), the server keeps running.
    let status = Command::new(BIN)
        .args(["-d", "-p", "0", "-l", "127.0.0.1", "-t", "1", "--log-format", "json"])
        .arg("-P")
        .arg(&pidfile)
        .arg("--log-file")
        .arg(&log)
        .env_remove("RUST_LOG")
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (pid, addr) = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let pid = std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse::<u32>().ok());
        let addr =
            text.lines().find_map(|l| l.split("\"addr\":\"").nth(1).map(|r| r.split('"').next().unwrap().to_string()));
        if let (Some(pid), Some(addr)) = (pid, addr) {
            break (pid, addr);
        }
        assert!(std::time::Instant::now() < deadline, "daemon did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"mn\r\n").unwrap();
    let mut reply = [0u8; 4];
    c.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"MN\r\n");
    // logrotate: move the file away, SIGHUP, and the daemon logs to a new file.
    std::fs::rename(&log, dir.join("larder.log.1")).unwrap();
    send_signal(pid, "HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("reopened") {
        assert!(std::time::Instant::now() < deadline, "log not reopened");
        std::thread::sleep(Duration::from_millis(20));
    }
    send_signal(pid, "TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pidfile.exists() {
        assert!(std::time::Instant::now() < deadline, "pid file not removed on exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().all(|l| l.starts_with('{')), "json lines: {text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap() // effective uid
}

#[test]
fn dash_u_drops_root_privileges() {
    let (mut child, addr, _log) = start(&["-u", "nobody"]);
    let expected = if uid_of(std::process::id()) == 0 { 65534 } else { uid_of(std::process::id()) };
    assert_eq!(uid_of(child.id()), expected, "runs as nobody when started as root");
    TcpStream::connect(&addr).unwrap();
    send_signal(child.id(), "TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn memcached_tuning_options_are_accepted() {
    let (mut child, addr, mut log) = start(&["-o", "modern,hashpower=20", "-o", "slab_chunk_max=512"]);
    TcpStream::connect(&addr).unwrap();
    send_signal(child.id(), "TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let mut rest = String::new();
    log.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("tuning options accepted"), "{rest}");
}
