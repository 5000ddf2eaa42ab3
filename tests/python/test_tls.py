"""TLS (`-Z -o ssl_chain_cert=...,ssl_key=...`) with real clients: pymemcache's
`tls_context`, Django's PyMemcacheCache with `OPTIONS["tls_context"]`, `openssl s_client`,
mutual TLS (`ssl_verify_mode`, `ssl_ca_cert`), certificate reload (`refresh_certs`, and
SIGHUP in Larder only), `-l notls:` beside a TLS listener, and plain text sent to a TLS
port.

The certificates are made here with trustme: a CA, a server certificate for 127.0.0.1,
a client certificate, and a second CA ("stranger") with a client certificate of its own.
They are written to a temporary folder (0755, files 0644) that memcached, which drops to
another user when started as root, can read as well as Larder. Every test is about
memcached-compatible behaviour and runs against memcached -Z too, except the SIGHUP reload
(memcached 1.6.18 does not reload certificates on SIGHUP).

pylibmc is not here: libmemcached has no TLS. Neither is meta-memcache: it has no TLS
option, and a socket factory returning an ssl-wrapped socket does not help, because its
reader (meta_memcache_socket, in Rust) does I/O on the file descriptor itself, past the
TLS layer ("Bad response. Socket might have closed unexpectedly").
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

import harness

trustme = harness.require_module("trustme")
x509 = harness.require_module("cryptography.x509")
pymemcache = harness.require_module("pymemcache")
from pymemcache.client.base import Client  # noqa: E402
from pymemcache.exceptions import MemcacheError, MemcacheServerError  # noqa: E402

MiB = 1024 * 1024
BIG = MiB - 512  # just under the 1 MiB item limit, key and overhead included
HOST = "127.0.0.1"
POLL_TIMEOUT = 10.0


# ---------------------------------------------------------------- certificates


def serial_of(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


class Pki:
    """A folder of PEM files the server reads: `ca.pem` (for ssl_ca_cert),
    `server.pem`/`server.key` (ssl_chain_cert/ssl_key), plus the client identities."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="larder-tls-")
        os.chmod(self.dir, 0o755)  # memcached as root drops privileges; it must still read
        self.ca = trustme.CA()
        self.stranger_ca = trustme.CA()
        self.client = self.ca.issue_cert("client@larder.test")
        self.stranger = self.stranger_ca.issue_cert("client@larder.test")
        self.write("ca.pem", self.ca.cert_pem.bytes())
        self.server_leaf = None
        self.install_server(self.new_server_cert())

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def write(self, name: str, data: bytes) -> None:
        """Replaces the file as an operator would: written aside, then renamed over."""
        tmp = self.path(name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path(name))

    def new_server_cert(self):
        return self.ca.issue_cert(HOST)

    def install_server(self, leaf) -> int:
        """Writes `leaf` as server.pem/server.key; returns its serial number."""
        self.write("server.key", leaf.private_key_pem.bytes())
        self.write("server.pem", b"".join(p.bytes() for p in leaf.cert_chain_pems))
        self.server_leaf = leaf
        return self.server_serial

    @property
    def server_serial(self) -> int:
        return serial_of(self.server_leaf.cert_chain_pems[0].bytes())

    def server_args(self, **options: object) -> list[str]:
        """`-Z -o ssl_chain_cert=...,ssl_key=...[,more]` (a True option is a bare key)."""
        opts = [f"ssl_chain_cert={self.path('server.pem')}", f"ssl_key={self.path('server.key')}"]
        for k, v in options.items():
            opts.append(k if v is True else f"{k}={v}")
        return ["-Z", "-o", ",".join(opts)]

    def context(self, identity=None) -> ssl.SSLContext:
        """A client context that trusts our CA (and checks 127.0.0.1 against the server's
        certificate), showing `identity` (a trustme leaf) if given."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(ctx)
        if identity is not None:
            identity.configure_cert(ctx)
        return ctx

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def start_tls_server(pki: Pki, **options: object) -> harness.Server:
    """A server with TLS on its port; its .stats()/.raw() speak TLS (with a client
    certificate, so that they also work where the server requires one)."""
    return harness.start_server(extra_args=pki.server_args(**options),
                                tls=pki.context(pki.client))


@pytest.fixture(scope="module")
def pki():
    p = Pki()
    yield p
    p.remove()


@pytest.fixture(scope="module")
def tls_server(pki):
    """One TLS server for the module's client tests (the reload tests start their own)."""
    srv = start_tls_server(pki)
    try:
        yield srv
    finally:
        harness.stop_checked(srv)


@pytest.fixture
def fresh_pki():
    """Certificates for a test that rewrites them."""
    p = Pki()
    yield p
    p.remove()


# ---------------------------------------------------------------- raw TLS helpers


def tls_connect(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    sock = socket.create_connection((HOST, port), timeout=harness.SOCKET_TIMEOUT)
    try:
        return ctx.wrap_socket(sock, server_hostname=HOST)
    except BaseException:
        sock.close()
        raise


def request(sock: socket.socket, data: bytes, until: bytes = b"\r\n") -> bytes:
    sock.sendall(data)
    return harness.read_until(sock, until)


def peer_serial(sock: ssl.SSLSocket) -> int:
    return x509.load_der_x509_certificate(sock.getpeercert(binary_form=True)).serial_number


def new_connection_serial(port: int, ctx: ssl.SSLContext) -> int:
    """The serial number of the certificate a new TLS connection is shown (and a request
    answered on it, so the handshake is the server's whole answer)."""
    with tls_connect(port, ctx) as s:
        assert request(s, b"version\r\n").startswith(b"VERSION ")
        return peer_serial(s)


def attempt(port: int, ctx: ssl.SSLContext) -> bytes | Exception:
    """`version` on a new TLS connection: the reply, or the exception the handshake or the
    request ended in. With TLS 1.3 a client finishes its handshake before the server has
    judged the client's certificate, so a refusal may show only at the first read."""
    try:
        with tls_connect(port, ctx) as s:
            s.sendall(b"version\r\n")
            buf = b""
            while not buf.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    return ConnectionError(f"closed after {buf!r}")
                buf += chunk
            return buf
    except (ssl.SSLError, OSError) as e:  # SSLError, reset, EOF, broken pipe
        return e


def pm_client(port: int, ctx: ssl.SSLContext | None) -> Client:
    """pymemcache's Client over TLS (plain with ctx None), waiting for every reply."""
    return Client((HOST, port), tls_context=ctx, connect_timeout=5, timeout=10,
                  default_noreply=False)


def assert_served(result) -> None:
    assert isinstance(result, bytes) and result.startswith(b"VERSION "), result


def assert_refused(result) -> None:
    assert not isinstance(result, bytes), f"the server answered {result!r}"


def wait_for(what: str, cond, timeout: float = POLL_TIMEOUT):
    """Polls `cond()` until it returns a true value (which is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}", pytrace=False)
        time.sleep(0.02)


# ---------------------------------------------------------------- 1. pymemcache


@pytest.fixture
def client(tls_server, pki):
    c = Client((tls_server.host, tls_server.port), tls_context=pki.context(),
               connect_timeout=5, timeout=10, default_noreply=False)
    yield c
    c.close()


def test_pymemcache_speaks_tls(client, key, pki):
    assert client.set(key(), b"v") is True
    sock = client.sock
    assert isinstance(sock, ssl.SSLSocket)
    assert sock.version() in ("TLSv1.2", "TLSv1.3")
    assert peer_serial(sock) == pki.server_serial


def test_pymemcache_storage_commands(client, key):
    k = key()
    assert client.get(k) is None
    assert client.set(k, b"hello") is True
    assert client.get(k) == b"hello"
    assert client.add(k, b"other") is False
    assert client.add(key("new"), b"added") is True
    assert client.get(key("new")) == b"added"
    assert client.replace(key("absent"), b"x") is False
    assert client.get(key("absent")) is None
    assert client.replace(k, b"middle") is True
    assert client.append(k, b">>") is True
    assert client.prepend(k, b"<<") is True
    assert client.get(k) == b"<<middle>>"
    assert client.append(key("absent"), b"x") is False
    assert client.delete(k) is True
    assert client.get(k) is None
    assert client.delete(k, noreply=False) is False


def test_pymemcache_noreply_over_tls(client, key):
    # noreply sends nothing back; the next reply on the same TLS stream must still be its own.
    k = key()
    assert client.set(k, b"a", noreply=True) is True
    assert client.append(k, b"b", noreply=True) is True
    assert client.get(k) == b"ab"


def test_pymemcache_gets_cas(client, key):
    k = key()
    assert client.gets(k) == (None, None)
    client.set(k, b"v1")
    value, token = client.gets(k)
    assert value == b"v1" and token is not None
    assert client.cas(k, b"v2", token) is True
    assert client.cas(k, b"v3", token) is False  # the token is stale now
    assert client.get(k) == b"v2"
    assert client.cas(key("absent"), b"x", token) is None  # NOT_FOUND
    got = client.gets_many([k, key("absent")])
    assert list(got) == [k] and got[k][0] == b"v2" and got[k][1] != token


def test_pymemcache_incr_decr(client, key):
    k = key()
    assert client.incr(k, 1) is None  # NOT_FOUND
    client.set(k, b"10")
    assert client.incr(k, 5) == 15
    assert client.decr(k, 20) == 0  # clamps at 0
    assert client.incr(k, 2**64 - 1) == 2**64 - 1
    assert client.incr(k, 1) == 0  # wraps
    # memcached rewrites a shorter number in place, padded with spaces.
    assert client.get(k).rstrip(b" ") == b"0"


def test_pymemcache_touch(client, key):
    k = key()
    assert client.touch(k, 60) is False
    client.set(k, b"v", expire=1000)
    assert client.touch(k, 3600) is True
    assert client.get(k) == b"v"
    assert client.touch(k, -1) is True  # expire now
    assert client.get(k) is None


def test_pymemcache_many(client, key):
    values = {key(f"many-{i:03d}"): f"value-{i}".encode() * 3 for i in range(100)}
    assert client.set_many(values) == []
    absent = key("absent")
    got = client.get_many(list(values) + [absent])
    assert got == values
    doomed = list(values)[:50]
    assert client.delete_many(doomed) is True
    got = client.get_many(list(values))
    assert set(got) == set(list(values)[50:])


def test_pymemcache_value_near_1mib(client, key):
    # Several TLS records each way (a record carries at most 16 KiB).
    k = key()
    blob = os.urandom(BIG)
    assert client.set(k, blob) is True
    assert client.get(k) == blob
    value, token = client.gets(k)
    assert value == blob
    assert client.get_many([k, key("other")]) == {k: blob}
    with pytest.raises(MemcacheServerError):
        client.set(key("too-big"), b"x" * (MiB + 1))
    assert client.get(k) == blob  # the connection is still in step


def test_pymemcache_flush_all(client, key):
    client.set_many({key("a"): b"1", key("b"): b"2"})
    assert client.flush_all() is True
    assert client.get_many([key("a"), key("b")]) == {}
    client.set(key("a"), b"3")
    assert client.get(key("a")) == b"3"


def test_pymemcache_stats_version(client):
    version = client.version()
    assert re.fullmatch(rb"\d+\.\d+\.\d+\S*", version), version
    st = client.stats()
    assert st[b"version"] == version
    assert st[b"curr_connections"] >= 1
    # -Z lists the TLS counters; without ssl_session_cache there is no ssl_new_sessions.
    assert b"ssl_handshake_errors" in st
    assert b"time_since_server_cert_refresh" in st
    assert b"ssl_new_sessions" not in st
    settings = client.stats("settings")
    assert settings[b"ssl_enabled"] == b"yes"
    assert settings[b"ssl_chain_cert"].endswith(b"server.pem")


def test_session_cache_lists_new_sessions(pki):
    srv = start_tls_server(pki, ssl_session_cache=True)
    try:
        assert "ssl_new_sessions" in srv.stats()
        assert srv.stats("settings")["ssl_session_cache"] == "yes"
    finally:
        harness.stop_checked(srv)


# ---------------------------------------------------------------- 2. Django


@pytest.fixture
def tls_cache(tls_server, pki, key):
    from django_setup import DJANGO_BACKENDS, setup_django

    setup_django()
    from django.core.cache import caches
    from django.test import override_settings

    backend, options = DJANGO_BACKENDS["pymemcache"]
    assert backend == "django.core.cache.backends.memcached.PyMemcacheCache"
    setting = {"default": {"BACKEND": backend, "LOCATION": tls_server.address,
                           "KEY_PREFIX": key.prefix.rstrip(":"),
                           "OPTIONS": dict(options, tls_context=pki.context())}}
    with override_settings(CACHES=setting):
        cache = caches["default"]
        try:
            yield cache
        finally:
            cache.close()


def test_django_cache_api(tls_cache, client, key):
    c = tls_cache
    c.set("str", "hello")
    c.set("dict", {"a": [1, 2], "ü": "ß"})
    assert c.get("str") == "hello"
    assert c.get("dict") == {"a": [1, 2], "ü": "ß"}
    assert c.get("missing") is None
    assert c.get("missing", "default") == "default"
    # Django's key "<prefix>:1:str" really is on the TLS server (read by another client).
    assert client.get(f"{key.prefix.rstrip(':')}:1:str") is not None
    assert c.add("str", "other") is False
    assert c.add("new", "added") is True
    assert c.get("new") == "added"
    assert c.has_key("str") is True
    assert c.has_key("missing") is False
    assert c.delete("str") is True
    assert c.delete("str") is False
    assert c.get("str") is None


def test_django_many_and_counters(tls_cache):
    c = tls_cache
    data = {f"k{i}": {"i": i, "s": "é" * i} for i in range(100)}
    assert c.set_many(data) == []
    assert c.get_many(list(data) + ["missing"]) == data
    c.delete_many(list(data)[:10])
    assert c.get_many(list(data)[:10]) == {}
    c.set("n", 10)
    assert c.incr("n") == 11
    assert c.incr("n", 10) == 21
    assert c.decr("n", 5) == 16
    assert c.decr("n", 100) == 0
    with pytest.raises(ValueError):
        c.incr("missing")


def test_django_touch_get_or_set_clear(tls_cache):
    c = tls_cache
    c.set("k", "v", timeout=10)
    assert c.touch("k", 3600) is True
    assert c.touch("missing", 60) is False
    assert c.touch("k", 0) is True  # expire now
    assert c.get("k") is None
    assert c.get_or_set("g", "computed") == "computed"
    assert c.get_or_set("g", "other") == "computed"
    calls = []
    assert c.get_or_set("lazy", lambda: calls.append(1) or "lazy") == "lazy"
    assert c.get_or_set("lazy", lambda: calls.append(1) or "lazy") == "lazy"
    assert calls == [1]
    big = os.urandom(900 * 1024)
    c.set("big", big)
    assert c.get("big") == big
    c.clear()
    assert c.get_many(["g", "lazy", "big"]) == {}


# ---------------------------------------------------------------- 3. mutual TLS


@pytest.mark.parametrize("mode", [2, 3])
def test_verify_require(pki, mode):
    srv = start_tls_server(pki, ssl_verify_mode=mode, ssl_ca_cert=pki.path("ca.pem"))
    try:
        assert_refused(attempt(srv.port, pki.context()))  # no certificate
        assert_refused(attempt(srv.port, pki.context(pki.stranger)))  # another CA's
        assert_served(attempt(srv.port, pki.context(pki.client)))
        # A real client with a good certificate goes through the whole exchange.
        c = pm_client(srv.port, pki.context(pki.client))
        try:
            assert c.set("mtls", b"yes") is True
            assert c.get("mtls") == b"yes"
        finally:
            c.close()
        # ... and one without is not served.
        c = pm_client(srv.port, pki.context())
        try:
            with pytest.raises((ssl.SSLError, OSError, MemcacheError)):
                c.get("mtls")
        finally:
            c.close()
        # stats settings shows OpenSSL's flags: PEER|FAIL_IF_NO_PEER_CERT (3), |CLIENT_ONCE (7).
        assert srv.stats("settings")["ssl_verify_mode"] == {2: "3", 3: "7"}[mode]
    finally:
        harness.stop_checked(srv)


def test_verify_request(pki):
    srv = start_tls_server(pki, ssl_verify_mode=1, ssl_ca_cert=pki.path("ca.pem"))
    try:
        assert_served(attempt(srv.port, pki.context()))  # no certificate: let in
        assert_served(attempt(srv.port, pki.context(pki.client)))
        assert_refused(attempt(srv.port, pki.context(pki.stranger)))  # a bad one is not
        c = pm_client(srv.port, pki.context())
        try:
            assert c.set("anon", b"ok") is True
            assert c.get("anon") == b"ok"
        finally:
            c.close()
    finally:
        harness.stop_checked(srv)


def test_verify_none_ignores_client_certificates(pki):
    srv = start_tls_server(pki, ssl_ca_cert=pki.path("ca.pem"))  # ssl_verify_mode=0
    try:
        assert_served(attempt(srv.port, pki.context()))
        assert_served(attempt(srv.port, pki.context(pki.stranger)))
    finally:
        harness.stop_checked(srv)


# ---------------------------------------------------------------- 4. reload


def test_refresh_certs(fresh_pki):
    pki = fresh_pki
    srv = start_tls_server(pki)
    ctx = pki.context()
    old_serial = pki.server_serial
    try:
        assert new_connection_serial(srv.port, ctx) == old_serial
        # Connections opened before the reload: a raw one and a pymemcache client.
        held = tls_connect(srv.port, ctx)
        c = pm_client(srv.port, ctx)
        try:
            assert c.set("before", b"1") is True
            assert request(held, b"version\r\n").startswith(b"VERSION ")

            new_serial = pki.install_server(pki.new_server_cert())
            assert new_serial != old_serial
            assert request(held, b"refresh_certs\r\n") == b"OK\r\n"
            assert new_connection_serial(srv.port, ctx) == new_serial
            # The open connections keep their session (and the certificate they were shown).
            assert c.get("before") == b"1"
            assert c.set("after", b"2") is True
            assert peer_serial(c.sock) == old_serial
            assert request(held, b"get after\r\n", until=b"END\r\n") == \
                b"VALUE after 0 1\r\n2\r\nEND\r\n"

            # A broken certificate file: an error naming it, and the certificate in use
            # stays. (memcached's words are "Error loading the certificate chain: <file> :
            # <OpenSSL's reason>", not an `ERROR` line.)
            pki.write("server.pem", b"garbage\n")
            reply = request(held, b"refresh_certs\r\n")
            prefix = f"Error loading the certificate chain: {pki.path('server.pem')} : ".encode()
            assert reply.startswith(prefix) and reply.endswith(b"\r\n"), reply
            assert new_connection_serial(srv.port, ctx) == new_serial
            assert c.get("after") == b"2"
            # A broken key file likewise.
            pki.install_server(pki.server_leaf)
            pki.write("server.key", b"garbage\n")
            reply = request(held, b"refresh_certs\r\n")
            prefix = f"Error loading the key: {pki.path('server.key')} : ".encode()
            assert reply.startswith(prefix) and reply.endswith(b"\r\n"), reply
            assert new_connection_serial(srv.port, ctx) == new_serial
            assert request(held, b"get before\r\n", until=b"END\r\n") == \
                b"VALUE before 0 1\r\n1\r\nEND\r\n"
            # Mended again, the next refresh takes the new files.
            third = pki.install_server(pki.new_server_cert())
            assert request(held, b"refresh_certs\r\n") == b"OK\r\n"
            assert new_connection_serial(srv.port, ctx) == third
        finally:
            c.close()
            held.close()
    finally:
        harness.stop_checked(srv)


def test_refresh_certs_undecodable_certificate(fresh_pki):
    pki = fresh_pki
    srv = start_tls_server(pki)
    try:
        serial = pki.server_serial
        pki.write("server.pem", b"-----BEGIN CERTIFICATE-----\nnot a certificate\n"
                                b"-----END CERTIFICATE-----\n")
        reply = srv.raw(b"refresh_certs\r\n")
        assert new_connection_serial(srv.port, pki.context()) == serial
        prefix = f"Error loading the certificate chain: {pki.path('server.pem')} : ".encode()
        assert reply.startswith(prefix), reply
    finally:
        harness.stop_checked(srv)


def test_refresh_certs_without_tls(server):
    # `server` (conftest) is started without -Z.
    assert server.raw(b"refresh_certs\r\n") == b"Error TLS not enabled\r\n"
    assert server.raw(b"version\r\n").startswith(b"VERSION ")


@pytest.mark.skipif(harness.server_kind() == "memcached",
                    reason="Larder only: memcached 1.6.18 does not reload certificates on SIGHUP")
def test_sighup_reloads_certificates(fresh_pki):
    pki = fresh_pki
    srv = start_tls_server(pki)
    ctx = pki.context()
    old_serial = pki.server_serial
    try:
        held = tls_connect(srv.port, ctx)
        try:
            assert request(held, b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
            assert new_connection_serial(srv.port, ctx) == old_serial
            new_serial = pki.install_server(pki.new_server_cert())
            os.kill(srv.pid, signal.SIGHUP)  # the PID this test started, nothing else
            wait_for("a new connection to show the new certificate",
                     lambda: new_connection_serial(srv.port, ctx) == new_serial)
            assert request(held, b"get k\r\n", until=b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"
            assert peer_serial(held) == old_serial

            # A broken file on SIGHUP: the server goes on with the certificate it has. The
            # key is replaced too, so that a half-taken reload could not go unnoticed.
            pki.write("server.pem", b"garbage\n")
            pki.write("server.key", pki.new_server_cert().private_key_pem.bytes())
            log_before = srv.log()
            os.kill(srv.pid, signal.SIGHUP)
            wait_for("the server to log the failed reload",
                     lambda: srv.log() != log_before and "cannot reload" in srv.log())
            assert srv.alive()
            assert new_connection_serial(srv.port, ctx) == new_serial
            assert request(held, b"get k\r\n", until=b"END\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"
        finally:
            held.close()
    finally:
        harness.stop_checked(srv)


# ---------------------------------------------------------------- 5. openssl s_client


def test_openssl_s_client_version(tls_server, pki):
    openssl = shutil.which("openssl")
    if openssl is None:
        harness.missing("the openssl binary (apt-get install openssl)")
    # -quiet implies -ign_eof: s_client stays until the server closes, which `quit` asks for.
    proc = subprocess.run(
        [openssl, "s_client", "-connect", f"{HOST}:{tls_server.port}", "-quiet",
         "-CAfile", pki.path("ca.pem"), "-verify_ip", HOST, "-verify_return_error"],
        input=b"version\r\nquit\r\n", capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert re.fullmatch(rb"VERSION \d+\.\d+\.\d+\S*\r\n", proc.stdout), proc.stdout
    assert b"verify return:1" in proc.stderr  # it checked the chain to our CA


# ---------------------------------------------------------------- 6. notls beside TLS


def test_notls_listener_beside_tls(pki):
    ports = {}

    def listen(tls_port: int) -> str:
        ports["plain"] = harness.free_port()
        return f"notls:{HOST}:{ports['plain']},{HOST}:{tls_port}"

    srv = harness.start_server(extra_args=pki.server_args(), listen=listen, tls=pki.context())
    plain = ports["plain"]
    try:
        assert harness.raw(HOST, plain, b"version\r\n").startswith(b"VERSION ")
        assert harness.raw(HOST, plain, b"set shared 0 0 2\r\nhi\r\n") == b"STORED\r\n"
        # The TLS port serves the same cache over TLS.
        assert srv.raw(b"get shared\r\n", until=b"END\r\n") == b"VALUE shared 0 2\r\nhi\r\nEND\r\n"
        assert srv.stats("settings")["ssl_enabled"] == "yes"
        assert harness.stats(HOST, plain, "settings")["ssl_enabled"] == "yes"
        # The plain port does not speak TLS, and the TLS port does not speak plain text.
        with pytest.raises((ssl.SSLError, OSError)):
            tls_connect(plain, pki.context()).close()
        assert_refused_plain(srv.port)
        c = pm_client(plain, None)
        try:
            assert c.get("shared") == b"hi"
        finally:
            c.close()
    finally:
        harness.stop_checked(srv)


# ---------------------------------------------------------------- 7. plain text to TLS


MEMCACHED_REPLY = re.compile(rb"(VERSION|ERROR|CLIENT_ERROR|SERVER_ERROR|STORED|END|VALUE)")


def assert_refused_plain(port: int) -> bytes:
    """Plain `version` to a TLS port: no memcached reply, and the server closes."""
    got = b""
    with socket.create_connection((HOST, port), timeout=harness.SOCKET_TIMEOUT) as s:
        s.sendall(b"version\r\n")
        try:
            while True:
                chunk = s.recv(4096)  # a timeout here fails the test: it must close
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    assert not MEMCACHED_REPLY.search(got), got
    return got


def test_plain_text_to_tls_port(pki):
    srv = start_tls_server(pki)
    try:
        c = pm_client(srv.port, pki.context())
        try:
            assert c.set("k", b"v") is True
            before = srv.stat("ssl_handshake_errors")
            got = assert_refused_plain(srv.port)
            if got:  # at most a TLS alert record (content type 21)
                assert got[0] == 0x15, got
            if srv.kind == "larder":
                after = wait_for("ssl_handshake_errors to go up",
                                 lambda: (n := srv.stat("ssl_handshake_errors")) > before and n)
                assert after == before + 1
            # The TLS client on the same server is unaffected.
            assert c.get("k") == b"v"
            assert c.set("k2", b"v2") is True
            assert c.get_many(["k", "k2"]) == {"k": b"v", "k2": b"v2"}
            if srv.kind == "memcached":
                # memcached 1.6.18 counts a handshake error only when its first SSL_accept,
                # right at accept(), already fails; plain text that arrives a moment later
                # fails inside SSL_read and is not counted. So: up by one or unchanged.
                assert srv.stat("ssl_handshake_errors") in (before, before + 1)
            # A plaintext pymemcache client gets nowhere either.
            plain = pm_client(srv.port, None)
            try:
                with pytest.raises((MemcacheError, OSError)):
                    plain.get("k")
            finally:
                plain.close()
        finally:
            c.close()
    finally:
        harness.stop_checked(srv)
