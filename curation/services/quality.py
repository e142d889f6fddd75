"""Quality lint: metrics of one image's pixels, and flags from thresholds adapted to the
library (robust z-scores: median and MAD of each metric over the library)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from PIL import Image as PILImage

from accounts.models import User
from curation.models import Image, ImageFeatures, ImageStatus, Job, QualityBaseline
from curation.services.jobs import job_create, job_enqueue

# The grey image sharpness is measured on: a fixed size, so the variance of the Laplacian
# compares across resolutions (a sharp 24-megapixel photo and a sharp thumbnail score alike).
SHARPNESS_SIDE = 256
# Below this mean chroma distance (0-255 scale) an image counts as greyscale.
GRAYSCALE_CHROMA = 3.0


def quality_metrics(
    *, pixels: PILImage.Image, width: int, height: int, luma: PILImage.Image | None = None
) -> dict[str, Any]:
    """Metrics of a decoded image (mode ``L`` or ``YCbCr``, as ``open_for_analysis`` returns);
    ``width`` and ``height`` are the original's; ``luma`` is its grey channel when the caller
    already has it. The grey statistics come from one histogram of the 256 levels."""
    if pixels.mode == "YCbCr":
        planes = np.asarray(pixels)
        grey = planes[..., 0]
        chroma = np.hypot(
            planes[..., 1].astype(np.float32) - 128.0, planes[..., 2].astype(np.float32) - 128.0
        )
        colourfulness = float(chroma.mean())
        if luma is None:
            luma = pixels.getchannel(0)
    else:
        if luma is None:
            luma = pixels.convert("L")
        grey, colourfulness = np.asarray(luma), 0.0
    histogram = np.bincount(grey.ravel(), minlength=256)
    p05, p50, p95 = _percentiles(histogram, [5, 50, 95])
    total = int(histogram.sum())
    levels = np.arange(256, dtype=np.float64)
    mean = float(histogram @ levels) / total
    contrast = float(np.sqrt(float(histogram @ (levels - mean) ** 2) / total))
    probabilities = histogram[histogram > 0] / total
    entropy = float(-(probabilities * np.log2(probabilities)).sum())
    return {
        "brightness_p05": p05,
        "brightness_p50": p50,
        "brightness_p95": p95,
        "contrast": contrast,
        "sharpness": _sharpness(luma),
        "entropy": entropy,
        "colourfulness": colourfulness,
        "is_grayscale": colourfulness < GRAYSCALE_CHROMA,
        "aspect_ratio": width / height,
        "megapixels": width * height / 1_000_000,
    }


def _percentiles(histogram: np.ndarray, percents: list[float]) -> list[float]:
    """``np.percentile`` of the grey levels a histogram counts (its default, linear
    interpolation between the two nearest ranks), read from the cumulative counts."""
    cumulative = np.cumsum(histogram)
    n = int(cumulative[-1])
    values = []
    for percent in percents:
        position = (percent / 100) * (n - 1)
        below = int(np.floor(position))
        fraction = position - below
        # The level at sorted rank r is the first whose cumulative count exceeds r.
        low = int(np.searchsorted(cumulative, below, side="right"))
        high = int(np.searchsorted(cumulative, below + 1, side="right")) if fraction else low
        values.append(low + (high - low) * fraction)
    return values


def _sharpness(luma: PILImage.Image) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image scaled to SHARPNESS_SIDE."""
    scale = SHARPNESS_SIDE / max(luma.size)
    size = (max(3, round(luma.width * scale)), max(3, round(luma.height * scale)))
    grey = np.asarray(luma.resize(size, PILImage.Resampling.BILINEAR), dtype=np.float32)
    laplacian = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    )
    return float(laplacian.var())


# --- Adaptive thresholds ---------------------------------------------------------------------

# flag -> (metric, side, robust z-score beyond which it is raised, absolute floor/ceiling that
# always raises it). The absolute limits catch what a library full of dark images would call
# normal; the z-scores adapt to what this library's images usually look like.
FLAGS: dict[str, tuple[str, str, float, float | None]] = {
    "too_dark": ("brightness_p50", "low", 3.0, 20.0),
    "too_bright": ("brightness_p50", "high", 3.0, 235.0),
    "blurry": ("log_sharpness", "low", 3.0, 3.0),
    "low_information": ("entropy", "low", 3.5, 2.0),
    "odd_aspect_ratio": ("log_aspect_ratio", "both", 4.0, None),
    "small": ("log_megapixels", "low", 3.5, None),
}
FLAG_LABELS = {
    "too_dark": "Too dark",
    "too_bright": "Too bright",
    "blurry": "Blurry",
    "low_information": "Low information",
    "odd_aspect_ratio": "Odd aspect ratio",
    "small": "Small",
}
# What image lists can filter on: every flag, plus greyscale (a property of the pixels, not
# a threshold, so it needs no baseline).
GRAYSCALE = "grayscale"
QUALITY_FILTERS = {**FLAG_LABELS, GRAYSCALE: "Grayscale"}
# The least robust spread each metric is given. A library where most images share one value
# (white-background product shots: median grey 255, MAD 0) would otherwise flag every image
# that differs from it at all.
MIN_SPREAD = {
    "brightness_p50": 6.0,  # grey levels
    "log_sharpness": 0.25,
    "entropy": 0.2,  # bits
    "log_aspect_ratio": 0.05,
    "log_megapixels": 0.1,
}
# How far an adaptive threshold may go: in a library of mostly white images, a mid-grey one
# is unusual but not too dark (nor, in a night-time library, a mid-grey one too bright).
ADAPTIVE_LIMIT = {"too_dark": 100.0, "too_bright": 155.0}
# MAD to standard deviation for normal data.
MAD_SCALE = 1.4826


def _metric_column(values: dict[str, np.ndarray], metric: str) -> np.ndarray:
    if metric.startswith("log_"):
        return np.log(np.maximum(values[metric[4:]], 1e-6))
    return values[metric]


@dataclass(frozen=True)
class Threshold:
    flag: str
    metric: str  # a features field
    low: float | None  # raised below this value of the field
    high: float | None  # raised above this value of the field


def thresholds_from(values: dict[str, np.ndarray], overrides: dict[str, Any]) -> dict[str, Any]:
    """The statistics and thresholds of each flag for the metric arrays given (same length)."""
    stats: dict[str, Any] = {}
    for flag, (metric, side, z, absolute) in FLAGS.items():
        column = _metric_column(values, metric)
        column = column[np.isfinite(column)]
        if len(column) == 0:
            continue
        median = float(np.median(column))
        spread = max(
            float(np.median(np.abs(column - median))) * MAD_SCALE, MIN_SPREAD.get(metric, 1e-6)
        )
        field = metric.removeprefix("log_")
        is_log = metric.startswith("log_")

        def back(value: float, is_log: bool = is_log) -> float:
            return float(np.exp(value)) if is_log else value

        low = back(median - z * spread) if side in ("low", "both") else None
        high = back(median + z * spread) if side in ("high", "both") else None
        if absolute is not None and side == "low":
            low = max(low or absolute, absolute)
        if absolute is not None and side == "high":
            high = min(high or absolute, absolute)
        if flag in ADAPTIVE_LIMIT and low is not None:
            low = min(low, ADAPTIVE_LIMIT[flag])
        if flag in ADAPTIVE_LIMIT and high is not None:
            high = max(high, ADAPTIVE_LIMIT[flag])
        override = overrides.get(flag, {})
        stats[flag] = {
            "field": field,
            "median": back(median),
            "robust_sd": spread,
            "z": z,
            "low": override.get("low", low),
            "high": override.get("high", high),
            # What the library alone would give, shown beside an override.
            "adaptive_low": low,
            "adaptive_high": high,
        }
    return stats


# Metrics the quality page plots: field -> (title, plotted on a log scale, fixed range or None).
# Sharpness, aspect ratio and resolution span orders of magnitude, so their bins are even in
# the logarithm.
HISTOGRAM_METRICS: dict[str, tuple[str, bool, tuple[float, float] | None]] = {
    "brightness_p50": ("Brightness", False, (0.0, 255.0)),
    "contrast": ("Contrast", False, None),
    "sharpness": ("Sharpness", True, None),
    "entropy": ("Information", False, (0.0, 8.0)),
    "colourfulness": ("Colourfulness", False, None),
    "aspect_ratio": ("Aspect ratio", True, None),
    "megapixels": ("Resolution", True, None),
}
HISTOGRAM_BINS = 32
# Rows read per query by the baseline job: memory stays flat on a million images.
BASELINE_CHUNK = 50_000


def _histogram(
    column: np.ndarray, *, log: bool, bounds: tuple[float, float] | None
) -> dict[str, Any]:
    column = column[np.isfinite(column)]
    if log:
        column = np.log(np.maximum(column, 1e-6))
    if bounds is not None:
        low, high = bounds
    elif len(column):
        low, high = float(column.min()), float(column.max())
    else:
        low, high = 0.0, 1.0
    if high <= low:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(np.clip(column, low, high), bins=HISTOGRAM_BINS, range=(low, high))
    if log:
        edges = np.exp(edges)
    return {"log": log, "edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _library_metrics(fields: list[str]) -> dict[str, np.ndarray]:
    """Each field's values over the active images that have metrics, read in keyset chunks."""
    chunks: list[np.ndarray] = []
    after = 0
    while True:
        rows = list(
            ImageFeatures.objects.filter(
                image__status=ImageStatus.ACTIVE, phash__isnull=False, image_id__gt=after
            )
            .order_by("image_id")
            .values_list("image_id", *fields)[:BASELINE_CHUNK]
        )
        if not rows:
            break
        # None (a metric never computed) becomes NaN and is left out of every statistic.
        chunks.append(np.array(rows, dtype=np.float64).reshape(-1, len(fields) + 1))
        after = rows[-1][0]
    matrix = np.concatenate(chunks) if chunks else np.empty((0, len(fields) + 1))
    return {name: matrix[:, i + 1] for i, name in enumerate(fields)}


def _flag_counts(values: dict[str, np.ndarray], stats: dict[str, Any]) -> dict[str, int]:
    counts = {}
    for flag, rule in stats.items():
        column = values[rule["field"]]
        raised = np.zeros(len(column), dtype=bool)
        if rule["low"] is not None:
            raised |= column < rule["low"]
        if rule["high"] is not None:
            raised |= column > rule["high"]
        counts[flag] = int(raised.sum())
    counts[GRAYSCALE] = int(np.nansum(values["is_grayscale"]))
    return counts


@transaction.atomic
def quality_baseline_update(*, overrides: dict[str, Any] | None = None) -> QualityBaseline:
    """Recompute the library's thresholds from the metrics of every active image, with the
    histograms and flag counts the quality page shows (a job's work at scale: it reads a few
    columns of the whole library). ``overrides`` (see ``quality_overrides_clean``) replace the
    stored ones when given."""
    flag_fields = {FLAGS[f][0].removeprefix("log_") for f in FLAGS}
    fields = sorted(flag_fields | set(HISTOGRAM_METRICS) | {"is_grayscale"})
    values = _library_metrics(fields)
    count = len(values["is_grayscale"])
    baseline, _ = QualityBaseline.objects.select_for_update().get_or_create(pk=1)
    if overrides is not None:
        baseline.overrides = overrides
    baseline.stats = thresholds_from(values, baseline.overrides) if count else {}
    baseline.histograms = {
        "metrics": {
            field: _histogram(values[field], log=log, bounds=bounds)
            for field, (_, log, bounds) in HISTOGRAM_METRICS.items()
        },
        "flag_counts": _flag_counts(values, baseline.stats),
    }
    baseline.image_count = count
    baseline.computed_at = timezone.now()
    baseline.save()
    return baseline


QUALITY_BASELINE_JOB = "curation.update_quality_baseline"


def quality_baseline_job_start(
    *, actor: User | None, overrides: dict[str, Any] | None = None
) -> Job:
    """Create the job that recomputes the thresholds, histograms and counts (with new
    overrides when given) and send it once the row commits."""
    params: dict[str, Any] = {} if overrides is None else {"overrides": overrides}
    with transaction.atomic():
        job = job_create(kind=QUALITY_BASELINE_JOB, actor=actor, params=params)
        job_enqueue(job=job)
    return job


class OverrideError(ValueError):
    pass


def quality_overrides_clean(raw: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Overrides from form text: ``{flag: {"low"|"high": "12.5"}}``, blanks dropped. Only the
    sides a flag has are accepted; a low above a high is an error."""
    cleaned: dict[str, Any] = {}
    for flag, sides in raw.items():
        if flag not in FLAGS:
            raise OverrideError(f"Unknown quality flag {flag!r}.")
        side = FLAGS[flag][1]
        allowed = {"low": side in ("low", "both"), "high": side in ("high", "both")}
        values: dict[str, float] = {}
        for name, text in sides.items():
            text = (text or "").strip()
            if not text:
                continue
            if not allowed.get(name):
                raise OverrideError(f"{FLAG_LABELS[flag]} has no {name} threshold.")
            try:
                number = float(text)
            except ValueError:
                raise OverrideError(f"{FLAG_LABELS[flag]}: “{text}” is not a number.") from None
            if not np.isfinite(number):
                raise OverrideError(f"{FLAG_LABELS[flag]}: “{text}” is not a number.")
            values[name] = number
        if "low" in values and "high" in values and values["low"] >= values["high"]:
            raise OverrideError(f"{FLAG_LABELS[flag]}: the low threshold must be below the high.")
        if values:
            cleaned[flag] = values
    return cleaned


def quality_flags(*, features: ImageFeatures, stats: dict[str, Any]) -> list[str]:
    """The flags raised for one image's features under the baseline's thresholds."""
    raised = []
    for flag, rule in stats.items():
        value = getattr(features, rule["field"], None)
        if value is None:
            continue
        if (rule["low"] is not None and value < rule["low"]) or (
            rule["high"] is not None and value > rule["high"]
        ):
            raised.append(flag)
    return raised


def flag_q(*, flag: str, stats: dict[str, Any]) -> Q | None:
    """A filter on ``Image`` for the images a flag (or ``grayscale``) is raised on (for image
    lists); ``None`` when the baseline has no threshold for it yet."""
    if flag == GRAYSCALE:
        return Q(features__is_grayscale=True)
    rule = stats.get(flag)
    if rule is None:
        return None
    field = f"features__{rule['field']}"
    condition = Q(pk__in=[])
    if rule["low"] is not None:
        condition |= Q(**{f"{field}__lt": rule["low"]})
    if rule["high"] is not None:
        condition |= Q(**{f"{field}__gt": rule["high"]})
    return condition


def quality_thresholds() -> dict[str, Any]:
    """The library's current thresholds by flag, in one query; empty before the first
    baseline. Read once per request and pass to ``quality_filter``."""
    stats = QualityBaseline.objects.filter(pk=1).values_list("stats", flat=True).first()
    return stats or {}


def quality_filter(images: QuerySet[Image], *, flag: str, stats: dict[str, Any]) -> QuerySet[Image]:
    """``images`` narrowed to those ``flag`` is raised on; none while the flag has no
    threshold yet. ``flag`` must be one of ``QUALITY_FILTERS``."""
    condition = flag_q(flag=flag, stats=stats)
    return images.none() if condition is None else images.filter(condition)
