"""Hostile uploads to POST /api/v1/images/: every one is refused with a JSON error naming the
problem and leaves nothing behind, or (hostile names, polyglots, hostile EXIF) is stored only as
an inert image."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Image, ImportBatch
from curation.storage import original_name
from tests.factories import image_bytes, png_with_declared_size
from tests.security.conftest import stored_files

pytestmark = pytest.mark.django_db

IMAGES = "/api/v1/images/"
SCRIPT = '<script>alert("xss")</script>'


# --- Hostile files ----------------------------------------------------------------------------


def pillow_saved(fmt: str) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (16, 16), (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


def psd() -> bytes:
    """A minimal Photoshop file (8x8 RGB, raw channels) that Pillow's PSD reader would open."""
    width = height = 8
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    sections = struct.pack(">III", 0, 0, 0)  # colour mode data, resources, layers: all empty
    channels = bytes([200]) * (width * height) + bytes([30]) * (width * height * 2)
    return header + sections + struct.pack(">H", 0) + channels


SVG_WITH_SCRIPT = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" '
    b'onload="alert(document.cookie)"><script>alert(document.domain)</script>'
    b'<rect width="10" height="10"/></svg>\n'
)


def truncated(fmt: str, keep: float) -> bytes:
    data = image_bytes(fmt=fmt, size=(120, 90), seed=7)
    return data[: int(len(data) * keep)]


NOT_ALLOWED = "not a supported image (allowed: JPEG, PNG, WebP, TIFF, BMP)"

# (file name, bytes, what the refusal must say)
REFUSED = [
    pytest.param(
        "bomb.png", png_with_declared_size(30_000, 30_000), "too many pixels", id="pixel-bomb"
    ),
    pytest.param("wide.png", png_with_declared_size(1, 2**31 - 1), "too many pixels", id="tall"),
    pytest.param("cut.jpg", truncated("JPEG", 0.6), "truncated image", id="truncated-jpeg"),
    pytest.param("cut.png", truncated("PNG", 0.6), "truncated image", id="truncated-png"),
    pytest.param("headers.jpg", truncated("JPEG", 0.05), "truncated image", id="jpeg-headers"),
    pytest.param("empty.jpg", b"", "empty file (zero bytes)", id="zero-bytes"),
    pytest.param("cover.jpg", pillow_saved("EPS"), NOT_ALLOWED, id="eps-named-jpg"),
    pytest.param("invoice.jpg", pillow_saved("PDF"), NOT_ALLOWED, id="pdf-named-jpg"),
    pytest.param("layers.png", psd(), NOT_ALLOWED, id="psd-named-png"),
    pytest.param("logo.png", SVG_WITH_SCRIPT, NOT_ALLOWED, id="svg-script-named-png"),
    pytest.param("logo.jpg", SVG_WITH_SCRIPT, NOT_ALLOWED, id="svg-script-named-jpg"),
    pytest.param("anim.jpg", pillow_saved("GIF"), NOT_ALLOWED, id="gif-named-jpg"),
    pytest.param("page.jpg", b"<html><body>" + SCRIPT.encode() + b"</body></html>", NOT_ALLOWED,
                 id="html-named-jpg"),
]  # fmt: skip


def test_the_disguised_files_really_are_what_they_claim_to_be() -> None:
    # Without the allow-list Pillow would parse these: the refusals below are the allow-list's.
    assert PILImage.open(io.BytesIO(pillow_saved("EPS"))).format == "EPS"
    assert PILImage.open(io.BytesIO(psd())).format == "PSD"
    assert PILImage.open(io.BytesIO(pillow_saved("GIF"))).format == "GIF"
    assert pillow_saved("PDF").startswith(b"%PDF")


def upload(name: str, data: bytes, content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.mark.parametrize(("name", "data", "reason"), REFUSED)
def test_a_hostile_file_is_refused_naming_the_problem_and_nothing_is_stored(
    api: APIClient, nothing_stored: Callable[[], None], name: str, data: bytes, reason: str
) -> None:
    response = api.post(IMAGES, {"file": upload(name, data)}, format="multipart")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert f"{name}: {reason}" in body["detail"]
    [line] = body["files"]
    assert (line["name"], line["outcome"], line["image"]) == (name, "rejected", None)
    assert reason in line["reason"]
    nothing_stored()


def test_several_hostile_files_in_one_request_are_each_refused_by_name(
    api: APIClient, nothing_stored: Callable[[], None]
) -> None:
    files = [upload(p.values[0], p.values[1]) for p in REFUSED]

    response = api.post(IMAGES, {"files": files}, format="multipart")

    assert response.status_code == 400
    body = response.json()
    assert body["rejected"] == len(REFUSED)
    reasons = [(line["name"], line["reason"]) for line in body["files"]]
    for (name, reason), param in zip(reasons, REFUSED, strict=True):
        assert name == param.values[0]
        assert param.values[2] in reason
    nothing_stored()


def test_good_files_among_hostile_ones_are_stored_and_only_they_are(
    api: APIClient, media_root: Path, upload_spill_dir: Path
) -> None:
    good = image_bytes(fmt="PNG", size=(64, 64), seed=101)
    files = [upload(p.values[0], p.values[1]) for p in REFUSED] + [upload("robin.png", good)]

    response = api.post(IMAGES, {"files": files}, format="multipart")

    assert response.status_code == 201
    body = response.json()
    assert (body["created"], body["rejected"]) == (1, len(REFUSED))
    image = Image.objects.get()
    assert image.original_filename == "robin.png"
    assert stored_files(media_root) == [original_name(image.sha256, "png")]
    assert stored_files(upload_spill_dir) == []


def test_the_pixel_cap_is_the_configured_one(
    api: APIClient, settings: Any, nothing_stored: Callable[[], None]
) -> None:
    settings.LOUPE_MAX_IMAGE_PIXELS = 64 * 48 - 1

    response = api.post(IMAGES, {"file": upload("a.jpg", image_bytes(size=(64, 48)))})

    assert response.status_code == 400
    assert "a.jpg: too many pixels: 64x48 is over the limit of 3,071" in response.json()["detail"]
    nothing_stored()


def test_a_file_over_the_image_size_cap_is_refused(
    api: APIClient, settings: Any, nothing_stored: Callable[[], None]
) -> None:
    data = image_bytes(fmt="BMP", size=(64, 64), seed=102)
    settings.LOUPE_MAX_IMAGE_BYTES = len(data) - 1

    response = api.post(IMAGES, {"file": upload("big.bmp", data, "image/bmp")})

    assert response.status_code == 400
    assert f"big.bmp: file is {len(data):,} bytes; the limit is" in response.json()["detail"]
    nothing_stored()


def frames(fmt: str, *sizes: tuple[int, int], **options: Any) -> bytes:
    first, *rest = (PILImage.new("L", size, 90) for size in sizes)
    out = io.BytesIO()
    first.save(out, format=fmt, save_all=True, append_images=rest, **options)
    return out.getvalue()


def test_a_small_first_frame_does_not_let_a_huge_second_one_through(
    api: APIClient, settings: Any, nothing_stored: Callable[[], None]
) -> None:
    settings.LOUPE_MAX_IMAGE_PIXELS = 10_000
    data = frames("TIFF", (50, 50), (400, 400), compression="tiff_deflate")

    response = api.post(IMAGES, {"file": upload("pages.tiff", data, "image/tiff")})

    assert response.status_code == 400
    assert (
        "pages.tiff: too many pixels: its 2 frames together are over the limit of 10,000"
        in response.json()["detail"]
    )
    nothing_stored()


def test_an_image_with_too_many_frames_is_refused(
    api: APIClient, monkeypatch: pytest.MonkeyPatch, nothing_stored: Callable[[], None]
) -> None:
    monkeypatch.setattr("curation.imaging.MAX_FRAMES", 3)
    data = frames("TIFF", *[(2, 2)] * 4)

    response = api.post(IMAGES, {"file": upload("pages.tiff", data, "image/tiff")})

    assert response.status_code == 400
    assert "pages.tiff: too many frames: the limit is 3" in response.json()["detail"]
    nothing_stored()


def test_a_multi_picture_jpeg_is_accepted_as_the_jpeg_it_is(api: APIClient) -> None:
    out = io.BytesIO()
    left, right = PILImage.new("RGB", (64, 48), (9, 9, 9)), PILImage.new("RGB", (64, 48))
    left.save(out, format="MPO", save_all=True, append_images=[right])

    response = api.post(IMAGES, {"file": upload("stereo.jpg", out.getvalue())})

    assert response.status_code == 201, response.json()
    image = Image.objects.get()
    assert (image.format, image.content_type) == ("JPEG", "image/jpeg")


def test_an_upload_over_the_size_cap_is_refused_without_being_read(
    labeller: User, settings: Any
) -> None:
    from curation.models import ImportKind
    from curation.services.images import import_batch_create
    from curation.services.imports import Destination, upload_import

    class Unreadable(io.BytesIO):
        size = 10 * 1024**3

        def read(self, *args: Any) -> bytes:
            raise AssertionError("an oversized upload was read")

    batch = import_batch_create(kind=ImportKind.UPLOAD, name="x", actor=labeller)
    [result] = upload_import(
        files=[("huge.jpg", Unreadable())],
        destination=Destination(from_folders=False),
        actor=labeller,
        batch=batch,
    ).results

    assert result.reason == "file is 10,737,418,240 bytes; the limit is 52,428,800"
    assert not Image.objects.exists()


# --- A PNG that is also an HTML page ----------------------------------------------------------


def png_with_html_inside() -> bytes:
    info = PngInfo()
    info.add_text("Comment", f"<html><body>{SCRIPT}</body></html>")
    out = io.BytesIO()
    PILImage.new("RGB", (32, 32), (10, 120, 10)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def png_with_html_after_the_end() -> bytes:
    return image_bytes(fmt="PNG", seed=103) + f"<html><body>{SCRIPT}</body></html>".encode()


@pytest.mark.parametrize(
    "polyglot",
    [
        pytest.param(png_with_html_inside(), id="html-in-a-text-chunk"),
        pytest.param(png_with_html_after_the_end(), id="html-after-iend"),
    ],
)
def test_a_png_html_polyglot_named_html_is_stored_and_served_only_as_a_png(
    api: APIClient, labeller: User, media_root: Path, polyglot: bytes
) -> None:
    response = api.post(IMAGES, {"file": upload("page.html", polyglot, "text/html")})

    assert response.status_code == 201, response.json()
    image = Image.objects.get()
    assert (image.format, image.extension, image.content_type) == ("PNG", "png", "image/png")
    assert stored_files(media_root) == [original_name(image.sha256, "png")]
    page = Client()
    page.force_login(labeller)
    for served in (
        api.get(f"{IMAGES}{image.pk}/file/"),
        page.get(f"/images/{image.pk}/file"),
        page.get(f"/images/{image.pk}/thumbnail"),  # no thumbnail yet: the original
    ):
        assert served.status_code == 200
        assert served["Content-Type"] == "image/png"
        assert served["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in served["Content-Security-Policy"]
        assert "html" not in served["Content-Disposition"]
        assert served["Content-Disposition"].endswith(f'filename="{image.sha256}.png"')


# --- Requests too large or with too many files ------------------------------------------------


def test_500_files_in_one_request_are_refused_naming_the_per_request_limit(
    api: APIClient, nothing_stored: Callable[[], None]
) -> None:
    files = [upload(f"{n}.jpg", bytes([n % 256]) * 2048) for n in range(500)]

    response = api.post(IMAGES, {"files": files}, format="multipart")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    detail = response.json()["detail"]
    assert "the limit is 200" in detail
    assert "LOUPE_MAX_FILES_PER_REQUEST" in detail
    assert not ImportBatch.objects.exists()
    nothing_stored()


def test_a_body_over_the_upload_cap_is_a_json_413(
    api: APIClient, settings: Any, nothing_stored: Callable[[], None]
) -> None:
    settings.LOUPE_MAX_UPLOAD_BYTES = 20_000
    data = image_bytes(fmt="BMP", size=(100, 100), seed=104)  # 30 kB

    response = api.post(IMAGES, {"file": upload("big.bmp", data, "image/bmp")})

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    detail = response.json()["detail"]
    assert "the limit is 20,000 bytes" in detail
    assert "LOUPE_MAX_UPLOAD_BYTES" in detail
    assert not ImportBatch.objects.exists()
    nothing_stored()


def test_the_upload_cap_is_checked_before_any_of_the_body_is_read(
    api: APIClient, nothing_stored: Callable[[], None]
) -> None:
    # The declared length is far beyond the bytes sent: reading the body would fail the test
    # client ("Cannot read more than the available bytes"), so a 413 means nothing was read.
    response = api.generic(
        "POST",
        IMAGES,
        b"--x\r\n",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(50 * 1024**3),
    )

    assert response.status_code == 413
    assert "53,687,091,200 bytes" in response.json()["detail"]
    nothing_stored()


def test_a_body_under_the_upload_cap_is_accepted(api: APIClient, settings: Any) -> None:
    settings.LOUPE_MAX_UPLOAD_BYTES = 20_000
    data = image_bytes(fmt="PNG", size=(40, 40), seed=105)

    response = api.post(IMAGES, {"file": upload("small.png", data, "image/png")})

    assert response.status_code == 201


def test_the_upload_cap_covers_the_html_pages_too(
    labeller: User, settings: Any, nothing_stored: Callable[[], None]
) -> None:
    settings.LOUPE_MAX_UPLOAD_BYTES = 1000
    page = Client()
    page.force_login(labeller)

    response = page.post("/classes/new", {"name": "x" * 5000})

    assert response.status_code == 413
    nothing_stored()


# --- Hostile file names -----------------------------------------------------------------------

# (name sent, the name Loupe keeps)
HOSTILE_NAMES = [
    pytest.param("../../etc/passwd.jpg", "passwd.jpg", id="path-traversal"),
    pytest.param("..\\..\\windows\\win.ini.jpg", "win.ini.jpg", id="windows-traversal"),
    pytest.param("/etc/cron.d/evil.jpg", "evil.jpg", id="absolute-path"),
    pytest.param("evil\x00.php.jpg", "evil.php.jpg", id="nul-byte"),
    pytest.param("holiday\u202egpj.exe", "holidaygpj.exe", id="right-to-left-override"),
    pytest.param("a" * 296 + ".jpg", "a" * 251 + ".jpg", id="300-characters"),
    pytest.param("<img src=x onerror=alert(1)>.jpg", "<img src=x onerror=alert(1)>.jpg",
                 id="html"),
    pytest.param('x"; filename="evil.html', "evil.html", id="header-injection"),
]  # fmt: skip


@pytest.mark.parametrize(("sent", "kept"), HOSTILE_NAMES)
def test_a_hostile_file_name_is_kept_only_as_sanitised_metadata(
    api: APIClient, labeller: User, media_root: Path, sent: str, kept: str
) -> None:
    data = image_bytes(seed=106)

    response = api.post(IMAGES, {"file": upload(sent, data)}, format="multipart")

    assert response.status_code == 201, response.json()
    image = Image.objects.get()
    assert image.original_filename == kept
    assert len(image.original_filename) <= 255
    # The name never reaches the file system: the only file is at the content address.
    assert stored_files(media_root) == [original_name(image.sha256, "jpg")]
    assert not (media_root.parent / "etc").exists()
    page = Client()
    page.force_login(labeller)
    served = page.get(f"/images/{image.pk}/file")
    assert served["Content-Disposition"] == f'inline; filename="{image.sha256}.jpg"'
    html = page.get(f"/images/{image.pk}/").content.decode()
    assert "<img src=x onerror" not in html
    if "<img" in kept:
        assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in html
    report = page.get(f"/imports/{image.import_batch_id}/").content.decode()
    assert "<img src=x onerror" not in report


# --- EXIF carrying HTML -----------------------------------------------------------------------


def jpeg_with_hostile_exif() -> bytes:
    exif = PILImage.Exif()
    exif[0x010E] = SCRIPT  # ImageDescription
    exif[0x013B] = "<img src=x onerror=alert(2)>"  # Artist
    out = io.BytesIO()
    PILImage.new("RGB", (64, 48), (40, 40, 200)).save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def test_html_in_exif_stays_inert_data_inside_the_image(
    api: APIClient, labeller: User, media_root: Path
) -> None:
    from curation.services.processing import thumbnails_make

    data = jpeg_with_hostile_exif()
    assert SCRIPT.encode() in data

    response = api.post(IMAGES, {"file": upload("exif.jpg", data)}, format="multipart")

    assert response.status_code == 201
    assert SCRIPT not in response.content.decode()
    image = Image.objects.get()
    # The original is kept byte for byte (its EXIF is data inside an image, never markup) …
    assert (media_root / image.storage_name).read_bytes() == data
    page = Client()
    page.force_login(labeller)
    html = page.get(f"/images/{image.pk}/").content.decode()
    assert "<script>alert" not in html
    assert "onerror=alert(2)" not in html
    assert SCRIPT not in api.get(f"{IMAGES}{image.pk}/").content.decode()
    # … served only as a sandboxed JPEG …
    served = page.get(f"/images/{image.pk}/file")
    assert (served["Content-Type"], served["X-Content-Type-Options"]) == ("image/jpeg", "nosniff")
    # … and the thumbnail every page shows carries no metadata at all.
    thumbnails_make(image_ids=[image.pk])
    thumbnail = (media_root / image.thumbnail_name).read_bytes()
    assert b"<script>" not in thumbnail
    assert not PILImage.open(io.BytesIO(thumbnail)).getexif()
