"""A worker killed (SIGKILL) in the middle of a long import: the job is sent again once its
heartbeat is stale, a new worker finishes it, and nothing is recorded twice."""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Count
from django.utils import timezone
from PIL import Image as PILImage
from rest_framework.test import APIClient

from curation.models import (
    Image,
    ImageFeatures,
    ImportBatch,
    ImportItem,
    Job,
    JobStatus,
    LabelEvent,
    SubClass,
)
from curation.services.jobs import jobs_requeue_stalled
from tests.reliability.conftest import Worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

IMAGES = 400
CLASSES = ("Robin", "Wren", "Finch", "Heron")


def noise_jpeg(seed: int) -> bytes:
    """A small JPEG of coarse random blocks: unlike any other seed's, so no two images are
    near-duplicates of each other."""
    rng = random.Random(seed)
    blocks = PILImage.frombytes("RGB", (8, 8), bytes(rng.randrange(256) for _ in range(192)))
    out = io.BytesIO()
    blocks.resize((48, 48), PILImage.Resampling.NEAREST).save(out, format="JPEG", quality=90)
    return out.getvalue()


def library_archive() -> tuple[bytes, int]:
    """IMAGES images in class folders, one repeated file and one non-image; (zip, entries)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(IMAGES):
            name = CLASSES[index % len(CLASSES)]
            archive.writestr(f"{name}/{index:05d}.jpg", noise_jpeg(index))
        archive.writestr("Robin/copy-of-00000.jpg", noise_jpeg(0))
        archive.writestr("Wren/notes.jpg", b"not an image at all")
    return buffer.getvalue(), IMAGES + 2


def test_an_import_whose_worker_is_killed_mid_job_completes_once_without_duplicates(
    start_worker: Callable[..., Worker], reviewer: Any
) -> None:
    # A reviewer: the archive's folders create its classes (a labeller's go to the inbox).
    client = APIClient()
    client.force_authenticate(reviewer)
    archive, entries = library_archive()
    first = start_worker()
    response = client.post(
        "/api/v1/imports/",
        {"archive": SimpleUploadedFile("birds.zip", archive, content_type="application/zip")},
        format="multipart",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]["id"]
    batch_id = response.json()["batch"]["id"]

    def some_chunks_recorded() -> bool:
        job = Job.objects.get(pk=job_id)
        return job.status == JobStatus.RUNNING and job.done >= 100

    first.wait_closely(some_chunks_recorded, "the import recording its first chunks")
    first.kill()

    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.RUNNING, "the import finished before the worker was killed"
    assert 0 < ImportItem.objects.filter(batch_id=batch_id).count() < entries
    # Nothing was sent again while the heartbeat is fresh: the job might still be alive.
    assert jobs_requeue_stalled() == 0

    # The dead worker stays silent past the staleness setting...
    silent_since = timezone.now() - timedelta(seconds=settings.LOUPE_JOB_STALE_SECONDS + 1)
    Job.objects.filter(pk=job_id).update(heartbeat_at=silent_since)
    # ...so the periodic requeue sends the job again and a new worker claims it.
    assert jobs_requeue_stalled() == 1
    second = start_worker()

    def finished() -> bool:
        return Job.objects.get(pk=job_id).is_finished

    second.wait_for(finished, "the import to finish on the second worker")
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.SUCCEEDED, f"{job.message}\n{job.error}\n{second.output()}"
    assert job.attempts == 2
    assert job.result["message"] == f"{IMAGES} created, 1 duplicates, 1 rejected"

    # Every entry reported exactly once, every image stored once with one label event.
    items = ImportItem.objects.filter(batch_id=batch_id)
    assert items.count() == entries
    assert not items.values("name").annotate(n=Count("id")).filter(n__gt=1).exists()
    batch = ImportBatch.objects.get(pk=batch_id)
    assert (batch.created_count, batch.duplicate_count, batch.rejected_count) == (IMAGES, 1, 1)
    assert Image.objects.count() == IMAGES
    assert LabelEvent.objects.count() == IMAGES
    assert not LabelEvent.objects.values("image").annotate(n=Count("id")).filter(n__gt=1).exists()
    per_class = {
        row["label_class__name"]: row["image_count"]
        for row in SubClass.objects.values("label_class__name", "image_count")
    }
    assert per_class == {name: IMAGES // len(CLASSES) for name in CLASSES}

    def processed() -> bool:
        return (
            ImageFeatures.objects.count() == IMAGES
            and not Image.objects.filter(thumbnail_ready=False).exists()
        )

    second.wait_for(processed, "thumbnails and hashes of every image")
    assert ImageFeatures.objects.count() == IMAGES  # one row each (the image is its key)
    # A second requeue finds nothing left to do.
    assert jobs_requeue_stalled() == 0
