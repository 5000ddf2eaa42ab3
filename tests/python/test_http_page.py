"""The live page of `--http` in a real browser: Debian's Chromium, headless, loads `/`
from Larder after traffic with a known hit ratio. The page must load with no console
message at all (errors, uncaught exceptions, failed requests), and its DOM must show the
data: the hit-ratio plot drawn from the server's history, the ratio the client saw, the
items stored, the prefixes' hit ratios and the hottest keys. A screenshot is kept as a test artifact under $LARDER_ARTIFACTS (default
target/test-artifacts), never in the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import harness

pytestmark = pytest.mark.skipif(harness.server_kind() == "memcached", reason="--http is Larder's")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--enable-logging=stderr", "--v=0"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    harness.missing("chromium (Debian package chromium)")
    raise AssertionError("unreachable")


@pytest.fixture
def server():
    srv = harness.start_http_server()
    yield srv
    srv.stop()


def browse(url: str, *extra: str) -> tuple[str, str]:
    """Loads `url` (letting its timers and requests run for 4 s of virtual time) and
    returns the DOM it ends with and Chromium's log."""
    with_profile = [f"--user-data-dir={Path(os.environ.get('TMPDIR', '/tmp')) / f'larder-chromium-{os.getpid()}'}"]
    proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, *with_profile, "--virtual-time-budget=4000",
                           *extra, url], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, proc.stderr


def test_the_page_plots_the_hit_ratio_the_clients_saw(server):
    from pymemcache.client.base import Client

    c = Client(("127.0.0.1", server.port))
    for i in range(50):
        c.set(f"page:k{i}", b"v" * 100)
    # Three seconds of gets, 3 hits to 1 miss, so the server's once-a-second history has
    # several samples with gets in them.
    end = time.monotonic() + 3.2
    while time.monotonic() < end:
        for i in range(30):
            c.get(f"page:k{i % 10}")
            if i % 3 == 2:
                c.get(f"gone:{i}")
        time.sleep(0.01)
    st = server.stats()
    hits, misses = int(st["get_hits"]), int(st["get_misses"])
    assert hits == 3 * misses

    dom, log = browse(f"http://{server.http}/", "--dump-dom")
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert console == [], "the page logged to the console:\n" + "\n".join(console)

    points = re.search(r'id="hit-ratio-plot"[^>]*data-points="(\d+)"', dom)
    assert points, "the hit-ratio plot was never drawn:\n" + dom[:3000]
    assert int(points.group(1)) >= 2, "the plot has the history's seconds with gets in them"
    assert "<polyline" in dom.split('id="hit-ratio-plot"')[1].split("</svg>")[0]
    ratio = re.search(r'id="hit-ratio">([^<]*)<', dom).group(1)
    assert ratio == "75.0%", f"the page shows {ratio!r}, the client saw 75.0%"
    items = re.search(r'id="items">([^<]*)<', dom).group(1)
    assert items == "50"
    assert re.search(r'<span [^>]*id="status"[^>]*>live<', dom), "the page reached /live"
    # --http counts by prefix from the start: "page" always hits, "gone" never does.
    prefixes = dict(re.findall(r'<tr><td>([^<]*)</td><td>[^<]*</td><td>([^<]*)</td>',
                               dom.split('id="prefixes"')[1].split("</table>")[0]))
    assert prefixes.get("page") == "100.0%" and prefixes.get("gone") == "0.0%", prefixes
    hot = re.findall(r'<tr><td>([^<]*)</td>', dom.split('id="hot-keys"')[1].split("</table>")[0])
    assert hot and set(hot[:10]) <= {f"page:k{i}" for i in range(10)}, hot

    artifacts = Path(os.environ.get("LARDER_ARTIFACTS") or harness.REPO_ROOT / "target" / "test-artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "live-page.png"
    browse(f"http://{server.http}/", f"--screenshot={shot}", "--window-size=1280,1000")
    assert shot.stat().st_size > 10_000, "a screenshot of a drawn page"
