"""Making a finished export downloadable.

An export is written on the worker's disk (``dataset_export`` needs a folder: shards are
written with ``sendfile``, a tree with copies). With local storage it stays there and the web
process serves it from that folder. With object storage (``LOUPE_STORAGE=s3``) it is uploaded
through Django's storage API under ``exports/<folder>/<job id>/``, the local copy removed, and
the bucket's exports by earlier jobs to the same folder deleted, as a local export replaces the one
before it; downloads are then short-lived signed URLs to the bucket.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.files.storage import Storage, default_storage

from curation.services.export import MARKER

EXPORTS_PREFIX = "exports"
UPLOAD_THREADS = 4
# The order a download list starts with; shards follow by name.
_FIRST = {"manifest.csv": 0, "label_map.json": 1, MARKER: 2}


def storage_is_local(storage: Storage | None = None) -> bool:
    """Whether the storage keeps files on this machine's disk (it has paths)."""
    try:
        (storage or default_storage).path("")
    except NotImplementedError:
        return False
    return True


def top_level_files(out: Path) -> list[dict[str, Any]]:
    """The files at the top of an export (metadata, then shards) with their sizes: what its
    download list offers. A folder tree's images are listed in its ``manifest.csv``."""
    files: list[dict[str, Any]] = [
        {"name": entry.name, "size": entry.stat().st_size}
        for entry in os.scandir(out)
        if entry.is_file(follow_symlinks=False) and not entry.name.startswith(".")
    ]
    files.sort(key=lambda f: (_FIRST.get(f["name"], len(_FIRST)), f["name"]))
    return files


def storage_prefix(*, out: Path, job_id: int) -> str:
    return f"{EXPORTS_PREFIX}/{out.name}/{job_id}"


def _delete_tree(storage: Storage, prefix: str) -> None:
    folders, files = storage.listdir(prefix)
    for name in files:
        storage.delete(f"{prefix}/{name}")
    for folder in folders:
        _delete_tree(storage, f"{prefix}/{folder}")


def export_publish(*, job_id: int, out: Path) -> dict[str, Any]:
    """Record what job ``job_id``'s finished export at ``out`` offers for download and, with
    object storage, move it into the bucket. Returns the fields the job's result keeps:
    ``storage`` (``local`` or ``object``), ``downloads`` and, for object storage, ``prefix``.

    Precondition: ``out`` holds the complete export (``dataset_export`` has returned)."""
    downloads = top_level_files(out)
    if storage_is_local():
        return {"storage": "local", "downloads": downloads}
    prefix = storage_prefix(out=out, job_id=job_id)
    paths = sorted(path for path in out.rglob("*") if path.is_file() and not path.is_symlink())
    # The marker goes last: a reader that finds dataset.json in the bucket finds everything.
    paths.sort(key=lambda path: path == out / MARKER)

    def upload(path: Path) -> None:
        name = f"{prefix}/{path.relative_to(out).as_posix()}"
        with open(path, "rb") as handle:
            saved = default_storage.save(name, File(handle, name=path.name))
        if saved != name:
            raise OSError(
                f"The storage kept {name} as {saved}; the export is not where it belongs."
            )

    data, marker = paths[:-1], paths[-1:]
    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        list(pool.map(upload, data))
    for path in marker:
        upload(path)
    shutil.rmtree(out, ignore_errors=True)
    earlier, _ = default_storage.listdir(f"{EXPORTS_PREFIX}/{out.name}")
    for folder in earlier:
        # Only older jobs' exports: one that finished after this one started is newer.
        if folder.isdigit() and int(folder) < job_id:
            _delete_tree(default_storage, f"{EXPORTS_PREFIX}/{out.name}/{folder}")
    return {"storage": "object", "prefix": prefix, "downloads": downloads}
