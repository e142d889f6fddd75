"""Images picked in a library grid sent to a labelling queue of their own: the queue holds
exactly them, labellers may make one, and each image leaves it once someone works on it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from accounts.models import User
from curation.models import Image, LabelClass, SavedFilter, SubClass
from curation.services.images import image_trash
from curation.services.taxonomy import class_create
from labelling.queues import queue_images, queue_resolve
from labelling.services import label_image, skip_image, undo_last
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def robin() -> LabelClass:
    return class_create(name="Robin", actor=None)


def _default(label_class: LabelClass) -> SubClass:
    return SubClass.objects.get(label_class=label_class, is_default=True)


def _send(user: User, images: list[Image], name: str = "") -> Client:
    client = Client()
    client.force_login(user)
    response = client.post(
        reverse("labelling:picked-queue"),
        {"image": [f"{i.pk}:{i.version}" for i in images], "name": name, "next": "/inbox/"},
    )
    assert response.status_code == 302 and response["Location"] == "/inbox/"
    return response


def test_a_labeller_sends_picked_images_to_a_queue_that_holds_exactly_them(
    labeller: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    inbox = [make_image() for _ in range(4)]
    labelled = make_image(_default(robin))
    response = _send(labeller, [inbox[2], inbox[0], labelled], name="  Check   these ")
    saved = SavedFilter.objects.get()
    assert (saved.name, saved.created_by) == ("Check these", labeller)
    queue = queue_resolve(f"filter:{saved.pk}")
    assert sorted(queue.images.values_list("pk", flat=True)) == sorted(
        [inbox[0].pk, inbox[2].pk, labelled.pk]
    )
    assert queue.size() == 3
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith("Labelling queue “Check these” holds 3 images.")
    assert f'href="/label/filter:{saved.pk}/"' in message
    # It is listed with the saved filters on the labelling page.
    client = Client()
    client.force_login(labeller)
    assert "Check these" in client.get(reverse("labelling:queues")).content.decode()


def test_an_image_leaves_the_queue_once_labelled_and_comes_back_on_undo(
    labeller: User, robin: LabelClass, make_image: Callable[..., Image]
) -> None:
    images = [make_image() for _ in range(3)]
    _send(labeller, images)
    queue = queue_resolve(f"filter:{SavedFilter.objects.get().pk}")
    other = UserFactory(username="olga")
    label_image(user=other, image_id=images[0].pk, subclass=_default(robin), expected_version=1)
    skip_image(user=other, image_id=images[1].pk)
    assert queue.size() == 2  # labelled: out; skipped: still to do
    assert [i.pk for i in queue_images(queue=queue, user=labeller, limit=10)] == [
        images[1].pk,
        images[2].pk,
    ]
    undo_last(user=other)  # the skip
    undo_last(user=other)  # the label
    assert queue.size() == 3


def test_trashed_images_are_left_out_and_a_queue_of_none_is_refused(
    labeller: User, make_image: Callable[..., Image]
) -> None:
    image = make_image()
    image_trash(image_id=image.pk, actor=None, note="dark")
    response = _send(labeller, [image])
    assert not SavedFilter.objects.exists()
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "None of the picked images is in the library any more."
    ]


def test_a_hand_edited_image_list_is_an_unknown_queue_not_a_server_error(labeller: User) -> None:
    saved = SavedFilter.objects.create(name="odd", params={"images": ["1; drop"]})
    client = Client()
    client.force_login(labeller)
    assert client.get(reverse("labelling:label", args=[f"filter:{saved.pk}"])).status_code == 404
