"""URLconf for the Django view tests: one view under cache_page(60)."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.cache import cache_page

CALLS = {"n": 0}


@cache_page(60)
def cached_view(request):
    CALLS["n"] += 1
    return HttpResponse(f"rendered {CALLS['n']} time(s) — ünïcödé {request.GET.get('q', '')}",
                        content_type="text/plain; charset=utf-8")


urlpatterns = [path("cached/", cached_view)]
