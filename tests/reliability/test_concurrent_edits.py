"""Two people act on one image having seen the same version: one relabels it, the other
trashes it. Exactly one wins; the other gets 409 naming who changed it; no update is lost."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

import pytest
from django.db import connection
from rest_framework.response import Response
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Image, ImageStatus, LabelEvent, SubClass
from tests.factories import LabelClassFactory

ROUNDS = 6


def relabel(client: APIClient, image: Image, subclass: SubClass, version: int) -> Response:
    return client.patch(
        f"/api/v1/images/{image.pk}/",
        {"subclass": subclass.pk, "version": version},
        format="json",
    )


def trash(client: APIClient, image: Image, version: int) -> Response:
    return client.delete(
        f"/api/v1/images/{image.pk}/", {"reason": "blurry", "version": version}, format="json"
    )


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def race(calls: dict[str, Callable[[], Response]]) -> dict[str, int]:
    """Run the calls at the same moment, one thread (and database connection) each; their
    status codes by name."""
    statuses: dict[str, int] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(calls))

    def act(name: str, call: Callable[[], Response]) -> None:
        try:
            start.wait(timeout=10)
            statuses[name] = call().status_code
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=act, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return statuses


def assert_one_winner(image: Image, seen: int, statuses: dict[str, int], target: SubClass) -> None:
    """One 200 and one 409; the image shows the winner's change and its one label event."""
    assert sorted(statuses.values()) == [200, 409], statuses
    image.refresh_from_db()
    assert image.version == seen + 1
    events = LabelEvent.objects.filter(image=image).order_by("id")
    assert events.count() == 2  # the import, then the winner's change
    last = events.last()
    assert last is not None
    if statuses["relabel"] == 200:
        assert (image.subclass_id, image.status) == (target.pk, ImageStatus.ACTIVE)
        assert last.to_subclass_id == target.pk and last.to_status == ImageStatus.ACTIVE
    else:
        assert image.status == ImageStatus.TRASHED and image.subclass_id != target.pk
        assert last.to_status == ImageStatus.TRASHED


def assert_counts_match_the_images() -> None:
    for subclass in SubClass.objects.all():
        active = Image.objects.filter(subclass=subclass, status=ImageStatus.ACTIVE).count()
        assert subclass.image_count == active, subclass


@pytest.mark.django_db
@pytest.mark.parametrize("first", ["relabel", "trash"])
def test_the_second_of_two_changes_from_the_same_version_gets_409(
    first: str, labeller: User, reviewer: User, make_image: Callable[..., Image]
) -> None:
    robin = LabelClassFactory(name="Robin").subclasses.get()
    wren = LabelClassFactory(name="Wren").subclasses.get()
    image = make_image(robin)
    seen = image.version
    actions = {
        "relabel": lambda: relabel(client_for(labeller), image, wren, seen),
        "trash": lambda: trash(client_for(reviewer), image, seen),
    }
    second = "trash" if first == "relabel" else "relabel"

    statuses = {first: actions[first]().status_code}
    loser = actions[second]()
    statuses[second] = loser.status_code

    assert statuses[first] == 200
    assert loser.status_code == 409
    body = loser.json()
    who = labeller.username if first == "relabel" else reviewer.username
    assert f"changed by {who}" in body["detail"]
    assert body["current_version"] == seen + 1
    assert_one_winner(image, seen, statuses, wren)
    assert_counts_match_the_images()


@pytest.mark.django_db(transaction=True)
def test_simultaneous_relabel_and_trash_from_threads_never_lose_an_update(
    labeller: User, reviewer: User, make_image: Callable[..., Image]
) -> None:
    """Real concurrent requests, each on its own database connection (on PostgreSQL the row
    lock in the services decides; on SQLite the write lock)."""
    robin = LabelClassFactory(name="Robin").subclasses.get()
    wren = LabelClassFactory(name="Wren").subclasses.get()
    images = [make_image(robin) for _ in range(ROUNDS)]

    for image in images:
        seen = image.version
        statuses = race(
            {
                "relabel": partial(relabel, client_for(labeller), image, wren, seen),
                "trash": partial(trash, client_for(reviewer), image, seen),
            }
        )
        assert_one_winner(image, seen, statuses, wren)

    assert_counts_match_the_images()
