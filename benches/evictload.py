"""Request sequences for eviction benchmarks, a pipelined replay client, and the cache
simulations they are judged against (scripts/evictbench).

A sequence is a list of integer key ids; `key_bytes` names id `i` `k:NNNNNNNNN`, so every
key has the same length and, with one value size, every item the same size: the cache's
item count is then its capacity in items, the unit the simulations use. Everything is
seeded: the same arguments give the same sequence on every machine.

Only the standard library here; `simulate` imports libcachesim (PyPI) when called.
"""

import collections
import os
import random
import socket
import struct
import tempfile

# One-time keys (each asked for once) are ids from here on, apart from every other range.
ONE_TIME_BASE = 900_000_000


def key_bytes(i):
    return b"k:%09d" % i


# --- workloads --------------------------------------------------------------------------


class Zipf:
    """YCSB's ZipfianGenerator (Gray et al.): ranks in [0, n), rank 0 the hottest. The
    zeta sum is computed once per (n, theta), so many draws are cheap."""

    def __init__(self, n, theta):
        self.n, self.theta = n, theta
        zetan = 0.0
        for i in range(1, n + 1):
            zetan += i ** -theta
        self.zetan = zetan
        self.alpha = 1 / (1 - theta)
        self.eta = (1 - (2 / n) ** (1 - theta)) / (1 - (1 + 2 ** -theta) / zetan)
        self.half = 1 + 0.5 ** theta

    def draw(self, rng, count):
        n, zetan, eta, alpha, half = self.n, self.zetan, self.eta, self.alpha, self.half
        rnd = rng.random
        out = []
        for _ in range(count):
            u = rnd()
            uz = u * zetan
            if uz < 1:
                out.append(0)
            elif uz < half:
                out.append(1)
            else:
                out.append(min(n - 1, int(n * (eta * u - eta + 1) ** alpha)))
        return out


def scatter(ranks, universe, seed):
    """Rank -> key id by an affine permutation of [0, universe) (universe prime), so the
    hottest keys are not neighbours in the id space (nor in a server's hash order)."""
    rng = random.Random(seed)
    a = rng.randrange(1, universe)
    b = rng.randrange(universe)
    return [(a * r + b) % universe for r in ranks]


def is_prime(n):
    if n < 2:
        return False
    f = 2
    while f * f <= n:
        if n % f == 0:
            return False
        f += 1
    return True


def prime_at_least(n):
    while not is_prime(n):
        n += 1
    return n


def zipf(keys, requests, theta, seed):
    """`requests` draws of Zipf(`theta`) over `keys` keys."""
    universe = prime_at_least(keys)
    z = Zipf(universe, theta)
    return scatter(z.draw(random.Random(seed), requests), universe, seed + 1)


def with_one_time(seq, share, seed):
    """Replaces `share` of the requests, at random, with keys asked for once."""
    rng = random.Random(seed)
    out = []
    one = ONE_TIME_BASE
    for k in seq:
        if rng.random() < share:
            out.append(one)
            one += 1
        else:
            out.append(k)
    return out


def hot_and_sweeps(hot_keys, requests, phase, sweep, sweep_space, seed, theta=0.99):
    """A hot set (Zipf 0.99 over `hot_keys` keys) asked for `phase` requests at a time,
    then a sequential sweep over `sweep` keys of a larger table (`sweep_space` ids, the
    sweeps going round it), and so on: a batch job reading a table through the cache
    between bursts of the hot set."""
    hot = zipf(hot_keys, requests, theta, seed)
    base = 100_000_000  # apart from the hot ids
    out = []
    at = 0  # next sweep id
    h = 0
    while len(out) < requests:
        take = min(phase, requests - len(out))
        out.extend(hot[h:h + take])
        h += take
        take = min(sweep, requests - len(out))
        for _ in range(take):
            out.append(base + at)
            at = (at + 1) % sweep_space
    return out


def shifting(keys, requests, phase, theta, seed):
    """Zipf(`theta`) over `keys` keys whose ranks are dealt to the keys afresh every
    `phase` requests (a new affine permutation per phase): the hot set moves abruptly,
    and yesterday's hot keys are as cold as any."""
    universe = prime_at_least(keys)
    z = Zipf(universe, theta)
    rng = random.Random(seed)
    out = []
    p = 0
    while len(out) < requests:
        take = min(phase, requests - len(out))
        out.extend(scatter(z.draw(rng, take), universe, seed * 1000 + p))
        p += 1
    return out


# --- replay against a server ------------------------------------------------------------


class Client:
    """memcached text protocol over one blocking loopback socket, pipelined."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        self.sock.close()

    def roundtrip(self, payload, count, term):
        """Sends `payload`, reads until `count` occurrences of `term`; returns the bytes."""
        self.sock.sendall(payload)
        buf = bytearray()
        found = 0
        tl = len(term)
        while found < count:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("server closed the connection")
            start = max(0, len(buf) - tl + 1)
            buf += chunk
            found += buf.count(term, start)
        return bytes(buf)

    def stats(self):
        out = {}
        for line in self.roundtrip(b"stats\r\n", 1, b"END\r\n").split(b"\r\n"):
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"STAT":
                try:
                    out[parts[1].decode()] = int(parts[2])
                except ValueError:
                    out[parts[1].decode()] = parts[2].decode()
        return out


def replay(c, seq, value, batch=500, on_batch=None):
    """Get then set on a miss, request by request as far as the cache can tell: gets go in
    pipelined batches of `batch`, and each miss is set (noreply) ahead of the next batch's
    gets. A key asked for again in the same batch after its miss counts as a hit (run one
    by one, it would have been set in between), so the count matches a one-by-one
    replay except for evictions inside one batch. Returns the per-request hits (bytes of
    0/1). `on_batch(i)` is called after each batch (for sampling stats)."""
    head = b" 0 0 %d noreply\r\n" % len(value)
    tail = value + b"\r\n"
    hits = bytearray(len(seq))
    pending = b""
    names = [key_bytes(k) for k in seq]
    for i in range(0, len(seq), batch):
        part = names[i:i + batch]
        payload = pending + b"".join(b"get " + k + b"\r\n" for k in part)
        parts = c.roundtrip(payload, len(part), b"END\r\n").split(b"END\r\n")
        missed = set()
        sets = []
        for j, (k, p) in enumerate(zip(part, parts)):
            if p:
                hits[i + j] = 1
            elif k in missed:
                hits[i + j] = 1
            else:
                missed.add(k)
                sets.append(b"set " + k + head + tail)
        pending = b"".join(sets)
        if on_batch:
            on_batch(i)
    if pending:
        c.roundtrip(pending + b"version\r\n", 1, b"\r\n")
    return hits


def incompressible(size, seed=7):
    """A value of random bytes (no CR or LF, not that it matters to a length-framed set)."""
    rng = random.Random(seed)
    return bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(size))


# --- simulations ------------------------------------------------------------------------


def lru_hits(seq, capacity):
    """Exact LRU of `capacity` items, get then set on a miss: the hit count."""
    cache = collections.OrderedDict()
    hits = 0
    for k in seq:
        if k in cache:
            cache.move_to_end(k)
            hits += 1
        else:
            cache[k] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return hits


def s3fifo_hits(seq, capacity, first_fill=True, small=0.1, ghost=0.9, promote=2):
    """S3-FIFO (Yang et al., SOSP 2023) as libCacheSim 0.3's `S3FIFO` runs it, get then set
    on a miss: the hit count. A small FIFO (`small` of the capacity) takes new keys; one
    read `promote` times there moves to the main FIFO when it reaches the small queue's
    end, else it is evicted into a ghost FIFO of keys (`ghost` of the capacity). A key in
    the ghost goes straight to main. Main is CLOCK with a 2-bit counter. With
    `first_fill`, until the first eviction new keys go to main once the small queue is
    full, as libCacheSim does; without it, S3-FIFO as the paper describes it."""
    smallq = collections.OrderedDict()  # key -> reads while in it
    mainq = collections.OrderedDict()  # key -> 2-bit frequency
    ghostq = collections.OrderedDict()
    s_cap = int(capacity * small)
    m_cap = capacity - s_cap
    g_cap = int(capacity * ghost)
    evicted = False
    hits = 0
    for k in seq:
        if k in smallq:
            smallq[k] += 1
            hits += 1
            continue
        back = k in ghostq
        if back:
            del ghostq[k]
        if k in mainq:
            mainq[k] += 1
            hits += 1
            continue
        while len(smallq) + len(mainq) >= capacity:
            evicted = True
            if len(mainq) > m_cap or not smallq:
                while True:
                    old, f = mainq.popitem(last=False)
                    if f < 1:
                        break
                    mainq[old] = min(f, 3) - 1
            else:
                while smallq:
                    old, f = smallq.popitem(last=False)
                    if f >= promote:
                        mainq[old] = 0
                        continue
                    if old not in ghostq:
                        ghostq[old] = None
                        if len(ghostq) > g_cap:
                            ghostq.popitem(last=False)
                    break
        if back or (first_fill and not evicted and len(smallq) >= s_cap):
            mainq[k] = 0
        else:
            smallq[k] = 0
    return hits


POLICIES = ("LRU", "S3FIFO", "Sieve", "ARC")


def write_trace(seq, path):
    """libCacheSim's oracleGeneral binary trace: per request a u32 time, u64 object id,
    u32 size (1: capacity counts objects), i64 next access (-1: unknown)."""
    rec = struct.Struct("<IQIq")
    with open(path, "wb") as f:
        for start in range(0, len(seq), 65536):
            f.write(b"".join(rec.pack(start + j, k, 1, -1) for j, k in enumerate(seq[start:start + 65536])))


def simulate(seq, capacity, policies=POLICIES):
    """Hit ratios of libcachesim's policies with `capacity` unit-size objects: {name: ratio}."""
    import libcachesim as lcs

    out = {}
    with tempfile.TemporaryDirectory(prefix="evictbench-") as d:
        path = os.path.join(d, "trace.oracleGeneral")
        write_trace(seq, path)
        for name in policies:
            reader = lcs.TraceReader(path, lcs.TraceType.ORACLE_GENERAL_TRACE)
            cache = getattr(lcs, name)(capacity)
            miss, _ = cache.process_trace(reader)
            out[name] = 1 - miss
    return out
