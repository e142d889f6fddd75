"""Stored files go back to browsers only as the image they are: the stored image type (never
text/html, even if a row says so), ``nosniff``, a sandboxing CSP and a Content-Disposition made
of the content hash alone, on the API routes and the page routes alike."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Image
from curation.services.processing import thumbnails_make
from tests.factories import image_bytes

pytestmark = pytest.mark.django_db

IMAGES = "/api/v1/images/"

FORMATS = [
    ("JPEG", "jpg", "image/jpeg"),
    ("PNG", "png", "image/png"),
    ("WEBP", "webp", "image/webp"),
    ("TIFF", "tiff", "image/tiff"),
    ("BMP", "bmp", "image/bmp"),
]


@pytest.fixture
def page(labeller: User) -> Client:
    client = Client()
    client.force_login(labeller)
    return client


@pytest.fixture
def upload(api: APIClient) -> Callable[..., Image]:
    def upload(data: bytes, name: str = "photo.jpg") -> Image:
        file = SimpleUploadedFile(name, data, content_type="text/html")
        response = api.post(IMAGES, {"file": file}, format="multipart")
        assert response.status_code == 201, response.json()
        return Image.objects.get(pk=response.json()["files"][0]["image"]["id"])

    return upload


def served(api: APIClient, page: Client, image: Image) -> Iterator[tuple[str, HttpResponse]]:
    """Every route that sends the image's bytes (or its thumbnail's) to a browser."""
    for url in (f"{IMAGES}{image.pk}/file/", f"{IMAGES}{image.pk}/thumbnail/"):
        yield url, api.get(url)
    for url in (f"/images/{image.pk}/file", f"/images/{image.pk}/thumbnail"):
        yield url, page.get(url)


def assert_inert(response: HttpResponse, content_type: str, filename: str) -> None:
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response["Content-Disposition"] == f'inline; filename="{filename}"'
    assert response["Cache-Control"].startswith("private")


@pytest.mark.parametrize(("fmt", "extension", "content_type"), FORMATS)
def test_each_route_serves_the_stored_type_inert(
    api: APIClient,
    page: Client,
    upload: Callable[..., Image],
    fmt: str,
    extension: str,
    content_type: str,
) -> None:
    # Uploaded as text/html under a .jpg name: neither claim matters.
    image = upload(image_bytes(fmt=fmt, seed=601))
    assert (image.extension, image.content_type) == (extension, content_type)
    thumbnails_make(image_ids=[image.pk])

    for url, response in served(api, page, image):
        if "thumbnail" in url:
            assert_inert(response, "image/jpeg", f"{image.sha256}.jpg")
        else:
            assert_inert(response, content_type, f"{image.sha256}.{extension}")


def test_a_hostile_original_name_never_reaches_a_header(
    api: APIClient, page: Client, upload: Callable[..., Image]
) -> None:
    image = upload(image_bytes(seed=602), name="evil\"; filename*=UTF-8''x.html; a=.jpg")
    thumbnails_make(image_ids=[image.pk])

    for _, response in served(api, page, image):
        assert response["Content-Disposition"] == f'inline; filename="{image.sha256}.jpg"'


@pytest.mark.parametrize(
    ("extension", "content_type"),
    [("html", "text/html"), ("svg", "image/svg+xml"), ("jpg", "text/html; charset=utf-8")],
)
def test_a_row_claiming_a_type_outside_the_allow_list_is_never_rendered_by_a_browser(
    api: APIClient,
    page: Client,
    upload: Callable[..., Image],
    media_root: Path,
    extension: str,
    content_type: str,
) -> None:
    # Rows only ever get an allow-listed type from the decoder; this one was altered behind
    # Loupe's back (a restored backup, a hand-edited database), with a file to match.
    image = upload(image_bytes(seed=603))
    tampered = media_root / image.storage_name.replace(".jpg", f".{extension}")
    tampered.write_bytes(b"<html><script>alert(document.cookie)</script></html>")
    Image.objects.filter(pk=image.pk).update(extension=extension, content_type=content_type)
    image.refresh_from_db()

    for url in (f"{IMAGES}{image.pk}/file/", f"/images/{image.pk}/file"):
        response = (api if url.startswith("/api/") else page).get(url)
        assert response.status_code == 200
        assert response["Content-Type"] == "application/octet-stream"
        assert response["Content-Disposition"] == f'attachment; filename="{image.sha256}.bin"'
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response["Content-Security-Policy"]


def test_a_missing_file_is_a_json_404_on_the_api(
    api: APIClient, upload: Callable[..., Image], media_root: Path
) -> None:
    image = upload(image_bytes(seed=604))
    stored = media_root / image.storage_name
    stored.chmod(0o644)
    stored.unlink()

    response = api.get(f"{IMAGES}{image.pk}/file/")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"] == "The stored file is missing."
