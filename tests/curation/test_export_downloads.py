"""Exports can be downloaded by reviewers, over the API and from the version page: listed with
their files, each file resumable with byte ranges, a folder tree as one streamed tar, and with
object storage the export written to the bucket and handed out as short-lived signed URLs."""

from __future__ import annotations

import csv
import io
import json
import os
import runpy
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.storage import InMemoryStorage, default_storage
from django.test import Client
from django.utils._os import safe_join
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import DatasetVersion, Image, Job, JobStatus
from curation.ranges import Unsatisfiable, requested_range
from curation.services.dataset_jobs import EXPORT_DATASET_JOB, dataset_export_job_start
from curation.services.datasets import DatasetParams, dataset_build, dataset_version_create
from curation.tasks import export_dataset
from tests.factories import LabelClassFactory

pytestmark = pytest.mark.django_db


class ObjectStorage(InMemoryStorage):
    """A storage with no local paths, as S3 is, held in memory (no network)."""

    def path(self, name: str) -> str:
        raise NotImplementedError("object storage has no paths")

    def _relative_path(self, name: str) -> str:
        return os.path.relpath(safe_join(self.location, name), self.location)


@pytest.fixture
def exports_dir(settings: Any, tmp_path: Path) -> Path:
    settings.LOUPE_EXPORT_DIR = tmp_path / "exports"
    return tmp_path / "exports"


@pytest.fixture
def version(make_image: Callable[..., Image]) -> DatasetVersion:
    for name, count in (("Wren", 6), ("Robin", 5)):
        subclass = LabelClassFactory(name=name).subclasses.get(is_default=True)
        for _ in range(count):
            make_image(subclass, size=(48, 32))
    built = dataset_version_create(
        name="birds v1", params=DatasetParams(min_per_class=2, ratios=(80, 20, 0)), actor=None
    )
    return dataset_build(version=built)


def run_export(version: DatasetVersion, reviewer: User, capture: Any, **options: Any) -> Job:
    """Start an export job as the API does and run its task here."""
    with capture(execute=False):
        job = dataset_export_job_start(
            version=version,
            format=options.pop("format", "webdataset"),
            letterbox=options.pop("letterbox", None),
            shard_size=options.pop("shard_size", 4),
            actor=reviewer,
            **options,
        )
    export_dataset(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


def stored_files(prefix: str) -> list[str]:
    """Every file under ``prefix`` in the storage."""
    folders, files = default_storage.listdir(prefix)
    found = [f"{prefix}/{name}" for name in files]
    for folder in folders:
        found += stored_files(f"{prefix}/{folder}")
    return found


def body(response: Any) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return bytes(response.content)


def test_a_reviewer_lists_a_versions_exports_with_their_files(
    version: DatasetVersion,
    reviewer: User,
    reviewer_api: APIClient,
    exports_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = run_export(version, reviewer, django_capture_on_commit_callbacks)

    response = reviewer_api.get(f"/api/v1/datasets/{version.pk}/exports/")

    assert response.status_code == 200, response.content
    [export] = response.json()
    assert export["id"] == job.pk and export["format"] == "webdataset"
    assert export["storage"] == "local" and export["replaced_by"] is None
    names = [f["name"] for f in export["files"]]
    assert names[:3] == ["manifest.csv", "label_map.json", "dataset.json"]
    shards = sorted(p.name for p in Path(job.params["out"]).glob("*.tar"))
    assert names[3:] == shards and len(shards) >= 3  # 4 images a shard
    for listed in export["files"]:
        assert listed["size"] == (Path(job.params["out"]) / listed["name"]).stat().st_size
        assert listed["url"].endswith(
            f"/api/v1/datasets/{version.pk}/exports/{job.pk}/files/{listed['name']}"
        )
    assert export["archive"] is None  # shards are tar files already


def test_downloads_are_for_reviewers_only(
    version: DatasetVersion,
    reviewer: User,
    api: APIClient,
    exports_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = run_export(version, reviewer, django_capture_on_commit_callbacks)
    base = f"/api/v1/datasets/{version.pk}/exports/"

    assert api.get(base).status_code == 403
    assert api.get(f"{base}{job.pk}/files/manifest.csv").status_code == 403
    assert APIClient().get(f"{base}{job.pk}/files/manifest.csv").status_code in (401, 403)


def test_a_file_downloads_whole_as_an_attachment_that_is_never_sniffed(
    version: DatasetVersion,
    reviewer: User,
    reviewer_api: APIClient,
    exports_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = run_export(version, reviewer, django_capture_on_commit_callbacks)
    manifest = Path(job.params["out"]) / "manifest.csv"

    response = reviewer_api.get(
        f"/api/v1/datasets/{version.pk}/exports/{job.pk}/files/manifest.csv",
        HTTP_ACCEPT="text/csv",
    )

    assert response.status_code == 200
    assert body(response) == manifest.read_bytes()
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="manifest.csv"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Length"] == str(manifest.stat().st_size)
    rows = list(csv.DictReader(io.StringIO(manifest.read_text())))
    assert len(rows) == version.assignments.count()


def test_a_broken_shard_download_resumes_with_a_range_request(
    version: DatasetVersion,
    reviewer: User,
    reviewer_api: APIClient,
    exports_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = run_export(version, reviewer, django_capture_on_commit_callbacks)
    shard = sorted(Path(job.params["out"]).glob("train-*.tar"))[0]
    whole = shard.read_bytes()
    url = f"/api/v1/datasets/{version.pk}/exports/{job.pk}/files/{shard.name}"

    first = reviewer_api.get(url)
    assert first.status_code == 200 and first["Content-Type"] == "application/x-tar"
    received = body(first)[:3000]  # the connection broke here
    rest = reviewer_api.get(url, HTTP_RANGE=f"bytes={len(received)}-", HTTP_IF_RANGE=first["ETag"])

    assert rest.status_code == 206
    assert rest["Content-Range"] == f"bytes 3000-{len(whole) - 1}/{len(whole)}"
    assert rest["Content-Length"] == str(len(whole) - 3000)
    resumed = received + body(rest)
    assert resumed == whole
    with tarfile.open(fileobj=io.BytesIO(resumed)) as tar:
        assert len(tar.getmembers()) == 3 * 4  # image, .cls and .json of 4 images

    suffix = reviewer_api.get(url, HTTP_RANGE="bytes=-100")
    assert suffix.status_code == 206 and body(suffix) == whole[-100:]
    past_end = reviewer_api.get(url, HTTP_RANGE=f"bytes={len(whole)}-")
    assert past_end.status_code == 416
    assert past_end["Content-Range"] == f"bytes */{len(whole)}"
    # A resume against another version of the file gets the whole file again.
    changed = reviewer_api.get(url, HTTP_RANGE="bytes=3000-", HTTP_IF_RANGE='"another"')
    assert changed.status_code == 200 and body(changed) == whole
    # Several ranges at once: the whole file, which the RFC allows.
    several = reviewer_api.get(url, HTTP_RANGE="bytes=0-9,20-29")
    assert several.status_code == 200 and body(several) == whole
    again = reviewer_api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304


def test_the_range_header_is_read_as_the_rfc_says() -> None:
    assert requested_range("bytes=0-499", 1000) == (0, 499)
    assert requested_range("bytes=500-", 1000) == (500, 999)
    assert requested_range("bytes=-200", 1000) == (800, 999)
    assert requested_range("bytes=-2000", 1000) == (0, 999)
    assert requested_range("bytes=900-5000", 1000) == (900, 999)
    for ignored in ("bytes=5-1", "items=0-5", "bytes=a-b", "bytes=", "bytes=0-1,4-5", "bytes=-"):
        assert requested_range(ignored, 1000) is None, ignored
    for unsatisfiable in ("bytes=1000-", "bytes=-0", "bytes=5000-6000"):
        with pytest.raises(Unsatisfiable):
            requested_range(unsatisfiable, 1000)


def test_names_outside_the_export_are_not_served(
    version: DatasetVersion,
    reviewer: User,
    reviewer_api: APIClient,
    exports_dir: Path,
    django_capture_on_commit_callbacks: Any,
    tmp_path: Path,
) -> None:
    job = run_export(version, reviewer, django_capture_on_commit_callbacks, format="folder")
    out = Path(job.params["out"])
    (tmp_path / "secret.txt").write_text("not yours")
    class_folder = next((out / "train").iterdir())
    os.symlink(tmp_path / "secret.txt", class_folder / ("a" * 64 + ".jpg"))
    base = f"/api/v1/datasets/{version.pk}/exports/{job.pk}/files/"

    for name in (
        "../../secret.txt",
        "train/../../../secret.txt",
        "train/%2e%2e/%2e%2e/secret.txt",
        f"train/{class_folder.name}/{'a' * 64}.jpg",  # a symlink planted in the export
        "train/.hidden/" + "b" * 64 + ".jpg",
        "notes.txt",
    ):
        response = reviewer_api.get(base + name)
        assert response.status_code == 404, name
        assert b"not yours" not in body(response)


def test_a_folder_tree_downloads_as_one_streamed_tar_and_file_by_file(
    version: DatasetVersion,
    reviewer: User,
    reviewer_api: APIClient,
    exports_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = run_export(version, reviewer, django_capture_on_commit_callbacks, format="folder")
    out = Path(job.params["out"])
    export = reviewer_api.get(f"/api/v1/datasets/{version.pk}/exports/{job.pk}/").json()
    assert export["archive"].endswith(f"/exports/{job.pk}/archive.tar")

    response = reviewer_api.get(f"/api/v1/datasets/{version.pk}/exports/{job.pk}/archive.tar")

    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"] == f'attachment; filename="{out.name}.tar"'
    with tarfile.open(fileobj=io.BytesIO(body(response))) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    expected = {
        f"{out.name}/{path.relative_to(out).as_posix()}": path.read_bytes()
        for path in out.rglob("*")
        if path.is_file()
    }
    assert members == expected
    assert len([n for n in members if n.endswith(".jpg")]) == version.assignments.count()

    row = next(csv.DictReader(io.StringIO((out / "manifest.csv").read_text())))
    one = reviewer_api.get(f"/api/v1/datasets/{version.pk}/exports/{job.pk}/files/{row['file']}")
    assert one.status_code == 200
    original = Image.objects.get(sha256=row["sha256"])
    assert body(one) == default_storage.open(original.storage_name).read()
    assert one["Content-Type"] == "image/jpeg"
    assert one["Content-Disposition"].startswith("attachment")


def test_an_export_replaced_by_a_newer_one_offers_nothing_and_says_which(
    version: DatasetVersion,
    reviewer: User,
    reviewer_api: APIClient,
    exports_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    older = run_export(version, reviewer, django_capture_on_commit_callbacks)
    newer = run_export(version, reviewer, django_capture_on_commit_callbacks)

    listed = {
        e["id"]: e for e in reviewer_api.get(f"/api/v1/datasets/{version.pk}/exports/").json()
    }
    assert listed[older.pk]["replaced_by"] == newer.pk and listed[older.pk]["files"] == []
    assert listed[newer.pk]["files"]
    response = reviewer_api.get(
        f"/api/v1/datasets/{version.pk}/exports/{older.pk}/files/manifest.csv"
    )
    assert response.status_code == 404
    assert f"replaced by export #{newer.pk}" in response.json()["detail"]


def test_the_version_page_offers_the_downloads_to_reviewers(
    version: DatasetVersion,
    reviewer: User,
    labeller: User,
    exports_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = run_export(version, reviewer, django_capture_on_commit_callbacks, format="folder")
    browser = Client()
    browser.force_login(reviewer)

    page = browser.get(f"/datasets/{version.pk}/").content.decode()

    manifest_link = f"/datasets/{version.pk}/exports/{job.pk}/files/manifest.csv"
    assert manifest_link in page
    assert f"/datasets/{version.pk}/exports/{job.pk}/archive.tar" in page
    download = browser.get(manifest_link)
    assert download.status_code == 200
    assert body(download) == (Path(job.params["out"]) / "manifest.csv").read_bytes()
    partial = browser.get(manifest_link, HTTP_RANGE="bytes=0-5")
    assert partial.status_code == 206 and body(partial) == b"sha256"

    browser.force_login(labeller)
    page = browser.get(f"/datasets/{version.pk}/").content.decode()
    assert manifest_link not in page and "Downloads are for reviewers" in page
    assert browser.get(manifest_link).status_code == 403


def test_with_object_storage_the_export_is_written_to_the_bucket_and_streamed_from_it(
    settings: Any,
    make_image: Callable[..., Image],
    reviewer: User,
    reviewer_api: APIClient,
    exports_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": f"{__name__}.ObjectStorage"},
    }
    subclass = LabelClassFactory(name="Wren").subclasses.get(is_default=True)
    for _ in range(5):
        make_image(subclass, size=(40, 30))
    built = dataset_build(
        version=dataset_version_create(
            name="stored", params=DatasetParams(min_per_class=2, ratios=(80, 20, 0)), actor=None
        )
    )

    first = run_export(built, reviewer, django_capture_on_commit_callbacks, shard_size=2)
    second = run_export(built, reviewer, django_capture_on_commit_callbacks, shard_size=2)

    out = Path(second.params["out"])
    assert not out.exists()  # built on the worker's disk, then moved to the bucket
    assert second.result["storage"] == "object"
    prefix = second.result["prefix"]
    assert prefix == f"exports/{out.name}/{second.pk}"
    _, files = default_storage.listdir(prefix)
    assert {"dataset.json", "label_map.json", "manifest.csv"} <= set(files)
    # The earlier job's export to the same folder is gone from the bucket, as on disk.
    assert stored_files(f"exports/{out.name}/{first.pk}") == []

    shard = next(f for f in files if f.endswith(".tar"))
    url = f"/api/v1/datasets/{built.pk}/exports/{second.pk}/files/{shard}"
    stored = default_storage.open(f"{prefix}/{shard}").read()
    whole = reviewer_api.get(url)
    assert whole.status_code == 200 and body(whole) == stored
    part = reviewer_api.get(url, HTTP_RANGE="bytes=512-1023")
    assert part.status_code == 206 and body(part) == stored[512:1024]
    meta = json.loads(body(reviewer_api.get(url.replace(shard, "dataset.json"))))
    assert meta["images"] == built.assignments.count()


def test_with_s3_a_file_is_a_redirect_to_a_short_lived_signed_url(
    settings: Any,
    version: DatasetVersion,
    reviewer: User,
    reviewer_api: APIClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The storage is the one ``LOUPE_STORAGE=s3`` configures. No request reaches the network:
    signing a URL is local work for boto3."""
    for name, value in {
        "LOUPE_STORAGE": "s3",
        "LOUPE_S3_BUCKET": "loupe-test",
        "LOUPE_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "LOUPE_S3_REGION": "eu-central-1",
        "LOUPE_S3_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "LOUPE_S3_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    }.items():
        monkeypatch.setenv(name, value)
    s3_settings = runpy.run_path(str(Path(settings.BASE_DIR) / "config" / "settings" / "base.py"))
    settings.STORAGES = {**settings.STORAGES, "default": s3_settings["STORAGES"]["default"]}
    job = Job.objects.create(
        kind=EXPORT_DATASET_JOB,
        status=JobStatus.SUCCEEDED,
        params={"version_id": version.pk, "format": "webdataset", "out": "/x/4-birds-webdataset"},
        result={
            "storage": "object",
            "prefix": "exports/4-birds-webdataset/9",
            "downloads": [{"name": "train-000000.tar", "size": 10240}],
        },
    )

    response = reviewer_api.get(
        f"/api/v1/datasets/{version.pk}/exports/{job.pk}/files/train-000000.tar"
    )

    assert response.status_code == 302
    assert response["Cache-Control"] == "no-store"
    location = urlsplit(response["Location"])
    query = parse_qs(location.query)
    assert location.netloc == "127.0.0.1:9"
    assert location.path == "/loupe-test/exports/4-birds-webdataset/9/train-000000.tar"
    assert query["X-Amz-Expires"] == ["300"]
    assert query["X-Amz-Signature"]
    assert query["response-content-disposition"] == ['attachment; filename="train-000000.tar"']
    assert query["response-content-type"] == ["application/x-tar"]
    # A name the export does not offer is refused before anything is signed.
    refused = reviewer_api.get(f"/api/v1/datasets/{version.pk}/exports/{job.pk}/files/x.tar")
    assert refused.status_code == 404
