"""Double-check answers go through the library's image services with the version the answerer
saw: a relabel made meanwhile (on the labelling page, say) is never overwritten, and the answer
says who made it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Image, ImageStatus, LabelEvent, LabelReason, SubClass
from curation.services.images import VersionConflict, image_trash
from curation.services.taxonomy import class_create, subclass_create
from inference.evaluation import (
    EvaluationScope,
    double_check_resolve,
    evaluation_create,
    evaluation_execute,
)
from inference.models import DoubleCheckItem, DoubleCheckStatus, EvaluationRun
from labelling.services import label_image
from tests.inference.test_evaluation import NAMES, _library, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def classes() -> dict[str, SubClass]:
    return {
        name: SubClass.objects.get(label_class=class_create(name=name, actor=None), is_default=True)
        for name in NAMES
    }


@pytest.fixture
def queue(
    make_image: Callable[..., Image], classes: dict[str, SubClass]
) -> tuple[EvaluationRun, list[DoubleCheckItem]]:
    version = register()
    _library(make_image, classes, version)
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    evaluation_execute(run=run)
    return run, list(DoubleCheckItem.objects.filter(run=run).order_by("rank"))


def _checks(image_id: int) -> list[LabelEvent]:
    return list(
        LabelEvent.objects.filter(image_id=image_id, reason=LabelReason.DOUBLE_CHECK).order_by("pk")
    )


ANSWERS = {
    "keep": {"action": "keep"},
    "predicted": {"action": "predicted"},
    "relabel": {"action": "relabel", "subclass": "Sparrow"},
    "trash": {"action": "trash", "reason": "blurry"},
}


@pytest.mark.parametrize("answer", list(ANSWERS))
def test_a_double_check_answer_racing_a_relabel_gets_409(
    queue: tuple[EvaluationRun, list[DoubleCheckItem]],
    classes: dict[str, SubClass],
    reviewer_api: APIClient,
    labeller: User,
    answer: str,
) -> None:
    run, items = queue
    shown = reviewer_api.get(f"/api/v1/evaluations/{run.pk}/double-check/").json()["results"][0]
    assert shown["image"] == items[0].image_id and shown["version"] == 1
    # While the reviewer looks at it, an SME relabels the image on the labelling page.
    label_image(
        user=labeller,
        image_id=items[0].image_id,
        subclass=classes["Wren"],
        expected_version=shown["version"],
    )
    body = dict(ANSWERS[answer], version=shown["version"])
    if "subclass" in body:
        body["subclass"] = classes[str(body["subclass"])].pk
    response = reviewer_api.post(
        f"/api/v1/evaluations/{run.pk}/double-check/1/", body, format="json"
    )
    assert response.status_code == 409, response.json()
    assert "changed by lena" in response.json()["detail"]
    assert response.json()["changed_by"] == "lena"
    assert response.json()["current_version"] == 2
    image = Image.objects.get(pk=items[0].image_id)
    assert image.subclass == classes["Wren"] and image.status == ImageStatus.ACTIVE
    assert _checks(image.pk) == []
    assert DoubleCheckItem.objects.get(pk=items[0].pk).status == DoubleCheckStatus.OPEN


def test_an_answer_on_the_version_now_shown_goes_through(
    queue: tuple[EvaluationRun, list[DoubleCheckItem]],
    classes: dict[str, SubClass],
    reviewer_api: APIClient,
    labeller: User,
) -> None:
    run, items = queue
    label_image(
        user=labeller, image_id=items[0].image_id, subclass=classes["Sparrow"], expected_version=1
    )
    shown = reviewer_api.get(f"/api/v1/evaluations/{run.pk}/double-check/").json()["results"][0]
    assert shown["version"] == 2
    response = reviewer_api.post(
        f"/api/v1/evaluations/{run.pk}/double-check/1/",
        {"action": "predicted", "version": 2},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert Image.objects.get(pk=items[0].image_id).subclass == classes["Wren"]
    [event] = _checks(items[0].image_id)
    assert event.from_subclass == classes["Sparrow"] and event.to_subclass == classes["Wren"]


def test_an_answer_that_names_no_version_is_refused_but_skip_needs_none(
    queue: tuple[EvaluationRun, list[DoubleCheckItem]], reviewer_api: APIClient
) -> None:
    run, items = queue
    url = f"/api/v1/evaluations/{run.pk}/double-check/1/"
    refused = reviewer_api.post(url, {"action": "keep"}, format="json")
    assert refused.status_code == 400
    assert "version" in refused.json()["errors"]
    assert _checks(items[0].image_id) == []
    skipped = reviewer_api.post(url, {"action": "skip"}, format="json")
    assert skipped.status_code == 200 and skipped.json()["status"] == "skipped"


def test_keep_is_a_confirmation_through_the_service_and_blocks_nobody(
    queue: tuple[EvaluationRun, list[DoubleCheckItem]],
    classes: dict[str, SubClass],
    reviewer: User,
    labeller: User,
) -> None:
    _, items = queue
    double_check_resolve(item=items[0], action="keep", actor=reviewer, expected_version=1)
    image = Image.objects.get(pk=items[0].image_id)
    [event] = _checks(image.pk)
    assert event.from_subclass == event.to_subclass == classes["Robin"]
    assert event.actor == reviewer
    assert "label kept" in event.note
    # The label did not change, so a page that showed version 1 still labels without conflict.
    assert image.version == 1
    label_image(user=labeller, image_id=image.pk, subclass=classes["Wren"], expected_version=1)
    assert Image.objects.get(pk=image.pk).subclass == classes["Wren"]


def test_a_conflict_names_who_changed_the_label_not_who_confirmed_it_since(
    queue: tuple[EvaluationRun, list[DoubleCheckItem]],
    classes: dict[str, SubClass],
    reviewer: User,
    labeller: User,
) -> None:
    from tests.factories import UserFactory

    _, items = queue
    label_image(
        user=labeller, image_id=items[0].image_id, subclass=classes["Wren"], expected_version=1
    )
    other = UserFactory(username="otto")
    double_check_resolve(item=items[0], action="keep", actor=other, expected_version=2)
    with pytest.raises(VersionConflict) as raised:
        double_check_resolve(
            item=items[0],
            action="relabel",
            actor=reviewer,
            subclass=classes["Sparrow"],
            expected_version=1,
        )
    assert raised.value.changed_by == "lena"
    assert "changed by lena" in str(raised.value)


@pytest.mark.parametrize("action", ["relabel", "predicted"])
def test_relabelling_to_the_label_the_image_has_is_a_keep(
    queue: tuple[EvaluationRun, list[DoubleCheckItem]],
    classes: dict[str, SubClass],
    reviewer: User,
    labeller: User,
    action: str,
) -> None:
    _, items = queue
    item = items[0]  # given Robin, the model says Wren
    wren_juvenile = subclass_create(
        label_class=classes["Wren"].label_class, name="juvenile", actor=None
    )
    # Someone already moved it to a Wren sub-class that is not Wren's default.
    label_image(user=labeller, image_id=item.image_id, subclass=wren_juvenile, expected_version=1)
    double_check_resolve(
        item=item,
        action=action,
        actor=reviewer,
        subclass=wren_juvenile if action == "relabel" else None,
        expected_version=2,
    )
    image = Image.objects.get(pk=item.image_id)
    assert image.subclass == wren_juvenile and image.version == 2
    [event] = _checks(image.pk)
    assert event.from_subclass == event.to_subclass == wren_juvenile
    assert DoubleCheckItem.objects.get(pk=item.pk).status == DoubleCheckStatus.KEPT


def test_relabelling_to_another_sub_class_of_the_same_class_is_a_relabel(
    queue: tuple[EvaluationRun, list[DoubleCheckItem]],
    classes: dict[str, SubClass],
    reviewer: User,
) -> None:
    _, items = queue
    robin_juvenile = subclass_create(
        label_class=classes["Robin"].label_class, name="juvenile", actor=None
    )
    double_check_resolve(
        item=items[0], action="relabel", actor=reviewer, subclass=robin_juvenile, expected_version=1
    )
    image = Image.objects.get(pk=items[0].image_id)
    assert image.subclass == robin_juvenile and image.version == 2
    assert DoubleCheckItem.objects.get(pk=items[0].pk).status == DoubleCheckStatus.RELABELLED


def test_keeping_an_image_trashed_since_is_refused_over_the_api(
    queue: tuple[EvaluationRun, list[DoubleCheckItem]], reviewer_api: APIClient, labeller: User
) -> None:
    run, items = queue
    image_trash(image_id=items[0].image_id, actor=labeller, note="blurry", expected_version=1)
    shown = reviewer_api.get(f"/api/v1/evaluations/{run.pk}/double-check/").json()["results"][0]
    response = reviewer_api.post(
        f"/api/v1/evaluations/{run.pk}/double-check/1/",
        {"action": "keep", "version": shown["version"]},
        format="json",
    )
    assert response.status_code == 409
    assert "in the trash" in response.json()["detail"]


# --- The page -------------------------------------------------------------------------------


def test_the_page_carries_the_version_it_shows_and_names_who_changed_the_image(
    queue: tuple[EvaluationRun, list[DoubleCheckItem]],
    classes: dict[str, SubClass],
    reviewer: User,
    labeller: User,
) -> None:
    run, items = queue
    client = Client()
    client.force_login(reviewer)
    page = client.get(f"/models/evaluations/{run.pk}/double-check/")
    html = page.content.decode()
    assert '<input type="hidden" name="version" value="1">' in html
    assert "<kbd>k</kbd> Keep Robin" in html
    label_image(
        user=labeller, image_id=items[0].image_id, subclass=classes["Sparrow"], expected_version=1
    )
    answered = client.post(
        f"/models/evaluations/{run.pk}/double-check/{items[0].pk}/",
        {"action": "predicted", "version": "1", "kind": "label_doubtful"},
        follow=True,
    )
    html = answered.content.decode()
    assert "Not applied: image" in html and "changed by lena" in html
    assert "it is now Sparrow / default" in html
    # Back on the same item, as it is now: its label, its version, the keep key naming it.
    assert answered.context["item"].pk == items[0].pk
    assert '<input type="hidden" name="version" value="2">' in html
    assert "<kbd>k</kbd> Keep Sparrow" in html
    assert 'id="dc-now">now Sparrow<' in html  # beside "Given: Robin", what it was queued as
    assert answered.redirect_chain[-1][0].endswith(f"?item={items[0].pk}&kind=label_doubtful")
    assert Image.objects.get(pk=items[0].image_id).subclass == classes["Sparrow"]
    assert DoubleCheckItem.objects.get(pk=items[0].pk).status == DoubleCheckStatus.OPEN


def test_the_page_refuses_an_answer_that_names_no_version(
    queue: tuple[EvaluationRun, list[DoubleCheckItem]], reviewer: User
) -> None:
    run, items = queue
    client = Client()
    client.force_login(reviewer)
    answered = client.post(
        f"/models/evaluations/{run.pk}/double-check/{items[0].pk}/", {"action": "keep"}, follow=True
    )
    assert "which version of the image" in answered.content.decode()
    assert _checks(items[0].image_id) == []


def test_an_unsure_item_offers_no_relabel_to_the_class_it_has(
    make_image: Callable[..., Image], classes: dict[str, SubClass], reviewer: User
) -> None:
    from tests.inference.test_evaluation import predict

    version = register()
    _library(make_image, classes, version)
    unsure = make_image(classes["Wren"])
    predict(unsure, version, [0.1, 0.2, 0.7])  # right, below the threshold
    run = evaluation_create(version=version, scope=EvaluationScope(), actor=None, enqueue=False)
    evaluation_execute(run=run)
    item = DoubleCheckItem.objects.get(run=run, image=unsure)
    client = Client()
    client.force_login(reviewer)
    html = client.get(f"/models/evaluations/{run.pk}/double-check/?item={item.pk}").content.decode()
    assert "Predicted: Wren, its label</button>" in html
    assert "Relabel: Wren" not in html
    assert "Given and predicted: Wren" in html and 'id="dc-pred-title"' not in html
    assert "lowconfidence" not in html and 'id="dc-now"' not in html
