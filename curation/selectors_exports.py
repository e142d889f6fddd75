"""Reads for export downloads: a dataset version's exports and the files each one offers.

An export is the export job that wrote it (its id names it in URLs). Several jobs can write
the same folder (the same version, format and letterbox size); the newest finished one
replaced the others, which offer nothing any more and say which export replaced them.
"""

from __future__ import annotations

import csv
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage

from curation.imaging import EXTENSION_CONTENT_TYPES
from curation.models import DatasetVersion, Job, JobStatus
from curation.services.dataset_jobs import EXPORT_DATASET_JOB
from curation.services.export import MARKER
from curation.services.export_publish import top_level_files

# The newest exports of a version that the page and the API list.
EXPORTS_LISTED = 100
# A file of a folder tree: <split>/<class>/<sha256>.<ext>, as export.py names them.
_TREE_FILE = re.compile(r"(train|val|test)/([^/]+)/([0-9a-f]{64}\.[a-z0-9]{1,8})")
_CONTENT_TYPES = {
    "tar": "application/x-tar",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    **EXTENSION_CONTENT_TYPES,
}


class ExportUnavailable(Exception):
    """The export or the file is not there to download; the message says why."""


@dataclass
class ExportDownloads:
    job: Job
    replaced_by: int | None = None
    files: list[dict[str, Any]] = field(default_factory=list)

    @property
    def format(self) -> str:
        return str(self.job.params.get("format", ""))

    @property
    def storage(self) -> str:
        return str(self.job.result.get("storage", "local"))

    @property
    def folder(self) -> Path:
        return Path(self.job.params["out"])

    @property
    def prefix(self) -> str:
        return str(self.job.result.get("prefix", ""))

    @property
    def available(self) -> bool:
        return self.job.status == JobStatus.SUCCEEDED and self.replaced_by is None

    @property
    def has_archive(self) -> bool:
        """A folder tree comes as one streamed tar too; shards are already tar files."""
        return self.available and self.format == "folder"

    @property
    def shards(self) -> list[dict[str, Any]]:
        return [f for f in self.files if f["name"].endswith(".tar")]

    @property
    def metadata(self) -> list[dict[str, Any]]:
        return [f for f in self.files if not f["name"].endswith(".tar")]


def _files_of(job: Job) -> list[dict[str, Any]]:
    recorded = job.result.get("downloads")
    if recorded is not None:
        return list(recorded)
    # An export finished before downloads were recorded: read its folder, if it is still there.
    out = Path(job.params.get("out", ""))
    if job.result.get("storage", "local") == "local" and (out / MARKER).is_file():
        return top_level_files(out)
    return []


def dataset_exports(*, version: DatasetVersion) -> list[ExportDownloads]:
    """The version's newest export jobs, newest first, each with what it offers."""
    jobs = list(
        Job.objects.filter(kind=EXPORT_DATASET_JOB, params__version_id=version.pk)
        .select_related("created_by")
        .order_by("-id")[:EXPORTS_LISTED]
    )
    newest_by_folder: dict[str, int] = {}
    exports = []
    for job in jobs:
        export = ExportDownloads(job=job)
        if job.status == JobStatus.SUCCEEDED:
            out = str(job.params.get("out", ""))
            export.replaced_by = newest_by_folder.get(out)
            newest_by_folder.setdefault(out, job.pk)
            if export.replaced_by is None:
                export.files = _files_of(job)
        exports.append(export)
    return exports


def dataset_export_get(*, version: DatasetVersion, export_id: int) -> ExportDownloads:
    """One export of the version that can be downloaded now."""
    for export in dataset_exports(version=version):
        if export.job.pk != export_id:
            continue
        if export.job.status != JobStatus.SUCCEEDED:
            raise ExportUnavailable(
                f"Export #{export_id} is {export.job.get_status_display().lower()}, not finished."
            )
        if export.replaced_by is not None:
            raise ExportUnavailable(
                f"Export #{export_id} was replaced by export #{export.replaced_by}; "
                "download that one."
            )
        return export
    raise ExportUnavailable(f"Dataset version {version.pk} has no export #{export_id}.")


@dataclass(frozen=True)
class ExportFile:
    name: str  # relative to the export's folder, with "/" separators
    content_type: str
    local_path: str | None  # on this machine's disk, or
    storage_name: str | None  # in the storage (object storage)
    size: int | None = None

    @property
    def filename(self) -> str:
        return self.name.rsplit("/", 1)[-1]


def content_type_of(name: str) -> str:
    return _CONTENT_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def export_file(*, export: ExportDownloads, name: str) -> ExportFile:
    """A file the export offers: one of its listed files, or (folder trees) a file the manifest
    names. Anything else, a path that leaves the folder included, is unavailable."""
    listed = {f["name"]: f["size"] for f in export.files}
    if name not in listed:
        match = _TREE_FILE.fullmatch(name)
        if export.format != "folder" or match is None or match.group(2).startswith("."):
            raise ExportUnavailable(f"Export #{export.job.pk} has no file {name!r}.")
    if export.storage == "object":
        return ExportFile(
            name=name,
            content_type=content_type_of(name),
            local_path=None,
            storage_name=f"{export.prefix}/{name}",
            size=listed.get(name),
        )
    root = os.path.realpath(export.folder)
    path = os.path.join(root, *name.split("/"))
    try:
        info = os.lstat(path)
    except OSError:
        info = None
    inside = os.path.realpath(path).startswith(root + os.sep)
    if info is None or not stat.S_ISREG(info.st_mode) or not inside:
        raise ExportUnavailable(f"Export #{export.job.pk} has no file {name!r} any more.")
    return ExportFile(
        name=name,
        content_type=content_type_of(name),
        local_path=path,
        storage_name=None,
        size=info.st_size,
    )


def _open_manifest(export: ExportDownloads) -> Any:
    if export.storage == "object":
        return default_storage.open(f"{export.prefix}/manifest.csv", "rb")
    return open(export.folder / "manifest.csv", "rb")


def export_tree_names(*, export: ExportDownloads) -> Iterator[str]:
    """Every file of a folder export, in the manifest's order (read as it streams, never all
    held at once): the listed metadata files first, then each image's file."""
    for listed in export.metadata:
        yield listed["name"]
    with _open_manifest(export) as handle:
        lines = (line.decode("utf-8") for line in handle)
        for row in csv.DictReader(lines):
            yield row["file"]
