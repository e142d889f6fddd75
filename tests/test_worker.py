"""An import processed end to end by a real Celery worker process, against the database and
broker this test uses (SQLite + filesystem broker by default; PostgreSQL + Redis when
DATABASE_URL and REDIS_URL are set)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from curation.models import Image, Job, JobStatus, SubClass
from tests.factories import image_bytes, zip_bytes

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WAIT_SECONDS = 60


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited ({self.process.returncode}):\n{self.output()}")
            time.sleep(0.2)
        pytest.fail(
            f"gave up after {WAIT_SECONDS} s waiting for {what}; worker log:\n{self.output()}"
        )


@pytest.fixture
def worker(transactional_db: None, media_root: Path, tmp_path: Path) -> Iterator[Worker]:
    """A real worker on this test's database, broker and media folder; stopped afterwards."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "LOUPE_TEST_DATABASE_NAME": str(settings.DATABASES["default"]["NAME"]),
        "LOUPE_MEDIA_ROOT": str(media_root),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "worker.log"
    celery = Path(sys.executable).with_name("celery")
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                str(celery),
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "-c",
                "1",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--hostname",
                f"test-{os.getpid()}@%h",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Worker(process, log)
    finally:
        # The test is over and its tasks are done (or it failed): the worker needs no warm
        # shutdown, which takes seconds, and its queue is this run's alone.
        process.kill()
        process.wait(timeout=15)


def test_a_zip_import_is_processed_end_to_end_by_a_real_worker(
    worker: Worker, reviewer: Any
) -> None:
    # A reviewer: the archive's folders create its classes (a labeller's go to the inbox).
    client = APIClient()
    client.force_authenticate(reviewer)
    archive = zip_bytes(
        {
            "Robin/juvenile/a.jpg": image_bytes(size=(320, 200), seed=5001),
            "Robin/b.png": image_bytes(fmt="PNG", size=(120, 90), seed=5002),
            "c.jpg": image_bytes(seed=5003),
            "Robin/report.jpg": b"%PDF-1.4\n%%EOF\n",
        }
    )

    response = client.post(
        "/api/v1/imports/",
        {"archive": SimpleUploadedFile("birds.zip", archive, content_type="application/zip")},
        format="multipart",
    )
    assert response.status_code == 202, response.json()
    job_id = response.json()["job"]["id"]

    def job_finished() -> bool:
        return Job.objects.get(pk=job_id).is_finished

    worker.wait_for(job_finished, "the import job")
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.SUCCEEDED, f"{job.message}\n{job.error}\n{worker.output()}"
    assert job.result["message"] == "3 created, 0 duplicates, 1 rejected"

    def thumbnails_made() -> bool:
        return (
            Image.objects.count() == 3 and not Image.objects.filter(thumbnail_ready=False).exists()
        )

    worker.wait_for(thumbnails_made, "the thumbnails")
    log = worker.output()
    assert "curation.import_archive" in log and "curation.process_images" in log
    for image in Image.objects.all():
        assert default_storage.exists(image.storage_name)
        assert default_storage.exists(image.thumbnail_name)
        thumbnail = client.get(f"/api/v1/images/{image.pk}/thumbnail/")
        assert thumbnail.status_code == 200
        assert b"".join(thumbnail.streaming_content)[:2] == b"\xff\xd8"
    juvenile = SubClass.objects.get(label_class__name="Robin", name="juvenile")
    assert juvenile.image_count == 1
    assert Image.objects.get(original_filename="c.jpg").subclass is None
    items = client.get(f"/api/v1/imports/{response.json()['batch']['id']}/items/").json()
    reasons = {item["name"]: item["reason"] for item in items["results"]}
    assert "not a supported image" in reasons["Robin/report.jpg"]
    assert not default_storage.exists(job.params["archive"])
