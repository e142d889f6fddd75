"""Downloads that can be resumed: HTTP byte ranges (RFC 9110, sections 13.1.5 and 14).

Django's ``FileResponse`` always sends the whole file. A client whose connection broke half
way through a 10 GB shard asks for the rest with ``Range: bytes=5368709120-`` (``curl -C -``,
``wget -c``, browsers resuming a download) and gets ``206 Partial Content`` with only those
bytes. One range per request: a request for several (``bytes=0-9,20-29``) gets the whole file,
which the RFC allows and which every resuming client accepts. ``If-Range`` guards a resume
against a file that changed in between: when the validator no longer matches, the answer is
the whole file again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.http import content_disposition_header, http_date

CHUNK = 1024 * 1024
_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class Unsatisfiable(Exception):
    """The range starts past the end of the file: answered with 416."""


def requested_range(header: str, size: int) -> tuple[int, int] | None:
    """The one byte range ``(first, last)`` (inclusive) a ``Range`` header asks for, clamped to
    the file; None for the whole file (no header, another unit, several ranges, or a header that
    does not parse, which the RFC says to ignore). Raises ``Unsatisfiable`` for a range that
    begins at or past the end."""
    unit, _, specs = header.partition("=")
    if not specs or unit.strip().lower() != "bytes" or "," in specs:
        return None
    match = _SPEC.match(specs)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)  # the last N bytes
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid: ignore the header
    if first >= size:
        raise Unsatisfiable
    last = int(last_text) if last_text else size - 1
    return first, min(last, size - 1)


@dataclass(frozen=True)
class Download:
    """A file to send: how to open it, its size and the validators of this version of it."""

    open: Callable[[], IO[bytes]]
    size: int
    filename: str
    content_type: str
    etag: str  # a strong validator, quoted: '"…"'
    last_modified: float | None = None  # a POSIX time


def _read(handle: IO[bytes], first: int, length: int) -> Iterator[bytes]:
    try:
        handle.seek(first)
        left = length
        while left > 0:
            data = handle.read(min(CHUNK, left))
            if not data:
                break
            left -= len(data)
            yield data
    finally:
        handle.close()


def _range_applies(request: HttpRequest, download: Download) -> bool:
    """False where ``If-Range`` names another version of the file than this one."""
    validator = request.headers.get("If-Range")
    if validator is None:
        return True
    validator = validator.strip()
    if validator.startswith(('"', "W/")):
        return validator == download.etag  # a weak tag never matches (strong comparison)
    return download.last_modified is not None and validator == http_date(download.last_modified)


def _headers(response: HttpResponseBase, download: Download) -> HttpResponseBase:
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = download.etag
    if download.last_modified is not None:
        response["Last-Modified"] = http_date(download.last_modified)
    response["Content-Disposition"] = content_disposition_header(True, download.filename) or ""
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-cache"
    return response


def ranged_file_response(request: HttpRequest, download: Download) -> HttpResponseBase:
    """The whole file (200), the part a ``Range`` header asks for (206), 416 for a range past
    the end, or 304 when ``If-None-Match`` already names this version. Always an attachment,
    never rendered by the browser."""
    if_none_match = request.headers.get("If-None-Match", "")
    if download.etag in {tag.strip() for tag in if_none_match.split(",")}:
        return _headers(HttpResponse(status=304), download)
    wanted = None
    header = request.headers.get("Range")
    if header and _range_applies(request, download):
        try:
            wanted = requested_range(header, download.size)
        except Unsatisfiable:
            refused = HttpResponse(status=416)
            refused["Content-Range"] = f"bytes */{download.size}"
            return _headers(refused, download)
    handle = download.open()
    if wanted is None or wanted == (0, download.size - 1):
        response: HttpResponseBase = FileResponse(handle, content_type=download.content_type)
        response["Content-Length"] = str(download.size)
    else:
        first, last = wanted
        response = StreamingHttpResponse(
            _read(handle, first, last - first + 1),
            status=206,
            content_type=download.content_type,
        )
        response["Content-Range"] = f"bytes {first}-{last}/{download.size}"
        response["Content-Length"] = str(last - first + 1)
    return _headers(response, download)
