"""Production prediction logs: ingestion, review verdicts, dashboard aggregates and drift.

Provenance: a logged image is stored once through ``images_record`` like any import, into an
``ImportBatch`` named ``production/<client>/<YYYY-MM-DD>`` (one per client and day), so the
inbox and the import report show where it came from; ``Image.production_logs`` links it to
every transaction that sent it.
"""

from __future__ import annotations

import io
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Aggregate, Case, CharField, Count, Q, QuerySet, Sum, Value, When
from django.db.models.functions import TruncHour
from django.utils import timezone

from accounts.models import User
from curation.models import (
    BadReason,
    BadVerdict,
    Image,
    ImageFeatures,
    ImageStatus,
    ImportBatch,
    ImportKind,
    LabelReason,
    SubClass,
)
from curation.services.images import (
    Pending,
    file_inspect,
    image_relabel,
    images_record,
    inspection_store,
)
from inference.models import (
    ModelVersion,
    Prediction,
    PredictionLog,
    PredictionLogClassHour,
    PredictionLogHour,
    PredictionLogScoreHour,
    PredictionLogVerdictHour,
    Verdict,
)
from inference.rollups import (
    hour_ceil,
    hour_floor,
    rollups_ready,
    rollups_record,
    rollups_verdict_moved,
    threshold_centile,
)

PRODUCTION_BATCH_PREFIX = "production/"
REVIEW_NOTE = "production review"
MAX_TOP_K = 20

# What a log's scores are: probabilities (the default), or logits the client declares, which
# are turned into probabilities with a softmax over the values sent.
PROBABILITIES = "probabilities"
LOGITS = "logits"
SCORE_KINDS = (PROBABILITIES, LOGITS)
# Probabilities of one image's classes sum to at most 1; top-k scores rounded by the client
# (three to two decimals each, say) may go a little over.
SCORE_SUM_TOLERANCE = 0.01


def confidence_threshold() -> float:
    """Top-1 score at or above which the user was given the answer (the happy path)."""
    return float(getattr(settings, "LOUPE_PRODUCTION_THRESHOLD", 0.95))


class LogRejected(Exception):
    """The log entry cannot be recorded; the message says why, for the client."""


# --- Ingestion ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """One validated transaction from a serving system. ``image_data`` or ``image_sha256``."""

    client: str
    model_version_label: str
    class_names: list[str]
    scores: list[float]
    logged_at: datetime | None = None
    request_id: str = ""
    image_data: bytes | None = None
    image_name: str = "production.jpg"
    image_sha256: str = ""
    score_kind: str = PROBABILITIES


@dataclass
class Logged:
    log: PredictionLog
    created: bool


_VERSION_LABEL = re.compile(r"^v?(\d+)$", re.IGNORECASE)


def model_version_match(label: str) -> ModelVersion | None:
    """The registered version a client's label names: ``3``, ``v3`` or the version's name."""
    label = label.strip()
    if not label:
        return None
    number = _VERSION_LABEL.match(label)
    if number:
        return ModelVersion.objects.filter(number=int(number.group(1))).first()
    return ModelVersion.objects.filter(name=label).order_by("-number").first()


def version_label_normalise(label: str, version: ModelVersion | None) -> str:
    """The one spelling a log keeps for its model version, so that one model is one series on
    the dashboard however clients name it: ``v<number>`` for a registered version (named by
    ``3``, ``v3``, ``V03`` or its name) and for any ``<number>``/``v<number>`` label; any other
    label (a model Loupe does not know) as sent, trimmed."""
    if version is not None:
        return f"v{version.number}"
    label = label.strip()
    number = _VERSION_LABEL.match(label)
    return f"v{int(number.group(1))}" if number else label[:100]


def _production_batch(client: str, day: datetime, actor: User | None) -> ImportBatch:
    name = f"{PRODUCTION_BATCH_PREFIX}{client}/{timezone.localdate(day).isoformat()}"
    batch = ImportBatch.objects.filter(kind=ImportKind.UPLOAD, name=name).order_by("id").first()
    if batch is None:
        batch = ImportBatch.objects.create(kind=ImportKind.UPLOAD, name=name, created_by=actor)
    return batch


def _validate(entry: LogEntry) -> None:
    if not entry.client.strip():
        raise LogRejected("client is required")
    if not entry.model_version_label.strip():
        raise LogRejected("model_version is required")
    if not entry.class_names or len(entry.class_names) != len(entry.scores):
        raise LogRejected("predictions must be a non-empty list of {label, score}")
    if len(entry.class_names) > MAX_TOP_K:
        raise LogRejected(f"at most {MAX_TOP_K} predictions per log")
    _validate_scores(entry)
    if entry.image_data is None and not entry.image_sha256:
        raise LogRejected("send the image as a file or the sha256 of a stored image")


def _validate_scores(entry: LogEntry) -> None:
    """Refuse scores no model gives: probabilities outside [0, 1] or, for one image, summing
    over 1 (a top-k of 0.9 and 0.8 says nothing a review can trust). Logits may be any finite
    numbers, but only when the client says that is what they are."""
    if entry.score_kind not in SCORE_KINDS:
        raise LogRejected(f"score_kind must be one of {', '.join(SCORE_KINDS)}")
    if not all(math.isfinite(score) for score in entry.scores):
        raise LogRejected("scores must be finite numbers")
    if entry.score_kind == LOGITS:
        return
    outside = [score for score in entry.scores if not 0.0 <= score <= 1.0]
    if outside:
        raise LogRejected(
            f"scores must lie between 0 and 1 (got {outside[0]:g}); send score_kind=logits "
            "if these are a model's logits"
        )
    total = math.fsum(entry.scores)
    if total > 1.0 + SCORE_SUM_TOLERANCE:
        raise LogRejected(
            f"the {len(entry.scores)} scores sum to {total:.3f}, but the probabilities of one "
            f"image's classes sum to at most 1 (± {SCORE_SUM_TOLERANCE} for rounding); send "
            "score_kind=logits if these are a model's logits"
        )


def _probabilities(entry: LogEntry) -> list[float]:
    """The entry's scores as probabilities: logits through a softmax over the values sent
    (exact when the client sends every class's logit; with a top-k only, the share of each
    among the classes sent)."""
    scores = [float(score) for score in entry.scores]
    if entry.score_kind != LOGITS:
        return scores
    top = max(scores)
    exponentials = [math.exp(score - top) for score in scores]
    total = math.fsum(exponentials)
    return [value / total for value in exponentials]


def _ordered(entry: LogEntry) -> tuple[list[str], list[float]]:
    pairs = sorted(zip(entry.class_names, _probabilities(entry), strict=True), key=lambda p: -p[1])
    return [name[:500] for name, _ in pairs], [score for _, score in pairs]


def _store_image(entry: LogEntry, actor: User | None, now: datetime) -> tuple[Image, bool]:
    """The image of an entry, stored once; returns it and whether it is new."""
    if entry.image_data is None:
        image = Image.objects.filter(sha256=entry.image_sha256.lower()).first()
        if image is None:
            raise LogRejected(f"no stored image has sha256 {entry.image_sha256}")
        return image, False
    inspection = file_inspect(data=entry.image_data, name=entry.image_name)
    if inspection.decoded is None:
        raise LogRejected(f"image refused: {inspection.rejection}")
    existing = Image.objects.filter(sha256=inspection.sha256).first()
    if existing is not None:
        return existing, False
    inspection_store(inspection=inspection, content=io.BytesIO(entry.image_data))
    batch = _production_batch(entry.client, now, actor)
    result = images_record(pending=[Pending(inspection, None)], actor=actor, batch=batch)[0]
    assert result.image is not None
    return result.image, result.outcome == "created"


def _log_row(
    entry: LogEntry, image: Image, version: ModelVersion | None, actor: User | None, now: datetime
) -> PredictionLog:
    names, scores = _ordered(entry)
    return PredictionLog(
        image=image,
        model_version_label=version_label_normalise(entry.model_version_label, version),
        model_version=version,
        class_names=names,
        scores=scores,
        top1_name=names[0],
        top1_score=scores[0],
        logged_at=entry.logged_at or now,
        received_at=now,
        client=entry.client.strip()[:100],
        request_id=entry.request_id.strip()[:200],
        logged_by=actor,
    )


def _existing(client: str, request_id: str) -> PredictionLog | None:
    if not request_id:
        return None
    return PredictionLog.objects.filter(client=client, request_id=request_id).first()


def prediction_log_record(*, entry: LogEntry, actor: User | None) -> Logged:
    """Record one production transaction. The same (client, request id) again returns the first
    log unchanged (``created`` false), so a client may retry freely. Raises LogRejected."""
    from curation.tasks import enqueue_processing

    _validate(entry)
    client, request_id = entry.client.strip()[:100], entry.request_id.strip()[:200]
    if (found := _existing(client, request_id)) is not None:
        return Logged(found, False)
    now = timezone.now()
    image, new_image = _store_image(entry, actor, now)
    version = model_version_match(entry.model_version_label)
    try:
        with transaction.atomic():
            log = _log_row(entry, image, version, actor, now)
            log.save()
            rollups_record(logs=[log])
    except IntegrityError:
        # A concurrent retry of the same request won the race.
        found = _existing(client, request_id)
        if found is None:
            raise
        return Logged(found, False)
    if new_image:
        enqueue_processing([image.pk])
    return Logged(log, True)


@dataclass
class BatchOutcome:
    index: int
    log: PredictionLog | None
    created: bool
    error: str = ""


def prediction_logs_record(
    *, entries: Sequence[LogEntry], actor: User | None
) -> list[BatchOutcome]:
    """Record many transactions whose images are already stored (referenced by sha256), in one
    transaction and a fixed number of queries. Entries repeating a (client, request id) already
    logged, or earlier in the batch, return that log."""
    outcomes: list[BatchOutcome | None] = [None] * len(entries)
    valid: list[tuple[int, LogEntry]] = []
    for index, entry in enumerate(entries):
        try:
            _validate(entry)
            if entry.image_data is not None:
                raise LogRejected("the batch form takes image_sha256 only")
        except LogRejected as exc:
            outcomes[index] = BatchOutcome(index, None, False, str(exc))
        else:
            valid.append((index, entry))

    images = {
        image.sha256: image
        for image in Image.objects.filter(sha256__in={e.image_sha256.lower() for _, e in valid})
    }
    labels = {e.model_version_label.strip() for _, e in valid}
    versions = {label: model_version_match(label) for label in labels}
    keys = {(e.client.strip()[:100], e.request_id.strip()[:200]) for _, e in valid}
    keys = {k for k in keys if k[1]}
    now = timezone.now()
    with transaction.atomic():
        known: dict[tuple[str, str], PredictionLog] = {}
        if keys:
            query = Q()
            for client, request_id in keys:
                query |= Q(client=client, request_id=request_id)
            known = {
                (log.client, log.request_id): log for log in PredictionLog.objects.filter(query)
            }
        to_create: list[tuple[int, PredictionLog]] = []
        pending_keys: dict[tuple[str, str], int] = {}
        for index, entry in valid:
            image = images.get(entry.image_sha256.lower())
            if image is None:
                outcomes[index] = BatchOutcome(
                    index, None, False, f"no stored image has sha256 {entry.image_sha256}"
                )
                continue
            key = (entry.client.strip()[:100], entry.request_id.strip()[:200])
            if key in known:
                outcomes[index] = BatchOutcome(index, known[key], False)
                continue
            if key[1] and key in pending_keys:
                continue  # resolved after the insert
            if key[1]:
                pending_keys[key] = index
            row = _log_row(entry, image, versions[entry.model_version_label.strip()], actor, now)
            to_create.append((index, row))
        created = PredictionLog.objects.bulk_create([row for _, row in to_create])
        rollups_record(logs=created)
        by_key = {}
        for (index, _), row in zip(to_create, created, strict=True):
            outcomes[index] = BatchOutcome(index, row, True)
            by_key[(row.client, row.request_id)] = row
    for index, entry in valid:
        if outcomes[index] is None:
            key = (entry.client.strip()[:100], entry.request_id.strip()[:200])
            outcomes[index] = BatchOutcome(index, by_key[key], False)
    return [o for o in outcomes if o is not None]


# --- Review ---------------------------------------------------------------------------------


class Path:
    HAPPY = "happy"
    SAD = "sad"


def review_queue(*, path: str, threshold: float | None = None) -> QuerySet[PredictionLog]:
    """Unreviewed logs of one path, newest first, skipping images already in the trash."""
    threshold = confidence_threshold() if threshold is None else threshold
    logs = PredictionLog.objects.filter(verdict="", image__status=ImageStatus.ACTIVE)
    if path == Path.HAPPY:
        logs = logs.filter(top1_score__gte=threshold)
    else:
        logs = logs.filter(top1_score__lt=threshold)
    return logs.select_related("image", "model_version").order_by("-received_at", "-id")


class ReviewError(Exception):
    pass


@transaction.atomic
def prediction_log_review(
    *,
    log_id: int,
    verdict: str,
    actor: User,
    subclass: SubClass | None = None,
    subject: str = "",
    bad_reason: str = "",
    replace: bool = False,
    relabel: bool = False,
) -> PredictionLog:
    """Record a verdict and make the library change it implies:

    - ``wrong``: the image is labelled into ``subclass`` (a label event, reason labelling,
      note "production review");
    - ``correct`` / ``should_be_confident``: an image still in the inbox is labelled with the
      predicted class when a library class of that name exists. An image the library labels
      with another class (``library_disagrees``) raises ReviewError unless ``relabel`` is set:
      then it is relabelled into the predicted class, which must be a library class;
    - ``bad_picture``: a bad-image verdict (``labelling.BadVerdict``) with ``bad_reason``;
    - ``out_of_scope``: only the verdict and its subject (candidates for new classes).

    A log already reviewed raises ReviewError unless ``replace`` is set: then the new verdict
    takes the place of the old one and makes its own library change; what the old one changed
    stays (a relabel is undone from the image's history, a bad-image verdict on the image page).
    The dashboard's roll-ups move the log from the old verdict's count to the new one's.
    """
    if verdict not in Verdict.values:
        raise ReviewError(f"Unknown verdict {verdict!r}.")
    log = PredictionLog.objects.select_for_update().select_related("image").get(pk=log_id)
    if log.verdict and not replace:
        raise ReviewError(f"Log {log.pk} was already reviewed ({log.get_verdict_display()}).")
    previous_verdict, previous_subject = log.verdict, log.out_of_scope_subject
    log.true_subclass, log.out_of_scope_subject = None, ""
    if verdict == Verdict.SHOULD_BE_CONFIDENT and log.top1_score >= confidence_threshold():
        raise ReviewError("'Should have been confident' applies to the sad path only.")
    image = log.image
    if verdict == Verdict.WRONG:
        if subclass is None:
            raise ReviewError("Choose the right class.")
        if image.subclass_id != subclass.pk:
            image_relabel(
                image_id=image.pk,
                subclass=subclass,
                actor=actor,
                reason=LabelReason.LABELLING,
                expected_version=None,
                note=REVIEW_NOTE,
            )
        log.true_subclass = subclass
    elif verdict in (Verdict.CORRECT, Verdict.SHOULD_BE_CONFIDENT):
        predicted = _default_subclass(log.top1_name)
        if library_disagrees(log):
            _confirm_relabel(log, predicted, relabel=relabel)
        if predicted is not None and (image.subclass_id is None or library_disagrees(log)):
            image_relabel(
                image_id=image.pk,
                subclass=predicted,
                actor=actor,
                reason=LabelReason.LABELLING,
                expected_version=None,
                note=REVIEW_NOTE,
            )
        log.true_subclass = predicted
    elif verdict == Verdict.BAD_PICTURE:
        reason = bad_reason or BadReason.OBSCURED
        if reason not in BadReason.values:
            raise ReviewError(f"Unknown bad-image reason {reason!r}.")
        BadVerdict.objects.update_or_create(
            image=image, defaults={"reason": reason, "actor": actor}
        )
    elif verdict == Verdict.OUT_OF_SCOPE:
        log.out_of_scope_subject = " ".join(subject.split())[:200]
    log.verdict = verdict
    log.reviewed_by = actor
    log.reviewed_at = timezone.now()
    log.save(
        update_fields=[
            "verdict",
            "true_subclass",
            "out_of_scope_subject",
            "reviewed_by",
            "reviewed_at",
        ]
    )
    rollups_verdict_moved(
        log=log, previous_verdict=previous_verdict, previous_subject=previous_subject
    )
    return log


def library_label(log: PredictionLog) -> SubClass | None:
    """The library's label of the logged image now (select ``image__subclass__label_class``)."""
    return log.image.subclass


def library_disagrees(log: PredictionLog) -> bool:
    """Whether the library labels the logged image with another class than the model's top-1
    (compared by name, as a "correct" verdict finds the predicted class)."""
    subclass = library_label(log)
    return subclass is not None and (
        subclass.label_class.name.casefold() != log.top1_name.strip().casefold()
    )


def _confirm_relabel(log: PredictionLog, predicted: SubClass | None, *, relabel: bool) -> None:
    """A "correct" verdict on an image the library labels otherwise says the library is wrong:
    refused unless the reviewer confirmed the relabel, and only into a library class."""
    library = library_label(log)
    if library is None:
        return
    if predicted is None:
        raise ReviewError(
            f"Image {log.image_id} is labelled “{library.label_class.name}” in the library and "
            f"“{log.top1_name}” is not a library class, so “correct” cannot relabel it: record "
            "“wrong” with the right class, or “out of scope”."
        )
    if not relabel:
        raise ReviewError(
            f"Image {log.image_id} is labelled “{library.label_class.name}” in the library, not "
            f"“{log.top1_name}”: confirm the relabel to record “correct”, or record “wrong” "
            "with the library's class."
        )


def _default_subclass(class_name: str) -> SubClass | None:
    return (
        SubClass.objects.filter(label_class__name__iexact=class_name, is_default=True)
        .select_related("label_class")
        .first()
    )


QUEUE_COUNT_CAP = 1000


def queue_size(queue: QuerySet[PredictionLog]) -> int:
    """How many logs wait, counted up to QUEUE_COUNT_CAP (the page shows "1,000+")."""
    return queue.values("id")[:QUEUE_COUNT_CAP].count()


def verdict_counts(*, path: str | None = None) -> dict[str, int]:
    logs = PredictionLog.objects.exclude(verdict="")
    if path is not None:
        threshold = confidence_threshold()
        logs = (
            logs.filter(top1_score__gte=threshold)
            if path == Path.HAPPY
            else logs.filter(top1_score__lt=threshold)
        )
    counts = dict(logs.values_list("verdict").annotate(n=Count("id")).order_by())
    return {value: counts.get(value, 0) for value in Verdict.values}


# --- Dashboard ------------------------------------------------------------------------------

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
BANDS: list[tuple[str, float, float]] = [
    ("< 0.50", 0.0, 0.5),
    ("0.50–0.80", 0.5, 0.8),
    ("0.80–0.95", 0.8, 0.95),
    ("≥ 0.95", 0.95, 1.01),
]
CORRECT_VERDICTS = (Verdict.CORRECT, Verdict.SHOULD_BE_CONFIDENT)
JUDGED_VERDICTS = (Verdict.CORRECT, Verdict.SHOULD_BE_CONFIDENT, Verdict.WRONG)


@dataclass
class Accuracy:
    key: str
    judged: int = 0
    correct: int = 0

    @property
    def rate(self) -> float | None:
        return self.correct / self.judged if self.judged else None


@dataclass
class Dashboard:
    start: datetime
    end: datetime
    threshold: float
    total: int = 0
    above: int = 0
    per_hour: list[tuple[datetime, int]] = field(default_factory=list)
    per_hour_of_day: list[int] = field(default_factory=lambda: [0] * 24)
    per_weekday: list[int] = field(default_factory=lambda: [0] * 7)
    per_version_day: dict[str, dict[str, int]] = field(default_factory=dict)
    days: list[str] = field(default_factory=list)
    classes: list[tuple[str, int]] = field(default_factory=list)
    by_version: list[Accuracy] = field(default_factory=list)
    by_class: list[Accuracy] = field(default_factory=list)
    by_band: list[Accuracy] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)
    out_of_scope: list[tuple[str, int]] = field(default_factory=list)
    # Whole hours read from the roll-ups; or the roll-ups are empty although logs exist.
    from_rollups: bool = False
    rollups_missing: bool = False

    @property
    def below(self) -> int:
        return self.total - self.above


def _accuracy(rows: Iterable[tuple[str, str, int]]) -> list[Accuracy]:
    table: dict[str, Accuracy] = {}
    for key, verdict, n in rows:
        acc = table.setdefault(key, Accuracy(key))
        acc.judged += n
        if verdict in CORRECT_VERDICTS:
            acc.correct += n
    return sorted(table.values(), key=lambda a: (-a.judged, a.key))


@dataclass
class _Tally:
    """The counts behind a dashboard, read from the logs or from the roll-ups; two tallies of
    disjoint time ranges add up to the tally of both."""

    # (start of the hour, model version label) -> calls
    hours: Counter[tuple[datetime, str]] = field(default_factory=Counter)
    above: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    # Reviewed logs: (model version label, verdict), and for judged verdicts only (top-1 class,
    # verdict) and (confidence band, verdict); out-of-scope subjects.
    versions: Counter[tuple[str, str]] = field(default_factory=Counter)
    judged_classes: Counter[tuple[str, str]] = field(default_factory=Counter)
    judged_bands: Counter[tuple[str, str]] = field(default_factory=Counter)
    subjects: Counter[str] = field(default_factory=Counter)

    def add(self, other: _Tally) -> None:
        self.above += other.above
        for name in ("hours", "classes", "versions", "judged_classes", "judged_bands", "subjects"):
            getattr(self, name).update(getattr(other, name))

    def add_reviewed(self, reviewed: QuerySet[Any], *, band: Case, n: Aggregate) -> None:
        """Four aggregates of reviewed logs, or of verdict roll-up rows (same field names)."""
        rows = reviewed.values_list("model_version_label", "verdict").annotate(n=n).order_by()
        self.versions.update({(label, verdict): count for label, verdict, count in rows})
        judged = reviewed.filter(verdict__in=JUDGED_VERDICTS)
        rows = judged.values_list("top1_name", "verdict").annotate(n=n).order_by()
        self.judged_classes.update({(name, verdict): count for name, verdict, count in rows})
        rows = judged.annotate(band=band).values_list("band", "verdict").annotate(n=n).order_by()
        self.judged_bands.update({(name, verdict): count for name, verdict, count in rows})
        subjects = reviewed.filter(verdict=Verdict.OUT_OF_SCOPE).exclude(out_of_scope_subject="")
        self.subjects.update(
            dict(subjects.values_list("out_of_scope_subject").annotate(n=n).order_by())
        )


class Source:
    ROLLUPS = "rollups"
    LOGS = "logs"


def dashboard(
    *,
    start: datetime,
    end: datetime,
    threshold: float | None = None,
    top_classes: int = 20,
    source: str = Source.ROLLUPS,
) -> Dashboard:
    """Usage and performance of production logs received in [start, end).

    Whole UTC hours are read from the hourly roll-ups (``inference.rollups``) and the partial
    hours at either end of the range from the logs, so the cost follows the number of hours,
    not of logs. The figures are the same as counting the logs (``source="logs"``), which is
    what happens when the roll-ups cannot answer: the current time zone is not a whole number
    of hours from UTC, or there are logs older than the roll-ups (``rollups_missing``: not
    rebuilt since an upgrade). The share above a threshold that is not a multiple of 0.01 is
    counted from the logs (one index scan)."""
    threshold = confidence_threshold() if threshold is None else threshold
    first_hour, last_hour = hour_ceil(start), hour_floor(end)
    usable = first_hour < last_hour and _whole_hours_from_utc(start, end)
    missing = usable and source == Source.ROLLUPS and not rollups_ready()
    use_rollups = source == Source.ROLLUPS and usable and not missing
    if use_rollups:
        tally = _rollup_tally(first_hour, last_hour, threshold)
        if start < first_hour or last_hour < end:
            edges = Q(received_at__gte=start, received_at__lt=first_hour) | Q(
                received_at__gte=last_hour, received_at__lt=end
            )
            tally.add(_log_tally(PredictionLog.objects.filter(edges), threshold))
    else:
        in_range = PredictionLog.objects.filter(received_at__gte=start, received_at__lt=end)
        tally = _log_tally(in_range, threshold)
    board = _board(tally, start=start, end=end, threshold=threshold, top_classes=top_classes)
    board.from_rollups = use_rollups
    board.rollups_missing = missing
    return board


def _whole_hours_from_utc(*moments: datetime) -> bool:
    return all(timezone.localtime(m).utcoffset() in _WHOLE_HOUR_OFFSETS for m in moments)


_WHOLE_HOUR_OFFSETS = {timedelta(hours=h) for h in range(-12, 15)}


def _log_tally(logs: QuerySet[PredictionLog], threshold: float) -> _Tally:
    """Two aggregate queries over the received_at index (on PostgreSQL they read only the
    covering index) and four over the reviewed logs."""
    tally = _Tally()
    buckets = (
        logs.annotate(hour=TruncHour("received_at"))
        .values_list("hour", "model_version_label")
        # COUNT(*), not COUNT(id): id is not in the covering index, so counting it would read
        # every row from the heap.
        .annotate(n=Count("*"), above=Count("top1_score", filter=Q(top1_score__gte=threshold)))
        .order_by()
    )
    for hour, label, n, above in buckets:
        tally.hours[(hour, label)] += n
        tally.above += above
    tally.classes.update(dict(logs.values_list("top1_name").annotate(n=Count("*")).order_by()))
    # An IN list, not "verdict != ''", so the (verdict, received_at) index finds them.
    reviewed = logs.filter(verdict__in=Verdict.values)
    tally.add_reviewed(reviewed, band=_band_case("top1_score", centile=False), n=Count("id"))
    return tally


def _rollup_tally(first_hour: datetime, last_hour: datetime, threshold: float) -> _Tally:
    """The whole hours in [first_hour, last_hour), from the roll-ups: four queries over rows
    per hour."""
    tally = _Tally()
    hours = {"hour__gte": first_hour, "hour__lt": last_hour}
    rows = (
        PredictionLogHour.objects.filter(**hours)
        .values_list("hour", "model_version_label")
        .annotate(n=Sum("calls"))
        .order_by()
    )
    for hour, label, n in rows:
        tally.hours[(hour, label)] += n
    centile = threshold_centile(threshold)
    if centile is None:
        tally.above = PredictionLog.objects.filter(
            received_at__gte=first_hour, received_at__lt=last_hour, top1_score__gte=threshold
        ).count()
    else:
        scores = PredictionLogScoreHour.objects.filter(**hours, centile__gte=centile)
        tally.above = scores.aggregate(n=Sum("calls"))["n"] or 0
    tally.classes.update(
        dict(
            PredictionLogClassHour.objects.filter(**hours)
            .values_list("top1_name")
            .annotate(n=Sum("calls"))
            .order_by()
        )
    )
    # Band edges lie on the 0.01 grid: a band is a range of whole centiles.
    tally.add_reviewed(
        PredictionLogVerdictHour.objects.filter(**hours),
        band=_band_case("centile", centile=True),
        n=Sum("logs"),
    )
    return tally


def _board(
    tally: _Tally, *, start: datetime, end: datetime, threshold: float, top_classes: int
) -> Dashboard:
    board = Dashboard(start=start, end=end, threshold=threshold, above=tally.above)
    per_hour: Counter[datetime] = Counter()
    per_version_day: dict[str, Counter[str]] = defaultdict(Counter)
    zone = timezone.get_current_timezone()
    for (moment, label), n in tally.hours.items():
        hour = moment.astimezone(zone) if timezone.is_aware(moment) else moment
        board.total += n
        per_hour[hour] += n
        board.per_hour_of_day[hour.hour] += n
        board.per_weekday[hour.weekday()] += n
        per_version_day[label][hour.date().isoformat()] += n
    board.per_hour = sorted(per_hour.items())
    board.days = sorted({day for counts in per_version_day.values() for day in counts})
    board.per_version_day = {
        label: dict(counts) for label, counts in sorted(per_version_day.items())
    }
    board.classes = _most_common(tally.classes, top_classes)

    reviewed = [(label, verdict, n) for (label, verdict), n in tally.versions.items()]
    board.by_version = _accuracy(row for row in reviewed if row[1] in JUDGED_VERDICTS)
    board.by_class = _accuracy((name, v, n) for (name, v), n in tally.judged_classes.items())
    bands = {a.key: a for a in _accuracy((b, v, n) for (b, v), n in tally.judged_bands.items())}
    board.by_band = [bands.get(name, Accuracy(name)) for name, _, _ in BANDS]
    verdicts: Counter[str] = Counter()
    for _, verdict, n in reviewed:
        verdicts[verdict] += n
    board.verdicts = {value: n for value, n in verdicts.items() if n}
    board.out_of_scope = _most_common(tally.subjects, 20)
    return board


def _most_common(counts: Counter[str], limit: int) -> list[tuple[str, int]]:
    """Largest counts first, ties by name."""
    ranked = sorted(((k, n) for k, n in counts.items() if n), key=lambda item: (-item[1], item[0]))
    return ranked[:limit]


def _band_case(score_field: str, *, centile: bool) -> Case:
    """The confidence band of a log, from its top-1 score or its score centile."""

    def edge(score: float) -> float:
        return round(score * 100) if centile else score

    return Case(
        *[
            When(
                **{f"{score_field}__gte": edge(low), f"{score_field}__lt": edge(high)},
                then=Value(name),
            )
            for name, low, high in BANDS
        ],
        default=Value(BANDS[-1][0]),
        output_field=CharField(),
    )


# --- Drift ----------------------------------------------------------------------------------

DRIFT_METRICS: list[tuple[str, str]] = [
    ("brightness_p50", "Brightness (median grey)"),
    ("contrast", "Contrast"),
    ("sharpness", "Sharpness"),
    ("entropy", "Entropy"),
    ("colourfulness", "Colourfulness"),
]
DRIFT_P_VALUE = 0.01
DRIFT_MIN_SAMPLE = 30
DRIFT_SAMPLE_CAP = 5000


@dataclass
class DriftTest:
    metric: str
    label: str
    production_n: int
    library_n: int
    production_median: float | None = None
    library_median: float | None = None
    statistic: float | None = None
    p_value: float | None = None

    @property
    def enough(self) -> bool:
        return min(self.production_n, self.library_n) >= DRIFT_MIN_SAMPLE

    @property
    def shifted(self) -> bool:
        return self.enough and self.p_value is not None and self.p_value < DRIFT_P_VALUE


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _test(metric: str, label: str, production: list[float], library: list[float]) -> DriftTest:
    from scipy.stats import ks_2samp

    test = DriftTest(metric, label, len(production), len(library))
    test.production_median = _median(production)
    test.library_median = _median(library)
    if test.enough:
        result = ks_2samp(production, library)
        test.statistic = float(result.statistic)
        test.p_value = float(result.pvalue)
    return test


def drift(*, since: datetime, until: datetime | None = None) -> list[DriftTest]:
    """Two-sample Kolmogorov-Smirnov tests of production images received in [since, until)
    against the labelled library: one per lint metric, and the model's top-1 confidence in
    production against its stored predictions on the library (same model version). A metric
    is flagged when p < 0.01 and both samples hold at least 30 values."""
    until = until or timezone.now()
    logs = PredictionLog.objects.filter(received_at__gte=since, received_at__lt=until)
    production_ids = logs.values("image_id")
    columns = [metric for metric, _ in DRIFT_METRICS]
    production_rows = list(
        ImageFeatures.objects.filter(image_id__in=production_ids)
        .order_by("-image_id")
        .values_list(*columns)[:DRIFT_SAMPLE_CAP]
    )
    library_rows = list(
        ImageFeatures.objects.filter(
            image__subclass__isnull=False, image__status=ImageStatus.ACTIVE
        )
        .exclude(image_id__in=production_ids)
        .order_by("-image_id")
        .values_list(*columns)[:DRIFT_SAMPLE_CAP]
    )
    tests = []
    for position, (metric, label) in enumerate(DRIFT_METRICS):
        production = [row[position] for row in production_rows if row[position] is not None]
        library = [row[position] for row in library_rows if row[position] is not None]
        tests.append(_test(metric, label, production, library))

    version_id = (
        logs.exclude(model_version=None)
        .values_list("model_version_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("model_version_id", flat=True)
        .first()
    )
    if version_id is not None:
        production_scores = list(
            logs.filter(model_version_id=version_id)
            .order_by("-received_at")
            .values_list("top1_score", flat=True)[:DRIFT_SAMPLE_CAP]
        )
        library_scores = list(
            Prediction.objects.filter(model_version_id=version_id, image__subclass__isnull=False)
            .order_by("-id")
            .values_list("top1_score", flat=True)[:DRIFT_SAMPLE_CAP]
        )
        tests.append(
            _test("top1_score", "Model confidence (top-1)", production_scores, library_scores)
        )
    return tests


def default_range(days: int = 30) -> tuple[datetime, datetime]:
    end = timezone.now()
    return end - timedelta(days=days), end


__all__ = [
    "LogEntry",
    "LogRejected",
    "ReviewError",
    "confidence_threshold",
    "dashboard",
    "drift",
    "library_disagrees",
    "library_label",
    "model_version_match",
    "prediction_log_record",
    "prediction_log_review",
    "prediction_logs_record",
    "review_queue",
    "verdict_counts",
    "version_label_normalise",
]
