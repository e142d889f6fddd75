"""Near-duplicate review pages: one group at a time, side by side, keyboard first."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import request_user as _user
from accounts.decorators import reviewer_required
from curation.apis_duplicates import duplicates_scan_job_start
from curation.models import DuplicateGroup, DuplicateStatus
from curation.selectors_duplicates import duplicate_groups, duplicate_progress, group_images
from curation.services.duplicates import (
    DuplicateReviewError,
    default_max_distance,
    duplicate_group_dismiss,
    duplicate_group_resolve,
    keeper_rank,
)


@require_GET
@reviewer_required
def review(request: HttpRequest) -> HttpResponse:
    """The next open group (or ``?group=`` one), its images best keeper first."""
    groups = duplicate_groups(status=DuplicateStatus.OPEN)
    wanted = request.GET.get("group", "")
    after = request.GET.get("after", "")
    if wanted.isdigit():
        group = duplicate_groups(status=None).filter(pk=int(wanted)).first()
    elif after.isdigit():
        group = groups.filter(pk__gt=int(after)).first() or groups.first()
    else:
        group = groups.first()
    images = sorted(group_images(group), key=keeper_rank, reverse=True) if group else []
    active = [image for image in images if image.status == "active"]
    distances = (
        {member.image_id: member.distance for member in group.members.all()} if group else {}
    )
    progress = duplicate_progress()
    total = sum(progress.values())
    return render(
        request,
        "curation/duplicates/review.html",
        {
            "group": group,
            "members": [(image, distances.get(image.pk)) for image in images],
            "suggested": active[0] if active and group and group.status == "open" else None,
            "progress": progress,
            "reviewed": progress["resolved"] + progress["dismissed"],
            "total": total,
            "percent": int(100 * (total - progress["open"]) / total) if total else 0,
            "max_distance": default_max_distance(),
        },
    )


def _next(group: DuplicateGroup) -> HttpResponse:
    return redirect(f"{reverse('duplicates:review')}?after={group.pk}")


@require_POST
@reviewer_required
def resolve(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(DuplicateGroup, pk=pk)
    keeper = request.POST.get("keeper", "")
    if not keeper.isdigit():
        messages.error(request, "Pick the image to keep.")
        return redirect(f"{reverse('duplicates:review')}?group={group.pk}")
    try:
        duplicate_group_resolve(group_id=group.pk, keeper_id=int(keeper), actor=_user(request))
    except DuplicateReviewError as exc:
        messages.error(request, str(exc))
        return _next(group)
    others = group.size - 1
    messages.success(
        request, f"Kept image {keeper}; {others} duplicate{'s' if others != 1 else ''} trashed."
    )
    return _next(group)


@require_POST
@reviewer_required
def dismiss(request: HttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(DuplicateGroup, pk=pk)
    try:
        duplicate_group_dismiss(group_id=group.pk, actor=_user(request))
    except DuplicateReviewError as exc:
        messages.error(request, str(exc))
        return _next(group)
    messages.success(request, f"Group {group.pk} marked as not duplicates; it will not return.")
    return _next(group)


@require_POST
@reviewer_required
def scan(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("max_distance", "")
    max_distance = int(raw) if raw.isdigit() and int(raw) <= 32 else default_max_distance()
    job = duplicates_scan_job_start(actor=_user(request), max_distance=max_distance)
    messages.info(
        request,
        f"Duplicate scan started (job {job.pk}, {max_distance} bits); groups appear here when "
        "it finishes.",
    )
    return redirect("duplicates:review")
