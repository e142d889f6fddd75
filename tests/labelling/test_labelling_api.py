from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import Role, User
from curation.models import BadVerdict, ClassKind, Image, LabelEvent, LabelReason, SubClass
from curation.services.taxonomy import class_create
from inference.models import LabelMatch, ModelVersion, Prediction
from labelling.models import Claim
from tests.factories import UserFactory

QUEUE = "/api/v1/labelling/queue/"
ACT = "/api/v1/labelling/actions/"
UNDO = "/api/v1/labelling/undo/"


@pytest.fixture
def robin(db: None) -> SubClass:
    return SubClass.objects.get(label_class=class_create(name="Robin", actor=None), is_default=True)


@pytest.fixture
def unknown(db: None) -> SubClass:
    holding = class_create(name="Unknown", kind=ClassKind.HOLDING, actor=None)
    return SubClass.objects.get(label_class=holding, is_default=True)


@pytest.fixture
def second_api(db: None) -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(username="sam", role=Role.LABELLER))
    return client


def _ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["next"]]


def test_the_inbox_queue_hands_out_the_oldest_images_first_and_claims_them(
    api: APIClient, labeller: User, make_image: Callable[..., Image]
) -> None:
    images = [make_image() for _ in range(4)]
    assert _ids(api.get(QUEUE, {"count": 3})) == [i.pk for i in images[:3]]
    assert set(Claim.objects.filter(user=labeller).values_list("image_id", flat=True)) == {
        i.pk for i in images[:3]
    }


def test_claims_keep_two_labellers_apart(
    api: APIClient, second_api: APIClient, make_image: Callable[..., Image]
) -> None:
    images = [make_image() for _ in range(4)]
    first = _ids(api.get(QUEUE, {"count": 2}))
    second = _ids(second_api.get(QUEUE, {"count": 2}))
    assert first == [images[0].pk, images[1].pk]
    assert second == [images[2].pk, images[3].pk]


def test_a_label_on_an_image_someone_else_holds_gets_409_and_changes_nothing(
    api: APIClient, second_api: APIClient, robin: SubClass, make_image: Callable[..., Image]
) -> None:
    image = make_image()
    _ids(api.get(QUEUE, {"count": 1}))
    response = second_api.post(
        ACT,
        {"image": image.pk, "version": image.version, "action": "label", "subclass": robin.pk},
        format="json",
    )
    assert response.status_code == 409
    assert "being labelled by lena" in response.json()["detail"]
    image.refresh_from_db()
    assert image.subclass_id is None


def test_a_stale_version_gets_409_naming_who_changed_it(
    api: APIClient, robin: SubClass, make_image: Callable[..., Image]
) -> None:
    image = make_image()
    api.post(
        ACT,
        {"image": image.pk, "version": 1, "action": "label", "subclass": robin.pk},
        format="json",
    )
    response = api.post(
        ACT,
        {"image": image.pk, "version": 1, "action": "label", "subclass": robin.pk},
        format="json",
    )
    assert response.status_code == 409
    assert "lena" in response.json()["detail"]


def test_label_and_next_labels_the_image_and_returns_the_next_one(
    api: APIClient, labeller: User, robin: SubClass, make_image: Callable[..., Image]
) -> None:
    first, second, third = make_image(), make_image(), make_image()
    assert _ids(api.get(QUEUE, {"count": 2})) == [first.pk, second.pk]
    response = api.post(
        ACT,
        {
            "image": first.pk,
            "version": first.version,
            "action": "label",
            "subclass": robin.pk,
            "holding": [second.pk],
            "count": 1,
        },
        format="json",
    )
    assert _ids(response) == [third.pk]
    first.refresh_from_db()
    assert first.subclass_id == robin.pk
    event = LabelEvent.objects.get(image=first, reason=LabelReason.LABELLING)
    assert event.actor == labeller and event.to_subclass_id == robin.pk
    assert not Claim.objects.filter(image=first).exists()


def test_unknown_sends_the_image_to_the_holding_class(
    api: APIClient, unknown: SubClass, make_image: Callable[..., Image]
) -> None:
    image = make_image()
    api.post(ACT, {"image": image.pk, "version": 1, "action": "unknown"}, format="json")
    image.refresh_from_db()
    assert image.subclass_id == unknown.pk


def test_a_bad_verdict_keeps_the_image_and_takes_it_out_of_the_queue(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    image, other = make_image(), make_image()
    response = api.post(
        ACT,
        {"image": image.pk, "version": 1, "action": "bad", "bad_reason": "blurry"},
        format="json",
    )
    assert response.status_code == 200
    assert BadVerdict.objects.get(image=image).reason == "blurry"
    image.refresh_from_db()
    assert image.status == "active"
    assert _ids(api.get(QUEUE, {"count": 5})) == [other.pk]


def test_a_skipped_image_does_not_come_straight_back_but_others_may_take_it(
    api: APIClient, second_api: APIClient, make_image: Callable[..., Image]
) -> None:
    image, other = make_image(), make_image()
    _ids(api.get(QUEUE, {"count": 1}))
    api.post(ACT, {"image": image.pk, "action": "skip"}, format="json")
    assert _ids(api.get(QUEUE, {"count": 5})) == [other.pk]
    assert image.pk in _ids(second_api.get(QUEUE, {"count": 5}))


def test_undo_reverts_the_last_label_with_a_new_event(
    api: APIClient, robin: SubClass, make_image: Callable[..., Image]
) -> None:
    image = make_image()
    api.post(
        ACT,
        {"image": image.pk, "version": 1, "action": "label", "subclass": robin.pk},
        format="json",
    )
    response = api.post(UNDO)
    assert response.status_code == 200
    assert response.json()["image"]["id"] == image.pk
    image.refresh_from_db()
    assert image.subclass_id is None
    reasons = list(
        LabelEvent.objects.filter(image=image).order_by("id").values_list("reason", flat=True)
    )
    assert reasons == [LabelReason.LABELLING, LabelReason.UNDO]


def test_undo_of_a_bad_verdict_removes_it(api: APIClient, make_image: Callable[..., Image]) -> None:
    image = make_image()
    api.post(
        ACT,
        {"image": image.pk, "version": 1, "action": "bad", "bad_reason": "too_dark"},
        format="json",
    )
    api.post(UNDO)
    assert not BadVerdict.objects.filter(image=image).exists()
    assert api.post(UNDO).status_code == 404


def test_suggestions_come_from_the_active_model_and_order_the_queue_least_confident_first(
    api: APIClient, robin: SubClass, make_image: Callable[..., Image]
) -> None:
    confident, unsure, unpredicted = make_image(), make_image(), make_image()
    model = ModelVersion.objects.create(
        number=1,
        name="m",
        onnx_file="models/x.onnx",
        sha256="0" * 64,
        file_size=1,
        label_map=["Robin", "Wren", "Owl"],
        input_name="x",
        output_name="y",
        is_active=True,
    )
    LabelMatch.objects.create(
        model_version=model, index=0, name="Robin", label_class=robin.label_class
    )
    for image, scores in ((confident, [0.9, 0.06, 0.04]), (unsure, [0.4, 0.35, 0.25])):
        Prediction.objects.create(
            image=image,
            model_version=model,
            class_indices=[0, 1, 2],
            class_names=["Robin", "Wren", "Owl"],
            scores=scores,
            top1_index=0,
            top1_score=scores[0],
        )
    from inference.services import suggestion_scores_sync

    suggestion_scores_sync(image_ids=[confident.pk, unsure.pk, unpredicted.pk], version=model)
    response = api.get(QUEUE, {"count": 3})
    assert _ids(response) == [unsure.pk, confident.pk, unpredicted.pk]
    first = response.json()["next"][0]["suggestions"]
    assert [s["name"] for s in first] == ["Robin", "Wren", "Owl"]
    assert first[0]["subclass_id"] == robin.pk
    assert first[1]["subclass_id"] is None  # the library has no Wren class


def test_the_queue_payload_runs_a_fixed_number_of_queries(
    api: APIClient, make_image: Callable[..., Image], django_assert_max_num_queries: Any
) -> None:
    for _ in range(8):
        make_image()
    with django_assert_max_num_queries(14):
        _ids(api.get(QUEUE, {"count": 8}))


def test_bad_images_are_filterable_in_the_image_list(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    bad, good = make_image(), make_image()
    api.post(
        ACT, {"image": bad.pk, "version": 1, "action": "bad", "bad_reason": "blurry"}, format="json"
    )
    listed = api.get("/api/v1/images/", {"bad": "true"}).json()["results"]
    assert [row["id"] for row in listed] == [bad.pk]
    listed = api.get("/api/v1/images/", {"bad": "false"}).json()["results"]
    assert [row["id"] for row in listed] == [good.pk]
    listed = api.get("/api/v1/images/", {"bad_reason": "too_dark"}).json()["results"]
    assert listed == []


def test_a_saved_filter_on_predicted_class_and_score_range_is_a_queue(
    api: APIClient, robin: SubClass, make_image: Callable[..., Image]
) -> None:
    from curation.models import SavedFilter

    low, high, other = make_image(), make_image(), make_image()
    model = ModelVersion.objects.create(
        number=1,
        name="m",
        onnx_file="models/x.onnx",
        sha256="0" * 64,
        file_size=1,
        label_map=["Robin", "Wren"],
        input_name="x",
        output_name="y",
    )
    LabelMatch.objects.create(
        model_version=model, index=0, name="Robin", label_class=robin.label_class
    )
    for image, index, score in ((low, 0, 0.3), (high, 0, 0.95), (other, 1, 0.5)):
        Prediction.objects.create(
            image=image,
            model_version=model,
            class_indices=[index, 1 - index],
            class_names=["Robin", "Wren"],
            scores=[score, 1 - score],
            top1_index=index,
            top1_score=score,
        )
    saved = SavedFilter.objects.create(
        name="Robin, unsure",
        params={
            "model_version": model.pk,
            "predicted_class": robin.label_class_id,
            "score_min": 0.2,
            "score_max": 0.6,
            "labelled": False,
        },
    )
    assert _ids(api.get(QUEUE, {"queue": f"filter:{saved.pk}", "count": 5})) == [low.pk]


def test_a_saved_filter_naming_no_model_version_id_is_an_unknown_queue_not_a_server_error(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    from curation.models import SavedFilter

    make_image()
    saved = SavedFilter.objects.create(name="Hand-edited", params={"model_version": "latest"})
    response = api.get(QUEUE, {"queue": f"filter:{saved.pk}", "count": 5})
    assert response.status_code == 404
    assert "model_version" in response.json()["detail"]


def test_undo_answers_what_is_left_in_the_queue_with_the_image_back(
    api: APIClient, robin: SubClass, make_image: Callable[..., Image]
) -> None:
    image, _ = make_image(), make_image()
    answered = api.post(
        ACT,
        {
            "queue": "inbox",
            "image": image.pk,
            "version": 1,
            "action": "label",
            "subclass": robin.pk,
            "count": 0,
        },
        format="json",
    )
    assert answered.json()["remaining"] == 1
    response = api.post(UNDO, {"queue": "inbox"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["remaining"] == 2
    # Without a queue the answer has no count to give.
    api.post(
        ACT,
        {"image": image.pk, "version": 3, "action": "label", "subclass": robin.pk},
        format="json",
    )
    assert "remaining" not in api.post(UNDO, {}, format="json").json()
