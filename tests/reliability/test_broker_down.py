"""The broker is unreachable while images are uploaded and an archive is imported: both
requests succeed with their work pending, and once the broker is back the periodic catch-up
tasks get that work done exactly once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from config.celery import app
from curation.models import Image, ImageFeatures, Job, JobStatus
from curation.services.jobs import jobs_requeue_stalled
from curation.tasks import process_pending_images
from tests.factories import image_bytes, zip_bytes
from tests.reliability.conftest import Worker

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Nothing listens on port 1: every connection is refused at once.
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"
SUCCEEDED = re.compile(r"curation\.process_images\[[^\]]+\] succeeded in [^:]+: (\d+)")


@pytest.fixture
def broker_down() -> Iterator[Callable[[], None]]:
    """This process's Celery app sends to an unreachable broker until ``back_up()``."""
    original = app.conf.broker_url

    def back_up() -> None:
        drop_pooled_connections()
        app.conf.broker_url = original

    drop_pooled_connections()
    app.conf.broker_url = UNREACHABLE_BROKER
    try:
        yield back_up
    finally:
        back_up()


def drop_pooled_connections() -> None:
    """Make the app look up its pools again, so the next send goes to its broker URL (kombu
    keeps one pool per URL, left open for whoever uses that URL next)."""
    app._pool = None
    app.amqp._producer_pool = None


def thumbnails_made(worker: Worker) -> int:
    """Thumbnails the worker reports having made, summed over every process_images task."""
    return sum(int(n) for n in SUCCEEDED.findall(worker.log.read_text()))


def test_uploads_and_imports_during_a_broker_outage_are_processed_once_it_returns(
    broker_down: Callable[[], None],
    start_worker: Callable[..., Worker],
    labeller: Any,
    media_root: Path,
) -> None:
    client = APIClient()
    client.force_authenticate(labeller)

    upload = client.post(
        "/api/v1/images/",
        {
            "files": [
                SimpleUploadedFile(f"{n}.jpg", image_bytes(seed=8100 + n), "image/jpeg")
                for n in range(3)
            ]
        },
        format="multipart",
    )
    archive = zip_bytes({f"Robin/{n}.jpg": image_bytes(seed=8200 + n) for n in range(4)})
    imported = client.post(
        "/api/v1/imports/",
        {"archive": SimpleUploadedFile("birds.zip", archive, content_type="application/zip")},
        format="multipart",
    )

    # Both requests committed; their background work waits.
    assert upload.status_code == 201, upload.content
    assert upload.json()["created"] == 3
    assert imported.status_code == 202, imported.content
    job_id = imported.json()["job"]["id"]
    assert Image.objects.filter(thumbnail_ready=False).count() == 3
    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED
    assert not list((media_root / "derivatives").rglob("*.jpg"))

    broker_down()  # the broker is back
    worker = start_worker()
    # The beat schedule's catch-up tasks, as they would run on their next tick.
    assert process_pending_images() == 3
    Job.objects.filter(pk=job_id).update(created_at=timezone.now() - timedelta(minutes=3))
    assert jobs_requeue_stalled() == 1

    def everything_processed() -> bool:
        return (
            Job.objects.get(pk=job_id).is_finished
            and Image.objects.count() == 7
            and not Image.objects.filter(thumbnail_ready=False).exists()
            and ImageFeatures.objects.count() == 7
        )

    worker.wait_for(everything_processed, "the pending uploads and the import")
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 1
    assert job.result["created"] == 4
    # Exactly once: each thumbnail was made by one task, and nothing is left to catch up on.
    worker.wait_for(lambda: thumbnails_made(worker) == 7, "the worker's task reports")
    assert len(list((media_root / "derivatives").rglob("*.jpg"))) == 7
    assert process_pending_images() == 0
    assert jobs_requeue_stalled() == 0
