"""After PostgreSQL restarts (or a fail-over, or an idle-connection reaper), the web process
still holds connections the server has closed. Each is checked before its request's first
query (``CONN_HEALTH_CHECKS``) and replaced, so the first request after the restart succeeds
instead of answering 503.

The request goes through Django's real WSGI handler, as gunicorn calls it: the test client
skips the start-of-request connection housekeeping that the health check hangs on."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.test import RequestFactory

from accounts.models import User
from accounts.services import token_issue
from tests.reliability.conftest import on_postgresql

pytestmark = [
    pytest.mark.skipif(not on_postgresql, reason="terminates a real PostgreSQL connection"),
    pytest.mark.django_db(transaction=True),
]


def wsgi_get(path: str, token: str) -> tuple[str, bytes]:
    """One request through the WSGI handler, closed as a WSGI server closes it."""
    environ = RequestFactory()._base_environ(
        PATH_INFO=path, REQUEST_METHOD="GET", HTTP_AUTHORIZATION=f"Token {token}"
    )
    status: list[str] = []

    def start_response(line: str, headers: Any, exc_info: Any = None) -> None:
        status.append(line)

    response = WSGIHandler()(environ, start_response)
    try:
        body = b"".join(response)
    finally:
        response.close()
    return status[0], body


def terminate_backend(pid: int) -> None:
    """What a PostgreSQL restart does to every open connection, done to one of them."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        terminated = admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()
    assert terminated == (True,)


def test_the_first_request_after_the_database_dropped_the_connection_succeeds(
    labeller: User,
) -> None:
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] > 0  # connections are kept
    _, token = token_issue(user=labeller)
    assert wsgi_get("/api/v1/images/", token)[0] == "200 OK"
    assert connection.connection is not None  # kept open for the next request
    held = connection.connection.info.backend_pid

    terminate_backend(held)
    status, body = wsgi_get("/api/v1/images/", token)

    assert status == "200 OK", body[:300]
    assert connection.connection.info.backend_pid != held  # a fresh connection answered
