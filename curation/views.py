"""Server-rendered pages of the library. Each view reads through the selectors, calls at most
one service, and redirects; every list paginates by keyset or by class name, so a page runs
the same number of queries whatever the library size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import request_user as _user
from accounts.decorators import reviewer_required
from config.query import whole_number
from curation import selectors
from curation.getting_started import HIDDEN_COOKIE, HIDDEN_VALUE, getting_started_for
from curation.grid_actions import CLASS_PAGE, INBOX, TRASH
from curation.imaging import needs_rendition
from curation.models import (
    BadReason,
    ClassKind,
    Image,
    ImageStatus,
    ImportOutcome,
    JobStatus,
    LabelClass,
    LabelReason,
    Source,
    SubClass,
)
from curation.plugins import ASIDE, MAIN, image_panels
from curation.services.images import (
    ImageStateError,
    VersionConflict,
    image_relabel,
    image_restore,
    image_trash,
)
from curation.services.quality import (
    GRAYSCALE,
    QUALITY_FILTERS,
    quality_filter,
    quality_thresholds,
)
from curation.services.taxonomy import TaxonomyError, class_create, subclass_create, subclass_move
from curation.serving import image_file_response
from curation.views_bulk import grid_context
from inference.embeddings import (
    EmbeddingError,
    embeddings_job_start,
    images_with_ood_at_least,
    ood_choices,
    ood_param,
)

CLASSES_PER_PAGE = 100
IMAGES_PER_PAGE = 60
ITEMS_PER_PAGE = 100
JOBS_PER_PAGE = 50
HISTORY_LIMIT = 200
RECENT_IMPORTS = 15


def _positive_int(value: str | None) -> int | None:
    number = whole_number(value)
    return number if number else None


def _redirect_back(request: HttpRequest, fallback: str) -> HttpResponse:
    """Back to the page the form was on, when that page is ours."""
    target = request.POST.get("next", "")
    # Not just "starts with one slash": browsers read "/\evil.example" as "//evil.example".
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect(fallback)


def _quality_choice(request: HttpRequest) -> str:
    """The ``?quality=`` flag asked for, when it is one the lists offer."""
    flag = request.GET.get("quality", "")
    return flag if flag in QUALITY_FILTERS else ""


def _quality_filtered(images: QuerySet[Image], flag: str) -> tuple[QuerySet[Image], bool]:
    """``images`` narrowed to a quality flag (one query for the thresholds), and whether the
    library has a threshold for it yet."""
    if not flag:
        return images, True
    stats = quality_thresholds() if flag != GRAYSCALE else {}
    return quality_filter(images, flag=flag, stats=stats), flag == GRAYSCALE or flag in stats


# The SME verdict filter: any bad-image verdict, or one reason from the labelling standards.
VERDICT_ANY = "bad"
VERDICT_CHOICES = [(VERDICT_ANY, "Any bad-image verdict"), *BadReason.choices]


def _verdict_choice(request: HttpRequest) -> str:
    verdict = request.GET.get("verdict", "")
    return verdict if verdict == VERDICT_ANY or verdict in BadReason.values else ""


def _verdict_filtered(images: QuerySet[Image], verdict: str) -> QuerySet[Image]:
    if verdict == VERDICT_ANY:
        return images.filter(bad_verdict__isnull=False)
    if verdict:
        return images.filter(bad_verdict__reason=verdict)
    return images


def _list_query(**params: str) -> str:
    """The query-string prefix that keeps a list's filters on its pager links."""
    kept = {key: value for key, value in params.items() if value}
    return urlencode(kept) + "&" if kept else ""


def _quality_context(flag: str, ready: bool) -> dict[str, Any]:
    return {
        "quality": flag,
        "quality_label": QUALITY_FILTERS.get(flag, ""),
        "quality_choices": list(QUALITY_FILTERS.items()),
        "quality_ready": ready,
        "verdict_choices": VERDICT_CHOICES,
    }


# --- Keyset pages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeysetPage:
    """One page of a list ordered by id; ``next_cursor`` is the id to continue from."""

    items: list[Any]
    next_cursor: int | None
    is_first: bool


def keyset_page(
    queryset: QuerySet[Any], *, cursor: int | None, size: int, descending: bool
) -> KeysetPage:
    if cursor is not None:
        queryset = queryset.filter(id__lt=cursor) if descending else queryset.filter(id__gt=cursor)
    rows = list(queryset.order_by("-id" if descending else "id")[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(
        items=rows,
        next_cursor=rows[-1].pk if has_more else None,
        is_first=cursor is None,
    )


def _trash_page(
    *, cursor: int | None, quality: str = "", verdict: str = ""
) -> tuple[KeysetPage, bool]:
    """The trash is ordered by when things were trashed; the cursor is the last image shown.
    Also returns whether the quality flag asked for has a threshold yet."""
    queryset, ready = _quality_filtered(
        _verdict_filtered(selectors.trash_images(), verdict), quality
    )
    if cursor is not None:
        anchor = Image.objects.filter(pk=cursor, status=ImageStatus.TRASHED).first()
        if anchor is not None and anchor.trashed_at is not None:
            queryset = queryset.filter(
                Q(trashed_at__lt=anchor.trashed_at) | Q(trashed_at=anchor.trashed_at, id__lt=cursor)
            )
    rows = list(queryset[: IMAGES_PER_PAGE + 1])
    has_more = len(rows) > IMAGES_PER_PAGE
    rows = rows[:IMAGES_PER_PAGE]
    page = KeysetPage(
        items=rows, next_cursor=rows[-1].pk if has_more else None, is_first=cursor is None
    )
    return page, ready


# --- Library --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassRow:
    label_class: LabelClass
    subclasses: list[SubClass]
    image_count: int
    sources: list[str]

    @property
    def is_holding(self) -> bool:
        return self.label_class.kind == ClassKind.HOLDING


def _class_row(label_class: LabelClass) -> ClassRow:
    subclasses = list(label_class.subclasses.all())  # prefetched by selectors.class_list()
    present = {s.source for s in subclasses if s.image_count}
    return ClassRow(
        label_class=label_class,
        subclasses=subclasses,
        image_count=sum(s.image_count for s in subclasses),
        sources=[s.value for s in Source if s.value in present],
    )


@login_required
@require_GET
def library(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()[:200]
    classes = selectors.class_list()
    if query:
        classes = classes.filter(name__icontains=query)
    page = Paginator(classes, CLASSES_PER_PAGE).get_page(request.GET.get("page"))
    totals = selectors.library_totals()
    return render(
        request,
        "curation/library.html",
        {
            "totals": totals,
            "page": page,
            "rows": [_class_row(c) for c in page.object_list],
            "query": query,
            "kinds": ClassKind.choices,
            "getting_started": getting_started_for(request=request, totals=totals),
        },
    )


@login_required
@require_POST
def getting_started_toggle(request: HttpRequest) -> HttpResponse:
    """Hide the getting-started steps on the library page, or show them again (a cookie:
    this browser only)."""
    response = redirect("curation:library")
    if request.POST.get("show"):
        response.delete_cookie(HIDDEN_COOKIE)
    else:
        response.set_cookie(
            HIDDEN_COOKIE,
            HIDDEN_VALUE,
            max_age=365 * 24 * 3600,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
    return response


@reviewer_required
@require_POST
def class_new(request: HttpRequest) -> HttpResponse:
    kind = request.POST.get("kind", ClassKind.NORMAL)
    if kind not in ClassKind.values:
        kind = ClassKind.NORMAL
    try:
        label_class = class_create(
            name=request.POST.get("name", ""), kind=kind, actor=_user(request)
        )
    except TaxonomyError as exc:
        messages.error(request, str(exc))
        return redirect("curation:library")
    messages.success(request, f"Class “{label_class.name}” created.")
    return redirect("curation:class", pk=label_class.pk)


# --- Class page -----------------------------------------------------------------------------


@login_required
@require_GET
def class_detail(request: HttpRequest, pk: int) -> HttpResponse:
    label_class = get_object_or_404(LabelClass, pk=pk)
    subclasses = list(
        SubClass.objects.filter(label_class=label_class).order_by("-is_default", "name")
    )
    chosen_id = _positive_int(request.GET.get("subclass"))
    chosen = next((s for s in subclasses if s.pk == chosen_id), None)
    source = request.GET.get("source", "")
    if source not in Source.values:
        source = ""
    shown = [
        s
        for s in subclasses
        if (chosen is None or s.pk == chosen.pk) and (not source or s.source == source)
    ]
    quality = _quality_choice(request)
    verdict = _verdict_choice(request)
    images, quality_ready = _quality_filtered(
        _verdict_filtered(
            selectors.class_images(label_class=label_class, subclass=chosen, source=source or None),
            verdict,
        ),
        quality,
    )
    page = keyset_page(
        images,
        cursor=_positive_int(request.GET.get("before")),
        size=IMAGES_PER_PAGE,
        descending=True,
    )
    user = _user(request)
    other_classes: Any = []
    if user.is_reviewer:
        # Names only, rendered once as a datalist: a select per sub-class meant thousands of
        # options on every class page of a large library.
        other_classes = list(
            LabelClass.objects.exclude(pk=label_class.pk)
            .order_by("name")
            .values_list("name", flat=True)
        )
    filters: dict[str, Any] = {}
    if chosen is not None:
        filters["subclass"] = chosen.pk
    if source:
        filters["source"] = source
    if verdict:
        filters["verdict"] = verdict
    base_query_without_quality = urlencode(filters)
    if quality:
        filters["quality"] = quality
    return render(
        request,
        "curation/class_detail.html",
        {
            "label_class": label_class,
            "subclasses": subclasses,
            "chosen": chosen,
            "source": source,
            "sources": Source.choices,
            "total": sum(s.image_count for s in subclasses),
            "shown_count": sum(s.image_count for s in shown),
            "page": page,
            "base_query": urlencode(filters) + "&" if filters else "",
            "base_query_without_quality": base_query_without_quality,
            "other_classes": other_classes,
            "label_url": reverse("labelling:label", args=[f"class:{label_class.pk}"]),
            "verdict": verdict,
            **_quality_context(quality, quality_ready),
            **grid_context(request, page=CLASS_PAGE),
        },
    )


@reviewer_required
@require_POST
def subclass_new(request: HttpRequest, pk: int) -> HttpResponse:
    label_class = get_object_or_404(LabelClass, pk=pk)
    source = request.POST.get("source", Source.REAL)
    if source not in Source.values:
        source = Source.REAL
    try:
        subclass = subclass_create(
            label_class=label_class,
            name=request.POST.get("name", ""),
            source=source,
            actor=_user(request),
        )
    except TaxonomyError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Sub-class “{subclass.name}” added.")
    return redirect("curation:class", pk=label_class.pk)


@reviewer_required
@require_POST
def subclass_move_to(request: HttpRequest, pk: int) -> HttpResponse:
    subclass = get_object_or_404(SubClass.objects.select_related("label_class"), pk=pk)
    from_class = subclass.label_class
    target_name = " ".join(request.POST.get("to_class_name", "").split())
    target_id = _positive_int(request.POST.get("to_class"))
    if target_name:
        target = LabelClass.objects.filter(name__iexact=target_name).first()
    else:
        target = LabelClass.objects.filter(pk=target_id).first() if target_id else None
    if target is None:
        wanted = f"No class named “{target_name}”. " if target_name else ""
        messages.error(request, f"{wanted}Choose the class to move the sub-class to.")
        return redirect("curation:class", pk=from_class.pk)
    try:
        moved = subclass_move(subclass=subclass, to_class=target, actor=_user(request))
    except TaxonomyError as exc:
        messages.error(request, str(exc))
        return redirect("curation:class", pk=from_class.pk)
    messages.success(
        request,
        f"Moved “{moved.name}” ({moved.image_count} images) from “{from_class.name}” "
        f"to “{target.name}”.",
    )
    return redirect("curation:class", pk=target.pk)


# --- Inbox and trash ------------------------------------------------------------------------


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    quality = _quality_choice(request)
    verdict = _verdict_choice(request)
    images, quality_ready = _quality_filtered(
        _verdict_filtered(selectors.inbox_images(), verdict), quality
    )
    ood_min = ood_param(request.GET.get("ood_min"))
    if ood_min is not None:
        images = images_with_ood_at_least(images, minimum=ood_min)
    ood = f"{ood_min:g}" if ood_min is not None else ""
    page = keyset_page(
        images,
        cursor=_positive_int(request.GET.get("after")),
        size=IMAGES_PER_PAGE,
        descending=False,
    )
    return render(
        request,
        "curation/inbox.html",
        {
            "page": page,
            "inbox_count": selectors.inbox_count(),
            "base_query": _list_query(quality=quality, verdict=verdict, ood_min=ood),
            "verdict": verdict,
            "ood_min": ood,
            "ood_choices": ood_choices(),
            **_quality_context(quality, quality_ready),
            **grid_context(request, page=INBOX),
        },
    )


@login_required
@require_GET
def trash(request: HttpRequest) -> HttpResponse:
    quality = _quality_choice(request)
    verdict = _verdict_choice(request)
    page, quality_ready = _trash_page(
        cursor=_positive_int(request.GET.get("before")), quality=quality, verdict=verdict
    )
    return render(
        request,
        "curation/trash.html",
        {
            "page": page,
            "trash_count": Image.objects.filter(status=ImageStatus.TRASHED).count(),
            "base_query": _list_query(quality=quality, verdict=verdict),
            "verdict": verdict,
            **_quality_context(quality, quality_ready),
            **grid_context(request, page=TRASH),
        },
    )


# --- Image page -----------------------------------------------------------------------------


def _neighbours(image: Image) -> tuple[int | None, int | None]:
    """(previous, next) image ids in the order the image's list shows them."""
    if image.status != ImageStatus.ACTIVE:
        return None, None
    if image.subclass is None:
        queryset = selectors.inbox_images().values_list("pk", flat=True)
        previous = queryset.filter(id__lt=image.pk).order_by("-id").first()
        following = queryset.filter(id__gt=image.pk).order_by("id").first()
        return previous, following
    ids = selectors.class_images(label_class=image.subclass.label_class).values_list(
        "pk", flat=True
    )
    newer = ids.filter(id__gt=image.pk).order_by("id").first()
    older = ids.filter(id__lt=image.pk).order_by("-id").first()
    return newer, older


def _image_page(
    request: HttpRequest,
    image: Image,
    *,
    conflict: str = "",
    attempted_subclass: str | None = None,
    status: int = 200,
) -> HttpResponse:
    previous_id, next_id = _neighbours(image)
    current = str(image.subclass_id or "")
    context: dict[str, Any] = {
        "image": image,
        "history": selectors.image_history(image=image)[:HISTORY_LIMIT],
        "subclasses": selectors.subclass_list(),
        "selected_subclass": attempted_subclass if attempted_subclass is not None else current,
        "conflict": conflict,
        "previous_id": previous_id,
        "next_id": next_id,
        "shown_as_rendition": needs_rendition(image.extension),
    }
    # The sections the apps above the library add (curation.plugins): similar images,
    # labelling standards. Each renders its own template with the page's context.
    for column in (MAIN, ASIDE):
        context[f"{column}_panels"] = [
            render_to_string(panel.template, {**context, **panel.context(image)}, request)
            for panel in image_panels(column=column)
        ]
    return render(request, "curation/image_detail.html", context, status=status)


@login_required
@require_GET
def image_detail(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(selectors.image_list(), pk=pk)
    return _image_page(request, image)


@login_required
@require_POST
def image_relabel_form(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(Image.objects.only("pk"), pk=pk)
    raw_subclass = request.POST.get("subclass", "")
    subclass = None
    if raw_subclass:
        subclass_id = _positive_int(raw_subclass)
        subclass = (
            SubClass.objects.select_related("label_class").filter(pk=subclass_id).first()
            if subclass_id
            else None
        )
        if subclass is None:
            messages.error(request, "That sub-class does not exist (any more); pick another.")
            return redirect("curation:image", pk=image.pk)
    try:
        image_relabel(
            image_id=image.pk,
            subclass=subclass,
            actor=_user(request),
            reason=LabelReason.LABELLING,
            expected_version=_positive_int(request.POST.get("version")),
            note=request.POST.get("note", "")[:500],
        )
    except VersionConflict as exc:
        fresh = selectors.image_list().get(pk=image.pk)
        return _image_page(
            request, fresh, conflict=str(exc), attempted_subclass=raw_subclass, status=409
        )
    except ImageStateError as exc:
        messages.error(request, str(exc))
        return redirect("curation:image", pk=image.pk)
    if subclass is None:
        messages.success(request, "Sent back to the inbox.")
    else:
        messages.success(request, f"Labelled “{subclass.label_class.name} / {subclass.name}”.")
    return redirect("curation:image", pk=image.pk)


@reviewer_required
@require_POST
def image_trash_form(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(Image.objects.only("pk"), pk=pk)
    try:
        image_trash(
            image_id=image.pk,
            actor=_user(request),
            note=request.POST.get("reason", ""),
            expected_version=_positive_int(request.POST.get("version")),
        )
    except (VersionConflict, ImageStateError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Moved to the trash. Restore it from here or from the Trash.")
    return redirect("curation:image", pk=image.pk)


@reviewer_required
@require_POST
def image_restore_form(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(Image.objects.only("pk"), pk=pk)
    try:
        image_restore(
            image_id=image.pk,
            actor=_user(request),
            expected_version=_positive_int(request.POST.get("version")),
        )
    except (VersionConflict, ImageStateError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Restored from the trash.")
    return _redirect_back(request, reverse("curation:image", args=[image.pk]))


@reviewer_required
@require_POST
def embeddings_compute_form(request: HttpRequest) -> HttpResponse:
    """Start the embeddings job (what is missing only), then go back to the page."""
    try:
        job = embeddings_job_start(actor=_user(request))
    except EmbeddingError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(
            request,
            f"Computing missing embeddings (job {job.pk}); similar images and OOD scores "
            "appear when it finishes.",
        )
    return _redirect_back(request, reverse("curation:jobs"))


@login_required
@require_GET
def image_file(request: HttpRequest, pk: int) -> FileResponse:
    return image_file_response(get_object_or_404(Image, pk=pk))


@login_required
@require_GET
def image_display(request: HttpRequest, pk: int) -> FileResponse:
    """What pages show: the original, or a rendition of a format browsers cannot display."""
    return image_file_response(get_object_or_404(Image, pk=pk), display=True)


@login_required
@require_GET
def image_thumbnail(request: HttpRequest, pk: int) -> FileResponse:
    image = get_object_or_404(Image, pk=pk)
    # A page rendered before the worker made the thumbnail still gets a picture.
    return image_file_response(image, thumbnail=image.thumbnail_ready)


# --- Imports --------------------------------------------------------------------------------


@login_required
@require_GET
def import_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "curation/import.html",
        {
            "subclasses": selectors.subclass_list(),
            "batches": selectors.import_batch_list()[:RECENT_IMPORTS],
            "files_per_request": min(50, settings.DATA_UPLOAD_MAX_NUMBER_FILES),
            "sources": Source.choices,
        },
    )


@login_required
@require_GET
def import_batch(request: HttpRequest, pk: int) -> HttpResponse:
    batch = get_object_or_404(selectors.import_batch_list(), pk=pk)
    outcome = request.GET.get("outcome", "")
    items = selectors.import_items(batch=batch)
    if outcome in ImportOutcome.values:
        items = items.filter(outcome=outcome)
    else:
        outcome = ""
    page = keyset_page(
        items,
        cursor=_positive_int(request.GET.get("after")),
        size=ITEMS_PER_PAGE,
        descending=False,
    )
    return render(
        request,
        "curation/import_batch.html",
        {"batch": batch, "page": page, "outcome": outcome, "outcomes": ImportOutcome.choices},
    )


# --- Jobs -----------------------------------------------------------------------------------


@login_required
@require_GET
def jobs(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    queryset = selectors.job_list()
    if status in JobStatus.values:
        queryset = queryset.filter(status=status)
    else:
        status = ""
    page = keyset_page(
        queryset,
        cursor=_positive_int(request.GET.get("before")),
        size=JOBS_PER_PAGE,
        descending=True,
    )
    return render(
        request,
        "curation/jobs.html",
        {"page": page, "status": status, "statuses": JobStatus.choices},
    )
