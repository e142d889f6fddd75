from __future__ import annotations

import csv
import io
import json
import re
import tarfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from rest_framework.test import APIClient

from curation.models import (
    DatasetVersion,
    Image,
    ImportKind,
    Job,
    LabelClass,
    LabelEvent,
    Source,
    SubClass,
)
from curation.services.datasets import DatasetParams, dataset_build, dataset_version_create
from curation.services.export import ExportError, dataset_export, safe_member_name
from curation.services.images import import_batch_create
from curation.services.imports import Destination, folder_import
from tests.factories import LabelClassFactory, SubClassFactory

pytestmark = pytest.mark.django_db

MEMBER = re.compile(r"[0-9a-f]{64}\.(jpg|png|cls|json)")


@pytest.fixture
def version(make_image: Callable[..., Image]) -> DatasetVersion:
    """Two classes of small real images, one with a staged sub-class."""
    wren = LabelClassFactory(name="Wren")
    robin = LabelClassFactory(name="Robin")
    studio = SubClassFactory(label_class=wren, name="studio", source=Source.STAGED)
    for label_class, count in ((wren, 7), (robin, 6)):
        subclass = label_class.subclasses.get(is_default=True)
        for _ in range(count):
            make_image(subclass, size=(40, 24))
    for _ in range(3):
        make_image(studio, size=(24, 40))
    built = dataset_version_create(
        name="v1",
        params=DatasetParams(min_per_class=3, max_per_class=8, ratios=(70, 20, 10)),
        actor=None,
    )
    return dataset_build(version=built)


def tar_members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def test_webdataset_shards_hold_safe_sorted_members_per_split(
    version: DatasetVersion, tmp_path: Path
) -> None:
    result = dataset_export(
        version=version, out=tmp_path / "wds", format="webdataset", shard_size=4, workers=3
    )

    shards = sorted((tmp_path / "wds").glob("*.tar"))
    assert [s.name for s in shards] == sorted(result.files)
    per_split: Counter[str] = Counter()
    for shard in shards:
        members = tar_members(shard)
        names = [m.name for m in members]
        assert all(MEMBER.fullmatch(name) for name in names), names
        keys = sorted({name.split(".")[0] for name in names})
        assert names == [f"{key}.{ext}" for key in keys for ext in ("jpg", "cls", "json")]
        assert len(keys) <= 4
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
            (0, 0, 0, "", "", 0o644)
        }
        per_split[shard.name.split("-")[0]] += len(keys)
    totals = version.summary["totals"]
    assert per_split == Counter({k: totals[k] for k in ("train", "val", "test") if totals[k]})

    with tarfile.open(shards[0]) as tar:
        first_json = next(m for m in tar.getmembers() if m.name.endswith(".json"))
        meta = json.load(tar.extractfile(first_json))  # type: ignore[arg-type]
        label = tar.extractfile(first_json.name.replace(".json", ".cls")).read()  # type: ignore[union-attr]
    assert int(label) == version.summary["label_map"][meta["class"]]
    assert set(meta) == {"sha256", "class", "subclass", "label", "split", "source"}

    text = (tmp_path / "wds" / "manifest.csv").read_text(encoding="utf-8")
    manifest = list(csv.DictReader(io.StringIO(text)))
    assert len(manifest) == version.assignments.count()
    assert {row["source"] for row in manifest} == {"real", "staged"}
    label_map = json.loads((tmp_path / "wds" / "label_map.json").read_text())
    assert label_map == {"Robin": 0, "Wren": 1}


def test_exporting_the_same_version_twice_gives_byte_identical_shards(
    version: DatasetVersion, tmp_path: Path
) -> None:
    dataset_export(version=version, out=tmp_path / "a", format="webdataset", shard_size=5)
    dataset_export(version=version, out=tmp_path / "b", format="webdataset", shard_size=5)
    # And again into the first folder, replacing the earlier export.
    dataset_export(version=version, out=tmp_path / "a", format="webdataset", shard_size=5)

    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_member_names_that_could_escape_the_shard_are_refused() -> None:
    for sha, extension in (("../" + "a" * 61, "jpg"), ("a" * 64, "j/pg"), ("/" + "a" * 63, "x")):
        with pytest.raises(ExportError):
            safe_member_name(sha, extension)


def test_an_export_never_writes_into_a_folder_it_did_not_make(
    version: DatasetVersion, tmp_path: Path
) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")

    with pytest.raises(ExportError):
        dataset_export(version=version, out=tmp_path / "mine", format="folder")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_letterboxed_export_writes_square_pngs_with_black_padding(
    version: DatasetVersion, tmp_path: Path
) -> None:
    dataset_export(version=version, out=tmp_path / "lb", format="folder", letterbox=32)

    pngs = sorted((tmp_path / "lb").glob("*/*/*.png"))
    assert len(pngs) == version.assignments.count()
    picture = PILImage.open(pngs[0])
    assert picture.size == (32, 32)
    corners = {picture.getpixel((0, 0)), picture.getpixel((31, 31))}
    assert (0, 0, 0) in corners  # 40x24 and 24x40 images both leave black bars

    dataset_export(version=version, out=tmp_path / "lbw", format="webdataset", letterbox=32)
    shard = next((tmp_path / "lbw").glob("train-*.tar"))
    with tarfile.open(shard) as tar:
        png = next(m for m in tar.getmembers() if m.name.endswith(".png"))
        data = tar.extractfile(png).read()  # type: ignore[union-attr]
    assert PILImage.open(io.BytesIO(data)).size == (32, 32)


def test_a_folder_export_imported_into_an_empty_library_reproduces_classes_and_counts(
    version: DatasetVersion, tmp_path: Path
) -> None:
    out = tmp_path / "tree"
    result = dataset_export(version=version, out=out, format="folder")
    assert result.copied + result.reflinked == version.assignments.count()
    assert result.linked == 0  # copies unless hard links are asked for
    expected = {
        (row["name"], split): row[split]
        for row in version.summary["classes"]
        if row["status"] == "included"
        for split in ("train", "val", "test")
        if row[split]
    }

    # Empty the library.
    DatasetVersion.objects.all().delete()
    LabelEvent.objects.all().delete()
    Image.objects.all().delete()
    SubClass.objects.all().delete()
    LabelClass.objects.all().delete()

    imported: Counter[tuple[str, str]] = Counter()
    for split in ("train", "val", "test"):
        if not (out / split).exists():
            continue
        batch = import_batch_create(kind=ImportKind.FOLDER, name=split, actor=None)
        before = set(Image.objects.values_list("pk", flat=True))
        folder_import(
            root=out / split, destination=Destination(from_folders=True), actor=None, batch=batch
        )
        for name in Image.objects.exclude(pk__in=before).values_list(
            "subclass__label_class__name", flat=True
        ):
            imported[(name, split)] += 1

    assert dict(imported) == expected
    assert sorted(LabelClass.objects.values_list("name", flat=True)) == ["Robin", "Wren"]


def test_export_runs_as_a_job_started_over_the_api(
    version: DatasetVersion,
    reviewer_api: APIClient,
    settings: Any,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.LOUPE_EXPORT_DIR = tmp_path / "exports"
    with django_capture_on_commit_callbacks(execute=False):
        response = reviewer_api.post(
            f"/api/v1/datasets/{version.pk}/export/",
            {"format": "webdataset", "shard_size": 4},
            format="json",
        )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])

    from curation.tasks import export_dataset

    export_dataset(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert job.done == job.total == version.assignments.count()
    assert Path(job.result["out"]).parent == tmp_path / "exports"
    assert (Path(job.result["out"]) / "manifest.csv").exists()


def test_the_export_command_prints_a_json_summary(
    version: DatasetVersion, tmp_path: Path, capsys: Any
) -> None:
    from django.core.management import call_command

    call_command(
        "export_dataset", "v1", "--format", "folder", "--out", str(tmp_path / "f"), "--json"
    )

    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == version.assignments.count()
    assert summary["format"] == "folder"


def test_shard_headers_are_the_ones_tarfile_writes() -> None:
    from curation.services.export import _header, _tar_info

    for name, size in (("a" * 64 + ".jpg", 0), ("b" * 64 + ".json", 12345), ("c.cls", 8**10)):
        expected = _tar_info(name, size).tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
        assert _header(name, size) == expected
