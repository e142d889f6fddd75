"""Serving stored user files: always as their stored image type, never as something a browser
would render as a document."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404

from curation.models import Image


def image_file_response(image: Image, *, thumbnail: bool = False) -> FileResponse:
    if thumbnail:
        if not image.thumbnail_ready:
            raise Http404("The thumbnail is not made yet.")
        name, content_type = image.thumbnail_name, "image/jpeg"
    else:
        name, content_type = image.storage_name, image.content_type
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None
    response = FileResponse(handle, content_type=content_type)
    suffix = "jpg" if thumbnail else image.extension
    response["Content-Disposition"] = f'inline; filename="{image.sha256}.{suffix}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    # Content-addressed: the bytes behind this URL never change.
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response
