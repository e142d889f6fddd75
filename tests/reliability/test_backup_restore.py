"""Back up a library and restore it into an empty installation (a new database and an empty
media folder, in a process of its own): every image, file byte, label, label event, class and
model version comes back; damaged archives and non-empty installations are refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import User
from curation.models import ClassKind, Image, LabelEvent, LabelReason, Source
from curation.services.backup import CHECKSUMS, MANIFEST
from curation.services.images import image_relabel, image_trash, subclass_counts_rebuild
from curation.services.taxonomy import class_create, subclass_create
from inference.preprocessing import PreprocessSpec
from inference.services import model_version_register
from tests.inference import onnx_models
from tests.reliability.conftest import on_postgresql
from tests.reliability.library_snapshot import describe

RESTORE_SCRIPT = """
import io, json, sys
import django
django.setup()
from django.core.management import CommandError, call_command
from curation.services.backup import installation_rows
from tests.reliability.library_snapshot import describe

damaged, good = sys.argv[1:3]
call_command("migrate", verbosity=0)
out = {}
try:
    call_command("restore", damaged, "--json", stdout=io.StringIO())
except CommandError as exc:
    out["damaged"] = str(exc)
out["rows_after_damaged"] = installation_rows()
summary = io.StringIO()
call_command("restore", good, "--json", stdout=summary)
out["summary"] = json.loads(summary.getvalue())
try:
    call_command("restore", good, stdout=io.StringIO())
except CommandError as exc:
    out["again"] = str(exc)
out["library"] = describe()
# A backup of the restored installation, outside any transaction (its own snapshot).
again = io.StringIO()
call_command("backup", sys.argv[3], "--json", stdout=again)
out["backup_again"] = json.loads(again.getvalue())
print("RESULT " + json.dumps(out))
"""


def build_library(make_image: Callable[..., Image], user: User) -> None:
    """Classes with sub-classes of each source, labelled, inbox and trashed images, relabels
    and a model version."""
    robin = class_create(name="Robin", actor=user)
    unknown = class_create(name="Unknown bird", kind=ClassKind.HOLDING, actor=user)
    juvenile = subclass_create(label_class=robin, name="juvenile", actor=user)
    studio = subclass_create(label_class=robin, name="studio", source=Source.STAGED, actor=user)
    wren = class_create(name="Wren", actor=user)
    robin_default = robin.subclasses.get(is_default=True)
    images = [make_image(sub) for sub in (robin_default, juvenile, studio, juvenile)]
    images += [make_image(wren.subclasses.get()) for _ in range(2)]
    images += [make_image(None) for _ in range(3)]  # the inbox
    images.append(make_image(unknown.subclasses.get(), fmt="PNG"))
    image_relabel(
        image_id=images[6].pk,
        subclass=studio,
        actor=user,
        reason=LabelReason.LABELLING,
        expected_version=1,
    )
    image_relabel(
        image_id=images[0].pk,
        subclass=wren.subclasses.get(),
        actor=user,
        reason=LabelReason.API,
        note="wing bars",
        expected_version=1,
    )
    image_trash(image_id=images[1].pk, actor=user, note="blurry")
    model_version_register(
        onnx_data=onnx_models.to_bytes(onnx_models.linear(classes=2)),
        labels=["Robin", "Wren"],
        name="birds",
        actor=user,
        spec=PreprocessSpec(input_size=8),
    )
    # Counters as a running installation keeps them (make_image writes rows directly, and a
    # flushed PostgreSQL test database has lost the inbox counter the migration creates).
    subclass_counts_rebuild()


def damaged_copy(archive: Path, target: Path) -> Path:
    """The archive with one byte of one stored original changed."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as copy:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.startswith("media/originals/") and info.filename.endswith(".png"):
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            copy.writestr(info, data)
    return target


@pytest.fixture
def empty_installation(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a new installation: its own data folder and media folder, and on
    PostgreSQL a new database (dropped afterwards)."""
    data_dir = tmp_path / "fresh"
    data_dir.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "LOUPE_TEST_DATABASE_NAME")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.base",
        LOUPE_DATA_DIR=str(data_dir),
        LOUPE_MEDIA_ROOT=str(data_dir / "media"),
        LOUPE_SECRET_KEY="restore-test-secret-key-0123456789-0123456789-0123456789",
        PYTHONUNBUFFERED="1",
    )
    name = ""
    if on_postgresql:
        db = settings.DATABASES["default"]
        name = f"loupe_restore_{uuid.uuid4().hex[:10]}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
            f"/{name}"
        )
    try:
        yield env
    finally:
        if name:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.django_db(transaction=on_postgresql)  # CREATE DATABASE cannot run in a transaction
def test_a_library_backed_up_and_restored_into_an_empty_installation_comes_back_whole(
    make_image: Callable[..., Image],
    reviewer: User,
    empty_installation: dict[str, str],
    tmp_path: Path,
) -> None:
    build_library(make_image, reviewer)
    before = describe()
    archive = tmp_path / "loupe-backup.zip"
    summary = io.StringIO()

    call_command("backup", str(archive), "--json", stdout=summary)

    backup = json.loads(summary.getvalue())
    assert backup["files"] == len(before["images"]) + 1  # originals and the ONNX file
    assert backup["counts"]["curation.image"] == 10
    assert backup["counts"]["curation.labelevent"] == LabelEvent.objects.count()
    with zipfile.ZipFile(archive) as opened:
        manifest = json.loads(opened.read(MANIFEST))
        assert manifest["media"]["missing"] == [] and manifest["media"]["damaged"] == []
        assert len(opened.read(CHECKSUMS).decode().splitlines()) == backup["files"] + 1
    damaged = damaged_copy(archive, tmp_path / "damaged.zip")
    second = tmp_path / "backup-of-the-restored.zip"

    run = subprocess.run(
        [sys.executable, "-c", RESTORE_SCRIPT, str(damaged), str(archive), str(second)],
        cwd=settings.BASE_DIR,
        env=empty_installation,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("RESULT "))
    restored = json.loads(line.removeprefix("RESULT "))

    assert "does not match its checksum" in restored["damaged"]
    assert restored["rows_after_damaged"] == {}  # a damaged archive writes no row
    assert restored["summary"]["files"] == backup["files"]
    assert restored["summary"]["thumbnails_queued"] == 10
    assert "not empty" in restored["again"] and "--force" in restored["again"]
    assert restored["library"] == before
    assert restored["backup_again"]["counts"] == backup["counts"]
    assert restored["backup_again"]["files"] == backup["files"]
    media = Path(empty_installation["LOUPE_MEDIA_ROOT"])
    assert len(list((media / "originals").rglob("*.*"))) == 10


@pytest.mark.django_db
def test_restore_with_force_replaces_whatever_the_installation_holds(
    make_image: Callable[..., Image], reviewer: User, tmp_path: Path
) -> None:
    build_library(make_image, reviewer)
    before = describe()
    archive = tmp_path / "loupe-backup.zip"
    call_command("backup", str(archive), stdout=io.StringIO())
    # Work done after the backup, which the restore is asked to undo.
    heron = class_create(name="Heron", actor=reviewer)
    make_image(heron.subclasses.get())
    image = Image.objects.filter(subclass__isnull=True).first()
    assert image is not None
    image_relabel(
        image_id=image.pk,
        subclass=heron.subclasses.get(),
        actor=reviewer,
        reason=LabelReason.LABELLING,
        expected_version=image.version,
    )

    with pytest.raises(CommandError, match="not empty"):
        call_command("restore", str(archive), stdout=io.StringIO())
    call_command("restore", str(archive), "--force", stdout=io.StringIO())

    assert describe() == before
    assert not Image.objects.filter(thumbnail_ready=True).exists()  # rebuilt by the worker


def rewritten(archive: Path, target: Path, *, manifest: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the archive with its manifest changed by ``manifest``."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as copy:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == MANIFEST:
                content = json.loads(data)
                manifest(content)
                data = json.dumps(content).encode()
            copy.writestr(info, data)
    return target


@pytest.mark.django_db
def test_restore_refuses_archives_it_cannot_trust_or_load(tmp_path: Path) -> None:
    archive = tmp_path / "empty.zip"
    call_command("backup", str(archive), stdout=io.StringIO())

    def newer_loupe(content: dict[str, Any]) -> None:
        content["migrations"]["curation"].append("9999_from_the_future")

    future = rewritten(archive, tmp_path / "future.zip", manifest=newer_loupe)
    with pytest.raises(CommandError, match=r"lacks 1 migration\(s\).*9999_from_the_future"):
        call_command("restore", str(future), stdout=io.StringIO())

    # A member outside the names Loupe writes, even one listed with a correct checksum.
    escaping = tmp_path / "escaping.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(escaping, "w") as copy:
        listing = source.read(CHECKSUMS) + b"%s  media/../../evil.py\n" % (
            hashlib.sha256(b"x").hexdigest().encode()
        )
        content = json.loads(source.read(MANIFEST))
        content["checksums"]["sha256"] = hashlib.sha256(listing).hexdigest()
        for info in source.infolist():
            if info.filename not in (CHECKSUMS, MANIFEST):
                copy.writestr(info, source.read(info))
        copy.writestr(CHECKSUMS, listing)
        copy.writestr(MANIFEST, json.dumps(content))
        copy.writestr("media/../../evil.py", b"x")
    with pytest.raises(CommandError, match="a member Loupe never writes"):
        call_command("restore", str(escaping), stdout=io.StringIO())
    assert not (tmp_path.parent / "evil.py").exists()

    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_text("hello")
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("restore", str(not_a_zip), stdout=io.StringIO())
