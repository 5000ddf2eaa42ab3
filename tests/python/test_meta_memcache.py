"""meta-memcache (RevenueCat's meta-protocol client) against the server under test.

The library speaks only the meta protocol (mg ms md ma, plus mn after quiet commands), so
this module is the real-client check of Larder's meta commands: plain get/set/delete/
touch, CAS, set modes, stale-while-revalidate (`md I` invalidation, then the `W`/`Z`/`X`
flags on mg), recache and lease herd control, counters (`ma` with `N`/`J` create-on-miss),
multi-get, base64 (`b`) keys and quiet (`q`) mode.

Every client here has a pool of exactly one connection, so any stray or missing reply
line would desynchronise the next command on it; tests that care also check the pool's
counters (no connection thrown away, no new one made). Two clients stand for two
application processes where herd control needs a winner and a loser.

Server TTLs and access times are in whole seconds of the server's clock, which may tick
between two commands, so they are compared with one second of slack.
"""

from __future__ import annotations

import random
import time

import pytest

import harness

meta_memcache = harness.require_module("meta_memcache")
from meta_memcache import (  # noqa: E402
    CacheClient,
    Key,
    LeasePolicy,
    MemcacheServerError,
    RecachePolicy,
    RequestFlags,
    ServerAddress,
    SetMode,
    StalePolicy,
    Success,
    Value,
    connection_pool_factory_builder,
)
from meta_memcache_socket import (  # noqa: E402
    MA_MODE_DEC,
    SET_MODE_ADD,
    build_meta_arithmetic,
    build_meta_delete,
    build_meta_set,
)

# MixedSerializer's client flags (the `F` flag on ms) for each Python type.
F_STR, F_PICKLE, F_INT, F_ZLIB, F_BINARY = 0, 1, 2, 8, 16

ALL_GET_FLAGS = RequestFlags(
    return_value=True,
    return_cas_token=True,
    return_ttl=True,
    return_client_flag=True,
    return_last_access=True,
    return_fetched=True,
)


def make_client(server, read_buffer_size=4096):
    pool = connection_pool_factory_builder(
        initial_pool_size=1, max_pool_size=1, connection_timeout=5, recv_timeout=5,
        read_buffer_size=read_buffer_size,
    )
    return CacheClient.cache_client_from_servers(
        servers=[ServerAddress(server.host, server.port)],
        connection_pool_factory_fn=pool,
    )


@pytest.fixture
def client(server):
    return make_client(server)


@pytest.fixture
def other(server):
    """A second, independent client (another 'process')."""
    return make_client(server)


def pool_counters(c):
    (counters,) = c.get_counters().values()
    return counters


def assert_one_clean_connection(c):
    """The single pooled connection was never dropped or replaced."""
    counters = pool_counters(c)
    assert counters.total_errors == 0, counters
    assert counters.total_created == 1, counters
    assert counters.established == 1, counters


def meta(c, k, flags=ALL_GET_FLAGS):
    """The raw mg result (the library's Value/Success/Miss), flags and all."""
    return c.meta_get(Key(k), flags=flags)


def assert_ttl(actual, expected):
    assert actual is not None and expected - 1 <= actual <= expected, (actual, expected)


def deltas(server, before, names):
    after = server.stats()
    return {n: int(after[n]) - int(before[n]) for n in names}


# ---------------------------------------------------------------- get / set / types


@pytest.mark.parametrize(
    "value, client_flag",
    [
        ("plain text", F_STR),
        ("ünïcødé ✓", F_STR),
        (b"\x00\xff raw\r\nbytes END\r\n", F_BINARY),
        (0, F_INT),
        (-12345678901234567890, F_INT),
        ({"a": [1, 2, 3], "b": None}, F_PICKLE),
        ("compressible " * 50, F_STR | F_ZLIB),  # > 128 bytes: zlib-compressed
    ],
    ids=["str", "unicode", "bytes", "zero", "bigint", "pickle", "zlib"],
)
def test_set_get_roundtrip(client, key, value, client_flag):
    k = key()
    assert client.get(k) is None
    assert client.set(k, value, ttl=100) is True
    got = client.get(k)
    assert got == value
    assert type(got) is type(value)
    # The serializer's type tag travels as the item's client flags (ms F / mg f).
    assert meta(client, k).flags.client_flag == client_flag
    assert_one_clean_connection(client)


def test_empty_value(client, key):
    k = key()
    assert client.set(k, "", ttl=100) is True
    r = meta(client, k)
    assert isinstance(r, Value) and r.size == 0
    assert r.flags.client_flag == F_STR
    # The library skips deserialising empty data, so it comes back as b"".
    assert client.get(k) == b""


def test_values_spanning_many_reads(client, key):
    """A value much bigger than the client's 4 KiB read buffer."""
    k = key()
    value = random.Random(6).randbytes(30 * 1024)
    assert client.set(k, value, ttl=100) is True
    assert client.get(k) == value
    assert_one_clean_connection(client)


def test_large_incompressible_value(server, key):
    # meta-memcache re-reads its buffer once per 4 KiB received, which is quadratic for
    # big values: this client reads in 1 MiB chunks instead.
    client = make_client(server, read_buffer_size=1024 * 1024)
    k = key()
    value = random.Random(7).randbytes(700 * 1024)
    assert client.set(k, value, ttl=100) is True
    assert client.get(k) == value
    r = meta(client, k)
    # Everything over 128 bytes is zlib-compressed, even if that makes it bigger.
    assert r.flags.client_flag == F_BINARY | F_ZLIB
    assert len(value) < r.size < 1024 * 1024


def test_too_large_value_is_refused(client, server, key):
    k = key()
    value = random.Random(8).randbytes(2 * 1024 * 1024)  # over the 1 MiB item limit
    # The server answers SERVER_ERROR, which the library reports as a server error
    # (and drops that connection).
    with pytest.raises(MemcacheServerError):
        client.set(k, value, ttl=100)
    assert client.get(k) is None
    assert client.set(k, "small", ttl=100) is True
    assert client.get(k) == "small"
    # What the server said to the library's exact command line.
    cmd = build_meta_set(k, len(value), RequestFlags(cache_ttl=100, client_flag=F_BINARY))
    reply = server.raw(cmd + value + b"\r\nmn\r\n", until=b"MN\r\n")
    assert reply == b"SERVER_ERROR object too large for cache\r\nMN\r\n"


def test_get_reports_item_metadata(client, key):
    k = key()
    assert client.set(k, "v", ttl=100) is True
    first = meta(client, k)
    assert isinstance(first, Value)
    assert first.value == "v" and first.size == 1
    assert first.flags.client_flag == F_STR
    assert_ttl(first.flags.ttl, 100)
    assert first.flags.fetched is False  # never read since it was set
    assert first.flags.last_access in (0, 1)
    assert first.flags.cas_token > 0
    assert first.flags.win is None and first.flags.stale is False
    second = meta(client, k)
    assert second.flags.fetched is True
    assert second.flags.cas_token == first.flags.cas_token
    # set_cas returns the new item's CAS, the same that a later get reports.
    new_cas = client.set_cas(k, 42, ttl=0)
    assert new_cas is not None and new_cas != first.flags.cas_token
    assert client.get_cas(k) == (42, new_cas)
    third = meta(client, k)
    assert third.flags.client_flag == F_INT
    assert third.flags.ttl == -1  # ttl 0: never expires
    # A get without `v` is a hit with no value (HD), a miss is a miss.
    assert isinstance(meta(client, k, RequestFlags(return_ttl=True)), Success)
    assert not isinstance(meta(client, key("missing"), RequestFlags(return_ttl=True)), Success)


# ---------------------------------------------------------------- set modes


def test_set_modes(client, key):
    k, new = key("k"), key("new")
    assert client.set(k, "v1", ttl=100) is True
    assert client.set(k, "v2", ttl=100, set_mode=SetMode.ADD) is False
    assert client.get(k) == "v1"
    assert client.set(new, "n1", ttl=100, set_mode=SetMode.ADD) is True
    assert client.get(new) == "n1"
    assert client.set(key("absent"), "x", ttl=100, set_mode=SetMode.REPLACE) is False
    assert client.get(key("absent")) is None
    assert client.set(k, "r", ttl=100, set_mode=SetMode.REPLACE) is True
    assert client.set(k, "-tail", ttl=100, set_mode=SetMode.APPEND) is True
    assert client.set(k, "head-", ttl=100, set_mode=SetMode.PREPEND) is True
    assert client.get(k) == "head-r-tail"
    assert client.set(key("absent"), "x", ttl=100, set_mode=SetMode.APPEND) is False
    assert client.set(key("absent"), "x", ttl=100, set_mode=SetMode.PREPEND) is False
    assert client.get(key("absent")) is None
    # refill() is an add: it never overwrites what is there.
    assert client.refill(k, "refilled", ttl=100) is False
    assert client.get(k) == "head-r-tail"
    assert client.refill(key("fill"), "refilled", ttl=100) is True
    assert client.get(key("fill")) == "refilled"
    assert_one_clean_connection(client)


def test_refused_add_does_not_mark_item_fetched(client, key):
    """memcached 1.6.18 only moves an item it refuses to `add` over (ms ME / add) up
    its LRU: the item's fetched bit stays clear (mg h -> h0)."""
    k = key()
    assert client.set(k, "v", ttl=100) is True
    assert client.refill(k, "other", ttl=100) is False  # ms <k> 5 T100 F0 ME -> NS
    r = meta(client, k)
    assert r.value == "v"
    assert r.flags.fetched is False


def test_refused_add_refreshes_last_access(client, key):
    """... and sets its last-access time to now (mg l -> l0), even within a minute."""
    k = key()
    assert client.set(k, "v", ttl=100) is True
    time.sleep(2.5)
    assert client.refill(k, "other", ttl=100) is False
    r = meta(client, k)
    assert r.value == "v"
    assert r.flags.last_access <= 1, r.flags


# ---------------------------------------------------------------- delete / touch


def test_delete_and_invalidate(client, key):
    k = key()
    assert client.delete(k) is False  # NF
    assert client.invalidate(k) is True  # a miss counts as invalidated
    assert client.set(k, "v", ttl=100) is True
    assert client.delete(k) is True
    assert client.get(k) is None
    assert client.delete(k) is False
    assert client.set(k, "v", ttl=100) is True
    assert client.invalidate(k) is True
    assert client.get(k) is None
    assert_one_clean_connection(client)


def test_delete_with_cas(client, key):
    k = key()
    assert client.set(k, "v", ttl=100) is True
    _, cas = client.get_cas(k)
    assert client.delete(k, cas_token=cas + 1) is False  # EX
    assert client.get(k) == "v"
    assert client.delete(k, cas_token=cas) is True
    assert client.get(k) is None


def test_touch(client, key):
    k = key()
    assert client.touch(k, 50) is False
    assert client.set(k, "v", ttl=100) is True
    assert client.touch(k, 500) is True
    assert_ttl(meta(client, k).flags.ttl, 500)
    assert client.touch(k, 0) is True
    assert meta(client, k).flags.ttl == -1
    # get with touch_ttl (mg ... T<n>) returns the value and sets the new TTL.
    assert client.get(k, touch_ttl=300) == "v"
    assert_ttl(meta(client, k).flags.ttl, 300)
    assert client.get(key("missing"), touch_ttl=300) is None
    assert_one_clean_connection(client)


def test_touch_expires_item(client, key):
    k = key()
    assert client.set(k, "v", ttl=100) is True
    assert client.touch(k, 1) is True
    time.sleep(2.2)
    assert client.get(k) is None
    assert client.touch(k, 100) is False


# ---------------------------------------------------------------- CAS


def test_cas_conditioned_set(client, other, key):
    k = key()
    assert client.get_cas(k) == (None, None)
    # CAS write of a missing key: NF, nothing stored.
    assert client.set(k, "v", ttl=100, cas_token=12345) is False
    assert client.get(k) is None
    assert client.set(k, "v0", ttl=100) is True
    value, cas = client.get_cas(k)
    assert value == "v0" and isinstance(cas, int)
    # Someone else writes in between: our token is now out of date.
    assert other.set(k, "theirs", ttl=100) is True
    assert client.set(k, "mine", ttl=100, cas_token=cas) is False  # EX
    assert client.get(k) == "theirs"
    value, cas2 = client.get_cas(k)
    assert cas2 != cas
    assert client.set(k, "mine", ttl=100, cas_token=cas2) is True
    assert client.get(k) == "mine"
    # The token is spent: the same one cannot win twice.
    assert client.set(k, "again", ttl=100, cas_token=cas2) is False
    assert client.get(k) == "mine"
    # set_cas chains writes without re-reading.
    cas3 = client.set_cas(k, "chained", ttl=100, cas_token=client.get_cas(k)[1])
    assert cas3 is not None
    assert client.set_cas(k, "chained2", ttl=100, cas_token=cas3) is not None
    assert client.get(k) == "chained2"
    assert_one_clean_connection(client)


# ---------------------------------------------------------------- stale-while-revalidate


STALE = StalePolicy(mark_stale_on_deletion_ttl=30)


def test_stale_while_revalidate(client, other, key):
    k = key()
    assert client.set(k, "orig", ttl=100) is True
    _, orig_cas = client.get_cas(k)
    # md <k> I T30: the item stays, marked stale, with a 30 s TTL.
    assert client.delete(k, stale_policy=STALE) is True

    # The first reader after the invalidation wins the recache (W): the library makes
    # that look like a miss and hands over the CAS token to write back with.
    value, win_cas = client.get_cas(k)
    assert value is None
    assert isinstance(win_cas, int) and win_cas != orig_cas

    # Everyone else keeps getting the stale value (X), told the token is taken (Z).
    assert other.get(k) == "orig"
    r = meta(other, k)
    assert isinstance(r, Value)
    assert r.value == "orig"
    assert r.flags.stale is True
    assert r.flags.win is False
    assert r.flags.cas_token == win_cas
    assert_ttl(r.flags.ttl, 30)

    # The winner recaches with its token; the item is fresh again.
    assert client.set(k, "fresh", ttl=100, cas_token=win_cas) is True
    assert other.get(k) == "fresh"
    r = meta(other, k)
    assert r.value == "fresh"
    assert r.flags.stale is False
    assert r.flags.win is None
    assert_ttl(r.flags.ttl, 100)
    assert_one_clean_connection(client)
    assert_one_clean_connection(other)


def test_stale_invalidate_of_missing_key(client, key):
    k = key()
    assert client.delete(k, stale_policy=STALE) is False
    assert client.invalidate(k, stale_policy=STALE) is True
    assert client.get(k) is None  # nothing was created


def test_stale_write_with_old_cas(client, other, key):
    """With mark_stale_on_cas_mismatch a late writer holding a pre-invalidation token
    (ms ... C<old> I) is stored, but as a stale item; without it, the write fails."""
    k = key()
    assert client.set(k, "orig", ttl=100) is True
    _, old_cas = client.get_cas(k)
    assert client.invalidate(k, stale_policy=STALE) is True
    assert client.set(k, "late", ttl=100, cas_token=old_cas) is False
    assert client.set(
        k, "late", ttl=100, cas_token=old_cas,
        stale_policy=StalePolicy(mark_stale_on_cas_mismatch=True),
    ) is True
    r = meta(other, k)
    assert r.value == "late"
    assert r.flags.stale is True


# ---------------------------------------------------------------- recache / lease


def test_recache_policy(client, other, key):
    k = key()
    recache = RecachePolicy(ttl=30)
    assert client.set(k, "v", ttl=10) is True  # TTL below the recache threshold
    # mg ... R30: the first reader wins the early recache and sees a miss.
    value, cas = client.get_cas(k, recache_policy=recache)
    assert value is None and isinstance(cas, int)
    # The others still get the value while the winner refreshes it.
    assert other.get(k, recache_policy=recache) == "v"
    r = meta(other, k)
    assert r.flags.win is False and r.flags.stale is False
    assert client.set(k, "v2", ttl=100, cas_token=cas) is True
    # TTL is now above the threshold: no winner, everyone gets the value.
    assert client.get(k, recache_policy=recache) == "v2"
    assert other.get(k, recache_policy=recache) == "v2"
    assert meta(other, k).flags.win is None


def test_lease_on_miss(client, other, key):
    k = key()
    policy = LeasePolicy(ttl=30, miss_retries=3, miss_retry_wait=1.0, wait_backoff_factor=2.0)
    waits_winner, waits_loser = [], []
    # mg ... N30 on a miss: the first client gets the lease (W) and a miss.
    value, cas = client.get_or_lease_cas(k, policy, lease_wait_fn=waits_winner.append)
    assert value is None and isinstance(cas, int)
    assert waits_winner == []
    # The placeholder the server planted is empty, its token already taken (Z).
    r = meta(other, k)
    assert r.size == 0 and r.flags.win is False
    assert_ttl(r.flags.ttl, 30)
    # A loser polls (the wait function stands in for sleeping) and gives up.
    value, _ = other.get_or_lease_cas(k, policy, lease_wait_fn=waits_loser.append)
    assert value is None
    assert waits_loser == [1.0, 2.0]
    # The winner fills the placeholder with its token; now everyone sees it.
    assert client.set(k, "leased", ttl=100, cas_token=cas) is True
    assert other.get_or_lease(k, policy, lease_wait_fn=waits_loser.append) == "leased"
    assert waits_loser == [1.0, 2.0]


# ---------------------------------------------------------------- counters


def test_counters(client, key):
    k = key()
    # ma on a missing key without N: NF, nothing created.
    assert client.delta(k, 1) is False
    assert client.delta_and_get(k, 1) is None
    assert client.get(k) is None
    # Create on miss (ma ... N60 J10): the counter starts at the initial value, the
    # delta is not applied to it.
    assert client.delta_initialize_and_get(k, 5, initial_value=10, initial_ttl=60) == 10
    assert_ttl(meta(client, k).flags.ttl, 60)
    assert client.delta_initialize_and_get(k, 5, initial_value=10, initial_ttl=60) == 15
    assert client.delta_initialize(k, 2, initial_value=10, initial_ttl=60) is True
    assert client.get(k) == "17"
    assert client.delta_and_get(k, -5) == 12  # ma ... M- D5
    assert client.delta_and_get(k, -100) == 0  # decrement stops at zero
    # A decrement rewrites the value in place, padding it with spaces to its old length.
    assert client.get(k) == "0 "
    assert client.delta(k, 7) is True
    assert int(client.get(k)) == 7
    # Decrement with create-on-miss: the initial value, untouched by the delta.
    dk = key("dec")
    assert client.delta_initialize_and_get(dk, -3, initial_value=10, initial_ttl=60) == 10
    assert client.delta_and_get(dk, -3) == 7
    assert_one_clean_connection(client)


def test_counter_on_typed_int_and_limits(client, key):
    k = key()
    assert client.set(k, 41, ttl=100) is True  # stored as "41" with the INT flag
    assert client.delta_and_get(k, 1) == 42
    assert client.get(k) == 42  # the client flag survived the increment
    _, cas = client.get_cas(k)
    assert client.delta(k, 1, cas_token=cas + 1) is False  # EX
    assert client.delta(k, 1, cas_token=cas) is True
    assert client.delta(k, 1, refresh_ttl=500) is True  # ma ... T500
    assert_ttl(meta(client, k).flags.ttl, 500)
    assert client.get(k) == 44
    m = key("max")
    assert client.set(m, str(2**64 - 1), ttl=100) is True
    assert client.delta_and_get(m, 1) == 0  # 64-bit wrap-around
    assert client.get(m) == "0" + " " * 19


def test_counter_on_non_numeric_value(client, server, key):
    k = key()
    assert client.set(k, "abc", ttl=100) is True
    # The server's CLIENT_ERROR is not a meta reply; the library raises on it.
    with pytest.raises(MemcacheServerError):
        client.delta(k, 1)
    assert client.get(k) == "abc"
    reply = server.raw(build_meta_arithmetic(k, RequestFlags(ma_delta_value=1)))
    assert reply == b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"


# ---------------------------------------------------------------- multi-get


def test_multi_get(client, key):
    values = {key(f"m{i}"): v for i, v in enumerate(["a", b"b", 3, {"d": 4}, "e" * 300])}
    for k, v in values.items():
        assert client.set(k, v, ttl=100) is True
    missing = [key("nope1"), key("nope2")]
    order = [missing[0]] + list(values) + [missing[1]]
    got = client.multi_get(order)
    assert got == {**{Key(k): v for k, v in values.items()}, **{Key(k): None for k in missing}}
    with_cas = client.multi_get_cas(order)
    for k in values:
        assert with_cas[Key(k)] == client.get_cas(k)
    for k in missing:
        assert with_cas[Key(k)] == (None, None)
    # touch_ttl applies to every hit.
    client.multi_get(list(values), touch_ttl=700)
    for k in values:
        assert_ttl(meta(client, k).flags.ttl, 700)
    assert_one_clean_connection(client)


# ---------------------------------------------------------------- keys


def test_keys_sent_as_base64(client, server, key):
    """Keys with spaces, non-ASCII bytes or over 250 bytes go as base64 with `b`."""
    spaced, uni, long1, long2 = key("with space"), key("ключ"), key("x" * 300), key("y" * 300)
    for i, k in enumerate([spaced, uni, long1, long2]):
        assert client.set(k, f"v{i}", ttl=100) is True
    assert [client.get(k) for k in [spaced, uni, long1, long2]] == ["v0", "v1", "v2", "v3"]
    assert client.delete(spaced) is True
    assert client.get(spaced) is None
    assert client.get(uni) == "v1"
    # The server decoded the key: the text protocol finds it under its raw bytes.
    raw_key = uni.encode()
    reply = server.raw(b"get " + raw_key + b"\r\n", until=b"END\r\n")
    assert reply == b"VALUE " + raw_key + b" 0 2\r\nv1\r\nEND\r\n"


# ---------------------------------------------------------------- quiet mode


def test_noreply(client, server, key):
    """no_reply sends q and then mn; the state must still change, and the single
    connection must stay in step through failures the server still reports."""
    k, ctr = key("k"), key("ctr")
    assert client.set(k, "v1", ttl=100, no_reply=True) is True
    assert client.get(k) == "v1"
    # Failures are not suppressed by q (NS / EX / NF then MN), the library skips them.
    client.set(k, "v2", ttl=100, no_reply=True, set_mode=SetMode.ADD)
    assert client.get(k) == "v1"
    client.set(k, "v3", ttl=100, no_reply=True, cas_token=client.get_cas(k)[1] + 1)
    assert client.get(k) == "v1"
    client.refill(k, "v4", ttl=100, no_reply=True)
    assert client.get(k) == "v1"
    assert client.set(k, "v5", ttl=100, no_reply=True, set_mode=SetMode.APPEND) is True
    assert client.get(k) == "v1v5"
    client.delete(key("missing"), no_reply=True)
    client.delta(key("missing"), 1, no_reply=True)
    assert client.get(k) == "v1v5"
    assert client.delete(k, no_reply=True) is True
    assert client.get(k) is None
    assert client.invalidate(k, no_reply=True) is True
    assert client.delta_initialize(ctr, 1, initial_value=5, initial_ttl=60, no_reply=True)
    assert client.get(ctr) == "5"
    assert client.delta(ctr, 3, no_reply=True) is True
    assert client.delta(ctr, -1, no_reply=True) is True
    assert client.get(ctr) == "7"
    assert_one_clean_connection(client)


def test_noreply_wire_replies(server, key):
    """What the server answers to the library's own quiet command lines (+ mn)."""
    k = key()

    def send(cmd: bytes, data: bytes = b"") -> bytes:
        return server.raw(cmd + data + b"mn\r\n", until=b"MN\r\n")

    q = dict(no_reply=True)
    assert send(build_meta_set(k, 2, RequestFlags(cache_ttl=100, client_flag=0, **q)), b"10\r\n") \
        == b"MN\r\n"
    assert send(build_meta_set(k, 1, RequestFlags(mode=SET_MODE_ADD, **q)), b"x\r\n") \
        == b"NS\r\nMN\r\n"
    assert send(build_meta_set(k, 1, RequestFlags(cas_token=999999, **q)), b"x\r\n") \
        == b"EX\r\nMN\r\n"
    assert send(build_meta_arithmetic(k, RequestFlags(ma_delta_value=2, **q))) == b"MN\r\n"
    assert send(build_meta_arithmetic(k, RequestFlags(ma_delta_value=1, mode=MA_MODE_DEC, **q))) \
        == b"MN\r\n"
    assert server.raw(b"mg " + k.encode() + b" v\r\nmn\r\n", until=b"MN\r\n") \
        == b"VA 2\r\n11\r\nMN\r\n"
    assert send(build_meta_delete(k, RequestFlags(**q))) == b"MN\r\n"
    assert send(build_meta_delete(k, RequestFlags(**q))) == b"NF\r\nMN\r\n"
    assert send(build_meta_arithmetic(k, RequestFlags(ma_delta_value=1, **q))) == b"NF\r\nMN\r\n"


# ---------------------------------------------------------------- stats


STAT_NAMES = [
    "cmd_get", "get_hits", "get_misses", "cmd_set", "cmd_touch", "touch_hits",
    "touch_misses", "cas_hits", "cas_badval", "cas_misses", "incr_hits", "incr_misses",
    "decr_hits", "decr_misses", "delete_hits", "delete_misses",
]


def test_stats_counters(client, server, key):
    a, n = key("a"), key("n")
    assert client.set(a, "x", ttl=100) is True
    assert client.set(n, 5, ttl=100) is True
    before = server.stats()
    client.get(a)
    client.get(key("miss"))
    client.multi_get([a, n, key("miss2")])
    _, cas = client.get_cas(a)
    client.set(a, "y", ttl=100, cas_token=cas + 100)  # cas_badval
    client.set(a, "z", ttl=100, cas_token=cas)  # cas_hits
    client.set(key("nokey"), "z", ttl=100, cas_token=cas)  # cas_misses
    client.touch(a, 200)  # touch hit
    client.get(a, touch_ttl=300)  # touch hit
    client.delta(n, 2)
    client.delta(key("miss3"), 2)
    client.delta(n, -1)
    client.delta(key("miss4"), -1)
    client.delta_and_get(n, 1)
    client.delete(a)
    client.delete(a)
    assert deltas(server, before, STAT_NAMES) == {
        "cmd_get": 6, "get_hits": 4, "get_misses": 2, "cmd_set": 3,
        "cmd_touch": 2, "touch_hits": 2, "touch_misses": 0,
        "cas_hits": 1, "cas_badval": 1, "cas_misses": 1,
        "incr_hits": 2, "incr_misses": 1, "decr_hits": 1, "decr_misses": 1,
        "delete_hits": 1, "delete_misses": 1,
    }


def test_touch_of_missing_key_counts_as_get_miss(client, server, key):
    """memcached 1.6.18 only learns that an mg touches (T) while reading the flags of an
    item it found, so `mg <missing> T<n>` is counted as a get miss, not a touch miss."""
    before = server.stats()
    assert client.touch(key("missing"), 100) is False  # mg <k> T100 -> EN
    assert client.get(key("missing2"), touch_ttl=100) is None  # mg <k> f v t l h T100
    assert deltas(server, before, ["cmd_get", "get_misses", "cmd_touch", "touch_misses"]) == {
        "cmd_get": 2, "get_misses": 2, "cmd_touch": 0, "touch_misses": 0,
    }


def test_counter_update_in_place_is_not_a_new_item(client, server, key):
    """memcached rewrites a counter in place when the result fits in the old value's
    length; only a longer result (or a created counter) links a new item."""
    k = key()
    assert client.set(k, 5, ttl=100) is True
    before = server.stats()
    assert client.delta_and_get(k, 2) == 7  # "5" -> "7": in place
    assert client.delta_and_get(k, -1) == 6  # "7" -> "6": in place
    assert deltas(server, before, ["total_items"]) == {"total_items": 0}
    assert client.delta_and_get(k, 10) == 16  # "6" -> "16": longer, a new item
    assert deltas(server, before, ["total_items"]) == {"total_items": 1}
    assert client.delta_initialize_and_get(key("new"), 1, initial_value=3, initial_ttl=60) == 3
    assert deltas(server, before, ["total_items"]) == {"total_items": 2}
