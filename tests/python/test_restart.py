"""Warm restarts (`-e <file>`) of the real binary, with real clients: a server is filled,
stopped by a signal (it must exit 0), and started again on the same port and state file.

- Django's cache API through both backends (PyMemcacheCache and PyLibMCCache): ~500 keys
  of mixed types (so the client flags vary: text, integer, pickle, raw bytes, values of
  ~100 KB) come back equal, and a key whose 2-second timeout ran out while the server was
  down is gone.
- pymemcache: `gets` shows the same CAS after the restart, a `cas` with the token taken
  before it is STORED, new CAS values go on above the restored ones, and the remaining
  TTL (`mg <key> t v`) is kept, not restarted.
- SIGUSR1 saves too.
- A state file with a flipped byte, or cut short, is set aside as `<file>.bad`; the
  server starts empty, serves, counts `state_file_load_failures 1`, and saves afresh.

Larder saves on SIGTERM, SIGINT, SIGUSR1 and `shutdown`; memcached 1.6 (its `-e` keeps
the item memory itself in the file, which belongs on tmpfs) only on SIGUSR1. So against
memcached (LARDER_TEST_SERVER=memcached) the state file is in /dev/shm, every stop is
SIGUSR1, and the restart waits for the wall clock's next second: memcached 1.6.18 refuses
a metadata file whose stop_time is not in the past ("restart incompatible due to setting
for [stop_time]") and starts empty. The corrupt-file tests are Larder only: memcached
has no `.bad` file or `state_file_*` stats (and aborts on a corrupt metadata file).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from contextlib import contextmanager

import pytest

import harness
from django_setup import DJANGO_BACKENDS, setup_django

pymemcache = harness.require_module("pymemcache")
from pymemcache.client.base import Client  # noqa: E402

KB = 1024
LARDER_ONLY = pytest.mark.skipif(
    harness.server_kind() == "memcached",
    reason="Larder only: memcached has no .bad file or state_file_* stats")


def save_signal() -> int:
    """The graceful stop that saves: SIGTERM for Larder, SIGUSR1 for memcached."""
    return signal.SIGUSR1 if harness.server_kind() == "memcached" else signal.SIGTERM


@pytest.fixture
def state_file():
    """A state file path in a folder of its own (on tmpfs for memcached), removed after."""
    base = "/dev/shm" if harness.server_kind() == "memcached" else None
    if base is not None and not os.path.isdir(base):
        harness.missing("/dev/shm (tmpfs) for memcached's -e")
    folder = tempfile.mkdtemp(prefix="larder-restart-", dir=base)
    os.chmod(folder, 0o755)  # memcached as root may drop to another user
    try:
        yield os.path.join(folder, "state")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def start(state: str, port: int | None = None) -> harness.Server:
    return harness.start_server(extra_args=["-e", state], port=port)


def stop(srv: harness.Server, sig: int) -> None:
    """Stops `srv` with `sig`: it must exit 0 (having saved)."""
    assert srv.alive(), f"server {srv.pid} died before the stop; log:\n{srv.log()}"
    code = srv.stop_by_signal(sig)
    log = srv.log()
    srv.stop()  # reaped already; removes the log
    assert code == 0, f"exit status {code} after signal {sig}; log:\n{log}"


def restart(srv: harness.Server, state: str, sig: int | None = None,
            down_until: float = 0.0) -> harness.Server:
    """Stops `srv` with `sig` (default: the saving stop), stays down until the wall clock
    reads `down_until` (if later), and starts it again on the same port and state file."""
    stop(srv, save_signal() if sig is None else sig)
    if srv.kind == "memcached":
        # memcached needs a stop_time strictly in the past (whole seconds).
        down_until = max(down_until, int(time.time()) + 1.0)
    while time.time() < down_until:
        time.sleep(min(0.05, down_until - time.time()))
    return start(state, port=srv.port)


@pytest.fixture
def servers():
    """Collects the servers a test starts; any still running at the end are stopped."""
    started: list[harness.Server] = []
    yield started
    for srv in started:
        srv.stop()


def pm_client(srv: harness.Server) -> Client:
    return Client((srv.host, srv.port), connect_timeout=5, timeout=10, default_noreply=False)


def stat(srv: harness.Server, name: str) -> int:
    st = srv.stats()
    assert name in st, f"no {name} in stats: {sorted(k for k in st if 'state' in k)}"
    return int(st[name])


# ---------------------------------------------------------------- 1. Django


@contextmanager
def django_cache(backend_name: str, srv: harness.Server, prefix: str):
    """Django's default cache on `srv` through `backend_name`, with fresh connections
    (leaving the block drops the cache object and its client)."""
    setup_django()
    harness.require_module(backend_name)
    backend, options = DJANGO_BACKENDS[backend_name]
    from django.core.cache import caches
    from django.test import override_settings

    setting = {"default": {"BACKEND": backend, "LOCATION": srv.address,
                           "KEY_PREFIX": prefix, "OPTIONS": dict(options)}}
    with override_settings(CACHES=setting):
        cache = caches["default"]
        try:
            yield cache
        finally:
            cache.close()


def mixed_values(n: int) -> dict[str, object]:
    """`n` values whose types make both clients use different flags: str (text), int,
    dict (pickled), bytes (raw), and every 25th a value of ~100 KB (bytes, str or a
    pickled bytearray)."""
    data: dict[str, object] = {}
    for i in range(n):
        if i % 25 == 0:
            big = [os.urandom(100 * KB), "é" * (50 * KB), bytearray(os.urandom(100 * KB))]
            data[f"big{i}"] = big[(i // 25) % 3]
        else:
            data[f"k{i}"] = [f"text {i} ü", i * 1_000_003, {"i": i, "l": [i] * 5, "s": "ß"},
                             b"\x00\xff" * (i % 50 + 1)][i % 4]
    return data


@pytest.mark.parametrize("backend_name", sorted(DJANGO_BACKENDS))
def test_django_cache_survives_restart(backend_name, state_file, servers, key):
    data = mixed_values(500)
    names = list(data)
    hour = {k: data[k] for k in names[::3]}  # timeout=3600
    forever = {k: data[k] for k in names[1::3]}  # timeout=None: never expires
    default = {k: data[k] for k in names[2::3]}  # Django's default timeout (300 s)
    srv = start(state_file)
    servers.append(srv)
    with django_cache(backend_name, srv, key.prefix.rstrip(":")) as c:
        assert c.set_many(hour, timeout=3600) == []
        assert c.set_many(forever, timeout=None) == []
        assert c.set_many(default) == []
        c.set("short", "gone by the restart", timeout=2)
        short_set_at = time.time()
        assert c.get("short") == "gone by the restart"
        assert c.get_many(names) == data
    # The 2-second key runs out while the server is down. (Expiry is counted in whole
    # seconds, and memcached's clock ticks once a second: 1.5 s of margin.)
    srv = restart(srv, state_file, down_until=short_set_at + 3.5)
    servers.append(srv)
    with django_cache(backend_name, srv, key.prefix.rstrip(":")) as c:
        got = c.get_many(names + ["short"])
        missing = sorted(set(names) - set(got))
        assert not missing, f"{len(missing)} keys lost across the restart: {missing[:10]}"
        wrong = [k for k in names if got[k] != data[k]]
        assert not wrong, f"values changed across the restart: {wrong[:10]}"
        assert type(got["big0"]) is bytes and type(got["big25"]) is str
        assert type(got["big50"]) is bytearray
        assert "short" not in got
        assert c.get("short", "miss") == "miss"
        assert c.get(names[7]) == data[names[7]]
    if srv.kind == "larder":
        assert stat(srv, "state_file_load_failures") == 0
        assert stat(srv, "state_file_load_items") == len(data)
        assert stat(srv, "state_file_load_skipped") == 1  # the short key, expired
        assert stat(srv, "curr_items") == len(data)


# ---------------------------------------------------------------- 2. pymemcache: CAS, TTL


def remaining_ttl(srv: harness.Server, k: str, value: bytes) -> int:
    """The seconds `k` has left, by `mg <key> t v` (and checks the value it shows)."""
    reply = srv.raw(f"mg {k} t v\r\nmn\r\n".encode(), until=b"MN\r\n")
    head, _, rest = reply.partition(b"\r\n")
    parts = head.split()
    assert parts[0] == b"VA" and rest == value + b"\r\nMN\r\n", reply
    (ttl,) = [p[1:] for p in parts[2:] if p.startswith(b"t")]
    return int(ttl)


def test_pymemcache_cas_and_ttl_survive_restart(state_file, servers, key):
    srv = start(state_file)
    servers.append(srv)
    k, others = key("cas"), [key(f"other{i}") for i in range(5)]
    c = pm_client(srv)
    try:
        for o in others:  # a few CAS values given out, so the counter is past 1
            assert c.set(o, b"x", expire=1000) is True
        assert c.set(k, b"before", expire=1000) is True
        assert c.set(key("flags"), b"f", flags=4294967295) is True
        value, token = c.gets(k)
        assert value == b"before" and token is not None
        tokens = {o: c.gets(o)[1] for o in others}
        ttl_before = remaining_ttl(srv, k, b"before")
        assert 990 <= ttl_before <= 1000, ttl_before
    finally:
        c.close()

    srv = restart(srv, state_file)
    servers.append(srv)
    c = pm_client(srv)
    try:
        assert c.gets(k) == (b"before", token)  # the same CAS
        assert {o: c.gets(o)[1] for o in others} == tokens
        # A raw get shows the client flags as stored.
        assert srv.raw(f"get {key('flags')}\r\n".encode(), until=b"END\r\n") == \
            f"VALUE {key('flags')} 4294967295 1\r\nf\r\nEND\r\n".encode()
        # The deadline is kept, not restarted: at most the original TTL is left.
        ttl_after = remaining_ttl(srv, k, b"before")
        assert 1000 - 60 < ttl_after <= ttl_before, (ttl_before, ttl_after)
        # The token taken before the restart still matches: STORED.
        assert c.cas(k, b"after", token) is True
        assert c.get(k) == b"after"
        _, new_token = c.gets(k)
        assert new_token != token
        assert c.cas(k, b"stale", token) is False  # EXISTS: the old token is used up
        # CAS values given out after the restart are above every restored one.
        assert c.set(key("new"), b"n") is True
        assert int(c.gets(key("new"))[1]) > max(int(t) for t in [token, *tokens.values()])
    finally:
        c.close()


# ---------------------------------------------------------------- 3. SIGUSR1


def test_sigusr1_saves(state_file, servers, key):
    srv = start(state_file)
    servers.append(srv)
    c = pm_client(srv)
    try:
        assert c.set(key(), b"kept by SIGUSR1", expire=600) is True
    finally:
        c.close()
    srv = restart(srv, state_file, signal.SIGUSR1)
    servers.append(srv)
    c = pm_client(srv)
    try:
        assert c.get(key()) == b"kept by SIGUSR1"
    finally:
        c.close()
    if srv.kind == "larder":
        assert stat(srv, "state_file_load_items") == 1


# ---------------------------------------------------------------- 4. a bad file


def flip_middle_byte(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]


def cut_in_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@LARDER_ONLY
@pytest.mark.parametrize("damage", [flip_middle_byte, cut_in_half], ids=["flipped", "truncated"])
def test_bad_state_file_is_set_aside(damage, state_file, servers, key):
    # A file made by a real save: 200 items of 1 KB, so the middle byte is in an item.
    srv = start(state_file)
    servers.append(srv)
    c = pm_client(srv)
    try:
        assert c.set_many({key(f"old{i}"): os.urandom(KB) for i in range(200)}) == []
    finally:
        c.close()
    stop(srv, signal.SIGTERM)
    with open(state_file, "rb") as f:
        good = f.read()
    assert len(good) > 200 * KB
    bad = damage(good)
    with open(state_file, "wb") as f:
        f.write(bad)

    srv = start(state_file, port=srv.port)
    servers.append(srv)
    st = srv.stats()
    assert int(st["state_file_load_failures"]) == 1, st
    assert int(st["state_file_load_items"]) == 0
    assert int(st["curr_items"]) == 0
    with open(state_file + ".bad", "rb") as f:
        assert f.read() == bad  # set aside as it was, not loaded in part
    assert not os.path.exists(state_file)
    assert "state file not loaded" in srv.log()
    c = pm_client(srv)
    try:
        assert c.get(key("old0")) is None
        assert c.set(key("new"), b"after the bad file") is True
        assert c.get(key("new")) == b"after the bad file"
    finally:
        c.close()

    # The next stop saves afresh, and that file loads.
    srv = restart(srv, state_file)
    servers.append(srv)
    assert stat(srv, "state_file_load_failures") == 0
    assert stat(srv, "state_file_load_items") == 1
    c = pm_client(srv)
    try:
        assert c.get(key("new")) == b"after the bad file"
    finally:
        c.close()
    with open(state_file + ".bad", "rb") as f:
        assert f.read() == bad
