"""Reads for near-duplicate review and quality lint."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from curation.models import DuplicateGroup, DuplicateMember, DuplicateMethod, DuplicateStatus, Image


def duplicate_groups(*, status: str | None = DuplicateStatus.OPEN) -> QuerySet[DuplicateGroup]:
    """Groups (of one status, or all with ``None``) with their members, each member's image,
    label and features: two queries for a page of groups."""
    members = DuplicateMember.objects.select_related(
        "image__subclass__label_class", "image__features", "image__labelled_by"
    ).order_by("image_id")
    groups = (
        DuplicateGroup.objects.all()
        if status is None
        else DuplicateGroup.objects.filter(status=status)
    )
    return groups.prefetch_related(Prefetch("members", queryset=members)).order_by("id")


def group_images(group: DuplicateGroup) -> list[Image]:
    """The member images of a group fetched by ``duplicate_groups``."""
    return [member.image for member in group.members.all()]


def duplicate_progress(*, method: str | None = None) -> dict[str, int]:
    """Groups per status (of one method, or of all with ``None``): the review's progress."""
    groups = (
        DuplicateGroup.objects.all()
        if method is None
        else DuplicateGroup.objects.filter(method=method)
    )
    counts = {status.value: 0 for status in DuplicateStatus}
    for status in DuplicateStatus:
        counts[status.value] = groups.filter(status=status).count()
    return counts


def open_groups_per_method() -> dict[str, int]:
    """Open groups of each method, for the review page's filter."""
    return {
        method.value: DuplicateGroup.objects.filter(
            status=DuplicateStatus.OPEN, method=method
        ).count()
        for method in DuplicateMethod
    }
