"""Loupe's own middleware. Each class is independent; see MIDDLEWARE in config/settings/base.py
for where each one sits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DataError, InterfaceError, OperationalError
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


NUL_DETAIL = "Text in this request contains a NUL character (U+0000); remove it."


def is_nul_text_error(exception: Exception) -> bool:
    """PostgreSQL refused text holding U+0000 (psycopg's data error, wrapped by Django)."""
    return isinstance(exception, DataError) and "NUL" in str(exception)


class NulCharacterMiddleware:
    """Answer 400 when a request's text reaches PostgreSQL with a NUL character in it.

    PostgreSQL text cannot hold U+0000 and refuses it as a data error; no name, label, note or
    filter in Loupe needs one, so the request is bad, not the server. (SQLite stores it.)
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_nul_text_error(exception):
            return None
        if request.path.startswith("/api/") or "application/json" in request.headers.get(
            "Accept", ""
        ):
            return JsonResponse({"detail": NUL_DETAIL}, status=400)
        return HttpResponse(NUL_DETAIL, status=400, content_type="text/plain; charset=utf-8")


# --- Request body cap -------------------------------------------------------------------------

# Room for the form fields sent beside a large file (a label map of 100,000 names beside a
# model, the destination fields beside an archive).
FORM_ALLOWANCE_BYTES = 64 * 1024 * 1024


class RequestBodyLimitMiddleware:
    """Refuse a request whose body is larger than Loupe accepts, before any byte of it is read.

    The cap is ``LOUPE_MAX_UPLOAD_BYTES``; the views that take one large file (a zip archive, an
    ONNX model) accept up to that file's own cap plus the form around it, when that is larger.
    Django reads no more of the body than its declared Content-Length (under WSGI a body
    without one reads as empty), so checking the header is enough. It runs in ``process_view``
    to know the view, and must come before CsrfViewMiddleware, which reads form bodies.
    """

    # view name -> the setting holding the cap on the one file that view takes
    LARGE_FILE_VIEWS = {
        "api:import-list": "LOUPE_ZIP_MAX_BYTES",
        "api:model-version-list": "LOUPE_MAX_MODEL_BYTES",
        "inference:model-upload": "LOUPE_MAX_MODEL_BYTES",
    }

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        declared = _declared_length(request)
        limit, setting = self.limit_for(request)
        if declared <= limit:
            return None
        return JsonResponse(
            {
                "detail": f"The request body is {declared:,} bytes; the limit is {limit:,} "
                f"bytes ({setting}). Send fewer or smaller files per request."
            },
            status=413,
        )

    def limit_for(self, request: HttpRequest) -> tuple[int, str]:
        """The largest body this request's view accepts, and the setting that decides it."""
        limit: int = settings.LOUPE_MAX_UPLOAD_BYTES
        setting = "LOUPE_MAX_UPLOAD_BYTES"
        match = request.resolver_match
        file_setting = self.LARGE_FILE_VIEWS.get(match.view_name) if match else None
        if file_setting:
            file_limit = int(getattr(settings, file_setting)) + FORM_ALLOWANCE_BYTES
            if file_limit > limit:
                limit, setting = file_limit, file_setting
        return limit, setting


def _declared_length(request: HttpRequest) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0  # Django reads such a body as empty too
