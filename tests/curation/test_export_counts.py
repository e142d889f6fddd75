"""What an export says it did is what it did: a letterboxed folder export counts its PNGs as
letterboxed (none is copied) and their bytes as written, in the result and in
``export_dataset --json``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command

from curation.models import DatasetVersion, Image, Source
from curation.services.datasets import DatasetParams, dataset_build, dataset_version_create
from curation.services.export import dataset_export
from tests.factories import LabelClassFactory, SubClassFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(make_image: Callable[..., Image]) -> DatasetVersion:
    wren, robin = LabelClassFactory(name="Wren"), LabelClassFactory(name="Robin")
    studio = SubClassFactory(label_class=wren, name="studio", source=Source.STAGED)
    for label_class, count in ((wren, 6), (robin, 5)):
        for _ in range(count):
            make_image(label_class.subclasses.get(is_default=True), size=(40, 24))
    make_image(studio, size=(24, 40))
    built = dataset_version_create(
        name="counts", params=DatasetParams(min_per_class=3, ratios=(70, 20, 10)), actor=None
    )
    return dataset_build(version=built)


def files_under(root: Path, pattern: str) -> list[Path]:
    return sorted(path for path in root.glob(pattern) if path.is_file())


def test_a_letterboxed_folder_export_counts_pngs_and_their_bytes(
    version: DatasetVersion, tmp_path: Path
) -> None:
    out = tmp_path / "lb"

    result = dataset_export(version=version, out=out, format="folder", letterbox=64)

    pngs = files_under(out, "*/*/*.png")
    assert len(pngs) == version.assignments.count() == result.images
    assert result.letterboxed == len(pngs)
    assert result.copied == 0 and result.linked == 0
    assert result.bytes_written == sum(path.stat().st_size for path in pngs) > 0


def test_export_dataset_json_reports_the_bytes_of_a_letterboxed_export(
    version: DatasetVersion, tmp_path: Path
) -> None:
    out = tmp_path / "cli"
    stdout = io.StringIO()

    call_command(
        "export_dataset",
        "counts",
        "--format",
        "folder",
        "--letterbox",
        "64",
        "--out",
        str(out),
        "--workers",
        "1",
        "--json",
        stdout=stdout,
    )

    summary = json.loads(stdout.getvalue())
    pngs = files_under(out, "*/*/*.png")
    assert summary["letterboxed"] == len(pngs) == version.assignments.count()
    assert summary["copied"] == 0
    assert summary["bytes_written"] == sum(path.stat().st_size for path in pngs)


def test_export_dataset_says_letterboxed_in_its_summary_line(
    version: DatasetVersion, tmp_path: Path
) -> None:
    stdout = io.StringIO()

    call_command(
        "export_dataset",
        "counts",
        "--format",
        "folder",
        "--letterbox",
        "64",
        "--out",
        str(tmp_path / "line"),
        "--workers",
        "1",
        stdout=stdout,
    )

    line = stdout.getvalue()
    assert f"{version.assignments.count()} letterboxed PNGs" in line
    assert "copied" not in line


def test_a_letterboxed_webdataset_export_counts_its_images_and_shard_bytes(
    version: DatasetVersion, tmp_path: Path
) -> None:
    out = tmp_path / "wds"

    result = dataset_export(version=version, out=out, format="webdataset", letterbox=64)

    shards = files_under(out, "*.tar")
    assert result.letterboxed == version.assignments.count()
    assert result.bytes_written == sum(path.stat().st_size for path in shards)
