"""Content-addressed storage of originals and their derivatives, through Django's storage API."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import tempfile
from typing import IO, Any

from django.core.files.base import File
from django.core.files.storage import FileSystemStorage, default_storage

ORIGINALS_PREFIX = "originals"
THUMBNAILS_PREFIX = "derivatives/thumbnails"
# Full-size renditions browsers can display, for stored formats they cannot (TIFF).
RENDITIONS_PREFIX = "derivatives/renditions"


def original_name(sha256: str, extension: str) -> str:
    return f"{ORIGINALS_PREFIX}/{sha256[0:2]}/{sha256[2:4]}/{sha256}.{extension}"


def thumbnail_name(sha256: str) -> str:
    return f"{THUMBNAILS_PREFIX}/{sha256[0:2]}/{sha256[2:4]}/{sha256}.jpg"


def rendition_name(sha256: str) -> str:
    return f"{RENDITIONS_PREFIX}/{sha256[0:2]}/{sha256[2:4]}/{sha256}.jpg"


class AtomicFileSystemStorage(FileSystemStorage):
    """Local storage that writes to a temporary file and renames it into place.

    A reader never sees half a file, and since names are content addressed, saving a name that
    exists overwrites it with the same bytes instead of inventing a new name. Files are not
    flushed one by one: ``storage_sync`` flushes them together before their rows commit.
    """

    def sync(self) -> None:
        """Flush everything written so far to disk (the file system holding ``location``)."""
        try:
            fd = os.open(self.location, os.O_RDONLY)
        except FileNotFoundError:
            return  # nothing stored yet
        try:
            if _syncfs is not None:
                _syncfs(fd)
            else:
                os.sync()
        finally:
            os.close(fd)

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name

    def _save(self, name: str, content: Any) -> str:
        full_path = self.path(name)
        directory = os.path.dirname(full_path)
        os.makedirs(directory, exist_ok=True)
        fd, temp_path = tempfile.mkstemp(dir=directory, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle:
                if hasattr(content, "seek"):
                    content.seek(0)
                for chunk in content.chunks():
                    handle.write(chunk)
            # Read-only: stored files never change, and a folder export hard-links them, so
            # an in-place edit of an exported copy must fail rather than alter the original.
            os.chmod(temp_path, 0o444)
            os.replace(temp_path, full_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_path)
            raise
        return name


def _load_syncfs() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


def storage_sync() -> None:
    """Make stored originals durable before the rows that reference them commit: one flush
    for a whole chunk of files instead of an fsync per file. Object storage needs none (a
    completed upload is durable)."""
    sync = getattr(default_storage, "sync", None)
    if sync is not None:
        sync()


def store_original(*, sha256: str, extension: str, content: IO[bytes]) -> str:
    """Store the original once. Call before the row that references it is committed."""
    name = original_name(sha256, extension)
    if not default_storage.exists(name):
        default_storage.save(name, File(content, name=os.path.basename(name)))
    return name
