"""The one place Loupe decodes an image from untrusted bytes.

Everything that reads pixels (imports, thumbnails, hashing, model inputs) goes through
``decode_image`` or ``open_for_pixels`` so that the allow-list, the pixel cap and the
truncation check hold everywhere.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from PIL import Image as PILImage
from PIL import ImageFile, ImageOps, UnidentifiedImageError

# Truncated files are errors, never silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Pillow format name -> (extension, content type). The allow-list is checked on the decoded
# content, never on the file name.
ALLOWED_FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "TIFF": ("tiff", "image/tiff"),
    "BMP": ("bmp", "image/bmp"),
}
EXTENSION_CONTENT_TYPES = {ext: ctype for ext, ctype in ALLOWED_FORMATS.values()}
# Frames (pages of a TIFF, frames of an animation) one image may have: each is decoded to
# check it, and only the first is ever used.
MAX_FRAMES = 1000


class ImageRejected(Exception):
    """The bytes are not an image Loupe accepts; the message says why, for the uploader."""


@dataclass(frozen=True)
class DecodedImage:
    """What an accepted file is. ``width`` and ``height`` are as the image displays: with its
    EXIF orientation applied, as every page, thumbnail and model input shows it (a camera's
    portrait JPEG stored as 320x200 with orientation 6 is 200x320)."""

    format: str
    extension: str
    content_type: str
    width: int
    height: int


# EXIF orientations that turn the picture a quarter (5-8: transposed, rotated 90° or 270°,
# transversed): its displayed width is its stored height.
_QUARTER_TURNS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112


def _displayed_size(image: PILImage.Image) -> tuple[int, int]:
    """The size ``ImageOps.exif_transpose`` gives, read from the header without decoding."""
    width, height = image.size
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG)
    except Exception:  # damaged EXIF: exif_transpose ignores it too, and so do we
        orientation = None
    return (height, width) if orientation in _QUARTER_TURNS else (width, height)


def _open(stream: IO[bytes]) -> PILImage.Image:
    max_pixels: int = settings.LOUPE_MAX_IMAGE_PIXELS
    stream.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        try:
            # Restrict the decoders Pillow will even try, so nothing outside the allow-list
            # (EPS through Ghostscript, PSD, …) is ever parsed.
            image = PILImage.open(stream, formats=list(ALLOWED_FORMATS))
        except UnidentifiedImageError:
            raise ImageRejected(
                "not a supported image (allowed: JPEG, PNG, WebP, TIFF, BMP)"
            ) from None
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
            raise ImageRejected(
                f"too many pixels: the limit is {max_pixels:,} (decompression bomb?)"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise _decoding_error(exc) from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageRejected("the image has no pixels")
    if width * height > max_pixels:
        raise ImageRejected(
            f"too many pixels: {width}x{height} is over the limit of {max_pixels:,}"
        )
    return image


def decode_image(stream: IO[bytes]) -> DecodedImage:
    """Check that ``stream`` holds a whole, allowed image and describe it.

    The header is checked first (format, pixel cap), then every byte of the image data is
    decoded so truncated or corrupt files are refused. JPEGs decode at 1/8 scale (DCT scaling):
    the whole entropy-coded stream is still read, at a fraction of the cost.
    """
    image = _open(stream)
    # Pillow names a JPEG carrying more pictures after the first (cameras' multi-picture
    # format) MPO: to a browser and to Loupe it is a JPEG.
    fmt = "JPEG" if image.format == "MPO" else image.format or ""
    if fmt not in ALLOWED_FORMATS:
        image.close()
        raise ImageRejected("not a supported image (allowed: JPEG, PNG, WebP, TIFF, BMP)")
    if fmt == "PNG":
        _verify_png_chunks(image)
        image = _open(stream)
    width, height = image.size
    displayed_width, displayed_height = _displayed_size(image)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            if image.format == "JPEG":
                # Greyscale at 1/8 scale: every entropy-coded byte is still read (so truncation
                # shows), with no colour conversion. (Not for MPO: Pillow cannot decode its
                # later pictures after a draft.)
                image.draft("L", (max(1, width // 8), max(1, height // 8)))
            image.load()
            _load_other_frames(image, first_pixels=width * height)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _decoding_error(exc) from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise ImageRejected("too many pixels (decompression bomb?)") from None
    finally:
        image.close()
    extension, content_type = ALLOWED_FORMATS[fmt]
    return DecodedImage(
        format=fmt,
        extension=extension,
        content_type=content_type,
        width=displayed_width,
        height=displayed_height,
    )


def _load_other_frames(image: PILImage.Image, *, first_pixels: int) -> None:
    """Decode every frame after the first (multi-page TIFF, animated WebP and PNG, MPO).

    The pixel cap holds for all frames together, checked on each frame's header before it is
    decoded: a small first frame must not let a huge second one through. Frames are counted
    as they are reached, never by asking for ``n_frames`` (a TIFF would walk them all first).
    """
    max_pixels: int = settings.LOUPE_MAX_IMAGE_PIXELS
    total = first_pixels
    index = 1
    while True:
        try:
            image.seek(index)
        except EOFError:
            return
        if index >= MAX_FRAMES:
            raise ImageRejected(f"too many frames: the limit is {MAX_FRAMES:,}")
        width, height = image.size
        total += width * height
        if total > max_pixels:
            raise ImageRejected(
                f"too many pixels: its {index + 1} frames together are over the limit of "
                f"{max_pixels:,} (decompression bomb?)"
            )
        image.load()
        index += 1


def _decoding_error(exc: BaseException) -> ImageRejected:
    message = str(exc)
    # Pillow spells it "image file is truncated", "Truncated File Read" or, for a PNG chunk,
    # "incomplete checksum"; all mean the bytes stop early.
    if any(word in message.lower() for word in ("truncated", "incomplete")):
        return ImageRejected("truncated image: the file ends before the image data")
    return ImageRejected(f"corrupt image: {message}")


def _verify_png_chunks(image: PILImage.Image) -> None:
    """Check every chunk's checksum up to IEND; call on a freshly opened PNG, which cannot be
    loaded afterwards.

    Decoding stops once the pixels are out, so a PNG cut after its pixel data (or with a
    damaged checksum) would otherwise pass as whole.
    """
    try:
        image.verify()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _decoding_error(exc) from None


def open_for_pixels(
    stream: IO[bytes], *, max_side: int | None = None, cover_short_side: bool = False
) -> PILImage.Image:
    """Decode to an RGB image with EXIF orientation applied and no metadata kept.

    ``max_side`` lets a JPEG decode at a reduced DCT scale when only a small derivative is
    needed: the smallest scale whose longest side still covers ``max_side`` (a thumbnail or a
    letterbox), or whose shortest side does with ``cover_short_side`` (a crop or a stretch).
    """
    image = _open(stream)
    try:
        if max_side and image.format == "JPEG":
            width, height = image.size
            # draft() keeps the whole requested box inside the result.
            if cover_short_side:
                box = (max_side, max_side)
            elif width >= height:
                box = (max_side, max(1, -(-max_side * height // width)))
            else:
                box = (max(1, -(-max_side * width // height)), max_side)
            image.draft("RGB", box)
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "L"):
            image = _flatten(image)
        return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _decoding_error(exc) from None


def _flatten(image: PILImage.Image) -> PILImage.Image:
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = PILImage.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


# Stored types every browser displays in an <img>; any other stored format (TIFF) is shown
# through a rendition the worker makes beside the thumbnail.
BROWSER_SAFE_EXTENSIONS = frozenset({"jpg", "png", "webp", "bmp"})


def needs_rendition(extension: str) -> bool:
    return extension not in BROWSER_SAFE_EXTENSIONS


def make_rendition(stream: IO[bytes]) -> bytes:
    """The whole image at full size as a JPEG a browser can display: oriented, flattened onto
    white where it had transparency, without metadata, at a quality meant for looking closely
    (92, no chroma subsampling)."""
    image = open_for_pixels(stream)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92, subsampling=0, optimize=True)
    return out.getvalue()


def make_thumbnail(stream: IO[bytes], *, size: int) -> bytes:
    """A JPEG no larger than ``size`` on its longest side, oriented, without metadata."""
    image = open_for_pixels(stream, max_side=size)
    image.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    out = io.BytesIO()
    # A fresh save with no exif/icc arguments carries no metadata over.
    image.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


# Smallest side the analysis decode keeps: pHash works on 32x32 and the quality metrics on a
# ~128-pixel grey image, so a JPEG only needs decoding at the DCT scale that still covers that.
ANALYSIS_MIN_SIDE = 128


@dataclass(frozen=True)
class AnalysisDecode:
    """A reduced, oriented decode for hashing and quality metrics.

    ``image`` is mode ``L`` (``grey_only``) or ``YCbCr`` (luma first, so hashes see the same
    grey either way); ``mode`` names how it was decoded: ``draft-1/N`` when a JPEG was decoded
    at 1/N scale by DCT scaling, ``full`` otherwise.
    """

    image: PILImage.Image
    mode: str


def open_for_analysis(stream: IO[bytes], *, grey_only: bool = False) -> AnalysisDecode:
    """Decode for perceptual hashing and quality lint, as cheaply as the result allows.

    JPEGs decode in Pillow's draft mode: libjpeg scales the DCT down (1/2, 1/4, 1/8) so the
    smallest side stays at least ``ANALYSIS_MIN_SIDE``, and outputs luma (plus chroma unless
    ``grey_only``) without a colour conversion. Other formats decode fully. EXIF orientation
    is applied, so a rotated copy of a photo hashes like the photo.
    """
    image = _open(stream)
    target = "L" if grey_only else "YCbCr"
    mode = "full"
    try:
        if image.format == "JPEG":
            width, height = image.size
            # draft() keeps the requested box inside the result; ask for the shorter side only.
            scale = min(width, height) / ANALYSIS_MIN_SIDE
            box = (max(1, int(width / scale)), max(1, int(height / scale))) if scale > 1 else None
            if box is not None and image.mode in ("RGB", "YCbCr", "L"):
                image.draft(target if image.mode != "L" else "L", box)
                reduced = width // image.size[0] if image.size[0] else 1
                if reduced > 1:
                    mode = f"draft-1/{reduced}"
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "P", "PA", "I;16", "I", "F", "CMYK", "1"):
            image = _flatten(image) if image.mode != "1" else image.convert("L")
        if image.mode != target:
            image = image.convert(target)
        image.load()
        return AnalysisDecode(image=image, mode=mode)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise _decoding_error(exc) from None


def resize(image: PILImage.Image, *, size: int, mode: str) -> PILImage.Image:
    """A ``size`` by ``size`` RGB image. Letterbox keeps the aspect ratio and pads with black,
    centred; center_crop scales the short side to ``size`` and cuts the middle."""
    width, height = image.size
    bilinear = PILImage.Resampling.BILINEAR
    if mode == "stretch":
        return image.resize((size, size), bilinear)
    if mode == "center_crop":
        factor = size / min(width, height)
        new = (max(size, round(width * factor)), max(size, round(height * factor)))
        scaled = image.resize(new, bilinear)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        return scaled.crop((left, top, left + size, top + size))
    factor = size / max(width, height)
    new = (max(1, round(width * factor)), max(1, round(height * factor)))
    scaled = image.resize(new, bilinear)
    canvas = PILImage.new("RGB", (size, size))
    canvas.paste(scaled, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas
