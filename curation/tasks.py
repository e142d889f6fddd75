"""Thin Celery adapters: take ids, call services."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.files.storage import default_storage

from curation.models import ImportBatch, Job, SubClass
from curation.plugins import image_steps_run
from curation.services.imports import Destination, archive_import
from curation.services.jobs import JOB_TASK_LIMITS, job_progress, job_run, jobs_requeue_stalled
from curation.services.processing import (
    chunked,
    images_needing_thumbnails,
    orphans_sweep,
    thumbnails_make,
)
from curation.tasks_duplicates import features_and_duplicates_make

logger = logging.getLogger(__name__)

# Passing storage or broker trouble; a job hit by one goes back to the queue for the retry.
_RETRYABLE: tuple[type[BaseException], ...] = (OSError,)
_RETRY = {
    "autoretry_for": _RETRYABLE,
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "max_retries": 5,
}


@shared_task(name="curation.process_images", acks_late=True, **_RETRY)
def process_images(image_ids: list[int]) -> int:
    made = thumbnails_make(image_ids=image_ids)
    features_and_duplicates_make(image_ids=image_ids)  # pHash, lint, on-import duplicate check
    # What the apps above the library do with new images (inference: top-k from the active
    # model, embeddings and OOD scores), registered in curation.plugins.
    image_steps_run(image_ids=image_ids)
    return made


def enqueue_processing(image_ids: list[int]) -> None:
    """Queue derivative work for new images in chunks (never one task per image), after the
    rows commit. A broker outage only delays it: ``process_pending_images`` catches up."""
    from django.db import transaction

    def send() -> None:
        for chunk in chunked(image_ids, settings.LOUPE_PROCESS_CHUNK):
            try:
                process_images.apply_async(
                    args=[chunk],
                    retry=True,
                    retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
                )
            except Exception:
                logger.warning("Broker unreachable; %d images wait for the catch-up", len(chunk))
                return

    if image_ids:
        transaction.on_commit(send)


@shared_task(name="curation.process_pending_images", acks_late=True)
def process_pending_images() -> int:
    ids = images_needing_thumbnails(limit=20 * settings.LOUPE_PROCESS_CHUNK)
    for chunk in chunked(ids, settings.LOUPE_PROCESS_CHUNK):
        process_images.delay(chunk)
    return len(ids)


@shared_task(name="curation.import_archive", acks_late=True, **_RETRY, **JOB_TASK_LIMITS)
def import_archive(job_id: int) -> None:
    def work(job: Job) -> dict[str, Any]:
        params = job.params
        batch = ImportBatch.objects.select_related("created_by").get(pk=params["batch_id"])
        subclass_id = params.get("subclass_id")
        destination = Destination(
            subclass=SubClass.objects.get(pk=subclass_id) if subclass_id else None,
            from_folders=params.get("from_folders", True),
            source=params.get("source", "real"),
        )

        def progress(done: int, total: int) -> None:
            job_progress(job_id=job.pk, done=done, total=total, message=f"{done} of {total} files")

        with default_storage.open(params["archive"], "rb") as stream:
            archive_import(
                stream=stream,
                destination=destination,
                actor=batch.created_by,
                batch=batch,
                progress=progress,
            )
        # Everything this import created, an earlier failed attempt's images included.
        enqueue_processing(
            list(
                batch.images.filter(thumbnail_ready=False)
                .order_by("id")
                .values_list("pk", flat=True)
            )
        )
        default_storage.delete(params["archive"])
        batch.refresh_from_db()
        return {
            "batch_id": batch.pk,
            "created": batch.created_count,
            "duplicate": batch.duplicate_count,
            "rejected": batch.rejected_count,
            "message": (
                f"{batch.created_count} created, {batch.duplicate_count} duplicates, "
                f"{batch.rejected_count} rejected"
            ),
        }

    job_run(job_id=job_id, work=work, retry_on=_RETRYABLE)


@shared_task(name="curation.sweep_orphans", acks_late=True, **JOB_TASK_LIMITS)
def sweep_orphans(job_id: int | None = None) -> dict[str, object]:
    if job_id is None:
        return orphans_sweep().as_dict()
    job_run(job_id=job_id, work=lambda job: orphans_sweep(**job.params).as_dict())
    return {}


@shared_task(name="curation.requeue_stalled_jobs")
def requeue_stalled_jobs() -> int:
    """Send again the jobs whose first send failed and those whose worker died."""
    return jobs_requeue_stalled()


@shared_task(name="curation.build_dataset", acks_late=True, **JOB_TASK_LIMITS)
def build_dataset(job_id: int) -> None:
    from curation.models import DatasetVersion
    from curation.services.datasets import dataset_build, dataset_version_fail

    def work(job: Job) -> dict[str, Any]:
        version = DatasetVersion.objects.get(pk=job.params["version_id"])

        def progress(done: int, total: int) -> None:
            job_progress(job_id=job.pk, done=done, total=total, message=f"{done} of {total} images")

        try:
            dataset_build(version=version, progress=progress)
        except Exception:
            dataset_version_fail(version_id=version.pk)
            raise
        totals = version.summary["totals"]
        warnings = version.summary.get("warnings", [])
        plural = "es" if len(warnings) > 1 else ""
        off = f"; {len(warnings)} class{plural} off the ratios (see warnings)" if warnings else ""
        return {
            "version_id": version.pk,
            "images": totals.get("total", 0),
            "classes": version.summary["included_classes"],
            "warnings": warnings,
            "message": (
                f"{version.name}: {totals.get('total', 0)} images in "
                f"{version.summary['included_classes']} classes{off}"
            ),
        }

    job_run(job_id=job_id, work=work)


@shared_task(name="curation.export_dataset", acks_late=True, **_RETRY, **JOB_TASK_LIMITS)
def export_dataset(job_id: int) -> None:
    from pathlib import Path

    from curation.models import DatasetVersion
    from curation.services.export import dataset_export
    from curation.services.export_publish import export_publish

    def work(job: Job) -> dict[str, Any]:
        params = job.params
        version = DatasetVersion.objects.get(pk=params["version_id"])

        def progress(done: int, total: int) -> None:
            job_progress(job_id=job.pk, done=done, total=total, message=f"{done} of {total} images")

        result = dataset_export(
            version=version,
            out=params["out"],
            format=params["format"],
            letterbox=params.get("letterbox"),
            shard_size=params.get("shard_size", 10_000),
            progress=progress,
            hard_links=params.get("hard_links", False),
        )
        published = export_publish(job_id=job.pk, out=Path(result.out))
        return {**result.as_dict(), **published, "message": result.message}

    job_run(job_id=job_id, work=work, retry_on=_RETRYABLE)
