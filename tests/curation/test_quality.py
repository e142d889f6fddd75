from __future__ import annotations

import io

import pytest
from PIL import ImageEnhance, ImageFilter

from curation.models import Image, ImageFeatures, ImportKind
from curation.services.hashing import features_make
from curation.services.images import file_inspect, image_import, import_batch_create
from curation.services.quality import flag_q, quality_baseline_update, quality_flags
from tests.curation.duplicate_photos import DISTINCT, PHOTOS, jpeg, photo


def _add(data: bytes) -> Image:
    batch = import_batch_create(kind=ImportKind.UPLOAD, name="test", actor=None)
    result = image_import(
        inspection=file_inspect(data=data, name="photo.jpg"),
        content=io.BytesIO(data),
        subclass=None,
        actor=None,
        batch=batch,
    )
    assert result.image is not None
    return result.image


@pytest.fixture
def library(db: None) -> dict[str, Image]:
    """Ordinary photographs, plus one planted dark, bright and blurry image."""
    ordinary = [name for name in PHOTOS + DISTINCT if name != "horse"]  # a white silhouette
    images = {name: _add(jpeg(photo(name))) for name in ordinary}
    base = photo("coffee").crop((0, 0, 300, 300))
    images["dark"] = _add(jpeg(ImageEnhance.Brightness(base).enhance(0.08)))
    images["bright"] = _add(jpeg(ImageEnhance.Brightness(photo("astronaut")).enhance(3.0)))
    images["blurry"] = _add(jpeg(photo("chelsea").filter(ImageFilter.GaussianBlur(8))))
    features_make(image_ids=[image.pk for image in images.values()])
    return images


def test_lint_flags_the_planted_dark_bright_and_blurry_images(library: dict[str, Image]) -> None:
    stats = quality_baseline_update().stats

    flags = {
        name: quality_flags(features=ImageFeatures.objects.get(image=image), stats=stats)
        for name, image in library.items()
    }

    assert "too_dark" in flags["dark"]
    assert "too_bright" in flags["bright"]
    assert "blurry" in flags["blurry"]
    ordinary = {name: f for name, f in flags.items() if name not in ("dark", "bright", "blurry")}
    assert not any({"too_dark", "too_bright", "blurry"} & set(f) for f in ordinary.values()), (
        ordinary
    )


def test_a_flag_filters_an_image_list(library: dict[str, Image]) -> None:
    stats = quality_baseline_update().stats

    blurry = Image.objects.filter(flag_q(flag="blurry", stats=stats))

    assert library["blurry"] in blurry
    # The planted dark image is too dark to show detail: it may count as blurry as well.
    assert set(blurry) <= {library["blurry"], library["dark"]}


def test_an_override_wins_over_the_adaptive_threshold(library: dict[str, Image]) -> None:
    stats = quality_baseline_update(overrides={"too_dark": {"low": 0.5}}).stats

    dark = Image.objects.filter(flag_q(flag="too_dark", stats=stats))

    assert not dark.exists()


def test_metrics_describe_the_pixels(library: dict[str, Image]) -> None:
    camera = ImageFeatures.objects.get(image=library["camera"])
    coffee = ImageFeatures.objects.get(image=library["coffee"])

    assert camera.is_grayscale and not coffee.is_grayscale
    assert camera.aspect_ratio == 1.0 and camera.megapixels == pytest.approx(0.262, abs=0.001)
    assert 0 < camera.entropy <= 8
    assert camera.brightness_p05 <= camera.brightness_p50 <= camera.brightness_p95
