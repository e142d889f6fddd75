"""Starting dataset builds and exports as jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from accounts.models import User
from curation.models import DatasetVersion, Job
from curation.services.datasets import DatasetError, DatasetParams, dataset_version_create
from curation.services.export import EXPORT_FORMATS
from curation.services.jobs import job_create, job_enqueue

BUILD_DATASET_JOB = "curation.build_dataset"
EXPORT_DATASET_JOB = "curation.export_dataset"


def export_root() -> Path:
    return Path(getattr(settings, "LOUPE_EXPORT_DIR", settings.DATA_DIR / "exports"))


def dataset_build_job_start(
    *, name: str, params: DatasetParams, actor: User | None, enqueue: bool = True
) -> tuple[DatasetVersion, Job]:
    """The version row and its build job, sent once both commit (``enqueue=False``: left to
    the caller, which runs it, as ``manage.py demo`` does)."""
    with transaction.atomic():
        version = dataset_version_create(name=name, params=params, actor=actor)
        job = job_create(
            kind=BUILD_DATASET_JOB, actor=actor, params={"version_id": version.pk}, total=0
        )
        version.job = job
        version.save(update_fields=["job"])
        if enqueue:
            job_enqueue(job=job)
    return version, job


def dataset_export_job_start(
    *,
    version: DatasetVersion,
    format: str,
    letterbox: int | None,
    shard_size: int,
    actor: Any,
    hard_links: bool = False,
) -> Job:
    """An export job writing under the export folder (never a path a client chose).
    ``hard_links`` (folder exports only) links the originals instead of copying them."""
    if format not in EXPORT_FORMATS:
        raise DatasetError(f"Unknown export format {format!r}.")
    hard_links = hard_links and format == "folder" and not letterbox
    suffix = f"-letterbox{letterbox}" if letterbox else ""
    suffix += "-hardlinks" if hard_links else ""
    out = export_root() / f"{version.pk}-{slugify(version.name) or 'dataset'}-{format}{suffix}"
    with transaction.atomic():
        job = job_create(
            kind=EXPORT_DATASET_JOB,
            actor=actor,
            params={
                "version_id": version.pk,
                "format": format,
                "letterbox": letterbox,
                "shard_size": shard_size,
                "hard_links": hard_links,
                "out": str(out),
            },
            total=version.assignments.count(),
        )
        job_enqueue(job=job)
    return job
