"""Celery adapters for hashing, near-duplicate search and quality lint. Imported by
``curation.tasks`` so the worker registers them."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from curation.models import DuplicateMethod, Job
from curation.services.duplicates import duplicates_check, duplicates_scan
from curation.services.hashing import features_make, images_missing_features
from curation.services.jobs import JOB_TASK_LIMITS, job_progress, job_run
from curation.services.quality import quality_baseline_update


def features_and_duplicates_make(*, image_ids: list[int]) -> int:
    """The worker's hashing step after import: hashes and lint metrics, then the check of each
    new image against the library."""
    made = features_make(image_ids=image_ids)
    duplicates_check(image_ids=made)
    return len(made)


def missing_features_make(*, job: Job | None = None) -> int:
    """Compute hashes for every image that has none (those imported before hashing existed,
    or whose task was lost), in chunks."""
    total = 0
    after = 0
    chunk: int = settings.LOUPE_PROCESS_CHUNK
    while ids := images_missing_features(after_id=after, limit=chunk):
        features_make(image_ids=ids)
        after = ids[-1]
        total += len(ids)
        if job is not None:
            job_progress(job_id=job.pk, done=0, message=f"hashed {total} images")
    return total


@shared_task(name="curation.find_duplicates", acks_late=True, **JOB_TASK_LIMITS)
def find_duplicates(job_id: int) -> None:
    def work(job: Job) -> dict[str, Any]:
        method = job.params.get("method", DuplicateMethod.PHASH)
        hashed = missing_features_make(job=job)
        if method != DuplicateMethod.PHASH:
            from inference.embeddings import embeddings_compute

            job_progress(job_id=job.pk, done=0, total=3, message="computing missing embeddings")
            embeddings_compute()
        job_progress(job_id=job.pk, done=1, total=3, message="searching near-duplicates")
        result = duplicates_scan(
            method=method,
            max_distance=job.params.get("max_distance"),
            min_similarity=job.params.get("min_similarity"),
            progress=lambda message: job_progress(job_id=job.pk, done=1, total=3, message=message),
        )
        job_progress(job_id=job.pk, done=2, total=3, message="updating quality thresholds")
        quality_baseline_update()
        job_progress(job_id=job.pk, done=3, total=3)
        return {**result.as_dict(), "hashed": hashed}

    job_run(job_id=job_id, work=work)


@shared_task(name="curation.update_quality_baseline", acks_late=True, **JOB_TASK_LIMITS)
def update_quality_baseline(job_id: int) -> None:
    def work(job: Job) -> dict[str, Any]:
        baseline = quality_baseline_update(overrides=job.params.get("overrides"))
        return {"images": baseline.image_count, "message": f"{baseline.image_count} images"}

    job_run(job_id=job_id, work=work)
