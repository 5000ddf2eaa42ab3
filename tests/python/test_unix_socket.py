"""Larder (or memcached) on a unix domain socket (-s, -a): Django with
LOCATION "unix:/path" for both memcached backends, and the socket's permissions."""

import os
import stat
import subprocess
import tempfile
import time

import pytest

import harness
from django_setup import DJANGO_BACKENDS, setup_django


@pytest.fixture(scope="module")
def socket_path():
    """A server listening only on a unix socket with mode 0660."""
    tmp = tempfile.mkdtemp(prefix="larder-sock-")
    path = os.path.join(tmp, "larder.sock")
    args = [harness.server_binary(), "-s", path, "-a", "660", "-m", "16", "-t", "2"]
    if harness.server_kind() == "memcached" and os.geteuid() == 0:
        args += ["-u", "root"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not os.path.exists(path):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "socket never appeared"
        time.sleep(0.02)
    yield path
    proc.terminate()
    proc.wait(timeout=10)
    for f in os.listdir(tmp):
        os.unlink(os.path.join(tmp, f))
    os.rmdir(tmp)


def test_socket_mode_follows_dash_a(socket_path):
    mode = stat.S_IMODE(os.stat(socket_path).st_mode)
    assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
    assert mode == 0o660, oct(mode)


@pytest.mark.parametrize("backend_name", sorted(DJANGO_BACKENDS))
def test_django_over_unix_socket(socket_path, backend_name):
    setup_django()
    backend, options = DJANGO_BACKENDS[backend_name]
    harness.require_module(backend_name)
    from django.core.cache import caches
    from django.test import override_settings

    # pylibmc takes a bare path; pymemcache (and Django's docs) the "unix:" form.
    location = f"unix:{socket_path}" if "PyMemcache" in backend else socket_path
    setting = {"default": {"BACKEND": backend, "LOCATION": location, "KEY_PREFIX": backend_name,
                           "OPTIONS": dict(options)}}
    with override_settings(CACHES=setting):
        cache = caches["default"]
        try:
            cache.set("greeting", {"text": "héllo"}, 30)
            assert cache.get("greeting") == {"text": "héllo"}
            assert cache.incr("n", 1) if cache.add("n", 1) else False
            assert cache.get("n") == 2
            cache.delete("greeting")
            assert cache.get("greeting") is None
        finally:
            cache.close()
