"""Reads for near-duplicate review and quality lint."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count, Prefetch, QuerySet

from curation.models import DuplicateGroup, DuplicateMember, DuplicateMethod, DuplicateStatus, Image


def duplicate_groups(*, status: str | None = DuplicateStatus.OPEN) -> QuerySet[DuplicateGroup]:
    """Groups (of one status, or all with ``None``) with their members, each member's image,
    label, bad-image verdict and features: two queries for a page of groups."""
    members = DuplicateMember.objects.select_related(
        "image__subclass__label_class",
        "image__features",
        "image__labelled_by",
        "image__bad_verdict",
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


@dataclass(frozen=True)
class ComponentPart:
    """Where a group sits in the near-duplicate component it was split from."""

    key: int
    part: int  # 1-based, in the order of the groups' ids
    parts: int
    images: int  # distinct images over all the component's groups, of any status
    previous_id: int | None
    next_id: int | None


def component_parts(groups: Iterable[DuplicateGroup]) -> dict[int, ComponentPart]:
    """For each of ``groups`` that is one of several groups of its component: its part.
    Two queries, whatever the number of groups."""
    groups = list(groups)
    keys = {group.component for group in groups if group.component is not None}
    if not keys:
        return {}
    ids_of: dict[int, list[int]] = {}
    for group_id, key in (
        DuplicateGroup.objects.filter(component__in=keys)
        .order_by("id")
        .values_list("id", "component")
    ):
        if key is not None:
            ids_of.setdefault(key, []).append(group_id)
    several = [key for key, ids in ids_of.items() if len(ids) > 1]
    if not several:
        return {}
    images = dict(
        DuplicateMember.objects.filter(group__component__in=several)
        .values("group__component")
        .annotate(images=Count("image_id", distinct=True))
        .values_list("group__component", "images")
    )
    parts: dict[int, ComponentPart] = {}
    for group in groups:
        key = group.component
        ids = ids_of.get(key, []) if key is not None else []
        if key is None or len(ids) < 2 or group.pk not in ids:
            continue
        index = ids.index(group.pk)
        parts[group.pk] = ComponentPart(
            key=key,
            part=index + 1,
            parts=len(ids),
            images=images.get(key, 0),
            previous_id=ids[index - 1] if index else None,
            next_id=ids[index + 1] if index + 1 < len(ids) else None,
        )
    return parts


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
