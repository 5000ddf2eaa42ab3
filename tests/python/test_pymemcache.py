"""pymemcache (Client and PooledClient) against the server under test.

Every storage/retrieval method is run with noreply on and off where the client has the
option; with noreply the effect is checked by a later command on the same connection,
which also proves the server sent no reply line (a stray line would be read as the
answer to the next command)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time

import pytest

import harness

pymemcache = harness.require_module("pymemcache")
from pymemcache.client.base import Client, PooledClient  # noqa: E402
from pymemcache.exceptions import (  # noqa: E402
    MemcacheClientError,
    MemcacheIllegalInputError,
    MemcacheServerError,
    MemcacheUnknownCommandError,
)
from pymemcache import serde  # noqa: E402

MiB = 1024 * 1024
BIG = MiB - 512  # just under the 1 MiB item limit, key and overhead included
TOO_BIG = MiB + 1


def make_client(kind: str, server, **kwargs):
    opts = dict(connect_timeout=5, timeout=10, default_noreply=False)
    opts.update(kwargs)
    if kind == "Client":
        return Client((server.host, server.port), **opts)
    opts.setdefault("max_pool_size", 4)
    return PooledClient((server.host, server.port), **opts)


@pytest.fixture(params=["Client", "PooledClient"])
def client(request, server):
    c = make_client(request.param, server)
    yield c
    c.close()


@pytest.fixture(params=[False, True], ids=["reply", "noreply"])
def noreply(request):
    return request.param


# ---------------------------------------------------------------- storage commands


def test_set_get(client, key, noreply):
    k = key()
    assert client.set(k, b"hello", noreply=noreply) is True
    assert client.get(k) == b"hello"
    assert client.set(k, b"world", noreply=noreply) is True
    assert client.get(k) == b"world"
    assert client.get(key("missing")) is None
    assert client.get(key("missing"), default=b"dflt") == b"dflt"


def test_set_empty_value(client, key, noreply):
    k = key()
    assert client.set(k, b"", noreply=noreply) is True
    assert client.get(k) == b""
    assert client.get_many([k]) == {k: b""}


def test_set_many_get_many(client, key, noreply):
    values = {key(f"m{i}"): f"value-{i}".encode() for i in range(20)}
    assert client.set_many(values, noreply=noreply) == []
    missing = key("nope")
    got = client.get_many(list(values) + [missing])
    assert got == values
    assert missing not in got
    assert client.get_many([]) == {}


def test_get_many_500_keys(client, key):
    # pymemcache sends all keys in one `get` line (> 10 KB): the 2048-byte line limit
    # must not apply to retrieval commands.
    values = {key(f"many-key-number-{i:04d}"): str(i).encode() for i in range(500)}
    assert client.set_many(values) == []
    got = client.get_many(list(values))
    assert got == values
    got = client.gets_many(list(values))
    assert {k: v for k, (v, _) in got.items()} == values


def test_add(client, key, noreply):
    k = key()
    assert client.add(k, b"first", noreply=noreply) is True
    assert client.get(k) == b"first"
    result = client.add(k, b"second", noreply=noreply)
    assert result is (True if noreply else False)
    assert client.get(k) == b"first"


def test_replace(client, key, noreply):
    k = key()
    result = client.replace(k, b"x", noreply=noreply)
    assert result is (True if noreply else False)
    assert client.get(k) is None
    client.set(k, b"old")
    assert client.replace(k, b"new", noreply=noreply) is True
    assert client.get(k) == b"new"


def test_append_prepend(client, key, noreply):
    k = key()
    client.set(k, b"middle")
    assert client.append(k, b">>", noreply=noreply) is True
    assert client.prepend(k, b"<<", noreply=noreply) is True
    assert client.get(k) == b"<<middle>>"
    missing = key("missing")
    assert client.append(missing, b"a", noreply=noreply) is (True if noreply else False)
    assert client.prepend(missing, b"p", noreply=noreply) is (True if noreply else False)
    assert client.get(missing) is None


def test_append_keeps_flags(server, key):
    """append/prepend ignore the flags they are sent and keep the item's flags."""
    c = Client((server.host, server.port), timeout=10, default_noreply=False,
               deserializer=lambda k, v, flags: (v, flags))
    k = key()
    assert c.set(k, b"a", flags=5) is True
    assert c.append(k, b"b", flags=99) is True
    assert c.prepend(k, b"c", flags=77) is True
    assert c.get(k) == (b"cab", 5)
    c.close()


@pytest.mark.parametrize("flags", [0, 1, 0xFFFF, 0x10000, 2**32 - 1])
def test_flags_round_trip(server, key, flags):
    c = Client((server.host, server.port), timeout=10, default_noreply=False,
               deserializer=lambda k, v, f: (v, f))
    k = key()
    assert c.set(k, b"v", flags=flags) is True
    assert c.get(k) == (b"v", flags)
    assert c.gets(k)[0] == (b"v", flags)
    c.close()


def test_cas(client, key, noreply):
    k = key()
    client.set(k, b"v1")
    value, cas = client.gets(k)
    assert value == b"v1"
    assert re.fullmatch(rb"\d+", cas), cas
    # A stale unique: EXISTS -> False (noreply: True but nothing changes).
    stale = str(int(cas) + 1000).encode()
    assert client.cas(k, b"stale", stale, noreply=noreply) is (True if noreply else False)
    assert client.get(k) == b"v1"
    # The right unique: STORED.
    assert client.cas(k, b"v2", cas, noreply=noreply) is True
    value2, cas2 = client.gets(k)
    assert value2 == b"v2"
    assert cas2 != cas
    # Reusing the old unique fails now.
    assert client.cas(k, b"v3", cas, noreply=noreply) is (True if noreply else False)
    assert client.get(k) == b"v2"
    # cas on a missing key: NOT_FOUND -> None.
    missing = key("missing")
    assert client.cas(missing, b"x", cas, noreply=noreply) is (True if noreply else None)
    assert client.get(missing) is None


def test_cas_unique_changes_on_every_store(client, key):
    k = key()
    client.set(k, b"1")
    seen = {client.gets(k)[1]}
    client.set(k, b"2")
    seen.add(client.gets(k)[1])
    client.append(k, b"0")
    seen.add(client.gets(k)[1])
    client.incr(k, 1)
    seen.add(client.gets(k)[1])
    assert client.get(k) == b"21"
    assert len(seen) == 4, seen


def test_gets_missing_and_gets_many(client, key):
    assert client.gets(key("missing")) == (None, None)
    if isinstance(client, Client):  # PooledClient.gets has no defaults
        assert client.gets(key("missing"), default=b"d", cas_default=b"c") == (b"d", b"c")
    a, b = key("a"), key("b")
    client.set_many({a: b"A", b: b"B"})
    got = client.gets_many([a, b, key("missing")])
    assert set(got) == {a, b}
    assert got[a][0] == b"A" and got[b][0] == b"B"
    assert got[a][1] != got[b][1]
    assert client.gets_many([]) == {}


def test_delete(client, key, noreply):
    k = key()
    client.set(k, b"v")
    assert client.delete(k, noreply=noreply) is True
    assert client.get(k) is None
    assert client.delete(k, noreply=noreply) is (True if noreply else False)


def test_delete_many(client, key, noreply):
    keys = [key(f"d{i}") for i in range(10)]
    client.set_many({k: b"v" for k in keys})
    keep = key("keep")
    client.set(keep, b"kept")
    assert client.delete_many(keys + [key("missing")], noreply=noreply) is True
    assert client.get_many(keys) == {}
    assert client.get(keep) == b"kept"
    assert client.delete_many([]) is True


# ---------------------------------------------------------------- incr / decr


def test_incr_decr(client, key, noreply):
    k = key()
    client.set(k, b"10")
    if noreply:
        assert client.incr(k, 5, noreply=True) is None
        assert client.decr(k, 3, noreply=True) is None
        assert int(client.get(k)) == 12
    else:
        assert client.incr(k, 5) == 15
        assert client.decr(k, 3) == 12
        assert client.incr(k, 0) == 12
        assert client.decr(k, 100) == 0  # decr clamps at 0
        assert int(client.get(k)) == 0
        assert client.incr(k, 2**64 - 1) == 2**64 - 1
        assert client.incr(k, 1) == 0  # incr wraps modulo 2**64
        assert client.incr(k, 7) == 7
        assert int(client.get(k)) == 7  # memcached keeps space padding
    assert client.incr(key("missing"), 1) is None
    assert client.decr(key("missing"), 1) is None
    assert client.get(key("missing")) is None  # incr never creates


def test_incr_grows_and_decr_shrinks_value(client, key):
    k = key()
    client.set(k, b"99")
    assert client.incr(k, 1) == 100
    assert client.get(k) == b"100"
    assert client.decr(k, 95) == 5
    # memcached pads in place ("5  "); clients parse with int().
    assert int(client.get(k)) == 5
    assert client.get(k).strip() == b"5"


def test_incr_non_numeric_is_client_error(client, key):
    k = key()
    client.set(k, b"abc")
    with pytest.raises(MemcacheClientError) as e:
        client.incr(k, 1)
    assert "non-numeric" in str(e.value)
    with pytest.raises(MemcacheClientError):
        client.decr(k, 1)
    # A 21-digit number is not a u64 either.
    client.set(k, b"123456789012345678901")
    with pytest.raises(MemcacheClientError):
        client.incr(k, 1)
    # The client reconnects and the value is untouched.
    assert client.get(k) == b"123456789012345678901"


def test_incr_invalid_delta_is_client_error(client, key):
    k = key()
    client.set(k, b"1")
    with pytest.raises(MemcacheClientError) as e:
        client.incr(k, 2**64)
    assert "invalid numeric delta" in str(e.value)
    assert client.get(k) == b"1"


def test_incr_non_numeric_noreply_sends_nothing(server, key):
    c = make_client("Client", server)
    k = key()
    c.set(k, b"abc")
    assert c.incr(k, 1, noreply=True) is None
    # memcached sends no error line for a noreply command: the next reply is the get's.
    assert c.get(k) == b"abc"
    c.close()


def test_concurrent_incr_pooled(server, key):
    threads, per_thread = 8, 100
    c = make_client("PooledClient", server, max_pool_size=threads)
    k = key()
    c.set(k, b"0")
    errors = []

    def work():
        try:
            for _ in range(per_thread):
                c.incr(k, 1)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert errors == []
    assert int(c.get(k)) == threads * per_thread
    c.close()


# ---------------------------------------------------------------- touch / expiry


def test_touch(client, key, noreply):
    k = key()
    client.set(k, b"v")
    assert client.touch(k, 3600, noreply=noreply) is True
    assert client.get(k) == b"v"
    assert client.touch(key("missing"), 10, noreply=noreply) is (True if noreply else False)
    # Touching with a negative exptime expires the item at once.
    assert client.touch(k, -1, noreply=noreply) is True
    assert client.get(k) is None


@pytest.mark.parametrize(
    "expire, present",
    [
        (0, True),                      # never expires
        (-1, False),                    # negative: already expired (pymemcache's timeout=0)
        (4294967295, False),            # pylibmc's encoding of -1: int32 -1, expired
        (2592000, True),                # 30 days: still relative
        (2592001, False),               # > 30 days: absolute Unix time in 1970
        ("past", False),                # absolute, 1000 s ago
        ("future", True),               # absolute, 1000 s ahead
    ],
)
def test_set_expiry_rules(client, key, expire, present):
    now = int(time.time())
    expire = {"past": now - 1000, "future": now + 1000}.get(expire, expire)
    k = key()
    assert client.set(k, b"v", expire=expire) is True
    assert (client.get(k) == b"v") is present
    assert (k in client.get_many([k])) is present


def test_add_after_expired_item(client, key):
    k = key()
    client.set(k, b"old", expire=-1)
    assert client.add(k, b"new") is True
    assert client.get(k) == b"new"


def test_positive_ttl_expires(server, key):
    """The only test that sleeps: TTLs set by set, touch and cas all run out."""
    c = make_client("Client", server)
    a, b, d, keep = key("a"), key("b"), key("d"), key("keep")
    c.set(a, b"a", expire=1)
    c.set(b, b"b")
    assert c.touch(b, 1) is True
    c.set(d, b"d")
    _, cas = c.gets(d)
    assert c.cas(d, b"d2", cas, expire=1) is True
    c.set(keep, b"k", expire=60)
    assert c.get_many([a, b, d, keep]) == {a: b"a", b: b"b", d: b"d2", keep: b"k"}
    time.sleep(2.5)
    assert c.get_many([a, b, d, keep]) == {keep: b"k"}
    c.close()


# ---------------------------------------------------------------- big values


def test_big_binary_value(client, key, noreply):
    k = key()
    value = os.urandom(BIG)
    assert client.set(k, value, noreply=noreply) is True
    assert client.get(k) == value
    assert client.gets(k)[0] == value
    k2 = key("2")
    value2 = bytes(reversed(value))
    client.set(k2, value2)
    assert client.get_many([k, k2]) == {k: value, k2: value2}


def test_value_with_protocol_bytes(client, key):
    k = key()
    value = b"\r\nEND\r\nVALUE x 0 1\r\n\x00\xff" * 100
    client.set(k, value)
    assert client.get(k) == value


def test_too_big_value_is_server_error(client, key):
    k = key()
    client.set(k, b"old")
    with pytest.raises(MemcacheServerError) as e:
        client.set(k, os.urandom(TOO_BIG), noreply=False)
    assert "object too large for cache" in str(e.value)
    # memcached deletes the old value on a failed oversized set.
    assert client.get(k) is None
    # The server swallowed the data block: the connection keeps working.
    client.set(k, b"after")
    assert client.get(k) == b"after"


def test_too_big_value_noreply_is_silent(server, key):
    c = make_client("Client", server)
    k = key()
    c.set(k, b"old")
    assert c.set(k, b"x" * TOO_BIG, noreply=True) is True
    # No SERVER_ERROR line may be sent for a noreply command: the next reply is the get's.
    assert c.get(k) is None
    assert c.get(key("other")) is None
    c.close()


def test_big_values_store_too_large_stat(client, key, stats):
    before = int(stats()["store_too_large"])
    with pytest.raises(MemcacheServerError):
        client.set(key(), b"y" * (2 * MiB), noreply=False)
    assert int(stats()["store_too_large"]) == before + 1


# ---------------------------------------------------------------- keys


def test_bytes_and_unicode_keys(server, key):
    c = make_client("Client", server, allow_unicode_keys=True)
    uk = key("ключ-é-漢字-🔑")
    bk = key("bin-").encode() + b"\x01\x7f\x80\xfe\xff"
    assert c.set(uk, b"unicode") is True
    assert c.set(bk, b"bytes") is True
    assert c.get(uk) == b"unicode"
    assert c.get(bk) == b"bytes"
    assert c.get_many([uk, bk]) == {uk: b"unicode", bk: b"bytes"}
    assert c.delete(uk) is True
    assert c.get(uk) is None
    c.close()


def test_non_ascii_key_refused_without_allow_unicode(client, key):
    with pytest.raises(MemcacheIllegalInputError):
        client.set(key("é"), b"v")


def test_key_length_limit_is_250_bytes(client, key):
    base = key("")
    k250 = base + "a" * (250 - len(base))
    assert client.set(k250, b"v") is True
    assert client.get(k250) == b"v"
    with pytest.raises(MemcacheIllegalInputError, match="too long"):
        client.set(k250 + "a", b"v")
    with pytest.raises(MemcacheIllegalInputError):
        client.get(k250 + "a")


def test_multibyte_key_length_counts_bytes(server, key):
    c = make_client("Client", server, allow_unicode_keys=True)
    base = key("")
    k = base + "é" * ((250 - len(base)) // 2)  # 2 bytes per character
    assert len(k.encode()) <= 250
    assert c.set(k, b"v") is True
    assert c.get(k) == b"v"
    with pytest.raises(MemcacheClientError):
        c.set(k + "é", b"v")
    c.close()


def test_server_rejects_key_over_250_bytes(client, key):
    """The server's own check (pymemcache's is bypassed by raw_command)."""
    long_key = "k" * 251
    with pytest.raises(MemcacheClientError) as e:
        client.raw_command(f"get {long_key}", "\r\n")
    assert "bad command line format" in str(e.value)
    # Already-collected hits are dropped as well.
    k = key()
    client.set(k, b"v")
    with pytest.raises(MemcacheClientError):
        client.raw_command(f"get {k} {long_key}", "\r\n")
    assert client.get(k) == b"v"


def test_key_with_whitespace_refused_by_client(client):
    with pytest.raises(MemcacheIllegalInputError):
        client.set("has space", b"v")
    with pytest.raises(MemcacheIllegalInputError):
        client.set("has\nnewline", b"v")


# ---------------------------------------------------------------- serde


def test_pickle_serde_round_trip(server, key):
    c = make_client("Client", server, serde=serde.pickle_serde)
    values = {
        key("int"): 42,
        key("str"): "héllo wörld",
        key("bytes"): b"\x00\x01",
        key("dict"): {"a": [1, 2, 3], "b": None},
    }
    c.set_many(values)
    assert c.get_many(list(values)) == values
    assert c.incr(key("int"), 1) == 43
    assert c.get(key("int")) == 43
    c.close()


# ---------------------------------------------------------------- admin commands


def test_stats(client, key):
    s = client.stats()
    for name in (b"pid", b"uptime", b"time", b"version", b"curr_connections",
                 b"total_connections", b"cmd_get", b"cmd_set", b"get_hits",
                 b"get_misses", b"curr_items", b"total_items", b"bytes",
                 b"limit_maxbytes", b"threads", b"evictions"):
        assert name in s, name
    assert isinstance(s[b"pid"], int) and s[b"pid"] > 0
    assert isinstance(s[b"version"], bytes)
    assert s[b"limit_maxbytes"] == 64 * MiB
    assert abs(s[b"time"] - time.time()) < 5

    k = key()
    client.set(k, b"12345")
    before = client.stats()
    assert client.get(k) == b"12345"
    assert client.get(key("missing")) is None
    client.set(key("other"), b"x")
    after = client.stats()
    assert after[b"cmd_get"] == before[b"cmd_get"] + 2
    assert after[b"get_hits"] == before[b"get_hits"] + 1
    assert after[b"get_misses"] == before[b"get_misses"] + 1
    assert after[b"cmd_set"] == before[b"cmd_set"] + 1
    assert after[b"total_items"] == before[b"total_items"] + 1
    # (curr_items and bytes may also drop while expired items from other tests are
    # reclaimed in the background, so only their sanity is checked.)
    assert after[b"curr_items"] >= 1 and after[b"bytes"] > 0


def test_stats_counters_for_commands(client, key):
    k = key()
    client.set(k, b"1")
    before = client.stats()
    client.incr(k, 1)
    client.incr(key("missing"), 1)
    client.decr(k, 1)
    client.touch(k, 100)
    client.touch(key("missing"), 100)
    client.delete(k)
    client.delete(k)
    after = client.stats()
    diff = {n.decode(): after[n] - before[n] for n in (
        b"incr_hits", b"incr_misses", b"decr_hits", b"decr_misses", b"touch_hits",
        b"touch_misses", b"cmd_touch", b"delete_hits", b"delete_misses")}
    assert diff == {"incr_hits": 1, "incr_misses": 1, "decr_hits": 1, "decr_misses": 0,
                    "touch_hits": 1, "touch_misses": 1, "cmd_touch": 2,
                    "delete_hits": 1, "delete_misses": 1}


def test_version(client, server):
    v = client.version()
    assert re.fullmatch(rb"\d+\.\d+\.\d+.*", v), v
    major = int(v.split(b".")[0])
    assert 1 <= major <= 255  # libmemcached rejects major version 0
    assert server.stats()["version"].encode() == v


def test_flush_all(client, key, noreply):
    keys = [key(f"f{i}") for i in range(5)]
    client.set_many({k: b"v" for k in keys})
    assert client.flush_all(noreply=noreply) is True
    assert client.get_many(keys) == {}
    # Items stored after the flush are visible at once.
    client.set(keys[0], b"new")
    assert client.get(keys[0]) == b"new"


def test_flush_all_with_delay(server, key):
    c = make_client("Client", server)
    k = key()
    c.set(k, b"v")
    assert c.flush_all(delay=2) is True
    assert c.get(k) == b"v"  # still there until the delay runs out
    time.sleep(3.1)
    assert c.get(k) is None
    c.close()


def test_quit_closes_connection_and_client_reconnects(client, key):
    k = key()
    client.set(k, b"v")
    client.quit()
    assert client.get(k) == b"v"


def test_quit_raw(server):
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(b"quit\r\n")
        assert s.recv(100) == b""  # the server closes without a reply


def test_close_and_reuse(client, key):
    k = key()
    client.set(k, b"v")
    client.close()
    assert client.get(k) == b"v"
    client.close()
    client.close()


def test_raw_command(client, key):
    assert client.raw_command("version").startswith(b"VERSION ")
    assert client.raw_command("verbosity 1") == b"OK"
    k = key()
    client.set(k, b"abc")
    reply = client.raw_command(f"get {k}", "END\r\n")
    assert reply == f"VALUE {k} 0 3\r\nabc\r\n".encode()
    with pytest.raises(MemcacheUnknownCommandError):
        client.raw_command("no_such_command")
    with pytest.raises(MemcacheUnknownCommandError):
        client.raw_command("GET " + k)  # commands are case-sensitive


def test_gat_gats(client, key):
    """gat/gats (get-and-touch): pymemcache 4.0 has no method for them."""
    k = key()
    client.set(k, b"abc", flags=3)
    reply = client.raw_command(f"gat 3600 {k} {key('missing')}", "END\r\n")
    assert reply == f"VALUE {k} 3 3\r\nabc\r\n".encode()
    reply = client.raw_command(f"gats 3600 {k}", "END\r\n")
    m = re.fullmatch(rf"VALUE {re.escape(k)} 3 3 (\d+)\r\nabc\r\n".encode(), reply)
    assert m, reply
    assert m.group(1) == client.gets(k)[1]
    client.raw_command(f"gat -1 {k}", "END\r\n")  # touches to "expired"
    assert client.get(k) is None
