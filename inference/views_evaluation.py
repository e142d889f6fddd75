"""Pages of evaluation runs: the list, a run's report, its Double-check queue."""

from __future__ import annotations

import contextlib
from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.decorators import request_user, reviewer_required
from config.query import whole_number
from curation.models import (
    BadReason,
    BenchmarkSet,
    DatasetVersion,
    DuplicateMember,
    Image,
    ImageStatus,
    LabelClass,
    SubClass,
)
from curation.services.images import ImageStateError, VersionConflict
from inference.evaluation import (
    HISTOGRAM_BINS,
    DoubleCheckError,
    EvaluationError,
    EvaluationScope,
    confused_pairs_update,
    double_check_resolve,
    evaluation_create,
    queue_add_images,
    queue_next,
    scope_describe,
)
from inference.label_errors import confident_images
from inference.models import (
    DoubleCheckItem,
    DoubleCheckKind,
    DoubleCheckStatus,
    EvaluationRun,
    EvaluationScopeKind,
    LabelMatch,
    ModelVersion,
    Prediction,
)
from labelling.models import Exemplar, ExemplarKind

EXEMPLARS = 6
HEATMAP_CLASSES = 10
EXCLUDED_LABELS = {
    "holding_class": "in holding classes",
    "class_not_in_label_map": "in classes the model does not know",
    "no_prediction": "without a prediction (unreadable or trashed)",
    "class_below_folds": "in classes with fewer images than folds",
    "no_embedding": "without an embedding (unreadable)",
}


@reviewer_required
def evaluation_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        number = whole_number(request.POST.get("model"))
        version = ModelVersion.objects.filter(number=number or 0).first()
        try:
            if version is None:
                raise EvaluationError("Choose a model version.")
            threshold = float(request.POST.get("threshold") or 0.95)
            run = evaluation_create(
                version=version,
                scope=EvaluationScope.parse(request.POST.get("scope", "library")),
                actor=request_user(request),
                threshold=threshold,
            )
        except (EvaluationError, ValueError) as exc:
            messages.error(request, str(exc))
            return redirect("inference:evaluations")
        messages.success(request, f"Evaluation {run.pk} queued as a job.")
        return redirect("inference:evaluation", pk=run.pk)
    shown = EvaluationRun.objects.all()
    selected = request.GET.get("model", "")
    version_shown = None
    number = whole_number(selected)
    if number is not None:
        version_shown = ModelVersion.objects.filter(number=number).first()
        if version_shown is not None:
            shown = shown.filter(model_version=version_shown)
    runs = list(
        shown.select_related("model_version", "job", "dataset", "benchmark_set")
        .defer("metrics")
        .annotate(item_count=Count("items"))
        .order_by("-id")[:100]
    )
    for run in runs:
        run.scope_text = scope_describe(run)  # type: ignore[attr-defined]
    scopes = [("library", "Labelled library")]
    for dataset in DatasetVersion.objects.order_by("-id")[:30]:
        scopes.append((f"dataset:{dataset.name}", f"Dataset {dataset.name} (all splits)"))
        scopes.append((f"dataset:{dataset.name}:test", f"Dataset {dataset.name}, test split"))
    for benchmark in BenchmarkSet.objects.order_by("name", "-version")[:50]:
        scopes.append((f"benchmark:{benchmark.name}:{benchmark.version}", f"Benchmark {benchmark}"))
    return render(
        request,
        "inference/evaluations/list.html",
        {
            "runs": runs,
            "versions": ModelVersion.objects.all()[:50],
            "scopes": scopes,
            "selected_model": selected,
            "version_shown": version_shown,
        },
    )


def _heatmap(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows (ground truth) and columns (predicted) of the classes in the top pairs."""
    rows: list[str] = []
    cols: list[str] = []
    for pair in pairs:
        if pair["true"] not in rows and len(rows) < HEATMAP_CLASSES:
            rows.append(pair["true"])
        if pair["predicted"] not in cols and len(cols) < HEATMAP_CLASSES:
            cols.append(pair["predicted"])
    counts = {(p["true"], p["predicted"]): p["count"] for p in pairs}
    peak = max(counts.values(), default=1)
    cell = 34
    left = 150
    top = 110
    cells = []
    for r, true in enumerate(rows):
        for c, predicted in enumerate(cols):
            count = counts.get((true, predicted), 0)
            share = count / peak if peak else 0
            # One hue, lightness carries the count (readable in greyscale and by colour-blind
            # readers); the number is printed in the cell too.
            lightness = 96 - share * 62
            cells.append(
                {
                    "x": left + c * cell,
                    "y": top + r * cell,
                    "count": count,
                    "fill": f"hsl(215, 70%, {lightness:.0f}%)",
                    "ink": "#fff" if lightness < 60 else "#1b1f24",
                    "title": f"{true} → {predicted}: {count}",
                }
            )
    return {
        "rows": [{"name": n, "y": top + i * cell + cell / 2} for i, n in enumerate(rows)],
        "cols": [{"name": n, "x": left + i * cell + cell / 2} for i, n in enumerate(cols)],
        "cells": cells,
        "cell": cell,
        "width": left + len(cols) * cell + 10,
        "height": top + len(rows) * cell + 10,
        "top": top,
        "left": left,
    }


@reviewer_required
def evaluation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(
        EvaluationRun.objects.select_related("model_version", "job", "dataset", "benchmark_set"),
        pk=pk,
    )
    metrics = run.metrics or {}
    sets = metrics.get("sets", {})
    chosen = request.GET.get("set") or next(iter(sets), "")
    report = sets.get(chosen, {})
    threshold = run.threshold
    with contextlib.suppress(ValueError):
        threshold = min(1.0, max(0.0, float(request.GET.get("threshold", threshold))))
    histogram = report.get("histogram", {})
    threshold_now = _threshold_from_histogram(histogram, threshold) if histogram else None
    status_counts = dict(
        DoubleCheckItem.objects.filter(run=run)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    pairs_text = "\n".join(
        f"{pair['a']} | {pair['b']} | {pair['weight']:g}" for pair in run.confused_pairs or []
    )
    other_runs = (
        EvaluationRun.objects.filter(
            scope_kind=run.scope_kind,
            dataset=run.dataset,
            split=run.split,
            benchmark_set=run.benchmark_set,
            status="done",
        )
        .exclude(pk=run.pk)
        .select_related("model_version")
        .defer("metrics")[:20]
    )
    excluded = [
        (EXCLUDED_LABELS.get(reason, reason), count)
        for reason, count in metrics.get("excluded", {}).items()
    ]
    return render(
        request,
        "inference/evaluations/report.html",
        {
            "run": run,
            "scope": scope_describe(run),
            "metrics": metrics,
            "excluded": excluded,
            "sets": list(sets),
            "chosen": chosen,
            "report": report,
            "threshold": threshold,
            "threshold_now": threshold_now,
            "heatmap": _heatmap(report.get("confused_pairs", [])),
            "queue": {
                "total": sum(status_counts.values()),
                "open": status_counts.get(DoubleCheckStatus.OPEN, 0),
                "done": sum(v for k, v in status_counts.items() if k != DoubleCheckStatus.OPEN),
            },
            "pairs_text": pairs_text,
            "slider": {"histogram": histogram, "bins": HISTOGRAM_BINS, "threshold": threshold},
            "other_runs": other_runs,
            "classes": LabelClass.objects.order_by("name").only("pk", "name"),
            "subclasses": SubClass.objects.select_related("label_class").order_by(
                "label_class__name", "name"
            ),
        },
    )


def _threshold_from_histogram(histogram: dict[str, list[int]], threshold: float) -> dict[str, Any]:
    start = min(HISTOGRAM_BINS, max(0, round(threshold * HISTOGRAM_BINS)))
    right = histogram.get("right", [])
    wrong = histogram.get("wrong", [])
    total = sum(right) + sum(wrong)
    above_right = sum(right[start:])
    above_wrong = sum(wrong[start:])
    return {
        "threshold": threshold,
        "images": total,
        "above_right": above_right,
        "above_wrong": above_wrong,
        "below": total - above_right - above_wrong,
        "true_positive_rate": above_right / total if total else None,
        "false_positive_rate": above_wrong / total if total else None,
        "right_share": _percent(above_right, total),
        "wrong_share": _percent(above_wrong, total),
        "below_share": _percent(total - above_right - above_wrong, total),
    }


def _percent(part: int, total: int) -> str:
    return f"{100 * part / total:.1f}%" if total else "–"


@reviewer_required
@require_POST
def evaluation_pairs(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(EvaluationRun.objects.select_related("model_version"), pk=pk)
    pairs = []
    for line in request.POST.get("pairs", "").splitlines():
        parts = [part.strip() for part in line.split("|")]
        if not any(parts):
            continue
        if len(parts) not in (2, 3):
            messages.error(request, f"Write each pair as 'Class A | Class B | weight': {line!r}")
            return redirect("inference:evaluation", pk=pk)
        pairs.append({"a": parts[0], "b": parts[1], "weight": parts[2] if len(parts) == 3 else 1})
    try:
        confused_pairs_update(run=run, pairs=pairs)
    except EvaluationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Pairs saved; the weighted log loss is recomputed.")
    return redirect(reverse("inference:evaluation", args=[pk]) + "#pairs")


@reviewer_required
def evaluation_compare(request: HttpRequest, pk: int, other: int) -> HttpResponse:
    """Two runs on the same scope side by side, and the images whose correctness flipped."""
    run = get_object_or_404(EvaluationRun.objects.select_related("model_version"), pk=pk)
    base = get_object_or_404(EvaluationRun.objects.select_related("model_version"), pk=other)
    names = [name for name in run.metrics.get("sets", {}) if name in base.metrics.get("sets", {})]
    rows = []
    for name in names:
        a = run.metrics["sets"][name].get("metrics")
        b = base.metrics["sets"][name].get("metrics")
        if not a or not b:
            continue
        for label, key in (
            ("Accuracy", ("accuracy",)),
            ("Macro F1", ("macro", "f1")),
            ("Weighted F1", ("weighted", "f1")),
            ("Log loss", ("log_loss",)),
            ("Weighted log loss", ("weighted_log_loss",)),
            ("Matthews", ("matthews",)),
            ("Errors", ("errors",)),
        ):
            value_a, value_b = _dig(a, key), _dig(b, key)
            delta = value_a - value_b if value_a is not None and value_b is not None else None
            rows.append({"set": name, "label": label, "a": value_a, "b": value_b, "delta": delta})
    flipped = _flipped(run, base)
    return render(
        request,
        "inference/evaluations/compare.html",
        {"run": run, "base": base, "rows": rows, "flipped": flipped, "scope": scope_describe(run)},
    )


def _dig(data: dict[str, Any], key: tuple[str, ...]) -> Any:
    for part in key:
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data


def _flipped(run: EvaluationRun, base: EvaluationRun) -> dict[str, list[Image]]:
    """Images in the Double-check queue (wrong or unsure) of one run but not the other."""
    wrong_now = set(
        DoubleCheckItem.objects.filter(run=run, why="misclassified").values_list(
            "image_id", flat=True
        )
    )
    wrong_before = set(
        DoubleCheckItem.objects.filter(run=base, why="misclassified").values_list(
            "image_id", flat=True
        )
    )
    fixed = sorted(wrong_before - wrong_now)[:60]
    broken = sorted(wrong_now - wrong_before)[:60]
    images = Image.objects.in_bulk(fixed + broken)
    return {
        "fixed": [images[i] for i in fixed if i in images],
        "broken": [images[i] for i in broken if i in images],
        "fixed_count": len(wrong_before - wrong_now),  # type: ignore[dict-item]
        "broken_count": len(wrong_now - wrong_before),  # type: ignore[dict-item]
    }


# --- Double-check ---------------------------------------------------------------------------


def _exemplars(
    run: EvaluationRun, label_class_id: int | None, exclude: int
) -> list[dict[str, Any]]:
    """Pinned good exemplars of the class first, then the images of that class the run's model
    predicted correctly with the highest scores."""
    if label_class_id is None:
        return []
    shown: list[dict[str, Any]] = []
    seen = {exclude}
    pinned = (
        Exemplar.objects.filter(
            label_class_id=label_class_id,
            kind=ExemplarKind.GOOD,
            image__status=ImageStatus.ACTIVE,
        )
        .select_related("image__subclass")
        .order_by("id")[:EXEMPLARS]
    )
    for exemplar in pinned:
        seen.add(exemplar.image_id)
        shown.append({"image": exemplar.image, "score": None, "pinned": True})
    index = (
        LabelMatch.objects.filter(model_version=run.model_version, label_class_id=label_class_id)
        .values_list("index", flat=True)
        .first()
    )
    if index is not None and len(shown) < EXEMPLARS:
        confident = (
            Prediction.objects.filter(
                model_version=run.model_version,
                top1_index=index,
                image__subclass__label_class_id=label_class_id,
                image__status=ImageStatus.ACTIVE,
            )
            .exclude(image_id__in=seen)
            .select_related("image__subclass")
            .order_by("-top1_score")[: EXEMPLARS - len(shown)]
        )
        for prediction in confident:
            shown.append(
                {"image": prediction.image, "score": prediction.top1_score, "pinned": False}
            )
    return shown


def _cross_validation_exemplars(
    run: EvaluationRun, label_class_id: int | None, exclude: int
) -> list[dict[str, Any]]:
    """Pinned good exemplars first, then images of the class the run ranked and did not
    queue (the out-of-sample heads agreed with their label)."""
    shown = [entry for entry in _exemplars(run, label_class_id, exclude) if entry["pinned"]]
    seen = {exclude} | {entry["image"].pk for entry in shown}
    for image in confident_images(
        run=run, label_class_id=label_class_id, exclude=seen, limit=EXEMPLARS - len(shown)
    ):
        shown.append({"image": image, "score": None, "pinned": False})
    return shown


@reviewer_required
def double_check(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(EvaluationRun.objects.select_related("model_version"), pk=pk)
    wanted = whole_number(request.GET.get("item"))
    item = None
    if wanted is not None:
        item = (
            DoubleCheckItem.objects.filter(run=run, pk=wanted)
            .select_related("image__subclass__label_class", "true_class", "predicted_class")
            .first()
        )
    kind = request.GET.get("kind") if request.GET.get("kind") in DoubleCheckKind.values else None
    item = item or queue_next(
        run, after_rank=whole_number(request.GET.get("after")) or 0, kind=kind
    )
    open_by_kind = dict(
        DoubleCheckItem.objects.filter(run=run, status=DoubleCheckStatus.OPEN)
        .values_list("kind")
        .annotate(n=Count("pk"))
        .values_list("kind", "n")
    )
    counts = dict(
        DoubleCheckItem.objects.filter(run=run)
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    total = sum(counts.values())
    done = total - counts.get(DoubleCheckStatus.OPEN, 0)
    context: dict[str, Any] = {
        "run": run,
        "item": item,
        "total": total,
        "done": done,
        "percent": round(100 * done / total) if total else 100,
        "kind": kind,
        "kinds": [
            {"value": value, "label": label, "open": open_by_kind.get(value, 0)}
            for value, label in DoubleCheckKind.choices
            if open_by_kind.get(value) or value == kind
        ],
        "bad_reasons": [
            {"key": str((i + 1) % 10) if i < 10 else "", "value": value, "label": label}
            for i, (value, label) in enumerate(BadReason.choices)
        ],
        "subclasses": SubClass.objects.select_related("label_class").order_by(
            "label_class__name", "-is_default", "name"
        ),
        "classes": LabelClass.objects.order_by("name").only("pk", "name"),
    }
    if item is not None:
        image = item.image
        if run.scope_kind == EvaluationScopeKind.CROSS_VALIDATION:
            # The run's model is the embedding model: the answer is the out-of-sample head's.
            top = [(item.predicted_name, item.top1_score)]
            exemplars = _cross_validation_exemplars
        else:
            prediction = Prediction.objects.filter(
                model_version=run.model_version, image=image
            ).first()
            top = []
            if prediction is not None:
                top = list(zip(prediction.class_names, prediction.scores, strict=False))[:3]
            exemplars = _exemplars
        current_class = image.subclass.label_class if image.subclass else None
        current_id = current_class.pk if current_class else None
        context.update(
            {
                "image": image,
                "current_class": current_class,
                # The label may have changed since the item was queued (someone else's answer).
                "relabelled_since": current_id != item.true_class_id,
                "predicted_is_label": item.predicted_class_id is not None
                and item.predicted_class_id == current_id,
                "same_prediction": item.predicted_class_id is not None
                and item.predicted_class_id == item.true_class_id,
                "top": top,
                "true_exemplars": exemplars(run, item.true_class_id, image.pk),
                "predicted_exemplars": exemplars(run, item.predicted_class_id, image.pk),
                "duplicate_group": DuplicateMember.objects.filter(image=image)
                .order_by("-group_id")
                .values_list("group_id", flat=True)
                .first(),
            }
        )
    return render(request, "inference/evaluations/double_check.html", context)


@reviewer_required
@require_POST
def double_check_action(request: HttpRequest, pk: int, item_id: int) -> HttpResponse:
    item = get_object_or_404(DoubleCheckItem, run_id=pk, pk=item_id)
    action = request.POST.get("action", "")
    subclass = None
    if action == "relabel":
        subclass = SubClass.objects.filter(pk=request.POST.get("subclass") or 0).first()
    note = request.POST.get("reason", "")
    if action == "trash":
        note = dict(BadReason.choices).get(note, note) or "bad image"
    kind = request.POST.get("kind", "")
    follow = f"&kind={kind}" if kind in DoubleCheckKind.values else ""
    again = reverse("inference:double-check", args=[pk]) + f"?item={item.pk}{follow}"
    try:
        double_check_resolve(
            item=item,
            action=action,
            actor=request_user(request),
            expected_version=whole_number(request.POST.get("version")),
            subclass=subclass,
            note=note,
        )
    except VersionConflict as exc:
        label = exc.image.subclass
        now = f"{label.label_class.name} / {label.name}" if label else "in the inbox"
        if exc.image.status != ImageStatus.ACTIVE:
            now = "in the trash"
        messages.error(
            request,
            f"Not applied: image {exc.image.pk} was changed by {exc.changed_by}"
            f"{' at ' + exc.changed_at if exc.changed_at else ''} while you looked at it "
            f"(it is now {now}). Here it is as it is now; answer again.",
        )
        return redirect(again)
    except (DoubleCheckError, ImageStateError) as exc:
        messages.error(request, str(exc))
        return redirect(again)
    return redirect(reverse("inference:double-check", args=[pk]) + f"?after={item.rank}{follow}")


@reviewer_required
@require_POST
def double_check_add(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(EvaluationRun.objects.select_related("model_version"), pk=pk)
    value = request.POST.get("target", "")
    kind, _, text = value.partition(":")
    ident = whole_number(text)
    try:
        if kind == "class" and ident is not None:
            added = queue_add_images(run=run, label_class=get_object_or_404(LabelClass, pk=ident))
        elif kind == "subclass" and ident is not None:
            added = queue_add_images(run=run, subclass=get_object_or_404(SubClass, pk=ident))
        else:
            raise EvaluationError("Choose a class or a sub-class.")
    except EvaluationError as exc:
        messages.error(request, str(exc))
        return redirect("inference:evaluation", pk=pk)
    messages.success(request, f"{added} images added to the Double-check queue.")
    return redirect("inference:double-check", pk=pk)
