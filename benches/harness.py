"""The benchmark harness shared by scripts/bench and scripts/membench.

Python 3 standard library only. What both scripts need to run servers side by side:

- free_port(): a 127.0.0.1 port nothing listens on, below the kernel's ephemeral range
  (so no client socket holds it either);
- Placement: where servers and clients run: with 2 cores or more the servers get the
  first half of the CPUs this process may use and the clients the rest (taskset), and
  SCHED_FIFO priority 10 (chrt) for both when that is allowed and asked for;
- start_server() / Server: a Larder, memcached or floor process on a free port, retried
  on another port when it does not come up, waited for until it answers `version`;
  stop() by PID (SIGTERM, then SIGKILL after 10 s);
- cleanup: every process started here is stopped at exit, on Ctrl-C, SIGTERM, SIGHUP
  or SIGALRM (install_signal_handlers), and the kernel kills it if this process dies
  without cleaning up (PR_SET_PDEATHSIG), so no server or client is ever left behind;
- cpu_seconds(pid) (utime+stime from /proc/<pid>/stat, all threads), memory(pid)
  (VmRSS and VmHWM from /proc/<pid>/status), stats(port) / parse_stats();
- TLS: make_certs(dir) (a CA and a server certificate for 127.0.0.1, EC P-256, by the
  openssl CLI), tls_server_args() (`-Z -o ssl_chain_cert=...,ssl_key=...`, the same
  for Larder and memcached) and the readiness check over TLS (start_server's `tls`);
- raise_nofile(n): the open-file limit this process and its children get;
- the paired-ratio arithmetic: median(), ratio() and paired(): each round's
  server/baseline ratio (the two ran back to back in it), median and range over rounds.
"""

import atexit
import ctypes
import os
import random
import re
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

PROG = os.path.basename(sys.argv[0]) or "harness"


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


# --- processes --------------------------------------------------------------------------

_children = {}  # pid -> Popen, every process started here and not yet reaped

_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None


def _die_with_parent():
    # In the child between fork and exec: the kernel sends it SIGKILL when the thread
    # that started it exits, which catches even a SIGKILL of this process. chrt and
    # taskset exec the server, which keeps the setting.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(argv, **kw):
    """Popen that registers the child for cleanup and ties its life to ours."""
    p = subprocess.Popen(argv, preexec_fn=_die_with_parent, **kw)
    _children[p.pid] = p
    return p


def stop_pid(pid, grace=10.0):
    """Stops a process started here: SIGTERM, then SIGKILL after `grace` seconds."""
    p = _children.get(pid)
    if p is None:
        return
    try:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=grace)
    finally:
        _children.pop(pid, None)


def stop_all():
    for pid in list(_children):
        try:
            stop_pid(pid)
        except Exception:  # keep stopping the others
            pass


atexit.register(stop_all)


def run(argv, timeout, **kw):
    """subprocess.run for clients (load generator, memcslap): killed on timeout, Ctrl-C
    or our death. Returns the CompletedProcess, or None when it timed out."""
    p = spawn(argv, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
        return subprocess.CompletedProcess(argv, p.returncode, out, err)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        _children.pop(p.pid, None)


def install_signal_handlers(timeout=None):
    """SIGTERM, SIGHUP and SIGALRM unwind as SystemExit (so `with` blocks and atexit stop
    the servers); Ctrl-C already unwinds as KeyboardInterrupt. With `timeout`, SIGALRM
    fires after that many seconds."""

    def give_up(signum, _frame):
        raise SystemExit(f"{PROG}: stopped by signal {signum}")

    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(s, give_up)
    if timeout:
        signal.alarm(int(timeout))


# --- ports ------------------------------------------------------------------------------


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A 127.0.0.1 port below the ephemeral range that nothing listens on and that can be
    bound now (another process may still take it first: start_server retries)."""
    low = _ephemeral_low()
    for _ in range(100):
        port = random.randrange(10000, max(10001, low))
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return port
    raise SystemExit(f"{PROG}: no free port")


# --- placement --------------------------------------------------------------------------


def _cpu_list(cpus):
    """[0] -> "0", [0, 1, 2] -> "0-2", [0, 2] -> "0,2"."""
    if not cpus:
        return "-"
    parts, start, prev = [], cpus[0], cpus[0]
    for c in cpus[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(parts)


def rt_allowed():
    try:
        return subprocess.run(["chrt", "-f", "10", "true"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False


class Placement:
    """Where servers and clients run.

    pin: with 2 or more usable CPUs, servers on the first half of them and clients on the
    rest (taskset); with fewer, nothing is pinned. rt: "auto" (SCHED_FIFO 10 when chrt
    allows it), True (insist: SystemExit when not allowed) or False (normal scheduling).
    """

    def __init__(self, pin=True, rt=False):
        self.sched = []
        self.sched_desc = "normal scheduling"
        if rt:
            if rt_allowed():
                self.sched = ["chrt", "-f", "10"]
                self.sched_desc = "SCHED_FIFO 10 (chrt) for servers and clients"
            elif rt is True:
                raise SystemExit(f"{PROG}: --rt: chrt -f is not allowed here")
        cpus = sorted(os.sched_getaffinity(0))
        self.cores = len(cpus)
        if pin and self.cores >= 2:
            half = self.cores // 2
            self.server_cpus, self.client_cpus = cpus[:half], cpus[half:]
            self.server_prefix = self.sched + ["taskset", "-c", _cpu_list(self.server_cpus)]
            self.client_prefix = self.sched + ["taskset", "-c", _cpu_list(self.client_cpus)]
            self.client_threads = len(self.client_cpus)
        else:
            self.server_cpus = self.client_cpus = []
            self.server_prefix = self.client_prefix = list(self.sched)
            self.client_threads = 1

    @property
    def server_desc(self):
        return _cpu_list(self.server_cpus)

    @property
    def client_desc(self):
        return _cpu_list(self.client_cpus)


# --- servers ----------------------------------------------------------------------------


def larder_argv(binary, port, threads, memory_mb, conns, extra=()):
    return [binary, "-l", "127.0.0.1", "-p", str(port), "-t", str(threads), "-m", str(memory_mb),
            "-c", str(conns), *extra]


def memcached_argv(binary, port, threads, memory_mb, conns, extra=()):
    argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-t", str(threads), "-m", str(memory_mb),
            "-c", str(conns), "-U", "0"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]  # memcached refuses to run as root otherwise
    return argv + list(extra)


def floor_argv(binary, port, threads, keys, value_size, extra=()):
    return [binary, "--port", str(port), "--threads", str(threads), "--keys", str(keys),
            "--value-size", str(value_size), *extra]


def answers_version(port, timeout=1.0, tls=None):
    """Whether 127.0.0.1:port answers `version`; over TLS when `tls` (an ssl.SSLContext)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            s = tls.wrap_socket(raw, server_hostname="127.0.0.1") if tls else raw
            s.sendall(b"version\r\n")
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(256)
                if not chunk:
                    break
                buf += chunk
            return buf.startswith(b"VERSION")
    except (OSError, ssl.SSLError):
        return False


class Server:
    """One server process on 127.0.0.1:port; stop() or `with` stops it by PID."""

    def __init__(self, name, argv_for_port, prefix=(), ready_timeout=10.0, tls=None):
        self.name = name
        self.port = free_port()
        self.argv = list(prefix) + list(argv_for_port(self.port))
        self.log = tempfile.TemporaryFile()
        env = {k: v for k, v in os.environ.items() if k != "RUST_LOG"}
        self.proc = spawn(self.argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env)
        self.pid = self.proc.pid
        deadline = time.time() + ready_timeout
        self.ready = False
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            if answers_version(self.port, tls=tls):
                self.ready = True
                break
            time.sleep(0.1)
        if not self.ready:
            self.stop()

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def mem(self):
        return memory(self.pid)

    def cpu(self):
        return cpu_seconds(self.pid)

    def stats(self, arg=None):
        return stats(self.port, arg)

    def stop(self):
        stop_pid(self.pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_server(name, argv_for_port, prefix=(), tries=5, ready_timeout=10.0, tls=None):
    """Starts `argv_for_port(port)` (behind `prefix`, e.g. Placement.server_prefix) on a
    free port, trying another port when it does not answer `version` (another process
    may take the port first); SystemExit with its output after `tries` failures. `tls`:
    an ssl.SSLContext (tls_client_context) for a server that serves TLS."""
    for attempt in range(1, tries + 1):
        s = Server(name, argv_for_port, prefix, ready_timeout, tls)
        if s.ready:
            return s
        if attempt < tries:
            log(f"{name} did not start on port {s.port}; trying another port")
    raise SystemExit(f"{PROG}: {name} did not start:\n{s.output()}")


# --- TLS --------------------------------------------------------------------------------


def make_certs(directory):
    """A CA and a server certificate it signs, for 127.0.0.1 and localhost, EC P-256 keys,
    valid for two days, made by the openssl CLI into `directory`. Returns the paths:
    {"ca", "chain", "key"}. The directory and files are readable by everyone, so a
    memcached that drops to another user (-u) can read them too."""
    if subprocess.run(["openssl", "version"], capture_output=True).returncode != 0:
        raise SystemExit(f"{PROG}: the openssl command is needed to make the TLS certificates")
    path = lambda name: os.path.join(directory, name)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with open(path("server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", path("ca.key"), "-out", path("ca.pem"), "-days", "2",
         "-subj", "/CN=Larder bench CA"],
        ["openssl", "req", *ec, "-keyout", path("server.key"), "-out", path("server.csr"), "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
         "-CAcreateserial", "-out", path("server.pem"), "-days", "2", "-extfile", path("server.ext")],
    ]
    for argv in steps:
        p = subprocess.run(argv, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"{PROG}: {' '.join(argv[:3])} failed:\n{p.stderr}")
    os.chmod(directory, 0o755)
    for name in ("ca.pem", "server.pem", "server.key"):
        os.chmod(path(name), 0o644)
    return {"ca": path("ca.pem"), "chain": path("server.pem"), "key": path("server.key")}


def tls_server_args(certs):
    """The options that make Larder or memcached serve TLS with `certs` (make_certs)."""
    return ["-Z", "-o", f"ssl_chain_cert={certs['chain']},ssl_key={certs['key']}"]


def tls_client_context(certs):
    """An ssl.SSLContext that trusts only the CA of `certs`, for readiness checks."""
    return ssl.create_default_context(cafile=certs["ca"])


def raise_nofile(n):
    """Raises this process's open-file limit (which its children inherit) to at least `n`
    where the hard limit allows (root may raise that too); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(hard, n)) if hard != resource.RLIM_INFINITY else (n, hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- measurements -----------------------------------------------------------------------


def cpu_seconds(pid):
    """(user, system) CPU seconds of a process, all threads, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
    return int(fields[11]) / tick, int(fields[12]) / tick


def memory(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def parse_stats(reply):
    """`STAT name value` lines to a dict; numeric values as int."""
    out = {}
    for line in reply.split(b"\r\n"):
        p = line.split(b" ", 2)
        if len(p) == 3 and p[0] == b"STAT":
            v = p[2].decode(errors="replace")
            out[p[1].decode()] = int(v) if v.isdigit() else v
    return out


def stats(port, arg=None, timeout=30):
    """`stats [arg]` on a connection of its own."""
    cmd = b"stats\r\n" if not arg else b"stats " + arg.encode() + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(cmd)
        buf = b""
        while not buf.endswith(b"END\r\n"):
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    return parse_stats(buf)


def machine():
    """`2 cores, AMD EPYC, 24 GiB`."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = f"{int(line.split()[1]) / 1048576:.0f} GiB"
                    break
    except OSError:
        pass
    return f"{len(os.sched_getaffinity(0))} cores, {model}, {mem}"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].strip() if out.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def cargo_executable(bench):
    """Builds `cargo bench --bench <bench> --no-run` and returns its executable's path."""
    import json

    p = subprocess.run(["cargo", "bench", "--quiet", "--bench", bench, "--no-run", "--message-format=json"],
                       cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    exe = None
    for line in p.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("executable") and msg.get("target", {}).get("name") == bench:
            exe = msg["executable"]
    return exe if exe and os.access(exe, os.X_OK) else None


# --- arithmetic -------------------------------------------------------------------------


def num(s):
    """A figure from a report line as float, None for `NA` or nothing."""
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def median(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def ratio(x, y):
    """x / y to two decimals, `-` when either is missing or y is 0."""
    if x is None or y is None or y == 0:
        return "-"
    return f"{x / y:.2f}"


def paired_ratios(by_round, base_by_round):
    """Each round's ratio, over the rounds in which both ran (and the base is not 0)."""
    out = []
    for r in sorted(by_round):
        x, y = by_round[r], base_by_round.get(r)
        if x is None or y is None or y == 0:
            continue
        out.append(x / y)
    return out


def paired(by_round, base_by_round):
    """`median (low-high)` of each round's ratio, `-` when no round has both."""
    rs = paired_ratios(by_round, base_by_round)
    if not rs:
        return "-"
    return f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})"


def fmt(v, spec):
    """format(v, spec), `-` for a missing value."""
    return "-" if v is None else format(v, spec)


_WORD = re.compile(r"\S+")


def words(s):
    """`"a b,c"` -> ["a", "b", "c"]: lists given on the command line."""
    return _WORD.findall(s.replace(",", " "))
