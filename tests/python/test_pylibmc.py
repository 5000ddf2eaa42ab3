"""pylibmc (libmemcached) against the server under test, every test over the text
protocol and again over the binary protocol (`binary=True`)."""

from __future__ import annotations

import os
import time

import pytest

import harness

pylibmc = harness.require_module("pylibmc")

MiB = 1024 * 1024


def make_client(server, binary, **behaviors):
    b = {"cas": True, "connect_timeout": 5000, "receive_timeout": 10_000_000,
         "send_timeout": 10_000_000}
    b.update(behaviors)
    return pylibmc.Client([server.address], binary=binary, behaviors=b)


@pytest.fixture(params=[False, True], ids=["text", "binary"])
def binary(request):
    return request.param


@pytest.fixture
def mc(server, binary):
    c = make_client(server, binary)
    yield c
    c.disconnect_all()


def test_protocol(mc, binary):
    assert mc.binary is binary


def test_set_get_types(mc, key):
    values = {
        key("str"): "hello wörld",
        key("bytes"): b"\x00\xff\r\nEND\r\n",
        key("int"): 42,
        key("list"): [1, "two", {"three": 3}],
        key("empty"): b"",
    }
    for k, v in values.items():
        assert mc.set(k, v) is True
    for k, v in values.items():
        got = mc.get(k)
        assert got == v and type(got) is type(v), (k, got)
    b = key("bool")
    assert mc.set(b, True) is True
    assert mc.get(b) == 1  # pylibmc 1.6 reads its bool flag back as an int
    assert mc.get(key("missing")) is None
    assert mc.get(key("missing"), "dflt") == "dflt"


def test_add_replace(mc, key, binary):
    k = key()
    assert mc.add(k, "first") is True
    assert mc.add(k, "second") is False
    assert mc.get(k) == "first"
    assert mc.replace(k, "replaced") is True
    assert mc.get(k) == "replaced"
    if binary:  # libmemcached raises on the binary protocol's "Not found" (memcached too)
        with pytest.raises(pylibmc.NotFound):
            mc.replace(key("missing"), "x")
    else:
        assert mc.replace(key("missing"), "x") is False
    assert mc.get(key("missing")) is None


def test_append_prepend(mc, key):
    k = key()
    mc.set(k, "mid")
    assert mc.append(k, ">") is True
    assert mc.prepend(k, "<") is True
    assert mc.get(k) == "<mid>"
    assert mc.append(key("missing"), "x") is False
    assert mc.prepend(key("missing"), "x") is False
    assert mc.get(key("missing")) is None


def test_gets_cas(mc, key):
    k = key()
    mc.set(k, "v1")
    value, cas = mc.gets(k)
    assert value == "v1" and isinstance(cas, int) and cas > 0
    assert mc.gets(key("missing")) == (None, None)
    assert mc.cas(k, "v2", cas) is True
    assert mc.get(k) == "v2"
    assert mc.cas(k, "v3", cas) is False  # EXISTS: the unique changed
    assert mc.get(k) == "v2"
    _, cas2 = mc.gets(k)
    assert cas2 != cas
    mc.delete(k)
    with pytest.raises(pylibmc.NotFound):
        mc.cas(k, "v4", cas2)
    assert mc.get(k) is None


def test_multi(mc, key):
    values = {key(f"m{i}"): f"v{i}" for i in range(100)}
    assert mc.set_multi(values) == []
    assert mc.get_multi(list(values) + [key("missing")]) == values
    assert mc.set_multi({"a": 1, "b": 2}, key_prefix=key("p:")) == []
    assert mc.get_multi(["a", "b"], key_prefix=key("p:")) == {"a": 1, "b": 2}
    some = list(values)[:50]
    assert mc.delete_multi(some) is True
    assert mc.get_multi(list(values)) == {k: v for k, v in values.items() if k not in some}
    assert mc.delete_multi(some) is False  # every key was missing now
    assert mc.get_multi([]) == {}


def test_set_multi_expired(mc, key, binary):
    values = {key("a"): 1, key("b"): 2}
    assert mc.set_multi(values, time=-1) == []
    # The binary protocol's expiration is unsigned: -1 is a time far in the future.
    assert mc.get_multi(list(values)) == (values if binary else {})


def test_delete(mc, key):
    k = key()
    mc.set(k, "v")
    assert mc.delete(k) is True
    assert mc.delete(k) is False
    assert mc.get(k) is None


def test_incr_decr(mc, key):
    k = key()
    mc.set(k, "10")
    assert mc.incr(k) == 11
    assert mc.incr(k, 9) == 20
    assert mc.decr(k) == 19
    assert mc.decr(k, 100) == 0
    assert mc.incr(k, 2**31 - 1) == 2**31 - 1  # pylibmc's delta is a C int
    mc.set(k, str(2**64 - 1))
    assert mc.incr(k) == 0  # wraps modulo 2**64
    with pytest.raises(pylibmc.NotFound):
        mc.incr(key("missing"))
    with pytest.raises(pylibmc.NotFound):
        mc.decr(key("missing"))
    assert mc.get(key("missing")) is None
    n = key("int")
    mc.set(n, 5)  # an int is stored as its digits
    assert mc.incr(n, 5) == 10
    assert mc.get(n) == 10


def test_incr_multi(mc, key):
    keys = [key(f"c{i}") for i in range(3)]
    mc.set_multi({k: 0 for k in keys})
    mc.incr_multi(keys, delta=4)
    assert mc.get_multi(keys) == {k: 4 for k in keys}


def test_incr_non_numeric(mc, key, binary, server):
    k = key()
    mc.set(k, "abc")
    if binary:
        # libmemcached reads the binary protocol's status 6 as an unknown read failure,
        # and then takes the server for down until its retry timeout (memcached too): the
        # value is checked over a new client.
        with pytest.raises(pylibmc.UnknownReadFailure):
            mc.incr(k)
        assert make_client(server, binary).get(k) == "abc"
        return
    with pytest.raises(pylibmc.ClientError):
        mc.incr(k)
    with pytest.raises(pylibmc.ClientError):
        mc.decr(k)
    assert mc.get(k) == "abc"  # connection still fine, value untouched


def test_touch(mc, key):
    k = key()
    mc.set(k, "v")
    assert mc.touch(k, 3600) is True
    assert mc.get(k) == "v"
    assert mc.touch(key("missing"), 10) is False
    # (touch with a negative time fails inside the bundled libmemcached before anything
    # is sent, which is why Django's PyLibMCCache.touch(timeout=0) deletes instead.)
    assert mc.touch(k, int(time.time()) - 1000) is True  # absolute time in the past
    assert mc.get(k) is None


@pytest.mark.parametrize("ttl, present", [(0, True), (-1, False), (2592000, True),
                                          ("past", False), ("future", True)])
def test_expiry_rules(mc, key, ttl, present, binary):
    if ttl == -1 and binary:
        present = True  # unsigned in the binary protocol: far in the future
    now = int(time.time())
    ttl = {"past": now - 1000, "future": now + 1000}.get(ttl, ttl)
    k = key()
    assert mc.set(k, "v", time=ttl) is True
    assert (mc.get(k) == "v") is present


def test_big_values(mc, key, server, binary):
    k = key()
    value = os.urandom(MiB - 512)
    assert mc.set(k, value) is True
    assert mc.get(k) == value
    assert mc.get_multi([k]) == {k: value}
    before = int(server.stats()["store_too_large"])
    with pytest.raises(pylibmc.TooBig):
        mc.set(k, os.urandom(MiB + 1))
    # The refusal came from the server, which also dropped the old value (memcached counts
    # only the text protocol's refusals).
    assert int(server.stats()["store_too_large"]) == before + (0 if binary else 1)
    assert mc.get(k) is None
    assert mc.set(k, "small") is True
    assert mc.get(k) == "small"


def test_compressed_value(mc, key):
    k = key()
    value = "compressible " * 200_000  # 2.6 MB of text, a few KB compressed
    assert mc.set(k, value, min_compress_len=1) is True
    assert mc.get(k) == value


def test_keys(mc, key):
    uk = key("ключ-é")
    assert mc.set(uk, "unicode") is True
    assert mc.get(uk) == "unicode"
    # A bytes key. (The bundled libmemcached misreads replies for keys with some control
    # or non-UTF-8 bytes even against memcached, so those are only tested with pymemcache.)
    bk = key("bytes-key").encode()
    assert mc.set(bk, "bytes") is True
    assert mc.get(bk) == "bytes"
    base = key("")
    k250 = base + "a" * (250 - len(base))
    assert mc.set(k250, "v") is True
    assert mc.get(k250) == "v"
    with pytest.raises(ValueError):
        mc.set(k250 + "a", "v")


def test_noreply_behavior(server, key, binary):
    c = make_client(server, binary, _noreply=True)
    k = key()
    assert c.set(k, "v") is True
    c.add(k, "not stored")  # NOT_STORED must not be sent back
    c.append(k, "+")
    assert c.get(k) == "v+"
    c.delete(k)
    assert c.get(k) is None
    c.disconnect_all()


def test_stats(mc, key):
    stats = mc.get_stats()
    assert len(stats) == 1
    name, s = stats[0]
    assert name.startswith(b"127.0.0.1:")
    assert int(s["pid"]) > 0
    assert int(s["limit_maxbytes"]) == 64 * MiB
    assert s["version"] == mc.get_stats()[0][1]["version"]
    before = int(s["get_hits"])
    k = key()
    mc.set(k, "v")
    mc.get(k)
    assert int(mc.get_stats()[0][1]["get_hits"]) == before + 1


def test_flush_all(mc, key):
    keys = [key(f"f{i}") for i in range(5)]
    mc.set_multi({k: "v" for k in keys})
    assert mc.flush_all() is True
    assert mc.get_multi(keys) == {}
    mc.set(keys[0], "after")
    assert mc.get(keys[0]) == "after"


def test_clone_and_pool(server, key, binary):
    master = make_client(server, binary)
    pool = pylibmc.ClientPool(master, 4)
    k = key()
    with pool.reserve() as c:
        c.set(k, "pooled")
    with pool.reserve() as c:
        assert c.get(k) == "pooled"
    master.disconnect_all()
