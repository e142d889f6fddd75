"""No write to an export reaches the library: folder exports copy (or reflink) originals, and
hard links happen only when asked for. These tests run as whatever user runs the suite; as
root (``make run`` in a container) a read-only mode stops nobody, so only a separate inode
keeps the original whole."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from curation.models import DatasetVersion, Image, Job
from curation.services import export as export_service
from curation.services.datasets import DatasetParams, dataset_build, dataset_version_create
from curation.services.export import FileCopier, dataset_export
from tests.factories import LabelClassFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(make_image: Callable[..., Image]) -> DatasetVersion:
    for name in ("Wren", "Robin"):
        subclass = LabelClassFactory(name=name).subclasses.get(is_default=True)
        for _ in range(4):
            make_image(subclass, size=(32, 24))
    built = dataset_version_create(
        name="v1", params=DatasetParams(min_per_class=2, ratios=(75, 25, 0)), actor=None
    )
    return dataset_build(version=built)


def originals(version: DatasetVersion) -> dict[str, bytes]:
    """Every original of the version by SHA-256, as the library stores it."""
    found = {}
    for image in Image.objects.filter(pk__in=version.assignments.values("image_id")):
        found[image.sha256] = Path(default_storage.path(image.storage_name)).read_bytes()
    return found


def test_appending_to_a_file_of_the_default_folder_export_leaves_the_original_unchanged(
    version: DatasetVersion, tmp_path: Path
) -> None:
    before = originals(version)
    result = dataset_export(version=version, out=tmp_path / "tree", format="folder")

    exported = sorted((tmp_path / "tree").glob("*/*/*.jpg"))
    assert len(exported) == len(before)
    for path in exported:
        with open(path, "ab") as handle:  # as root this succeeds whatever the mode says
            handle.write(b"x\n")
        os.chmod(path, 0o644)
        with open(path, "r+b") as handle:
            handle.write(b"\0\0\0\0")

    after = originals(version)
    assert after == before
    for sha256, data in after.items():
        assert hashlib.sha256(data).hexdigest() == sha256
    assert result.linked == 0


def test_an_exported_file_is_an_inode_of_its_own_with_the_original_bytes(
    version: DatasetVersion, tmp_path: Path
) -> None:
    dataset_export(version=version, out=tmp_path / "tree", format="folder")

    for path in (tmp_path / "tree").glob("*/*/*.jpg"):
        image = Image.objects.get(sha256=path.stem)
        original = Path(default_storage.path(image.storage_name))
        assert not os.path.samefile(path, original)
        assert path.read_bytes() == original.read_bytes()
        assert os.stat(path).st_nlink == 1


def test_hard_links_are_made_only_when_asked_for(version: DatasetVersion, tmp_path: Path) -> None:
    result = dataset_export(
        version=version, out=tmp_path / "linked", format="folder", hard_links=True
    )

    assert result.linked == version.assignments.count()
    path = next((tmp_path / "linked").glob("*/*/*.jpg"))
    image = Image.objects.get(sha256=path.stem)
    assert os.path.samefile(path, default_storage.path(image.storage_name))


def test_the_copier_falls_back_to_a_copy_where_reflinks_and_copy_ranges_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "original.bin"
    source.write_bytes(os.urandom(300_000))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(export_service.fcntl, "ioctl", refuse)
    monkeypatch.setattr(export_service.os, "copy_file_range", refuse)
    copier = FileCopier()

    assert copier.copy(str(source), tmp_path / "a.bin") is False
    assert copier.copy(str(source), tmp_path / "b.bin") is False
    assert (tmp_path / "a.bin").read_bytes() == source.read_bytes()
    assert (tmp_path / "b.bin").read_bytes() == source.read_bytes()
    assert not copier.try_reflink and not copier.try_copy_range


def test_a_reflink_counts_as_one_and_never_shares_the_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the file system clones (Btrfs, XFS), FICLONE gives the target the source's bytes
    in a new inode; simulated here, since this machine's file system may have no reflinks."""
    source = tmp_path / "original.bin"
    source.write_bytes(b"pixels" * 1000)

    def clone(fd: int, request: int, source_fd: int) -> int:
        assert request == export_service.FICLONE
        os.write(fd, os.pread(source_fd, 1 << 20, 0))
        return 0

    monkeypatch.setattr(export_service.fcntl, "ioctl", clone)

    assert FileCopier().copy(str(source), tmp_path / "clone.bin") is True
    assert (tmp_path / "clone.bin").read_bytes() == source.read_bytes()
    assert not os.path.samefile(source, tmp_path / "clone.bin")


def test_hard_links_over_the_api_are_an_explicit_choice(
    version: DatasetVersion,
    reviewer_api: APIClient,
    settings: Any,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from curation.tasks import export_dataset

    settings.LOUPE_EXPORT_DIR = tmp_path / "exports"
    jobs = []
    for body in ({"format": "folder"}, {"format": "folder", "hard_links": True}):
        with django_capture_on_commit_callbacks(execute=False):
            response = reviewer_api.post(
                f"/api/v1/datasets/{version.pk}/export/", body, format="json"
            )
        assert response.status_code == 202, response.content
        job = Job.objects.get(pk=response.json()["id"])
        export_dataset(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == "succeeded", job.error
        jobs.append(job)

    copied, linked = (job.result for job in jobs)
    assert copied["linked"] == 0
    assert copied["copied"] + copied["reflinked"] == version.assignments.count()
    assert linked["linked"] == version.assignments.count()
    assert copied["out"] != linked["out"]  # one never replaces the other


def test_the_export_command_copies_by_default_and_links_on_request(
    version: DatasetVersion, tmp_path: Path, capsys: Any
) -> None:
    from django.core.management import call_command

    call_command(
        "export_dataset", "v1", "--format", "folder", "--out", str(tmp_path / "c"), "--json"
    )
    copied = json.loads(capsys.readouterr().out)
    call_command(
        "export_dataset",
        "v1",
        "--format",
        "folder",
        "--hard-links",
        "--out",
        str(tmp_path / "l"),
        "--json",
    )
    linked = json.loads(capsys.readouterr().out)

    assert copied["linked"] == 0 and copied["copied"] + copied["reflinked"] == copied["images"]
    assert linked["linked"] == linked["images"]
