"""Django settings for the real-client suite, configured once per process."""

import harness

DJANGO_SETTINGS = dict(
    DEBUG=False,
    SECRET_KEY="larder-real-client-tests",
    ALLOWED_HOSTS=["testserver", "localhost", "127.0.0.1"],
    INSTALLED_APPS=["cacheapp"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}},
    MIDDLEWARE=[],
    ROOT_URLCONF="djurls",
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)

# Client timeouts keep a hung server from hanging the run.
DJANGO_BACKENDS = {
    "pymemcache": ("django.core.cache.backends.memcached.PyMemcacheCache",
                   {"connect_timeout": 5, "timeout": 10}),
    "pylibmc": ("django.core.cache.backends.memcached.PyLibMCCache",
                {"binary": False, "behaviors": {"connect_timeout": 5000,
                                                "receive_timeout": 10_000_000,
                                                "send_timeout": 10_000_000}}),
}


# Django's documented binary-protocol setup for pylibmc (test_sasl.py adds its
# "username" and "password").
DJANGO_PYLIBMC_BINARY = ("django.core.cache.backends.memcached.PyLibMCCache",
                         {"binary": True, "behaviors": {"connect_timeout": 5000,
                                                        "receive_timeout": 10_000_000,
                                                        "send_timeout": 10_000_000}})


def setup_django():
    """Configures Django once per process (fails under CI / skips if it is missing)."""
    django = harness.require_module("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(**DJANGO_SETTINGS)
        django.setup()
    return django


