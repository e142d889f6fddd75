"""Hourly roll-ups of production prediction logs, so that the dashboard's cost follows the
number of hours in its range rather than the number of logs.

The services that write logs and verdicts (``inference.production``) add to the roll-ups in
their own transaction: each count is an upsert, ``INSERT … ON CONFLICT (key) DO UPDATE SET n =
n + excluded.n``, on PostgreSQL and SQLite alike. Concurrent writers add to the same row one
after the other (under its row lock on PostgreSQL, the database lock on SQLite), and a
transaction that rolls back takes its counts with it. Keys go in sorted order, so two
transactions that touch the same rows lock them in the same order and cannot deadlock.
(Django's ``bulk_create(update_conflicts=True)`` can only overwrite a column with the new
value, not add to it.)

``production_rollups_rebuild`` recomputes every roll-up from the logs: after an upgrade from a
version without them, or after logs were written behind the services' back.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.db import connection, models, transaction
from django.db.models import F

from inference.models import (
    PredictionLog,
    PredictionLogClassHour,
    PredictionLogHour,
    PredictionLogScoreHour,
    PredictionLogVerdictHour,
)

HOUR = timedelta(hours=1)
# Rows per INSERT statement; well under SQLite's limit of 32,766 parameters.
UPSERT_ROWS = 500
# Logs read between two upserts while rebuilding, and the hours recounted in one transaction.
REBUILD_CHUNK = 50_000
REBUILD_SPAN = timedelta(days=1)


def score_centile(score: float) -> int:
    """The largest k in 0..100 with ``score >= k / 100``. ``k / 100`` is the same float a
    threshold such as ``0.95`` parses to, so "at or above 0.95" is exactly "centile ≥ 95"."""
    centile = min(100, max(0, math.floor(score * 100)))
    # score * 100 may round across an integer; one step corrects it.
    if centile > 0 and score < centile / 100:
        centile -= 1
    elif centile < 100 and score >= (centile + 1) / 100:
        centile += 1
    return centile


def threshold_centile(threshold: float) -> int | None:
    """k when the threshold is exactly k / 100 (the roll-ups answer it), else None."""
    centile = round(threshold * 100)
    return centile if 0 <= centile <= 100 and centile / 100 == threshold else None


def hour_floor(moment: datetime) -> datetime:
    """The start of the UTC hour holding ``moment``: the key of every roll-up row."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_ceil(moment: datetime) -> datetime:
    floor = hour_floor(moment)
    return floor if floor == moment else floor + HOUR


@dataclass
class RollupCounts:
    """Counts to add to the roll-ups, by key."""

    hours: Counter[tuple[datetime, str, str]] = field(default_factory=Counter)
    scores: Counter[tuple[datetime, int]] = field(default_factory=Counter)
    classes: Counter[tuple[datetime, str]] = field(default_factory=Counter)
    verdicts: Counter[tuple[datetime, str, str, int, str, str]] = field(default_factory=Counter)

    def add_log(
        self,
        received_at: datetime,
        model_version_label: str,
        client: str,
        top1_name: str,
        top1_score: float,
        verdict: str,
        out_of_scope_subject: str,
    ) -> None:
        """One log, its fields in the order of LOG_FIELDS."""
        hour = hour_floor(received_at)
        centile = score_centile(top1_score)
        self.hours[(hour, model_version_label, client)] += 1
        self.scores[(hour, centile)] += 1
        self.classes[(hour, top1_name)] += 1
        if verdict:
            key = (hour, model_version_label, top1_name, centile, verdict, out_of_scope_subject)
            self.verdicts[key] += 1

    def tables(self) -> list[tuple[type[models.Model], str, Counter[Any]]]:
        """(roll-up model, its count field, the counts for it) for every roll-up."""
        return [
            (PredictionLogHour, "calls", self.hours),
            (PredictionLogScoreHour, "calls", self.scores),
            (PredictionLogClassHour, "calls", self.classes),
            (PredictionLogVerdictHour, "logs", self.verdicts),
        ]

    def save(self) -> None:
        """Add every count to its row; the caller holds the transaction."""
        for model, count_field, counter in self.tables():
            _upsert(model, count_field, counter)


LOG_FIELDS = (
    "received_at",
    "model_version_label",
    "client",
    "top1_name",
    "top1_score",
    "verdict",
    "out_of_scope_subject",
)
ROLLUP_MODELS: list[type[models.Model]] = [
    PredictionLogHour,
    PredictionLogScoreHour,
    PredictionLogClassHour,
    PredictionLogVerdictHour,
]


def _unique_fields(model: type[models.Model]) -> Sequence[str]:
    """The fields of the model's one unique constraint: what an upsert conflicts on."""
    (constraint,) = model._meta.constraints
    assert isinstance(constraint, models.UniqueConstraint)
    return constraint.fields


def _key_fields(model: type[models.Model]) -> Sequence[str]:
    """A roll-up row's key, as the counts hold it: the unique fields, or for a model unique on
    a digest of its key (``KEY_FIELDS`` and ``key_digest``) the fields the digest stands for."""
    return getattr(model, "KEY_FIELDS", None) or _unique_fields(model)


def _key_values(model: type[models.Model], key: tuple[Any, ...]) -> tuple[Any, ...]:
    """``key`` as stored: with its digest after it where the model has one."""
    digest = getattr(model, "key_digest", None)
    return (*key, digest(key[1:])) if digest else key


def _upsert(model: type[models.Model], count_field: str, counts: Counter[Any]) -> None:
    rows = sorted((_key_values(model, key), n) for key, n in counts.items() if n > 0)
    if not rows:
        return
    stored = [*_key_fields(model), *(["digest"] if hasattr(model, "key_digest") else [])]
    fields = [cast("models.Field[Any, Any]", model._meta.get_field(name)) for name in stored]
    fields.append(cast("models.Field[Any, Any]", model._meta.get_field(count_field)))
    unique = [quote_column(model, name) for name in _unique_fields(model)]
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [quote(f.column or f.attname) for f in fields]
    count_column = columns[-1]
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    # Every identifier comes from the model's metadata, quoted; every value is a parameter.
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {{rows}} "  # noqa: S608
        f"ON CONFLICT ({', '.join(unique)}) DO UPDATE SET "
        f"{count_column} = {table}.{count_column} + excluded.{count_column}"
    )
    with connection.cursor() as cursor:
        for first in range(0, len(rows), UPSERT_ROWS):
            chunk = rows[first : first + UPSERT_ROWS]
            params = [
                prepared.get_db_prep_value(value, connection)
                for key, n in chunk
                for prepared, value in zip(fields, (*key, n), strict=True)
            ]
            cursor.execute(sql.format(rows=", ".join([row_sql] * len(chunk))), params)


def quote_column(model: type[models.Model], name: str) -> str:
    field = cast("models.Field[Any, Any]", model._meta.get_field(name))
    return connection.ops.quote_name(field.column or field.attname)


def rollups_record(*, logs: Iterable[PredictionLog]) -> None:
    """Count newly inserted logs. Call inside the transaction that inserted them, once per
    log: a retried request that found its first log must not come here."""
    counts = RollupCounts()
    for log in logs:
        counts.add_log(*(getattr(log, name) for name in LOG_FIELDS))
    counts.save()


def _verdict_key(log: PredictionLog, verdict: str, subject: str) -> tuple[Any, ...]:
    return (
        hour_floor(log.received_at),
        log.model_version_label,
        log.top1_name,
        score_centile(log.top1_score),
        verdict,
        subject,
    )


def rollups_verdict_moved(
    *, log: PredictionLog, previous_verdict: str, previous_subject: str
) -> None:
    """Move a reviewed log from its previous verdict's row (none for a first review) to the row
    of the verdict it holds now. Call inside the review's transaction, with the log row
    locked."""
    if (previous_verdict, previous_subject) == (log.verdict, log.out_of_scope_subject):
        return
    if previous_verdict:
        key = _verdict_key(log, previous_verdict, previous_subject)
        _subtract(PredictionLogVerdictHour, "logs", key, 1)
    if log.verdict:
        counts = RollupCounts()
        counts.verdicts[_verdict_key(log, log.verdict, log.out_of_scope_subject)] += 1
        counts.save()


def rollups_forget(*, log: PredictionLog) -> None:
    """Take a deleted log out of every roll-up (an image deleted in the admin takes its logs
    with it). Connected to PredictionLog's post_delete, so it runs in the deleting
    transaction."""
    counts = RollupCounts()
    counts.add_log(*(getattr(log, name) for name in LOG_FIELDS))
    for model, count_field, counter in counts.tables():
        for key, n in counter.items():
            _subtract(model, count_field, key, n)


def _subtract(model: type[models.Model], count_field: str, key: tuple[Any, ...], n: int) -> None:
    """Take ``n`` from the row at ``key``, deleting it at zero. A row missing or holding less
    (roll-ups not rebuilt since an upgrade) is left alone rather than driven below zero."""
    digest = getattr(model, "key_digest", None)
    lookup = (
        {"hour": key[0], "digest": digest(key[1:])}
        if digest
        else dict(zip(_key_fields(model), key, strict=True))
    )
    rows = model._default_manager.filter(**lookup)
    rows.filter(**{f"{count_field}__gte": n}).update(**{count_field: F(count_field) - n})
    rows.filter(**{count_field: 0}).delete()


def rollups_ready() -> bool:
    """False when the oldest log is older than the oldest roll-up hour: the logs from before
    the roll-ups existed are not in them (an upgraded installation that has not run
    ``rebuild_production_rollups`` yet). Two index lookups."""
    oldest_log = PredictionLog.objects.order_by("received_at").values_list("received_at")[:1]
    oldest_hour = PredictionLogHour.objects.order_by("hour").values_list("hour")[:1]
    log, hour = list(oldest_log), list(oldest_hour)
    if not log:
        return True
    return bool(hour) and hour[0][0] <= hour_floor(log[0][0])


@dataclass
class RebuildSummary:
    logs: int
    rows: dict[str, int]
    seconds: float

    @property
    def logs_per_second(self) -> float:
        return self.logs / self.seconds if self.seconds else 0.0


def production_rollups_rebuild(
    *, progress: Callable[[int, int], None] | None = None
) -> RebuildSummary:
    """Recompute every roll-up from the logs, one day of hours at a time, each day in its own
    short transaction: logs and verdicts written meanwhile wait for one day's recount at most,
    never for the whole rebuild. ``progress(done, total)`` follows the logs read."""
    started = time.perf_counter()
    total = PredictionLog.objects.count()
    done = 0
    if progress is not None:
        progress(done, total)
    span = _span()
    if span is not None:
        day, last = span
        while day <= last:
            done += _rebuild_hours(day, day + REBUILD_SPAN)
            day += REBUILD_SPAN
            if progress is not None:
                progress(done, max(done, total))
    sizes = {m._meta.model_name or "": m._default_manager.count() for m in ROLLUP_MODELS}
    return RebuildSummary(logs=done, rows=sizes, seconds=time.perf_counter() - started)


def _span() -> tuple[datetime, datetime] | None:
    """The first and last hour holding a log or a roll-up row (a row whose logs are gone is
    recounted to nothing)."""
    moments = [
        query.first()
        for query in (
            PredictionLog.objects.order_by("received_at").values_list("received_at", flat=True),
            PredictionLog.objects.order_by("-received_at").values_list("received_at", flat=True),
            PredictionLogHour.objects.order_by("hour").values_list("hour", flat=True),
            PredictionLogHour.objects.order_by("-hour").values_list("hour", flat=True),
        )
    ]
    known = [hour_floor(m) for m in moments if m is not None]
    return (min(known), max(known)) if known else None


@transaction.atomic
def _rebuild_hours(start: datetime, end: datetime) -> int:
    """Replace the roll-up rows of the hours in [start, end) with a recount of their logs.

    The roll-up tables are locked first (EXCLUSIVE on PostgreSQL: reads go on, writes wait;
    SQLite's write lock is the database's), so a log or verdict written meanwhile is counted
    exactly once: here if it committed before the lock, by its own service once this
    transaction commits otherwise."""
    if connection.vendor == "postgresql":
        tables = ", ".join(connection.ops.quote_name(m._meta.db_table) for m in ROLLUP_MODELS)
        with connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
    for model in ROLLUP_MODELS:
        model._default_manager.filter(hour__gte=start, hour__lt=end).delete()
    logs = PredictionLog.objects.filter(received_at__gte=start, received_at__lt=end)
    counts = RollupCounts()
    done = 0
    for row in logs.order_by().values_list(*LOG_FIELDS).iterator(chunk_size=10_000):
        counts.add_log(*row)
        done += 1
        if done % REBUILD_CHUNK == 0:
            counts.save()
            counts = RollupCounts()
    counts.save()
    return done
