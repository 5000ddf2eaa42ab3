//! A SASL setup for tests: a sasldb made by `saslpasswd2` in a temp directory with two
//! users, and a `memcached.conf` with `mech_list: plain cram-md5`, made once per process
//! (libsasl2 is initialised once per process, with this directory). Under `CI=true` a
//! missing `saslpasswd2` (Debian: sasl2-bin) fails the test; elsewhere it is skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use larder::sasl;

pub const ALICE: (&str, &str) = ("alice", "secret");
/// A user in a realm other than the hostname: logs in as `bob@example.org`.
pub const BOB: (&str, &str, &str) = ("bob", "example.org", "pw2");

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skips (or under CI fails) when a tool is missing.
pub fn missing(what: &str) -> bool {
    assert!(!ci(), "{what} is needed by the SASL tests in CI");
    eprintln!("\n!!!!!!!!!! WARNING: {what} not installed; SASL test SKIPPED !!!!!!!!!!\n");
    true
}

fn saslpasswd2() -> Option<PathBuf> {
    ["saslpasswd2", "/usr/sbin/saslpasswd2"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| Command::new(p).arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok())
}

/// What `gethostname` says: memcached's (and `Session`'s) realm for a bare user name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for the length given, one short so it stays terminated.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    assert_eq!(rc, 0, "gethostname");
    let end = buf.iter().position(|&b| b == 0).unwrap();
    String::from_utf8(buf[..end].to_vec()).unwrap()
}

/// The config directory, made once: `None` when the tools are missing (outside CI).
pub fn fixture() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let tool = saslpasswd2().or_else(|| {
            missing("saslpasswd2 (apt-get install sasl2-bin libsasl2-modules-db)");
            None
        })?;
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sasl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("sasldb2");
        let host = hostname();
        for (user, realm, pass) in [(ALICE.0, host.as_str(), ALICE.1), BOB] {
            let mut child = Command::new(&tool)
                .args(["-p", "-c", "-a", "memcached", "-u", realm, "-f"])
                .arg(&db)
                .arg(user)
                .stdin(Stdio::piped())
                .spawn()
                .expect("saslpasswd2");
            child.stdin.take().unwrap().write_all(pass.as_bytes()).unwrap();
            assert!(child.wait().unwrap().success(), "saslpasswd2 {user}@{realm}");
        }
        let conf = format!("mech_list: plain cram-md5\nsasldb_path: {}\n", db.display());
        std::fs::write(dir.join("memcached.conf"), conf).unwrap();
        sasl::init_with(Some(dir.as_os_str())).expect("sasl init");
        Some(dir)
    })
    .as_deref()
}
