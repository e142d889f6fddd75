"""Near-duplicate review pages: one group at a time, side by side, keyboard first."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import request_user as _user
from accounts.decorators import reviewer_required
from config.query import whole_number
from curation.apis_duplicates import duplicates_scan_job_start, similarities_of
from curation.models import DuplicateGroup, DuplicateMember, DuplicateMethod, DuplicateStatus, Image
from curation.selectors_duplicates import (
    component_parts,
    duplicate_groups,
    duplicate_progress,
    open_groups_per_method,
)
from curation.services.duplicate_review import (
    KEEPERS_OWN,
    DuplicateReviewError,
    LabelChoice,
    LabelChoiceInvalid,
    LabelChoiceRequired,
    LabelConflict,
    bad_reason_of,
    duplicate_group_dismiss,
    duplicate_group_resolve,
    keeper_rank,
    label_conflict,
    label_name,
)
from curation.services.duplicates import (
    SCAN_METHODS,
    default_max_distance,
    default_min_similarity,
)


def _method(value: str | None) -> str | None:
    """The method filter: ``phash``, ``embedding`` or None (both)."""
    return value if value in DuplicateMethod.values else None


@dataclass(frozen=True)
class ReviewMember:
    """One card of the review page: the image, why it is in the group, and its label."""

    image: Image
    member: DuplicateMember
    key: int  # the number key that keeps it
    is_centre: bool
    similarity: float | None  # embedding groups: to the nearest other member
    bad_reason: str
    label_option: int | None  # in a conflicting group: the key of the label it carries


def _review_members(group: DuplicateGroup) -> tuple[list[ReviewMember], LabelConflict | None]:
    members = sorted(group.members.all(), key=lambda m: keeper_rank(m.image), reverse=True)
    conflict = (
        label_conflict(member.image for member in members)
        if group.status == DuplicateStatus.OPEN
        else None
    )
    similarities = similarities_of([group])
    rows = [
        ReviewMember(
            image=member.image,
            member=member,
            key=key,
            is_centre=member.image_id == group.centre_id,
            similarity=similarities.get(member.image_id),
            bad_reason=bad_reason_of(member.image),
            label_option=conflict.option_of(member.image_id) if conflict else None,
        )
        for key, member in enumerate(members, start=1)
    ]
    return rows, conflict


@require_GET
@reviewer_required
def review(request: HttpRequest) -> HttpResponse:
    """The next open group (or ``?group=`` one) of the chosen method (``?method=``), its
    images best keeper first. A group whose members disagree on the label shows the labels
    side by side and asks which one the keeper takes."""
    method = _method(request.GET.get("method"))
    groups = duplicate_groups(status=DuplicateStatus.OPEN)
    if method is not None:
        groups = groups.filter(method=method)
    wanted = whole_number(request.GET.get("group"))
    after = whole_number(request.GET.get("after"))
    if wanted is not None:
        group = duplicate_groups(status=None).filter(pk=wanted).first()
    elif after is not None:
        group = groups.filter(pk__gt=after).first() or groups.first()
    else:
        group = groups.first()
    rows, conflict = _review_members(group) if group else ([], None)
    active = [row for row in rows if row.image.status == "active"]
    progress = duplicate_progress(method=method)
    total = sum(progress.values())
    return render(
        request,
        "curation/duplicates/review.html",
        {
            "group": group,
            "component": component_parts([group]).get(group.pk) if group else None,
            "members": rows,
            "conflict": conflict,
            "keepers_own": KEEPERS_OWN,
            "method": method or "",
            "methods": DuplicateMethod.choices,
            "open_per_method": open_groups_per_method(),
            "min_similarity": default_min_similarity(),
            "suggested": active[0].image if active and group and group.status == "open" else None,
            "progress": progress,
            "reviewed": progress["resolved"] + progress["dismissed"],
            "total": total,
            "percent": int(100 * (total - progress["open"]) / total) if total else 0,
            "max_distance": default_max_distance(),
        },
    )


def _next(group: DuplicateGroup, request: HttpRequest) -> HttpResponse:
    """The group after this one, within the method filter the reviewer was using."""
    query = {"after": group.pk}
    method = _method(request.POST.get("method"))
    if method is not None:
        query["method"] = method  # type: ignore[assignment]
    return redirect(f"{reverse('duplicates:review')}?{urlencode(query)}")


def _label_choice(raw: str | None) -> LabelChoice | None:
    """The form's ``label``: a sub-class id, ``keeper`` (its own label) or nothing."""
    if raw == KEEPERS_OWN:
        return KEEPERS_OWN
    return whole_number(raw)


@require_POST
@reviewer_required
def resolve(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(DuplicateGroup, pk=pk)
    keeper = whole_number(request.POST.get("keeper"))
    here = redirect(f"{reverse('duplicates:review')}?group={group.pk}")
    if keeper is None:
        messages.error(request, "Pick the image to keep.")
        return here
    try:
        closed = duplicate_group_resolve(
            group_id=group.pk,
            keeper_id=keeper,
            actor=_user(request),
            label=_label_choice(request.POST.get("label")),
        )
    except (LabelChoiceRequired, LabelChoiceInvalid) as exc:
        messages.error(request, str(exc))  # the same group again, to choose
        return here
    except DuplicateReviewError as exc:
        messages.error(request, str(exc))
        return _next(group, request)
    others = group.size - 1
    kept = closed.keeper
    label = f" ({label_name(kept.subclass)})" if kept is not None and kept.subclass else ""
    messages.success(
        request,
        f"Kept image {keeper}{label}; {others} duplicate{'s' if others != 1 else ''} trashed.",
    )
    return _next(group, request)


@require_POST
@reviewer_required
def dismiss(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(DuplicateGroup, pk=pk)
    try:
        duplicate_group_dismiss(group_id=group.pk, actor=_user(request))
    except DuplicateReviewError as exc:
        messages.error(request, str(exc))
        return _next(group, request)
    messages.success(request, f"Group {group.pk} marked as not duplicates; it will not return.")
    return _next(group, request)


@require_POST
@reviewer_required
def scan(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("max_distance", "")
    max_distance = whole_number(raw, maximum=32)
    if max_distance is None:
        max_distance = default_max_distance()
    method = request.POST.get("method", DuplicateMethod.PHASH)
    if method not in SCAN_METHODS:
        messages.error(request, f"A scan's method is phash or all, not {method!r}.")
        return redirect("duplicates:review")
    try:
        min_similarity = float(request.POST.get("min_similarity", ""))
    except ValueError:
        min_similarity = default_min_similarity()
    if not 0.5 <= min_similarity < 1:
        messages.error(request, "The similarity threshold must be from 0.5 to 0.999.")
        return redirect("duplicates:review")
    job = duplicates_scan_job_start(
        actor=_user(request),
        max_distance=max_distance,
        method=method,
        min_similarity=min_similarity,
    )
    thresholds: dict[str, str] = {
        DuplicateMethod.PHASH.value: f"pHash, {max_distance} bits",
        DuplicateMethod.EMBEDDING.value: f"embeddings, similarity {min_similarity:.2f}",
    }
    what = thresholds.get(method, f"{thresholds['phash']} and {thresholds['embedding']}")
    messages.info(
        request,
        f"Duplicate scan started (job {job.pk}, {what}); groups appear here when it finishes.",
    )
    return redirect("duplicates:review")
