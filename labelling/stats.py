"""How much labelling was done: today, this week, per class and per labeller. Counts come from
LabellingAction rows (one per key press) joined to the label events they made; undone actions
and skips do not count."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import User
from labelling.models import ActionKind, LabellingAction

COUNTED = (ActionKind.LABEL, ActionKind.UNKNOWN, ActionKind.BAD)


@dataclass(frozen=True)
class Period:
    today_start: datetime
    week_start: datetime


def current_period() -> Period:
    """Today and this week (from Monday) in the server's time zone."""
    now = timezone.localtime()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return Period(today_start=today, week_start=today - timedelta(days=today.weekday()))


@dataclass(frozen=True)
class Totals:
    today: int
    week: int
    all_time: int
    labelled_today: int
    unknown_today: int
    bad_today: int
    skipped_today: int


@dataclass(frozen=True)
class ClassRow:
    class_id: int | None
    name: str
    today: int
    week: int
    all_time: int


@dataclass(frozen=True)
class LabellerRow:
    username: str
    today: int
    week: int
    all_time: int


def _actions(user: User | None) -> QuerySet[LabellingAction]:
    actions = LabellingAction.objects.filter(undone_at__isnull=True)
    return actions.filter(user=user) if user is not None else actions


class _Windows(NamedTuple):
    """The counts of actions in each window, as annotations. Named one by one in ``annotate``
    (not ``**``) so the type checker knows the rows' keys."""

    today: Count
    week: Count
    all_time: Count


def _windows(period: Period) -> _Windows:
    return _Windows(
        today=Count("id", filter=Q(created_at__gte=period.today_start)),
        week=Count("id", filter=Q(created_at__gte=period.week_start)),
        all_time=Count("id"),
    )


def labelling_totals(*, user: User | None, period: Period) -> Totals:
    """One aggregate query. ``user`` None means everyone."""
    today = Q(created_at__gte=period.today_start)
    row = _actions(user).aggregate(
        today=Count("id", filter=today & Q(kind__in=COUNTED)),
        week=Count("id", filter=Q(created_at__gte=period.week_start, kind__in=COUNTED)),
        all_time=Count("id", filter=Q(kind__in=COUNTED)),
        labelled_today=Count("id", filter=today & Q(kind=ActionKind.LABEL)),
        unknown_today=Count("id", filter=today & Q(kind=ActionKind.UNKNOWN)),
        bad_today=Count("id", filter=today & Q(kind=ActionKind.BAD)),
        skipped_today=Count("id", filter=today & Q(kind=ActionKind.SKIP)),
    )
    return Totals(**row)


def labelling_per_class(*, user: User | None, period: Period) -> list[ClassRow]:
    """Labels (and holding-class answers) per class, busiest this week first; one query.
    A confirmation that kept the label made no event, so its class is the one it had."""
    windows = _windows(period)
    rows = (
        _actions(user)
        .filter(kind__in=(ActionKind.LABEL, ActionKind.UNKNOWN))
        .annotate(
            class_id=Coalesce(
                F("label_event__to_subclass__label_class_id"),
                F("previous_subclass__label_class_id"),
            ),
            class_name=Coalesce(
                F("label_event__to_subclass__label_class__name"),
                F("previous_subclass__label_class__name"),
            ),
        )
        .values("class_id", "class_name")
        .annotate(today=windows.today, week=windows.week, all_time=windows.all_time)
        .order_by("-week", "-all_time", "class_name")
    )
    return [
        ClassRow(
            class_id=row["class_id"],
            name=row["class_name"] or "(class deleted)",
            today=row["today"],
            week=row["week"],
            all_time=row["all_time"],
        )
        for row in rows
    ]


def labelling_per_labeller(*, period: Period) -> list[LabellerRow]:
    """Everyone's counts, busiest this week first; one query."""
    windows = _windows(period)
    rows = (
        _actions(None)
        .filter(kind__in=COUNTED)
        .values("user__username")
        .annotate(today=windows.today, week=windows.week, all_time=windows.all_time)
        .order_by("-week", "-all_time", "user__username")
    )
    return [
        LabellerRow(
            username=row["user__username"],
            today=row["today"],
            week=row["week"],
            all_time=row["all_time"],
        )
        for row in rows
    ]
