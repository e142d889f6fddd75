"""The class and sub-class API: the tree is the merge configuration, so changes to it are
recorded, images follow their sub-class, and only reviewers change it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import (
    Image,
    LabelClass,
    SubClass,
    TaxonomyAction,
    TaxonomyEvent,
)
from tests.factories import LabelClassFactory, SubClassFactory

pytestmark = pytest.mark.django_db

CLASSES = "/api/v1/classes/"
SUBCLASSES = "/api/v1/subclasses/"


def default_of(label_class: LabelClass) -> SubClass:
    return SubClass.objects.get(label_class=label_class, is_default=True)


def test_creating_a_class_makes_its_default_sub_class(
    reviewer_api: APIClient, reviewer: User
) -> None:
    response = reviewer_api.post(CLASSES, {"name": "  Robin  "}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "Robin"
    assert body["kind"] == "normal"
    assert [(s["name"], s["is_default"], s["image_count"]) for s in body["subclasses"]] == [
        ("default", True, 0)
    ]
    event = TaxonomyEvent.objects.get()
    assert (event.action, event.actor, event.to_class_id) == (
        TaxonomyAction.CREATE_CLASS,
        reviewer,
        body["id"],
    )


def test_creating_a_holding_class(reviewer_api: APIClient) -> None:
    response = reviewer_api.post(CLASSES, {"name": "Unknown bird", "kind": "holding"})

    assert response.status_code == 201
    assert LabelClass.objects.get(name="Unknown bird").kind == "holding"


def test_a_class_name_is_unique_whatever_its_case(reviewer_api: APIClient) -> None:
    LabelClassFactory(name="Robin")

    response = reviewer_api.post(CLASSES, {"name": "ROBIN"}, format="json")

    assert response.status_code == 400
    assert "exists already" in response.json()["detail"]
    assert LabelClass.objects.count() == 1


@pytest.mark.parametrize("name", ["", "a/b", "..", "back\\slash"])
def test_a_class_name_cannot_be_empty_or_look_like_a_path(
    reviewer_api: APIClient, name: str
) -> None:
    response = reviewer_api.post(CLASSES, {"name": name}, format="json")

    assert response.status_code == 400
    assert response.json()["detail"]
    assert not LabelClass.objects.exists()


def test_renaming_a_class_is_recorded(reviewer_api: APIClient) -> None:
    robin = LabelClassFactory(name="Robin")

    response = reviewer_api.patch(f"{CLASSES}{robin.pk}/", {"name": "European robin"})

    assert response.status_code == 200
    assert response.json()["name"] == "European robin"
    event = TaxonomyEvent.objects.get(action=TaxonomyAction.RENAME_CLASS)
    assert event.detail == {"from": "Robin", "to": "European robin"}


def test_moving_a_sub_class_takes_its_images_and_is_recorded(
    reviewer_api: APIClient, reviewer: User, make_image: Callable[..., Image]
) -> None:
    robin, thrush = LabelClassFactory(name="Robin"), LabelClassFactory(name="Thrush")
    juvenile = SubClassFactory(label_class=robin, name="juvenile")
    images = [make_image(juvenile), make_image(juvenile)]
    stays = make_image(default_of(robin))

    response = reviewer_api.patch(
        f"{SUBCLASSES}{juvenile.pk}/", {"label_class": thrush.pk}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["class_name"], response.json()["image_count"]) == ("Thrush", 2)
    for image in images:
        body = reviewer_api.get(f"/api/v1/images/{image.pk}/").json()
        assert (body["class_name"], body["subclass_name"]) == ("Thrush", "juvenile")
    assert reviewer_api.get(f"/api/v1/images/{stays.pk}/").json()["class_name"] == "Robin"
    event = TaxonomyEvent.objects.get(action=TaxonomyAction.MOVE_SUBCLASS)
    assert (event.actor, event.subclass, event.from_class, event.to_class) == (
        reviewer,
        juvenile,
        robin,
        thrush,
    )
    counts = {c["name"]: c["image_count"] for c in reviewer_api.get(CLASSES).json()}
    assert counts == {"Robin": 1, "Thrush": 2}


def test_merging_a_class_moves_its_default_and_leaves_it_a_fresh_one(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    blackbird, thrush = LabelClassFactory(name="Blackbird"), LabelClassFactory(name="Thrush")
    moved = default_of(blackbird)
    image = make_image(moved)

    response = reviewer_api.patch(f"{SUBCLASSES}{moved.pk}/", {"label_class": thrush.pk})

    assert response.status_code == 200
    # Thrush already has a "default": the newcomer is named after the class it left.
    assert (response.json()["name"], response.json()["is_default"]) == ("Blackbird", False)
    assert default_of(thrush).pk != moved.pk
    fresh = default_of(blackbird)
    assert (fresh.pk != moved.pk, fresh.image_count) == (True, 0)
    image.refresh_from_db()
    assert image.subclass.label_class == thrush


def test_moving_a_sub_class_into_a_clashing_name_is_refused(reviewer_api: APIClient) -> None:
    robin, thrush = LabelClassFactory(name="Robin"), LabelClassFactory(name="Thrush")
    SubClassFactory(label_class=thrush, name="juvenile")
    SubClassFactory(label_class=thrush, name="Robin juvenile")
    juvenile = SubClassFactory(label_class=robin, name="juvenile")

    response = reviewer_api.patch(f"{SUBCLASSES}{juvenile.pk}/", {"label_class": thrush.pk})

    assert response.status_code == 400
    assert "rename one first" in response.json()["detail"]
    juvenile.refresh_from_db()
    assert juvenile.label_class == robin
    assert not TaxonomyEvent.objects.filter(action=TaxonomyAction.MOVE_SUBCLASS).exists()


def test_deleting_a_class_with_images_is_refused_with_a_clear_message(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin = LabelClassFactory(name="Robin")
    make_image(default_of(robin))

    response = reviewer_api.delete(f"{CLASSES}{robin.pk}/")

    assert response.status_code == 400
    assert "still has images" in response.json()["detail"]
    assert "merge" in response.json()["detail"]
    assert LabelClass.objects.filter(pk=robin.pk).exists()


def test_deleting_a_class_whose_only_image_is_trashed_is_refused(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin = LabelClassFactory(name="Robin")
    image = make_image(default_of(robin))
    reviewer_api.delete(f"/api/v1/images/{image.pk}/?reason=blurry")

    response = reviewer_api.delete(f"{CLASSES}{robin.pk}/")

    assert response.status_code == 400
    assert "still has images" in response.json()["detail"]


def test_deleting_an_empty_class_removes_it_and_its_sub_classes(reviewer_api: APIClient) -> None:
    robin = LabelClassFactory(name="Robin")
    SubClassFactory(label_class=robin, name="juvenile")

    response = reviewer_api.delete(f"{CLASSES}{robin.pk}/")

    assert response.status_code == 204
    assert not LabelClass.objects.exists()
    assert not SubClass.objects.exists()
    assert TaxonomyEvent.objects.get().detail == {"name": "Robin"}


def test_creating_a_sub_class_and_refusing_a_duplicate_name(reviewer_api: APIClient) -> None:
    robin = LabelClassFactory(name="Robin")

    created = reviewer_api.post(
        SUBCLASSES, {"label_class": robin.pk, "name": "juvenile", "source": "staged"}
    )
    again = reviewer_api.post(SUBCLASSES, {"label_class": robin.pk, "name": "Juvenile"})

    assert created.status_code == 201
    assert (created.json()["source"], created.json()["is_default"]) == ("staged", False)
    assert again.status_code == 400
    assert "already has a sub-class named" in again.json()["detail"]


def test_the_default_sub_class_cannot_be_deleted(reviewer_api: APIClient) -> None:
    robin = LabelClassFactory(name="Robin")

    response = reviewer_api.delete(f"{SUBCLASSES}{default_of(robin).pk}/")

    assert response.status_code == 400
    assert "default sub-class cannot be deleted" in response.json()["detail"]


def test_a_sub_class_with_images_cannot_be_deleted(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    juvenile = SubClassFactory(name="juvenile")
    make_image(juvenile)

    response = reviewer_api.delete(f"{SUBCLASSES}{juvenile.pk}/")

    assert response.status_code == 400
    assert "still has images" in response.json()["detail"]


# --- Roles ------------------------------------------------------------------------------------


def test_a_labeller_can_read_but_not_change_the_tree(api: APIClient) -> None:
    robin, thrush = LabelClassFactory(name="Robin"), LabelClassFactory(name="Thrush")
    juvenile = SubClassFactory(label_class=robin, name="juvenile")

    assert api.get(CLASSES).status_code == 200
    assert api.get(SUBCLASSES).status_code == 200
    refused = [
        api.post(CLASSES, {"name": "Wren"}),
        api.patch(f"{CLASSES}{robin.pk}/", {"name": "Other"}),
        api.delete(f"{CLASSES}{thrush.pk}/"),
        api.post(SUBCLASSES, {"label_class": robin.pk, "name": "adult"}),
        api.patch(f"{SUBCLASSES}{juvenile.pk}/", {"label_class": thrush.pk}),
        api.delete(f"{SUBCLASSES}{juvenile.pk}/"),
    ]

    assert [r.status_code for r in refused] == [403] * 6
    assert "reviewer" in refused[0].json()["detail"]
    juvenile.refresh_from_db()
    assert juvenile.label_class == robin
    assert LabelClass.objects.count() == 2
    assert not TaxonomyEvent.objects.exists()


def test_an_admin_can_change_the_tree(admin_user: User) -> None:
    client = APIClient()
    client.force_authenticate(admin_user)

    assert client.post(CLASSES, {"name": "Wren"}).status_code == 201


def test_anonymous_requests_to_the_tree_get_401(anon_api: APIClient) -> None:
    robin = LabelClassFactory(name="Robin")

    assert anon_api.get(CLASSES).status_code == 401
    assert anon_api.post(CLASSES, {"name": "Wren"}).status_code == 401
    assert anon_api.delete(f"{CLASSES}{robin.pk}/").status_code == 401
    assert anon_api.get(SUBCLASSES).status_code == 401


# --- Query counts -----------------------------------------------------------------------------


def test_the_class_list_runs_the_same_queries_for_5_or_40_classes(
    api: APIClient, make_image: Callable[..., Image], django_assert_max_num_queries: Any
) -> None:
    def add(count: int) -> None:
        for _ in range(count):
            label_class = LabelClassFactory()
            SubClassFactory(label_class=label_class)
            make_image(default_of(label_class))

    add(5)
    with CaptureQueriesContext(connection) as small:
        assert len(api.get(CLASSES).json()) == 5
    add(35)

    with django_assert_max_num_queries(len(small.captured_queries)):
        body = api.get(CLASSES).json()
    assert len(body) == 40
    assert all(c["image_count"] == 1 and len(c["subclasses"]) == 2 for c in body)
    assert len(small.captured_queries) <= 3


def test_the_sub_class_list_runs_the_same_queries_for_5_or_40(
    api: APIClient, django_assert_max_num_queries: Any
) -> None:
    robin = LabelClassFactory(name="Robin")
    for n in range(4):
        SubClassFactory(label_class=robin, name=f"v{n}")
    with CaptureQueriesContext(connection) as small:
        assert len(api.get(SUBCLASSES).json()) == 5
    for _ in range(35):
        SubClassFactory()

    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(api.get(SUBCLASSES).json()) == 5 + 35 * 2
