"""The model registry page: versions, upload, activation, notes."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import request_user as _user
from accounts.decorators import reviewer_required
from inference.models import EvaluationRun, ModelVersion, OutputKind, ResizeMode
from inference.preprocessing import PreprocessSpec
from inference.services import (
    label_classes_create,
    model_version_activate,
    model_version_update,
)
from inference.uploads import model_upload_start, model_uploads_recent, model_uploads_waiting
from inference.validation import ModelRejected

View = Callable[..., HttpResponse]


@login_required
@require_GET
def model_list(request: HttpRequest) -> HttpResponse:
    versions = (
        ModelVersion.objects.select_related("uploaded_by")
        .annotate(
            unmatched_count=Count("label_matches", filter=Q(label_matches__label_class=None)),
            evaluation_count=Subquery(
                EvaluationRun.objects.filter(model_version=OuterRef("pk"))
                .order_by()
                .values("model_version")
                .annotate(count=Count("pk"))
                .values("count")
            ),
        )
        .order_by("-number")
    )
    uploads = model_uploads_recent()
    return render(
        request,
        "inference/models.html",
        {
            "versions": versions,
            "uploads": uploads,
            "uploads_live": model_uploads_waiting(uploads),
            "limits": {
                "bytes": settings.LOUPE_MAX_MODEL_BYTES,
                "nodes": settings.LOUPE_MAX_MODEL_NODES,
                "memory": settings.LOUPE_MODEL_VALIDATION_MEMORY,
            },
            "can_edit": _user(request).is_reviewer,
            "resize_modes": ResizeMode.choices,
            "output_kinds": OutputKind.choices,
            "defaults": PreprocessSpec(),
        },
    )


def _floats(text: str) -> tuple[float, ...]:
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise ModelRejected(f"{text!r} is not a list of numbers") from None


@reviewer_required
@require_POST
def model_upload(request: HttpRequest) -> HttpResponse:
    onnx_file = request.FILES.get("onnx")
    labels_file = request.FILES.get("labels")
    if onnx_file is None or labels_file is None:
        messages.error(request, "Choose an .onnx file and its label map (a JSON list).")
        return redirect("inference:models")
    post = request.POST
    try:
        try:
            input_size = int(post.get("input_size") or 224)
            scale = float(post.get("scale") or 1 / 255)
        except ValueError:
            raise ModelRejected("input size and scale must be numbers") from None
        spec = PreprocessSpec(
            input_size=input_size,
            layout=post.get("layout") or "NCHW",
            channel_order=post.get("channel_order") or "RGB",
            scale=scale,
            mean=_floats(post.get("mean", "")),
            std=_floats(post.get("std", "")),
            resize_mode=post.get("resize_mode") or ResizeMode.LETTERBOX,
        )
        job = model_upload_start(
            onnx_file=onnx_file,
            labels=labels_file.read(),
            name=post.get("name") or (onnx_file.name or "").rsplit(".", 1)[0],
            actor=_user(request),
            spec=spec,
            output_kind=post.get("output_kind") or OutputKind.LOGITS,
            embedding_output=post.get("embedding_output", "").strip(),
            notes=post.get("notes", ""),
            activate=bool(post.get("activate")),
            create_classes=bool(post.get("create_classes")),
        )
    except ModelRejected as exc:
        messages.error(request, f"Model refused: {exc}")
        return redirect("inference:models")
    messages.success(
        request,
        f"Received {job.params['name']} ({job.params['nodes']:,} nodes). The worker is "
        f"validating it (job {job.pk}); it becomes a version once the checks pass.",
    )
    return redirect(f"{reverse('inference:models')}#uploads")


@reviewer_required
@require_POST
def model_activate(request: HttpRequest, number: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, number=number)
    job = model_version_activate(version=version, actor=_user(request))
    if job is None:
        messages.info(request, f"Model v{number} is active already.")
    else:
        messages.success(
            request, f"Model v{number} is active; suggestions are being recomputed (job {job.pk})."
        )
    return redirect("inference:models")


@reviewer_required
@require_POST
def model_edit(request: HttpRequest, number: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, number=number)
    model_version_update(
        version=version, name=request.POST.get("name"), notes=request.POST.get("notes")
    )
    messages.success(request, f"Saved model v{number}.")
    return redirect("inference:models")


@reviewer_required
@require_POST
def model_create_classes(request: HttpRequest, number: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, number=number)
    created = label_classes_create(version=version, actor=_user(request))
    messages.success(request, f"Created {len(created)} classes from model v{number}'s labels.")
    return redirect("inference:models")


@login_required
@require_GET
def model_unmatched(request: HttpRequest, number: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, number=number)
    names = version.label_matches.filter(label_class=None).values_list("name", flat=True)
    return render(request, "inference/unmatched.html", {"version": version, "names": list(names)})
