"""Every stored format is viewable: pages show a TIFF through a full-size JPEG rendition the
worker makes beside the thumbnail, and the original stays downloadable as it was stored."""

from __future__ import annotations

import importlib
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import Client
from PIL import Image as PILImage
from PIL import ImageChops, ImageStat
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Image
from curation.services.processing import orphans_sweep, thumbnails_make
from curation.storage import rendition_name
from tests.factories import LabelClassFactory, image_bytes

pytestmark = pytest.mark.django_db


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


@pytest.fixture
def tiff(make_image: Callable[..., Image]) -> Image:
    subclass = LabelClassFactory(name="Wren").subclasses.get(is_default=True)
    image = make_image(subclass, fmt="TIFF", size=(120, 80))
    assert image.extension == "tiff"
    return image


def test_a_tiff_is_shown_as_a_jpeg_rendition_of_the_same_picture(
    tiff: Image, reviewer_api: APIClient
) -> None:
    thumbnails_make(image_ids=[tiff.pk])

    response = reviewer_api.get(f"/api/v1/images/{tiff.pk}/display/")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert response["X-Content-Type-Options"] == "nosniff"
    shown = PILImage.open(io.BytesIO(body(response)))
    assert shown.format == "JPEG" and shown.size == (120, 80)
    with default_storage.open(tiff.storage_name) as stored:
        original = PILImage.open(stored).convert("RGB")
    difference = ImageStat.Stat(ImageChops.difference(original, shown.convert("RGB")))
    assert max(difference.mean) < 3  # the same picture, up to JPEG's losses


def test_the_original_tiff_stays_downloadable_byte_for_byte(
    tiff: Image, reviewer_api: APIClient
) -> None:
    thumbnails_make(image_ids=[tiff.pk])

    response = reviewer_api.get(f"/api/v1/images/{tiff.pk}/file/")

    assert response["Content-Type"] == "image/tiff"
    with default_storage.open(tiff.storage_name) as stored:
        assert body(response) == stored.read()
    listed = reviewer_api.get(f"/api/v1/images/{tiff.pk}/").json()
    assert listed["file_url"].endswith(f"/api/v1/images/{tiff.pk}/file/")
    assert listed["display_url"].endswith(f"/api/v1/images/{tiff.pk}/display/")


def test_before_the_worker_has_made_it_there_is_no_rendition_to_show(
    tiff: Image, reviewer_api: APIClient
) -> None:
    assert not Image.objects.get(pk=tiff.pk).thumbnail_ready

    assert reviewer_api.get(f"/api/v1/images/{tiff.pk}/display/").status_code == 404
    assert reviewer_api.get(f"/api/v1/images/{tiff.pk}/").json()["display_url"] is None


def test_formats_browsers_display_are_shown_as_stored(
    make_image: Callable[..., Image], reviewer_api: APIClient
) -> None:
    png = make_image(None, fmt="PNG", size=(40, 30))

    response = reviewer_api.get(f"/api/v1/images/{png.pk}/display/")

    assert response["Content-Type"] == "image/png"
    with default_storage.open(png.storage_name) as stored:
        assert body(response) == stored.read()
    thumbnails_make(image_ids=[png.pk])
    assert not default_storage.exists(rendition_name(png.sha256))


def test_the_image_page_shows_the_rendition_and_offers_the_original(
    tiff: Image, reviewer: User
) -> None:
    thumbnails_make(image_ids=[tiff.pk])
    browser = Client()
    browser.force_login(reviewer)

    page = browser.get(f"/images/{tiff.pk}/").content.decode()

    [shown] = re.findall(rf'<img src="([^"]+)" alt="Image {tiff.pk}"', page)
    assert shown == f"/images/{tiff.pk}/display"
    assert browser.get(shown)["Content-Type"] == "image/jpeg"
    assert f'href="/images/{tiff.pk}/file" download=' in page
    assert "Download original" in page and "JPEG rendition" in page


def test_the_labelling_page_gets_the_rendition_to_show(
    make_image: Callable[..., Image], api: APIClient
) -> None:
    unlabelled = make_image(None, fmt="TIFF", size=(60, 40))
    thumbnails_make(image_ids=[unlabelled.pk])

    queue = api.get("/api/v1/labelling/queue/?queue=inbox").json()

    [item] = queue["next"]
    assert item["display_url"] == f"/api/v1/images/{unlabelled.pk}/display/"
    assert api.get(item["display_url"])["Content-Type"] == "image/jpeg"


def test_no_page_puts_an_original_in_an_img_tag() -> None:
    """Pages show images through …/display (or thumbnails); an original of a format the browser
    cannot decode would be a broken image there."""
    offenders = []
    for path in Path(settings.BASE_DIR, "templates").rglob("*.html"):
        for tag in re.findall(r"<img\b[^>]*>", path.read_text()):
            if "curation:image-file" in tag:
                offenders.append(f"{path.name}: {tag}")

    assert offenders == []


def test_images_thumbnailed_before_renditions_existed_are_made_again(
    tiff: Image, make_image: Callable[..., Image]
) -> None:
    png = make_image(None, fmt="PNG")
    Image.objects.update(thumbnail_ready=True)
    migration = importlib.import_module("curation.migrations.0010_tiff_renditions")

    migration.renditions_needed(django_apps, None)

    assert not Image.objects.get(pk=tiff.pk).thumbnail_ready
    assert Image.objects.get(pk=png.pk).thumbnail_ready
    thumbnails_make(image_ids=[tiff.pk])
    assert default_storage.exists(rendition_name(tiff.sha256))


def test_the_sweeper_removes_a_rendition_no_image_has(tiff: Image) -> None:
    thumbnails_make(image_ids=[tiff.pk])
    stray = rendition_name("f" * 64)
    default_storage.save(stray, io.BytesIO(image_bytes()))

    result = orphans_sweep(grace_seconds=0)

    assert stray in result.removed
    assert rendition_name(tiff.sha256) not in result.removed
    assert default_storage.exists(rendition_name(tiff.sha256))
