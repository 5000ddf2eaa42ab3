#!/usr/bin/env python3
"""Turns the differential corpus (tests/corpus/*.txt) into fuzz seeds: one file per
session, holding what the session sends, prefixed by a framing byte (see harness.rs).
Repeats ({STR*N}) are capped so seeds stay small. Run from the repository root:
    python3 fuzz/seeds.py fuzz/corpus-raw
then minimise into fuzz/corpus/<target> with `cargo fuzz cmin`."""
import hashlib, pathlib, re, sys

def unescape(text):
    text = re.sub(r"\{(.*?)\*(\d+)\}", lambda m: m.group(1) * min(int(m.group(2)), 3000), text)
    out, i = bytearray(), 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n == "x":
                out.append(int(text[i + 2:i + 4], 16)); i += 4; continue
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "s": b" "}.get(n, n.encode())
            i += 2; continue
        out += c.encode("utf-8", "surrogateescape"); i += 1
    return bytes(out).replace(b"$CAS", b"1")

dest = pathlib.Path(sys.argv[1]); dest.mkdir(parents=True, exist_ok=True)
for f in sorted(pathlib.Path("tests/corpus").glob("*.txt")):
    session = None
    def emit():
        if session:
            for seed in (b"\x07", b"\x41"):
                data = seed + bytes(session)
                (dest / hashlib.sha1(data).hexdigest()).write_bytes(data)
    for line in f.read_text().splitlines():
        if line.startswith("==="):
            emit(); session = bytearray(); continue
        if session is None: continue
        line = re.sub(r"^@\d+ ", "", line)
        m = re.match(r"^(>=|>\||>|\+=|\+) (.*)$", line)
        if not m: continue
        session += unescape(m.group(2))
        if m.group(1) in (">", "+"): session += b"\r\n"
    emit()

# Binary-protocol seeds (for the `binary` and `binary_exec` targets), written when a second
# argument is given:
#     python3 fuzz/seeds.py fuzz/corpus-raw fuzz/corpus-raw-binary
# Every opcode memcached answers, quiet variants, SASL, pipelines, and headers that lie.
import struct

def pkt(op, key=b"", extras=b"", value=b"", opaque=0x1234, cas=0, magic=0x80,
        keylen=None, extlen=None, bodylen=None):
    body = len(extras) + len(key) + len(value)
    return struct.pack(">BBHBBHIIQ", magic, op,
                       len(key) if keylen is None else keylen,
                       len(extras) if extlen is None else extlen, 0, 0,
                       body if bodylen is None else bodylen, opaque, cas) + extras + key + value

def store(op, key, value, flags=0, exptime=0, **kw):
    return pkt(op, key, struct.pack(">II", flags, exptime), value, **kw)

def arith(op, key, delta=1, initial=0, exptime=0, **kw):
    return pkt(op, key, struct.pack(">QQI", delta, initial, exptime), **kw)

def binary_seeds():
    s = {}
    for op in (0x00, 0x09, 0x0c, 0x0d):
        s[f"get-{op:02x}"] = store(0x01, b"k", b"v") + pkt(op, b"k") + pkt(op, b"miss") + pkt(0x0a)
    for op in (0x01, 0x02, 0x03, 0x11, 0x12, 0x13):
        s[f"store-{op:02x}"] = (store(op, b"k", b"hello", flags=7, exptime=100) + store(op, b"k", b"again")
                                + pkt(0x00, b"k") + pkt(0x0a))
        s[f"store-cas-{op:02x}"] = store(0x01, b"k", b"v") + store(op, b"k", b"w", cas=1) + store(op, b"k", b"x", cas=99)
    for op in (0x0e, 0x0f, 0x19, 0x1a):
        s[f"concat-{op:02x}"] = pkt(op, b"k", value=b"x") + store(0x01, b"k", b"v") + pkt(op, b"k", value=b"yz") + pkt(0x00, b"k")
    for op in (0x04, 0x14):
        s[f"delete-{op:02x}"] = store(0x01, b"k", b"v") + pkt(op, b"k") + pkt(op, b"k") + pkt(op, b"k", cas=5)
    for op in (0x05, 0x06, 0x15, 0x16):
        s[f"arith-{op:02x}"] = (arith(op, b"n", 5, 10) + arith(op, b"n", 3) + arith(op, b"m", 1, 0, 0xffffffff)
                                + store(0x01, b"t", b"text") + arith(op, b"t") + arith(op, b"n", 1, cas=77))
    for op in (0x1c, 0x1d, 0x1e, 0x23, 0x24):
        s[f"touch-{op:02x}"] = store(0x01, b"k", b"v") + pkt(op, b"k", struct.pack(">I", 10)) + pkt(op, b"miss", struct.pack(">I", 10))
    s["flush"] = store(0x01, b"k", b"v") + pkt(0x08) + pkt(0x18, extras=struct.pack(">I", 2)) + pkt(0x00, b"k")
    s["noop-version"] = pkt(0x0a) + pkt(0x0b) + pkt(0x0a, opaque=0xdeadbeef)
    s["quit"] = pkt(0x0b) + pkt(0x07) + pkt(0x0a)
    s["quitq"] = pkt(0x17) + pkt(0x0a)
    for key in (b"", b"items", b"slabs", b"sizes", b"settings", b"reset", b"detail on", b"detail dump", b"nope"):
        s[f"stat-{key.decode().replace(' ', '_') or 'general'}"] = store(0x01, b"k", b"v") + pkt(0x10, key)
    s["sasl"] = (pkt(0x20) + pkt(0x21, b"PLAIN", value=b"\0alice\0secret") + pkt(0x22, b"PLAIN", value=b"x")
                 + pkt(0x21, b"CRAM-MD5") + pkt(0x22, b"CRAM-MD5", value=b"alice 0123456789abcdef0123456789abcdef")
                 + pkt(0x0b) + pkt(0x00, b"k"))
    s["sasl-step-first"] = pkt(0x22, b"PLAIN", value=b"\0alice\0secret") + pkt(0x0a)
    s["sasl-long-mech"] = pkt(0x21, b"M" * 40, value=b"data") + pkt(0x20)
    s["sasl-big-data"] = pkt(0x21, b"PLAIN", value=b"d" * 3000) + pkt(0x20)
    s["unknown-ops"] = b"".join(pkt(op, b"k", value=b"body") for op in (0x1b, 0x1f, 0x25, 0x30, 0x83, 0xff)) + pkt(0x0a)
    s["pipeline-quiet"] = (b"".join(store(0x11, b"k%d" % i, b"v" * i) for i in range(20))
                           + b"".join(pkt(0x0d, b"k%d" % i) for i in range(25)) + pkt(0x0a))
    s["pipeline-mixed"] = (store(0x01, b"a", b"1") + arith(0x05, b"a", 2) + pkt(0x0e, b"a", value=b"0")
                           + pkt(0x0c, b"a") + pkt(0x04, b"a") + pkt(0x00, b"a") + pkt(0x0b) + pkt(0x10, b"items"))
    s["too-large"] = store(0x01, b"k", b"v") + store(0x01, b"k", b"x" * 3000) + pkt(0x00, b"k") + store(0x02, b"j", b"y" * 2100)
    s["evict"] = b"".join(store(0x11, b"key%03d" % i, b"v" * 1500) for i in range(60)) + pkt(0x0a)
    # Headers that lie.
    s["keylen-over-body"] = pkt(0x00, b"key", bodylen=1) + pkt(0x0a)
    s["ext-key-over-body"] = store(0x01, b"key", b"", bodylen=9)
    s["body-max"] = pkt(0x01, b"k", b"\0" * 8, bodylen=0xffffffff)
    s["body-1g-silence"] = pkt(0x01, b"k", b"\0" * 8, bodylen=(1 << 30) - 9 + 9)
    s["body-1g-plus"] = pkt(0x01, b"k", b"\0" * 8, bodylen=(1 << 30) + 1)
    s["keylen-65535"] = pkt(0x00, keylen=65535, bodylen=65535)
    s["keylen-251"] = pkt(0x00, b"k" * 251)
    s["extlen-255"] = pkt(0x00, b"k", b"e" * 255)
    s["bad-magic"] = pkt(0x0a, magic=0x81) + pkt(0x0a)
    s["wrong-extras"] = pkt(0x01, b"k", b"\0" * 4, b"v") + pkt(0x0a)
    s["get-with-value"] = pkt(0x00, b"k", value=b"v") + pkt(0x0a)
    s["noop-with-body"] = pkt(0x0a, value=b"x")
    s["short-body-unknown"] = pkt(0x40, bodylen=30) + pkt(0x0a) + pkt(0x0a)
    s["garbage-after"] = pkt(0x0a) + b"GARBAGE\r\nget k\r\n"
    s["binary-then-text"] = pkt(0x0b) + b"version\r\n"
    s["truncated"] = store(0x01, b"k", b"value")[:-2]
    return s

if len(sys.argv) > 2:
    dest = pathlib.Path(sys.argv[2]); dest.mkdir(parents=True, exist_ok=True)
    for name, wire in binary_seeds().items():
        for seed in (b"\x07", b"\x41", b"\x83", b"\xf0"):
            (dest / f"{name}-{seed[0]:02x}").write_bytes(seed + wire)
