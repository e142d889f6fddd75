"""Trashed images are deleted as far as a pipeline listing the library is concerned:
``GET /api/v1/images/`` lists active images unless ``status=trashed`` or ``status=all`` asks
for more, whatever the other filters."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from curation.models import Image, LabelClass, SubClass
from tests.factories import LabelClassFactory

pytestmark = pytest.mark.django_db

IMAGES = "/api/v1/images/"


def default_of(label_class: LabelClass) -> SubClass:
    return SubClass.objects.get(label_class=label_class, is_default=True)


@pytest.fixture
def library(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> dict[str, Image | LabelClass]:
    robin = LabelClassFactory(name="Robin")
    kept = make_image(default_of(robin))
    binned = make_image(default_of(robin))
    inbox_binned = make_image()
    inbox_kept = make_image()
    for image in (binned, inbox_binned):
        assert reviewer_api.delete(f"{IMAGES}{image.pk}/?reason=blurry").status_code == 200
    return {
        "robin": robin,
        "kept": kept,
        "binned": binned,
        "inbox_binned": inbox_binned,
        "inbox_kept": inbox_kept,
    }


def listed(api: APIClient, query: str) -> list[int]:
    response = api.get(f"{IMAGES}?{query}")
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_a_pipeline_listing_a_class_gets_no_trashed_images(
    api: APIClient, library: dict[str, Image | LabelClass]
) -> None:
    robin = library["robin"]

    rows = api.get(f"{IMAGES}?label_class={robin.pk}").json()["results"]

    assert [row["id"] for row in rows] == [library["kept"].pk]
    assert {row["status"] for row in rows} == {"active"}


@pytest.mark.parametrize(
    "query", ["", "labelled=false", "import_batch=", "status=", "source=real", "bad=false"]
)
def test_every_list_without_a_status_is_of_active_images(
    api: APIClient, library: dict[str, Image | LabelClass], query: str
) -> None:
    trashed = {library["binned"].pk, library["inbox_binned"].pk}

    assert not trashed & set(listed(api, query))


def test_the_inbox_list_is_of_active_images(
    api: APIClient, library: dict[str, Image | LabelClass]
) -> None:
    assert listed(api, "labelled=false") == [library["inbox_kept"].pk]


def test_a_sha256_lookup_finds_a_trashed_image_only_when_asked(
    api: APIClient, library: dict[str, Image | LabelClass]
) -> None:
    binned = library["binned"]
    assert isinstance(binned, Image)

    assert listed(api, f"sha256={binned.sha256}") == []
    assert listed(api, f"sha256={binned.sha256}&status=all") == [binned.pk]


def test_status_trashed_lists_the_trash_and_status_all_lists_both(
    api: APIClient, library: dict[str, Image | LabelClass]
) -> None:
    robin = library["robin"]

    assert listed(api, f"label_class={robin.pk}&status=trashed") == [library["binned"].pk]
    assert listed(api, f"label_class={robin.pk}&status=all") == [
        library["binned"].pk,
        library["kept"].pk,
    ]
    assert listed(api, "status=active") == [library["inbox_kept"].pk, library["kept"].pk]


def test_an_unknown_status_is_refused_naming_the_allowed_ones(api: APIClient) -> None:
    response = api.get(f"{IMAGES}?status=deleted")

    assert response.status_code == 400
    assert "active, trashed, all" in response.json()["detail"]


def test_a_trashed_image_is_still_found_by_its_own_url(
    api: APIClient, library: dict[str, Image | LabelClass]
) -> None:
    binned = library["binned"]

    response = api.get(f"{IMAGES}{binned.pk}/")

    assert response.status_code == 200
    assert response.json()["status"] == "trashed"
