"""Test settings: fast hashing, a scratch data directory, tasks enqueued for real."""

from __future__ import annotations

import os
import tempfile
import uuid

os.environ.setdefault("LOUPE_DATA_DIR", tempfile.mkdtemp(prefix="loupe-test-"))
# One queue per test run, inherited by the worker processes the worker tests start: two runs
# sharing a Redis never take each other's tasks.
os.environ.setdefault("LOUPE_TEST_CELERY_QUEUE", f"loupe-test-{uuid.uuid4().hex[:12]}")
os.environ.setdefault("LOUPE_SECRET_KEY", "test-only-secret-key-not-for-production-use-0123456789")

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: a real worker process in the worker tests must see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}  # noqa: F405
# A worker process started by the worker tests opens the test database (which pytest-django
# created and named) as its main one.
if os.environ.get("LOUPE_TEST_DATABASE_NAME"):
    DATABASES["default"]["NAME"] = os.environ["LOUPE_TEST_DATABASE_NAME"]
CELERY_TASK_DEFAULT_QUEUE = os.environ["LOUPE_TEST_CELERY_QUEUE"]
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"login": "1000/min", "login_address": "1000/min"}  # noqa: F405
# Per process and emptied by the tests that count sign-in failures.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
