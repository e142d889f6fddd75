from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image as PILImage
from rest_framework.test import APIClient

from curation.models import Image, Job, JobStatus
from curation.tasks import process_images
from inference.models import ModelVersion, OutputKind, Prediction
from inference.preprocessing import PreprocessSpec
from inference.services import (
    model_version_activate,
    model_version_register,
    predictions_make,
    predictions_recompute,
)
from inference.tasks import recompute_predictions
from tests.inference.onnx_models import channel_means, labels, linear, to_bytes

pytestmark = pytest.mark.django_db

SMALL = PreprocessSpec(input_size=8)


def register(seed: int, classes: int = 6) -> ModelVersion:
    return model_version_register(
        onnx_data=to_bytes(linear(classes=classes, seed=seed)),
        labels=labels(*[f"class {i}" for i in range(classes)]),
        name=f"tiny {seed}",
        actor=None,
        spec=SMALL,
    ).version


def activate_and_run(version: ModelVersion) -> Job:
    job = model_version_activate(version=version, actor=None)
    assert job is not None
    recompute_predictions.apply(args=[job.pk])
    job.refresh_from_db()
    return job


def test_new_images_get_top5_from_the_active_model_when_processed(
    make_image: Callable[..., Image],
) -> None:
    activate_and_run(register(seed=1))
    images = [make_image() for _ in range(3)]
    process_images([image.pk for image in images])
    predictions = Prediction.objects.filter(image__in=images)
    assert predictions.count() == 3
    prediction = predictions.first()
    assert prediction is not None
    assert len(prediction.class_names) == 5
    assert prediction.scores == sorted(prediction.scores, reverse=True)
    assert prediction.top1_score == prediction.scores[0]
    assert prediction.class_names[0] == f"class {prediction.top1_index}"


def test_processing_without_an_active_model_makes_no_suggestions(
    make_image: Callable[..., Image],
) -> None:
    register(seed=1)
    image = make_image()
    process_images([image.pk])
    assert not Prediction.objects.exists()


def test_activating_another_model_recomputes_suggestions_as_a_job(
    make_image: Callable[..., Image],
) -> None:
    images = [make_image() for _ in range(4)]
    first = register(seed=1)
    job = activate_and_run(first)
    assert job.status == JobStatus.SUCCEEDED
    assert (job.done, job.total) == (4, 4)
    assert Prediction.objects.filter(model_version=first).count() == 4

    second = register(seed=2)
    job = activate_and_run(second)
    assert job.status == JobStatus.SUCCEEDED
    assert job.result["written"] == 4
    assert set(
        Prediction.objects.filter(model_version=second).values_list("image_id", flat=True)
    ) == {image.pk for image in images}
    # The job is idempotent: running it again writes nothing twice.
    assert Job.objects.filter(kind="inference.recompute_predictions").count() == 2
    rerun = model_version_activate(version=first, actor=None)
    assert rerun is not None
    recompute_predictions.apply(args=[rerun.pk])
    rerun.refresh_from_db()
    assert rerun.result["written"] == 0


def test_a_recompute_over_many_pages_scores_every_image_and_reports_to_the_end(
    make_image: Callable[..., Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.files.storage import default_storage

    monkeypatch.setattr("inference.services.BATCH_SIZE", 2)

    images = [make_image() for _ in range(11)]
    broken = images[5]
    with default_storage.open(broken.storage_name, "wb") as stream:
        stream.write(b"no longer a JPEG")
    version = register(seed=6)
    predictions_make(image_ids=[image.pk for image in images[:3]], version=version)
    model_version_activate(version=version, actor=None)
    version.refresh_from_db()
    reports: list[tuple[int, int]] = []

    result = predictions_recompute(
        version=version, progress=lambda done, total: reports.append((done, total)), chunk_size=4
    )

    assert result == {"images": 11, "written": 7}
    assert len(reports) >= 3 and reports[-1] == (11, 11)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    scores = dict(
        Prediction.objects.filter(model_version=version).values_list("image_id", "top1_score")
    )
    assert set(scores) == {image.pk for image in images} - {broken.pk}
    for image in images:
        image.refresh_from_db()
        assert image.suggestion_score == scores.get(image.pk), image.pk


def photo(colour: tuple[int, int, int], size: tuple[int, int]) -> io.BytesIO:
    out = io.BytesIO()
    PILImage.new("RGB", size, colour).save(out, format="PNG")
    out.seek(0)
    out.name = "photo.png"
    return out


def probe(**spec: object) -> ModelVersion:
    """A model whose three "scores" are the channel means of what preprocessing gave it."""
    layout = str(spec.get("layout", "NCHW"))
    return model_version_register(
        onnx_data=to_bytes(channel_means(layout=layout)),
        labels=labels("first", "second", "third"),
        name="probe",
        actor=None,
        spec=PreprocessSpec(input_size=8, **spec),  # type: ignore[arg-type]
        output_kind=OutputKind.PROBABILITIES,
    ).version


def channel_values(api: APIClient, version: ModelVersion, image: io.BytesIO) -> list[float]:
    response = api.post(
        "/api/v1/predict/",
        {"file": image, "model_version": version.number, "k": 3},
        format="multipart",
    )
    assert response.status_code == 200, response.json()
    by_index = {p["index"]: p["score"] for p in response.json()["predictions"]}
    return [by_index[i] for i in range(3)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, [200 / 255, 100 / 255, 50 / 255]),
        ({"channel_order": "BGR"}, [50 / 255, 100 / 255, 200 / 255]),
        ({"layout": "NHWC"}, [200 / 255, 100 / 255, 50 / 255]),
        ({"scale": 1.0, "mean": (100.0,), "std": (50.0,)}, [2.0, 0.0, -1.0]),
        (
            {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.5, 1.0)},
            [(200 / 255 - 0.5) / 0.25, (100 / 255 - 0.5) / 0.5, 50 / 255 - 0.5],
        ),
    ],
)
def test_predictions_follow_the_preprocessing_spec(
    api: APIClient, spec: dict[str, object], expected: list[float]
) -> None:
    values = channel_values(api, probe(**spec), photo((200, 100, 50), (40, 40)))
    assert values == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    ("mode", "white_fraction"), [("letterbox", 0.5), ("stretch", 1.0), ("center_crop", 1.0)]
)
def test_resize_modes_differ_as_documented(
    api: APIClient, mode: str, white_fraction: float
) -> None:
    # A white 2:1 picture: letterboxing keeps its shape and pads half the square with black.
    values = channel_values(api, probe(resize_mode=mode), photo((255, 255, 255), (80, 40)))
    assert values == pytest.approx([white_fraction] * 3, abs=1e-5)


def test_the_predict_api_uses_the_active_model_by_default(
    api: APIClient, make_image: Callable[..., Image]
) -> None:
    response = api.post("/api/v1/predict/", {"file": photo((1, 2, 3), (9, 9))}, format="multipart")
    assert response.status_code == 409
    assert "no model version is active" in response.json()["detail"]

    version = register(seed=3)
    activate_and_run(version)
    response = api.post(
        "/api/v1/predict/", {"file": photo((10, 200, 30), (30, 20)), "k": 2}, format="multipart"
    )
    body = response.json()
    assert body["model_version"] == version.number
    assert len(body["predictions"]) == 2


def test_the_predict_api_names_a_version_that_does_not_exist(api: APIClient) -> None:
    register(seed=4)
    response = api.post(
        "/api/v1/predict/",
        {"file": photo((1, 2, 3), (9, 9)), "model_version": 7},
        format="multipart",
    )
    assert response.status_code == 404
    assert response.json()["detail"] == "No model version v7."


def test_the_predict_api_refuses_a_file_that_is_not_an_image(api: APIClient) -> None:
    version = register(seed=4)
    activate_and_run(version)
    bogus = io.BytesIO(b"<html>not an image</html>")
    bogus.name = "x.jpg"
    response = api.post("/api/v1/predict/", {"file": bogus}, format="multipart")
    assert response.status_code == 400
    assert "not a supported image" in response.json()["detail"]


def test_stored_and_api_predictions_agree(api: APIClient, make_image: Callable[..., Image]) -> None:
    version = register(seed=5)
    image = make_image(size=(120, 70))
    activate_and_run(version)
    stored = Prediction.objects.get(image=image, model_version=version)
    from django.core.files.storage import default_storage

    with default_storage.open(image.storage_name, "rb") as stream:
        upload = io.BytesIO(stream.read())
    upload.name = "same.jpg"
    response = api.post("/api/v1/predict/", {"file": upload}, format="multipart")
    assert [p["index"] for p in response.json()["predictions"]] == stored.class_indices
    assert np.allclose([p["score"] for p in response.json()["predictions"]], stored.scores)
