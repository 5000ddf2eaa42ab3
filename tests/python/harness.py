"""Server process management and raw-socket helpers for the real-client suite.

The suite runs against Larder (env LARDER_BIN, default target/debug/larder) or, with
LARDER_TEST_SERVER=memcached, against /usr/bin/memcached, which is the oracle the
suite is validated on. Every server is started on a free ephemeral port of 127.0.0.1
and stopped by its own PID.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MEMCACHED_BIN = "/usr/bin/memcached"
# One item may be at most 1 MiB, like memcached's default `-I 1m`.
ITEM_SIZE_MAX = 1024 * 1024
START_TIMEOUT = 10.0
SOCKET_TIMEOUT = 10.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """A missing dependency fails under CI and skips elsewhere."""
    if in_ci():
        pytest.fail(f"missing dependency under CI: {what}", pytrace=False)
    pytest.skip(f"missing dependency: {what}", allow_module_level=True)


def stop_checked(proc, what: Optional[str] = None) -> None:
    """Stops `proc` (a Server, a Nutcracker: anything with alive(), log() and stop()), and
    fails the test if it had died before; `what` names it in the failure (by default, a
    server process by its pid)."""
    alive, log = proc.alive(), proc.log()
    proc.stop()
    if not alive:
        what = what or f"server process {proc.pid}"
        pytest.fail(f"{what} died while in use; log:\n{log}", pytrace=False)


def require_module(name: str):
    """Imports `name`; a missing module fails under CI and skips elsewhere."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"python module {name!r} ({e})")


def server_kind() -> str:
    kind = os.environ.get("LARDER_TEST_SERVER", "larder").strip().lower() or "larder"
    if kind not in ("larder", "memcached"):
        raise pytest.UsageError(f"LARDER_TEST_SERVER must be larder or memcached, not {kind!r}")
    return kind


def server_binary() -> str:
    if server_kind() == "memcached":
        return MEMCACHED_BIN
    path = Path(os.environ.get("LARDER_BIN") or "target/debug/larder")
    if not path.is_absolute():
        path = REPO_ROOT / path
    return str(path)


def server_command(port: int, memory_mib: int = 64, listen: str = "127.0.0.1",
                   extra_args: Sequence[str] = ()) -> list[str]:
    """The command line; `listen` is `-l`'s value, `extra_args` go last (`-Z -o ssl_...`)."""
    binary = server_binary()
    args = [binary, "-p", str(port), "-l", listen, "-m", str(memory_mib),
            "-c", "1024", "-t", "4", "-I", "1m"]
    if server_kind() == "memcached":
        args += ["-U", "0"]  # no UDP
        if os.geteuid() == 0:
            args += ["-u", "root"]  # memcached refuses to run as root without -u
    return args + list(extra_args)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running server process; `address` is "127.0.0.1:<port>"."""

    host: str
    port: int
    proc: subprocess.Popen
    log_path: str
    kind: str = field(default_factory=server_kind)
    # With a TLS server: the client context .stats() and .raw() connect with.
    tls: Optional[ssl.SSLContext] = None
    # With --http: "127.0.0.1:<port>" of the HTTP listener.
    http: Optional[str] = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stats(self, *args: str) -> dict[str, str]:
        return stats(self.host, self.port, *args, tls=self.tls)

    def stat(self, name: str) -> int:
        return int(self.stats()[name])

    def raw(self, data: bytes, until: bytes = b"\r\n") -> bytes:
        return raw(self.host, self.port, data, until, tls=self.tls)

    def stop_by_signal(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Sends `sig` to this process (by its PID) and waits for it to exit; returns its
        exit status. The log stays readable (.log()) until .stop()."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            pytest.fail(f"server process {self.pid} did not exit within {timeout} s of "
                        f"signal {sig}; log:\n{self.log()}", pytrace=False)

    def stop(self) -> None:
        """Stops this process (by its PID) and reaps it."""
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this PID only
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


_started: list["Server"] = []


@atexit.register
def _stop_all() -> None:
    for srv in _started:
        srv.stop()


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the test process dies, so no server outlives it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort (not Linux)
        pass


def _wait_accepting(proc: subprocess.Popen, port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def start_http_server(extra_args: Sequence[str] = ()) -> Server:
    """Starts Larder with `--http` on a free port of 127.0.0.1 (and `extra_args`), and waits
    until `/healthz` answers; the Server's `http` is the listener's address."""
    import urllib.request

    http_port = free_port()
    srv = start_server(extra_args=["--http", f"127.0.0.1:{http_port}", *extra_args])
    srv.http = f"127.0.0.1:{http_port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(f"http://{srv.http}/healthz", timeout=2).read()
            return srv
        except OSError:
            assert time.monotonic() < deadline, f"--http never answered; log:\n{srv.log()}"
            time.sleep(0.05)


def start_server(memory_mib: int = 64, attempts: int = 5, extra_args: Sequence[str] = (),
                 listen: Union[str, Callable[[int], str]] = "127.0.0.1",
                 tls: Optional[ssl.SSLContext] = None, port: Optional[int] = None,
                 env: Optional[dict[str, str]] = None) -> Server:
    """Starts the server under test on a free port, retrying on another port if it
    does not come up (for example because the port was taken in between).

    `extra_args` are appended to the command line; `listen` is `-l`'s value, or a
    function of the chosen port that returns it (called once per attempt); `tls` is the
    client context the returned Server's .stats() and .raw() use; `port`, if given, is
    used instead of a free one (every attempt), to restart a server where it was; `env`
    adds variables to the server's environment (`SASL_CONF_PATH`)."""
    binary = server_binary()
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        hint = "" if server_kind() == "memcached" else " (run `cargo build` or set LARDER_BIN)"
        missing(f"server binary {binary}{hint}")
    errors = []
    fixed_port = port
    for _ in range(attempts):
        port = fixed_port or free_port()
        fd, log_path = tempfile.mkstemp(prefix="larder-test-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            listen_arg = listen(port) if callable(listen) else listen
            proc = subprocess.Popen(server_command(port, memory_mib, listen_arg, extra_args),
                                    stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})},
                                    preexec_fn=_die_with_parent)
        server = Server("127.0.0.1", port, proc, log_path, tls=tls)
        _started.append(server)
        if _wait_accepting(proc, port, time.monotonic() + START_TIMEOUT):
            return server
        errors.append(f"port {port}: exit={proc.poll()} log={server.log()!r}")
        server.stop()
    pytest.fail(f"{binary} did not start accepting connections:\n" + "\n".join(errors),
                pytrace=False)


def _connect(host: str, port: int, tls: Optional[ssl.SSLContext] = None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=SOCKET_TIMEOUT)
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def read_exactly(sock: socket.socket, n: int) -> bytes:
    """Reads exactly `n` bytes (fails if the connection closes first)."""
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f"connection closed after {len(buf)} of {n} bytes"
        buf += chunk
    return buf


def read_until(sock: socket.socket, until: bytes) -> bytes:
    buf = b""
    while not buf.endswith(until):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"server closed the connection; got {buf!r}")
        buf += chunk
    return buf


def raw(host: str, port: int, data: bytes, until: bytes = b"\r\n",
        tls: Optional[ssl.SSLContext] = None) -> bytes:
    """Sends `data` on a fresh connection (TLS with the client context `tls`) and reads
    until the reply ends with `until`."""
    with _connect(host, port, tls) as s:
        s.sendall(data)
        return read_until(s, until)


def stats(host: str, port: int, *args: str, tls: Optional[ssl.SSLContext] = None) -> dict[str, str]:
    """`stats [args]` as a dict of name -> value (strings as sent by the server)."""
    cmd = " ".join(("stats",) + args).encode() + b"\r\n"
    reply = raw(host, port, cmd, until=b"END\r\n", tls=tls)
    result = {}
    for line in reply.split(b"\r\n"):
        if line.startswith(b"STAT "):
            _, name, value = line.decode("utf-8", "replace").split(" ", 2)
            result[name] = value
        elif line and line != b"END":
            raise AssertionError(f"unexpected line in stats reply: {line!r}")
    return result
