"""Real photographs (bundled with scikit-image, nothing downloaded) and the edits that make
near-duplicates of them."""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image as PILImage
from PIL import ImageDraw, ImageEnhance, ImageFilter

# Photographs far apart in pHash from one another (20 bits or more).
PHOTOS = ["astronaut", "camera", "coins", "immunohistochemistry", "clock"]
DISTINCT = ["chelsea", "coffee", "rocket", "horse", "moon", "retina"]


def photo(name: str) -> PILImage.Image:
    import skimage.data

    return PILImage.fromarray(getattr(skimage.data, name)()).convert("RGB")


def jpeg(image: PILImage.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _crop(image: PILImage.Image) -> PILImage.Image:
    w, h = image.size
    return image.crop((int(w * 0.02), int(h * 0.02), int(w * 0.98), int(h * 0.98)))


def _watermark(image: PILImage.Image) -> PILImage.Image:
    w, h = image.size
    layer = PILImage.new("RGBA", image.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((int(w * 0.05), int(h * 0.9)), "(c) stock 2024", fill=(255,) * 4)
    return PILImage.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def _crop_unevenly(image: PILImage.Image) -> PILImage.Image:
    """8% of the width and of the height off, most of it on one side."""
    w, h = image.size
    return image.crop((int(w * 0.06), int(h * 0.01), w - int(w * 0.02), h - int(h * 0.07)))


def _caption(image: PILImage.Image) -> PILImage.Image:
    w, h = image.size
    band = h // 10
    out = image.copy()
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, h - band, w, h), fill=(0, 0, 0))
    draw.text((8, h - band + 4), "field sample, 2024", fill=(255, 255, 255), font_size=band - 8)
    return out


# The edits pHash alone misses at 8 bits: probe hashes find them, verification confirms them.
HARD_EDITS: dict[str, Callable[[PILImage.Image], bytes]] = {
    "cropped by 8%": lambda im: jpeg(_crop_unevenly(im)),
    "rotated by 5 degrees": lambda im: jpeg(im.rotate(-5, resample=PILImage.Resampling.BICUBIC)),
    "re-encoded at quality 12": lambda im: jpeg(im, quality=12),
    "double size": lambda im: jpeg(im.resize((im.width * 2, im.height * 2))),
    "captioned": lambda im: jpeg(_caption(im)),
}


def tiles(name: str, side: int = 160) -> list[PILImage.Image]:
    """Distinct, non-overlapping tiles of one photograph: different images of one subject."""
    image = photo(name)
    return [
        image.crop((left, top, left + side, top + side))
        for top in range(0, image.height - side + 1, side)
        for left in range(0, image.width - side + 1, side)
    ]


EDITS: dict[str, Callable[[PILImage.Image], bytes]] = {
    "re-encoded": lambda im: jpeg(im, quality=50),
    "resized": lambda im: jpeg(im.resize((im.width * 2 // 3, im.height * 2 // 3))),
    "cropped": lambda im: jpeg(_crop(im)),
    "brightened": lambda im: jpeg(ImageEnhance.Brightness(im).enhance(1.2)),
    "blurred": lambda im: jpeg(im.filter(ImageFilter.GaussianBlur(1.5))),
    "rotated": lambda im: jpeg(im.rotate(1.5, resample=PILImage.Resampling.BICUBIC)),
    "watermarked": lambda im: jpeg(_watermark(im)),
}
