"""Sending export files to reviewers: from this machine's disk with byte ranges (a broken
download resumes), from object storage as a redirect to a short-lived signed URL (the bucket
answers ranges itself), and a folder tree as one tar streamed as it is read."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from typing import IO, Any

from django.core.files.storage import Storage, default_storage
from django.http import HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.http import content_disposition_header

from curation.ranges import CHUNK, Download, ranged_file_response
from curation.selectors_exports import (
    ExportDownloads,
    ExportFile,
    export_file,
    export_tree_names,
)

# How long a signed URL to the bucket works. A download that has started goes on after it
# expires; resuming one later asks Loupe again, which signs a new URL.
SIGNED_URL_SECONDS = 300


def signed_url(storage: Storage, *, name: str, filename: str, content_type: str) -> str | None:
    """A URL that lets its holder GET ``name`` for ``SIGNED_URL_SECONDS``, named and typed
    as an attachment; None where the storage cannot sign one (it is not S3-compatible)."""
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:  # django-storages is installed with Loupe; kept optional here
        return None
    if not isinstance(storage, S3Storage) or not storage.querystring_auth:
        return None
    url: str = storage.url(
        name,
        parameters={
            "ResponseContentDisposition": content_disposition_header(True, filename) or "",
            "ResponseContentType": content_type,
        },
        expire=SIGNED_URL_SECONDS,
    )
    return url


def _download(export: ExportDownloads, file: ExportFile) -> Download:
    if file.local_path is not None:
        path = file.local_path
        info = os.stat(path)
        return Download(
            open=lambda: open(path, "rb"),
            size=info.st_size,
            filename=file.filename,
            content_type=file.content_type,
            etag=f'"{export.job.pk}-{info.st_size}-{info.st_mtime_ns}"',
            last_modified=info.st_mtime,
        )
    assert file.storage_name is not None
    name = file.storage_name
    size = file.size if file.size is not None else default_storage.size(name)

    def open_stored() -> IO[bytes]:
        stored: IO[bytes] = default_storage.open(name, "rb")
        return stored

    return Download(
        open=open_stored,
        size=size,
        filename=file.filename,
        content_type=file.content_type,
        etag=f'"{export.job.pk}-{size}"',  # an export's files never change under its id
        last_modified=None,
    )


def export_file_response(
    request: HttpRequest, *, export: ExportDownloads, name: str
) -> HttpResponseBase:
    """One file of the export. Raises ``ExportUnavailable`` for a name it does not offer."""
    file = export_file(export=export, name=name)
    if file.storage_name is not None:
        url = signed_url(
            default_storage,
            name=file.storage_name,
            filename=file.filename,
            content_type=file.content_type,
        )
        if url is not None:
            redirect = HttpResponseRedirect(url)
            redirect["Cache-Control"] = "no-store"  # the signature expires
            return redirect
    return ranged_file_response(request, _download(export, file))


def _member_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    # PAX headers where a name is too long or not ASCII (class names can be anything).
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _open(file: ExportFile) -> Any:
    if file.local_path is not None:
        return open(file.local_path, "rb")
    return default_storage.open(str(file.storage_name), "rb")


def _tar_stream(export: ExportDownloads) -> Iterator[bytes]:
    root = export.folder.name
    written = 0
    for name in export_tree_names(export=export):
        file = export_file(export=export, name=name)
        if file.local_path is not None:
            size = os.stat(file.local_path).st_size
        else:
            assert file.storage_name is not None
            size = file.size if file.size is not None else default_storage.size(file.storage_name)
        header = _member_header(f"{root}/{name}", size)
        yield header
        written += len(header)
        with _open(file) as handle:
            left = size
            while left > 0:
                data = handle.read(min(CHUNK, left))
                if not data:
                    raise OSError(f"{name} ended {left} bytes early")
                left -= len(data)
                yield data
        padding = -size % tarfile.BLOCKSIZE
        yield b"\0" * padding
        written += size + padding
    end = 2 * tarfile.BLOCKSIZE
    yield b"\0" * (end + (-(written + end) % tarfile.RECORDSIZE))


def export_archive_response(export: ExportDownloads) -> StreamingHttpResponse:
    """A folder export as one tar, ``<folder>/<split>/<class>/<file>`` plus its metadata,
    streamed as it is read. Not resumable (no length is known up front); the files one by one
    are, and the manifest lists them."""
    response = StreamingHttpResponse(_tar_stream(export), content_type="application/x-tar")
    response["Content-Disposition"] = (
        content_disposition_header(True, f"{export.folder.name}.tar") or ""
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
