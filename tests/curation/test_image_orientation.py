"""An image's width and height are how it displays: a camera's portrait photo, stored 320x200
with EXIF orientation 6 ("rotate 90° to show"), is 200x320 in the API, on its page and in its
quality metrics, as its thumbnail and every model input are."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image as PILImage
from rest_framework.test import APIClient

from accounts.models import User
from curation.imaging import decode_image
from curation.models import Image
from tests.factories import jpeg_with_orientation

pytestmark = pytest.mark.django_db

IMAGES = "/api/v1/images/"


def upload(api: APIClient, data: bytes, name: str) -> dict[str, object]:
    response = api.post(
        IMAGES, {"files": [SimpleUploadedFile(name, data, "image/jpeg")]}, format="multipart"
    )
    assert response.status_code == 201, response.content
    image_id = response.json()["files"][0]["image"]["id"]
    listed = api.get(f"{IMAGES}{image_id}/")
    assert listed.status_code == 200
    body: dict[str, object] = listed.json()
    return body


@pytest.mark.parametrize(
    ("orientation", "displayed"),
    [(1, (320, 200)), (3, (320, 200)), (5, (200, 320)), (6, (200, 320)), (8, (200, 320))],
)
def test_the_api_gives_the_size_the_image_displays_at(
    api: APIClient, orientation: int, displayed: tuple[int, int]
) -> None:
    data = jpeg_with_orientation(orientation, size=(320, 200), seed=orientation)

    body = upload(api, data, f"o{orientation}.jpg")

    assert (body["width"], body["height"]) == displayed


def test_the_size_matches_the_thumbnail_and_the_image_page(api: APIClient, labeller: User) -> None:
    from curation.services.processing import thumbnails_make

    body = upload(api, jpeg_with_orientation(6, size=(320, 200)), "portrait.jpg")
    image = Image.objects.get(pk=body["id"])
    thumbnails_make(image_ids=[image.pk])
    image.refresh_from_db()
    with default_storage.open(image.thumbnail_name, "rb") as handle:
        thumbnail = PILImage.open(io.BytesIO(handle.read()))
    assert thumbnail.width < thumbnail.height  # portrait, like the size the API gives
    browser = Client()
    browser.force_login(labeller)

    page = browser.get(f"/images/{image.pk}/").content.decode()

    assert "200 × 320 px" in page


def test_the_quality_metrics_see_a_portrait_image(api: APIClient) -> None:
    from curation.services.hashing import features_make

    body = upload(api, jpeg_with_orientation(6, size=(320, 200)), "portrait.jpg")
    features_make(image_ids=[int(str(body["id"]))])

    image = Image.objects.select_related("features").get(pk=body["id"])
    assert image.features.aspect_ratio == pytest.approx(200 / 320)


def test_decoding_reports_the_displayed_size() -> None:
    data = jpeg_with_orientation(6, size=(320, 200))

    decoded = decode_image(io.BytesIO(data))

    assert (decoded.width, decoded.height) == (200, 320)
