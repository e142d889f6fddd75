"""Inference's steps of the library page's getting-started path (``curation.getting_started``):
train a model, evaluate it, work through its Double-check queue. Registered from
``InferenceConfig.ready``; three indexed queries whatever the library's size."""

from __future__ import annotations

from django.db.models import Subquery
from django.urls import reverse

from curation.getting_started import Step
from inference.models import (
    DoubleCheckItem,
    DoubleCheckStatus,
    EvaluationRun,
    EvaluationStatus,
    LabelMatch,
)

# Double-check counts as done once an item of one of the latest runs has an answer.
RECENT_RUNS = 20


def model_steps() -> list[Step]:
    # A model "knows the library" when one of its labels is a library class: the quick
    # trainer's always are; an uploaded one's are once names match (ImageNet's rarely do).
    trained = LabelMatch.objects.filter(label_class__isnull=False).exists()
    latest_run = (
        EvaluationRun.objects.filter(status=EvaluationStatus.DONE)
        .order_by("-id")
        .values_list("pk", flat=True)
        .first()
    )
    recent = EvaluationRun.objects.order_by("-id").values("pk")[:RECENT_RUNS]
    answered = DoubleCheckItem.objects.filter(
        run_id__in=Subquery(recent),
        status__in=[s for s in DoubleCheckStatus.values if s != DoubleCheckStatus.OPEN],
    ).exists()
    return [
        Step(
            key="train",
            title="Train a model",
            text="Fit the quick trainer's head on a dataset, or upload an ONNX model.",
            action="Quick trainer",
            url=reverse("inference:trainer"),
            done=trained,
            reviewer_only=True,
        ),
        Step(
            key="evaluate",
            title="Evaluate it",
            text="Score a model on a dataset's test split or on the whole library.",
            action="Evaluations",
            url=reverse("inference:evaluations"),
            done=latest_run is not None,
            reviewer_only=True,
        ),
        Step(
            key="double_check",
            title="Double-check",
            text="Keep, relabel or remove the images the model doubts, one key each.",
            action="Open the queue" if latest_run else "Evaluations",
            url=reverse("inference:double-check", args=[latest_run])
            if latest_run
            else reverse("inference:evaluations"),
            done=answered,
            reviewer_only=True,
        ),
    ]
