"""python-memcached (`memcache.Client`) against the server under test.

python-memcached sends trailing spaces on some command lines and parses replies
strictly (a `VALUE` line must have exactly 4 tokens for `get`)."""

from __future__ import annotations

import pytest

import harness

memcache = harness.require_module("memcache")


@pytest.fixture
def mc(server):
    # dead_retry=0: a connection error must show up in the failing test, not make the
    # client skip the server silently for 30 s.
    c = memcache.Client([server.address], socket_timeout=10, dead_retry=0, cache_cas=True)
    yield c
    c.disconnect_all()


@pytest.fixture(params=[False, True], ids=["reply", "noreply"])
def noreply(request):
    return request.param


def test_set_get_types(mc, key, noreply):
    values = {
        key("str"): "hello wörld",
        key("bytes"): b"\x00\xffbin",
        key("int"): 1234,
        key("dict"): {"a": [1, 2], "b": "c"},
        key("empty"): "",
    }
    for k, v in values.items():
        assert mc.set(k, v, noreply=noreply)
    for k, v in values.items():
        got = mc.get(k)
        assert got == v and type(got) is type(v), (k, got)
    assert mc.get(key("missing")) is None


def test_add_replace(mc, key, noreply):
    k = key()
    assert mc.add(k, "first", noreply=noreply)
    res = mc.add(k, "second", noreply=noreply)
    assert bool(res) is noreply  # NOT_STORED -> False, noreply -> True
    assert mc.get(k) == "first"
    assert mc.replace(k, "replaced", noreply=noreply)
    assert mc.get(k) == "replaced"
    missing = key("missing")
    assert bool(mc.replace(missing, "x", noreply=noreply)) is noreply
    assert mc.get(missing) is None


def test_append_prepend(mc, key, noreply):
    k = key()
    mc.set(k, "b")
    assert mc.append(k, "c", noreply=noreply)
    assert mc.prepend(k, "a", noreply=noreply)
    assert mc.get(k) == "abc"
    missing = key("missing")
    assert bool(mc.append(missing, "x", noreply=noreply)) is noreply
    assert bool(mc.prepend(missing, "x", noreply=noreply)) is noreply
    assert mc.get(missing) is None


def test_cas_via_gets(mc, server, key):
    k = key()
    mc.set(k, "v1")
    assert mc.gets(k) == "v1"
    assert k.encode() in mc.cas_ids
    # Somebody else changes the value: our cas must fail.
    other = memcache.Client([server.address], socket_timeout=10, dead_retry=0)
    assert other.set(k, "other")
    assert mc.cas(k, "mine") is False
    assert mc.get(k) == "other"
    # After a fresh gets it succeeds.
    assert mc.gets(k) == "other"
    assert mc.cas(k, "mine") is True
    assert mc.get(k) == "mine"
    other.disconnect_all()


def test_cas_on_deleted_key(mc, key):
    k = key()
    mc.set(k, "v")
    assert mc.gets(k) == "v"
    mc.delete(k)
    assert not mc.cas(k, "x")  # NOT_FOUND
    assert mc.get(k) is None


def test_multi(mc, key, noreply):
    values = {key(f"m{i}"): f"v{i}" for i in range(50)}
    assert mc.set_multi(values, noreply=noreply) == []
    got = mc.get_multi(list(values) + [key("missing")])
    assert got == values
    # key_prefix handling is the client's; the server sees the full keys.
    prefixed = mc.get_multi(["m1", "m2"], key_prefix=key(""))
    assert prefixed == {"m1": "v1", "m2": "v2"}
    delete = list(values)[:25]
    assert mc.delete_multi(delete, noreply=noreply) == 1
    assert mc.get_multi(list(values)) == {k: v for k, v in values.items() if k not in delete}
    # Deleting missing keys: python-memcached reads one reply line per key.
    assert mc.delete_multi(delete, noreply=noreply) == 1
    assert mc.get(list(values)[-1]) == values[list(values)[-1]]


def test_delete(mc, key, noreply):
    k = key()
    mc.set(k, "v")
    assert mc.delete(k, noreply=noreply) == 1
    assert mc.get(k) is None
    assert mc.delete(k, noreply=noreply) == (1 if noreply else 0)


def test_incr_decr(mc, key, noreply):
    k = key()
    mc.set(k, "10")
    if noreply:
        assert mc.incr(k, 5, noreply=True) is None
        assert mc.decr(k, 2, noreply=True) is None
        assert int(mc.get(k)) == 13
    else:
        assert mc.incr(k) == 11
        assert mc.incr(k, 10) == 21
        assert mc.decr(k) == 20
        assert mc.decr(k, 100) == 0
    assert mc.incr(key("missing")) is None
    assert mc.decr(key("missing")) is None
    n = key("int")
    mc.set(n, 41)  # stored as digits with the integer flag
    assert mc.incr(n) == 42
    assert mc.get(n) == 42


def test_incr_non_numeric(mc, key):
    k = key()
    mc.set(k, "abc")
    # The server answers CLIENT_ERROR; python-memcached tries int() on that line.
    with pytest.raises(ValueError):
        mc.incr(k)
    assert mc.get(k) == "abc"


def test_touch(mc, key, noreply):
    k = key()
    mc.set(k, "v")
    assert mc.touch(k, 3600, noreply=noreply) == 1
    assert mc.get(k) == "v"
    assert mc.touch(key("missing"), 10, noreply=noreply) == (1 if noreply else 0)
    assert mc.touch(k, -1, noreply=noreply) == 1
    assert mc.get(k) is None


def test_expired_on_set(mc, key):
    k = key()
    assert mc.set(k, "v", time=-1)
    assert mc.get(k) is None
    import time as _time
    assert mc.set(k, "v", time=int(_time.time()) - 100)  # absolute, in the past
    assert mc.get(k) is None
    assert mc.set(k, "v", time=int(_time.time()) + 3600)  # absolute, in the future
    assert mc.get(k) == "v"


def test_big_values(mc, key):
    k = key()
    big = b"\x01" * (1024 * 1024 - 512)
    assert mc.set(k, big)
    assert mc.get(k) == big
    # python-memcached refuses values over 1 MiB itself (returns 0, sends nothing).
    assert not mc.set(key("too-big"), b"x" * (1024 * 1024 + 1))


def test_unicode_and_long_keys(mc, key):
    k = key("ключ-é")
    assert mc.set(k, "unicode key")
    assert mc.get(k) == "unicode key"
    assert mc.get_multi([k]) == {k: "unicode key"}
    with pytest.raises(memcache.Client.MemcachedKeyLengthError):
        mc.set("k" * 251, "v")
    with pytest.raises(memcache.Client.MemcachedKeyCharacterError):
        mc.set("has space", "v")


def test_get_stats(mc, key):
    stats = mc.get_stats()
    assert len(stats) == 1
    name, s = stats[0]
    assert name.startswith(mc.servers[0].ip)
    for field in ("pid", "uptime", "curr_items", "get_hits", "get_misses", "cmd_get",
                  "cmd_set", "bytes", "curr_connections", "limit_maxbytes", "version"):
        assert field in s, field
    before = int(s["get_hits"])
    k = key()
    mc.set(k, "v")
    mc.get(k)
    after = int(mc.get_stats()[0][1]["get_hits"])
    assert after == before + 1


def test_flush_all(mc, key):
    keys = [key(f"f{i}") for i in range(5)]
    mc.set_multi({k: "v" for k in keys})
    assert len(mc.get_multi(keys)) == 5
    mc.flush_all()
    assert mc.get_multi(keys) == {}
    mc.set(keys[0], "again")
    assert mc.get(keys[0]) == "again"


def test_quit_all_and_reconnect(mc, key):
    k = key()
    mc.set(k, "v")
    mc.quit_all()
    assert mc.get(k) == "v"
