"""The bulk identification page: start a run over a scope, browse the version's predictions
with filters, and act on the selected images (label, trash, send to a labelling queue)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import request_user as _user
from accounts.decorators import reviewer_required
from config.query import whole_number
from curation.models import (
    ClassKind,
    ImportBatch,
    Job,
    JobStatus,
    LabelClass,
    SavedFilter,
    Source,
    SubClass,
)
from inference.bulk import (
    DEFAULT_SORT,
    IDENTIFY_KIND,
    SORTS,
    IdentificationError,
    ResultFilter,
    Scope,
    Selected,
    identification_results,
    identification_start,
    images_bulk_relabel,
    images_bulk_trash,
    results_queue_create,
)
from inference.embeddings import ood_choices, ood_param
from inference.models import LabelMatch, ModelVersion

RESULTS_PER_PAGE = 60
RECENT_BATCHES = 20
RECENT_RUNS = 5
# The filter fields the page keeps in its query string (and hands back after an action).
FILTER_FIELDS = ("v", "scope", "cls", "min", "max", "rare", "staged", "ood_min", "sort")


def _scope_parse(text: str) -> Scope:
    """``inbox``, ``library``, ``class:<id>``, ``subclass:<id>``, ``source:<name>`` or
    ``batch:<id>``; anything else is the inbox."""
    kind, _, ident = text.partition(":")
    if kind == "library":
        return Scope()
    if kind == "source" and ident in Source.values:
        return Scope(source=ident)
    number = whole_number(ident)
    if number is not None:
        if kind == "class":
            return Scope(label_class=number)
        if kind == "subclass":
            return Scope(subclass=number)
        if kind == "batch":
            return Scope(import_batch=number)
    return Scope(labelled=False)


def _scope_spec(scope: Scope) -> str:
    if scope.labelled is False:
        return "inbox"
    if scope.label_class is not None:
        return f"class:{scope.label_class}"
    if scope.subclass is not None:
        return f"subclass:{scope.subclass}"
    if scope.source is not None:
        return f"source:{scope.source}"
    if scope.import_batch is not None:
        return f"batch:{scope.import_batch}"
    return "library"


def _scope_choices(classes: list[LabelClass]) -> list[tuple[str, list[tuple[str, str]]]]:
    """(group, [(spec, label)]) for the scope picker; two queries (classes, recent batches)."""
    batches = ImportBatch.objects.order_by("-id").only("pk", "name")[:RECENT_BATCHES]
    return [
        ("", [("inbox", "Inbox (unlabelled)"), ("library", "Whole library")]),
        (
            "Holding classes",
            [(f"class:{c.pk}", c.name) for c in classes if c.kind == ClassKind.HOLDING],
        ),
        ("Sources", [(f"source:{key}", f"{label} sub-classes") for key, label in Source.choices]),
        (
            "Recent imports",
            [(f"batch:{b.pk}", f"Import #{b.pk} {b.name}"[:60].strip()) for b in batches],
        ),
        ("Classes", [(f"class:{c.pk}", c.name) for c in classes if c.kind != ClassKind.HOLDING]),
    ]


def _float(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return min(max(value, 0.0), 1.0) if value == value else None  # NaN is no bound


def _positive_int(text: str | None) -> int | None:
    return whole_number(text) or None


def _version(number: int | None) -> ModelVersion | None:
    versions = ModelVersion.objects.all()
    if number is not None:
        return versions.filter(number=number).first()
    return versions.filter(is_active=True).first() or versions.first()


@dataclass(frozen=True)
class PageState:
    version: ModelVersion | None
    filters: ResultFilter | None
    scope: Scope
    query: dict[str, str]  # the filter fields as given, for links and forms


def _state(params: QueryDict) -> PageState:
    query = {key: value for key in FILTER_FIELDS if (value := params.get(key))}
    scope = _scope_parse(params.get("scope", "inbox"))
    version = _version(_positive_int(params.get("v")))
    if version is None:
        return PageState(None, None, scope, query)
    sort = params.get("sort", "")
    filters = ResultFilter(
        version=version,
        scope=scope,
        predicted_class=_positive_int(params.get("cls")),
        score_min=_float(params.get("min")),
        score_max=_float(params.get("max")),
        rare_below=_positive_int(params.get("rare")),
        mostly_staged=params.get("staged") == "1",
        ood_min=ood_param(params.get("ood_min")),
        sort=sort if sort in SORTS else DEFAULT_SORT,
    )
    return PageState(version, filters, scope, query)


def _with(query: dict[str, str], **changes: Any) -> str:
    """The query string of ``query`` with ``changes`` (None removes a field)."""
    merged = {**query, **{k: v for k, v in changes.items() if v is not None}}
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
    return urlencode(merged)


@login_required
@require_GET
def identify(request: HttpRequest) -> HttpResponse:
    state = _state(request.GET)
    page = None
    matched: list[LabelMatch] = []
    if state.filters is not None:
        page = identification_results(
            filters=state.filters, cursor=request.GET.get("after"), size=RESULTS_PER_PAGE
        )
        matched = list(
            LabelMatch.objects.filter(model_version=state.version, label_class__isnull=False)
            .select_related("label_class")
            .order_by("label_class__name")
        )
    user = _user(request)
    query = state.query
    wanted = state.filters.predicted_class if state.filters else None
    chosen_class = next((m.label_class for m in matched if m.label_class_id == wanted), None)
    presets = [
        ("Lowest scores first", _with(query, sort="lowest", min=None, max=None)),
        ("Classes with under 20 images", _with(query, rare="20")),
        ("Mostly staged or synthetic", _with(query, staged="1")),
    ]
    if chosen_class is not None:
        lookalikes = _with(query, max="0.5", sort="lowest")
        presets.append((f"Look-alikes of {chosen_class.name} (below 0.5)", lookalikes))
    runs = list(Job.objects.filter(kind=IDENTIFY_KIND).order_by("-id")[:RECENT_RUNS])
    queued = SavedFilter.objects.filter(pk=_positive_int(request.GET.get("queued")) or 0).first()
    return render(
        request,
        "inference/identify.html",
        {
            "state": state,
            "filters": state.filters,
            "page": page,
            "versions": ModelVersion.objects.order_by("-number").only(
                "pk", "number", "name", "is_active"
            ),
            "scope_spec": _scope_spec(state.scope),
            "scope_label": state.scope.describe(),
            "scope_choices": _scope_choices(
                list(LabelClass.objects.only("pk", "name", "kind").order_by("name"))
            ),
            "matched": matched,
            "sorts": [(key, label) for key, (label, _) in SORTS.items()],
            "ood_choices": ood_choices(),
            "ood_min": request.GET.get("ood_min", ""),
            "presets": presets,
            "query": urlencode(query),
            "base_query": urlencode(query) + "&" if query else "",
            "first_url": "?" + urlencode(query),
            "can_review": user.is_reviewer,
            "subclasses": (
                SubClass.objects.select_related("label_class").order_by(
                    "label_class__name", "-is_default", "name"
                )
                if user.is_reviewer
                else []
            ),
            "runs": runs,
            "runs_live": any(run.status in (JobStatus.QUEUED, JobStatus.RUNNING) for run in runs),
            "per_page": RESULTS_PER_PAGE,
            "queued": queued,
            "queued_url": reverse("labelling:label", args=[f"filter:{queued.pk}"])
            if queued
            else "",
        },
    )


def _back(request: HttpRequest, **extra: str) -> HttpResponse:
    """Back to the results the action was taken on (only the known filter fields travel)."""
    back = QueryDict(request.POST.get("back", ""))
    query = {key: back[key] for key in FILTER_FIELDS if back.get(key)} | extra
    url = reverse("inference:identify")
    return redirect(f"{url}?{urlencode(query)}" if query else url)


def _selected(request: HttpRequest) -> list[Selected]:
    """The ticked images, each ``<image id>:<version seen>``."""
    selected = []
    for value in request.POST.getlist("image"):
        image_id, _, version = value.partition(":")
        number = whole_number(image_id)
        if number is not None:
            selected.append(Selected(number, whole_number(version)))
    return selected


@reviewer_required
@require_POST
def identify_run(request: HttpRequest) -> HttpResponse:
    version = _version(_positive_int(request.POST.get("v")))
    scope = _scope_parse(request.POST.get("scope", "inbox"))
    try:
        job = identification_start(scope=scope, version=version, actor=_user(request))
    except IdentificationError as exc:
        messages.error(request, str(exc))
    else:
        number = ModelVersion.objects.get(pk=job.params["model_version_id"]).number
        messages.success(
            request,
            f"Identifying the {scope.describe()} with model v{number} (job {job.pk}); "
            "only images without a prediction from it are computed. Results fill in as it runs.",
        )
    return _back(request)


@reviewer_required
@require_POST
def identify_label(request: HttpRequest) -> HttpResponse:
    subclass = get_object_or_404(
        SubClass.objects.select_related("label_class"),
        pk=_positive_int(request.POST.get("subclass")) or 0,
    )
    try:
        outcome = images_bulk_relabel(
            selected=_selected(request), subclass=subclass, actor=_user(request)
        )
    except IdentificationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, outcome.summary(f"Labelled as {subclass}:"))
    return _back(request)


@reviewer_required
@require_POST
def identify_trash(request: HttpRequest) -> HttpResponse:
    try:
        outcome = images_bulk_trash(
            selected=_selected(request),
            note=request.POST.get("note", ""),
            actor=_user(request),
        )
    except IdentificationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, outcome.summary("Moved to the trash:"))
    return _back(request)


@login_required
@require_POST
def identify_queue(request: HttpRequest) -> HttpResponse:
    state = _state(QueryDict(request.POST.get("back", "")))
    if state.filters is None:
        messages.error(request, "Choose a model version first.")
        return _back(request)
    saved = results_queue_create(
        filters=state.filters, name=request.POST.get("name", ""), actor=_user(request)
    )
    return _back(request, queued=str(saved.pk))
