"""``manage.py demo`` ends with a model that knows the demo's classes: the backbone installed,
the dataset "demo" built, the quick head trained on it and evaluated, that version active and
its suggestions computed for the inbox, each through the job the pages use."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from curation.demo import DIGIT_CLASS, NOT_A_DIGIT_CLASS
from curation.models import DatasetVersion, Image, ImageStatus, Job, LabelClass
from inference.models import EvaluationRun, ImageEmbedding, ModelVersion, Prediction
from inference.services import model_version_activate
from tests.inference.onnx_models import tiny_embedder

pytestmark = pytest.mark.django_db

DEMO_CLASSES = sorted([DIGIT_CLASS.format(d) for d in range(10)] + [NOT_A_DIGIT_CLASS])


def demo(*options: str) -> dict[str, Any]:
    out = StringIO()
    call_command("demo", "--small", "--json", *options, stdout=out)
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


def inbox() -> Any:
    return Image.objects.filter(subclass__isnull=True, status=ImageStatus.ACTIVE)


def test_the_demo_ends_with_an_active_model_that_suggests_the_demos_classes(
    api: APIClient,
) -> None:
    result = demo()["model"]

    active = ModelVersion.objects.get(is_active=True)
    backbone = ModelVersion.objects.get(number=result["backbone"]["number"])
    assert len(backbone.label_map) == 1000 and not backbone.is_active  # ImageNet stays aside
    assert active.number == result["model"]["number"] and active.name == "Quick head on demo"
    assert sorted(active.label_map) == DEMO_CLASSES
    assert not active.label_matches.filter(label_class=None).exists()

    # Every job ran to the end, as the pages would have run it.
    kinds = dict(Job.objects.values_list("kind", "status"))
    assert kinds == {
        "inference.embeddings_compute": "succeeded",
        "curation.build_dataset": "succeeded",
        "inference.train_model": "succeeded",
        "inference.evaluate": "succeeded",
        "inference.recompute_predictions": "succeeded",
    }
    dataset = DatasetVersion.objects.get(name="demo")
    assert dataset.status == "ready" and dataset.params["ratios"] == [70, 15, 15]
    run = EvaluationRun.objects.get(model_version=active)
    assert run.status == "done" and run.split == "test" and run.dataset == dataset

    # Suggestions for every inbox image, from the demo's classes, on the labelling queue.
    waiting = inbox()
    assert waiting.count() == result["suggestions"]["inbox_suggested"] > 0
    predicted = Prediction.objects.filter(model_version=active, image__in=waiting)
    assert predicted.count() == waiting.count()
    assert {p.class_names[0] for p in predicted} <= set(DEMO_CLASSES)
    first = api.get("/api/v1/labelling/queue/", {"count": 1}).json()["next"][0]
    names = [s["name"] for s in first["suggestions"]]
    assert len(names) == 3 and set(names) <= set(DEMO_CLASSES)
    assert all(s["subclass_id"] for s in first["suggestions"])  # one key answers each

    test = result["test"]
    assert test["images"] == dataset.summary["totals"]["test"] > 0
    assert 0.7 < test["top1"] <= test["top3"] <= 1
    assert (
        ImageEmbedding.objects.filter(model_version=backbone).count()
        == Image.objects.filter(status=ImageStatus.ACTIVE).count()
    )


def test_running_the_demo_again_trains_nothing_new() -> None:
    demo()
    jobs, versions = Job.objects.count(), ModelVersion.objects.count()

    again = demo()["model"]

    assert Job.objects.count() == jobs and ModelVersion.objects.count() == versions
    assert again["model"]["created"] is False and again["backbone"]["installed"] is False
    assert "trained before" in again["lines"][2]


def test_the_demo_leaves_a_model_activated_since_alone() -> None:
    first = demo()["model"]["model"]["number"]
    other = tiny_embedder()
    model_version_activate(version=other, actor=None)

    demo()

    assert ModelVersion.objects.get(is_active=True) == other
    assert ModelVersion.objects.filter(number=first).exists()


def test_no_embeddings_leaves_the_librarys_embeddings_to_the_worker() -> None:
    result = demo("--no-embeddings")

    assert "embeddings" not in result["model"]
    assert not Job.objects.filter(kind="inference.embeddings_compute").exists()
    dataset = DatasetVersion.objects.get(name="demo")
    fitted = dataset.summary["totals"]["train"] + dataset.summary["totals"]["val"]
    # The trainer embedded what it fits on, nothing more; suggestions are there all the same.
    assert ImageEmbedding.objects.count() == fitted < Image.objects.count()
    active = ModelVersion.objects.get(is_active=True)
    assert Prediction.objects.filter(model_version=active, image__in=inbox()).count() == (
        inbox().count()
    )


def test_no_model_stops_after_the_images() -> None:
    result = demo("--no-model")

    assert not ModelVersion.objects.exists() and not Job.objects.exists()
    assert LabelClass.objects.filter(name=NOT_A_DIGIT_CLASS).exists()
    assert "install_backbone" in result["model"]["lines"][0]
