//! Debian's memcached as a test's reference or source: started on an ephemeral 127.0.0.1
//! port, killed by its own pid on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A memcached process we started; killed (by its own pid) on drop.
pub struct Memcached {
    pub child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn memcached_bin() -> String {
    std::env::var("MEMCACHED_BIN").unwrap_or_else(|_| "memcached".to_string())
}

/// Whether Debian's memcached (or `MEMCACHED_BIN`) is here for `what`. Under CI a missing
/// memcached fails the test; elsewhere the test is skipped with a loud warning.
pub fn memcached_available(what: &str) -> bool {
    let here = Command::new(memcached_bin())
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !here {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0") {
            panic!(
                "memcached not found ({}): {what} needs Debian's memcached (apt-get install memcached) in CI",
                memcached_bin()
            );
        }
        eprintln!("\n!!!!!!!!!! WARNING: memcached not installed; {what} SKIPPED !!!!!!!!!!\n");
    }
    here
}

static SPAWN_SEQ: AtomicUsize = AtomicUsize::new(0);

pub fn start_memcached(opts: &[String]) -> Memcached {
    start_memcached_bin(&memcached_bin(), opts, &[])
}

/// [`start_memcached`] with another memcached binary (a newer release built from source)
/// and environment variables set for it (`SASL_CONF_PATH`).
pub fn start_memcached_bin(bin: &str, opts: &[String], env: &[(&str, &std::path::Path)]) -> Memcached {
    let dir = std::env::temp_dir().join(format!(
        "larder-diff-{}-{}",
        std::process::id(),
        SPAWN_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port_file = dir.join("ports");
    let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
    // `-p -1` = ephemeral port (`-p 0` disables TCP); memcached writes "TCP INET: <port>"
    // to a `.lck` file and renames it to MEMCACHED_PORT_FILENAME once it listens. `-u root`
    // is only consulted when running as root (memcached refuses root without it).
    let child = Command::new(bin)
        .args(["-p", "-1", "-U", "0", "-l", "127.0.0.1", "-t", "1", "-u", "root"])
        .args(opts)
        .env("MEMCACHED_PORT_FILENAME", &port_file)
        .envs(env.iter().map(|&(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawning memcached");
    let mut mc = Memcached { child, addr: "127.0.0.1:0".parse().unwrap(), dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            let port =
                text.lines().find_map(|l| l.strip_prefix("TCP INET: ")).and_then(|p| p.trim().parse::<u16>().ok());
            if let Some(port) = port {
                mc.addr = SocketAddr::from(([127, 0, 0, 1], port));
                return mc;
            }
        }
        if let Ok(Some(status)) = mc.child.try_wait() {
            let err = std::fs::read_to_string(mc.dir.join("stderr")).unwrap_or_default();
            panic!("memcached {opts:?} exited at startup ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "memcached {opts:?} did not report its port");
        std::thread::sleep(Duration::from_millis(5));
    }
}
