"""Bulk identification: a model version's predictions over a scope of the library, the filters
that make them useful, and the bulk actions taken on what they find.

A scope is the inbox, a class (holding classes included), a sub-class, a source or an import
batch: the same allow-listed parameters a saved filter holds, so any result list can become a
labelling queue unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet, Sum

from accounts.models import User
from curation.models import (
    Image,
    ImageStatus,
    ImportBatch,
    Job,
    LabelClass,
    LabelReason,
    SavedFilter,
    Source,
    SubClass,
)
from curation.services.images import (
    ImageStateError,
    VersionConflict,
    image_relabel,
    image_trash,
)
from curation.services.jobs import job_create, job_enqueue
from inference.models import LabelMatch, ModelVersion, Prediction
from inference.services import active_version, predictions_walk

logger = logging.getLogger(__name__)

IDENTIFY_KIND = "inference.identify_images"
ACTION_CHUNK = 100  # images changed per transaction by a bulk action
MAX_ACTION_IMAGES = 1000  # images one bulk action request may name


class IdentificationError(Exception):
    """The request cannot be carried out as asked; the message says why."""


# --- Scope ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Which images a run covers. Fields left at None do not restrict; all None is the whole
    library. ``labelled=False`` is the inbox."""

    labelled: bool | None = None
    label_class: int | None = None
    subclass: int | None = None
    source: str | None = None
    import_batch: int | None = None

    def as_params(self) -> dict[str, Any]:
        """The scope as saved-filter parameters (see ``labelling.queues.saved_filter_images``)."""
        return {key: value for key, value in self.__dict__.items() if value is not None}

    def lookups(self, prefix: str = "") -> dict[str, Any]:
        """ORM lookups on Image (or, with ``prefix="image__"``, on a row pointing at one);
        the same meaning as the saved-filter parameters."""
        lookups: dict[str, Any] = {}
        if self.labelled is not None:
            lookups["subclass__isnull"] = not self.labelled
        if self.label_class is not None:
            lookups["subclass__label_class_id"] = self.label_class
        if self.subclass is not None:
            lookups["subclass_id"] = self.subclass
        if self.source is not None:
            lookups["subclass__source"] = self.source
        if self.import_batch is not None:
            lookups["import_batch_id"] = self.import_batch
        return {prefix + key: value for key, value in lookups.items()}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Scope:
        return cls(**{key: params.get(key) for key in cls.__dataclass_fields__})

    def describe(self) -> str:
        parts = []
        if self.labelled is False:
            parts.append("inbox")
        elif self.labelled is True:
            parts.append("labelled images")
        if self.label_class is not None:
            name = LabelClass.objects.filter(pk=self.label_class).values_list("name", flat=True)
            parts.append(f"class {next(iter(name), self.label_class)}")
        if self.subclass is not None:
            subclass = SubClass.objects.select_related("label_class").filter(pk=self.subclass)
            parts.append(f"sub-class {next(iter(map(str, subclass)), self.subclass)}")
        if self.source is not None:
            parts.append(f"{self.source} sub-classes")
        if self.import_batch is not None:
            parts.append(f"import #{self.import_batch}")
        return ", ".join(parts) or "whole library"


def scope_validate(*, scope: Scope) -> Scope:
    """Check that the classes, sub-classes and batches a scope names exist. Raises
    IdentificationError naming the one that does not."""
    if scope.label_class is not None and not LabelClass.objects.filter(pk=scope.label_class):
        raise IdentificationError(f"No class {scope.label_class}.")
    if scope.subclass is not None and not SubClass.objects.filter(pk=scope.subclass):
        raise IdentificationError(f"No sub-class {scope.subclass}.")
    if scope.source is not None and scope.source not in Source.values:
        raise IdentificationError(f"Source must be one of {', '.join(Source.values)}.")
    if scope.import_batch is not None and not ImportBatch.objects.filter(pk=scope.import_batch):
        raise IdentificationError(f"No import batch {scope.import_batch}.")
    return scope


def scope_images(*, scope: Scope) -> QuerySet[Image]:
    """Active images in the scope."""
    return Image.objects.filter(status=ImageStatus.ACTIVE, **scope.lookups())


# --- Runs -----------------------------------------------------------------------------------


def identification_start(*, scope: Scope, version: ModelVersion | None, actor: User | None) -> Job:
    """Queue a run of ``version`` (default: the active one) over ``scope`` as a job. Raises
    IdentificationError when no version is given and none is active."""
    version = version or active_version()
    if version is None:
        raise IdentificationError("No model version is active; choose one.")
    scope_validate(scope=scope)
    with transaction.atomic():
        job = job_create(
            kind=IDENTIFY_KIND,
            actor=actor,
            params={"model_version_id": version.pk, "scope": scope.as_params()},
        )
        job_enqueue(job=job)
    return job


def identification_run(
    *,
    version: ModelVersion,
    scope: Scope,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int | None = None,
) -> dict[str, int]:
    """Predictions of ``version`` for the images in ``scope`` that have none yet.

    One stream over every core through the images still missing one, in primary-key order
    (``predictions_walk``). Running it again computes nothing new; a run cut short resumes
    where it stopped. ``progress(done, total)`` counts the images that needed a prediction
    when the run began.
    """
    has_prediction = Prediction.objects.filter(model_version=version, image=OuterRef("pk"))
    return predictions_walk(
        images=scope_images(scope=scope).filter(~Exists(has_prediction)),
        version=version,
        progress=progress,
        chunk_size=chunk_size,
    )


# --- Results --------------------------------------------------------------------------------

SORTS = {
    # name: (label, ordering); every ordering ends in the id so a cursor is exact.
    "confident": ("Most confident first", ("-top1_score", "-id")),
    "lowest": ("Lowest scores first", ("top1_score", "id")),
    "class": ("By predicted class", ("-top1_index", "-top1_score", "-id")),
}
DEFAULT_SORT = "confident"


@dataclass(frozen=True)
class ResultFilter:
    """What the results page shows of one version's predictions within a scope.

    ``predicted_class`` with ``score_max`` is a look-alike search: images the model calls X
    without conviction. ``rare_below`` keeps predictions of classes with fewer library images
    than that; ``mostly_staged`` those of classes whose images are mostly staged or synthetic.
    Both count only label names matched to a library class.
    """

    version: ModelVersion
    scope: Scope = field(default_factory=Scope)
    predicted_class: int | None = None
    score_min: float | None = None
    score_max: float | None = None
    rare_below: int | None = None
    mostly_staged: bool = False
    # Out-of-distribution score at least this (see inference.embeddings).
    ood_min: float | None = None
    sort: str = DEFAULT_SORT

    def queue_params(self) -> dict[str, Any]:
        """The part a saved filter can hold (everything but the rare, staged and OOD
        filters)."""
        params: dict[str, Any] = {**self.scope.as_params(), "model_version": self.version.pk}
        if self.predicted_class is not None:
            params["predicted_class"] = self.predicted_class
        if self.score_min is not None:
            params["score_min"] = self.score_min
        if self.score_max is not None:
            params["score_max"] = self.score_max
        return params


@dataclass(frozen=True)
class PredictedClass:
    index: int
    name: str
    label_class_id: int | None
    library_count: int | None  # None: the label name matches no class


@dataclass(frozen=True)
class ResultRow:
    prediction: Prediction
    image: Image
    predicted: PredictedClass

    @property
    def runners_up(self) -> list[tuple[str, float]]:
        """The model's second and third guesses, by label-map name."""
        p = self.prediction
        return list(zip(p.class_names[1:3], p.scores[1:3], strict=False))


@dataclass(frozen=True)
class ResultsPage:
    rows: list[ResultRow]
    next_cursor: str | None
    is_first: bool


def _class_totals(version: ModelVersion) -> QuerySet[Any]:
    """Label matches of ``version`` with the library counts of their class, from the sub-class
    counters (never a count over images)."""
    staged = Q(label_class__subclasses__source__in=[Source.STAGED, Source.SYNTHETIC])
    return LabelMatch.objects.filter(model_version=version, label_class__isnull=False).annotate(
        library_count=Sum("label_class__subclasses__image_count"),
        staged_count=Sum("label_class__subclasses__image_count", filter=staged),
    )


def _predicted_indices(filters: ResultFilter) -> list[int] | None:
    """The label-map positions the filters allow; None when they allow all. One query."""
    if filters.predicted_class is None and filters.rare_below is None and not filters.mostly_staged:
        return None
    matches = _class_totals(filters.version)
    if filters.predicted_class is not None:
        matches = matches.filter(label_class_id=filters.predicted_class)
    if filters.rare_below is not None:
        matches = matches.filter(library_count__lt=filters.rare_below)
    if filters.mostly_staged:
        # More than half of the class's images are staged or synthetic.
        matches = matches.filter(library_count__lt=F("staged_count") * 2)
    return list(matches.values_list("index", flat=True))


def _after(ordering: Sequence[str], values: Sequence[Any]) -> Q:
    """Rows strictly after ``values`` in ``ordering`` (a keyset condition)."""
    condition = Q()
    for position in range(len(ordering) - 1, -1, -1):
        name = ordering[position].lstrip("-")
        lookup = "lt" if ordering[position].startswith("-") else "gt"
        step = Q(**{f"{name}__{lookup}": values[position]})
        if position < len(ordering) - 1:
            step |= Q(**{name: values[position]}) & condition
        condition = step
    return condition


def _cursor_encode(prediction: Prediction, ordering: Sequence[str]) -> str:
    return "_".join(repr(getattr(prediction, name.lstrip("-"))) for name in ordering)


def _cursor_decode(cursor: str, ordering: Sequence[str]) -> list[Any] | None:
    parts = cursor.split("_")
    if len(parts) != len(ordering):
        return None
    values: list[Any] = []
    try:
        for name, part in zip(ordering, parts, strict=True):
            values.append(float(part) if name.lstrip("-") == "top1_score" else int(part))
    except ValueError:
        return None
    return values


def identification_results(
    *, filters: ResultFilter, cursor: str | None = None, size: int = 60
) -> ResultsPage:
    """One page of the version's predictions within the scope, by keyset over the
    (model_version, top1_index, top1_score) and (model_version, top1_score) indexes.

    A fixed number of queries whatever the page holds: the allowed indices (when a class
    filter is set), the page with its images, and the predicted classes of the page.
    """
    ordering = SORTS.get(filters.sort, SORTS[DEFAULT_SORT])[1]
    predictions = Prediction.objects.filter(
        model_version=filters.version,
        image__status=ImageStatus.ACTIVE,
        **filters.scope.lookups(prefix="image__"),
    )
    indices = _predicted_indices(filters)
    if indices is not None:
        predictions = predictions.filter(top1_index__in=indices)
    if filters.score_min is not None:
        predictions = predictions.filter(top1_score__gte=filters.score_min)
    if filters.score_max is not None:
        predictions = predictions.filter(top1_score__lte=filters.score_max)
    if filters.ood_min is not None:
        from inference.embeddings import ood_at_least

        predictions = predictions.filter(ood_at_least(filters.ood_min, image_field="image_id"))
    values = _cursor_decode(cursor, ordering) if cursor else None
    if values is not None:
        predictions = predictions.filter(_after(ordering, values))
    rows = list(
        predictions.select_related("image__subclass__label_class").order_by(*ordering)[: size + 1]
    )
    has_more = len(rows) > size
    rows = rows[:size]
    classes = _predicted_classes(filters.version, {p.top1_index for p in rows})
    return ResultsPage(
        rows=[
            ResultRow(
                prediction=p,
                image=p.image,
                predicted=classes.get(
                    p.top1_index, PredictedClass(p.top1_index, p.class_names[0], None, None)
                ),
            )
            for p in rows
        ],
        next_cursor=_cursor_encode(rows[-1], ordering) if has_more else None,
        is_first=values is None,
    )


def _predicted_classes(version: ModelVersion, indices: set[int]) -> dict[int, PredictedClass]:
    if not indices:
        return {}
    matches = _class_totals(version).filter(index__in=indices).select_related("label_class")
    return {
        m.index: PredictedClass(m.index, m.label_class.name, m.label_class_id, m.library_count or 0)
        for m in matches
    }


# --- Bulk actions ---------------------------------------------------------------------------


@dataclass
class BulkOutcome:
    """How a bulk action went: images changed, and why the others were left alone."""

    changed: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def summary(self, verb: str) -> str:
        text = f"{verb} {self.changed} image{'s' if self.changed != 1 else ''}"
        if self.skipped:
            why = ", ".join(f"{count} {reason}" for reason, count in self.reasons.items())
            text += f"; skipped {self.skipped} ({why})"
        return text + "."


@dataclass(frozen=True)
class Selected:
    """An image a bulk action should change, with the version the user saw (None: any)."""

    image_id: int
    version: int | None = None


def _checked(selected: Iterable[Selected]) -> list[Selected]:
    unique = list({s.image_id: s for s in selected}.values())
    if len(unique) > MAX_ACTION_IMAGES:
        raise IdentificationError(f"Select at most {MAX_ACTION_IMAGES} images at a time.")
    return unique


def _chunks(items: list[Selected]) -> Iterable[list[Selected]]:
    for start in range(0, len(items), ACTION_CHUNK):
        yield items[start : start + ACTION_CHUNK]


def images_bulk_relabel(
    *, selected: Iterable[Selected], subclass: SubClass, actor: User | None
) -> BulkOutcome:
    """Label every selected image as ``subclass``: one label event each, reason ``bulk``.

    One transaction per chunk; images changed since the user saw them (version conflicts),
    trashed or already in that sub-class are skipped and counted.
    """
    outcome = BulkOutcome()
    note = "bulk identification"
    for chunk in _chunks(_checked(selected)):
        ids = [s.image_id for s in chunk]
        with transaction.atomic():
            current = dict(Image.objects.filter(pk__in=ids).values_list("pk", "subclass_id"))
            for item in chunk:
                if item.image_id not in current:
                    outcome.skip("gone")
                    continue
                if current[item.image_id] == subclass.pk:
                    outcome.skip("already there")
                    continue
                try:
                    image_relabel(
                        image_id=item.image_id,
                        subclass=subclass,
                        actor=actor,
                        reason=LabelReason.BULK,
                        expected_version=item.version,
                        note=note,
                    )
                except VersionConflict:
                    outcome.skip("changed since you looked")
                except ImageStateError:
                    outcome.skip("in the trash")
                else:
                    outcome.changed += 1
    return outcome


def images_bulk_trash(
    *, selected: Iterable[Selected], note: str, actor: User | None
) -> BulkOutcome:
    """Trash every selected image with ``note`` as the reason: one label event each.

    One transaction per chunk; images already trashed or changed since the user saw them are
    skipped and counted. Raises IdentificationError when ``note`` is blank.
    """
    if not note.strip():
        raise IdentificationError("Say why these images go to the trash.")
    outcome = BulkOutcome()
    for chunk in _chunks(_checked(selected)):
        known_ids = set(
            Image.objects.filter(pk__in=[s.image_id for s in chunk]).values_list("pk", flat=True)
        )
        with transaction.atomic():
            for item in chunk:
                if item.image_id not in known_ids:
                    outcome.skip("gone")
                    continue
                try:
                    image_trash(
                        image_id=item.image_id,
                        actor=actor,
                        note=note,
                        expected_version=item.version,
                        reason=LabelReason.BULK,
                    )
                except VersionConflict:
                    outcome.skip("changed since you looked")
                except ImageStateError:
                    outcome.skip("already in the trash")
                else:
                    outcome.changed += 1
    return outcome


def results_queue_create(*, filters: ResultFilter, name: str, actor: User | None) -> SavedFilter:
    """A saved filter holding the results' scope, version, predicted class and score range:
    a labelling queue at /label/filter:<id>/."""
    default = f"v{filters.version.number}: {filters.scope.describe()}"
    return SavedFilter.objects.create(
        name=(" ".join(name.split()) or default)[:200],
        params=filters.queue_params(),
        created_by=actor,
    )


__all__ = [
    "IDENTIFY_KIND",
    "SORTS",
    "BulkOutcome",
    "IdentificationError",
    "ResultFilter",
    "ResultsPage",
    "Scope",
    "Selected",
    "identification_results",
    "identification_run",
    "identification_start",
    "images_bulk_relabel",
    "images_bulk_trash",
    "results_queue_create",
    "scope_images",
    "scope_validate",
]
