"""Fixtures for the real-client suite: one server process per test module, unique keys
per test, and a once-per-process Django configuration."""

from __future__ import annotations

import itertools
import os
import sys
import uuid

import pytest

# pylibmc's wheel bundles a libsasl2 that looks for its mechanism plugins where CentOS
# keeps them: point it at Debian's (libsasl2-modules) before anything imports pylibmc,
# whose import starts the SASL client library. (A pylibmc built here finds them anyway.)
_DEBIAN_SASL_PLUGINS = "/usr/lib/x86_64-linux-gnu/sasl2"
if os.path.isdir(_DEBIAN_SASL_PLUGINS):
    os.environ.setdefault("SASL_PATH", _DEBIAN_SASL_PLUGINS)

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # harness, cacheapp and the URLconf modules

import harness  # noqa: E402

_counter = itertools.count()


def pytest_report_header(config):
    return [f"server under test: {harness.server_kind()} ({harness.server_binary()})",
            f"CI={os.environ.get('CI', '')!r}: missing dependencies "
            + ("fail" if harness.in_ci() else "skip")]


@pytest.fixture(scope="module")
def server():
    """A fresh server for this test module; yields a harness.Server (see .address,
    .stats(), .raw()) and stops it by PID afterwards."""
    srv = harness.start_server()
    try:
        yield srv
    finally:
        alive = srv.alive()
        log = srv.log()
        srv.stop()
        if not alive:
            pytest.fail(f"server process {srv.pid} died during the module; log:\n{log}",
                        pytrace=False)


@pytest.fixture
def key():
    """`key("name")` -> a key unique to this test, so tests never see each other's keys."""
    prefix = f"t{next(_counter)}{uuid.uuid4().hex[:8]}:"

    def make(name: str = "k") -> str:
        return prefix + name

    make.prefix = prefix
    return make


@pytest.fixture
def stats(server):
    """`stats()` -> the server's `stats` as a dict of str -> str."""
    return server.stats


# ---- Django: configured once per process; CACHES is overridden per test. ----

from django_setup import DJANGO_BACKENDS, DJANGO_PYLIBMC_BINARY, setup_django  # noqa: E402


@pytest.fixture(params=[*sorted(DJANGO_BACKENDS), "pylibmc-binary"])
def django_cache(request, server, key):
    """Django's default cache pointed at the test server, once per memcached backend (and
    pylibmc once more over the binary protocol)."""
    setup_django()
    backend, options = DJANGO_BACKENDS.get(request.param, DJANGO_PYLIBMC_BINARY)
    harness.require_module(request.param.removesuffix("-binary"))
    from django.core.cache import caches
    from django.test import override_settings

    caches_setting = {
        "default": {
            "BACKEND": backend,
            "LOCATION": server.address,
            "KEY_PREFIX": key.prefix.rstrip(":"),
            "OPTIONS": dict(options),
        }
    }
    with override_settings(CACHES=caches_setting):
        cache = caches["default"]
        assert type(cache).__module__ + "." + type(cache).__name__ == backend
        try:
            yield cache
        finally:
            cache.close()
