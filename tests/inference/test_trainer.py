from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import DatasetAssignment, DatasetVersion, Image, Job, SubClass
from curation.services.datasets import DatasetParams, dataset_build, dataset_version_create
from curation.services.taxonomy import class_create
from inference.embeddings import embedding_matrix
from inference.head import (
    HEAD_OUTPUT,
    HeadError,
    compose,
    head_fit,
    head_onnx,
    l2_normalise,
    pipeline_make,
)
from inference.models import EvaluationRun, ModelVersion, OutputKind
from inference.preprocessing import PreprocessSpec, load_input
from inference.tasks import train_model
from inference.trainer import DEFAULT_MAX_ITER, TRAIN_KIND, TrainingError, training_start
from tests.inference import onnx_models
from tests.inference.digits import digits_with_backbone


def _clusters(n: int, dims: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw (unnormalised) non-negative embeddings around one centre per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims))
    labels = rng.integers(0, classes, n)
    features = np.abs(centres[labels] + rng.normal(size=(n, dims)) * 2.0)
    return features.astype(np.float32), labels


def _session(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("classes", [2, 7])
def test_the_head_only_onnx_gives_scikit_learns_probabilities(classes: int) -> None:
    raw, labels = _clusters(300, 64, classes)
    head, pipeline = head_fit(features=l2_normalise(raw), labels=labels, class_count=classes, C=0.5)
    fresh = np.abs(np.random.default_rng(9).normal(size=(50, 64))).astype(np.float32) * 3
    onnx_probabilities = _session(head_onnx(head)).run([HEAD_OUTPUT], {"embedding": fresh})[0]
    expected = pipeline.predict_proba(l2_normalise(fresh))
    assert onnx_probabilities.shape == (50, classes)
    np.testing.assert_allclose(onnx_probabilities, expected, atol=1e-4)
    np.testing.assert_allclose(head.probabilities(l2_normalise(fresh)), expected, atol=1e-6)


def test_a_class_without_training_images_is_never_predicted() -> None:
    raw, labels = _clusters(200, 16, 3)
    head, _ = head_fit(features=l2_normalise(raw), labels=labels, class_count=5)
    probabilities = head.probabilities(l2_normalise(raw))
    assert probabilities.shape == (200, 5)
    assert probabilities[:, 3:].max() < 1e-12
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_a_head_needs_two_classes() -> None:
    raw, _ = _clusters(20, 8, 2)
    with pytest.raises(HeadError, match="two classes"):
        head_fit(features=raw, labels=np.zeros(20, np.int64), class_count=2)


def test_the_composed_model_keeps_the_embedding_and_drops_the_old_classifier() -> None:
    base = onnx_models.to_bytes(onnx_models.linear(classes=4))  # embedding is 3-d here
    raw, labels = _clusters(120, 3, 3)
    head, pipeline = head_fit(features=l2_normalise(raw), labels=labels, class_count=3)
    composed = compose(embedding_model=base, embedding_output="embedding", head=head)
    model = onnx.load_model_from_string(composed)
    assert [o.name for o in model.graph.output] == [HEAD_OUTPUT, "embedding"]
    assert "logits" not in {name for node in model.graph.node for name in node.output}
    images = np.random.default_rng(3).uniform(0, 1, size=(6, 3, 8, 8)).astype(np.float32)
    embedding = _session(base).run(["embedding"], {"image": images})[0]
    probabilities, embedding_again = _session(composed).run(None, {"image": images})
    np.testing.assert_array_equal(embedding_again, embedding)
    np.testing.assert_allclose(
        probabilities, pipeline.predict_proba(l2_normalise(embedding)), atol=1e-4
    )


def test_composing_refuses_an_embedding_of_another_size() -> None:
    base = onnx_models.to_bytes(onnx_models.linear(classes=4))
    raw, labels = _clusters(60, 5, 2)
    head, _ = head_fit(features=l2_normalise(raw), labels=labels, class_count=2)
    with pytest.raises(HeadError, match="expects"):
        compose(embedding_model=base, embedding_output="embedding", head=head)


# --- Training runs --------------------------------------------------------------------------


def _dataset(name: str, *, minimum: int = 5, ratios: tuple[int, int, int] = (60, 20, 20)):
    params = DatasetParams(min_per_class=minimum, ratios=ratios, exploratory=True)
    return dataset_build(version=dataset_version_create(name=name, params=params, actor=None))


@pytest.fixture
def tiny_library(make_image: Callable[..., Image]) -> ModelVersion:
    """An embedding model whose 3-d "embedding" is the mean colour, and 3 classes of
    12 images each."""
    embedder = onnx_models.tiny_embedder()
    for name in ("Robin", "Sparrow", "Wren"):
        subclass = SubClass.objects.get(label_class=class_create(name=name, actor=None))
        for _ in range(12):
            make_image(subclass)
    return embedder


@pytest.mark.django_db
def test_a_trained_model_matches_scikit_learn_through_the_real_backbone() -> None:
    """The demo's digits embedded by EfficientNet-Lite0: the composed model's probabilities on
    images equal scikit-learn's on the embeddings the backbone gives for the same images."""
    embedder = digits_with_backbone()
    dataset = _dataset("digits")
    out = io.StringIO()
    call_command("train_model", "--dataset", "digits", "--C", "0.5", "--json", stdout=out)
    summary = json.loads(out.getvalue())

    version = ModelVersion.objects.get(number=summary["model_version"])
    names = sorted(dataset.summary["label_map"], key=dataset.summary["label_map"].get)
    assert version.label_map == names
    assert version.output_kind == OutputKind.PROBABILITIES
    assert version.embedding_output == "embedding"
    assert PreprocessSpec.of(version) == PreprocessSpec.of(embedder)
    assert "Validation" in version.notes and "C=0.5" in version.notes
    validation = summary["validation"]
    assert validation["images"] == summary["images"]["val"] > 0
    assert 0.5 < validation["accuracy"] <= validation["top3_accuracy"] <= 1
    assert validation["log_loss"] > 0
    assert summary["seconds"]["head"] < summary["seconds"]["total"]

    run = EvaluationRun.objects.get(pk=summary["evaluation_id"])
    assert run.model_version == version and run.dataset == dataset and run.split == "test"
    assert run.status == "done"
    assert run.metrics["images_scored"] == summary["images"]["test"]
    assert summary["test"]["accuracy"] == run.metrics["sets"]["test"]["metrics"]["accuracy"]

    # scikit-learn, refitted on the same stored embeddings, against the composed ONNX model.
    index = {name: i for i, name in enumerate(names)}
    train = list(
        DatasetAssignment.objects.filter(version=dataset, split="train")
        .order_by("image_id")
        .values_list("image_id", "label_class__name")
    )
    ids, features = embedding_matrix(image_ids=[i for i, _ in train], model_version=embedder)
    label_of = dict(train)
    pipeline = pipeline_make(C=0.5, max_iter=DEFAULT_MAX_ITER).fit(
        features, [index[label_of[int(i)]] for i in ids]
    )
    val_images = Image.objects.filter(
        pk__in=DatasetAssignment.objects.filter(version=dataset, split="val").values("image_id")
    ).order_by("pk")[:12]
    spec = PreprocessSpec.of(embedder)
    batch = []
    for image in val_images:
        with default_storage.open(image.storage_name, "rb") as stream:
            batch.append(load_input(stream, spec))
    inputs = {embedder.input_name: np.stack(batch)}
    with default_storage.open(embedder.onnx_file, "rb") as stream:
        embedding = _session(stream.read()).run(["embedding"], inputs)[0]
    with default_storage.open(version.onnx_file, "rb") as stream:
        probabilities, embedding_again = _session(stream.read()).run(None, inputs)
    np.testing.assert_allclose(embedding_again, embedding, atol=1e-5)
    np.testing.assert_allclose(
        probabilities, pipeline.predict_proba(l2_normalise(embedding)), atol=1e-4
    )


@pytest.mark.django_db
def test_the_training_task_registers_the_model_and_queues_its_evaluation(
    tiny_library: ModelVersion, reviewer: User
) -> None:
    dataset = _dataset("birds", ratios=(50, 25, 25))
    job = training_start(dataset=dataset, actor=reviewer, C=2.0, max_iter=50, enqueue=False)
    assert job.kind == TRAIN_KIND and job.params["dataset"] == "birds"
    train_model(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    result = job.result
    version = ModelVersion.objects.get(number=result["model_version"])
    assert version.label_map == ["Robin", "Sparrow", "Wren"]
    assert result["images"]["train"] + result["images"]["val"] + result["images"]["test"] == 36
    assert set(result["validation"]) == {"images", "accuracy", "log_loss", "top3_accuracy"}
    run = EvaluationRun.objects.get(pk=result["evaluation_id"])
    assert run.model_version == version and run.split == "test" and run.status == "queued"
    assert run.job is not None and run.job.kind == "inference.evaluate"
    assert not version.is_active and result["activated"] is False


@pytest.mark.django_db
def test_training_refuses_what_it_cannot_do(tiny_library: ModelVersion) -> None:
    dataset = _dataset("birds")
    with pytest.raises(TrainingError, match="C must be"):
        training_start(dataset=dataset, actor=None, C=0)
    with pytest.raises(TrainingError, match="Max iterations"):
        training_start(dataset=dataset, actor=None, max_iter=0)
    DatasetVersion.objects.filter(pk=dataset.pk).update(status="building")
    dataset.refresh_from_db()
    with pytest.raises(TrainingError, match="not built"):
        training_start(dataset=dataset, actor=None)


# --- API and page ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_starts_a_training_as_a_job(
    tiny_library: ModelVersion, reviewer_api: APIClient, api: APIClient
) -> None:
    _dataset("birds")
    response = reviewer_api.post(
        "/api/v1/trainings/", {"dataset": "birds", "C": 0.3, "max_iter": 40}, format="json"
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["kind"] == TRAIN_KIND and body["status"] == "queued"
    assert body["params"]["C"] == 0.3 and body["params"]["max_iter"] == 40
    listed = reviewer_api.get("/api/v1/trainings/").json()
    assert [job["id"] for job in listed["results"]] == [body["id"]]
    missing = reviewer_api.post("/api/v1/trainings/", {"dataset": "nope"}, format="json")
    assert missing.status_code == 400 and "nope" in missing.json()["detail"]
    assert api.post("/api/v1/trainings/", {"dataset": "birds"}).status_code == 403


@pytest.mark.django_db
def test_the_trainer_page_starts_and_lists_trainings(
    tiny_library: ModelVersion, reviewer: User, labeller: User
) -> None:
    dataset = _dataset("birds", ratios=(50, 25, 25))
    client = Client()
    client.force_login(labeller)
    assert client.get("/models/train/").status_code == 403
    client.force_login(reviewer)
    page = client.get("/models/train/")
    assert page.status_code == 200 and 'id="trainer-form"' in page.content.decode()
    response = client.post("/models/train/", {"dataset": dataset.pk, "C": "0.8", "max_iter": "60"})
    assert response.status_code == 302
    job = Job.objects.get(kind=TRAIN_KIND)
    assert job.params == {
        "dataset_id": dataset.pk,
        "C": 0.8,
        "max_iter": 60,
        "activate": False,
        "dataset": "birds",
    }
    train_model(job.pk)
    html = client.get("/models/train/").content.decode()
    job.refresh_from_db()
    assert f"v{job.result['model_version']}" in html
    assert f"/models/evaluations/{job.result['evaluation_id']}/" in html
    bad = client.post("/models/train/", {"dataset": dataset.pk, "C": "x"}, follow=True)
    assert "is not a number" in bad.content.decode()


@pytest.mark.django_db
def test_the_schema_documents_trainings_and_label_error_rankings(api: APIClient) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    trainings = schema["paths"]["/api/v1/trainings/"]
    assert {"get", "post"} <= set(trainings)
    body = trainings["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    fields = schema["components"]["schemas"][body.rsplit("/", 1)[-1]]["properties"]
    assert {"dataset", "C", "max_iter", "activate"} <= set(fields)
    ranking = schema["paths"]["/api/v1/label-error-rankings/"]["post"]
    assert "202" in ranking["responses"]
