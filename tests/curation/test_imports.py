"""Zip and folder imports: per-file reports, archive security, folder → class mapping and
idempotent re-runs."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from curation.models import (
    Image,
    ImportBatch,
    ImportItem,
    ImportKind,
    ImportOutcome,
    LabelClass,
    LabelEvent,
    Source,
    SubClass,
)
from curation.services.images import import_batch_create
from curation.services.imports import (
    ArchiveRejected,
    Destination,
    archive_import,
    archive_inspect,
    upload_import,
)
from tests.factories import LabelClassFactory, image_bytes, zip_bytes

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n%%EOF\n"


def run_archive(data: bytes, destination: Destination | None = None) -> ImportBatch:
    batch = import_batch_create(kind=ImportKind.ZIP, name="test.zip", actor=None)
    archive_import(
        stream=io.BytesIO(data),
        destination=destination or Destination(),
        actor=None,
        batch=batch,
    )
    batch.refresh_from_db()
    return batch


def report(batch: ImportBatch) -> dict[str, tuple[str, str]]:
    return {item.name: (item.outcome, item.reason) for item in batch.items.all()}


def zip_with(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return out.getvalue()


def mark_encrypted(data: bytes, name: str) -> bytes:
    """Set the 'encrypted' flag of ``name`` in both its local header and the central directory,
    as an archiver that encrypted it would."""
    raw = bytearray(data)
    encoded = name.encode()
    position = raw.find(b"PK\x01\x02")
    while position != -1:
        name_length = int.from_bytes(raw[position + 28 : position + 30], "little")
        if raw[position + 46 : position + 46 + name_length] == encoded:
            raw[position + 8] |= 0x1
            local = int.from_bytes(raw[position + 42 : position + 46], "little")
            raw[local + 6] |= 0x1
        position = raw.find(b"PK\x01\x02", position + 4)
    return bytes(raw)


# --- Reports ----------------------------------------------------------------------------------


def test_a_mixed_archive_imports_the_good_and_reports_the_bad_by_entry_name() -> None:
    good = image_bytes(seed=1001)
    data = zip_bytes(
        [
            ("Robin/a.jpg", good),
            ("Robin/again.jpg", good),
            ("Robin/report.jpg", PDF),
            ("Robin/empty.png", b""),
            ("../evil.jpg", image_bytes(seed=1002)),
        ]
    )

    batch = run_archive(data)

    lines = report(batch)
    assert lines["Robin/a.jpg"] == (ImportOutcome.CREATED, "")
    assert lines["Robin/again.jpg"][0] == ImportOutcome.DUPLICATE
    assert lines["Robin/report.jpg"][0] == ImportOutcome.REJECTED
    assert "not a supported image" in lines["Robin/report.jpg"][1]
    assert lines["Robin/empty.png"] == (ImportOutcome.REJECTED, "empty file (zero bytes)")
    assert lines["../evil.jpg"][0] == ImportOutcome.REJECTED
    assert (batch.created_count, batch.duplicate_count, batch.rejected_count) == (1, 1, 3)
    assert Image.objects.count() == 1


def test_a_duplicate_names_the_image_it_duplicates() -> None:
    data = image_bytes(seed=1003)
    first = run_archive(zip_bytes({"one.jpg": data}))
    image = first.images.get()

    second = run_archive(zip_bytes({"two.jpg": data}))

    assert report(second)["two.jpg"] == (
        ImportOutcome.DUPLICATE,
        f"same bytes as image {image.pk}",
    )
    assert Image.objects.count() == 1


def test_archiver_litter_is_ignored_not_reported() -> None:
    data = zip_bytes(
        {
            "Robin/a.jpg": image_bytes(seed=1004),
            "__MACOSX/Robin/._a.jpg": b"\x00\x05\x16\x07",
            "Robin/.DS_Store": b"\x00\x00\x00\x01Bud1",
            "Robin/Thumbs.db": b"\xd0\xcf\x11\xe0",
        }
    )

    batch = run_archive(data)

    assert list(report(batch)) == ["Robin/a.jpg"]


def test_running_an_archive_again_on_the_same_batch_does_nothing_twice() -> None:
    # A retried job must not report or create anything a second time.
    data = zip_bytes({"Robin/a.jpg": image_bytes(seed=1005), "bad.jpg": PDF})
    batch = run_archive(data)

    archive_import(stream=io.BytesIO(data), destination=Destination(), actor=None, batch=batch)

    assert batch.items.count() == 2
    assert Image.objects.count() == 1
    batch.refresh_from_db()
    assert (batch.created_count, batch.rejected_count) == (1, 1)


# --- Folder → class mapping ---------------------------------------------------------------


def test_folders_in_an_archive_name_the_class_and_sub_class() -> None:
    data = zip_bytes(
        {
            "Robin/juvenile/a.jpg": image_bytes(seed=1010),
            "Robin/b.jpg": image_bytes(seed=1011),
            "Wren/c.jpg": image_bytes(seed=1012),
            "loose.jpg": image_bytes(seed=1013),
            "Robin/juvenile/deep/d.jpg": image_bytes(seed=1014),
        }
    )

    batch = run_archive(data)

    def placed(name: str) -> tuple[str, str] | None:
        image = batch.items.get(name=name).image
        assert image is not None
        sub = image.subclass
        return (sub.label_class.name, sub.name) if sub else None

    assert placed("Robin/juvenile/a.jpg") == ("Robin", "juvenile")
    assert placed("Robin/b.jpg") == ("Robin", "default")
    assert placed("Wren/c.jpg") == ("Wren", "default")
    assert placed("loose.jpg") is None  # the inbox
    deep = batch.items.get(name="Robin/juvenile/deep/d.jpg")
    assert deep.outcome == ImportOutcome.REJECTED
    assert "nested too deep" in deep.reason
    assert SubClass.objects.get(label_class__name="Robin", name="juvenile").image_count == 1
    assert SubClass.objects.get(label_class__name="Robin", is_default=True).image_count == 1


def test_folders_match_existing_classes_whatever_their_case() -> None:
    robin = LabelClassFactory(name="Robin")

    run_archive(zip_bytes({"robin/a.jpg": image_bytes(seed=1015)}))

    assert LabelClass.objects.count() == 1
    assert Image.objects.get().subclass == robin.subclasses.get(is_default=True)


def test_staged_images_in_a_class_folder_get_a_staged_sub_class() -> None:
    batch = run_archive(
        zip_bytes({"Robin/a.jpg": image_bytes(seed=1016)}),
        Destination(source=Source.STAGED),
    )

    subclass = batch.images.get().subclass
    assert (subclass.name, subclass.source) == ("staged", Source.STAGED)


def test_an_archive_imported_into_the_inbox_ignores_its_folders() -> None:
    batch = run_archive(
        zip_bytes({"Robin/a.jpg": image_bytes(seed=1017)}),
        Destination(from_folders=False),
    )

    assert batch.images.get().subclass is None
    assert not LabelClass.objects.exists()


def test_an_import_into_a_class_records_a_label_event_and_counts_it() -> None:
    batch = run_archive(zip_bytes({"Robin/a.jpg": image_bytes(seed=1018)}))

    image = batch.images.get()
    event = LabelEvent.objects.get(image=image)
    assert (event.reason, event.from_subclass, event.to_subclass) == (
        "import",
        None,
        image.subclass,
    )
    assert image.subclass.image_count == 1


# --- Archive security -------------------------------------------------------------------------


def test_it_refuses_a_zip_slip_entry() -> None:
    batch = run_archive(zip_bytes({"Robin/../../evil.jpg": image_bytes(seed=1020)}))

    outcome, reason = report(batch)["Robin/../../evil.jpg"]
    assert outcome == ImportOutcome.REJECTED
    assert "leaves the archive" in reason
    assert not Image.objects.exists()


def test_it_refuses_an_absolute_path() -> None:
    batch = run_archive(zip_bytes({"/etc/evil.jpg": image_bytes(seed=1021)}))

    outcome, reason = report(batch)["/etc/evil.jpg"]
    assert outcome == ImportOutcome.REJECTED
    assert "absolute path" in reason
    assert not Image.objects.exists()


def test_it_refuses_a_symbolic_link_entry() -> None:
    link = zipfile.ZipInfo("Robin/link.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    batch = run_archive(zip_with([(link, b"/etc/passwd")]))

    assert report(batch)["Robin/link.jpg"] == (ImportOutcome.REJECTED, "symbolic link")
    assert not Image.objects.exists()


def test_it_refuses_an_encrypted_entry() -> None:
    data = mark_encrypted(
        zip_bytes({"Robin/secret.jpg": image_bytes(seed=1022), "Robin/ok.jpg": image_bytes()}),
        "Robin/secret.jpg",
    )

    batch = run_archive(data)

    assert report(batch)["Robin/secret.jpg"] == (ImportOutcome.REJECTED, "encrypted entry")
    assert report(batch)["Robin/ok.jpg"][0] == ImportOutcome.CREATED


def test_it_refuses_an_entry_over_the_compression_ratio(settings: Any) -> None:
    settings.LOUPE_ZIP_MAX_RATIO = 50
    # A valid, flat BMP: about 270 kB that deflates to a few hundred bytes.
    flat = image_bytes(fmt="BMP", size=(300, 300), seed=1023)
    data = zip_bytes({"Robin/flat.bmp": flat, "Robin/photo.jpg": image_bytes(seed=1024)})

    batch = run_archive(data)

    outcome, reason = report(batch)["Robin/flat.bmp"]
    assert outcome == ImportOutcome.REJECTED
    assert "compression ratio" in reason
    assert "50:1" in reason
    assert report(batch)["Robin/photo.jpg"][0] == ImportOutcome.CREATED


def test_it_refuses_an_archive_with_too_many_entries(settings: Any) -> None:
    settings.LOUPE_ZIP_MAX_ENTRIES = 3
    data = zip_bytes({f"Robin/{n}.jpg": image_bytes(seed=1030 + n) for n in range(4)})

    with pytest.raises(ArchiveRejected, match="4 entries; the limit is 3"):
        run_archive(data)

    assert not Image.objects.exists()
    assert not ImportItem.objects.exists()


def test_it_refuses_an_archive_that_unpacks_too_large(settings: Any) -> None:
    settings.LOUPE_ZIP_MAX_UNCOMPRESSED_BYTES = 1000
    data = zip_bytes({"Robin/a.bmp": image_bytes(fmt="BMP", size=(40, 40), seed=1040)})

    with pytest.raises(ArchiveRejected, match="zip bomb"):
        archive_inspect(io.BytesIO(data))


def test_it_refuses_something_that_is_not_a_zip() -> None:
    with pytest.raises(ArchiveRejected, match="not a readable zip archive"):
        archive_inspect(io.BytesIO(image_bytes()))


# --- Uploads ----------------------------------------------------------------------------------


def test_an_upload_without_a_file_name_is_kept_and_reported_by_its_place() -> None:
    report = upload_import(
        files=[
            ("robin.jpg", io.BytesIO(image_bytes(seed=1))),
            (None, io.BytesIO(image_bytes(seed=2))),
        ],
        destination=Destination(from_folders=False),
        actor=None,
        batch=None,
    )

    assert [(r.name, r.outcome) for r in report.results] == [
        ("robin.jpg", ImportOutcome.CREATED),
        ("file 2 (no name)", ImportOutcome.CREATED),
    ]
    assert report.results[1].image is not None
    assert report.results[1].image.original_filename == "file 2 (no name)"
    assert report.batch.name == "robin.jpg, file 2 (no name)"


# --- Folder imports (import_library) ---------------------------------------------------------


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def library_tree(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    robin = image_bytes(seed=1100)
    write(root / "Robin" / "juvenile" / "a.jpg", image_bytes(seed=1101))
    write(root / "Robin" / "b.png", image_bytes(fmt="PNG", seed=1102))
    write(root / "Robin" / "c.jpg", robin)
    write(root / "Wren" / "copy-of-c.jpg", robin)
    write(root / "Wren" / "report.jpg", PDF)
    write(root / "Wren" / "cut.jpg", image_bytes(size=(200, 200), seed=1103)[:-100])
    write(root / "unsorted.jpg", image_bytes(seed=1104))
    write(root / "Robin" / ".hidden.jpg", image_bytes(seed=1105))
    return root


def import_library(root: Path, *args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("import_library", str(root), "--json", "--workers", "1", *args, stdout=out)
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def test_import_library_reports_each_file_in_json(library_tree: Path) -> None:
    summary = import_library(library_tree)

    assert (summary["files"], summary["created"], summary["duplicate"], summary["rejected"]) == (
        7,
        4,
        1,
        2,
    )
    reasons = {r["name"]: r["reason"] for r in summary["rejections"]}
    assert "not a supported image" in reasons["Wren/report.jpg"]
    assert "truncated" in reasons["Wren/cut.jpg"]
    batch = ImportBatch.objects.get(pk=summary["batch"])
    assert batch.kind == ImportKind.FOLDER
    assert batch.items.get(name="Wren/copy-of-c.jpg").outcome == ImportOutcome.DUPLICATE


def test_import_library_maps_folders_to_classes_and_sub_classes(library_tree: Path) -> None:
    import_library(library_tree)

    by_name = {
        image.original_filename: image.subclass
        for image in Image.objects.select_related("subclass")
    }
    assert (by_name["a.jpg"].label_class.name, by_name["a.jpg"].name) == ("Robin", "juvenile")
    assert by_name["b.png"].is_default
    assert by_name["unsorted.jpg"] is None
    assert ".hidden.jpg" not in by_name
    assert {c.name for c in LabelClass.objects.all()} == {"Robin", "Wren"}


def test_import_library_twice_creates_nothing_new(library_tree: Path) -> None:
    first = import_library(library_tree)
    images = Image.objects.count()
    classes = LabelClass.objects.count()
    subclasses = SubClass.objects.count()

    second = import_library(library_tree)

    assert first["created"] == 4
    assert second["created"] == 0
    assert second["duplicate"] == first["created"] + first["duplicate"]
    assert Image.objects.count() == images
    assert (LabelClass.objects.count(), SubClass.objects.count()) == (classes, subclasses)
    assert SubClass.objects.get(label_class__name="Robin", is_default=True).image_count == 2


def test_import_library_inbox_puts_everything_in_the_inbox(library_tree: Path) -> None:
    summary = import_library(library_tree, "--inbox")

    assert summary["created"] == 4
    assert not Image.objects.filter(subclass__isnull=False).exists()
    assert not LabelClass.objects.exists()


def test_import_library_does_not_follow_a_link_out_of_the_tree(tmp_path: Path) -> None:
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(image_bytes(seed=1110))
    root = tmp_path / "library"
    (root / "Robin").mkdir(parents=True)
    (root / "Robin" / "escape.jpg").symlink_to(outside)

    summary = import_library(root)

    assert summary["created"] == 0
    assert summary["rejections"] == [
        {"name": "Robin/escape.jpg", "reason": "symbolic link pointing outside the imported folder"}
    ]


def test_import_library_refuses_a_missing_folder(tmp_path: Path) -> None:
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="is not a folder"):
        call_command("import_library", str(tmp_path / "nope"), "--json")


@pytest.mark.django_db(transaction=True)
def test_import_library_with_a_pool_of_workers_gives_the_same_report(library_tree: Path) -> None:
    out = io.StringIO()
    call_command("import_library", str(library_tree), "--json", "--workers", "2", stdout=out)

    summary = json.loads(out.getvalue())
    assert (summary["created"], summary["duplicate"], summary["rejected"]) == (4, 1, 2)
    assert Image.objects.count() == 4
