from __future__ import annotations

from collections.abc import Callable

from rest_framework.test import APIClient

from curation.models import BenchmarkMember, Image, SubClass
from curation.services.taxonomy import class_create

URL = "/api/v1/benchmark-sets/"


def _robin() -> SubClass:
    return SubClass.objects.get(label_class=class_create(name="Robin", actor=None), is_default=True)


def test_a_reviewer_creates_a_benchmark_set_and_a_new_version_under_the_same_name(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin = SubClass.objects.get(
        label_class=class_create(name="Robin", actor=None), is_default=True
    )
    first, second = make_image(robin), make_image(robin)
    response = reviewer_api.post(
        URL, {"name": "hard robins", "kind": "difficult", "image_ids": [first.pk]}, format="json"
    )
    assert response.status_code == 201, response.content
    assert (response.json()["version"], response.json()["member_count"]) == (1, 1)
    again = reviewer_api.post(
        URL,
        {"name": "hard robins", "kind": "difficult", "image_ids": [first.pk, second.pk]},
        format="json",
    ).json()
    assert (again["version"], again["member_count"]) == (2, 2)
    members = reviewer_api.get(f"{URL}{again['id']}/members/").json()["results"]
    assert [(m["image"], m["class_name"]) for m in members] == [
        (first.pk, "Robin"),
        (second.pk, "Robin"),
    ]


def test_out_of_scope_members_carry_no_class(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    robin = SubClass.objects.get(
        label_class=class_create(name="Robin", actor=None), is_default=True
    )
    image = make_image(robin)
    reviewer_api.post(
        URL, {"name": "pranks", "kind": "out_of_scope", "image_ids": [image.pk]}, format="json"
    )
    assert BenchmarkMember.objects.get(image=image).label_class_id is None


def test_unknown_images_are_named_and_labellers_cannot_create_sets(
    api: APIClient, reviewer_api: APIClient
) -> None:
    refused = reviewer_api.post(
        URL, {"name": "x", "kind": "custom", "image_ids": [987654]}, format="json"
    )
    assert refused.status_code == 400
    assert "987654" in refused.json()["detail"]
    assert (
        api.post(URL, {"name": "x", "kind": "custom", "image_ids": [1]}, format="json").status_code
        == 403
    )
    assert api.get(URL).status_code == 200
