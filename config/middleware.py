"""Loupe's own middleware. Each class is independent; see MIDDLEWARE in config/settings/base.py
for where each one sits."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.html import escape

# --- Database unavailable ---------------------------------------------------------------------

# Seconds a client is asked to wait before trying again: long enough for a database restart or
# a fail-over, short enough that a labeller does not give up.
DATABASE_RETRY_AFTER_SECONDS = 30

_UNAVAILABLE_HTML = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Loupe: database unavailable</title></head>
<body>
<h1>The database is unavailable</h1>
<p>Loupe could not reach its database, so nothing from this request was saved.
Try again in {seconds} seconds.</p>
<p><small>({error})</small></p>
</body>
</html>
"""


class DatabaseUnavailableMiddleware:
    """Answer 503 with ``Retry-After`` when the database connection fails during a request.

    A lost or refused connection (``OperationalError``, ``InterfaceError``) is an outage, not a
    bug in the request: the client is told to retry instead of getting a bare 500. Services
    write in one transaction each, so the failed request left no partial rows (a file stored
    before its row became an orphan, which the sweeper removes). The API's exception handler
    lets these errors through to here. The page is self-contained: rendering the site's
    templates would need the database again.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logging.getLogger("loupe.database").error(
            "Database unavailable during %s %s: %s", request.method, request.path, exception
        )
        return database_unavailable_response(request, exception)


def database_unavailable_response(request: HttpRequest, exception: Exception) -> HttpResponse:
    """503 as JSON for the API and for clients that ask for JSON, as a small page otherwise."""
    seconds = DATABASE_RETRY_AFTER_SECONDS
    # The class of error only: its text may name hosts, ports or users.
    error = type(exception).__name__
    accept = request.headers.get("Accept", "")
    response: HttpResponse
    if request.path.startswith("/api/") or "application/json" in accept:
        response = JsonResponse(
            {
                "detail": (
                    "The database is unavailable; nothing from this request was saved. "
                    f"Try again in {seconds} seconds."
                ),
                "error": error,
            },
            status=503,
        )
    else:
        response = HttpResponse(
            _UNAVAILABLE_HTML.format(seconds=seconds, error=escape(error)),
            status=503,
            content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = str(seconds)
    response["Cache-Control"] = "no-store"
    return response
