from __future__ import annotations

import os

import pytest
from django.test import Client
from PIL import Image as PILImage
from rest_framework.test import APIClient

from accounts.models import User
from curation.services.images import image_trash
from inference.embeddings import (
    embeddings_compute,
    embeddings_for_new_images,
    index_path,
    similar_images,
    similarity_index_build,
    similarity_index_load,
)
from inference.models import ModelVersion
from tests.curation.duplicate_photos import photo
from tests.factories import SubClassFactory
from tests.inference.photos import backbone, store_photo, store_pil

pytestmark = pytest.mark.django_db
__all__ = ["backbone"]

OTHERS = ("coffee", "astronaut", "rocket", "camera", "horse")


def _cat_copies() -> list[PILImage.Image]:
    cat = photo("chelsea")
    w, h = cat.size
    return [
        cat.crop((int(w * 0.12), int(h * 0.1), w, h)),  # a crop pHash misses
        cat.resize((w // 2, h // 2)),  # a smaller re-encode
        cat.rotate(6, resample=PILImage.Resampling.BICUBIC),
    ]


def test_crops_and_reencodes_of_a_photo_rank_above_other_photos(backbone: ModelVersion) -> None:
    cat = store_photo("chelsea")
    copies = [store_pil(image) for image in _cat_copies()]
    others = [store_photo(name) for name in OTHERS]
    embeddings_compute()

    found = similar_images(image_id=cat.pk, k=5)
    assert found is not None
    assert {s.image.pk for s in found[:3]} == {c.pk for c in copies}
    assert {s.image.pk for s in found[3:]} <= {o.pk for o in others}
    assert found[2].similarity > 0.85 > 0.5 > found[3].similarity
    assert cat.pk not in {s.image.pk for s in found}


def test_images_embedded_after_the_index_are_found_and_trashed_ones_are_not(
    backbone: ModelVersion,
) -> None:
    cat = store_photo("chelsea")
    others = [store_photo(name) for name in OTHERS]
    embeddings_compute()
    built = similarity_index_load(version=backbone)
    assert built is not None and built[1].count == 1 + len(OTHERS)

    crop, smaller, _ = (store_pil(image) for image in _cat_copies())
    embeddings_for_new_images(image_ids=[crop.pk, smaller.pk])  # not in the index yet
    image_trash(image_id=smaller.pk, actor=None, note="duplicate")
    found = similar_images(image_id=cat.pk, k=3)
    assert found is not None
    assert found[0].image.pk == crop.pk
    assert smaller.pk not in {s.image.pk for s in found}
    assert {s.image.pk for s in found[1:]} <= {o.pk for o in others}


def test_web_processes_reload_the_index_when_the_worker_rebuilds_it(
    backbone: ModelVersion,
) -> None:
    store_photo("chelsea")
    embeddings_compute()
    first = similarity_index_load(version=backbone)
    assert first is not None
    store_photo("coffee")
    embeddings_compute()
    path = index_path(backbone)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    second = similarity_index_load(version=backbone)
    assert second is not None and second[1].count == 2
    assert similarity_index_build(version=backbone).count == 2


def test_the_similar_api_lists_the_nearest_images(backbone: ModelVersion, api: APIClient) -> None:
    cats = SubClassFactory()
    cat = store_photo("chelsea", cats)
    crop = store_pil(_cat_copies()[0])
    for name in OTHERS[:2]:
        store_photo(name)
    embeddings_compute()

    response = api.get(f"/api/v1/images/{cat.pk}/similar/?k=2")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["image"] == cat.pk and body["model_version"] == backbone.number
    assert body["results"][0]["image"]["id"] == crop.pk
    assert len(body["results"]) == 2
    assert body["results"][0]["similarity"] > body["results"][1]["similarity"]

    bad = api.get(f"/api/v1/images/{cat.pk}/similar/?k=0")
    assert bad.status_code == 400 and "k must be" in str(bad.json())

    fresh = store_photo("horse")
    missing = api.get(f"/api/v1/images/{fresh.pk}/similar/")
    assert missing.status_code == 409 and "no embedding yet" in missing.json()["detail"]


def test_the_image_page_shows_more_like_this(
    backbone: ModelVersion, client: Client, labeller: User
) -> None:
    cat = store_photo("chelsea", SubClassFactory())
    crop = store_pil(_cat_copies()[0])
    store_photo("coffee")
    embeddings_compute()
    client.force_login(labeller)
    page = client.get(f"/images/{crop.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "More like this" in html and f'href="/images/{cat.pk}/"' in html
    assert "OOD score" in html

    lone = store_photo("rocket")
    html = client.get(f"/images/{lone.pk}/").content.decode()
    assert "has no embedding yet" in html
