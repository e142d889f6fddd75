from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role, User
from curation.models import (
    BadVerdict,
    Image,
    ImageFeatures,
    ImportBatch,
    LabelClass,
    LabelEvent,
    LabelReason,
    SubClass,
)
from inference.models import PredictionLog, Verdict
from inference.production import (
    LogEntry,
    Source,
    dashboard,
    drift,
    prediction_log_record,
    prediction_log_review,
    review_queue,
)
from inference.rollups import production_rollups_rebuild
from tests.factories import UserFactory, image_bytes

pytestmark = pytest.mark.django_db

URL = "/api/v1/prediction-logs/"


def _class(name: str) -> SubClass:
    label_class = LabelClass.objects.create(name=name)
    return SubClass.objects.create(label_class=label_class, name="default", is_default=True)


def _log(image: Image, top1: str = "Robin", score: float = 0.97, **kwargs: Any) -> PredictionLog:
    entry = LogEntry(
        client=kwargs.pop("client", "app"),
        model_version_label=kwargs.pop("label", "v1"),
        class_names=[top1, "Wren", "Finch"],
        scores=[score, (1 - score) / 2, (1 - score) / 2],
        image_sha256=image.sha256,
        **kwargs,
    )
    return prediction_log_record(entry=entry, actor=None).log


def test_the_same_request_id_twice_makes_one_log(api: APIClient) -> None:
    body = {
        "model_version": "v1",
        "predictions": '[{"label": "Robin", "score": 0.9}, {"label": "Wren", "score": 0.1}]',
        "client": "shop-app",
        "request_id": "req-42",
    }
    first = api.post(
        URL, {**body, "image": SimpleUploadedFile("a.jpg", image_bytes(seed=1))}, format="multipart"
    )
    again = api.post(
        URL, {**body, "image": SimpleUploadedFile("a.jpg", image_bytes(seed=1))}, format="multipart"
    )
    assert first.status_code == 201, first.content
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert PredictionLog.objects.count() == 1
    assert Image.objects.count() == 1


def test_another_account_cannot_read_a_log_by_repeating_its_request_id(
    api: APIClient, reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    body = {
        "model_version": "v1",
        "predictions": [{"label": "Robin", "score": 0.9}],
        "client": "shop-app",
        "request_id": "req-7",
        "image_sha256": make_image().sha256,
    }
    first = api.post(URL, body, format="json")
    assert first.status_code == 201, first.content
    other = APIClient()
    other.force_authenticate(UserFactory(username="otto", role=Role.LABELLER))

    again = other.post(URL, body, format="json")

    assert again.status_code == 409
    assert "Robin" not in again.content.decode()
    assert PredictionLog.objects.filter(request_id="req-7").count() == 1
    # A reviewer may read logs anyway, so the retry answers with the first log.
    by_reviewer = reviewer_api.post(URL, body, format="json")
    assert by_reviewer.status_code == 200
    assert by_reviewer.json()["id"] == first.json()["id"]


def test_a_logged_image_reaches_the_inbox_tagged_with_its_production_origin(
    api: APIClient,
) -> None:
    response = api.post(
        URL,
        {
            "model_version": "v1",
            "predictions": '[{"label": "Robin", "score": 0.9}]',
            "client": "shop-app",
            "image": SimpleUploadedFile("a.jpg", image_bytes(seed=3)),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    image = Image.objects.get()
    assert image.subclass is None
    assert image.import_batch is not None
    assert image.import_batch.name.startswith("production/shop-app/")


def test_a_log_may_reference_a_stored_image_by_sha256_in_json(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    image = make_image()
    response = api.post(
        URL,
        {
            "image_sha256": image.sha256,
            "model_version": "v1",
            "predictions": [{"label": "Robin", "score": 0.4}, {"label": "Wren", "score": 0.6}],
            "client": "kiosk",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    log = PredictionLog.objects.get()
    assert (log.image_id, log.top1_name, log.top1_score) == (image.pk, "Wren", 0.6)


def test_the_batch_form_logs_many_and_repeats_are_not_logged_twice(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    images = [make_image() for _ in range(3)]
    logs = [
        {
            "image_sha256": image.sha256,
            "model_version": "v2",
            "predictions": [{"label": "Robin", "score": 0.8}],
            "client": "batcher",
            "request_id": f"r{n}",
        }
        for n, image in enumerate(images)
    ]
    first = api.post(URL + "batch/", {"logs": logs}, format="json")
    again = api.post(URL + "batch/", {"logs": [*logs, logs[0]]}, format="json")
    assert first.json()["created"] == 3
    assert again.json()["created"] == 0
    assert again.json()["existing"] == 4
    assert PredictionLog.objects.count() == 3


def test_an_unknown_sha256_is_refused(api: APIClient) -> None:
    response = api.post(
        URL,
        {
            "image_sha256": "0" * 64,
            "model_version": "v1",
            "predictions": [{"label": "Robin", "score": 0.9}],
        },
        format="json",
    )
    assert response.status_code == 400
    assert PredictionLog.objects.count() == 0


def test_queues_split_on_the_threshold(make_image: Callable[..., Image]) -> None:
    happy = _log(make_image(), score=0.99)
    sad = _log(make_image(), score=0.5)
    assert list(review_queue(path="happy")) == [happy]
    assert list(review_queue(path="sad")) == [sad]


def test_wrong_labels_the_image_into_the_right_class_with_an_event(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    wren = _class("Wren")
    log = _log(make_image(), top1="Robin")
    prediction_log_review(log_id=log.pk, verdict=Verdict.WRONG, actor=reviewer, subclass=wren)
    log.refresh_from_db()
    log.image.refresh_from_db()
    assert log.image.subclass == wren
    assert (log.verdict, log.true_subclass, log.reviewed_by) == ("wrong", wren, reviewer)
    event = LabelEvent.objects.get(image=log.image)
    assert (event.reason, event.note, event.to_subclass) == (
        LabelReason.LABELLING,
        "production review",
        wren,
    )


def test_correct_labels_an_inbox_image_with_the_predicted_class(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    robin = _class("Robin")
    log = _log(make_image(), top1="Robin")
    prediction_log_review(log_id=log.pk, verdict=Verdict.CORRECT, actor=reviewer)
    log.image.refresh_from_db()
    assert log.image.subclass == robin
    assert LabelEvent.objects.filter(image=log.image, to_subclass=robin).count() == 1


def test_bad_picture_records_a_bad_image_verdict(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    log = _log(make_image())
    prediction_log_review(
        log_id=log.pk, verdict=Verdict.BAD_PICTURE, actor=reviewer, bad_reason="blurry"
    )
    assert BadVerdict.objects.get(image=log.image).reason == "blurry"


def test_out_of_scope_keeps_the_subject_and_the_image_stays_in_the_inbox(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    log = _log(make_image())
    prediction_log_review(
        log_id=log.pk, verdict=Verdict.OUT_OF_SCOPE, actor=reviewer, subject="  a   cat "
    )
    log.refresh_from_db()
    assert log.out_of_scope_subject == "a cat"
    assert log.image.subclass is None
    assert not LabelEvent.objects.filter(image=log.image).exists()


def test_should_have_been_confident_is_refused_on_the_happy_path(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    from inference.production import ReviewError

    log = _log(make_image(), score=0.99)
    with pytest.raises(ReviewError):
        prediction_log_review(log_id=log.pk, verdict=Verdict.SHOULD_BE_CONFIDENT, actor=reviewer)
    sad = _log(make_image(), score=0.6)
    prediction_log_review(log_id=sad.pk, verdict=Verdict.SHOULD_BE_CONFIDENT, actor=reviewer)
    sad.refresh_from_db()
    assert sad.verdict == Verdict.SHOULD_BE_CONFIDENT


def test_a_log_cannot_be_reviewed_twice(make_image: Callable[..., Image], reviewer: User) -> None:
    from inference.production import ReviewError

    log = _log(make_image())
    prediction_log_review(log_id=log.pk, verdict=Verdict.CORRECT, actor=reviewer)
    with pytest.raises(ReviewError):
        prediction_log_review(log_id=log.pk, verdict=Verdict.WRONG, actor=reviewer)


def test_dashboard_numbers_equal_hand_counts(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    wren = _class("Wren")
    image = make_image()
    monday_9 = timezone.make_aware(timezone.datetime(2026, 11, 16, 9, 15))
    rows = [
        ("v1", "Robin", 0.99, monday_9),
        ("v1", "Robin", 0.97, monday_9 + timedelta(minutes=10)),
        ("v1", "Wren", 0.40, monday_9 + timedelta(hours=1)),
        ("v2", "Robin", 0.60, monday_9 + timedelta(days=1)),
        ("v2", "Finch", 0.96, monday_9 + timedelta(days=1)),
    ]
    logs = []
    for label, top1, score, at in rows:
        # One image per log: a verdict on one must not meet the label another one gave.
        log = _log(make_image(), top1=top1, score=score, label=label)
        PredictionLog.objects.filter(pk=log.pk).update(received_at=at)
        logs.append(log)
    # Outside the range: not counted.
    outside = _log(image)
    PredictionLog.objects.filter(pk=outside.pk).update(received_at=monday_9 - timedelta(days=9))

    prediction_log_review(log_id=logs[0].pk, verdict=Verdict.CORRECT, actor=reviewer)
    prediction_log_review(log_id=logs[1].pk, verdict=Verdict.WRONG, actor=reviewer, subclass=wren)
    prediction_log_review(log_id=logs[3].pk, verdict=Verdict.SHOULD_BE_CONFIDENT, actor=reviewer)
    prediction_log_review(
        log_id=logs[4].pk, verdict=Verdict.OUT_OF_SCOPE, actor=reviewer, subject="Cat"
    )

    # The received times were moved behind the services' back: recount the roll-ups.
    production_rollups_rebuild()
    for source in (Source.ROLLUPS, Source.LOGS):
        board = dashboard(
            start=monday_9 - timedelta(days=1),
            end=monday_9 + timedelta(days=3),
            threshold=0.95,
            source=source,
        )
        assert board.from_rollups == (source == Source.ROLLUPS)
        assert board.total == 5
        assert (board.above, board.below) == (3, 2)
        assert board.per_weekday == [3, 2, 0, 0, 0, 0, 0]
        assert board.per_hour_of_day[9] == 4 and board.per_hour_of_day[10] == 1
        assert [n for _, n in board.per_hour] == [2, 1, 2]
        assert board.per_version_day == {"v1": {"2026-11-16": 3}, "v2": {"2026-11-17": 2}}
        assert board.classes == [("Robin", 3), ("Finch", 1), ("Wren", 1)]
        by_version = {a.key: (a.correct, a.judged) for a in board.by_version}
        assert by_version == {"v1": (1, 2), "v2": (1, 1)}
        by_band = {a.key: (a.correct, a.judged) for a in board.by_band}
        assert by_band["≥ 0.95"] == (1, 2) and by_band["0.50–0.80"] == (1, 1)
        assert board.out_of_scope == [("Cat", 1)]
        assert board.verdicts == {
            "correct": 1,
            "wrong": 1,
            "should_be_confident": 1,
            "out_of_scope": 1,
        }


def _features(image: Image, brightness: float, rng: random.Random) -> None:
    ImageFeatures.objects.update_or_create(
        image=image,
        defaults={
            "brightness_p50": brightness,
            "contrast": rng.gauss(50, 10),
            "sharpness": rng.gauss(300, 50),
            "entropy": rng.gauss(7, 0.3),
            "colourfulness": rng.gauss(30, 5),
        },
    )


def _drift_case(shift: float, make_image: Callable[..., Image]) -> dict[str, Any]:
    rng = random.Random(7)
    robin = _class("Robin")
    for _ in range(60):
        _features(make_image(robin), rng.gauss(120, 15), rng)
    since = timezone.now() - timedelta(days=1)
    for _ in range(60):
        image = make_image()
        _features(image, rng.gauss(120 + shift, 15), rng)
        _log(image)
    return {test.metric: test for test in drift(since=since)}


def test_a_planted_brightness_shift_is_flagged(make_image: Callable[..., Image]) -> None:
    tests = _drift_case(-60, make_image)
    assert tests["brightness_p50"].shifted
    assert tests["brightness_p50"].p_value is not None and tests["brightness_p50"].p_value < 1e-6
    assert not tests["sharpness"].shifted


def test_an_unshifted_sample_is_not_flagged(make_image: Callable[..., Image]) -> None:
    tests = _drift_case(0, make_image)
    assert not any(test.shifted for test in tests.values())


def test_small_samples_are_never_flagged(make_image: Callable[..., Image]) -> None:
    rng = random.Random(1)
    for _ in range(5):
        image = make_image()
        _features(image, 10, rng)
        _log(image)
    for _ in range(5):
        _features(make_image(_class(f"C{rng.random()}")), 200, rng)
    tests = drift(since=timezone.now() - timedelta(days=1))
    assert not any(test.shifted for test in tests)


def test_review_page_records_a_verdict_by_form(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    log = _log(make_image(), score=0.99)
    client = Client()
    client.force_login(reviewer)
    page = client.get(reverse("production:review", args=["happy"]))
    assert page.status_code == 200
    assert f'value="{log.pk}"' in page.content.decode()
    response = client.post(
        reverse("production:review", args=["happy"]), {"log": log.pk, "verdict": "correct"}
    )
    assert response.status_code == 302
    log.refresh_from_db()
    assert log.verdict == "correct"


def test_dashboard_page_renders_with_logs(
    make_image: Callable[..., Image], reviewer: User, django_assert_max_num_queries: Any
) -> None:
    for score in (0.99, 0.3):
        _log(make_image(), score=score)
    client = Client()
    client.force_login(reviewer)
    with django_assert_max_num_queries(25):
        page = client.get(reverse("production:dashboard"))
    assert page.status_code == 200
    assert "Calls per hour" in page.content.decode()


def test_an_import_batch_per_client_and_day(make_image: Callable[..., Image]) -> None:
    for seed in (11, 12):
        prediction_log_record(
            entry=LogEntry(
                client="app",
                model_version_label="v1",
                class_names=["Robin"],
                scores=[0.9],
                image_data=image_bytes(seed=seed),
            ),
            actor=None,
        )
    assert ImportBatch.objects.filter(name__startswith="production/app/").count() == 1


def test_predict_with_log_true_records_a_production_log(api: APIClient) -> None:
    from inference.preprocessing import PreprocessSpec
    from inference.services import model_version_register
    from tests.inference.onnx_models import labels, linear, to_bytes

    version = model_version_register(
        onnx_data=to_bytes(linear(classes=4, seed=3)),
        labels=labels("a", "b", "c", "d"),
        name="tiny",
        actor=None,
        spec=PreprocessSpec(input_size=8),
    ).version
    body = {"model_version": version.number, "k": 3, "log": "true", "request_id": "p-1"}
    first = api.post(
        "/api/v1/predict/",
        {**body, "file": SimpleUploadedFile("x.jpg", image_bytes(seed=5))},
        format="multipart",
    )
    again = api.post(
        "/api/v1/predict/",
        {**body, "file": SimpleUploadedFile("x.jpg", image_bytes(seed=5))},
        format="multipart",
    )
    assert first.status_code == 200, first.content
    log = PredictionLog.objects.get()
    assert first.json()["log_id"] == again.json()["log_id"] == log.pk
    assert log.model_version == version
    assert log.class_names == [p["label"] for p in first.json()["predictions"]]
    plain = api.post(
        "/api/v1/predict/",
        {"file": SimpleUploadedFile("y.jpg", image_bytes(seed=6)), "model_version": version.number},
        format="multipart",
    )
    assert plain.json()["log_id"] is None
    assert PredictionLog.objects.count() == 1


def test_a_logged_file_that_is_not_an_allowed_image_is_refused_by_name(api: Any) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api.post(
        "/api/v1/prediction-logs/",
        {
            "image": SimpleUploadedFile("x.jpg", b"%PDF-1.4 not an image", "image/jpeg"),
            "model_version": "v1",
            "predictions": '[{"label": "Robin", "score": 0.9}]',
        },
        format="multipart",
    )
    assert response.status_code == 400
    assert "not a supported image" in response.json()["detail"]


def test_the_log_list_is_paged_newest_first(
    reviewer_api: APIClient, make_image: Callable[..., Image]
) -> None:
    image = make_image()
    made = [_log(image, request_id=f"page-{n}").pk for n in range(3)]

    first = reviewer_api.get(URL, {"page_size": 2}).json()
    second = reviewer_api.get(first["next"]).json()

    ids = [log["id"] for log in first["results"] + second["results"]]
    assert len(first["results"]) == 2 and second["next"] is None
    assert ids == sorted(made, reverse=True)


def test_a_labeller_token_logs_predictions_but_only_reviewers_read_them(
    api: APIClient, reviewer_api: APIClient
) -> None:
    """Serving systems log with machine (labeller) tokens; the logs themselves are for the
    production dashboard's readers."""
    body = {
        "model_version": "v1",
        "predictions": '[{"label": "Robin", "score": 0.9}, {"label": "Wren", "score": 0.1}]',
        "client": "shop-app",
        "request_id": "req-7",
    }
    image = SimpleUploadedFile("a.jpg", image_bytes(seed=3))
    logged = api.post(URL, {**body, "image": image}, format="multipart")
    again = {**body, "image_sha256": logged.json()["image_sha256"]}
    batch = api.post(f"{URL}batch/", {"logs": [again]}, format="json")
    log_id = logged.json()["id"]

    assert logged.status_code == 201, logged.content
    assert batch.status_code == 200 and batch.json()["existing"] == 1, batch.content
    assert api.get(URL).status_code == 403
    assert api.get(f"{URL}{log_id}/").status_code == 403
    assert "reviewer" in api.get(URL).json()["detail"]
    assert [row["id"] for row in reviewer_api.get(URL).json()["results"]] == [log_id]
    assert reviewer_api.get(f"{URL}{log_id}/").json()["id"] == log_id


def _labelled(make_image: Callable[..., Image], subclass: SubClass, actor: User) -> Image:
    from curation.services.images import image_relabel

    image = make_image()
    image_relabel(
        image_id=image.pk, subclass=subclass, actor=actor, reason="labelling", expected_version=1
    )
    return image


def test_correct_is_refused_where_the_library_labels_the_image_otherwise(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    from inference.production import ReviewError

    one = _class("Digit 1")
    _class("Digit 2")
    image = _labelled(make_image, one, reviewer)
    log = _log(image, top1="Digit 2")
    with pytest.raises(ReviewError, match="labelled “Digit 1” in the library, not “Digit 2”"):
        prediction_log_review(log_id=log.pk, verdict=Verdict.CORRECT, actor=reviewer)
    log.refresh_from_db()
    image.refresh_from_db()
    assert (log.verdict, image.subclass) == ("", one)


def test_a_confirmed_correct_relabels_the_image_into_the_predicted_class(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    one, two = _class("Digit 1"), _class("Digit 2")
    image = _labelled(make_image, one, reviewer)
    log = _log(image, top1="Digit 2")
    prediction_log_review(log_id=log.pk, verdict=Verdict.CORRECT, actor=reviewer, relabel=True)
    log.refresh_from_db()
    image.refresh_from_db()
    assert (log.verdict, log.true_subclass, image.subclass) == ("correct", two, two)
    event = LabelEvent.objects.filter(image=image).latest("id")
    assert (event.from_subclass, event.to_subclass, event.note) == (one, two, "production review")


def test_correct_cannot_relabel_into_a_class_the_library_lacks(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    from inference.production import ReviewError

    one = _class("Digit 1")
    log = _log(_labelled(make_image, one, reviewer), top1="chain")
    with pytest.raises(ReviewError, match="“chain” is not a library class"):
        prediction_log_review(log_id=log.pk, verdict=Verdict.CORRECT, actor=reviewer, relabel=True)


def test_correct_on_an_image_the_library_agrees_on_needs_no_confirmation(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    two = _class("Digit 2")
    log = _log(_labelled(make_image, two, reviewer), top1="digit 2")
    prediction_log_review(log_id=log.pk, verdict=Verdict.CORRECT, actor=reviewer)
    log.refresh_from_db()
    assert (log.verdict, log.true_subclass) == ("correct", two)
    assert LabelEvent.objects.filter(image=log.image).count() == 1


def test_review_page_shows_the_library_label_and_flags_the_disagreement(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    one, _ = _class("Digit 1"), _class("Digit 2")
    log = _log(_labelled(make_image, one, reviewer), top1="Digit 2", score=0.99)
    client = Client()
    client.force_login(reviewer)
    url = reverse("production:review", args=["happy"])
    page = client.get(url).content.decode()
    assert "in the library: <strong>Digit 1</strong>" in page
    assert "already labelled" not in page
    assert 'id="disagreement"' in page
    assert f'data-verdict="library" data-subclass="{one.pk}"' in page
    # A form post of "correct" without the confirmation is refused and shows the log again.
    response = client.post(url, {"log": log.pk, "verdict": "correct"}, follow=True)
    assert response.redirect_chain[-1][0] == f"{url}?log={log.pk}"
    assert "labelled “Digit 1” in the library" in response.content.decode()
    log.refresh_from_db()
    assert log.verdict == ""


def test_review_page_says_an_agreeing_library_label_agrees(
    make_image: Callable[..., Image], reviewer: User
) -> None:
    two = _class("Digit 2")
    _log(_labelled(make_image, two, reviewer), top1="Digit 2", score=0.99)
    client = Client()
    client.force_login(reviewer)
    page = client.get(reverse("production:review", args=["happy"])).content.decode()
    assert "in the library: <strong>Digit 2</strong>" in page
    assert "(agrees with the model)" in page
    assert 'id="disagreement"' not in page
