"""Django features that sit on the cache: a cache_page view and a post_save receiver
that invalidates a cached value derived from a model. Both memcached backends."""

from __future__ import annotations

import pytest

from django_setup import setup_django

setup_django()
from django.db import connection  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

import djurls  # noqa: E402
from cacheapp.models import Product  # noqa: E402
from cacheapp.signals import product_summary, summary_key  # noqa: E402


@pytest.fixture(scope="module")
def product_table():
    """Creates the Product table in the in-memory sqlite database (no migrations)."""
    if Product._meta.db_table not in connection.introspection.table_names():
        with connection.schema_editor() as editor:
            editor.create_model(Product)
    yield
    Product.objects.all().delete()


@override_settings(ROOT_URLCONF="djurls")
def test_cache_page_serves_second_request_from_cache(django_cache, server):
    djurls.CALLS["n"] = 0
    client = Client()
    first = client.get("/cached/", {"q": "x"})
    assert first.status_code == 200
    assert djurls.CALLS["n"] == 1
    assert "max-age=60" in first["Cache-Control"]

    hits_before = int(server.stats()["get_hits"])
    second = client.get("/cached/", {"q": "x"})
    hits_after = int(server.stats()["get_hits"])
    assert second.status_code == 200
    assert djurls.CALLS["n"] == 1, "the view ran again: the page was not served from cache"
    assert second.content == first.content
    assert "ünïcödé" in second.content.decode()
    # cache_page read the cached headers and page from the server.
    assert hits_after - hits_before >= 1

    # Another query string is another page.
    third = client.get("/cached/", {"q": "y"})
    assert djurls.CALLS["n"] == 2
    assert third.content != first.content

    # After clear() (flush_all) the view runs again.
    django_cache.clear()
    client.get("/cached/", {"q": "x"})
    assert djurls.CALLS["n"] == 3


def test_post_save_invalidates_cached_summary(django_cache, product_table, server):
    p = Product.objects.create(name="kettle", price=30)
    key = summary_key(p.pk)
    assert django_cache.get(key) is None

    summary = product_summary(p.pk)
    assert summary["name"] == "kettle" and summary["label"] == "kettle — 30 €"
    assert django_cache.get(key) == summary  # stored in the server
    with CaptureQueriesContext(connection) as queries:
        assert product_summary(p.pk) == summary
    assert len(queries) == 0, "the second read must come from the cache"

    deletes_before = int(server.stats()["delete_hits"])
    p.name = "teapot"
    p.save()  # post_save -> cache.delete
    assert int(server.stats()["delete_hits"]) == deletes_before + 1
    assert django_cache.get(key) is None
    assert product_summary(p.pk)["name"] == "teapot"
    assert django_cache.get(key)["label"] == "teapot — 30 €"

    # A queryset update sends no signal: the stale entry stays (documents the pattern).
    Product.objects.filter(pk=p.pk).update(price=35)
    assert product_summary(p.pk)["price"] == 30

    p.refresh_from_db()
    p.delete()  # post_delete -> cache.delete
    assert django_cache.get(key) is None


def test_post_save_for_many_objects(django_cache, product_table):
    products = [Product.objects.create(name=f"p{i}", price=i) for i in range(10)]
    for p in products:
        product_summary(p.pk)
    keys = [summary_key(p.pk) for p in products]
    assert len(django_cache.get_many(keys)) == 10
    for p in products[:5]:
        p.price += 100
        p.save()
    remaining = django_cache.get_many(keys)
    assert sorted(remaining) == sorted(keys[5:])
