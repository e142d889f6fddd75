"""Content-addressed storage of originals and the sweeper that removes files no row
references."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command

from curation.models import Image
from curation.services.images import image_trash
from curation.services.processing import orphans_sweep, thumbnails_make
from curation.storage import original_name, store_original
from tests.factories import image_bytes

pytestmark = pytest.mark.django_db

DAY = 24 * 3600


def age(path: Path, seconds: int) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def orphan(media_root: Path, data: bytes, extension: str = "jpg") -> Path:
    sha = hashlib.sha256(data).hexdigest()
    store_original(sha256=sha, extension=extension, content=io.BytesIO(data))
    return media_root / original_name(sha, extension)


def test_an_original_lands_at_its_content_address(
    make_image: Callable[..., Image], media_root: Path
) -> None:
    data = image_bytes(fmt="PNG", seed=4001)
    sha = hashlib.sha256(data).hexdigest()

    image = make_image(seed=4001, fmt="PNG")

    path = media_root / "originals" / sha[0:2] / sha[2:4] / f"{sha}.png"
    assert image.sha256 == sha
    assert image.storage_name == f"originals/{sha[0:2]}/{sha[2:4]}/{sha}.png"
    assert path.read_bytes() == data
    assert os.listdir(path.parent) == [path.name]  # no temporary file left beside it


def test_storing_the_same_bytes_twice_keeps_one_file(media_root: Path) -> None:
    data = image_bytes(seed=4002)

    first = orphan(media_root, data)
    second = orphan(media_root, data)

    assert first == second
    assert os.listdir(first.parent) == [first.name]


def test_a_thumbnail_lands_beside_the_derivatives_and_is_recorded(
    make_image: Callable[..., Image], media_root: Path
) -> None:
    image = make_image(size=(600, 300))

    assert thumbnails_make(image_ids=[image.pk]) == 1
    assert thumbnails_make(image_ids=[image.pk]) == 0  # idempotent: nothing left to make

    image.refresh_from_db()
    sha = image.sha256
    path = media_root / "derivatives" / "thumbnails" / sha[0:2] / sha[2:4] / f"{sha}.jpg"
    assert image.thumbnail_ready
    assert path.read_bytes()[:2] == b"\xff\xd8"


# --- The sweeper ------------------------------------------------------------------------------


def test_the_sweeper_removes_an_old_orphan(media_root: Path) -> None:
    path = orphan(media_root, image_bytes(seed=4010))
    age(path, 2 * DAY)

    result = orphans_sweep()

    assert not path.exists()
    assert result.removed == [str(path.relative_to(media_root))]


def test_the_sweeper_keeps_a_young_orphan(media_root: Path) -> None:
    path = orphan(media_root, image_bytes(seed=4011))
    age(path, 60)

    result = orphans_sweep(grace_seconds=3600)

    assert path.exists()
    assert (result.removed, result.kept_young) == ([], 1)


def test_the_sweeper_never_removes_a_file_a_row_references(
    make_image: Callable[..., Image], media_root: Path
) -> None:
    active = make_image()
    trashed = make_image()
    image_trash(image_id=trashed.pk, actor=None, note="blurry")
    thumbnails_make(image_ids=[active.pk, trashed.pk])
    referenced = [
        media_root / name
        for image in (active, trashed)
        for name in (image.storage_name, image.thumbnail_name)
    ]
    for path in referenced:
        age(path, 30 * DAY)

    result = orphans_sweep()

    assert all(path.exists() for path in referenced)
    assert result.removed == []
    assert result.scanned == 4


def test_the_sweeper_removes_an_orphan_thumbnail_and_a_left_over_temporary_file(
    make_image: Callable[..., Image], media_root: Path
) -> None:
    image = make_image()
    thumbnails_make(image_ids=[image.pk])
    thumbnail = media_root / image.thumbnail_name
    leftover = media_root / Path(image.storage_name).parent / ".incoming-abc123"
    leftover.write_bytes(b"half an upload")
    Image.objects.filter(pk=image.pk).delete()  # a purge that did not get to the files
    original = media_root / image.storage_name
    for path in (thumbnail, leftover, original):
        age(path, 2 * DAY)

    result = orphans_sweep()

    assert not thumbnail.exists()
    assert not leftover.exists()
    assert not original.exists()
    assert len(result.removed) == 3


def test_a_dry_run_lists_but_removes_nothing(media_root: Path) -> None:
    path = orphan(media_root, image_bytes(seed=4012))
    age(path, 2 * DAY)

    result = orphans_sweep(dry_run=True)

    assert path.exists()
    assert len(result.removed) == 1


def test_sweep_orphans_command_reports_in_json(
    make_image: Callable[..., Image], media_root: Path
) -> None:
    kept = make_image()
    old = orphan(media_root, image_bytes(seed=4013))
    young = orphan(media_root, image_bytes(seed=4014))
    age(old, 2 * DAY)
    age(media_root / kept.storage_name, 2 * DAY)
    out = io.StringIO()

    call_command("sweep_orphans", "--json", stdout=out)

    summary = json.loads(out.getvalue())
    assert (summary["scanned"], summary["removed"], summary["kept_young"]) == (3, 1, 1)
    assert summary["removed_names"] == [str(old.relative_to(media_root))]
    assert not old.exists()
    assert young.exists()
    assert (media_root / kept.storage_name).exists()


def test_sweep_orphans_honours_the_grace_period_option(media_root: Path) -> None:
    path = orphan(media_root, image_bytes(seed=4015))
    age(path, 120)
    out = io.StringIO()

    call_command("sweep_orphans", "--json", "--grace-seconds", "60", stdout=out)

    assert json.loads(out.getvalue())["removed"] == 1
    assert not path.exists()


def test_the_sweeper_removes_an_old_orphaned_archive_but_keeps_one_a_queued_job_needs(
    media_root: Path,
) -> None:
    import os
    import time

    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from curation.services.jobs import job_create
    from curation.services.processing import orphans_sweep

    orphan = default_storage.save("imports/orphan.zip", ContentFile(b"PK"))
    needed = default_storage.save("imports/needed.zip", ContentFile(b"PK"))
    job_create(kind="curation.import_archive", actor=None, params={"archive": needed})
    old = time.time() - 7 * 24 * 3600
    for name in (orphan, needed):
        os.utime(default_storage.path(name), (old, old))
    result = orphans_sweep(grace_seconds=3600)
    assert orphan in result.removed
    assert not default_storage.exists(orphan)
    assert default_storage.exists(needed)


def test_stored_files_are_read_only_so_hard_linked_exports_cannot_alter_them(
    media_root: Path, make_image: Callable[..., Image]
) -> None:
    import stat

    from django.core.files.storage import default_storage

    image = make_image()
    path = default_storage.path(image.storage_name)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    # Saving the same name again (content addressed) still replaces it atomically.
    with open(path, "rb") as handle:
        store_original(sha256=image.sha256, extension=image.extension, content=handle)
    default_storage.save(image.storage_name, io.BytesIO(b"same name, new bytes"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
