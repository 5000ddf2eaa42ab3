"""Many nodes with the distribution the memcached ecosystem already uses.

Three nodes of the server under test, each on its own free 127.0.0.1 port, and:

* Django with LOCATION listing the three nodes: `PyMemcacheCache` (pymemcache's
  `HashClient`, rendezvous hashing) and `PyLibMCCache` (libmemcached, ketama): keys land on
  all three nodes (each node's `stats` curr_items and a direct `get` on every node), and
  reads find them all;
* twemproxy (`nutcracker`) in front of the three nodes (ketama, fnv1a_64,
  auto_eject_hosts): every classic command it forwards, multi-get across nodes, Django
  pointed at the proxy;
* one node killed (SIGKILL to its PID) under each client: the two other nodes keep serving,
  the lost keys miss and are refilled, no call outlives its timeout, and the node restarted
  on the same port serves again; one node frozen (SIGSTOP) shows the timeouts really bound
  a call to a node that accepts but never answers.

The DJANGO_* and TWEMPROXY_* settings below are the ones docs/multinode.md
shows. Everything is started here and stopped by PID.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from contextlib import contextmanager

import pytest

import harness
import multinode
from django_setup import setup_django

N_KEYS = 300

# ---- the configurations under test (docs/multinode.md shows exactly these) ---------------------

# pymemcache's HashClient: a failing node is retried `retry_attempts` times, `retry_timeout`
# seconds apart, then left out for `dead_timeout` seconds; ignore_exc turns a node's errors
# into misses (get) and failed writes (set) instead of exceptions.
DJANGO_PYMEMCACHE = {
    "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
    "OPTIONS": {
        "connect_timeout": 1,     # seconds
        "timeout": 1,             # seconds, per socket operation
        "ignore_exc": True,
        "retry_attempts": 1,
        "retry_timeout": 0.5,     # seconds between retries of a failing node
        "dead_timeout": 1.5,      # seconds a dead node stays out of the ring
    },
}

# pylibmc (libmemcached): Django passes OPTIONS to pylibmc.Client(servers, **OPTIONS), so
# "behaviors" are libmemcached behaviors. ketama = consistent hashing (MD5 continuum);
# remove_failed = eject a node after that many failures, for dead_timeout seconds.
# _poll_timeout is what bounds a call to a node that accepts but does not answer:
# libmemcached waits in poll() for it (default 5000 ms); receive_timeout alone does not.
DJANGO_PYLIBMC = {
    "BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
    "OPTIONS": {
        "binary": False,
        "behaviors": {
            "ketama": True,
            "connect_timeout": 1000,        # milliseconds
            "send_timeout": 1_000_000,      # microseconds
            "receive_timeout": 1_000_000,   # microseconds
            "remove_failed": 1,
            "retry_timeout": 1,             # seconds
            "dead_timeout": 2,              # seconds
            "_poll_timeout": 1000,          # milliseconds
        },
    },
}

DJANGO_CONFIGS = {"pymemcache": DJANGO_PYMEMCACHE, "pylibmc": DJANGO_PYLIBMC}

# twemproxy pool settings (multinode.nutcracker_config writes the YAML).
# Its timeout is shorter than the client's socket timeout (1 s), so a node that does not
# answer comes back as "SERVER_ERROR Connection timed out" before the client gives up.
TWEMPROXY = dict(timeout_ms=500, server_retry_timeout_ms=1500, server_failure_limit=1)

# A client call may take its socket timeout (1 s) plus this much before it counts as hung.
CALL_LIMIT = 2.5


# ---- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """Three nodes shared by the distribution and twemproxy-command tests."""
    c = multinode.Cluster(3)
    try:
        yield c
    finally:
        dead = c.unexpected_deaths()
        c.stop()
        if dead:
            pytest.fail(f"nodes died during the module: {dead}", pytrace=False)


@pytest.fixture(scope="module")
def proxy(cluster):
    """twemproxy in front of the shared cluster."""
    nc = multinode.Nutcracker(cluster.addresses, **TWEMPROXY)
    try:
        yield nc
    finally:
        harness.stop_checked(nc, "nutcracker")


@pytest.fixture
def fresh_cluster():
    """Three nodes of its own, for a test that kills, freezes or restarts one."""
    c = multinode.Cluster(3)
    try:
        yield c
    finally:
        for i in range(len(c)):
            c.thaw(i)  # in case the test froze it
        dead = c.unexpected_deaths()
        c.stop()
        if dead:
            pytest.fail(f"nodes died during the test: {dead}", pytrace=False)


@contextmanager
def django_cache(config: dict, location, key_prefix: str):
    """Django's default cache configured as `config` with this LOCATION."""
    setup_django()
    from django.core.cache import caches
    from django.test import override_settings

    backend = config["BACKEND"]
    harness.require_module("pylibmc" if "PyLibMC" in backend else "pymemcache")
    setting = {"default": {**config, "LOCATION": location, "KEY_PREFIX": key_prefix}}
    with override_settings(CACHES=setting):
        cache = caches["default"]
        try:
            yield cache
        finally:
            cache.close()
            if "PyLibMC" in backend:
                cache._cache.disconnect_all()  # Django's close() leaves pylibmc connected


def timed(fn, *args, **kwargs):
    """Calls fn; returns (result or exception, seconds)."""
    start = time.monotonic()
    try:
        result = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the caller classifies it
        result = e
    return result, time.monotonic() - start


# ---- Django with three servers in LOCATION -----------------------------------------------

@pytest.mark.parametrize("backend", sorted(DJANGO_CONFIGS))
def test_django_spreads_keys_over_three_nodes(cluster, key, backend):
    with django_cache(DJANGO_CONFIGS[backend], cluster.addresses, key.prefix.rstrip(":")) as c:
        if backend == "pylibmc":
            assert c._cache.behaviors["ketama"] == 1
            assert c._cache.behaviors["distribution"] == "consistent ketama"
        else:
            assert type(c._cache).__name__ == "HashClient"
            assert sorted(c._cache.clients) == sorted(cluster.addresses)
        data = {f"item{i}": {"i": i, "s": "é" * (i % 7)} for i in range(N_KEYS)}
        before = cluster.curr_items()
        assert c.set_many(dict(list(data.items())[: N_KEYS // 2])) == []
        for k, v in list(data.items())[N_KEYS // 2:]:
            c.set(k, v)
        after = cluster.curr_items()
        added = [a - b for a, b in zip(after, before)]
        assert sum(added) == N_KEYS, (before, after)
        # Every node got a real share (an even split is 100 each).
        assert min(added) >= N_KEYS // 10, f"keys per node {added}"

        # Asked directly, each key is on exactly one node, and the counts match `stats`.
        where = cluster.which_node([c.make_key(k) for k in data])
        assert len(where) == N_KEYS
        assert cluster.per_node(where) == added

        # Reads find them all: one multi-get across the nodes, and one get per key.
        assert c.get_many(list(data) + ["missing"]) == data
        for k, v in data.items():
            assert c.get(k) == v
        c.delete_many(list(data))
        assert cluster.curr_items() == before


def test_two_clients_two_placements(cluster, key):
    """pymemcache (rendezvous) and pylibmc (ketama) hash differently: the same Django key
    usually lands on a different node, so all clients of a pool must use the same library
    and settings (or go through one proxy)."""
    keys = [f"item{i}" for i in range(60)]
    placement = {}
    for backend in sorted(DJANGO_CONFIGS):
        with django_cache(DJANGO_CONFIGS[backend], cluster.addresses, key.prefix.rstrip(":")) as c:
            c.set_many({k: backend for k in keys})
            where = cluster.which_node([c.make_key(k) for k in keys])
            placement[backend] = [where.get(c.make_key(k)) for k in keys]
            c.delete_many(keys)
    same = sum(a == b for a, b in zip(placement["pymemcache"], placement["pylibmc"]))
    assert None not in placement["pymemcache"] and None not in placement["pylibmc"]
    assert same < len(keys), "the two hashings agreed on every key"


# ---- twemproxy in front of the three nodes -----------------------------------------------

def test_twemproxy_spreads_keys(cluster, proxy, key):
    from pymemcache.client.base import Client

    # Keys that end in random hex (the next test shows keys that differ only in a counter).
    keys = [key(uuid.uuid4().hex) for _ in range(N_KEYS)]
    before = cluster.curr_items()
    client = Client(("127.0.0.1", proxy.port), connect_timeout=1, timeout=1,
                    default_noreply=False)
    try:
        assert client.set_many({k: k.encode() for k in keys}) == []
        added = [a - b for a, b in zip(cluster.curr_items(), before)]
        assert sum(added) == N_KEYS
        assert min(added) >= N_KEYS // 10, f"keys per node {added}"
        where = cluster.which_node(keys)
        assert cluster.per_node(where) == added
        # One `get` of 300 keys through the proxy: it splits it per node and merges.
        assert client.get_many(keys) == {k: k.encode() for k in keys}
        for k in keys[:50]:
            assert client.get(k) == k.encode()
        client.delete_many(keys)
        assert cluster.curr_items() == before
    finally:
        client.close()


def test_twemproxy_fnv1a_64_lumps_sequential_keys(cluster, proxy):
    """twemproxy's fnv1a_64 is not 64-bit FNV-1a: it keeps 32 bits of the offset basis and
    of the prime (0x1b3), so keys that differ only in their last characters hash close
    together and land on few ketama points. `user:0` .. `user:299` put nothing on node1
    (the placement depends only on the keys and the node names, so it is the same on
    every run); `hash: md5` spreads the same keys evenly."""
    keys = [f"user:{i}" for i in range(N_KEYS)]
    md5 = multinode.Nutcracker(cluster.addresses, **TWEMPROXY, hash="md5")
    try:
        shares = {}
        for name, nc in (("fnv1a_64", proxy), ("md5", md5)):
            with multinode.Conn("127.0.0.1", nc.port) as p:
                for k in keys:
                    assert p.call(f"set {k} 0 0 1\r\nx\r\n".encode()) == b"STORED\r\n"
                shares[name] = cluster.per_node(cluster.which_node(keys))
                for k in keys:
                    assert p.call(f"delete {k}\r\n".encode()) == b"DELETED\r\n"
    finally:
        md5.stop()
    assert shares["fnv1a_64"] == [0, 280, 20], shares
    assert min(shares["md5"]) >= N_KEYS // 5, shares


def spread_keys(cluster, proxy, make, per_node: int = 2) -> list[str]:
    """Keys (set through the proxy) such that every node holds `per_node` of them."""
    by_node: dict[int, list[str]] = {0: [], 1: [], 2: []}
    with multinode.Conn("127.0.0.1", proxy.port) as conn:
        for i in range(200):
            k = make(f"spread{i}:{uuid.uuid4().hex[:8]}")
            assert conn.call(f"set {k} 0 0 1\r\nx\r\n".encode()) == b"STORED\r\n"
            node = cluster.which_node([k])[k]
            assert conn.call(f"delete {k}\r\n".encode()) == b"DELETED\r\n"
            if len(by_node[node]) < per_node:
                by_node[node].append(k)
            if all(len(v) == per_node for v in by_node.values()):
                return [k for v in by_node.values() for k in v]
    raise AssertionError(f"200 keys did not cover the three nodes: {by_node}")


def test_twemproxy_classic_commands(cluster, proxy, key):
    k, n, m = key("k"), key("n"), key("missing")
    with multinode.Conn("127.0.0.1", proxy.port) as p:
        def call(cmd: bytes, until: bytes = b"\r\n") -> bytes:
            return p.call(cmd, until)

        def get(cmd: str) -> bytes:
            return call(cmd.encode() + b"\r\n", b"END\r\n")

        # set / get / gets, with flags
        assert call(f"set {k} 42 0 5\r\nhello\r\n".encode()) == b"STORED\r\n"
        assert get(f"get {k}") == f"VALUE {k} 42 5\r\nhello\r\nEND\r\n".encode()
        assert get(f"get {m}") == b"END\r\n"
        (data, flags, cas1), = multinode.parse_values_full(get(f"gets {k}")).values()
        assert (data, flags) == (b"hello", 42) and cas1 is not None
        # the node that holds it agrees, flags and cas unique included
        node = cluster[cluster.which_node([k])[k]]
        direct = multinode.parse_values_full(
            node.raw(f"gets {k}\r\n".encode(), until=b"END\r\n"))
        assert direct == {k: (b"hello", 42, cas1)}

        # add / replace
        assert call(f"add {k} 0 0 1\r\nx\r\n".encode()) == b"NOT_STORED\r\n"
        assert call(f"add {n} 0 0 2\r\n10\r\n".encode()) == b"STORED\r\n"
        assert call(f"replace {m} 0 0 1\r\nx\r\n".encode()) == b"NOT_STORED\r\n"
        assert call(f"replace {k} 7 0 5\r\nworld\r\n".encode()) == b"STORED\r\n"
        assert get(f"get {k}") == f"VALUE {k} 7 5\r\nworld\r\nEND\r\n".encode()

        # append / prepend (flags stay those of the item)
        assert call(f"append {k} 0 0 2\r\n!!\r\n".encode()) == b"STORED\r\n"
        assert call(f"prepend {k} 0 0 3\r\n>> \r\n".encode()) == b"STORED\r\n"
        assert get(f"get {k}") == f"VALUE {k} 7 10\r\n>> world!!\r\nEND\r\n".encode()
        assert call(f"append {m} 0 0 1\r\nx\r\n".encode()) == b"NOT_STORED\r\n"
        assert call(f"prepend {m} 0 0 1\r\nx\r\n".encode()) == b"NOT_STORED\r\n"

        # cas: a stale unique, the current one, a missing key
        (_, _, cas2), = multinode.parse_values_full(get(f"gets {k}")).values()
        assert cas2 != cas1
        assert call(f"cas {k} 0 0 1 {cas1}\r\nA\r\n".encode()) == b"EXISTS\r\n"
        assert call(f"cas {k} 3 0 1 {cas2}\r\nB\r\n".encode()) == b"STORED\r\n"
        assert get(f"get {k}") == f"VALUE {k} 3 1\r\nB\r\nEND\r\n".encode()
        assert call(f"cas {m} 0 0 1 {cas2}\r\nC\r\n".encode()) == b"NOT_FOUND\r\n"

        # incr / decr
        assert call(f"incr {n} 5\r\n".encode()) == b"15\r\n"
        assert call(f"decr {n} 3\r\n".encode()) == b"12\r\n"
        assert call(f"decr {n} 100\r\n".encode()) == b"0\r\n"
        assert call(f"incr {n} 18446744073709551615\r\n".encode()) == b"18446744073709551615\r\n"
        assert call(f"incr {n} 2\r\n".encode()) == b"1\r\n"  # wraps modulo 2**64
        assert call(f"incr {m} 1\r\n".encode()) == b"NOT_FOUND\r\n"
        assert call(f"decr {m} 1\r\n".encode()) == b"NOT_FOUND\r\n"
        assert (call(f"incr {k} 1\r\n".encode())
                == b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")

        # touch
        assert call(f"touch {k} 100\r\n".encode()) == b"TOUCHED\r\n"
        assert call(f"touch {m} 100\r\n".encode()) == b"NOT_FOUND\r\n"
        assert call(f"touch {n} -1\r\n".encode()) == b"TOUCHED\r\n"  # expires it
        assert get(f"get {n}") == b"END\r\n"

        # delete
        assert call(f"delete {k}\r\n".encode()) == b"DELETED\r\n"
        assert call(f"delete {k}\r\n".encode()) == b"NOT_FOUND\r\n"
        assert get(f"get {k}") == b"END\r\n"

        # noreply, pipelined: twemproxy swallows nothing, the server answers nothing
        p.send(f"set {k} 1 0 3 noreply\r\nabc\r\n"
               f"append {k} 0 0 1 noreply\r\nd\r\n"
               f"incr {n} 1 noreply\r\n"
               f"add {n} 0 0 1 noreply\r\n5\r\n"
               f"touch {k} 100 noreply\r\n"
               f"get {k} {n}\r\n".encode())
        assert p.read_until(b"END\r\n") == (f"VALUE {k} 1 4\r\nabcd\r\n"
                                            f"VALUE {n} 0 1\r\n5\r\nEND\r\n").encode()
        p.send(f"delete {k} noreply\r\ndelete {n} noreply\r\nget {k} {n}\r\n".encode())
        assert p.read_until(b"END\r\n") == b"END\r\n"

        # `version` is forwarded to one of the nodes
        assert call(b"version\r\n").startswith(b"VERSION ")

        # binary data (CR LF inside) and a large value go through unchanged
        blob = bytes(range(256)) * 4 + b"\r\nEND\r\n\x00"
        assert call(f"set {k} 0 0 {len(blob)}\r\n".encode() + blob + b"\r\n") == b"STORED\r\n"
        big = os.urandom(512 * 1024)
        assert call(f"set {m} 0 0 {len(big)}\r\n".encode() + big + b"\r\n") == b"STORED\r\n"
        p.send(f"get {k} {m}\r\n".encode())
        head = p.read_until(b"\r\n")
        assert head == f"VALUE {k} 0 {len(blob)}\r\n".encode()
        body = p.read_until(f"VALUE {m} 0 {len(big)}\r\n".encode())
        assert body == blob + b"\r\n" + f"VALUE {m} 0 {len(big)}\r\n".encode()
        while len(p.buf) < len(big) + len(b"\r\nEND\r\n"):
            p.buf += p.sock.recv(1 << 20)
        assert p.buf == big + b"\r\nEND\r\n"
        p.buf = b""
        assert call(f"delete {k}\r\n".encode()) == b"DELETED\r\n"
        assert call(f"delete {m}\r\n".encode()) == b"DELETED\r\n"


def test_twemproxy_multiget_across_nodes(cluster, proxy, key):
    keys = spread_keys(cluster, proxy, key)  # two on each node
    values = {k: f"value-of-{k}".encode() for k in keys}
    missing = [key("nobody1"), key("nobody2")]
    with multinode.Conn("127.0.0.1", proxy.port) as p:
        for i, (k, v) in enumerate(values.items()):
            assert p.call(f"set {k} {i} 0 {len(v)}\r\n".encode() + v + b"\r\n") == b"STORED\r\n"
        assert sorted(cluster.which_node(keys).values()) == [0, 0, 1, 1, 2, 2]
        asked = [missing[0]] + keys[::-1] + [missing[1], keys[0]]  # a repeated key too

        reply = p.call(("get " + " ".join(asked) + "\r\n").encode(), b"END\r\n")
        assert multinode.parse_values(reply) == values
        # one VALUE per key asked, the repeated key twice (in twemproxy's own order)
        returned = Counter(line.split(b" ")[1].decode() for line in reply.split(b"\r\n")
                           if line.startswith(b"VALUE "))
        assert returned == Counter(k for k in asked if k in values)

        reply = p.call(("gets " + " ".join(asked) + "\r\n").encode(), b"END\r\n")
        full = multinode.parse_values_full(reply)
        assert {k: d for k, (d, _, _) in full.items()} == values
        assert [f for _, (_, f, _) in sorted(full.items(), key=lambda kv: keys.index(kv[0]))] \
            == list(range(len(keys)))
        # each cas unique is the one of the node that holds the key
        for k in keys:
            node = cluster[cluster.which_node([k])[k]]
            direct = multinode.parse_values_full(
                node.raw(f"gets {k}\r\n".encode(), until=b"END\r\n"))
            assert direct[k] == full[k]
        for k in keys:
            cas = full[k][2]
            assert p.call(f"cas {k} 0 0 2 {cas}\r\nok\r\n".encode()) == b"STORED\r\n"
        reply = p.call(("get " + " ".join(keys) + "\r\n").encode(), b"END\r\n")
        assert multinode.parse_values(reply) == {k: b"ok" for k in keys}
        for k in keys:
            assert p.call(f"delete {k}\r\n".encode()) == b"DELETED\r\n"


@pytest.mark.parametrize("command", [b"gat 100 {k}\r\n", b"gats 100 {k}\r\n",
                                     b"flush_all\r\n", b"stats\r\n", b"mg {k} v\r\n",
                                     b"verbosity 1\r\n"])
def test_twemproxy_closes_on_commands_it_does_not_forward(proxy, key, command):
    """Not Larder's behaviour, twemproxy's: what it does not forward, it answers by closing
    the connection (docs/multinode.md lists these)."""
    with multinode.Conn("127.0.0.1", proxy.port) as p:
        p.send(command.replace(b"{k}", key().encode()))
        assert p.closed_by_peer()


@pytest.mark.parametrize("backend", sorted(DJANGO_CONFIGS))
def test_django_through_twemproxy(cluster, proxy, key, backend):
    with django_cache(DJANGO_CONFIGS[backend], proxy.address, key.prefix.rstrip(":")) as c:
        data = {f"item{i}": [i, "x" * i] for i in range(60)}
        assert c.set_many(data) == []
        assert c.get_many(list(data) + ["missing"]) == data
        assert len(cluster.which_node([c.make_key(k) for k in data])) == len(data)
        assert c.add("item0", "other") is False
        assert c.add("new", "v") is True
        c.set("n", 10)
        assert c.incr("n", 5) == 15
        assert c.decr("n", 20) == 0
        assert c.touch("new", 100) is True
        assert c.touch("missing", 100) is False
        assert c.delete("new") is True
        assert c.delete("new") is False
        c.delete_many(list(data) + ["n"])
        assert c.get_many(list(data)) == {}


# ---- one node killed, then back ----------------------------------------------------------

class Twemproxied:
    """pymemcache's plain Client talking to twemproxy (errors are raised, not hidden)."""

    def __init__(self, proxy, prefix: str):
        from pymemcache.client.base import Client
        from pymemcache.exceptions import MemcacheServerError

        self.client = Client(("127.0.0.1", proxy.port), connect_timeout=1, timeout=1,
                             default_noreply=False)
        self.prefix = prefix
        self.errors = (MemcacheServerError,)

    def make_key(self, k: str) -> str:
        return self.prefix + k

    def get(self, k: str):
        v = self.client.get(self.make_key(k))
        return None if v is None else v.decode()

    def set(self, k: str, v: str) -> None:
        self.client.set(self.make_key(k), v.encode())


@contextmanager
def failover_client(kind: str, cluster, prefix: str):
    """(client, exception types a lost node may raise) for one of the three ways in."""
    if kind == "twemproxy":
        nc = multinode.Nutcracker(cluster.addresses, **TWEMPROXY)
        try:
            c = Twemproxied(nc, prefix)
            try:
                yield c, c.errors, nc
            finally:
                c.client.close()
        finally:
            nc.stop()
        return
    with django_cache(DJANGO_CONFIGS[kind], cluster.addresses, prefix.rstrip(":")) as c:
        if kind == "pylibmc":
            import pylibmc
            errors = (pylibmc.Error,)
        else:
            errors = ()  # ignore_exc: pymemcache turns a dead node into misses
        yield c, errors, None


def read_round(c, keys, errors):
    """Gets every key once, timing each call: key -> "hit" | "miss" | "error"."""
    out = {}
    for k in keys:
        got, took = timed(c.get, k)
        assert took < CALL_LIMIT, f"get {k!r} took {took:.2f}s"
        if isinstance(got, Exception):
            assert errors and isinstance(got, errors), f"get {k!r} raised {got!r}"
            out[k] = "error"
        else:
            assert got in (None, k), f"get {k!r} returned {got!r}"
            out[k] = "hit" if got == k else "miss"
    return out


def refill(c, results, errors):
    """Cache-aside: every miss is written again (a write may fail while a node is down)."""
    for k, r in results.items():
        if r == "miss":
            got, took = timed(c.set, k, k)
            assert took < CALL_LIMIT, f"set {k!r} took {took:.2f}s"
            if isinstance(got, Exception):
                assert errors and isinstance(got, errors), f"set {k!r} raised {got!r}"


@pytest.mark.parametrize("kind", ["pymemcache", "pylibmc", "twemproxy"])
def test_node_killed_then_back(fresh_cluster, key, kind):
    cluster = fresh_cluster
    victim = 1
    keys = [f"item{i}:{uuid.uuid4().hex[:8]}" for i in range(150)]
    with failover_client(kind, cluster, key.prefix) as (c, errors, nc):
        for k in keys:
            c.set(k, k)
        where = cluster.which_node([c.make_key(k) for k in keys])
        assert len(where) == len(keys)
        per_node = cluster.per_node(where)
        assert min(per_node) > 0, per_node
        lost = [k for k in keys if where[c.make_key(k)] == victim]
        kept = [k for k in keys if where[c.make_key(k)] != victim]

        cluster.kill(victim)
        killed_at = time.monotonic()

        # The two others keep serving; the lost keys miss (a few errors allowed while the
        # client or proxy notices the node is gone) and are refilled on the two others.
        seen = {k: [] for k in lost}
        n_errors = 0
        deadline = time.monotonic() + 10
        while True:
            results = read_round(c, keys, errors)
            assert [k for k in kept if results[k] != "hit"] == [], "a surviving key was lost"
            for k in lost:
                seen[k].append(results[k])
            n_errors += sum(r == "error" for r in results.values())
            if all(results[k] == "hit" for k in lost):
                break
            assert time.monotonic() < deadline, f"lost keys not refilled: {seen}"
            refill(c, results, errors)
            time.sleep(0.1)
        refilled_after = time.monotonic() - killed_at
        assert all("miss" in s for s in seen.values()), f"a lost key never missed: {seen}"
        assert n_errors <= 3, f"{n_errors} errors: {seen}"
        refilled = cluster.which_node([c.make_key(k) for k in lost])
        assert sorted(refilled) == sorted(c.make_key(k) for k in lost)
        assert victim not in refilled.values()

        # The node comes back, empty, on the same port: once the client (or twemproxy)
        # retries it, its keys map to it again, miss there, and are refilled on it.
        cluster.restart(victim)
        restarted_at = time.monotonic()
        assert cluster[victim].stat("curr_items") == 0
        deadline = time.monotonic() + 10
        while True:
            results = read_round(c, keys, errors)
            assert [k for k in kept if results[k] != "hit"] == []
            back = cluster.holders([c.make_key(k) for k in lost])
            if (all(results[k] == "hit" for k in lost)
                    and all(victim in back.get(c.make_key(k), ()) for k in lost)):
                break
            assert time.monotonic() < deadline, f"node {victim} never served again: {results}"
            refill(c, results, errors)
            time.sleep(0.2)
        assert cluster[victim].stat("curr_items") == len(lost)
        # The copies refilled on the others while the node was away are still there (stale
        # from now on): every lost key is on the victim and on exactly one other node.
        back = cluster.holders([c.make_key(k) for k in lost])
        assert all(len(back[c.make_key(k)]) == 2 for k in lost), back
        print(f"\n{kind}: {len(lost)}/{len(keys)} keys lost, {n_errors} errors, "
              f"refilled {refilled_after:.1f}s after the kill, served by the restarted node "
              f"{time.monotonic() - restarted_at:.1f}s after the restart")
        if nc is not None:
            stats = nc.stats()["larder"]
            assert stats["server_ejects"] >= 1
            assert nc.alive()


@pytest.mark.parametrize("kind", ["pymemcache", "pylibmc", "twemproxy"])
def test_node_frozen_calls_time_out(fresh_cluster, key, kind):
    """A node that accepts but never answers (SIGSTOP): calls for its keys give up within
    the timeout, the others are served meanwhile, and after SIGCONT it serves again."""
    cluster = fresh_cluster
    victim = 1
    keys = [f"item{i}:{uuid.uuid4().hex[:8]}" for i in range(60)]
    with failover_client(kind, cluster, key.prefix) as (c, errors, nc):
        for k in keys:
            c.set(k, k)
        where = cluster.which_node([c.make_key(k) for k in keys])
        frozen = [k for k in keys if where[c.make_key(k)] == victim]
        kept = [k for k in keys if where[c.make_key(k)] != victim]
        assert frozen and kept

        cluster.freeze(victim)
        try:
            worst = 0.0
            for k in frozen[:3] + kept[:10] + frozen[3:6]:
                got, took = timed(c.get, k)
                worst = max(worst, took)
                assert took < CALL_LIMIT, f"get {k!r} took {took:.2f}s ({got!r})"
                if k in kept:
                    assert got == k
                elif isinstance(got, Exception):
                    assert errors and isinstance(got, errors), repr(got)
                else:
                    assert got is None
                print(f"\n{kind}: get {k in kept and 'kept' or 'frozen'} key: "
                      f"{got!r} in {took:.2f}s")
        finally:
            cluster.thaw(victim)

        deadline = time.monotonic() + 10
        while True:
            results = read_round(c, keys, errors)
            if all(r == "hit" for r in results.values()):
                break
            assert time.monotonic() < deadline, f"not serving all keys again: {results}"
            refill(c, results, errors)
            time.sleep(0.2)
