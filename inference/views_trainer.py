"""Pages of the quick trainer, and the button that starts a label-error ranking."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.decorators import request_user, reviewer_required
from config.query import whole_number
from curation.models import DatasetStatus, DatasetVersion
from inference.embeddings import EmbeddingError, embedding_version
from inference.evaluation import EvaluationError
from inference.label_errors import DEFAULT_FOLDS, MAX_FOLDS, label_error_ranking_start
from inference.trainer import (
    DEFAULT_C,
    DEFAULT_MAX_ITER,
    MAX_ITER_LIMIT,
    TrainingError,
    training_links,
    training_start,
    trainings_recent,
)


def _number(text: str | None, kind: type, default: float) -> float:
    if text is None or not text.strip():
        return default
    try:
        return kind(text)
    except ValueError:
        raise TrainingError(f"{text!r} is not a number.") from None


@reviewer_required
def trainer(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        dataset_id = whole_number(request.POST.get("dataset"))
        dataset = DatasetVersion.objects.filter(pk=dataset_id or 0).first()
        try:
            if dataset is None:
                raise TrainingError("Choose a dataset version.")
            job = training_start(
                dataset=dataset,
                actor=request_user(request),
                C=_number(request.POST.get("C"), float, DEFAULT_C),
                max_iter=int(_number(request.POST.get("max_iter"), int, DEFAULT_MAX_ITER)),
                activate=request.POST.get("activate") == "1",
            )
        except TrainingError as exc:
            messages.error(request, str(exc))
            return redirect("inference:trainer")
        messages.success(request, f"Training on {dataset.name} queued as job {job.pk}.")
        return redirect("inference:trainer")
    jobs = trainings_recent()
    links = training_links(jobs)
    rows = [{"job": job, "version": links[job.pk][0], "run": links[job.pk][1]} for job in jobs]
    try:
        embedding = embedding_version()
    except EmbeddingError:
        embedding = None
    return render(
        request,
        "inference/trainer.html",
        {
            "rows": rows,
            "datasets": DatasetVersion.objects.filter(status=DatasetStatus.READY).order_by("-id")[
                :50
            ],
            "embedding": embedding,
            "defaults": {"C": DEFAULT_C, "max_iter": DEFAULT_MAX_ITER},
            "max_iter_limit": MAX_ITER_LIMIT,
            "live": any(not job.is_finished for job in jobs),
        },
    )


@reviewer_required
@require_POST
def label_errors_start(request: HttpRequest) -> HttpResponse:
    try:
        folds = int(request.POST.get("folds") or DEFAULT_FOLDS)
        run = label_error_ranking_start(actor=request_user(request), folds=folds)
    except ValueError:
        messages.error(request, f"Folds must be a whole number from 2 to {MAX_FOLDS}.")
        return redirect("inference:evaluations")
    except EvaluationError as exc:
        messages.error(request, str(exc))
        return redirect("inference:evaluations")
    messages.success(request, f"Label-error ranking {run.pk} queued as a job.")
    return redirect("inference:evaluation", pk=run.pk)
