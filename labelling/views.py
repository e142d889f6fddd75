"""Pages of the labelling workspace: the queue picker, the keyboard labelling page, the class
standards and the stats. The labelling page is a shell: its script talks to the labelling API
(one request per key press) and reads the class tree embedded in the page as JSON."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import User
from curation import selectors as curation_selectors
from curation.models import ClassKind, LabelClass, SubClass
from curation.services.taxonomy import TaxonomyError
from labelling import stats as labelling_stats
from labelling.models import BAD_REASON_KEYS, BadReason, Exemplar, ExemplarKind, SavedFilter
from labelling.queues import QueueNotFound, queue_resolve, queue_specs_overview
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


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)


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
                "second_spec": f"second:{label_class.pk}",
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
    second = queue_resolve("second:all")
    specials.append(
        {
            "spec": second.spec,
            "title": "Whole library",
            "count": second.size(),
            "kind": "Second opinion (blind)",
            "primary": False,
        }
    )
    return render(
        request,
        "labelling/queues.html",
        {
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
            "image_page": reverse("curation:image", args=[0]).replace("/0/", "/{id}/"),
            "queues": reverse("labelling:queues"),
        },
        "bad_reasons": _bad_reasons(),
    }
    return render(
        request,
        "labelling/label.html",
        {
            "queue": queue,
            "remaining": queue.size(),
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
    return int(value) if value.isdigit() and int(value) > 0 else None


@login_required
@require_http_methods(["GET", "POST"])
def standards_page(request: HttpRequest, pk: int) -> HttpResponse:
    label_class = get_object_or_404(LabelClass, pk=pk)
    user = _user(request)
    if request.method == "POST":
        if not user.is_reviewer:
            raise PermissionDenied("Only reviewers can change the labelling standards.")
        _standards_change(request, label_class, user)
        return redirect("labelling:standards", pk=label_class.pk)
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
                request, f"Image {image_id} pinned as a {exemplar.get_kind_display().lower()}."
            )
        elif operation == "unpin":
            exemplar_id = _positive_int(request.POST.get("exemplar"))
            exemplar = Exemplar.objects.filter(pk=exemplar_id, label_class=label_class).first()
            if exemplar is None:
                raise StandardsError("That exemplar is no longer pinned.")
            exemplar_unpin(exemplar=exemplar, actor=user)
            messages.success(request, f"Image {exemplar.image_id} unpinned.")
        else:
            messages.error(request, "Unknown change.")
    except (StandardsError, TaxonomyError) as exc:
        messages.error(request, str(exc))


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
        },
    )
