"""The one decoding function: what it lets in, what it refuses and why, and the thumbnails it
makes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image as PILImage

from curation.imaging import ImageRejected, decode_image, make_thumbnail
from curation.services.images import file_inspect
from tests.factories import image_bytes, jpeg_with_orientation, png_with_declared_size


def rejection(data: bytes) -> str:
    with pytest.raises(ImageRejected) as excinfo:
        decode_image(io.BytesIO(data))
    return str(excinfo.value)


@pytest.mark.parametrize(
    ("fmt", "extension", "content_type"),
    [
        ("JPEG", "jpg", "image/jpeg"),
        ("PNG", "png", "image/png"),
        ("WEBP", "webp", "image/webp"),
        ("TIFF", "tiff", "image/tiff"),
        ("BMP", "bmp", "image/bmp"),
    ],
)
def test_it_accepts_each_allowed_format_and_names_its_type(
    fmt: str, extension: str, content_type: str
) -> None:
    decoded = decode_image(io.BytesIO(image_bytes(fmt=fmt, size=(40, 30))))

    assert (decoded.format, decoded.extension, decoded.content_type) == (
        fmt,
        extension,
        content_type,
    )
    assert (decoded.width, decoded.height) == (40, 30)


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SVG_WITH_SCRIPT = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(document.cookie)</script></svg>"
)
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto showpage\n%%EOF\n"
EPS_BINARY_HEADER = b"\xc5\xd0\xd3\xc6" + b"\x20\x00\x00\x00" * 6 + b"%!PS-Adobe-3.0\n"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("report.jpg", PDF),
        ("animation.gif", image_bytes(fmt="GIF")),
        ("logo.png", SVG_WITH_SCRIPT),
        ("figure.jpg", EPS),
        ("figure.tif", EPS_BINARY_HEADER),
    ],
)
def test_it_checks_the_allow_list_on_content_not_on_the_file_name(name: str, data: bytes) -> None:
    inspection = file_inspect(data=data, name=name)

    assert inspection.decoded is None
    assert "not a supported image" in inspection.rejection
    assert "JPEG, PNG, WebP, TIFF, BMP" in inspection.rejection


def test_it_accepts_a_real_image_whatever_its_name_says() -> None:
    inspection = file_inspect(data=image_bytes(fmt="PNG"), name="holiday.gif")

    assert inspection.decoded is not None
    assert inspection.decoded.extension == "png"


def test_it_rejects_an_image_over_the_configured_pixel_cap(settings: Any) -> None:
    settings.LOUPE_MAX_IMAGE_PIXELS = 1000

    message = rejection(image_bytes(size=(64, 48)))

    assert "too many pixels" in message
    assert "1,000" in message


def test_it_accepts_an_image_just_under_the_pixel_cap(settings: Any) -> None:
    settings.LOUPE_MAX_IMAGE_PIXELS = 64 * 48

    assert decode_image(io.BytesIO(image_bytes(size=(64, 48)))).width == 64


@pytest.mark.parametrize("side", [12_000, 100_000])
def test_it_rejects_a_decompression_bomb(side: int) -> None:
    bomb = png_with_declared_size(side, side)
    assert len(bomb) < 200  # tiny on disk, billions of pixels once decoded

    message = rejection(bomb)

    assert "too many pixels" in message
    assert "decompression bomb" in message


def test_it_rejects_a_truncated_jpeg_and_says_so() -> None:
    data = image_bytes(size=(320, 240), seed=7)

    for cut in (len(data) // 2, 100, 2):
        assert "truncated" in rejection(data[:-cut])


def test_it_rejects_a_jpeg_cut_inside_its_headers_as_truncated() -> None:
    data = image_bytes(size=(64, 48), seed=8)

    assert "truncated" in rejection(data[:300])


def test_it_rejects_a_truncated_png() -> None:
    data = image_bytes(fmt="PNG", size=(320, 240), seed=9)

    assert "truncated" in rejection(data[: len(data) // 2])


def test_it_rejects_a_png_whose_end_is_missing() -> None:
    data = image_bytes(fmt="PNG", size=(64, 48), seed=10)
    assert data.endswith(b"IEND\xaeB`\x82")

    # All of the pixels, but the file stops before its checksum and IEND chunk.
    assert "truncated" in rejection(data[:-16])


def test_it_rejects_a_png_with_a_corrupt_chunk() -> None:
    data = bytearray(image_bytes(fmt="PNG", size=(64, 48), seed=11))
    data[-14] ^= 0xFF  # a byte of the IDAT checksum

    with pytest.raises(ImageRejected):
        decode_image(io.BytesIO(bytes(data)))


def test_it_rejects_an_empty_file_with_a_clear_reason() -> None:
    inspection = file_inspect(data=b"", name="empty.jpg")

    assert inspection.decoded is None
    assert inspection.rejection == "empty file (zero bytes)"


def test_it_rejects_a_file_over_the_size_limit(settings: Any) -> None:
    settings.LOUPE_MAX_IMAGE_BYTES = 100

    inspection = file_inspect(data=image_bytes(), name="big.jpg")

    assert inspection.decoded is None
    assert "the limit is 100" in inspection.rejection


def test_a_thumbnail_follows_the_exif_orientation() -> None:
    landscape_pixels = jpeg_with_orientation(6, size=(64, 48))

    thumbnail = PILImage.open(io.BytesIO(make_thumbnail(io.BytesIO(landscape_pixels), size=256)))

    # Orientation 6 means "rotate 90° clockwise to display": the picture is portrait.
    assert thumbnail.size == (48, 64)


def test_a_thumbnail_keeps_no_metadata() -> None:
    original = jpeg_with_orientation(6, size=(64, 48))
    assert PILImage.open(io.BytesIO(original)).getexif()  # the source does carry EXIF

    data = make_thumbnail(io.BytesIO(original), size=256)
    thumbnail = PILImage.open(io.BytesIO(data))

    assert thumbnail.format == "JPEG"
    assert not thumbnail.getexif()
    assert "exif" not in thumbnail.info
    assert b"Secret Camera" not in data


def test_a_thumbnail_fits_the_size_on_its_longest_side() -> None:
    data = make_thumbnail(io.BytesIO(image_bytes(fmt="PNG", size=(400, 100))), size=64)

    assert PILImage.open(io.BytesIO(data)).size == (64, 16)


def test_a_thumbnail_of_a_transparent_png_is_flattened_onto_white() -> None:
    image = PILImage.new("RGBA", (20, 20), (0, 0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")

    data = make_thumbnail(io.BytesIO(out.getvalue()), size=64)

    red, green, blue = PILImage.open(io.BytesIO(data)).convert("RGB").getpixel((10, 10))
    assert min(red, green, blue) > 240
