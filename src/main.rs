//! The `larder` binary: command line, logging, listeners, runtime, signals.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use larder::clock::Clock;
use larder::config::{CliError, LogFormat};
use larder::server::Listener;
use larder::tls::Tls;
use larder::{Cli, Config, Ctx, daemon};
use tokio::net::TcpListener;
use tracing::info;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    one_malloc_arena();
    let cli = match Cli::parse_with_config_file(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(CliError::Clap(e)) if !e.use_stderr() => e.exit(), // --help, --version
        // One line, as memcached's own refusals are; --help has the details.
        Err(CliError::Clap(e)) => {
            eprintln!("larder: {}", larder::config::clap_line(&e));
            std::process::exit(2);
        }
        Err(CliError::Line(e)) => {
            eprintln!("larder: {e}");
            std::process::exit(2);
        }
    };
    if cli.license {
        print!("{}\n{}", include_str!("../LICENSE"), include_str!("../LICENSE-THIRD-PARTY"));
        return Ok(());
    }
    let config = match Config::from_cli(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("larder: {e}");
            std::process::exit(2);
        }
    };
    // Certificates are read before the ports are bound (a client that finds the port open
    // finds the certificates read) and before detaching (a bad one is one line on the terminal).
    let tls = match config.tls.enabled.then(|| Tls::load(&config.tls)).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("larder: {e}");
            std::process::exit(2);
        }
    };
    // A state file that could never be saved is found now, not at the first stop.
    if let Some(path) = &config.memory_file
        && let Err(e) = larder::persist::check_writable(path)
    {
        eprintln!("larder: -e {}: {e}", path.display());
        std::process::exit(2);
    }
    // -S: libsasl2 finds its configuration as memcached's does, or the server does not start.
    if config.sasl
        && let Err(e) = larder::sasl::init()
    {
        eprintln!("{e}");
        std::process::exit(1);
    }
    // A source that cannot be reached is one line on the terminal, not a cold start.
    if let Some(source) = &config.warm_from
        && let Err(e) = larder::persist::warm::connect(source)
    {
        eprintln!("larder: --warm-from {source}: {e}");
        std::process::exit(1);
    }
    // Bind before detaching, so a port in use is reported on the terminal.
    let mut listeners = Vec::new();
    for &larder::config::Listen { addr, tls } in &config.listen {
        match std::net::TcpListener::bind(addr).and_then(|l| deepen_backlog(l, config.listen_backlog)) {
            Ok(l) => listeners.push(Bound::Tcp(l, tls)),
            Err(e) => {
                eprintln!("larder: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    if let Some(addr) = &config.http {
        match std::net::TcpListener::bind(addr.as_str()) {
            Ok(l) => listeners.push(Bound::Http(l)),
            Err(e) => {
                eprintln!("larder: --http: cannot listen on {addr}: {e}");
                std::process::exit(1);
            }
        }
    }
    let _socket_file = match &config.unix_socket {
        Some(path) => match bind_unix(path, config.unix_mask, config.listen_backlog) {
            Ok(l) => {
                listeners.push(Bound::Unix(l));
                Some(SocketFile(path.clone()))
            }
            Err(e) => {
                eprintln!("larder: cannot listen on {}: {e}", path.display());
                std::process::exit(1);
            }
        },
        None => None,
    };
    let log_file = match cli.log_file.as_deref().map(daemon::LogFile::open).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("larder: --log-file: {e}");
            std::process::exit(2);
        }
    };
    if cli.daemon {
        daemon::detach().context("detaching (-d)")?;
    }
    if cli.enable_coredumps
        && let Err(e) = daemon::enable_coredumps()
    {
        eprintln!("larder: -r: {e}");
        std::process::exit(1);
    }
    if cli.lock_memory
        && let Err(e) = daemon::lock_memory()
    {
        eprintln!("larder: {e}");
    }
    if let Some(user) = &cli.user
        && let Err(e) = daemon::drop_privileges(user)
    {
        eprintln!("larder: {e}");
        std::process::exit(1);
    }
    let _pidfile =
        cli.pidfile.as_deref().map(daemon::PidFile::create).transpose().context("writing the pid file (-P)")?;
    init_logging(config.verbose, cli.log_format, log_file.clone());
    // This thread accepts and runs the background tasks; connections run on `-t` worker
    // threads of their own (see `server`).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(serve(config, tls, listeners, log_file))
}

/// glibc gives each thread that allocates its own arena; an item allocated on one worker
/// and evicted on another leaves free chunks spread over arenas, which cost about 10% of
/// `-m` in RSS. With one arena RSS stays at `-m` plus a fixed overhead (measured: 74.5 MB
/// against 82 MB at -m 64), and each thread's tcache keeps the lock off the hot path.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; it runs before any other thread
    // exists, and a failure (return 0) just leaves the default.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

fn init_logging(verbose: u8, format: LogFormat, file: Option<daemon::LogFile>) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    match (format, file) {
        (LogFormat::Text, None) => builder.with_writer(std::io::stderr).init(),
        (LogFormat::Text, Some(f)) => builder.with_writer(f).init(),
        (LogFormat::Json, None) => builder.json().with_writer(std::io::stderr).init(),
        (LogFormat::Json, Some(f)) => builder.json().with_writer(f).init(),
    }
}

/// std listens with a queue of 128; a storm of connects (2,000 TLS clients at once) then
/// loses SYNs and waits out the client's retry. Listening again sets `-b` (memcached's
/// 1,024 by default).
fn deepen_backlog<L: std::os::fd::AsRawFd>(l: L, backlog: i32) -> std::io::Result<L> {
    // SAFETY: `listen` on a socket this function owns (through `l`) for the whole call.
    if unsafe { libc::listen(l.as_raw_fd(), backlog) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(l)
}

/// A listening socket bound before the runtime starts (a TCP one with whether it serves TLS).
enum Bound {
    Tcp(std::net::TcpListener, bool),
    Unix(std::os::unix::net::UnixListener),
    /// `--http`'s.
    Http(std::net::TcpListener),
}

/// Binds the `-s` socket with `-a`'s permissions, replacing a stale socket file left by
/// an earlier run (never a file of another kind).
fn bind_unix(path: &std::path::Path, mask: u32, backlog: i32) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(path)?;
    }
    let l = deepen_backlog(std::os::unix::net::UnixListener::bind(path)?, backlog)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mask))?;
    Ok(l)
}

/// Removes the `-s` socket file on a clean exit.
struct SocketFile(std::path::PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn serve(
    config: Config,
    tls: Option<Tls>,
    bound: Vec<Bound>,
    log_file: Option<daemon::LogFile>,
) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let mut listeners: Vec<Listener> = Vec::new();
    let mut http = None;
    for b in bound {
        match b {
            Bound::Tcp(l, tls) => {
                l.set_nonblocking(true)?;
                let l = TcpListener::from_std(l)?;
                info!(addr = %l.local_addr()?, tls, "listening");
                listeners.push(if tls { Listener::Tls(l) } else { Listener::Tcp(l) });
            }
            Bound::Unix(l) => {
                l.set_nonblocking(true)?;
                let l = tokio::net::UnixListener::from_std(l)?;
                info!(socket = ?l.local_addr()?.as_pathname(), "listening");
                listeners.push(l.into());
            }
            Bound::Http(l) => {
                l.set_nonblocking(true)?;
                let l = TcpListener::from_std(l)?;
                info!(http = %l.local_addr()?, "serving metrics and the live page");
                http = Some(l);
            }
        }
    }
    info!(
        version = larder::exec::VERSION,
        memory_limit = config.memory_limit,
        max_item_size = config.max_item_size,
        max_connections = config.max_connections,
        threads = config.threads,
        "larder starting"
    );
    if !config.inert_flags.is_empty() {
        info!(flags = ?config.inert_flags, "memcached flags accepted; Larder has no such machinery");
    }
    if !config.ignored_options.is_empty() {
        info!(options = ?config.ignored_options, "memcached -o tuning options accepted; Larder has no such machinery");
    }
    let mut ctx = Ctx::new(config, Clock::system());
    if let Some(tls) = tls {
        ctx = ctx.with_tls(tls);
    }
    let ctx = Arc::new(ctx);
    tokio::spawn(on_sighup(hup, log_file, ctx.clone()));
    if ctx.persist.is_some() {
        // Loaded before the first accept: a client that connects (queued meanwhile) finds
        // the cache warm.
        let c = ctx.clone();
        tokio::task::spawn_blocking(move || c.persist.as_ref().map(|p| p.load(&c.store))).await?;
        if ctx.config.snapshot_interval > 0 {
            snapshots(ctx.clone()).context("starting the snapshot thread")?;
        }
    }
    if let Some(source) = ctx.config.warm_from.clone() {
        let c = ctx.clone();
        let timeout = ctx.config.warm_from_timeout;
        let start = std::time::Instant::now();
        info!(%source, "warming from a running server");
        match tokio::task::spawn_blocking(move || larder::persist::warm::warm_from(&c.store, &source, timeout)).await? {
            Ok(w) => info!(
                items = w.items,
                bytes = w.bytes,
                listed = w.listed,
                missed = w.missed,
                too_large = w.too_large,
                no_room = w.no_room,
                secs = start.elapsed().as_secs_f64(),
                "warmed"
            ),
            Err(e) => tracing::warn!(%e, items = ctx.store.len(), "warming stopped; serving what was copied"),
        }
    }
    let http = http.map(|l| tokio::spawn(larder::http::serve(l, ctx.clone())));
    larder::server::run(listeners, ctx.clone(), shutdown).await;
    if let Some(http) = http {
        http.abort();
    }
    if ctx.persist.is_some() {
        // Every connection is closed: the save holds every write a client was answered for.
        let c = ctx.clone();
        tokio::task::spawn_blocking(move || c.persist.as_ref().map(|p| p.save(&c.store))).await?;
    }
    info!("stopped");
    Ok(())
}

/// `-o snapshot_interval`: saves the state file that often while serving, on a thread of
/// its own at a lower CPU priority (nice 10), so that on a busy machine the workers come
/// first and the save takes the time they leave (see docs/restarts.md). A save longer than
/// the interval delays the next one rather than overlapping it; the final save on stop
/// waits for one under way.
fn snapshots(ctx: Arc<Ctx>) -> std::io::Result<()> {
    let every = Duration::from_secs(u64::from(ctx.config.snapshot_interval));
    std::thread::Builder::new().name("snapshot".into()).spawn(move || {
        // SAFETY: setpriority on this thread (a Linux thread id) only; no memory is passed.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
        loop {
            std::thread::sleep(every);
            if let Some(p) = &ctx.persist {
                let _ = p.save(&ctx.store);
            }
        }
    })?;
    Ok(())
}

/// SIGHUP reopens the log file (for logrotate) and, with `-Z`, reads the certificates
/// again as `refresh_certs` does; never fatal.
async fn on_sighup(mut hup: tokio::signal::unix::Signal, file: Option<daemon::LogFile>, ctx: Arc<Ctx>) {
    while hup.recv().await.is_some() {
        match ctx.tls.as_ref().map(|tls| tls.reload()) {
            Some(Ok(())) => info!("SIGHUP: certificates reloaded"),
            Some(Err(e)) => tracing::warn!(%e, "SIGHUP: cannot reload the certificates; keeping the ones in use"),
            None => {}
        }
        match file.as_ref().map(daemon::LogFile::reopen) {
            Some(Ok(())) => info!("SIGHUP: log file reopened"),
            Some(Err(e)) => tracing::warn!(%e, "SIGHUP: cannot reopen the log file"),
            None if ctx.tls.is_none() => info!("SIGHUP received; logging to stderr, nothing to reopen"),
            None => {}
        }
    }
}

/// Installs the SIGINT, SIGTERM and SIGUSR1 handlers now; the future completes on any of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // memcached's graceful stop (with -e, the one that saves).
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => info!("SIGINT received"),
            _ = term.recv() => info!("SIGTERM received"),
            _ = usr1.recv() => info!("SIGUSR1 received"),
        }
    })
}
