"""Hostile zip archives sent to POST /api/v1/imports/: a hostile archive as a whole is refused
up front with a JSON 400 and nothing stored; a hostile entry is reported by name in the import
report while the good entries beside it are imported, once."""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from curation.models import Image, ImportBatch, Job, JobStatus
from curation.storage import original_name
from curation.tasks import import_archive
from tests.factories import image_bytes
from tests.security.conftest import stored_files

pytestmark = pytest.mark.django_db

IMPORTS = "/api/v1/imports/"
GOOD = image_bytes(seed=501)


# --- Archive builders -------------------------------------------------------------------------

Entry = tuple[zipfile.ZipInfo | str, bytes]


def zip_of(entries: list[Entry]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            if isinstance(info, zipfile.ZipInfo):
                info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return out.getvalue()


def central_records(data: bytes | bytearray) -> list[tuple[int, str]]:
    """(offset, name) of every central directory record."""
    records = []
    position = data.find(b"PK\x01\x02")
    while position != -1:
        length = int.from_bytes(data[position + 28 : position + 30], "little")
        records.append((position, bytes(data[position + 46 : position + 46 + length]).decode()))
        position = data.find(b"PK\x01\x02", position + 46 + length)
    return records


def patched(data: bytes, name: str, *, flags: int = 0, size: int | None = None) -> bytes:
    """Set flag bits on ``name`` or change its declared uncompressed size, in both its local
    header and the central directory, as a hostile archiver would write them."""
    raw = bytearray(data)
    for position, entry_name in central_records(raw):
        if entry_name != name:
            continue
        local = int.from_bytes(raw[position + 42 : position + 46], "little")
        raw[position + 8] |= flags
        raw[local + 6] |= flags
        if size is not None:
            raw[position + 24 : position + 28] = size.to_bytes(4, "little")
            raw[local + 22 : local + 26] = size.to_bytes(4, "little")
    return bytes(raw)


def method(data: bytes, name: str, code: int) -> bytes:
    """Claim compression method ``code`` for ``name`` (9 is Deflate64, which zipfile lacks)."""
    raw = bytearray(data)
    for position, entry_name in central_records(raw):
        if entry_name == name:
            local = int.from_bytes(raw[position + 42 : position + 46], "little")
            raw[position + 10 : position + 12] = code.to_bytes(2, "little")
            raw[local + 8 : local + 10] = code.to_bytes(2, "little")
    return bytes(raw)


def scrambled(data: bytes, name: str) -> bytes:
    """Overwrite the start of ``name``'s compressed data, so its stream cannot be inflated."""
    raw = bytearray(data)
    for position, entry_name in central_records(raw):
        if entry_name == name:
            local = int.from_bytes(raw[position + 42 : position + 46], "little")
            name_length = int.from_bytes(raw[local + 26 : local + 28], "little")
            extra_length = int.from_bytes(raw[local + 28 : local + 30], "little")
            start = local + 30 + name_length + extra_length
            raw[start : start + 16] = b"\xff" * 16
    return bytes(raw)


def symlink(name: str, target: bytes) -> Entry:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


def with_good(*entries: Entry) -> list[Entry]:
    return [*entries, ("Robin/good.jpg", GOOD)]


FLAT = image_bytes(fmt="BMP", size=(400, 400), seed=502)  # 480 kB of one colour: deflates ~500:1

# (archive, the hostile entry's name, what its report line must say)
HOSTILE_ENTRIES = [
    pytest.param(zip_of(with_good(("../x.jpg", image_bytes(seed=510))))
                 , "../x.jpg", "path leaves the archive ('..')", id="zip-slip"),
    pytest.param(zip_of(with_good(("Robin/../../../x.jpg", image_bytes(seed=511)))),
                 "Robin/../../../x.jpg", "path leaves the archive", id="zip-slip-nested"),
    pytest.param(zip_of(with_good(("..\\..\\x.jpg", image_bytes(seed=512)))),
                 "..\\..\\x.jpg", "path leaves the archive", id="zip-slip-backslashes"),
    pytest.param(zip_of(with_good(("/etc/cron.d/x.jpg", image_bytes(seed=513)))),
                 "/etc/cron.d/x.jpg", "absolute path in the archive", id="absolute-path"),
    pytest.param(zip_of(with_good(("C:\\Windows\\x.jpg", image_bytes(seed=514)))),
                 "C:\\Windows\\x.jpg", "absolute path in the archive", id="drive-letter"),
    pytest.param(zip_of(with_good(symlink("Robin/link.jpg", b"/etc/passwd"))),
                 "Robin/link.jpg", "symbolic link", id="symlink-out"),
    pytest.param(zip_of(with_good(symlink("Robin/up.jpg", b"../../../../etc/shadow"))),
                 "Robin/up.jpg", "symbolic link", id="symlink-up"),
    pytest.param(patched(zip_of(with_good(("Robin/secret.jpg", image_bytes(seed=515)))),
                         "Robin/secret.jpg", flags=0x1),
                 "Robin/secret.jpg", "encrypted entry", id="encrypted"),
    pytest.param(zip_of(with_good(("Robin/flat.bmp", FLAT))), "Robin/flat.bmp",
                 "over the limit of 100:1 (zip bomb?)", id="compression-ratio"),
    pytest.param(patched(zip_of(with_good(("Robin/liar.bmp", image_bytes(fmt="BMP", seed=516)))),
                         "Robin/liar.bmp", size=100),
                 "Robin/liar.bmp", "cannot unpack entry", id="size-understated"),
    pytest.param(scrambled(zip_of(with_good(("Robin/bad.bmp", image_bytes(fmt="BMP", seed=519)))),
                           "Robin/bad.bmp"),
                 "Robin/bad.bmp", "cannot unpack entry", id="corrupt-deflate"),
    pytest.param(method(zip_of(with_good(("Robin/d64.jpg", image_bytes(seed=518)))),
                        "Robin/d64.jpg", 9),
                 "Robin/d64.jpg", "cannot unpack entry", id="unsupported-method"),
    pytest.param(zip_of(with_good(("Robin/inner.jpg", zip_of([("a.jpg", image_bytes(seed=517))])))),
                 "Robin/inner.jpg", "not a supported image", id="nested-zip"),
]  # fmt: skip


def post_archive(client: APIClient, data: bytes, **fields: Any) -> Any:
    upload = SimpleUploadedFile("birds.zip", data, content_type="application/zip")
    return client.post(IMPORTS, {"archive": upload, **fields}, format="multipart")


@pytest.fixture
def api(reviewer_api: APIClient) -> APIClient:
    """These archives are imported by a reviewer, who may create the classes their folders
    name (a labeller's unknown folders go to the inbox: see test_import_class_tree.py)."""
    return reviewer_api


def run_import(client: APIClient, data: bytes) -> dict[str, tuple[str, str]]:
    """Post the archive, run its job the way the worker does, return the report by name."""
    response = post_archive(client, data)
    assert response.status_code == 202, response.json()
    job_id, batch_id = response.json()["job"]["id"], response.json()["batch"]["id"]
    import_archive(job_id)
    assert Job.objects.get(pk=job_id).status == JobStatus.SUCCEEDED
    items = client.get(f"{IMPORTS}{batch_id}/items/?page_size=500").json()["results"]
    return {item["name"]: (item["outcome"], item["reason"]) for item in items}


def assert_only_good_stored(media_root: Path, spill: Path, *images: bytes) -> None:
    """Only the originals of ``images`` are stored: no archive kept, no temporary file."""
    rows = dict(Image.objects.values_list("sha256", "extension"))
    assert set(rows) == {hashlib.sha256(data).hexdigest() for data in images}
    assert stored_files(media_root) == sorted(original_name(s, e) for s, e in rows.items())
    assert stored_files(spill) == []


@pytest.mark.parametrize(("data", "name", "reason"), HOSTILE_ENTRIES)
def test_a_hostile_entry_is_reported_by_name_and_the_good_one_beside_it_imported(
    api: APIClient, media_root: Path, upload_spill_dir: Path, data: bytes, name: str, reason: str
) -> None:
    report = run_import(api, data)

    assert report[name][0] == "rejected"
    assert reason in report[name][1]
    assert report["Robin/good.jpg"] == ("created", "")
    assert_only_good_stored(media_root, upload_spill_dir, GOOD)
    assert not (media_root.parent / "x.jpg").exists()


def test_an_entry_over_the_image_size_cap_is_reported(
    api: APIClient, settings: Any, media_root: Path, upload_spill_dir: Path
) -> None:
    big = image_bytes(fmt="PNG", size=(300, 300), seed=520)
    settings.LOUPE_MAX_IMAGE_BYTES = len(big) - 1

    report = run_import(api, zip_of(with_good(("Robin/big.png", big))))

    assert report["Robin/big.png"] == (
        "rejected",
        f"entry is {len(big):,} bytes; the limit is {len(big) - 1:,}",
    )
    assert_only_good_stored(media_root, upload_spill_dir, GOOD)


def test_a_mix_imports_the_good_reports_the_bad_and_a_second_run_adds_nothing(
    api: APIClient, media_root: Path, upload_spill_dir: Path
) -> None:
    robin, wren = image_bytes(seed=530), image_bytes(fmt="PNG", seed=531)
    data = zip_of(
        [
            ("Robin/a.jpg", robin),
            ("Wren/juvenile/b.png", wren),
            ("Wren/copy-of-a.jpg", robin),
            ("../escape.jpg", image_bytes(seed=532)),
            symlink("Robin/link.jpg", b"/etc/passwd"),
            ("Robin/flat.bmp", FLAT),
            ("Robin/report.jpg", b"%PDF-1.4\n%%EOF\n"),
        ]
    )

    first = run_import(api, data)

    assert {name: outcome for name, (outcome, _) in first.items()} == {
        "Robin/a.jpg": "created",
        "Wren/juvenile/b.png": "created",
        "Wren/copy-of-a.jpg": "duplicate",
        "../escape.jpg": "rejected",
        "Robin/link.jpg": "rejected",
        "Robin/flat.bmp": "rejected",
        "Robin/report.jpg": "rejected",
    }
    assert_only_good_stored(media_root, upload_spill_dir, robin, wren)
    files_after_first = stored_files(media_root)

    second = run_import(api, data)

    assert Image.objects.count() == 2
    assert stored_files(media_root) == files_after_first
    assert {name: outcome for name, (outcome, _) in second.items()} == {
        **{name: "rejected" for name, (outcome, _) in first.items() if outcome == "rejected"},
        "Robin/a.jpg": "duplicate",
        "Wren/juvenile/b.png": "duplicate",
        "Wren/copy-of-a.jpg": "duplicate",
    }
    batch = ImportBatch.objects.order_by("-id").first()
    assert batch is not None
    assert (batch.created_count, batch.duplicate_count, batch.rejected_count) == (0, 3, 4)


# --- Archives refused as a whole --------------------------------------------------------------


def declaring_sizes(data: bytes, size: int) -> bytes:
    """Every entry's central directory record claims ``size`` unpacked bytes (the shape of a zip
    bomb, without its cost)."""
    raw = bytearray(data)
    for position, _ in central_records(raw):
        raw[position + 24 : position + 28] = size.to_bytes(4, "little")
    return bytes(raw)


def declaring_entries(data: bytes, count: int) -> bytes:
    """The end record claims ``count`` entries (the directory itself is not read to find out)."""
    raw = bytearray(data)
    end = raw.rfind(b"PK\x05\x06")
    raw[end + 8 : end + 12] = struct.pack("<HH", count, count)
    return bytes(raw)


def zip_of_many(n: int) -> bytes:
    return zip_of([(f"Robin/{i}.jpg", image_bytes(seed=540 + i)) for i in range(n)])


def with_folders(n: int) -> bytes:
    return zip_of([(f"Robin/{i}/", b"") for i in range(n)] + [("Robin/a.jpg", GOOD)])


# (settings to apply, archive, what the refusal must say)
HOSTILE_ARCHIVES = [
    pytest.param({}, declaring_sizes(zip_of_many(3), 0xFFFF_FFFE),
                 "the limit is 8,589,934,592 (zip bomb?)", id="bomb-by-default-cap"),
    pytest.param({"LOUPE_ZIP_MAX_UNCOMPRESSED_BYTES": 100}, zip_of_many(1),
                 "the limit is 100 (zip bomb?)", id="unpacks-too-large"),
    pytest.param({"LOUPE_ZIP_MAX_ENTRIES": 3}, zip_of_many(4),
                 "the archive has 4 entries; the limit is 3", id="too-many-entries"),
    pytest.param({"LOUPE_ZIP_MAX_ENTRIES": 3}, with_folders(3),
                 "the archive has 4 entries; the limit is 3", id="too-many-folders"),
    pytest.param({"LOUPE_ZIP_MAX_ENTRIES": 1000}, declaring_entries(zip_of_many(1), 0xFFFF),
                 "the archive has 65,535 entries; the limit is 1,000", id="declared-entries"),
    pytest.param({"LOUPE_ZIP_MAX_BYTES": 1000}, zip_of_many(2),
                 "the limit is 1,000. Split it into smaller archives", id="archive-too-large"),
    pytest.param({}, image_bytes(seed=550), "not a readable zip archive", id="not-a-zip"),
    pytest.param({}, b"", "The submitted file is empty", id="empty"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "data", "reason"), HOSTILE_ARCHIVES)
def test_a_hostile_archive_is_refused_up_front_and_nothing_is_stored(
    api: APIClient,
    settings: Any,
    nothing_stored: Callable[[], None],
    overrides: dict[str, int],
    data: bytes,
    reason: str,
) -> None:
    for name, value in overrides.items():
        setattr(settings, name, value)

    response = post_archive(api, data)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert reason in response.json()["detail"]
    assert not Job.objects.exists()
    assert not ImportBatch.objects.exists()
    nothing_stored()


# --- The request body cap on archive uploads --------------------------------------------------


def test_an_archive_may_be_larger_than_the_general_upload_cap(
    api: APIClient, settings: Any
) -> None:
    data = zip_of_many(3)
    settings.LOUPE_MAX_UPLOAD_BYTES = len(data) // 2

    assert post_archive(api, data).status_code == 202


def test_an_archive_body_over_the_archive_cap_is_a_json_413_before_it_is_read(
    api: APIClient, nothing_stored: Callable[[], None]
) -> None:
    # 3 GiB declared, a few bytes sent: a 413 means the body was never read.
    response = api.generic(
        "POST",
        IMPORTS,
        b"--x\r\n",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(3 * 1024**3),
    )

    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "3,221,225,472 bytes" in detail
    assert "LOUPE_ZIP_MAX_BYTES" in detail
    assert not Job.objects.exists()
    nothing_stored()
