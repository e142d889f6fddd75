"""Dataset version and benchmark set pages: build, inspect, export."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import reviewer_required
from accounts.models import User
from config.query import whole_number
from curation.models import (
    BenchmarkKind,
    BenchmarkSet,
    DatasetVersion,
    Image,
    ImageStatus,
    LabelClass,
)
from curation.selectors_exports import dataset_exports
from curation.services.dataset_jobs import (
    dataset_build_job_start,
    dataset_export_job_start,
)
from curation.services.datasets import (
    DEFAULT_MAX_PER_CLASS,
    DEFAULT_MIN_PER_CLASS,
    DEFAULT_STAGED_CAP,
    EXCLUSION_LABELS,
    EXPLORATORY_MIN_PER_CLASS,
    DatasetError,
    DatasetParams,
    benchmark_set_create,
    dataset_leakage_report,
    parse_ratios,
)
from curation.services.export import DEFAULT_SHARD_SIZE

# The class balance chart, in SVG user units.
CHART_WIDTH = 640
CHART_LABEL = 150
CHART_ROW = 20


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise DatasetError(f"{value!r} is not a whole number.") from None


@require_GET
@login_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    versions = DatasetVersion.objects.select_related("created_by", "job").order_by("-id")[:200]
    return render(
        request,
        "curation/datasets/list.html",
        {
            "current": "datasets",
            "versions": versions,
            "defaults": {
                "min": DEFAULT_MIN_PER_CLASS,
                "exploratory_min": EXPLORATORY_MIN_PER_CLASS,
                "max": DEFAULT_MAX_PER_CLASS,
                "staged_cap": DEFAULT_STAGED_CAP,
            },
        },
    )


@require_POST
@reviewer_required
def dataset_build(request: HttpRequest) -> HttpResponse:
    data = request.POST
    exploratory = data.get("exploratory") == "on"
    try:
        params = DatasetParams(
            min_per_class=_int(
                data.get("min_per_class"),
                EXPLORATORY_MIN_PER_CLASS if exploratory else DEFAULT_MIN_PER_CLASS,
            ),
            max_per_class=_int(data.get("max_per_class"), DEFAULT_MAX_PER_CLASS),
            staged_cap=_int(data.get("staged_cap"), DEFAULT_STAGED_CAP),
            ratios=parse_ratios(data.get("ratios") or "90,10,0"),
            seed=_int(data.get("seed"), 0),
            exploratory=exploratory,
        )
        version, _ = dataset_build_job_start(
            name=data.get("name", ""), params=params, actor=_user(request)
        )
    except DatasetError as exc:
        messages.error(request, str(exc))
        return redirect("datasets:list")
    messages.success(request, f"Building {version.name}; this page follows the job.")
    return redirect("datasets:detail", pk=version.pk)


def _chart(classes: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Horizontal stacked bars (train/val/test, or usable images of an excluded class) with
    the min and max cutoffs drawn as lines."""
    minimum, maximum = params.get("min_per_class", 0), params.get("max_per_class", 0)
    rows = [c for c in classes if c["status"] != "holding"]
    largest = max([1, maximum, minimum, *(max(c["total"], c["eligible"]) for c in rows)])
    span = CHART_WIDTH - CHART_LABEL - 40
    scale = span / (largest * 1.05 or 1)
    bars = []
    for index, row in enumerate(rows):
        y = 24 + index * CHART_ROW
        x = CHART_LABEL
        segments = []
        if row["status"] == "included":
            # Test in two parts: its requested share, then the overflow beyond the maximum.
            overflow = row.get("overflow_in_test", 0)
            parts = [
                ("train", row["train"], "train"),
                ("val", row["val"], "val"),
                ("test", row["test"] - overflow, "test (requested share)"),
                ("overflow", overflow, "test (overflow beyond the maximum)"),
            ]
            for split, count, label in parts:
                width = count * scale
                if width:
                    segments.append(
                        {"split": split, "x": x, "width": width, "count": count, "label": label}
                    )
                x += width
        else:
            width = row["eligible"] * scale
            segments.append(
                {
                    "split": "excluded",
                    "x": x,
                    "width": width,
                    "count": row["eligible"],
                    "label": "usable images (class excluded)",
                }
            )
            x += width
        bars.append(
            {
                "y": y,
                "name": row["name"],
                "segments": segments,
                "end": x + 4,
                "label": row["total"] if row["status"] == "included" else row["eligible"],
                "included": row["status"] == "included",
            }
        )
    height = 24 + len(rows) * CHART_ROW + 8
    return {
        "width": CHART_WIDTH,
        "height": height,
        "label_x": CHART_LABEL - 6,
        "bars": bars,
        "min_x": CHART_LABEL + minimum * scale,
        "max_x": CHART_LABEL + maximum * scale,
        "min": minimum,
        "max": maximum,
        "bar_height": CHART_ROW - 6,
    }


@require_GET
@login_required
def dataset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion.objects.select_related("created_by", "job"), pk=pk)
    summary = version.summary or {}
    classes = summary.get("classes", [])
    for row in classes:
        row["excluded_list"] = [
            (EXCLUSION_LABELS.get(reason, reason), count)
            for reason, count in row.get("excluded", {}).items()
        ]
        row["staged_total"] = row.get("staged", 0) + row.get("synthetic", 0)
        # Where a group took some of the overflow's places in train or val, test holds fewer.
        row["overflow_in_test"] = min(row.get("overflow", 0), row.get("test", 0))
        ratios = row.get("ratios")
        if ratios:
            row["ratio_cells"] = [
                (split, ratios["requested"][split], ratios["achieved"][split])
                for split in ("train", "val", "test")
            ]
    exports = dataset_exports(version=version)[:20]
    return render(
        request,
        "curation/datasets/detail.html",
        {
            "current": "datasets",
            "version": version,
            "summary": summary,
            "classes": classes,
            "chart": _chart(classes, version.params) if classes else None,
            "excluded_totals": [
                (EXCLUSION_LABELS.get(reason, reason), count)
                for reason, count in summary.get("excluded", {}).items()
            ],
            "leakage": dataset_leakage_report(version=version),
            "overflow_total": sum(row["overflow_in_test"] for row in classes),
            "ratios_off": [
                row for row in classes if row.get("ratios") and not row["ratios"]["within"]
            ],
            "exports": exports,
            "default_shard_size": DEFAULT_SHARD_SIZE,
        },
    )


@require_POST
@reviewer_required
def dataset_export(request: HttpRequest, pk: int) -> HttpResponse:
    version = get_object_or_404(DatasetVersion, pk=pk)
    try:
        if version.status != "ready":
            raise DatasetError("Only a built version can be exported.")
        letterbox = _int(request.POST.get("letterbox"), 0) or None
        if letterbox is not None and not 16 <= letterbox <= 4096:
            raise DatasetError("The letterbox size is between 16 and 4096 pixels.")
        shard_size = _int(request.POST.get("shard_size"), DEFAULT_SHARD_SIZE)
        if shard_size < 1:
            raise DatasetError("The shard size must be at least 1.")
        job = dataset_export_job_start(
            version=version,
            format=request.POST.get("format", "webdataset"),
            letterbox=letterbox,
            shard_size=shard_size,
            actor=_user(request),
            hard_links=request.POST.get("hard_links") == "1",
        )
    except DatasetError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Export job #{job.pk} started.")
    return redirect("datasets:detail", pk=version.pk)


@require_GET
@login_required
def benchmark_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "curation/datasets/benchmarks.html",
        {
            "current": "datasets",
            "sets": BenchmarkSet.objects.select_related("created_by").order_by("name", "-version"),
            "kinds": BenchmarkKind.choices,
            "classes": LabelClass.objects.order_by("name"),
        },
    )


@require_POST
@reviewer_required
def benchmark_create(request: HttpRequest) -> HttpResponse:
    data = request.POST
    try:
        ids: list[int] = []
        text = data.get("image_ids", "").replace(",", " ").split()
        for token in text:
            image_id = whole_number(token)
            if image_id is None:
                raise DatasetError(f"{token!r} is not an image id.")
            ids.append(image_id)
        class_id = data.get("label_class", "")
        if class_id:
            limit = _int(data.get("limit"), 50)
            ids.extend(
                Image.objects.filter(
                    subclass__label_class_id=int(class_id), status=ImageStatus.ACTIVE
                )
                .order_by("sha256")
                .values_list("pk", flat=True)[:limit]
            )
        benchmark = benchmark_set_create(
            name=data.get("name", ""),
            kind=data.get("kind", BenchmarkKind.CUSTOM),
            image_ids=ids,
            actor=_user(request),
            description=data.get("description", ""),
        )
    except (DatasetError, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect("datasets:benchmarks")
    messages.success(request, f"Saved {benchmark} with {benchmark.member_count} images.")
    return redirect("datasets:benchmark", pk=benchmark.pk)


@require_GET
@login_required
def benchmark_detail(request: HttpRequest, pk: int) -> HttpResponse:
    benchmark = get_object_or_404(BenchmarkSet, pk=pk)
    members = benchmark.members.select_related("image", "label_class").order_by("image__sha256")
    return render(
        request,
        "curation/datasets/benchmark_detail.html",
        {
            "current": "datasets",
            "benchmark": benchmark,
            "members": members[:300],
            "shown": min(300, benchmark.member_count),
            "versions": BenchmarkSet.objects.filter(name=benchmark.name).order_by("-version"),
        },
    )
