//! The `larder` binary itself: flags, refusals and signal handling.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_larder");

#[test]
fn bad_flags_get_one_line_and_a_nonzero_exit() {
    for args in [&["-m", "lots"][..], &["-t", "0"], &["--bogus"], &["-I", "2g"], &["-l", "nowhere"], &["-m", "1", "-I", "1m"]] {
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
    let mut child = Command::new(BIN)
        .args(["-p", "0", "-l", "127.0.0.1", "-t", "1"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "larder exited before listening");
        if let Some(at) = line.find("addr=") {
            let addr = line[at + 5..].split_whitespace().next().unwrap().to_string();
            return (child, addr, err);
        }
    }
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
