"""The quality page: a histogram per metric with the library's thresholds drawn on it, the
worst images of each metric, and (reviewers) per-library threshold overrides.

Everything plotted comes from the baseline job (``QualityBaseline.histograms``); the page reads
one row for it plus one short indexed query per strip of worst images."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import request_user as _user
from accounts.decorators import reviewer_required
from curation.models import Image, SavedFilter
from curation.selectors_quality import (
    WorstStrip,
    quality_baseline,
    quality_job_pending,
    worst_images,
)
from curation.services.quality import (
    FLAG_LABELS,
    FLAGS,
    GRAYSCALE,
    GRAYSCALE_CHROMA,
    HISTOGRAM_METRICS,
    QUALITY_FILTERS,
    OverrideError,
    quality_baseline_job_start,
    quality_overrides_clean,
)

WORST_PER_STRIP = 8

# What each metric measures, in a user's words, and the strips of worst images it shows.
METRIC_HELP = {
    "brightness_p50": "Median grey level of the image (0 black – 255 white).",
    "contrast": "Standard deviation of the grey levels: low means flat and washed out.",
    "sharpness": "Variance of the Laplacian on a 256-pixel grey copy: low means blurred.",
    "entropy": "Bits of information per pixel of grey (0–8): low means near-uniform.",
    "colourfulness": (
        f"Mean distance from grey of each pixel's colour; below {GRAYSCALE_CHROMA:g} counts as "
        "grayscale."
    ),
    "aspect_ratio": "Width divided by height: far from the library's usual shape is odd.",
    "megapixels": "Width × height in millions of pixels.",
}
STRIPS: dict[str, list[WorstStrip]] = {
    "brightness_p50": [
        WorstStrip("Darkest", "too_dark", "brightness_p50"),
        WorstStrip("Brightest", "too_bright", "brightness_p50", descending=True),
    ],
    "contrast": [],
    "sharpness": [WorstStrip("Blurriest", "blurry", "sharpness")],
    "entropy": [WorstStrip("Least information", "low_information", "entropy")],
    "colourfulness": [WorstStrip("Newest grayscale images", GRAYSCALE, None)],
    "aspect_ratio": [
        WorstStrip("Tallest", "odd_aspect_ratio", "aspect_ratio"),
        WorstStrip("Widest", "odd_aspect_ratio", "aspect_ratio", descending=True),
    ],
    "megapixels": [WorstStrip("Smallest", "small", "megapixels")],
}


def _number(value: float) -> str:
    """A metric value for people: three significant figures, no exponent for usual sizes."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


# --- Histogram geometry (drawn by templates/curation/_quality_histogram.html) ---------------

CHART_WIDTH = 520
CHART_HEIGHT = 190
PLOT_LEFT = 48
PLOT_RIGHT = CHART_WIDTH - 14
PLOT_TOP = 26
PLOT_BOTTOM = CHART_HEIGHT - 30


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    low: str
    high: str
    flagged: bool


@dataclass(frozen=True)
class Marker:
    """A threshold line and its label."""

    x: float
    label: str
    label_x: float
    label_y: float
    anchor: str  # SVG text-anchor


@dataclass(frozen=True)
class Tick:
    x: float
    text: str


@dataclass
class Chart:
    bars: list[Bar]
    markers: list[Marker]
    ticks: list[Tick]
    max_count: int
    log: bool
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = PLOT_LEFT
    right: int = PLOT_RIGHT
    top: int = PLOT_TOP
    bottom: int = PLOT_BOTTOM
    middle: float = field(init=False)

    def __post_init__(self) -> None:
        self.middle = (self.top + self.bottom) / 2


def _scale(edges: list[float], log: bool) -> tuple[float, float, Any]:
    def transform(value: float) -> float:
        return math.log(max(value, 1e-9)) if log else value

    low, high = transform(edges[0]), transform(edges[-1])
    span = (high - low) or 1.0

    def to_x(value: float) -> float:
        share = min(max((transform(value) - low) / span, 0.0), 1.0)
        return PLOT_LEFT + share * (PLOT_RIGHT - PLOT_LEFT)

    return low, high, to_x


def chart_of(histogram: dict[str, Any], thresholds: list[tuple[str, float, str]]) -> Chart:
    """Bars, ticks and threshold markers of a stored histogram. ``thresholds`` are
    (label, value, side) with side ``low`` (flags below) or ``high`` (flags above)."""
    edges: list[float] = histogram["edges"]
    counts: list[int] = histogram["counts"]
    log = bool(histogram.get("log"))
    low, high, to_x = _scale(edges, log)
    peak = max(counts) if counts else 0
    plot_height = PLOT_BOTTOM - PLOT_TOP
    bars = []
    for i, count in enumerate(counts):
        x0, x1 = to_x(edges[i]), to_x(edges[i + 1])
        # A non-empty bin is always at least a sliver high: a lone outlier must be visible.
        height = 0.0 if not count else max(plot_height * count / peak, 2.0)
        middle = (edges[i] + edges[i + 1]) / 2 if not log else math.sqrt(edges[i] * edges[i + 1])
        flagged = any(
            (side == "low" and middle < value) or (side == "high" and middle > value)
            for _, value, side in thresholds
        )
        bars.append(
            Bar(
                x=round(x0 + 0.5, 2),
                y=round(PLOT_BOTTOM - height, 2),
                width=round(max(x1 - x0 - 1, 1), 2),
                height=round(height, 2),
                count=count,
                low=_number(edges[i]),
                high=_number(edges[i + 1]),
                flagged=flagged,
            )
        )
    markers = []
    for index, (label, value, side) in enumerate(thresholds):
        x = round(to_x(value), 2)
        # The label sits on the flagged side of its line, unless that side has no room.
        toward_left = side == "low"
        if toward_left and x - PLOT_LEFT < 90:
            toward_left = False
        if not toward_left and PLOT_RIGHT - x < 90:
            toward_left = True
        markers.append(
            Marker(
                x=x,
                label=f"{label} {'<' if side == 'low' else '>'} {_number(value)}",
                label_x=x - 4 if toward_left else x + 4,
                # Two lines' labels on two rows, so near thresholds stay readable.
                label_y=PLOT_TOP - 10 if index % 2 == 0 else PLOT_TOP + 4,
                anchor="end" if toward_left else "start",
            )
        )
    ticks = []
    for i in range(5):
        share = i / 4
        position = low + share * (high - low)
        value = math.exp(position) if log else position
        ticks.append(
            Tick(x=round(PLOT_LEFT + share * (PLOT_RIGHT - PLOT_LEFT), 2), text=_number(value))
        )
    return Chart(bars=bars, markers=markers, ticks=ticks, max_count=peak, log=log)


# --- Page -----------------------------------------------------------------------------------


@dataclass
class FlagRow:
    flag: str
    label: str
    field: str
    sides: list[str]
    low: float | None
    high: float | None
    adaptive_low: float | None
    adaptive_high: float | None
    override: dict[str, float]
    count: int | None

    @property
    def low_text(self) -> str:
        return "" if self.low is None else _number(self.low)

    @property
    def high_text(self) -> str:
        return "" if self.high is None else _number(self.high)

    @property
    def inputs(self) -> list[dict[str, str]]:
        """The override fields of the thresholds form."""
        adaptive = {"low": self.adaptive_low, "high": self.adaptive_high}
        return [
            {
                "name": f"{self.flag}-{side}",
                "label": "below" if side == "low" else "above",
                "value": "" if side not in self.override else f"{self.override[side]:g}",
                "placeholder": "" if adaptive[side] is None else _number(adaptive[side] or 0),
            }
            for side in self.sides
        ]

    @property
    def adaptive_text(self) -> str:
        parts = []
        if self.adaptive_low is not None:
            parts.append(f"< {_number(self.adaptive_low)}")
        if self.adaptive_high is not None:
            parts.append(f"> {_number(self.adaptive_high)}")
        return " or ".join(parts)

    @property
    def in_use_text(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"< {_number(self.low)}")
        if self.high is not None:
            parts.append(f"> {_number(self.high)}")
        return " or ".join(parts)


@dataclass
class StripView:
    strip: WorstStrip
    images: list[tuple[Image, str, bool]]  # image, its value, flagged


@dataclass
class MetricView:
    field: str
    title: str
    help: str
    chart: Chart | None
    rows: list[FlagRow]
    strips: list[StripView]
    median: str = ""


def _flag_rows(
    stats: dict[str, Any], overrides: dict[str, Any], counts: dict[str, int]
) -> list[FlagRow]:
    rows = []
    for flag, (metric, side, _, _) in FLAGS.items():
        rule = stats.get(flag, {})
        rows.append(
            FlagRow(
                flag=flag,
                label=FLAG_LABELS[flag],
                field=metric.removeprefix("log_"),
                sides=["low", "high"] if side == "both" else [side],
                low=rule.get("low"),
                high=rule.get("high"),
                adaptive_low=rule.get("adaptive_low", rule.get("low")),
                adaptive_high=rule.get("adaptive_high", rule.get("high")),
                override=overrides.get(flag, {}),
                count=counts.get(flag),
            )
        )
    return rows


def _strip_view(strip: WorstStrip, row: FlagRow | None) -> StripView:
    images = []
    for image in worst_images(strip, limit=WORST_PER_STRIP):
        features = image.features
        if strip.field is None:
            images.append((image, f"chroma {_number(features.colourfulness or 0)}", True))
            continue
        value = getattr(features, strip.field)
        flagged = row is not None and (
            (row.low is not None and value < row.low) or (row.high is not None and value > row.high)
        )
        images.append((image, _number(value), flagged))
    return StripView(strip=strip, images=images)


@login_required
@require_GET
def page(request: HttpRequest) -> HttpResponse:
    baseline = quality_baseline()
    stats = baseline.stats if baseline else {}
    histograms = (baseline.histograms if baseline else {}) or {}
    counts: dict[str, int] = histograms.get("flag_counts", {})
    rows = _flag_rows(stats, baseline.overrides if baseline else {}, counts)
    has_images = baseline is not None and baseline.image_count > 0
    metrics = []
    for metric, (title, _, _) in HISTOGRAM_METRICS.items():
        metric_rows = [row for row in rows if row.field == metric]
        thresholds = [
            (row.label.lower(), value, side)
            for row in metric_rows
            for side, value in (("low", row.low), ("high", row.high))
            if value is not None
        ]
        if metric == "colourfulness":
            thresholds.append(("grayscale", GRAYSCALE_CHROMA, "low"))
        stored = histograms.get("metrics", {}).get(metric)
        median = next((stats[r.flag]["median"] for r in metric_rows if r.flag in stats), None)
        metrics.append(
            MetricView(
                field=metric,
                title=title,
                help=METRIC_HELP[metric],
                chart=chart_of(stored, thresholds) if stored and has_images else None,
                rows=metric_rows,
                strips=[
                    _strip_view(strip, next((r for r in rows if r.flag == strip.flag), None))
                    for strip in STRIPS[metric]
                ]
                if has_images
                else [],
                median="" if median is None else _number(median),
            )
        )
    return render(
        request,
        "curation/quality.html",
        {
            "baseline": baseline,
            "metrics": metrics,
            "rows": rows,
            "grayscale_count": counts.get(GRAYSCALE),
            "pending_job": quality_job_pending(),
        },
    )


@reviewer_required
@require_POST
def recompute(request: HttpRequest) -> HttpResponse:
    job = quality_baseline_job_start(actor=_user(request))
    messages.info(
        request,
        f"Recomputing the quality thresholds and histograms (job {job.pk}); this page shows "
        "them when it finishes.",
    )
    return redirect("quality:page")


@reviewer_required
@require_POST
def thresholds(request: HttpRequest) -> HttpResponse:
    """Per-library overrides from the thresholds form: ``<flag>-low`` / ``<flag>-high``, blank
    for the adaptive value."""
    raw = {
        flag: {side: request.POST.get(f"{flag}-{side}", "") for side in ("low", "high")}
        for flag in FLAGS
    }
    try:
        overrides = quality_overrides_clean(raw)
    except OverrideError as exc:
        messages.error(request, str(exc))
        return redirect("quality:page")
    job = quality_baseline_job_start(actor=_user(request), overrides=overrides)
    messages.success(
        request,
        f"Threshold overrides saved to job {job.pk}; the filters, counts and histograms use "
        "them once it has run.",
    )
    return redirect("quality:page")


@login_required
@require_POST
def label_flagged(request: HttpRequest, flag: str) -> HttpResponse:
    """Open a labelling queue over the images a flag is raised on (one saved filter per flag,
    made the first time someone asks)."""
    if flag not in QUALITY_FILTERS:
        raise Http404("No such quality flag.")
    saved = SavedFilter.objects.filter(params={"quality": flag}).order_by("id").first()
    if saved is None:
        saved = SavedFilter.objects.create(
            name=f"Quality: {QUALITY_FILTERS[flag].lower()}",
            params={"quality": flag},
            created_by=_user(request),
        )
    return redirect(reverse("labelling:label", args=[f"filter:{saved.pk}"]))
