"""Django 5.2's cache API through both memcached backends (PyMemcacheCache and
PyLibMCCache) against the server under test.

On the wire: Django timeout=0 is sent as exptime -1 by pymemcache and as 4294967295 by
pylibmc; both must mean "already expired"."""

from __future__ import annotations

import os
import time

import pytest

import harness
from django_setup import DJANGO_BACKENDS, setup_django

setup_django()
from django.core.cache import InvalidCacheKey  # noqa: E402

MiB = 1024 * 1024


def backend_name(cache) -> str:
    return "pylibmc" if type(cache).__name__ == "PyLibMCCache" else "pymemcache"


def binary(cache) -> bool:
    """Whether the cache speaks the binary protocol (PyLibMCCache with "binary": True)."""
    return bool(getattr(cache, "_options", {}).get("binary"))


def test_set_get(django_cache):
    c = django_cache
    c.set("str", "hello")
    c.set("dict", {"a": 1, "b": [1, 2, 3], "ü": "ß"})
    c.set("int", 12)
    c.set("bytes", b"\x00\x01\xff")
    c.set("none", None)
    assert c.get("str") == "hello"
    assert c.get("dict") == {"a": 1, "b": [1, 2, 3], "ü": "ß"}
    assert c.get("int") == 12
    assert c.get("bytes") == b"\x00\x01\xff"
    assert c.get("none", "default") is None  # a cached None is a hit
    assert c.get("missing") is None
    assert c.get("missing", "default") == "default"


def test_add(django_cache):
    c = django_cache
    assert c.add("k", "first") is True
    assert c.add("k", "second") is False
    assert c.get("k") == "first"


def test_get_or_set(django_cache):
    c = django_cache
    assert c.get_or_set("k", "computed") == "computed"
    assert c.get("k") == "computed"
    assert c.get_or_set("k", "other") == "computed"
    calls = []
    assert c.get_or_set("k2", lambda: calls.append(1) or "lazy") == "lazy"
    assert c.get_or_set("k2", lambda: calls.append(1) or "lazy") == "lazy"
    assert calls == [1]


def test_get_many_set_many(django_cache):
    c = django_cache
    data = {f"k{i}": {"i": i, "s": "é" * i} for i in range(30)}
    assert c.set_many(data) == []
    got = c.get_many(list(data) + ["missing"])
    assert got == data
    assert c.get_many([]) == {}


def test_delete_delete_many(django_cache):
    c = django_cache
    c.set_many({"a": 1, "b": 2, "c": 3})
    assert c.delete("a") is True
    assert c.delete("a") is False
    c.delete_many(["b", "c", "missing"])
    assert c.get_many(["a", "b", "c"]) == {}


def test_incr_decr(django_cache):
    c = django_cache
    c.set("n", 10)
    assert c.incr("n") == 11
    assert c.incr("n", 10) == 21
    assert c.decr("n") == 20
    assert c.decr("n", 5) == 15
    assert c.incr("n", -5) == 10  # a negative delta becomes decr
    assert c.decr("n", 100) == 0  # memcached clamps at 0
    assert c.get("n") == 0
    with pytest.raises(ValueError):
        c.incr("missing")
    with pytest.raises(ValueError):
        c.decr("missing")
    assert c.get("missing") is None


def test_incr_non_numeric(django_cache):
    c = django_cache
    c.set("s", "abc")
    if backend_name(c) == "pymemcache":
        from pymemcache.exceptions import MemcacheClientError as expected
    elif binary(c):
        import pylibmc
        # libmemcached reads the binary protocol's status 6 as an unknown read failure,
        # and then takes the server for down until its retry timeout (memcached too).
        with pytest.raises(pylibmc.UnknownReadFailure):
            c.incr("s")
        return
    else:
        import pylibmc
        expected = pylibmc.ClientError
    with pytest.raises(expected):
        c.incr("s")
    assert c.get("s") == "abc"


def test_touch(django_cache):
    c = django_cache
    c.set("k", "v", timeout=10)
    assert c.touch("k", 3600) is True
    assert c.touch("k", None) is True
    assert c.get("k") == "v"
    assert c.touch("missing", 60) is False
    assert c.touch("k", 0) is True  # timeout 0: expire now
    assert c.get("k") is None


def test_has_key(django_cache):
    c = django_cache
    c.set("k", "v")
    assert c.has_key("k") is True
    assert c.has_key("missing") is False
    assert "k" in c


def test_clear(django_cache):
    c = django_cache
    c.set_many({"a": 1, "b": 2})
    c.clear()  # flush_all
    assert c.get_many(["a", "b"]) == {}
    c.set("a", 3)
    assert c.get("a") == 3


def test_versions(django_cache):
    c = django_cache
    c.set("k", "v1", version=1)
    c.set("k", "v2", version=2)
    assert c.get("k") == "v1"
    assert c.get("k", version=2) == "v2"
    assert c.incr_version("k", version=2) == 3
    assert c.get("k", version=3) == "v2"
    assert c.get("k", version=2) is None


@pytest.mark.parametrize("timeout, present", [
    (None, True),        # never expires: exptime 0
    (0, False),          # expire at once: -1 (pymemcache) / 4294967295 (pylibmc)
    (-10, False),        # negative: already expired
    (3600, True),        # relative
    (60 * 86400, True),  # over 30 days: Django sends an absolute Unix time
])
def test_timeouts(django_cache, timeout, present):
    c = django_cache
    if binary(c) and timeout in (0, -10):
        # Django sends -1 for "expire now"; the binary protocol's expiration is unsigned,
        # so memcached (and Larder) read it as a time far in the future.
        present = True
    c.set("old", "old value")
    c.set("old", "new value", timeout=timeout)  # overwrites even when expired
    c.set("k", "v", timeout=timeout)
    assert (c.get("k") == "v") is present
    assert (c.get("old") == "new value") is present
    assert c.has_key("k") is present
    assert c.set_many({"m": 1}, timeout=timeout) == []
    assert (c.get("m") == 1) is present


def test_add_with_timeout_zero(django_cache):
    c = django_cache
    c.add("k", "v", timeout=0)
    if binary(c):
        assert c.get("k") == "v"  # -1, unsigned in the binary protocol: see test_timeouts
        return
    assert c.get("k") is None
    assert c.add("k", "v2") is True  # the expired item does not block add
    assert c.get("k") == "v2"


def test_large_values(django_cache):
    c = django_cache
    blob = os.urandom(900 * 1024)
    text = "Größe ≈ 漢字 🔑 " * 30_000  # ~ 660 KB of UTF-8
    nested = {"ключ": text[:100_000], "list": list(range(10_000))}
    c.set("blob", blob)
    c.set("text", text)
    c.set("nested", nested)
    assert c.get("blob") == blob
    assert c.get("text") == text
    assert c.get("nested") == nested
    assert c.get_many(["blob", "text"]) == {"blob": blob, "text": text}


def test_too_large_value(django_cache, server):
    c = django_cache
    c.set("big", "old")
    before = int(server.stats()["store_too_large"])
    if backend_name(c) == "pymemcache":
        from pymemcache.exceptions import MemcacheServerError as expected
    else:
        import pylibmc
        expected = pylibmc.TooBig
    with pytest.raises(expected):
        c.set("big", os.urandom(MiB + 100))
    # memcached counts only the text protocol's refusals.
    assert int(server.stats()["store_too_large"]) == before + (0 if binary(c) else 1)
    assert c.get("big") is None  # the server dropped the old value
    c.set("big", "fine")
    assert c.get("big") == "fine"


def test_unicode_keys(django_cache):
    c = django_cache
    c.set("ключ", "значение")
    c.set("clé-é", {"ü": 1})
    c.set("漢字", "kanji")
    assert c.get("ключ") == "значение"
    assert c.get_many(["ключ", "clé-é", "漢字"]) == {
        "ключ": "значение", "clé-é": {"ü": 1}, "漢字": "kanji"}
    assert c.delete("ключ") is True
    assert c.get("ключ") is None


def test_invalid_keys(django_cache):
    c = django_cache
    prefix_len = len(c.make_key(""))
    ok = "a" * (250 - prefix_len)
    c.set(ok, "v")
    assert c.get(ok) == "v"
    for bad in (ok + "a", "with space", "ctl\x01char", "new\nline"):
        with pytest.raises(InvalidCacheKey):
            c.set(bad, "v")
        with pytest.raises(InvalidCacheKey):
            c.get(bad)


def test_positive_timeout_expires(server, key):
    """The only Django test that sleeps; both backends share the one sleep."""
    harness.require_module("pymemcache")
    harness.require_module("pylibmc")
    from django.core.cache.backends.memcached import PyLibMCCache, PyMemcacheCache

    caches = [PyMemcacheCache(server.address, {"KEY_PREFIX": key("pm")}),
              PyLibMCCache(server.address, {"KEY_PREFIX": key("pl"),
                                            "OPTIONS": {"binary": False}})]
    for c in caches:
        c.set("short", "v", timeout=1)
        c.set("long", "v", timeout=60)
        c.set("touched", "v", timeout=60)
        assert c.touch("touched", 1) is True
        assert c.get_many(["short", "long", "touched"]) == {
            "short": "v", "long": "v", "touched": "v"}
    time.sleep(2.5)
    for c in caches:
        assert c.get_many(["short", "long", "touched"]) == {"long": "v"}, type(c)
        c.close()


def test_both_backends_share_data(server, key):
    """Values written by one backend are readable by the other (same wire format for
    str: flags 16 in both clients)."""
    harness.require_module("pymemcache")
    harness.require_module("pylibmc")
    from django.core.cache.backends.memcached import PyLibMCCache, PyMemcacheCache

    prefix = key("shared")
    a = PyMemcacheCache(server.address, {"KEY_PREFIX": prefix})
    b = PyLibMCCache(server.address, {"KEY_PREFIX": prefix, "OPTIONS": {"binary": False}})
    a.set("text", "written by pymemcache")
    assert b.get("text") == "written by pymemcache"
    b.set("n", 5)
    assert a.incr("n") == 6
    assert b.get("n") == 6
    a.close()
    b.close()


assert set(DJANGO_BACKENDS) == {"pymemcache", "pylibmc"}
