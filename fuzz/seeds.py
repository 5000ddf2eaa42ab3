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
