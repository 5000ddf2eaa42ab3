//! SASL authentication for the binary protocol under `-S`: Cyrus libsasl2's *server* API,
//! the library memcached links, set up the way memcached's `sasl_defs.c` sets it up and
//! driven the way its `proto_bin.c` drives it (`bin_list_sasl_mechs`,
//! `process_bin_sasl_auth`, `process_bin_complete_sasl_auth`). This module owns the
//! process-wide library state ([`init`]: callbacks, config path, hostname) and one
//! `sasl_conn_t` per client connection ([`Session`]); the binary protocol decides the
//! reply bytes (`Authenticated`, status 0x21 with the challenge, 0x20 `Auth failure.`).
//!
//! What a deployment already has keeps working: the config is `memcached.conf` in the
//! directory named by `SASL_CONF_PATH`, or else in `/etc/sasl` or `/etc/sasl2` (memcached's
//! search order, see [`conf_path_from_env`]), so its `mech_list`, `sasldb_path` and
//! `pwcheck_method` apply unchanged; users log in as `user` (the realm is the hostname, as
//! `saslpasswd2` assumes) or `user@realm`.
//!
//! Process-global by necessity: libsasl2 keeps its callbacks, plugins and config in
//! globals, so [`init`] runs once per process (later calls return the first result).

use std::ffi::{CStr, CString, OsStr, c_char, c_int, c_uint, c_ulong, c_void};
use std::os::unix::ffi::OsStrExt;
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

use sasl2_sys::prelude::{
    SASL_CB_GETCONFPATH, SASL_CB_LIST_END, SASL_CB_LOG, SASL_CONTINUE, SASL_FAIL, SASL_LOG_FAIL, SASL_LOG_NONE,
    SASL_LOG_WARN, SASL_OK, sasl_callback_t, sasl_conn_t, sasl_dispose, sasl_listmech, sasl_server_init,
    sasl_server_new, sasl_server_start, sasl_server_step, sasl_set_mutex,
};

/// memcached's `MAX_SASL_MECH_LEN`: a SASL_AUTH/SASL_STEP whose key (the mechanism name) is
/// longer gets status 0x04 `Invalid arguments` before SASL is asked (the body is
/// swallowed, the connection stays open). [`Session::start`] fails such a name too.
pub const MAX_MECH_LEN: usize = 32;

/// The application name memcached gives `sasl_server_init`: the config file is
/// `<dir>/memcached.conf`, and the service name of `sasl_server_new` (`pwcheck_method:
/// saslauthd` and PAM see "memcached").
const APP_NAME: &CStr = c"memcached";

/// What can go wrong outside an authentication exchange (those end in [`Step::Failed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `sasl_server_init` failed (no config directory found, a bad config, no memory).
    /// memcached prints this text and exits with status 1.
    #[error("Error initializing sasl.")]
    Init { code: i32 },
    /// `sasl_server_new` failed (also: [`init`] was not called). memcached then answers the
    /// connection's SASL commands with 0x20 `Auth failure.`.
    #[error("Failed to initialize SASL conn.")]
    Connection { code: i32 },
    /// `sasl_listmech` failed; memcached answers SASL_LIST_MECHS with 0x20 `Auth failure.`.
    #[error("Failed to list SASL mechanisms.")]
    ListMechanisms { code: i32 },
}

/// The outcome of one SASL_AUTH or SASL_STEP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `SASL_OK`: the client is authenticated (memcached: status 0, body `Authenticated`;
    /// whatever final data the mechanism had is not sent).
    Done,
    /// `SASL_CONTINUE`: send this challenge (possibly empty) with status 0x21 and wait for
    /// a SASL_STEP.
    Continue(Vec<u8>),
    /// Anything else (bad password, unknown user or mechanism, a step before a start, a
    /// second exchange after success): status 0x20 `Auth failure.`.
    Failed,
}

static INIT: OnceLock<Result<(), Error>> = OnceLock::new();
/// The directory list handed to libsasl2's `SASL_CB_GETCONFPATH`; lives for the process
/// because libsasl2 may keep the pointer.
static CONF_PATH: OnceLock<Option<CString>> = OnceLock::new();
/// memcached's `my_sasl_hostname`: the user realm of every `sasl_server_new` (`None` when
/// `gethostname` fails or is empty, as memcached passes NULL then).
static HOSTNAME: OnceLock<Option<CString>> = OnceLock::new();

/// Starts libsasl2 as memcached's `init_sasl` does, finding the config the way memcached
/// does ([`conf_path_from_env`]). Call once at startup under `-S`; an error is fatal
/// (memcached prints [`Error::Init`]'s text and exits 1).
pub fn init() -> Result<(), Error> {
    init_with(None)
}

/// [`init`], but with the config directory given (a colon-separated list, as
/// `SASL_CONF_PATH`) instead of looked up; `None` looks it up. Only the first call in a
/// process has an effect: libsasl2 is initialised once.
pub fn init_with(conf_dir: Option<&OsStr>) -> Result<(), Error> {
    INIT.get_or_init(|| {
        let conf = match conf_dir {
            Some(dir) => Some(dir.as_bytes().to_vec()),
            None => conf_path_from_env(),
        };
        // An environment string has no NUL; a given path with one is no directory.
        let conf = conf.and_then(|c| CString::new(c).ok());
        match &conf {
            Some(c) => tracing::debug!(path = %c.to_string_lossy(), "SASL: reading configuration"),
            None => tracing::debug!("SASL: failed to locate a config path"),
        }
        let _ = CONF_PATH.set(conf);
        let _ = HOSTNAME.set(hostname());
        let callbacks: &'static [sasl_callback_t] = Box::leak(Box::new([
            callback(SASL_CB_LOG, log_cb as *const ()),
            callback(SASL_CB_GETCONFPATH, getconfpath_cb as *const ()),
            sasl_callback_t { id: SASL_CB_LIST_END, proc_: None, context: ptr::null_mut() },
        ]));
        // SAFETY: the four functions have the signatures libsasl2 calls them with, and are
        // installed before `sasl_server_init`, the first use of the library, as its
        // documentation asks; only this `OnceLock` initialiser calls it.
        unsafe { sasl_set_mutex(Some(mutex_alloc), Some(mutex_lock), Some(mutex_unlock), Some(mutex_free)) };
        // SAFETY: `callbacks` is a `SASL_CB_LIST_END`-terminated array leaked for the
        // process (libsasl2 keeps the pointer), each `proc_` has the type its id stands for,
        // and `APP_NAME` is a static C string. The `OnceLock` makes this the only call.
        let code = unsafe { sasl_server_init(callbacks.as_ptr(), APP_NAME.as_ptr()) };
        if code == SASL_OK {
            tracing::debug!("Initialized SASL.");
            Ok(())
        } else {
            Err(Error::Init { code })
        }
    })
    .clone()
}

/// memcached's config lookup (its `sasl_getconf`, built with `SASL_CB_GETCONFPATH` as
/// Debian's 1.6.18 is): `SASL_CONF_PATH` as it is; else `/etc/sasl/memcached.conf` when
/// that is a directory holding `memcached.conf`, else `/etc/sasl` when
/// `/etc/sasl/memcached.conf` exists; then the same two for `/etc/sasl2`; else none, and
/// [`init`] fails.
pub fn conf_path_from_env() -> Option<Vec<u8>> {
    if let Some(p) = std::env::var_os("SASL_CONF_PATH") {
        return Some(p.as_bytes().to_vec());
    }
    for base in ["/etc/sasl", "/etc/sasl2"] {
        let conf = format!("{base}/memcached.conf");
        if std::fs::exists(format!("{conf}/memcached.conf")).unwrap_or(false) {
            return Some(conf.into_bytes());
        }
        if std::fs::exists(&conf).unwrap_or(false) {
            return Some(base.as_bytes().to_vec());
        }
    }
    None
}

fn callback(id: c_ulong, f: *const ()) -> sasl_callback_t {
    // SAFETY: `f` is one of this module's `unsafe extern "C" fn`s; libsasl2 stores every
    // callback as `int (*)(void)` and casts it back to the type its id stands for.
    let proc_ = unsafe { std::mem::transmute::<*const (), unsafe extern "C" fn() -> c_int>(f) };
    sasl_callback_t { id, proc_: Some(proc_), context: ptr::null_mut() }
}

fn hostname() -> Option<CString> {
    let mut buf = [0u8; 1025];
    // SAFETY: `buf` is writable for the length passed (one byte short, so the result stays
    // NUL-terminated even when truncated, as memcached does).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        tracing::debug!("Error discovering hostname for SASL");
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    (end > 0).then(|| CString::new(&buf[..end]).expect("cut at the first NUL"))
}

/// memcached's `sasl_log`: errors always, warnings and failures at `-v`, the rest at `-vv`
/// (Larder's `-v` shows debug, `-vv` trace).
unsafe extern "C" fn log_cb(_context: *mut c_void, level: c_int, message: *const c_char) -> c_int {
    if message.is_null() || level == SASL_LOG_NONE {
        return SASL_OK;
    }
    // SAFETY: libsasl2 passes a NUL-terminated message that lives for the call.
    let message = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    match level {
        SASL_LOG_FAIL | SASL_LOG_WARN => tracing::debug!(severity = level, "SASL: {message}"),
        l if l > SASL_LOG_WARN => tracing::trace!(severity = level, "SASL: {message}"),
        _ => tracing::error!(severity = level, "SASL: {message}"),
    }
    SASL_OK
}

/// `SASL_CB_GETCONFPATH`: the directory chosen in [`init_with`], or `SASL_FAIL` (which
/// fails `sasl_server_init`, as memcached's callback does when it finds nothing).
unsafe extern "C" fn getconfpath_cb(_context: *mut c_void, path: *mut *mut c_char) -> c_int {
    match CONF_PATH.get() {
        Some(Some(p)) if !path.is_null() => {
            // SAFETY: `path` is libsasl2's out-pointer; the string is never freed (a static)
            // and libsasl2 only reads it.
            unsafe { *path = p.as_ptr().cast_mut() };
            SASL_OK
        }
        _ => SASL_FAIL,
    }
}

// Real mutexes for the plugins that share state between connections (DIGEST-MD5's reauth
// cache): libsasl2's defaults do nothing, and Larder's workers run sessions in parallel.
// A boxed pthread mutex: it never moves, and C's lock/unlock pairing is what libsasl2 uses.
unsafe extern "C" fn mutex_alloc() -> *mut c_void {
    Box::into_raw(Box::new(libc::PTHREAD_MUTEX_INITIALIZER)).cast()
}

unsafe extern "C" fn mutex_lock(m: *mut c_void) -> c_int {
    if m.is_null() {
        return SASL_FAIL;
    }
    // SAFETY: `m` came from `mutex_alloc` (an initialised mutex) and is not yet freed.
    if unsafe { libc::pthread_mutex_lock(m.cast()) } == 0 { SASL_OK } else { SASL_FAIL }
}

unsafe extern "C" fn mutex_unlock(m: *mut c_void) -> c_int {
    if m.is_null() {
        return SASL_FAIL;
    }
    // SAFETY: `m` came from `mutex_alloc`; libsasl2 unlocks only what this thread locked.
    if unsafe { libc::pthread_mutex_unlock(m.cast()) } == 0 { SASL_OK } else { SASL_FAIL }
}

unsafe extern "C" fn mutex_free(m: *mut c_void) {
    if !m.is_null() {
        // SAFETY: `m` came from `Box::into_raw` in `mutex_alloc`, is unlocked and is freed
        // once, here.
        unsafe {
            libc::pthread_mutex_destroy(m.cast());
            drop(Box::from_raw(m.cast::<libc::pthread_mutex_t>()));
        }
    }
}

/// One connection's SASL state: memcached's `c->sasl_conn` and `c->sasl_started`. Create it
/// at the connection's first SASL command and keep it for the connection's life (memcached
/// never makes a second one: a new SASL_AUTH after a finished exchange fails).
pub struct Session {
    conn: NonNull<sasl_conn_t>,
    started: bool,
}

// SAFETY: a `sasl_conn_t` holds no thread-bound state; libsasl2 only requires that one
// connection is not used from two threads at once, which `&mut self` on every call (and
// `Session` not being `Sync`) guarantees. The state its plugins share between connections
// is behind the mutexes `init` installs.
unsafe impl Send for Session {}

impl Session {
    /// memcached's `init_sasl_conn`: `sasl_server_new("memcached", NULL, <hostname>, NULL,
    /// NULL, NULL, 0)`, so a bare user name is looked up in the hostname's realm.
    pub fn new() -> Result<Self, Error> {
        let realm = HOSTNAME.get().and_then(|h| h.as_ref()).map_or(ptr::null(), |h| h.as_ptr());
        let mut conn = ptr::null_mut();
        // SAFETY: the strings are NUL-terminated and outlive the call (static or
        // process-lived); NULL is allowed for the others; `conn` is a valid out-pointer.
        // Before `init`, libsasl2 returns SASL_NOTINIT.
        let code = unsafe {
            sasl_server_new(APP_NAME.as_ptr(), ptr::null(), realm, ptr::null(), ptr::null(), ptr::null(), 0, &mut conn)
        };
        match NonNull::new(conn) {
            Some(conn) if code == SASL_OK => Ok(Session { conn, started: false }),
            other => {
                if let Some(mut c) = other.map(NonNull::as_ptr) {
                    // SAFETY: a connection libsasl2 made but reported failure on; ours to free.
                    unsafe { sasl_dispose(&mut c) };
                }
                Err(Error::Connection { code })
            }
        }
    }

    /// The SASL_LIST_MECHS reply value: libsasl2's mechanisms for this connection, names
    /// separated by one space, nothing before or after (memcached's `sasl_listmech(conn,
    /// NULL, "", " ", "", ...)`), e.g. `PLAIN CRAM-MD5` for `mech_list: plain cram-md5`.
    pub fn mechanisms(&mut self) -> Result<Vec<u8>, Error> {
        let mut result: *const c_char = ptr::null();
        let mut len: c_uint = 0;
        // SAFETY: `conn` is live; the affixes are static C strings; `result` and `len` are
        // valid out-pointers; NULL user and count are allowed.
        let code = unsafe {
            sasl_listmech(
                self.conn.as_ptr(),
                ptr::null(),
                c"".as_ptr(),
                c" ".as_ptr(),
                c"".as_ptr(),
                &mut result,
                &mut len,
                ptr::null_mut(),
            )
        };
        if code != SASL_OK {
            return Err(Error::ListMechanisms { code });
        }
        // SAFETY: on SASL_OK `result` points at `len` bytes owned by the connection until
        // its next call; they are copied before that.
        Ok(unsafe { copy_out(result, len) })
    }

    /// SASL_AUTH: `sasl_server_start` with the mechanism (the request's key) and the
    /// client's first data (its value). As in memcached the name is cut at a NUL (C reads
    /// it up to there) and matched without regard to case by libsasl2; empty data is
    /// passed as NULL (PLAIN then answers [`Step::Continue`] with an empty challenge).
    pub fn start(&mut self, mech: &[u8], data: &[u8]) -> Step {
        let Some(mech) = mech_name(mech) else {
            return Step::Failed;
        };
        let Ok(len) = c_uint::try_from(data.len()) else {
            return Step::Failed;
        };
        let mut out: *const c_char = ptr::null();
        let mut out_len: c_uint = 0;
        // SAFETY: `conn` is live; `mech` is NUL-terminated; `data` is readable for `len`
        // bytes (or NULL with 0); `out` and `out_len` are valid out-pointers.
        let code = unsafe {
            sasl_server_start(self.conn.as_ptr(), mech.as_ptr(), data_ptr(data), len, &mut out, &mut out_len)
        };
        self.started = code == SASL_OK || code == SASL_CONTINUE;
        // SAFETY: `out`/`out_len` are what libsasl2 returned for this call.
        unsafe { outcome(code, out, out_len) }
    }

    /// SASL_STEP: `sasl_server_step` with the client's next data. Before a successful
    /// [`start`](Self::start) it fails without asking libsasl2, as memcached does.
    pub fn step(&mut self, data: &[u8]) -> Step {
        if !self.started {
            tracing::debug!("SASL_STEP called but sasl_server_start not called for this connection");
            return Step::Failed;
        }
        let Ok(len) = c_uint::try_from(data.len()) else {
            return Step::Failed;
        };
        let mut out: *const c_char = ptr::null();
        let mut out_len: c_uint = 0;
        // SAFETY: as in `start`: a live connection, readable input, valid out-pointers.
        let code = unsafe { sasl_server_step(self.conn.as_ptr(), data_ptr(data), len, &mut out, &mut out_len) };
        // SAFETY: `out`/`out_len` are what libsasl2 returned for this call.
        unsafe { outcome(code, out, out_len) }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut conn = self.conn.as_ptr();
        // SAFETY: the connection came from `sasl_server_new` and is disposed once, here.
        unsafe { sasl_dispose(&mut conn) };
    }
}

/// The mechanism name as memcached hands it to libsasl2: at most [`MAX_MECH_LEN`] bytes,
/// read up to the first NUL.
fn mech_name(mech: &[u8]) -> Option<CString> {
    if mech.len() > MAX_MECH_LEN {
        return None;
    }
    let end = memchr::memchr(0, mech).unwrap_or(mech.len());
    Some(CString::new(&mech[..end]).expect("cut at the first NUL"))
}

fn data_ptr(data: &[u8]) -> *const c_char {
    if data.is_empty() { ptr::null() } else { data.as_ptr().cast() }
}

/// memcached's result switch: SASL_OK, SASL_CONTINUE with the server's data, or a failure.
///
/// # Safety
/// `out` must be NULL or point at `out_len` readable bytes.
unsafe fn outcome(code: c_int, out: *const c_char, out_len: c_uint) -> Step {
    match code {
        SASL_OK => Step::Done,
        // SAFETY: the caller's contract.
        SASL_CONTINUE => Step::Continue(unsafe { copy_out(out, out_len) }),
        _ => {
            tracing::debug!(code, "SASL: authentication failed");
            Step::Failed
        }
    }
}

/// Copies a libsasl2 output buffer (owned by the connection, valid until its next call).
///
/// # Safety
/// `p` must be NULL or point at `len` readable bytes.
unsafe fn copy_out(p: *const c_char, len: c_uint) -> Vec<u8> {
    if p.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_mech_name_is_bounded_and_read_up_to_a_nul() {
        assert_eq!(mech_name(b"PLAIN").unwrap().as_bytes(), b"PLAIN");
        assert_eq!(mech_name(b"PL\0AIN").unwrap().as_bytes(), b"PL");
        assert_eq!(mech_name(b"\0").unwrap().as_bytes(), b"");
        assert_eq!(mech_name(&[b'A'; MAX_MECH_LEN]).unwrap().as_bytes().len(), MAX_MECH_LEN);
        assert!(mech_name(&[b'A'; MAX_MECH_LEN + 1]).is_none());
    }

    #[test]
    fn sasl_errors_say_what_memcached_says() {
        assert_eq!(Error::Init { code: SASL_FAIL }.to_string(), "Error initializing sasl.");
        assert_eq!(Error::Connection { code: SASL_FAIL }.to_string(), "Failed to initialize SASL conn.");
        assert_eq!(Error::ListMechanisms { code: SASL_FAIL }.to_string(), "Failed to list SASL mechanisms.");
    }

    #[test]
    fn sasl_empty_data_is_passed_as_null() {
        assert!(data_ptr(b"").is_null());
        assert!(!data_ptr(b"x").is_null());
        // SAFETY: NULL with any length, and a real buffer with its own length.
        unsafe {
            assert!(copy_out(ptr::null(), 5).is_empty());
            assert_eq!(copy_out(b"abc".as_ptr().cast(), 2), b"ab");
        }
    }
}
