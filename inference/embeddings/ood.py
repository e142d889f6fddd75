"""Out-of-distribution scores: computing them, filtering by them, and the production
dashboard's panel."""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet

from curation.models import Image, ImageStatus
from inference.embeddings.vectors import (
    EmbeddingError,
    embedding_version,
    stack_vectors,
)
from inference.models import ImageEmbedding, ModelVersion

# Upper bound of an OOD score: a cosine distance lies between 0 and 2.
OOD_MAX = 2.0


def ood_at_least(minimum: float, *, image_field: str = "pk") -> Exists | Q:
    """A filter condition for rows whose image (``image_field``: the image id column of the
    filtered model) has an OOD score from the embedding model of at least ``minimum``: an
    EXISTS on the (model_version, ood_score) index. No embedding model: nothing matches."""
    try:
        version = embedding_version()
    except EmbeddingError:
        version = None
    if version is None:
        return Q(pk__in=[])
    return Exists(
        ImageEmbedding.objects.filter(
            model_version=version, image_id=OuterRef(image_field), ood_score__gte=minimum
        )
    )


def images_with_ood_at_least(images: QuerySet[Image], *, minimum: float) -> QuerySet[Image]:
    """``images`` narrowed to those whose OOD score is at least ``minimum``."""
    return images.filter(ood_at_least(minimum))


# How long a worker process reuses its index of the labelled images for the OOD scores of
# new images; any labelling, trashing or restoring that changes the labelled set (its count,
# newest row or id sum) rebuilds it sooner. A full embeddings job always starts afresh.
LABELLED_INDEX_SECONDS = 600
_labelled_cache: dict[int, tuple[float, tuple[Any, ...], np.ndarray, Any]] = {}


def labelled_index_clear() -> None:
    _labelled_cache.clear()


def _labelled_index(version: ModelVersion, *, fresh: bool = False) -> tuple[np.ndarray, Any]:
    """Ids of the labelled active images with embeddings, and an exact inner-product index
    over them (float32: batched searches run on BLAS). Reused between the import chunks a
    worker process handles (reading every labelled vector for each chunk of new images would
    cost more than embedding them)."""
    import faiss
    from django.db.models import Count, Sum

    rows = ImageEmbedding.objects.filter(
        model_version=version, image__status=ImageStatus.ACTIVE, image__subclass__isnull=False
    )
    state = tuple(rows.aggregate(n=Count("pk"), newest=Max("pk"), ids=Sum("image_id")).values())
    cached = _labelled_cache.get(version.pk)
    if (
        cached is not None
        and not fresh
        and cached[1] == state
        and time.monotonic() - cached[0] < LABELLED_INDEX_SECONDS
    ):
        return cached[2], cached[3]
    rows = rows.order_by("image_id")
    ids: list[int] = []
    blobs: list[bytes | memoryview] = []
    for image_id, blob in rows.values_list("image_id", "vector").iterator(chunk_size=5000):
        ids.append(image_id)
        blobs.append(blob)
    matrix = stack_vectors(blobs)
    index = faiss.IndexFlatIP(matrix.shape[1]) if len(ids) else None
    if index is not None:
        index.add(matrix)
    labelled = np.array(ids, dtype=np.int64)
    _labelled_cache[version.pk] = (time.monotonic(), state, labelled, index)
    return labelled, index


def ood_scores(
    vectors: np.ndarray,
    query_ids: np.ndarray,
    labelled_ids: np.ndarray,
    index: Any,
    *,
    neighbours: int,
) -> np.ndarray:
    """Mean cosine distance (1 - similarity) of each vector to its ``neighbours`` nearest
    labelled images, the image itself left out. NaN where no labelled image is left."""
    k = min(neighbours + 1, len(labelled_ids))
    if k == 0 or len(vectors) == 0:
        return np.full(len(vectors), np.nan)
    similarities, positions = index.search(np.ascontiguousarray(vectors, np.float32), k)
    found = np.where(positions >= 0, labelled_ids[np.maximum(positions, 0)], -1)
    keep = (found != query_ids[:, None]) & (positions >= 0)
    # Keep the nearest ``neighbours`` of what is left in each row.
    keep &= np.cumsum(keep, axis=1) <= neighbours
    counts = keep.sum(axis=1)
    distances = np.where(keep, 1.0 - similarities, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, distances / np.maximum(counts, 1), np.nan)


def ood_scores_fill(
    *,
    version: ModelVersion,
    image_ids: Sequence[int] | None = None,
    recompute: bool = False,
    fresh: bool = True,
    chunk_size: int = 4096,
) -> int:
    """Store the OOD score of the embedded images that have none (or, with ``recompute``,
    of all of them; with ``image_ids``, of those only). ``fresh=False`` lets the worker reuse
    its recent index of the labelled images. Returns how many were stored."""
    rows = ImageEmbedding.objects.filter(model_version=version)
    if not recompute:
        rows = rows.filter(ood_score__isnull=True)
    if image_ids is not None:
        rows = rows.filter(image_id__in=list(image_ids))
    pending = list(rows.order_by("pk").values_list("pk", flat=True))
    if not pending:
        return 0
    labelled_ids, index = _labelled_index(version, fresh=fresh)
    if index is None:
        return 0
    neighbours = int(settings.LOUPE_OOD_NEIGHBOURS)
    stored = 0
    for start in range(0, len(pending), chunk_size):
        chunk = list(
            ImageEmbedding.objects.filter(pk__in=pending[start : start + chunk_size]).values_list(
                "pk", "image_id", "vector"
            )
        )
        scores = ood_scores(
            stack_vectors([blob for _, _, blob in chunk]),
            np.array([image_id for _, image_id, _ in chunk], dtype=np.int64),
            labelled_ids,
            index,
            neighbours=neighbours,
        )
        updates = [
            ImageEmbedding(pk=pk, ood_score=round(float(score), 5))
            for (pk, _, _), score in zip(chunk, scores, strict=True)
            if np.isfinite(score)
        ]
        with transaction.atomic():
            ImageEmbedding.objects.bulk_update(updates, ["ood_score"], batch_size=1000)
        stored += len(updates)
    return stored


def with_ood_scores(rows: QuerySet[Any], *, image_field: str = "image_id") -> QuerySet[Any]:
    """``rows`` (pointing at images through ``image_field``) annotated with ``ood_score``,
    each read through the (model_version, image) key."""
    from django.db.models import Subquery

    try:
        version = embedding_version()
    except EmbeddingError:
        version = None
    score = ImageEmbedding.objects.filter(
        model_version=version, image_id=OuterRef(image_field)
    ).values("ood_score")[:1]
    return rows.annotate(ood_score=Subquery(score))


def ood_threshold() -> float:
    """Scores at or above this count as unlike the library (``LOUPE_OOD_THRESHOLD``)."""
    return float(settings.LOUPE_OOD_THRESHOLD)


def ood_score_of(*, image_id: int) -> float | None:
    """The stored OOD score of one image by the embedding model (None: not scored yet)."""
    try:
        version = embedding_version()
    except EmbeddingError:
        return None
    return (
        ImageEmbedding.objects.filter(model_version=version, image_id=image_id)
        .values_list("ood_score", flat=True)
        .first()
    )


def ood_param(text: str | None) -> float | None:
    """An ``ood_min`` query parameter as a bound (None: absent or not a number); clamped to
    the score's range."""
    try:
        value = float(text or "")
    except ValueError:
        return None
    return min(max(value, 0.0), OOD_MAX) if value == value else None  # NaN is no bound


def ood_choices() -> list[tuple[str, str]]:
    """The OOD filter's presets for the list pages, the dashboard threshold among them."""
    threshold = ood_threshold()
    values = sorted({0.3, 0.4, 0.5, 0.6, 0.7, round(threshold, 2)})
    return [
        (f"{v:g}", f"≥ {v:g}" + (" (threshold)" if v == round(threshold, 2) else ""))
        for v in values
    ]


# --- Production dashboard -------------------------------------------------------------------

OOD_PANEL_SAMPLE = 5_000  # logs of the range the panel reads, spread evenly over it
OOD_PANEL_RUN = 50  # ... in runs of this many consecutive logs
OOD_BINS = 10  # histogram bins over 0..1 (scores above 1 go to the last)


@dataclass(frozen=True)
class OodDay:
    day: str  # ISO date
    scored: int
    above: int

    @property
    def share(self) -> float | None:
        return self.above / self.scored if self.scored else None


@dataclass(frozen=True)
class OodPanel:
    """How unlike the library the production images of a range are, from stored scores."""

    threshold: float
    logs: int  # logs read
    capped: bool  # a sample of the range's logs (OOD_PANEL_SAMPLE), not all of them
    scored: int
    above: int
    days: list[OodDay]
    histogram: list[tuple[str, int]]  # (bin label, logs)

    @property
    def share(self) -> float | None:
        return self.above / self.scored if self.scored else None


def ood_dashboard(
    *, start: Any, end: Any, threshold: float | None = None, sample: int = OOD_PANEL_SAMPLE
) -> OodPanel:
    """Share of logged production images at or above the OOD threshold per day, and the
    histogram of their scores, over the logs received in [start, end): all of them, or
    ``sample`` of them spread evenly over the range.

    Work is bounded by ``sample``, not by the logs in the range: the first and last log ids of
    the range (two index probes on received_at; ids grow with it), ``sample`` ids between them
    in evenly spaced runs of consecutive ids, and the stored scores of their images on the
    (model_version, image) key.
    No k-NN per request. Images not embedded yet count as logs but not as scored.
    """
    from datetime import timedelta

    from django.utils import timezone

    from inference.models import PredictionLog

    threshold = ood_threshold() if threshold is None else threshold
    logs = PredictionLog.objects.filter(received_at__gte=start, received_at__lt=end)
    first = logs.order_by("received_at", "pk").values_list("pk", flat=True).first()
    last = logs.order_by("-received_at", "-pk").values_list("pk", flat=True).first()
    rows: list[tuple[Any, int]] = []
    capped = False
    if first is not None and last is not None:
        low, high = min(first, last), max(first, last)
        if high - low + 1 > sample:
            capped = True
            # Runs of consecutive ids share heap pages: 100 runs of 50 logs read about half
            # the pages 5,000 scattered logs would (65 against 90-180 ms on PostgreSQL at
            # 1,000,000 logs).
            run = min(OOD_PANEL_RUN, sample)
            starts = np.linspace(low, high - run + 1, max(1, sample // run)).round()
            logs = logs.filter(
                reduce(
                    operator.or_,
                    (Q(pk__gte=start, pk__lt=start + run) for start in np.unique(starts).tolist()),
                )
            )
        else:
            logs = logs.filter(pk__gte=low, pk__lte=high)
        rows = list(logs.values_list("received_at", "image_id"))
    scores: dict[int, float | None] = {}
    try:
        version = embedding_version()
    except EmbeddingError:
        version = None
    if version is not None and rows:
        scores = dict(
            ImageEmbedding.objects.filter(
                model_version=version, image_id__in={image_id for _, image_id in rows}
            ).values_list("image_id", "ood_score")
        )
    per_day: dict[str, list[int]] = {}
    bins = [0] * OOD_BINS
    # Local dates looked up once per quarter hour (every time zone is whole quarters from UTC).
    days_of_hours: dict[Any, str] = {}
    for received, image_id in rows:
        hour = received.replace(minute=received.minute // 15 * 15, second=0, microsecond=0)
        day = days_of_hours.get(hour)
        if day is None:
            day = days_of_hours[hour] = timezone.localtime(received).date().isoformat()
        tally = per_day.setdefault(day, [0, 0])
        ood = scores.get(image_id)
        if ood is None:
            continue
        tally[0] += 1
        tally[1] += ood >= threshold
        bins[min(int(ood * OOD_BINS), OOD_BINS - 1)] += 1
    first_day = timezone.localtime(start).date()
    last_day = timezone.localtime(end - timedelta(microseconds=1)).date()
    days = []
    current = first_day
    while current <= last_day:
        scored, above = per_day.get(current.isoformat(), [0, 0])
        days.append(OodDay(current.isoformat(), scored, above))
        current += timedelta(days=1)
    width = 1 / OOD_BINS
    labels = [f"{i * width:.1f}–{(i + 1) * width:.1f}" for i in range(OOD_BINS)]
    labels[-1] = f"≥ {1 - width:.1f}"
    return OodPanel(
        threshold=threshold,
        logs=len(rows),
        capped=capped,
        scored=sum(day.scored for day in days),
        above=sum(day.above for day in days),
        days=days,
        histogram=list(zip(labels, bins, strict=True)),
    )
