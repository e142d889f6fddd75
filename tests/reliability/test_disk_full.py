"""The disk fills up during a dataset export: the job fails naming the cause, and no partial
shard, temporary file or half-written folder is left; an earlier export stays whole."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from curation.models import DatasetVersion, Job, JobStatus
from curation.services import export
from curation.services.export import ExportError, dataset_export
from tests.curation.test_export import version  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db

SHARDS_BEFORE_FULL = 2
_real_write_shard = export._write_shard
_real_link_or_copy = export._link_or_copy
_real_copy = export.FileCopier.copy


def write_shard_until_the_disk_fills(task: Any) -> tuple[str, int, int]:
    """The first SHARDS_BEFORE_FULL training shards are written; the next ones run out of space
    half-way, leaving their partial file behind as a real ENOSPC can."""
    name = Path(task.path).name
    if name.startswith("train-") and int(name[6:12]) >= SHARDS_BEFORE_FULL:
        Path(task.path + ".partial").write_bytes(b"\0" * 1024)
        raise OSError(errno.ENOSPC, "No space left on device", task.path + ".partial")
    return _real_write_shard(task)


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_an_export_job_that_fills_the_disk_fails_and_leaves_nothing_behind(
    version: DatasetVersion,  # noqa: F811
    reviewer_api: APIClient,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.LOUPE_EXPORT_DIR = tmp_path / "exports"
    monkeypatch.setattr(export, "_write_shard", write_shard_until_the_disk_fills)
    with django_capture_on_commit_callbacks(execute=False):
        response = reviewer_api.post(
            f"/api/v1/datasets/{version.pk}/export/",
            {"format": "webdataset", "shard_size": 2},
            format="json",
        )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])

    from curation.tasks import export_dataset

    with pytest.raises(ExportError):
        export_dataset(job_id=job.pk)  # the worker's call; not retried (ExportError)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "No space left on the device" in job.message
    assert "partial export was removed" in job.message
    # Shards written before the disk filled, partial shards and staging folders: all gone.
    assert everything_under(tmp_path / "exports") == []


def test_a_full_disk_leaves_the_earlier_export_in_that_folder_whole(
    version: DatasetVersion,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "exports" / "wds"
    dataset_export(version=version, out=out, format="webdataset", shard_size=2, workers=2)
    before = {name: (out / name).read_bytes() for name in everything_under(out)}
    assert len([name for name in before if name.endswith(".tar")]) > SHARDS_BEFORE_FULL

    monkeypatch.setattr(export, "_write_shard", write_shard_until_the_disk_fills)
    with pytest.raises(ExportError, match="No space left"):
        dataset_export(version=version, out=out, format="webdataset", shard_size=2, workers=2)

    assert {name: (out / name).read_bytes() for name in everything_under(out)} == before
    assert everything_under(out.parent) == sorted(["wds", *(f"wds/{name}" for name in before)])


def test_a_folder_export_that_fills_the_disk_leaves_no_half_tree(
    version: DatasetVersion,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = []

    def copy_until_the_disk_fills(self: export.FileCopier, source: str, target: Path) -> bool:
        if len(written) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        written.append(target)
        return _real_copy(self, source, target)

    monkeypatch.setattr(export.FileCopier, "copy", copy_until_the_disk_fills)
    with pytest.raises(ExportError, match="No space left"):
        # One worker: the copies run here, where the count is kept.
        dataset_export(
            version=version, out=tmp_path / "exports" / "tree", format="folder", workers=1
        )

    assert len(written) == 5
    assert everything_under(tmp_path / "exports") == []


def test_a_hard_linked_export_that_fills_the_disk_leaves_no_half_tree(
    version: DatasetVersion,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = []

    def link_until_the_disk_fills(source: str, target: Path) -> bool:
        if len(written) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        written.append(target)
        return _real_link_or_copy(source, target)

    monkeypatch.setattr(export, "_link_or_copy", link_until_the_disk_fills)
    with pytest.raises(ExportError, match="No space left"):
        dataset_export(
            version=version, out=tmp_path / "exports" / "tree", format="folder", hard_links=True
        )

    assert len(written) == 5
    assert everything_under(tmp_path / "exports") == []
