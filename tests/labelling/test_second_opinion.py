from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from accounts.models import Role, User
from curation.models import BadVerdict, Image, LabelEvent, SubClass
from curation.services.images import image_relabel
from curation.services.taxonomy import class_create
from labelling.models import OpinionStatus, SecondOpinion
from tests.factories import UserFactory

QUEUE = "/api/v1/labelling/queue/"
ACT = "/api/v1/labelling/actions/"


@pytest.fixture
def classes(db: None) -> tuple[SubClass, SubClass]:
    robin = class_create(name="Robin", actor=None)
    wren = class_create(name="Wren", actor=None)
    return (
        SubClass.objects.get(label_class=robin, is_default=True),
        SubClass.objects.get(label_class=wren, is_default=True),
    )


@pytest.fixture
def second(db: None) -> tuple[User, APIClient]:
    user = UserFactory(username="sam", role=Role.LABELLER)
    client = APIClient()
    client.force_authenticate(user)
    return user, client


def _labelled(make_image: Callable[..., Image], subclass: SubClass, by: User) -> Image:
    image = make_image()
    return image_relabel(
        image_id=image.pk,
        subclass=subclass,
        actor=by,
        reason="labelling",
        expected_version=image.version,
    )


def test_the_second_opinion_queue_hides_the_first_label_and_skips_your_own_work(
    labeller: User,
    second: tuple[User, APIClient],
    classes: tuple[SubClass, SubClass],
    make_image: Callable[..., Image],
) -> None:
    robin, _ = classes
    theirs = _labelled(make_image, robin, labeller)
    mine = _labelled(make_image, robin, second[0])
    response = second[1].get(QUEUE, {"queue": "second:all", "count": 5})
    assert response.status_code == 200
    rows = response.json()["next"]
    assert [row["id"] for row in rows] == [theirs.pk]
    assert rows[0]["label"] is None and rows[0]["subclass_id"] is None
    assert mine.pk not in [row["id"] for row in rows]


def test_a_second_opinion_never_changes_the_image(
    labeller: User,
    second: tuple[User, APIClient],
    classes: tuple[SubClass, SubClass],
    make_image: Callable[..., Image],
) -> None:
    robin, wren = classes
    image = _labelled(make_image, robin, labeller)
    events_before = LabelEvent.objects.filter(image=image).count()
    response = second[1].post(
        ACT,
        {
            "queue": "second:all",
            "image": image.pk,
            "version": image.version,
            "action": "label",
            "subclass": wren.pk,
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    image.refresh_from_db()
    assert image.subclass_id == robin.pk
    assert LabelEvent.objects.filter(image=image).count() == events_before
    opinion = SecondOpinion.objects.get(image=image)
    assert (opinion.agrees, opinion.status) == (False, OpinionStatus.OPEN)


def test_agreement_is_counted_per_class_and_per_labeller_pair(
    api: APIClient,
    reviewer_api: APIClient,
    labeller: User,
    second: tuple[User, APIClient],
    classes: tuple[SubClass, SubClass],
    make_image: Callable[..., Image],
) -> None:
    robin, wren = classes
    images = [_labelled(make_image, robin, labeller) for _ in range(4)]
    for image, answer in zip(images, [robin, robin, robin, wren], strict=True):
        second[1].post(
            ACT,
            {
                "queue": "second:all",
                "image": image.pk,
                "version": 2,
                "action": "label",
                "subclass": answer.pk,
            },
            format="json",
        )
    assert api.get("/api/v1/labelling/agreement/").status_code == 403  # reviewers only
    body = reviewer_api.get("/api/v1/labelling/agreement/").json()
    assert body["open"] == 1
    assert body["per_class"] == [
        {
            "class_id": robin.label_class_id,
            "class_name": "Robin",
            "opinions": 4,
            "agreed": 3,
            "agreement": 0.75,
        }
    ]
    assert body["per_pair"][0] == {
        "first": "lena",
        "second": "sam",
        "opinions": 4,
        "agreed": 3,
        "agreement": 0.75,
    }


def test_a_reviewer_settles_a_disagreement_in_favour_of_the_second_label(
    labeller: User,
    reviewer_api: APIClient,
    second: tuple[User, APIClient],
    classes: tuple[SubClass, SubClass],
    make_image: Callable[..., Image],
) -> None:
    robin, wren = classes
    image = _labelled(make_image, robin, labeller)
    second[1].post(
        ACT,
        {
            "queue": "second:all",
            "image": image.pk,
            "version": image.version,
            "action": "label",
            "subclass": wren.pk,
        },
        format="json",
    )
    listed = reviewer_api.get("/api/v1/labelling/second-opinions/?status=open").json()
    assert [row["image"] for row in listed] == [image.pk]
    settle = f"/api/v1/labelling/second-opinions/{listed[0]['id']}/settle/"
    response = reviewer_api.post(settle, {"choice": "second"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "settled"
    image.refresh_from_db()
    assert image.subclass_id == wren.pk
    assert "second opinion" in LabelEvent.objects.filter(image=image).latest("id").note
    assert reviewer_api.post(settle, {"choice": "first"}, format="json").status_code == 409


def test_a_bad_verdict_as_second_opinion_settled_second_marks_the_image_bad(
    labeller: User,
    reviewer_api: APIClient,
    second: tuple[User, APIClient],
    classes: tuple[SubClass, SubClass],
    make_image: Callable[..., Image],
) -> None:
    robin, _ = classes
    image = _labelled(make_image, robin, labeller)
    second[1].post(
        ACT,
        {
            "queue": "second:all",
            "image": image.pk,
            "version": image.version,
            "action": "bad",
            "bad_reason": "blurry",
        },
        format="json",
    )
    opinion = SecondOpinion.objects.get(image=image)
    reviewer_api.post(
        f"/api/v1/labelling/second-opinions/{opinion.pk}/settle/",
        {"choice": "second"},
        format="json",
    )
    assert BadVerdict.objects.get(image=image).reason == "blurry"


def test_labellers_cannot_settle_disagreements(api: APIClient) -> None:
    assert api.get("/api/v1/labelling/second-opinions/").status_code == 403


def test_a_settled_opinion_records_which_label_won(
    labeller: User,
    reviewer_api: APIClient,
    second: tuple[User, APIClient],
    classes: tuple[SubClass, SubClass],
    make_image: Callable[..., Image],
) -> None:
    robin, wren = classes
    image = _labelled(make_image, robin, labeller)
    second[1].post(
        ACT,
        {
            "queue": "second:all",
            "image": image.pk,
            "version": image.version,
            "action": "label",
            "subclass": wren.pk,
        },
        format="json",
    )
    opinion = SecondOpinion.objects.get(image=image)
    reviewer_api.post(
        f"/api/v1/labelling/second-opinions/{opinion.pk}/settle/",
        {"choice": "first"},
        format="json",
    )
    opinion.refresh_from_db()
    assert (opinion.status, opinion.settled_choice) == (OpinionStatus.SETTLED, "first")
    image.refresh_from_db()
    assert image.subclass_id == robin.pk


UNDO = "/api/v1/labelling/undo/"


def _blind(row: dict[str, object]) -> bool:
    """Nothing in an image's answer tells its first label (nor where to read it)."""
    return (
        row["label"] is None
        and row["subclass_id"] is None
        and row["class_id"] is None
        and (row["page_url"] is None and row["bad_reason"] is None)
    )


def test_undo_of_a_second_opinion_keeps_the_first_label_hidden(
    labeller: User,
    second: tuple[User, APIClient],
    classes: tuple[SubClass, SubClass],
    make_image: Callable[..., Image],
) -> None:
    robin, wren = classes
    image = _labelled(make_image, robin, labeller)
    second[1].post(
        ACT,
        {
            "queue": "second:all",
            "image": image.pk,
            "version": 2,
            "action": "label",
            "subclass": wren.pk,
        },
        format="json",
    )
    # Without the queue too: the undone action was an opinion, so the answer is blind.
    response = second[1].post(UNDO, {}, format="json")
    assert response.status_code == 200, response.content
    row = response.json()["image"]
    assert row["id"] == image.pk and _blind(row)
    assert "Robin" not in response.content.decode()
    assert not SecondOpinion.objects.filter(image=image).exists()


def test_undo_of_a_skip_in_the_blind_queue_keeps_the_first_label_hidden(
    labeller: User,
    second: tuple[User, APIClient],
    classes: tuple[SubClass, SubClass],
    make_image: Callable[..., Image],
) -> None:
    robin, _ = classes
    image = _labelled(make_image, robin, labeller)
    for body in ({"queue": "second:all"}, {}):
        second[1].post(
            ACT, {"queue": "second:all", "image": image.pk, "action": "skip"}, format="json"
        )
        response = second[1].post(UNDO, body, format="json")
        assert response.status_code == 200, response.content
        assert _blind(response.json()["image"]), body
        assert "Robin" not in response.content.decode()


def test_the_blind_queue_counts_down_as_the_sme_answers_and_up_on_undo(
    labeller: User,
    second: tuple[User, APIClient],
    classes: tuple[SubClass, SubClass],
    make_image: Callable[..., Image],
) -> None:
    robin, wren = classes
    theirs = [_labelled(make_image, robin, labeller) for _ in range(3)]
    _labelled(make_image, wren, second[0])  # sam's own label: never offered to sam
    response = second[1].get(QUEUE, {"queue": "second:all", "count": 1})
    assert response.json()["remaining"] == 3
    first = response.json()["next"][0]["id"]
    answered = second[1].post(
        ACT,
        {
            "queue": "second:all",
            "image": first,
            "version": 2,
            "action": "label",
            "subclass": robin.pk,
            "count": 0,
        },
        format="json",
    )
    assert answered.json()["remaining"] == 2
    undone = second[1].post(UNDO, {"queue": "second:all"}, format="json")
    assert undone.json()["remaining"] == 3
    assert first in {image.pk for image in theirs}


def test_there_is_no_per_class_second_opinion_queue(
    second: tuple[User, APIClient], classes: tuple[SubClass, SubClass]
) -> None:
    robin, _ = classes
    response = second[1].get(QUEUE, {"queue": f"second:{robin.label_class_id}"})
    assert response.status_code == 404
    assert "would give its first label away" in response.json()["detail"]
