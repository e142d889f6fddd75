"""The library grids' bulk actions: each a POST of the picked images (``image`` =
``<id>:<version seen>``) from the class page, the inbox or the trash, one service call, and a
redirect back to the grid with what happened, and the images that changed meanwhile marked."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.decorators import request_user as _user
from accounts.decorators import reviewer_required
from config.query import whole_number
from curation.grid_actions import grid_actions_for
from curation.models import BenchmarkKind, SubClass
from curation.services.bulk import (
    MAX_SELECTED,
    BulkActionError,
    BulkOutcome,
    Selected,
    images_bulk_benchmark,
    images_bulk_relabel,
    images_bulk_restore,
    images_bulk_trash,
)

CHANGED = "changed"  # the query field that marks images changed meanwhile on the grid
CONFLICTS_NAMED = 20  # images a message names (and links) one by one


def picked_images(request: HttpRequest) -> list[Selected]:
    """The picked images, each ``<image id>:<version seen>``; malformed values are ignored."""
    picked = []
    for value in request.POST.getlist("image")[: MAX_SELECTED + 1]:
        image_id, _, version = value.partition(":")
        number = whole_number(image_id)
        if number:
            picked.append(Selected(number, whole_number(version)))
    return picked


def _changed_ids(request: HttpRequest) -> set[int]:
    values = request.GET.get(CHANGED, "").split(",")[:MAX_SELECTED]
    return {number for value in values if (number := whole_number(value))}


def grid_context(request: HttpRequest, *, page: str) -> dict[str, Any]:
    """What a grid page needs to offer selection: the actions the user may take there, the URL
    to come back to, and the images an earlier action left alone because they had changed."""
    parts = urlsplit(request.get_full_path())
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != CHANGED]
    back = parts.path + (f"?{urlencode(query)}" if query else "")
    return {
        "grid_actions": grid_actions_for(page=page, user=_user(request)),
        "grid_page": page,
        "grid_back": back,
        "grid_changed": _changed_ids(request),
        "grid_max": MAX_SELECTED,
    }


def back_to_grid(request: HttpRequest, outcome: BulkOutcome | None = None) -> HttpResponse:
    """Back to the grid the images were picked on (only a page of ours), marking the images
    that changed meanwhile."""
    target = request.POST.get("next", "")
    if not (
        target.startswith("/")
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        target = reverse("curation:inbox")
    if outcome is not None and outcome.conflicts:
        marked = ",".join(str(pk) for pk in outcome.conflicts)
        target += ("&" if "?" in target else "?") + urlencode({CHANGED: marked})
    return redirect(target)


def _conflicts_message(outcome: BulkOutcome) -> str:
    """The images left alone because someone changed them meanwhile, each a link."""
    count = len(outcome.conflicts)
    links = format_html_join(
        ", ",
        '<a href="{}">#{}</a>',
        ((reverse("curation:image", args=[pk]), pk) for pk in outcome.conflicts[:CONFLICTS_NAMED]),
    )
    more = f" and {count - CONFLICTS_NAMED} more" if count > CONFLICTS_NAMED else ""
    return format_html(
        "{} left alone because someone else changed {} after this page loaded: {}{}. "
        "Open {} to see what changed; those still on this page are marked “changed meanwhile”.",
        f"{count} image{'s' if count != 1 else ''}",
        "them" if count != 1 else "it",
        links,
        more,
        "them" if count != 1 else "it",
    )


def _report(request: HttpRequest, outcome: BulkOutcome, done: str) -> HttpResponse:
    if outcome.changed or not outcome.conflicts:
        messages.success(request, outcome.summary(done))
    if outcome.conflicts:
        messages.warning(request, _conflicts_message(outcome))
    return back_to_grid(request, outcome)


@login_required
@require_POST
def grid_label(request: HttpRequest) -> HttpResponse:
    """Labellers label one by one on the image page, so they may label picked images too."""
    subclass_id = whole_number(request.POST.get("subclass"))
    subclass = (
        SubClass.objects.select_related("label_class").filter(pk=subclass_id).first()
        if subclass_id
        else None
    )
    if subclass is None:
        messages.error(request, "Choose the class and sub-class to label the images as.")
        return back_to_grid(request)
    try:
        outcome = images_bulk_relabel(
            selected=picked_images(request),
            subclass=subclass,
            actor=_user(request),
            note="picked in a grid",
        )
    except BulkActionError as exc:
        messages.error(request, str(exc))
        return back_to_grid(request)
    return _report(request, outcome, f"Labelled as {subclass.label_class.name} / {subclass.name}")


@reviewer_required
@require_POST
def grid_trash(request: HttpRequest) -> HttpResponse:
    try:
        outcome = images_bulk_trash(
            selected=picked_images(request),
            note=request.POST.get("note", "")[:500],
            actor=_user(request),
        )
    except BulkActionError as exc:
        messages.error(request, str(exc))
        return back_to_grid(request)
    return _report(request, outcome, "Moved to the trash")


@reviewer_required
@require_POST
def grid_restore(request: HttpRequest) -> HttpResponse:
    try:
        outcome = images_bulk_restore(selected=picked_images(request), actor=_user(request))
    except BulkActionError as exc:
        messages.error(request, str(exc))
        return back_to_grid(request)
    return _report(request, outcome, "Restored from the trash")


@reviewer_required
@require_POST
def grid_benchmark(request: HttpRequest) -> HttpResponse:
    """Into an existing set (``benchmark``: its name), or a new one (``new_name``, ``kind``)."""
    name = request.POST.get("benchmark", "") or request.POST.get("new_name", "")
    try:
        benchmark, outcome = images_bulk_benchmark(
            selected=picked_images(request),
            name=name[:200],
            kind=request.POST.get("kind", BenchmarkKind.CUSTOM),
            actor=_user(request),
        )
    except BulkActionError as exc:
        messages.error(request, str(exc))
        return back_to_grid(request)
    if benchmark is None:
        why = outcome.skipped_text() or "every image picked changed meanwhile"
        messages.warning(request, f"Nothing was added to “{' '.join(name.split())}”: {why}.")
        if outcome.conflicts:
            messages.warning(request, _conflicts_message(outcome))
        return back_to_grid(request, outcome)
    return _report(
        request, outcome, f"Added to {benchmark} ({benchmark.member_count} images in all)"
    )
