"""Helpers for test_multinode.py: a cluster of server nodes started through harness.py,
killed and restarted by PID on the same port, and a twemproxy (nutcracker) process in
front of them. Everything listens on 127.0.0.1 only and is stopped by its own PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import harness

NUTCRACKER_CANDIDATES = ("/usr/sbin/nutcracker", "/usr/bin/nutcracker")


def start_node_on(port: int, timeout: float = 10.0) -> harness.Server:
    """Starts the server under test on `port` (a node coming back on its old address).
    Retries while the port is still busy, up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    errors = []
    while True:
        fd, log_path = tempfile.mkstemp(prefix="larder-node-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            proc = subprocess.Popen(harness.server_command(port), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=harness._die_with_parent)
        server = harness.Server("127.0.0.1", port, proc, log_path)
        harness._started.append(server)
        if harness._wait_accepting(proc, port, min(deadline, time.monotonic() + 5)):
            return server
        errors.append(f"exit={proc.poll()} log={server.log()!r}")
        server.stop()
        if time.monotonic() >= deadline:
            pytest.fail(f"{harness.server_binary()} did not come back on port {port}:\n"
                        + "\n".join(errors), pytrace=False)
        time.sleep(0.2)


class Cluster:
    """Three (or `n`) nodes of the server under test, each on its own free port."""

    def __init__(self, n: int = 3):
        self.nodes: list[harness.Server] = []
        self.killed: set[int] = set()  # indexes killed on purpose and not restarted yet
        try:
            for _ in range(n):
                self.nodes.append(harness.start_server())
        except BaseException:
            self.stop()
            raise

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, i: int) -> harness.Server:
        return self.nodes[i]

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.nodes]

    def curr_items(self) -> list[int]:
        return [n.stat("curr_items") for n in self.nodes]

    def kill(self, i: int) -> harness.Server:
        """SIGKILL to node i's PID (a crash, no graceful shutdown); waits until it is gone."""
        node = self.nodes[i]
        os.kill(node.pid, signal.SIGKILL)
        node.proc.wait(timeout=5)
        self.killed.add(i)
        return node

    def freeze(self, i: int) -> harness.Server:
        """SIGSTOP to node i's PID: it keeps its sockets (the kernel still accepts
        connections and data) but never answers. kill() returns before every thread has
        stopped, so this waits until /proc shows all of them stopped."""
        node = self.nodes[i]
        os.kill(node.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not all(state == "T" for state in thread_states(node.pid)):
            assert time.monotonic() < deadline, f"node {i} did not stop: {thread_states(node.pid)}"
            time.sleep(0.001)
        return node

    def thaw(self, i: int) -> None:
        """SIGCONT to node i's PID (harmless if it is running)."""
        node = self.nodes[i]
        if node.alive():
            os.kill(node.pid, signal.SIGCONT)

    def restart(self, i: int) -> harness.Server:
        """Starts node i again, empty, on the same port it had."""
        old = self.nodes[i]
        assert not old.alive(), "restart() is for a node that was killed"
        old.stop()  # reaps and removes the old log
        self.nodes[i] = start_node_on(old.port)
        self.killed.discard(i)
        return self.nodes[i]

    def unexpected_deaths(self) -> list[tuple[int, str]]:
        """(pid, log) of every node that died without kill()."""
        return [(n.pid, n.log()) for i, n in enumerate(self.nodes)
                if i not in self.killed and not n.alive()]

    def holders(self, keys: list[str]) -> dict[str, set[int]]:
        """Asks every live node directly (raw `get`) which keys it holds:
        key -> indexes of the nodes that have it (keys nobody has are left out)."""
        where: dict[str, set[int]] = {}
        for i, node in enumerate(self.nodes):
            if node.alive():
                for k in raw_get_multi(node.host, node.port, keys):
                    where.setdefault(k, set()).add(i)
        return where

    def which_node(self, keys: list[str]) -> dict[str, int]:
        """key -> index of the one live node that holds it; a key on two nodes is an error."""
        where = {}
        for k, held in self.holders(keys).items():
            assert len(held) == 1, f"key {k!r} is on nodes {sorted(held)}"
            where[k] = held.pop()
        return where

    def per_node(self, where: dict[str, int]) -> list[int]:
        """How many of the keys in a which_node() answer each node holds."""
        return [sum(1 for i in where.values() if i == n) for n in range(len(self.nodes))]

    def stop(self) -> None:
        for n in self.nodes:  # SIGTERM to every node first: they shut down in parallel
            if n.alive():
                n.proc.terminate()
        for n in self.nodes:
            n.stop()


def thread_states(pid: int) -> list[str]:
    """The state letter (R, S, T, ...) of every thread of process `pid`."""
    states = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue  # the thread just exited
        states.append(stat.rsplit(")", 1)[1].split()[0])
    return states


def raw_get_multi(host: str, port: int, keys: list[str], chunk: int = 100) -> dict[str, bytes]:
    """`get k1 k2 ...` straight to one node, in chunks; returns key -> data."""
    found: dict[str, bytes] = {}
    for start in range(0, len(keys), chunk):
        part = keys[start:start + chunk]
        reply = harness.raw(host, port, ("get " + " ".join(part) + "\r\n").encode(),
                            until=b"END\r\n")
        found.update(parse_values(reply))
    return found


def parse_values(reply: bytes) -> dict[str, bytes]:
    """Parses `VALUE <key> <flags> <bytes> [<cas>]\\r\\n<data>\\r\\n ... END\\r\\n`."""
    return {k: v for k, (v, _flags, _cas) in parse_values_full(reply).items()}


def parse_values_full(reply: bytes) -> dict[str, tuple[bytes, int, int | None]]:
    out: dict[str, tuple[bytes, int, int | None]] = {}
    pos = 0
    while True:
        eol = reply.index(b"\r\n", pos)
        line = reply[pos:eol]
        if line == b"END":
            assert eol + 2 == len(reply), f"bytes after END: {reply[eol + 2:]!r}"
            return out
        parts = line.split(b" ")
        assert parts[0] == b"VALUE" and len(parts) in (4, 5), f"bad line {line!r} in {reply!r}"
        n = int(parts[3])
        data = reply[eol + 2:eol + 2 + n]
        assert reply[eol + 2 + n:eol + 4 + n] == b"\r\n", f"bad data block in {reply!r}"
        out[parts[1].decode()] = (data, int(parts[2]),
                                  int(parts[4]) if len(parts) == 5 else None)
        pos = eol + 4 + n


class Conn:
    """One persistent text-protocol connection (to a node or to the proxy)."""

    def __init__(self, host: str, port: int, timeout: float = harness.SOCKET_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, until: bytes = b"\r\n") -> bytes:
        while until not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; got {self.buf!r}")
            self.buf += chunk
        end = self.buf.index(until) + len(until)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def call(self, data: bytes, until: bytes = b"\r\n") -> bytes:
        self.send(data)
        return self.read_until(until)

    def closed_by_peer(self, wait: float = 2.0) -> bool:
        """True if the peer closes the connection (EOF or reset) within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- twemproxy ---------------------------------------------------------------------------

def nutcracker_binary() -> str:
    for path in NUTCRACKER_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("nutcracker")
    if found:
        return found
    harness.missing("twemproxy binary nutcracker (Debian package nutcracker; "
                    "tests/python/run installs it as root)")
    raise AssertionError("unreachable")


def nutcracker_config(listen_port: int, servers: list[str], *, timeout_ms: int,
                      server_retry_timeout_ms: int, server_failure_limit: int,
                      hash: str = "fnv1a_64") -> str:
    """The pool configuration the tests run (and docs/multinode.md shows): ketama over node names,
    fnv1a_64 key hash (twemproxy's default), failed nodes ejected and retried."""
    lines = [
        "larder:",
        f"  listen: 127.0.0.1:{listen_port}",
        f"  hash: {hash}",
        "  distribution: ketama",
        f"  timeout: {timeout_ms}",
        "  auto_eject_hosts: true",
        f"  server_retry_timeout: {server_retry_timeout_ms}",
        f"  server_failure_limit: {server_failure_limit}",
        "  servers:",
    ]
    lines += [f"   - {addr}:1 node{i + 1}" for i, addr in enumerate(servers)]
    return "\n".join(lines) + "\n"


class Nutcracker:
    """A twemproxy process on a free 127.0.0.1 port, its stats port on 127.0.0.1 too."""

    def __init__(self, servers: list[str], *, timeout_ms: int = 500,
                 server_retry_timeout_ms: int = 1500, server_failure_limit: int = 1,
                 hash: str = "fnv1a_64"):
        binary = nutcracker_binary()
        self.dir = tempfile.mkdtemp(prefix="larder-nutcracker-")
        self.proc: subprocess.Popen | None = None
        errors = []
        for _ in range(5):
            self.port = harness.free_port()
            self.stats_port = harness.free_port()
            self.config = nutcracker_config(
                self.port, servers, timeout_ms=timeout_ms,
                server_retry_timeout_ms=server_retry_timeout_ms,
                server_failure_limit=server_failure_limit, hash=hash)
            conf = Path(self.dir, "nutcracker.yml")
            conf.write_text(self.config)
            self.log_path = str(Path(self.dir, "nutcracker.log"))
            cmd = [binary, "-c", str(conf), "-s", str(self.stats_port), "-a", "127.0.0.1",
                   "-i", "1000", "-o", self.log_path, "-p", str(Path(self.dir, "pid")),
                   "-v", "5"]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         preexec_fn=harness._die_with_parent)
            if harness._wait_accepting(self.proc, self.port, time.monotonic() + 10):
                return
            errors.append(f"port {self.port}: exit={self.proc.poll()} log={self.log()!r}")
            self._terminate()
        shutil.rmtree(self.dir, ignore_errors=True)
        pytest.fail("nutcracker did not start:\n" + "\n".join(errors), pytrace=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def raw(self, data: bytes, until: bytes = b"\r\n") -> bytes:
        return harness.raw("127.0.0.1", self.port, data, until)

    def stats(self) -> dict:
        """twemproxy's JSON stats (the stats port answers once and closes)."""
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=5) as s:
            buf = b""
            while chunk := s.recv(65536):
                buf += chunk
        return json.loads(buf)

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM to this PID only
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.dir, ignore_errors=True)
