"""memcached's own admin script, memcached-tool (Debian's memcached package), against the
server: `keys` and `dump` read `lru_crawler metadump all`, and a dump taken from one
server restores into another (the way a cache is carried from memcached to Larder)."""

import os
import re
import subprocess
import time

import pytest

import harness

TOOL = "/usr/share/memcached/scripts/memcached-tool"


@pytest.fixture(scope="module")
def tool():
    if not os.path.isfile(TOOL):
        harness.missing(f"{TOOL} (apt-get install memcached)")
    return TOOL


def run_tool(tool, address, *args):
    done = subprocess.run(["perl", tool, address, *args], capture_output=True, timeout=60, check=True)
    return done.stdout


def store(server, key, value: bytes, flags=0, exptime=0):
    reply = server.raw(f"set {key} {flags} {exptime} {len(value)}\r\n".encode() + value + b"\r\n")
    assert reply == b"STORED\r\n"


def test_keys_lists_every_item_with_its_expiry(server, key, tool):
    far = int(time.time()) + 86400
    for i in range(300):
        store(server, key(f"k{i}"), b"v", exptime=far if i % 2 else 0)
    out = run_tool(tool, server.address, "keys").decode()
    # key=<uri-encoded> exp=<unix time or -1> la=<unix time> cas=<n> fetch=<yes|no> cls=<n> size=<n>,
    # then (memcached 1.6.45, and Larder) ` flags=<n> `; 1.6.45 and Larder also start the
    # dump with `OK`, which memcached-tool prints as it prints every line.
    line = re.compile(r"^key=(\S+) exp=(-?\d+) la=(\d+) cas=(\d+) fetch=(yes|no) cls=(\d+) size=(\d+)( flags=\d+ )?$")
    seen = {}
    for text in out.splitlines():
        if text == "OK":
            continue
        m = line.match(text)
        assert m, text
        if m.group(1).startswith(key.prefix.replace(":", "%3A")):
            seen[m.group(1)] = int(m.group(2))
    assert len(seen) == 300
    for i in range(300):
        exp = seen[key(f"k{i}").replace(":", "%3A")]
        assert exp == (far if i % 2 else -1)


def test_a_dump_restores_into_another_server(server, key, tool):
    far = int(time.time()) + 86400
    values = {
        key("plain"): (b"hello", 0, 0),
        key("flags"): (b"with flags", 42, 0),
        key("ttl"): (b"expires tomorrow", 7, far),
        key("crlf"): (b"line\r\nbreak\r\nEND\r\n", 0, 0),
        key("big"): (os.urandom(200_000), 1, 0),
    }
    for k, (v, flags, exp) in values.items():
        store(server, k, v, flags, exp)
    dump = run_tool(tool, server.address, "dump")
    target = harness.start_server()
    try:
        with harness._connect(target.host, target.port) as s:
            s.sendall(dump + b"mn\r\n")
            replies = harness.read_until(s, b"MN\r\n")
        # Every item of the module's server (this test's among them) added, and stored.
        lines = replies.split(b"\r\n")
        assert lines[-2:] == [b"MN", b""]
        assert set(lines[:-2]) == {b"STORED"} and len(lines) - 2 >= len(values)
        for k, (v, flags, exp) in values.items():
            got = target.raw(f"mg {k} v f t\r\n".encode(), until=v + b"\r\n")
            header, _, body = got.partition(b"\r\n")
            assert body == v + b"\r\n"
            fields = dict((f[:1], f[1:]) for f in header.split()[2:])
            assert fields[b"f"] == str(flags).encode()
            ttl = int(fields[b"t"])
            assert (ttl == -1) if exp == 0 else (86400 - 60 < ttl <= 86400)
    finally:
        target.stop()
