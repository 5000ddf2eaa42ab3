"""SASL over the binary protocol with real clients: a server started with -S and
SASL_CONF_PATH pointing at a memcached.conf (`mech_list: plain cram-md5`) and a sasldb
made by saslpasswd2, as a memcached deployment sets it up. pylibmc with binary=True and a
username and password, and Django's PyLibMCCache with the OPTIONS from Django's
documentation, go through the whole cache API; a wrong password and a client without
credentials get nothing. Run against memcached (LARDER_TEST_SERVER=memcached), the same
tests check the suite itself."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess

import pytest

import harness
from django_setup import DJANGO_PYLIBMC_BINARY, setup_django

pylibmc = harness.require_module("pylibmc")

USER, PASSWORD = "django", "s3cret-pw"


def saslpasswd2() -> str:
    path = shutil.which("saslpasswd2") or shutil.which("saslpasswd2", path="/usr/sbin")
    if not path:
        harness.missing("saslpasswd2 (apt-get install sasl2-bin libsasl2-modules-db)")
    return path


@pytest.fixture(scope="module")
def sasl_server(tmp_path_factory):
    """A server under -S with its own SASL configuration; stopped by PID afterwards."""
    conf = tmp_path_factory.mktemp("sasl")
    db = conf / "sasldb2"
    host = socket.gethostname()
    subprocess.run([saslpasswd2(), "-p", "-c", "-a", "memcached", "-u", host, "-f", str(db), USER],
                   input=PASSWORD.encode(), check=True)
    (conf / "memcached.conf").write_text(f"mech_list: plain cram-md5\nsasldb_path: {db}\n")
    srv = harness.start_server(extra_args=["-S"], env={"SASL_CONF_PATH": str(conf)})
    try:
        yield srv
    finally:
        harness.stop_checked(srv)


def client(server, username=USER, password=PASSWORD):
    return pylibmc.Client([server.address], binary=True, username=username, password=password,
                          behaviors={"cas": True, "connect_timeout": 5000,
                                     "receive_timeout": 10_000_000, "send_timeout": 10_000_000})


def binary_request(sock, opcode: int, key: bytes = b"", value: bytes = b"") -> tuple[int, bytes]:
    header = struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), 0, 0, 0, len(key) + len(value), 0, 0)
    sock.sendall(header + key + value)
    head = harness.read_exactly(sock, 24)
    status, bodylen = struct.unpack(">HI", head[6:12])
    return status, harness.read_exactly(sock, bodylen)


def read_packet(sock) -> tuple[int, bytes, bytes]:
    head = harness.read_exactly(sock, 24)
    keylen, extlen = struct.unpack(">HB", head[2:5])
    status, bodylen = struct.unpack(">HI", head[6:12])
    body = harness.read_exactly(sock, bodylen)
    return status, body[extlen:extlen + keylen], body[extlen + keylen:]


def sasl_stats(server, group: bytes = b"") -> dict[str, str]:
    """A `stat` report over the binary protocol, after a PLAIN login (a server under -S
    answers nothing else)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        assert binary_request(s, 0x21, b"PLAIN", f"\0{USER}\0{PASSWORD}".encode()) == (0, b"Authenticated")
        s.sendall(struct.pack(">BBHBBHIIQ", 0x80, 0x10, len(group), 0, 0, 0, len(group), 0, 0) + group)
        out = {}
        while True:
            status, name, value = read_packet(s)
            assert status == 0, (status, value)
            if not name:
                return out
            out[name.decode()] = value.decode()


def test_pylibmc_whole_api_after_login(sasl_server, key):
    mc = client(sasl_server)
    k = key()
    assert mc.set(k, {"a": 1}) is True
    assert mc.get(k) == {"a": 1}
    assert mc.add(k, "x") is False
    assert mc.replace(k, "replaced") is True
    assert mc.append(k, "+") is True and mc.prepend(k, "-") is True
    assert mc.get(k) == "-replaced+"
    value, cas = mc.gets(k)
    assert mc.cas(k, "swapped", cas) is True
    assert mc.cas(k, "again", cas) is False
    n = key("n")
    mc.set(n, 10)
    assert mc.incr(n, 5) == 15 and mc.decr(n, 20) == 0
    many = {key(f"m{i}"): i for i in range(20)}
    assert mc.set_multi(many) == []
    assert mc.get_multi(list(many)) == many
    assert mc.touch(k, 100) is True
    assert mc.delete(k) is True and mc.get(k) is None
    stats = sasl_stats(sasl_server)
    assert int(stats["auth_cmds"]) >= 2 and int(stats["curr_items"]) >= 21
    assert sasl_stats(sasl_server, b"settings")["auth_enabled_sasl"] == "yes"
    mc.disconnect_all()


def test_wrong_password_and_no_login_get_nothing(sasl_server, key):
    k = key()
    assert client(sasl_server).set(k, "v") is True
    bad = client(sasl_server, password="wrong")
    with pytest.raises(pylibmc.Error):
        bad.get(k)
    errors_before = int(sasl_stats(sasl_server)["auth_errors"])
    with socket.create_connection(("127.0.0.1", sasl_server.port), timeout=10) as s:
        # No login: a get is refused with 0x20 "Auth failure." and the connection closed.
        assert binary_request(s, 0x00, k.encode()) == (0x20, b"Auth failure.")
        assert s.recv(1) == b""
    with socket.create_connection(("127.0.0.1", sasl_server.port), timeout=10) as s:
        assert binary_request(s, 0x20) == (0, b"PLAIN CRAM-MD5")
        assert binary_request(s, 0x21, b"PLAIN", f"\0{USER}\0nope".encode()) == (0x20, b"Auth failure.")
        assert binary_request(s, 0x21, b"PLAIN", f"\0{USER}\0{PASSWORD}".encode()) == (0, b"Authenticated")
        status, body = binary_request(s, 0x00, k.encode())
        assert status == 0 and body.endswith(b"v")
    # The one wrong password sent since errors_before was read.
    assert int(sasl_stats(sasl_server)["auth_errors"]) == errors_before + 1


def test_django_pylibmc_binary_with_credentials(sasl_server, key):
    """Django's documented PyLibMCCache OPTIONS: binary, username, password."""
    setup_django()
    from django.core.cache.backends.memcached import PyLibMCCache

    backend, options = DJANGO_PYLIBMC_BINARY
    assert backend.endswith("PyLibMCCache")
    cache = PyLibMCCache(sasl_server.address, {
        "KEY_PREFIX": key.prefix.rstrip(":"),
        "OPTIONS": {**options, "username": USER, "password": PASSWORD},
    })
    cache.set("page", {"html": "<p>ok</p>"}, 30)
    assert cache.get("page") == {"html": "<p>ok</p>"}
    assert cache.add("page", "other") is False
    assert cache.get_or_set("lazy", lambda: "computed") == "computed"
    cache.set_many({"a": 1, "b": 2})
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    cache.set("counter", 1)
    assert cache.incr("counter", 4) == 5 and cache.decr("counter") == 4
    assert cache.touch("page", 60) is True
    assert cache.has_key("page")
    cache.delete_many(["a", "b"])
    assert cache.get("a") is None
    assert cache.delete("page") is True
    cache.clear()
    assert cache.get("counter") is None
    cache.close()

    denied = PyLibMCCache(sasl_server.address, {"OPTIONS": {**options, "username": USER, "password": "x"}})
    with pytest.raises(pylibmc.Error, match="AUTHENTICATION FAILURE"):
        denied.get("anything")
    denied.close()
