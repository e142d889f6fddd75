"""Serving stored user files: always as their stored image type, never as something a browser
would render as a document."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404

from curation.imaging import EXTENSION_CONTENT_TYPES, needs_rendition
from curation.models import Image
from curation.storage import rendition_name


def image_file_response(
    image: Image, *, thumbnail: bool = False, display: bool = False
) -> FileResponse:
    """The original, its thumbnail, or (``display``) what a page shows in an ``<img>``: the
    original where browsers display its format, else the worker's full-size JPEG rendition."""
    if thumbnail:
        if not image.thumbnail_ready:
            raise Http404("The thumbnail is not made yet.")
        name, extension, content_type = image.thumbnail_name, "jpg", "image/jpeg"
    elif display and needs_rendition(image.extension):
        if not image.thumbnail_ready:  # made with the thumbnail
            raise Http404("The browser-safe rendition is not made yet.")
        name, extension, content_type = rendition_name(image.sha256), "jpg", "image/jpeg"
    else:
        name, extension, content_type = image.storage_name, image.extension, image.content_type
    disposition = "inline"
    # Inline only as one of the types the decoder's allow-list gives a row.
    if EXTENSION_CONTENT_TYPES.get(extension) != content_type:
        # A row the decoder never wrote (a restored backup, a hand edit): the bytes go out as
        # an opaque download, never as a type a browser renders.
        extension, content_type, disposition = "bin", "application/octet-stream", "attachment"
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None
    response = FileResponse(handle, content_type=content_type)
    # Named by content hash only: the uploader's file name never reaches a header.
    response["Content-Disposition"] = f'{disposition}; filename="{image.sha256}.{extension}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    # Content-addressed: the bytes behind this URL never change.
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response
