//! Running as a daemon the way memcached does: detaching from the terminal (`-d`), a pid
//! file (`-P`), dropping root privileges (`-u`), core files (`-r`), locked memory (`-k`),
//! and a log file that SIGHUP reopens (for logrotate). Process-level plumbing only; the
//! server knows nothing of it.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Detaches: forks (the parent exits 0 at once, as memcached's does), starts a new session
/// and points stdin, stdout and stderr at /dev/null. Must run before any thread starts.
pub fn detach() -> io::Result<()> {
    // SAFETY: called while the process has a single thread (before the runtime starts), so
    // the child inherits no locks held by other threads.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        // SAFETY: _exit ends the parent without running the child's atexit handlers twice.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    let null = OpenOptions::new().read(true).write(true).open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors of our own process.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    std::env::set_current_dir("/")?;
    Ok(())
}

/// `-r`: raises the core file limit to unlimited, or failing that to the hard limit, as
/// memcached does; an error (memcached's words) if the soft limit is left at 0.
pub fn enable_coredumps() -> Result<(), String> {
    let mut rlim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read or write only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_CORE, &mut rlim) == 0 {
            let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
            if libc::setrlimit(libc::RLIMIT_CORE, &unlimited) != 0 {
                let hard = libc::rlimit { rlim_cur: rlim.rlim_max, rlim_max: rlim.rlim_max };
                libc::setrlimit(libc::RLIMIT_CORE, &hard);
            }
        }
        if libc::getrlimit(libc::RLIMIT_CORE, &mut rlim) != 0 || rlim.rlim_cur == 0 {
            return Err("failed to ensure corefile creation".into());
        }
    }
    Ok(())
}

/// `-k`: locks every page of the process, now and to come, into memory. A failure is
/// memcached's warning, and the server runs on unlocked. After `detach` (a child does not
/// inherit locks) and before `drop_privileges` (locking may need root).
pub fn lock_memory() -> Result<(), String> {
    // SAFETY: mlockall has no memory-safety preconditions.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        return Err(format!("warning: -k invalid, mlockall() failed: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// `-u <user>`: when running as root, switches to `user` (its group too). A no-op for other
/// users, as in memcached.
pub fn drop_privileges(user: &str) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let name = CString::new(user).map_err(|_| format!("-u: bad user name {user:?}"))?;
    // SAFETY: getpwnam returns a pointer to static storage or null; we read it at once,
    // single-threaded.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(format!("-u: no such user {user}"));
    }
    // SAFETY: pw was checked non-null above and points at a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    // SAFETY: plain syscalls with valid arguments; order matters (groups, gid, then uid).
    let failed = unsafe { libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 };
    if failed {
        return Err(format!("-u {user}: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// `-P <file>`: holds the pid file and removes it when dropped.
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut f = File::create(path)?;
        writeln!(f, "{}", std::process::id())?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A log file that can be reopened (SIGHUP after logrotate moves it away).
#[derive(Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self { path: path.to_path_buf(), file: Arc::new(Mutex::new(open_append(path)?)) })
    }

    /// Opens the path again, so writes go to a new file if the old one was moved.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

/// One log line's writer: the shared file, locked per write.
pub struct LogWriter(Arc<Mutex<File>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogFile {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(self.file.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_reopens_after_a_move() {
        let dir = std::env::temp_dir().join(format!("larder-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("larder.log");
        let log = LogFile::open(&path).unwrap();
        log.make_writer_for_test().write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("larder.log.1")).unwrap();
        log.reopen().unwrap();
        log.make_writer_for_test().write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(std::fs::read_to_string(dir.join("larder.log.1")).unwrap(), "one\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    impl LogFile {
        fn make_writer_for_test(&self) -> LogWriter {
            LogWriter(self.file.clone())
        }
    }

    #[test]
    fn pid_file_lives_as_long_as_its_holder() {
        let path = std::env::temp_dir().join(format!("larder-pid-{}", std::process::id()));
        let pid = PidFile::create(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), std::process::id().to_string());
        drop(pid);
        assert!(!path.exists());
    }
}
