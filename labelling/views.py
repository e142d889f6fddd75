"""Pages of the labelling workspace: the queue picker, the keyboard labelling page, the class
standards, the second-opinion review and the stats. The labelling page is a shell: its script
talks to the labelling API (one request per key press) and reads the class tree embedded in the
page as JSON."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import request_user as _user
from accounts.models import User
from config.query import whole_number
from curation import selectors as curation_selectors
from curation.models import BAD_REASON_KEYS, BadReason, ClassKind, LabelClass, SavedFilter, SubClass
from curation.services.images import ImageStateError, VersionConflict
from curation.services.taxonomy import TaxonomyError
from labelling import stats as labelling_stats
from labelling.models import Exemplar, ExemplarKind, OpinionStatus, SecondOpinion
from labelling.queues import (
    SECOND_OPINION_SPEC,
    QueueNotFound,
    queue_resolve,
    queue_specs_overview,
)
from labelling.selectors import agreement_rates, opinions_by_status
from labelling.services import SettleChoice, second_opinion_settle
from labelling.standards import (
    DESCRIPTION_MAX,
    StandardsError,
    exemplar_pin,
    exemplar_unpin,
    standards_describe,
    standards_for,
)

CLASSES_PER_PAGE = 100
SAVED_FILTERS_SHOWN = 25
EXEMPLARS_ON_STANDARDS_PAGE = 60
PREFETCH = 5


def _bad_reasons() -> list[dict[str, str]]:
    return [
        {"value": reason.value, "label": reason.label, "key": BAD_REASON_KEYS[reason]}
        for reason in BadReason
    ]


# --- Queue picker ---------------------------------------------------------------------------


@login_required
@require_GET
def queue_picker(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    classes = curation_selectors.class_list().filter(kind=ClassKind.NORMAL)
    if query:
        classes = classes.filter(name__icontains=query)
    page = Paginator(classes, CLASSES_PER_PAGE).get_page(request.GET.get("page"))
    class_rows = []
    for label_class in page.object_list:
        subclasses = list(label_class.subclasses.all())  # prefetched
        class_rows.append(
            {
                "label_class": label_class,
                "spec": f"class:{label_class.pk}",
                "count": sum(s.image_count for s in subclasses),
                # A class whose only sub-class is the default one needs no sub-class queue.
                "subclasses": [
                    {"spec": f"subclass:{s.pk}", "name": s.name, "count": s.image_count}
                    for s in subclasses
                ]
                if len(subclasses) > 1
                else [],
            }
        )
    filters = []
    for saved in SavedFilter.objects.all()[:SAVED_FILTERS_SHOWN]:
        queue = queue_resolve(f"filter:{saved.pk}")
        filters.append({"spec": queue.spec, "name": saved.name, "count": queue.size()})
    specials = [
        {
            "spec": spec,
            "title": title,
            "count": count,
            "kind": "Unlabelled" if spec == "inbox" else "Holding class",
            "primary": spec == "inbox",
        }
        for spec, title, count in queue_specs_overview()
    ]
    user = _user(request)
    second = queue_resolve(SECOND_OPINION_SPEC)
    specials.append(
        {
            "spec": second.spec,
            "title": "Whole library",
            "count": second.size(user=user),
            "kind": "Second opinion (blind)",
            "primary": False,
        }
    )
    return render(
        request,
        "labelling/queues.html",
        {
            "open_opinions": _open_opinions() if user.is_reviewer else None,
            "specials": specials,
            "class_rows": class_rows,
            "page": page,
            "query": query,
            "filters": filters,
        },
    )


# --- Labelling page -------------------------------------------------------------------------


def _picker_classes() -> list[dict[str, Any]]:
    """The class tree the type-ahead picker searches (two queries). Names travel as JSON data
    and are only ever set as text by the script."""
    rows = []
    for label_class in curation_selectors.class_list():
        subclasses = list(label_class.subclasses.all())
        rows.append(
            {
                "id": label_class.pk,
                "name": label_class.name,
                "holding": label_class.kind == ClassKind.HOLDING,
                "subclasses": [
                    {"id": s.pk, "name": s.name, "source": s.source, "default": s.is_default}
                    for s in subclasses
                ],
            }
        )
    return rows


@login_required
@require_GET
def label_page(request: HttpRequest, spec: str) -> HttpResponse:
    if spec.startswith("second:") and spec != SECOND_OPINION_SPEC:
        # Links to the per-class samples there used to be: each gave its first label away.
        messages.info(
            request,
            "Second opinions come from a sample of the whole library: a sample of one class "
            "would tell you every image's first label.",
        )
        return redirect("labelling:label", SECOND_OPINION_SPEC)
    try:
        queue = queue_resolve(spec)
    except QueueNotFound as exc:
        raise Http404(str(exc)) from None
    holding = LabelClass.objects.filter(kind=ClassKind.HOLDING).order_by("name").first()
    user = _user(request)
    config = {
        "queue": queue.spec,
        "blind": queue.blind,
        "prefetch": PREFETCH,
        "is_reviewer": user.is_reviewer,
        "holding": {"id": holding.pk, "name": holding.name} if holding else None,
        "urls": {
            "queue": reverse("api:labelling-queue"),
            "act": reverse("api:labelling-action"),
            "undo": reverse("api:labelling-undo"),
            "subclasses": reverse("api:subclass-list"),
            "standards_panel": reverse("labelling:standards-panel", args=[0]).replace(
                "/0/", "/{id}/"
            ),
            # A blind queue links to no image page: the page shows the first label.
            "image_page": None
            if queue.blind
            else reverse("curation:image", args=[0]).replace("/0/", "/{id}/"),
            "queues": reverse("labelling:queues"),
        },
        "bad_reasons": _bad_reasons(),
    }
    return render(
        request,
        "labelling/label.html",
        {
            "queue": queue,
            "remaining": queue.size(user=user),
            "config": config,
            "picker_classes": _picker_classes(),
            "bad_reasons": config["bad_reasons"],
            "holding": holding,
        },
    )


# --- Standards ------------------------------------------------------------------------------


def _exemplar_json(exemplar: Exemplar) -> dict[str, Any]:
    return {
        "image": exemplar.image_id,
        "note": exemplar.note,
        "thumbnail_url": reverse("curation:image-thumbnail", args=[exemplar.image_id]),
        "page_url": reverse("curation:image", args=[exemplar.image_id]),
    }


@login_required
@require_GET
def standards_panel(request: HttpRequest, pk: int) -> JsonResponse:
    """The class's standards for the panel beside the image being labelled."""
    label_class = get_object_or_404(LabelClass, pk=pk)
    standards = standards_for(label_class=label_class)
    return JsonResponse(
        {
            "class_id": label_class.pk,
            "name": label_class.name,
            "description": label_class.description,
            "good": [_exemplar_json(e) for e in standards.good],
            "bad": [_exemplar_json(e) for e in standards.bad],
            "page_url": reverse("labelling:standards", args=[label_class.pk]),
        }
    )


def _positive_int(value: str | None) -> int | None:
    value = (value or "").strip().lstrip("#")
    return whole_number(value) or None


@login_required
@require_http_methods(["GET", "POST"])
def standards_page(request: HttpRequest, pk: int) -> HttpResponse:
    label_class = get_object_or_404(LabelClass, pk=pk)
    user = _user(request)
    if request.method == "POST":
        if not user.is_reviewer:
            raise PermissionDenied("Only reviewers can change the labelling standards.")
        _standards_change(request, label_class, user)
        return redirect(_back_to(request, reverse("labelling:standards", args=[label_class.pk])))
    standards = standards_for(label_class=label_class, limit=EXEMPLARS_ON_STANDARDS_PAGE)
    return render(
        request,
        "labelling/standards.html",
        {
            "label_class": label_class,
            "good": standards.good,
            "bad": standards.bad,
            "kinds": ExemplarKind.choices,
            "description_max": DESCRIPTION_MAX,
            "subclasses": SubClass.objects.filter(label_class=label_class).order_by(
                "-is_default", "name"
            ),
        },
    )


def _standards_change(request: HttpRequest, label_class: LabelClass, user: User) -> None:
    """Apply one change from the standards page's forms; the outcome is a flash message."""
    operation = request.POST.get("op", "")
    try:
        if operation == "describe":
            standards_describe(
                label_class=label_class,
                description=request.POST.get("description", ""),
                actor=user,
            )
            messages.success(request, "Description saved.")
        elif operation == "pin":
            _pin(request, label_class, user)
        elif operation == "unpin":
            exemplar_id = _positive_int(request.POST.get("exemplar"))
            exemplar = None
            if exemplar_id is not None:
                exemplar = Exemplar.objects.filter(pk=exemplar_id, label_class=label_class).first()
            if exemplar is None:
                raise StandardsError("That exemplar is no longer pinned.")
            exemplar_unpin(exemplar=exemplar, actor=user)
            messages.success(request, f"Image {exemplar.image_id} unpinned.")
        else:
            messages.error(request, "Unknown change.")
    except (StandardsError, TaxonomyError) as exc:
        messages.error(request, str(exc))


def _pin(request: HttpRequest, label_class: LabelClass, user: User) -> None:
    image_id = _positive_int(request.POST.get("image"))
    if image_id is None:
        raise StandardsError("Give the number of the image to pin (e.g. 1234).")
    exemplar = exemplar_pin(
        label_class=label_class,
        image_id=image_id,
        kind=request.POST.get("kind", ""),
        note=request.POST.get("note", ""),
        actor=user,
    )
    messages.success(
        request,
        f"Image {image_id} pinned as a {exemplar.get_kind_display().lower()} "
        f"of “{label_class.name}”.",
    )


def _back_to(request: HttpRequest, fallback: str) -> str:
    """The page the form came from (``next``), if it is on this site; else ``fallback``."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


@login_required
@require_POST
def exemplar_pin_form(request: HttpRequest) -> HttpResponse:
    """Pin an image to any class's standards: the image page's form, where the class is a
    choice rather than part of the address."""
    user = _user(request)
    if not user.is_reviewer:
        raise PermissionDenied("Only reviewers can change the labelling standards.")
    class_id = _positive_int(request.POST.get("class"))
    label_class = LabelClass.objects.filter(pk=class_id).first() if class_id else None
    if label_class is None:
        messages.error(request, "Pick the class whose standards the image should join.")
        return redirect(_back_to(request, reverse("labelling:queues")))
    try:
        _pin(request, label_class, user)
    except StandardsError as exc:
        messages.error(request, str(exc))
    return redirect(_back_to(request, reverse("labelling:standards", args=[label_class.pk])))


# --- Stats ----------------------------------------------------------------------------------


@login_required
@require_GET
def stats_page(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    everyone = user.is_reviewer
    scope = None if everyone else user
    period = labelling_stats.current_period()
    return render(
        request,
        "labelling/stats.html",
        {
            "everyone": everyone,
            "period": period,
            "totals": labelling_stats.labelling_totals(user=scope, period=period),
            "per_class": labelling_stats.labelling_per_class(user=scope, period=period),
            "per_labeller": labelling_stats.labelling_per_labeller(period=period)
            if everyone
            else [],
            "consistency": _consistency() if everyone else None,
        },
    )


# --- Second opinions ------------------------------------------------------------------------

OPEN_OPINIONS_SHOWN = 100
SETTLED_OPINIONS_SHOWN = 50
CHART_ROWS = 20
CHART_NAME_CHARS = 26


def _reviewer(request: HttpRequest) -> User:
    user = _user(request)
    if not user.is_reviewer:
        raise PermissionDenied("Settling second opinions needs the reviewer role.")
    return user


def _open_opinions() -> int:
    return SecondOpinion.objects.filter(status=OpinionStatus.OPEN).count()


def _consistency() -> dict[str, Any]:
    """Opinions given, agreed and still open, in one query."""
    counts = SecondOpinion.objects.aggregate(
        total=Count("id"),
        agreed=Count("id", filter=Q(agrees=True)),
        open=Count("id", filter=Q(status=OpinionStatus.OPEN)),
    )
    counts["percent"] = 100 * counts["agreed"] / counts["total"] if counts["total"] else None
    return counts


def _second_label(opinion: SecondOpinion) -> dict[str, Any]:
    if opinion.second_bad_reason:
        reason = opinion.second_bad_reason
        label = BadReason(reason).label if reason in BadReason.values else reason
        return {"bad": True, "class_name": "Bad image", "subclass_name": label}
    subclass = opinion.second_subclass
    return {
        "bad": False,
        "class_name": subclass.label_class.name if subclass else None,
        "subclass_name": subclass.name if subclass and not subclass.is_default else "",
    }


def _opinion_row(opinion: SecondOpinion) -> dict[str, Any]:
    first = opinion.first_subclass
    current = opinion.image.subclass
    return {
        "opinion": opinion,
        "image_id": opinion.image_id,
        "first": {
            "class_name": first.label_class.name if first else None,
            "subclass_name": first.name if first and not first.is_default else "",
            "actor": opinion.first_actor.username if opinion.first_actor else None,
        },
        "second": {**_second_label(opinion), "actor": opinion.second_actor.username},
        # The image may have been relabelled since the opinion was given; the reviewer should
        # know what "keep the first label" would actually keep.
        "relabelled": opinion.image.subclass_id != opinion.first_subclass_id,
        "current": str(current) if current else None,
    }


@login_required
@require_GET
def second_opinions_page(request: HttpRequest) -> HttpResponse:
    """Disagreements between a label and a blind second opinion, for a reviewer to settle one
    key at a time; the recently settled ones on their own tab. Three queries."""
    _reviewer(request)
    tab = "settled" if request.GET.get("tab") == "settled" else "open"
    opinions = opinions_by_status().select_related("image__subclass__label_class")
    if tab == "open":
        opinions = opinions.filter(status=OpinionStatus.OPEN).order_by("id")
        shown = list(opinions[:OPEN_OPINIONS_SHOWN])
    else:
        opinions = opinions.filter(
            status__in=[OpinionStatus.SETTLED, OpinionStatus.DOUBLE_CHECK]
        ).select_related("settled_by")
        shown = list(opinions.order_by("-settled_at", "-id")[:SETTLED_OPINIONS_SHOWN])
    rows = [_opinion_row(opinion) for opinion in shown]
    current = _positive_int(request.GET.get("opinion"))
    if tab == "open" and rows and current not in {row["opinion"].pk for row in rows}:
        current = rows[0]["opinion"].pk
    return render(
        request,
        "labelling/second_opinions.html",
        {
            "tab": tab,
            "rows": rows,
            "current": current,
            "open_count": _open_opinions(),
            "shown_max": OPEN_OPINIONS_SHOWN if tab == "open" else SETTLED_OPINIONS_SHOWN,
            "choices": SettleChoice,
        },
    )


def _settled_message(opinion: SecondOpinion, choice: str) -> str:
    if choice == SettleChoice.DOUBLE_CHECK:
        return f"Image {opinion.image_id} sent to Double-check."
    if choice == SettleChoice.FIRST:
        first = opinion.first_subclass
        name = f"“{first.label_class.name}”" if first else "the first label"
        return f"Image {opinion.image_id}: kept {name}."
    second = _second_label(opinion)
    if second["bad"]:
        return f"Image {opinion.image_id} marked bad: {second['subclass_name']}."
    return f"Image {opinion.image_id} relabelled “{second['class_name']}”."


@login_required
@require_POST
def second_opinion_settle_form(request: HttpRequest, pk: int) -> HttpResponse:
    """Settle one disagreement from the review page. The page's script asks for JSON and stays
    on the page; without the script the form posts and comes back with a message."""
    user = _reviewer(request)
    wants_json = "application/json" in request.headers.get("Accept", "")
    choice = request.POST.get("choice", "")
    status = 200
    try:
        settled = second_opinion_settle(reviewer=user, opinion_id=pk, choice=choice)
    except SecondOpinion.DoesNotExist:
        raise Http404(f"No second opinion {pk}.") from None
    except (ValueError, VersionConflict, ImageStateError) as exc:
        ok, message, status = False, str(exc), 409
    else:
        opinion = opinions_by_status().get(pk=settled.pk)
        ok, message = True, _settled_message(opinion, choice)
    if wants_json:
        return JsonResponse({"ok": ok, "message": message, "open": _open_opinions()}, status=status)
    (messages.success if ok else messages.error)(request, message)
    return redirect("labelling:second-opinions")


def _chart(rows: list[dict[str, Any]], name_key: str) -> list[dict[str, Any]]:
    """The least consistent rows (most opinions first among equals) as bars of an SVG chart;
    every row stays in the table beside it."""
    ranked = sorted(
        (row for row in rows if row["opinions"]),
        key=lambda row: (row["agreement"], -row["opinions"]),
    )[:CHART_ROWS]
    bars = []
    for index, row in enumerate(ranked):
        name = str(row[name_key] or "—")
        short = name if len(name) <= CHART_NAME_CHARS else name[: CHART_NAME_CHARS - 1] + "…"
        bars.append(
            {
                **row,
                "name": name,
                "short": short,
                "percent": round(100 * row["agreement"]),
                "y": index * 26,
                "width": round(280 * row["agreement"], 1),
            }
        )
    return bars


@login_required
@require_GET
def agreement_page(request: HttpRequest) -> HttpResponse:
    """How often a blind second opinion agrees with the first label, per class and per
    (first labeller, second labeller) pair. Three queries."""
    _reviewer(request)
    rates = agreement_rates()
    for row in rates["per_pair"]:
        row["pair"] = f"{row['first'] or '—'} → {row['second'] or '—'}"
    class_bars = _chart(rates["per_class"], "class_name")
    pair_bars = _chart(rates["per_pair"], "pair")
    return render(
        request,
        "labelling/agreement.html",
        {
            "tab": "agreement",
            "open_count": rates["open"],
            "per_class": rates["per_class"],
            "per_pair": rates["per_pair"],
            "class_bars": class_bars,
            "class_chart_height": len(class_bars) * 26,
            "pair_bars": pair_bars,
            "pair_chart_height": len(pair_bars) * 26,
            "chart_rows": CHART_ROWS,
            "consistency": _consistency(),
        },
    )
