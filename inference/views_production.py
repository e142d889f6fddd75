"""Production pages: the usage and performance dashboard, and the happy / sad review queues."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_http_methods

from accounts.decorators import request_user, reviewer_required
from config.query import whole_number
from curation.models import BAD_REASON_KEYS, BadReason, SubClass
from inference import charts
from inference.embeddings import (
    ood_at_least,
    ood_dashboard,
    ood_param,
    ood_score_of,
)
from inference.embeddings import ood_threshold as confidence_threshold_ood
from inference.models import PredictionLog, Verdict
from inference.production import (
    DRIFT_MIN_SAMPLE,
    DRIFT_P_VALUE,
    QUEUE_COUNT_CAP,
    WEEKDAYS,
    Path,
    ReviewError,
    confidence_threshold,
    dashboard,
    drift,
    library_disagrees,
    library_label,
    prediction_log_review,
    queue_size,
    review_queue,
    verdict_counts,
)

DRIFT_DAYS = 7


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _threshold(request: HttpRequest) -> float:
    try:
        value = float(request.GET.get("threshold", ""))
    except ValueError:
        return confidence_threshold()
    return value if 0.0 < value <= 1.0 else confidence_threshold()


@reviewer_required
def dashboard_page(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    first = _day(request.GET.get("start")) or today - timedelta(days=29)
    last = _day(request.GET.get("end")) or today
    if last < first:
        first, last = last, first
    zone = timezone.get_current_timezone()
    start = datetime.combine(first, datetime.min.time(), tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    threshold = _threshold(request)
    board = dashboard(start=start, end=end, threshold=threshold)

    drift_since = end - timedelta(days=DRIFT_DAYS)
    drift_tests = drift(since=drift_since, until=end)

    hours = [h for h, _ in board.per_hour]
    per_day: dict[str, int] = {}
    for hour, n in board.per_hour:
        per_day[hour.date().isoformat()] = per_day.get(hour.date().isoformat(), 0) + n
    version_series = {
        label: [counts.get(day, 0) for day in board.days]
        for label, counts in board.per_version_day.items()
    }
    context: dict[str, Any] = {
        "board": board,
        "first": first,
        "last": last,
        "threshold": threshold,
        "weekdays": list(zip(WEEKDAYS, board.per_weekday, strict=True)),
        "hours_of_day": list(enumerate(board.per_hour_of_day)),
        "per_day": sorted(per_day.items()),
        "versions": [
            (label, charts.PALETTE[n % len(charts.PALETTE)], sum(values))
            for n, (label, values) in enumerate(version_series.items())
        ],
        "version_rows": [
            (day, [version_series[label][i] for label in version_series])
            for i, day in enumerate(board.days)
        ],
        "chart_hour_of_day": charts.bar_chart(
            board.per_hour_of_day,
            [f"{h:02d}" for h in range(24)],
            title="Calls per hour of day",
            every=3,
        ),
        "chart_weekday": charts.bar_chart(
            board.per_weekday, WEEKDAYS, title="Calls per day of week", colour=charts.PALETTE[2]
        ),
        "chart_days": charts.bar_chart(
            [n for _, n in sorted(per_day.items())],
            [d[5:] for d, _ in sorted(per_day.items())],
            title="Calls per day",
            every=max(1, len(per_day) // 8),
        ),
        "chart_versions": charts.line_chart(
            version_series, [d[5:] for d in board.days], title="Calls per model version per day"
        ),
        "chart_share": charts.share_bar(
            [("At or above the threshold", board.above), ("Below", board.below)],
            title="Share of calls above and below the threshold",
        ),
        "chart_classes": charts.named_bar_chart(
            [n for _, n in board.classes[:12]],
            [name for name, _ in board.classes[:12]],
            title="Predicted classes, most frequent first",
            colour=charts.PALETTE[1],
        ),
        "share_above": board.above / board.total if board.total else None,
        "hour_count": len(hours),
        "verdict_labels": [
            (label, board.verdicts.get(value, 0)) for value, label in Verdict.choices
        ],
        "reviewed_total": sum(board.verdicts.values()),
        "drift_days": DRIFT_DAYS,
        "drift_tests": drift_tests,
        "drift_flagged": [t for t in drift_tests if t.shifted],
        "drift_since": drift_since,
        "drift_p": DRIFT_P_VALUE,
        "drift_min": DRIFT_MIN_SAMPLE,
        "cap": QUEUE_COUNT_CAP,
        "queues": {
            "happy": queue_size(review_queue(path=Path.HAPPY, threshold=threshold)),
            "sad": queue_size(review_queue(path=Path.SAD, threshold=threshold)),
        },
    }
    context.update(_ood_context(start=start, end=end))
    return render(request, "inference/production/dashboard.html", context)


def _ood_context(*, start: datetime, end: datetime) -> dict[str, Any]:
    """The "unlike the library" panel: stored OOD scores of the range's logged images."""
    panel = ood_dashboard(start=start, end=end)
    return {
        "ood": panel,
        "chart_ood_days": charts.bar_chart(
            [round(100 * (day.share or 0.0), 1) for day in panel.days],
            [day.day[5:] for day in panel.days],
            title="Share of scored logs at or above the OOD threshold per day (%)",
            every=max(1, len(panel.days) // 8),
            colour=charts.PALETTE[5],
        ),
        "chart_ood_histogram": charts.bar_chart(
            [n for _, n in panel.histogram],
            [label for label, _ in panel.histogram],
            title="OOD scores of logged images",
            every=2,
            colour=charts.PALETTE[3],
        ),
    }


def _subclass_name(subclass: SubClass) -> str:
    if subclass.is_default:
        return subclass.label_class.name
    return f"{subclass.label_class.name} / {subclass.name}"


def _subclass_choices() -> list[dict[str, Any]]:
    return [
        {"id": subclass.pk, "name": _subclass_name(subclass)}
        for subclass in SubClass.objects.select_related("label_class").order_by(
            "label_class__name", "-is_default", "name"
        )
    ]


@reviewer_required
@require_http_methods(["GET", "POST"])
def review_page(request: HttpRequest, path: str) -> HttpResponse:
    if path not in (Path.HAPPY, Path.SAD):
        raise Http404("No such review queue.")
    threshold = confidence_threshold()
    if request.method == "POST":
        return _review_post(request, path)
    queue = review_queue(path=path, threshold=threshold)
    ood_min = ood_param(request.GET.get("ood_min"))
    if ood_min is not None:
        queue = queue.filter(ood_at_least(ood_min, image_field="image_id"))
    # ?log=ID opens one log, reviewed or not, so that its verdict can be changed.
    chosen = whole_number(request.GET.get("log"))
    log = (
        (PredictionLog.objects.filter(pk=chosen) if chosen is not None else queue)
        .select_related("image__subclass__label_class", "model_version")
        .first()
    )
    choices = _subclass_choices()
    log_ood = ood_score_of(image_id=log.image_id) if log is not None else None
    top3 = []
    library = library_label(log) if log is not None else None
    if log is not None:
        top3 = [
            {"name": name, "score": score, "percent": round(score * 100)}
            for name, score in list(zip(log.class_names, log.scores, strict=False))[:3]
        ]
    return render(
        request,
        "inference/production/review.html",
        {
            "path": path,
            "title": "Happy path" if path == Path.HAPPY else "Sad path",
            "threshold": threshold,
            "log": log,
            "top3": top3,
            # What the library says now: a "correct" that contradicts it must say so.
            "library_label": _subclass_name(library) if library else None,
            "library_subclass_id": library.pk if library else None,
            "disagrees": log is not None and library_disagrees(log),
            "remaining": queue_size(queue),
            "cap": QUEUE_COUNT_CAP,
            "ood_min": f"{ood_min:g}" if ood_min is not None else "",
            "ood_threshold": f"{confidence_threshold_ood():g}",
            "log_ood": log_ood,
            "log_unlike": log_ood is not None and log_ood >= confidence_threshold_ood(),
            "counts": [
                (label, verdict_counts(path=path)[value]) for value, label in Verdict.choices
            ],
            "subclasses": choices,
            "bad_reasons": [
                {"value": r.value, "label": r.label, "key": BAD_REASON_KEYS[r.value]}
                for r in BadReason
            ],
        },
    )


def _review_post(request: HttpRequest, path: str) -> HttpResponse:
    try:
        log_id = int(request.POST.get("log", ""))
    except ValueError:
        raise Http404("No such log.") from None
    verdict = request.POST.get("verdict", "")
    subclass = None
    if verdict == Verdict.WRONG:
        subclass = SubClass.objects.filter(pk=request.POST.get("subclass") or 0).first()
    try:
        prediction_log_review(
            log_id=log_id,
            verdict=verdict,
            actor=request_user(request),
            subclass=subclass,
            subject=request.POST.get("subject", ""),
            bad_reason=request.POST.get("bad_reason", ""),
            replace=request.POST.get("replace") == "1",
            relabel=request.POST.get("relabel") == "1",
        )
    except ReviewError as exc:
        messages.error(request, str(exc))
        # The same log again, so that the reviewer can answer otherwise.
        again = f"{reverse('production:review', args=[path])}?log={log_id}"
        ood_min = ood_param(request.POST.get("ood_min"))
        return redirect(f"{again}&ood_min={ood_min:g}" if ood_min is not None else again)
    else:
        change = f"{reverse('production:review', args=[path])}?log={log_id}"
        messages.success(
            request,
            format_html(
                'Log {}: {}. <a href="{}">Change</a>', log_id, Verdict(verdict).label, change
            ),
        )
    ood_min = ood_param(request.POST.get("ood_min"))
    if ood_min is not None:
        return redirect(f"{reverse('production:review', args=[path])}?ood_min={ood_min:g}")
    return redirect("production:review", path)
