"""Zip imports over the API run as jobs; the job and the per-file report are visible through
the API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Image, ImportBatch, Job, JobStatus, LabelClass, SubClass
from curation.services.jobs import job_create
from curation.tasks import import_archive
from tests.factories import LabelClassFactory, UserFactory, image_bytes, zip_bytes

pytestmark = pytest.mark.django_db

IMPORTS = "/api/v1/imports/"
JOBS = "/api/v1/jobs/"
PDF = b"%PDF-1.4\n%%EOF\n"


def archive(data: bytes, name: str = "birds.zip") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/zip")


def post_archive(client: APIClient, data: bytes, **fields: Any) -> Any:
    return client.post(IMPORTS, {"archive": archive(data), **fields}, format="multipart")


def stored_archives(media_root: Path) -> list[Path]:
    return sorted((media_root / "imports").glob("*")) if (media_root / "imports").exists() else []


@pytest.fixture
def mixed_archive() -> bytes:
    good = image_bytes(seed=3001)
    return zip_bytes(
        [
            ("Robin/a.jpg", good),
            ("Robin/juvenile/b.png", image_bytes(fmt="PNG", seed=3002)),
            ("Wren/copy.jpg", good),
            ("Wren/report.jpg", PDF),
            ("../evil.jpg", image_bytes(seed=3003)),
        ]
    )


def test_posting_an_archive_queues_a_job_and_stores_nothing_yet(
    api: APIClient, labeller: User, mixed_archive: bytes, media_root: Path
) -> None:
    response = post_archive(api, mixed_archive)

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["entries"] == 5
    assert (body["job"]["status"], body["job"]["total"]) == ("queued", 5)
    assert body["batch"]["kind"] == "zip"
    assert body["batch"]["created_by"] == "lena"
    assert not Image.objects.exists()
    assert len(stored_archives(media_root)) == 1


def test_the_job_imports_the_good_entries_and_reports_the_bad_by_name(
    reviewer_api: APIClient, mixed_archive: bytes, media_root: Path
) -> None:
    api = reviewer_api  # a reviewer's folders create the classes they name
    body = post_archive(api, mixed_archive).json()
    job_id, batch_id = body["job"]["id"], body["batch"]["id"]

    import_archive(job_id)  # what the worker runs

    job = api.get(f"{JOBS}{job_id}/").json()
    assert (job["status"], job["done"], job["total"], job["percent"]) == ("succeeded", 5, 5, 100)
    assert job["result"]["message"] == "2 created, 1 duplicates, 2 rejected"
    batch = api.get(f"{IMPORTS}{batch_id}/").json()
    assert (batch["created_count"], batch["duplicate_count"], batch["rejected_count"]) == (2, 1, 2)
    assert batch["job_status"] == "succeeded"
    items = api.get(f"{IMPORTS}{batch_id}/items/").json()["results"]
    by_name = {item["name"]: (item["outcome"], item["reason"]) for item in items}
    assert by_name["Robin/a.jpg"] == ("created", "")
    assert by_name["Wren/copy.jpg"][0] == "duplicate"
    assert "not a supported image" in by_name["Wren/report.jpg"][1]
    assert "leaves the archive" in by_name["../evil.jpg"][1]
    rejected = api.get(f"{IMPORTS}{batch_id}/items/?outcome=rejected").json()["results"]
    assert {item["name"] for item in rejected} == {"Wren/report.jpg", "../evil.jpg"}
    placed = SubClass.objects.get(label_class__name="Robin", name="juvenile")
    assert placed.image_count == 1
    assert stored_archives(media_root) == []  # the uploaded archive is not kept


def test_an_archive_can_go_to_the_inbox_or_one_sub_class(api: APIClient) -> None:
    robin = LabelClassFactory(name="Robin")
    target = SubClass.objects.get(label_class=robin, is_default=True)
    to_inbox = post_archive(api, zip_bytes({"Wren/a.jpg": image_bytes(seed=3010)}), inbox=True)
    to_robin = post_archive(
        api, zip_bytes({"Wren/b.jpg": image_bytes(seed=3011)}), subclass=target.pk
    )

    import_archive(to_inbox.json()["job"]["id"])
    import_archive(to_robin.json()["job"]["id"])

    assert Image.objects.get(original_filename="a.jpg").subclass is None
    assert Image.objects.get(original_filename="b.jpg").subclass == target
    assert not LabelClass.objects.filter(name="Wren").exists()


def test_importing_the_same_archive_twice_creates_nothing_new(
    api: APIClient, mixed_archive: bytes
) -> None:
    import_archive(post_archive(api, mixed_archive).json()["job"]["id"])
    count = Image.objects.count()

    second = post_archive(api, mixed_archive).json()
    import_archive(second["job"]["id"])

    assert Image.objects.count() == count
    batch = ImportBatch.objects.get(pk=second["batch"]["id"])
    assert (batch.created_count, batch.duplicate_count, batch.rejected_count) == (0, 3, 2)


def test_a_job_that_runs_again_does_nothing_twice(api: APIClient, mixed_archive: bytes) -> None:
    job_id = post_archive(api, mixed_archive).json()["job"]["id"]
    import_archive(job_id)

    import_archive(job_id)  # a redelivered message

    assert Job.objects.get(pk=job_id).attempts == 1
    assert ImportBatch.objects.get().items.count() == 5


def test_a_job_is_retried_after_a_passing_storage_error(
    api: APIClient, mixed_archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = post_archive(api, mixed_archive).json()["job"]["id"]
    failures = [OSError("storage briefly unreachable")]

    class FlakyStorage:
        def __getattr__(self, name: str) -> Any:
            return getattr(default_storage, name)

        def open(self, name: str, mode: str = "rb") -> Any:
            if failures:
                raise failures.pop()
            return default_storage.open(name, mode)

    monkeypatch.setattr("curation.tasks.default_storage", FlakyStorage())

    import_archive.apply(args=[job_id])  # runs the task and its retries here

    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)
    assert Image.objects.count() == 2


def test_a_job_that_keeps_failing_ends_failed_with_its_error(api: APIClient) -> None:
    job_id = post_archive(api, zip_bytes({"a.jpg": image_bytes(seed=3020)})).json()["job"]["id"]
    job = Job.objects.get(pk=job_id)
    default_storage.delete(job.params["archive"])  # the stored archive is gone for good

    import_archive.apply(args=[job_id])

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "FileNotFoundError" in job.message
    assert job.finished_at is not None
    assert api.get(f"{JOBS}{job_id}/").json()["status"] == "failed"


# --- Archives refused before anything is stored ----------------------------------------------


def test_something_that_is_not_a_zip_is_a_400_and_stores_nothing(
    api: APIClient, media_root: Path
) -> None:
    response = post_archive(api, image_bytes(seed=3030))

    assert response.status_code == 400
    assert "not a readable zip archive" in response.json()["detail"]
    assert not Job.objects.exists()
    assert not ImportBatch.objects.exists()
    assert stored_archives(media_root) == []


def test_an_archive_with_too_many_entries_is_a_400_and_stores_nothing(
    api: APIClient, settings: Any, media_root: Path
) -> None:
    settings.LOUPE_ZIP_MAX_ENTRIES = 2
    data = zip_bytes({f"{n}.jpg": image_bytes(seed=3040 + n) for n in range(3)})

    response = post_archive(api, data)

    assert response.status_code == 400
    assert "3 entries; the limit is 2" in response.json()["detail"]
    assert not Job.objects.exists()
    assert stored_archives(media_root) == []


def test_an_empty_archive_is_a_400(api: APIClient) -> None:
    response = post_archive(api, zip_bytes({}))

    assert response.status_code == 400
    assert "holds no files" in response.json()["detail"]


def test_an_archive_needs_a_file(api: APIClient) -> None:
    response = api.post(IMPORTS, {}, format="multipart")

    assert response.status_code == 400
    assert "archive" in response.json()["detail"]


def test_anonymous_cannot_import_or_see_jobs(anon_api: APIClient, mixed_archive: bytes) -> None:
    assert post_archive(anon_api, mixed_archive).status_code == 401
    assert anon_api.get(JOBS).status_code == 401
    assert anon_api.get(IMPORTS).status_code == 401
    assert not Job.objects.exists()


# --- Lists ------------------------------------------------------------------------------------


def test_jobs_filter_by_status_and_ignore_unknown_parameters(api: APIClient) -> None:
    queued = job_create(kind="curation.import_archive", actor=None)
    done = job_create(kind="curation.sweep_orphans", actor=None)
    Job.objects.filter(pk=done.pk).update(status=JobStatus.SUCCEEDED)

    def ids(query: str) -> list[int]:
        return [job["id"] for job in api.get(f"{JOBS}?{query}").json()["results"]]

    assert ids("status=succeeded") == [done.pk]
    assert ids("kind=curation.import_archive") == [queued.pk]
    assert ids("created_by__password__startswith=md5") == [done.pk, queued.pk]
    assert ids("ordering=created_by__password") == [done.pk, queued.pk]


def test_the_job_list_runs_the_same_queries_for_5_or_40_jobs(
    api: APIClient, django_assert_max_num_queries: Any
) -> None:
    users = [UserFactory() for _ in range(3)]

    def add(count: int) -> None:
        for n in range(count):
            job_create(kind="curation.import_archive", actor=users[n % 3], params={"n": n})

    add(5)
    with CaptureQueriesContext(connection) as small:
        assert len(api.get(JOBS).json()["results"]) == 5
    add(35)

    with django_assert_max_num_queries(len(small.captured_queries)):
        body = api.get(JOBS).json()
    assert len(body["results"]) == 40
    assert {job["created_by"] for job in body["results"]} == {u.username for u in users}
    assert len(small.captured_queries) <= 2


def test_the_import_list_runs_the_same_queries_for_5_or_40_imports(
    api: APIClient, make_image: Callable[..., Image], django_assert_max_num_queries: Any
) -> None:
    def add(count: int) -> None:
        for _ in range(count):
            make_image()  # each one is an import batch

    add(5)
    with CaptureQueriesContext(connection) as small:
        assert len(api.get(IMPORTS).json()["results"]) == 5
    add(35)

    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(api.get(IMPORTS).json()["results"]) == 40


@pytest.fixture
def tasks_run_here() -> Any:
    """Tasks sent in this test run in this process, as if a worker took them at once."""
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_images_from_an_attempt_that_failed_late_still_get_thumbnails(
    api: APIClient,
    monkeypatch: pytest.MonkeyPatch,
    tasks_run_here: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from curation import tasks

    data = zip_bytes({"Robin/a.jpg": image_bytes(seed=3050), "Robin/b.jpg": image_bytes(seed=3051)})
    job_id = post_archive(api, data).json()["job"]["id"]
    real_progress = tasks.job_progress
    failures = [OSError("lost the database for a moment")]

    def progress_failing_once(**kwargs: Any) -> None:
        if failures:
            raise failures.pop()  # after the images were recorded
        real_progress(**kwargs)

    monkeypatch.setattr(tasks, "job_progress", progress_failing_once)

    with django_capture_on_commit_callbacks(execute=True):
        import_archive.apply(args=[job_id])

    assert Job.objects.get(pk=job_id).status == JobStatus.SUCCEEDED
    images = Image.objects.all()
    assert len(images) == 2
    assert all(image.thumbnail_ready for image in images)
    assert all(default_storage.exists(image.thumbnail_name) for image in images)


def test_an_archive_over_the_size_limit_is_a_400_and_stores_nothing(
    api: APIClient, settings: Any, media_root: Path
) -> None:
    data = zip_bytes({"Robin/a.jpg": image_bytes(seed=3060)})
    settings.LOUPE_ZIP_MAX_BYTES = len(data) - 1

    response = post_archive(api, data)

    assert response.status_code == 400
    assert f"the limit is {len(data) - 1:,}" in response.json()["detail"]
    assert not Job.objects.exists()
    assert stored_archives(media_root) == []
