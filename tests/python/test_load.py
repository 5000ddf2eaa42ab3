"""Many clients at once, and a full cache: what real clients see under load."""

from __future__ import annotations

import os
import threading

import pytest

import harness

harness.require_module("pymemcache")
from pymemcache.client.base import Client  # noqa: E402


def test_many_concurrent_clients(server, key):
    """20 threads, each with its own connection, interleave set/get/incr/delete."""
    threads, rounds = 20, 100
    counter = key("counter")
    Client((server.host, server.port), timeout=10).set(counter, b"0", noreply=False)
    errors = []

    def work(n):
        try:
            c = Client((server.host, server.port), timeout=10, default_noreply=False)
            for i in range(rounds):
                k = key(f"w{n}-{i % 10}")
                v = os.urandom(100 + i * 37)
                assert c.set(k, v) is True
                assert c.get(k) == v
                c.incr(counter, 1)
                if i % 3 == 0:
                    assert c.delete(k) is True
                    assert c.get(k) is None
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert errors == []
    c = Client((server.host, server.port), timeout=10)
    assert int(c.get(counter)) == threads * rounds
    c.close()


def test_full_cache_evicts_instead_of_failing(key):
    """With -m 8, writing 24 MB of 100 KB values must keep succeeding (eviction, as in
    memcached without -M): old keys go, the newest stay, and `evictions` counts it."""
    srv = harness.start_server(memory_mib=8)
    try:
        c = Client((srv.host, srv.port), timeout=10, default_noreply=False)
        value = os.urandom(100 * 1024)
        keys = [key(f"e{i}") for i in range(240)]
        for k in keys:
            assert c.set(k, value) is True, k
        stats = srv.stats()
        assert int(stats["evictions"]) > 0
        assert int(stats["bytes"]) <= 8 * 1024 * 1024
        assert int(stats["limit_maxbytes"]) == 8 * 1024 * 1024
        assert c.get(keys[0]) is None  # the oldest was evicted
        assert c.get(keys[-1]) == value  # the newest is there
        survivors = c.get_many(keys)
        assert 0 < len(survivors) < len(keys)
        assert all(v == value for v in survivors.values())
        c.close()
        assert srv.alive()
    finally:
        srv.stop()


def test_pipelined_big_batch(server, key):
    """pymemcache's set_many/get_many pipeline: 24 values of ~1 MiB sent before any
    reply is read (24 MB in flight), then one `get` for all of them."""
    c = Client((server.host, server.port), timeout=30, default_noreply=False)
    values = {key(f"b{i}"): os.urandom(1024 * 1024 - 512) for i in range(24)}
    assert c.set_many(values) == []
    got = c.get_many(list(values))
    assert len(got) == len(values)
    assert all(got[k] == v for k, v in values.items())
    assert c.delete_many(list(values)) is True
    assert c.get_many(list(values)) == {}
    c.close()
