"""Production logs hold scores a model could have given, under one name per model version.

Probabilities outside [0, 1], or a top-k summing over 1 (beyond rounding), are refused with a
400 that says why; a client that sends logits says so (``score_kind=logits``) and they are
stored as the softmax over the values sent. Whichever way a client names a registered version
(``2``, ``v2``, ``V2`` or its name), and ``predict`` with ``log=true``, the log records
``v2``: one model, one series on the dashboard, whose class bars are named by class."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import Image
from inference.models import ModelVersion, PredictionLog
from inference.production import dashboard
from tests.factories import image_bytes

pytestmark = pytest.mark.django_db

URL = "/api/v1/prediction-logs/"


def log_body(image: Image, scores: list[float], **extra: Any) -> dict[str, Any]:
    names = ["Robin", "Wren", "Finch", "Jay"]
    return {
        "image_sha256": image.sha256,
        "model_version": "v1",
        "predictions": [
            {"label": name, "score": score} for name, score in zip(names, scores, strict=False)
        ],
        "client": "shop-app",
        **extra,
    }


# --- Impossible scores ------------------------------------------------------------------------


def test_a_top_k_summing_to_1_7_is_refused_naming_the_sum(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    response = api.post(URL, log_body(make_image(), [0.9, 0.8]), format="json")

    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "the 2 scores sum to 1.700" in detail
    assert "score_kind=logits" in detail
    assert not PredictionLog.objects.exists()


def test_a_score_above_1_is_refused(api: APIClient, make_image: Callable[..., Image]) -> None:
    response = api.post(URL, log_body(make_image(), [1.3, 0.1]), format="json")

    assert response.status_code == 400
    assert "between 0 and 1 (got 1.3)" in response.json()["detail"]


def test_an_impossible_log_with_an_image_file_stores_no_image(api: APIClient) -> None:
    response = api.post(
        URL,
        {
            "image": SimpleUploadedFile("a.jpg", image_bytes(seed=71)),
            "model_version": "v1",
            "predictions": '[{"label": "Robin", "score": 0.9}, {"label": "Wren", "score": 0.8}]',
        },
        format="multipart",
    )

    assert response.status_code == 400
    assert not Image.objects.exists() and not PredictionLog.objects.exists()


def test_scores_rounded_by_the_client_a_little_over_1_are_accepted(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    response = api.post(URL, log_body(make_image(), [0.34, 0.34, 0.33]), format="json")

    assert response.status_code == 201, response.content
    assert PredictionLog.objects.get().scores == [0.34, 0.34, 0.33]


def test_declared_logits_are_stored_as_probabilities(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    response = api.post(
        URL, log_body(make_image(), [1.0, 3.0, 0.5], score_kind="logits"), format="json"
    )

    assert response.status_code == 201, response.content
    log = PredictionLog.objects.get()
    total = math.exp(1.0) + math.exp(3.0) + math.exp(0.5)
    assert log.class_names == ["Wren", "Robin", "Finch"]
    assert log.scores == pytest.approx(
        [math.exp(3.0) / total, math.exp(1.0) / total, math.exp(0.5) / total]
    )
    assert log.top1_score == pytest.approx(0.8214, abs=1e-4)
    assert response.json()["top1_score"] == pytest.approx(log.top1_score)


def test_undeclared_logits_are_refused(api: APIClient, make_image: Callable[..., Image]) -> None:
    response = api.post(URL, log_body(make_image(), [1.0, 3.0, -0.5]), format="json")

    assert response.status_code == 400


def test_an_unknown_score_kind_is_refused(api: APIClient, make_image: Callable[..., Image]) -> None:
    response = api.post(URL, log_body(make_image(), [0.5], score_kind="odds"), format="json")

    assert response.status_code == 400
    assert "score_kind" in response.content.decode()


def test_the_batch_form_refuses_only_the_impossible_entries(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    good, bad, logits = make_image(), make_image(), make_image()
    logs = [
        log_body(good, [0.7, 0.2]),
        log_body(bad, [0.7, 0.6, 0.5]),
        log_body(logits, [4.0, 2.0], score_kind="logits"),
    ]

    body = api.post(URL + "batch/", {"logs": logs}, format="json").json()

    assert (body["created"], body["rejected"]) == (2, 1)
    assert "the 3 scores sum to 1.800" in body["results"][1]["error"]
    assert PredictionLog.objects.get(image=logits).top1_score == pytest.approx(0.8808, abs=1e-4)


# --- One name per model version ---------------------------------------------------------------


@pytest.fixture
def tiny(db: None) -> ModelVersion:
    from inference.preprocessing import PreprocessSpec
    from inference.services import model_version_register
    from tests.inference.onnx_models import labels, linear, to_bytes

    for _ in range(2):  # versions 1 and 2: the second is "tiny"
        version = model_version_register(
            onnx_data=to_bytes(linear(classes=4, seed=3)),
            labels=labels("Robin", "Wren", "Finch", "Jay"),
            name="tiny",
            actor=None,
            spec=PreprocessSpec(input_size=8),
        ).version
    assert version.number == 2
    return version


def test_every_spelling_of_a_version_is_logged_as_one_series(
    api: APIClient, make_image: Callable[..., Image], tiny: ModelVersion
) -> None:
    predicted = api.post(
        "/api/v1/predict/",
        {
            "file": SimpleUploadedFile("x.jpg", image_bytes(seed=81)),
            "model_version": tiny.number,
            "log": "true",
        },
        format="multipart",
    )
    assert predicted.status_code == 200, predicted.content
    for label in ("v2", "2", "V2", " v02 ", "tiny"):
        response = api.post(
            URL, log_body(make_image(), [0.9, 0.1], model_version=label), format="json"
        )
        assert response.status_code == 201, (label, response.content)
        assert response.json()["model_version_label"] == "v2", label

    assert set(PredictionLog.objects.values_list("model_version_label", flat=True)) == {"v2"}
    assert set(PredictionLog.objects.values_list("model_version", flat=True)) == {tiny.pk}
    now = timezone.now()
    board = dashboard(start=now - timedelta(days=1), end=now + timedelta(hours=1))
    assert list(board.per_version_day) == ["v2"]
    assert sum(board.per_version_day["v2"].values()) == 6


def test_a_version_loupe_does_not_know_keeps_the_clients_name(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    api.post(URL, log_body(make_image(), [0.9], model_version="resnet-edge"), format="json")
    api.post(URL, log_body(make_image(), [0.9], model_version="7"), format="json")

    labels = set(PredictionLog.objects.values_list("model_version_label", flat=True))
    assert labels == {"resnet-edge", "v7"}


def test_the_dashboards_class_bars_are_named_by_class(
    api: APIClient, reviewer: User, make_image: Callable[..., Image]
) -> None:
    for top1 in ("Robin", "Robin", "Wren", "Great Spotted Woodpecker (female, juvenile)"):
        body = log_body(make_image(), [0.9])
        body["predictions"][0]["label"] = top1
        assert api.post(URL, body, format="json").status_code == 201
    browser = Client()
    browser.force_login(reviewer)

    page = browser.get("/production/").content.decode()

    chart = page[page.index('aria-label="Predicted classes') :]
    chart = chart[: chart.index("</svg>")]
    assert ">Robin</text>" in chart and ">Wren</text>" in chart
    assert ">Great Spotted Woodpecke…</text>" in chart  # cut, the whole name in the tooltip
    assert "<title>Great Spotted Woodpecker (female, juvenile): 1</title>" in chart
    assert 'text-anchor="middle">1</text>' not in chart  # bars are no longer numbered


def test_the_migration_renames_older_logs_and_sends_the_dashboard_to_the_logs(
    api: APIClient, make_image: Callable[..., Image], tiny: ModelVersion
) -> None:
    import importlib

    from django.apps import apps

    from inference.models import PredictionLogHour
    from inference.rollups import production_rollups_rebuild

    normalise_labels = importlib.import_module(
        "inference.migrations.0009_normalise_version_labels"
    ).normalise_labels
    for label in ("v2", "v2", "v7", "edge"):
        api.post(URL, log_body(make_image(), [0.9], model_version=label), format="json")
    # As an older Loupe stored them: predict's "2", a client's "7".
    PredictionLog.objects.filter(pk=PredictionLog.objects.order_by("id")[0].pk).update(
        model_version_label="2"
    )
    PredictionLog.objects.filter(model_version_label="v7").update(model_version_label="7")

    normalise_labels(apps, None)

    labels = sorted(PredictionLog.objects.values_list("model_version_label", flat=True))
    assert labels == ["edge", "v2", "v2", "v7"]
    now = timezone.now()
    board = dashboard(start=now - timedelta(days=2), end=now + timedelta(days=1))
    assert board.rollups_missing  # the page says to rebuild, and counts from the logs meanwhile
    assert sorted(board.per_version_day) == ["edge", "v2", "v7"]
    production_rollups_rebuild()
    assert set(PredictionLogHour.objects.values_list("model_version_label", flat=True)) == {
        "edge",
        "v2",
        "v7",
    }
