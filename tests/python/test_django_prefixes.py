"""Hit rates by key prefix with Django: two views, one hit often, one missed every time,
and `stats detail dump` showing each one's ratio. First with a cache alias (KEY_PREFIX) per
view, which memcached's own rule (the first `:`) already tells apart: the same test runs
against memcached. Then Django's default empty KEY_PREFIX, where every key is `:1:<key>`
and only Larder's `--prefix-segments 3` tells the views apart, in `stats detail dump`, the
live page's prefix table (`/live`) and `/metrics` alike. Both memcached backends."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

import harness
from django_setup import DJANGO_BACKENDS, setup_django

setup_django()
from django.core.cache import caches  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.cache import cache_page  # noqa: E402

REQUESTS = 20


@cache_page(60, cache="shop")
def shop(request):
    return HttpResponse("the shop's front page")


@cache_page(60, cache="search")
def search(request):
    return HttpResponse(f"results for {request.GET.get('q', '')}")


SEEN = {"profile": [0, 0], "search": [0, 0]}  # gets, hits, as the views saw them


def profile_view(request, uid):
    cache = caches["default"]
    SEEN["profile"][0] += 1
    if cache.get(f"profile:{uid}") is None:
        cache.set(f"profile:{uid}", {"uid": uid}, 60)
    else:
        SEEN["profile"][1] += 1
    return HttpResponse(f"profile {uid}")


def lookup_view(request):
    cache = caches["default"]
    q = request.GET["q"]
    SEEN["search"][0] += 1
    if cache.get(f"search:{q}") is None:
        cache.set(f"search:{q}", f"results for {q}", 60)
    else:
        SEEN["search"][1] += 1
    return HttpResponse(f"results for {q}")


urlpatterns = [
    path("shop/", shop),
    path("search/", search),
    path("profile/<int:uid>/", profile_view),
    path("lookup/", lookup_view),
]

LINE = re.compile(r"^PREFIX (.*) get (\d+) hit (\d+) set (\d+) del (\d+)$")


def detail_dump(server) -> dict[str, tuple[int, int, int, int]]:
    """`stats detail dump` as prefix -> (gets, hits, sets, deletes)."""
    reply = server.raw(b"stats detail dump\r\n", until=b"END\r\n").decode()
    rows = {}
    for line in reply.split("\r\n"):
        if line in ("", "END"):
            continue
        m = LINE.match(line)
        assert m, f"not a PREFIX line: {line!r}"
        rows[m.group(1)] = tuple(int(g) for g in m.groups()[1:])
    return rows


def fresh(server):
    """Empties the cache and forgets the counters (prefixes included)."""
    assert server.raw(b"flush_all\r\n") == b"OK\r\n"
    assert server.raw(b"stats reset\r\n") == b"RESET\r\n"


def caches_for(server, backend_name, aliases):
    backend, options = DJANGO_BACKENDS[backend_name]
    harness.require_module(backend_name)
    return {alias: {"BACKEND": backend, "LOCATION": server.address, "KEY_PREFIX": prefix,
                    "OPTIONS": dict(options)} for alias, prefix in aliases.items()}


@pytest.fixture(scope="module")
def server():
    """Counting by memcached's rule from the start (-D :)."""
    srv = harness.start_server(extra_args=["-D", ":"])
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def django_server():
    """Larder counting Django's keys by their first segment after `:<version>:`."""
    if harness.server_kind() == "memcached":
        pytest.skip("--prefix-segments is Larder's")
    srv = harness.start_http_server(extra_args=["-D", ":", "--prefix-segments", "3"])
    yield srv
    srv.stop()


@pytest.mark.parametrize("backend_name", sorted(DJANGO_BACKENDS))
def test_a_cache_alias_per_view(server, backend_name):
    fresh(server)
    setting = caches_for(server, backend_name,
                         {"default": "", "shop": "shop", "search": "search"})
    with override_settings(CACHES=setting, ROOT_URLCONF=__name__):
        client = Client()
        try:
            for _ in range(REQUESTS):
                assert client.get("/shop/").status_code == 200
            shop_phase = server.stats()
            for i in range(REQUESTS):
                assert client.get("/search/", {"q": f"query {i}"}).status_code == 200
            after = server.stats()
        finally:
            for alias in setting:
                caches[alias].close()
    rows = detail_dump(server)
    assert set(rows) == {"shop", "search"}, rows
    delta = lambda name: int(after[name]) - int(shop_phase[name])  # noqa: E731
    # Each row is what the server counted in its phase: its gets, hits and sets.
    assert rows["shop"][:3] == (int(shop_phase["cmd_get"]), int(shop_phase["get_hits"]),
                                int(shop_phase["cmd_set"]))
    assert rows["search"][:3] == (delta("cmd_get"), delta("get_hits"), delta("cmd_set"))
    gets, hits = rows["shop"][:2]
    assert hits / gets > 0.9, f"the shop is served from the cache: {rows['shop']}"
    assert rows["search"][0] == REQUESTS and rows["search"][1] == 0, \
        f"every search misses: {rows['search']}"


@pytest.mark.parametrize("backend_name", sorted(DJANGO_BACKENDS))
def test_default_key_prefix_split_by_three_segments(django_server, backend_name):
    fresh(django_server)
    for seen in SEEN.values():
        seen[:] = [0, 0]
    setting = caches_for(django_server, backend_name, {"default": ""})
    with override_settings(CACHES=setting, ROOT_URLCONF=__name__):
        client = Client()
        try:
            for i in range(REQUESTS):
                assert client.get(f"/profile/{i % 3}/").status_code == 200
                assert client.get("/lookup/", {"q": f"q{i}"}).status_code == 200
        finally:
            caches["default"].close()
    rows = detail_dump(django_server)
    # Django's keys are `:1:profile:<uid>` and `:1:search:<q>`.
    assert set(rows) == {":1:profile", ":1:search"}, rows
    profile_gets, profile_hits = SEEN["profile"]
    search_gets, search_hits = SEEN["search"]
    assert rows[":1:profile"] == (profile_gets, profile_hits, profile_gets - profile_hits, 0)
    assert rows[":1:search"] == (search_gets, search_hits, search_gets - search_hits, 0)
    assert (profile_gets, profile_hits) == (REQUESTS, REQUESTS - 3)
    assert (search_gets, search_hits) == (REQUESTS, 0)
    # The page's prefix table (fed by /live) and /metrics show the same rows.
    live = json.loads(urllib.request.urlopen(f"http://{django_server.http}/live", timeout=10).read())
    table = {r["prefix"]: (r["gets"], r["hits"], r["sets"], r["deletes"]) for r in live["prefixes"]["rows"]}
    assert table == rows, (table, rows)
    metrics = urllib.request.urlopen(f"http://{django_server.http}/metrics", timeout=10).read().decode()
    series = {}
    parser = harness.require_module("prometheus_client.parser")
    for family in parser.text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name.startswith("larder_prefix_"):
                series[(sample.labels["prefix"], sample.name)] = int(sample.value)
    for prefix, (gets, hits, sets, deletes) in rows.items():
        got = [series[(prefix, f"larder_prefix_{n}_total")] for n in ("gets", "hits", "sets", "deletes")]
        assert got == [gets, hits, sets, deletes], (prefix, got, rows[prefix])
